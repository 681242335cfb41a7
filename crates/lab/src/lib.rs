//! The network-namespace lab: kubepath's reference topologies built for real on one Linux
//! machine, so that the kernel and FRR can be compared with kubepath's trace.
//!
//! ```no_run
//! use kubepath_lab::{Lab, LabOptions, ObserveOptions, Scenario};
//! # fn main() -> Result<(), kubepath_lab::LabError> {
//! let lab = Lab::up(Scenario::by_name("seed")?, &LabOptions { prefix: "demo".into(), ..Default::default() })?;
//! let obs = kubepath_lab::observe(&lab, &ObserveOptions::default())?;
//! println!("{:?}", obs.verdicts());
//! lab.down()?;
//! # Ok(()) }
//! ```
//!
//! Root only. Every namespace, FRR daemon and file of a lab carries its prefix, and
//! [`teardown_prefix`] removes all of them; see docs/lab.md.

mod compare;
mod frr;
pub mod fuzz;
mod k8s;
mod kubeproxy;
mod kubeproxy_nft;
mod lab;
mod observe;
mod pods;
mod runner;
mod scenario;
mod sh;
mod snapshot;
use kubepath_netfilter_gen::stats;

pub use compare::{
    compare, compare_with, compatible, is_chi_square, lab_checks, Check, CompareOptions,
    Comparison, PredictedFix, Prediction, ALPHA,
};
pub use lab::{
    run_dir, serve_forever, start_detached_server, teardown_prefix, Lab, LabOptions, LabState,
    DEFAULT_PREFIX, RUN_ROOT,
};
pub use observe::{observe, ConnObservation, Observation, ObserveOptions, Outcome};
pub use pods::PodServers;
pub use runner::{
    drop_fix, fix_checks, fix_scenario, negative_mutation, relax_rp_filter, run_scenario,
    Predictor, ScenarioReport, TraceCli,
};
pub use scenario::{ProxyMode, Scenario, SCENARIOS};
pub use sh::{require_root, LabError, Result};
pub use snapshot::{collect as collect_snapshot, SnapshotFiles};
pub use stats::{chi_square, chi_square_sf, ChiSquare};
