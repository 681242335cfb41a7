//! `kubepath check` end to end: the seed's fault on examples/dc173 as the most severe
//! finding, gone with the fix applied; exit codes and the JSON schema.

use std::process::Command;

mod support;
use support::{copy_dir, root};

fn kubepath(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubepath");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut a = vec!["check", "examples/dc173", "--json"];
    a.extend_from_slice(args);
    let (code, out, err) = kubepath(&a);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}"));
    (code, v)
}

const POLICY_FIX: [&str; 4] = [
    "--what-if",
    "ip route add default via 10.33.151.65 dev ccd_ecfe_om table 100",
    "--what-if",
    "ip rule add to 10.210.150.80/28 lookup 100 priority 1100",
];

#[test]
fn seed_asymmetric_return_is_the_most_severe_finding() {
    let (code, v) = json(&[]);
    assert_eq!(code, 1);
    assert_eq!(v["schema"], "kubepath.check/v1");
    let f = &v["findings"][0];
    assert_eq!(f["code"], "flow-asymmetric-return", "{v:#}");
    assert_eq!(f["severity"], "critical");
    let title = f["title"].as_str().unwrap();
    assert!(
        title.contains("10.210.150.80/28") && title.contains("all 11 nodes"),
        "{title}"
    );
    let fix = &f["fixes"][0];
    assert_eq!(fix["status"], "verified");
    assert_eq!(fix["nodes"].as_array().unwrap().len(), 11);
    assert!(
        fix["commands"][1]
            .as_str()
            .unwrap()
            .contains("ip rule add to 10.210.150.80/28"),
        "{fix:#}"
    );
    // The stale Ingress status (10.0.10.103 and .104 host no controller).
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"ingress-status-no-controller"), "{codes:?}");
    let stale = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "ingress-status-no-controller")
        .unwrap();
    let t = stale["title"].as_str().unwrap();
    assert!(
        t.contains("10.0.10.103, 10.0.10.104") && !t.contains("10.0.10.102"),
        "{t}"
    );
    // Every flow of the manifest's client prefix was traced.
    assert!(v["flows"].as_array().unwrap().len() >= 3);
}

#[test]
fn seed_fix_removes_the_finding() {
    let (code, v) = json(&POLICY_FIX);
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(!codes.iter().any(|c| c.starts_with("flow-")), "{codes:?}");
    assert_eq!(code, 1, "the stale Ingress status is still a warning");
    let mut args = POLICY_FIX.to_vec();
    args.extend(["--severity", "error"]);
    let (code, v) = json(&args);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);
    for f in v["flows"].as_array().unwrap() {
        assert_eq!(f["verdicts"]["delivered"], 1.0, "{f:#}");
    }
}

#[test]
fn text_output_and_bad_input() {
    let (code, out, _) = kubepath(&["check", "examples/dc173"]);
    assert_eq!(code, 1);
    assert!(
        out.lines()
            .nth(2)
            .unwrap()
            .starts_with("1. CRITICAL flow-asymmetric-return: asymmetric return path for client seroius01242-lan 10.210.150.80/28 on all 11 nodes"),
        "{out}"
    );
    assert!(out.contains("fix 1: [verified] ip route add default via 10.33.151.65 dev ccd_ecfe_om table 100 && ip rule add to 10.210.150.80/28"), "{out}");
    let (code, _, err) = kubepath(&["check", "examples/no-such-dir"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = kubepath(&[
        "check",
        "examples/dc173",
        "--what-if",
        "ip route frobnicate",
    ]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = kubepath(&["check", "examples/dc173", "--severity", "fatal"]);
    assert_eq!(code, 2);
    // A change the kernel refuses is not applied, and the report says so.
    let (_, v) = json(&["--what-if", "ip route add 10.200.0.0/24 via 10.9.9.9"]);
    assert!(
        v["notes"]
            .to_string()
            .contains("Nexthop has invalid gateway"),
        "{}",
        v["notes"]
    );
    // A directory with nothing to check is not a clean bill of health.
    let empty = std::env::temp_dir().join(format!("kubepath-check-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let (code, out, _) = kubepath(&["check", empty.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&empty);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("flow-not-checked"), "{out}");
    // A healthy snapshot: no finding, exit 0.
    let (code, out, _) = kubepath(&["check", "fixtures/trace/delivered"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("fixtures/trace/delivered: 0 findings"),
        "{out}"
    );
}

#[test]
fn reach_matrix() {
    let (code, out, err) = kubepath(&["reach", "examples/dc173"]);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("entry point")
            && lines[0].ends_with("seroius01242-lan 10.210.150.80/28 (10.210.150.81)"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.ends_with("  asymmetric-return 100%")),
        "{out}"
    );
    // Prefixes from the command line; the healthy fixture delivers everything.
    let (code, out, _) = kubepath(&[
        "reach",
        "fixtures/trace/delivered",
        "--from",
        "10.200.0.0/24",
        "--from",
        "10.200.0.7",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "kubepath.reach/v1");
    assert_eq!(v["clients"].as_array().unwrap().len(), 2);
    assert_eq!(v["flows"].as_array().unwrap().len(), 4);
    for f in v["flows"].as_array().unwrap() {
        assert_eq!(f["verdicts"]["delivered"], 1.0, "{f:#}");
    }
    // A partial failure shows its distribution.
    let (code, out, _) = kubepath(&["reach", "fixtures/trace/no-route"]);
    assert_eq!(code, 1);
    assert!(out.contains("delivered 66.7%, no-route 33.3%"), "{out}");
    let (code, _, _) = kubepath(&["reach", "examples/dc173", "--from", "10.0.0.0/33"]);
    assert_eq!(code, 2);
}

/// A manifest client prefix but no entry point: the prefix is counted (it is the entry points
/// that are missing), and it is listed in the JSON's `clients`.
#[test]
fn reach_without_entry_points_counts_the_client_prefixes() {
    let dir = std::env::temp_dir().join(format!("kubepath-noentry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root().join("fixtures/trace/delivered"), &dir);
    for f in ["services.yaml", "ingress.yaml"] {
        std::fs::remove_file(dir.join("cluster").join(f)).unwrap();
    }
    let d = dir.to_str().unwrap();
    let (code, out, _) = kubepath(&["reach", d]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("(1 client prefix, 0 exposed entry points)"),
        "{out}"
    );
    let (_, out, _) = kubepath(&["reach", d, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["clients"], serde_json::json!(["users 10.200.0.0/24"]));
    let _ = std::fs::remove_dir_all(&dir);
}
