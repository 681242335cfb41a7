//! The snapshot manifest (`kubepath.yaml`, see docs/snapshot.md).

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::SourceRef;

/// The manifest. Everything in it is optional; an absent manifest is `Manifest::default()`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Where the manifest was read from (`None` when the snapshot has none).
    pub source: Option<SourceRef>,
    /// Where external clients enter the fabric.
    pub clients: Vec<ClientEntry>,
    /// Interface -> VRF assignments that cannot be inferred.
    pub interfaces: Vec<InterfaceVrf>,
    /// Per-router settings, keyed by router name.
    pub routers: BTreeMap<String, RouterSettings>,
}

/// One `clients[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEntry {
    pub name: Option<String>,
    pub prefixes: Vec<IpNet>,
    /// Equal-cost entry points.
    pub entry: Vec<EntryPoint>,
    pub source: SourceRef,
}

/// A router (and VRF) where client traffic enters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPoint {
    pub router: String,
    pub vrf: Option<String>,
}

/// One `interfaces[]` entry: `node` or `router` (exactly one), `"*"` = every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceVrf {
    pub node: Option<String>,
    pub router: Option<String>,
    pub interface: String,
    pub vrf: String,
    pub source: SourceRef,
}

impl InterfaceVrf {
    /// Whether this entry applies to `node`.
    pub fn applies_to_node(&self, node: &str) -> bool {
        self.node.as_deref().is_some_and(|n| n == "*" || n == node)
    }
}

/// How a router picks among ECMP next hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EcmpHash {
    /// Hash of the 5-tuple (the default).
    #[default]
    L4,
    /// Hash of source and destination address.
    L3,
    /// Round robin per packet.
    PerPacket,
}

/// `routers.<name>` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterSettings {
    pub ecmp_hash: EcmpHash,
    pub source: Option<SourceRef>,
}

impl Manifest {
    /// The ECMP hash model of `router` (default l4).
    pub fn ecmp_hash(&self, router: &str) -> EcmpHash {
        self.routers
            .get(router)
            .map(|r| r.ecmp_hash)
            .unwrap_or_default()
    }

    /// The VRF the manifest assigns to `interface` of `node`, if any (exact node name first,
    /// then `"*"`).
    pub fn node_interface_vrf(&self, node: &str, interface: &str) -> Option<&str> {
        let exact = self
            .interfaces
            .iter()
            .find(|i| i.interface == interface && i.node.as_deref() == Some(node));
        exact
            .or_else(|| {
                self.interfaces
                    .iter()
                    .find(|i| i.interface == interface && i.node.as_deref() == Some("*"))
            })
            .map(|i| i.vrf.as_str())
    }

    /// The VRF the manifest assigns to `interface` of `router`, if any.
    pub fn router_interface_vrf(&self, router: &str, interface: &str) -> Option<&str> {
        self.interfaces
            .iter()
            .find(|i| i.interface == interface && i.router.as_deref() == Some(router))
            .map(|i| i.vrf.as_str())
    }
}
