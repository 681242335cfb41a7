//! Property tests: the dispatch index gives exactly the linear result on random
//! KUBE-SERVICES-like chains; the parsers never panic on arbitrary or mutated input.

use std::fmt::Write as _;
use std::net::IpAddr;

use kubepath_netfilter::{trace, trace_linear, Env, IpSets, Packet, Proto, Ruleset};
use proptest::prelude::*;

/// One generated rule of the big chain.
#[derive(Clone, Debug)]
enum R {
    /// -d VIP -p proto --dport P -j SVC-k (or REJECT / ACCEPT / MARK)
    Svc {
        vip: u8,
        udp: bool,
        port: u16,
        action: u8,
    },
    /// ! -s 10.244.0.0/16 -d VIP ... -j KUBE-MARK-MASQ
    Masq { vip: u8, port: u16 },
    /// -m addrtype --dst-type LOCAL -j NODEPORTS
    NodePorts,
    /// -d 10.96.0.0/24 (not a host) -j MARK
    Net { port: Option<u16> },
    /// ! -d VIP -j ... (negated, must stay linear)
    NotDst { vip: u8 },
    /// --dport only
    Port { port: u16, action: u8 },
}

fn rule() -> impl Strategy<Value = R> {
    prop_oneof![
        6 => (0u8..12, any::<bool>(), 78u16..84, 0u8..4).prop_map(|(vip, udp, port, action)| R::Svc { vip, udp, port, action }),
        2 => (0u8..12, 78u16..84).prop_map(|(vip, port)| R::Masq { vip, port }),
        1 => Just(R::NodePorts),
        1 => proptest::option::of(78u16..84).prop_map(|port| R::Net { port }),
        1 => (0u8..12).prop_map(|vip| R::NotDst { vip }),
        2 => (78u16..84, 0u8..4).prop_map(|(port, action)| R::Port { port, action }),
    ]
}

fn vip(i: u8) -> String {
    format!("10.96.0.{}", 10 + i)
}

fn ruleset(rules: &[R]) -> String {
    let mut t = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n",
    );
    for k in 0..4 {
        let _ = writeln!(t, ":KUBE-SVC-{k} - [0:0]");
    }
    t.push_str("-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n-A POSTROUTING -j KUBE-POSTROUTING\n");
    t.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    t.push_str("-A KUBE-POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE\n");
    t.push_str(
        "-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j DNAT --to-destination 10.244.9.9:80\n",
    );
    for k in 0..4 {
        let _ = writeln!(
            t,
            "-A KUBE-SVC-{k} -p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.244.{k}.1:8080\n\
             -A KUBE-SVC-{k} -p tcp -j DNAT --to-destination 10.244.{k}.2:8080"
        );
    }
    let target = |a: u8| match a {
        0 => "-j KUBE-SVC-0".to_string(),
        1 => "-j KUBE-SVC-3".to_string(),
        2 => "-j MARK --set-xmark 0x1/0x1".to_string(),
        _ => "-j ACCEPT".to_string(),
    };
    for r in rules {
        let line = match r {
            R::Svc { vip: v, udp, port, action } => {
                let p = if *udp { "udp" } else { "tcp" };
                format!("-A KUBE-SERVICES -d {}/32 -p {p} -m comment --comment \"ns/svc:p cluster IP\" -m {p} --dport {port} {}", vip(*v), target(*action))
            }
            R::Masq { vip: v, port } => format!(
                "-A KUBE-SERVICES ! -s 10.244.0.0/16 -d {}/32 -p tcp -m tcp --dport {port} -j KUBE-MARK-MASQ",
                vip(*v)
            ),
            R::NodePorts => "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS".to_string(),
            R::Net { port: Some(p) } => format!("-A KUBE-SERVICES -d 10.96.0.0/24 -p tcp -m tcp --dport {p} -j MARK --set-xmark 0x2/0x2"),
            R::Net { port: None } => "-A KUBE-SERVICES -d 10.96.0.0/24 -j MARK --set-xmark 0x2/0x2".to_string(),
            R::NotDst { vip: v } => format!("-A KUBE-SERVICES ! -d {}/32 -j MARK --set-xmark 0x4/0x4", vip(*v)),
            R::Port { port, action } => format!("-A KUBE-SERVICES -p tcp -m tcp --dport {port} {}", target(*action)),
        };
        t.push_str(&line);
        t.push('\n');
    }
    t.push_str("COMMIT\n");
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn index_equals_linear(rules in proptest::collection::vec(rule(), 16..120),
                           packets in proptest::collection::vec((0u8..14, 77u16..85, any::<bool>(), any::<bool>()), 1..12)) {
        let text = ruleset(&rules);
        let (rs, diags) = Ruleset::parse("gen.rules", &text).unwrap();
        prop_assert!(diags.is_empty());
        prop_assert!(rs.stats().indexed_chains >= 1);
        let local: Vec<IpAddr> = vec!["10.96.0.20".parse().unwrap(), "192.168.1.1".parse().unwrap()];
        for (v, port, udp, from_pod) in packets {
            let dst: IpAddr = if v == 13 { "192.168.1.1".parse().unwrap() } else { vip(v).parse().unwrap() };
            let src: IpAddr = if from_pod { "10.244.5.5".parse().unwrap() } else { "172.16.0.9".parse().unwrap() };
            let mut p = Packet::new(src, dst, if udp { Proto::Udp } else { Proto::Tcp }).with_in_iface("eth0");
            p.sport = 40000;
            p.dport = port;
            for local_origin in [false, true] {
                let env = Env { local_origin, ..Env::new(&local) };
                let mut q = p.clone();
                if local_origin { q.in_iface = None; }
                prop_assert_eq!(trace(&rs, &q, &env), trace_linear(&rs, &q, &env));
            }
        }
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,400}") {
        let _ = Ruleset::parse("fuzz.rules", &s);
        let _ = IpSets::parse_save("fuzz.ipset", &s);
        let _ = Ruleset::sniff(&s);
    }

    #[test]
    fn parser_never_panics_on_mutated_rules(edits in proptest::collection::vec((0usize..4000, 0u8..4, "[-!\":/,\\[\\] a-zA-Z0-9.+]{0,8}"), 1..8)) {
        let base = include_str!("../../../fixtures/iptables/ok/kube-proxy-v1.28.iptables-save");
        let mut s: Vec<char> = base.chars().collect();
        for (pos, kind, ins) in edits {
            let pos = pos % (s.len() + 1);
            match kind {
                0 => { s.splice(pos..pos, ins.chars()); }
                1 => { let end = (pos + ins.len()).min(s.len()); s.drain(pos..end); }
                2 => { if pos < s.len() { s[pos] = ' '; } }
                _ => { s.splice(pos..pos, "\n".chars()); }
            }
        }
        let text: String = s.into_iter().collect();
        if let Ok((rs, _)) = Ruleset::parse("m.rules", &text) {
            // Whatever parsed can be traced without panicking.
            let local: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
            let p = Packet::tcp("192.0.2.1".parse().unwrap(), 1, "192.0.2.50".parse().unwrap(), 80).with_in_iface("eth0");
            let t = trace(&rs, &p, &Env::new(&local));
            let total: f64 = t.outcomes.iter().map(|o| o.probability).sum();
            prop_assert!((total - 1.0).abs() < 1e-9);
        }
    }
}
