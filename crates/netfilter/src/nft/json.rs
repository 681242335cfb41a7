//! The nft JSON reader: what `nft -j list ruleset` prints (libnftables' JSON, schema version 1,
//! `man libnftables-json`) and JSON command lists (`{"add": {...}}`, `{"insert": {"rule":
//! ...}}`, `{"flush": ...}`), read into the same model as the text reader ([`super::parse`]).
//!
//! * Tables, chains (base chains: type, hook, `prio`, policy), sets and maps (types, flags,
//!   elements: values, prefixes, ranges, concatenations, verdicts, element comments), named
//!   stateful objects (their declarations have no effect on a packet; a rule's `limit name`
//!   takes the named limit's `inv`).
//! * Rules: every statement of `expr` becomes the [`Stmt`] the text reader makes of what `nft
//!   list ruleset` prints for it, with the same implicit protocol dependencies, and the rule's
//!   [`NftRule::text`] is that printed form (what a step cites, what two captures are compared
//!   by). What kubepath does not model is an opaque statement with a [`Diagnostic`] (a packet
//!   reaching it is UNKNOWN, naming it): unknown statements and expressions included, never
//!   dropped. iptables-nft's compat expressions are listed by `nft -j` with their name only
//!   (`{"xt": {"type": "match", "name": "conntrack"}}`): opaque too, except the `comment`
//!   match and the `LOG`/`NFLOG` targets, which never change a packet's fate.
//! * Citations: a rule's [`SourceRef`] is the line where its object starts, [`NftRule::column`]
//!   the column there and [`NftRule::handle`] its handle (`nft -j` prints everything on line 1).
//! * Malformed JSON and shapes this reader does not know are a [`ParseError`] at the line and
//!   column of the offending value, saying what was expected. Lines starting with `#` before
//!   and after the JSON document (a pasted prompt, a note) are comments.
//!
//! What `nft -j` of nft 1.0.6 leaves out, measured on its output: a set's `dynamic` flag
//! (restored for a set that a rule of the table adds to or updates: nft marks such a set
//! dynamic), chain and table comments, `auto-merge`, a netdev chain's device.

use std::collections::HashMap;
use std::sync::Arc;

use super::parse::{
    atom_word, expr_text, expr_types, header_dep, is_opaque, l4_dep, parse_addr_atom,
    std_priority_of, tcp_flag_bit, type_name, validate,
};
use super::{
    Atom, BaseChain, BitOp, ChainType, CmpOp, DataType, Element, Expr, MapValue, NatSpec, NftChain,
    NftFamily, NftHook, NftRule, NftRuleset, NftSet, NftTable, NftVerdict, SetRef, Stmt,
};
use crate::types::{Diagnostic, ParseError, SourceRef};

type R<T> = Result<T, ParseError>;

// ---------------------------------------------------------------------------------------------
// JSON values with their positions.

/// A JSON value and where it starts (1-based line and column, in characters).
#[derive(Debug)]
struct J {
    v: V,
    line: u32,
    col: u32,
}

#[derive(Debug)]
enum V {
    Null,
    Bool(bool),
    /// A number as written.
    Num(String),
    Str(String),
    Arr(Vec<J>),
    /// Members in order (keys are unique).
    Obj(Vec<(String, J)>),
}

/// Nesting deeper than this is refused (nft's output nests a few levels; a deeper document
/// would only exhaust the stack).
const MAX_DEPTH: usize = 128;

struct Lexer<'a> {
    file: &'a Arc<str>,
    text: &'a str,
    i: usize,
    line: u32,
    col: u32,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.i..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "end of file".into(),
            Some('\n') => "end of line".into(),
            Some(c) if c.is_control() => format!("U+{:04X}", c as u32),
            Some(c) => format!("`{c}`"),
        }
    }

    fn err(&self, expected: &str) -> ParseError {
        self.err_at(self.line, self.col, expected, self.found())
    }

    fn err_at(&self, line: u32, col: u32, expected: &str, found: String) -> ParseError {
        ParseError {
            file: self.file.clone(),
            line,
            column: col,
            expected: expected.to_string(),
            found,
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r' | '\n')) {
            self.bump();
        }
    }

    /// Outside the document: blanks, a byte-order mark, and `#` comments to the end of line.
    fn skip_outside(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r' | '\n' | '\u{feff}') => {
                    self.bump();
                }
                Some('#') => {
                    while !matches!(self.peek(), None | Some('\n')) {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    fn value(&mut self, depth: usize) -> R<J> {
        self.skip_ws();
        let (line, col) = (self.line, self.col);
        if depth > MAX_DEPTH {
            return Err(self.err(&format!("at most {MAX_DEPTH} levels of nesting")));
        }
        let v = match self.peek() {
            Some('{') => {
                self.bump();
                let mut members: Vec<(String, J)> = Vec::new();
                self.skip_ws();
                if self.peek() == Some('}') {
                    self.bump();
                } else {
                    loop {
                        self.skip_ws();
                        if self.peek() != Some('"') {
                            return Err(self.err("a property name (a string)"));
                        }
                        let (kl, kc) = (self.line, self.col);
                        let k = self.string()?;
                        if members.iter().any(|(x, _)| *x == k) {
                            return Err(self.err_at(
                                kl,
                                kc,
                                "an object whose property names differ",
                                format!("\"{k}\" again"),
                            ));
                        }
                        self.skip_ws();
                        if self.peek() != Some(':') {
                            return Err(self.err("`:`"));
                        }
                        self.bump();
                        let v = self.value(depth + 1)?;
                        members.push((k, v));
                        self.skip_ws();
                        match self.peek() {
                            Some(',') => {
                                self.bump();
                            }
                            Some('}') => {
                                self.bump();
                                break;
                            }
                            _ => return Err(self.err("`,` or `}`")),
                        }
                    }
                }
                V::Obj(members)
            }
            Some('[') => {
                self.bump();
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(']') {
                    self.bump();
                } else {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.skip_ws();
                        match self.peek() {
                            Some(',') => {
                                self.bump();
                            }
                            Some(']') => {
                                self.bump();
                                break;
                            }
                            _ => return Err(self.err("`,` or `]`")),
                        }
                    }
                }
                V::Arr(items)
            }
            Some('"') => V::Str(self.string()?),
            Some('-' | '0'..='9') => V::Num(self.number()?),
            Some('t') => self.literal("true", V::Bool(true))?,
            Some('f') => self.literal("false", V::Bool(false))?,
            Some('n') => self.literal("null", V::Null)?,
            _ => return Err(self.err("a JSON value")),
        };
        Ok(J { v, line, col })
    }

    fn literal(&mut self, word: &str, v: V) -> R<V> {
        if self.text[self.i..].starts_with(word) {
            for _ in word.chars() {
                self.bump();
            }
            Ok(v)
        } else {
            Err(self.err("a JSON value"))
        }
    }

    fn number(&mut self) -> R<String> {
        let start = self.i;
        let digits = |l: &mut Self| -> usize {
            let mut n = 0;
            while matches!(l.peek(), Some('0'..='9')) {
                l.bump();
                n += 1;
            }
            n
        };
        if self.peek() == Some('-') {
            self.bump();
        }
        if self.peek() == Some('0') {
            self.bump();
        } else if digits(self) == 0 {
            return Err(self.err("a digit"));
        }
        if self.peek() == Some('.') {
            self.bump();
            if digits(self) == 0 {
                return Err(self.err("a digit"));
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if digits(self) == 0 {
                return Err(self.err("a digit"));
            }
        }
        Ok(self.text[start..self.i].to_string())
    }

    fn hex4(&mut self) -> R<u32> {
        let mut v = 0;
        for _ in 0..4 {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.err("four hexadecimal digits after `\\u`"))?;
            self.bump();
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn string(&mut self) -> R<String> {
        self.bump(); // the opening quote
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("`\"` (the end of the string)")),
                Some('"') => {
                    self.bump();
                    return Ok(out);
                }
                Some('\\') => {
                    self.bump();
                    let c = match self.peek() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('u') => {
                            self.bump();
                            let (l, c) = (self.line, self.col);
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi) {
                                if !self.text[self.i..].starts_with("\\u") {
                                    return Err(self.err("the low half of a surrogate pair"));
                                }
                                self.bump();
                                self.bump();
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err(self.err_at(
                                        l,
                                        c,
                                        "a valid surrogate pair",
                                        format!("\\u{hi:04x}\\u{lo:04x}"),
                                    ));
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            let ch = char::from_u32(cp).ok_or_else(|| {
                                self.err_at(l, c, "a Unicode scalar value", format!("\\u{cp:04x}"))
                            })?;
                            out.push(ch);
                            continue;
                        }
                        _ => {
                            return Err(
                                self.err("an escape (`\\\"`, `\\\\`, `\\n`, `\\u0041`, ...)")
                            )
                        }
                    };
                    self.bump();
                    out.push(c);
                }
                Some(c) if (c as u32) < 0x20 => {
                    return Err(self.err("a character of a string (control characters are escaped)"))
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }
}

/// Parse `text` as one JSON document (with `#` comment lines around it).
fn parse_document(file: &Arc<str>, text: &str) -> R<J> {
    let mut lx = Lexer {
        file,
        text,
        i: 0,
        line: 1,
        col: 1,
    };
    lx.skip_outside();
    let doc = lx.value(0)?;
    lx.skip_outside();
    if lx.peek().is_some() {
        return Err(lx.err("the end of the JSON document"));
    }
    Ok(doc)
}

/// The first character of `text` that is not blank and not in a `#` comment line.
fn first_char(text: &str) -> Option<(usize, char)> {
    let mut comment = false;
    for (i, c) in text.char_indices() {
        match c {
            '\n' => comment = false,
            _ if comment => {}
            '#' => comment = true,
            ' ' | '\t' | '\r' | '\u{feff}' => {}
            c => return Some((i, c)),
        }
    }
    None
}

/// Whether `text` is JSON rather than nft text: its first character (past blanks and `#`
/// comment lines) is `{`, which no nft text starts with.
pub(crate) fn is_json(text: &str) -> bool {
    first_char(text).is_some_and(|(_, c)| c == '{')
}

/// Whether `text` starts like libnftables' JSON: `{` and then the `"nftables"` property
/// (enough of the text is the first line or two of a large document).
pub(crate) fn sniff(text: &str) -> bool {
    let Some((i, '{')) = first_char(text) else {
        return false;
    };
    text[i + 1..].trim_start().starts_with("\"nftables\"")
}

// ---------------------------------------------------------------------------------------------
// JSON value helpers.

fn describe(j: &J) -> String {
    match &j.v {
        V::Null => "null".into(),
        V::Bool(b) => format!("{b}"),
        V::Num(n) => n.clone(),
        V::Str(s) => format!("\"{s}\""),
        V::Arr(a) if a.is_empty() => "an empty array".into(),
        V::Arr(_) => "an array".into(),
        V::Obj(m) => match m.first() {
            None => "an empty object".into(),
            Some((k, _)) => format!("an object {{\"{k}\": ...}}"),
        },
    }
}

fn members(j: &J) -> Option<&[(String, J)]> {
    match &j.v {
        V::Obj(m) => Some(m),
        _ => None,
    }
}

fn get<'j>(j: &'j J, k: &str) -> Option<&'j J> {
    members(j)?.iter().find(|(x, _)| x == k).map(|(_, v)| v)
}

fn as_str(j: &J) -> Option<&str> {
    match &j.v {
        V::Str(s) => Some(s),
        _ => None,
    }
}

fn as_u64(j: &J) -> Option<u64> {
    match &j.v {
        V::Num(n) => n.parse().ok(),
        _ => None,
    }
}

fn as_i64(j: &J) -> Option<i64> {
    match &j.v {
        V::Num(n) => n.parse().ok(),
        _ => None,
    }
}

/// The one `{"key": value}` member of an object.
fn single(j: &J) -> Option<(&str, &J)> {
    match members(j)? {
        [(k, v)] => Some((k.as_str(), v)),
        _ => None,
    }
}

/// A one-item-or-list property: its items.
fn items(j: &J) -> Vec<&J> {
    match &j.v {
        V::Arr(a) => a.iter().collect(),
        _ => vec![j],
    }
}

/// `j` written back as compact JSON (an expression or statement kubepath does not know, in
/// its diagnostics).
fn compact(j: &J) -> String {
    fn esc(s: &str) -> String {
        let mut o = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }
    match &j.v {
        V::Null => "null".into(),
        V::Bool(b) => b.to_string(),
        V::Num(n) => n.clone(),
        V::Str(s) => esc(s),
        V::Arr(a) => format!("[{}]", a.iter().map(compact).collect::<Vec<_>>().join(", ")),
        V::Obj(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", esc(k), compact(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Printing expressions and statements as `nft list ruleset` does.

/// How a value prints: marks in hexadecimal (`0x00004000`), interface names quoted.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Cx {
    hex: bool,
    quote: bool,
}

/// `meta` keys nft prints without `meta`.
const UNQUALIFIED_META: &[&str] = &["iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup"];

/// How the values compared with (or stored for) expression `e` print, one per concatenated
/// component.
fn value_cx(e: &J) -> Vec<Cx> {
    let hex = Cx {
        hex: true,
        quote: false,
    };
    let quote = Cx {
        hex: false,
        quote: true,
    };
    match single(e) {
        Some(("concat", arr)) => match &arr.v {
            V::Arr(parts) => parts.iter().flat_map(value_cx).collect(),
            _ => vec![Cx::default()],
        },
        Some(("meta", m)) => match get(m, "key").and_then(as_str) {
            Some("mark") => vec![hex],
            Some(
                "iif" | "oif" | "iifname" | "oifname" | "ibrname" | "obrname" | "ibriport"
                | "obriport" | "sdifname",
            ) => vec![quote],
            _ => vec![Cx::default()],
        },
        Some(("ct", c)) => match (get(c, "key").and_then(as_str), get(c, "dir")) {
            (Some("mark"), None) => vec![hex],
            _ => vec![Cx::default()],
        },
        Some(("fib", f)) => match get(f, "result").and_then(as_str) {
            Some("oif" | "oifname") => vec![quote],
            _ => vec![Cx::default()],
        },
        Some(("&" | "|" | "^", a)) => match &a.v {
            V::Arr(x) if x.len() == 2 => value_cx(&x[0]),
            _ => vec![Cx::default()],
        },
        _ => vec![Cx::default()],
    }
}

/// Seconds as nft prints a time (`3h`, `1m30s`, `10s`).
fn duration(mut s: u64) -> String {
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, n) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= n {
            out.push_str(&format!("{}{unit}", s / n));
            s %= n;
        }
    }
    out
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// An expression or value as nft prints it. `cx` applies to the value's components
/// (`cxs[i]` to the i-th of a concatenation).
fn text_of(j: &J, cxs: &[Cx]) -> String {
    let cx = cxs.first().copied().unwrap_or_default();
    match &j.v {
        V::Null => "null".into(),
        V::Bool(true) => "exists".into(),
        V::Bool(false) => "missing".into(),
        V::Num(n) => match (cx.hex, n.parse::<u64>()) {
            (true, Ok(v)) => format!("0x{v:08x}"),
            _ => n.clone(),
        },
        V::Str(s) if cx.quote && !s.starts_with('@') => quoted(s),
        V::Str(s) => s.clone(),
        V::Arr(a) => a
            .iter()
            .map(|x| text_of(x, cxs))
            .collect::<Vec<_>>()
            .join(","),
        V::Obj(_) => {
            let Some((k, v)) = single(j) else {
                return compact(j);
            };
            let s = |key: &str| get(v, key).and_then(as_str).unwrap_or("");
            let n = |key: &str| get(v, key).map(|x| text_of(x, &[])).unwrap_or_default();
            match k {
                "payload" => match get(v, "base") {
                    Some(_) => format!("@{},{},{}", s("base"), n("offset"), n("len")),
                    None => format!("{} {}", s("protocol"), s("field")),
                },
                "meta" if UNQUALIFIED_META.contains(&s("key")) => s("key").to_string(),
                "meta" => format!("meta {}", s("key")),
                "ct" => match get(v, "dir").and_then(as_str) {
                    Some(d) => format!("ct {d} {}", s("key")),
                    None => format!("ct {}", s("key")),
                },
                "fib" => {
                    let flags: Vec<String> = get(v, "flags")
                        .map(|f| items(f).into_iter().map(|x| text_of(x, &[])).collect())
                        .unwrap_or_default();
                    format!("fib {} {}", flags.join(" . "), s("result"))
                }
                "numgen" => {
                    let off = get(v, "offset").and_then(as_u64).unwrap_or(0);
                    format!(
                        "numgen {} mod {}{}",
                        s("mode"),
                        n("mod"),
                        if off > 0 {
                            format!(" offset {off}")
                        } else {
                            String::new()
                        }
                    )
                }
                "jhash" | "symhash" => {
                    let mut o = k.to_string();
                    if let Some(e) = get(v, "expr") {
                        o.push(' ');
                        o.push_str(&text_of(e, &[]));
                    }
                    o.push_str(&format!(" mod {}", n("mod")));
                    if let Some(seed) = get(v, "seed").and_then(as_u64) {
                        o.push_str(&format!(" seed 0x{seed:x}"));
                    }
                    if let Some(off) = get(v, "offset").and_then(as_u64).filter(|o| *o > 0) {
                        o.push_str(&format!(" offset {off}"));
                    }
                    o
                }
                "concat" => match &v.v {
                    V::Arr(parts) => parts
                        .iter()
                        .enumerate()
                        .map(|(i, p)| text_of(p, cxs.get(i..).unwrap_or(&[])))
                        .collect::<Vec<_>>()
                        .join(" . "),
                    _ => compact(j),
                },
                "prefix" => format!("{}/{}", s("addr"), n("len")),
                "range" => match &v.v {
                    V::Arr(b) if b.len() == 2 => {
                        format!("{}-{}", text_of(&b[0], cxs), text_of(&b[1], cxs))
                    }
                    _ => compact(j),
                },
                "set" => {
                    let els: Vec<String> = items(v)
                        .into_iter()
                        .map(|e| elem_text(e, cxs, &[]))
                        .collect();
                    format!("{{ {} }}", els.join(", "))
                }
                "map" => {
                    let key = get(v, "key");
                    let kcx = key.map(value_cx).unwrap_or_default();
                    let data = match get(v, "data").map(|d| (d, single(d))) {
                        Some((_, Some(("set", els)))) => {
                            let els: Vec<String> = items(els)
                                .into_iter()
                                .map(|e| elem_text(e, &kcx, cxs))
                                .collect();
                            format!("{{ {} }}", els.join(", "))
                        }
                        Some((d, _)) => text_of(d, &[]),
                        None => String::new(),
                    };
                    format!(
                        "{} map {data}",
                        key.map(|k| text_of(k, &[])).unwrap_or_default()
                    )
                }
                "elem" => elem_text(j, cxs, &[]),
                "&" | "|" | "^" | "<<" | ">>" => match &v.v {
                    V::Arr(x) if x.len() == 2 => {
                        let lcx = value_cx(&x[0]);
                        format!("{} {k} {}", text_of(&x[0], &[]), text_of(&x[1], &lcx))
                    }
                    _ => compact(j),
                },
                "rt" => match get(v, "family").and_then(as_str) {
                    Some(f) => format!("rt {f} {}", s("key")),
                    None => format!("rt {}", s("key")),
                },
                "tcp option" | "sctp chunk" | "dccp option" => match get(v, "field") {
                    Some(_) => format!("{k} {} {}", s("name"), s("field")),
                    None => format!("{k} {}", s("name")),
                },
                "exthdr" => match get(v, "field") {
                    Some(_) => format!("{} {}", s("name"), s("field")),
                    None => format!("exthdr {}", s("name")),
                },
                "socket" => format!("socket {}", s("key")),
                "osf" => format!("osf {}", s("key")),
                "ipsec" => format!("ipsec {} {}", s("dir"), s("key")),
                "accept" | "drop" | "continue" | "return" => k.to_string(),
                "jump" | "goto" => format!("{k} {}", s("target")),
                _ => compact(j),
            }
        }
    }
}

/// A set element (`key`, `key : value`, with its options) as nft prints it.
fn elem_text(e: &J, kcx: &[Cx], dcx: &[Cx]) -> String {
    if let V::Arr(pair) = &e.v {
        if pair.len() == 2 {
            return format!(
                "{} : {}",
                elem_text(&pair[0], kcx, &[]),
                text_of(&pair[1], dcx)
            );
        }
    }
    if let Some(("elem", o)) = single(e) {
        let mut s = get(o, "val").map(|v| text_of(v, kcx)).unwrap_or_default();
        if let Some(t) = get(o, "timeout").and_then(as_u64) {
            s.push_str(&format!(" timeout {}", duration(t)));
        }
        if let Some(t) = get(o, "expires").and_then(as_u64) {
            s.push_str(&format!(" expires {}", duration(t)));
        }
        if let Some(c) = get(o, "comment").and_then(as_str) {
            s.push_str(&format!(" comment {}", quoted(c)));
        }
        return s;
    }
    text_of(e, kcx)
}

/// The bitmask types: for them a bare value means "any of these bits" (`in`), so nft writes
/// `==` when it means equality.
fn is_bitmask(e: &J) -> bool {
    match single(e) {
        Some(("payload", p)) => {
            get(p, "protocol").and_then(as_str) == Some("tcp")
                && get(p, "field").and_then(as_str) == Some("flags")
        }
        Some(("ct", c)) => matches!(
            get(c, "key").and_then(as_str),
            Some("state" | "status" | "event")
        ),
        _ => false,
    }
}

fn is_tcp_flags(e: &J) -> bool {
    single(e).is_some_and(|(k, p)| {
        k == "payload"
            && get(p, "protocol").and_then(as_str) == Some("tcp")
            && get(p, "field").and_then(as_str) == Some("flags")
    })
}

fn is_set_value(r: &J) -> bool {
    matches!(&r.v, V::Str(s) if s.starts_with('@')) || single(r).is_some_and(|(k, _)| k == "set")
}

/// A `match` statement as nft prints it.
fn match_text(left: &J, op: &str, right: &J) -> String {
    let cxs = value_cx(left);
    // `tcp flags & (syn | ack) == syn` prints as `tcp flags syn / syn,ack`.
    if let Some(("&", arr)) = single(left) {
        if let V::Arr(x) = &arr.v {
            if x.len() == 2 && is_tcp_flags(&x[0]) && matches!(op, "==" | "!=") {
                let neg = if op == "!=" { "!= " } else { "" };
                return format!(
                    "tcp flags {neg}{} / {}",
                    text_of(right, &[]),
                    text_of(&x[1], &[])
                );
            }
        }
    }
    let l = text_of(left, &[]);
    let mut r = text_of(right, &cxs);
    // `ct expiration` is a time: JSON gives seconds, the text listing `5s` (review 13).
    if l == "ct expiration" && r.chars().all(|c| c.is_ascii_digit()) && !r.is_empty() {
        r.push('s');
    }
    let binop = single(left).is_some_and(|(k, _)| matches!(k, "&" | "|" | "^" | "<<" | ">>"));
    // nft writes `==` after a binary operation, and for a bitmask type compared with one
    // value (a bare value there means `in`).
    let explicit_eq = binop || (is_bitmask(left) && !is_set_value(right));
    match op {
        "in" => format!("{l} {r}"),
        "==" if !explicit_eq => format!("{l} {r}"),
        _ => format!("{l} {op} {r}"),
    }
}

/// A statement kubepath does not model, as nft prints it (or as its JSON, for one nft 1.0.6
/// would not print).
fn stmt_text(k: &str, v: &J) -> String {
    let s = |key: &str| get(v, key).map(|x| text_of(x, &[])).unwrap_or_default();
    let inv = get(v, "inv").is_some_and(|x| matches!(x.v, V::Bool(true)));
    let over = if inv { "over " } else { "" };
    match (k, &v.v) {
        (_, V::Null) => k.to_string(),
        ("quota", V::Str(n)) => format!("quota name {}", quoted(n)),
        ("quota", V::Obj(_)) => {
            let unit = |key: &str| get(v, key).and_then(as_str).unwrap_or("bytes").to_string();
            let mut o = format!("quota {over}{} {}", s("val"), unit("val_unit"));
            if get(v, "used").and_then(as_u64).is_some_and(|u| u > 0) {
                o.push_str(&format!(" used {} {}", s("used"), unit("used_unit")));
            }
            o
        }
        ("ct count", V::Obj(_)) => format!("ct count {over}{}", s("val")),
        ("ct helper" | "ct timeout" | "ct expectation", V::Str(n)) => {
            format!("{k} set {}", quoted(n))
        }
        ("ct helper" | "ct timeout" | "ct expectation", _) => {
            format!("{k} set {}", text_of(v, &[]))
        }
        ("dup", V::Obj(_)) => {
            let mut o = format!("dup to {}", s("addr"));
            if let Some(d) = get(v, "dev") {
                o.push_str(&format!(
                    " device {}",
                    text_of(
                        d,
                        &[Cx {
                            hex: false,
                            quote: true
                        }]
                    )
                ));
            }
            o
        }
        ("meter", V::Obj(_)) => {
            let mut o = format!("meter {}", s("name"));
            if get(v, "size").is_some() {
                o.push_str(&format!(" size {}", s("size")));
            }
            let inner = get(v, "stmt")
                .and_then(|x| single(x).map(|(k, v)| stmt_text(k, v)))
                .unwrap_or_default();
            format!("{o} {{ {} {inner} }}", s("key"))
        }
        ("flow", V::Obj(_)) => format!("flow {} {}", s("op"), s("flowtable")),
        ("xt", V::Obj(_)) => format!("xt {} {}", s("type"), s("name")),
        ("limit", V::Obj(_)) => limit_text(v),
        ("log", _) => log_text(v),
        ("counter", V::Obj(_)) => "counter".into(),
        (_, V::Str(x)) => format!("{k} {}", quoted(x)),
        _ => format!("{k} {}", compact(v)),
    }
}

/// An anonymous `limit` as nft prints it (the default burst of 5 packets left out).
fn limit_text(v: &J) -> String {
    let s = |key: &str, d: &str| get(v, key).and_then(as_str).unwrap_or(d).to_string();
    let rate = get(v, "rate").map(|x| text_of(x, &[])).unwrap_or_default();
    let burst = get(v, "burst").and_then(as_u64).unwrap_or(0);
    let over = get(v, "inv").is_some_and(|x| matches!(x.v, V::Bool(true)));
    let (per, rate_unit) = (s("per", "second"), s("rate_unit", "packets"));
    let mut text = format!("limit rate {}", if over { "over " } else { "" });
    if rate_unit == "packets" {
        text.push_str(&format!("{rate}/{per}"));
        if burst != 0 && burst != 5 {
            text.push_str(&format!(" burst {burst} packets"));
        }
    } else {
        text.push_str(&format!("{rate} {rate_unit}/{per}"));
        if burst != 0 {
            text.push_str(&format!(" burst {burst} {}", s("burst_unit", "bytes")));
        }
    }
    text
}

fn log_text(v: &J) -> String {
    let mut o = String::from("log");
    if let Some(p) = get(v, "prefix").and_then(as_str) {
        o.push_str(&format!(" prefix {}", quoted(p)));
    }
    for key in ["group", "snaplen", "queue-threshold", "level"] {
        if let Some(x) = get(v, key) {
            o.push_str(&format!(" {key} {}", text_of(x, &[])));
        }
    }
    if let Some(f) = get(v, "flags") {
        o.push_str(&format!(" flags {}", text_of(f, &[])));
    }
    o
}

// ---------------------------------------------------------------------------------------------
// The reader.

/// A name checked once the whole document is read (nft lists every chain and set of a table
/// before the rules that name them; a command list may name them before it adds them).
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

/// How an object arrives: listed (`nft -j list ruleset`), or in an `add`/`create` or
/// `insert` command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    List,
    Add,
    Insert,
}

const ICMP_REJECT: &[&str] = &[
    "port-unreachable",
    "host-unreachable",
    "net-unreachable",
    "prot-unreachable",
    "admin-prohibited",
    "net-prohibited",
    "host-prohibited",
    "no-route",
    "addr-unreachable",
    "policy-fail",
    "reject-route",
];

struct Rd<'r> {
    file: Arc<str>,
    rs: &'r mut NftRuleset,
    diags: Vec<Diagnostic>,
    pending: Vec<Pending>,
    /// Named limits and quotas, by table, kind and name: whether they are `over` (`inv`).
    objects: HashMap<(usize, &'static str, String), bool>,
    /// The tables this document names.
    touched: Vec<usize>,
    /// Matches nft implies before the statement being read (a header's protocol).
    deps: Vec<Stmt>,
}

/// Read libnftables JSON into `rs` (see the module documentation).
pub(crate) fn parse_into(rs: &mut NftRuleset, file: &str, text: &str) -> R<Vec<Diagnostic>> {
    let file: Arc<str> = Arc::from(file);
    let doc = parse_document(&file, text)?;
    let mut rd = Rd {
        file,
        rs,
        diags: Vec::new(),
        pending: Vec::new(),
        objects: HashMap::new(),
        touched: Vec::new(),
        deps: Vec::new(),
    };
    rd.document(&doc)?;
    rd.resolve()?;
    rd.restore_dynamic();
    validate(rd.rs)?;
    Ok(rd.diags)
}

fn nfproto_dep(v6: bool) -> Stmt {
    Stmt::Cmp {
        left: Expr::NfProto,
        op: CmpOp::Eq,
        right: vec![if v6 {
            Atom::Range(10, 10)
        } else {
            Atom::Range(2, 2)
        }],
    }
}

impl Rd<'_> {
    fn err(&self, j: &J, expected: &str) -> ParseError {
        self.err_found(j, expected, describe(j))
    }

    fn err_found(&self, j: &J, expected: &str, found: String) -> ParseError {
        ParseError {
            file: self.file.clone(),
            line: j.line,
            column: j.col,
            expected: expected.to_string(),
            found,
        }
    }

    fn src(&self, line: u32) -> SourceRef {
        SourceRef {
            file: self.file.clone(),
            line,
        }
    }

    fn req<'j>(&self, j: &'j J, key: &str) -> R<&'j J> {
        if members(j).is_none() {
            return Err(self.err(j, "an object"));
        }
        get(j, key).ok_or_else(|| self.err(j, &format!("a \"{key}\" property")))
    }

    fn req_str<'j>(&self, j: &'j J, key: &str) -> R<&'j str> {
        let v = self.req(j, key)?;
        as_str(v).ok_or_else(|| self.err(v, &format!("a string (\"{key}\")")))
    }

    fn opt_str<'j>(&self, j: &'j J, key: &str) -> R<Option<&'j str>> {
        match get(j, key) {
            None => Ok(None),
            Some(v) => as_str(v)
                .map(Some)
                .ok_or_else(|| self.err(v, &format!("a string (\"{key}\")"))),
        }
    }

    fn opt_u64(&self, j: &J, key: &str) -> R<Option<u64>> {
        match get(j, key) {
            None => Ok(None),
            Some(v) => as_u64(v)
                .map(Some)
                .ok_or_else(|| self.err(v, &format!("a non-negative integer (\"{key}\")"))),
        }
    }

    fn opt_bool(&self, j: &J, key: &str) -> R<bool> {
        match get(j, key).map(|v| (v, &v.v)) {
            None => Ok(false),
            Some((_, V::Bool(b))) => Ok(*b),
            Some((v, _)) => Err(self.err(v, &format!("true or false (\"{key}\")"))),
        }
    }

    fn strings<'j>(&self, j: &'j J, what: &str) -> R<Vec<&'j str>> {
        items(j)
            .into_iter()
            .map(|x| as_str(x).ok_or_else(|| self.err(x, what)))
            .collect()
    }

    fn document(&mut self, doc: &J) -> R<()> {
        let list = match members(doc) {
            Some([(k, v)]) if k == "nftables" => v,
            _ => {
                return Err(self.err(
                    doc,
                    "an object with the one property \"nftables\" (libnftables JSON)",
                ))
            }
        };
        let V::Arr(objects) = &list.v else {
            return Err(self.err(list, "an array of ruleset objects or commands"));
        };
        for it in objects {
            self.item(it)?;
        }
        Ok(())
    }

    fn item(&mut self, it: &J) -> R<()> {
        let Some((k, v)) = single(it) else {
            return Err(self.err(
                it,
                "an object with one property ({\"table\": {...}}, {\"add\": {...}}, ...)",
            ));
        };
        match k {
            "metainfo" => {
                if let Some(n) = self.opt_u64(v, "json_schema_version")? {
                    if n > 1 {
                        self.diags.push(Diagnostic {
                            source: self.src(v.line),
                            message: format!(
                                "nft JSON schema version {n}: kubepath reads version 1 (nft 1.0.x) and read it as such"
                            ),
                        });
                    }
                }
                Ok(())
            }
            "add" | "create" | "insert" => {
                let Some((k2, v2)) = single(v) else {
                    return Err(
                        self.err(v, "one object ({\"rule\": {...}}, {\"chain\": {...}}, ...)")
                    );
                };
                if k == "insert" && k2 != "rule" {
                    return Err(self.err(v, "{\"rule\": {...}} (insert takes a rule)"));
                }
                let cmd = if k == "insert" { Cmd::Insert } else { Cmd::Add };
                self.object(k2, v2, v, cmd)
            }
            "flush" => self.flush(v),
            "delete" | "destroy" | "replace" | "rename" | "reset" | "list" => Err(self.err_found(
                it,
                "a listed object or a command kubepath reads (add, create, insert, flush)",
                format!("the command \"{k}\""),
            )),
            _ => self.object(k, v, it, Cmd::List),
        }
    }

    fn object(&mut self, kind: &str, v: &J, at: &J, cmd: Cmd) -> R<()> {
        match kind {
            "table" => self.table_obj(v).map(|_| ()),
            "chain" => self.chain_obj(v),
            "rule" => self.rule_obj(v, cmd),
            "set" => self.set_obj(v, false),
            "map" => self.set_obj(v, true),
            "element" => self.element_obj(v),
            "counter" | "quota" | "limit" | "ct helper" | "ct timeout" | "ct expectation"
            | "flowtable" | "synproxy" | "secmark" => self.named_obj(kind, v),
            _ => Err(self.err_found(
                at,
                "table, chain, rule, set, map, element or a named object (counter, quota, limit, ct helper, ct timeout, ct expectation, flowtable, synproxy, secmark)",
                format!("\"{kind}\""),
            )),
        }
    }

    fn family(&self, j: &J) -> R<NftFamily> {
        match get(j, "family") {
            None => Ok(NftFamily::Ip),
            Some(f) => as_str(f)
                .and_then(NftFamily::parse)
                .ok_or_else(|| self.err(f, "a family (ip, ip6, inet, arp, bridge, netdev)")),
        }
    }

    fn touch(&mut self, t: usize) {
        if !self.touched.contains(&t) {
            self.touched.push(t);
        }
    }

    /// `{"family", "name"}` of a table, created if new.
    fn table_obj(&mut self, v: &J) -> R<usize> {
        let fam = self.family(v)?;
        let name = self.req_str(v, "name")?;
        let t = match self
            .rs
            .tables
            .iter()
            .position(|t| t.family == fam && t.name == name)
        {
            Some(i) => i,
            None => {
                self.rs.tables.push(NftTable {
                    family: fam,
                    name: name.to_string(),
                    chains: Vec::new(),
                    sets: Vec::new(),
                    chain_ix: HashMap::new(),
                    set_ix: HashMap::new(),
                });
                self.rs.tables.len() - 1
            }
        };
        self.touch(t);
        // `flags dormant` (nft 1.0.6's JSON prints it as "d"): the kernel runs none of the
        // table's chains. Neither reader models it yet; say so rather than drop it.
        if let Some(f) = get(v, "flags") {
            if items(f)
                .into_iter()
                .any(|x| matches!(as_str(x), Some("dormant" | "d")))
            {
                self.diags.push(Diagnostic {
                    source: self.src(v.line),
                    message: format!(
                        "table {fam} {name} is dormant (`flags dormant`): the kernel runs none of its chains, but kubepath evaluates them"
                    ),
                });
            }
        }
        Ok(t)
    }

    /// `{"family", "table"}` of an object: an existing table.
    fn table_ref(&mut self, v: &J) -> R<usize> {
        let fam = self.family(v)?;
        let name = self.req_str(v, "table")?;
        let t = self
            .rs
            .tables
            .iter()
            .position(|t| t.family == fam && t.name == name)
            .ok_or_else(|| {
                self.err_found(
                    get(v, "table").unwrap_or(v),
                    &format!("an existing {fam} table"),
                    format!("\"{name}\""),
                )
            })?;
        self.touch(t);
        Ok(t)
    }

    fn declare_chain(&mut self, t: usize, name: &str, line: u32) -> usize {
        if let Some(&i) = self.rs.tables[t].chain_ix.get(name) {
            return i;
        }
        let seq = self.rs.next_seq;
        self.rs.next_seq += 1;
        let source = self.src(line);
        let tab = &mut self.rs.tables[t];
        tab.chains.push(NftChain {
            name: name.to_string(),
            base: None,
            rules: Vec::new(),
            source,
            seq,
        });
        tab.chain_ix.insert(name.to_string(), tab.chains.len() - 1);
        tab.chains.len() - 1
    }

    fn chain_obj(&mut self, v: &J) -> R<()> {
        let t = self.table_ref(v)?;
        let family = self.rs.tables[t].family;
        let name = self.req_str(v, "name")?;
        let ci = self.declare_chain(t, name, v.line);
        let is_base = ["type", "hook", "prio"].iter().any(|k| get(v, k).is_some());
        if !is_base {
            if let Some(p) = get(v, "policy") {
                return Err(self.err(
                    p,
                    "a base chain (a policy needs \"type\", \"hook\" and \"prio\")",
                ));
            }
            return Ok(());
        }
        let ty_j = self.req(v, "type")?;
        let kind = match as_str(ty_j) {
            Some("filter") => ChainType::Filter,
            Some("nat") => ChainType::Nat,
            Some("route") => ChainType::Route,
            _ => return Err(self.err(ty_j, "filter, nat or route")),
        };
        let hook_j = self.req(v, "hook")?;
        let hook = as_str(hook_j).and_then(NftHook::parse).ok_or_else(|| {
            self.err(
                hook_j,
                "a hook (prerouting, input, forward, output, postrouting, ingress, egress)",
            )
        })?;
        let prio_j = self.req(v, "prio")?;
        let priority = match &prio_j.v {
            V::Num(_) => as_i64(prio_j)
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| self.err(prio_j, "a priority within a 32-bit integer"))?,
            V::Str(name) => {
                std_priority_of(name, family, hook).map_err(|why| self.err(prio_j, &why))?
            }
            _ => return Err(self.err(prio_j, "a priority (a number)")),
        };
        // As the text reader: the kernel refuses a nat chain at or below conntrack (-200).
        if kind == ChainType::Nat && priority <= -200 {
            return Err(self.err(
                prio_j,
                "a nat chain priority above -200 (conntrack's; the kernel refuses the chain, EOPNOTSUPP)",
            ));
        }
        let ok = matches!(
            (family, kind, hook),
            (_, ChainType::Filter, _)
                | (
                    NftFamily::Ip | NftFamily::Ip6 | NftFamily::Inet,
                    ChainType::Nat,
                    NftHook::Prerouting | NftHook::Input | NftHook::Output | NftHook::Postrouting
                )
                | (
                    NftFamily::Ip | NftFamily::Ip6 | NftFamily::Inet,
                    ChainType::Route,
                    NftHook::Output | NftHook::Prerouting
                )
        );
        if !ok {
            return Err(self.err(
                hook_j,
                &format!(
                    "a hook the {} chain type supports in the {family} family",
                    as_str(ty_j).unwrap_or_default()
                ),
            ));
        }
        let policy_drop = match get(v, "policy") {
            None => false,
            Some(p) => match as_str(p) {
                Some("accept") => false,
                Some("drop") => true,
                _ => return Err(self.err(p, "accept or drop")),
            },
        };
        self.rs.tables[t].chains[ci].base = Some(BaseChain {
            kind,
            hook,
            priority,
            policy_drop,
        });
        Ok(())
    }

    fn named_obj(&mut self, kind: &str, v: &J) -> R<()> {
        let t = self.table_ref(v)?;
        let name = self.req_str(v, "name")?.to_string();
        let kind = match kind {
            "limit" => "limit",
            "quota" => "quota",
            // Declarations only: what uses them is a statement of a rule.
            _ => return Ok(()),
        };
        let inv = self.opt_bool(v, "inv")?;
        self.objects.insert((t, kind, name), inv);
        Ok(())
    }

    fn set_obj(&mut self, v: &J, is_map: bool) -> R<()> {
        let t = self.table_ref(v)?;
        let name = self.req_str(v, "name")?.to_string();
        let ty_j = self.req(v, "type")?;
        let key: Vec<DataType> = self
            .strings(ty_j, "a type name or an array of type names")?
            .into_iter()
            .flat_map(|s| s.split(" . "))
            .map(DataType::parse)
            .collect();
        if key.is_empty() {
            return Err(self.err(ty_j, "a type name or an array of type names"));
        }
        let data = match get(v, "map") {
            Some(d) => Some(DataType::parse(
                as_str(d).ok_or_else(|| self.err(d, "a data type (\"map\")"))?,
            )),
            None if is_map => return Err(self.err(v, "a \"map\" property (the map's data type)")),
            None => None,
        };
        let flags = match get(v, "flags") {
            None => Vec::new(),
            Some(f) => self
                .strings(f, "a flag or an array of flags")?
                .into_iter()
                .map(str::to_string)
                .collect(),
        };
        let mut set = NftSet {
            name: Some(name.clone()),
            key,
            data,
            flags,
            elements: Vec::new(),
            source: Some(self.src(v.line)),
        };
        if let Some(e) = get(v, "elem") {
            set.elements = self.elements(t, &set, &items(e))?;
        }
        let tab = &mut self.rs.tables[t];
        if let Some(&i) = tab.set_ix.get(&name) {
            tab.sets[i].elements.extend(set.elements);
        } else {
            tab.sets.push(set);
            tab.set_ix.insert(name, tab.sets.len() - 1);
        }
        Ok(())
    }

    fn element_obj(&mut self, v: &J) -> R<()> {
        let t = self.table_ref(v)?;
        let name = self.req_str(v, "name")?;
        let Some(&si) = self.rs.tables[t].set_ix.get(name) else {
            return Err(self.err_found(
                get(v, "name").unwrap_or(v),
                "the name of an existing set or map",
                format!("\"{name}\""),
            ));
        };
        let e = self.req(v, "elem")?;
        // The set's types and flags (not its elements: adding to a large set element by
        // element would copy it each time).
        let s = &self.rs.tables[t].sets[si];
        let set = NftSet {
            name: s.name.clone(),
            key: s.key.clone(),
            data: s.data.clone(),
            flags: s.flags.clone(),
            elements: Vec::new(),
            source: None,
        };
        let els = self.elements(t, &set, &items(e))?;
        self.rs.tables[t].sets[si].elements.extend(els);
        Ok(())
    }

    fn flush(&mut self, v: &J) -> R<()> {
        let Some((k, o)) = single(v) else {
            return Err(self.err(
                v,
                "one object ({\"ruleset\": null}, {\"table\": {...}}, ...)",
            ));
        };
        match k {
            "ruleset" => {
                // Names read so far are checked against what they named before it goes.
                self.resolve()?;
                self.rs.tables.clear();
                self.touched.clear();
                self.objects.clear();
            }
            "table" => {
                let fam = self.family(o)?;
                let name = self.req_str(o, "name")?;
                let t = self
                    .rs
                    .tables
                    .iter()
                    .position(|t| t.family == fam && t.name == name)
                    .ok_or_else(|| {
                        self.err_found(
                            o,
                            &format!("an existing {fam} table"),
                            format!("\"{name}\""),
                        )
                    })?;
                for c in &mut self.rs.tables[t].chains {
                    c.rules.clear();
                }
            }
            "chain" | "set" | "map" => {
                let t = self.table_ref(o)?;
                let name = self.req_str(o, "name")?;
                let tab = &mut self.rs.tables[t];
                let found = if k == "chain" {
                    tab.chain_ix
                        .get(name)
                        .map(|&ci| tab.chains[ci].rules.clear())
                } else {
                    tab.set_ix
                        .get(name)
                        .map(|&si| tab.sets[si].elements.clear())
                };
                if found.is_none() {
                    return Err(self.err_found(
                        o,
                        &format!("an existing {k}"),
                        format!("\"{name}\""),
                    ));
                }
            }
            _ => {
                return Err(self.err_found(
                    v,
                    "ruleset, table, chain, set or map",
                    format!("\"{k}\""),
                ))
            }
        }
        Ok(())
    }

    fn resolve(&mut self) -> R<()> {
        for pd in std::mem::take(&mut self.pending) {
            let (table, name, at, what) = match &pd {
                Pending::Chain { table, name, at } => {
                    let ok = self.rs.tables[*table].chain(name).is_some();
                    (ok, name, at, "the name of a chain of the table")
                }
                Pending::Set { table, name, at } => {
                    let ok = self.rs.tables[*table].set(name).is_some();
                    (ok, name, at, "the name of a set or map of the table")
                }
            };
            if !table {
                return Err(ParseError {
                    file: self.file.clone(),
                    line: at.0,
                    column: at.1,
                    expected: what.to_string(),
                    found: format!("`{name}`"),
                });
            }
        }
        Ok(())
    }

    /// nft 1.0.6's JSON leaves out a set's `dynamic` flag, which `nft list ruleset` prints:
    /// a set that a rule adds to or updates is dynamic (nft marks it so), as in the text.
    fn restore_dynamic(&mut self) {
        for &t in &self.touched {
            let tab = &mut self.rs.tables[t];
            let mut updated: Vec<String> = Vec::new();
            for c in &tab.chains {
                for r in &c.rules {
                    for st in &r.stmts {
                        if let Stmt::SetUpdate { set, .. } = st {
                            updated.push(set.clone());
                        }
                    }
                }
            }
            for name in updated {
                if let Some(&si) = tab.set_ix.get(&name) {
                    let flags = &mut tab.sets[si].flags;
                    if !flags.iter().any(|f| f == "dynamic") {
                        // nft prints the flags in the order constant, dynamic, interval, ...
                        let at = usize::from(flags.first().is_some_and(|f| f == "constant"));
                        flags.insert(at, "dynamic".into());
                    }
                }
            }
        }
    }

    /// `{"elem": {"val": X, "comment": ...}}` or X: the value and its comment.
    fn unwrap_elem<'j>(&self, j: &'j J) -> R<(&'j J, Option<String>)> {
        match single(j) {
            Some(("elem", o)) => Ok((
                self.req(o, "val")?,
                self.opt_str(o, "comment")?.map(str::to_string),
            )),
            _ => Ok((j, None)),
        }
    }

    /// Elements of `set` (its key, and its value for a map, typed by the set's types).
    fn elements(&mut self, t: usize, set: &NftSet, list: &[&J]) -> R<Vec<Element>> {
        let interval = set.has_flag("interval") || set.name.is_none();
        let mut out = Vec::new();
        for &item in list {
            let (kj, vj) = match (&set.data, &item.v) {
                (None, _) => (item, None),
                (Some(_), V::Arr(p)) if p.len() == 2 => (&p[0], Some(&p[1])),
                (Some(_), _) => return Err(self.err(item, "a [key, value] pair (a map element)")),
            };
            let (kj, comment) = self.unwrap_elem(kj)?;
            let parts: Vec<&J> = if set.key.len() > 1 {
                match single(kj) {
                    Some(("concat", c)) => match &c.v {
                        V::Arr(p) if p.len() == set.key.len() => p.iter().collect(),
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                }
            } else {
                vec![kj]
            };
            if parts.len() != set.key.len() {
                return Err(self.err(
                    kj,
                    &format!(
                        "a concatenation of {} values (the set's key is {})",
                        set.key.len(),
                        set.key
                            .iter()
                            .map(type_name)
                            .collect::<Vec<_>>()
                            .join(" . ")
                    ),
                ));
            }
            let mut key = Vec::new();
            for (ty, p) in set.key.iter().zip(parts) {
                let a = self.value_atom(ty, p)?;
                if let (Atom::Range(lo, hi), false) = (&a, interval) {
                    if lo != hi {
                        return Err(self.err(p, "a single value (the set has no `flags interval`)"));
                    }
                }
                key.push(a);
            }
            let value = match (&set.data, vj) {
                (Some(DataType::Verdict), Some(v)) => Some(MapValue::Verdict(
                    self.verdict(t, v)?
                        .ok_or_else(|| self.err(v, "a verdict"))?,
                )),
                (Some(d), Some(v)) => Some(MapValue::Data(vec![self.value_atom(d, v)?])),
                _ => None,
            };
            out.push(Element {
                key,
                value,
                comment,
            });
        }
        Ok(out)
    }

    /// A value of type `ty`: a string or number as nft prints it, a prefix, a range, or (for
    /// the bitmask types) an array of flags.
    fn value_atom(&self, ty: &DataType, j: &J) -> R<Atom> {
        let bad = || self.err(j, &format!("a value of type {}", type_name(ty)));
        if let DataType::Other(_) = ty {
            return Ok(Atom::Str(match &j.v {
                V::Str(s) => s.clone(),
                _ => text_of(j, &[]),
            }));
        }
        match &j.v {
            V::Str(s) if !s.starts_with('@') => atom_word(ty, s).ok_or_else(bad),
            V::Num(n) => atom_word(ty, n).ok_or_else(bad),
            V::Arr(a) if matches!(ty, DataType::CtState | DataType::TcpFlags) && !a.is_empty() => {
                let mut mask = 0u128;
                for x in a {
                    match self.value_atom(ty, x)? {
                        Atom::Range(b, _) => mask |= b,
                        Atom::Str(_) => return Err(bad()),
                    }
                }
                Ok(Atom::Range(mask, mask))
            }
            V::Obj(_) => match single(j) {
                Some(("prefix", p)) if matches!(ty, DataType::Ipv4 | DataType::Ipv6) => {
                    let addr = self.req_str(p, "addr")?;
                    let len_j = self.req(p, "len")?;
                    let len = as_u64(len_j).ok_or_else(|| self.err(len_j, "a prefix length"))?;
                    parse_addr_atom(&format!("{addr}/{len}"), *ty == DataType::Ipv6).ok_or_else(bad)
                }
                Some(("range", r)) => match &r.v {
                    V::Arr(b) if b.len() == 2 => {
                        match (self.value_atom(ty, &b[0])?, self.value_atom(ty, &b[1])?) {
                            (Atom::Range(lo, _), Atom::Range(_, hi)) if lo <= hi => {
                                Ok(Atom::Range(lo, hi))
                            }
                            _ => Err(self.err(
                                r,
                                &format!("a range of {} values, low to high", type_name(ty)),
                            )),
                        }
                    }
                    _ => Err(self.err(r, "[low, high]")),
                },
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// A verdict object, if `j` is one (`{"accept": null}`, `{"jump": {"target": C}}`).
    fn verdict(&mut self, t: usize, j: &J) -> R<Option<NftVerdict>> {
        let Some((k, v)) = single(j) else {
            return Ok(None);
        };
        Ok(Some(match k {
            "accept" => NftVerdict::Accept,
            "drop" => NftVerdict::Drop,
            "continue" => NftVerdict::Continue,
            "return" => NftVerdict::Return,
            "jump" | "goto" => {
                let target = self.req_str(v, "target")?.to_string();
                let at = get(v, "target").map_or((v.line, v.col), |x| (x.line, x.col));
                self.pending.push(Pending::Chain {
                    table: t,
                    name: target.clone(),
                    at,
                });
                if k == "jump" {
                    NftVerdict::Jump(target)
                } else {
                    NftVerdict::Goto(target)
                }
            }
            _ => return Ok(None),
        }))
    }

    fn rule_obj(&mut self, v: &J, cmd: Cmd) -> R<()> {
        let t = self.table_ref(v)?;
        let chain = self.req_str(v, "chain")?;
        let Some(&ci) = self.rs.tables[t].chain_ix.get(chain) else {
            return Err(self.err_found(
                get(v, "chain").unwrap_or(v),
                "an existing chain",
                format!("\"{chain}\""),
            ));
        };
        let handle = match cmd {
            Cmd::List => self.opt_u64(v, "handle")?,
            Cmd::Add | Cmd::Insert => {
                if let Some(p) = ["handle", "index", "position"]
                    .iter()
                    .find_map(|k| get(v, k))
                {
                    return Err(self.err(
                        p,
                        "a rule without a position (kubepath does not read rule positions yet)",
                    ));
                }
                None
            }
        };
        let expr = self.req(v, "expr")?;
        let V::Arr(list) = &expr.v else {
            return Err(self.err(expr, "an array of statements"));
        };
        if list.is_empty() {
            return Err(self.err(expr, "a statement"));
        }
        let mut stmts = Vec::new();
        let mut texts = Vec::new();
        for s in list {
            let (st, text) = self.stmt(t, s)?;
            stmts.append(&mut self.deps);
            if let Stmt::Opaque(what) = &st {
                let at = match handle {
                    Some(h) => format!(" (the rule at column {}, handle {h})", v.col),
                    None => format!(" (the rule at column {})", v.col),
                };
                let message = if what.starts_with("xt ") {
                    format!("iptables-nft compat expression `{what}`{at}: `nft -j` does not print its arguments, so it is kept as an opaque statement (a packet reaching it is UNKNOWN); read this table from `nft list ruleset` text or iptables-nft-save")
                } else {
                    format!("unsupported nft expression `{what}`{at}: kept as an opaque statement (a packet reaching it is UNKNOWN)")
                };
                self.diags.push(Diagnostic {
                    source: self.src(v.line),
                    message,
                });
            }
            stmts.push(st);
            texts.push(text);
        }
        if let Some(c) = self.opt_str(v, "comment")? {
            stmts.push(Stmt::NoEffect("comment"));
            texts.push(format!("comment {}", quoted(c)));
        }
        let rule = NftRule {
            stmts,
            source: self.src(v.line),
            column: v.col,
            text: texts.join(" "),
            handle,
        };
        let rules = &mut self.rs.tables[t].chains[ci].rules;
        if cmd == Cmd::Insert {
            rules.insert(0, rule);
        } else {
            rules.push(rule);
        }
        Ok(())
    }

    /// One statement of a rule and how nft prints it.
    fn stmt(&mut self, t: usize, s: &J) -> R<(Stmt, String)> {
        let Some((k, v)) = single(s) else {
            return Err(self.err(
                s,
                "a statement (an object with one property, e.g. {\"accept\": null})",
            ));
        };
        if let Some(verdict) = self.verdict(t, s)? {
            return Ok((Stmt::Verdict(verdict), text_of(s, &[])));
        }
        let opaque = |text: String| Ok((Stmt::Opaque(text.clone()), text));
        match k {
            "match" => self.match_stmt(t, v),
            "counter" => {
                let text = match &v.v {
                    V::Str(n) => format!("counter name {}", quoted(n)),
                    V::Obj(_) if get(v, "packets").is_some() => format!(
                        "counter packets {} bytes {}",
                        get(v, "packets")
                            .map(|x| text_of(x, &[]))
                            .unwrap_or_default(),
                        get(v, "bytes").map(|x| text_of(x, &[])).unwrap_or_default()
                    ),
                    _ => "counter".into(),
                };
                Ok((Stmt::NoEffect("counter"), text))
            }
            "log" => Ok((Stmt::NoEffect("log"), log_text(v))),
            "notrack" => Ok((Stmt::Notrack, "notrack".into())),
            "limit" => self.limit_stmt(t, v),
            "reject" => self.reject_stmt(t, v),
            "dnat" | "snat" | "masquerade" | "redirect" => self.nat_stmt(t, k, v),
            "mangle" => self.mangle_stmt(v),
            "vmap" => self.vmap_stmt(t, v),
            "set" => self.set_stmt(t, v),
            "xt" => {
                let ty = self.req_str(v, "type")?;
                let name = self.req_str(v, "name")?;
                let text = format!("xt {ty} {name}");
                // xt_comment always matches; LOG and NFLOG go on with the next statement.
                match (ty, name) {
                    ("match", "comment") => Ok((Stmt::NoEffect("comment"), text)),
                    ("target", "LOG" | "NFLOG") => Ok((Stmt::NoEffect("log"), text)),
                    _ => opaque(text),
                }
            }
            _ => opaque(stmt_text(k, v)),
        }
    }

    fn match_stmt(&mut self, t: usize, v: &J) -> R<(Stmt, String)> {
        let left = self.req(v, "left")?;
        let right = self.req(v, "right")?;
        let op_j = self.req(v, "op")?;
        let op_s = as_str(op_j).unwrap_or("");
        let op = match op_s {
            "==" => Some(CmpOp::Eq),
            "!=" => Some(CmpOp::Ne),
            "<" => Some(CmpOp::Lt),
            ">" => Some(CmpOp::Gt),
            "<=" => Some(CmpOp::Le),
            ">=" => Some(CmpOp::Ge),
            "in" => None,
            _ => return Err(self.err(op_j, "an operator (==, !=, <, >, <=, >=, in)")),
        };
        let text = match_text(left, op_s, right);
        if let Some(st) = self.tcp_flags_match(left, op, right)? {
            return Ok((st, text));
        }
        let l = self.expr(left)?;
        if is_set_value(right) {
            let neg = match op {
                Some(CmpOp::Eq) => false,
                Some(CmpOp::Ne) => true,
                _ => return Err(self.err(op_j, "== or != (a set lookup)")),
            };
            let set = self.set_ref(t, &l, right, false)?;
            if matches!(l, Expr::Opaque(_)) {
                return Ok((Stmt::Opaque(text.clone()), text));
            }
            return Ok((Stmt::Lookup { left: l, set, neg }, text));
        }
        if is_opaque(&l) {
            return Ok((Stmt::Opaque(text.clone()), text));
        }
        let types = expr_types(&l);
        let Some(op) = op else {
            // `in`: any of the value's bits set.
            return Ok(match (&l, types.as_slice()) {
                (Expr::CtState, _) => (
                    Stmt::Cmp {
                        left: l,
                        op: CmpOp::Eq,
                        right: vec![self.value_atom(&DataType::CtState, right)?],
                    },
                    text,
                ),
                (_, [ty @ (DataType::Mark | DataType::Integer)]) => {
                    let Atom::Range(m, _) = self.value_atom(ty, right)? else {
                        return Err(self.err(right, "a number"));
                    };
                    (
                        Stmt::Cmp {
                            left: Expr::Bitwise(Box::new(l), BitOp::And, m as u32),
                            op: CmpOp::Ne,
                            right: vec![Atom::Range(0, 0)],
                        },
                        text,
                    )
                }
                _ => (Stmt::Opaque(text.clone()), text),
            });
        };
        let parts: Vec<&J> = if types.len() > 1 {
            match single(right) {
                Some(("concat", c)) => match &c.v {
                    V::Arr(p) if p.len() == types.len() => p.iter().collect(),
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            }
        } else {
            vec![right]
        };
        if parts.len() != types.len() {
            return Err(self.err(right, &format!("a concatenation of {} values", types.len())));
        }
        let mut atoms = Vec::new();
        for (ty, p) in types.iter().zip(parts) {
            atoms.push(self.value_atom(ty, p)?);
        }
        Ok((
            Stmt::Cmp {
                left: l,
                op,
                right: atoms,
            },
            text,
        ))
    }

    /// TCP flags as a number (names, an array of names, or a number).
    fn flag_bits(&self, j: &J) -> R<u32> {
        let what = "TCP flags (fin, syn, rst, psh, ack, urg, ecn, cwr)";
        match &j.v {
            V::Str(s) => tcp_flag_bit(s).ok_or_else(|| self.err(j, what)),
            V::Num(_) => as_u64(j)
                .filter(|n| *n <= 0xff)
                .map(|n| n as u32)
                .ok_or_else(|| self.err(j, what)),
            V::Arr(a) if !a.is_empty() => {
                let mut v = 0;
                for x in a {
                    v |= self.flag_bits(x)?;
                }
                Ok(v)
            }
            _ => Err(self.err(j, what)),
        }
    }

    /// `tcp flags` in the forms nft lists (as the text reader models them): `& MASK ==/!=
    /// VALUE`, `==`/`!=` VALUE, and `in` (any of the flags set).
    fn tcp_flags_match(&mut self, left: &J, op: Option<CmpOp>, right: &J) -> R<Option<Stmt>> {
        let mask = if is_tcp_flags(left) {
            None
        } else {
            match single(left) {
                Some(("&", x)) => match &x.v {
                    V::Arr(p) if p.len() == 2 && is_tcp_flags(&p[0]) => Some(&p[1]),
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            }
        };
        if mask.is_none() && is_set_value(right) {
            // A set of flag values: a lookup, read as any other.
            return Ok(None);
        }
        self.deps.push(l4_dep(6, None));
        let bits = self.flag_bits(right)?;
        let value = vec![Atom::Range(u128::from(bits), u128::from(bits))];
        let flags = Box::new(Expr::TcpFlags);
        Ok(Some(match (mask, op) {
            (Some(m), Some(op @ (CmpOp::Eq | CmpOp::Ne))) => Stmt::Cmp {
                left: Expr::Bitwise(flags, BitOp::And, self.flag_bits(m)?),
                op,
                right: value,
            },
            (None, Some(op @ (CmpOp::Eq | CmpOp::Ne))) => Stmt::Cmp {
                left: Expr::TcpFlags,
                op,
                right: value,
            },
            (None, None) => Stmt::Cmp {
                left: Expr::Bitwise(flags, BitOp::And, bits),
                op: CmpOp::Ne,
                right: vec![Atom::Range(0, 0)],
            },
            _ => return Err(self.err(right, "`==` or `!=` with TCP flags")),
        }))
    }

    /// An expression a rule reads (a packet field, meta or conntrack key, ...), as the text
    /// reader models the same expression; what it does not model is [`Expr::Opaque`].
    fn expr(&mut self, j: &J) -> R<Expr> {
        let Some((k, v)) = single(j) else {
            return Err(self.err(j, "an expression (an object such as {\"payload\": {...}})"));
        };
        let opaque = || Expr::Opaque(text_of(j, &[]));
        Ok(match k {
            "payload" => self.payload_expr(j, v)?,
            "meta" => match self.req_str(v, "key")? {
                "l4proto" => Expr::L4proto { v6: None },
                "mark" => Expr::Mark,
                // By name: the interface the caller is told about (as the text reader).
                "iifname" | "iif" => Expr::Iifname,
                "oifname" | "oif" => Expr::Oifname,
                "nfproto" => Expr::NfProto,
                "random" => Expr::Random,
                _ => opaque(),
            },
            "ct" => {
                let key = self.req_str(v, "key")?;
                if get(v, "dir").is_some() {
                    opaque()
                } else {
                    match key {
                        "state" => Expr::CtState,
                        "mark" => Expr::CtMark,
                        "direction" => Expr::CtDirection,
                        _ => opaque(),
                    }
                }
            }
            "fib" => self.fib_expr(j, v)?,
            "numgen" => self.numgen_expr(v)?,
            "concat" => {
                let V::Arr(parts) = &v.v else {
                    return Err(self.err(v, "an array of expressions"));
                };
                let mut es = Vec::new();
                for p in parts {
                    es.push(self.expr(p)?);
                }
                if es.len() == 1 {
                    es.remove(0)
                } else if es.iter().any(|e| matches!(e, Expr::Opaque(_))) {
                    let s: Vec<String> = es.iter().map(expr_text).collect();
                    Expr::Opaque(s.join(" . "))
                } else {
                    Expr::Concat(es)
                }
            }
            "&" | "|" | "^" => {
                let V::Arr(x) = &v.v else {
                    return Err(self.err(v, "[expression, value]"));
                };
                if x.len() != 2 {
                    return Err(self.err(v, "[expression, value]"));
                }
                let a = self.expr(&x[0])?;
                let op = match k {
                    "&" => BitOp::And,
                    "|" => BitOp::Or,
                    _ => BitOp::Xor,
                };
                match as_u64(&x[1]).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => Expr::Bitwise(Box::new(a), op, n),
                    None => opaque(),
                }
            }
            "tcp option" => {
                self.deps.push(l4_dep(6, None));
                opaque()
            }
            "sctp chunk" => {
                self.deps.push(l4_dep(132, None));
                opaque()
            }
            "dccp option" => {
                self.deps.push(l4_dep(33, None));
                opaque()
            }
            _ => opaque(),
        })
    }

    /// A `payload` expression: a header field of the network or transport protocol.
    fn payload_expr(&mut self, j: &J, v: &J) -> R<Expr> {
        let opaque = || Expr::Opaque(text_of(j, &[]));
        if get(v, "base").is_some() {
            return Ok(opaque());
        }
        let proto = self.req_str(v, "protocol")?;
        let field = self.req_str(v, "field")?;
        Ok(match proto {
            "ip" | "ip6" => {
                let v6 = proto == "ip6";
                match field {
                    "saddr" => Expr::Saddr { v6 },
                    "daddr" => Expr::Daddr { v6 },
                    "protocol" if !v6 => Expr::L4proto { v6: Some(false) },
                    "nexthdr" if v6 => Expr::L4proto { v6: Some(true) },
                    "version" => Expr::IpVersion { v6 },
                    _ => {
                        self.deps.push(nfproto_dep(v6));
                        Expr::Opaque(format!("{proto} {field}"))
                    }
                }
            }
            "tcp" | "udp" | "sctp" | "th" | "udplite" | "dccp" => {
                let p = match proto {
                    "tcp" => Some(6),
                    "udp" => Some(17),
                    "sctp" => Some(132),
                    "udplite" => Some(136),
                    "dccp" => Some(33),
                    _ => None,
                };
                match field {
                    "sport" => Expr::Sport { proto: p },
                    "dport" => Expr::Dport { proto: p },
                    "flags" if p == Some(6) => {
                        self.deps.push(l4_dep(6, None));
                        Expr::TcpFlags
                    }
                    _ => {
                        if let Some(n) = p {
                            self.deps.push(l4_dep(n, None));
                        }
                        Expr::Opaque(format!("{proto} {field}"))
                    }
                }
            }
            other => {
                if let Some((n, v6)) = header_dep(other) {
                    self.deps.push(l4_dep(n, v6));
                }
                Expr::Opaque(format!("{other} {field}"))
            }
        })
    }

    /// A `fib` expression: the address type (of `saddr` / `daddr`, optionally limited to
    /// `iif` / `oif`); the rest opaque.
    fn fib_expr(&mut self, j: &J, v: &J) -> R<Expr> {
        let opaque = || Expr::Opaque(text_of(j, &[]));
        let result = self.req_str(v, "result")?;
        let flags_j = self.req(v, "flags")?;
        let flags = self.strings(flags_j, "fib flags (saddr, daddr, mark, iif, oif)")?;
        if !matches!(result, "type" | "oif" | "oifname") {
            return Err(self.err(self.req(v, "result")?, "type, oif or oifname"));
        }
        Ok(match (flags.as_slice(), result) {
            (["saddr"], "type") => Expr::FibType {
                daddr: false,
                dev_out: None,
            },
            (["daddr"], "type") => Expr::FibType {
                daddr: true,
                dev_out: None,
            },
            ([a @ ("saddr" | "daddr"), d @ ("iif" | "oif")], "type") => Expr::FibType {
                daddr: *a == "daddr",
                dev_out: Some(*d == "oif"),
            },
            _ => opaque(),
        })
    }

    /// A `numgen` expression: `random` or `inc`, `mod` N, `offset` K.
    fn numgen_expr(&mut self, v: &J) -> R<Expr> {
        let mode_j = self.req(v, "mode")?;
        let inc = match as_str(mode_j) {
            Some("inc") => true,
            Some("random") => false,
            _ => return Err(self.err(mode_j, "random or inc")),
        };
        let mod_j = self.req(v, "mod")?;
        let modulus = as_u64(mod_j)
            .filter(|m| *m >= 1 && *m <= u64::from(u32::MAX))
            .ok_or_else(|| self.err(mod_j, "a modulus (1 or more)"))? as u32;
        let offset = match get(v, "offset") {
            None => 0,
            Some(o) => as_u64(o)
                .and_then(|o| u32::try_from(o).ok())
                .ok_or_else(|| self.err(o, "an offset"))?,
        };
        Ok(Expr::Numgen {
            inc,
            modulus,
            offset,
        })
    }

    /// `"@name"` or `{"set": [...]}`, keyed by `left`.
    fn set_ref(&mut self, t: usize, left: &Expr, j: &J, vmap: bool) -> R<SetRef> {
        if let Some(name) = as_str(j).and_then(|s| s.strip_prefix('@')) {
            if let Some(s) = self.rs.tables[t].set(name) {
                let want = if vmap { "a verdict map" } else { "a set" };
                let is_vmap = s.data == Some(DataType::Verdict);
                if vmap != is_vmap && (vmap || s.data.is_some()) {
                    return Err(self.err_found(j, want, format!("`{name}`")));
                }
                if !matches!(left, Expr::Opaque(_)) && s.key.len() != expr_types(left).len() {
                    return Err(self.err_found(
                        j,
                        &format!(
                            "a set whose key has {} component(s)",
                            expr_types(left).len()
                        ),
                        format!("`{name}`"),
                    ));
                }
            } else {
                self.pending.push(Pending::Set {
                    table: t,
                    name: name.to_string(),
                    at: (j.line, j.col),
                });
            }
            return Ok(SetRef::Named(name.to_string()));
        }
        let Some(("set", els)) = single(j) else {
            return Err(self.err(j, "a set (\"@name\" or {\"set\": [...]})"));
        };
        let mut set = NftSet {
            name: None,
            key: expr_types(left),
            data: vmap.then_some(DataType::Verdict),
            flags: vec!["interval".into()],
            elements: Vec::new(),
            source: None,
        };
        if !matches!(left, Expr::Opaque(_)) {
            set.elements = self.elements(t, &set, &items(els))?;
        }
        Ok(SetRef::Anon(Box::new(set)))
    }

    fn vmap_stmt(&mut self, t: usize, v: &J) -> R<(Stmt, String)> {
        let key = self.req(v, "key")?;
        let data = self.req(v, "data")?;
        let text = format!(
            "{} vmap {}",
            text_of(key, &[]),
            text_of(data, &value_cx(key))
        );
        let k = self.expr(key)?;
        if is_opaque(&k) {
            return Ok((Stmt::Opaque(text.clone()), text));
        }
        let map = self.set_ref(t, &k, data, true)?;
        Ok((Stmt::Vmap { key: k, map }, text))
    }

    fn set_stmt(&mut self, t: usize, v: &J) -> R<(Stmt, String)> {
        let op = self.req_str(v, "op")?;
        let elem = self.req(v, "elem")?;
        let set_j = self.req(v, "set")?;
        let name = as_str(set_j)
            .and_then(|s| s.strip_prefix('@'))
            .ok_or_else(|| self.err(set_j, "a set reference (\"@name\")"))?;
        let text = format!("{op} @{name} {{ {} }}", elem_text(elem, &[], &[]));
        if op != "add" && op != "update" {
            return Ok((Stmt::Opaque(text.clone()), text));
        }
        self.pending.push(Pending::Set {
            table: t,
            name: name.to_string(),
            at: (set_j.line, set_j.col),
        });
        let (val, _) = self.unwrap_elem(elem)?;
        let key = self.expr(val)?;
        Ok((
            Stmt::SetUpdate {
                set: name.to_string(),
                key,
            },
            text,
        ))
    }

    fn mangle_stmt(&mut self, v: &J) -> R<(Stmt, String)> {
        let key = self.req(v, "key")?;
        let value = self.req(v, "value")?;
        let text = format!(
            "{} set {}",
            text_of(key, &[]),
            text_of(value, &value_cx(key))
        );
        let ct = match self.expr(key)? {
            Expr::Mark => false,
            Expr::CtMark => true,
            _ => return Ok((Stmt::Opaque(text.clone()), text)),
        };
        let val = match &value.v {
            V::Num(_) => Expr::Const(
                as_u64(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| self.err(value, "a 32-bit value"))?,
            ),
            V::Obj(_) => self.expr(value)?,
            _ => return Ok((Stmt::Opaque(text.clone()), text)),
        };
        if is_opaque(&val) {
            return Ok((Stmt::Opaque(text.clone()), text));
        }
        Ok((Stmt::SetMark { ct, value: val }, text))
    }

    fn limit_stmt(&mut self, t: usize, v: &J) -> R<(Stmt, String)> {
        if let V::Str(name) = &v.v {
            let over = *self
                .objects
                .get(&(t, "limit", name.clone()))
                .ok_or_else(|| self.err(v, "the name of a limit object of the table"))?;
            let text = format!("limit name {}", quoted(name));
            return Ok((
                Stmt::Limit {
                    over,
                    text: text.clone(),
                },
                text,
            ));
        }
        let rate_j = self.req(v, "rate")?;
        as_u64(rate_j).ok_or_else(|| self.err(rate_j, "a rate (a number)"))?;
        self.opt_str(v, "per")?;
        self.opt_u64(v, "burst")?;
        self.opt_str(v, "rate_unit")?;
        self.opt_str(v, "burst_unit")?;
        let over = self.opt_bool(v, "inv")?;
        let text = limit_text(v);
        Ok((
            Stmt::Limit {
                over,
                text: text.clone(),
            },
            text,
        ))
    }

    fn reject_stmt(&mut self, t: usize, v: &J) -> R<(Stmt, String)> {
        let (ty, code) = match &v.v {
            V::Null => (None, None),
            V::Obj(_) => (get(v, "type"), get(v, "expr")),
            _ => return Err(self.err(v, "an object or null")),
        };
        let ty_s = match ty {
            None => None,
            Some(x) => {
                Some(as_str(x).ok_or_else(|| self.err(x, "tcp reset, icmp, icmpv6 or icmpx"))?)
            }
        };
        // The type `nft list ruleset` leaves out (`reject` alone).
        let default = match self.rs.tables[t].family {
            NftFamily::Ip => "icmp",
            NftFamily::Ip6 => "icmpv6",
            _ => "icmpx",
        };
        let (kind, text) = match ty_s {
            Some("tcp reset") => ("tcp-reset".to_string(), "reject with tcp reset".to_string()),
            None if code.is_none() => ("icmp-port-unreachable".into(), "reject".into()),
            None | Some("icmp" | "icmpv6" | "icmpx") => {
                let ty = ty_s.unwrap_or(default);
                let code_s = match code {
                    None => "port-unreachable",
                    Some(c) => as_str(c)
                        .filter(|c| ICMP_REJECT.contains(c))
                        .ok_or_else(|| self.err(c, "an ICMP reject type (port-unreachable, host-unreachable, admin-prohibited, ...)"))?,
                };
                if ty == default && code_s == "port-unreachable" {
                    ("icmp-port-unreachable".into(), "reject".into())
                } else {
                    let pre = if ty == "icmpv6" { "icmp6" } else { "icmp" };
                    (
                        format!("{pre}-{code_s}"),
                        format!("reject with {ty} {code_s}"),
                    )
                }
            }
            Some(other) => {
                return Err(ParseError {
                    file: self.file.clone(),
                    line: ty.map_or(v.line, |x| x.line),
                    column: ty.map_or(v.col, |x| x.col),
                    expected: "tcp reset, icmp, icmpv6 or icmpx".into(),
                    found: format!("\"{other}\""),
                })
            }
        };
        Ok((Stmt::Reject(kind), text))
    }

    fn nat_stmt(&mut self, t: usize, kind: &str, v: &J) -> R<(Stmt, String)> {
        let family = self.rs.tables[t].family;
        let o = match &v.v {
            V::Null => None,
            V::Obj(_) => Some(v),
            _ => return Err(self.err(v, "an object or null")),
        };
        let prop = |k: &str| o.and_then(|o| get(o, k));
        let fam_j = prop("family");
        let (v6, fam_given) = match fam_j {
            Some(f) => match as_str(f) {
                Some("ip") => (false, true),
                Some("ip6") => (true, true),
                _ => return Err(self.err(f, "ip or ip6")),
            },
            None => (family == NftFamily::Ip6, false),
        };
        let addr = prop("addr");
        let port = prop("port");
        let mut flags = Vec::new();
        if let Some(f) = prop("flags") {
            for x in items(f) {
                match as_str(x) {
                    Some(s @ ("random" | "fully-random" | "persistent")) => {
                        flags.push(s.to_string())
                    }
                    _ => return Err(self.err(x, "random, fully-random or persistent")),
                }
            }
        }
        let mut text = kind.to_string();
        if let Some(f) = fam_j.and_then(as_str) {
            text.push(' ');
            text.push_str(f);
        }
        let addr_text = addr.map(|a| text_of(a, &[]));
        match (&addr_text, port) {
            (Some(a), Some(p)) if v6 => text.push_str(&format!(" to [{a}]:{}", text_of(p, &[]))),
            (Some(a), Some(p)) => text.push_str(&format!(" to {a}:{}", text_of(p, &[]))),
            (Some(a), None) => text.push_str(&format!(" to {a}")),
            (None, Some(p)) => text.push_str(&format!(" to :{}", text_of(p, &[]))),
            (None, None) => {}
        }
        if !flags.is_empty() {
            text.push(' ');
            text.push_str(&flags.join(","));
        }
        let opaque = |what: String| Ok((Stmt::Opaque(what), text.clone()));
        let nat_addr = matches!(kind, "dnat" | "snat");
        if nat_addr {
            if addr.is_none() && port.is_none() {
                return Err(self.err(
                    v,
                    &format!("an \"addr\" or \"port\" property (`{kind} to ...`)"),
                ));
            }
            if family == NftFamily::Inet && !fam_given {
                return Err(self.err(v, "a \"family\" (ip or ip6: an inet table needs it)"));
            }
        } else if let Some(a) = addr {
            return Err(self.err(a, &format!("no address (`{kind}` takes a port only)")));
        }
        let addr = match addr {
            None => None,
            Some(a) => {
                let ty = if v6 { DataType::Ipv6 } else { DataType::Ipv4 };
                let plain = match single(a) {
                    Some(("prefix" | "range", _)) => true,
                    _ => as_str(a).is_some(),
                };
                if !plain {
                    // `dnat to ip daddr map @m` and other expressions: not modelled (the text
                    // reader words it the same).
                    return opaque(format!("{kind} to {}", text_of(a, &[])));
                }
                match self.value_atom(&ty, a)? {
                    Atom::Range(lo, hi) => Some((lo, hi)),
                    Atom::Str(_) => return Err(self.err(a, "an address")),
                }
            }
        };
        let port = match port {
            None => None,
            Some(p) => match (&p.v, single(p)) {
                (V::Num(_), _) => {
                    let n = as_u64(p)
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| self.err(p, "a port"))?;
                    Some((n, n))
                }
                (_, Some(("range", r))) => match &r.v {
                    V::Arr(b) if b.len() == 2 => {
                        let lo = as_u64(&b[0]).and_then(|n| u16::try_from(n).ok());
                        let hi = as_u64(&b[1]).and_then(|n| u16::try_from(n).ok());
                        match (lo, hi) {
                            (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
                            _ => return Err(self.err(r, "a port range, low to high")),
                        }
                    }
                    _ => return Err(self.err(r, "[low, high]")),
                },
                _ => return opaque(text.clone()),
            },
        };
        let spec = NatSpec {
            addr,
            v6,
            port,
            flags,
        };
        let st = match kind {
            "dnat" => Stmt::Dnat(spec),
            "snat" => Stmt::Snat(spec),
            "masquerade" => Stmt::Masquerade(spec),
            _ => Stmt::Redirect(spec.port),
        };
        Ok((st, text))
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod json_tests;
