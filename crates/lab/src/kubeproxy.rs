//! kube-proxy's iptables mode, as it writes its rules for the scenario's two Services, in the
//! `iptables-restore` format that kube-proxy itself feeds to `iptables-restore`.
//!
//! The layout follows kube-proxy v1.18's `pkg/proxy/iptables/proxier.go` (`syncProxyRules`),
//! the version of the seed's cluster: `KUBE-SERVICES` -> `KUBE-FW-*` (load-balancer IP) ->
//! `KUBE-MARK-MASQ` + `KUBE-SVC-*` (or `KUBE-XLB-*` for externalTrafficPolicy Local) ->
//! `KUBE-SEP-*` with `statistic --mode random --probability 1/(n-i)` -> `DNAT`; the mark 0x4000
//! is masqueraded in `KUBE-POSTROUTING`, written in the three-rule form of later releases
//! (v1.19+: `! --mark 0x4000/0x4000 -j RETURN`, `MARK --set-xmark 0x4000/0x0`,
//! `MASQUERADE --random-fully`; v1.18 had one `-m mark --mark 0x4000/0x4000 -j MASQUERADE`),
//! which exercises RETURN and the XOR mark as well. A Service without endpoints gets `REJECT` rules in the
//! filter table (`KUBE-SERVICES` for the cluster IP, `KUBE-EXTERNAL-SERVICES` for external and
//! load-balancer IPs and node ports). Chain names are kube-proxy's: the first 16 characters of
//! the base32 of SHA-256 over `namespace/name:port` + protocol (+ endpoint for `KUBE-SEP-*`);
//! the unit test checks them against the names in the seed.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::scenario::{
    Node, Pod, Scenario, BACKEND_CLUSTER_IP, BACKEND_NS, BACKEND_PORT, BACKEND_SVC, CLUSTER_CIDR,
    INGRESS_CLUSTER_IP, INGRESS_NODE_PORT, INGRESS_NS, INGRESS_SVC, VIP, VIP_PORT,
};

/// RFC 4648 base32 (the standard alphabet), as Go's `base32.StdEncoding` (kube-proxy keeps a
/// prefix of it, so padding never shows).
fn base32(data: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(data)
}

fn hash16(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    base32(&digest)[..16].to_string()
}

/// `KUBE-SVC-…` / `KUBE-FW-…` / `KUBE-XLB-…` suffix for a service port ("ns/name:port").
pub fn port_proto_hash(service_port: &str, protocol: &str) -> String {
    hash16(&format!("{service_port}{protocol}"))
}

/// `KUBE-SEP-…` name for one endpoint ("ip:port") of a service port.
pub fn endpoint_chain(service_port: &str, protocol: &str, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash16(&format!("{service_port}{protocol}{endpoint}"))
    )
}

struct SvcPort<'a> {
    /// "ns/name:portname"
    name: String,
    cluster_ip: std::net::Ipv4Addr,
    port: u16,
    /// Load-balancer IP and node port, for the LoadBalancer Service.
    lb: Option<(std::net::Ipv4Addr, u16)>,
    local: bool,
    endpoints: Vec<&'a Pod>,
}

/// The `iptables-restore` input kube-proxy would write on `node` for `scenario`.
pub fn node_rules(scenario: &Scenario, node: &Node) -> String {
    let services = [
        SvcPort {
            name: format!("{INGRESS_NS}/{INGRESS_SVC}:http"),
            cluster_ip: INGRESS_CLUSTER_IP,
            port: VIP_PORT,
            lb: Some((VIP, INGRESS_NODE_PORT)),
            local: scenario.etp_local,
            endpoints: scenario.ingress_pods().collect(),
        },
        SvcPort {
            name: format!("{BACKEND_NS}/{BACKEND_SVC}:http"),
            cluster_ip: BACKEND_CLUSTER_IP,
            port: BACKEND_PORT,
            lb: None,
            local: false,
            endpoints: scenario.backend_pods().collect(),
        },
    ];

    let mut filter_rules = String::new();
    let mut nat_chains = String::new();
    let mut nat_rules = String::new();

    for svc in &services {
        let h = port_proto_hash(&svc.name, "tcp");
        let svc_chain = format!("KUBE-SVC-{h}");
        let c = &svc.name;
        if svc.endpoints.is_empty() {
            let _ = writeln!(
                filter_rules,
                "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{c} has no endpoints\" -m tcp --dport {} -j REJECT --reject-with icmp-port-unreachable",
                svc.cluster_ip, svc.port
            );
            if let Some((lb_ip, node_port)) = svc.lb {
                let _ = writeln!(
                    filter_rules,
                    "-A KUBE-EXTERNAL-SERVICES -d {lb_ip}/32 -p tcp -m comment --comment \"{c} has no endpoints\" -m tcp --dport {} -j REJECT --reject-with icmp-port-unreachable",
                    svc.port
                );
                let _ = writeln!(
                    filter_rules,
                    "-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"{c} has no endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport {node_port} -j REJECT --reject-with icmp-port-unreachable"
                );
            }
            continue;
        }
        let _ = writeln!(nat_chains, ":{svc_chain} - [0:0]");
        let _ = writeln!(
            nat_rules,
            "-A KUBE-SERVICES ! -s {CLUSTER_CIDR} -d {}/32 -p tcp -m comment --comment \"{c} cluster IP\" -m tcp --dport {} -j KUBE-MARK-MASQ",
            svc.cluster_ip, svc.port
        );
        let _ = writeln!(
            nat_rules,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{c} cluster IP\" -m tcp --dport {} -j {svc_chain}",
            svc.cluster_ip, svc.port
        );
        let xlb_chain = format!("KUBE-XLB-{h}");
        if let Some((lb_ip, node_port)) = svc.lb {
            let fw_chain = format!("KUBE-FW-{h}");
            let _ = writeln!(nat_chains, ":{fw_chain} - [0:0]");
            let _ = writeln!(
                nat_rules,
                "-A KUBE-SERVICES -d {lb_ip}/32 -p tcp -m comment --comment \"{c} loadbalancer IP\" -m tcp --dport {} -j {fw_chain}",
                svc.port
            );
            if svc.local {
                let _ = writeln!(
                    nat_rules,
                    "-A {fw_chain} -m comment --comment \"{c} loadbalancer IP\" -j {xlb_chain}"
                );
            } else {
                let _ = writeln!(
                    nat_rules,
                    "-A {fw_chain} -m comment --comment \"{c} loadbalancer IP\" -j KUBE-MARK-MASQ"
                );
                let _ = writeln!(
                    nat_rules,
                    "-A {fw_chain} -m comment --comment \"{c} loadbalancer IP\" -j {svc_chain}"
                );
            }
            let _ = writeln!(
                nat_rules,
                "-A {fw_chain} -m comment --comment \"{c} loadbalancer IP\" -j KUBE-MARK-DROP"
            );
            if svc.local {
                let _ = writeln!(
                    nat_rules,
                    "-A KUBE-NODEPORTS -s 127.0.0.0/8 -p tcp -m comment --comment \"{c}\" -m tcp --dport {node_port} -j KUBE-MARK-MASQ"
                );
                let _ = writeln!(
                    nat_rules,
                    "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{c}\" -m tcp --dport {node_port} -j {xlb_chain}"
                );
            } else {
                let _ = writeln!(
                    nat_rules,
                    "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{c}\" -m tcp --dport {node_port} -j KUBE-MARK-MASQ"
                );
                let _ = writeln!(
                    nat_rules,
                    "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{c}\" -m tcp --dport {node_port} -j {svc_chain}"
                );
            }
        }
        // KUBE-SVC: one rule per endpoint; rule i of n matches with probability 1/(n-i).
        let n = svc.endpoints.len();
        let mut sep_chains = Vec::new();
        for (i, pod) in svc.endpoints.iter().enumerate() {
            let ep = format!("{}:{}", pod.ip, pod.port);
            let sep = endpoint_chain(&svc.name, "tcp", &ep);
            let _ = writeln!(nat_chains, ":{sep} - [0:0]");
            if i + 1 < n {
                let p = 1.0 / (n - i) as f64;
                let _ = writeln!(
                    nat_rules,
                    "-A {svc_chain} -m comment --comment \"{c}\" -m statistic --mode random --probability {p:.11} -j {sep}"
                );
            } else {
                let _ = writeln!(
                    nat_rules,
                    "-A {svc_chain} -m comment --comment \"{c}\" -j {sep}"
                );
            }
            let _ = writeln!(
                nat_rules,
                "-A {sep} -s {}/32 -m comment --comment \"{c}\" -j KUBE-MARK-MASQ",
                pod.ip
            );
            let _ = writeln!(
                nat_rules,
                "-A {sep} -p tcp -m comment --comment \"{c}\" -m tcp -j DNAT --to-destination {ep}"
            );
            sep_chains.push((sep, *pod));
        }
        if svc.local && svc.lb.is_some() {
            let _ = writeln!(nat_chains, ":{xlb_chain} - [0:0]");
            let _ = writeln!(
                nat_rules,
                "-A {xlb_chain} -s {CLUSTER_CIDR} -m comment --comment \"Redirect pods trying to reach external loadbalancer VIP to clusterIP\" -j {svc_chain}"
            );
            let _ = writeln!(
                nat_rules,
                "-A {xlb_chain} -m comment --comment \"masquerade LOCAL traffic for {c} LB IP\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                nat_rules,
                "-A {xlb_chain} -m comment --comment \"route LOCAL traffic for {c} LB IP to service chain\" -m addrtype --src-type LOCAL -j {svc_chain}"
            );
            let local: Vec<&(String, &Pod)> = sep_chains
                .iter()
                .filter(|(_, p)| p.node == node.name)
                .collect();
            if local.is_empty() {
                let _ = writeln!(
                    nat_rules,
                    "-A {xlb_chain} -m comment --comment \"{c} has no local endpoints\" -j KUBE-MARK-DROP"
                );
            }
            let m = local.len();
            for (i, (sep, _)) in local.iter().enumerate() {
                if i + 1 < m {
                    let p = 1.0 / (m - i) as f64;
                    let _ = writeln!(
                        nat_rules,
                        "-A {xlb_chain} -m comment --comment \"Balancing rule {i} for {c}\" -m statistic --mode random --probability {p:.11} -j {sep}"
                    );
                } else {
                    let _ = writeln!(
                        nat_rules,
                        "-A {xlb_chain} -m comment --comment \"Balancing rule {i} for {c}\" -j {sep}"
                    );
                }
            }
        }
    }

    let mut out = String::new();
    out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    out.push_str(":KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-SERVICES - [0:0]\n");
    out.push_str("-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n");
    out.push_str("-A INPUT -j KUBE-FIREWALL\n");
    out.push_str(
        "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n",
    );
    out.push_str("-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A OUTPUT -j KUBE-FIREWALL\n");
    out.push_str("-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP\n");
    out.push_str("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
    out.push_str("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n");
    let _ = writeln!(out, "-A KUBE-FORWARD -s {CLUSTER_CIDR} -m comment --comment \"kubernetes forwarding conntrack pod source rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    let _ = writeln!(out, "-A KUBE-FORWARD -d {CLUSTER_CIDR} -m comment --comment \"kubernetes forwarding conntrack pod destination rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    out.push_str(&filter_rules);
    out.push_str("COMMIT\n");

    out.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    out.push_str(":KUBE-MARK-DROP - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]\n");
    out.push_str(&nat_chains);
    out.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    out.push_str(
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    out.push_str("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    out.push_str("-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000\n");
    out.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    out.push_str("-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n");
    out.push_str("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n");
    out.push_str(&nat_rules);
    out.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_the_seed() {
        // The seed's chains (SCENARIO.md, steps 9 and 12).
        assert_eq!(
            port_proto_hash("ingress-nginx/ingress-nginx:https", "tcp"),
            "4E7KSV2ABIFJRAUZ"
        );
        assert_eq!(
            port_proto_hash("ingress-nginx/ingress-nginx:http", "tcp"),
            "REQ4FPVT7WYF4VLA"
        );
        assert_eq!(
            port_proto_hash("monitoring/eric-pm-server:http", "tcp"),
            "6K4R6JTKTVNBU5UP"
        );
        assert_eq!(
            endpoint_chain(
                "ingress-nginx/ingress-nginx:https",
                "tcp",
                "192.168.103.142:443"
            ),
            "KUBE-SEP-VNARWU5QWGSG2GUG"
        );
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn rules_follow_the_scenario() {
        let seed = Scenario::by_name("seed").unwrap();
        let n3 = seed.node("node-3").unwrap();
        let text = node_rules(&seed, n3);
        assert!(text.contains("-j KUBE-FW-REQ4FPVT7WYF4VLA"));
        assert!(text.contains("--probability 0.50000000000"));
        assert!(text.contains("-j DNAT --to-destination 192.168.1.10:80"));
        assert!(!text.contains("KUBE-XLB"));

        let local = Scenario::by_name("etp-local").unwrap();
        let on_n3 = node_rules(&local, local.node("node-3").unwrap());
        assert!(on_n3.contains("has no local endpoints\" -j KUBE-MARK-DROP"));
        let on_n1 = node_rules(&local, local.node("node-1").unwrap());
        assert!(on_n1.contains("Balancing rule 0 for ingress-nginx/ingress-nginx:http"));
        assert!(!on_n1.contains("has no local endpoints"));

        let none = Scenario::by_name("no-endpoints").unwrap();
        let t = node_rules(&none, none.node("node-1").unwrap());
        assert!(t.contains("-A KUBE-EXTERNAL-SERVICES -d 10.33.151.160/32 -p tcp -m comment --comment \"ingress-nginx/ingress-nginx:http has no endpoints\""));
        assert!(!t.contains("KUBE-FW-"));
    }

    #[test]
    fn snapshots_of_the_rulesets() {
        let seed = Scenario::by_name("seed").unwrap();
        insta::assert_snapshot!(
            "seed_node_1",
            node_rules(&seed, seed.node("node-1").unwrap())
        );
        let local = Scenario::by_name("etp-local").unwrap();
        insta::assert_snapshot!(
            "etp_local_node_3",
            node_rules(&local, local.node("node-3").unwrap())
        );
        let none = Scenario::by_name("no-endpoints").unwrap();
        insta::assert_snapshot!(
            "no_endpoints_node_1",
            node_rules(&none, none.node("node-1").unwrap())
        );
    }
}
