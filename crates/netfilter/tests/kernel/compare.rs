//! What is compared: the engine's outcome and the kernel's observation reduced to the same
//! [`Sig`] (verdict, REJECT error class, final destination, new source address, connection
//! mark, local delivery).

use super::conntrack::Entry;
use super::probe::ClientSaw;
use kubepath_netfilter::{Outcome, Packet, Proto, RouteDecision, RouteOracle, Trace, Verdict};
use kubepath_netfilter_gen::{LabPlan, Probe, ProbeProto};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

/// The comparable essence of a packet's fate on the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sig {
    /// ACCEPT, DROP or REJECT.
    pub verdict: &'static str,
    /// For REJECT: the error the client gets (`refused`, `host-unreach`, `net-unreach`).
    pub reject: Option<&'static str>,
    /// For ACCEPT: the destination after nat PREROUTING (DNAT/REDIRECT).
    pub dst: Option<SocketAddrV4>,
    /// For ACCEPT: the new source address when SNAT/MASQUERADE applied (ports are not
    /// compared: the kernel may pick any port of the range, `--random-fully` does).
    pub snat: Option<Ipv4Addr>,
    /// For ACCEPT: the connection mark when the first packet left the last hook.
    pub ct_mark: Option<u32>,
    /// For ACCEPT: the packet mark when the first packet left the last hook.
    pub mark: Option<u32>,
    /// For ACCEPT: delivered locally (INPUT) rather than forwarded.
    pub local: Option<bool>,
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verdict)?;
        if let Some(r) = self.reject {
            write!(f, " ({r})")?;
        }
        if let Some(d) = self.dst {
            write!(f, " to {d}")?;
        }
        if let Some(l) = self.local {
            f.write_str(if l { " local" } else { " forwarded" })?;
        }
        if let Some(s) = self.snat {
            write!(f, " snat {s}")?;
        }
        if let Some(m) = self.mark {
            write!(f, " mark 0x{m:x}")?;
        }
        if let Some(m) = self.ct_mark {
            write!(f, " ctmark 0x{m:x}")?;
        }
        Ok(())
    }
}

/// The node's routing in the lab, as the kernel will do it: local addresses (and 127/8) are
/// delivered locally; everything else leaves by the link whose /24 holds it, else by the
/// default route; MASQUERADE takes the node's address on that link.
pub struct LabRouter {
    pub plan: LabPlan,
    pub node_addrs: Vec<Ipv4Addr>,
}

impl RouteOracle for LabRouter {
    fn route(&self, pkt: &Packet) -> RouteDecision {
        match pkt.dst {
            IpAddr::V4(d) if d.is_loopback() || self.node_addrs.contains(&d) => {
                RouteDecision::Local
            }
            IpAddr::V4(d) => {
                let l = self.plan.route_out(d);
                RouteDecision::Forward {
                    out_iface: Some(l.node_iface.to_string()),
                    src_hint: Some(IpAddr::V4(l.node_addr)),
                }
            }
            IpAddr::V6(_) => RouteDecision::Unreachable,
        }
    }

    /// The node's interfaces as the lab builds them: each link interface has the node's
    /// address on that link; `lo` has 127.0.0.1 and the extra node addresses.
    fn iface_addrs(&self, iface: &str) -> Option<Vec<IpAddr>> {
        if iface == "lo" {
            let mut v = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
            v.extend(self.plan.node_lo_addrs.iter().map(|a| IpAddr::V4(*a)));
            return Some(v);
        }
        self.plan
            .client_links
            .iter()
            .chain(&self.plan.backend_links)
            .find(|l| l.node_iface == iface)
            .map(|l| vec![IpAddr::V4(l.node_addr)])
    }

    /// `inet_select_addr` on the lab node: lo has 127.0.0.1/8 (host scope, skipped) and the
    /// extra node addresses as /32s, so the one equal to the next hop, else the first; a link
    /// interface has only the node's address on it.
    fn select_src(&self, iface: &str, nexthop: IpAddr) -> Option<IpAddr> {
        if iface == "lo" {
            let lo = &self.plan.node_lo_addrs;
            return match nexthop {
                IpAddr::V4(d) if lo.contains(&d) => Some(nexthop),
                _ => lo.first().map(|a| IpAddr::V4(*a)),
            };
        }
        self.iface_addrs(iface)?.first().copied()
    }
}

/// The engine's packet for a probe.
pub fn packet(p: &Probe) -> Packet {
    let (s, d) = (IpAddr::V4(p.src), IpAddr::V4(p.dst));
    let mut pkt = match p.proto {
        ProbeProto::Tcp => Packet::tcp(s, p.sport, d, p.dport),
        ProbeProto::Udp => Packet::udp(s, p.sport, d, p.dport),
        // An echo request (Packet::new sets type 8 code 0); no ports.
        ProbeProto::Icmp => Packet::new(s, d, Proto::Icmp),
    };
    pkt.in_iface = (!p.local_origin).then(|| p.in_iface.to_string());
    pkt.length = p.ip_len();
    pkt
}

fn reject_class(with: &str) -> &'static str {
    let w = with.to_ascii_lowercase();
    if w.is_empty() || w.contains("port") || w.contains("reset") || w.contains("rst") {
        "refused"
    } else if w.contains("net") {
        "net-unreach"
    } else if w.contains("host") || w.contains("admin") {
        "host-unreach"
    } else {
        "other"
    }
}

/// The engine's outcome as a [`Sig`]; `None` for UNKNOWN.
pub fn engine_sig(p: &Probe, o: &Outcome) -> Option<Sig> {
    match &o.verdict {
        Verdict::Unknown { .. } => None,
        Verdict::Drop => Some(Sig {
            verdict: "DROP",
            reject: None,
            dst: None,
            snat: None,
            ct_mark: None,
            mark: None,
            local: None,
        }),
        // A locally generated UDP datagram or ICMP echo that OUTPUT/POSTROUTING rejects fails
        // in send() with EPERM exactly as when it is dropped (the error travels back to the
        // sender as the hook's NF_DROP; measured in a namespace: UDP and ICMP give EPERM, TCP
        // ECONNREFUSED). The sender cannot tell them apart, so neither can the harness.
        Verdict::Reject { .. } if p.local_origin && p.proto != ProbeProto::Tcp => Some(Sig {
            verdict: "DROP",
            reject: None,
            dst: None,
            snat: None,
            ct_mark: None,
            mark: None,
            local: None,
        }),
        Verdict::Reject { with } => Some(Sig {
            verdict: "REJECT",
            reject: Some(reject_class(with)),
            dst: None,
            snat: None,
            ct_mark: None,
            mark: None,
            local: None,
        }),
        Verdict::Accept => {
            let (mut addr, mut port) = (p.dst, p.dport);
            if let Some(n) = &o.dnat {
                if let Some(IpAddr::V4(a)) = n.addr {
                    addr = a;
                }
                if let Some(pt) = n.port {
                    port = pt;
                }
            }
            // Only an observable change counts (MASQUERADE of a packet that already has the
            // out interface's address changes nothing the kernel shows).
            let snat = if o.masquerade || o.snat.is_some() {
                match o.snat.as_ref().and_then(|n| n.addr) {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => match o.packet.src {
                        IpAddr::V4(a) if a != p.src => Some(a),
                        // Masquerade with an unknown address: cannot equal any kernel value.
                        _ => Some(Ipv4Addr::UNSPECIFIED),
                    },
                }
            } else {
                None
            }
            .filter(|a| *a != p.src);
            Some(Sig {
                verdict: "ACCEPT",
                reject: None,
                dst: Some(SocketAddrV4::new(addr, port)),
                snat,
                ct_mark: Some(o.packet.ct_mark),
                mark: Some(o.packet.mark),
                local: Some(o.local_delivery),
            })
        }
    }
}

/// The engine's distribution over signatures; `None` when any outcome is UNKNOWN.
pub fn engine_dist(p: &Probe, t: &Trace) -> Option<Vec<(Sig, f64)>> {
    let mut v: Vec<(Sig, f64)> = Vec::new();
    for o in &t.outcomes {
        let s = engine_sig(p, o)?;
        match v.iter_mut().find(|(x, _)| *x == s) {
            Some(e) => e.1 += o.probability,
            None => v.push((s, o.probability)),
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Some(v)
}

/// What the kernel did with one probe.
#[derive(Debug, Clone)]
pub enum KernelSig {
    /// A consistent observation.
    Sig(Sig),
    /// The observation is self-contradictory or the client hit a local error (a harness
    /// problem, never silently counted as agreement).
    Inconsistent(String),
}

/// Reduce (client result, conntrack entry, first-packet marks by post-SNAT source port) to a
/// [`Sig`].
pub fn kernel_sig(
    p: &Probe,
    saw: ClientSaw,
    entry: Option<&Entry>,
    marks: &super::lab::Marks,
    node_addrs: &[Ipv4Addr],
) -> KernelSig {
    if let ClientSaw::Other(e) = saw {
        return KernelSig::Inconsistent(format!("client socket error errno {e}"));
    }
    if let Some(e) = entry {
        // The connection was confirmed: the first packet left the node's last hook.
        let dst = e.reply.0;
        let snat = (*e.reply.1.ip() != p.src).then_some(*e.reply.1.ip());
        let Some((ct_mark, mark)) = e.id.and_then(|id| marks.get(&id)).copied() else {
            return KernelSig::Inconsistent(
                "conntrack confirmed the connection but the harness saw no first packet leave"
                    .into(),
            );
        };
        return KernelSig::Sig(Sig {
            verdict: "ACCEPT",
            reject: None,
            dst: Some(dst),
            snat,
            ct_mark: Some(ct_mark),
            mark: Some(mark),
            local: Some(node_addrs.contains(dst.ip()) || dst.ip().is_loopback()),
        });
    }
    match saw {
        ClientSaw::Connected => KernelSig::Inconsistent(
            "TCP connected but the node has no conntrack entry for it".into(),
        ),
        ClientSaw::Refused => KernelSig::Sig(reject("refused")),
        ClientSaw::HostUnreach => KernelSig::Sig(reject("host-unreach")),
        ClientSaw::NetUnreach => KernelSig::Sig(reject("net-unreach")),
        ClientSaw::Silence => KernelSig::Sig(Sig {
            verdict: "DROP",
            reject: None,
            dst: None,
            snat: None,
            ct_mark: None,
            mark: None,
            local: None,
        }),
        ClientSaw::Other(e) => KernelSig::Inconsistent(format!("errno {e}")),
    }
}

fn reject(class: &'static str) -> Sig {
    Sig {
        verdict: "REJECT",
        reject: Some(class),
        dst: None,
        snat: None,
        ct_mark: None,
        mark: None,
        local: None,
    }
}

/// A readable dump of the engine's trace (for reproductions).
pub fn describe_trace(t: &Trace) -> String {
    let mut s = String::new();
    for o in &t.outcomes {
        s.push_str(&format!(
            "  p={:.4} {} dnat={} snat={} masquerade={} local={} out={} mark=0x{:x} ctmark=0x{:x}\n",
            o.probability,
            match &o.verdict {
                Verdict::Reject { with } => format!("REJECT({with})"),
                Verdict::Unknown { reason, .. } => format!("UNKNOWN({reason})"),
                v => v.name().to_string(),
            },
            o.dnat.as_ref().map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            o.snat.as_ref().map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            o.masquerade,
            o.local_delivery,
            o.out_iface.as_deref().unwrap_or("-"),
            o.packet.mark,
            o.packet.ct_mark,
        ));
        for st in &o.steps {
            s.push_str(&format!(
                "      {}/{} line {}: {}{}\n",
                st.table.name(),
                st.chain,
                st.source.line,
                st.text,
                st.branch_probability
                    .map(|p| format!("  (branch p={p:.4})"))
                    .unwrap_or_default()
            ));
        }
        for n in &o.notes {
            s.push_str(&format!("      note: {n}\n"));
        }
    }
    s
}
