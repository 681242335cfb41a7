//! A synthetic but realistic kubepath snapshot of a large cluster (issue #15), written as the
//! raw command outputs of docs/snapshot.md, in the file shapes of examples/dc173.
//!
//! What it holds, for `N` Services x `E` endpoints, `M` nodes and `H` ingress hosts, all drawn
//! from one seed:
//!
//! * `cluster/`: the Services, their EndpointSlices and backend Pods (the Services and pod IPs
//!   of [`crate::kube_proxy::generate`], each pod on the node that owns its pod block), the
//!   `default/kubernetes` Service, Nodes, Namespaces, an ingress tier (an `ingress-nginx`
//!   LoadBalancer Service with `externalTrafficPolicy: Local`, one controller pod on each of
//!   the ingress nodes, an IngressClass and one Ingress per host), and MetalLB (an
//!   IPAddressPool, a BGPPeer per router, a BGPAdvertisement, one speaker per node). Pods are
//!   written one `kubectl get pods -n NS -o yaml` file per namespace.
//! * `nodes/<node>/`: `ip addr`, `ip route show table all` (the node's own pods on `cali*`
//!   veths, other nodes' pod blocks over Calico's `tunl0`), `ip rule`, `sysctl` and
//!   `iptables-save` in kube-proxy v1.18's shapes. kube-proxy writes the same rules on every
//!   node except the `KUBE-XLB-` chains of Local Services, which name the node's own
//!   endpoints: the only Local Service here is `ingress-nginx`, so every node without an
//!   ingress pod holds byte-for-byte the same `iptables-save` text (the dump's date line
//!   included: one collection run), and each ingress node its own.
//! * `routers/<leaf>/`: two SLX-OS leaves (the default gateway of the nodes' subnet, anycast),
//!   `show running-config interface ve` and `show ip bgp` with every LoadBalancer IP MetalLB
//!   announces: Cluster-policy Services from every node, `ingress-nginx` from the ingress
//!   nodes only.
//! * `dns/`: a BIND zone with an A record for the ingress VIP and a CNAME per ingress host.
//! * `ingress/<ns>/<pod>/nginx.conf`: ingress-nginx's nginx.conf (examples/dc173's, with one
//!   `server` block per host), the same in every controller pod.
//! * `kubepath.yaml`: one client prefix entering at both leaves.
//!
//! With `link_identical`, files whose contents equal an earlier file's are written as hard
//! links to it (the loader still reads every path; it only saves disk space).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::kube_proxy::{
    generate, GenEndpoint, GenPort, GenService, KubeProxyParams, KubeProxyRuleset, PortProtocol,
    ServiceKind,
};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotParams {
    /// Services (`N`), besides `default/kubernetes` and `ingress-nginx`.
    pub services: usize,
    /// Endpoints per Service (`E`).
    pub endpoints: usize,
    /// Nodes (`M`).
    pub nodes: usize,
    /// Ingress hosts (`H`), one Ingress object each.
    pub ingress_hosts: usize,
    /// Nodes running an ingress-nginx controller pod (at most `nodes`).
    pub ingress_nodes: usize,
    /// Seed of everything.
    pub seed: u64,
    /// Write files identical to an earlier one as hard links to it.
    pub link_identical: bool,
    /// Stop with an error (removing what was written) once the files written reach more
    /// than this many bytes (hard links not counted): a guard behind [`estimate_bytes`].
    pub max_bytes: u64,
}

impl SnapshotParams {
    /// `services` x `endpoints` over `nodes` nodes with `hosts` ingress hosts, 3 ingress nodes.
    pub fn new(services: usize, endpoints: usize, nodes: usize, hosts: usize, seed: u64) -> Self {
        SnapshotParams {
            services,
            endpoints,
            nodes,
            ingress_hosts: hosts,
            ingress_nodes: 3,
            seed,
            link_identical: false,
            max_bytes: u64::MAX,
        }
    }

    /// Refuse sizes the address plans cannot hold or that are beyond realism (see the
    /// `MAX_*` constants): [`write_snapshot`] would otherwise panic, exhaust memory or run for
    /// hours. The first argument out of bounds is named.
    pub fn validate(&self) -> Result<(), LimitError> {
        let over = |param, value: usize, limit: usize, reason: &str| {
            (value > limit).then(|| LimitError {
                param,
                value: value as u64,
                limit: limit as u64,
                reason: reason.to_string(),
            })
        };
        if self.nodes == 0 {
            return Err(LimitError {
                param: "nodes",
                value: 0,
                limit: MAX_NODES as u64,
                reason: "a cluster has at least one node".into(),
            });
        }
        let checks = [
            over(
                "nodes",
                self.nodes,
                MAX_NODES,
                "the nodes' addresses 10.32.0.16-10.32.15.254 in their subnet 10.32.0.0/20",
            ),
            over(
                "services",
                self.services,
                MAX_SERVICES,
                "the free addresses of the Service CIDR 10.96.0.0/12, after the network and broadcast addresses, default/kubernetes and ingress-nginx",
            ),
            over(
                "endpoints-per-service",
                self.endpoints,
                MAX_ENDPOINTS,
                "an EndpointSlice holds at most 1000 endpoints, and one is written per Service",
            ),
            over(
                "ingress-hosts",
                self.ingress_hosts,
                MAX_INGRESS_HOSTS,
                "each is an Ingress, a DNS name and a server block of every nginx.conf",
            ),
        ];
        if let Some(e) = checks.into_iter().flatten().next() {
            return Err(e);
        }
        if self.ingress_nodes == 0 {
            return Err(LimitError {
                param: "ingress-nodes",
                value: 0,
                limit: self.nodes as u64,
                reason: "the ingress tier needs at least one controller pod".into(),
            });
        }
        let k = self.ingress_nodes.min(self.nodes) as u64;
        let fits = |e: u64| PodNet::plan(self.services as u64 * e + k, self.nodes as u64).is_some();
        if !fits(self.endpoints as u64) {
            // The most endpoints per Service that fit (fits(0) holds: MAX_NODES blocks of 64).
            let (mut lo, mut hi) = (0u64, self.endpoints as u64);
            while lo + 1 < hi {
                let mid = lo + (hi - lo) / 2;
                if fits(mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            return Err(LimitError {
                param: "endpoints-per-service",
                value: self.endpoints as u64,
                limit: lo,
                reason: format!(
                    "with {} Services over {} nodes: the pod network 10.128.0.0/9 holds one \
                     block per node of at least twice its pods",
                    self.services, self.nodes
                ),
            });
        }
        Ok(())
    }
}

/// The bytes [`write_snapshot`] is expected to put on disk for `p` (hard links of
/// `link_identical` counted once), from per-object sizes measured on generated snapshots:
/// within about 20% of the real size. Computed without generating anything, so that an
/// output too big for the disk is refused before a byte is written. Saturates at `u64::MAX`.
pub fn estimate_bytes(p: &SnapshotParams) -> u64 {
    let m = p.nodes.max(1) as f64;
    let k = p.ingress_nodes.clamp(1, p.nodes.max(1)) as f64;
    let s = p.services as f64;
    let pods = s * p.endpoints as f64;
    let h = p.ingress_hosts as f64;
    // The nodes without an ingress pod share one text; each ingress node has its own.
    let rulesets = if p.link_identical {
        (k + 1.0).min(m)
    } else {
        m
    };
    let once = |per_node: f64| {
        if p.link_identical {
            per_node
        } else {
            per_node * m
        }
    };
    let ruleset = 8_000.0 + 340.0 * s + 480.0 * pods;
    let per_node = 900.0 * m + 60.0 * m * m + 46.0 * pods + (715.0 + 620.0) * m;
    let cluster = 6_000.0
        + 1_100.0
        + 460.0 * s
        + 1_300.0
        + 400.0 * s
        + 240.0 * pods
        + 2_000.0
        + 590.0 * pods
        + 510.0 * m
        + 2_000.0;
    let ingress = 120.0 + 485.0 * h + 600.0 + 45.0 * h;
    let nginx = (13_800.0 + 3_900.0 * h) * if p.link_identical { 1.0 } else { k };
    // MetalLB announces every Cluster-policy LoadBalancer IP (2% of the Services) from every
    // node, to both routers.
    let bgp = 2.0 * (1_300.0 + 95.0 * ((0.025 * s + 1.0) * m + k));
    let total =
        rulesets * ruleset + per_node + once(87.0 + 1_064.0) + cluster + ingress + nginx + bgp;
    total as u64
}

/// Most nodes: their addresses 10.32.0.16-10.32.15.254 (the nodes' subnet is 10.32.0.0/20).
pub const MAX_NODES: usize = 4079;
/// Most Services: the Service CIDR 10.96.0.0/12 less its network and broadcast addresses,
/// `default/kubernetes` (10.96.0.1) and `ingress-nginx`.
pub const MAX_SERVICES: usize = (1 << 20) - 4;
/// Most endpoints per Service: one EndpointSlice is written per Service, and an EndpointSlice
/// holds at most 1000 endpoints.
pub const MAX_ENDPOINTS: usize = 1000;
/// Most ingress hosts (each one an Ingress object, a DNS name and an nginx server block).
pub const MAX_INGRESS_HOSTS: usize = 100_000;
/// Addresses of the pod network, 10.128.0.0/9 (one block per node).
pub const POD_ADDRESSES: u64 = 1 << 23;

/// A size argument of [`SnapshotParams`] out of bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    /// The argument, as `kubepath gen snapshot` names it (without `--`).
    pub param: &'static str,
    /// Its value.
    pub value: u64,
    /// The most (or for a zero, the range's top) it may be.
    pub limit: u64,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value <= self.limit {
            write!(
                f,
                "{} {}: must be at least 1 ({})",
                self.param, self.value, self.reason
            )
        } else {
            write!(
                f,
                "{} {}: at most {} ({})",
                self.param, self.value, self.limit, self.reason
            )
        }
    }
}

impl std::error::Error for LimitError {}

/// One ingress host and where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The host name (resolves to the ingress VIP).
    pub host: String,
    /// Backend Service namespace and name.
    pub namespace: String,
    pub service: String,
    /// Service port.
    pub port: u16,
    /// The backend pods' IPs and the port they listen on.
    pub endpoints: Vec<Ipv4Addr>,
    pub target_port: u16,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSummary {
    /// Files written (hard links included).
    pub files: usize,
    /// Bytes written (hard links counted at their size).
    pub bytes: u64,
    /// Distinct `iptables-save` texts over the nodes.
    pub distinct_rulesets: usize,
    /// Size of the biggest `iptables-save` text.
    pub ruleset_bytes: usize,
    /// The ingress VIP.
    pub vip: Ipv4Addr,
    /// The nodes running an ingress controller pod.
    pub ingress_nodes: Vec<String>,
    /// The routers (entry points of the client).
    pub routers: Vec<String>,
    /// A client address inside the manifest's client prefix.
    pub client: Ipv4Addr,
    /// Every ingress host, sorted by name.
    pub hosts: Vec<HostInfo>,
    /// Backend pods written.
    pub pods: usize,
}

const ZONE: &str = "apps.k2.example.com";
const ROUTERS: [&str; 2] = ["leaf-a", "leaf-b"];
const ROUTER_ASN: u32 = 65000;
const METALLB_ASN: u32 = 64512;
const CREATED: &str = "2020-09-01T10:00:00Z";

/// examples/dc173's nginx.conf: the text around its one server block is kept, the block is
/// the template of every host's.
const NGINX_CONF: &str = include_str!(
    "../../../examples/dc173/ingress/ingress-nginx/nginx-ingress-controller-5dff4dcd48-dfbnr/nginx.conf"
);
const NGINX_HOST: &str = "dc173prometheus1.cloud.k2.ericsson.se";

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 32, 0, 16)) + i as u32)
}

/// Where pods live: the cluster CIDR and one block per node, sized for the pods per node.
struct PodNet {
    base: u32,
    cidr_prefix: u8,
    block_prefix: u8,
}

impl PodNet {
    /// Blocks of at least twice a node's pods (64 addresses or more), all in 10.128.0.0/9;
    /// `None` when they do not fit.
    fn plan(pods: u64, nodes: u64) -> Option<PodNet> {
        let nodes = nodes.max(1);
        let per_node = pods / nodes + 1;
        let block = per_node
            .checked_mul(2)?
            .checked_add(8)?
            .checked_next_power_of_two()?
            .max(64);
        let total = block.checked_mul(nodes)?.checked_next_power_of_two()?;
        if total > POD_ADDRESSES {
            return None;
        }
        Some(PodNet {
            base: u32::from(Ipv4Addr::new(10, 128, 0, 0)),
            cidr_prefix: (32 - total.trailing_zeros() as u8).max(9),
            block_prefix: 32 - block.trailing_zeros() as u8,
        })
    }
    fn block_size(&self) -> u32 {
        1 << (32 - u32::from(self.block_prefix))
    }
    fn block(&self, node: usize) -> Ipv4Addr {
        Ipv4Addr::from(self.base + node as u32 * self.block_size())
    }
    fn node_of(&self, ip: Ipv4Addr) -> usize {
        (u32::from(ip).wrapping_sub(self.base) / self.block_size()) as usize
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";

fn chain_hash(rng: &mut ChaCha8Rng, used: &mut HashSet<String>) -> String {
    loop {
        let h: String = (0..16)
            .map(|_| BASE32[rng.random_range(0..32)] as char)
            .collect();
        if used.insert(h.clone()) {
            return h;
        }
    }
}

fn suffix(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
        .collect()
}

struct Writer {
    root: PathBuf,
    link: bool,
    by_content: BTreeMap<(usize, u64), Vec<PathBuf>>,
    files: usize,
    bytes: u64,
    /// Bytes written to new files (hard links not counted), against `max_bytes`.
    written: u64,
    max_bytes: u64,
    /// Every file and directory this run created, in order (removed on an error).
    created: Vec<PathBuf>,
}

impl Writer {
    /// `fs::create_dir_all`, recording each directory it creates.
    fn mkdirs(&mut self, dir: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d {
            if p.as_os_str().is_empty() || p.is_dir() {
                break;
            }
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        for p in missing.into_iter().rev() {
            match fs::create_dir(&p) {
                Ok(()) => self.created.push(p),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn put(&mut self, rel: &str, text: &str) -> io::Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            self.mkdirs(parent)?;
        }
        self.files += 1;
        self.bytes += text.len() as u64;
        if self.link {
            let key = (text.len(), fnv(text.as_bytes()));
            if let Some(firsts) = self.by_content.get(&key) {
                for first in firsts {
                    if fs::read(first)? == text.as_bytes() {
                        fs::hard_link(first, &path)?;
                        self.created.push(path);
                        return Ok(());
                    }
                }
            }
            self.by_content.entry(key).or_default().push(path.clone());
        }
        self.written += text.len() as u64;
        if self.written > self.max_bytes {
            return Err(io::Error::other(format!(
                "the output grew past the limit of {} bytes (at {rel})",
                self.max_bytes
            )));
        }
        // Never over an existing file: the target directory was empty.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        self.created.push(path);
        io::Write::write_all(&mut f, text.as_bytes())
    }

    /// Remove what this run created, newest first (a directory only when empty).
    fn remove_created(&mut self) {
        for p in self.created.drain(..).rev() {
            if p.is_dir() && !p.is_symlink() {
                let _ = fs::remove_dir(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100000001b3)
    })
}

/// Write the snapshot into `dir` (created; it should be empty). Deterministic in `params`.
///
/// Parameters out of bounds ([`SnapshotParams::validate`]) are refused (`InvalidInput`)
/// before anything is written. On any error (a full disk, `max_bytes` reached ...) every file
/// and directory this call created is removed again, `dir` included when it created it.
pub fn write_snapshot(dir: &Path, params: &SnapshotParams) -> io::Result<SnapshotSummary> {
    params
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut w = Writer {
        root: dir.to_path_buf(),
        link: params.link_identical,
        by_content: BTreeMap::new(),
        files: 0,
        bytes: 0,
        written: 0,
        max_bytes: params.max_bytes,
        created: Vec::new(),
    };
    let r = write_into(&mut w, params);
    if r.is_err() {
        w.remove_created();
    }
    r
}

fn write_into(w: &mut Writer, params: &SnapshotParams) -> io::Result<SnapshotSummary> {
    let dir = w.root.clone();
    w.mkdirs(&dir)?;
    let m = params.nodes.max(1);
    let k = params.ingress_nodes.clamp(1, m);
    let width = m.to_string().len().max(3);
    let node_name = |i: usize| format!("node-{i:0width$}");
    let pods_total = params.services as u64 * params.endpoints as u64 + k as u64;
    let pn = PodNet::plan(pods_total, m as u64).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the pods do not fit the pod network 10.128.0.0/9",
        )
    })?;

    let mut kp = KubeProxyParams::new(params.services, params.endpoints, params.seed);
    kp.nodes = m as u32;
    kp.cluster_cidr = (Ipv4Addr::from(pn.base), pn.cidr_prefix);
    kp.node_pod_prefix = pn.block_prefix;
    // Only ingress-nginx is Local: every other node's rules are the same text.
    kp.local_policy_fraction = 0.0;
    let mut rs = generate(&kp);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed ^ 0x005e_ed15);

    let mut used_hashes: HashSet<String> = HashSet::new();
    let mut used_cluster_ips: HashSet<Ipv4Addr> = HashSet::new();
    let mut used_node_ports: HashSet<u16> = HashSet::new();
    for s in &rs.services {
        used_cluster_ips.insert(s.cluster_ip);
        for p in &s.ports {
            used_hashes.insert(p.svc_chain[9..].to_string());
            for sep in &p.sep_chains {
                used_hashes.insert(sep[9..].to_string());
            }
            if let Some(np) = p.node_port {
                used_node_ports.insert(np);
            }
        }
    }
    let free_node_port = |used: &mut HashSet<u16>| (30000..=32767u16).find(|p| used.insert(*p));

    // The ingress tier: controller pods on k nodes spread over the cluster, pod IP = the
    // block's second address (the generator's pods start at the third).
    let ingress_node_idx: Vec<usize> = (0..k).map(|j| j * m / k).collect();
    let ingress_pods: Vec<(String, usize, Ipv4Addr)> = ingress_node_idx
        .iter()
        .map(|&n| {
            let ip = Ipv4Addr::from(u32::from(pn.block(n)) + 1);
            (
                format!("ingress-nginx-controller-7d9c8f6b5-{}", suffix(&mut rng, 5)),
                n,
                ip,
            )
        })
        .collect();
    let vip = Ipv4Addr::new(172, 30, 0, 1);
    let ingress_cluster_ip = (2..)
        .map(|o| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + o))
        .find(|ip| used_cluster_ips.insert(*ip))
        .unwrap_or(Ipv4Addr::new(10, 96, 0, 2));
    let mut ingress_ports = Vec::new();
    for (name, port) in [("http", 80u16), ("https", 443u16)] {
        let hash = chain_hash(&mut rng, &mut used_hashes);
        ingress_ports.push(GenPort {
            name: Some(name.into()),
            protocol: PortProtocol::Tcp,
            port,
            target_port: port,
            node_port: free_node_port(&mut used_node_ports),
            svc_chain: format!("KUBE-SVC-{hash}"),
            fw_chain: Some(format!("KUBE-FW-{hash}")),
            xlb_chain: Some(format!("KUBE-XLB-{hash}")),
            ext_chain: None,
            svl_chain: None,
            sep_chains: (0..k)
                .map(|_| format!("KUBE-SEP-{}", chain_hash(&mut rng, &mut used_hashes)))
                .collect(),
        });
    }
    let ingress_svc = GenService {
        namespace: "ingress-nginx".into(),
        name: "ingress-nginx-controller".into(),
        kind: ServiceKind::LoadBalancer,
        cluster_ip: ingress_cluster_ip,
        lb_ip: Some(vip),
        source_ranges: Vec::new(),
        local_policy: true,
        session_affinity: false,
        health_check_node_port: None,
        ports: ingress_ports,
        endpoints: ingress_pods
            .iter()
            .map(|(_, _, ip)| GenEndpoint {
                ip: *ip,
                local: false,
            })
            .collect(),
    };
    // default/kubernetes: the API servers on the first three nodes.
    let api_nodes = m.min(3);
    let kube_hash = chain_hash(&mut rng, &mut used_hashes);
    let kube_svc = GenService {
        namespace: "default".into(),
        name: "kubernetes".into(),
        kind: ServiceKind::ClusterIp,
        cluster_ip: Ipv4Addr::new(10, 96, 0, 1),
        lb_ip: None,
        source_ranges: Vec::new(),
        local_policy: false,
        session_affinity: false,
        health_check_node_port: None,
        ports: vec![GenPort {
            name: Some("https".into()),
            protocol: PortProtocol::Tcp,
            port: 443,
            target_port: 6443,
            node_port: None,
            svc_chain: format!("KUBE-SVC-{kube_hash}"),
            fw_chain: None,
            xlb_chain: None,
            ext_chain: None,
            svl_chain: None,
            sep_chains: (0..api_nodes)
                .map(|_| format!("KUBE-SEP-{}", chain_hash(&mut rng, &mut used_hashes)))
                .collect(),
        }],
        endpoints: (0..api_nodes)
            .map(|i| GenEndpoint {
                ip: node_ip(i),
                local: false,
            })
            .collect(),
    };
    for svc in [kube_svc, ingress_svc] {
        let si = rs.services.len();
        for pi in 0..svc.ports.len() {
            let at = rng.random_range(0..=rs.service_port_order.len());
            rs.service_port_order.insert(at, (si, pi));
        }
        rs.services.push(svc);
    }
    let ingress_si = rs.services.len() - 1;

    // Rulesets: one text per distinct set of local ingress endpoints. The nodes without an
    // ingress pod share one text, kept; an ingress node's own is rendered when written (only
    // two texts are held at a time, however many ingress nodes).
    fn render_for(rs: &mut KubeProxyRuleset, ingress_si: usize, local: Option<usize>) -> String {
        for (j, e) in rs.services[ingress_si].endpoints.iter_mut().enumerate() {
            e.local = Some(j) == local;
        }
        rs.render()
    }
    let shared = (m > ingress_node_idx.len()).then(|| render_for(&mut rs, ingress_si, None));
    let mut ruleset_bytes = shared.as_ref().map_or(0, String::len);
    let mut distinct_rulesets = usize::from(shared.is_some());

    // Backend pods per node (for the cali routes) and per namespace.
    let mut pods_of_node: Vec<Vec<Ipv4Addr>> = vec![Vec::new(); m];
    for s in &rs.services {
        if s.namespace == "default" {
            continue;
        }
        for e in &s.endpoints {
            if let Some(v) = pods_of_node.get_mut(pn.node_of(e.ip)) {
                v.push(e.ip);
            }
        }
    }

    // Nodes.
    for (n, pods) in pods_of_node.iter_mut().enumerate() {
        let name = node_name(n);
        let ip = node_ip(n);
        let local = ingress_node_idx.iter().position(|&x| x == n);
        let d = format!("nodes/{name}");
        match (local, &shared) {
            (None, Some(t)) => w.put(&format!("{d}/iptables-save.txt"), t)?,
            _ => {
                let t = render_for(&mut rs, ingress_si, local);
                ruleset_bytes = ruleset_bytes.max(t.len());
                distinct_rulesets += 1;
                w.put(&format!("{d}/iptables-save.txt"), &t)?;
            }
        }
        w.put(&format!("{d}/ip-addr.txt"), &ip_addr(n, ip, pn.block(n)))?;
        w.put(&format!("{d}/ip-route.txt"), &ip_route(n, m, ip, &pn, pods))?;
        w.put(
            &format!("{d}/ip-rule.txt"),
            "0:\tfrom all lookup local \n32766:\tfrom all lookup main \n32767:\tfrom all lookup default \n",
        )?;
        w.put(&format!("{d}/sysctl.txt"), SYSCTL)?;
    }

    // Cluster objects.
    let mut nodes_yaml = String::from("apiVersion: v1\nitems:\n");
    for n in 0..m {
        let role = if n < api_nodes {
            "control-plane"
        } else if ingress_node_idx.contains(&n) {
            "ingress"
        } else {
            "worker"
        };
        let _ = write!(
            nodes_yaml,
            "- apiVersion: v1\n  kind: Node\n  metadata:\n    creationTimestamp: \"{CREATED}\"\n    labels:\n      kubernetes.io/arch: amd64\n      kubernetes.io/hostname: {name}\n      kubernetes.io/os: linux\n      node-role.kubernetes.io/{role}: \"\"\n    name: {name}\n  spec:\n    podCIDR: {block}/{bp}\n    podCIDRs:\n    - {block}/{bp}\n  status:\n    addresses:\n    - address: {ip}\n      type: InternalIP\n    - address: {name}\n      type: Hostname\n    conditions:\n    - status: \"True\"\n      type: Ready\n      reason: KubeletReady\n    nodeInfo:\n      kubeProxyVersion: v1.18.8\n      kubeletVersion: v1.18.8\n",
            name = node_name(n),
            block = pn.block(n),
            bp = pn.block_prefix,
            ip = node_ip(n),
        );
    }
    nodes_yaml.push_str("kind: List\nmetadata:\n  resourceVersion: \"\"\n  selfLink: \"\"\n");
    w.put("cluster/nodes.yaml", &nodes_yaml)?;

    let mut namespaces: BTreeSet<String> =
        rs.services.iter().map(|s| s.namespace.clone()).collect();
    namespaces.insert("metallb-system".into());
    let mut ns_yaml = String::from("apiVersion: v1\nitems:\n");
    for ns in &namespaces {
        let _ = write!(
            ns_yaml,
            "- apiVersion: v1\n  kind: Namespace\n  metadata:\n    creationTimestamp: \"{CREATED}\"\n    labels:\n      kubernetes.io/metadata.name: {ns}\n    name: {ns}\n  spec:\n    finalizers:\n    - kubernetes\n  status:\n    phase: Active\n"
        );
    }
    ns_yaml.push_str("kind: List\nmetadata:\n  resourceVersion: \"\"\n  selfLink: \"\"\n");
    w.put("cluster/namespaces.yaml", &ns_yaml)?;

    // Services and EndpointSlices, in generation order.
    let mut svc_yaml = String::from("apiVersion: v1\nitems:\n");
    let mut eps_yaml = String::from("apiVersion: v1\nitems:\n");
    let mut pods_by_ns: BTreeMap<String, String> = BTreeMap::new();
    let mut pod_count = 0;
    for s in &rs.services {
        service_yaml(&mut svc_yaml, s);
        let slice = format!("{}-{}", s.name, suffix(&mut rng, 5));
        let is_ingress = s.namespace == "ingress-nginx";
        let is_api = s.namespace == "default";
        let rs_hash = suffix(&mut rng, 10);
        let mut pod_names = Vec::new();
        for (j, e) in s.endpoints.iter().enumerate() {
            if is_api {
                pod_names.push(None);
                continue;
            }
            let pod = if is_ingress {
                ingress_pods[j].0.clone()
            } else {
                format!("{}-{rs_hash}-{}", s.name, suffix(&mut rng, 5))
            };
            let node = pn.node_of(e.ip);
            let buf = pods_by_ns.entry(s.namespace.clone()).or_default();
            pod_yaml(
                buf,
                s,
                &pod,
                &node_name(node),
                node_ip(node),
                e.ip,
                is_ingress,
            );
            pod_count += 1;
            pod_names.push(Some((pod, node)));
        }
        let _ = write!(
            eps_yaml,
            "- addressType: IPv4\n  apiVersion: discovery.k8s.io/v1\n  endpoints:\n"
        );
        if s.endpoints.is_empty() {
            eps_yaml.truncate(eps_yaml.len() - "  endpoints:\n".len());
            eps_yaml.push_str("  endpoints: null\n");
        }
        for (e, pod) in s.endpoints.iter().zip(&pod_names) {
            let _ = write!(
                eps_yaml,
                "  - addresses:\n    - {}\n    conditions:\n      ready: true\n      serving: true\n      terminating: false\n",
                e.ip
            );
            if let Some((pod, node)) = pod {
                let _ = write!(
                    eps_yaml,
                    "    nodeName: {}\n    targetRef:\n      kind: Pod\n      name: {pod}\n      namespace: {}\n",
                    node_name(*node),
                    s.namespace
                );
            }
        }
        let _ = write!(
            eps_yaml,
            "  kind: EndpointSlice\n  metadata:\n    creationTimestamp: \"{CREATED}\"\n    labels:\n      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io\n      kubernetes.io/service-name: {}\n    name: {}\n    namespace: {}\n  ports:\n",
            s.name,
            if is_api { "kubernetes".to_string() } else { slice },
            s.namespace
        );
        for p in &s.ports {
            let _ = writeln!(
                eps_yaml,
                "  - name: {}",
                p.name.as_deref().unwrap_or("\"\"")
            );
            let _ = write!(
                eps_yaml,
                "    port: {}\n    protocol: {}\n",
                p.target_port,
                proto(p.protocol)
            );
        }
    }
    let tail = "kind: List\nmetadata:\n  resourceVersion: \"\"\n  selfLink: \"\"\n";
    svc_yaml.push_str(tail);
    eps_yaml.push_str(tail);
    w.put("cluster/services.yaml", &svc_yaml)?;
    w.put("cluster/endpointslices.yaml", &eps_yaml)?;

    // MetalLB: speakers on every node, the pool, the peers, the advertisement.
    {
        let buf = pods_by_ns.entry("metallb-system".into()).or_default();
        for n in 0..m {
            let _ = write!(
                buf,
                "- apiVersion: v1\n  kind: Pod\n  metadata:\n    labels:\n      app: metallb\n      component: speaker\n    name: speaker-{}\n    namespace: metallb-system\n  spec:\n    containers:\n    - args:\n      - --port=7472\n      - --log-level=info\n      image: quay.io/metallb/speaker:v0.13.12\n      name: speaker\n    hostNetwork: true\n    nodeName: {}\n  status:\n    conditions:\n    - status: \"True\"\n      type: Ready\n    hostIP: {ip}\n    phase: Running\n    podIP: {ip}\n    podIPs:\n    - ip: {ip}\n",
                suffix(&mut rng, 5),
                node_name(n),
                ip = node_ip(n),
            );
        }
        let _ = write!(
            buf,
            "- apiVersion: v1\n  kind: Pod\n  metadata:\n    labels:\n      app: metallb\n      component: controller\n    name: controller-5f98465b6b-{}\n    namespace: metallb-system\n  spec:\n    containers:\n    - image: quay.io/metallb/controller:v0.13.12\n      name: controller\n    nodeName: {}\n  status:\n    conditions:\n    - status: \"True\"\n      type: Ready\n    phase: Running\n    podIP: {}\n",
            suffix(&mut rng, 5),
            node_name(m - 1),
            Ipv4Addr::from(u32::from(pn.block(m - 1)) + 1),
        );
    }
    for (ns, body) in &pods_by_ns {
        w.put(
            &format!("cluster/pods-{ns}.yaml"),
            &format!("apiVersion: v1\nitems:\n{body}{tail}"),
        )?;
    }
    let mut metallb = String::from("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: default\n  namespace: metallb-system\nspec:\n  addresses:\n  - 172.30.0.0/16\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: default\n  namespace: metallb-system\nspec:\n  ipAddressPools:\n  - default\n");
    for (i, r) in ROUTERS.iter().enumerate() {
        let _ = write!(
            metallb,
            "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: {r}\n  namespace: metallb-system\nspec:\n  myASN: {METALLB_ASN}\n  peerASN: {ROUTER_ASN}\n  peerAddress: 10.32.0.{}\n",
            i + 2
        );
    }
    w.put("cluster/metallb.yaml", &metallb)?;

    // Ingress hosts: TCP Service ports with endpoints, drawn without repeats while they last.
    let candidates: Vec<(usize, usize)> = rs
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            !s.endpoints.is_empty() && s.namespace != "default" && s.namespace != "ingress-nginx"
        })
        .flat_map(|(i, s)| {
            s.ports
                .iter()
                .enumerate()
                .filter(|(_, p)| p.protocol == PortProtocol::Tcp)
                .map(move |(j, _)| (i, j))
        })
        .collect();
    let mut hosts = Vec::new();
    if !candidates.is_empty() {
        let mut pool = candidates.clone();
        for h in 0..params.ingress_hosts {
            if h % candidates.len() == 0 {
                pool = candidates.clone();
                pool.shuffle(&mut rng);
            }
            let (si, pi) = pool[h % candidates.len()];
            let s = &rs.services[si];
            let p = &s.ports[pi];
            hosts.push((
                format!("{}-{h}.{ZONE}", s.name),
                HostInfo {
                    host: String::new(),
                    namespace: s.namespace.clone(),
                    service: s.name.clone(),
                    port: p.port,
                    endpoints: s.endpoints.iter().map(|e| e.ip).collect(),
                    target_port: p.target_port,
                },
            ));
        }
    }
    let mut ing_yaml = String::from("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: nginx\nspec:\n  controller: k8s.io/ingress-nginx\n");
    for (host, hi) in &hosts {
        let name = host.split('.').next().unwrap_or(host);
        let _ = write!(
            ing_yaml,
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  creationTimestamp: \"{CREATED}\"\n  name: {name}\n  namespace: {}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - backend:\n          service:\n            name: {}\n            port:\n              number: {}\n        path: /\n        pathType: Prefix\nstatus:\n  loadBalancer:\n    ingress:\n    - ip: {vip}\n",
            hi.namespace, hi.service, hi.port
        );
    }
    w.put("cluster/ingresses.yaml", &ing_yaml)?;

    // nginx.conf: dc173's, one server block per host (sorted, as ingress-nginx writes them).
    let mut sorted: Vec<&(String, HostInfo)> = hosts.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let conf = nginx_conf(&sorted);
    for (pod, _, _) in &ingress_pods {
        w.put(&format!("ingress/ingress-nginx/{pod}/nginx.conf"), &conf)?;
    }

    // DNS.
    let mut zone = format!("$ORIGIN {ZONE}.\n$TTL 3600\n@                   IN  SOA   ns1.{ZONE}. hostmaster.{ZONE}. (\n                              2020092101 ; serial\n                              7200       ; refresh\n                              1800       ; retry\n                              1209600    ; expire\n                              300 )      ; negative caching TTL\n                    IN  NS    ns1.{ZONE}.\nns1                 IN  A     10.210.0.53\n; the ingress-nginx VIP (MetalLB pool \"default\")\ningress             IN  A     {vip}\n");
    for (host, _) in &sorted {
        let label = host.strip_suffix(&format!(".{ZONE}")).unwrap_or(host);
        let _ = writeln!(zone, "{label:<19} IN  CNAME ingress");
    }
    w.put(&format!("dns/{ZONE}.zone"), &zone)?;

    // Routers: the nodes' gateway, and what MetalLB announces.
    let mut announced: Vec<(Ipv4Addr, Vec<usize>)> = Vec::new();
    for s in &rs.services {
        if let (Some(lb), false) = (s.lb_ip, s.endpoints.is_empty()) {
            let nodes: Vec<usize> = if s.local_policy {
                let mut v: Vec<usize> = s.endpoints.iter().map(|e| pn.node_of(e.ip)).collect();
                v.sort_unstable();
                v.dedup();
                v
            } else {
                (0..m).collect()
            };
            announced.push((lb, nodes));
        }
    }
    announced.sort_by_key(|(ip, _)| u32::from(*ip));
    for (i, r) in ROUTERS.iter().enumerate() {
        let run = format!("{r}# show running-config interface ve\ninterface Ve 100\n ip anycast-address 10.32.0.1/20\n ip address 10.32.0.{}/20\n no shutdown\n!\ninterface Ve 90\n ip address 10.90.{i}.2/30\n no shutdown\n!\n{r}#\n", i + 2);
        w.put(&format!("routers/{r}/show-run-int-ve.txt"), &run)?;
        let count: usize = announced.iter().map(|(_, n)| n.len()).sum::<usize>() + 3;
        let mut bgp = format!("{r}# show ip bgp\nTotal number of BGP Routes: {count}\nStatus codes: s suppressed, d damped, h history, * valid, > best, i internal, S stale, x best-external\nOrigin codes: i - IGP, e - EGP, ? - incomplete\n\n     Network            Next Hop        RD              MED        LocPrf     Weight Path\n");
        let _ = writeln!(
            bgp,
            "*>   {:<18} {:<15} {:<15} {:<10} {:<10} {:<6} ?",
            "10.32.0.0/20", "0.0.0.0", "", "0", "100", "32768"
        );
        // The way back to the clients: a default route to the leaf's upstream on a connected
        // /30 (an entry router's table must hold a route back to the client).
        let _ = writeln!(
            bgp,
            "*>   {:<18} {:<15} {:<15} {:<10} {:<10} {:<6} ?",
            format!("10.90.{i}.0/30"),
            "0.0.0.0",
            "",
            "0",
            "100",
            "32768"
        );
        let _ = writeln!(
            bgp,
            "*>   {:<18} {:<15} {:<15} {:<10} {:<10} {:<6} 65000 i",
            "0.0.0.0/0",
            format!("10.90.{i}.1"),
            "",
            "none",
            "100",
            "0"
        );
        for (lb, nodes) in &announced {
            for (j, &n) in nodes.iter().enumerate() {
                let flag = if j == 0 { "*>x" } else { "*  " };
                let _ = writeln!(
                    bgp,
                    "{flag}  {:<18} {:<15} {:<15} {:<10} {:<10} {:<6} {METALLB_ASN} i",
                    format!("{lb}/32"),
                    node_ip(n).to_string(),
                    "",
                    "none",
                    "100",
                    "0"
                );
            }
        }
        let _ = writeln!(bgp, "{r}#");
        w.put(&format!("routers/{r}/show-ip-bgp.txt"), &bgp)?;
    }

    let manifest = format!("apiVersion: kubepath.dev/v1\nkind: Manifest\n\n# Generated by `kubepath gen snapshot` (seed {}): the users' LAN enters through both leaves.\nclients:\n  - name: users\n    prefixes: [10.210.0.0/24]\n    entry:\n      - router: {}\n        vrf: default\n      - router: {}\n        vrf: default\n\nrouters:\n  {}:\n    ecmp_hash: l4\n  {}:\n    ecmp_hash: l4\n", params.seed, ROUTERS[0], ROUTERS[1], ROUTERS[0], ROUTERS[1]);
    w.put("kubepath.yaml", &manifest)?;

    Ok(SnapshotSummary {
        files: w.files,
        bytes: w.bytes,
        distinct_rulesets,
        ruleset_bytes,
        vip,
        ingress_nodes: ingress_node_idx.iter().map(|&n| node_name(n)).collect(),
        routers: ROUTERS.iter().map(|r| r.to_string()).collect(),
        client: Ipv4Addr::new(10, 210, 0, 87),
        hosts: sorted
            .into_iter()
            .map(|(h, i)| HostInfo {
                host: h.clone(),
                ..i.clone()
            })
            .collect(),
        pods: pod_count,
    })
}

fn proto(p: PortProtocol) -> &'static str {
    match p {
        PortProtocol::Tcp => "TCP",
        PortProtocol::Udp => "UDP",
    }
}

fn service_yaml(out: &mut String, s: &GenService) {
    let ty = match s.kind {
        ServiceKind::ClusterIp => "ClusterIP",
        ServiceKind::NodePort => "NodePort",
        ServiceKind::LoadBalancer => "LoadBalancer",
    };
    let _ = write!(
        out,
        "- apiVersion: v1\n  kind: Service\n  metadata:\n    creationTimestamp: \"{CREATED}\"\n    labels:\n      app: {name}\n    name: {name}\n    namespace: {ns}\n  spec:\n    clusterIP: {ip}\n    clusterIPs:\n    - {ip}\n",
        name = s.name,
        ns = s.namespace,
        ip = s.cluster_ip
    );
    if s.kind != ServiceKind::ClusterIp {
        let _ = writeln!(
            out,
            "    externalTrafficPolicy: {}",
            if s.local_policy { "Local" } else { "Cluster" }
        );
    }
    if !s.source_ranges.is_empty() {
        out.push_str("    loadBalancerSourceRanges:\n");
        for (a, l) in &s.source_ranges {
            let _ = writeln!(out, "    - {a}/{l}");
        }
    }
    out.push_str("    ports:\n");
    for p in &s.ports {
        let first = match &p.name {
            Some(n) => format!("    - name: {n}\n      "),
            None => "    - ".to_string(),
        };
        let _ = write!(out, "{first}");
        let mut fields = Vec::new();
        if let Some(np) = p.node_port {
            fields.push(format!("nodePort: {np}"));
        }
        fields.push(format!("port: {}", p.port));
        fields.push(format!("protocol: {}", proto(p.protocol)));
        fields.push(format!("targetPort: {}", p.target_port));
        let _ = writeln!(out, "{}", fields.join("\n      "));
    }
    if s.namespace != "default" {
        let _ = write!(out, "    selector:\n      app: {}\n", s.name);
    }
    let _ = writeln!(
        out,
        "    sessionAffinity: {}",
        if s.session_affinity {
            "ClientIP"
        } else {
            "None"
        }
    );
    if s.session_affinity {
        out.push_str(
            "    sessionAffinityConfig:\n      clientIP:\n        timeoutSeconds: 10800\n",
        );
    }
    let _ = writeln!(out, "    type: {ty}");
    match s.lb_ip {
        Some(ip) => {
            let _ = write!(
                out,
                "  status:\n    loadBalancer:\n      ingress:\n      - ip: {ip}\n"
            );
        }
        None => out.push_str("  status:\n    loadBalancer: {}\n"),
    }
}

fn pod_yaml(
    out: &mut String,
    s: &GenService,
    pod: &str,
    node: &str,
    host_ip: Ipv4Addr,
    ip: Ipv4Addr,
    ingress: bool,
) {
    let _ = write!(
        out,
        "- apiVersion: v1\n  kind: Pod\n  metadata:\n    annotations:\n      cni.projectcalico.org/podIP: {ip}/32\n    labels:\n      app: {app}\n    name: {pod}\n    namespace: {ns}\n  spec:\n    containers:\n",
        app = s.name,
        ns = s.namespace
    );
    if ingress {
        out.push_str("    - args:\n      - /nginx-ingress-controller\n      - --publish-service=$(POD_NAMESPACE)/ingress-nginx-controller\n      - --election-id=ingress-nginx-leader\n      - --controller-class=k8s.io/ingress-nginx\n      - --ingress-class=nginx\n      image: registry.k8s.io/ingress-nginx/controller:v1.9.4\n      name: controller\n");
    } else {
        let _ = write!(
            out,
            "    - image: registry.example.com/{}/{}:1.4.2\n      name: {}\n",
            s.namespace, s.name, s.name
        );
    }
    let mut seen = BTreeSet::new();
    let mut ports = String::new();
    for p in &s.ports {
        if seen.insert((p.target_port, p.protocol.name())) {
            let _ = write!(
                ports,
                "      - containerPort: {}\n        protocol: {}\n",
                p.target_port,
                proto(p.protocol)
            );
        }
    }
    let _ = write!(
        out,
        "      ports:\n{ports}    nodeName: {node}\n  status:\n    conditions:\n    - status: \"True\"\n      type: Ready\n    hostIP: {host_ip}\n    phase: Running\n    podIP: {ip}\n    podIPs:\n    - ip: {ip}\n"
    );
}

fn ip_addr(n: usize, ip: Ipv4Addr, block: Ipv4Addr) -> String {
    let mac = format!(
        "fa:16:3e:{:02x}:{:02x}:{:02x}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    );
    format!(
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever\n2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP group default qlen 1000\n    link/ether {mac} brd ff:ff:ff:ff:ff:ff\n    inet {ip}/20 brd 10.32.15.255 scope global eth0\n       valid_lft forever preferred_lft forever\n5: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 1440 qdisc noqueue state UNKNOWN group default qlen 1000\n    link/ipip 0.0.0.0 brd 0.0.0.0\n    inet {block}/32 scope global tunl0\n       valid_lft forever preferred_lft forever\n"
    )
}

fn ip_route(n: usize, m: usize, ip: Ipv4Addr, pn: &PodNet, pods: &mut [Ipv4Addr]) -> String {
    let bp = pn.block_prefix;
    let mut out = format!(
        "default via 10.32.0.1 dev eth0 proto static metric 100 \n10.32.0.0/20 dev eth0 proto kernel scope link src {ip} \n"
    );
    for j in 0..m {
        if j == n {
            let _ = writeln!(out, "blackhole {}/{bp} proto bird ", pn.block(n));
        } else {
            let _ = writeln!(
                out,
                "{}/{bp} via {} dev tunl0 proto bird onlink ",
                pn.block(j),
                node_ip(j)
            );
        }
    }
    pods.sort_unstable_by_key(|p| u32::from(*p));
    for p in pods.iter() {
        let _ = writeln!(
            out,
            "{p} dev cali{:011x} scope link ",
            fnv(&u32::from(*p).to_be_bytes()) & 0xfff_ffff_ffff
        );
    }
    let _ = write!(
        out,
        "broadcast 10.32.0.0 dev eth0 table local proto kernel scope link src {ip} \nlocal {ip} dev eth0 table local proto kernel scope host src {ip} \nbroadcast 10.32.15.255 dev eth0 table local proto kernel scope link src {ip} \nbroadcast 127.0.0.0 dev lo table local proto kernel scope link src 127.0.0.1 \nlocal 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1 \nlocal 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 \nbroadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1 \nlocal {} dev tunl0 table local proto kernel scope host src {} \n",
        pn.block(n),
        pn.block(n)
    );
    out
}

const SYSCTL: &str = "net.bridge.bridge-nf-call-iptables = 1
net.ipv4.conf.all.forwarding = 1
net.ipv4.conf.all.proxy_arp = 0
net.ipv4.conf.all.route_localnet = 1
net.ipv4.conf.all.rp_filter = 0
net.ipv4.conf.all.src_valid_mark = 0
net.ipv4.conf.default.forwarding = 1
net.ipv4.conf.default.proxy_arp = 0
net.ipv4.conf.default.route_localnet = 0
net.ipv4.conf.default.rp_filter = 0
net.ipv4.conf.default.src_valid_mark = 0
net.ipv4.conf.eth0.forwarding = 1
net.ipv4.conf.eth0.proxy_arp = 0
net.ipv4.conf.eth0.route_localnet = 0
net.ipv4.conf.eth0.rp_filter = 1
net.ipv4.conf.eth0.src_valid_mark = 0
net.ipv4.conf.lo.forwarding = 1
net.ipv4.conf.lo.proxy_arp = 0
net.ipv4.conf.lo.route_localnet = 0
net.ipv4.conf.lo.rp_filter = 0
net.ipv4.conf.lo.src_valid_mark = 0
net.ipv4.conf.tunl0.forwarding = 1
net.ipv4.conf.tunl0.proxy_arp = 0
net.ipv4.conf.tunl0.route_localnet = 0
net.ipv4.conf.tunl0.rp_filter = 0
net.ipv4.conf.tunl0.src_valid_mark = 0
net.ipv4.fib_multipath_hash_policy = 0
net.ipv4.fib_multipath_use_neigh = 0
net.ipv4.ip_forward = 1
net.netfilter.nf_conntrack_max = 524288
";

fn nginx_conf(hosts: &[&(String, HostInfo)]) -> String {
    let start = format!("\t## start server {NGINX_HOST}\n");
    let end = format!("\t## end server {NGINX_HOST}\n");
    let (head, rest) = match NGINX_CONF.find(&start) {
        Some(i) => NGINX_CONF.split_at(i),
        None => (NGINX_CONF, ""),
    };
    let (block, tail) = match rest.find(&end) {
        Some(i) => rest.split_at(i + end.len()),
        None => (rest, ""),
    };
    let mut out = String::with_capacity(head.len() + tail.len() + hosts.len() * block.len());
    out.push_str(head);
    for (host, hi) in hosts {
        let name = host.split('.').next().unwrap_or(host);
        out.push_str(
            &block
                .replace(NGINX_HOST, host)
                .replace(
                    "\"monitoring-eric-pm-server-9090\"",
                    &format!("\"{}-{}-{}\"", hi.namespace, hi.service, hi.port),
                )
                .replace("\"monitoring\"", &format!("\"{}\"", hi.namespace))
                .replace("\"prometheus-server\"", &format!("\"{name}\""))
                .replace("\"eric-pm-server\"", &format!("\"{}\"", hi.service))
                .replace("\"9090\"", &format!("\"{}\"", hi.port)),
        );
    }
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("kp-gen-{name}-{}", std::process::id()))
    }

    fn disk_bytes(root: &Path) -> u64 {
        let mut seen = HashSet::new();
        let mut total = 0;
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let md = fs::symlink_metadata(&p).unwrap();
                if md.is_dir() {
                    stack.push(p);
                } else if seen.insert(std::os::unix::fs::MetadataExt::ino(&md)) {
                    total += md.len();
                }
            }
        }
        total
    }

    #[test]
    fn sizes_beyond_the_address_plans_are_refused_before_writing() {
        let cases: [(usize, usize, usize, usize, &str); 6] = [
            (usize::MAX, 10, 20, 100, "services"),
            (4_294_967_296, 10, 1, 100, "services"),
            (1, 10, 100_000_000, 100, "nodes"),
            (1, 10, 2, 100_000_000, "ingress-hosts"),
            (1, 100_000_000, 2, 100, "endpoints-per-service"),
            (1, 10, 0, 1, "nodes"),
        ];
        for (s, e, m, h, param) in cases {
            let p = SnapshotParams::new(s, e, m, h, 1);
            let err = p.validate().expect_err(param);
            assert_eq!(err.param, param, "{err}");
            let dir = scratch("refused");
            let r = write_snapshot(&dir, &p).expect_err("refused");
            assert_eq!(r.kind(), io::ErrorKind::InvalidInput);
            assert!(!dir.exists(), "nothing written for {param}");
        }
        // The pod network: a million Services of 1000 endpoints do not fit 10.128.0.0/9.
        let err = SnapshotParams::new(MAX_SERVICES, 1000, 20, 1, 1)
            .validate()
            .expect_err("pods");
        assert_eq!(err.param, "endpoints-per-service");
        assert!(err.limit < 1000 && err.limit > 0, "{err}");
        let mut fits = SnapshotParams::new(MAX_SERVICES, 1000, 20, 1, 1);
        fits.endpoints = err.limit as usize;
        assert_eq!(fits.validate(), Ok(()));
        fits.endpoints += 1;
        assert!(fits.validate().is_err());
        // The largest sizes allowed one at a time are fine.
        assert_eq!(
            SnapshotParams::new(1, 1000, MAX_NODES, 1, 1).validate(),
            Ok(())
        );
        assert_eq!(
            SnapshotParams::new(1, 1, 2, MAX_INGRESS_HOSTS, 1).validate(),
            Ok(())
        );
        let mut zero = SnapshotParams::new(1, 1, 2, 1, 1);
        zero.ingress_nodes = 0;
        assert_eq!(zero.validate().map_err(|e| e.param), Err("ingress-nodes"));
        // The estimate is computed without generating anything, and does not overflow.
        let huge = SnapshotParams::new(MAX_SERVICES, 7, MAX_NODES, MAX_INGRESS_HOSTS, 1);
        assert!(estimate_bytes(&huge) > 1 << 40);
    }

    #[test]
    fn the_estimate_is_within_a_fifth_of_the_bytes_written() {
        for (s, e, m, h, link) in [
            (40, 3, 4, 10, false),
            (40, 3, 4, 10, true),
            (5, 20, 9, 3, false),
            (0, 0, 1, 0, false),
        ] {
            let dir = scratch(&format!("estimate-{s}-{m}-{link}"));
            let mut p = SnapshotParams::new(s, e, m, h, 3);
            p.link_identical = link;
            write_snapshot(&dir, &p).expect("written");
            let (real, est) = (disk_bytes(&dir), estimate_bytes(&p));
            fs::remove_dir_all(&dir).unwrap();
            let ratio = est as f64 / real as f64;
            assert!(
                (0.8..1.3).contains(&ratio),
                "{p:?}: estimated {est}, wrote {real}"
            );
        }
    }

    #[test]
    fn a_write_error_removes_what_this_run_created_and_nothing_else() {
        let base = scratch("cleanup");
        fs::create_dir_all(&base).unwrap();
        fs::write(base.join("keep.txt"), "not ours").unwrap();
        // A target in directories that do not exist yet: all of them are ours.
        let dir = base.join("a/b/snap");
        let mut p = SnapshotParams::new(20, 2, 3, 5, 1);
        p.max_bytes = 50_000;
        let err = write_snapshot(&dir, &p).expect_err("past max_bytes");
        assert!(err.to_string().contains("50000 bytes"), "{err}");
        assert!(!base.join("a").exists(), "created directories removed");
        assert_eq!(
            fs::read_to_string(base.join("keep.txt")).unwrap(),
            "not ours"
        );
        // An existing empty target stays, emptied again.
        let empty = base.join("empty");
        fs::create_dir(&empty).unwrap();
        write_snapshot(&empty, &p).expect_err("past max_bytes");
        assert!(empty.is_dir());
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
        // Within the limit it is written.
        p.max_bytes = 10_000_000;
        write_snapshot(&empty, &p).expect("written");
        fs::remove_dir_all(&base).unwrap();
    }
}
