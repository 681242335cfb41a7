//! `kubepath gen snapshot DIR --services N --endpoints-per-service E --nodes M --ingress-hosts
//! H [--seed S]`: write a synthetic but realistic snapshot (issue #15; what it holds:
//! `kubepath_netfilter_gen::snapshot`), for benchmarks and tests.
//!
//! Every size is checked against the generator's address plans and limits before anything is
//! written, and so is the estimated output size, against `--max-bytes` and the free space of
//! the target's file system. A write error (a full disk) removes what this run wrote.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kubepath_netfilter_gen::snapshot::{
    estimate_bytes, write_snapshot, SnapshotParams, MAX_ENDPOINTS, MAX_INGRESS_HOSTS, MAX_NODES,
    MAX_SERVICES,
};
use miette::miette;

// The limits `--help` states.
const _: () = assert!(
    MAX_NODES == 4079
        && MAX_SERVICES == 1_048_572
        && MAX_ENDPOINTS == 1000
        && MAX_INGRESS_HOSTS == 100_000
);

/// `--max-bytes`' default: 16 GiB.
const DEFAULT_MAX_BYTES: u64 = 16 << 30;

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
    /// Services (besides default/kubernetes and the ingress controller's); at most 1048572
    /// (the Service CIDR 10.96.0.0/12).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Ready endpoints (pods) per Service; at most 1000 (one EndpointSlice per Service), and
    /// all pods must fit the pod network 10.128.0.0/9 (a block of twice its pods per node).
    #[arg(long = "endpoints-per-service", default_value_t = 10)]
    pub endpoints: usize,
    /// Nodes; 1 to 4079 (10.32.0.16-10.32.15.254 in the nodes' subnet 10.32.0.0/20). Each
    /// node's routes name every other node's pod block: the output grows with nodes squared.
    #[arg(long, default_value_t = 20)]
    pub nodes: usize,
    /// Ingress hosts (one Ingress object, one DNS name and one nginx server block each); at
    /// most 100000.
    #[arg(long = "ingress-hosts", default_value_t = 100)]
    pub ingress_hosts: usize,
    /// Nodes running an ingress-nginx controller pod (externalTrafficPolicy: Local); at least
    /// 1, more than --nodes means every node.
    #[arg(long = "ingress-nodes", default_value_t = 3)]
    pub ingress_nodes: usize,
    /// Refuse (before writing anything) when the output is estimated to be bigger than this
    /// many bytes, and stop (removing what was written) if it grows past it. The output is
    /// also refused when it would not fit the free space of DIR's file system.
    #[arg(long = "max-bytes", default_value_t = DEFAULT_MAX_BYTES)]
    pub max_bytes: u64,
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
    let mut p = SnapshotParams::new(a.services, a.endpoints, a.nodes, a.ingress_hosts, a.seed);
    p.ingress_nodes = a.ingress_nodes;
    p.link_identical = a.link_identical;
    p.max_bytes = a.max_bytes;
    p.validate().map_err(|e| miette!("--{e}"))?;
    match std::fs::symlink_metadata(&a.dir) {
        Ok(_) if !a.dir.is_dir() => return Err(miette!("{shown} is not a directory")),
        Ok(_) => {
            let mut entries = std::fs::read_dir(&a.dir)
                .map_err(|e| miette!("cannot read the directory {shown}: {e}"))?;
            if entries.next().is_some() {
                return Err(miette!("{shown} exists and is not empty"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(miette!("cannot read {shown}: {e}")),
    }
    let estimate = estimate_bytes(&p);
    if let Some((fs_dir, free)) = free_space(&a.dir) {
        if estimate > free {
            return Err(miette!(
                "the snapshot would be about {} ({estimate} bytes), more than the {} ({free} bytes) free on the file system of {}: choose smaller sizes or another directory",
                human(estimate),
                human(free),
                super::io::esc(&fs_dir.display().to_string())
            ));
        }
    }
    if estimate > a.max_bytes {
        return Err(miette!(
            "the snapshot would be about {} ({estimate} bytes), more than --max-bytes {} ({} bytes): \
             choose smaller --services, --endpoints-per-service, --nodes (the output grows with \
             the square of the nodes) or --ingress-hosts, or raise --max-bytes",
            human(estimate),
            human(a.max_bytes),
            a.max_bytes
        ));
    }
    let s = write_snapshot(&a.dir, &p).map_err(|e| {
        miette!(
            "cannot write {shown}: {e} (the files and directories this run created were removed)"
        )
    })?;
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

/// `n` bytes in the largest binary unit that keeps it at least 1.
fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The bytes an unprivileged user may still write on the file system that `dir` (or its
/// nearest existing ancestor) is on, and that directory; `None` when it cannot be told.
fn free_space(dir: &Path) -> Option<(PathBuf, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(dir).ok()?;
    let existing = abs.ancestors().find(|p| p.exists())?.to_path_buf();
    let c = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path; statvfs only writes into the struct we pass.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    // Narrower than u64 on some targets.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize));
    Some((existing, free))
}
