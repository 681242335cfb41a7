//! Issue #13's CLI conventions: shell completions and man pages generated from the CLI, the
//! kubectl plugin (`kubectl-kubepath`), colour only when wanted (NO_COLOR, CLICOLOR_FORCE),
//! `-q`, and JSON on stdout never mixed with anything else.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;
use support::{copy_dir, root};

const BIN: &str = env!("CARGO_BIN_EXE_kubepath");
const URL: &str = "http://dc173prometheus1.cloud.k2.ericsson.se/";
const FIX: &str = "ip route add 10.210.150.87/32 via 10.33.151.65";

/// Runs `exe args` in the repository root with no colour variables set unless `env` sets them.
fn run_exe(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(exe);
    c.args(args)
        .current_dir(root())
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .env_remove("FORCE_COLOR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run kubepath")
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_exe(Path::new(BIN), args, env)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn seed_trace(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "trace",
        "examples/dc173",
        "--from",
        "10.210.150.87",
        "--to",
        URL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubepath-conv-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The subcommands `--help` lists (without `help`), for `args` (`[]`: the top level).
fn subcommands(args: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.push("--help");
    let out = text(&run(&a, &[]).stdout);
    out.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

/// Every (visible) command path: `["trace"]`, `["netfilter", "trace"]`, ...
fn command_paths() -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for top in subcommands(&[]) {
        let nested = subcommands(&[&top]);
        all.push(vec![top.clone()]);
        for n in nested {
            all.push(vec![top.clone(), n]);
        }
    }
    all
}

#[test]
fn help_lists_the_commands_it_should() {
    let top = subcommands(&[]);
    for c in [
        "trace",
        "check",
        "reach",
        "diff",
        "snapshot",
        "announce",
        "ingress",
        "netfilter",
        "lab",
        "completions",
        "man",
    ] {
        assert!(top.iter().any(|t| t == c), "{c} not in {top:?}");
    }
    assert!(command_paths()
        .iter()
        .any(|p| p == &["netfilter".to_string(), "trace".to_string()]));
    // The exit codes and the colour variables are in --help (and so in the man page).
    let long = text(&run(&["--help"], &[]).stdout);
    assert!(
        long.contains("Exit codes: 0") && long.contains("NO_COLOR"),
        "{long}"
    );
}

#[test]
fn bash_completion_offers_every_subcommand() {
    let out = run(&["completions", "bash"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    let paths = command_paths();
    for p in &paths {
        let last = p.last().unwrap();
        assert!(
            script
                .split_whitespace()
                .any(|w| w.trim_matches('"') == last),
            "{last} not in the bash completion"
        );
    }
    // Really complete with bash, when it is there: `kubepath <TAB>` offers every subcommand.
    if Command::new("bash").arg("--version").output().is_err() {
        println!("skipped: no bash");
        return;
    }
    let dir = tmpdir("bash");
    let file = dir.join("kubepath.bash");
    std::fs::write(&file, &script).unwrap();
    let probe = |words: &str, cword: usize| -> Vec<String> {
        let cmd = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _kubepath kubepath; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let o = Command::new("bash").arg("-c").arg(&cmd).output().unwrap();
        assert!(o.status.success(), "bash: {}", text(&o.stderr));
        text(&o.stdout).lines().map(str::to_string).collect()
    };
    let offered = probe("kubepath ''", 1);
    for top in subcommands(&[]) {
        assert!(offered.contains(&top), "{top} not offered: {offered:?}");
    }
    let nf = probe("kubepath netfilter ''", 2);
    assert!(nf.contains(&"trace".to_string()), "{nf:?}");
    let sh = probe("kubepath completions ''", 2);
    for s in ["bash", "zsh", "fish"] {
        assert!(sh.contains(&s.to_string()), "{sh:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let out = run(&["completions", shell], &[]);
        assert_eq!(out.status.code(), Some(0));
        let s = text(&out.stdout);
        for top in subcommands(&[]) {
            assert!(s.contains(&top), "{shell}: {top} missing");
        }
    }
    let bad = run(&["completions", "tcsh"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty());
}

#[test]
fn man_pages_cover_every_subcommand_and_render() {
    // `kubepath man`: the binary's page on stdout, naming every subcommand.
    let out = run(&["man"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH kubepath 1"), "{page}");
    assert!(page.contains(".SH SYNOPSIS") && page.contains(".SH SUBCOMMANDS"));
    for top in subcommands(&[]) {
        assert!(
            page.contains(&format!("kubepath\\-{}(1)", top.replace('-', "\\-"))),
            "{top} missing from kubepath.1"
        );
    }
    // `--out DIR`: one page per command.
    let dir = tmpdir("man");
    let out = run(&["man", "--out", dir.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "notes go to stderr");
    let have_man = Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut pages = vec![dir.join("kubepath.1")];
    for p in command_paths() {
        pages.push(dir.join(format!("kubepath-{}.1", p.join("-"))));
    }
    for f in &pages {
        let roff = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let stem = f.file_stem().unwrap().to_str().unwrap();
        assert!(
            roff.contains(&format!(".TH {stem} 1")),
            "{}: no .TH header",
            f.display()
        );
        assert!(roff.contains(".SH NAME") && roff.contains(".SH SYNOPSIS"));
        if have_man {
            let o = Command::new("man")
                .arg("-l")
                .arg(f)
                .env("MANPAGER", "cat")
                .env("PAGER", "cat")
                .env("MANWIDTH", "100")
                .output()
                .unwrap();
            let r = text(&o.stdout);
            assert!(
                o.status.success(),
                "man -l {}: {}",
                f.display(),
                text(&o.stderr)
            );
            assert!(r.contains("NAME") && r.contains("SYNOPSIS"), "{r}");
            assert!(r.contains(stem), "{r}");
        }
    }
    if !have_man {
        println!("skipped: no man (checked the roff headers only)");
    }
    // The trace page documents its options; the binary's page, the exit codes.
    let trace = std::fs::read_to_string(dir.join("kubepath-trace.1")).unwrap();
    assert!(trace.contains("\\-\\-what\\-if") && trace.contains("\\-\\-quiet"));
    let top = std::fs::read_to_string(dir.join("kubepath.1")).unwrap();
    assert!(top.contains("Exit codes"), "{top}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// kubectl runs `kubectl kubepath trace ...` as `kubectl-kubepath trace ...`: the binary under
/// that name behaves the same, and its help shows `kubectl kubepath`.
#[test]
fn as_a_kubectl_plugin() {
    let dir = tmpdir("plugin");
    let copy = dir.join("kubectl-kubepath");
    std::fs::copy(BIN, &copy).unwrap();
    let mut exes = vec![copy.clone()];
    #[cfg(unix)]
    {
        let sub = dir.join("link");
        std::fs::create_dir_all(&sub).unwrap();
        let link = sub.join("kubectl-kubepath");
        std::os::unix::fs::symlink(BIN, &link).unwrap();
        exes.push(link);
    }
    let direct = run(&["snapshot", "inspect", "examples/dc173"], &[]);
    for exe in &exes {
        let help = run_exe(exe, &["--help"], &[]);
        assert_eq!(help.status.code(), Some(0));
        let h = text(&help.stdout);
        assert!(
            h.contains("Usage: kubectl kubepath [OPTIONS] <COMMAND>"),
            "{h}"
        );
        let th = text(&run_exe(exe, &["trace", "--help"], &[]).stdout);
        assert!(th.contains("Usage: kubectl kubepath trace "), "{th}");
        let bad = run_exe(exe, &["bogus"], &[]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(text(&bad.stderr).contains("kubectl kubepath"));
        let o = run_exe(exe, &["snapshot", "inspect", "examples/dc173"], &[]);
        assert_eq!(o.status.code(), direct.status.code());
        assert_eq!(text(&o.stdout), text(&direct.stdout));
        let t = run_exe(exe, &refs(&seed_trace(&["-q"])), &[]);
        assert_eq!(t.status.code(), Some(1));
        assert!(text(&t.stdout).starts_with("   asymmetric-return 100%"));
    }
    // Through kubectl itself, when it is installed: it finds the plugin on the PATH.
    let kubectl_there = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if kubectl_there {
        let path = format!(
            "{}:{}",
            dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let o = Command::new("kubectl")
            .args(["kubepath", "snapshot", "inspect", "examples/dc173"])
            .current_dir(root())
            .env("PATH", path)
            .env("KUBECONFIG", dir.join("no-kubeconfig"))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), direct.status.code(), "{}", text(&o.stderr));
        assert_eq!(text(&o.stdout), text(&direct.stdout));
    } else {
        println!("skipped: no kubectl (ran kubectl-kubepath directly)");
    }
    // Under its own name the usage says kubepath.
    let h = text(&run(&["--help"], &[]).stdout);
    assert!(h.contains("Usage: kubepath [OPTIONS] <COMMAND>"), "{h}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn has_esc(b: &[u8]) -> bool {
    b.contains(&0x1b)
}

#[test]
fn colour_only_when_wanted() {
    let args = seed_trace(&[]);
    let a = refs(&args);
    // Not a terminal (stdout is a pipe here): no colour.
    let plain = run(&a, &[]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(!has_esc(&plain.stdout));
    // NO_COLOR: none, even when forced.
    for env in [
        vec![("NO_COLOR", "1")],
        vec![("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")],
    ] {
        let o = run(&a, &env);
        assert!(!has_esc(&o.stdout), "{env:?}");
        assert!(!has_esc(&o.stderr), "{env:?}");
    }
    // CLICOLOR_FORCE: colours into a pipe, and the text under them is the plain text.
    let forced = run(&a, &[("CLICOLOR_FORCE", "1")]);
    assert!(has_esc(&forced.stdout));
    let stripped = strip_ansi(&text(&forced.stdout));
    assert_eq!(stripped, text(&plain.stdout));
    assert!(!has_esc(&run(&a, &[("CLICOLOR_FORCE", "0")]).stdout));
    // JSON and dot are never coloured.
    for extra in [&["--json"][..], &["--format", "dot"][..]] {
        let o = run(&refs(&seed_trace(extra)), &[("CLICOLOR_FORCE", "1")]);
        assert!(!has_esc(&o.stdout), "{extra:?}");
    }
    // Errors on stderr: no colour with NO_COLOR, nor into a pipe.
    for env in [vec![], vec![("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]] {
        let bad = run(
            &[
                "netfilter",
                "trace",
                "--ruleset",
                "fixtures/iptables/err/does-not-exist",
                "--src",
                "10.0.0.1",
                "--dst",
                "10.0.0.2",
                "--proto",
                "tcp",
            ],
            &env,
        );
        assert_eq!(bad.status.code(), Some(2));
        assert!(!has_esc(&bad.stderr), "{env:?}: {}", text(&bad.stderr));
        let usage = run(&["trace", "--bogus"], &env);
        assert_eq!(usage.status.code(), Some(2));
        assert!(!has_esc(&usage.stderr), "{env:?}");
    }
}

fn strip_ansi(s: &str) -> String {
    let mut o = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            o.push(c);
        }
    }
    o
}

/// `trace -q`: exactly the verdict lines, the same as in the answer of the default output.
#[test]
fn trace_quiet_is_exactly_the_verdict_lines() {
    let q = run(&refs(&seed_trace(&["-q"])), &[]);
    assert_eq!(q.status.code(), Some(1));
    let quiet = text(&q.stdout);
    assert!(q.stderr.is_empty(), "{}", text(&q.stderr));
    let full = text(&run(&refs(&seed_trace(&[])), &[]).stdout);
    let answer: Vec<&str> = full
        .lines()
        .skip_while(|l| *l != "Answer")
        .take_while(|l| !l.is_empty())
        .collect();
    let verdicts: Vec<&str> = answer
        .iter()
        .copied()
        .skip_while(|l| !l.starts_with("   asymmetric-return"))
        .take_while(|l| !l.starts_with("   fix "))
        .collect();
    assert_eq!(quiet.lines().collect::<Vec<_>>(), verdicts, "{full}");
    assert_eq!(
        quiet,
        "   asymmetric-return 100%\n".to_string() + verdicts[1] + "\n"
    );
    // --quiet is the long form; -q with -v is refused.
    let long = run(&refs(&seed_trace(&["--quiet"])), &[]);
    assert_eq!(text(&long.stdout), quiet);
    assert_eq!(
        run(&refs(&seed_trace(&["-q", "-v"])), &[]).status.code(),
        Some(2)
    );
}

/// `--json`: stdout is one JSON document and nothing else; anything else goes to stderr.
#[test]
fn json_stdout_is_only_json() {
    let cases: Vec<Vec<String>> = vec![
        seed_trace(&["--json"]),
        seed_trace(&["--format", "json", "-v"]),
        vec![
            "snapshot".into(),
            "inspect".into(),
            "examples/dc173".into(),
            "--json".into(),
        ],
        vec!["announce".into(), "examples/dc173".into(), "--json".into()],
        vec!["check".into(), "examples/dc173".into(), "--json".into()],
        vec!["reach".into(), "examples/dc173".into(), "--json".into()],
        vec![
            "ingress".into(),
            "match".into(),
            "examples/dc173".into(),
            "--url".into(),
            URL.into(),
            "--json".into(),
        ],
    ];
    for c in &cases {
        let o = run(&refs(c), &[("CLICOLOR_FORCE", "1")]);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{c:?}: {}",
            text(&o.stderr)
        );
        let s = text(&o.stdout);
        let v: serde_json::Value = serde_json::from_str(&s)
            .unwrap_or_else(|e| panic!("{c:?}: stdout is not JSON ({e}):\n{s}"));
        assert!(v.is_object() || v.is_array(), "{c:?}");
        assert!(!has_esc(&o.stdout) && !has_esc(&o.stderr), "{c:?}");
    }
    // A snapshot with an unreadable line: the JSON on stdout still parses and says so; with
    // --strict the error is on stderr and stdout is empty.
    let dir = tmpdir("json");
    copy_dir(&root().join("examples/dc173"), &dir);
    let route = dir.join("nodes/control-plane-4qjt9/ip-route.txt");
    let mut t = std::fs::read_to_string(&route).unwrap();
    t.push_str("10.8.0.0/24 via bogus\n");
    std::fs::write(&route, t).unwrap();
    let d = dir.to_str().unwrap();
    let o = run(
        &["trace", d, "--from", "10.210.150.87", "--to", URL, "--json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert!(
        v["snapshot_errors"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{v}"
    );
    let strict = run(
        &[
            "--strict",
            "trace",
            d,
            "--from",
            "10.210.150.87",
            "--to",
            URL,
            "--json",
        ],
        &[],
    );
    assert_eq!(strict.status.code(), Some(2));
    assert!(strict.stdout.is_empty(), "{}", text(&strict.stdout));
    assert!(text(&strict.stderr).contains("ip-route.txt"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #13 item 3: the answer first, on one screen; identical stages printed once.
#[test]
fn the_answer_fits_the_first_screen_and_nothing_repeats_per_node() {
    let o = run(&refs(&seed_trace(&[])), &[]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    let head = lines[..lines.len().min(40)].join("\n");
    for needle in [
        "Answer",
        "11 nodes, 1/11 each",
        "asymmetric-return 100% at DC173-SLX-L1A",
        &format!("fix 1: [verified] {FIX}"),
    ] {
        assert!(
            head.contains(needle),
            "{needle:?} not in the first 40 lines:\n{head}"
        );
    }
    // No block of lines (citations aside) is printed once per node: the rule that sends the
    // LoadBalancer IP to its chain is shown once for all 11 nodes.
    let uncited: Vec<String> = lines
        .iter()
        .map(|l| match l.find("  [") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect();
    let kube_services = uncited
        .iter()
        .filter(|l| l.contains("nat/KUBE-SERVICES: -A KUBE-SERVICES -d 10.33.151.160/32"))
        .count();
    assert_eq!(kube_services, 1, "{out}");
    // No rule line (citations aside) is printed twice in the node section: not once per node,
    // nor once per outcome of a node.
    let start = uncited
        .iter()
        .position(|l| l.starts_with("3. Nodes"))
        .unwrap();
    let end = uncited.iter().position(|l| l.starts_with("4. ")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for l in &uncited[start..end] {
        let t = l.trim_start();
        if t.contains(": -A ") {
            assert!(seen.insert(t), "{t:?} printed twice:\n{out}");
        }
    }
    assert!(lines.len() < 150, "{} lines:\n{out}", lines.len());
}

/// Nodes are printed together only when their shown rules and outcomes are the same: the node
/// that drops stays apart from the two that accept.
#[test]
fn nodes_with_different_outcomes_are_not_merged() {
    let o = run(
        &[
            "trace",
            "fixtures/trace/dropped-on-pod-node",
            "--from",
            "10.200.0.10",
            "--to",
            "http://web.example.com/",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(
        out.contains("   2 nodes, 1/3 each, the same rules: node-a, node-c:\n     lines cited from node-a; --json has each node's\n"),
        "{out}"
    );
    assert!(out.contains("   node node-b (1/3):\n"), "{out}");
    assert!(
        out.contains("-j DROP  [nodes/node-b/iptables-save.txt:30]"),
        "{out}"
    );
}
