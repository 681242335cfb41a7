//! A pod's own packets on its node: the proxy ARP for its gateway and the routing decision's
//! reverse-path check, which come before any netfilter rule the packet meets.
//!
//! Both are the same kernel check. A packet from a pod arrives on the pod's host-side veth
//! and is routed like any forwarded packet: `ip_route_input_slow` -> `__mkroute_input` ->
//! `fib_validate_source(saddr = the pod, oif = the forward route's output device, dev = the
//! veth)`. Before the pod can send anything off its /32, it must resolve its gateway: a
//! Calico pod has `default via 169.254.1.1 dev eth0`, an address nobody owns, answered by
//! proxy ARP on the host-side `cali*` veth (Calico's FAQ, "Why does my container have a route
//! to 169.254.1.1?"). `arp_process` (net/ipv4/arp.c) answers only when
//! `ip_route_input_noref(skb, tip = 169.254.1.1, sip = the pod, dev)` succeeds, so the same
//! reverse-path check runs with the route to 169.254.1.1 (usually the node's default) as
//! the forward route. A veth without an IPv4 address (`no_addr`) fails loose mode as well as
//! strict whenever the route back does not leave by it. Measured in the lab (fuzz seeds 114
//! and 167): `iif ccd_ecfe_om lookup 100` on the backend's node and rp_filter 1 or 2 leave
//! the pod's ARP INCOMPLETE, `ip route get 169.254.1.1 from <pod> iif cali...` says
//! "Invalid argument", and the ingress pod answers 502.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::ControlFlow;

use super::*;

/// The stage of the hops this module adds (the fixes tell pod-side failures by it).
pub const POD_EGRESS: &str = "pod-egress";

/// Calico's host-side veths are `cali` + a hash of the workload (Felix's default
/// `InterfacePrefix`).
const CALICO_VETH_PREFIX: &str = "cali";

/// The link-local gateway of every Calico pod.
const CALICO_GATEWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1));

/// A pod's packet that never leaves its node.
#[derive(Clone)]
pub(super) struct PodFailure {
    pub verdict: Verdict,
    pub reason: String,
    /// The hop that shows it.
    pub hop: Hop,
    /// The node and the pod's host-side interface, when the reverse-path check drops it.
    pub rp_filter_at: Option<(String, String)>,
    /// The packet reached the other pod before failing (the reply failed).
    pub reached: bool,
}

/// Why a packet from the pod at `pod_ip` on `node` to `dst` never leaves the node. `None`
/// when it passes, or when the snapshot cannot tell (no routes, an unknown CNI, rp_filter
/// not collected). `who` names the packet in the text ("pod web/backend-0's SYN-ACK").
/// A reverse-path drop is recorded for the fixes.
pub(super) fn egress_fails(
    ctx: &mut Ctx,
    node: &str,
    pod_ip: IpAddr,
    (dst, mark, l4): (IpAddr, u32, FlowL4),
    who: &str,
) -> Option<PodFailure> {
    // Many paths share one pod and destination (every node's arrival at one ingress pod):
    // the checks are memoized.
    let key = (node.to_string(), pod_ip, dst, mark, l4, who.to_string());
    let f = match ctx.pod_egress_memo.get(&key) {
        Some(f) => f.clone()?,
        None => {
            let p = PodPacket {
                node,
                pod_ip,
                dst,
                mark,
                l4,
                who,
            };
            let f = egress_check(ctx, p);
            ctx.pod_egress_memo.insert(key, f.clone());
            f?
        }
    };
    if let Some(at) = &f.rp_filter_at {
        ctx.pod_side_rp.insert(at.clone());
    }
    Some(f)
}

/// A pod's packet as it arrives on the pod's host-side veth, and the text that names it.
#[derive(Clone, Copy)]
struct PodPacket<'a> {
    node: &'a str,
    pod_ip: IpAddr,
    dst: IpAddr,
    mark: u32,
    l4: FlowL4,
    /// Names the packet in the text ("pod web/backend-0's SYN-ACK").
    who: &'a str,
}

/// The checks of one pod packet on its node's side of the pod's veth.
struct PodEgress<'a, 'm> {
    ctx: &'a Ctx<'m>,
    n: &'a NodeNet,
    p: PodPacket<'a>,
    /// The pod's host-side interface.
    veth: String,
    /// The veth is known to have no IPv4 address.
    no_addr: bool,
}

fn egress_check(ctx: &Ctx, p: PodPacket<'_>) -> Option<PodFailure> {
    if !p.pod_ip.is_ipv4() {
        return None; // rp_filter and ARP are IPv4's.
    }
    let n = ctx.model.nodes.get(p.node)?;
    // The pod's host-side interface: the node's direct route to the pod (a hostNetwork pod's
    // address is local and has none).
    // (From the main table's route to the pod, not through the policy rules: a rule for
    // `iif lo` or `not from ...` must not hide the veth.)
    let veth = routing::direct_device(n, ctx.node_routes(p.node), p.pod_ip)?;
    let no_addr = n.has_ipv4_address(&veth) == Some(false);
    let e = PodEgress {
        ctx,
        n,
        p,
        veth,
        no_addr,
    };
    if let ControlFlow::Break(f) = e.forwarding() {
        return f;
    }
    if e.veth.starts_with(CALICO_VETH_PREFIX) {
        if let ControlFlow::Break(f) = e.gateway_arp() {
            return f;
        }
    }
    e.own_routing()
}

impl PodEgress<'_, '_> {
    /// Where the setting `key` of the veth (or of `all`) was read.
    fn sysctl_src(&self, key: &str) -> Option<SourceRef> {
        let veth = &self.veth;
        self.n
            .sysctls
            .get(&format!("net.ipv4.conf.{veth}.{key}"))
            .or_else(|| self.n.sysctls.get(&format!("net.ipv4.conf.all.{key}")))
            .map(|s| s.source.clone())
    }

    /// The failure; `rp` when the reverse-path check drops it.
    fn fail(&self, verdict: Verdict, text: String, hop: Hop, rp: bool) -> Option<PodFailure> {
        Some(PodFailure {
            verdict,
            reason: text,
            hop,
            rp_filter_at: rp.then(|| (self.p.node.to_string(), self.veth.clone())),
            reached: false,
        })
    }

    /// Dropped because of the setting `key`.
    fn dropped(&self, text: String, key: &str) -> Option<PodFailure> {
        let text = format!("{}: {text}", self.p.who);
        let hop =
            Hop::new(POD_EGRESS, self.p.node.to_string(), text.clone()).src(self.sysctl_src(key));
        self.fail(Verdict::Dropped, text, hop, false)
    }

    /// ip_route_input_slow: a packet from a device with forwarding off is not routed on, and
    /// arp_process answers proxy ARP only when IN_DEV_FORWARD.
    fn forwarding(&self) -> ControlFlow<Option<PodFailure>> {
        let (n, veth, node, who) = (self.n, &self.veth, self.p.node, self.p.who);
        if n.forwarding(veth).is_none() {
            let text = format!("{who}: whether node {node} forwards the pod's packets (received on {veth}) is not in the snapshot (no `net.ipv4.ip_forward` or `net.ipv4.conf.*.forwarding` in its sysctl output): collect `sysctl -a` on the node");
            let hop = Hop::new(POD_EGRESS, node.to_string(), text.clone());
            return ControlFlow::Break(self.fail(Verdict::Unknown, text, hop, false));
        }
        if n.forwarding(veth) == Some(false) {
            return ControlFlow::Break(self.dropped(
                format!("{veth} does not forward (net.ipv4.conf.{veth}.forwarding = 0): the node neither routes the pod's packets nor answers its ARP"),
                "forwarding",
            ));
        }
        ControlFlow::Continue(())
    }

    /// The reverse-path check of a packet to `to` routed by `fwd`, with the mode in force
    /// (or, when the snapshot lacks it, what a strict filter would do: Felix sets rp_filter=1
    /// on every cali* veth).
    fn rp(
        &self,
        fwd: &routing::Lookup,
        to: IpAddr,
        flow_l4: FlowL4,
        (subject, what): (&str, &str),
    ) -> Option<PodFailure> {
        let (ctx, n, node, who, pod_ip) =
            (self.ctx, self.n, self.p.node, self.p.who, self.p.pod_ip);
        let veth = &self.veth;
        let mode = rp_mode(n, veth, self.no_addr);
        let verdict = rp_over_paths(
            ctx,
            n,
            node,
            veth,
            fwd,
            (pod_ip, to, flow_l4),
            mode.unwrap_or(1),
        );
        if matches!(verdict, PathsRp::Pass) && mode == Some(2) && n.has_ipv4_address(veth).is_none()
        {
            // Loose mode passes a veth with an address and rejects one without: the snapshot
            // does not say which (no `ip addr` for the node).
            if let PathsRp::Fail(why) =
                rp_over_paths(ctx, n, node, veth, fwd, (pod_ip, to, flow_l4), 1)
            {
                let text = format!(
                    "{who}: the snapshot has no `ip addr` listing {veth} on {node}: without an IPv4 address on it the loose rp_filter drops {subject} ({why}); collect `ip addr`"
                );
                let hop = Hop::new(POD_EGRESS, node.to_string(), text.clone())
                    .src(self.sysctl_src("rp_filter"));
                return self.fail(Verdict::Unknown, text, hop, false);
            }
        }
        let text = match (&verdict, mode) {
            (PathsRp::Pass, _) => return None,
            (PathsRp::Fail(why), Some(_)) => format!("{who}: {what}: {why}"),
            (PathsRp::Fail(why), None) => format!(
                "{who}: the snapshot has no rp_filter for {veth} on {node} (sysctl -a; Calico's Felix sets net.ipv4.conf.cali*.rp_filter=1), and a strict filter would drop it: {what}: {why}"
            ),
            (PathsRp::Mixed(why), _) => format!(
                "{who}: the reverse-path check of {subject} passes on some next hops of the node's multipath route and fails on others, and which one the kernel hashes it to depends on a hash seed that is random per boot: {why}"
            ),
        };
        let hop =
            Hop::new(POD_EGRESS, node.to_string(), text.clone()).src(self.sysctl_src("rp_filter"));
        match (verdict, mode) {
            (PathsRp::Fail(_), Some(_)) => self.fail(Verdict::RpFilter, text, hop, true),
            _ => self.fail(Verdict::Unknown, text, hop, false),
        }
    }

    /// The gateway's proxy ARP on a Calico veth (Calico's; other CNIs that route pods through
    /// 169.254.1.1, such as the AWS VPC CNI, put a static neighbour entry in the pod).
    fn gateway_arp(&self) -> ControlFlow<Option<PodFailure>> {
        let (ctx, n, node, who, pod_ip) =
            (self.ctx, self.n, self.p.node, self.p.who, self.p.pod_ip);
        let veth = &self.veth;
        if let Some(off) = proxy_arp_off(n, veth) {
            return ControlFlow::Break(self.dropped(
                format!("the pod's gateway {CALICO_GATEWAY} is answered by proxy ARP on {veth}, and proxy_arp is 0 there ({off}): the pod cannot resolve its gateway and sends nothing"),
                "proxy_arp",
            ));
        }
        // The ARP's route lookup: no transport header (ipproto/port rules do not match it).
        let Some(l) = ctx.route(
            node,
            &Flow {
                src: Some(pod_ip),
                dst: CALICO_GATEWAY,
                iif: Some(veth),
                mark: 0,
                l4: FlowL4::None,
            },
        ) else {
            return ControlFlow::Break(None);
        };
        match &l.result {
            Ok(RHop::Forward { dev, .. }) if dev.as_deref() == Some(veth.as_str()) => {
                // arp_fwd_proxy: no proxy answer for a route back out of the asking device.
                let text = format!(
                    "{who}: the node routes the pod's gateway {CALICO_GATEWAY} back out of the pod's own veth {veth} (`{}`), so proxy ARP does not answer it and the pod sends nothing",
                    l.route.as_ref().map(route_text).unwrap_or_default()
                );
                let hop = Hop::new(POD_EGRESS, node.to_string(), text.clone()).src(l.source());
                return ControlFlow::Break(self.fail(Verdict::NoRoute, text, hop, false));
            }
            Ok(RHop::Forward { .. }) => {
                let what = format!(
                    "the node does not answer the pod's ARP for its gateway {CALICO_GATEWAY} (proxy ARP on {veth}: the ARP's route lookup for {CALICO_GATEWAY} fails the reverse-path check), so the pod sends nothing"
                );
                let subject = format!("the pod's ARP for its gateway {CALICO_GATEWAY}");
                if let Some(f) = self.rp(&l, CALICO_GATEWAY, FlowL4::None, (&subject, &what)) {
                    return ControlFlow::Break(Some(f));
                }
            }
            Ok(_) | Err(RouteFailure::Unknown(_)) => {}
            Err(_) => {
                let text = format!(
                    "{who}: the node has no route to the pod's gateway {CALICO_GATEWAY}, so it does not answer the pod's ARP for it (proxy ARP on {veth} needs one) and the pod sends nothing"
                );
                let hop = Hop::new(POD_EGRESS, node.to_string(), text.clone()).src(l.source());
                return ControlFlow::Break(self.fail(Verdict::NoRoute, text, hop, false));
            }
        }
        ControlFlow::Continue(())
    }

    /// The packet's own routing decision, and its reverse-path check.
    fn own_routing(&self) -> Option<PodFailure> {
        let (dst, l4) = (self.p.dst, self.p.l4);
        let l = self.ctx.route(
            self.p.node,
            &Flow {
                src: Some(self.p.pod_ip),
                dst,
                iif: Some(&self.veth),
                mark: self.p.mark,
                l4,
            },
        )?;
        let what = format!(
            "the node's reverse-path filter drops it as it comes in on {}",
            self.veth
        );
        match &l.result {
            Ok(_) => self.rp(&l, dst, l4, ("the packet", &what)),
            // No route on: the path that follows reports it.
            Err(_) => None,
        }
    }
}

/// `Some(the settings)` when proxy ARP is known to be off on `veth`: the kernel answers when
/// `conf.all.proxy_arp` or `conf.<veth>.proxy_arp` is set (IN_DEV_PROXY_ARP is an OR of the
/// two, include/linux/inetdevice.h). `None` when on, or when either was not collected (Calico
/// turns it on for every cali* veth).
fn proxy_arp_off(n: &NodeNet, veth: &str) -> Option<String> {
    let val = |k: &str| {
        n.sysctls
            .get(k)
            .map(|s| (s.value.trim() != "0", s.source.clone()))
    };
    let all = val("net.ipv4.conf.all.proxy_arp")?;
    let dev = val(&format!("net.ipv4.conf.{veth}.proxy_arp"))?;
    if all.0 || dev.0 {
        return None;
    }
    Some(format!(
        "net.ipv4.conf.all.proxy_arp = 0 ({}), net.ipv4.conf.{veth}.proxy_arp = 0 ({})",
        all.1, dev.1
    ))
}

/// The proxied connection from an ingress pod (`ingress`, at `ingress_ip`) to a backend pod
/// at `backend_ip`, after its node's netfilter accepted it with outcome `o`: does the SYN
/// leave the ingress pod's node, and does the backend's SYN-ACK leave the backend's node?
pub(super) fn proxied_fails(
    ctx: &mut Ctx,
    ingress: &Pod,
    ingress_ip: IpAddr,
    backend: &Pod,
    backend_ip: IpAddr,
    o: &nf::Outcome,
) -> Option<PodFailure> {
    let ingress_node = ingress.node_name.clone().unwrap_or_default();
    let backend_node = backend.node_name.clone().unwrap_or_default();
    let (ik, bk) = (pod_name(ingress), pod_name(backend));
    let there = format!("ingress pod {ik}'s connection to backend {bk} ({backend_ip})");
    // The backend pod's node in doubt (its nodeName against the Endpoints): which node's
    // rules and routes the proxied SYN meets is unknown (fifth review).
    if let Some(why) = ctx.pod_node_doubt(backend, backend_ip) {
        return Some(PodFailure {
            verdict: Verdict::Unknown,
            reason: format!("{there}: {why}"),
            hop: Hop::new("pod-network", backend_node, why),
            rp_filter_at: None,
            reached: false,
        });
    }
    if let Some(f) = egress_fails(
        ctx,
        &ingress_node,
        ingress_ip,
        (
            backend_ip,
            o.route_mark.unwrap_or(o.packet.mark),
            FlowL4::Known(6, o.packet.sport, o.packet.dport),
        ),
        &there,
    ) {
        return Some(f);
    }
    // On the backend pod's node (when another): its own netfilter sees the SYN arrive, from
    // the interface its route back to the source leaves by (issue #11, review: a drop there,
    // or that node's ruleset missing, was never looked at).
    if backend_node != ingress_node {
        if let Some(f) = arrival_fails(ctx, &backend_node, o, backend_ip, &there) {
            return Some(f);
        }
    }
    // The SYN-ACK is addressed to the SYN's source as the backend saw it: the SNAT address
    // when the ingress pod's node masqueraded it, unless conntrack on this same node restores
    // the ingress pod before routing.
    let reply_dst = if backend_node == ingress_node {
        ingress_ip
    } else {
        o.packet.src
    };
    let back = format!("backend {bk}'s SYN-ACK to ingress pod {ik} ({reply_dst})");
    let l4 = FlowL4::Known(6, o.packet.dport, o.packet.sport);
    egress_fails(ctx, &backend_node, backend_ip, (reply_dst, 0, l4), &back)
        .map(|f| PodFailure { reached: true, ..f })
}

/// Why the proxied SYN (`o.packet` as it leaves the ingress pod's node) does not pass the
/// backend pod's node's netfilter, or why that is unknown. `None` when every outcome accepts.
fn arrival_fails(
    ctx: &mut Ctx,
    node: &str,
    o: &nf::Outcome,
    backend_ip: IpAddr,
    there: &str,
) -> Option<PodFailure> {
    let back = Flow {
        src: None,
        dst: o.packet.src,
        iif: None,
        mark: 0,
        l4: FlowL4::Unknown,
    };
    let in_if = ctx.route(node, &back).and_then(|l| match l.result {
        Ok(RHop::Forward { dev, .. }) => dev,
        _ => None,
    });
    let pkt = nf_packet(
        ctx,
        o.packet.src,
        o.packet.sport,
        backend_ip,
        o.packet.dport,
        in_if.as_deref(),
    );
    let unknown = |why: String| {
        Some(PodFailure {
            verdict: Verdict::Unknown,
            reason: format!("{there}: on the backend's node {node}: {why}"),
            hop: Hop::new("netfilter", node.to_string(), why),
            rp_filter_at: None,
            reached: false,
        })
    };
    let t = match nf_trace(ctx, node, &pkt) {
        Ok(t) => t,
        Err(why) => return unknown(why),
    };
    let bad: Vec<&nf::Outcome> = t
        .outcomes
        .iter()
        .filter(|x| x.verdict != nf::Verdict::Accept && x.probability > 1e-12)
        .collect();
    let first = bad.first()?;
    if first
        .notes
        .iter()
        .any(|n| n.starts_with("routing: no route to"))
    {
        // The routing decision drops it (a blackhole or unreachable route, no route in the
        // table an `iif` rule selects), not a rule of netfilter.
        let fwd = Flow {
            src: Some(o.packet.src),
            dst: backend_ip,
            iif: in_if.as_deref(),
            mark: o.packet.mark,
            l4: FlowL4::Known(6, o.packet.sport, o.packet.dport),
        };
        let by = ctx
            .route(node, &fwd)
            .map(|l| {
                let rule = l
                    .rule
                    .as_ref()
                    .map(|r| format!("rule `{}` ({})", rule_text(r), r.source));
                let route = l
                    .route
                    .as_ref()
                    .map(|r| format!("route `{}` ({})", route_text(r), r.source));
                [rule, route]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" -> ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("nodes/{node}/ip-rule.txt, ip-route.txt"));
        let why = format!(
            "the backend's node {node} has no route to {backend_ip} for a packet received on {}: {by}",
            in_if.as_deref().unwrap_or("?")
        );
        return Some(PodFailure {
            verdict: Verdict::NoRoute,
            reason: format!("{there}: {why}"),
            hop: Hop::new("route", node.to_string(), why),
            rp_filter_at: None,
            reached: false,
        });
    }
    match &first.verdict {
        nf::Verdict::Unknown { reason, rule } => {
            unknown(nf_unknown_reason(ctx, node, reason, rule.as_ref()))
        }
        _ if bad.len() < t.outcomes.len() => unknown(format!(
            "only some of its outcomes pass (the first that does not: {})",
            drop_cause(first)
        )),
        v => {
            let what = if matches!(v, nf::Verdict::Drop) {
                "dropped"
            } else {
                "rejected"
            };
            let why = format!(
                "{what} on the backend's node {node} by {}",
                drop_cause(first)
            );
            Some(PodFailure {
                verdict: Verdict::Dropped,
                reason: format!("{there}: {why}"),
                hop: Hop::new("netfilter", node.to_string(), why),
                rp_filter_at: None,
                reached: false,
            })
        }
    }
}

/// The reverse-path filter mode for packets from the pod's veth: max(all, veth). A snapshot
/// may print only one of the two (a filtered `sysctl`, a veth created after it): the known
/// one is a lower bound, and on a veth without an IPv4 address modes 1 and 2 reject the same
/// packets, so 1 stands for "1 or 2" there.
fn rp_mode(n: &NodeNet, veth: &str, no_addr: bool) -> Option<u8> {
    if let Some(m) = n.rp_filter(veth) {
        return Some(m);
    }
    let get = |k: &str| -> Option<i64> { n.sysctl(k)?.value.trim().parse().ok() };
    let known = get("net.ipv4.conf.all.rp_filter")
        .or_else(|| get(&format!("net.ipv4.conf.{veth}.rp_filter")))?;
    match known {
        v if v >= 2 => Some(2),
        1 if no_addr => Some(1),
        _ => None,
    }
}

/// The reverse-path check over every path a forwarding lookup may take.
enum PathsRp {
    Pass,
    /// Every path fails (the first reason).
    Fail(String),
    /// Some pass and some fail (the failing ones).
    Mixed(String),
}

fn rp_over_paths(
    ctx: &Ctx,
    n: &NodeNet,
    node: &str,
    veth: &str,
    l: &routing::Lookup,
    (src, dst, l4): (IpAddr, IpAddr, FlowL4),
    mode: u8,
) -> PathsRp {
    // The forward route's output devices: every next hop of a multipath route; loopback
    // (None) for local delivery.
    let mut devs: Vec<Option<String>> = routing::forward_devices(n, ctx.node_routes(node), l)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    if devs.is_empty() {
        devs.push(None);
    }
    let mut fails = Vec::new();
    for dev in &devs {
        if let Err(why) = routing::rp_filter_check_mode(
            n,
            ctx.node_routes(node),
            (veth, dev.as_deref()),
            src,
            dst,
            mode,
            l4,
        ) {
            fails.push((dev.clone(), why));
        }
    }
    match fails.len() {
        0 => PathsRp::Pass,
        k if k == devs.len() => PathsRp::Fail(fails.swap_remove(0).1),
        _ => PathsRp::Mixed(
            fails
                .iter()
                .map(|(d, w)| format!("via {}: {w}", d.as_deref().unwrap_or("lo")))
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}
