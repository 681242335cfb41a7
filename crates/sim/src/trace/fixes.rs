//! Fixes for failing verdicts, each verified by re-running the trace with it applied.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kubepath_model::Model;

use ipnet::IpNet;

use super::whatif::{self, Change, Item, Op};
use super::{fabric, Branch, Fix, TraceRequest, TraceResult, Verdict};

/// Proposes fixes for the failing branches of `result` (computed on `model`), verifies each by
/// re-running the whole trace (there and back) with it applied, completes the ones that only
/// move the failure elsewhere, and orders them.
pub fn propose(model: &Model, req: &TraceRequest, result: &TraceResult) -> Vec<Fix> {
    let mut fixes = propose_only(model, req, result);
    complete(model, req, &mut fixes);
    order(&mut fixes);
    fixes
}

/// The candidate fixes, each verified on its own.
fn propose_only(model: &Model, req: &TraceRequest, result: &TraceResult) -> Vec<Fix> {
    let mut fixes = Vec::new();
    let failing: Vec<_> = result
        .branches
        .iter()
        .filter(|b| b.verdict != Verdict::Delivered)
        .collect();

    // A pod's own packets dropped on its node (engine::podside) have their own fix; the
    // route back to the client and the arrival interface's rp_filter do not concern them.
    let client_side: Vec<&Branch> = failing
        .iter()
        .copied()
        .filter(|b| {
            b.failing_hop()
                .is_none_or(|h| h.stage != super::engine::POD_EGRESS)
        })
        .collect();
    route_back_fixes(model, req, result, &client_side, &mut fixes);
    rp_filter_fix(model, req, result, &client_side, &mut fixes);
    pod_side_rp_fix(model, req, result, &mut fixes);
    forwarding_fix(model, req, &client_side, &mut fixes);
    pod_forwarding_fix(model, req, &failing, &mut fixes);
    advice(&failing, &mut fixes);
    fixes
}

/// Return-path failures (and strict rp_filter): a route back through the gateway the request came from, on every node that receives the traffic; and a persistent policy-routing variant.
fn route_back_fixes(
    model: &Model,
    req: &TraceRequest,
    result: &TraceResult,
    failing: &[&Branch],
    fixes: &mut Vec<Fix>,
) {
    let client = req.client;
    // Return-path failures: route the reply back through the VRF the request came from.
    let ret_fail: Vec<_> = failing
        .iter()
        .filter(|b| {
            // Strict rp_filter drops a SYN whose route back leaves by another interface: the
            // same route back through the request's gateway satisfies it too.
            matches!(
                b.verdict,
                Verdict::AsymmetricReturn | Verdict::NoRoute | Verdict::RpFilter
            )
        })
        .collect();
    if ret_fail.is_empty() {
        return;
    }
    let mut nodes: BTreeSet<String> = BTreeSet::new();
    for b in &ret_fail {
        for n in &b.nodes {
            nodes.insert(n.clone());
        }
    }
    let gws = reply_gateways(model, result, &nodes);
    let chosen = one_gateway_per_iface(model, &gws);
    let node_list: Vec<String> = nodes.iter().cloned().collect();
    let mut taken_tables: BTreeSet<u32> = BTreeSet::new();
    for (gw, iface) in &chosen {
        let item = whatif::route(IpNet::from(client), *gw, None, None);
        let (cmd, changes) = on_nodes(&node_list, std::slice::from_ref(&item));
        fixes.push(verify(
            model,
            req,
            Fix {
                description: format!(
                    "Route replies to {client} back through the VRF the request came from: a host route via {gw} (the gateway on {iface}) on every node that receives the traffic. Not persistent: it is lost at reboot."
                ),
                commands: cmd,
                nodes: node_list.clone(),
                verified: false,
                verification: String::new(),
                changes,
                delivered: None,
                then_fails: None,
            },
        ));
        let fix = policy_routing_fix(model, req, &node_list, *gw, iface, &mut taken_tables);
        fixes.push(verify(model, req, fix));
    }
}

/// The gateways replies can be routed back through, with the ingress interface of each: the
/// entry router interface on a node's ingress subnet (its anycast address when it has one,
/// so either leaf can take the reply), for every node of `nodes`.
fn reply_gateways(
    model: &Model,
    result: &TraceResult,
    nodes: &BTreeSet<String>,
) -> BTreeSet<(IpAddr, String)> {
    let mut gws: BTreeSet<(IpAddr, String)> = BTreeSet::new();
    for n in nodes {
        let Some(node) = model.nodes.get(n) else {
            continue;
        };
        for stage in result
            .node_stages
            .iter()
            .filter(|s| s.members.iter().any(|(m, _)| m == n))
        {
            let Some(iface) = node.interface(&stage.in_iface) else {
                continue;
            };
            for a in &iface.addresses {
                let net = a.address.trunc();
                for r in model.routers.values() {
                    for ri in &r.interfaces {
                        let on_subnet = |x: &ipnet::IpNet| net.contains(&x.addr());
                        let gw = ri
                            .anycast_addresses
                            .iter()
                            .find(|x| on_subnet(x))
                            .or_else(|| ri.addresses.iter().find(|x| on_subnet(x)));
                        if let Some(g) = gw {
                            if result
                                .entries
                                .iter()
                                .any(|e| e.vrf == fabric::iface_vrf(ri))
                            {
                                gws.insert((g.addr(), stage.in_iface.clone()));
                            }
                        }
                    }
                }
            }
        }
    }
    gws
}

/// One gateway per ingress interface (anycast preferred: it sorts first only by chance, so
/// pick explicitly).
fn one_gateway_per_iface(model: &Model, gws: &BTreeSet<(IpAddr, String)>) -> Vec<(IpAddr, String)> {
    let mut chosen: Vec<(IpAddr, String)> = Vec::new();
    for (g, i) in gws {
        if chosen.iter().any(|(_, ci)| ci == i) {
            continue;
        }
        let anycast = gws
            .iter()
            .filter(|(_, ii)| ii == i)
            .find(|(gg, _)| {
                model.routers.values().any(|r| {
                    r.interfaces
                        .iter()
                        .any(|ri| ri.anycast_addresses.iter().any(|x| x.addr() == *gg))
                })
            })
            .map(|(gg, _)| *gg)
            .unwrap_or(*g);
        chosen.push((anycast, i.clone()));
    }
    chosen
}

/// A persistent, wider alternative to the host route via `gw` (on `iface`): policy routing
/// for the client's whole prefix, in a table (not in `taken_tables`, to which it is added)
/// and at priorities no node uses yet.
fn policy_routing_fix(
    model: &Model,
    req: &TraceRequest,
    node_list: &[String],
    gw: IpAddr,
    iface: &str,
    taken_tables: &mut BTreeSet<u32>,
) -> Fix {
    let client = req.client;
    let prefix = model
        .manifest
        .clients
        .iter()
        .flat_map(|c| c.prefixes.iter())
        .filter(|p| p.contains(&client))
        .max_by_key(|p| p.prefix_len())
        .map(|p| p.trunc())
        .unwrap_or_else(|| IpNet::from(client));
    // A table and priorities no node uses yet (table 100 and priority 1100 are
    // common choices: reusing one would mix this fix into existing policy routing).
    let table = free_table(model, node_list, 100, taken_tables);
    taken_tables.insert(table);
    let default = IpNet::new(client, 0).map(|n| n.trunc()).unwrap_or(prefix);
    // Routes of the nodes' main table strictly inside the prefix (their own subnets,
    // pod routes, a host route already there): the rule `to PREFIX` would take
    // precedence over them, so a rule before it keeps them in force (`lookup main
    // suppress_prefixlength LEN` ignores main's routes of LEN bits or fewer: the
    // default route, fib_rules.c fib4_rule_suppress).
    let inner: BTreeSet<IpNet> = node_list
        .iter()
        .filter_map(|n| model.nodes.get(n))
        .flat_map(|n| n.routes.iter())
        .filter(|r| {
            r.table == 254
                && r.dst.prefix_len() > prefix.prefix_len()
                && prefix.contains(&r.dst.addr())
        })
        .map(|r| r.dst)
        .collect();
    let need_suppress = !inner.is_empty();
    // Before any rule that would take the replies to the client first (`to` a
    // prefix holding it, or a catch-all), else the fix is shadowed.
    let shadow = shadowing_rule(model, node_list, client);
    let priority = match &shadow {
        Some((p, _)) if *p <= 1000 + table => {
            free_priority_below(model, node_list, *p, need_suppress)
        }
        _ => free_priority(model, node_list, 1000 + table, need_suppress),
    };
    let mut items = vec![whatif::route(default, gw, Some(iface), Some(table))];
    if need_suppress {
        items.push(whatif::rule_to_main_suppress(
            prefix,
            u32::from(prefix.prefix_len()),
            priority - 1,
        ));
    }
    items.push(whatif::rule_to(prefix, table, priority));
    let before = match &shadow {
        Some((p, text)) if *p > priority => format!(
            " The rule comes before rule {p} (`{text}`), which would otherwise take the replies first."
        ),
        _ => String::new(),
    };
    let keep = if need_suppress {
        let list: Vec<String> = inner.iter().take(4).map(|p| p.to_string()).collect();
        format!(
            " The first rule keeps the nodes' more specific routes inside {prefix} ({}{}) in force for their own traffic.",
            list.join(", "),
            if inner.len() > 4 { ", ..." } else { "" }
        )
    } else {
        String::new()
    };
    let (cmds, changes) = on_nodes(node_list, &items);
    Fix {
        description: format!(
            "Persistent alternative for the whole client prefix {prefix}: policy routing that sends replies to it out of {iface} via {gw}; put these lines in the node's network configuration (e.g. a route and rule file for {iface}) so they survive reboots. A rule matching the incoming interface or `from <service IP>` would not work: replies are routed with iif = the pod side and source = the pod IP.{keep}{before}"
        ),
        commands: cmds,
        nodes: node_list.to_vec(),
        verified: false,
        verification: String::new(),
        changes,
        delivered: None,
        then_fails: None,
    }
}

/// rp_filter drops: loosen it on the interfaces the traffic arrives on.
fn rp_filter_fix(
    model: &Model,
    req: &TraceRequest,
    result: &TraceResult,
    failing: &[&Branch],
    fixes: &mut Vec<Fix>,
) {
    // rp_filter drops: loosen it on the ingress interface.
    let rp: Vec<_> = failing
        .iter()
        .filter(|b| b.verdict == Verdict::RpFilter)
        .collect();
    if !rp.is_empty() {
        let mut nodes: BTreeSet<String> = BTreeSet::new();
        let mut ifaces: BTreeSet<String> = BTreeSet::new();
        for b in &rp {
            nodes.extend(b.nodes.iter().cloned());
        }
        for s in &result.node_stages {
            if s.members.iter().any(|(m, _)| nodes.contains(m)) {
                ifaces.insert(s.in_iface.clone());
            }
        }
        let mut keys: Vec<String> = ifaces
            .iter()
            .map(|i| format!("net.ipv4.conf.{i}.rp_filter"))
            .collect();
        // The kernel uses max(all, iface): a strict `all` must be lowered too.
        let all_strict = nodes.iter().any(|n| {
            model
                .nodes
                .get(n)
                .and_then(|x| x.sysctl("net.ipv4.conf.all.rp_filter"))
                .is_some_and(|s| s.value.trim() == "1")
        });
        if all_strict {
            keys.push("net.ipv4.conf.all.rp_filter".into());
        }
        let node_list: Vec<String> = nodes.into_iter().collect();
        let items: Vec<Item> = keys
            .iter()
            .map(|k| Item::Sysctl(k.clone(), "2".into()))
            .collect();
        let (cmds, changes) = on_nodes(&node_list, &items);
        fixes.push(verify(
            model,
            req,
            Fix {
                description: "Loosen reverse-path filtering on the interfaces the traffic arrives on (loose mode accepts a source reachable by any interface). The kernel applies max(conf.all, conf.<iface>).".into(),
                commands: cmds,
                nodes: node_list,
                verified: false,
                verification: String::new(),
                changes,
                delivered: None,
                then_fails: None,
            },
        ));
    }
}

/// A pod's own packets dropped by the reverse-path check on its node (see
/// `engine::podside`): its host-side veth has no IPv4 address, so loose mode rejects them as
/// strict does, and only rp_filter 0 on the veth (and `all`, the kernel takes the maximum)
/// lets them through. One fix per node, since the veth names differ.
fn pod_side_rp_fix(model: &Model, req: &TraceRequest, result: &TraceResult, fixes: &mut Vec<Fix>) {
    let mut per_node: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (node, veth) in &result.pod_side_rp {
        per_node.entry(node).or_default().push(veth);
    }
    for (node, veths) in per_node {
        // `all` only when it is not already 0 (the kernel applies max(all, veth)).
        let all_off = model
            .nodes
            .get(node)
            .and_then(|n| n.sysctl("net.ipv4.conf.all.rp_filter"))
            .is_some_and(|s| s.value.trim() == "0");
        let mut keys = Vec::new();
        if !all_off {
            keys.push("net.ipv4.conf.all.rp_filter".to_string());
        }
        keys.extend(veths.iter().map(|v| format!("net.ipv4.conf.{v}.rp_filter")));
        let settings: Vec<(String, &str)> = keys.into_iter().map(|k| (k, "0")).collect();
        fixes.push(sysctl_fix_on(
            (model, req),
            node,
            &settings,
            format!(
                "The lasting fix is to remove the cause on {node}: the policy rule or route (named in the failure above) that sends the route back to the pod somewhere other than its veth. As an immediate workaround, switch reverse-path filtering off for the pods' interfaces ({}): a veth without an IPv4 address fails loose mode as it fails strict, and the kernel applies max(conf.all, conf.<veth>). Calico's Felix writes rp_filter=1 on every cali* veth when it configures it (a new pod, a Felix restart), so the workaround does not last.",
                veths.join(", ")
            ),
        ));
    }
}

/// Forwarding switched off on the nodes: switch it on.
fn forwarding_fix(model: &Model, req: &TraceRequest, failing: &[&Branch], fixes: &mut Vec<Fix>) {
    // Forwarding switched off on the nodes: switch it on (the kernel copies ip_forward to every
    // device's own setting).
    let fwd_off: BTreeSet<String> = failing
        .iter()
        .filter(|b| b.verdict == Verdict::Dropped && b.reason.contains("forwarding is off"))
        .flat_map(|b| b.nodes.iter().cloned())
        .collect();
    if !fwd_off.is_empty() {
        let node_list: Vec<String> = fwd_off.into_iter().collect();
        let (cmds, changes) = on_nodes(
            &node_list,
            &[Item::Sysctl("net.ipv4.ip_forward".into(), "1".into())],
        );
        fixes.push(verify(
            model,
            req,
            Fix {
                description: "Switch IP forwarding on: a node that receives traffic for Services must forward it to the pods (kube-proxy and every CNI need net.ipv4.ip_forward = 1); make it persistent in /etc/sysctl.d/.".into(),
                commands: cmds,
                nodes: node_list,
                verified: false,
                verification: String::new(),
                changes,
                delivered: None,
                then_fails: None,
            },
        ));
    }
}

/// A pod's veth with forwarding off (engine::podside): switch it on for that veth; writing
/// ip_forward, already 1, would not reach it.
fn pod_forwarding_fix(
    model: &Model,
    req: &TraceRequest,
    failing: &[&Branch],
    fixes: &mut Vec<Fix>,
) {
    let mut per_node: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in failing {
        let Some(h) = b
            .failing_hop()
            .filter(|h| h.stage == super::engine::POD_EGRESS)
        else {
            continue;
        };
        // "net.ipv4.conf.<veth>.forwarding = 0" in the hop's text.
        if let Some(key) = h
            .text
            .split(['(', ')', ' '])
            .find(|w| w.starts_with("net.ipv4.conf.") && w.ends_with(".forwarding"))
        {
            if h.text.contains(&format!("{key} = 0")) {
                per_node
                    .entry(h.at.clone())
                    .or_default()
                    .insert(key.to_string());
            }
        }
    }
    for (node, keys) in per_node {
        let settings: Vec<(String, &str)> = keys.into_iter().map(|k| (k, "1")).collect();
        fixes.push(sysctl_fix_on(
            (model, req),
            &node,
            &settings,
            format!(
                "Switch forwarding on for the pods' interfaces on {node}: a packet from a pod is routed only when its veth forwards, and proxy ARP answers only then. Writing net.ipv4.ip_forward=1 again does not reach a device when the value is already 1."
            ),
        ));
    }
}

/// Failures a routing change cannot fix: explained, not verified.
fn advice(failing: &[&Branch], fixes: &mut Vec<Fix>) {
    // Failures a routing change cannot fix: explained, not verified.
    for b in failing.iter().filter(|b| {
        let pod_side = b
            .failing_hop()
            .is_some_and(|h| h.stage == super::engine::POD_EGRESS);
        (matches!(
            b.verdict,
            Verdict::NoEndpoints | Verdict::Dropped | Verdict::Unknown | Verdict::RoutingLoop
        ) || pod_side)
            && !b.reason.contains("forwarding is off")
            && !b.reason.contains(".forwarding = 0")
    }) {
        let pod_side = b
            .failing_hop()
            .filter(|h| h.stage == super::engine::POD_EGRESS);
        let description = match (b.verdict, pod_side) {
            // Not missing data: kubepath itself cannot evaluate the regex.
            (Verdict::Unknown, _) if b.reason.contains("kubepath's regex engine") => format!(
                "Check by hand whether ingress-nginx's PCRE matches the request (kubepath cannot evaluate this regex): {}",
                b.reason
            ),
            (Verdict::Unknown, _) => format!("Collect what the snapshot lacks: {}", b.reason),
            (_, Some(h)) if b.verdict != Verdict::RpFilter => format!(
                "A pod's own packets do not leave its node {}: correct the node's route, rule or setting named here: {}",
                h.at,
                // Without the "<which packet>: " head, so one cause gives one entry.
                h.text.split_once(": ").map(|(_, t)| t).unwrap_or(&h.text)
            ),
            (_, Some(_)) => continue, // its own fix (rp_filter on the veth)
            (v, None) => match v {
            Verdict::NoEndpoints => format!(
                "The Service has no ready endpoints: check that its selector matches running, ready pods in its namespace (kubectl get endpoints), or scale the workload up. ({})",
                b.reason
            ),
            Verdict::Dropped => format!("A netfilter rule drops the traffic; review it: {}", b.reason),
            Verdict::RoutingLoop => format!(
                "Break the routing loop: give one router on the cycle a route that leads out of it (or, for a service address, make sure the nodes it is sent to serve it). ({})",
                b.reason
            ),
            _ => format!("Collect what the snapshot lacks: {}", b.reason),
            },
        };
        if fixes.iter().any(|f: &Fix| f.description == description) {
            continue;
        }
        fixes.push(Fix {
            description,
            commands: Vec::new(),
            nodes: pod_side
                .map(|h| vec![h.at.clone()])
                .unwrap_or_else(|| b.nodes.clone()),
            verified: false,
            verification: "not verifiable by re-simulation".into(),
            changes: Vec::new(),
            delivered: None,
            then_fails: None,
        });
    }
}

fn verify(model: &Model, req: &TraceRequest, mut fix: Fix) -> Fix {
    let (r, notes) = super::memo::run_changed(model, &fix.changes, req);
    let delivered = r.delivered();
    fix.verified = r.all_delivered() && notes.is_empty();
    fix.delivered = Some(delivered);
    let mut v = format!(
        "re-simulated with the fix: delivered {:.1}%",
        delivered * 100.0
    );
    for (verdict, p) in &r.verdicts {
        if *verdict != Verdict::Delivered && *p > 1e-12 {
            v.push_str(&format!(", {} {:.1}%", verdict.name(), p * 100.0));
        }
    }
    if !notes.is_empty() {
        v.push_str(&format!(" ({})", notes.join("; ")));
    }
    if !fix.verified {
        // Where the traffic fails once this fix is in: the largest failing branch.
        if let Some(b) = r.branches.iter().find(|b| b.verdict != Verdict::Delivered) {
            let at = b
                .failing_hop()
                .map(|h| h.at.clone())
                .filter(|a| !a.is_empty());
            fix.then_fails = Some(format!(
                "then fails with {}{}: {}",
                b.verdict.name(),
                at.map(|a| format!(" at {a}")).unwrap_or_default(),
                b.reason
            ));
        }
    }
    fix.verification = v;
    fix
}

/// A fix that moves the failure elsewhere is completed, where possible, by the fix the trace
/// proposes for the new failure: offered as one combined fix when that combination delivers
/// everything and the completing fix alone does not.
fn complete(model: &Model, req: &TraceRequest, fixes: &mut Vec<Fix>) {
    let partial: Vec<Fix> = fixes
        .iter()
        .filter(|f| !f.verified && !f.changes.is_empty())
        .cloned()
        .collect();
    for a in partial {
        let applied = super::memo::applied(model, &a.changes);
        let r = super::memo::run_applied(model, &a.changes, &applied, req);
        if r.all_delivered() {
            continue;
        }
        for b in propose_only(&applied.model, req, &r) {
            if b.changes.is_empty() {
                continue;
            }
            let alone_ok = fixes
                .iter()
                .any(|f| f.verified && f.commands == b.commands && f.nodes == b.nodes);
            if alone_ok {
                continue;
            }
            let mut changes = a.changes.clone();
            changes.extend(b.changes.iter().cloned());
            let mut commands = a.commands.clone();
            commands.extend(b.commands.iter().cloned());
            let mut nodes: Vec<String> = a.nodes.iter().chain(b.nodes.iter()).cloned().collect();
            nodes.sort();
            nodes.dedup();
            let combined = verify(
                model,
                req,
                Fix {
                    description: format!("{} Together with: {}", a.description, b.description),
                    commands,
                    nodes,
                    verified: false,
                    verification: String::new(),
                    changes,
                    delivered: None,
                    then_fails: None,
                },
            );
            if combined.verified && !fixes.iter().any(|f| f.commands == combined.commands) {
                fixes.push(combined);
            }
        }
    }
}

/// Orders fixes: the most traffic delivered first, then the fewest nodes touched; fixes that
/// cannot be checked by re-simulation last. Stable, so equal fixes keep their order.
fn order(fixes: &mut [Fix]) {
    fixes.sort_by(|a, b| {
        let da = a.delivered.unwrap_or(-1.0);
        let db = b.delivered.unwrap_or(-1.0);
        db.partial_cmp(&da)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.nodes.len().cmp(&b.nodes.len()))
    });
}

/// A fix of `sysctl -w KEY=VALUE` lines on one node, verified by re-simulation.
fn sysctl_fix_on(
    (model, req): (&Model, &TraceRequest),
    node: &str,
    settings: &[(String, &str)],
    description: String,
) -> Fix {
    let items: Vec<Item> = settings
        .iter()
        .map(|(k, v)| Item::Sysctl(k.clone(), v.to_string()))
        .collect();
    let nodes = vec![node.to_string()];
    let (commands, changes) = on_nodes(&nodes, &items);
    verify(
        model,
        req,
        Fix {
            description,
            commands,
            nodes,
            verified: false,
            verification: String::new(),
            changes,
            delivered: None,
            then_fails: None,
        },
    )
}

/// The lowest-priority-number rule of the nodes (other than the local table's) that a reply to
/// `client` would match before the main table: `to` a prefix holding the client, or a
/// catch-all (`from all lookup T`). With its `ip rule` text.
fn shadowing_rule(model: &Model, nodes: &[String], client: IpAddr) -> Option<(u32, String)> {
    nodes
        .iter()
        .filter_map(|n| model.nodes.get(n))
        .flat_map(|n| n.rules.iter())
        .filter(|r| {
            r.priority > 0
                && r.priority < 32766
                && !r.not
                && r.from.is_none()
                && r.iif.is_none()
                && r.oif.is_none()
                && r.fwmark.is_none()
                && r.tos.is_none()
                && r.ipproto.is_none()
                && r.sport.is_none()
                && r.dport.is_none()
                && r.uidrange.is_none()
                && !r.l3mdev
                && r.to.is_none_or(|t| t.contains(&client))
                && !matches!(r.action, kubepath_model::net::RuleAction::Lookup(255))
        })
        .min_by_key(|r| r.priority)
        .map(|r| {
            let t = super::text::rule_text(r);
            (r.priority, t.replace('\t', " ").trim().to_string())
        })
}

/// The highest rule priority below `limit` that no node of `nodes` uses (with `pair`, the one
/// below it free too).
fn free_priority_below(model: &Model, nodes: &[String], limit: u32, pair: bool) -> u32 {
    let used: BTreeSet<u32> = nodes
        .iter()
        .filter_map(|n| model.nodes.get(n))
        .flat_map(|n| n.rules.iter().map(|r| r.priority))
        .collect();
    (2..limit)
        .rev()
        .find(|p| !(used.contains(p) || (pair && used.contains(&(p - 1)))))
        .unwrap_or(limit.saturating_sub(1))
}

/// The first routing table from `from` up that no node of `nodes` has a route in or a rule
/// looking up, and not in `taken`; never a reserved one (253-255: default, main, local).
fn free_table(model: &Model, nodes: &[String], from: u32, taken: &BTreeSet<u32>) -> u32 {
    let used: BTreeSet<u32> = nodes
        .iter()
        .filter_map(|n| model.nodes.get(n))
        .flat_map(|n| {
            n.routes
                .iter()
                .map(|r| r.table)
                .chain(n.rules.iter().filter_map(|r| match r.action {
                    kubepath_model::net::RuleAction::Lookup(t) => Some(t),
                    _ => None,
                }))
        })
        .collect();
    (from..u32::MAX)
        .find(|t| !used.contains(t) && !taken.contains(t) && !(253..=255).contains(t))
        .unwrap_or(from)
}

/// A rule priority from `from` up that no node of `nodes` uses (with `pair`, the one below it
/// is free too, for a rule that must come first), below the main table's 32766.
fn free_priority(model: &Model, nodes: &[String], from: u32, pair: bool) -> u32 {
    let used: BTreeSet<u32> = nodes
        .iter()
        .filter_map(|n| model.nodes.get(n))
        .flat_map(|n| n.rules.iter().map(|r| r.priority))
        .collect();
    (from.max(2)..32766)
        .find(|p| !(used.contains(p) || (pair && used.contains(&(p - 1)))))
        .unwrap_or(from)
}

/// The same changes on every node of `nodes`: the commands (rendered once, as an operator
/// types them) and the changes to re-simulate.
fn on_nodes(nodes: &[String], items: &[Item]) -> (Vec<String>, Vec<Change>) {
    let cmds = items
        .iter()
        .map(|i| {
            super::text::change_command(&Change {
                text: String::new(),
                node: None,
                op: Op::Add,
                item: i.clone(),
            })
        })
        .collect();
    let changes = nodes
        .iter()
        .flat_map(|n| items.iter().map(|i| whatif::on_node(n, Op::Add, i.clone())))
        .collect();
    (cmds, changes)
}
