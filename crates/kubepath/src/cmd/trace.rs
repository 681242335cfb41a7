//! `kubepath trace` (work in progress: owned by its issue).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct TraceArgs {}

pub fn run(_args: TraceArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubepath trace` is not implemented yet"))
}
