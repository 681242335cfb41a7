//! `kubepath lab ...`: the network-namespace lab (root only). The work is done by the
//! `kubepath-lab` library; this module maps arguments to it and outcomes to exit codes
//! (0: everything agrees, 1: a disagreement, 2: error). See docs/lab.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kubepath_lab::{
    Lab, LabOptions, ObserveOptions, Scenario, TraceCli, DEFAULT_PREFIX, SCENARIOS,
};
use miette::{miette, IntoDiagnostic};

#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// Build a scenario's topology in network namespaces and leave it running.
    Up {
        /// A scenario name (`kubepath lab list`): seed, seed-fixed, seed-prefix-fixed, etp-local, ...
        #[arg(long, default_value = "seed")]
        scenario: String,
        /// Namespace-name prefix (a-z, 0-9): several labs can run side by side.
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Tear a lab down completely: FRR daemons, pod servers, namespaces, files.
    Down {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Collect a running lab's real outputs into a kubepath snapshot directory.
    Snapshot {
        dir: PathBuf,
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
    },
    /// Open N connections from the client of a running lab and print what each did.
    Observe {
        #[arg(long, default_value = DEFAULT_PREFIX)]
        prefix: String,
        #[arg(long, default_value_t = 300)]
        connections: u16,
        /// Print every connection as JSON.
        #[arg(long)]
        json: bool,
    },
    /// For each scenario: build, observe, snapshot, compare with `kubepath trace`, tear down.
    /// Prints a table per scenario; exits 1 on any disagreement.
    Test {
        /// Scenarios to run (default: all).
        #[arg(long)]
        scenario: Vec<String>,
        #[arg(long, default_value = "kplt")]
        prefix: String,
        #[arg(long, default_value_t = 300)]
        connections: u16,
        /// First client source port (ports first..first+connections-1).
        #[arg(long, default_value_t = 40000)]
        first_port: u16,
        /// Where to keep the scenarios' snapshots.
        #[arg(long, default_value = "/tmp/kubepath-lab-snapshots")]
        snapshots: PathBuf,
        /// Only check the lab's own claims; do not run `kubepath trace`.
        #[arg(long)]
        no_trace: bool,
    },
    /// Random whole-path differential: for each of COUNT seeds from SEED (or the seeds of
    /// --seeds FILE), generate a topology, build it, snapshot it, trace it, open real
    /// connections and compare. Prints every disagreement with its seed, topology and both
    /// answers; exits 1 on any disagreement.
    Fuzz(FuzzArgs),
    /// List the scenarios.
    List,
    /// (internal) Run a lab's pod servers until killed; started by `lab up`.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        prefix: String,
    },
}

/// `kubepath lab fuzz`.
#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    #[arg(long, default_value_t = 10)]
    count: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the seeds listed in FILE (one per line, `#` comments) instead.
    #[arg(long)]
    seeds: Option<PathBuf>,
    /// Namespace prefix (default: kf<pid>).
    #[arg(long)]
    prefix: Option<String>,
    /// Connections per round (a failing comparison is repeated once on fresh ports).
    #[arg(long, default_value_t = 240)]
    connections: u16,
    #[arg(long, default_value = "/tmp/kubepath-fuzz")]
    snapshots: PathBuf,
    /// Append the seed of every disagreement to FILE (the CI regression list).
    #[arg(long)]
    regressions: Option<PathBuf>,
    /// Only print the generated topologies (nothing is built; no root needed).
    #[arg(long)]
    describe: bool,
}

fn lab_err(e: kubepath_lab::LabError) -> miette::Report {
    miette!("{e}")
}

pub fn run(cmd: LabCommand) -> miette::Result<ExitCode> {
    match cmd {
        LabCommand::List => {
            let w = SCENARIOS.iter().map(|n| n.len()).max().unwrap_or(0);
            for name in SCENARIOS {
                let s = Scenario::by_name(name).map_err(lab_err)?;
                super::io::outln(format_args!("{name:w$} {}", s.summary));
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Up { scenario, prefix } => up(&scenario, &prefix),
        LabCommand::Fuzz(args) => fuzz(args),
        LabCommand::Down { prefix } => {
            kubepath_lab::require_root().map_err(lab_err)?;
            kubepath_lab::teardown_prefix(&prefix).map_err(lab_err)?;
            super::io::outln(format_args!("lab `{prefix}` is down"));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Serve { prefix } => {
            kubepath_lab::serve_forever(&prefix).map_err(lab_err)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Snapshot { dir, prefix } => {
            kubepath_lab::require_root().map_err(lab_err)?;
            let lab = Lab::attach(&prefix).map_err(lab_err)?;
            let files = kubepath_lab::collect_snapshot(&lab, &dir).map_err(lab_err)?;
            super::io::outln(format_args!(
                "snapshot of scenario `{}` in {}: {} files",
                lab.scenario.name,
                dir.display(),
                files.files.len()
            ));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Observe {
            prefix,
            connections,
            json,
        } => {
            kubepath_lab::require_root().map_err(lab_err)?;
            let lab = Lab::attach(&prefix).map_err(lab_err)?;
            let opts = ObserveOptions {
                connections,
                ..Default::default()
            };
            let obs = kubepath_lab::observe(&lab, &opts).map_err(lab_err)?;
            if json {
                super::io::outln(format_args!(
                    "{}",
                    serde_json::to_string_pretty(&obs).into_diagnostic()?
                ));
            } else {
                super::io::outln(format_args!(
                    "scenario {}: {} connections",
                    obs.scenario,
                    obs.connections.len()
                ));
                super::io::outln(format_args!("  verdicts     {:?}", obs.verdicts()));
                super::io::outln(format_args!("  leaves       {:?}", obs.leaves()));
                super::io::outln(format_args!("  nodes        {:?}", obs.nodes()));
                super::io::outln(format_args!("  ingress pods {:?}", obs.ingress_pods()));
                super::io::outln(format_args!("  backends     {:?}", obs.backends()));
                super::io::outln(format_args!("  rp_filter    {:?}", obs.rp_filter_drops));
                for a in &obs.anomalies {
                    super::io::outln(format_args!("  anomaly: {a}"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Test {
            scenario,
            prefix,
            connections,
            first_port,
            snapshots,
            no_trace,
        } => {
            kubepath_lab::require_root().map_err(lab_err)?;
            let names: Vec<String> = if scenario.is_empty() {
                SCENARIOS.iter().map(|s| s.to_string()).collect()
            } else {
                scenario
            };
            let exe = std::env::current_exe().into_diagnostic()?;
            let predictor = TraceCli { exe };
            let lab_opts = LabOptions {
                prefix,
                ..Default::default()
            };
            if u32::from(first_port) + u32::from(connections) > 65536 {
                return Err(miette!(
                    "--first-port {first_port} + --connections {connections} exceeds port 65535"
                ));
            }
            let obs_opts = ObserveOptions {
                connections,
                first_port,
                ..Default::default()
            };
            let mut all_agree = true;
            let mut reports = Vec::new();
            for name in &names {
                let report = kubepath_lab::run_scenario(
                    name,
                    &lab_opts,
                    &obs_opts,
                    &snapshots,
                    if no_trace { None } else { Some(&predictor) },
                )
                .map_err(lab_err)?;
                super::io::out(&report.table());
                super::io::outln(format_args!(
                    "  ({:.1} s; snapshot in {})\n",
                    report.seconds,
                    report.snapshot.display()
                ));
                all_agree &= report.agrees();
                reports.push(report);
            }
            // The proposed fixes against the kernel, where the lab built the fixed state too
            // (e.g. `--scenario strict-leak --scenario strict-leak-rpfix`).
            for c in kubepath_lab::fix_checks(&reports) {
                super::io::out(&c.table());
                all_agree &= c.agrees();
            }
            Ok(if all_agree {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn up(scenario: &str, prefix: &str) -> miette::Result<ExitCode> {
    let s = Scenario::by_name(scenario).map_err(lab_err)?;
    let opts = LabOptions {
        prefix: prefix.to_string(),
        serve_in_process: false,
        ..Default::default()
    };
    let lab = Lab::up(s, &opts).map_err(lab_err)?;
    // The pod servers outlive this command: a `kubepath lab serve` process, ended by
    // `kubepath lab down` through its pid file. Dropping `lab` on failure tears everything
    // down, the server process included.
    let exe = std::env::current_exe().into_diagnostic()?;
    kubepath_lab::start_detached_server(&lab, &exe, &["lab", "serve", "--prefix", prefix])
        .map_err(lab_err)?;
    let name = lab.scenario.name;
    let state = lab.detach();
    super::io::outln(format_args!(
        "lab `{}` is up: scenario {name}, {} namespaces ({}-*). Try `kubepath lab observe --prefix {p}`, `kubepath lab snapshot DIR --prefix {p}`; `kubepath lab down --prefix {p}` removes it.",
        state.prefix,
        state.namespaces.len(),
        state.prefix,
        p = state.prefix
    ));
    Ok(ExitCode::SUCCESS)
}

fn fuzz(args: FuzzArgs) -> miette::Result<ExitCode> {
    use kubepath_lab::fuzz;
    let FuzzArgs {
        count,
        seed,
        seeds,
        prefix,
        connections,
        snapshots,
        regressions,
        describe,
    } = args;
    let list: Vec<u64> = match &seeds {
        // Read as the snapshot loader reads files: a FIFO or a device (`/dev/zero`) is
        // refused, not waited on or read without end (issue #11).
        Some(f) => fuzz::parse_seeds(&super::io::read_text_arg(f)?),
        None => (seed..seed.saturating_add(count)).collect(),
    };
    if let Some(f) = regressions.as_deref().filter(|f| f.exists()) {
        // The list is read back before a seed is appended: the same rules, checked up front.
        super::io::read_text_arg(f)?;
    }
    if describe {
        for s in list {
            super::io::out(&fuzz::Topology::generate(s).describe());
        }
        return Ok(ExitCode::SUCCESS);
    }
    kubepath_lab::require_root().map_err(lab_err)?;
    let mut opts = fuzz::FuzzOptions {
        connections,
        snapshots,
        ..Default::default()
    };
    if let Some(p) = prefix {
        opts.prefix = p;
    }
    if u32::from(opts.first_port) + 2 * u32::from(connections) > 65536 {
        return Err(miette!("--connections {connections} is too large"));
    }
    let predictor = TraceCli {
        exe: std::env::current_exe().into_diagnostic()?,
    };
    let start = Instant::now();
    let (mut agree, mut disagree, mut errors, mut resampled) = (0usize, 0usize, 0usize, 0usize);
    let mut verdicts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut failed = Vec::new();
    for s in list {
        match fuzz::run_seed(s, &opts, &predictor) {
            Ok(r) => {
                if r.rounds.len() > 1 {
                    resampled += 1;
                }
                for v in r.predicted_verdicts.split(", ") {
                    if let Some(name) = v.split_whitespace().next() {
                        *verdicts.entry(name.to_string()).or_default() += 1;
                    }
                }
                super::io::out(&r.text());
                super::io::outln(format_args!("  ({:.1} s)", r.seconds));
                if r.agrees() {
                    agree += 1;
                } else {
                    disagree += 1;
                    failed.push(s);
                    if let Some(f) = &regressions {
                        let first = r.text();
                        fuzz::save_regression(f, s, &first).map_err(lab_err)?;
                    }
                }
            }
            Err(e) => {
                errors += 1;
                failed.push(s);
                super::io::outln(format_args!("seed {s}: ERROR {e}"));
            }
        }
    }
    super::io::outln(format_args!(
        "fuzz: {} topologies in {:.0} s: {agree} agree, {disagree} disagree, {errors} errors; {resampled} re-sampled; predicted verdicts (topologies): {}",
        agree + disagree + errors,
        start.elapsed().as_secs_f64(),
        verdicts
            .iter()
            .map(|(v, n)| format!("{v} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if !failed.is_empty() {
        super::io::outln(format_args!("failing seeds: {failed:?}"));
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
