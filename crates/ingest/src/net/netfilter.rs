//! iptables-save / ip6tables-save / `iptables [-t T] -S` and `ipset save`, parsed by
//! kubepath-netfilter into the node's rulesets.
//!
//! Several files combine (one per table is common). For `-S` output, which has no table
//! headers, the table comes from the echoed command (`iptables -t nat -S`; without `-t` it is
//! the filter table, as iptables prints it), else from the file name (`nat.rules`,
//! `iptables-t-nat-S.txt`), else the filter table is assumed with a warning.

use std::sync::Arc;

use kubepath_model::net::{Family, IptablesBackend, IptablesDump, NodeFact, NodeNet};
use kubepath_model::SourceRef;
use kubepath_netfilter::{Format, IpSets, Ruleset, Table};

use super::text::{diag, Segment};
use crate::diag::{Diagnostic, ParseError, Severity};

/// The file's text with every line outside `seg` blanked, so the engine's line numbers are
/// the file's.
pub(crate) fn segment_text(seg: &Segment<'_>) -> String {
    let mut out = String::new();
    let mut line = 1u32;
    for l in &seg.lines {
        while line < l.no {
            out.push('\n');
            line += 1;
        }
        out.push_str(l.text);
        out.push('\n');
        line += 1;
    }
    out
}

/// A ruleset file as an operator pastes it, for `kubepath netfilter trace --ruleset`: the
/// text with every prompt line blanked (the same prompt grammar as the snapshot readers,
/// [`super::text::segments`]; a quoted paste is unquoted), so line numbers stay the file's,
/// and the table that an echoed `iptables -t TABLE -S` names, if any.
pub fn ruleset_file_text(text: &str) -> (String, Option<Table>) {
    let segs = super::text::segments(text);
    let table = echoed_table(&segs);
    let out = unprompted_text(text, &segs).unwrap_or_else(|| text.to_owned());
    (out, table)
}

/// What `kubepath netfilter trace --ruleset` reads of a file, in one pass over its prompt
/// lines: [`ruleset_file_text`] and [`ruleset_file_is_complete`] together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesetFile {
    /// The text [`ruleset_file_text`] gives; `None` when it is the file's text itself (no
    /// prompt line, no quote marks, no `\r`, ending with a newline), the usual case, so a
    /// large `iptables-save` is not copied.
    pub text: Option<String>,
    /// The table an echoed `iptables -t TABLE -S` names.
    pub echoed_table: Option<Table>,
    /// [`ruleset_file_is_complete`].
    pub complete: bool,
}

/// [`RulesetFile`] of file `name` with text `raw`.
pub fn ruleset_file(name: &str, raw: &str) -> RulesetFile {
    let segs = super::text::segments(raw);
    let echoed_table = echoed_table(&segs);
    let text = unprompted_text(raw, &segs);
    let complete = is_complete(name, &segs, text.as_deref().unwrap_or(raw));
    RulesetFile {
        text,
        echoed_table,
        complete,
    }
}

fn echoed_table(segs: &[Segment<'_>]) -> Option<Table> {
    segs.iter()
        .filter_map(|s| s.command)
        .find_map(Table::from_command)
        .flatten()
}

/// The segments' lines with every line outside them blanked; `None` when that is `raw` itself:
/// every line of `raw` kept, unchanged (each kept line is the slice of `raw` where the previous
/// one ended, and a newline follows it).
fn unprompted_text(raw: &str, segs: &[Segment<'_>]) -> Option<String> {
    let base = raw.as_ptr() as usize;
    let mut off = 0usize;
    let mut no = 1u32;
    let same = segs.iter().flat_map(|s| &s.lines).all(|l| {
        let ok = l.no == no
            && l.text.as_ptr() as usize == base + off
            && raw.as_bytes().get(off + l.text.len()) == Some(&b'\n');
        off += l.text.len() + 1;
        no += 1;
        ok
    }) && off == raw.len();
    if same {
        return None;
    }
    let mut out = String::new();
    let mut line = 1u32;
    for seg in segs {
        for l in &seg.lines {
            while line < l.no {
                out.push('\n');
                line += 1;
            }
            out.push_str(l.text);
            out.push('\n');
            line += 1;
        }
    }
    Some(out)
}

/// Whether a ruleset file given to `kubepath netfilter trace --ruleset` is a dump of every
/// table the kernel has, by the rule a snapshot's file is judged by ([`complete_save`]):
/// `iptables-save` format, not filtered (`| grep`), no `-t` echoed, no table named in the
/// file name, no iptables-legacy warning. A table absent from such a dump is not loaded.
pub fn ruleset_file_is_complete(name: &str, raw: &str) -> bool {
    ruleset_file(name, raw).complete
}

/// [`ruleset_file_is_complete`] from the file's segments and its unprompted text.
fn is_complete(name: &str, segs: &[Segment<'_>], text: &str) -> bool {
    if segs.iter().any(|s| s.filter().is_some()) {
        return false;
    }
    let command = segs.iter().find_map(|s| s.command);
    Ruleset::sniff(text) == Some(Format::Save) && complete_save(name, command, text)
}

pub(crate) fn convert_err(e: kubepath_netfilter::ParseError) -> ParseError {
    ParseError {
        file: e.file,
        line: e.line,
        column: e.column,
        expected: e.expected,
        found: e.found,
    }
}

pub(crate) fn convert_diags(
    file: &Arc<str>,
    d: Vec<kubepath_netfilter::Diagnostic>,
    out: &mut Vec<Diagnostic>,
) {
    for x in d {
        out.push(diag(Severity::Warning, file, x.source.line, 0, x.message));
    }
}

fn is_ipset(seg: &Segment<'_>) -> bool {
    seg.content().take(3).any(|l| {
        let t = l.text.trim_start();
        t.starts_with("create ")
            && t.split_whitespace().nth(2).is_some_and(|ty| {
                ty.starts_with("hash:") || ty.starts_with("bitmap:") || ty.starts_with("list:")
            })
    })
}

/// Is this `iptables-save` output a dump of every table the kernel has?
///
/// `iptables-save` without `-t` dumps every loaded table: iptables-legacy every name in
/// `/proc/net/ip_tables_names` (a table appears there once its module is loaded and the
/// table registered, even when empty, e.g. kube-proxy's nat), iptables-nft every `ip` family
/// table it knows. A table absent from such a dump is therefore not loaded: its hooks hold
/// no rules and accept, which is a fact, not a gap. With `-t TABLE` (echoed, or a table named
/// in the file name, e.g. `iptables-save-nat.txt`) only that table is dumped and the others are
/// unknown. iptables-nft-save's `# Warning: iptables-legacy tables present` means other rules
/// live in the legacy tables, which this dump does not show: not complete either.
fn complete_save(file: &str, command: Option<&str>, text: &str) -> bool {
    if text.contains("iptables-legacy tables present") {
        return false;
    }
    if let Some(cmd) = command {
        let w: Vec<&str> = cmd
            .split('|')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        // Quotes the shell puts around words (`"iptables-save" -t nat`: review 9).
        fn unquoted(x: &str) -> &str {
            x.trim_matches(['"', '\'', '(', ')', '`'])
        }
        // iptables-save, ip6tables-save and their -legacy/-nft variants (review 10).
        let saver = |x: &str| {
            let x = unquoted(x);
            ["tables-save", "tables-legacy-save", "tables-nft-save"]
                .iter()
                .any(|p| x.ends_with(p))
        };
        if let Some(prog) = w.iter().position(|x| saver(x)) {
            return !w[prog + 1..].iter().map(|a| unquoted(a)).any(|a| {
                a.starts_with("--table") || (a.starts_with("-t") && !a.starts_with("--"))
            });
        }
    }
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    !base
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|p| Table::parse(&p.to_ascii_lowercase()).is_some())
}

/// Which iptables variant printed `text`: the echoed command (`iptables-legacy-save`,
/// `iptables-nft -S`), else the `# Generated by` header: iptables-nft-save writes
/// `iptables-nft-save v1.8.4` or `iptables-save v1.8.9 (nf_tables)`, iptables-legacy-save
/// `iptables-save v1.8.9` (observed with 1.8.9 in a network namespace). `-S` output has no
/// header: None unless the command says.
fn backend_of(command: Option<&str>, text: &str) -> Option<IptablesBackend> {
    if let Some(cmd) = command {
        let prog = cmd
            .split('|')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .find(|w| {
                let b = w.rsplit('/').next().unwrap_or(w);
                b.starts_with("iptables") || b.starts_with("ip6tables")
            });
        if let Some(p) = prog {
            if p.contains("-legacy") {
                return Some(IptablesBackend::Legacy);
            }
            if p.contains("-nft") {
                return Some(IptablesBackend::Nft);
            }
        }
    }
    let header = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("# Generated by "))?;
    if header.contains("(nf_tables)") || header.contains("tables-nft-save") {
        Some(IptablesBackend::Nft)
    } else if header.contains("tables-legacy-save")
        || header.starts_with("# Generated by iptables-save v")
        || header.starts_with("# Generated by ip6tables-save v")
    {
        Some(IptablesBackend::Legacy)
    } else {
        None
    }
}

/// Does the text hold kube-proxy's service rules (iptables mode)? A rule in `KUBE-SERVICES`
/// or a `KUBE-SVC-` chain; kubelet's canary and firewall chains alone are not kube-proxy's.
fn has_kube_proxy_rules(text: &str) -> bool {
    text.lines().map(str::trim_start).any(|l| {
        l.starts_with("-A KUBE-SERVICES ")
            || l.starts_with(":KUBE-SVC-")
            || l.starts_with("-N KUBE-SVC-")
            || l.starts_with("-A KUBE-SVC-")
    })
}

fn looks_ipv6(file: &str, seg: &Segment<'_>, text: &str) -> bool {
    if seg.command.is_some_and(|c| c.contains("ip6tables"))
        || file
            .rsplit('/')
            .next()
            .is_some_and(|f| f.contains("ip6tables"))
    {
        return true;
    }
    if seg.command.is_some_and(|c| c.contains("iptables")) {
        return false;
    }
    // The header names the program that wrote it: `# Generated by ip6tables-save v1.8.9`,
    // `# Generated by ip6tables-nft-save v1.8.9 (nf_tables)` (sixth review: a file named
    // `v6.rules` without an IPv6 address, as kube-proxy writes on an IPv4-only node, was
    // read as IPv4).
    if let Some(h) = text
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with("# Generated by "))
    {
        let prog = h["# Generated by ".len()..]
            .split_whitespace()
            .next()
            .unwrap_or("");
        if prog.starts_with("ip6tables") {
            return true;
        }
        if prog.starts_with("iptables") {
            return false;
        }
    }
    text.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.windows(2).any(|p| {
            matches!(p[0], "-s" | "-d" | "--source" | "--destination") && p[1].contains(':')
        }) || l.contains("ipv6-icmp")
            || l.contains("icmpv6")
    })
}

/// The chain an echoed `iptables [-t TABLE] -S CHAIN` (or `-L CHAIN`) lists, as the partial
/// capture it makes: `-S CHAIN`.
fn chain_listed(command: Option<&str>) -> Option<String> {
    let words: Vec<&str> = command?.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == "-S" || *w == "--list-rules")?;
    let chain = words.get(i + 1).filter(|w| !w.starts_with('-'))?;
    // `-S CHAIN N` prints rule N only: some rules of the chain, as a grep shows them.
    if let Some(n) = words.get(i + 2).filter(|w| w.parse::<u32>().is_ok()) {
        return Some(format!("| rule {n} of {chain}"));
    }
    Some(format!("-S {chain}"))
}

pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    net: &mut NodeNet,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    let src = SourceRef::new(
        file.clone(),
        seg.content().next().map(|l| l.no).unwrap_or(0),
    );
    if is_ipset(seg) {
        let text = segment_text(seg);
        let (sets, d) = IpSets::parse_save(file, &text).map_err(convert_err)?;
        convert_diags(file, d, diags);
        let earlier = net
            .read
            .get(&NodeFact::Ipsets)
            .and_then(|v| v.first())
            .cloned();
        let differ = match &net.ipsets {
            Some(old) => old.differing_common(&sets),
            None => Vec::new(),
        };
        match (&mut net.ipsets, earlier) {
            // Two captures that agree on the sets both hold (`ipset save NAME` prints one):
            // one moment, read twice; a set only the second holds is added.
            (Some(old), Some(_)) if differ.is_empty() => old.add_missing(&sets),
            (_, Some(earlier)) => {
                // Two captures of different moments or nodes (issue #11, review): which one
                // the node runs is unknown, so every match against a set is.
                let what = if differ.is_empty() {
                    "a set".to_string()
                } else {
                    format!("set {}", differ.join(", "))
                };
                let why = format!(
                    "the `ipset save` outputs {earlier} and {}:{} of this node give {what} different members: two captures of different moments or nodes, so the node's ipsets are unknown (collect one `ipset save`)",
                    src.file, src.line
                );
                diags.push(diag(Severity::Error, file, src.line, 0, why.clone()));
                if !net.doubts.iter().any(|(f, _)| *f == NodeFact::Ipsets) {
                    net.doubts.push((NodeFact::Ipsets, why));
                }
                net.ipsets = None;
            }
            (_, None) => net.ipsets = Some(sets),
        }
        net.read.entry(NodeFact::Ipsets).or_default().push(src);
        return Ok(Some("ipset-save"));
    }
    if seg.content().next().is_some_and(|l| {
        let t = l.text.trim_start();
        t.starts_with("Chain ") && (t.contains("(policy ") || t.contains(" references)"))
    }) {
        // `iptables -L [-n] [-v]`: a listing that drops interfaces and shortens matches; it
        // cannot be evaluated faithfully.
        diags.push(diag(
            Severity::Warning,
            file,
            src.line,
            1,
            "`iptables -L` listing is not read (it omits interfaces and abbreviates matches); collect `iptables-save` instead",
        ));
        return Ok(Some("iptables-L-unsupported"));
    }
    let text = segment_text(seg);
    let Some(format) = Ruleset::sniff(&text) else {
        return Ok(None);
    };
    // Two `iptables-save` outputs pasted into one file (it never prints a table twice): two
    // captures, compared as two files are (sixth review R7: the second silently won, as a
    // later block of one iptables-restore input does). The second keeps its line numbers.
    if format == Format::Save {
        if let Some(off) = second_capture_at(&text) {
            let before = text[..off].matches('\n').count();
            let second = format!("{}{}", "\n".repeat(before), &text[off..]);
            let first = text[..off].to_string();
            read_ruleset(file, seg, src, first, format, net, diags)?;
            let src2 = SourceRef::new(file.clone(), before as u32 + 1);
            return read_ruleset(file, seg, src2, second, format, net, diags).map(Some);
        }
    }
    read_ruleset(file, seg, src, text, format, net, diags).map(Some)
}

/// Where a second `iptables-save` output starts in `text`: at its `# Generated by` line, or
/// at the `*table` line that gives a table already given.
fn second_capture_at(text: &str) -> Option<usize> {
    let mut seen: Vec<&str> = Vec::new();
    let mut header: Option<usize> = None;
    let mut off = 0usize;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with("# Generated by") {
            header = Some(off);
        } else if let Some(name) = t.strip_prefix('*') {
            if seen.contains(&name) {
                return Some(header.unwrap_or(off));
            }
            seen.push(name);
            header = None;
        } else if !t.is_empty() && !t.starts_with('#') {
            header = None;
        }
        off += line.len();
    }
    None
}

/// Reads one ruleset capture (`text`, of `format`) of the node.
fn read_ruleset(
    file: &Arc<str>,
    seg: &Segment<'_>,
    src: SourceRef,
    text: String,
    format: Format,
    net: &mut NodeNet,
    diags: &mut Vec<Diagnostic>,
) -> Result<&'static str, ParseError> {
    let v6 = looks_ipv6(file, seg, &text);
    let mut guessed = false;
    let default_table = match format {
        Format::Save => None,
        Format::Rules => {
            let t = seg
                .command
                .and_then(Table::from_command)
                .flatten()
                .or_else(|| Ruleset::table_hint(file, &text));
            match t {
                Some(t) => Some(t),
                None => {
                    diags.push(diag(
                        Severity::Warning,
                        file,
                        src.line,
                        0,
                        "`iptables -S` output without a table name (no `-t TABLE` echoed, none in the file name): read as the filter table, which `iptables -S` prints without -t",
                    ));
                    guessed = true;
                    Some(Table::Filter)
                }
            }
        }
    };
    let (slot, fam, fact) = if v6 {
        (
            &mut net.netfilter6,
            kubepath_netfilter::Family::Ipv6,
            NodeFact::Ip6tables,
        )
    } else {
        (
            &mut net.netfilter,
            kubepath_netfilter::Family::Ipv4,
            NodeFact::Iptables,
        )
    };
    // What makes this capture partial: a filter (`| grep`) or one chain (`-S CHAIN`).
    let partial = seg
        .filter()
        .or_else(|| chain_listed(seg.command))
        .or_else(|| guessed.then(|| "its table guessed".to_string()));
    let earlier = slot.clone();
    // Parsed ahead on another core (crate::prefetch) when this is exactly that parse: this
    // file's text into an empty IPv4 ruleset without a default table.
    let prepared = match (&slot, default_table, fam) {
        (None, None, kubepath_netfilter::Family::Ipv4) => {
            crate::prefetch::take_ruleset(file, &text)
        }
        _ => None,
    };
    let (mut rs, d) = match prepared {
        Some(r) => r.map_err(convert_err)?,
        None => {
            let mut rs = slot
                .as_deref()
                .cloned()
                .unwrap_or_else(|| Ruleset::new(fam));
            let d = rs
                .add_text(file, &text, default_table)
                .map_err(convert_err)?;
            (rs, d)
        }
    };
    if let Some(earlier) = earlier {
        // A second capture of tables already read (`iptables-save` beside `iptables -t nat
        // -S`, or two saves of different moments): where they give a table different rules,
        // neither is known to be what the node runs (issue #11, review: the later one used to
        // win as if it were a later `*table` block of one iptables-restore input). The file's
        // own diagnostics are those of it read alone: "given again" is about blocks of one
        // file, not about two captures.
        // A partial capture (`iptables -t nat -S CHAIN`, a `| grep`) shows some chains or
        // rules of the moment: only the chains both give can disagree, and the whole table
        // read first stays (fifth review: a partial capture beside the whole one was called
        // a contradiction).
        let earlier_partial = net.partial.iter().any(|(f, _, _)| *f == fact);
        let both_whole = partial.is_none() && !earlier_partial;
        let mut alone = Ruleset::new(fam);
        if let Ok(d) = alone.add_text(file, &text, default_table) {
            convert_diags(file, d, diags);
            for t in Table::ALL {
                if !(alone.has_table(t) && earlier.has_table(t)) {
                    continue;
                }
                // A `-S` output whose table was guessed cannot contradict a capture that
                // names its tables (review 8 Y6: `-S KUBE-SVC-…` of nat, read as filter, was
                // a disagreement): the named capture stands.
                if guessed {
                    rs.restore_table_from(&earlier, t);
                    continue;
                }
                if net
                    .partial
                    .iter()
                    .any(|(f, _, p)| *f == fact && p == "its table guessed")
                {
                    continue;
                }
                let differ: Vec<String> = if both_whole {
                    if earlier.same_table(&alone, t) {
                        Vec::new()
                    } else {
                        vec![format!("the {} table", t.name())]
                    }
                } else {
                    // The partial one within the whole one: `-S CHAIN` gives the chain whole,
                    // a `| grep` some of its rules.
                    let earlier_listed = net
                        .partial
                        .iter()
                        .filter(|(f, _, _)| *f == fact)
                        .find_map(|(_, _, p)| p.strip_prefix("-S "));
                    let (whole, part, listed) = match &partial {
                        Some(p) => (&*earlier, &alone, p.strip_prefix("-S ")),
                        None => (&alone, &*earlier, earlier_listed),
                    };
                    whole
                        .chains_not_within(part, t, listed)
                        .iter()
                        .map(|(c, at)| {
                            let at: Vec<String> = at.iter().map(|s| s.to_string()).collect();
                            if at.is_empty() {
                                format!("chain {c} of the {} table", t.name())
                            } else {
                                format!("chain {c} of the {} table ({})", t.name(), at.join(", "))
                            }
                        })
                        .collect()
                };
                if differ.is_empty() {
                    // One moment, seen twice: the fuller view read first stands.
                    // The whole view stands: a partial one read later does not replace it.
                    if partial.is_some() {
                        rs.restore_table_from(&earlier, t);
                    }
                    continue;
                }
                {
                    let before = net.read_files(fact);
                    let why = format!(
                        "{} of this node {} given differently by {before} and {}:{}: two captures of different moments or nodes, so the node's {} rules are unknown (collect one `{}`)",
                        differ.join(", "),
                        if differ.len() == 1 { "is" } else { "are" },
                        src.file,
                        src.line,
                        if v6 { "ip6tables" } else { "iptables" },
                        fact.command()
                    );
                    diags.push(diag(Severity::Error, file, src.line, 0, why.clone()));
                    if !net.doubts.iter().any(|(f, _)| *f == fact) {
                        net.doubts.push((fact, why));
                    }
                }
            }
        }
    } else {
        convert_diags(file, d, diags);
    }
    let model_fam = if v6 { Family::Ipv6 } else { Family::Ipv4 };
    net.iptables_dumps.push(IptablesDump {
        family: model_fam,
        backend: backend_of(seg.command, &text),
        kube_proxy: has_kube_proxy_rules(&text),
        warns_legacy_tables: text.contains("iptables-legacy tables present"),
        source: src.clone(),
    });
    if format == Format::Save
        && seg.filter().is_none()
        && complete_save(file, seg.command, &text)
        && !net.netfilter_complete.contains(&model_fam)
    {
        net.netfilter_complete.push(model_fam);
    }
    for t in [
        Table::Raw,
        Table::Mangle,
        Table::Nat,
        Table::Filter,
        Table::Security,
    ] {
        if rs.has_table(t) && !net.netfilter_tables.contains(&(model_fam, t)) {
            net.netfilter_tables.push((model_fam, t));
        }
    }
    let slot = if v6 {
        &mut net.netfilter6
    } else {
        &mut net.netfilter
    };
    *slot = Some(Arc::new(rs));
    if let Some(f) = partial {
        net.partial.push((fact, src.clone(), f));
    }
    net.read.entry(fact).or_default().push(src);
    Ok(match (format, v6) {
        (Format::Save, false) => "iptables-save",
        (Format::Save, true) => "ip6tables-save",
        (Format::Rules, false) => "iptables-S",
        (Format::Rules, true) => "ip6tables-S",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::text::segments;

    /// Two `iptables-save` outputs pasted into one file (it never prints a table twice) are
    /// two captures: one that disagrees is a doubt naming both lines, the same one twice is
    /// not (sixth review R7).
    #[test]
    fn two_saves_in_one_file_are_two_captures() {
        let save = |target: &str| {
            format!("# Generated by iptables-save v1.8.9 on Sun Dec  6 22:18:29 2026\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -d 10.0.0.0/8 -j {target}\nCOMMIT\n# Completed on Sun Dec  6 22:18:29 2026\n")
        };
        let f: Arc<str> = "n/iptables-save.txt".into();
        for (text, doubt) in [
            (format!("{}{}", save("ACCEPT"), save("DROP")), true),
            (format!("{}{}", save("ACCEPT"), save("ACCEPT")), false),
        ] {
            let mut net = NodeNet::default();
            let mut d = Vec::new();
            for seg in segments(&text) {
                read(&f, &seg, &mut net, &mut d).unwrap();
            }
            assert_eq!(net.doubts.len(), usize::from(doubt), "{d:?}");
            if doubt {
                assert!(
                    net.doubts[0]
                        .1
                        .contains("n/iptables-save.txt:1 and n/iptables-save.txt:9"),
                    "{}",
                    net.doubts[0].1
                );
                assert_eq!(d[0].line, 9);
            } else {
                assert!(d.is_empty(), "{d:?}");
            }
        }
    }

    /// The header names the family: an `ip6tables-save` without an IPv6 address in a file
    /// whose name does not say (kube-proxy's chains on an IPv4-only node) is IPv6, an
    /// `iptables-save` IPv4 (sixth review R5).
    #[test]
    fn the_header_names_the_family() {
        let body = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FORWARD - [0:0]\nCOMMIT\n";
        for (head, v6) in [
            ("# Generated by ip6tables-nft-save v1.8.9 (nf_tables) on Sun Dec  6 22:18:29 2026\n", true),
            ("# Generated by ip6tables-save v1.8.7 on Sun Dec  6 22:18:29 2026\n", true),
            ("# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sun Dec  6 22:18:29 2026\n", false),
        ] {
            let f: Arc<str> = "n/v6.rules".into();
            let mut net = NodeNet::default();
            let mut d = Vec::new();
            for seg in segments(&format!("{head}{body}")) {
                read(&f, &seg, &mut net, &mut d).unwrap();
            }
            assert_eq!(net.netfilter6.is_some(), v6, "{head}");
            assert_eq!(net.netfilter.is_some(), !v6, "{head}");
        }
    }

    /// Each dump records the iptables variant that printed it and whether it holds
    /// kube-proxy's rules (headers as iptables 1.8.9 and 1.8.4 write them).
    #[test]
    fn dumps_record_the_iptables_variant() {
        let body = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT\n";
        let load = |file: &str, text: &str| {
            let f: Arc<str> = file.into();
            let mut net = NodeNet::default();
            let mut d = Vec::new();
            for seg in segments(text) {
                read(&f, &seg, &mut net, &mut d).unwrap();
            }
            net
        };
        let legacy =
            format!("# Generated by iptables-save v1.8.9 on Sun Dec  6 22:18:29 2026\n{body}");
        let nft = format!("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n# Generated by iptables-nft-save v1.8.9 (nf_tables) on Sun Dec  6 22:18:29 2026\n{body}");
        let old_nft =
            format!("# Generated by iptables-nft-save v1.8.4 on Mon Sep 21 16:32:28 2020\n{body}");
        let n = load("n/iptables-save.txt", &legacy);
        assert_eq!(n.iptables_dumps.len(), 1);
        assert_eq!(n.iptables_dumps[0].backend, Some(IptablesBackend::Legacy));
        assert!(n.iptables_dumps[0].kube_proxy);
        let n = load("n/iptables-save.txt", &nft);
        assert_eq!(n.iptables_dumps[0].backend, Some(IptablesBackend::Nft));
        assert!(n.iptables_dumps[0].warns_legacy_tables);
        let n = load("n/iptables-save.txt", &old_nft);
        assert_eq!(n.iptables_dumps[0].backend, Some(IptablesBackend::Nft));
        // The echoed command says it for `-S` output, which has no header.
        let n = load(
            "n/rules.txt",
            "node:~ # iptables-legacy -t nat -S\n-P PREROUTING ACCEPT\n-N KUBE-SERVICES\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j ACCEPT\n",
        );
        assert_eq!(n.iptables_dumps[0].backend, Some(IptablesBackend::Legacy));
        assert!(n.iptables_dumps[0].kube_proxy);
        // Kubelet's chains alone are not kube-proxy's rules; no header, no command: unknown.
        let n = load(
            "n/filter.rules",
            "-P INPUT ACCEPT\n-N KUBE-FIREWALL\n-A INPUT -j KUBE-FIREWALL\n",
        );
        assert_eq!(n.iptables_dumps[0].backend, None);
        assert!(!n.iptables_dumps[0].kube_proxy);
    }

    /// A complete `iptables-save` tells which tables the kernel has; one by table does not.
    #[test]
    fn complete_save_is_told_from_a_dump_by_table() {
        let save =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let load = |file: &str, text: &str| {
            let f: Arc<str> = file.into();
            let mut net = NodeNet::default();
            let mut d = Vec::new();
            for seg in segments(text) {
                read(&f, &seg, &mut net, &mut d).unwrap();
            }
            net
        };
        let n = load("n/iptables-save.txt", save);
        assert_eq!(n.netfilter_complete, vec![Family::Ipv4]);
        assert!(n.uncollected_tables(Family::Ipv4).is_empty());
        let n = load("n/iptables-save-filter.txt", save);
        assert!(n.netfilter_complete.is_empty());
        assert_eq!(
            n.uncollected_tables(Family::Ipv4),
            vec![Table::Raw, Table::Mangle, Table::Nat, Table::Security]
        );
        let n = load(
            "n/out.txt",
            &format!("node:~ # iptables-save -t filter\n{save}"),
        );
        assert!(n.netfilter_complete.is_empty());
        let n = load("n/out.txt", &format!("node:~ # iptables-save\n{save}"));
        assert_eq!(n.netfilter_complete, vec![Family::Ipv4]);
        // Quoted by the shell (review 9): still one table.
        for echo in [
            "\"iptables-save\" -t filter",
            "ssh n 'sudo iptables-save -t filter'",
            "iptables-legacy-save -t filter",
            "sudo iptables-nft-save --table=filter",
        ] {
            let n = load("n/out.txt", &format!("node:~ # {echo}\n{save}"));
            assert!(n.netfilter_complete.is_empty(), "{echo}");
        }
        let n = load(
            "n/iptables-save.txt",
            &format!("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n{save}"),
        );
        assert!(n.netfilter_complete.is_empty());
        // Nothing read: not "uncollected tables" but no ruleset at all (said elsewhere).
        assert!(NodeNet::default()
            .uncollected_tables(Family::Ipv4)
            .is_empty());
    }

    #[test]
    fn save_and_s_combine() {
        let f: Arc<str> = "n/iptables".into();
        let mut net = NodeNet::default();
        let mut d = Vec::new();
        let t = "# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(
            read(&f, &segments(t)[0], &mut net, &mut d).unwrap(),
            Some("iptables-save")
        );
        let t = "node:~ # iptables -t nat -S\n-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n-N KUBE-SERVICES\n-A PREROUTING -j KUBE-SERVICES\n";
        assert_eq!(
            read(&f, &segments(t)[0], &mut net, &mut d).unwrap(),
            Some("iptables-S")
        );
        let rs = net.netfilter.as_ref().unwrap();
        assert!(rs.has_table(Table::Filter) && rs.has_table(Table::Nat));
        assert_eq!(
            rs.chain_names(Table::Nat)
                .iter()
                .filter(|c| &***c == "KUBE-SERVICES")
                .count(),
            1
        );
    }

    /// Two files of one node that both hold `*nat` with different rules: two captures of
    /// different moments, so the node's iptables rules are in doubt (an error naming both);
    /// the model holds the later one, as iptables-restore of both would.
    #[test]
    fn a_later_file_for_a_table_that_differs_is_a_doubt() {
        let mut net = NodeNet::default();
        let mut d = Vec::new();
        let a: Arc<str> = "n/iptables-save.txt".into();
        let t = "*nat\n:PREROUTING ACCEPT [0:0]\n:OLD - [0:0]\n-A PREROUTING -j OLD\nCOMMIT\n";
        read(&a, &segments(t)[0], &mut net, &mut d).unwrap();
        let b: Arc<str> = "n/iptables-save-later.txt".into();
        let t = "*nat\n:PREROUTING ACCEPT [0:0]\n:NEW - [0:0]\n-A PREROUTING -j NEW\nCOMMIT\n";
        read(&b, &segments(t)[0], &mut net, &mut d).unwrap();
        let rs = net.netfilter.as_ref().unwrap();
        let names = rs.chain_names(Table::Nat);
        assert!(names.iter().any(|c| &**c == "NEW"), "{names:?}");
        assert!(!names.iter().any(|c| &**c == "OLD"), "{names:?}");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((&*d[0].file, d[0].line), ("n/iptables-save-later.txt", 1));
        assert_eq!(d[0].severity, Severity::Error);
        assert!(
            d[0].message
                .contains("n/iptables-save.txt:1 and n/iptables-save-later.txt:1"),
            "{}",
            d[0].message
        );
        assert_eq!(net.doubts.len(), 1);
    }

    #[test]
    fn error_keeps_file_line() {
        let f: Arc<str> = "n/iptables".into();
        let mut net = NodeNet::default();
        let t = "node:~ # iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING --bogus-option x -j ACCEPT\nCOMMIT\n";
        let mut d = Vec::new();
        match read(&f, &segments(t)[0], &mut net, &mut d) {
            Err(e) => assert_eq!((&*e.file, e.line), ("n/iptables", 4)),
            Ok(_) => assert!(d.iter().any(|d| d.line == 4), "{d:?}"),
        }
    }
}
