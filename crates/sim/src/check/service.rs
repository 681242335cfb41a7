//! Service wiring checks: LoadBalancer announcements ([`crate::announce`]), DNS names and
//! Ingress hosts against the addresses of services and ingress controllers, Ingress status,
//! and Ingresses claiming the same host and path.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kubepath_model::dns::RData;
use kubepath_model::k8s::ServiceType;
use kubepath_model::{Model, SourceRef};

use super::{Finding, FindingFix, Severity};
use crate::announce::{self, Reason};

/// Every service-wiring finding.
pub fn check(model: &Model, notes: &mut Vec<String>) -> Vec<Finding> {
    let mut out = Vec::new();
    announcements(model, &mut out);
    let ctl = controller_addresses(model);
    ingress_status(model, &ctl, &mut out);
    if model.dns.records.is_empty() {
        notes.push("no DNS data in the snapshot: the DNS checks did not run".into());
    } else {
        ingress_hosts_dns(model, &ctl, &mut out);
        dns_addresses(model, &mut out);
    }
    ingress_conflicts(model, &mut out);
    unready_selections(model, &mut out);
    dns_not_read(model, &mut out);
    out
}

/// `dns-file-not-read`: files under `dns/` that were left out (binary, too large, in no
/// format kubepath reads): an answer they hold is not compared with the others, so a trace
/// of a name they answer may miss a disagreement (review 7: only a `-v` note said so).
fn dns_not_read(model: &Model, out: &mut Vec<Finding>) {
    if model.dns.left_out.is_empty() {
        return;
    }
    let files: Vec<String> = model
        .dns
        .left_out
        .iter()
        .map(|(f, why)| format!("{f} ({why})"))
        .collect();
    out.push(Finding {
        code: "dns-file-not-read",
        severity: Severity::Warning,
        title: format!(
            "{} file(s) under dns/ could not be read",
            model.dns.left_out.len()
        ),
        explanation: format!(
            "{}. A name they answer is traced from the other DNS sources only; if it is a resolver capture, its answer is not compared with them.",
            files.join("; ")
        ),
        evidence: model
            .dns
            .left_out
            .iter()
            .map(|(f, _)| f.to_string())
            .collect(),
        affected: Vec::new(),
        fixes: vec![FindingFix::advice(
            "Collect the zone or the resolver output again as text (`dig NAME`, `nslookup NAME`), or remove the file from dns/.",
        )],
        share: 0.0,
    });
}

fn s(src: &SourceRef) -> String {
    src.to_string()
}

/// `lb-ip-not-announced` and `lb-announced-without-local-endpoint`.
fn announcements(model: &Model, out: &mut Vec<Finding>) {
    if !model.cluster.lb.is_configured() {
        return;
    }
    for a in announce::announce(model, None) {
        let Some(svc) = model.cluster.services.get(&a.service) else {
            continue;
        };
        // A Service whose status address MetalLB clears and cannot replace (an address-pool
        // annotation naming a pool that does not exist): what is in use is announced by nobody.
        let cleared = a.ips.is_empty()
            && matches!(a.blocked, Some(Reason::NoIp(_)))
            && !svc.lb_ingress_ips().is_empty();
        let ips: Vec<String> = if cleared {
            svc.lb_ingress_ips().iter().map(|i| i.to_string()).collect()
        } else {
            a.ips.iter().map(|i| i.to_string()).collect()
        };
        // An address in no pool is its own finding (lb-ip-in-no-pool); no IP at all is not an
        // entry point.
        let skip = matches!(
            a.blocked,
            Some(Reason::IpInNoPool(_)) | Some(Reason::NoLbConfig) | Some(Reason::NoIp(_))
        );
        if (!a.ips.is_empty() && a.announcing_nodes.is_empty() && !skip) || cleared {
            let why = match &a.blocked {
                Some(r) => r.to_string(),
                None => {
                    let mut reasons: BTreeMap<String, Vec<&str>> = BTreeMap::new();
                    for (n, r) in &a.not_announcing {
                        reasons.entry(r.to_string()).or_default().push(n.as_str());
                    }
                    reasons
                        .iter()
                        .map(|(r, nodes)| {
                            format!(
                                "{} ({} node{})",
                                r,
                                nodes.len(),
                                if nodes.len() == 1 { "" } else { "s" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            };
            let mut evidence = vec![s(&a.source)];
            evidence.extend(a.pool_source.as_ref().map(s));
            for r in a.not_announcing.values().chain(a.blocked.iter()) {
                if let Reason::NoLocalEndpoint(src) = r {
                    evidence.push(s(src));
                    break;
                }
            }
            out.push(Finding {
                code: "lb-ip-not-announced",
                severity: Severity::Error,
                title: format!(
                    "LoadBalancer IP {} of Service {} is announced by no node",
                    ips.join(", "),
                    a.service
                ),
                explanation: format!(
                    "No speaker advertises the address, so the routers have no route to it and clients cannot reach the Service. Why: {why}."
                ),
                evidence,
                affected: std::iter::once(format!("Service {}", a.service))
                    .chain(ips.iter().map(|ip| format!("IP {ip}")))
                    .collect(),
                fixes: vec![FindingFix::advice(
                    "Remove the cause above (start a ready endpoint, advertise the pool, run a speaker on the nodes, or select them in the advertisement); `kubepath announce` shows each node's reason.",
                )],
                share: 0.0,
            });
        }
        // Paths on the routers from nodes that, under externalTrafficPolicy Local, have no
        // local endpoint: kube-proxy drops what the router hashes to them.
        let Some(rc) = &a.router_check else { continue };
        let mut stale: BTreeMap<String, Vec<&announce::RouterPath>> = BTreeMap::new();
        for p in &rc.unexplained {
            let Some(node) = &p.node else { continue };
            if matches!(a.not_announcing.get(node), Some(Reason::NoLocalEndpoint(_))) {
                stale.entry(node.clone()).or_default().push(p);
            }
        }
        if stale.is_empty() {
            continue;
        }
        let mut evidence = vec![s(&svc.external_traffic_policy_source)];
        for paths in stale.values() {
            for p in paths {
                evidence.extend(p.source.as_ref().map(s));
            }
        }
        let routers: BTreeSet<String> = stale
            .values()
            .flatten()
            .map(|p| format!("{} vrf {}", p.router, p.vrf))
            .collect();
        out.push(Finding {
            code: "lb-announced-without-local-endpoint",
            severity: Severity::Error,
            title: format!(
                "LoadBalancer IP {} of Service {} is announced by {} node{} without a local endpoint (externalTrafficPolicy Local)",
                ips.join(", "),
                a.service,
                stale.len(),
                if stale.len() == 1 { "" } else { "s" }
            ),
            explanation: format!(
                "{} still {} a path to the address via {}, but under externalTrafficPolicy Local kube-proxy drops traffic on a node without a local serving endpoint: the share the router hashes there is lost. A speaker that should have withdrawn the route did not (stale announcement).",
                routers.into_iter().collect::<Vec<_>>().join(", "),
                if stale.values().map(Vec::len).sum::<usize>() == 1 { "has" } else { "have" },
                stale.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            evidence,
            affected: std::iter::once(format!("Service {}", a.service))
                .chain(ips.iter().map(|ip| format!("IP {ip}")))
                .chain(stale.keys().map(|n| format!("node {n}")))
                .collect(),
            fixes: vec![FindingFix::advice(
                "Make the speakers withdraw the route (restart the speaker on those nodes or clear the BGP session), or run an endpoint on each announcing node (e.g. a DaemonSet), or use externalTrafficPolicy Cluster.",
            )],
            share: 0.0,
        });
    }
}

/// Addresses at which an ingress controller can be reached: the IPs of the Services that
/// select a controller pod (LoadBalancer, external, requested), and the addresses of the nodes
/// that run one. `None` when the snapshot has no controller pod.
struct ControllerAddrs {
    addrs: BTreeMap<IpAddr, String>,
}

fn controller_addresses(model: &Model) -> Option<ControllerAddrs> {
    let c = &model.cluster;
    let pods: Vec<(String, String)> = crate::ingress::controllers(model)
        .into_iter()
        .filter_map(|r| r.pod)
        .collect();
    if pods.is_empty() {
        return None;
    }
    let mut addrs = BTreeMap::new();
    for (ns, name) in &pods {
        let Some(pod) = c.pod(ns, name) else { continue };
        // Every pod of this name (a snapshot may hold two): a Service selecting any of them.
        let same: Vec<&kubepath_model::k8s::Pod> =
            c.pods.iter().filter(|p| p.key == pod.key).collect();
        if let Some(n) = &pod.node_name {
            if let Some(node) = c.nodes.get(n) {
                for a in node.addresses() {
                    addrs.insert(*a, format!("node {n} (runs {ns}/{name})"));
                }
            }
        }
        if let Some(h) = pod.host_ip {
            addrs
                .entry(h)
                .or_insert_with(|| format!("host of {ns}/{name}"));
        }
        for svc in c.services.values() {
            if !same
                .iter()
                .any(|p| kubepath_model::k8s::Cluster::selects(svc, p))
            {
                continue;
            }
            let mut ips = svc.lb_ingress_ips();
            ips.extend(svc.external_ips.iter().copied());
            ips.extend(svc.load_balancer_ip);
            if svc.type_ == ServiceType::LoadBalancer || !svc.external_ips.is_empty() {
                for ip in ips {
                    addrs.insert(ip, format!("Service {}", svc.key));
                }
            }
        }
    }
    Some(ControllerAddrs { addrs })
}

/// `ingress-status-no-controller`: an address in an Ingress's `status.loadBalancer` that is no
/// address of an ingress controller.
fn ingress_status(model: &Model, ctl: &Option<ControllerAddrs>, out: &mut Vec<Finding>) {
    let Some(ctl) = ctl else { return };
    for ing in &model.cluster.ingresses {
        let bad: Vec<&IpAddr> = ing
            .status_ips
            .iter()
            .filter(|ip| !ctl.addrs.contains_key(ip))
            .collect();
        if bad.is_empty() {
            continue;
        }
        let list = bad.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        out.push(Finding {
            code: "ingress-status-no-controller",
            severity: Severity::Warning,
            title: format!(
                "Ingress {} reports {} {} in status.loadBalancer, where no ingress controller runs",
                ing.key,
                if bad.len() == 1 { "address" } else { "addresses" },
                list.join(", ")
            ),
            explanation: format!(
                "The status is what the controller last published (external-dns and operators use it), but no controller pod runs on {} and no controller Service has {}: a stale status (controller pods moved) or a controller missing from the snapshot. Controller addresses: {}.",
                if bad.len() == 1 { "that node" } else { "those nodes" },
                if bad.len() == 1 { "it" } else { "them" },
                ctl.addrs.iter().map(|(ip, why)| format!("{ip} ({why})")).collect::<Vec<_>>().join(", ")
            ),
            evidence: vec![s(&ing.source)],
            affected: vec![format!("Ingress {}", ing.key)],
            fixes: vec![FindingFix::advice(
                "Run the controller with --publish-service=<its Service> (the status then holds the Service's LoadBalancer IP), or restart it so it republishes the status; check that DNS does not point at the stale addresses.",
            )],
            share: 0.0,
        });
    }
}

/// `ingress-host-no-dns` and `ingress-host-dns-elsewhere`.
fn ingress_hosts_dns(model: &Model, ctl: &Option<ControllerAddrs>, out: &mut Vec<Finding>) {
    let Some(ctl) = ctl else { return };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for ing in &model.cluster.ingresses {
        for rule in &ing.rules {
            let Some(host) = rule.host.as_deref() else {
                continue;
            };
            if host.starts_with('*') || !seen.insert(host.to_ascii_lowercase()) {
                continue;
            }
            let res = model.dns.resolve(host);
            let addrs: Vec<IpAddr> = res
                .addresses
                .iter()
                .filter_map(|r| match r.data {
                    RData::A(a) => Some(IpAddr::V4(a)),
                    RData::Aaaa(a) => Some(IpAddr::V6(a)),
                    _ => None,
                })
                .collect();
            let mut evidence = vec![s(&rule.source)];
            evidence.extend(res.chain.iter().map(|r| s(&r.source)));
            evidence.extend(res.addresses.iter().map(|r| s(&r.source)));
            // A resolver output without an answer for the host beside a source with its
            // addresses disagrees too (issue #11, fifth review).
            let failed_beside = !addrs.is_empty() && !res.failures.is_empty();
            if !res.disagreement.is_empty() || failed_beside {
                // Issue #11 (review defect 13): the trace makes the disputed addresses'
                // shares unknown; say so here too, with each source's answer.
                let mut said: Vec<String> = res
                    .disagreement
                    .iter()
                    .map(|(src, ips)| {
                        let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
                        if ips.is_empty() {
                            format!("{src} gives no address")
                        } else {
                            format!("{src} gives {}", ips.join(", "))
                        }
                    })
                    .collect();
                if said.is_empty() {
                    said.extend(
                        res.addresses
                            .iter()
                            .map(|r| format!("{} gives {}", r.source, r.data.text())),
                    );
                }
                said.extend(
                    res.failures
                        .iter()
                        .map(|f| format!("{} answered {} for {}", f.source, f.status, f.name)),
                );
                out.push(Finding {
                    code: "dns-sources-disagree",
                    severity: Severity::Warning,
                    title: format!("The snapshot's DNS sources disagree on Ingress host {host}"),
                    explanation: format!(
                        "{}. Which answer a client gets is unknown (a stale capture, a changed record or split-horizon DNS), so traces of {host} mark the disputed addresses unknown.",
                        said.join("; ")
                    ),
                    evidence: res
                        .disagreement
                        .iter()
                        .map(|(src, _)| s(src))
                        .chain(res.failures.iter().map(|f| s(&f.source)))
                        .chain(std::iter::once(s(&rule.source)))
                        .collect(),
                    affected: vec![format!("Ingress {}", ing.key), format!("host {host}")],
                    fixes: vec![FindingFix::advice(format!(
                        "Re-collect the name from the client's resolver (`nslookup {host}`) and drop the capture or zone file that is stale."
                    ))],
                    share: 0.0,
                });
            }
            if addrs.is_empty() {
                // Only when the snapshot holds the host's zone (a record under its parent).
                let parent = host.split_once('.').map(|(_, p)| p).unwrap_or("");
                let suffix = kubepath_model::dns::fqdn(parent);
                if parent.is_empty() || !model.dns.records.iter().any(|r| r.name.ends_with(&suffix))
                {
                    continue;
                }
                out.push(Finding {
                    code: "ingress-host-no-dns",
                    severity: Severity::Warning,
                    title: format!("Ingress host {host} ({}) does not resolve", ing.key),
                    explanation: format!(
                        "The snapshot's DNS data holds the zone {parent} but no address for {host}, so clients cannot find the controller for this Ingress."
                    ),
                    evidence,
                    affected: vec![format!("Ingress {}", ing.key), format!("host {host}")],
                    fixes: vec![FindingFix::advice(format!(
                        "Add an A (or CNAME) record for {host} pointing at the ingress controller's address: {}.",
                        ctl.addrs.keys().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                    ))],
                    share: 0.0,
                });
            } else if !addrs.iter().any(|a| ctl.addrs.contains_key(a)) {
                out.push(Finding {
                    code: "ingress-host-dns-elsewhere",
                    severity: Severity::Error,
                    title: format!(
                        "Ingress host {host} ({}) resolves to {}, which is no address of an ingress controller",
                        ing.key,
                        addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                    explanation: format!(
                        "Clients connect to what DNS says; no ingress controller can be reached there, so the Ingress is not served to them. Controller addresses: {}.",
                        ctl.addrs.iter().map(|(ip, why)| format!("{ip} ({why})")).collect::<Vec<_>>().join(", ")
                    ),
                    evidence,
                    affected: vec![format!("Ingress {}", ing.key), format!("host {host}")],
                    fixes: vec![FindingFix::advice(format!(
                        "Point {host} at the ingress controller's LoadBalancer IP."
                    ))],
                    share: 0.0,
                });
            }
        }
    }
}

/// `dns-address-no-service`: a DNS name resolves to an address inside a load-balancer pool
/// that no Service holds.
fn dns_addresses(model: &Model, out: &mut Vec<Finding>) {
    let c = &model.cluster;
    if !c.lb.is_configured() {
        return;
    }
    let mut held: BTreeSet<IpAddr> = BTreeSet::new();
    for svc in c.services.values() {
        held.extend(svc.lb_ingress_ips());
        held.extend(svc.external_ips.iter().copied());
        held.extend(svc.load_balancer_ip);
    }
    let mut done: BTreeSet<(String, IpAddr)> = BTreeSet::new();
    for r in &model.dns.records {
        let ip = match r.data {
            RData::A(a) => IpAddr::V4(a),
            RData::Aaaa(a) => IpAddr::V6(a),
            _ => continue,
        };
        if held.contains(&ip) || !done.insert((r.name.clone(), ip)) {
            continue;
        }
        let Some(pool) = c.lb.pools.iter().find(|p| p.contains(ip)) else {
            continue;
        };
        let name = r.name.trim_end_matches('.');
        out.push(Finding {
            code: "dns-address-no-service",
            severity: Severity::Error,
            title: format!(
                "DNS name {name} resolves to {ip}, a load-balancer address no Service holds"
            ),
            explanation: format!(
                "{ip} is in pool `{}` but no Service of the snapshot has it: clients of {name} reach nothing (a stale record, or a Service that got another address).",
                pool.name
            ),
            evidence: vec![s(&r.source), s(&pool.source)],
            affected: vec![format!("DNS {name}"), format!("IP {ip}")],
            fixes: vec![FindingFix::advice(format!(
                "Point {name} at the LoadBalancer IP of the Service it is meant for (kubectl get svc -A shows them), or request {ip} for that Service (spec.loadBalancerIP)."
            ))],
            share: 0.0,
        });
    }
}

/// `ingress-path-conflict`: two Ingresses served by the same ingress-nginx controller claim
/// the same host and path. Which controller serves an Ingress is ingress-nginx's class rules
/// ([`crate::ingress::controller::serves`]: `spec.ingressClassName`, the class annotation, and
/// for an Ingress without a class `--watch-ingress-without-class` or, for a controller of
/// unknown version, a default IngressClass of its own), so an Ingress without a class and one
/// of class `nginx` conflict when one controller serves both. Controller pods with the same
/// class settings (the replicas of one Deployment) are one controller. Ingresses that no
/// controller of the snapshot serves (another controller's class, or no controller pod and a
/// class the generic controller does not take) are grouped by their class, as that
/// controller would.
fn ingress_conflicts(model: &Model, out: &mut Vec<Finding>) {
    use crate::ingress::IngressView;
    let view = IngressView::shared(model);
    let world = view.world();
    let configs = class_configs(view.controllers());
    let claims = path_claims(model, world, &configs);
    // Two controllers serving the same Ingresses give one finding.
    let mut done: BTreeSet<(String, String, String, Vec<String>)> = BTreeSet::new();
    for ((by, host, path, ptype), v) in claims {
        if v.len() < 2 {
            continue;
        }
        let mut names: Vec<String> = v.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        if !done.insert((host.clone(), path.clone(), ptype.clone(), names)) {
            continue;
        }
        let host_text = if host.is_empty() {
            "*".to_string()
        } else {
            host
        };
        let classes: BTreeSet<String> = v
            .iter()
            .filter_map(|(n, _)| {
                model
                    .cluster
                    .ingresses
                    .iter()
                    .find(|i| i.key.to_string() == *n)
            })
            .map(|i| i.class.clone().unwrap_or_default())
            .collect();
        let who = claimant_text(&by, &configs, &classes);
        out.push(Finding {
            code: "ingress-path-conflict",
            severity: Severity::Warning,
            title: format!(
                "Ingresses {} all claim host {host_text} path {path} ({ptype})",
                v.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ),
            explanation: format!(
                "{who}; ingress-nginx merges Ingresses per host and serves one location per path: only one of them (the oldest) gets this path's traffic, the others are silently ignored for it."
            ),
            evidence: v.iter().map(|(_, src)| s(src)).collect(),
            affected: v
                .iter()
                .map(|(n, _)| format!("Ingress {n}"))
                .chain([format!("host {host_text} path {path} ({ptype})")])
                .collect(),
            fixes: vec![FindingFix::advice(
                "Keep the path in one Ingress (delete or change the others), or use different hosts or paths.",
            )],
            share: 0.0,
        });
    }
}

/// One distinct class configuration of the controllers: (its identity, a controller with
/// it, the labels of the pods that run it).
type ClassConfig = (
    String,
    crate::ingress::controller::ControllerRef,
    Vec<String>,
);

/// The distinct class configurations of `controllers` (a generic controller when there is
/// none), in the order first met.
fn class_configs(
    mut controllers: Vec<crate::ingress::controller::ControllerRef>,
) -> Vec<ClassConfig> {
    use crate::ingress::controller::ControllerRef;
    if controllers.is_empty() {
        controllers.push(ControllerRef::generic());
    }
    let mut configs: Vec<ClassConfig> = Vec::new();
    for c in controllers {
        let id = format!(
            "{:?}",
            (
                c.version,
                &c.ingress_class,
                &c.controller_class,
                c.watch_without_class,
                c.ingress_class_by_name,
                &c.watch_namespace,
            )
        );
        match configs.iter_mut().find(|(i, _, _)| *i == id) {
            Some((_, _, pods)) => pods.push(c.label()),
            None => {
                let label = c.label();
                configs.push((id, c, vec![label]));
            }
        }
    }
    configs
}

/// Who serves an Ingress: a class configuration's index, or the class for Ingresses that
/// none serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum By {
    Controller(usize),
    Class(String),
}

/// (who serves, host, path, pathType).
type ClaimKey = (By, String, String, String);

/// Every (who serves, host, path, pathType) the Ingresses claim, with the Ingresses (and the
/// path's source) that claim it.
fn path_claims(
    model: &Model,
    world: &crate::ingress::world::World,
    configs: &[ClassConfig],
) -> BTreeMap<ClaimKey, Vec<(String, SourceRef)>> {
    use crate::ingress::controller::serves;
    let mut claims: BTreeMap<ClaimKey, Vec<(String, SourceRef)>> = BTreeMap::new();
    for ing in &model.cluster.ingresses {
        let obj = world
            .ingresses
            .iter()
            .find(|o| o.namespace == ing.key.namespace && o.name == ing.key.name);
        let mut by: Vec<By> = obj
            .map(|o| {
                configs
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, c, _))| serves(world, c, o).0)
                    .map(|(i, _)| By::Controller(i))
                    .collect()
            })
            .unwrap_or_default();
        if by.is_empty() {
            by.push(By::Class(ing.class.clone().unwrap_or_default()));
        }
        for rule in &ing.rules {
            let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
            for p in &rule.paths {
                for b in &by {
                    let key = (
                        b.clone(),
                        host.clone(),
                        p.path.clone().unwrap_or_else(|| "/".into()),
                        p.path_type
                            .clone()
                            .unwrap_or_else(|| "ImplementationSpecific".into()),
                    );
                    let v = claims.entry(key).or_default();
                    let name = ing.key.to_string();
                    if !v.iter().any(|(n, _)| *n == name) {
                        v.push((name, p.source.clone()));
                    }
                }
            }
        }
    }
    claims
}

/// Who serves the conflicting Ingresses (of `classes`), for the explanation.
fn claimant_text(by: &By, configs: &[ClassConfig], classes: &BTreeSet<String>) -> String {
    match by {
        By::Controller(i) => {
            let (_, c, pods) = &configs[*i];
            let what = if c.pod.is_none() {
                "ingress-nginx (no controller pod in the snapshot: default flags)".to_string()
            } else {
                format!("the ingress-nginx controller {}", pods.join(", "))
            };
            if classes.len() > 1 {
                let list: Vec<String> = classes
                    .iter()
                    .map(|c| {
                        if c.is_empty() {
                            "no class".to_string()
                        } else {
                            format!("class {c}")
                        }
                    })
                    .collect();
                format!(
                    "{what} serves all of them (by its class rules, although they have {})",
                    list.join(" and ")
                )
            } else {
                format!("{what} serves all of them")
            }
        }
        By::Class(class) if class.is_empty() => {
            "ingress-nginx (the controller that serves them is not in the snapshot)".to_string()
        }
        By::Class(class) => format!(
            "ingress-nginx (class {class}; the controller that serves it is not in the snapshot)"
        ),
    }
}

/// `selector-matches-no-ready-pod`: a Service selects pods, but none of them is Ready (the
/// case of a selector matching no pod at all is `selector-matches-no-pod`). Pods whose
/// readiness the snapshot does not say make the check undecided: no finding.
fn unready_selections(model: &Model, out: &mut Vec<Finding>) {
    let c = &model.cluster;
    let by_ns = c.pods_by_namespace();
    for svc in c.services.values() {
        let pods: Vec<&kubepath_model::k8s::Pod> = by_ns
            .get(svc.key.namespace.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| kubepath_model::k8s::Cluster::selects(svc, p))
            .collect();
        if pods.is_empty() || pods.iter().any(|p| p.ready.is_none()) {
            continue;
        }
        if pods.iter().any(|p| p.ready == Some(true) && !p.terminating) {
            continue;
        }
        let mut evidence = vec![s(&svc.source)];
        evidence.extend(pods.iter().map(|p| s(&p.source)));
        out.push(Finding {
            code: "selector-matches-no-ready-pod",
            severity: Severity::Error,
            title: format!(
                "Service {} selects {} pod{}, none of them Ready",
                svc.key,
                pods.len(),
                if pods.len() == 1 { "" } else { "s" }
            ),
            explanation: format!(
                "Endpoints list only Ready pods as serving, so the Service has no endpoint to send to: kube-proxy rejects or drops its traffic and ingress-nginx answers 503. Not Ready: {}.",
                pods.iter().map(|p| p.key.to_string()).collect::<Vec<_>>().join(", ")
            ),
            evidence,
            affected: vec![format!("Service {}", svc.key)],
            fixes: vec![FindingFix::advice(
                "Find why the pods are not Ready (kubectl describe pod: failing readiness probe, crash loop, unschedulable) and fix that.",
            )],
            share: 0.0,
        });
    }
}
