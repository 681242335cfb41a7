//! Control characters from the snapshot (file names, node directory names, an iptables
//! comment holding ESC, BEL, CR) never reach the terminal raw: text output and error messages
//! show them escaped (`\x1b`), JSON escapes them by itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;
use support::copy_dir;

const EVIL: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\r";

fn kubepath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(args)
        .output()
        .expect("run kubepath")
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ruleset() -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m comment --comment \"x{EVIL}y\" -j DROP\nCOMMIT\n"
    )
}

fn assert_clean(what: &str, out: &Output) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let s = String::from_utf8_lossy(bytes);
        assert!(
            !s.contains(['\u{1b}', '\u{7}', '\r']),
            "{what}: raw control characters on {name}: {s:?}"
        );
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn text_output_and_errors_escape_control_characters() {
    let dir = Scratch(std::env::temp_dir().join(format!("kp-escapes-{}", std::process::id())));
    let node = dir.0.join(format!("nodes/node{EVIL}1"));
    let rules = node.join(format!("iptables{EVIL}.txt"));
    write(&rules, &ruleset());
    let rules_s = rules.display().to_string();
    let dir_s = dir.0.display().to_string();

    // netfilter trace: the matched rule (with its comment) and the file name are shown.
    let nf = [
        "netfilter",
        "trace",
        "--ruleset",
        &rules_s,
        "--src",
        "10.0.0.2",
        "--dst",
        "10.0.0.1",
        "--proto",
        "tcp",
        "--dport",
        "80",
        "--local",
        "10.0.0.1",
    ];
    let out = kubepath(&nf);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("netfilter trace", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("x\\x1b]0;pwned\\x07\\x1b[2J\\x0dy"), "{text}");
    // JSON keeps the characters, escaped by JSON itself.
    let mut nfj = nf.to_vec();
    nfj.push("--json");
    let out = kubepath(&nfj);
    assert_clean("netfilter trace --json", &out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.to_string().contains("\\u001b]0;pwned"), "{v}");

    // snapshot inspect lists the file (its name and its node's name hold ESC).
    let out = kubepath(&["snapshot", "inspect", &dir_s]);
    assert_clean("snapshot inspect", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("node\\x1b]0;pwned"), "{text}");
    let out = kubepath(&["announce", &dir_s]);
    assert_clean("announce", &out);
    // diff names both snapshots (whose path holds ESC) in its text.
    let out = kubepath(&["diff", &dir_s, &dir_s]);
    assert_clean("diff", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no change"), "{text}");

    // An error in such a file: the message, file name and snippet are escaped.
    let bad = node.join(format!("bad{EVIL}.rules"));
    write(
        &bad,
        &format!("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment \"{EVIL}\" --bogus 1\nCOMMIT\n"),
    );
    for args in [
        vec!["--strict", "snapshot", "inspect", &dir_s],
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
        vec!["--strict", "diff", &dir_s, &dir_s],
        vec!["--strict", "check", &dir_s, "--format", "sarif"],
    ] {
        let out = kubepath(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_clean(&format!("{args:?}"), &out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad\\x1b]0;pwned") && err.contains("--bogus"),
            "{err}"
        );
    }
    let bad_s = bad.display().to_string();
    let out = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        &bad_s,
        "--src",
        "1.1.1.1",
        "--dst",
        "2.2.2.2",
        "--proto",
        "tcp",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_clean("netfilter trace (error)", &out);
}

fn replace_in(p: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(p).unwrap();
    assert!(s.contains(from), "{from} not in {}", p.display());
    std::fs::write(p, s.replace(from, to)).unwrap();
}

/// No line of `what`'s output starts with the injected text, and the name is shown with `\n`.
fn assert_one_line(what: &str, out: &Output) {
    assert_clean(what, out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.lines().any(|l| l.trim_start().starts_with("FAKE")),
        "{what}: a newline of the data started a line: {text}"
    );
    assert!(text.contains("\\nFAKE"), "{what}: {text}");
}

/// A newline in a name of the snapshot (a manifest client, a Service, a pod) is shown as `\n`
/// in every text output: it cannot forge a line ("FAKE: 0 findings").
#[test]
fn newlines_in_names_do_not_start_lines() {
    let dir = Scratch(std::env::temp_dir().join(format!("kp-newlines-{}", std::process::id())));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    copy_dir(&root.join("fixtures/trace/delivered"), &dir.0);
    replace_in(
        &dir.0.join("kubepath.yaml"),
        "- name: users",
        "- name: \"users\\nFAKE: 0 findings\"",
    );
    let pod = "ingress-nginx-controller-7c9d8f6b5-k2x4p";
    for f in ["pods.yaml", "endpoints.yaml"] {
        replace_in(
            &dir.0.join("cluster").join(f),
            &format!("name: {pod}"),
            &format!("name: \"{pod}\\nFAKE: pod\""),
        );
    }
    write(
        &dir.0.join("cluster/ghost.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: \"ghost\\nFAKE: service\"\n  namespace: shop\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.77.1\n  ports:\n  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 8080\n  selector:\n    app: ghost\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: 10.99.0.11\n",
    );
    let d = dir.0.display().to_string();
    let healthy = root.join("fixtures/trace/delivered").display().to_string();
    for args in [
        vec!["check", &d],
        vec!["reach", &d],
        vec!["diff", &healthy, &d],
        vec!["trace", &d, "--from", "10.200.0.1", "--to", "10.99.0.10:80"],
        vec!["snapshot", "inspect", &d],
        vec!["announce", &d],
    ] {
        let out = kubepath(&args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_one_line(&format!("{args:?}"), &out);
    }
}

/// The user's own arguments are quoted escaped in errors too: `--from`, the part of `--to`
/// a parse error quotes ("found '...'"), and a `--ruleset` path that cannot be read.
#[test]
fn argument_errors_escape_control_characters() {
    let snap = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/dc173");
    let snap = snap.display().to_string();
    let missing = std::env::temp_dir()
        .join(format!("kp-no-such-{}-{EVIL}.txt", std::process::id()))
        .display()
        .to_string();
    let from_esc = "1.2.3.4\u{1b}[31m";
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "trace --from",
            vec!["trace", &snap, "--from", from_esc, "--to", "10.0.0.1:80"],
        ),
        (
            "trace --from ESC/BEL",
            vec![
                "trace",
                &snap,
                "--from",
                "1.2.3.4\u{7}",
                "--to",
                "10.0.0.1:80",
            ],
        ),
        (
            "trace --to",
            vec![
                "trace",
                &snap,
                "--from",
                "10.0.0.2",
                "--to",
                "http://x\u{7}y\u{1b}[2J/",
            ],
        ),
        (
            "bench --from",
            vec!["bench", &snap, "--from", from_esc, "--to", "10.0.0.1:80"],
        ),
        (
            "bench --to",
            vec![
                "bench",
                &snap,
                "--from",
                "10.0.0.2",
                "--to",
                "http://x\u{7}y/",
            ],
        ),
        (
            "netfilter trace --ruleset",
            vec![
                "netfilter",
                "trace",
                "--ruleset",
                &missing,
                "--src",
                "10.0.0.2",
                "--dst",
                "10.0.0.1",
                "--proto",
                "tcp",
                "--dport",
                "80",
            ],
        ),
    ];
    for (what, args) in cases {
        let out = kubepath(&args);
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
        assert!(!out.stderr.is_empty(), "{what}: an error is printed");
        assert_clean(what, &out);
    }
}
