//! `kubepath check` output, schema `kubepath.check/v1` (docs/check-json.md), and its text
//! rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kubepath_sim::check::{CheckReport, Finding, Flow, Severity};
use kubepath_sim::trace::Verdict;
use serde::Serialize;

pub const SCHEMA: &str = "kubepath.check/v1";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FixDto {
    pub description: String,
    pub commands: Vec<String>,
    pub nodes: Vec<String>,
    /// `verified`, `not-sufficient`, `not-verifiable` or `advice`.
    pub status: String,
    /// What the re-simulation showed; empty for `advice` (always present: a stable schema).
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
    /// The address class of `prefix` that `address` represents (the prefix itself for the
    /// rest of it).
    pub class: String,
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

/// The DTO of one finding (whatever its severity).
pub fn finding_to_dto(f: &Finding) -> FindingDto {
    FindingDto {
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
    }
}

/// A verdict distribution as the schemas have it: verdict name -> probability (rounded to
/// 10^-6), only verdicts with a share.
pub fn verdicts_to_dto(v: &BTreeMap<Verdict, f64>) -> BTreeMap<String, f64> {
    v.iter()
        .filter(|(_, p)| **p > 1e-12)
        .map(|(v, p)| (v.name().to_string(), (*p * 1e6).round() / 1e6))
        .collect()
}

/// The DTO of one flow traced.
pub fn flow_to_dto(f: &Flow) -> FlowDto {
    FlowDto {
        client: f.client.clone(),
        prefix: f.prefix.to_string(),
        class: f.class.to_string(),
        address: f.address.to_string(),
        entry: f.entry.clone(),
        verdicts: verdicts_to_dto(&f.verdicts),
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
        findings.push(finding_to_dto(f));
    }
    let flows = r.flows.iter().map(flow_to_dto).collect();
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
    crate::escape_controls(&render_text_raw(&crate::escaped(j))).into_owned()
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

pub const REACH_SCHEMA: &str = "kubepath.reach/v1";

/// `kubepath reach` output: the verdict matrix of client prefixes x entry points.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReachJson {
    pub schema: &'static str,
    pub snapshot: String,
    /// Columns: `name prefix (address traced)`.
    pub clients: Vec<String>,
    /// Rows.
    pub entries: Vec<String>,
    /// One per (client, entry) traced, client-major.
    pub flows: Vec<FlowDto>,
    pub snapshot_errors: Vec<String>,
}

impl ReachJson {
    /// Whether any flow has a share that is not delivered.
    pub fn failing(&self) -> bool {
        // Nothing traced is no proof that everything is delivered.
        self.flows.is_empty()
            || self.flows.iter().any(|f| {
                f.verdicts
                    .iter()
                    .any(|(v, p)| v != "delivered" && *p > 1e-9)
            })
    }
}

fn client_label(f: &kubepath_sim::check::Flow) -> String {
    client_label_of(&f.client, &f.prefix.to_string(), &f.address.to_string())
}

/// The DTO of `kubepath reach`: `prefixes` are the client prefixes asked for (name, prefix),
/// each a client whether or not a flow was traced from it (no entry point of its family).
pub fn reach_to_json(
    snapshot: &str,
    prefixes: &[(String, kubepath_model::ipnet::IpNet)],
    entries: &[kubepath_sim::check::Exposed],
    flows: &[kubepath_sim::check::Flow],
) -> ReachJson {
    let mut clients: Vec<String> = Vec::new();
    for (name, prefix) in prefixes {
        let l = match flows
            .iter()
            .find(|f| f.client == *name && f.prefix == *prefix)
        {
            Some(f) => client_label(f),
            // Nothing traced from it: no address to name.
            None if *name == prefix.to_string() => prefix.to_string(),
            None => format!("{name} {prefix}"),
        };
        if !clients.contains(&l) {
            clients.push(l);
        }
    }
    for f in flows {
        let l = client_label(f);
        if !clients.contains(&l) {
            clients.push(l);
        }
    }
    ReachJson {
        schema: REACH_SCHEMA,
        snapshot: snapshot.to_string(),
        clients,
        entries: entries.iter().map(|e| e.label.clone()).collect(),
        flows: flows.iter().map(flow_to_dto).collect(),
        snapshot_errors: Vec::new(),
    }
}

fn cell(f: Option<&FlowDto>) -> String {
    match f {
        Some(f) if !f.verdicts.is_empty() => distribution_text(&f.verdicts),
        _ => "-".into(),
    }
}

/// `asymmetric-return 66.7%, delivered 33.3%`: a distribution, the largest share first.
pub fn distribution_text(verdicts: &BTreeMap<String, f64>) -> String {
    let mut v: Vec<(&String, &f64)> = verdicts.iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v.iter()
        .map(|(n, p)| {
            let pct = **p * 100.0;
            if (pct - pct.round()).abs() < 0.05 {
                format!("{n} {pct:.0}%")
            } else {
                format!("{n} {pct:.1}%")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The matrix as text: one row per entry point, one column per client prefix.
pub fn render_reach_text(j: &ReachJson) -> String {
    crate::escape_controls(&render_reach_raw(&crate::escaped(j))).into_owned()
}

fn render_reach_raw(j: &ReachJson) -> String {
    let mut o = String::new();
    if j.clients.is_empty() || j.entries.is_empty() {
        let _ = writeln!(
            o,
            "{}: nothing to trace ({} client prefix{}, {} exposed entry point{}); {}",
            j.snapshot,
            j.clients.len(),
            if j.clients.len() == 1 { "" } else { "es" },
            j.entries.len(),
            if j.entries.len() == 1 { "" } else { "s" },
            if j.clients.is_empty() {
                "give prefixes with --from or in kubepath.yaml `clients:`"
            } else {
                "the snapshot exposes no LoadBalancer IP or Ingress host (that DNS resolves) to trace to"
            }
        );
        return o;
    }
    let header = "entry point";
    let w0 = j
        .entries
        .iter()
        .map(|e| e.chars().count())
        .chain([header.len()])
        .max()
        .unwrap_or(0);
    // cells[entry][client]
    let cells: Vec<Vec<String>> = j
        .entries
        .iter()
        .map(|e| {
            j.clients
                .iter()
                .map(|c| {
                    cell(
                        j.flows
                            .iter()
                            .find(|f| &f.entry == e && client_label_dto(f) == *c),
                    )
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = j
        .clients
        .iter()
        .enumerate()
        .map(|(k, c)| {
            cells
                .iter()
                .map(|row| row[k].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = format!("{header:<w0$}");
    for (c, w) in j.clients.iter().zip(&widths) {
        line.push_str(&format!("  {c:<w$}"));
    }
    let _ = writeln!(o, "{}", line.trim_end());
    for (e, row) in j.entries.iter().zip(&cells) {
        let mut line = format!("{e:<w0$}");
        for (c, w) in row.iter().zip(&widths) {
            line.push_str(&format!("  {c:<w$}"));
        }
        let _ = writeln!(o, "{}", line.trim_end());
    }
    if !j.snapshot_errors.is_empty() {
        let _ = writeln!(o, "\nSnapshot errors (what depends on them is unknown):");
        for e in &j.snapshot_errors {
            let _ = writeln!(o, "  {e}");
        }
    }
    o
}

/// The reach matrix's column label of a flow: `name prefix (address)`.
pub fn client_label_dto(f: &FlowDto) -> String {
    client_label_of(&f.client, &f.prefix, &f.address)
}

/// `name prefix (address)`, or `prefix (address)` when the client has no name of its own.
pub fn client_label_of(client: &str, prefix: &str, address: &str) -> String {
    if client == prefix {
        format!("{prefix} ({address})")
    } else {
        format!("{client} {prefix} ({address})")
    }
}

// Single-line strings for the text renderers (`crate::EscapeData`).
crate::escape_fields!(FixDto {
    description,
    commands,
    nodes,
    status,
    verification
});
crate::escape_fields!(FindingDto {
    code,
    severity,
    title,
    explanation,
    evidence,
    affected,
    fixes
});
crate::escape_fields!(FlowDto {
    client,
    prefix,
    class,
    address,
    entry,
    verdicts
});
crate::escape_fields!(Summary {
    critical,
    error,
    warning,
    info
});
crate::escape_fields!(CheckJson {
    schema,
    snapshot,
    severity_threshold,
    summary,
    findings,
    flows,
    notes,
    snapshot_errors
});
crate::escape_fields!(ReachJson {
    schema,
    snapshot,
    clients,
    entries,
    flows,
    snapshot_errors
});
