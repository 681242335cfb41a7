//! Load-balancer and fabric checks: the address pools (overlaps, pools nothing advertises),
//! the BGP peers the speakers are configured with (reachable from the nodes?), the paths the
//! routers of the snapshot hold for each LoadBalancer IP against the nodes that
//! [`crate::announce`] says announce it, and a Service's status against the address its
//! configuration asks for.
//!
//! MetalLB semantics followed (metallb/metallb `internal/config/config.go`):
//! - `poolsFor` refuses a configuration whose pools' CIDRs overlap ("CIDR %q in pool %q
//!   overlaps with already defined CIDR %q"); a range `a-b` is summarised into CIDRs first,
//!   so two ranges overlap exactly when they share an address.
//! - `setBGPAdvertisementsToPools` / `setL2AdvertisementsToPools`: an advertisement without
//!   `ipAddressPools` and without `ipAddressPoolSelectors` carries every pool ("No pool
//!   selector means select all pools"); otherwise the pools it names plus those its selectors
//!   match. A legacy ConfigMap pool carries its own advertisement (its `protocol`), which the
//!   reader turns into one of these.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kubepath_model::k8s::{AddrRange, LbFlavor, Peer, Pool, Service, ServiceType};
use kubepath_model::net::{NodeFact, RouteCoverage};
use kubepath_model::{Model, SourceRef};

use super::{Finding, FindingFix, Severity};
use crate::announce::{self, IpOrigin, Reason, ServiceAnnouncement};
use crate::trace::routing::{self, FlowL4, Hop, RouteFailure};

/// Every load-balancer and fabric finding (nothing without a load-balancer configuration).
pub fn check(model: &Model) -> Vec<Finding> {
    let mut out = Vec::new();
    if !model.cluster.lb.is_configured() {
        return out;
    }
    pool_overlaps(model, &mut out);
    foreign_pools(model, &mut out);
    config_invalid(model, &mut out);
    pools_not_advertised(model, &mut out);
    let anns = announce::announce(model, None);
    bgp_paths(model, &anns, &mut out);
    sharing_conflicts(model, &mut out);
    peers_unreachable(model, &anns, &mut out);
    status_mismatch(model, &mut out);
    out
}

fn s(src: &SourceRef) -> String {
    src.to_string()
}

/// Drops repeated entries, keeping the first of each.
fn uniq(v: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn ips_text(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The addresses two ranges share, as (first, last); `None` when disjoint or of different
/// families.
fn overlap(a: &AddrRange, b: &AddrRange) -> Option<(IpAddr, IpAddr)> {
    let v4 = a.first.is_ipv4();
    if [a.last, b.first, b.last].iter().any(|x| x.is_ipv4() != v4) {
        return None;
    }
    let lo = a.first.max(b.first);
    let hi = a.last.min(b.last);
    (lo <= hi).then_some((lo, hi))
}

fn range_text((lo, hi): (IpAddr, IpAddr)) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

fn pool_label(p: &Pool) -> String {
    match p.flavor {
        LbFlavor::MetallbCrd => format!("IPAddressPool `{}`", p.name),
        LbFlavor::MetallbConfigMap => format!("MetalLB ConfigMap pool `{}`", p.name),
        LbFlavor::Ecfe => format!("ECFE pool `{}`", p.name),
    }
}

/// `lb-pool-overlap`: two pools whose ranges share addresses.
fn pool_overlaps(model: &Model, out: &mut Vec<Finding>) {
    let pools = &model.cluster.lb.pools;
    // Inside one pool: `poolsFor` adds every CIDR of every pool to `allCIDRs` and compares
    // each new one with all before it, those of the same pool included, so two addresses
    // entries of one pool that overlap (or one written twice) refuse the configuration too.
    for p in pools {
        let mut shared: Vec<String> = Vec::new();
        for (i, ra) in p.ranges.iter().enumerate() {
            for rb in p.ranges.iter().skip(i + 1) {
                if let Some(o) = overlap(ra, rb) {
                    shared.push(format!("{} ({} and {})", range_text(o), ra.text, rb.text));
                }
            }
        }
        if shared.is_empty() {
            continue;
        }
        out.push(Finding {
            code: "lb-pool-overlap",
            severity: Severity::Error,
            title: format!(
                "address pool `{}` overlaps itself: {}",
                p.name,
                shared.join(", ")
            ),
            explanation: format!(
                "Two addresses entries of {} share addresses. MetalLB compares every CIDR with every CIDR defined before it, those of the same pool included (internal/config/config.go poolsFor: \"CIDR ... in pool ... overlaps with already defined CIDR ...\"), and refuses the whole {} configuration: the controller and the speakers keep the configuration they loaded before (none after a restart), so changes to pools, peers and advertisements are not applied and new Services may get no address.",
                pool_label(p),
                p.flavor
            ),
            evidence: vec![s(&p.source)],
            affected: vec![pool_label(p)],
            fixes: vec![FindingFix::advice(format!(
                "Remove the duplicate or overlapping entry from the pool's addresses. `kubectl -n {} logs deploy/controller` shows the rejected configuration.",
                p.namespace.as_deref().unwrap_or("metallb-system")
            ))],
            share: 0.0,
        });
    }
    for (i, a) in pools.iter().enumerate() {
        for b in pools.iter().skip(i + 1) {
            let mut shared: Vec<String> = Vec::new();
            for ra in &a.ranges {
                for rb in &b.ranges {
                    if let Some(o) = overlap(ra, rb) {
                        shared.push(format!(
                            "{} ({} of `{}` and {} of `{}`)",
                            range_text(o),
                            ra.text,
                            a.name,
                            rb.text,
                            b.name
                        ));
                    }
                }
            }
            if shared.is_empty() {
                continue;
            }
            let why = if a.flavor == b.flavor {
                format!(
                    "MetalLB refuses the whole {} configuration when pools overlap (\"CIDR ... in pool ... overlaps with already defined CIDR ...\"): the controller and the speakers keep the configuration they loaded before (none after a restart), so changes to pools, peers and advertisements are not applied and new Services may get no address.",
                    a.flavor
                )
            } else {
                format!(
                    "The pools come from two load-balancer configurations ({} and {}): if both are live, two controllers hand out the same addresses, so two Services can get one IP and the routers a route to each; if one of them is a leftover, it misleads people and tools.",
                    a.flavor, b.flavor
                )
            };
            out.push(Finding {
                code: "lb-pool-overlap",
                severity: Severity::Error,
                title: format!(
                    "address pools `{}` and `{}` overlap: {}",
                    a.name,
                    b.name,
                    shared.join(", ")
                ),
                explanation: format!("{} and {} share addresses. {why}", pool_label(a), pool_label(b)),
                evidence: vec![s(&a.source), s(&b.source)],
                affected: vec![pool_label(a), pool_label(b)],
                fixes: vec![FindingFix::advice(format!(
                    "Shrink or split one of the pools so that no address is in both (and keep the addresses Services already hold in the pool they came from); remove a leftover configuration. `kubectl -n {} logs deploy/controller` shows the rejected configuration.",
                    a.namespace.as_deref().unwrap_or("metallb-system")
                ))],
                share: 0.0,
            });
        }
    }
}

/// `lb-pool-ignored`: an IPAddressPool outside MetalLB's namespace, which MetalLB does not read
/// (the reader leaves it out of every other check and of `kubepath announce`).
fn foreign_pools(model: &Model, out: &mut Vec<Finding>) {
    for (p, ns) in &model.cluster.lb.foreign_pools {
        out.push(Finding {
            code: "lb-pool-ignored",
            severity: Severity::Info,
            title: format!(
                "IPAddressPool `{}` in namespace {} is ignored: MetalLB reads its namespace {ns} only",
                p.name,
                p.namespace.as_deref().unwrap_or("")
            ),
            explanation: format!(
                "MetalLB's controller and speakers read their configuration (IPAddressPools, peers, advertisements) from the namespace they run in ({ns}: where the MetalLB pods of the snapshot run). {} is elsewhere, so it hands out no address and is left out of the other checks (overlaps, advertisements) and of `kubepath announce`.",
                pool_label(p)
            ),
            evidence: vec![s(&p.source)],
            affected: vec![pool_label(p)],
            fixes: vec![FindingFix::advice(format!(
                "Move the pool to namespace {ns} if it is meant to be used, else delete it."
            ))],
            share: 0.0,
        });
    }
}

/// `lb-config-invalid`: a BGP advertisement MetalLB refuses ([`announce::invalid_bgp_ads`]:
/// an aggregation length out of range, or shorter than a prefix of a pool it carries); MetalLB
/// then refuses the whole configuration.
fn config_invalid(model: &Model, out: &mut Vec<Finding>) {
    let lb = &model.cluster.lb;
    for (ad, why) in announce::invalid_bgp_ads(lb) {
        let name = ad.name.as_deref().unwrap_or("(legacy)");
        let mut evidence = vec![s(&ad.source)];
        evidence.extend(
            lb.pools
                .iter()
                .filter(|p| announce::ad_covers_pool(&ad.pools, &ad.pool_selectors, p))
                .map(|p| s(&p.source)),
        );
        uniq(&mut evidence);
        out.push(Finding {
            code: "lb-config-invalid",
            severity: Severity::Error,
            title: format!("MetalLB refuses BGPAdvertisement `{name}`: {why}"),
            explanation:                 "MetalLB validates every advertisement against the pools it carries (internal/config/config.go validateBGPAdvPerPool) and refuses the whole configuration when one is invalid: the controller and the speakers keep the configuration they loaded before (none after a restart), so no change to pools, peers or advertisements is applied and new Services may get no address. What the speakers announce now is not in the snapshot: the routers' BGP paths are not compared with it (no bgp-path-missing / bgp-path-extra).".to_string(),
            evidence,
            affected: vec![format!("BGPAdvertisement {name}")],
            fixes: vec![FindingFix::advice(format!(
                "Set the advertisement's aggregationLength (aggregationLengthV6) to at most 32 (128) and no shorter than the prefix length of the pool's CIDRs, or remove it. `kubectl -n {} logs deploy/controller` shows the rejected configuration.",
                lb.pools.first().and_then(|p| p.namespace.as_deref()).unwrap_or("metallb-system")
            ))],
            share: 0.0,
        });
    }
}

/// Whether a BGP advertisement of `pool` reaches at least one peer: a peer exists that the
/// advertisement names (or it names none) and that takes the pool (ECFE `my-address-pools`).
fn bgp_ad_has_peer(
    peers: &[Peer],
    ad: &kubepath_model::k8s::BgpAdvertisement,
    pool: &Pool,
) -> bool {
    peers.iter().any(|p| {
        let named = ad.peers.is_empty() || p.name.as_ref().is_some_and(|n| ad.peers.contains(n));
        let takes = p
            .my_address_pools
            .as_ref()
            .is_none_or(|pools| pools.contains(&pool.name));
        named && takes
    })
}

/// Services that hold (status) or ask for (spec.loadBalancerIP, annotations) an address of
/// `pool`, or name it in the address-pool annotation.
fn services_of_pool<'a>(model: &'a Model, pool: &Pool) -> Vec<(&'a Service, String)> {
    // With overlapping pools (lb-pool-overlap), an address counts for the first pool that
    // holds it, as announce's assignment does.
    let ours = |ip: &IpAddr| {
        model
            .cluster
            .lb
            .pools
            .iter()
            .find(|p| p.contains(*ip))
            .is_some_and(|p| std::ptr::eq(p, pool))
    };
    let mut out = Vec::new();
    for svc in model.cluster.services.values() {
        if svc.type_ != ServiceType::LoadBalancer {
            continue;
        }
        let status: Vec<IpAddr> = svc.lb_ingress_ips().into_iter().filter(ours).collect();
        if !status.is_empty() {
            out.push((svc, format!("holds {}", ips_text(&status))));
            continue;
        }
        let (requested, how) = announce::requested_ips(svc);
        let req: Vec<IpAddr> = requested.into_iter().filter(ours).collect();
        if !req.is_empty() {
            out.push((svc, format!("requests {} ({how})", ips_text(&req))));
            continue;
        }
        if svc.lb_ingress_ips().is_empty()
            && announce::pool_annotation(svc).is_some_and(|(_, name)| name == pool.name)
        {
            out.push((svc, "names the pool in its address-pool annotation".into()));
        }
    }
    out
}

/// `lb-pool-not-advertised`: a pool that no BGP or L2 advertisement carries (or whose BGP
/// advertisements reach no peer), so its addresses are never announced.
fn pools_not_advertised(model: &Model, out: &mut Vec<Finding>) {
    let lb = &model.cluster.lb;
    for pool in &lb.pools {
        let l2: Vec<_> = lb
            .l2_advertisements
            .iter()
            .filter(|a| announce::ad_covers_pool(&a.pools, &a.pool_selectors, pool))
            .collect();
        if !l2.is_empty() {
            continue;
        }
        let bgp: Vec<_> = lb
            .bgp_advertisements
            .iter()
            .filter(|a| announce::ad_covers_pool(&a.pools, &a.pool_selectors, pool))
            .collect();
        if bgp.iter().any(|a| bgp_ad_has_peer(&lb.peers, a, pool)) {
            continue;
        }
        let mut evidence = vec![s(&pool.source)];
        let why = if bgp.is_empty() {
            match pool.flavor {
                LbFlavor::MetallbCrd => format!(
                    "No BGPAdvertisement or L2Advertisement names it, selects it by label, or carries every pool (one without ipAddressPools and ipAddressPoolSelectors); {} advertisement{} in the snapshot.",
                    lb.bgp_advertisements.len() + lb.l2_advertisements.len(),
                    plural(lb.bgp_advertisements.len() + lb.l2_advertisements.len())
                ),
                _ => "The legacy pool has no valid `protocol` (bgp or layer2), so it carries no advertisement.".to_string(),
            }
        } else {
            evidence.extend(bgp.iter().map(|a| s(&a.source)));
            evidence.extend(lb.peers.iter().map(|p| s(&p.source)));
            if lb.peers.is_empty() {
                "It is advertised in BGP only, but no BGP peer is configured, so no session carries it.".to_string()
            } else {
                let named: BTreeSet<&String> = bgp.iter().flat_map(|a| a.peers.iter()).collect();
                let bound: Vec<String> = lb
                    .peers
                    .iter()
                    .filter_map(|p| {
                        p.my_address_pools
                            .as_ref()
                            .map(|v| format!("{} takes [{}]", p, v.join(", ")))
                    })
                    .collect();
                format!(
                    "It is advertised in BGP only, but to no configured peer: {}{}.",
                    if named.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "its advertisements name peers [{}]; ",
                            named.into_iter().cloned().collect::<Vec<_>>().join(", ")
                        )
                    },
                    if bound.is_empty() {
                        format!(
                            "peers configured: {}",
                            lb.peers
                                .iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        format!("the peers are bound to other pools: {}", bound.join("; "))
                    }
                )
            }
        };
        let users = services_of_pool(model, pool);
        evidence.extend(users.iter().map(|(svc, _)| s(&svc.source)));
        let severity = if users.is_empty() {
            Severity::Warning
        } else {
            Severity::Error
        };
        out.push(Finding {
            code: "lb-pool-not-advertised",
            severity,
            title: format!(
                "address pool `{}` is not advertised: its addresses are never announced{}",
                pool.name,
                if users.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({} Service{} use{} it)",
                        users.len(),
                        plural(users.len()),
                        if users.len() == 1 { "s" } else { "" }
                    )
                }
            ),
            explanation: format!(
                "{}: {why} MetalLB still assigns its addresses, but no speaker announces them (neither a BGP route nor ARP/NDP answers), so they are unreachable from outside the nodes' subnet.{}",
                pool_label(pool),
                if users.is_empty() {
                    String::new()
                } else {
                    format!(
                        " Services: {}.",
                        users
                            .iter()
                            .map(|(svc, how)| format!("{} {how}", svc.key))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                }
            ),
            evidence,
            affected: std::iter::once(pool_label(pool))
                .chain(users.iter().map(|(svc, _)| format!("Service {}", svc.key)))
                .collect(),
            fixes: vec![FindingFix::advice(format!(
                "Add the pool to a BGPAdvertisement or L2Advertisement (spec.ipAddressPools: [{}]) whose peers exist, or remove the pool if it is not meant to be used.",
                pool.name
            ))],
            share: 0.0,
        });
    }
}

/// The node a router's next hop belongs to: its interfaces (`ip addr`), else its Node object's
/// addresses.
fn node_of_hop(model: &Model, hop: IpAddr) -> Option<String> {
    model.node_owning_ip(hop).map(str::to_string).or_else(|| {
        model
            .cluster
            .nodes
            .values()
            .find(|n| n.addresses().any(|a| *a == hop))
            .map(|n| n.name.clone())
    })
}

/// `bgp-path-missing` and `bgp-path-extra`: the routers' BGP paths for each LoadBalancer IP
/// against the nodes that should announce it to them (only where the router's BGP table of
/// that VRF is in the snapshot: [`announce`]'s router check).
fn bgp_paths(model: &Model, anns: &[ServiceAnnouncement], out: &mut Vec<Finding>) {
    // Only addresses in use (status): a predicted assignment is announced by nobody yet.
    let in_use: Vec<&ServiceAnnouncement> = anns
        .iter()
        .filter(|a| a.ip_origin == IpOrigin::Status)
        .collect();
    // Each path (router, vrf, prefix, next hop) is reported once, for the first Service.
    let mut done = ReportedPaths::new();
    for a in &in_use {
        let Some(rc) = &a.router_check else { continue };
        let Some(svc) = model.cluster.services.get(&a.service) else {
            continue;
        };
        // Services sharing an address (allow-shared-ip): a node announces it when any of
        // them wants it there.
        let sharing: Vec<&ServiceAnnouncement> = in_use
            .iter()
            .copied()
            .filter(|b| b.ips.iter().any(|ip| a.ips.contains(ip)))
            .collect();
        missing_paths(model, a, rc, &mut done, out);
        undecided_paths(a, rc, &mut done, out);
        extra_paths(model, a, svc, rc, &sharing, &mut done, out);
    }
}

/// The paths (router, vrf, prefix, next hop) already reported: each once, for the first Service.
type ReportedPaths = BTreeSet<(String, String, ipnet::IpNet, Option<IpAddr>)>;

/// `bgp-path-missing`: per (router, vrf), the paths the nodes should announce for Service `a`
/// that the router's table lacks.
fn missing_paths(
    model: &Model,
    a: &ServiceAnnouncement,
    rc: &announce::RouterCheck,
    done: &mut ReportedPaths,
    out: &mut Vec<Finding>,
) {
    let lb = &model.cluster.lb;
    let mut missing: BTreeMap<(String, String), Vec<&announce::RouterPath>> = BTreeMap::new();
    for m in &rc.missing {
        let (Some(_), Some(_)) = (m.next_hop, &m.node) else {
            // The node's address on the peer's subnet is not in the snapshot: its path
            // cannot be told apart (announce's notes say so).
            continue;
        };
        if !done.insert((m.router.clone(), m.vrf.clone(), m.prefix, m.next_hop)) {
            continue;
        }
        missing
            .entry((m.router.clone(), m.vrf.clone()))
            .or_default()
            .push(m);
    }
    for ((router, vrf), paths) in &missing {
        let nodes: BTreeSet<&str> = paths.iter().filter_map(|p| p.node.as_deref()).collect();
        let prefixes: BTreeSet<ipnet::IpNet> = paths.iter().map(|p| p.prefix).collect();
        let peer = paths.first().map(|p| p.peer);
        let table = model
            .routers
            .get(router)
            .and_then(|r| r.vrfs.get(vrf))
            .and_then(|v| v.bgp_source.clone());
        let mut evidence: Vec<String> = table.iter().map(s).collect();
        // The route's own lines, when the router has the prefix at all.
        if let Some(r) = model.routers.get(router) {
            for p in &prefixes {
                if let Some(route) = r.bgp_route(vrf, p) {
                    evidence.extend(route.paths.iter().map(|x| s(&x.source)).take(4));
                }
            }
        }
        if let Some(peer) = peer {
            evidence.extend(
                lb.peers
                    .iter()
                    .filter(|p| p.address == peer)
                    .map(|p| s(&p.source)),
            );
        }
        evidence.extend(a.pool_source.iter().map(s));
        evidence.push(s(&a.source));
        uniq(&mut evidence);
        let hops: Vec<String> = paths
            .iter()
            .map(|p| {
                format!(
                    "{} via {} ({})",
                    p.prefix,
                    p.next_hop.map(|h| h.to_string()).unwrap_or_default(),
                    p.node.as_deref().unwrap_or("?")
                )
            })
            .collect();
        out.push(Finding {
            code: "bgp-path-missing",
            severity: Severity::Error,
            title: format!(
                "{router} vrf {vrf} has no path to LoadBalancer IP {} of Service {} via {} node{} that should announce it",
                ips_text(&a.ips),
                a.service,
                nodes.len(),
                plural(nodes.len())
            ),
            explanation: format!(
                "The BGP table of {router} vrf {vrf} ({}) lacks {}. {} should announce {} to the peer {} ({}`kubepath announce` lists the expected paths), but the router did not learn it: the BGP session between the node and the router is down or not configured on the router, the router or the speaker filters the prefix (prefix list, route map, community), or the outputs were taken at different times. The router spreads the traffic over the remaining paths only (under externalTrafficPolicy Local, the endpoints on that node get none of it).",
                table.as_ref().map(s).unwrap_or_else(|| "not located".into()),
                hops.join(", "),
                nodes.iter().copied().collect::<Vec<_>>().join(", "),
                prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
                peer.map(|p| p.to_string()).unwrap_or_default(),
                a.pool.as_ref().map(|p| format!("pool `{p}`, mode {}; ", a.mode_name())).unwrap_or_default()
            ),
            evidence,
            affected: std::iter::once(format!("Service {}", a.service))
                .chain(nodes.iter().map(|n| format!("node {n}")))
                .chain(std::iter::once(format!("router {router} vrf {vrf}")))
                .collect(),
            fixes: vec![FindingFix::advice(format!(
                "Check the BGP session on {router} (`show bgp summary`/`show ip bgp neighbors` for the nodes' addresses) and the speaker's logs on {}; check inbound policies for the prefix; re-collect the router's table and the cluster together.",
                nodes.iter().copied().collect::<Vec<_>>().join(", ")
            ))],
            share: 0.0,
        });
    }
}

/// `bgp-path-undecided`: per (router, vrf), the expected paths not shown by a table that may
/// not list every path (lines skipped, truncated): at most an info naming where.
fn undecided_paths(
    a: &ServiceAnnouncement,
    rc: &announce::RouterCheck,
    done: &mut ReportedPaths,
    out: &mut Vec<Finding>,
) {
    let mut undecided: BTreeMap<(String, String), Vec<(&announce::RouterPath, &String)>> =
        BTreeMap::new();
    for (m, why) in &rc.undecided {
        if !done.insert((m.router.clone(), m.vrf.clone(), m.prefix, m.next_hop)) {
            continue;
        }
        undecided
            .entry((m.router.clone(), m.vrf.clone()))
            .or_default()
            .push((m, why));
    }
    for ((router, vrf), paths) in &undecided {
        let hops: Vec<String> = paths
            .iter()
            .map(|(p, _)| {
                format!(
                    "{} via {} ({})",
                    p.prefix,
                    p.next_hop.map(|h| h.to_string()).unwrap_or_default(),
                    p.node.as_deref().unwrap_or("?")
                )
            })
            .collect();
        let whys: BTreeSet<&String> = paths.iter().map(|(_, w)| *w).collect();
        let mut evidence: Vec<String> = whys
            .iter()
            .filter_map(|w| w.split(": ").next().map(str::to_string))
            .collect();
        evidence.push(s(&a.source));
        uniq(&mut evidence);
        out.push(Finding {
            code: "bgp-path-undecided",
            severity: Severity::Info,
            title: format!(
                "{router} vrf {vrf}: paths to LoadBalancer IP {} of Service {} not shown, but the table may be incomplete",
                ips_text(&a.ips),
                a.service
            ),
            explanation: format!(
                "The BGP table of {router} vrf {vrf} does not show {}, which `kubepath announce` expects; the table cannot be trusted to list every path ({}), so whether the path is missing is undecided.",
                hops.join(", "),
                whys.iter().map(|w| w.as_str()).collect::<Vec<_>>().join("; ")
            ),
            evidence,
            affected: vec![format!("Service {}", a.service), format!("router {router} vrf {vrf}")],
            fixes: vec![FindingFix::advice(format!(
                "Re-collect the BGP table of {router} completely (no pager, no truncation) and run the check again."
            ))],
            share: 0.0,
        });
    }
}

/// `bgp-path-extra`: per (router, vrf), a path via a node that should not announce to that
/// router; a node without a local endpoint under externalTrafficPolicy Local is
/// `lb-announced-without-local-endpoint`. `sharing`: the Services sharing an address with `a`
/// (allow-shared-ip), any of which may want a node to announce it.
fn extra_paths(
    model: &Model,
    a: &ServiceAnnouncement,
    svc: &Service,
    rc: &announce::RouterCheck,
    sharing: &[&ServiceAnnouncement],
    done: &mut ReportedPaths,
    out: &mut Vec<Finding>,
) {
    // Does `node` announce `prefix` to `peer`?
    let should = |node: &str, peer: IpAddr, prefix: &ipnet::IpNet| {
        sharing.iter().any(|b| {
            b.routes
                .get(&peer)
                .is_some_and(|v| v.iter().any(|r| r.node == node && r.prefix == *prefix))
        })
    };
    let mut extra: BTreeMap<(String, String), Vec<(&announce::RouterPath, String)>> =
        BTreeMap::new();
    for p in &rc.unexplained {
        let Some(hop) = p.next_hop else { continue };
        let Some(node) = p.node.clone().or_else(|| node_of_hop(model, hop)) else {
            continue;
        };
        if should(&node, p.peer, &p.prefix) {
            continue;
        }
        if matches!(
            a.not_announcing.get(&node),
            Some(Reason::NoLocalEndpoint(_))
        ) {
            continue;
        }
        if !done.insert((p.router.clone(), p.vrf.clone(), p.prefix, p.next_hop)) {
            continue;
        }
        extra
            .entry((p.router.clone(), p.vrf.clone()))
            .or_default()
            .push((p, node));
    }
    for ((router, vrf), paths) in &extra {
        let nodes: BTreeSet<&str> = paths.iter().map(|(_, n)| n.as_str()).collect();
        let mut evidence: Vec<String> = paths
            .iter()
            .filter_map(|(p, _)| p.source.as_ref().map(s))
            .collect();
        let mut why: Vec<String> = Vec::new();
        for n in &nodes {
            match a.not_announcing.get(*n).or(a.blocked.as_ref()) {
                Some(r) => {
                    why.push(format!("{n}: {r}"));
                    match r {
                        Reason::NetworkUnavailable(src) | Reason::ExcludedByLabel(src) => {
                            evidence.push(s(src))
                        }
                        Reason::AdvertisementNodeSelectors(srcs) => {
                            evidence.extend(srcs.iter().map(s))
                        }
                        _ => {}
                    }
                }
                None => why.push(format!(
                    "{n}: announces the address, but not to this router (peer selectors or advertisement peers)"
                )),
            }
        }
        evidence.push(s(&svc.source));
        uniq(&mut evidence);
        let hops: Vec<String> = paths
            .iter()
            .map(|(p, n)| {
                format!(
                    "{} via {} ({n})",
                    p.prefix,
                    p.next_hop.map(|h| h.to_string()).unwrap_or_default()
                )
            })
            .collect();
        out.push(Finding {
            code: "bgp-path-extra",
            severity: Severity::Warning,
            title: format!(
                "{router} vrf {vrf} has a path to LoadBalancer IP {} of Service {} via {} node{} that should not announce it",
                ips_text(&a.ips),
                a.service,
                nodes.len(),
                plural(nodes.len())
            ),
            explanation: format!(
                "The BGP table of {router} vrf {vrf} holds {}, but by the load-balancer configuration {} should not announce it to this router ({}). A stale announcement (a speaker that did not withdraw, graceful-restart leftovers), a speaker running with another configuration than the snapshot's, or outputs taken at different times; the router still sends that share of the traffic there.",
                hops.join(", "),
                if nodes.len() == 1 { "that node" } else { "those nodes" },
                why.join("; ")
            ),
            evidence,
            affected: std::iter::once(format!("Service {}", a.service))
                .chain(nodes.iter().map(|n| format!("node {n}")))
                .chain(std::iter::once(format!("router {router} vrf {vrf}")))
                .collect(),
            fixes: vec![FindingFix::advice(format!(
                "Find out why {} still announce{} it (speaker logs, `show bgp neighbors <node> received-routes` on {router}); restart the speaker or clear the session if it is stale, or fix the configuration if the node is meant to announce.",
                nodes.iter().copied().collect::<Vec<_>>().join(", "),
                if nodes.len() == 1 { "s" } else { "" }
            ))],
            share: 0.0,
        });
    }
}

/// `lb-ip-sharing-conflict`: two Services holding one LoadBalancer IP that MetalLB cannot
/// give both ([`announce::sharing_conflicts`]; metallb/metallb
/// `internal/allocator/allocator.go` `Assign`, `sharingOK`).
fn sharing_conflicts(model: &Model, out: &mut Vec<Finding>) {
    for x in announce::sharing_conflicts(model) {
        let (a, b) = &x.services;
        let mut evidence: Vec<String> = [a, b]
            .iter()
            .filter_map(|k| model.cluster.services.get(*k).map(|svc| s(&svc.source)))
            .collect();
        uniq(&mut evidence);
        out.push(Finding {
            code: "lb-ip-sharing-conflict",
            severity: Severity::Error,
            title: format!(
                "Services {a} and {b} both hold LoadBalancer IP {}, which MetalLB does not let them share",
                x.ip
            ),
            explanation: format!(
                "Both have {} in status.loadBalancer.ingress, but MetalLB's allocator refuses the second user of an address unless both carry the same allow-shared-ip key, select the same pods under externalTrafficPolicy Local, and use different ports: here {}. The controller keeps the Service it processes first and clears the other (which gets another address, or none, and clients of {} reach only the first). Which one it keeps depends on the order it processes them (after a restart, an edit), which the snapshot does not show: undecided, so both are still announced in `kubepath announce` (with a note).",
                x.ip, x.why, x.ip
            ),
            evidence,
            affected: vec![format!("Service {a}"), format!("Service {b}")],
            fixes: vec![FindingFix::advice(
                "Give both Services the same metallb.io/allow-shared-ip key and different ports (and, under externalTrafficPolicy Local, the same selector), or move one of them to another address.",
            )],
            share: 0.0,
        });
    }
}

/// How a node reaches a peer address.
enum Reach {
    /// On a connected subnet, or routed (a gateway, a device route).
    Reachable,
    Unreachable(Option<SourceRef>, String),
    Unknown,
}

fn reach(model: &Model, node: &str, peer: &Peer) -> Reach {
    let Some(net) = model.nodes.get(node) else {
        return Reach::Unknown;
    };
    let addr = peer.address;
    // A peer in a VRF is reached through the VRF's interfaces and table, which this check does
    // not look up: only its connected subnets decide.
    let in_vrf = |i: &kubepath_model::net::Interface| match &peer.vrf {
        None => i.vrf.is_none(),
        Some(v) => i.vrf.as_deref() == Some(v.as_str()) || i.master.as_deref() == Some(v.as_str()),
    };
    // An interface without carrier (`NO-CARRIER`, no `LOWER_UP`, `state DOWN`) or
    // administratively down carries no session: its connected subnet does not count, and a
    // route out of it (iproute2 marks those `linkdown`) does not reach the peer.
    let link_down = |i: &kubepath_model::net::Interface| i.link_down();
    for i in net.interfaces.iter().filter(|i| in_vrf(i)) {
        for a in &i.addresses {
            if a.address.contains(&addr) && a.scope != "host" && !a.address.addr().is_loopback() {
                if link_down(i) {
                    return Reach::Unreachable(
                        Some(i.source.clone()),
                        format!(
                            "{} is on the subnet of {}, whose link is down",
                            a.address, i.name
                        ),
                    );
                }
                return Reach::Reachable;
            }
        }
    }
    if peer.vrf.is_some() || net.interfaces.is_empty() {
        return Reach::Unknown;
    }
    let coverage = if addr.is_ipv4() {
        net.route_coverage
    } else {
        net.route_coverage_v6
    };
    if coverage == RouteCoverage::None {
        return Reach::Unknown;
    }
    let routes = routing::NodeRoutes::new(net);
    let flow = routing::Flow {
        src: None,
        dst: addr,
        iif: None,
        mark: 0,
        l4: FlowL4::Unknown,
    };
    let l = routing::lookup(net, &routes, &flow);
    let route_file = net
        .read
        .get(&NodeFact::Routes)
        .and_then(|v| v.first())
        .cloned();
    let route_down = l
        .route
        .as_ref()
        .is_some_and(|r| r.flags.iter().any(|f| f == "linkdown"));
    match l.result {
        Ok(Hop::Forward { dev, .. })
            if route_down
                || dev
                    .as_deref()
                    .and_then(|d| net.interfaces.iter().find(|i| i.name == d))
                    .is_some_and(link_down) =>
        {
            Reach::Unreachable(
                l.route.map(|r| r.source).or(route_file),
                format!(
                    "the route leaves by {}, whose link is down (linkdown)",
                    dev.as_deref().unwrap_or("?")
                ),
            )
        }
        Ok(Hop::Local) | Ok(Hop::Forward { .. }) => Reach::Reachable,
        Err(RouteFailure::NoRoute) => Reach::Unreachable(route_file, "no route".into()),
        Err(RouteFailure::Rejected { kind }) => Reach::Unreachable(
            l.route.map(|r| r.source).or(route_file),
            format!("a {kind} route"),
        ),
        Err(RouteFailure::Unknown(_)) => Reach::Unknown,
    }
}

/// `bgp-peer-unreachable`: a peer address that no node whose routes are in the snapshot can
/// reach (not on a connected subnet, no route), among the speaker nodes the peer's node
/// selectors select.
fn peers_unreachable(model: &Model, anns: &[ServiceAnnouncement], out: &mut Vec<Finding>) {
    let c = &model.cluster;
    let speakers = c.speaker_nodes();
    let mut seen: BTreeSet<(IpAddr, Option<String>, Vec<String>)> = BTreeSet::new();
    for peer in &c.lb.peers {
        let sel: Vec<String> = peer.node_selectors.iter().map(|x| x.to_string()).collect();
        if !seen.insert((peer.address, peer.vrf.clone(), sel)) {
            continue;
        }
        let selected: Vec<&str> = speakers
            .iter()
            .copied()
            .filter(|n| {
                let labels = c
                    .nodes
                    .get(*n)
                    .map(|x| x.labels.clone())
                    .unwrap_or_default();
                kubepath_model::k8s::any_selector_matches(&peer.node_selectors, &labels)
            })
            .collect();
        let mut unreachable: Vec<(&str, Option<SourceRef>, String)> = Vec::new();
        let mut undecided = 0usize;
        let mut not_in_snapshot = 0usize;
        let mut reachable: Vec<&str> = Vec::new();
        for n in &selected {
            // A node without a `nodes/<name>/` directory is left out (said in the explanation);
            // one whose routes are not all there makes the check undecided.
            if !model.nodes.contains_key(*n) {
                not_in_snapshot += 1;
                continue;
            }
            match reach(model, n, peer) {
                Reach::Reachable => reachable.push(n),
                Reach::Unreachable(src, why) => unreachable.push((n, src, why)),
                Reach::Unknown => undecided += 1,
            }
        }
        if unreachable.is_empty() {
            continue;
        }
        if !reachable.is_empty() {
            partly_unreachable(anns, peer, &reachable, &unreachable, out);
            continue;
        }
        if undecided > 0 {
            continue;
        }
        let mut evidence = vec![s(&peer.source)];
        for (_, src, _) in &unreachable {
            if let Some(src) = src {
                evidence.push(s(src));
            }
        }
        uniq(&mut evidence);
        let nodes: Vec<&str> = unreachable.iter().map(|(n, _, _)| *n).collect();
        out.push(Finding {
            code: "bgp-peer-unreachable",
            severity: Severity::Error,
            title: format!(
                "BGP peer {peer} is reachable from none of the {} speaker node{} it applies to{}",
                nodes.len(),
                plural(nodes.len()),
                if not_in_snapshot > 0 {
                    format!(" ({not_in_snapshot} more not in the snapshot)")
                } else {
                    String::new()
                }
            ),
            explanation: format!(
                "{} cannot be reached from {}: no connected subnet with a working link holds it and the routing does not reach it ({}), so the speakers cannot open the BGP session and announce nothing to it.{}{}",
                peer.address,
                if nodes.len() == 1 { "the node" } else { "the nodes" },
                unreachable
                    .iter()
                    .map(|(n, _, why)| format!("{n}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                if peer.node_selectors.is_empty() {
                    String::new()
                } else {
                    format!(
                        " The peer applies to nodes matching {}.",
                        peer.node_selectors.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" or ")
                    )
                },
                if not_in_snapshot > 0 {
                    format!(
                        " {not_in_snapshot} other selected node{} {} no nodes/<name>/ directory in the snapshot and {} not checked.",
                        plural(not_in_snapshot),
                        if not_in_snapshot == 1 { "has" } else { "have" },
                        if not_in_snapshot == 1 { "was" } else { "were" }
                    )
                } else {
                    String::new()
                }
            ),
            evidence,
            affected: std::iter::once(format!("BGP peer {peer}"))
                .chain(nodes.iter().map(|n| format!("node {n}")))
                .collect(),
            fixes: vec![FindingFix::advice(format!(
                "Correct the peer address (a typo, or the router's address on the nodes' subnet), bring up the nodes' link toward it, or give the nodes a route to {} (and set ebgpMultiHop for an eBGP peer that is not directly connected).",
                peer.address
            ))],
            share: 0.0,
        });
    }
}

/// `bgp-peer-unreachable` for some of the nodes a peer applies to: the others reach it. An
/// error when `kubepath announce` has one of those nodes announcing a LoadBalancer IP to the
/// peer (it cannot: no session), else a warning.
fn partly_unreachable(
    anns: &[ServiceAnnouncement],
    peer: &Peer,
    reachable: &[&str],
    unreachable: &[(&str, Option<SourceRef>, String)],
    out: &mut Vec<Finding>,
) {
    let nodes: Vec<&str> = unreachable.iter().map(|(n, _, _)| *n).collect();
    // Services whose announcement to this peer those nodes would carry.
    let lost: Vec<(String, Vec<&str>)> = anns
        .iter()
        .filter_map(|a| {
            let routes = a.routes.get(&peer.address)?;
            let ns: Vec<&str> = nodes
                .iter()
                .copied()
                .filter(|n| routes.iter().any(|r| r.node == *n))
                .collect();
            (!ns.is_empty()).then(|| (a.service.to_string(), ns))
        })
        .collect();
    let mut evidence = vec![s(&peer.source)];
    evidence.extend(
        unreachable
            .iter()
            .filter_map(|(_, src, _)| src.as_ref().map(s)),
    );
    evidence.extend(
        lost.iter()
            .filter_map(|(k, _)| anns.iter().find(|a| a.service.to_string() == *k))
            .map(|a| s(&a.source)),
    );
    uniq(&mut evidence);
    out.push(Finding {
        code: "bgp-peer-unreachable",
        severity: if lost.is_empty() {
            Severity::Warning
        } else {
            Severity::Error
        },
        title: format!(
            "BGP peer {peer} is unreachable from {} of the {} speaker nodes it applies to: {}",
            nodes.len(),
            nodes.len() + reachable.len(),
            nodes.join(", ")
        ),
        explanation: format!(
            "{} cannot reach {} ({}), so {} cannot open the BGP session and announce{} nothing to it, while {} can.{}",
            nodes.join(", "),
            peer.address,
            unreachable
                .iter()
                .map(|(n, _, why)| format!("{n}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
            if nodes.len() == 1 { "it" } else { "they" },
            if nodes.len() == 1 { "s" } else { "" },
            reachable.join(", "),
            if lost.is_empty() {
                String::new()
            } else {
                format!(
                    " By the load-balancer configuration they should announce to it: {}; the router gets fewer paths than expected (under externalTrafficPolicy Local the endpoints on those nodes get none of the traffic).",
                    lost.iter()
                        .map(|(k, ns)| format!("{k} from {}", ns.join(", ")))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        ),
        evidence,
        affected: std::iter::once(format!("BGP peer {peer}"))
            .chain(nodes.iter().map(|n| format!("node {n}")))
            .chain(lost.iter().map(|(k, _)| format!("Service {k}")))
            .collect(),
        fixes: vec![FindingFix::advice(format!(
            "Give {} the route to {} the other nodes have (or bring the link up), or restrict the peer's nodeSelectors to the nodes meant to peer.",
            nodes.join(", "),
            peer.address
        ))],
        share: 0.0,
    });
}

/// `lb-status-mismatch`: a Service's `status.loadBalancer.ingress` holds another address than
/// its configuration asks for (`spec.loadBalancerIP`, the loadBalancerIPs annotation), or one
/// outside the pool its address-pool annotation names. (`kubepath announce` shows the same as a
/// note; an address in no pool at all is `lb-ip-in-no-pool`.)
fn status_mismatch(model: &Model, out: &mut Vec<Finding>) {
    let lb = &model.cluster.lb;
    for svc in model.cluster.services.values() {
        if svc.type_ != ServiceType::LoadBalancer {
            continue;
        }
        let status = svc.lb_ingress_ips();
        if status.is_empty() {
            continue;
        }
        let (requested, how) = announce::requested_ips(svc);
        let invalid = announce::requested_ips_invalid(svc);
        let why = if let Some(why) = &invalid {
            why.clone()
        } else if !requested.is_empty() {
            // Per family: a dual-stack Service may request (spec.loadBalancerIP) one family only.
            let rq: BTreeSet<&IpAddr> = requested.iter().collect();
            let st: BTreeSet<&IpAddr> = status
                .iter()
                .filter(|ip| requested.iter().any(|r| r.is_ipv4() == ip.is_ipv4()))
                .collect();
            if st == rq {
                continue;
            }
            format!(
                "{how} requests {}, but status.loadBalancer.ingress holds {}",
                ips_text(&requested),
                ips_text(&status)
            )
        } else if let Some((ann, name)) = announce::pool_annotation(svc) {
            let Some(pool) = lb.pool(name) else { continue };
            let outside: Vec<IpAddr> = status
                .iter()
                .copied()
                .filter(|ip| !pool.contains(*ip))
                // An address in no pool at all is lb-ip-in-no-pool.
                .filter(|ip| lb.pools.iter().any(|p| p.contains(*ip)))
                .collect();
            if outside.is_empty() {
                continue;
            }
            format!(
                "annotation {ann} names pool `{name}`, but status.loadBalancer.ingress holds {}, outside it",
                ips_text(&outside)
            )
        } else {
            continue;
        };
        out.push(Finding {
            code: "lb-status-mismatch",
            severity: Severity::Warning,
            title: if invalid.is_some() {
                format!(
                    "Service {} has an invalid loadBalancerIPs annotation (status holds {})",
                    svc.key,
                    ips_text(&status)
                )
            } else {
                format!(
                    "Service {} has LoadBalancer IP {} in its status, not what its configuration asks for",
                    svc.key,
                    ips_text(&status)
                )
            },
            explanation: if invalid.is_some() {
                format!(
                    "{why}. status.loadBalancer.ingress holds {}. MetalLB's controller fails on the Service at every sync (event LoadBalancerFailed / AllocationFailed): it assigns nothing new, and once the status is cleared (a family mismatch clears it at once) the Service gets no address.",
                    ips_text(&status)
                )
            } else {
                format!(
                    "{why}. The status is what is in use (DNS, the routers and kube-proxy follow it), but the load-balancer controller would not assign it now: on its next sync (a controller restart, an edit of the Service) MetalLB clears it and assigns the requested address, and clients of the old one lose the Service; or the request was changed after assignment and nothing happened yet."
                )
            },
            evidence: vec![s(&svc.source)],
            affected: vec![format!("Service {}", svc.key)],
            fixes: vec![FindingFix::advice(
                "Make the request match the address in use (set spec.loadBalancerIP / the annotation to the status IP), or move deliberately to the requested one (and update DNS and clients).",
            )],
            share: 0.0,
        });
    }
}
