//! `kubepath netfilter trace` through the built binary: JSON for the seed demo, exit 2 with
//! file:line:column for a malformed ruleset.

use std::process::Command;

mod support;
use support::root;

fn kubepath(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run kubepath")
}

const SEED: &[&str] = &[
    "netfilter",
    "trace",
    "--ruleset",
    "fixtures/iptables/ok/seed-node.iptables-save",
    "--src",
    "10.210.150.87",
    "--sport",
    "56200",
    "--dst",
    "10.33.151.160",
    "--dport",
    "80",
    "--proto",
    "tcp",
    "--in-iface",
    "ccd_ecfe_om",
    "--local",
    "10.33.151.70",
    "--local",
    "10.0.10.105",
];

#[test]
fn seed_demo_json() {
    let mut args = SEED.to_vec();
    args.push("--json");
    let out = kubepath(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["schema"], "kubepath.netfilter-trace/v1");
    let outcomes = v["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 4);
    let mut dnats: Vec<&str> = Vec::new();
    let mut total = 0.0;
    for o in outcomes {
        let p = o["probability"].as_f64().unwrap();
        total += p;
        assert!((p - 0.25).abs() < 1e-6);
        assert_eq!(o["verdict"], "ACCEPT");
        assert_eq!(o["masquerade"], true);
        dnats.push(o["dnat"].as_str().unwrap());
        let steps = o["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s["chain"] != "KUBE-MARK-DROP"));
        for s in steps {
            assert!(
                s["table"].is_string()
                    && s["line"].is_u64()
                    && s["text"].as_str().unwrap().starts_with("-A ")
            );
        }
    }
    assert!((total - 1.0).abs() < 1e-9);
    dnats.sort();
    assert_eq!(
        dnats,
        [
            "192.168.103.142:80",
            "192.168.107.128:80",
            "192.168.176.202:80",
            "192.168.95.125:80"
        ]
    );
}

#[test]
fn seed_demo_text() {
    let out = kubepath(SEED);
    assert_eq!(out.status.code(), Some(0));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("4 outcomes"), "{s}");
    assert_eq!(s.matches("] probability 0.2500 (25.00%)").count(), 4, "{s}");
    assert!(s.contains("DNAT to 192.168.95.125:80"));
    assert!(s.contains("nat/KUBE-SVC-REQ4FPVT7WYF4VLA"));
    assert!(!s.contains("KUBE-MARK-DROP "));
}

#[test]
fn iptables_s_files_combine_one_per_table() {
    let out = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        "fixtures/iptables/ok/seed-node-nat.iptables-S.txt",
        "--src",
        "10.210.150.87",
        "--dst",
        "10.33.151.160",
        "--dport",
        "443",
        "--proto",
        "tcp",
        "--in-iface",
        "ccd_ecfe_om",
        // `iptables -t nat -S` shows one table: the others are not loaded, the user says.
        "--tables-complete",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes = v["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 4);
    assert!(outcomes
        .iter()
        .all(|o| o["dnat"].as_str().unwrap().ends_with(":443")));
}

/// A ruleset pasted with the prompts around it (#10): the prompt lines are skipped with the
/// snapshot readers' prompt grammar, and the table comes from the echoed `iptables -t nat -S`
/// even when the file name does not name it.
#[test]
fn ruleset_with_prompt_lines_reads_like_snapshot_inspect() {
    let body =
        std::fs::read_to_string(root().join("fixtures/iptables/ok/seed-node-nat.iptables-S.txt"))
            .unwrap();
    // Without the fixture's own prompt line (`control-plane-mjnp4:/home/eccd # iptables -t nat -S`).
    let body = body.split_once('\n').unwrap().1;
    let dir = std::env::temp_dir().join(format!("kubepath-prompt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (k, (before, after)) in [
        ("/ # iptables -t nat -S", "/ # "),
        ("[root@node1 ~]# iptables -t nat -S", "[root@node1 ~]#"),
        ("core@node1 ~ $ sudo iptables -t nat -S", ""),
        ("PS C:\\Users\\me> iptables -t nat -S", ""),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("rules-{k}.txt"));
        std::fs::write(&path, format!("{before}\n{body}{after}\n")).unwrap();
        let out = kubepath(&[
            "netfilter",
            "trace",
            "--ruleset",
            path.to_str().unwrap(),
            "--src",
            "10.210.150.87",
            "--dst",
            "10.33.151.160",
            "--dport",
            "443",
            "--proto",
            "tcp",
            "--in-iface",
            "ccd_ecfe_om",
            "--absent-tables",
            "raw,mangle,filter,security",
            "--json",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{before}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let outcomes = v["outcomes"].as_array().unwrap();
        assert_eq!(outcomes.len(), 4, "{before}");
        assert!(outcomes
            .iter()
            .all(|o| o["dnat"].as_str().unwrap().ends_with(":443")));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_ruleset_exits_2_with_file_line_column() {
    let out = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        "fixtures/iptables/err/unknown-option.iptables-save",
        "--src",
        "10.0.0.1",
        "--dst",
        "10.0.0.2",
        "--proto",
        "tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fixtures/iptables/err/unknown-option.iptables-save:5:24"),
        "{err}"
    );
    assert!(
        err.contains("expected an option of match `-m tcp`"),
        "{err}"
    );
}

#[test]
fn bad_usage_exits_2() {
    let out = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        "x",
        "--src",
        "10.0.0.1",
        "--dst",
        "10.0.0.2",
        "--proto",
        "gre",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        "/nonexistent/file",
        "--src",
        "10.0.0.1",
        "--dst",
        "10.0.0.2",
        "--proto",
        "tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// The verdicts of `netfilter trace` for a packet arriving on eth0 for 10.0.0.2:80 (forwarded),
/// with these files and extra arguments.
fn forwarded_verdicts(
    files: &[&std::path::Path],
    extra: &[&str],
) -> (Option<i32>, Vec<serde_json::Value>) {
    let mut args = vec!["netfilter", "trace"];
    for f in files {
        args.push("--ruleset");
        args.push(f.to_str().unwrap());
    }
    args.extend([
        "--src",
        "10.9.9.9",
        "--dst",
        "10.0.0.2",
        "--dport",
        "80",
        "--proto",
        "tcp",
        "--in-iface",
        "eth0",
        "--json",
    ]);
    args.extend(extra);
    let out = kubepath(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (
        out.status.code(),
        v["outcomes"].as_array().cloned().unwrap_or_default(),
    )
}

/// #11: a table missing from the --ruleset files is not collected (UNKNOWN at its hooks, with
/// a note naming it and the flag that says it is absent), unless the user says it is not
/// loaded (`--absent-tables`, `--tables-complete`) or the file is a whole `iptables-save`, by
/// the rule a snapshot's files are read with. It used to be taken as not loaded (ACCEPT).
#[test]
fn a_table_missing_from_the_rulesets_is_unknown_unless_said_absent() {
    let dir = std::env::temp_dir().join(format!("kubepath-absent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let filter = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";
    // `iptables-save -t filter`, echoed: one table.
    let by_table = dir.join("rules.txt");
    std::fs::write(
        &by_table,
        format!("node1:~ # iptables-save -t filter\n{filter}"),
    )
    .unwrap();
    // A file named after its table.
    let named = dir.join("node1-filter.iptables-save");
    std::fs::write(&named, filter).unwrap();
    // A whole `iptables-save` (echoed without -t, or a name without a table).
    let whole = dir.join("node1.iptables-save");
    std::fs::write(&whole, format!("node1:~ # iptables-save\n{filter}")).unwrap();
    let whole_unnamed = dir.join("dump.txt");
    std::fs::write(&whole_unnamed, filter).unwrap();

    for f in [&by_table, &named] {
        // The first hook of a forwarded packet is raw/PREROUTING.
        let (code, o) = forwarded_verdicts(&[f], &[]);
        assert_eq!(code, Some(0), "{f:?}");
        assert_eq!(o.len(), 1, "{f:?}: {o:?}");
        assert_eq!(o[0]["verdict"], "UNKNOWN", "{f:?}: {o:?}");
        let why = o[0]["reason"].to_string() + &o[0]["notes"].to_string();
        assert!(why.contains("raw table was not collected"), "{f:?}: {why}");
        assert!(why.contains("--absent-tables raw"), "{f:?}: {why}");
        // raw and mangle said absent: nat is next, and named.
        let (_, o) = forwarded_verdicts(&[f], &["--absent-tables", "raw,mangle"]);
        assert_eq!(o[0]["verdict"], "UNKNOWN", "{f:?}: {o:?}");
        let why = o[0]["reason"].to_string() + &o[0]["notes"].to_string();
        assert!(why.contains("nat table was not collected"), "{f:?}: {why}");
        assert!(why.contains("--absent-tables nat"), "{f:?}: {why}");
        // Every missing table said absent, or all at once: the filter rule accepts.
        for extra in [
            &["--absent-tables", "raw,mangle,nat,security"][..],
            &[
                "--absent-tables",
                "raw",
                "--absent-tables",
                "mangle,nat,security",
            ][..],
            &["--tables-complete"][..],
        ] {
            let (code, o) = forwarded_verdicts(&[f], extra);
            assert_eq!(code, Some(0), "{f:?} {extra:?}");
            assert_eq!(o.len(), 1, "{f:?} {extra:?}: {o:?}");
            assert_eq!(o[0]["verdict"], "ACCEPT", "{f:?} {extra:?}: {o:?}");
        }
    }
    // A whole iptables-save says which tables the kernel has: the others are not loaded.
    for f in [&whole, &whole_unnamed] {
        let (_, o) = forwarded_verdicts(&[f], &[]);
        assert_eq!(o.len(), 1, "{f:?}: {o:?}");
        assert_eq!(o[0]["verdict"], "ACCEPT", "{f:?}: {o:?}");
    }
    // Saying absent a table the files have is a usage error; so is an unknown table name, and
    // both flags at once.
    let (code, _) = forwarded_verdicts(&[&named], &["--absent-tables", "filter"]);
    assert_eq!(code, Some(2));
    let (code, _) = forwarded_verdicts(&[&named], &["--absent-tables", "nat,broute"]);
    assert_eq!(code, Some(2));
    let (code, _) = forwarded_verdicts(&[&named], &["--absent-tables", "nat", "--tables-complete"]);
    assert_eq!(code, Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kubepath ARGS` with at most 4 GB of address space, killed after 20 s: a regression that
/// reads `/dev/zero` without end or blocks on a FIFO fails the test instead of taking the
/// machine down or hanging it. None when `sh` cannot set `ulimit -v` here.
fn kubepath_bounded(args: &[&str]) -> Option<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let limits = Command::new("sh")
        .args(["-c", "ulimit -v 4000000 && exec true"])
        .status()
        .is_ok_and(|s| s.success());
    if !limits {
        return None;
    }
    let mut child = Command::new("sh")
        .current_dir(root())
        .arg("-c")
        .arg("ulimit -v 4000000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kubepath"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sh");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > Duration::from_secs(20) {
            // `exec`: the shell's process is kubepath's, ours to end.
            let _ = child.kill();
            let _ = child.wait();
            panic!("kubepath {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Some(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Issue #11 (reviewer defect): `--ruleset /dev/zero` read until memory ran out, a FIFO
/// blocked forever and a 3 GB sparse file was read whole. Files named on the command line are
/// read under the snapshot loader's rules: a FIFO or device is refused without blocking, a
/// file over 512 MiB without being read; exit 2 naming the file and why.
#[test]
fn ruleset_ipset_and_seed_files_are_read_as_snapshot_files_are() {
    let dir = support::scratch("netfilter-file-args");
    let fifo = dir.join("rules.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    // Sparse: 600 MiB of size, no blocks.
    let huge = dir.join("huge.iptables-save");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(600 << 20)
        .unwrap();
    let (fifo, huge) = (fifo.to_str().unwrap(), huge.to_str().unwrap());
    let seed = "fixtures/iptables/ok/seed-node.iptables-save";
    let packet = ["--src", "1.1.1.1", "--dst", "2.2.2.2", "--proto", "tcp"];
    let device = "not a regular file (FIFO, socket or device)";
    let large = "too large (629145600 bytes, the limit is 536870912 bytes = 512 MiB)";
    let mut cases: Vec<(Vec<&str>, &str, &str)> = Vec::new();
    for (file, why) in [("/dev/zero", device), (fifo, device), (huge, large)] {
        cases.push((vec!["netfilter", "trace", "--ruleset", file], file, why));
        cases.push((
            vec!["netfilter", "trace", "--ruleset", seed, "--ipset", file],
            file,
            why,
        ));
        cases.push((
            vec!["lab", "fuzz", "--describe", "--seeds", file],
            file,
            why,
        ));
    }
    for (mut args, file, why) in cases {
        if args[0] == "netfilter" {
            args.extend(packet);
        }
        let Some(out) = kubepath_bounded(&args) else {
            println!("skipped: `sh -c 'ulimit -v N'` is not available");
            break;
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        // miette wraps the message (at spaces and after hyphens): compare without them.
        let flat = |s: &str| s.replace(|c: char| c.is_whitespace() || c == '│', "");
        assert!(
            flat(&err).contains(&flat(&format!("cannot read {file}: {why}"))),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
