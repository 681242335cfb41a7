//! `kubepath bench` checks `--from` and `--to` as `kubepath trace` does (one function, the
//! same refusals, exit 2), and `--trace-runs` is 1 to 100000.

use std::path::PathBuf;
use std::process::Command;

fn dc173() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/dc173")
        .display()
        .to_string()
}

fn kubepath(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(args)
        .output()
        .expect("run kubepath");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_refuses_what_trace_refuses() {
    let snap = dc173();
    let cases: [(&str, &str, &str); 7] = [
        (
            "10.210.150.87",
            "http://[::ffff:10.33.151.160]/",
            "different address families",
        ),
        (
            "::1",
            "http://[2001:db8::1]/",
            "cannot be a client's source",
        ),
        (
            "127.0.0.1",
            "10.33.151.160:80",
            "cannot be a client's source",
        ),
        ("10.210.150.87:0", "10.33.151.160:80", "source port 0"),
        ("not-an-ip", "10.33.151.160:80", "expected an IP address"),
        ("10.210.150.87", "http://a b/", "expected a host name"),
        (
            "10.210.150.87",
            "http://127.0.0.1/",
            "cannot be a service's address",
        ),
    ];
    for (from, to, wanted) in cases {
        let (tc, _, terr) = kubepath(&["trace", &snap, "--from", from, "--to", to]);
        let (bc, bout, berr) = kubepath(&[
            "bench",
            &snap,
            "--from",
            from,
            "--to",
            to,
            "--no-check",
            "--no-reach",
        ]);
        assert_eq!(tc, Some(2), "trace {from} {to}: {terr}");
        assert_eq!(bc, Some(2), "bench {from} {to}: {bout}{berr}");
        let flat = berr.replace('│', " ");
        let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(wanted), "bench {from} {to}: {berr}");
        assert_eq!(terr, berr, "trace and bench say the same for {from} {to}");
    }
}

#[test]
fn bench_trace_runs_is_1_to_100000() {
    let snap = dc173();
    let ok = [
        "--from",
        "10.210.150.87",
        "--to",
        "http://dc173prometheus1.cloud.k2.ericsson.se/",
    ];
    for bad in ["0", "100001"] {
        let mut args = vec![
            "bench",
            &snap,
            "--no-check",
            "--no-reach",
            "--trace-runs",
            bad,
        ];
        args.extend_from_slice(&ok);
        let (code, out, err) = kubepath(&args);
        assert_eq!(code, Some(2), "--trace-runs {bad}: {out}{err}");
        assert!(err.contains("--trace-runs"), "{err}");
    }
    let (code, out, err) = kubepath(&["bench", "--help"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 to 100000"), "{out}");
    let mut args = vec![
        "bench",
        &snap,
        "--no-check",
        "--no-reach",
        "--trace-runs",
        "1",
    ];
    args.extend_from_slice(&ok);
    let (code, out, err) = kubepath(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("trace (median of 1,"), "{out}");
}
