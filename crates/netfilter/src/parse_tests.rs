//! Unit tests of the parser: syntax forms iptables-save / iptables -S print, and errors.

use crate::*;

fn parse(text: &str) -> Result<(Ruleset, Vec<Diagnostic>), ParseError> {
    both_ways("t.save", text)
}

/// `Ruleset::parse` read by one thread and with every save block's `-A` lines split between
/// two (`crate::parse::set_split_min(0)`): the results (the whole ruleset's `Debug` form, the
/// diagnostics, the error) must be the same.
fn both_ways(file: &str, text: &str) -> Result<(Ruleset, Vec<Diagnostic>), ParseError> {
    crate::parse::set_split_min(usize::MAX);
    let one = Ruleset::parse(file, text);
    crate::parse::set_split_min(0);
    let two = Ruleset::parse(file, text);
    crate::parse::set_split_min(usize::MAX);
    match (&one, &two) {
        (Ok((a, da)), Ok((b, db))) => {
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "split parse differs: {text}"
            );
            assert_eq!(da, db, "split parse diagnostics differ: {text}");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "split parse error differs: {text}"),
        _ => panic!(
            "split parse differs: {:?} / {:?}: {text}",
            one.is_ok(),
            two.is_ok()
        ),
    }
    one
}

#[test]
fn quoted_and_plain_tokens_at_every_offset() {
    // The tokenizer skips eight bytes at a time: put quotes, escapes, tabs and non-ASCII
    // bytes at every position of a word.
    for pad in 0..17 {
        let p = "x".repeat(pad);
        let c = format!("{p}\\\"é{p}\\\\{p}");
        let (rs, _) = filter(&format!("-A X -m comment --comment \"{c}\"\t-j   ACCEPT\r")).unwrap();
        let texts = rs.rule_texts(Table::Filter);
        assert_eq!(texts.len(), 1);
        assert!(texts[0].2.contains(&c), "{pad}: {}", texts[0].2);
        let (rs, d) = filter(&format!("-A X -m comment --comment {p}é{p} -j ACCEPT")).unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert!(rs.rule_texts(Table::Filter)[0]
            .2
            .ends_with(&format!("{p}é{p} -j ACCEPT")));
        let (_, d) = filter(&format!("-A X -m comment --comment \"{p}é{p}")).unwrap();
        assert!(
            d.iter().any(|d| d.message.contains("unterminated")),
            "{d:?}"
        );
    }
}

#[test]
fn split_reading_agrees_with_one_thread() {
    let kp = kubepath_netfilter_gen::kube_proxy::generate(
        &kubepath_netfilter_gen::kube_proxy::KubeProxyParams::new(300, 3, 7),
    );
    let text = kp.text.clone();
    both_ways("kp.save", &text).unwrap();
    // Cuts and edits in the middle of the nat block: the second half's result must only be
    // used when the first half reaches it through `-A` lines alone, and the first error in the
    // file's order must win.
    let lines: Vec<&str> = text.lines().collect();
    let nat = lines.iter().position(|l| *l == "*nat").unwrap();
    let first_a = nat
        + lines[nat..]
            .iter()
            .position(|l| l.starts_with("-A"))
            .unwrap();
    let commit = nat + lines[nat..].iter().position(|l| *l == "COMMIT").unwrap();
    let at = |f: f64| first_a + ((commit - first_a) as f64 * f) as usize;
    let edits: Vec<(f64, &str)> = vec![
        (0.25, "-A NOSUCH -j ACCEPT"),
        (0.75, "-A NOSUCH -j ACCEPT"),
        (0.5, "-A NOSUCH -j ACCEPT"),
        (0.75, ":LATE - [0:0]"),
        (0.25, ":LATE - [0:0]"),
        (0.25, "-N LATER"),
        (0.75, "-A KUBE-SERVICES -j LATE2"),
        (0.8, ":LATE2 - [0:0]"),
        (0.25, "-A KUBE-SERVICES -j LATE3"),
        (0.9, ":LATE3 - [0:0]"),
        (0.3, "-I KUBE-SERVICES 1 -j RETURN"),
        (
            0.6,
            "-A KUBE-SERVICES -m comment --comment \"open -j ACCEPT",
        ),
        (
            0.2,
            "-A KUBE-SERVICES -m comment --comment \"open -j ACCEPT",
        ),
        (0.4, "[1:2] -A KUBE-SERVICES -j RETURN"),
        (0.7, "-A KUBE-SERVICES -p tcp --dport 99999 -j RETURN"),
        (0.1, "-A KUBE-SERVICES -p tcp --dport 99999 -j RETURN"),
        (0.55, "-F KUBE-SERVICES"),
        (0.45, "COMMIT"),
        (0.5, "  # a comment"),
        (0.5, ""),
        (0.65, "-A KUBE-SERVICES -m foo --bar -j ACCEPT"),
        (0.65, "-A KUBE-SERVICES -j NOSUCHTARGET"),
        (0.15, "-A KUBE-SERVICES -j KUBE-POSTROUTING"),
    ];
    for k in 0..edits.len() {
        // Each edit alone, then with the next one.
        for n in 1..=2.min(edits.len() - k) {
            let mut ls: Vec<&str> = lines.clone();
            let mut es = edits[k..k + n].to_vec();
            es.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (f, l) in es {
                ls.insert(at(f), l);
            }
            let _ = both_ways("kp.save", &(ls.join("\n") + "\n"));
        }
    }
    // Cut short: no COMMIT, no final newline.
    let _ = both_ways("kp.save", &lines[..at(0.7)].join("\n"));
    let _ = both_ways("kp.save", &lines[..=commit].join("\n"));
}

fn filter(rules: &str) -> Result<(Ruleset, Vec<Diagnostic>), ParseError> {
    parse(&format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\n{rules}\nCOMMIT\n"
    ))
}

fn err(rules: &str) -> ParseError {
    match filter(rules) {
        Ok(_) => panic!("parsed: {rules}"),
        Err(e) => e,
    }
}

#[test]
fn sniff_and_table_hint() {
    assert_eq!(
        Ruleset::sniff("# Generated by iptables-save\n*nat\n:A - [0:0]\n"),
        Some(Format::Save)
    );
    assert_eq!(
        Ruleset::sniff("-P INPUT ACCEPT\n-A INPUT -j DROP\n"),
        Some(Format::Rules)
    );
    assert_eq!(
        Ruleset::sniff("host:~ # iptables -t nat -S\n-P PREROUTING ACCEPT\n"),
        Some(Format::Rules)
    );
    assert_eq!(Ruleset::sniff("hello world\n"), None);
    assert_eq!(Ruleset::sniff(""), None);
    assert_eq!(
        Ruleset::table_hint("snap/node1/nat.rules", ""),
        Some(Table::Nat)
    );
    assert_eq!(
        Ruleset::table_hint("iptables-t-mangle-S.txt", ""),
        Some(Table::Mangle)
    );
    assert_eq!(
        Ruleset::table_hint("x.txt", "node:~ # iptables -t raw -S\n"),
        Some(Table::Raw)
    );
    assert_eq!(Ruleset::table_hint("rules.txt", "-P INPUT ACCEPT\n"), None);
    let nat =
        "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n-N X\n";
    assert_eq!(Ruleset::table_hint("rules.txt", nat), Some(Table::Nat));
    assert_eq!(
        Ruleset::table_hint("rules.txt", "-P PREROUTING ACCEPT\n-P OUTPUT ACCEPT\n"),
        Some(Table::Raw)
    );
    assert_eq!(
        Ruleset::table_hint(
            "rules.txt",
            "-P INPUT DROP\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n"
        ),
        Some(Table::Filter)
    );
    // The file name wins over the content.
    assert_eq!(Ruleset::table_hint("mangle.txt", nat), Some(Table::Mangle));
    assert_eq!(Ruleset::table_hint("nat-and-filter.txt", ""), None);
}

#[test]
fn counters_long_options_and_order() {
    let (rs, d) = filter(
        "[12:3456] -A INPUT --source 10.0.0.0/8 --protocol tcp -m tcp --destination-port 22 --jump ACCEPT\n\
         -A INPUT -j DROP -d 10.0.0.1 -c 5 100",
    )
    .unwrap();
    assert!(d.is_empty());
    assert_eq!(rs.stats().rules, 2);
}

#[test]
fn quoted_comments_with_escaped_quotes() {
    let (rs, _) =
        filter(r#"-A INPUT -m comment --comment "say \"hi\" -j DROP" -j ACCEPT"#).unwrap();
    let p = Packet::tcp(
        "10.0.0.1".parse().unwrap(),
        1,
        "10.0.0.2".parse().unwrap(),
        2,
    )
    .with_in_iface("eth0");
    let l = ["10.0.0.2".parse().unwrap()];
    let t = trace(&rs, &p, &Env::new(&l));
    assert_eq!(
        t.outcomes[0].steps[0].text,
        r#"-A INPUT -m comment --comment "say \"hi\" -j DROP" -j ACCEPT"#
    );
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
}

#[test]
fn iptables_s_format_with_policies_and_new_chains() {
    let text = "-P INPUT DROP\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N KUBE-FIREWALL\n\
                -A INPUT -j KUBE-FIREWALL\n-A KUBE-FIREWALL -p tcp -m tcp --dport 22 -j ACCEPT\n";
    let mut rs = Ruleset::new(Family::Ipv4);
    rs.add_text("filter.S", text, Some(Table::Filter)).unwrap();
    let l = ["10.0.0.2".parse().unwrap()];
    let p = |port| {
        Packet::tcp(
            "10.0.0.1".parse().unwrap(),
            1,
            "10.0.0.2".parse().unwrap(),
            port,
        )
        .with_in_iface("eth0")
    };
    assert_eq!(
        trace(&rs, &p(22), &Env::new(&l)).outcomes[0].verdict,
        Verdict::Accept
    );
    assert_eq!(
        trace(&rs, &p(23), &Env::new(&l)).outcomes[0].verdict,
        Verdict::Drop
    );
    // Without a table for -S text, the error says what is missing.
    let mut rs = Ruleset::new(Family::Ipv4);
    let e = rs.add_text("rules.txt", text, None).unwrap_err();
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.expected.contains("-t TABLE"), "{e}");
}

#[test]
fn files_combine_one_per_table() {
    let mut rs = Ruleset::new(Family::Ipv4);
    rs.add_text(
        "nat.rules",
        "-P PREROUTING ACCEPT\n-A PREROUTING -p tcp -j DNAT --to-destination 10.9.9.9:80\n",
        Some(Table::Nat),
    )
    .unwrap();
    rs.add_text("filter.rules", "-P FORWARD DROP\n", Some(Table::Filter))
        .unwrap();
    assert!(rs.has_table(Table::Nat) && rs.has_table(Table::Filter));
    let p = Packet::tcp(
        "10.0.0.1".parse().unwrap(),
        1,
        "10.0.0.5".parse().unwrap(),
        8080,
    )
    .with_in_iface("eth0");
    let t = trace(&rs, &p, &Env::default());
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
    assert_eq!(
        t.outcomes[0].dnat.as_ref().unwrap().to_string(),
        "10.9.9.9:80"
    );
}

#[test]
fn insert_rule_positions() {
    let (rs, _) =
        filter("-A INPUT -j DROP\n-I INPUT 1 -p tcp -j ACCEPT\n-I INPUT -p udp -j REJECT").unwrap();
    let p = Packet::tcp(
        "10.0.0.1".parse().unwrap(),
        1,
        "10.0.0.2".parse().unwrap(),
        2,
    )
    .with_in_iface("eth0");
    let l = ["10.0.0.2".parse().unwrap()];
    assert_eq!(
        trace(&rs, &p, &Env::new(&l)).outcomes[0].verdict,
        Verdict::Accept
    );
    let e = err("-I INPUT 5 -j DROP");
    assert!(e.expected.contains("rule number"), "{e}");
}

#[test]
fn nft_warning_comment_and_crlf() {
    let text = "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\r\n*filter\r\n:INPUT ACCEPT [0:0]\r\n-A INPUT -j ACCEPT\r\nCOMMIT\r\n";
    let (rs, d) = parse(text).unwrap();
    assert!(d.is_empty());
    assert_eq!(rs.stats().rules, 1);
}

#[test]
fn error_positions_and_messages() {
    let e = err("-A INPUT -p tcp --dport 99999 -j ACCEPT");
    assert_eq!((e.line, e.column), (6, 25));
    assert_eq!(e.found, "`99999`");
    let e = err("-A INPUT -x");
    assert!(e.expected.contains("iptables option"), "{e}");
    let e = err("-A INPUT -m mark --mark zz -j ACCEPT");
    assert!(e.expected.contains("mark value"), "{e}");
    let e = err("-A INPUT -j ACCEPT -j DROP");
    assert!(e.expected.contains("only one -j"), "{e}");
    let e = err("-A INPUT -s 10.0.0.1 -s 10.0.0.2 -j DROP");
    assert!(e.expected.contains("at most one"), "{e}");
    let e = err("-A INPUT -i averyveryverylonginterfacename -j DROP");
    assert!(e.expected.contains("interface name"), "{e}");
    let e = err("-A INPUT -j REJECT --reject-with icmp-bogus");
    assert!(e.expected.contains("reject type"), "{e}");
    let e = err("-A INPUT -j MARK");
    assert!(e.expected.contains("MARK option"), "{e}");
    let e = err("-A INPUT -j MARK --or-mark 0x1/0x1");
    assert!(e.expected.contains("without /mask"), "{e}");
    let e = err("-A INPUT ! ! -s 10.0.0.1 -j DROP");
    assert!(e.expected.contains("option after `!`"), "{e}");
    let e =
        err("-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j DROP");
    assert!(e.expected.contains("15 ports"), "{e}");
    let e = err("-A INPUT -j DNAT --to-destination 10.0.0.1");
    assert!(e.expected.contains("only valid in nat"), "{e}");
    let e = err(":X ACCEPT [0:0]");
    assert!(e.expected.contains("user-defined"), "{e}");
    let e = parse("*filter\n:INPUT ACCEPT [0:0]\n*nat\nCOMMIT\n").unwrap_err();
    assert!(e.expected.contains("COMMIT before the next table"), "{e}");
}

#[test]
fn unknown_target_and_undeclared_jump_are_opaque_with_diagnostics() {
    let (rs, d) = filter("-A INPUT -j NOSUCHCHAIN\n-A INPUT -j FOOBAR --foo 1").unwrap();
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().all(|x| x.source.line >= 6));
    let p = Packet::tcp(
        "10.0.0.1".parse().unwrap(),
        1,
        "10.0.0.2".parse().unwrap(),
        2,
    )
    .with_in_iface("eth0");
    let l = ["10.0.0.2".parse().unwrap()];
    let t = trace(&rs, &p, &Env::new(&l));
    assert_eq!(t.outcomes[0].verdict.name(), "UNKNOWN");
}

#[test]
fn unknown_module_options_are_skipped_until_the_next_known_option() {
    let (rs, d) = filter(
        "-A INPUT -m u32 --u32 \"0>>22&0x3C@ 12>>26&0x3C@ 0=0x1\" -m comment --comment x -j DROP",
    )
    .unwrap();
    assert_eq!(d.len(), 1);
    assert!(d[0].message.contains("u32"));
    assert_eq!(rs.stats().rules, 1);
}

#[test]
fn old_negation_form_and_netmask() {
    let (rs, _) = filter("-A INPUT -s ! 10.0.0.0/255.0.0.0 -j DROP").unwrap();
    let l = ["10.0.0.2".parse().unwrap()];
    let p = |s: &str| {
        Packet::tcp(s.parse().unwrap(), 1, "10.0.0.2".parse().unwrap(), 2).with_in_iface("eth0")
    };
    assert_eq!(
        trace(&rs, &p("10.1.1.1"), &Env::new(&l)).outcomes[0].verdict,
        Verdict::Accept
    );
    assert_eq!(
        trace(&rs, &p("11.1.1.1"), &Env::new(&l)).outcomes[0].verdict,
        Verdict::Drop
    );
}

#[test]
fn ipset_save_errors() {
    let e = IpSets::parse_save("s", "add nosuch 1.2.3.4\n").unwrap_err();
    assert_eq!((e.line, e.column), (1, 5));
    let e =
        IpSets::parse_save("s", "create a hash:ip,port family inet\nadd a 1.2.3.4\n").unwrap_err();
    assert_eq!(e.line, 2);
    let (_, d) = IpSets::parse_save("s", "create m hash:mac\nadd m 00:11:22:33:44:55\n").unwrap();
    assert_eq!(d.len(), 1);
}

#[test]
fn unterminated_quote_runs_to_end_of_line_like_iptables_restore() {
    let (rs, d) = filter("-A INPUT -m comment --comment \"unterminated -j DROP").unwrap();
    assert_eq!(d.len(), 1);
    assert!(d[0].message.contains("unterminated"));
    // The rule has no target (the -j DROP is inside the comment): the packet is accepted.
    let p = Packet::tcp(
        "10.0.0.1".parse().unwrap(),
        1,
        "10.0.0.2".parse().unwrap(),
        2,
    )
    .with_in_iface("eth0");
    let l = ["10.0.0.2".parse().unwrap()];
    let t = trace(&rs, &p, &Env::new(&l));
    assert_eq!(t.outcomes[0].verdict, Verdict::Accept);
    assert_eq!(t.outcomes[0].steps.len(), 1);
}

#[test]
fn a_failed_add_text_leaves_the_ruleset_unchanged() {
    let mut rs = Ruleset::new(Family::Ipv4);
    rs.add_text(
        "a",
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -j ACCEPT\nCOMMIT\n",
        None,
    )
    .unwrap();
    let before = format!("{:?}", rs.stats());
    let e = rs.add_text(
        "b",
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\n-A INPUT -s bad -j DROP\nCOMMIT\n",
        None,
    );
    assert!(e.is_err());
    assert_eq!(format!("{:?}", rs.stats()), before);
    let p = Packet::udp(
        "10.0.0.1".parse().unwrap(),
        1,
        "10.0.0.2".parse().unwrap(),
        2,
    )
    .with_in_iface("eth0");
    let l = ["10.0.0.2".parse().unwrap()];
    // Still the first file's policy DROP, not the failed file's ACCEPT/DROP rule.
    let t = trace(&rs, &p, &Env::new(&l));
    assert_eq!(t.outcomes[0].verdict, Verdict::Drop);
    assert!(t.outcomes[0].steps.is_empty());
    let mut fresh = Ruleset::new(Family::Ipv4);
    assert!(fresh.add_text("c", "*nat\n-A X -j Y\n", None).is_err());
    assert!(!fresh.has_table(Table::Nat));
}

fn policy(rs: &Ruleset, t: Table, chain: &str) -> Option<Verdict> {
    let td = rs.tables[t.idx()].as_ref()?;
    td.chains[td.chain_id(chain)? as usize].policy.clone()
}

/// iptables-restore 1.8.9 (legacy and nft) accepts `-` as the policy of a built-in chain and
/// leaves the policy as it is (ACCEPT in a fresh table): kube-proxy's unit tests write so.
#[test]
fn builtin_policy_dash_keeps_the_policy() {
    let (rs, _) = parse(
        "*filter\n:INPUT - [0:0]\n:FORWARD DROP [0:0]\n:FORWARD -\n:OUTPUT - [0:0]\n:KUBE-SERVICES - [0:0]\n-A INPUT -j KUBE-SERVICES\nCOMMIT\n",
    )
    .unwrap();
    assert_eq!(policy(&rs, Table::Filter, "INPUT"), Some(Verdict::Accept));
    assert_eq!(policy(&rs, Table::Filter, "FORWARD"), Some(Verdict::Drop));
    assert_eq!(policy(&rs, Table::Filter, "OUTPUT"), Some(Verdict::Accept));
}

/// Forms iptables-restore --test accepts or refuses (observed with 1.8.9 in a network
/// namespace; the privileged differential test is tests/restore_acceptance.rs).
#[test]
fn restore_line_forms() {
    // Counters after the policy are ignored without `-c`; `: NAME` is a declaration.
    assert!(filter(":Y - [x:y] extra").is_ok());
    assert!(parse("*filter\n: Y - [0:0]\nCOMMIT\n").is_ok());
    // Rule counters: the command starts after the first `]`.
    assert!(filter("[1:2]-A X -j ACCEPT").is_ok());
    assert!(filter("[a:] -A X -j ACCEPT").is_ok());
    assert!(filter("[é:1] -A X -j ACCEPT").is_ok());
    assert_eq!(err("[12] -A X -j ACCEPT").column, 1);
    assert_eq!(err("[1:2 -A X -j ACCEPT").column, 1);
    // A chain declared twice in one block, or `-N` of a declared chain.
    assert!(err(":X - [0:0]").expected.contains("declared on line 5"));
    assert!(err("-N X").expected.contains("declared on line 5"));
    // A second block for the table starts afresh: declaring X again there is fine.
    assert!(parse("*filter\n:X - [0:0]\nCOMMIT\n*filter\n:X - [0:0]\nCOMMIT\n").is_ok());
    // A jump to a chain declared further down.
    let e = err("-A INPUT -j Y\n:Y - [0:0]");
    assert_eq!((e.line, e.column), (6, 13));
    // -g needs a chain; DROP is refused in nat.
    assert!(err("-A INPUT -g DROP").expected.contains("-g"));
    assert!(parse("*nat\n:X - [0:0]\n-A X -j DROP\nCOMMIT\n").is_err());
    assert!(parse("*nat\n-P OUTPUT DROP\nCOMMIT\n").is_err());
    assert!(parse("*nat\n:OUTPUT DROP [0:0]\nCOMMIT\n").is_ok());
}

/// A NAT target with a port needs `-p` tcp, udp, sctp, dccp or icmp, or a negated `-p`.
#[test]
fn nat_port_needs_a_port_protocol() {
    let nat = |r: &str| parse(&format!("*nat\n{r}\nCOMMIT\n"));
    for bad in [
        "-A PREROUTING -j DNAT --to-destination 10.1.1.1:80",
        "-A PREROUTING -p all -j DNAT --to-destination 10.1.1.1:80",
        "-A PREROUTING -p udplite -j DNAT --to-destination 10.1.1.1:80",
        "-A POSTROUTING -j SNAT --to-source 10.1.1.1:80",
        "-A POSTROUTING -j MASQUERADE --to-ports 1024",
        "-A PREROUTING -j REDIRECT --to-ports 53",
    ] {
        assert!(nat(bad).is_err(), "{bad}");
    }
    for good in [
        "-A PREROUTING -p tcp -j DNAT --to-destination 10.1.1.1:80",
        "-A PREROUTING -p icmp -j DNAT --to-destination 10.1.1.1:80",
        "-A PREROUTING ! -p tcp -j DNAT --to-destination 10.1.1.1:80",
        "-A PREROUTING -j DNAT --to-destination 10.1.1.1",
        "-A POSTROUTING -j MASQUERADE --random-fully",
    ] {
        assert!(nat(good).is_ok(), "{good}");
    }
}

/// iptables-restore flushes a table at each `*table` block (1.8.9, legacy and nft, observed
/// in a network namespace): a second block, or a second text, replaces the first.
#[test]
fn a_later_block_for_a_table_replaces_the_earlier_one() {
    let (rs, diags) = parse(
        "*nat\n:A - [0:0]\n-A PREROUTING -p tcp -j A\nCOMMIT\n*filter\n:INPUT DROP [0:0]\nCOMMIT\n*nat\n:B - [0:0]\n-A PREROUTING -j B\nCOMMIT\n",
    )
    .unwrap();
    let names: Vec<String> = rs
        .chain_names(Table::Nat)
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(
        names.contains(&"B".to_string()) && !names.contains(&"A".to_string()),
        "{names:?}"
    );
    assert_eq!(rs.stats().rules, 1);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].source.line, 8);
    assert!(
        diags[0].message.contains("t.save:1"),
        "{}",
        diags[0].message
    );
    // A rule into a chain only the earlier block declared is an error, as in iptables-restore.
    assert!(parse("*filter\n:FOO - [0:0]\nCOMMIT\n*filter\n-A FOO -j ACCEPT\nCOMMIT\n").is_err());

    // Across texts: the second file's `*nat` replaces the first's; built-in policies stay.
    let mut rs = Ruleset::new(Family::Ipv4);
    rs.add_text(
        "a.save",
        "*nat\n:A - [0:0]\n-A OUTPUT -j A\nCOMMIT\n*filter\n:FORWARD DROP [0:0]\nCOMMIT\n",
        None,
    )
    .unwrap();
    let d = rs
        .add_text(
            "b.save",
            "*nat\n:B - [0:0]\nCOMMIT\n*filter\n:FORWARD - [0:0]\nCOMMIT\n",
            None,
        )
        .unwrap();
    assert_eq!(rs.stats().rules, 0);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].message.contains("a.save:1"), "{}", d[0].message);
    assert_eq!(policy(&rs, Table::Filter, "FORWARD"), Some(Verdict::Drop));
    // `iptables -S` text (maybe a filtered part of a listing) still adds to its table.
    rs.add_text("nat-S", "-N C\n-A C -j RETURN\n", Some(Table::Nat))
        .unwrap();
    assert_eq!(rs.stats().rules, 1);
}

/// `-F`, `-X` and `-Z` in restore input, as iptables-restore 1.8.9 (legacy) accepts them.
#[test]
fn flush_delete_and_zero_chains() {
    // -X of the first user chain renumbers the others: jumps still reach the right chains.
    let (rs, _) = parse(
        "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n-A INPUT -j C\n-A B -j DROP\n-A C -j B\n-X A\n-A INPUT -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let names: Vec<String> = rs
        .chain_names(Table::Filter)
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(!names.contains(&"A".to_string()), "{names:?}");
    let env_local: [std::net::IpAddr; 1] = ["10.0.0.1".parse().unwrap()];
    let pkt = Packet::tcp(
        "10.0.0.2".parse().unwrap(),
        1,
        "10.0.0.1".parse().unwrap(),
        80,
    )
    .with_in_iface("eth0");
    let t = trace(&rs, &pkt, &Env::new(&env_local));
    assert!(
        matches!(t.outcomes[0].verdict, Verdict::Drop),
        "{:?}",
        t.outcomes[0].verdict
    );
    // -F then -X; -X of every (empty) user chain; -Z.
    assert!(filter("-A X -j ACCEPT\n-F X\n-X X\n-Z").is_ok());
    assert!(filter("-X").is_ok());
    // Refused: a chain with rules, a referenced chain, a built-in chain, an unknown chain.
    assert!(err("-A X -j ACCEPT\n-X X").expected.contains("empty chain"));
    assert!(err("-A INPUT -j X\n-X X")
        .expected
        .contains("no rule jumps"));
    assert!(err("-X INPUT").expected.contains("user-defined"));
    assert!(err("-F NOPE").expected.contains("a chain of table filter"));
}

/// Found by the whole-snapshot fuzz loop (docs/fuzzing.md, seed 1, executions 16753, 210954,
/// 290680): a chain declaration preceded by U+00A0 panicked (a slice inside the two-byte
/// character). It is an error naming the line, like any other malformed declaration.
#[test]
fn a_declaration_after_unicode_whitespace_is_an_error_not_a_panic() {
    for text in [
        "*filter\n\u{a0}:FORWARD ACCEPT [0:0]\nCOMMIT\n",
        "*nat\n:PREROUTING ACCEPT [0:0]\n\u{a0}:KUBE-SERVICES - [0:0]\nCOMMIT\n",
        "*filter\n\u{2003}\u{a0}:X - [0:0]\nCOMMIT\n",
    ] {
        let e = parse(text).expect_err("not a declaration iptables-restore reads");
        assert!(e.line >= 2, "{e:?}");
        assert!(e.expected.contains("chain declaration"), "{e:?}");
    }
}

/// `rule_texts` gives each rule as written, with its chain and line.
#[test]
fn rule_texts_give_chain_line_and_text() {
    let text = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.0.0.1/32 -p tcp -m comment --comment \"a/b:http cluster IP\" -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";
    let (rs, _) = Ruleset::parse("n.txt", text).unwrap();
    let r = rs.rule_texts(Table::Nat);
    assert_eq!(r.len(), 2);
    assert_eq!(&*r[0].0, "PREROUTING");
    assert_eq!(r[0].1.line, 4);
    assert_eq!(r[0].2, "-A PREROUTING -j KUBE-SERVICES");
    assert_eq!(&*r[1].0, "KUBE-SERVICES");
    assert!(r[1].2.contains("--comment \"a/b:http cluster IP\""));
    assert!(rs.rule_texts(Table::Filter).is_empty());
}

/// Issue #11 (review): iptables-restore refuses a comment of 256 bytes or more
/// (libxt_comment, XT_MAX_COMMENT_LEN); a multi-megabyte comment was accepted and echoed
/// whole in every trace step. 255 bytes are accepted.
#[test]
fn a_comment_of_256_bytes_or_more_is_refused() {
    let rules = |n: usize| {
        format!(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"{}\" -j DROP\nCOMMIT\n",
            "c".repeat(n)
        )
    };
    assert!(parse(&rules(255)).is_ok());
    let e = parse(&rules(256)).expect_err("256 bytes");
    assert_eq!((e.line, e.found.as_str()), (3, "a comment of 256 bytes"));
    let e = parse(&rules(3_000_000)).expect_err("3 MB");
    assert!(e.found.len() < 40, "{}", e.found);
}
