//! Flow checks: the trace engine run for every client prefix of the manifest x every exposed
//! entry point, and its failing verdicts turned into findings.
//!
//! A client prefix is represented by its first host address (the prefix itself for a /32 or
//! /128): the trace's routing decisions are per prefix in every snapshot format kubepath
//! reads, except a route for a single host inside the prefix, which the trace of that host
//! would show. Failing branches of all entry points are grouped by (client prefix, verdict,
//! nodes), so the seed's fault is one finding ("asymmetric return for 10.210.150.80/28 on 11
//! nodes") rather than one per node and port. The trace's fixes are kept as they are, and the
//! first verified one is re-simulated on every entry point of the finding.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use kubepath_model::k8s::ServiceType;
use kubepath_model::Model;

use super::{verdict_severity, Finding, FindingFix};
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
    /// The address traced for the prefix.
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

/// The address traced for a client prefix: its first host.
pub fn representative(prefix: &IpNet) -> IpAddr {
    prefix.hosts().next().unwrap_or_else(|| prefix.addr())
}

fn family_matches(target: &Target, client: IpAddr) -> bool {
    match target {
        Target::Addr { ip, .. } => ip.is_ipv4() == client.is_ipv4(),
        _ => true,
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

/// One failing (client prefix, verdict, nodes) group over all entry points.
struct Group {
    client: String,
    prefix: IpNet,
    address: IpAddr,
    verdict: Verdict,
    nodes: Vec<String>,
    /// (entry index, failing share, reason, evidence)
    hits: Vec<(usize, f64, String, Vec<String>)>,
}

/// Traces every (client prefix, entry point) and turns failing verdicts into findings.
pub fn check(model: &Model, notes: &mut Vec<String>) -> (Vec<Flow>, Vec<Finding>) {
    let entries = exposed_entries(model);
    if model.manifest.clients.is_empty() {
        notes.push(
            "no client prefixes in the manifest (kubepath.yaml `clients:`): the flow checks (asymmetric return, no route back, rp_filter, ...) did not run".into(),
        );
        return (Vec::new(), Vec::new());
    }
    if entries.is_empty() {
        notes.push(
            "no exposed entry point (LoadBalancer IP or Ingress host that DNS resolves): the flow checks did not run".into(),
        );
        return (Vec::new(), Vec::new());
    }
    let mut flows = Vec::new();
    // (client, prefix, verdict, nodes) -> the failing branches over all entry points
    let mut groups: BTreeMap<(String, IpNet, Verdict, Vec<String>), Group> = BTreeMap::new();
    // (client prefix, entry index) -> the trace (the same for every client naming the prefix)
    let mut traces: BTreeMap<(IpNet, usize), (TraceRequest, TraceResult)> = BTreeMap::new();
    for client in &model.manifest.clients {
        let name = client.name.clone();
        for prefix in &client.prefixes {
            let cname = name.clone().unwrap_or_else(|| prefix.to_string());
            let address = representative(prefix);
            for (i, e) in entries.iter().enumerate() {
                if !family_matches(&e.target, address) {
                    continue;
                }
                let req = TraceRequest {
                    client: address,
                    client_port: None,
                    target: e.target.clone(),
                    proto: e.proto.l4(),
                    what_if: Vec::new(),
                };
                let result = trace::trace(model, &req);
                flows.push(Flow {
                    client: cname.clone(),
                    prefix: *prefix,
                    address,
                    entry: e.label.clone(),
                    verdicts: result.verdicts.clone(),
                });
                // Per verdict over all its branches: the nodes, the failing share, and the
                // reason and evidence of the most probable branch.
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
                for (v, x) in by_verdict {
                    let nodes: Vec<String> = x.nodes.into_iter().collect();
                    let g = groups
                        .entry((cname.clone(), *prefix, v, nodes.clone()))
                        .or_insert_with(|| Group {
                            client: cname.clone(),
                            prefix: *prefix,
                            address,
                            verdict: v,
                            nodes,
                            hits: Vec::new(),
                        });
                    g.hits.push((i, x.share, x.reason, x.evidence));
                }
                traces.insert((*prefix, i), (req, result));
            }
        }
    }
    let mut findings = Vec::new();
    for g in groups.into_values() {
        findings.push(finding(model, &entries, &traces, g));
    }
    (flows, findings)
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

fn finding(
    model: &Model,
    entries: &[super::Exposed],
    traces: &BTreeMap<(IpNet, usize), (TraceRequest, TraceResult)>,
    g: Group,
) -> Finding {
    let total_nodes = model.nodes.len().max(model.cluster.nodes.len());
    let share = g.hits.iter().map(|h| h.1).sum::<f64>() / g.hits.len().max(1) as f64;
    let (first_entry, _, reason, ev) = &g.hits[0];
    let title = format!(
        "{} for client {} {}{} ({} of {} entry point{})",
        what(g.verdict),
        g.client,
        g.prefix,
        nodes_text(&g.nodes, total_nodes),
        g.hits.len(),
        traces.keys().filter(|(p, _)| *p == g.prefix).count(),
        if traces.keys().filter(|(p, _)| *p == g.prefix).count() == 1 {
            ""
        } else {
            "s"
        }
    );
    let mut reason = reason.clone();
    if let Some(c) = reason.get(..1) {
        let up = c.to_ascii_uppercase();
        reason.replace_range(..1, &up);
    }
    let explanation = format!(
        "Traced from {} (the first host of {}) to {}: {} of the connections fail (verdict {}). {reason}.",
        g.address,
        g.prefix,
        entries[*first_entry].label,
        pct(g.hits[0].1),
        g.verdict.name(),
    );
    let mut evidence: Vec<String> = Vec::new();
    for e in ev {
        if !evidence.contains(e) {
            evidence.push(e.clone());
        }
    }
    evidence.truncate(12);
    let mut affected: Vec<String> = g
        .hits
        .iter()
        .map(|(i, s, _, _)| format!("{} ({} {})", entries[*i].label, pct(*s), g.verdict.name()))
        .collect();
    affected.extend(g.nodes.iter().map(|n| format!("node {n}")));
    let fixes = fixes(model, traces, &g);
    Finding {
        code: code(g.verdict),
        severity: verdict_severity(g.verdict),
        title,
        explanation,
        evidence,
        affected,
        fixes,
        share,
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

/// The trace's fixes of the group's first entry point, verified first; the first verified fix
/// is re-simulated on every entry point of the group.
fn fixes(
    model: &Model,
    traces: &BTreeMap<(IpNet, usize), (TraceRequest, TraceResult)>,
    g: &Group,
) -> Vec<FindingFix> {
    let Some((_, first)) = traces.get(&(g.prefix, g.hits[0].0)) else {
        return Vec::new();
    };
    let mut out: Vec<FindingFix> = Vec::new();
    // Verified first; among those, the ones that cover the whole client prefix (the trace's
    // host route covers only the traced address).
    let prefix = g.prefix.to_string();
    let covers = |f: &trace::Fix| f.commands.iter().any(|c| c.contains(&prefix));
    let mut fixes: Vec<&trace::Fix> = first.fixes.iter().collect();
    fixes.sort_by_key(|f| (!f.verified, !covers(f)));
    let mut rechecked = false;
    for f in fixes {
        let mut verification = f.verification.clone();
        let mut status = f.status();
        if f.verified && !rechecked && !f.changes.is_empty() {
            rechecked = true;
            let (m, _) = trace::whatif::apply(model, &f.changes);
            let mut gone = 0usize;
            for (i, _, _, _) in &g.hits {
                if let Some((req, _)) = traces.get(&(g.prefix, *i)) {
                    let r = trace::run(&m, req);
                    if r.verdicts.get(&g.verdict).copied().unwrap_or(0.0) <= 1e-12 {
                        gone += 1;
                    }
                }
            }
            verification = format!(
                "{verification}; re-simulated on the {} entry point{} of this finding: {} gone on {gone}",
                g.hits.len(),
                if g.hits.len() == 1 { "" } else { "s" },
                g.verdict.name()
            );
            if gone < g.hits.len() {
                status = "not-sufficient";
            }
        }
        let mut description = f.description.clone();
        if !f.commands.is_empty() && !covers(f) && g.prefix.addr() != g.address {
            description.push_str(&format!(
                " (This covers the traced address {} only; the other hosts of {} need the same.)",
                g.address, g.prefix
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
    let mut out = Vec::new();
    for c in &model.manifest.clients {
        for p in &c.prefixes {
            out.push((c.name.clone().unwrap_or_else(|| p.to_string()), *p));
        }
    }
    out
}

/// `kubepath reach`: the verdict distribution of every (client prefix, entry point), each
/// prefix traced from its first host, without fixes. Entry points of another address family
/// than the prefix are left out.
pub fn reach(model: &Model, prefixes: &[(String, IpNet)]) -> (Vec<Exposed>, Vec<Flow>) {
    let entries = exposed_entries(model);
    let mut flows = Vec::new();
    for (name, prefix) in prefixes {
        let address = representative(prefix);
        for e in &entries {
            if !family_matches(&e.target, address) {
                continue;
            }
            let req = TraceRequest {
                client: address,
                client_port: None,
                target: e.target.clone(),
                proto: e.proto.l4(),
                what_if: Vec::new(),
            };
            let r = trace::run(model, &req);
            flows.push(Flow {
                client: name.clone(),
                prefix: *prefix,
                address,
                entry: e.label.clone(),
                verdicts: r.verdicts,
            });
        }
    }
    (entries, flows)
}
