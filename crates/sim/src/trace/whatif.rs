//! `--what-if` changes: `ip route add|del|replace ...`, `ip rule add|del ...` and
//! `sysctl -w key=value`, on every node or, prefixed `NODE:`, on one node.
//!
//! The grammar is iproute2's (`man 8 ip-route`, `man 8 ip-rule`); what the kernel would refuse
//! (a gateway on no connected subnet without `onlink`) is refused here too, per node.

use std::net::IpAddr;

use ipnet::IpNet;
use kubepath_model::net::{table_id, Family, NodeNet, Route, RouteType, Rule, RuleAction, Sysctl};
use kubepath_model::{Model, SourceRef};

/// One parsed change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The text as given.
    pub text: String,
    /// `Some(node)` for `NODE:` changes.
    pub node: Option<String>,
    pub op: Op,
    pub item: Item,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Del,
    Replace,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Route(RouteSpec),
    Rule(Rule),
    Sysctl(String, String),
}

/// A route as given on the command line (the device may be left to the kernel to find).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub kind: RouteType,
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
    pub table: u32,
    pub metric: Option<u32>,
    pub proto: Option<String>,
    pub scope: Option<String>,
    pub src: Option<IpAddr>,
    pub onlink: bool,
}

/// A what-if that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIfError {
    pub text: String,
    /// 1-based column of the offending word.
    pub column: usize,
    pub expected: String,
}

impl std::fmt::Display for WhatIfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--what-if '{}': column {}: expected {}",
            self.text, self.column, self.expected
        )
    }
}

impl std::error::Error for WhatIfError {}

struct Words<'a> {
    words: Vec<(usize, &'a str)>,
    pos: usize,
}

impl<'a> Words<'a> {
    fn new(text: &'a str, offset: usize) -> Self {
        let mut words = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices() {
            if c.is_whitespace() {
                if let Some(s) = start.take() {
                    words.push((offset + s, &text[s..i]));
                }
            } else if start.is_none() {
                start = Some(i);
            }
        }
        if let Some(s) = start {
            words.push((offset + s, &text[s..]));
        }
        Words { words, pos: 0 }
    }
    fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.pos).map(|w| w.1);
        self.pos += 1;
        w
    }
    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).map(|w| w.1)
    }
    fn err(&self, full: &str, expected: impl Into<String>) -> WhatIfError {
        let idx = self
            .pos
            .saturating_sub(1)
            .min(self.words.len().saturating_sub(1));
        let column = self
            .words
            .get(idx)
            .map(|w| w.0 + 1)
            .unwrap_or(full.len() + 1);
        WhatIfError {
            text: full.to_string(),
            column,
            expected: expected.into(),
        }
    }
    fn value(&mut self, full: &str, what: &str) -> Result<&'a str, WhatIfError> {
        self.next().ok_or_else(|| self.err(full, what.to_string()))
    }
}

fn parse_prefix(s: &str) -> Option<IpNet> {
    if s == "default" || s == "all" {
        return None;
    }
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn parse_table(s: &str) -> Option<u32> {
    table_id(s).or_else(|| s.parse().ok())
}

fn parse_u32(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x") {
        u32::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// Parses one `--what-if` argument.
pub fn parse(text: &str) -> Result<Change, WhatIfError> {
    let trimmed = text.trim();
    // `NODE:` prefix: a node name followed by ':' before the command (IPv6 literals only occur
    // after the command word, so the first ':' before a space is the node separator).
    let (node, rest, offset) = match trimmed.split_once(':') {
        Some((n, r))
            if !n.contains(char::is_whitespace) && !n.is_empty() && n != "ip" && n != "sysctl" =>
        {
            (Some(n.to_string()), r, n.len() + 1)
        }
        _ => (None, trimmed, 0),
    };
    let mut w = Words::new(rest, offset);
    match w.next() {
        Some("ip") => {}
        Some("sysctl") => return parse_sysctl(text, node, &mut w),
        _ => {
            return Err(w.err(
                text,
                "`ip route ...`, `ip rule ...` or `sysctl -w key=value`",
            ))
        }
    }
    let obj = w.value(text, "`route` or `rule`")?;
    let op_word = w.value(text, "add, del or replace")?;
    let op = match op_word {
        "add" | "append" => Op::Add,
        "del" | "delete" => Op::Del,
        "replace" | "change" => Op::Replace,
        _ => return Err(w.err(text, "add, del or replace")),
    };
    let item = match obj {
        "route" | "r" | "ro" | "rou" => Item::Route(parse_route(text, &mut w)?),
        "rule" | "ru" => Item::Rule(parse_rule(text, &mut w)?),
        _ => return Err(w.err(text, "`route` or `rule`")),
    };
    Ok(Change {
        text: text.to_string(),
        node,
        op,
        item,
    })
}

fn parse_sysctl(text: &str, node: Option<String>, w: &mut Words) -> Result<Change, WhatIfError> {
    if w.peek() == Some("-w") {
        w.next();
    }
    let kv = w.value(text, "key=value")?;
    let Some((k, v)) = kv.split_once('=') else {
        return Err(w.err(text, "key=value"));
    };
    let key = k.trim().replace('/', ".");
    Ok(Change {
        text: text.to_string(),
        node,
        op: Op::Replace,
        item: Item::Sysctl(key, v.trim().to_string()),
    })
}

fn parse_route(text: &str, w: &mut Words) -> Result<RouteSpec, WhatIfError> {
    let mut kind = RouteType::Unicast;
    let mut first = w.value(text, "a destination prefix or `default`")?;
    if let Some(k) = RouteType::parse(first) {
        kind = k;
        first = w.value(text, "a destination prefix or `default`")?;
    }
    let dst = if first == "default" {
        // The family follows the gateway, if any; default to IPv4.
        "0.0.0.0/0".parse::<IpNet>().ok()
    } else {
        parse_prefix(first)
    }
    .ok_or_else(|| w.err(text, "a destination prefix (A.B.C.D[/LEN]) or `default`"))?;
    let mut spec = RouteSpec {
        kind,
        dst: dst.trunc(),
        gateway: None,
        dev: None,
        table: 254,
        metric: None,
        proto: None,
        scope: None,
        src: None,
        onlink: false,
    };
    while let Some(word) = w.next() {
        match word {
            "via" => {
                let mut v = w.value(text, "a gateway address")?;
                if v == "inet" || v == "inet6" {
                    v = w.value(text, "a gateway address")?;
                }
                spec.gateway = Some(v.parse().map_err(|_| w.err(text, "a gateway address"))?);
            }
            "dev" | "oif" => spec.dev = Some(w.value(text, "a device name")?.to_string()),
            "table" => {
                let t = w.value(text, "a table name or number")?;
                spec.table = parse_table(t).ok_or_else(|| w.err(text, "a table name or number"))?;
            }
            "metric" | "preference" | "priority" => {
                let m = w.value(text, "a metric")?;
                spec.metric = Some(parse_u32(m).ok_or_else(|| w.err(text, "a number"))?);
            }
            "proto" | "protocol" => spec.proto = Some(w.value(text, "a protocol")?.to_string()),
            "scope" => spec.scope = Some(w.value(text, "a scope")?.to_string()),
            "src" => {
                let s = w.value(text, "a source address")?;
                spec.src = Some(s.parse().map_err(|_| w.err(text, "a source address"))?);
            }
            "onlink" => spec.onlink = true,
            _ => {
                return Err(w.err(
                    text,
                    "one of via, dev, table, metric, proto, scope, src, onlink",
                ))
            }
        }
    }
    if let (Some(gw), true) = (spec.gateway, first == "default") {
        if gw.is_ipv6() {
            spec.dst = "::/0".parse().expect("a valid prefix");
        }
    }
    Ok(spec)
}

fn parse_rule(text: &str, w: &mut Words) -> Result<Rule, WhatIfError> {
    let mut rule = Rule {
        family: Family::Ipv4,
        priority: u32::MAX,
        not: false,
        from: None,
        to: None,
        iif: None,
        oif: None,
        fwmark: None,
        tos: None,
        ipproto: None,
        sport: None,
        dport: None,
        uidrange: None,
        l3mdev: false,
        action: RuleAction::Lookup(254),
        suppress_prefixlength: None,
        suppress_ifgroup: None,
        proto: None,
        source: SourceRef::new("--what-if", 0),
    };
    while let Some(word) = w.next() {
        match word {
            "not" => rule.not = true,
            "from" => {
                let v = w.value(text, "a prefix or `all`")?;
                rule.from = if v == "all" {
                    None
                } else {
                    Some(parse_prefix(v).ok_or_else(|| w.err(text, "a prefix or `all`"))?)
                };
            }
            "to" => {
                let v = w.value(text, "a prefix or `all`")?;
                rule.to = if v == "all" {
                    None
                } else {
                    Some(parse_prefix(v).ok_or_else(|| w.err(text, "a prefix or `all`"))?)
                };
            }
            "iif" | "dev" => rule.iif = Some(w.value(text, "an interface")?.to_string()),
            "oif" => rule.oif = Some(w.value(text, "an interface")?.to_string()),
            "fwmark" => {
                let v = w.value(text, "MARK[/MASK]")?;
                let (m, mask) = match v.split_once('/') {
                    Some((m, k)) => (parse_u32(m), parse_u32(k)),
                    None => (parse_u32(v), Some(u32::MAX)),
                };
                match (m, mask) {
                    (Some(m), Some(k)) => rule.fwmark = Some((m, k)),
                    _ => return Err(w.err(text, "MARK[/MASK]")),
                }
            }
            "priority" | "pref" | "preference" | "order" => {
                let v = w.value(text, "a priority")?;
                rule.priority = parse_u32(v).ok_or_else(|| w.err(text, "a number"))?;
            }
            "lookup" | "table" => {
                let v = w.value(text, "a table name or number")?;
                rule.action = RuleAction::Lookup(
                    parse_table(v).ok_or_else(|| w.err(text, "a table name or number"))?,
                );
            }
            "goto" => {
                let v = w.value(text, "a priority")?;
                rule.action = RuleAction::Goto(parse_u32(v).ok_or_else(|| w.err(text, "a number"))?);
            }
            "blackhole" => {
                rule.action = RuleAction::Blackhole;
            }
            "unreachable" => {
                rule.action = RuleAction::Unreachable;
            }
            "prohibit" => {
                rule.action = RuleAction::Prohibit;
            }
            "nop" => {
                rule.action = RuleAction::Nop;
            }
            "suppress_prefixlength" => {
                let v = w.value(text, "a prefix length")?;
                rule.suppress_prefixlength = Some(parse_u32(v).ok_or_else(|| w.err(text, "a number"))?);
            }
            _ => {
                return Err(w.err(
                    text,
                    "one of not, from, to, iif, oif, fwmark, priority, lookup, goto, blackhole, unreachable, prohibit, suppress_prefixlength",
                ))
            }
        }
    }
    if let Some(f) = rule.from.or(rule.to) {
        rule.family = Family::of(&f.addr());
    }
    Ok(rule)
}

/// Applies `changes` to a copy of the model's nodes. Returns per-node refusals (what the
/// kernel would answer, e.g. "Nexthop has invalid gateway") as notes.
pub fn apply(model: &Model, changes: &[Change]) -> (Model, Vec<String>) {
    let mut m = model.clone();
    let mut notes = Vec::new();
    for (idx, change) in changes.iter().enumerate() {
        let source = SourceRef::new(format!("--what-if #{}", idx + 1), 0);
        let names: Vec<String> = match &change.node {
            Some(n) => {
                if !m.nodes.contains_key(n) {
                    notes.push(format!(
                        "--what-if '{}': node {n} is not in the snapshot",
                        change.text
                    ));
                }
                vec![n.clone()]
            }
            None => m.nodes.keys().cloned().collect(),
        };
        for name in names {
            let Some(node) = m.nodes.get_mut(&name) else {
                continue;
            };
            if let Err(e) = apply_one(node, change, &source) {
                notes.push(format!("--what-if '{}' on {name}: {e}", change.text));
            }
        }
    }
    (m, notes)
}

fn apply_one(node: &mut NodeNet, change: &Change, source: &SourceRef) -> Result<(), String> {
    match &change.item {
        Item::Sysctl(k, v) => {
            let mut keys = vec![k.clone()];
            if k == "net.ipv4.ip_forward" || k == "net.ipv4.conf.all.forwarding" {
                // Writing either copies the value to `all`, `default` and every device's own
                // `forwarding` (net/ipv4/devinet.c, inet_forward_change), which is what the
                // kernel checks for a packet's input device.
                keys.extend(
                    [
                        "net.ipv4.ip_forward",
                        "net.ipv4.conf.all.forwarding",
                        "net.ipv4.conf.default.forwarding",
                    ]
                    .map(String::from),
                );
                keys.extend(
                    node.interfaces
                        .iter()
                        .map(|i| format!("net.ipv4.conf.{}.forwarding", i.name)),
                );
                keys.extend(
                    node.sysctls
                        .keys()
                        .filter(|x| x.starts_with("net.ipv4.conf.") && x.ends_with(".forwarding"))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                keys.sort();
                keys.dedup();
            }
            for key in keys {
                node.sysctls.insert(
                    key,
                    Sysctl {
                        value: v.clone(),
                        source: source.clone(),
                    },
                );
            }
            Ok(())
        }
        Item::Rule(rule) => {
            let mut rule = rule.clone();
            rule.source = source.clone();
            match change.op {
                Op::Del => {
                    let pos = node.rules.iter().position(|r| {
                        (rule.priority == u32::MAX || r.priority == rule.priority)
                            && r.from == rule.from
                            && r.to == rule.to
                            && r.iif == rule.iif
                            && r.fwmark == rule.fwmark
                            && r.action == rule.action
                    });
                    match pos {
                        Some(p) => {
                            node.rules.remove(p);
                            Ok(())
                        }
                        None => Err(
                            "RTNETLINK answers: No such file or directory (no such rule)".into(),
                        ),
                    }
                }
                Op::Add | Op::Replace => {
                    if rule.priority == u32::MAX {
                        // fib_default_rule_pref(): one below the priority of the second rule
                        // (the first after `local`), when that is above 0.
                        let mut prios: Vec<u32> = node
                            .rules
                            .iter()
                            .filter(|r| r.family == rule.family)
                            .map(|r| r.priority)
                            .collect();
                        if prios.is_empty() {
                            prios = vec![0, 32766, 32767];
                        }
                        prios.sort_unstable();
                        rule.priority = prios
                            .get(1)
                            .copied()
                            .filter(|p| *p > 0)
                            .map(|p| p - 1)
                            .unwrap_or(0);
                    }
                    node.rules.push(rule);
                    Ok(())
                }
            }
        }
        Item::Route(spec) => {
            let fam = Family::of(&spec.dst.addr());
            match change.op {
                Op::Del => {
                    let pos = node.routes.iter().position(|r| {
                        r.table == spec.table
                            && r.dst == spec.dst
                            && spec.gateway.is_none_or(|g| r.gateway == Some(g))
                            && spec.dev.as_ref().is_none_or(|d| r.dev.as_ref() == Some(d))
                            && spec.metric.is_none_or(|m| r.metric.unwrap_or(0) == m)
                    });
                    match pos {
                        Some(p) => {
                            node.routes.remove(p);
                            Ok(())
                        }
                        None => Err("RTNETLINK answers: No such process (no such route)".into()),
                    }
                }
                Op::Add | Op::Replace => {
                    let mut dev = spec.dev.clone();
                    if let Some(gw) = spec.gateway {
                        // The kernel needs the gateway on a connected subnet (of `dev`, when
                        // given) unless `onlink` is set (fib_check_nh()).
                        let connected = node.interfaces.iter().find(|i| {
                            dev.as_ref().is_none_or(|d| &i.name == d)
                                && i.addresses.iter().any(|a| a.address.trunc().contains(&gw))
                        });
                        match connected {
                            Some(i) => {
                                if dev.is_none() {
                                    dev = Some(i.name.clone());
                                }
                            }
                            None if spec.onlink && dev.is_some() => {}
                            None => {
                                return Err(format!(
                                    "Error: Nexthop has invalid gateway ({gw} is on no connected subnet of this node)"
                                ))
                            }
                        }
                    } else if dev.is_none() && spec.kind == RouteType::Unicast {
                        return Err(
                            "Error: Device for nexthop is not up (no `via` and no `dev`)".into(),
                        );
                    }
                    let route = Route {
                        family: fam,
                        table: spec.table,
                        kind: spec.kind.clone(),
                        dst: spec.dst,
                        tos: None,
                        gateway: spec.gateway,
                        dev,
                        prefsrc: spec.src,
                        metric: spec.metric,
                        proto: spec.proto.clone().or(Some("boot".into())),
                        scope: spec.scope.clone(),
                        onlink: spec.onlink,
                        nexthops: Vec::new(),
                        flags: Vec::new(),
                        extra: Vec::new(),
                        source: source.clone(),
                    };
                    let existing = node.routes.iter().position(|r| {
                        r.table == route.table
                            && r.dst == route.dst
                            && r.metric.unwrap_or(0) == route.metric.unwrap_or(0)
                    });
                    match (change.op, existing) {
                        (Op::Add, Some(_)) => Err("RTNETLINK answers: File exists".into()),
                        (Op::Replace, Some(p)) => {
                            node.routes[p] = route;
                            Ok(())
                        }
                        _ => {
                            node.routes.push(route);
                            if !node.route_tables_known.contains(&spec.table)
                                && !node
                                    .routes
                                    .iter()
                                    .any(|r| r.table == spec.table && r.source != *source)
                            {
                                // A table that had no routes at all: its content is now known.
                                node.route_tables_known.push(spec.table);
                            }
                            Ok(())
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_fix() {
        let c = parse("ip route add 10.210.150.87/32 via 10.33.151.65").unwrap();
        assert_eq!(c.node, None);
        assert_eq!(c.op, Op::Add);
        match c.item {
            Item::Route(r) => {
                assert_eq!(r.dst, "10.210.150.87/32".parse::<IpNet>().unwrap());
                assert_eq!(r.gateway, Some("10.33.151.65".parse().unwrap()));
                assert_eq!(r.table, 254);
            }
            other => panic!("not a route: {other:?}"),
        }
    }

    #[test]
    fn parses_node_prefix_and_rule() {
        let c = parse("node-1:ip rule add to 10.210.150.80/28 lookup 100 pref 100").unwrap();
        assert_eq!(c.node.as_deref(), Some("node-1"));
        match c.item {
            Item::Rule(r) => {
                assert_eq!(r.priority, 100);
                assert_eq!(r.action, RuleAction::Lookup(100));
                assert_eq!(r.to, Some("10.210.150.80/28".parse().unwrap()));
            }
            other => panic!("not a rule: {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse("ip route add 10.0.0.0/8 vai 1.2.3.4").unwrap_err();
        assert_eq!(e.column, 25);
        assert!(e.expected.contains("via"), "{e}");
        let e = parse("ip route add banana").unwrap_err();
        assert_eq!(e.column, 14);
        assert!(parse("route add x").is_err());
    }

    #[test]
    fn parses_sysctl() {
        let c = parse("n1:sysctl -w net.ipv4.conf.eth0.rp_filter=2").unwrap();
        assert_eq!(
            c.item,
            Item::Sysctl("net.ipv4.conf.eth0.rp_filter".into(), "2".into())
        );
    }
}
