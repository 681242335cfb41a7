//! `kubepath snapshot inspect DIR [--json]`: what a snapshot holds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kubepath_ingest::{IngestError, Severity, Snapshot};
use kubepath_report::inspect::{self, DiagEntry, FileEntry, InspectInput};
use miette::{miette, LabeledSpan, NamedSource};

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
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Load a snapshot, turning a malformed file into a miette report pointing at it.
pub fn load(dir: &Path) -> miette::Result<Snapshot> {
    kubepath_ingest::load_snapshot(dir).map_err(|e| render_error(dir, e))
}

fn render_error(dir: &Path, e: IngestError) -> miette::Report {
    match e {
        IngestError::Io { path, message } => miette!("cannot read {path}: {message}"),
        IngestError::Parse(pe) => {
            let full = dir.join(&*pe.file);
            let msg = format!(
                "{}:{}:{}: expected {}, found {}",
                pe.file, pe.line, pe.column, pe.expected, pe.found
            );
            match std::fs::read_to_string(&full) {
                Ok(text) => {
                    let offset = offset_of(&text, pe.line, pe.column);
                    miette::Report::from(
                        miette::MietteDiagnostic::new(msg)
                            .with_code("kubepath::malformed_input")
                            .with_labels(vec![LabeledSpan::at_offset(
                                offset,
                                format!("expected {}", pe.expected),
                            )]),
                    )
                    .with_source_code(NamedSource::new(&*pe.file, text))
                }
                Err(_) => miette!("{msg}"),
            }
        }
    }
}

/// Byte offset of 1-based `line` and `column` (characters) in `text`.
fn offset_of(text: &str, line: u32, column: u32) -> usize {
    let mut off = 0usize;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line as usize {
            let col = column.saturating_sub(1) as usize;
            return off
                + l.char_indices()
                    .nth(col)
                    .map(|(b, _)| b)
                    .unwrap_or(l.len().saturating_sub(1));
        }
        off += l.len();
    }
    text.len().saturating_sub(1)
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

/// Write to stdout; a closed pipe (`| head`) is not an error.
pub fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
}
