//! Applying changes (`--what-if`, and fixes being verified) to a copy of the model: `ip route
//! add|del|replace`, `ip rule add|del` and `sysctl -w`, on every node or on one node.
//!
//! The changes are [`kubepath_model::change::Change`] values: the binary parses `--what-if`
//! text with ingest's iproute2 grammar (the one that reads the snapshot's `ip route`/`ip rule`
//! outputs), fixes build them directly. What the kernel would refuse (a gateway on no
//! connected subnet without `onlink`) is refused here too, per node.

use kubepath_model::net::{Family, NodeNet, Route, RouteType, RuleAction, Sysctl};
use kubepath_model::{Model, SourceRef};

pub use kubepath_model::change::{Change, Item, Op};

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
            // The kernel propagates only a change: devinet_sysctl_forward calls
            // inet_forward_change when `*valp != val`, so writing the value already in force
            // leaves every device's own setting as it is.
            let current = ["net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"]
                .iter()
                .find_map(|x| node.sysctls.get(*x))
                .map(|s| s.value.trim().to_string());
            let changes_value = current.as_deref() != Some(v.trim());
            if (k == "net.ipv4.ip_forward" || k == "net.ipv4.conf.all.forwarding") && changes_value
            {
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
                    // The kernel's rule lookup for deletion (net/core/fib_rules.c rule_find):
                    // what the command does not give matches any rule (`from all` gives no
                    // source); `lookup 0` is the action iproute2 leaves unset.
                    let any = |given: bool, same: bool| !given || same;
                    let pos = node.rules.iter().position(|r| {
                        r.family == rule.family
                            && any(rule.priority != u32::MAX, r.priority == rule.priority)
                            && any(rule.from.is_some(), r.from == rule.from)
                            && any(rule.to.is_some(), r.to == rule.to)
                            && any(rule.iif.is_some(), r.iif == rule.iif)
                            && any(rule.oif.is_some(), r.oif == rule.oif)
                            && any(rule.fwmark.is_some(), r.fwmark == rule.fwmark)
                            && any(rule.tos.is_some(), r.tos == rule.tos)
                            && any(rule.ipproto.is_some(), r.ipproto == rule.ipproto)
                            && any(rule.sport.is_some(), r.sport == rule.sport)
                            && any(rule.dport.is_some(), r.dport == rule.dport)
                            && any(
                                rule.action != RuleAction::Lookup(0),
                                r.action == rule.action,
                            )
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
                        dev,
                        // iproute2 marks routes added by hand `proto boot`.
                        proto: spec.proto.clone().or(Some("boot".into())),
                        source: source.clone(),
                        ..spec.clone()
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

/// A change on one node, its text rendered as the command an operator types.
pub fn on_node(node: &str, op: Op, item: Item) -> Change {
    let mut c = Change {
        text: String::new(),
        node: Some(node.to_string()),
        op,
        item,
    };
    c.text = super::text::change_command(&c);
    c
}

/// `ip route add DST via GW [dev DEV] [table T]` as a route value (table main when `None`).
pub fn route(
    dst: ipnet::IpNet,
    gateway: std::net::IpAddr,
    dev: Option<&str>,
    table: Option<u32>,
) -> Item {
    let mut r = Route::new(dst.trunc(), SourceRef::new("fix", 0));
    r.table = table.unwrap_or(254);
    r.gateway = Some(gateway);
    r.dev = dev.map(str::to_string);
    Item::Route(r)
}

/// `ip rule add to PREFIX lookup main suppress_prefixlength LEN priority PRIO` as a rule
/// value: main's routes for PREFIX except those of LEN bits or fewer.
pub fn rule_to_main_suppress(prefix: ipnet::IpNet, len: u32, priority: u32) -> Item {
    let mut r = kubepath_model::net::Rule::new(
        Family::of(&prefix.addr()),
        priority,
        kubepath_model::net::RuleAction::Lookup(254),
        SourceRef::new("fix", 0),
    );
    r.to = Some(prefix.trunc());
    r.suppress_prefixlength = Some(len);
    Item::Rule(r)
}

/// `ip rule add to PREFIX lookup TABLE priority PRIO` as a rule value.
pub fn rule_to(prefix: ipnet::IpNet, table: u32, priority: u32) -> Item {
    let mut r = kubepath_model::net::Rule::new(
        Family::of(&prefix.addr()),
        priority,
        kubepath_model::net::RuleAction::Lookup(table),
        SourceRef::new("fix", 0),
    );
    r.to = Some(prefix.trunc());
    Item::Rule(r)
}
