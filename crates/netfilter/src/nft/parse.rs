//! The nft text reader: `nft list ruleset` output and `nft -f` command files.
//!
//! Grammar covered (nft 1.0.x): `table FAMILY NAME { ... }` blocks with `chain`, `set`, `map`,
//! `comment`, `flags`; the commands `add|create table|chain|set|map|element|rule`, `insert
//! rule`, `flush ruleset|table|chain`. Rule statements are read into [`Stmt`]s; an expression
//! kubepath does not model but that nft knows is kept opaque with a diagnostic; anything nft
//! itself would reject is a [`ParseError`] at its line and column.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::lex::{lex, Tok, Token};
use super::{
    Atom, BaseChain, BitOp, ChainType, CmpOp, DataType, Element, Expr, MapValue, NatSpec, NftChain,
    NftFamily, NftHook, NftRule, NftRuleset, NftSet, NftTable, NftVerdict, SetRef, Stmt,
};
use crate::types::{Diagnostic, ParseError, Proto, SourceRef};

/// Keywords nft knows as the start of an expression or statement that kubepath does not
/// model: a rule using one is kept, opaque, with a diagnostic.
const KNOWN_UNMODELLED: &[&str] = &[
    "ether",
    "vlan",
    "arp",
    "icmp",
    "icmpv6",
    "igmp",
    "esp",
    "ah",
    "comp",
    "udplite",
    "dccp",
    "rt",
    "rt0",
    "rt2",
    "srh",
    "hbh",
    "frag",
    "dst",
    "mh",
    "exthdr",
    "socket",
    "osf",
    "ipsec",
    "quota",
    "synproxy",
    "tproxy",
    "queue",
    "fwd",
    "dup",
    "flow",
    "xt",
    "secmark",
    "symhash",
    "jhash",
    "iif",
    "oif",
    "iiftype",
    "oiftype",
    "pkttype",
    "cpu",
    "skuid",
    "skgid",
    "rtclassid",
    "ibrname",
    "obrname",
    "meter",
    "ct",
    "meta",
    "ip",
    "ip6",
    "tcp",
    "udp",
    "sctp",
    "th",
    "gre",
    "geneve",
    "vxlan",
    "cgroupv2",
    "inner",
    "last",
    "set",
    "tcpopt",
    "priority",
    "nftrace",
    "iifgroup",
    "oifgroup",
    "time",
    "day",
    "hour",
];

/// Resolve a symbolic chain priority (nft's `raw`, `mangle`, `dstnat`, `filter`, `security`,
/// `srcnat` for the ip/ip6/inet families; the bridge family's own `dstnat`, `filter`, `out`,
/// `srcnat` values are in [`std_priority_of`]).
fn std_priority(name: &str) -> Option<i32> {
    Some(match name {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        "out" => 100,
        _ => return None,
    })
}

/// A symbolic priority's value in `family` on `hook`, or why nft refuses the name there.
/// nft (src/rule.c, `std_prio_family_hook_compat`) accepts a name only where it fits: `raw`,
/// `mangle`, `filter`, `security` on any hook of ip/ip6/inet; `dstnat` on prerouting and
/// `srcnat` on postrouting; `out` in the bridge family only. nft 1.0.6 (measured in a
/// namespace) refuses `dstnat` on output and `srcnat` on input; later releases accept them
/// (nftables commit "rule: allow dstnat/srcnat in output/input", netfilter bugzilla 1694) and
/// list kube-proxy's `nat-output` chain (-100) as `priority dstnat`, so those two are read.
/// The bridge family's names have its own values (`NF_BR_PRI_*`).
pub(crate) fn std_priority_of(name: &str, family: NftFamily, hook: NftHook) -> Result<i32, String> {
    use NftHook::*;
    if family == NftFamily::Bridge {
        return match (name, hook) {
            ("dstnat", Prerouting) => Ok(-300),
            ("filter", _) => Ok(-200),
            ("out", Output) => Ok(100),
            ("srcnat", Postrouting) => Ok(300),
            _ => Err(format!(
                "`{name}` is not a bridge priority name on the {} hook (nft refuses it)",
                hook.name()
            )),
        };
    }
    let fits = match name {
        "raw" | "mangle" | "security" => true,
        "filter" => true,
        "dstnat" => matches!(hook, Prerouting | Output),
        "srcnat" => matches!(hook, Postrouting | Input),
        _ => false,
    };
    match std_priority(name) {
        Some(v) if fits => Ok(v),
        _ => Err(format!(
            "`{name}` is not a priority name nft accepts on the {} hook of the {family} family (dstnat: prerouting or output; srcnat: postrouting or input; raw, mangle, filter, security: any hook)",
            hook.name()
        )),
    }
}

/// Port of a well-known service name (nft consults /etc/services; these are the ones rulesets
/// use).
pub(crate) fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ssh" => 22,
        "domain" => 53,
        "http" => 80,
        "https" => 443,
        "ntp" => 123,
        "bootps" => 67,
        "bootpc" => 68,
        "smtp" => 25,
        "telnet" => 23,
        "ftp" => 21,
        "kerberos" => 88,
        "bgp" => 179,
        _ => return None,
    })
}

pub(crate) fn ct_state_bit(name: &str) -> Option<u32> {
    Some(match name {
        "invalid" => 1,
        "established" => 2,
        "related" => 4,
        "new" => 8,
        "untracked" => 64,
        _ => return None,
    })
}

/// TCP header flag bits (RFC 793, RFC 3168), by nft's names.
pub(crate) fn tcp_flag_bit(name: &str) -> Option<u32> {
    Some(match name {
        "fin" => 0x01,
        "syn" => 0x02,
        "rst" => 0x04,
        "psh" => 0x08,
        "ack" => 0x10,
        "urg" => 0x20,
        "ecn" => 0x40,
        "cwr" => 0x80,
        _ => return None,
    })
}

pub(crate) fn fib_type(name: &str) -> Option<u32> {
    Some(match name {
        "unspec" => 0,
        "unicast" => 1,
        "local" => 2,
        "broadcast" => 3,
        "anycast" => 4,
        "multicast" => 5,
        "blackhole" => 6,
        "unreachable" => 7,
        "prohibit" => 8,
        _ => return None,
    })
}

pub(crate) fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn addr_u128(a: IpAddr) -> u128 {
    crate::types::addr_to_u128(a)
}

struct P<'a> {
    file: Arc<str>,
    text: &'a str,
    toks: Vec<Token>,
    pos: usize,
    diags: Vec<Diagnostic>,
    /// Matches nft adds in front of the statement being read (the implicit protocol
    /// dependency of a header field: `icmp type` only on ICMP packets).
    deps: Vec<Stmt>,
}

type R<T> = Result<T, ParseError>;

/// A reference checked once the whole text is read (nft resolves them per transaction).
enum Pending {
    Chain {
        table: usize,
        name: String,
        at: (u32, u32),
    },
    Set {
        table: usize,
        name: String,
        at: (u32, u32),
    },
}

struct Ctx<'r> {
    rs: &'r mut NftRuleset,
    pending: Vec<Pending>,
}

pub(crate) fn parse_into(rs: &mut NftRuleset, file: &str, text: &str) -> R<Vec<Diagnostic>> {
    let file: Arc<str> = Arc::from(file);
    let toks = lex(&file, text)?;
    let mut p = P {
        file,
        text,
        toks,
        pos: 0,
        diags: Vec::new(),
        deps: Vec::new(),
    };
    let mut cx = Ctx {
        rs,
        pending: Vec::new(),
    };
    p.top(&mut cx)?;
    validate(cx.rs)?;
    Ok(p.diags)
}

/// The kernel's deepest chain: a base chain is level 0 and `nft_chain_validate` refuses to
/// enter a chain at `NFT_JUMP_STACK_SIZE` (16) levels (EMLINK, "Too many links").
const JUMP_STACK: usize = 16;

fn rule_err(r: &NftRule, expected: String) -> ParseError {
    ParseError {
        file: r.source.file.clone(),
        line: r.source.line,
        column: r.column,
        expected,
        found: format!("`{}`", r.text),
    }
}

/// The verdicts a rule can take to another chain (`jump`/`goto`, also in verdict maps).
fn rule_targets(t: &NftTable, r: &NftRule) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |v: &NftVerdict| {
        if let NftVerdict::Jump(c) | NftVerdict::Goto(c) = v {
            out.push(c.clone());
        }
    };
    for st in &r.stmts {
        match st {
            Stmt::Verdict(v) => add(v),
            Stmt::Vmap { map, .. } => {
                let set = match map {
                    SetRef::Named(n) => t.set(n),
                    SetRef::Anon(s) => Some(&**s),
                };
                for el in set.iter().flat_map(|s| &s.elements) {
                    if let Some(MapValue::Verdict(v)) = &el.value {
                        add(v);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// What the kernel (and nft) refuse when the transaction is loaded, as `nft -f` reports it:
/// a jump to a base chain, a loop or more than 15 levels of jumps from a base chain, nat
/// statements in chains reached from a base chain whose type or hook cannot have them, and a
/// NAT port range without a transport protocol match earlier in the rule (nft: "transport
/// protocol mapping is only valid after transport protocol match").
pub(crate) fn validate(rs: &NftRuleset) -> R<()> {
    for t in &rs.tables {
        for c in &t.chains {
            for r in &c.rules {
                for target in rule_targets(t, r) {
                    if t.chain(&target).is_some_and(|x| x.base.is_some()) {
                        return Err(rule_err(
                            r,
                            format!("a jump to a regular chain (`{target}` is a base chain: the kernel refuses it, EOPNOTSUPP)"),
                        ));
                    }
                }
                let mut l4 = false;
                for st in &r.stmts {
                    match st {
                        Stmt::Cmp { left, .. } | Stmt::Lookup { left, .. } => {
                            l4 |= sets_transport(left)
                        }
                        Stmt::Dnat(s) | Stmt::Snat(s) | Stmt::Masquerade(s)
                            if s.port.is_some() && !l4 =>
                        {
                            return Err(rule_err(
                                r,
                                "a transport protocol match (`tcp dport`, `meta l4proto tcp`, ...) before a NAT port".into(),
                            ));
                        }
                        Stmt::Redirect(Some(_)) if !l4 => {
                            return Err(rule_err(
                                r,
                                "a transport protocol match (`tcp dport`, `meta l4proto tcp`, ...) before a NAT port".into(),
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
        for c in &t.chains {
            let Some(b) = &c.base else { continue };
            let mut path: Vec<&str> = vec![c.name.as_str()];
            walk_chain(t, c, b, &mut path, &mut HashMap::new())?;
        }
    }
    Ok(())
}

fn sets_transport(e: &Expr) -> bool {
    match e {
        Expr::L4proto { .. } => true,
        Expr::Sport { proto } | Expr::Dport { proto } => proto.is_some(),
        Expr::Concat(v) => v.iter().any(sets_transport),
        _ => false,
    }
}

fn walk_chain<'t>(
    t: &'t NftTable,
    c: &'t NftChain,
    base: &BaseChain,
    path: &mut Vec<&'t str>,
    done: &mut HashMap<&'t str, usize>,
) -> R<()> {
    // A chain already checked from this depth or a deeper one has nothing new to say (its
    // chains are acyclic, else that check failed).
    if done.get(c.name.as_str()).is_some_and(|&d| path.len() <= d) {
        return Ok(());
    }
    let nat = base.kind == ChainType::Nat;
    for r in &c.rules {
        for st in &r.stmts {
            let ok = match st {
                Stmt::Dnat(_) | Stmt::Redirect(_) => {
                    nat && matches!(base.hook, NftHook::Prerouting | NftHook::Output)
                }
                Stmt::Snat(_) => nat && matches!(base.hook, NftHook::Postrouting | NftHook::Input),
                Stmt::Masquerade(_) => nat && base.hook == NftHook::Postrouting,
                _ => true,
            };
            if !ok {
                let what = match st {
                    Stmt::Dnat(_) => "dnat",
                    Stmt::Redirect(_) => "redirect",
                    Stmt::Snat(_) => "snat",
                    _ => "masquerade",
                };
                return Err(rule_err(
                    r,
                    format!(
                        "no `{what}` here: it is reached from a {} chain on {} (the kernel refuses it, EOPNOTSUPP)",
                        match base.kind {
                            ChainType::Nat => "nat",
                            ChainType::Filter => "filter",
                            ChainType::Route => "route",
                        },
                        base.hook.name()
                    ),
                ));
            }
        }
        for target in rule_targets(t, r) {
            let Some(next) = t.chain(&target) else {
                continue;
            };
            if path.contains(&next.name.as_str()) {
                return Err(rule_err(
                    r,
                    format!("no jump loop (`{target}` is already on the path {}: the kernel refuses it, \"Too many links\")", path.join(" -> ")),
                ));
            }
            if path.len() >= JUMP_STACK {
                return Err(rule_err(
                    r,
                    format!("at most {} levels of jumps below a base chain (path {} -> {target}: the kernel refuses it, \"Too many links\")", JUMP_STACK - 1, path.join(" -> ")),
                ));
            }
            path.push(next.name.as_str());
            walk_chain(t, next, base, path, done)?;
            path.pop();
        }
    }
    done.insert(c.name.as_str(), path.len());
    Ok(())
}

/// nft resolves chain and set names when a command runs: within a `table { ... }` block
/// forward references work, across `add` commands a name must already exist.
fn resolve(p: &P, cx: &mut Ctx) -> R<()> {
    for pd in std::mem::take(&mut cx.pending) {
        match pd {
            Pending::Chain { table, name, at } => {
                if cx.rs.tables[table].chain(&name).is_none() {
                    return Err(p.err_at(at, "the name of a chain of the table", &name));
                }
            }
            Pending::Set { table, name, at } => {
                if cx.rs.tables[table].set(&name).is_none() {
                    return Err(p.err_at(at, "the name of a set or map of the table", &name));
                }
            }
        }
    }
    Ok(())
}

impl<'a> P<'a> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }

    fn cur(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.cur().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn err(&self, expected: &str) -> ParseError {
        let t = self.cur();
        ParseError {
            file: self.file.clone(),
            line: t.line,
            column: t.col,
            expected: expected.to_string(),
            found: t.tok.describe(),
        }
    }

    fn err_at(&self, at: (u32, u32), expected: &str, found: &str) -> ParseError {
        ParseError {
            file: self.file.clone(),
            line: at.0,
            column: at.1,
            expected: expected.to_string(),
            found: format!("`{found}`"),
        }
    }

    fn src(&self, line: u32) -> SourceRef {
        SourceRef {
            file: self.file.clone(),
            line,
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.is_word(w) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str) -> R<()> {
        if self.eat_word(w) {
            Ok(())
        } else {
            Err(self.err(&format!("`{w}`")))
        }
    }

    fn word(&mut self, what: &str) -> R<(String, (u32, u32))> {
        let t = self.cur().clone();
        match &t.tok {
            Tok::Word(w) => {
                self.bump();
                Ok((w.clone(), (t.line, t.col)))
            }
            _ => Err(self.err(what)),
        }
    }

    /// A name: a bare word or a quoted string.
    fn name(&mut self, what: &str) -> R<(String, (u32, u32))> {
        let t = self.cur().clone();
        match &t.tok {
            Tok::Word(w) if w != "." => {
                self.bump();
                Ok((w.clone(), (t.line, t.col)))
            }
            Tok::Str(s) => {
                self.bump();
                Ok((s.clone(), (t.line, t.col)))
            }
            _ => Err(self.err(what)),
        }
    }

    fn string(&mut self, what: &str) -> R<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            Tok::Word(w) => {
                self.bump();
                Ok(w)
            }
            _ => Err(self.err(what)),
        }
    }

    fn expect(&mut self, t: Tok, what: &str) -> R<()> {
        if *self.peek() == t {
            self.bump();
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn skip_nl(&mut self) {
        while matches!(self.peek(), Tok::Newline) {
            self.bump();
        }
    }

    fn skip_sep(&mut self) {
        while matches!(self.peek(), Tok::Newline | Tok::Semi) {
            self.bump();
        }
    }

    /// End of a command: newline, `;` or end of file.
    fn end_cmd(&mut self) -> R<()> {
        match self.peek() {
            Tok::Newline | Tok::Semi => {
                self.bump();
                Ok(())
            }
            Tok::Eof => Ok(()),
            _ => Err(self.err("end of line or `;`")),
        }
    }

    fn family_opt(&mut self) -> NftFamily {
        if let Tok::Word(w) = self.peek() {
            if let Some(f) = NftFamily::parse(w) {
                // `add table ip` alone would make `ip` the name: a family needs a name after.
                if matches!(self.peek_at(1), Tok::Word(_) | Tok::Str(_)) {
                    self.bump();
                    return f;
                }
            }
        }
        NftFamily::Ip
    }

    fn top(&mut self, cx: &mut Ctx) -> R<()> {
        loop {
            resolve(self, cx)?;
            self.skip_sep();
            let (kw, _) = match self.peek() {
                Tok::Eof => return Ok(()),
                Tok::Word(_) => self.word("a command")?,
                _ => return Err(self.err("a command (`table`, `add`, `flush`, ...)")),
            };
            match kw.as_str() {
                "table" => {
                    let t = self.table_head(cx)?;
                    if !matches!(self.peek(), Tok::LBrace) {
                        return Err(self.err("`{`"));
                    }
                    self.table_block(cx, t)?;
                    self.end_cmd()?;
                }
                "add" | "create" | "insert" => {
                    let (obj, at) = self.word("table, chain, rule, set, map or element")?;
                    match (kw.as_str(), obj.as_str()) {
                        (_, "rule") => self.cmd_rule(cx, kw == "insert")?,
                        ("insert", _) => {
                            return Err(self.err_at(at, "`rule`", &obj));
                        }
                        (_, "table") => {
                            let t = self.table_head(cx)?;
                            if matches!(self.peek(), Tok::LBrace) {
                                self.table_block(cx, t)?;
                            }
                        }
                        (_, "chain") => {
                            let t = self.table_ref(cx)?;
                            let (name, at) = self.name("a chain name")?;
                            let line = at.0;
                            let ci = self.declare_chain(cx, t, &name, line);
                            if matches!(self.peek(), Tok::LBrace) {
                                self.bump();
                                self.chain_body(cx, t, ci)?;
                            }
                        }
                        (_, "set") | (_, "map") => {
                            let t = self.table_ref(cx)?;
                            let (name, at) = self.name("a set name")?;
                            if !matches!(self.peek(), Tok::LBrace) {
                                return Err(self.err("`{`"));
                            }
                            self.bump();
                            self.set_body(cx, t, name, obj == "map", at.0)?;
                        }
                        (_, "element") => {
                            let t = self.table_ref(cx)?;
                            let (name, at) = self.name("a set name")?;
                            let Some(&si) = cx.rs.tables[t].set_ix.get(&name) else {
                                return Err(self.err_at(at, "the name of an existing set", &name));
                            };
                            if !matches!(self.peek(), Tok::LBrace) {
                                return Err(self.err("`{`"));
                            }
                            self.bump();
                            let set = cx.rs.tables[t].sets[si].clone();
                            let els = self.elements(cx, t, &set)?;
                            cx.rs.tables[t].sets[si].elements.extend(els);
                        }
                        _ => {
                            return Err(self.err_at(
                                at,
                                "table, chain, rule, set, map or element",
                                &obj,
                            ))
                        }
                    }
                    self.end_cmd()?;
                }
                "flush" => {
                    let (obj, at) = self.word("ruleset, table or chain")?;
                    match obj.as_str() {
                        "ruleset" => {
                            if let Tok::Word(w) = self.peek() {
                                if NftFamily::parse(w).is_some() {
                                    self.bump();
                                }
                            }
                            cx.rs.tables.clear();
                        }
                        "table" => {
                            let t = self.table_ref(cx)?;
                            for c in &mut cx.rs.tables[t].chains {
                                c.rules.clear();
                            }
                        }
                        "chain" => {
                            let t = self.table_ref(cx)?;
                            let (name, at) = self.name("a chain name")?;
                            let Some(&ci) = cx.rs.tables[t].chain_ix.get(&name) else {
                                return Err(self.err_at(at, "an existing chain", &name));
                            };
                            cx.rs.tables[t].chains[ci].rules.clear();
                        }
                        _ => return Err(self.err_at(at, "ruleset, table or chain", &obj)),
                    }
                    self.end_cmd()?;
                }
                _ => {
                    self.pos -= 1;
                    return Err(self.err("a command (`table`, `add`, `insert`, `flush`)"));
                }
            }
        }
    }

    /// `[FAMILY] NAME` of a table, created if new.
    fn table_head(&mut self, cx: &mut Ctx) -> R<usize> {
        let fam = self.family_opt();
        let (name, _) = self.name("a table name")?;
        if let Some(i) = cx
            .rs
            .tables
            .iter()
            .position(|t| t.family == fam && t.name == name)
        {
            return Ok(i);
        }
        cx.rs.tables.push(NftTable {
            family: fam,
            name,
            chains: Vec::new(),
            sets: Vec::new(),
            chain_ix: HashMap::new(),
            set_ix: HashMap::new(),
        });
        Ok(cx.rs.tables.len() - 1)
    }

    /// `[FAMILY] NAME` of an existing table.
    fn table_ref(&mut self, cx: &mut Ctx) -> R<usize> {
        let fam = self.family_opt();
        let (name, at) = self.name("a table name")?;
        cx.rs
            .tables
            .iter()
            .position(|t| t.family == fam && t.name == name)
            .ok_or_else(|| self.err_at(at, &format!("an existing {fam} table"), &name))
    }

    fn declare_chain(&mut self, cx: &mut Ctx, t: usize, name: &str, line: u32) -> usize {
        let tab = &mut cx.rs.tables[t];
        if let Some(&i) = tab.chain_ix.get(name) {
            return i;
        }
        let seq = cx.rs.next_seq;
        cx.rs.next_seq += 1;
        let tab = &mut cx.rs.tables[t];
        tab.chains.push(NftChain {
            name: name.to_string(),
            base: None,
            rules: Vec::new(),
            source: self.src(line),
            seq,
        });
        tab.chain_ix.insert(name.to_string(), tab.chains.len() - 1);
        tab.chains.len() - 1
    }

    fn table_block(&mut self, cx: &mut Ctx, t: usize) -> R<()> {
        self.expect(Tok::LBrace, "`{`")?;
        loop {
            self.skip_sep();
            if matches!(self.peek(), Tok::RBrace) {
                self.bump();
                return Ok(());
            }
            let (kw, at) = self.word("chain, set, map, comment, flags or `}`")?;
            match kw.as_str() {
                "comment" => {
                    self.string("a comment string")?;
                }
                "flags" => {
                    self.flag_list()?;
                }
                "chain" => {
                    let (name, at) = self.name("a chain name")?;
                    let ci = self.declare_chain(cx, t, &name, at.0);
                    self.expect(Tok::LBrace, "`{`")?;
                    self.chain_body(cx, t, ci)?;
                }
                "set" | "map" => {
                    let (name, at) = self.name("a set name")?;
                    self.expect(Tok::LBrace, "`{`")?;
                    self.set_body(cx, t, name, kw == "map", at.0)?;
                }
                // Named stateful objects (`counter NAME { ... }`, firewalld's `ct helper NAME
                // { ... }` for its ftp service, ...): kept aside with a note; a rule that uses
                // one (`ct helper set "NAME"`, `counter name NAME`) is opaque on its own.
                "counter" | "quota" | "limit" | "secmark" | "synproxy" | "flowtable" | "ct" => {
                    let mut what = kw.clone();
                    if kw == "ct" {
                        let (k, at) = self.word("helper, timeout or expectation")?;
                        if !matches!(k.as_str(), "helper" | "timeout" | "expectation") {
                            return Err(self.err_at(at, "helper, timeout or expectation", &k));
                        }
                        what = format!("ct {k}");
                    }
                    let (name, _) = self.name("an object name")?;
                    self.expect(Tok::LBrace, "`{`")?;
                    let mut depth = 1usize;
                    while depth > 0 {
                        match self.peek() {
                            Tok::LBrace => depth += 1,
                            Tok::RBrace => depth -= 1,
                            Tok::Eof => return Err(self.err("`}`")),
                            _ => {}
                        }
                        self.bump();
                    }
                    self.diags.push(Diagnostic {
                        source: self.src(at.0),
                        message: format!(
                            "named object `{what} {name}` is not modelled (no effect on a packet by itself; a rule using it is opaque)"
                        ),
                    });
                }
                _ => {
                    return Err(self.err_at(
                        at,
                        "chain, set, map, a named object, comment, flags or `}`",
                        &kw,
                    ));
                }
            }
            self.item_end()?;
        }
    }

    fn flag_list(&mut self) -> R<Vec<String>> {
        let mut out = vec![self.word("a flag")?.0];
        while matches!(self.peek(), Tok::Comma) {
            self.bump();
            out.push(self.word("a flag")?.0);
        }
        Ok(out)
    }

    /// After `chain NAME {`: declarations and rules up to `}`.
    fn chain_body(&mut self, cx: &mut Ctx, t: usize, ci: usize) -> R<()> {
        let family = cx.rs.tables[t].family;
        loop {
            self.skip_sep();
            match self.peek().clone() {
                Tok::RBrace => {
                    self.bump();
                    return Ok(());
                }
                Tok::Word(w) if w == "type" => {
                    self.bump();
                    let (ty, at) = self.word("filter, nat or route")?;
                    let kind = match ty.as_str() {
                        "filter" => ChainType::Filter,
                        "nat" => ChainType::Nat,
                        "route" => ChainType::Route,
                        _ => return Err(self.err_at(at, "filter, nat or route", &ty)),
                    };
                    self.expect_word("hook")?;
                    let (h, at) = self.word("a hook")?;
                    let hook = NftHook::parse(&h)
                        .ok_or_else(|| self.err_at(at, "a hook (prerouting, input, ...)", &h))?;
                    if self.eat_word("device") {
                        self.string("a device name")?;
                    }
                    if self.eat_word("devices") {
                        self.expect(Tok::Op("="), "`=`")?;
                        self.skip_braced()?;
                    }
                    self.expect_word("priority")?;
                    let prio_at = (self.cur().line, self.cur().col);
                    let (named, priority) = self.priority()?;
                    let priority = match named {
                        // A name: its value depends on the family and hook, and nft refuses
                        // it where it does not fit.
                        Some((name, offset)) => match std_priority_of(&name, family, hook) {
                            Ok(v) => v.saturating_add(offset),
                            Err(why) => return Err(self.err_at(prio_at, &why, &name)),
                        },
                        None => priority,
                    };
                    // nf_tables_chain_parse_hook: a nat chain must run after conntrack
                    // (priority above NF_IP_PRI_CONNTRACK, -200), else EOPNOTSUPP.
                    if kind == ChainType::Nat && priority <= -200 {
                        return Err(self.err_at(
                            prio_at,
                            "a nat chain priority above -200 (conntrack's; the kernel refuses the chain, EOPNOTSUPP)",
                            &priority.to_string(),
                        ));
                    }
                    let ok = matches!(
                        (family, kind, hook),
                        (_, ChainType::Filter, _)
                            | (
                                NftFamily::Ip | NftFamily::Ip6 | NftFamily::Inet,
                                ChainType::Nat,
                                NftHook::Prerouting
                                    | NftHook::Input
                                    | NftHook::Output
                                    | NftHook::Postrouting
                            )
                            | (
                                NftFamily::Ip | NftFamily::Ip6 | NftFamily::Inet,
                                ChainType::Route,
                                NftHook::Output | NftHook::Prerouting
                            )
                    );
                    if !ok {
                        return Err(self.err_at(
                            at,
                            &format!("a hook the {ty} chain type supports in the {family} family"),
                            &h,
                        ));
                    }
                    let policy_drop = cx.rs.tables[t].chains[ci]
                        .base
                        .as_ref()
                        .is_some_and(|b| b.policy_drop);
                    cx.rs.tables[t].chains[ci].base = Some(BaseChain {
                        kind,
                        hook,
                        priority,
                        policy_drop,
                    });
                    self.end_decl()?;
                }
                Tok::Word(w) if w == "policy" => {
                    self.bump();
                    let (pol, at) = self.word("accept or drop")?;
                    let drop = match pol.as_str() {
                        "accept" => false,
                        "drop" => true,
                        _ => return Err(self.err_at(at, "accept or drop", &pol)),
                    };
                    match cx.rs.tables[t].chains[ci].base.as_mut() {
                        Some(b) => b.policy_drop = drop,
                        None => {
                            return Err(self.err_at(
                                at,
                                "a base chain (policy needs `type ... hook ...`)",
                                &pol,
                            ));
                        }
                    }
                    self.end_decl()?;
                }
                Tok::Word(w) if w == "comment" && matches!(self.peek_at(1), Tok::Str(_)) => {
                    // A chain comment stands alone; a rule's comment ends a rule.
                    let after = self.peek_at(2).clone();
                    if matches!(after, Tok::Newline | Tok::Semi | Tok::RBrace) {
                        self.bump();
                        self.bump();
                        self.end_decl()?;
                    } else {
                        let rule = self.rule(cx, t)?;
                        cx.rs.tables[t].chains[ci].rules.push(rule);
                        self.item_end()?;
                    }
                }
                Tok::Word(w) if w == "devices" => {
                    self.bump();
                    self.expect(Tok::Op("="), "`=`")?;
                    self.skip_braced()?;
                    self.end_decl()?;
                }
                Tok::Eof => return Err(self.err("`}`")),
                _ => {
                    let rule = self.rule(cx, t)?;
                    cx.rs.tables[t].chains[ci].rules.push(rule);
                    self.item_end()?;
                }
            }
        }
    }

    fn end_decl(&mut self) -> R<()> {
        self.item_end()
    }

    /// Every item of a `{ }` block (declaration, rule, nested block) ends with a newline or
    /// `;`, also the last one before `}` (nft: "expecting newline or semicolon").
    fn item_end(&mut self) -> R<()> {
        match self.peek() {
            Tok::Newline | Tok::Semi => {
                self.bump();
                Ok(())
            }
            _ => Err(self.err("newline or `;`")),
        }
    }

    fn skip_braced(&mut self) -> R<()> {
        self.expect(Tok::LBrace, "`{`")?;
        let mut depth = 1;
        while depth > 0 {
            match self.bump().tok {
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth -= 1,
                Tok::Eof => return Err(self.err("`}`")),
                _ => {}
            }
        }
        Ok(())
    }

    /// `-100`, `dstnat`, `srcnat - 10`, `filter + 5`: the value, and for a symbolic one the
    /// name and the offset (its value depends on the family and hook: [`std_priority_of`]).
    fn priority(&mut self) -> R<(Option<(String, i32)>, i32)> {
        let (w, at) = self.word("a priority")?;
        let named = std_priority(&w).is_some();
        let base = if let Some(n) = std_priority(&w) {
            n
        } else {
            w.parse::<i32>().map_err(|_| {
                self.err_at(
                    at,
                    "a priority (a number or raw, mangle, dstnat, filter, security, srcnat)",
                    &w,
                )
            })?
        };
        let offset = match self.peek() {
            Tok::Word(s) if s == "+" || s == "-" => {
                let sign = if s == "+" { 1 } else { -1 };
                self.bump();
                let (n, at) = self.word("a number")?;
                n.parse::<i32>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(|n| sign * n)
                    .ok_or_else(|| self.err_at(at, "a number", &n))?
            }
            Tok::Word(s) if s.starts_with('-') || s.starts_with('+') => {
                let s = s.clone();
                let (_, at) = self.word("")?;
                s.parse()
                    .map_err(|_| self.err_at(at, "`+ N` or `- N`", &s))?
            }
            _ => 0,
        };
        let value = base
            .checked_add(offset)
            .ok_or_else(|| self.err_at(at, "a priority within a 32-bit integer", &w))?;
        Ok((named.then_some((w, offset)), value))
    }

    fn set_body(&mut self, cx: &mut Ctx, t: usize, name: String, is_map: bool, line: u32) -> R<()> {
        let mut set = NftSet {
            name: Some(name.clone()),
            key: Vec::new(),
            data: None,
            flags: Vec::new(),
            elements: Vec::new(),
            source: Some(self.src(line)),
        };
        let mut elems_at: Option<usize> = None;
        loop {
            self.skip_sep();
            let (kw, at) = match self.peek() {
                Tok::RBrace => {
                    self.bump();
                    break;
                }
                _ => self.word("type, flags, timeout, elements, comment or `}`")?,
            };
            match kw.as_str() {
                "type" | "typeof" => {
                    if kw == "typeof" {
                        return Err(self.err_at(
                            at,
                            "`type` (kubepath does not read `typeof` sets yet)",
                            &kw,
                        ));
                    }
                    set.key = self.type_list()?;
                    if is_map {
                        self.expect_colon()?;
                        let (d, _) = self.word("a data type")?;
                        set.data = Some(DataType::parse(&d));
                    }
                }
                "flags" => set.flags = self.flag_list()?,
                "timeout" | "gc-interval" | "size" | "policy" | "counter" | "auto-merge" => {
                    if kw != "counter" && kw != "auto-merge" {
                        self.word("a value")?;
                    }
                }
                "comment" => {
                    self.string("a comment string")?;
                }
                "elements" => {
                    self.expect(Tok::Op("="), "`=`")?;
                    // Read after the declaration is complete (types first).
                    elems_at = Some(self.pos);
                    self.skip_braced()?;
                }
                _ => {
                    return Err(self.err_at(
                        at,
                        "type, flags, timeout, elements, comment or `}`",
                        &kw,
                    ))
                }
            }
            self.item_end()?;
        }
        if set.key.is_empty() {
            return Err(self.err("a set `type`"));
        }
        if is_map != set.data.is_some() {
            return Err(self.err("a map to have a `: TYPE` value"));
        }
        if let Some(at) = elems_at {
            let back = self.pos;
            self.pos = at;
            self.expect(Tok::LBrace, "`{`")?;
            set.elements = self.elements(cx, t, &set)?;
            self.pos = back;
        }
        let tab = &mut cx.rs.tables[t];
        if let Some(&i) = tab.set_ix.get(&name) {
            tab.sets[i].elements.extend(set.elements);
        } else {
            tab.sets.push(set);
            tab.set_ix.insert(name, tab.sets.len() - 1);
        }
        Ok(())
    }

    fn expect_colon(&mut self) -> R<()> {
        if self.is_word(":") {
            self.bump();
            Ok(())
        } else {
            Err(self.err("`:`"))
        }
    }

    fn type_list(&mut self) -> R<Vec<DataType>> {
        let mut out = vec![DataType::parse(&self.word("a data type")?.0)];
        while self.is_word(".") {
            self.bump();
            out.push(DataType::parse(&self.word("a data type")?.0));
        }
        Ok(out)
    }

    /// After `{`: elements up to `}` typed by `set`'s key (and value) types.
    fn elements(&mut self, cx: &mut Ctx, t: usize, set: &NftSet) -> R<Vec<Element>> {
        let interval = set.has_flag("interval") || set.name.is_none();
        let mut out = Vec::new();
        loop {
            self.skip_nl();
            if matches!(self.peek(), Tok::RBrace) {
                self.bump();
                return Ok(out);
            }
            let mut key = Vec::new();
            for (i, ty) in set.key.iter().enumerate() {
                if i > 0 {
                    if !self.is_word(".") {
                        return Err(self.err("`.` (the set's key is a concatenation)"));
                    }
                    self.bump();
                }
                let at = (self.cur().line, self.cur().col);
                let a = self.atom(ty)?;
                if let (Atom::Range(lo, hi), false) = (&a, interval) {
                    if lo != hi {
                        let w = self.text_of(self.pos - 1);
                        return Err(self.err_at(
                            at,
                            "a single value (the set has no `flags interval`)",
                            &w,
                        ));
                    }
                }
                key.push(a);
            }
            let mut comment = None;
            // Element options.
            loop {
                match self.peek() {
                    Tok::Word(w) if w == "timeout" || w == "expires" => {
                        self.bump();
                        self.word("a time")?;
                    }
                    Tok::Word(w) if w == "comment" => {
                        self.bump();
                        comment = Some(self.string("a comment string")?);
                    }
                    Tok::Word(w) if w == "counter" => {
                        self.bump();
                        self.counter_tail()?;
                    }
                    _ => break,
                }
            }
            let value = match &set.data {
                None => None,
                Some(d) => {
                    self.expect_colon()?;
                    Some(if *d == DataType::Verdict {
                        MapValue::Verdict(
                            self.verdict(cx, t)?.ok_or_else(|| self.err("a verdict"))?,
                        )
                    } else {
                        MapValue::Data(vec![self.atom(d)?])
                    })
                }
            };
            out.push(Element {
                key,
                value,
                comment,
            });
            self.skip_nl();
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RBrace => {}
                _ => return Err(self.err("`,` or `}`")),
            }
        }
    }

    fn text_of(&self, i: usize) -> String {
        let t = &self.toks[i];
        self.text[t.start..t.end].to_string()
    }

    fn counter_tail(&mut self) -> R<()> {
        // `counter name "cnt"`: counts into a named counter object.
        if self.eat_word("name") {
            self.name("a counter name")?;
            return Ok(());
        }
        if self.eat_word("packets") {
            self.word("a number")?;
            self.expect_word("bytes")?;
            self.word("a number")?;
        }
        Ok(())
    }

    /// A value of type `ty`: one token (`10.0.0.0/8`, `1.2.3.4-1.2.3.9`, `tcp`, `80-90`,
    /// `"eth0"`, `0x4000`).
    fn atom(&mut self, ty: &DataType) -> R<Atom> {
        let t = self.cur().clone();
        let at = (t.line, t.col);
        let w = match &t.tok {
            Tok::Word(w) if w != "." && w != ":" => w.clone(),
            Tok::Str(s) if matches!(ty, DataType::Ifname | DataType::Other(_)) => {
                self.bump();
                return Ok(Atom::Str(s.clone()));
            }
            _ => return Err(self.err(&format!("a value of type {}", type_name(ty)))),
        };
        self.bump();
        atom_word(ty, &w)
            .ok_or_else(|| self.err_at(at, &format!("a value of type {}", type_name(ty)), &w))
    }

    /// A verdict, if the next token starts one.
    fn verdict(&mut self, cx: &mut Ctx, t: usize) -> R<Option<NftVerdict>> {
        let Tok::Word(w) = self.peek().clone() else {
            return Ok(None);
        };
        let v = match w.as_str() {
            "accept" => NftVerdict::Accept,
            "drop" => NftVerdict::Drop,
            "continue" => NftVerdict::Continue,
            "return" => NftVerdict::Return,
            "jump" | "goto" => {
                self.bump();
                let (c, at) = self.name("a chain name")?;
                cx.pending.push(Pending::Chain {
                    table: t,
                    name: c.clone(),
                    at,
                });
                return Ok(Some(if w == "jump" {
                    NftVerdict::Jump(c)
                } else {
                    NftVerdict::Goto(c)
                }));
            }
            _ => return Ok(None),
        };
        self.bump();
        Ok(Some(v))
    }

    /// `add rule [FAMILY] TABLE CHAIN STATEMENTS` / `insert rule ...`.
    fn cmd_rule(&mut self, cx: &mut Ctx, insert: bool) -> R<()> {
        let t = self.table_ref(cx)?;
        let (chain, at) = self.name("a chain name")?;
        let Some(&ci) = cx.rs.tables[t].chain_ix.get(&chain) else {
            return Err(self.err_at(at, "an existing chain", &chain));
        };
        if self.is_word("handle") || self.is_word("position") || self.is_word("index") {
            return Err(self.err("a statement (kubepath does not read rule positions yet)"));
        }
        let rule = self.rule(cx, t)?;
        let rules = &mut cx.rs.tables[t].chains[ci].rules;
        if insert {
            rules.insert(0, rule);
        } else {
            rules.push(rule);
        }
        Ok(())
    }

    fn at_rule_end(&self) -> bool {
        matches!(
            self.peek(),
            Tok::Newline | Tok::Semi | Tok::RBrace | Tok::Eof
        )
    }

    /// Statements up to the end of the line, `;` or `}` (not consumed).
    fn rule(&mut self, cx: &mut Ctx, t: usize) -> R<NftRule> {
        let first = self.cur().clone();
        let mut stmts = Vec::new();
        if self.at_rule_end() {
            return Err(self.err("a statement"));
        }
        let mut last_end = first.end;
        while !self.at_rule_end() {
            let st = self.stmt(cx, t)?;
            stmts.append(&mut self.deps);
            last_end = self.toks[self.pos.saturating_sub(1)].end;
            if let Stmt::Opaque(what) = &st {
                self.diags.push(Diagnostic {
                    source: self.src(first.line),
                    message: format!("unsupported nft expression `{what}`: kept as an opaque statement (a packet reaching it is UNKNOWN)"),
                });
            }
            stmts.push(st);
        }
        let text = self.text[first.start..last_end.max(first.start)]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Ok(NftRule {
            stmts,
            source: self.src(first.line),
            column: first.col,
            text,
            handle: None,
        })
    }

    fn stmt(&mut self, cx: &mut Ctx, t: usize) -> R<Stmt> {
        if let Some(v) = self.verdict(cx, t)? {
            return Ok(Stmt::Verdict(v));
        }
        let (w, at) = match self.peek().clone() {
            Tok::Word(w) => (w, (self.cur().line, self.cur().col)),
            _ => return Err(self.err("a statement")),
        };
        match w.as_str() {
            "counter" => {
                self.bump();
                self.counter_tail()?;
                return Ok(Stmt::NoEffect("counter"));
            }
            "comment" => {
                self.bump();
                self.string("a comment string")?;
                return Ok(Stmt::NoEffect("comment"));
            }
            "log" => {
                self.bump();
                self.log_options()?;
                return Ok(Stmt::NoEffect("log"));
            }
            "notrack" => {
                self.bump();
                return Ok(Stmt::Notrack);
            }
            // `limit name "l"` / `quota name "q"`: a named object's rate or quota, which the
            // rule does not show (whether it is `over` or not): opaque.
            "limit" | "quota" if matches!(self.toks.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Word(n)) if n == "name") =>
            {
                let start = self.cur().start;
                self.bump();
                self.bump();
                self.name("an object name")?;
                let end = self.toks[self.pos - 1].end;
                return Ok(Stmt::Opaque(self.text[start..end].to_string()));
            }
            "limit" => return self.limit_stmt(),
            "reject" => {
                self.bump();
                return Ok(Stmt::Reject(self.reject_kind()?));
            }
            "dnat" | "snat" | "masquerade" | "redirect" => {
                self.bump();
                return self.nat_stmt(&w, t, cx);
            }
            "update" | "add" => {
                self.bump();
                return self.set_update_stmt(cx, t);
            }
            _ => {}
        }
        if !is_expr_start(&w) {
            return Err(self.err_at(at, "a statement or expression", &w));
        }
        let start = self.cur().start;
        let left = self.expr()?;
        // `meta mark set ...`
        if self.is_word("set") {
            self.bump();
            let ct = match &left {
                Expr::Mark => false,
                Expr::CtMark => true,
                _ => {
                    self.value_expr_opaque()?;
                    let end = self.toks[self.pos - 1].end;
                    return Ok(Stmt::Opaque(self.text[start..end].to_string()));
                }
            };
            let value = self.value_expr()?;
            return Ok(Stmt::SetMark { ct, value });
        }
        if self.is_word("vmap") {
            self.bump();
            let map = self.set_ref(cx, t, &left, true)?;
            if let Expr::Opaque(_) = left {
                let end = self.toks[self.pos - 1].end;
                return Ok(Stmt::Opaque(self.text[start..end].to_string()));
            }
            return Ok(Stmt::Vmap { key: left, map });
        }
        if left == Expr::TcpFlags {
            return self.tcp_flags_cmp();
        }
        // Optional bitwise then relational.
        // `xt match NAME` / `xt target NAME` and `ct count N` stand alone: no comparison
        // follows.
        if matches!(&left, Expr::Opaque(x) if x.starts_with("xt ") || x.starts_with("ct count ")) {
            // xt_comment always matches; LOG and NFLOG go on with the next statement.
            match &left {
                Expr::Opaque(x) if x == "xt match comment" => return Ok(Stmt::NoEffect("comment")),
                Expr::Opaque(x) if x == "xt target LOG" || x == "xt target NFLOG" => {
                    return Ok(Stmt::NoEffect("log"))
                }
                _ => {}
            }
            let end = self.toks[self.pos - 1].end;
            return Ok(Stmt::Opaque(self.text[start..end].to_string()));
        }
        let mut left = left;
        if let Some(op) = self.bitop() {
            match self.peek().clone() {
                // An address mask (`ip saddr & 0.0.0.255 == 0.0.0.66`): not modelled, the
                // match is opaque (a packet reaching it is UNKNOWN).
                Tok::Word(w) if w.parse::<std::net::IpAddr>().is_ok() => {
                    self.bump();
                    left = Expr::Opaque(format!("{} & {w}", expr_text(&left)));
                }
                _ => {
                    let (v, at) = self.word("a number")?;
                    let v = parse_num(&v)
                        .filter(|v| *v <= u32::MAX as u64)
                        .ok_or_else(|| self.err_at(at, "a number", &v))?;
                    left = Expr::Bitwise(Box::new(left), op, v as u32);
                }
            }
        }
        let op = self.cmp_op();
        if self.at_rule_end() {
            return Err(self.err("a value to compare with"));
        }
        if matches!(self.peek(), Tok::At | Tok::LBrace) {
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(self.err("a value (sets take `==` or `!=`)"));
            }
            let set = self.set_ref(cx, t, &left, false)?;
            if let Expr::Opaque(_) = left {
                let end = self.toks[self.pos - 1].end;
                return Ok(Stmt::Opaque(self.text[start..end].to_string()));
            }
            return Ok(Stmt::Lookup {
                left,
                set,
                neg: op == CmpOp::Ne,
            });
        }
        let right = self.cmp_right(&left)?;
        if is_opaque(&left) {
            let end = self.toks[self.pos - 1].end;
            return Ok(Stmt::Opaque(self.text[start..end].to_string()));
        }
        Ok(Stmt::Cmp { left, op, right })
    }

    /// The options of a `log` statement (prefix, level, group, snaplen, queue-threshold,
    /// flags).
    fn log_options(&mut self) -> R<()> {
        loop {
            match self.peek() {
                Tok::Word(o)
                    if o == "prefix"
                        || o == "level"
                        || o == "group"
                        || o == "snaplen"
                        || o == "queue-threshold" =>
                {
                    self.bump();
                    self.string("a value")?;
                }
                Tok::Word(o) if o == "flags" => {
                    self.bump();
                    self.flag_list()?;
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// `limit rate [over] N/UNIT [burst N [UNIT]]`.
    fn limit_stmt(&mut self) -> R<Stmt> {
        let start = self.cur().start;
        self.bump();
        self.expect_word("rate")?;
        let over = self.eat_word("over");
        let (r, at) = self.word("a rate (N/second)")?;
        let ok_unit = |u: &str| matches!(u, "second" | "minute" | "hour" | "day" | "week");
        let rate_ok = match r.split_once('/') {
            Some((n, u)) => n.parse::<u64>().is_ok() && ok_unit(u),
            None => {
                // `N kbytes/second` or `N /second`.
                r.parse::<u64>().is_ok() && {
                    let (u, _) = self.word("a rate unit")?;
                    u.contains('/')
                }
            }
        };
        if !rate_ok {
            return Err(self.err_at(at, "a rate (N/second, N/minute, ...)", &r));
        }
        if self.eat_word("burst") {
            self.word("a number")?;
            if self.is_word("packets")
                || self.is_word("bytes")
                || self.is_word("kbytes")
                || self.is_word("mbytes")
            {
                self.bump();
            }
        }
        let end = self.toks[self.pos - 1].end;
        Ok(Stmt::Limit {
            over,
            text: self.text[start..end].to_string(),
        })
    }

    /// What a `reject [with ...]` sends, as iptables names it (`icmp-port-unreachable`,
    /// `tcp-reset`, ...).
    fn reject_kind(&mut self) -> R<String> {
        let kind = if self.eat_word("with") {
            let (k, at) = self.word("icmp, icmpv6, icmpx or tcp")?;
            match k.as_str() {
                "tcp" => {
                    self.expect_word("reset")?;
                    "tcp-reset".to_string()
                }
                "icmp" | "icmpv6" | "icmpx" => {
                    self.eat_word("type");
                    let (ty, at2) = self.word("an ICMP reject type")?;
                    let ok = matches!(
                        ty.as_str(),
                        "port-unreachable"
                            | "host-unreachable"
                            | "net-unreachable"
                            | "prot-unreachable"
                            | "admin-prohibited"
                            | "net-prohibited"
                            | "host-prohibited"
                            | "no-route"
                            | "addr-unreachable"
                            | "policy-fail"
                            | "reject-route"
                    );
                    if !ok {
                        return Err(self.err_at(at2, "an ICMP reject type", &ty));
                    }
                    let pre = if k == "icmpv6" { "icmp6" } else { "icmp" };
                    format!("{pre}-{ty}")
                }
                _ => return Err(self.err_at(at, "icmp, icmpv6, icmpx or tcp", &k)),
            }
        } else {
            "icmp-port-unreachable".to_string()
        };
        Ok(kind)
    }

    /// `update @set { KEY [timeout T] [counter] }` / `add @set { ... }` (after the keyword).
    fn set_update_stmt(&mut self, cx: &mut Ctx, t: usize) -> R<Stmt> {
        self.expect(Tok::At, "`@`")?;
        let (set, at) = self.name("a set name")?;
        cx.pending.push(Pending::Set {
            table: t,
            name: set.clone(),
            at,
        });
        self.expect(Tok::LBrace, "`{`")?;
        let key = self.expr()?;
        while self.is_word("timeout") || self.is_word("counter") {
            let k = self.word("")?.0;
            if k == "timeout" {
                self.word("a time")?;
            }
        }
        self.expect(Tok::RBrace, "`}`")?;
        Ok(Stmt::SetUpdate { set, key })
    }

    /// A relational operator (consumed), `==` when none is written.
    fn cmp_op(&mut self) -> CmpOp {
        let op = match self.peek() {
            Tok::Op("==") => Some(CmpOp::Eq),
            Tok::Op("!=") => Some(CmpOp::Ne),
            Tok::Op("<") => Some(CmpOp::Lt),
            Tok::Op(">") => Some(CmpOp::Gt),
            Tok::Op("<=") => Some(CmpOp::Le),
            Tok::Op(">=") => Some(CmpOp::Ge),
            Tok::Word(w) if w == "eq" => Some(CmpOp::Eq),
            Tok::Word(w) if w == "ne" => Some(CmpOp::Ne),
            _ => None,
        };
        if op.is_some() {
            self.bump();
        }
        op.unwrap_or(CmpOp::Eq)
    }

    /// The right-hand side of a comparison with `left`: one value per component of its type
    /// (`.`-joined), conntrack states as a flag set.
    fn cmp_right(&mut self, left: &Expr) -> R<Vec<Atom>> {
        let types = expr_types(left);
        let mut right = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            if i > 0 {
                if !self.is_word(".") {
                    return Err(self.err("`.`"));
                }
                self.bump();
            }
            if *ty == DataType::CtState {
                // Flags: `established,related`.
                let mut mask = 0u128;
                loop {
                    match self.atom(ty)? {
                        Atom::Range(b, _) => mask |= b,
                        Atom::Str(_) => {}
                    }
                    if matches!(self.peek(), Tok::Comma) {
                        self.bump();
                    } else {
                        break;
                    }
                }
                right.push(Atom::Range(mask, mask));
            } else {
                right.push(self.atom(ty)?);
            }
        }
        Ok(right)
    }

    /// The rest of a `tcp flags` match, in the forms nft reads and prints (nft(8), "TCP
    /// HEADER EXPRESSION"; nft 1.0.6 lists `& (syn | ack) == syn` as `syn / syn,ack`):
    /// `& MASK == VALUE` / `& MASK != VALUE`, `VALUE / MASK` (flags & MASK == VALUE),
    /// `== VALUE` / `!= VALUE` (all flags), and a bare `VALUE` (any of its flags set, as for
    /// every bitmask type). A flag set is names joined by `|` or `,`, in parentheses or not,
    /// or a number.
    fn tcp_flags_cmp(&mut self) -> R<Stmt> {
        let mut mask = None;
        if matches!(self.peek(), Tok::Op("&")) || self.is_word("and") {
            self.bump();
            mask = Some(self.tcp_flag_set()?);
        }
        let op = match self.peek() {
            Tok::Op("==") => Some(CmpOp::Eq),
            Tok::Op("!=") => Some(CmpOp::Ne),
            Tok::Word(w) if w == "eq" => Some(CmpOp::Eq),
            Tok::Word(w) if w == "ne" => Some(CmpOp::Ne),
            _ => None,
        };
        if op.is_some() {
            self.bump();
        }
        let value = self.tcp_flag_set()?;
        if mask.is_none() && self.is_word("/") {
            self.bump();
            mask = Some(self.tcp_flag_set()?);
        }
        let flags = Box::new(Expr::TcpFlags);
        Ok(match (mask, op) {
            (Some(m), op) => Stmt::Cmp {
                left: Expr::Bitwise(flags, BitOp::And, m),
                op: op.unwrap_or(CmpOp::Eq),
                right: vec![Atom::Range(u128::from(value), u128::from(value))],
            },
            (None, Some(op)) => Stmt::Cmp {
                left: Expr::TcpFlags,
                op,
                right: vec![Atom::Range(u128::from(value), u128::from(value))],
            },
            // Any of the flags set: `flags & VALUE != 0`.
            (None, None) => Stmt::Cmp {
                left: Expr::Bitwise(flags, BitOp::And, value),
                op: CmpOp::Ne,
                right: vec![Atom::Range(0, 0)],
            },
        })
    }

    /// TCP flags: `syn`, `syn|ack`, `syn,ack`, `(fin | syn | rst | ack)`, or a number.
    fn tcp_flag_set(&mut self) -> R<u32> {
        let paren = matches!(self.peek(), Tok::Op("("));
        if paren {
            self.bump();
        }
        let mut v = 0u32;
        loop {
            let (w, at) = self.word("a TCP flag (fin, syn, rst, psh, ack, urg, ecn, cwr)")?;
            v |= match tcp_flag_bit(&w)
                .or_else(|| parse_num(&w).filter(|n| *n <= 0xff).map(|n| n as u32))
            {
                Some(b) => b,
                None => {
                    return Err(self.err_at(
                        at,
                        "a TCP flag (fin, syn, rst, psh, ack, urg, ecn, cwr)",
                        &w,
                    ))
                }
            };
            match self.peek() {
                Tok::Op("|") | Tok::Comma => {
                    self.bump();
                }
                _ => break,
            }
        }
        if paren {
            if !matches!(self.peek(), Tok::Op(")")) {
                return Err(self.err("`)`"));
            }
            self.bump();
        }
        Ok(v)
    }

    fn bitop(&mut self) -> Option<BitOp> {
        let op = match self.peek() {
            Tok::Op("&") => BitOp::And,
            Tok::Op("|") => BitOp::Or,
            Tok::Op("^") => BitOp::Xor,
            Tok::Word(w) if w == "and" => BitOp::And,
            Tok::Word(w) if w == "or" => BitOp::Or,
            Tok::Word(w) if w == "xor" => BitOp::Xor,
            _ => return None,
        };
        self.bump();
        Some(op)
    }

    /// The value of `meta mark set` / `ct mark set`: a number, or a mark expression with
    /// optional bitwise operations.
    fn value_expr(&mut self) -> R<Expr> {
        let (w, at) = match self.peek().clone() {
            Tok::Word(w) => (w, (self.cur().line, self.cur().col)),
            _ => return Err(self.err("a value")),
        };
        let mut e = if let Some(n) = parse_num(&w) {
            self.bump();
            if n > u32::MAX as u64 {
                return Err(self.err_at(at, "a 32-bit value", &w));
            }
            Expr::Const(n as u32)
        } else if is_expr_start(&w) {
            self.expr()?
        } else {
            return Err(self.err_at(at, "a value", &w));
        };
        while let Some(op) = self.bitop() {
            let (v, at) = self.word("a number")?;
            let v = parse_num(&v)
                .filter(|v| *v <= u32::MAX as u64)
                .ok_or_else(|| self.err_at(at, "a number", &v))?;
            e = Expr::Bitwise(Box::new(e), op, v as u32);
        }
        Ok(e)
    }

    /// The value of a `set` statement on an unmodelled key: tokens to the end of the
    /// statement (one word or expression).
    fn value_expr_opaque(&mut self) -> R<()> {
        if self.at_rule_end() {
            return Err(self.err("a value"));
        }
        if matches!(self.peek(), Tok::Word(w) if is_expr_start(w)) {
            self.expr()?;
        } else {
            self.bump();
        }
        while self.bitop().is_some() {
            self.word("a number")?;
        }
        Ok(())
    }

    /// `@name` or `{ elements }` typed by the key expression `left`.
    fn set_ref(&mut self, cx: &mut Ctx, t: usize, left: &Expr, vmap: bool) -> R<SetRef> {
        if matches!(self.peek(), Tok::At) {
            self.bump();
            let (name, at) = self.name("a set name")?;
            if let Some(s) = cx.rs.tables[t].set(&name) {
                let want = if vmap { "a verdict map" } else { "a set" };
                let is_vmap = s.data == Some(DataType::Verdict);
                if vmap != is_vmap && (vmap || s.data.is_some()) {
                    return Err(self.err_at(at, want, &name));
                }
                if !matches!(left, Expr::Opaque(_)) && s.key.len() != expr_types(left).len() {
                    return Err(self.err_at(
                        at,
                        &format!(
                            "a set whose key has {} component(s)",
                            expr_types(left).len()
                        ),
                        &name,
                    ));
                }
            } else {
                cx.pending.push(Pending::Set {
                    table: t,
                    name: name.clone(),
                    at,
                });
            }
            return Ok(SetRef::Named(name));
        }
        self.expect(Tok::LBrace, "`{` or `@`")?;
        let set = NftSet {
            name: None,
            key: expr_types(left),
            data: vmap.then_some(DataType::Verdict),
            flags: vec!["interval".into()],
            elements: Vec::new(),
            source: None,
        };
        let els = if matches!(left, Expr::Opaque(_)) {
            // Unknown key types: skip the elements.
            self.pos -= 1;
            self.skip_braced()?;
            Vec::new()
        } else {
            self.elements(cx, t, &set)?
        };
        Ok(SetRef::Anon(Box::new(NftSet {
            elements: els,
            ..set
        })))
    }

    /// An expression: a primary, or a concatenation `a . b . c`.
    fn expr(&mut self) -> R<Expr> {
        let mut parts = vec![self.primary()?];
        while self.is_word(".") {
            self.bump();
            parts.push(self.primary()?);
        }
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        if parts.iter().any(|p| matches!(p, Expr::Opaque(_))) {
            let s: Vec<String> = parts.iter().map(expr_text).collect();
            return Ok(Expr::Opaque(s.join(" . ")));
        }
        Ok(Expr::Concat(parts))
    }

    fn primary(&mut self) -> R<Expr> {
        let (w, at) = self.word("an expression")?;
        let field = |p: &mut P, what: &str| -> R<(String, (u32, u32))> { p.word(what) };
        let e = match w.as_str() {
            "ip" | "ip6" => self.ip_header_expr(w == "ip6")?,
            "tcp" | "udp" | "sctp" | "th" | "udplite" | "dccp" => {
                let proto = match w.as_str() {
                    "tcp" => Some(6),
                    "udp" => Some(17),
                    "sctp" => Some(132),
                    "udplite" => Some(136),
                    "dccp" => Some(33),
                    _ => None,
                };
                let (f, _) = field(self, "a header field")?;
                match f.as_str() {
                    "sport" => Expr::Sport { proto },
                    "dport" => Expr::Dport { proto },
                    "flags" if proto == Some(6) => {
                        self.deps.push(l4_dep(6, None));
                        Expr::TcpFlags
                    }
                    _ => {
                        if let Some(n) = proto {
                            self.deps.push(l4_dep(n, None));
                        }
                        Expr::Opaque(format!("{w} {f}"))
                    }
                }
            }
            "meta" => {
                let (k, _) = field(self, "a meta key")?;
                match k.as_str() {
                    "l4proto" => Expr::L4proto { v6: None },
                    "mark" => Expr::Mark,
                    "iifname" => Expr::Iifname,
                    "oifname" => Expr::Oifname,
                    "nfproto" => Expr::NfProto,
                    "random" => Expr::Random,
                    // By name: the interface the CLI is told about (`--in-iface`).
                    "iif" => Expr::Iifname,
                    "oif" => Expr::Oifname,
                    _ => Expr::Opaque(format!("meta {k}")),
                }
            }
            "mark" => Expr::Mark,
            "iifname" => Expr::Iifname,
            "oifname" => Expr::Oifname,
            "l4proto" => Expr::L4proto { v6: None },
            "nfproto" => Expr::NfProto,
            "ct" => self.ct_expr()?,
            "fib" => self.fib_expr()?,
            "numgen" => self.numgen_expr()?,
            "iif" => Expr::Iifname,
            "oif" => Expr::Oifname,
            // iptables-nft's compat expressions, as nft lists them: `xt match NAME` /
            // `xt target NAME` (the name bare or quoted, e.g. `xt match set` for `-m set`,
            // which has no native translation). Opaque, naming the extension.
            "xt" if matches!(self.peek(), Tok::Word(k) if k == "match" || k == "target") => {
                let (kind, _) = self.word("match or target")?;
                let name = match self.peek().clone() {
                    Tok::Word(n) | Tok::Str(n) => {
                        self.bump();
                        n
                    }
                    other => {
                        return Err(self.err_at(at, "the xt extension's name", &other.describe()))
                    }
                };
                Expr::Opaque(format!("xt {kind} {name}"))
            }
            other if KNOWN_UNMODELLED.contains(&other) => {
                // A transport header: only packets of its protocol (nft's implicit
                // `meta l4proto` dependency).
                if let Some((n, v6)) = header_dep(other) {
                    self.deps.push(l4_dep(n, v6));
                }
                // `icmp type`, `ether saddr`, `meta pkttype`, `iif`: keep opaque with its field
                // when the next word names one.
                let mut s = other.to_string();
                if let Tok::Word(f) = self.peek().clone() {
                    if f.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !is_stmt_word(&f) {
                        self.bump();
                        s.push(' ');
                        s.push_str(&f);
                    }
                }
                Expr::Opaque(s)
            }
            _ => return Err(self.err_at(at, "an expression", &w)),
        };
        Ok(e)
    }

    /// `ip FIELD` / `ip6 FIELD` (`v6`): an unmodelled field is opaque, for packets of the
    /// header's family only.
    fn ip_header_expr(&mut self, v6: bool) -> R<Expr> {
        let (f, _) = self.word("a header field")?;
        Ok(match f.as_str() {
            "saddr" => Expr::Saddr { v6 },
            "daddr" => Expr::Daddr { v6 },
            "protocol" if !v6 => Expr::L4proto { v6: Some(false) },
            "nexthdr" if v6 => Expr::L4proto { v6: Some(true) },
            "version" => Expr::IpVersion { v6 },
            _ => {
                // Only packets of the header's family (nft's `meta nfproto`
                // dependency in inet tables).
                self.deps.push(Stmt::Cmp {
                    left: Expr::NfProto,
                    op: CmpOp::Eq,
                    right: vec![if v6 {
                        Atom::Range(10, 10)
                    } else {
                        Atom::Range(2, 2)
                    }],
                });
                Expr::Opaque(format!("{} {f}", if v6 { "ip6" } else { "ip" }))
            }
        })
    }

    /// `ct KEY ...`: state, mark, direction; the tuple fields and `ct count` opaque.
    fn ct_expr(&mut self) -> R<Expr> {
        let (k, _) = self.word("a conntrack key")?;
        Ok(match k.as_str() {
            "state" => Expr::CtState,
            "mark" => Expr::CtMark,
            "direction" => Expr::CtDirection,
            "original" | "reply" => {
                let (f, _) = self.word("a conntrack key")?;
                if f == "ip" || f == "ip6" {
                    let (g, _) = self.word("a conntrack key")?;
                    Expr::Opaque(format!("ct {k} {f} {g}"))
                } else {
                    Expr::Opaque(format!("ct {k} {f}"))
                }
            }
            // `ct count [over] N` (connlimit): a statement of its own.
            "count" => {
                let over = self.eat_word("over");
                let (n, _) = self.word("a connection count")?;
                Expr::Opaque(format!("ct count {}{n}", if over { "over " } else { "" }))
            }
            _ => Expr::Opaque(format!("ct {k}")),
        })
    }

    /// `fib FLAG[. FLAG] RESULT`: the address type (of `saddr` / `daddr`, optionally limited
    /// to `iif` / `oif`); the rest opaque.
    fn fib_expr(&mut self) -> R<Expr> {
        let mut flags = vec![self.word("saddr, daddr, mark, iif or oif")?.0];
        while self.is_word(".") {
            self.bump();
            flags.push(self.word("saddr, daddr, mark, iif or oif")?.0);
        }
        let (res, at) = self.word("type, oif or oifname")?;
        if !matches!(res.as_str(), "type" | "oif" | "oifname") {
            return Err(self.err_at(at, "type, oif or oifname", &res));
        }
        Ok(match (flags.as_slice(), res.as_str()) {
            ([f], "type") if f == "saddr" || f == "daddr" => Expr::FibType {
                daddr: f == "daddr",
                dev_out: None,
            },
            ([f, d], "type") if (f == "saddr" || f == "daddr") && (d == "iif" || d == "oif") => {
                Expr::FibType {
                    daddr: f == "daddr",
                    dev_out: Some(d == "oif"),
                }
            }
            _ => Expr::Opaque(format!("fib {} {res}", flags.join(" . "))),
        })
    }

    /// `numgen random|inc mod N [offset K]`.
    fn numgen_expr(&mut self) -> R<Expr> {
        let (m, at) = self.word("random or inc")?;
        if m != "random" && m != "inc" {
            return Err(self.err_at(at, "random or inc", &m));
        }
        self.expect_word("mod")?;
        let (n, at) = self.word("a modulus")?;
        let modulus = parse_num(&n)
            .filter(|n| *n >= 1 && *n <= u32::MAX as u64)
            .ok_or_else(|| self.err_at(at, "a modulus (1 or more)", &n))?
            as u32;
        let mut offset = 0;
        if self.eat_word("offset") {
            let (o, at) = self.word("an offset")?;
            offset = parse_num(&o)
                .filter(|n| *n <= u32::MAX as u64)
                .ok_or_else(|| self.err_at(at, "an offset", &o))? as u32;
        }
        Ok(Expr::Numgen {
            inc: m == "inc",
            modulus,
            offset,
        })
    }

    fn nat_stmt(&mut self, kind: &str, t: usize, cx: &mut Ctx) -> R<Stmt> {
        let family = cx.rs.tables[t].family;
        let mut v6 = family == NftFamily::Ip6;
        let mut fam_given = false;
        if (kind == "dnat" || kind == "snat") && (self.is_word("ip") || self.is_word("ip6")) {
            v6 = self.word("")?.0 == "ip6";
            fam_given = true;
        }
        let mut spec = NatSpec {
            addr: None,
            v6,
            port: None,
            flags: Vec::new(),
        };
        let mut has_to = false;
        if self.eat_word("to") {
            has_to = true;
            let (w, at) = self.word("an address or `:PORT`")?;
            if kind == "dnat" || kind == "snat" {
                if family == NftFamily::Inet && !fam_given {
                    return Err(self.err_at(
                        at,
                        "`ip to` or `ip6 to` (an inet table needs the family)",
                        &w,
                    ));
                }
                // `ip daddr map { ... }` and other expressions: not modelled.
                if is_expr_start(&w) && parse_addr_port(&w, v6).is_none() {
                    self.pos -= 1;
                    let start = self.cur().start;
                    self.expr()?;
                    if self.eat_word("map") {
                        self.skip_braced_or_ref()?;
                    }
                    let end = self.toks[self.pos - 1].end;
                    return Ok(Stmt::Opaque(format!(
                        "{kind} to {}",
                        &self.text[start..end]
                    )));
                }
                let (a, p) = parse_addr_port(&w, v6)
                    .ok_or_else(|| self.err_at(at, "an address[:port]", &w))?;
                spec.addr = a;
                spec.port = p;
            } else {
                let p = w
                    .strip_prefix(':')
                    .and_then(parse_port_range)
                    .ok_or_else(|| self.err_at(at, "`:PORT` or `:PORT-PORT`", &w))?;
                spec.port = Some(p);
            }
        }
        if (kind == "dnat" || kind == "snat") && !has_to {
            return Err(self.err("`to`"));
        }
        loop {
            match self.peek() {
                Tok::Word(f) if matches!(f.as_str(), "random" | "fully-random" | "persistent") => {
                    spec.flags.push(f.clone());
                    self.bump();
                }
                Tok::Comma if !spec.flags.is_empty() => {
                    self.bump();
                }
                _ => break,
            }
        }
        Ok(match kind {
            "dnat" => Stmt::Dnat(spec),
            "snat" => Stmt::Snat(spec),
            "masquerade" => Stmt::Masquerade(spec),
            _ => Stmt::Redirect(spec.port),
        })
    }

    fn skip_braced_or_ref(&mut self) -> R<()> {
        if matches!(self.peek(), Tok::At) {
            self.bump();
            self.name("a map name")?;
            Ok(())
        } else {
            self.skip_braced()
        }
    }
}

/// A value of type `ty` written as one word (`10.0.0.0/8`, `1.2.3.4-1.2.3.9`, `tcp`, `80-90`,
/// `eth0`, `0x4000`), or `None` when it is not one. The JSON reader gives its strings and
/// numbers here too, so both readers type values alike.
pub(crate) fn atom_word(ty: &DataType, w: &str) -> Option<Atom> {
    let num_range = |s: &str, max: u64, f: &dyn Fn(&str) -> Option<u64>| -> Option<Atom> {
        // A name may hold a dash (`ipv6-icmp`): the whole word first, then a range.
        if let Some(v) = f(s) {
            return (v <= max).then_some(Atom::Range(v as u128, v as u128));
        }
        if let Some((a, b)) = s.split_once('-') {
            let (a, b) = (f(a)?, f(b)?);
            return (a <= b && b <= max).then_some(Atom::Range(a as u128, b as u128));
        }
        let v = f(s)?;
        (v <= max).then_some(Atom::Range(v as u128, v as u128))
    };
    let bit = |b: Option<u32>| b.map(|b| Atom::Range(b as u128, b as u128));
    match ty {
        DataType::Ipv4 | DataType::Ipv6 => parse_addr_atom(w, *ty == DataType::Ipv6),
        DataType::Proto => num_range(w, 255, &|s| {
            Proto::parse(s)
                .map(|p| p.number() as u64)
                .or_else(|| s.parse().ok())
        }),
        DataType::Service => num_range(w, 65535, &|s| {
            s.parse().ok().or_else(|| service_port(s).map(u64::from))
        }),
        DataType::Mark | DataType::Integer => num_range(w, u32::MAX as u64, &parse_num),
        DataType::Ifname | DataType::Other(_) => Some(Atom::Str(w.to_string())),
        DataType::CtState => bit(ct_state_bit(w)),
        DataType::TcpFlags => {
            bit(tcp_flag_bit(w).or_else(|| parse_num(w).filter(|n| *n <= 0xff).map(|n| n as u32)))
        }
        DataType::FibAddrType => bit(fib_type(w)),
        DataType::NfProto => match w {
            "ipv4" => Some(Atom::Range(2, 2)),
            "ipv6" => Some(Atom::Range(10, 10)),
            _ => None,
        },
        DataType::Verdict => None,
    }
}

/// The transport protocol a header of that name implies (nft's implicit `meta l4proto`
/// dependency of its fields), with the family when the header implies one.
pub(crate) fn header_dep(header: &str) -> Option<(u8, Option<bool>)> {
    Some(match header {
        "icmp" => (1, Some(false)),
        "icmpv6" => (58, Some(true)),
        "igmp" => (2, Some(false)),
        "esp" => (50, None),
        "ah" => (51, None),
        "comp" => (108, None),
        "udplite" => (136, None),
        "dccp" => (33, None),
        _ => return None,
    })
}

/// `meta l4proto N` (with the family when the header implies one).
pub(crate) fn l4_dep(n: u8, v6: Option<bool>) -> Stmt {
    Stmt::Cmp {
        left: Expr::L4proto { v6 },
        op: CmpOp::Eq,
        right: vec![Atom::Range(u128::from(n), u128::from(n))],
    }
}

pub(crate) fn is_opaque(e: &Expr) -> bool {
    match e {
        Expr::Opaque(_) => true,
        Expr::Bitwise(e, _, _) => is_opaque(e),
        Expr::Concat(v) => v.iter().any(is_opaque),
        _ => false,
    }
}

pub(crate) fn is_stmt_word(w: &str) -> bool {
    matches!(
        w,
        "accept"
            | "drop"
            | "continue"
            | "return"
            | "jump"
            | "goto"
            | "counter"
            | "log"
            | "limit"
            | "reject"
            | "dnat"
            | "snat"
            | "masquerade"
            | "redirect"
            | "comment"
            | "notrack"
            | "vmap"
            | "set"
            | "map"
            | "eq"
            | "ne"
            | "and"
            | "or"
            | "xor"
    )
}

fn is_expr_start(w: &str) -> bool {
    matches!(
        w,
        "ip" | "ip6"
            | "tcp"
            | "udp"
            | "sctp"
            | "th"
            | "meta"
            | "mark"
            | "iifname"
            | "oifname"
            | "ct"
            | "fib"
            | "numgen"
            | "l4proto"
            | "nfproto"
    ) || KNOWN_UNMODELLED.contains(&w)
}

pub(crate) fn type_name(t: &DataType) -> String {
    match t {
        DataType::Ipv4 => "ipv4_addr".into(),
        DataType::Ipv6 => "ipv6_addr".into(),
        DataType::Proto => "inet_proto".into(),
        DataType::Service => "inet_service".into(),
        DataType::Mark => "mark".into(),
        DataType::Ifname => "ifname".into(),
        DataType::CtState => "ct_state".into(),
        DataType::TcpFlags => "tcp_flag".into(),
        DataType::FibAddrType => "fib_addrtype".into(),
        DataType::Verdict => "verdict".into(),
        DataType::Integer => "integer".into(),
        DataType::NfProto => "nf_proto".into(),
        DataType::Other(s) => s.clone(),
    }
}

/// The data type of each component of an expression.
pub(crate) fn expr_types(e: &Expr) -> Vec<DataType> {
    match e {
        Expr::Concat(v) => v.iter().flat_map(expr_types).collect(),
        Expr::Saddr { v6 } | Expr::Daddr { v6 } => {
            vec![if *v6 { DataType::Ipv6 } else { DataType::Ipv4 }]
        }
        Expr::L4proto { .. } => vec![DataType::Proto],
        Expr::Sport { .. } | Expr::Dport { .. } => vec![DataType::Service],
        Expr::Mark | Expr::CtMark => vec![DataType::Mark],
        Expr::CtState => vec![DataType::CtState],
        Expr::TcpFlags => vec![DataType::TcpFlags],
        Expr::Iifname | Expr::Oifname => vec![DataType::Ifname],
        Expr::NfProto => vec![DataType::NfProto],
        Expr::IpVersion { .. } => vec![DataType::Integer],
        Expr::CtDirection => vec![DataType::Other("ct_dir".into())],
        Expr::FibType { .. } => vec![DataType::FibAddrType],
        Expr::Numgen { .. } | Expr::Const(_) | Expr::Random => vec![DataType::Integer],
        Expr::Bitwise(inner, _, _) => expr_types(inner),
        Expr::Opaque(s) => vec![DataType::Other(s.clone())],
    }
}

pub(crate) fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Saddr { v6 } => format!("{} saddr", if *v6 { "ip6" } else { "ip" }),
        Expr::Daddr { v6 } => format!("{} daddr", if *v6 { "ip6" } else { "ip" }),
        Expr::L4proto { .. } => "meta l4proto".into(),
        Expr::Sport { .. } => "th sport".into(),
        Expr::Dport { .. } => "th dport".into(),
        Expr::Mark => "meta mark".into(),
        Expr::CtMark => "ct mark".into(),
        Expr::CtState => "ct state".into(),
        Expr::TcpFlags => "tcp flags".into(),
        Expr::Iifname => "iifname".into(),
        Expr::Oifname => "oifname".into(),
        Expr::NfProto => "meta nfproto".into(),
        Expr::IpVersion { v6 } => format!("{} version", if *v6 { "ip6" } else { "ip" }),
        Expr::CtDirection => "ct direction".into(),
        Expr::FibType { daddr, dev_out } => format!(
            "fib {}{} type",
            if *daddr { "daddr" } else { "saddr" },
            match dev_out {
                None => "",
                Some(false) => " . iif",
                Some(true) => " . oif",
            }
        ),
        Expr::Numgen {
            inc,
            modulus,
            offset,
        } => format!(
            "numgen {} mod {modulus}{}",
            if *inc { "inc" } else { "random" },
            if *offset > 0 {
                format!(" offset {offset}")
            } else {
                String::new()
            }
        ),
        Expr::Concat(v) => v.iter().map(expr_text).collect::<Vec<_>>().join(" . "),
        Expr::Bitwise(e, op, v) => format!(
            "{} {} {v:#x}",
            expr_text(e),
            match op {
                BitOp::And => "&",
                BitOp::Or => "|",
                BitOp::Xor => "^",
            }
        ),
        Expr::Const(v) => format!("{v:#x}"),
        Expr::Random => "meta random".into(),
        Expr::Opaque(s) => s.clone(),
    }
}

/// `10.0.0.1`, `10.0.0.0/8`, `10.0.0.1-10.0.0.9` of the given family.
pub(crate) fn parse_addr_atom(w: &str, v6: bool) -> Option<Atom> {
    let one = |s: &str| -> Option<u128> {
        let a: IpAddr = s.parse().ok()?;
        (a.is_ipv6() == v6).then(|| addr_u128(a))
    };
    let bits = if v6 { 128 } else { 32 };
    if let Some((a, p)) = w.split_once('/') {
        let a = one(a)?;
        let p: u32 = p.parse().ok()?;
        if p > bits {
            return None;
        }
        let host = if p == bits {
            0
        } else if bits - p == 128 {
            u128::MAX
        } else {
            (1u128 << (bits - p)) - 1
        };
        let lo = a & !host;
        return Some(Atom::Range(lo, lo | host));
    }
    if let Some((a, b)) = w.split_once('-') {
        let (a, b) = (one(a)?, one(b)?);
        return (a <= b).then_some(Atom::Range(a, b));
    }
    one(w).map(|a| Atom::Range(a, a))
}

fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => {
            let p = s.parse().ok()?;
            Some((p, p))
        }
    }
}

type AddrPort = (Option<(u128, u128)>, Option<(u16, u16)>);

/// `1.2.3.4`, `1.2.3.4:80`, `1.2.3.4-1.2.3.9:80-90`, `[fd00::1]:80`, `fd00::1`, `:80`.
fn parse_addr_port(w: &str, v6: bool) -> Option<AddrPort> {
    if let Some(p) = w.strip_prefix(':') {
        return Some((None, Some(parse_port_range(p)?)));
    }
    let (a, p) = if v6 {
        if let Some(rest) = w.strip_prefix('[') {
            let (a, rest) = rest.split_once(']')?;
            let p = match rest.strip_prefix(':') {
                Some(p) => Some(parse_port_range(p)?),
                None if rest.is_empty() => None,
                None => return None,
            };
            (a.to_string(), p)
        } else {
            (w.to_string(), None)
        }
    } else {
        match w.split_once(':') {
            Some((a, p)) => (a.to_string(), Some(parse_port_range(p)?)),
            None => (w.to_string(), None),
        }
    };
    match parse_addr_atom(&a, v6)? {
        Atom::Range(lo, hi) => Some((Some((lo, hi)), p)),
        Atom::Str(_) => None,
    }
}
