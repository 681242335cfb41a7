//! The random whole-path differential in CI: every seed of `crates/lab/fuzz-seeds.txt` (a
//! fixed list) and of `crates/lab/fuzz-regressions.txt` (seeds that once disagreed) is
//! generated, built in namespaces, observed with real connections, snapshotted, traced by the
//! `kubepath` binary and compared (docs/lab.md, "Random whole-path differential"). Every
//! disagreement fails the test: nothing is gated as known. False alarms of a correct engine
//! are bounded below 1e-4 per run (Bonferroni per comparison, one re-sample).
//!
//! Runs only as root with `KUBEPATH_PRIV_TESTS=1`; otherwise prints `skipped: …`. The binary:
//! `$KUBEPATH_BIN`, or `kubepath` next to this test's target directory (`cargo build -p
//! kubepath` first).

use std::path::Path;
use std::time::Instant;

use kubepath_lab::fuzz::{read_seeds, run_seed, FuzzOptions};
use kubepath_lab::TraceCli;

mod support;

use kubepath_netfilter_gen::privileged;
use support::{kubepath_bin, leftovers};

#[test]
fn seeded_topologies_agree_with_the_kernel() {
    if !privileged::gate("seeded_topologies_agree_with_the_kernel", &["ip"]) {
        return;
    }
    let Some(exe) = kubepath_bin() else {
        panic!("no kubepath binary: build it (`cargo build -p kubepath`) or set KUBEPATH_BIN");
    };
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = read_seeds(&here.join("fuzz-seeds.txt")).expect("fuzz-seeds.txt");
    for s in read_seeds(&here.join("fuzz-regressions.txt")).unwrap_or_default() {
        if !seeds.contains(&s) {
            seeds.push(s);
        }
    }
    assert!(!seeds.is_empty());
    let opts = FuzzOptions {
        prefix: format!("kft{}", std::process::id() % 100_000),
        snapshots: std::env::temp_dir().join(format!("kubepath-fuzz-ci-{}", std::process::id())),
        ..Default::default()
    };
    let predictor = TraceCli { exe };
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut agree = 0;
    for &seed in &seeds {
        match run_seed(seed, &opts, &predictor) {
            Ok(r) => {
                print!("{}", r.text());
                if r.agrees() {
                    agree += 1;
                } else {
                    failures.push(format!("seed {seed} disagrees"));
                }
            }
            Err(e) => failures.push(format!("seed {seed}: {e}")),
        }
    }
    println!(
        "fuzz: {} seeds in {:.0} s, {agree} agree",
        seeds.len(),
        start.elapsed().as_secs_f64()
    );
    let left = leftovers(&opts.prefix);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Everything agreed: the snapshots are not needed (on failure they stay for the report).
    let _ = std::fs::remove_dir_all(&opts.snapshots);
}
