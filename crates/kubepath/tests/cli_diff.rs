//! `kubepath diff` and `kubepath check --format sarif` end to end: the seed (examples/dc173)
//! against a copy with the fix `kubepath check` proposes written into the nodes' `ip route` /
//! `ip rule` outputs; the SARIF log's structure (docs/check-json.md, docs/diff-json.md).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

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

fn json_of(args: &[&str]) -> (i32, Value) {
    let (code, out, err) = kubepath(args);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}\n{err}"));
    (code, v)
}

fn append(path: &Path, line: &str) {
    let mut s = fs::read_to_string(path).unwrap();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(line);
    s.push('\n');
    fs::write(path, s).unwrap();
}

/// A temporary directory of this test process.
fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubepath-diff-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

/// examples/dc173 copied to `dir` with the first verified fix of `kubepath check`'s
/// asymmetric-return finding written into each of its nodes' outputs, as `ip route show
/// table all` and `ip rule` print them.
fn fixed_dc173(dir: &Path) {
    fixed_dc173_on(dir, usize::MAX)
}

/// [`fixed_dc173`] on the first `n` nodes of the fix only.
fn fixed_dc173_on(dir: &Path, n: usize) {
    copy_dir(&root().join("examples/dc173"), dir);
    let (_, v) = json_of(&["check", "examples/dc173", "--json"]);
    let finding = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "flow-asymmetric-return")
        .unwrap_or_else(|| panic!("no asymmetric return: {v:#}"));
    let fix = finding["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["status"] == "verified")
        .unwrap_or_else(|| panic!("no verified fix: {finding:#}"));
    let nodes = fix["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 11, "{fix:#}");
    for node in nodes.iter().take(n) {
        let nd = dir.join("nodes").join(node.as_str().unwrap());
        for c in fix["commands"].as_array().unwrap() {
            let c = c.as_str().unwrap();
            if let Some(route) = c.strip_prefix("ip route add ") {
                append(&nd.join("ip-route.txt"), route);
            } else if let Some(rule) = c.strip_prefix("ip rule add ") {
                let (sel, prio) = rule
                    .rsplit_once(" priority ")
                    .unwrap_or_else(|| panic!("a rule without priority: {c}"));
                let sel = if sel.starts_with("from ") {
                    sel.to_string()
                } else {
                    format!("from all {sel}")
                };
                append(&nd.join("ip-rule.txt"), &format!("{prio}:\t{sel}"));
            } else {
                panic!("a fix this test cannot write into a snapshot: {c}");
            }
        }
    }
}

fn codes(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn diff_seed_against_its_fix() {
    let fixed = temp("fixed");
    fixed_dc173(&fixed);
    let fixed_s = fixed.to_str().unwrap();

    // The fix: the asymmetric return is gone, every flow went from it to delivered, exit 0.
    let (code, v) = json_of(&["diff", "examples/dc173", fixed_s, "--json"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["schema"], "kubepath.diff/v1");
    assert_eq!(v["worse"], false);
    assert_eq!(codes(&v["findings"]["gone"]), ["flow-asymmetric-return"]);
    assert!(v["findings"]["new"].as_array().unwrap().is_empty(), "{v:#}");
    assert!(
        v["findings"]["changed"].as_array().unwrap().is_empty(),
        "{v:#}"
    );
    assert_eq!(
        v["summary"]["unchanged"], 1,
        "the stale Ingress status stays"
    );
    let flows = v["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 3, "{v:#}");
    for f in flows {
        assert_eq!(
            f["before"],
            serde_json::json!({"asymmetric-return": 1.0}),
            "{f:#}"
        );
        assert_eq!(f["after"], serde_json::json!({"delivered": 1.0}), "{f:#}");
        assert_eq!(f["delivered_before"], 0.0);
        assert_eq!(f["delivered_after"], 1.0);
        assert_eq!(f["worse"], false);
    }
    let (code, out, _) = kubepath(&["diff", "examples/dc173", fixed_s]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing got worse"), "{out}");
    assert!(
        out.contains("  - CRITICAL flow-asymmetric-return: asymmetric return path"),
        "{out}"
    );
    assert!(
        out.contains("ingress-nginx/ingress-nginx 10.33.151.160:80/tcp: asymmetric-return 100% -> delivered 100%"),
        "{out}"
    );

    // The other way round: the finding is new and the flows lost their delivered share.
    let (code, v) = json_of(&["diff", fixed_s, "examples/dc173", "--json"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["worse"], true);
    assert_eq!(codes(&v["findings"]["new"]), ["flow-asymmetric-return"]);
    assert_eq!(v["findings"]["new"][0]["worse"], true);
    assert!(v["flows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["worse"] == true));
    // Below the threshold, a new finding is not worse; the flows still are.
    let (code, _, _) = kubepath(&["diff", fixed_s, "examples/dc173", "--severity", "critical"]);
    assert_eq!(code, 1);

    // The SARIF fingerprint of the finding both have is the same.
    let fp = |dir: &str| -> BTreeSet<(String, String)> {
        let (_, v) = json_of(&["check", dir, "--format", "sarif"]);
        v["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["ruleId"].as_str().unwrap().to_string(),
                    r["partialFingerprints"]["kubepathFindingKey/v1"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect()
    };
    let (a, b) = (fp("examples/dc173"), fp(fixed_s));
    assert_eq!(a.len(), 2);
    assert_eq!(a.intersection(&b).count(), 1, "{a:?} {b:?}");
    assert!(b.iter().all(|(r, _)| r == "ingress-status-no-controller"));
    let _ = fs::remove_dir_all(&fixed);
}

#[test]
fn diff_no_change_and_bad_input() {
    let (code, out, err) = kubepath(&["diff", "examples/dc173", "examples/dc173"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "examples/dc173 -> examples/dc173: no change (2 findings at or above warning and 3 flows the same)\n"
    );
    let (code, v) = json_of(&["diff", "examples/dc173", "examples/dc173", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        v["summary"],
        serde_json::json!({"gone": 0, "new": 0, "changed": 0, "unchanged": 2, "flows_changed": 0, "flows_unchanged": 3})
    );
    for args in [
        ["diff", "examples/no-such-dir", "examples/dc173"],
        ["diff", "examples/dc173", "examples/no-such-dir"],
    ] {
        let (code, _, err) = kubepath(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("no-such-dir"), "{err}");
    }
    let (code, _, _) = kubepath(&["diff", "examples/dc173"]);
    assert_eq!(code, 2);
    let (code, _, _) = kubepath(&[
        "diff",
        "examples/dc173",
        "examples/dc173",
        "--severity",
        "x",
    ]);
    assert_eq!(code, 2);
}

/// The property names the SARIF 2.1.0 schema allows on the objects kubepath writes (each has
/// `additionalProperties: false` there).
fn allowed(object: &str) -> &'static [&'static str] {
    match object {
        "sarifLog" => &[
            "$schema",
            "version",
            "runs",
            "inlineExternalProperties",
            "properties",
        ],
        "run" => &[
            "tool",
            "invocations",
            "conversion",
            "language",
            "versionControlProvenance",
            "originalUriBaseIds",
            "artifacts",
            "logicalLocations",
            "graphs",
            "results",
            "automationDetails",
            "runAggregates",
            "baselineGuid",
            "redactionTokens",
            "defaultEncoding",
            "defaultSourceLanguage",
            "newlineSequences",
            "columnKind",
            "externalPropertyFileReferences",
            "threadFlowLocations",
            "taxonomies",
            "addresses",
            "translations",
            "policies",
            "webRequests",
            "webResponses",
            "specialLocations",
            "properties",
        ],
        "toolComponent" => &[
            "guid",
            "name",
            "organization",
            "product",
            "productSuite",
            "shortDescription",
            "fullDescription",
            "fullName",
            "version",
            "semanticVersion",
            "dottedQuadFileVersion",
            "releaseDateUtc",
            "downloadUri",
            "informationUri",
            "globalMessageStrings",
            "notifications",
            "rules",
            "taxa",
            "locations",
            "language",
            "contents",
            "isComprehensive",
            "localizedDataSemanticVersion",
            "minimumRequiredLocalizedDataSemanticVersion",
            "associatedComponent",
            "translationMetadata",
            "supportedTaxonomies",
            "properties",
        ],
        "reportingDescriptor" => &[
            "id",
            "deprecatedIds",
            "guid",
            "deprecatedGuids",
            "name",
            "deprecatedNames",
            "shortDescription",
            "fullDescription",
            "messageStrings",
            "defaultConfiguration",
            "helpUri",
            "help",
            "relationships",
            "properties",
        ],
        "result" => &[
            "ruleId",
            "ruleIndex",
            "rule",
            "kind",
            "level",
            "message",
            "analysisTarget",
            "locations",
            "guid",
            "correlationGuid",
            "occurrenceCount",
            "partialFingerprints",
            "fingerprints",
            "stacks",
            "codeFlows",
            "graphs",
            "graphTraversals",
            "relatedLocations",
            "suppressions",
            "baselineState",
            "rank",
            "attachments",
            "hostedViewerUri",
            "workItemUris",
            "provenance",
            "fixes",
            "taxa",
            "webRequest",
            "webResponse",
            "properties",
        ],
        "location" => &[
            "id",
            "physicalLocation",
            "logicalLocations",
            "message",
            "annotations",
            "relationships",
            "properties",
        ],
        "physicalLocation" => &[
            "address",
            "artifactLocation",
            "region",
            "contextRegion",
            "properties",
        ],
        "artifactLocation" => &["uri", "uriBaseId", "index", "description", "properties"],
        _ => &[],
    }
}

fn keys_allowed(v: &Value, object: &str) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{object} is no object: {v}"));
    for k in o.keys() {
        assert!(
            allowed(object).contains(&k.as_str()),
            "{object} has no property {k}: {v:#}"
        );
    }
}

fn check_location(loc: &Value, snapshot: &Path) {
    keys_allowed(loc, "location");
    let p = &loc["physicalLocation"];
    keys_allowed(p, "physicalLocation");
    let a = &p["artifactLocation"];
    keys_allowed(a, "artifactLocation");
    assert_eq!(a["uriBaseId"], "SNAPSHOT");
    let uri = a["uri"].as_str().unwrap();
    assert!(
        !uri.starts_with('/') && !uri.contains(':') && !uri.contains('<') && !uri.contains(".."),
        "{uri}"
    );
    if uri == "./" {
        // The snapshot directory itself (a result without evidence, no manifest): no region.
        assert!(p.get("region").is_none(), "{p}");
    } else {
        assert!(
            snapshot.join(uri).is_file(),
            "{uri} is not a file of the snapshot"
        );
    }
    if let Some(r) = p.get("region") {
        assert!(r["startLine"].as_u64().unwrap() >= 1, "{r}");
    }
}

#[test]
fn sarif_of_the_seed() {
    let (code, v) = json_of(&["check", "examples/dc173", "--format", "sarif"]);
    assert_eq!(code, 1, "the exit code of check");
    keys_allowed(&v, "sarifLog");
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"]
        .as_str()
        .unwrap()
        .ends_with("sarif-schema-2.1.0.json"));
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    keys_allowed(run, "run");
    let driver = &run["tool"]["driver"];
    keys_allowed(driver, "toolComponent");
    assert_eq!(driver["name"], "kubepath");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let base = run["originalUriBaseIds"]["SNAPSHOT"]["uri"]
        .as_str()
        .unwrap();
    assert!(
        base.starts_with("file:///") && base.ends_with("/examples/dc173/"),
        "{base}"
    );

    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["flow-asymmetric-return", "ingress-status-no-controller"]
    );
    for r in rules {
        keys_allowed(r, "reportingDescriptor");
        assert!(!r["shortDescription"]["text"].as_str().unwrap().is_empty());
        assert!(["error", "warning", "note", "none"]
            .contains(&r["defaultConfiguration"]["level"].as_str().unwrap()));
    }
    assert_eq!(rules[0]["defaultConfiguration"]["level"], "error");
    assert_eq!(rules[1]["defaultConfiguration"]["level"], "warning");

    let (_, check) = json_of(&["check", "examples/dc173", "--json"]);
    let findings = check["findings"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), findings.len());
    let snapshot = root().join("examples/dc173");
    for (r, f) in results.iter().zip(findings) {
        keys_allowed(r, "result");
        assert_eq!(r["ruleId"], f["code"]);
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
        let level = match f["severity"].as_str().unwrap() {
            "critical" | "error" => "error",
            "warning" => "warning",
            _ => "note",
        };
        assert_eq!(r["level"], level);
        let text = r["message"]["text"].as_str().unwrap();
        assert!(
            text.starts_with(f["title"].as_str().unwrap())
                && text.ends_with(f["explanation"].as_str().unwrap()),
            "{text}"
        );
        let locs = r["locations"].as_array().unwrap();
        assert_eq!(locs.len(), 1);
        for l in locs
            .iter()
            .chain(r["relatedLocations"].as_array().into_iter().flatten())
        {
            check_location(l, &snapshot);
        }
        let fp = r["partialFingerprints"]["kubepathFindingKey/v1"]
            .as_str()
            .unwrap();
        assert_eq!(fp.len(), 16);
        assert_eq!(r["properties"]["fixes"], f["fixes"]);
        assert_eq!(r["properties"]["severity"], f["severity"]);
    }
    // The asymmetric return: at the node's default route, the lines cited as related.
    let first = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(
        first["artifactLocation"]["uri"],
        "nodes/control-plane-4qjt9/ip-route.txt"
    );
    assert_eq!(first["region"]["startLine"], 1);
    assert!(results[0]["relatedLocations"].as_array().unwrap().len() >= 5);

    // --json is --format json; both at once is a usage error.
    let (_, a, _) = kubepath(&["check", "examples/dc173", "--json"]);
    let (_, b, _) = kubepath(&["check", "examples/dc173", "--format", "json"]);
    assert_eq!(a, b);
    let (_, t, _) = kubepath(&["check", "examples/dc173", "--format", "text"]);
    assert!(t.starts_with("examples/dc173: 2 findings"), "{t}");
    let (code, _, _) = kubepath(&["check", "examples/dc173", "--json", "--format", "sarif"]);
    assert_eq!(code, 2);
    // Nothing at or above the threshold: no result, exit 0.
    let (code, v) = json_of(&["check", "fixtures/trace/delivered", "--format", "sarif"]);
    assert_eq!(code, 0);
    assert!(v["runs"][0]["results"].as_array().unwrap().is_empty());
    assert!(v["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn sarif_without_evidence_points_at_the_manifest() {
    let empty = temp("empty");
    fs::create_dir_all(&empty).unwrap();
    fs::write(
        empty.join("kubepath.yaml"),
        "apiVersion: kubepath.dev/v1\nkind: Manifest\n",
    )
    .unwrap();
    let (code, v) = json_of(&["check", empty.to_str().unwrap(), "--format", "sarif"]);
    assert_eq!(code, 1, "{v:#}");
    let r = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "flow-not-checked")
        .cloned()
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(r["level"], "warning");
    check_location(&r["locations"][0], &empty);
    let _ = fs::remove_dir_all(&empty);
}

/// fixtures/trace/delivered with a ClusterIP Service of namespace shop (which has pods) whose
/// selector matches none of them.
fn with_ghost_services(dir: &Path, names: &[&str]) {
    copy_dir(&root().join("fixtures/trace/delivered"), dir);
    let mut y = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for (i, n) in names.iter().enumerate() {
        y.push_str(&format!(
            "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: {n}\n    namespace: shop\n  spec:\n    type: ClusterIP\n    clusterIP: 10.96.77.{}\n    ports:\n    - name: http\n      port: 80\n      protocol: TCP\n      targetPort: 8080\n    selector:\n      app: {n}\n",
            i + 1
        ));
    }
    fs::write(dir.join("cluster/ghosts.yaml"), y).unwrap();
}

/// Two different Services whose selectors match nothing are two findings: one gone and one
/// new (worse), not one finding "changed"; in one snapshot they have different SARIF
/// fingerprints.
#[test]
fn diff_and_sarif_tell_two_contradictions_apart() {
    let (a, b, c) = (temp("ghost-a"), temp("ghost-b"), temp("ghost-ab"));
    with_ghost_services(&a, &["ghost-a"]);
    with_ghost_services(&b, &["ghost-b"]);
    with_ghost_services(&c, &["ghost-a", "ghost-b"]);
    let (code, v) = json_of(&["diff", a.to_str().unwrap(), b.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(codes(&v["findings"]["gone"]), ["selector-matches-no-pod"]);
    assert_eq!(codes(&v["findings"]["new"]), ["selector-matches-no-pod"]);
    assert_eq!(v["findings"]["new"][0]["worse"], true);
    assert!(v["findings"]["changed"].as_array().unwrap().is_empty());
    assert_eq!(
        v["findings"]["new"][0]["affected"],
        serde_json::json!(["Service shop/ghost-b"])
    );

    let (_, v) = json_of(&["check", c.to_str().unwrap(), "--format", "sarif"]);
    let fps: Vec<&str> = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ruleId"] == "selector-matches-no-pod")
        .map(|r| {
            r["partialFingerprints"]["kubepathFindingKey/v1"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(fps.len(), 2, "{v:#}");
    assert_ne!(fps[0], fps[1]);
    for d in [a, b, c] {
        let _ = fs::remove_dir_all(&d);
    }
}

/// The fix on 5 of the 11 nodes: every flow improves, the asymmetric-return finding now lists
/// 6 nodes and fix-half-applied is new; not worse (exit 0). Undone, it is worse.
#[test]
fn diff_of_a_fix_on_some_nodes_is_not_worse() {
    let some = temp("some5");
    fixed_dc173_on(&some, 5);
    let s = some.to_str().unwrap();
    let (code, v) = json_of(&["diff", "examples/dc173", s, "--json"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["worse"], false);
    let new = codes(&v["findings"]["new"]);
    assert!(
        new.contains(&"flow-asymmetric-return".to_string()),
        "{new:?}"
    );
    assert!(v["findings"]["new"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["worse"] == false));
    let (code, out, _) = kubepath(&["diff", "examples/dc173", s]);
    assert_eq!(code, 0);
    assert!(!out.contains("[worse]"), "{out}");
    assert!(out.contains("nothing got worse"), "{out}");
    let (code, v) = json_of(&["diff", s, "examples/dc173", "--json"]);
    assert_eq!(code, 1, "{v:#}");
    let _ = fs::remove_dir_all(&some);
}

/// Without a manifest, a result without evidence is located at the snapshot directory, not at
/// a `kubepath.yaml` that does not exist.
#[test]
fn sarif_without_evidence_nor_manifest_points_at_the_snapshot() {
    let snap = root().join("fixtures/snapshots/assignment");
    assert!(!snap.join("kubepath.yaml").exists());
    let (_, v) = json_of(&["check", snap.to_str().unwrap(), "--format", "sarif"]);
    let r = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "flow-not-checked")
        .cloned()
        .unwrap_or_else(|| panic!("{v:#}"));
    let a = &r["locations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(a["uri"], "./", "{r:#}");
    check_location(&r["locations"][0], &snap);
    for r in v["runs"][0]["results"].as_array().unwrap() {
        check_location(&r["locations"][0], &snap);
    }
}
