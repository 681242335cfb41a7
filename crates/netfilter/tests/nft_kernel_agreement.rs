//! Kernel agreement for the nft engine: kube-proxy-shaped nftables rulesets (nftables mode's
//! layout, from the seeded generator in `nft_support`) are loaded with `nft -f` into the node
//! namespace of the kernel-agreement lab (`kernel::lab`), probed with real TCP connections from
//! the client namespace to ClusterIPs, NodePorts and LoadBalancer IPs (and to a wrong port and
//! an unallocated ClusterIP), and what the kernel did (which server namespace accepted on which
//! address:port, whether the source was masqueraded; the client's ECONNREFUSED for a reject;
//! silence for a drop) is compared with `kubepath_netfilter::trace_nft`.
//!
//! Deterministic probes must agree exactly. Probes the engine splits (`numgen random mod N`)
//! are sent `SPLIT_SAMPLES` times and the observed counts must fit the engine's probabilities
//! (Pearson chi-square; a fit fails below p = 1e-6, so a run of up to 100 fits fails by chance
//! with probability below 1e-4), and any outcome the engine does not predict fails at once.
//! Services with ClientIP affinity are probed once per client address (the affinity sets are
//! flushed before each probe: the engine traces a first packet) and the backend must be one the
//! engine predicts.
//!
//! A second family is not kube-proxy-shaped (`nft_support::layered`): several `ip` / `inet`
//! tables with several base chains per hook at equal and different priorities, chains below
//! conntrack (-200) reading `ct state` and using `notrack`, filter chains at -100 next to nat
//! chains created before and after them, marks carrying one chain's doing to the next. Each is
//! loaded after its own `nft flush ruleset` and probed (deterministic, exact agreement).
//!
//! Either family fails when more than `MAX_UNKNOWN_SHARE` of its probes is UNKNOWN to the
//! engine, or when no probe agreed.
//!
//! As root with `KUBEPATH_PRIV_TESTS=1` (otherwise `skipped: ...`). `KUBEPATH_NFT_KA_SEEDS=N`
//! sets the number of generated rulesets (default 12). Namespaces are deleted on every exit
//! path (the lab's `Drop`).

#[allow(dead_code, unused_imports)]
mod kernel;
mod nft_support;

use kernel::compare::LabRouter;
use kernel::lab::{run, Lab};
use kernel::probe::{self, ClientSaw};
use kernel::responder::Responders;
use kernel::stats;
use kubepath_netfilter::{trace_nft, Env, NftRuleset, Verdict};
use kubepath_netfilter_gen::privileged;
use kubepath_netfilter_gen::{LabPlan, Probe, ProbeProto};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const DEFAULT_SEEDS: u64 = 12;
const SPLIT_SAMPLES: usize = 600;
const P_FAIL: f64 = 1e-6;
const TIMEOUT: Duration = Duration::from_millis(300);
const SETTLE: Duration = Duration::from_millis(40);
const THREADS: usize = 100;
/// A family of rulesets fails when more than this share of its probes is UNKNOWN to the
/// engine (an engine that gives up everywhere must not pass by agreeing on nothing).
const MAX_UNKNOWN_SHARE: f64 = 0.10;

/// What happened to one connection, as both sides can say it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Sig {
    /// Accepted by a server on `addr:port`; `masq`: its peer was not the client.
    Served {
        addr: Ipv4Addr,
        port: u16,
        masq: bool,
    },
    /// ECONNREFUSED (reject, or nothing listening).
    Refused,
    /// Nothing (drop).
    Silence,
    /// Anything else the client saw.
    Other(String),
}

struct Run<'a> {
    lab: &'a Lab,
    responders: &'a Responders,
    env_addrs: Vec<IpAddr>,
    router: LabRouter,
    clients: Vec<(Ipv4Addr, &'static str)>,
    next_sport: u16,
    listen_ports: Vec<u16>,
}

#[derive(Default)]
struct Tally {
    cases: usize,
    probes: usize,
    connections: usize,
    det_agree: usize,
    fits: Vec<(String, f64, usize)>,
    affinity_checked: usize,
    unknown: usize,
    failures: Vec<String>,
}

impl Run<'_> {
    fn sport(&mut self) -> u16 {
        self.next_sport = if self.next_sport >= 60000 {
            20000
        } else {
            self.next_sport + 1
        };
        self.next_sport
    }

    /// The engine's distribution for a probe (None: UNKNOWN somewhere).
    fn engine(&self, rs: &NftRuleset, p: &Probe) -> Option<BTreeMap<Sig, f64>> {
        let pkt = kernel::compare::packet(p);
        let env = Env {
            local_addrs: &self.env_addrs,
            router: Some(&self.router),
            ..Env::default()
        };
        let t = trace_nft(rs, &pkt, &env);
        let mut m = BTreeMap::new();
        for o in &t.outcomes {
            let sig = match &o.verdict {
                Verdict::Accept => {
                    let (IpAddr::V4(addr), port) = (o.packet.dst, o.packet.dport) else {
                        return None;
                    };
                    if o.local_delivery && o.dnat.is_none() && !self.listen_ports.contains(&port) {
                        Sig::Refused
                    } else {
                        Sig::Served {
                            addr,
                            port,
                            masq: o.masquerade,
                        }
                    }
                }
                Verdict::Drop => Sig::Silence,
                Verdict::Reject { .. } => Sig::Refused,
                Verdict::Unknown { .. } => return None,
            };
            *m.entry(sig).or_insert(0.0) += o.probability;
        }
        Some(m)
    }

    /// Send the probes (fresh conntrack) and return what was observed, one per probe.
    fn observe(&mut self, probes: &[Probe], flush_sets: &[String]) -> Result<Vec<Sig>, String> {
        self.lab.flush_conntrack()?;
        for s in flush_sets {
            run(
                &[
                    "ip",
                    "netns",
                    "exec",
                    &self.lab.node,
                    "nft",
                    "flush",
                    "set",
                    "ip",
                    "kube-proxy",
                    s,
                ],
                None,
            )?;
        }
        let _ = self.responders.take();
        let saw = probe::send_all(&self.lab.client, probes, THREADS, TIMEOUT, SETTLE)?;
        std::thread::sleep(SETTLE);
        let seen = self.responders.take();
        let clients: Vec<Ipv4Addr> = self.clients.iter().map(|c| c.0).collect();
        let mut out: Vec<Sig> = seen
            .iter()
            .filter(|s| s.proto == ProbeProto::Tcp)
            .map(|s| Sig::Served {
                addr: *s.local.ip(),
                port: s.local.port(),
                masq: !clients.contains(s.peer.ip()),
            })
            .collect();
        let connected = saw.iter().filter(|c| **c == ClientSaw::Connected).count();
        if connected != out.len() {
            return Err(format!(
                "{connected} connections completed but the servers saw {}",
                out.len()
            ));
        }
        for c in saw {
            match c {
                ClientSaw::Connected => {}
                ClientSaw::Refused => out.push(Sig::Refused),
                ClientSaw::Silence => out.push(Sig::Silence),
                other => out.push(Sig::Other(format!("{other:?}"))),
            }
        }
        Ok(out)
    }

    fn probe(&mut self, src: (Ipv4Addr, &'static str), dst: Ipv4Addr, dport: u16) -> Probe {
        Probe {
            src: src.0,
            in_iface: src.1,
            local_origin: false,
            dst,
            proto: ProbeProto::Tcp,
            sport: self.sport(),
            dport,
            udp_payload: 0,
        }
    }

    /// A layered ruleset (`nft_support::layered`): loaded after `nft flush ruleset` (run on its
    /// own: within one transaction the old chains' hooks, the nat core's among them, stay
    /// registered until the commit, which would keep the nat core's old place), probed on
    /// every port it talks about, to a backend (forwarded) and to the node (input), from
    /// both client links. Every probe is deterministic and must agree exactly.
    fn layered_case(&mut self, seed: u64, tally: &mut Tally) {
        let net = nft_support::Net::lab();
        let g = nft_support::layered(seed, &net);
        let name = format!("layered seed {seed}");
        let (rs, diags) = match NftRuleset::parse(&name, &g.text) {
            Ok(x) => x,
            Err(e) => {
                tally
                    .failures
                    .push(format!("{name}: the reader refused it: {e}\n{}", g.text));
                return;
            }
        };
        if !diags.is_empty() {
            tally
                .failures
                .push(format!("{name}: unexpected diagnostics {diags:?}"));
        }
        let node = &self.lab.node;
        if let Err(e) = run(
            &["ip", "netns", "exec", node, "nft", "flush", "ruleset"],
            None,
        ) {
            tally
                .failures
                .push(format!("{name}: nft flush ruleset: {e}"));
            return;
        }
        if let Err(e) = run(
            &["ip", "netns", "exec", node, "nft", "-f", "-"],
            Some(&g.text),
        ) {
            tally
                .failures
                .push(format!("{name}: nft -f refused it: {e}\n{}", g.text));
            return;
        }
        tally.cases += 1;
        let clients = self.clients.clone();
        let mut srcs = vec![clients[0]];
        if let Some(c) = clients.iter().find(|c| c.1 != clients[0].1) {
            srcs.push(*c);
        }
        for &dport in &g.ports {
            for dst in [net.backends[0], net.nodeport_ip] {
                for &c in &srcs {
                    let p = self.probe(c, dst, dport);
                    let what = format!("{name}: tcp {}->{dst}:{dport}", p.src);
                    let Some(d) = self.engine(&rs, &p) else {
                        tally.unknown += 1;
                        continue;
                    };
                    tally.probes += 1;
                    if d.len() != 1 {
                        tally
                            .failures
                            .push(format!("{what}: the engine splits ({d:?}): unexpected"));
                        continue;
                    }
                    let want = d.keys().next().cloned();
                    let mut got = self.observe(std::slice::from_ref(&p), &[]);
                    if matches!(&got, Ok(v) if v.first() == Some(&Sig::Silence))
                        && want != Some(Sig::Silence)
                    {
                        got = self.observe(std::slice::from_ref(&p), &[]);
                    }
                    tally.connections += 1;
                    match got {
                        Ok(v) if v.first() == want.as_ref() => tally.det_agree += 1,
                        Ok(v) => tally
                            .failures
                            .push(format!("{what}: engine {want:?}, kernel {v:?}\n{}", g.text)),
                        Err(e) => tally.failures.push(format!("{what}: harness: {e}")),
                    }
                }
            }
        }
    }

    fn case(&mut self, seed: u64, tally: &mut Tally) {
        let net = nft_support::Net::lab();
        let g = nft_support::kube_proxy(seed, &net);
        let name = format!("seed {seed}");
        let (rs, diags) = match NftRuleset::parse(&name, &g.text) {
            Ok(x) => x,
            Err(e) => {
                tally
                    .failures
                    .push(format!("{name}: the reader refused it: {e}"));
                return;
            }
        };
        if !diags.is_empty() {
            tally
                .failures
                .push(format!("{name}: unexpected diagnostics {diags:?}"));
        }
        let load = format!(
            "table ip kube-proxy\ndelete table ip kube-proxy\n{}",
            g.text
        );
        if let Err(e) = run(
            &["ip", "netns", "exec", &self.lab.node, "nft", "-f", "-"],
            Some(&load),
        ) {
            tally
                .failures
                .push(format!("{name}: nft -f refused it: {e}"));
            return;
        }
        tally.cases += 1;
        let affinity_sets: Vec<String> = g
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("add set ip kube-proxy affinity-"))
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| format!("affinity-{n}"))
            .collect();
        // (destination, port, affinity)
        let mut targets: Vec<(Ipv4Addr, u16, bool)> = Vec::new();
        for s in &g.services {
            let aff = s.affinity && s.endpoints.len() > 1;
            targets.push((s.cluster_ip, s.port, aff));
            if let Some(np) = s.node_port {
                targets.push((net.nodeport_ip, np, aff));
            }
            if let Some(e) = s.external_ip {
                targets.push((e, s.port, aff));
            }
            targets.push((s.cluster_ip, 9999, false));
        }
        targets.push((Ipv4Addr::new(10, 96, 9, 9), 80, false));
        let clients = self.clients.clone();
        for (dst, dport, aff) in targets {
            let what = format!("{name}: tcp to {dst}:{dport}");
            // Engine per client source.
            let mut dists = Vec::new();
            for c in &clients {
                let p = self.probe(*c, dst, dport);
                match self.engine(&rs, &p) {
                    Some(d) => dists.push((p, d)),
                    None => tally.unknown += 1,
                }
            }
            for (p, d) in &dists {
                tally.probes += 1;
                if d.len() == 1 {
                    let want = d.keys().next().cloned();
                    let mut got = self.observe(std::slice::from_ref(p), &[]);
                    if matches!(&got, Ok(v) if v.first() == Some(&Sig::Silence))
                        && want != Some(Sig::Silence)
                    {
                        // a lost packet on a loaded machine: once more
                        got = self.observe(std::slice::from_ref(p), &[]);
                    }
                    tally.connections += 1;
                    match got {
                        Ok(v) if v.first() == want.as_ref() => tally.det_agree += 1,
                        Ok(v) => tally.failures.push(format!(
                            "{what} from {}: engine {want:?}, kernel {v:?}",
                            p.src
                        )),
                        Err(e) => tally.failures.push(format!("{what}: harness: {e}")),
                    }
                } else if aff {
                    match self.observe(std::slice::from_ref(p), &affinity_sets) {
                        Ok(v) => {
                            tally.connections += 1;
                            tally.affinity_checked += 1;
                            if !v.first().is_some_and(|s| d.contains_key(s)) {
                                tally.failures.push(format!(
                                    "{what} from {} (affinity): kernel {v:?} is not among the engine's {d:?}",
                                    p.src
                                ));
                            }
                        }
                        Err(e) => tally.failures.push(format!("{what}: harness: {e}")),
                    }
                }
            }
            // Splits: one sample over all client sources when the engine gives them the same
            // distribution (it does: they are all outside the pod CIDR).
            let split: Vec<&(Probe, BTreeMap<Sig, f64>)> =
                dists.iter().filter(|(_, d)| d.len() > 1).collect();
            if aff || split.is_empty() {
                continue;
            }
            let d = &split[0].1;
            if split.iter().any(|(_, x)| x != d) {
                tally.failures.push(format!(
                    "{what}: the engine's split differs by client (unexpected)"
                ));
                continue;
            }
            let probes: Vec<Probe> = (0..SPLIT_SAMPLES)
                .map(|i| {
                    let c = split[i % split.len()].0.src;
                    let iface = split[i % split.len()].0.in_iface;
                    self.probe((c, iface), dst, dport)
                })
                .collect();
            match self.observe(&probes, &[]) {
                Ok(v) => {
                    tally.connections += v.len();
                    let keys: Vec<&Sig> = d.keys().collect();
                    let mut counts = vec![0u64; keys.len()];
                    let mut stray = Vec::new();
                    for s in &v {
                        match keys.iter().position(|k| *k == s) {
                            Some(i) => counts[i] += 1,
                            None => stray.push(s.clone()),
                        }
                    }
                    if !stray.is_empty() {
                        tally.failures.push(format!(
                            "{what}: the kernel did what the engine does not predict: {:?} (engine {d:?})",
                            &stray[..stray.len().min(3)]
                        ));
                        continue;
                    }
                    let probs: Vec<f64> = keys.iter().map(|k| d[*k]).collect();
                    let fit = stats::chi_square_pooled(&counts, &probs);
                    tally.fits.push((what.clone(), fit.p_value, keys.len()));
                    if fit.p_value < P_FAIL {
                        tally.failures.push(format!(
                            "{what}: counts {counts:?} do not fit the engine's {probs:?} (chi-square {:.1}, df {}, p {:.2e})",
                            fit.statistic, fit.df, fit.p_value
                        ));
                    }
                }
                Err(e) => tally.failures.push(format!("{what}: harness: {e}")),
            }
        }
    }
}

#[test]
fn nft_kernel_agreement() {
    if !privileged::gate("nft_kernel_agreement", &["nft"]) {
        return;
    }
    for tool in ["ip", "nft", "conntrack"] {
        run(&["sh", "-c", &format!("command -v {tool}")], None)
            .unwrap_or_else(|e| panic!("{tool} is needed: {e}"));
    }
    let seeds: u64 = std::env::var("KUBEPATH_NFT_KA_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    let plan = LabPlan::standard();
    let lab = Lab::build(&plan, &format!("kpn{}", std::process::id()))
        .unwrap_or_else(|e| panic!("building the namespace lab: {e}"));
    let node_addrs = plan.node_addrs();
    let mut servers: Vec<(String, Vec<Ipv4Addr>)> = vec![(lab.node.clone(), node_addrs.clone())];
    for (i, l) in plan.backend_links.iter().enumerate() {
        let mut addrs = l.peer_addrs.clone();
        if i + 1 == plan.backend_links.len() {
            addrs.extend(&plan.service_ips);
        }
        servers.push((lab.backends[i].clone(), addrs));
    }
    let responders =
        Responders::start(&servers, &plan.ports).unwrap_or_else(|e| panic!("responders: {e}"));
    let mut r = Run {
        lab: &lab,
        responders: &responders,
        env_addrs: node_addrs.iter().map(|a| IpAddr::V4(*a)).collect(),
        router: LabRouter {
            plan: plan.clone(),
            node_addrs: node_addrs.clone(),
        },
        clients: plan.client_sources(),
        next_sport: 20000,
        listen_ports: plan.ports.clone(),
    };
    let mut tally = Tally::default();
    for seed in 0..seeds {
        r.case(seed, &mut tally);
    }
    let mut layered = Tally::default();
    for seed in 0..seeds {
        r.layered_case(seed, &mut layered);
    }
    drop(responders);
    drop(lab);
    println!(
        "layered rulesets: {} rulesets, {} probes, {} agreed, {} UNKNOWN skipped, {} failures",
        layered.cases,
        layered.probes,
        layered.det_agree,
        layered.unknown,
        layered.failures.len()
    );
    let mut failures = Vec::new();
    for (fam, t) in [("kube-proxy", &tally), ("layered", &layered)] {
        let all = t.probes + t.unknown;
        if all == 0 || t.unknown as f64 > MAX_UNKNOWN_SHARE * all as f64 {
            failures.push(format!(
                "{fam}: {} of {all} probes UNKNOWN to the engine (more than {:.0}%)",
                t.unknown,
                MAX_UNKNOWN_SHARE * 100.0
            ));
        }
        if t.cases as u64 != seeds || t.det_agree == 0 {
            failures.push(format!(
                "{fam}: {} of {seeds} rulesets loaded, {} deterministic probes agreed",
                t.cases, t.det_agree
            ));
        }
    }
    failures.extend(layered.failures.iter().cloned());
    println!(
        "nft kernel agreement: {} rulesets, {} probes ({} connections), {} deterministic agreed, {} affinity probes in the engine's support, {} split fits (min p {:.3e}), {} UNKNOWN skipped, {} failures",
        tally.cases,
        tally.probes,
        tally.connections,
        tally.det_agree,
        tally.affinity_checked,
        tally.fits.len(),
        tally.fits.iter().map(|f| f.1).fold(1.0, f64::min),
        tally.unknown,
        tally.failures.len()
    );
    for f in &tally.fits {
        println!("  fit {}: p {:.3e} over {} outcomes", f.0, f.1, f.2);
    }
    failures.extend(tally.failures.iter().cloned());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
