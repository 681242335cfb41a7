//! `kubepath check` output, schema `kubepath.check/v1` (docs/check-json.md), and its text
//! rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kubepath_sim::check::{CheckReport, Severity};
use serde::Serialize;

pub const SCHEMA: &str = "kubepath.check/v1";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FixDto {
    pub description: String,
    pub commands: Vec<String>,
    pub nodes: Vec<String>,
    /// `verified`, `not-sufficient`, `not-verifiable` or `advice`.
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub verification: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingDto {
    pub code: String,
    /// `critical`, `error`, `warning` or `info`.
    pub severity: String,
    pub title: String,
    pub explanation: String,
    pub evidence: Vec<String>,
    pub affected: Vec<String>,
    pub fixes: Vec<FixDto>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FlowDto {
    pub client: String,
    pub prefix: String,
    pub address: String,
    pub entry: String,
    /// verdict name -> probability (only verdicts with a share).
    pub verdicts: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Summary {
    pub critical: usize,
    pub error: usize,
    pub warning: usize,
    pub info: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckJson {
    pub schema: &'static str,
    pub snapshot: String,
    /// Findings below this severity are left out (and do not change the exit code).
    pub severity_threshold: String,
    /// Counts of the findings reported (at or above the threshold).
    pub summary: Summary,
    /// Most severe first.
    pub findings: Vec<FindingDto>,
    pub flows: Vec<FlowDto>,
    pub notes: Vec<String>,
    /// Lines or files of the snapshot that could not be read (what depends on them is unknown).
    pub snapshot_errors: Vec<String>,
}

impl CheckJson {
    /// Whether a finding at or above the threshold was reported.
    pub fn failing(&self) -> bool {
        !self.findings.is_empty()
    }
}

/// The DTO of a check report, keeping the findings at or above `threshold`.
pub fn to_json(snapshot: &str, r: &CheckReport, threshold: Severity) -> CheckJson {
    let mut summary = Summary::default();
    let mut findings = Vec::new();
    for f in &r.findings {
        if f.severity < threshold {
            continue;
        }
        match f.severity {
            Severity::Critical => summary.critical += 1,
            Severity::Error => summary.error += 1,
            Severity::Warning => summary.warning += 1,
            Severity::Info => summary.info += 1,
        }
        findings.push(FindingDto {
            code: f.code.to_string(),
            severity: f.severity.name().to_string(),
            title: f.title.clone(),
            explanation: f.explanation.clone(),
            evidence: f.evidence.clone(),
            affected: f.affected.clone(),
            fixes: f
                .fixes
                .iter()
                .map(|x| FixDto {
                    description: x.description.clone(),
                    commands: x.commands.clone(),
                    nodes: x.nodes.clone(),
                    status: x.status.to_string(),
                    verification: x.verification.clone(),
                })
                .collect(),
        });
    }
    let flows = r
        .flows
        .iter()
        .map(|f| FlowDto {
            client: f.client.clone(),
            prefix: f.prefix.to_string(),
            address: f.address.to_string(),
            entry: f.entry.clone(),
            verdicts: f
                .verdicts
                .iter()
                .filter(|(_, p)| **p > 1e-12)
                .map(|(v, p)| (v.name().to_string(), (*p * 1e6).round() / 1e6))
                .collect(),
        })
        .collect();
    CheckJson {
        schema: SCHEMA,
        snapshot: snapshot.to_string(),
        severity_threshold: threshold.name().to_string(),
        summary,
        findings,
        flows,
        notes: r.notes.clone(),
        snapshot_errors: Vec::new(),
    }
}

fn nodes_short(nodes: &[String]) -> String {
    match nodes.len() {
        0 => String::new(),
        1 => format!(" (on {})", nodes[0]),
        n => format!(" (on {n} nodes)"),
    }
}

/// Human-readable rendering (control characters of the data made visible).
pub fn render_text(j: &CheckJson) -> String {
    crate::escape_controls(&render_text_raw(j)).into_owned()
}

fn render_text_raw(j: &CheckJson) -> String {
    let mut o = String::new();
    let s = &j.summary;
    let total = j.findings.len();
    let flows = j.flows.len();
    let _ = writeln!(
        o,
        "{}: {total} finding{} at or above {} ({} critical, {} error, {} warning, {} info); {flows} flow{} traced",
        j.snapshot,
        if total == 1 { "" } else { "s" },
        j.severity_threshold,
        s.critical,
        s.error,
        s.warning,
        s.info,
        if flows == 1 { "" } else { "s" },
    );
    for (i, f) in j.findings.iter().enumerate() {
        let _ = writeln!(
            o,
            "\n{}. {} {}: {}",
            i + 1,
            f.severity.to_ascii_uppercase(),
            f.code,
            f.title
        );
        let _ = writeln!(o, "   {}", f.explanation);
        if !f.affected.is_empty() {
            let _ = writeln!(o, "   affects: {}", f.affected.join(", "));
        }
        if !f.evidence.is_empty() {
            let _ = writeln!(o, "   evidence: {}", f.evidence.join(", "));
        }
        for (k, x) in f.fixes.iter().enumerate() {
            if x.commands.is_empty() {
                let _ = writeln!(o, "   fix {}: [{}] {}", k + 1, x.status, x.description);
            } else {
                let _ = writeln!(
                    o,
                    "   fix {}: [{}] {}{}",
                    k + 1,
                    x.status,
                    x.commands.join(" && "),
                    nodes_short(&x.nodes)
                );
                let _ = writeln!(o, "      {}", x.description);
            }
            if !x.verification.is_empty() {
                let _ = writeln!(o, "      re-simulated: {}", x.verification);
            }
        }
    }
    if !j.notes.is_empty() {
        let _ = writeln!(o, "\nNotes:");
        for n in &j.notes {
            let _ = writeln!(o, "  {n}");
        }
    }
    if !j.snapshot_errors.is_empty() {
        let _ = writeln!(o, "\nSnapshot errors (what depends on them is unknown):");
        for e in &j.snapshot_errors {
            let _ = writeln!(o, "  {e}");
        }
    }
    o
}
