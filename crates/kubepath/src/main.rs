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

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser, Debug)]
#[command(name = "kubepath", version, about = "Trace a client's packets to a Kubernetes service through routers, kube-proxy and ingress, and back", long_about = None)]
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
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
