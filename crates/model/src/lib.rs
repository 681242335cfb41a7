//! The vendor-neutral model of one cluster and its fabric.
//!
//! Everything kubepath knows after reading a snapshot lives in a [`Model`]: the Kubernetes
//! objects ([`k8s`]), each node's and router's network state ([`net`]), DNS records ([`dns`]),
//! ingress-nginx configurations ([`nginx`]) and the snapshot manifest ([`manifest`]).
//!
//! Invariants: every object carries a [`SourceRef`] naming the file and line it came from; this
//! crate does not parse, print, or serialize for reports.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Re-exported so consumers name prefixes with the same crate version.
pub use ipnet;

pub mod change;
pub mod dns;
pub mod k8s;
pub mod manifest;
pub mod net;
pub mod nginx;

/// Where a piece of the model came from: a file of the snapshot (path relative to the
/// snapshot root) and a 1-based line (0 when the object stands for the whole file).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef {
    pub file: Arc<str>,
    pub line: u32,
}

impl SourceRef {
    pub fn new(file: impl Into<Arc<str>>, line: u32) -> Self {
        SourceRef {
            file: file.into(),
            line,
        }
    }
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// One snapshot, lowered.
#[derive(Debug, Default, Clone)]
pub struct Model {
    /// Kubernetes objects and load-balancer configuration.
    pub cluster: k8s::Cluster,
    /// Per-node network state, keyed by node name (the `nodes/<name>/` directory).
    pub nodes: BTreeMap<String, net::NodeNet>,
    /// Routers, keyed by name (the `routers/<name>/` directory).
    pub routers: BTreeMap<String, net::Router>,
    /// DNS records from zone files and resolver outputs.
    pub dns: dns::Dns,
    /// ingress-nginx configurations.
    pub nginx: Vec<nginx::NginxConf>,
    /// The optional `kubepath.yaml`.
    pub manifest: manifest::Manifest,
}

impl Model {
    /// The node that owns `ip`: first the interfaces of the nodes' `ip addr` outputs (except
    /// Service VIPs, which kube-proxy's IPVS mode binds to `kube-ipvs0` on every node, and
    /// loopback addresses), then the Node objects' InternalIP/ExternalIP addresses. Returns the
    /// node name.
    pub fn node_owning_ip(&self, ip: std::net::IpAddr) -> Option<&str> {
        let vip = self.cluster.services.values().any(|s| {
            s.cluster_ips.contains(&ip)
                || s.external_ips.contains(&ip)
                || s.lb_ingress_ips().contains(&ip)
        });
        if !vip && !ip.is_loopback() {
            for (name, net) in &self.nodes {
                for i in &net.interfaces {
                    if i.name == "kube-ipvs0" {
                        continue;
                    }
                    if i.addresses.iter().any(|a| a.address.addr() == ip) {
                        return Some(name.as_str());
                    }
                }
            }
        }
        self.cluster
            .node_owning_ip(ip, false)
            .map(|n| n.name.as_str())
    }
}
