//! `kubepath announce` (work in progress: owned by its issue).

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct AnnounceArgs {}

pub fn run(_args: AnnounceArgs) -> miette::Result<ExitCode> {
    Err(miette::miette!("`kubepath announce` is not implemented yet"))
}
