//! `kubepath diff SNAPSHOT_A SNAPSHOT_B [--json] [--severity LEVEL]`: what changed between the
//! checks (and reach matrices) of two snapshots (docs/diff-json.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kubepath_report::diff as report;
use kubepath_sim::check::{self, CheckReport, Flow};

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The snapshot before (docs/snapshot.md).
    pub before: PathBuf,
    /// The snapshot after.
    pub after: PathBuf,
    /// Print JSON (schema kubepath.diff/v1, docs/diff-json.md).
    #[arg(long)]
    pub json: bool,
    /// A new finding at or above this severity is worse (exit 1); findings below it on both
    /// sides are left out.
    #[arg(long, value_enum, default_value = "warning")]
    pub severity: super::check::Level,
}

/// `kubepath check` and `kubepath reach` (the manifest's client prefixes) on one snapshot.
fn run_one(dir: &Path) -> miette::Result<(CheckReport, Vec<Flow>, Vec<String>)> {
    let snap = super::snapshot::load(dir)?;
    let report = check::check(&snap.model);
    let (_, reach) = check::reach(&snap.model, &check::manifest_prefixes(&snap.model));
    Ok((report, reach, super::snapshot::load_errors(&snap)))
}

pub fn run(args: DiffArgs) -> miette::Result<ExitCode> {
    let (before, reach_before, errors_before) = run_one(&args.before)?;
    let (after, reach_after, errors_after) = run_one(&args.after)?;
    let d = kubepath_sim::diff::diff(&before, &after, &reach_before, &reach_after);
    let mut json = report::to_json(
        &args.before.display().to_string(),
        &args.after.display().to_string(),
        &d,
        args.severity.severity(),
    );
    json.snapshot_errors.before = errors_before;
    json.snapshot_errors.after = errors_after;
    let failing = json.failing();
    super::snapshot::emit(&json, args.json, report::render_text, failing)
}
