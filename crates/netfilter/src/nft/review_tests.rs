//! Rulesets from an independent review that tested the engine against the kernel with real TCP
//! connections through network namespaces (client 10.1.0.2 on r0 → router 10.1.0.1 / 10.2.0.1,
//! 10.9.9.9 on lo → servers 10.2.0.2-9 on r1). Every expectation here is what the kernel did.

use std::net::IpAddr;

use super::*;
use crate::types::{Env, Packet, Proto, RouteDecision, RouteOracle, Verdict};

struct Lab;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const LOCAL: [&str; 3] = ["10.1.0.1", "10.2.0.1", "10.9.9.9"];

impl RouteOracle for Lab {
    fn route(&self, pkt: &Packet) -> RouteDecision {
        if pkt.dst.is_loopback() || LOCAL.iter().any(|a| ip(a) == pkt.dst) {
            RouteDecision::Local
        } else {
            RouteDecision::Forward {
                out_iface: Some("r1".into()),
                src_hint: Some(ip("10.2.0.1")),
            }
        }
    }
}

pub(super) fn parse(name: &str, text: &str) -> NftRuleset {
    match NftRuleset::parse(name, text) {
        Ok((rs, _)) => rs,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// The first TCP packet from 10.1.0.2 arriving on r0.
pub(super) fn probe(rs: &NftRuleset, dst: &str, dport: u16) -> crate::Trace {
    let local: Vec<IpAddr> = LOCAL.iter().map(|a| ip(a)).collect();
    let mut pkt = Packet::new(ip("10.1.0.2"), ip(dst), Proto::Tcp);
    pkt.sport = 41000;
    pkt.dport = dport;
    pkt.in_iface = Some("r0".into());
    let env = Env {
        local_addrs: &local,
        router: Some(&Lab),
        ..Env::default()
    };
    trace_nft(rs, &pkt, &env)
}

/// One deterministic outcome: `served ADDR:PORT` or `drop` / `reject` / `unknown: ...`.
pub(super) fn what(t: &crate::Trace) -> String {
    assert_eq!(t.outcomes.len(), 1, "{:#?}", t.outcomes);
    let o = &t.outcomes[0];
    match &o.verdict {
        Verdict::Accept => format!("served {}:{}", o.packet.dst, o.packet.dport),
        Verdict::Drop => "drop".into(),
        Verdict::Reject { .. } => "reject".into(),
        Verdict::Unknown { reason, .. } => format!("unknown: {reason}"),
    }
}

fn check(name: &str, text: &str, want: &[(&str, u16, &str)]) {
    let rs = parse(name, text);
    for (dst, port, w) in want {
        let got = what(&probe(&rs, dst, *port));
        assert_eq!(&got, w, "{name}: tcp to {dst}:{port}");
    }
}

#[test]
fn ct_below_conntrack_is_invalid() {
    // r2: `ct state invalid` matches at priority raw (-300), `ct state new` does not.
    check(
        "r2.nft",
        include_str!("../../tests/nft/review/r2.nft"),
        &[
            ("10.2.0.2", 8080, "served 10.2.0.3:8080"),
            ("10.2.0.2", 8081, "served 10.2.0.2:8081"),
            ("10.2.0.2", 8085, "served 10.2.0.5:8085"),
            ("10.2.0.2", 9000, "drop"),
        ],
    );
}

#[test]
fn ct_mark_and_notrack_around_conntrack() {
    let text = "\
table ip t {
\tchain raw {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\ttcp dport 8080 ct mark set 0x5
\t\ttcp dport 8081 ct mark != 0x5 meta mark set 0x9
\t\ttcp dport 8085 notrack
\t\ttcp dport 8085 ct state untracked meta mark set 0x7
\t}
\tchain late {
\t\ttype filter hook prerouting priority 0; policy accept;
\t\ttcp dport 8080 ct mark 0x5 drop
\t\ttcp dport 8081 meta mark 0x9 drop
\t\ttcp dport 8085 meta mark 0x7 ct state untracked drop
\t\ttcp dport 9000 notrack
\t\ttcp dport 9000 ct state untracked drop
\t}
}
";
    check(
        "ctmark.nft",
        text,
        &[
            // `ct mark set` before conntrack does nothing; `ct mark != 5` breaks.
            ("10.2.0.2", 8080, "served 10.2.0.2:8080"),
            ("10.2.0.2", 8081, "served 10.2.0.2:8081"),
            ("10.2.0.2", 8085, "drop"),
            // notrack after conntrack: no effect.
            ("10.2.0.2", 9000, "served 10.2.0.2:9000"),
        ],
    );
}

#[test]
fn equal_priorities_run_the_later_chain_first() {
    check(
        "r3.nft",
        include_str!("../../tests/nft/review/r3.nft"),
        &[
            ("10.2.0.2", 8080, "served 10.2.0.2:8080"),
            ("10.2.0.2", 8081, "drop"),
            ("10.2.0.2", 8085, "served 10.2.0.2:8085"),
            ("10.2.0.2", 9000, "drop"),
        ],
    );
}

#[test]
fn nat_core_is_ordered_by_the_first_nat_chain() {
    // r4: the filter chain at -100 is created after the first nat chain: it runs before DNAT.
    check(
        "r4.nft",
        include_str!("../../tests/nft/review/r4.nft"),
        &[
            ("10.2.0.2", 8080, "served 10.2.0.3:8080"),
            ("10.2.0.2", 8081, "served 10.2.0.4:8081"),
            ("10.2.0.2", 8085, "drop"),
            ("10.2.0.2", 9000, "served 10.2.0.5:9000"),
        ],
    );
    // r9: the filter chain at -100 is created before the nat table: it runs after DNAT.
    check(
        "r9.nft",
        include_str!("../../tests/nft/review/r9.nft"),
        &[
            ("10.2.0.2", 8080, "drop"),
            ("10.2.0.2", 8081, "served 10.2.0.3:8081"),
            ("10.2.0.2", 8085, "served 10.2.0.2:8085"),
        ],
    );
}

#[test]
fn a_long_one_line_set_is_read_in_linear_time() {
    // 200k elements on one line (the lexer used to count each token's column from the line
    // start: quadratic, minutes for this).
    let n = 200_000u32;
    let mut els = String::with_capacity(n as usize * 12);
    for i in 0..n {
        if i > 0 {
            els.push_str(", ");
        }
        els.push_str(&format!(
            "10.{}.{}.{}",
            100 + i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    let text = format!(
        "table ip f {{\n\tset big {{\n\t\ttype ipv4_addr\n\t\telements = {{ {els} }}\n\t}}\n\tchain c {{\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tip daddr @big drop\n\t}}\n}}\n"
    );
    let rs = parse("big.nft", &text);
    let t = rs.table(NftFamily::Ip, "f").unwrap();
    assert_eq!(t.set("big").unwrap().elements.len(), n as usize);
    assert_eq!(what(&probe(&rs, "10.102.13.64", 80)), "drop");
    // A column after the long line is still right.
    let bad = format!("{}\nx", text.trim_end());
    let e = NftRuleset::parse("big.nft", &bad).unwrap_err();
    assert_eq!((e.line, e.column), (11, 1));
}

/// Each was loaded with `nft -f` into a fresh namespace (nft 1.0.6, kernel 6.x): the ones the
/// kernel or nft refused must be refused here (line:column of the offending rule or chain),
/// the ones it took must be read.
#[test]
fn refuses_what_the_kernel_refuses_at_load() {
    let chains = (1..=16)
        .map(|i| format!("\tchain c{i} {{ jump c{}; }}\n", i + 1))
        .collect::<String>();
    let deep = format!("table ip t {{\n\tchain base {{\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tjump c1\n\t}}\n{chains}\tchain c17 {{ drop; }}\n}}\n");
    let deep15 = deep.replace("jump c16;", "drop;");
    let bad: Vec<(&str, String, (u32, u32))> = vec![
        (
            "loop",
            "table ip t {\n\tchain base {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tjump a\n\t}\n\tchain a {\n\t\tjump b\n\t}\n\tchain b {\n\t\tjump a\n\t}\n}\n".into(),
            (10, 3),
        ),
        (
            "self goto",
            "table ip t {\n chain n { type filter hook forward priority 0; policy accept; goto n; }\n}\n".into(),
            (2, 64),
        ),
        // c16 would be the 16th level below the base chain.
        ("depth 16", deep.clone(), (20, 14)),
        (
            "nat below conntrack",
            "table ip t {\n chain n { type nat hook prerouting priority -300; policy accept; }\n}\n".into(),
            (2, 46),
        ),
        (
            "nat at conntrack",
            "table ip t {\n chain n { type nat hook prerouting priority raw + 100; policy accept; }\n}\n".into(),
            (2, 46),
        ),
        (
            "masquerade in prerouting",
            "table ip t {\n chain n { type nat hook prerouting priority -100; policy accept; masquerade; }\n}\n".into(),
            (2, 67),
        ),
        (
            "dnat in a filter chain",
            "table ip t {\n chain n { type filter hook prerouting priority -100; policy accept; dnat to 1.2.3.4; }\n}\n".into(),
            (2, 70),
        ),
        (
            "dnat below a filter chain",
            "table ip t {\n chain n { type filter hook prerouting priority -100; policy accept; jump x; }\n chain x { dnat to 1.2.3.4; }\n}\n".into(),
            (3, 12),
        ),
        (
            "dnat in nat input",
            "table ip t {\n chain n { type nat hook input priority 100; policy accept; dnat to 1.2.3.4; }\n}\n".into(),
            (2, 61),
        ),
        (
            "snat port without transport match",
            include_str!("../../tests/nft/review/bad-snatport.nft").into(),
            (48, 3),
        ),
        (
            "jump to a base chain",
            "table ip t {\n chain n { type filter hook forward priority 0; policy accept; tcp dport vmap { 1 : jump m }; }\n chain m { type filter hook input priority 0; policy accept; }\n}\n".into(),
            (2, 64),
        ),
    ];
    for (what, text, at) in bad {
        match NftRuleset::parse("bad.nft", &text) {
            Ok(_) => panic!("{what}: read, the kernel refuses it"),
            Err(e) => assert_eq!((e.line, e.column), at, "{what}: {e}"),
        }
    }
    let good: Vec<(&str, String)> = vec![
        (
            "unreachable loop",
            "table ip t {\n\tchain a {\n\t\tjump b\n\t}\n\tchain b {\n\t\tjump a\n\t}\n}\n".into(),
        ),
        ("depth 15", deep15),
        (
            "nat just above conntrack",
            "table ip t {\n chain n { type nat hook prerouting priority -199; policy accept; }\n}\n"
                .into(),
        ),
        (
            "dnat in an unreachable chain",
            "table ip t {\n chain x { dnat to 1.2.3.4; }\n}\n".into(),
        ),
        (
            "snat port after a protocol set",
            "table ip t {\n chain n { type nat hook postrouting priority 100; policy accept; meta l4proto {tcp, udp} snat to 1.2.3.4:100-200; }\n}\n".into(),
        ),
    ];
    for (what, text) in good {
        if let Err(e) = NftRuleset::parse("good.nft", &text) {
            panic!("{what}: the kernel takes it: {e}");
        }
    }
}

#[test]
fn masquerade_port_range_is_noted() {
    let rs = parse("r6.nft", include_str!("../../tests/nft/review/r6c.nft"));
    let t = probe(&rs, "10.2.0.4", 8080);
    let o = &t.outcomes[0];
    assert!(o.masquerade);
    assert_eq!(o.packet.sport, 5000);
    assert!(
        o.notes.iter().any(|n| n.contains("5000-5010")),
        "{:?}",
        o.notes
    );
}

#[test]
fn determinable_fields_are_decided() {
    let text = "\
table inet f {
\tchain c {
\t\ttype filter hook forward priority 0; policy accept;
\t\ticmp type echo-request drop
\t\ticmpv6 type echo-request drop
\t\tiif \"lo\" drop
\t\tiif != \"r0\" tcp dport 8080 drop
\t\tip version 6 drop
\t\tip6 version 6 drop
\t\tct direction reply tcp dport 8080 drop
\t\ttcp dport 8081 ip version 4 ct direction original drop
\t\tudp length 20 drop
\t}
}
";
    let rs = parse("det.nft", text);
    assert_eq!(what(&probe(&rs, "10.2.0.2", 8080)), "served 10.2.0.2:8080");
    assert_eq!(what(&probe(&rs, "10.2.0.2", 8081)), "drop");
}
