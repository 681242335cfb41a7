//! iptables-save / ip6tables-save / `iptables -S` parser.
//!
//! One pass over the text, no regex, no per-token allocation: tokens are slices of the line;
//! rule texts stay in the file text (rules keep byte ranges); chain names are interned per
//! table. Option syntax follows iptables(8) and iptables-extensions(8) (iptables 1.8.9).

use std::sync::Arc;

mod matches;
mod targets;

use self::matches::{
    finish_acc, module_accepts, module_kind, parse_module_opt, start_module, Acc, Module,
    SmallModules,
};
use self::targets::{
    chain_target, finish_target, parse_target_opt, target_accepts, target_kind, TargetKind,
    TargetState,
};
use crate::rule::{Chain, Cidr, IfacePat, Match, PortRange, Rule, TableData, Target};
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

/// Reading one text into a ruleset: the text, and what the lines read so far left open.
struct Reader<'r, 't> {
    rs: &'r mut Ruleset,
    file: &'t Arc<str>,
    /// The text's index in `rs.files`.
    file_idx: u32,
    text: &'t str,
    format: Option<Format>,
    table: Option<Table>,
    /// Line of the open `*table` header (save format).
    table_line: u32,
    /// Tables touched by this text (to resolve targets and build indexes).
    touched: [bool; 5],
    diags: Vec<Diagnostic>,
    scratch: Scratch,
    /// The chain the last rule went to (table index, chain id).
    last_chain: Option<(usize, u32)>,
    /// Rules of save text whose target named no chain yet: (table, name, error if it is one).
    pending_targets: Vec<(Table, Box<str>, ParseError)>,
    /// Whether this `*table` block's `-A` lines were offered to a second thread yet.
    block_split: bool,
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
    let mut r = Reader {
        rs,
        file: &file_name,
        file_idx,
        text,
        format: None,
        table: None,
        table_line: 0,
        touched: [false; 5],
        diags: Vec::new(),
        scratch: Scratch::default(),
        last_chain: None,
        pending_targets: Vec::new(),
        block_split: false,
    };
    let mut toks: Vec<Tok> = Vec::with_capacity(32);
    let mut line_no: u32 = 0;
    let mut offset: usize = 0; // byte offset of the current line in text
    let mut first_significant = true;
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
            r.table_header(&ctx, lead, trimmed, line_start)?;
            continue;
        }
        if trimmed == "COMMIT" {
            if r.format != Some(Format::Save) || r.table.is_none() {
                return Err(ctx.err_at(lead, "a `*table` header before COMMIT", "`COMMIT`"));
            }
            r.table = None;
            continue;
        }
        if was_first && is_prompt_echo(trimmed) {
            // `host:~ # iptables -t nat -S` echoed at the top of a captured file.
            continue;
        }
        if c0 == b':' {
            if r.format != Some(Format::Save) || r.table.is_none() {
                return Err(ctx.err_at(
                    lead,
                    "a `*table` header before chain declarations",
                    format!("`{trimmed}`"),
                ));
            }
            tokenize(&ctx, &mut toks);
            let t = r.table.unwrap_or(Table::Filter);
            declare_chain_save(r.rs, t, file_idx, r.table_line, &ctx, &toks)?;
            continue;
        }
        // Command lines: -A/-I/-P/-N, optionally preceded by `[pkts:bytes]`.
        if r.format.is_none() {
            r.start_rules_text(&ctx, lead, trimmed, line_start, default)?;
        }
        let Some(table) = r.table else {
            return Err(ctx.err_at(
                lead,
                "a `*table` header before rules",
                format!("`{}`", first_word(trimmed)),
            ));
        };
        let cmd_start = if c0 == b'[' {
            after_counters(&ctx, lead, trimmed)?
        } else {
            0
        };
        // A long run of `-A` lines in a save block: read its second half in a second thread.
        if !r.block_split
            && cmd_start == 0
            && r.format == Some(Format::Save)
            && text.len() - line_start >= split_min()
            && trimmed.starts_with("-A ")
        {
            r.block_split = true;
            if let Some((next, next_line)) = r.split_block(table, line_start, line_no - 1)? {
                offset = next;
                line_no = next_line;
                r.last_chain = None;
                continue;
            }
        }
        if tokenize_from(&ctx, cmd_start, &mut toks) {
            r.diags.push(Diagnostic {
                source: SourceRef {
                    file: file_name.clone(),
                    line: line_no,
                },
                message: "unterminated `\"`: the quoted text runs to the end of the line, as iptables-restore reads it".into(),
            });
        }
        r.command(&ctx, table, &toks, line_start)?;
    }
    r.finish(line_no)
}

/// Where the command of a line starting with `[packets:bytes]` starts (`lead`: the blanks
/// before the `[`). iptables-restore 1.8.9 (legacy and nft) reads the counters only with
/// `-c`, but always requires a `]` on the line, something other than `:` after the `[` and
/// then a `:` further on ("Bad line N: need ]" otherwise, e.g. `[12]`, `[:]`); the command
/// starts right after the first `]`, even with no blank before it (`[1:2]-A ...`). Observed
/// with `iptables-restore --test`.
fn after_counters(ctx: &Ctx, lead: usize, trimmed: &str) -> Result<usize, ParseError> {
    let rest = &ctx.line[lead..];
    let close = rest.find(']');
    let body = rest[1..].trim_start_matches(':');
    let colon_after = body.len() > 1 && body.as_bytes()[1..].contains(&b':');
    match close {
        Some(c) if !body.is_empty() && colon_after => Ok(lead + c + 1),
        _ => Err(ctx.err_at(
            lead,
            "counters `[packets:bytes]` before the command",
            format!("`{}`", first_word(trimmed)),
        )),
    }
}

impl Reader<'_, '_> {
    /// A `*table` header (`lead`: the blanks before it; the line starts at byte `line_start`
    /// of the text).
    fn table_header(
        &mut self,
        ctx: &Ctx,
        lead: usize,
        trimmed: &str,
        line_start: usize,
    ) -> Result<(), ParseError> {
        if self.format == Some(Format::Rules) {
            return Err(ctx.err_at(
                lead,
                "an `iptables -S` line (-P, -N or -A)",
                format!("`{trimmed}`"),
            ));
        }
        self.format = Some(Format::Save);
        if self.table.is_some() {
            return Err(ctx.err_at(lead, "COMMIT before the next table", format!("`{trimmed}`")));
        }
        let name = trimmed[1..].trim();
        let t = Table::parse(name).ok_or_else(|| {
            ctx.err_at(
                lead + 1,
                "a table name (raw, mangle, nat, filter, security)",
                format!("`{name}`"),
            )
        })?;
        let rs = &mut *self.rs;
        self.table = Some(t);
        self.table_line = ctx.line_no;
        self.touched[t.idx()] = true;
        self.block_split = false;
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
            self.diags.push(Diagnostic {
                source: SourceRef {
                    file: self.file.clone(),
                    line: ctx.line_no,
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
            if self.last_chain.is_some_and(|(ti, _)| ti == t.idx()) {
                self.last_chain = None;
            }
        }
        rs.table_src[t.idx()] = Some((self.file_idx, ctx.line_no));
        let td = rs.tables[t.idx()].get_or_insert_with(TableData::default);
        reserve_for(td, self.text.len() - line_start);
        ensure_builtins(td, t);
        Ok(())
    }

    /// The first command line of a text without a `*table` header: `iptables -S` output, of
    /// table `default`.
    fn start_rules_text(
        &mut self,
        ctx: &Ctx,
        lead: usize,
        trimmed: &str,
        line_start: usize,
        default: Option<Table>,
    ) -> Result<(), ParseError> {
        self.format = Some(Format::Rules);
        let t = default.ok_or_else(|| {
            ctx.err_at(
                lead,
                "a `*table` header (iptables-save) or a table for this `iptables -S` text (-t TABLE)",
                format!("`{}`", first_word(trimmed)),
            )
        })?;
        self.table = Some(t);
        self.touched[t.idx()] = true;
        if self.rs.table_src[t.idx()].is_none() {
            self.rs.table_src[t.idx()] = Some((self.file_idx, 1));
        }
        let td = self.rs.tables[t.idx()].get_or_insert_with(TableData::default);
        reserve_for(td, self.text.len() - line_start);
        ensure_builtins(td, t);
        Ok(())
    }

    /// The run of `-A` lines of a save block of `table` from byte `start` read in two threads
    /// ([`split_appends`]): where to go on, or `None` when it was not split.
    fn split_block(
        &mut self,
        table: Table,
        start: usize,
        line_before: u32,
    ) -> Result<Option<(usize, u32)>, ParseError> {
        let td = self.rs.tables[table.idx()].get_or_insert_with(TableData::default);
        let env = Appends {
            text: self.text,
            file: self.file,
            file_idx: self.file_idx,
            table,
            family: self.rs.family,
        };
        split_appends(
            &env,
            td,
            start,
            line_before,
            &mut self.diags,
            &mut self.pending_targets,
        )
    }

    /// A command line of table `table` (tokens `toks`; the line starts at byte `line_start`
    /// of the text).
    fn command(
        &mut self,
        ctx: &Ctx,
        table: Table,
        toks: &[Tok],
        line_start: usize,
    ) -> Result<(), ParseError> {
        let Some(cmd) = toks.first().copied() else {
            return Err(ctx.err_eol("a command (-A, -I, -N, -P)"));
        };
        let rules_fmt = self.format == Some(Format::Rules);
        match cmd.s {
            "-A" | "--append" | "-I" | "--insert" => self.add_rule(ctx, table, toks, line_start),
            "-N" | "--new-chain" | "--new" => self.new_chain(ctx, table, toks),
            "-P" | "--policy" => self.set_policy(ctx, table, toks),
            // Restore input may flush, delete and zero chains (kube-proxy's iptables-restore
            // input deletes stale chains with `-X`).
            "-F" | "--flush" | "-X" | "--delete-chain" | "-Z" | "--zero" if !rules_fmt => {
                self.flush_delete_zero(ctx, table, toks)
            }
            _ => Err(ctx.err_tok(
                &cmd,
                if rules_fmt {
                    "an `iptables -S` line (-P, -N or -A)"
                } else {
                    "a chain declaration `:NAME POLICY`, a rule `-A CHAIN ...` or COMMIT"
                },
            )),
        }
    }

    /// `-A CHAIN rule` or `-I CHAIN [N] rule`.
    fn add_rule(
        &mut self,
        ctx: &Ctx,
        table: Table,
        toks: &[Tok],
        line_start: usize,
    ) -> Result<(), ParseError> {
        let cmd = toks[0];
        let insert = cmd.s == "-I" || cmd.s == "--insert";
        let rules_fmt = self.format == Some(Format::Rules);
        let chain_tok = toks
            .get(1)
            .copied()
            .ok_or_else(|| ctx.err_eol("a chain name"))?;
        let chain_id = self.rule_chain(ctx, table, chain_tok)?;
        self.last_chain = Some((table.idx(), chain_id));
        let mut j = 2;
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
        let text_len = ctx.line.trim_end().len().saturating_sub(cmd.off);
        let v6 = self.rs.family == Family::Ipv6;
        let td = self.rs.tables[table.idx()].get_or_insert_with(TableData::default);
        let m_start = td.matches.len() as u32;
        let TableData {
            matches, by_name, ..
        } = td;
        let rc = RuleCtx {
            ctx,
            chains: by_name,
            table,
            v6,
        };
        let target = parse_rule(&rc, &toks[j..], matches, &mut self.scratch, &mut self.diags)?;
        let td = self.rs.tables[table.idx()].get_or_insert_with(TableData::default);
        // iptables-restore looks a `-j`/`-g` chain up when it reads the rule: a chain
        // declared further down is "Couldn't load target" (legacy, observed with
        // --test). Unresolved here means not declared yet (or built-in, or unknown);
        // checked against the declarations at the end of the text.
        if !rules_fmt {
            if let Target::Unresolved { name, .. } = &target {
                if td.chain_id(name).is_none() {
                    self.pending_targets
                        .push(pending_target(ctx, table, &toks[j..], cmd, name));
                }
            }
        }
        let m_len = td.matches.len() as u32 - m_start;
        let rule = Rule {
            m_start,
            m_len,
            target,
            file: self.file_idx,
            line: ctx.line_no,
            text_start: text_start as u32,
            text_len: text_len as u32,
        };
        let chain = &mut td.chains[chain_id as usize];
        chain.index = None;
        match pos {
            Some(p) if p <= chain.rules.len() => chain.rules.insert(p, rule),
            Some(_) => {
                return Err(ctx.err_tok(
                    &toks[2],
                    format!("a rule number between 1 and {}", chain.rules.len() + 1),
                ))
            }
            None => chain.rules.push(rule),
        }
        Ok(())
    }

    /// The chain of an `-A`/`-I` line: declared (`-S` text also takes an undeclared one, with
    /// a diagnostic).
    fn rule_chain(&mut self, ctx: &Ctx, table: Table, chain_tok: Tok) -> Result<u32, ParseError> {
        let rules_fmt = self.format == Some(Format::Rules);
        let td = self.rs.tables[table.idx()].get_or_insert_with(TableData::default);
        // Consecutive rules usually append to the same chain: skip the hash lookup.
        let cached = match self.last_chain {
            Some((t, id)) if t == table.idx() => {
                same_or_next(&td.chains, id, chain_tok.s).or_else(|| td.chain_id(chain_tok.s))
            }
            _ => td.chain_id(chain_tok.s),
        };
        match cached {
            Some(id) => Ok(id),
            None if rules_fmt && valid_chain_name(chain_tok.s) => {
                self.diags.push(Diagnostic {
                    source: SourceRef {
                        file: self.file.clone(),
                        line: ctx.line_no,
                    },
                    message: format!(
                        "chain `{}` is used without `-N {}`; created (the output looks filtered)",
                        chain_tok.s, chain_tok.s
                    ),
                });
                Ok(td.intern(chain_tok.s))
            }
            None => Err(ctx.err_tok(
                &chain_tok,
                format!(
                    "a chain declared in table {} (`:NAME` or -N) before its rules",
                    table.name()
                ),
            )),
        }
    }

    /// `-N CHAIN`.
    fn new_chain(&mut self, ctx: &Ctx, table: Table, toks: &[Tok]) -> Result<(), ParseError> {
        let rules_fmt = self.format == Some(Format::Rules);
        let name = toks
            .get(1)
            .copied()
            .ok_or_else(|| ctx.err_eol("a chain name"))?;
        if !valid_chain_name(name.s) || crate::rule::builtin_chains(table).contains(&name.s) {
            return Err(ctx.err_tok(&name, "a user-defined chain name"));
        }
        if let Some(extra) = toks.get(2) {
            return Err(ctx.err_tok(extra, "end of line after the chain name"));
        }
        let td = self.rs.tables[table.idx()].get_or_insert_with(TableData::default);
        // iptables-restore (legacy) refuses `-N` of a chain that exists ("line N
        // failed"); iptables -S never prints one twice.
        let block_start = if rules_fmt { 0 } else { self.table_line };
        if let Some(prev) = td
            .chain_id(name.s)
            .and_then(|id| declared_in_block(&td.chains[id as usize], self.file_idx, block_start))
        {
            return Err(ctx.err_tok(
                &name,
                format!("a chain not declared yet in this table (declared on line {prev})"),
            ));
        }
        let id = td.intern(name.s);
        td.chains[id as usize].decl = Some((self.file_idx, ctx.line_no));
        Ok(())
    }

    /// `-P CHAIN POLICY [-c packets bytes]`.
    fn set_policy(&mut self, ctx: &Ctx, table: Table, toks: &[Tok]) -> Result<(), ParseError> {
        let name = toks
            .get(1)
            .copied()
            .ok_or_else(|| ctx.err_eol("a built-in chain name"))?;
        if !crate::rule::builtin_chains(table).contains(&name.s) {
            return Err(ctx.err_tok(&name, format!("a built-in chain of table {}", table.name())));
        }
        let pol = toks
            .get(2)
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
        let mut k = 3;
        if toks.get(k).is_some_and(|t| t.s == "-c") {
            k += 3;
        }
        if let Some(extra) = toks.get(k) {
            return Err(ctx.err_tok(extra, "end of line after the policy"));
        }
        let td = self.rs.tables[table.idx()].get_or_insert_with(TableData::default);
        let id = td.intern(name.s);
        let c = &mut td.chains[id as usize];
        c.policy = Some(verdict);
        c.decl = Some((self.file_idx, ctx.line_no));
        Ok(())
    }

    /// `-F`, `-X` or `-Z` in restore input, as iptables-restore 1.8.9 (legacy) checks them with
    /// --test: the named chain must exist; `-X` only deletes an empty user chain no rule jumps
    /// to; without a chain name they act on every chain.
    fn flush_delete_zero(
        &mut self,
        ctx: &Ctx,
        table: Table,
        toks: &[Tok],
    ) -> Result<(), ParseError> {
        let cmd = toks[0];
        let td = self.rs.tables[table.idx()].get_or_insert_with(TableData::default);
        if let Some(extra) = toks.get(2) {
            return Err(ctx.err_tok(extra, "end of line after the chain name"));
        }
        let named = match toks.get(1) {
            Some(c) => Some((
                *c,
                td.chain_id(c.s)
                    .ok_or_else(|| ctx.err_tok(c, format!("a chain of table {}", table.name())))?,
            )),
            None => None,
        };
        self.last_chain = None;
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
            _ => delete_chains(ctx, td, table, cmd, named)?,
        }
        Ok(())
    }

    /// The end of the text: no table left open, no rule jumping to a chain declared after it
    /// (save text), then each table touched gets its targets resolved, is checked for jump
    /// loops, and is indexed. `line_no`: the text's last line.
    fn finish(self, line_no: u32) -> Result<Vec<Diagnostic>, ParseError> {
        let Reader {
            rs,
            file,
            format,
            table,
            table_line,
            touched,
            mut diags,
            pending_targets,
            ..
        } = self;
        if format == Some(Format::Save) {
            if let Some(t) = table {
                let n = line_no.max(1);
                return Err(ParseError {
                    file: file.clone(),
                    line: n,
                    column: 1,
                    expected: format!(
                        "COMMIT to end table {} opened on line {}",
                        t.name(),
                        table_line
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
            if touched[t.idx()] {
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
}

/// `-X [CHAIN]` (`named`: the chain given, and its id): delete the chain, or every user chain.
fn delete_chains(
    ctx: &Ctx,
    td: &mut TableData,
    table: Table,
    cmd: Tok,
    named: Option<(Tok, u32)>,
) -> Result<(), ParseError> {
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
            c.rules
                .iter()
                .any(|r| matches!(r.target, Target::Jump(x) | Target::Goto(x) if x == k))
        });
        if referenced {
            return Err(ctx.err_tok(
                &at,
                format!("a chain no rule jumps to (a rule jumps to `{}`)", c.name),
            ));
        }
        remove_chain(td, k);
    }
    Ok(())
}

/// A rule of save text whose `-j`/`-g` (tokens `toks`, `cmd` the line's command) names `name`,
/// no chain declared so far: an error if the chain is declared further down.
fn pending_target(
    ctx: &Ctx,
    table: Table,
    toks: &[Tok],
    cmd: Tok,
    name: &str,
) -> (Table, Box<str>, ParseError) {
    let tok = toks
        .windows(2)
        .find(|w| matches!(w[0].s, "-j" | "--jump" | "-g" | "--goto") && w[1].s == name)
        .map(|w| w[1])
        .unwrap_or(cmd);
    (
        table,
        name.into(),
        ctx.err_tok(
            &tok,
            "a target, or a chain declared before this rule (iptables-restore resolves it when it reads the rule)",
        ),
    )
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
            let rc = RuleCtx {
                ctx: &ctx,
                chains: by_name,
                table: env.table,
                v6: env.family == Family::Ipv6,
            };
            let rule = save_rule(env, &rc, &toks, line_start, matches, &mut scratch, &mut out)?;
            out.rules.push((chain_id, rule));
        }
        line_no += 1;
        offset += raw_line.len() + 1;
    }
    out.stop = offset;
    out.stop_line = line_no;
    Ok(out)
}

/// The rule of a save-format `-A CHAIN ...` line (tokens `toks`; the line starts at byte
/// `line_start` of the text), its matches pushed to `matches`; a `-j`/`-g` to a chain not
/// declared yet is remembered in `out.pending` (an error if the chain is declared further
/// down).
fn save_rule(
    env: &Appends,
    rc: &RuleCtx,
    toks: &[Tok],
    line_start: usize,
    matches: &mut Vec<Match>,
    scratch: &mut Scratch,
    out: &mut AppendOut,
) -> Result<Rule, ParseError> {
    let j = 2;
    let (ctx, cmd) = (rc.ctx, toks[0]);
    let text_start = line_start + cmd.off;
    let text_len = ctx.line.trim_end().len().saturating_sub(cmd.off);
    let m_start = matches.len() as u32;
    let target = parse_rule(rc, &toks[j..], matches, scratch, &mut out.diags)?;
    if let Target::Unresolved { name, .. } = &target {
        if !rc.chains.contains_key(name) {
            out.pending
                .push(pending_target(ctx, env.table, &toks[j..], cmd, name));
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

/// What reading a rule's options needs besides its tokens: the line (for errors and
/// diagnostics), the chains of the table declared so far (a `-j`/`-g` to one of them is
/// resolved at once), the table and the family.
struct RuleCtx<'c, 'a> {
    ctx: &'c Ctx<'a>,
    chains: &'c ChainMap,
    table: Table,
    v6: bool,
}

impl RuleCtx<'_, '_> {
    /// The rule's line, for a diagnostic.
    fn src(&self) -> SourceRef {
        SourceRef {
            file: self.ctx.file.clone(),
            line: self.ctx.line_no,
        }
    }
}

/// The options of a rule (the tokens after `-A CHAIN`): its matches pushed to `out` (the
/// IP-header ones first), its target returned.
fn parse_rule(
    rc: &RuleCtx,
    toks: &[Tok],
    out: &mut Vec<Match>,
    scratch: &mut Scratch,
    diags: &mut Vec<Diagnostic>,
) -> Result<Target, ParseError> {
    let ctx = rc.ctx;
    let mut cur = Cur { toks, i: 0 };
    scratch.ipmatches.clear();
    let mut st = RuleState {
        mod_start: out.len(),
        out,
        ip: &mut scratch.ipmatches,
        diags,
        modules: SmallModules::default(),
        acc: None,
        proto: None,
        target: None,
        target_name: None,
        tstate: TargetState::new(rc.v6),
        opaque_reported: false,
        seen_generic: 0,
    };
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
        match generic_short(opt.s) {
            Some(g) => st.generic_opt(rc, &mut cur, g, opt, neg)?,
            None => st.extension_opt(rc, &mut cur, opt, neg)?,
        }
    }
    st.finish(rc)
}

/// A rule's options read so far.
struct RuleState<'r, 'a> {
    out: &'r mut Vec<Match>,
    /// Where the rule's matches start in `out`.
    mod_start: usize,
    /// The IP-header matches (`-s`, `-d`, `-p`, `-i`, `-o`, `-f`), put before the extensions'
    /// at the end (the kernel tests them first).
    ip: &'r mut Vec<Match>,
    diags: &'r mut Vec<Diagnostic>,
    /// Loaded modules, most recent last (no allocation unless a rule loads more than 8).
    modules: SmallModules<'a>,
    acc: Option<Acc>,
    proto: Option<(u8, bool)>,
    /// The target of a `-g` (known when it is read).
    target: Option<Target>,
    target_name: Option<(Tok<'a>, TargetKind)>,
    tstate: TargetState,
    opaque_reported: bool,
    /// The generic options given so far (each at most once), one bit each.
    seen_generic: u16,
}

impl<'a> RuleState<'_, 'a> {
    /// A generic option (`g`, the short form of `opt`): `-s`, `-d`, `-p`, `-i`, `-o`, `-f`,
    /// `-c`, `-4`/`-6`, `-m`, `-j` and `-g`.
    fn generic_opt(
        &mut self,
        rc: &RuleCtx,
        cur: &mut Cur<'_, 'a>,
        g: &str,
        opt: Tok<'a>,
        mut neg: bool,
    ) -> Result<(), ParseError> {
        let (ctx, v6) = (rc.ctx, rc.v6);
        // Old syntax `-s ! addr`.
        if matches!(g, "-s" | "-d" | "-p" | "-i" | "-o") && cur.peek().is_some_and(|t| t.s == "!") {
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
            if self.seen_generic & bit != 0 {
                return Err(ctx.err_tok(&opt, format!("at most one `{g}` option")));
            }
            self.seen_generic |= bit;
        }
        match g {
            "-s" | "-d" => {
                let a = cur.arg(ctx, "an address")?;
                let c =
                    parse_cidr(a.s, v6).ok_or_else(|| ctx.err_tok(&a, addr_expect(v6, true)))?;
                self.ip.push(if g == "-s" {
                    Match::Src(c, neg)
                } else {
                    Match::Dst(c, neg)
                });
            }
            "-p" => {
                let a = cur.arg(ctx, "a protocol")?;
                if a.s.eq_ignore_ascii_case("all") || a.s == "0" {
                    // `-p all` matches everything; `! -p all` nothing.
                    self.proto = Some((0, neg));
                    if neg {
                        self.ip.push(Match::Proto(0, true));
                    }
                } else {
                    let p = Proto::parse(a.s).ok_or_else(|| {
                        ctx.err_tok(&a, "a protocol (tcp, udp, sctp, icmp, all, or a number)")
                    })?;
                    self.proto = Some((p.number(), neg));
                    self.ip.push(Match::Proto(p.number(), neg));
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
                self.ip.push(if g == "-i" {
                    Match::InIface(pat, neg)
                } else {
                    Match::OutIface(pat, neg)
                });
            }
            "-f" => self.ip.push(Match::Fragment(neg)),
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
            "-m" => self.load_module(rc, cur, opt, neg)?,
            "-j" | "-g" => self.name_target(rc, cur, g, opt, neg)?,
            _ => {}
        }
        Ok(())
    }

    /// `-m NAME`: the previous module's gathered options become its match; an unsupported
    /// module makes the rule opaque (reported once per rule).
    fn load_module(
        &mut self,
        rc: &RuleCtx,
        cur: &mut Cur<'_, 'a>,
        opt: Tok,
        neg: bool,
    ) -> Result<(), ParseError> {
        let ctx = rc.ctx;
        if neg {
            return Err(ctx.err_tok(&opt, "an option that can be negated (not -m)"));
        }
        let a = cur.arg(ctx, "a match module name")?;
        finish_acc(ctx, &mut self.acc, self.out)?;
        let kind = module_kind(a.s);
        if kind == Module::Opaque && !self.opaque_reported {
            self.diags.push(Diagnostic {
                source: rc.src(),
                message: format!(
                    "unsupported match `-m {}`; the rule is kept opaque and a packet reaching it gets UNKNOWN",
                    a.s
                ),
            });
            self.opaque_reported = true;
        }
        if let Some(acc) = start_module(kind, a, self.out) {
            self.acc = Some(acc);
        }
        self.modules.push((kind, a.s));
        Ok(())
    }

    /// `-j TARGET` or `-g CHAIN` (one per rule; the chain of a `-g` is looked up at once).
    fn name_target(
        &mut self,
        rc: &RuleCtx,
        cur: &mut Cur<'_, 'a>,
        g: &str,
        opt: Tok,
        neg: bool,
    ) -> Result<(), ParseError> {
        let ctx = rc.ctx;
        if neg {
            return Err(ctx.err_tok(&opt, "an option that can be negated (not -j/-g)"));
        }
        if self.target_name.is_some() {
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
        self.target_name = Some((a, kind));
        if g == "-g" {
            self.target = Some(chain_target(rc.chains, rc.table, a.s, true));
        }
        Ok(())
    }

    /// An option of the target (once one is named, its options take precedence), else of the
    /// most recently loaded module that takes it, else of the implicit protocol module of `-p`.
    fn extension_opt(
        &mut self,
        rc: &RuleCtx,
        cur: &mut Cur<'_, 'a>,
        opt: Tok,
        neg: bool,
    ) -> Result<(), ParseError> {
        if let Some((_, kind)) = self.target_name {
            if target_accepts(kind, opt.s) {
                return parse_target_opt(rc, kind, opt, neg, cur, &mut self.tstate);
            }
        }
        let mut owner = self
            .modules
            .iter_rev()
            .find(|(m, _)| module_accepts(*m, opt.s))
            .map(|(m, _)| m);
        if owner.is_none() {
            if let Some((p, false)) = self.proto {
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
            let expected = match (&self.target_name, self.modules.last()) {
                (Some((tn, _)), _) => format!("an option of target {}", tn.s),
                (None, Some((_, name))) => format!("an option of match `-m {name}`"),
                (None, None) => "an iptables option (-s, -d, -p, -i, -o, -m, -j, -g)".to_string(),
            };
            return Err(rc.ctx.err_tok(&opt, expected));
        };
        parse_module_opt(rc, m, opt, neg, cur, self.out, &mut self.acc)
    }

    /// The end of the rule: the last module's gathered options become its match, the IP-header
    /// matches go first, and the target is made from its options.
    fn finish(mut self, rc: &RuleCtx) -> Result<Target, ParseError> {
        finish_acc(rc.ctx, &mut self.acc, self.out)?;
        // IP-header matches first (the kernel tests them before extensions).
        if !self.ip.is_empty() {
            let n = self.ip.len();
            self.out.append(self.ip);
            self.out[self.mod_start..].rotate_right(n);
        }
        Ok(match (self.target, self.target_name) {
            (Some(t), _) => t,
            (None, None) => Target::None,
            (None, Some((tn, kind))) => {
                finish_target(rc, kind, tn, self.tstate, self.proto, self.diags)?
            }
        })
    }
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

pub(crate) use crate::index::ChainMap;
