//! `kubepath bench SNAPSHOT --from IP --to URL`: how long loading the snapshot, one trace,
//! `check` and `reach` take in this process, and its peak memory (issue #15;
//! docs/PERFORMANCE.md). Wall time and CPU time (all threads, `getrusage`) are both printed:
//! on a shared machine CPU time is the steadier figure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kubepath_sim::trace::{self, TraceRequest, L4};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The snapshot directory.
    pub snapshot: PathBuf,
    /// The traced client: IP or IP:PORT (checked as `kubepath trace` checks it).
    #[arg(long)]
    pub from: String,
    /// What it connects to: a URL, HOST[:PORT] or IP:PORT (checked as `kubepath trace` checks
    /// it).
    #[arg(long)]
    pub to: String,
    /// How many times the trace is run, 1 to 100000 (the median and the fastest are printed).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub trace_runs: u32,
    /// Do not run `check`.
    #[arg(long)]
    pub no_check: bool,
    /// Do not run `reach`.
    #[arg(long)]
    pub no_reach: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// User + system CPU time of this process, all threads.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct Measure {
    what: String,
    wall: Duration,
    cpu: Duration,
    result: String,
}

fn measure<T>(what: &str, f: impl FnOnce() -> T, describe: impl Fn(&T) -> String) -> (T, Measure) {
    let (w0, c0) = (Instant::now(), cpu_time());
    let r = f();
    let m = Measure {
        what: what.into(),
        wall: w0.elapsed(),
        cpu: cpu_time().saturating_sub(c0),
        result: describe(&r),
    };
    (r, m)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn run(args: BenchArgs) -> miette::Result<ExitCode> {
    let (client, client_port, target, _) = super::trace::client_and_target(&args.from, &args.to)?;
    let load_before = load_average();
    let mut rows = Vec::new();
    let (snap, m) = measure(
        "load",
        || super::snapshot::load(&args.snapshot),
        |r| match r {
            Ok(s) => {
                let errors = s
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == kubepath_ingest::Severity::Error)
                    .count();
                format!(
                    "{} files, {} nodes, {} error diagnostics",
                    s.files.len(),
                    s.model.nodes.len(),
                    errors
                )
            }
            Err(_) => "failed".into(),
        },
    );
    let snap = snap?;
    rows.push(m);
    let (hwm_load, _) = memory_kib();
    let req = TraceRequest {
        client,
        client_port,
        target,
        proto: L4::Tcp,
        what_if: Vec::new(),
    };
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut outcome = String::new();
    for _ in 0..args.trace_runs {
        let (r, m) = measure(
            "trace",
            || trace::trace(&snap.model, &req),
            |r| {
                r.verdicts
                    .iter()
                    .map(|(v, p)| format!("{} {:.4}", v.name(), p))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        walls.push(m.wall);
        cpus.push(m.cpu);
        outcome = format!(
            "{}; {} nodes, {} ingress pods, {} backends",
            m.result,
            r.distribution_nodes.len(),
            r.distribution_ingress_pods.len(),
            r.distribution_backends.len()
        );
    }
    walls.sort();
    cpus.sort();
    rows.push(Measure {
        what: format!(
            "trace (median of {}, fastest {:.2} ms)",
            walls.len(),
            walls[0].as_secs_f64() * 1e3
        ),
        wall: walls[walls.len() / 2],
        cpu: cpus[cpus.len() / 2],
        result: outcome,
    });
    if !args.no_check {
        let (_, m) = measure(
            "check",
            || kubepath_sim::check::check(&snap.model),
            |r| format!("{} findings, {} flows", r.findings.len(), r.flows.len()),
        );
        rows.push(m);
    }
    if !args.no_reach {
        let prefixes = kubepath_sim::check::manifest_prefixes(&snap.model);
        let (_, m) = measure(
            "reach",
            || kubepath_sim::check::reach(&snap.model, &prefixes),
            |(entries, flows)| {
                format!(
                    "{} prefixes x {} entry points, {} flows",
                    prefixes.len(),
                    entries.len(),
                    flows.len()
                )
            },
        );
        rows.push(m);
    }
    let (hwm, rss) = memory_kib();
    let load_after = load_average();
    if args.json {
        let v = serde_json::json!({
            "snapshot": args.snapshot.display().to_string(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "peak_rss_kib_after_load": hwm_load,
            "peak_rss_kib": hwm,
            "rss_kib": rss,
            "measures": rows.iter().map(|m| serde_json::json!({
                "what": m.what,
                "wall_s": m.wall.as_secs_f64(),
                "cpu_s": m.cpu.as_secs_f64(),
                "result": m.result,
            })).collect::<Vec<_>>(),
        });
        super::io::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ));
    } else {
        let mut out = format!(
            "snapshot {} (load average {load_before} before, {load_after} after)\n",
            super::io::esc(&args.snapshot.display().to_string())
        );
        for m in &rows {
            out.push_str(&format!(
                "{:<40} wall {:>10.4} s  cpu {:>10.4} s  {}\n",
                m.what,
                m.wall.as_secs_f64(),
                m.cpu.as_secs_f64(),
                m.result
            ));
        }
        out.push_str(&format!(
            "peak memory (VmHWM): {:.1} MiB after loading, {:.1} MiB at the end\n",
            hwm_load as f64 / 1024.0,
            hwm as f64 / 1024.0
        ));
        super::io::out(&out);
    }
    Ok(ExitCode::SUCCESS)
}
