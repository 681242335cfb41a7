//! Model routes and rules printed as iproute2 prints them, so a verdict quotes the line an
//! operator knows.

use kubepath_model::change::{Change, Item, Op};
use kubepath_model::net::{table_name, Route, RouteType, Rule, RuleAction};

/// `default via 10.33.152.65 dev ecfe_traf1 proto static metric 804`.
pub fn route_text(r: &Route) -> String {
    let mut s = kind_prefix(r);
    if r.dst.prefix_len() == 0 {
        s.push_str("default");
    } else if r.dst.prefix_len() == r.dst.max_prefix_len() {
        s.push_str(&r.dst.addr().to_string());
    } else {
        s.push_str(&r.dst.to_string());
    }
    if r.table != 254 {
        s.push_str(&format!(" table {}", table_name(r.table)));
    }
    push_attrs(&mut s, r, false);
    s
}

/// `blackhole ` etc. before the destination (nothing for unicast).
fn kind_prefix(r: &Route) -> String {
    match &r.kind {
        RouteType::Unicast => String::new(),
        k => format!("{k:?} ").to_lowercase(),
    }
}

/// The attributes after the destination, as iproute2 prints them; `table_after_dev` for the
/// command form (`ip route add DST via GW dev DEV table T`).
fn push_attrs(s: &mut String, r: &Route, table_after_dev: bool) {
    if let Some(g) = r.gateway {
        s.push_str(&format!(" via {g}"));
    }
    if let Some(d) = &r.dev {
        s.push_str(&format!(" dev {d}"));
    }
    if table_after_dev && r.table != 254 {
        s.push_str(&format!(" table {}", table_name(r.table)));
    }
    if let Some(p) = &r.proto {
        s.push_str(&format!(" proto {p}"));
    }
    if let Some(sc) = &r.scope {
        if sc != "global" {
            s.push_str(&format!(" scope {sc}"));
        }
    }
    if let Some(src) = r.prefsrc {
        s.push_str(&format!(" src {src}"));
    }
    if let Some(m) = r.metric {
        s.push_str(&format!(" metric {m}"));
    }
    if r.onlink {
        s.push_str(" onlink");
    }
    for nh in &r.nexthops {
        s.push_str(" nexthop");
        if let Some(g) = nh.gateway {
            s.push_str(&format!(" via {g}"));
        }
        if let Some(d) = &nh.dev {
            s.push_str(&format!(" dev {d}"));
        }
        s.push_str(&format!(" weight {}", nh.weight));
    }
}

/// `100: from all to 10.210.150.80/28 lookup 100`.
pub fn rule_text(r: &Rule) -> String {
    let mut s = format!("{}:", r.priority);
    if r.not {
        s.push_str(" not");
    }
    match r.from {
        Some(f) => s.push_str(&format!(" from {f}")),
        None => s.push_str(" from all"),
    }
    if let Some(t) = r.to {
        s.push_str(&format!(" to {t}"));
    }
    if let Some((m, k)) = r.fwmark {
        if k == u32::MAX {
            s.push_str(&format!(" fwmark {m:#x}"));
        } else {
            s.push_str(&format!(" fwmark {m:#x}/{k:#x}"));
        }
    }
    if let Some(i) = &r.iif {
        s.push_str(&format!(" iif {i}"));
    }
    if let Some(o) = &r.oif {
        s.push_str(&format!(" oif {o}"));
    }
    if let Some(t) = r.tos {
        s.push_str(&format!(" tos {t:#x}"));
    }
    if let Some(p) = &r.ipproto {
        s.push_str(&format!(" ipproto {p}"));
    }
    for (name, range) in [("sport", r.sport), ("dport", r.dport)] {
        match range {
            Some((a, b)) if a == b => s.push_str(&format!(" {name} {a}")),
            Some((a, b)) => s.push_str(&format!(" {name} {a}-{b}")),
            None => {}
        }
    }
    match &r.action {
        RuleAction::Lookup(t) => s.push_str(&format!(" lookup {}", table_name(*t))),
        RuleAction::Goto(t) => s.push_str(&format!(" goto {t}")),
        RuleAction::Blackhole => s.push_str(" blackhole"),
        RuleAction::Unreachable => s.push_str(" unreachable"),
        RuleAction::Prohibit => s.push_str(" prohibit"),
        RuleAction::Nop => s.push_str(" nop"),
    }
    if let Some(p) = r.suppress_prefixlength {
        s.push_str(&format!(" suppress_prefixlength {p}"));
    }
    s
}

/// A change as the command an operator types (`ip route add 10.0.0.1/32 via 10.1.0.1`,
/// `ip rule add to 10.0.0.0/24 lookup 100 priority 1100`, `sysctl -w key=value`), without the
/// node prefix. The inverse of ingest's `--what-if` reader.
pub fn change_command(c: &Change) -> String {
    let op = match c.op {
        Op::Add => "add",
        Op::Del => "del",
        Op::Replace => "replace",
    };
    match &c.item {
        Item::Sysctl(k, v) => format!("sysctl -w {k}={v}"),
        Item::Route(r) => format!("ip route {op} {}", route_command(r)),
        Item::Rule(r) => format!("ip rule {op} {}", rule_command(r)),
    }
}

/// A route's arguments in the order `ip route add` is usually written: destination (with
/// its length), gateway, device, table, then the rest.
fn route_command(r: &Route) -> String {
    let mut s = kind_prefix(r);
    if r.dst.prefix_len() == 0 {
        s.push_str("default");
    } else {
        s.push_str(&r.dst.to_string());
    }
    push_attrs(&mut s, r, true);
    s
}

/// A rule's selectors, action and priority as `ip rule add` takes them.
fn rule_command(r: &Rule) -> String {
    let text = rule_text(r);
    // rule_text prints `PRIORITY:\tfrom all ...`; the command puts the priority last.
    let body = text
        .split_once(':')
        .filter(|(p, _)| p.chars().all(|c| c.is_ascii_digit()))
        .map(|(_, rest)| rest.trim().to_string())
        .unwrap_or(text.clone());
    let body = body.strip_prefix("from all ").unwrap_or(&body).to_string();
    // `ip rule del` without an action (table 0, unspecified).
    let body = if r.action == RuleAction::Lookup(0) {
        match body.strip_suffix("lookup 0").map(str::trim_end) {
            Some("") => "from all".to_string(),
            Some(b) => b.to_string(),
            None => body,
        }
    } else {
        body
    };
    if r.priority == u32::MAX {
        body
    } else {
        format!("{body} priority {}", r.priority)
    }
}
