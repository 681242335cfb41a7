//! The reply: conntrack reversal on the node, its routing there, and the routers back to the client.

use super::*;

/// The reply to the client-facing connection: conntrack reversal and the reply's routing.
/// One outcome of the return path: (probability, verdict, reason, return hops).
pub(super) type RetOut = (f64, Verdict, String, Vec<Hop>);

/// The reply's fate, split over the next hops of a multipath route back to the client (the
/// kernel hashes each flow to one of them, in proportion to their weights) and over the
/// routers' ECMP next hops on its way to the client.
pub(super) fn return_path(ctx: &mut Ctx, at: &AtPod) -> Vec<RetOut> {
    // The reply first has to leave the pod: its gateway's proxy ARP and the reverse-path
    // check on the pod's node. Its destination at that routing decision: the client, or the
    // masquerade address when the pod runs on another node than the one holding the
    // conntrack entry (there conntrack restores the client before routing).
    let pod_node = at.pod.node_name.clone().unwrap_or_default();
    let reply_dst = if at.masq && pod_node != at.arr.node {
        at.o.packet.src
    } else {
        ctx.req.client
    };
    let who = format!("pod {}'s reply", pod_name(at.pod));
    if let Some(f) = podside::egress_fails(
        ctx,
        &pod_node,
        at.target_ip,
        (reply_dst, 0, FlowL4::Unknown),
        &who,
    ) {
        return vec![(1.0, f.verdict, f.reason, vec![f.hop])];
    }
    let (first, weights) = return_path_one(ctx, at, None);
    if weights.len() < 2 {
        return first;
    }
    let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
    let mut out = Vec::new();
    for (k, w) in weights.iter().enumerate() {
        let share = f64::from(*w) / total;
        for (p, v, r, mut h) in return_path_one(ctx, at, Some(k)).0 {
            if let Some(last) = h.iter_mut().find(|x| x.stage == "return-route") {
                last.probability = Some(share);
            }
            out.push((share * p, v, r, h));
        }
    }
    out
}

/// Where the reply is routed from: the node holding the conntrack entry (masquerade, or the
/// pod is local), with the interface the reply comes in on. `Err` is a final outcome: without
/// SNAT a pod elsewhere answers the client directly from its own node.
pub(super) fn reply_origin(ctx: &Ctx, at: &AtPod) -> Result<(String, Option<String>, Hop), RetOut> {
    let (arr, o, pod, target_ip, masq) = (at.arr, at.o, at.pod, at.target_ip, at.masq);
    let client = ctx.req.client;
    let pod_key = pod_name(pod);
    let pod_node = pod.node_name.clone().unwrap_or_default();
    let fwd_dev = |node: &str, flow: &Flow| {
        ctx.route(node, flow).and_then(|l| match l.result {
            Ok(RHop::Forward { dev, .. }) => dev,
            _ => None,
        })
    };
    if !(masq || pod_node == arr.node) {
        // No SNAT and the pod is elsewhere: the reply is routed by the pod's node directly and
        // never meets the conntrack entry on the node that DNATed it.
        let iif = fwd_dev(
            &pod_node,
            &Flow {
                src: None,
                dst: target_ip,
                iif: None,
                mark: 0,
                l4: FlowL4::Unknown,
            },
        );
        let l = ctx.route(
            &pod_node,
            &Flow {
                src: Some(target_ip),
                dst: client,
                iif: iif.as_deref(),
                mark: 0,
                l4: FlowL4::Unknown,
            },
        );
        let via = l
            .as_ref()
            .and_then(|l| l.route.as_ref().map(route_text))
            .unwrap_or_else(|| "?".into());
        let hop = Hop::new(
            "return-route",
            pod_node.clone(),
            format!("no SNAT: pod {pod_key} on {pod_node} replies to {client} directly, routed by {pod_node} (`{via}`)"),
        )
        .src(l.as_ref().and_then(|l| l.source()));
        let reason = format!(
            "the request was DNATed on the receiving node but not masqueraded, and the pod runs on another node: its reply is routed by the pod's node and never passes the conntrack entry on the receiving node, so the client sees a SYN-ACK from {target_ip} instead of {}",
            original_dst(arr)
        );
        return Err((1.0, Verdict::AsymmetricReturn, reason, vec![hop]));
    }
    let iif = if pod_node == arr.node {
        // The pod's veth on this node.
        fwd_dev(
            &arr.node,
            &Flow {
                src: None,
                dst: target_ip,
                iif: None,
                mark: 0,
                l4: FlowL4::Unknown,
            },
        )
    } else {
        // From the pod's node, through the interface the request left by.
        fwd_dev(
            &arr.node,
            &Flow {
                src: Some(client),
                dst: target_ip,
                iif: Some(&arr.in_iface),
                mark: 0,
                l4: FlowL4::Unknown,
            },
        )
    };
    let back_to = if masq {
        format!(
            "{}:{} (the masquerade address)",
            o.packet.src, o.packet.sport
        )
    } else {
        format!("{client}:{}", ctx.sport)
    };
    // A connection IPVS scheduled: IPVS, not a nat rule, rewrote its destination, and its
    // own hook on the reply path (`ip_vs_out`) gives the reply the virtual address back.
    let by_ipvs = o.steps.iter().any(|s| &*s.chain == "IPVS");
    let text = if by_ipvs {
        format!(
            "pod {pod_key} replies {target_ip}:{} -> {back_to}; it reaches {}{}; {}IPVS (ip_vs_out) restores its source to {}:{}: destination {client}:{}",
            o.dnat.as_ref().and_then(|d| d.port).unwrap_or(ctx.dport),
            arr.node,
            iif.as_deref().map(|i| format!(" on {i}")).unwrap_or_default(),
            if masq { "conntrack un-SNATs it and " } else { "" },
            original_dst(arr),
            ctx.dport,
            ctx.sport,
        )
    } else {
        format!(
            "pod {pod_key} replies {target_ip}:{} -> {back_to}; it reaches {}{}; conntrack {}un-DNATs it: destination {client}:{}, source restored to {}:{} only at POSTROUTING",
            o.dnat.as_ref().and_then(|d| d.port).unwrap_or(ctx.dport),
            arr.node,
            iif.as_deref().map(|i| format!(" on {i}")).unwrap_or_default(),
            if masq { "un-SNATs and " } else { "" },
            ctx.sport,
            original_dst(arr),
            ctx.dport
        )
    };
    let hop = Hop::new("conntrack", arr.node.clone(), text);
    Ok((arr.node.clone(), iif, hop))
}

/// The reply routed by the node that holds the conntrack entry, and beyond. With a
/// multipath route back, `nexthop` picks one next hop (`None`: as the route says); the
/// second value is the multipath weights (empty for a single path).
pub(super) fn return_path_one(
    ctx: &mut Ctx,
    at: &AtPod,
    nexthop: Option<usize>,
) -> (Vec<RetOut>, Vec<u32>) {
    let (arr, target_ip) = (at.arr, at.target_ip);
    let client = ctx.req.client;
    let (rnode, iif, first_hop) = match reply_origin(ctx, at) {
        Ok(x) => x,
        Err(out) => return (vec![out], Vec::new()),
    };
    let mut weights = Vec::new();
    let mut hops = vec![first_hop];
    let Some(l) = ctx.route(
        &rnode,
        &Flow {
            src: Some(target_ip),
            dst: client,
            iif: iif.as_deref(),
            mark: 0,
            l4: FlowL4::Unknown,
        },
    ) else {
        return (
            vec![(
                1.0,
                Verdict::Unknown,
                format!("node {rnode} has no outputs in the snapshot"),
                hops,
            )],
            Vec::new(),
        );
    };
    let mut l = l;
    if let (Some(rt), Ok(RHop::Forward { .. })) = (l.route.clone(), &l.result) {
        if rt.nexthops.len() > 1 {
            weights = rt.nexthops.iter().map(|n| n.weight.max(1)).collect();
            l.notes.retain(|n| !n.starts_with("multipath route"));
            if let Some(nh) = nexthop.and_then(|k| rt.nexthops.get(k)) {
                let dev = nh.dev.clone();
                let next = nh.gateway.unwrap_or(client);
                let src = rt.prefsrc.or_else(|| {
                    let n = ctx.model.nodes.get(&rnode)?;
                    routing::select_src(n, dev.as_deref()?, next)
                });
                l.result = Ok(RHop::Forward {
                    dev,
                    gateway: nh.gateway,
                    src,
                });
            }
        }
    }
    let rule = l
        .rule
        .as_ref()
        .map(|r| format!("rule `{}` -> ", rule_text(r)))
        .unwrap_or_default();
    let route = l.route.as_ref().map(route_text).unwrap_or_default();
    for n in &l.notes {
        ctx.notes.insert(format!("{rnode}: {n}"));
    }
    let w = weights.clone();
    let one = |v: Verdict, why: String, hops: Vec<Hop>| (vec![(1.0, v, why, hops)], w.clone());
    match &l.result {
        Err(RouteFailure::Unknown(why)) => {
            hops.push(Hop::new("return-route", rnode.clone(), why.clone()));
            one(
                Verdict::Unknown,
                format!("the reply's route is unknown: {why}"),
                hops,
            )
        }
        Err(RouteFailure::NoRoute) => {
            let why = format!(
                "the node has no route back to {client}: the reply is dropped (ENETUNREACH)"
            );
            hops.push(Hop::new("return-route", rnode.clone(), why.clone()));
            one(Verdict::NoRoute, why, hops)
        }
        Err(RouteFailure::Rejected { kind }) => {
            let why = format!("the route back to {client} is {kind} ({rule}`{route}`)");
            hops.push(Hop::new("return-route", rnode.clone(), why.clone()).src(l.source()));
            one(Verdict::NoRoute, why, hops)
        }
        Ok(RHop::Local) => {
            let why = format!("the reply to {client} is routed to the node itself");
            hops.push(Hop::new("return-route", rnode.clone(), why.clone()).src(l.source()));
            one(Verdict::Unknown, why, hops)
        }
        Ok(RHop::Forward { dev, gateway, .. }) => {
            let dev_s = dev.clone().unwrap_or_else(|| "?".into());
            hops.push(
                Hop::new(
                    "return-route",
                    rnode.clone(),
                    format!(
                        "the reply is routed while its source is still the pod IP {target_ip}: {rule}table {}: `{route}` -> out of {dev_s}{}",
                        kubepath_model::net::table_name(l.table),
                        gateway.map(|g| format!(" via {g}")).unwrap_or_default()
                    ),
                )
                .src(l.source()),
            );
            let egress = Egress {
                node: rnode.clone(),
                dev: dev_s,
                gateway: *gateway,
                cite: format!(
                    "{rule}`{route}`, {}",
                    l.source()
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                        .replace(&format!("nodes/{rnode}/"), "nodes/<node>/")
                ),
            };
            (reply_beyond_node(ctx, arr, &egress, hops), weights)
        }
    }
}

/// How the reply leaves the node that routes it.
pub(super) struct Egress {
    pub(super) node: String,
    pub(super) dev: String,
    pub(super) gateway: Option<IpAddr>,
    /// The rule and route that chose it, with their file and line.
    pub(super) cite: String,
}

/// The reply after it left the node: to its gateway's router, then hop by hop to the client.
pub(super) fn reply_beyond_node(
    ctx: &mut Ctx,
    arr: &Arrival,
    eg: &Egress,
    mut hops: Vec<Hop>,
) -> Vec<RetOut> {
    // Out of a device without carrier (or down), the reply goes nowhere.
    if let Some(why) = link_down(ctx, eg) {
        hops.push(egress_hop(eg, &why));
        return vec![(1.0, Verdict::NoRoute, why, hops)];
    }
    let Some(g) = eg.gateway else {
        return reply_on_link(ctx, eg, hops);
    };
    let owners = match gateway_owners(ctx, eg, g) {
        Ok(owners) => owners,
        Err(why) => {
            hops.push(egress_hop(eg, &why));
            return vec![(1.0, Verdict::Unknown, why, hops)];
        }
    };
    let base_hops = hops;
    let mut per_owner: Vec<OwnerOutcome> = owners
        .into_iter()
        .map(|(r, ri)| {
            let gw = ReplyGateway {
                addr: g,
                router: r.name.clone(),
                iface: ri.name.clone(),
                vrf: fabric::iface_vrf(ri).to_string(),
            };
            reply_via(ctx, arr, eg, &gw, base_hops.clone())
        })
        .collect();
    let first = per_owner.remove(0);
    // Each router's outcome as shares by verdict (its own ECMP paths summed).
    let verdicts = |o: &[RetOut]| {
        let mut by: BTreeMap<&'static str, f64> = BTreeMap::new();
        for x in o {
            *by.entry(x.1.name()).or_default() += x.0;
        }
        by.into_iter()
            .map(|(v, p)| (v, format!("{p:.6}")))
            .collect::<Vec<_>>()
    };
    if per_owner
        .iter()
        .all(|o| verdicts(&o.out) == verdicts(&first.out))
    {
        ctx.notes.extend(first.notes);
        for o in per_owner {
            ctx.notes.extend(o.notes);
            ctx.notes.insert(format!(
                "the reply's anycast gateway {g} is also {}: the reply fares the same there",
                o.who
            ));
        }
        return first.out;
    }
    // The routers disagree: which one the reply enters decides, and that is unknown.
    let why = format!(
        "the reply leaves <node> by {} via {g}, an anycast gateway address of several routers, and which of them takes it (whichever answers the node's ARP) is not in the snapshot; they disagree: {}; {}",
        eg.dev,
        first.summary(),
        per_owner
            .iter()
            .map(OwnerOutcome::summary)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let mut h = base_hops;
    h.push(egress_hop(eg, &why));
    vec![(1.0, Verdict::Unknown, why, h)]
}

/// The `egress` hop of a reply that stops at the node's egress, `why` naming the node
/// `<node>`.
fn egress_hop(eg: &Egress, why: &str) -> Hop {
    Hop::new("egress", eg.node.clone(), why.replace("<node>", &eg.node))
}

/// Why the reply is lost at a device whose link is down (the node as `<node>`), if it is.
fn link_down(ctx: &Ctx, eg: &Egress) -> Option<String> {
    let client = ctx.req.client;
    let i = ctx
        .model
        .nodes
        .get(&eg.node)
        .and_then(|n| n.interface(&eg.dev))
        .filter(|i| i.link_down())?;
    Some(
        format!(
            "the reply to {client} leaves <node> by {} ({}), whose link is down (flags {}{}, {}): it is lost there",
            eg.dev,
            eg.cite,
            i.flags.join(","),
            i.operstate
                .as_deref()
                .map(|s| format!(", state {s}"))
                .unwrap_or_default(),
            i.source
        )
        .replace(&format!("nodes/{}/", eg.node), "nodes/<node>/"),
    )
}

/// A reply routed on-link: the node ARPs for the client itself on that device. It answers
/// when it is on that segment (one of the device's subnets holds it); otherwise only a
/// proxy-ARP router on the segment would, which the snapshot cannot show.
fn reply_on_link(ctx: &Ctx, eg: &Egress, mut hops: Vec<Hop>) -> Vec<RetOut> {
    let client = ctx.req.client;
    let on_segment = ctx.model.nodes.get(&eg.node).is_some_and(|n| {
        n.interface(&eg.dev).is_some_and(|i| {
            i.addresses
                .iter()
                .any(|a| a.address.trunc().contains(&client))
        })
    });
    if !on_segment {
        let why = format!(
            "the reply leaves <node> by {} on-link to {client} ({}), but {client} is on no subnet of {}: the node asks for it by ARP on that segment, and only a host there answering for it (a router with proxy ARP) would take the reply; the snapshot does not show one",
            eg.dev, eg.cite, eg.dev
        );
        hops.push(egress_hop(eg, &why));
        return vec![(1.0, Verdict::Unknown, why, hops)];
    }
    hops.push(Hop::new(
        "egress",
        eg.node.clone(),
        format!(
            "the reply leaves {} by {} directly to {client} (on-link: {client} is on a subnet of {})",
            eg.node, eg.dev, eg.dev
        ),
    ));
    vec![(1.0, Verdict::Delivered, "delivered".into(), hops)]
}

/// The routers (and their interfaces) that may take the reply sent to gateway `g`: its
/// owner, and for an anycast gateway every router of the snapshot that holds it too.
/// `Err(why)` (the node as `<node>`) when where the reply goes is unknown.
fn gateway_owners<'m>(
    ctx: &Ctx<'m>,
    eg: &Egress,
    g: IpAddr,
) -> Result<
    Vec<(
        &'m kubepath_model::net::Router,
        &'m kubepath_model::net::RouterInterface,
    )>,
    String,
> {
    let Some((r, ri)) = fabric::gateway_owner(ctx.model, g) else {
        return Err(format!(
            "the reply leaves {} by {} via {g}, which is an interface of no router in the snapshot: where it goes from there is unknown (add that router's interface configuration and routing or BGP table under routers/<name>/)",
            "<node>", eg.dev
        ));
    };
    if let Some(sl) = r.interface_doubt(ri) {
        return Err(format!(
            "the reply leaves <node> by {} via {g} towards {} {}, whose VRF is unknown: in its configuration {}",
            eg.dev,
            r.name,
            ri.name,
            sl.describe()
        ));
    }
    let out_vrf = fabric::iface_vrf(ri).to_string();
    let (out_router, out_iface) = (r.name.clone(), ri.name.clone());
    // An anycast gateway is held by several routers, and the reply goes to whichever answers
    // the node's ARP. A router of the snapshot whose interface configuration was not collected
    // may hold it too, in a VRF nobody knows: which VRF the reply enters, and so whether it
    // comes back the way the request came, is then unknown.
    let anycast = ri.anycast_addresses.iter().any(|a| a.addr() == g);
    if anycast {
        let blind: Vec<&str> = ctx
            .model
            .routers
            .values()
            .filter(|o| o.name != r.name && !o.read.contains_key(&RouterFact::InterfaceConfig))
            .map(|o| o.name.as_str())
            .collect();
        if !blind.is_empty() {
            return Err(format!(
                "the reply leaves <node> by {} via {g}, an anycast gateway address of {out_router} {out_iface} (VRF {out_vrf}); the snapshot has no interface configuration of {}, which may hold the same anycast address and take the reply in another VRF: which VRF the reply enters is unknown (collect `{}` on {})",
                eg.dev,
                blind.join(", "),
                RouterFact::InterfaceConfig.command(),
                blind.join(", "),
            ));
        }
    }
    // An anycast gateway held by several routers of the snapshot: the reply enters whichever
    // answers the node's ARP (which leaf the node's uplink hashes to), which the snapshot does
    // not tell. Each is followed; where they disagree the reply's fate is unknown (issue #11,
    // review: the first router by name was taken).
    let mut owners = vec![(r, ri)];
    if anycast {
        for o in ctx.model.routers.values().filter(|o| o.name != r.name) {
            if let Some(oi) = o
                .interfaces
                .iter()
                .find(|i| i.anycast_addresses.iter().any(|a| a.addr() == g))
            {
                owners.push((o, oi));
            }
        }
    }
    Ok(owners)
}

/// The router interface a reply is sent to: the gateway address, its router, interface and
/// VRF.
struct ReplyGateway {
    addr: IpAddr,
    router: String,
    iface: String,
    vrf: String,
}

/// The reply's fate through one router that holds its gateway.
struct OwnerOutcome {
    /// The router, interface and VRF.
    who: String,
    out: Vec<RetOut>,
    notes: Vec<String>,
}

impl OwnerOutcome {
    /// The outcome by verdict, with an unknown's own reason (what is missing there).
    fn summary(&self) -> String {
        let mut by: Vec<(Verdict, f64, Option<&str>)> = Vec::new();
        for x in &self.out {
            match by.iter_mut().find(|b| b.0 == x.1) {
                Some(b) => b.1 += x.0,
                None => by.push((x.1, x.0, (x.1 == Verdict::Unknown).then_some(x.2.as_str()))),
            }
        }
        let v: Vec<String> = by
            .iter()
            .map(|(v, p, why)| match why {
                Some(w) => format!("{} {:.0}% ({w})", v.name(), p * 100.0),
                None => format!("{} {:.0}%", v.name(), p * 100.0),
            })
            .collect();
        format!("via {}: {}", self.who, v.join(", "))
    }
}

/// The reply sent to `gw`, walked through the routers to the client.
fn reply_via(
    ctx: &Ctx,
    arr: &Arrival,
    eg: &Egress,
    gw: &ReplyGateway,
    mut hops: Vec<Hop>,
) -> OwnerOutcome {
    let client = ctx.req.client;
    let g = gw.addr;
    let (out_router, out_iface, out_vrf) = (&gw.router, &gw.iface, &gw.vrf);
    hops.push(Hop::new(
        "egress",
        eg.node.clone(),
        format!(
            "the reply leaves {} by {} towards {out_router} {out_iface} (VRF {out_vrf})",
            eg.node, eg.dev
        ),
    ));
    let request_vrfs: BTreeSet<&str> = arr
        .path_vrfs
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(arr.vrf.as_str()))
        .collect();
    // Which router of the VRF the SYN came from is in the hops: the reason (which groups
    // branches) names only the interface and VRF, so every entry router's share is one branch.
    let in_side = format!(
        "{} (VRF {})",
        arr.router_iface.as_deref().unwrap_or("?"),
        arr.vrf
    );
    let walked = ctx.walk(
        VrfRef::new(out_router, out_vrf),
        client,
        "return-router",
        true,
    );
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for w in walked.iter() {
        let mut h = hops.clone();
        h.extend(w.hops.iter().cloned());
        let other_vrf = std::iter::once(out_vrf.as_str())
            .chain(w.visited.iter().map(|v| v.vrf.as_str()))
            .find(|v| !request_vrfs.contains(v));
        if let Some(v) = other_vrf {
            // The reply crosses into a VRF the request did not come through: whatever that
            // VRF does with it (no route, a firewall, another uplink), it does not come back
            // the way the connection was opened.
            let fate = match &w.end {
                End::NoRoute { at, .. } => {
                    format!(", where {} has no route to {client}", at.router)
                }
                _ => String::new(),
            };
            let reason = format!(
                "the SYN arrived on {} from {in_side}; the reply leaves by {} via {g} towards {out_router} {out_iface} (VRF {out_vrf}) ({}): ingress and egress are in different VRFs (the reply is routed in VRF {v}{fate}), so the client never sees a valid SYN-ACK and the TCP session is never established",
                arr.in_iface, eg.dev, eg.cite
            );
            out.push((w.p, Verdict::AsymmetricReturn, reason, h));
            continue;
        }
        let (verdict, reason) = reply_end(&w.end, client, eg, gw, &mut notes);
        out.push((w.p, verdict, reason, h));
    }
    if out.iter().any(|x| x.1 == Verdict::Delivered) && eg.dev != arr.in_iface {
        notes.push(format!(
            "the reply leaves by {}, not by {} where the request arrived, but towards {out_router} {out_iface} in the same VRF {out_vrf}: routed back to the client",
            eg.dev, arr.in_iface
        ));
    }
    OwnerOutcome {
        who: format!("{out_router} {out_iface} (VRF {out_vrf})"),
        out,
        notes,
    }
}

/// The verdict and reason of a reply whose walk through the routers ended with `end`;
/// a delivery's note goes to `notes`.
fn reply_end(
    end: &End,
    client: IpAddr,
    eg: &Egress,
    gw: &ReplyGateway,
    notes: &mut Vec<String>,
) -> (Verdict, String) {
    let g = gw.addr;
    let (out_router, out_iface) = (&gw.router, &gw.iface);
    match end {
        End::Connected { at, iface } => {
            notes.push(format!(
                "the reply reaches {client} on a connected subnet of {at}{}",
                iface.as_deref().map(|i| format!(" ({i})")).unwrap_or_default()
            ));
            (Verdict::Delivered, "delivered".to_string())
        }
        End::Exit {
            at,
            next_hop: Some(nh),
        } => {
            notes.push(format!(
                "the reply reaches {at}, where the client's requests enter the fabric, and leaves it via {nh} towards the client"
            ));
            (Verdict::Delivered, "delivered".to_string())
        }
        // The manifest says the client's requests enter here, but the router's table has
        // no route back to the client: a static or connected route the snapshot does not
        // show may exist, or the reply is dropped. Unknown, not delivered (issue #11,
        // review: a leaf without its default routes was `delivered`).
        End::Exit { at, next_hop: None } => (
            Verdict::Unknown,
            format!(
                "the reply reaches {at}, where the client's requests enter the fabric, but its BGP table has no route to {client} and the snapshot has no routing table for that VRF: whether it reaches the client is unknown (collect `show ip route vrf {}` on {})",
                at.vrf, at.router
            ),
        ),
        End::Node { at, node, .. } => (
            Verdict::Unknown,
            format!("{at} routes the reply to {client} back into the cluster, to node {node}: not followed further"),
        ),
        End::Leaves { at, iface, next_hop } => (
            Verdict::Unknown,
            format!(
                "the reply leaves the snapshot at {at}{} towards {next_hop}, which is on no device of the snapshot and {} is no entry point of {client}: whether it reaches the client is unknown (add the next router's outputs, or its entry in kubepath.yaml)",
                iface.as_deref().map(|i| format!(" {i}")).unwrap_or_default(),
                at.router
            ),
        ),
        End::NoRoute { at, why, searched } => (
            Verdict::NoRoute,
            format!(
                "the reply to {client} leaves {} by {} via {g} to {out_router} {out_iface}; {at} has no route back to {client} ({why}; {searched}): the reply is dropped there",
                "<node>", eg.dev
            ),
        ),
        End::Loop { cycle } => (
            Verdict::RoutingLoop,
            format!(
                "the reply to {client} loops between routers until its TTL runs out: {}",
                walk::cycle_text(cycle)
            ),
        ),
        End::Unknown(why) => (
            Verdict::Unknown,
            format!("the reply's way to {client} is unknown: {why}"),
        ),
    }
}

/// The destination the client used (before DNAT).
pub(super) fn original_dst(arr: &Arrival) -> String {
    arr.dst.to_string()
}
