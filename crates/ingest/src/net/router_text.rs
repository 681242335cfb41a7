//! Router CLI text: SLX-OS and Cisco-style `show ip bgp [vrf NAME]`, `show running-config
//! interface` blocks and `show interface`.
//!
//! `show ip bgp` (SLX-OS, as in the seed):
//! ```text
//! Total number of BGP Routes: 31
//! Status codes: s suppressed, d damped, h history, * valid, > best, i internal, S stale, x best-external
//! Origin codes: i - IGP, e - EGP, ? - incomplete
//!      Network            Next Hop        RD              MED        LocPrf     Weight Path
//! *>x  10.33.151.160/32   10.33.151.68                    none       100        0      4259841731 i
//! ```
//! SLX prints MED (a number or `none`), LocPrf and Weight on every line and leaves RD blank in
//! a VRF table. Cisco IOS / FRR text uses `Metric LocPrf Weight Path` and leaves Metric and
//! LocPrf blank when unset, so for that dialect the header's column positions decide which
//! field a number is in. A blank Network column means "same prefix as the line above"; a long
//! network may push the rest of the line onto the next one (Cisco wraps): both are handled.
//!
//! FRR's own text (FRR 8.4.4, `show ip bgp`, `show ip bgp vrf NAME`, `show ip bgp vrf all`,
//! captured from bgpd in network namespaces: fixtures/frr/ok/*.txt, fixtures/frr/README.md) is
//! that Cisco layout with these shapes, all read here:
//! ```text
//! Instance om_vr:                                  (vrf all: one table per instance)
//!    Network          Next Hop            Metric LocPrf Weight Path
//! *= 10.33.151.160/32 10.33.151.70(node-3)         (next hop + peer hostname with
//!                                              0             0 4259841731 i   show-nexthop-hostname;
//!                                                  20 characters or more wrap the attributes)
//! *= 5.5.5.5/32       eth0                     0             0 65001 i     (BGP unnumbered)
//!    10.0.0.1/32      0.0.0.0(r-a)             0         32768 i           (not valid: no status)
//! *>i10.2.2.2/32      10.0.12.2(...)                     (iBGP: the `i` glued to the network)
//! * i199.16.104.96/27 10.0.13.2(e)             0    100      0 i
//! Displayed  4 routes and 6 total paths                  (checked against what was read)
//! ```
//! and `No BGP prefixes displayed, 0 exist` for an empty table (FRR's `show bgp` without an
//! address family shows IPv6 unicast, so such a table says nothing about IPv4).

use std::sync::Arc;

use kubepath_model::net::{
    BgpPath, BgpRoute, BgpStatus, Origin, Router, RouterVendor, DEFAULT_VRF,
};
use kubepath_model::SourceRef;

use super::text::{diag, err, parse_ip, parse_prefix, tokens, Line, Segment, Tok};
use crate::diag::{Diagnostic, ParseError, Severity};

/// Per-format structure of `show ip bgp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpTable {
    pub vrf: Option<String>,
    pub total_printed: Option<u32>,
    pub dialect: Dialect,
    /// FRR's banner lines were seen (`Default local pref ...`, `Displayed N routes ...`).
    pub frr: bool,
    /// FRR's `Displayed N routes and M total paths`.
    pub displayed: Option<(u32, u32)>,
    /// The output's closing count line was seen (`Displayed ...`, `No BGP prefixes displayed`,
    /// `Processed ...`, `Total number of prefixes ...`): FRR always ends a table with one, so
    /// an FRR table without it was cut.
    pub ended: bool,
    /// The first line of the table (its `Instance NAME:` line in a `vrf all` output).
    pub line: u32,
    /// The `Route Distinguisher: RD` block the routes were listed under (VPNv4 tables).
    pub rd: Option<String>,
    /// Under a `Route Distinguisher:` that is not `(default for vrf NAME)`: VPN routes of
    /// another RD, in no local VRF.
    pub foreign_rd: bool,
    pub routes: Vec<BgpRoute>,
}

/// Whose status codes a table uses: they differ in letters and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    /// Cisco IOS / IOS-XR / FRR / SLX: `s d h * > i S x m r b f a c R V I N =`.
    Common,
    /// NX-OS: status `s x S d h * >`, then a path-type letter `i e c l a r I` (`*>e`,
    /// `*>l10.10.0.1/32`); `x` is "deleted", `r` is "redistributed" (not a RIB failure).
    NxOs,
    /// Arista EOS: `* >` with a blank, `#` not installed, `E` ECMP head, `e` ECMP,
    /// `c` contributing to ECMP, `S` stale, `s` suppressed, `b` backup; `-` as the next hop
    /// of a local route.
    Eos,
}

impl Flavor {
    fn chars(self) -> &'static str {
        match self {
            Flavor::Common => STATUS_CHARS,
            Flavor::NxOs => "sxSdh*>|&iecla rI",
            Flavor::Eos => "s*>#EeScb",
        }
    }
    fn is_status(self, s: &str) -> bool {
        !s.is_empty() && s.chars().all(|c| c != ' ' && self.chars().contains(c))
    }
}

/// Which column layout the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `Network Next Hop RD MED LocPrf Weight Path`: every attribute printed.
    Slx,
    /// `Network Next Hop Metric LocPrf Weight Path`: blanks where unset.
    Cisco,
}

/// One interface block of `show running-config interface`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfConfig {
    pub name: String,
    pub vrf: Option<String>,
    pub addresses: Vec<ipnet::IpNet>,
    pub anycast: Vec<ipnet::IpNet>,
    pub shutdown: Option<bool>,
    pub skipped: Vec<String>,
    pub line: u32,
}

/// One interface of `show interface`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfState {
    pub name: String,
    /// None when the output does not say (NX-OS `Ethernet1/1/1 is up` with no `admin state`).
    pub admin_up: Option<bool>,
    pub oper_up: bool,
    pub mac: Option<String>,
    pub line: u32,
}

/// Canonical interface name: `Ve805` and `Ve  805` become `Ve 805` (SLX prints both forms in
/// different commands).
pub fn canonical_ifname(name: &str) -> String {
    let n = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let alpha: String = n
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '-')
        .collect();
    let rest = &n[alpha.len()..];
    if !alpha.is_empty() && rest.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        format!("{alpha} {rest}")
    } else {
        n
    }
}

/// Normalise `0004.96d6.8ebc` / `00-04-96-d6-8e-bc` / `00:04:96:D6:8E:BC` to `00:04:96:d6:8e:bc`.
pub fn normalise_mac(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    if hex.len() != 12
        || s.chars()
            .any(|c| !(c.is_ascii_hexdigit() || ".:-".contains(c)))
    {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(
        (0..6)
            .map(|i| &h[2 * i..2 * i + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn command_words(seg: &Segment<'_>) -> Vec<String> {
    seg.command
        .map(|c| {
            c.split('|')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(|w| w.to_ascii_lowercase())
                .collect()
        })
        .unwrap_or_default()
}

fn is_bgp_header(t: &str) -> bool {
    // IOS-XR prints `Next-hop`.
    t.contains("Network")
        && (t.contains("Next Hop") || t.contains("Next-hop") || t.contains("Next-Hop"))
        && t.contains("Path")
}

pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    rt: &mut Router,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    let words = command_words(seg);
    let bgp = seg.content().take(12).any(|l| {
        is_bgp_header(l.text)
            || l.text.starts_with("Total number of BGP Routes")
            || l.text.starts_with("BGP table version")
    }) || (words.first().is_some_and(|w| w == "show")
        && words.iter().any(|w| w == "bgp"));
    if bgp {
        let ironware = seg.content().take(12).any(|l| {
            let t = l.text.trim();
            t.starts_with("Prefix") && t.contains("Next Hop") && t.ends_with("Status")
        });
        let tables = if ironware {
            vec![parse_bgp_routes(file, seg)?]
        } else {
            parse_bgp_instances(file, seg, diags)?
        };
        for t in tables {
            lower_bgp(file, seg, t, rt, diags);
        }
        return Ok(Some("show-ip-bgp"));
    }
    let first_config = seg
        .content()
        .map(|l| l.text.trim())
        .find(|t| !is_config_preamble(t))
        .unwrap_or("");
    if first_config.starts_with("interface ") {
        let blocks = parse_run_int(file, &seg.lines)?;
        for b in blocks {
            let src = SourceRef::new(file.clone(), b.line);
            if !b.skipped.is_empty() {
                diags.push(diag(
                    Severity::Note,
                    file,
                    b.line,
                    1,
                    format!(
                        "interface {}: configuration not modelled: {}",
                        b.name,
                        b.skipped.join("; ")
                    ),
                ));
            }
            let i = rt.interface_mut(&b.name, &src);
            i.source = src;
            i.vrf = b.vrf;
            i.addresses = b.addresses;
            i.anycast_addresses = b.anycast;
            i.admin_up = b.shutdown.map(|s| !s);
        }
        if rt.vendor.is_none()
            && seg
                .lines
                .iter()
                .any(|l| l.text.contains("anycast-address") || l.text.starts_with("interface Ve "))
        {
            rt.vendor = Some(RouterVendor::Slx);
        }
        return Ok(Some("show-running-config-interface"));
    }
    let lines: Vec<&Line<'_>> = seg.content().collect();
    if lines
        .first()
        .is_some_and(|l| parse_if_header(l.text, lines.get(1).map(|n| n.text)).is_some())
    {
        let (states, odd) = parse_show_interface(&seg.lines);
        for (no, t) in odd {
            diags.push(diag(
                Severity::Warning,
                file,
                no,
                1,
                format!("`{t}`: not an interface header kubepath knows (`NAME is STATE, line protocol is STATE`, or NX-OS `NAME is STATE` with `admin state is ...` below); the lines under it are not read"),
            ));
        }
        for s in states {
            let src = SourceRef::new(file.clone(), s.line);
            let i = rt.interface_mut(&s.name, &src);
            i.oper_up = Some(s.oper_up);
            if i.admin_up.is_none() {
                i.admin_up = s.admin_up;
            }
            if s.mac.is_some() {
                i.mac = s.mac;
            }
        }
        return Ok(Some("show-interface"));
    }
    Ok(None)
}

fn lower_bgp(
    file: &Arc<str>,
    seg: &Segment<'_>,
    t: BgpTable,
    rt: &mut Router,
    diags: &mut Vec<Diagnostic>,
) {
    if t.foreign_rd {
        let n: usize = t.routes.iter().map(|r| r.paths.len()).sum();
        diags.push(diag(
            Severity::Warning,
            file,
            t.line,
            1,
            format!(
                "`Route Distinguisher: {}` is not the default RD of a local VRF (no `default for vrf NAME`): its {} route(s), {n} path(s), are VPN routes in no VRF table; not read",
                t.rd.as_deref().unwrap_or("?"),
                t.routes.len()
            ),
        ));
        return;
    }
    let vrf = match t.vrf {
        Some(v) => v,
        None => DEFAULT_VRF.to_string(),
    };
    if let Some(f) = seg.filter() {
        diags.push(diag(
            Severity::Warning,
            file,
            seg.command_line,
            1,
            format!("filtered BGP table (`{f}`): paths of VRF {vrf} not shown are unknown"),
        ));
    }
    if rt.vendor.is_none() {
        rt.vendor = Some(match (t.frr, t.dialect) {
            (true, _) => RouterVendor::Frr,
            (false, Dialect::Slx) => RouterVendor::Slx,
            (false, Dialect::Cisco) => RouterVendor::CiscoLike,
        });
    }
    let paths: usize = t.routes.iter().map(|r| r.paths.len()).sum();
    let routes_read = t.routes.len();
    // Fewer paths read than the router counted: the table was cut (a paste, a pager). What
    // the missing paths said is unknown for every destination of the router (recorded as a
    // cut line, like a node output cut mid-line), not "no route".
    // `text`: empty for a count that disagrees (the loader drops such a cut when skipped lines
    // of the table explain the shortfall), the missing line's description otherwise.
    let mut truncated = |line: u32, why: String, text: &str| {
        rt.skipped.push(kubepath_model::net::SkippedLine {
            source: SourceRef::new(file.clone(), line),
            text: text.to_string(),
            why,
            cut: true,
            read: true,
        });
    };
    if let Some((nr, np)) = t.displayed {
        if (nr as usize) > t.routes.len() || (np as usize) > paths {
            truncated(
                t.line,
                format!("VRF {vrf}: the router counted {nr} routes, {np} paths, but {paths} paths were read: the table was cut"),
                "",
            );
        }
    }
    // FRR ends every text table with `Displayed N routes and M total paths` (or `No BGP
    // prefixes displayed, N exist` when empty: bgpd's `bgp_show_table`): an FRR table without
    // it was cut, even at the end of a line (issue #11, review: three paths of eleven were
    // read as the whole ECMP set).
    if t.frr && !t.ended {
        truncated(
            t.line,
            format!("VRF {vrf}: FRR ends a table with `Displayed N routes and M total paths`, and this one has none: the table was cut after {paths} paths"),
            "(no `Displayed` line)",
        );
    }
    if let Some(total) = t.total_printed {
        if total as usize > paths {
            truncated(
                seg.content().next().map(|l| l.no).unwrap_or(0),
                format!("VRF {vrf}: `Total number of BGP Routes: {total}` but {paths} paths were listed: the table was cut"),
                "",
            );
        }
    }
    if let Some((nr, np)) = t.displayed {
        if nr as usize != t.routes.len() || np as usize != paths {
            diags.push(diag(
                Severity::Warning,
                file,
                t.line,
                1,
                if t.frr {
                    format!(
                        "VRF {vrf}: FRR says `Displayed {nr} routes and {np} total paths` but {} routes and {paths} paths were read; the table may be truncated",
                        t.routes.len()
                    )
                } else {
                    format!(
                        "VRF {vrf}: the router says `Processed {nr} prefixes, {np} paths` but {} routes and {paths} paths were read; the table may be truncated",
                        t.routes.len()
                    )
                },
            ));
        }
    }
    if let Some(total) = t.total_printed {
        if total as usize != paths {
            diags.push(diag(
                Severity::Warning,
                file,
                seg.content().next().map(|l| l.no).unwrap_or(0),
                1,
                format!("`Total number of BGP Routes: {total}` but {paths} paths were listed; the table may be truncated"),
            ));
        }
    }
    let src = SourceRef::new(file.clone(), t.line);
    let v = rt.vrfs.entry(vrf.clone()).or_default();
    if let Some(old) = &v.bgp_source {
        diags.push(diag(
            Severity::Warning,
            file,
            src.line,
            0,
            format!("BGP table of VRF {vrf} also read from {old}; paths are merged"),
        ));
    }
    v.bgp_counted = match (t.displayed, t.total_printed) {
        (Some((nr, np)), _) => nr as usize == routes_read && np as usize == paths,
        (None, Some(total)) => total as usize == paths,
        (None, None) => false,
    } && v.bgp_source.is_none();
    v.bgp_source = Some(src);
    v.bgp_total_printed = t.total_printed;
    let mut index: std::collections::HashMap<ipnet::IpNet, usize> = v
        .bgp
        .iter()
        .enumerate()
        .map(|(i, r)| (r.prefix, i))
        .collect();
    for r in t.routes {
        match index.get(&r.prefix).copied() {
            Some(i) => {
                let x = &mut v.bgp[i];
                for p in r.paths {
                    if !x.paths.iter().any(|o| {
                        o.next_hop == p.next_hop && o.status == p.status && o.as_path == p.as_path
                    }) {
                        x.paths.push(p);
                    }
                }
            }
            None => {
                index.insert(r.prefix, v.bgp.len());
                v.bgp.push(r);
            }
        }
    }
}

/// `STATUS NETWORK ...`: a path line even without a column header above it.
fn looks_like_path_line(t: &str, flavor: Flavor) -> bool {
    let mut w = t.split_whitespace();
    match (w.next(), w.next()) {
        (Some(a), Some(b)) => flavor.is_status(a) && a.contains('*') && parse_prefix(b).is_some(),
        _ => false,
    }
}

/// Column starts (0-based char index) of the header words.
#[derive(Debug, Clone, Copy, Default)]
struct Cols {
    /// Where the Next Hop column starts.
    nh: Option<usize>,
    rd: Option<usize>,
    med: Option<usize>,
    locprf: Option<usize>,
    path: Option<usize>,
}

const STATUS_CHARS: &str = "*>isdhSxmrbfacRVIN=";

fn status_of(s: &str, flavor: Flavor) -> BgpStatus {
    let mut st = BgpStatus::default();
    match flavor {
        Flavor::Common => {}
        Flavor::NxOs => {
            for c in s.chars() {
                match c {
                    '*' => st.valid = true,
                    '>' => st.best = true,
                    'i' => st.internal = true,
                    's' => st.suppressed = true,
                    'd' => st.damped = true,
                    'h' => st.history = true,
                    'S' => st.stale = true,
                    '|' => st.multipath = true,
                    // `x` deleted, `&` backup, path types e c l a r I: no flag.
                    _ => {}
                }
            }
            return st;
        }
        Flavor::Eos => {
            for c in s.chars() {
                match c {
                    '*' => st.valid = true,
                    '>' => st.best = true,
                    's' => st.suppressed = true,
                    'S' => st.stale = true,
                    '#' => st.rib_failure = true,
                    'E' | 'e' | 'c' => st.multipath = true,
                    _ => {}
                }
            }
            return st;
        }
    }
    for c in s.chars() {
        match c {
            '*' => st.valid = true,
            '>' => st.best = true,
            'i' => st.internal = true,
            's' => st.suppressed = true,
            'd' => st.damped = true,
            'h' => st.history = true,
            'S' => st.stale = true,
            'x' => st.best_external = true,
            'm' | '=' => st.multipath = true,
            'r' | 'R' => st.rib_failure = true,
            _ => {}
        }
    }
    st
}

fn parse_num_or_none(
    tok: Tok<'_>,
    file: &Arc<str>,
    line: u32,
    what: &str,
) -> Result<Option<u32>, ParseError> {
    if tok.s == "none" || tok.s == "-" {
        return Ok(None);
    }
    tok.s.parse().map(Some).map_err(|_| {
        err(
            file,
            line,
            tok.col,
            format!("{what} (a number or `none`)"),
            format!("`{}`", tok.s),
        )
    })
}

/// FRR's `Instance NAME:` line, which opens each VRF's table in `show ip bgp vrf all`.
fn instance_name(t: &str) -> Option<&str> {
    let n = t.trim().strip_prefix("Instance ")?.strip_suffix(':')?;
    (!n.is_empty() && !n.contains(char::is_whitespace)).then_some(n)
}

/// The BGP tables of a `show ip bgp` text output: one, or with FRR's `vrf all` one per
/// `Instance NAME:` section. An instance that says `No BGP prefixes displayed` after a `show
/// bgp` without an address family is FRR's IPv6 unicast table: skipped with a note.
pub fn parse_bgp_instances(
    file: &Arc<str>,
    seg: &Segment<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<BgpTable>, ParseError> {
    let starts: Vec<usize> = seg
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| instance_name(l.text).is_some())
        .map(|(i, _)| i)
        .collect();
    let words = command_words(seg);
    let ipv6_default =
        words.iter().any(|w| w == "bgp") && !words.iter().any(|w| w == "ip" || w == "ipv4");
    if starts.is_empty() {
        let empty = seg
            .content()
            .any(|l| l.text.trim_start().starts_with("No BGP prefixes displayed"));
        if empty && ipv6_default {
            diags.push(diag(
                Severity::Note,
                file,
                seg.command_line,
                1,
                "FRR's `show bgp` without an address family shows the IPv6 unicast table (empty here); no IPv4 BGP table read",
            ));
            return Ok(Vec::new());
        }
        return parse_bgp(file, seg, diags);
    }
    let mut out = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(seg.lines.len());
        let head = &seg.lines[start];
        let name = instance_name(head.text).unwrap_or("default");
        let body = &seg.lines[start + 1..end];
        let empty = body
            .iter()
            .any(|l| l.text.trim_start().starts_with("No BGP prefixes displayed"));
        if empty && ipv6_default {
            diags.push(diag(
                Severity::Note,
                file,
                head.no,
                1,
                format!("VRF {name}: FRR's `show bgp` without an address family shows the IPv6 unicast table (empty here); no IPv4 BGP table read"),
            ));
            continue;
        }
        let mut ts = parse_bgp_body(file, body, Some(name.to_string()), diags)?;
        if let Some(t) = ts.first_mut().filter(|t| t.rd.is_none()) {
            t.line = head.no;
        }
        out.extend(ts);
    }
    Ok(out)
}

/// A `Route Distinguisher: RD [(default for vrf NAME)]` line: the RD and the VRF.
fn rd_line(t: &str) -> Option<(String, Option<String>)> {
    let rest = t.trim().strip_prefix("Route Distinguisher:")?.trim();
    let (rd, tail) = match rest.split_once(char::is_whitespace) {
        Some((rd, tail)) => (rd, tail.trim()),
        None => (rest, ""),
    };
    let vrf = tail
        .strip_prefix("(default for vrf ")
        .and_then(|v| v.strip_suffix(')'))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    Some((rd.to_string(), vrf))
}

/// The lines of one table, split at `Route Distinguisher:` lines (VPNv4 tables: Cisco IOS
/// `show bgp vpnv4 unicast all`, IOS-XR): routes under `(default for vrf NAME)` are VRF
/// NAME's, routes under another RD are VPN routes in no local VRF. The legend and column
/// header above the first RD apply to every block. The counts printed at the end
/// (`Displayed`, `Processed`) cover all blocks: checked here on the sum.
fn parse_bgp_body(
    file: &Arc<str>,
    lines: &[Line<'_>],
    vrf: Option<String>,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<BgpTable>, ParseError> {
    let rds: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| rd_line(l.text).is_some())
        .map(|(i, _)| i)
        .collect();
    if rds.is_empty() {
        return Ok(vec![parse_bgp_lines(file, lines, vrf)?]);
    }
    let head = &lines[..rds[0]];
    let mut out = Vec::new();
    let first = parse_bgp_lines(file, head, vrf.clone())?;
    if !first.routes.is_empty() {
        out.push(first);
    }
    for (k, &i) in rds.iter().enumerate() {
        let end = rds.get(k + 1).copied().unwrap_or(lines.len());
        let (rd, rd_vrf) = rd_line(lines[i].text).unwrap_or_default();
        let mut chunk: Vec<Line<'_>> = head.to_vec();
        chunk.extend_from_slice(&lines[i + 1..end]);
        let foreign = rd_vrf.is_none();
        let mut t = parse_bgp_lines(file, &chunk, rd_vrf.or_else(|| vrf.clone()))?;
        t.line = lines[i].no;
        t.rd = Some(rd);
        t.foreign_rd = foreign;
        out.push(t);
    }
    // The printed counts are the whole output's.
    let counts = out
        .iter()
        .rev()
        .find_map(|t| t.displayed.map(|d| (d, t.frr)));
    let ended = out.iter().any(|t| t.ended);
    for t in &mut out {
        t.displayed = None;
        t.ended = ended;
    }
    if let Some(((nr, np), frr)) = counts {
        let routes: usize = out.iter().map(|t| t.routes.len()).sum();
        let paths: usize = out
            .iter()
            .flat_map(|t| &t.routes)
            .map(|r| r.paths.len())
            .sum();
        if nr as usize != routes || np as usize != paths {
            let said = if frr {
                format!("Displayed {nr} routes and {np} total paths")
            } else {
                format!("Processed {nr} prefixes, {np} paths")
            };
            diags.push(diag(
                Severity::Warning,
                file,
                lines.first().map(|l| l.no).unwrap_or(0),
                1,
                format!("the router says `{said}` but {routes} routes and {paths} paths were read (all route distinguishers); the table may be truncated"),
            ));
        }
    }
    Ok(out)
}

pub fn parse_bgp(
    file: &Arc<str>,
    seg: &Segment<'_>,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<BgpTable>, ParseError> {
    let mut vrf: Option<String> = None;
    let words: Vec<&str> = seg
        .command
        .map(|c| {
            c.split('|')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect()
        })
        .unwrap_or_default();
    if let Some(i) = words.iter().position(|w| *w == "vrf") {
        if let Some(v) = words.get(i + 1) {
            if *v == "all" {
                return Err(err(
                    file,
                    seg.command_line,
                    1,
                    "one VRF per `show ip bgp` text output, or FRR's `Instance NAME:` sections (`show ip bgp vrf NAME`; or FRR's JSON)",
                    "`vrf all`",
                ));
            }
            vrf = Some(v.to_string());
        }
    }
    let mut ts = parse_bgp_body(file, &seg.lines, vrf, diags)?;
    if let Some(t) = ts.first_mut().filter(|t| t.rd.is_none()) {
        t.line = seg
            .content()
            .next()
            .map(|l| l.no)
            .unwrap_or(seg.command_line);
    }
    Ok(ts)
}

/// Splits a token made of status codes glued to a network (`*>i10.2.2.2/32`, `i199.16.104.96/27`
/// as FRR prints iBGP paths: three status columns, the network from the fourth) into the two.
fn split_glued_status<'a>(t: Tok<'a>, flavor: Flavor) -> Option<(Tok<'a>, Tok<'a>)> {
    if parse_prefix(t.s).is_some() || parse_ip(t.s).is_some() {
        return None;
    }
    for (k, _) in t.s.char_indices().skip(1).take(3) {
        let (st, rest) = t.s.split_at(k);
        if flavor.is_status(st) && (parse_prefix(rest).is_some() || parse_ip(rest).is_some()) {
            let col = t.col + st.chars().count() as u32;
            return Some((Tok { s: st, col: t.col }, Tok { s: rest, col }));
        }
    }
    None
}

/// A next hop as FRR prints it: an address, an address with the peer's hostname
/// (`10.33.151.70(node-3)`, with `bgp default show-nexthop-hostname`), or an interface name
/// (BGP unnumbered: `eth0`, `swp1`). Returns the address (`::` for an interface) and the
/// interface.
fn parse_next_hop(s: &str) -> Option<(std::net::IpAddr, Option<String>)> {
    let addr = match s.split_once('(') {
        Some((a, host)) if host.ends_with(')') && host.len() > 1 => a,
        Some(_) => return None,
        None => s,
    };
    if let Some(ip) = parse_ip(addr) {
        return Some((ip, None));
    }
    let is_ifname = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@".contains(c))
        && !s.contains('(');
    is_ifname.then(|| {
        (
            std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            Some(s.to_string()),
        )
    })
}

fn parse_bgp_lines(
    file: &Arc<str>,
    lines: &[Line<'_>],
    vrf: Option<String>,
) -> Result<BgpTable, ParseError> {
    let mut vrf = vrf;
    let mut displayed = None;
    let mut ended = false;
    let mut total = None;
    let mut cols: Option<Cols> = None;
    let mut dialect = Dialect::Slx;
    let mut frr = false;
    let mut flavor = Flavor::Common;
    let mut routes: Vec<BgpRoute> = Vec::new();
    let mut route_index: std::collections::HashMap<ipnet::IpNet, usize> =
        std::collections::HashMap::new();
    let mut last_prefix: Option<ipnet::IpNet> = None;
    // A line whose fields continue on the next line.
    let mut pending: Option<(Vec<Tok<'_>>, u32)> = None;
    for l in lines {
        let t = l.text.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with("Displayed ")
            || t.starts_with("Processed ")
            || t.starts_with("No BGP prefixes displayed")
            || t.starts_with("Total number of prefixes")
        {
            ended = true;
        }
        if let Some(rest) = t.strip_prefix("Displayed ") {
            // `Displayed  3 routes and 5 total paths`
            let n: Vec<u32> = rest
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [r, p] = n[..] {
                displayed = Some((r, p));
            }
        }
        if let Some(rest) = t.strip_prefix("Processed ") {
            // IOS-XR: `Processed 8 prefixes, 8 paths`
            let n: Vec<u32> = rest
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [r, p] = n[..] {
                displayed = Some((r, p));
            }
            continue;
        }
        if t.starts_with("No BGP prefixes displayed") {
            frr = true;
            continue;
        }
        if t.starts_with("Path type:") || t.starts_with("Status: s-suppressed") {
            flavor = Flavor::NxOs;
        }
        if t.starts_with("Route status codes:") {
            flavor = Flavor::Eos;
        }
        if t.starts_with("Default local pref")
            || (t.starts_with("Displayed ") && t.contains("total paths"))
            || t.starts_with("Nexthop codes:")
        {
            frr = true;
        }
        if let Some(n) = t.strip_prefix("Total number of BGP Routes:") {
            total = n.trim().parse().ok();
            continue;
        }
        if is_bgp_header(t) {
            let find = |w: &str| l.text.find(w).map(|b| l.text[..b].chars().count());
            let c = Cols {
                nh: find("Next Hop")
                    .or_else(|| find("Next-hop"))
                    .or_else(|| find("Next-Hop")),
                rd: find(" RD ").map(|x| x + 1),
                med: find("MED").or_else(|| find("Metric")),
                locprf: find("LocPrf").or_else(|| find("LocPref")),
                path: find("Path"),
            };
            if l.text.contains("LocPref") && flavor == Flavor::Common {
                flavor = Flavor::Eos;
            }
            dialect = if l.text.contains("Metric") {
                Dialect::Cisco
            } else {
                Dialect::Slx
            };
            cols = Some(c);
            continue;
        }
        if let Some(rest) = t.strip_prefix("BGP routing table information for VRF ") {
            let v = rest.split([',', ' ']).next().unwrap_or("");
            if v != "default" && !v.is_empty() {
                vrf = Some(v.to_string());
            }
            continue;
        }
        let legend = [
            "Status codes",
            "Status:",
            "Path type:",
            "Route status codes",
            "AS Path Attributes",
            "Router identifier",
            "BGP router identifier",
            "BGP generic scan",
            "BGP table state",
            "Table ID:",
            "BGP main routing table",
            "BGP NSR",
            "BGP scan interval",
            "Non-stop routing",
            "Dampening enabled",
            "Origin codes",
            "RPKI validation",
            "BGP table version",
            "Default local pref",
            "Nexthop codes",
            "Displayed ",
            "Total number of prefixes",
            "Route Distinguisher",
            "local router ID",
            "BGP local router ID",
        ];
        if legend.iter().any(|p| t.starts_with(p))
            || (l.text.starts_with(' ') && t.contains(" - ") && !t.starts_with('*'))
            || t.ends_with(',') && t.contains(' ') && !t.contains('/')
        {
            // Legend continuation lines (`r RIB-failure, S Stale, m multipath,`).
            continue;
        }
        if cols.is_none() && pending.is_none() && !looks_like_path_line(t, flavor) {
            // Before the column header: legend and banner lines (FRR's `i internal, r
            // RIB-failure, ...` continuation, `Nexthop codes: ...`).
            continue;
        }
        let mut toks = tokens(l.text);
        // FRR glues the iBGP status to the network: `*>i10.2.2.2/32`, `* i199.16.104.96/27`.
        if pending.is_none() {
            if let Some(k) = toks
                .iter()
                .take(2)
                .position(|t| split_glued_status(*t, flavor).is_some())
            {
                if let Some((st, net)) = split_glued_status(toks[k], flavor) {
                    toks.splice(k..=k, [st, net]);
                }
            }
        }
        let mut first_line = l.no;
        if let Some((mut prev, pl)) = pending.take() {
            prev.append(&mut toks);
            toks = prev;
            first_line = pl;
        }
        // Status: leading tokens made of status characters.
        let mut i = 0;
        let mut status = String::new();
        while i < toks.len() && flavor.is_status(toks[i].s) && parse_ip(toks[i].s).is_none() {
            status.push_str(toks[i].s);
            i += 1;
        }
        if status.is_empty() && i == 0 && toks.first().is_none_or(|t| parse_prefix(t.s).is_none()) {
            return Err(err(
                file,
                l.no,
                toks.first().map(|t| t.col).unwrap_or(1),
                "a BGP path line (status codes, network, next hop, ...)",
                format!("`{t}`"),
            ));
        }
        // Network and next hop.
        let a = toks.get(i).copied();
        let b = toks.get(i + 1).copied();
        // A bare address in the Next Hop column is the next hop of a path whose Network is
        // left blank (SLX, Cisco: the prefix of the line above), even when the token after it
        // (SLX's MED `none`) would read as an interface name.
        let in_nh_col = |t: Tok<'_>| {
            cols.and_then(|c| c.nh)
                .is_some_and(|n| (t.col as usize) > n)
        };
        let (network, nh_tok) = match (a, b) {
            (Some(a), Some(b))
                if a.s.contains('/')
                    || (parse_ip(a.s).is_some()
                        && parse_next_hop(b.s).is_some()
                        && !in_nh_col(a)) =>
            {
                let n = parse_prefix(a.s).ok_or_else(|| {
                    err(file, l.no, a.col, "a network prefix", format!("`{}`", a.s))
                })?;
                i += 2;
                (Some(n), b)
            }
            (Some(a), None) if a.s.contains('/') => {
                // Network alone: the rest is on the next line.
                pending = Some((toks, first_line));
                continue;
            }
            (Some(a), _) => {
                i += 1;
                (None, a)
            }
            (None, _) => {
                return Err(err(
                    file,
                    l.no,
                    (l.text.chars().count() + 1) as u32,
                    "a network and next hop",
                    "end of line",
                ));
            }
        };
        let eos_local = (nh_tok.s == "-").then(|| {
            // EOS: `-` is the next hop of a locally originated route.
            let v6 = network.or(last_prefix).is_some_and(|p| p.addr().is_ipv6());
            let ip: std::net::IpAddr = if v6 {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            };
            (ip, None)
        });
        let (next_hop, next_hop_interface) = eos_local
            .or_else(|| parse_next_hop(nh_tok.s))
            .ok_or_else(|| {
                err(
                    file,
                    l.no,
                    nh_tok.col,
                    "a next-hop address (or FRR's `ADDRESS(hostname)`, or an interface name)",
                    format!("`{}`", nh_tok.s),
                )
            })?;
        let rest: Vec<Tok<'_>> = toks[i..].to_vec();
        let origin_tok = rest.last().filter(|t| matches!(t.s, "i" | "e" | "?"));
        if origin_tok.is_none() {
            if rest.is_empty() {
                // Cisco wraps after the next hop: attributes on the next line.
                pending = Some((toks, first_line));
                continue;
            }
            let last = rest[rest.len() - 1];
            return Err(err(
                file,
                l.no,
                last.col,
                "an origin code (i, e or ?) at the end of the path",
                format!("`{}`", last.s),
            ));
        }
        let origin = origin_tok.map(|t| match t.s {
            "i" => Origin::Igp,
            "e" => Origin::Egp,
            _ => Origin::Incomplete,
        });
        let body = &rest[..rest.len() - 1];
        let (mut rd, mut med, mut locprf, mut weight) = (None, None, None, None);
        let as_start;
        match (dialect, cols) {
            (Dialect::Cisco, Some(c)) => {
                let path_col = c.path.map_or(usize::MAX, |x| x + 1);
                let attrs: Vec<Tok<'_>> = body
                    .iter()
                    .copied()
                    .filter(|t| (t.col as usize) < path_col)
                    .collect();
                as_start = attrs.len();
                if let Some((w, others)) = attrs.split_last() {
                    weight = parse_num_or_none(*w, file, l.no, "Weight")?;
                    let loc_col = c.locprf.map_or(usize::MAX, |x| x + 1);
                    for o in others {
                        let end = o.col as usize + o.s.len();
                        if end <= loc_col {
                            med = parse_num_or_none(*o, file, l.no, "Metric")?;
                        } else {
                            locprf = parse_num_or_none(*o, file, l.no, "LocPrf")?;
                        }
                    }
                }
            }
            _ => {
                let mut j = 0;
                // RD: present when a token sits in the RD column or looks like ASN:NN / IP:NN.
                if let Some(t) = body.first() {
                    let in_rd_col = cols.is_some_and(|c| match (c.rd, c.med) {
                        (Some(r), Some(m)) => (t.col as usize) > r && (t.col as usize) <= m,
                        _ => false,
                    });
                    if t.s.contains(':') || in_rd_col {
                        rd = Some(t.s.to_string());
                        j += 1;
                    }
                }
                let need = |j: usize, what: &str| -> Result<Tok<'_>, ParseError> {
                    body.get(j).copied().ok_or_else(|| {
                        err(
                            file,
                            l.no,
                            origin_tok.map(|t| t.col).unwrap_or(1),
                            format!("{what} (SLX prints MED, LocPrf and Weight on every line)"),
                            "the origin code",
                        )
                    })
                };
                med = parse_num_or_none(need(j, "MED")?, file, l.no, "MED")?;
                locprf = parse_num_or_none(need(j + 1, "LocPrf")?, file, l.no, "LocPrf")?;
                weight = parse_num_or_none(need(j + 2, "Weight")?, file, l.no, "Weight")?;
                as_start = j + 3;
            }
        }
        let as_path: Vec<String> = body[as_start.min(body.len())..]
            .iter()
            .map(|t| t.s.to_string())
            .collect();
        for a in &as_path {
            let ok = a
                .trim_matches(['{', '}', '(', ')', '[', ']'])
                .split(',')
                .all(|x| x.parse::<u32>().is_ok() || x.contains('.'));
            if !ok {
                let t = body.iter().find(|t| t.s == a).copied();
                return Err(err(
                    file,
                    l.no,
                    t.map(|t| t.col).unwrap_or(1),
                    "an AS number in the AS path",
                    format!("`{a}`"),
                ));
            }
        }
        let prefix = match network.or(last_prefix) {
            Some(p) => p,
            None => {
                return Err(err(
                    file,
                    l.no,
                    nh_tok.col,
                    "a network (the first path line cannot leave it blank)",
                    format!("`{}`", nh_tok.s),
                ))
            }
        };
        last_prefix = Some(prefix);
        let path = BgpPath {
            next_hop,
            local: next_hop.is_unspecified() && next_hop_interface.is_none(),
            next_hop_interface,
            status: status_of(&status, flavor),
            rd,
            med,
            local_pref: locprf,
            weight,
            as_path,
            origin,
            peer: None,
            source: SourceRef::new(file.clone(), first_line),
        };
        match route_index.get(&prefix).copied() {
            Some(i) => routes[i].paths.push(path),
            None => {
                route_index.insert(prefix, routes.len());
                routes.push(BgpRoute {
                    prefix,
                    paths: vec![path],
                });
            }
        }
    }
    if let Some((toks, line)) = pending {
        return Err(err(
            file,
            line,
            toks.last().map(|t| t.col).unwrap_or(1),
            "the rest of the BGP path line (next hop, attributes, origin)",
            "end of output",
        ));
    }
    Ok(BgpTable {
        vrf,
        total_printed: total,
        dialect,
        frr,
        displayed,
        ended,
        line: lines.first().map(|l| l.no).unwrap_or(0),
        rd: None,
        foreign_rd: false,
        routes,
    })
}

/// The IronWare-style table that SLX-OS (and NetIron/FastIron) print for `show ip bgp routes
/// [vrf NAME]`: numbered lines `N PREFIX NEXT-HOP [MED] [LOCPRF] WEIGHT STATUS` where STATUS
/// is letters (`B` best, `b` best not installed, `M` multipath, `m` multipath not installed,
/// `E` eBGP, `I` iBGP, `L` local, `D` damped, `H` history, `S` suppressed, `s` stale, `x`
/// best-external, `A` aggregate, `C` confederation eBGP, `F` filtered), each followed by an
/// `AS_PATH: ...` line. The legend is `Status A:AGGREGATE B:BEST ...`. Origin is not printed.
pub fn parse_bgp_routes(file: &Arc<str>, seg: &Segment<'_>) -> Result<BgpTable, ParseError> {
    let mut vrf = None;
    let words: Vec<&str> = seg
        .command
        .map(|c| {
            c.split('|')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect()
        })
        .unwrap_or_default();
    if let Some(i) = words.iter().position(|w| *w == "vrf") {
        match words.get(i + 1) {
            Some(&"all") => {
                return Err(err(
                    file,
                    seg.command_line,
                    1,
                    "one VRF per `show ip bgp routes` text output",
                    "`vrf all`",
                ));
            }
            Some(v) => vrf = Some(v.to_string()),
            None => {}
        }
    }
    let mut total = None;
    let mut header: Option<(usize, usize)> = None; // (MED column, LocPrf column)
    let mut routes: Vec<BgpRoute> = Vec::new();
    let mut last: Option<(ipnet::IpNet, usize)> = None;
    for l in &seg.lines {
        let t = l.text.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(n) = t.strip_prefix("Total number of BGP Routes:") {
            total = n.trim().parse().ok();
            continue;
        }
        if t.starts_with("Prefix") && t.ends_with("Status") {
            let find = |w: &str| l.text.find(w).map(|b| l.text[..b].chars().count());
            header = Some((
                find("MED").or_else(|| find("Metric")).unwrap_or(usize::MAX),
                find("LocPrf").unwrap_or(usize::MAX),
            ));
            continue;
        }
        if let Some(p) = t.strip_prefix("AS_PATH:") {
            let Some((prefix, idx)) = last else {
                return Err(err(
                    file,
                    l.no,
                    1,
                    "a route line before `AS_PATH:`",
                    format!("`{t}`"),
                ));
            };
            if let Some(path) = routes
                .iter_mut()
                .find(|r| r.prefix == prefix)
                .and_then(|r| r.paths.get_mut(idx))
            {
                path.as_path = p.split_whitespace().map(str::to_string).collect();
            }
            continue;
        }
        let toks = tokens(l.text);
        let is_route = toks
            .first()
            .is_some_and(|t| t.s.chars().all(|c| c.is_ascii_digit()))
            && toks.get(1).is_some_and(|t| parse_prefix(t.s).is_some());
        if header.is_none() || !is_route {
            // Legend lines (`Status A:AGGREGATE ...`, `E:EBGP H:HISTORY ...`) and banners.
            if header.is_some() && !t.contains(':') {
                return Err(err(
                    file,
                    l.no,
                    toks.first().map(|t| t.col).unwrap_or(1),
                    "a numbered route line `N PREFIX NEXT-HOP ... STATUS` or `AS_PATH:`",
                    format!("`{t}`"),
                ));
            }
            continue;
        }
        let prefix = parse_prefix(toks[1].s).ok_or_else(|| {
            err(
                file,
                l.no,
                toks[1].col,
                "a network prefix",
                format!("`{}`", toks[1].s),
            )
        })?;
        let nh_tok = toks.get(2).copied().ok_or_else(|| {
            err(
                file,
                l.no,
                (l.text.chars().count() + 1) as u32,
                "a next-hop address",
                "end of line",
            )
        })?;
        let next_hop = parse_ip(nh_tok.s).ok_or_else(|| {
            err(
                file,
                l.no,
                nh_tok.col,
                "a next-hop address",
                format!("`{}`", nh_tok.s),
            )
        })?;
        let rest = &toks[3..];
        let Some((status_tok, nums)) = rest.split_last() else {
            return Err(err(
                file,
                l.no,
                (l.text.chars().count() + 1) as u32,
                "weight and status letters",
                "end of line",
            ));
        };
        if !status_tok.s.chars().all(|c| "ABbCDEHILMmSsxFR".contains(c)) {
            return Err(err(
                file,
                l.no,
                status_tok.col,
                "status letters (B, M, E, I, L, ...)",
                format!("`{}`", status_tok.s),
            ));
        }
        let Some((w, others)) = nums.split_last() else {
            return Err(err(
                file,
                l.no,
                status_tok.col,
                "a weight before the status letters",
                format!("`{}`", status_tok.s),
            ));
        };
        let weight = parse_num_or_none(*w, file, l.no, "Weight")?;
        let (mut med, mut locprf) = (None, None);
        let (med_col, loc_col) = header.unwrap_or((usize::MAX, usize::MAX));
        for o in others {
            let start = o.col as usize - 1;
            if start < loc_col && (start + 1 >= med_col || others.len() == 2 && med.is_none()) {
                med = parse_num_or_none(*o, file, l.no, "MED")?;
            } else {
                locprf = parse_num_or_none(*o, file, l.no, "LocPrf")?;
            }
        }
        let st = status_tok.s;
        let status = BgpStatus {
            valid: !st.contains('D') && !st.contains('H'),
            best: st.contains('B'),
            multipath: st.contains('M'),
            best_external: st.contains('x'),
            internal: st.contains('I'),
            suppressed: st.contains('S'),
            damped: st.contains('D'),
            history: st.contains('H'),
            stale: st.contains('s'),
            rib_failure: st.contains('b') || st.contains('m'),
        };
        let path = BgpPath {
            next_hop,
            local: next_hop.is_unspecified() || st.contains('L'),
            next_hop_interface: None,
            status,
            rd: None,
            med,
            local_pref: locprf,
            weight,
            as_path: Vec::new(),
            origin: None,
            peer: None,
            source: SourceRef::new(file.clone(), l.no),
        };
        let idx = match routes.iter_mut().find(|r| r.prefix == prefix) {
            Some(r) => {
                r.paths.push(path);
                r.paths.len() - 1
            }
            None => {
                routes.push(BgpRoute {
                    prefix,
                    paths: vec![path],
                });
                0
            }
        };
        last = Some((prefix, idx));
    }
    Ok(BgpTable {
        vrf,
        total_printed: total,
        dialect: Dialect::Slx,
        frr: false,
        displayed: None,
        ended: false,
        line: seg
            .content()
            .next()
            .map(|l| l.no)
            .unwrap_or(seg.command_line),
        rd: None,
        foreign_rd: false,
        routes,
    })
}

/// `show running-config interface` blocks.
pub fn parse_run_int(file: &Arc<str>, lines: &[Line<'_>]) -> Result<Vec<IfConfig>, ParseError> {
    let mut out: Vec<IfConfig> = Vec::new();
    let mut open = false;
    for l in lines {
        let t = l.text.trim();
        if t.is_empty() {
            continue;
        }
        if t == "!" || t == "exit" || t == "end" {
            open = false;
            continue;
        }
        if !open && is_config_preamble(t) {
            continue;
        }
        if let Some(name) = t.strip_prefix("interface ") {
            out.push(IfConfig {
                name: canonical_ifname(name),
                vrf: None,
                addresses: Vec::new(),
                anycast: Vec::new(),
                shutdown: None,
                skipped: Vec::new(),
                line: l.no,
            });
            open = true;
            continue;
        }
        let Some(cur) = out.last_mut().filter(|_| open) else {
            return Err(err(
                file,
                l.no,
                1,
                "`interface NAME` or `!`",
                format!("`{t}`"),
            ));
        };
        let w: Vec<&str> = t.split_whitespace().collect();
        let col = |k: usize| -> u32 {
            let toks = tokens(l.text);
            toks.get(k).map(|t| t.col).unwrap_or(1)
        };
        let addr = |k: usize| -> Result<ipnet::IpNet, ParseError> {
            let a = w.get(k).copied().unwrap_or("");
            if let Some(n) = a
                .contains('/')
                .then(|| a.parse::<ipnet::IpNet>().ok())
                .flatten()
            {
                return Ok(n);
            }
            // Cisco: `ip address A MASK`.
            if let (Some(ip), Some(mask)) = (
                parse_ip(a),
                w.get(k + 1)
                    .and_then(|m| m.parse::<std::net::Ipv4Addr>().ok()),
            ) {
                let len = u32::from(mask).leading_ones() as u8;
                if let Ok(n) = ipnet::IpNet::new(ip, len) {
                    return Ok(n);
                }
            }
            Err(err(
                file,
                l.no,
                col(k),
                "an address `A/LEN` (or `A MASK`)",
                format!("`{a}`"),
            ))
        };
        match w.as_slice() {
            ["vrf", "forwarding", v] | ["ip", "vrf", "forwarding", v] | ["vrf", "member", v] => {
                cur.vrf = Some(v.to_string())
            }
            ["vrf", "forwarding"] | ["ip", "vrf", "forwarding"] | ["vrf", "member"] => {
                // The VRF name is gone (a cut or garbled line): the interface's VRF is
                // unknown, never VRF default.
                return Err(err(
                    file,
                    l.no,
                    l.text.len() as u32 + 1,
                    "a VRF name",
                    "end of line".to_string(),
                ));
            }
            ["ip", "address", ..] | ["ipv6", "address", ..] => {
                // A `secondary` address is one more address of the interface.
                cur.addresses.push(addr(2)?);
            }
            ["ip", "anycast-address", ..] | ["ipv6", "anycast-address", ..] => {
                cur.anycast.push(addr(2)?)
            }
            // IOS-XR: `vrf NAME`.
            ["vrf", v] => cur.vrf = Some(v.to_string()),
            // Any other line about the VRF is a garbled one (`vrf forwardin X`): routers
            // print the keywords in full, so it is not unmodelled configuration but a
            // corruption, and the interface's VRF is unknown (issue #11, review: it was a
            // note, and the interface fell into VRF default).
            [first, ..] if first.starts_with("vr") => {
                return Err(err(
                    file,
                    l.no,
                    col(0),
                    "`vrf forwarding NAME` (SLX, IOS), `vrf member NAME` (NX-OS) or `vrf NAME` (IOS-XR)",
                    format!("`{t}`"),
                ))
            }
            ["ip", second, ..] if second.starts_with("vr") => {
                return Err(err(
                    file,
                    l.no,
                    col(1),
                    "`ip vrf forwarding NAME`",
                    format!("`{t}`"),
                ))
            }
            ["no", "shutdown"] => cur.shutdown = Some(false),
            ["shutdown"] => cur.shutdown = Some(true),
            ["description", ..] | ["ip", "mtu", ..] | ["mtu", ..] | ["ipv6", "mtu", ..] => {}
            _ => cur.skipped.push(t.to_string()),
        }
    }
    Ok(out)
}

/// What Cisco IOS and NX-OS print above the configuration of `show running-config
/// interface X`: `Building configuration...`, `Current configuration : 440 bytes`, `!` comment
/// lines (NX-OS `!Command: ...`, `!Time: ...`), NX-OS `version 9.3(5) ...`.
fn is_config_preamble(t: &str) -> bool {
    t.is_empty()
        || t.starts_with("Building configuration")
        || t.starts_with("Current configuration")
        || t.starts_with('!')
        || t.starts_with("version ")
}

/// An interface header of `show interface`, with the line under it (NX-OS puts the admin
/// state there). Returns (name, admin up if said, link up).
///
/// - Cisco IOS / SLX: `NAME is up, line protocol is up`, `NAME is administratively down,
///   line protocol is down`, SLX `NAME is admin down, ...`. The first state is the link's;
///   only `administratively down` / `admin down` say the interface is shut.
/// - NX-OS: `mgmt0 is up` / `Ethernet1/1 is down (Link not connected)` followed by
///   `admin state is up, Dedicated Interface` (older releases: ` Dedicated Interface` or
///   `  Hardware: ...` with no admin state); `is down (Administratively down)`.
fn parse_if_header(t: &str, next: Option<&str>) -> Option<(String, Option<bool>, bool)> {
    if t.starts_with([' ', '\t']) {
        return None;
    }
    let (name, rest) = t.split_once(" is ")?;
    if name.is_empty() || name.contains(':') {
        return None;
    }
    if let Some((admin, proto)) = rest.split_once(", line protocol is ") {
        let admin = admin.trim();
        let shut = admin.starts_with("administratively down") || admin.starts_with("admin down");
        let oper_up = proto.trim().starts_with("up");
        return Some((canonical_ifname(name), Some(!shut), oper_up));
    }
    // NX-OS: one word before `is`, the state, maybe a reason in parentheses.
    if name.contains(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim();
    let (state, reason) = match rest.split_once(' ') {
        Some((s, r)) if r.starts_with('(') && r.ends_with(')') => (s, Some(&r[1..r.len() - 1])),
        Some(_) => return None,
        None => (rest, None),
    };
    if !matches!(state, "up" | "down") {
        return None;
    }
    let next = next?.trim_end();
    let admin = if let Some(a) = next.strip_prefix("admin state is ") {
        Some(a.starts_with("up"))
    } else if next.trim() == "Dedicated Interface"
        || next.trim_start().starts_with("Hardware:")
        || next.trim_start().starts_with("Hardware is")
    {
        None
    } else {
        return None;
    };
    let admin = match reason {
        Some(r) if r.eq_ignore_ascii_case("administratively down") => Some(false),
        _ => admin,
    };
    Some((canonical_ifname(name), admin, state == "up"))
}

/// `NAME is ...` where NAME looks like an interface (`Ethernet1/8`, `mgmt0`, `Ve 805`,
/// `Port-channel10`): a letter first, a digit somewhere, at most a blank before a number. Not
/// SLX's `Address is ...` / `Interface index (ifindex) is ...` detail lines.
fn looks_like_if_header(t: &str) -> bool {
    let Some((name, _)) = t.split_once(" is ") else {
        return false;
    };
    let mut parts = name.split(' ');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    parts.next().is_none()
        && first.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.contains(|c: char| c.is_ascii_digit())
        && first
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/.-_:".contains(c))
        && second.is_none_or(|s| s.starts_with(|c: char| c.is_ascii_digit()))
}

/// Interface states, and the unindented `X is Y` lines that look like a header of a shape not
/// known here (their blocks are not read; the caller reports them).
pub fn parse_show_interface(lines: &[Line<'_>]) -> (Vec<IfState>, Vec<(u32, String)>) {
    let mut out: Vec<IfState> = Vec::new();
    let mut odd: Vec<(u32, String)> = Vec::new();
    // Whether the lines below belong to a recognised header.
    let mut open = false;
    for (k, l) in lines.iter().enumerate() {
        let next = lines[k + 1..]
            .iter()
            .find(|n| !n.text.trim().is_empty())
            .map(|n| n.text);
        if let Some((name, admin_up, oper_up)) = parse_if_header(l.text, next) {
            out.push(IfState {
                name,
                admin_up,
                oper_up,
                mac: None,
                line: l.no,
            });
            open = true;
            continue;
        }
        let t = l.text.trim();
        if !l.text.starts_with([' ', '\t']) && looks_like_if_header(t) {
            odd.push((l.no, t.to_string()));
            open = false;
            continue;
        }
        if !open {
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        // SLX: `Address is X, Current address is Y`; Cisco: `Hardware is ..., address is X (bia Y)`;
        // NX-OS: `Hardware: ..., address: X (bia Y)`.
        let lower = t.to_ascii_lowercase();
        let mac = if let Some(i) = lower.find("current address is ") {
            t[i + "current address is ".len()..]
                .split([',', ' '])
                .next()
        } else if let Some(i) = lower.find("address is ") {
            t[i + "address is ".len()..]
                .trim_start()
                .split([',', ' '])
                .next()
        } else if let Some(i) = lower.find("address: ") {
            t[i + "address: ".len()..]
                .trim_start()
                .split([',', ' '])
                .next()
        } else {
            None
        };
        if let Some(m) = mac.and_then(normalise_mac) {
            if cur.mac.is_none() {
                cur.mac = Some(m);
            }
        }
    }
    (out, odd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::text::segments;

    fn bgp(t: &str) -> Result<BgpTable, ParseError> {
        let f: Arc<str> = "t".into();
        let s = segments(t);
        parse_bgp(&f, &s[0], &mut Vec::new()).map(|mut v| v.remove(0))
    }

    const SLX: &str = "DC173-SLX-L1A# show ip bgp vrf OM\nTotal number of BGP Routes: 4\nStatus codes: s suppressed, d damped, h history, * valid, > best, i internal, S stale, x best-external\nOrigin codes: i - IGP, e - EGP, ? - incomplete\n\n     Network            Next Hop        RD              MED        LocPrf     Weight Path\n*>x  10.33.151.160/32   10.33.151.68                    none       100        0      4259841731 i\n*    10.33.151.160/32   10.33.151.69                    none       100        0      4259841731 i\n*i   10.33.151.160/32   21.1.1.1                        none       100        0      4259841731 i\n*>   10.33.151.64/27    0.0.0.0                         0          100        32768  ?\nDC173-SLX-L1A#\n";

    #[test]
    fn slx_table() {
        let t = bgp(SLX).unwrap();
        assert_eq!(t.vrf.as_deref(), Some("OM"));
        assert_eq!(t.total_printed, Some(4));
        assert_eq!(t.routes.len(), 2);
        let r = &t.routes[0];
        assert_eq!(r.paths.len(), 3);
        assert!(r.paths[0].status.best && r.paths[0].status.best_external);
        assert_eq!(r.paths[0].med, None);
        assert_eq!(r.paths[0].local_pref, Some(100));
        assert_eq!(r.paths[0].as_path, vec!["4259841731"]);
        assert!(r.paths[2].status.internal);
        assert_eq!(
            r.forwarding_paths(false).len(),
            2,
            "the iBGP copy is not multipath with the eBGP best"
        );
        assert!(t.routes[1].paths[0].local);
        assert_eq!(t.routes[1].paths[0].weight, Some(32768));
        assert!(t.routes[1].paths[0].as_path.is_empty());
    }

    /// SLX leaves the Network column blank on the further paths of a prefix: they belong to
    /// the prefix above (none is dropped).
    #[test]
    fn slx_blank_network_continues_the_prefix() {
        let t = bgp("R1# show ip bgp\nTotal number of BGP Routes: 4\nStatus codes: s suppressed, d damped, h history, * valid, > best, i internal, S stale, x best-external\nOrigin codes: i - IGP, e - EGP, ? - incomplete\n\n     Network            Next Hop        RD              MED        LocPrf     Weight Path\n*>   10.0.0.0/24        0.0.0.0                         0          100        32768  ?\n*>   192.0.2.1/32       10.0.0.11                       none       100        0      64512 i\n*                       10.0.0.12                       none       100        0      64512 i\n*                       10.0.0.13                       none       100        0      64512 i\nR1#\n").unwrap();
        assert_eq!(t.routes.len(), 2, "{:#?}", t.routes);
        let r = &t.routes[1];
        assert_eq!(r.prefix.to_string(), "192.0.2.1/32");
        let hops: Vec<String> = r.paths.iter().map(|p| p.next_hop.to_string()).collect();
        assert_eq!(hops, ["10.0.0.11", "10.0.0.12", "10.0.0.13"]);
        assert_eq!(
            r.paths
                .iter()
                .map(|p| p.as_path.clone())
                .collect::<Vec<_>>(),
            vec![vec!["64512".to_string()]; 3]
        );
    }

    #[test]
    fn cisco_blank_fields_and_wrap() {
        let t = bgp("BGP table version is 5, local router ID is 10.0.0.1\nStatus codes: s suppressed, d damped, h history, * valid, > best, i - internal,\n              r RIB-failure, S Stale, m multipath, b backup-path, f RT-Filter,\nOrigin codes: i - IGP, e - EGP, ? - incomplete\n\n     Network          Next Hop            Metric LocPrf Weight Path\n *>  10.1.1.0/24      0.0.0.0                  0         32768 i\n *m                   10.0.0.2                 0             0 65002 i\n *>i 10.2.0.0/16      10.0.0.3                 0    100      0 i\n *>  10.100.100.0/24\n                      192.168.1.1                            0 65003 65004 i\n").unwrap();
        assert_eq!(t.dialect, Dialect::Cisco);
        let r = &t.routes[0];
        assert_eq!(r.paths.len(), 2);
        assert_eq!(r.paths[0].med, Some(0));
        assert_eq!(r.paths[0].local_pref, None);
        assert_eq!(r.paths[0].weight, Some(32768));
        assert!(r.paths[1].status.multipath);
        assert_eq!(r.paths[1].as_path, vec!["65002"]);
        assert_eq!(t.routes[1].paths[0].local_pref, Some(100));
        assert_eq!(t.routes[2].prefix.to_string(), "10.100.100.0/24");
        assert_eq!(t.routes[2].paths[0].as_path, vec!["65003", "65004"]);
        assert_eq!(t.routes[2].paths[0].med, None);
    }

    /// The tables of a real FRR capture (fixtures/frr/ok, FRR 8.4.4).
    fn frr_fixture(name: &str) -> (Vec<BgpTable>, Vec<Diagnostic>) {
        let text = std::fs::read_to_string(format!(
            "{}/../../fixtures/frr/ok/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let f: Arc<str> = name.into();
        let mut d = Vec::new();
        let segs = segments(&text);
        let t = parse_bgp_instances(&f, &segs[0], &mut d).unwrap();
        (t, d)
    }

    fn paths_of(t: &BgpTable) -> Vec<(String, String, String)> {
        t.routes
            .iter()
            .flat_map(|r| {
                r.paths.iter().map(move |p| {
                    let st = p.status;
                    let flags: String = [
                        (st.valid, '*'),
                        (st.best, '>'),
                        (st.multipath, '='),
                        (st.internal, 'i'),
                    ]
                    .iter()
                    .filter(|(b, _)| *b)
                    .map(|(_, c)| *c)
                    .collect();
                    let nh = match &p.next_hop_interface {
                        Some(i) => i.clone(),
                        None => p.next_hop.to_string(),
                    };
                    (r.prefix.to_string(), flags, nh)
                })
            })
            .collect()
    }

    #[test]
    fn frr_hostname_next_hops_wrap() {
        // leaf-a of the lab with `bgp default show-nexthop-hostname`: `10.33.151.70(node-3)`
        // fills the 20-character column, so FRR wraps the attributes onto the next line.
        let (t, d) = frr_fixture("show-ip-bgp-vrf-all-lab-hostnames.txt");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(t.len(), 1);
        let t = &t[0];
        assert_eq!(t.vrf.as_deref(), Some("om_vr"));
        assert!(t.frr);
        assert_eq!(t.displayed, Some((3, 5)));
        assert_eq!(t.routes.len(), 3);
        let p = paths_of(t);
        assert_eq!(p.len(), 5);
        assert_eq!(
            p[1..4],
            [
                (
                    "10.33.151.160/32".into(),
                    "*=".into(),
                    "10.33.151.70".into()
                ),
                (
                    "10.33.151.160/32".into(),
                    "*=".into(),
                    "10.33.151.69".into()
                ),
                (
                    "10.33.151.160/32".into(),
                    "*>".into(),
                    "10.33.151.68".into()
                ),
            ]
        );
        let vip = &t.routes[1];
        assert!(vip.paths.iter().all(|p| p.as_path == ["4259841731"]
            && p.weight == Some(0)
            && p.med == Some(0)
            && p.local_pref.is_none()));
        assert_eq!(vip.forwarding_paths(false).len(), 3);
        // `0.0.0.0(leaf-a)`: locally originated.
        assert!(t.routes[0].paths[0].local);
        assert_eq!(t.routes[0].paths[0].weight, Some(32768));
    }

    #[test]
    fn frr_unnumbered_and_ibgp() {
        for name in [
            "show-ip-bgp-unnumbered-ibgp.txt",
            "show-ip-bgp-vrf-all-unnumbered-ibgp.txt",
        ] {
            let (t, d) = frr_fixture(name);
            assert!(d.is_empty(), "{name}: {d:?}");
            assert_eq!(t.len(), 1, "{name}");
            let t = &t[0];
            assert_eq!(t.displayed, Some((4, 6)), "{name}");
            assert_eq!(t.routes.len(), 4, "{name}");
            let p = paths_of(t);
            assert_eq!(
                p,
                [
                    ("5.5.5.5/32".into(), "*=".into(), "eth0".into()),
                    ("5.5.5.5/32".into(), "*>".into(), "eth1".into()),
                    // `network 10.0.0.1/32` not in the RIB: no status at all.
                    ("10.0.0.1/32".into(), "".into(), "0.0.0.0".into()),
                    ("10.2.2.2/32".into(), "*>i".into(), "10.0.12.2".into()),
                    ("199.16.104.96/27".into(), "*i".into(), "10.0.13.2".into()),
                    ("199.16.104.96/27".into(), "*>i".into(), "10.0.12.2".into()),
                ],
                "{name}"
            );
            let r = &t.routes;
            assert!(!r[0].paths[0].local, "an interface next hop is not local");
            assert_eq!(r[0].paths[0].as_path, ["65001"]);
            assert_eq!(r[0].forwarding_paths(false).len(), 2);
            assert_eq!(r[3].paths[1].local_pref, Some(200));
            assert_eq!(r[3].paths[0].local_pref, Some(100));
            assert!(r[3].paths[1].as_path.is_empty());
            assert_eq!(r[1].paths[0].weight, Some(32768));
            assert!(r[1].paths[0].local && !r[1].paths[0].status.valid);
        }
        let (t, _) = frr_fixture("show-ip-bgp-vrf-all-unnumbered-ibgp.txt");
        assert_eq!(t[0].vrf.as_deref(), Some("om_vr"));
    }

    #[test]
    fn frr_show_bgp_without_afi_is_ipv6() {
        let (t, d) = frr_fixture("show-bgp-vrf-all-no-afi.txt");
        assert!(t.is_empty());
        assert!(d[0].message.contains("IPv6 unicast"), "{d:?}");
    }

    #[test]
    fn empty_show_bgp_without_afi_says_nothing_about_ipv4() {
        let f: Arc<str> = "t".into();
        let segs = segments("r# show bgp\nNo BGP prefixes displayed, 0 exist\nr#\n");
        let mut d = Vec::new();
        assert!(parse_bgp_instances(&f, &segs[0], &mut d)
            .unwrap()
            .is_empty());
        assert!(d[0].message.contains("IPv6"), "{d:?}");
        // `show ip bgp` that is empty is an empty IPv4 table.
        let segs = segments("r# show ip bgp\nNo BGP prefixes displayed, 0 exist\nr#\n");
        let t = parse_bgp_instances(&f, &segs[0], &mut Vec::new()).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t[0].routes.is_empty());
    }

    #[test]
    fn displayed_count_mismatch_warns() {
        let f: Arc<str> = "t".into();
        let text = "r# show ip bgp
   Network          Next Hop            Metric LocPrf Weight Path
*> 10.9.0.0/24      0.0.0.0                  0         32768 i

Displayed  2 routes and 2 total paths
";
        let segs = segments(text);
        let mut rt = Router::new("r");
        let mut d = Vec::new();
        read(&f, &segs[0], &mut rt, &mut d).unwrap();
        assert!(
            d.iter().any(|x| x.message.contains("Displayed 2 routes")),
            "{d:?}"
        );
    }

    #[test]
    fn bad_next_hop() {
        let e = bgp("     Network            Next Hop        RD              MED        LocPrf     Weight Path\n*>   10.0.0.0/8  10.0.0.300  none 100 0 1 i\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 18));
    }

    #[test]
    fn run_int_and_show_interface() {
        let f: Arc<str> = "t".into();
        let s = segments("DC173-SLX-L1A# show run int ve\ninterface Ve 805\n vrf forwarding OM\n ip anycast-address 10.33.151.65/27\n ip address 10.33.151.66/27\n no shutdown\n!\ninterface Vlan10\n ip address 10.0.0.1 255.255.255.0\n ip ospf cost 10\n!\n");
        let b = parse_run_int(&f, &s[0].lines).unwrap();
        assert_eq!(b[0].name, "Ve 805");
        assert_eq!(b[0].vrf.as_deref(), Some("OM"));
        assert_eq!(b[0].anycast[0].to_string(), "10.33.151.65/27");
        assert_eq!(b[0].shutdown, Some(false));
        assert_eq!(b[1].name, "Vlan 10");
        assert_eq!(b[1].addresses[0].to_string(), "10.0.0.1/24");
        assert_eq!(b[1].skipped, vec!["ip ospf cost 10"]);
        let s = segments("Ve 805 is up, line protocol is up\nAddress is 0004.96d6.8ebc, Current address is 0004.96d6.8ebc\n");
        let (i, _) = parse_show_interface(&s[0].lines);
        assert_eq!(i[0].mac.as_deref(), Some("00:04:96:d6:8e:bc"));
        assert!(i[0].oper_up);
    }
}
