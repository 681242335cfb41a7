//! `kubepath diff` output, schema `kubepath.diff/v1` (docs/diff-json.md), and its text
//! rendering. The comparison itself is [`kubepath_sim::diff`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kubepath_sim::check::{Finding, Severity};
use kubepath_sim::diff::{delivered, finding_key, Diff, FlowChange};
use serde::Serialize;

use crate::check::{
    client_label_of, distribution_text, finding_to_dto, verdicts_to_dto, FindingDto,
};

pub const SCHEMA: &str = "kubepath.diff/v1";

/// A finding of one side only.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingEntry {
    /// The stable key it was matched by (code and what it affects, shares left out).
    pub key: String,
    /// A new finding at or above the threshold that is a regression (a flow finding that
    /// only replaces those of its client prefix, its flows none the worse, is not).
    pub worse: bool,
    #[serde(flatten)]
    pub finding: FindingDto,
}

/// What tells a finding apart on each side.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingSide {
    pub severity: String,
    pub title: String,
    pub affected: Vec<String>,
}

/// The same finding on both sides, with another severity, title or list of what it affects.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChangedEntry {
    pub key: String,
    pub code: String,
    /// More severe than before, and at or above the threshold.
    pub worse: bool,
    pub before: FindingSide,
    pub after: FindingSide,
    /// In `after.affected` and not in `before.affected`.
    pub affected_added: Vec<String>,
    /// In `before.affected` and not in `after.affected`.
    pub affected_removed: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct FindingsDiffJson {
    pub gone: Vec<FindingEntry>,
    pub new: Vec<FindingEntry>,
    pub changed: Vec<ChangedEntry>,
}

/// A (client prefix, entry point) whose verdict distribution changed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowChangeJson {
    pub client: String,
    pub prefix: String,
    pub class: String,
    pub address: String,
    pub entry: String,
    /// verdict -> probability; `null` when the flow is not traced on that side.
    pub before: Option<BTreeMap<String, f64>>,
    pub after: Option<BTreeMap<String, f64>>,
    pub delivered_before: Option<f64>,
    pub delivered_after: Option<f64>,
    /// Less of it is delivered after than before.
    pub worse: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct DiffSummary {
    pub gone: usize,
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub flows_changed: usize,
    pub flows_unchanged: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct SnapshotErrors {
    pub before: Vec<String>,
    pub after: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DiffJson {
    pub schema: &'static str,
    pub before: String,
    pub after: String,
    /// Findings below it (on both sides) are left out, and a new one below it is not worse.
    pub severity_threshold: String,
    /// Something got worse: the exit code is 1.
    pub worse: bool,
    pub summary: DiffSummary,
    pub findings: FindingsDiffJson,
    /// Flows of the reach matrices whose distribution changed (or that one side lacks).
    pub flows: Vec<FlowChangeJson>,
    pub snapshot_errors: SnapshotErrors,
}

impl DiffJson {
    /// Whether something got worse (exit code 1).
    pub fn failing(&self) -> bool {
        self.worse
    }

    /// Nothing changed (at or above the threshold, and in the flows).
    pub fn no_change(&self) -> bool {
        self.findings.gone.is_empty()
            && self.findings.new.is_empty()
            && self.findings.changed.is_empty()
            && self.flows.is_empty()
    }
}

fn entry(f: &Finding, worse: bool) -> FindingEntry {
    FindingEntry {
        key: finding_key(f.code, &f.affected),
        worse,
        finding: finding_to_dto(f),
    }
}

fn side(f: &Finding) -> FindingSide {
    FindingSide {
        severity: f.severity.name().to_string(),
        title: f.title.clone(),
        affected: f.affected.clone(),
    }
}

fn flow_change(c: &FlowChange) -> FlowChangeJson {
    FlowChangeJson {
        client: c.client.clone(),
        prefix: c.prefix.to_string(),
        class: c.class.to_string(),
        address: c.address.to_string(),
        entry: c.entry.clone(),
        before: c.before.as_ref().map(verdicts_to_dto),
        after: c.after.as_ref().map(verdicts_to_dto),
        delivered_before: c.before.as_ref().map(|v| round(delivered(v))),
        delivered_after: c.after.as_ref().map(|v| round(delivered(v))),
        worse: c.worse(),
    }
}

fn round(p: f64) -> f64 {
    (p * 1e6).round() / 1e6
}

/// The DTO of a diff: findings whose severity is below `threshold` on both sides are left
/// out.
pub fn to_json(before: &str, after: &str, d: &Diff<'_>, threshold: Severity) -> DiffJson {
    let shown = |f: &Finding| f.severity >= threshold;
    let f = &d.findings;
    let gone: Vec<FindingEntry> = f
        .gone
        .iter()
        .filter(|x| shown(x))
        .map(|x| entry(x, false))
        .collect();
    let new: Vec<FindingEntry> = f
        .new
        .iter()
        .enumerate()
        .filter(|(_, x)| shown(x))
        .map(|(i, x)| entry(x, f.new_worse(i, threshold)))
        .collect();
    let changed: Vec<ChangedEntry> = f
        .changed
        .iter()
        .filter(|c| shown(c.before) || shown(c.after))
        .map(|c| ChangedEntry {
            key: finding_key(c.after.code, &c.after.affected),
            code: c.after.code.to_string(),
            worse: c.worse(threshold),
            before: side(c.before),
            after: side(c.after),
            affected_added: c
                .after
                .affected
                .iter()
                .filter(|a| !c.before.affected.contains(a))
                .cloned()
                .collect(),
            affected_removed: c
                .before
                .affected
                .iter()
                .filter(|a| !c.after.affected.contains(a))
                .cloned()
                .collect(),
        })
        .collect();
    let flows: Vec<FlowChangeJson> = d.flows.iter().map(flow_change).collect();
    DiffJson {
        schema: SCHEMA,
        before: before.to_string(),
        after: after.to_string(),
        severity_threshold: threshold.name().to_string(),
        worse: d.worse(threshold),
        summary: DiffSummary {
            gone: gone.len(),
            new: new.len(),
            changed: changed.len(),
            unchanged: f.unchanged.iter().filter(|x| shown(x)).count(),
            flows_changed: flows.len(),
            flows_unchanged: d.flows_unchanged,
        },
        findings: FindingsDiffJson { gone, new, changed },
        flows,
        snapshot_errors: SnapshotErrors::default(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn dist(v: &Option<BTreeMap<String, f64>>) -> String {
    match v {
        None => "not traced".into(),
        Some(v) if v.is_empty() => "-".into(),
        Some(v) => distribution_text(v),
    }
}

/// Human-readable rendering (control characters of the data made visible).
pub fn render_text(j: &DiffJson) -> String {
    crate::escape_controls(&render_text_raw(&crate::escaped(j))).into_owned()
}

fn render_text_raw(j: &DiffJson) -> String {
    let mut o = String::new();
    let s = &j.summary;
    if j.no_change() {
        let _ = writeln!(
            o,
            "{} -> {}: no change ({} at or above {} and {} the same)",
            j.before,
            j.after,
            plural(s.unchanged, "finding", "findings"),
            j.severity_threshold,
            plural(s.flows_unchanged, "flow", "flows"),
        );
    } else {
        let _ = writeln!(
            o,
            "{} -> {}: {} gone, {} new, {} changed ({} the same); {} changed; {}",
            j.before,
            j.after,
            plural(s.gone, "finding", "findings"),
            s.new,
            s.changed,
            s.unchanged,
            plural(s.flows_changed, "flow", "flows"),
            if j.worse {
                format!("worse (at or above {})", j.severity_threshold)
            } else {
                "nothing got worse".to_string()
            },
        );
    }
    let mark = |w: bool| if w { " [worse]" } else { "" };
    if !j.findings.gone.is_empty() {
        let _ = writeln!(o, "\nGone:");
        for e in &j.findings.gone {
            let f = &e.finding;
            let _ = writeln!(
                o,
                "  - {} {}: {}",
                f.severity.to_ascii_uppercase(),
                f.code,
                f.title
            );
        }
    }
    if !j.findings.new.is_empty() {
        let _ = writeln!(o, "\nNew:");
        for e in &j.findings.new {
            let f = &e.finding;
            let _ = writeln!(
                o,
                "  +{} {} {}: {}",
                mark(e.worse),
                f.severity.to_ascii_uppercase(),
                f.code,
                f.title
            );
        }
    }
    if !j.findings.changed.is_empty() {
        let _ = writeln!(o, "\nChanged:");
        for c in &j.findings.changed {
            if c.before.severity == c.after.severity {
                let _ = writeln!(
                    o,
                    "  ~{} {} {}",
                    mark(c.worse),
                    c.after.severity.to_ascii_uppercase(),
                    c.code
                );
            } else {
                let _ = writeln!(
                    o,
                    "  ~{} {} -> {} {}",
                    mark(c.worse),
                    c.before.severity.to_ascii_uppercase(),
                    c.after.severity.to_ascii_uppercase(),
                    c.code
                );
            }
            if c.before.title == c.after.title {
                let _ = writeln!(o, "      {}", c.after.title);
            } else {
                let _ = writeln!(o, "      before: {}", c.before.title);
                let _ = writeln!(o, "      after:  {}", c.after.title);
            }
            if !c.affected_removed.is_empty() {
                let _ = writeln!(o, "      no longer: {}", c.affected_removed.join(", "));
            }
            if !c.affected_added.is_empty() {
                let _ = writeln!(o, "      now also: {}", c.affected_added.join(", "));
            }
        }
    }
    if !j.flows.is_empty() {
        let _ = writeln!(
            o,
            "\nReachability (client prefix, entry point: before -> after):"
        );
        for f in &j.flows {
            let _ = writeln!(
                o,
                "  {}, {}: {} -> {}{}",
                client_label_of(&f.client, &f.prefix, &f.address),
                f.entry,
                dist(&f.before),
                dist(&f.after),
                mark(f.worse)
            );
        }
    }
    for (side, errs) in [
        ("before", &j.snapshot_errors.before),
        ("after", &j.snapshot_errors.after),
    ] {
        if !errs.is_empty() {
            let _ = writeln!(
                o,
                "\nSnapshot errors ({side}; what depends on them is unknown):"
            );
            for e in errs {
                let _ = writeln!(o, "  {e}");
            }
        }
    }
    o
}

// Single-line strings for the text renderers (`crate::EscapeData`).
crate::escape_fields!(FindingEntry {
    key,
    worse,
    finding
});
crate::escape_fields!(FindingSide {
    severity,
    title,
    affected
});
crate::escape_fields!(ChangedEntry {
    key,
    code,
    worse,
    before,
    after,
    affected_added,
    affected_removed
});
crate::escape_fields!(FindingsDiffJson { gone, new, changed });
crate::escape_fields!(FlowChangeJson {
    client,
    prefix,
    class,
    address,
    entry,
    before,
    after,
    delivered_before,
    delivered_after,
    worse
});
crate::escape_fields!(DiffSummary {
    gone,
    new,
    changed,
    unchanged,
    flows_changed,
    flows_unchanged
});
crate::escape_fields!(SnapshotErrors { before, after });
crate::escape_fields!(DiffJson {
    schema,
    before,
    after,
    severity_threshold,
    worse,
    summary,
    findings,
    flows,
    snapshot_errors
});
