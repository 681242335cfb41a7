//! Parser acceptance against `iptables-restore --test` (iptables 1.8.9).
//!
//! As root with `KUBEPATH_PRIV_TESTS=1` (otherwise it prints `skipped: ...` and passes), this
//! creates a network namespace of its own, then runs every `iptables-save` fixture under
//! `fixtures/iptables/{ok,err}` and a few hundred generated variants of valid rulesets (policies
//! `-`/ACCEPT/DROP/bogus on built-in and user chains, missing or extra COMMIT, duplicate
//! chains, unknown tables, counter forms, table blocks given twice, chain-name lengths,
//! `-F`/`-X`/`-Z`, NAT ports without a protocol, DROP in nat, whitespace) through both `iptables-legacy-restore --test` and `iptables-nft-restore --test`
//! inside it, and asserts that kubepath's parser accepts exactly the files that both accept.
//!
//! The oracle is the conjunction of the two back ends because each lets through what the
//! other refuses, and a snapshot may come from a node running either (observed with 1.8.9,
//! `--test`): legacy refuses a policy on a user chain (`:FOO ACCEPT`), `-P` on a user chain, a
//! second `:FOO` in one block, `-N` of a declared chain, `-j` to a chain not declared or
//! declared in an earlier block; nft `--test` checks none of these but refuses chain names
//! starting with `-` or `!`. Every file on which the back ends differ is printed.
//!
//! Deliberate differences (each is asserted to go the documented way, so the list cannot go
//! stale):
//! - [`LENIENT_WHITESPACE`]: kubepath trims every line (CR, indentation, trailing blanks) and
//!   skips blank and comment lines wherever they are indented; iptables-restore recognises
//!   `*`, `:`, `#` and `COMMIT` only in column 1 and as the whole line (`COMMIT ` and
//!   `COMMIT\r` are "Bad argument"), so it refuses every CRLF file. Snapshots are captured
//!   outputs that went through tickets, editors and terminals; their meaning is unambiguous.
//! - [`KERNEL_CHECKED`]: `--test` only runs the user-space parser; the kernel's own checks
//!   (a target's `checkentry`, e.g. MASQUERADE only in nat) run on commit. kubepath follows the
//!   kernel; the test proves it by loading the file for real into its namespace, which must
//!   fail.
//! - [`OPAQUE_TARGETS`]: a target that is neither a known extension nor a chain of the table
//!   (legacy `--test`: "Couldn't load target"; `-j INPUT`: "line N failed") is kept by kubepath
//!   as an opaque rule with a diagnostic, and a packet reaching it gets UNKNOWN
//!   (ARCHITECTURE.md: the node may have extensions kubepath does not know).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kubepath_netfilter::{Family, Ruleset};
use kubepath_netfilter_gen::privileged;

const LENIENT_WHITESPACE: &str = "lenient whitespace (kubepath trims lines)";
const KERNEL_CHECKED: &str = "kernel check on commit (not --test)";
const OPAQUE_TARGETS: &str = "unknown target kept opaque";

/// Deletes the namespace when dropped, also when the test panics.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("kp-restore-acc-{}", std::process::id());
        // A leftover of an earlier run with the same pid (it was killed before its Drop).
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Removes the scratch directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Case {
    name: String,
    family: Family,
    text: String,
    /// A deliberate difference this case is expected to show (see the module docs).
    deliberate: Option<&'static str>,
}

/// Run `{ip,ip6}tables-{legacy,nft}-restore ARGS FILE` in the namespace: did it succeed, and
/// what did it say?
fn restore(ns: &str, family: Family, backend: &str, test: bool, file: &Path) -> (bool, String) {
    let bin = match family {
        Family::Ipv4 => format!("iptables-{backend}-restore"),
        Family::Ipv6 => format!("ip6tables-{backend}-restore"),
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, &bin]);
    if test {
        cmd.arg("--test");
    }
    let out = cmd
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let msg = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (out.status.success(), msg)
}

fn kubepath_accepts(c: &Case) -> Result<(), String> {
    let mut rs = Ruleset::new(c.family);
    rs.add_text(&c.name, &c.text, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/iptables")
}

fn fixture_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for kind in ["ok", "err"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir().join(kind))
            .expect("fixtures dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        paths.sort();
        for p in paths {
            let fname = p.file_name().unwrap_or_default().to_string_lossy();
            // `iptables -S` text and ipset dumps are not iptables-restore input.
            let family = if fname.ends_with(".ip6tables-save") {
                Family::Ipv6
            } else if fname.ends_with(".iptables-save") {
                Family::Ipv4
            } else {
                continue;
            };
            let deliberate = matches!(
                &*fname,
                "masquerade-in-filter.iptables-save" | "jump-loop.iptables-save"
            )
            .then_some(KERNEL_CHECKED);
            out.push(Case {
                name: format!("fixtures/iptables/{kind}/{fname}"),
                family,
                text: std::fs::read_to_string(&p).expect("fixture"),
                deliberate,
            });
        }
    }
    out
}

/// Small valid rulesets exercising every table and both kinds of chain.
const SMALL: &str = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp --dport 53 -j NOTRACK
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:MARKS - [0:0]
-A PREROUTING -j MARKS
-A MARKS -p tcp -j MARK --set-xmark 0x1/0xff
COMMIT
*nat
:PREROUTING ACCEPT [4:240]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [1:60]
:POSTROUTING ACCEPT [1:60]
:SVC - [0:0]
-A PREROUTING -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j SVC
-A SVC -p tcp -j DNAT --to-destination 10.244.1.5:8080
-A POSTROUTING -o eth0 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:ALLOW - [0:0]
[5:300] -A INPUT -j ALLOW
-A ALLOW -s 10.0.0.0/8 -j ACCEPT
-A ALLOW -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
";

fn base_rulesets() -> Vec<(String, Family, String)> {
    let mut v = vec![("small".to_string(), Family::Ipv4, SMALL.to_string())];
    for f in [
        "docker-host.iptables-save",
        "kube-proxy-v1.28.iptables-save",
        "seed-node.iptables-save",
    ] {
        let text = std::fs::read_to_string(fixtures_dir().join("ok").join(f)).expect("fixture");
        v.push((f.to_string(), Family::Ipv4, text));
    }
    let f = "kube-proxy-dualstack.ip6tables-save";
    let text = std::fs::read_to_string(fixtures_dir().join("ok").join(f)).expect("fixture");
    v.push((f.to_string(), Family::Ipv6, text));
    v
}

fn is_builtin_decl(l: &str) -> bool {
    ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        .iter()
        .any(|b| l.starts_with(&format!(":{b} ")))
}

/// Indexes of the lines satisfying `pred`, at most `max` of them spread over the file.
fn pick(lines: &[&str], max: usize, pred: impl Fn(&str) -> bool) -> Vec<usize> {
    let all: Vec<usize> = (0..lines.len()).filter(|&i| pred(lines[i])).collect();
    if all.len() <= max {
        return all;
    }
    (0..max).map(|k| all[k * all.len() / max]).collect()
}

fn join(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// Mutations of one valid ruleset: (label, text, deliberate difference).
fn mutations(text: &str) -> Vec<(String, String, Option<&'static str>)> {
    let lines: Vec<&str> = text.lines().collect();
    let owned = || lines.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let mut out = Vec::new();
    let mut push = |label: String, v: Vec<String>, d: Option<&'static str>| {
        out.push((label, join(&v), d));
    };
    let policies = [
        "-", "ACCEPT", "DROP", "MAYBE", "accept", "RETURN", "REJECT", "QUEUE", "",
    ];
    // Policies on built-in and user chains.
    for i in pick(&lines, 3, is_builtin_decl) {
        for p in policies {
            let mut v = owned();
            let mut f = lines[i].split(' ');
            let name = f.next().unwrap_or("");
            let rest: Vec<&str> = f.skip(1).collect();
            v[i] = format!("{name} {p} {}", rest.join(" "))
                .trim_end()
                .to_string();
            push(format!("builtin policy `{p}` on line {}", i + 1), v, None);
        }
    }
    for i in pick(&lines, 3, |l| l.starts_with(':') && !is_builtin_decl(l)) {
        for p in policies {
            let mut v = owned();
            let mut f = lines[i].split(' ');
            let name = f.next().unwrap_or("");
            let rest: Vec<&str> = f.skip(1).collect();
            v[i] = format!("{name} {p} {}", rest.join(" "))
                .trim_end()
                .to_string();
            push(format!("user policy `{p}` on line {}", i + 1), v, None);
        }
    }
    // `-P` lines.
    if let Some(i) = lines.iter().position(|l| l.starts_with("-A ")) {
        for (p, c) in [
            ("-P INPUT DROP", "builtin"),
            ("-P INPUT -", "dash"),
            ("-P INPUT MAYBE", "bogus"),
            ("-P FORWARD ACCEPT", "builtin2"),
        ] {
            let mut v = owned();
            v.insert(i, p.to_string());
            push(format!("`{p}` ({c}) before line {}", i + 1), v, None);
        }
    }
    // Counters on chain declarations (ignored without `-c`).
    for i in pick(&lines, 2, |l| l.starts_with(':')) {
        let head: Vec<&str> = lines[i].split(' ').take(2).collect();
        for c in [
            "",
            "[1:2]",
            "[x:y]",
            "[12]",
            "0:0",
            "[1:2] extra",
            "[0:0",
            "[:]",
        ] {
            let mut v = owned();
            v[i] = format!("{} {c}", head.join(" ")).trim_end().to_string();
            push(format!("chain counters `{c}` on line {}", i + 1), v, None);
        }
    }
    // Counters before rules.
    for i in pick(&lines, 2, |l| l.starts_with("-A ")) {
        for c in [
            "[1:2] ",
            "[1:2]",
            "[1:] ",
            "[:1] ",
            "[12] ",
            "[a:b] ",
            "[-1:2] ",
            "[1:2 ",
            "[1:2] [3:4] ",
            "[:] ",
            "[1:2]x ",
        ] {
            let mut v = owned();
            v[i] = format!("{c}{}", lines[i]);
            push(format!("rule counters `{c}` on line {}", i + 1), v, None);
        }
    }
    // COMMIT removed, doubled, or a table opened inside another.
    let commits = pick(&lines, 4, |l| l == "COMMIT");
    for &i in &commits {
        let mut v = owned();
        v.remove(i);
        push(format!("COMMIT on line {} removed", i + 1), v, None);
        let mut v = owned();
        v.insert(i, "COMMIT".into());
        push(format!("COMMIT on line {} doubled", i + 1), v, None);
    }
    if let Some(&last) = commits.last() {
        let mut v = owned();
        v.truncate(last);
        push("file ends before the last COMMIT".into(), v, None);
    }
    // Table headers.
    for i in pick(&lines, 2, |l| l.starts_with('*')) {
        let t = &lines[i][1..];
        for h in [
            format!("*{}", t.to_uppercase()),
            format!("*{t}x"),
            "*bogus".to_string(),
            format!("* {t}"),
            format!("*{t} "),
            "*".to_string(),
        ] {
            let mut v = owned();
            v[i] = h.clone();
            push(format!("header `{h}` on line {}", i + 1), v, None);
        }
        let mut v = owned();
        v.remove(i);
        push(format!("header on line {} removed", i + 1), v, None);
    }
    // Duplicate chain declarations and `-N`.
    for i in pick(&lines, 2, |l| l.starts_with(':') && !is_builtin_decl(l)) {
        let mut v = owned();
        v.insert(i + 1, lines[i].to_string());
        push(
            format!("user chain on line {} declared twice", i + 1),
            v,
            None,
        );
        let name = lines[i].split(' ').next().unwrap_or(":X")[1..].to_string();
        let mut v = owned();
        v.insert(i + 1, format!("-N {name}"));
        push(format!("`-N {name}` after its declaration"), v, None);
        let mut v = owned();
        v[i] = format!("-N {name}");
        push(format!("`-N {name}` instead of its declaration"), v, None);
        let mut v = owned();
        let d = v.remove(i);
        if let Some(c) = v[i..].iter().position(|l| l == "COMMIT") {
            v.insert(i + c, d);
            push(
                format!("chain of line {} declared after its rules", i + 1),
                v,
                None,
            );
        }
    }
    for i in pick(&lines, 2, is_builtin_decl) {
        let mut v = owned();
        v.insert(i + 1, lines[i].replace("ACCEPT", "DROP"));
        push(
            format!("built-in chain on line {} declared twice", i + 1),
            v,
            None,
        );
    }
    // A table block given twice (identical, or the second one empty).
    let mut start = None;
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with('*') {
            start = Some(i);
        }
        if *l == "COMMIT" {
            if let Some(s) = start.take() {
                let mut v = owned();
                v.extend(lines[s..=i].iter().map(|s| s.to_string()));
                push(format!("block {}-{} repeated", s + 1, i + 1), v, None);
                let mut v = owned();
                v.push(lines[s].to_string());
                v.push("COMMIT".into());
                push(format!("empty block for table of line {}", s + 1), v, None);
                // The second block replaces the table: its rule's target chain is gone
                // (legacy: "Couldn't load target"; kubepath keeps it opaque).
                let mut v = owned();
                v.push(lines[s].to_string());
                let first_jump = lines[s..i].iter().find(|l| {
                    l.starts_with("-A ")
                        && l.split(' ')
                            .skip_while(|w| *w != "-j")
                            .nth(1)
                            .is_some_and(|t| {
                                lines[s..i].iter().any(|d| d.starts_with(&format!(":{t} ")))
                                    && !is_builtin_decl(&format!(":{t} "))
                            })
                });
                if let Some(r) = first_jump {
                    v.push(r.to_string());
                    v.push("COMMIT".into());
                    push(
                        format!(
                            "block of line {} repeated with only a jump to its user chain",
                            s + 1
                        ),
                        v,
                        Some(OPAQUE_TARGETS),
                    );
                }
                break;
            }
        }
    }
    // `-F`, `-X`, `-Z` (kube-proxy's restore input deletes stale chains with `-X`).
    for i in pick(&lines, 2, |l| l.starts_with(':') && !is_builtin_decl(l)) {
        let name = lines[i].split(' ').next().unwrap_or(":X")[1..].to_string();
        let Some(commit) = lines[i..]
            .iter()
            .position(|l| *l == "COMMIT")
            .map(|c| i + c)
        else {
            continue;
        };
        for (what, add) in [
            ("-X", vec![format!("-X {name}")]),
            ("-F, -X", vec![format!("-F {name}"), format!("-X {name}")]),
            ("-F, -X all", vec!["-F".to_string(), "-X".to_string()]),
            ("-Z", vec![format!("-Z {name}")]),
            ("-F", vec![format!("-F {name}")]),
        ] {
            let mut v = owned();
            for (k, l) in add.into_iter().enumerate() {
                v.insert(commit + k, l);
            }
            push(
                format!("`{what}` of {name} before line {}", commit + 1),
                v,
                None,
            );
        }
        // A later jump to the deleted chain names no chain (legacy: "Couldn't load target"),
        // unless a rule appended to it (an undeclared chain) is refused first by both.
        let jumped_to = lines[i..].iter().any(|l| {
            l.starts_with("-A ")
                && (l.contains(&format!("-j {name} ")) || l.ends_with(&format!("-j {name}")))
        }) && !lines[i..]
            .iter()
            .any(|l| l.starts_with(&format!("-A {name} ")));
        let mut v = owned();
        v.insert(i + 1, format!("-X {name}"));
        push(
            format!("`-X {name}` right after its declaration"),
            v,
            jumped_to.then_some(OPAQUE_TARGETS),
        );
        let mut v = owned();
        v.insert(i + 1, format!("-X {name}"));
        v.insert(i + 2, lines[i].to_string());
        push(format!("`-X {name}` and declared again"), v, None);
    }
    // Chain names: 28 and 29 characters, leading `-`/`!`.
    if let Some(i) = lines.iter().position(|l| l.starts_with(':')) {
        for n in [
            "A23456789012345678901234567A",
            "A234567890123456789012345678Z",
            "-DASH",
            "!BANG",
        ] {
            let mut v = owned();
            v.insert(i, format!(":{n} - [0:0]"));
            push(format!("chain name `{n}`"), v, None);
        }
    }
    // Rules: an undeclared chain, a jump to an undeclared chain or a built-in chain.
    if let Some(i) = lines.iter().position(|l| l.starts_with("-A ")) {
        for (r, d) in [
            ("-A NOSUCH -j ACCEPT", None),
            ("-A INPUT -j NOSUCHCHAIN", Some(OPAQUE_TARGETS)),
            ("-A FORWARD -j INPUT", Some(OPAQUE_TARGETS)),
        ] {
            let mut v = owned();
            // Only where the chain exists in this block.
            let chain = r.split(' ').nth(1).unwrap_or("");
            let block_start = lines[..i].iter().rposition(|l| l.starts_with('*'));
            let has = block_start.is_some_and(|s| {
                lines[s..i]
                    .iter()
                    .any(|l| l.starts_with(&format!(":{chain} ")))
            });
            if chain != "NOSUCH" && !has {
                continue;
            }
            v.insert(i, r.to_string());
            push(format!("`{r}` before line {}", i + 1), v, d);
        }
    }
    // Whitespace and comments.
    let ws = Some(LENIENT_WHITESPACE);
    push(
        "CRLF line ends".into(),
        lines.iter().map(|l| format!("{l}\r")).collect(),
        ws,
    );
    for (what, pred) in [
        ("COMMIT", (|l: &str| l == "COMMIT") as fn(&str) -> bool),
        ("header", |l: &str| l.starts_with('*')),
        ("chain", |l: &str| l.starts_with(':')),
        ("comment", |l: &str| l.starts_with('#')),
    ] {
        if let Some(i) = lines.iter().position(|l| pred(l)) {
            let mut v = owned();
            v[i] = format!("  {}", lines[i]);
            push(format!("indented {what} on line {}", i + 1), v, ws);
        }
    }
    if let Some(i) = lines.iter().position(|l| *l == "COMMIT") {
        let mut v = owned();
        v[i] = "COMMIT ".into();
        push(format!("`COMMIT ` on line {}", i + 1), v, ws);
        let mut v = owned();
        v.insert(i, "   ".into());
        push(format!("blank line of spaces before line {}", i + 1), v, ws);
        let mut v = owned();
        v.insert(i, String::new());
        v.insert(i, "# a comment".into());
        push(
            format!("comment and empty line before line {}", i + 1),
            v,
            None,
        );
    }
    if let Some(i) = lines.iter().position(|l| l.starts_with("-A ")) {
        let mut v = owned();
        v[i] = format!("  {}", lines[i]);
        push(format!("indented rule on line {}", i + 1), v, None);
    }
    out
}

fn generated_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (base, family, text) in base_rulesets() {
        for (label, t, d) in mutations(&text) {
            out.push(Case {
                name: format!("{base}: {label}"),
                family,
                text: t,
                deliberate: d,
            });
        }
    }
    for (label, t) in [
        ("empty file", ""),
        ("comments only", "# nothing\n# here\n"),
        ("COMMIT without a table", "COMMIT\n"),
        ("rule without a table", "-A INPUT -j ACCEPT\n"),
        ("chain without a table", ":INPUT ACCEPT [0:0]\n"),
        ("kube-proxy test style", "*filter\n:INPUT - [0:0]\n:FORWARD - [0:0]\n:OUTPUT - [0:0]\n:KUBE-SERVICES - [0:0]\n-A INPUT -j KUBE-SERVICES\nCOMMIT\n"),
        ("`-` then DROP on INPUT", "*filter\n:INPUT - [0:0]\n:INPUT DROP [0:0]\nCOMMIT\n"),
        ("DROP then `-` on INPUT", "*filter\n:INPUT DROP [0:0]\n:INPUT - [0:0]\nCOMMIT\n"),
        ("`:INPUT -` in raw (a user chain there)", "*raw\n:INPUT - [0:0]\nCOMMIT\n"),
        ("`:INPUT ACCEPT` in raw", "*raw\n:INPUT ACCEPT [0:0]\nCOMMIT\n"),
        ("`:PREROUTING -` in filter", "*filter\n:PREROUTING - [0:0]\n-A PREROUTING -j ACCEPT\nCOMMIT\n"),
        ("nat built-ins with `-`", "*nat\n:PREROUTING - [0:0]\n:INPUT -\n:OUTPUT - [0:0]\n:POSTROUTING - [0:0]\nCOMMIT\n"),
        ("table opened inside a table", "*filter\n*nat\nCOMMIT\nCOMMIT\n"),
        ("rule after COMMIT", "*filter\nCOMMIT\n-A INPUT -j ACCEPT\n"),
        ("chain name after `: `", "*filter\n: FOO - [0:0]\nCOMMIT\n"),
        ("chain and policy only", "*filter\n:FOO\nCOMMIT\n"),
        ("tabs between fields", "*filter\n:FOO\t-\t[0:0]\n-A\tINPUT\t-j\tFOO\nCOMMIT\n"),
        ("DNAT with a port without -p", "*nat\n-A PREROUTING -j DNAT --to-destination 10.1.1.1:80\nCOMMIT\n"),
        ("DNAT with a port, -p all", "*nat\n-A PREROUTING -p all -j DNAT --to-destination 10.1.1.1:80\nCOMMIT\n"),
        ("DNAT with a port, -p icmp", "*nat\n-A PREROUTING -p icmp -j DNAT --to-destination 10.1.1.1:80\nCOMMIT\n"),
        ("DNAT with a port, ! -p tcp", "*nat\n-A PREROUTING ! -p tcp -j DNAT --to-destination 10.1.1.1:80\nCOMMIT\n"),
        ("DNAT with a port, -p udplite", "*nat\n-A PREROUTING -p udplite -j DNAT --to-destination 10.1.1.1:80\nCOMMIT\n"),
        ("DNAT with a port, -p 132", "*nat\n-A PREROUTING -p 132 -j DNAT --to-destination 10.1.1.1:80\nCOMMIT\n"),
        ("DNAT without a port nor -p", "*nat\n-A PREROUTING -j DNAT --to-destination 10.1.1.1\nCOMMIT\n"),
        ("SNAT with a port without -p", "*nat\n-A POSTROUTING -j SNAT --to-source 10.1.1.1:80\nCOMMIT\n"),
        ("MASQUERADE --to-ports without -p", "*nat\n-A POSTROUTING -j MASQUERADE --to-ports 1024-2048\nCOMMIT\n"),
        ("REDIRECT --to-ports -p udp", "*nat\n-A PREROUTING -p udp -j REDIRECT --to-ports 53\nCOMMIT\n"),
        ("REDIRECT --to-ports without -p", "*nat\n-A PREROUTING -j REDIRECT --to-ports 53\nCOMMIT\n"),
        ("-j DROP in nat", "*nat\n:X - [0:0]\n-A X -j DROP\nCOMMIT\n"),
        ("-P DROP in nat", "*nat\n-P OUTPUT DROP\nCOMMIT\n"),
        ("`:OUTPUT DROP` in nat", "*nat\n:OUTPUT DROP [0:0]\nCOMMIT\n"),
        ("-P DROP in mangle", "*mangle\n-P OUTPUT DROP\nCOMMIT\n"),
        ("-g DROP in filter", "*filter\n-A INPUT -g DROP\nCOMMIT\n"),
        ("-g to a user chain", "*filter\n:X - [0:0]\n-A INPUT -g X\nCOMMIT\n"),
        ("-j to a chain declared later", "*filter\n-A INPUT -j X\n:X - [0:0]\nCOMMIT\n"),
        ("-N twice", "*filter\n-N X\n-N X\nCOMMIT\n"),
        ("rule into a chain of an earlier block", "*filter\n:FOO - [0:0]\nCOMMIT\n*filter\n-A FOO -j ACCEPT\nCOMMIT\n"),
        ("chain of an earlier block declared again", "*filter\n:FOO - [0:0]\nCOMMIT\n*filter\n:FOO - [0:0]\n-A FOO -j ACCEPT\nCOMMIT\n"),
        ("-X of an empty chain", "*filter\n:A - [0:0]\n-X A\nCOMMIT\n"),
        ("-X of a chain with rules", "*filter\n:A - [0:0]\n-A A -j ACCEPT\n-X A\nCOMMIT\n"),
        ("-X of a referenced chain", "*filter\n:A - [0:0]\n-A INPUT -j A\n-X A\nCOMMIT\n"),
        ("-X of an undeclared chain", "*filter\n-X A\nCOMMIT\n"),
        ("-X of a built-in chain", "*filter\n-X INPUT\nCOMMIT\n"),
        ("-X of every chain", "*filter\n:A - [0:0]\n:B - [0:0]\n-X\nCOMMIT\n"),
        ("-F of a chain, then -X", "*filter\n:A - [0:0]\n-A A -j ACCEPT\n-F A\n-X A\nCOMMIT\n"),
        ("-F of every chain, then -X", "*filter\n:A - [0:0]\n-A A -j ACCEPT\n-F\n-X A\nCOMMIT\n"),
        ("-F of an undeclared chain", "*filter\n-F A\nCOMMIT\n"),
        ("-Z", "*filter\n-Z\nCOMMIT\n"),
        ("-X then declared again", "*filter\n:A - [0:0]\n-X A\n:A - [0:0]\nCOMMIT\n"),
        ("-X of the first of three chains, jumps to the others", "*filter\n:A - [0:0]\n:B - [0:0]\n:C - [0:0]\n-A INPUT -j C\n-A B -j C\n-X A\n-A INPUT -g B\nCOMMIT\n"),
        ("security table", "*security\n:INPUT ACCEPT [0:0]\n:FORWARD - [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"),
    ] {
        out.push(Case {
            name: label.to_string(),
            family: Family::Ipv4,
            text: t.to_string(),
            deliberate: None,
        });
    }
    out
}

#[test]
fn parser_accepts_what_iptables_restore_accepts() {
    if !privileged::gate(
        "parser_accepts_what_iptables_restore_accepts",
        &[
            "iptables-legacy-restore",
            "iptables-nft-restore",
            "ip6tables-legacy-restore",
            "ip6tables-nft-restore",
        ],
    ) {
        return;
    }
    let ns = Netns::new();
    let dir = TempDir(std::env::temp_dir().join(format!("kp-restore-acc-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    // calico-node's rules name ipsets: create them in the namespace first (ipset is per netns).
    let ipset = fixtures_dir().join("ok/calico-node.ipset");
    let ipset_ok = have("ipset")
        && Command::new("ip")
            .args([
                "netns", "exec", &ns.0, "ipset", "restore", "-exist", "-file",
            ])
            .arg(&ipset)
            .status()
            .is_ok_and(|s| s.success());
    if !ipset_ok {
        println!("note: ipset unavailable; calico-node.iptables-save will be refused by both");
    }

    let mut cases = fixture_cases();
    let n_fixtures = cases.len();
    cases.extend(generated_cases());
    let mut agree = 0;
    let mut backends_differ = 0;
    let mut deliberate_seen: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut failures = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        let path = dir.0.join(format!("case-{k}.rules"));
        let mut f = std::fs::File::create(&path).expect("write case");
        f.write_all(c.text.as_bytes()).expect("write case");
        drop(f);
        let (legacy, lmsg) = restore(&ns.0, c.family, "legacy", true, &path);
        let (nft, nmsg) = restore(&ns.0, c.family, "nft", true, &path);
        let restore_ok = legacy && nft;
        if legacy != nft {
            backends_differ += 1;
            println!(
                "backends differ on [{}]: legacy {} ({lmsg}), nft {} ({nmsg})",
                c.name,
                if legacy { "accepts" } else { "refuses" },
                if nft { "accepts" } else { "refuses" },
            );
        }
        let kp = kubepath_accepts(c);
        if kp.is_ok() == restore_ok {
            agree += 1;
            if let Some(d) = c.deliberate {
                failures.push(format!(
                    "[{}] is listed as a deliberate difference ({d}) but kubepath agrees with iptables-restore ({})",
                    c.name,
                    if restore_ok { "accepted" } else { "refused" }
                ));
            }
            continue;
        }
        let why = match (c.deliberate, kp.is_ok()) {
            // kubepath is more lenient with whitespace, never stricter.
            (Some(LENIENT_WHITESPACE), true) => Some(LENIENT_WHITESPACE),
            (Some(OPAQUE_TARGETS), true) => Some(OPAQUE_TARGETS),
            // kubepath refuses what --test lets through: the kernel must refuse it too.
            (Some(KERNEL_CHECKED), false) => {
                let (loaded, msg) = restore(&ns.0, c.family, "legacy", false, &path);
                // Leave the namespace clean for the next case.
                let _ = Command::new("ip")
                    .args(["netns", "exec", &ns.0, "iptables-legacy", "-F"])
                    .status();
                if loaded {
                    failures.push(format!(
                        "[{}]: kubepath refuses it ({}), but the kernel loads it",
                        c.name,
                        kp.as_ref().err().map(String::as_str).unwrap_or("")
                    ));
                } else {
                    println!("[{}]: the kernel refuses it on commit: {msg}", c.name);
                }
                Some(KERNEL_CHECKED)
            }
            _ => None,
        };
        match why {
            Some(d) => *deliberate_seen.entry(d).or_default() += 1,
            None => failures.push(format!(
                "[{}]: iptables-restore --test {} (legacy: {lmsg}; nft: {nmsg}), kubepath {}",
                c.name,
                if restore_ok { "accepts" } else { "refuses" },
                match &kp {
                    Ok(()) => "accepts".to_string(),
                    Err(e) => format!("refuses: {e}"),
                }
            )),
        }
    }
    println!(
        "{} files ({} fixtures, {} generated): kubepath agrees on {agree}; deliberate differences {:?}; legacy and nft differ on {backends_differ}",
        cases.len(),
        n_fixtures,
        cases.len() - n_fixtures,
        deliberate_seen
    );
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
