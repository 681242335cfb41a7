//! Issue #14, IPVS mode: a real `ipvsadm -L -n` capture (tests/ipvs/opsnull-251.ipvsadm.txt,
//! see tests/ipvs/README.md) traced with kube-proxy's IPVS-mode iptables rules and ipsets for
//! that cluster (written here the way kube-proxy's IPVS proxier lays them out: the
//! `KUBE-CLUSTER-IP` hash:ip,port set marks traffic from outside the pod CIDR for masquerade,
//! `KUBE-NODE-PORT-TCP` marks NodePort traffic, `KUBE-POSTROUTING` masquerades the mark).
//!
//! The cluster of the capture: nodes 172.16.16.81-83, pod CIDR 10.253.0.0/16 (flannel; the
//! node's own 10.253.102.0 and 10.253.102.1 carry NodePorts), Service CIDR 10.254.0.0/16.
//! This node (vm01) binds the ClusterIPs to kube-ipvs0; its own address is not among the real
//! servers (ipvsadm would print a local one as `Local`): 172.16.16.80 here.
//!
//! Without this kernel's IPVS (the test machine's kernel has no `ip_vs` module: no lab
//! scenario), the expectations are IPVS's documented behaviour (net/netfilter/ipvs: `rr`
//! takes the real servers of weight > 0 in turn; `persistent` keeps a client on its first
//! choice; no real server: ICMP port unreachable) and kube-proxy's masquerade rules.

use std::net::IpAddr;

use kubepath_netfilter::{
    trace, Env, IpSets, IpvsTable, Packet, RouteDecision, RouteOracle, Ruleset, Trace, Verdict,
};

const CAPTURE: &str = include_str!("ipvs/opsnull-251.ipvsadm.txt");
const REDACTED: &str = include_str!("ipvs/kube-vip-781.ipvsadm.txt");

const RULES: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODE-PORT -p tcp -m comment --comment \"Kubernetes nodeport TCP port for masquerade purpose\" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -m mark --mark 0x4000/0x4000 -j MASQUERADE
-A KUBE-SERVICES ! -s 10.253.0.0/16 -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
";

const SETS: &str = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-CLUSTER-IP 10.254.0.1,tcp:443
add KUBE-CLUSTER-IP 10.254.0.2,tcp:53
add KUBE-CLUSTER-IP 10.254.9.36,tcp:443
add KUBE-CLUSTER-IP 10.254.20.57,tcp:1
create KUBE-NODE-PORT-TCP bitmap:port range 0-65535
add KUBE-NODE-PORT-TCP 32429
add KUBE-NODE-PORT-TCP 32767
";

const NODE: &str = "172.16.16.80";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// vm01: its own addresses and kube-ipvs0's; everything else leaves by eth0 (masquerade to
/// the node's address) or, for pods, by flannel.1.
struct Vm01 {
    local: Vec<IpAddr>,
}

impl Vm01 {
    fn new() -> Vm01 {
        Vm01 {
            local: [
                NODE,
                "10.253.102.0",
                "10.253.102.1",
                "10.254.0.1",
                "10.254.0.2",
                "10.254.9.36",
                "10.254.20.57",
            ]
            .iter()
            .map(|s| ip(s))
            .collect(),
        }
    }
}

impl RouteOracle for Vm01 {
    fn route(&self, pkt: &Packet) -> RouteDecision {
        if pkt.dst.is_loopback() || self.local.contains(&pkt.dst) {
            return RouteDecision::Local;
        }
        let pod = matches!(pkt.dst, IpAddr::V4(a) if a.octets()[..2] == [10, 253]);
        RouteDecision::Forward {
            out_iface: Some(if pod { "flannel.1" } else { "eth0" }.into()),
            src_hint: Some(if pod { ip("10.253.102.0") } else { ip(NODE) }),
        }
    }
}

fn run(ipvs: &IpvsTable, src: &str, dst: &str, dport: u16) -> Trace {
    run_from(ipvs, src, dst, dport, false)
}

fn run_from(ipvs: &IpvsTable, src: &str, dst: &str, dport: u16, local_origin: bool) -> Trace {
    let (rs, d) = Ruleset::parse("iptables-save.txt", RULES).unwrap();
    assert!(d.is_empty(), "{d:?}");
    let (sets, _) = IpSets::parse_save("ipset-save.txt", SETS).unwrap();
    let node = Vm01::new();
    let mut pkt = Packet::tcp(ip(src), 40000, ip(dst), dport);
    if !local_origin {
        pkt.in_iface = Some("eth0".into());
    }
    let env = Env {
        local_origin,
        local_addrs: &node.local,
        router: Some(&node),
        ipsets: Some(&sets),
        ipvs: Some(ipvs),
        ..Env::default()
    };
    let t = trace(&rs, &pkt, &env);
    assert_eq!(t, kubepath_netfilter::trace_linear(&rs, &pkt, &env));
    t
}

fn capture() -> IpvsTable {
    let (t, d) = IpvsTable::parse("ipvsadm.txt", CAPTURE).unwrap();
    assert!(d.is_empty(), "{d:?}");
    t
}

/// (real server, share, masqueraded) per outcome, sorted.
fn shares(t: &Trace) -> Vec<(String, f64, bool)> {
    let mut v: Vec<(String, f64, bool)> = t
        .outcomes
        .iter()
        .map(|o| {
            assert_eq!(o.verdict, Verdict::Accept, "{o:?}");
            assert!(!o.local_delivery);
            (
                o.dnat.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                (o.probability * 1e9).round() / 1e9,
                o.masquerade,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn the_capture_reads() {
    let t = capture();
    assert_eq!(t.services.len(), 7);
    let reals: usize = t.services.iter().map(|s| s.reals.len()).sum();
    assert_eq!(reals, 14);
    assert!(IpvsTable::sniff(CAPTURE));
}

#[test]
fn the_api_servers_clusterip_from_outside_the_pod_cidr() {
    let t = run(&capture(), "172.16.16.90", "10.254.0.1", 443);
    assert_eq!(
        shares(&t),
        vec![
            ("172.16.16.81:6443".into(), 0.5, true),
            ("172.16.16.82:6443".into(), 0.5, true),
        ]
    );
    for o in &t.outcomes {
        assert!(o.notes.iter().any(|n| n.contains("persistent 10800")));
        let ipvs = o.steps.iter().find(|s| &*s.chain == "IPVS").unwrap();
        assert_eq!(ipvs.source.line, 14);
        assert_eq!(ipvs.branch_probability, Some(0.5));
        // masqueraded to the node's address on the way out
        assert_eq!(o.packet.src, ip(NODE));
    }
}

#[test]
fn coredns_from_a_pod_is_not_masqueraded() {
    let t = run(&capture(), "10.253.7.9", "10.254.0.2", 53);
    assert_eq!(
        shares(&t),
        vec![
            ("10.253.35.5:53".into(), 0.5, false),
            ("10.253.7.5:53".into(), 0.5, false),
        ]
    );
}

#[test]
fn a_nodeport_splits_four_ways_and_is_masqueraded() {
    let t = run(&capture(), "192.0.2.10", "10.253.102.0", 32429);
    let s = shares(&t);
    assert_eq!(s.len(), 4);
    assert!(
        s.iter().all(|(_, p, m)| (*p - 0.25).abs() < 1e-9 && *m),
        "{s:?}"
    );
}

#[test]
fn a_port_without_a_virtual_service_is_delivered_locally() {
    let t = run(&capture(), "172.16.16.90", "10.254.0.1", 80);
    assert_eq!(t.outcomes.len(), 1);
    assert!(t.outcomes[0].local_delivery);
    assert!(t.outcomes[0].dnat.is_none());
}

#[test]
fn a_service_without_real_servers_answers_port_unreachable() {
    // The capture with the CoreDNS real servers gone (scaled to zero).
    let text: String = CAPTURE
        .lines()
        .filter(|l| !l.contains("10.253.7.5:53") && !l.contains("10.253.35.5:53"))
        .map(|l| format!("{l}\n"))
        .collect();
    let (ipvs, _) = IpvsTable::parse("ipvsadm.txt", &text).unwrap();
    let t = run(&ipvs, "10.253.7.9", "10.254.0.2", 53);
    assert_eq!(t.outcomes.len(), 1);
    assert_eq!(
        t.outcomes[0].verdict,
        Verdict::Reject {
            with: "icmp-port-unreachable".into()
        }
    );
    assert!(t.outcomes[0]
        .notes
        .iter()
        .any(|n| n.contains("ip_vs_leave")));
}

#[test]
fn weights_and_quiesced_servers() {
    // wrr with weights 3 and 1, and a third real server of weight 0 (being drained).
    let text = CAPTURE
        .replace("TCP  10.254.0.1:443 rr persistent 10800", "TCP  10.254.0.1:443 wrr")
        .replace(
            "  -> 172.16.16.81:6443            Masq    1 ",
            "  -> 172.16.16.81:6443            Masq    3 ",
        )
        .replace(
            "  -> 172.16.16.82:6443            Masq    1      0          0         \n",
            "  -> 172.16.16.82:6443            Masq    1      0          0         \n  -> 172.16.16.83:6443            Masq    0      0          0\n",
        );
    let (ipvs, d) = IpvsTable::parse("ipvsadm.txt", &text).unwrap();
    assert!(d.is_empty(), "{d:?}");
    let t = run(&ipvs, "172.16.16.90", "10.254.0.1", 443);
    assert_eq!(
        shares(&t),
        vec![
            ("172.16.16.81:6443".into(), 0.75, true),
            ("172.16.16.82:6443".into(), 0.25, true),
        ]
    );
}

#[test]
fn a_redacted_capture_makes_what_it_hides_unknown() {
    let (ipvs, d) = IpvsTable::parse("ipvsadm.txt", REDACTED).unwrap();
    assert_eq!(d.len(), 2, "{d:?}");
    // A readable service is traced ...
    let t = run(&ipvs, "192.0.2.10", "10.253.102.0", 32429);
    assert!(matches!(t.outcomes[0].verdict, Verdict::Unknown { .. }));
    // ... but a packet that no readable service matches may be one of the hidden ones.
    if let Verdict::Unknown { reason, rule } = &t.outcomes[0].verdict {
        assert!(reason.contains("could not be read"), "{reason}");
        assert_eq!(rule.as_ref().map(|r| r.line), Some(5));
    }
}

#[test]
fn the_node_itself_reaches_a_clusterip_through_ipvs() {
    // A host-network process on the node: IPVS's LOCAL_OUT hook (ip_vs_local_request4)
    // schedules it after nat OUTPUT; kube-proxy's OUTPUT rules mark it (source outside the
    // pod CIDR), so it is masqueraded.
    let t = run_from(&capture(), NODE, "10.254.0.2", 53, true);
    assert_eq!(
        shares(&t),
        vec![
            ("10.253.35.5:53".into(), 0.5, true),
            ("10.253.7.5:53".into(), 0.5, true),
        ]
    );
}

#[test]
fn source_hashing_names_the_clients_real_server() {
    let text = CAPTURE.replace("TCP  10.254.0.2:53 rr", "TCP  10.254.0.2:53 sh");
    let (ipvs, _) = IpvsTable::parse("ipvsadm.txt", &text).unwrap();
    let t = run(&ipvs, "10.253.7.9", "10.254.0.2", 53);
    assert_eq!(t.outcomes.len(), 1, "{t:?}");
    assert!(t.outcomes[0]
        .notes
        .iter()
        .any(|n| n.contains("gets 10.253.7.9's connections")));
}
