//! Entry into the fabric: the client's entry routers, their lookups and the walk to the nodes.

use super::*;

/// Entry points for the client: the manifest's longest matching client prefix; else every
/// router VRF with a default route.
pub(super) fn entries(model: &Model, client: IpAddr) -> Result<Vec<Entry>, String> {
    let mut best: Option<(&kubepath_model::manifest::ClientEntry, u8)> = None;
    for c in &model.manifest.clients {
        for p in &c.prefixes {
            if p.contains(&client) && best.is_none_or(|(_, l)| p.prefix_len() > l) {
                best = Some((c, p.prefix_len()));
            }
        }
    }
    if let Some((c, _)) = best {
        if c.entry.is_empty() {
            // An empty `entry:` list names no way in: nothing to trace, and no verdict is
            // not an answer.
            return Err(format!(
                "the manifest's client entry {} ({}) covers {client} but lists no entry router: add `entry:` routers to kubepath.yaml",
                c.name.clone().unwrap_or_default(),
                c.source
            ));
        }
        let n = c.entry.len() as f64;
        return Ok(c
            .entry
            .iter()
            .map(|e| {
                let vrf = e
                    .vrf
                    .clone()
                    .unwrap_or_else(|| kubepath_model::net::DEFAULT_VRF.to_string());
                Entry {
                    router: e.router.clone(),
                    vrf,
                    probability: 1.0 / n,
                    why: format!(
                        "the manifest's client entry {} covers {client}",
                        c.name.clone().unwrap_or_default()
                    ),
                    source: Some(c.source.clone()),
                }
            })
            .collect());
    }
    if model.routers.is_empty() {
        return Err("the snapshot has no routers (routers/) and the manifest names no entry point for this client".into());
    }
    let mut out = Vec::new();
    let default4: IpNet = "0.0.0.0/0".parse().expect("valid");
    for (name, r) in &model.routers {
        for (vrf, v) in &r.vrfs {
            let has_default = v
                .bgp
                .iter()
                .any(|b| b.prefix == default4 && b.best().is_some())
                || v.rib.iter().any(|rr| rr.prefix == default4 && rr.selected);
            if has_default {
                out.push(Entry {
                    router: name.clone(),
                    vrf: vrf.clone(),
                    probability: 0.0,
                    why: format!("no manifest entry for {client}: assumed to enter at every router VRF with a default route"),
                    source: None,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "no manifest entry for {client} and no router VRF with a default route: add a `clients:` entry to kubepath.yaml"
        ));
    }
    let n = out.len() as f64;
    for e in &mut out {
        e.probability = 1.0 / n;
    }
    Ok(out)
}

pub(super) fn trace_address(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    acc: &mut Acc,
    addr: IpAddr,
    pa: f64,
    dns_hops: &[Hop],
) {
    let model = ctx.model;
    let client = ctx.req.client;
    // 2. Entry.
    let ents = match entries(model, client) {
        Ok(e) => e,
        Err(reason) => {
            let mut fwd = dns_hops.to_vec();
            fwd.push(Hop::new("entry", "", reason.clone()));
            acc.add(unknown_path(pa, reason, fwd));
            return;
        }
    };
    // 3. Fabric: per entry, the router's lookup; collect node arrivals.
    let mut arrivals: BTreeMap<Arrival, (f64, Vec<Hop>)> = BTreeMap::new();
    for e in &ents {
        if !result
            .entries
            .iter()
            .any(|x| x.router == e.router && x.vrf == e.vrf)
        {
            result.entries.push(e.clone());
        }
        let pe = pa * e.probability;
        let entry_hop = Hop::new(
            "entry",
            e.router.clone(),
            format!(
                "{client} enters the fabric at {} in VRF {} ({})",
                e.router, e.vrf, e.why
            ),
        )
        .src(e.source.clone())
        .p(e.probability);
        let mut lead = dns_hops.to_vec();
        lead.push(entry_hop);
        match fabric::lookup(model, &e.router, &e.vrf, addr) {
            Err(FabricError::NoRoute(reason)) => {
                let reason = match why_unannounced(ctx, addr) {
                    Some(why) => format!("{reason}: {why}"),
                    None => reason,
                };
                let mut fwd = lead;
                fwd.push(Hop::new("router", e.router.clone(), reason.clone()));
                acc.add(PathOut {
                    p: pe,
                    verdict: Verdict::NoRoute,
                    reason,
                    forward: fwd,
                    ret: Vec::new(),
                    node: None,
                    ingress_pod: None,
                    backends: Shares::default(),
                    http_status: None,
                });
            }
            Err(FabricError::Unknown(reason)) => {
                let mut fwd = lead;
                fwd.push(Hop::new("router", e.router.clone(), reason.clone()));
                acc.add(unknown_path(pe, reason, fwd));
            }
            Ok(mut fl) => {
                let at = AtEntry {
                    addr,
                    hops: lead,
                    p: pe,
                };
                follow_next_hops(ctx, acc, &mut arrivals, &at, &mut fl);
                for u in &fl.unused {
                    ctx.notes.insert(format!(
                        "{} VRF {}: path via {} not used: {} ({})",
                        fl.router, fl.vrf, u.next_hop, u.reason, u.source
                    ));
                }
                for note in &fl.notes {
                    ctx.notes.insert(note.clone());
                }
                result.fabric.push(fl);
            }
        }
    }
    // 4.. per arrival.
    for (arr, (p, fwd)) in arrivals {
        trace_arrival(ctx, result, acc, addr, &arr, p, fwd);
    }
}

/// The request at an entry router: its destination, the hops so far (DNS and the entry) and
/// the probability of this entry.
struct AtEntry {
    addr: IpAddr,
    hops: Vec<Hop>,
    p: f64,
}

/// The route an entry router's lookup matched, copied out of the lookup whose next hops are
/// filled in.
struct MatchedRoute {
    router: String,
    vrf: String,
    prefix: IpNet,
    via: String,
    /// How many next hops it has.
    next_hops: usize,
}

impl MatchedRoute {
    /// The `router` hop's text for next hop `nh` to `addr`.
    fn next_hop_text(&self, addr: IpAddr, nh: &fabric::NextHopOut) -> String {
        let n = self.next_hops;
        if nh.connected {
            format!(
                "{} matches {} ({}) in VRF {}: {addr} is on a connected subnet{}",
                addr,
                self.prefix,
                self.via,
                self.vrf,
                nh.iface
                    .as_deref()
                    .map(|i| format!(" of {i}"))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "{} matches {} ({}) in VRF {}: {} equal-cost next hop{}; this one: {}{}",
                addr,
                self.prefix,
                self.via,
                self.vrf,
                n,
                if n == 1 { "" } else { "s" },
                nh.addr,
                nh.iface
                    .as_deref()
                    .map(|i| format!(" via {i}"))
                    .unwrap_or_default()
            )
        }
    }

    /// Why next hop `nh` is where the trace of `addr` ends: no node or router of the snapshot
    /// holds it.
    fn unowned_reason(&self, ctx: &Ctx, addr: IpAddr, nh: &fabric::NextHopOut) -> String {
        // The packet leaves what the snapshot shows (an upstream router, a router without
        // outputs), or goes to a node whose addresses are not known (fifth review D10: the
        // wording named nodes only).
        let who = ctx.who_may_hold(nh.addr);
        let holders = ctx.model.uncounted_holders(nh.addr);
        let mut reason = if holders.is_empty() {
            format!(
                "next hop {} of {} ({} {}) is not an address of any node or router in the snapshot",
                nh.addr, self.router, self.via, self.prefix
            )
        } else {
            // Review 8: held on kube-ipvs0 only, it is in the snapshot, but not on the link.
            let held: Vec<String> = holders
                .iter()
                .map(|(node, iface)| format!("{node} holds it only on {iface}"))
                .collect();
            format!(
                "next hop {} of {} ({} {}) is no node's or router's address on the link: {} (kube-proxy's IPVS dummy device for Service addresses; whether that node answers the router's ARP for it depends on its arp_ignore, which decides where the packet goes)",
                nh.addr,
                self.router,
                self.via,
                self.prefix,
                held.join(", ")
            )
        };
        if who.is_none() && holders.is_empty() {
            reason.push_str(
                ": the packet leaves what the snapshot shows there (an upstream router, or one without outputs in routers/), so where it ends is unknown",
            );
        }
        if let Some(why) = why_unannounced(ctx, addr) {
            reason = format!("{reason}; {why}");
        }
        if let Some(who) = who {
            reason = format!("{reason}; {who}");
        }
        reason
    }
}

/// Follows each next hop of an entry router's lookup `fl`: to the node that owns it (an
/// arrival), to another router of the snapshot, or to the end of what the snapshot shows.
/// Fills in each next hop's node.
fn follow_next_hops(
    ctx: &mut Ctx,
    acc: &mut Acc,
    arrivals: &mut BTreeMap<Arrival, (f64, Vec<Hop>)>,
    at: &AtEntry,
    fl: &mut fabric::FabricLookup,
) {
    let addr = at.addr;
    let route = MatchedRoute {
        router: fl.router.clone(),
        vrf: fl.vrf.clone(),
        prefix: fl.prefix,
        via: fl.via.clone(),
        next_hops: fl.next_hops.len(),
    };
    for nh in fl.next_hops.iter_mut() {
        let mut fwd = at.hops.clone();
        fwd.push(
            Hop::new(
                "router",
                route.router.clone(),
                route.next_hop_text(addr, nh),
            )
            .src(Some(nh.source.clone()))
            .p(nh.probability),
        );
        // Which node owns the next hop (or the destination, when connected)?
        let owner = ctx.node_owning(nh.addr).or_else(|| {
            if nh.connected {
                l2_owner(ctx, addr, route.prefix)
            } else {
                None
            }
        });
        let p = at.p * nh.probability;
        if let Some(nodes) = ctx.nodes_sharing(nh.addr).map(<[String]>::to_vec) {
            let reason = format!(
                "next hop {} of {} is an address of {} nodes ({}): the router reaches whichever answered its ARP last, so which node the packet arrives on is unknown (an address conflict, or an output copied from another node)",
                nh.addr,
                route.router,
                nodes.len(),
                nodes.join(", ")
            );
            fwd.push(Hop::new("node", "", reason.clone()));
            acc.add(unknown_path(p, reason, fwd));
            continue;
        }
        nh.node = owner.clone();
        match owner {
            Some((node, iface)) => {
                fwd.push(Hop::new(
                    "node",
                    node.clone(),
                    format!(
                        "{} is {node}'s address on {iface}: the packet arrives on {iface}",
                        nh.addr
                    ),
                ));
                let key = Arrival {
                    dst: addr,
                    node,
                    in_iface: iface,
                    router: route.router.clone(),
                    router_iface: nh.iface.clone(),
                    vrf: route.vrf.clone(),
                    path_vrfs: vec![route.vrf.clone()],
                };
                let slot = arrivals.entry(key).or_insert((0.0, fwd));
                slot.0 += p;
            }
            None if !nh.connected && fabric::gateway_owner(ctx.model, nh.addr).is_some() => {
                // Another router of the snapshot: follow the packet there.
                forward_walk(
                    ctx,
                    acc,
                    arrivals,
                    addr,
                    (nh.addr, &route.router, &route.vrf),
                    p,
                    fwd,
                );
            }
            None => {
                // No node or router of the snapshot holds the next hop.
                let reason = route.unowned_reason(ctx, addr, nh);
                fwd.push(Hop::new("node", "", reason.clone()));
                acc.add(unknown_path(p, reason, fwd));
            }
        }
    }
}

/// The request handed by an entry router to another router of the snapshot (`next_hop` is
/// that router's address): followed hop by hop until a node takes it.
pub(super) fn forward_walk(
    ctx: &mut Ctx,
    acc: &mut Acc,
    arrivals: &mut BTreeMap<Arrival, (f64, Vec<Hop>)>,
    addr: IpAddr,
    (next_hop, from_router, from_vrf): (IpAddr, &str, &str),
    p: f64,
    fwd: Vec<Hop>,
) {
    let Some((r, ri)) = fabric::gateway_owner(ctx.model, next_hop) else {
        return;
    };
    let start = VrfRef::new(&r.name, fabric::iface_vrf(ri));
    let node_owner = |a: IpAddr| ctx.node_owning(a);
    let walked = Walk {
        model: ctx.model,
        dst: addr,
        stage: "router",
        exits: &[],
        node_owner: &node_owner,
    }
    .run(start);
    for w in walked {
        let mut f = fwd.clone();
        f.extend(w.hops.iter().cloned());
        let pw = p * w.p;
        let (verdict, reason) = match w.end {
            End::Node { at, router_iface, node, node_iface } => {
                f.push(Hop::new(
                    "node",
                    node.clone(),
                    format!("the next hop is {node}'s address on {node_iface}: the packet arrives on {node_iface}"),
                ));
                let mut path_vrfs: Vec<String> = w.visited.iter().map(|v| v.vrf.clone()).collect();
                path_vrfs.push(from_vrf.to_string());
                path_vrfs.sort();
                path_vrfs.dedup();
                let key = Arrival {
                    dst: addr,
                    node,
                    in_iface: node_iface,
                    router: at.router,
                    router_iface,
                    vrf: at.vrf,
                    path_vrfs,
                };
                let slot = arrivals.entry(key).or_insert((0.0, f));
                slot.0 += pw;
                continue;
            }
            End::NoRoute { at, why, searched } => (
                Verdict::NoRoute,
                format!("{why} ({searched}); the request to {addr} reaches {at} from {from_router} and is dropped there"),
            ),
            End::Loop { cycle } => (
                Verdict::RoutingLoop,
                format!(
                    "the request to {addr} loops between routers until its TTL runs out: {}",
                    walk::cycle_text(&cycle)
                ),
            ),
            End::Connected { at, .. } => (
                Verdict::Unknown,
                format!("{addr} is on a connected subnet of {at}, but no node of the snapshot owns it"),
            ),
            End::Exit { at, .. } | End::Leaves { at, .. } => (
                Verdict::Unknown,
                format!("the request to {addr} leaves the snapshot at {at}, towards a device that is not in the snapshot"),
            ),
            End::Unknown(why) => (Verdict::Unknown, why),
        };
        // A request for an address the routers do not route to the nodes (dropped, looping,
        // or sent out by a default route): say so when the address is a LoadBalancer IP that
        // no node announces.
        let reason = match (&verdict, why_unannounced(ctx, addr)) {
            (Verdict::NoRoute | Verdict::RoutingLoop | Verdict::Unknown, Some(why)) => {
                format!("{reason}; {why}")
            }
            _ => reason,
        };
        acc.add(PathOut {
            p: pw,
            verdict,
            reason,
            forward: f,
            ..unknown_path(0.0, String::new(), Vec::new())
        });
    }
}

/// Why a router has no route to `addr`, when `addr` is a LoadBalancer IP that no node
/// announces (`kubepath announce`'s reason): the Service's own reason (no serving endpoint, a
/// pool without advertisement, ...) or, node by node, why each does not announce. `None` when
/// `addr` is no Service's LoadBalancer IP or some node announces it (the router's missing path
/// is then a fabric matter: a session down or a filter).
fn why_unannounced(ctx: &Ctx, addr: IpAddr) -> Option<String> {
    let ann = ctx.announcements().iter().find(|a| a.ips.contains(&addr))?;
    if !ann.announcing_nodes.is_empty() {
        return None;
    }
    let why = match &ann.blocked {
        Some(r) => r.to_string(),
        None => {
            // Every node has its own reason; group nodes by reason.
            let mut by: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for (node, r) in &ann.not_announcing {
                by.entry(r.to_string()).or_default().push(node);
            }
            if by.is_empty() {
                return None;
            }
            by.into_iter()
                .map(|(r, nodes)| format!("{} ({r})", nodes.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        }
    };
    Some(format!(
        "{addr} is the LoadBalancer IP of Service {} ({}), which no node announces: {why} (`kubepath announce` shows each node's reason)",
        ann.service, ann.source
    ))
}

/// MetalLB layer 2: the VIP is on no interface; the elected speaker answers ARP for it.
pub(super) fn l2_owner(ctx: &Ctx, addr: IpAddr, prefix: IpNet) -> Option<(String, String)> {
    for a in ctx.announcements() {
        if let Some(node) = a.l2_owners.get(&addr) {
            // The node's interface on the router's connected subnet.
            let n = ctx.model.nodes.get(node)?;
            let iface = n
                .interfaces
                .iter()
                .find(|i| {
                    i.addresses
                        .iter()
                        .any(|x| prefix.contains(&x.address.addr()))
                })
                .or_else(|| {
                    n.interfaces
                        .iter()
                        .find(|i| i.name != "lo" && !i.addresses.is_empty())
                })?;
            return Some((node.clone(), iface.name.clone()));
        }
    }
    None
}
