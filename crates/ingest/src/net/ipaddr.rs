//! `ip addr` (text, as iproute2's `ip address show` prints it, with or without `-d`) and
//! `ip -j addr` / `ip -j -p addr` (JSON).
//!
//! Text layout (iproute2 ip/ipaddress.c `print_linkinfo` / `print_addrinfo`):
//! ```text
//! 12: ecfe_traf1@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 9000 qdisc noqueue master vrf1 state UNKNOWN group default qlen 1000
//!     link/ether 36:1f:d1:91:3a:16 brd ff:ff:ff:ff:ff:ff link-netnsid 0
//!     altname enp0s3
//!     inet 10.33.152.74/27 brd 10.33.152.95 scope global noprefixroute ecfe_traf1
//!        valid_lft forever preferred_lft forever
//! ```

use std::sync::Arc;

use kubepath_model::net::{IfAddr, Interface, NodeFact, NodeNet};
use kubepath_model::SourceRef;
use serde_json::Value;

use super::text::{diag, err, parse_ip, parse_json_array, Cursor, Line, Segment};
use crate::diag::{Diagnostic, ParseError, Severity};

/// Per-format structure: the interfaces as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAddrOutput {
    pub interfaces: Vec<Interface>,
}

/// Link kinds `ip -d addr` prints on the line after `link/...`.
const KINDS: &[&str] = &[
    "vrf",
    "vlan",
    "vxlan",
    "bridge",
    "bond",
    "veth",
    "ipip",
    "ip6tnl",
    "gre",
    "gretap",
    "sit",
    "macvlan",
    "macvtap",
    "ipvlan",
    "dummy",
    "wireguard",
    "tun",
    "geneve",
    "team",
    "ifb",
    "openvswitch",
    "nlmon",
    "xfrm",
    "bareudp",
    "netkit",
];

/// Is this line an interface header `N: NAME[@PEER]: <FLAGS> ...`?
fn is_header(line: &str) -> bool {
    let t = line.trim_start();
    if line.starts_with(' ') {
        return false;
    }
    let Some((n, rest)) = t.split_once(": ") else {
        return false;
    };
    n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() && rest.contains(": <")
}

/// Operational states `ip -br addr` prints in its second column.
const BRIEF_STATES: &[&str] = &[
    "UP",
    "DOWN",
    "UNKNOWN",
    "LOWERLAYERDOWN",
    "DORMANT",
    "NOTPRESENT",
    "TESTING",
];

/// `NAME[@PEER] STATE [ADDR/LEN ...]` (`ip -br addr`).
fn is_brief_line(t: &str) -> bool {
    let w: Vec<&str> = t.split_whitespace().collect();
    w.len() >= 2
        && BRIEF_STATES.contains(&w[1])
        && w[2..]
            .iter()
            .all(|a| a.contains('/') && super::text::parse_prefix(a).is_some())
}

pub fn sniff(seg: &Segment<'_>) -> bool {
    if let Some(l) = seg.content().next() {
        if is_header(l.text) || is_brief_line(l.text) {
            return true;
        }
        let t = l.text.trim_start();
        if t.starts_with('[') || t.starts_with('{') {
            return seg
                .lines
                .iter()
                .take(40)
                .any(|l| l.text.contains("\"addr_info\"") || l.text.contains("\"ifname\""))
                && !seg
                    .lines
                    .iter()
                    .take(40)
                    .any(|l| l.text.contains("\"dst\""));
        }
    }
    false
}

/// `ip -br addr`: one line per interface, `NAME[@PEER] STATE ADDR/LEN...`. Brief output has
/// no flags, MTU, MAC, scope or broadcast: those stay unknown (scope is taken as `global`
/// except for IPv6 link-local and loopback addresses).
pub fn parse_brief(file: &Arc<str>, lines: &[Line<'_>]) -> Result<IpAddrOutput, ParseError> {
    let mut out = Vec::new();
    for &l in lines {
        let t = l.text.trim();
        if t.is_empty() {
            continue;
        }
        let mut c = Cursor::new(file, l);
        let name_tok = c.expect("an interface name")?;
        let (name, link) = match name_tok.s.split_once('@') {
            Some((n, p)) => (n.to_string(), Some(p.to_string())),
            None => (name_tok.s.to_string(), None),
        };
        let st = c.expect("an operational state (UP, DOWN, UNKNOWN, ...)")?;
        if !BRIEF_STATES.contains(&st.s) {
            return Err(c.error_at(st, "an operational state (UP, DOWN, UNKNOWN, ...)"));
        }
        let mut iface = Interface {
            name,
            ifindex: None,
            link,
            link_type: None,
            mac: None,
            mtu: None,
            // Brief output has no flags; derive what the operstate implies (RFC 2863 states as
            // the kernel reports them): UP and UNKNOWN (no carrier detection, e.g. lo, tunnels)
            // are administratively up with a link; LOWERLAYERDOWN/DORMANT are up without one;
            // DOWN leaves both unknown (admin down or no carrier), so no flag is claimed.
            flags: match st.s {
                "UP" | "UNKNOWN" => vec!["UP".to_string(), "LOWER_UP".to_string()],
                "LOWERLAYERDOWN" | "DORMANT" => vec!["UP".to_string()],
                _ => Vec::new(),
            },
            operstate: Some(st.s.to_string()),
            kind: None,
            master: None,
            altnames: Vec::new(),
            addresses: Vec::new(),
            vrf: None,
            source: SourceRef::new(file.clone(), l.no),
        };
        while let Some(a) = c.bump() {
            let address: ipnet::IpNet =
                a.s.parse()
                    .map_err(|_| c.error_at(a, "an address `A/LEN`"))?;
            let scope = match address.addr() {
                std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => "link",
                ip if ip.is_loopback() => "host",
                _ => "global",
            };
            iface.addresses.push(IfAddr {
                address,
                peer: None,
                broadcast: None,
                scope: scope.into(),
                label: None,
                secondary: false,
                noprefixroute: false,
                flags: Vec::new(),
                source: SourceRef::new(file.clone(), l.no),
            });
        }
        out.push(iface);
    }
    Ok(IpAddrOutput { interfaces: out })
}

/// For text output: the number of leading lines that belong to it (it ends at the first
/// unindented line that is not an interface header). None for JSON.
pub fn extent(seg: &Segment<'_>) -> Option<usize> {
    let first = seg.content().next()?.text.trim_start();
    if first.starts_with('[') || first.starts_with('{') {
        return None;
    }
    if is_brief_line(first) {
        return seg
            .lines
            .iter()
            .position(|l| !l.text.trim().is_empty() && !is_brief_line(l.text))
            .or(Some(seg.lines.len()));
    }
    seg.lines
        .iter()
        .position(|l| {
            !l.text.trim().is_empty() && !l.text.starts_with([' ', '\t']) && !is_header(l.text)
        })
        .or(Some(seg.lines.len()))
}

/// Read one segment if it is `ip addr` output.
pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    net: &mut NodeNet,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    if !sniff(seg) {
        return Ok(None);
    }
    let first = seg
        .content()
        .next()
        .map(|l| l.text.trim_start())
        .unwrap_or("");
    let (out, fmt) = if first.starts_with('[') || first.starts_with('{') {
        let (text, line0) = seg.text();
        (parse_json_addr(file, &text, line0, diags)?, "ip-addr-json")
    } else if is_brief_line(first) {
        (parse_brief(file, &seg.lines)?, "ip-addr-brief")
    } else {
        (parse_text(file, &seg.lines, diags)?, "ip-addr")
    };
    let src = SourceRef::new(
        file.clone(),
        seg.content().next().map(|l| l.no).unwrap_or(0),
    );
    // `ip link` prints the same interface blocks without address lines: it tells link state,
    // MTU, MAC and masters, not addresses. Recognised by the echoed command, or (without one)
    // by the absence of any address (every `ip addr` shows at least lo's 127.0.0.1).
    let is_link = match seg.command {
        Some(c) => {
            let w: Vec<&str> = c
                .split_whitespace()
                .filter(|w| !w.starts_with('-'))
                .collect();
            w.iter()
                .position(|x| *x == "ip")
                .and_then(|i| w.get(i + 1))
                .is_some_and(|x| !x.is_empty() && "link".starts_with(*x))
        }
        None => fmt == "ip-addr" && out.interfaces.iter().all(|i| i.addresses.is_empty()),
    };
    if is_link {
        merge_links(out, net);
        return Ok(Some("ip-link"));
    }
    if let Some(f) = seg.filter() {
        net.partial.push((NodeFact::Addresses, src.clone(), f));
    } else if let Some(cmd) = seg.command {
        // `ip a show DEV` prints one interface only.
        let words: Vec<&str> = cmd.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "show" || *w == "list") {
            if let Some(dev) = words.get(i + 1) {
                net.partial
                    .push((NodeFact::Addresses, src.clone(), format!("show {dev}")));
            }
        }
    }
    // Two whole captures (neither filtered nor `show DEV`): an interface with an address of
    // a family both list, in one and not in the other, was added or removed between them
    // (issue #11, fifth review: it was taken from the one that has it). `ip -4 addr` lists
    // only interfaces with IPv4 addresses, so an interface with IPv6 addresses only is not
    // missing from it.
    let whole = |s: &SourceRef| {
        !net.partial
            .iter()
            .any(|(f, p, _)| *f == NodeFact::Addresses && p == s)
    };
    let earlier_whole = net
        .read
        .get(&NodeFact::Addresses)
        .is_some_and(|v| !v.is_empty() && v.iter().all(whole));
    if earlier_whole && whole(&src) {
        let has = |i: &Interface, v4: bool| {
            i.addresses
                .iter()
                .any(|a| matches!(a.address, ipnet::IpNet::V4(_)) == v4)
        };
        let lists = |ifs: &[Interface], v4: bool| ifs.iter().any(|i| has(i, v4));
        let mut missing: Vec<(String, &str)> = Vec::new();
        for v4 in [true, false] {
            if !(lists(&out.interfaces, v4) && lists(&net.interfaces, v4)) {
                continue;
            }
            for i in out.interfaces.iter().filter(|i| has(i, v4)) {
                if !net.interfaces.iter().any(|o| o.name == i.name) {
                    missing.push((i.name.clone(), "the earlier output"));
                }
            }
            for o in net.interfaces.iter().filter(|o| has(o, v4)) {
                if !out.interfaces.iter().any(|i| i.name == o.name) {
                    missing.push((o.name.clone(), "this output"));
                }
            }
        }
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            let earlier = net.read_files(NodeFact::Addresses);
            let why = format!(
                "{} beside {}: {}: two captures of different moments or nodes, so whether the node holds those interfaces' addresses, and what they decide, is unknown",
                src.file,
                earlier,
                missing
                    .iter()
                    .map(|(n, w)| format!("interface {n} is not in {w}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            diags.push(diag(Severity::Error, &src.file, src.line, 0, why.clone()));
            // What is in doubt is what those interfaces' addresses decide: their subnets and
            // the addresses themselves (a pod's veth with a link-local address only, created
            // or removed between the captures, leaves the node's other lookups as they are).
            let prefixes: Vec<String> = out
                .interfaces
                .iter()
                .chain(net.interfaces.iter())
                .filter(|i| missing.iter().any(|(n, _)| *n == i.name))
                .flat_map(|i| &i.addresses)
                .flat_map(|a| [a.address.trunc().to_string(), a.address.addr().to_string()])
                .collect();
            net.skipped.push(kubepath_model::net::SkippedLine {
                source: src.clone(),
                text: prefixes.join(" "),
                why,
                cut: false,
                read: true,
            });
        }
    }
    lower(out, net, diags);
    net.read.entry(NodeFact::Addresses).or_default().push(src);
    Ok(Some(fmt))
}

/// Merge `ip link` information (no addresses) into the node's interfaces, keeping addresses
/// already read and filling in what brief or older outputs lacked.
fn merge_links(out: IpAddrOutput, net: &mut NodeNet) {
    for iface in out.interfaces {
        match net.interfaces.iter_mut().find(|i| i.name == iface.name) {
            Some(old) => {
                let addresses = std::mem::take(&mut old.addresses);
                let vrf = old.vrf.take();
                *old = Interface {
                    addresses,
                    vrf,
                    ..iface
                };
            }
            None => net.interfaces.push(iface),
        }
    }
}

/// Merge interfaces into the node: a later output for the same interface name replaces the
/// earlier one's addresses (with a note when they differ).
pub fn lower(out: IpAddrOutput, net: &mut NodeNet, diags: &mut Vec<Diagnostic>) {
    // Which families each side lists at all: `ip -4 addr` lists no IPv6 address anywhere.
    let lists = |ifs: &[Interface], v4: bool| {
        ifs.iter()
            .flat_map(|i| &i.addresses)
            .any(|a| matches!(a.address, ipnet::IpNet::V4(_)) == v4)
    };
    let both = [true, false].map(|v4| lists(&out.interfaces, v4) && lists(&net.interfaces, v4));
    for iface in out.interfaces {
        if let Some(old) = net.interfaces.iter_mut().find(|i| i.name == iface.name) {
            if old.addresses.is_empty() && old.ifindex.is_some() && iface.ifindex.is_none() {
                // Brief output after `ip link`: keep the link details, take the addresses.
                old.addresses = iface.addresses;
                continue;
            }
            // Compared per family where both list it: `ip -4 addr` beside `ip addr` agrees
            // (issue #11, review), and the two together give every family's addresses.
            let of = |list: &[kubepath_model::net::IfAddr], v4: bool| -> Vec<ipnet::IpNet> {
                let mut v: Vec<ipnet::IpNet> = list
                    .iter()
                    .map(|a| a.address)
                    .filter(|a| matches!(a, ipnet::IpNet::V4(_)) == v4)
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            let same = [(true, both[0]), (false, both[1])]
                .into_iter()
                .all(|(v4, both)| !both || of(&old.addresses, v4) == of(&iface.addresses, v4));
            if same {
                let mut iface = iface;
                for a in &old.addresses {
                    if !iface.addresses.iter().any(|b| b.address == a.address) {
                        iface.addresses.push(a.clone());
                    }
                }
                *old = iface;
                continue;
            }
            {
                // Two captures of different moments or nodes (issue #11, review): which
                // addresses the node holds, and so its local routes and which next hops are
                // its own, is in doubt. An error, and the node's routing lookups are unknown
                // (an empty line that is `read` and `cut` is a doubt on the whole output).
                let why = format!(
                    "interface {} also read from {} with different addresses: two captures of different moments or nodes, so the node's addresses are unknown",
                    iface.name, old.source
                );
                diags.push(diag(
                    Severity::Error,
                    &iface.source.file,
                    iface.source.line,
                    0,
                    why.clone(),
                ));
                net.skipped.push(kubepath_model::net::SkippedLine {
                    source: iface.source.clone(),
                    text: String::new(),
                    why,
                    cut: true,
                    read: true,
                });
            }
            *old = iface;
        } else {
            net.interfaces.push(iface);
        }
    }
}

fn parse_header(file: &Arc<str>, line: Line<'_>) -> Result<Interface, ParseError> {
    let mut c = Cursor::new(file, line);
    let idx = c.expect("interface index `N:`")?;
    let ifindex = idx
        .s
        .strip_suffix(':')
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| c.error_at(idx, "interface index `N:`"))?;
    let name_tok = c.expect("interface name `NAME:`")?;
    let name_full = name_tok
        .s
        .strip_suffix(':')
        .ok_or_else(|| c.error_at(name_tok, "interface name ending in `:`"))?;
    let (name, link) = match name_full.split_once('@') {
        Some((n, p)) => (n.to_string(), Some(p.to_string())),
        None => (name_full.to_string(), None),
    };
    let flags_tok = c.expect("interface flags `<...>`")?;
    let flags: Vec<String> = flags_tok
        .s
        .strip_prefix('<')
        .and_then(|f| f.strip_suffix('>'))
        .ok_or_else(|| c.error_at(flags_tok, "interface flags `<...>`"))?
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    let mut iface = Interface {
        name,
        ifindex: Some(ifindex),
        link,
        link_type: None,
        mac: None,
        mtu: None,
        flags,
        operstate: None,
        kind: None,
        master: None,
        altnames: Vec::new(),
        addresses: Vec::new(),
        vrf: None,
        source: SourceRef::new(file.clone(), line.no),
    };
    while let Some(t) = c.bump() {
        match t.s {
            "mtu" => iface.mtu = Some(c.expect_parse("MTU number")?),
            "master" => iface.master = Some(c.expect("master device name")?.s.to_string()),
            "state" => iface.operstate = Some(c.expect("operstate")?.s.to_string()),
            // Attributes with one value that kubepath does not need.
            "qdisc" | "group" | "qlen" | "link-netnsid" | "netns" | "mode" | "numtxqueues"
            | "numrxqueues" | "gso_max_size" | "gso_max_segs" | "portid" | "minmtu" | "maxmtu"
            | "promiscuity" | "allmulti" | "link-netns" | "proto" => {
                c.expect("a value")?;
            }
            "dynamic" | "event" => {}
            _ => {
                return Err(c.error_at(
                    t,
                    "an interface attribute (mtu, qdisc, master, state, group, qlen)",
                ))
            }
        }
    }
    Ok(iface)
}

fn parse_inet(file: &Arc<str>, line: Line<'_>, iface_name: &str) -> Result<IfAddr, ParseError> {
    let mut c = Cursor::new(file, line);
    let fam = c.expect("inet or inet6")?;
    let a = c.expect("address/prefix")?;
    let address = super::text::parse_prefix(a.s).ok_or_else(|| c.error_at(a, "address/prefix"))?;
    if (fam.s == "inet") != address.addr().is_ipv4() {
        return Err(c.error_at(a, format!("an {} address", fam.s)));
    }
    let mut ifa = IfAddr::new(address, SourceRef::new(file.clone(), line.no));
    while let Some(t) = c.bump() {
        match t.s {
            "brd" => ifa.broadcast = Some(c.expect_ip("broadcast address")?),
            "peer" => {
                let p = c.expect("peer address/prefix")?;
                let pn = super::text::parse_prefix(p.s)
                    .ok_or_else(|| c.error_at(p, "peer address/prefix"))?;
                // `inet A peer P/L`: the prefix length belongs to the peer; the local address
                // keeps it too (iproute2 prints the length after the peer only).
                if let Ok(n) = ipnet::IpNet::new(address.addr(), pn.prefix_len()) {
                    ifa.address = n;
                }
                ifa.peer = Some(pn);
            }
            "scope" => ifa.scope = c.expect("scope")?.s.to_string(),
            "secondary" | "temporary" => {
                ifa.secondary = true;
                if t.s == "temporary" {
                    ifa.flags.push(t.s.into());
                }
            }
            "noprefixroute" => ifa.noprefixroute = true,
            "metric" | "proto" => {
                let v = c.expect("a value")?;
                ifa.flags.push(format!("{} {}", t.s, v.s));
            }
            "dynamic" | "deprecated" | "tentative" | "nodad" | "mngtmpaddr" | "home"
            | "optimistic" | "dadfailed" | "autojoin" | "stable-privacy" | "permanent" => {
                ifa.flags.push(t.s.into())
            }
            other => {
                if c.at_end() {
                    // Last word: the label (interface name, or an alias such as eth0:1).
                    if other != iface_name {
                        ifa.label = Some(other.to_string());
                    }
                } else {
                    return Err(c.error_at(t, "an address attribute (brd, scope, secondary, noprefixroute, ...) or the label"));
                }
            }
        }
    }
    Ok(ifa)
}

pub fn parse_text(
    file: &Arc<str>,
    lines: &[Line<'_>],
    diags: &mut Vec<Diagnostic>,
) -> Result<IpAddrOutput, ParseError> {
    let mut out: Vec<Interface> = Vec::new();
    for &line in lines {
        let t = line.text.trim();
        if t.is_empty() {
            continue;
        }
        if is_header(line.text) {
            out.push(parse_header(file, line)?);
            continue;
        }
        let Some(cur) = out.last_mut() else {
            return Err(err(
                file,
                line.no,
                1,
                "an interface line `N: NAME: <FLAGS> ...`",
                format!("`{t}`"),
            ));
        };
        let first = t.split_whitespace().next().unwrap_or("");
        let mut c = Cursor::new(file, line);
        match first {
            "inet" | "inet6" => {
                let a = parse_inet(file, line, &cur.name)?;
                cur.addresses.push(a);
            }
            "valid_lft" | "prefered_lft" | "preferred_lft" => {}
            "altname" => {
                c.bump();
                cur.altnames
                    .push(c.expect("alternative name")?.s.to_string());
            }
            f if f.starts_with("link/") => {
                c.bump();
                cur.link_type = Some(f.trim_start_matches("link/").to_string());
                if let Some(mac) = c.peek() {
                    if mac != "brd" && mac.contains(':') && mac.len() == 17 {
                        cur.mac = Some(mac.to_ascii_lowercase());
                    }
                }
            }
            f if KINDS.contains(&f) => {
                cur.kind = Some(f.to_string());
            }
            f if f.ends_with("_slave") => {
                // `-d` detail of the enslaved side: `vrf_slave table 10`, `bridge_slave ...`.
            }
            "addrgenmode" | "inet6_addr_gen_mode" => {}
            _ => diags.push(diag(
                Severity::Warning,
                file,
                line.no,
                1,
                format!("`ip addr` line not understood, skipped: `{t}`"),
            )),
        }
    }
    Ok(IpAddrOutput { interfaces: out })
}

/// Line numbers of the top-level array items of a JSON text (1-based), in order.
pub fn item_lines(text: &str, first_line: u32) -> Vec<u32> {
    item_positions(text, first_line)
        .into_iter()
        .map(|(l, _)| l)
        .collect()
}

/// Line and byte offset of each top-level array item of a JSON text.
pub fn item_positions(text: &str, first_line: u32) -> Vec<(u32, usize)> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut esc = false;
    let mut line = first_line;
    for (off, ch) in text.char_indices() {
        if ch == '\n' {
            line += 1;
        }
        if in_str {
            if esc {
                esc = false;
            } else if ch == '\\' {
                esc = true;
            } else if ch == '"' {
                in_str = false;
            }
            continue;
        }
        match ch {
            '"' => in_str = true,
            '[' | '{' => {
                if depth == 1 && ch == '{' {
                    out.push((line, off));
                }
                depth += 1;
            }
            ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    out
}

fn jstr(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

pub fn parse_json_addr(
    file: &Arc<str>,
    text: &str,
    line0: u32,
    diags: &mut Vec<Diagnostic>,
) -> Result<IpAddrOutput, ParseError> {
    let items = parse_json_array(
        file,
        text,
        line0,
        "a JSON array of interfaces (`ip -j addr`)",
    )?;
    let positions = item_positions(text, line0);
    let mut out = Vec::new();
    for (n, it) in items.iter().enumerate() {
        let (line, off) = positions.get(n).copied().unwrap_or((line0, 0));
        let end = positions.get(n + 1).map(|p| p.1).unwrap_or(text.len());
        // Lines of this interface's `"local"` keys, one per address, in order.
        let item_text = text.get(off..end).unwrap_or("");
        let mut addr_lines = item_text
            .match_indices("\"local\"")
            .map(|(i, _)| line + item_text[..i].matches('\n').count() as u32);
        let src = SourceRef::new(file.clone(), line);
        let Some(name) = jstr(it, "ifname") else {
            return Err(err(
                file,
                line,
                1,
                "an interface object with `ifname`",
                "an object without it",
            ));
        };
        let flags = it
            .get("flags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let linkinfo = it.get("linkinfo");
        let mut iface = Interface {
            name: name.clone(),
            ifindex: it
                .get("ifindex")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            link: jstr(it, "link").or_else(|| {
                it.get("link_index")
                    .and_then(Value::as_u64)
                    .map(|i| format!("if{i}"))
            }),
            link_type: jstr(it, "link_type"),
            mac: jstr(it, "address")
                .filter(|a| a.len() == 17)
                .map(|a| a.to_ascii_lowercase()),
            mtu: it
                .get("mtu")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            flags,
            operstate: jstr(it, "operstate"),
            kind: linkinfo.and_then(|l| jstr(l, "info_kind")),
            master: jstr(it, "master"),
            altnames: it
                .get("altnames")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            addresses: Vec::new(),
            vrf: None,
            source: src.clone(),
        };
        for a in it
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let fam = jstr(a, "family").unwrap_or_default();
            if fam != "inet" && fam != "inet6" {
                diags.push(diag(
                    Severity::Warning,
                    file,
                    line,
                    0,
                    format!("address family `{fam}` of {name} skipped"),
                ));
                continue;
            }
            let local = jstr(a, "local").and_then(|s| parse_ip(&s));
            let plen = a
                .get("prefixlen")
                .and_then(Value::as_u64)
                .and_then(|p| u8::try_from(p).ok());
            let (Some(local), Some(plen)) = (local, plen) else {
                return Err(err(
                    file,
                    line,
                    1,
                    format!("`local` and `prefixlen` in every addr_info of {name}"),
                    "an address without them",
                ));
            };
            let address = ipnet::IpNet::new(local, plen)
                .map_err(|_| err(file, line, 1, "a valid prefix length", plen.to_string()))?;
            let peer = jstr(a, "address")
                .and_then(|s| parse_ip(&s))
                .and_then(|p| ipnet::IpNet::new(p, plen).ok());
            let flag = |k: &str| a.get(k).and_then(Value::as_bool).unwrap_or(false);
            let mut flags = Vec::new();
            for k in [
                "dynamic",
                "deprecated",
                "tentative",
                "nodad",
                "mngtmpaddr",
                "temporary",
                "optimistic",
                "dadfailed",
                "permanent",
            ] {
                if flag(k) {
                    flags.push(k.to_string());
                }
            }
            let label = jstr(a, "label").filter(|l| *l != name);
            iface.addresses.push(IfAddr {
                address,
                peer,
                broadcast: jstr(a, "broadcast").and_then(|s| parse_ip(&s)),
                scope: jstr(a, "scope").unwrap_or_else(|| "global".into()),
                label,
                secondary: flag("secondary") || flag("temporary"),
                noprefixroute: flag("noprefixroute"),
                flags,
                source: SourceRef::new(file.clone(), addr_lines.next().unwrap_or(line)),
            });
        }
        out.push(iface);
    }
    Ok(IpAddrOutput { interfaces: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::text::segments;

    fn parse(t: &str) -> Result<IpAddrOutput, ParseError> {
        let f: Arc<str> = "t".into();
        let segs = segments(t);
        let mut d = Vec::new();
        parse_text(&f, &segs[0].lines, &mut d)
    }

    #[test]
    fn seed_ecfe_traf1() {
        let o = parse("12: ecfe_traf1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 9000 qdisc noqueue state UNKNOWN group default qlen 1000\n    link/ether 36:1f:d1:91:3a:16 brd ff:ff:ff:ff:ff:ff\n    inet 10.33.152.74/27 brd 10.33.152.95 scope global noprefixroute ecfe_traf1\n       valid_lft forever preferred_lft forever\n").unwrap();
        let i = &o.interfaces[0];
        assert_eq!(i.name, "ecfe_traf1");
        assert_eq!(i.ifindex, Some(12));
        assert_eq!(i.mtu, Some(9000));
        assert_eq!(i.mac.as_deref(), Some("36:1f:d1:91:3a:16"));
        assert!(i.is_up() && i.lower_up());
        let a = &i.addresses[0];
        assert_eq!(a.address.to_string(), "10.33.152.74/27");
        assert!(a.noprefixroute);
        assert_eq!(
            a.broadcast.map(|b| b.to_string()).as_deref(),
            Some("10.33.152.95")
        );
        assert_eq!(a.label, None);
    }

    #[test]
    fn veth_peer_master_secondary_label() {
        let o = parse("5: cali1@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1440 qdisc noqueue master vrf-om state UP group default\n    link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netnsid 2\n    altname enp1s0\n    inet 10.0.0.5/24 brd 10.0.0.255 scope global secondary eth0:1\n    inet 10.1.0.1 peer 10.1.0.2/32 scope global cali1\n").unwrap();
        let i = &o.interfaces[0];
        assert_eq!(i.link.as_deref(), Some("if3"));
        assert_eq!(i.master.as_deref(), Some("vrf-om"));
        assert_eq!(i.altnames, vec!["enp1s0"]);
        assert!(i.addresses[0].secondary);
        assert_eq!(i.addresses[0].label.as_deref(), Some("eth0:1"));
        assert_eq!(
            i.addresses[1].peer.map(|p| p.to_string()).as_deref(),
            Some("10.1.0.2/32")
        );
    }

    #[test]
    fn bad_prefix_has_position() {
        let e = parse("1: lo: <LOOPBACK,UP> mtu 65536\n    inet 127.0.0.1/99 scope host lo\n")
            .unwrap_err();
        assert_eq!((e.line, e.column), (2, 10));
    }

    #[test]
    fn json() {
        let f: Arc<str> = "t".into();
        let t = r#"[{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","UP"],"mtu":1500,"operstate":"UP","link_type":"ether","address":"52:54:00:12:34:56","linkinfo":{"info_kind":"vrf"},"addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24,"broadcast":"10.0.0.255","scope":"global","noprefixroute":true,"label":"eth0"}]}]"#;
        let mut d = Vec::new();
        let o = parse_json_addr(&f, t, 1, &mut d).unwrap();
        assert_eq!(o.interfaces[0].kind.as_deref(), Some("vrf"));
        assert!(o.interfaces[0].addresses[0].noprefixroute);
        assert_eq!(
            o.interfaces[0].addresses[0].address.to_string(),
            "10.0.0.1/24"
        );
    }
}
