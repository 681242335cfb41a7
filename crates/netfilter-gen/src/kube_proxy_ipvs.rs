//! kube-proxy's IPVS mode for one node: what `iptables-save`, `ipset save`, `ipvsadm -Ln` and
//! the `kube-ipvs0` addresses of `ip addr` show, from the same Service-port description as the
//! nftables mode ([`NftServicePort`]).
//!
//! The layout follows kube-proxy's `pkg/proxy/ipvs/proxier.go` (kubernetes v1.2x,
//! `syncProxyRules`, `writeIptablesRules`): every ClusterIP, external and LoadBalancer IP is
//! bound to the dummy `kube-ipvs0`; a virtual server (`rr`, `persistent T` for ClientIP
//! affinity) per Service IP and port and per node address and NodePort, real servers = the
//! ready endpoints (only the node's own ones for the external addresses of an
//! externalTrafficPolicy=Local Service), `Masq`, weight 1. iptables only marks for masquerade
//! and masquerades: `KUBE-SERVICES` matches the `KUBE-CLUSTER-IP` / `KUBE-LOAD-BALANCER`
//! hash:ip,port sets (`dst,dst`) and the `KUBE-NODE-PORT-TCP` bitmap:port set,
//! `KUBE-LOAD-BALANCER` / `KUBE-NODE-PORT` mark unless the `-LOCAL` sets name the Service,
//! `KUBE-POSTROUTING` masquerades the hairpin (`KUBE-LOOP-BACK`, hash:ip,port,ip) and the
//! mark.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::kube_proxy_nft::{NftEndpoint, NftServicePort};

/// Node-wide settings of kube-proxy in IPVS mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsProxyConfig {
    /// `--cluster-cidr`: sources outside it are masqueraded when they reach a ClusterIP.
    pub cluster_cidr: Option<String>,
    /// The node's addresses that accept NodePorts (one virtual server per address and
    /// NodePort).
    pub node_ips: Vec<Ipv4Addr>,
    /// The masquerade mark (0x4000 by default).
    pub masquerade_mark: u32,
}

/// One node's IPVS-mode outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsNode {
    /// `iptables-save` (nat and filter).
    pub iptables_save: String,
    /// `ipset save`.
    pub ipset_save: String,
    /// `ipvsadm -Ln`.
    pub ipvsadm: String,
    /// The addresses bound to `kube-ipvs0`.
    pub kube_ipvs0: Vec<Ipv4Addr>,
}

/// kube-proxy's IPVS-mode state on one node for `services`.
pub fn render(cfg: &IpvsProxyConfig, services: &[NftServicePort]) -> IpvsNode {
    let mark = format!("{:#x}", cfg.masquerade_mark);
    let mut sets: Vec<(&str, &str, Vec<String>)> = vec![
        ("KUBE-CLUSTER-IP", "hash:ip,port", Vec::new()),
        ("KUBE-LOAD-BALANCER", "hash:ip,port", Vec::new()),
        ("KUBE-LOAD-BALANCER-LOCAL", "hash:ip,port", Vec::new()),
        ("KUBE-EXTERNAL-IP", "hash:ip,port", Vec::new()),
        ("KUBE-EXTERNAL-IP-LOCAL", "hash:ip,port", Vec::new()),
        ("KUBE-NODE-PORT-TCP", "bitmap:port", Vec::new()),
        ("KUBE-NODE-PORT-LOCAL-TCP", "bitmap:port", Vec::new()),
        ("KUBE-NODE-PORT-UDP", "bitmap:port", Vec::new()),
        ("KUBE-NODE-PORT-LOCAL-UDP", "bitmap:port", Vec::new()),
        ("KUBE-LOOP-BACK", "hash:ip,port,ip", Vec::new()),
    ];
    let mut add = |set: &str, member: String| {
        if let Some(s) = sets.iter_mut().find(|s| s.0 == set) {
            if !s.2.contains(&member) {
                s.2.push(member);
            }
        }
    };
    let mut vs = String::new();
    let mut ipvs0 = Vec::new();
    let virtual_server = |vs: &mut String,
                          proto: &str,
                          addr: Ipv4Addr,
                          port: u16,
                          affinity: Option<u32>,
                          eps: &[&NftEndpoint]| {
        let _ = write!(vs, "{}  {addr}:{port} rr", proto.to_ascii_uppercase());
        if let Some(t) = affinity {
            let _ = write!(vs, " persistent {t}");
        }
        vs.push('\n');
        for e in eps {
            let _ = writeln!(
                vs,
                "  -> {:<28} Masq    1      0          0",
                format!("{}:{}", e.ip, e.port)
            );
        }
    };
    for sp in services {
        let Some(cip) = sp.cluster_ip else { continue };
        let proto = sp.protocol.as_str();
        let all: Vec<&NftEndpoint> = sp.endpoints.iter().collect();
        let local: Vec<&NftEndpoint> = sp.endpoints.iter().filter(|e| e.local).collect();
        let external = if sp.etp_local { &local } else { &all };
        ipvs0.push(cip);
        add("KUBE-CLUSTER-IP", format!("{cip},{proto}:{}", sp.port));
        virtual_server(&mut vs, proto, cip, sp.port, sp.affinity_seconds, &all);
        for ip in &sp.lb_ips {
            ipvs0.push(*ip);
            add("KUBE-LOAD-BALANCER", format!("{ip},{proto}:{}", sp.port));
            if sp.etp_local {
                add(
                    "KUBE-LOAD-BALANCER-LOCAL",
                    format!("{ip},{proto}:{}", sp.port),
                );
            }
            virtual_server(&mut vs, proto, *ip, sp.port, sp.affinity_seconds, external);
        }
        for ip in &sp.external_ips {
            ipvs0.push(*ip);
            add("KUBE-EXTERNAL-IP", format!("{ip},{proto}:{}", sp.port));
            if sp.etp_local {
                add(
                    "KUBE-EXTERNAL-IP-LOCAL",
                    format!("{ip},{proto}:{}", sp.port),
                );
            }
            virtual_server(&mut vs, proto, *ip, sp.port, sp.affinity_seconds, external);
        }
        if let Some(np) = sp.node_port {
            let up = proto.to_ascii_uppercase();
            add(&format!("KUBE-NODE-PORT-{up}"), np.to_string());
            if sp.etp_local {
                add(&format!("KUBE-NODE-PORT-LOCAL-{up}"), np.to_string());
            }
            for ip in &cfg.node_ips {
                virtual_server(&mut vs, proto, *ip, np, sp.affinity_seconds, external);
            }
        }
        for e in &all {
            add(
                "KUBE-LOOP-BACK",
                format!("{},{proto}:{},{}", e.ip, e.port, e.ip),
            );
        }
    }
    ipvs0.sort();
    ipvs0.dedup();

    let mut ipset_save = String::new();
    for (name, ty, members) in &sets {
        let opts = if *ty == "bitmap:port" {
            "range 0-65535".to_string()
        } else {
            "family inet hashsize 1024 maxelem 65536".to_string()
        };
        let _ = writeln!(ipset_save, "create {name} {ty} {opts}");
        for m in members {
            let _ = writeln!(ipset_save, "add {name} {m}");
        }
    }

    let mut nat = String::new();
    let _ = writeln!(nat, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-LOAD-BALANCER - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]");
    let _ = writeln!(
        nat,
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
    );
    let _ = writeln!(
        nat,
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
    );
    let _ = writeln!(
        nat,
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"
    );
    let _ = writeln!(nat, "-A KUBE-LOAD-BALANCER -m comment --comment \"Kubernetes service load balancer ip + port with externalTrafficPolicy=local\" -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN");
    let _ = writeln!(nat, "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ");
    let _ = writeln!(nat, "-A KUBE-MARK-MASQ -j MARK --set-xmark {mark}/{mark}");
    for up in ["TCP", "UDP"] {
        let lower = up.to_ascii_lowercase();
        let _ = writeln!(nat, "-A KUBE-NODE-PORT -p {lower} -m comment --comment \"Kubernetes nodeport {up} port with externalTrafficPolicy=local\" -m set --match-set KUBE-NODE-PORT-LOCAL-{up} dst -j RETURN");
        let _ = writeln!(nat, "-A KUBE-NODE-PORT -p {lower} -m comment --comment \"Kubernetes nodeport {up} port for masquerade purpose\" -m set --match-set KUBE-NODE-PORT-{up} dst -j KUBE-MARK-MASQ");
    }
    let _ = writeln!(nat, "-A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose\" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE");
    let _ = writeln!(
        nat,
        "-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN"
    );
    let _ = writeln!(nat, "-A KUBE-POSTROUTING -j MARK --set-xmark {mark}/0x0");
    let _ = writeln!(nat, "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully");
    let _ = writeln!(nat, "-A KUBE-SERVICES -m comment --comment \"Kubernetes service lb portal\" -m set --match-set KUBE-LOAD-BALANCER dst,dst -j KUBE-LOAD-BALANCER");
    match &cfg.cluster_cidr {
        Some(c) => {
            let _ = writeln!(nat, "-A KUBE-SERVICES ! -s {c} -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ");
        }
        None => {
            let _ = writeln!(nat, "-A KUBE-SERVICES -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ");
        }
    }
    let _ = writeln!(nat, "-A KUBE-SERVICES -m comment --comment \"Kubernetes service external ip + port for masquerade and filter purpose\" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ");
    let _ = writeln!(
        nat,
        "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT"
    );
    let _ = writeln!(
        nat,
        "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT"
    );
    let _ = writeln!(
        nat,
        "-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT"
    );
    nat.push_str("COMMIT\n");
    let filter = format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FORWARD - [0:0]\n-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT\n-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n");

    IpvsNode {
        iptables_save: format!("{filter}{nat}"),
        ipset_save,
        ipvsadm: format!("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n{vs}"),
        kube_ipvs0: ipvs0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_service_with_a_load_balancer_ip() {
        let sp = NftServicePort {
            namespace: "web".into(),
            name: "front".into(),
            port_name: "http".into(),
            protocol: "tcp".into(),
            cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 20)),
            port: 80,
            node_port: Some(30080),
            external_ips: Vec::new(),
            lb_ips: vec![Ipv4Addr::new(203, 0, 113, 5)],
            source_ranges: Vec::new(),
            etp_local: true,
            affinity_seconds: None,
            endpoints: vec![
                NftEndpoint {
                    ip: Ipv4Addr::new(10, 244, 1, 5),
                    port: 8080,
                    local: true,
                },
                NftEndpoint {
                    ip: Ipv4Addr::new(10, 244, 2, 5),
                    port: 8080,
                    local: false,
                },
            ],
        };
        let cfg = IpvsProxyConfig {
            cluster_cidr: Some("10.244.0.0/16".into()),
            node_ips: vec![Ipv4Addr::new(192, 168, 1, 4)],
            masquerade_mark: 0x4000,
        };
        let n = render(&cfg, &[sp]);
        assert_eq!(
            n.kube_ipvs0,
            vec![Ipv4Addr::new(10, 96, 0, 20), Ipv4Addr::new(203, 0, 113, 5)]
        );
        // The ClusterIP balances over both endpoints, the LB IP and the NodePort (ETP Local)
        // over the local one only.
        assert!(n
            .ipvsadm
            .contains("TCP  10.96.0.20:80 rr\n  -> 10.244.1.5:8080"));
        let lines: Vec<&str> = n.ipvsadm.lines().collect();
        let lb = lines
            .iter()
            .position(|l| *l == "TCP  203.0.113.5:80 rr")
            .unwrap();
        assert!(
            lines[lb + 1].starts_with("  -> 10.244.1.5:8080 "),
            "{}",
            n.ipvsadm
        );
        assert!(lines[lb + 1].ends_with(" Masq    1      0          0"));
        assert_eq!(lines[lb + 2], "TCP  192.168.1.4:30080 rr");
        assert!(n
            .ipset_save
            .contains("add KUBE-LOAD-BALANCER-LOCAL 203.0.113.5,tcp:80"));
        assert!(n.ipset_save.contains("add KUBE-NODE-PORT-LOCAL-TCP 30080"));
        assert!(n.iptables_save.contains("! -s 10.244.0.0/16 "));
    }
}
