//! `kubepath check`: every check of a snapshot, as findings with a stable code, a severity, a
//! title, an explanation, the evidence (file:line) and a fix.
//!
//! Five families, each computed in one place:
//! - [`flows`]: the end-to-end trace ([`crate::trace::trace`]) for every client prefix of the
//!   manifest x every exposed entry point (LoadBalancer IP and port, Ingress host); a failing
//!   verdict (asymmetric return, a router without a route back, a reverse-path filter drop,
//!   ...) becomes a finding carrying the trace's own fixes, re-verified on every entry point
//!   the finding covers.
//! - [`consistency`]: contradictions between the sources (also listed by `snapshot inspect`).
//! - [`service`]: announcements, DNS and Ingress wiring.
//! - [`fabric`]: address pools, advertisements, BGP peers and the routers' BGP paths against
//!   what the speakers should announce.
//! - [`dataplane`]: the nodes' own state (kube-proxy rules, nginx.conf, rp_filter, routes and
//!   rules naming client prefixes) against the objects and against each other.

pub mod consistency;
pub mod dataplane;
pub mod fabric;
pub mod flows;
pub mod service;

use std::fmt;

use crate::trace::Verdict;

pub use flows::{
    address_classes, exposed_entries, manifest_prefixes, martian_source, reach, AddrClass, Exposed,
    Flow,
};

/// How bad a finding is. Ordered: `Info < Warning < Error < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; nothing is known to fail.
    Info,
    /// Inconsistent or stale data that misleads people or tools; traffic may still work.
    Warning,
    /// Some traffic or some object cannot work as configured.
    Error,
    /// Clients of the manifest cannot reach an exposed service (the trace shows it fail).
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// Parses `info`, `warning`, `error` or `critical`.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A way to remove a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingFix {
    pub description: String,
    /// Commands to run (empty when the fix is a change of a Kubernetes object or of data).
    pub commands: Vec<String>,
    /// Nodes the commands apply to (empty: not node commands).
    pub nodes: Vec<String>,
    /// `verified` (re-simulated: the finding is gone), `not-sufficient` (re-simulated, but
    /// something still fails), `not-verifiable` (no change re-simulation could apply) or
    /// `advice` (not a simulated change).
    pub status: &'static str,
    /// What the re-simulation showed.
    pub verification: String,
}

impl FindingFix {
    /// A fix that is advice (an object or data to change), not a simulated change.
    pub fn advice(description: impl Into<String>) -> FindingFix {
        FindingFix {
            description: description.into(),
            commands: Vec::new(),
            nodes: Vec::new(),
            status: "advice",
            verification: String::new(),
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Stable code (docs/check-json.md lists them).
    pub code: &'static str,
    pub severity: Severity,
    /// One line.
    pub title: String,
    pub explanation: String,
    /// `file:line` (or a file) of everything that shows it.
    pub evidence: Vec<String>,
    /// What is affected: entry points, nodes, objects.
    pub affected: Vec<String>,
    pub fixes: Vec<FindingFix>,
    /// For flow findings, the share of the traffic that fails, averaged over the entry points
    /// of the finding (used to order findings of the same severity).
    pub share: f64,
}

/// Everything `kubepath check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Most severe first.
    pub findings: Vec<Finding>,
    /// Every flow traced (client prefix x entry point), with its verdict distribution.
    pub flows: Vec<Flow>,
    /// Why some checks could not run (no manifest clients, no DNS data, ...).
    pub notes: Vec<String>,
}

/// Runs every check on `model`.
pub fn check(model: &kubepath_model::Model) -> CheckReport {
    let mut notes = Vec::new();
    // The checks besides the flows read the model and nothing else (no trace memo or routing
    // index of this thread): they run on a thread of their own while the flows are traced,
    // instead of after them on one core (a third of `check`'s time at 10,000 Services,
    // docs/PERFORMANCE.md). Findings and notes are joined in the same order as before.
    let ((flows, mut findings), (others, other_notes)) = std::thread::scope(|s| {
        let others = s.spawn(|| {
            let mut notes = Vec::new();
            let mut findings: Vec<Finding> = consistency::findings(model)
                .into_iter()
                .map(consistency::to_finding)
                .collect();
            findings.extend(service::check(model, &mut notes));
            findings.extend(fabric::check(model));
            findings.extend(dataplane::check(model));
            (findings, notes)
        });
        let flows = flows::check(model, &mut notes);
        match others.join() {
            Ok(o) => (flows, o),
            Err(e) => std::panic::resume_unwind(e),
        }
    });
    findings.extend(others);
    notes.extend(other_notes);
    sort(&mut findings);
    CheckReport {
        findings,
        flows,
        notes,
    }
}

/// Most severe first; within a severity, end-to-end failures (flow findings) before the
/// rest, then the larger failing share, then by code and title (stable output).
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| {
                let fa = a.code.starts_with("flow-");
                let fb = b.code.starts_with("flow-");
                fb.cmp(&fa)
            })
            .then_with(|| b.share.total_cmp(&a.share))
            .then_with(|| b.affected.len().cmp(&a.affected.len()))
            .then_with(|| a.code.cmp(b.code))
            .then_with(|| a.title.cmp(&b.title))
    });
}

/// The severity of a failing trace verdict.
pub fn verdict_severity(v: Verdict) -> Severity {
    match v {
        Verdict::Delivered => Severity::Info,
        Verdict::AsymmetricReturn
        | Verdict::NoRoute
        | Verdict::RoutingLoop
        | Verdict::RpFilter
        | Verdict::Dropped => Severity::Critical,
        Verdict::NoEndpoints => Severity::Error,
        // Undecided is not "fine": a CI gate at the default threshold must not pass a flow
        // the snapshot could not decide (issue #11: never a confident answer the data cannot
        // support).
        Verdict::Unknown => Severity::Warning,
    }
}
