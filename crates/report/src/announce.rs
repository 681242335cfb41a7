//! `kubepath announce` output.
//!
//! JSON (docs/announce-json.md, schema `kubepath.announce/v1`): a list with one object per
//! LoadBalancer Service. The list shape is the interface the issue fixes, so the schema
//! version is documented rather than embedded.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kubepath_sim::announce::{RouterPath, ServiceAnnouncement};
use serde::Serialize;

pub const SCHEMA: &str = "kubepath.announce/v1";

/// One route as the JSON shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteDto {
    pub prefix: String,
    pub node: String,
}

/// A router path that is missing or unexplained.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouterPathDto {
    pub router: String,
    pub vrf: String,
    pub peer: String,
    pub prefix: String,
    /// The node's address (expected next hop) or the router's next hop; `null` when the
    /// node's address on the peer's subnet is unknown.
    pub next_hop: Option<String>,
    pub node: Option<String>,
    pub source: Option<String>,
}

/// One Service.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServiceDto {
    /// `namespace/name`.
    pub service: String,
    pub ips: Vec<String>,
    /// Where the IPs come from (`status`, or a prediction).
    pub ip_origin: String,
    pub pool: Option<String>,
    /// `bgp`, `l2`, `bgp+l2` or `none`.
    pub mode: String,
    pub announcing_nodes: Vec<String>,
    /// Peer address -> routes.
    pub routes: BTreeMap<String, Vec<RouteDto>>,
    /// Node -> why it does not announce.
    pub not_announcing: BTreeMap<String, String>,
    /// Node -> stable reason code (see docs/announce-json.md).
    pub not_announcing_codes: BTreeMap<String, String>,
    /// Why no node announces, when it is a property of the Service.
    pub reason: Option<String>,
    /// Layer 2: IP -> elected node.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub l2_owners: BTreeMap<String, String>,
    /// Present when routers' BGP tables were compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_on_routers: Option<Vec<RouterPathDto>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unexplained_on_routers: Option<Vec<RouterPathDto>>,
    /// (router, vrf) pairs compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_routers: Option<Vec<String>>,
    pub notes: Vec<String>,
}

fn path_dto(p: &RouterPath) -> RouterPathDto {
    RouterPathDto {
        router: p.router.clone(),
        vrf: p.vrf.clone(),
        peer: p.peer.to_string(),
        prefix: p.prefix.to_string(),
        next_hop: p.next_hop.map(|a| a.to_string()),
        node: p.node.clone(),
        source: p.source.as_ref().map(|s| s.to_string()),
    }
}

/// Convert the simulation's answer.
pub fn to_dto(a: &ServiceAnnouncement) -> ServiceDto {
    let (missing, unexplained, compared, mut notes) = match &a.router_check {
        Some(rc) if !rc.compared.is_empty() => (
            Some(rc.missing.iter().map(path_dto).collect()),
            Some(rc.unexplained.iter().map(path_dto).collect()),
            Some(
                rc.compared
                    .iter()
                    .map(|(r, v)| format!("{r} vrf {v}"))
                    .collect(),
            ),
            rc.notes.clone(),
        ),
        Some(rc) => (None, None, None, rc.notes.clone()),
        None => (None, None, None, Vec::new()),
    };
    let mut all_notes = a.notes.clone();
    all_notes.append(&mut notes);
    ServiceDto {
        service: a.service.to_string(),
        ips: a.ips.iter().map(|i| i.to_string()).collect(),
        ip_origin: a.ip_origin.to_string(),
        pool: a.pool.clone(),
        mode: a.mode_name(),
        announcing_nodes: a.announcing_nodes.clone(),
        routes: a
            .routes
            .iter()
            .map(|(peer, rs)| {
                (
                    peer.to_string(),
                    rs.iter()
                        .map(|r| RouteDto {
                            prefix: r.prefix.to_string(),
                            node: r.node.clone(),
                        })
                        .collect(),
                )
            })
            .collect(),
        not_announcing: a
            .not_announcing
            .iter()
            .map(|(n, r)| (n.clone(), r.to_string()))
            .collect(),
        not_announcing_codes: a
            .not_announcing
            .iter()
            .map(|(n, r)| (n.clone(), r.code().to_string()))
            .collect(),
        reason: a.blocked.as_ref().map(|r| r.to_string()),
        l2_owners: a
            .l2_owners
            .iter()
            .map(|(ip, n)| (ip.to_string(), n.clone()))
            .collect(),
        missing_on_routers: missing,
        unexplained_on_routers: unexplained,
        compared_routers: compared,
        notes: all_notes,
    }
}

/// Human-readable rendering.
pub fn render_text(list: &[ServiceDto]) -> String {
    crate::escape_controls(&render_text_raw(&crate::escaped(&list.to_vec()))).into_owned()
}

fn render_text_raw(list: &[ServiceDto]) -> String {
    let mut o = String::new();
    if list.is_empty() {
        o.push_str("No LoadBalancer Service.\n");
    }
    for s in list {
        let _ = writeln!(
            o,
            "{}: {} ({}), pool {}, mode {}",
            s.service,
            if s.ips.is_empty() {
                "<no IP>".to_string()
            } else {
                s.ips.join(", ")
            },
            s.ip_origin,
            s.pool.as_deref().unwrap_or("<none>"),
            s.mode
        );
        if let Some(r) = &s.reason {
            let _ = writeln!(o, "  nobody announces: {r}");
        }
        let _ = writeln!(
            o,
            "  announcing nodes ({}): {}",
            s.announcing_nodes.len(),
            s.announcing_nodes.join(", ")
        );
        for (ip, n) in &s.l2_owners {
            let _ = writeln!(o, "  layer 2: {ip} answered by {n}");
        }
        for (peer, rs) in &s.routes {
            let mut prefixes: Vec<&str> = rs.iter().map(|r| r.prefix.as_str()).collect();
            prefixes.sort();
            prefixes.dedup();
            let mut nodes: Vec<&str> = rs.iter().map(|r| r.node.as_str()).collect();
            nodes.sort();
            nodes.dedup();
            let _ = writeln!(
                o,
                "  to peer {peer}: {} from {} node(s): {}",
                prefixes.join(", "),
                nodes.len(),
                nodes.join(", ")
            );
        }
        if s.reason.is_none() {
            for (n, r) in &s.not_announcing {
                let _ = writeln!(o, "  not {n}: {r}");
            }
        }
        if let Some(c) = &s.compared_routers {
            let _ = writeln!(o, "  routers compared: {}", c.join(", "));
        }
        if let Some(m) = &s.missing_on_routers {
            if m.is_empty() {
                let _ = writeln!(o, "  no expected path is missing on the routers");
            }
            for p in m {
                let _ = writeln!(
                    o,
                    "  MISSING on {} vrf {}: {} via {} ({})",
                    p.router,
                    p.vrf,
                    p.prefix,
                    p.next_hop.as_deref().unwrap_or("?"),
                    p.node.as_deref().unwrap_or("?")
                );
            }
        }
        if let Some(u) = &s.unexplained_on_routers {
            for p in u {
                let _ = writeln!(
                    o,
                    "  UNEXPLAINED on {} vrf {}: {} via {}{} at {}",
                    p.router,
                    p.vrf,
                    p.prefix,
                    p.next_hop.as_deref().unwrap_or("?"),
                    p.node
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    p.source.as_deref().unwrap_or("?")
                );
            }
        }
        for n in &s.notes {
            let _ = writeln!(o, "  note: {n}");
        }
    }
    o
}

// Single-line strings for the text renderers (`crate::EscapeData`).
crate::escape_fields!(RouteDto { prefix, node });
crate::escape_fields!(RouterPathDto {
    router,
    vrf,
    peer,
    prefix,
    next_hop,
    node,
    source
});
crate::escape_fields!(ServiceDto {
    service,
    ips,
    ip_origin,
    pool,
    mode,
    announcing_nodes,
    routes,
    not_announcing,
    not_announcing_codes,
    reason,
    l2_owners,
    missing_on_routers,
    unexplained_on_routers,
    compared_routers,
    notes
});
