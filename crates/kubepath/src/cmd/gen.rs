//! `kubepath gen snapshot DIR --services N --endpoints-per-service E --nodes M --ingress-hosts
//! H [--seed S]`: write a synthetic but realistic snapshot (issue #15; what it holds:
//! `kubepath_netfilter_gen::snapshot`), for benchmarks and tests.

use std::path::PathBuf;
use std::process::ExitCode;

use kubepath_netfilter_gen::snapshot::{write_snapshot, SnapshotParams};
use miette::miette;

#[derive(clap::Subcommand, Debug)]
pub enum GenCommand {
    /// Write a synthetic snapshot of a large cluster into DIR (kube-proxy rulesets per node,
    /// EndpointSlices, pods spread over the nodes, an ingress tier, MetalLB, two routers with
    /// BGP tables for every LoadBalancer IP, DNS). The same seed writes the same bytes.
    Snapshot(GenSnapshotArgs),
}

#[derive(clap::Args, Debug)]
pub struct GenSnapshotArgs {
    /// The directory to write (created; it must not exist or be empty).
    pub dir: PathBuf,
    /// Services (besides default/kubernetes and the ingress controller's).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Ready endpoints (pods) per Service.
    #[arg(long = "endpoints-per-service", default_value_t = 10)]
    pub endpoints: usize,
    /// Nodes.
    #[arg(long, default_value_t = 20)]
    pub nodes: usize,
    /// Ingress hosts (one Ingress object and one DNS name each).
    #[arg(long = "ingress-hosts", default_value_t = 100)]
    pub ingress_hosts: usize,
    /// Nodes running an ingress-nginx controller pod (externalTrafficPolicy: Local).
    #[arg(long = "ingress-nodes", default_value_t = 3)]
    pub ingress_nodes: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write a file identical to an earlier one as a hard link to it (saves disk space; the
    /// snapshot reads the same).
    #[arg(long)]
    pub link_identical: bool,
}

pub fn run(cmd: GenCommand) -> miette::Result<ExitCode> {
    match cmd {
        GenCommand::Snapshot(a) => snapshot(a),
    }
}

fn snapshot(a: GenSnapshotArgs) -> miette::Result<ExitCode> {
    let shown = super::io::esc(&a.dir.display().to_string());
    if a.nodes == 0 {
        return Err(miette!("--nodes must be at least 1"));
    }
    if a.dir.exists()
        && std::fs::read_dir(&a.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(miette!("{shown} exists and is not empty"));
    }
    let mut p = SnapshotParams::new(a.services, a.endpoints, a.nodes, a.ingress_hosts, a.seed);
    p.ingress_nodes = a.ingress_nodes;
    p.link_identical = a.link_identical;
    let s = write_snapshot(&a.dir, &p).map_err(|e| miette!("cannot write {shown}: {e}"))?;
    let example = s
        .hosts
        .first()
        .map(|h| {
            format!(
                "\ntry: kubepath trace {shown} --from {} --to http://{}/\n",
                s.client, h.host
            )
        })
        .unwrap_or_default();
    super::io::out(&format!(
        "wrote {shown}: {} files, {} bytes; {} pods; {} distinct iptables-save texts over {} nodes (largest {} bytes); ingress VIP {} on {}{example}",
        s.files,
        s.bytes,
        s.pods,
        s.distinct_rulesets,
        a.nodes,
        s.ruleset_bytes,
        s.vip,
        s.ingress_nodes.join(", "),
    ));
    Ok(ExitCode::SUCCESS)
}
