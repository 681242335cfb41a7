//! Kubernetes objects and load-balancer configuration, lowered.
//!
//! The readers (kubepath-ingest) fill a [`Cluster`] from `kubectl get ... -o yaml|json` outputs
//! and from the load balancer's configuration (MetalLB CRDs, MetalLB's legacy ConfigMap, ECFE's
//! variant of it). Every object keeps the [`SourceRef`] of its first line; fields that a verdict
//! may cite keep their own line.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::SourceRef;

/// `namespace/name` of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A port given by number or by name (Service `targetPort`, Ingress backend port).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => write!(f, "{s}"),
        }
    }
}

/// The cluster's objects and load-balancer configuration.
#[derive(Debug, Default, Clone)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, Namespace>,
    pub services: BTreeMap<ObjectKey, Service>,
    pub pods: Vec<Pod>,
    pub nodes: BTreeMap<String, Node>,
    /// Endpoints objects and EndpointSlices (v1 and v1beta1), unified.
    pub endpoints: Vec<EndpointSet>,
    pub ingresses: Vec<Ingress>,
    pub ingress_classes: BTreeMap<String, IngressClass>,
    pub config_maps: Vec<ConfigMap>,
    /// Load-balancer (MetalLB / ECFE) configuration.
    pub lb: LoadBalancer,
    /// Objects of kinds kubepath does not model (kept so `inspect` can list them).
    pub other: Vec<OtherObject>,
    /// The kinds the snapshot holds (`Service`, `Endpoints`, `EndpointSlice`, `Ingress`,
    /// `Pod`, ...): at least one object of the kind, or a typed list of it (`ServiceList`) that
    /// came back empty. A kind absent here was not collected: what depends on it is unknown,
    /// not absent.
    pub collected: std::collections::BTreeSet<String>,
    /// Files of cluster/ the loader left out (they do not parse, or may have been cut):
    /// (path, why, the kinds they may hold — from their `kind:` lines, None when none could be
    /// read, i.e. any kind). What such a file may hold is unknown, not absent.
    pub left_out: Vec<(
        std::sync::Arc<str>,
        String,
        Option<std::collections::BTreeSet<String>>,
    )>,
}

impl Cluster {
    /// A file left out that may hold objects of `kind`: (path, why).
    pub fn left_out_with(&self, kind: &str) -> Option<(&str, &str)> {
        self.left_out
            .iter()
            .find(|(_, _, kinds)| kinds.as_ref().is_none_or(|k| k.contains(kind)))
            .map(|(p, why, _)| (&**p, why.as_str()))
    }
}

/// An object of a kind kubepath does not model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherObject {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub source: SourceRef,
}

/// A Namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub phase: Option<String>,
    pub source: SourceRef,
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
    Other(String),
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceType::ClusterIp => f.write_str("ClusterIP"),
            ServiceType::NodePort => f.write_str("NodePort"),
            ServiceType::LoadBalancer => f.write_str("LoadBalancer"),
            ServiceType::ExternalName => f.write_str("ExternalName"),
            ServiceType::Other(s) => f.write_str(s),
        }
    }
}

/// `spec.externalTrafficPolicy` / `spec.internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficPolicy {
    /// The API server's default for both fields.
    #[default]
    Cluster,
    Local,
}

impl fmt::Display for TrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrafficPolicy::Cluster => f.write_str("Cluster"),
            TrafficPolicy::Local => f.write_str("Local"),
        }
    }
}

/// One `spec.ports[]` entry of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    /// `TCP` (the default), `UDP` or `SCTP`.
    pub protocol: String,
    pub port: i32,
    /// `None` means "same as `port`" (the API default).
    pub target_port: Option<PortRef>,
    pub node_port: Option<i32>,
    pub source: SourceRef,
}

impl ServicePort {
    /// The target port, defaulted to `port` as the API server does.
    pub fn effective_target_port(&self) -> PortRef {
        self.target_port
            .clone()
            .unwrap_or(PortRef::Number(self.port))
    }

    /// The port number traffic reaches on `pod`: a numeric targetPort as is; a named one
    /// through the pod's container ports of that name and the same protocol (as the
    /// endpoints controller resolves it). `None` when the pod has no such named port.
    pub fn target_port_on(&self, pod: &Pod) -> Option<i32> {
        match self.effective_target_port() {
            PortRef::Number(n) => Some(n),
            PortRef::Name(name) => pod
                .containers
                .iter()
                .flat_map(|c| c.ports.iter())
                .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol == self.protocol)
                .map(|p| p.container_port),
        }
    }
}

/// A `status.loadBalancer.ingress[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbIngress {
    pub ip: Option<IpAddr>,
    pub hostname: Option<String>,
}

/// A Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub key: ObjectKey,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub type_: ServiceType,
    /// `spec.clusterIPs` (or `spec.clusterIP`); empty for headless (`None`) Services.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.clusterIP: None`.
    pub headless: bool,
    pub external_ips: Vec<IpAddr>,
    /// `spec.loadBalancerIP` (deprecated field, still honoured by MetalLB).
    pub load_balancer_ip: Option<IpAddr>,
    pub load_balancer_class: Option<String>,
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// `status.loadBalancer.ingress`.
    pub lb_ingress: Vec<LbIngress>,
    pub ports: Vec<ServicePort>,
    /// `None` when the Service has no selector (its endpoints are managed by hand).
    pub selector: Option<BTreeMap<String, String>>,
    pub external_traffic_policy: TrafficPolicy,
    /// Line of `spec.externalTrafficPolicy` (the object's line when the field is absent).
    pub external_traffic_policy_source: SourceRef,
    pub internal_traffic_policy: TrafficPolicy,
    /// `None` or `ClientIP`.
    pub session_affinity: Option<String>,
    pub session_affinity_timeout: Option<i32>,
    pub health_check_node_port: Option<i32>,
    pub allocate_load_balancer_node_ports: Option<bool>,
    pub external_name: Option<String>,
    pub source: SourceRef,
}

impl Service {
    /// The IPs in `status.loadBalancer.ingress`.
    pub fn lb_ingress_ips(&self) -> Vec<IpAddr> {
        self.lb_ingress.iter().filter_map(|i| i.ip).collect()
    }
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: i32,
    pub protocol: String,
    pub host_port: Option<i32>,
}

/// A container of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub ports: Vec<ContainerPort>,
}

/// A Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub key: ObjectKey,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `(kind, name)` of the controlling owner reference.
    pub owner: Option<(String, String)>,
    pub node_name: Option<String>,
    pub host_network: bool,
    pub host_ip: Option<IpAddr>,
    pub pod_ips: Vec<IpAddr>,
    pub phase: Option<String>,
    /// The `Ready` condition; `None` when the status has no conditions.
    pub ready: Option<bool>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    pub containers: Vec<Container>,
    pub source: SourceRef,
}

impl Pod {
    /// The container port named `name` (first match over all containers).
    pub fn named_port(&self, name: &str) -> Option<&ContainerPort> {
        self.containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .find(|p| p.name.as_deref() == Some(name))
    }

    /// Every argument of every container (command and args).
    pub fn all_args(&self) -> impl Iterator<Item = &str> {
        self.containers
            .iter()
            .flat_map(|c| c.command.iter().chain(c.args.iter()))
            .map(String::as_str)
    }
}

/// A Node condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCondition {
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: Option<String>,
}

/// A Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub internal_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub hostname: Option<String>,
    pub conditions: Vec<NodeCondition>,
    pub pod_cidrs: Vec<IpNet>,
    pub unschedulable: bool,
    pub source: SourceRef,
}

/// The label that keeps a node out of external load balancers
/// (`k8s.io/api/core/v1.LabelNodeExcludeBalancers`).
pub const LABEL_EXCLUDE_FROM_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

impl Node {
    fn condition(&self, t: &str) -> Option<&NodeCondition> {
        self.conditions.iter().find(|c| c.type_ == t)
    }
    /// `Some(true)` when condition Ready is True, `Some(false)` when False/Unknown.
    pub fn ready(&self) -> Option<bool> {
        self.condition("Ready").map(|c| c.status == "True")
    }
    /// Condition NetworkUnavailable is True.
    pub fn network_unavailable(&self) -> bool {
        self.condition("NetworkUnavailable")
            .is_some_and(|c| c.status == "True")
    }
    /// The node carries the exclude-from-external-load-balancers label (any value: MetalLB's
    /// `IsNodeExcludedFromBalancers` only checks that the label exists).
    pub fn excluded_from_lb(&self) -> bool {
        self.labels.contains_key(LABEL_EXCLUDE_FROM_LB)
    }
    /// Every address of the node (InternalIP then ExternalIP).
    pub fn addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.internal_ips.iter().chain(self.external_ips.iter())
    }
}

/// Which API object an [`EndpointSet`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndpointOrigin {
    /// core/v1 Endpoints (one set per subset).
    Endpoints,
    /// discovery.k8s.io/v1 EndpointSlice.
    SliceV1,
    /// discovery.k8s.io/v1beta1 EndpointSlice.
    SliceV1beta1,
}

/// A reference to another object (`targetRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// One endpoint (one address set) of an [`EndpointSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready`; `None` = unknown, which consumers treat as ready (API docs).
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    pub node_name: Option<String>,
    pub hostname: Option<String>,
    pub target_ref: Option<ObjectRef>,
    pub zone: Option<String>,
    pub source: SourceRef,
}

impl Endpoint {
    /// Ready (nil counts as ready).
    pub fn is_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }
    /// MetalLB's `epslices.EndpointCanServe`: ready (nil counts as ready) or serving.
    pub fn can_serve(&self) -> bool {
        self.is_ready() || self.serving == Some(true)
    }
}

/// An endpoint port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub port: Option<i32>,
    pub protocol: String,
}

/// Endpoints of one Service, from an Endpoints subset or an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSet {
    /// The object's own namespace/name.
    pub key: ObjectKey,
    /// The Service it belongs to (Endpoints: same name; slices: `kubernetes.io/service-name`).
    pub service: Option<ObjectKey>,
    pub origin: EndpointOrigin,
    /// `IPv4`, `IPv6` or `FQDN` (slices); Endpoints sets have `None`.
    pub address_type: Option<String>,
    pub ports: Vec<EndpointPort>,
    pub endpoints: Vec<Endpoint>,
    pub source: SourceRef,
}

impl EndpointSet {
    /// The endpoint port for a Service port: matched by name (EndpointSlices and Endpoints
    /// carry the Service port's name; an unnamed single port matches an unnamed one).
    pub fn port_for(&self, svc_port: &ServicePort) -> Option<&EndpointPort> {
        self.ports.iter().find(|p| {
            p.name.as_deref().filter(|n| !n.is_empty()) == svc_port.name.as_deref()
                && p.protocol == svc_port.protocol
        })
    }
}

/// Where an Ingress's class came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressClassSource {
    /// `spec.ingressClassName`.
    Field,
    /// The `kubernetes.io/ingress.class` annotation.
    Annotation,
}

/// The backend of an Ingress path or default backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressBackend {
    Service {
        name: String,
        port: PortRef,
    },
    Resource {
        api_group: Option<String>,
        kind: String,
        name: String,
    },
}

/// One path of an Ingress rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressPath {
    pub path: Option<String>,
    /// `Exact`, `Prefix` or `ImplementationSpecific`; `None` when absent (old API versions).
    pub path_type: Option<String>,
    pub backend: IngressBackend,
    pub source: SourceRef,
}

/// One rule of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    pub host: Option<String>,
    pub paths: Vec<IngressPath>,
    pub source: SourceRef,
}

/// A TLS entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressTls {
    pub hosts: Vec<String>,
    pub secret_name: Option<String>,
}

/// An Ingress (networking.k8s.io/v1, networking.k8s.io/v1beta1 or extensions/v1beta1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    pub key: ObjectKey,
    pub api_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub class: Option<String>,
    pub class_source: Option<IngressClassSource>,
    pub rules: Vec<IngressRule>,
    pub default_backend: Option<IngressBackend>,
    pub tls: Vec<IngressTls>,
    pub status_ips: Vec<IpAddr>,
    pub status_hostnames: Vec<String>,
    pub source: SourceRef,
}

/// An IngressClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressClass {
    pub name: String,
    pub controller: Option<String>,
    /// Annotation `ingressclass.kubernetes.io/is-default-class: "true"`.
    pub is_default: bool,
    pub source: SourceRef,
}

/// A ConfigMap (raw data; the load-balancer readers interpret the ones they know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMap {
    pub key: ObjectKey,
    pub labels: BTreeMap<String, String>,
    pub data: BTreeMap<String, String>,
    /// Line of each `data` key.
    pub data_lines: BTreeMap<String, u32>,
    pub source: SourceRef,
}

// ---------------------------------------------------------------------------------------------
// Load balancer
// ---------------------------------------------------------------------------------------------

/// Which dialect a piece of load-balancer configuration was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LbFlavor {
    /// MetalLB CRDs (metallb.io/v1beta1, v1beta2).
    MetallbCrd,
    /// MetalLB's legacy ConfigMap (`config` key).
    MetallbConfigMap,
    /// ECFE's variant of the legacy ConfigMap (`bgp-bfd-peers`, `my-address-pools`).
    Ecfe,
}

impl fmt::Display for LbFlavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LbFlavor::MetallbCrd => "MetalLB CRDs",
            LbFlavor::MetallbConfigMap => "MetalLB ConfigMap",
            LbFlavor::Ecfe => "ECFE ConfigMap",
        })
    }
}

/// A Kubernetes label selector (`matchLabels` AND `matchExpressions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelExpression>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelExpression {
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist` (others never match, and the reader warns).
    pub operator: String,
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector, as `k8s.io/apimachinery/pkg/labels` evaluates
    /// it: every matchLabels pair and every expression must hold; an empty selector matches
    /// everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let val = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => val.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => val.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => val.is_some(),
                    "DoesNotExist" => val.is_none(),
                    _ => false,
                }
            })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for e in &self.match_expressions {
            parts.push(match e.operator.as_str() {
                "Exists" => e.key.clone(),
                "DoesNotExist" => format!("!{}", e.key),
                op => format!("{} {} ({})", e.key, op.to_lowercase(), e.values.join(",")),
            });
        }
        if parts.is_empty() {
            f.write_str("<all>")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// Whether any of `selectors` matches (MetalLB: an empty list selects every node).
pub fn any_selector_matches(
    selectors: &[LabelSelector],
    labels: &BTreeMap<String, String>,
) -> bool {
    selectors.is_empty() || selectors.iter().any(|s| s.matches(labels))
}

/// An inclusive address range of a pool (a CIDR or an `a-b` range as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrRange {
    /// As written (`10.33.151.160/32`, `10.33.151.161-10.33.151.167`).
    pub text: String,
    pub first: IpAddr,
    pub last: IpAddr,
    /// Written as a CIDR (MetalLB's avoid-buggy-ips only applies to .0/.255 of CIDRs too,
    /// but keeps the distinction for reporting).
    pub is_cidr: bool,
}

impl AddrRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.first, self.last, ip) {
            (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(x)) => a <= x && x <= b,
            (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(x)) => a <= x && x <= b,
            _ => false,
        }
    }
}

/// BGP or layer 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LbMode {
    Bgp,
    Layer2,
}

impl fmt::Display for LbMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LbMode::Bgp => "bgp",
            LbMode::Layer2 => "l2",
        })
    }
}

/// An address pool (IPAddressPool CRD or a legacy `address-pools` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub ranges: Vec<AddrRange>,
    /// `auto-assign` / `spec.autoAssign` (default true).
    pub auto_assign: bool,
    /// `avoid-buggy-ips` / `spec.avoidBuggyIPs`: skip addresses ending in .0 and .255.
    pub avoid_buggy_ips: bool,
    /// Legacy `protocol` (CRD pools have none: advertisements decide).
    pub protocol: Option<LbMode>,
    pub flavor: LbFlavor,
    pub source: SourceRef,
}

impl Pool {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }
}

/// BFD parameters of a peer or profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bfd {
    pub profile: Option<String>,
    /// Milliseconds.
    pub min_rx: Option<u32>,
    pub min_tx: Option<u32>,
    pub multiplier: Option<u32>,
}

/// A BGP peer (BGPPeer CRD, legacy `peers`, ECFE `bgp-bfd-peers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// CRD name; legacy peers have none.
    pub name: Option<String>,
    pub address: IpAddr,
    pub peer_asn: u32,
    pub my_asn: u32,
    pub peer_port: Option<u16>,
    /// As written (`3s`, `90s`).
    pub hold_time: Option<String>,
    pub keepalive_time: Option<String>,
    pub router_id: Option<IpAddr>,
    pub source_address: Option<IpAddr>,
    pub ebgp_multihop: Option<bool>,
    pub vrf: Option<String>,
    pub bfd: Option<Bfd>,
    /// The peer is used only from nodes matching one of these (empty = every node).
    pub node_selectors: Vec<LabelSelector>,
    /// ECFE: the pools whose addresses this peer receives (`None` = every pool).
    pub my_address_pools: Option<Vec<String>>,
    pub flavor: LbFlavor,
    pub source: SourceRef,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n} ({})", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// A BGP advertisement (BGPAdvertisement CRD, or a legacy pool's `bgp-advertisements`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpAdvertisement {
    pub name: Option<String>,
    /// Pools by name; with `pool_selectors` empty too, the advertisement covers every pool.
    pub pools: Vec<String>,
    pub pool_selectors: Vec<LabelSelector>,
    pub node_selectors: Vec<LabelSelector>,
    /// Peer names (CRD `peers`); empty = every peer.
    pub peers: Vec<String>,
    /// Communities as written (aliases or `asn:value`).
    pub communities: Vec<String>,
    pub local_pref: Option<u32>,
    /// Default 32.
    pub aggregation_length: Option<u8>,
    /// Default 128.
    pub aggregation_length_v6: Option<u8>,
    pub source: SourceRef,
}

/// An L2 advertisement (L2Advertisement CRD, or a legacy `protocol: layer2` pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Advertisement {
    pub name: Option<String>,
    pub pools: Vec<String>,
    pub pool_selectors: Vec<LabelSelector>,
    pub node_selectors: Vec<LabelSelector>,
    pub interfaces: Vec<String>,
    pub source: SourceRef,
}

/// A BFDProfile CRD or legacy `bfd-profiles` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdProfile {
    pub name: String,
    pub receive_interval: Option<u32>,
    pub transmit_interval: Option<u32>,
    pub detect_multiplier: Option<u32>,
    pub source: SourceRef,
}

/// A speaker pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speaker {
    pub node: String,
    pub pod: ObjectKey,
    /// Pod phase Running and Ready (unknown counts as running).
    pub running: bool,
    pub source: SourceRef,
}

/// Which nodes run a speaker, and the speakers' and controller's flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Speakers {
    /// Speaker pods found in the snapshot.
    pub pods: Vec<Speaker>,
    /// No speaker pod in the snapshot: every node is assumed to run one.
    pub assumed_all_nodes: bool,
    /// `--lb-class` of the speakers (`None` = they serve Services without a class).
    pub lb_class: Option<String>,
    /// `--ignore-exclude-lb` on the speakers.
    pub ignore_exclude_lb: bool,
    /// Where the flags were read (the first speaker pod).
    pub flags_source: Option<SourceRef>,
    /// Controller pods (component=controller) found.
    pub controllers: Vec<ObjectKey>,
    /// `--lb-class` of the controller.
    pub controller_lb_class: Option<String>,
    /// The MetalLB (or ECFE) version, `(major, minor, patch)`, read from the speaker's or
    /// controller's image tag (`quay.io/metallb/speaker:v0.13.7`); `None` when no image says.
    pub version: Option<(u32, u32, u32)>,
    /// Where the version was read.
    pub version_source: Option<SourceRef>,
}

/// The load balancer's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadBalancer {
    /// Where the configuration came from (ConfigMaps, CRD files), with its dialect.
    pub configs: Vec<(LbFlavor, SourceRef)>,
    pub pools: Vec<Pool>,
    /// IPAddressPools of another namespace than MetalLB's (where its pods run, else
    /// `metallb-system`): MetalLB does not read them. Not in `pools`; with MetalLB's namespace.
    pub foreign_pools: Vec<(Pool, String)>,
    pub peers: Vec<Peer>,
    pub bgp_advertisements: Vec<BgpAdvertisement>,
    pub l2_advertisements: Vec<L2Advertisement>,
    pub bfd_profiles: Vec<BfdProfile>,
    /// Community aliases (`bgp-communities`, Community CRDs): alias -> value.
    pub communities: BTreeMap<String, String>,
    pub speakers: Speakers,
}

impl LoadBalancer {
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
    /// Whether any load-balancer configuration was read.
    pub fn is_configured(&self) -> bool {
        !self.configs.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Lookups
// ---------------------------------------------------------------------------------------------

impl Cluster {
    /// The Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&ObjectKey::new(namespace, name))
    }

    /// The pods a Service selects: same namespace only, every selector label must match.
    /// A Service without a selector selects no pods.
    pub fn pods_selected_by<'a>(&'a self, svc: &'a Service) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods.iter().filter(move |p| Cluster::selects(svc, p))
    }

    /// Whether `svc` selects `pod` ([`Cluster::pods_selected_by`]'s rule).
    pub fn selects(svc: &Service, pod: &Pod) -> bool {
        pod.key.namespace == svc.key.namespace
            && svc.selector.as_ref().is_some_and(|sel| {
                !sel.is_empty() && sel.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
            })
    }

    /// The pods of each namespace, in the order of `pods`: for code that asks
    /// [`Cluster::pods_selected_by`] of every Service, a scan of one namespace's pods each
    /// instead of all of them (issue #15: 10,000 Services x 100,000 pods).
    pub fn pods_by_namespace(&self) -> HashMap<&str, Vec<&Pod>> {
        let mut m: HashMap<&str, Vec<&Pod>> = HashMap::new();
        for p in &self.pods {
            m.entry(p.key.namespace.as_str()).or_default().push(p);
        }
        m
    }

    /// The endpoint sets of a Service: its EndpointSlices when there are any (v1 preferred
    /// over v1beta1 copies of the same slice), otherwise its Endpoints object.
    pub fn endpoints_of(&self, svc: &ObjectKey) -> Vec<&EndpointSet> {
        let mine = self
            .endpoints
            .iter()
            .filter(|e| e.service.as_ref() == Some(svc));
        let mut slices: Vec<&EndpointSet> = Vec::new();
        let mut plain: Vec<&EndpointSet> = Vec::new();
        for e in mine {
            match e.origin {
                EndpointOrigin::Endpoints => plain.push(e),
                EndpointOrigin::SliceV1 => slices.push(e),
                EndpointOrigin::SliceV1beta1 => {
                    if !self
                        .endpoints
                        .iter()
                        .any(|o| o.origin == EndpointOrigin::SliceV1 && o.key == e.key)
                    {
                        slices.push(e)
                    }
                }
            }
        }
        if slices.is_empty() {
            plain
        } else {
            slices
        }
    }

    /// Why the Service's Endpoints and its EndpointSlices are in doubt: both are in the
    /// snapshot and give different ready addresses, so they were collected at different
    /// moments and which set the proxies use now is unknown (issue #11, fifth review). The
    /// endpoints controller writes only the Service's primary family into Endpoints, leaves
    /// terminating pods out (the slices keep them, not ready) and truncates at 1,000 addresses
    /// (`endpoints.kubernetes.io/over-capacity`; pkg/controller/endpoint): so only ready
    /// addresses of the families the Endpoints hold are compared, and not past 1,000.
    pub fn endpoints_disagree(&self, svc: &ObjectKey) -> Option<String> {
        Self::endpoint_sets_disagree(
            svc,
            self.endpoints
                .iter()
                .filter(|e| e.service.as_ref() == Some(svc)),
        )
    }

    /// Every endpoint set naming a Service, by Service, in the order of `endpoints`: what
    /// [`Cluster::endpoints_disagree`] looks at for each, found in one pass (issue #15: a scan
    /// per Service was quadratic, 2.5 billion comparisons at 50,000 Services).
    pub fn endpoint_sets_by_service(&self) -> HashMap<&ObjectKey, Vec<&EndpointSet>> {
        let mut m: HashMap<&ObjectKey, Vec<&EndpointSet>> = HashMap::new();
        for e in &self.endpoints {
            if let Some(svc) = &e.service {
                m.entry(svc).or_default().push(e);
            }
        }
        m
    }

    /// [`Cluster::endpoints_disagree`] on the endpoint sets of one Service, in the order of
    /// `endpoints` ([`Cluster::endpoint_sets_by_service`]).
    pub fn endpoint_sets_disagree<'a>(
        svc: &ObjectKey,
        sets: impl Iterator<Item = &'a EndpointSet>,
    ) -> Option<String> {
        let (plain, slices): (Vec<&EndpointSet>, Vec<&EndpointSet>) =
            sets.partition(|e| e.origin == EndpointOrigin::Endpoints);
        if plain.is_empty() || slices.is_empty() {
            return None;
        }
        let all_plain: Vec<IpAddr> = plain
            .iter()
            .flat_map(|s| s.endpoints.iter().flat_map(|e| e.addresses.iter().copied()))
            .collect();
        if all_plain.len() >= 1000 {
            return None;
        }
        let families: Vec<bool> = all_plain.iter().map(|a| a.is_ipv4()).collect();
        let in_family = |a: &IpAddr| families.is_empty() || families.contains(&a.is_ipv4());
        let ready = |sets: &[&EndpointSet]| -> BTreeSet<IpAddr> {
            sets.iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.is_ready())
                .flat_map(|e| e.addresses.iter().copied())
                .filter(in_family)
                .collect()
        };
        let (a, b) = (ready(&plain), ready(&slices));
        // Both carry the Service's target port, by the Service port's name: another number
        // is another moment too (sixth review R10).
        let ports = |sets: &[&EndpointSet]| -> BTreeMap<(String, String), BTreeSet<i64>> {
            let mut m: BTreeMap<(String, String), BTreeSet<i64>> = BTreeMap::new();
            for p in sets.iter().flat_map(|s| &s.ports) {
                if let Some(n) = p.port {
                    m.entry((p.name.clone().unwrap_or_default(), p.protocol.clone()))
                        .or_default()
                        .insert(i64::from(n));
                }
            }
            m
        };
        let (pa, pb) = (ports(&plain), ports(&slices));
        let port_diff: Vec<String> = pa
            .iter()
            .filter_map(|(k, va)| {
                let vb = pb.get(k)?;
                (va != vb).then(|| {
                    let list = |v: &BTreeSet<i64>| {
                        v.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    format!(
                        "port {}{} is {} in the Endpoints and {} in the EndpointSlices",
                        if k.0.is_empty() { "(unnamed)" } else { &k.0 },
                        format_args!("/{}", k.1),
                        list(va),
                        list(vb)
                    )
                })
            })
            .collect();
        if !port_diff.is_empty() {
            return Some(format!(
                "the Endpoints of Service {svc} ({}) and its EndpointSlices ({}) disagree: {}: collected at different moments, so which endpoints the proxies use is unknown (collect both again together, or only the EndpointSlices)",
                plain[0].source,
                slices[0].source,
                port_diff.join("; ")
            ));
        }
        if a == b {
            return None;
        }
        let list = |x: &BTreeSet<IpAddr>| {
            if x.is_empty() {
                "none".to_string()
            } else {
                x.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        Some(format!(
            "the Endpoints of Service {svc} ({}) give the ready addresses {} and its EndpointSlices ({}) give {}: collected at different moments, so which endpoints the proxies use is unknown (collect both again together, or only the EndpointSlices)",
            plain[0].source,
            list(&a),
            slices[0].source,
            list(&b)
        ))
    }

    /// [`Cluster::endpoints_of`] for every Service at once (one pass over the endpoint sets
    /// instead of one per Service): Services without endpoint sets are absent.
    pub fn endpoints_by_service(&self) -> HashMap<&ObjectKey, Vec<&EndpointSet>> {
        let v1: HashSet<&ObjectKey> = self
            .endpoints
            .iter()
            .filter(|o| o.origin == EndpointOrigin::SliceV1)
            .map(|o| &o.key)
            .collect();
        let mut slices: HashMap<&ObjectKey, Vec<&EndpointSet>> = HashMap::new();
        let mut plain: HashMap<&ObjectKey, Vec<&EndpointSet>> = HashMap::new();
        for e in &self.endpoints {
            let Some(svc) = &e.service else { continue };
            match e.origin {
                EndpointOrigin::Endpoints => plain.entry(svc).or_default().push(e),
                EndpointOrigin::SliceV1 => slices.entry(svc).or_default().push(e),
                EndpointOrigin::SliceV1beta1 => {
                    if !v1.contains(&e.key) {
                        slices.entry(svc).or_default().push(e)
                    }
                }
            }
        }
        for (svc, sets) in plain {
            slices.entry(svc).or_insert(sets);
        }
        slices
    }

    /// The node that owns `ip`: as a node address (InternalIP/ExternalIP), or through its
    /// pod CIDRs when `include_pod_cidrs`.
    pub fn node_owning_ip(&self, ip: IpAddr, include_pod_cidrs: bool) -> Option<&Node> {
        self.nodes
            .values()
            .find(|n| n.addresses().any(|a| *a == ip))
            .or_else(|| {
                if include_pod_cidrs {
                    self.nodes
                        .values()
                        .find(|n| n.pod_cidrs.iter().any(|c| c.contains(&ip)))
                } else {
                    None
                }
            })
    }

    /// The pod whose IP is `ip` (host-network pods excluded).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| !p.host_network && p.pod_ips.contains(&ip))
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.key.namespace == namespace && p.key.name == name)
    }

    /// The ConfigMap `namespace/name`.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps
            .iter()
            .find(|c| c.key.namespace == namespace && c.key.name == name)
    }

    /// The nodes that run a speaker (every node when none was found in the snapshot).
    pub fn speaker_nodes(&self) -> Vec<&str> {
        if self.lb.speakers.assumed_all_nodes || self.lb.speakers.pods.is_empty() {
            self.nodes.keys().map(String::as_str).collect()
        } else {
            let mut v: Vec<&str> = self
                .lb
                .speakers
                .pods
                .iter()
                .map(|s| s.node.as_str())
                .collect();
            v.sort();
            v.dedup();
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_semantics() {
        let sel = LabelSelector {
            match_labels: labels(&[("a", "1")]),
            match_expressions: vec![
                LabelExpression {
                    key: "zone".into(),
                    operator: "In".into(),
                    values: vec!["x".into(), "y".into()],
                },
                LabelExpression {
                    key: "gone".into(),
                    operator: "DoesNotExist".into(),
                    values: vec![],
                },
            ],
        };
        assert!(sel.matches(&labels(&[("a", "1"), ("zone", "y")])));
        assert!(!sel.matches(&labels(&[("a", "1"), ("zone", "z")])));
        assert!(!sel.matches(&labels(&[("a", "1"), ("zone", "x"), ("gone", "")])));
        assert!(!sel.matches(&labels(&[("zone", "x")])));
        assert!(LabelSelector::default().matches(&labels(&[])));
        let notin = LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelExpression {
                key: "k".into(),
                operator: "NotIn".into(),
                values: vec!["v".into()],
            }],
        };
        assert!(notin.matches(&labels(&[])));
        assert!(!notin.matches(&labels(&[("k", "v")])));
        assert!(any_selector_matches(&[], &labels(&[])));
        assert!(!any_selector_matches(&[sel], &labels(&[])));
    }

    #[test]
    fn endpoint_can_serve() {
        let mut e = Endpoint {
            addresses: vec![],
            ready: None,
            serving: None,
            terminating: None,
            node_name: None,
            hostname: None,
            target_ref: None,
            zone: None,
            source: SourceRef::new("f", 1),
        };
        assert!(e.can_serve());
        e.ready = Some(false);
        assert!(!e.can_serve());
        e.serving = Some(true);
        assert!(e.can_serve());
    }

    #[test]
    fn range_contains() {
        let r = AddrRange {
            text: "10.0.0.1-10.0.0.3".into(),
            first: "10.0.0.1".parse().unwrap(),
            last: "10.0.0.3".parse().unwrap(),
            is_cidr: false,
        };
        assert!(r.contains("10.0.0.2".parse().unwrap()));
        assert!(!r.contains("10.0.0.4".parse().unwrap()));
        assert!(!r.contains("::1".parse().unwrap()));
    }

    fn svc(ns: &str, name: &str, sel: &[(&str, &str)]) -> Service {
        Service {
            key: ObjectKey::new(ns, name),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            type_: ServiceType::ClusterIp,
            cluster_ips: vec![],
            headless: false,
            external_ips: vec![],
            load_balancer_ip: None,
            load_balancer_class: None,
            load_balancer_source_ranges: vec![],
            lb_ingress: vec![],
            ports: vec![],
            selector: Some(labels(sel)),
            external_traffic_policy: TrafficPolicy::Cluster,
            external_traffic_policy_source: SourceRef::new("s", 1),
            internal_traffic_policy: TrafficPolicy::Cluster,
            session_affinity: None,
            session_affinity_timeout: None,
            health_check_node_port: None,
            allocate_load_balancer_node_ports: None,
            external_name: None,
            source: SourceRef::new("s", 1),
        }
    }

    fn pod(ns: &str, name: &str, l: &[(&str, &str)], ip: &str) -> Pod {
        Pod {
            key: ObjectKey::new(ns, name),
            labels: labels(l),
            annotations: BTreeMap::new(),
            owner: None,
            node_name: Some("n1".into()),
            host_network: false,
            host_ip: None,
            pod_ips: vec![ip.parse().unwrap()],
            phase: Some("Running".into()),
            ready: Some(true),
            terminating: false,
            containers: vec![],
            source: SourceRef::new("p", 1),
        }
    }

    fn set(ns: &str, name: &str, svc: &str, origin: EndpointOrigin) -> EndpointSet {
        EndpointSet {
            key: ObjectKey::new(ns, name),
            service: Some(ObjectKey::new(ns, svc)),
            origin,
            address_type: None,
            ports: vec![],
            endpoints: vec![],
            source: SourceRef::new("e", 1),
        }
    }

    #[test]
    fn selection_is_namespace_local() {
        let mut c = Cluster::default();
        let s = svc("monitoring", "eric-pm-server", &[("app", "eric-pm-server")]);
        c.pods.push(pod(
            "monitoring",
            "eric-pm-server-0",
            &[("app", "eric-pm-server")],
            "192.168.22.247",
        ));
        c.pods.push(pod(
            "evnfm",
            "eric-pm-server-0",
            &[("app", "eric-pm-server")],
            "192.168.188.101",
        ));
        c.pods
            .push(pod("monitoring", "other", &[("app", "x")], "192.168.22.3"));
        let sel: Vec<String> = c.pods_selected_by(&s).map(|p| p.key.to_string()).collect();
        assert_eq!(sel, vec!["monitoring/eric-pm-server-0"]);
        let mut none = svc("monitoring", "manual", &[]);
        assert_eq!(c.pods_selected_by(&none).count(), 0);
        none.selector = None;
        assert_eq!(c.pods_selected_by(&none).count(), 0);
        assert_eq!(
            c.pod_by_ip("192.168.188.101".parse().unwrap())
                .map(|p| p.key.namespace.as_str()),
            Some("evnfm")
        );
    }

    #[test]
    fn endpoints_prefer_slices_and_dedupe_versions() {
        let mut c = Cluster::default();
        c.endpoints
            .push(set("ns", "web", "web", EndpointOrigin::Endpoints));
        let key = ObjectKey::new("ns", "web");
        assert_eq!(c.endpoints_of(&key).len(), 1);
        c.endpoints
            .push(set("ns", "web-abc", "web", EndpointOrigin::SliceV1beta1));
        c.endpoints
            .push(set("ns", "web-abc", "web", EndpointOrigin::SliceV1));
        c.endpoints
            .push(set("ns", "web-def", "web", EndpointOrigin::SliceV1beta1));
        let got: Vec<(String, EndpointOrigin)> = c
            .endpoints_of(&key)
            .iter()
            .map(|e| (e.key.name.clone(), e.origin))
            .collect();
        assert_eq!(
            got,
            vec![
                ("web-abc".to_string(), EndpointOrigin::SliceV1),
                ("web-def".to_string(), EndpointOrigin::SliceV1beta1)
            ]
        );
        assert!(c.endpoints_of(&ObjectKey::new("other", "web")).is_empty());
        c.endpoints
            .push(set("ns", "api", "api", EndpointOrigin::Endpoints));
        let all = c.endpoints_by_service();
        assert_eq!(all.len(), 2);
        for (svc, sets) in &all {
            let one: Vec<*const EndpointSet> = c
                .endpoints_of(svc)
                .into_iter()
                .map(|e| e as *const _)
                .collect();
            let by: Vec<*const EndpointSet> = sets.iter().map(|e| *e as *const _).collect();
            assert_eq!(one, by, "{svc}");
        }
    }

    #[test]
    fn node_owning_ip() {
        let mut c = Cluster::default();
        c.nodes.insert(
            "n1".into(),
            Node {
                name: "n1".into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                internal_ips: vec!["10.0.10.105".parse().unwrap()],
                external_ips: vec![],
                hostname: None,
                conditions: vec![NodeCondition {
                    type_: "NetworkUnavailable".into(),
                    status: "True".into(),
                    reason: None,
                }],
                pod_cidrs: vec!["192.168.22.0/24".parse().unwrap()],
                unschedulable: false,
                source: SourceRef::new("n", 1),
            },
        );
        assert_eq!(
            c.node_owning_ip("10.0.10.105".parse().unwrap(), false)
                .map(|n| n.name.as_str()),
            Some("n1")
        );
        assert!(c
            .node_owning_ip("192.168.22.9".parse().unwrap(), false)
            .is_none());
        assert!(c
            .node_owning_ip("192.168.22.9".parse().unwrap(), true)
            .is_some());
        let n = &c.nodes["n1"];
        assert!(n.network_unavailable());
        assert_eq!(n.ready(), None);
        assert!(!n.excluded_from_lb());
        assert_eq!(c.speaker_nodes(), vec!["n1"]);
    }

    #[test]
    fn target_ports() {
        let mut p = pod("ns", "p", &[], "10.0.0.1");
        p.containers.push(Container {
            name: "c".into(),
            image: None,
            command: vec![],
            args: vec![],
            ports: vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                protocol: "TCP".into(),
                host_port: None,
            }],
        });
        let mut sp = ServicePort {
            name: Some("web".into()),
            protocol: "TCP".into(),
            port: 80,
            target_port: Some(PortRef::Name("http".into())),
            node_port: None,
            source: SourceRef::new("s", 1),
        };
        assert_eq!(sp.target_port_on(&p), Some(8080));
        sp.protocol = "UDP".into();
        assert_eq!(sp.target_port_on(&p), None);
        sp.target_port = None;
        assert_eq!(sp.target_port_on(&p), Some(80));
        let mut set = set("ns", "s", "s", EndpointOrigin::SliceV1);
        set.ports.push(EndpointPort {
            name: Some("web".into()),
            port: Some(8080),
            protocol: "UDP".into(),
        });
        assert_eq!(set.port_for(&sp).and_then(|p| p.port), Some(8080));
        sp.name = None;
        assert!(set.port_for(&sp).is_none());
    }
}
