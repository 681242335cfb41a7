//! `kubepath`: the command-line front end.
//!
//! The binary is thin: it parses arguments with clap, calls the library crates
//! (ingest -> sim -> report) and maps the outcome to an exit code:
//!
//! * `0` — the question was answered and everything is fine (all probability mass delivered),
//! * `1` — the question was answered and something fails (a branch is dropped, asymmetric, ...),
//! * `2` — bad input or bad usage; the error names the file, line and what was expected.
//!
//! Each subcommand lives in its own module under `cmd/`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cmd;

/// `--help`'s and the man page's last section: exit codes and environment.
const AFTER_HELP: &str = "\
Exit codes: 0 answered and fine; 1 answered and something fails (a failing branch, a finding \
at or above --severity, something got worse); 2 bad input or usage.

Environment: NO_COLOR (set and not empty) turns colours off; CLICOLOR_FORCE (not 0) turns \
them on when stdout is not a terminal. Colour is otherwise used only on a terminal, and never \
in --json, dot or SARIF output.

As a kubectl plugin: install the binary as kubectl-kubepath on the PATH and run \
`kubectl kubepath ...`.";

#[derive(Parser, Debug)]
#[command(
    name = "kubepath",
    version,
    about = "Trace a client's packets to a Kubernetes service through routers, kube-proxy and ingress, and back",
    long_about = None,
    after_long_help = AFTER_HELP
)]
struct Cli {
    /// Treat any line of a snapshot that cannot be read as an error (exit 2). By default an
    /// odd line of a command output is reported with file:line and skipped, an unreadable
    /// file is reported and left out, and what depended on them is `unknown`.
    #[arg(long, global = true)]
    strict: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work with node netfilter rulesets (iptables-save, iptables -S).
    #[command(subcommand)]
    Netfilter(cmd::netfilter::NetfilterCommand),
    /// Read a snapshot directory and report what it contains.
    #[command(subcommand)]
    Snapshot(cmd::snapshot::SnapshotCommand),
    /// Which nodes announce each LoadBalancer IP, to which BGP peers, and why not.
    Announce(cmd::announce::AnnounceArgs),
    /// Trace a client's connection to a service, forward and back.
    Trace(cmd::trace::TraceArgs),
    /// Run every check (client prefixes x entry points traced, announcements, DNS, Ingress
    /// wiring, contradictions) and list the findings, most severe first.
    Check(cmd::check::CheckArgs),
    /// The verdict of every client prefix x exposed entry point, as a matrix.
    Reach(cmd::reach::ReachArgs),
    /// What changed between the checks of two snapshots: findings gone, new and changed, and
    /// the reach matrix's changes; exit 1 when something got worse.
    Diff(cmd::diff::DiffArgs),
    /// Ingress (L7) host and path matching, as ingress-nginx does it.
    #[command(subcommand)]
    Ingress(cmd::ingress::IngressCommand),
    /// Build a snapshot from a live cluster, read-only: kubectl objects (never Secrets) and
    /// each node's outputs through a command template (docs/collect.md).
    Collect(cmd::collect::CollectArgs),
    /// Build, test and tear down the network-namespace lab (root only).
    #[command(subcommand)]
    Lab(cmd::lab::LabCommand),
    /// Write a synthetic snapshot (for benchmarks and tests).
    #[command(subcommand)]
    Gen(cmd::gen::GenCommand),
    /// Measure loading a snapshot, one trace, `check` and `reach` (time, CPU, peak memory).
    Bench(cmd::bench::BenchArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(cmd::meta::CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory with --out.
    Man(cmd::meta::ManArgs),
}

/// The name the binary was run as (argv[0]'s file name): `kubectl-kubepath` when kubectl runs
/// it as a plugin (`kubectl kubepath trace ...` -> `kubectl-kubepath trace ...`).
fn invoked_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .map(|f| f.strip_suffix(".exe").map(str::to_string).unwrap_or(f))
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "kubepath".into())
}

/// The CLI as the user typed it: `kubectl kubepath` in help and usage when run as the kubectl
/// plugin, else the invoked name (clap's default).
fn cli_command(invoked: &str) -> clap::Command {
    let cmd = Cli::command();
    if invoked == "kubectl-kubepath" {
        cmd.bin_name("kubectl kubepath")
    } else {
        cmd
    }
}

fn main() -> ExitCode {
    if cmd::io::stdout_closed() {
        cmd::io::err("kubepath: cannot write the output: standard output is closed\n");
        return ExitCode::from(2);
    }
    // miette's own choice would colour with CLICOLOR_FORCE despite NO_COLOR: use ours.
    let color = cmd::io::color_stderr();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(miette::MietteHandlerOpts::new().color(color).build())
    }));
    let invoked = invoked_name();
    let cli = match cli_command(&invoked)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with exit 0; usage errors get exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cmd::snapshot::set_strict(cli.strict);
    let result = match cli.command {
        Command::Netfilter(c) => cmd::netfilter::run(c),
        Command::Snapshot(c) => cmd::snapshot::run(c),
        Command::Announce(a) => cmd::announce::run(a),
        Command::Trace(a) => cmd::trace::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Reach(a) => cmd::reach::run(a),
        Command::Diff(a) => cmd::diff::run(a),
        Command::Ingress(c) => cmd::ingress::run(c),
        Command::Collect(a) => cmd::collect::run(a),
        Command::Lab(c) => cmd::lab::run(c),
        Command::Gen(c) => cmd::gen::run(c),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Completions(a) => Ok(cmd::meta::completions(a, Cli::command(), &invoked)),
        Command::Man(a) => cmd::meta::man(a, Cli::command()),
    };
    match result {
        // The answer could not be written in full (not a closed pipe: a full disk ...).
        Ok(_) if cmd::io::write_failed() => ExitCode::from(2),
        Ok(code) => code,
        Err(report) => {
            cmd::io::err(&format!("{report:?}\n"));
            ExitCode::from(2)
        }
    }
}
