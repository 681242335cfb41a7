//! `kubepath check SNAPSHOT [--json|--format text|json|sarif] [--severity LEVEL]
//! [--what-if CHANGE]...`: every check, most severe finding first (docs/check-json.md).

use std::path::PathBuf;
use std::process::ExitCode;

use kubepath_report::check as report;
use kubepath_sim::check::{self, Severity};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    pub fn severity(self) -> Severity {
        match self {
            Level::Info => Severity::Info,
            Level::Warning => Severity::Warning,
            Level::Error => Severity::Error,
            Level::Critical => Severity::Critical,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The snapshot directory (docs/snapshot.md).
    pub snapshot: PathBuf,
    /// Print JSON (schema kubepath.check/v1, docs/check-json.md); the same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format: text, json (kubepath.check/v1) or sarif (SARIF 2.1.0, for code
    /// scanning; docs/check-json.md).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
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
    let changes = super::snapshot::parse_what_ifs(&args.what_if)?;
    let snap = super::snapshot::load(&args.snapshot)?;
    super::snapshot::check_what_if_nodes(&snap, &changes)?;
    let result = if changes.is_empty() {
        check::check(&snap.model)
    } else {
        // A change the kernel would refuse (an unreachable gateway, deleting what is not
        // there) is not applied: say so, as `trace` does.
        let (model, refused) = kubepath_sim::trace::whatif::apply(&snap.model, &changes);
        let mut r = check::check(&model);
        r.notes.extend(refused);
        r
    };
    let threshold = args.severity.severity();
    let mut json = report::to_json(&args.snapshot.display().to_string(), &result, threshold);
    json.snapshot_errors
        .extend(super::snapshot::load_errors(&snap));
    let failing = json.failing();
    let format = match args.format {
        Some(f) => f,
        None if args.json => Format::Json,
        None => Format::Text,
    };
    match format {
        Format::Sarif => {
            let sarif = kubepath_report::sarif::to_sarif(
                &json,
                env!("CARGO_PKG_VERSION"),
                snapshot_uri(&args.snapshot).as_deref(),
                match ["kubepath.yaml", "kubepath.yml"]
                    .into_iter()
                    .find(|m| args.snapshot.join(m).is_file())
                {
                    Some(m) => kubepath_report::sarif::Fallback::Manifest(m),
                    None => kubepath_report::sarif::Fallback::Root,
                },
            );
            super::snapshot::emit(&sarif, true, |_| String::new(), failing)
        }
        f => super::snapshot::emit(&json, f == Format::Json, report::render_text, failing),
    }
}

/// The `file://` URI of the snapshot directory, when it can be made absolute.
fn snapshot_uri(dir: &std::path::Path) -> Option<String> {
    let abs = std::fs::canonicalize(dir).ok()?;
    Some(kubepath_report::sarif::dir_file_uri(abs.to_str()?))
}
