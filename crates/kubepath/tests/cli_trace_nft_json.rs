//! Issue #14: a snapshot whose nodes hold `nft -j list ruleset` (JSON) instead of `nft list
//! ruleset` text traces the same.
//!
//! * `a_snapshot_with_nft_json_traces_as_with_text`: the seed (examples/dc173) in nftables
//!   mode, each node's file the checked-in capture `fixtures/nft/seed-nft-ruleset.json`
//!   (README there: `nft -j list ruleset` of kube-proxy's rules for the seed), against the
//!   same seed with the text listing of the same moment and against the seed in iptables
//!   mode: the same verdicts, distributions, branches and node steps; the steps cite the JSON
//!   file (line 1: nft prints it on one line).
//! * `generated_rulesets_listed_as_json_trace_as_iptables_mode` (privileged:
//!   `KUBEPATH_PRIV_TESTS=1` as root, else it prints `skipped: ...` and passes): each node's
//!   ruleset as the generator writes it now is loaded with `nft -f` in a network namespace of
//!   its own (`unshare -n`: it ends with the process) and listed with `nft -j`; the snapshot
//!   of those listings traces as the seed in iptables mode.

use std::path::{Path, PathBuf};
use std::process::Command;

use kubepath_netfilter_gen::kube_proxy_nft::{render, NftProxyConfig};

mod support;
use support::kube_proxy::{close_maps, seed_trace as trace, services_for};
use support::{copy_dir, root, scratch};

/// A copy of the seed without its iptables-save files, each node holding `name` with
/// `content(node)`.
fn seed_with(tag: &str, name: &str, content: &dyn Fn(&str) -> String) -> PathBuf {
    let seed = root().join("examples/dc173");
    let snap = kubepath_ingest::load_snapshot(&seed).expect("the seed loads");
    let dir = scratch(tag);
    copy_dir(&seed, &dir);
    for node in snap.model.nodes.keys() {
        let nd = dir.join("nodes").join(node);
        std::fs::remove_file(nd.join("iptables-save.txt")).expect("the seed's iptables-save");
        std::fs::write(nd.join(name), content(node)).unwrap();
    }
    assert_eq!(snap.model.nodes.len(), 11);
    dir
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join("fixtures/nft").join(name)).expect("fixtures/nft")
}

/// Branches as (verdict, reason), the nft file's name made one.
fn reasons(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = v["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["verdict"].as_str().unwrap().to_string(),
                b["reason"]
                    .as_str()
                    .unwrap()
                    .replace("nft-ruleset.json", "nft-ruleset.txt"),
            )
        })
        .collect();
    r.sort();
    r
}

/// The node stage's outcomes: probability, verdict, DNAT, masquerade and the rules' texts.
fn node_outcomes(v: &serde_json::Value) -> Vec<String> {
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["outcomes"].as_array().unwrap().iter())
        .map(|o| {
            let steps: Vec<&str> = o["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["text"].as_str().unwrap_or_default())
                .collect();
            format!(
                "{} {} {} {} {steps:?}",
                o["probability"], o["verdict"], o["dnat"], o["masquerade"]
            )
        })
        .collect()
}

fn same_answer(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    close_maps(&a["verdicts"], &b["verdicts"], &format!("{what}: verdicts"));
    for part in ["nodes", "ingress_pods", "backends"] {
        close_maps(
            &a["distribution"][part],
            &b["distribution"][part],
            &format!("{what}: {part}"),
        );
    }
    assert_eq!(reasons(a), reasons(b), "{what}");
}

/// Every node step of `v` cites `file` (and, for JSON, line 1).
fn steps_cite(v: &serde_json::Value, file: &str) -> usize {
    let mut n = 0;
    for g in v["nodes"].as_array().unwrap() {
        for o in g["outcomes"].as_array().unwrap() {
            for s in o["steps"].as_array().unwrap() {
                let src = s["source"].as_str().unwrap_or_default();
                assert!(src.contains(file), "a step cites {file}: {s}");
                if file.ends_with(".json") {
                    assert!(src.ends_with(&format!("{file}:1")), "{s}");
                }
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_snapshot_with_nft_json_traces_as_with_text() {
    let json = seed_with("nftj-json", "nft-ruleset.json", &|_| {
        fixture("seed-nft-ruleset.json")
    });
    let text = seed_with("nftj-text", "nft-ruleset.txt", &|_| {
        fixture("seed-nft-ruleset.txt")
    });
    // Read by content: the loader takes the JSON as each node's nft ruleset, no error.
    let snap = kubepath_ingest::load_snapshot(&json).expect("loads");
    for (node, n) in &snap.model.nodes {
        let rs = n
            .nft
            .as_ref()
            .unwrap_or_else(|| panic!("{node}: no nft ruleset"));
        assert!(rs.rule_count() > 40, "{node}");
    }
    let files: Vec<_> = snap
        .files
        .iter()
        .filter(|f| f.path.ends_with("nft-ruleset.json"))
        .collect();
    assert_eq!(files.len(), 11);
    assert!(files
        .iter()
        .all(|f| f.format.as_deref() == Some("nft-ruleset")));
    assert!(
        !snap
            .diagnostics
            .iter()
            .any(|d| d.file.ends_with("nft-ruleset.json")),
        "{:#?}",
        snap.diagnostics
    );

    let (code_json, tj) = trace(&json, &[]);
    let (code_text, tt) = trace(&text, &[]);
    let (code_ipt, ti) = trace(&root().join("examples/dc173"), &[]);
    assert_eq!(code_json, code_text);
    assert_eq!(code_json, code_ipt);
    same_answer(&tj, &tt, "JSON vs text");
    same_answer(&tj, &ti, "JSON vs iptables mode");
    assert_eq!(node_outcomes(&tj), node_outcomes(&tt));
    assert!(steps_cite(&tj, "nft-ruleset.json") > 10);
    steps_cite(&tt, "nft-ruleset.txt");
    // kube-proxy's numgen splits the four ingress pods 1/4 each, from the JSON as from text.
    let outs = tj["nodes"][0]["outcomes"].as_array().unwrap();
    assert_eq!(outs.len(), 4, "{outs:#?}");
    for o in outs {
        assert!((o["probability"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    }
    let _ = std::fs::remove_dir_all(&json);
    let _ = std::fs::remove_dir_all(&text);
}

/// `nft -f FILE && nft -j list ruleset` in a network namespace that ends with the process.
fn kernel_json(file: &Path) -> String {
    let out = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "nft -f \"$1\" && nft -j list ruleset",
            "sh",
        ])
        .arg(file)
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn generated_rulesets_listed_as_json_trace_as_iptables_mode() {
    if !kubepath_netfilter_gen::privileged::gate(
        "generated_rulesets_listed_as_json_trace_as_iptables_mode",
        &["nft"],
    ) {
        return;
    }
    let seed = root().join("examples/dc173");
    let snap = kubepath_ingest::load_snapshot(&seed).expect("the seed loads");
    let cfg = NftProxyConfig {
        cluster_cidr: Some("192.168.0.0/16".into()),
        ..NftProxyConfig::default()
    };
    let gen = scratch("nftj-gen");
    let dir = seed_with("nftj-kernel", "nft-ruleset.json", &|node| {
        let f = gen.join(format!("{node}.nft"));
        std::fs::write(&f, render(&cfg, &services_for(&snap.model, node))).unwrap();
        kernel_json(&f)
    });
    let (code_json, tj) = trace(&dir, &[]);
    let (code_ipt, ti) = trace(&seed, &[]);
    assert_eq!(code_json, code_ipt);
    same_answer(&tj, &ti, "kernel's JSON vs iptables mode");
    let n = steps_cite(&tj, "nft-ruleset.json");
    println!("the seed's 11 nodes listed by nft -j: the same answer as iptables mode, {n} node steps cite the JSON");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&gen);
}
