//! Applying changes (`--what-if`, and fixes being verified) to a copy of the model: `ip route
//! add|del|replace`, `ip rule add|del` and `sysctl -w`, on every node or on one node.
//!
//! The changes are [`kubepath_model::change::Change`] values: the binary parses `--what-if`
//! text with ingest's iproute2 grammar (the one that reads the snapshot's `ip route`/`ip rule`
//! outputs), fixes build them directly. What the kernel would refuse (a gateway on no
//! connected subnet without `onlink`) is refused here too, per node, for a route's own
//! `via`/`dev` and for each `nexthop` group alike (issue #11); a device the node lacks is
//! refused as iproute2 refuses it.

use std::net::IpAddr;

use kubepath_model::net::{Family, NodeFact, NodeNet, Route, RouteType, Rule, RuleAction, Sysctl};
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
            apply_sysctl(node, k, v, source);
            Ok(())
        }
        Item::Rule(rule) => {
            let mut rule = rule.clone();
            rule.source = source.clone();
            match change.op {
                Op::Del => del_rule(node, &rule),
                Op::Add | Op::Replace => {
                    add_rule(node, rule);
                    Ok(())
                }
            }
        }
        Item::Route(spec) => {
            check_route_devices(node, spec)?;
            match change.op {
                Op::Del => del_route(node, spec),
                Op::Add | Op::Replace => add_route(node, change.op, spec, source),
            }
        }
    }
}

/// `sysctl -w k=v`: sets the key, and for the IPv4 forwarding switches every device's own
/// `forwarding` as the kernel does.
fn apply_sysctl(node: &mut NodeNet, k: &str, v: &str, source: &SourceRef) {
    let mut keys = vec![k.to_string()];
    // The kernel propagates only a change: devinet_sysctl_forward calls
    // inet_forward_change when `*valp != val`, so writing the value already in force
    // leaves every device's own setting as it is.
    let current = ["net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"]
        .iter()
        .find_map(|x| node.sysctls.get(*x))
        .map(|s| s.value.trim().to_string());
    let changes_value = current.as_deref() != Some(v.trim());
    if (k == "net.ipv4.ip_forward" || k == "net.ipv4.conf.all.forwarding") && changes_value {
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
                value: v.to_string(),
                source: source.clone(),
            },
        );
    }
}

/// `ip rule del`: removes the first rule the command matches.
fn del_rule(node: &mut NodeNet, rule: &Rule) -> Result<(), String> {
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
        None => Err("RTNETLINK answers: No such file or directory (no such rule)".into()),
    }
}

/// `ip rule add` / `replace`: appends the rule, with the kernel's default priority when the
/// command gave none.
fn add_rule(node: &mut NodeNet, mut rule: Rule) {
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
}

/// iproute2 turns every `dev NAME` into an index before it asks the kernel, and stops at a
/// name the node does not have (ll_name_to_index): checked where the node's `ip addr` output
/// lists every device.
fn check_route_devices(node: &NodeNet, spec: &Route) -> Result<(), String> {
    let devs_known = node.read.contains_key(&NodeFact::Addresses)
        && !node
            .partial
            .iter()
            .any(|(f, _, _)| *f == NodeFact::Addresses);
    for d in spec
        .dev
        .iter()
        .chain(spec.nexthops.iter().filter_map(|n| n.dev.as_ref()))
    {
        if devs_known && !node.interfaces.iter().any(|i| &i.name == d) {
            return Err(format!("Cannot find device \"{d}\""));
        }
    }
    Ok(())
}

/// `ip route del`: removes the first route of the table, prefix, metric and next hops given.
fn del_route(node: &mut NodeNet, spec: &Route) -> Result<(), String> {
    let pos = node.routes.iter().position(|r| {
        r.table == spec.table
            && r.dst == spec.dst
            && spec.metric.is_none_or(|m| r.metric.unwrap_or(0) == m)
            && nexthops_match(spec, r)
    });
    match pos {
        Some(p) => {
            node.routes.remove(p);
            Ok(())
        }
        None => Err("RTNETLINK answers: No such process (no such route)".into()),
    }
}

/// `ip route add` / `replace` (`op`): the route as the kernel would hold it, checked as
/// fib_create_info checks it, added or replacing the route of the same table, prefix and
/// metric.
fn add_route(node: &mut NodeNet, op: Op, spec: &Route, source: &SourceRef) -> Result<(), String> {
    let fam = Family::of(&spec.dst.addr());
    if matches!(
        &spec.kind,
        RouteType::Blackhole | RouteType::Unreachable | RouteType::Prohibit | RouteType::Throw
    ) && (spec.gateway.is_some() || spec.dev.is_some() || !spec.nexthops.is_empty())
    {
        // fib_create_info: blackhole, unreachable, prohibit and throw routes
        // lead nowhere.
        return Err(
            "Error: Gateway, device and multipath can not be specified for this route type.".into(),
        );
    }
    let mut route = Route {
        family: fam,
        // iproute2 marks routes added by hand `proto boot`.
        proto: spec.proto.clone().or(Some("boot".into())),
        source: source.clone(),
        ..spec.clone()
    };
    if spec.nexthops.is_empty() {
        route.dev = check_nexthop(
            node,
            spec.gateway,
            spec.dev.clone(),
            spec.onlink,
            &spec.kind,
        )?;
    } else {
        // fib_get_nhs: a gateway or device given besides the `nexthop` groups
        // must be the first group's.
        let first = &spec.nexthops[0];
        if spec.dev.is_some() && spec.dev != first.dev {
            return Err("Error: Nexthop device index does not match RTA_OIF.".into());
        }
        if spec.gateway.is_some() && spec.gateway != first.gateway {
            return Err("Error: Nexthop gateway does not match RTA_GATEWAY.".into());
        }
        // Each group is checked as a single-path route is (fib_check_nh).
        let mut nexthops = spec.nexthops.clone();
        for nh in &mut nexthops {
            nh.dev = check_nexthop(node, nh.gateway, nh.dev.clone(), nh.onlink, &spec.kind)?;
        }
        if let [nh] = nexthops.as_slice() {
            // One group is a single-path route: the kernel holds one fib_nh
            // and `ip route` prints it as `via GW dev D` (fib_dump_info).
            route.gateway = nh.gateway;
            route.dev = nh.dev.clone();
            route.onlink = nh.onlink;
            route.nexthops = Vec::new();
        } else {
            // Several: the multipath route `ip route` prints with `nexthop`
            // lines, as the snapshot's reader holds it. RTNH_F_ONLINK of the
            // command applies to no group (fib_get_nhs keeps only the
            // groups' own low flags).
            route.gateway = None;
            route.dev = None;
            route.onlink = false;
            route.nexthops = nexthops;
        }
    }
    let existing = node.routes.iter().position(|r| {
        r.table == route.table
            && r.dst == route.dst
            && r.metric.unwrap_or(0) == route.metric.unwrap_or(0)
    });
    match (op, existing) {
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

/// The kernel's check of one next hop (fib_check_nh) for a route of type `kind`: a gateway
/// must be on a connected subnet (of `dev`, when given) unless `onlink` is set; without a
/// gateway a unicast route needs a device. Returns the device the next hop leaves by.
fn check_nexthop(
    node: &NodeNet,
    gateway: Option<IpAddr>,
    dev: Option<String>,
    onlink: bool,
    kind: &RouteType,
) -> Result<Option<String>, String> {
    if let Some(gw) = gateway {
        let connected = node.interfaces.iter().find(|i| {
            dev.as_ref().is_none_or(|d| &i.name == d)
                && i.addresses.iter().any(|a| a.address.trunc().contains(&gw))
        });
        match connected {
            Some(i) => Ok(dev.or_else(|| Some(i.name.clone()))),
            None if onlink && dev.is_some() => Ok(dev),
            None => Err(format!(
                "Error: Nexthop has invalid gateway ({gw} is on no connected subnet of this node)"
            )),
        }
    } else if dev.is_none() && *kind == RouteType::Unicast {
        Err("Error: Device for nexthop is not up (no `via` and no `dev`)".into())
    } else {
        Ok(dev)
    }
}

/// The next hops of a route as the kernel holds them (the fib_info's fib_nh array): the
/// `nexthop` groups of a multipath route, else its own gateway and device.
fn route_nexthops(r: &Route) -> Vec<(Option<IpAddr>, Option<&str>)> {
    if r.nexthops.is_empty() {
        vec![(r.gateway, r.dev.as_deref())]
    } else {
        r.nexthops
            .iter()
            .map(|n| (n.gateway, n.dev.as_deref()))
            .collect()
    }
}

/// Whether `ip route del` with `spec`'s next hops deletes `r`, as fib_nh_match decides: a
/// gateway or device given on the command is compared with the route's first next hop only;
/// otherwise `nexthop` groups, when given, must cover every next hop of the route in order,
/// each group's device and gateway (where given) equal to that next hop's; weights are not
/// compared. Nothing given matches any route.
fn nexthops_match(spec: &Route, r: &Route) -> bool {
    let held = route_nexthops(r);
    if spec.gateway.is_some() || spec.dev.is_some() {
        let (gw, dev) = held[0];
        return spec.gateway.is_none_or(|g| gw == Some(g))
            && spec.dev.as_deref().is_none_or(|d| dev == Some(d));
    }
    if spec.nexthops.is_empty() {
        return true;
    }
    // A command with fewer groups than the route has next hops: -EINVAL, nothing deleted.
    held.len() <= spec.nexthops.len()
        && held.iter().zip(&spec.nexthops).all(|((gw, dev), n)| {
            n.dev.as_deref().is_none_or(|d| *dev == Some(d))
                && n.gateway.is_none_or(|g| *gw == Some(g))
        })
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
