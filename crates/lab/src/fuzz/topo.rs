//! The seeded generator of fuzz topologies (ChaCha8 from one `u64` seed: the same seed gives
//! the same topology on every machine and every run).
//!
//! The family (docs/lab.md, "Random whole-path differential"):
//!
//! ```text
//!  client 10.210.150.87 -- edge (static ECMP route to the VIP over the entry routers)
//!                           |  10.90.0.4i+1/30
//!            entry routers leaf-1..leaf-3 (zebra, VRF om_vr): a route to the client prefix
//!            via the edge or none; a static (ECMP) route to the VIP via a random subset of
//!            the nodes (or none); optionally also on the traffic segment
//!                           |  om segment 10.33.151.64/27
//!            nodes node-1..node-6: ccd_ecfe_om .71.., optional ecfe_traf1 on the traffic
//!            segment 10.33.152.64/27, eth0 on the cluster network 10.0.10.0/24
//!                           |  traffic segment (only with further routers)
//!            further routers gw-1, gw-2 (zebra, VRF om_vr or traffic_vr for the whole
//!            segment): no route to the client, or one via an entry router's traffic address,
//!            or one via the other further router (a loop when both point at each other)
//! ```
//!
//! Node knobs: the main table's default (one gateway, or a multipath default over two, with
//! random weights), up to two policy rules (`from <VIP>/32`, `to <client prefix>`, `iif
//! ccd_ecfe_om` or `fwmark 0x4000/0x4000`, random priority, a table 100/101 with a default via
//! a random gateway, or empty), rp_filter 0/1/2 per interface and for `all`.
//! Service knobs: externalTrafficPolicy Cluster/Local, 1-4 ingress endpoints and 1-2 backends
//! on random nodes, `:FORWARD DROP` (with a CNI-style pod-to-pod ACCEPT). With Local the
//! entry routers only route the VIP to nodes with a local endpoint (as MetalLB announces).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{
    Node, Pod, ProxyMode, Scenario, Tier, BACKEND_NS, BACKEND_PORT, INGRESS_NS, OM_VRF, TRAFFIC_VRF,
};

/// An entry router: the client's traffic enters the fabric here.
#[derive(Debug, Clone)]
pub struct EntryRouter {
    pub name: String,
    /// On the link to the edge.
    pub uplink_ip: Ipv4Addr,
    /// The edge's address on that link.
    pub edge_ip: Ipv4Addr,
    /// On the om segment.
    pub om_ip: Ipv4Addr,
    /// On the traffic segment, if it is attached there.
    pub traffic_ip: Option<Ipv4Addr>,
    /// `ip route add <client prefix> via <edge>`.
    pub route_back: bool,
    /// The VIP's static route: the nodes (indices) it points to (empty: no route).
    pub vip_nodes: Vec<usize>,
}

/// A router behind the nodes' traffic interfaces.
#[derive(Debug, Clone)]
pub struct FurtherRouter {
    pub name: String,
    pub ip: Ipv4Addr,
    /// Its route to the client prefix: via this gateway, or none.
    pub route_back: Option<Ipv4Addr>,
}

/// Which packets a policy rule selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// `from <VIP>/32`
    FromVip,
    /// `to <client prefix>`
    ToClient,
    /// `iif ccd_ecfe_om` (the request's arrival interface; not the rp_filter lookup's, which
    /// the kernel makes with iif = lo)
    IifOm,
    /// `fwmark 0x4000/0x4000` (kube-proxy's masquerade mark, set in nat PREROUTING before the
    /// forwarding decision)
    FwmarkMasq,
}

#[derive(Debug, Clone)]
pub struct PolicyRule {
    pub selector: Selector,
    pub priority: u32,
    pub table: u32,
    /// The table's default route (None: the table stays empty and the lookup falls through).
    pub gateway: Option<Gateway>,
}

/// A next hop of a node: address and the node's interface towards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    pub ip: Ipv4Addr,
    pub dev: &'static str,
    /// `weight` in a multipath route (1-3).
    pub weight: u8,
}

#[derive(Debug, Clone)]
pub struct FuzzNode {
    pub name: String,
    pub index: u8,
    pub om_ip: Ipv4Addr,
    pub traffic_ip: Option<Ipv4Addr>,
    pub internal_ip: Ipv4Addr,
    /// The main table's default: one gateway, or two (a multipath default).
    pub default: Vec<Gateway>,
    pub rules: Vec<PolicyRule>,
    pub rp_om: u8,
    pub rp_traffic: u8,
    pub rp_all: u8,
}

/// One generated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    pub seed: u64,
    pub entries: Vec<EntryRouter>,
    pub further: Vec<FurtherRouter>,
    /// The VRF name of the traffic segment's routers.
    pub traffic_vrf: &'static str,
    pub nodes: Vec<FuzzNode>,
    pub etp_local: bool,
    pub forward_drop: bool,
    /// kube-proxy's data plane on every node. In nftables mode a `:FORWARD DROP` is still
    /// written with `iptables-restore` (iptables-nft: `table ip filter` beside `table ip
    /// kube-proxy`), the way a CNI's iptables rules sit beside kube-proxy's nft table.
    pub proxy_mode: ProxyMode,
    /// The node (index) of each ingress pod.
    pub ingress: Vec<usize>,
    /// The node (index) of each backend pod.
    pub backends: Vec<usize>,
}

pub const NODE_OM_IF: &str = crate::scenario::NODE_OM_IF;
pub const NODE_TRAFFIC_IF: &str = crate::scenario::NODE_TRAFFIC_IF;

fn rp(rng: &mut ChaCha8Rng) -> u8 {
    // Mostly off, as most nodes run; strict and loose often enough to matter.
    *[0u8, 0, 1, 2].choose(rng).unwrap_or(&0)
}

impl Topology {
    /// The topology of `seed`.
    pub fn generate(seed: u64) -> Topology {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n_entries = rng.random_range(1..=3usize);
        let n_further = rng.random_range(0..=2usize);
        let n_nodes = rng.random_range(2..=6usize);
        let traffic_vrf = if n_further > 0 && rng.random_bool(0.3) {
            TRAFFIC_VRF
        } else {
            OM_VRF
        };
        let etp_local = rng.random_bool(0.3);
        let forward_drop = rng.random_bool(0.2);

        // Endpoints.
        let n_ingress = rng.random_range(1..=4usize);
        let ingress: Vec<usize> = (0..n_ingress)
            .map(|_| rng.random_range(0..n_nodes))
            .collect();
        let n_backends = rng.random_range(1..=2usize);
        let backends: Vec<usize> = (0..n_backends)
            .map(|_| rng.random_range(0..n_nodes))
            .collect();

        let mut entries = Vec::new();
        for i in 0..n_entries {
            let i8 = i as u8;
            let traffic_ip = (n_further > 0 && traffic_vrf == OM_VRF && rng.random_bool(0.5))
                .then(|| Ipv4Addr::new(10, 33, 152, 69 + i8));
            // The VIP's route: a random subset of the candidate nodes (with Local only nodes
            // with a local endpoint, as MetalLB would announce), rarely none.
            let mut candidates: Vec<usize> = (0..n_nodes)
                .filter(|n| !etp_local || ingress.contains(n))
                .collect();
            candidates.shuffle(&mut rng);
            let k = if rng.random_bool(0.08) {
                0
            } else {
                rng.random_range(1..=candidates.len().max(1))
            };
            let mut vip_nodes: Vec<usize> = candidates.into_iter().take(k).collect();
            vip_nodes.sort_unstable();
            entries.push(EntryRouter {
                name: format!("leaf-{}", i + 1),
                uplink_ip: Ipv4Addr::new(10, 90, 0, 4 * i8 + 1),
                edge_ip: Ipv4Addr::new(10, 90, 0, 4 * i8 + 2),
                om_ip: Ipv4Addr::new(10, 33, 151, 66 + i8),
                traffic_ip,
                route_back: rng.random_bool(0.75),
                vip_nodes,
            });
        }
        let mut further = Vec::new();
        for k in 0..n_further {
            let ip = Ipv4Addr::new(10, 33, 152, 65 + k as u8);
            let mut options: Vec<Option<Ipv4Addr>> = vec![None];
            if traffic_vrf == OM_VRF {
                options.extend(entries.iter().filter_map(|e| e.traffic_ip).map(Some));
                if n_further == 2 {
                    options.push(Some(Ipv4Addr::new(10, 33, 152, 65 + (1 - k as u8))));
                }
            }
            let route_back = options.choose(&mut rng).copied().flatten();
            further.push(FurtherRouter {
                name: format!("gw-{}", k + 1),
                ip,
                route_back,
            });
        }

        let mut nodes = Vec::new();
        for j in 0..n_nodes {
            let j8 = j as u8;
            let traffic_ip = (n_further > 0 && rng.random_bool(0.7))
                .then(|| Ipv4Addr::new(10, 33, 152, 74 + j8));
            let mut gws: Vec<Gateway> = entries
                .iter()
                .map(|e| Gateway {
                    ip: e.om_ip,
                    dev: NODE_OM_IF,
                    weight: 1,
                })
                .collect();
            if traffic_ip.is_some() {
                gws.extend(further.iter().map(|f| Gateway {
                    ip: f.ip,
                    dev: NODE_TRAFFIC_IF,
                    weight: 1,
                }));
                gws.extend(entries.iter().filter_map(|e| {
                    e.traffic_ip.map(|ip| Gateway {
                        ip,
                        dev: NODE_TRAFFIC_IF,
                        weight: 1,
                    })
                }));
            }
            let mut default = Vec::new();
            if let Some(g) = gws.choose(&mut rng) {
                default.push(*g);
            }
            if gws.len() >= 2 && rng.random_bool(0.25) {
                let others: Vec<Gateway> = gws
                    .iter()
                    .copied()
                    .filter(|g| Some(g) != default.first())
                    .collect();
                if let Some(g) = others.choose(&mut rng) {
                    default.push(*g);
                }
                if rng.random_bool(0.4) {
                    for g in &mut default {
                        g.weight = rng.random_range(1..=3u8);
                    }
                }
            }
            let mut rules = Vec::new();
            if rng.random_bool(0.35) {
                let n_rules = rng.random_range(1..=2usize);
                for r in 0..n_rules {
                    let selector = *[
                        Selector::FromVip,
                        Selector::FromVip,
                        Selector::ToClient,
                        Selector::ToClient,
                        Selector::IifOm,
                        Selector::FwmarkMasq,
                    ]
                    .choose(&mut rng)
                    .unwrap_or(&Selector::ToClient);
                    let gateway = if rng.random_bool(0.85) {
                        gws.choose(&mut rng).copied()
                    } else {
                        None
                    };
                    rules.push(PolicyRule {
                        selector,
                        priority: rng.random_range(100..32000u32),
                        table: 100 + r as u32,
                        gateway,
                    });
                }
            }
            nodes.push(FuzzNode {
                name: format!("node-{}", j + 1),
                index: j8 + 1,
                om_ip: Ipv4Addr::new(10, 33, 151, 71 + j8),
                traffic_ip,
                internal_ip: Ipv4Addr::new(10, 0, 10, 101 + j8),
                default,
                rules,
                rp_om: rp(&mut rng),
                rp_traffic: rp(&mut rng),
                rp_all: if rng.random_bool(0.2) {
                    rp(&mut rng)
                } else {
                    0
                },
            });
        }
        // Drawn last, so every earlier knob of a seed is what it was before this knob existed.
        let proxy_mode = if rng.random_bool(0.4) {
            ProxyMode::Nftables
        } else {
            ProxyMode::Iptables
        };
        Topology {
            seed,
            entries,
            further,
            traffic_vrf,
            nodes,
            etp_local,
            forward_drop,
            proxy_mode,
            ingress,
            backends,
        }
    }

    /// The Kubernetes side as the lab's [`Scenario`], so that kube-proxy's rules, the
    /// Kubernetes objects and the pod servers of the fixed lab serve the fuzz topology too.
    pub fn scenario(&self) -> Scenario {
        let nodes: Vec<Node> = self
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                index: n.index,
                om_ip: n.om_ip,
                traffic_ip: n.traffic_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                internal_ip: n.internal_ip,
                pod_cidr: format!("192.168.{}.0/24", n.index),
            })
            .collect();
        let mut pods = Vec::new();
        for (k, &j) in self.ingress.iter().enumerate() {
            let idx = self.nodes[j].index;
            pods.push(Pod {
                namespace: INGRESS_NS,
                name: format!("ingress-nginx-controller-{}", (b'a' + k as u8) as char),
                node: self.nodes[j].name.clone(),
                ip: Ipv4Addr::new(192, 168, idx, 10 + k as u8),
                port: 80,
                tier: Tier::Ingress,
            });
        }
        for (k, &j) in self.backends.iter().enumerate() {
            let idx = self.nodes[j].index;
            pods.push(Pod {
                namespace: BACKEND_NS,
                name: format!("backend-{k}"),
                node: self.nodes[j].name.clone(),
                ip: Ipv4Addr::new(192, 168, idx, 20 + k as u8),
                port: BACKEND_PORT,
                tier: Tier::Backend,
            });
        }
        Scenario {
            name: "fuzz",
            summary: "a generated topology",
            etp_local: self.etp_local,
            return_route_fix: false,
            return_route_prefix: false,
            rp_filter: 0,
            rp_filter_fix: false,
            traffic_vrf: self.traffic_vrf,
            ingress_has_endpoints: true,
            proxy_mode: self.proxy_mode,
            leaves: Vec::new(),
            nodes,
            pods,
            expected_verdict: "",
            expected_finding: None,
        }
    }

    /// Every router of the snapshot: (name, VRF).
    pub fn routers(&self) -> Vec<(String, &'static str)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), OM_VRF))
            .chain(
                self.further
                    .iter()
                    .map(|f| (f.name.clone(), self.traffic_vrf)),
            )
            .collect()
    }

    /// The router owning `ip`, if any.
    pub fn router_by_ip(&self, ip: Ipv4Addr) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.om_ip == ip || e.traffic_ip == Some(ip) || e.uplink_ip == ip)
            .map(|e| e.name.clone())
            .or_else(|| {
                self.further
                    .iter()
                    .find(|f| f.ip == ip)
                    .map(|f| f.name.clone())
            })
    }

    /// A human-readable description (printed with every disagreement).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {}: {} entry router(s), {} further router(s) (VRF {}), {} nodes, ETP {}, FORWARD {}, kube-proxy {}",
            self.seed,
            self.entries.len(),
            self.further.len(),
            self.traffic_vrf,
            self.nodes.len(),
            if self.etp_local { "Local" } else { "Cluster" },
            if self.forward_drop { "DROP" } else { "ACCEPT" },
            match self.proxy_mode {
                ProxyMode::Iptables => "iptables",
                ProxyMode::Nftables => "nftables",
            }
        );
        for e in &self.entries {
            let vip: Vec<&str> = e
                .vip_nodes
                .iter()
                .map(|&j| self.nodes[j].name.as_str())
                .collect();
            let _ = writeln!(
                s,
                "  {} om {}{}; route to the client: {}; VIP via [{}]",
                e.name,
                e.om_ip,
                e.traffic_ip
                    .map(|t| format!(", traffic {t}"))
                    .unwrap_or_default(),
                if e.route_back { "via edge" } else { "none" },
                vip.join(", ")
            );
        }
        for f in &self.further {
            let _ = writeln!(
                s,
                "  {} {} ({}); route to the client: {}",
                f.name,
                f.ip,
                self.traffic_vrf,
                f.route_back
                    .map(|g| format!("via {g} ({})", self.router_by_ip(g).unwrap_or_default()))
                    .unwrap_or_else(|| "none".into())
            );
        }
        for n in &self.nodes {
            let gw = |g: &Gateway| {
                format!(
                    "{} ({}) dev {}{}",
                    g.ip,
                    self.router_by_ip(g.ip).unwrap_or_default(),
                    g.dev,
                    if g.weight > 1 {
                        format!(" weight {}", g.weight)
                    } else {
                        String::new()
                    }
                )
            };
            let def: Vec<String> = n.default.iter().map(gw).collect();
            let _ = writeln!(
                s,
                "  {} om {}{}; default {}; rp_filter om {} traffic {} all {}",
                n.name,
                n.om_ip,
                n.traffic_ip
                    .map(|t| format!(", traffic {t}"))
                    .unwrap_or_default(),
                if def.len() > 1 {
                    format!("multipath [{}]", def.join(", "))
                } else {
                    def.join(", ")
                },
                n.rp_om,
                n.rp_traffic,
                n.rp_all
            );
            for r in &n.rules {
                let _ = writeln!(
                    s,
                    "    rule {} {} lookup {}: {}",
                    r.priority,
                    match r.selector {
                        Selector::FromVip => "from VIP",
                        Selector::ToClient => "to client prefix",
                        Selector::IifOm => "iif ccd_ecfe_om",
                        Selector::FwmarkMasq => "fwmark 0x4000/0x4000",
                    },
                    r.table,
                    r.gateway
                        .as_ref()
                        .map(|g| format!("default via {}", gw(g)))
                        .unwrap_or_else(|| "empty table".into())
                );
            }
        }
        let sc = self.scenario();
        for p in &sc.pods {
            let _ = writeln!(s, "  pod {} {} on {}", p.key(), p.ip, p.node);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_within_the_family() {
        for seed in 0..200u64 {
            let a = Topology::generate(seed);
            let b = Topology::generate(seed);
            assert_eq!(a.describe(), b.describe());
            assert!((1..=3).contains(&a.entries.len()));
            assert!(a.further.len() <= 2);
            assert!((2..=6).contains(&a.nodes.len()));
            assert!((1..=4).contains(&a.ingress.len()));
            for n in &a.nodes {
                assert!(!n.default.is_empty());
                for g in &n.default {
                    assert!(a.router_by_ip(g.ip).is_some());
                }
            }
            if a.etp_local {
                for e in &a.entries {
                    assert!(e.vip_nodes.iter().all(|j| a.ingress.contains(j)));
                }
            }
        }
    }
}
