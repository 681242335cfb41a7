//! `kubepath reach SNAPSHOT [--from PREFIX]... [--json]`: the verdict of every client prefix x
//! exposed entry point, as a matrix (docs/check-json.md, "reach").

use std::path::PathBuf;
use std::process::ExitCode;

use kubepath_model::ipnet::IpNet;
use kubepath_report::check as report;
use kubepath_sim::check::{self, martian_source};
use miette::miette;

#[derive(clap::Args, Debug)]
pub struct ReachArgs {
    /// The snapshot directory (docs/snapshot.md).
    pub snapshot: PathBuf,
    /// A client prefix (or address) to trace from; repeatable. Default: the manifest's
    /// client prefixes (kubepath.yaml `clients:`).
    #[arg(long = "from", value_name = "PREFIX")]
    pub from: Vec<String>,
    /// Print JSON (schema kubepath.reach/v1).
    #[arg(long)]
    pub json: bool,
}

fn parse_prefix(s: &str) -> miette::Result<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(miette!(
        "--from '{}': expected a prefix (10.0.0.0/24) or an address",
        super::io::esc(s)
    ))
}

pub fn run(args: ReachArgs) -> miette::Result<ExitCode> {
    let mut given = Vec::new();
    for f in &args.from {
        let p = parse_prefix(f)?;
        // A prefix of martian sources only (a single multicast or broadcast address, ...)
        // has no client to trace from; the trace refuses such a --from too.
        if martian_source(p.network()) && martian_source(p.broadcast()) {
            return Err(miette!(
                "--from '{}': {p} cannot hold a client's source address (unspecified, broadcast, multicast or loopback)",
                super::io::esc(f)
            ));
        }
        given.push((p.to_string(), p));
    }
    let snap = super::snapshot::load(&args.snapshot)?;
    let prefixes = if given.is_empty() {
        check::manifest_prefixes(&snap.model)
    } else {
        given
    };
    let (entries, flows) = check::reach(&snap.model, &prefixes);
    let mut json = report::reach_to_json(
        &args.snapshot.display().to_string(),
        &prefixes,
        &entries,
        &flows,
    );
    json.snapshot_errors
        .extend(super::snapshot::load_errors(&snap));
    let failing = json.failing();
    super::snapshot::emit(&json, args.json, report::render_reach_text, failing)
}
