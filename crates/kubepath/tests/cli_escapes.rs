//! Control characters from the snapshot (file names, node directory names, an iptables
//! comment holding ESC, BEL, CR) never reach the terminal raw: text output and error messages
//! show them escaped (`\x1b`), JSON escapes them by itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
