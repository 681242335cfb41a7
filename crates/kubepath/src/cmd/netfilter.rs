//! `kubepath netfilter ...` (work in progress: owned by its issue).

use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum NetfilterCommand {
    /// Not implemented yet.
    Todo,
}

pub fn run(_cmd: NetfilterCommand) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubepath netfilter` is not implemented yet"))
}
