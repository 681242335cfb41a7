//! Every subcommand's output into a closed pipe (`kubepath ... | head -c 10` after `head` has
//! exited) ends quietly with the command's own exit code, never a panic ("failed printing to
//! stdout", exit 101); and a parse error far along a huge line is shown as a window of the
//! line, never the whole line nor a panic of miette's renderer (columns past 65,535).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

mod support;
use support::root;

/// The write end of a pipe whose reader has exited: the stdin of a `true` that was waited
/// for (std::io::pipe needs Rust 1.87, the MSRV is 1.85).
fn closed_pipe() -> Stdio {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("run true");
    let w = reader.stdin.take().expect("stdin pipe");
    reader.wait().expect("wait for true");
    Stdio::from(w)
}

/// Run kubepath; with `close_stdout` (`close_stderr`), its stdout (stderr) is a pipe whose read end is already
/// closed, so its first write fails with EPIPE (Rust ignores SIGPIPE).
fn run(args: &[&str], close_stdout: bool, close_stderr: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubepath"));
    cmd.current_dir(root()).args(args);
    if close_stdout {
        cmd.stdout(closed_pipe());
    } else {
        cmd.stdout(Stdio::piped());
    }
    if close_stderr {
        cmd.stderr(closed_pipe());
    } else {
        cmd.stderr(Stdio::piped());
    }
    cmd.output().expect("run kubepath")
}

const PROM: &str = "http://dc173prometheus1.cloud.k2.ericsson.se/";

fn commands() -> Vec<Vec<&'static str>> {
    let nf = vec![
        "netfilter",
        "trace",
        "--ruleset",
        "fixtures/iptables/ok/seed-node.iptables-save",
        "--src",
        "10.210.150.87",
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
    ];
    let mut v = vec![
        vec![
            "trace",
            "examples/dc173",
            "--from",
            "10.210.150.87",
            "--to",
            PROM,
        ],
        vec![
            "trace",
            "examples/dc173",
            "--from",
            "10.210.150.87",
            "--to",
            PROM,
            "--json",
        ],
        vec![
            "trace",
            "examples/dc173",
            "--from",
            "10.210.150.87",
            "--to",
            PROM,
            "--format",
            "dot",
        ],
        vec!["snapshot", "inspect", "examples/dc173"],
        vec!["snapshot", "inspect", "examples/dc173", "--json"],
        vec!["announce", "examples/dc173"],
        vec!["announce", "examples/dc173", "--json"],
        vec!["ingress", "match", "examples/dc173", "--url", PROM],
        vec![
            "ingress",
            "match",
            "examples/dc173",
            "--url",
            PROM,
            "--json",
        ],
    ];
    let mut nfj = nf.clone();
    nfj.push("--json");
    // With a table said absent, and one not collected (UNKNOWN, with its note).
    let mut nfa = nf.clone();
    nfa.extend(["--absent-tables", "raw,mangle,security"]);
    let mut nfu = nfj.clone();
    nfu[3] = "fixtures/iptables/ok/seed-node-nat.iptables-S.txt";
    let mut nfc = nfu.clone();
    nfc.push("--tables-complete");
    v.push(nf);
    v.push(nfj);
    v.push(nfa);
    v.push(nfu);
    v.push(nfc);
    // Lists the scenarios; needs no root.
    v.push(vec!["lab", "list"]);
    // Generated from the CLI definition.
    v.push(vec!["completions", "bash"]);
    v.push(vec!["man"]);
    // Issue #11: describes generated topologies; needs no root either.
    v.push(vec!["lab", "fuzz", "--describe", "--count", "50"]);
    v
}

fn assert_quiet(args: &[&str], out: &Output, expect: Option<i32>) {
    let err = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        !err.contains("panicked") && code != Some(101),
        "`kubepath {}`: exit {code:?}, stderr:\n{err}",
        args.join(" ")
    );
    assert_eq!(code, expect, "`kubepath {}`: {err}", args.join(" "));
}

#[test]
fn every_subcommand_ends_quietly_into_a_closed_pipe() {
    if !root().join("examples/dc173").is_dir() {
        println!("skipped: examples/dc173 is not there");
        return;
    }
    for args in commands() {
        let normal = run(&args, false, false);
        assert!(
            normal.stdout.len() > 10,
            "`kubepath {}` printed nothing: {}",
            args.join(" "),
            String::from_utf8_lossy(&normal.stderr)
        );
        let code = normal.status.code();
        assert!(matches!(code, Some(0 | 1)), "{args:?}: {code:?}");
        let closed = run(&args, true, false);
        assert_quiet(&args, &closed, code);
        // stderr closed as well (diagnostics, if any, have nowhere to go).
        let both = run(&args, true, true);
        assert_eq!(both.status.code(), code, "{args:?}");
    }
    // An input error with a closed stderr: exit 2, no panic.
    let bad = [
        "netfilter",
        "trace",
        "--ruleset",
        "fixtures/iptables/err/unknown-option.iptables-save",
        "--src",
        "1.1.1.1",
        "--dst",
        "2.2.2.2",
        "--proto",
        "tcp",
    ];
    let out = run(&bad, true, true);
    assert_eq!(out.status.code(), Some(2));
    // A table said absent that the ruleset has: exit 2, no panic.
    let mut bad = commands()
        .into_iter()
        .find(|a| a[0] == "netfilter")
        .unwrap_or_default();
    bad.extend(["--absent-tables", "nat"]);
    let out = run(&bad, true, true);
    assert_eq!(out.status.code(), Some(2));
}

/// Other write errors are not quiet: into /dev/full (ENOSPC) the answer is incomplete, so the
/// exit code is 2 and stderr says why.
#[test]
fn a_full_disk_is_an_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        println!("skipped: no /dev/full");
        return;
    };
    for args in [
        &["snapshot", "inspect", "fixtures/ingress/basic"][..],
        &["lab", "fuzz", "--describe", "--count", "50"],
        &["lab", "list"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kubepath"))
            .current_dir(root())
            .args(args)
            .stdout(Stdio::from(full.try_clone().expect("dup /dev/full")))
            .stderr(Stdio::piped())
            .output()
            .expect("run kubepath");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("cannot write the output"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Issue #11: with stdout closed (`kubepath check DIR >&-`) the answer cannot be written: exit 2
/// with a message on stderr, as into /dev/full (it was exit 1, silently).
#[test]
fn a_closed_stdout_is_an_error() {
    let out = Command::new("sh")
        .current_dir(root())
        .args([
            "-c",
            "exec \"$0\" snapshot inspect fixtures/ingress/basic >&-",
            env!("CARGO_BIN_EXE_kubepath"),
        ])
        .stderr(Stdio::piped())
        .output()
        .expect("run sh");
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(target_os = "linux") {
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("standard output is closed"), "{err}");
    }
    // `>/dev/null` is not a closed stdout.
    let out = Command::new("sh")
        .current_dir(root())
        .args([
            "-c",
            "exec \"$0\" snapshot inspect fixtures/ingress/basic >/dev/null",
            env!("CARGO_BIN_EXE_kubepath"),
        ])
        .stderr(Stdio::piped())
        .output()
        .expect("run sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn an_error_on_a_huge_line_shows_a_window_of_it() {
    let dir = Scratch(std::env::temp_dir().join(format!("kp-huge-{}", std::process::id())));
    let node = dir.0.join("nodes/n1");
    std::fs::create_dir_all(&node).unwrap();
    // 3 MB of blanks (a comment may not be that long: iptables' limit is 255 bytes), then an
    // unknown option at column ~3,000,010.
    let long = format!(
        "-A INPUT -p tcp{} --bogus 1 -j ACCEPT",
        " ".repeat(3_000_000)
    );
    let col = long.find("--bogus").unwrap() + 1;
    let text = format!("*filter\n:INPUT ACCEPT [0:0]\n{long}\nCOMMIT\n");
    let rules = node.join("iptables-save.txt");
    std::fs::write(&rules, &text).unwrap();
    let rules_s = rules.display().to_string();
    let dir_s = dir.0.display().to_string();
    for args in [
        vec![
            "netfilter",
            "trace",
            "--ruleset",
            &rules_s,
            "--src",
            "1.1.1.1",
            "--dst",
            "2.2.2.2",
            "--proto",
            "tcp",
        ],
        vec!["--strict", "snapshot", "inspect", &dir_s],
        vec!["--strict", "announce", &dir_s],
        vec![
            "--strict",
            "trace",
            &dir_s,
            "--from",
            "1.1.1.1",
            "--to",
            "2.2.2.2:80",
        ],
        vec!["--strict", "ingress", "match", &dir_s, "--url", "http://x/"],
    ] {
        let out = run(&args, false, false);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.len() < 4_000, "{args:?}: {} bytes of stderr", err.len());
        assert!(err.contains(&format!(":3:{col}")), "{args:?}: {err}");
        assert!(err.contains("--bogus"), "{args:?}: {err}");
    }
}
