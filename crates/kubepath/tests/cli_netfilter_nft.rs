//! `kubepath netfilter trace` with nft rulesets: told by content (text or `nft -j` JSON), same
//! JSON schema, exit 2 with file:line:column for malformed nft text or JSON.

use std::process::Command;

mod support;
use support::{root, scratch};

fn kubepath(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run kubepath")
}

fn clusterip(file: &str) -> Vec<String> {
    [
        "netfilter",
        "trace",
        "--ruleset",
        file,
        "--src",
        "10.244.3.3",
        "--dst",
        "10.96.20.1",
        "--dport",
        "443",
        "--proto",
        "tcp",
        "--in-iface",
        "eth0",
        "--local",
        "192.168.50.4",
        "--out-iface",
        "eth0",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn nft_listing_and_transaction_give_the_same_json_outcomes() {
    let mut seen = Vec::new();
    for f in [
        "crates/netfilter/tests/nft/kube-proxy.listed.nft",
        "crates/netfilter/tests/nft/kube-proxy.nft",
    ] {
        let args = clusterip(f);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = kubepath(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v["schema"], "kubepath.netfilter-trace/v1");
        let outs = v["outcomes"].as_array().unwrap();
        assert_eq!(outs.len(), 2);
        let mut d: Vec<String> = outs
            .iter()
            .map(|o| {
                assert_eq!(o["verdict"], "ACCEPT");
                assert_eq!(o["probability"], 0.5);
                o["dnat"].to_string()
            })
            .collect();
        d.sort();
        let chains: Vec<String> = outs[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["chain"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            chains.contains(&"ip kube-proxy services".to_string()),
            "{chains:?}"
        );
        seen.push(d);
    }
    assert_eq!(seen[0], seen[1]);
}

#[test]
fn malformed_nft_exits_2_with_file_line_column() {
    let dir = scratch("nft-bad");
    let f = dir.join("bad.nft");
    std::fs::write(
        &f,
        "table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr 10.0.0.300 accept\n\t}\n}\n",
    )
    .unwrap();
    let fs = f.display().to_string();
    let out = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        &fs,
        "--src",
        "10.0.0.1",
        "--dst",
        "10.0.0.2",
        "--proto",
        "tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.nft:4:12"), "{err}");
    assert!(err.contains("expected a value of type ipv4_addr"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nft_and_iptables_files_do_not_mix() {
    let out = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        "crates/netfilter/tests/nft/kube-proxy.nft",
        "--ruleset",
        "fixtures/iptables/ok/seed-node.iptables-save",
        "--src",
        "10.0.0.1",
        "--dst",
        "10.0.0.2",
        "--proto",
        "tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mix nft rulesets and iptables text"));
}

/// Issue #14: `--ruleset` takes `nft -j list ruleset` JSON, told by content: the capture traces
/// as the text listing of the same moment, its steps citing the JSON file (line 1: nft prints
/// it on one line).
#[test]
fn nft_json_listing_traces_as_its_text_listing() {
    let run = |f: &str| -> serde_json::Value {
        let args = clusterip(f);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = kubepath(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let text = run("crates/netfilter/tests/nft/json/kube-proxy.txt");
    let json = run("crates/netfilter/tests/nft/json/kube-proxy.json");
    let strip = |v: &serde_json::Value| -> serde_json::Value {
        let mut v = v.clone();
        for o in v["outcomes"].as_array_mut().unwrap() {
            for s in o["steps"].as_array_mut().unwrap() {
                let s = s.as_object_mut().unwrap();
                s.remove("file");
                s.remove("line");
            }
        }
        v
    };
    assert_eq!(strip(&json)["outcomes"], strip(&text)["outcomes"]);
    let outs = json["outcomes"].as_array().unwrap();
    assert_eq!(outs.len(), 2, "{json:#}");
    for o in outs {
        for s in o["steps"].as_array().unwrap() {
            assert!(
                s["file"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("kube-proxy.json"),
                "{s}"
            );
            assert_eq!(s["line"], 1, "{s}");
        }
    }
    assert!(outs[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["text"] == "numgen random mod 2 vmap { 0 : goto endpoint-BBBB2222-web/api/tcp/https__10.244.1.5/8443, 1 : goto endpoint-CCCC3333-web/api/tcp/https__10.244.2.7/8443 }"));
}

#[test]
fn malformed_nft_json_exits_2_with_file_line_column() {
    let dir = scratch("nft-bad-json");
    let f = dir.join("ruleset.json");
    std::fs::write(
        &f,
        "{\"nftables\": [\n  {\"table\": {\"family\": \"ip\", \"name\": \"t\"}},\n  {\"chain\": {\"family\": \"ip\", \"table\": \"t\", \"name\": \"c\", \"type\": \"filter\", \"hook\": \"inptu\", \"prio\": 0}}\n]}\n",
    )
    .unwrap();
    let fs = f.display().to_string();
    let out = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        &fs,
        "--src",
        "10.0.0.1",
        "--dst",
        "10.0.0.2",
        "--proto",
        "tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ruleset.json:3:83"), "{err}");
    assert!(err.contains("expected a hook"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pasted prompt before the JSON (`node1:~ # nft -j list ruleset`) is skipped, as for every
/// `--ruleset` file; the steps cite the JSON's own line, 2.
#[test]
fn nft_json_after_a_prompt_is_read() {
    let dir = scratch("nft-json-prompt");
    let f = dir.join("node1-nft.txt");
    let json =
        std::fs::read_to_string(root().join("crates/netfilter/tests/nft/json/kube-proxy.json"))
            .unwrap();
    std::fs::write(&f, format!("node1:~ # nft -j list ruleset\n{json}")).unwrap();
    let fs = f.display().to_string();
    let args = clusterip(&fs);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = kubepath(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let outs = v["outcomes"].as_array().unwrap();
    assert_eq!(outs.len(), 2, "{v:#}");
    for s in outs[0]["steps"].as_array().unwrap() {
        assert_eq!(s["line"], 2, "{s}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
