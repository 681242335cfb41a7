//! `sysctl -a` (or a subset: `sysctl net.ipv4.ip_forward`) and `/proc/sys` listings.
//!
//! Accepted lines: `key = value` (sysctl's output), `key: value`, `key=value`, and
//! `/proc/sys/net/ipv4/ip_forward:1` / `/proc/sys/net/ipv4/ip_forward = 1` (as printed by
//! `grep . /proc/sys/net/ipv4/conf/*/rp_filter`). Keys are stored in sysctl's dotted form;
//! `/proc/sys/` paths are converted (`/` -> `.`; sysctl(8) shows a `.` inside an interface name
//! such as `eth0.100` as `/`, so `net.ipv4.conf.eth0/100.rp_filter` is the VLAN interface
//! `eth0.100` and is stored with the dot restored).

use std::sync::Arc;

use kubepath_model::net::{NodeFact, NodeNet, Sysctl};
use kubepath_model::SourceRef;

use super::text::{diag, err, Line, Segment};
use crate::diag::{Diagnostic, ParseError, Severity};

/// Per-format structure: key/value pairs in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlOutput {
    pub values: Vec<(String, String, u32)>,
}

const ROOTS: &[&str] = &[
    "net.",
    "kernel.",
    "vm.",
    "fs.",
    "dev.",
    "user.",
    "abi.",
    "debug.",
    "crypto.",
    "sunrpc.",
    "/proc/sys/",
];

fn split(line: &str) -> Option<(&str, &str)> {
    let t = line.trim();
    // `key = value`, `key=value`, `key: value`, `/proc/sys/...:value`
    let idx = t.find(['=', ':'])?;
    let (k, v) = (t[..idx].trim(), t[idx + 1..].trim());
    if k.is_empty() || k.contains(char::is_whitespace) {
        return None;
    }
    ROOTS.iter().any(|r| k.starts_with(r)).then_some((k, v))
}

pub fn sniff(seg: &Segment<'_>) -> bool {
    if seg
        .command
        .is_some_and(|c| c.trim_start_matches("sudo ").starts_with("sysctl"))
    {
        return true;
    }
    // The first output line decides; a bad line later is a parse error with its position.
    seg.content()
        .find(|l| !l.text.trim_start().starts_with("sysctl: "))
        .is_some_and(|l| split(l.text).is_some())
}

/// Normalise a key to sysctl's dotted form.
pub fn normalise_key(k: &str) -> String {
    if let Some(p) = k.strip_prefix("/proc/sys/") {
        // In a path, `/` separates components and a `.` belongs to a name (eth0.100).
        return p.split('/').collect::<Vec<_>>().join(".");
    }
    // In dotted form sysctl prints a `.` of a name as `/`.
    k.replace('/', ".")
}

pub fn parse(
    file: &Arc<str>,
    lines: &[Line<'_>],
    diags: &mut Vec<Diagnostic>,
) -> Result<SysctlOutput, ParseError> {
    let mut values = Vec::new();
    for l in lines {
        let t = l.text.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with("sysctl: ") {
            // `sysctl: permission denied on key '...'` and similar stderr lines.
            diags.push(diag(
                Severity::Note,
                file,
                l.no,
                1,
                format!("sysctl reported: {t}"),
            ));
            continue;
        }
        match split(t) {
            Some((k, v)) => {
                let key = normalise_key(k);
                // The settings the simulation reads are integers: a value that is not one is
                // a broken line (skipped in lenient mode, so what needs it is unknown), never
                // silently "not collected".
                let numeric = key == "net.ipv4.ip_forward"
                    || [
                        ".rp_filter",
                        ".forwarding",
                        ".accept_local",
                        ".src_valid_mark",
                    ]
                    .iter()
                    .any(|suffix| key.ends_with(suffix));
                if numeric && v.trim().parse::<i64>().is_err() {
                    let col = l.text.rfind(v).map(|i| i + 1).unwrap_or(1) as u32;
                    return Err(err(
                        file,
                        l.no,
                        col,
                        "an integer value",
                        format!("`{}`", v.trim()),
                    ));
                }
                values.push((key, v.to_string(), l.no))
            }
            None => {
                let col = (l.text.len() - l.text.trim_start().len() + 1) as u32;
                return Err(err(
                    file,
                    l.no,
                    col,
                    "a sysctl line `key = value`",
                    format!("`{t}`"),
                ));
            }
        }
    }
    Ok(SysctlOutput { values })
}

pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    net: &mut NodeNet,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    if !sniff(seg) {
        return Ok(None);
    }
    let out = parse(file, &seg.lines, diags)?;
    for (k, v, line) in out.values {
        // `sysctl -a` prints each key once: a key set twice to different values comes from
        // two captures joined (another node's, another time), and which one holds is
        // unknown. Its value becomes one no setting reads as a number, so what needs it is
        // unknown, never the last one read (issue #11, review: a second `rp_filter = 1` after
        // `= 2` made a confident rp-filter drop).
        if let Some(old) = net.sysctls.get(&k) {
            if old.value.trim() == v.trim() {
                continue;
            }
            diags.push(diag(
                Severity::Error,
                file,
                line,
                1,
                format!(
                    "`{k}` is `{}` on {} and `{}` here, but `sysctl -a` prints each key once (two captures joined?): its value is unknown",
                    old.value.trim(),
                    old.source,
                    v.trim()
                ),
            ));
            let conflict = format!(
                "unknown (`{}` on {}, `{}` on {file}:{line})",
                old.value.trim(),
                old.source,
                v.trim()
            );
            net.sysctls.insert(
                k,
                Sysctl {
                    value: conflict,
                    source: SourceRef::new(file.clone(), line),
                },
            );
            continue;
        }
        net.sysctls.insert(
            k,
            Sysctl {
                value: v,
                source: SourceRef::new(file.clone(), line),
            },
        );
    }
    net.read
        .entry(NodeFact::Sysctls)
        .or_default()
        .push(SourceRef::new(
            file.clone(),
            seg.content().next().map(|l| l.no).unwrap_or(0),
        ));
    Ok(Some("sysctl"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::text::segments;

    #[test]
    fn forms() {
        let f: Arc<str> = "t".into();
        let t = "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter=2\n/proc/sys/net/ipv4/conf/eth0.100/rp_filter:1\nnet.ipv4.conf.eth0/200.rp_filter: 0\n";
        let o = parse(&f, &segments(t)[0].lines, &mut Vec::new()).unwrap();
        assert_eq!(o.values[0].0, "net.ipv4.ip_forward");
        assert_eq!(o.values[1].1, "2");
        assert_eq!(o.values[2].0, "net.ipv4.conf.eth0.100.rp_filter");
        assert_eq!(o.values[3].0, "net.ipv4.conf.eth0.200.rp_filter");
    }

    /// A setting the simulation reads with a value that is no integer is an error on its
    /// line (lenient loading skips the line: what needs it is unknown), not "not collected".
    #[test]
    fn non_integer_settings_are_errors() {
        let f: Arc<str> = "t".into();
        for (t, col) in [
            (
                "net.ipv4.ip_forward = 1\nnet.ipv4.conf.eth0.rp_filter = banana\n",
                32,
            ),
            ("net.ipv4.conf.all.forwarding = on\n", 32),
        ] {
            let e = parse(&f, &segments(t)[0].lines, &mut Vec::new()).unwrap_err();
            assert_eq!(e.expected, "an integer value", "{t}");
            assert_eq!(e.column, col, "{t}");
        }
        // Other keys keep their text (strings, lists).
        let t = "kernel.hostname = node-1\nnet.ipv4.ip_local_port_range = 32768\t60999\n";
        assert!(parse(&f, &segments(t)[0].lines, &mut Vec::new()).is_ok());
    }

    #[test]
    fn rp_filter_is_max_of_all_and_iface() {
        let f: Arc<str> = "t".into();
        let mut net = NodeNet::default();
        let t = "net.ipv4.conf.all.rp_filter = 1\nnet.ipv4.conf.eth0.rp_filter = 0\nnet.ipv4.conf.eth1.rp_filter = 2\nnet.ipv4.ip_forward = 1\nnet.ipv4.fib_multipath_hash_policy = 1\n";
        read(&f, &segments(t)[0], &mut net, &mut Vec::new()).unwrap();
        assert_eq!(net.rp_filter("eth0"), Some(1));
        assert_eq!(net.rp_filter("eth1"), Some(2));
        assert_eq!(net.rp_filter("eth9"), None);
        assert_eq!(net.ip_forward(), Some(true));
        assert_eq!(net.fib_multipath_hash_policy(), Some(1));
    }

    /// Issue #11 (review): a key printed twice with different values is unknown (an
    /// error), whichever comes last; the same value twice is one setting.
    #[test]
    fn a_key_set_twice_to_different_values_is_unknown() {
        let file: Arc<str> = Arc::from("nodes/n1/sysctl.txt");
        let text = "net.ipv4.conf.all.rp_filter = 0\nnet.ipv4.conf.eth0.rp_filter = 2\nnet.ipv4.ip_forward = 1\nnet.ipv4.conf.eth0.rp_filter = 1\nnet.ipv4.ip_forward = 1\n";
        let segs = crate::net::text::segments(text);
        let mut net = NodeNet::default();
        let mut diags = Vec::new();
        read(&file, &segs[0], &mut net, &mut diags).unwrap();
        assert_eq!(net.rp_filter("eth0"), None);
        assert_eq!(net.ip_forward(), Some(true));
        let errors: Vec<_> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{diags:?}");
        assert_eq!(errors[0].line, 4);
        assert!(
            errors[0].message.contains("`2` on nodes/n1/sysctl.txt:2"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn bad_line() {
        let f: Arc<str> = "t".into();
        let e = parse(
            &f,
            &segments("net.ipv4.ip_forward = 1\n  garbage here\n")[0].lines,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
    }
}
