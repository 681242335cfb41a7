//! The trace engine: forward path, return path, aggregation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use kubepath_model::k8s::Pod;
use kubepath_model::net::{NodeFact, NodeNet, RouterFact};
use kubepath_model::{Model, SourceRef};
use kubepath_netfilter as nf;

use super::fabric::{self, FabricError};
use super::routing::{self, Flow, FlowL4, Hop as RHop, RouteFailure};
use super::text::{route_text, rule_text};
use super::walk::{self, End, VrfRef, Walk, Walked};
use super::{
    Branch, Entry, Hop, NodeOutcome, NodeStage, Target, TraceRequest, TraceResult, Verdict, L4,
};
use crate::ingress::{ControllerRef, HttpRequest, IngressView, Scheme};

mod entry;
mod l7;
mod node;
mod podside;
pub use podside::POD_EGRESS;
mod reply;

use entry::*;
use l7::*;
use node::*;
use reply::*;

/// (node, pod address, destination, mark, L4, who): one pod-side check.
type PodEgressKey = (String, IpAddr, IpAddr, u32, FlowL4, String);

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
    /// Mass per (backend list, previous hop, delivered): expanded into `backends` and
    /// `edges` at the end.
    backend_mass: HashMap<(usize, Option<String>, bool), (Shares, f64)>,
    /// Backend lists seen per branch key.
    branch_shares: HashMap<(Verdict, String), HashMap<usize, Shares>>,
}

impl Acc {
    fn add(&mut self, mut path: PathOut) {
        let forward = std::mem::take(&mut path.forward);
        let ret = std::mem::take(&mut path.ret);
        self.add_with(path, || (forward, ret));
    }

    /// [`Acc::add`] of `path` with the forward and return hops `hops()` gives, built only when
    /// the branch keeps them (its most probable member so far): of the many paths merged into
    /// one branch, most never need theirs (a routing loop over hundreds of nodes is tens of
    /// thousands of paths of one branch).
    fn add_with(&mut self, path: PathOut, hops: impl FnOnce() -> (Vec<Hop>, Vec<Hop>)) {
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
                .entry((id, from, path.verdict == Verdict::Delivered))
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
            (b.forward, b.ret) = hops();
            b.http_status = path.http_status;
        }
    }
}

/// Where a SYN arrived on a node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Arrival {
    /// The address the client connected to (before any NAT).
    dst: IpAddr,
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
    routes: &'a routing::NodeRoutes,
}

impl nf::RouteOracle for NodeOracle<'_> {
    fn route(&self, pkt: &nf::Packet) -> nf::RouteDecision {
        // To one of the node's own addresses an unknown lookup leaves even the path unknown:
        // delivered (INPUT) or forwarded (FORWARD) (sixth review: an IPv6 packet to the
        // node's address, without `ip -6 rule`, met FORWARD's policy).
        let own = || {
            self.node
                .interfaces
                .iter()
                .any(|i| i.addresses.iter().any(|a| a.address.addr() == pkt.dst))
        };
        if let Some(l) = self.node.skipped.iter().find(|l| l.may_concern(pkt.dst)) {
            if own() {
                return nf::RouteDecision::Unknown(l.describe());
            }
            // A route or rule line that could not be read may decide this lookup: the
            // outgoing interface is unknown (as for an unknown lookup below); the trace's own
            // lookup after the node says why (`Ctx::route`). Before, the lookup without that
            // line answered "unreachable", a confident drop (issue #11, review).
            return nf::RouteDecision::Forward {
                out_iface: None,
                src_hint: None,
            };
        }
        let l = routing::lookup(
            self.node,
            self.routes,
            &Flow {
                src: Some(pkt.src),
                dst: pkt.dst,
                iif: pkt.in_iface.as_deref(),
                mark: pkt.mark,
                l4: FlowL4::Unknown,
            },
        );
        match l.result {
            Ok(RHop::Local) => nf::RouteDecision::Local,
            Ok(RHop::Forward { dev, gateway, .. }) => {
                // The source MASQUERADE takes: inet_select_addr(out, nexthop) - the first
                // primary address of the device in the next hop's subnet, else its first
                // primary address (nf_nat_masquerade_ipv4); a route's `src` plays no part.
                let next = gateway.unwrap_or(pkt.dst);
                let src_hint = dev
                    .as_deref()
                    .and_then(|d| routing::select_src(self.node, d, next));
                nf::RouteDecision::Forward {
                    out_iface: dev,
                    src_hint,
                }
            }
            Err(RouteFailure::NoRoute) | Err(RouteFailure::Rejected { .. }) => {
                nf::RouteDecision::Unreachable
            }
            Err(RouteFailure::Unknown(why)) if own() => nf::RouteDecision::Unknown(why),
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
    /// Each node's routing index, built on first use (shared by the traces of a model within
    /// [`with_shared_routes`]).
    routes: std::sync::Arc<RoutesCache>,
    /// For a node the model does not have (never asked for: callers look the node up first).
    no_routes: routing::NodeRoutes,
    local_addrs: BTreeMap<String, Vec<IpAddr>>,
    /// What a trace looks up in the cluster, indexed once per model.
    index: std::sync::Arc<TraceIndex>,
    sport: u16,
    dport: u16,
    notes: BTreeSet<String>,
    /// (node, veth) of pods whose own packets fail the reverse-path check.
    pod_side_rp: BTreeSet<(String, String)>,
    /// podside::egress_fails, memoized.
    pod_egress_memo: HashMap<PodEgressKey, Option<podside::PodFailure>>,
    /// Ingress notes, merged across controller pods that say the same thing.
    ingress_notes: BTreeMap<String, BTreeSet<String>>,
    /// Memoized L7 legs per (controller pod, port).
    leg_memo: HashMap<(String, u16), std::rc::Rc<Vec<Leg>>>,
    /// Where the client's traffic enters the fabric (the manifest's entry points, else every
    /// router VRF with a default route): a reply that reaches one of these is on the client's
    /// own way back.
    exits: Vec<VrfRef>,
    /// `announce::announce(model, None)`, computed at most once per trace (it depends on the
    /// model only).
    announcements: std::cell::OnceCell<Vec<crate::announce::ServiceAnnouncement>>,
    /// Walks through the routers ([`Ctx::walk`]), memoized: a trace makes the same walk for
    /// every path that hands the packet to the same router (a reply from each of hundreds of
    /// nodes and their pods to one gateway).
    walk_memo: std::cell::RefCell<HashMap<WalkKey, std::rc::Rc<Vec<Walked>>>>,
    /// [`node::beyond_router`], memoized per (router, packet).
    forward_memo: std::cell::RefCell<HashMap<node::ForwardKey, std::rc::Rc<Vec<RetOut>>>>,
}

/// A walk's start, destination, stage name and whether it ends at the client's entry points.
type WalkKey = (VrfRef, IpAddr, &'static str, bool);

/// The nodes' routing indexes ([`routing::NodeRoutes`]) of one model, each built on first use.
#[derive(Default)]
pub(crate) struct RoutesCache {
    /// The address of the model the indexes are of (only compared).
    model: usize,
    nodes: BTreeMap<String, std::sync::OnceLock<routing::NodeRoutes>>,
    /// Address -> (node, interface) of the nodes' `ip addr` ([`Model::interface_owners`]).
    owners: std::sync::OnceLock<HashMap<IpAddr, (String, String)>>,
    /// Addresses that more than one node holds on an interface that answers ARP (not `lo`,
    /// a dummy such as `kube-ipvs0`, or a NOARP device): those nodes, by name.
    shared: std::sync::OnceLock<HashMap<IpAddr, Vec<String>>>,
}

thread_local! {
    static SHARED_ROUTES: std::cell::RefCell<Option<std::sync::Arc<RoutesCache>>> =
        const { std::cell::RefCell::new(None) };
}

impl RoutesCache {
    pub(crate) fn new(model: &Model) -> RoutesCache {
        RoutesCache {
            model: model as *const Model as usize,
            nodes: model
                .nodes
                .keys()
                .map(|k| (k.clone(), std::sync::OnceLock::new()))
                .collect(),
            owners: std::sync::OnceLock::new(),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// The indexes shared within [`with_shared_routes`] for this model, else new ones.
    pub(crate) fn for_model(model: &Model) -> std::sync::Arc<RoutesCache> {
        SHARED_ROUTES
            .with(|s| {
                s.try_borrow().ok().and_then(|s| {
                    s.as_ref()
                        .filter(|c| c.model == model as *const Model as usize)
                        .cloned()
                })
            })
            .unwrap_or_else(|| std::sync::Arc::new(RoutesCache::new(model)))
    }
}

/// Runs `f` with the nodes' routing indexes of `model` built once and shared by every trace
/// of `model` it makes on this thread (`check` and `reach` trace the same nodes thousands of
/// times). `cache` must be [`RoutesCache::new`] of this `model`. The model is borrowed for the
/// whole scope, so it cannot change under the indexes; traces of other models (a fix's changed
/// copy) build their own.
pub(crate) fn with_shared_routes<R>(
    model: &Model,
    cache: std::sync::Arc<RoutesCache>,
    f: impl FnOnce() -> R,
) -> R {
    assert!(
        cache.model == model as *const Model as usize,
        "RoutesCache of another model"
    );
    struct Restore(Option<std::sync::Arc<RoutesCache>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            SHARED_ROUTES.with(|s| {
                if let Ok(mut s) = s.try_borrow_mut() {
                    *s = prev;
                }
            });
        }
    }
    let prev = SHARED_ROUTES.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.replace(cache)));
    let _restore = Restore(prev);
    f()
}

/// Builds what every trace of `model` shares and builds on first use (before several threads
/// trace it, so that they do not each build it).
pub(crate) fn warm(model: &Model) {
    TraceIndex::shared(model);
}

/// The cluster lookups of a trace, built once per model ([`kubepath_model::Derived`]): they
/// depend on the Kubernetes objects and nginx configurations only, which `--what-if` and
/// fixes do not change, so every trace of the model and of its changed copies shares them.
pub(crate) struct TraceIndex {
    /// Pod IP -> index in `cluster.pods` (the first running, non-host-network pod with it).
    pods_by_ip: HashMap<IpAddr, usize>,
    /// The ingress-nginx view (lowered world, controller configurations).
    view: std::sync::Arc<IngressView>,
    /// Controller pods by (namespace, name).
    controllers: HashMap<(String, String), ControllerRef>,
    /// Endpoint addresses with the node their Endpoints/EndpointSlice names: (set, endpoint)
    /// indexes ([`Ctx::pod_node_doubt`]). Once per model: built per trace, it made one trace
    /// O(endpoints) (40 ms at 100,000 endpoints; issue #15).
    endpoint_nodes: HashMap<IpAddr, Vec<(usize, usize)>>,
}

impl TraceIndex {
    fn shared(model: &Model) -> std::sync::Arc<TraceIndex> {
        model.derived.get_or_build(|| {
            let mut pods_by_ip: HashMap<IpAddr, usize> = HashMap::new();
            for (i, p) in model.cluster.pods.iter().enumerate() {
                if p.host_network || p.terminating {
                    continue;
                }
                for ip in &p.pod_ips {
                    pods_by_ip.entry(*ip).or_insert(i);
                }
            }
            let view = IngressView::shared(model);
            let controllers = view
                .controllers()
                .into_iter()
                .filter_map(|c| c.pod.clone().map(|k| (k, c)))
                .collect();
            let mut endpoint_nodes: HashMap<IpAddr, Vec<(usize, usize)>> = HashMap::new();
            for (si, set) in model.cluster.endpoints.iter().enumerate() {
                for (ei, e) in set.endpoints.iter().enumerate() {
                    if e.node_name.is_some() {
                        for a in &e.addresses {
                            endpoint_nodes.entry(*a).or_default().push((si, ei));
                        }
                    }
                }
            }
            TraceIndex {
                pods_by_ip,
                view,
                controllers,
                endpoint_nodes,
            }
        })
    }
}

fn pod_name(p: &Pod) -> String {
    format!("{}/{}", p.key.namespace, p.key.name)
}

impl<'m> Ctx<'m> {
    fn new(model: &'m Model, req: &'m TraceRequest, dport: u16) -> Self {
        let mut local_addrs = BTreeMap::new();
        for (name, n) in &model.nodes {
            let addrs: Vec<IpAddr> = n
                .interfaces
                .iter()
                .flat_map(|i| i.addresses.iter().map(|a| a.address.addr()))
                .collect();
            local_addrs.insert(name.clone(), addrs);
        }
        Ctx {
            model,
            req,
            routes: RoutesCache::for_model(model),
            no_routes: routing::NodeRoutes::default(),
            local_addrs,
            index: TraceIndex::shared(model),
            sport: req.client_port.unwrap_or(EPHEMERAL_PORT),
            dport,
            notes: BTreeSet::new(),
            pod_side_rp: BTreeSet::new(),
            pod_egress_memo: HashMap::new(),
            ingress_notes: BTreeMap::new(),
            leg_memo: HashMap::new(),
            exits: entries(model, req.client)
                .unwrap_or_default()
                .iter()
                .map(|e| VrfRef::new(&e.router, &e.vrf))
                .collect(),
            announcements: std::cell::OnceCell::new(),
            walk_memo: Default::default(),
            forward_memo: Default::default(),
        }
    }

    /// The walk through the routers from `start` to `dst` ([`Walk::run`], a function of the
    /// model and these arguments), its hops recorded as `stage`; `to_exits`: a path ends at a
    /// router where the client's traffic enters the fabric (`exits`), as a reply's does.
    /// Computed once per trace for each distinct question.
    fn walk(
        &self,
        start: VrfRef,
        dst: IpAddr,
        stage: &'static str,
        to_exits: bool,
    ) -> std::rc::Rc<Vec<Walked>> {
        let key = (start, dst, stage, to_exits);
        if let Some(w) = self.walk_memo.borrow().get(&key) {
            return w.clone();
        }
        let node_owner = |a: IpAddr| self.node_owning(a);
        let walked = Walk {
            model: self.model,
            dst,
            stage,
            exits: if to_exits { &self.exits } else { &[] },
            node_owner: &node_owner,
        }
        .run(key.0.clone());
        let w = std::rc::Rc::new(walked);
        self.walk_memo.borrow_mut().insert(key, w.clone());
        w
    }

    /// The running pod with address `ip`.
    fn pod_by_ip(&self, ip: IpAddr) -> Option<&'m Pod> {
        let i = *self.index.pods_by_ip.get(&ip)?;
        self.model.cluster.pods.get(i)
    }

    /// Why `ip` (`what`: "DNAT target", "backend") is no pod of the snapshot, naming what to
    /// collect (issue #11): the Endpoints that name a pod for it which the snapshot does not
    /// hold, a left-out cluster file that may hold it, or no Pods collected at all.
    fn no_pod_reason(&self, what: &str, ip: IpAddr) -> String {
        let cluster = &self.model.cluster;
        let named = cluster.endpoints.iter().find_map(|set| {
            set.endpoints
                .iter()
                .filter(|e| e.addresses.contains(&ip))
                .find_map(|e| {
                    let r = e.target_ref.as_ref()?;
                    (r.kind.as_deref() == Some("Pod")).then_some(())?;
                    Some((set, e, r))
                })
        });
        let why = if let Some((file, why)) = cluster.left_out_with("Pod") {
            format!("{file} was left out ({why}) and may hold it")
        } else if let Some((set, e, r)) = named {
            format!(
                "{} {} names pod {}/{} for it ({}), and the snapshot holds no such pod: collect `kubectl get pods -A -o yaml`",
                match set.origin {
                    kubepath_model::k8s::EndpointOrigin::Endpoints => "Endpoints",
                    _ => "EndpointSlice",
                },
                set.key,
                r.namespace.as_deref().unwrap_or(&set.key.namespace),
                r.name.as_deref().unwrap_or("?"),
                e.source
            )
        } else if cluster.pods.is_empty() {
            "the snapshot holds no Pods: collect `kubectl get pods -A -o yaml`".to_string()
        } else {
            "if it is a pod, collect `kubectl get pods -A -o yaml`".to_string()
        };
        format!("{what} {ip} is no pod in the snapshot ({why})")
    }

    /// Why the node of `pod` (at `ip`) is in doubt: an Endpoints/EndpointSlice entry for `ip`
    /// names another node than the pod's `nodeName` (one of the two captures is stale, or the
    /// address was reused), so which node's rules and routes the packet meets is unknown
    /// (issue #11, review: the pod's `nodeName` was believed).
    fn pod_node_doubt(&self, pod: &Pod, ip: IpAddr) -> Option<String> {
        let mine = pod.node_name.as_deref()?;
        let sets = &self.model.cluster.endpoints;
        self.index.endpoint_nodes.get(&ip)?.iter().find_map(|&(si, ei)| {
            let (set, e) = (&sets[si], &sets[si].endpoints[ei]);
            e.node_name.as_deref().filter(|n| *n != mine)?;
            Some(format!(
                "pod {} ({ip}) runs on {mine} per {}, but {} {} puts {ip} on node {} ({}): which node holds it is in doubt (a stale capture of one of them; collect the pods and EndpointSlices together)",
                pod_name(pod),
                pod.source,
                match set.origin {
                    kubepath_model::k8s::EndpointOrigin::Endpoints => "Endpoints",
                    _ => "EndpointSlice",
                },
                set.key,
                e.node_name.as_deref().unwrap_or("?"),
                e.source
            ))
        })
    }

    /// The nodes that may hold `addr` although no node's `ip addr` in the snapshot shows it:
    /// nodes whose `ip addr` was not read, and Kubernetes Nodes (kubectl) whose address it is
    /// with no outputs in the snapshot. Worded for an `unknown` reason, naming what to collect
    /// (issue #11); `None` when every node's addresses are known.
    fn who_may_hold(&self, addr: IpAddr) -> Option<String> {
        let mut lacking: Vec<String> = Vec::new();
        for (name, n) in &self.model.nodes {
            let files = n.read.get(&NodeFact::Addresses);
            if files.is_none() {
                lacking.push(name.clone());
            } else if let Some(l) = n.skipped.iter().find(|l| {
                // Read, but cut or with lines that could not be read.
                files.is_some_and(|f| f.iter().any(|s| s.file == l.source.file))
            }) {
                lacking.push(format!("{name} ({})", l.describe()));
            }
        }
        for (name, k) in &self.model.cluster.nodes {
            if self.model.nodes.contains_key(name) {
                continue;
            }
            if k.internal_ips.contains(&addr) || k.external_ips.contains(&addr) {
                lacking.push(format!("{name} (its InternalIP per {})", k.source));
            } else {
                // A Kubernetes Node without any output in the snapshot (nodes/{name}/).
                lacking.push(format!(
                    "{name} (a Node per {}, no nodes/{name}/ outputs)",
                    k.source
                ));
            }
        }
        if lacking.is_empty() {
            return None;
        }
        let n = lacking.len();
        if n > 5 {
            lacking.truncate(5);
            lacking.push(format!("{} more", n - 5));
        }
        Some(format!(
            "the snapshot has no complete `ip addr` output of node{} {}, which may hold it: collect `ip addr` on {}",
            if n == 1 { "" } else { "s" },
            lacking.join(", "),
            if n == 1 { "it" } else { "them" }
        ))
    }

    /// Every LoadBalancer IP's announcements (`kubepath announce`), computed once.
    fn announcements(&self) -> &[crate::announce::ServiceAnnouncement] {
        self.announcements
            .get_or_init(|| crate::announce::announce(self.model, None))
    }

    /// `node`'s routing index.
    fn node_routes(&self, node: &str) -> &routing::NodeRoutes {
        match (self.routes.nodes.get(node), self.model.nodes.get(node)) {
            (Some(cell), Some(n)) => cell.get_or_init(|| routing::NodeRoutes::new(n)),
            _ => &self.no_routes,
        }
    }

    fn route(&self, node: &str, flow: &Flow) -> Option<routing::Lookup> {
        let n = self.model.nodes.get(node)?;
        if let Some(sl) = n
            .skipped
            .iter()
            .filter(|l| l.may_concern(flow.dst))
            .min_by_key(|l| l.cut)
        {
            // A line of this node's outputs that could not be read may hold the route or
            // rule that decides: the lookup would be a guess.
            return Some(routing::Lookup {
                result: Err(RouteFailure::Unknown(format!(
                    "{} and may concern {}, so {node}'s route to it is unknown",
                    sl.describe(),
                    flow.dst
                ))),
                rule: None,
                route: None,
                table: 0,
                notes: Vec::new(),
            });
        }
        Some(routing::lookup(n, self.node_routes(node), flow))
    }

    /// The nodes that hold `addr` on an interface that answers ARP, when more than one does
    /// (a copied `ip addr`, a stray node directory, an address conflict): the router reaches
    /// whichever answered its ARP last, so which node a packet to it arrives on is unknown
    /// (issue #11, review: the first node by name took it).
    fn nodes_sharing(&self, addr: IpAddr) -> Option<&[String]> {
        let shared = self.routes.shared.get_or_init(|| {
            let mut m: HashMap<IpAddr, Vec<String>> = HashMap::new();
            for (name, n) in &self.model.nodes {
                for i in &n.interfaces {
                    let arp = i.name != "lo"
                        && i.kind.as_deref() != Some("dummy")
                        && i.name != "kube-ipvs0"
                        && !i.flags.iter().any(|f| f == "NOARP" || f == "LOOPBACK");
                    if !arp {
                        continue;
                    }
                    for a in &i.addresses {
                        let v = m.entry(a.address.addr()).or_default();
                        if !v.contains(name) {
                            v.push(name.clone());
                        }
                    }
                }
            }
            m.retain(|_, v| v.len() > 1);
            m
        });
        shared.get(&addr).map(Vec::as_slice)
    }

    fn node_owning(&self, addr: IpAddr) -> Option<(String, String)> {
        let owners = self.routes.owners.get_or_init(|| {
            self.model
                .interface_owners()
                .into_iter()
                .map(|(a, (n, i))| (a, (n.to_string(), i.to_string())))
                .collect()
        });
        if let Some(o) = owners.get(&addr) {
            return Some(o.clone());
        }
        // Held only on kube-ipvs0 by a node whose `ip addr` was read: not that node's address
        // on the link, whatever its Node object says; the caller says so (review 8).
        if !self.model.uncounted_holders(addr).is_empty() {
            return None;
        }
        // A node whose outputs are missing but whose Node object has the address: the trace
        // continues to it and says what is missing there.
        self.model
            .cluster
            .node_owning_ip(addr, false)
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
                match resolve_host(&mut ctx, &mut result, &mut acc, host, &mut dns_hops) {
                    Some(addresses) => addresses,
                    None => return finish(result, acc, ctx),
                }
            }
        }
    };

    for (addr, pa) in addresses {
        trace_address(&mut ctx, &mut result, &mut acc, addr, pa, &dns_hops);
    }
    finish(result, acc, ctx)
}

/// Resolves `host` in the snapshot's DNS data: the addresses of the client's family it
/// connects to, each with its share. The CNAMEs and addresses followed go to `result` and
/// `dns_hops`; an address the sources disagree on is an unknown path in `acc`. `None` when
/// the trace ends at DNS (its unknown path is in `acc`).
fn resolve_host(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    acc: &mut Acc,
    host: &str,
    dns_hops: &mut Vec<Hop>,
) -> Option<Vec<(IpAddr, f64)>> {
    let (model, req) = (ctx.model, ctx.req);
    result.resolved.name = Some(host.to_string());
    let res = model.dns.resolve(host);
    record_dns_answers(&res, result, dns_hops);
    if res.loop_detected {
        let reason = if res.too_long {
            format!(
                "the CNAME chain of {host} is longer than 16 links (kubepath follows at most 16)"
            )
        } else {
            format!("the CNAME chain of {host} loops")
        };
        acc.add(unknown_path(1.0, reason, dns_hops.clone()));
        return None;
    }
    let v4 = req.client.is_ipv4();
    // Resolver outputs that got no answer for the name (NXDOMAIN, SERVFAIL, a
    // timeout; issue #11, fifth review): what each said, to name beside the
    // sources that give addresses.
    let failed: Vec<String> = res
        .failures
        .iter()
        .filter(|f| f.concerns(v4))
        .map(|f| format!("{} answered {} for {}", f.source, f.status, f.name))
        .collect();
    let unread = (!model.dns.left_out.is_empty()).then(|| {
        model
            .dns
            .left_out
            .iter()
            .map(|(f, why)| format!("{f} ({why})"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    if result.resolved.addresses.is_empty() {
        let reason = no_address_reason(model, host, &failed, unread.as_deref());
        acc.add(unknown_path(1.0, reason, dns_hops.clone()));
        return None;
    }
    if let Some(u) = &unread {
        ctx.notes.insert(format!(
            "DNS files not read: {u}; an answer they hold for {host} was not compared"
        ));
    }
    // A client connects over its own address family only (a dual-stack resolver
    // hands an IPv4 client the A records).
    let same: Vec<IpAddr> = result
        .resolved
        .addresses
        .iter()
        .map(|(ip, _)| *ip)
        .filter(|ip| ip.is_ipv4() == req.client.is_ipv4())
        .collect();
    if same.is_empty() {
        let reason = format!(
            "{host} resolves only to {} addresses and the client {} is {}: no connection of its family exists",
            if req.client.is_ipv4() { "IPv6" } else { "IPv4" },
            req.client,
            if req.client.is_ipv4() { "IPv4" } else { "IPv6" }
        );
        acc.add(unknown_path(1.0, reason, dns_hops.clone()));
        return None;
    }
    let n = same.len() as f64;
    if n > 1.0 {
        ctx.notes.insert(format!(
            "{host} has {} addresses of the client's family: shown as an even split (clients usually take the first answer, resolvers rotate them)",
            n
        ));
    }
    // Sources that disagree (issue #11, review defect 13): an address that a
    // source answering the client's family does not give may not be what the
    // client gets, so its share is unknown rather than traced as if it were.
    let answering: Vec<&(SourceRef, Vec<IpAddr>)> = res
        .disagreement
        .iter()
        .filter(|(src, ips)| {
            ips.iter().any(|ip| ip.is_ipv4() == req.client.is_ipv4())
                || model.dns.is_zone_file(&src.file)
        })
        .collect();
    let disputed =
        |ip: &IpAddr| !failed.is_empty() || answering.iter().any(|(_, ips)| !ips.contains(ip));
    if same.iter().any(disputed) {
        let said = dns_sources_said(&answering, &failed, result, v4);
        for ip in same.iter().filter(|ip| disputed(ip)) {
            let reason = format!(
                "the snapshot's DNS sources disagree on {host} ({}): whether the client gets {ip} is unknown (a stale capture, a changed record or split-horizon DNS); trace it with `--to {ip}`, or keep the source that is current",
                said.join("; ")
            );
            let mut hops = dns_hops.clone();
            hops.push(Hop::new("dns", "", reason.clone()));
            acc.add(unknown_path(1.0 / n, reason, hops));
        }
    }
    Some(
        same.into_iter()
            .filter(|ip| !disputed(ip))
            .map(|ip| (ip, 1.0 / n))
            .collect(),
    )
}

/// Records the CNAMEs followed and the addresses found in `result` and as `dns` hops.
fn record_dns_answers(
    res: &kubepath_model::dns::Resolution,
    result: &mut TraceResult,
    dns_hops: &mut Vec<Hop>,
) {
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
            Hop::new("dns", "", format!("{} has address {ip}", a.name)).src(Some(a.source.clone())),
        );
    }
}

/// Why `host` has no address: the resolvers' failures, no (readable) DNS data, or no record;
/// the DNS files not read (`unread`).
fn no_address_reason(model: &Model, host: &str, failed: &[String], unread: Option<&str>) -> String {
    let mut reason = if !failed.is_empty() {
        format!(
            "no source of the snapshot gives {host} an address: {}",
            failed.join("; ")
        )
    } else if model.dns.records.is_empty() && unread.is_none() {
        format!("the snapshot has no DNS data (dns/): cannot resolve {host}")
    } else if model.dns.records.is_empty() {
        format!("the snapshot has no DNS data it could read: cannot resolve {host}")
    } else {
        format!("no A/AAAA record for {host} in the snapshot's DNS data")
    };
    if let Some(u) = &unread {
        reason.push_str(&format!("; not read: {u}"));
    }
    reason
}

/// What each DNS source says of the name, for the reason of a disputed address: the
/// answering sources' addresses of the client's family (`v4`), else every address found,
/// and the resolvers' failures.
fn dns_sources_said(
    answering: &[&(SourceRef, Vec<IpAddr>)],
    failed: &[String],
    result: &TraceResult,
    v4: bool,
) -> Vec<String> {
    let mut said: Vec<String> = answering
        .iter()
        .map(|(src, ips)| {
            let ips: Vec<String> = ips
                .iter()
                .filter(|ip| ip.is_ipv4() == v4)
                .map(|ip| ip.to_string())
                .collect();
            if ips.is_empty() {
                format!("{src} (a zone file) gives it no address of the client's family")
            } else {
                format!("{src} gives {}", ips.join(", "))
            }
        })
        .collect();
    if !failed.is_empty() {
        if said.is_empty() {
            said = result
                .resolved
                .addresses
                .iter()
                .filter(|(ip, _)| ip.is_ipv4() == v4)
                .map(|(ip, src)| match src {
                    Some(s) => format!("{s} gives {ip}"),
                    None => format!("{ip}"),
                })
                .collect();
        }
        said.extend(failed.iter().cloned());
    }
    said
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
            // Reasons say `<node>` so that branches on different nodes merge; a branch of one
            // node names it.
            if let [only] = b.nodes.as_slice() {
                b.reason = b.reason.replace("<node>", only);
            }
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
    // Every path ends in a verdict; should some mass end in none (a gap in the model of an odd
    // snapshot), it is unknown, never a silent shortfall (an empty answer looked like success).
    let total: f64 = result.verdicts.values().sum();
    if total < 1.0 - 1e-9 {
        let missing = 1.0 - total.max(0.0);
        *result.verdicts.entry(Verdict::Unknown).or_default() += missing;
        result.branches.push(unknown_branch(
            missing,
            "part of the traffic was not followed to any verdict (kubepath could not model this snapshot's path for it)",
            Vec::new(),
        ));
    }
    result.distribution_nodes = acc.nodes;
    result.distribution_ingress_pods = acc.ingress_pods;
    let mut backends = acc.backends;
    let mut edges = acc.edges;
    let mut delivered_backends = BTreeMap::new();
    for ((_, from, delivered), (shares, mass)) in acc.backend_mass {
        for (b, share) in shares.iter() {
            *backends.entry(b.clone()).or_default() += mass * share;
            if delivered {
                *delivered_backends.entry(b.clone()).or_default() += mass * share;
            }
            if let Some(f) = &from {
                *edges.entry((f.clone(), b.clone())).or_default() += mass * share;
            }
        }
    }
    result.distribution_backends = backends;
    result.distribution_backends_delivered = delivered_backends;
    result.edges = edges;
    result.node_stages = group_stages(std::mem::take(&mut result.node_stages));
    result.notes.extend(ctx.notes);
    result.pod_side_rp = ctx.pod_side_rp;
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

/// A first packet that reached its pod: where it arrived, what netfilter did to it, the pod
/// and the DNAT target (address and port).
struct AtPod<'a> {
    arr: &'a Arrival,
    o: &'a nf::Outcome,
    pod: &'a Pod,
    target_ip: IpAddr,
    target_port: u16,
    /// SNAT or masquerade: the reply comes back to the receiving node.
    masq: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use nf::RouteOracle;

    /// An IPv6 packet meets the node's ip6tables rules, never its IPv4 ones; without an
    /// `ip6tables-save` it is unknown, naming what to collect (it used to pass through the
    /// IPv4 ruleset, where no rule applies).
    #[test]
    fn an_ipv6_packet_meets_the_ip6tables_rules() {
        let rule = b"0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n".to_vec();
        let addr = b"2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP\n    inet 10.1.0.11/24 scope global eth0\n       valid_lft forever preferred_lft forever\n    inet6 2001:db8:1::11/64 scope global\n       valid_lft forever preferred_lft forever\n".to_vec();
        let route = b"default via 10.1.0.254 dev eth0\n10.1.0.0/24 dev eth0 proto kernel scope link src 10.1.0.11\n".to_vec();
        let route6 = b"2001:db8:1::/64 dev eth0 proto kernel metric 256 pref medium\ndefault via 2001:db8:1::1 dev eth0 metric 1024 pref medium\n".to_vec();
        let v4 =
            b"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
                .to_vec();
        let v6 = b"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -d 2001:db8:2::5/128 -p tcp -j REJECT --reject-with icmp6-port-unreachable\nCOMMIT\n".to_vec();
        let base = vec![
            ("nodes/n/ip-addr.txt".to_string(), addr),
            ("nodes/n/ip-route.txt".to_string(), route),
            ("nodes/n/ip-6-route.txt".to_string(), route6),
            ("nodes/n/ip-rule.txt".to_string(), rule.clone()),
            ("nodes/n/ip-6-rule.txt".to_string(), rule),
            ("nodes/n/iptables-save.txt".to_string(), v4),
        ];
        let req = TraceRequest {
            client: "2001:db8:9::9".parse().unwrap(),
            client_port: None,
            target: crate::trace::Target::parse("[2001:db8:2::5]:80").unwrap(),
            proto: L4::Tcp,
            what_if: Vec::new(),
        };
        let pkt6 = nf::Packet::tcp(
            "2001:db8:9::9".parse().unwrap(),
            40000,
            "2001:db8:2::5".parse().unwrap(),
            80,
        );
        let pkt4 = nf::Packet::tcp(
            "10.200.0.9".parse().unwrap(),
            40000,
            "10.2.0.5".parse().unwrap(),
            80,
        );
        let m = kubepath_ingest::load_files(base.clone()).unwrap().model;
        let ctx = Ctx::new(&m, &req, 80);
        let e = node::nf_trace(&ctx, "n", &pkt6).unwrap_err();
        assert!(e.contains("no ip6tables-save output for node n"), "{e}");
        let mut both = base;
        both.push(("nodes/n/ip6tables-save.txt".to_string(), v6));
        let m = kubepath_ingest::load_files(both).unwrap().model;
        let ctx = Ctx::new(&m, &req, 80);
        let t = node::nf_trace(&ctx, "n", &pkt6).unwrap();
        assert_eq!(t.outcomes.len(), 1);
        assert!(
            matches!(
                t.outcomes[0].verdict,
                nf::Verdict::Reject { .. } | nf::Verdict::Drop
            ),
            "{:?}",
            t.outcomes[0]
        );
        assert!(t.outcomes[0]
            .steps
            .iter()
            .any(|s| s.source.file.contains("ip6tables-save")));
        // The IPv4 packet still meets the IPv4 rules (FORWARD policy DROP).
        let t = node::nf_trace(&ctx, "n", &pkt4).unwrap();
        assert!(
            matches!(t.outcomes[0].verdict, nf::Verdict::Drop),
            "{:?}",
            t.outcomes[0]
        );
    }

    /// MASQUERADE's source is the device's primary address in the next hop's subnet
    /// (inet_select_addr), not the route's `src` and not a secondary address: measured in a
    /// namespace with `10.210.0.0/24 via 10.200.0.2 src 10.200.0.9` and
    /// `10.200.0.0/24 dev ab src 10.201.0.1`, conntrack showed 10.200.0.1 for both.
    #[test]
    fn masquerade_source_ignores_the_route_src() {
        let addr = "2: ab: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n    inet 10.200.0.1/24 scope global ab\n       valid_lft forever preferred_lft forever\n    inet 10.200.0.9/24 scope global secondary ab\n       valid_lft forever preferred_lft forever\n    inet 10.201.0.1/24 scope global ab\n       valid_lft forever preferred_lft forever\n";
        let route = "10.200.0.0/24 dev ab proto kernel scope link src 10.201.0.1\n10.201.0.0/24 dev ab proto kernel scope link src 10.201.0.1\n10.210.0.0/24 via 10.200.0.2 dev ab src 10.200.0.9\n";
        let snap = kubepath_ingest::load_files(vec![
            ("nodes/n/ip-addr.txt".into(), addr.as_bytes().to_vec()),
            ("nodes/n/ip-route.txt".into(), route.as_bytes().to_vec()),
            (
                "nodes/n/ip-rule.txt".into(),
                b"0:\tfrom all lookup local\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n".to_vec(),
            ),
        ])
        .unwrap();
        let node = &snap.model.nodes["n"];
        let routes = routing::NodeRoutes::new(node);
        let oracle = NodeOracle {
            node,
            routes: &routes,
        };
        for dst in ["10.210.0.5", "10.200.0.7"] {
            let pkt = nf::Packet::tcp(
                "192.168.1.2".parse().unwrap(),
                40000,
                dst.parse().unwrap(),
                80,
            );
            match oracle.route(&pkt) {
                nf::RouteDecision::Forward { src_hint, .. } => {
                    assert_eq!(src_hint, Some("10.200.0.1".parse().unwrap()), "{dst}")
                }
                other => panic!("{dst}: {other:?}"),
            }
        }
    }
}
