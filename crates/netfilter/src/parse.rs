//! iptables-save / ip6tables-save / `iptables -S` parser.
//!
//! One pass over the text, no regex, no per-token allocation: tokens are slices of the line;
//! rule texts stay in the file text (rules keep byte ranges); chain names are interned per
//! table. Option syntax follows iptables(8) and iptables-extensions(8) (iptables 1.8.9).

use std::sync::Arc;

use crate::rule::{
    addrtype, ctstate, ctstatus, Chain, Cidr, ConnmarkOp, CtField, IfacePat, IpRangeM, MarkOp,
    Match, NatRange, PortRange, PortRangeU32, Rule, SetRef, TableData, Target,
};
use crate::ruleset::Ruleset;
use crate::types::{Diagnostic, Family, Format, ParseError, Proto, SourceRef, Table, Verdict};

/// A token of a line: its text (without quotes for quoted tokens, escapes still in) and
/// byte offset in the line.
#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    s: &'a str,
    off: usize,
}

struct Ctx<'a> {
    file: &'a Arc<str>,
    line_no: u32,
    line: &'a str,
}

impl Ctx<'_> {
    fn err_at(
        &self,
        off: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> ParseError {
        let col = self
            .line
            .get(..off.min(self.line.len()))
            .map(|s| s.chars().count())
            .unwrap_or(off) as u32
            + 1;
        ParseError {
            file: self.file.clone(),
            line: self.line_no,
            column: col,
            expected: expected.into(),
            found: found.into(),
        }
    }
    fn err_tok(&self, t: &Tok, expected: impl Into<String>) -> ParseError {
        self.err_at(t.off, expected, format!("`{}`", t.s))
    }
    fn err_eol(&self, expected: impl Into<String>) -> ParseError {
        self.err_at(self.line.trim_end().len() + 1, expected, "end of line")
    }
}

/// Split a line into tokens. Double-quoted strings may contain `\"` and `\\`. An unterminated
/// quote runs to the end of the line, as iptables-restore reads it (checked with iptables
/// 1.8.9: `--comment "abc -j ACCEPT` loads as a comment and no target); the return value says
/// whether that happened so the caller can warn.
fn tokenize<'a>(ctx: &Ctx<'a>, out: &mut Vec<Tok<'a>>) -> bool {
    tokenize_from(ctx, 0, out)
}

/// [`tokenize`] from byte `start` of the line (a char boundary: just after an ASCII byte).
fn tokenize_from<'a>(ctx: &Ctx<'a>, start: usize, out: &mut Vec<Tok<'a>>) -> bool {
    out.clear();
    let line = ctx.line;
    let b = line.as_bytes();
    let mut unterminated = false;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        if c == b' ' || c == b'\t' || c == b'\r' {
            i += 1;
            continue;
        }
        if c == b'"' {
            let start = i;
            i += 1;
            let end;
            loop {
                if i >= b.len() {
                    unterminated = true;
                    end = line.trim_end().len().max(start + 1);
                    break;
                }
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        end = i;
                        break;
                    }
                    _ => i = skip_plain(b, i + 1, |c| c != b'\\' && c != b'"'),
                }
            }
            out.push(Tok {
                s: line.get(start + 1..end).unwrap_or(""),
                off: start,
            });
            // An unterminated quote consumes the rest of the line; `end` may stop before
            // trailing Unicode whitespace (U+00A0 is two bytes), so never resume inside it.
            i = if unterminated { b.len() } else { end + 1 };
            continue;
        }
        let start = i;
        i = skip_plain(b, i, |c| !matches!(c, b' ' | b'\t' | b'\r'));
        out.push(Tok {
            // Token boundaries are ASCII bytes, so this is a char boundary; `get` keeps a
            // malformed line from ever panicking.
            s: line.get(start..i).unwrap_or(""),
            off: start,
        });
    }
    unterminated
}

/// The first position `>= i` of a byte that is not `plain` (or `b.len()`), where `plain` holds
/// for every byte above `0x22` except `\\` (0x5c): eight bytes at a time while all of them are
/// above `0x22` and none is `\\` (token and quoted-string bytes mostly are), then byte by byte.
fn skip_plain(b: &[u8], mut i: usize, plain: impl Fn(u8) -> bool) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(w) = b.get(i..i + 8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let x = u64::from_le_bytes(a);
        // Bytes <= 0x22 (blanks, `"`, control characters) and bytes equal to `\\`: the usual
        // "has a byte less than n" and "has a zero byte" tricks; a byte >= 0x80 is never
        // flagged by them, and is plain.
        let low = x.wrapping_sub(ONES * 0x23) & !x & HIGH;
        let y = x ^ (ONES * 0x5c);
        let bs = y.wrapping_sub(ONES) & !y & HIGH;
        if low | bs != 0 {
            break;
        }
        i += 8;
    }
    while i < b.len() && plain(b[i]) {
        i += 1;
    }
    i
}

pub(crate) fn sniff(text: &str) -> Option<Format> {
    let mut seen = 0;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        seen += 1;
        if seen > 3 {
            return None;
        }
        if l.starts_with('*') && Table::parse(l[1..].trim()).is_some() {
            return Some(Format::Save);
        }
        if l.starts_with(":") {
            return Some(Format::Save);
        }
        if l.starts_with("-P ") || l.starts_with("-N ") || l.starts_with("-A ") {
            return Some(Format::Rules);
        }
        if is_prompt_echo(l) {
            continue;
        }
        return None;
    }
    None
}

fn is_prompt_echo(l: &str) -> bool {
    !l.starts_with('-') && (l.contains("iptables") || l.contains("ip6tables")) && l.contains(" -")
}

pub(crate) fn table_hint(file: &str, text: &str) -> Option<Table> {
    // 1. A file name component naming a table: `nat.rules`, `iptables-t-nat-S.txt`, `mangle-S`.
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let mut found = None;
    let mut ambiguous = false;
    for part in base.split(|c: char| !c.is_ascii_alphanumeric()) {
        if let Some(t) = Table::parse(&part.to_ascii_lowercase()) {
            if found.is_some() && found != Some(t) {
                ambiguous = true;
            }
            found = Some(t);
        }
    }
    if found.is_some() && !ambiguous {
        return found;
    }
    // 2. A first line echoing the command: `host:~ # iptables -t nat -S`.
    if let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
        if is_prompt_echo(first) {
            if let Some(Some(t)) = Table::from_command(first) {
                return Some(t);
            }
        }
    }
    // 3. The built-in chains `iptables -S` prints policies for (`-P CHAIN POLICY` lines come
    //    first): each table has a distinct set (filter and security share one: filter).
    let mut set = 0u8;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(8)
    {
        let Some(rest) = line.strip_prefix("-P ") else {
            continue;
        };
        set |= match rest.split_whitespace().next().unwrap_or("") {
            "PREROUTING" => 1,
            "INPUT" => 2,
            "FORWARD" => 4,
            "OUTPUT" => 8,
            "POSTROUTING" => 16,
            _ => 0,
        };
    }
    match set {
        9 => Some(Table::Raw),
        31 => Some(Table::Mangle),
        27 => Some(Table::Nat),
        14 => Some(Table::Filter),
        _ => None,
    }
}

pub(crate) fn guess_family(text: &str) -> Family {
    for line in text.lines().take(5) {
        if line.contains("ip6tables") {
            return Family::Ipv6;
        }
    }
    for line in text.lines() {
        let l = line.trim_start();
        if !(l.starts_with("-A") || l.starts_with("[")) {
            continue;
        }
        if l.contains("icmpv6") || l.contains("ipv6-icmp") || l.contains("icmp6-") {
            return Family::Ipv6;
        }
        let mut it = l.split_whitespace();
        while let Some(w) = it.next() {
            if matches!(w, "-s" | "-d" | "--source" | "--destination") {
                let mut a = it.next().unwrap_or("");
                if a == "!" {
                    a = it.next().unwrap_or("");
                }
                return if a.contains(':') {
                    Family::Ipv6
                } else {
                    Family::Ipv4
                };
            }
        }
    }
    Family::Ipv4
}

/// Parser state across lines.
struct State {
    format: Option<Format>,
    table: Option<Table>,
    /// Line of the open `*table` header (save format).
    table_line: u32,
    /// Tables touched by this text (to resolve targets and build indexes).
    touched: [bool; 5],
}

pub(crate) fn parse_into(
    rs: &mut Ruleset,
    file: &str,
    shared: Arc<String>,
    default: Option<Table>,
) -> Result<Vec<Diagnostic>, ParseError> {
    let file_name: Arc<str> = Arc::from(file);
    let file_idx = rs.files.len() as u32;
    rs.files.push((file_name.clone(), shared.clone()));
    let text: &str = &shared;
    let mut diags = Vec::new();
    let mut st = State {
        format: None,
        table: None,
        table_line: 0,
        touched: [false; 5],
    };
    let mut toks: Vec<Tok> = Vec::with_capacity(32);
    let mut line_no: u32 = 0;
    let mut offset: usize = 0; // byte offset of the current line in text
    let mut first_significant = true;
    let mut scratch = Scratch::default();
    let mut last_chain: Option<(usize, u32)> = None;
    // Rules of save text whose target named no chain yet: (table, name, error if it is one).
    let mut pending_targets: Vec<(Table, Box<str>, ParseError)> = Vec::new();
    // Whether this `*table` block's `-A` lines were offered to a second thread yet.
    let mut block_split = false;
    // The lines of `text.split('\n')`, with the position of each, so the loop can skip the
    // lines a second thread read.
    while offset <= text.len() {
        let rest = &text[offset..];
        let raw_line = rest.find('\n').map_or(rest, |e| &rest[..e]);
        line_no += 1;
        let line_start = offset;
        offset += raw_line.len() + 1;
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ctx = Ctx {
            file: &file_name,
            line_no,
            line,
        };
        let lead = line.len() - line.trim_start().len();
        let was_first = first_significant;
        first_significant = false;
        let c0 = trimmed.as_bytes()[0];
        if c0 == b'*' {
            if st.format == Some(Format::Rules) {
                return Err(ctx.err_at(
                    lead,
                    "an `iptables -S` line (-P, -N or -A)",
                    format!("`{trimmed}`"),
                ));
            }
            st.format = Some(Format::Save);
            if st.table.is_some() {
                return Err(ctx.err_at(
                    lead,
                    "COMMIT before the next table",
                    format!("`{trimmed}`"),
                ));
            }
            let name = trimmed[1..].trim();
            let t = Table::parse(name).ok_or_else(|| {
                ctx.err_at(
                    lead + 1,
                    "a table name (raw, mangle, nat, filter, security)",
                    format!("`{name}`"),
                )
            })?;
            st.table = Some(t);
            st.table_line = line_no;
            st.touched[t.idx()] = true;
            block_split = false;
            if let Some(old) = rs.tables[t.idx()].take() {
                // iptables-restore flushes the table at each `*table` block: only the last
                // block for a table counts, whether the earlier one is in this file or another
                // restored before (observed with 1.8.9, legacy and nft: `*nat` with chain A,
                // then `*nat` with chain B leaves only B). The built-in chains' policies are
                // kept, as legacy does (nft recreates the table, so a later `:INPUT -` there
                // means ACCEPT); iptables-save always prints them explicitly.
                let earlier = match rs.table_src[t.idx()] {
                    Some((f, l)) => format!("{}:{l}", rs.files[f as usize].0),
                    None => "an earlier text".into(),
                };
                diags.push(Diagnostic {
                    source: SourceRef {
                        file: file_name.clone(),
                        line: line_no,
                    },
                    message: format!(
                        "table {} is given again: iptables-restore keeps only the last block for a table, so the rules and chains given at {earlier} are discarded",
                        t.name()
                    ),
                });
                let mut td = TableData::default();
                for name in crate::rule::builtin_chains(t) {
                    let id = td.intern(name);
                    td.chains[id as usize].policy = old
                        .chain_id(name)
                        .and_then(|o| old.chains[o as usize].policy.clone());
                }
                rs.tables[t.idx()] = Some(td);
                if last_chain.is_some_and(|(ti, _)| ti == t.idx()) {
                    last_chain = None;
                }
            }
            rs.table_src[t.idx()] = Some((file_idx, line_no));
            let td = rs.tables[t.idx()].get_or_insert_with(TableData::default);
            reserve_for(td, text.len() - line_start);
            ensure_builtins(td, t);
            continue;
        }
        if trimmed == "COMMIT" {
            if st.format != Some(Format::Save) || st.table.is_none() {
                return Err(ctx.err_at(lead, "a `*table` header before COMMIT", "`COMMIT`"));
            }
            st.table = None;
            continue;
        }
        if was_first && is_prompt_echo(trimmed) {
            // `host:~ # iptables -t nat -S` echoed at the top of a captured file.
            continue;
        }
        if c0 == b':' {
            if st.format != Some(Format::Save) || st.table.is_none() {
                return Err(ctx.err_at(
                    lead,
                    "a `*table` header before chain declarations",
                    format!("`{trimmed}`"),
                ));
            }
            tokenize(&ctx, &mut toks);
            let t = st.table.unwrap_or(Table::Filter);
            declare_chain_save(rs, t, file_idx, st.table_line, &ctx, &toks)?;
            continue;
        }
        // Command lines: -A/-I/-P/-N, optionally preceded by `[pkts:bytes]`.
        if st.format.is_none() {
            st.format = Some(Format::Rules);
            let t = default.ok_or_else(|| {
                ctx.err_at(
                    lead,
                    "a `*table` header (iptables-save) or a table for this `iptables -S` text (-t TABLE)",
                    format!("`{}`", first_word(trimmed)),
                )
            })?;
            st.table = Some(t);
            st.touched[t.idx()] = true;
            if rs.table_src[t.idx()].is_none() {
                rs.table_src[t.idx()] = Some((file_idx, 1));
            }
            let td = rs.tables[t.idx()].get_or_insert_with(TableData::default);
            reserve_for(td, text.len() - line_start);
            ensure_builtins(td, t);
        }
        let Some(table) = st.table else {
            return Err(ctx.err_at(
                lead,
                "a `*table` header before rules",
                format!("`{}`", first_word(trimmed)),
            ));
        };
        // `[packets:bytes]` before a command. iptables-restore 1.8.9 (legacy and nft) reads the
        // counters only with `-c`, but always requires a `]` on the line, something other
        // than `:` after the `[` and then a `:` further on ("Bad line N: need ]" otherwise,
        // e.g. `[12]`, `[:]`); the command starts right after the first `]`, even with no
        // blank before it (`[1:2]-A ...`). Observed with `iptables-restore --test`.
        let mut cmd_start = 0;
        if c0 == b'[' {
            let rest = &line[lead..];
            let close = rest.find(']');
            let body = rest[1..].trim_start_matches(':');
            let colon_after = body.len() > 1 && body.as_bytes()[1..].contains(&b':');
            match close {
                Some(c) if !body.is_empty() && colon_after => cmd_start = lead + c + 1,
                _ => {
                    return Err(ctx.err_at(
                        lead,
                        "counters `[packets:bytes]` before the command",
                        format!("`{}`", first_word(trimmed)),
                    ))
                }
            }
        }
        // A long run of `-A` lines in a save block: read its second half in a second thread.
        if !block_split
            && cmd_start == 0
            && st.format == Some(Format::Save)
            && text.len() - line_start >= split_min()
            && trimmed.starts_with("-A ")
        {
            block_split = true;
            let td = rs.tables[table.idx()].get_or_insert_with(TableData::default);
            let env = Appends {
                text,
                file: &file_name,
                file_idx,
                table,
                family: rs.family,
            };
            if let Some((next, next_line)) = split_appends(
                &env,
                td,
                line_start,
                line_no - 1,
                &mut diags,
                &mut pending_targets,
            )? {
                offset = next;
                line_no = next_line;
                last_chain = None;
                continue;
            }
        }
        if tokenize_from(&ctx, cmd_start, &mut toks) {
            diags.push(Diagnostic {
                source: SourceRef {
                    file: file_name.clone(),
                    line: line_no,
                },
                message: "unterminated `\"`: the quoted text runs to the end of the line, as iptables-restore reads it".into(),
            });
        }
        let i = 0;
        let Some(cmd) = toks.get(i).copied() else {
            return Err(ctx.err_eol("a command (-A, -I, -N, -P)"));
        };
        let rules_fmt = st.format == Some(Format::Rules);
        match cmd.s {
            "-A" | "--append" | "-I" | "--insert" => {
                let insert = cmd.s == "-I" || cmd.s == "--insert";
                let chain_tok = toks
                    .get(i + 1)
                    .copied()
                    .ok_or_else(|| ctx.err_eol("a chain name"))?;
                let td = rs.tables[table.idx()].get_or_insert_with(TableData::default);
                // Consecutive rules usually append to the same chain: skip the hash lookup.
                let cached = match last_chain {
                    Some((t, id)) if t == table.idx() => same_or_next(&td.chains, id, chain_tok.s)
                        .or_else(|| td.chain_id(chain_tok.s)),
                    _ => td.chain_id(chain_tok.s),
                };
                let chain_id = match cached {
                    Some(id) => id,
                    None if rules_fmt && valid_chain_name(chain_tok.s) => {
                        diags.push(Diagnostic {
                            source: SourceRef { file: file_name.clone(), line: line_no },
                            message: format!(
                                "chain `{}` is used without `-N {}`; created (the output looks filtered)",
                                chain_tok.s, chain_tok.s
                            ),
                        });
                        td.intern(chain_tok.s)
                    }
                    None => {
                        return Err(ctx.err_tok(
                            &chain_tok,
                            format!(
                                "a chain declared in table {} (`:NAME` or -N) before its rules",
                                table.name()
                            ),
                        ))
                    }
                };
                last_chain = Some((table.idx(), chain_id));
                let mut j = i + 2;
                let mut pos: Option<usize> = None;
                if insert {
                    if let Some(t) = toks.get(j) {
                        if let Ok(n) = t.s.parse::<usize>() {
                            if n == 0 {
                                return Err(ctx.err_tok(t, "a rule number starting at 1"));
                            }
                            pos = Some(n - 1);
                            j += 1;
                        }
                    }
                    pos = Some(pos.unwrap_or(0));
                }
                let text_start = line_start + cmd.off;
                let text_len = line.trim_end().len().saturating_sub(cmd.off);
                let m_start = td.matches.len() as u32;
                let TableData {
                    matches, by_name, ..
                } = td;
                let target = parse_rule(
                    &ctx,
                    &toks[j..],
                    matches,
                    by_name,
                    &mut scratch,
                    table,
                    rs.family,
                    &mut diags,
                )?;
                let td = rs.tables[table.idx()].get_or_insert_with(TableData::default);
                // iptables-restore looks a `-j`/`-g` chain up when it reads the rule: a chain
                // declared further down is "Couldn't load target" (legacy, observed with
                // --test). Unresolved here means not declared yet (or built-in, or unknown);
                // checked against the declarations at the end of the text.
                if !rules_fmt {
                    if let Target::Unresolved { name, .. } = &target {
                        if td.chain_id(name).is_none() {
                            let tok = toks[j..]
                                .windows(2)
                                .find(|w| {
                                    matches!(w[0].s, "-j" | "--jump" | "-g" | "--goto")
                                        && w[1].s == &**name
                                })
                                .map(|w| w[1])
                                .unwrap_or(cmd);
                            pending_targets.push((
                                table,
                                name.clone(),
                                ctx.err_tok(
                                    &tok,
                                    "a target, or a chain declared before this rule (iptables-restore resolves it when it reads the rule)",
                                ),
                            ));
                        }
                    }
                }
                let m_len = td.matches.len() as u32 - m_start;
                let rule = Rule {
                    m_start,
                    m_len,
                    target,
                    file: file_idx,
                    line: line_no,
                    text_start: text_start as u32,
                    text_len: text_len as u32,
                };
                let chain = &mut td.chains[chain_id as usize];
                chain.index = None;
                match pos {
                    Some(p) if p <= chain.rules.len() => chain.rules.insert(p, rule),
                    Some(_) => {
                        return Err(ctx.err_tok(
                            &toks[i + 2],
                            format!("a rule number between 1 and {}", chain.rules.len() + 1),
                        ))
                    }
                    None => chain.rules.push(rule),
                }
            }
            "-N" | "--new-chain" | "--new" => {
                let name = toks
                    .get(i + 1)
                    .copied()
                    .ok_or_else(|| ctx.err_eol("a chain name"))?;
                if !valid_chain_name(name.s) || crate::rule::builtin_chains(table).contains(&name.s)
                {
                    return Err(ctx.err_tok(&name, "a user-defined chain name"));
                }
                if let Some(extra) = toks.get(i + 2) {
                    return Err(ctx.err_tok(extra, "end of line after the chain name"));
                }
                let td = rs.tables[table.idx()].get_or_insert_with(TableData::default);
                // iptables-restore (legacy) refuses `-N` of a chain that exists ("line N
                // failed"); iptables -S never prints one twice.
                let block_start = if rules_fmt { 0 } else { st.table_line };
                if let Some(prev) = td.chain_id(name.s).and_then(|id| {
                    declared_in_block(&td.chains[id as usize], file_idx, block_start)
                }) {
                    return Err(ctx.err_tok(
                        &name,
                        format!("a chain not declared yet in this table (declared on line {prev})"),
                    ));
                }
                let id = td.intern(name.s);
                td.chains[id as usize].decl = Some((file_idx, line_no));
            }
            "-P" | "--policy" => {
                let name = toks
                    .get(i + 1)
                    .copied()
                    .ok_or_else(|| ctx.err_eol("a built-in chain name"))?;
                if !crate::rule::builtin_chains(table).contains(&name.s) {
                    return Err(
                        ctx.err_tok(&name, format!("a built-in chain of table {}", table.name()))
                    );
                }
                let pol = toks
                    .get(i + 2)
                    .copied()
                    .ok_or_else(|| ctx.err_eol("a policy (ACCEPT or DROP)"))?;
                let verdict = match pol.s {
                    "ACCEPT" => Verdict::Accept,
                    // `-P CHAIN DROP` in nat is refused like `-j DROP` (iptables 1.8.9); a
                    // `:CHAIN DROP` declaration is not (iptables-restore --test accepts it).
                    "DROP" if table == Table::Nat => {
                        return Err(ctx.err_tok(&pol, "ACCEPT (table nat does not filter)"))
                    }
                    "DROP" => Verdict::Drop,
                    _ => return Err(ctx.err_tok(&pol, "a policy (ACCEPT or DROP)")),
                };
                let mut k = i + 3;
                if toks.get(k).is_some_and(|t| t.s == "-c") {
                    k += 3;
                }
                if let Some(extra) = toks.get(k) {
                    return Err(ctx.err_tok(extra, "end of line after the policy"));
                }
                let td = rs.tables[table.idx()].get_or_insert_with(TableData::default);
                let id = td.intern(name.s);
                let c = &mut td.chains[id as usize];
                c.policy = Some(verdict);
                c.decl = Some((file_idx, line_no));
            }
            // Restore input may flush, delete and zero chains (kube-proxy's iptables-restore
            // input deletes stale chains with `-X`). As iptables-restore 1.8.9 (legacy) checks
            // them with --test: the named chain must exist; `-X` only deletes an empty user
            // chain no rule jumps to; without a chain name they act on every chain.
            "-F" | "--flush" | "-X" | "--delete-chain" | "-Z" | "--zero" if !rules_fmt => {
                let td = rs.tables[table.idx()].get_or_insert_with(TableData::default);
                if let Some(extra) = toks.get(i + 2) {
                    return Err(ctx.err_tok(extra, "end of line after the chain name"));
                }
                let named = match toks.get(i + 1) {
                    Some(c) => Some((
                        *c,
                        td.chain_id(c.s).ok_or_else(|| {
                            ctx.err_tok(c, format!("a chain of table {}", table.name()))
                        })?,
                    )),
                    None => None,
                };
                last_chain = None;
                match cmd.s {
                    "-Z" | "--zero" => {}
                    "-F" | "--flush" => {
                        for (k, c) in td.chains.iter_mut().enumerate() {
                            if named.is_none_or(|(_, id)| id as usize == k) {
                                c.rules.clear();
                                c.index = None;
                            }
                        }
                    }
                    _ => {
                        let builtins = crate::rule::builtin_chains(table);
                        let mut ids: Vec<u32> = match named {
                            Some((tok, _)) if builtins.contains(&tok.s) => {
                                return Err(ctx.err_tok(&tok, "a user-defined chain"))
                            }
                            Some((_, id)) => vec![id],
                            None => (0..td.chains.len() as u32)
                                .filter(|&k| !builtins.contains(&&*td.chains[k as usize].name))
                                .collect(),
                        };
                        // Highest first, so the ids still to delete stay valid.
                        ids.sort_unstable_by(|a, b| b.cmp(a));
                        for k in ids {
                            let c = &td.chains[k as usize];
                            let at = named.map_or(cmd, |(t, _)| t);
                            if !c.rules.is_empty() {
                                return Err(ctx.err_tok(
                                    &at,
                                    format!("an empty chain (`{}` has rules; -F it first)", c.name),
                                ));
                            }
                            let referenced = td.chains.iter().any(|c| {
                                c.rules.iter().any(|r| {
                                    matches!(r.target, Target::Jump(x) | Target::Goto(x) if x == k)
                                })
                            });
                            if referenced {
                                return Err(ctx.err_tok(
                                    &at,
                                    format!(
                                        "a chain no rule jumps to (a rule jumps to `{}`)",
                                        c.name
                                    ),
                                ));
                            }
                            remove_chain(td, k);
                        }
                    }
                }
            }
            _ => {
                return Err(ctx.err_tok(
                    &cmd,
                    if rules_fmt {
                        "an `iptables -S` line (-P, -N or -A)"
                    } else {
                        "a chain declaration `:NAME POLICY`, a rule `-A CHAIN ...` or COMMIT"
                    },
                ))
            }
        }
    }
    if st.format == Some(Format::Save) {
        if let Some(t) = st.table {
            let n = line_no.max(1);
            return Err(ParseError {
                file: file_name,
                line: n,
                column: 1,
                expected: format!(
                    "COMMIT to end table {} opened on line {}",
                    t.name(),
                    st.table_line
                ),
                found: "end of file".into(),
            });
        }
    }
    for (t, name, err) in pending_targets {
        let later = rs.tables[t.idx()]
            .as_ref()
            .and_then(|td| td.chain_id(&name))
            .is_some();
        if later && !crate::rule::builtin_chains(t).contains(&&*name) {
            return Err(err);
        }
    }
    for t in Table::ALL {
        if st.touched[t.idx()] {
            if let Some(td) = rs.tables[t.idx()].as_mut() {
                resolve_targets(td, t, &rs.files, &mut diags);
                if let Some(e) = jump_loop(td, t, &rs.files) {
                    return Err(e);
                }
                crate::index::build_indexes(td);
            }
        }
    }
    Ok(diags)
}

/// A jump loop the kernel refuses: a chain reachable from a built-in chain that jumps (or
/// goes) back into a chain on its own path. Both backends refuse such a table when it is
/// committed (iptables-restore 1.8.9 legacy: the table replace fails in the kernel's
/// `mark_source_chains`; nf_tables: `RULE_APPEND failed (Too many links)`), so no node can hold
/// it, while `iptables-restore --test` (which commits nothing) accepts it. A loop no built-in
/// chain reaches is accepted by both (measured in a namespace, issue #11). The error names
/// the rule whose jump closes the loop.
fn jump_loop(td: &TableData, t: Table, files: &[(Arc<str>, Arc<String>)]) -> Option<ParseError> {
    // 0: not seen, 1: on the current path, 2: done (no loop below it).
    let mut state = vec![0u8; td.chains.len()];
    for b in crate::rule::builtin_chains(t) {
        let Some(root) = td.chain_id(b) else { continue };
        if state[root as usize] != 0 {
            continue;
        }
        // (chain, next rule to look at): an explicit stack, as a hostile ruleset may nest
        // chains deeper than the thread's stack allows recursion.
        let mut stack: Vec<(u32, usize)> = vec![(root, 0)];
        state[root as usize] = 1;
        while let Some(top) = stack.last_mut() {
            let (c, ri) = *top;
            let rules = &td.chains[c as usize].rules;
            let Some(r) = rules.get(ri) else {
                state[c as usize] = 2;
                stack.pop();
                continue;
            };
            top.1 += 1;
            let (Target::Jump(x) | Target::Goto(x)) = r.target else {
                continue;
            };
            match state[x as usize] {
                0 => {
                    state[x as usize] = 1;
                    stack.push((x, 0));
                }
                1 => {
                    let path: Vec<&str> = stack
                        .iter()
                        .map(|(k, _)| &*td.chains[*k as usize].name)
                        .skip_while(|n| **n != *td.chains[x as usize].name)
                        .collect();
                    // The column of the `-j`/`-g` that closes the loop.
                    let column = files.get(r.file as usize).map_or(1, |(_, text)| {
                        let start = r.text_start as usize;
                        let end = start + r.text_len as usize;
                        let Some(rule) = text.get(start..end) else {
                            return 1;
                        };
                        let at = [" -j ", " -g ", " --jump ", " --goto "]
                            .iter()
                            .filter_map(|k| rule.rfind(k))
                            .max()
                            .map_or(0, |k| k + 1);
                        let line_start = text[..start].rfind('\n').map_or(0, |k| k + 1);
                        text.get(line_start..start + at)
                            .map_or(1, |t| t.chars().count() as u32 + 1)
                    });
                    return Some(ParseError {
                        file: files
                            .get(r.file as usize)
                            .map(|f| f.0.clone())
                            .unwrap_or_else(|| Arc::from("")),
                        line: r.line,
                        column,
                        expected: format!(
                            "no jump loop in table {}: the kernel refuses a chain reachable from a built-in chain that jumps back into its own path (iptables-restore: Too many links)",
                            t.name()
                        ),
                        found: format!(
                            "a jump from {} back to {} ({} -> {})",
                            td.chains[c as usize].name,
                            td.chains[x as usize].name,
                            path.join(" -> "),
                            td.chains[x as usize].name
                        ),
                    });
                }
                _ => {}
            }
        }
    }
    None
}

/// Chain `id` or the one declared after it when it is named `name`: consecutive rules append
/// to the same chain, and iptables-save prints the chains' rules in declaration order, so
/// the next rule's chain is usually one of these two (no hash lookup).
fn same_or_next(chains: &[Chain], id: u32, name: &str) -> Option<u32> {
    let id = id as usize;
    if chains.get(id).is_some_and(|c| &*c.name == name) {
        Some(id as u32)
    } else if chains.get(id + 1).is_some_and(|c| &*c.name == name) {
        Some(id as u32 + 1)
    } else {
        None
    }
}

/// A save block shorter than this is read by one thread.
const SPLIT_MIN_BYTES: usize = 4 << 20;

#[cfg(test)]
thread_local! {
    static SPLIT_MIN: std::cell::Cell<usize> = const { std::cell::Cell::new(SPLIT_MIN_BYTES) };
}

/// [`SPLIT_MIN_BYTES`]; tests set their own with [`set_split_min`].
fn split_min() -> usize {
    #[cfg(test)]
    return SPLIT_MIN.with(|c| c.get());
    #[cfg(not(test))]
    SPLIT_MIN_BYTES
}

/// Tests: split save blocks of at least `n` bytes on this thread (`usize::MAX`: never).
#[cfg(test)]
pub(crate) fn set_split_min(n: usize) {
    SPLIT_MIN.with(|c| c.set(n));
}

/// What reading `-A` lines of a save block needs besides the table.
struct Appends<'a> {
    text: &'a str,
    file: &'a Arc<str>,
    file_idx: u32,
    table: Table,
    family: Family,
}

/// `-A` lines read by [`append_lines`], to add to the table in order.
#[derive(Default)]
struct AppendOut {
    /// (chain, rule); a rule's `m_start` counts from the first match of `matches` given.
    rules: Vec<(u32, Rule)>,
    diags: Vec<Diagnostic>,
    pending: Vec<(Table, Box<str>, ParseError)>,
    /// Byte offset of the first line not read, and the number of the last line read.
    stop: usize,
    stop_line: u32,
}

/// Read the run of `-A` lines of a save block that starts at byte `start` (a line start; line
/// `line_before` is the one before it) in two halves, the second in another thread, and add
/// them to `td` in order. The second half starts at a line boundary near the middle of the
/// block and runs until a line other than `-A` (or blank or a comment): COMMIT, usually. Its
/// result is used only when the first half reaches it with nothing but `-A` lines (no chain
/// declared or deleted in between: both halves read the chains as declared before `start`),
/// so the outcome is that of reading the lines one by one, with the first error in the
/// file's order. `Ok(None)` when nothing was read (a block under [`SPLIT_MIN_BYTES`], one
/// CPU, or the first line is not a plain `-A` line); else where the caller goes on: (byte
/// offset, number of the last line read).
fn split_appends(
    env: &Appends,
    td: &mut TableData,
    start: usize,
    line_before: u32,
    diags: &mut Vec<Diagnostic>,
    pending: &mut Vec<(Table, Box<str>, ParseError)>,
) -> Result<Option<(usize, u32)>, ParseError> {
    let text = env.text;
    // The block ends at its COMMIT, taken to be the text's last (searched from the end: the
    // large nat block is the last one iptables-nft-save prints; when another block follows,
    // the second half may start past this block's end and is then not used). A short block
    // is not worth a thread.
    let end = text
        .rfind("\nCOMMIT")
        .filter(|&i| i > start)
        .map_or(text.len(), |i| i + 1);
    let two = end - start >= split_min()
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    if !two {
        return Ok(None);
    }
    let mut mid = start + (end - start) / 2;
    mid = match text.as_bytes()[mid..].iter().position(|&b| b == b'\n') {
        Some(i) => mid + i + 1,
        None => text.len() + 1,
    };
    let TableData {
        chains,
        by_name,
        matches,
    } = td;
    let (first, second) = std::thread::scope(|s| {
        let (ch, bn): (&[Chain], &ChainMap) = (chains, by_name);
        let second = if mid <= text.len() {
            std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    let before = line_before
                        + text.as_bytes()[start..mid]
                            .iter()
                            .filter(|&&b| b == b'\n')
                            .count() as u32;
                    let mut m = Vec::with_capacity((text.len() - mid) / 80);
                    let r = append_lines(env, ch, bn, &mut m, mid, before, usize::MAX);
                    r.map(|o| (o, m))
                })
                .ok()
        } else {
            None
        };
        // Without a second thread the first half runs to the end of the run.
        let limit = if second.is_some() { mid } else { usize::MAX };
        let first = append_lines(env, ch, bn, matches, start, line_before, limit);
        let second = second.map(|h| h.join());
        (first, second)
    });
    let first = first?;
    let mut add = |out: AppendOut, m_base: u32| {
        for (c, mut r) in out.rules {
            r.m_start += m_base;
            let chain = &mut chains[c as usize];
            chain.index = None;
            chain.rules.push(r);
        }
        diags.extend(out.diags);
        pending.extend(out.pending);
        (out.stop, out.stop_line)
    };
    if first.stop == start {
        return Ok(None);
    }
    let reached = first.stop == mid;
    let mut next = add(first, 0);
    if reached {
        match second {
            Some(Ok(r)) => {
                let (out, m) = r?;
                let base = matches.len() as u32;
                matches.extend(m);
                next = add(out, base);
            }
            // The second thread panicked: a bug, reported as the panic it is.
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => {}
        }
    }
    Ok(Some(next))
}

/// Read `-A` lines of a save block from byte `start` (a line start; `line_before` is the
/// number of the line before it) as the main loop of [`parse_into`] reads them, against the
/// chains declared so far, until a line that is not blank, a comment or a plain `-A CHAIN ...`
/// (not read), the end of the text, or the first line starting at or after `limit`.
fn append_lines(
    env: &Appends,
    chains: &[Chain],
    by_name: &ChainMap,
    matches: &mut Vec<Match>,
    start: usize,
    line_before: u32,
    limit: usize,
) -> Result<AppendOut, ParseError> {
    let text = env.text;
    let mut out = AppendOut {
        rules: Vec::with_capacity((text.len().min(limit) - start.min(text.len())) / 128),
        ..AppendOut::default()
    };
    let mut toks: Vec<Tok> = Vec::with_capacity(32);
    let mut scratch = Scratch::default();
    let mut offset = start;
    let mut line_no = line_before;
    let mut last: Option<u32> = None;
    while offset <= text.len() && offset < limit {
        let rest = &text[offset..];
        let raw_line = rest.find('\n').map_or(rest, |e| &rest[..e]);
        let line_start = offset;
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let trimmed = line.trim();
        if !(trimmed.is_empty() || trimmed.starts_with('#')) {
            let c0 = trimmed.as_bytes()[0];
            if c0 == b'*' || c0 == b':' || c0 == b'[' || trimmed == "COMMIT" {
                break;
            }
            let ctx = Ctx {
                file: env.file,
                line_no: line_no + 1,
                line,
            };
            let unterminated = tokenize(&ctx, &mut toks);
            let Some(cmd) = toks.first().copied() else {
                break;
            };
            if !matches!(cmd.s, "-A" | "--append") {
                break;
            }
            if unterminated {
                out.diags.push(Diagnostic {
                    source: SourceRef {
                        file: env.file.clone(),
                        line: ctx.line_no,
                    },
                    message: "unterminated `\"`: the quoted text runs to the end of the line, as iptables-restore reads it".into(),
                });
            }
            let chain_tok = toks
                .get(1)
                .copied()
                .ok_or_else(|| ctx.err_eol("a chain name"))?;
            let cached = match last {
                Some(id) => {
                    same_or_next(chains, id, chain_tok.s).or_else(|| by_name.get(chain_tok.s))
                }
                None => by_name.get(chain_tok.s),
            };
            let Some(chain_id) = cached else {
                return Err(ctx.err_tok(
                    &chain_tok,
                    format!(
                        "a chain declared in table {} (`:NAME` or -N) before its rules",
                        env.table.name()
                    ),
                ));
            };
            last = Some(chain_id);
            let rule = save_rule(
                env,
                &ctx,
                &toks,
                cmd,
                line_start,
                by_name,
                matches,
                &mut scratch,
                &mut out,
            )?;
            out.rules.push((chain_id, rule));
        }
        line_no += 1;
        offset += raw_line.len() + 1;
    }
    out.stop = offset;
    out.stop_line = line_no;
    Ok(out)
}

/// The rule of a save-format `-A CHAIN ...` line (tokens `toks`, `cmd` the first), its
/// matches pushed to `matches`; a `-j`/`-g` to a chain not declared yet is remembered in
/// `out.pending` (an error if the chain is declared further down).
#[allow(clippy::too_many_arguments)]
fn save_rule(
    env: &Appends,
    ctx: &Ctx,
    toks: &[Tok],
    cmd: Tok,
    line_start: usize,
    by_name: &ChainMap,
    matches: &mut Vec<Match>,
    scratch: &mut Scratch,
    out: &mut AppendOut,
) -> Result<Rule, ParseError> {
    let j = 2;
    let line = ctx.line;
    let text_start = line_start + cmd.off;
    let text_len = line.trim_end().len().saturating_sub(cmd.off);
    let m_start = matches.len() as u32;
    let target = parse_rule(
        ctx,
        &toks[j..],
        matches,
        by_name,
        scratch,
        env.table,
        env.family,
        &mut out.diags,
    )?;
    if let Target::Unresolved { name, .. } = &target {
        if !by_name.contains_key(name) {
            let tok = toks[j..]
                .windows(2)
                .find(|w| matches!(w[0].s, "-j" | "--jump" | "-g" | "--goto") && w[1].s == &**name)
                .map(|w| w[1])
                .unwrap_or(cmd);
            out.pending.push((
                env.table,
                name.clone(),
                ctx.err_tok(
                    &tok,
                    "a target, or a chain declared before this rule (iptables-restore resolves it when it reads the rule)",
                ),
            ));
        }
    }
    let m_len = matches.len() as u32 - m_start;
    Ok(Rule {
        m_start,
        m_len,
        target,
        file: env.file_idx,
        line: ctx.line_no,
        text_start: text_start as u32,
        text_len: text_len as u32,
    })
}

/// Reserve room for the rest of a large text up front (a kube-proxy dump averages ~110 bytes
/// per line and ~1.3 matches per rule): growing by doubling would copy and re-hash.
fn reserve_for(td: &mut TableData, remaining: usize) {
    if remaining > 1 << 20 {
        td.matches.reserve(remaining / 80);
        td.by_name.reserve(remaining / 400);
    }
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or(s)
}

/// Delete chain `k` (empty, unreferenced) and renumber the chains after it.
fn remove_chain(td: &mut TableData, k: u32) {
    td.chains.remove(k as usize);
    let TableData {
        chains, by_name, ..
    } = td;
    by_name.rebuild(chains.iter().map(|c| &*c.name));
    for c in &mut td.chains {
        for r in &mut c.rules {
            if let Target::Jump(x) | Target::Goto(x) = &mut r.target {
                if *x > k {
                    *x -= 1;
                }
            }
        }
    }
}

fn valid_chain_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 28 && !s.starts_with('-') && !s.starts_with('!')
}

fn ensure_builtins(td: &mut TableData, t: Table) {
    for name in crate::rule::builtin_chains(t) {
        let id = td.intern(name);
        let c: &mut Chain = &mut td.chains[id as usize];
        if c.policy.is_none() {
            c.policy = Some(Verdict::Accept);
        }
    }
}

/// Is a chain declared in the current block (the `*table` header on line `block_start` of this
/// file onwards; `iptables -S` text is one block)?
fn declared_in_block(c: &Chain, file_idx: u32, block_start: u32) -> Option<u32> {
    c.decl
        .filter(|&(f, l)| f == file_idx && l >= block_start)
        .map(|(_, l)| l)
}

/// A `:NAME POLICY [packets:bytes]` line, read as iptables-restore 1.8.9 (legacy and nft)
/// reads it (each point observed with `iptables-restore --test` in a network namespace):
/// the name and the policy are the first two blank-separated words after the `:` (so
/// `: FOO -` declares FOO); everything after the policy is ignored, since the counters are
/// only read with `-c`; a built-in chain takes ACCEPT, DROP or `-` (keep the policy it has:
/// ACCEPT in a fresh table, which is how kube-proxy's own test rulesets declare them); a user
/// chain takes only `-` (legacy: "Can't set policy ... Bad built-in chain name"), and is
/// declared once per block (legacy: "error creating chain 'FOO': File exists").
fn declare_chain_save(
    rs: &mut Ruleset,
    t: Table,
    file_idx: u32,
    block_start: u32,
    ctx: &Ctx,
    toks: &[Tok],
) -> Result<(), ParseError> {
    let Some(&first) = toks.first() else {
        return Err(ctx.err_eol("a chain declaration `:NAME POLICY [packets:bytes]`"));
    };
    let (name, name_off, rest) = if first.s == ":" {
        match toks.get(1) {
            Some(n) => (n.s, n.off, &toks[2..]),
            None => return Err(ctx.err_eol("a chain name after `:`")),
        }
    } else if let Some(n) = first.s.strip_prefix(':') {
        (n, first.off + 1, &toks[1..])
    } else {
        // The line's first character after trimming is `:`, but the tokens split on ASCII
        // blanks only: Unicode whitespace (U+00A0) before the `:` is part of the first token.
        return Err(ctx.err_at(
            first.off,
            "a chain declaration `:NAME POLICY [packets:bytes]` (only spaces and tabs before it)",
            format!("`{}`", first.s),
        ));
    };
    if name.is_empty() || !valid_chain_name(name) {
        return Err(ctx.err_at(
            name_off,
            "a chain name after `:` (at most 28 characters, not starting with `-` or `!`)",
            format!("`{name}`"),
        ));
    }
    let pol = rest
        .first()
        .copied()
        .ok_or_else(|| ctx.err_eol("a policy (ACCEPT, DROP, or `-`)"))?;
    let builtin = crate::rule::builtin_chains(t).contains(&name);
    let policy = match (pol.s, builtin) {
        ("ACCEPT", true) => Some(Verdict::Accept),
        ("DROP", true) => Some(Verdict::Drop),
        ("-", _) => None,
        (_, true) => {
            return Err(ctx.err_tok(
                &pol,
                format!("a policy for built-in chain {name} (ACCEPT, DROP, or `-` to keep it)"),
            ))
        }
        (_, false) => {
            return Err(ctx.err_tok(
                &pol,
                format!(
                    "`-` (user-defined chain; table {} has no built-in chain {name})",
                    t.name()
                ),
            ))
        }
    };
    let td = rs.tables[t.idx()].get_or_insert_with(TableData::default);
    if !builtin {
        if let Some(prev) = td
            .chain_id(name)
            .and_then(|id| declared_in_block(&td.chains[id as usize], file_idx, block_start))
        {
            return Err(ctx.err_at(
                name_off,
                format!("a chain not declared yet in this table (declared on line {prev})"),
                format!("`{name}`"),
            ));
        }
    }
    let id = td.intern(name);
    let c = &mut td.chains[id as usize];
    if policy.is_some() {
        c.policy = policy;
    }
    c.decl = Some((file_idx, ctx.line_no));
    Ok(())
}

fn resolve_targets(
    td: &mut TableData,
    t: Table,
    files: &[(Arc<str>, Arc<String>)],
    diags: &mut Vec<Diagnostic>,
) {
    let n = td.chains.len();
    for ci in 0..n {
        for ri in 0..td.chains[ci].rules.len() {
            let (name, goto) = match &td.chains[ci].rules[ri].target {
                Target::Unresolved { name, goto } => (name.clone(), *goto),
                _ => continue,
            };
            let r = &td.chains[ci].rules[ri];
            let src = SourceRef {
                file: files[r.file as usize].0.clone(),
                line: r.line,
            };
            let new = match td.by_name.get(&name) {
                Some(_) if crate::rule::builtin_chains(t).contains(&&*name) => {
                    diags.push(Diagnostic {
                        source: src,
                        message: format!(
                            "jump to built-in chain `{name}` is not allowed; rule kept as opaque"
                        ),
                    });
                    Target::Opaque(name)
                }
                Some(id) => {
                    if goto {
                        Target::Goto(id)
                    } else {
                        Target::Jump(id)
                    }
                }
                None => {
                    diags.push(Diagnostic {
                        source: src,
                        message: format!(
                            "unknown target `{name}` (not a supported extension nor a chain of table {}); a packet reaching this rule gets UNKNOWN",
                            t.name()
                        ),
                    });
                    Target::Opaque(name)
                }
            };
            td.chains[ci].rules[ri].target = new;
        }
    }
}

/// Reusable buffers for rule parsing.
#[derive(Default)]
struct Scratch {
    ipmatches: Vec<Match>,
}

/// Modules with multi-option state, finalized at the end of the rule or the next `-m`.
#[derive(Debug)]
enum Acc {
    Statistic {
        tok_off: usize,
        mode: Option<bool>, // Some(true): random, Some(false): nth
        p: Option<f64>,
        every: Option<u32>,
        neg: bool,
    },
    AddrType {
        src: Option<(u16, bool)>,
        dst: Option<(u16, bool)>,
        limit_in: bool,
        limit_out: bool,
    },
    Recent {
        action: Option<(bool, bool)>,
    },
    PhysDev(Vec<(Box<str>, bool)>),
    Policy {
        ipsec: Option<bool>,
    },
    Set {
        counters: bool,
    },
    /// `-m conntrack`: its options' matches start at this index of the output.
    Conntrack {
        start: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Module {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Multiport,
    Comment,
    Mark,
    Connmark,
    Conntrack,
    State,
    Statistic,
    Recent,
    IpRange,
    Set,
    Length,
    Limit,
    AddrType,
    PhysDev,
    Policy,
    PktType,
    RpFilter,
    /// Known syntax, value unknowable here (mac, owner, socket, rpfilter ...).
    Unknowable,
    /// Unknown module: opaque rule.
    Opaque,
}

fn module_kind(name: &str) -> Module {
    match name {
        "tcp" => Module::Tcp,
        "udp" | "udplite" => Module::Udp,
        "sctp" => Module::Sctp,
        "icmp" => Module::Icmp,
        "icmp6" | "icmpv6" | "ipv6-icmp" => Module::Icmp6,
        "multiport" => Module::Multiport,
        "comment" => Module::Comment,
        "mark" => Module::Mark,
        "connmark" => Module::Connmark,
        "conntrack" => Module::Conntrack,
        "state" => Module::State,
        "statistic" => Module::Statistic,
        "recent" => Module::Recent,
        "iprange" => Module::IpRange,
        "set" => Module::Set,
        "length" => Module::Length,
        "limit" | "hashlimit" => Module::Limit,
        "addrtype" => Module::AddrType,
        "physdev" => Module::PhysDev,
        "policy" => Module::Policy,
        "pkttype" => Module::PktType,
        "rpfilter" => Module::RpFilter,
        "mac" | "owner" | "socket" | "dscp" | "tos" | "ttl" | "hl" | "helper" | "connlimit"
        | "connbytes" | "cgroup" | "devgroup" | "tcpmss" | "ecn" | "realm" | "cpu" | "time"
        | "quota" | "connlabel" | "nfacct" | "ipvs" | "cluster" | "esp" | "ah" | "frag" | "hbh"
        | "dst" | "rt" | "mh" | "ipv6header" | "osf" | "dccp" | "geoip" => Module::Unknowable,
        _ => Module::Opaque,
    }
}

/// Does `module` take option `opt`?
fn module_accepts(m: Module, opt: &str) -> bool {
    match m {
        Module::Tcp => matches!(
            opt,
            "--sport"
                | "--source-port"
                | "--dport"
                | "--destination-port"
                | "--tcp-flags"
                | "--syn"
                | "--tcp-option"
        ),
        Module::Udp => matches!(
            opt,
            "--sport" | "--source-port" | "--dport" | "--destination-port"
        ),
        Module::Sctp => matches!(
            opt,
            "--sport" | "--source-port" | "--dport" | "--destination-port" | "--chunk-types"
        ),
        Module::Icmp => opt == "--icmp-type",
        Module::Icmp6 => opt == "--icmpv6-type",
        Module::Multiport => matches!(
            opt,
            "--sports" | "--source-ports" | "--dports" | "--destination-ports" | "--ports"
        ),
        Module::Comment => opt == "--comment",
        Module::Mark | Module::Connmark => opt == "--mark",
        Module::Conntrack => matches!(
            opt,
            "--ctstate"
                | "--ctproto"
                | "--ctorigsrc"
                | "--ctorigdst"
                | "--ctreplsrc"
                | "--ctrepldst"
                | "--ctorigsrcport"
                | "--ctorigdstport"
                | "--ctreplsrcport"
                | "--ctrepldstport"
                | "--ctstatus"
                | "--ctexpire"
                | "--ctdir"
        ),
        Module::State => opt == "--state",
        Module::Statistic => matches!(opt, "--mode" | "--probability" | "--every" | "--packet"),
        Module::Recent => matches!(
            opt,
            "--set"
                | "--rcheck"
                | "--update"
                | "--remove"
                | "--name"
                | "--rsource"
                | "--rdest"
                | "--mask"
                | "--seconds"
                | "--reap"
                | "--hitcount"
                | "--rttl"
        ),
        Module::IpRange => matches!(opt, "--src-range" | "--dst-range"),
        Module::Set => matches!(
            opt,
            "--match-set"
                | "--set"
                | "--return-nomatch"
                | "--update-counters"
                | "--update-subcounters"
                | "--packets-eq"
                | "--packets-lt"
                | "--packets-gt"
                | "--bytes-eq"
                | "--bytes-lt"
                | "--bytes-gt"
        ),
        Module::Length => opt == "--length",
        Module::Limit => opt.starts_with("--limit") || opt.starts_with("--hashlimit"),
        Module::AddrType => matches!(
            opt,
            "--src-type" | "--dst-type" | "--limit-iface-in" | "--limit-iface-out"
        ),
        Module::PhysDev => matches!(
            opt,
            "--physdev-in"
                | "--physdev-out"
                | "--physdev-is-in"
                | "--physdev-is-out"
                | "--physdev-is-bridged"
        ),
        Module::Policy => matches!(
            opt,
            "--dir"
                | "--pol"
                | "--strict"
                | "--reqid"
                | "--spi"
                | "--proto"
                | "--mode"
                | "--tunnel-src"
                | "--tunnel-dst"
                | "--next"
        ),
        Module::PktType => opt == "--pkt-type",
        Module::RpFilter => matches!(
            opt,
            "--loose" | "--validmark" | "--accept-local" | "--invert"
        ),
        Module::Unknowable | Module::Opaque => opt.starts_with("--"),
    }
}

/// A cursor over a rule's tokens.
struct Cur<'t, 'a> {
    toks: &'t [Tok<'a>],
    i: usize,
}

impl<'a> Cur<'_, 'a> {
    fn arg(&mut self, ctx: &Ctx, what: &str) -> Result<Tok<'a>, ParseError> {
        match self.toks.get(self.i) {
            Some(t) => {
                self.i += 1;
                Ok(*t)
            }
            None => Err(ctx.err_eol(what.to_string())),
        }
    }
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.i).copied()
    }
    /// Skip the arguments of an unknown option: tokens up to the next option or `!`.
    fn skip_args(&mut self) {
        while let Some(t) = self.peek() {
            if t.s == "!"
                || (t.s.starts_with('-')
                    && t.s.len() > 1
                    && !t.s[1..].starts_with(|c: char| c.is_ascii_digit()))
            {
                break;
            }
            self.i += 1;
        }
    }
}

fn generic_short(s: &str) -> Option<&'static str> {
    Some(match s {
        "-s" | "--source" | "--src" => "-s",
        "-d" | "--destination" | "--dst" => "-d",
        "-p" | "--protocol" => "-p",
        "-i" | "--in-interface" => "-i",
        "-o" | "--out-interface" => "-o",
        "-f" | "--fragment" => "-f",
        "-m" | "--match" => "-m",
        "-j" | "--jump" => "-j",
        "-g" | "--goto" => "-g",
        "-c" | "--set-counters" => "-c",
        "-4" | "--ipv4" => "-4",
        "-6" | "--ipv6" => "-6",
        _ => return None,
    })
}

#[allow(clippy::too_many_arguments)]
fn parse_rule<'a>(
    ctx: &Ctx,
    toks: &[Tok<'a>],
    out: &mut Vec<Match>,
    chains: &ChainMap,
    scratch: &mut Scratch,
    table: Table,
    family: Family,
    diags: &mut Vec<Diagnostic>,
) -> Result<Target, ParseError> {
    let v6 = family == Family::Ipv6;
    let mut cur = Cur { toks, i: 0 };
    let ip = &mut scratch.ipmatches;
    ip.clear();
    let mod_start = out.len();
    // Loaded modules, most recent last (no allocation unless a rule loads more than 8).
    let mut modules: SmallModules<'a> = SmallModules::default();
    let mut acc: Option<Acc> = None;
    let mut proto: Option<(u8, bool)> = None;
    let mut target: Option<Target> = None;
    let mut target_name: Option<(Tok, TargetKind)> = None;
    let mut tstate = TargetState {
        v6,
        ..TargetState::default()
    };
    let mut opaque_reported = false;
    let src = || SourceRef {
        file: ctx.file.clone(),
        line: ctx.line_no,
    };
    let mut seen_generic: u16 = 0;
    while let Some(t) = cur.peek() {
        cur.i += 1;
        let mut neg = false;
        let mut opt = t;
        if t.s == "!" {
            neg = true;
            opt = cur.arg(ctx, "an option after `!`")?;
            if opt.s == "!" {
                return Err(ctx.err_tok(&opt, "an option after `!`"));
            }
        }
        if !opt.s.starts_with('-') || opt.s == "-" {
            return Err(ctx.err_tok(&opt, "an option (starting with `-`)"));
        }
        if let Some(g) = generic_short(opt.s) {
            // Old syntax `-s ! addr`.
            if matches!(g, "-s" | "-d" | "-p" | "-i" | "-o")
                && cur.peek().is_some_and(|t| t.s == "!")
            {
                if neg {
                    return Err(ctx.err_tok(&cur.toks[cur.i], "a value (double negation)"));
                }
                neg = true;
                cur.i += 1;
            }
            let bit = match g {
                "-s" => 1,
                "-d" => 2,
                "-p" => 4,
                "-i" => 8,
                "-o" => 16,
                "-f" => 32,
                _ => 0,
            };
            if bit != 0 {
                if seen_generic & bit != 0 {
                    return Err(ctx.err_tok(&opt, format!("at most one `{g}` option")));
                }
                seen_generic |= bit;
            }
            match g {
                "-s" | "-d" => {
                    let a = cur.arg(ctx, "an address")?;
                    let c = parse_cidr(a.s, v6)
                        .ok_or_else(|| ctx.err_tok(&a, addr_expect(v6, true)))?;
                    ip.push(if g == "-s" {
                        Match::Src(c, neg)
                    } else {
                        Match::Dst(c, neg)
                    });
                }
                "-p" => {
                    let a = cur.arg(ctx, "a protocol")?;
                    if a.s.eq_ignore_ascii_case("all") || a.s == "0" {
                        // `-p all` matches everything; `! -p all` nothing.
                        proto = Some((0, neg));
                        if neg {
                            ip.push(Match::Proto(0, true));
                        }
                    } else {
                        let p = Proto::parse(a.s).ok_or_else(|| {
                            ctx.err_tok(&a, "a protocol (tcp, udp, sctp, icmp, all, or a number)")
                        })?;
                        proto = Some((p.number(), neg));
                        ip.push(Match::Proto(p.number(), neg));
                    }
                }
                "-i" | "-o" => {
                    let a = cur.arg(ctx, "an interface name")?;
                    if a.s.is_empty() || a.s.len() > 15 || a.s.starts_with('-') {
                        return Err(ctx.err_tok(
                            &a,
                            "an interface name (at most 15 characters, `+` wildcard)",
                        ));
                    }
                    let (name, wildcard) = match a.s.strip_suffix('+') {
                        Some(p) => (p, true),
                        None => (a.s, false),
                    };
                    let pat = IfacePat {
                        name: name.into(),
                        wildcard,
                    };
                    ip.push(if g == "-i" {
                        Match::InIface(pat, neg)
                    } else {
                        Match::OutIface(pat, neg)
                    });
                }
                "-f" => ip.push(Match::Fragment(neg)),
                "-4" | "-6" => {}
                "-c" => {
                    let a = cur.arg(ctx, "a packet counter")?;
                    let b = cur.arg(ctx, "a byte counter")?;
                    if a.s.parse::<u64>().is_err() {
                        return Err(ctx.err_tok(&a, "a packet counter"));
                    }
                    if b.s.parse::<u64>().is_err() {
                        return Err(ctx.err_tok(&b, "a byte counter"));
                    }
                }
                "-m" => {
                    if neg {
                        return Err(ctx.err_tok(&opt, "an option that can be negated (not -m)"));
                    }
                    let a = cur.arg(ctx, "a match module name")?;
                    finish_acc(ctx, &mut acc, out, diags)?;
                    let kind = module_kind(a.s);
                    match kind {
                        Module::Opaque => {
                            if !opaque_reported {
                                diags.push(Diagnostic {
                                    source: src(),
                                    message: format!(
                                        "unsupported match `-m {}`; the rule is kept opaque and a packet reaching it gets UNKNOWN",
                                        a.s
                                    ),
                                });
                                opaque_reported = true;
                            }
                            out.push(Match::Opaque(format!("-m {}", a.s).into()));
                        }
                        Module::Unknowable => {
                            out.push(Match::Unknowable(format!("-m {}", a.s).into()))
                        }
                        Module::Statistic => {
                            acc = Some(Acc::Statistic {
                                tok_off: a.off,
                                mode: None,
                                p: None,
                                every: None,
                                neg: false,
                            })
                        }
                        Module::AddrType => {
                            acc = Some(Acc::AddrType {
                                src: None,
                                dst: None,
                                limit_in: false,
                                limit_out: false,
                            })
                        }
                        Module::Recent => acc = Some(Acc::Recent { action: None }),
                        Module::PhysDev => acc = Some(Acc::PhysDev(Vec::new())),
                        Module::Policy => acc = Some(Acc::Policy { ipsec: None }),
                        Module::Set => acc = Some(Acc::Set { counters: false }),
                        Module::Conntrack => acc = Some(Acc::Conntrack { start: out.len() }),
                        Module::Limit => out.push(Match::Limit),
                        Module::RpFilter => out.push(Match::RpFilter {
                            loose: false,
                            validmark: false,
                            accept_local: false,
                            invert: false,
                        }),
                        _ => {}
                    }
                    modules.push((kind, a.s));
                }
                "-j" | "-g" => {
                    if neg {
                        return Err(ctx.err_tok(&opt, "an option that can be negated (not -j/-g)"));
                    }
                    if target_name.is_some() {
                        return Err(ctx.err_tok(&opt, "only one -j/-g per rule"));
                    }
                    let a = cur.arg(ctx, "a target or chain name")?;
                    let kind = if g == "-g" {
                        // iptables-legacy-restore 1.8.9: `-g DROP` -> "goto 'DROP' is not a
                        // chain" (checked in a network namespace).
                        if target_kind(a.s) != TargetKind::Chain {
                            return Err(ctx.err_tok(&a, "a user-defined chain after -g (goto)"));
                        }
                        TargetKind::Chain
                    } else {
                        target_kind(a.s)
                    };
                    target_name = Some((a, kind));
                    if g == "-g" {
                        target = Some(chain_target(chains, table, a.s, true));
                    }
                }
                _ => {}
            }
            continue;
        }
        // Target options take precedence once a target is named.
        if let Some((tn, kind)) = target_name {
            if target_accepts(kind, opt.s) {
                parse_target_opt(ctx, kind, tn, opt, neg, &mut cur, &mut tstate, v6)?;
                continue;
            }
        }
        // Module options: most recently loaded module first, then the implicit protocol module.
        let mut owner = modules
            .iter_rev()
            .find(|(m, _)| module_accepts(*m, opt.s))
            .map(|(m, _)| m);
        if owner.is_none() {
            if let Some((p, false)) = proto {
                let implicit = match p {
                    6 => Some(Module::Tcp),
                    17 => Some(Module::Udp),
                    132 => Some(Module::Sctp),
                    1 => Some(Module::Icmp),
                    58 => Some(Module::Icmp6),
                    _ => None,
                };
                owner = implicit.filter(|m| module_accepts(*m, opt.s));
            }
        }
        let Some(m) = owner else {
            let expected = match (&target_name, modules.last()) {
                (Some((tn, _)), _) => format!("an option of target {}", tn.s),
                (None, Some((_, name))) => format!("an option of match `-m {name}`"),
                (None, None) => "an iptables option (-s, -d, -p, -i, -o, -m, -j, -g)".to_string(),
            };
            return Err(ctx.err_tok(&opt, expected));
        };
        parse_module_opt(ctx, m, opt, neg, &mut cur, out, &mut acc, v6, proto)?;
    }
    finish_acc(ctx, &mut acc, out, diags)?;
    // IP-header matches first (the kernel tests them before extensions).
    if !ip.is_empty() {
        let n = ip.len();
        out.append(ip);
        out[mod_start..].rotate_right(n);
    }
    let target = match (target, target_name) {
        (Some(t), _) => t,
        (None, None) => Target::None,
        (None, Some((tn, kind))) => {
            finish_target(ctx, kind, tn, tstate, table, proto, chains, diags, &src())?
        }
    };
    Ok(target)
}

fn addr_expect(v6: bool, mask: bool) -> String {
    match (v6, mask) {
        (false, true) => "an IPv4 address with optional /prefix or /netmask".into(),
        (true, true) => "an IPv6 address with optional /prefix".into(),
        (false, false) => "an IPv4 address".into(),
        (true, false) => "an IPv6 address".into(),
    }
}

pub(crate) fn parse_addr(s: &str, v6: bool) -> Option<u128> {
    if v6 {
        s.parse::<std::net::Ipv6Addr>().ok().map(u128::from)
    } else {
        s.parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|a| u32::from(a) as u128)
    }
}

pub(crate) fn parse_cidr(s: &str, v6: bool) -> Option<Cidr> {
    let bits: u32 = if v6 { 128 } else { 32 };
    let full: u128 = if v6 { u128::MAX } else { u32::MAX as u128 };
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr = parse_addr(a, v6)?;
    let mask = match m {
        None => full,
        Some(m) if !m.is_empty() && m.bytes().all(|c| c.is_ascii_digit()) => {
            let n: u32 = m.parse().ok()?;
            if n > bits {
                return None;
            }
            if n == 0 {
                0
            } else {
                (full << (bits - n)) & full
            }
        }
        Some(m) => parse_addr(m, v6)?,
    };
    Some(Cidr {
        addr: addr & mask,
        mask,
        v6,
    })
}

fn service_port(s: &str) -> Option<u16> {
    if let Ok(n) = s.parse::<u16>() {
        return Some(n);
    }
    // A few /etc/services names (iptables-save prints numbers; hand-written rules may not).
    Some(match s {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "bootps" => 67,
        "bootpc" => 68,
        "http" | "www" => 80,
        "pop3" => 110,
        "ntp" => 123,
        "imap" | "imap2" => 143,
        "snmp" => 161,
        "bgp" => 179,
        "https" => 443,
        "submission" => 587,
        "imaps" => 993,
        "pop3s" => 995,
        _ => return None,
    })
}

fn parse_port_range(s: &str) -> Option<PortRange> {
    match s.split_once(':') {
        None => service_port(s).map(|p| PortRange { lo: p, hi: p }),
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { service_port(a)? };
            let hi = if b.is_empty() {
                65535
            } else {
                service_port(b)?
            };
            if lo > hi {
                return None;
            }
            Some(PortRange { lo, hi })
        }
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        s.parse::<u32>().ok()
    }
}

/// `value[/mask]` (mask defaults to all ones).
fn parse_mark(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((parse_u32(v)?, parse_u32(m)?)),
        None => Some((parse_u32(s)?, u32::MAX)),
    }
}

fn tcp_flag_list(s: &str) -> Option<u8> {
    let mut v = 0u8;
    for f in s.split(',') {
        v |= match f {
            "FIN" => 0x01,
            "SYN" => 0x02,
            "RST" => 0x04,
            "PSH" => 0x08,
            "ACK" => 0x10,
            "URG" => 0x20,
            "ECE" => 0x40,
            "CWR" => 0x80,
            "ALL" => 0xff,
            "NONE" => 0,
            _ => return None,
        };
    }
    Some(v)
}

fn icmp_name(s: &str, v6: bool) -> Option<(Option<u8>, Option<u8>)> {
    // (type, code); `any` is (None, None).
    if s == "any" {
        return Some((None, None));
    }
    if let Some((a, b)) = s.split_once('/') {
        return Some((Some(a.parse().ok()?), Some(b.parse().ok()?)));
    }
    if let Ok(n) = s.parse::<u8>() {
        return Some((Some(n), None));
    }
    let v = if !v6 {
        match s {
            "echo-reply" | "pong" => (0, None),
            "destination-unreachable" => (3, None),
            "network-unreachable" => (3, Some(0)),
            "host-unreachable" => (3, Some(1)),
            "protocol-unreachable" => (3, Some(2)),
            "port-unreachable" => (3, Some(3)),
            "fragmentation-needed" => (3, Some(4)),
            "source-route-failed" => (3, Some(5)),
            "network-unknown" => (3, Some(6)),
            "host-unknown" => (3, Some(7)),
            "network-prohibited" => (3, Some(9)),
            "host-prohibited" => (3, Some(10)),
            "communication-prohibited" => (3, Some(13)),
            "source-quench" => (4, None),
            "redirect" => (5, None),
            "echo-request" | "ping" => (8, None),
            "router-advertisement" => (9, None),
            "router-solicitation" => (10, None),
            "time-exceeded" | "ttl-exceeded" => (11, None),
            "ttl-zero-during-transit" => (11, Some(0)),
            "ttl-zero-during-reassembly" => (11, Some(1)),
            "parameter-problem" => (12, None),
            "timestamp-request" => (13, None),
            "timestamp-reply" => (14, None),
            "address-mask-request" => (17, None),
            "address-mask-reply" => (18, None),
            _ => return None,
        }
    } else {
        match s {
            "destination-unreachable" => (1, None),
            "no-route" => (1, Some(0)),
            "communication-prohibited" => (1, Some(1)),
            "address-unreachable" => (1, Some(3)),
            "port-unreachable" => (1, Some(4)),
            "packet-too-big" => (2, None),
            "time-exceeded" | "ttl-exceeded" => (3, None),
            "parameter-problem" => (4, None),
            "echo-request" | "ping" => (128, None),
            "echo-reply" | "pong" => (129, None),
            "router-solicitation" => (133, None),
            "router-advertisement" => (134, None),
            "neighbour-solicitation" | "neighbor-solicitation" => (135, None),
            "neighbour-advertisement" | "neighbor-advertisement" => (136, None),
            "redirect" => (137, None),
            _ => return None,
        }
    };
    Some((Some(v.0), v.1))
}

#[allow(clippy::too_many_arguments)]
fn parse_module_opt(
    ctx: &Ctx,
    m: Module,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    out: &mut Vec<Match>,
    acc: &mut Option<Acc>,
    v6: bool,
    _proto: Option<(u8, bool)>,
) -> Result<(), ParseError> {
    let o = opt.s;
    match m {
        Module::Tcp | Module::Udp | Module::Sctp => match o {
            "--sport" | "--source-port" | "--dport" | "--destination-port" => {
                let a = cur.arg(ctx, "a port or port range (N or N:M)")?;
                let r = parse_port_range(a.s)
                    .ok_or_else(|| ctx.err_tok(&a, "a port or port range (N or N:M)"))?;
                out.push(
                    if o.contains('s') && (o == "--sport" || o == "--source-port") {
                        Match::Sport(r, neg)
                    } else {
                        Match::Dport(r, neg)
                    },
                );
            }
            "--syn" => out.push(Match::TcpFlags {
                mask: 0x17,
                comp: 0x02,
                neg,
            }),
            "--tcp-flags" => {
                let a = cur.arg(ctx, "a TCP flag list (e.g. SYN,RST,ACK,FIN)")?;
                let mask = tcp_flag_list(a.s)
                    .ok_or_else(|| ctx.err_tok(&a, "a TCP flag list (e.g. SYN,RST,ACK,FIN)"))?;
                let b = cur.arg(ctx, "a TCP flag list (e.g. SYN)")?;
                let comp = tcp_flag_list(b.s)
                    .ok_or_else(|| ctx.err_tok(&b, "a TCP flag list (e.g. SYN)"))?;
                out.push(Match::TcpFlags { mask, comp, neg });
            }
            "--tcp-option" => {
                let a = cur.arg(ctx, "a TCP option number")?;
                a.s.parse::<u8>()
                    .map_err(|_| ctx.err_tok(&a, "a TCP option number"))?;
                out.push(Match::Unknowable(
                    "--tcp-option (TCP options of the packet are not modelled)".into(),
                ));
            }
            _ => {
                cur.skip_args();
                out.push(Match::Unknowable(format!("{o} (not modelled)").into()));
            }
        },
        Module::Icmp | Module::Icmp6 => {
            let is6 = m == Module::Icmp6;
            let a = cur.arg(ctx, "an ICMP type (name, N or N/CODE)")?;
            let (ty, code) = icmp_name(a.s, is6)
                .ok_or_else(|| ctx.err_tok(&a, "an ICMP type (name, N or N/CODE)"))?;
            out.push(Match::Icmp {
                v6: is6,
                ty,
                code,
                neg,
            });
        }
        Module::Multiport => {
            let a = cur.arg(ctx, "a comma-separated port list")?;
            let mut ports = Vec::new();
            for p in a.s.split(',') {
                ports.push(
                    parse_port_range(p)
                        .ok_or_else(|| ctx.err_tok(&a, "a comma-separated port list (N, N:M)"))?,
                );
            }
            if ports.is_empty() || ports.len() > 15 {
                return Err(ctx.err_tok(&a, "between 1 and 15 ports"));
            }
            let (src, dst) = match o {
                "--sports" | "--source-ports" => (true, false),
                "--dports" | "--destination-ports" => (false, true),
                _ => (true, true),
            };
            out.push(Match::Multiport {
                src,
                dst,
                ports: ports.into(),
                neg,
            });
        }
        Module::Comment => {
            let a = cur.arg(ctx, "a comment")?;
            // libxt_comment refuses a comment of XT_MAX_COMMENT_LEN (256) bytes or more
            // ("COMMENT must be shorter than 256 characters"), so iptables-restore rejects
            // the ruleset; a backslash escape counts as the one byte it stands for.
            let bytes = a.s.len() - a.s.matches('\\').count().min(a.s.len());
            if bytes >= 256 {
                return Err(ctx.err_at(
                    a.off,
                    "a comment shorter than 256 bytes (iptables' limit)",
                    format!("a comment of {bytes} bytes"),
                ));
            }
        }
        Module::Mark | Module::Connmark => {
            let a = cur.arg(ctx, "a mark value[/mask]")?;
            let (value, mask) =
                parse_mark(a.s).ok_or_else(|| ctx.err_tok(&a, "a mark value[/mask]"))?;
            out.push(if m == Module::Mark {
                Match::Mark { value, mask, neg }
            } else {
                Match::ConnMark { value, mask, neg }
            });
        }
        Module::State | Module::Conntrack => match o {
            "--state" | "--ctstate" => {
                let a = cur.arg(ctx, "a state list (NEW,ESTABLISHED,...)")?;
                let mut bits = 0;
                for s in a.s.split(',') {
                    bits |= ctstate::parse(s).ok_or_else(|| {
                        ctx.err_tok(&a, "a state list of INVALID, NEW, ESTABLISHED, RELATED, UNTRACKED, SNAT, DNAT")
                    })?;
                }
                out.push(Match::CtState(bits, neg));
            }
            "--ctstatus" => {
                let a = cur.arg(
                    ctx,
                    "a status list (NONE,EXPECTED,SEEN_REPLY,ASSURED,CONFIRMED)",
                )?;
                let mut bits = 0;
                for s in a.s.split(',') {
                    bits |= ctstatus::parse(s).ok_or_else(|| {
                        ctx.err_tok(
                            &a,
                            "a status list of NONE, EXPECTED, SEEN_REPLY, ASSURED, CONFIRMED",
                        )
                    })?;
                }
                out.push(Match::CtStatus(bits, neg));
            }
            "--ctproto" => {
                let a = cur.arg(ctx, "a protocol")?;
                let p = if a.s == "all" {
                    0
                } else {
                    Proto::parse(a.s)
                        .ok_or_else(|| ctx.err_tok(&a, "a protocol"))?
                        .number()
                };
                out.push(Match::CtProto(p, neg));
            }
            "--ctorigsrc" | "--ctorigdst" | "--ctreplsrc" | "--ctrepldst" => {
                let a = cur.arg(ctx, "an address")?;
                let c =
                    parse_cidr(a.s, v6).ok_or_else(|| ctx.err_tok(&a, addr_expect(v6, true)))?;
                out.push(Match::CtAddr(ct_field(o), c, neg));
            }
            "--ctorigsrcport" | "--ctorigdstport" | "--ctreplsrcport" | "--ctrepldstport" => {
                let a = cur.arg(ctx, "a port or port range")?;
                let r = parse_port_range(a.s)
                    .ok_or_else(|| ctx.err_tok(&a, "a port or port range (N or N:M)"))?;
                out.push(Match::CtPort(ct_field(o.trim_end_matches("port")), r, neg));
            }
            "--ctexpire" => {
                let a = cur.arg(ctx, "a time range (N or N:M)")?;
                let (lo, hi) = match a.s.split_once(':') {
                    Some((x, y)) => (x.parse::<u32>().ok(), y.parse::<u32>().ok()),
                    None => (a.s.parse::<u32>().ok(), a.s.parse::<u32>().ok()),
                };
                let (Some(lo), Some(hi)) = (lo, hi) else {
                    return Err(ctx.err_tok(&a, "a time range (N or N:M)"));
                };
                out.push(Match::CtExpire(PortRangeU32 { lo, hi }, neg));
            }
            "--ctdir" => {
                let a = cur.arg(ctx, "ORIGINAL or REPLY")?;
                let orig = match a.s {
                    "ORIGINAL" => true,
                    "REPLY" => false,
                    _ => return Err(ctx.err_tok(&a, "ORIGINAL or REPLY")),
                };
                out.push(Match::CtDir(orig));
            }
            _ => return Err(ctx.err_tok(&opt, "a conntrack option")),
        },
        Module::Statistic => {
            let Some(Acc::Statistic {
                mode,
                p,
                every,
                neg: sneg,
                ..
            }) = acc.as_mut()
            else {
                return Err(ctx.err_tok(&opt, "`-m statistic` before its options"));
            };
            match o {
                "--mode" => {
                    let a = cur.arg(ctx, "random or nth")?;
                    *mode = Some(match a.s {
                        "random" => true,
                        "nth" => false,
                        _ => return Err(ctx.err_tok(&a, "random or nth")),
                    });
                }
                "--probability" => {
                    let a = cur.arg(ctx, "a probability between 0 and 1")?;
                    let v: f64 =
                        a.s.parse()
                            .map_err(|_| ctx.err_tok(&a, "a probability between 0 and 1"))?;
                    if !(0.0..=1.0).contains(&v) {
                        return Err(ctx.err_tok(&a, "a probability between 0 and 1"));
                    }
                    *p = Some(v);
                    *sneg ^= neg;
                }
                "--every" => {
                    let a = cur.arg(ctx, "a packet count")?;
                    let v: u32 =
                        a.s.parse()
                            .map_err(|_| ctx.err_tok(&a, "a positive packet count"))?;
                    if v == 0 {
                        return Err(ctx.err_tok(&a, "a positive packet count"));
                    }
                    *every = Some(v);
                    *sneg ^= neg;
                }
                _ => {
                    let a = cur.arg(ctx, "a packet number")?;
                    a.s.parse::<u32>()
                        .map_err(|_| ctx.err_tok(&a, "a packet number"))?;
                }
            }
        }
        Module::Recent => {
            let Some(Acc::Recent { action }) = acc.as_mut() else {
                return Err(ctx.err_tok(&opt, "`-m recent` before its options"));
            };
            match o {
                "--set" | "--remove" | "--rcheck" | "--update" => {
                    if action.is_some() {
                        return Err(
                            ctx.err_tok(&opt, "only one of --set, --rcheck, --update, --remove")
                        );
                    }
                    *action = Some((matches!(o, "--set" | "--remove"), neg));
                }
                "--name" | "--mask" | "--seconds" | "--hitcount" => {
                    let a = cur.arg(ctx, "a value")?;
                    let ok = match o {
                        "--name" => true,
                        "--mask" => parse_addr(a.s, v6).is_some(),
                        _ => a.s.parse::<u32>().is_ok(),
                    };
                    if !ok {
                        return Err(ctx.err_tok(&a, format!("a value for {o}")));
                    }
                }
                _ => {}
            }
        }
        Module::IpRange => {
            let a = cur.arg(ctx, "an address range (A-B)")?;
            let (x, y) =
                a.s.split_once('-')
                    .ok_or_else(|| ctx.err_tok(&a, "an address range (A-B)"))?;
            let lo = parse_addr(x, v6).ok_or_else(|| ctx.err_tok(&a, "an address range (A-B)"))?;
            let hi = parse_addr(y, v6).ok_or_else(|| ctx.err_tok(&a, "an address range (A-B)"))?;
            out.push(Match::IpRange(Box::new(if o == "--src-range" {
                IpRangeM {
                    src: Some((lo, hi, neg)),
                    dst: None,
                }
            } else {
                IpRangeM {
                    src: None,
                    dst: Some((lo, hi, neg)),
                }
            })));
        }
        Module::Set => match o {
            "--match-set" | "--set" => {
                let name = cur.arg(ctx, "a set name")?;
                let flags = cur.arg(ctx, "set flags (src, dst, src,dst ...)")?;
                let mut dirs = Vec::new();
                for f in flags.s.split(',') {
                    dirs.push(match f {
                        "src" => true,
                        "dst" => false,
                        _ => return Err(ctx.err_tok(&flags, "set flags (src, dst, src,dst ...)")),
                    });
                }
                if dirs.len() > 6 {
                    return Err(ctx.err_tok(&flags, "at most 6 set dimensions"));
                }
                out.push(Match::Set(
                    SetRef {
                        name: name.s.into(),
                        dirs,
                        return_nomatch: false,
                    },
                    neg,
                ));
            }
            "--return-nomatch" => {
                match out.iter_mut().rev().find(|m| matches!(m, Match::Set(..))) {
                    Some(Match::Set(r, _)) => r.return_nomatch = true,
                    _ => return Err(ctx.err_tok(&opt, "--match-set before --return-nomatch")),
                }
            }
            // Counter updates do not change whether the packet matches.
            "--update-counters" | "--update-subcounters" => {}
            _ => {
                let a = cur.arg(ctx, "a counter value")?;
                a.s.parse::<u64>()
                    .map_err(|_| ctx.err_tok(&a, "a counter value"))?;
                if let Some(Acc::Set { counters }) = acc.as_mut() {
                    *counters = true;
                }
            }
        },
        Module::Length => {
            let a = cur.arg(ctx, "a length or range (N or N:M)")?;
            let r = parse_port_range(a.s)
                .ok_or_else(|| ctx.err_tok(&a, "a length or range (N or N:M)"))?;
            out.push(Match::Length(r, neg));
        }
        Module::Limit => {
            // --limit RATE, --limit-burst N, --hashlimit-*: all take one argument except
            // boolean hashlimit flags; skip arguments up to the next option.
            cur.skip_args();
        }
        Module::AddrType => {
            let Some(Acc::AddrType {
                src,
                dst,
                limit_in,
                limit_out,
            }) = acc.as_mut()
            else {
                return Err(ctx.err_tok(&opt, "`-m addrtype` before its options"));
            };
            match o {
                "--src-type" | "--dst-type" => {
                    let a = cur.arg(ctx, "an address type list (LOCAL, UNICAST, ...)")?;
                    let mut bits = 0;
                    for s in a.s.split(',') {
                        bits |= addrtype::parse(s).ok_or_else(|| {
                            ctx.err_tok(&a, "an address type list (UNSPEC, UNICAST, LOCAL, BROADCAST, ANYCAST, MULTICAST, BLACKHOLE, UNREACHABLE, PROHIBIT, THROW, NAT, XRESOLVE)")
                        })?;
                    }
                    if o == "--src-type" {
                        *src = Some((bits, neg));
                    } else {
                        *dst = Some((bits, neg));
                    }
                }
                "--limit-iface-in" => *limit_in = true,
                _ => *limit_out = true,
            }
        }
        Module::PhysDev => {
            let Some(Acc::PhysDev(conds)) = acc.as_mut() else {
                return Err(ctx.err_tok(&opt, "`-m physdev` before its options"));
            };
            if o == "--physdev-in" || o == "--physdev-out" {
                cur.arg(ctx, "a bridge port name")?;
            }
            conds.push((o.into(), neg));
        }
        Module::Policy => {
            let Some(Acc::Policy { ipsec }) = acc.as_mut() else {
                return Err(ctx.err_tok(&opt, "`-m policy` before its options"));
            };
            match o {
                "--pol" => {
                    let a = cur.arg(ctx, "none or ipsec")?;
                    *ipsec = Some(match a.s {
                        "none" => false,
                        "ipsec" => true,
                        _ => return Err(ctx.err_tok(&a, "none or ipsec")),
                    });
                }
                "--dir" => {
                    let a = cur.arg(ctx, "in or out")?;
                    if a.s != "in" && a.s != "out" {
                        return Err(ctx.err_tok(&a, "in or out"));
                    }
                }
                "--strict" | "--next" => {}
                _ => {
                    cur.arg(ctx, "a value")?;
                }
            }
        }
        Module::PktType => {
            let a = cur.arg(ctx, "unicast, broadcast or multicast")?;
            let t = match a.s {
                "unicast" => 0,
                "broadcast" => 1,
                "multicast" => 2,
                _ => return Err(ctx.err_tok(&a, "unicast, broadcast or multicast")),
            };
            out.push(Match::PktType(t, neg));
        }
        Module::RpFilter => {
            if let Some(Match::RpFilter {
                loose,
                validmark,
                accept_local,
                invert,
            }) = out.last_mut()
            {
                match o {
                    "--loose" => *loose = true,
                    "--validmark" => *validmark = true,
                    "--accept-local" => *accept_local = true,
                    _ => *invert = true,
                }
            }
        }
        Module::Unknowable | Module::Opaque => cur.skip_args(),
    }
    Ok(())
}

fn ct_field(o: &str) -> CtField {
    match o {
        "--ctorigsrc" => CtField::OrigSrc,
        "--ctorigdst" => CtField::OrigDst,
        "--ctreplsrc" => CtField::ReplSrc,
        _ => CtField::ReplDst,
    }
}

fn finish_acc(
    ctx: &Ctx,
    acc: &mut Option<Acc>,
    out: &mut Vec<Match>,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), ParseError> {
    let _ = diags;
    let Some(a) = acc.take() else { return Ok(()) };
    match a {
        Acc::Statistic {
            tok_off,
            mode,
            p,
            every,
            neg,
        } => match (mode, p, every) {
            (Some(true), Some(p), None) => {
                // libxt_statistic: probability = lround(0x80000000 * p); the kernel matches when
                // (get_random_u32() & 0x7FFFFFFF) < probability.
                let q = (p * 2147483648.0).round() / 2147483648.0;
                out.push(Match::Statistic {
                    p: q,
                    neg,
                    nth: None,
                });
            }
            (Some(false), None, Some(n)) => out.push(Match::Statistic {
                p: 1.0 / n as f64,
                neg,
                nth: Some(n),
            }),
            (Some(true), _, _) => {
                return Err(ctx.err_at(
                    tok_off,
                    "--probability for --mode random",
                    "`statistic` without it",
                ))
            }
            (Some(false), _, _) => {
                return Err(ctx.err_at(tok_off, "--every for --mode nth", "`statistic` without it"))
            }
            (None, _, _) => {
                return Err(ctx.err_at(
                    tok_off,
                    "--mode random or --mode nth",
                    "`statistic` without --mode",
                ))
            }
        },
        Acc::AddrType {
            src,
            dst,
            limit_in,
            limit_out,
        } => out.push(Match::AddrType {
            src,
            dst,
            limit_in,
            limit_out,
        }),
        Acc::Recent { action } => {
            // Default action is --rcheck (iptables-extensions: "--rcheck ... default").
            let (matches_first, neg) = action.unwrap_or((false, false));
            out.push(Match::Recent { matches_first, neg });
        }
        Acc::PhysDev(conds) => out.push(Match::PhysDev {
            conds: conds.into(),
        }),
        Acc::Policy { ipsec } => out.push(Match::Policy {
            ipsec: ipsec.unwrap_or(true),
        }),
        Acc::Set { counters } => {
            if counters {
                out.push(Match::SetCounters);
            }
        }
        Acc::Conntrack { start } => {
            if out.len() > start + 1 {
                let items: Vec<Match> = out.drain(start..).collect();
                out.push(Match::CtGroup(items.into()));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TargetKind {
    Accept,
    Drop,
    Return,
    Reject,
    Mark,
    Connmark,
    Dnat,
    Snat,
    Masquerade,
    Redirect,
    Notrack,
    Ct,
    /// LOG, NFLOG, TRACE, AUDIT, CLASSIFY, ...: options accepted, no effect.
    NoEffect,
    /// NFQUEUE, QUEUE, TPROXY...: decided outside the ruleset.
    Unknowable,
    /// A user chain or an unknown extension: resolved at the end of the table.
    Chain,
}

fn target_kind(name: &str) -> TargetKind {
    match name {
        "ACCEPT" => TargetKind::Accept,
        "DROP" => TargetKind::Drop,
        "RETURN" => TargetKind::Return,
        "REJECT" => TargetKind::Reject,
        "MARK" => TargetKind::Mark,
        "CONNMARK" => TargetKind::Connmark,
        "DNAT" => TargetKind::Dnat,
        "SNAT" => TargetKind::Snat,
        "MASQUERADE" => TargetKind::Masquerade,
        "REDIRECT" => TargetKind::Redirect,
        "NOTRACK" => TargetKind::Notrack,
        "CT" => TargetKind::Ct,
        "LOG" | "NFLOG" | "ULOG" | "TRACE" | "AUDIT" | "CLASSIFY" | "TCPMSS" | "CHECKSUM"
        | "DSCP" | "TOS" | "TTL" | "HL" | "SET" | "IDLETIMER" | "LED" | "SECMARK"
        | "CONNSECMARK" | "NFACCT" | "RATEEST" | "SYNPROXY" | "CLUSTERIP" | "TEE" | "ECN"
        | "TCPOPTSTRIP" => TargetKind::NoEffect,
        "NFQUEUE" | "QUEUE" => TargetKind::Unknowable,
        _ => TargetKind::Chain,
    }
}

fn target_accepts(k: TargetKind, opt: &str) -> bool {
    match k {
        TargetKind::Accept | TargetKind::Drop | TargetKind::Return | TargetKind::Notrack => false,
        TargetKind::Reject => opt == "--reject-with",
        TargetKind::Mark => matches!(
            opt,
            "--set-xmark" | "--set-mark" | "--and-mark" | "--or-mark" | "--xor-mark"
        ),
        TargetKind::Connmark => matches!(
            opt,
            "--set-xmark"
                | "--set-mark"
                | "--and-mark"
                | "--or-mark"
                | "--xor-mark"
                | "--save-mark"
                | "--restore-mark"
                | "--nfmask"
                | "--ctmask"
                | "--mask"
                | "--left-shift-mark"
                | "--right-shift-mark"
        ),
        TargetKind::Dnat => matches!(
            opt,
            "--to-destination" | "--to" | "--random" | "--persistent"
        ),
        TargetKind::Snat => matches!(
            opt,
            "--to-source" | "--to" | "--random" | "--random-fully" | "--persistent"
        ),
        TargetKind::Masquerade | TargetKind::Redirect => {
            matches!(opt, "--to-ports" | "--random" | "--random-fully")
        }
        TargetKind::Ct => matches!(
            opt,
            "--notrack"
                | "--zone"
                | "--zone-orig"
                | "--zone-reply"
                | "--helper"
                | "--ctevents"
                | "--expevents"
                | "--timeout"
        ),
        TargetKind::NoEffect | TargetKind::Unknowable => opt.starts_with("--"),
        // Tokens after an unknown target belong to it (opaque).
        TargetKind::Chain => opt.starts_with("--"),
    }
}

#[derive(Default)]
struct TargetState {
    /// ip6tables: REJECT defaults to icmp6-port-unreachable.
    v6: bool,
    reject_with: Option<Box<str>>,
    mark: Option<MarkOp>,
    /// CONNMARK: set (value, mask), or save/restore flags and masks.
    cm_set: Option<(u32, u32)>,
    cm_save: bool,
    cm_restore: bool,
    nfmask: Option<u32>,
    ctmask: Option<u32>,
    ranges: Vec<NatRange>,
    persistent: bool,
    nat_random: bool,
    ports: Option<PortRange>,
    notrack: bool,
    random_fully: bool,
    extra_opts: bool,
    first_opt_off: Option<usize>,
}

#[allow(clippy::too_many_arguments)]
fn parse_target_opt(
    ctx: &Ctx,
    kind: TargetKind,
    _name: Tok,
    opt: Tok,
    neg: bool,
    cur: &mut Cur,
    ts: &mut TargetState,
    v6: bool,
) -> Result<(), ParseError> {
    if neg {
        return Err(ctx.err_tok(&opt, "a target option without `!`"));
    }
    ts.first_opt_off.get_or_insert(opt.off);
    let o = opt.s;
    match kind {
        TargetKind::Reject => {
            let a = cur.arg(ctx, "a reject type")?;
            let ok = if v6 {
                matches!(
                    a.s,
                    "icmp6-no-route"
                        | "no-route"
                        | "icmp6-adm-prohibited"
                        | "adm-prohibited"
                        | "icmp6-addr-unreachable"
                        | "addr-unreach"
                        | "icmp6-port-unreachable"
                        | "port-unreach"
                        | "icmp6-policy-fail"
                        | "policy-fail"
                        | "icmp6-reject-route"
                        | "reject-route"
                        | "tcp-reset"
                )
            } else {
                matches!(
                    a.s,
                    "icmp-net-unreachable"
                        | "net-unreach"
                        | "icmp-host-unreachable"
                        | "host-unreach"
                        | "icmp-proto-unreachable"
                        | "proto-unreach"
                        | "icmp-port-unreachable"
                        | "port-unreach"
                        | "icmp-net-prohibited"
                        | "net-prohib"
                        | "icmp-host-prohibited"
                        | "host-prohib"
                        | "icmp-admin-prohibited"
                        | "admin-prohib"
                        | "tcp-reset"
                )
            };
            if !ok {
                return Err(ctx.err_tok(&a, if v6 { "an ip6tables reject type (icmp6-port-unreachable, tcp-reset, ...)" } else { "a reject type (icmp-port-unreachable, icmp-host-prohibited, tcp-reset, ...)" }));
            }
            ts.reject_with = Some(a.s.into());
        }
        TargetKind::Mark | TargetKind::Connmark => match o {
            "--set-xmark" | "--set-mark" | "--and-mark" | "--or-mark" | "--xor-mark" => {
                let a = cur.arg(ctx, "a mark value[/mask]")?;
                let (value, mask, has_mask) = match a.s.split_once('/') {
                    Some((v, m)) => (parse_u32(v), parse_u32(m), true),
                    None => (parse_u32(a.s), Some(u32::MAX), false),
                };
                let (Some(value), Some(mask)) = (value, mask) else {
                    return Err(ctx.err_tok(&a, "a mark value[/mask]"));
                };
                if has_mask && matches!(o, "--and-mark" | "--or-mark" | "--xor-mark") {
                    return Err(ctx.err_tok(&a, "a mark value without /mask"));
                }
                // libxt_MARK / libxt_CONNMARK encode every form as (mark & ~mask) ^ value.
                let (v, m) = match o {
                    "--set-xmark" => (value, mask),
                    "--set-mark" => (value, mask | value),
                    "--and-mark" => (0, !value),
                    "--or-mark" => (value, value),
                    _ => (value, 0),
                };
                if kind == TargetKind::Mark {
                    ts.mark = Some(MarkOp::Xset { value: v, mask: m });
                } else {
                    ts.cm_set = Some((v, m));
                }
            }
            "--save-mark" => ts.cm_save = true,
            "--restore-mark" => ts.cm_restore = true,
            "--nfmask" | "--ctmask" | "--mask" => {
                let a = cur.arg(ctx, "a mask")?;
                let v = parse_u32(a.s).ok_or_else(|| ctx.err_tok(&a, "a mask"))?;
                match o {
                    "--nfmask" => ts.nfmask = Some(v),
                    "--ctmask" => ts.ctmask = Some(v),
                    _ => {
                        ts.nfmask = Some(v);
                        ts.ctmask = Some(v);
                    }
                }
            }
            _ => {
                let a = cur.arg(ctx, "a shift count")?;
                let n = a.s.parse::<u8>().ok().filter(|n| *n < 32);
                if n.is_none() {
                    return Err(ctx.err_tok(&a, "a shift count (0-31)"));
                }
                ts.extra_opts = true;
            }
        },
        TargetKind::Dnat | TargetKind::Snat => match o {
            // NF_NAT_RANGE_PROTO_RANDOM(_FULLY): the source port is randomized (SNAT); for
            // DNAT the port choice within a port range (the trace is UNKNOWN then).
            "--random-fully" | "--random" => {
                ts.random_fully = kind == TargetKind::Snat;
                ts.nat_random = true;
            }
            "--persistent" => ts.persistent = true,
            "--to-destination" | "--to-source" | "--to" => {
                let a = cur.arg(ctx, "an address[:port] or range")?;
                let r = parse_nat_range(a.s, v6).ok_or_else(|| {
                    ctx.err_tok(
                        &a,
                        if v6 {
                            "[addr[-addr]]:port[-port] (IPv6 in brackets when a port is given)"
                        } else {
                            "addr[-addr][:port[-port]]"
                        },
                    )
                })?;
                ts.ranges.push(r);
            }
            _ => {}
        },
        TargetKind::Masquerade | TargetKind::Redirect => {
            if o == "--random-fully" || (o == "--random" && kind == TargetKind::Masquerade) {
                ts.random_fully = true;
            } else if o == "--to-ports" {
                let a = cur.arg(ctx, "a port or port range (N or N-M)")?;
                let s = a.s.replace('-', ":");
                ts.ports = Some(
                    parse_port_range(&s)
                        .ok_or_else(|| ctx.err_tok(&a, "a port or port range (N or N-M)"))?,
                );
            }
        }
        TargetKind::Ct => {
            if o == "--notrack" {
                ts.notrack = true;
            } else {
                cur.arg(ctx, "a value")?;
            }
        }
        TargetKind::NoEffect | TargetKind::Unknowable | TargetKind::Chain => {
            ts.extra_opts = true;
            cur.skip_args();
        }
        TargetKind::Accept | TargetKind::Drop | TargetKind::Return | TargetKind::Notrack => {}
    }
    Ok(())
}

fn parse_nat_range(s: &str, v6: bool) -> Option<NatRange> {
    // Forms: addr, addr-addr, addr:port, addr-addr:port-port, :port, [v6]:port, [v6]-[v6]:port
    let (addr_part, port_part): (&str, Option<&str>) = if v6 {
        if s.starts_with('[') {
            let close = s.rfind(']')?;
            let rest = &s[close + 1..];
            let a = &s[..=close];
            match rest.strip_prefix(':') {
                Some(p) => (a, Some(p)),
                None if rest.is_empty() => (a, None),
                None => return None,
            }
        } else if let Some(p) = s.strip_prefix(':') {
            ("", Some(p))
        } else {
            (s, None)
        }
    } else {
        match s.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        }
    };
    let strip = |x: &str| -> String { x.trim_start_matches('[').trim_end_matches(']').to_string() };
    let addr = if addr_part.is_empty() {
        None
    } else {
        let (a, b) = match addr_part.split_once("]-[") {
            Some((a, b)) => (strip(a), strip(b)),
            None => match addr_part.split_once('-') {
                Some((a, b)) if !v6 || !addr_part.starts_with('[') => (strip(a), strip(b)),
                _ => (strip(addr_part), strip(addr_part)),
            },
        };
        let lo = parse_addr(&a, v6)?;
        let hi = parse_addr(&b, v6)?;
        if lo > hi {
            return None;
        }
        Some((lo, hi))
    };
    let ports = match port_part {
        None => None,
        Some(p) => {
            let p = p.split('/').next()?; // `:port-port/base` offsets are not modelled beyond the range
            let r = match p.split_once('-') {
                Some((a, b)) => PortRange {
                    lo: a.parse().ok()?,
                    hi: b.parse().ok()?,
                },
                None => {
                    let n = p.parse().ok()?;
                    PortRange { lo: n, hi: n }
                }
            };
            if r.lo > r.hi {
                return None;
            }
            Some(r)
        }
    };
    if addr.is_none() && ports.is_none() {
        return None;
    }
    Some(NatRange {
        addr,
        v6,
        ports,
        persistent: false,
        random: false,
    })
}

#[allow(clippy::too_many_arguments)]
fn finish_target(
    ctx: &Ctx,
    kind: TargetKind,
    name: Tok,
    ts: TargetState,
    table: Table,
    proto: Option<(u8, bool)>,
    chains: &ChainMap,
    diags: &mut Vec<Diagnostic>,
    src: &SourceRef,
) -> Result<Target, ParseError> {
    let nat_only = |what: &str| -> Result<(), ParseError> {
        if table != Table::Nat {
            return Err(ctx.err_tok(
                &name,
                format!(
                    "a target valid in table {} ({what} is only valid in nat)",
                    table.name()
                ),
            ));
        }
        Ok(())
    };
    // The NAT targets refuse a port without a protocol that has ports: iptables 1.8.9 says
    // "Need TCP, UDP, SCTP or DCCP with port specification" unless `-p` is tcp, udp, sctp,
    // dccp or icmp (also in ip6tables, which checks protocol 1, not 58) or is negated
    // (observed with iptables-restore --test, legacy and nft).
    let has_port = ts.ports.is_some() || ts.ranges.iter().any(|r| r.ports.is_some());
    let port_proto = match proto {
        Some((_, true)) => true,
        Some((p, false)) => matches!(p, 1 | 6 | 17 | 33 | 132),
        None => false,
    };
    if has_port
        && !port_proto
        && matches!(
            kind,
            TargetKind::Dnat | TargetKind::Snat | TargetKind::Masquerade | TargetKind::Redirect
        )
    {
        return Err(ctx.err_tok(
            &name,
            format!(
                "`-p tcp`, `udp`, `sctp` or `dccp` before {} with a port",
                name.s
            ),
        ));
    }
    Ok(match kind {
        TargetKind::Accept => Target::Accept,
        // iptables: 'The "nat" table is not intended for filtering, the use of DROP is
        // therefore inhibited.' (refused by iptables-restore --test, legacy and nft).
        TargetKind::Drop if table == Table::Nat => {
            return Err(ctx.err_tok(
                &name,
                "a target other than DROP (table nat does not filter)",
            ))
        }
        TargetKind::Drop => Target::Drop,
        TargetKind::Return => Target::Return,
        TargetKind::Reject => Target::Reject(ts.reject_with.unwrap_or_else(|| {
            if ts.v6 {
                "icmp6-port-unreachable".into()
            } else {
                "icmp-port-unreachable".into()
            }
        })),
        TargetKind::Mark => {
            match ts.mark {
                Some(m) => Target::Mark(m),
                None => return Err(ctx.err_at(
                    name.off + name.s.len() + 1,
                    "a MARK option (--set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark)",
                    "none",
                )),
            }
        }
        TargetKind::Connmark => {
            let n = [ts.cm_set.is_some(), ts.cm_save, ts.cm_restore]
                .iter()
                .filter(|b| **b)
                .count();
            if n != 1 {
                return Err(ctx.err_at(
                    name.off,
                    "exactly one of --set-xmark/--set-mark/..., --save-mark, --restore-mark",
                    format!("{n} of them"),
                ));
            }
            if ts.extra_opts {
                return Ok(Target::Unknowable(
                    "CONNMARK with mark shifts (not modelled)".into(),
                ));
            }
            if let Some((value, mask)) = ts.cm_set {
                Target::Connmark(ConnmarkOp::Set { value, mask })
            } else if ts.cm_save {
                Target::Connmark(ConnmarkOp::Save {
                    nfmask: ts.nfmask.unwrap_or(u32::MAX),
                    ctmask: ts.ctmask.unwrap_or(u32::MAX),
                })
            } else {
                Target::Connmark(ConnmarkOp::Restore {
                    nfmask: ts.nfmask.unwrap_or(u32::MAX),
                    ctmask: ts.ctmask.unwrap_or(u32::MAX),
                })
            }
        }
        TargetKind::Dnat | TargetKind::Snat => {
            nat_only(name.s)?;
            if ts.ranges.is_empty() {
                return Err(ctx.err_at(
                    name.off + name.s.len() + 1,
                    if kind == TargetKind::Dnat {
                        "--to-destination"
                    } else {
                        "--to-source"
                    },
                    "end of rule",
                ));
            }
            let mut ranges = ts.ranges;
            for r in &mut ranges {
                r.persistent = ts.persistent;
                r.random = ts.nat_random;
            }
            let ts = TargetState { ranges, ..ts };
            if kind == TargetKind::Dnat {
                Target::Dnat {
                    ranges: ts.ranges.into(),
                }
            } else {
                Target::Snat {
                    ranges: ts.ranges.into(),
                    random_fully: ts.random_fully,
                }
            }
        }
        TargetKind::Masquerade => {
            nat_only("MASQUERADE")?;
            Target::Masquerade {
                ports: ts.ports,
                random_fully: ts.random_fully,
            }
        }
        TargetKind::Redirect => {
            nat_only("REDIRECT")?;
            Target::Redirect { ports: ts.ports }
        }
        TargetKind::Notrack => Target::Notrack,
        TargetKind::Ct => {
            if ts.notrack {
                Target::Notrack
            } else {
                Target::NoEffect
            }
        }
        TargetKind::NoEffect => Target::NoEffect,
        TargetKind::Unknowable => Target::Unknowable(
            format!("-j {} (the verdict is decided in userspace)", name.s).into(),
        ),
        TargetKind::Chain => {
            if ts.extra_opts {
                diags.push(Diagnostic {
                    source: src.clone(),
                    message: format!(
                        "unsupported target `-j {}`; the rule is kept opaque and a packet reaching it gets UNKNOWN",
                        name.s
                    ),
                });
                Target::Opaque(name.s.into())
            } else {
                chain_target(chains, table, name.s, false)
            }
        }
    })
}

pub(crate) use crate::index::ChainMap;

/// A jump/goto to a chain declared so far, else unresolved until the end of the table.
fn chain_target(chains: &ChainMap, table: Table, name: &str, goto: bool) -> Target {
    match chains.get(name) {
        Some(id) if !crate::rule::builtin_chains(table).contains(&name) => {
            if goto {
                Target::Goto(id)
            } else {
                Target::Jump(id)
            }
        }
        _ => Target::Unresolved {
            name: name.into(),
            goto,
        },
    }
}

/// Up to 8 loaded modules inline, more on the heap.
#[derive(Default)]
struct SmallModules<'a> {
    inline: [Option<(Module, &'a str)>; 8],
    len: usize,
    more: Vec<(Module, &'a str)>,
}

impl<'a> SmallModules<'a> {
    fn push(&mut self, m: (Module, &'a str)) {
        if self.len < self.inline.len() {
            self.inline[self.len] = Some(m);
        } else {
            self.more.push(m);
        }
        self.len += 1;
    }
    fn last(&self) -> Option<(Module, &'a str)> {
        if self.len == 0 {
            None
        } else if self.len <= self.inline.len() {
            self.inline[self.len - 1]
        } else {
            self.more.last().copied()
        }
    }
    /// Most recent first.
    fn iter_rev(&self) -> impl Iterator<Item = (Module, &'a str)> + '_ {
        self.more.iter().rev().copied().chain(
            self.inline[..self.len.min(self.inline.len())]
                .iter()
                .rev()
                .flatten()
                .copied(),
        )
    }
}
