//! `kubepath snapshot ...` (work in progress: owned by its issue).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Not implemented yet.
    Todo,
}

pub fn run(_cmd: SnapshotCommand) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubepath snapshot` is not implemented yet"))
}
