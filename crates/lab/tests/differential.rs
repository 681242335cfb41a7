//! The differential test: every scenario built for real in network namespaces, 300 real
//! connections observed, the lab's snapshot traced by kubepath, and the two compared (verdict,
//! nodes, pods, chi-square shares at p = 0.001, the ECMP node per source port), plus the
//! deliberately wrong prediction (`seed-fixed`'s snapshot without the /32 fix) that must be
//! caught. Runs only as root with `KUBEPATH_PRIV_TESTS=1`; otherwise prints `skipped: …`.
//!
//! kubepath's prediction comes from the `kubepath` binary (`kubepath trace SNAPSHOT --from
//! 10.210.150.87 --to http://lab.kubepath.test/ --json`): `$KUBEPATH_BIN`, or `kubepath` in
//! the target directory this test was built in (build it first: `cargo build -p kubepath`).

use std::path::PathBuf;

use kubepath_lab::{run_scenario, LabOptions, ObserveOptions, TraceCli, RUN_ROOT, SCENARIOS};

fn skip_reason() -> Option<String> {
    if std::env::var("KUBEPATH_PRIV_TESTS").as_deref() != Ok("1") {
        return Some("KUBEPATH_PRIV_TESTS=1 is not set".into());
    }
    if kubepath_lab::require_root().is_err() {
        return Some("not running as root".into());
    }
    None
}

fn kubepath_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KUBEPATH_BIN") {
        return Some(PathBuf::from(p));
    }
    // <target>/debug/deps/differential-HASH -> <target>/debug/kubepath
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("kubepath");
    candidate.exists().then_some(candidate)
}

fn leftovers(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let want = format!("{prefix}-");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&want))
        .map(String::from)
        .collect();
    let dir = PathBuf::from(RUN_ROOT).join(prefix);
    if dir.exists() {
        v.push(dir.display().to_string());
    }
    v
}

#[test]
fn kubepath_agrees_with_the_kernel_on_every_scenario() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let started = std::time::Instant::now();
    let prefix = format!("kpd{}", std::process::id());
    let lab_opts = LabOptions {
        prefix: prefix.clone(),
        ..Default::default()
    };
    // Source ports 40000-40299. The routers' multipath hash seeds are fixed by the lab, so the
    // ECMP choices (and their chi-square tests) are the same on every run: only kube-proxy's
    // random DNAT choice varies, which keeps the false-alarm rate of the p = 0.001 tests low.
    let obs_opts = ObserveOptions::default();
    let snapshots = std::env::temp_dir().join(format!("kubepath-lab-diff-{}", std::process::id()));
    let bin = kubepath_bin();
    let predictor = bin.clone().map(|exe| TraceCli { exe });

    let mut failures = Vec::new();
    for name in SCENARIOS {
        let report = run_scenario(
            name,
            &lab_opts,
            &obs_opts,
            &snapshots,
            predictor
                .as_ref()
                .map(|p| p as &dyn kubepath_lab::Predictor),
        );
        // Teardown is complete whatever happened.
        assert_eq!(leftovers(&prefix), Vec::<String>::new(), "after {name}");
        let report = report.unwrap_or_else(|e| panic!("scenario {name}: {e}"));
        print!("{}", report.table());
        println!("  ({:.1} s)\n", report.seconds);
        assert_eq!(report.observation.connections.len(), 300);
        if !report.lab.agrees() {
            failures.push(format!(
                "{name}: the lab does not show what the scenario claims"
            ));
        }
        match &report.trace {
            None => failures.push(format!(
                "{name}: no kubepath binary to predict with (set KUBEPATH_BIN or `cargo build -p kubepath`)"
            )),
            Some(t) if !t.agrees() => failures.push(format!("{name}: kubepath disagrees with the lab")),
            Some(_) => {}
        }
        if let Some(n) = &report.negative {
            if !n.agrees() {
                failures.push(format!(
                    "{name}: the deliberately wrong prediction was not caught"
                ));
            }
        } else if kubepath_lab::negative_mutation(name).is_some() && predictor.is_some() {
            failures.push(format!("{name}: the negative check did not run"));
        }
    }
    let _ = std::fs::remove_dir_all(&snapshots);
    let elapsed = started.elapsed();
    println!("differential test: {:.1} s", elapsed.as_secs_f64());
    assert!(
        elapsed.as_secs() < 300,
        "the target must take under 5 minutes"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A failure late in `Lab::up` (BGP given no time to converge, after every namespace, FRR
/// daemon and pod server has started) leaves nothing behind: no namespace, no FRR daemon, no
/// file.
#[test]
fn teardown_is_complete_after_a_failed_up() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let prefix = format!("kpf{}", std::process::id());
    let opts = LabOptions {
        prefix: prefix.clone(),
        converge_timeout: std::time::Duration::ZERO,
        ..Default::default()
    };
    let scenario = kubepath_lab::Scenario::by_name("seed").expect("seed");
    let err = match kubepath_lab::Lab::up(scenario, &opts) {
        Ok(_) => panic!("BGP cannot converge in zero time"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("did not converge"), "{err}");
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(
        !ps.lines()
            .any(|l| l.contains("/usr/lib/frr/") && l.contains(&format!("/{prefix}/"))),
        "an FRR daemon of {prefix} survived"
    );
}
