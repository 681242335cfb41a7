//! Flow checks: the trace engine run for every client prefix of the manifest x every exposed
//! entry point, and its failing verdicts turned into findings.
//!
//! A client prefix is split into the address classes the snapshot distinguishes
//! ([`address_classes`]): every prefix strictly inside it that a node route (any table), a node
//! `ip rule` selector or a router route names, and the rest of it; each class is traced from
//! one representative address (the rest from the prefix's first host, as before). Failing
//! branches of all classes and entry points are grouped by (client prefix, verdict, nodes), so
//! the seed's fault is one finding ("asymmetric return for 10.210.150.80/28 on 11 nodes")
//! rather than one per node and port. When a group fails for some classes only, the finding
//! names the part that fails and what the others give; when another class is delivered, it is
//! `flow-partial-prefix` (a fix applied for some hosts only). The trace's fixes are kept as
//! they are, and the first verified one is re-simulated on every flow of the finding.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use kubepath_model::k8s::ServiceType;
use kubepath_model::net::RouteType;
use kubepath_model::Model;

use super::{verdict_severity, Finding, FindingFix, Severity};
use crate::trace::{self, Target, TraceRequest, TraceResult, Verdict, L4};

/// An exposed entry point: what a client outside the cluster connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    /// `ns/name 10.0.0.1:80/tcp` or `http://host/path (Ingress ns/name)`.
    pub label: String,
    pub target: Target,
    pub proto: L4Name,
}

/// [`L4`] with an order (for sorting entry points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum L4Name {
    Tcp,
    Udp,
}

impl L4Name {
    fn l4(self) -> L4 {
        match self {
            L4Name::Tcp => L4::Tcp,
            L4Name::Udp => L4::Udp,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            L4Name::Tcp => "tcp",
            L4Name::Udp => "udp",
        }
    }
}

/// One traced flow: a client prefix to an entry point, and its verdicts.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The manifest's client name (or the prefix when it has none).
    pub client: String,
    pub prefix: IpNet,
    /// The address class of the prefix the address represents (the prefix itself for the
    /// rest of it, and in `reach`).
    pub class: IpNet,
    /// The address traced for the class.
    pub address: IpAddr,
    pub entry: String,
    pub verdicts: BTreeMap<Verdict, f64>,
}

/// Every exposed entry point of the snapshot: each port of each LoadBalancer IP of a
/// LoadBalancer Service (status, else the requested `spec.loadBalancerIP`), and each host of
/// each Ingress rule that the snapshot's DNS resolves (as `http://host/<first path>`).
pub fn exposed_entries(model: &Model) -> Vec<Exposed> {
    let c = &model.cluster;
    let mut out: BTreeMap<String, Exposed> = BTreeMap::new();
    for svc in c.services.values() {
        if svc.type_ != ServiceType::LoadBalancer {
            continue;
        }
        let mut ips = svc.lb_ingress_ips();
        if ips.is_empty() {
            ips.extend(svc.load_balancer_ip);
        }
        for ip in ips {
            for p in &svc.ports {
                let (proto, pname) = match p.protocol.to_ascii_uppercase().as_str() {
                    "TCP" => (L4Name::Tcp, "tcp"),
                    "UDP" => (L4Name::Udp, "udp"),
                    _ => continue,
                };
                let Ok(port) = u16::try_from(p.port) else {
                    continue;
                };
                let addr = match ip {
                    IpAddr::V4(_) => format!("{ip}:{port}"),
                    IpAddr::V6(_) => format!("[{ip}]:{port}"),
                };
                let label = format!("{} {addr}/{pname}", svc.key);
                out.entry(label.clone()).or_insert(Exposed {
                    label,
                    target: Target::Addr {
                        ip,
                        port: Some(port),
                    },
                    proto,
                });
            }
        }
    }
    for ing in &c.ingresses {
        for rule in &ing.rules {
            let Some(host) = rule.host.as_deref() else {
                continue;
            };
            if host.starts_with('*') || model.dns.resolve(host).addresses.is_empty() {
                continue;
            }
            let path = rule
                .paths
                .iter()
                .filter_map(|p| p.path.as_deref())
                .find(|p| p.starts_with('/') && !p.contains(['(', '[', '*', '$', '^', ' ']))
                .unwrap_or("/");
            let label = format!("http://{host}{path} (Ingress {})", ing.key);
            out.entry(label.clone()).or_insert(Exposed {
                label,
                target: Target::Url {
                    https: false,
                    host: host.to_string(),
                    port: None,
                    path: path.to_string(),
                },
                proto: L4Name::Tcp,
            });
        }
    }
    out.into_values().collect()
}

/// The most address classes traced for one client prefix.
pub const MAX_CLASSES: usize = 64;

/// One class of addresses of a client prefix that the snapshot's routing treats alike: the
/// addresses of a sub-prefix that some node route, node `ip rule` selector or router route
/// names, outside its own more specific sub-prefixes; or the rest of the client prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrClass {
    /// The sub-prefix (the client prefix itself for the rest).
    pub prefix: IpNet,
    /// The address traced for the class.
    pub address: IpAddr,
    /// Where the sub-prefix appears (`file:line`); empty for the rest of the client prefix.
    pub sources: Vec<String>,
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(v4: bool, x: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(x as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(x))
    }
}

/// First and last address of a prefix, as integers.
fn span(p: &IpNet) -> (u128, u128) {
    (bits(p.network()), bits(p.broadcast()))
}

fn inside(outer: &IpNet, inner: &IpNet) -> bool {
    if outer.addr().is_ipv4() != inner.addr().is_ipv4() {
        return false;
    }
    let (a, b) = span(outer);
    let (c, d) = span(inner);
    a <= c && d <= b
}

/// The first address of `lo..=hi` in none of the `blockers` ranges.
fn first_free(lo: u128, hi: u128, blockers: &[(u128, u128)]) -> Option<u128> {
    let mut cand = lo;
    loop {
        if cand > hi {
            return None;
        }
        match blockers.iter().find(|b| b.0 <= cand && cand <= b.1) {
            Some(b) if b.1 == u128::MAX => return None,
            Some(b) => cand = b.1 + 1,
            None => return Some(cand),
        }
    }
}

/// The address classes of `prefix`: every prefix strictly inside it that a node route (any
/// table), a node `ip rule` `from`/`to` selector or a router route (RIB or BGP table) names,
/// each represented by its first address outside its own more specific sub-prefixes, then
/// the rest of the prefix (its first host in none of them), first, when there is one. The
/// network and broadcast addresses of an IPv4 prefix shorter than /31 are never traced. At
/// most [`MAX_CLASSES`] classes (the shortest sub-prefixes kept), with a note when capped.
pub fn address_classes(model: &Model, prefix: &IpNet, notes: &mut Vec<String>) -> Vec<AddrClass> {
    let prefix = prefix.trunc();
    let subs = named_subprefixes(model, &prefix);
    let mut subs: Vec<(IpNet, Vec<String>)> = subs.into_iter().collect();
    subs.sort_by_key(|(p, _)| (p.prefix_len(), *p));
    if subs.len() >= MAX_CLASSES {
        notes.push(format!(
            "client prefix {prefix}: {} more specific prefixes in the snapshot's routes and rules; only the {} shortest are traced as address classes of their own",
            subs.len(),
            MAX_CLASSES - 1
        ));
        subs.truncate(MAX_CLASSES - 1);
    }
    let v4 = prefix.addr().is_ipv4();
    let (lo, hi) = span(&prefix);
    let excluded = excluded_spans(model, &prefix);
    let mut out: Vec<AddrClass> = Vec::new();
    let all: Vec<(u128, u128)> = subs
        .iter()
        .map(|(p, _)| span(p))
        .chain(excluded.iter().copied())
        .collect();
    if let Some(a) = first_free(lo, hi, &all) {
        out.push(AddrClass {
            prefix,
            address: from_bits(v4, a),
            sources: Vec::new(),
        });
    }
    let mut sorted = subs.clone();
    sorted.sort_by_key(|(p, _)| *p);
    for (p, sources) in sorted {
        let mut blockers: Vec<(u128, u128)> = subs
            .iter()
            .filter(|(q, _)| q.prefix_len() > p.prefix_len() && inside(&p, q))
            .map(|(q, _)| span(q))
            .collect();
        blockers.extend(excluded.iter().copied());
        let (a, b) = span(&p);
        // A sub-prefix's own network and broadcast addresses are not hosts either.
        if v4 && p.prefix_len() < 31 {
            blockers.push((a, a));
            blockers.push((b, b));
        }
        if let Some(x) = first_free(a, b, &blockers) {
            let address = from_bits(v4, x);
            if !out.iter().any(|c| c.address == address) {
                out.push(AddrClass {
                    prefix: p,
                    address,
                    sources,
                });
            }
        }
    }
    if out.is_empty() {
        notes.push(format!(
            "client prefix {prefix}: every address of it is a martian source (0.0.0.0/8, loopback, multicast, broadcast), a network or broadcast address, a Service's address or an address of a node or router of the snapshot: no client address to trace from"
        ));
    }
    out
}

/// The prefixes strictly inside `prefix` that a node route (any table but its local,
/// broadcast and multicast entries), a node `ip rule` `from`/`to` selector or a router route
/// (RIB or BGP table) names, each with the sources that name it.
fn named_subprefixes(model: &Model, prefix: &IpNet) -> BTreeMap<IpNet, Vec<String>> {
    let prefix = *prefix;
    let mut subs: BTreeMap<IpNet, Vec<String>> = BTreeMap::new();
    let mut add = |p: &IpNet, src: String| {
        let p = p.trunc();
        if p.prefix_len() > prefix.prefix_len() && inside(&prefix, &p) {
            let s = subs.entry(p).or_default();
            if !s.contains(&src) {
                s.push(src);
            }
        }
    };
    for n in model.nodes.values() {
        // The local table's `local` and `broadcast` entries name the node's own addresses
        // and its subnets' broadcast addresses: not addresses a client has.
        for r in n.routes.iter().filter(|r| {
            !matches!(
                r.kind,
                RouteType::Local | RouteType::Broadcast | RouteType::Multicast
            )
        }) {
            add(&r.dst, r.source.to_string());
        }
        for r in &n.rules {
            for p in r.from.iter().chain(r.to.iter()) {
                add(p, r.source.to_string());
            }
        }
    }
    for rt in model.routers.values() {
        for vrf in rt.vrfs.values() {
            for r in &vrf.rib {
                add(&r.prefix, r.source.to_string());
            }
            for r in &vrf.bgp {
                let src = r
                    .paths
                    .first()
                    .map(|p| p.source.to_string())
                    .or_else(|| vrf.bgp_source.as_ref().map(|s| s.to_string()))
                    .unwrap_or_default();
                add(&r.prefix, src);
            }
        }
    }
    subs
}

/// The address spans of `prefix` never traced as a client: its network and broadcast
/// addresses (IPv4 with hosts), the martian sources, the Services' addresses and the
/// addresses of the snapshot's nodes and routers.
fn excluded_spans(model: &Model, prefix: &IpNet) -> Vec<(u128, u128)> {
    let prefix = *prefix;
    let v4 = prefix.addr().is_ipv4();
    let (lo, hi) = span(&prefix);
    // Never a source Linux drops as martian (ip_route_input_slow: zeronet 0.0.0.0/8,
    // loopback, multicast, limited broadcast; for IPv6 the unspecified, loopback and multicast
    // addresses): the trace refuses them as clients.
    let mut martian: Vec<(u128, u128)> = Vec::new();
    let nets: &[&str] = if v4 {
        &[
            "0.0.0.0/8",
            "127.0.0.0/8",
            "224.0.0.0/4",
            "255.255.255.255/32",
        ]
    } else {
        &["::/128", "::1/128", "ff00::/8"]
    };
    for n in nets {
        if let Ok(n) = n.parse::<IpNet>() {
            martian.push(span(&n));
        }
    }
    // Nor a Service's address (a LoadBalancer IP has a router route of its own, so it would
    // be a class): that is where clients connect to, not from.
    let services: Vec<IpAddr> = model
        .cluster
        .services
        .values()
        .flat_map(|s| {
            s.lb_ingress_ips()
                .into_iter()
                .chain(s.cluster_ips.iter().copied())
                .chain(s.external_ips.iter().copied())
                .chain(s.load_balancer_ip)
        })
        .filter(|a| prefix.contains(a))
        .collect();
    // Never the network or broadcast address of an IPv4 prefix with hosts.
    let mut excluded: Vec<(u128, u128)> = Vec::new();
    if v4 && prefix.prefix_len() < 31 {
        excluded.push((lo, lo));
        excluded.push((hi, hi));
    }
    excluded.extend(martian.iter().copied());
    for a in services {
        let b = bits(a);
        excluded.push((b, b));
    }
    // Nor an address of a node or a router of the snapshot: a client prefix that covers the
    // nodes' own subnets (10.0.0.0/8) is traced from a host of it, not from a node, whose
    // packets the kernel would treat as local.
    let own = model
        .nodes
        .values()
        .flat_map(|n| n.interfaces.iter())
        .flat_map(|i| i.addresses.iter().map(|a| a.address.addr()))
        .chain(
            model
                .routers
                .values()
                .flat_map(|r| r.interfaces.iter())
                .flat_map(|i| i.addresses.iter().chain(i.anycast_addresses.iter()))
                .map(|a| a.addr()),
        );
    for a in own {
        if prefix.contains(&a) {
            let b = bits(a);
            excluded.push((b, b));
        }
    }
    excluded
}

/// Whether Linux drops a packet from `ip` as a martian source whatever the routes say
/// (`ip_route_input_slow`: 0.0.0.0/8, loopback, multicast, the limited broadcast; for IPv6
/// the unspecified, loopback and multicast addresses): never a client's address.
pub fn martian_source(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            v.octets()[0] == 0 || v.is_broadcast() || v.is_multicast() || v.is_loopback()
        }
        IpAddr::V6(v) => v.is_unspecified() || v.is_multicast() || v.is_loopback(),
    }
}

/// The address traced for a client prefix: its first host.
pub fn representative(prefix: &IpNet) -> IpAddr {
    prefix.hosts().next().unwrap_or_else(|| prefix.addr())
}

fn family_matches(model: &Model, target: &Target, client: IpAddr) -> bool {
    use kubepath_model::dns::RData;
    match target {
        Target::Addr { ip, .. } => ip.is_ipv4() == client.is_ipv4(),
        // A name: when the snapshot's DNS resolves it, only to addresses of the client's
        // family (a connection never changes family on the way).
        Target::Url { host, .. } | Target::Host { host, .. } => {
            let addrs = model.dns.resolve(host).addresses;
            addrs.is_empty()
                || addrs.iter().any(|r| match r.data {
                    RData::A(_) => client.is_ipv4(),
                    RData::Aaaa(_) => client.is_ipv6(),
                    _ => false,
                })
        }
    }
}

/// The failing branches of one verdict in one trace.
#[derive(Default)]
struct Failing {
    nodes: BTreeSet<String>,
    share: f64,
    best: f64,
    reason: String,
    evidence: Vec<String>,
}

/// One failing hit of a group: an (address class, entry point) trace.
struct Hit {
    class: usize,
    entry: usize,
    share: f64,
    reason: String,
    evidence: Vec<String>,
}

/// One failing (client prefix, verdict, nodes) group over all address classes and entry
/// points.
struct Group {
    client: String,
    prefix: IpNet,
    verdict: Verdict,
    nodes: Vec<String>,
    /// Every address class of the prefix (traced or not by this group).
    classes: Vec<AddrClass>,
    /// In class-major order: the first hit is of the first failing class.
    hits: Vec<Hit>,
}

impl Group {
    fn address(&self) -> IpAddr {
        self.classes[self.hits[0].class].address
    }
    fn entries(&self) -> BTreeSet<usize> {
        self.hits.iter().map(|h| h.entry).collect()
    }
    fn failing_classes(&self) -> BTreeSet<usize> {
        self.hits.iter().map(|h| h.class).collect()
    }
}

/// Traces of one check run: (client prefix, traced address, entry index) -> the trace.
type Traces = BTreeMap<(IpNet, IpAddr, usize), (TraceRequest, TraceResult)>;

/// The most threads the flows are traced on.
const MAX_THREADS: usize = 8;

/// `f(i)` for every `i` in `0..n`, in order, computed on this thread and up to
/// `available_parallelism() - 1` more (at most [`MAX_THREADS`] in all), each with this
/// thread's routing indexes and memo of `model`. Each `f(i)` is a pure function of `i`, so
/// the result is the same on any number of threads.
fn par_map<T: Send>(model: &Model, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(MAX_THREADS)
        .min(n);
    if threads <= 1 {
        return (0..n).map(f).collect();
    }
    // What every trace of the model builds on first use, built once before the threads start.
    trace::warm(model);
    let routes = trace::RoutesCache::for_model(model);
    let memo = trace::memo::current(model);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= n {
                return out;
            }
            out.push((i, f(i)));
        }
    };
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads)
            .map(|_| {
                let (routes, memo) = (routes.clone(), memo.clone());
                s.spawn(|| {
                    trace::with_shared_routes(model, routes, || match memo {
                        Some(m) => trace::memo::with_shared(m, work),
                        None => work(),
                    })
                })
            })
            .collect();
        let mut done = vec![work()];
        for h in handles {
            match h.join() {
                Ok(v) => done.push(v),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
        for (i, v) in done.into_iter().flatten() {
            slots[i] = Some(v);
        }
    });
    slots
        .into_iter()
        .map(|v| v.expect("par_map: every index is computed"))
        .collect()
}

/// Traces every (client prefix address class, entry point) and turns failing verdicts into
/// findings.
pub fn check(model: &Model, notes: &mut Vec<String>) -> (Vec<Flow>, Vec<Finding>) {
    // The fixes' changed models and their runs are shared between the traces of one client
    // address (each entry point verifies the same fixes) and the re-simulation of its
    // findings' fixes, which is done as soon as the prefix is traced (`trace::memo`).
    // Every trace of `model` shares the nodes' routing indexes.
    let routes = std::sync::Arc::new(trace::RoutesCache::new(model));
    trace::with_shared_routes(model, routes, || {
        trace::memo::with_memo(model, || check_flows(model, notes))
    })
}

fn check_flows(model: &Model, notes: &mut Vec<String>) -> (Vec<Flow>, Vec<Finding>) {
    let entries = exposed_entries(model);
    if model.manifest.clients.is_empty() {
        notes.push(
            "no client prefixes in the manifest (kubepath.yaml `clients:`): the flow checks (asymmetric return, no route back, rp_filter, ...) did not run".into(),
        );
        let f = not_checked_finding(
            "no client prefixes in the manifest",
            "List the client prefixes and their entry routers in kubepath.yaml `clients:` (docs/snapshot.md).",
        );
        return (Vec::new(), vec![f]);
    }
    if entries.is_empty() {
        notes.push(
            "no exposed entry point (LoadBalancer IP or Ingress host that DNS resolves): the flow checks did not run".into(),
        );
        let f = not_checked_finding(
            "no exposed entry point (a LoadBalancer IP, or an Ingress host that the snapshot's DNS resolves)",
            "Collect the Services (kubectl get svc -A -o yaml), the Ingresses and the DNS records of their hosts.",
        );
        return (Vec::new(), vec![f]);
    }
    let mut flows = Vec::new();
    // (client, prefix, verdict, nodes) -> the failing branches over all classes and entries
    let mut groups: BTreeMap<(String, IpNet, Verdict, Vec<String>), Group> = BTreeMap::new();
    // The trace of each (prefix, address, entry) (the same for every client naming the prefix).
    let mut traces: Traces = BTreeMap::new();
    let mut class_cache: BTreeMap<IpNet, Vec<AddrClass>> = BTreeMap::new();
    let mut seen: BTreeSet<(String, IpNet)> = BTreeSet::new();
    // A group's hits all come from the iteration of its (client, prefix), and the traces of
    // a prefix are all made by its first iteration: its findings are final once it is done.
    let mut findings: BTreeMap<(String, IpNet, Verdict, Vec<String>), Finding> = BTreeMap::new();
    for client in &model.manifest.clients {
        let name = client.name.clone();
        for prefix in &client.prefixes {
            let cname = name.clone().unwrap_or_else(|| prefix.to_string());
            // The same client and prefix listed twice is one flow set, not two.
            if !seen.insert((cname.clone(), prefix.trunc())) {
                continue;
            }
            let classes = class_cache
                .entry(*prefix)
                .or_insert_with(|| address_classes(model, prefix, notes))
                .clone();
            trace_missing(model, &entries, prefix, &classes, &mut traces);
            for (ci, class) in classes.iter().enumerate() {
                let address = class.address;
                for (i, e) in entries.iter().enumerate() {
                    if !family_matches(model, &e.target, address) {
                        continue;
                    }
                    let key = (*prefix, address, i);
                    let (_, result) = traces.entry(key).or_insert_with(|| {
                        let req = TraceRequest {
                            client: address,
                            client_port: None,
                            target: e.target.clone(),
                            proto: e.proto.l4(),
                            what_if: Vec::new(),
                        };
                        let result = kept(trace::trace(model, &req));
                        (req, result)
                    });
                    flows.push(Flow {
                        client: cname.clone(),
                        prefix: *prefix,
                        class: class.prefix,
                        address,
                        entry: e.label.clone(),
                        verdicts: result.verdicts.clone(),
                    });
                    for (v, x) in failing_by_verdict(result) {
                        let nodes: Vec<String> = x.nodes.into_iter().collect();
                        let g = groups
                            .entry((cname.clone(), *prefix, v, nodes.clone()))
                            .or_insert_with(|| Group {
                                client: cname.clone(),
                                prefix: *prefix,
                                verdict: v,
                                nodes,
                                classes: classes.clone(),
                                hits: Vec::new(),
                            });
                        g.hits.push(Hit {
                            class: ci,
                            entry: i,
                            share: x.share,
                            reason: x.reason,
                            evidence: x.evidence,
                        });
                    }
                }
            }
            for (k, g) in std::mem::take(&mut groups) {
                findings.insert(k, finding(model, &entries, &traces, g));
            }
        }
    }
    let mut findings: Vec<Finding> = findings.into_values().collect();
    findings.extend(untraced_findings(model, &flows));
    (flows, findings)
}

/// A finding (warning) that the flow checks did not run: nothing traced is not "nothing
/// wrong", and a CI gate must not pass a snapshot it could not check.
fn not_checked_finding(why: &str, what: &str) -> Finding {
    Finding {
        code: "flow-not-checked",
        severity: Severity::Warning,
        title: format!("the flow checks did not run: {why}"),
        explanation: format!(
            "{why}, so no client was traced to any entry point: the end-to-end checks (asymmetric return, no route back, rp_filter, drops) said nothing about this snapshot. {what}"
        ),
        evidence: Vec::new(),
        affected: Vec::new(),
        fixes: vec![FindingFix::advice(what.to_string())],
        share: 0.0,
    }
}

/// Makes the traces of `prefix`'s address classes to the entries not made yet, on every
/// core (the caller takes them in order, and its fixes are re-simulated right after, while
/// the memo holds them).
fn trace_missing(
    model: &Model,
    entries: &[Exposed],
    prefix: &IpNet,
    classes: &[AddrClass],
    traces: &mut Traces,
) {
    let mut todo: Vec<(IpAddr, usize)> = Vec::new();
    for class in classes {
        for (i, e) in entries.iter().enumerate() {
            let key = (*prefix, class.address, i);
            if family_matches(model, &e.target, class.address)
                && !traces.contains_key(&key)
                && !todo.contains(&(class.address, i))
            {
                todo.push((class.address, i));
            }
        }
    }
    let made = par_map(model, todo.len(), |k| {
        let (address, i) = todo[k];
        let req = TraceRequest {
            client: address,
            client_port: None,
            target: entries[i].target.clone(),
            proto: entries[i].proto.l4(),
            what_if: Vec::new(),
        };
        let result = kept(trace::trace(model, &req));
        (req, result)
    });
    for ((address, i), r) in todo.into_iter().zip(made) {
        traces.insert((*prefix, address, i), r);
    }
}

/// What `check` keeps of a trace until its prefix's findings are made: the verdicts, the
/// failing branches and the fixes (all that [`failing_by_verdict`], [`class_outcome`] and
/// [`fixes`] read). The rest (each node's netfilter stage, the fabric lookups, the
/// distributions, the delivered branches' hops) is dropped as soon as the trace is made: at
/// 10,000 Services it was hundreds of megabytes over thousands of traces.
fn kept(r: TraceResult) -> TraceResult {
    TraceResult {
        verdicts: r.verdicts,
        branches: r
            .branches
            .into_iter()
            .filter(|b| b.verdict != Verdict::Delivered)
            .collect(),
        fixes: r.fixes,
        ..TraceResult::default()
    }
}

/// Per verdict over all the failing branches of a trace: the nodes, the failing share, and
/// the reason and evidence of the most probable branch.
fn failing_by_verdict(result: &TraceResult) -> BTreeMap<Verdict, Failing> {
    let mut by_verdict: BTreeMap<Verdict, Failing> = BTreeMap::new();
    for b in &result.branches {
        if b.verdict == Verdict::Delivered || b.probability <= 1e-12 {
            continue;
        }
        let slot = by_verdict.entry(b.verdict).or_default();
        slot.nodes.extend(b.nodes.iter().cloned());
        slot.share += b.probability;
        if b.probability > slot.best {
            slot.best = b.probability;
            slot.reason = b.reason.clone();
            slot.evidence = b
                .ret
                .iter()
                .chain(b.forward.iter())
                .filter_map(|h| h.source.as_ref().map(|s| s.to_string()))
                .collect();
        }
    }
    by_verdict
}

/// A client prefix nothing was traced from (no usable address, or no entry point of its
/// address family) was not checked: said as such, never a silent pass.
fn untraced_findings(model: &Model, flows: &[Flow]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut untraced: Vec<(String, IpNet)> = Vec::new();
    for (name, prefix) in manifest_prefixes(model) {
        if !flows.iter().any(|f| f.prefix == prefix) && !untraced.contains(&(name.clone(), prefix))
        {
            untraced.push((name, prefix));
        }
    }
    for (name, prefix) in untraced {
        let has_address = !address_classes(model, &prefix, &mut Vec::new()).is_empty();
        let why = if has_address {
            format!(
                "no exposed entry point of its address family (IPv{}): a connection never changes family",
                if prefix.addr().is_ipv4() { 4 } else { 6 }
            )
        } else {
            "none of its addresses can be a client's (martian sources, network or broadcast addresses, Service addresses, the nodes' and routers' own)".to_string()
        };
        findings.push(Finding {
            code: "flow-not-checked",
            severity: Severity::Warning,
            title: format!("client {name} {prefix} was not traced: {why}"),
            explanation: format!(
                "No flow was traced from client prefix {prefix}: {why}. The end-to-end checks said nothing about this client."
            ),
            evidence: model
                .manifest
                .clients
                .iter()
                .filter(|c| c.prefixes.contains(&prefix))
                .map(|c| c.source.to_string())
                .collect(),
            affected: vec![format!("client {name} {prefix}")],
            fixes: vec![FindingFix::advice(
                "List the prefix the clients really come from in kubepath.yaml `clients:`, or check that the Service or Ingress is exposed in the client's address family.",
            )],
            share: 0.0,
        });
    }
    findings
}

fn code(v: Verdict) -> &'static str {
    match v {
        Verdict::Delivered => "flow-delivered",
        Verdict::AsymmetricReturn => "flow-asymmetric-return",
        Verdict::NoRoute => "flow-no-route",
        Verdict::RoutingLoop => "flow-routing-loop",
        Verdict::RpFilter => "flow-rp-filter",
        Verdict::Dropped => "flow-dropped",
        Verdict::NoEndpoints => "flow-no-endpoints",
        Verdict::Unknown => "flow-unknown",
    }
}

fn what(v: Verdict) -> &'static str {
    match v {
        Verdict::Delivered => "delivered",
        Verdict::AsymmetricReturn => "asymmetric return path",
        Verdict::NoRoute => "no route",
        Verdict::RoutingLoop => "routing loop",
        Verdict::RpFilter => "reverse-path filter drop",
        Verdict::Dropped => "dropped",
        Verdict::NoEndpoints => "no endpoints",
        Verdict::Unknown => "undecidable path",
    }
}

fn nodes_text(nodes: &[String], total: usize) -> String {
    match nodes.len() {
        0 => String::new(),
        1 => format!(" on node {}", nodes[0]),
        n if n == total && n > 1 => format!(" on all {n} nodes"),
        n => format!(" on {n} nodes"),
    }
}

/// What the traces of one address class give on the given entry points: `None` when every
/// connection is delivered, else the failing verdicts by name.
fn class_outcome(
    traces: &Traces,
    prefix: IpNet,
    class: &AddrClass,
    entries: &BTreeSet<usize>,
) -> Option<String> {
    let mut failing: BTreeSet<&'static str> = BTreeSet::new();
    for i in entries {
        if let Some((_, r)) = traces.get(&(prefix, class.address, *i)) {
            for (v, p) in &r.verdicts {
                if *v != Verdict::Delivered && *p > 1e-12 {
                    failing.insert(v.name());
                }
            }
        }
    }
    if failing.is_empty() {
        None
    } else {
        Some(failing.into_iter().collect::<Vec<_>>().join(", "))
    }
}

/// `A, B (which are delivered) and C (which gets no-route)`.
fn classes_text(parts: &[(String, Option<String>)]) -> String {
    let mut by_outcome: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for (label, outcome) in parts {
        by_outcome
            .entry(outcome.clone())
            .or_default()
            .push(label.clone());
    }
    by_outcome
        .into_iter()
        .map(|(o, labels)| {
            let n = labels.len();
            let how = match o {
                None if n == 1 => "which is delivered".to_string(),
                None => "which are delivered".to_string(),
                Some(v) if n == 1 => format!("which gets {v}"),
                Some(v) => format!("which get {v}"),
            };
            format!("{} ({how})", labels.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

/// How an address class was chosen, for the explanation.
fn class_origin(prefix: &IpNet, class: &AddrClass, all: &[AddrClass]) -> String {
    if class.prefix == prefix.trunc() {
        if class.address == representative(prefix) {
            format!("the first host of {prefix}")
        } else {
            format!("the first host of {prefix} outside its more specific routes")
        }
    } else {
        let more = all
            .iter()
            .any(|c| c.prefix != class.prefix && inside(&class.prefix, &c.prefix));
        format!(
            "the first address of {}{}, a more specific prefix of {prefix} in {}",
            class.prefix,
            if more {
                " outside its own more specific ones"
            } else {
                ""
            },
            class
                .sources
                .first()
                .map(String::as_str)
                .unwrap_or("the snapshot")
        )
    }
}

fn finding(model: &Model, entries: &[super::Exposed], traces: &Traces, g: Group) -> Finding {
    let total_nodes = model.nodes.len().max(model.cluster.nodes.len());
    let share = g.hits.iter().map(|h| h.share).sum::<f64>() / g.hits.len().max(1) as f64;
    let group_entries = g.entries();
    let traced_entries = traces
        .keys()
        .filter(|(p, a, _)| *p == g.prefix && *a == g.address())
        .count();
    let split = ClassSplit::of(traces, &g, &group_entries);
    let mut title = format!(
        "{} for client {} {}{} ({} of {} entry point{})",
        what(g.verdict),
        g.client,
        split.scope(&g),
        nodes_text(&g.nodes, total_nodes),
        group_entries.len(),
        traced_entries,
        if traced_entries == 1 { "" } else { "s" }
    );
    if split.partial_fix {
        title.push_str(": a fix applied for some hosts only");
    }
    let explanation = split.explanation(entries, &g);
    let evidence = split.evidence(&g);
    let affected = split.affected(entries, &g);
    let fixes = fixes(model, traces, &g);
    let (code, severity) = if split.partial_fix {
        // As severe as what still fails there: the hosts left out are as broken as before.
        ("flow-partial-prefix", verdict_severity(g.verdict))
    } else {
        (code(g.verdict), verdict_severity(g.verdict))
    };
    Finding {
        code,
        severity,
        title,
        explanation,
        evidence,
        affected,
        fixes,
        share,
    }
}

/// How a group's failure divides the address classes of its prefix.
struct ClassSplit {
    /// The classes the group hits.
    failing: BTreeSet<usize>,
    /// Every class fails this way.
    all_fail: bool,
    /// The classes this group does not hit, with what they give on its entry points
    /// (`None`: delivered).
    others: Vec<(usize, Option<String>)>,
    /// Some class is delivered: a fix applied for some hosts only.
    partial_fix: bool,
}

impl ClassSplit {
    fn of(traces: &Traces, g: &Group, group_entries: &BTreeSet<usize>) -> ClassSplit {
        let failing = g.failing_classes();
        let all_fail = failing.len() == g.classes.len();
        let others: Vec<(usize, Option<String>)> = (0..g.classes.len())
            .filter(|c| !failing.contains(c))
            .map(|c| {
                (
                    c,
                    class_outcome(traces, g.prefix, &g.classes[c], group_entries),
                )
            })
            .collect();
        let partial_fix = others.iter().any(|(_, o)| o.is_none());
        ClassSplit {
            failing,
            all_fail,
            others,
            partial_fix,
        }
    }

    /// The part of the prefix that fails, for the title.
    fn scope(&self, g: &Group) -> String {
        let (failing, others) = (&self.failing, &self.others);
        let rest_fails = failing
            .iter()
            .any(|c| g.classes[*c].prefix == g.prefix.trunc());
        if self.all_fail {
            format!("{}", g.prefix)
        } else if rest_fails {
            let parts: Vec<(String, Option<String>)> = others
                .iter()
                .map(|(c, o)| (g.classes[*c].prefix.to_string(), o.clone()))
                .collect();
            format!("{} except {}", g.prefix, classes_text(&parts))
        } else {
            let labels: Vec<String> = failing
                .iter()
                .map(|c| g.classes[*c].prefix.to_string())
                .collect();
            let rest = if self.partial_fix && others.iter().all(|(_, o)| o.is_none()) {
                "the rest is delivered".to_string()
            } else {
                "the rest does not fail this way".to_string()
            };
            format!("{} of {} ({rest})", labels.join(", "), g.prefix)
        }
    }

    /// What the first hit traced, and what the other classes give.
    fn explanation(&self, entries: &[super::Exposed], g: &Group) -> String {
        let first = &g.hits[0];
        let mut reason = first.reason.clone();
        if let Some(c) = reason.get(..1) {
            let up = c.to_ascii_uppercase();
            reason.replace_range(..1, &up);
        }
        let mut explanation = format!(
            "Traced from {} ({}) to {}: {} of the connections fail (verdict {}). {reason}.",
            g.address(),
            class_origin(&g.prefix, &g.classes[first.class], &g.classes),
            entries[first.entry].label,
            pct(first.share),
            g.verdict.name(),
        );
        if self.all_fail && g.classes.len() > 1 {
            explanation.push_str(&format!(
                " The {} address classes of {} that the snapshot's routes and rules distinguish ({}) all fail this way.",
                g.classes.len(),
                g.prefix,
                g.classes
                    .iter()
                    .map(|c| c.address.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else if !self.all_fail {
            for (c, o) in &self.others {
                let class = &g.classes[*c];
                let src = if class.sources.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", class.sources.join(", "))
                };
                match o {
                    None => explanation.push_str(&format!(
                        " {}{src}, traced from {}, is delivered on the same entry points.",
                        class.prefix, class.address
                    )),
                    Some(v) => explanation.push_str(&format!(
                        " {}{src}, traced from {}, gets {v} instead.",
                        class.prefix, class.address
                    )),
                }
            }
            if self.partial_fix {
                explanation.push_str(&format!(
                    " A fix applied for some hosts only: the rest of {} still fails and needs one that covers the whole prefix.",
                    g.prefix
                ));
            }
        }
        explanation
    }

    /// The evidence: what makes a delivered part different first, then the first hit's
    /// (at most 12).
    fn evidence(&self, g: &Group) -> Vec<String> {
        let first = &g.hits[0];
        let mut evidence: Vec<String> = Vec::new();
        if self.partial_fix {
            // What makes the delivered part different comes first.
            for (c, o) in &self.others {
                if o.is_none() {
                    for s in &g.classes[*c].sources {
                        if !evidence.contains(s) {
                            evidence.push(s.clone());
                        }
                    }
                }
            }
        }
        for e in &first.evidence {
            if !evidence.contains(e) {
                evidence.push(e.clone());
            }
        }
        evidence.truncate(12);
        evidence
    }

    /// The client prefix, the entry points of the first hit's class, the failing classes
    /// (when not all fail) and the nodes.
    fn affected(&self, entries: &[super::Exposed], g: &Group) -> Vec<String> {
        let first = &g.hits[0];
        let mut affected: Vec<String> = vec![format!("client {} {}", g.client, g.prefix)];
        for h in &g.hits {
            if h.class != first.class {
                continue;
            }
            affected.push(format!(
                "{} ({} {})",
                entries[h.entry].label,
                pct(h.share),
                g.verdict.name()
            ));
        }
        if !self.all_fail {
            affected.extend(self.failing.iter().map(|c| {
                let class = &g.classes[*c];
                format!("addresses {} (traced from {})", class.prefix, class.address)
            }));
        }
        affected.extend(g.nodes.iter().map(|n| format!("node {n}")));
        affected
    }
}

fn pct(p: f64) -> String {
    let v = p * 100.0;
    if (v - v.round()).abs() < 0.05 {
        format!("{:.0}%", v)
    } else {
        format!("{v:.1}%")
    }
}

/// At most this many fixes of a finding are re-simulated over the whole client prefix.
const MAX_RECHECKED: usize = 4;

/// The trace's fixes of the group's first hit, verified first. Each verified fix (at most
/// [`MAX_RECHECKED`]) is re-simulated on every address class of the client prefix *in the
/// changed model* (a host route makes its host a class of its own, so the rest of the prefix
/// is traced too) x every entry point of the group: `verified` only when the group's verdict
/// is gone from all of them. The trace verified it for one address only.
fn fixes(model: &Model, traces: &Traces, g: &Group) -> Vec<FindingFix> {
    let address = g.address();
    let Some((_, first)) = traces.get(&(g.prefix, address, g.hits[0].entry)) else {
        return Vec::new();
    };
    let mut out: Vec<FindingFix> = Vec::new();
    // Verified first; among those, the ones that cover the whole client prefix (the trace's
    // host route covers only the traced address).
    let prefix = g.prefix.to_string();
    let covers = |f: &trace::Fix| f.commands.iter().any(|c| c.contains(&prefix));
    let mut fixes: Vec<&trace::Fix> = first.fixes.iter().collect();
    fixes.sort_by_key(|f| (!f.verified, !covers(f)));
    // One request per entry point of the group (its target and protocol).
    let requests: Vec<&TraceRequest> = g
        .entries()
        .into_iter()
        .filter_map(|e| {
            traces
                .iter()
                .find(|((p, _, i), _)| *p == g.prefix && *i == e)
                .map(|(_, (req, _))| req)
        })
        .collect();
    let mut rechecked = 0usize;
    for f in fixes {
        let mut verification = f.verification.clone();
        let mut status = f.status();
        if f.verified && rechecked < MAX_RECHECKED && !f.changes.is_empty() {
            rechecked += 1;
            let applied = trace::memo::applied(model, &f.changes);
            let m = &applied.model;
            let mut scratch = Vec::new();
            let classes = address_classes(m, &g.prefix, &mut scratch);
            let mut n = 0usize;
            let mut still: BTreeSet<IpAddr> = BTreeSet::new();
            for class in &classes {
                for req in &requests {
                    if !family_matches(model, &req.target, class.address) {
                        continue;
                    }
                    let req = TraceRequest {
                        client: class.address,
                        ..(*req).clone()
                    };
                    let r = trace::memo::run_applied(model, &f.changes, &applied, &req);
                    n += 1;
                    if r.verdicts.get(&g.verdict).copied().unwrap_or(0.0) > 1e-12 {
                        still.insert(class.address);
                    }
                }
            }
            let nreq = requests.len();
            if classes.len() == 1 {
                verification = format!(
                    "{verification}; re-simulated on the {nreq} entry point{} of this finding: {} gone on {}",
                    if nreq == 1 { "" } else { "s" },
                    g.verdict.name(),
                    if still.is_empty() { nreq } else { 0 }
                );
            } else {
                let failing = classes
                    .iter()
                    .filter(|c| still.contains(&c.address))
                    .count();
                verification = format!(
                    "{verification}; re-simulated on the {n} flows of {} (its {} address classes with the fix x {nreq} entry point{}): {} gone for {} of the {} classes",
                    g.prefix,
                    classes.len(),
                    if nreq == 1 { "" } else { "s" },
                    g.verdict.name(),
                    classes.len() - failing,
                    classes.len()
                );
            }
            if !still.is_empty() {
                status = "not-sufficient";
                let list: Vec<String> = still.iter().take(5).map(|a| a.to_string()).collect();
                verification = format!(
                    "{verification}; still {} from {}{}",
                    g.verdict.name(),
                    list.join(", "),
                    if still.len() > 5 { ", ..." } else { "" }
                );
            }
        }
        let mut description = f.description.clone();
        if !f.commands.is_empty() && !covers(f) && g.prefix.addr() != address {
            description.push_str(&format!(
                " (This covers the traced address {} only; the other hosts of {} need the same.)",
                address, g.prefix
            ));
        }
        out.push(FindingFix {
            description,
            commands: f.commands.clone(),
            nodes: f.nodes.clone(),
            status,
            verification,
        });
    }
    out
}

/// The manifest's client prefixes as (client name, prefix).
pub fn manifest_prefixes(model: &Model) -> Vec<(String, IpNet)> {
    let mut out: Vec<(String, IpNet)> = Vec::new();
    for c in &model.manifest.clients {
        for p in &c.prefixes {
            let item = (c.name.clone().unwrap_or_else(|| p.to_string()), *p);
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    out
}

/// `kubepath reach`: the verdict distribution of every (client prefix, entry point), each
/// prefix traced from its first host, without fixes. Entry points of another address family
/// than the prefix are left out.
pub fn reach(model: &Model, prefixes: &[(String, IpNet)]) -> (Vec<Exposed>, Vec<Flow>) {
    let routes = std::sync::Arc::new(trace::RoutesCache::new(model));
    trace::with_shared_routes(model, routes, || reach_flows(model, prefixes))
}

fn reach_flows(model: &Model, prefixes: &[(String, IpNet)]) -> (Vec<Exposed>, Vec<Flow>) {
    let entries = exposed_entries(model);
    // (name, prefix, address, entry) of every flow, in the matrix's order; traced on every
    // core.
    let mut todo: Vec<(&String, IpNet, IpAddr, usize)> = Vec::new();
    for (name, prefix) in prefixes {
        // The rest-of-prefix class's address, as `check` traces it: the first host outside the
        // prefix's more specific routes that is no node's or router's own address.
        let Some(address) = address_classes(model, prefix, &mut Vec::new())
            .first()
            .map(|c| c.address)
        else {
            // Nothing of the prefix can be a client (martian, or nodes' own addresses).
            continue;
        };
        for (i, e) in entries.iter().enumerate() {
            if family_matches(model, &e.target, address) {
                todo.push((name, *prefix, address, i));
            }
        }
    }
    let flows = par_map(model, todo.len(), |k| {
        let (name, prefix, address, i) = todo[k];
        let e = &entries[i];
        let req = TraceRequest {
            client: address,
            client_port: None,
            target: e.target.clone(),
            proto: e.proto.l4(),
            what_if: Vec::new(),
        };
        let r = trace::run(model, &req);
        Flow {
            client: name.clone(),
            prefix,
            class: prefix,
            address,
            entry: e.label.clone(),
            verdicts: r.verdicts,
        }
    });
    (entries, flows)
}
