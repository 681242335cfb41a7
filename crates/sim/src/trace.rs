//! The end-to-end trace: one client, one service, every packet's way there and back.
//!
//! [`trace`] follows the connection stage by stage, each stage citing the file and line that
//! decided it:
//!
//! 1. DNS: the name through its CNAME chain to addresses.
//! 2. Fabric entry (the manifest's client entry points) and, on each entry router, the
//!    longest-prefix match in the VRF and ECMP over the usable next hops ([`fabric`]).
//! 3. Next hop -> the node owning that address, on which interface.
//! 4. The node: the netfilter engine (DNAT, SNAT, marks, drops) with the node's own routing as
//!    its route oracle, and the reverse-path filter after nat PREROUTING ([`routing`]).
//! 5. Pod network: DNAT target -> pod -> its node, cross-node by the node's routes.
//! 6. L7: when the pod is an ingress-nginx controller, ingress-nginx's host/path decision
//!    ([`crate::ingress`]) and the proxied connection to the backend.
//! 7. The return path: the reply un-NATed by conntrack on the node that NATed it and routed by
//!    that node's policy routing *while its source is still the pod IP*; the egress gateway is
//!    matched to a router interface and its VRF, and from there the reply is routed hop by hop
//!    through the routers of the snapshot until it reaches the client's subnet or entry point,
//!    a router without a route, a loop, or the edge of the snapshot ([`walk`]).
//!
//! Probabilities multiply along the path; results are aggregated per stage (distributions)
//! and per (verdict, reason) (branches), so large fan-outs stay small. Failing verdicts get
//! fixes, each verified by re-running the trace with the fix applied ([`whatif`]).

mod engine;
mod fabric;
mod fixes;
pub mod memo;
pub(crate) mod routing;
pub(crate) mod text;
mod walk;
pub mod whatif;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kubepath_model::{Model, SourceRef};

pub use engine::run;
pub(crate) use engine::{warm, with_shared_routes, RoutesCache};
pub use fabric::{FabricLookup, NextHopOut, UnusedPath};
pub use text::{route_text, rule_text};

/// Layer-4 protocol of the traced connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

/// What the client connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host[:port]/path` or `https://...`.
    Url {
        https: bool,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// `host[:port]`.
    Host { host: String, port: Option<u16> },
    /// `ip:port` (or a bare IP).
    Addr { ip: IpAddr, port: Option<u16> },
}

/// `s` (a URL or `HOST[:PORT]`) with its userinfo redacted as `***@`: the whole of it, since
/// a name with an empty password may itself be the key (`https://sk_live_...:@host`, review
/// 10). Credentials play no part in a trace and are never echoed (issue #11). An `@` after the
/// host (in a path, query or fragment) may end a password with an unencoded `/`, `?` or `#`
/// (`http://u:pa#ss@host/`): everything up to the last `@` is hidden then, and
/// [`Target::parse`] refuses such a URL (reviews 8-10).
pub fn redact_userinfo(s: &str) -> String {
    let start = s.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &s[start..];
    match rest.rfind('@') {
        Some(at) => format!("{}***@{}", &s[..start], &rest[at + 1..]),
        None => s.to_string(),
    }
}

impl Target {
    /// Parses `URL | HOST[:PORT] | IP:PORT | [IPv6]:PORT`. A URL's userinfo is ignored;
    /// no error quotes it (see [`redact_userinfo`]). The one URL grammar of kubepath: the
    /// ingress matcher's [`HttpRequest::from_url`](crate::ingress::HttpRequest::from_url) reads
    /// its URLs with it too.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        let shown = redact_userinfo(s);
        if s.is_empty() {
            return Err("expected a URL, HOST[:PORT] or IP:PORT, found nothing".into());
        }
        for (scheme, https) in [("http://", false), ("https://", true)] {
            if let Some(rest) = s.strip_prefix(scheme) {
                // A backslash is `/` to a browser in an http(s) URL (WHATWG URL), not to curl:
                // refused rather than guessed (review 8).
                if rest.contains('\\') {
                    return Err(format!(
                        "expected `/` where '{shown}' has `\\` (a browser reads it as `/`, curl does not): write the URL you mean"
                    ));
                }
                // An `@` past the host (see [`redact_userinfo`]): it may end a password with an
                // unencoded `/`, `?` or `#`; refused, not guessed (reviews 8-10).
                let raw_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                if rest[raw_end..].contains('@') {
                    return Err(format!(
                        "expected no `@` after the host in '{shown}' (it may end a password with an unencoded `/`, `?` or `#`): percent-encode `@` in a path, query or fragment as %40, and `/`, `?`, `#` in a password as %2F, %3F, %23"
                    ));
                }
                // The authority ends at the first `/`, `?` or `#` (RFC 3986 3.2); the fragment
                // is never sent; a query without a path asks for `/`.
                let rest = rest.split('#').next().unwrap_or("");
                let (authority, path) = match rest.find(['/', '?']) {
                    Some(i) if rest[i..].starts_with('?') => {
                        (&rest[..i], format!("/{}", &rest[i..]))
                    }
                    Some(i) => (&rest[..i], rest[i..].to_string()),
                    None => (rest, "/".to_string()),
                };
                // `user:password@host`: the credentials play no part in routing and are never
                // echoed; a second `@` is not a host.
                let authority = match authority.split_once('@') {
                    Some((_, host)) if host.contains('@') => {
                        return Err(
                            "expected one `userinfo@` before the host, found several `@`".into(),
                        )
                    }
                    Some((_, host)) => host,
                    None => authority,
                };
                let (host, port) = split_host_port(authority)?;
                if host.is_empty() {
                    return Err(format!("expected a host in '{shown}'"));
                }
                if host.parse::<IpAddr>().is_err() && !is_host_name(&host) {
                    return Err(format!(
                        "expected a host name or IP address, found '{host}'"
                    ));
                }
                return Ok(Target::Url {
                    https,
                    host,
                    port,
                    path,
                });
            }
        }
        if s.contains("://") {
            return Err(format!(
                "unsupported scheme in '{shown}': expected http:// or https://"
            ));
        }
        if shown != s {
            return Err(format!(
                "expected HOST[:PORT] or IP:PORT, found userinfo in '{shown}' (credentials are accepted, and ignored, only in an http:// or https:// URL)"
            ));
        }
        let (host, port) = split_host_port(s)?;
        match host.parse::<IpAddr>() {
            Ok(ip) => Ok(Target::Addr { ip, port }),
            Err(_) => {
                if is_host_name(&host) {
                    Ok(Target::Host { host, port })
                } else {
                    Err(format!(
                        "expected a host name or IP address, found '{host}'"
                    ))
                }
            }
        }
    }

    /// The destination port: explicit, else 80 for http and host names, 443 for https.
    pub fn port(&self) -> Option<u16> {
        match self {
            Target::Url { https, port, .. } => Some(port.unwrap_or(if *https { 443 } else { 80 })),
            Target::Host { port, .. } => Some(port.unwrap_or(80)),
            Target::Addr { port, .. } => *port,
        }
    }

    pub fn host(&self) -> Option<&str> {
        match self {
            Target::Url { host, .. } | Target::Host { host, .. } => Some(host),
            Target::Addr { .. } => None,
        }
    }
}

/// Letters, digits, `-`, `.`, `_` (and `*` of a wildcard label): what a DNS name or an
/// Ingress host can hold.
fn is_host_name(host: &str) -> bool {
    host.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '*'))
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(format!("expected ']' after the IPv6 address in '{s}'"));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => Some(port_number(p)?),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected '{after}' after ']' in '{s}'")),
        };
        return Ok((h.to_string(), port));
    }
    if s.matches(':').count() > 1 {
        // A bare IPv6 address (anything else with several ':' is not a host).
        if s.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(
                "expected HOST[:PORT], IP:PORT or [IPv6]:PORT, found several ':'".to_string(),
            );
        }
        return Ok((s.to_string(), None));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), Some(port_number(p)?))),
        None => Ok((s.to_string(), None)),
    }
}

/// A port as a URL writes it: decimal digits only (`+80` is no port for a browser or curl,
/// though Rust's integer parser would take it), at most 65535.
fn port_number(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a port number after ':', found '{p}'"));
    }
    p.parse()
        .map_err(|_| format!("expected a port number (at most 65535) after ':', found '{p}'"))
}

/// The question.
#[derive(Debug, Clone)]
pub struct TraceRequest {
    pub client: IpAddr,
    /// The client's source port; None = an ephemeral port (the trace covers any).
    pub client_port: Option<u16>,
    pub target: Target,
    pub proto: L4,
    pub what_if: Vec<whatif::Change>,
}

/// A verdict for one branch of the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Delivered,
    AsymmetricReturn,
    NoRoute,
    /// The packet comes back to a router (and VRF) it already went through.
    RoutingLoop,
    RpFilter,
    Dropped,
    NoEndpoints,
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::AsymmetricReturn => "asymmetric-return",
            Verdict::NoRoute => "no-route",
            Verdict::RoutingLoop => "routing-loop",
            Verdict::RpFilter => "rp-filter",
            Verdict::Dropped => "dropped",
            Verdict::NoEndpoints => "no-endpoints",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One step of a path, citing what decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop {
    /// `dns`, `entry`, `router`, `node`, `netfilter`, `routing`, `pod-network`, `pod`,
    /// `ingress`, `backend`, `conntrack`, `return-route`, `egress`.
    pub stage: &'static str,
    /// Where: a router, node or pod name.
    pub at: String,
    pub text: String,
    pub source: Option<SourceRef>,
    /// The probability of this step given the previous ones, when it is a split.
    pub probability: Option<f64>,
}

impl Hop {
    pub fn new(stage: &'static str, at: impl Into<String>, text: impl Into<String>) -> Hop {
        Hop {
            stage,
            at: at.into(),
            text: text.into(),
            source: None,
            probability: None,
        }
    }
    pub fn src(mut self, s: Option<SourceRef>) -> Hop {
        self.source = s;
        self
    }
    pub fn p(mut self, p: f64) -> Hop {
        self.probability = Some(p);
        self
    }
}

/// A class of paths with the same verdict and reason.
#[derive(Debug, Clone)]
pub struct Branch {
    pub probability: f64,
    pub verdict: Verdict,
    pub reason: String,
    /// The forward hops of the most probable member.
    pub forward: Vec<Hop>,
    /// Its return hops.
    pub ret: Vec<Hop>,
    /// How many distinct paths were merged into this branch.
    pub members: usize,
    /// Nodes, ingress pods and backends the merged paths went through.
    pub nodes: Vec<String>,
    pub ingress_pods: Vec<String>,
    pub backends: Vec<String>,
    /// HTTP status when an ingress controller answered or proxied.
    pub http_status: Option<u16>,
}

impl Branch {
    /// Where it fails: the hop its reason quotes (a failure inside the proxied connection is
    /// in the forward hops although the client's reply has hops too), else the last hop of
    /// the reply, else of the request. None for a delivered branch.
    pub fn failing_hop(&self) -> Option<&Hop> {
        if self.verdict == Verdict::Delivered {
            return None;
        }
        self.forward
            .iter()
            .chain(self.ret.iter())
            .rev()
            .find(|h| h.text.len() > 20 && self.reason.contains(h.text.as_str()))
            .or_else(|| self.ret.last())
            .or_else(|| self.forward.last())
    }
}

/// A fix, verified by re-running the trace with it applied.
#[derive(Debug, Clone)]
pub struct Fix {
    pub description: String,
    pub commands: Vec<String>,
    pub nodes: Vec<String>,
    pub verified: bool,
    /// What the re-run showed (e.g. "delivered: 100%").
    pub verification: String,
    /// The changes as what-ifs (empty when the fix cannot be expressed as one).
    pub changes: Vec<whatif::Change>,
    /// The share of the traffic delivered when the whole trace is re-run with the fix
    /// (`None` when it cannot be re-simulated).
    pub delivered: Option<f64>,
    /// For a fix that is not sufficient: how the re-simulated traffic then fails, and where.
    pub then_fails: Option<String>,
}

impl Fix {
    /// `verified`, `not-sufficient` (re-simulated, but something still fails) or
    /// `not-verifiable` (no change that re-simulation could apply).
    pub fn status(&self) -> &'static str {
        if self.verified {
            "verified"
        } else if self.delivered.is_some() {
            "not-sufficient"
        } else {
            "not-verifiable"
        }
    }
}

/// DNS resolution.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub name: Option<String>,
    /// (name, canonical name, source) in order.
    pub cnames: Vec<(String, String, SourceRef)>,
    pub addresses: Vec<(IpAddr, Option<SourceRef>)>,
}

/// Where the client's traffic enters the fabric.
#[derive(Debug, Clone)]
pub struct Entry {
    pub router: String,
    pub vrf: String,
    pub probability: f64,
    pub why: String,
    pub source: Option<SourceRef>,
}

/// The netfilter result on one node, for the stage view.
#[derive(Debug, Clone)]
pub struct NodeStage {
    /// The first node of the group.
    pub node: String,
    pub in_iface: String,
    /// Total probability of the group.
    pub probability: f64,
    /// Every node with this identical result, with its probability.
    pub members: Vec<(String, f64)>,
    /// (conditional probability, verdict name, DNAT, masquerade, steps as hops)
    pub outcomes: Vec<NodeOutcome>,
}

#[derive(Debug, Clone)]
pub struct NodeOutcome {
    pub probability: f64,
    pub verdict: String,
    pub dnat: Option<String>,
    pub masquerade: bool,
    pub pod: Option<String>,
    pub steps: Vec<Hop>,
}

/// Everything the trace found.
#[derive(Debug, Clone, Default)]
pub struct TraceResult {
    pub client: Option<IpAddr>,
    pub target: String,
    pub dport: Option<u16>,
    pub resolved: Resolved,
    pub entries: Vec<Entry>,
    pub fabric: Vec<FabricLookup>,
    pub node_stages: Vec<NodeStage>,
    /// Per ingress pod: the L7 decision text and its hops.
    pub ingress: BTreeMap<String, Vec<Hop>>,
    pub distribution_nodes: BTreeMap<String, f64>,
    pub distribution_ingress_pods: BTreeMap<String, f64>,
    pub distribution_backends: BTreeMap<String, f64>,
    /// The same over the delivered paths only (which pods answer the requests that succeed).
    pub distribution_backends_delivered: BTreeMap<String, f64>,
    pub verdicts: BTreeMap<Verdict, f64>,
    /// Probability mass along node -> ingress pod -> backend edges (for diagrams).
    pub edges: BTreeMap<(String, String), f64>,
    pub branches: Vec<Branch>,
    pub fixes: Vec<Fix>,
    pub notes: Vec<String>,
    /// Pods whose own packets the reverse-path check drops on their node (the gateway's proxy
    /// ARP or the packet itself): (node, the pod's host-side interface). For the fixes.
    pub pod_side_rp: BTreeSet<(String, String)>,
}

impl TraceResult {
    /// The probability mass delivered.
    pub fn delivered(&self) -> f64 {
        self.verdicts
            .get(&Verdict::Delivered)
            .copied()
            .unwrap_or(0.0)
    }
    /// True when every branch is delivered (within rounding).
    pub fn all_delivered(&self) -> bool {
        self.delivered() > 1.0 - 1e-9
    }
}

/// Runs the trace (with the request's what-ifs applied), then proposes and verifies fixes for
/// every failing verdict.
pub fn trace(model: &Model, req: &TraceRequest) -> TraceResult {
    // Without `--what-if`, the model itself (applying no change is a plain copy, without
    // notes), so the fixes' changed models and runs can be shared (`memo`).
    let changed;
    let (m, notes) = if req.what_if.is_empty() {
        (model, Vec::new())
    } else {
        changed = whatif::apply(model, &req.what_if);
        (&changed.0, changed.1.clone())
    };
    let mut result = run(m, req);
    result.notes.extend(notes);
    if !result.all_delivered() {
        result.fixes = fixes::propose(m, req, &result);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("http://dc173prometheus1.cloud.k2.ericsson.se/").unwrap(),
            Target::Url {
                https: false,
                host: "dc173prometheus1.cloud.k2.ericsson.se".into(),
                port: None,
                path: "/".into()
            }
        );
        assert_eq!(
            Target::parse("10.33.151.160:443").unwrap(),
            Target::Addr {
                ip: "10.33.151.160".parse().unwrap(),
                port: Some(443)
            }
        );
        assert_eq!(
            Target::parse("https://x.y:8443/a/b").unwrap().port(),
            Some(8443)
        );
        assert_eq!(
            Target::parse("[2001:db8::1]:80").unwrap(),
            Target::Addr {
                ip: "2001:db8::1".parse().unwrap(),
                port: Some(80)
            }
        );
        assert!(Target::parse("ftp://x/").is_err());
        // Credentials are dropped (never echoed); `a@b@c` and `h:80:80` are not hosts.
        assert_eq!(
            Target::parse("http://user:pass@web.example.com/x").unwrap(),
            Target::Url {
                https: false,
                host: "web.example.com".into(),
                port: None,
                path: "/x".into()
            }
        );
        assert!(Target::parse("http://user@x@h/").is_err());
        assert!(Target::parse("h:80:80").is_err());
        assert!(Target::parse("host:port").is_err());
        assert!(Target::parse("").is_err());
    }
}
