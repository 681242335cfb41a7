//! `kubepath lab ...` (work in progress: owned by its issue).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// Not implemented yet.
    Todo,
}

pub fn run(_cmd: LabCommand) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubepath lab` is not implemented yet"))
}
