//! Issue #14, trace integration: the seed's topology with kube-proxy in nftables mode.
//!
//! The nftables-mode rules are not hand-written: for each node of the seed (examples/dc173)
//! the cluster's Services and EndpointSlices, as kubepath reads them, are handed to
//! `kubepath_netfilter_gen::kube_proxy_nft::render` (kube-proxy's nftables proxier layout)
//! with the seed's kube-proxy settings (cluster CIDR 192.168.0.0/16, masquerade bit 14, every
//! node address a NodePort address), and written to `nodes/<node>/nft-ruleset.txt` in a copy
//! of the seed whose `iptables-save.txt` files are removed. `kubepath trace` of that copy must
//! give the same verdicts, distributions and verified fix as the seed with iptables mode,
//! with the node stage's steps citing the nft file and `numgen random mod 4` splitting 1/4
//! per ingress pod. A node holding both the seed's iptables-nft rules and an nft ruleset
//! that does not list those tables is unknown, not half-evaluated.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use kubepath_netfilter_gen::kube_proxy_nft::{render, NftProxyConfig};

mod support;
use support::kube_proxy::{close_maps, seed_trace as trace, services_for};
use support::{copy_dir, root, scratch};

const FIX: &str = "ip route add 10.210.150.87/32 via 10.33.151.65";

/// A copy of the seed whose nodes hold kube-proxy's nftables-mode rules; with `keep_iptables`
/// the seed's iptables-save files stay beside them.
fn nft_seed(tag: &str, keep_iptables: bool) -> std::path::PathBuf {
    nft_seed_with(tag, keep_iptables, |_| {})
}

/// [`nft_seed`], with `edit` applied to each node's Service ports before they are rendered.
fn nft_seed_with(
    tag: &str,
    keep_iptables: bool,
    edit: impl Fn(&mut Vec<kubepath_netfilter_gen::kube_proxy_nft::NftServicePort>),
) -> std::path::PathBuf {
    let seed = root().join("examples/dc173");
    let snap = kubepath_ingest::load_snapshot(&seed).expect("the seed loads");
    let dir = scratch(tag);
    copy_dir(&seed, &dir);
    let cfg = NftProxyConfig {
        cluster_cidr: Some("192.168.0.0/16".into()),
        ..NftProxyConfig::default()
    };
    let mut n = 0;
    for node in snap.model.nodes.keys() {
        let nd = dir.join("nodes").join(node);
        if !keep_iptables {
            std::fs::remove_file(nd.join("iptables-save.txt")).expect("the seed's iptables-save");
        }
        let mut services = services_for(&snap.model, node);
        edit(&mut services);
        let text = render(&cfg, &services);
        std::fs::write(nd.join("nft-ruleset.txt"), text).unwrap();
        n += 1;
    }
    assert_eq!(n, 11, "the seed has 11 nodes");
    dir
}

#[test]
fn the_seed_in_nftables_mode_traces_as_in_iptables_mode() {
    let dir = nft_seed("nft-seed", false);
    let (code_ipt, ipt) = trace(&root().join("examples/dc173"), &[]);
    let (code_nft, nft) = trace(&dir, &[]);
    assert_eq!(code_nft, code_ipt);
    close_maps(&nft["verdicts"], &ipt["verdicts"], "verdicts");
    for part in ["nodes", "ingress_pods", "backends"] {
        close_maps(&nft["distribution"][part], &ipt["distribution"][part], part);
    }
    assert!(
        (nft["verdicts"]["asymmetric-return"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{}",
        nft["verdicts"]
    );
    let reasons = |v: &serde_json::Value| {
        let mut r: Vec<(String, String)> = v["branches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["verdict"].as_str().unwrap().to_string(),
                    b["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        r.sort();
        r
    };
    assert_eq!(reasons(&nft), reasons(&ipt));

    // The node stage is the nft engine's: kube-proxy's chains, cited in the nft file, four
    // equal shares from `numgen random mod 4`.
    let group = &nft["nodes"][0];
    let outcomes = group["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 4, "{outcomes:#?}");
    for o in outcomes {
        assert!((o["probability"].as_f64().unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(o["masquerade"], true);
        let steps = o["steps"].as_array().unwrap();
        let texts: Vec<&str> = steps.iter().map(|s| s["text"].as_str().unwrap()).collect();
        assert!(
            texts.iter().any(|t| t.contains("numgen random mod 4")),
            "{texts:#?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("dnat to 192.168.")),
            "{texts:#?}"
        );
        for s in steps {
            let src = s["source"].as_str().unwrap_or_default();
            assert!(
                src.contains("nft-ruleset.txt:"),
                "a step cites the nft file: {s}"
            );
        }
    }

    // The same fix, verified the same way.
    let (code_fix, fixed) = trace(&dir, &["--what-if", FIX]);
    assert_eq!(code_fix, 0);
    assert!(
        (fixed["verdicts"]["delivered"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{}",
        fixed["verdicts"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn iptables_nft_tables_missing_from_the_nft_listing_make_the_node_unknown() {
    // The seed's iptables-save files are iptables-nft's (`# Generated by iptables-nft-save`):
    // their tables are nf_tables tables which a whole `nft list ruleset` would list too. The
    // generated nft file holds only kube-proxy's table, so the two views disagree and
    // kubepath must not answer from either alone.
    let dir = nft_seed("nft-seed-both", true);
    let (code, v) = trace(&dir, &[]);
    assert_eq!(code, 1, "{v}");
    assert!(
        (v["verdicts"]["unknown"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{}",
        v["verdicts"]
    );
    for b in v["branches"].as_array().unwrap() {
        let r = b["reason"].as_str().unwrap();
        assert!(
            r.contains("cannot evaluate both together") && r.contains("nft-ruleset.txt"),
            "{r}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Privileged: the generated rulesets are what the kernel takes. Each node's file is loaded
/// with `nft -f` in a network namespace of its own (`unshare -n`: it ends with the process,
/// so nothing is left behind even on failure) and listed back; the listing (kernel text, as a
/// node's `nft list ruleset` shows it) must parse to the same tables and rule count.
#[test]
fn the_generated_rulesets_load_into_the_kernel() {
    if !kubepath_netfilter_gen::privileged::gate(
        "the_generated_rulesets_load_into_the_kernel",
        &["nft", "unshare"],
    ) {
        return;
    }
    let dir = nft_seed("nft-seed-kernel", false);
    let mut n = 0;
    for e in std::fs::read_dir(dir.join("nodes")).unwrap() {
        let f = e.unwrap().path().join("nft-ruleset.txt");
        let out = Command::new("unshare")
            .args(["-n", "sh", "-c", "nft -f \"$1\" && nft list ruleset", "sh"])
            .arg(&f)
            .output()
            .expect("unshare");
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = String::from_utf8(out.stdout).unwrap();
        let ours = std::fs::read_to_string(&f).unwrap();
        let (a, _) = kubepath_netfilter::NftRuleset::parse("gen", &ours).unwrap();
        let (b, _) = kubepath_netfilter::NftRuleset::parse("listed", &listed)
            .unwrap_or_else(|e| panic!("the kernel's listing does not parse: {e:?}\n{listed}"));
        assert_eq!(a.tables.len(), b.tables.len());
        assert_eq!(a.rule_count(), b.rule_count(), "{listed}");
        n += 1;
    }
    assert_eq!(n, 11);
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_json(dir: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(["check", &dir.display().to_string(), "--json"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubepath");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

fn stale_findings(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "kube-proxy-stale")
        .collect()
}

/// `check`'s kube-proxy-stale reads nftables-mode nodes: the nft engine sends each Service's
/// ClusterIP through the node's ruleset and compares the DNAT destinations with the ready
/// endpoints. Rules generated from the snapshot's own EndpointSlices agree; a node whose rules
/// still send eric-pm-server to a pod IP that is gone is reported, naming the stale
/// destination and the nft line that sends there.
#[test]
fn check_finds_stale_kube_proxy_nft_rules() {
    let dir = nft_seed("nft-stale", false);
    let v = check_json(&dir);
    assert!(stale_findings(&v).is_empty(), "{:#}", v["findings"]);

    let node = "pool2-9976d6447-xmbcz";
    let snap = kubepath_ingest::load_snapshot(&dir).expect("loads");
    let mut svcs = services_for(&snap.model, node);
    let old: Ipv4Addr = "192.168.22.247".parse().unwrap();
    let stale: Ipv4Addr = "192.168.22.250".parse().unwrap();
    let mut changed = 0;
    for s in svcs.iter_mut().filter(|s| s.name == "eric-pm-server") {
        for e in s.endpoints.iter_mut().filter(|e| e.ip == old) {
            e.ip = stale;
            changed += 1;
        }
    }
    assert!(changed > 0, "eric-pm-server's endpoint is in the seed");
    let cfg = NftProxyConfig {
        cluster_cidr: Some("192.168.0.0/16".into()),
        ..NftProxyConfig::default()
    };
    let path = dir.join("nodes").join(node).join("nft-ruleset.txt");
    std::fs::write(&path, render(&cfg, &svcs)).unwrap();
    let v = check_json(&dir);
    let found = stale_findings(&v);
    assert_eq!(found.len(), 1, "{:#}", v["findings"]);
    let f = found[0];
    let text = f.to_string();
    assert!(f["title"].as_str().unwrap().contains(node), "{text}");
    assert!(
        text.contains("still sends to 192.168.22.250:")
            && text.contains("lacks ready endpoint 192.168.22.247:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("nodes/{node}/nft-ruleset.txt:")),
        "{text}"
    );
}

#[test]
fn iptables_legacy_beside_an_nft_ruleset_that_does_nothing() {
    // The seed's nodes as iptables-legacy nodes (the dump's header says `iptables-save`, as
    // iptables-legacy-save writes it) whose nft ruleset is Debian's default
    // /etc/nftables.conf: a `table inet filter` with empty accept chains. The kernel runs
    // both, but only the iptables rules do anything: the seed's answer.
    let seed = root().join("examples/dc173");
    let dir = scratch("legacy-beside-nft");
    copy_dir(&seed, &dir);
    let debian = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n}\n";
    for e in std::fs::read_dir(dir.join("nodes")).unwrap() {
        let nd = e.unwrap().path();
        let ipt = std::fs::read_to_string(nd.join("iptables-save.txt")).unwrap();
        let legacy = ipt.replace(
            "# Generated by iptables-nft-save v1.8.4",
            "# Generated by iptables-save v1.8.4",
        );
        assert_ne!(legacy, ipt);
        std::fs::write(nd.join("iptables-save.txt"), legacy).unwrap();
        std::fs::write(nd.join("nft-ruleset.txt"), debian).unwrap();
    }
    let (code_want, want) = trace(&seed, &[]);
    let (code, got) = trace(&dir, &[]);
    assert_eq!(code, code_want, "{got}");
    close_maps(&got["verdicts"], &want["verdicts"], "verdicts");
    // A rule in the nft table (a counter is enough to be something kubepath would have to
    // order with the legacy hooks): not evaluated together yet, so unknown.
    let busy = debian.replace(
        "type filter hook forward priority filter; policy accept;\n",
        "type filter hook forward priority filter; policy accept;\n\t\tct state invalid drop\n",
    );
    for e in std::fs::read_dir(dir.join("nodes")).unwrap() {
        std::fs::write(e.unwrap().path().join("nft-ruleset.txt"), &busy).unwrap();
    }
    let (code, v) = trace(&dir, &[]);
    assert_eq!(code, 1, "{v}");
    assert!(v.to_string().contains("iptables-legacy tables"), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A LoadBalancer Service without endpoints: kube-proxy's nftables mode sends its traffic
/// through the `no-endpoint-services` verdict map to `reject-chain` (pkg/proxy/nftables
/// proxier.go), as iptables mode REJECTs it in a rule commented `... has no endpoints`. The
/// trace says `no-endpoints` in both modes, not a rule that drops.
#[test]
fn a_service_without_endpoints_in_nftables_mode_is_no_endpoints() {
    let dir = nft_seed_with("nft-seed-noep", false, |svcs| {
        for s in svcs.iter_mut().filter(|s| !s.lb_ips.is_empty()) {
            s.endpoints.clear();
        }
    });
    let (code, v) = trace(&dir, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1, "{v}");
    assert!(
        (v["verdicts"]["no-endpoints"].as_f64().unwrap_or(0.0) - 1.0).abs() < 1e-9,
        "{}\n{:#}",
        v["verdicts"],
        v["branches"]
    );
    for b in v["branches"].as_array().unwrap() {
        let r = b["reason"].as_str().unwrap();
        assert!(
            r.contains("no endpoints")
                && r.contains("@no-endpoint-services -> reject-chain (nodes/"),
            "{r}"
        );
    }
}
