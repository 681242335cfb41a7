//! Every fixture under fixtures/iptables/ok parses without error; every fixture under
//! fixtures/iptables/err fails with the expected file, line, column and expectation.

use std::path::{Path, PathBuf};

use kubepath_netfilter::{Family, Ruleset, Table};

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/iptables")
        .join(kind)
}

fn load(path: &Path) -> (String, String) {
    let name = format!(
        "fixtures/iptables/{}",
        path.strip_prefix(dir("")).unwrap().display()
    );
    (name, std::fs::read_to_string(path).unwrap())
}

/// Parse a fixture the way the CLI does (sniff, table from the name for -S text).
fn parse(name: &str, text: &str) -> Result<Ruleset, kubepath_netfilter::ParseError> {
    let fam = if name.contains("ip6") {
        Family::Ipv6
    } else {
        Family::Ipv4
    };
    let mut rs = Ruleset::new(fam);
    let table = match Ruleset::sniff(text) {
        Some(kubepath_netfilter::Format::Save) => None,
        _ => Some(Ruleset::table_hint(name, text).unwrap_or(Table::Filter)),
    };
    rs.add_text(name, text, table)?;
    Ok(rs)
}

#[test]
fn ok_fixtures_parse() {
    let mut n = 0;
    for e in std::fs::read_dir(dir("ok")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "ipset") {
            continue;
        }
        let (name, text) = load(&path);
        let rs = parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(rs.stats().rules > 0, "{name}");
        n += 1;
    }
    assert!(n >= 6, "only {n} ok fixtures");
}

/// (file, line, token at the reported column, substring of `expected`)
const ERRORS: &[(&str, u32, &str, &str)] = &[
    (
        "unknown-option.iptables-save",
        5,
        "--dportx",
        "an option of match `-m tcp`",
    ),
    (
        "bad-address.iptables-save",
        5,
        "10.0.0.300/32",
        "IPv4 address",
    ),
    ("missing-argument.iptables-save", 5, "", "port"),
    (
        "rule-after-commit.iptables-save",
        6,
        "-A",
        "`*table` header before rules",
    ),
    (
        "chain-before-table.iptables-save",
        2,
        ":INPUT",
        "`*table` header before chain declarations",
    ),
    (
        "missing-commit.iptables-save",
        7,
        "",
        "COMMIT to end table nat opened on line 1",
    ),
    (
        "bad-policy.iptables-save",
        2,
        "MAYBE",
        "policy for built-in chain INPUT",
    ),
    (
        "jump-without-target.iptables-save",
        5,
        "",
        "a target or chain name",
    ),
    (
        "bad-recent-seconds.iptables-save",
        5,
        "sixty",
        "a value for --seconds",
    ),
    (
        "undeclared-chain.iptables-save",
        5,
        "KUBE-FORWARD",
        "chain declared in table filter",
    ),
    (
        "bad-dnat-port.iptables-save",
        7,
        "10.244.1.5:99999",
        "addr[-addr][:port[-port]]",
    ),
    (
        "statistic-without-probability.iptables-save",
        7,
        "statistic",
        "--probability",
    ),
    ("unknown-table.iptables-save", 1, "nato", "table name"),
    ("unknown-command.filter-S.txt", 7, "-X", "(-P, -N or -A)"),
    ("bad-ctstate.iptables-save", 5, "NEW,BOGUS", "state list"),
    (
        "masquerade-in-filter.iptables-save",
        5,
        "MASQUERADE",
        "only valid in nat",
    ),
    (
        "jump-loop.iptables-save",
        11,
        "-j KUBE-SVC-WEB",
        "no jump loop in table nat",
    ),
];

#[test]
fn err_fixtures_fail_where_expected() {
    let mut seen = 0;
    for e in std::fs::read_dir(dir("err")).unwrap() {
        let path = e.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(&(_, line, token, expected)) = ERRORS.iter().find(|x| x.0 == file) else {
            panic!("fixture {file} has no expected error in ERRORS");
        };
        seen += 1;
        let (name, text) = load(&path);
        let err = match parse(&name, &text) {
            Ok(_) => panic!("{file} parsed without error"),
            Err(e) => e,
        };
        assert_eq!(&*err.file, name.as_str());
        assert_eq!(err.line, line, "{file}: {err}");
        assert!(err.expected.contains(expected), "{file}: {err}");
        let src_line = text.split('\n').nth(line as usize - 1).unwrap_or("");
        let want_col = if token.is_empty() {
            src_line.trim_end().chars().count() as u32 + 1
        } else {
            src_line
                .find(token)
                .map(|b| src_line[..b].chars().count() as u32 + 1)
                .unwrap()
        };
        if !(file.starts_with("missing-commit")) {
            assert_eq!(err.column, want_col, "{file}: {err}");
        }
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{name}:{line}:{}: expected ", err.column)),
            "{shown}"
        );
    }
    assert_eq!(seen, ERRORS.len());
}
