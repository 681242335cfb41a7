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

use super::*;

/// Calico's host-side veths are `cali` + a hash of the workload (Felix's default
/// `InterfacePrefix`).
const CALICO_VETH_PREFIX: &str = "cali";

/// The link-local gateway of every Calico pod.
const CALICO_GATEWAY: IpAddr = IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1));

/// A pod's packet that never leaves its node.
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
    dst: IpAddr,
    mark: u32,
    who: &str,
) -> Option<PodFailure> {
    let f = egress_check(ctx, node, pod_ip, dst, mark, who)?;
    if let Some(at) = &f.rp_filter_at {
        ctx.pod_side_rp.insert(at.clone());
    }
    Some(f)
}

fn egress_check(
    ctx: &Ctx,
    node: &str,
    pod_ip: IpAddr,
    dst: IpAddr,
    mark: u32,
    who: &str,
) -> Option<PodFailure> {
    if !pod_ip.is_ipv4() {
        return None; // rp_filter and ARP are IPv4's.
    }
    let n = ctx.model.nodes.get(node)?;
    // The pod's host-side interface: the node's direct route to the pod (a hostNetwork pod's
    // address is local and has none).
    let veth = match ctx
        .route(
            node,
            &Flow {
                src: None,
                dst: pod_ip,
                iif: None,
                mark: 0,
            },
        )?
        .result
    {
        Ok(RHop::Forward {
            dev: Some(dev),
            gateway: None,
            ..
        }) => dev,
        _ => return None,
    };
    let no_addr = n.has_ipv4_address(&veth) == Some(false);
    // None: rp_filter not collected, only the route checks apply.
    let mode = rp_mode(n, &veth, no_addr);
    let sysctl_src = |key: &str| {
        n.sysctls
            .get(&format!("net.ipv4.conf.{veth}.{key}"))
            .or_else(|| n.sysctls.get(&format!("net.ipv4.conf.all.{key}")))
            .map(|s| s.source.clone())
    };
    let fail = |verdict: Verdict, text: String, hop: Hop, rp: bool| {
        Some(PodFailure {
            verdict,
            reason: text,
            hop,
            rp_filter_at: rp.then(|| (node.to_string(), veth.clone())),
            reached: false,
        })
    };
    let rejected = |why: String, what: String| {
        let text = format!("{who}: {what}: {why}");
        let hop = Hop::new("routing", node.to_string(), text.clone()).src(sysctl_src("rp_filter"));
        fail(Verdict::RpFilter, text, hop, true)
    };
    if no_addr && veth.starts_with(CALICO_VETH_PREFIX) {
        // The gateway's proxy ARP (Calico's; other CNIs that route pods through
        // 169.254.1.1, such as the AWS VPC CNI, put a static neighbour entry in the pod).
        if let Some(off) = proxy_arp_off(n, &veth) {
            let text = format!(
                "{who}: the pod's gateway {CALICO_GATEWAY} is answered by proxy ARP on {veth}, and proxy_arp is 0 there ({off}): the pod cannot resolve its gateway and sends nothing"
            );
            let hop =
                Hop::new("routing", node.to_string(), text.clone()).src(sysctl_src("proxy_arp"));
            return fail(Verdict::Dropped, text, hop, false);
        }
        let l = ctx.route(
            node,
            &Flow {
                src: Some(pod_ip),
                dst: CALICO_GATEWAY,
                iif: Some(&veth),
                mark: 0,
            },
        )?;
        match &l.result {
            Ok(RHop::Forward { .. }) => {
                let Some(mode) = mode else {
                    return None; // rp_filter not collected.
                };
                let what = format!(
                    "the node does not answer the pod's ARP for its gateway {CALICO_GATEWAY} (proxy ARP on {veth}: the ARP's route lookup for {CALICO_GATEWAY} fails the reverse-path check), so the pod sends nothing"
                );
                match rp_over_paths(ctx, n, node, &veth, &l, pod_ip, CALICO_GATEWAY, mode) {
                    PathsRp::Pass => {}
                    PathsRp::Fail(why) => return rejected(why, what),
                    PathsRp::Mixed(why) => {
                        // One ARP flow, one path: which one the kernel's multipath hash (with
                        // its random per-boot seed) picks cannot be read from a snapshot.
                        let text = format!(
                            "{who}: whether the node answers the pod's ARP for its gateway {CALICO_GATEWAY} depends on which next hop of the multipath route the kernel hashes that one ARP flow to (the hash seed is random per boot): {why}; the pod either reaches everything or nothing. Check on {node}: `ip neigh` in the pod (169.254.1.1 REACHABLE or INCOMPLETE)"
                        );
                        let hop =
                            Hop::new("routing", node.to_string(), text.clone()).src(l.source());
                        return fail(Verdict::Unknown, text, hop, false);
                    }
                }
            }
            Ok(_) | Err(RouteFailure::Unknown(_)) => {}
            Err(_) => {
                let text = format!(
                    "{who}: the node has no route to the pod's gateway {CALICO_GATEWAY}, so it does not answer the pod's ARP for it (proxy ARP on {veth} needs one) and the pod sends nothing"
                );
                let hop = Hop::new("routing", node.to_string(), text.clone()).src(l.source());
                return fail(Verdict::NoRoute, text, hop, false);
            }
        }
    }
    // The packet's own routing decision.
    let mode = mode?;
    let l = ctx.route(
        node,
        &Flow {
            src: Some(pod_ip),
            dst,
            iif: Some(&veth),
            mark,
        },
    )?;
    if !matches!(l.result, Ok(RHop::Forward { .. })) {
        // Delivered on the node (iif = lo for the reverse lookup), or no route on: the path
        // that follows reports that.
        if matches!(l.result, Ok(RHop::Local)) {
            if let Err(why) =
                routing::rp_filter_check_mode(n, ctx.synth(node), (&veth, None), pod_ip, dst, mode)
            {
                return rejected(
                    why,
                    format!("the node's reverse-path filter drops it as it comes in on {veth}"),
                );
            }
        }
        return None;
    }
    let what = format!("the node's reverse-path filter drops it as it comes in on {veth}");
    match rp_over_paths(ctx, n, node, &veth, &l, pod_ip, dst, mode) {
        PathsRp::Pass => {}
        PathsRp::Fail(why) => return rejected(why, what),
        PathsRp::Mixed(why) => {
            let text = format!(
                "{who}: the reverse-path check on {veth} depends on which next hop of the multipath route the kernel hashes the connection to: {why}"
            );
            let hop = Hop::new("routing", node.to_string(), text.clone()).src(l.source());
            return fail(Verdict::Unknown, text, hop, false);
        }
    }
    None
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
    if let Some(f) = egress_fails(
        ctx,
        &ingress_node,
        ingress_ip,
        backend_ip,
        o.route_mark.unwrap_or(o.packet.mark),
        &there,
    ) {
        return Some(f);
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
    egress_fails(ctx, &backend_node, backend_ip, reply_dst, 0, &back)
        .map(|f| PodFailure { reached: true, ..f })
}

/// The reverse-path filter mode for packets from the pod's veth: max(all, veth). A snapshot
/// may print `conf.all` but not the veth (a filtered `sysctl` or a veth created after it):
/// with `all` at 1 the mode is 1 or 2, and on a veth without an IPv4 address both reject the
/// same packets, so 1 stands for either.
fn rp_mode(n: &NodeNet, veth: &str, no_addr: bool) -> Option<u8> {
    n.rp_filter(veth).or_else(|| {
        let all: i64 = n
            .sysctl("net.ipv4.conf.all.rp_filter")?
            .value
            .trim()
            .parse()
            .ok()?;
        match all {
            0 => None,
            _ if no_addr => Some(1),
            _ => None,
        }
    })
}

/// The reverse-path check over every path a forwarding lookup may take.
enum PathsRp {
    Pass,
    /// Every path fails (the first reason).
    Fail(String),
    /// Some pass and some fail (the failing ones).
    Mixed(String),
}

#[allow(clippy::too_many_arguments)]
fn rp_over_paths(
    ctx: &Ctx,
    n: &NodeNet,
    node: &str,
    veth: &str,
    l: &routing::Lookup,
    src: IpAddr,
    dst: IpAddr,
    mode: u8,
) -> PathsRp {
    let devs = routing::forward_devices(n, ctx.synth(node), l);
    let mut fails = Vec::new();
    for (dev, _) in &devs {
        if let Err(why) = routing::rp_filter_check_mode(
            n,
            ctx.synth(node),
            (veth, dev.as_deref()),
            src,
            dst,
            mode,
        ) {
            fails.push(format!("via {}: {why}", dev.as_deref().unwrap_or("?")));
        }
    }
    match fails.len() {
        0 => PathsRp::Pass,
        k if k == devs.len() => PathsRp::Fail(
            fails
                .swap_remove(0)
                .split_once(": ")
                .map(|(_, w)| w.to_string())
                .unwrap_or_default(),
        ),
        _ => PathsRp::Mixed(fails.join("; ")),
    }
}
