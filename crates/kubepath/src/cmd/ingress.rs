//! `kubepath ingress ...` (work in progress: owned by its issue).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum IngressCommand {
    /// Not implemented yet.
    Todo,
}

pub fn run(_cmd: IngressCommand) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubepath ingress` is not implemented yet"))
}
