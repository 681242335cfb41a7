//! Observation: real TCP connections from the client namespace to the VIP, one per source
//! port, and what the kernel shows about each.
//!
//! For every connection the lab records
//! * whether the handshake completed, and if not how it failed (timeout, ICMP unreachable,
//!   connection refused);
//! * which leaf received the SYN and which node (the nftables `syn_in` sets, filled at
//!   prerouting priority -400, ahead of conntrack and rp_filter);
//! * which ingress pod the node's DNAT chose (the reply source of the node's conntrack entry)
//!   and which backend answered (the HTTP body names both pods and the client address the
//!   ingress pod saw);
//! * whether a router saw the SYN-ACK (the `synack_in` sets): on the traffic router it is the
//!   seed's failure signature, the reply leaving the wrong way;
//! * per router that is not an entry leaf, its FRR VRF name and what `ip route get <client>`
//!   says in its namespace: a SYN-ACK that reached a router of the request's own VRF name
//!   without a route to the client (the leak scenarios of issue #9) died there for lack of a
//!   route (`no-route`), one that reached a router of another VRF took the asymmetric path;
//! * per node, the kernel's `IPReversePathFilter` counter;
//! * for the ECMP check, the next hop `ip route get <vip> from <client> iif <if> ipproto tcp
//!   sport S dport 80` names on the edge router and then on the chosen leaf.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

use crate::lab::Lab;
use crate::pods::{enter_netns, parse_body_field};
use crate::scenario::{CLIENT_IP, HOST, VIP, VIP_PORT};
use crate::sh::{self, LabError, Result};

/// Knobs for [`observe`].
#[derive(Debug, Clone)]
pub struct ObserveOptions {
    /// Number of connections (distinct source ports).
    pub connections: u16,
    /// First source port.
    pub first_port: u16,
    /// Connections opened at once.
    pub batch: usize,
    /// How long a handshake may take before it counts as failed (covers one SYN retransmit).
    pub handshake_timeout: Duration,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        ObserveOptions {
            connections: 300,
            first_port: 40000,
            batch: 150,
            handshake_timeout: Duration::from_millis(2500),
        }
    }
}

/// How the client saw one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Handshake completed; the HTTP status (None: no valid response).
    Established { http_status: Option<u16> },
    /// ECONNREFUSED: a TCP RST or an ICMP port unreachable (kube-proxy's REJECT).
    Refused,
    /// ENETUNREACH / EHOSTUNREACH: a router sent ICMP unreachable (no route).
    Unreachable(String),
    /// No answer within the handshake timeout.
    Timeout,
    /// Any other error.
    Error(String),
}

/// Everything observed about one connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnObservation {
    pub sport: u16,
    pub outcome: Outcome,
    /// The verdict the lab reads from the evidence (same vocabulary as kubepath's trace).
    pub verdict: String,
    /// Leaf that received the SYN.
    pub leaf: Option<String>,
    /// Node that received the SYN.
    pub node: Option<String>,
    /// Ingress pod ("ns/name") the node's DNAT chose.
    pub ingress_pod: Option<String>,
    /// Backend pod ("ns/name") that answered through the ingress pod.
    pub backend_pod: Option<String>,
    /// The client address the ingress pod saw (the client's own when it is preserved).
    pub seen_client: Option<String>,
    /// Routers whose observer saw the SYN-ACK.
    pub synack_seen_at: Vec<String>,
    /// State of the receiving node's conntrack entry, if any.
    pub conntrack_state: Option<String>,
    /// Leaf the edge router's `ip route get` names for this 5-tuple.
    pub route_get_leaf: Option<String>,
    /// Node the leaf's `ip route get` names for this 5-tuple.
    pub route_get_node: Option<String>,
    /// The ingress pod holds the connection in SYN-RECV (it received the SYN; its SYN-ACK did
    /// not get through): the pod was reached although the node's conntrack entry never left
    /// SYN_SENT. Only the random differential reads it.
    #[serde(default)]
    pub pod_syn_recv: bool,
}

/// The observation of one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observation {
    pub scenario: String,
    pub connections: Vec<ConnObservation>,
    /// `IPReversePathFilter` per node during the run.
    pub rp_filter_drops: BTreeMap<String, u64>,
    /// The VIP's next hops in each leaf's kernel table.
    pub leaf_nexthops: BTreeMap<String, Vec<String>>,
    /// Evidence that disagrees with itself (e.g. conntrack and the HTTP body name different pods).
    pub anomalies: Vec<String>,
    /// The routers other than the entry leaves (the traffic router): VRF and route to the client.
    #[serde(default)]
    pub return_routers: BTreeMap<String, ReturnRouter>,
}

/// A router the reply may leave through, other than the leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnRouter {
    /// Its FRR VRF name (`-o NAME`).
    pub vrf: String,
    /// `ip -j route get <client>` in its namespace: the gateway or device, None when the kernel
    /// answers "Network is unreachable".
    pub route_to_client: Option<String>,
}

impl Observation {
    fn count<F: Fn(&ConnObservation) -> Option<String>>(&self, f: F) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for c in &self.connections {
            if let Some(k) = f(c) {
                *m.entry(k).or_insert(0) += 1;
            }
        }
        m
    }
    pub fn verdicts(&self) -> BTreeMap<String, u64> {
        self.count(|c| Some(c.verdict.clone()))
    }
    pub fn nodes(&self) -> BTreeMap<String, u64> {
        self.count(|c| c.node.clone())
    }
    pub fn leaves(&self) -> BTreeMap<String, u64> {
        self.count(|c| c.leaf.clone())
    }
    pub fn ingress_pods(&self) -> BTreeMap<String, u64> {
        self.count(|c| c.ingress_pod.clone())
    }
    pub fn backends(&self) -> BTreeMap<String, u64> {
        self.count(|c| c.backend_pod.clone())
    }
    /// Ingress pods reached by the connections that `node` received.
    pub fn pods_via_node(&self, node: &str) -> BTreeMap<String, u64> {
        self.count(|c| {
            if c.node.as_deref() == Some(node) {
                c.ingress_pod.clone()
            } else {
                None
            }
        })
    }
    /// Nodes reached by the connections that entered through `leaf`.
    pub fn nodes_via(&self, leaf: &str) -> BTreeMap<String, u64> {
        self.count(|c| {
            if c.leaf.as_deref() == Some(leaf) {
                c.node.clone()
            } else {
                None
            }
        })
    }
}

/// The next hops of the VIP's route in namespace `ns` (`ip -j route show exact VIP/32`).
pub fn vip_nexthops(ns: &str) -> Result<Vec<String>> {
    let out = sh::ip(ns, &["-j", "route", "show", "exact", &format!("{VIP}/32")])?;
    Ok(parse_route_nexthops(&out))
}

/// Gateways of the routes in `ip -j route` output: a `gateway` or a `nexthops` list.
pub fn parse_route_nexthops(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    let mut hops = Vec::new();
    for r in v.as_array().into_iter().flatten() {
        if let Some(g) = r.get("gateway").and_then(|g| g.as_str()) {
            hops.push(g.to_string());
        }
        for nh in r
            .get("nexthops")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(g) = nh.get("gateway").and_then(|g| g.as_str()) {
                hops.push(g.to_string());
            }
        }
    }
    hops
}

/// Opens the connections from the client namespace (on a thread of its own, which enters
/// that namespace) and returns, per source port, the outcome and the HTTP body.
pub(crate) fn run_client(
    client_ns: &str,
    opts: &ObserveOptions,
) -> Result<Vec<(u16, Outcome, Option<String>)>> {
    let ns = client_ns.to_string();
    let opts = opts.clone();
    let handle = std::thread::spawn(move || -> Result<Vec<(u16, Outcome, Option<String>)>> {
        enter_netns(&ns)?;
        let ports: Vec<u16> = (0..opts.connections).map(|i| opts.first_port + i).collect();
        let mut all = Vec::new();
        for chunk in ports.chunks(opts.batch.max(1)) {
            all.extend(connect_batch(chunk, opts.handshake_timeout)?);
        }
        Ok(all)
    });
    handle
        .join()
        .map_err(|_| LabError::Other("client thread panicked".into()))?
}

fn errno_outcome(e: &std::io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Outcome::Refused,
        Some(libc::ENETUNREACH) => Outcome::Unreachable("network unreachable".into()),
        Some(libc::EHOSTUNREACH) => Outcome::Unreachable("host unreachable".into()),
        Some(libc::ETIMEDOUT) => Outcome::Timeout,
        _ => Outcome::Error(e.to_string()),
    }
}

fn connect_batch(ports: &[u16], timeout: Duration) -> Result<Vec<(u16, Outcome, Option<String>)>> {
    let target: SocketAddr = SocketAddr::V4(SocketAddrV4::new(VIP, VIP_PORT));
    let mut pending: Vec<(u16, Socket)> = Vec::new();
    let mut results: Vec<(u16, Outcome, Option<String>)> = Vec::new();
    for &p in ports {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| LabError::Other(format!("socket: {e}")))?;
        s.set_reuse_address(true)
            .map_err(|e| LabError::Other(format!("SO_REUSEADDR: {e}")))?;
        s.bind(&SocketAddr::V4(SocketAddrV4::new(CLIENT_IP, p)).into())
            .map_err(|e| LabError::Other(format!("bind {CLIENT_IP}:{p}: {e}")))?;
        s.set_nonblocking(true)
            .map_err(|e| LabError::Other(format!("O_NONBLOCK: {e}")))?;
        match s.connect(&target.into()) {
            Ok(()) => pending.push((p, s)),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => pending.push((p, s)),
            Err(e) => results.push((p, errno_outcome(&e), None)),
        }
    }
    let deadline = Instant::now() + timeout;
    let mut established: Vec<(u16, Socket)> = Vec::new();
    while !pending.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let mut fds: Vec<libc::pollfd> = pending
            .iter()
            .map(|(_, s)| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            })
            .collect();
        let wait = (deadline - now).as_millis().min(200) as i32;
        // SAFETY: fds is a valid array of pollfd of the given length.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
        if rc < 0 {
            return Err(LabError::Other(format!(
                "poll: {}",
                std::io::Error::last_os_error()
            )));
        }
        let mut still = Vec::new();
        for ((p, s), fd) in pending.into_iter().zip(fds) {
            if fd.revents == 0 {
                still.push((p, s));
                continue;
            }
            match s.take_error() {
                Ok(None) => established.push((p, s)),
                Ok(Some(e)) => results.push((p, errno_outcome(&e), None)),
                Err(e) => results.push((p, Outcome::Error(e.to_string()), None)),
            }
        }
        pending = still;
    }
    for (p, _) in pending {
        results.push((p, Outcome::Timeout, None));
    }
    for (p, s) in established {
        let (status, body) = http_get(s);
        results.push((
            p,
            Outcome::Established {
                http_status: status,
            },
            body,
        ));
    }
    results.sort_by_key(|r| r.0);
    Ok(results)
}

fn http_get(s: Socket) -> (Option<u16>, Option<String>) {
    let mut stream: TcpStream = s.into();
    let ok = stream.set_nonblocking(false).is_ok()
        && stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .is_ok()
        && stream
            .write_all(
                format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .is_ok();
    if !ok {
        return (None, None);
    }
    let mut resp = String::new();
    if stream.read_to_string(&mut resp).is_err() && resp.is_empty() {
        return (None, None);
    }
    let status = resp
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok());
    (status, Some(resp))
}

/// The elements of an nftables set of the lab's observer table.
pub(crate) fn nft_set(ns: &str, set: &str) -> Result<BTreeSet<u16>> {
    let out = sh::in_ns(
        ns,
        &["nft", "-j", "list", "set", "ip", "kubepath_lab", set],
        None,
    )?;
    Ok(parse_nft_set(&out))
}

/// Parses `nft -j list set` output into its elements (integers).
pub fn parse_nft_set(json: &str) -> BTreeSet<u16> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    let mut out = BTreeSet::new();
    for item in v
        .get("nftables")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten()
    {
        for e in item
            .get("set")
            .and_then(|s| s.get("elem"))
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            // Plain elements are numbers; elements with expiry etc. are {"elem": {"val": N}}.
            let n = e.as_u64().or_else(|| {
                e.get("elem")
                    .and_then(|x| x.get("val"))
                    .and_then(|x| x.as_u64())
            });
            if let Some(n) = n.and_then(|n| u16::try_from(n).ok()) {
                out.insert(n);
            }
        }
    }
    out
}

/// One conntrack entry: original and reply tuples and the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub state: Option<String>,
    pub orig_src: Ipv4Addr,
    pub orig_sport: u16,
    pub reply_src: Ipv4Addr,
    pub reply_dst: Ipv4Addr,
    /// The reply direction's destination port: the port the pod answers to (the masquerade
    /// port when the node masqueraded).
    pub reply_dport: Option<u16>,
}

/// Parses `conntrack -L` lines:
/// `tcp 6 117 SYN_RECV src=A dst=B sport=P dport=Q [UNREPLIED] src=C dst=D sport=R dport=S ...`.
/// The conntrack entries of the client's TCP connections to the VIP in namespace `ns`, by
/// the client's source port (empty when conntrack cannot be read).
pub(crate) fn client_conntrack(ns: &str) -> BTreeMap<u16, CtEntry> {
    let ct = sh::in_ns(
        ns,
        &[
            "conntrack",
            "-L",
            "-p",
            "tcp",
            "--orig-src",
            &CLIENT_IP.to_string(),
            "--orig-dst",
            &VIP.to_string(),
        ],
        None,
    )
    .unwrap_or_default();
    parse_conntrack(&ct)
        .into_iter()
        .map(|e| (e.orig_sport, e))
        .collect()
}

pub fn parse_conntrack(text: &str) -> Vec<CtEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.first() != Some(&"tcp") {
            continue;
        }
        let state = toks
            .iter()
            .take_while(|t| !t.contains('='))
            .find(|t| t.chars().all(|c| c.is_ascii_uppercase() || c == '_') && t.len() > 2)
            .map(|s| s.to_string());
        let kv: Vec<(&str, &str)> = toks.iter().filter_map(|t| t.split_once('=')).collect();
        let get = |k: &str, nth: usize| {
            kv.iter()
                .filter(|(key, _)| *key == k)
                .nth(nth)
                .map(|(_, v)| *v)
        };
        let (Some(os), Some(osp), Some(rs), Some(rd)) = (
            get("src", 0).and_then(|v| v.parse().ok()),
            get("sport", 0).and_then(|v| v.parse().ok()),
            get("src", 1).and_then(|v| v.parse().ok()),
            get("dst", 1).and_then(|v| v.parse().ok()),
        ) else {
            continue;
        };
        out.push(CtEntry {
            state,
            orig_src: os,
            orig_sport: osp,
            reply_src: rs,
            reply_dst: rd,
            reply_dport: get("dport", 1).and_then(|v| v.parse().ok()),
        });
    }
    out
}

/// `IPReversePathFilter` from /proc/net/netstat inside `ns`.
pub(crate) fn rp_filter_counter(ns: &str) -> Result<u64> {
    let text = sh::in_ns(ns, &["cat", "/proc/net/netstat"], None)?;
    Ok(parse_netstat(&text, "TcpExt", "IPReversePathFilter").unwrap_or(0))
}

/// A counter from /proc/net/netstat (header line and value line per group).
pub fn parse_netstat(text: &str, group: &str, key: &str) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [head, vals] = pair else { continue };
        let prefix = format!("{group}:");
        if !head.starts_with(&prefix) || !vals.starts_with(&prefix) {
            continue;
        }
        let keys = head.split_whitespace().skip(1);
        let values = vals.split_whitespace().skip(1);
        for (k, v) in keys.zip(values) {
            if k == key {
                return v.parse().ok();
            }
        }
    }
    None
}

/// `ip -batch` of `route get` lines in `ns`; returns the gateway per line (None if the
/// answer has no gateway, e.g. no route).
pub(crate) fn route_get_batch(ns: &str, iif: &str, ports: &[u16]) -> Result<Vec<Option<String>>> {
    let mut input = String::new();
    for p in ports {
        input.push_str(&format!(
            "route get {VIP} from {CLIENT_IP} iif {iif} ipproto tcp sport {p} dport {VIP_PORT}\n"
        ));
    }
    // `-force` keeps going after a failing line (e.g. no route), so lines stay aligned.
    let out = sh::run_with_input(
        &["ip", "-n", ns, "-j", "-force", "-batch", "-"],
        Some(&input),
    );
    let out = match out {
        Ok(o) => o,
        Err(LabError::Command { .. }) => return Ok(vec![None; ports.len()]),
        Err(e) => return Err(e),
    };
    let mut res: Vec<Option<String>> = out
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            v.get(0)
                .and_then(|r| r.get("gateway"))
                .and_then(|g| g.as_str())
                .map(str::to_string)
        })
        .collect();
    if res.len() != ports.len() {
        res = vec![None; ports.len()];
    }
    Ok(res)
}

/// Runs the observation on a running lab.
pub fn observe(lab: &Lab, opts: &ObserveOptions) -> Result<Observation> {
    if opts.first_port < 1024 || u32::from(opts.first_port) + u32::from(opts.connections) > 65536 {
        return Err(LabError::Other(format!(
            "source ports {}..{} must lie within 1024..65535",
            opts.first_port,
            u32::from(opts.first_port) + u32::from(opts.connections)
        )));
    }
    let s = &lab.scenario;
    let routers: Vec<String> = s
        .leaves
        .iter()
        .map(|l| l.name.to_string())
        .chain(std::iter::once("trafgw".to_string()))
        .collect();
    // Fresh evidence: empty the observer sets and the nodes' conntrack tables.
    for n in &s.nodes {
        let ns = lab.ns(&n.name);
        sh::in_ns(
            &ns,
            &["nft", "flush", "set", "ip", "kubepath_lab", "syn_in"],
            None,
        )?;
        let _ = sh::in_ns(&ns, &["conntrack", "-F"], None);
    }
    for r in &routers {
        let ns = lab.ns(r);
        for set in ["syn_in", "synack_in"] {
            sh::in_ns(
                &ns,
                &["nft", "flush", "set", "ip", "kubepath_lab", set],
                None,
            )?;
        }
    }
    let mut rp_before = BTreeMap::new();
    for n in &s.nodes {
        rp_before.insert(n.name.clone(), rp_filter_counter(&lab.ns(&n.name))?);
    }
    let mut leaf_nexthops = BTreeMap::new();
    for l in &s.leaves {
        leaf_nexthops.insert(l.name.to_string(), vip_nexthops(&lab.ns(l.name))?);
    }
    let request_vrf = crate::scenario::OM_VRF;
    let mut return_routers = BTreeMap::new();
    for r in routers
        .iter()
        .filter(|r| !s.leaves.iter().any(|l| l.name == *r))
    {
        let vrf = lab
            .frr(r)
            .and_then(|i| i.vrf)
            .unwrap_or("default")
            .to_string();
        return_routers.insert(
            r.clone(),
            ReturnRouter {
                vrf,
                route_to_client: route_to(&lab.ns(r), CLIENT_IP)?,
            },
        );
    }
    // Routers of the request's own VRF that have no route back to the client.
    let no_route_back: Vec<String> = return_routers
        .iter()
        .filter(|(_, rr)| rr.vrf == request_vrf && rr.route_to_client.is_none())
        .map(|(r, _)| r.clone())
        .collect();

    let results = run_client(&lab.ns("client"), opts)?;
    let ports: Vec<u16> = results.iter().map(|r| r.0).collect();

    // Let the last retransmissions and replies settle before reading the evidence.
    std::thread::sleep(Duration::from_millis(300));

    let mut node_syn: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut node_ct: BTreeMap<String, BTreeMap<u16, CtEntry>> = BTreeMap::new();
    let mut rp_filter_drops = BTreeMap::new();
    for n in &s.nodes {
        let ns = lab.ns(&n.name);
        node_syn.insert(n.name.clone(), nft_set(&ns, "syn_in")?);
        node_ct.insert(n.name.clone(), client_conntrack(&ns));
        let after = rp_filter_counter(&ns)?;
        let before = rp_before.get(&n.name).copied().unwrap_or(0);
        rp_filter_drops.insert(n.name.clone(), after.saturating_sub(before));
    }
    let mut router_syn = BTreeMap::new();
    let mut router_synack = BTreeMap::new();
    for r in &routers {
        let ns = lab.ns(r);
        router_syn.insert(r.clone(), nft_set(&ns, "syn_in")?);
        router_synack.insert(r.clone(), nft_set(&ns, "synack_in")?);
    }

    // ECMP: the edge router's choice, then the chosen leaf's.
    let edge_choice = route_get_batch(&lab.ns("edge"), "c0", &ports)?;
    let mut leaf_choice: BTreeMap<String, BTreeMap<u16, Option<String>>> = BTreeMap::new();
    for l in &s.leaves {
        let mine: Vec<u16> = ports
            .iter()
            .zip(&edge_choice)
            .filter(|(_, g)| g.as_deref() == Some(&l.uplink_ip.to_string()))
            .map(|(p, _)| *p)
            .collect();
        let got = route_get_batch(&lab.ns(l.name), "up0", &mine)?;
        leaf_choice.insert(l.name.to_string(), mine.into_iter().zip(got).collect());
    }

    let mut anomalies = Vec::new();
    let mut connections = Vec::new();
    for ((sport, outcome, body), edge_gw) in results.into_iter().zip(edge_choice) {
        let leaf = router_syn
            .iter()
            .find(|(r, set)| r.as_str() != "trafgw" && set.contains(&sport))
            .map(|(r, _)| r.clone());
        let nodes_seen: Vec<&String> = node_syn
            .iter()
            .filter(|(_, set)| set.contains(&sport))
            .map(|(n, _)| n)
            .collect();
        if nodes_seen.len() > 1 {
            anomalies.push(format!(
                "port {sport}: SYN seen on several nodes {nodes_seen:?}"
            ));
        }
        let node = nodes_seen.first().map(|n| n.to_string());
        let ct = node
            .as_ref()
            .and_then(|n| node_ct.get(n))
            .and_then(|m| m.get(&sport));
        let ct_pod = ct.and_then(|e| s.pod_by_ip(e.reply_src)).map(|p| p.key());
        let body_pod = body.as_deref().and_then(|b| parse_body_field(b, "pod"));
        if let (Some(a), Some(b)) = (&ct_pod, &body_pod) {
            if a != b {
                anomalies.push(format!(
                    "port {sport}: conntrack says {a}, the HTTP body says {b}"
                ));
            }
        }
        let ingress_pod = ct_pod.or(body_pod);
        let backend_pod = body.as_deref().and_then(|b| parse_body_field(b, "backend"));
        let seen_client = body.as_deref().and_then(|b| parse_body_field(b, "client"));
        let synack_seen_at: Vec<String> = router_synack
            .iter()
            .filter(|(_, set)| set.contains(&sport))
            .map(|(r, _)| r.clone())
            .collect();
        let route_get_leaf = edge_gw.as_ref().and_then(|g| {
            s.leaves
                .iter()
                .find(|l| l.uplink_ip.to_string() == *g)
                .map(|l| l.name.to_string())
        });
        let route_get_node = route_get_leaf
            .as_ref()
            .and_then(|l| leaf_choice.get(l))
            .and_then(|m| m.get(&sport))
            .cloned()
            .flatten()
            .and_then(|g| g.parse().ok())
            .and_then(|ip| s.node_by_om_ip(ip))
            .map(|n| n.name.clone());
        let leaf_has_route = leaf
            .as_ref()
            .and_then(|l| leaf_nexthops.get(l))
            .is_some_and(|h| !h.is_empty());
        let verdict = classify(
            &outcome,
            Evidence {
                node_saw_syn: node.is_some(),
                node_has_conntrack: ct.is_some(),
                synack_seen_at: &synack_seen_at,
                leaf: leaf.as_deref(),
                leaf_has_route,
                no_route_back: &no_route_back,
            },
        );
        connections.push(ConnObservation {
            sport,
            verdict,
            outcome,
            leaf,
            node,
            ingress_pod,
            backend_pod,
            seen_client,
            synack_seen_at,
            conntrack_state: ct.and_then(|e| e.state.clone()),
            route_get_leaf,
            route_get_node,
            pod_syn_recv: false,
        });
    }
    Ok(Observation {
        scenario: s.name.to_string(),
        connections,
        rp_filter_drops,
        leaf_nexthops,
        anomalies,
        return_routers,
    })
}

/// `ip -j route get ADDR` in `ns`: the gateway (or the device for a connected route); None
/// when the kernel has no route ("Network is unreachable").
pub(crate) fn route_to(ns: &str, addr: Ipv4Addr) -> Result<Option<String>> {
    match sh::ip(ns, &["-j", "route", "get", &addr.to_string()]) {
        Ok(out) => {
            let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
            let r = v.get(0);
            Ok(r.and_then(|r| r.get("gateway"))
                .or_else(|| r.and_then(|r| r.get("dev")))
                .and_then(|g| g.as_str())
                .map(str::to_string))
        }
        Err(LabError::Command { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the routers and nodes recorded about one connection.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    pub node_saw_syn: bool,
    pub node_has_conntrack: bool,
    pub synack_seen_at: &'a [String],
    /// The leaf that received the SYN.
    pub leaf: Option<&'a str>,
    /// Whether that leaf's kernel has a route to the VIP.
    pub leaf_has_route: bool,
    /// Routers of the request's own VRF (name) whose kernel has no route to the client.
    pub no_route_back: &'a [String],
}

/// Reads the verdict of one connection from the evidence.
///
/// A router without a route answers with ICMP unreachable, but only a few of them: `ip_error`
/// (net/ipv4/route.c) rate-limits per source with the global, non-namespaced
/// `net.ipv4.route.error_cost`/`error_burst`, which the lab leaves alone. So a timeout whose SYN
/// reached a leaf without a route to the VIP (and no node) also reads as `no-route`; so does a
/// timeout whose SYN-ACK was seen only on routers of the request's own VRF that have no route
/// back to the client (they drop it; their ICMP error would go to the VIP, to which they have
/// no route either). A SYN-ACK seen on a router of another VRF is `asymmetric-return`.
pub fn classify(outcome: &Outcome, ev: Evidence<'_>) -> String {
    let Evidence {
        node_saw_syn,
        node_has_conntrack,
        synack_seen_at,
        leaf,
        leaf_has_route,
        no_route_back,
    } = ev;
    let v = match outcome {
        Outcome::Established {
            http_status: Some(200),
        } => "delivered",
        Outcome::Established { .. } => "http-error",
        Outcome::Refused => "refused",
        Outcome::Unreachable(_) => "no-route",
        Outcome::Error(_) => "error",
        Outcome::Timeout => {
            let wrong_way: Vec<&String> = synack_seen_at
                .iter()
                .filter(|r| Some(r.as_str()) != leaf && !r.starts_with("leaf-"))
                .collect();
            if !wrong_way.is_empty() && wrong_way.iter().all(|r| no_route_back.contains(r)) {
                "no-route"
            } else if !wrong_way.is_empty() {
                "asymmetric-return"
            } else if leaf.is_some() && !leaf_has_route && !node_saw_syn {
                "no-route"
            } else if node_saw_syn && !node_has_conntrack {
                "rp-filter"
            } else {
                "dropped"
            }
        }
    };
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_lines() {
        let t = "tcp      6 117 SYN_RECV src=10.210.150.87 dst=10.33.151.160 sport=40001 dport=80 src=192.168.1.10 dst=10.0.10.102 sport=80 dport=3571 mark=0 use=1\n\
                 tcp      6 118 SYN_SENT src=10.210.150.87 dst=10.33.151.160 sport=40002 dport=80 [UNREPLIED] src=192.168.2.10 dst=10.0.10.102 sport=80 dport=40002 mark=0 use=1\n\
                 conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.\n";
        let e = parse_conntrack(t);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].state.as_deref(), Some("SYN_RECV"));
        assert_eq!(e[0].orig_sport, 40001);
        assert_eq!(e[0].reply_src, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(e[1].state.as_deref(), Some("SYN_SENT"));
        assert_eq!(e[1].reply_dst, Ipv4Addr::new(10, 0, 10, 102));
    }

    #[test]
    fn nft_set_json() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "ip", "name": "syn_in", "table": "kubepath_lab", "type": "inet_service", "handle": 2, "size": 65535, "elem": [40001, 40002]}}]}"#;
        assert_eq!(
            parse_nft_set(j).into_iter().collect::<Vec<_>>(),
            [40001, 40002]
        );
        let empty = r#"{"nftables": [{"set": {"name": "syn_in"}}]}"#;
        assert!(parse_nft_set(empty).is_empty());
    }

    #[test]
    fn netstat_counter() {
        let t = "TcpExt: SyncookiesSent IPReversePathFilter\nTcpExt: 0 17\nIpExt: InNoRoutes\nIpExt: 3\n";
        assert_eq!(parse_netstat(t, "TcpExt", "IPReversePathFilter"), Some(17));
        assert_eq!(parse_netstat(t, "IpExt", "InNoRoutes"), Some(3));
        assert_eq!(parse_netstat(t, "TcpExt", "Nope"), None);
    }

    #[test]
    fn route_nexthops() {
        let multi = r#"[{"dst":"10.33.151.160","nhid":20,"protocol":"bgp","metric":20,"flags":[],"nexthops":[{"gateway":"10.33.151.68","dev":"om0","weight":1,"flags":[]},{"gateway":"10.33.151.69","dev":"om0","weight":1,"flags":[]}]}]"#;
        assert_eq!(
            parse_route_nexthops(multi),
            ["10.33.151.68", "10.33.151.69"]
        );
        let single = r#"[{"dst":"10.33.151.160","gateway":"10.33.151.70","dev":"om0"}]"#;
        assert_eq!(parse_route_nexthops(single), ["10.33.151.70"]);
        assert!(parse_route_nexthops("[]").is_empty());
    }

    #[test]
    fn verdict_from_evidence() {
        let t = Outcome::Timeout;
        let traf = ["trafgw".to_string()];
        let leaf_a = ["leaf-a".to_string()];
        let ev = |syn, ct, seen: &'static [String], route| Evidence {
            node_saw_syn: syn,
            node_has_conntrack: ct,
            synack_seen_at: seen,
            leaf: Some("leaf-a"),
            leaf_has_route: route,
            no_route_back: &[],
        };
        let traf: &'static [String] = Box::leak(Box::new(traf));
        let leaf_a: &'static [String] = Box::leak(Box::new(leaf_a));
        assert_eq!(
            classify(&t, ev(true, true, traf, true)),
            "asymmetric-return"
        );
        assert_eq!(classify(&t, ev(true, false, &[], true)), "rp-filter");
        assert_eq!(classify(&t, ev(true, true, &[], true)), "dropped");
        assert_eq!(classify(&t, ev(false, false, &[], false)), "no-route");
        let ok = Outcome::Established {
            http_status: Some(200),
        };
        assert_eq!(classify(&ok, ev(true, true, leaf_a, true)), "delivered");
        let e502 = Outcome::Established {
            http_status: Some(502),
        };
        assert_eq!(classify(&e502, ev(true, true, leaf_a, true)), "http-error");
        assert_eq!(
            classify(
                &Outcome::Unreachable("x".into()),
                ev(false, false, &[], false)
            ),
            "no-route"
        );
        // The leak: the SYN-ACK reached the traffic router, which is in the request's VRF and
        // has no route back.
        let leak = ["trafgw".to_string()];
        let e = Evidence {
            no_route_back: &leak,
            ..ev(true, true, traf, true)
        };
        assert_eq!(classify(&t, e), "no-route");
    }
}
