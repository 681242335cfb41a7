//! Jump and goto loops. The kernel refuses a table in which a chain reachable from a built-in
//! chain jumps or goes back into its own path (both backends, on commit: legacy's
//! `mark_source_chains`, nf_tables' `Too many links`; `iptables-restore --test` commits nothing
//! and accepts it). So does kubepath's reader now, naming the rule that closes the loop (issue
//! #11: before, such a file was traced to UNKNOWN, as if a node could hold it). A loop no
//! built-in chain reaches is loaded by both backends and read. Before either check existed, a
//! goto replaced the current frame instead of stacking one, so `-A A -g A` looped forever: the
//! evaluator's own loop guard stays, and these tests keep a deadline.

use std::net::IpAddr;
use std::sync::mpsc;
use std::time::Duration;

use kubepath_netfilter::{trace, Env, Packet, Ruleset, Verdict};

/// Trace a TCP packet to 10.0.0.1:80 arriving on eth0 through `rules`, in a thread, with a
/// deadline (a regression must fail, not hang the test run).
fn verdicts(rules: &'static str) -> Vec<Verdict> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (rs, _) = Ruleset::parse("loop.rules", rules).expect("parse");
        let local: [IpAddr; 1] = ["10.0.0.1".parse().expect("ip")];
        let env = Env::new(&local);
        let pkt = Packet::tcp(
            "10.9.9.9".parse().expect("ip"),
            40000,
            "10.0.0.1".parse().expect("ip"),
            80,
        )
        .with_in_iface("eth0");
        let t = trace(&rs, &pkt, &env);
        let _ = tx.send(
            t.outcomes
                .into_iter()
                .map(|o| o.verdict)
                .collect::<Vec<_>>(),
        );
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the trace did not end within 20 s (a goto loop?)")
}

/// `rules` is refused, naming line `line` (the rule whose jump closes the loop).
fn assert_loop(rules: &'static str, line: u32) {
    match Ruleset::parse("loop.rules", rules) {
        Err(e) => {
            assert_eq!(e.line, line, "{e:?}");
            assert!(e.expected.contains("no jump loop"), "{e:?}");
        }
        Ok(_) => panic!("a reachable loop was read"),
    }
}

#[test]
fn goto_to_itself() {
    assert_loop(
        "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -g A\nCOMMIT\n",
        5,
    );
}

#[test]
fn goto_between_two_chains() {
    assert_loop(
        "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -g A\n-A A -g B\n-A B -g A\nCOMMIT\n",
        7,
    );
}

#[test]
fn jump_loop_still_caught() {
    assert_loop(
        "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -j A\nCOMMIT\n",
        5,
    );
}

/// A loop no built-in chain reaches is loaded by the kernel (both backends): read, and a
/// packet never meets it. A chain reached twice without a loop (a diamond) is no loop.
#[test]
fn an_unreachable_loop_and_a_diamond_are_read() {
    let v = verdicts(
        "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n:D - [0:0]\n-A INPUT -j C\n-A INPUT -j D\n-A C -j D\n-A A -j B\n-A B -j A\n-A D -p tcp -j DROP\nCOMMIT\n",
    );
    assert!(matches!(v[..], [Verdict::Drop]), "{v:?}");
}

/// The loop is found in whichever table holds it, and deep nesting is walked without
/// recursion (a hostile file must not overflow the stack).
#[test]
fn a_loop_behind_ten_thousand_chains_is_found() {
    let mut t = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n");
    for i in 0..10_000 {
        t.push_str(&format!(":C{i} - [0:0]\n"));
    }
    t.push_str("-A PREROUTING -j C0\n");
    for i in 0..9_999 {
        t.push_str(&format!("-A C{i} -j C{}\n", i + 1));
    }
    t.push_str("-A C9999 -j C5000\nCOMMIT\n");
    let e = Ruleset::parse("deep.rules", &t).expect_err("refused");
    assert_eq!(e.line, 2 + 10_000 + 1 + 9_999 + 1, "{e:?}");
    assert!(e.found.contains("C9999 back to C5000"), "{}", e.found);
}

#[test]
fn a_long_goto_chain_without_a_loop_is_followed() {
    // 100 chains, each going to the next: fine (well under the bound).
    let mut t = String::from("*filter\n:INPUT ACCEPT [0:0]\n");
    for i in 0..100 {
        t.push_str(&format!(":C{i} - [0:0]\n"));
    }
    t.push_str("-A INPUT -g C0\n");
    for i in 0..99 {
        t.push_str(&format!("-A C{i} -g C{}\n", i + 1));
    }
    t.push_str("-A C99 -j DROP\nCOMMIT\n");
    let v = verdicts(Box::leak(t.into_boxed_str()));
    assert!(matches!(v[..], [Verdict::Drop]), "{v:?}");
}
