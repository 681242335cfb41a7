//! Contradictions between the sources of one snapshot (the same address on two nodes, an
//! Ingress backend that does not exist, ...). `kubepath snapshot inspect` lists them as they
//! are; `kubepath check` adds a severity, an explanation and a fix to each ([`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kubepath_model::k8s::{IngressBackend, PortRef};
use kubepath_model::{Model, SourceRef};

use crate::trace::routing::{addr_key, prefix_key, PrefixKey};

/// One contradiction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFinding {
    /// Stable code: `duplicate-ip`, `pod-ip-on-no-node`, `pod-ip-on-other-node`,
    /// `ingress-backend-missing`, `ingress-backend-port-missing`, `selector-matches-no-pod`,
    /// `lb-ip-in-no-pool`, `pod-on-unknown-node`, `lb-route-without-service`,
    /// `endpoint-pod-ip-mismatch`.
    pub kind: &'static str,
    pub message: String,
    /// `file:line` of every place involved (or a file).
    pub places: Vec<String>,
    /// What it is about (`Service demo/web`, `node n1`, `IP 10.0.0.1`, ...), which tells two
    /// findings of the same kind apart (the key of `kubepath diff` and of SARIF's fingerprints).
    pub affected: Vec<String>,
}

fn place(s: &SourceRef) -> String {
    s.to_string()
}

/// Contradictions in the model, each citing every place involved.
pub fn findings(model: &Model) -> Vec<ModelFinding> {
    let mut out = Vec::new();
    duplicate_interface_ips(model, &mut out);
    duplicate_node_ips(model, &mut out);
    pod_ips_against_nodes(model, &mut out);
    pods_on_unknown_nodes(model, &mut out);
    ingress_backends(model, &mut out);
    selectors_matching_no_pod(model, &mut out);
    lb_ips_in_no_pool(model, &mut out);
    lb_routes_without_service(model, &mut out);
    endpoint_pod_ip_mismatches(model, &mut out);
    out
}

/// The same IP on two nodes: interface addresses from `ip addr` (`duplicate-ip`), except
/// addresses that legitimately sit on many nodes.
fn duplicate_interface_ips(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    // Addresses that legitimately sit on many nodes: LoadBalancer/cluster/external IPs
    // (kube-ipvs0, VIPs bound locally), loopback and link-local.
    let mut shared: BTreeSet<IpAddr> = BTreeSet::new();
    for s in c.services.values() {
        shared.extend(s.cluster_ips.iter().copied());
        shared.extend(s.external_ips.iter().copied());
        shared.extend(s.lb_ingress_ips());
    }
    let mut owners: BTreeMap<IpAddr, Vec<(String, String, SourceRef)>> = BTreeMap::new();
    for (node, net) in &model.nodes {
        for i in &net.interfaces {
            for a in &i.addresses {
                let ip = a.address.addr();
                let special = ip.is_loopback()
                    || match ip {
                        IpAddr::V4(v) => v.is_link_local(),
                        IpAddr::V6(v) => (v.segments()[0] & 0xffc0) == 0xfe80,
                    };
                if special || shared.contains(&ip) || i.name == "kube-ipvs0" || a.scope == "host" {
                    continue;
                }
                owners.entry(ip).or_default().push((
                    node.clone(),
                    i.name.clone(),
                    a.source.clone(),
                ));
            }
        }
    }
    for (ip, v) in &owners {
        let nodes: BTreeSet<&String> = v.iter().map(|(n, _, _)| n).collect();
        // docker0's 172.17.0.1 exists on every node by default and never leaves it.
        let all_docker = v
            .iter()
            .all(|(_, i, _)| i == "docker0" || i.starts_with("cni") || i.starts_with("virbr"));
        if nodes.len() > 1 && !all_docker {
            out.push(ModelFinding {
                kind: "duplicate-ip",
                message: format!(
                    "{ip} is configured on {} nodes: {}",
                    nodes.len(),
                    v.iter()
                        .map(|(n, i, _)| format!("{n} ({i})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                places: v.iter().map(|(_, _, s)| place(s)).collect(),
                affected: std::iter::once(format!("IP {ip}"))
                    .chain(nodes.iter().map(|n| format!("node {n}")))
                    .collect(),
            });
        }
    }
}

/// Node objects with the same InternalIP (`duplicate-ip`).
fn duplicate_node_ips(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    let mut node_ips: BTreeMap<IpAddr, Vec<&kubepath_model::k8s::Node>> = BTreeMap::new();
    for n in c.nodes.values() {
        for a in n.addresses() {
            node_ips.entry(*a).or_default().push(n);
        }
    }
    for (ip, v) in node_ips {
        if v.len() > 1 {
            out.push(ModelFinding {
                kind: "duplicate-ip",
                message: format!(
                    "{ip} is the address of Nodes {}",
                    v.iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                places: v.iter().map(|n| place(&n.source)).collect(),
                affected: std::iter::once(format!("IP {ip}"))
                    .chain(v.iter().map(|n| format!("Node {}", n.name)))
                    .collect(),
            });
        }
    }
}

/// Pod IPs that no node holds or another node holds (`pod-ip-on-no-node`,
/// `pod-ip-on-other-node`).
fn pod_ips_against_nodes(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    // Pod IPs against the nodes: Node podCIDRs and each node's own pod routes
    // (Calico's `blackhole <block> proto bird`, and `<ip> dev caliXXX` per local pod).
    let mut blocks: Vec<(kubepath_model::ipnet::IpNet, String, SourceRef)> = Vec::new();
    for n in c.nodes.values() {
        for cidr in &n.pod_cidrs {
            blocks.push((*cidr, n.name.clone(), n.source.clone()));
        }
    }
    for (node, net) in &model.nodes {
        for r in net.routes.iter().filter(|r| r.is_pod_route()) {
            blocks.push((r.dst, node.clone(), r.source.clone()));
        }
    }
    // A node whose main table was not read (and without a podCIDR) may hold any pod IP: a
    // pod IP held by no known block is undecided while such a node exists.
    let unknown_node = |family: kubepath_model::net::Family| {
        c.nodes.values().any(|n| {
            n.pod_cidrs.is_empty()
                && model
                    .nodes
                    .get(&n.name)
                    .is_none_or(|net| !net.knows_table_of(family, kubepath_model::net::TABLE_MAIN))
        })
    };
    if !blocks.is_empty() {
        // The blocks by prefix (100,000 pods x 100,000 pod routes were a scan each): per
        // prefix, its blocks in order; the prefix lengths present, longest first.
        let mut by_prefix: std::collections::HashMap<PrefixKey, Vec<usize>> =
            std::collections::HashMap::new();
        let mut lens: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        for (i, (n, _, _)) in blocks.iter().enumerate() {
            let key = prefix_key(n);
            by_prefix.entry(key).or_default().push(i);
            let l = &mut lens[usize::from(key.0)];
            if !l.contains(&key.1) {
                l.push(key.1);
            }
        }
        for l in &mut lens {
            l.sort_unstable_by(|a, b| b.cmp(a));
        }
        for p in &c.pods {
            if p.host_network {
                continue;
            }
            for ip in &p.pod_ips {
                // The most specific holder wins (a /32 pod route over a /26 block); among
                // equally specific ones, the last (as `max_by_key` over all holders picks it).
                let best = lens[usize::from(ip.is_ipv6())].iter().find_map(|len| {
                    by_prefix
                        .get(&addr_key(*ip, *len))
                        .and_then(|v| v.last())
                        .map(|i| &blocks[*i])
                });
                match (best, &p.node_name) {
                    (None, _) if unknown_node(kubepath_model::net::Family::of(ip)) => {}
                    (None, _) => out.push(ModelFinding {
                        kind: "pod-ip-on-no-node",
                        message: format!(
                            "pod {} has IP {ip}, which is in no node's pod CIDR or pod routes",
                            p.key
                        ),
                        places: vec![place(&p.source)],
                        affected: vec![format!("Pod {}", p.key), format!("IP {ip}")],
                    }),
                    (Some((net, owner, src)), Some(node)) if owner != node => {
                        out.push(ModelFinding {
                            kind: "pod-ip-on-other-node",
                            message: format!(
                            "pod {} runs on node {node} but its IP {ip} belongs to {owner}'s {net}",
                            p.key
                        ),
                            places: vec![place(&p.source), place(src)],
                            affected: vec![
                                format!("Pod {}", p.key),
                                format!("IP {ip}"),
                                format!("node {node}"),
                                format!("node {owner}"),
                            ],
                        })
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Pods scheduled on a node that is not among the Nodes read (`pod-on-unknown-node`).
fn pods_on_unknown_nodes(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    if !c.nodes.is_empty() {
        for p in &c.pods {
            if let Some(n) = &p.node_name {
                if !c.nodes.contains_key(n) {
                    out.push(ModelFinding {
                        kind: "pod-on-unknown-node",
                        message: format!(
                            "pod {} is scheduled on node {n}, which is not among the Nodes read",
                            p.key
                        ),
                        places: vec![place(&p.source)],
                        affected: vec![format!("Pod {}", p.key), format!("node {n}")],
                    });
                }
            }
        }
    }
}

/// Ingress backends whose Service or port does not exist (`ingress-backend-missing`,
/// `ingress-backend-port-missing`).
fn ingress_backends(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    for ing in &c.ingresses {
        let mut backends: Vec<(&IngressBackend, &SourceRef)> = Vec::new();
        for r in &ing.rules {
            for p in &r.paths {
                backends.push((&p.backend, &p.source));
            }
        }
        if let Some(b) = &ing.default_backend {
            backends.push((b, &ing.source));
        }
        for (b, src) in backends {
            let IngressBackend::Service { name, port } = b else {
                continue;
            };
            match c.service(&ing.key.namespace, name) {
                None => {
                    let mut places = vec![place(src)];
                    let others: Vec<String> = c
                        .services
                        .values()
                        .filter(|s| s.key.name == *name)
                        .map(|s| format!("{} ({})", s.key, s.source))
                        .collect();
                    let mut files: Vec<String> = c
                        .services
                        .values()
                        .map(|s| s.source.file.to_string())
                        .collect();
                    files.sort();
                    files.dedup();
                    places.extend(files);
                    out.push(ModelFinding {
                        kind: "ingress-backend-missing",
                        message: format!(
                            "Ingress {} routes to Service {}/{name}, which does not exist{}",
                            ing.key,
                            ing.key.namespace,
                            if others.is_empty() {
                                String::new()
                            } else {
                                format!(" (a Service of that name exists in another namespace: {}; Ingress backends are namespace-local)", others.join(", "))
                            }
                        ),
                        places,
                        affected: vec![
                            format!("Ingress {}", ing.key),
                            format!("Service {}/{name}", ing.key.namespace),
                        ],
                    });
                }
                Some(svc) => {
                    let ok = svc.ports.iter().any(|sp| match port {
                        PortRef::Number(n) => sp.port == *n,
                        PortRef::Name(pn) => sp.name.as_deref() == Some(pn.as_str()),
                    });
                    if !ok {
                        out.push(ModelFinding {
                            kind: "ingress-backend-port-missing",
                            message: format!(
                                "Ingress {} routes to port {port} of Service {}, which has no such port",
                                ing.key, svc.key
                            ),
                            places: vec![place(src), place(&svc.source)],
                            affected: vec![
                                format!("Ingress {}", ing.key),
                                format!("Service {}", svc.key),
                                format!("port {port}"),
                            ],
                        });
                    }
                }
            }
        }
    }
}

/// Service selectors that match no pod (`selector-matches-no-pod`).
fn selectors_matching_no_pod(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    let by_ns = c.pods_by_namespace();
    // Selectors that match no pod (only when the snapshot has pods of that namespace).
    for svc in c.services.values() {
        let Some(sel) = &svc.selector else { continue };
        let Some(ns_pods) = by_ns.get(svc.key.namespace.as_str()) else {
            continue;
        };
        if sel.is_empty() {
            continue;
        }
        if !ns_pods
            .iter()
            .any(|p| kubepath_model::k8s::Cluster::selects(svc, p))
        {
            let elsewhere: Vec<&kubepath_model::k8s::Pod> = c
                .pods
                .iter()
                .filter(|p| sel.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
                .collect();
            let mut places = vec![place(&svc.source)];
            places.extend(elsewhere.iter().map(|p| place(&p.source)));
            out.push(ModelFinding {
                kind: "selector-matches-no-pod",
                message: format!(
                    "Service {} selects no pod in namespace {}{}",
                    svc.key,
                    svc.key.namespace,
                    if elsewhere.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (matching pods exist in other namespaces: {}; selectors are namespace-local)",
                            elsewhere.iter().map(|p| p.key.to_string()).collect::<Vec<_>>().join(", ")
                        )
                    }
                ),
                places,
                affected: vec![format!("Service {}", svc.key)],
            });
        }
    }
}

/// LoadBalancer IPs outside every pool (`lb-ip-in-no-pool`).
fn lb_ips_in_no_pool(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    if c.lb.is_configured() {
        for svc in c.services.values() {
            for ip in svc.lb_ingress_ips() {
                // MetalLB `poolFor` (internal/allocator/allocator.go) skips a pool with
                // avoidBuggyIPs for an IPv4 address ending in .0 or .255
                // (`ipConfusesBuggyFirmwares`), as announce's assignment does.
                let buggy = matches!(ip, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255));
                let holders: Vec<_> = c.lb.pools.iter().filter(|p| p.contains(ip)).collect();
                if holders.iter().any(|p| !(p.avoid_buggy_ips && buggy)) {
                    continue;
                }
                let mut places = vec![place(&svc.source)];
                places.extend(holders.iter().map(|p| place(&p.source)));
                if holders.is_empty() {
                    places.extend(c.lb.configs.iter().map(|(_, s)| place(s)));
                }
                out.push(ModelFinding {
                    kind: "lb-ip-in-no-pool",
                    message: if holders.is_empty() {
                        format!(
                            "Service {} has LoadBalancer IP {ip}, which is in no address pool",
                            svc.key
                        )
                    } else {
                        format!(
                            "Service {} has LoadBalancer IP {ip}, which is in no address pool: {} contain{} it but avoid{} buggy IPs (avoidBuggyIPs excludes addresses ending in .0 and .255)",
                            svc.key,
                            holders.iter().map(|p| format!("pool `{}`", p.name)).collect::<Vec<_>>().join(", "),
                            if holders.len() == 1 { "s" } else { "" },
                            if holders.len() == 1 { "s" } else { "" },
                        )
                    },
                    places,
                    affected: vec![format!("Service {}", svc.key), format!("IP {ip}")],
                });
            }
        }
    }
}

/// Router routes for load-balancer addresses that no Service holds
/// (`lb-route-without-service`).
fn lb_routes_without_service(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    if c.lb.is_configured() {
        let owned: BTreeSet<IpAddr> = c
            .services
            .values()
            .flat_map(|s| s.lb_ingress_ips())
            .collect();
        for r in model.routers.values() {
            for (vrf, v) in &r.vrfs {
                for route in &v.bgp {
                    let ip = route.prefix.addr();
                    let host = route.prefix.prefix_len() == route.prefix.max_prefix_len();
                    let Some(pool) = c.lb.pools.iter().find(|p| p.contains(ip)) else {
                        continue;
                    };
                    if !host || owned.contains(&ip) {
                        continue;
                    }
                    let learned: Vec<&kubepath_model::net::BgpPath> =
                        route.paths.iter().filter(|p| !p.local).collect();
                    if learned.is_empty() {
                        continue;
                    }
                    let mut places: Vec<String> =
                        learned.iter().map(|p| place(&p.source)).take(3).collect();
                    places.push(place(&pool.source));
                    out.push(ModelFinding {
                        kind: "lb-route-without-service",
                        message: format!(
                            "{} vrf {vrf} has {} path(s) to {} (pool `{}`), but no LoadBalancer Service in the snapshot has that IP",
                            r.name,
                            learned.len(),
                            route.prefix,
                            pool.name
                        ),
                        places,
                        affected: vec![
                            format!("router {} vrf {vrf}", r.name),
                            format!("prefix {}", route.prefix),
                        ],
                    });
                }
            }
        }
    }
}

/// Endpoints whose target pod has another IP (`endpoint-pod-ip-mismatch`).
fn endpoint_pod_ip_mismatches(model: &Model, out: &mut Vec<ModelFinding>) {
    let c = &model.cluster;
    // Pods by (namespace, name): the first of each, as `Cluster::pod`'s scan finds it.
    let mut pods: std::collections::HashMap<(&str, &str), &kubepath_model::k8s::Pod> =
        std::collections::HashMap::new();
    for p in &c.pods {
        pods.entry((p.key.namespace.as_str(), p.key.name.as_str()))
            .or_insert(p);
    }
    for set in &c.endpoints {
        for e in &set.endpoints {
            let Some(t) = &e.target_ref else { continue };
            if t.kind.as_deref() != Some("Pod") {
                continue;
            }
            let ns = t.namespace.as_deref().unwrap_or(&set.key.namespace);
            let Some(name) = t.name.as_deref() else {
                continue;
            };
            if let Some(p) = pods.get(&(ns, name)) {
                if !p.pod_ips.is_empty()
                    && !e
                        .addresses
                        .iter()
                        .all(|a| p.pod_ips.contains(a) || p.host_ip == Some(*a))
                {
                    out.push(ModelFinding {
                        kind: "endpoint-pod-ip-mismatch",
                        message: format!(
                            "endpoint {:?} of {} points at pod {ns}/{name}, whose IPs are {:?}",
                            e.addresses, set.key, p.pod_ips
                        ),
                        places: vec![place(&e.source), place(&p.source)],
                        affected: std::iter::once(format!("endpoints {}", set.key))
                            .chain(std::iter::once(format!("Pod {ns}/{name}")))
                            .chain(e.addresses.iter().map(|a| format!("IP {a}")))
                            .collect(),
                    });
                }
            }
        }
    }
}

/// The severity, explanation and fix of a contradiction, for `kubepath check`.
pub fn to_finding(f: ModelFinding) -> super::Finding {
    use super::{Finding, FindingFix, Severity};
    let (severity, explanation, fix) = match f.kind {
        "duplicate-ip" => (
            Severity::Error,
            "Two hosts answering ARP/ND for one address split its traffic unpredictably: replies and new connections reach whichever answered last.",
            "Give each node its own address (fix the node's network configuration or the Node object) and flush the neighbour caches of the routers on that subnet.",
        ),
        "pod-ip-on-no-node" => (
            Severity::Warning,
            "No node routes the pod's subnet, so traffic to this pod has nowhere to go (or the snapshot misses the node that holds it).",
            "Collect the node that runs the pod (nodes/<node>/), or recreate the pod so the CNI assigns an address from its node's block.",
        ),
        "pod-ip-on-other-node" => (
            Severity::Error,
            "Traffic for the pod is routed to another node than the one it runs on; connections to it fail or reach a stale address.",
            "Recreate the pod (the CNI assigns an address of its node's block) and release the stale block route on the other node.",
        ),
        "pod-on-unknown-node" => (
            Severity::Warning,
            "The pod's node is not among the Node objects read: its routing and NAT cannot be simulated.",
            "Add the node's Node object (kubectl get nodes -o yaml) and its nodes/<node>/ directory to the snapshot.",
        ),
        "ingress-backend-missing" => (
            Severity::Error,
            "ingress-nginx answers 503 for this host and path: the backend Service does not exist in the Ingress's namespace.",
            "Create the Service in the Ingress's namespace, or point the Ingress at an existing Service (backends are namespace-local).",
        ),
        "ingress-backend-port-missing" => (
            Severity::Error,
            "ingress-nginx answers 503 for this host and path: the Service has no such port.",
            "Use one of the Service's ports (number or name) in the Ingress backend, or add the port to the Service.",
        ),
        "selector-matches-no-pod" => (
            Severity::Error,
            "The Service's selector matches no pod of its namespace, so it has no endpoints and connections to it fail.",
            "Correct the selector (or the pods' labels) so they match; selectors only match pods of the Service's namespace.",
        ),
        "lb-ip-in-no-pool" => (
            Severity::Error,
            "No speaker announces an address outside every pool, so the LoadBalancer IP is unreachable from outside.",
            "Request an address inside a pool (spec.loadBalancerIP or the pool annotation), or add a pool that covers it.",
        ),
        "lb-route-without-service" => (
            Severity::Warning,
            "A router still forwards a load-balancer address nobody owns: a stale announcement (or a Service missing from the snapshot) that black-holes its traffic.",
            "Find the speaker that still announces it (or add the Service to the snapshot); clear the BGP session or restart the stale speaker.",
        ),
        "endpoint-pod-ip-mismatch" => (
            Severity::Warning,
            "kube-proxy sends traffic to the endpoint's address, which is not the pod's: stale endpoints, or a snapshot taken at different times.",
            "Re-collect the Endpoints/EndpointSlices and pods together; if it persists, restart the endpoint controller's reconciliation (delete the stale EndpointSlice).",
        ),
        _ => (Severity::Warning, "", ""),
    };
    Finding {
        code: f.kind,
        severity,
        title: f.message,
        explanation: explanation.to_string(),
        evidence: f.places,
        affected: f.affected,
        fixes: if fix.is_empty() {
            Vec::new()
        } else {
            vec![FindingFix::advice(fix)]
        },
        share: 0.0,
    }
}
