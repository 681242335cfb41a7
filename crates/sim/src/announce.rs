//! Which nodes announce which LoadBalancer IPs to which BGP peers, and why the others don't.
//!
//! The rules follow MetalLB (ECFE is a fork of it):
//!
//! * **IP assignment** (controller, `internal/allocator/allocator.go`): the IPs in
//!   `status.loadBalancer.ingress` when present; otherwise the requested IPs
//!   (`spec.loadBalancerIP`, annotation `metallb.universe.tf/loadBalancerIPs`), else the first
//!   free address of the pool named by annotation `metallb.universe.tf/address-pool`, else the
//!   first free address of an auto-assign pool. `Allocate` walks a Go map of pools, so with
//!   several auto-assign pools the choice is not deterministic: kubepath predicts the first by
//!   name and says so. Addresses ending in .0/.255 are skipped in `avoid-buggy-ips` pools.
//! * **BGP** (`speaker/bgp_controller.go` `ShouldAnnounce`): with externalTrafficPolicy
//!   Cluster every speaker announces once any endpoint can serve; with Local only speakers
//!   with a serving endpoint on their own node. Endpoint readiness is
//!   `epslices.EndpointCanServe` (ready, nil counting as ready, or serving).
//!   A node with condition NetworkUnavailable=True (from MetalLB v0.13.10), or labelled
//!   `node.kubernetes.io/exclude-from-external-load-balancers` (from v0.14.0; unless the
//!   speaker runs with `--ignore-exclude-lb`), announces nothing (`internal/k8s/nodes`); the
//!   version comes from the speaker's or controller's image tag, else from the configuration
//!   format (a legacy ConfigMap, and ECFE, honour neither). A peering runs only
//!   from nodes matching one of the peer's node selectors (`syncPeers`); an advertisement
//!   applies to the nodes its node selectors match and to the peers it names; ECFE's
//!   `my-address-pools` restricts a peer to the listed pools. The prefix is the IP masked to
//!   the advertisement's aggregation length (default /32, /128).
//! * **Layer 2** (`speaker/layer2_controller.go` `ShouldAnnounce`): among the usable speakers
//!   (not NetworkUnavailable, not excluded, matching an L2Advertisement of the pool; with
//!   Local only those with a serving endpoint) the one whose
//!   `sha256(node + "#" + firstIP)` sorts lowest announces; exactly one node per IP.
//! * A Service whose `spec.loadBalancerClass` differs from the speakers' `--lb-class` (none
//!   by default) is ignored by them.
//!
//! With the routers' BGP tables in the snapshot, the expected paths (peer router, prefix,
//! next hop = the node's address on the peer's subnet) are compared with what the routers
//! hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use kubepath_model::k8s::*;
use kubepath_model::{Model, SourceRef};

/// Annotations MetalLB reads (old `metallb.universe.tf/` and new `metallb.io/` prefixes).
const ANN_IPS: [&str; 2] = [
    "metallb.universe.tf/loadBalancerIPs",
    "metallb.io/loadBalancerIPs",
];
const ANN_POOL: [&str; 2] = [
    "metallb.universe.tf/address-pool",
    "metallb.io/address-pool",
];
const ANN_SHARED: [&str; 2] = [
    "metallb.universe.tf/allow-shared-ip",
    "metallb.io/allow-shared-ip",
];

/// The Service's IP-sharing key (MetalLB lets Services with the same key share an IP).
fn sharing_key(svc: &Service) -> Option<&str> {
    ANN_SHARED
        .iter()
        .find_map(|a| svc.annotations.get(*a))
        .map(String::as_str)
}

/// A Service holding an address, as MetalLB's allocator keeps it (`alloc`: sharing key,
/// backend key, ports).
#[derive(Debug, Clone)]
struct Holder {
    svc: ObjectKey,
    sharing: Option<String>,
    backend: String,
    ports: BTreeSet<(String, i32)>,
}

impl Holder {
    fn of(svc: &Service) -> Holder {
        Holder {
            svc: svc.key.clone(),
            sharing: sharing_key(svc).map(str::to_string),
            backend: backend_key(svc),
            ports: svc
                .ports
                .iter()
                .map(|p| (p.protocol.to_ascii_uppercase(), p.port))
                .collect(),
        }
    }
}

/// MetalLB's backend key (`internal/allocator/k8salloc` `BackendKey`): the selector under
/// externalTrafficPolicy Local (Services sharing an address then need the same endpoints),
/// else empty.
fn backend_key(svc: &Service) -> String {
    if svc.external_traffic_policy != TrafficPolicy::Local {
        return String::new();
    }
    svc.selector
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Why MetalLB's allocator refuses `new` an address `existing` holds, or None when they may
/// share it (metallb/metallb `internal/allocator/allocator.go` `Assign`: `sharingOK` — both
/// have a sharing key, the same one, and the same backend key — and no port (protocol and
/// number) already in use on the address).
fn sharing_refusal(existing: &Holder, new: &Holder) -> Option<String> {
    let why = match (&existing.sharing, &new.sharing) {
        (None, _) => Some(format!(
            "{} does not allow sharing (no allow-shared-ip annotation)",
            existing.svc
        )),
        (_, None) => Some(format!(
            "{} does not allow sharing (no allow-shared-ip annotation)",
            new.svc
        )),
        (Some(a), Some(b)) if a != b => Some(format!(
            "their allow-shared-ip keys differ (`{a}` and `{b}`)"
        )),
        _ if existing.backend != new.backend => Some(
            "under externalTrafficPolicy Local they must select the same pods (MetalLB's backend key), and they do not".to_string(),
        ),
        _ => None,
    };
    if why.is_some() {
        return why;
    }
    let both: Vec<String> = existing
        .ports
        .intersection(&new.ports)
        .map(|(proto, port)| format!("{proto}/{port}"))
        .collect();
    (!both.is_empty()).then(|| format!("both use port {}", both.join(", ")))
}

/// Addresses taken so far -> the Services holding them.
type Used = BTreeMap<IpAddr, Vec<Holder>>;

/// Why `svc` may not use `ip` (None: free, or shared compatibly with every holder).
fn refusal(used: &Used, ip: &IpAddr, svc: &Service) -> Option<String> {
    let me = Holder::of(svc);
    used.get(ip)?
        .iter()
        .filter(|h| h.svc != svc.key)
        .find_map(|h| sharing_refusal(h, &me))
}

/// Whether `svc` may use `ip` (free, or shared compatibly with every holder).
fn may_use(used: &Used, ip: &IpAddr, svc: &Service) -> bool {
    refusal(used, ip, svc).is_none()
}

/// Two LoadBalancer Services whose `status.loadBalancer.ingress` hold the same address that
/// MetalLB's allocator cannot give both: it keeps the one it processes first and refuses the
/// other (which then gets another address, or none). The order is the controller's
/// processing order after a restart, which the snapshot does not show: which one is refused
/// is undecided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingConflict {
    pub ip: IpAddr,
    pub services: (ObjectKey, ObjectKey),
    pub why: String,
}

/// Every [`SharingConflict`] of the model, each pair once.
pub fn sharing_conflicts(model: &Model) -> Vec<SharingConflict> {
    let lbs: Vec<&Service> = model
        .cluster
        .services
        .values()
        .filter(|s| s.type_ == ServiceType::LoadBalancer)
        .collect();
    let mut out = Vec::new();
    for (i, a) in lbs.iter().enumerate() {
        let ips = a.lb_ingress_ips();
        for b in lbs.iter().skip(i + 1) {
            let Some(ip) = b.lb_ingress_ips().into_iter().find(|x| ips.contains(x)) else {
                continue;
            };
            if let Some(why) = sharing_refusal(&Holder::of(a), &Holder::of(b)) {
                out.push(SharingConflict {
                    ip,
                    services: (a.key.clone(), b.key.clone()),
                    why,
                });
            }
        }
    }
    out
}

/// How a Service got its IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpOrigin {
    /// `status.loadBalancer.ingress`.
    Status,
    /// Predicted: the requested IPs (`spec.loadBalancerIP` or the annotation).
    Requested(String),
    /// Predicted: first free address of the pool named by the annotation.
    PoolAnnotation(String),
    /// Predicted: first free address of an auto-assign pool.
    AutoAssign { candidates: Vec<String> },
    /// No IP.
    None,
}

impl IpOrigin {
    pub fn is_prediction(&self) -> bool {
        !matches!(self, IpOrigin::Status | IpOrigin::None)
    }
}

impl fmt::Display for IpOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpOrigin::Status => f.write_str("from status.loadBalancer.ingress"),
            IpOrigin::Requested(how) => write!(f, "predicted: requested by {how}"),
            IpOrigin::PoolAnnotation(p) => {
                write!(f, "predicted: first free address of pool `{p}` (address-pool annotation)")
            }
            IpOrigin::AutoAssign { candidates } if candidates.len() > 1 => write!(
                f,
                "predicted: first free address of auto-assign pool `{}` (MetalLB may pick any of {})",
                candidates[0],
                candidates.join(", ")
            ),
            IpOrigin::AutoAssign { candidates } => write!(
                f,
                "predicted: first free address of auto-assign pool `{}`",
                candidates.first().map(String::as_str).unwrap_or("?")
            ),
            IpOrigin::None => f.write_str("no IP"),
        }
    }
}

/// Why a node does not announce (or why nobody does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No load-balancer configuration in the snapshot.
    NoLbConfig,
    /// The Service has no IP and none can be assigned.
    NoIp(String),
    /// The Service's IP is in no pool.
    IpInNoPool(IpAddr),
    /// The Service's loadBalancerClass is not the speakers'.
    LbClass {
        service: Option<String>,
        speakers: Option<String>,
    },
    /// No advertisement (BGP or L2) covers the pool.
    PoolNotAdvertised(String),
    /// No endpoint of the Service can serve.
    NoServingEndpoint,
    /// externalTrafficPolicy Local and no serving endpoint on this node.
    NoLocalEndpoint(SourceRef),
    /// No speaker pod on this node.
    NoSpeaker,
    /// The speaker pod is not running/ready.
    SpeakerNotRunning(ObjectKey),
    /// Node condition NetworkUnavailable=True.
    NetworkUnavailable(SourceRef),
    /// Node labelled exclude-from-external-load-balancers.
    ExcludedByLabel(SourceRef),
    /// No advertisement of the pool selects this node.
    AdvertisementNodeSelectors(Vec<SourceRef>),
    /// No peer's node selectors select this node.
    NoPeerForNode,
    /// The peers this node talks to only take other pools (ECFE `my-address-pools`).
    PeersBoundToOtherPools(Vec<(IpAddr, Vec<String>)>),
    /// The advertisements name peers this node has no session with.
    AdvertisementPeers(Vec<String>),
    /// L2: another node was elected.
    L2NotElected { winner: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoLbConfig => f.write_str("no load-balancer configuration (MetalLB/ECFE) in the snapshot"),
            Reason::NoIp(why) => write!(f, "the Service has no IP: {why}"),
            Reason::IpInNoPool(ip) => write!(f, "{ip} is in no address pool"),
            Reason::LbClass { service, speakers } => write!(
                f,
                "loadBalancerClass {} is not served by the speakers (they serve {})",
                service.as_deref().unwrap_or("<none>"),
                speakers
                    .as_deref()
                    .map(|c| format!("class {c}"))
                    .unwrap_or_else(|| "Services without a class".into())
            ),
            Reason::PoolNotAdvertised(p) => write!(f, "pool `{p}` is not advertised (no BGP or L2 advertisement covers it)"),
            Reason::NoServingEndpoint => f.write_str("no serving endpoint anywhere"),
            Reason::NoLocalEndpoint(s) => write!(
                f,
                "externalTrafficPolicy Local ({s}) and no serving endpoint on this node"
            ),
            Reason::NoSpeaker => f.write_str("no speaker pod on this node"),
            Reason::SpeakerNotRunning(p) => write!(f, "speaker pod {p} is not running and ready"),
            Reason::NetworkUnavailable(s) => write!(f, "node condition NetworkUnavailable=True ({s})"),
            Reason::ExcludedByLabel(s) => write!(
                f,
                "node labelled {LABEL_EXCLUDE_FROM_LB} ({s}) and the speakers lack --ignore-exclude-lb"
            ),
            Reason::AdvertisementNodeSelectors(srcs) => write!(
                f,
                "no advertisement of the pool selects this node (node selectors at {})",
                srcs.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Reason::NoPeerForNode => f.write_str("no BGP peer's node selectors select this node"),
            Reason::PeersBoundToOtherPools(peers) => write!(
                f,
                "its peers are bound to other pools: {}",
                peers
                    .iter()
                    .map(|(p, pools)| format!("{p} takes [{}]", pools.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Reason::AdvertisementPeers(p) => write!(
                f,
                "the pool's advertisements only name peers [{}], none of which this node peers with",
                p.join(", ")
            ),
            Reason::L2NotElected { winner } => write!(f, "layer 2: {winner} was elected to announce"),
        }
    }
}

impl Reason {
    /// A short stable code for machine output.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoLbConfig => "no-lb-config",
            Reason::NoIp(_) => "no-ip",
            Reason::IpInNoPool(_) => "ip-in-no-pool",
            Reason::LbClass { .. } => "lb-class",
            Reason::PoolNotAdvertised(_) => "pool-not-advertised",
            Reason::NoServingEndpoint => "no-serving-endpoint",
            Reason::NoLocalEndpoint(_) => "no-local-endpoint",
            Reason::NoSpeaker => "no-speaker",
            Reason::SpeakerNotRunning(_) => "speaker-not-running",
            Reason::NetworkUnavailable(_) => "network-unavailable",
            Reason::ExcludedByLabel(_) => "excluded-by-label",
            Reason::AdvertisementNodeSelectors(_) => "advertisement-node-selectors",
            Reason::NoPeerForNode => "no-peer-for-node",
            Reason::PeersBoundToOtherPools(_) => "peers-bound-to-other-pools",
            Reason::AdvertisementPeers(_) => "advertisement-peers",
            Reason::L2NotElected { .. } => "l2-not-elected",
        }
    }
}

/// One route a node advertises to one peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteAd {
    pub prefix: IpNet,
    pub node: String,
    /// The node's address on the peer's subnet (the next hop the router should see), when
    /// the node's `ip addr` is in the snapshot.
    pub next_hop: Option<IpAddr>,
}

/// A path on a router, for the comparison with the expected announcements.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouterPath {
    pub router: String,
    pub vrf: String,
    pub peer: IpAddr,
    pub prefix: IpNet,
    pub next_hop: Option<IpAddr>,
    pub node: Option<String>,
    pub source: Option<SourceRef>,
}

/// Expected vs. observed paths on the routers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterCheck {
    /// (router, vrf) pairs whose BGP table was compared.
    pub compared: Vec<(String, String)>,
    pub missing: Vec<RouterPath>,
    pub unexplained: Vec<RouterPath>,
    /// Expected paths the table does not show, where the table itself is unreliable (lines
    /// skipped by the reader that may be about the prefix, a printed route count that the
    /// paths read do not reach): with why (the file:line). Not in `missing`.
    pub undecided: Vec<(RouterPath, String)>,
    /// Why parts could not be compared.
    pub notes: Vec<String>,
}

/// The answer for one LoadBalancer Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAnnouncement {
    pub service: ObjectKey,
    pub source: SourceRef,
    pub ips: Vec<IpAddr>,
    pub ip_origin: IpOrigin,
    pub pool: Option<String>,
    pub pool_source: Option<SourceRef>,
    /// Modes the pool is advertised in (empty when it is not advertised).
    pub modes: Vec<LbMode>,
    pub announcing_nodes: Vec<String>,
    /// Peer address -> routes.
    pub routes: BTreeMap<IpAddr, Vec<RouteAd>>,
    /// Layer 2: IP -> the elected node.
    pub l2_owners: BTreeMap<IpAddr, String>,
    pub not_announcing: BTreeMap<String, Reason>,
    /// Why nobody announces, when that is a property of the Service.
    pub blocked: Option<Reason>,
    pub router_check: Option<RouterCheck>,
    pub notes: Vec<String>,
}

impl ServiceAnnouncement {
    /// `bgp`, `l2`, `bgp+l2` or `none`.
    pub fn mode_name(&self) -> String {
        if self.modes.is_empty() {
            "none".into()
        } else {
            self.modes
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join("+")
        }
    }
}

/// Compute the announcements of every LoadBalancer Service (or only `only`).
pub fn announce(model: &Model, only: Option<&ObjectKey>) -> Vec<ServiceAnnouncement> {
    let c = &model.cluster;
    let lb = &c.lb;
    // Addresses in use (status) and assignments predicted so far, in Service order.
    let mut used: Used = BTreeMap::new();
    for s in c
        .services
        .values()
        .filter(|s| s.type_ == ServiceType::LoadBalancer)
    {
        for ip in s.lb_ingress_ips() {
            used.entry(ip).or_default().push(Holder::of(s));
        }
    }
    let conflicts = sharing_conflicts(model);
    let mut out = Vec::new();
    for svc in c.services.values() {
        if svc.type_ != ServiceType::LoadBalancer {
            continue;
        }
        let (ips, origin, pool, block) = assign(svc, lb, &used);
        for ip in &ips {
            let hs = used.entry(*ip).or_default();
            if !hs.iter().any(|h| h.svc == svc.key) {
                hs.push(Holder::of(svc));
            }
        }
        if only.is_some_and(|k| *k != svc.key) {
            continue;
        }
        let mut a = announce_service(model, svc, ips, origin, pool, block);
        for x in conflicts
            .iter()
            .filter(|x| x.services.0 == svc.key || x.services.1 == svc.key)
        {
            let other = if x.services.0 == svc.key {
                &x.services.1
            } else {
                &x.services.0
            };
            a.notes.push(format!(
                "undecided: {other} holds {} too, and MetalLB cannot give it to both ({}): its controller keeps the Service it processes first and re-assigns the other; the order is not in the snapshot, so this Service may lose the address",
                x.ip, x.why
            ));
        }
        out.push(a);
    }
    out
}

/// The shortest prefix length of the CIDRs MetalLB summarises a pool range into
/// (`cidrsPerAddresses`, `lowestMask`).
fn lowest_mask(r: &AddrRange) -> Option<u8> {
    match (r.first, r.last) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => ipnet::Ipv4Subnets::new(a, b, 0)
            .map(|n| n.prefix_len())
            .min(),
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => ipnet::Ipv6Subnets::new(a, b, 0)
            .map(|n| n.prefix_len())
            .min(),
        _ => None,
    }
}

/// BGP advertisements MetalLB refuses, and why. Refusing one refuses the whole
/// configuration: the controller and speakers keep the one they loaded before (none after a
/// restart), which the snapshot does not hold.
///
/// metallb/metallb `internal/config/config.go`: `bgpAdvertisementFromCR` ("invalid
/// aggregation length %q for IPv4" above 32, "... for IPv6" above 128) and
/// `validateBGPAdvPerPool`, called for every pool the advertisement carries by
/// `setBGPAdvertisementsToPools`: for each address of the pool, the lowest mask of its CIDRs
/// must not be longer than the aggregation length ("invalid aggregation length %d: prefix %d
/// in this pool is more specific than the aggregation length for addresses %s").
pub fn invalid_bgp_ads(lb: &LoadBalancer) -> Vec<(&BgpAdvertisement, String)> {
    let mut out = Vec::new();
    for ad in &lb.bgp_advertisements {
        let v4 = ad.aggregation_length.unwrap_or(32);
        let v6 = ad.aggregation_length_v6.unwrap_or(128);
        if v4 > 32 {
            out.push((ad, format!("invalid aggregation length {v4} for IPv4")));
            continue;
        }
        if v6 > 128 {
            out.push((ad, format!("invalid aggregation length {v6} for IPv6")));
            continue;
        }
        let mut bad = None;
        'pools: for pool in lb
            .pools
            .iter()
            .filter(|p| ad_covers_pool(&ad.pools, &ad.pool_selectors, p))
        {
            for r in &pool.ranges {
                let Some(lowest) = lowest_mask(r) else {
                    continue;
                };
                let max = if r.first.is_ipv4() { v4 } else { v6 };
                if max < lowest {
                    bad = Some(format!(
                        "invalid aggregation length {max}: prefix {lowest} in pool `{}` is more specific than the aggregation length for addresses {}",
                        pool.name, r.text
                    ));
                    break 'pools;
                }
            }
        }
        if let Some(b) = bad {
            out.push((ad, b));
        }
    }
    out
}

fn serves_class(svc: &Service, class: &Option<String>) -> bool {
    svc.load_balancer_class == *class
}

fn pool_for_ip(lb: &LoadBalancer, ip: IpAddr) -> Option<&Pool> {
    lb.pools
        .iter()
        .find(|p| p.contains(ip) && !(p.avoid_buggy_ips && buggy(ip)))
}

/// An IPv4 address ending in .0 or .255 (MetalLB `ipConfusesBuggyFirmwares`).
fn buggy(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => matches!(v4.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

fn first_free(pool: &Pool, used: &Used, svc: &Service) -> Option<IpAddr> {
    for r in &pool.ranges {
        match (r.first, r.last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let (a, b) = (u32::from(a), u32::from(b));
                // Bounded walk: pools are small; stop after 1<<20 candidates.
                for n in a..=b.min(a.saturating_add(1 << 20)) {
                    let ip = IpAddr::V4(n.into());
                    if (!pool.avoid_buggy_ips || !buggy(ip)) && may_use(used, &ip, svc) {
                        return Some(ip);
                    }
                }
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let (a, b) = (u128::from(a), u128::from(b));
                for n in a..=b.min(a.saturating_add(1 << 20)) {
                    let ip = IpAddr::V6(n.into());
                    if may_use(used, &ip, svc) {
                        return Some(ip);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

type Assignment<'a> = (Vec<IpAddr>, IpOrigin, Option<&'a Pool>, Option<Reason>);

/// The IPs a Service asks for, and how: the loadBalancerIPs annotation (metallb.io or the
/// older metallb.universe.tf), else `spec.loadBalancerIP`.
pub fn requested_ips(svc: &Service) -> (Vec<IpAddr>, String) {
    for a in ANN_IPS {
        if let Some(v) = svc.annotations.get(a) {
            let ips = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
            return (ips, format!("annotation {a}"));
        }
    }
    match svc.load_balancer_ip {
        Some(ip) => (vec![ip], "spec.loadBalancerIP".into()),
        None => (Vec::new(), String::new()),
    }
}

/// Why MetalLB refuses the Service's loadBalancerIPs annotation, if it does
/// (metallb/metallb `controller/service.go` `getDesiredLbIPs`: every comma-separated entry
/// must parse as an address, and `internal/ipfamily` `ForAddressesIPs` takes one address, or
/// two of different families; `allocateIPs`: their family must be the Service's, dual stack
/// only with two ClusterIPs).
pub fn requested_ips_invalid(svc: &Service) -> Option<String> {
    let (a, v) = ANN_IPS
        .iter()
        .find_map(|a| svc.annotations.get(*a).map(|v| (*a, v)))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for part in v.split(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                return Some(format!(
                    "annotation {a} `{v}` is invalid: `{}` is not an address",
                    part.trim()
                ))
            }
        }
    }
    match ips[..] {
        [_] => None,
        [x, y] if x.is_ipv4() == y.is_ipv4() => Some(format!(
            "annotation {a} `{v}` is invalid: two addresses of the same family (MetalLB ipfamily.ForAddressesIPs: \"same address family\")"
        )),
        [_, _] if svc.cluster_ips.len() < 2 => Some(format!(
            "annotation {a} `{v}` asks for both families, but the Service is single-stack (one ClusterIP): MetalLB refuses it (\"requested loadBalancer IP(s) ... does not match the ipFamily of the service\")"
        )),
        [_, _] => None,
        _ => Some(format!(
            "annotation {a} `{v}` is invalid: {} addresses (MetalLB ipfamily.ForAddressesIPs: \"invalid ips length\"; one, or one of each family)",
            ips.len()
        )),
    }
}

fn assign<'a>(svc: &Service, lb: &'a LoadBalancer, used: &Used) -> Assignment<'a> {
    let status = svc.lb_ingress_ips();
    if !status.is_empty() {
        return assign_from_status(svc, lb, status);
    }
    if !lb.is_configured() {
        return (vec![], IpOrigin::None, None, Some(Reason::NoLbConfig));
    }
    if !serves_class(svc, &lb.speakers.controller_lb_class) {
        return (
            vec![],
            IpOrigin::None,
            None,
            Some(Reason::NoIp(format!(
                "its loadBalancerClass {} is not the controller's, so no IP is assigned",
                svc.load_balancer_class.as_deref().unwrap_or("<none>")
            ))),
        );
    }
    // Requested IPs (controller/service.go getDesiredLbIPs).
    let (requested, how) = requested_ips(svc);
    if !requested.is_empty() && svc.load_balancer_ip.is_some() && how.starts_with("annotation") {
        // "service can not have both metallb.universe.tf/loadBalancerIPs and
        // svc.Spec.LoadBalancerIP": the Service stays pending.
        return (
            vec![],
            IpOrigin::None,
            None,
            Some(Reason::NoIp(format!(
                "it sets both {how} and spec.loadBalancerIP, which MetalLB refuses: no IP is assigned"
            ))),
        );
    }
    if let Some(why) = requested_ips_invalid(svc) {
        return (
            vec![],
            IpOrigin::None,
            None,
            Some(Reason::NoIp(format!("{why}: no IP is assigned"))),
        );
    }
    if !requested.is_empty() {
        return assign_requested(svc, lb, used, requested, how);
    }
    if let Some(a) = assign_from_pool_annotation(svc, lb, used) {
        return a;
    }
    auto_assign(svc, lb, used)
}

/// The assignment of a Service whose status already holds `status` (not empty): the status is
/// what is in use, unless an address-pool annotation names a pool that does not exist.
fn assign_from_status<'a>(
    svc: &Service,
    lb: &'a LoadBalancer,
    status: Vec<IpAddr>,
) -> Assignment<'a> {
    if lb.is_configured() {
        // metallb/metallb `controller/service.go` `convergeBalancer`: an address-pool
        // annotation naming another pool than the one the address came from clears the
        // Service's state ("differentPoolRequested", status included), and `allocateIPs`
        // then fails for a pool that does not exist ("unknown pool"): the Service has no IP.
        if let Some((a, name)) = pool_annotation(svc) {
            if lb.pool(name).is_none() {
                return (
                    vec![],
                    IpOrigin::None,
                    None,
                    Some(Reason::NoIp(format!(
                        "annotation {a} names pool `{name}`, which does not exist: MetalLB clears status.loadBalancer.ingress ({}) and the allocation fails (\"unknown pool\"), so nothing is announced",
                        status.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
                    ))),
                );
            }
        }
    }
    let pool = status.iter().find_map(|ip| pool_for_ip(lb, *ip));
    let block = if pool.is_none() && lb.is_configured() {
        Some(Reason::IpInNoPool(status[0]))
    } else {
        None
    };
    (status, IpOrigin::Status, pool, block)
}

/// The assignment of the IPs a Service requests (`requested`, not empty, asked for by `how`):
/// MetalLB's `Assign` refuses an IP in no pool, outside the pool an annotation names, or held
/// by a Service it may not share with.
fn assign_requested<'a>(
    svc: &Service,
    lb: &'a LoadBalancer,
    used: &Used,
    requested: Vec<IpAddr>,
    how: String,
) -> Assignment<'a> {
    let pool = pool_for_ip(lb, requested[0]);
    if pool.is_none() {
        // allocator.Assign: "... is not allowed in config": no IP, nothing announced.
        return (
            vec![],
            IpOrigin::None,
            None,
            Some(Reason::NoIp(format!(
                "{how} requests {}, which is in no address pool: MetalLB leaves the Service pending",
                requested[0]
            ))),
        );
    }
    if let Some((a, want)) = ANN_POOL
        .iter()
        .find_map(|a| svc.annotations.get(*a).map(|v| (a, v)))
    {
        if pool.is_some_and(|p| &p.name != want) {
            return (
                vec![],
                IpOrigin::None,
                pool,
                Some(Reason::NoIp(format!(
                    "{how} requests {}, which is not in pool `{want}` named by annotation {a}: MetalLB refuses the combination",
                    requested[0]
                ))),
            );
        }
    }
    if let Some((taken, why)) = requested
        .iter()
        .find_map(|ip| refusal(used, ip, svc).map(|w| (ip, w)))
    {
        // MetalLB's Assign refuses an address another Service holds unless they may
        // share it: the Service stays without an IP.
        return (
            vec![],
            IpOrigin::None,
            pool,
            Some(Reason::NoIp(format!(
                "{how} requests {taken}, which another Service already uses and MetalLB refuses to share: {why}"
            ))),
        );
    }
    let block = pool.is_none().then(|| Reason::IpInNoPool(requested[0]));
    (requested, IpOrigin::Requested(how), pool, block)
}

/// The first free address of the pool an address-pool annotation names, if the Service has
/// such an annotation (`None` when it has none).
fn assign_from_pool_annotation<'a>(
    svc: &Service,
    lb: &'a LoadBalancer,
    used: &Used,
) -> Option<Assignment<'a>> {
    for a in ANN_POOL {
        if let Some(name) = svc.annotations.get(a) {
            let Some(pool) = lb.pool(name) else {
                return Some((
                    vec![],
                    IpOrigin::None,
                    None,
                    Some(Reason::NoIp(format!(
                        "annotation {a} names pool `{name}`, which does not exist"
                    ))),
                ));
            };
            return Some(match first_free(pool, used, svc) {
                Some(ip) => (
                    vec![ip],
                    IpOrigin::PoolAnnotation(name.clone()),
                    Some(pool),
                    None,
                ),
                None => (
                    vec![],
                    IpOrigin::None,
                    Some(pool),
                    Some(Reason::NoIp(format!("pool `{name}` has no free address"))),
                ),
            });
        }
    }
    None
}

/// The first free address of the first auto-assign pool (by name) that has one.
fn auto_assign<'a>(svc: &Service, lb: &'a LoadBalancer, used: &Used) -> Assignment<'a> {
    let mut auto: Vec<&Pool> = lb.pools.iter().filter(|p| p.auto_assign).collect();
    auto.sort_by(|a, b| a.name.cmp(&b.name));
    let with_free: Vec<(&Pool, IpAddr)> = auto
        .iter()
        .filter_map(|p| first_free(p, used, svc).map(|ip| (*p, ip)))
        .collect();
    match with_free.first() {
        Some((pool, ip)) => (
            vec![*ip],
            IpOrigin::AutoAssign {
                candidates: with_free.iter().map(|(p, _)| p.name.clone()).collect(),
            },
            Some(*pool),
            None,
        ),
        None => (
            vec![],
            IpOrigin::None,
            None,
            Some(Reason::NoIp(if auto.is_empty() {
                "no auto-assign pool and no requested IP or pool annotation".into()
            } else {
                "every auto-assign pool is full".into()
            })),
        ),
    }
}

/// The pool named by the Service's address-pool annotation, with the annotation's name.
pub fn pool_annotation(svc: &Service) -> Option<(&'static str, &str)> {
    ANN_POOL
        .iter()
        .find_map(|a| svc.annotations.get(*a).map(|v| (*a, v.as_str())))
}

/// Whether an advertisement with these pool names and selectors carries `pool` (MetalLB
/// `setBGPAdvertisementsToPools`: neither names nor selectors = every pool).
pub fn ad_covers_pool(pools: &[String], selectors: &[LabelSelector], pool: &Pool) -> bool {
    if pools.is_empty() && selectors.is_empty() {
        return true;
    }
    pools.contains(&pool.name) || selectors.iter().any(|s| s.matches(&pool.labels))
}

/// Serving endpoints of a Service: node names that host one (None = unknown node), and
/// whether the endpoint information came from Endpoints/EndpointSlices or from pods.
struct Serving {
    any: bool,
    nodes: BTreeSet<String>,
    note: Option<String>,
}

fn serving(model: &Model, svc: &Service) -> Serving {
    let c = &model.cluster;
    let sets = c.endpoints_of(&svc.key);
    if !sets.is_empty() {
        // MetalLB's hasHealthyEndpoint: an address unready anywhere counts as unready.
        let mut ready: BTreeMap<IpAddr, (bool, Option<String>)> = BTreeMap::new();
        for set in sets {
            for e in &set.endpoints {
                for a in &e.addresses {
                    let entry = ready.entry(*a).or_insert((true, e.node_name.clone()));
                    if !e.can_serve() {
                        entry.0 = false;
                    }
                }
            }
        }
        let nodes: BTreeSet<String> = ready
            .values()
            .filter(|(r, _)| *r)
            .filter_map(|(_, n)| n.clone())
            .collect();
        return Serving {
            any: ready.values().any(|(r, _)| *r),
            nodes,
            note: None,
        };
    }
    // No Endpoints/EndpointSlice for this Service in the snapshot: the API server always has
    // one for a Service with a selector, so it was not collected. Derive from the pods.
    let pods: Vec<&Pod> = c.pods_selected_by(svc).collect();
    let ok: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.ready == Some(true) && !p.terminating && !p.pod_ips.is_empty())
        .collect();
    Serving {
        any: !ok.is_empty(),
        nodes: ok.iter().filter_map(|p| p.node_name.clone()).collect(),
        note: Some(format!(
            "no Endpoints/EndpointSlice for {} in the snapshot: serving endpoints derived from the {} ready pod(s) its selector matches",
            svc.key,
            ok.len()
        )),
    }
}

fn announce_service(
    model: &Model,
    svc: &Service,
    ips: Vec<IpAddr>,
    origin: IpOrigin,
    pool: Option<&Pool>,
    mut block: Option<Reason>,
) -> ServiceAnnouncement {
    let lb = &model.cluster.lb;
    let mut notes = service_notes(lb, svc, &ips, &origin);
    let ads = PoolAds::of(lb, pool);
    if let Some(pool) = pool {
        if ads.modes.is_empty() && block.is_none() {
            block = Some(Reason::PoolNotAdvertised(pool.name.clone()));
        }
    } else if block.is_none() && !ips.is_empty() {
        block = Some(Reason::IpInNoPool(ips[0]));
    }
    if block.is_none() && !serves_class(svc, &lb.speakers.lb_class) {
        block = Some(Reason::LbClass {
            service: svc.load_balancer_class.clone(),
            speakers: lb.speakers.lb_class.clone(),
        });
    }
    let srv = serving(model, svc);
    notes.extend(srv.note.clone());
    if block.is_none() && !srv.any {
        block = Some(Reason::NoServingEndpoint);
    }
    if block.is_none() && ips.is_empty() {
        block = Some(Reason::NoIp("none assigned".into()));
    }

    let mut nodes = NodeDecisions::default();
    if let Some(b) = &block {
        for n in &all_nodes(model) {
            nodes.not_announcing.insert(n.clone(), b.clone());
        }
    } else if let Some(pool) = pool {
        nodes.decide(model, svc, pool, &ads, &srv, &ips);
    }
    let NodeDecisions {
        not_announcing,
        mut routes,
        announcing,
        l2_owners,
    } = nodes;
    for v in routes.values_mut() {
        v.sort();
        v.dedup();
    }
    let router_check = if model.routers.is_empty() {
        None
    } else {
        Some(check_routers(model, svc, pool, &ips, &ads.bgp, &routes))
    };
    ServiceAnnouncement {
        service: svc.key.clone(),
        source: svc.source.clone(),
        ips,
        ip_origin: origin,
        pool: pool.map(|p| p.name.clone()),
        pool_source: pool.map(|p| p.source.clone()),
        modes: ads.modes,
        announcing_nodes: announcing.into_iter().collect(),
        routes,
        l2_owners,
        not_announcing,
        blocked: block,
        router_check,
        notes,
    }
}

/// The notes about a Service's announcement that precede the nodes' decisions: the speakers'
/// version, a predicted IP, a status that differs from the requested IPs, and a refused
/// load-balancer configuration.
fn service_notes(
    lb: &LoadBalancer,
    svc: &Service,
    ips: &[IpAddr],
    origin: &IpOrigin,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(n) = version_note(lb) {
        notes.push(n);
    }
    if origin.is_prediction() {
        notes.push(format!("the Service's status has no IP; {origin}"));
    }
    if *origin == IpOrigin::Status {
        let (requested, how) = requested_ips(svc);
        if !requested.is_empty() && requested.iter().any(|r| !ips.contains(r)) {
            notes.push(format!(
                "finding: status.loadBalancer.ingress holds {} but {how} requests {}: the status is what is in use (MetalLB would clear and re-assign it on its next sync)",
                ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
                requested.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let invalid = invalid_bgp_ads(lb);
    if !invalid.is_empty() {
        notes.push(format!(
            "MetalLB refuses the load-balancer configuration ({}): the speakers keep an earlier configuration that the snapshot does not hold; the routes below follow the snapshot's without the refused aggregation",
            invalid
                .iter()
                .map(|(a, why)| format!("BGPAdvertisement {}: {why}", a.name.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    notes
}

/// The advertisements that cover a Service's pool, and the modes they advertise it in.
#[derive(Default)]
struct PoolAds<'a> {
    bgp: Vec<&'a BgpAdvertisement>,
    l2: Vec<&'a L2Advertisement>,
    /// BGP and/or layer 2, in that order; empty when the pool is not advertised.
    modes: Vec<LbMode>,
}

impl<'a> PoolAds<'a> {
    fn of(lb: &'a LoadBalancer, pool: Option<&Pool>) -> PoolAds<'a> {
        let mut ads = PoolAds::default();
        if let Some(pool) = pool {
            ads.bgp = lb
                .bgp_advertisements
                .iter()
                .filter(|a| ad_covers_pool(&a.pools, &a.pool_selectors, pool))
                .collect();
            ads.l2 = lb
                .l2_advertisements
                .iter()
                .filter(|a| ad_covers_pool(&a.pools, &a.pool_selectors, pool))
                .collect();
            if !ads.bgp.is_empty() {
                ads.modes.push(LbMode::Bgp);
            }
            if !ads.l2.is_empty() {
                ads.modes.push(LbMode::Layer2);
            }
        }
        ads
    }
}

/// Every node: Node objects, `nodes/<name>/` directories, speaker locations.
fn all_nodes(model: &Model) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = model.cluster.nodes.keys().cloned().collect();
    all.extend(model.nodes.keys().cloned());
    all.extend(
        model
            .cluster
            .lb
            .speakers
            .pods
            .iter()
            .map(|s| s.node.clone()),
    );
    all
}

/// Which nodes announce a Service's IPs (with their routes per peer, or the layer-2 owner of
/// each IP), and why each other node does not.
#[derive(Default)]
struct NodeDecisions {
    not_announcing: BTreeMap<String, Reason>,
    /// Peer address -> routes (not yet sorted).
    routes: BTreeMap<IpAddr, Vec<RouteAd>>,
    announcing: BTreeSet<String>,
    l2_owners: BTreeMap<IpAddr, String>,
}

impl NodeDecisions {
    /// Decides every node for a Service nothing blocks, whose IPs are in `pool`.
    fn decide(
        &mut self,
        model: &Model,
        svc: &Service,
        pool: &Pool,
        ads: &PoolAds<'_>,
        srv: &Serving,
        ips: &[IpAddr],
    ) {
        // Node eligibility common to both modes.
        let mut eligible: Vec<&str> = Vec::new();
        let all = all_nodes(model);
        for n in &all {
            match node_block(model, svc, n, srv) {
                Some(r) => {
                    self.not_announcing.insert(n.clone(), r);
                }
                None => eligible.push(n),
            }
        }
        if ads.modes.contains(&LbMode::Bgp) {
            self.bgp(model, pool, ads, &eligible, ips);
        }
        if ads.modes.contains(&LbMode::Layer2) {
            self.layer2(model, ads, &eligible, ips);
        }
    }

    /// BGP: every eligible node with a session that takes the routes announces them.
    fn bgp(
        &mut self,
        model: &Model,
        pool: &Pool,
        ads: &PoolAds<'_>,
        eligible: &[&str],
        ips: &[IpAddr],
    ) {
        for n in eligible {
            match bgp_routes(model, pool, &ads.bgp, n, ips) {
                Ok(rs) => {
                    self.announcing.insert(n.to_string());
                    for (peer, r) in rs {
                        self.routes.entry(peer).or_default().push(r);
                    }
                }
                Err(r) => {
                    if !ads.modes.contains(&LbMode::Layer2) {
                        self.not_announcing.insert(n.to_string(), r);
                    }
                }
            }
        }
    }

    /// Layer 2: the eligible nodes an L2Advertisement's node selectors match are candidates,
    /// and the election picks one of them to own every IP.
    fn layer2(&mut self, model: &Model, ads: &PoolAds<'_>, eligible: &[&str], ips: &[IpAddr]) {
        let candidates: Vec<&str> = eligible
            .iter()
            .copied()
            .filter(|n| {
                let labels = model
                    .cluster
                    .nodes
                    .get(*n)
                    .map(|x| x.labels.clone())
                    .unwrap_or_default();
                ads.l2
                    .iter()
                    .any(|a| any_selector_matches(&a.node_selectors, &labels))
            })
            .collect();
        for n in eligible {
            if !candidates.contains(n) && !self.announcing.contains(*n) {
                self.not_announcing.insert(
                    n.to_string(),
                    Reason::AdvertisementNodeSelectors(
                        ads.l2.iter().map(|a| a.source.clone()).collect(),
                    ),
                );
            }
        }
        let Some(first) = ips.first() else {
            return;
        };
        let Some(winner) = l2_winner(&candidates, *first) else {
            return;
        };
        self.announcing.insert(winner.to_string());
        self.not_announcing.remove(winner);
        for ip in ips {
            self.l2_owners.insert(*ip, winner.to_string());
        }
        for n in &candidates {
            if *n != winner && !self.announcing.contains(*n) {
                self.not_announcing.insert(
                    n.to_string(),
                    Reason::L2NotElected {
                        winner: winner.to_string(),
                    },
                );
            }
        }
    }
}

/// Reasons that keep a node from announcing in any mode.
/// Which node exclusions the speakers honour, by version (MetalLB's git history): the
/// NetworkUnavailable condition from v0.13.10 (`internal/k8s/nodes`), the
/// `node.kubernetes.io/exclude-from-external-load-balancers` label from v0.14.0. Without a
/// version from an image: a legacy ConfigMap (MetalLB v0.9-v0.12, and ECFE, its fork) honours
/// neither; a CRD configuration is taken as current (both).
fn honours(lb: &LoadBalancer) -> (bool, bool) {
    match lb.speakers.version {
        Some(v) => (v >= (0, 13, 10), v >= (0, 14, 0)),
        None => {
            let legacy = !lb.configs.is_empty()
                && lb
                    .configs
                    .iter()
                    .all(|(f, _)| matches!(f, LbFlavor::MetallbConfigMap | LbFlavor::Ecfe));
            (!legacy, !legacy)
        }
    }
}

/// The note that says which version the node exclusions follow, and why.
fn version_note(lb: &LoadBalancer) -> Option<String> {
    let (u, e) = honours(lb);
    let what = match (u, e) {
        (true, true) => "nodes with NetworkUnavailable=True or the exclude-from-external-load-balancers label announce nothing",
        (true, false) => "nodes with NetworkUnavailable=True announce nothing; the exclude-from-external-load-balancers label is not honoured before v0.14.0",
        (false, _) => "the NetworkUnavailable condition (v0.13.10) and the exclude-from-external-load-balancers label (v0.14.0) are not honoured",
    };
    Some(match (lb.speakers.version, &lb.speakers.version_source) {
        (Some((a, b, c)), Some(src)) => format!("MetalLB v{a}.{b}.{c} (image of {src}): {what}"),
        (Some((a, b, c)), None) => format!("MetalLB v{a}.{b}.{c}: {what}"),
        (None, _) if !u => format!(
            "no speaker or controller image gives a version; the legacy ConfigMap configuration means MetalLB v0.9-v0.12 (or ECFE): {what}"
        ),
        (None, _) => {
            if lb.configs.is_empty() {
                return None;
            }
            format!("no speaker or controller image gives a version; CRDs are taken as a current MetalLB: {what}")
        }
    })
}

fn node_block(model: &Model, svc: &Service, node: &str, srv: &Serving) -> Option<Reason> {
    let c = &model.cluster;
    let lb = &c.lb;
    if !lb.speakers.assumed_all_nodes {
        match lb.speakers.pods.iter().find(|s| s.node == node) {
            None => return Some(Reason::NoSpeaker),
            Some(s) if !s.running => return Some(Reason::SpeakerNotRunning(s.pod.clone())),
            Some(_) => {}
        }
    }
    if let Some(n) = c.nodes.get(node) {
        let (unavailable, exclude) = honours(lb);
        if unavailable && n.network_unavailable() {
            return Some(Reason::NetworkUnavailable(n.source.clone()));
        }
        if exclude && n.excluded_from_lb() && !lb.speakers.ignore_exclude_lb {
            return Some(Reason::ExcludedByLabel(n.source.clone()));
        }
    }
    if svc.external_traffic_policy == TrafficPolicy::Local && !srv.nodes.contains(node) {
        return Some(Reason::NoLocalEndpoint(
            svc.external_traffic_policy_source.clone(),
        ));
    }
    None
}

fn node_labels(model: &Model, node: &str) -> BTreeMap<String, String> {
    model
        .cluster
        .nodes
        .get(node)
        .map(|n| n.labels.clone())
        .unwrap_or_default()
}

fn mask(ip: IpAddr, len: Option<u8>) -> IpNet {
    let (len, max) = match ip {
        IpAddr::V4(_) => (len.unwrap_or(32), 32),
        IpAddr::V6(_) => (len.unwrap_or(128), 128),
    };
    IpNet::new(ip, len.min(max))
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(ip))
}

/// The routes `node` advertises for `ips`, per peer, or why none.
fn bgp_routes(
    model: &Model,
    pool: &Pool,
    ads: &[&BgpAdvertisement],
    node: &str,
    ips: &[IpAddr],
) -> Result<Vec<(IpAddr, RouteAd)>, Reason> {
    let lb = &model.cluster.lb;
    let labels = node_labels(model, node);
    let node_ads: Vec<&&BgpAdvertisement> = ads
        .iter()
        .filter(|a| any_selector_matches(&a.node_selectors, &labels))
        .collect();
    if node_ads.is_empty() {
        return Err(Reason::AdvertisementNodeSelectors(
            ads.iter().map(|a| a.source.clone()).collect(),
        ));
    }
    let peers: Vec<&Peer> = lb
        .peers
        .iter()
        .filter(|p| any_selector_matches(&p.node_selectors, &labels))
        .collect();
    if peers.is_empty() {
        return Err(Reason::NoPeerForNode);
    }
    let pool_peers: Vec<&&Peer> = peers
        .iter()
        .filter(|p| {
            p.my_address_pools
                .as_ref()
                .is_none_or(|pools| pools.contains(&pool.name))
        })
        .collect();
    if pool_peers.is_empty() {
        return Err(Reason::PeersBoundToOtherPools(
            peers
                .iter()
                .map(|p| (p.address, p.my_address_pools.clone().unwrap_or_default()))
                .collect(),
        ));
    }
    let invalid = invalid_bgp_ads(lb);
    let mut out = Vec::new();
    for ad in &node_ads {
        for p in &pool_peers {
            let named =
                ad.peers.is_empty() || p.name.as_ref().is_some_and(|n| ad.peers.contains(n));
            if !named {
                continue;
            }
            for ip in ips {
                // An aggregation MetalLB refuses is not what any speaker runs with.
                let agg = if invalid.iter().any(|(x, _)| std::ptr::eq(*x, **ad)) {
                    None
                } else {
                    match ip {
                        IpAddr::V4(_) => ad.aggregation_length,
                        IpAddr::V6(_) => ad.aggregation_length_v6,
                    }
                };
                out.push((
                    p.address,
                    RouteAd {
                        prefix: mask(*ip, agg),
                        node: node.to_string(),
                        next_hop: node_address_toward(model, node, p),
                    },
                ));
            }
        }
    }
    if out.is_empty() {
        let mut names: Vec<String> = node_ads.iter().flat_map(|a| a.peers.clone()).collect();
        names.sort();
        names.dedup();
        return Err(Reason::AdvertisementPeers(names));
    }
    Ok(out)
}

/// The node's address on the peer's subnet (from its `ip addr`), else the peer's
/// `source-address`.
pub fn node_address_toward(model: &Model, node: &str, peer: &Peer) -> Option<IpAddr> {
    if let Some(net) = model.nodes.get(node) {
        for i in &net.interfaces {
            for a in &i.addresses {
                if a.address.contains(&peer.address) && a.address.addr() != peer.address {
                    return Some(a.address.addr());
                }
            }
        }
    }
    peer.source_address
}

/// The node MetalLB's layer-2 election picks for `ip`: the lowest `sha256(node + "#" + ip)`.
pub fn l2_winner<'a>(candidates: &[&'a str], ip: IpAddr) -> Option<&'a str> {
    let ip_s = ip.to_string();
    candidates
        .iter()
        .copied()
        .min_by_key(|n| sha256(format!("{n}#{ip_s}").as_bytes()))
}

fn check_routers(
    model: &Model,
    svc: &Service,
    pool: Option<&Pool>,
    ips: &[IpAddr],
    ads: &[&BgpAdvertisement],
    routes: &BTreeMap<IpAddr, Vec<RouteAd>>,
) -> RouterCheck {
    let lb = &model.cluster.lb;
    let mut check = RouterCheck::default();
    if ips.is_empty() || pool.is_none() {
        return check;
    }
    let invalid = invalid_bgp_ads(lb);
    if !invalid.is_empty() {
        check.notes.push(format!(
            "MetalLB refuses the load-balancer configuration ({}): the speakers run an earlier configuration that the snapshot does not hold, so the routers' paths were not compared",
            invalid
                .iter()
                .map(|(a, why)| format!("BGPAdvertisement {} at {}: {why}", a.name.as_deref().unwrap_or("?"), a.source))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        return check;
    }
    let prefixes = advertised_prefixes(ips, ads);
    let router_addrs = router_addresses(model);
    let mut peers: Vec<IpAddr> = lb.peers.iter().map(|p| p.address).collect();
    peers.sort();
    peers.dedup();
    for peer in peers {
        let Some(table) = PeerTable::find(model, peer, &mut check) else {
            continue;
        };
        check
            .compared
            .push((table.rname.to_string(), table.vrf.clone()));
        let expected: Vec<&RouteAd> = routes
            .get(&peer)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        for prefix in &prefixes {
            table.compare_prefix(model, prefix, &expected, &router_addrs, &mut check);
        }
    }
    if check.missing.iter().any(|m| m.next_hop.is_none()) {
        check.notes.push(format!(
            "{}: some announcing nodes have no address on the peer's subnet in the snapshot (no ip addr output?), so their paths cannot be matched",
            svc.key
        ));
    }
    check
}

/// The prefixes a Service's IPs would be advertised as: each IP as a host route, and as every
/// advertisement's aggregation length of its family.
fn advertised_prefixes(ips: &[IpAddr], ads: &[&BgpAdvertisement]) -> BTreeSet<IpNet> {
    let mut prefixes: BTreeSet<IpNet> = BTreeSet::new();
    for ip in ips {
        prefixes.insert(mask(*ip, None));
        for a in ads {
            prefixes.insert(mask(
                *ip,
                if ip.is_ipv4() {
                    a.aggregation_length
                } else {
                    a.aggregation_length_v6
                },
            ));
        }
    }
    prefixes
}

/// Every address of every router interface (anycast included). Paths whose next hop is
/// another router (an iBGP copy from the other leaf, a path re-advertised over the same
/// subnet) are not the speakers' doing.
fn router_addresses(model: &Model) -> BTreeSet<IpAddr> {
    model
        .routers
        .values()
        .flat_map(|r| r.interfaces.iter())
        .flat_map(|i| i.addresses.iter().chain(i.anycast_addresses.iter()))
        .map(|a| a.addr())
        .collect()
}

/// The BGP table of the router (and VRF) that holds a MetalLB peer address, with what says
/// whether that table can be trusted to list every path.
struct PeerTable<'a> {
    peer: IpAddr,
    rname: &'a str,
    router: &'a kubepath_model::net::Router,
    vrf: String,
    table: &'a kubepath_model::net::RouterVrf,
    /// The peer's subnet on the router interface holding its address.
    subnet: IpNet,
    /// The file of the BGP table.
    table_file: Option<std::sync::Arc<str>>,
    /// Why the table may be truncated: its printed route count is not the number of paths read.
    truncated: Option<String>,
}

impl<'a> PeerTable<'a> {
    /// The table for `peer`, or `None` with a note in `check` saying why it is not compared.
    fn find(model: &'a Model, peer: IpAddr, check: &mut RouterCheck) -> Option<PeerTable<'a>> {
        // The router interface holding the peer address.
        let mut found = None;
        for (rname, r) in &model.routers {
            for i in &r.interfaces {
                if let Some(net) = i.addresses.iter().find(|a| a.addr() == peer) {
                    found = Some((rname, r, i, *net));
                }
            }
        }
        let Some((rname, router, iface, subnet)) = found else {
            check.notes.push(format!(
                "peer {peer}: no router in the snapshot has this address, its table was not compared"
            ));
            return None;
        };
        let vrf = iface
            .vrf
            .clone()
            .unwrap_or_else(|| kubepath_model::net::DEFAULT_VRF.to_string());
        let Some(v) = router.vrfs.get(&vrf).filter(|v| v.bgp_source.is_some()) else {
            check.notes.push(format!(
                "{rname} ({peer}): no BGP table of VRF {vrf} in the snapshot, not compared"
            ));
            return None;
        };
        // Whether the table can be trusted to list every path: the reader skipped no line that
        // may be about the prefix, and the printed route count (`Total number of BGP Routes`)
        // is the number of paths read.
        let table_file = v.bgp_source.as_ref().map(|s| s.file.clone());
        let read_paths: usize = v.bgp.iter().map(|r| r.paths.len()).sum();
        let truncated = v
            .bgp_total_printed
            .filter(|n| *n as usize != read_paths)
            .map(|n| {
                format!(
                    "{}: the router printed `Total number of BGP Routes: {n}` but {read_paths} paths were read (the table may be truncated)",
                    v.bgp_source.as_ref().map(|s| s.to_string()).unwrap_or_default()
                )
            });
        Some(PeerTable {
            peer,
            rname,
            router,
            vrf,
            table: v,
            subnet,
            table_file,
            truncated,
        })
    }

    /// Why the table may not list every path to `prefix`, if it may not.
    fn unreliable(&self, prefix: &IpNet) -> Option<String> {
        self.router
            .skipped
            .iter()
            .filter(|l| {
                Some(&l.source.file) == self.table_file.as_ref() && l.may_concern(prefix.addr())
            })
            // A line skipped by the reader explains a short table better than the cut
            // it was taken for.
            .min_by_key(|l| l.cut)
            .map(|l| {
                format!(
                    "{}: line skipped by the reader ({}), it may be this path",
                    l.source, l.why
                )
            })
            .or_else(|| self.truncated.clone())
    }

    /// Compares the paths to `prefix` the speakers' sessions put in the table with the
    /// `expected` advertisements to this peer: adds the missing, undecided and unexplained
    /// paths (or a note why the prefix is not compared) to `check`.
    fn compare_prefix(
        &self,
        model: &Model,
        prefix: &IpNet,
        expected: &[&RouteAd],
        router_addrs: &BTreeSet<IpAddr>,
        check: &mut RouterCheck,
    ) {
        let (rname, vrf, peer, v) = (self.rname, &self.vrf, self.peer, self.table);
        // A prefix is compared only with a table of its family, learned from a peer (and
        // next hops) of its family: an IPv6 prefix is not in `show ip bgp`, and a router
        // whose table of that family is not in the snapshot says nothing about it.
        if prefix.addr().is_ipv4() != peer.is_ipv4() {
            check.notes.push(format!(
                "{rname} ({peer}): {prefix} is of another address family than the peer; not compared"
            ));
            return;
        }
        if !v
            .bgp
            .iter()
            .any(|r| r.prefix.addr().is_ipv4() == prefix.addr().is_ipv4())
        {
            check.notes.push(format!(
                "{rname} vrf {vrf}: no {} BGP table in the snapshot, {prefix} not compared",
                if prefix.addr().is_ipv4() {
                    "IPv4"
                } else {
                    "IPv6"
                }
            ));
            return;
        }
        let exp: BTreeSet<(Option<IpAddr>, String)> = expected
            .iter()
            .filter(|r| r.prefix == *prefix)
            .map(|r| (r.next_hop, r.node.clone()))
            .collect();
        let observed = self.observed(prefix, router_addrs);
        let obs_hops: BTreeSet<IpAddr> = observed.iter().map(|p| p.next_hop).collect();
        for (nh, node) in &exp {
            let present = match nh {
                Some(a) => obs_hops.contains(a),
                None => false,
            };
            if !present {
                let path = RouterPath {
                    router: rname.to_string(),
                    vrf: vrf.clone(),
                    peer,
                    prefix: *prefix,
                    next_hop: *nh,
                    node: Some(node.clone()),
                    source: v.bgp_source.clone(),
                };
                match self.unreliable(prefix) {
                    Some(why) if nh.is_some() => {
                        check.notes.push(format!(
                            "{rname} vrf {vrf}: no path to {prefix} via {} ({node}) in the table, but {why}: undecided",
                            nh.map(|h| h.to_string()).unwrap_or_default()
                        ));
                        check.undecided.push((path, why));
                    }
                    _ => check.missing.push(path),
                }
            }
        }
        let exp_hops: BTreeSet<IpAddr> = exp.iter().filter_map(|(a, _)| *a).collect();
        for p in observed {
            if !exp_hops.contains(&p.next_hop) {
                check.unexplained.push(RouterPath {
                    router: rname.to_string(),
                    vrf: vrf.clone(),
                    peer,
                    prefix: *prefix,
                    next_hop: Some(p.next_hop),
                    node: model.node_owning_ip(p.next_hop).map(str::to_string),
                    source: Some(p.source.clone()),
                });
            }
        }
    }

    /// The valid paths to `prefix` learned from the peer's subnet (the speakers' sessions);
    /// iBGP copies from the other leaf and locally originated paths are not the nodes' doing.
    fn observed(
        &self,
        prefix: &IpNet,
        router_addrs: &BTreeSet<IpAddr>,
    ) -> Vec<&'a kubepath_model::net::BgpPath> {
        self.router
            .bgp_route(&self.vrf, prefix)
            .map(|r| {
                r.paths
                    .iter()
                    .filter(|p| {
                        !p.local
                            && !p.status.internal
                            && p.status.valid
                            && self.subnet.contains(&p.next_hop)
                            && !router_addrs.contains(&p.next_hop)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// SHA-256 digest of `data` (MetalLB's layer-2 election hashes `node#ip` with it).
fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha256_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn l2_winner_is_lowest_hash() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let nodes = ["a", "b", "c", "d"];
        let w = l2_winner(&nodes, ip).unwrap();
        for n in nodes {
            assert!(
                sha256(format!("{w}#10.0.0.1").as_bytes())
                    <= sha256(format!("{n}#10.0.0.1").as_bytes())
            );
        }
        // Order of candidates does not matter.
        assert_eq!(l2_winner(&["d", "c", "b", "a"], ip), Some(w));
        assert_eq!(l2_winner(&[], ip), None);
    }

    #[test]
    fn masking() {
        let ip: IpAddr = "10.33.151.160".parse().unwrap();
        assert_eq!(mask(ip, None).to_string(), "10.33.151.160/32");
        assert_eq!(mask(ip, Some(24)).to_string(), "10.33.151.0/24");
        assert!(buggy("10.0.0.255".parse().unwrap()));
        assert!(!buggy("10.0.0.1".parse().unwrap()));
    }
}
