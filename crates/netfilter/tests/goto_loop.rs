//! A `-g` (goto) loop ends in UNKNOWN like a `-j` loop. The kernel refuses such rulesets
//! (x_tables' loop check on load), but kubepath reads whatever text it is given: a goto
//! replaces the current frame instead of stacking one, so the nesting guard alone never
//! stopped `-A A -g A`, and the trace looped forever.

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

fn assert_loop(rules: &'static str) {
    let v = verdicts(rules);
    assert_eq!(v.len(), 1, "{v:?}");
    match &v[0] {
        Verdict::Unknown { reason, .. } => assert!(reason.contains("loop"), "{reason}"),
        other => panic!("expected UNKNOWN for a loop, got {other:?}"),
    }
}

#[test]
fn goto_to_itself() {
    assert_loop("*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -g A\nCOMMIT\n");
}

#[test]
fn goto_between_two_chains() {
    assert_loop(
        "*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -g A\n-A A -g B\n-A B -g A\nCOMMIT\n",
    );
}

#[test]
fn jump_loop_still_caught() {
    assert_loop("*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\n-A A -j A\nCOMMIT\n");
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
