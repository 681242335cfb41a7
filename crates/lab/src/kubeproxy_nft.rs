//! kube-proxy's nftables mode for the scenario's two Services: the `nft -f` transaction that
//! kube-proxy's nftables proxier writes (layout in `kubepath_netfilter_gen::kube_proxy_nft`,
//! which follows kubernetes v1.29 `pkg/proxy/nftables/proxier.go`), with the lab's kube-proxy
//! settings: `--cluster-cidr` 192.168.0.0/16, masquerade bit 14, NodePorts on every local
//! address. The same Services, ports and endpoints as the iptables mode in [`crate::kubeproxy`],
//! so a scenario in either mode must give the same observation.

use kubepath_netfilter_gen::kube_proxy_nft::{render, NftEndpoint, NftProxyConfig, NftServicePort};

use crate::scenario::{
    Node, Pod, Scenario, BACKEND_CLUSTER_IP, BACKEND_NS, BACKEND_PORT, BACKEND_SVC, CLUSTER_CIDR,
    INGRESS_CLUSTER_IP, INGRESS_NODE_PORT, INGRESS_NS, INGRESS_SVC, VIP, VIP_PORT,
};

fn endpoints<'a>(pods: impl Iterator<Item = &'a Pod>, node: &Node) -> Vec<NftEndpoint> {
    pods.map(|p| NftEndpoint {
        ip: p.ip,
        port: p.port,
        local: p.node == node.name,
    })
    .collect()
}

/// The `nft -f` input kube-proxy in nftables mode would write on `node` for `scenario`.
pub fn node_rules(scenario: &Scenario, node: &Node) -> String {
    let cfg = NftProxyConfig {
        cluster_cidr: Some(CLUSTER_CIDR.to_string()),
        ..NftProxyConfig::default()
    };
    let services = [
        NftServicePort {
            namespace: INGRESS_NS.into(),
            name: INGRESS_SVC.into(),
            port_name: "http".into(),
            protocol: "tcp".into(),
            cluster_ip: Some(INGRESS_CLUSTER_IP),
            port: VIP_PORT,
            node_port: Some(INGRESS_NODE_PORT),
            external_ips: Vec::new(),
            lb_ips: vec![VIP],
            source_ranges: Vec::new(),
            etp_local: scenario.etp_local,
            affinity_seconds: None,
            endpoints: endpoints(scenario.ingress_pods(), node),
        },
        NftServicePort {
            namespace: BACKEND_NS.into(),
            name: BACKEND_SVC.into(),
            port_name: "http".into(),
            protocol: "tcp".into(),
            cluster_ip: Some(BACKEND_CLUSTER_IP),
            port: BACKEND_PORT,
            node_port: None,
            external_ips: Vec::new(),
            lb_ips: Vec::new(),
            source_ranges: Vec::new(),
            etp_local: false,
            affinity_seconds: None,
            endpoints: endpoints(scenario.backend_pods(), node),
        },
    ];
    render(&cfg, &services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_the_scenario() {
        let seed = Scenario::by_name("seed-nft").unwrap();
        let text = node_rules(&seed, seed.node("node-3").unwrap());
        assert!(text.contains("add table ip kube-proxy"));
        // Two ingress endpoints: numgen over two.
        assert!(text.contains("numgen random mod 2"), "{text}");
        assert!(text.contains("dnat to 192.168.1.10:80"), "{text}");
        assert!(text.contains("10.33.151.160 . tcp . 80"), "{text}");
        assert!(text.contains("masquerade fully-random"), "{text}");
    }
}
