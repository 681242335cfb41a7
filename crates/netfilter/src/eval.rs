//! The packet-flow evaluator: the first packet of a connection through the kernel's hooks.
//!
//! Hook order and table priorities are those of the kernel (include/uapi/linux/netfilter_ipv4.h:
//! raw -300, conntrack -200, mangle -150, nat DST -100, filter 0, security 50, nat SRC 100):
//!
//! * arriving: raw/mangle/nat PREROUTING, routing, then mangle/filter/security/nat INPUT (local)
//!   or mangle/filter/security FORWARD + mangle/nat POSTROUTING;
//! * local-origin: raw/mangle/nat/filter/security OUTPUT (rerouted after nat OUTPUT), then
//!   mangle/nat POSTROUTING; to a local address it then loops back through lo: raw/mangle
//!   PREROUTING and mangle/filter/security INPUT (nat is not consulted again: both NAT
//!   bindings were set up on the way out).
//!
//! nat chains are only consulted for conntrack NEW (and not for untracked packets). Within a
//! nat hook, the first NAT target ends the traversal (the kernel's NAT targets return
//! NF_ACCEPT).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::rule::{
    addrtype, ctstate, ctstatus, ConnmarkOp, CtField, IfacePat, IpRangeM, Match, NatRange,
    PortRange, Rule, SetRef, TableData, Target,
};
use crate::ruleset::Ruleset;
use crate::types::{
    addr_to_u128, u128_to_addr, CtState, EndCause, Env, Family, NatTarget, Outcome, Packet, Proto,
    RouteDecision, SourceRef, Step, Table, Trace, Verdict,
};

/// Trace the packet through the ruleset as the kernel would for the hook path it takes, and
/// return every distinct outcome with its probability (summing to 1), most probable first.
pub fn trace(rules: &Ruleset, pkt: &Packet, env: &Env) -> Trace {
    Evaluator {
        rs: rules,
        env,
        use_index: true,
    }
    .run(pkt)
}

/// Like [`trace`] but without the dispatch indexes: every rule of every chain is tested in
/// order. For tests and benchmarks that check the index gives identical results.
#[doc(hidden)]
pub fn trace_linear(rules: &Ruleset, pkt: &Packet, env: &Env) -> Trace {
    Evaluator {
        rs: rules,
        env,
        use_index: false,
    }
    .run(pkt)
}

/// Most distinct branches (forks whose state no pending branch already has) a trace follows
/// before the rest is reported UNKNOWN. Identical states are merged as they are produced, so
/// only truly different outcomes count: kube-proxy's split over a Service's endpoints is one
/// fork per endpoint.
const MAX_BRANCHES: usize = 20_000;
/// Most rule evaluations, over all branches, before the rest is reported UNKNOWN: bounds the
/// time of a trace whatever the ruleset's shape.
const MAX_VISITS: usize = 5_000_000;
/// Most rule steps kept per path for the explanation (the path itself goes on).
const MAX_STEPS: usize = 1_000;
/// Deepest chain nesting (the kernel refuses loops at load time; this guards odd input).
const MAX_DEPTH: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    fn chain(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Stage {
    Hook(Hook, Table),
    /// Routing decision for an arriving packet (after nat PREROUTING).
    Route,
    /// Local-origin: initial route (the socket's), before raw OUTPUT.
    RouteOut,
    /// Local-origin: reroute after nat OUTPUT (destination or mark may have changed).
    Reroute,
    /// Local-origin to a local address: loop back through lo.
    Loopback,
    /// IPVS at LOCAL_IN (priority 98: after security INPUT, before nat INPUT), where the node
    /// has an IPVS table ([`crate::ipvs`]).
    Ipvs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Frame {
    chain: u32,
    pos: usize,
    /// `-g` steps that led to this frame without stacking one (a goto replaces the frame).
    gotos: usize,
}

#[derive(Clone, Debug)]
struct Branch {
    prob: f64,
    pkt: Packet,
    plan: Vec<Stage>,
    stage: usize,
    /// Current traversal: table, hook, built-in policy, frames.
    cur: Option<(Table, Hook, Verdict, u32)>,
    stack: Vec<Frame>,
    /// The interface the packet came in on, as hooks see it ("" for local-origin).
    in_dev: Option<String>,
    route: Option<RouteDecision>,
    /// Local-origin: the route the packet had when it entered the OUTPUT hook. Every OUTPUT
    /// table sees that route's device as `-o` even after nat (or mangle) OUTPUT rerouted the
    /// packet: `__ip_local_out` (net/ipv4/ip_output.c) calls `nf_hook(NF_INET_LOCAL_OUT, ...,
    /// NULL, skb_dst(skb)->dev, ...)` once, and `ip_route_me_harder` only replaces the skb's
    /// dst, not the hook state's `out` (POSTROUTING, entered from `ip_output` with the new
    /// dst's device, sees the new one). Measured in a namespace: DNAT in nat OUTPUT from a
    /// route via d1 to one via d0, filter/mangle OUTPUT `-o d1` counted the packet and nat
    /// POSTROUTING `-o d0`.
    output_route: Option<RouteDecision>,
    /// The packet's mark at the last routing decision (what `ip rule fwmark` saw).
    route_mark: Option<u32>,
    local_origin: bool,
    local_delivery: bool,
    /// A verdict decided when the branch was forked (IPVS: a real server that cannot be
    /// reached): returned as soon as the branch is walked.
    pending: Option<Verdict>,
    ct: CtState,
    orig_src: IpAddr,
    orig_dst: IpAddr,
    orig_sport: u16,
    orig_dport: u16,
    dnat: Option<NatTarget>,
    snat: Option<NatTarget>,
    /// The connection has IPS_DST_NAT / IPS_SRC_NAT (the `--ctstate DNAT` / `SNAT` virtual
    /// states): `nf_nat_setup_info` (net/netfilter/nf_nat_core.c) sets the bit only when the
    /// new tuple differs from the current one (`if (!nf_ct_tuple_equal(&new_tuple,
    /// &curr_tuple))`), so a DNAT/REDIRECT/SNAT/MASQUERADE that maps the packet onto its own
    /// address and port leaves it clear. Measured in a namespace: after `DNAT
    /// --to-destination` of the packet's own destination, filter OUTPUT `--ctstate DNAT` did
    /// not match and `! --ctstate DNAT` did; after a real DNAT the former matched.
    dnat_status: bool,
    snat_status: bool,
    masquerade: bool,
    steps: Vec<Step>,
    notes: Vec<String>,
    /// What ended the branch when no rule's target did ([`Outcome::ended_by`]).
    ended_by: Option<EndCause>,
    /// Merged into a pending branch with the same state: its probability went there.
    merged: bool,
}

impl Branch {
    /// Everything that decides the branch's future (not its probability, nor the steps and
    /// notes that explain its past).
    #[allow(clippy::type_complexity)]
    fn state(
        &self,
    ) -> (
        (
            &Packet,
            &[Stage],
            usize,
            &Option<(Table, Hook, Verdict, u32)>,
            &[Frame],
        ),
        (
            &Option<String>,
            &Option<RouteDecision>,
            &Option<RouteDecision>,
            Option<u32>,
        ),
        (bool, bool, CtState, IpAddr, IpAddr, u16, u16),
        (&Option<NatTarget>, &Option<NatTarget>, bool, bool, bool),
    ) {
        (
            (&self.pkt, &self.plan, self.stage, &self.cur, &self.stack),
            (
                &self.in_dev,
                &self.route,
                &self.output_route,
                self.route_mark,
            ),
            (
                self.local_origin,
                self.local_delivery,
                self.ct,
                self.orig_src,
                self.orig_dst,
                self.orig_sport,
                self.orig_dport,
            ),
            (
                &self.dnat,
                &self.snat,
                self.dnat_status,
                self.snat_status,
                self.masquerade,
            ),
        )
    }

    /// Takes the probability and notes of a branch with the same state: the steps shown stay
    /// this branch's.
    fn absorb(&mut self, prob: f64, notes: &[String]) {
        self.prob += prob;
        for n in notes {
            if !self.notes.contains(n) {
                self.notes.push(n.clone());
            }
        }
        if !self.notes.iter().any(|n| n == MERGED_NOTE) {
            self.notes.push(MERGED_NOTE.to_string());
        }
    }
}

const MERGED_NOTE: &str =
    "several paths with the same result were merged (steps of the first shown)";

/// The branches still to follow. A fork whose state a pending branch already has is merged
/// into it, and a running branch that reaches the state of a pending one is merged into it, so
/// fan-outs that reconverge (statistic splits that end in the same place) stay linear. The
/// bounds on distinct branches and rule evaluations end the trace with UNKNOWN.
struct Work {
    stack: Vec<Branch>,
    /// State hash of each entry of `stack`.
    keys: Vec<u64>,
    by_state: std::collections::HashMap<u64, Vec<usize>, crate::index::FxBuild>,
    hasher: crate::index::FxBuild,
    spawned: usize,
    visits: usize,
    /// Set when a bound was hit: why.
    exhausted: Option<String>,
}

impl Work {
    fn new() -> Self {
        Work {
            stack: Vec::new(),
            keys: Vec::new(),
            by_state: Default::default(),
            hasher: Default::default(),
            spawned: 1,
            visits: 0,
            exhausted: None,
        }
    }

    fn key(&self, b: &Branch) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(b.state())
    }

    /// The pending branch with `b`'s state.
    fn find(&self, b: &Branch, key: u64) -> Option<usize> {
        let st = b.state();
        self.by_state
            .get(&key)?
            .iter()
            .copied()
            .find(|&i| self.stack[i].state() == st)
    }

    fn push(&mut self, b: Branch) {
        let key = self.key(&b);
        if let Some(i) = self.find(&b, key) {
            self.stack[i].absorb(b.prob, &b.notes);
            return;
        }
        self.by_state.entry(key).or_default().push(self.stack.len());
        self.keys.push(key);
        self.stack.push(b);
    }

    fn pop(&mut self) -> Option<Branch> {
        let b = self.stack.pop()?;
        let key = self.keys.pop().unwrap_or_default();
        let i = self.stack.len();
        if let Some(v) = self.by_state.get_mut(&key) {
            v.retain(|&x| x != i);
            if v.is_empty() {
                self.by_state.remove(&key);
            }
        }
        Some(b)
    }

    /// Merges running branch `b` into a pending one with its state, if any.
    fn merge_running(&mut self, b: &mut Branch) -> bool {
        if self.stack.is_empty() {
            return false;
        }
        let key = self.key(b);
        match self.find(b, key) {
            Some(i) => {
                // The pending branch was forked off this one's path earlier: the steps shown
                // stay this (the first) path's, as when outcomes are merged at the end.
                let pending = &mut self.stack[i];
                std::mem::swap(&mut pending.steps, &mut b.steps);
                std::mem::swap(&mut pending.notes, &mut b.notes);
                std::mem::swap(&mut pending.prob, &mut b.prob);
                pending.absorb(b.prob, &b.notes);
                b.merged = true;
                true
            }
            None => false,
        }
    }

    /// Counts a rule evaluation; `Some(reason)` once a bound is hit.
    fn visit(&mut self) -> Option<String> {
        self.visits += 1;
        if self.visits > MAX_VISITS && self.exhausted.is_none() {
            self.exhausted = Some(format!(
                "more than {MAX_VISITS} rule evaluations over all paths (a fan-out of `statistic` rules that does not reconverge?); the rest is not traced"
            ));
        }
        self.exhausted.clone()
    }
}

enum Res {
    Yes,
    No,
    Unknown(String),
}

/// What a rule's matches say of a branch ([`Evaluator::test_rule`]).
enum RuleTest {
    No,
    Unknown(String),
    /// They hold; with `statistic` matches, with that probability.
    Holds(Option<StatSplit>),
}

/// The probability that a rule's `statistic` matches hold (`nth`: the last `--every`, for a
/// note).
#[derive(Clone, Copy)]
struct StatSplit {
    p: f64,
    nth: Option<u32>,
}

/// Splits the branch at a rule whose `statistic` matches hold with probability `stat.p`
/// (above 0): the branch where they do not goes to `work`. `Some` (UNKNOWN) when there are
/// too many branches.
fn fork_statistic(
    b: &mut Branch,
    work: &mut Work,
    stat: &StatSplit,
    src: &SourceRef,
) -> Option<Verdict> {
    let split = stat.p;
    if split < 1.0 {
        if work.spawned >= MAX_BRANCHES {
            let reason = format!("more than {MAX_BRANCHES} distinct probabilistic branches (at {src}); the rest is not traced");
            work.exhausted = Some(reason.clone());
            return Some(Verdict::Unknown {
                reason,
                rule: Some(src.clone()),
            });
        }
        work.spawned += 1;
        let mut other = b.clone();
        other.prob *= 1.0 - split;
        work.push(other);
        b.prob *= split;
    }
    if let Some(n) = stat.nth {
        let note =
            format!("statistic --mode nth --every {n} modelled as probability 1/{n} ({src})");
        if !b.notes.contains(&note) {
            b.notes.push(note);
        }
    }
    None
}

/// A match's result from whether it holds.
fn yn(x: bool) -> Res {
    if x {
        Res::Yes
    } else {
        Res::No
    }
}

struct Evaluator<'a, 'e> {
    rs: &'a Ruleset,
    env: &'a Env<'e>,
    use_index: bool,
}

fn is_v6(a: IpAddr) -> bool {
    a.is_ipv6()
}

fn loopback_for(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

impl Evaluator<'_, '_> {
    fn is_local(&self, a: IpAddr) -> bool {
        a.is_loopback() || self.env.local_addrs.contains(&a)
    }

    /// The IPVS stage: a new connection to a virtual service is scheduled to its real
    /// servers (one branch per real server, with its share), its destination rewritten, and
    /// sent out through LOCAL_OUT (raw, mangle, filter and security OUTPUT; nat OUTPUT is not
    /// consulted, the connection's destination NAT being set) and POSTROUTING
    /// (`ip_vs_nat_xmit`). `Some(verdict)` ends the branch.
    fn ipvs(&self, b: &mut Branch, work: &mut Work) -> Option<Verdict> {
        let t = self.env.ipvs?;
        if b.ct != CtState::New {
            return None;
        }
        let (proto, dst, dport, mark) = (b.pkt.proto, b.pkt.dst, b.pkt.dport, b.pkt.mark);
        if let Some(d) = t.disputed_for(proto, dst, dport, mark) {
            return Some(Verdict::Unknown {
                reason: format!(
                    "the node's IPVS table is in doubt for {} {dst}:{dport}: {d}",
                    proto.name()
                ),
                rule: Some(d.source.clone()),
            });
        }
        let Some(vs) = t.lookup(proto, dst, dport, mark) else {
            if let Some(d) = t.unread.first() {
                return Some(Verdict::Unknown {
                    reason: format!(
                        "the node's IPVS table has a line that could not be read ({d}): {} {dst}:{dport} may be one of its virtual services",
                        proto.name(),
                    ),
                    rule: Some(d.source.clone()),
                });
            }
            return None;
        };
        if let Some(d) = t.unread_within(vs) {
            return Some(Verdict::Unknown {
                reason: format!(
                    "IPVS virtual service `{}` ({}): one of its real-server lines could not be read ({d})",
                    vs.text, vs.source
                ),
                rule: Some(d.source.clone()),
            });
        }
        let step = Step {
            table: Table::Nat,
            chain: std::sync::Arc::from("IPVS"),
            source: vs.source.clone(),
            text: vs.text.clone(),
            branch_probability: None,
        };
        let sched = vs.schedule_for(b.pkt.src, b.pkt.sport);
        for n in &sched.notes {
            let note = format!("{n} ({})", vs.source);
            if !b.notes.contains(&note) {
                b.notes.push(note);
            }
        }
        // One branch per real server, and one for the share IPVS finds no destination for.
        let mut choices: Vec<(Option<&crate::ipvs::RealServer>, f64)> =
            sched.shares.iter().map(|(r, p)| (Some(*r), *p)).collect();
        if sched.reject > 0.0 {
            choices.push((None, sched.reject));
        }
        let n = choices.len();
        for (i, (rs, share)) in choices.into_iter().enumerate() {
            let mut x = if i + 1 < n {
                if work.spawned >= MAX_BRANCHES {
                    let reason = format!(
                        "more than {MAX_BRANCHES} distinct probabilistic branches (at {}); the rest is not traced",
                        vs.source
                    );
                    work.exhausted = Some(reason.clone());
                    return Some(Verdict::Unknown {
                        reason,
                        rule: Some(vs.source.clone()),
                    });
                }
                work.spawned += 1;
                b.clone()
            } else {
                std::mem::replace(b, b.clone())
            };
            x.prob *= share;
            let mut st = step.clone();
            st.branch_probability = (n > 1).then_some(share);
            let verdict = match rs {
                Some(rs) => {
                    st.text = format!(
                        "{} -> {} (real server at {}, weight {})",
                        vs.text,
                        fmt_addr_port(rs.addr, rs.port),
                        rs.source,
                        rs.weight
                    );
                    if x.steps.len() < MAX_STEPS {
                        x.steps.push(st);
                    }
                    self.ipvs_forward(&mut x, rs)
                }
                None => {
                    if x.steps.len() < MAX_STEPS {
                        x.steps.push(st);
                    }
                    let why = format!(
                        "IPVS virtual service `{}` ({}), which has no real server of weight above 0 for this connection: the kernel answers ICMP port unreachable (ip_vs_leave)",
                        vs.text, vs.source
                    );
                    x.notes.push(why.clone());
                    x.ended_by = Some(EndCause::NoRealServer(why));
                    Some(Verdict::Reject {
                        with: "icmp-port-unreachable".into(),
                    })
                }
            };
            match (verdict, i + 1 < n) {
                // A branch that ends here still needs its outcome: finish it on its own.
                (Some(v), true) => {
                    x.plan.truncate(x.stage);
                    x.pending = Some(v);
                    work.push(x);
                }
                (Some(v), false) => {
                    *b = x;
                    return Some(v);
                }
                (None, true) => work.push(x),
                (None, false) => *b = x,
            }
        }
        None
    }

    /// Rewrites the branch's packet to the real server and replaces the rest of its plan
    /// with IPVS's transmit path. `Some(verdict)` where the forwarding method is not modelled.
    fn ipvs_forward(&self, x: &mut Branch, rs: &crate::ipvs::RealServer) -> Option<Verdict> {
        use crate::ipvs::Forward;
        match rs.forward {
            Forward::Masq => {}
            Forward::Local => {
                // Delivered to a local process: the rest of INPUT as planned.
                return None;
            }
            other => {
                return Some(Verdict::Unknown {
                    reason: format!(
                        "IPVS real server {} ({}) is forwarded by {other:?}, which kubepath does not model (kube-proxy uses Masq)",
                        fmt_addr_port(rs.addr, rs.port),
                        rs.source
                    ),
                    rule: Some(rs.source.clone()),
                });
            }
        }
        x.pkt.dst = rs.addr;
        if rs.port != 0 {
            x.pkt.dport = rs.port;
        }
        x.dnat = Some(NatTarget {
            addr: Some(rs.addr),
            port: (rs.port != 0).then_some(rs.port),
        });
        x.dnat_status = true;
        x.local_delivery = false;
        x.in_dev = Some(String::new());
        x.route_mark = Some(x.pkt.mark);
        let r = self.route(&x.pkt);
        match &r {
            RouteDecision::Unreachable => {
                x.notes.push(format!(
                    "routing: no route to IPVS real server {}",
                    x.pkt.dst
                ));
                x.route = Some(r);
                return Some(Verdict::Drop);
            }
            RouteDecision::Unknown(why) => {
                return Some(crate::types::route_unknown(x.pkt.dst, why, false));
            }
            _ => {}
        }
        if x.local_origin {
            // Already in LOCAL_OUT: `ip_vs_nat_send_or_cont` lets the packet go on through
            // the hooks after IPVS's with its new destination and route.
            x.route = Some(r);
            return None;
        }
        x.output_route = Some(r.clone());
        x.route = Some(r);
        x.plan.truncate(x.stage);
        x.plan.extend([
            Stage::Hook(Hook::Output, Table::Raw),
            Stage::Hook(Hook::Output, Table::Mangle),
            Stage::Hook(Hook::Output, Table::Filter),
            Stage::Hook(Hook::Output, Table::Security),
            Stage::Hook(Hook::Postrouting, Table::Mangle),
            Stage::Hook(Hook::Postrouting, Table::Nat),
        ]);
        None
    }

    fn route(&self, pkt: &Packet) -> RouteDecision {
        match self.env.router {
            Some(r) => r.route(pkt),
            None => {
                // Limited broadcast and multicast are delivered locally (RTN_BROADCAST /
                // RTN_MULTICAST input routes) as well.
                let bcast = match pkt.dst {
                    IpAddr::V4(a) => a.is_broadcast() || a.is_multicast(),
                    IpAddr::V6(a) => a.is_multicast(),
                };
                if bcast || self.is_local(pkt.dst) {
                    RouteDecision::Local
                } else {
                    RouteDecision::Forward {
                        out_iface: None,
                        src_hint: None,
                    }
                }
            }
        }
    }

    fn run(&self, pkt: &Packet) -> Trace {
        let local_origin = self.env.local_origin;
        let plan = if local_origin {
            vec![
                Stage::RouteOut,
                Stage::Hook(Hook::Output, Table::Raw),
                Stage::Hook(Hook::Output, Table::Mangle),
                Stage::Hook(Hook::Output, Table::Nat),
                Stage::Reroute,
                // IPVS's LOCAL_OUT hook (`ip_vs_local_request4`, NF_IP_PRI_NAT_DST + 2):
                // a host process's connection to a virtual service is scheduled here.
                Stage::Ipvs,
                Stage::Hook(Hook::Output, Table::Filter),
                Stage::Hook(Hook::Output, Table::Security),
                Stage::Hook(Hook::Postrouting, Table::Mangle),
                Stage::Hook(Hook::Postrouting, Table::Nat),
                Stage::Loopback,
            ]
        } else {
            vec![
                Stage::Hook(Hook::Prerouting, Table::Raw),
                Stage::Hook(Hook::Prerouting, Table::Mangle),
                Stage::Hook(Hook::Prerouting, Table::Nat),
                Stage::Route,
            ]
        };
        let mut notes = Vec::new();
        let family_ok = match self.rs.family {
            Family::Ipv4 => !is_v6(pkt.src) && !is_v6(pkt.dst),
            Family::Ipv6 => is_v6(pkt.src) && is_v6(pkt.dst),
        };
        if is_v6(pkt.src) != is_v6(pkt.dst) {
            notes.push("source and destination are of different address families".to_string());
        }
        let first = Branch {
            prob: 1.0,
            pkt: pkt.clone(),
            plan,
            stage: 0,
            cur: None,
            stack: Vec::new(),
            in_dev: if local_origin {
                Some(String::new())
            } else {
                pkt.in_iface.clone()
            },
            route: None,
            output_route: None,
            route_mark: None,
            local_origin,
            local_delivery: false,
            pending: None,
            ct: pkt.ct_state,
            orig_src: pkt.src,
            orig_dst: pkt.dst,
            orig_sport: pkt.sport,
            orig_dport: pkt.dport,
            dnat: None,
            snat: None,
            dnat_status: false,
            snat_status: false,
            masquerade: false,
            steps: Vec::new(),
            notes,
            ended_by: None,
            merged: false,
        };
        let mut work = Work::new();
        work.push(first);
        let mut done = Merger::default();
        while let Some(mut b) = work.pop() {
            let v = if family_ok {
                self.walk(&mut b, &mut work)
            } else {
                b.notes.push(format!(
                    "the ruleset is {} and the packet is not: no rule applies",
                    if self.rs.family == Family::Ipv4 {
                        "IPv4"
                    } else {
                        "IPv6"
                    }
                ));
                Verdict::Accept
            };
            if b.merged {
                continue;
            }
            if let Some(reason) = work.exhausted.clone() {
                // A bound was hit: this branch and every pending one are not traced further,
                // one UNKNOWN outcome with their probability.
                while let Some(o) = work.pop() {
                    b.prob += o.prob;
                }
                done.add(b, Verdict::Unknown { reason, rule: None });
                break;
            }
            done.add(b, v);
        }
        done.finish()
    }

    /// Run a branch to its end; forks go to `work`.
    fn walk(&self, b: &mut Branch, work: &mut Work) -> Verdict {
        if let Some(v) = b.pending.take() {
            return v;
        }
        loop {
            if b.stack.is_empty() {
                b.cur = None;
                let Some(&stage) = b.plan.get(b.stage) else {
                    if !b.local_delivery {
                        if let Some(RouteDecision::Forward { out_iface, .. }) = &b.route {
                            let _ = out_iface;
                        }
                    }
                    return Verdict::Accept;
                };
                b.stage += 1;
                if let Some(v) = self.enter_stage(b, work, stage) {
                    return v;
                }
                continue;
            }
            if let Some(reason) = work.visit() {
                return Verdict::Unknown { reason, rule: None };
            }
            let Some((table, hook, ref policy, builtin)) = b.cur else {
                b.stack.clear();
                continue;
            };
            let Some(td) = self.rs.tables[table.idx()].as_ref() else {
                b.stack.clear();
                continue;
            };
            let Some(&top) = b.stack.last() else {
                continue;
            };
            let chain = &td.chains[top.chain as usize];
            let next = self.next_rule(td, top.chain, top.pos, &b.pkt);
            let Some(ri) = next else {
                // End of chain: user chains return, built-in (or a goto from it) ends with the
                // built-in chain's policy.
                if b.stack.len() > 1 {
                    b.stack.pop();
                    // Back in the caller: where a branch that skipped the call may wait.
                    if work.merge_running(b) {
                        return Verdict::Accept;
                    }
                    continue;
                }
                let policy = policy.clone();
                let decl = td.chains[builtin as usize].decl;
                b.stack.clear();
                if policy != Verdict::Accept {
                    let at = decl
                        .map(|(f, l)| format!(" ({})", self.rs.source(f, l)))
                        .unwrap_or_default();
                    let why = format!("{}/{} policy {}{}", table, hook.chain(), policy.name(), at);
                    b.notes.push(why.clone());
                    b.ended_by = Some(EndCause::Policy(why));
                    return policy;
                }
                continue;
            };
            if let Some(f) = b.stack.last_mut() {
                f.pos = ri + 1;
            }
            let rule = &chain.rules[ri];
            let ms = td.rule_matches(rule);
            let stat = match self.test_rule(ms, b, hook, table) {
                RuleTest::No => continue,
                RuleTest::Unknown(reason) => {
                    let src = self.rs.source(rule.file, rule.line);
                    return Verdict::Unknown {
                        reason: format!("{reason} (rule {} in {}/{})", src, table, chain.name),
                        rule: Some(src),
                    };
                }
                RuleTest::Holds(stat) => stat,
            };
            let src = self.rs.source(rule.file, rule.line);
            if let Some(stat) = &stat {
                if stat.p <= 0.0 {
                    continue;
                }
                if let Some(v) = fork_statistic(b, work, stat, &src) {
                    return v;
                }
            }
            for m in ms {
                match m {
                    Match::Limit => b
                        .notes
                        .push(format!("rate limit at {src} assumed not exceeded")),
                    Match::PhysDev { .. } => b.notes.push(format!(
                        "physdev at {src}: the packet is assumed not bridged"
                    )),
                    _ => {}
                }
            }
            let probability = stat.map(|st| st.p);
            self.record_step(b, table, chain, rule, &src, probability);
            if let Some(v) = self.apply(rule, b, table, hook, &src) {
                return v;
            }
            // After a target that does not jump, the branch may now be where one that did not
            // match this rule waits (a `statistic` split whose two ways end alike).
            if !matches!(rule.target, Target::Jump(_) | Target::Goto(_)) && work.merge_running(b) {
                return Verdict::Accept;
            }
        }
    }

    /// Tests a rule's matches on the branch. Deterministic matches decide first; unknowns
    /// only matter if nothing says no. `statistic` matches are not tested but multiplied into
    /// the probability that the rule holds.
    fn test_rule(&self, ms: &[Match], b: &Branch, hook: Hook, table: Table) -> RuleTest {
        let mut unknown: Option<String> = None;
        let mut stat: Option<StatSplit> = None;
        for m in ms {
            if let Match::Statistic { p, neg, nth } = m {
                let st = stat.get_or_insert(StatSplit { p: 1.0, nth: None });
                st.p *= if *neg { 1.0 - p } else { *p };
                if nth.is_some() {
                    st.nth = *nth;
                }
                continue;
            }
            match self.test(m, b, hook, table) {
                Res::Yes => {}
                Res::No => return RuleTest::No,
                Res::Unknown(r) => {
                    if unknown.is_none() {
                        unknown = Some(r);
                    }
                }
            }
        }
        match unknown {
            Some(reason) => RuleTest::Unknown(reason),
            None => RuleTest::Holds(stat),
        }
    }

    /// Records a matched rule as a step of the branch (up to `MAX_STEPS`, then one line
    /// saying the rest are not listed).
    fn record_step(
        &self,
        b: &mut Branch,
        table: Table,
        chain: &crate::rule::Chain,
        rule: &Rule,
        src: &SourceRef,
        probability: Option<f64>,
    ) {
        if b.steps.len() < MAX_STEPS {
            b.steps.push(Step {
                table,
                chain: chain.name.clone(),
                source: src.clone(),
                text: self.rs.rule_text(rule).to_string(),
                branch_probability: probability,
            });
        } else if b.steps.len() == MAX_STEPS {
            b.steps.push(Step {
                table,
                chain: chain.name.clone(),
                source: src.clone(),
                text: format!(
                    "(more than {MAX_STEPS} rules matched on this path: the rest are not listed)"
                ),
                branch_probability: None,
            });
        }
    }

    /// Enters the next stage of the branch's plan: a routing decision (which extends the
    /// plan by the hooks the packet goes on to), the loopback, IPVS or a hook's built-in
    /// chain. `Some` ends the branch.
    fn enter_stage(&self, b: &mut Branch, work: &mut Work, stage: Stage) -> Option<Verdict> {
        match stage {
            Stage::Route => {
                b.route_mark = Some(b.pkt.mark);
                let r = self.route(&b.pkt);
                match &r {
                    RouteDecision::Local => {
                        b.local_delivery = true;
                        b.plan.extend([
                            Stage::Hook(Hook::Input, Table::Mangle),
                            Stage::Hook(Hook::Input, Table::Filter),
                            Stage::Hook(Hook::Input, Table::Security),
                        ]);
                        if self.env.ipvs.is_some() {
                            b.plan.push(Stage::Ipvs);
                        }
                        b.plan.push(Stage::Hook(Hook::Input, Table::Nat));
                    }
                    RouteDecision::Forward { .. } => b.plan.extend([
                        Stage::Hook(Hook::Forward, Table::Mangle),
                        Stage::Hook(Hook::Forward, Table::Filter),
                        Stage::Hook(Hook::Forward, Table::Security),
                        Stage::Hook(Hook::Postrouting, Table::Mangle),
                        Stage::Hook(Hook::Postrouting, Table::Nat),
                    ]),
                    RouteDecision::Unreachable => {
                        b.route = Some(r);
                        b.notes.push(format!("routing: no route to {}", b.pkt.dst));
                        return Some(Verdict::Drop);
                    }
                    RouteDecision::Unknown(why) => {
                        return Some(crate::types::route_unknown(b.pkt.dst, why, true));
                    }
                }
                b.route = Some(r);
            }
            Stage::RouteOut | Stage::Reroute => {
                b.route_mark = Some(b.pkt.mark);
                let r = self.route(&b.pkt);
                if let RouteDecision::Unknown(why) = &r {
                    return Some(crate::types::route_unknown(b.pkt.dst, why, false));
                }
                if let RouteDecision::Unreachable = r {
                    b.notes.push(format!(
                        "routing: no route to {} (the socket gets ENETUNREACH)",
                        b.pkt.dst
                    ));
                    b.route = Some(r);
                    return Some(Verdict::Drop);
                }
                if stage == Stage::RouteOut {
                    b.output_route = Some(r.clone());
                }
                b.route = Some(r);
            }
            Stage::Loopback => {
                if let Some(RouteDecision::Local) = b.route {
                    b.local_delivery = true;
                    b.in_dev = Some("lo".to_string());
                    b.plan.extend([
                        Stage::Hook(Hook::Prerouting, Table::Raw),
                        Stage::Hook(Hook::Prerouting, Table::Mangle),
                        Stage::Hook(Hook::Input, Table::Mangle),
                        Stage::Hook(Hook::Input, Table::Filter),
                        Stage::Hook(Hook::Input, Table::Security),
                    ]);
                }
            }
            Stage::Ipvs => {
                if let Some(v) = self.ipvs(b, work) {
                    return Some(v);
                }
            }
            Stage::Hook(hook, table) => {
                if table == Table::Nat && b.ct != CtState::New {
                    return None;
                }
                let Some(td) = self.rs.tables[table.idx()].as_ref() else {
                    if self.env.uncollected.contains(&table) {
                        let prog = match self.rs.family() {
                            crate::Family::Ipv6 => "ip6tables",
                            _ => "iptables",
                        };
                        b.notes
                            .push(format!("{table}/{} not collected", hook.chain()));
                        return Some(Verdict::Unknown {
                            reason: format!(
                                "the {table} table was not collected, so what its {} chain does is unknown (collect `{prog}-save -t {table}`, or `{prog}-save` for every table)",
                                hook.chain(),
                            ),
                            rule: None,
                        });
                    }
                    return None;
                };
                // A table without the hook's built-in chain: nothing to run.
                let cid = td.chain_id(hook.chain())?;
                let policy = td.chains[cid as usize]
                    .policy
                    .clone()
                    .unwrap_or(Verdict::Accept);
                b.cur = Some((table, hook, policy, cid));
                b.stack.push(Frame {
                    chain: cid,
                    pos: 0,
                    gotos: 0,
                });
            }
        }
        None
    }

    fn next_rule(&self, td: &TableData, chain: u32, from: usize, pkt: &Packet) -> Option<usize> {
        let c = &td.chains[chain as usize];
        if from >= c.rules.len() {
            return None;
        }
        match (&c.index, self.use_index) {
            (Some(ix), true) => {
                let dport = pkt.proto.has_ports().then_some(pkt.dport);
                ix.next(from, (addr_to_u128(pkt.dst), is_v6(pkt.dst)), dport)
            }
            _ => Some(from),
        }
    }

    /// Apply a matched rule's target. `Some(verdict)` ends the branch.
    fn apply(
        &self,
        rule: &Rule,
        b: &mut Branch,
        table: Table,
        hook: Hook,
        src: &SourceRef,
    ) -> Option<Verdict> {
        match &rule.target {
            Target::None | Target::NoEffect => {}
            Target::Accept => b.stack.clear(),
            Target::Drop => return Some(Verdict::Drop),
            Target::Reject(with) => {
                return Some(Verdict::Reject {
                    with: with.to_string(),
                })
            }
            Target::Return => {
                if b.stack.len() > 1 {
                    b.stack.pop();
                } else {
                    let (_, _, policy, _) = b.cur.clone()?;
                    b.stack.clear();
                    if policy != Verdict::Accept {
                        let why = format!(
                            "RETURN from {}/{}: policy {}",
                            table,
                            hook.chain(),
                            policy.name()
                        );
                        b.notes.push(why.clone());
                        b.ended_by = Some(EndCause::Policy(why));
                        return Some(policy);
                    }
                }
            }
            Target::Jump(c) | Target::Goto(c) => {
                if b.stack.len() >= MAX_DEPTH {
                    return Some(Verdict::Unknown {
                        reason: format!("chain nesting deeper than {MAX_DEPTH} at {src} (a loop?)"),
                        rule: Some(src.clone()),
                    });
                }
                // A goto replaces the frame, so a `-g` loop never deepens the stack: bound the
                // gotos in a row too (the kernel refuses loops when the ruleset is loaded).
                let mut gotos = 0;
                if matches!(rule.target, Target::Goto(_)) {
                    gotos = b.stack.pop().map_or(0, |f| f.gotos) + 1;
                    if gotos > MAX_DEPTH {
                        return Some(Verdict::Unknown {
                            reason: format!(
                                "more than {MAX_DEPTH} gotos in a row at {src} (a loop?)"
                            ),
                            rule: Some(src.clone()),
                        });
                    }
                }
                b.stack.push(crate::eval::Frame {
                    chain: *c,
                    pos: 0,
                    gotos,
                });
            }
            Target::Unresolved { name, .. } | Target::Opaque(name) => {
                return Some(Verdict::Unknown {
                    reason: format!("unsupported target `{name}` at {src}"),
                    rule: Some(src.clone()),
                })
            }
            Target::Unknowable(what) => {
                return Some(Verdict::Unknown {
                    reason: format!("{what} at {src}"),
                    rule: Some(src.clone()),
                })
            }
            Target::Mark(op) => b.pkt.mark = op.apply(b.pkt.mark),
            // xt_CONNMARK does nothing without a connection (raw table, untracked).
            Target::Connmark(_) if table == Table::Raw || b.ct == CtState::Untracked => {}
            Target::Connmark(op) => match *op {
                ConnmarkOp::Set { value, mask } => b.pkt.ct_mark = (b.pkt.ct_mark & !mask) ^ value,
                ConnmarkOp::Save { nfmask, ctmask } => {
                    b.pkt.ct_mark = (b.pkt.ct_mark & !ctmask) ^ (b.pkt.mark & nfmask);
                }
                ConnmarkOp::Restore { nfmask, ctmask } => {
                    b.pkt.mark = (b.pkt.mark & !nfmask) ^ (b.pkt.ct_mark & ctmask);
                }
            },
            Target::Notrack => {
                if b.ct == CtState::New {
                    b.ct = CtState::Untracked;
                }
            }
            Target::Dnat { ranges } => {
                if !matches!(hook, Hook::Prerouting | Hook::Output) {
                    return Some(Verdict::Unknown {
                        reason: format!("DNAT outside nat PREROUTING/OUTPUT at {src}"),
                        rule: Some(src.clone()),
                    });
                }
                if let Some(v) = self.nat(b, ranges, true, false, src) {
                    return Some(v);
                }
                b.stack.clear();
            }
            Target::Redirect { ports } => return self.redirect(b, *ports, src),
            Target::Snat {
                ranges,
                random_fully,
            } => {
                if !matches!(hook, Hook::Postrouting | Hook::Input) {
                    return Some(Verdict::Unknown {
                        reason: format!("SNAT outside nat POSTROUTING/INPUT at {src}"),
                        rule: Some(src.clone()),
                    });
                }
                if let Some(v) = self.nat(b, ranges, false, *random_fully, src) {
                    return Some(v);
                }
                if *random_fully {
                    b.notes
                        .push("SNAT --random/--random-fully: the source port is randomized".into());
                    // A random port differs from the original but by chance (1 in ~64k).
                    b.snat_status = true;
                }
                b.masquerade = true;
                b.stack.clear();
            }
            Target::Masquerade {
                ports,
                random_fully,
            } => return self.masquerade(b, hook, *ports, *random_fully, src),
        }
        None
    }

    /// REDIRECT: DNAT to the node itself (loopback for a local packet, else the incoming
    /// interface's first address). `Some` ends the branch.
    fn redirect(
        &self,
        b: &mut Branch,
        ports: Option<PortRange>,
        src: &SourceRef,
    ) -> Option<Verdict> {
        let v6 = is_v6(b.pkt.dst);
        // nf_nat_redirect: 127.0.0.1/::1 for locally generated packets, else the first
        // address of the incoming interface (none: the packet is dropped).
        let from_iface = match (b.local_origin, self.env.router, b.in_dev.as_deref()) {
            (false, Some(r), Some(dev)) => r
                .iface_addrs(dev)
                .map(|l| l.into_iter().find(|a| is_v6(*a) == v6)),
            _ => None,
        };
        let addr = if b.local_origin {
            loopback_for(v6)
        } else if let Some(found) = from_iface {
            match found {
                Some(a) => a,
                None => {
                    b.notes.push(format!(
                        "REDIRECT at {src}: the incoming interface has no {} address: the kernel drops the packet",
                        if v6 { "IPv6" } else { "IPv4" }
                    ));
                    return Some(Verdict::Drop);
                }
            }
        } else {
            // The interface's addresses are unknown: take a node address of the family.
            match self.env.local_addrs.iter().find(|a| is_v6(**a) == v6) {
                Some(a) => {
                    b.notes.push(format!(
                        "REDIRECT at {src}: the incoming interface's addresses are unknown; assumed its primary address is {a}"
                    ));
                    *a
                }
                None => {
                    return Some(Verdict::Unknown {
                        reason: format!("REDIRECT at {src}: the incoming interface's address is unknown (no --local addresses)"),
                        rule: Some(src.clone()),
                    })
                }
            }
        };
        let port = ports.map(|r| pick_port(r, b.pkt.dport));
        b.pkt.dst = addr;
        if let Some(p) = port {
            b.pkt.dport = p;
        }
        b.dnat_status =
            b.pkt.dst != b.orig_dst || (b.pkt.proto.has_ports() && b.pkt.dport != b.orig_dport);
        b.dnat = Some(NatTarget {
            addr: Some(addr),
            port: if b.pkt.proto.has_ports() {
                Some(b.pkt.dport)
            } else {
                None
            },
        });
        b.stack.clear();
        None
    }

    /// MASQUERADE: SNAT to the address of the interface the packet leaves by. `Some` ends
    /// the branch.
    fn masquerade(
        &self,
        b: &mut Branch,
        hook: Hook,
        ports: Option<PortRange>,
        random_fully: bool,
        src: &SourceRef,
    ) -> Option<Verdict> {
        if hook != Hook::Postrouting {
            return Some(Verdict::Unknown {
                reason: format!("MASQUERADE outside nat POSTROUTING at {src}"),
                rule: Some(src.clone()),
            });
        }
        let hint = match &b.route {
            Some(RouteDecision::Forward { src_hint, .. }) => *src_hint,
            // A locally generated packet that nat OUTPUT sent to a local address leaves
            // by lo. nf_nat_masquerade_ipv4 (net/netfilter/nf_nat_masquerade.c) takes
            // `inet_select_addr(out, rt_nexthop(rt, daddr), RT_SCOPE_UNIVERSE)`, which
            // skips lo's host-scope 127.0.0.1: lo's first primary global address (in
            // the destination's subnet if one is), else another interface's
            // (net/ipv4/devinet.c). Measured in a namespace with 10.99.0.1/32 and
            // 10.99.0.2/32 on lo: to 127.0.0.1 and to the address of another
            // interface the source became 10.99.0.1, to 10.99.0.2 it became
            // 10.99.0.2 (never 127.0.0.1).
            Some(RouteDecision::Local) => {
                let sel = self.env.router.and_then(|r| r.select_src("lo", b.pkt.dst));
                match sel {
                    Some(a) => Some(a),
                    None => {
                        return Some(Verdict::Unknown {
                            reason: format!(
                                "MASQUERADE at {src} of a packet leaving by lo (to local address {}): the kernel takes lo's first global-scope address (in the destination's subnet if one is), else another interface's; which one is not known from the routing data",
                                b.pkt.dst
                            ),
                            rule: Some(src.clone()),
                        })
                    }
                }
            }
            _ => None,
        };
        let port = match ports {
            Some(r) => Some(pick_port(r, b.pkt.sport)),
            None if random_fully => None,
            None => b.pkt.proto.has_ports().then_some(b.pkt.sport),
        };
        if random_fully {
            b.notes
                .push("MASQUERADE --random/--random-fully: the source port is randomized".into());
        }
        match hint {
            Some(a) => b.pkt.src = a,
            None => b.notes.push(format!(
                "MASQUERADE at {src}: the outgoing interface's address is unknown {}",
                crate::types::NO_ROUTING_DATA
            )),
        }
        if let Some(p) = port {
            b.pkt.sport = p;
        }
        // (With --random/--random-fully the port is new but by chance.)
        b.snat_status = random_fully
            || b.pkt.src != b.orig_src
            || (b.pkt.proto.has_ports() && b.pkt.sport != b.orig_sport);
        b.snat = Some(NatTarget { addr: hint, port });
        b.masquerade = true;
        b.stack.clear();
        None
    }

    /// DNAT (`dst`) or SNAT: the new tuple as `get_unique_tuple` (net/netfilter/nf_nat_core.c)
    /// chooses it for a first packet without a clash: an SNAT (without `--random`/
    /// `--random-fully`) whose range already holds the packet's source address (and port, if
    /// the rule gives ports) keeps the tuple; otherwise the address is the kernel's
    /// deterministic hash choice ([`nat_range_pick`]) and the port is kept when inside the
    /// port range, else the first port (DNAT) or a random one (SNAT).
    /// `Some(UNKNOWN)` when the kernel draws the destination port at random (DNAT `--random`
    /// with a port range).
    fn nat(
        &self,
        b: &mut Branch,
        ranges: &[NatRange],
        dst: bool,
        random: bool,
        src: &SourceRef,
    ) -> Option<Verdict> {
        let r = ranges.first()?;
        if ranges.len() > 1 {
            b.notes.push(format!(
                "{src}: only the first of {} NAT ranges is modelled",
                ranges.len()
            ));
        }
        let cur_port = if dst { b.pkt.dport } else { b.pkt.sport };
        let cur_addr = if dst { b.pkt.dst } else { b.pkt.src };
        let has_ports = b.pkt.proto.has_ports();
        // get_unique_tuple step 1 (source NAT only, not with PROTO_RANDOM_ALL): nf_in_range.
        let addr_in = r.addr.is_none_or(|(lo, hi)| {
            let a = addr_to_u128(cur_addr);
            is_v6(cur_addr) == r.v6 && lo <= a && a <= hi
        });
        let port_in = r.ports.is_none_or(|pr| has_ports && pr.contains(cur_port));
        if !dst && !random && addr_in && port_in {
            if r.addr.is_some_and(|(lo, hi)| lo != hi) {
                b.notes.push(format!(
                    "{src}: the source {cur_addr} is already in the SNAT range: the kernel keeps the tuple (nf_nat_core.c get_unique_tuple, nf_in_range)"
                ));
            }
            b.snat = Some(NatTarget {
                addr: Some(b.pkt.src),
                port: r.ports.map(|_| b.pkt.sport),
            });
            return None;
        }
        // get_unique_tuple step 3 is skipped with PROTO_RANDOM_ALL: nf_nat_l4proto_unique_tuple
        // draws the port within the range, even when the original port is inside it.
        if let (true, true, Some(pr)) = (dst, r.random && has_ports, r.ports) {
            if pr.lo != pr.hi {
                return Some(Verdict::Unknown {
                    reason: format!(
                        "DNAT --random at {src}: the kernel draws the destination port at random in {}-{}",
                        pr.lo, pr.hi
                    ),
                    rule: Some(src.clone()),
                });
            }
        }
        let port = r.ports.map(|pr| {
            if !pr.contains(cur_port) && pr.lo != pr.hi && !dst {
                b.notes.push(format!(
                    "{src}: port range {}-{}: the original port is outside it: the kernel picks a random port in the range (modelled as the first)",
                    pr.lo, pr.hi
                ));
            }
            pick_port(pr, cur_port)
        });
        if r.addr.is_some_and(|(lo, hi)| lo != hi) {
            // `-j CT --zone/--zone-orig/--zone-reply N` earlier on the path: the zone id is
            // XORed into the hash's seed (find_best_ips_proto), whatever its direction.
            if let Some(zone) = b
                .steps
                .iter()
                .find(|s| s.text.contains(" CT ") && s.text.contains("--zone"))
            {
                return Some(Verdict::Unknown {
                    reason: format!(
                        "NAT to an address range at {src} after `{}` ({}:{}): the kernel's choice depends on the conntrack zone id, which kubepath does not model",
                        zone.text, zone.source.file, zone.source.line
                    ),
                    rule: Some(src.clone()),
                });
            }
        }
        let addr = match r.addr {
            None => None,
            Some((lo, hi)) if lo == hi => Some(u128_to_addr(lo, r.v6)),
            Some((lo, hi)) => {
                let a = nat_range_pick(b.pkt.src, b.pkt.dst, (lo, hi), r.v6, r.persistent, dst);
                b.notes.push(format!(
                    "{src}: address range {}-{}: the kernel's hash of the source {} and destination {} picks {a} (find_best_ips_proto, jhash2, conntrack zone 0, little-endian host; a clash with an existing connection is not modelled)",
                    u128_to_addr(lo, r.v6),
                    u128_to_addr(hi, r.v6),
                    b.pkt.src,
                    b.pkt.dst
                ));
                Some(a)
            }
        };
        if dst {
            if let Some(a) = addr {
                b.pkt.dst = a;
            }
            if let Some(p) = port {
                b.pkt.dport = p;
            }
            b.dnat_status = b.pkt.dst != b.orig_dst || (has_ports && b.pkt.dport != b.orig_dport);
            b.dnat = Some(NatTarget {
                addr: Some(b.pkt.dst),
                port,
            });
        } else {
            if let Some(a) = addr {
                b.pkt.src = a;
            }
            if let Some(p) = port {
                b.pkt.sport = p;
            }
            b.snat_status = b.pkt.src != b.orig_src || (has_ports && b.pkt.sport != b.orig_sport);
            b.snat = Some(NatTarget {
                addr: Some(b.pkt.src),
                port,
            });
        }
        None
    }

    fn dev_in<'b>(&self, b: &'b Branch, hook: Hook) -> Result<&'b str, String> {
        match hook {
            Hook::Output => Ok(""),
            Hook::Postrouting if b.local_origin => Ok(""),
            _ => b
                .in_dev
                .as_deref()
                .ok_or_else(|| "the incoming interface is unknown (give --in-iface)".to_string()),
        }
    }

    fn dev_out<'b>(&self, b: &'b Branch, hook: Hook) -> Result<&'b str, String> {
        // In OUTPUT the hook's out device is the route's before any reroute (see
        // `Branch::output_route`).
        let route = match (hook, &b.output_route) {
            (Hook::Output, Some(r)) => Some(r),
            _ => b.route.as_ref(),
        };
        match hook {
            Hook::Prerouting | Hook::Input => Ok(""),
            _ => match route {
                Some(RouteDecision::Forward {
                    out_iface: Some(o), ..
                }) => Ok(o.as_str()),
                Some(RouteDecision::Local) => Ok("lo"),
                _ => Err(format!(
                    "the outgoing interface is unknown {}",
                    crate::types::NO_ROUTING_DATA
                )),
            },
        }
    }

    fn test(&self, m: &Match, b: &Branch, hook: Hook, table: Table) -> Res {
        let pkt = &b.pkt;
        let no_ct = no_conntrack(b, table);
        match m {
            Match::Src(c, neg) => yn(c.contains(addr_to_u128(pkt.src), is_v6(pkt.src)) ^ neg),
            Match::Dst(c, neg) => yn(c.contains(addr_to_u128(pkt.dst), is_v6(pkt.dst)) ^ neg),
            Match::Proto(0, neg) => yn(!neg),
            Match::Proto(p, neg) => yn((pkt.proto.number() == *p) ^ neg),
            Match::InIface(pat, neg) => test_iface("-i", pat, *neg, self.dev_in(b, hook)),
            Match::OutIface(pat, neg) => test_iface("-o", pat, *neg, self.dev_out(b, hook)),
            Match::Fragment(neg) => yn(*neg),
            Match::Sport(r, neg) => yn(pkt.proto.has_ports() && (r.contains(pkt.sport) ^ neg)),
            Match::Dport(r, neg) => yn(pkt.proto.has_ports() && (r.contains(pkt.dport) ^ neg)),
            Match::Multiport {
                src,
                dst,
                ports,
                neg,
            } => {
                if !pkt.proto.has_ports() {
                    return Res::No;
                }
                let hit = ports
                    .iter()
                    .any(|r| (*src && r.contains(pkt.sport)) || (*dst && r.contains(pkt.dport)));
                yn(hit ^ neg)
            }
            Match::TcpFlags { mask, comp, neg } => {
                yn(pkt.proto == Proto::Tcp && (((pkt.tcp_flags.0 & mask) == *comp) ^ neg))
            }
            Match::Icmp { v6, ty, code, neg } => test_icmp(pkt, *v6, *ty, *code, *neg),
            Match::AddrType {
                src,
                dst,
                limit_in,
                limit_out,
            } => self.test_addrtype(b, hook, *src, *dst, *limit_in, *limit_out),
            Match::Mark { value, mask, neg } => yn(((pkt.mark & mask) == *value) ^ neg),
            Match::ConnMark { value, mask, neg } => {
                if no_ct {
                    return Res::No;
                }
                yn(((pkt.ct_mark & mask) == *value) ^ neg)
            }
            Match::CtGroup(items) => self.test_ct_group(items, b, hook, table),
            Match::CtState(bits, neg) if no_ct => {
                let st = if b.ct == CtState::Untracked {
                    ctstate::UNTRACKED
                } else {
                    ctstate::INVALID
                };
                yn((st & bits != 0) ^ neg)
            }
            // Other conntrack options without a connection: xt_conntrack returns whether the
            // same match instance tested --ctstate; each option is a separate match here, so
            // they are taken as not matching.
            Match::CtStatus(..)
            | Match::CtProto(..)
            | Match::CtAddr(..)
            | Match::CtPort(..)
            | Match::CtDir(..)
            | Match::CtExpire(..)
                if no_ct =>
            {
                Res::No
            }
            Match::CtState(bits, neg) => yn((ct_state_bits(b) & bits != 0) ^ neg),
            Match::CtStatus(bits, neg) => match ct_status_bits(b.ct) {
                Some(st) => yn((st & bits != 0) ^ neg),
                None => yn(*neg),
            },
            Match::CtProto(p, neg) => {
                if !matches!(b.ct, CtState::New | CtState::Established | CtState::Related) {
                    return Res::No;
                }
                yn((*p == 0 || pkt.proto.number() == *p) ^ neg)
            }
            Match::CtAddr(field, c, neg) => match ct_tuple_addr(b, *field) {
                Ok(a) => yn(c.contains(addr_to_u128(a), is_v6(a)) ^ neg),
                Err(res) => res,
            },
            Match::CtPort(field, r, neg) => match ct_tuple_port(b, *field) {
                Ok(None) => Res::No,
                Ok(Some(p)) => yn(r.contains(p) ^ neg),
                Err(res) => res,
            },
            Match::CtDir(orig) => match b.ct {
                CtState::New => yn(*orig),
                CtState::Invalid | CtState::Untracked => Res::No,
                _ => Res::Unknown(
                    "the direction of an existing connection's packet is not given".into(),
                ),
            },
            Match::CtExpire(_, _) => {
                Res::Unknown("--ctexpire depends on conntrack timers (not modelled)".into())
            }
            Match::Statistic { .. } => Res::Yes,
            Match::Recent { matches_first, neg } => {
                if b.ct == CtState::New {
                    yn(matches_first ^ neg)
                } else if *matches_first {
                    yn(!neg)
                } else {
                    Res::Unknown("`-m recent --rcheck/--update` on a packet of an existing connection depends on earlier packets".into())
                }
            }
            Match::IpRange(r) => test_iprange(pkt, r),
            Match::Set(r, neg) => self.test_ipset(r, *neg, b, hook),
            Match::SetCounters => {
                Res::Unknown("`-m set` packet/byte counter conditions are not modelled".into())
            }
            Match::Length(r, neg) => yn(r.contains(pkt.length) ^ neg),
            Match::Limit => Res::Yes,
            Match::PhysDev { conds } => {
                // Not bridged: every physdev condition is false, so only negated ones hold.
                yn(conds.iter().all(|(_, neg)| *neg))
            }
            Match::Policy { ipsec } => yn(!ipsec),
            Match::PktType(t, neg) => yn((pkt_type(pkt.dst) == *t) ^ neg),
            Match::RpFilter {
                loose,
                validmark,
                accept_local,
                invert,
            } => self.test_rpfilter(b, hook, *loose, *validmark, *accept_local, *invert),
            Match::Unknowable(what) => Res::Unknown(format!(
                "`{what}` cannot be evaluated from the ruleset alone"
            )),
            Match::Opaque(what) => Res::Unknown(format!("unsupported match `{what}`")),
        }
    }

    /// One `-m conntrack` instance of several options: all must hold.
    fn test_ct_group(&self, items: &[Match], b: &Branch, hook: Hook, table: Table) -> Res {
        if no_conntrack(b, table) {
            // xt_conntrack without a connection: the state test decides when the
            // instance has one, else the match fails.
            return match items.iter().find(|m| matches!(m, Match::CtState(..))) {
                Some(st) => self.test(st, b, hook, table),
                None => Res::No,
            };
        }
        let mut unknown = None;
        for m in items.iter() {
            match self.test(m, b, hook, table) {
                Res::Yes => {}
                Res::No => return Res::No,
                Res::Unknown(r) => unknown = unknown.or(Some(r)),
            }
        }
        match unknown {
            Some(r) => Res::Unknown(r),
            None => Res::Yes,
        }
    }

    /// `-m set --match-set`: the packet in the set (ipset data from the environment).
    fn test_ipset(&self, r: &SetRef, neg: bool, b: &Branch, hook: Hook) -> Res {
        let Some(sets) = self.env.ipsets else {
            return Res::Unknown(format!(
                "`-m set --match-set {}`: {}",
                r.name,
                crate::types::NO_IPSET_DATA
            ));
        };
        let din = self.dev_in(b, hook).ok();
        let dout = self.dev_out(b, hook).ok();
        match sets.test_set(&r.name, &r.dirs, r.return_nomatch, &b.pkt, din, dout) {
            Ok(x) => yn(x ^ neg),
            Err(e) => Res::Unknown(e),
        }
    }

    /// `-m addrtype`: the source's and destination's address types; with
    /// `--limit-iface-in/out` only the addresses of that interface count as LOCAL.
    fn test_addrtype(
        &self,
        b: &Branch,
        hook: Hook,
        src: Option<(u16, bool)>,
        dst: Option<(u16, bool)>,
        limit_in: bool,
        limit_out: bool,
    ) -> Res {
        let pkt = &b.pkt;
        // --limit-iface-in/out: only the addresses of that interface count as LOCAL
        // (xt_addrtype passes the device to inet_dev_addr_type).
        let limit: Option<Vec<IpAddr>> = if limit_in || limit_out {
            let dev = if limit_in {
                self.dev_in(b, hook)
            } else {
                self.dev_out(b, hook)
            };
            let dev = match dev {
                Ok(d) => d.to_string(),
                Err(e) => return Res::Unknown(format!("`-m addrtype --limit-iface-*`: {e}")),
            };
            match self.env.router.and_then(|r| r.iface_addrs(&dev)) {
                Some(a) => Some(a),
                None => {
                    return Res::Unknown(format!(
                        "`-m addrtype --limit-iface-*`: the addresses of {dev} are unknown"
                    ))
                }
            }
        } else {
            None
        };
        if let Some((bits, neg)) = src {
            if (self.addr_type(pkt.src, limit.as_deref()) & bits != 0) == neg {
                return Res::No;
            }
        }
        if let Some((bits, neg)) = dst {
            if (self.addr_type(pkt.dst, limit.as_deref()) & bits != 0) == neg {
                return Res::No;
            }
        }
        Res::Yes
    }

    /// `-m rpfilter`: the reverse-path check of xt_rpfilter.
    fn test_rpfilter(
        &self,
        b: &Branch,
        hook: Hook,
        loose: bool,
        validmark: bool,
        accept_local: bool,
        invert: bool,
    ) -> Res {
        let pkt = &b.pkt;
        // xt_rpfilter (net/ipv4/netfilter/ipt_rpfilter.c): route a packet from the
        // destination back to the source (using the mark with --validmark); valid when
        // the route is unicast (or local with --accept-local) and, unless --loose, leaves
        // through the interface the packet came in on.
        let Some(router) = self.env.router else {
            return Res::Unknown(
                "`-m rpfilter` needs the node's routing (reverse-path lookup)".into(),
            );
        };
        let in_dev = match self.dev_in(b, hook) {
            Ok(d) => d.to_string(),
            Err(e) => return Res::Unknown(format!("`-m rpfilter`: {e}")),
        };
        let mut rev = pkt.clone();
        rev.src = pkt.dst;
        rev.dst = pkt.src;
        rev.sport = pkt.dport;
        rev.dport = pkt.sport;
        rev.in_iface = None;
        if !validmark {
            rev.mark = 0;
        }
        let valid = match router.route(&rev) {
            RouteDecision::Local => accept_local,
            RouteDecision::Unreachable => false,
            RouteDecision::Unknown(_) => {
                return Res::Unknown("`-m rpfilter`: the reverse route is unknown".into())
            }
            RouteDecision::Forward { out_iface, .. } => {
                if loose {
                    true
                } else {
                    match out_iface {
                        Some(o) => o == in_dev,
                        None => {
                            return Res::Unknown(
                                "`-m rpfilter`: the reverse route's interface is unknown".into(),
                            )
                        }
                    }
                }
            }
        };
        yn(valid ^ invert)
    }

    /// Address type as xt_addrtype classifies it (IPv4: inet_dev_addr_type; IPv6: route
    /// lookup). Without routing tables, non-local unicast addresses are UNICAST.
    fn addr_type(&self, a: IpAddr, limit: Option<&[IpAddr]>) -> u16 {
        let local = |a: IpAddr| match limit {
            Some(l) => l.contains(&a),
            None => self.is_local(a),
        };
        match a {
            IpAddr::V4(v) => {
                let o = v.octets();
                if o[0] == 0 || v.is_broadcast() {
                    addrtype::BROADCAST
                } else if v.is_multicast() {
                    addrtype::MULTICAST
                } else if local(a) {
                    addrtype::LOCAL
                } else {
                    addrtype::UNICAST
                }
            }
            IpAddr::V6(v) => {
                if v.is_unspecified() {
                    addrtype::UNSPEC
                } else if v.is_multicast() {
                    addrtype::MULTICAST
                } else if local(a) {
                    addrtype::LOCAL | addrtype::UNICAST
                } else {
                    addrtype::UNICAST
                }
            }
        }
    }
}

/// Bob Jenkins' lookup3 hash of 32-bit words as the kernel's `jhash2` (include/linux/jhash.h)
/// computes it: state seeded with 0xdeadbeef + 4 * words + `initval`, three words mixed at a
/// time, the last one to three added and finalized.
pub(crate) fn jhash2(k: &[u32], initval: u32) -> u32 {
    fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
        *a = a.wrapping_sub(*c);
        *a ^= c.rotate_left(4);
        *c = c.wrapping_add(*b);
        *b = b.wrapping_sub(*a);
        *b ^= a.rotate_left(6);
        *a = a.wrapping_add(*c);
        *c = c.wrapping_sub(*b);
        *c ^= b.rotate_left(8);
        *b = b.wrapping_add(*a);
        *a = a.wrapping_sub(*c);
        *a ^= c.rotate_left(16);
        *c = c.wrapping_add(*b);
        *b = b.wrapping_sub(*a);
        *b ^= a.rotate_left(19);
        *a = a.wrapping_add(*c);
        *c = c.wrapping_sub(*b);
        *c ^= b.rotate_left(4);
        *b = b.wrapping_add(*a);
    }
    fn fin(a: &mut u32, b: &mut u32, c: &mut u32) {
        *c ^= *b;
        *c = c.wrapping_sub(b.rotate_left(14));
        *a ^= *c;
        *a = a.wrapping_sub(c.rotate_left(11));
        *b ^= *a;
        *b = b.wrapping_sub(a.rotate_left(25));
        *c ^= *b;
        *c = c.wrapping_sub(b.rotate_left(16));
        *a ^= *c;
        *a = a.wrapping_sub(c.rotate_left(4));
        *b ^= *a;
        *b = b.wrapping_sub(a.rotate_left(14));
        *c ^= *b;
        *c = c.wrapping_sub(b.rotate_left(24));
    }
    let init = 0xdead_beef_u32
        .wrapping_add((k.len() as u32).wrapping_shl(2))
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut rest = k;
    while rest.len() > 3 {
        a = a.wrapping_add(rest[0]);
        b = b.wrapping_add(rest[1]);
        c = c.wrapping_add(rest[2]);
        mix(&mut a, &mut b, &mut c);
        rest = &rest[3..];
    }
    if rest.is_empty() {
        return c;
    }
    if rest.len() == 3 {
        c = c.wrapping_add(rest[2]);
    }
    if rest.len() >= 2 {
        b = b.wrapping_add(rest[1]);
    }
    a = a.wrapping_add(rest[0]);
    fin(&mut a, &mut b, &mut c);
    c
}
/// Whether the packet has no connection attached: raw runs before conntrack (priority
/// -300 < -200), so xt_conntrack/xt_state see INVALID (or UNTRACKED after NOTRACK) and
/// xt_connmark returns false (`if (ct == NULL) return false;`, before `!` is applied).
fn no_conntrack(b: &Branch, table: Table) -> bool {
    table == Table::Raw || b.ct == CtState::Untracked
}

/// The `--ctstate` bits of the branch's connection; IPS_DST_NAT / IPS_SRC_NAT only for a NAT
/// that changed the tuple (see `Branch::dnat_status`).
fn ct_state_bits(b: &Branch) -> u8 {
    let mut st = match b.ct {
        CtState::New => ctstate::NEW,
        CtState::Established => ctstate::ESTABLISHED,
        CtState::Related => ctstate::RELATED,
        CtState::Invalid => ctstate::INVALID,
        CtState::Untracked => ctstate::UNTRACKED,
    };
    if b.dnat_status && b.ct == CtState::New {
        st |= ctstate::DNAT;
    }
    if b.snat_status && b.ct == CtState::New {
        st |= ctstate::SNAT;
    }
    st
}

/// The `--ctstatus` bits of a connection in state `ct`; `None` without a connection.
fn ct_status_bits(ct: CtState) -> Option<u8> {
    match ct {
        CtState::New => Some(0),
        CtState::Established => {
            Some(ctstatus::SEEN_REPLY | ctstatus::ASSURED | ctstatus::CONFIRMED)
        }
        CtState::Related => Some(ctstatus::EXPECTED | ctstatus::CONFIRMED),
        CtState::Invalid | CtState::Untracked => None,
    }
}

/// Only a new connection's tuple is known: `Err` with the result for any other.
fn ct_tuple_known(b: &Branch) -> Result<(), Res> {
    if b.ct == CtState::New {
        return Ok(());
    }
    Err(if matches!(b.ct, CtState::Invalid | CtState::Untracked) {
        Res::No
    } else {
        Res::Unknown("conntrack tuple of an existing connection is not modelled".into())
    })
}

/// `--ctorigsrc` and the like: an address of the connection's tuple.
fn ct_tuple_addr(b: &Branch, field: CtField) -> Result<IpAddr, Res> {
    ct_tuple_known(b)?;
    Ok(match field {
        CtField::OrigSrc => b.orig_src,
        CtField::OrigDst => b.orig_dst,
        CtField::ReplSrc => b.pkt.dst,
        CtField::ReplDst => b.pkt.src,
    })
}

/// `--ctorigsrcport` and the like: a port of the connection's tuple; `None` for a protocol
/// without ports.
fn ct_tuple_port(b: &Branch, field: CtField) -> Result<Option<u16>, Res> {
    ct_tuple_known(b)?;
    if !b.pkt.proto.has_ports() {
        return Ok(None);
    }
    Ok(Some(match field {
        CtField::OrigSrc => b.orig_sport,
        CtField::OrigDst => b.orig_dport,
        CtField::ReplSrc => b.pkt.dport,
        CtField::ReplDst => b.pkt.sport,
    }))
}

/// `-i` / `-o` (`flag`): the packet's interface `dev` against the pattern.
fn test_iface(flag: &str, pat: &IfacePat, neg: bool, dev: Result<&str, String>) -> Res {
    match dev {
        Ok(d) => yn(pat.matches(d) ^ neg),
        Err(e) => Res::Unknown(format!(
            "`{flag} {}{}`: {e}",
            pat.name,
            if pat.wildcard { "+" } else { "" }
        )),
    }
}

/// `-m pkttype`'s class of a destination: 0 unicast, 1 broadcast, 2 multicast.
fn pkt_type(dst: IpAddr) -> u8 {
    match dst {
        IpAddr::V4(a) if a.is_multicast() => 2,
        IpAddr::V4(a) if a.is_broadcast() => 1,
        IpAddr::V6(a) if a.is_multicast() => 2,
        _ => 0,
    }
}

/// `-m iprange`: the source and destination in their ranges.
fn test_iprange(pkt: &Packet, r: &IpRangeM) -> Res {
    if let Some((lo, hi, neg)) = &r.src {
        let a = addr_to_u128(pkt.src);
        if (*lo <= a && a <= *hi) == *neg {
            return Res::No;
        }
    }
    if let Some((lo, hi, neg)) = &r.dst {
        let a = addr_to_u128(pkt.dst);
        if (*lo <= a && a <= *hi) == *neg {
            return Res::No;
        }
    }
    Res::Yes
}

/// `-p icmp --icmp-type` / `-p icmpv6 --icmpv6-type` (`v6`): the packet's type and code.
fn test_icmp(pkt: &Packet, v6: bool, ty: Option<u8>, code: Option<u8>, neg: bool) -> Res {
    let want = if v6 { Proto::Icmpv6 } else { Proto::Icmp };
    if pkt.proto != want {
        return Res::No;
    }
    let Some(t) = ty else { return yn(!neg) };
    match pkt.icmp_type {
        None => Res::Unknown("the ICMP type of the packet is not given".into()),
        Some((pt, pc)) => {
            if pt != t {
                return yn(neg);
            }
            match code {
                None => yn(!neg),
                Some(c) => match pc {
                    Some(pc) => yn((pc == c) ^ neg),
                    None => Res::Unknown("the ICMP code of the packet is not given".into()),
                },
            }
        }
    }
}

/// The 4 words of `union nf_inet_addr` as a little-endian CPU loads them from memory (the
/// address is stored in network order; an IPv4 address fills the first word, the rest are 0).
fn addr_words_le(a: IpAddr) -> [u32; 4] {
    let mut bytes = [0u8; 16];
    match a {
        IpAddr::V4(v) => bytes[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => bytes = v.octets(),
    }
    let w = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// The address `find_best_ips_proto` (net/netfilter/nf_nat_core.c) picks from the range
/// `lo..=hi` (more than one address) for a connection whose current tuple has source `src`
/// and destination `dst`, for DNAT and SNAT alike: `j = jhash2(all 4 words of the source
/// address, 4, initval)` with `initval` = the destination's last address word (the only word
/// for IPv4) XOR the conntrack zone id (0 here), or 0 with `--persistent`; then per address
/// word (one for IPv4) `min + reciprocal_scale(j, max - min + 1)` (the high 32 bits of
/// `j * dist`), the remaining words over their full range once a word is below the range's
/// maximum, and `j ^= ` the destination's word after each word unless persistent. Words are
/// loaded as a little-endian CPU (x86-64, arm64) does; a big-endian node hashes otherwise.
/// For DNAT (`is_dnat`) the word XORed in after each step is the one just written: the
/// kernel's `var_ipp` is the tuple's destination itself, so `j ^= tuple->dst.u3.all[i]` reads
/// the new word (this only matters for IPv6, whose later words are hashed after it; measured:
/// an IPv6 DNAT range picked by the original words disagreed with the kernel 4 times in 4).
pub(crate) fn nat_range_pick(
    src: IpAddr,
    dst: IpAddr,
    (lo, hi): (u128, u128),
    v6: bool,
    persistent: bool,
    is_dnat: bool,
) -> IpAddr {
    let sw = addr_words_le(src);
    let dw = addr_words_le(dst);
    let last = if v6 { 3 } else { 0 };
    let mut j = jhash2(&sw, if persistent { 0 } else { dw[last] });
    // Range bounds as numeric (host-order) words, most significant first.
    let words = |v: u128| -> [u32; 4] {
        if v6 {
            [
                (v >> 96) as u32,
                (v >> 64) as u32,
                (v >> 32) as u32,
                v as u32,
            ]
        } else {
            [v as u32, 0, 0, 0]
        }
    };
    let (minw, maxw) = (words(lo), words(hi));
    let mut out = [0u32; 4];
    let mut full_range = false;
    for i in 0..=last {
        let (minip, dist) = if full_range {
            (0u32, u32::MAX)
        } else {
            (minw[i], maxw[i].wrapping_sub(minw[i]).wrapping_add(1))
        };
        let scaled = ((u64::from(j) * u64::from(dist)) >> 32) as u32;
        out[i] = minip.wrapping_add(scaled);
        if out[i] != maxw[i] {
            full_range = true;
        }
        if !persistent {
            // The word as stored in network order, loaded as a little-endian u32.
            j ^= if is_dnat { out[i].swap_bytes() } else { dw[i] };
        }
    }
    if v6 {
        let v = (u128::from(out[0]) << 96)
            | (u128::from(out[1]) << 64)
            | (u128::from(out[2]) << 32)
            | u128::from(out[3]);
        u128_to_addr(v, true)
    } else {
        u128_to_addr(u128::from(out[0]), false)
    }
}

fn pick_port(r: PortRange, cur: u16) -> u16 {
    if r.contains(cur) {
        cur
    } else {
        r.lo
    }
}

/// Finished branches merged into outcomes as they come (identical results add up).
#[derive(Default)]
struct Merger {
    outs: Vec<Outcome>,
    seen: std::collections::HashMap<u64, Vec<usize>, crate::index::FxBuild>,
    hasher: crate::index::FxBuild,
}

impl Merger {
    fn add(&mut self, b: Branch, v: Verdict) {
        use std::hash::BuildHasher;
        let out_iface = if b.local_delivery {
            None
        } else {
            match &b.route {
                Some(RouteDecision::Forward { out_iface, .. }) => out_iface.clone(),
                _ => None,
            }
        };
        let key = self.hasher.hash_one((
            &v,
            &b.pkt,
            &b.dnat,
            &b.snat,
            b.masquerade,
            b.local_delivery,
            &out_iface,
        ));
        let outs = &mut self.outs;
        let bucket = self.seen.entry(key).or_default();
        let same = bucket.iter().copied().find(|&i| {
            let o = &outs[i];
            o.verdict == v
                && o.packet == b.pkt
                && o.dnat == b.dnat
                && o.snat == b.snat
                && o.masquerade == b.masquerade
                && o.local_delivery == b.local_delivery
                && o.out_iface == out_iface
                && o.route_mark == b.route_mark
        });
        if let Some(i) = same {
            let o = &mut outs[i];
            o.probability += b.prob;
            if !o.notes.iter().any(|n| n == MERGED_NOTE) {
                o.notes.push(MERGED_NOTE.to_string());
            }
            return;
        }
        bucket.push(outs.len());
        outs.push(Outcome {
            probability: b.prob,
            verdict: v,
            packet: b.pkt,
            dnat: b.dnat,
            snat: b.snat,
            masquerade: b.masquerade,
            local_delivery: b.local_delivery,
            out_iface,
            route_mark: b.route_mark,
            steps: b.steps,
            notes: b.notes,
            ended_by: b.ended_by,
        });
    }

    fn finish(self) -> Trace {
        let mut outs = self.outs;
        // Most probable first; equal probabilities keep traversal order.
        // (Rounded, so 0.25 and 0.2500000001 from quantized statistic probabilities tie.)
        outs.sort_by_key(|o| std::cmp::Reverse((o.probability * 1e6).round() as i64));
        Trace { outcomes: outs }
    }
}

/// `addr:port` (`[v6]:port`).
fn fmt_addr_port(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V6(v) => format!("[{v}]:{port}"),
        IpAddr::V4(v) => format!("{v}:{port}"),
    }
}
