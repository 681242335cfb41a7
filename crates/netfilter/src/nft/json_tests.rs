//! The JSON reader's own behaviour: positions, errors, opaque statements, commands. That it
//! gives the text reader's model for the same ruleset is `tests/nft_json.rs`.

use std::net::IpAddr;

use super::*;
use crate::nft::{trace_nft, NftRuleset};
use crate::types::{Env, Packet, Verdict};

const KP_JSON: &str = include_str!("../../tests/nft/json/kube-proxy.json");
const COMPAT_JSON: &str = include_str!("../../tests/nft/json/iptables-nft-compat.json");

fn parse(text: &str) -> (NftRuleset, Vec<Diagnostic>) {
    NftRuleset::parse("rs.json", text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ParseError {
    match NftRuleset::parse("rs.json", text) {
        Ok(_) => panic!("read without error: {text}"),
        Err(e) => e,
    }
}

fn doc(items: &str) -> String {
    format!("{{\"nftables\": [{{\"metainfo\": {{\"json_schema_version\": 1}}}}, {items}]}}")
}

const TABLE: &str = r#"{"table": {"family": "ip", "name": "t"}}"#;
const CHAIN: &str = r#"{"chain": {"family": "ip", "table": "t", "name": "c", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}"#;

fn with_rule(expr: &str) -> String {
    doc(&format!(
        r#"{TABLE}, {CHAIN}, {{"rule": {{"family": "ip", "table": "t", "chain": "c", "handle": 4, "expr": {expr}}}}}"#
    ))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn forward(rs: &NftRuleset, dst: &str, dport: u16) -> crate::Trace {
    let local = [ip("10.0.0.1")];
    let pkt = Packet::tcp(ip("192.0.2.7"), 40000, ip(dst), dport).with_in_iface("eth0");
    trace_nft(rs, &pkt, &Env::new(&local))
}

#[test]
fn sniffs_json_and_reads_it_through_parse() {
    assert!(NftRuleset::sniff(KP_JSON));
    assert!(NftRuleset::sniff("{\n  \"nftables\": [\n"));
    assert!(NftRuleset::sniff(
        "# node1:~ # nft -j list ruleset\n{\"nftables\": []}\n"
    ));
    // Other JSON (a Kubernetes object, `ip -j addr`) is not an nft ruleset.
    assert!(!NftRuleset::sniff(
        "{\"apiVersion\": \"v1\", \"kind\": \"Service\"}"
    ));
    assert!(!NftRuleset::sniff("[{\"ifindex\": 1}]"));
    let (rs, d) = parse(KP_JSON);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(rs.rule_count(), 43);
    let (rs2, _) = NftRuleset::parse_json("rs.json", KP_JSON).unwrap();
    assert_eq!(rs2.rule_count(), 43);
    // An empty listing (a node without nft rules) is an empty ruleset.
    let (rs, _) = parse("{\"nftables\": [{\"metainfo\": {\"version\": \"1.0.6\"}}]}\n");
    assert!(rs.tables.is_empty());
}

#[test]
fn a_rule_cites_where_its_object_starts_and_its_handle() {
    // One line, as `nft -j` prints it: line 1, the column of the rule object.
    let (rs, _) = parse(KP_JSON);
    let t = rs.table(NftFamily::Ip, "kube-proxy").unwrap();
    let r = &t.chain("services").unwrap().rules[0];
    assert_eq!(r.source.line, 1);
    assert_eq!(r.handle, Some(44));
    let at = KP_JSON
        .find(r#"{"family": "ip", "table": "kube-proxy", "chain": "services", "handle": 44"#)
        .unwrap();
    assert_eq!(r.column as usize, KP_JSON[..at].chars().count() + 1);
    assert_eq!(
        r.text,
        "ip daddr . meta l4proto . th dport vmap @service-ips"
    );
    // Pretty-printed (`| jq .`): the line of the rule object.
    let v: serde_json::Value = serde_json::from_str(KP_JSON).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    let (rs, _) = parse(&pretty);
    let t = rs.table(NftFamily::Ip, "kube-proxy").unwrap();
    let r = &t.chain("services").unwrap().rules[0];
    let line = pretty.lines().nth(r.source.line as usize - 1).unwrap();
    assert_eq!(line.trim(), "\"rule\": {", "line {}", r.source.line);
    // The rule object's own lines (up to the next rule).
    let own: Vec<&str> = pretty
        .lines()
        .skip(r.source.line as usize)
        .take_while(|l| l.trim() != "\"rule\": {")
        .map(str::trim)
        .collect();
    assert!(own.contains(&"\"chain\": \"services\","), "{own:?}");
    assert!(
        own.iter().any(|l| l.starts_with("\"handle\": 44")),
        "{own:?}"
    );
    let c = t.chain("nat-prerouting").unwrap();
    assert!(pretty
        .lines()
        .nth(c.source.line as usize - 1)
        .unwrap()
        .contains("\"chain\": {"));
}

#[test]
fn malformed_json_is_an_error_at_its_line_and_column() {
    for (text, at, expected) in [
        ("{", (1, 2), "a property name"),
        (
            "# nft -j list ruleset\n{\"nftables\": [",
            (2, 15),
            "a JSON value",
        ),
        (
            "{\"nftables\": [\n  {\"table\": {\"family\": \"ip\" \"name\": \"t\"}}]}",
            (2, 29),
            "`,` or `}`",
        ),
        ("{\"nftables\": [\"abc]}", (1, 21), "the end of the string"),
        ("{\"nftables\": [\"a\\q\"]}", (1, 18), "an escape"),
        ("{\"nftables\": [\"\\ud800x\"]}", (1, 22), "surrogate"),
        ("{\"nftables\": [01]}", (1, 16), "`,` or `]`"),
        ("{\"nftables\": [-]}", (1, 16), "a digit"),
        ("{\"nftables\": [tru]}", (1, 15), "a JSON value"),
        (
            "{\"nftables\": []} x",
            (1, 18),
            "the end of the JSON document",
        ),
        (
            "{\"nftables\": [], \"nftables\": []}",
            (1, 18),
            "property names differ",
        ),
        (
            "{\"nftables\": [\n\t{\"a\": \"\u{1}\"}]}",
            (2, 9),
            "control characters",
        ),
    ] {
        let e = err(text);
        assert_eq!((e.line, e.column), at, "{text:?}: {e}");
        assert!(e.expected.contains(expected), "{text:?}: {e}");
        assert_eq!(&*e.file, "rs.json");
    }
    // Nesting is bounded: a deep document is an error, not a stack overflow.
    let deep = format!(
        "{{\"nftables\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(err(&deep).expected.contains("levels of nesting"));
}

#[test]
fn unknown_shapes_are_errors_saying_what_was_expected() {
    for (text, expected) in [
        ("{\"ruleset\": []}".to_string(), "\"nftables\""),
        ("{\"nftables\": {}}".into(), "an array"),
        (doc("{\"tabel\": {}}"), "table, chain, rule"),
        (
            doc("{\"delete\": {\"table\": {\"name\": \"t\"}}}"),
            "add, create, insert, flush",
        ),
        (
            doc(r#"{"table": {"family": "ipx", "name": "t"}}"#),
            "a family",
        ),
        (
            doc(r#"{"chain": {"family": "ip", "table": "t", "name": "c"}}"#),
            "an existing ip table",
        ),
        (
            doc(&format!(
                r#"{TABLE}, {{"chain": {{"family": "ip", "table": "t", "name": "c", "type": "nat", "hook": "forward", "prio": 0}}}}"#
            )),
            "a hook the nat chain type supports",
        ),
        (
            doc(&format!(
                r#"{TABLE}, {{"chain": {{"family": "ip", "table": "t", "name": "c", "type": "nat", "hook": "prerouting", "prio": -300}}}}"#
            )),
            "above -200",
        ),
        (
            doc(&format!(
                r#"{TABLE}, {{"rule": {{"family": "ip", "table": "t", "chain": "x", "expr": [{{"accept": null}}]}}}}"#
            )),
            "an existing chain",
        ),
        (with_rule("[]"), "a statement"),
        (
            with_rule("[{\"accept\": null, \"drop\": null}]"),
            "a statement",
        ),
        (
            with_rule(r#"[{"match": {"op": "~", "left": {"meta": {"key": "mark"}}, "right": 1}}]"#),
            "an operator",
        ),
        (
            with_rule(
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.0.0.300"}}]"#,
            ),
            "a value of type ipv4_addr",
        ),
        (
            with_rule(
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 70000}}]"#,
            ),
            "a value of type inet_service",
        ),
        (
            with_rule(
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}}}]"#,
            ),
            "a \"right\" property",
        ),
        (
            with_rule(r#"[{"jump": {"target": "nowhere"}}]"#),
            "the name of a chain",
        ),
        (
            with_rule(
                r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@nowhere"}}, {"accept": null}]"#,
            ),
            "the name of a set",
        ),
        (
            with_rule(r#"[{"reject": {"type": "icmp", "expr": "bad-code"}}]"#),
            "an ICMP reject type",
        ),
        (
            with_rule(
                r#"[{"match": {"op": "==", "left": {"numgen": {"mode": "random", "mod": 0}}, "right": 0}}]"#,
            ),
            "a modulus",
        ),
        (
            doc(&format!(
                r#"{TABLE}, {CHAIN}, {{"add": {{"rule": {{"family": "ip", "table": "t", "chain": "c", "handle": 3, "expr": [{{"accept": null}}]}}}}}}"#
            )),
            "rule positions",
        ),
        (
            doc(&format!(
                r#"{TABLE}, {{"set": {{"family": "ip", "table": "t", "name": "s", "type": "ipv4_addr", "elem": [{{"prefix": {{"addr": "10.0.0.0", "len": 8}}}}]}}}}"#
            )),
            "flags interval",
        ),
    ] {
        let e = err(&text);
        assert!(e.expected.contains(expected), "{text}: {e}");
        assert!(e.line >= 1 && e.column >= 1, "{e}");
    }
}

#[test]
fn the_kernels_checks_apply_to_json_too() {
    // A jump loop, refused by the kernel, is refused as from text, at the rule's position.
    let text = doc(&format!(
        r#"{TABLE}, {CHAIN}, {{"chain": {{"family": "ip", "table": "t", "name": "a"}}}}, {{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{{"jump": {{"target": "a"}}}}]}}}}, {{"rule": {{"family": "ip", "table": "t", "chain": "a", "expr": [{{"jump": {{"target": "a"}}}}]}}}}"#
    ));
    let e = err(&text);
    assert!(e.expected.contains("no jump loop"), "{e}");
    assert_eq!(e.found, "`jump a`");
    assert_eq!(e.line, 1);
    assert_eq!(e.column as usize, text.rfind("{\"family\"").unwrap() + 1);
}

#[test]
fn unmodelled_statements_are_opaque_unknown_and_named() {
    // iptables-nft's compat expressions: `nft -j` gives their names only.
    let (rs, d) = parse(COMPAT_JSON);
    assert!(
        d.iter().any(|x| x.message.contains("`xt match conntrack`")
            && x.message.contains("does not print its arguments")),
        "{d:#?}"
    );
    // The comment match and the LOG target have no effect; they are not named.
    assert!(!d.iter().any(|x| x.message.contains("xt match comment")));
    assert!(!d.iter().any(|x| x.message.contains("xt target LOG")));
    let t = forward(&rs, "10.96.0.1", 443);
    // PREROUTING's `-m comment` rule jumps on; the DNAT target is compat: UNKNOWN, named.
    let reasons: Vec<String> = t
        .outcomes
        .iter()
        .map(|o| match &o.verdict {
            Verdict::Unknown { reason, .. } => reason.clone(),
            v => format!("{v:?}"),
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("xt match statistic")),
        "{reasons:?}"
    );

    // A statement this reader does not know at all is opaque too, never dropped.
    let (rs, d) = parse(&with_rule(
        r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}}, {"frobnicate": {"x": 1}}, {"accept": null}]"#,
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("frobnicate"), "{d:?}");
    assert!(d[0].message.contains("handle 4"), "{d:?}");
    let r = &rs.tables[0].chains[0].rules[0];
    assert_eq!(r.text, "tcp dport 80 frobnicate {\"x\": 1} accept");
    let t = forward(&rs, "10.1.1.1", 80);
    assert!(
        matches!(&t.outcomes[0].verdict, Verdict::Unknown { reason, .. } if reason.contains("frobnicate")),
        "{:?}",
        t.outcomes
    );
    // Another port does not reach it.
    assert_eq!(
        forward(&rs, "10.1.1.1", 81).outcomes[0].verdict,
        Verdict::Accept
    );
}

#[test]
fn a_header_field_keeps_its_protocol_dependency() {
    // `icmp type echo-request`: only ICMP packets reach the opaque match; TCP goes on.
    let (rs, _) = parse(&with_rule(
        r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "icmp", "field": "type"}}, "right": "echo-request"}}, {"drop": null}]"#,
    ));
    assert_eq!(
        rs.tables[0].chains[0].rules[0].text,
        "icmp type echo-request drop"
    );
    assert_eq!(
        forward(&rs, "10.1.1.1", 80).outcomes[0].verdict,
        Verdict::Accept
    );
}

#[test]
fn commands_add_insert_and_flush() {
    let text = doc(&format!(
        r#"{{"add": {TABLE}}}, {{"add": {CHAIN}}},
        {{"add": {{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "tcp", "field": "dport"}}}}, "right": 80}}}}, {{"accept": null}}]}}}}}},
        {{"insert": {{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "tcp", "field": "dport"}}}}, "right": 80}}}}, {{"drop": null}}]}}}}}}"#
    ));
    let (rs, _) = parse(&text);
    let c = &rs.tables[0].chains[0];
    assert_eq!(
        c.rules.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["tcp dport 80 drop", "tcp dport 80 accept"]
    );
    assert_eq!(c.rules[0].source.line, 3, "the inserted rule's line");
    assert_eq!(c.rules[0].handle, None);
    assert_eq!(
        forward(&rs, "10.1.1.1", 80).outcomes[0].verdict,
        Verdict::Drop
    );
    let flushed = text.replace(
        "]}",
        r#", {"flush": {"chain": {"family": "ip", "table": "t", "name": "c"}}}]}"#,
    );
    let (rs, _) = parse(&flushed);
    assert!(rs.tables[0].chains[0].rules.is_empty());
    let (rs, _) = parse(&text.replace("]}", r#", {"flush": {"ruleset": null}}]}"#));
    assert!(rs.tables.is_empty());
    // Files combine as with text: a JSON listing after a text file adds to it.
    let mut rs = NftRuleset::new();
    rs.add_text("a.nft", "table ip t {\n\tchain c {\n\t\ttype filter hook forward priority 0; policy accept;\n\t}\n}\n")
        .unwrap();
    rs.add_text("b.json", &with_rule(r#"[{"drop": null}]"#))
        .unwrap();
    assert_eq!(rs.rule_count(), 1);
    assert_eq!(&*rs.tables[0].chains[0].rules[0].source.file, "b.json");
}

#[test]
fn the_dynamic_flag_nft_leaves_out_is_restored() {
    let (rs, _) = parse(KP_JSON);
    let t = rs.table(NftFamily::Ip, "kube-proxy").unwrap();
    let aff = t
        .set("affinity-DDDD4444-shop/front/tcp/http__10.244.1.9/80")
        .unwrap();
    assert_eq!(aff.flags, ["dynamic", "timeout"]);
    // The raw JSON has `timeout` only.
    assert!(KP_JSON.contains(r#""flags": ["timeout"], "timeout": 10800"#));
    assert_eq!(t.set("cluster-ips").unwrap().flags, Vec::<String>::new());
}

#[test]
fn named_limits_and_quotas() {
    let text = doc(&format!(
        r#"{TABLE}, {CHAIN}, {{"limit": {{"family": "ip", "table": "t", "name": "l1", "rate": 4, "per": "minute", "inv": true}}}},
        {{"quota": {{"family": "ip", "table": "t", "name": "q1", "bytes": 100}}}},
        {{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{{"limit": "l1"}}, {{"drop": null}}]}}}},
        {{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": [{{"quota": "q1"}}, {{"drop": null}}]}}}}"#
    ));
    let (rs, d) = parse(&text);
    let c = &rs.tables[0].chains[0];
    assert_eq!(c.rules[0].text, "limit name \"l1\" drop");
    assert!(matches!(
        &c.rules[0].stmts[0],
        Stmt::Limit { over: true, .. }
    ));
    assert!(matches!(&c.rules[1].stmts[0], Stmt::Opaque(s) if s == "quota name \"q1\""));
    assert_eq!(d.len(), 1, "{d:?}");
    // `limit over` a rate assumed not exceeded: no match; the quota is unknown.
    let t = forward(&rs, "10.1.1.1", 80);
    assert!(
        matches!(&t.outcomes[0].verdict, Verdict::Unknown { reason, .. } if reason.contains("quota name"))
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Cut or changed anywhere, a capture is read or refused with a position, never a panic.
    #[test]
    fn a_damaged_capture_never_panics(cut in 0usize..16_653, at in 0usize..16_653, c in proptest::prelude::any::<char>()) {
        let mut s: String = KP_JSON.chars().take(cut.max(1)).collect();
        s.push_str(&KP_JSON.chars().skip(cut.max(1)).collect::<String>().chars().skip(1).collect::<String>());
        let mut chars: Vec<char> = s.chars().collect();
        if !chars.is_empty() {
            let i = at % chars.len();
            chars[i] = c;
        }
        let s: String = chars.into_iter().collect();
        match NftRuleset::parse("cut.json", &s) {
            Ok(_) => {}
            Err(e) => proptest::prop_assert!(e.line >= 1 && e.column >= 1),
        }
        let truncated: String = KP_JSON.chars().take(cut).collect();
        if let Err(e) = NftRuleset::parse("cut.json", &truncated) {
            proptest::prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }
}

#[test]
fn a_dormant_table_is_named() {
    // What nft 1.0.6 prints for `table ip d { flags dormant; ... }` (its JSON cuts the flag
    // to "d"): neither reader models dormancy, and the JSON reader says so.
    let (_, d) = parse(&doc(
        r#"{"table": {"family": "ip", "name": "d", "handle": 1, "flags": "d"}}"#,
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("table ip d is dormant"), "{d:?}");
    let (_, d) = parse(&doc(TABLE));
    assert!(d.is_empty(), "{d:?}");
}
