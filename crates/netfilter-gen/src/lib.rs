//! Seeded generators of iptables rulesets, shared by kubepath's tests and benchmarks.
//!
//! * [`random`]: rulesets drawn at random (ChaCha-seeded, so a seed reproduces a case exactly)
//!   over the matches and targets the netfilter engine supports, each with probe packets, all
//!   addressed inside one fixed lab topology ([`LabPlan`]). The kernel-agreement test
//!   (`crates/netfilter/tests/kernel_agreement.rs`) builds that topology in network namespaces,
//!   loads each ruleset with `iptables-restore` and compares the kernel with the engine.
//!
//! The generated text is `iptables-save` format that `iptables-restore` (legacy or nft) accepts
//! unchanged: every target is only used in the tables and hooks the kernel allows it in, and
//! user chains are only reachable from one built-in chain, so hook restrictions hold.
//!
//! ```
//! use kubepath_netfilter_gen::{random::{random_case, CaseKind}, LabPlan};
//! let plan = LabPlan::standard();
//! let case = random_case(42, 7, CaseKind::Deterministic, &plan);
//! assert!(case.text.contains("COMMIT"));
//! assert!(!case.probes.is_empty());
//! // Same seed and index, same case.
//! assert_eq!(case.text, random_case(42, 7, CaseKind::Deterministic, &plan).text);
//! ```

pub mod kube_proxy;
pub mod kube_proxy_ipvs;
pub mod kube_proxy_nft;
pub mod privileged;
pub mod random;
pub mod snapshot;
pub mod stats;

use std::net::Ipv4Addr;

/// One point-to-point link between the node under test and a neighbouring namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface name on the node (what `-i` / `-o` see).
    pub node_iface: &'static str,
    /// Interface name in the neighbour namespace.
    pub peer_iface: &'static str,
    /// The node's (primary) address on this link; the link is a /24.
    pub node_addr: Ipv4Addr,
    /// The neighbour's addresses on this link (all in the node's /24).
    pub peer_addrs: Vec<Ipv4Addr>,
}

impl Link {
    /// The /24 network of the link.
    pub fn network(&self) -> Ipv4Addr {
        let o = self.node_addr.octets();
        Ipv4Addr::new(o[0], o[1], o[2], 0)
    }
}

/// The fixed lab topology every generated case is addressed in.
///
/// ```text
///  client ns ──c0── ethc0 ┐              ┌ ethb1 ──b0── backend ns 1 (pods)
///            ──c1── ethc1 ┤  node ns     ├ ethb2 ──b0── backend ns 2 (pods, AnyIP for the
///                         │  (ruleset)   │               service range, node's default route)
///                         └ lo: extra local addresses
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPlan {
    /// Links to the client namespace (packets under test arrive on these).
    pub client_links: Vec<Link>,
    /// Links to backend namespaces (DNAT targets and plain destinations).
    pub backend_links: Vec<Link>,
    /// Extra addresses of the node, on its loopback (like a node or LoadBalancer IP).
    pub node_lo_addrs: Vec<Ipv4Addr>,
    /// Service-like range (`a.b.0.0/16`), not assigned to any interface. The node routes it
    /// via its default route (the last backend link), where the backend accepts it as AnyIP
    /// (`ip route add local RANGE dev lo`), so un-NATed service traffic is still observable.
    pub service_net: (Ipv4Addr, u8),
    /// Service addresses inside `service_net` that probes and rules use.
    pub service_ips: Vec<Ipv4Addr>,
    /// Destination ports with listeners (TCP and UDP) in every server namespace.
    pub ports: Vec<u16>,
    /// Source-port bands (inclusive) probes draw from; rules use their bounds.
    pub sport_bands: Vec<(u16, u16)>,
}

impl LabPlan {
    /// The topology used by the kernel-agreement test.
    pub fn standard() -> Self {
        let a = Ipv4Addr::new;
        LabPlan {
            client_links: vec![
                Link {
                    node_iface: "ethc0",
                    peer_iface: "c0",
                    node_addr: a(10, 70, 0, 1),
                    peer_addrs: vec![
                        a(10, 70, 0, 2),
                        a(10, 70, 0, 3),
                        a(10, 70, 0, 4),
                        a(10, 70, 0, 5),
                    ],
                },
                Link {
                    node_iface: "ethc1",
                    peer_iface: "c1",
                    node_addr: a(10, 71, 0, 1),
                    peer_addrs: vec![a(10, 71, 0, 2), a(10, 71, 0, 3)],
                },
            ],
            backend_links: vec![
                Link {
                    node_iface: "ethb1",
                    peer_iface: "b0",
                    node_addr: a(10, 80, 0, 1),
                    peer_addrs: (2..=7).map(|h| a(10, 80, 0, h)).collect(),
                },
                Link {
                    node_iface: "ethb2",
                    peer_iface: "b0",
                    node_addr: a(10, 81, 0, 1),
                    peer_addrs: (2..=7).map(|h| a(10, 81, 0, h)).collect(),
                },
            ],
            node_lo_addrs: vec![a(10, 99, 0, 1), a(10, 99, 0, 2)],
            service_net: (a(10, 96, 0, 0), 16),
            service_ips: vec![
                a(10, 96, 0, 10),
                a(10, 96, 0, 11),
                a(10, 96, 1, 20),
                a(10, 96, 7, 7),
            ],
            ports: vec![53, 80, 443, 8080, 9000, 9001, 9002, 30080],
            sport_bands: vec![(20000, 24999), (25000, 29999), (30000, 34999)],
        }
    }

    /// Every address of the node itself (link addresses, then loopback extras).
    pub fn node_addrs(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .client_links
            .iter()
            .chain(&self.backend_links)
            .map(|l| l.node_addr)
            .collect();
        v.extend(&self.node_lo_addrs);
        v
    }

    /// Every address a client probe may come from, with the node interface it arrives on.
    pub fn client_sources(&self) -> Vec<(Ipv4Addr, &'static str)> {
        self.client_links
            .iter()
            .flat_map(|l| l.peer_addrs.iter().map(move |a| (*a, l.node_iface)))
            .collect()
    }

    /// Every backend (pod-like) address.
    pub fn backend_addrs(&self) -> Vec<Ipv4Addr> {
        self.backend_links
            .iter()
            .flat_map(|l| l.peer_addrs.iter().copied())
            .collect()
    }

    /// The node's routing decision for a destination that is not local: the backend link
    /// whose /24 holds it, else the last backend link (the node's default route).
    pub fn route_out(&self, dst: Ipv4Addr) -> &Link {
        let all = self.client_links.iter().chain(&self.backend_links);
        for l in all {
            if l.network().octets()[..3] == dst.octets()[..3] {
                return l;
            }
        }
        self.backend_links
            .last()
            .expect("the lab plan has at least one backend link")
    }
}

/// Transport of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeProto {
    /// A TCP connection (the first packet is a SYN as Linux sends it: 60 bytes with options).
    Tcp,
    /// One UDP datagram.
    Udp,
    /// One ICMP echo request; `Probe::sport` is its identifier and `dport` is 0.
    Icmp,
}

impl ProbeProto {
    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            ProbeProto::Tcp => "tcp",
            ProbeProto::Udp => "udp",
            ProbeProto::Icmp => "icmp",
        }
    }
}

/// A probe packet: the first packet of a new connection from the client namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Source address: a client address (it decides the arrival interface), or for a
    /// locally generated probe one of the node's addresses.
    pub src: Ipv4Addr,
    /// Node interface the packet arrives on (`""` for a locally generated probe).
    pub in_iface: &'static str,
    /// Sent by the node itself (OUTPUT path) rather than arriving from the client.
    pub local_origin: bool,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Transport.
    pub proto: ProbeProto,
    /// Source port (distinct within a case).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// UDP (or ICMP echo) payload length in bytes (IP total length = 28 + this). TCP probes
    /// send a SYN whose IP total length is [`TCP_SYN_LEN`].
    pub udp_payload: u16,
}

/// IP total length of the SYN Linux sends for `connect()` with default sysctls: 20 bytes IP
/// header + 40 bytes TCP (MSS 4, SACK-permitted 2, timestamps 10, window scale 3, NOP padding).
pub const TCP_SYN_LEN: u16 = 60;

impl Probe {
    /// IP total length of the first packet.
    pub fn ip_len(&self) -> u16 {
        match self.proto {
            ProbeProto::Tcp => TCP_SYN_LEN,
            ProbeProto::Udp | ProbeProto::Icmp => 28 + self.udp_payload,
        }
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}:{} -> {}:{} {} (ip len {})",
            self.proto.name(),
            self.src,
            self.sport,
            self.dst,
            self.dport,
            if self.local_origin {
                "from the node itself".to_string()
            } else {
                format!("in {}", self.in_iface)
            },
            self.ip_len()
        )
    }
}
