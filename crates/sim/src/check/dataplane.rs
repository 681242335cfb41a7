//! Node and data-plane checks: what the nodes' own state says against the objects and against
//! each other, without tracing a flow.
//!
//! - `nginx-conf-stale`: the controller's nginx.conf against the servers and locations the
//!   Ingress objects give ([`crate::ingress::config::build`], compared as
//!   [`crate::ingress`]'s cross-check compares one request).
//! - `kube-proxy-stale`: a node's kube-proxy nat rules (read by their `--comment "ns/name:port"`),
//!   nft rules or IPVS table against the Services and the EndpointSlices' ready endpoints.
//! - `iptables-legacy-and-nft`: kube-proxy rules in both iptables variants on one node.
//! - `pod-ip-outside-pod-cidr`: a pod's IP outside its node's `spec.podCIDRs`.
//! - `rp-filter-strict-asymmetric`: strict rp_filter on an interface where client traffic to a
//!   LoadBalancer IP arrives, while the route back leaves by another one (the trace's own
//!   reverse-path check, [`crate::trace::routing::rp_filter_check_mode`]).
//! - `fix-half-applied`: a route or rule naming a client prefix on some nodes only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::rc::Rc;

use ipnet::IpNet;
use kubepath_model::change::{Change, Item, Op};
use kubepath_model::k8s::{ObjectKey, ServiceType};
use kubepath_model::net::{Family, IptablesBackend, NodeFact, NodeNet, RouteType};
use kubepath_model::{Model, SourceRef};
use kubepath_netfilter::Table;

use super::{Finding, FindingFix, Severity};
use crate::trace::routing::{self, FlowL4};

/// At most this many differences are listed in one finding (the count says how many more).
const MAX_LISTED: usize = 8;
/// At most this many evidence entries per finding.
const MAX_EVIDENCE: usize = 16;

/// Every node and data-plane finding.
pub fn check(model: &Model) -> Vec<Finding> {
    let mut out = Vec::new();
    nginx_conf_stale(model, &mut out);
    kube_proxy_stale(model, &mut out);
    kube_proxy_nft_stale(model, &mut out);
    kube_proxy_ipvs_stale(model, &mut out);
    iptables_legacy_and_nft(model, &mut out);
    pod_ip_outside_pod_cidr(model, &mut out);
    rp_filter_strict_asymmetric(model, &mut out);
    fix_half_applied(model, &mut out);
    out
}

fn s(src: &SourceRef) -> String {
    src.to_string()
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The first [`MAX_LISTED`] items joined, with how many were left out.
fn capped(items: &[String]) -> String {
    let mut t = items
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_LISTED {
        t.push_str(&format!("; and {} more", items.len() - MAX_LISTED));
    }
    t
}

fn push_evidence(evidence: &mut Vec<String>, e: String) {
    if evidence.len() < MAX_EVIDENCE && !evidence.contains(&e) {
        evidence.push(e);
    }
}

// ---------------------------------------------------------------------------------------------
// nginx-conf-stale

/// `nginx-conf-stale`: for each controller and the nginx.conf taken in it, the servers and
/// locations its Ingresses give that nginx.conf lacks, and those nginx.conf has that no
/// Ingress gives. The default server `_`, servers without a name (the controller's internal
/// ones) and locations without `$ingress_name` (default backends, health checks) are left
/// out. Only when the snapshot holds Ingress objects.
fn nginx_conf_stale(model: &Model, out: &mut Vec<Finding>) {
    if model.nginx.is_empty() {
        return;
    }
    let view = crate::ingress::IngressView::shared(model);
    let world = view.world();
    if !world.ingresses_collected {
        return;
    }
    let mut seen_confs: BTreeSet<SourceRef> = BTreeSet::new();
    for ctl in view.controllers() {
        let own: Vec<_> = world
            .nginx
            .iter()
            .filter(|c| c.pod.is_some() && c.pod == ctl.pod)
            .collect();
        let confs: Vec<_> = if own.is_empty() {
            world.nginx.iter().filter(|c| c.pod.is_none()).collect()
        } else {
            own
        };
        // A conf that applies to every controller pod is compared once (with the first).
        let confs: Vec<_> = confs
            .into_iter()
            .filter(|c| seen_confs.insert(c.source.clone()))
            .collect();
        if confs.is_empty() {
            continue;
        }
        let cfg = crate::ingress::config::build(world, &ctl);
        for conf in confs {
            let mut d = StaleDiffs::default();
            ingresses_missing_from_conf(world, &cfg, conf, &mut d);
            conf_missing_from_ingresses(&cfg, conf, &mut d);
            if d.diffs.is_empty() {
                continue;
            }
            out.push(conf_stale_finding(conf, d));
        }
    }
}

/// `namespace/name` of Ingress `i` of the world, `?` when unknown.
fn ingress_name(world: &crate::ingress::world::World, i: Option<usize>) -> String {
    i.and_then(|i| world.ingresses.get(i))
        .map(|x| format!("{}/{}", x.namespace, x.name))
        .unwrap_or_else(|| "?".into())
}

/// The servers and locations the Ingresses give (`cfg`) that nginx.conf lacks.
fn ingresses_missing_from_conf(
    world: &crate::ingress::world::World,
    cfg: &crate::ingress::config::Config,
    conf: &crate::ingress::world::NginxConfObj,
    d: &mut StaleDiffs,
) {
    use crate::ingress::config;
    use crate::ingress::crosscheck::{same_location, server_name_matches};
    for (host, server) in &cfg.servers {
        if host == "_" {
            continue;
        }
        let owned: Vec<&config::Location> = server
            .locations
            .iter()
            .filter(|l| l.ingress.is_some() && !l.is_def_backend)
            .collect();
        let Some(first) = owned.first() else { continue };
        let ngx = conf
            .servers
            .iter()
            .find(|s| server_name_matches(&s.names, host));
        let Some(ngx) = ngx else {
            let ing = ingress_name(world, first.ingress);
            d.diffs.push(format!(
                "host {host} of Ingress {ing} ({}) has no server in nginx.conf",
                first.rule_source.as_ref().map(s).unwrap_or_default()
            ));
            d.affected.insert(format!("Ingress {ing}"));
            if let Some(r) = &first.rule_source {
                push_evidence(&mut d.evidence, s(r));
            }
            continue;
        };
        for l in owned {
            if ngx.locations.iter().any(|n| same_location(n, &l.rendered)) {
                continue;
            }
            let ing = ingress_name(world, l.ingress);
            d.diffs.push(format!(
                "`{}` for host {host} (Ingress {ing}, {}) is missing from server {host} at {}",
                l.rendered.line(cfg.quoted),
                l.rule_source.as_ref().map(s).unwrap_or_default(),
                ngx.source
            ));
            d.affected.insert(format!("Ingress {ing}"));
            if let Some(r) = &l.rule_source {
                push_evidence(&mut d.evidence, s(r));
            }
            push_evidence(&mut d.evidence, s(&ngx.source));
        }
    }
}

/// The servers and locations nginx.conf has that no Ingress gives (`cfg`).
fn conf_missing_from_ingresses(
    cfg: &crate::ingress::config::Config,
    conf: &crate::ingress::world::NginxConfObj,
    d: &mut StaleDiffs,
) {
    use crate::ingress::config::Rendered;
    use crate::ingress::crosscheck::{same_location, server_name_matches};
    for ngx in &conf.servers {
        let names: Vec<&String> = ngx
            .names
            .iter()
            .filter(|n| {
                let n = n.trim_matches('"');
                !n.is_empty() && n != "_"
            })
            .collect();
        if names.is_empty() {
            continue;
        }
        let cs = cfg
            .servers
            .iter()
            .find(|(h, _)| *h != "_" && server_name_matches(&ngx.names, h))
            .map(|(_, v)| v);
        let Some(cs) = cs else {
            // An alias, or the www twin of a from-to-www redirect, of a server the
            // Ingresses give.
            let twin = cfg.servers.values().any(|c| {
                names.iter().any(|n| {
                    let n = n.trim_matches('"');
                    c.aliases.iter().any(|a| a.eq_ignore_ascii_case(n))
                        || (c.from_to_www
                            && (n.strip_prefix("www.") == Some(c.hostname.as_str())
                                || c.hostname.strip_prefix("www.") == Some(n)))
                })
            });
            if twin {
                continue;
            }
            let named: BTreeSet<String> = ngx
                .locations
                .iter()
                .filter_map(|l| {
                    let n = l.ingress_name.as_deref().filter(|n| !n.is_empty())?;
                    Some(format!("{}/{}", l.namespace.as_deref().unwrap_or(""), n))
                })
                .collect();
            d.diffs.push(format!(
                "server {} at {} is given by no Ingress this controller serves{}",
                names[0],
                ngx.source,
                if named.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (its locations name Ingress {})",
                        named.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            ));
            for n in named {
                d.affected.insert(format!("Ingress {n} (in nginx.conf)"));
            }
            push_evidence(&mut d.evidence, s(&ngx.source));
            continue;
        };
        for l in &ngx.locations {
            let Some(iname) = l.ingress_name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            // ingress-nginx's own locations inside a host's server (external auth
            // `/_external-auth-...`, named `@custom_...`).
            let p = l.path.trim_matches('"');
            if p.starts_with("/_") || p.starts_with('@') {
                continue;
            }
            if cs.locations.iter().any(|c| same_location(l, &c.rendered)) {
                continue;
            }
            let ing = format!("{}/{}", l.namespace.as_deref().unwrap_or(""), iname);
            let path = match l.modifier {
                crate::ingress::world::LocationModifier::Exact => {
                    Rendered::Exact(l.path.trim_matches('"').into())
                }
                _ => Rendered::Prefix(l.path.trim_matches('"').into()),
            };
            let line = if matches!(
                l.modifier,
                crate::ingress::world::LocationModifier::Exact
                    | crate::ingress::world::LocationModifier::Prefix
                    | crate::ingress::world::LocationModifier::PrefixNoRegex
            ) {
                path.to_string()
            } else {
                format!("location {}", l.path)
            };
            d.diffs.push(format!(
                "`{line}` of server {} at {} names Ingress {ing}, but no Ingress path of host {} gives it",
                cs.hostname, l.source, cs.hostname
            ));
            d.affected.insert(format!("Ingress {ing}"));
            push_evidence(&mut d.evidence, s(&l.source));
        }
    }
}

/// The `nginx-conf-stale` finding of one nginx.conf.
fn conf_stale_finding(conf: &crate::ingress::world::NginxConfObj, d: StaleDiffs) -> Finding {
    let pod = conf
        .pod
        .as_ref()
        .map(|(ns, p)| format!("controller pod {ns}/{p}"))
        .unwrap_or_else(|| "every controller pod".into());
    Finding {
        code: "nginx-conf-stale",
        severity: Severity::Warning,
        title: format!(
            "nginx.conf of {pod} disagrees with the Ingress objects ({} difference{})",
            d.diffs.len(),
            plural(d.diffs.len())
        ),
        explanation: format!(
            "The controller's running configuration ({}) is not what its Ingresses give: {}. Either the controller did not reload (an Ingress or annotation that makes the configuration invalid stops every later change), or nginx.conf and the Ingress objects were collected at different times.",
            conf.source,
            capped(&d.diffs)
        ),
        evidence: d.evidence,
        affected: d.affected.into_iter().collect(),
        fixes: vec![FindingFix::advice(
            "Look for reload errors in the controller's log (`kubectl logs -n NAMESPACE POD | grep -i 'error reloading\\|invalid'`), fix the offending Ingress, or restart the controller pod; if the snapshot's parts were taken at different times, collect nginx.conf and `kubectl get ingresses -A -o yaml` together.",
        )],
        share: 0.0,
    }
}

// ---------------------------------------------------------------------------------------------
// kube-proxy-stale

/// One iptables rule as kube-proxy writes it, split into the options this check reads.
#[derive(Debug)]
struct KpRule {
    chain: String,
    source: SourceRef,
    comment: Option<String>,
    dst: Option<IpNet>,
    proto: Option<String>,
    dport: Option<u16>,
    target: Option<String>,
    to_destination: Option<String>,
}

/// Splits a rule's text as a shell does for iptables-save's quoting (`"..."`, `\"`).
fn shell_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut has = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    has = true;
                }
            }
            '"' => {
                in_q = !in_q;
                has = true;
            }
            c if c.is_whitespace() && !in_q => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if has {
        out.push(cur);
    }
    out
}

fn parse_kp_rule(chain: &str, source: SourceRef, text: &str) -> KpRule {
    let w = shell_words(text);
    let mut r = KpRule {
        chain: chain.to_string(),
        source,
        comment: None,
        dst: None,
        proto: None,
        dport: None,
        target: None,
        to_destination: None,
    };
    let mut i = 0;
    while i < w.len() {
        let next = w.get(i + 1).cloned();
        match w[i].as_str() {
            "--comment" => r.comment = next,
            "-d" | "--destination" => {
                r.dst = next.as_deref().and_then(|d| {
                    d.parse::<IpNet>()
                        .ok()
                        .or_else(|| d.parse::<IpAddr>().ok().map(IpNet::from))
                })
            }
            "-p" | "--protocol" => r.proto = next.map(|p| p.to_ascii_lowercase()),
            "--dport" | "--destination-port" => r.dport = next.and_then(|p| p.parse().ok()),
            "-j" | "--jump" | "-g" | "--goto" => r.target = next,
            "--to-destination" => r.to_destination = next,
            "!" => {
                // A negated option is not what kube-proxy's dispatch rules use: skip it.
                i += 3;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    r
}

/// `ns/name:port` (the first word of kube-proxy's comment) as (Service, port name).
fn comment_service(comment: &str) -> Option<(ObjectKey, String)> {
    let first = comment.split_whitespace().next()?;
    let (ns, rest) = first.split_once('/')?;
    let (name, port) = rest.split_once(':').unwrap_or((rest, ""));
    if ns.is_empty() || name.is_empty() {
        return None;
    }
    Some((ObjectKey::new(ns, name), port.to_string()))
}

/// The hash suffix kube-proxy shares between a service port's chains (`KUBE-SVC-X`,
/// `KUBE-EXT-X`, `KUBE-FW-X`, `KUBE-XLB-X`, `KUBE-SVL-X`).
fn chain_hash(chain: &str) -> Option<&str> {
    [
        "KUBE-SVC-",
        "KUBE-EXT-",
        "KUBE-FW-",
        "KUBE-XLB-",
        "KUBE-SVL-",
    ]
    .iter()
    .find_map(|p| chain.strip_prefix(p))
}

fn proto_name(p: &str) -> String {
    p.to_ascii_lowercase()
}

/// The IPv4 `ip:port` destinations of a Service port's endpoints: ready ones (what kube-proxy
/// sends to), serving ones (its fallback when none is ready), and the ready ones' sources.
struct EndpointDests {
    ready: BTreeSet<String>,
    serving: BTreeSet<String>,
    sources: Vec<SourceRef>,
}

fn endpoint_dests(
    sets: &[&kubepath_model::k8s::EndpointSet],
    p: &kubepath_model::k8s::ServicePort,
) -> EndpointDests {
    let mut d = EndpointDests {
        ready: BTreeSet::new(),
        serving: BTreeSet::new(),
        sources: Vec::new(),
    };
    for set in sets {
        let Some(ep_port) = set.port_for(p).and_then(|x| x.port) else {
            continue;
        };
        for e in &set.endpoints {
            for a in e.addresses.iter().filter(|a| a.is_ipv4()) {
                let dest = format!("{a}:{ep_port}");
                if e.is_ready() {
                    d.ready.insert(dest.clone());
                    d.sources.push(e.source.clone());
                }
                if e.can_serve() {
                    d.serving.insert(dest);
                }
            }
        }
    }
    d
}

/// A Service port whose endpoints are in the snapshot, with what `kube-proxy-stale` compares.
struct SvcPort<'a> {
    svc: &'a kubepath_model::k8s::Service,
    p: &'a kubepath_model::k8s::ServicePort,
    proto: String,
    port: u16,
    eps: EndpointDests,
    /// `ns/name:port-name`.
    label: String,
}

/// The Service ports `kube-proxy-stale` compares: not headless or ExternalName, with their
/// endpoints in the snapshot (else there is nothing to compare with).
fn service_ports<'a>(
    c: &'a kubepath_model::k8s::Cluster,
    endpoint_sets: &HashMap<&ObjectKey, Vec<&'a kubepath_model::k8s::EndpointSet>>,
) -> Vec<SvcPort<'a>> {
    let mut out = Vec::new();
    for svc in c.services.values() {
        if svc.headless || svc.type_ == ServiceType::ExternalName {
            continue;
        }
        let sets = endpoint_sets.get(&svc.key).cloned().unwrap_or_default();
        if sets.is_empty() {
            continue;
        }
        for p in &svc.ports {
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            out.push(SvcPort {
                svc,
                p,
                proto: proto_name(&p.protocol),
                port,
                eps: endpoint_dests(&sets, p),
                label: format!(
                    "{}:{}",
                    svc.key,
                    p.name.clone().unwrap_or_else(|| p.port.to_string())
                ),
            });
        }
    }
    out
}

/// What a stale service chain lacks and still sends to: `lacks ready endpoints A, B and still
/// sends to C at FILE:LINE (...)`; `None` when it matches.
fn stale_parts(missing: &[&str], extra: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "lacks ready endpoint{} {}",
            plural(missing.len()),
            missing.join(", ")
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "still sends to {} (no ready endpoint of the EndpointSlices)",
            extra.join(", ")
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// What one node's `kube-proxy-stale` finding says: which of its data planes disagrees.
struct StaleSource<'a> {
    node: &'a str,
    net: &'a NodeNet,
    /// "rules", "nftables rules", "IPVS table" (the title's words).
    what: &'static str,
    /// "The nat table", "The nft ruleset", "The IPVS table" (the explanation's subject).
    differ: &'static str,
    fact: NodeFact,
    /// The command whose output to collect again with the objects.
    collect: &'static str,
    diffs: Vec<String>,
    evidence: Vec<String>,
    affected: BTreeSet<String>,
}

/// The `kube-proxy-stale` finding of one node.
fn stale_finding(x: StaleSource<'_>) -> Finding {
    let StaleSource {
        node,
        net,
        what,
        differ,
        fact,
        collect,
        diffs,
        evidence,
        affected,
    } = x;
    let mut aff = vec![format!("node {node}")];
    aff.extend(affected);
    Finding {
        code: "kube-proxy-stale",
        severity: Severity::Error,
        title: format!(
            "kube-proxy's {what} on node {node} disagree{} with the Services/EndpointSlices ({} difference{})",
            if what.ends_with('s') { "" } else { "s" },
            diffs.len(),
            plural(diffs.len())
        ),
        explanation: format!(
            "{differ} of node {node} ({}) is not what kube-proxy would have for the Services and EndpointSlices of the snapshot: {}. Traffic the node handles goes where its rules say, not where the objects do.",
            net.read
                .get(&fact)
                .and_then(|v| v.first())
                .map(s)
                .unwrap_or_default(),
            capped(&diffs)
        ),
        evidence,
        affected: aff,
        fixes: vec![FindingFix::advice(format!(
            "kube-proxy on {node} is not syncing: read its log (`kubectl -n kube-system logs` of the kube-proxy pod on {node}) and restart it; if the snapshot's parts were taken at different times, collect `{collect}` and the Services/EndpointSlices together."
        ))],
        share: 0.0,
    }
}

/// `kube-proxy-stale` on a node whose kube-proxy runs in nftables mode (its `table ip
/// kube-proxy` in `nft list ruleset`): rather than reading kube-proxy's chain layout, each
/// Service port's IPv4 ClusterIPs and LoadBalancer IPs are sent through the node's whole nft
/// ruleset by the nft engine (a connection from the node itself, through nat output as a pod's
/// through nat prerouting), and the DNAT destinations it gives are compared with the ready
/// endpoints of the EndpointSlices (#14). A destination the engine cannot decide is skipped.
fn kube_proxy_nft_stale(model: &Model, out: &mut Vec<Finding>) {
    use kubepath_netfilter as nf;
    let c = &model.cluster;
    if !c.collected.contains("Service")
        || !(c.collected.contains("EndpointSlice") || c.collected.contains("Endpoints"))
    {
        return;
    }
    let endpoint_sets = c.endpoints_by_service();
    for (node, net) in &model.nodes {
        let Some(rs) = &net.nft else { continue };
        if !rs.tables.iter().any(|t| {
            t.name == "kube-proxy"
                && matches!(t.family, nf::nft::NftFamily::Ip | nf::nft::NftFamily::Inet)
        }) {
            continue;
        }
        let local: Vec<IpAddr> = net
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.address.addr()))
            .collect();
        let Some(from) = local
            .iter()
            .copied()
            .find(|a| a.is_ipv4() && !a.is_loopback())
        else {
            continue;
        };
        let env = nf::Env {
            local_origin: true,
            ..nf::Env::new(&local)
        };
        let mut diffs: Vec<String> = Vec::new();
        let mut evidence: Vec<String> = Vec::new();
        let mut affected: BTreeSet<String> = BTreeSet::new();
        for sp in service_ports(c, &endpoint_sets) {
            let SvcPort {
                svc,
                p,
                proto,
                port,
                eps,
                label,
            } = sp;
            let mut ips: Vec<(&str, IpAddr)> = svc
                .cluster_ips
                .iter()
                .map(|ip| ("ClusterIP", *ip))
                .collect();
            if svc.type_ == ServiceType::LoadBalancer {
                ips.extend(
                    svc.lb_ingress_ips()
                        .into_iter()
                        .map(|ip| ("LoadBalancer IP", ip)),
                );
            }
            for (what, ip) in ips.into_iter().filter(|(_, ip)| ip.is_ipv4()) {
                let pkt = match proto.as_str() {
                    "tcp" => nf::Packet::tcp(from, 40000, ip, port),
                    "udp" => nf::Packet::udp(from, 40000, ip, port),
                    _ => continue,
                };
                let t = nf::trace_nft(rs, &pkt, &env);
                let mut have: BTreeMap<String, SourceRef> = BTreeMap::new();
                let mut undecided = false;
                for o in &t.outcomes {
                    match &o.dnat {
                        Some(d) if d.addr.is_some() => {
                            let src = o
                                .steps
                                .iter()
                                .rev()
                                .find(|st| st.text.contains("dnat"))
                                .or(o.steps.last())
                                .map(|st| SourceRef::new(st.source.file.clone(), st.source.line));
                            if let Some(src) = src {
                                have.entry(d.to_string()).or_insert(src);
                            }
                        }
                        Some(_) => undecided = true,
                        None => undecided |= matches!(o.verdict, nf::Verdict::Unknown { .. }),
                    }
                }
                if undecided {
                    continue;
                }
                if have.is_empty() {
                    if !eps.ready.is_empty() {
                        diffs.push(format!(
                                "Service {label} {what} {ip}:{port}/{proto} has {} ready endpoint{} but the node's nft ruleset sends it to none",
                                eps.ready.len(),
                                plural(eps.ready.len())
                            ));
                        affected.insert(format!("Service {}", svc.key));
                        push_evidence(&mut evidence, s(&p.source));
                    }
                    continue;
                }
                let missing: Vec<&str> = eps
                    .ready
                    .iter()
                    .filter(|d| !have.contains_key(*d))
                    .map(|d| d.as_str())
                    .collect();
                let extra: Vec<(&String, &SourceRef)> = have
                    .iter()
                    .filter(|(d, _)| !eps.ready.contains(*d) && !eps.serving.contains(*d))
                    .collect();
                let sent: Vec<String> = extra
                    .iter()
                    .map(|(d, src)| format!("{d} at {}", src))
                    .collect();
                let Some(parts) = stale_parts(&missing, &sent) else {
                    continue;
                };
                diffs.push(format!(
                    "Service {label} {what} {ip}:{port}/{proto} {parts}"
                ));
                affected.insert(format!("Service {}", svc.key));
                for (_, src) in &extra {
                    push_evidence(&mut evidence, s(src));
                }
                if let Some(src) = eps.sources.first() {
                    push_evidence(&mut evidence, s(src));
                }
            }
        }
        if diffs.is_empty() {
            continue;
        }
        out.push(stale_finding(StaleSource {
            node,
            net,
            what: "nftables rules",
            differ: "The nft ruleset",
            fact: NodeFact::Nft,
            collect: "nft list ruleset",
            diffs,
            evidence,
            affected,
        }));
    }
}

/// `kube-proxy-stale` on a node whose kube-proxy runs in IPVS mode (an `ipvsadm -Ln` file):
/// each Service port's IPv4 ClusterIPs, external IPs and LoadBalancer IPs are looked up in the
/// node's IPVS table as a packet would be, and the real servers of weight > 0 are compared
/// with the ready endpoints of the EndpointSlices (for an externalTrafficPolicy=Local
/// Service's external addresses, kube-proxy lists the node's own endpoints only: those are
/// not compared). A service the table disputes or cannot read is skipped.
fn kube_proxy_ipvs_stale(model: &Model, out: &mut Vec<Finding>) {
    use kubepath_model::k8s::TrafficPolicy;
    use kubepath_netfilter::Proto;
    let c = &model.cluster;
    if !c.collected.contains("Service")
        || !(c.collected.contains("EndpointSlice") || c.collected.contains("Endpoints"))
    {
        return;
    }
    let endpoint_sets = c.endpoints_by_service();
    for (node, net) in &model.nodes {
        let Some(t) = &net.ipvs else { continue };
        let mut diffs: Vec<String> = Vec::new();
        let mut evidence: Vec<String> = Vec::new();
        let mut affected: BTreeSet<String> = BTreeSet::new();
        for sp in service_ports(c, &endpoint_sets) {
            let SvcPort {
                svc,
                p,
                proto,
                port,
                eps,
                label,
            } = sp;
            let l4 = match proto.as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "sctp" => Proto::Sctp,
                _ => continue,
            };
            let mut ips: Vec<(&str, IpAddr)> = svc
                .cluster_ips
                .iter()
                .map(|ip| ("ClusterIP", *ip))
                .collect();
            if svc.external_traffic_policy != TrafficPolicy::Local {
                ips.extend(svc.external_ips.iter().map(|ip| ("external IP", *ip)));
                if svc.type_ == ServiceType::LoadBalancer {
                    ips.extend(
                        svc.lb_ingress_ips()
                            .into_iter()
                            .map(|ip| ("LoadBalancer IP", ip)),
                    );
                }
            }
            for (what, ip) in ips.into_iter().filter(|(_, ip)| ip.is_ipv4()) {
                if t.disputed_for(l4, ip, port, 0).is_some() {
                    continue;
                }
                let Some(vs) = t.lookup(l4, ip, port, 0) else {
                    if !eps.ready.is_empty() && t.unread.is_empty() {
                        diffs.push(format!(
                            "Service {label} {what} {ip}:{port}/{proto} has {} ready endpoint{} but the node's IPVS table has no virtual service for it",
                            eps.ready.len(),
                            plural(eps.ready.len())
                        ));
                        affected.insert(format!("Service {}", svc.key));
                        push_evidence(&mut evidence, s(&p.source));
                    }
                    continue;
                };
                if t.unread_within(vs).is_some() {
                    continue;
                }
                let have: BTreeMap<String, &kubepath_netfilter::ipvs::RealServer> = vs
                    .reals
                    .iter()
                    .filter(|r| r.weight > 0)
                    .map(|r| (format!("{}:{}", r.addr, r.port), r))
                    .collect();
                let missing: Vec<&str> = eps
                    .ready
                    .iter()
                    .filter(|d| !have.contains_key(*d))
                    .map(|d| d.as_str())
                    .collect();
                let extra: Vec<(&String, &&kubepath_netfilter::ipvs::RealServer)> = have
                    .iter()
                    .filter(|(d, _)| !eps.ready.contains(*d) && !eps.serving.contains(*d))
                    .collect();
                let sent: Vec<String> = extra
                    .iter()
                    .map(|(d, r)| format!("{d} at {}", r.source))
                    .collect();
                let Some(parts) = stale_parts(&missing, &sent) else {
                    continue;
                };
                diffs.push(format!(
                    "Service {label} {what} {ip}:{port}/{proto} (IPVS `{}` at {}) {parts}",
                    vs.text, vs.source
                ));
                affected.insert(format!("Service {}", svc.key));
                push_evidence(&mut evidence, vs.source.to_string());
                for (_, r) in &extra {
                    push_evidence(&mut evidence, r.source.to_string());
                }
                if let Some(src) = eps.sources.first() {
                    push_evidence(&mut evidence, s(src));
                }
            }
        }
        if diffs.is_empty() {
            continue;
        }
        out.push(stale_finding(StaleSource {
            node,
            net,
            what: "IPVS table",
            differ: "The IPVS table",
            fact: NodeFact::Ipvs,
            collect: "ipvsadm -Ln",
            diffs,
            evidence,
            affected,
        }));
    }
}

/// What a staleness check (`kube-proxy-stale` in one nat table, `nginx-conf-stale` in one
/// nginx.conf) finds: differences, evidence, affected objects.
#[derive(Default)]
struct StaleDiffs {
    diffs: Vec<String>,
    evidence: Vec<String>,
    affected: BTreeSet<String>,
}

/// `kube-proxy-stale` on one node's nat table `rules` (their sources as the ruleset gives
/// them: `cite` turns one into the node's own citation). `None` when the table is not
/// kube-proxy's iptables mode.
fn stale_diffs(
    c: &kubepath_model::k8s::Cluster,
    endpoint_sets: &HashMap<&ObjectKey, Vec<&kubepath_model::k8s::EndpointSet>>,
    svc_namespaces: &BTreeSet<&str>,
    rules: &[KpRule],
    cite: &dyn Fn(&SourceRef) -> SourceRef,
) -> Option<StaleDiffs> {
    // kube-proxy in iptables mode on this node? (IPVS mode and other proxies have no
    // per-service chains.)
    if !rules
        .iter()
        .any(|r| r.chain.starts_with("KUBE-SVC-") || r.chain.starts_with("KUBE-SEP-"))
    {
        return None;
    }
    let mut by_chain: BTreeMap<&str, Vec<&KpRule>> = BTreeMap::new();
    for r in rules {
        by_chain.entry(r.chain.as_str()).or_default().push(r);
    }
    let dispatch = kube_services_dispatch(&by_chain);
    let mut d = StaleDiffs::default();
    for sp in service_ports(c, endpoint_sets) {
        service_port_diffs(sp, &dispatch, &by_chain, cite, &mut d);
    }
    unknown_service_rules(c, svc_namespaces, rules, cite, &mut d);
    Some(d)
}

/// KUBE-SERVICES dispatch rules by (destination, port), not kube-proxy 1.18's
/// `! -s POD_CIDR ... -j KUBE-MARK-MASQ` before each.
fn kube_services_dispatch<'r>(
    by_chain: &BTreeMap<&str, Vec<&'r KpRule>>,
) -> HashMap<(IpNet, u16), Vec<&'r KpRule>> {
    let mut dispatch: HashMap<(IpNet, u16), Vec<&KpRule>> = HashMap::new();
    for r in by_chain.get("KUBE-SERVICES").into_iter().flatten() {
        if let (Some(d), Some(p)) = (r.dst, r.dport) {
            if r.target
                .as_deref()
                .is_some_and(|t| !t.starts_with("KUBE-MARK-"))
            {
                dispatch.entry((d, p)).or_default().push(r);
            }
        }
    }
    dispatch
}

/// The DNAT destinations of a KUBE-SVC chain, each with the SEP rule that gives it.
fn sep_dests(
    by_chain: &BTreeMap<&str, Vec<&KpRule>>,
    svc_chain: &str,
) -> BTreeMap<String, SourceRef> {
    let mut m = BTreeMap::new();
    for r in by_chain.get(svc_chain).into_iter().flatten() {
        let Some(t) = r.target.as_deref() else {
            continue;
        };
        if !t.starts_with("KUBE-SEP-") {
            continue;
        }
        for sr in by_chain.get(t).into_iter().flatten() {
            if let Some(d) = &sr.to_destination {
                m.entry(d.clone()).or_insert_with(|| sr.source.clone());
            }
        }
    }
    m
}

/// One Service port against the nat table: its ClusterIPs and LoadBalancer IPs dispatched,
/// its KUBE-SVC chain sending its ready endpoints and nothing else.
fn service_port_diffs(
    sp: SvcPort,
    dispatch: &HashMap<(IpNet, u16), Vec<&KpRule>>,
    by_chain: &BTreeMap<&str, Vec<&KpRule>>,
    cite: &dyn Fn(&SourceRef) -> SourceRef,
    d: &mut StaleDiffs,
) {
    let SvcPort {
        svc,
        p,
        proto,
        port,
        eps:
            EndpointDests {
                ready,
                serving,
                sources: ep_sources,
            },
        label,
    } = sp;
    let find = |ip: IpAddr| {
        dispatch.get(&(IpNet::from(ip), port)).and_then(|v| {
            v.iter()
                .find(|r| r.proto.as_deref().is_none_or(|x| x == proto))
        })
    };
    let mut svc_chain: Option<String> = None;
    for ip in svc.cluster_ips.iter().filter(|i| i.is_ipv4()) {
        match find(*ip) {
            Some(r) => {
                if let Some(t) = &r.target {
                    if t.starts_with("KUBE-SVC-") {
                        svc_chain = Some(t.clone());
                    } else if let Some(h) = chain_hash(t) {
                        let cand = format!("KUBE-SVC-{h}");
                        if by_chain.contains_key(cand.as_str()) {
                            svc_chain = Some(cand);
                        }
                    }
                }
            }
            None if !ready.is_empty() => {
                d.diffs.push(format!(
                        "Service {label} ClusterIP {ip}:{port}/{proto} has {} ready endpoint{} but no KUBE-SERVICES rule",
                        ready.len(),
                        plural(ready.len())
                    ));
                d.affected.insert(format!("Service {}", svc.key));
                push_evidence(&mut d.evidence, s(&p.source));
            }
            None => {}
        }
    }
    if svc.type_ == ServiceType::LoadBalancer && !ready.is_empty() {
        for ip in svc.lb_ingress_ips().into_iter().filter(|i| i.is_ipv4()) {
            if find(ip).is_none() {
                d.diffs.push(format!(
                        "Service {label} LoadBalancer IP {ip}:{port}/{proto} has {} ready endpoint{} but no KUBE-SERVICES rule",
                        ready.len(),
                        plural(ready.len())
                    ));
                d.affected.insert(format!("Service {}", svc.key));
                push_evidence(&mut d.evidence, s(&svc.source));
            }
        }
    }
    let Some(chain) = svc_chain else { return };
    let have = sep_dests(by_chain, &chain);
    let missing: Vec<&str> = ready
        .iter()
        .filter(|d| !have.contains_key(*d))
        .map(|d| d.as_str())
        .collect();
    let extra: Vec<(&String, &SourceRef)> = have
        .iter()
        .filter(|(d, _)| !ready.contains(*d) && !serving.contains(*d))
        .collect();
    // No ready endpoint at all: kube-proxy falls back to serving terminating ones.
    let sent: Vec<String> = extra
        .iter()
        .map(|(d, src)| format!("{d} at {}", cite(src)))
        .collect();
    let Some(parts) = stale_parts(&missing, &sent) else {
        return;
    };
    d.diffs.push(format!("{chain} of Service {label} {parts}"));
    d.affected.insert(format!("Service {}", svc.key));
    for (_, src) in &extra {
        push_evidence(&mut d.evidence, s(&cite(src)));
    }
    if let Some(src) = ep_sources.first() {
        push_evidence(&mut d.evidence, s(src));
    }
}

/// Rules for Services that do not exist (in a namespace the snapshot holds Services of: a
/// collection of some namespaces only says nothing about the others), or that send an
/// address the Service no longer has.
fn unknown_service_rules(
    c: &kubepath_model::k8s::Cluster,
    svc_namespaces: &BTreeSet<&str>,
    rules: &[KpRule],
    cite: &dyn Fn(&SourceRef) -> SourceRef,
    d: &mut StaleDiffs,
) {
    let mut gone: BTreeMap<ObjectKey, &KpRule> = BTreeMap::new();
    for r in rules {
        let Some((key, port)) = r.comment.as_deref().and_then(comment_service) else {
            continue;
        };
        if !svc_namespaces.contains(key.namespace.as_str()) {
            continue;
        }
        let Some(svc) = c.services.get(&key) else {
            gone.entry(key).or_insert(r);
            continue;
        };
        if r.chain != "KUBE-SERVICES" {
            continue;
        }
        let Some(dst) = r.dst.filter(|d| d.prefix_len() == d.max_prefix_len()) else {
            continue;
        };
        let ip = dst.addr();
        let comment = r.comment.as_deref().unwrap_or("");
        let known = if comment.ends_with("cluster IP") {
            svc.cluster_ips.contains(&ip)
        } else if comment.ends_with("loadbalancer IP") {
            svc.lb_ingress_ips().contains(&ip)
        } else if comment.ends_with("external IP") {
            svc.external_ips.contains(&ip)
        } else {
            true
        };
        let port_known = port.is_empty()
            || svc
                .ports
                .iter()
                .any(|p| p.name.as_deref().unwrap_or("") == port || p.port.to_string() == port);
        if !known || !port_known {
            d.diffs.push(format!(
                "{} sends {ip} to Service {key}:{port}, which has no such {} ({})",
                cite(&r.source),
                if port_known { "address" } else { "port" },
                comment
            ));
            d.affected.insert(format!("Service {key}"));
            push_evidence(&mut d.evidence, s(&cite(&r.source)));
        }
    }
    for (key, r) in gone {
        d.diffs.push(format!(
            "rules for Service {key}, which does not exist, from {}",
            cite(&r.source)
        ));
        d.affected.insert(format!("Service {key} (gone)"));
        push_evidence(&mut d.evidence, s(&cite(&r.source)));
    }
}

/// `kube-proxy-stale`. Nodes sharing one parsed ruleset (identical `iptables-save` dumps)
/// share its parsed rules, and its analysis when that cites no rule of the ruleset (a citation
/// names each node's own file, so an analysis that cites one is redone per node).
fn kube_proxy_stale(model: &Model, out: &mut Vec<Finding>) {
    let c = &model.cluster;
    if !c.collected.contains("Service")
        || !(c.collected.contains("EndpointSlice") || c.collected.contains("Endpoints"))
    {
        return;
    }
    let svc_namespaces: BTreeSet<&str> = c.services.keys().map(|k| k.namespace.as_str()).collect();
    let endpoint_sets = c.endpoints_by_service();
    type Key = *const kubepath_netfilter::Ruleset;
    // The nodes by shared ruleset, so that one ruleset's rules are parsed (`KpRule`s: about
    // 100 MB for a 10,000-Service nat table) and kept only while its nodes are analysed; the
    // findings are then given in node order, as the nodes are listed.
    type Node<'m> = (
        Key,
        &'m String,
        &'m kubepath_model::net::NodeNet,
        &'m kubepath_netfilter::Ruleset,
    );
    let mut nodes: Vec<Node> = Vec::new();
    for (node, net) in &model.nodes {
        let Some(rs) = &net.netfilter else { continue };
        if !net.netfilter_tables.contains(&(Family::Ipv4, Table::Nat))
            || net.partial.iter().any(|(f, _, _)| *f == NodeFact::Iptables)
        {
            continue;
        }
        nodes.push((std::sync::Arc::as_ptr(rs), node, net, rs));
    }
    // Stable: a ruleset's nodes stay in node order.
    nodes.sort_by_key(|(key, ..)| *key as usize);
    let mut found: BTreeMap<&str, Finding> = BTreeMap::new();
    let mut parsed: Option<(Key, Rc<Vec<KpRule>>)> = None;
    let mut analysed: HashMap<Key, Rc<Option<StaleDiffs>>> = HashMap::new();
    for (key, node, net, rs) in nodes {
        let result = match analysed.get(&key) {
            Some(r) => r.clone(),
            None => {
                let rules = match &parsed {
                    Some((k, rules)) if *k == key => rules.clone(),
                    _ => {
                        // The previous ruleset's nodes are done: its rules go first.
                        drop(parsed.take());
                        let rules: Rc<Vec<KpRule>> = Rc::new(
                            rs.rule_texts(Table::Nat)
                                .into_iter()
                                .map(|(chain, src, text)| {
                                    parse_kp_rule(&chain, SourceRef::new(src.file, src.line), text)
                                })
                                .collect(),
                        );
                        parsed = Some((key, rules.clone()));
                        rules
                    }
                };
                let cited = std::cell::Cell::new(false);
                // A shared ruleset cites the first node's file: cite this node's own.
                let cite = |src: &SourceRef| {
                    cited.set(true);
                    let file = net
                        .netfilter_cites
                        .iter()
                        .find(|(from, _)| *from == src.file)
                        .map_or_else(|| src.file.clone(), |(_, to)| to.clone());
                    SourceRef::new(file, src.line)
                };
                let r = Rc::new(stale_diffs(
                    c,
                    &endpoint_sets,
                    &svc_namespaces,
                    &rules,
                    &cite,
                ));
                if !cited.get() {
                    analysed.insert(key, r.clone());
                }
                r
            }
        };
        let Some(StaleDiffs {
            diffs,
            evidence,
            affected,
        }) = result.as_ref()
        else {
            continue;
        };
        let (diffs, evidence, affected) = (diffs.clone(), evidence.clone(), affected.clone());
        if diffs.is_empty() {
            continue;
        }
        let f = stale_finding(StaleSource {
            node,
            net,
            what: "rules",
            differ: "The nat table",
            fact: NodeFact::Iptables,
            collect: "iptables-save",
            diffs,
            evidence,
            affected,
        });
        found.insert(node.as_str(), f);
    }
    out.extend(found.into_values());
}

// ---------------------------------------------------------------------------------------------
// iptables-legacy-and-nft

/// `iptables-legacy-and-nft`: kube-proxy rules in both variants' dumps of one node.
fn iptables_legacy_and_nft(model: &Model, out: &mut Vec<Finding>) {
    for (node, net) in &model.nodes {
        let with = |b: IptablesBackend| -> Vec<&SourceRef> {
            net.iptables_dumps
                .iter()
                .filter(|d| d.kube_proxy && d.backend == Some(b))
                .map(|d| &d.source)
                .collect()
        };
        let legacy = with(IptablesBackend::Legacy);
        let nft = with(IptablesBackend::Nft);
        if legacy.is_empty() || nft.is_empty() {
            continue;
        }
        let evidence: Vec<String> = legacy.iter().chain(nft.iter()).map(|x| s(x)).collect();
        out.push(Finding {
            code: "iptables-legacy-and-nft",
            severity: Severity::Warning,
            title: format!(
                "node {node} has kube-proxy rules in both iptables-legacy and iptables-nft"
            ),
            explanation: format!(
                "The legacy dump ({}) and the nft dump ({}) both hold kube-proxy's service rules. The kernel runs both sets (the legacy x_tables and the nf_tables hooks), so one of them is a stale copy left by a kube-proxy or kubelet that used the other variant, and it may DNAT or drop traffic first. kubepath evaluates one ruleset per node (the dump read last replaces the tables of the earlier one).",
                legacy.iter().map(|x| s(x)).collect::<Vec<_>>().join(", "),
                nft.iter().map(|x| s(x)).collect::<Vec<_>>().join(", ")
            ),
            evidence,
            affected: vec![format!("node {node}")],
            fixes: vec![FindingFix::advice(
                "Find which variant kube-proxy uses now (its log says `Using iptables Proxier` and the mode; `iptables -V` in its container), then remove the other variant's KUBE-* rules, e.g. `iptables-legacy-save | grep -c KUBE-` and `iptables-legacy -t nat -F KUBE-SERVICES` (or reboot with only one variant in use); make the host's `iptables` alternative and kube-proxy's image agree (iptables-wrapper).",
            )],
            share: 0.0,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// pod-ip-outside-pod-cidr

/// `pod-ip-outside-pod-cidr`: one finding per node listing its pods (not hostNetwork) whose IP
/// is in none of the node's `spec.podCIDRs` of its family, while the snapshot places the IP on
/// that node (the most specific of every node's podCIDRs, blackhole blocks and pod routes that
/// holds it is the pod's own node: a pod route on it, say). An IP held by no node or by another
/// node is `pod-ip-on-no-node` / `pod-ip-on-other-node` (consistency.rs), not reported again.
/// Nodes whose pods are addressed by Calico IPAM (`blackhole BLOCK proto bird` routes: Calico
/// allocates from its own pools and blocks, not from podCIDR) are left out.
fn pod_ip_outside_pod_cidr(model: &Model, out: &mut Vec<Finding>) {
    let c = &model.cluster;
    // Every node's pod ranges, as consistency.rs reads them.
    let mut holders: Vec<(IpNet, &str)> = Vec::new();
    for n in c.nodes.values() {
        for cidr in &n.pod_cidrs {
            holders.push((*cidr, n.name.as_str()));
        }
    }
    let mut calico: BTreeSet<&str> = BTreeSet::new();
    for (node, net) in &model.nodes {
        for r in &net.routes {
            if r.kind == RouteType::Blackhole && r.proto.as_deref() == Some("bird") {
                calico.insert(node.as_str());
            }
            if r.is_pod_route() {
                holders.push((r.dst, node.as_str()));
            }
        }
    }
    let mut by_node: BTreeMap<&str, Vec<(&kubepath_model::k8s::Pod, IpAddr)>> = BTreeMap::new();
    for pod in &c.pods {
        if pod.host_network {
            continue;
        }
        let Some(nn) = pod.node_name.as_deref() else {
            continue;
        };
        let Some(node) = c.nodes.get(nn) else {
            continue;
        };
        if node.pod_cidrs.is_empty() || calico.contains(nn) {
            continue;
        }
        for ip in &pod.pod_ips {
            let same_family: Vec<&IpNet> = node
                .pod_cidrs
                .iter()
                .filter(|n| n.addr().is_ipv4() == ip.is_ipv4())
                .collect();
            if same_family.is_empty() || same_family.iter().any(|n| n.contains(ip)) {
                continue;
            }
            let best = holders
                .iter()
                .filter(|(n, _)| n.contains(ip))
                .max_by_key(|(n, _)| n.prefix_len());
            if best.is_none_or(|(_, owner)| *owner != nn) {
                continue;
            }
            by_node.entry(nn).or_default().push((pod, *ip));
        }
    }
    for (nn, pods) in by_node {
        let Some(node) = c.nodes.get(nn) else {
            continue;
        };
        let cidrs: Vec<String> = node.pod_cidrs.iter().map(|n| n.to_string()).collect();
        let items: Vec<String> = pods
            .iter()
            .map(|(p, ip)| format!("{} {ip} ({})", p.key, p.source))
            .collect();
        let mut evidence = vec![s(&node.source)];
        for (p, _) in &pods {
            push_evidence(&mut evidence, s(&p.source));
        }
        let mut affected = vec![format!("node {nn}")];
        affected.extend(pods.iter().map(|(p, _)| format!("Pod {}", p.key)));
        out.push(Finding {
            code: "pod-ip-outside-pod-cidr",
            severity: Severity::Warning,
            title: format!(
                "{} pod{} on node {nn} {} an IP outside the node's podCIDR {}",
                pods.len(),
                plural(pods.len()),
                if pods.len() == 1 { "has" } else { "have" },
                cidrs.join(", ")
            ),
            explanation: format!(
                "Node {nn} has spec.podCIDRs {} ({}), but {}. Routes to the node's pod range (other nodes', the routers', a CNI that routes by podCIDR) do not cover these addresses, so traffic to them may go elsewhere; the IPs were assigned by another IPAM (a CNI ignoring podCIDR, a pod started before the node's CIDR changed).",
                cidrs.join(", "),
                node.source,
                capped(&items)
            ),
            evidence,
            affected,
            fixes: vec![FindingFix::advice(
                "Make the CNI's IPAM use the node's podCIDR (host-local / `usePodCidr`), or, if the CNI allocates its own blocks on purpose, make sure every route to these pods follows the CNI's blocks; recreate the pods so they get an address from the node's range.",
            )],
            share: 0.0,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Where LoadBalancer traffic arrives on the nodes

/// For each node, the interfaces on which traffic to a LoadBalancer IP arrives, each with where
/// that shows: the interface holding the next hop of a router's path (BGP table or RIB) to the
/// IP, or an interface whose connected subnet holds the IP (layer 2).
fn lb_arrivals(model: &Model) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut ips: BTreeSet<IpAddr> = BTreeSet::new();
    for svc in model.cluster.services.values() {
        if svc.type_ == ServiceType::LoadBalancer {
            ips.extend(svc.lb_ingress_ips());
        }
    }
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    // Node addresses -> (node, interface), once.
    let mut by_addr: HashMap<IpAddr, Vec<(&str, &str)>> = HashMap::new();
    for (name, net) in &model.nodes {
        for i in &net.interfaces {
            if i.name == "kube-ipvs0" || i.name == "lo" {
                continue;
            }
            for a in &i.addresses {
                by_addr
                    .entry(a.address.addr())
                    .or_default()
                    .push((name.as_str(), i.name.as_str()));
            }
        }
    }
    let add =
        |nh: IpAddr, why: String, out: &mut BTreeMap<String, BTreeMap<String, Vec<String>>>| {
            for (name, iface) in by_addr.get(&nh).into_iter().flatten() {
                let w = out
                    .entry(name.to_string())
                    .or_default()
                    .entry(iface.to_string())
                    .or_default();
                if w.len() < 4 && !w.contains(&why) {
                    w.push(why.clone());
                }
            }
        };
    for ip in &ips {
        for r in model.routers.values() {
            for (vrf, v) in &r.vrfs {
                if let Some(route) = r.bgp_lookup(vrf, *ip) {
                    for p in route.paths.iter().filter(|p| p.status.valid && !p.local) {
                        add(p.next_hop, s(&p.source), &mut out);
                    }
                }
                if let Some(rr) = v.rib_lookup(*ip) {
                    for nh in rr.active_nexthops() {
                        if let Some(g) = nh.gateway {
                            add(g, s(&rr.source), &mut out);
                        }
                    }
                }
            }
        }
        for (name, net) in &model.nodes {
            for i in &net.interfaces {
                if i.name == "kube-ipvs0" || i.name == "lo" {
                    continue;
                }
                for a in &i.addresses {
                    let len = a.address.prefix_len();
                    if len < a.address.max_prefix_len()
                        && a.address.trunc().contains(ip)
                        && a.address.addr() != *ip
                    {
                        let w = out
                            .entry(name.clone())
                            .or_default()
                            .entry(i.name.clone())
                            .or_default();
                        let why = s(&a.source);
                        if w.len() < 4 && !w.contains(&why) {
                            w.push(why);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The LoadBalancer IPs of the snapshot (the destination of the arriving traffic).
fn first_lb_ip(model: &Model, v4: bool) -> Option<IpAddr> {
    model
        .cluster
        .services
        .values()
        .filter(|s| s.type_ == ServiceType::LoadBalancer)
        .flat_map(|s| s.lb_ingress_ips())
        .find(|i| i.is_ipv4() == v4)
}

// ---------------------------------------------------------------------------------------------
// rp-filter-strict-asymmetric

/// One strict interface that drops a client class: (client label, class, interface, why, where
/// the traffic arrives).
type RpDrop = (String, IpNet, String, String, Vec<String>);

/// What the reverse-path check is run for: (client label, address class, its address, the
/// LoadBalancer IP it connects to).
type RpTarget = (String, IpNet, IpAddr, IpAddr);

fn rp_targets(model: &Model) -> Vec<RpTarget> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (client, prefix) in super::manifest_prefixes(model) {
        let Some(dst) = first_lb_ip(model, prefix.addr().is_ipv4()) else {
            continue;
        };
        for class in super::address_classes(model, &prefix, &mut notes) {
            out.push((
                format!("{client} {prefix}"),
                class.prefix,
                class.address,
                dst,
            ));
        }
    }
    out
}

fn rp_drops(
    net: &NodeNet,
    targets: &[RpTarget],
    ifaces: &BTreeMap<String, Vec<String>>,
) -> Vec<RpDrop> {
    let mut out = Vec::new();
    if !net.read.contains_key(&NodeFact::Sysctls) {
        return out;
    }
    let strict: Vec<(&String, &Vec<String>)> = ifaces
        .iter()
        .filter(|(i, _)| routing::rp_filter_mode(net, i) == Some(1))
        .collect();
    if strict.is_empty() {
        return out;
    }
    let routes = routing::NodeRoutes::new(net);
    for (client, class, addr, dst) in targets {
        for (iface, why) in &strict {
            // As for a connection delivered locally to the LoadBalancer IP (the reverse
            // lookup's source is the IP, its iif loopback), which is what the rules and routes
            // of an asymmetric node decide on; the trace does the same with the packet after
            // netfilter and the forward route's device.
            if let Err(reason) = routing::rp_filter_check_mode(
                net,
                &routes,
                (iface, None),
                *addr,
                *dst,
                1,
                FlowL4::Unknown,
            ) {
                out.push((
                    client.clone(),
                    *class,
                    (*iface).clone(),
                    reason,
                    (*why).clone(),
                ));
            }
        }
    }
    out
}

/// `rp-filter-strict-asymmetric`: one finding per node.
fn rp_filter_strict_asymmetric(model: &Model, out: &mut Vec<Finding>) {
    if model.manifest.clients.is_empty() {
        return;
    }
    let arrivals = lb_arrivals(model);
    let targets = rp_targets(model);
    for (node, ifaces) in &arrivals {
        let Some(net) = model.nodes.get(node) else {
            continue;
        };
        let drops = rp_drops(net, &targets, ifaces);
        if drops.is_empty() {
            continue;
        }
        let strict_ifaces: BTreeSet<&String> = drops.iter().map(|d| &d.2).collect();
        let mut evidence = Vec::new();
        for i in &strict_ifaces {
            for k in [
                format!("net.ipv4.conf.{i}.rp_filter"),
                "net.ipv4.conf.all.rp_filter".to_string(),
            ] {
                if let Some(sc) = net.sysctl(&k) {
                    if sc.value.trim() == "1" {
                        push_evidence(&mut evidence, s(&sc.source));
                    }
                }
            }
        }
        for d in &drops {
            for w in &d.4 {
                push_evidence(&mut evidence, w.clone());
            }
        }
        let items: Vec<String> = drops
            .iter()
            .map(|(client, class, iface, why, _)| {
                if class.to_string() == client.rsplit(' ').next().unwrap_or("") {
                    format!("{client} on {iface}: {why}")
                } else {
                    format!("{client} (part {class}) on {iface}: {why}")
                }
            })
            .collect();
        let clients: BTreeSet<&String> = drops.iter().map(|d| &d.0).collect();
        // Each client with the share of its address classes dropped, when not all of them.
        let client_labels: Vec<String> = clients
            .iter()
            .map(|c| {
                let total = targets.iter().filter(|t| &t.0 == *c).count();
                let dropped: BTreeSet<&IpNet> =
                    drops.iter().filter(|d| &d.0 == *c).map(|d| &d.1).collect();
                if dropped.len() < total {
                    format!("{c} ({} of its {total} address classes)", dropped.len())
                } else {
                    c.to_string()
                }
            })
            .collect();
        // The fix: loose mode on those interfaces (max(all, if) = 2), checked again statically.
        let changes: Vec<Change> = strict_ifaces
            .iter()
            .map(|i| {
                crate::trace::whatif::on_node(
                    node,
                    Op::Replace,
                    Item::Sysctl(format!("net.ipv4.conf.{i}.rp_filter"), "2".into()),
                )
            })
            .collect();
        let (fixed, _) = crate::trace::whatif::apply(model, &changes);
        let still = fixed
            .nodes
            .get(node)
            .map(|n| rp_drops(n, &targets, ifaces).len())
            .unwrap_or(0);
        let fix = FindingFix {
            description: format!(
                "Loose reverse-path filtering on {} of {node} (the kernel uses max(conf.all, conf.IFACE), so 2 wins); persist it in /etc/sysctl.d. Or route the replies to the client back out of the interface they arrive on (policy routing), which `kubepath check`'s flow findings propose.",
                strict_ifaces.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
            ),
            commands: changes
                .iter()
                .map(crate::trace::text::change_command)
                .collect(),
            nodes: vec![node.clone()],
            status: if still == 0 { "verified" } else { "not-sufficient" },
            verification: if still == 0 {
                "the static reverse-path check, re-run with the change, passes for every client address class on those interfaces".into()
            } else {
                format!("the static reverse-path check, re-run with the change, still drops {still} client address class(es)")
            },
        };
        out.push(Finding {
            code: "rp-filter-strict-asymmetric",
            severity: Severity::Error,
            title: format!(
                "strict rp_filter on {} of node {node} drops client{} {} (the route back leaves by another interface)",
                strict_ifaces.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", "),
                plural(clients.len()),
                client_labels.join(", ")
            ),
            explanation: format!(
                "Traffic to the LoadBalancer IPs arrives on node {node} on {} (a router's path to the IP has the node's address there as next hop, or the IP is on that subnet), and the reverse-path filter is strict there (1 = max(net.ipv4.conf.all.rp_filter, net.ipv4.conf.IFACE.rp_filter)). The kernel's reverse lookup for the client's address leaves by another interface, so it drops the connection's first packet: {}.",
                strict_ifaces.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", "),
                capped(&items)
            ),
            evidence,
            affected: vec![format!("node {node}")],
            fixes: vec![fix],
            share: 0.0,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// fix-half-applied

/// What identifies "the same" route or rule on two nodes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Piece {
    /// (table, destination).
    Route(u32, IpNet),
    /// (from, to, action as text).
    Rule(Option<IpNet>, Option<IpNet>, String),
}

/// `fix-half-applied`: a route or rule naming (a part of) a manifest client prefix, present on
/// some of the nodes that receive the clients' traffic and missing on others whose tables or
/// rules were collected.
fn fix_half_applied(model: &Model, out: &mut Vec<Finding>) {
    let prefixes = super::manifest_prefixes(model);
    if prefixes.is_empty() || model.nodes.len() < 2 {
        return;
    }
    let have = client_pieces(model, &prefixes);
    if have.is_empty() {
        return;
    }
    // The nodes that receive the clients' traffic: those a router (or the subnet) delivers a
    // LoadBalancer IP to; every node when that cannot be told.
    let arrivals = lb_arrivals(model);
    let universe: Vec<&String> = if arrivals.is_empty() {
        model.nodes.keys().collect()
    } else {
        model
            .nodes
            .keys()
            .filter(|n| arrivals.contains_key(*n))
            .collect()
    };
    for (piece, holders) in have {
        let missing = nodes_lacking(model, &universe, &piece, &holders);
        let present: Vec<&String> = holders.keys().filter(|n| universe.contains(n)).collect();
        if missing.is_empty() || present.is_empty() {
            continue;
        }
        let Some((src, change, client)) = holders.get(present[0]) else {
            continue;
        };
        let held = Held {
            src,
            change,
            client,
        };
        out.push(half_applied_finding(
            model, &piece, &holders, &held, &present, &missing,
        ));
    }
}

/// The nodes holding a route or rule, each with the first occurrence: where, the change it
/// is, and the client (name and prefix) it names.
type Holders = BTreeMap<String, (SourceRef, Change, String)>;

/// A route or rule as the first node that holds it has it (see [`Holders`]).
struct Held<'a> {
    src: &'a SourceRef,
    change: &'a Change,
    client: &'a String,
}

/// Who has what: the routes (but the default and the kernel's local ones) and rules of every
/// node that name (a part of) a client prefix.
fn client_pieces(model: &Model, prefixes: &[(String, IpNet)]) -> BTreeMap<Piece, Holders> {
    let inside = |p: &IpNet| -> Option<String> {
        prefixes
            .iter()
            .find(|(_, c)| {
                c.addr().is_ipv4() == p.addr().is_ipv4()
                    && p.prefix_len() >= c.prefix_len()
                    && c.contains(&p.addr())
            })
            .map(|(n, c)| format!("{n} {c}"))
    };
    let mut have: BTreeMap<Piece, Holders> = BTreeMap::new();
    for (node, net) in &model.nodes {
        for r in &net.routes {
            if r.prefix_len_zero_or_local() {
                continue;
            }
            let Some(client) = inside(&r.dst) else {
                continue;
            };
            let mut rr = r.clone();
            rr.proto = None;
            have.entry(Piece::Route(r.table, r.dst))
                .or_default()
                .entry(node.clone())
                .or_insert_with(|| {
                    (
                        r.source.clone(),
                        Change {
                            text: String::new(),
                            node: None,
                            op: Op::Add,
                            item: Item::Route(rr),
                        },
                        client,
                    )
                });
        }
        for r in &net.rules {
            let client = r
                .from
                .as_ref()
                .and_then(inside)
                .or_else(|| r.to.as_ref().and_then(inside));
            let Some(client) = client else { continue };
            let action = crate::trace::rule_text(r)
                .split_once(':')
                .map(|(_, t)| t.trim().to_string())
                .unwrap_or_default();
            have.entry(Piece::Rule(r.from, r.to, action))
                .or_default()
                .entry(node.clone())
                .or_insert_with(|| {
                    (
                        r.source.clone(),
                        Change {
                            text: String::new(),
                            node: None,
                            op: Op::Add,
                            item: Item::Rule(r.clone()),
                        },
                        client,
                    )
                });
        }
    }
    have
}

/// The nodes of `universe` that lack `piece` and whose routing tables (or rules) were
/// collected whole.
fn nodes_lacking<'u>(
    model: &Model,
    universe: &[&'u String],
    piece: &Piece,
    holders: &Holders,
) -> Vec<&'u String> {
    universe
        .iter()
        .copied()
        .filter(|n| !holders.contains_key(*n))
        .filter(|n| {
            let Some(net) = model.nodes.get(*n) else {
                return false;
            };
            match piece {
                Piece::Route(t, dst) => {
                    let fam = if dst.addr().is_ipv4() {
                        Family::Ipv4
                    } else {
                        Family::Ipv6
                    };
                    net.knows_table_of(fam, *t)
                        && !net.partial.iter().any(|(f, _, _)| *f == NodeFact::Routes)
                }
                Piece::Rule(..) => {
                    net.read.contains_key(&NodeFact::Rules)
                        && !net.partial.iter().any(|(f, _, _)| *f == NodeFact::Rules)
                }
            }
        })
        .collect()
}

/// The `fix-half-applied` finding of `piece`, on `present` but not on `missing`.
fn half_applied_finding(
    model: &Model,
    piece: &Piece,
    holders: &Holders,
    held: &Held,
    present: &[&String],
    missing: &[&String],
) -> Finding {
    let Held {
        src,
        change,
        client,
    } = *held;
    let cmd = crate::trace::text::change_command(change);
    let what = match &change.item {
        Item::Route(r) => format!("route `{}`", crate::trace::route_text(r)),
        Item::Rule(r) => format!("rule `{}`", crate::trace::rule_text(r)),
        Item::Sysctl(..) => String::new(),
    };
    let total = present.len() + missing.len();
    let mut evidence: Vec<String> = Vec::new();
    for n in present {
        if let Some((src, _, _)) = holders.get(*n) {
            push_evidence(&mut evidence, s(src));
        }
    }
    for n in missing {
        if let Some(net) = model.nodes.get(*n) {
            let fact = match piece {
                Piece::Route(..) => NodeFact::Routes,
                Piece::Rule(..) => NodeFact::Rules,
            };
            if let Some(f) = net.read.get(&fact).and_then(|v| v.first()) {
                push_evidence(&mut evidence, s(f));
            }
        }
    }
    let names = |v: &[&String]| v.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
    let mut affected: Vec<String> = missing.iter().map(|n| format!("node {n}")).collect();
    affected.push(format!("client {client}"));
    // The route or rule itself: two pieces missing on the same nodes are two findings.
    affected.push(cmd.clone());
    Finding {
    code: "fix-half-applied",
    severity: Severity::Error,
    title: format!(
        "{what} (client {client}) is on {} of {total} nodes: missing on {}",
        present.len(),
        names(missing)
    ),
    explanation: format!(
        "The {what} ({src}) names client prefix {client} (or a part of it). It is on {} ({}), but not on {} ({}), which receive the same clients' traffic to the LoadBalancer IPs (whose tables and rules were collected): a fix applied on some nodes only, so the clients' connections that land on the others still take the old path.",
        names(present),
        present.len(),
        names(missing),
        missing.len()
    ),
    evidence,
    affected,
    fixes: vec![FindingFix {
        description: format!(
            "Run the same command on the {} node{} that lack it (and persist it as on the others).",
            missing.len(),
            plural(missing.len())
        ),
        commands: vec![cmd],
        nodes: missing.iter().map(|n| n.to_string()).collect(),
        status: "advice",
        verification: "not re-simulated here: `kubepath check --what-if 'NODE: COMMAND'` re-runs every flow with it".into(),
    }],
    share: 0.0,
    }
}

/// Routes a fix does not consist of: the default route and the kernel's local/broadcast ones.
trait RouteFilter {
    fn prefix_len_zero_or_local(&self) -> bool;
}

impl RouteFilter for kubepath_model::net::Route {
    fn prefix_len_zero_or_local(&self) -> bool {
        self.dst.prefix_len() == 0
            || matches!(
                self.kind,
                RouteType::Local | RouteType::Broadcast | RouteType::Multicast | RouteType::Anycast
            )
            || self.table == 255
            // A connected route comes from an address, not from a fix.
            || self.proto.as_deref() == Some("kernel")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_keep_quoted_comments() {
        let w = shell_words(
            r#"-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y"#,
        );
        assert_eq!(w[9], "default/kubernetes:https cluster IP");
        let r = parse_kp_rule(
            "KUBE-SERVICES",
            SourceRef::new("f", 1),
            r#"-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y"#,
        );
        assert_eq!(r.dport, Some(443));
        assert_eq!(r.target.as_deref(), Some("KUBE-SVC-NPX46M4PTMTKRN6Y"));
        assert_eq!(
            comment_service(r.comment.as_deref().unwrap_or("")),
            Some((ObjectKey::new("default", "kubernetes"), "https".into()))
        );
        let r = parse_kp_rule(
            "KUBE-SVC-X",
            SourceRef::new("f", 2),
            r#"-A KUBE-SVC-X ! -s 192.168.0.0/16 -d 10.96.0.1/32 -p tcp -j KUBE-MARK-MASQ"#,
        );
        assert_eq!(r.dst, "10.96.0.1/32".parse().ok());
    }
}
