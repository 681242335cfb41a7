//! Issue #14 review 12, defect 1: the seed's nodes as a modern node shows them to `kubepath
//! collect`, with `nft list ruleset` beside `iptables-save`. Each node's own `ipset save` and
//! `iptables-save` are loaded with `ipset restore` and `iptables-nft-restore` into a throwaway
//! network namespace, and what `nft list ruleset` (nft 1.0.x) then prints, `xt match set`
//! compat lines and `fib saddr . oif type` translations included, is written beside them, with
//! `nft -j list ruleset` of the same moment. The answer must be the seed's.
//!
//! Privileged: as root with `KUBEPATH_PRIV_TESTS=1` (otherwise it prints `skipped: ...`).

use std::process::{Command, Stdio};

mod support;
use kubepath_netfilter_gen::privileged;
use support::kube_proxy::{close_maps, seed_trace};
use support::{copy_dir, root, scratch};

/// A network namespace deleted when dropped (also on panic).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn in_ns(ns: &str, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        i.write_all(text).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn the_seed_with_its_iptables_nft_listing_traces_as_the_seed() {
    if !privileged::gate(
        "the_seed_with_its_iptables_nft_listing_traces_as_the_seed",
        &["iptables-nft-restore"],
    ) {
        return;
    }
    let seed = root().join("examples/dc173");
    let dir = scratch("ipt-nft-listing");
    copy_dir(&seed, &dir);
    let mut nodes = 0;
    let mut xt = 0;
    for e in std::fs::read_dir(dir.join("nodes")).unwrap() {
        let nd = e.unwrap().path();
        let ns = Netns(format!("kp-iptnft-{}-{nodes}", std::process::id()));
        let ok = Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ip netns add {}", ns.0);
        let sets = std::fs::read(nd.join("ipset-save.txt")).unwrap();
        in_ns(&ns.0, &["ipset", "restore"], Some(&sets));
        let rules = std::fs::read(nd.join("iptables-save.txt")).unwrap();
        in_ns(&ns.0, &["iptables-nft-restore"], Some(&rules));
        let listing = in_ns(&ns.0, &["nft", "list", "ruleset"], None);
        let text = String::from_utf8(listing).unwrap();
        xt += text.matches("xt match").count();
        std::fs::write(nd.join("nft-ruleset.txt"), text).unwrap();
        // And `nft -j list ruleset` of the same moment (review 13: it names iptables-nft's
        // compat expressions where the text translates them; the two are one fact).
        let json = in_ns(&ns.0, &["nft", "-j", "list", "ruleset"], None);
        std::fs::write(nd.join("nft-ruleset.json"), json).unwrap();
        nodes += 1;
    }
    assert_eq!(nodes, 11);
    assert!(
        xt > 0,
        "the listings hold no `xt match` line: the test tests nothing new"
    );
    let (code_want, want) = seed_trace(&seed, &[]);
    let (code_got, got) = seed_trace(&dir, &[]);
    assert_eq!(code_got, code_want, "{got:#}");
    close_maps(&got["verdicts"], &want["verdicts"], "verdicts");
    for part in ["nodes", "ingress_pods", "backends"] {
        close_maps(
            &got["distribution"][part],
            &want["distribution"][part],
            part,
        );
    }
}
