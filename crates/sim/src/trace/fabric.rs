//! The routers: longest-prefix match in a VRF and ECMP over the usable next hops.
//!
//! Candidates are, in one longest-prefix competition: the VRF's routing table when the snapshot
//! has one (FRR `show ip route vrf all json`), its BGP table (`show ip bgp vrf NAME`), and the
//! subnets of the router's interfaces in that VRF (connected routes). For a BGP prefix the
//! next hops are [`kubepath_model::net::Router::forwarding_paths`]: the best path plus the
//! valid paths that tie with it for multipath. Each next hop carries 1/N of the flows: SLX
//! (and Linux with `fib_multipath_hash_policy` 1/3, and FRR's zebra) hash the 5-tuple modulo
//! the number of next hops, so one connection is pinned to one next hop.

use std::net::IpAddr;

use ipnet::IpNet;
use kubepath_model::net::{Router, RouterInterface, DEFAULT_VRF};
use kubepath_model::{Model, SourceRef};

/// One next hop a router uses for the destination.
#[derive(Debug, Clone)]
pub struct NextHopOut {
    /// The next hop's address (for a connected destination: the destination itself).
    pub addr: IpAddr,
    /// True when the destination is on a connected subnet (delivered by ARP, no next hop).
    pub connected: bool,
    /// The router interface it leaves by.
    pub iface: Option<String>,
    pub probability: f64,
    pub source: SourceRef,
    /// The node owning the next hop and its interface (filled in by the trace).
    pub node: Option<(String, String)>,
}

/// A path the router knows but does not forward on, with the reason.
#[derive(Debug, Clone)]
pub struct UnusedPath {
    pub next_hop: IpAddr,
    pub reason: String,
    pub source: SourceRef,
}

/// The router's decision for one destination.
#[derive(Debug, Clone)]
pub struct FabricLookup {
    pub router: String,
    pub vrf: String,
    pub prefix: IpNet,
    /// What matched: "bgp", "rib:<protocol>" or "connected".
    pub via: String,
    pub source: SourceRef,
    pub next_hops: Vec<NextHopOut>,
    pub unused: Vec<UnusedPath>,
    pub notes: Vec<String>,
}

pub fn iface_vrf(i: &RouterInterface) -> &str {
    i.vrf.as_deref().unwrap_or(DEFAULT_VRF)
}

/// The router interface in `vrf` whose subnet (address or anycast address) contains `addr`.
pub fn connected_iface<'r>(
    router: &'r Router,
    vrf: &str,
    addr: IpAddr,
) -> Option<&'r RouterInterface> {
    router.interfaces.iter().find(|i| {
        iface_vrf(i) == vrf
            && i.addresses
                .iter()
                .chain(i.anycast_addresses.iter())
                .any(|a| a.trunc().contains(&addr))
    })
}

/// Whether a skipped (or cut) line of `router`'s outputs may hold a route of `vrf`: not when
/// its file is the BGP table of other VRFs and `vrf`'s own table was read from another file
/// (a cut table of one VRF says nothing about another's: issue #11, review). A VRF with no
/// table read may have been in the lost part (a `vrf all` output cut early); a line of any
/// other file (interfaces, an unrecognised table) may concern every VRF.
fn concerns_vrf(router: &Router, l: &kubepath_model::net::SkippedLine, vrf: &str) -> bool {
    let file = &l.source.file;
    let bgp_file_of_some = router
        .vrfs
        .values()
        .any(|v| v.bgp_source.as_ref().is_some_and(|s| &s.file == file));
    if !bgp_file_of_some {
        return true;
    }
    match router.vrfs.get(vrf).and_then(|v| v.bgp_source.as_ref()) {
        Some(own) => &own.file == file,
        None => true,
    }
}

/// Longest-prefix match for `dst` in `router`'s `vrf`. Err = why the router cannot forward
/// (no route), or what the snapshot lacks.
pub fn lookup(
    model: &Model,
    router_name: &str,
    vrf: &str,
    dst: IpAddr,
) -> Result<FabricLookup, FabricError> {
    let Some(router) = model.routers.get(router_name) else {
        return Err(FabricError::Unknown(format!(
            "router {router_name} is not in the snapshot (routers/{router_name}/)"
        )));
    };
    if let Some(sl) = router
        .skipped
        .iter()
        .filter(|l| l.may_concern(dst) && concerns_vrf(router, l, vrf))
        .min_by_key(|l| l.cut)
    {
        // A line of this router's outputs that could not be read may hold the route: the
        // lookup would be a guess.
        return Err(FabricError::Unknown(format!(
            "router {router_name}: {} and may concern {dst}, so its routes to it are unknown",
            sl.describe()
        )));
    }
    let vrf_data = router.vrfs.get(vrf);
    let has_ifaces = router.interfaces.iter().any(|i| iface_vrf(i) == vrf);
    if vrf_data.is_none() && !has_ifaces {
        return Err(FabricError::Unknown(format!(
            "router {router_name} has neither a routing/BGP table nor interfaces in VRF {vrf} in the snapshot"
        )));
    }

    let Some(winner) = best_candidate(router, vrf_data, vrf, dst) else {
        if vrf_data.is_none_or(|v| v.bgp_source.is_none() && v.rib_source.is_none()) {
            // Only the interfaces of this VRF are known: whether it has a route is unknown,
            // not absent.
            return Err(FabricError::Unknown(format!(
                "router {router_name} VRF {vrf}: {dst} is on no connected subnet and the snapshot has no routing or BGP table for this VRF (collect `show ip route vrf {vrf}` or `show ip bgp vrf {vrf}`)"
            )));
        }
        return Err(FabricError::NoRoute(format!(
            "router {router_name} has no route to {dst} in VRF {vrf}"
        )));
    };
    let mut out = FabricLookup {
        router: router_name.to_string(),
        vrf: vrf.to_string(),
        prefix: IpNet::from(dst),
        via: String::new(),
        source: SourceRef::new(router_name, 0),
        next_hops: Vec::new(),
        unused: Vec::new(),
        notes: Vec::new(),
    };
    match winner {
        Candidate::Connected(net, iface, source) => {
            out.prefix = net;
            out.via = "connected".into();
            out.source = source.clone();
            out.next_hops.push(NextHopOut {
                addr: dst,
                connected: true,
                iface: Some(iface),
                probability: 1.0,
                source,
                node: None,
            });
        }
        Candidate::Bgp(prefix) => bgp_next_hops(&mut out, router, dst, prefix)?,
        Candidate::Rib(idx) => {
            let r = &vrf_data.expect("a RIB candidate comes from vrf_data").rib[idx];
            rib_next_hops(&mut out, router, dst, r);
        }
    }
    if out.via == "bgp" && !out.next_hops.is_empty() && out.next_hops.iter().all(|h| h.connected) {
        // `*> 10.1.0.0/24 0.0.0.0 ... 32768 ?`: the connected route redistributed into BGP.
        out.via = "connected".into();
    }
    if out.next_hops.is_empty() {
        return Err(FabricError::NoRoute(format!(
            "router {router_name} has route {} in VRF {vrf} but no usable next hop",
            out.prefix
        )));
    }
    Ok(out)
}

/// The route that wins for `dst` in `vrf`: the longest prefix among the BGP table's best
/// routes, the routing table's selected routes (which win ties: what the router really
/// forwards on) and the VRF's connected subnets.
fn best_candidate(
    router: &Router,
    vrf_data: Option<&kubepath_model::net::RouterVrf>,
    vrf: &str,
    dst: IpAddr,
) -> Option<Candidate> {
    let mut best_len: i32 = -1;
    let mut winner: Option<Candidate> = None;
    if let Some(v) = vrf_data {
        for r in &v.bgp {
            if r.prefix.contains(&dst)
                && i32::from(r.prefix.prefix_len()) > best_len
                && r.best().is_some()
            {
                best_len = i32::from(r.prefix.prefix_len());
                winner = Some(Candidate::Bgp(r.prefix));
            }
        }
        for (idx, r) in v.rib.iter().enumerate() {
            if r.selected && r.prefix.contains(&dst) && i32::from(r.prefix.prefix_len()) >= best_len
            {
                // The routing table is what the router really forwards on: it wins ties.
                best_len = i32::from(r.prefix.prefix_len());
                winner = Some(Candidate::Rib(idx));
            }
        }
    }
    for i in router.interfaces.iter().filter(|i| iface_vrf(i) == vrf) {
        for a in i.addresses.iter().chain(i.anycast_addresses.iter()) {
            let net = a.trunc();
            if net.contains(&dst) && i32::from(net.prefix_len()) > best_len {
                best_len = i32::from(net.prefix_len());
                winner = Some(Candidate::Connected(net, i.name.clone(), i.source.clone()));
            }
        }
    }
    winner
}

/// The next hops of BGP route `prefix`: its forwarding paths (ECMP), the others as unused.
fn bgp_next_hops(
    out: &mut FabricLookup,
    router: &Router,
    dst: IpAddr,
    prefix: IpNet,
) -> Result<(), FabricError> {
    let (router_name, vrf) = (out.router.clone(), out.vrf.clone());
    let (router_name, vrf) = (router_name.as_str(), vrf.as_str());
    out.prefix = prefix;
    out.via = "bgp".into();
    let route = router.bgp_route(vrf, &prefix).ok_or_else(|| {
        FabricError::Unknown(format!("BGP route {prefix} vanished from {router_name}"))
    })?;
    let used = route.forwarding_paths(false);
    out.source = used
        .first()
        .map(|p| p.source.clone())
        .unwrap_or_else(|| SourceRef::new(router_name, 0));
    if !route.paths.iter().any(|p| p.status.multipath) && used.len() > 1 {
        out.notes.push(format!(
            "{router_name} does not print multipath flags: the {} valid paths that tie with the best one (same weight, local preference, AS path, origin, MED, eBGP) are taken as ECMP, which assumes BGP multipath (maximum-paths) is enabled",
            used.len()
        ));
    }
    for p in &route.paths {
        if used.iter().any(|u| std::ptr::eq(*u, p)) {
            continue;
        }
        let reason = if !p.status.valid {
            "not valid".to_string()
        } else if p.status.internal && !route.best().is_some_and(|b| b.status.internal) {
            "iBGP path: not used while the best path is eBGP (eBGP multipath excludes iBGP paths)"
                .to_string()
        } else {
            "not best and not equal-cost with the best path".to_string()
        };
        out.unused.push(UnusedPath {
            next_hop: p.next_hop,
            reason,
            source: p.source.clone(),
        });
    }
    let n = used.len().max(1) as f64;
    for p in used {
        if p.local {
            // Locally originated: the destination is on a connected subnet.
            let iface = connected_iface(router, vrf, dst).map(|i| i.name.clone());
            out.next_hops.push(NextHopOut {
                addr: dst,
                connected: true,
                iface,
                probability: 1.0 / n,
                source: p.source.clone(),
                node: None,
            });
            continue;
        }
        let iface = connected_iface(router, vrf, p.next_hop).map(|i| i.name.clone());
        if iface.is_none() {
            out.notes.push(format!(
                "next hop {} is on no connected subnet of {router_name} in VRF {vrf}: recursive resolution is not modelled",
                p.next_hop
            ));
        }
        out.next_hops.push(NextHopOut {
            addr: p.next_hop,
            connected: false,
            iface,
            probability: 1.0 / n,
            source: p.source.clone(),
            node: None,
        });
    }
    Ok(())
}

/// The next hops of routing-table route `r`: its active next hops.
fn rib_next_hops(
    out: &mut FabricLookup,
    router: &Router,
    dst: IpAddr,
    r: &kubepath_model::net::RibRoute,
) {
    let vrf = out.vrf.clone();
    let vrf = vrf.as_str();
    out.prefix = r.prefix;
    out.via = format!("rib:{}", r.protocol);
    out.source = r.source.clone();
    let active = r.active_nexthops();
    let n = active.len().max(1) as f64;
    for nh in active {
        let connected = nh.directly_connected || nh.gateway.is_none();
        let addr = if connected {
            dst
        } else {
            nh.gateway.unwrap_or(dst)
        };
        let iface = nh
            .interface
            .clone()
            .or_else(|| connected_iface(router, vrf, addr).map(|i| i.name.clone()));
        out.next_hops.push(NextHopOut {
            addr,
            connected,
            iface,
            probability: 1.0 / n,
            source: r.source.clone(),
            node: None,
        });
    }
}

enum Candidate {
    Bgp(IpNet),
    Rib(usize),
    Connected(IpNet, String, SourceRef),
}

/// Why a router lookup gave no next hop.
#[derive(Debug, Clone)]
pub enum FabricError {
    NoRoute(String),
    Unknown(String),
}

/// The router interface a node's gateway address belongs to: an interface (in any VRF) whose
/// address or anycast address equals `gw`; else one whose subnet contains it.
pub fn gateway_owner(model: &Model, gw: IpAddr) -> Option<(&Router, &RouterInterface)> {
    for r in model.routers.values() {
        for i in &r.interfaces {
            if i.addresses
                .iter()
                .chain(i.anycast_addresses.iter())
                .any(|a| a.addr() == gw)
            {
                return Some((r, i));
            }
        }
    }
    None
}
