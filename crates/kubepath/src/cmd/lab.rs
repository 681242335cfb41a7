//! `kubepath lab ...`: the network-namespace lab (root only). The work is done by the
//! `kubepath-lab` library; this module maps arguments to it and outcomes to exit codes
//! (0: everything agrees, 1: a disagreement, 2: error). See docs/lab.md.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use kubepath_lab::{
    Lab, LabOptions, ObserveOptions, Scenario, TraceCli, DEFAULT_PREFIX, SCENARIOS,
};
use miette::{miette, IntoDiagnostic};

#[derive(clap::Subcommand, Debug)]
pub enum LabCommand {
    /// Build a scenario's topology in network namespaces and leave it running.
    Up {
        /// seed | seed-fixed | etp-local | rp-filter-strict | no-endpoints
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
    /// List the scenarios.
    List,
    /// (internal) Run a lab's pod servers until killed; started by `lab up`.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        prefix: String,
    },
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
                println!("{name:w$} {}", s.summary);
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Up { scenario, prefix } => up(&scenario, &prefix),
        LabCommand::Down { prefix } => {
            kubepath_lab::require_root().map_err(lab_err)?;
            kubepath_lab::teardown_prefix(&prefix).map_err(lab_err)?;
            println!("lab `{prefix}` is down");
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
            println!(
                "snapshot of scenario `{}` in {}: {} files",
                lab.scenario.name,
                dir.display(),
                files.files.len()
            );
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
                println!("{}", serde_json::to_string_pretty(&obs).into_diagnostic()?);
            } else {
                println!(
                    "scenario {}: {} connections",
                    obs.scenario,
                    obs.connections.len()
                );
                println!("  verdicts     {:?}", obs.verdicts());
                println!("  leaves       {:?}", obs.leaves());
                println!("  nodes        {:?}", obs.nodes());
                println!("  ingress pods {:?}", obs.ingress_pods());
                println!("  backends     {:?}", obs.backends());
                println!("  rp_filter    {:?}", obs.rp_filter_drops);
                for a in &obs.anomalies {
                    println!("  anomaly: {a}");
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
                print!("{}", report.table());
                println!(
                    "  ({:.1} s; snapshot in {})\n",
                    report.seconds,
                    report.snapshot.display()
                );
                all_agree &= report.agrees();
                reports.push(report);
            }
            // The proposed fixes against the kernel, where the lab built the fixed state too
            // (e.g. `--scenario strict-leak --scenario strict-leak-rpfix`).
            for c in kubepath_lab::fix_checks(&reports) {
                print!("{}", c.table());
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
    // The pod servers outlive this command: a `kubepath lab serve` process in its own
    // process group, ended by `kubepath lab down` through its pid file.
    let exe = std::env::current_exe().into_diagnostic()?;
    let log = std::fs::File::create(lab.dir.join("server.log")).into_diagnostic()?;
    let child = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(exe)
            .args(["lab", "serve", "--prefix", prefix])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .into_diagnostic()?
    };
    std::fs::write(lab.dir.join("server.pid"), child.id().to_string()).into_diagnostic()?;
    let ready = lab.dir.join("server.ready");
    let start = Instant::now();
    while !ready.exists() {
        if start.elapsed() > Duration::from_secs(15) {
            // Dropping `lab` tears everything down, the server process included.
            return Err(miette!(
                "the pod servers did not start; see {}",
                lab.dir.join("server.log").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let name = lab.scenario.name;
    let state = lab.detach();
    println!(
        "lab `{}` is up: scenario {name}, {} namespaces ({}-*). Try `kubepath lab observe --prefix {p}`, `kubepath lab snapshot DIR --prefix {p}`; `kubepath lab down --prefix {p}` removes it.",
        state.prefix,
        state.namespaces.len(),
        state.prefix,
        p = state.prefix
    );
    Ok(ExitCode::SUCCESS)
}
