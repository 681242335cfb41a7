//! The lab's scenarios: one fixed, seed-shaped topology (see docs/lab.md for the diagram) and
//! the knobs that turn it into `seed`, `seed-fixed`, `etp-local`, `rp-filter-strict`,
//! `no-endpoints`, and the "leak" family of issue #9 (`loose-leak`, `strict-leak`,
//! `strict-leak-rpfix`, `strict-leak-routefix`), where the router the nodes' default route
//! points to is in the request's own VRF but has no route back to the client, and
//! `seed-nft`/`seed-nft-fixed` with kube-proxy in nftables mode (issue #14).
//!
//! Addresses follow the seed (../shared/seed/SCENARIO.md) at small scale: the client
//! 10.210.150.87, the VIP 10.33.151.160, the om subnet 10.33.151.64/27 with the anycast gateway
//! .65 and the leaves at .66/.67, speaker nodes from .68, the traffic subnet 10.33.152.64/27
//! with its gateway .65, node InternalIPs 10.0.10.x and pod IPs in 192.168.0.0/16.

use std::net::Ipv4Addr;

use crate::sh::{LabError, Result};

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 210, 150, 87);
pub const CLIENT_PREFIX: &str = "10.210.150.80/28";
pub const CLIENT_GW: Ipv4Addr = Ipv4Addr::new(10, 210, 150, 81);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 33, 151, 160);
pub const VIP_PORT: u16 = 80;
pub const ANYCAST_GW: Ipv4Addr = Ipv4Addr::new(10, 33, 151, 65);
pub const TRAFFIC_GW: Ipv4Addr = Ipv4Addr::new(10, 33, 152, 65);
pub const HOST: &str = "lab.kubepath.test";
pub const CLUSTER_CIDR: &str = "192.168.0.0/16";
pub const LEAF_ASN: u32 = 4_200_000_000;
pub const NODE_ASN: u32 = 4_259_841_731;
/// The FRR name of the leaves' (default) VRF: zebra and bgpd run with `-o om_vr`.
pub const OM_VRF: &str = "om_vr";
/// The FRR name of the traffic router's VRF.
pub const TRAFFIC_VRF: &str = "traffic_vr";
pub const NODE_OM_IF: &str = "ccd_ecfe_om";
pub const NODE_TRAFFIC_IF: &str = "ecfe_traf1";
pub const NODE_CLUSTER_IF: &str = "eth0";

pub const INGRESS_NS: &str = "ingress-nginx";
pub const INGRESS_SVC: &str = "ingress-nginx";
pub const INGRESS_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 97, 74, 168);
pub const INGRESS_NODE_PORT: u16 = 32151;
pub const INGRESS_HEALTH_NODE_PORT: u16 = 32000;
pub const BACKEND_NS: &str = "web";
pub const BACKEND_SVC: &str = "backend";
pub const BACKEND_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 107, 185, 250);
pub const BACKEND_PORT: u16 = 9090;

/// A leaf router of the om VRF.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub name: &'static str,
    /// Address on the link to the edge router (the client side).
    pub uplink_ip: Ipv4Addr,
    /// The edge router's address on that link.
    pub edge_ip: Ipv4Addr,
    /// Address on the om subnet 10.33.151.64/27.
    pub om_ip: Ipv4Addr,
    /// Whether this leaf also holds the anycast gateway 10.33.151.65 (see docs/lab.md: the
    /// lab gives the anycast address to leaf-a only, since two owners of one IP on one bridge
    /// would need a shared virtual MAC).
    pub anycast: bool,
}

/// A speaker node.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// 1-based index.
    pub index: u8,
    pub om_ip: Ipv4Addr,
    pub traffic_ip: Ipv4Addr,
    pub internal_ip: Ipv4Addr,
    /// The node's pod CIDR: 192.168.<index>.0/24.
    pub pod_cidr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// An ingress-nginx controller pod (answers on port 80 and proxies to the backend Service).
    Ingress,
    /// A backend pod (answers on port 9090 with its own name).
    Backend,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub namespace: &'static str,
    pub name: String,
    pub node: String,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub tier: Tier,
}

impl Pod {
    /// "namespace/name".
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// kube-proxy's data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// `--proxy-mode=iptables`: rules loaded with `iptables-restore`, collected with
    /// `iptables-save`.
    Iptables,
    /// `--proxy-mode=nftables`: `table ip kube-proxy` loaded with `nft -f`, collected with
    /// `nft list ruleset`.
    Nftables,
}

/// One scenario: the shared topology plus its knobs.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub summary: &'static str,
    /// `externalTrafficPolicy: Local` on the ingress Service.
    pub etp_local: bool,
    /// A route back to the client via the om anycast gateway on every node: `ip route add
    /// 10.210.150.87/32 via 10.33.151.65` (the seed's workaround, for its one host) or, with
    /// [`Scenario::return_route_prefix`], the same for the whole client prefix.
    pub return_route_fix: bool,
    /// The route back covers the whole client prefix 10.210.150.80/28, not only the lab's
    /// client 10.210.150.87. For that client the kernel decides the same either way (the
    /// route is the longest match for 10.210.150.87 in both cases); `kubepath check`, which
    /// traces every address class of the manifest's prefix, does not.
    pub return_route_prefix: bool,
    /// rp_filter on every node: `net.ipv4.conf.ccd_ecfe_om.rp_filter` = this value, and for
    /// loose (2) also `net.ipv4.conf.all.rp_filter` = 2, the way the lab set it. 0: the
    /// lab's default (off).
    pub rp_filter: u8,
    /// The fix kubepath proposes for strict rp_filter, applied on top of the scenario's state
    /// as an operator would: `sysctl -w net.ipv4.conf.ccd_ecfe_om.rp_filter=2` and
    /// `sysctl -w net.ipv4.conf.all.rp_filter=2` on every node.
    pub rp_filter_fix: bool,
    /// The FRR name of the traffic router's VRF (`-o NAME`): `traffic_vr` in the seed, the om
    /// VRF's own name `om_vr` in the leak scenarios (the router the nodes' default route
    /// points to is then "in the same VRF" as the request's routers, as the snapshot sees it).
    pub traffic_vrf: &'static str,
    /// Whether the ingress tier has pods (false: the Service has no endpoints).
    pub ingress_has_endpoints: bool,
    /// kube-proxy's data plane on the nodes: iptables (`iptables-restore`, the seed's) or
    /// nftables (`nft -f`, kube-proxy's `--proxy-mode=nftables`, GA since v1.33).
    pub proxy_mode: ProxyMode,
    pub leaves: Vec<Leaf>,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    /// What the lab is built to show (checked against the observation by `lab test`).
    pub expected_verdict: &'static str,
    /// What `kubepath check` must name as the scenario's most severe finding: its code and a
    /// phrase of its title or explanation. `None`: a healthy scenario, where `check` must find
    /// nothing of severity error or above.
    pub expected_finding: Option<(&'static str, &'static str)>,
}

/// The names of every scenario, in the order `lab test` runs them.
pub const SCENARIOS: &[&str] = &[
    "seed",
    "seed-fixed",
    "seed-prefix-fixed",
    "etp-local",
    "rp-filter-strict",
    "no-endpoints",
    "loose-leak",
    "strict-leak",
    "strict-leak-rpfix",
    "strict-leak-routefix",
    "seed-nft",
    "seed-nft-fixed",
];

impl Scenario {
    /// Looks a scenario up by name.
    pub fn by_name(name: &str) -> Result<Scenario> {
        let base = |name, summary, verdict, finding| Scenario {
            name,
            summary,
            etp_local: false,
            return_route_fix: false,
            return_route_prefix: false,
            rp_filter: 0,
            rp_filter_fix: false,
            traffic_vrf: TRAFFIC_VRF,
            ingress_has_endpoints: true,
            proxy_mode: ProxyMode::Iptables,
            leaves: leaves(),
            nodes: nodes(),
            pods: pods(true),
            expected_verdict: verdict,
            expected_finding: finding,
        };
        let s = match name {
            "seed" => base(
                "seed",
                "ETP Cluster, masquerade; nodes reply through the traffic VRF: the handshake never completes",
                "asymmetric-return",
                Some(("flow-asymmetric-return", "asymmetric return path")),
            ),
            "seed-fixed" => Scenario {
                return_route_fix: true,
                ..base(
                    "seed-fixed",
                    "the seed plus `ip route add 10.210.150.87/32 via 10.33.151.65` on every node: the client is delivered, the rest of its /28 is not",
                    "delivered",
                    // The seed's workaround covers its one host: the rest of the client
                    // prefix still fails, and `check` says so.
                    Some(("flow-partial-prefix", "except 10.210.150.87/32")),
                )
            },
            "seed-prefix-fixed" => Scenario {
                return_route_fix: true,
                return_route_prefix: true,
                ..base(
                    "seed-prefix-fixed",
                    "the seed plus `ip route add 10.210.150.80/28 via 10.33.151.65` on every node: the whole client prefix is delivered",
                    "delivered",
                    None,
                )
            },
            "etp-local" => Scenario {
                etp_local: true,
                return_route_fix: true,
                return_route_prefix: true,
                ..base(
                    "etp-local",
                    "externalTrafficPolicy Local (with the /28 route back): only nodes with a local ingress pod announce; no masquerade",
                    "delivered",
                    None,
                )
            },
            "rp-filter-strict" => Scenario {
                rp_filter: 1,
                ..base(
                    "rp-filter-strict",
                    "the seed with strict rp_filter on ccd_ecfe_om: the SYN itself is dropped",
                    "rp-filter",
                    Some(("flow-rp-filter", "strict rp_filter on ccd_ecfe_om")),
                )
            },
            "no-endpoints" => Scenario {
                return_route_fix: true,
                return_route_prefix: true,
                ingress_has_endpoints: false,
                pods: pods(false),
                ..base(
                    "no-endpoints",
                    "the ingress Service has no endpoints: MetalLB withdraws the VIP, kube-proxy REJECTs",
                    "no-route",
                    Some(("flow-no-route", "which no node announces: no serving endpoint")),
                )
            },
            // Issue #9: the traffic router (the nodes' default gateway 10.33.152.65) is named
            // om_vr like the leaves but has no route to the client prefix at all.
            "loose-leak" => Scenario {
                rp_filter: 2,
                traffic_vrf: OM_VRF,
                ..base(
                    "loose-leak",
                    "loose rp_filter; the nodes' default router is in om_vr but has no route to the client: the SYN-ACK dies there",
                    "no-route",
                    Some(("flow-no-route", "trafgw (VRF om_vr) has no route back")),
                )
            },
            "strict-leak" => Scenario {
                rp_filter: 1,
                traffic_vrf: OM_VRF,
                ..base(
                    "strict-leak",
                    "loose-leak with strict rp_filter on ccd_ecfe_om: the SYN itself is dropped",
                    "rp-filter",
                    Some(("flow-rp-filter", "strict rp_filter on ccd_ecfe_om")),
                )
            },
            "strict-leak-rpfix" => Scenario {
                rp_filter: 1,
                rp_filter_fix: true,
                traffic_vrf: OM_VRF,
                ..base(
                    "strict-leak-rpfix",
                    "strict-leak plus the rp_filter-only fix (`sysctl -w net.ipv4.conf.{ccd_ecfe_om,all}.rp_filter=2`): the SYN passes, the SYN-ACK still dies at the traffic router",
                    "no-route",
                    Some(("flow-no-route", "trafgw (VRF om_vr) has no route back")),
                )
            },
            "strict-leak-routefix" => Scenario {
                rp_filter: 1,
                return_route_fix: true,
                traffic_vrf: OM_VRF,
                ..base(
                    "strict-leak-routefix",
                    "strict-leak plus the route back (`ip route add 10.210.150.87/32 via 10.33.151.65`): strict rp_filter passes, the reply returns through leaf-a; the rest of the /28 is still dropped",
                    "delivered",
                    Some(("flow-partial-prefix", "except 10.210.150.87/32")),
                )
            },
            // Issue #14: the seed and its fix with kube-proxy in nftables mode. The kernel
            // must do the same as with iptables, and kubepath must say so from the nodes'
            // `nft list ruleset`.
            "seed-nft" => Scenario {
                proxy_mode: ProxyMode::Nftables,
                ..base(
                    "seed-nft",
                    "the seed with kube-proxy in nftables mode: the handshake never completes",
                    "asymmetric-return",
                    Some(("flow-asymmetric-return", "asymmetric return path")),
                )
            },
            "seed-nft-fixed" => Scenario {
                proxy_mode: ProxyMode::Nftables,
                return_route_fix: true,
                return_route_prefix: true,
                ..base(
                    "seed-nft-fixed",
                    "seed-nft plus `ip route add 10.210.150.80/28 via 10.33.151.65` on every node: delivered through kube-proxy's nftables rules",
                    "delivered",
                    None,
                )
            },
            other => {
                return Err(LabError::UnknownScenario(
                    other.to_string(),
                    SCENARIOS.join(", "),
                ))
            }
        };
        Ok(s)
    }

    /// The rp_filter mode of the nodes' om interface once the scenario (and its fix) is
    /// applied: the kernel uses max(conf.all, conf.IF).
    pub fn effective_rp_filter(&self) -> u8 {
        if self.rp_filter_fix {
            2
        } else {
            self.rp_filter
        }
    }

    /// Whether strict rp_filter drops the client's SYN on the nodes: strict mode and the
    /// client reached through another interface than ccd_ecfe_om (no /32 route back via the
    /// om gateway).
    pub fn syn_dropped_by_rp_filter(&self) -> bool {
        self.effective_rp_filter() == 1 && !self.return_route_fix
    }

    /// The ingress-tier pods.
    pub fn ingress_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| p.tier == Tier::Ingress)
    }

    /// The backend-tier pods.
    pub fn backend_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| p.tier == Tier::Backend)
    }

    /// The nodes whose speaker announces the VIP, as MetalLB's BGP mode decides it
    /// (metallb `speaker/bgp_controller.go`, `ShouldAnnounce`): with externalTrafficPolicy
    /// Cluster, every speaker announces as long as the Service has a ready endpoint anywhere;
    /// with Local, only nodes that host a ready endpoint do. With no endpoints nobody does.
    pub fn announcing_nodes(&self) -> Vec<&Node> {
        let ingress: Vec<&Pod> = self.ingress_pods().collect();
        if ingress.is_empty() {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|n| !self.etp_local || ingress.iter().any(|p| p.node == n.name))
            .collect()
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The pod with this IP, if any.
    pub fn pod_by_ip(&self, ip: Ipv4Addr) -> Option<&Pod> {
        self.pods.iter().find(|p| p.ip == ip)
    }

    /// The node owning this om address.
    pub fn node_by_om_ip(&self, ip: Ipv4Addr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.om_ip == ip)
    }
}

fn leaves() -> Vec<Leaf> {
    vec![
        Leaf {
            name: "leaf-a",
            uplink_ip: Ipv4Addr::new(10, 90, 0, 1),
            edge_ip: Ipv4Addr::new(10, 90, 0, 2),
            om_ip: Ipv4Addr::new(10, 33, 151, 66),
            anycast: true,
        },
        Leaf {
            name: "leaf-b",
            uplink_ip: Ipv4Addr::new(10, 90, 0, 5),
            edge_ip: Ipv4Addr::new(10, 90, 0, 6),
            om_ip: Ipv4Addr::new(10, 33, 151, 67),
            anycast: false,
        },
    ]
}

fn nodes() -> Vec<Node> {
    (1..=3u8)
        .map(|i| Node {
            name: format!("node-{i}"),
            index: i,
            om_ip: Ipv4Addr::new(10, 33, 151, 67 + i),
            traffic_ip: Ipv4Addr::new(10, 33, 152, 73 + i),
            internal_ip: Ipv4Addr::new(10, 0, 10, 100 + i),
            pod_cidr: format!("192.168.{i}.0/24"),
        })
        .collect()
}

fn pods(with_ingress: bool) -> Vec<Pod> {
    let mut v = Vec::new();
    if with_ingress {
        v.push(Pod {
            namespace: INGRESS_NS,
            name: "ingress-nginx-controller-a".into(),
            node: "node-1".into(),
            ip: Ipv4Addr::new(192, 168, 1, 10),
            port: 80,
            tier: Tier::Ingress,
        });
        v.push(Pod {
            namespace: INGRESS_NS,
            name: "ingress-nginx-controller-b".into(),
            node: "node-2".into(),
            ip: Ipv4Addr::new(192, 168, 2, 10),
            port: 80,
            tier: Tier::Ingress,
        });
    }
    v.push(Pod {
        namespace: BACKEND_NS,
        name: "backend-0".into(),
        node: "node-3".into(),
        ip: Ipv4Addr::new(192, 168, 3, 20),
        port: BACKEND_PORT,
        tier: Tier::Backend,
    });
    v.push(Pod {
        namespace: BACKEND_NS,
        name: "backend-1".into(),
        node: "node-1".into(),
        ip: Ipv4Addr::new(192, 168, 1, 20),
        port: BACKEND_PORT,
        tier: Tier::Backend,
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_scenario_exists() {
        for name in SCENARIOS {
            let s = Scenario::by_name(name).expect("listed scenario");
            assert_eq!(s.name, *name);
        }
        assert!(matches!(
            Scenario::by_name("nope"),
            Err(LabError::UnknownScenario(..))
        ));
    }

    #[test]
    fn announcing_nodes_follow_metallb() {
        let names = |s: &Scenario| {
            s.announcing_nodes()
                .iter()
                .map(|n| n.name.clone())
                .collect::<Vec<_>>()
        };
        let seed = Scenario::by_name("seed").unwrap();
        assert_eq!(names(&seed), ["node-1", "node-2", "node-3"]);
        // Only node-1 and node-2 host an ingress pod.
        let local = Scenario::by_name("etp-local").unwrap();
        assert_eq!(names(&local), ["node-1", "node-2"]);
        let none = Scenario::by_name("no-endpoints").unwrap();
        assert!(names(&none).is_empty());
    }

    #[test]
    fn leak_scenarios() {
        let loose = Scenario::by_name("loose-leak").unwrap();
        assert_eq!(loose.traffic_vrf, OM_VRF);
        assert_eq!(loose.effective_rp_filter(), 2);
        assert!(!loose.syn_dropped_by_rp_filter());
        let strict = Scenario::by_name("strict-leak").unwrap();
        assert!(strict.syn_dropped_by_rp_filter());
        assert_eq!(strict.expected_verdict, "rp-filter");
        let rpfix = Scenario::by_name("strict-leak-rpfix").unwrap();
        assert!(!rpfix.syn_dropped_by_rp_filter());
        assert_eq!(rpfix.expected_verdict, "no-route");
        let routefix = Scenario::by_name("strict-leak-routefix").unwrap();
        assert!(!routefix.syn_dropped_by_rp_filter());
        assert_eq!(routefix.expected_verdict, "delivered");
        let seed = Scenario::by_name("seed").unwrap();
        assert_eq!(seed.traffic_vrf, TRAFFIC_VRF);
        assert!(Scenario::by_name("rp-filter-strict")
            .unwrap()
            .syn_dropped_by_rp_filter());
    }
}
