//! `kubepath diff`: what changed between the checks of two snapshots (docs/diff-json.md).
//!
//! A pure comparison of two [`CheckReport`]s and of two reach matrices ([`check::reach`]):
//! findings gone, new and changed, matched by a stable key ([`finding_key`]: the code and what
//! the finding affects, its failing shares left out; then by code and title), and the flows
//! whose verdict distribution changed, matched by (client, prefix, class, entry point).
//!
//! [`check::reach`]: crate::check::reach

use std::collections::BTreeMap;

use crate::check::{CheckReport, Finding, Flow, Severity};
use crate::trace::Verdict;

/// Below this, two probabilities are the same.
const EPS: f64 = 1e-9;

/// The identity of a finding across snapshots: `code | affected | affected ...`, what it
/// affects in order, each without a trailing failing share (`entry (100% asymmetric-return)`
/// is `entry`), so that a finding whose share changed is the same finding. `kubepath check
/// --format sarif` hashes it into the results' `partialFingerprints`.
pub fn finding_key(code: &str, affected: &[String]) -> String {
    let mut key = String::from(code);
    for a in affected {
        key.push_str(" | ");
        key.push_str(strip_share(a));
    }
    key
}

/// `x (12.5% verdict)` -> `x`; anything else unchanged.
fn strip_share(s: &str) -> &str {
    if let Some(body) = s.strip_suffix(')') {
        if let Some(open) = body.rfind(" (") {
            let inner = &body[open + 2..];
            if inner.contains('%') && !inner.contains('(') {
                return &s[..open];
            }
        }
    }
    s
}

/// The same finding in both snapshots, with something different.
#[derive(Debug, Clone, Copy)]
pub struct Changed<'a> {
    pub before: &'a Finding,
    pub after: &'a Finding,
}

impl Changed<'_> {
    /// More severe than before, and at or above `threshold`.
    pub fn worse(&self, threshold: Severity) -> bool {
        self.after.severity > self.before.severity && self.after.severity >= threshold
    }
}

/// How the findings of two reports differ.
#[derive(Debug, Clone, Default)]
pub struct FindingsDiff<'a> {
    /// In the first report only.
    pub gone: Vec<&'a Finding>,
    /// In the second report only.
    pub new: Vec<&'a Finding>,
    /// For each of `new`, whether it is a regression by itself (the threshold aside): every
    /// new finding is, except a flow finding that only replaces the flow findings of its
    /// client prefix as a (partial) fix changed them ([`diff`] decides; [`diff_findings`]
    /// alone says `true`).
    pub new_regresses: Vec<bool>,
    /// In both, with another severity, title or list of what is affected.
    pub changed: Vec<Changed<'a>>,
    /// In both, the same (severity, title, affected).
    pub unchanged: Vec<&'a Finding>,
}

/// One (client, prefix, class, entry point) whose verdict distribution changed, or that only
/// one of the snapshots has.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowChange {
    pub client: String,
    pub prefix: ipnet::IpNet,
    pub class: ipnet::IpNet,
    /// The address traced (after, else before).
    pub address: std::net::IpAddr,
    pub entry: String,
    /// `None`: not traced in that snapshot (the entry point or client prefix is not there).
    pub before: Option<BTreeMap<Verdict, f64>>,
    pub after: Option<BTreeMap<Verdict, f64>>,
}

/// The delivered share of a distribution.
pub fn delivered(v: &BTreeMap<Verdict, f64>) -> f64 {
    v.get(&Verdict::Delivered).copied().unwrap_or(0.0)
}

impl FlowChange {
    /// Traced in both, and less of it is delivered after than before.
    pub fn worse(&self) -> bool {
        match (&self.before, &self.after) {
            (Some(b), Some(a)) => delivered(a) < delivered(b) - EPS,
            _ => false,
        }
    }
}

/// Everything that differs between two checks.
#[derive(Debug, Clone, Default)]
pub struct Diff<'a> {
    pub findings: FindingsDiff<'a>,
    /// Flows whose distribution changed or that one side does not have, in the order of the
    /// second snapshot's flows, then those of the first only.
    pub flows: Vec<FlowChange>,
    /// Flows with the same distribution in both.
    pub flows_unchanged: usize,
}

impl FindingsDiff<'_> {
    /// The `i`th new finding is worse at `threshold`: a regression, at or above it.
    pub fn new_worse(&self, i: usize, threshold: Severity) -> bool {
        self.new
            .get(i)
            .is_some_and(|f| f.severity >= threshold && self.new_regresses.get(i) != Some(&false))
    }
}

impl Diff<'_> {
    /// Whether something got worse: a new finding at or above `threshold` that is a
    /// regression (see [`FindingsDiff::new_regresses`]), a finding that became more severe
    /// (and is at or above it), or a flow whose delivered share dropped.
    pub fn worse(&self, threshold: Severity) -> bool {
        (0..self.findings.new.len()).any(|i| self.findings.new_worse(i, threshold))
            || self.findings.changed.iter().any(|c| c.worse(threshold))
            || self.flows.iter().any(FlowChange::worse)
    }

    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.findings.gone.is_empty()
            && self.findings.new.is_empty()
            && self.findings.changed.is_empty()
            && self.flows.is_empty()
    }
}

/// Compares two checks (`before`, `after`) and two reach matrices (the flows of
/// [`crate::check::reach`], or any flows: they are matched by client, prefix, class and
/// entry point).
pub fn diff<'a>(
    before: &'a CheckReport,
    after: &'a CheckReport,
    reach_before: &[Flow],
    reach_after: &[Flow],
) -> Diff<'a> {
    let mut findings = diff_findings(&before.findings, &after.findings);
    findings.new_regresses = findings
        .new
        .iter()
        .map(|f| regresses(f, before, after))
        .collect();
    let (flows, flows_unchanged) = diff_flows(reach_before, reach_after);
    Diff {
        findings,
        flows,
        flows_unchanged,
    }
}

/// Findings about a client prefix's flows: the `flow-*` findings, and `fix-half-applied`,
/// which a fix applied on some nodes only brings.
fn about_flows(f: &Finding) -> bool {
    f.code.starts_with("flow-") || f.code == "fix-half-applied"
}

/// The client prefix a finding is about: its `client NAME PREFIX` entry of `affected`.
fn client_of(f: &Finding) -> Option<(&str, ipnet::IpNet)> {
    f.affected.iter().find_map(|a| {
        let rest = a.strip_prefix("client ")?;
        let (name, prefix) = rest.rsplit_once(' ')?;
        Some((name, prefix.parse().ok()?))
    })
}

/// Whether a finding new in `after` is a regression. A flow finding (see [`about_flows`]) is
/// one only when it holds a flow (client, prefix, entry point, address) that `before` did not
/// trace or whose delivered share dropped, or when it is more severe than every flow finding
/// of its client prefix in `before` (or there was none); otherwise it replaces them (a fix
/// applied on some nodes, or for some hosts, changes the nodes and classes a finding lists).
/// Every other new finding is a regression.
fn regresses<'a>(f: &Finding, before: &'a CheckReport, after: &'a CheckReport) -> bool {
    if !about_flows(f) {
        return true;
    }
    let Some((client, prefix)) = client_of(f) else {
        return true;
    };
    let replaced = before
        .findings
        .iter()
        .filter(|b| about_flows(b) && client_of(b) == Some((client, prefix)))
        .map(|b| b.severity)
        .max();
    match replaced {
        Some(s) if f.severity <= s => {}
        _ => return true,
    }
    // The flows it holds: those of its client prefix that fail, on its entry points when it
    // names them.
    let entries: Vec<&str> = f.affected.iter().map(|a| strip_share(a)).collect();
    let of_prefix = |r: &'a CheckReport| {
        r.flows
            .iter()
            .filter(move |a| a.client == client && a.prefix == prefix)
    };
    let failing: Vec<&Flow> = of_prefix(after)
        .filter(|a| delivered(&a.verdicts) < 1.0 - EPS)
        .collect();
    let named: Vec<&Flow> = failing
        .iter()
        .copied()
        .filter(|a| entries.contains(&a.entry.as_str()))
        .collect();
    let held = if named.is_empty() { failing } else { named };
    // The same flow on the other side: the most specific class of the prefix that holds the
    // address (classes split and merge as routes and rules come and go).
    let counterpart = |side: &'a CheckReport, x: &Flow| -> Option<&'a Flow> {
        of_prefix(side)
            .filter(|y| y.entry == x.entry && y.class.contains(&x.address))
            .max_by_key(|y| y.class.prefix_len())
    };
    let new_or_dropped = held.iter().any(|a| match counterpart(before, a) {
        None => true,
        Some(b) => delivered(&a.verdicts) < delivered(&b.verdicts) - EPS,
    });
    // A class of before merged into one that fails now (a host route removed).
    let merged_dropped = of_prefix(before).any(|b| {
        held.iter().any(|h| h.entry == b.entry)
            && counterpart(after, b)
                .is_some_and(|a| delivered(&a.verdicts) < delivered(&b.verdicts) - EPS)
    });
    new_or_dropped || merged_dropped
}

/// Findings matched first by [`finding_key`], then (among those left) by code and title; each
/// finding of one side is matched at most once, in order.
pub fn diff_findings<'a>(before: &'a [Finding], after: &'a [Finding]) -> FindingsDiff<'a> {
    let mut taken = vec![false; after.len()];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut left: Vec<usize> = Vec::new();
    let after_keys: Vec<String> = after
        .iter()
        .map(|f| finding_key(f.code, &f.affected))
        .collect();
    for (i, b) in before.iter().enumerate() {
        let key = finding_key(b.code, &b.affected);
        match (0..after.len()).find(|&j| !taken[j] && after_keys[j] == key) {
            Some(j) => {
                taken[j] = true;
                pairs.push((i, j));
            }
            None => left.push(i),
        }
    }
    let mut gone = Vec::new();
    for i in left {
        let b = &before[i];
        match (0..after.len())
            .find(|&j| !taken[j] && after[j].code == b.code && after[j].title == b.title)
        {
            Some(j) => {
                taken[j] = true;
                pairs.push((i, j));
            }
            None => gone.push(b),
        }
    }
    pairs.sort_unstable();
    let new: Vec<&Finding> = after
        .iter()
        .zip(&taken)
        .filter(|(_, t)| !**t)
        .map(|(f, _)| f)
        .collect();
    let mut out = FindingsDiff {
        gone,
        new_regresses: vec![true; new.len()],
        new,
        ..FindingsDiff::default()
    };
    for (i, j) in pairs {
        let (b, a) = (&before[i], &after[j]);
        if b.severity == a.severity && b.title == a.title && b.affected == a.affected {
            out.unchanged.push(a);
        } else {
            out.changed.push(Changed {
                before: b,
                after: a,
            });
        }
    }
    out
}

fn same(a: &BTreeMap<Verdict, f64>, b: &BTreeMap<Verdict, f64>) -> bool {
    a.keys()
        .chain(b.keys())
        .all(|v| (a.get(v).unwrap_or(&0.0) - b.get(v).unwrap_or(&0.0)).abs() <= EPS)
}

type FlowKey<'a> = (&'a str, ipnet::IpNet, ipnet::IpNet, &'a str);

fn flow_key(f: &Flow) -> FlowKey<'_> {
    (&f.client, f.prefix, f.class, &f.entry)
}

/// Flows matched by (client, prefix, class, entry point).
pub fn diff_flows(before: &[Flow], after: &[Flow]) -> (Vec<FlowChange>, usize) {
    let by_key: BTreeMap<FlowKey<'_>, &Flow> = before.iter().map(|f| (flow_key(f), f)).collect();
    let mut seen: std::collections::BTreeSet<FlowKey<'_>> = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut unchanged = 0;
    for a in after {
        let key = flow_key(a);
        if !seen.insert(key) {
            continue;
        }
        let b = by_key.get(&key);
        if let Some(b) = b {
            if same(&b.verdicts, &a.verdicts) {
                unchanged += 1;
                continue;
            }
        }
        out.push(FlowChange {
            client: a.client.clone(),
            prefix: a.prefix,
            class: a.class,
            address: a.address,
            entry: a.entry.clone(),
            before: b.map(|b| b.verdicts.clone()),
            after: Some(a.verdicts.clone()),
        });
    }
    for b in before {
        let key = flow_key(b);
        if seen.insert(key) {
            out.push(FlowChange {
                client: b.client.clone(),
                prefix: b.prefix,
                class: b.class,
                address: b.address,
                entry: b.entry.clone(),
                before: Some(b.verdicts.clone()),
                after: None,
            });
        }
    }
    (out, unchanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(code: &'static str, severity: Severity, title: &str, affected: &[&str]) -> Finding {
        Finding {
            code,
            severity,
            title: title.to_string(),
            explanation: String::new(),
            evidence: Vec::new(),
            affected: affected.iter().map(|s| s.to_string()).collect(),
            fixes: Vec::new(),
            share: 1.0,
        }
    }

    fn flow(entry: &str, verdicts: &[(Verdict, f64)]) -> Flow {
        let p: ipnet::IpNet = "10.0.0.0/24".parse().unwrap();
        Flow {
            client: "users".into(),
            prefix: p,
            class: p,
            address: p.addr(),
            entry: entry.into(),
            verdicts: verdicts.iter().copied().collect(),
        }
    }

    fn class_flow(class: &str, address: &str, entry: &str, verdicts: &[(Verdict, f64)]) -> Flow {
        Flow {
            client: "users".into(),
            prefix: "10.0.0.0/24".parse().unwrap(),
            class: class.parse().unwrap(),
            address: address.parse().unwrap(),
            entry: entry.into(),
            verdicts: verdicts.iter().copied().collect(),
        }
    }

    /// A fix applied on some nodes, or for some hosts of the prefix, replaces the flow finding
    /// of the client prefix with another (other nodes, other classes): not worse, as long as
    /// no flow of it is new or delivers less and it is no more severe.
    #[test]
    fn partial_fixes_are_not_worse() {
        use Verdict::{AsymmetricReturn as Asym, Delivered};
        let report = |findings: Vec<Finding>, flows: Vec<Flow>| CheckReport {
            findings,
            flows,
            notes: Vec::new(),
        };
        let asym = |affected: &[&str]| {
            finding(
                "flow-asymmetric-return",
                Severity::Critical,
                &format!("asymmetric return on {}", affected.len()),
                affected,
            )
        };
        let before = report(
            vec![asym(&[
                "client users 10.0.0.0/24",
                "e1 (100% asymmetric-return)",
                "node a",
                "node b",
            ])],
            vec![class_flow("10.0.0.0/24", "10.0.0.1", "e1", &[(Asym, 1.0)])],
        );
        // The fix on node a only: half of it is delivered, and the fix is half applied.
        let some = report(
            vec![
                asym(&[
                    "client users 10.0.0.0/24",
                    "e1 (50% asymmetric-return)",
                    "node b",
                ]),
                finding(
                    "fix-half-applied",
                    Severity::Error,
                    "rule on 1 of 2 nodes",
                    &["node b", "client users 10.0.0.0/24", "ip rule add ..."],
                ),
            ],
            vec![class_flow(
                "10.0.0.0/24",
                "10.0.0.1",
                "e1",
                &[(Asym, 0.5), (Delivered, 0.5)],
            )],
        );
        let d = diff(&before, &some, &[], &[]);
        assert_eq!(d.findings.new.len(), 2);
        assert_eq!(d.findings.new_regresses, [false, false]);
        assert!(!d.worse(Severity::Info));
        // Undone: worse.
        let d = diff(&some, &before, &[], &[]);
        assert!(d.worse(Severity::Warning));
        // A host route for .87: the prefix splits, .87 is delivered, the rest fails as before.
        let host = report(
            vec![finding(
                "flow-partial-prefix",
                Severity::Critical,
                "asymmetric return except 10.0.0.87/32",
                &[
                    "client users 10.0.0.0/24",
                    "e1 (100% asymmetric-return)",
                    "addresses 10.0.0.0/24 (traced from 10.0.0.1)",
                    "node a",
                    "node b",
                ],
            )],
            vec![
                class_flow("10.0.0.0/24", "10.0.0.1", "e1", &[(Asym, 1.0)]),
                class_flow("10.0.0.87/32", "10.0.0.87", "e1", &[(Delivered, 1.0)]),
            ],
        );
        let d = diff(&before, &host, &[], &[]);
        assert_eq!(d.findings.new_regresses, [false]);
        assert!(!d.worse(Severity::Info));
        // The host route removed: .87 delivers less, merged back into a failing class.
        let d = diff(&host, &before, &[], &[]);
        assert!(d.worse(Severity::Warning));
        // Another prefix failing: its flows are new.
        let mut other = some.clone();
        other.findings.push(asym(&[
            "client users 10.0.1.0/24",
            "e1 (100% asymmetric-return)",
            "node a",
        ]));
        let mut f = class_flow("10.0.1.0/24", "10.0.1.1", "e1", &[(Asym, 1.0)]);
        f.prefix = f.class;
        other.flows.push(f);
        let d = diff(&before, &other, &[], &[]);
        assert_eq!(d.findings.new_regresses, [false, false, true]);
        assert!(d.worse(Severity::Warning));
        // More severe than what it replaces: worse, though no flow delivers less.
        let mut milder = before.clone();
        milder.findings[0].severity = Severity::Warning;
        let d = diff(&milder, &some, &[], &[]);
        assert!(d.worse(Severity::Warning));
    }

    #[test]
    fn key_leaves_out_the_share() {
        assert_eq!(
            strip_share("svc 10.0.0.1:80/tcp (100% asymmetric-return)"),
            "svc 10.0.0.1:80/tcp"
        );
        assert_eq!(
            strip_share("http://h/ (Ingress a/b) (33.3% no-route)"),
            "http://h/ (Ingress a/b)"
        );
        assert_eq!(
            strip_share("http://h/ (Ingress a/b)"),
            "http://h/ (Ingress a/b)"
        );
        assert_eq!(strip_share("node n1"), "node n1");
        assert_eq!(
            finding_key("c", &["e (50% x)".into(), "node a".into()]),
            finding_key("c", &["e (100% x)".into(), "node a".into()])
        );
        assert_ne!(
            finding_key("c", &["a".into()]),
            finding_key("d", &["a".into()])
        );
        assert_ne!(
            finding_key("c", &["a b".into()]),
            finding_key("c", &["a".into(), "b".into()])
        );
    }

    #[test]
    fn gone_new_changed_unchanged() {
        let before = vec![
            finding(
                "flow-no-route",
                Severity::Critical,
                "t1",
                &["e (100% no-route)", "node a"],
            ),
            finding(
                "ingress-path-conflict",
                Severity::Warning,
                "t2",
                &["Ingress x"],
            ),
            finding(
                "duplicate-ip",
                Severity::Error,
                "dup 10.0.0.1",
                &["pod a", "pod b"],
            ),
            finding("lb-ip-not-announced", Severity::Error, "t4", &["svc"]),
        ];
        let after = vec![
            // The same finding, half of it fails now: changed (affected differs), not worse.
            finding(
                "flow-no-route",
                Severity::Critical,
                "t1",
                &["e (50% no-route)", "node a"],
            ),
            // Matched by code and title although what it affects changed; more severe.
            finding(
                "duplicate-ip",
                Severity::Critical,
                "dup 10.0.0.1",
                &["pod a", "pod c"],
            ),
            finding("lb-ip-not-announced", Severity::Error, "t4", &["svc"]),
            finding("selector-matches-no-pod", Severity::Warning, "t5", &["svc"]),
        ];
        let d = diff_findings(&before, &after);
        assert_eq!(d.gone.len(), 1);
        assert_eq!(d.gone[0].code, "ingress-path-conflict");
        assert_eq!(d.new.len(), 1);
        assert_eq!(d.new[0].code, "selector-matches-no-pod");
        assert_eq!(d.unchanged.len(), 1);
        assert_eq!(d.changed.len(), 2);
        assert_eq!(d.changed[0].after.code, "flow-no-route");
        assert!(!d.changed[0].worse(Severity::Warning));
        assert_eq!(d.changed[1].after.code, "duplicate-ip");
        assert!(d.changed[1].worse(Severity::Warning));
        // Each finding is matched once: two identical findings against one.
        let two = vec![before[3].clone(), before[3].clone()];
        let d = diff_findings(&two, &after[2..3]);
        assert_eq!((d.gone.len(), d.unchanged.len(), d.new.len()), (1, 1, 0));
    }

    #[test]
    fn flows_and_worse() {
        let b = vec![
            flow("e1", &[(Verdict::AsymmetricReturn, 1.0)]),
            flow("e2", &[(Verdict::Delivered, 1.0)]),
            flow("e3", &[(Verdict::Delivered, 1.0)]),
        ];
        let a = vec![
            flow("e1", &[(Verdict::Delivered, 1.0)]),
            flow("e2", &[(Verdict::Delivered, 1.0)]),
            flow("e4", &[(Verdict::NoRoute, 1.0)]),
        ];
        let (ch, same) = diff_flows(&b, &a);
        assert_eq!(same, 1);
        assert_eq!(ch.len(), 3);
        assert_eq!(ch[0].entry, "e1");
        assert!(!ch[0].worse());
        assert_eq!((ch[1].entry.as_str(), ch[1].before.is_none()), ("e4", true));
        assert_eq!((ch[2].entry.as_str(), ch[2].after.is_none()), ("e3", true));
        assert!(
            ch.iter().all(|c| !c.worse()),
            "a flow only one side has is not worse"
        );
        let (ch, _) = diff_flows(&a, &b);
        assert!(ch[0].worse(), "delivered 100% -> 0%");

        let report = |flows: Vec<Flow>, findings: Vec<Finding>| CheckReport {
            findings,
            flows,
            notes: Vec::new(),
        };
        let r1 = report(Vec::new(), vec![finding("c", Severity::Info, "t", &[])]);
        let r2 = report(Vec::new(), vec![finding("d", Severity::Info, "u", &[])]);
        let d = diff(&r1, &r2, &b, &b);
        assert!(!d.is_empty());
        assert!(
            !d.worse(Severity::Warning),
            "a new info finding is below the threshold"
        );
        assert!(d.worse(Severity::Info));
        let d = diff(&r1, &r1, &b, &b);
        assert!(d.is_empty() && !d.worse(Severity::Info));
        assert_eq!(d.flows_unchanged, 3);
        let d = diff(&r1, &r1, &a, &b);
        assert!(
            d.worse(Severity::Critical),
            "e1 delivered 100% -> asymmetric-return"
        );
    }
}
