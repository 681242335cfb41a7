//! Issue #15, item 1: `kubepath gen snapshot` writes the same bytes for a seed, the snapshot
//! loads without an error, identical rulesets are parsed once and shared (each node still
//! citing its own file), and a client reaches an ingress host with the expected split.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubepath_netfilter_gen::snapshot::{write_snapshot, SnapshotParams};

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn generated_snapshot_is_deterministic_loads_and_delivers() {
    let base = std::env::temp_dir().join(format!("kubepath-gen-{}", std::process::id()));
    let a = TempDir(base.join("a"));
    let b = TempDir(base.join("b"));
    let _base = TempDir(base.clone());
    let p = SnapshotParams::new(50, 5, 5, 20, 7);
    let s = write_snapshot(&a.0, &p).expect("write a");
    write_snapshot(&b.0, &p).expect("write b");
    let fa = files(&a.0);
    assert_eq!(fa, files(&b.0), "the same seed writes the same bytes");
    assert_eq!(fa.len(), s.files);
    // Another seed, another snapshot.
    let c = TempDir(base.join("c"));
    write_snapshot(&c.0, &SnapshotParams::new(50, 5, 5, 20, 8)).expect("write c");
    assert_ne!(fa, files(&c.0));

    // 5 nodes, 3 with an ingress pod: 3 rulesets of their own + 1 shared by the other 2.
    assert_eq!(s.distinct_rulesets, 4);
    let snap = kubepath_ingest::load_snapshot(&a.0).expect("loads");
    let errors: Vec<_> = snap
        .diagnostics
        .iter()
        .filter(|d| d.severity == kubepath_ingest::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(snap.model.nodes.len(), 5);
    let workers: Vec<&String> = snap
        .model
        .nodes
        .keys()
        .filter(|n| !s.ingress_nodes.contains(n))
        .collect();
    assert_eq!(workers.len(), 2);
    let (w0, w1) = (&snap.model.nodes[workers[0]], &snap.model.nodes[workers[1]]);
    assert!(
        Arc::ptr_eq(
            w0.netfilter.as_ref().unwrap(),
            w1.netfilter.as_ref().unwrap()
        ),
        "identical rulesets are parsed once"
    );
    let own = format!("nodes/{}/iptables-save.txt", workers[1]);
    assert_eq!(
        w1.netfilter_cites,
        vec![(
            Arc::from(format!("nodes/{}/iptables-save.txt", workers[0]).as_str()),
            Arc::from(own.as_str())
        )]
    );
    assert!(w1.iptables_dumps.iter().all(|d| *d.source.file == *own));

    // Every host: delivered, 1/2 per leaf, 1/3 per ingress node and pod, 1/E per backend.
    for h in s.hosts.iter().take(5) {
        let req = kubepath_sim::trace::TraceRequest {
            client: s.client.into(),
            client_port: None,
            target: kubepath_sim::trace::Target::parse(&format!("http://{}/", h.host)).unwrap(),
            proto: kubepath_sim::trace::L4::Tcp,
            what_if: Vec::new(),
        };
        let r = kubepath_sim::trace::trace(&snap.model, &req);
        assert!(r.all_delivered(), "{}: {:?}", h.host, r.verdicts);
        assert_eq!(r.distribution_nodes.len(), 3);
        for (n, p) in &r.distribution_nodes {
            assert!(s.ingress_nodes.contains(n), "{n}");
            assert!((p - 1.0 / 3.0).abs() < 1e-6, "{n} {p}");
        }
        assert_eq!(r.distribution_ingress_pods.len(), 3);
        for p in r.distribution_ingress_pods.values() {
            assert!((p - 1.0 / 3.0).abs() < 1e-6, "{p}");
        }
        assert_eq!(r.distribution_backends.len(), h.endpoints.len());
        for (b, p) in &r.distribution_backends {
            assert!(
                (p - 1.0 / h.endpoints.len() as f64).abs() < 1e-6,
                "{}: {b} {p}",
                h.host
            );
        }
    }

    // check: every flow traced, nothing above a warning.
    let report = kubepath_sim::check::check(&snap.model);
    assert!(!report.flows.is_empty());
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.severity < kubepath_sim::check::Severity::Error),
        "{:#?}",
        report.findings
    );
}

fn kubepath(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(args)
        .output()
        .expect("run kubepath")
}

/// Every size is checked, and the estimated output size, before anything is written: out of
/// bounds is exit 2 naming the argument and its limit, and no directory is left behind.
#[test]
fn gen_snapshot_refuses_sizes_out_of_bounds_before_writing() {
    let base =
        TempDir(std::env::temp_dir().join(format!("kubepath-genlim-{}", std::process::id())));
    std::fs::create_dir_all(&base.0).unwrap();
    let dir = base.0.join("snap");
    let d = dir.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--services", "18446744073709551615"],
            &["--services 18446744073709551615", "at most 1048572"],
        ),
        (
            &["--nodes", "100000000", "--services", "1"],
            &["--nodes 100000000", "at most 4079"],
        ),
        (
            &["--services", "4294967296", "--nodes", "1"],
            &["--services 4294967296", "at most 1048572"],
        ),
        (
            &[
                "--ingress-hosts",
                "100000000",
                "--services",
                "1",
                "--nodes",
                "2",
            ],
            &["--ingress-hosts 100000000", "at most 100000"],
        ),
        (
            &[
                "--endpoints-per-service",
                "100000000",
                "--services",
                "1",
                "--nodes",
                "2",
            ],
            &["--endpoints-per-service 100000000", "at most 1000"],
        ),
        (
            &[
                "--services",
                "1000000",
                "--endpoints-per-service",
                "8",
                "--nodes",
                "1",
            ],
            &["--endpoints-per-service 8", "at most 4", "10.128.0.0/9"],
        ),
        (
            &[
                "--nodes",
                "50000",
                "--services",
                "1",
                "--ingress-hosts",
                "1",
            ],
            &["--nodes 50000", "at most 4079"],
        ),
        (&["--nodes", "0"], &["--nodes 0", "at least 1"]),
        (
            &["--ingress-nodes", "0"],
            &["--ingress-nodes 0", "at least 1"],
        ),
        // Within every bound, but bigger than --max-bytes: the estimate is refused.
        (
            &[
                "--nodes",
                "4000",
                "--services",
                "1",
                "--ingress-hosts",
                "1",
                "--max-bytes",
                "100000000",
            ],
            &["about 981", "95.4 MiB (100000000 bytes)"],
        ),
        // Bigger than any disk (petabytes): refused for the free space, whatever --max-bytes.
        (
            &[
                "--services",
                "1048572",
                "--endpoints-per-service",
                "3",
                "--nodes",
                "4079",
                "--max-bytes",
                "1",
            ],
            &["free on the file system of"],
        ),
    ];
    for (args, wanted) in cases {
        let mut all = vec!["gen", "snapshot", d];
        all.extend_from_slice(args);
        let out = kubepath(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let flat = err
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("│ ", "");
        for w in *wanted {
            assert!(flat.contains(w), "{args:?}: no {w:?} in {flat}");
        }
        assert!(!dir.exists(), "{args:?}: {d} was created");
    }
    // A plain file or a device is not a directory.
    let file = base.0.join("file");
    std::fs::write(&file, "x").unwrap();
    for target in [file.to_str().unwrap(), "/dev/null"] {
        let out = kubepath(&["gen", "snapshot", target, "--services", "1", "--nodes", "1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("is not a directory"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    // Small sizes within the limits are written.
    let out = kubepath(&[
        "gen",
        "snapshot",
        d,
        "--services",
        "3",
        "--endpoints-per-service",
        "2",
        "--nodes",
        "2",
        "--ingress-hosts",
        "1",
        "--max-bytes",
        "2000000",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("kubepath.yaml").is_file());
}
