//! L7: ingress-nginx's decision and the proxied connection to the backend pods.

use super::*;

#[derive(Clone)]
pub(super) struct Leg {
    pub(super) p: f64,
    pub(super) verdict: Verdict,
    pub(super) reason: String,
    pub(super) hops: Vec<Hop>,
    /// Backend pods and their share within this leg class.
    pub(super) backends: Shares,
    pub(super) status: Option<u16>,
}

pub(super) fn one(b: Option<String>) -> Shares {
    std::rc::Rc::new(b.map(|b| vec![(b, 1.0)]).unwrap_or_default())
}

/// Merges legs with the same verdict, reason and status: the hops of the most probable one,
/// the backends with their shares within the class. Keeps fan-outs small.
pub(super) fn merge_legs(legs: Vec<Leg>) -> Vec<Leg> {
    let mut out: Vec<(Leg, f64)> = Vec::new();
    for l in legs {
        match out
            .iter_mut()
            .find(|(m, _)| m.verdict == l.verdict && m.reason == l.reason && m.status == l.status)
        {
            Some((m, best)) => {
                let total = m.p + l.p;
                let mut bs: BTreeMap<String, f64> = BTreeMap::new();
                for (b, s) in m.backends.iter() {
                    *bs.entry(b.clone()).or_default() += s * m.p;
                }
                for (b, s) in l.backends.iter() {
                    *bs.entry(b.clone()).or_default() += s * l.p;
                }
                if l.p > *best {
                    *best = l.p;
                    m.hops = l.hops;
                }
                m.p = total;
                m.backends = std::rc::Rc::new(
                    bs.into_iter()
                        .map(|(b, w)| (b, if total > 0.0 { w / total } else { 0.0 }))
                        .collect(),
                );
            }
            None => {
                let p = l.p;
                out.push((l, p));
            }
        }
    }
    out.into_iter().map(|(l, _)| l).collect()
}

/// The ingress controller's decision and the proxied connection to the backend.
pub(super) fn ingress_leg(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    c: &ControllerRef,
    pod: &Pod,
    port: u16,
) -> std::rc::Rc<Vec<Leg>> {
    // The decision and the proxied connection depend only on the controller pod and port.
    let key = (pod_name(pod), port);
    if let Some(l) = ctx.leg_memo.get(&key) {
        return l.clone();
    }
    let legs = std::rc::Rc::new(merge_legs(ingress_leg_uncached(ctx, result, c, pod, port)));
    ctx.leg_memo.insert(key, legs.clone());
    legs
}

pub(super) fn ingress_leg_uncached(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    c: &ControllerRef,
    pod: &Pod,
    port: u16,
) -> Vec<Leg> {
    let (https, host, path) = match &ctx.req.target {
        Target::Url {
            https, host, path, ..
        } => (*https, host.clone(), path.clone()),
        Target::Host { host, .. } => (ctx.dport == 443, host.clone(), "/".to_string()),
        Target::Addr { ip, .. } => (ctx.dport == 443, ip.to_string(), "/".to_string()),
    };
    let req = HttpRequest {
        scheme: if https { Scheme::Https } else { Scheme::Http },
        host,
        port: ctx.dport,
        path,
        headers: Vec::new(),
        cookies: Vec::new(),
    };
    let d = ctx.index.view.match_request(c, &req);
    if !d.alternatives.is_empty() {
        // A canary split: each alternative with its probability (they sum to 1).
        let mut legs = Vec::new();
        for (w, alt) in &d.alternatives {
            for mut l in decision_legs(ctx, result, pod, port, &req, alt.clone()) {
                l.p *= w;
                l.hops.insert(
                    0,
                    Hop::new(
                        "ingress",
                        pod_name(pod),
                        format!("canary split: this alternative takes {:.1}%", w * 100.0),
                    )
                    .p(*w),
                );
                legs.push(l);
            }
        }
        return legs;
    }
    decision_legs(ctx, result, pod, port, &req, d)
}

pub(super) fn decision_legs(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    pod: &Pod,
    port: u16,
    req: &HttpRequest,
    d: crate::ingress::IngressDecision,
) -> Vec<Leg> {
    let pod_key = pod_name(pod);
    let pod_node = pod.node_name.clone().unwrap_or_default();
    let head = ingress_head(ctx, result, &pod_key, port, req, &d);
    if let Some(leg) = nginx_answer(&d, &head) {
        return vec![leg];
    }
    let px = Proxying {
        pod,
        pod_key: &pod_key,
        pod_node: &pod_node,
        head: &head,
    };
    let total: f64 = d.upstreams.iter().map(|(w, _)| *w).sum::<f64>().max(1e-12);
    let mut legs = Vec::new();
    for (w, up) in &d.upstreams {
        upstream_legs(ctx, &px, w / total, up, &mut legs);
    }
    legs
}

/// The ingress hop of the decision (also recorded in `result.ingress` for the pod), with the
/// decision's notes and findings recorded in `ctx`.
fn ingress_head(
    ctx: &mut Ctx,
    result: &mut TraceResult,
    pod_key: &str,
    port: u16,
    req: &HttpRequest,
    d: &crate::ingress::IngressDecision,
) -> Vec<Hop> {
    let mut head = Vec::new();
    let ing = d.ingress.as_ref().map(|(n, m)| format!("{n}/{m}"));
    let desc = match (&d.backend, d.status) {
        (Some(b), 200) => format!(
            "ingress-nginx in {pod_key} (port {port}): Host {} path {} -> Ingress {} -> Service {}/{}:{}",
            req.host,
            req.path,
            ing.clone().unwrap_or_else(|| "-".into()),
            b.namespace,
            b.service,
            b.port_number.map(|p| p.to_string()).unwrap_or_else(|| format!("{:?}", b.port))
        ),
        (_, s) if s != 200 && d.unknown.is_some() => format!(
            "ingress-nginx in {pod_key}: Host {} path {} -> answer unknown",
            req.host, req.path
        ),
        (_, s) => format!(
            "ingress-nginx in {pod_key}: Host {} path {} -> HTTP {s}{}",
            req.host,
            req.path,
            d.location.as_ref().map(|l| format!(" to {l}")).unwrap_or_default()
        ),
    };
    head.push(Hop::new("ingress", pod_key.to_string(), desc).src(d.rule_source.clone()));
    for n in &d.notes {
        let generic = n.clone();
        ctx.ingress_notes
            .entry(generic)
            .or_default()
            .insert(pod_key.to_string());
    }
    for f in &d.findings {
        ctx.notes.insert(format!(
            "finding: {} ({})",
            f.message,
            f.sources
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    result
        .ingress
        .entry(pod_key.to_string())
        .or_insert_with(|| head.clone());
    head
}

/// The one leg when nginx answers the request itself (or its answer is unknown): no
/// upstream connection follows.
fn nginx_answer(d: &crate::ingress::IngressDecision, head: &[Hop]) -> Option<Leg> {
    if let Some(why) = &d.unknown {
        return Some(Leg {
            p: 1.0,
            verdict: Verdict::Unknown,
            reason: format!("ingress-nginx's answer is unknown: {why}"),
            hops: head.to_vec(),
            backends: Shares::default(),
            status: None,
        });
    }
    if d.status != 200 {
        let verdict = if d.status == 503 {
            Verdict::NoEndpoints
        } else {
            Verdict::Delivered
        };
        let reason = if d.status == 503 {
            format!(
                "ingress-nginx answers 503: the backend has no ready endpoints ({})",
                d.notes.join("; ")
            )
        } else {
            format!("ingress-nginx answers HTTP {} itself", d.status)
        };
        return Some(Leg {
            p: 1.0,
            verdict,
            reason,
            hops: head.to_vec(),
            backends: Shares::default(),
            status: Some(d.status),
        });
    }
    if d.upstreams.is_empty() {
        return Some(Leg {
            p: 1.0,
            verdict: Verdict::NoEndpoints,
            reason: "ingress-nginx has no upstream endpoint for the backend (503)".into(),
            hops: head.to_vec(),
            backends: Shares::default(),
            status: Some(503),
        });
    }
    None
}

/// The ingress pod that proxies the request, and the hops up to its decision.
struct Proxying<'a> {
    pod: &'a Pod,
    pod_key: &'a str,
    pod_node: &'a str,
    head: &'a [Hop],
}

/// One proxied connection to an upstream endpoint, as it enters the ingress pod's node's
/// netfilter.
struct Connection<'a> {
    up: &'a crate::ingress::UpstreamEndpoint,
    /// The share of the requests the balancer sends it.
    pu: f64,
    /// The ingress pod's address.
    src: IpAddr,
    /// The upstream's address.
    ip: IpAddr,
    hops: Vec<Hop>,
}

/// The legs of the proxied connection to upstream `up` (share `pu`): from the ingress pod
/// through its node's netfilter, one per netfilter outcome.
fn upstream_legs(
    ctx: &mut Ctx,
    px: &Proxying<'_>,
    pu: f64,
    up: &crate::ingress::UpstreamEndpoint,
    legs: &mut Vec<Leg>,
) {
    let (pod, pod_node) = (px.pod, px.pod_node);
    let mut hops = px.head.to_vec();
    let Some(ip) = up.ip else {
        legs.push(Leg {
            p: pu,
            verdict: Verdict::Unknown,
            reason: format!("upstream {} has no IP address", up.address),
            hops,
            backends: Shares::default(),
            status: Some(200),
        });
        return;
    };
    // The proxied connection: from the ingress pod through its node's netfilter.
    let src = pod.pod_ips.first().copied().unwrap_or(ip);
    let in_if = ctx
        .route(
            pod_node,
            &Flow {
                src: None,
                dst: src,
                iif: None,
                mark: 0,
                l4: FlowL4::Unknown,
            },
        )
        .and_then(|l| match l.result {
            Ok(RHop::Forward { dev, .. }) => dev,
            _ => None,
        });
    let pkt = nf_packet(ctx, src, 45000, ip, up.port, in_if.as_deref());
    hops.push(
        Hop::new(
            "backend",
            px.pod_key.to_string(),
            format!(
                "new connection {src} -> {ip}:{} ({}){}",
                up.port,
                if up.via_cluster_ip {
                    "the Service's ClusterIP, service-upstream"
                } else {
                    "the endpoint directly, as ingress-nginx's balancer does"
                },
                in_if
                    .as_deref()
                    .map(|i| format!(", enters {pod_node}'s netfilter from {i}"))
                    .unwrap_or_default()
            ),
        )
        .p(pu),
    );
    match nf_trace(ctx, pod_node, &pkt) {
        Err(why) => {
            // Without the node's rules whether the connection leaves is unknown (issue
            // #11, review: a direct endpoint was assumed to pass).
            let backend = up.pod.as_ref().map(|(n, m)| format!("{n}/{m}"));
            legs.push(Leg {
                p: pu,
                verdict: Verdict::Unknown,
                reason: why,
                hops,
                backends: one(backend),
                status: Some(200),
            });
        }
        Ok(t) => {
            let conn = Connection {
                up,
                pu,
                src,
                ip,
                hops,
            };
            for o in &t.outcomes {
                legs.push(outcome_leg(ctx, px, &conn, o));
            }
        }
    }
}

/// The leg of one netfilter outcome `o` of the proxied connection `conn`.
fn outcome_leg(ctx: &mut Ctx, px: &Proxying<'_>, conn: &Connection<'_>, o: &nf::Outcome) -> Leg {
    let (pod, pod_node) = (px.pod, px.pod_node);
    let (up, pu, src, ip) = (conn.up, conn.pu, conn.src, conn.ip);
    let mut h = conn.hops.clone();
    h.extend(steps_hops(pod_node, &o.steps));
    let final_ip = o.dnat.as_ref().and_then(|d| d.addr).unwrap_or(ip);
    let final_port = o.dnat.as_ref().and_then(|d| d.port).unwrap_or(up.port);
    let bpod = ctx.pod_by_ip(final_ip);
    let backend = bpod
        .map(pod_name)
        .or_else(|| up.pod.as_ref().map(|(n, m)| format!("{n}/{m}")));
    match &o.verdict {
        nf::Verdict::Accept => {
            h.push(
                Hop::new(
                    "pod",
                    backend.clone().unwrap_or_default(),
                    format!(
                        "backend pod {} ({final_ip}:{final_port}) on {}",
                        backend.clone().unwrap_or_else(|| "?".into()),
                        bpod.and_then(|b| b.node_name.clone())
                            .unwrap_or_else(|| "?".into())
                    ),
                )
                .src(bpod.map(|b| b.source.clone()).or(up.source.clone())),
            );
            let fails = bpod.and_then(|b| podside::proxied_fails(ctx, pod, src, b, final_ip, o));
            if bpod.is_none() {
                Leg {
                    p: pu * o.probability,
                    verdict: Verdict::Unknown,
                    reason: ctx.no_pod_reason("backend", final_ip),
                    hops: h,
                    backends: one(backend.clone()),
                    status: Some(200),
                }
            } else if let Some(podside::PodFailure {
                verdict,
                reason: why,
                hop,
                reached,
                ..
            }) = fails
            {
                // The connection is never established: ingress-nginx waits
                // proxy-connect-timeout and answers 504 Gateway Timeout.
                if !reached {
                    h.pop(); // The SYN never reaches the backend pod.
                }
                h.push(hop);
                let (reason, status) = if verdict == Verdict::Unknown {
                    (
                        format!(
                            "whether the proxied connection gets established is unknown: {why}"
                        ),
                        None,
                    )
                } else {
                    (format!("the proxied connection never gets established, so ingress-nginx answers 504 after proxy-connect-timeout: {why}"), Some(504))
                };
                Leg {
                    p: pu * o.probability,
                    verdict,
                    reason,
                    hops: h,
                    backends: one(backend),
                    status,
                }
            } else {
                Leg {
                    p: pu * o.probability,
                    verdict: Verdict::Delivered,
                    reason: "delivered".into(),
                    hops: h,
                    backends: one(backend),
                    status: Some(200),
                }
            }
        }
        nf::Verdict::Drop | nf::Verdict::Reject { .. } => {
            let v = if no_endpoints_rule(&o.steps).is_some() {
                Verdict::NoEndpoints
            } else {
                Verdict::Dropped
            };
            let reason = format!(
                "the proxied connection is {} on {pod_node} by {}",
                if matches!(o.verdict, nf::Verdict::Drop) {
                    "dropped"
                } else {
                    "rejected"
                },
                drop_cause(o)
            );
            Leg {
                p: pu * o.probability,
                verdict: v,
                reason,
                hops: h,
                backends: one(backend),
                status: Some(502),
            }
        }
        nf::Verdict::Unknown { reason, .. } => Leg {
            p: pu * o.probability,
            verdict: Verdict::Unknown,
            reason: format!(
                "netfilter on {pod_node} cannot decide the proxied connection: {reason}"
            ),
            hops: h,
            backends: one(backend.clone()),
            status: None,
        },
    }
}
