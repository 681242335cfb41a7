//! `kubepath snapshot inspect DIR [--json]`: what a snapshot holds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kubepath_ingest::{IngestError, Severity, Snapshot};
use kubepath_report::inspect::{self, DiagEntry, FileEntry, InspectInput};
use miette::miette;

#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// List what was read (file -> format -> objects), counts, findings and diagnostics.
    Inspect {
        /// The snapshot directory (docs/snapshot.md).
        dir: PathBuf,
        /// Print JSON (schema kubepath.inspect/v1, docs/inspect-json.md).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: SnapshotCommand) -> miette::Result<ExitCode> {
    match cmd {
        SnapshotCommand::Inspect { dir, json } => {
            let snap = load(&dir)?;
            let report = inspect::inspect(&snap.model, input(&snap));
            if json {
                let s = serde_json::to_string_pretty(&report)
                    .map_err(|e| miette!("cannot serialize the report: {e}"))?;
                out(&format!("{s}\n"));
            } else {
                out(&inspect::render_text(&report));
            }
            // Parts that could not be read (skipped lines, files left out): answered, but
            // something is wrong (exit 1, as for a failing trace).
            let unreadable = snap
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error);
            Ok(if unreadable {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Load a snapshot, turning a malformed file into a miette report pointing at it.
/// `--strict` (a global flag): read the snapshot with [`kubepath_ingest::LoadOptions::strict`].
static STRICT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_strict(strict: bool) {
    STRICT.store(strict, std::sync::atomic::Ordering::Relaxed);
}

pub fn load(dir: &Path) -> miette::Result<Snapshot> {
    let opts = kubepath_ingest::LoadOptions {
        strict: STRICT.load(std::sync::atomic::Ordering::Relaxed),
        ..Default::default()
    };
    kubepath_ingest::load_snapshot_with(dir, opts).map_err(|e| render_error(dir, e))
}

fn render_error(dir: &Path, e: IngestError) -> miette::Report {
    match e {
        IngestError::Io { path, message } => miette!(
            "cannot read {}: {}",
            kubepath_report::escape_value(&path),
            kubepath_report::escape_value(&message)
        ),
        IngestError::Parse(pe) => {
            let full = dir.join(&*pe.file);
            // Read again to show the offending line, under the loader's rules: the file may
            // have been replaced by a FIFO or a huge file since.
            match kubepath_ingest::snapshot::read_regular_file(&full) {
                Ok(bytes) => super::io::source_error(
                    &pe.file,
                    &String::from_utf8_lossy(&bytes),
                    pe.line,
                    pe.column,
                    &pe.expected,
                    &pe.found,
                ),
                Err(_) => miette!(
                    "{}:{}:{}: expected {}, found {}",
                    kubepath_report::escape_value(&pe.file),
                    pe.line,
                    pe.column,
                    kubepath_report::escape_value(&super::io::clip(&pe.expected, 120)),
                    kubepath_report::escape_value(&super::io::clip(&pe.found, 120))
                ),
            }
        }
    }
}

/// Convert the loader's file list and diagnostics for the report.
pub fn input(snap: &Snapshot) -> InspectInput {
    InspectInput {
        files: snap
            .files
            .iter()
            .map(|f| FileEntry {
                path: f.path.clone(),
                format: f.format.clone(),
                objects: f.objects.clone(),
                skipped: f.skipped.clone(),
            })
            .collect(),
        diagnostics: snap
            .diagnostics
            .iter()
            .map(|d| DiagEntry {
                severity: match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Note => "note",
                }
                .to_string(),
                file: d.file.to_string(),
                line: d.line,
                column: d.column,
                message: d.message.clone(),
            })
            .collect(),
    }
}

/// Write to stdout; a closed pipe (`| head`) ends the output quietly.
pub fn out(text: &str) {
    super::io::out(text);
}

/// `--what-if` arguments read with the iproute2 grammar that reads the snapshot's `ip route` /
/// `ip rule` outputs (trace and check share it).
pub fn parse_what_ifs(args: &[String]) -> miette::Result<Vec<kubepath_sim::trace::whatif::Change>> {
    args.iter()
        .map(|w| {
            kubepath_ingest::whatif::parse(w).map_err(|e| {
                miette!(
                    "--what-if '{}': column {}: expected {}, found {}",
                    super::io::esc(w.trim()),
                    e.column,
                    e.expected,
                    e.found
                )
            })
        })
        .collect()
}

/// Refuses a `NODE:` what-if whose node the snapshot does not have, and a sysctl write for an
/// interface the node (every node, without `NODE:`: at least one of them) does not have.
pub fn check_what_if_nodes(
    snap: &Snapshot,
    changes: &[kubepath_sim::trace::whatif::Change],
) -> miette::Result<()> {
    for c in changes {
        if let kubepath_model::change::Item::Sysctl(key, _) = &c.item {
            if let Some(iface) = kubepath_ingest::whatif::sysctl_interface(key) {
                let nodes: Vec<_> = snap
                    .model
                    .nodes
                    .iter()
                    .filter(|(n, _)| c.node.as_ref().is_none_or(|want| want == *n))
                    .collect();
                // Nodes whose interfaces were collected (`ip addr`): the others cannot say.
                let known: Vec<_> = nodes
                    .iter()
                    .filter(|(_, net)| !net.interfaces.is_empty())
                    .collect();
                if !known.is_empty() && !known.iter().any(|(_, net)| net.interface(iface).is_some())
                {
                    return Err(miette!(
                        "--what-if '{}': {} (expected `all`, `default` or an interface of the node)",
                        super::io::esc(&c.text),
                        match &c.node {
                            Some(n) => format!(
                                "node {} has no interface {}",
                                super::io::esc(n),
                                super::io::esc(iface)
                            ),
                            None => format!(
                                "no node of the snapshot has an interface {}",
                                super::io::esc(iface)
                            ),
                        }
                    ));
                }
            }
        }
        if let Some(n) = &c.node {
            if !snap.model.nodes.contains_key(n) {
                return Err(miette!(
                    "--what-if '{}': node {} is not in the snapshot (known: {})",
                    super::io::esc(&c.text),
                    super::io::esc(n),
                    snap.model
                        .nodes
                        .keys()
                        .map(|k| super::io::esc(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The snapshot's load errors as `file:line: message` lines (for a report's header).
pub fn load_errors(snap: &Snapshot) -> Vec<String> {
    snap.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}:{}: {}", d.file, d.line, d.message))
        .collect()
}

/// Prints a report as JSON or text; exit code 1 when it has failures.
pub fn emit<T: serde::Serialize>(
    json: &T,
    as_json: bool,
    text: impl FnOnce(&T) -> String,
    failing: bool,
) -> miette::Result<ExitCode> {
    if as_json {
        let s = serde_json::to_string_pretty(json)
            .map_err(|e| miette!("cannot serialize the report: {e}"))?;
        super::io::out(&format!("{s}\n"));
    } else {
        super::io::out(&text(json));
    }
    Ok(if failing {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
