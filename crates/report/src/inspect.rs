//! `kubepath snapshot inspect` output: what was read, counts, load-balancer configuration,
//! routers, DNS chains, findings (contradictions, each citing both places) and diagnostics.
//!
//! Schema `kubepath.inspect/v1` (docs/inspect-json.md). The report never reaches into ingest:
//! the CLI hands the file list and diagnostics over as [`InspectInput`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use kubepath_model::k8s::ServiceType;
use kubepath_model::net::DEFAULT_VRF;
use kubepath_model::Model;
use serde::Serialize;

pub const SCHEMA: &str = "kubepath.inspect/v1";

/// One file of the snapshot, as the loader reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    /// Format recognised; `null` when not read.
    pub format: Option<String>,
    pub objects: Vec<String>,
    /// Why the file was skipped on purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// One diagnostic.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiagEntry {
    /// `error`, `warning` or `note`.
    pub severity: String,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// What the loader hands over besides the model.
#[derive(Debug, Clone, Default)]
pub struct InspectInput {
    pub files: Vec<FileEntry>,
    pub diagnostics: Vec<DiagEntry>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Node objects read.
    pub nodes: usize,
    /// `nodes/<name>/` directories read.
    pub node_dirs: usize,
    pub speaker_nodes: usize,
    pub pods: usize,
    pub ingress_controller_pods: usize,
    pub services_by_type: BTreeMap<String, usize>,
    pub load_balancer_ips: usize,
    pub endpoint_sets: usize,
    pub ingresses: usize,
    pub ingress_hosts: usize,
    pub pools: usize,
    pub peers: usize,
    pub routers: usize,
    pub vrfs: usize,
    pub dns_names: usize,
    pub nginx_confs: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LbIp {
    pub service: String,
    pub ip: IpAddr,
    pub pool: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PoolDto {
    pub name: String,
    pub addresses: Vec<String>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    /// `bgp`, `l2`, `bgp+l2` or `none` (from the advertisements covering it).
    pub mode: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerDto {
    pub name: Option<String>,
    pub address: IpAddr,
    pub peer_asn: u32,
    pub my_asn: u32,
    pub hold_time: Option<String>,
    pub bfd: Option<String>,
    pub node_selectors: Vec<String>,
    /// ECFE `my-address-pools`; `null` = every pool.
    pub my_address_pools: Option<Vec<String>>,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LoadBalancerDto {
    /// Where the configuration came from: `{flavor, source}`.
    pub configs: Vec<BTreeMap<String, String>>,
    pub pools: Vec<PoolDto>,
    pub peers: Vec<PeerDto>,
    pub speaker_nodes: Vec<String>,
    /// True when no speaker pod was found and every node is assumed to run one.
    pub speakers_assumed: bool,
    pub speaker_lb_class: Option<String>,
    pub ignore_exclude_lb: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VrfDto {
    pub name: String,
    pub bgp_prefixes: usize,
    pub bgp_source: Option<String>,
    /// For each LoadBalancer IP of the cluster found in this VRF's BGP table: the paths the
    /// router forwards over (best + ECMP multipath).
    pub lb_prefixes: Vec<LbPrefixDto>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LbPrefixDto {
    pub prefix: String,
    pub paths: usize,
    pub ecmp_next_hops: Vec<IpAddr>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouterDto {
    pub name: String,
    pub interfaces: Vec<String>,
    pub vrfs: Vec<VrfDto>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DnsChainDto {
    pub name: String,
    /// Names followed through CNAMEs, starting with `name`.
    pub chain: Vec<String>,
    pub addresses: Vec<IpAddr>,
    /// Services whose LoadBalancer IP the name resolves to.
    pub load_balancer_services: Vec<String>,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Stable code: `duplicate-ip`, `pod-ip-on-no-node`, `pod-ip-on-other-node`,
    /// `ingress-backend-missing`, `ingress-backend-port-missing`, `selector-matches-no-pod`,
    /// `lb-ip-in-no-pool`, `pod-on-unknown-node`, `lb-route-without-service`,
    /// `endpoint-pod-ip-mismatch`.
    pub kind: String,
    pub message: String,
    /// `file:line` of every place involved.
    pub places: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InspectReport {
    pub schema: &'static str,
    pub files: Vec<FileEntry>,
    pub counts: Counts,
    pub load_balancer_ips: Vec<LbIp>,
    pub ingress_controller_pods: Vec<String>,
    pub ingress_hosts: Vec<String>,
    pub load_balancer: LoadBalancerDto,
    pub routers: Vec<RouterDto>,
    pub dns: Vec<DnsChainDto>,
    pub findings: Vec<Finding>,
    pub diagnostics: Vec<DiagEntry>,
}

/// Build the report.
pub fn inspect(model: &Model, input: InspectInput) -> InspectReport {
    let c = &model.cluster;
    let lb = &c.lb;
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for s in c.services.values() {
        *by_type.entry(s.type_.to_string()).or_default() += 1;
    }
    let pool_of = |ip: IpAddr| {
        lb.pools
            .iter()
            .find(|p| p.contains(ip))
            .map(|p| p.name.clone())
    };
    let mut lb_ips = Vec::new();
    for s in c.services.values() {
        if s.type_ == ServiceType::LoadBalancer {
            for ip in s.lb_ingress_ips() {
                lb_ips.push(LbIp {
                    service: s.key.to_string(),
                    ip,
                    pool: pool_of(ip),
                });
            }
        }
    }
    // The controllers the ingress stage asks (one rule of recognition, in sim).
    let ic_pods: Vec<String> = kubepath_sim::ingress::controllers(model)
        .into_iter()
        .filter_map(|c| c.pod.map(|(ns, name)| format!("{ns}/{name}")))
        .collect();
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    for i in &c.ingresses {
        for r in &i.rules {
            if let Some(h) = &r.host {
                hosts.insert(h.clone());
            }
        }
    }
    let speaker_nodes: Vec<String> = if lb.speakers.assumed_all_nodes {
        // No speaker pod: every node known from Node objects or node directories.
        let mut all: BTreeSet<String> = c.nodes.keys().cloned().collect();
        all.extend(model.nodes.keys().cloned());
        all.into_iter().collect()
    } else if lb.is_configured() || !lb.speakers.pods.is_empty() {
        c.speaker_nodes().into_iter().map(str::to_string).collect()
    } else {
        Vec::new()
    };
    let mode_of = |p: &kubepath_model::k8s::Pool| {
        let covers = |pools: &[String], sels: &[kubepath_model::k8s::LabelSelector]| {
            (pools.is_empty() && sels.is_empty())
                || pools.contains(&p.name)
                || sels.iter().any(|s| s.matches(&p.labels))
        };
        let bgp = lb
            .bgp_advertisements
            .iter()
            .any(|a| covers(&a.pools, &a.pool_selectors));
        let l2 = lb
            .l2_advertisements
            .iter()
            .any(|a| covers(&a.pools, &a.pool_selectors));
        match (bgp, l2) {
            (true, true) => "bgp+l2",
            (true, false) => "bgp",
            (false, true) => "l2",
            _ => "none",
        }
        .to_string()
    };
    let lbdto = LoadBalancerDto {
        configs: lb
            .configs
            .iter()
            .map(|(f, s)| {
                BTreeMap::from([
                    ("flavor".to_string(), f.to_string()),
                    ("source".to_string(), s.to_string()),
                ])
            })
            .collect(),
        pools: lb
            .pools
            .iter()
            .map(|p| PoolDto {
                name: p.name.clone(),
                addresses: p.ranges.iter().map(|r| r.text.clone()).collect(),
                auto_assign: p.auto_assign,
                avoid_buggy_ips: p.avoid_buggy_ips,
                mode: mode_of(p),
                source: p.source.to_string(),
            })
            .collect(),
        peers: lb
            .peers
            .iter()
            .map(|p| PeerDto {
                name: p.name.clone(),
                address: p.address,
                peer_asn: p.peer_asn,
                my_asn: p.my_asn,
                hold_time: p.hold_time.clone(),
                bfd: p.bfd.as_ref().map(|b| {
                    let mut parts = Vec::new();
                    if let Some(x) = &b.profile {
                        parts.push(format!("profile {x}"));
                    }
                    if let Some(x) = b.min_rx {
                        parts.push(format!("min-rx {x}ms"));
                    }
                    if let Some(x) = b.min_tx {
                        parts.push(format!("min-tx {x}ms"));
                    }
                    if let Some(x) = b.multiplier {
                        parts.push(format!("multiplier {x}"));
                    }
                    parts.join(", ")
                }),
                node_selectors: p.node_selectors.iter().map(|s| s.to_string()).collect(),
                my_address_pools: p.my_address_pools.clone(),
                source: p.source.to_string(),
            })
            .collect(),
        speaker_nodes: speaker_nodes.clone(),
        speakers_assumed: lb.speakers.assumed_all_nodes,
        speaker_lb_class: lb.speakers.lb_class.clone(),
        ignore_exclude_lb: lb.speakers.ignore_exclude_lb,
    };
    // Routers.
    let lb_prefixes: BTreeSet<kubepath_model::ipnet::IpNet> = lb_ips
        .iter()
        .map(|l| kubepath_model::ipnet::IpNet::from(l.ip))
        .collect();
    let mut vrf_names: BTreeSet<String> = BTreeSet::new();
    let routers: Vec<RouterDto> = model
        .routers
        .values()
        .map(|r| RouterDto {
            name: r.name.clone(),
            interfaces: r
                .interfaces
                .iter()
                .map(|i| {
                    let addrs: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
                    format!(
                        "{} (vrf {}){}{}",
                        i.name,
                        i.vrf.as_deref().unwrap_or(DEFAULT_VRF),
                        if addrs.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", addrs.join(" "))
                        },
                        if i.anycast_addresses.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " anycast {}",
                                i.anycast_addresses
                                    .iter()
                                    .map(|a| a.to_string())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            )
                        }
                    )
                })
                .collect(),
            vrfs: r
                .vrfs
                .iter()
                .map(|(name, v)| {
                    vrf_names.insert(name.clone());
                    VrfDto {
                        name: name.clone(),
                        bgp_prefixes: v.bgp.len(),
                        bgp_source: v.bgp_source.as_ref().map(|s| s.to_string()),
                        lb_prefixes: lb_prefixes
                            .iter()
                            .filter_map(|p| {
                                let route = r.bgp_route(name, p)?;
                                let fwd = route.forwarding_paths(false);
                                Some(LbPrefixDto {
                                    prefix: p.to_string(),
                                    paths: route.paths.len(),
                                    ecmp_next_hops: fwd.iter().map(|x| x.next_hop).collect(),
                                })
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    // DNS chains: every owner name with an address or CNAME record.
    let mut names: BTreeSet<String> = BTreeSet::new();
    for r in &model.dns.records {
        names.insert(r.name.clone());
    }
    let dns: Vec<DnsChainDto> = names
        .iter()
        .filter_map(|n| {
            let res = model.dns.resolve(n);
            if res.chain.is_empty() && res.addresses.is_empty() {
                return None;
            }
            let mut chain = vec![n.clone()];
            for r in &res.chain {
                if let kubepath_model::dns::RData::Cname(t) = &r.data {
                    chain.push(t.clone());
                }
            }
            let addresses: Vec<IpAddr> = res
                .addresses
                .iter()
                .filter_map(|r| match &r.data {
                    kubepath_model::dns::RData::A(a) => Some(IpAddr::V4(*a)),
                    kubepath_model::dns::RData::Aaaa(a) => Some(IpAddr::V6(*a)),
                    _ => None,
                })
                .collect();
            let mut sources: Vec<String> = res
                .chain
                .iter()
                .chain(res.addresses.iter())
                .map(|r| r.source.to_string())
                .collect();
            sources.dedup();
            Some(DnsChainDto {
                name: n.clone(),
                chain,
                load_balancer_services: lb_ips
                    .iter()
                    .filter(|l| addresses.contains(&l.ip))
                    .map(|l| l.service.clone())
                    .collect(),
                addresses,
                sources,
            })
        })
        .collect();
    let counts = Counts {
        nodes: c.nodes.len(),
        node_dirs: model.nodes.len(),
        speaker_nodes: speaker_nodes.len(),
        pods: c.pods.len(),
        ingress_controller_pods: ic_pods.len(),
        services_by_type: by_type,
        load_balancer_ips: lb_ips.len(),
        endpoint_sets: c.endpoints.len(),
        ingresses: c.ingresses.len(),
        ingress_hosts: hosts.len(),
        pools: lb.pools.len(),
        peers: lb.peers.len(),
        routers: model.routers.len(),
        vrfs: vrf_names.len(),
        dns_names: names.len(),
        nginx_confs: model.nginx.len(),
    };
    InspectReport {
        schema: SCHEMA,
        files: input.files,
        counts,
        load_balancer_ips: lb_ips,
        ingress_controller_pods: ic_pods,
        ingress_hosts: hosts.into_iter().collect(),
        load_balancer: lbdto,
        routers,
        dns,
        findings: findings(model),
        diagnostics: input.diagnostics,
    }
}

/// Contradictions in the model, each citing every place involved (computed once, in
/// `kubepath_sim::check::consistency`; `kubepath check` reports the same findings).
pub fn findings(model: &Model) -> Vec<Finding> {
    kubepath_sim::check::consistency::findings(model)
        .into_iter()
        .map(|f| Finding {
            kind: f.kind.to_string(),
            message: f.message,
            places: f.places,
        })
        .collect()
}

/// Human-readable rendering.
pub fn render_text(r: &InspectReport) -> String {
    crate::escape_controls(&render_text_raw(&crate::escaped(r))).into_owned()
}

fn render_text_raw(r: &InspectReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Files ({}):", r.files.len());
    for f in &r.files {
        match (&f.format, &f.skipped) {
            (Some(fmt), _) => {
                let objs = if f.objects.len() > 6 {
                    format!(
                        "{}, ... ({} objects)",
                        f.objects[..5].join(", "),
                        f.objects.len()
                    )
                } else {
                    f.objects.join(", ")
                };
                let _ = writeln!(o, "  {}  [{}]  {}", f.path, fmt, objs);
            }
            (None, Some(why)) => {
                let _ = writeln!(o, "  {}  [skipped: {}]", f.path, why);
            }
            (None, None) => {
                let _ = writeln!(o, "  {}  [not recognised]", f.path);
            }
        }
    }
    let c = &r.counts;
    let _ = writeln!(o, "\nCounts:");
    let _ = writeln!(
        o,
        "  nodes: {} (node directories: {})",
        c.nodes, c.node_dirs
    );
    let _ = writeln!(o, "  speaker nodes: {}", c.speaker_nodes);
    let _ = writeln!(
        o,
        "  pods: {} (ingress controller pods: {})",
        c.pods, c.ingress_controller_pods
    );
    let _ = writeln!(o, "  services: {}", services_line(&c.services_by_type));
    let _ = writeln!(o, "  load-balancer IPs: {}", c.load_balancer_ips);
    let _ = writeln!(o, "  endpoint sets: {}", c.endpoint_sets);
    let _ = writeln!(
        o,
        "  ingresses: {} (hosts: {})",
        c.ingresses, c.ingress_hosts
    );
    let _ = writeln!(o, "  pools: {}, peers: {}", c.pools, c.peers);
    let _ = writeln!(o, "  routers: {}, VRFs: {}", c.routers, c.vrfs);
    let _ = writeln!(
        o,
        "  DNS names: {}, nginx.conf files: {}",
        c.dns_names, c.nginx_confs
    );
    if !r.load_balancer_ips.is_empty() {
        let _ = writeln!(o, "\nLoadBalancer IPs:");
        for l in &r.load_balancer_ips {
            let _ = writeln!(
                o,
                "  {}  {}  pool {}",
                l.ip,
                l.service,
                l.pool.as_deref().unwrap_or("<none>")
            );
        }
    }
    if !r.ingress_controller_pods.is_empty() {
        let _ = writeln!(
            o,
            "\nIngress controller pods: {}",
            r.ingress_controller_pods.join(", ")
        );
    }
    if !r.ingress_hosts.is_empty() {
        let _ = writeln!(o, "Ingress hosts: {}", r.ingress_hosts.join(", "));
    }
    let lb = &r.load_balancer;
    if !lb.configs.is_empty() {
        let _ = writeln!(o, "\nLoad balancer:");
        for cfg in &lb.configs {
            let _ = writeln!(
                o,
                "  {} at {}",
                cfg.get("flavor").map(String::as_str).unwrap_or(""),
                cfg.get("source").map(String::as_str).unwrap_or("")
            );
        }
        for p in &lb.pools {
            let _ = writeln!(
                o,
                "  pool {}: {} ({}, auto-assign {}){}",
                p.name,
                p.addresses.join(", "),
                p.mode,
                p.auto_assign,
                if p.avoid_buggy_ips {
                    ", avoid-buggy-ips"
                } else {
                    ""
                }
            );
        }
        for p in &lb.peers {
            let _ = writeln!(
                o,
                "  peer {} asn {} (my asn {}){}{}{}",
                p.address,
                p.peer_asn,
                p.my_asn,
                p.hold_time
                    .as_ref()
                    .map(|h| format!(" hold-time {h}"))
                    .unwrap_or_default(),
                p.bfd
                    .as_ref()
                    .map(|b| format!(" bfd [{b}]"))
                    .unwrap_or_default(),
                p.my_address_pools
                    .as_ref()
                    .map(|v| format!(" pools [{}]", v.join(", ")))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            o,
            "  speakers on {} node(s){}: {}",
            lb.speaker_nodes.len(),
            if lb.speakers_assumed {
                " (assumed: no speaker pod in the snapshot)"
            } else {
                ""
            },
            lb.speaker_nodes.join(", ")
        );
    }
    if !r.routers.is_empty() {
        let _ = writeln!(o, "\nRouters:");
        for rt in &r.routers {
            let _ = writeln!(o, "  {}", rt.name);
            for i in &rt.interfaces {
                let _ = writeln!(o, "    interface {i}");
            }
            for v in &rt.vrfs {
                let _ = writeln!(o, "    vrf {}: {} BGP prefixes", v.name, v.bgp_prefixes);
                for p in &v.lb_prefixes {
                    let _ = writeln!(
                        o,
                        "      {}: {} paths, {} ECMP next hops ({})",
                        p.prefix,
                        p.paths,
                        p.ecmp_next_hops.len(),
                        p.ecmp_next_hops
                            .iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
    }
    if !r.dns.is_empty() {
        let _ = writeln!(o, "\nDNS:");
        for d in &r.dns {
            let _ = writeln!(
                o,
                "  {} -> {}{}",
                d.chain.join(" -> "),
                d.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if d.load_balancer_services.is_empty() {
                    String::new()
                } else {
                    format!(
                        "  (LoadBalancer of {})",
                        d.load_balancer_services.join(", ")
                    )
                }
            );
        }
    }
    let _ = writeln!(o, "\nFindings ({}):", r.findings.len());
    for f in &r.findings {
        let _ = writeln!(o, "  [{}] {}", f.kind, f.message);
        for p in &f.places {
            let _ = writeln!(o, "      at {p}");
        }
    }
    let _ = writeln!(o, "\nDiagnostics ({}):", r.diagnostics.len());
    for d in &r.diagnostics {
        let pos = match (d.line, d.column) {
            (0, _) => d.file.clone(),
            (l, 0) => format!("{}:{l}", d.file),
            (l, c) => format!("{}:{l}:{c}", d.file),
        };
        let _ = writeln!(o, "  {}: {}: {}", d.severity, pos, d.message);
    }
    o
}

// Single-line strings for the text renderers (`crate::EscapeData`).
crate::escape_fields!(FileEntry {
    path,
    format,
    objects,
    skipped
});
crate::escape_fields!(DiagEntry {
    severity,
    file,
    line,
    column,
    message
});
crate::escape_fields!(InspectInput { files, diagnostics });
crate::escape_fields!(Counts {
    nodes,
    node_dirs,
    speaker_nodes,
    pods,
    ingress_controller_pods,
    services_by_type,
    load_balancer_ips,
    endpoint_sets,
    ingresses,
    ingress_hosts,
    pools,
    peers,
    routers,
    vrfs,
    dns_names,
    nginx_confs
});
crate::escape_fields!(LbIp { service, ip, pool });
crate::escape_fields!(PoolDto {
    name,
    addresses,
    auto_assign,
    avoid_buggy_ips,
    mode,
    source
});
crate::escape_fields!(PeerDto {
    name,
    address,
    peer_asn,
    my_asn,
    hold_time,
    bfd,
    node_selectors,
    my_address_pools,
    source
});
crate::escape_fields!(LoadBalancerDto {
    configs,
    pools,
    peers,
    speaker_nodes,
    speakers_assumed,
    speaker_lb_class,
    ignore_exclude_lb
});
crate::escape_fields!(VrfDto {
    name,
    bgp_prefixes,
    bgp_source,
    lb_prefixes
});
crate::escape_fields!(LbPrefixDto {
    prefix,
    paths,
    ecmp_next_hops
});
crate::escape_fields!(RouterDto {
    name,
    interfaces,
    vrfs
});
crate::escape_fields!(DnsChainDto {
    name,
    chain,
    addresses,
    load_balancer_services,
    sources
});
crate::escape_fields!(Finding {
    kind,
    message,
    places
});
crate::escape_fields!(InspectReport {
    schema,
    files,
    counts,
    load_balancer_ips,
    ingress_controller_pods,
    ingress_hosts,
    load_balancer,
    routers,
    dns,
    findings,
    diagnostics
});

/// `2 ClusterIP, 1 LoadBalancer`, or `0` (not a blank) when there is none.
fn services_line<V: std::fmt::Display>(by_type: &BTreeMap<String, V>) -> String {
    if by_type.is_empty() {
        return "0".to_string();
    }
    by_type
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod services_line_tests {
    use super::*;

    /// Issue #11: `services:` was printed blank when there were none.
    #[test]
    fn no_services_is_zero_not_blank() {
        assert_eq!(services_line(&BTreeMap::<String, usize>::new()), "0");
        let m = BTreeMap::from([
            ("ClusterIP".to_string(), 2usize),
            ("LoadBalancer".to_string(), 1),
        ]);
        assert_eq!(services_line(&m), "2 ClusterIP, 1 LoadBalancer");
    }
}
