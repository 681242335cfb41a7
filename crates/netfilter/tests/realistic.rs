//! Insta snapshots of traces through realistic rulesets (fixtures/iptables/ok), plus the seed
//! demo assertions (SCENARIO.md step 9) checked explicitly.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use kubepath_netfilter::{
    trace, Env, Family, IpSets, Packet, Proto, RouteDecision, RouteOracle, Ruleset, Trace, Verdict,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fixture(name: &str) -> (String, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/iptables/ok")
        .join(name);
    (
        format!("fixtures/iptables/ok/{name}"),
        std::fs::read_to_string(p).unwrap(),
    )
}

fn load(name: &str) -> Ruleset {
    let (n, text) = fixture(name);
    let (rs, diags) = Ruleset::parse(&n, &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(diags.is_empty(), "{diags:?}");
    rs
}

fn ipsets(name: &str) -> IpSets {
    let (n, text) = fixture(name);
    IpSets::parse_save(&n, &text).unwrap().0
}

/// A node's routing: local addresses, then longest-prefix match over (net, len, dev, src).
struct Node {
    local: Vec<IpAddr>,
    routes: Vec<(IpAddr, u8, &'static str, IpAddr)>,
}

fn bits(a: IpAddr) -> (u128, u32) {
    match a {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

impl RouteOracle for Node {
    fn route(&self, p: &Packet) -> RouteDecision {
        if p.dst.is_loopback() || self.local.contains(&p.dst) {
            return RouteDecision::Local;
        }
        let (d, w) = bits(p.dst);
        let best = self
            .routes
            .iter()
            .filter(|(n, len, _, _)| {
                let (nb, nw) = bits(*n);
                nw == w && (*len == 0 || (d >> (w - *len as u32)) == (nb >> (w - *len as u32)))
            })
            .max_by_key(|r| r.1);
        match best {
            Some((_, _, dev, src)) => RouteDecision::Forward {
                out_iface: Some(dev.to_string()),
                src_hint: Some(*src),
            },
            None => RouteDecision::Unreachable,
        }
    }
}

/// A compact, reviewable rendering of a trace.
fn summary(t: &Trace) -> String {
    let mut s = String::new();
    let total: f64 = t.outcomes.iter().map(|o| o.probability).sum();
    assert!((total - 1.0).abs() < 1e-9, "probabilities sum to {total}");
    for o in &t.outcomes {
        let _ = write!(s, "p={:.6} {}", o.probability, o.verdict.name());
        match &o.verdict {
            Verdict::Reject { with } => {
                let _ = write!(s, " with {with}");
            }
            Verdict::Unknown { reason, rule } => {
                let _ = write!(s, " ({reason}; rule {:?})", rule.as_ref().map(|r| r.line));
            }
            _ => {}
        }
        if o.verdict == Verdict::Accept {
            s.push_str(if o.local_delivery {
                " local"
            } else {
                " forwarded"
            });
        }
        if let Some(i) = &o.out_iface {
            let _ = write!(s, " out={i}");
        }
        if let Some(d) = &o.dnat {
            let _ = write!(s, " dnat={d}");
        }
        if o.masquerade {
            let _ = write!(
                s,
                " masquerade snat={}",
                o.snat.as_ref().map(|x| x.to_string()).unwrap_or_default()
            );
        }
        let _ = writeln!(s, " mark={:#x}", o.packet.mark);
        for st in &o.steps {
            let _ = write!(s, "  {}/{}:{}", st.table, st.chain, st.source.line);
            if let Some(p) = st.branch_probability {
                let _ = write!(s, " [p={p:.6}]");
            }
            let _ = writeln!(s, "  {}", st.text);
        }
        for n in &o.notes {
            let _ = writeln!(s, "  note: {n}");
        }
    }
    s
}

fn run(
    rs: &Ruleset,
    node: &Node,
    pkt: &Packet,
    sets: Option<&IpSets>,
    local_origin: bool,
) -> Trace {
    let env = Env {
        local_addrs: &node.local,
        local_origin,
        router: Some(node),
        ipsets: sets,
        uncollected: &[],
        ipvs: None,
    };
    let t = trace(rs, pkt, &env);
    // The index never changes the result.
    assert_eq!(t, kubepath_netfilter::trace_linear(rs, pkt, &env));
    t
}

fn seed_node() -> Node {
    Node {
        local: vec![
            ip("10.33.151.70"),
            ip("10.33.151.132"),
            ip("10.0.10.105"),
            ip("10.33.152.74"),
        ],
        routes: vec![
            (ip("10.33.151.64"), 27, "ccd_ecfe_om", ip("10.33.151.70")),
            (ip("10.0.10.0"), 24, "eth0", ip("10.0.10.105")),
            (ip("192.168.0.0"), 16, "tunl0", ip("192.168.52.0")),
            (ip("10.33.152.64"), 27, "ecfe_traf1", ip("10.33.152.74")),
            (ip("0.0.0.0"), 0, "ecfe_traf1", ip("10.33.152.74")),
        ],
    }
}

#[test]
fn seed_demo_four_ingress_pods_each_masqueraded_no_mark_drop() {
    let rs = load("seed-node.iptables-save");
    let pkt = Packet::tcp(ip("10.210.150.87"), 56200, ip("10.33.151.160"), 80)
        .with_in_iface("ccd_ecfe_om");
    for node in [
        seed_node(),
        Node {
            local: seed_node().local,
            routes: vec![],
        },
    ] {
        let env = Env::new(&node.local);
        // With and without routing data the answer is the same four pods.
        let t = if node.routes.is_empty() {
            trace(&rs, &pkt, &env)
        } else {
            run(&rs, &node, &pkt, None, false)
        };
        assert_eq!(t.outcomes.len(), 4, "{}", summary(&t));
        let mut pods: Vec<String> = Vec::new();
        for o in &t.outcomes {
            assert!((o.probability - 0.25).abs() < 1e-6, "{}", o.probability);
            assert_eq!(o.verdict, Verdict::Accept);
            assert!(o.masquerade);
            assert!(!o.local_delivery);
            let d = o.dnat.as_ref().unwrap();
            assert_eq!(d.port, Some(80));
            pods.push(d.addr.unwrap().to_string());
            assert!(
                o.steps.iter().all(|s| &*s.chain != "KUBE-MARK-DROP"),
                "KUBE-MARK-DROP reached"
            );
            assert!(o
                .steps
                .iter()
                .any(|s| &*s.chain == "KUBE-POSTROUTING" && s.text.contains("MASQUERADE")));
            assert_eq!(o.packet.mark & 0x8000, 0);
        }
        pods.sort();
        assert_eq!(
            pods,
            [
                "192.168.103.142",
                "192.168.107.128",
                "192.168.176.202",
                "192.168.95.125"
            ]
        );
    }
}

#[test]
fn seed_node_snapshots() {
    let rs = load("seed-node.iptables-save");
    let node = seed_node();
    let p80 = Packet::tcp(ip("10.210.150.87"), 56200, ip("10.33.151.160"), 80)
        .with_in_iface("ccd_ecfe_om");
    insta::assert_snapshot!("seed_lb_http", summary(&run(&rs, &node, &p80, None, false)));
    let p443 = Packet::tcp(ip("10.210.150.87"), 56202, ip("10.33.151.160"), 443)
        .with_in_iface("ccd_ecfe_om");
    insta::assert_snapshot!(
        "seed_lb_https",
        summary(&run(&rs, &node, &p443, None, false))
    );
    // The ingress pod (192.168.103.142) to the backend ClusterIP (step 12): one endpoint,
    // pod source so no masquerade.
    let pm = Packet::tcp(ip("192.168.103.142"), 41000, ip("10.107.185.250"), 9090)
        .with_in_iface("cali1a2b3c4d5e6");
    insta::assert_snapshot!(
        "seed_clusterip_pm_server",
        summary(&run(&rs, &node, &pm, None, false))
    );
}

#[test]
fn seed_node_as_iptables_s_gives_the_same_nat_result() {
    let (n, text) = fixture("seed-node-nat.iptables-S.txt");
    assert_eq!(
        Ruleset::table_hint(&n, &text),
        Some(kubepath_netfilter::Table::Nat)
    );
    let (rs, d) = Ruleset::parse(&n, &text).unwrap();
    assert!(d.is_empty());
    let save = load("seed-node.iptables-save");
    let node = seed_node();
    let p = Packet::tcp(ip("10.210.150.87"), 56200, ip("10.33.151.160"), 80)
        .with_in_iface("ccd_ecfe_om");
    let a = run(&rs, &node, &p, None, false);
    let b = run(&save, &node, &p, None, false);
    let key = |t: &Trace| -> Vec<(String, bool)> {
        t.outcomes
            .iter()
            .map(|o| (o.dnat.as_ref().unwrap().to_string(), o.masquerade))
            .collect()
    };
    assert_eq!(key(&a), key(&b));
}

fn kp_node() -> Node {
    Node {
        local: vec![ip("192.168.10.21"), ip("10.244.0.1")],
        routes: vec![
            (ip("192.168.10.0"), 24, "eth0", ip("192.168.10.21")),
            (ip("10.244.0.0"), 24, "cni0", ip("10.244.0.1")),
            (ip("10.244.0.0"), 16, "flannel.1", ip("10.244.0.0")),
            (ip("0.0.0.0"), 0, "eth0", ip("192.168.10.21")),
        ],
    }
}

#[test]
fn kube_proxy_v118_snapshots() {
    let rs = load("kube-proxy-v1.18.iptables-save");
    let node = kp_node();
    let ext = |dst: &str, port: u16| {
        Packet::tcp(ip("192.0.2.9"), 40000, ip(dst), port).with_in_iface("eth0")
    };
    insta::assert_snapshot!(
        "kp118_nodeport_cluster",
        summary(&run(&rs, &node, &ext("192.168.10.21", 30080), None, false))
    );
    let local = Packet::tcp(ip("192.168.10.21"), 50000, ip("10.96.0.1"), 443);
    insta::assert_snapshot!(
        "kp118_clusterip_from_host",
        summary(&run(&rs, &node, &local, None, true))
    );
    let allowed =
        Packet::tcp(ip("198.51.100.7"), 40000, ip("203.0.113.10"), 443).with_in_iface("eth0");
    insta::assert_snapshot!(
        "kp118_lb_source_range_allowed",
        summary(&run(&rs, &node, &allowed, None, false))
    );
    let denied =
        Packet::tcp(ip("203.0.113.99"), 40000, ip("203.0.113.10"), 443).with_in_iface("eth0");
    insta::assert_snapshot!(
        "kp118_lb_source_range_denied",
        summary(&run(&rs, &node, &denied, None, false))
    );
    // Same, on a node where the LB IP is a local address: KUBE-FIREWALL drops the 0x8000 mark.
    let mut node_lb = kp_node();
    node_lb.local.push(ip("203.0.113.10"));
    insta::assert_snapshot!(
        "kp118_lb_source_range_denied_lb_ip_local",
        summary(&run(&rs, &node_lb, &denied, None, false))
    );
    insta::assert_snapshot!(
        "kp118_lb_etp_local",
        summary(&run(&rs, &node, &ext("203.0.113.20", 80), None, false))
    );
    let sticky =
        Packet::tcp(ip("10.244.0.7"), 40000, ip("10.100.40.40"), 8080).with_in_iface("cni0");
    insta::assert_snapshot!(
        "kp118_session_affinity",
        summary(&run(&rs, &node, &sticky, None, false))
    );
    let empty = Packet::tcp(ip("10.244.0.7"), 40000, ip("10.100.50.50"), 80).with_in_iface("cni0");
    insta::assert_snapshot!(
        "kp118_no_endpoints_clusterip",
        summary(&run(&rs, &node, &empty, None, false))
    );
    insta::assert_snapshot!(
        "kp118_no_endpoints_nodeport",
        summary(&run(&rs, &node, &ext("192.168.10.21", 30999), None, false))
    );
}

#[test]
fn kube_proxy_v128_snapshots() {
    let rs = load("kube-proxy-v1.28.iptables-save");
    let node = kp_node();
    let dns = Packet::udp(ip("10.244.0.5"), 5353, ip("10.96.0.10"), 53).with_in_iface("cni0");
    insta::assert_snapshot!(
        "kp128_dns_from_pod",
        summary(&run(&rs, &node, &dns, None, false))
    );
    let lb = Packet::tcp(ip("198.51.100.1"), 40000, ip("192.0.2.50"), 80).with_in_iface("eth0");
    insta::assert_snapshot!(
        "kp128_lb_cluster",
        summary(&run(&rs, &node, &lb, None, false))
    );
    let allowed =
        Packet::tcp(ip("198.51.100.8"), 40000, ip("192.0.2.60"), 80).with_in_iface("eth0");
    insta::assert_snapshot!(
        "kp128_lb_local_allowed",
        summary(&run(&rs, &node, &allowed, None, false))
    );
    let denied = Packet::tcp(ip("203.0.113.5"), 40000, ip("192.0.2.60"), 80).with_in_iface("eth0");
    insta::assert_snapshot!(
        "kp128_lb_local_denied",
        summary(&run(&rs, &node, &denied, None, false))
    );
    let empty = Packet::tcp(ip("198.51.100.1"), 40000, ip("192.0.2.70"), 80).with_in_iface("eth0");
    insta::assert_snapshot!(
        "kp128_lb_no_endpoints",
        summary(&run(&rs, &node, &empty, None, false))
    );
    let np =
        Packet::tcp(ip("198.51.100.1"), 40000, ip("192.168.10.21"), 30500).with_in_iface("eth0");
    insta::assert_snapshot!(
        "kp128_nodeport",
        summary(&run(&rs, &node, &np, None, false))
    );
}

fn docker_node() -> Node {
    Node {
        local: vec![ip("192.0.2.10"), ip("172.17.0.1"), ip("172.18.0.1")],
        routes: vec![
            (ip("172.17.0.0"), 16, "docker0", ip("172.17.0.1")),
            (ip("172.18.0.0"), 16, "br-5f3a9c1d2e4b", ip("172.18.0.1")),
            (ip("0.0.0.0"), 0, "eth0", ip("192.0.2.10")),
        ],
    }
}

#[test]
fn docker_snapshots() {
    let rs = load("docker-host.iptables-save");
    let node = docker_node();
    let publish =
        Packet::tcp(ip("198.51.100.5"), 40000, ip("192.0.2.10"), 8080).with_in_iface("eth0");
    insta::assert_snapshot!(
        "docker_published_port",
        summary(&run(&rs, &node, &publish, None, false))
    );
    let out =
        Packet::tcp(ip("172.17.0.2"), 40000, ip("93.184.216.34"), 443).with_in_iface("docker0");
    insta::assert_snapshot!(
        "docker_container_outbound",
        summary(&run(&rs, &node, &out, None, false))
    );
    let iso = Packet::tcp(ip("172.17.0.2"), 40000, ip("172.18.0.3"), 5432).with_in_iface("docker0");
    insta::assert_snapshot!(
        "docker_isolation",
        summary(&run(&rs, &node, &iso, None, false))
    );
    let blocked =
        Packet::tcp(ip("203.0.113.9"), 40000, ip("192.0.2.10"), 8080).with_in_iface("eth0");
    insta::assert_snapshot!(
        "docker_user_block",
        summary(&run(&rs, &node, &blocked, None, false))
    );
}

fn calico_node() -> Node {
    Node {
        local: vec![ip("192.168.50.11"), ip("10.244.5.0")],
        routes: vec![
            (
                ip("10.244.5.10"),
                32,
                "cali7c1e23a9f4b",
                ip("192.168.50.11"),
            ),
            (ip("10.244.0.0"), 16, "vxlan.calico", ip("10.244.5.0")),
            (ip("192.168.50.0"), 24, "eth0", ip("192.168.50.11")),
            (ip("0.0.0.0"), 0, "eth0", ip("192.168.50.11")),
        ],
    }
}

#[test]
fn calico_snapshots() {
    let rs = load("calico-node.iptables-save");
    let sets = ipsets("calico-node.ipset");
    let node = calico_node();
    let client =
        Packet::tcp(ip("192.0.2.77"), 40000, ip("10.244.5.10"), 8080).with_in_iface("eth0");
    insta::assert_snapshot!(
        "calico_policy_allows",
        summary(&run(&rs, &node, &client, Some(&sets), false))
    );
    let other =
        Packet::tcp(ip("198.51.100.9"), 40000, ip("10.244.5.10"), 8080).with_in_iface("eth0");
    insta::assert_snapshot!(
        "calico_policy_denies",
        summary(&run(&rs, &node, &other, Some(&sets), false))
    );
    let egress = Packet::tcp(ip("10.244.5.10"), 40000, ip("93.184.216.34"), 443)
        .with_in_iface("cali7c1e23a9f4b");
    insta::assert_snapshot!(
        "calico_pod_egress_nat_outgoing",
        summary(&run(&rs, &node, &egress, Some(&sets), false))
    );
    insta::assert_snapshot!(
        "calico_without_ipsets_unknown",
        summary(&run(&rs, &node, &client, None, false))
    );
}

#[test]
fn ipv6_snapshot() {
    let rs = load("kube-proxy-dualstack.ip6tables-save");
    assert_eq!(rs.family(), Family::Ipv6);
    let node = Node {
        local: vec![ip("fd00:192:168:10::21")],
        routes: vec![
            (ip("fd00:10:244::"), 48, "flannel.1", ip("fd00:10:244::")),
            (ip("::"), 0, "eth0", ip("fd00:192:168:10::21")),
        ],
    };
    let p = Packet::tcp(ip("fd00:99::1"), 40000, ip("fd00:10:96::50"), 80).with_in_iface("eth0");
    insta::assert_snapshot!("ipv6_clusterip", summary(&run(&rs, &node, &p, None, false)));
    let ping = Packet::new(ip("fd00:99::1"), ip("fd00:192:168:10::21"), Proto::Icmpv6)
        .with_in_iface("eth0");
    let t = run(&rs, &node, &ping, None, false);
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    assert!(t.outcomes[0].local_delivery);
}
