//! The vendor-neutral model of one cluster and its fabric.
//!
//! Everything kubepath knows after reading a snapshot lives in a [`Model`]: the Kubernetes
//! objects ([`k8s`]), each node's and router's network state ([`net`]), DNS records ([`dns`]),
//! ingress-nginx configurations ([`nginx`]) and the snapshot manifest ([`manifest`]).
//!
//! Invariants: every object carries a [`SourceRef`] naming the file and line it came from; this
//! crate does not parse, print, or serialize for reports.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

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
    /// Values consumers derive from `cluster`, `nginx` and `dns` (never from `nodes`,
    /// `routers` or `manifest`), built at most once per model and shared by its copies.
    pub derived: Derived,
}

/// A cache of values derived from a model's Kubernetes objects, nginx configurations and DNS
/// records: an index built once and shared by every trace of the model (issue #15).
///
/// Copies of the model share the cache: a copy whose nodes change (`--what-if`, a fix being
/// verified) keeps its cluster, so what was derived from it still holds. Code that changes
/// `cluster`, `nginx` or `dns` after a consumer may have filled the cache must call
/// [`Derived::clear`]: ingest fills those fields before any consumer runs.
#[derive(Default, Clone)]
pub struct Derived {
    slots: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl Derived {
    /// The value of type `T`, built by `build` the first time. Concurrent first calls may
    /// both build; one value is kept.
    pub fn get_or_build<T: Any + Send + Sync>(&self, build: impl FnOnce() -> T) -> Arc<T> {
        let key = TypeId::of::<T>();
        if let Some(v) = self.get::<T>() {
            return v;
        }
        let v = Arc::new(build());
        // A poisoned lock only means another thread panicked mid-insert: the value is still
        // returned, just not kept.
        if let Ok(mut slots) = self.slots.lock() {
            let kept = slots.entry(key).or_insert_with(|| v.clone()).clone();
            if let Ok(kept) = kept.downcast::<T>() {
                return kept;
            }
        }
        v
    }

    fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let slots = self.slots.lock().ok()?;
        slots.get(&TypeId::of::<T>())?.clone().downcast::<T>().ok()
    }

    /// Forgets every derived value, for this model only (copies made before keep theirs).
    pub fn clear(&mut self) {
        self.slots = Arc::default();
    }
}

/// The addresses a node's interfaces hold that make it their owner, with the interface.
fn owned_addresses(net: &net::NodeNet) -> impl Iterator<Item = (&str, std::net::IpAddr)> {
    net.interfaces
        .iter()
        .filter(|i| i.name != "kube-ipvs0")
        .flat_map(|i| {
            i.addresses
                .iter()
                .map(move |a| (i.name.as_str(), a.address.addr()))
        })
        .filter(|(_, a)| !a.is_loopback())
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.slots.lock().map(|s| s.len()).unwrap_or(0);
        write!(f, "Derived({n} cached)")
    }
}

impl Model {
    /// Every address the nodes' `ip addr` outputs hold, with the node and interface that own
    /// it: the first node by name, its first interface holding it. Not counted: loopback
    /// addresses, and kube-proxy's IPVS dummy `kube-ipvs0`, where every node binds every
    /// Service VIP. The one rule of address ownership: [`Model::node_owning_ip`] and the
    /// trace's next-hop index both follow it.
    pub fn interface_owners(&self) -> std::collections::HashMap<std::net::IpAddr, (&str, &str)> {
        let mut m = std::collections::HashMap::new();
        for (name, net) in &self.nodes {
            for (iface, a) in owned_addresses(net) {
                m.entry(a).or_insert((name.as_str(), iface));
            }
        }
        m
    }

    /// The nodes that hold `ip` only where it does not make them its owner (kube-proxy's
    /// IPVS dummy `kube-ipvs0`), with the interface: what a message about an address no node
    /// owns should mention.
    pub fn uncounted_holders(&self, ip: std::net::IpAddr) -> Vec<(&str, &str)> {
        self.nodes
            .iter()
            .flat_map(|(name, net)| {
                net.interfaces
                    .iter()
                    .filter(|i| i.name == "kube-ipvs0")
                    .filter(move |i| i.addresses.iter().any(|a| a.address.addr() == ip))
                    .map(move |i| (name.as_str(), i.name.as_str()))
            })
            .collect()
    }

    /// The node that owns `ip`: an interface of its `ip addr` output (as
    /// [`Model::interface_owners`] counts them), else its Node object's InternalIP/ExternalIP.
    /// Returns the node name.
    pub fn node_owning_ip(&self, ip: std::net::IpAddr) -> Option<&str> {
        for (name, net) in &self.nodes {
            if owned_addresses(net).any(|(_, a)| a == ip) {
                return Some(name.as_str());
            }
        }
        self.cluster
            .node_owning_ip(ip, false)
            .map(|n| n.name.as_str())
    }
}
