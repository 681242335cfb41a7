//! The trace engine: forward path, return path, aggregation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use kubepath_model::k8s::Pod;
use kubepath_model::net::{NodeNet, Route};
use kubepath_model::{Model, SourceRef};
use kubepath_netfilter as nf;

use super::fabric::{self, FabricError};
use super::routing::{self, Flow, Hop as RHop, RouteFailure};
use super::text::{route_text, rule_text};
use super::walk::{self, End, VrfRef, Walk};
use super::{
    Branch, Entry, Hop, NodeOutcome, NodeStage, Target, TraceRequest, TraceResult, Verdict, L4,
};
use crate::ingress::{ControllerRef, HttpRequest, IngressView, Scheme};

/// The default ephemeral source port shown when the request gives none.
const EPHEMERAL_PORT: u16 = 40000;

/// One complete path, before aggregation.
struct PathOut {
    p: f64,
    verdict: Verdict,
    reason: String,
    forward: Vec<Hop>,
    ret: Vec<Hop>,
    node: Option<String>,
    ingress_pod: Option<String>,
    /// Backend pods with their share of this path (summing to 1, or empty). Shared, so
    /// the many paths through one ingress pod do not copy its backend list.
    backends: Shares,
    http_status: Option<u16>,
}

/// Backend pods with their shares, shared between paths.
type Shares = std::rc::Rc<Vec<(String, f64)>>;

#[derive(Default)]
struct Acc {
    branches: BTreeMap<(Verdict, String), (Branch, f64)>,
    nodes: BTreeMap<String, f64>,
    ingress_pods: BTreeMap<String, f64>,
    backends: BTreeMap<String, f64>,
    verdicts: BTreeMap<Verdict, f64>,
    edges: BTreeMap<(String, String), f64>,
    /// Mass per (backend list, previous hop): expanded into `backends` and `edges` at the end.
    backend_mass: HashMap<(usize, Option<String>), (Shares, f64)>,
    /// Backend lists seen per branch key.
    branch_shares: HashMap<(Verdict, String), HashMap<usize, Shares>>,
}

impl Acc {
    fn add(&mut self, path: PathOut) {
        if path.p <= 0.0 {
            return;
        }
        *self.verdicts.entry(path.verdict).or_default() += path.p;
        if let Some(n) = &path.node {
            *self.nodes.entry(n.clone()).or_default() += path.p;
        }
        if let Some(i) = &path.ingress_pod {
            *self.ingress_pods.entry(i.clone()).or_default() += path.p;
        }
        if let (Some(n), Some(i)) = (&path.node, &path.ingress_pod) {
            *self.edges.entry((n.clone(), i.clone())).or_default() += path.p;
        }
        if !path.backends.is_empty() {
            let from = path.ingress_pod.clone().or_else(|| path.node.clone());
            let id = std::rc::Rc::as_ptr(&path.backends) as usize;
            let e = self
                .backend_mass
                .entry((id, from))
                .or_insert_with(|| (path.backends.clone(), 0.0));
            e.1 += path.p;
            self.branch_shares
                .entry((path.verdict, path.reason.clone()))
                .or_default()
                .entry(id)
                .or_insert_with(|| path.backends.clone());
        }
        let key = (path.verdict, path.reason.clone());
        let entry = self.branches.entry(key).or_insert_with(|| {
            (
                Branch {
                    probability: 0.0,
                    verdict: path.verdict,
                    reason: path.reason.clone(),
                    forward: Vec::new(),
                    ret: Vec::new(),
                    members: 0,
                    nodes: Vec::new(),
                    ingress_pods: Vec::new(),
                    backends: Vec::new(),
                    http_status: path.http_status,
                },
                -1.0,
            )
        });
        let (b, best) = entry;
        b.probability += path.p;
        b.members += 1;
        for (list, v) in [
            (&mut b.nodes, &path.node),
            (&mut b.ingress_pods, &path.ingress_pod),
        ] {
            if let Some(v) = v {
                if let Err(pos) = list.binary_search(v) {
                    list.insert(pos, v.clone());
                }
            }
        }

        if path.p > *best {
            *best = path.p;
            b.forward = path.forward;
            b.ret = path.ret;
            b.http_status = path.http_status;
        }
    }
}

/// Where a SYN arrived on a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Arrival {
    node: String,
    in_iface: String,
    router: String,
    router_iface: Option<String>,
    vrf: String,
    /// Every VRF the request went through on the routers (sorted): a reply routed into any
    /// other VRF does not come back the way the connection was opened.
    path_vrfs: Vec<String>,
}

struct NodeOracle<'a> {
    node: &'a NodeNet,
    synth: &'a [Route],
}

impl nf::RouteOracle for NodeOracle<'_> {
    fn route(&self, pkt: &nf::Packet) -> nf::RouteDecision {
        let l = routing::lookup(
            self.node,
            self.synth,
            &Flow {
                src: Some(pkt.src),
                dst: pkt.dst,
                iif: pkt.in_iface.as_deref(),
                mark: pkt.mark,
            },
        );
        match l.result {
            Ok(RHop::Local) => nf::RouteDecision::Local,
            Ok(RHop::Forward { dev, src, .. }) => nf::RouteDecision::Forward {
                out_iface: dev,
                src_hint: src,
            },
            Err(RouteFailure::NoRoute) | Err(RouteFailure::Rejected { .. }) => {
                nf::RouteDecision::Unreachable
            }
            Err(RouteFailure::Unknown(_)) => nf::RouteDecision::Forward {
                out_iface: None,
                src_hint: None,
            },
        }
    }
}

struct Ctx<'m> {
    model: &'m Model,
    req: &'m TraceRequest,
    synth: BTreeMap<String, Vec<Route>>,
    local_addrs: BTreeMap<String, Vec<IpAddr>>,
    pods_by_ip: HashMap<IpAddr, &'m Pod>,
    view: IngressView,
    controllers: HashMap<(String, String), ControllerRef>,
    sport: u16,
    dport: u16,
    /// The address being traced (after DNS).
    cur_addr: Option<IpAddr>,
    notes: BTreeSet<String>,
    /// Ingress notes, merged across controller pods that say the same thing.
    ingress_notes: BTreeMap<String, BTreeSet<String>>,
    /// Weights of the next hops of the last reply route, when it is multipath.
    reply_nexthops: Vec<u32>,
    /// Memoized L7 legs per (controller pod, port).
    leg_memo: HashMap<(String, u16), std::rc::Rc<Vec<Leg>>>,
    /// Where the client's traffic enters the fabric (for the address being traced): a reply
    /// that reaches one of these is on the client's own way back.
    exits: Vec<VrfRef>,
}

fn pod_name(p: &Pod) -> String {
    format!("{}/{}", p.key.namespace, p.key.name)
}

impl<'m> Ctx<'m> {
    fn new(model: &'m Model, req: &'m TraceRequest, dport: u16) -> Self {
        let mut synth = BTreeMap::new();
        let mut local_addrs = BTreeMap::new();
        for (name, n) in &model.nodes {
            synth.insert(name.clone(), routing::synth_local_routes(n));
            let addrs: Vec<IpAddr> = n
                .interfaces
                .iter()
                .flat_map(|i| i.addresses.iter().map(|a| a.address.addr()))
                .collect();
            local_addrs.insert(name.clone(), addrs);
        }
        let mut pods_by_ip: HashMap<IpAddr, &Pod> = HashMap::new();
        for p in &model.cluster.pods {
            if p.host_network || p.terminating {
                continue;
            }
            for ip in &p.pod_ips {
                pods_by_ip.entry(*ip).or_insert(p);
            }
        }
        let view = IngressView::new(model);
        let controllers = view
            .controllers()
            .into_iter()
            .filter_map(|c| c.pod.clone().map(|k| (k, c)))
            .collect();
        Ctx {
            model,
            req,
            synth,
            local_addrs,
            pods_by_ip,
            view,
            controllers,
            sport: req.client_port.unwrap_or(EPHEMERAL_PORT),
            dport,
            cur_addr: None,
            notes: BTreeSet::new(),
            ingress_notes: BTreeMap::new(),
            leg_memo: HashMap::new(),
            reply_nexthops: Vec::new(),
            exits: Vec::new(),
        }
    }

    fn synth(&self, node: &str) -> &[Route] {
        self.synth.get(node).map(|v| v.as_slice()).unwrap_or(&[])
    }

    fn route(&self, node: &str, flow: &Flow) -> Option<routing::Lookup> {
        let n = self.model.nodes.get(node)?;
        Some(routing::lookup(n, self.synth(node), flow))
    }

    fn node_owning(&self, addr: IpAddr) -> Option<(String, String)> {
        for (name, n) in &self.model.nodes {
            if let Some(i) = n.interface_with_address(addr) {
                return Some((name.clone(), i.name.clone()));
            }
        }
        // A node whose outputs are missing but whose Node object has the address: the trace
        // continues to it and says what is missing there.
        self.model
            .cluster
            .nodes
            .values()
            .find(|n| n.addresses().any(|a| *a == addr))
            .map(|n| (n.name.clone(), "?".to_string()))
    }
}

/// Runs the trace on `model` as it is (what-ifs must already be applied). No fixes.
pub fn run(model: &Model, req: &TraceRequest) -> TraceResult {
    let mut result = TraceResult {
        client: Some(req.client),
        target: format!("{:?}", req.target),
        ..TraceResult::default()
    };
    let Some(dport) = req.target.port() else {
        result
            .notes
            .push("no destination port given (use IP:PORT)".into());
        result.verdicts.insert(Verdict::Unknown, 1.0);
        result
            .branches
            .push(unknown_branch(1.0, "no destination port given", Vec::new()));
        return result;
    };
    result.dport = Some(dport);
    let mut ctx = Ctx::new(model, req, dport);
    if req.client_port.is_none() {
        ctx.notes.insert(format!(
            "no client port given: shown for source port {EPHEMERAL_PORT}; every ECMP and statistic split is by probability, so the result holds for any port"
        ));
    }
    let mut acc = Acc::default();

    // 1. DNS.
    let mut dns_hops = Vec::new();
    let addresses: Vec<(IpAddr, f64)> = match &req.target {
        Target::Addr { ip, .. } => {
            result.resolved.addresses.push((*ip, None));
            vec![(*ip, 1.0)]
        }
        Target::Url { host, .. } | Target::Host { host, .. } => {
            if let Ok(ip) = host.parse::<IpAddr>() {
                result.resolved.addresses.push((ip, None));
                vec![(ip, 1.0)]
            } else {
                result.resolved.name = Some(host.clone());
                let res = model.dns.resolve(host);
                for c in &res.chain {
                    if let kubepath_model::dns::RData::Cname(t) = &c.data {
                        result
                            .resolved
                            .cnames
                            .push((c.name.clone(), t.clone(), c.source.clone()));
                        dns_hops.push(
                            Hop::new(
                                "dns",
                                "",
                                format!("{} is an alias (CNAME) for {}", c.name, t),
                            )
                            .src(Some(c.source.clone())),
                        );
                    }
                }
                for a in &res.addresses {
                    let ip = match a.data {
                        kubepath_model::dns::RData::A(v4) => IpAddr::V4(v4),
                        kubepath_model::dns::RData::Aaaa(v6) => IpAddr::V6(v6),
                        _ => continue,
                    };
                    result.resolved.addresses.push((ip, Some(a.source.clone())));
                    dns_hops.push(
                        Hop::new("dns", "", format!("{} has address {ip}", a.name))
                            .src(Some(a.source.clone())),
                    );
                }
                if res.loop_detected {
                    let reason = format!("the CNAME chain of {host} loops");
                    acc.add(unknown_path(1.0, reason, dns_hops.clone()));
                    return finish(result, acc, ctx);
                }
                if result.resolved.addresses.is_empty() {
                    let reason = if model.dns.records.is_empty() {
                        format!("the snapshot has no DNS data (dns/): cannot resolve {host}")
                    } else {
                        format!("no A/AAAA record for {host} in the snapshot's DNS data")
                    };
                    acc.add(unknown_path(1.0, reason, dns_hops.clone()));
                    return finish(result, acc, ctx);
                }
                let n = result.resolved.addresses.len() as f64;
                if n > 1.0 {
                    ctx.notes.insert(format!(
                        "{host} has {} addresses: shown as an even split (clients usually take the first answer, resolvers rotate them)",
                        n
                    ));
                }
                result
                    .resolved
                    .addresses
                    .iter()
                    .map(|(ip, _)| (*ip, 1.0 / n))
                    .collect()
            }
        }
    };

    for (addr, pa) in addresses {
        ctx.cur_addr = Some(addr);
        trace_address(&mut ctx, &mut result, &mut acc, addr, pa, &dns_hops);
    }
    finish(result, acc, ctx)
}

fn unknown_path(p: f64, reason: String, forward: Vec<Hop>) -> PathOut {
    PathOut {
        p,
        verdict: Verdict::Unknown,
        reason,
        forward,
        ret: Vec::new(),
        node: None,
        ingress_pod: None,
        backends: Shares::default(),
        http_status: None,
    }
}

fn unknown_branch(p: f64, reason: &str, forward: Vec<Hop>) -> Branch {
    Branch {
        probability: p,
        verdict: Verdict::Unknown,
        reason: reason.to_string(),
        forward,
        ret: Vec::new(),
        members: 1,
        nodes: Vec::new(),
        ingress_pods: Vec::new(),
        backends: Vec::new(),
        http_status: None,
    }
}

fn finish(mut result: TraceResult, acc: Acc, ctx: Ctx) -> TraceResult {
    let mut branch_shares = acc.branch_shares;
    let mut branches: Vec<Branch> = acc
        .branches
        .into_iter()
        .map(|(key, (mut b, _))| {
            let mut names: BTreeSet<String> = b.backends.drain(..).collect();
            if let Some(lists) = branch_shares.remove(&key) {
                for l in lists.values() {
                    names.extend(l.iter().map(|(n, _)| n.clone()));
                }
            }
            b.backends = names.into_iter().collect();
            b
        })
        .collect();
    branches.sort_by(|a, b| {
        b.probability
            .partial_cmp(&a.probability)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.verdict.cmp(&b.verdict))
            .then(a.reason.cmp(&b.reason))
    });
    result.branches = branches;
    result.verdicts = acc.verdicts;
    result.distribution_nodes = acc.nodes;
    result.distribution_ingress_pods = acc.ingress_pods;
    let mut backends = acc.backends;
    let mut edges = acc.edges;
    for ((_, from), (shares, mass)) in acc.backend_mass {
        for (b, share) in shares.iter() {
            *backends.entry(b.clone()).or_default() += mass * share;
            if let Some(f) = &from {
                *edges.entry((f.clone(), b.clone())).or_default() += mass * share;
            }
        }
    }
    result.distribution_backends = backends;
    result.edges = edges;
    result.node_stages = group_stages(std::mem::take(&mut result.node_stages));
    result.notes.extend(ctx.notes);
    for (note, pods) in ctx.ingress_notes {
        let who = if pods.len() == 1 {
            pods.into_iter().next().unwrap_or_default()
        } else {
            format!("{} controller pods", pods.len())
        };
        result.notes.push(format!("ingress ({who}): {note}"));
    }
    result
}

/// Entry points for the client: the manifest's longest matching client prefix; else every
/// router VRF with a default route.
fn entries(model: &Model, client: IpAddr) -> Result<Vec<Entry>, String> {
    let mut best: Option<(&kubepath_model::manifest::ClientEntry, u8)> = None;
    for c in &model.manifest.clients {
        for p in &c.prefixes {
            if p.contains(&client) && best.is_none_or(|(_, l)| p.prefix_len() > l) {
                best = Some((c, p.prefix_len()));
            }
        }
    }
    if let Some((c, _)) = best {
        let n = c.entry.len().max(1) as f64;
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

fn trace_address(
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
    ctx.exits = ents
        .iter()
        .map(|e| VrfRef::new(&e.router, &e.vrf))
        .collect();
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
        match fabric::lookup(model, &e.router, &e.vrf, addr) {
            Err(FabricError::NoRoute(reason)) => {
                let mut fwd = dns_hops.to_vec();
                fwd.push(entry_hop);
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
                let mut fwd = dns_hops.to_vec();
                fwd.push(entry_hop);
                fwd.push(Hop::new("router", e.router.clone(), reason.clone()));
                acc.add(unknown_path(pe, reason, fwd));
            }
            Ok(mut fl) => {
                let n = fl.next_hops.len();
                let (fl_router, fl_vrf, fl_prefix, fl_via) =
                    (fl.router.clone(), fl.vrf.clone(), fl.prefix, fl.via.clone());
                for nh in fl.next_hops.iter_mut() {
                    let mut fwd = dns_hops.to_vec();
                    fwd.push(entry_hop.clone());
                    let what = if nh.connected {
                        format!(
                            "{} matches {} ({}) in VRF {}: {addr} is on a connected subnet{}",
                            addr,
                            fl_prefix,
                            fl_via,
                            fl_vrf,
                            nh.iface
                                .as_deref()
                                .map(|i| format!(" of {i}"))
                                .unwrap_or_default()
                        )
                    } else {
                        format!(
                            "{} matches {} ({}) in VRF {}: {} equal-cost next hop{}; this one: {}{}",
                            addr,
                            fl_prefix,
                            fl_via,
                            fl_vrf,
                            n,
                            if n == 1 { "" } else { "s" },
                            nh.addr,
                            nh.iface.as_deref().map(|i| format!(" via {i}")).unwrap_or_default()
                        )
                    };
                    fwd.push(
                        Hop::new("router", fl_router.clone(), what)
                            .src(Some(nh.source.clone()))
                            .p(nh.probability),
                    );
                    // Which node owns the next hop (or the destination, when connected)?
                    let owner = ctx.node_owning(nh.addr).or_else(|| {
                        if nh.connected {
                            l2_owner(ctx, addr, fl_prefix)
                        } else {
                            None
                        }
                    });
                    let p = pe * nh.probability;
                    nh.node = owner.clone();
                    match owner {
                        Some((node, iface)) => {
                            fwd.push(Hop::new(
                                "node",
                                node.clone(),
                                format!("{} is {node}'s address on {iface}: the packet arrives on {iface}", nh.addr),
                            ));
                            let key = Arrival {
                                node,
                                in_iface: iface,
                                router: fl_router.clone(),
                                router_iface: nh.iface.clone(),
                                vrf: fl_vrf.clone(),
                                path_vrfs: vec![fl_vrf.clone()],
                            };
                            let slot = arrivals.entry(key).or_insert((0.0, fwd));
                            slot.0 += p;
                        }
                        None if !nh.connected
                            && fabric::gateway_owner(model, nh.addr).is_some() =>
                        {
                            // Another router of the snapshot: follow the packet there.
                            forward_walk(
                                ctx,
                                acc,
                                &mut arrivals,
                                addr,
                                (nh.addr, &fl_router, &fl_vrf),
                                p,
                                fwd,
                            );
                        }
                        None => {
                            let reason = format!(
                                "next hop {} of {} is not an address of any node in the snapshot",
                                nh.addr, fl_router
                            );
                            fwd.push(Hop::new("node", "", reason.clone()));
                            acc.add(unknown_path(p, reason, fwd));
                        }
                    }
                }
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

/// The request handed by an entry router to another router of the snapshot (`next_hop` is
/// that router's address): followed hop by hop until a node takes it.
fn forward_walk(
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
        acc.add(PathOut {
            p: pw,
            verdict,
            reason,
            forward: f,
            ..unknown_path(0.0, String::new(), Vec::new())
        });
    }
}

/// A packet the node forwards without NAT, followed through the routers: when they hand it
/// back to a node that forwards it the same way to a router already on the path, it is a
/// routing loop (the kernel decrements the TTL at each hop until it is dropped). `None` when
/// the way on cannot be followed (the caller reports it as leaving the snapshot); else one
/// outcome per router path, with its probability.
fn forwarded_on(ctx: &Ctx, arr: &Arrival, o: &nf::Outcome) -> Option<Vec<RetOut>> {
    let dst = o.packet.dst;
    let gw_of = |node: &str, iif: &str| {
        let l = ctx.route(
            node,
            &Flow {
                src: Some(o.packet.src),
                dst,
                iif: Some(iif),
                // The mark the routing decision saw (kube-proxy clears 0x4000 in
                // nat POSTROUTING, after it).
                mark: o.route_mark.unwrap_or(o.packet.mark),
            },
        )?;
        match l.result {
            Ok(RHop::Forward {
                gateway: Some(g), ..
            }) => Some((g, l)),
            _ => None,
        }
    };
    let (g, l) = gw_of(&arr.node, &arr.in_iface)?;
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
    let node_owner = |a: IpAddr| ctx.node_owning(a);
    let walked = Walk {
        model: ctx.model,
        dst,
        stage: "router",
        exits: &[],
        node_owner: &node_owner,
    }
    .run(start.clone());
    let what = format!("{dst}:{} is not NATed on the node", ctx.dport);
    let mut out = Vec::new();
    for w in walked {
        let mut hops = vec![first.clone()];
        hops.extend(w.hops.iter().cloned());
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
                let back = gw_of(node, node_iface).and_then(|(g2, _)| {
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
    Some(out)
}

/// MetalLB layer 2: the VIP is on no interface; the elected speaker answers ARP for it.
fn l2_owner(ctx: &Ctx, addr: IpAddr, prefix: IpNet) -> Option<(String, String)> {
    let anns = crate::announce::announce(ctx.model, None);
    for a in anns {
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

fn steps_hops(node: &str, steps: &[nf::Step]) -> Vec<Hop> {
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

fn nf_trace(ctx: &Ctx, node: &str, pkt: &nf::Packet) -> Result<nf::Trace, String> {
    let n = ctx
        .model
        .nodes
        .get(node)
        .ok_or_else(|| format!("node {node} has no outputs in the snapshot (nodes/{node}/)"))?;
    let Some(rules) = n.netfilter.as_ref() else {
        return Err(format!(
            "the snapshot has no iptables-save output for node {node}: its NAT and filtering are unknown"
        ));
    };
    let oracle = NodeOracle {
        node: n,
        synth: ctx.synth(node),
    };
    let local = ctx
        .local_addrs
        .get(node)
        .map(|v| v.as_slice())
        .unwrap_or(&[]);
    let env = nf::Env {
        local_addrs: local,
        local_origin: false,
        router: Some(&oracle),
        ipsets: n.ipsets.as_ref(),
    };
    Ok(nf::trace(rules, pkt, &env))
}

fn nf_packet(
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

/// What dropped or rejected the packet: the built-in chain's policy when the packet fell off
/// the end of it (the engine notes `filter/FORWARD policy DROP (file:line)`), else the last
/// rule it matched.
fn drop_cause(o: &nf::Outcome) -> String {
    if let Some(n) = o
        .notes
        .iter()
        .rev()
        .find(|n| n.contains(" policy DROP") || n.contains(" policy REJECT"))
    {
        return n.clone();
    }
    o.steps
        .last()
        .map(|s| format!("{} ({}:{})", s.text, s.source.file, s.source.line))
        .unwrap_or_default()
}

/// Is the DNAT/no-DNAT result a kube-proxy "no endpoints" rejection?
fn is_no_endpoints(steps: &[nf::Step]) -> bool {
    steps.iter().any(|s| s.text.contains("has no endpoints"))
}

fn trace_arrival(
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
        let pod = dnat_ip.and_then(|ip| ctx.pods_by_ip.get(&ip).copied());
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
        match &o.verdict {
            nf::Verdict::Drop | nf::Verdict::Reject { .. } => {
                let rule = drop_cause(o);
                let (verdict, reason) = if is_no_endpoints(&o.steps) {
                    (Verdict::NoEndpoints, format!("the Service has no endpoints: kube-proxy rejects the connection: {rule}"))
                } else {
                    (
                        Verdict::Dropped,
                        format!(
                            "{} on {} by {rule}",
                            if matches!(o.verdict, nf::Verdict::Drop) {
                                "dropped"
                            } else {
                                "rejected"
                            },
                            "the node"
                        ),
                    )
                };
                acc.add(PathOut {
                    verdict,
                    reason,
                    forward: fwd,
                    ..base
                });
                continue;
            }
            nf::Verdict::Unknown { reason, rule } => {
                let r = format!(
                    "netfilter cannot decide: {reason}{}",
                    rule.as_ref()
                        .map(|s| format!(" ({}:{})", s.file, s.line))
                        .unwrap_or_default()
                );
                acc.add(PathOut {
                    reason: r,
                    forward: fwd,
                    ..base
                });
                continue;
            }
            nf::Verdict::Accept => {}
        }
        // rp_filter, after nat PREROUTING (it is part of the routing decision).
        if let Some(n) = ctx.model.nodes.get(&arr.node) {
            if let Err(why) = routing::rp_filter_check(
                n,
                ctx.synth(&arr.node),
                &arr.in_iface,
                client,
                o.packet.dst,
            ) {
                let src = n
                    .sysctls
                    .get(&format!("net.ipv4.conf.{}.rp_filter", arr.in_iface))
                    .or_else(|| n.sysctls.get("net.ipv4.conf.all.rp_filter"))
                    .map(|s| s.source.clone());
                fwd.push(Hop::new("routing", arr.node.clone(), why.clone()).src(src));
                acc.add(PathOut {
                    verdict: Verdict::RpFilter,
                    reason: format!(
                        "the SYN is dropped by the reverse-path filter: {}",
                        why.replace(&arr.node, "<node>")
                    ),
                    forward: fwd,
                    ..base
                });
                continue;
            }
        }
        // Forwarding, decided by the input device's own setting (ip_route_input_slow checks
        // IN_DEV_FORWARD(in_dev) and, when it is off, ip_error drops the packet without an ICMP
        // error: net/ipv4/route.c).
        if !o.local_delivery {
            if let Some(n) = ctx.model.nodes.get(&arr.node) {
                if n.forwarding(&arr.in_iface) == Some(false) {
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
                        s.map(|(_, s)| format!(", {}", s.source)).unwrap_or_default().replace(&format!("nodes/{}/", arr.node), "nodes/<node>/"),
                        o.packet.dst
                    );
                    fwd.push(
                        Hop::new("routing", arr.node.clone(), why.clone())
                            .src(s.map(|(_, s)| s.source.clone())),
                    );
                    acc.add(PathOut {
                        verdict: Verdict::Dropped,
                        reason: format!("dropped on the node: {why}"),
                        forward: fwd,
                        ..base
                    });
                    continue;
                }
            }
        }
        let Some(dnat) = o.dnat.as_ref() else {
            // Not NATed: the node itself, or forwarded on.
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
                if let Some(outs) = forwarded_on(ctx, arr, o) {
                    for (pw, verdict, why, hops) in outs {
                        let mut f = fwd.clone();
                        f.extend(hops);
                        acc.add(PathOut {
                            p: base.p * pw,
                            verdict,
                            reason: why,
                            forward: f,
                            ..clone_base(&base)
                        });
                    }
                    continue;
                }
            }
            acc.add(PathOut {
                reason,
                forward: fwd,
                ..base
            });
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
            let reason = format!("DNAT target {target_ip} is no pod in the snapshot");
            fwd.push(Hop::new("pod-network", arr.node.clone(), reason.clone()));
            acc.add(PathOut {
                reason,
                forward: fwd,
                ..base
            });
            continue;
        };
        let pod_key = pod_name(pod);
        let pod_node = pod.node_name.clone().unwrap_or_default();
        let masq = o.masquerade || o.snat.is_some();
        // 5. Pod network: from the receiving node to the pod.
        let mut pod_iface_on_arrival: Option<String> = None;
        match ctx.route(
            &arr.node,
            &Flow {
                src: Some(client), // routed before POSTROUTING masquerades it
                dst: target_ip,
                iif: Some(&arr.in_iface),
                // The mark the routing decision saw (kube-proxy clears 0x4000 in
                // nat POSTROUTING, after it).
                mark: o.route_mark.unwrap_or(o.packet.mark),
            },
        ) {
            Some(l) => {
                match &l.result {
                    Ok(RHop::Forward { dev, gateway, .. })
                        if gateway
                            .is_some_and(|g| fabric::gateway_owner(ctx.model, g).is_some()) =>
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
                        fwd.push(
                            Hop::new("pod-network", arr.node.clone(), reason.clone())
                                .src(l.source()),
                        );
                        acc.add(PathOut {
                            verdict: Verdict::NoRoute,
                            reason,
                            forward: fwd,
                            ..base
                        });
                        continue;
                    }
                    Ok(RHop::Forward { dev, gateway, .. }) => {
                        pod_iface_on_arrival = dev.clone();
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
                        fwd.push(
                            Hop::new(
                                "pod-network",
                                arr.node.clone(),
                                format!(
                                    "{to} (route `{}`)",
                                    l.route.as_ref().map(route_text).unwrap_or_default()
                                ),
                            )
                            .src(l.source()),
                        );
                    }
                    Ok(RHop::Local) => {
                        fwd.push(Hop::new(
                            "pod-network",
                            arr.node.clone(),
                            format!("{target_ip} is local on the node"),
                        ));
                    }
                    Err(RouteFailure::Unknown(why)) => {
                        ctx.notes.insert(format!(
                            "pod network: {why}; assumed the CNI delivers to the pod"
                        ));
                        fwd.push(Hop::new("pod-network", arr.node.clone(), format!("to pod {pod_key} on {pod_node}: assumed delivered by the CNI ({why})")));
                    }
                    Err(e) => {
                        let reason =
                            format!("the node has no route to pod {pod_key} ({target_ip}): {e:?}");
                        fwd.push(Hop::new("pod-network", arr.node.clone(), reason.clone()));
                        acc.add(PathOut {
                            verdict: Verdict::NoRoute,
                            reason,
                            forward: fwd,
                            ..base
                        });
                        continue;
                    }
                }
            }
            None => {
                fwd.push(Hop::new(
                    "pod-network",
                    arr.node.clone(),
                    format!("to pod {pod_key}: assumed delivered by the CNI"),
                ));
            }
        }
        // On the pod's node (when different): its own netfilter sees a NEW packet.
        if pod_node != arr.node
            && ctx
                .model
                .nodes
                .get(&pod_node)
                .is_some_and(|n| n.netfilter.is_some())
        {
            let in_if = pod_iface_on_arrival.clone();
            let pkt2 = nf_packet(
                ctx,
                o.packet.src,
                o.packet.sport,
                target_ip,
                target_port,
                in_if.as_deref(),
            );
            if let Ok(t2) = nf_trace(ctx, &pod_node, &pkt2) {
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
                        let reason = format!(
                            "{} on the pod's node {pod_node} by {}",
                            match x.verdict {
                                nf::Verdict::Drop => "dropped",
                                nf::Verdict::Reject { .. } => "rejected",
                                _ => "undecided",
                            },
                            drop_cause(x)
                        );
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
                    continue;
                }
                reach_pod(
                    ctx,
                    result,
                    acc,
                    arr,
                    o,
                    pod,
                    target_ip,
                    target_port,
                    masq,
                    p * ok,
                    fwd,
                    base,
                );
                continue;
            }
        }
        reach_pod(
            ctx,
            result,
            acc,
            arr,
            o,
            pod,
            target_ip,
            target_port,
            masq,
            p,
            fwd,
            base,
        );
    }
    push_stage(result, stage);
}

/// Adds a node's netfilter view, merging arrivals on the same node and interface (from
/// different routers): the result does not depend on the router.
fn push_stage(result: &mut TraceResult, stage: NodeStage) {
    match result
        .node_stages
        .iter_mut()
        .find(|s| s.node == stage.node && s.in_iface == stage.in_iface)
    {
        Some(s) => {
            s.probability += stage.probability;
            for m in &mut s.members {
                m.1 += stage.probability;
            }
        }
        None => result.node_stages.push(stage),
    }
}

/// Groups nodes whose netfilter results are identical (same interface, outcomes, and rule
/// texts), so 500 nodes with kube-proxy's identical rules print once.
fn group_stages(stages: Vec<NodeStage>) -> Vec<NodeStage> {
    let sig = |s: &NodeStage| {
        let mut k = s.in_iface.clone();
        for o in &s.outcomes {
            k.push_str(&format!(
                "|{}|{}|{:?}|{}|{:?}",
                o.probability.to_bits(),
                o.verdict,
                o.dnat,
                o.masquerade,
                o.pod
            ));
            for st in &o.steps {
                k.push('\u{1}');
                k.push_str(&st.text);
            }
        }
        k
    };
    let mut out: Vec<(String, NodeStage)> = Vec::new();
    for s in stages {
        let k = sig(&s);
        match out.iter_mut().find(|(kk, _)| *kk == k) {
            Some((_, g)) => {
                g.probability += s.probability;
                g.members.extend(s.members);
            }
            None => out.push((k, s)),
        }
    }
    out.into_iter().map(|(_, s)| s).collect()
}

fn clone_base(b: &PathOut) -> PathOut {
    PathOut {
        p: b.p,
        verdict: b.verdict,
        reason: b.reason.clone(),
        forward: Vec::new(),
        ret: Vec::new(),
        node: b.node.clone(),
        ingress_pod: b.ingress_pod.clone(),
        backends: b.backends.clone(),
        http_status: b.http_status,
    }
}

#[allow(clippy::too_many_arguments)]
fn reach_pod(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    acc: &mut Acc,
    arr: &Arrival,
    o: &nf::Outcome,
    pod: &Pod,
    target_ip: IpAddr,
    target_port: u16,
    masq: bool,
    p: f64,
    mut fwd: Vec<Hop>,
    base: PathOut,
) {
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
    let returns = return_path(ctx, arr, o, pod, (target_ip, target_port), masq);

    // 6. L7, when the pod is an ingress controller.
    let controller = ctx
        .controllers
        .get(&(pod.key.namespace.clone(), pod.key.name.clone()))
        .cloned();
    let http = matches!(ctx.req.target, Target::Url { .. }) || matches!(ctx.dport, 80 | 443);
    for (pr, ret_verdict, ret_reason, ret_hops) in returns {
        match (&controller, http) {
            (Some(c), true) => {
                let l7 = ingress_leg(ctx, result, c, pod, target_port);
                for leg in l7.iter() {
                    let (verdict, reason) = if ret_verdict != Verdict::Delivered {
                        (ret_verdict, ret_reason.clone())
                    } else {
                        (leg.verdict, leg.reason.clone())
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
                        http_status: leg.status,
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

#[derive(Clone)]
struct Leg {
    p: f64,
    verdict: Verdict,
    reason: String,
    hops: Vec<Hop>,
    /// Backend pods and their share within this leg class.
    backends: Shares,
    status: Option<u16>,
}

fn one(b: Option<String>) -> Shares {
    std::rc::Rc::new(b.map(|b| vec![(b, 1.0)]).unwrap_or_default())
}

/// Merges legs with the same verdict, reason and status: the hops of the most probable one,
/// the backends with their shares within the class. Keeps fan-outs small.
fn merge_legs(legs: Vec<Leg>) -> Vec<Leg> {
    let mut out: Vec<(Leg, f64)> = Vec::new();
    for l in legs {
        match out
            .iter_mut()
            .find(|(m, _)| m.verdict == l.verdict && m.reason == l.reason && m.status == l.status)
        {
            Some((m, best)) => {
                let total = m.p + l.p;
                let mut bs: BTreeMap<String, f64> = BTreeMap::new();
                for (b, s) in m.backends.iter() {
                    *bs.entry(b.clone()).or_default() += s * m.p;
                }
                for (b, s) in l.backends.iter() {
                    *bs.entry(b.clone()).or_default() += s * l.p;
                }
                if l.p > *best {
                    *best = l.p;
                    m.hops = l.hops;
                }
                m.p = total;
                m.backends = std::rc::Rc::new(
                    bs.into_iter()
                        .map(|(b, w)| (b, if total > 0.0 { w / total } else { 0.0 }))
                        .collect(),
                );
            }
            None => {
                let p = l.p;
                out.push((l, p));
            }
        }
    }
    out.into_iter().map(|(l, _)| l).collect()
}

/// The ingress controller's decision and the proxied connection to the backend.
fn ingress_leg(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    c: &ControllerRef,
    pod: &Pod,
    port: u16,
) -> std::rc::Rc<Vec<Leg>> {
    // The decision and the proxied connection depend only on the controller pod and port.
    let key = (pod_name(pod), port);
    if let Some(l) = ctx.leg_memo.get(&key) {
        return l.clone();
    }
    let legs = std::rc::Rc::new(merge_legs(ingress_leg_uncached(ctx, result, c, pod, port)));
    ctx.leg_memo.insert(key, legs.clone());
    legs
}

fn ingress_leg_uncached(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    c: &ControllerRef,
    pod: &Pod,
    port: u16,
) -> Vec<Leg> {
    let (https, host, path) = match &ctx.req.target {
        Target::Url {
            https, host, path, ..
        } => (*https, host.clone(), path.clone()),
        Target::Host { host, .. } => (ctx.dport == 443, host.clone(), "/".to_string()),
        Target::Addr { ip, .. } => (ctx.dport == 443, ip.to_string(), "/".to_string()),
    };
    let req = HttpRequest {
        scheme: if https { Scheme::Https } else { Scheme::Http },
        host,
        port: ctx.dport,
        path,
        headers: Vec::new(),
        cookies: Vec::new(),
    };
    let d = ctx.view.match_request(c, &req);
    if !d.alternatives.is_empty() {
        // A canary split: each alternative with its probability (they sum to 1).
        let mut legs = Vec::new();
        for (w, alt) in &d.alternatives {
            for mut l in decision_legs(ctx, result, pod, port, &req, alt.clone()) {
                l.p *= w;
                l.hops.insert(
                    0,
                    Hop::new(
                        "ingress",
                        pod_name(pod),
                        format!("canary split: this alternative takes {:.1}%", w * 100.0),
                    )
                    .p(*w),
                );
                legs.push(l);
            }
        }
        return legs;
    }
    decision_legs(ctx, result, pod, port, &req, d)
}

fn decision_legs(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    pod: &Pod,
    port: u16,
    req: &HttpRequest,
    d: crate::ingress::IngressDecision,
) -> Vec<Leg> {
    let pod_key = pod_name(pod);
    let pod_node = pod.node_name.clone().unwrap_or_default();
    let mut head = Vec::new();
    let ing = d.ingress.as_ref().map(|(n, m)| format!("{n}/{m}"));
    let desc = match (&d.backend, d.status) {
        (Some(b), 200) => format!(
            "ingress-nginx in {pod_key} (port {port}): Host {} path {} -> Ingress {} -> Service {}/{}:{}",
            req.host,
            req.path,
            ing.clone().unwrap_or_else(|| "-".into()),
            b.namespace,
            b.service,
            b.port_number.map(|p| p.to_string()).unwrap_or_else(|| format!("{:?}", b.port))
        ),
        (_, s) => format!(
            "ingress-nginx in {pod_key}: Host {} path {} -> HTTP {s}{}",
            req.host,
            req.path,
            d.location.as_ref().map(|l| format!(" to {l}")).unwrap_or_default()
        ),
    };
    head.push(Hop::new("ingress", pod_key.clone(), desc).src(d.rule_source.clone()));
    for n in &d.notes {
        let generic = n.clone();
        ctx.ingress_notes
            .entry(generic)
            .or_default()
            .insert(pod_key.clone());
    }
    for f in &d.findings {
        ctx.notes.insert(format!(
            "finding: {} ({})",
            f.message,
            f.sources
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    result
        .ingress
        .entry(pod_key.clone())
        .or_insert_with(|| head.clone());
    if d.status != 200 {
        let verdict = if d.status == 503 {
            Verdict::NoEndpoints
        } else {
            Verdict::Delivered
        };
        let reason = if d.status == 503 {
            format!(
                "ingress-nginx answers 503: the backend has no ready endpoints ({})",
                d.notes.join("; ")
            )
        } else {
            format!("ingress-nginx answers HTTP {} itself", d.status)
        };
        return vec![Leg {
            p: 1.0,
            verdict,
            reason,
            hops: head,
            backends: Shares::default(),
            status: Some(d.status),
        }];
    }
    if d.upstreams.is_empty() {
        return vec![Leg {
            p: 1.0,
            verdict: Verdict::NoEndpoints,
            reason: "ingress-nginx has no upstream endpoint for the backend (503)".into(),
            hops: head,
            backends: Shares::default(),
            status: Some(503),
        }];
    }
    let total: f64 = d.upstreams.iter().map(|(w, _)| *w).sum::<f64>().max(1e-12);
    let mut legs = Vec::new();
    for (w, up) in &d.upstreams {
        let pu = w / total;
        let mut hops = head.clone();
        let Some(ip) = up.ip else {
            legs.push(Leg {
                p: pu,
                verdict: Verdict::Unknown,
                reason: format!("upstream {} has no IP address", up.address),
                hops,
                backends: Shares::default(),
                status: Some(200),
            });
            continue;
        };
        // The proxied connection: from the ingress pod through its node's netfilter.
        let src = pod.pod_ips.first().copied().unwrap_or(ip);
        let in_if = ctx
            .route(
                &pod_node,
                &Flow {
                    src: None,
                    dst: src,
                    iif: None,
                    mark: 0,
                },
            )
            .and_then(|l| match l.result {
                Ok(RHop::Forward { dev, .. }) => dev,
                _ => None,
            });
        let pkt = nf_packet(ctx, src, 45000, ip, up.port, in_if.as_deref());
        hops.push(
            Hop::new(
                "backend",
                pod_key.clone(),
                format!(
                    "new connection {src} -> {ip}:{} ({}){}",
                    up.port,
                    if up.via_cluster_ip {
                        "the Service's ClusterIP, service-upstream"
                    } else {
                        "the endpoint directly, as ingress-nginx's balancer does"
                    },
                    in_if
                        .as_deref()
                        .map(|i| format!(", enters {pod_node}'s netfilter from {i}"))
                        .unwrap_or_default()
                ),
            )
            .p(pu),
        );
        match nf_trace(ctx, &pod_node, &pkt) {
            Err(why) => {
                // Without the node's rules: a direct endpoint needs no NAT.
                let backend = up.pod.as_ref().map(|(n, m)| format!("{n}/{m}"));
                if up.via_cluster_ip {
                    legs.push(Leg {
                        p: pu,
                        verdict: Verdict::Unknown,
                        reason: why,
                        hops,
                        backends: one(backend),
                        status: Some(200),
                    });
                } else {
                    ctx.notes.insert(format!(
                        "{why}; the direct connection to the endpoint is assumed to pass"
                    ));
                    hops.push(
                        Hop::new(
                            "pod",
                            backend.clone().unwrap_or_default(),
                            format!(
                                "backend pod {} ({ip}:{})",
                                backend.clone().unwrap_or_default(),
                                up.port
                            ),
                        )
                        .src(up.source.clone()),
                    );
                    legs.push(Leg {
                        p: pu,
                        verdict: Verdict::Delivered,
                        reason: "delivered".into(),
                        hops,
                        backends: one(backend),
                        status: Some(200),
                    });
                }
            }
            Ok(t) => {
                for o in &t.outcomes {
                    let mut h = hops.clone();
                    h.extend(steps_hops(&pod_node, &o.steps));
                    let final_ip = o.dnat.as_ref().and_then(|d| d.addr).unwrap_or(ip);
                    let final_port = o.dnat.as_ref().and_then(|d| d.port).unwrap_or(up.port);
                    let bpod = ctx.pods_by_ip.get(&final_ip).copied();
                    let backend = bpod
                        .map(pod_name)
                        .or_else(|| up.pod.as_ref().map(|(n, m)| format!("{n}/{m}")));
                    match &o.verdict {
                        nf::Verdict::Accept => {
                            h.push(
                                Hop::new(
                                    "pod",
                                    backend.clone().unwrap_or_default(),
                                    format!(
                                        "backend pod {} ({final_ip}:{final_port}) on {}",
                                        backend.clone().unwrap_or_else(|| "?".into()),
                                        bpod.and_then(|b| b.node_name.clone())
                                            .unwrap_or_else(|| "?".into())
                                    ),
                                )
                                .src(bpod.map(|b| b.source.clone()).or(up.source.clone())),
                            );
                            if bpod.is_none() {
                                legs.push(Leg {
                                    p: pu * o.probability,
                                    verdict: Verdict::Unknown,
                                    reason: format!("backend {final_ip} is no pod in the snapshot"),
                                    hops: h,
                                    backends: one(backend.clone()),
                                    status: Some(200),
                                });
                            } else {
                                legs.push(Leg {
                                    p: pu * o.probability,
                                    verdict: Verdict::Delivered,
                                    reason: "delivered".into(),
                                    hops: h,
                                    backends: one(backend),
                                    status: Some(200),
                                });
                            }
                        }
                        nf::Verdict::Drop | nf::Verdict::Reject { .. } => {
                            let v = if is_no_endpoints(&o.steps) {
                                Verdict::NoEndpoints
                            } else {
                                Verdict::Dropped
                            };
                            let reason = format!(
                                "the proxied connection is {} on {pod_node} by {}",
                                if matches!(o.verdict, nf::Verdict::Drop) {
                                    "dropped"
                                } else {
                                    "rejected"
                                },
                                drop_cause(o)
                            );
                            legs.push(Leg {
                                p: pu * o.probability,
                                verdict: v,
                                reason,
                                hops: h,
                                backends: one(backend),
                                status: Some(502),
                            });
                        }
                        nf::Verdict::Unknown { reason, .. } => {
                            legs.push(Leg { p: pu * o.probability, verdict: Verdict::Unknown, reason: format!("netfilter on {pod_node} cannot decide the proxied connection: {reason}"), hops: h, backends: one(backend.clone()), status: None });
                        }
                    }
                }
            }
        }
    }
    legs
}

/// The reply to the client-facing connection: conntrack reversal and the reply's routing.
/// One outcome of the return path: (probability, verdict, reason, return hops).
type RetOut = (f64, Verdict, String, Vec<Hop>);

/// The reply's fate, split over the next hops of a multipath route back to the client (the
/// kernel hashes each flow to one of them, in proportion to their weights) and over the
/// routers' ECMP next hops on its way to the client.
fn return_path(
    ctx: &mut Ctx,
    arr: &Arrival,
    o: &nf::Outcome,
    pod: &Pod,
    target: (IpAddr, u16),
    masq: bool,
) -> Vec<RetOut> {
    ctx.reply_nexthops.clear();
    let first = return_path_one(ctx, arr, o, pod, target, masq, None);
    let weights = std::mem::take(&mut ctx.reply_nexthops);
    if weights.len() < 2 {
        return first;
    }
    let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
    let mut out = Vec::new();
    for (k, w) in weights.iter().enumerate() {
        let share = f64::from(*w) / total;
        for (p, v, r, mut h) in return_path_one(ctx, arr, o, pod, target, masq, Some(k)) {
            if let Some(last) = h.iter_mut().find(|x| x.stage == "return-route") {
                last.probability = Some(share);
            }
            out.push((share * p, v, r, h));
        }
    }
    ctx.reply_nexthops.clear();
    out
}

/// Where the reply is routed from: the node holding the conntrack entry (masquerade, or the
/// pod is local), with the interface the reply comes in on. `Err` is a final outcome: without
/// SNAT a pod elsewhere answers the client directly from its own node.
fn reply_origin(
    ctx: &Ctx,
    arr: &Arrival,
    o: &nf::Outcome,
    pod: &Pod,
    target_ip: IpAddr,
    masq: bool,
) -> Result<(String, Option<String>, Hop), RetOut> {
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
            },
        );
        let l = ctx.route(
            &pod_node,
            &Flow {
                src: Some(target_ip),
                dst: client,
                iif: iif.as_deref(),
                mark: 0,
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
            original_dst(ctx)
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
    let hop = Hop::new(
        "conntrack",
        arr.node.clone(),
        format!(
            "pod {pod_key} replies {target_ip}:{} -> {back_to}; it reaches {}{}; conntrack {}un-DNATs it: destination {client}:{}, source restored to {}:{} only at POSTROUTING",
            o.dnat.as_ref().and_then(|d| d.port).unwrap_or(ctx.dport),
            arr.node,
            iif.as_deref().map(|i| format!(" on {i}")).unwrap_or_default(),
            if masq { "un-SNATs and " } else { "" },
            ctx.sport,
            original_dst(ctx),
            ctx.dport
        ),
    );
    Ok((arr.node.clone(), iif, hop))
}

fn return_path_one(
    ctx: &mut Ctx,
    arr: &Arrival,
    o: &nf::Outcome,
    pod: &Pod,
    (target_ip, _target_port): (IpAddr, u16),
    masq: bool,
    nexthop: Option<usize>,
) -> Vec<RetOut> {
    let client = ctx.req.client;
    let (rnode, iif, first_hop) = match reply_origin(ctx, arr, o, pod, target_ip, masq) {
        Ok(x) => x,
        Err(out) => return vec![out],
    };
    let mut hops = vec![first_hop];
    let Some(l) = ctx.route(
        &rnode,
        &Flow {
            src: Some(target_ip),
            dst: client,
            iif: iif.as_deref(),
            mark: 0,
        },
    ) else {
        return vec![(
            1.0,
            Verdict::Unknown,
            format!("node {rnode} has no outputs in the snapshot"),
            hops,
        )];
    };
    let mut l = l;
    if let (Some(rt), Ok(RHop::Forward { .. })) = (l.route.clone(), &l.result) {
        if rt.nexthops.len() > 1 {
            ctx.reply_nexthops = rt.nexthops.iter().map(|n| n.weight.max(1)).collect();
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
    let one = |v: Verdict, why: String, hops: Vec<Hop>| vec![(1.0, v, why, hops)];
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
            reply_beyond_node(ctx, arr, &egress, hops)
        }
    }
}

/// How the reply leaves the node that routes it.
struct Egress {
    node: String,
    dev: String,
    gateway: Option<IpAddr>,
    /// The rule and route that chose it, with their file and line.
    cite: String,
}

/// The reply after it left the node: to its gateway's router, then hop by hop to the client.
fn reply_beyond_node(ctx: &mut Ctx, arr: &Arrival, eg: &Egress, mut hops: Vec<Hop>) -> Vec<RetOut> {
    let client = ctx.req.client;
    let Some(g) = eg.gateway else {
        hops.push(Hop::new(
            "egress",
            eg.node.clone(),
            format!(
                "the reply leaves {} by {} directly to {client} (on-link)",
                eg.node, eg.dev
            ),
        ));
        return vec![(1.0, Verdict::Delivered, "delivered".into(), hops)];
    };
    let Some((r, ri)) = fabric::gateway_owner(ctx.model, g) else {
        let why = format!(
            "the reply leaves {} by {} via {g}, which is an interface of no router in the snapshot: where it goes from there is unknown (add that router's interface configuration and routing or BGP table under routers/<name>/)",
            "<node>", eg.dev
        );
        hops.push(Hop::new(
            "egress",
            eg.node.clone(),
            why.replace("<node>", &eg.node),
        ));
        return vec![(1.0, Verdict::Unknown, why, hops)];
    };
    let out_vrf = fabric::iface_vrf(ri).to_string();
    let (out_router, out_iface) = (r.name.clone(), ri.name.clone());
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
    let in_side = format!(
        "{} {} (VRF {})",
        arr.router,
        arr.router_iface.as_deref().unwrap_or("?"),
        arr.vrf
    );
    let node_owner = |a: IpAddr| ctx.node_owning(a);
    let walked = Walk {
        model: ctx.model,
        dst: client,
        stage: "return-router",
        exits: &ctx.exits,
        node_owner: &node_owner,
    }
    .run(VrfRef::new(&out_router, &out_vrf));
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for w in walked {
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
                End::NoRoute { at, searched, .. } => {
                    format!("; {at} has no route to {client} there ({searched})")
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
        let (verdict, reason) = match &w.end {
            End::Connected { at, iface } => {
                notes.push(format!(
                    "the reply reaches {client} on a connected subnet of {at}{}",
                    iface.as_deref().map(|i| format!(" ({i})")).unwrap_or_default()
                ));
                (Verdict::Delivered, "delivered".to_string())
            }
            End::Exit { at, next_hop } => {
                notes.push(match next_hop {
                    Some(nh) => format!(
                        "the reply reaches {at}, where the client's requests enter the fabric, and leaves it via {nh} towards the client"
                    ),
                    None => format!(
                        "the reply reaches {at}, where the client's requests enter the fabric; its BGP table has no route to {client} and the snapshot has no routing table for that VRF: taken to reach the client by a route not shown (add `show ip route vrf {}` to be sure)",
                        at.vrf
                    ),
                });
                (Verdict::Delivered, "delivered".to_string())
            }
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
            End::Unknown(why) => (Verdict::Unknown, format!("the reply's way to {client} is unknown: {why}")),
        };
        out.push((w.p, verdict, reason, h));
    }
    if out.iter().any(|x| x.1 == Verdict::Delivered) && eg.dev != arr.in_iface {
        notes.push(format!(
            "the reply leaves by {}, not by {} where the request arrived, but towards {out_router} {out_iface} in the same VRF {out_vrf}: routed back to the client",
            eg.dev, arr.in_iface
        ));
    }
    ctx.notes.extend(notes);
    out
}

/// The destination the client used (before DNAT).
fn original_dst(ctx: &Ctx) -> String {
    ctx.cur_addr
        .map(|a| a.to_string())
        .unwrap_or_else(|| "the service address".into())
}
