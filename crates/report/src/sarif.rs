//! `kubepath check --format sarif`: the check report as SARIF 2.1.0 (docs/check-json.md,
//! "SARIF"), for code-scanning tools such as GitHub code scanning.
//!
//! One run; `tool.driver.rules` has every code that appears; each finding is a result whose
//! locations come from its evidence (`file:line`, relative to the snapshot root, with
//! `uriBaseId` `SNAPSHOT`). What SARIF has no property for (the kubepath severity, what is
//! affected, the fixes, the raw evidence) is in the results' property bags: a SARIF `fix` needs
//! `artifactChanges` (byte replacements in a file), which kubepath's fixes (commands to run on
//! nodes) are not.

use serde_json::{json, Map, Value};

use crate::check::{CheckJson, FindingDto};

pub const SARIF_VERSION: &str = "2.1.0";
pub const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";
/// The `uriBaseId` of every location: the snapshot directory.
pub const URI_BASE: &str = "SNAPSHOT";
/// The `partialFingerprints` key of the finding's stable key.
pub const FINGERPRINT: &str = "kubepathFindingKey/v1";

/// The SARIF level of a kubepath severity.
pub fn level(severity: &str) -> &'static str {
    match severity {
        "critical" | "error" => "error",
        "warning" => "warning",
        _ => "note",
    }
}

fn rank(level: &str) -> u8 {
    match level {
        "error" => 3,
        "warning" => 2,
        "note" => 1,
        _ => 0,
    }
}

/// One line on what a check code means (docs/check-json.md, "Codes").
pub fn rule_description(code: &str) -> String {
    let d = match code {
        "flow-asymmetric-return" => "The reply leaves by another VRF or router than the request came in, and is not routed back to the client",
        "flow-no-route" => "A node, or a router the reply crosses, has no route back to the client prefix",
        "flow-not-checked" => "No flow was traced: no client prefixes in the manifest, or no exposed entry point",
        "flow-routing-loop" => "The reply loops between routers",
        "flow-rp-filter" => "A reverse-path filter drops the traffic on the interface it arrives on",
        "flow-dropped" => "Netfilter drops the traffic",
        "flow-no-endpoints" => "The Service has no endpoint",
        "flow-unknown" => "The snapshot does not hold what the decision needs",
        "flow-partial-prefix" => "A fix applied for some hosts only: part of a client prefix is delivered while the rest fails",
        "lb-ip-not-announced" => "A LoadBalancer IP that no node announces",
        "lb-announced-without-local-endpoint" => "A router has a path to a LoadBalancer IP via a node without a local endpoint under externalTrafficPolicy Local",
        "ingress-status-no-controller" => "An Ingress's status.loadBalancer address is not an address of an ingress controller",
        "ingress-host-no-dns" => "An Ingress host without an address in the snapshot's DNS data",
        "ingress-host-dns-elsewhere" => "An Ingress host resolving only to addresses of no ingress controller",
        "dns-address-no-service" => "A DNS name resolving to an address in a load-balancer pool that no Service holds",
        "selector-matches-no-ready-pod" => "A Service selects pods but none is Ready",
        "selector-matches-no-pod" => "A Service selector matches no pod",
        "ingress-path-conflict" => "Two Ingresses served by one controller claim the same host, path and pathType",
        "duplicate-ip" => "An IP address configured on more than one node",
        "pod-ip-on-no-node" => "A pod IP in no node's pod CIDR or pod routes",
        "pod-ip-on-other-node" => "A pod's IP belongs to the pod block of another node",
        "pod-on-unknown-node" => "A pod on a node the snapshot does not have",
        "ingress-backend-missing" => "An Ingress backend Service that does not exist",
        "ingress-backend-port-missing" => "An Ingress backend port that its Service does not have",
        "lb-ip-in-no-pool" => "A LoadBalancer IP in no address pool",
        "lb-route-without-service" => "A router path to a load-balancer pool address that no LoadBalancer Service holds",
        "endpoint-pod-ip-mismatch" => "An endpoint points at a pod whose IPs differ from its address",
        // A code added since: its name, readable.
        other => return format!("kubepath check {}", other.replace('-', " ")),
    };
    d.to_string()
}

/// 64-bit FNV-1a, hex: stable across Rust versions and platforms (std's hasher is not
/// guaranteed to be).
fn fnv1a(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The `partialFingerprints` value of a finding: a hash of [`kubepath_sim::diff::finding_key`].
pub fn fingerprint(f: &FindingDto) -> String {
    fnv1a(&kubepath_sim::diff::finding_key(&f.code, &f.affected))
}

/// A relative path percent-encoded as a URI reference: unreserved characters, `/` and the
/// sub-delimiters stay; everything else (`:`, `%`, `#`, `?`, spaces, `<`, non-ASCII, control
/// characters) becomes `%XX`, so that no segment reads as a scheme, query or fragment.
pub fn uri_path(path: &str) -> String {
    let mut o = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=@".contains(&b) {
            o.push(char::from(b));
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// `file:line` or `file` -> (file, line). A suffix that is not a positive number is part of
/// the file name.
fn split_evidence(e: &str) -> (&str, Option<u64>) {
    if let Some((file, line)) = e.rsplit_once(':') {
        if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = line.parse::<u64>() {
                if n >= 1 {
                    return (file, Some(n));
                }
                return (file, None);
            }
        }
    }
    (e, None)
}

/// The file of one piece of evidence, relative to the snapshot root: `nodes/<node>/...` (the
/// same line on every node of the finding) is read on the first node the finding affects;
/// `None` for what is no file of the snapshot (an absolute path, `..`, an unresolvable
/// placeholder, empty).
pub fn evidence_location(evidence: &str, affected: &[String]) -> Option<(String, Option<u64>)> {
    let (file, line) = split_evidence(evidence.trim());
    let file = if file.contains("<node>") {
        let node = affected.iter().find_map(|a| a.strip_prefix("node "))?;
        if node.is_empty() || node.contains('/') || node == "." || node == ".." {
            return None;
        }
        file.replace("<node>", node)
    } else {
        file.to_string()
    };
    let file = file.strip_prefix("./").unwrap_or(&file).to_string();
    if file.is_empty()
        || file.starts_with('/')
        || file.starts_with('\\')
        || file.contains('<')
        || file.split('/').any(|seg| seg == ".." || seg.is_empty())
        || file.as_bytes().get(1) == Some(&b':')
    {
        return None;
    }
    Some((file, line))
}

fn physical(file: &str, line: Option<u64>) -> Value {
    let mut p = json!({
        "artifactLocation": {"uri": uri_path(file), "uriBaseId": URI_BASE},
    });
    if let (Some(n), Some(obj)) = (line, p.as_object_mut()) {
        obj.insert("region".into(), json!({"startLine": n}));
    }
    p
}

/// Where a result without evidence in the snapshot is located, since code scanning wants a
/// location for every result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback<'a> {
    /// The manifest (`kubepath.yaml`, where the clients and entry points checked are
    /// declared), by its path relative to the snapshot: the snapshot has one.
    Manifest(&'a str),
    /// The snapshot directory itself (`./` against `SNAPSHOT`, no region): it has no manifest.
    Root,
}

/// Where a result is: its first evidence that is a file of the snapshot, the others as
/// related locations; without any, `fallback`.
fn locations(f: &FindingDto, fallback: Fallback<'_>) -> (Value, Vec<Value>) {
    let mut seen: Vec<(String, Option<u64>)> = Vec::new();
    for e in &f.evidence {
        if let Some(loc) = evidence_location(e, &f.affected) {
            if !seen.contains(&loc) {
                seen.push(loc);
            }
        }
    }
    let mut it = seen.into_iter();
    let primary = match it.next() {
        Some((file, line)) => physical(&file, line),
        None => match fallback {
            Fallback::Manifest(file) => physical(file, None),
            Fallback::Root => physical("./", None),
        },
    };
    let related = it
        .enumerate()
        .map(|(i, (file, line))| json!({"id": i, "physicalLocation": physical(&file, line)}))
        .collect();
    (json!({ "physicalLocation": primary }), related)
}

/// The SARIF log of a check report. `tool_version`: kubepath's version; `snapshot_uri`: the
/// absolute `file://` URI of the snapshot directory (ending in `/`), when known, for
/// `originalUriBaseIds`; `fallback`: where a result without evidence in the snapshot is.
pub fn to_sarif(
    j: &CheckJson,
    tool_version: &str,
    snapshot_uri: Option<&str>,
    fallback: Fallback<'_>,
) -> Value {
    // Rules in the order their codes first appear; the default level is the most severe of
    // their results.
    let mut rules: Vec<(String, &'static str)> = Vec::new();
    for f in &j.findings {
        let l = level(&f.severity);
        match rules.iter_mut().find(|(c, _)| *c == f.code) {
            Some(r) => {
                if rank(l) > rank(r.1) {
                    r.1 = l;
                }
            }
            None => rules.push((f.code.clone(), l)),
        }
    }
    let results: Vec<Value> = j
        .findings
        .iter()
        .map(|f| {
            let (location, related) = locations(f, fallback);
            let mut r = Map::new();
            r.insert("ruleId".into(), json!(f.code));
            if let Some(i) = rules.iter().position(|(c, _)| *c == f.code) {
                r.insert("ruleIndex".into(), json!(i));
            }
            r.insert("level".into(), json!(level(&f.severity)));
            r.insert(
                "message".into(),
                json!({"text": format!("{}\n\n{}", f.title, f.explanation)}),
            );
            r.insert("locations".into(), json!([location]));
            if !related.is_empty() {
                r.insert("relatedLocations".into(), Value::Array(related));
            }
            r.insert(
                "partialFingerprints".into(),
                json!({ FINGERPRINT: fingerprint(f) }),
            );
            r.insert(
                "properties".into(),
                json!({
                    "severity": f.severity,
                    "title": f.title,
                    "affected": f.affected,
                    "evidence": f.evidence,
                    "fixes": f.fixes,
                }),
            );
            Value::Object(r)
        })
        .collect();
    let rules: Vec<Value> = rules
        .iter()
        .map(|(code, l)| {
            json!({
                "id": code,
                "name": code,
                "shortDescription": {"text": rule_description(code)},
                "defaultConfiguration": {"level": l},
            })
        })
        .collect();
    let mut run = Map::new();
    run.insert(
        "tool".into(),
        json!({"driver": {
            "name": "kubepath",
            "version": tool_version,
            "semanticVersion": tool_version,
            "rules": rules,
        }}),
    );
    if let Some(uri) = snapshot_uri {
        run.insert(
            "originalUriBaseIds".into(),
            json!({ URI_BASE: {"uri": uri, "description": {"text": "the snapshot directory"}} }),
        );
    }
    run.insert("columnKind".into(), json!("unicodeCodePoints"));
    run.insert("results".into(), Value::Array(results));
    run.insert(
        "properties".into(),
        json!({
            "snapshot": j.snapshot,
            "severity_threshold": j.severity_threshold,
            "summary": j.summary,
            "notes": j.notes,
            "snapshot_errors": j.snapshot_errors,
        }),
    );
    json!({
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [Value::Object(run)],
    })
}

/// `file://` URI of an absolute directory path, ending in `/`.
pub fn dir_file_uri(abs: &str) -> String {
    let mut p = uri_path(abs);
    if !p.ends_with('/') {
        p.push('/');
    }
    if p.starts_with('/') {
        format!("file://{p}")
    } else {
        format!("file:///{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_to_locations() {
        let aff = vec!["svc (100% no-route)".to_string(), "node n-1".to_string()];
        assert_eq!(
            evidence_location("nodes/a/ip-route.txt:7", &aff),
            Some(("nodes/a/ip-route.txt".into(), Some(7)))
        );
        assert_eq!(
            evidence_location("nodes/<node>/ip-route.txt:1", &aff),
            Some(("nodes/n-1/ip-route.txt".into(), Some(1)))
        );
        assert_eq!(evidence_location("nodes/<node>/ip-route.txt:1", &[]), None);
        assert_eq!(
            evidence_location("cluster/svc.yaml", &aff),
            Some(("cluster/svc.yaml".into(), None))
        );
        assert_eq!(
            evidence_location("cluster/svc.yaml:0", &aff),
            Some(("cluster/svc.yaml".into(), None))
        );
        assert_eq!(
            evidence_location("dns/a:b.zone", &aff),
            Some(("dns/a:b.zone".into(), None))
        );
        assert_eq!(evidence_location("/etc/passwd:1", &aff), None);
        assert_eq!(evidence_location("../x:1", &aff), None);
        assert_eq!(evidence_location("", &aff), None);
        assert_eq!(uri_path("dns/a:b c%.zone"), "dns/a%3Ab%20c%25.zone");
        assert_eq!(uri_path("nodes/ñ/x"), "nodes/%C3%B1/x");
        assert_eq!(dir_file_uri("/tmp/a b"), "file:///tmp/a%20b/");
    }

    #[test]
    fn levels_and_fingerprints() {
        assert_eq!(level("critical"), "error");
        assert_eq!(level("error"), "error");
        assert_eq!(level("warning"), "warning");
        assert_eq!(level("info"), "note");
        assert_eq!(fnv1a(""), "cbf29ce484222325");
        assert_eq!(fnv1a("a"), "af63dc4c8601ec8c");
        assert_eq!(rule_description("x-y"), "kubepath check x y");
    }
}
