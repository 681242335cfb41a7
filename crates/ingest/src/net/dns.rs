//! DNS: BIND zone files (RFC 1035 section 5 master files, with BIND's TTL units), `nslookup`
//! and `dig` outputs.
//!
//! Zone files: `$ORIGIN`, `$TTL`, `@`, relative owner names (the origin is appended), an
//! omitted owner (a line starting with blanks) repeating the previous owner, TTL and class in
//! either order before the type, `( ... )` spanning lines, `;` comments, quoted strings. A, AAAA
//! and CNAME are interpreted; other types are kept as text with one note per type. `$INCLUDE`
//! and BIND's `$GENERATE` are not followed (a warning says so). Without `$ORIGIN`, the origin
//! is taken from the file name (`example.com.zone`, `db.example.com`), with a note.
//!
//! nslookup: `Server:`/`Address: A#53`, then `NAME canonical name = TARGET.` and `Name:`/
//! `Address:` pairs (also busybox's `Address 1: A`). dig: every record line of the
//! ANSWER/AUTHORITY/ADDITIONAL sections, and `;; SERVER: A#53(A)`.

use std::net::IpAddr;
use std::sync::Arc;

use kubepath_model::dns::{fqdn, Dns, DnsFailure, DnsOrigin, DnsRecord, RData};
use kubepath_model::SourceRef;

use super::text::{diag, err, Segment};
use crate::diag::{Diagnostic, ParseError, Severity};

const TYPES: &[&str] = &[
    "A",
    "AAAA",
    "CNAME",
    "NS",
    "SOA",
    "MX",
    "TXT",
    "PTR",
    "SRV",
    "CAA",
    "DNAME",
    "HINFO",
    "NAPTR",
    "DS",
    "DNSKEY",
    "RRSIG",
    "NSEC",
    "NSEC3",
    "NSEC3PARAM",
    "TLSA",
    "SSHFP",
    "SPF",
    "HTTPS",
    "SVCB",
    "LOC",
    "RP",
    "AFSDB",
    "CERT",
    "URI",
    "OPT",
];
const CLASSES: &[&str] = &["IN", "CH", "HS", "CS", "ANY"];

/// Which DNS output a segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsKind {
    Zone,
    Nslookup,
    Dig,
}

/// An echoed `dig +short NAME` with no output line answers too: the name has no record of
/// the type (or does not exist), as `dig +short` prints nothing then (sixth review R2).
pub fn empty_output_answers(seg: &Segment<'_>) -> bool {
    seg.filter().is_none()
        && seg.command.is_some_and(|c| {
            let mut w = c.trim_start_matches("sudo ").split_whitespace();
            w.next() == Some("dig") && w.any(|x| x == "+short")
        })
}

pub fn sniff(seg: &Segment<'_>) -> Option<DnsKind> {
    let cmd = seg.command.map(|c| {
        c.trim_start_matches("sudo ")
            .split_whitespace()
            .next()
            .unwrap_or("")
    });
    match cmd {
        Some("nslookup") => return Some(DnsKind::Nslookup),
        Some("dig") => return Some(DnsKind::Dig),
        _ => {}
    }
    // dig's banner, also under a prompt line kubepath does not recognise (it is reported and
    // skipped by the dig reader), so that dig's record lines are never taken for a zone file.
    if seg.content().take(4).any(|l| {
        let t = l.text.trim_start();
        t.starts_with("; <<>> DiG")
            || t.starts_with(";; global options")
            || t.starts_with(";; ->>HEADER<<-")
    }) {
        return Some(DnsKind::Dig);
    }
    // Windows nslookup prints `DNS request timed out.` / `timeout was 2 seconds.` before
    // `Server:` when the reverse lookup of the server fails.
    let first = seg
        .content()
        .map(|l| l.text.trim())
        .find(|t| !is_nslookup_timeout(t))?;
    if first.starts_with("Server:") {
        return Some(DnsKind::Nslookup);
    }
    for l in seg.content().take(30) {
        let t = l.text.trim();
        if t.starts_with("$ORIGIN") || t.starts_with("$TTL") {
            return Some(DnsKind::Zone);
        }
        let w: Vec<&str> = strip_comment(t).split_whitespace().collect();
        if w.windows(2)
            .any(|p| CLASSES.contains(&p[0]) && TYPES.contains(&p[1]))
        {
            return Some(DnsKind::Zone);
        }
    }
    None
}

pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    dns: &mut Dns,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    let Some(kind) = sniff(seg) else {
        return Ok(None);
    };
    match kind {
        DnsKind::Zone => {
            let recs = parse_zone(file, seg, diags)?;
            // The first file's records are taken as they are (no second vector of a large
            // zone's records while they are copied).
            if dns.records.is_empty() {
                dns.records = recs;
            } else {
                dns.records.extend(recs);
            }
            Ok(Some("bind-zone"))
        }
        DnsKind::Nslookup => {
            let (server, recs, failures) = parse_nslookup(file, seg, diags)?;
            if let Some(s) = server {
                dns.servers.push(s);
            }
            dns.records.extend(recs);
            dns.failures.extend(failures);
            Ok(Some("nslookup"))
        }
        DnsKind::Dig => {
            let (server, recs, failures) = parse_dig(file, seg, diags)?;
            if let Some(s) = server {
                dns.servers.push(s);
            }
            dns.records.extend(recs);
            dns.failures.extend(failures);
            Ok(Some("dig"))
        }
    }
}

/// Windows nslookup's `DNS request timed out.` and `timeout was N seconds.` lines.
fn is_nslookup_timeout(t: &str) -> bool {
    t == "DNS request timed out." || (t.starts_with("timeout was ") && t.ends_with("seconds."))
}

/// Remove a `;` comment that is not inside a quoted string.
fn strip_comment(s: &str) -> &str {
    let mut in_q = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' => esc = true,
            '"' => in_q = !in_q,
            ';' if !in_q => return &s[..i],
            _ => {}
        }
    }
    s
}

/// A zone-file token with its line and column.
#[derive(Debug, Clone)]
struct ZTok {
    s: String,
    line: u32,
    col: u32,
}

/// Parse a TTL: seconds, or BIND units (`1h30m`, `1d`, `2w`).
pub fn parse_ttl(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut num: u64 = 0;
    let mut have = false;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            num = num.checked_mul(10)?.checked_add(d as u64)?;
            have = true;
        } else {
            let m = match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 604800,
                _ => return None,
            };
            if !have {
                return None;
            }
            total = total.checked_add(num.checked_mul(m)?)?;
            num = 0;
            have = false;
        }
    }
    if have {
        return None;
    }
    u32::try_from(total).ok()
}

fn origin_from_file_name(file: &str) -> Option<String> {
    let base = file.rsplit('/').next()?;
    let name = base
        .strip_suffix(".zone")
        .or_else(|| base.strip_suffix(".db"))
        .or_else(|| base.strip_prefix("db."))
        .or_else(|| base.strip_suffix(".txt"))?;
    (name.contains('.') && !name.is_empty()).then(|| fqdn(name))
}

/// Make `name` absolute relative to `origin`.
fn absolute(name: &str, origin: Option<&str>) -> Option<String> {
    if name == "@" {
        return origin.map(str::to_string);
    }
    if name.ends_with('.') {
        return Some(name.to_ascii_lowercase());
    }
    let o = origin?;
    Some(format!(
        "{}.{}",
        name.to_ascii_lowercase(),
        o.trim_start_matches('.')
    ))
}

pub fn parse_zone(
    file: &Arc<str>,
    seg: &Segment<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<DnsRecord>, ParseError> {
    let mut origin: Option<String> = None;
    let mut default_ttl: Option<u32> = None;
    let mut last_owner: Option<String> = None;
    let mut out = Vec::new();
    let mut noted_types: Vec<String> = Vec::new();
    // Group physical lines into logical entries (parentheses continue an entry).
    let mut entry: Vec<ZTok> = Vec::new();
    let mut entry_starts_blank = false;
    let mut depth = 0i32;
    let mut entry_line = 0u32;
    let mut paren_open = (0u32, 0u32);
    let lines: Vec<_> = seg.lines.clone();
    // Each logical entry is lowered as soon as it is complete (the tokens of one entry at a
    // time, not of the whole file: a zone of a million names held them all).
    let mut process = |toks: Vec<ZTok>, blank_owner: bool, line: u32| -> Result<(), ParseError> {
        let first = &toks[0];
        if first.s.starts_with('$') {
            match first.s.to_ascii_uppercase().as_str() {
                "$ORIGIN" => {
                    let o = toks.get(1).ok_or_else(|| {
                        err(
                            file,
                            line,
                            first.col + 7,
                            "a domain name after $ORIGIN",
                            "end of line",
                        )
                    })?;
                    origin = absolute(&o.s, origin.as_deref()).or_else(|| Some(fqdn(&o.s)));
                }
                "$TTL" => {
                    let t = toks.get(1).ok_or_else(|| {
                        err(file, line, first.col + 4, "a TTL after $TTL", "end of line")
                    })?;
                    default_ttl = Some(parse_ttl(&t.s).ok_or_else(|| {
                        err(
                            file,
                            t.line,
                            t.col,
                            "a TTL (seconds or 1h30m style)",
                            format!("`{}`", t.s),
                        )
                    })?);
                }
                d => diags.push(diag(
                    Severity::Warning,
                    file,
                    line,
                    first.col,
                    format!("{d} is not supported; its records are not read"),
                )),
            }
            return Ok(());
        }
        let mut i = 0;
        let owner = if blank_owner {
            match &last_owner {
                Some(o) => o.clone(),
                None => {
                    return Err(err(
                        file,
                        line,
                        first.col,
                        "an owner name (the first record cannot omit it)",
                        format!("`{}`", first.s),
                    ))
                }
            }
        } else {
            i = 1;
            if origin.is_none() && !first.s.ends_with('.') {
                if let Some(o) = origin_from_file_name(file) {
                    diags.push(diag(
                        Severity::Note,
                        file,
                        line,
                        first.col,
                        format!("no $ORIGIN: taking {o} from the file name"),
                    ));
                    origin = Some(o);
                }
            }
            absolute(&first.s, origin.as_deref()).ok_or_else(|| {
                err(
                    file,
                    line,
                    first.col,
                    "an absolute name (no $ORIGIN is set)",
                    format!("`{}`", first.s),
                )
            })?
        };
        let mut ttl = None;
        let mut class = None;
        // TTL and class, in either order.
        for _ in 0..2 {
            let Some(t) = toks.get(i) else { break };
            let up = t.s.to_ascii_uppercase();
            if class.is_none() && CLASSES.contains(&up.as_str()) {
                class = Some(up);
                i += 1;
            } else if ttl.is_none() && t.s.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                ttl = Some(
                    parse_ttl(&t.s)
                        .ok_or_else(|| err(file, t.line, t.col, "a TTL", format!("`{}`", t.s)))?,
                );
                i += 1;
            }
        }
        let ty = toks.get(i).ok_or_else(|| {
            let last = toks.last().map(|t| t.col + t.s.len() as u32).unwrap_or(1);
            err(
                file,
                line,
                last,
                "a record type (A, AAAA, CNAME, ...)",
                "end of line",
            )
        })?;
        let tyu = ty.s.to_ascii_uppercase();
        if !TYPES.contains(&tyu.as_str()) && !tyu.starts_with("TYPE") {
            return Err(err(
                file,
                ty.line,
                ty.col,
                "a record type (A, AAAA, CNAME, ...)",
                format!("`{}`", ty.s),
            ));
        }
        let rdata: Vec<&ZTok> = toks[i + 1..].iter().collect();
        let need1 = |what: &str| -> Result<&ZTok, ParseError> {
            rdata.first().copied().ok_or_else(|| {
                err(
                    file,
                    ty.line,
                    ty.col + ty.s.len() as u32 + 1,
                    what.to_string(),
                    "end of line",
                )
            })
        };
        let data = match tyu.as_str() {
            "A" => {
                let t = need1("an IPv4 address")?;
                RData::A(t.s.parse().map_err(|_| {
                    err(file, t.line, t.col, "an IPv4 address", format!("`{}`", t.s))
                })?)
            }
            "AAAA" => {
                let t = need1("an IPv6 address")?;
                RData::Aaaa(t.s.parse().map_err(|_| {
                    err(file, t.line, t.col, "an IPv6 address", format!("`{}`", t.s))
                })?)
            }
            "CNAME" => {
                let t = need1("a target name")?;
                RData::Cname(absolute(&t.s, origin.as_deref()).ok_or_else(|| {
                    err(
                        file,
                        t.line,
                        t.col,
                        "an absolute target name (no $ORIGIN is set)",
                        format!("`{}`", t.s),
                    )
                })?)
            }
            other => {
                if !noted_types.iter().any(|n| n == other) {
                    noted_types.push(other.to_string());
                    diags.push(diag(Severity::Note, file, ty.line, ty.col, format!("{other} records are kept as text; kubepath follows only A, AAAA and CNAME")));
                }
                RData::Other {
                    rtype: other.to_string(),
                    text: rdata
                        .iter()
                        .map(|t| t.s.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                }
            }
        };
        if matches!(data, RData::A(_) | RData::Aaaa(_) | RData::Cname(_)) && rdata.len() > 1 {
            let t = rdata[1];
            return Err(err(
                file,
                t.line,
                t.col,
                "end of record",
                format!("`{}`", t.s),
            ));
        }
        last_owner = Some(owner.clone());
        out.push(DnsRecord {
            name: owner,
            data,
            ttl: ttl.or(default_ttl),
            class: class.unwrap_or_else(|| "IN".into()),
            origin: DnsOrigin::ZoneFile,
            source: SourceRef::new(file.clone(), line),
        });
        Ok(())
    };
    for l in &lines {
        let body = strip_comment(l.text);
        if depth == 0 {
            if body.trim().is_empty() {
                continue;
            }
            entry_starts_blank = body.starts_with([' ', '\t']);
            entry_line = l.no;
        }
        // Tokenise, honouring quotes and parentheses.
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '(' => {
                    if depth == 0 {
                        paren_open = (l.no, (body[..i].chars().count() + 1) as u32);
                    }
                    depth += 1;
                }
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(err(
                            file,
                            l.no,
                            (i + 1) as u32,
                            "a record (unbalanced `)`)",
                            "`)`",
                        ));
                    }
                }
                c if c.is_whitespace() => {}
                '"' => {
                    let start = i;
                    let mut s = String::from("\"");
                    let mut closed = false;
                    let mut esc = false;
                    for (_, c2) in chars.by_ref() {
                        s.push(c2);
                        if esc {
                            esc = false;
                        } else if c2 == '\\' {
                            esc = true;
                        } else if c2 == '"' {
                            closed = true;
                            break;
                        }
                    }
                    if !closed {
                        return Err(err(
                            file,
                            l.no,
                            (start + 1) as u32,
                            "a closing `\"`",
                            "end of line",
                        ));
                    }
                    entry.push(ZTok {
                        s,
                        line: l.no,
                        col: (start + 1) as u32,
                    });
                }
                _ => {
                    let start = i;
                    let mut s = String::from(c);
                    while let Some(&(_, c2)) = chars.peek() {
                        if c2.is_whitespace() || c2 == '(' || c2 == ')' || c2 == '"' {
                            break;
                        }
                        s.push(c2);
                        chars.next();
                    }
                    entry.push(ZTok {
                        s,
                        line: l.no,
                        col: (start + 1) as u32,
                    });
                }
            }
        }
        if depth == 0 && !entry.is_empty() {
            process(std::mem::take(&mut entry), entry_starts_blank, entry_line)?;
        }
    }
    if depth > 0 {
        return Err(err(
            file,
            paren_open.0,
            paren_open.1,
            "a `)` closing this `(`",
            "end of file",
        ));
    }
    Ok(out)
}

fn ip_of(s: &str) -> Option<IpAddr> {
    let s = s.split('#').next()?.trim();
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    // busybox 1.3x prints the server as `10.96.0.10:53` (`[fd00::a]:53` for IPv6).
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

type ServerAndRecords = (Option<(IpAddr, SourceRef)>, Vec<DnsRecord>, Vec<DnsFailure>);

/// The name an echoed `nslookup NAME [SERVER]` or `dig [@SERVER] NAME [TYPE]` queried.
fn queried_name(cmd: Option<&str>) -> Option<String> {
    let words: Vec<&str> = cmd?.split_whitespace().skip(1).collect();
    words
        .iter()
        .find(|w| {
            !w.starts_with(['+', '-', '@'])
                && !TYPES.contains(&w.to_ascii_uppercase().as_str())
                && !CLASSES.contains(&w.to_ascii_uppercase().as_str())
                && w.parse::<IpAddr>().is_err()
        })
        .map(|w| fqdn(w))
}

/// What an `nslookup` line that reports no answer says: the name and the status.
/// `** server can't find NAME: NXDOMAIN` (BIND, busybox), `*** SERVER can't find NAME:
/// Non-existent domain` (Windows).
fn nslookup_failure(t: &str) -> Option<(String, String)> {
    // busybox 1.28: `nslookup: can't resolve 'web.example.com'` (no address of any type).
    if let Some(rest) = t.strip_prefix("nslookup: can't resolve '") {
        let name = rest.split('\'').next()?;
        return Some((fqdn(name), "can't resolve (busybox)".to_string()));
    }
    // `** server can't find` (BIND, busybox), `*** Can't find` (BIND's NODATA).
    let at = t.to_ascii_lowercase().find("can't find ")?;
    let rest = &t[at + "can't find ".len()..];
    let (name, status) = rest.rsplit_once(':')?;
    let status = match status.trim() {
        "Non-existent domain" => "NXDOMAIN".to_string(),
        "Server failed" => "SERVFAIL".to_string(),
        "Query refused" => "REFUSED".to_string(),
        "No answer" => "no answer".to_string(),
        s => s.to_string(),
    };
    Some((fqdn(name.trim()), status))
}

pub fn parse_nslookup(
    file: &Arc<str>,
    seg: &Segment<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Result<ServerAndRecords, ParseError> {
    let mut server: Option<(IpAddr, SourceRef)> = None;
    let mut expect_server_addr = false;
    let mut name: Option<String> = None;
    let mut out = Vec::new();
    // Windows nslookup: `Addresses:` and `Aliases:` continue on indented lines; the aliases
    // are the CNAME chain from the queried name to `Name:`.
    #[derive(PartialEq)]
    enum Cont {
        None,
        Addresses,
        Aliases,
    }
    let mut cont = Cont::None;
    let mut aliases: Vec<(String, u32)> = Vec::new();
    let mut failures: Vec<DnsFailure> = Vec::new();
    let mk = |name: String, data: RData, line: u32| DnsRecord {
        name,
        data,
        ttl: None,
        class: "IN".into(),
        origin: DnsOrigin::Nslookup { server: None },
        source: SourceRef::new(file.clone(), line),
    };
    let flush_aliases =
        |aliases: &mut Vec<(String, u32)>, name: &Option<String>, out: &mut Vec<DnsRecord>| {
            if let Some(target) = name {
                for i in 0..aliases.len() {
                    let to = aliases
                        .get(i + 1)
                        .map(|a| a.0.clone())
                        .unwrap_or_else(|| target.clone());
                    out.push(mk(aliases[i].0.clone(), RData::Cname(to), aliases[i].1));
                }
            }
            aliases.clear();
        };
    let address = |t: &str, v: &str, l: u32, col: u32| -> Result<IpAddr, ParseError> {
        ip_of(v).ok_or_else(|| {
            err(
                file,
                l,
                col + t.find(v).unwrap_or(0) as u32,
                "an IP address",
                format!("`{v}`"),
            )
        })
    };
    for l in seg.content() {
        let t = l.text.trim();
        let col = (l.text.len() - l.text.trim_start().len() + 1) as u32;
        let indented = l.text.starts_with([' ', '\t']);
        if indented && cont != Cont::None && !t.contains(':')
            || (indented && cont == Cont::Addresses && ip_of(t).is_some())
        {
            match cont {
                Cont::Addresses => {
                    let ip = address(t, t, l.no, col)?;
                    if let Some(n) = &name {
                        out.push(mk(n.clone(), rdata_of(ip), l.no));
                    }
                }
                Cont::Aliases => aliases.push((fqdn(t), l.no)),
                Cont::None => {}
            }
            continue;
        }
        cont = Cont::None;
        if let Some(v) = t.strip_prefix("Server:") {
            let v = v.trim();
            if let Some(ip) = ip_of(v) {
                server = Some((ip, SourceRef::new(file.clone(), l.no)));
            }
            expect_server_addr = true;
            continue;
        }
        if t == "Non-authoritative answer:" || t == "Authoritative answers can be found from:" {
            expect_server_addr = false;
            continue;
        }
        if let Some((lhs, rhs)) = t.split_once("canonical name =") {
            out.push(mk(fqdn(lhs.trim()), RData::Cname(fqdn(rhs.trim())), l.no));
            expect_server_addr = false;
            continue;
        }
        // Other `NAME<TAB>KEY = VALUE` answers (`-type=...` queries and the authority section):
        // `internet address =` / `has AAAA address` are addresses; the rest are kept as text.
        if let Some((lhs, rhs)) = t.split_once(" = ") {
            if indented {
                // SOA detail lines (`origin = ...`, `mail addr = ...`) under the name above.
                continue;
            }
            let (owner, key) = match lhs.rsplit_once('\t') {
                Some((o, k)) => (o.trim(), k.trim()),
                None => match lhs.split_once(char::is_whitespace) {
                    Some((o, k)) => (o.trim(), k.trim()),
                    None => ("", lhs.trim()),
                },
            };
            expect_server_addr = false;
            if owner.is_empty() {
                // SOA detail lines (`origin = ...`, `serial = ...`) under the previous name.
                continue;
            }
            let data = match (key, ip_of(rhs.trim())) {
                ("internet address", Some(ip)) | ("AAAA address", Some(ip)) => rdata_of(ip),
                _ => RData::Other {
                    rtype: key.to_string(),
                    text: rhs.trim().to_string(),
                },
            };
            out.push(mk(fqdn(owner), data, l.no));
            continue;
        }
        if !t.contains(char::is_whitespace)
            && t.contains('.')
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            // A bare name heading detail lines (`-type=soa`).
            continue;
        }
        if let Some((owner, v)) = t.split_once(" has AAAA address ") {
            let ip = address(t, v.trim(), l.no, col)?;
            out.push(mk(fqdn(owner.trim()), rdata_of(ip), l.no));
            continue;
        }
        if let Some(v) = t.strip_prefix("Name:") {
            flush_aliases(&mut aliases, &name, &mut out);
            name = Some(fqdn(v.trim()));
            expect_server_addr = false;
            continue;
        }
        if let Some(v) = t.strip_prefix("Aliases:") {
            aliases.push((fqdn(v.trim()), l.no));
            cont = Cont::Aliases;
            continue;
        }
        // `Address: A`, `Address: A#53`, `Addresses: A` (Windows), busybox `Address 1: A [name]`.
        if let Some(rest) = t.strip_prefix("Address") {
            let Some((_, v)) = rest.split_once(':') else {
                return Err(err(file, l.no, col, "`Address: ADDRESS`", format!("`{t}`")));
            };
            let mut words = v.split_whitespace();
            let v = words.next().unwrap_or("");
            // busybox: `Address 1: 10.96.0.1 kubernetes.default.svc.cluster.local`, the name
            // the address resolves back to.
            let printed = words.next();
            let ip = address(t, v, l.no, col)?;
            if expect_server_addr {
                if server.is_none() || v.contains('#') {
                    server = Some((ip, SourceRef::new(file.clone(), l.no)));
                }
                expect_server_addr = false;
                continue;
            }
            let Some(n) = &name else {
                return Err(err(
                    file,
                    l.no,
                    col,
                    "`Name:` before an answer `Address:`",
                    format!("`{t}`"),
                ));
            };
            // busybox prints the name as typed (`Name: kubernetes`); the search path made it
            // the name printed beside the address when that name extends it.
            let n = match printed {
                Some(p)
                    if fqdn(p) != *n
                        && fqdn(p).starts_with(&format!("{}.", n.trim_end_matches('.'))) =>
                {
                    fqdn(p)
                }
                _ => n.clone(),
            };
            if !n.trim_end_matches('.').contains('.') {
                diags.push(diag(
                    Severity::Warning,
                    file,
                    l.no,
                    col,
                    format!("`{}` is a short name: the resolver's search domains made it a longer name that the output does not show; kept as `{n}`", n.trim_end_matches('.')),
                ));
            }
            out.push(mk(n, rdata_of(ip), l.no));
            if rest.starts_with("es:") {
                cont = Cont::Addresses;
            }
            continue;
        }
        if is_nslookup_timeout(t)
            || t.starts_with("** server can't find")
            || t.starts_with("nslookup: can't resolve")
            || t.starts_with("*** ")
            || t.starts_with(";; connection timed out")
            || t.contains("NXDOMAIN")
            || t.contains("SERVFAIL")
            || t.starts_with(";;")
        {
            diags.push(diag(
                Severity::Note,
                file,
                l.no,
                col,
                format!("nslookup reported: {t}"),
            ));
            // No answer for a name: a fact a source that answers it disagrees with.
            let failed = nslookup_failure(t).or_else(|| {
                t.starts_with(";; connection timed out")
                    .then(|| queried_name(seg.command).map(|n| (n, "timed out".to_string())))
                    .flatten()
            });
            if let Some((name, status)) = failed {
                failures.push(DnsFailure {
                    name,
                    status,
                    qtype: None,
                    source: SourceRef::new(file.clone(), l.no),
                });
            }
            continue;
        }
        return Err(err(
            file,
            l.no,
            col,
            "an nslookup line (Server:, Address:, Name:, Aliases:, `canonical name =`)",
            format!("`{t}`"),
        ));
    }
    flush_aliases(&mut aliases, &name, &mut out);
    // Every record names the server that answered.
    let sip = server.as_ref().map(|x| x.0);
    for r in &mut out {
        r.origin = DnsOrigin::Nslookup { server: sip };
    }
    // `No answer` (NODATA) is about one record type: the one an echoed `-type=AAAA` asks
    // for; without one, nslookup (BIND 9.16+, busybox 1.3x) asks for A and AAAA and says `No
    // answer` for the type it got nothing of, so beside addresses of one family it concerns
    // the other (review 7: busybox's A answer and its AAAA `No answer` were taken as two
    // sources that disagree).
    let asked = seg.command.and_then(|c| {
        c.split_whitespace().find_map(|w| {
            let v = w
                .strip_prefix("-type=")
                .or_else(|| w.strip_prefix("-query="))
                .or_else(|| w.strip_prefix("-q="))
                .or_else(|| w.strip_prefix("-querytype="))?;
            Some(v.to_ascii_uppercase())
        })
    });
    failures.retain_mut(|f| {
        if f.status != "no answer" {
            return true;
        }
        if let Some(t) = &asked {
            f.qtype = Some(t.clone());
            return true;
        }
        let has = |v4: bool| {
            out.iter().any(|r| {
                r.name == f.name
                    && matches!((&r.data, v4), (RData::A(_), true) | (RData::Aaaa(_), false))
            })
        };
        match (has(true), has(false)) {
            (true, true) => false,
            (true, false) => {
                f.qtype = Some("AAAA".into());
                true
            }
            (false, true) => {
                f.qtype = Some("A".into());
                true
            }
            (false, false) => true,
        }
    });
    Ok((server, out, failures))
}

fn rdata_of(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(a) => RData::A(a),
        IpAddr::V6(a) => RData::Aaaa(a),
    }
}

pub fn parse_dig(
    file: &Arc<str>,
    seg: &Segment<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Result<ServerAndRecords, ParseError> {
    if let Some(cmd) = seg
        .command
        .filter(|c| c.split_whitespace().any(|w| w == "+short"))
    {
        return parse_dig_short(file, seg, cmd);
    }
    let mut server = None;
    let mut out = Vec::new();
    // `+noall +answer` (or `+nocmd`) prints no banner: the record lines start at once (review
    // 7: they were skipped as a prompt).
    let mut banner = seg
        .command
        .is_some_and(|c| c.split_whitespace().any(|w| w == "+noall" || w == "+nocmd"));
    // The queried name and type (the question section, else the banner or the command), and
    // a status other than NOERROR or a timeout, with its line.
    let mut question: Option<(String, String)> = None;
    let mut banner_name: Option<String> = None;
    let mut failed: Option<(String, u32)> = None;
    let mut answers: Option<u32> = None;
    let mut in_question = false;
    for l in seg.content() {
        let t = l.text.trim();
        let col = (l.text.len() - l.text.trim_start().len() + 1) as u32;
        if !banner && !t.starts_with(';') {
            // Above dig's banner: a prompt of a shape kubepath does not know.
            diags.push(diag(
                Severity::Warning,
                file,
                l.no,
                col,
                format!("`{t}`: not part of dig's output (a shell prompt kubepath does not recognise?); skipped"),
            ));
            continue;
        }
        banner = true;
        if let Some(v) = t.strip_prefix(";; SERVER:") {
            if let Some(ip) = ip_of(v.trim()) {
                server = Some((ip, SourceRef::new(file.clone(), l.no)));
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("; <<>> DiG ") {
            // `; <<>> DiG 9.18.28 <<>> [@server] name [type]`
            if let Some((_, q)) = rest.split_once("<<>>") {
                banner_name = queried_name(Some(&format!("dig {q}")));
            }
        }
        if let Some(v) = t.strip_prefix(";; flags:") {
            // `;; flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1`
            answers = v
                .split_once("ANSWER:")
                .and_then(|(_, n)| n.split(',').next())
                .and_then(|n| n.trim().parse().ok());
        }
        if t == ";; QUESTION SECTION:" {
            in_question = true;
            continue;
        }
        if in_question {
            in_question = false;
            // `;name.   IN  A`
            let w: Vec<&str> = t.trim_start_matches(';').split_whitespace().collect();
            if let [name, .., ty] = w.as_slice() {
                question = Some((fqdn(name), ty.to_ascii_uppercase()));
            }
            continue;
        }
        if t.starts_with(";; connection timed out") || t.starts_with(";; communications error") {
            failed = Some(("timed out".to_string(), l.no));
        }
        if t.starts_with(";; ->>HEADER<<-") && !t.contains("status: NOERROR") {
            diags.push(diag(
                Severity::Note,
                file,
                l.no,
                col,
                format!("dig reported: {t}"),
            ));
            let status = t
                .split_once("status:")
                .and_then(|(_, r)| r.split(',').next())
                .map(|x| x.trim().to_string())
                .unwrap_or_else(|| "an error".to_string());
            failed = Some((status, l.no));
            continue;
        }
        if t.starts_with(';') {
            continue;
        }
        let w: Vec<&str> = t.split_whitespace().collect();
        if w.len() < 5 {
            return Err(err(
                file,
                l.no,
                col,
                "a dig record line `NAME TTL CLASS TYPE DATA`",
                format!("`{t}`"),
            ));
        }
        let ttl = w[1].parse().map_err(|_| {
            err(
                file,
                l.no,
                col + t.find(w[1]).unwrap_or(0) as u32,
                "a TTL",
                format!("`{}`", w[1]),
            )
        })?;
        let ty = w[3].to_ascii_uppercase();
        let data = match ty.as_str() {
            "A" => RData::A(
                w[4].parse()
                    .map_err(|_| err(file, l.no, col, "an IPv4 address", format!("`{}`", w[4])))?,
            ),
            "AAAA" => RData::Aaaa(
                w[4].parse()
                    .map_err(|_| err(file, l.no, col, "an IPv6 address", format!("`{}`", w[4])))?,
            ),
            "CNAME" => RData::Cname(fqdn(w[4])),
            other => RData::Other {
                rtype: other.to_string(),
                text: w[4..].join(" "),
            },
        };
        out.push(DnsRecord {
            name: fqdn(w[0]),
            data,
            ttl: Some(ttl),
            class: w[2].to_ascii_uppercase(),
            origin: DnsOrigin::Dig { server: None },
            source: SourceRef::new(file.clone(), l.no),
        });
    }
    let sip = server.as_ref().map(|s: &(IpAddr, SourceRef)| s.0);
    for r in &mut out {
        r.origin = DnsOrigin::Dig { server: sip };
    }
    let qname = question
        .as_ref()
        .map(|q| q.0.clone())
        .or(banner_name)
        .or_else(|| queried_name(seg.command));
    let mut failures = Vec::new();
    if let (Some(name), Some((status, line))) = (&qname, failed) {
        failures.push(DnsFailure {
            name: name.clone(),
            status,
            qtype: None,
            source: SourceRef::new(file.clone(), line),
        });
    } else if let (Some((name, ty)), Some(0)) = (&question, answers) {
        // NOERROR without an answer (NODATA): the name has no record of the asked type (the
        // authority section may still hold the zone's SOA; sixth review R1).
        if ty == "A" || ty == "AAAA" {
            failures.push(DnsFailure {
                name: name.clone(),
                status: format!("no {ty} record (NOERROR, no answer)"),
                qtype: Some(ty.clone()),
                source: SourceRef::new(file.clone(), seg.content().next().map_or(1, |l| l.no)),
            });
        }
    }
    Ok((server, out, failures))
}

/// `dig +short NAME`: one value per line, CNAME targets (absolute names) first, then the
/// addresses of the last name. The queried name and server (`@A`) come from the echoed
/// command.
fn parse_dig_short(
    file: &Arc<str>,
    seg: &Segment<'_>,
    cmd: &str,
) -> Result<ServerAndRecords, ParseError> {
    let words: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let server_ip = words
        .iter()
        .find_map(|w| w.strip_prefix('@'))
        .and_then(ip_of);
    let qname = words.iter().find(|w| {
        !w.starts_with(['+', '-', '@'])
            && !TYPES.contains(&w.to_ascii_uppercase().as_str())
            && !CLASSES.contains(&w.to_ascii_uppercase().as_str())
    });
    let Some(qname) = qname else {
        return Err(err(
            file,
            seg.command_line,
            1,
            "the queried name in the echoed `dig +short NAME` command",
            format!("`{cmd}`"),
        ));
    };
    let origin = DnsOrigin::Dig { server: server_ip };
    let mut current = fqdn(qname);
    let mut out = Vec::new();
    for l in seg.content() {
        let t = l.text.trim();
        let col = (l.text.len() - l.text.trim_start().len() + 1) as u32;
        if t.starts_with(';') {
            continue;
        }
        let data = match ip_of(t) {
            Some(ip) => rdata_of(ip),
            None if t.ends_with('.') && !t.contains(char::is_whitespace) => {
                let target = fqdn(t);
                let r = RData::Cname(target.clone());
                out.push(DnsRecord {
                    name: current.clone(),
                    data: r,
                    ttl: None,
                    class: "IN".into(),
                    origin: origin.clone(),
                    source: SourceRef::new(file.clone(), l.no),
                });
                current = target;
                continue;
            }
            None => {
                return Err(err(
                    file,
                    l.no,
                    col,
                    "an address or a CNAME target (`name.`)",
                    format!("`{t}`"),
                ))
            }
        };
        out.push(DnsRecord {
            name: current.clone(),
            data,
            ttl: None,
            class: "IN".into(),
            origin: origin.clone(),
            source: SourceRef::new(file.clone(), l.no),
        });
    }
    let server = server_ip.map(|ip| (ip, SourceRef::new(file.clone(), seg.command_line)));
    // No line at all: the name has no record of the asked type, or does not exist (`+short`
    // prints neither status); a timeout prints `;; connection timed out`.
    let mut failures = Vec::new();
    if out.is_empty() {
        let timed_out = seg
            .content()
            .any(|l| l.text.trim().starts_with(";; connection timed out"));
        let qtype = words
            .iter()
            .map(|w| w.to_ascii_uppercase())
            .find(|w| TYPES.contains(&w.as_str()))
            .unwrap_or_else(|| "A".to_string());
        failures.push(DnsFailure {
            name: fqdn(qname),
            qtype: (!timed_out).then_some(qtype),
            status: if timed_out {
                "timed out".to_string()
            } else {
                "no answer (`dig +short` printed nothing: no such name, or no record of the type)"
                    .to_string()
            },
            source: SourceRef::new(file.clone(), seg.command_line),
        });
    }
    Ok((server, out, failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::text::segments;

    fn failures_of(t: &str) -> Vec<DnsFailure> {
        let f: Arc<str> = "dns/q.txt".into();
        let mut dns = Dns::default();
        let mut d = Vec::new();
        for seg in segments(t) {
            read(&f, &seg, &mut dns, &mut d).unwrap();
        }
        dns.failures
    }

    /// `dig +noall +answer` prints the record lines without dig's banner (review 7 X4).
    #[test]
    fn dig_noall_answer_is_read() {
        let f: Arc<str> = "dns/dig.txt".into();
        let mut dns = Dns::default();
        let mut d = Vec::new();
        for seg in segments(
            "$ dig +noall +answer web.example.com\nweb.example.com.\t300\tIN\tA\t10.99.0.77\n",
        ) {
            read(&f, &seg, &mut dns, &mut d).unwrap();
        }
        assert_eq!(dns.records.len(), 1, "{d:?}");
        assert_eq!(dns.records[0].data, RData::A("10.99.0.77".parse().unwrap()));
    }

    /// Resolver outputs without an answer are recorded with the queried name and what the
    /// resolver said, so a source that gives the name addresses can be compared with them
    /// (issue #11, fifth review).
    #[test]
    fn resolver_outputs_without_an_answer_are_recorded() {
        let f = failures_of("$ nslookup web.example.com\nServer:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\n** server can't find web.example.com: NXDOMAIN\n\n");
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].name.as_str(), f[0].status.as_str(), f[0].source.line),
            ("web.example.com.", "NXDOMAIN", 5)
        );
        assert!(f[0].concerns(true) && f[0].concerns(false));
        let f = failures_of("Server:  UnKnown\nAddress:  10.0.0.53\n\n*** UnKnown can't find web.example.com: Non-existent domain\n");
        assert_eq!(
            (f[0].name.as_str(), f[0].status.as_str()),
            ("web.example.com.", "NXDOMAIN")
        );
        let f = failures_of("; <<>> DiG 9.18.28 <<>> web.example.com\n;; global options: +cmd\n;; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: SERVFAIL, id: 1\n;; flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 1\n\n;; QUESTION SECTION:\n;web.example.com.\t\tIN\tA\n\n;; SERVER: 10.96.0.10#53(10.96.0.10) (UDP)\n");
        assert_eq!(
            (f[0].name.as_str(), f[0].status.as_str(), f[0].source.line),
            ("web.example.com.", "SERVFAIL", 4)
        );
        // NOERROR without an answer: no record of the asked type only.
        let f = failures_of("; <<>> DiG 9.18.28 <<>> web.example.com AAAA\n;; global options: +cmd\n;; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1\n\n;; QUESTION SECTION:\n;web.example.com.\t\tIN\tAAAA\n\n;; SERVER: 10.96.0.10#53(10.96.0.10) (UDP)\n");
        assert_eq!(f[0].qtype.as_deref(), Some("AAAA"));
        assert!(!f[0].concerns(true) && f[0].concerns(false));
        // A timeout names the queried name from dig's banner.
        let f = failures_of("; <<>> DiG 9.18.28 <<>> @10.0.0.53 web.example.com\n; (1 server found)\n;; global options: +cmd\n;; connection timed out; no servers could be reached\n");
        assert_eq!(
            (f[0].name.as_str(), f[0].status.as_str()),
            ("web.example.com.", "timed out")
        );
        // `dig +short` that printed nothing.
        let f = failures_of("$ dig +short web.example.com\n$ \n");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].qtype.as_deref(), Some("A"));
        // An answer is no failure.
        assert!(failures_of("$ dig +short web.example.com\n10.99.0.10\n").is_empty());
        // NOERROR, no answer, the zone's SOA in the authority section (sixth review R1).
        let f = failures_of("; <<>> DiG 9.18.28 <<>> web.example.com A\n;; global options: +cmd\n;; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr aa rd; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1\n\n;; QUESTION SECTION:\n;web.example.com.\t\tIN\tA\n\n;; AUTHORITY SECTION:\nexample.com.\t300\tIN\tSOA\tns1.example.com. hostmaster.example.com. 2026112801 3600 600 86400 300\n\n;; SERVER: 10.96.0.10#53(10.96.0.10) (UDP)\n");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].qtype.as_deref(), Some("A"));
        // busybox asks for A and AAAA: its `No answer` beside the A answer is about AAAA
        // (review 7 X1); `-type=AAAA` says so itself (X2).
        let f = failures_of("/ # nslookup web.example.com\nServer:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\nName:\tweb.example.com\nAddress: 10.99.0.10\n\n*** Can't find web.example.com: No answer\n\n");
        assert_eq!(f[0].qtype.as_deref(), Some("AAAA"), "{f:?}");
        let f = failures_of("$ nslookup -type=AAAA web.example.com\nServer:\t\t10.200.0.53\nAddress:\t10.200.0.53#53\n\n*** Can't find web.example.com: No answer\n\n");
        assert_eq!(f[0].qtype.as_deref(), Some("AAAA"), "{f:?}");
        // busybox 1.28 (review 8 Y1).
        let f = failures_of("/ # nslookup web.example.com\nServer:    10.96.0.10\nAddress 1: 10.96.0.10 kube-dns.kube-system.svc.cluster.local\n\nnslookup: can't resolve 'web.example.com'\n");
        assert_eq!(
            (f[0].name.as_str(), f[0].qtype.as_deref()),
            ("web.example.com.", None),
            "{f:?}"
        );
        // BIND nslookup's NODATA (R3).
        let f = failures_of("$ nslookup web.example.com\nServer:\t\t10.200.0.53\nAddress:\t10.200.0.53#53\n\n*** Can't find web.example.com: No answer\n\n");
        assert_eq!(
            (f[0].name.as_str(), f[0].status.as_str()),
            ("web.example.com.", "no answer")
        );
    }

    fn zone(t: &str, name: &str) -> Result<(Vec<DnsRecord>, Vec<Diagnostic>), ParseError> {
        let f: Arc<str> = name.into();
        let mut d = Vec::new();
        let s = segments(t);
        parse_zone(&f, &s[0], &mut d).map(|r| (r, d))
    }

    #[test]
    fn zone_features() {
        let (r, d) = zone("$ORIGIN example.com.\n$TTL 1h\n@ IN SOA ns1 host (\n 1 ; serial\n 2 3 4 5 )\n  IN NS ns1\nwww 300 IN A 10.0.0.1\n     IN AAAA fd00::1\nalias IN CNAME www\nWeb2 IN 60 CNAME other.org.\nmail IN MX 10 mx\n", "z").unwrap();
        assert_eq!(r[0].data.type_name(), "SOA");
        assert_eq!(r[1].name, "example.com.");
        assert_eq!(r[2].name, "www.example.com.");
        assert_eq!(r[2].ttl, Some(300));
        assert_eq!(r[3].name, "www.example.com.");
        assert_eq!(r[3].ttl, Some(3600));
        assert_eq!(r[4].data, RData::Cname("www.example.com.".into()));
        assert_eq!(r[5].name, "web2.example.com.");
        assert_eq!(r[5].ttl, Some(60));
        assert!(d.iter().filter(|d| d.severity == Severity::Note).count() >= 3);
    }

    #[test]
    fn zone_origin_from_file_name_and_errors() {
        let (r, _) = zone("www IN A 10.0.0.1\n", "dns/example.org.zone").unwrap();
        assert_eq!(r[0].name, "www.example.org.");
        let e = zone("$ORIGIN a.\nwww IN A 10.0.0.300\n", "z").unwrap_err();
        assert_eq!((e.line, e.column), (2, 10));
        let e = zone("$ORIGIN a.\nwww IN BOGUS x\n", "z").unwrap_err();
        assert_eq!((e.line, e.column), (2, 8));
        let e = zone("$ORIGIN a.\n@ IN SOA a b ( 1 2\n", "z").unwrap_err();
        assert!(e.expected.contains(")"));
        assert_eq!((e.line, e.column), (2, 14));
    }

    #[test]
    fn nslookup_seed() {
        let f: Arc<str> = "n".into();
        let s = segments("eccd@control-plane-wfb88:~> nslookup dc173prometheus1.cloud.k2.ericsson.se\nServer:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\nNon-authoritative answer:\ndc173prometheus1.cloud.k2.ericsson.se\tcanonical name = dc173dashboard1.cloud.k2.ericsson.se.\nName:\tdc173dashboard1.cloud.k2.ericsson.se\nAddress: 10.33.151.160\n\neccd@control-plane-wfb88:~>\n");
        let mut dns = Dns::default();
        assert_eq!(
            read(&f, &s[0], &mut dns, &mut Vec::new()).unwrap(),
            Some("nslookup")
        );
        assert_eq!(dns.servers[0].0.to_string(), "10.96.0.10");
        let res = dns.resolve("DC173prometheus1.cloud.k2.ericsson.se");
        assert_eq!(res.chain.len(), 1);
        assert_eq!(res.addresses.len(), 1);
        assert_eq!(
            res.addresses[0].data,
            RData::A("10.33.151.160".parse().unwrap())
        );
        assert_eq!(res.addresses[0].source.line, 8);
    }

    #[test]
    fn dig_answer() {
        let f: Arc<str> = "d".into();
        let s = segments("; <<>> DiG 9.18.28 <<>> a.example.com\n;; global options: +cmd\n;; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\n;; QUESTION SECTION:\n;a.example.com.\t\tIN\tA\n\n;; ANSWER SECTION:\na.example.com.\t300\tIN\tCNAME\tb.example.com.\nb.example.com.\t300\tIN\tA\t10.0.0.7\n\n;; SERVER: 10.96.0.10#53(10.96.0.10) (UDP)\n");
        let mut dns = Dns::default();
        assert_eq!(
            read(&f, &s[0], &mut dns, &mut Vec::new()).unwrap(),
            Some("dig")
        );
        let res = dns.resolve("a.example.com");
        assert_eq!(res.addresses[0].data, RData::A("10.0.0.7".parse().unwrap()));
        assert_eq!(
            res.addresses[0].origin,
            DnsOrigin::Dig {
                server: Some("10.96.0.10".parse().unwrap())
            }
        );
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("2w"), Some(1209600));
        assert_eq!(parse_ttl("h"), None);
        assert_eq!(parse_ttl("5x"), None);
    }
}
