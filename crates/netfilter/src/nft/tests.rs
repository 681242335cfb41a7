use std::net::IpAddr;

use super::*;
use crate::types::{Env, Packet, Proto, RouteDecision, RouteOracle, Table, Verdict};

const KP: &str = include_str!("../../tests/nft/kube-proxy.nft");
const KP_LISTED: &str = include_str!("../../tests/nft/kube-proxy.listed.nft");
const NODE: &str = "192.168.50.4";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn kp() -> NftRuleset {
    let (rs, d) = NftRuleset::parse("kube-proxy.nft", KP).unwrap();
    assert!(d.is_empty(), "{d:?}");
    rs
}

struct Router {
    local: Vec<IpAddr>,
}

impl RouteOracle for Router {
    fn route(&self, pkt: &Packet) -> RouteDecision {
        if pkt.dst.is_loopback() || self.local.contains(&pkt.dst) {
            RouteDecision::Local
        } else {
            RouteDecision::Forward {
                out_iface: Some("eth0".into()),
                src_hint: Some(ip(NODE)),
            }
        }
    }
}

fn run(rs: &NftRuleset, src: &str, dst: &str, dport: u16, proto: Proto) -> crate::Trace {
    let local = vec![ip(NODE)];
    let router = Router {
        local: local.clone(),
    };
    let mut pkt = Packet::new(ip(src), ip(dst), proto);
    pkt.sport = 40000;
    pkt.dport = dport;
    pkt.in_iface = Some("eth0".into());
    let env = Env {
        local_addrs: &local,
        router: Some(&router),
        ..Env::default()
    };
    trace_nft(rs, &pkt, &env)
}

fn dnats(t: &crate::Trace) -> Vec<(String, f64, bool)> {
    let mut v: Vec<(String, f64, bool)> = t
        .outcomes
        .iter()
        .map(|o| {
            (
                o.dnat.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                o.probability,
                o.masquerade,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn reads_the_transaction_form() {
    let rs = kp();
    assert_eq!(rs.tables.len(), 1);
    let t = rs.table(NftFamily::Ip, "kube-proxy").unwrap();
    let pre = t.chain("nat-prerouting").unwrap().base.clone().unwrap();
    assert_eq!(pre.kind, ChainType::Nat);
    assert_eq!(pre.hook, NftHook::Prerouting);
    assert_eq!(pre.priority, -100);
    assert_eq!(
        t.chain("filter-prerouting-pre-dnat")
            .unwrap()
            .base
            .as_ref()
            .unwrap()
            .priority,
        -110
    );
    let svc = t.set("service-ips").unwrap();
    assert_eq!(
        svc.key,
        vec![DataType::Ipv4, DataType::Proto, DataType::Service]
    );
    assert_eq!(svc.data, Some(DataType::Verdict));
    assert_eq!(svc.elements.len(), 3);
    assert_eq!(
        svc.elements[0].key,
        vec![
            Atom::Range(0x0a60_1401, 0x0a60_1401),
            Atom::Range(6, 6),
            Atom::Range(443, 443)
        ]
    );
    assert_eq!(
        svc.elements[0].value,
        Some(MapValue::Verdict(NftVerdict::Goto(
            "service-AAAA1111-web/api/tcp/https".into()
        )))
    );
    let aff = t
        .set("affinity-DDDD4444-shop/front/tcp/http__10.244.1.9/80")
        .unwrap();
    assert!(aff.has_flag("dynamic") && aff.has_flag("timeout"));
    let noep = t.set("no-endpoint-services").unwrap();
    assert_eq!(noep.elements[0].comment.as_deref(), Some("ops/idle:dns"));
    let ch = t.chain("service-AAAA1111-web/api/tcp/https").unwrap();
    assert_eq!(ch.rules.len(), 2);
    assert!(ch.rules[1].text.starts_with("numgen random mod 2 vmap {"));
    assert_eq!(ch.rules[1].source.line, 61);
}

#[test]
fn listed_form_reads_the_same_model() {
    let a = kp();
    let (b, d) = NftRuleset::parse("kube-proxy.listed.nft", KP_LISTED).unwrap();
    assert!(d.is_empty(), "{d:?}");
    let (ta, tb) = (&a.tables[0], &b.tables[0]);
    assert_eq!(ta.chains.len(), tb.chains.len());
    for c in &ta.chains {
        let o = tb.chain(&c.name).unwrap();
        assert_eq!(c.base, o.base, "{}", c.name);
        assert_eq!(c.rules.len(), o.rules.len(), "{}", c.name);
    }
    for s in &ta.sets {
        let o = tb.set(s.name.as_deref().unwrap()).unwrap();
        assert_eq!(s.key, o.key);
        assert_eq!(s.elements.len(), o.elements.len());
    }
    // symbolic priority printed by nft
    assert!(KP_LISTED.contains("priority dstnat; policy accept;"));
    assert_eq!(a.rule_count(), b.rule_count());
}

#[test]
fn clusterip_from_a_pod_splits_over_endpoints() {
    let rs = kp();
    let t = run(&rs, "10.244.3.3", "10.96.20.1", 443, Proto::Tcp);
    assert_eq!(
        dnats(&t),
        vec![
            ("10.244.1.5:8443".into(), 0.5, false),
            ("10.244.2.7:8443".into(), 0.5, false)
        ]
    );
    for o in &t.outcomes {
        assert_eq!(o.verdict, Verdict::Accept);
        let s = o
            .steps
            .iter()
            .find(|s| s.text.starts_with("numgen"))
            .unwrap();
        assert_eq!(s.branch_probability, Some(0.5));
        assert_eq!(
            &*s.chain,
            "ip kube-proxy service-AAAA1111-web/api/tcp/https"
        );
        assert_eq!(s.table, Table::Nat);
    }
}

#[test]
fn clusterip_from_outside_the_pod_cidr_is_masqueraded() {
    let rs = kp();
    let t = run(&rs, "192.168.50.9", "10.96.20.1", 443, Proto::Tcp);
    assert_eq!(t.outcomes.len(), 2);
    for o in &t.outcomes {
        assert!(o.masquerade);
        assert_eq!(o.packet.src, ip(NODE));
        // the masquerade bit is cleared again in nat postrouting
        assert_eq!(o.packet.mark & 0x4000, 0);
        assert_eq!(o.route_mark, Some(0x4000));
        assert!(o.notes.iter().any(|n| n.contains("fully-random")));
    }
}

#[test]
fn nodeport_and_wrong_ports() {
    let rs = kp();
    let t = run(&rs, "198.18.0.1", NODE, 30443, Proto::Tcp);
    let d = dnats(&t);
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|x| x.2 && (x.1 - 0.5).abs() < 1e-9));
    // a ClusterIP's port that is not a service port: rejected in filter forward
    let t = run(&rs, "10.244.3.3", "10.96.20.1", 80, Proto::Tcp);
    assert_eq!(
        t.outcomes[0].verdict,
        Verdict::Reject {
            with: "icmp-port-unreachable".into()
        }
    );
    // an unallocated ClusterIP: dropped
    let t = run(&rs, "10.244.3.3", "10.96.99.99", 80, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
    // no endpoints: reject-chain through the no-endpoint-services map
    let t = run(&rs, "10.244.3.3", "10.96.40.4", 53, Proto::Udp);
    assert_eq!(t.outcomes.len(), 1);
    assert!(matches!(t.outcomes[0].verdict, Verdict::Reject { .. }));
    assert!(t.outcomes[0]
        .steps
        .iter()
        .any(|s| &*s.chain == "ip kube-proxy reject-chain"));
}

#[test]
fn load_balancer_source_ranges_and_local_policy() {
    let rs = kp();
    // allowed source, external: local endpoint, no masquerade (ETP Local)
    let t = run(&rs, "198.51.100.7", "203.0.113.80", 80, Proto::Tcp);
    assert_eq!(dnats(&t), vec![("10.244.1.9:80".into(), 1.0, false)]);
    assert!(t.outcomes[0]
        .notes
        .iter()
        .any(|n| n.contains("update @affinity")));
    // blocked source: dropped in filter prerouting before DNAT
    let t = run(&rs, "192.0.2.1", "203.0.113.80", 80, Proto::Tcp);
    assert_eq!(t.outcomes.len(), 1);
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
    assert!(t.outcomes[0].dnat.is_none());
    // pod source to the LB IP: short-circuit to the service chain (cluster endpoints)
    let t = run(&rs, "10.244.3.3", "203.0.113.80", 80, Proto::Tcp);
    assert_eq!(
        t.outcomes[0].verdict,
        Verdict::Drop,
        "firewall applies to pods"
    );
    let t = run(&rs, "198.51.100.9", "10.96.30.3", 80, Proto::Tcp);
    assert_eq!(dnats(&t), vec![("10.244.1.9:80".into(), 1.0, true)]);
    assert!(t.outcomes[0]
        .notes
        .iter()
        .any(|n| n.contains("no entry yet")));
}

#[test]
fn local_origin_uses_nat_output() {
    let rs = kp();
    let local = vec![ip(NODE)];
    let router = Router {
        local: local.clone(),
    };
    let pkt = Packet::tcp(ip(NODE), 40000, ip("10.96.20.1"), 443);
    let env = Env {
        local_addrs: &local,
        local_origin: true,
        router: Some(&router),
        ..Env::default()
    };
    let t = trace_nft(&rs, &pkt, &env);
    let d = dnats(&t);
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|x| x.2), "node to ClusterIP is masqueraded");
}

#[test]
fn families_priorities_and_policies() {
    let text = "\
table inet fw {
\tchain input {
\t\ttype filter hook input priority filter + 5; policy drop;
\t\tct state established,related accept
\t\tiifname \"lo\" accept
\t\ttcp dport { 22, 80-90 } ip saddr 10.0.0.0/8 counter packets 0 bytes 0 accept
\t\tip6 saddr fd00::/8 tcp dport 22 accept
\t}
}
table ip early {
\tchain input {
\t\ttype filter hook input priority -5; policy accept;
\t\ttcp dport 85 meta mark set 0x00000007
\t\tmeta mark & 0x00000007 == 0x00000007 tcp dport 85 drop
\t}
}
";
    let (rs, d) = NftRuleset::parse("fw.nft", text).unwrap();
    assert!(d.is_empty());
    let t = run(&rs, "10.1.1.1", NODE, 22, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    assert!(t.outcomes[0].local_delivery);
    let t = run(&rs, "10.1.1.1", NODE, 85, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop, "ip early runs first");
    assert!(t.outcomes[0].steps[0].chain.starts_with("ip early"));
    let t = run(&rs, "172.16.0.1", NODE, 22, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
    assert!(t.outcomes[0].notes[0].contains("policy drop"));
    let t = run(&rs, "fd00::5", "fd00::1", 22, Proto::Tcp);
    // fd00::1 is not local here: forwarded, no forward chain
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    assert!(!t.outcomes[0].local_delivery);
}

#[test]
fn opaque_expressions_give_unknown() {
    let text = "table ip f {\n\tchain c {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\ttcp dport 22 accept\n\t\ticmp type echo-request drop\n\t}\n}\n";
    let (rs, d) = NftRuleset::parse("o.nft", text).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].source.line, 5);
    assert!(d[0].message.contains("icmp type"), "{}", d[0].message);
    let t = run(&rs, "10.0.0.1", "10.0.0.2", 22, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    // nft's implicit `meta l4proto icmp`: a TCP packet does not match it.
    let t = run(&rs, "10.0.0.1", "10.0.0.2", 23, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    let t = run(&rs, "10.0.0.1", "10.0.0.2", 0, Proto::Icmp);
    match &t.outcomes[0].verdict {
        Verdict::Unknown { reason, rule } => {
            assert!(reason.contains("icmp type"), "{reason}");
            assert_eq!(rule.as_ref().unwrap().line, 5);
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn numgen_inc_and_offsets() {
    let text = "\
table ip n {
\tchain pre {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 10.9.9.9 tcp dport 80 dnat to numgen inc mod 3 map { 0 : 10.0.0.1, 1 : 10.0.0.2, 2 : 10.0.0.3 }
\t\tip daddr 10.9.9.8 numgen inc mod 3 offset 5 vmap { 5 : drop, 6 : accept, 7 : accept }
\t}
}
";
    let (rs, d) = NftRuleset::parse("n.nft", text).unwrap();
    assert_eq!(d.len(), 1, "dnat to a map is not modelled: {d:?}");
    let t = run(&rs, "10.1.1.1", "10.9.9.8", 80, Proto::Tcp);
    let drop: f64 = t
        .outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Drop)
        .map(|o| o.probability)
        .sum();
    assert!((drop - 1.0 / 3.0).abs() < 1e-9);
    assert!(t.outcomes[0].notes.iter().any(|n| n.contains("numgen inc")));
    let t = run(&rs, "10.1.1.1", "10.9.9.9", 80, Proto::Tcp);
    assert!(matches!(t.outcomes[0].verdict, Verdict::Unknown { .. }));
}

fn err(text: &str) -> crate::ParseError {
    NftRuleset::parse("bad.nft", text).unwrap_err()
}

#[test]
fn malformed_text_points_at_line_and_column() {
    let e = err("table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr 10.0.0.300 accept\n\t}\n}\n");
    assert_eq!((e.line, e.column), (4, 12), "{e}");
    assert!(e
        .to_string()
        .starts_with("bad.nft:4:12: expected a value of type ipv4_addr"));
    let e = err("table ip t {\n\tchain c {\n\t\tjump nowhere\n\t}\n}\n");
    assert_eq!((e.line, e.column), (3, 8), "{e}");
    let e = err("add table ip t\nadd chain ip t c { type filter hook input priority 0 }\n");
    assert_eq!((e.line, e.column), (2, 54), "{e}");
    let e =
        err("add table ip t\nadd set ip t s { type ipv4_addr ; elements = { 10.0.0.0/8 } ; }\n");
    assert_eq!((e.line, e.column), (2, 48), "{e}");
    let e = err("add table ip t\nadd chain ip t a\nadd rule ip t a jump b\nadd chain ip t b\n");
    assert_eq!((e.line, e.column), (3, 22), "{e}");
    let e = err("table ip t {\n\tchain c {\n\t\ttype filter hook input priority bogus; policy accept;\n\t}\n}\n");
    assert_eq!(e.line, 3);
    let e = err("table ip t {\n\tchain c {\n\t\tfrobnicate 3\n\t}\n}\n");
    assert_eq!((e.line, e.column), (3, 3));
    let e = err("table ip t {\n\tcomment \"x\n}\n");
    assert_eq!((e.line, e.column), (2, 10));
    let e = err("table ip t {\n\tchain c {\n\t}\n");
    assert_eq!(e.found, "end of file");
}

#[test]
fn sniffs_nft_text() {
    assert!(NftRuleset::sniff(KP));
    assert!(NftRuleset::sniff(KP_LISTED));
    assert!(!NftRuleset::sniff(
        "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
    ));
    assert!(!NftRuleset::sniff("-P INPUT ACCEPT\n-A INPUT -j DROP\n"));
}

#[test]
fn iptables_nft_tables_are_traced_with_meta_random_as_statistic() {
    let text = include_str!("../../tests/nft/iptables-nft.listed.nft");
    let (rs, d) = NftRuleset::parse("xt.nft", text).unwrap();
    assert!(d.is_empty(), "{d:?}");
    let t = run(&rs, "10.1.2.3", "10.96.0.10", 53, Proto::Tcp);
    assert_eq!(t.outcomes.len(), 2);
    for o in &t.outcomes {
        assert!((o.probability - 0.5).abs() < 1e-9);
        // arriving on eth0 from 10/8: accepted by filter FORWARD, masqueraded out of eth0
        assert_eq!(o.verdict, Verdict::Accept);
        assert!(o.masquerade);
    }
    let d = dnats(&t);
    assert_eq!(d[0].0, "10.80.0.2:53");
    assert_eq!(d[1].0, "10.80.0.3:53");
}

#[test]
fn listed_misc_ruleset() {
    let text = include_str!("../../tests/nft/misc.listed.nft");
    let (rs, d) = NftRuleset::parse("misc.nft", text).unwrap();
    assert!(d.is_empty(), "{d:?}");
    let fw = rs.table(NftFamily::Inet, "fw").unwrap();
    assert_eq!(
        fw.chain("input").unwrap().base.as_ref().unwrap().priority,
        5
    );
    let post = fw.chain("post").unwrap().base.clone().unwrap();
    assert_eq!((post.kind, post.priority), (ChainType::Nat, 90));
    let allowed = fw.set("allowed").unwrap();
    assert_eq!(
        allowed.elements[1].key,
        vec![Atom::Range(0xc0a8_0101, 0xc0a8_0109)]
    );
    // 192.168.1.5 is in the interval: port 22 accepted on input, else policy drop
    let t = run(&rs, "192.168.1.5", NODE, 22, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    let t = run(&rs, "192.168.1.10", NODE, 22, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
    // forwarded from 10/8 out of eth0: the srcnat-10 chain SNATs (oifname "eth*")
    let t = run(&rs, "10.2.3.4", "8.8.8.8", 53, Proto::Udp);
    let o = &t.outcomes[0];
    assert_eq!(o.snat.as_ref().unwrap().addr, Some(ip("1.2.3.4")));
    assert_eq!(o.packet.src, ip("1.2.3.4"));
}

/// #14: a symbolic priority is refused where nft refuses it (`dstnat` on input or forward,
/// `srcnat` on prerouting, forward or output, `out` outside the bridge family), read where a
/// current nft accepts it (`dstnat` on output, `srcnat` on input: kube-proxy's nat-output
/// chain is listed so), and given the bridge family's own values there.
#[test]
fn priority_names_fit_the_hook() {
    let chain = |family: &str, kind: &str, hook: &str, prio: &str| {
        NftRuleset::parse(
            "p.nft",
            &format!("table {family} t {{\n\tchain c {{\n\t\ttype {kind} hook {hook} priority {prio};\n\t}}\n}}\n"),
        )
        .map(|(rs, _)| {
            rs.tables[0].chains[0]
                .base
                .as_ref()
                .map(|b| b.priority)
                .unwrap()
        })
    };
    for (hook, prio) in [
        ("input", "dstnat - 10"),
        ("forward", "dstnat"),
        ("postrouting", "dstnat"),
        ("prerouting", "srcnat"),
        ("forward", "srcnat + 5"),
        ("output", "srcnat"),
        ("input", "out"),
    ] {
        let e = chain("ip", "filter", hook, prio).unwrap_err();
        assert!(
            e.to_string().contains("not a priority name nft accepts"),
            "{hook} {prio}: {e}"
        );
    }
    assert_eq!(chain("ip", "nat", "prerouting", "dstnat - 10"), Ok(-110));
    assert_eq!(chain("ip", "nat", "output", "dstnat"), Ok(-100));
    assert_eq!(chain("inet", "nat", "input", "srcnat"), Ok(100));
    assert_eq!(chain("ip6", "filter", "forward", "security + 5"), Ok(55));
    assert_eq!(chain("bridge", "filter", "forward", "filter"), Ok(-200));
    assert_eq!(chain("bridge", "filter", "output", "out"), Ok(100));
    assert!(chain("ip", "filter", "input", "raw - 2147483647").is_err());
}

/// `tcp flags` in every form nft reads and prints (nft(8); nft 1.0.6 lists `& (syn|ack) ==
/// syn` as `syn / syn,ack`), on the first packet of a TCP connection (a SYN): a masked
/// compare, an exact compare, and a bare value (any of its flags). A UDP packet never matches
/// (the `meta l4proto tcp` dependency).
#[test]
fn tcp_flags_match_the_first_packet_a_syn() {
    let cases: &[(&str, bool)] = &[
        ("tcp flags syn / syn,ack", true),
        ("tcp flags & (syn|ack) == syn", true),
        ("tcp flags & (syn | ack) == syn | ack", false),
        ("tcp flags & (fin|syn|rst|ack) != syn", false),
        ("tcp flags & (fin|syn|rst|ack) != (syn)", false),
        ("tcp flags == syn", true),
        ("tcp flags != syn", false),
        ("tcp flags syn", true),
        ("tcp flags syn,ack", true),
        ("tcp flags ack", false),
        ("tcp flags fin,rst", false),
        ("tcp flags & 0x12 == 0x02", true),
    ];
    for (m, hit) in cases {
        let text = format!(
            "table ip t {{\n\tchain c {{\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\t{m} drop\n\t}}\n}}\n"
        );
        let (rs, _) = NftRuleset::parse("f.nft", &text).unwrap_or_else(|e| panic!("{m}: {e:?}"));
        let t = run(&rs, "10.0.0.1", "10.0.0.2", 80, Proto::Tcp);
        let dropped = matches!(t.outcomes[0].verdict, Verdict::Drop);
        assert_eq!(dropped, *hit, "{m}: {:?}", t.outcomes[0]);
        let u = run(&rs, "10.0.0.1", "10.0.0.2", 80, Proto::Udp);
        assert!(
            matches!(u.outcomes[0].verdict, Verdict::Accept),
            "{m} (udp)"
        );
    }
    for bad in [
        "tcp flags & (syn|ack == syn",
        "tcp flags bogus",
        "tcp flags & (syn|ack) ==",
    ] {
        let text = format!(
            "table ip t {{\n\tchain c {{\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\t{bad} drop\n\t}}\n}}\n"
        );
        assert!(NftRuleset::parse("f.nft", &text).is_err(), "{bad}");
    }
}

#[test]
fn iptables_nft_compat_expressions_are_opaque_statements() {
    // nft 1.0.6 lists `-m set --match-set X src -j ACCEPT` (no native translation) so.
    for line in [
        "xt match set counter packets 0 bytes 0 accept",
        "xt match \"set\" accept",
        "ip saddr 10.0.0.0/8 xt target MASQUERADE",
    ] {
        let text = format!(
            "table ip filter {{\n\tchain INPUT {{\n\t\ttype filter hook input priority filter; policy accept;\n\t\t{line}\n\t}}\n}}\n"
        );
        let (rs, d) = NftRuleset::parse("xt.nft", &text).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(d.len(), 1, "{line}: {d:?}");
        assert!(d[0].message.contains("`xt "), "{d:?}");
        let t = run(&rs, "10.1.1.1", NODE, 80, Proto::Tcp);
        assert!(
            matches!(&t.outcomes[0].verdict, Verdict::Unknown { reason, .. } if reason.contains("xt ")),
            "{line}: {:?}",
            t.outcomes[0]
        );
    }
    assert!(NftRuleset::parse(
        "xt.nft",
        "table ip filter {\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n\t\txt match\n\t}\n}\n"
    )
    .is_err());
    // `-m comment` and the LOG target change nothing (as the JSON reader reads them).
    for line in [
        "xt match \"comment\" drop",
        "xt target LOG drop",
        "xt match comment drop",
    ] {
        let text = format!(
            "table ip filter {{\n\tchain INPUT {{\n\t\ttype filter hook input priority filter; policy accept;\n\t\t{line}\n\t}}\n}}\n"
        );
        let (rs, d) = NftRuleset::parse("xt.nft", &text).unwrap();
        assert!(d.is_empty(), "{line}: {d:?}");
        let t = run(&rs, "10.1.1.1", NODE, 80, Proto::Tcp);
        assert_eq!(t.outcomes[0].verdict, Verdict::Drop, "{line}");
    }
}

/// A node with a tunnel device: `fib saddr . oif type` asks about the outgoing device's own
/// addresses only.
struct Tunnel;

impl RouteOracle for Tunnel {
    fn route(&self, pkt: &Packet) -> RouteDecision {
        if pkt.dst == ip(NODE) {
            RouteDecision::Local
        } else {
            RouteDecision::Forward {
                out_iface: Some("tunl0".into()),
                src_hint: Some(ip("192.168.95.64")),
            }
        }
    }
    fn iface_addrs(&self, iface: &str) -> Option<Vec<IpAddr>> {
        match iface {
            "tunl0" => Some(vec![ip("192.168.95.64")]),
            "eth0" => Some(vec![ip(NODE)]),
            _ => None,
        }
    }
}

#[test]
fn fib_type_limited_to_the_outgoing_interface() {
    // iptables-nft's translation of Calico's `-m addrtype ! --src-type LOCAL
    // --limit-iface-out -m addrtype --src-type LOCAL -j MASQUERADE` on tunl0.
    let text = "table ip nat {\n\tchain POSTROUTING {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname \"tunl0\" fib saddr . oif type != local fib saddr type local counter packets 0 bytes 0 masquerade\n\t}\n}\n";
    let (rs, d) = NftRuleset::parse("calico.nft", text).unwrap();
    assert!(d.is_empty(), "{d:?}");
    let local = vec![ip(NODE), ip("192.168.95.64")];
    let trace_from = |src: &str, local_origin: bool| {
        let mut pkt = Packet::tcp(ip(src), 40000, ip("192.168.7.9"), 80);
        if !local_origin {
            pkt.in_iface = Some("eth0".into());
        }
        let env = Env {
            local_addrs: &local,
            local_origin,
            router: Some(&Tunnel),
            ..Env::default()
        };
        trace_nft(&rs, &pkt, &env)
    };
    // The node's eth0 address leaving by tunl0: local, but not tunl0's: masqueraded.
    let t = trace_from(NODE, true);
    assert!(t.outcomes[0].masquerade, "{:?}", t.outcomes[0]);
    // tunl0's own address: local on tunl0: not masqueraded.
    let t = trace_from("192.168.95.64", true);
    assert!(!t.outcomes[0].masquerade, "{:?}", t.outcomes[0]);
    // A forwarded pod packet: not local at all: not masqueraded.
    let t = trace_from("192.168.1.5", false);
    assert!(!t.outcomes[0].masquerade, "{:?}", t.outcomes[0]);
}

#[test]
fn captures_of_one_moment_agree_whatever_moves() {
    let base = |rule: &str, flags: &str| {
        format!(
            "table ip t {{\n\tset aff {{\n\t\ttype ipv4_addr\n\t\tflags {flags}\n\t}}\n\tchain c {{\n\t\ttype filter hook input priority 0; policy accept;\n\t\t{rule}\n\t}}\n}}\n"
        )
    };
    let same = |a: &str, b: &str| {
        let (x, _) = NftRuleset::parse("a", a).unwrap();
        let (y, _) = NftRuleset::parse("b", b).unwrap();
        x.tables_differing_from(&y).is_empty()
    };
    // Counters move with every packet; comments change nothing.
    assert!(same(
        &base(
            "tcp dport 22 counter packets 0 bytes 0 accept",
            "dynamic,timeout"
        ),
        &base(
            "tcp dport 22 counter packets 11 bytes 660 accept comment \"ssh in\"",
            "timeout"
        ),
    ));
    // `nft -j` names iptables-nft's compat expressions where the text translates them.
    assert!(same(
        &base(
            "meta l4proto tcp tcp dport 22 counter packets 0 bytes 0 accept",
            "timeout"
        ),
        &base(
            "meta l4proto tcp xt match comment xt match multiport counter packets 3 bytes 9 accept",
            "timeout"
        ),
    ));
    let nat = |rule: &str| {
        format!("table ip nat {{\n\tchain POSTROUTING {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\t{rule}\n\t}}\n}}\n")
    };
    assert!(same(
        &nat("xt match set counter packets 0 bytes 0 masquerade"),
        &nat("xt match comment xt match set counter packets 0 bytes 0 xt target MASQUERADE"),
    ));
    // A name stands for one statement of its extension's kind, and for nothing else
    // (review 14): `-m comment` translates to nothing, a multiport match to a port match.
    assert!(!same(
        &base(
            "ip saddr 10.0.0.1 counter packets 0 bytes 0 drop",
            "timeout"
        ),
        &base("xt match comment counter packets 0 bytes 0 drop", "timeout"),
    ));
    assert!(!same(
        &base(
            "meta l4proto tcp counter packets 0 bytes 0 accept",
            "timeout"
        ),
        &base(
            "meta l4proto tcp xt match multiport counter packets 0 bytes 0 accept",
            "timeout"
        ),
    ));
    assert!(!same(
        &base(
            "meta l4proto udp ip saddr 10.0.0.0/8 ct state new counter packets 0 bytes 0 drop",
            "timeout"
        ),
        &base(
            "xt match conntrack counter packets 0 bytes 0 drop",
            "timeout"
        ),
    ));
    assert!(same(
        &base("ip saddr 10.0.0.0/8 ct state established,related counter packets 0 bytes 0 accept", "timeout"),
        &base("ip saddr 10.0.0.0/8 xt match comment xt match conntrack counter packets 4 bytes 8 accept", "timeout"),
    ));
    // What a rule does still counts.
    assert!(!same(
        &base("tcp dport 22 counter packets 0 bytes 0 accept", "timeout"),
        &base("tcp dport 23 counter packets 0 bytes 0 accept", "timeout"),
    ));
    assert!(!same(
        &base("tcp dport 22 accept", "timeout"),
        &base("tcp dport 22 drop", "timeout"),
    ));
    assert!(!same(
        &base(
            "meta l4proto tcp tcp dport 22 counter packets 0 bytes 0 accept",
            "timeout"
        ),
        &base(
            "meta l4proto udp xt match multiport counter packets 0 bytes 0 accept",
            "timeout"
        ),
    ));
}

#[test]
fn valid_listings_with_unmodelled_parts_are_read() {
    // Review 13: nft 1.0.6 loads and prints these; they used to reject the whole file.
    let text = "table inet firewalld {\n\tct helper helper-ftp-tcp {\n\t\ttype \"ftp\" protocol tcp\n\t\tl3proto inet\n\t}\n\tcounter cnt {\n\t\tpackets 0 bytes 0\n\t}\n\tchain filter_INPUT {\n\t\ttype filter hook input priority filter + 10; policy accept;\n\t\tip saddr & 0.0.0.255 == 0.0.0.66 drop\n\t\ttcp dport 22 ct count over 10 drop\n\t\ttcp dport 80 accept\n\t}\n}\n";
    let (rs, d) = NftRuleset::parse("fw.nft", text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        d.iter().any(|x| x
            .message
            .contains("named object `ct helper helper-ftp-tcp`")),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|x| x.message.contains("named object `counter cnt`")),
        "{d:?}"
    );
    assert!(d.iter().any(|x| x.message.contains("& 0.0.0.255")), "{d:?}");
    assert!(
        d.iter().any(|x| x.message.contains("ct count over 10")),
        "{d:?}"
    );
    // A packet that meets the masked match is unknown, naming it.
    let t = run(&rs, "10.1.1.66", NODE, 80, Proto::Tcp);
    assert!(
        matches!(&t.outcomes[0].verdict, Verdict::Unknown { reason, .. } if reason.contains("0.0.0.255")),
        "{:?}",
        t.outcomes[0]
    );
}

#[test]
fn rules_using_named_objects_are_read() {
    // Review 14 d4: nft 1.0.6 loads and prints these.
    let text = "table inet t {\n\tlimit l {\n\t\trate 1/minute\n\t}\n\tcounter cnt {\n\t\tpackets 0 bytes 0\n\t}\n\tchain c {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 counter name \"cnt\" accept\n\t\ttcp dport 23 limit name \"l\" drop\n\t}\n}\n";
    let (rs, d) = NftRuleset::parse("o.nft", text).unwrap_or_else(|e| panic!("{e}"));
    assert!(d.iter().any(|x| x.message.contains("limit name")), "{d:?}");
    // A named counter counts; the rule decides.
    let t = run(&rs, "10.1.1.1", NODE, 22, Proto::Tcp);
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    // A named limit's rate is not in the rule: unknown, naming it.
    let t = run(&rs, "10.1.1.1", NODE, 23, Proto::Tcp);
    assert!(
        matches!(&t.outcomes[0].verdict, Verdict::Unknown { reason, .. } if reason.contains("limit name")),
        "{:?}",
        t.outcomes[0]
    );
}
