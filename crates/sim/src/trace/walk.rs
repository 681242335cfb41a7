//! Hop-by-hop forwarding through the routers of the snapshot.
//!
//! A packet handed to a router is looked up in that router's VRF ([`fabric::lookup`]: the
//! longest prefix over its routing table, BGP table and connected subnets), split over the
//! chosen next hops by their ECMP shares, and followed to the next device: another router of
//! the snapshot (whose interface owns the next-hop address; the lookup repeats there, in that
//! interface's VRF), a node, a connected subnet, or a device the snapshot does not hold.
//! Routers forward statelessly, so a reply is followed exactly like a request: each hop can
//! lack the route, loop, or hand the packet to something the snapshot cannot see, and only
//! the end of the walk decides the verdict.
//!
//! The walk is bounded: a (router, VRF) already visited on one path is a routing loop (the
//! same lookup would give the same answer until the TTL runs out), and a path never has more
//! than [`MAX_ROUTERS`] router hops.

use std::net::IpAddr;

use kubepath_model::{Model, SourceRef};

use super::fabric::{self, FabricError, FabricLookup, NextHopOut};
use super::Hop;

/// At most this many routers on one path (a loop is caught earlier by the visited set).
pub(super) const MAX_ROUTERS: usize = 32;

/// A router and one of its VRFs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct VrfRef {
    pub router: String,
    pub vrf: String,
}

impl VrfRef {
    pub fn new(router: &str, vrf: &str) -> VrfRef {
        VrfRef {
            router: router.to_string(),
            vrf: vrf.to_string(),
        }
    }
}

impl std::fmt::Display for VrfRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (VRF {})", self.router, self.vrf)
    }
}

/// How one path of the walk ended.
#[derive(Debug, Clone)]
pub(super) enum End {
    /// The destination is on a connected subnet of the last router.
    Connected { at: VrfRef, iface: Option<String> },
    /// The next hop is an address of a node.
    Node {
        at: VrfRef,
        router_iface: Option<String>,
        node: String,
        node_iface: String,
    },
    /// The next hop is on no device of the snapshot, and the last router is one of the
    /// `exits` (for a reply: an entry point of the client, from where its request came in).
    /// `next_hop` is `None` when the exit's BGP table has no route for the destination and the
    /// snapshot has no routing table for that VRF: the client's own traffic comes in there,
    /// so it is reachable by a route the BGP table does not show (static or connected).
    Exit {
        at: VrfRef,
        next_hop: Option<IpAddr>,
    },
    /// The next hop is on no device of the snapshot and the last router is no exit.
    Leaves {
        at: VrfRef,
        iface: Option<String>,
        next_hop: IpAddr,
    },
    /// A router has no route for the destination.
    NoRoute {
        at: VrfRef,
        why: String,
        /// The tables searched (and where they were read from), for the reason.
        searched: String,
    },
    /// The path came back to a (router, VRF) it already went through.
    Loop { cycle: Vec<VrfRef> },
    /// The snapshot lacks what the lookup needs.
    Unknown(String),
}

/// One path of the walk with its probability and the hops it took.
#[derive(Debug, Clone)]
pub(super) struct Walked {
    pub p: f64,
    pub hops: Vec<Hop>,
    /// The routers (and VRFs) the path went through, in order.
    pub visited: Vec<VrfRef>,
    pub end: End,
}

/// The question the walk answers.
pub(super) struct Walk<'a> {
    pub model: &'a Model,
    pub dst: IpAddr,
    /// The stage name of the hops it records (`router` or `return-router`).
    pub stage: &'static str,
    /// Routers (and VRFs) where a next hop outside the snapshot counts as the way out to the
    /// destination (`End::Exit`) rather than as leaving the snapshot (`End::Leaves`).
    pub exits: &'a [VrfRef],
    /// Which node (and interface) owns an address, if any.
    pub node_owner: &'a dyn Fn(IpAddr) -> Option<(String, String)>,
}

impl Walk<'_> {
    /// Follows the packet from `start` (a router and the VRF of the interface it arrived on).
    pub fn run(&self, start: VrfRef) -> Vec<Walked> {
        let mut out = Vec::new();
        self.step(start, 1.0, Vec::new(), Vec::new(), &mut out);
        out
    }

    fn step(
        &self,
        at: VrfRef,
        p: f64,
        hops: Vec<Hop>,
        mut visited: Vec<VrfRef>,
        out: &mut Vec<Walked>,
    ) {
        if let Some(i) = visited.iter().position(|v| *v == at) {
            let mut cycle = visited[i..].to_vec();
            cycle.push(at);
            out.push(Walked {
                p,
                hops,
                visited,
                end: End::Loop { cycle },
            });
            return;
        }
        visited.push(at.clone());
        if visited.len() > MAX_ROUTERS {
            let cycle = visited.clone();
            out.push(Walked {
                p,
                hops,
                visited,
                end: End::Loop { cycle },
            });
            return;
        }
        let fl = match fabric::lookup(self.model, &at.router, &at.vrf, self.dst) {
            Ok(fl) => fl,
            Err(err) => {
                let (hop, end) = self.lookup_failed(at, err);
                let mut hops = hops;
                hops.push(hop);
                out.push(Walked {
                    p,
                    hops,
                    visited,
                    end,
                });
                return;
            }
        };
        let n = fl.next_hops.len();
        for nh in &fl.next_hops {
            let pn = p * nh.probability;
            let mut h = hops.clone();
            let what = self.next_hop_text(&fl, nh);
            let mut hop =
                Hop::new(self.stage, at.router.clone(), what).src(Some(nh.source.clone()));
            if n > 1 {
                hop = hop.p(nh.probability);
            }
            h.push(hop);
            let end = if nh.connected {
                End::Connected {
                    at: at.clone(),
                    iface: nh.iface.clone(),
                }
            } else if let Some((node, node_iface)) = (self.node_owner)(nh.addr) {
                End::Node {
                    at: at.clone(),
                    router_iface: nh.iface.clone(),
                    node,
                    node_iface,
                }
            } else if let Some((r2, i2)) = fabric::gateway_owner(self.model, nh.addr) {
                if r2.name == at.router && fabric::iface_vrf(i2) == at.vrf {
                    // The router's own address: nothing to forward to.
                    out.push(Walked {
                        p: pn,
                        hops: h,
                        visited: visited.clone(),
                        end: End::Unknown(format!(
                            "{} routes {} to its own address {}",
                            at, self.dst, nh.addr
                        )),
                    });
                    continue;
                }
                let next = VrfRef::new(&r2.name, fabric::iface_vrf(i2));
                self.step(next, pn, h, visited.clone(), out);
                continue;
            } else if self.exits.contains(&at) {
                End::Exit {
                    at: at.clone(),
                    next_hop: Some(nh.addr),
                }
            } else {
                End::Leaves {
                    at: at.clone(),
                    iface: nh.iface.clone(),
                    next_hop: nh.addr,
                }
            };
            out.push(Walked {
                p: pn,
                hops: h,
                visited: visited.clone(),
                end,
            });
        }
    }

    /// The hop and end of a path whose lookup in `at` failed: no route (at an exit without a
    /// routing table, whether one not shown leads back is unknown) or unknown.
    fn lookup_failed(&self, at: VrfRef, err: FabricError) -> (Hop, End) {
        match err {
            FabricError::NoRoute(why) if self.exits.contains(&at) && !has_rib(self.model, &at) => (
                Hop::new(
                    self.stage,
                    at.router.clone(),
                    format!(
                        "{why} in its BGP table; the snapshot has no routing table for VRF {}, and the client's traffic enters here: whether a route not shown (static or connected) leads back to it is unknown",
                        at.vrf
                    ),
                ),
                End::Exit { at, next_hop: None },
            ),
            FabricError::NoRoute(why) => {
                let searched = searched_tables(self.model, &at);
                (
                    Hop::new(self.stage, at.router.clone(), format!("{why} ({searched})"))
                        .src(table_source(self.model, &at)),
                    End::NoRoute { at, why, searched },
                )
            }
            FabricError::Unknown(why) => (
                Hop::new(self.stage, at.router.clone(), why.clone()),
                End::Unknown(why),
            ),
        }
    }

    /// The hop's text for next hop `nh` of lookup `fl`.
    fn next_hop_text(&self, fl: &FabricLookup, nh: &NextHopOut) -> String {
        let n = fl.next_hops.len();
        if nh.connected {
            format!(
                "{} matches {} ({}) in VRF {}: on a connected subnet{}",
                self.dst,
                fl.prefix,
                fl.via,
                fl.vrf,
                nh.iface
                    .as_deref()
                    .map(|i| format!(" of {i}"))
                    .unwrap_or_default()
            )
        } else {
            format!(
                "{} matches {} ({}) in VRF {}: {}{}{}",
                self.dst,
                fl.prefix,
                fl.via,
                fl.vrf,
                if n == 1 {
                    "next hop ".to_string()
                } else {
                    format!("{n} next hops; this one: ")
                },
                nh.addr,
                nh.iface
                    .as_deref()
                    .map(|i| format!(" via {i}"))
                    .unwrap_or_default()
            )
        }
    }
}

/// What a lookup in `at` searched, for a no-route reason: the routing table when the
/// snapshot has one, else the BGP table and the connected subnets (which do not show static
/// or IGP routes: said so).
fn searched_tables(model: &Model, at: &VrfRef) -> String {
    let Some(r) = model.routers.get(&at.router) else {
        return "router not in the snapshot".into();
    };
    let v = r.vrfs.get(&at.vrf);
    let rib = v.is_some_and(|v| v.rib_source.is_some());
    let bgp = v.is_some_and(|v| v.bgp_source.is_some());
    let src = table_source(model, at)
        .map(|s| format!(", {s}"))
        .unwrap_or_default();
    match (rib, bgp) {
        (true, _) => format!("searched its routing table and connected subnets{src}"),
        (false, true) => format!(
            "searched its BGP table and connected subnets{src}; the snapshot has no routing table for this VRF, so a static or IGP route would not be visible"
        ),
        (false, false) => "searched its connected subnets; the snapshot has no routing or BGP table for this VRF".into(),
    }
}

/// Whether the snapshot has the VRF's routing table (not only its BGP table).
fn has_rib(model: &Model, at: &VrfRef) -> bool {
    model
        .routers
        .get(&at.router)
        .and_then(|r| r.vrfs.get(&at.vrf))
        .is_some_and(|v| v.rib_source.is_some())
}

/// Where the VRF's table was read from (its first route).
fn table_source(model: &Model, at: &VrfRef) -> Option<SourceRef> {
    let v = model.routers.get(&at.router)?.vrfs.get(&at.vrf)?;
    v.rib.first().map(|r| r.source.clone()).or_else(|| {
        v.bgp
            .first()
            .and_then(|b| b.paths.first())
            .map(|p| p.source.clone())
    })
}

/// "R1 (VRF A) -> R2 (VRF A) -> R1 (VRF A)".
pub(super) fn cycle_text(cycle: &[VrfRef]) -> String {
    cycle
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" -> ")
}
