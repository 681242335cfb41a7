//! `kubepath lab fuzz`: random whole-path differential testing against the kernel.
//!
//! For each seed: [`Topology::generate`] draws a topology of the family described in
//! [`topo`], [`FuzzLab::up`] builds it in namespaces, [`FuzzLab::snapshot`] collects it with
//! the real commands, `kubepath trace --json` predicts, and real connections from the client
//! are compared with the prediction ([`crate::compare_with`]): verdict shares, entry routers,
//! each entry router's nodes, nodes, ingress pods (per node), backends, chi-square per split.
//!
//! False alarms are bounded: the chi-square tests of one comparison share [`FAMILY_ALPHA`]
//! (Bonferroni: each runs at `FAMILY_ALPHA / k`), a category expected fewer than
//! [`MIN_EXPECTED`] times need not be observed, and a failing comparison is repeated once on
//! fresh source ports (a new sample for every ECMP hash and every random DNAT choice): a
//! topology counts as a disagreement only when both rounds fail. For a correct engine one
//! round fails with probability at most `FAMILY_ALPHA + 60 e^-MIN_EXPECTED` ≈ 1.02e-3 (at most
//! about 60 required categories in a comparison), both rounds (independent samples) with at
//! most ≈ 1.04e-6, so a CI run of 40 topologies fails a correct engine with probability
//! below 5e-5.

pub mod net;
pub mod topo;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use net::{classify, Evidence, FuzzLab};
pub use topo::Topology;

use crate::compare::{compare_with, is_chi_square, Check, CompareOptions, Comparison};
use crate::observe::{Observation, ObserveOptions};
use crate::runner::Predictor;
use crate::sh::Result;

/// The family-wise significance level of one comparison's chi-square tests.
pub const FAMILY_ALPHA: f64 = 0.001;
/// See [`crate::CompareOptions::min_expected`]: e^-15 ≈ 3e-7 per category and round.
pub const MIN_EXPECTED: f64 = 15.0;

/// Knobs of one fuzz run.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// Namespace prefix (unique per run; `-<seed>` is not appended: one topology at a time).
    pub prefix: String,
    pub connections: u16,
    /// First source port of the first round; the re-sample uses the next `connections`.
    pub first_port: u16,
    /// Where each topology's snapshot is kept (`<dir>/seed-<seed>`).
    pub snapshots: PathBuf,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        FuzzOptions {
            prefix: format!("kf{}", std::process::id() % 100_000),
            connections: 240,
            first_port: 20000,
            snapshots: std::env::temp_dir().join("kubepath-fuzz"),
        }
    }
}

/// The outcome of one topology.
#[derive(Debug, Clone)]
pub struct FuzzReport {
    pub seed: u64,
    pub description: String,
    /// The comparison of each round (one, or two when the first failed).
    pub rounds: Vec<Comparison>,
    pub observed_verdicts: Vec<String>,
    pub predicted_verdicts: String,
    pub snapshot: PathBuf,
    pub seconds: f64,
}

impl FuzzReport {
    /// The last round agrees.
    pub fn agrees(&self) -> bool {
        self.rounds.last().is_some_and(Comparison::agrees)
    }

    /// Seed, topology and both answers.
    pub fn text(&self) -> String {
        let mut s = format!(
            "seed {} ({}): kubepath {} | kernel {}\n",
            self.seed,
            if self.agrees() { "agrees" } else { "DISAGREES" },
            self.predicted_verdicts,
            self.observed_verdicts.join("; then ")
        );
        if !self.agrees() {
            s.push_str(&self.description);
            for r in &self.rounds {
                s.push_str(&r.table());
            }
            s.push_str(&format!("  snapshot: {}\n", self.snapshot.display()));
        }
        s
    }
}

/// Compares with Bonferroni over the chi-square tests of the comparison.
pub fn compare_fuzz(pred: &crate::Prediction, obs: &Observation) -> Comparison {
    let loose = CompareOptions {
        alpha: FAMILY_ALPHA,
        min_expected: MIN_EXPECTED,
        fuzz_pods: true,
    };
    let k = compare_with(pred, obs, &loose)
        .checks
        .iter()
        .filter(|c| is_chi_square(c))
        .count()
        .max(1);
    let mut c = compare_with(
        pred,
        obs,
        &CompareOptions {
            alpha: FAMILY_ALPHA / k as f64,
            ..loose
        },
    );
    let anomalies = &obs.anomalies;
    c.checks.push(Check {
        name: "the kernel's evidence is consistent".into(),
        predicted: "no anomaly".into(),
        observed: if anomalies.is_empty() {
            "none".into()
        } else {
            anomalies.join("; ")
        },
        ok: anomalies.is_empty(),
    });
    c
}

fn verdict_text(obs: &Observation) -> String {
    obs.verdicts()
        .iter()
        .map(|(v, n)| format!("{v} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds, snapshots, predicts, observes and compares one seed's topology, then tears it down.
pub fn run_seed(seed: u64, opts: &FuzzOptions, predictor: &dyn Predictor) -> Result<FuzzReport> {
    let start = Instant::now();
    let topo = Topology::generate(seed);
    let description = topo.describe();
    let snapshot = opts.snapshots.join(format!("seed-{seed}"));
    if snapshot.exists() {
        std::fs::remove_dir_all(&snapshot).map_err(crate::sh::io_err(snapshot.display()))?;
    }
    let lab = FuzzLab::up(&topo, &opts.prefix)?;
    lab.snapshot(&snapshot)?;
    let prediction = predictor.predict(&snapshot);
    let mut rounds = Vec::new();
    let mut observed_verdicts = Vec::new();
    let predicted_verdicts;
    match prediction {
        Err(why) => {
            predicted_verdicts = format!("error: {why}");
            rounds.push(Comparison {
                scenario: format!("fuzz seed {seed}"),
                checks: vec![Check {
                    name: "kubepath trace on the snapshot".into(),
                    predicted: format!("unavailable: {why}"),
                    observed: "-".into(),
                    ok: false,
                }],
            });
        }
        Ok(pred) => {
            predicted_verdicts = pred
                .verdicts
                .iter()
                .map(|(v, p)| format!("{v} {p:.3}"))
                .collect::<Vec<_>>()
                .join(", ");
            for round in 0..2u16 {
                let o = ObserveOptions {
                    connections: opts.connections,
                    first_port: opts.first_port + round * opts.connections,
                    batch: usize::from(opts.connections),
                    ..Default::default()
                };
                let obs = lab.observe(&o)?;
                observed_verdicts.push(verdict_text(&obs));
                let c = compare_fuzz(&pred, &obs);
                let ok = c.agrees();
                rounds.push(c);
                if ok {
                    break;
                }
            }
        }
    }
    // A debugging aid: keep the topology up for a look (`ip netns exec <prefix>-node-1 ...`).
    if let Some(secs) = std::env::var("KUBEPATH_FUZZ_HOLD_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        eprintln!(
            "seed {seed}: holding the topology up for {secs} s (prefix {})",
            opts.prefix
        );
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    lab.down()?;
    Ok(FuzzReport {
        seed,
        description,
        rounds,
        observed_verdicts,
        predicted_verdicts,
        snapshot,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Reads a seed list: one seed per line, `#` comments.
pub fn read_seeds(path: &Path) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(path).map_err(crate::sh::io_err(path.display()))?;
    Ok(parse_seeds(&text))
}

/// The seeds of a seed list's text: one seed per line, `#` comments. (The binary reads a
/// `--seeds FILE` itself, under the snapshot loader's rules for files, and hands the text.)
pub fn parse_seeds(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Appends `seed` (with a comment) to a regression list unless it is already there.
pub fn save_regression(path: &Path, seed: u64, why: &str) -> Result<()> {
    let known = if path.exists() {
        read_seeds(path)?
    } else {
        Vec::new()
    };
    if known.contains(&seed) {
        return Ok(());
    }
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    let why = why.lines().next().unwrap_or("");
    text.push_str(&format!("{seed} # {why}\n"));
    std::fs::write(path, text).map_err(crate::sh::io_err(path.display()))
}
