//! Performance of the netfilter engine on a kube-proxy-shaped ruleset (issue #2, point 6).
//!
//! ```text
//! cargo run --release -p kubepath-netfilter --example perf -- [--services N] [--endpoints E]
//!     [--seed S] [--style 1.18|1.28] [--runs R] [--trace-iters K] [--ipt-runs M] [--no-iptables]
//!     [--keep FILE]
//! ```
//!
//! 1. Generates `N` Services x `E` endpoints (default 10,000 x 5) with
//!    `kubepath_netfilter_gen::kube_proxy` and writes the `iptables-save` text to a file.
//! 2. Runs itself as a child process (`--child FILE`), which reads the file, parses and indexes
//!    it `R` times (`Ruleset::parse`), traces three packets `K` times each (the cluster IP whose
//!    rules come last in `KUBE-SERVICES`, a NodePort on the node's address, and a miss) and
//!    reports its peak resident memory (`VmHWM` from `/proc/self/status`): the whole cost of
//!    answering one `kubepath netfilter trace --ruleset FILE` query, in its own process.
//! 3. As root, times `iptables-restore --test < FILE` `M` times inside a throwaway network
//!    namespace (`ip netns add kp-perf-<pid>`, deleted afterwards even on failure), so the
//!    kernel tool and the engine are measured in the same run on the same file.
//! 4. Checks every trace against the generated Services (each endpoint with probability 1/E,
//!    DNAT to its pod, masqueraded; the miss accepted untouched) and prints a table of figures
//!    against the issue's targets. Exit code 1 when a trace is wrong, 0 otherwise (a missed
//!    performance target is reported, not an error).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use kubepath_netfilter::{trace, trace_linear, Env, Packet, Ruleset, Verdict};
use kubepath_netfilter_gen::kube_proxy::{
    generate, KubeProxyParams, KubeProxyRuleset, KubeProxyStyle, PortProtocol,
};

/// Parse targets from the issue.
const TARGET_PARSE_S: f64 = 0.2;
const TARGET_SPEEDUP: f64 = 15.0;
const TARGET_TRACE_US: f64 = 20.0;
const TARGET_PEAK_MB: f64 = 300.0;

struct Opts {
    services: usize,
    endpoints: usize,
    seed: u64,
    style: KubeProxyStyle,
    runs: usize,
    trace_iters: usize,
    ipt_runs: usize,
    iptables: bool,
    keep: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: perf [--services N] [--endpoints E] [--seed S] [--style 1.18|1.28] [--runs R] [--trace-iters K] \
         [--ipt-runs M] [--no-iptables] [--keep FILE]"
    );
    std::process::exit(2);
}

fn parse_opts(args: &[String]) -> Opts {
    let mut o = Opts {
        services: 10_000,
        endpoints: 5,
        seed: 1,
        style: KubeProxyStyle::V1_18,
        runs: 5,
        trace_iters: 20_000,
        ipt_runs: 3,
        iptables: true,
        keep: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--services" => o.services = val().parse().unwrap_or_else(|_| usage()),
            "--endpoints" => o.endpoints = val().parse().unwrap_or_else(|_| usage()),
            "--seed" => o.seed = val().parse().unwrap_or_else(|_| usage()),
            "--style" => {
                o.style = match val().as_str() {
                    "1.18" => KubeProxyStyle::V1_18,
                    "1.28" => KubeProxyStyle::V1_28,
                    _ => usage(),
                }
            }
            "--runs" => o.runs = val().parse().unwrap_or_else(|_| usage()),
            "--trace-iters" => o.trace_iters = val().parse().unwrap_or_else(|_| usage()),
            "--ipt-runs" => o.ipt_runs = val().parse().unwrap_or_else(|_| usage()),
            "--no-iptables" => o.iptables = false,
            "--keep" => o.keep = Some(PathBuf::from(val())),
            _ => usage(),
        }
    }
    o.runs = o.runs.max(1);
    o.trace_iters = o.trace_iters.max(1);
    o
}

/// A packet to trace, passed to the child as `name,src,dst,proto,sport,dport,in_iface`.
#[derive(Clone, Debug)]
struct Probe {
    name: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    udp: bool,
    sport: u16,
    dport: u16,
    in_iface: String,
}

impl Probe {
    fn arg(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}",
            self.name,
            self.src,
            self.dst,
            if self.udp { "udp" } else { "tcp" },
            self.sport,
            self.dport,
            self.in_iface
        )
    }

    fn from_arg(s: &str) -> Option<Probe> {
        let f: Vec<&str> = s.split(',').collect();
        if f.len() != 7 {
            return None;
        }
        Some(Probe {
            name: f[0].to_string(),
            src: f[1].parse().ok()?,
            dst: f[2].parse().ok()?,
            udp: f[3] == "udp",
            sport: f[4].parse().ok()?,
            dport: f[5].parse().ok()?,
            in_iface: f[6].to_string(),
        })
    }

    fn packet(&self) -> Packet {
        let (s, d) = (IpAddr::V4(self.src), IpAddr::V4(self.dst));
        let p = if self.udp {
            Packet::udp(s, self.sport, d, self.dport)
        } else {
            Packet::tcp(s, self.sport, d, self.dport)
        };
        p.with_in_iface(&self.in_iface)
    }
}

fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) this process has used, in seconds.
fn cpu_self() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU time (user + system) of the children (and their descendants) waited for so far.
fn cpu_children() -> f64 {
    // SAFETY: getrusage fills a zero-initialised rusage through a valid pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The 1/5/15-minute load averages (the cores are shared: figures depend on it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The child: read, parse R times, trace each probe K times, print `key value` lines.
fn child(args: &[String]) -> ExitCode {
    let mut file = None;
    let mut runs = 1usize;
    let mut iters = 1usize;
    let mut node_ip: Option<IpAddr> = None;
    let mut probes = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--child" => file = Some(v),
            "--runs" => runs = v.parse().unwrap_or(1),
            "--trace-iters" => iters = v.parse().unwrap_or(1),
            "--node-ip" => node_ip = v.parse().ok(),
            "--probe" => probes.extend(Probe::from_arg(&v)),
            _ => {}
        }
    }
    let (Some(file), Some(node_ip)) = (file, node_ip) else {
        eprintln!("perf child: missing --child FILE or --node-ip");
        return ExitCode::from(2);
    };
    println!("hwm_start_kb {}", vm_hwm_kb().unwrap_or(0));
    let t = Instant::now();
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => std::sync::Arc::new(t),
        Err(e) => {
            eprintln!("perf child: {file}: {e}");
            return ExitCode::from(2);
        }
    };
    println!("read_s {}", t.elapsed().as_secs_f64());
    let mut rs = None;
    for _ in 0..runs {
        drop(rs.take());
        let (t, c) = (Instant::now(), cpu_self());
        // As `kubepath netfilter trace` does: the ruleset shares the text read.
        match Ruleset::parse_shared(&file, text.clone()) {
            Ok((r, diags)) => {
                println!("parse_s {} {}", t.elapsed().as_secs_f64(), cpu_self() - c);
                println!("diagnostics {}", diags.len());
                rs = Some(r);
            }
            Err(e) => {
                eprintln!("perf child: parse error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let Some(rs) = rs else {
        return ExitCode::from(1);
    };
    let st = rs.stats();
    println!(
        "stats {} {} {} {}",
        st.tables, st.chains, st.rules, st.indexed_chains
    );
    let local = [node_ip];
    let env = Env::new(&local);
    for p in &probes {
        let pkt = p.packet();
        let (t, c) = (Instant::now(), cpu_self());
        let mut n = 0usize;
        for _ in 0..iters {
            let tr = trace(&rs, std::hint::black_box(&pkt), &env);
            n += tr.outcomes.len();
        }
        let per = t.elapsed().as_secs_f64() / iters as f64;
        let per_cpu = (cpu_self() - c) / iters as f64;
        std::hint::black_box(n);
        println!("trace_s {} {} {}", p.name, per, per_cpu);
        // The same trace without the dispatch index (plain linear scans), for comparison; it
        // must give the same outcomes.
        let lin_iters = (iters / 100).max(1);
        let (t, c) = (Instant::now(), cpu_self());
        let mut lin = None;
        for _ in 0..lin_iters {
            lin = Some(trace_linear(&rs, std::hint::black_box(&pkt), &env));
        }
        println!(
            "linear_s {} {} {}",
            p.name,
            t.elapsed().as_secs_f64() / lin_iters as f64,
            (cpu_self() - c) / lin_iters as f64
        );
        if lin.map(|l| l.outcomes) != Some(trace(&rs, &pkt, &env).outcomes) {
            println!("linear_differs {}", p.name);
        }
        for o in trace(&rs, &pkt, &env).outcomes {
            let dnat = o.dnat.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
            let reason = match &o.verdict {
                Verdict::Unknown { reason, .. } => reason.replace(' ', "_"),
                _ => "-".into(),
            };
            println!(
                "outcome {} {:.12} {} {} {} {}",
                p.name,
                o.probability,
                o.verdict.name(),
                dnat,
                o.masquerade,
                reason
            );
        }
    }
    println!("hwm_kb {}", vm_hwm_kb().unwrap_or(0));
    ExitCode::SUCCESS
}

/// Deletes the namespace it names when dropped.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Time `iptables-restore --test < file` in a throwaway namespace, `runs` times: (wall, CPU)
/// seconds per run.
fn time_iptables_restore(file: &Path, runs: usize) -> Result<Vec<(f64, f64)>, String> {
    if !is_root() {
        return Err("not root".into());
    }
    let ns = Netns(format!("kp-perf-{}", std::process::id()));
    let st = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .map_err(|e| format!("ip netns add: {e}"))?;
    if !st.success() {
        return Err(format!("ip netns add {} failed", ns.0));
    }
    let mut out = Vec::new();
    for _ in 0..runs {
        let input = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (t, c) = (Instant::now(), cpu_children());
        let o = Command::new("ip")
            .args(["netns", "exec", &ns.0, "iptables-restore", "--test"])
            .stdin(Stdio::from(input))
            .output()
            .map_err(|e| format!("iptables-restore: {e}"))?;
        let el = (t.elapsed().as_secs_f64(), cpu_children() - c);
        if !o.status.success() {
            return Err(format!(
                "iptables-restore --test failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        out.push(el);
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args);
    }
    let o = parse_opts(&args);

    let t = Instant::now();
    let mut params = KubeProxyParams::new(o.services, o.endpoints, o.seed);
    params.style = o.style;
    let rs = generate(&params);
    let gen_s = t.elapsed().as_secs_f64();
    let path = o.keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kp-perf-{}.iptables-save", std::process::id()))
    });
    if let Err(e) = std::fs::File::create(&path).and_then(|mut f| f.write_all(rs.text.as_bytes())) {
        eprintln!("perf: {}: {e}", path.display());
        return ExitCode::from(2);
    }

    // The probes and what each must give.
    let probes = probes(&rs, &params);

    // The engine, in its own process.
    let stdout = match run_child(&path, &o, &params, &probes) {
        Ok(stdout) => stdout,
        Err(code) => return code,
    };
    let report = ChildReport::read(&stdout);

    let wrong = wrong_traces(&probes, &report.outcomes, &report.linear_differs);

    let ipt = if o.iptables {
        time_iptables_restore(&path, o.ipt_runs.max(1))
    } else {
        Err("--no-iptables".into())
    };
    if o.keep.is_none() {
        let _ = std::fs::remove_file(&path);
    }

    print_measures(&o, &rs, gen_s, &report, &ipt);
    if wrong.is_empty() {
        println!(
            "\ntraces checked: {} probes, every outcome as the generated Services say",
            probes.len()
        );
        ExitCode::SUCCESS
    } else {
        println!("\nWRONG TRACES:");
        for w in &wrong {
            println!("  {w}");
        }
        ExitCode::from(1)
    }
}

/// Prints the ruleset, the engine's measures against their targets and iptables-restore's
/// (`ipt`) for comparison.
fn print_measures(
    o: &Opts,
    rs: &KubeProxyRuleset,
    gen_s: f64,
    report: &ChildReport,
    ipt: &Result<Vec<(f64, f64)>, String>,
) {
    let ChildReport {
        parse_s,
        trace_s,
        linear_s,
        outcomes,
        hwm_kb,
        read_s,
        diags,
        stats,
        ..
    } = report;
    let parse_wall = median(&mut parse_s.iter().map(|x| x.0).collect::<Vec<_>>());
    let parse_cpu = median(&mut parse_s.iter().map(|x| x.1).collect::<Vec<_>>());
    let parse_best = parse_s.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
    let peak_mb = *hwm_kb as f64 / 1024.0;
    println!(
        "kube-proxy {:?} ruleset: {} services x {} endpoints, seed {}: {} lines, {:.1} MB, {} rules, \
         {} service ports (generated in {:.2} s)",
        o.style,
        o.services,
        o.endpoints,
        o.seed,
        rs.stats.lines,
        rs.text.len() as f64 / 1e6,
        rs.stats.rules,
        rs.stats.service_ports,
        gen_s
    );
    println!(
        "engine: tables/chains/rules/indexed chains = {stats}; {diags} diagnostics; \
         file read {read_s:.3} s"
    );
    println!("load average at the end: {}", load_average());
    println!();
    println!(
        "{:<46} {:>10} {:>10} {:>10}  verdict",
        "measure", "wall", "CPU", "target"
    );
    let row = |what: &str, wall: String, cpu: String, target: String, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "",
        };
        println!("{what:<46} {wall:>10} {cpu:>10} {target:>10}  {verdict}");
    };
    row(
        &format!("parse + index (median of {})", parse_s.len()),
        format!("{parse_wall:.3} s"),
        format!("{parse_cpu:.3} s"),
        format!("<= {TARGET_PARSE_S} s"),
        Some(parse_wall <= TARGET_PARSE_S),
    );
    row(
        "parse + index (best run)",
        format!("{parse_best:.3} s"),
        String::new(),
        format!("<= {TARGET_PARSE_S} s"),
        Some(parse_best <= TARGET_PARSE_S),
    );
    match &ipt {
        Ok(v) => {
            let ipt_wall = median(&mut v.iter().map(|x| x.0).collect::<Vec<_>>());
            let ipt_cpu = median(&mut v.iter().map(|x| x.1).collect::<Vec<_>>());
            row(
                &format!("iptables-restore --test (median of {})", v.len()),
                format!("{ipt_wall:.3} s"),
                format!("{ipt_cpu:.3} s"),
                String::new(),
                None,
            );
            row(
                "speed-up over iptables-restore --test",
                format!("{:.1}x", ipt_wall / parse_wall),
                format!("{:.1}x", ipt_cpu / parse_cpu),
                format!(">= {TARGET_SPEEDUP}x"),
                Some(ipt_wall / parse_wall >= TARGET_SPEEDUP),
            );
        }
        Err(why) => println!("{:<46} skipped: {why}", "iptables-restore --test"),
    }
    for (name, wall, cpu) in trace_s {
        let n = outcomes.iter().filter(|(n, _, _)| n == name).count();
        row(
            &format!("trace {name} ({n} outcomes, mean of {})", o.trace_iters),
            format!("{:.2} us", wall * 1e6),
            format!("{:.2} us", cpu * 1e6),
            format!("<= {TARGET_TRACE_US} us"),
            Some(wall * 1e6 <= TARGET_TRACE_US),
        );
    }
    for (name, wall, cpu) in linear_s {
        row(
            &format!("  same, linear scan, no index ({name})"),
            format!("{:.2} us", wall * 1e6),
            format!("{:.2} us", cpu * 1e6),
            String::new(),
            None,
        );
    }
    row(
        "peak memory of the engine process (VmHWM)",
        format!("{peak_mb:.1} MB"),
        String::new(),
        format!("<= {TARGET_PEAK_MB} MB"),
        Some(peak_mb <= TARGET_PEAK_MB),
    );
}

/// The probes of the generated ruleset (its last ClusterIP Service port, its last NodePort
/// with policy Cluster, an unused Service address) and the outcomes each must give.
fn probes(rs: &KubeProxyRuleset, params: &KubeProxyParams) -> Vec<(Probe, Vec<String>)> {
    let client = Ipv4Addr::new(203, 0, 113, 7);
    let mut probes: Vec<(Probe, Vec<String>)> = Vec::new();
    let expect_eps =
        |svc: &kubepath_netfilter_gen::kube_proxy::GenService, target_port: u16| -> Vec<String> {
            let mut v: Vec<String> = svc
                .endpoints
                .iter()
                .map(|e| format!("ACCEPT {}:{} true", e.ip, target_port))
                .collect();
            v.sort();
            v
        };
    if let Some((svc, port)) = rs.last_cluster_ip_port() {
        probes.push((
            Probe {
                name: "last-service".into(),
                src: client,
                dst: svc.cluster_ip,
                udp: port.protocol == PortProtocol::Udp,
                sport: 40000,
                dport: port.port,
                in_iface: "eth0".into(),
            },
            expect_eps(svc, port.target_port),
        ));
    }
    if let Some((svc, port)) = rs.last_cluster_policy_node_port() {
        probes.push((
            Probe {
                name: "nodeport".into(),
                src: client,
                dst: params.node_ip,
                udp: port.protocol == PortProtocol::Udp,
                sport: 40001,
                dport: port.node_port.unwrap_or(0),
                in_iface: "eth0".into(),
            },
            expect_eps(svc, port.target_port),
        ));
    }
    // A miss: an unused address in the Service range (10.96.0.1 is never drawn).
    let miss = Ipv4Addr::new(10, 96, 0, 1);
    if !rs.is_service_address(miss, 80, PortProtocol::Tcp) {
        probes.push((
            Probe {
                name: "miss".into(),
                src: client,
                dst: miss,
                udp: false,
                sport: 40002,
                dport: 80,
                in_iface: "eth0".into(),
            },
            vec!["ACCEPT - false".to_string()],
        ));
    }
    probes
}

/// Runs the engine in a process of its own on the ruleset at `path` with the probes: its
/// output, or the exit code when it could not run or failed.
fn run_child(
    path: &Path,
    o: &Opts,
    params: &KubeProxyParams,
    probes: &[(Probe, Vec<String>)],
) -> Result<String, ExitCode> {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("perf: current_exe: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--child")
        .arg(path)
        .args(["--runs", &o.runs.to_string()])
        .args(["--trace-iters", &o.trace_iters.to_string()])
        .args(["--node-ip", &params.node_ip.to_string()]);
    for (p, _) in probes {
        cmd.args(["--probe", &p.arg()]);
    }
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("perf: running the child: {e}");
            return Err(ExitCode::from(2));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        eprintln!(
            "perf: child failed ({}):\n{}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        return Err(ExitCode::from(1));
    }
    Ok(stdout)
}

/// What the engine's process measured and traced; times are (wall, cpu) seconds.
struct ChildReport {
    parse_s: Vec<(f64, f64)>,
    trace_s: Vec<(String, f64, f64)>,
    linear_s: Vec<(String, f64, f64)>,
    linear_differs: Vec<String>,
    /// (probe, probability, `verdict dnat masquerade`).
    outcomes: Vec<(String, f64, String)>,
    hwm_kb: u64,
    read_s: f64,
    diags: usize,
    stats: String,
}

impl ChildReport {
    /// Reads the child's output lines.
    fn read(stdout: &str) -> ChildReport {
        let mut parse_s: Vec<(f64, f64)> = Vec::new();
        let mut trace_s: Vec<(String, f64, f64)> = Vec::new();
        let mut linear_s: Vec<(String, f64, f64)> = Vec::new();
        let mut linear_differs: Vec<String> = Vec::new();
        let mut outcomes: Vec<(String, f64, String)> = Vec::new();
        let (mut hwm_kb, mut read_s, mut diags, mut stats) = (0u64, 0.0, 0usize, String::new());
        for line in stdout.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["parse_s", w, c] => {
                    parse_s.push((w.parse().unwrap_or(f64::NAN), c.parse().unwrap_or(f64::NAN)))
                }
                ["read_s", v] => read_s = v.parse().unwrap_or(0.0),
                ["diagnostics", v] => diags = v.parse().unwrap_or(0),
                ["hwm_kb", v] => hwm_kb = v.parse().unwrap_or(0),
                ["stats", rest @ ..] => stats = rest.join(" "),
                ["linear_s", name, w, c] => linear_s.push((
                    name.to_string(),
                    w.parse().unwrap_or(f64::NAN),
                    c.parse().unwrap_or(f64::NAN),
                )),
                ["linear_differs", name] => linear_differs.push(name.to_string()),
                ["trace_s", name, w, c] => trace_s.push((
                    name.to_string(),
                    w.parse().unwrap_or(f64::NAN),
                    c.parse().unwrap_or(f64::NAN),
                )),
                ["outcome", name, p, verdict, dnat, masq, _reason] => outcomes.push((
                    name.to_string(),
                    p.parse().unwrap_or(0.0),
                    format!("{verdict} {dnat} {masq}"),
                )),
                _ => {}
            }
        }
        ChildReport {
            parse_s,
            trace_s,
            linear_s,
            linear_differs,
            outcomes,
            hwm_kb,
            read_s,
            diags,
            stats,
        }
    }
}

/// The probes whose outcomes are not what the generated Services say, and those where the
/// linear scan differs from the indexed trace.
fn wrong_traces(
    probes: &[(Probe, Vec<String>)],
    outcomes: &[(String, f64, String)],
    linear_differs: &[String],
) -> Vec<String> {
    let mut wrong: Vec<String> = linear_differs
        .iter()
        .map(|n| format!("{n}: trace_linear gives other outcomes than trace"))
        .collect();
    for (p, want) in probes {
        let got: Vec<&(String, f64, String)> =
            outcomes.iter().filter(|(n, _, _)| *n == p.name).collect();
        let mut got_desc: Vec<String> = got.iter().map(|(_, _, d)| d.clone()).collect();
        got_desc.sort();
        let each = 1.0 / want.len() as f64;
        let probs_ok = got.iter().all(|(_, pr, _)| (pr - each).abs() < 1e-6);
        if &got_desc != want || !probs_ok {
            wrong.push(format!(
                "{} ({}): want {:?} each p={:.6}, got {:?}",
                p.name,
                p.arg(),
                want,
                each,
                got.iter()
                    .map(|(_, pr, d)| format!("{pr:.6} {d}"))
                    .collect::<Vec<_>>()
            ));
        }
    }
    wrong
}
