//! `ip route [show table all|TABLE]` / `ip r` / `ip -6 route` (text) and `ip -j route` (JSON).
//!
//! Text layout (iproute2 ip/iproute.c `print_route`): `[TYPE] DST|default [tos T] [table T]
//! [proto P] [scope S] [src A] [metric M] [via [FAMILY] GW] [dev D] [FLAGS...]`, with iproute2
//! omitting the type when it is `unicast`, `table` when it is `main`, and `scope` when it is
//! `global`; multipath routes continue on lines starting with `nexthop`. A plain `ip route`
//! shows table main only; `ip route show table all` adds `table local`, `table N`.

use std::sync::Arc;

use ipnet::IpNet;
use kubepath_model::net::{
    table_id, Family, NextHop, NodeFact, NodeNet, Route, RouteCoverage, RouteType, TABLE_MAIN,
};
use kubepath_model::SourceRef;
use serde_json::Value;

use super::ipaddr::item_lines;
use super::text::{
    diag, err, parse_ip, parse_json_array, parse_prefix, parse_u32, Cursor, Line, Segment,
};
use crate::diag::{Diagnostic, ParseError, Severity};

/// Per-format structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRouteOutput {
    pub routes: Vec<Route>,
    /// The table selected by the echoed command (`table all` -> None with `all_tables`).
    pub all_tables: bool,
    pub tables: Vec<u32>,
}

const TYPES: &[&str] = &[
    "unicast",
    "local",
    "broadcast",
    "multicast",
    "anycast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
];

fn looks_like_route(line: &str) -> bool {
    let mut w = line.split_whitespace();
    let Some(mut first) = w.next() else {
        return false;
    };
    if TYPES.contains(&first) {
        match w.next() {
            Some(x) => first = x,
            None => return false,
        }
    }
    (first == "default" || parse_prefix(first).is_some())
        && (line.contains(" dev ")
            || line.contains(" via ")
            || line.contains(" proto ")
            || TYPES.iter().any(|t| line.starts_with(t))
            || line.contains(" table "))
}

fn command_is_route(cmd: &str) -> bool {
    let w: Vec<&str> = cmd.split_whitespace().collect();
    let Some(i) = w.iter().position(|x| *x == "ip") else {
        return false;
    };
    w[i + 1..]
        .iter()
        .find(|x| !x.starts_with('-'))
        .is_some_and(|x| "route".starts_with(*x) && !x.is_empty())
}

pub fn sniff(seg: &Segment<'_>) -> bool {
    if seg.command.is_some_and(command_is_route) {
        return true;
    }
    match seg.content().next() {
        Some(l) => {
            let t = l.text.trim_start();
            if t.starts_with('[') {
                return seg
                    .lines
                    .iter()
                    .take(40)
                    .any(|l| l.text.contains("\"dst\""));
            }
            looks_like_route(l.text)
        }
        None => false,
    }
}

fn ipv6_hint(cmd: Option<&str>) -> bool {
    cmd.is_some_and(|c| {
        c.split_whitespace()
            .any(|w| w == "-6" || w == "-family=inet6" || w == "inet6")
    })
}

/// Table selection of the echoed command: Some(None) = all tables, Some(Some(id)) = one table.
fn command_table(cmd: Option<&str>) -> Option<Option<u32>> {
    let w: Vec<&str> = cmd?.split_whitespace().collect();
    let i = w.iter().position(|x| *x == "table")?;
    match w.get(i + 1) {
        Some(&"all") => Some(None),
        Some(t) => table_id(t).map(Some),
        None => None,
    }
}

/// For text output: the number of leading lines that are route lines (with their `nexthop`
/// continuation lines). None for JSON.
pub fn extent(seg: &Segment<'_>) -> Option<usize> {
    let first = seg.content().next()?.text.trim_start();
    if first.starts_with('[') {
        return None;
    }
    seg.lines
        .iter()
        .position(|l| {
            let t = l.text.trim();
            !t.is_empty()
                && !t.starts_with("nexthop")
                && !l.text.starts_with([' ', '\t'])
                && !starts_like_route(t)
        })
        .or(Some(seg.lines.len()))
}

/// The first word is a route type, `default` or a prefix: a route line, possibly malformed.
fn starts_like_route(t: &str) -> bool {
    let mut w = t.split_whitespace();
    match w.next() {
        Some(x) if TYPES.contains(&x) => true,
        Some(x) => x == "default" || parse_prefix(x).is_some(),
        None => false,
    }
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
    let v6 = ipv6_hint(seg.command);
    let first = seg
        .content()
        .next()
        .map(|l| l.text.trim_start())
        .unwrap_or("");
    let (mut out, fmt) = if first.starts_with('[') {
        let (text, line0) = seg.text();
        (
            parse_json_routes(file, &text, line0, v6, diags)?,
            "ip-route-json",
        )
    } else {
        (parse_text(file, &seg.lines, v6, diags)?, "ip-route")
    };
    match command_table(seg.command) {
        Some(None) => out.all_tables = true,
        Some(Some(t)) => out.tables = vec![t],
        None => {
            // Without the command: a dump that shows another table than main is a table-all
            // dump; otherwise it is a plain `ip route` (table main).
            if out.routes.iter().any(|r| r.table != TABLE_MAIN) {
                out.all_tables = true;
            } else {
                out.tables = vec![TABLE_MAIN];
            }
        }
    }
    let src = SourceRef::new(
        file.clone(),
        seg.content()
            .next()
            .map(|l| l.no)
            .unwrap_or(seg.command_line),
    );
    if let Some(f) = seg.filter() {
        net.partial.push((NodeFact::Routes, src.clone(), f));
        diags.push(diag(
            Severity::Note,
            file,
            seg.command_line,
            0,
            "filtered `ip route` output: its routes are kept, but the table is not known to be complete",
        ));
    } else {
        // `ip -6 route ...` covers IPv6 only; `ip route` (IPv4 unless `table all`, which
        // prints both families) covers IPv4. `-4` restricts a table-all dump to IPv4.
        let v4_only = seg
            .command
            .is_some_and(|c| c.split_whitespace().any(|w| w == "-4"));
        let cover = |cov: &mut RouteCoverage, known: &mut Vec<u32>| {
            if out.all_tables {
                *cov = RouteCoverage::AllTables;
            } else if *cov != RouteCoverage::AllTables {
                *cov = RouteCoverage::Tables;
                for t in &out.tables {
                    if !known.contains(t) {
                        known.push(*t);
                    }
                }
            }
        };
        if !v6 {
            cover(&mut net.route_coverage, &mut net.route_tables_known);
        }
        if v6 || (out.all_tables && !v4_only) {
            cover(&mut net.route_coverage_v6, &mut net.route_tables_known_v6);
        }
    }
    disagreeing_captures(file, &out, net, diags);
    lower(out, net);
    net.read.entry(NodeFact::Routes).or_default().push(src);
    Ok(Some(fmt))
}

/// Two `ip route` outputs of one node that both list a table but disagree on it were taken
/// at different times, or one is another node's (a copied file): each is a whole picture of
/// one moment, and their union is neither. The node's routing is then unknown (a cut-like
/// skipped line), not merged (issue #11, review: an older default route read beside the
/// current one took a share of the traffic). Outputs that agree, like `ip route` beside `ip
/// route show table all`, are one picture.
fn disagreeing_captures(
    file: &Arc<str>,
    out: &IpRouteOutput,
    net: &mut NodeNet,
    diags: &mut Vec<Diagnostic>,
) {
    use std::collections::{BTreeMap, BTreeSet};
    let key = |r: &Route| {
        format!(
            "{:?}",
            (
                r.dst,
                &r.kind,
                r.tos,
                r.metric,
                r.gateway,
                &r.dev,
                &r.nexthops
            )
        )
    };
    // Per (table, family): `ip route` is IPv4 only, `table all` holds both; compare what
    // both could show.
    let fam = |r: &Route| format!("{:?}", r.family);
    let mut mine: BTreeMap<(u32, String), BTreeSet<String>> = BTreeMap::new();
    for r in &out.routes {
        mine.entry((r.table, fam(r))).or_default().insert(key(r));
    }
    let mut theirs: BTreeMap<(u32, String), (BTreeSet<String>, SourceRef)> = BTreeMap::new();
    for r in net.routes.iter().filter(|r| r.source.file != *file) {
        let k = (r.table, fam(r));
        if mine.contains_key(&k) {
            theirs
                .entry(k)
                .or_insert_with(|| (BTreeSet::new(), r.source.clone()))
                .0
                .insert(key(r));
        }
    }
    for ((table, family), (other, at)) in theirs {
        let here = &mine[&(table, family.clone())];
        if *here == other {
            continue;
        }
        let line = out
            .routes
            .iter()
            .find(|r| r.table == table && fam(r) == family)
            .map_or(1, |r| r.source.line);
        let why = format!(
            "this `ip route` output and {at} both list table {} but disagree ({} and {} routes): two captures of different moments or nodes, so the node's routes are unknown",
            kubepath_model::net::table_name(table),
            here.len(),
            other.len()
        );
        diags.push(diag(Severity::Error, file, line, 1, why.clone()));
        net.skipped.push(kubepath_model::net::SkippedLine {
            source: SourceRef::new(file.clone(), line),
            text: String::new(),
            why,
            cut: true,
            read: true,
        });
    }
}

/// Add routes to the node, dropping exact duplicates (the same route in two outputs).
pub fn lower(out: IpRouteOutput, net: &mut NodeNet) {
    // Index the node's routes by their identifying fields so large tables dedup in linear time.
    type Key = (
        u32,
        ipnet::IpNet,
        String,
        Option<u8>,
        Option<u32>,
        Option<std::net::IpAddr>,
        Option<String>,
    );
    let key = |r: &Route| -> Key {
        (
            r.table,
            r.dst,
            format!("{:?}", r.kind),
            r.tos,
            r.metric,
            r.gateway,
            r.dev.clone(),
        )
    };
    let mut index: std::collections::HashMap<Key, Vec<usize>> = std::collections::HashMap::new();
    for (i, r) in net.routes.iter().enumerate() {
        index.entry(key(r)).or_default().push(i);
    }
    for r in out.routes {
        let k = key(&r);
        let dup = index
            .get(&k)
            .is_some_and(|v| v.iter().any(|&i| net.routes[i].nexthops == r.nexthops));
        if !dup {
            index.entry(k).or_default().push(net.routes.len());
            net.routes.push(r);
        }
    }
}

fn parse_route_line(
    file: &Arc<str>,
    line: Line<'_>,
    v6_hint: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<Route, ParseError> {
    let mut c = Cursor::new(file, line);
    parse_route_at(&mut c, line, v6_hint, diags)
}

/// A route from the cursor's position to the end of the line: `[TYPE] PREFIX ATTRS...`, as
/// `ip route show` prints it and as `ip route add|del|replace` takes it (one grammar for
/// both: `man 8 ip-route`). `nexthop ...` groups may follow on the same line (the command
/// form, and `ip -o route`).
pub(crate) fn parse_route_at(
    c: &mut Cursor<'_, '_>,
    line: Line<'_>,
    v6_hint: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<Route, ParseError> {
    let file = c.file;
    let mut kind = RouteType::Unicast;
    if let Some(t) = c.peek().and_then(RouteType::parse) {
        kind = t;
        c.bump();
    }
    let d = c.expect("a destination prefix or `default`")?;
    let line_v6 = v6_hint || line.text.contains(" pref ") || line.text.contains(":");
    let dst = if d.s == "default" {
        if line_v6
            && !line
                .text
                .split_whitespace()
                .any(|w| w.contains('.') && parse_ip(w).is_some())
        {
            IpNet::V6(ipnet::Ipv6Net::default())
        } else {
            IpNet::V4(ipnet::Ipv4Net::default())
        }
    } else {
        parse_prefix(d.s).ok_or_else(|| c.error_at(d, "a destination prefix or `default`"))?
    };
    let mut r = Route::new(dst, SourceRef::new(file.clone(), line.no));
    r.kind = kind;
    r.table = TABLE_MAIN;
    parse_attrs(c, &mut r, diags)?;
    if r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4() {
        // `default` takes its family from the gateway when the line says nothing else.
        let v6_gw = r
            .gateway
            .or_else(|| r.nexthops.iter().find_map(|n| n.gateway))
            .is_some_and(|g| g.is_ipv6());
        if v6_gw {
            r.dst = IpNet::V6(ipnet::Ipv6Net::default());
            r.family = Family::Ipv6;
        }
    }
    Ok(r)
}

fn parse_attrs(
    c: &mut Cursor<'_, '_>,
    r: &mut Route,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), ParseError> {
    while let Some(t) = c.bump() {
        match t.s {
            "via" => {
                if matches!(c.peek(), Some("inet") | Some("inet6")) {
                    c.bump();
                }
                r.gateway = Some(c.expect_ip("gateway address")?);
            }
            "dev" => r.dev = Some(c.expect("device name")?.s.to_string()),
            "src" => r.prefsrc = Some(c.expect_ip("preferred source address")?),
            "metric" | "preference" => r.metric = Some(c.expect_parse("metric number")?),
            "proto" => r.proto = Some(c.expect("protocol")?.s.to_string()),
            "scope" => r.scope = Some(c.expect("scope")?.s.to_string()),
            "table" => {
                let tt = c.expect("table")?;
                r.table = table_id(tt.s).ok_or_else(|| {
                    c.error_at(tt, "a table number or local/main/default (named tables from a custom rt_tables are not known)")
                })?;
            }
            "tos" | "dsfield" => {
                let tt = c.expect("tos value")?;
                r.tos = Some(
                    parse_u32(tt.s)
                        .and_then(|v| u8::try_from(v).ok())
                        .ok_or_else(|| c.error_at(tt, "a TOS number"))?,
                );
            }
            "onlink" => r.onlink = true,
            "nexthop" => {
                let nh = parse_nexthop_attrs(c, true)?;
                r.nexthops.push(nh);
            }
            "linkdown" | "dead" | "offload" | "trap" | "rt_offload" | "rt_trap" | "pervasive"
            | "notify" | "unresolved" | "cache" | "cloned" => r.flags.push(t.s.into()),
            "mtu" | "advmss" | "rtt" | "rttvar" | "reordering" | "window" | "cwnd" | "initcwnd"
            | "initrwnd" | "ssthresh" | "realms" | "rto_min" | "hoplimit" | "features"
            | "quickack" | "congctl" | "pref" | "expires" | "error" | "nhid"
            | "fastopen_no_cookie" | "ttl-propagate" | "used" | "age" | "users" => {
                let mut v = c.expect("a value")?.s.to_string();
                if v == "lock" {
                    v = format!("lock {}", c.expect("a value")?.s);
                }
                r.extra.push((t.s.to_string(), v));
            }
            "encap" => {
                diags.push(diag(
                    Severity::Warning,
                    c.file,
                    c.line,
                    t.col,
                    "lightweight tunnel `encap` not modelled; the route is kept without it",
                ));
                r.extra.push((
                    "encap".into(),
                    c.toks[c.pos..]
                        .iter()
                        .map(|t| t.s)
                        .collect::<Vec<_>>()
                        .join(" "),
                ));
                c.pos = c.toks.len();
            }
            _ => {
                return Err(c.error_at(
                    t,
                    "a route attribute (via, dev, proto, scope, src, metric, table, onlink, ...)",
                ))
            }
        }
    }
    Ok(())
}

fn parse_nexthop(file: &Arc<str>, line: Line<'_>) -> Result<NextHop, ParseError> {
    let mut c = Cursor::new(file, line);
    c.bump(); // nexthop
    parse_nexthop_attrs(&mut c, false)
}

/// The attributes of one `nexthop` group; `inline`: the group ends at the next `nexthop`
/// word (several groups on one line) instead of at the end of the line.
fn parse_nexthop_attrs(c: &mut Cursor<'_, '_>, inline: bool) -> Result<NextHop, ParseError> {
    let mut nh = NextHop {
        gateway: None,
        dev: None,
        weight: 1,
        onlink: false,
        flags: Vec::new(),
    };
    while let Some(w) = c.peek() {
        if inline && w == "nexthop" {
            break;
        }
        let Some(t) = c.bump() else { break };
        match t.s {
            "via" => {
                if matches!(c.peek(), Some("inet") | Some("inet6")) {
                    c.bump();
                }
                nh.gateway = Some(c.expect_ip("gateway address")?);
            }
            "dev" => nh.dev = Some(c.expect("device name")?.s.to_string()),
            "weight" => nh.weight = c.expect_parse("weight")?,
            "onlink" => nh.onlink = true,
            "dead" | "linkdown" | "offload" | "trap" | "pervasive" => nh.flags.push(t.s.into()),
            "realms" => {
                c.expect("realms")?;
            }
            _ => return Err(c.error_at(t, "a next-hop attribute (via, dev, weight, onlink)")),
        }
    }
    Ok(nh)
}

pub fn parse_text(
    file: &Arc<str>,
    lines: &[Line<'_>],
    v6_hint: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<IpRouteOutput, ParseError> {
    let mut routes: Vec<Route> = Vec::new();
    for &line in lines {
        let t = line.text.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with("nexthop") {
            let Some(last) = routes.last_mut() else {
                return Err(err(
                    file,
                    line.no,
                    1,
                    "a route line before `nexthop`",
                    "`nexthop`",
                ));
            };
            let nh = parse_nexthop(file, line)?;
            if last.family == Family::Ipv6 && nh.gateway.is_some_and(|g| g.is_ipv4()) {
                // `default` with a v4 next hop on a multipath line: the destination family was
                // guessed wrong from the first line.
                last.dst = IpNet::V4(ipnet::Ipv4Net::default());
                last.family = Family::Ipv4;
            }
            last.nexthops.push(nh);
            continue;
        }
        routes.push(parse_route_line(file, line, v6_hint, diags)?);
    }
    Ok(IpRouteOutput {
        routes,
        all_tables: false,
        tables: Vec::new(),
    })
}

fn jstr<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

pub fn parse_json_routes(
    file: &Arc<str>,
    text: &str,
    line0: u32,
    v6_hint: bool,
    diags: &mut Vec<Diagnostic>,
) -> Result<IpRouteOutput, ParseError> {
    let items = parse_json_array(file, text, line0, "a JSON array of routes (`ip -j route`)")?;
    let lines = item_lines(text, line0);
    let mut routes = Vec::new();
    for (n, it) in items.iter().enumerate() {
        let line = lines.get(n).copied().unwrap_or(line0);
        let bad = |what: &str, found: String| err(file, line, 1, what.to_string(), found);
        let dst_s = jstr(it, "dst")
            .ok_or_else(|| bad("a route object with `dst`", "an object without it".into()))?;
        let gw = match jstr(it, "gateway") {
            Some(g) => Some(parse_ip(g).ok_or_else(|| bad("a gateway address", g.to_string()))?),
            None => None,
        };
        let v6 = v6_hint || gw.is_some_and(|g| g.is_ipv6()) || it.get("pref").is_some();
        let dst = if dst_s == "default" {
            if v6 {
                IpNet::V6(ipnet::Ipv6Net::default())
            } else {
                IpNet::V4(ipnet::Ipv4Net::default())
            }
        } else {
            parse_prefix(dst_s).ok_or_else(|| bad("a destination prefix", dst_s.to_string()))?
        };
        let kind = match jstr(it, "type") {
            Some(t) => RouteType::parse(t).ok_or_else(|| bad("a route type", t.to_string()))?,
            None => RouteType::Unicast,
        };
        let table = match it.get("table") {
            Some(Value::String(t)) => {
                table_id(t).ok_or_else(|| bad("a table number or local/main/default", t.clone()))?
            }
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(TABLE_MAIN),
            _ => TABLE_MAIN,
        };
        let flags: Vec<String> = it
            .get("flags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut nexthops = Vec::new();
        for nh in it
            .get("nexthops")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let nflags: Vec<String> = nh
                .get("flags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            nexthops.push(NextHop {
                gateway: jstr(nh, "gateway").and_then(parse_ip),
                dev: jstr(nh, "dev").map(str::to_string),
                weight: nh
                    .get("weight")
                    .and_then(Value::as_u64)
                    .and_then(|w| u32::try_from(w).ok())
                    .unwrap_or(1),
                onlink: nflags.iter().any(|f| f == "onlink"),
                flags: nflags.into_iter().filter(|f| f != "onlink").collect(),
            });
        }
        let mut extra = Vec::new();
        if let Some(p) = jstr(it, "pref") {
            extra.push(("pref".to_string(), p.to_string()));
        }
        if it.get("encap").is_some() {
            diags.push(diag(
                Severity::Warning,
                file,
                line,
                0,
                "lightweight tunnel `encap` not modelled; the route is kept without it",
            ));
        }
        routes.push(Route {
            family: if dst.addr().is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            table,
            kind,
            dst,
            tos: it
                .get("tos")
                .and_then(|t| {
                    t.as_u64()
                        .or_else(|| t.as_str().and_then(parse_u32).map(u64::from))
                })
                .and_then(|t| u8::try_from(t).ok()),
            gateway: gw,
            dev: jstr(it, "dev").map(str::to_string),
            prefsrc: jstr(it, "prefsrc").and_then(parse_ip),
            metric: it
                .get("metric")
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok()),
            proto: jstr(it, "protocol").map(str::to_string),
            scope: jstr(it, "scope").map(str::to_string),
            onlink: flags.iter().any(|f| f == "onlink"),
            nexthops,
            flags: flags.into_iter().filter(|f| f != "onlink").collect(),
            extra,
            source: SourceRef::new(file.clone(), line),
        });
    }
    Ok(IpRouteOutput {
        routes,
        all_tables: false,
        tables: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::text::segments;

    fn parse(t: &str) -> Result<IpRouteOutput, ParseError> {
        let f: Arc<str> = "t".into();
        let segs = segments(t);
        parse_text(&f, &segs[0].lines, false, &mut Vec::new())
    }

    #[test]
    fn seed_default_route() {
        let o =
            parse("default via 10.33.152.65 dev ecfe_traf1 proto static metric 804 \n").unwrap();
        let r = &o.routes[0];
        assert_eq!(r.dst.to_string(), "0.0.0.0/0");
        assert_eq!(
            r.gateway.map(|g| g.to_string()).as_deref(),
            Some("10.33.152.65")
        );
        assert_eq!(r.dev.as_deref(), Some("ecfe_traf1"));
        assert_eq!(r.metric, Some(804));
        assert_eq!(r.proto.as_deref(), Some("static"));
        assert_eq!(r.table, TABLE_MAIN);
    }

    #[test]
    fn calico_and_types() {
        let o = parse("blackhole 192.168.22.192/26 proto bird \n192.168.107.128/26 via 10.0.10.102 dev tunl0 proto bird onlink \nlocal 10.0.10.105 dev eth0 table local proto kernel scope host src 10.0.10.105 \nunreachable default dev lo table 10 proto kernel metric 4278198272\n").unwrap();
        assert_eq!(o.routes[0].kind, RouteType::Blackhole);
        assert!(o.routes[1].onlink);
        assert_eq!(o.routes[2].table, 255);
        assert_eq!(o.routes[2].dst.to_string(), "10.0.10.105/32");
        assert_eq!(o.routes[3].kind, RouteType::Unreachable);
        assert_eq!(o.routes[3].table, 10);
    }

    #[test]
    fn multipath() {
        let o = parse("default proto bird metric 10\n\tnexthop via 10.0.0.1 dev eth0 weight 1\n\tnexthop via 10.0.1.1 dev eth1 weight 2 onlink\n").unwrap();
        assert_eq!(o.routes[0].nexthops.len(), 2);
        assert_eq!(o.routes[0].nexthops[1].weight, 2);
        assert!(o.routes[0].nexthops[1].onlink);
        assert_eq!(o.routes[0].family, Family::Ipv4);
    }

    #[test]
    fn ipv6() {
        let o = parse("fe80::/64 dev eth0 proto kernel metric 256 pref medium\ndefault via fe80::1 dev eth0 proto ra metric 1024 expires 1799sec pref medium\n").unwrap();
        assert_eq!(o.routes[1].dst.to_string(), "::/0");
        assert_eq!(o.routes[1].family, Family::Ipv6);
    }

    #[test]
    fn unknown_attribute_is_error_with_column() {
        let e = parse("10.0.0.0/8 dev eth0 bogus 1\n").unwrap_err();
        assert_eq!((e.line, e.column), (1, 21));
        assert!(e.expected.contains("route attribute"));
    }
}
