//! `kubepath completions bash|zsh|fish` and `kubepath man [--out DIR]`: shell completions and
//! man pages generated from the clap definition, so they never drift from the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::miette;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write one page per command into DIR (kubepath.1, kubepath-trace.1, ...) instead of
    /// printing kubepath.1 to stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The completion script for `shell`, completing `bin` (the name the shell runs).
pub fn completions(args: CompletionsArgs, mut cli: clap::Command, bin: &str) -> ExitCode {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf: Vec<u8> = Vec::new();
    clap_complete::generate(shell, &mut cli, bin, &mut buf);
    super::io::out(&String::from_utf8_lossy(&buf));
    ExitCode::SUCCESS
}

/// The man pages: the binary's page on stdout, or every (non-hidden) command's page in a
/// directory.
pub fn man(args: ManArgs, cli: clap::Command) -> miette::Result<ExitCode> {
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                miette!("--out {}: {e}", super::io::esc(&dir.display().to_string()))
            })?;
            clap_mangen::generate_to(cli, &dir).map_err(|e| {
                miette!(
                    "cannot write the man pages into {}: {e}",
                    super::io::esc(&dir.display().to_string())
                )
            })?;
            super::io::err(&format!(
                "wrote the man pages into {}\n",
                super::io::esc(&dir.display().to_string())
            ));
        }
        None => {
            let mut buf: Vec<u8> = Vec::new();
            clap_mangen::Man::new(cli)
                .render(&mut buf)
                .map_err(|e| miette!("cannot render the man page: {e}"))?;
            super::io::out(&String::from_utf8_lossy(&buf));
        }
    }
    Ok(ExitCode::SUCCESS)
}
