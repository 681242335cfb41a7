//! On a node: netfilter, rp_filter, forwarding, the pod network, and the way to the pod.

use super::*;

/// A packet the node forwards without NAT, followed through the routers: when they hand it
/// back to a node that forwards it the same way to a router already on the path, it is a
/// routing loop (the kernel decrements the TTL at each hop until it is dropped). `None` when
/// the way on cannot be followed (the caller reports it as leaving the snapshot); else one
/// outcome per router path, with its probability: the node's own first hop (its route to the
/// router) and the outcomes from the router on, shared by every node that hands the packet to
/// the same router ([`beyond_router`]).
pub(super) fn forwarded_on(
    ctx: &Ctx,
    arr: &Arrival,
    o: &nf::Outcome,
) -> Option<(Hop, std::rc::Rc<Vec<RetOut>>)> {
    let dst = o.packet.dst;
    let (g, l) = gateway_of(ctx, o, &arr.node, &arr.in_iface)?;
    let (r, ri) = fabric::gateway_owner(ctx.model, g)?;
    let start = VrfRef::new(&r.name, fabric::iface_vrf(ri));
    let first = Hop::new(
        "routing",
        arr.node.clone(),
        format!(
            "{} routes {dst} by `{}` via {g}: to {} {}",
            arr.node,
            l.route.as_ref().map(route_text).unwrap_or_default(),
            r.name,
            ri.name
        ),
    )
    .src(l.source());
    Some((first, beyond_router(ctx, o, start)))
}

/// The gateway `node` routes the not-NATed packet of `o` (arriving on `iif`) to, with the
/// lookup that chose it; `None` unless it is forwarded via a gateway.
fn gateway_of(
    ctx: &Ctx,
    o: &nf::Outcome,
    node: &str,
    iif: &str,
) -> Option<(IpAddr, routing::Lookup)> {
    let l = ctx.route(
        node,
        &Flow {
            src: Some(o.packet.src),
            dst: o.packet.dst,
            iif: Some(iif),
            // The mark the routing decision saw (kube-proxy clears 0x4000 in
            // nat POSTROUTING, after it).
            mark: o.route_mark.unwrap_or(o.packet.mark),
            l4: FlowL4::Unknown,
        },
    )?;
    match l.result {
        Ok(RHop::Forward {
            gateway: Some(g), ..
        }) => Some((g, l)),
        _ => None,
    }
}

/// What [`beyond_router`] depends on besides the trace's own request: the router (and VRF)
/// the packet is handed to and the packet as the nodes route and trace it.
pub(super) type ForwardKey = (VrfRef, IpAddr, u16, IpAddr, u16, u32);

/// The not-NATed packet of `o` after a node handed it to `start`: one outcome per router
/// path, its hops from `start` on. The same for every node that hands it to `start`, so it is
/// computed once per trace (each of hundreds of nodes forwarding a packet for an address none
/// of them serves would otherwise repeat the walk and every next node's netfilter trace).
fn beyond_router(ctx: &Ctx, o: &nf::Outcome, start: VrfRef) -> std::rc::Rc<Vec<RetOut>> {
    let dst = o.packet.dst;
    let key: ForwardKey = (
        start,
        o.packet.src,
        o.packet.sport,
        dst,
        o.packet.dport,
        o.route_mark.unwrap_or(o.packet.mark),
    );
    if let Some(v) = ctx.forward_memo.borrow().get(&key) {
        return v.clone();
    }
    let walked = ctx.walk(key.0.clone(), dst, "router", false);
    let what = format!("{dst}:{} is not NATed on the node", ctx.dport);
    let mut out = Vec::new();
    for w in walked.iter() {
        let mut hops = w.hops.clone();
        let (verdict, why) = match &w.end {
            End::Node {
                at,
                node,
                node_iface,
                ..
            } => {
                // The next node sees the same packet: it loops when that node does not NAT it
                // either and routes it back to a router of this path.
                let pkt = nf_packet(
                    ctx,
                    o.packet.src,
                    o.packet.sport,
                    dst,
                    o.packet.dport,
                    Some(node_iface),
                );
                let same = nf_trace(ctx, node, &pkt).is_ok_and(|t| {
                    t.outcomes.iter().all(|x| {
                        x.verdict == nf::Verdict::Accept && x.dnat.is_none() && !x.local_delivery
                    })
                });
                let back = gateway_of(ctx, o, node, node_iface).and_then(|(g2, _)| {
                    let (r2, ri2) = fabric::gateway_owner(ctx.model, g2)?;
                    Some(VrfRef::new(&r2.name, fabric::iface_vrf(ri2)))
                });
                match back {
                    Some(back) if same && w.visited.contains(&back) => {
                        hops.push(Hop::new("node", node.clone(), format!("{at} hands it to {node}, which does not NAT it either and forwards it to {back} again")));
                        (
                            Verdict::RoutingLoop,
                            format!(
                                "{what} and loops until its TTL runs out: <node> -> {} -> another node -> {back} (no rule on that node NATs it either)",
                                walk::cycle_text(&w.visited),
                            ),
                        )
                    }
                    _ => (
                        Verdict::Unknown,
                        format!("{what}; {at} forwards it to node {node}: not followed further"),
                    ),
                }
            }
            End::Loop { cycle } => (
                Verdict::RoutingLoop,
                format!(
                    "{what} and loops between routers until its TTL runs out: {}",
                    walk::cycle_text(cycle)
                ),
            ),
            End::NoRoute { at, why, searched } => (
                Verdict::NoRoute,
                format!("{what} and is forwarded to {at}, which drops it: {why} ({searched})"),
            ),
            End::Connected { at, .. } | End::Exit { at, .. } | End::Leaves { at, .. } => (
                Verdict::Unknown,
                format!("{what} and is forwarded out of the cluster by {at}: beyond the snapshot"),
            ),
            End::Unknown(why) => (Verdict::Unknown, format!("{what}: {why}")),
        };
        out.push((w.p, verdict, why, hops));
    }
    let out = std::rc::Rc::new(out);
    ctx.forward_memo.borrow_mut().insert(key, out.clone());
    out
}

pub(super) fn steps_hops(node: &str, steps: &[nf::Step]) -> Vec<Hop> {
    steps
        .iter()
        .map(|s| {
            let mut h = Hop::new(
                "netfilter",
                node,
                format!("{}/{}: {}", s.table.name(), s.chain, s.text),
            )
            .src(Some(SourceRef::new(s.source.file.clone(), s.source.line)));
            h.probability = s.branch_probability;
            h
        })
        .collect()
}

/// Which ruleset decides a packet of family `v6` on node `n`: `Ok(Some(nft))` when the
/// node's `nft list ruleset` holds every rule the kernel runs for it, `Ok(None)` when there is
/// no nft ruleset (its iptables rules decide), `Err` when neither alone is the whole truth.
///
/// The kernel runs the base chains of every table at a hook in priority order, whichever tool
/// made them (`nf_hook_entries_grow`, net/netfilter/core.c); iptables-legacy's x_tables hooks
/// are in the same lists. So:
/// * no iptables rules of the family (or only empty chains with ACCEPT policies): the nft
///   ruleset is everything;
/// * iptables-nft: its tables are nf_tables tables, which `nft list ruleset` lists too (`table
///   ip nat`, ...). When every table the iptables dump shows is there with the same chains and
///   rule counts, the nft ruleset is the whole of both views and decides alone;
/// * iptables-legacy rules beside nft tables (or iptables-nft's legacy warning), or iptables-nft
///   tables the nft listing does not show as iptables-save does: the nft engine cannot take
///   the iptables-save tables yet, so the stage is unknown, naming why; never an answer from
///   half of the rules.
fn nft_decides<'a>(
    node: &str,
    n: &'a kubepath_model::net::NodeNet,
    v6: bool,
) -> Result<Option<&'a nf::NftRuleset>, String> {
    use kubepath_model::net::{Family, IptablesBackend, NodeFact};
    if let Some((_, why)) = n.doubts.iter().find(|(f, _)| *f == NodeFact::Nft) {
        return Err(format!("node {node}: {why}"));
    }
    if !n.nft_rejected.is_empty() {
        let files: Vec<String> = n
            .nft_rejected
            .iter()
            .map(|(f, why)| format!("{f} ({why})"))
            .collect();
        return Err(format!(
            "the nft ruleset of node {node} was left out, as nft -f would reject it: {}: its NAT and filtering are unknown",
            files.join("; ")
        ));
    }
    let Some(nft) = n.nft.as_deref() else {
        return Ok(None);
    };
    let nft_files = || n.read_files(NodeFact::Nft);
    if let Some((_, src, filter)) = n.partial.iter().find(|(f, _, _)| *f == NodeFact::Nft) {
        return Err(format!(
            "the nft ruleset of node {node} was filtered (`{filter}`, {src}): rules left out change every verdict after them, so its NAT and filtering are unknown (collect `nft list ruleset` whole)"
        ));
    }
    let (ipt, fam, tfam) = if v6 {
        (
            n.netfilter6.as_deref(),
            Family::Ipv6,
            nf::nft::NftFamily::Ip6,
        )
    } else {
        (n.netfilter.as_deref(), Family::Ipv4, nf::nft::NftFamily::Ip)
    };
    let Some(ipt) = ipt else {
        return Ok(Some(nft));
    };
    let tables = nf::Table::ALL;
    let shapes: Vec<(nf::Table, Shapes)> = tables
        .into_iter()
        .map(|t| (t, ipt.chain_shapes(t)))
        .collect();
    let noop = shapes
        .iter()
        .all(|(_, cs)| cs.iter().all(|(_, rules, strict)| *rules == 0 && !strict));
    if noop {
        return Ok(Some(nft));
    }
    // The nft side does nothing to this family's packets: every base chain of its tables
    // (and of `inet` ones) is empty with policy accept, as Debian's default
    // /etc/nftables.conf is.
    let nft_noop = nft
        .tables
        .iter()
        .filter(|t| t.family == tfam || t.family == nf::nft::NftFamily::Inet)
        .all(|t| {
            t.chains.iter().all(|c| {
                c.base
                    .as_ref()
                    .is_none_or(|b| c.rules.is_empty() && !b.policy_drop)
            })
        });
    let dumps: Vec<_> = n
        .iptables_dumps
        .iter()
        .filter(|d| d.family == fam)
        .collect();
    let ipt_files = dumps
        .iter()
        .map(|d| d.source.file.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let cannot = |why: String| {
        format!(
            "node {node} has iptables rules ({ipt_files}) and nft tables ({}) and {why}: kubepath cannot evaluate both together yet, so its NAT and filtering are unknown",
            nft_files()
        )
    };
    if let Some(d) = dumps
        .iter()
        .find(|d| d.backend == Some(IptablesBackend::Legacy) || d.warns_legacy_tables)
    {
        if nft_noop {
            // The kernel runs both, but only the iptables-legacy rules do anything.
            return Ok(None);
        }
        return Err(cannot(format!(
            "the kernel runs the iptables-legacy tables ({}) beside them",
            d.source
        )));
    }
    // iptables-nft: each table of the dump must be the nft listing's table of that name.
    if let Some(why) = xtables_views_differ(ipt, nft, tfam, &shapes) {
        return Err(cannot(why));
    }
    // Every nft table that sees the packet is one of iptables-nft's, shown the same by
    // iptables-save: the iptables engine decides (it reads every match iptables-nft writes,
    // where nft lists some as xt compat expressions) and cites iptables-save.
    let only_xtables = nft
        .tables
        .iter()
        .filter(|t| match t.family {
            nf::nft::NftFamily::Inet => true,
            f => f == tfam,
        })
        .all(|t| t.family == tfam && nf::Table::parse(&t.name).is_some_and(|x| ipt.has_table(x)));
    if only_xtables {
        return Ok(None);
    }
    Ok(Some(nft))
}

/// Per iptables table: each chain's name, rule count and non-ACCEPT policy.
type Shapes = Vec<(std::sync::Arc<str>, usize, bool)>;

/// Where iptables-save and the nft listing give iptables-nft's tables differently (a table,
/// chain, rule count or policy): the two were taken at different times. `None` when they
/// agree.
fn xtables_views_differ(
    ipt: &nf::Ruleset,
    nft: &nf::NftRuleset,
    tfam: nf::nft::NftFamily,
    shapes: &[(nf::Table, Shapes)],
) -> Option<String> {
    for (t, cs) in shapes {
        if !ipt.has_table(*t) {
            continue;
        }
        let Some(nt) = nft.table(tfam, t.name()) else {
            if cs.iter().all(|(_, rules, strict)| *rules == 0 && !strict) {
                // An empty table iptables-nft has not created in the kernel yet.
                continue;
            }
            return Some(format!(
                "the nft listing has no `table {tfam} {}` for iptables-nft's {} table",
                t.name(),
                t.name()
            ));
        };
        for (name, rules, strict) in cs {
            let (nrules, ndrop) = nt
                .chain(name)
                .map(|c| {
                    (
                        c.rules.len(),
                        c.base.as_ref().is_some_and(|b| b.policy_drop),
                    )
                })
                .unwrap_or((0, false));
            if nrules != *rules || ndrop != *strict {
                return Some(format!(
                    "their views of the {} table differ (chain {name}: {rules} rules in iptables-save, {nrules} in `table {tfam} {}`): taken at different times?",
                    t.name(),
                    t.name()
                ));
            }
        }
        for c in &nt.chains {
            if !c.rules.is_empty() && !cs.iter().any(|(name, _, _)| **name == *c.name) {
                return Some(format!(
                    "their views of the {} table differ (chain {} of `table {tfam} {}` is not in iptables-save)",
                    t.name(),
                    c.name,
                    t.name()
                ));
            }
        }
    }
    None
}

pub(super) fn nf_trace(ctx: &Ctx, node: &str, pkt: &nf::Packet) -> Result<nf::Trace, String> {
    let n = ctx
        .model
        .nodes
        .get(node)
        .ok_or_else(|| format!("node {node} has no outputs in the snapshot (nodes/{node}/)"))?;
    let v6 = pkt.dst.is_ipv6();
    let fact = if v6 {
        kubepath_model::net::NodeFact::Ip6tables
    } else {
        kubepath_model::net::NodeFact::Iptables
    };
    if let Some((_, why)) = n
        .doubts
        .iter()
        .find(|(f, _)| *f == fact || *f == kubepath_model::net::NodeFact::Ipvs)
    {
        return Err(format!("node {node}: {why}"));
    }
    let nft = nft_decides(node, n, v6)?;
    // An IPv6 packet meets the ip6tables rules, never the IPv4 ones (issue #8: it used to be
    // traced against the IPv4 ruleset, where no rule applies, and passed).
    let ipt = if nft.is_some() {
        None
    } else if v6 {
        n.netfilter6.as_ref()
    } else {
        n.netfilter.as_ref()
    };
    if v6 && nft.is_none() && ipt.is_none() {
        return Err(format!(
            "the snapshot has no ip6tables-save output for node {node}: its NAT and filtering of IPv6 are unknown (collect `ip6tables-save`, or `nft list ruleset` where kube-proxy runs in nftables mode, on it)"
        ));
    }
    if nft.is_none() && ipt.is_none() {
        // A file the loader left out (too large, not a regular file) may have been the
        // ruleset: name it, so the user knows the output exists but was not read.
        let left: Vec<String> = n
            .left_out
            .iter()
            .map(|(f, why)| format!("{f} ({why})"))
            .collect();
        if !left.is_empty() {
            return Err(format!(
                "no iptables-save output for node {node} was read (left out: {}): its NAT and filtering are unknown",
                left.join("; ")
            ));
        }
        return Err(format!(
            "the snapshot has no iptables-save output for node {node}: its NAT and filtering are unknown (collect `iptables-save`, or `nft list ruleset` where kube-proxy runs in nftables mode, on it)"
        ));
    }
    let oracle = NodeOracle {
        node: n,
        routes: ctx.node_routes(node),
    };
    let local = ctx
        .local_addrs
        .get(node)
        .map(|v| v.as_slice())
        .unwrap_or(&[]);
    let uncollected = n.uncollected_tables(match pkt.dst {
        IpAddr::V4(_) => kubepath_model::net::Family::Ipv4,
        IpAddr::V6(_) => kubepath_model::net::Family::Ipv6,
    });
    let env = nf::Env {
        local_addrs: local,
        local_origin: false,
        router: Some(&oracle),
        ipsets: n.ipsets.as_ref(),
        uncollected: &uncollected,
        ipvs: n.ipvs.as_deref(),
    };
    let mut t = match (nft, ipt) {
        // The nft engine runs every table of every family at each hook by priority; its
        // steps cite the nft file, `numgen random mod N` splits into N equal shares.
        (Some(nft), _) => {
            let mut t = nf::trace_nft(nft, pkt, &env);
            // IPVS beside nft tables (not kube-proxy's own combination) is not modelled: a
            // packet for one of its virtual services is unknown, not delivered locally.
            if let Some(ipvs) = n.ipvs.as_deref() {
                for o in &mut t.outcomes {
                    if !o.local_delivery {
                        continue;
                    }
                    let p = &o.packet;
                    if let Some(vs) = ipvs.lookup(p.proto, p.dst, p.dport, p.mark) {
                        o.verdict = nf::Verdict::Unknown {
                            reason: format!(
                                "the packet reaches IPVS virtual service `{}` ({}) after nft rules: IPVS together with nft tables is not modelled",
                                vs.text, vs.source
                            ),
                            rule: Some(vs.source.clone()),
                        };
                    }
                }
            }
            t
        }
        (None, Some(rules)) => nf::trace(rules, pkt, &env),
        (None, None) => return Err(format!("node {node} has no ruleset")),
    };
    // A ruleset shared with nodes whose file has the same bytes cites the first one's file:
    // cite this node's own.
    for (from, to) in &n.netfilter_cites {
        for o in &mut t.outcomes {
            for s in &mut o.steps {
                if s.source.file == *from {
                    s.source.file = to.clone();
                }
            }
            let cause = o.ended_by.as_mut().map(nf::EndCause::text_mut);
            for note in o.notes.iter_mut().chain(cause) {
                if note.contains(&**from) {
                    *note = note.replace(&**from, to);
                }
            }
            if let nf::Verdict::Unknown { reason, rule } = &mut o.verdict {
                if reason.contains(&**from) {
                    *reason = reason.replace(&**from, to);
                }
                if let Some(r) = rule {
                    if r.file == *from {
                        r.file = to.clone();
                    }
                }
            }
        }
    }
    // A routing decision the node's skipped lines may decide (`NodeOracle::route`) leaves
    // netfilter without an outgoing interface: say which line, not only "no routing data".
    for o in &mut t.outcomes {
        if let nf::Verdict::Unknown { reason, .. } = &mut o.verdict {
            if reason.contains("outgoing interface is unknown") {
                if let Some(sl) = n.skipped.iter().find(|l| l.may_concern(o.packet.dst)) {
                    reason.push_str(&format!(
                        "; the node's route to {} is unknown: {}",
                        o.packet.dst,
                        sl.describe()
                    ));
                }
            }
        }
    }
    Ok(t)
}

pub(super) fn nf_packet(
    ctx: &Ctx,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    in_iface: Option<&str>,
) -> nf::Packet {
    let mut p = match ctx.req.proto {
        L4::Tcp => nf::Packet::tcp(src, sport, dst, dport),
        L4::Udp => nf::Packet::udp(src, sport, dst, dport),
    };
    p.in_iface = in_iface.map(str::to_string);
    p
}

/// What dropped or rejected the packet: the chain policy or the IPVS answer the engine says
/// ended it ([`nf::Outcome::ended_by`]), else the last rule it matched.
pub(super) fn drop_cause(o: &nf::Outcome) -> String {
    if let Some(cause) = &o.ended_by {
        return cause.text().to_string();
    }
    o.steps
        .last()
        .map(|s| format!("{} ({}:{})", s.text, s.source.file, s.source.line))
        .unwrap_or_default()
}

/// A netfilter `unknown` on `node` as a hop's reason: the engine's reason, the rule, and what
/// the node's snapshot lacks for it (its routing or ipset output, or the lines of them that
/// could not be read), so the user knows what to collect (issue #11).
pub(super) fn nf_unknown_reason(
    ctx: &Ctx,
    node: &str,
    reason: &str,
    rule: Option<&nf::SourceRef>,
) -> String {
    let at = rule
        .map(|s| format!(" ({}:{})", s.file, s.line))
        .unwrap_or_default();
    // Without routes the incoming interface of a forwarded packet (the route back to its
    // source) is unknown too.
    let facts: &[NodeFact] = if reason.contains(nf::NO_ROUTING_DATA)
        || reason.contains("incoming interface is unknown")
    {
        &[NodeFact::Routes, NodeFact::Rules]
    } else if reason.contains(nf::NO_IPSET_DATA) {
        &[NodeFact::Ipsets]
    } else {
        return format!("netfilter cannot decide: {reason}{at}");
    };
    // Two captures that disagree: the engine's "no ipset data" is the model's doing, the
    // disagreement is the reason (fifth review).
    if let Some(n) = ctx.model.nodes.get(node) {
        if let Some((_, why)) = n.doubts.iter().find(|(f, _)| facts.contains(f)) {
            return format!("netfilter cannot decide{at}: {why}");
        }
    }
    let lacks = ctx.model.nodes.get(node).and_then(|n| {
        n.lacks(node, facts[0])
            .or_else(|| {
                // Read, but lines of them could not be: those are what the decision lacked.
                let bad: Vec<String> = n
                    .skipped
                    .iter()
                    .filter(|l| {
                        facts.iter().any(|f| {
                            n.read
                                .get(f)
                                .is_some_and(|files| files.iter().any(|s| s.file == l.source.file))
                        })
                    })
                    .map(|l| l.describe())
                    .filter(|d| !reason.contains(d.as_str()))
                    .take(3)
                    .collect();
                (!bad.is_empty()).then(|| bad.join("; "))
            })
            // Routes read whole, rules not: the lookup needed them (policy routing).
            .or_else(|| facts[1..].iter().find_map(|f| n.lacks(node, *f)))
    });
    match lacks {
        Some(l) => format!("netfilter cannot decide: {reason}{at}; {l}"),
        None => format!("netfilter cannot decide: {reason}{at}"),
    }
}

/// kube-proxy's rejection of a Service without endpoints, as the rule that decided it (its
/// text and place), or `None` for any other drop. iptables mode REJECTs in a rule commented
/// `NS/SVC:PORT has no endpoints` (pkg/proxy/iptables/proxier.go); nftables mode looks the
/// destination up in the `no-endpoint-services` (or `no-endpoint-nodeports`) verdict map of
/// its `kube-proxy` table, whose elements `goto reject-chain` (pkg/proxy/nftables/proxier.go).
pub(super) fn no_endpoints_rule(steps: &[nf::Step]) -> Option<String> {
    let cite = |s: &nf::Step| format!("{} ({}:{})", s.text, s.source.file, s.source.line);
    if let Some(s) = steps
        .iter()
        .rev()
        .find(|s| s.text.contains("has no endpoints"))
    {
        return Some(cite(s));
    }
    let [.., lookup, reject] = steps else {
        return None;
    };
    let in_kube_proxy = |s: &nf::Step, chain: &str| {
        let mut w = s.chain.split_whitespace().skip(1);
        w.next() == Some("kube-proxy") && w.next() == Some(chain)
    };
    let by_map = ["vmap @no-endpoint-services", "vmap @no-endpoint-nodeports"]
        .iter()
        .any(|m| lookup.text.contains(m));
    (in_kube_proxy(reject, "reject-chain") && by_map).then(|| {
        format!(
            "{} -> reject-chain ({}:{})",
            lookup.text, lookup.source.file, lookup.source.line
        )
    })
}

/// The node's own reasons to stop the first packet, in the kernel's order: the netfilter
/// verdict, the reverse-path filter (part of the input routing decision, after nat
/// PREROUTING), then forwarding on the input device. `None`: it goes on. The hop (if any)
/// says what decided it.
fn node_gates(ctx: &Ctx, arr: &Arrival, o: &nf::Outcome) -> Option<NodeStop> {
    if let Some(stop) = netfilter_gate(ctx, arr, o) {
        return Some(stop);
    }
    let n = ctx.model.nodes.get(&arr.node)?;
    // The reverse lookup sees the forward route's output device as its iif.
    let fwd_oif = if o.local_delivery {
        None
    } else {
        o.out_iface.as_deref()
    };
    if let Some(stop) = rp_filter_gate(ctx, arr, o, n, fwd_oif) {
        return Some(stop);
    }
    forwarding_gate(arr, o, n)
}

/// Why the node stops the first packet: the verdict, the reason and the hop (if any) that
/// says what decided it.
type NodeStop = (Verdict, String, Option<Hop>);

/// Netfilter's verdict on the first packet, if it stops it: no route found by the routing
/// decision, a drop or reject, or unknown.
fn netfilter_gate(ctx: &Ctx, arr: &Arrival, o: &nf::Outcome) -> Option<NodeStop> {
    match &o.verdict {
        nf::Verdict::Drop
            if o.notes
                .iter()
                .any(|n| n.starts_with("routing: no route to")) =>
        {
            // The routing decision found no route (no `ip rule` selects a table holding one):
            // not a drop by the last rule netfilter matched (issue #11, review).
            let reason = format!(
                "the node has no route to {}: no `ip rule` of <node> selects a table with a route to it (nodes/<node>/ip-rule.txt, ip-route.txt)",
                o.packet.dst
            );
            return Some((Verdict::NoRoute, reason, None));
        }
        nf::Verdict::Drop | nf::Verdict::Reject { .. } => {
            let rule = drop_cause(o);
            let (verdict, reason) = if let Some(rule) = no_endpoints_rule(&o.steps) {
                (
                    Verdict::NoEndpoints,
                    format!(
                        "the Service has no endpoints: kube-proxy rejects the connection: {rule}"
                    ),
                )
            } else {
                let what = if matches!(o.verdict, nf::Verdict::Drop) {
                    "dropped"
                } else {
                    "rejected"
                };
                (Verdict::Dropped, format!("{what} on the node by {rule}"))
            };
            return Some((verdict, reason, None));
        }
        nf::Verdict::Unknown { reason, rule } => {
            let r = nf_unknown_reason(ctx, &arr.node, reason, rule.as_ref());
            return Some((Verdict::Unknown, r, None));
        }
        nf::Verdict::Accept => {}
    }
    None
}

/// The reverse-path filter's verdict on the first packet (part of the input routing
/// decision, after nat PREROUTING), if it stops it or, not collected, might. `fwd_oif`: the
/// forward route's output device, which the reverse lookup sees as its iif.
fn rp_filter_gate(
    ctx: &Ctx,
    arr: &Arrival,
    o: &nf::Outcome,
    n: &kubepath_model::net::NodeNet,
    fwd_oif: Option<&str>,
) -> Option<NodeStop> {
    if routing::rp_filter_mode(n, &arr.in_iface).is_none() {
        // rp_filter was not collected: the verdict depends on it when a strict filter (the
        // default of many distributions) would drop this packet.
        let strict = routing::rp_filter_check_mode(
            n,
            ctx.node_routes(&arr.node),
            (&arr.in_iface, fwd_oif),
            ctx.req.client,
            o.packet.dst,
            1,
            FlowL4::Unknown,
        );
        if let Err(why) = strict {
            let reason = if n.interfaces.iter().any(|i| i.name == arr.in_iface) {
                format!(
                    "the snapshot has no sysctl output for <node> (sysctl -a): its rp_filter on {} is unknown, and in strict mode ({}) the kernel would drop the SYN; collect `sysctl -a` (or net.ipv4.conf.{{all,{}}}.rp_filter)",
                    arr.in_iface,
                    why.replace(&arr.node, "<node>"),
                    arr.in_iface
                )
            } else {
                format!(
                    "the interface the SYN arrives on at <node> is not in the snapshot (no `ip addr` output lists it), so its rp_filter is unknown, and in strict mode ({}) the kernel would drop the SYN; collect `ip addr` and `sysctl -a`",
                    why.replace(&arr.node, "<node>")
                )
            };
            let hop = Hop::new(
                "routing",
                arr.node.clone(),
                reason.replace("<node>", &arr.node),
            );
            return Some((Verdict::Unknown, reason, Some(hop)));
        }
    }
    if let Err(why) = routing::rp_filter_check(
        n,
        ctx.node_routes(&arr.node),
        (&arr.in_iface, fwd_oif),
        ctx.req.client,
        o.packet.dst,
        FlowL4::Unknown,
    ) {
        let src = n
            .sysctls
            .get(&format!("net.ipv4.conf.{}.rp_filter", arr.in_iface))
            .or_else(|| n.sysctls.get("net.ipv4.conf.all.rp_filter"))
            .map(|s| s.source.clone());
        let hop = Hop::new("routing", arr.node.clone(), why.clone()).src(src);
        let reason = format!(
            "the SYN is dropped by the reverse-path filter: {}",
            why.replace(&arr.node, "<node>")
        );
        return Some((Verdict::RpFilter, reason, Some(hop)));
    }
    None
}

/// Forwarding on the input device, if it stops (or may stop) the first packet.
fn forwarding_gate(
    arr: &Arrival,
    o: &nf::Outcome,
    n: &kubepath_model::net::NodeNet,
) -> Option<NodeStop> {
    // Forwarding, decided by the input device's own setting (ip_route_input_slow checks
    // IN_DEV_FORWARD(in_dev) and, when it is off, ip_error drops the packet without an ICMP
    // error: net/ipv4/route.c).
    if o.local_delivery {
        return None;
    }
    match n.forwarding(&arr.in_iface) {
        Some(true) => return None,
        Some(false) => {}
        None => {
            // Not in the snapshot: whether the kernel forwards is unknown. (It used to be
            // taken as on, as Kubernetes nodes need it; but forwarding turned off is exactly
            // the failure to find, and an unreadable sysctl output then read as "delivered":
            // issue #11, review.)
            let left = n
                .left_out
                .iter()
                .map(|(f, why)| format!("; {f} was left out ({why})"))
                .collect::<String>();
            let why = format!(
                "whether <node> forwards packets received on {} is not in the snapshot (no `net.ipv4.ip_forward` or `net.ipv4.conf.*.forwarding` in its sysctl output{left}): collect `sysctl -a` on the node",
                arr.in_iface
            )
            .replace(&format!("nodes/{}/", arr.node), "nodes/<node>/");
            let hop = Hop::new(
                "routing",
                arr.node.clone(),
                why.replace("<node>", &arr.node),
            );
            return Some((Verdict::Unknown, why, Some(hop)));
        }
    }
    let key = format!("net.ipv4.conf.{}.forwarding", arr.in_iface);
    let s = [
        key.as_str(),
        "net.ipv4.ip_forward",
        "net.ipv4.conf.all.forwarding",
    ]
    .into_iter()
    .find_map(|k| n.sysctls.get(k).map(|s| (k, s)));
    let why = format!(
        "forwarding is off for packets received on {} ({} = 0{}): the kernel does not route them on to {}, it drops them silently",
        arr.in_iface,
        s.map(|(k, _)| k).unwrap_or(key.as_str()),
        s.map(|(_, s)| format!(", {}", s.source))
            .unwrap_or_default()
            .replace(&format!("nodes/{}/", arr.node), "nodes/<node>/"),
        o.packet.dst
    );
    let hop =
        Hop::new("routing", arr.node.clone(), why.clone()).src(s.map(|(_, s)| s.source.clone()));
    Some((
        Verdict::Dropped,
        format!("dropped on the node: {why}"),
        Some(hop),
    ))
}

/// A first packet the node accepts without DNAT: delivered to the node itself (what listens
/// there is not in the snapshot), or forwarded on and followed through the routers.
fn not_natted(
    ctx: &Ctx,
    acc: &mut Acc,
    arr: &Arrival,
    o: &nf::Outcome,
    mut fwd: Vec<Hop>,
    base: PathOut,
) {
    let addr = arr.dst;
    let reason = if o.local_delivery {
        format!(
            "{addr}:{} is not NATed by kube-proxy on the node and is delivered to the node's own stack; the snapshot does not say what listens there",
            ctx.dport
        )
    } else {
        format!(
            "{addr}:{} is not NATed on the node and is forwarded out of {}: beyond the snapshot",
            ctx.dport,
            o.out_iface.as_deref().unwrap_or("an unknown interface")
        )
    };
    fwd.push(Hop::new("node", arr.node.clone(), reason.clone()));
    if !o.local_delivery {
        if let Some((first, beyond)) = forwarded_on(ctx, arr, o) {
            for (pw, verdict, why, hops) in beyond.iter() {
                let path = PathOut {
                    p: base.p * pw,
                    verdict: *verdict,
                    reason: why.clone(),
                    ..clone_base(&base)
                };
                acc.add_with(path, || {
                    let mut f = Vec::with_capacity(fwd.len() + 1 + hops.len());
                    f.extend(fwd.iter().cloned());
                    f.push(first.clone());
                    f.extend(hops.iter().cloned());
                    (f, Vec::new())
                });
            }
            return;
        }
    }
    acc.add(PathOut {
        reason,
        forward: fwd,
        ..base
    });
}

pub(super) fn trace_arrival(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    acc: &mut Acc,
    addr: IpAddr,
    arr: &Arrival,
    p_arr: f64,
    fwd0: Vec<Hop>,
) {
    let client = ctx.req.client;
    let pkt = nf_packet(ctx, client, ctx.sport, addr, ctx.dport, Some(&arr.in_iface));
    let mut stage = NodeStage {
        node: arr.node.clone(),
        in_iface: arr.in_iface.clone(),
        probability: p_arr,
        members: vec![(arr.node.clone(), p_arr)],
        outcomes: Vec::new(),
    };
    let tr = match nf_trace(ctx, &arr.node, &pkt) {
        Ok(t) => t,
        Err(reason) => {
            let mut fwd = fwd0;
            fwd.push(Hop::new("netfilter", arr.node.clone(), reason.clone()));
            // The branch reason names no node, so nodes missing the same output group
            // together; the branch lists them.
            let generic = reason.replace(&arr.node, "<node>");
            acc.add(PathOut {
                node: Some(arr.node.clone()),
                ..unknown_path(p_arr, generic, fwd)
            });
            push_stage(result, stage);
            return;
        }
    };
    for o in &tr.outcomes {
        let p = p_arr * o.probability;
        let mut fwd = fwd0.clone();
        let steps = steps_hops(&arr.node, &o.steps);
        fwd.extend(steps.iter().cloned());
        let dnat_ip = o.dnat.as_ref().and_then(|d| d.addr);
        let pod = dnat_ip.and_then(|ip| ctx.pod_by_ip(ip));
        stage.outcomes.push(NodeOutcome {
            probability: o.probability,
            verdict: o.verdict.name().to_string(),
            dnat: o.dnat.as_ref().map(|d| d.to_string()),
            masquerade: o.masquerade || o.snat.is_some(),
            pod: pod.map(pod_name),
            steps,
        });
        let base = PathOut {
            p,
            verdict: Verdict::Unknown,
            reason: String::new(),
            forward: Vec::new(),
            ret: Vec::new(),
            node: Some(arr.node.clone()),
            ingress_pod: None,
            backends: Shares::default(),
            http_status: None,
        };
        if let Some((verdict, reason, hop)) = node_gates(ctx, arr, o) {
            fwd.extend(hop);
            acc.add(PathOut {
                verdict,
                reason,
                forward: fwd,
                ..base
            });
            continue;
        }
        let Some(dnat) = o.dnat.as_ref() else {
            not_natted(ctx, acc, arr, o, fwd, base);
            continue;
        };
        let Some(target_ip) = dnat.addr else {
            acc.add(PathOut {
                reason: "DNAT target address unknown".into(),
                forward: fwd,
                ..base
            });
            continue;
        };
        let target_port = dnat.port.unwrap_or(ctx.dport);
        let Some(pod) = pod else {
            let reason = ctx.no_pod_reason("DNAT target", target_ip);
            fwd.push(Hop::new("pod-network", arr.node.clone(), reason.clone()));
            acc.add(PathOut {
                reason,
                forward: fwd,
                ..base
            });
            continue;
        };
        let masq = o.masquerade || o.snat.is_some();
        let at = AtPod {
            arr,
            o,
            pod,
            target_ip,
            target_port,
            masq,
        };
        to_pod(ctx, result, acc, &at, p, fwd, base);
    }
    push_stage(result, stage);
}

/// What the receiving node's route to the DNAT target (the pod) does with the packet.
enum PodNet {
    /// On to the pod: the interface it leaves by (towards the pod or the pod's node).
    On { iface: Option<String>, hop: Hop },
    /// It never reaches the pod (routed back to a router, or no route).
    Stops {
        verdict: Verdict,
        reason: String,
        hop: Hop,
    },
}

/// The receiving node's route to the DNAT target (the pod).
fn pod_network(ctx: &mut Ctx, at: &AtPod) -> PodNet {
    let (arr, o, pod, target_ip) = (at.arr, at.o, at.pod, at.target_ip);
    let pod_key = pod_name(pod);
    let pod_node = pod.node_name.clone().unwrap_or_default();
    let hop = |text: String| Hop::new("pod-network", arr.node.clone(), text);
    let Some(l) = ctx.route(
        &arr.node,
        &Flow {
            src: Some(ctx.req.client), // routed before POSTROUTING masquerades it
            dst: target_ip,
            iif: Some(&arr.in_iface),
            // The mark the routing decision saw (kube-proxy clears 0x4000 in nat
            // POSTROUTING, after it).
            mark: o.route_mark.unwrap_or(o.packet.mark),
            l4: FlowL4::Unknown,
        },
    ) else {
        return PodNet::On {
            iface: None,
            hop: hop(format!("to pod {pod_key}: assumed delivered by the CNI")),
        };
    };
    match &l.result {
        Ok(RHop::Forward { dev, gateway, .. })
            if gateway.is_some_and(|g| fabric::gateway_owner(ctx.model, g).is_some()) =>
        {
            // The DNATed packet is routed back to a router: it leaves the cluster.
            let g = gateway.unwrap_or(target_ip);
            let owner = fabric::gateway_owner(ctx.model, g)
                .map(|(r, i)| format!("{} {}", r.name, i.name))
                .unwrap_or_default();
            let reason = format!(
                "the node routes the DNATed packet for pod {pod_key} ({target_ip}) out of {} via {g} ({owner}, a router): {}`{}`; it leaves the cluster and never reaches the pod",
                dev.as_deref().unwrap_or("?"),
                l.rule.as_ref().map(|r| format!("rule `{}` -> ", rule_text(r))).unwrap_or_default(),
                l.route.as_ref().map(route_text).unwrap_or_default()
            );
            PodNet::Stops {
                verdict: Verdict::NoRoute,
                reason: reason.clone(),
                hop: hop(reason).src(l.source()),
            }
        }
        Ok(RHop::Forward { dev, gateway, .. }) => {
            let to = if pod_node == arr.node {
                format!(
                    "pod {pod_key} is local on {}",
                    dev.as_deref().unwrap_or("?")
                )
            } else {
                format!(
                    "to pod {pod_key} on {pod_node}: out of {}{}",
                    dev.as_deref().unwrap_or("?"),
                    gateway.map(|g| format!(" via {g}")).unwrap_or_default()
                )
            };
            let text = format!(
                "{to} (route `{}`)",
                l.route.as_ref().map(route_text).unwrap_or_default()
            );
            PodNet::On {
                iface: dev.clone(),
                hop: hop(text).src(l.source()),
            }
        }
        Ok(RHop::Local) => PodNet::On {
            iface: None,
            hop: hop(format!("{target_ip} is local on the node")),
        },
        Err(RouteFailure::Unknown(why)) => {
            ctx.notes.insert(format!(
                "pod network: {why}; assumed the CNI delivers to the pod"
            ));
            PodNet::On {
                iface: None,
                hop: hop(format!(
                    "to pod {pod_key} on {pod_node}: assumed delivered by the CNI ({why})"
                )),
            }
        }
        Err(e) => {
            let reason = format!("the node has no route to pod {pod_key} ({target_ip}): {e:?}");
            PodNet::Stops {
                verdict: Verdict::NoRoute,
                reason: reason.clone(),
                hop: hop(reason),
            }
        }
    }
}

/// From the receiving node to the pod: the pod network (the node's route to the DNAT target),
/// the pod's node's own netfilter when it is another node, then the pod and the reply.
fn to_pod(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    acc: &mut Acc,
    at: &AtPod,
    p: f64,
    mut fwd: Vec<Hop>,
    base: PathOut,
) {
    let (arr, o, pod, target_ip, target_port) =
        (at.arr, at.o, at.pod, at.target_ip, at.target_port);
    let pod_node = pod.node_name.clone().unwrap_or_default();
    if let Some(why) = ctx.pod_node_doubt(pod, target_ip) {
        fwd.push(Hop::new("pod-network", arr.node.clone(), why.clone()));
        acc.add(PathOut {
            verdict: Verdict::Unknown,
            reason: why,
            forward: fwd,
            ..base
        });
        return;
    }
    // 5. Pod network: from the receiving node to the pod.
    let pod_iface_on_arrival = match pod_network(ctx, at) {
        PodNet::On { iface, hop } => {
            fwd.push(hop);
            iface
        }
        PodNet::Stops {
            verdict,
            reason,
            hop,
        } => {
            fwd.push(hop);
            acc.add(PathOut {
                verdict,
                reason,
                forward: fwd,
                ..base
            });
            return;
        }
    };
    // On the pod's node (when different): its own netfilter sees a NEW packet.
    // A pod's node whose ruleset is not in the snapshot is unknown, not a pass (issue #11,
    // review: a removed iptables-save of the ingress pod's node gave `delivered`).
    if pod_node != arr.node {
        let in_if = pod_iface_on_arrival.clone();
        let pkt2 = nf_packet(
            ctx,
            o.packet.src,
            o.packet.sport,
            target_ip,
            target_port,
            in_if.as_deref(),
        );
        let t2 = match nf_trace(ctx, &pod_node, &pkt2) {
            Ok(t2) => Some(t2),
            // The pod's node has no ruleset in the snapshot, or rules that cannot be evaluated
            // (an nft ruleset left out, nft and iptables rules not evaluable together):
            // unknown, not a pass.
            Err(why) => {
                let mut f2 = fwd.clone();
                f2.push(Hop::new("netfilter", pod_node.clone(), why.clone()));
                acc.add(PathOut {
                    p,
                    verdict: Verdict::Unknown,
                    reason: format!("on the pod's node {pod_node}: {why}"),
                    forward: f2,
                    ..clone_base(&base)
                });
                return;
            }
        };
        if let Some(t2) = t2 {
            let bad: f64 = t2
                .outcomes
                .iter()
                .filter(|x| x.verdict != nf::Verdict::Accept)
                .map(|x| x.probability)
                .sum();
            if bad > 1e-12 {
                let first = t2
                    .outcomes
                    .iter()
                    .find(|x| x.verdict != nf::Verdict::Accept);
                if let Some(x) = first {
                    let mut f2 = fwd.clone();
                    f2.extend(steps_hops(&pod_node, &x.steps));
                    let reason = match &x.verdict {
                        nf::Verdict::Unknown { reason, rule } => format!(
                            "on the pod's node {pod_node}: {}",
                            nf_unknown_reason(ctx, &pod_node, reason, rule.as_ref())
                        ),
                        v => format!(
                            "{} on the pod's node {pod_node} by {}",
                            if matches!(v, nf::Verdict::Drop) {
                                "dropped"
                            } else {
                                "rejected"
                            },
                            drop_cause(x)
                        ),
                    };
                    let v = if matches!(x.verdict, nf::Verdict::Unknown { .. }) {
                        Verdict::Unknown
                    } else {
                        Verdict::Dropped
                    };
                    acc.add(PathOut {
                        p: p * bad,
                        verdict: v,
                        reason,
                        forward: f2,
                        ..clone_base(&base)
                    });
                }
            }
            let ok = 1.0 - bad;
            if ok <= 1e-12 {
                return;
            }
            reach_pod(ctx, result, acc, at, p * ok, fwd, base);
            return;
        }
    }
    reach_pod(ctx, result, acc, at, p, fwd, base);
}

pub(super) fn reach_pod(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    acc: &mut Acc,
    at: &AtPod,
    p: f64,
    mut fwd: Vec<Hop>,
    base: PathOut,
) {
    let (pod, target_ip, target_port) = (at.pod, at.target_ip, at.target_port);
    let pod_key = pod_name(pod);
    let pod_node = pod.node_name.clone().unwrap_or_default();
    fwd.push(
        Hop::new(
            "pod",
            pod_key.clone(),
            format!("pod {pod_key} ({target_ip}:{target_port}) on {pod_node}"),
        )
        .src(Some(pod.source.clone())),
    );
    // 7. The client-facing return path.
    let returns = return_path(ctx, at);

    // 6. L7, when the pod is an ingress controller.
    let controller = ctx
        .index
        .controllers
        .get(&(pod.key.namespace.clone(), pod.key.name.clone()))
        .cloned();
    let http = matches!(ctx.req.target, Target::Url { .. }) || matches!(ctx.dport, 80 | 443);
    for (pr, ret_verdict, ret_reason, ret_hops) in returns {
        match (&controller, http) {
            (Some(c), true) => {
                let l7 = ingress_leg(ctx, result, c, pod, target_port);
                for leg in l7.iter() {
                    // A handshake that never completes carries no request and no HTTP
                    // answer; the L7 hops still show where the request would go (the
                    // distribution is the forward path, the verdict says whether it works).
                    let (verdict, reason, status) = if ret_verdict != Verdict::Delivered {
                        (ret_verdict, ret_reason.clone(), None)
                    } else {
                        (leg.verdict, leg.reason.clone(), leg.status)
                    };
                    let mut f = fwd.clone();
                    f.extend(leg.hops.iter().cloned());
                    acc.add(PathOut {
                        p: p * pr * leg.p,
                        verdict,
                        reason,
                        forward: f,
                        ret: ret_hops.clone(),
                        node: base.node.clone(),
                        ingress_pod: Some(pod_key.clone()),
                        backends: leg.backends.clone(),
                        http_status: status,
                    });
                }
            }
            _ => {
                acc.add(PathOut {
                    p: p * pr,
                    verdict: ret_verdict,
                    reason: if ret_verdict == Verdict::Delivered {
                        format!("delivered to {}", pod.key.namespace)
                    } else {
                        ret_reason
                    },
                    forward: fwd.clone(),
                    ret: ret_hops,
                    node: base.node.clone(),
                    ingress_pod: None,
                    backends: std::rc::Rc::new(vec![(pod_key.clone(), 1.0)]),
                    http_status: None,
                });
            }
        }
    }
}
