//! `kubepath check SNAPSHOT [--json] [--severity LEVEL] [--what-if CHANGE]...`: every check,
//! most severe finding first (docs/check-json.md).

use std::path::PathBuf;
use std::process::ExitCode;

use kubepath_report::check as report;
use kubepath_sim::check::{self, Severity};
use miette::miette;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    fn severity(self) -> Severity {
        match self {
            Level::Info => Severity::Info,
            Level::Warning => Severity::Warning,
            Level::Error => Severity::Error,
            Level::Critical => Severity::Critical,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The snapshot directory (docs/snapshot.md).
    pub snapshot: PathBuf,
    /// Print JSON (schema kubepath.check/v1, docs/check-json.md).
    #[arg(long)]
    pub json: bool,
    /// Report (and fail on) findings at or above this severity.
    #[arg(long, value_enum, default_value = "warning")]
    pub severity: Level,
    /// Apply a change before checking, as `trace --what-if` does: 'ip route add|del ...',
    /// 'ip rule add|del ...' or 'sysctl -w key=value', on every node or on one with 'NODE:'.
    /// Repeatable.
    #[arg(long = "what-if", value_name = "CHANGE")]
    pub what_if: Vec<String>,
}

pub fn run(args: CheckArgs) -> miette::Result<ExitCode> {
    let mut changes = Vec::new();
    for w in &args.what_if {
        changes.push(kubepath_ingest::whatif::parse(w).map_err(|e| {
            miette!(
                "--what-if '{}': column {}: expected {}, found {}",
                super::io::esc(w.trim()),
                e.column,
                e.expected,
                e.found
            )
        })?);
    }
    let snap = super::snapshot::load(&args.snapshot)?;
    for c in &changes {
        if let Some(n) = &c.node {
            if !snap.model.nodes.contains_key(n) {
                return Err(miette!(
                    "--what-if '{}': node {} is not in the snapshot",
                    super::io::esc(&c.text),
                    super::io::esc(n)
                ));
            }
        }
    }
    let result = if changes.is_empty() {
        check::check(&snap.model)
    } else {
        let (model, _) = kubepath_sim::trace::whatif::apply(&snap.model, &changes);
        check::check(&model)
    };
    let threshold = args.severity.severity();
    let mut json = report::to_json(&args.snapshot.display().to_string(), &result, threshold);
    for d in &snap.diagnostics {
        if d.severity == kubepath_ingest::Severity::Error {
            json.snapshot_errors
                .push(format!("{}:{}: {}", d.file, d.line, d.message));
        }
    }
    if args.json {
        let s = serde_json::to_string_pretty(&json)
            .map_err(|e| miette!("cannot serialize the findings: {e}"))?;
        super::io::out(&format!("{s}\n"));
    } else {
        super::io::out(&report::render_text(&json));
    }
    Ok(if json.failing() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
