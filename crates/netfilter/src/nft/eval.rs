//! The nft evaluator: the first packet of a connection through the base chains of every table
//! whose family sees it, hook by hook, as the kernel runs them.
//!
//! Modelling (mirrors the iptables engine in `crate::eval` for routing, local delivery and
//! NAT):
//!
//! * Per hook, the base chains of the `ip` (IPv4 packets), `ip6` (IPv6) and `inet` (both)
//!   tables run in priority order; among equal priorities the chain created later runs first
//!   (see `hook_plan`). `arp`, `bridge` and `netdev` tables are not traced.
//! * `nat` chains are registered with the nat core, which runs at its own fixed priority
//!   (prerouting and output -100, input and postrouting 100: `nf_nat_register_fn`,
//!   net/netfilter/nf_nat_core.c) and calls the nat chains of that hook in their priority
//!   order until one sets up a mapping; only for the first packet (conntrack NEW). The nat
//!   core is ordered against other chains of its priority by when the family's first nat
//!   chain was created.
//! * Conntrack attaches its entry at priority -200 of prerouting and output: a chain below
//!   that sees no entry (`ct state` reads `invalid`, or `untracked` after `notrack`; `ct mark`
//!   matches nothing and `ct mark set` does nothing: `nft_ct_get_eval`), and `notrack` only
//!   acts there.
//! * `accept` ends the base chain (the next base chain of the hook still runs); `drop` and
//!   `reject` end the packet; falling off a base chain (or `return` in it) applies its policy.
//! * `dnat`, `snat`, `masquerade`, `redirect` end the base chain with accept.
//! * Arriving: prerouting, routing, then input (local) or forward and postrouting.
//!   Local-origin: output (rerouted after the nat chains and after a `route` chain),
//!   postrouting; to a local address the packet loops back through lo: prerouting and input
//!   chains that are not nat (NAT was set up on the way out).
//! * `numgen random mod N`: N branches of probability 1/N; `numgen inc mod N` too, with a note
//!   (the kernel's round-robin counter spreads connections equally over time).
//! * Dynamic sets (`flags dynamic`, session affinity): their listed elements are looked up;
//!   `update @set` is noted (the first packet has no entry yet unless one is listed).
//! * `limit` is assumed not exceeded (noted); `counter`, `log`, `comment` have no effect.
//! * Opaque expressions give UNKNOWN naming them.

use std::net::IpAddr;

use super::parse::{expr_text, fib_type};
use super::{
    Atom, BitOp, ChainType, CmpOp, Expr, MapValue, NatSpec, NftChain, NftFamily, NftHook,
    NftRuleset, NftSet, NftVerdict, SetRef, Stmt,
};
use crate::types::{
    addr_to_u128, u128_to_addr, CtState, EndCause, Env, NatTarget, Outcome, Packet, RouteDecision,
    SourceRef, Step, Table, Trace, Verdict,
};

const MAX_BRANCHES: usize = 20_000;
const MAX_VISITS: usize = 2_000_000;
const MAX_DEPTH: usize = 256;
const MAX_STEPS: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// A base chain: table index, chain index.
    Chain(NftHook, usize, usize),
    Route,
    RouteOut,
    Reroute,
    Loopback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frame {
    table: usize,
    chain: usize,
    pos: usize,
    gotos: usize,
}

#[derive(Clone, Debug)]
struct Branch {
    prob: f64,
    pkt: Packet,
    plan: Vec<Stage>,
    stage: usize,
    /// Current base chain: hook, table, chain.
    cur: Option<(NftHook, usize, usize)>,
    stack: Vec<Frame>,
    /// Numgen value fixed for the rule at (table, chain, pos).
    pin: Option<((usize, usize, usize), u32)>,
    in_dev: Option<String>,
    route: Option<RouteDecision>,
    output_route: Option<RouteDecision>,
    route_mark: Option<u32>,
    local_origin: bool,
    local_delivery: bool,
    orig_src: IpAddr,
    orig_dst: IpAddr,
    orig_sport: u16,
    dnat: Option<NatTarget>,
    snat: Option<NatTarget>,
    masquerade: bool,
    steps: Vec<Step>,
    notes: Vec<String>,
    /// What ended the branch when no rule's verdict did ([`Outcome::ended_by`]).
    ended_by: Option<EndCause>,
}

impl Branch {
    fn note(&mut self, n: String) {
        if !self.notes.contains(&n) {
            self.notes.push(n);
        }
    }
}

enum Res {
    Yes,
    No,
    Unknown(String),
}

/// A packet value of an expression.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Num(u128),
    Str(String),
}

struct Ev<'a, 'e> {
    rs: &'a NftRuleset,
    env: &'a Env<'e>,
    v6: bool,
}

/// Trace the first packet of a connection through an nftables ruleset as the kernel would:
/// every distinct outcome with its probability (summing to 1), most probable first.
///
/// [`Step::table`] is the chain's type mapped onto the iptables tables (nat → `nat`, filter →
/// `filter`, route → `mangle`) and [`Step::chain`] is `FAMILY TABLE CHAIN` (e.g. `ip kube-proxy
/// services`). `env.ipsets` and `env.uncollected` do not apply to nftables.
pub fn trace_nft(rs: &NftRuleset, pkt: &Packet, env: &Env) -> Trace {
    let ev = Ev {
        rs,
        env,
        v6: pkt.dst.is_ipv6(),
    };
    ev.run(pkt)
}

fn fam_sees(f: NftFamily, v6: bool) -> bool {
    match f {
        NftFamily::Ip => !v6,
        NftFamily::Ip6 => v6,
        NftFamily::Inet => true,
        _ => false,
    }
}

impl Ev<'_, '_> {
    fn chain(&self, t: usize, c: usize) -> &NftChain {
        &self.rs.tables[t].chains[c]
    }

    fn is_local(&self, a: IpAddr) -> bool {
        a.is_loopback() || self.env.local_addrs.contains(&a)
    }

    fn route(&self, pkt: &Packet) -> RouteDecision {
        match self.env.router {
            Some(r) => r.route(pkt),
            None => {
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

    /// The base chains of `hook` in the order the kernel runs them; `nat_ok`: include nat
    /// chains. Output: a `Reroute` after the nat chains and after each route chain.
    ///
    /// The kernel keeps a hook's entries sorted by priority and inserts a new entry before the
    /// first one whose priority is not lower (`nf_hook_entries_grow`, net/netfilter/core.c:
    /// `if (inserted || reg->priority > orig_ops[i]->priority)` copies the old entry, else the
    /// new one goes first). So among equal priorities the entry registered LATER runs first,
    /// across tables and families (`ip` and `inet` chains share the IPv4 hook list).
    ///
    /// nat chains are not hook entries of their own: the first nat chain of a family makes
    /// `nf_nat_register_fn` (net/netfilter/nf_nat_core.c) register the nat core's entries for
    /// every hook of that family at once (prerouting and output -100, input and postrouting
    /// 100); the nat chains are kept in the core's own list (`nf_hook_entries_insert_raw`,
    /// the same ordering rule) and run from there. So the nat core is ordered against the
    /// other chains of its priority by the time the family's first nat chain was created.
    fn hook_plan(&self, hook: NftHook, nat_ok: bool) -> Vec<Stage> {
        let nat_core = match hook {
            NftHook::Prerouting | NftHook::Output => -100,
            _ => 100,
        };
        // The nat core's registration: the family's first nat chain, on any hook.
        let nat_seq = self
            .rs
            .tables
            .iter()
            .filter(|t| fam_sees(t.family, self.v6))
            .flat_map(|t| &t.chains)
            .filter(|c| c.base.as_ref().is_some_and(|b| b.kind == ChainType::Nat))
            .map(|c| c.seq)
            .min();
        // (hook entry priority, entry registration, priority in the nat core, registration,
        // stage, type); sorted by priority ascending, registration descending.
        let mut v: Vec<(i32, u64, i32, u64, Stage, ChainType)> = Vec::new();
        for (ti, t) in self.rs.tables.iter().enumerate() {
            if !fam_sees(t.family, self.v6) {
                continue;
            }
            for (ci, c) in t.chains.iter().enumerate() {
                let Some(b) = &c.base else { continue };
                if b.hook != hook {
                    continue;
                }
                let st = Stage::Chain(hook, ti, ci);
                if b.kind == ChainType::Nat {
                    if !nat_ok {
                        continue;
                    }
                    let core_seq = nat_seq.unwrap_or(c.seq);
                    v.push((nat_core, core_seq, b.priority, c.seq, st, b.kind));
                } else {
                    v.push((b.priority, c.seq, 0, 0, st, b.kind));
                }
            }
        }
        v.sort_by_key(|x| (x.0, std::cmp::Reverse(x.1), x.2, std::cmp::Reverse(x.3)));
        let mut out = Vec::new();
        for (i, x) in v.iter().enumerate() {
            out.push(x.4);
            if hook == NftHook::Output {
                let last_nat =
                    x.5 == ChainType::Nat && v.get(i + 1).is_none_or(|n| n.5 != ChainType::Nat);
                if last_nat || x.5 == ChainType::Route {
                    out.push(Stage::Reroute);
                }
            }
        }
        out
    }

    fn run(&self, pkt: &Packet) -> Trace {
        let local_origin = self.env.local_origin;
        let mut notes = Vec::new();
        if pkt.src.is_ipv6() != pkt.dst.is_ipv6() {
            notes.push("source and destination are of different address families".to_string());
        }
        let mut plan = Vec::new();
        if local_origin {
            plan.push(Stage::RouteOut);
            plan.extend(self.hook_plan(NftHook::Output, true));
            if !plan.contains(&Stage::Reroute) {
                plan.push(Stage::Reroute);
            }
            plan.extend(self.hook_plan(NftHook::Postrouting, true));
            plan.push(Stage::Loopback);
        } else {
            plan.extend(self.hook_plan(NftHook::Prerouting, true));
            plan.push(Stage::Route);
        }
        let first = Branch {
            prob: 1.0,
            pkt: pkt.clone(),
            plan,
            stage: 0,
            cur: None,
            stack: Vec::new(),
            pin: None,
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
            orig_src: pkt.src,
            orig_dst: pkt.dst,
            orig_sport: pkt.sport,
            dnat: None,
            snat: None,
            masquerade: false,
            steps: Vec::new(),
            notes,
            ended_by: None,
        };
        let mut work = vec![first];
        let mut spawned = 1usize;
        let mut visits = 0usize;
        let mut outs: Vec<Outcome> = Vec::new();
        while let Some(mut b) = work.pop() {
            let v = self.walk(&mut b, &mut work, &mut spawned, &mut visits);
            add_outcome(&mut outs, b, v);
        }
        outs.sort_by_key(|o| std::cmp::Reverse((o.probability * 1e6).round() as i64));
        Trace { outcomes: outs }
    }

    fn walk(
        &self,
        b: &mut Branch,
        work: &mut Vec<Branch>,
        spawned: &mut usize,
        visits: &mut usize,
    ) -> Verdict {
        loop {
            if b.stack.is_empty() {
                b.cur = None;
                let Some(&stage) = b.plan.get(b.stage) else {
                    return Verdict::Accept;
                };
                b.stage += 1;
                if let Some(v) = self.enter_stage(b, stage) {
                    return v;
                }
                continue;
            }
            *visits += 1;
            if *visits > MAX_VISITS {
                return Verdict::Unknown {
                    reason: format!(
                        "more than {MAX_VISITS} rule evaluations; the rest is not traced"
                    ),
                    rule: None,
                };
            }
            let Some((hook, bt, bc)) = b.cur else {
                b.stack.clear();
                continue;
            };
            let Some(&top) = b.stack.last() else { continue };
            let chain = self.chain(top.table, top.chain);
            if top.pos >= chain.rules.len() {
                if b.stack.len() > 1 {
                    b.stack.pop();
                    continue;
                }
                b.stack.clear();
                if let Some(v) = self.policy(b, bt, bc, "end of") {
                    return v;
                }
                continue;
            }
            let key = (top.table, top.chain, top.pos);
            let rule = &chain.rules[top.pos];
            // numgen: fork one branch per value, each re-running this rule with it pinned.
            let pinned = match b.pin {
                Some((k, v)) if k == key => Some(v),
                _ => None,
            };
            if pinned.is_none() {
                match fork_numgen(b, work, spawned, key, rule) {
                    Fork::None => {}
                    Fork::Forked => continue,
                    Fork::TooMany(v) => return v,
                }
            }
            if let Some(f) = b.stack.last_mut() {
                f.pos += 1;
            }
            b.pin = None;
            let numgen_val = pinned;
            let fam = self.rs.tables[top.table].family;
            let chain_label = format!("{} {} {}", fam, self.rs.tables[top.table].name, chain.name);
            let kind = self.chain(bt, bc).base.as_ref().map(|x| x.kind);
            let table = match kind {
                Some(ChainType::Nat) => Table::Nat,
                Some(ChainType::Route) => Table::Mangle,
                _ => Table::Filter,
            };
            let run = RuleRun {
                table_ix: top.table,
                rule,
                hook,
                numgen: numgen_val,
                step_table: table,
                chain_label: &chain_label,
            };
            match self.exec_rule(b, &run) {
                Flow::Next => {}
                Flow::EndBase => b.stack.clear(),
                Flow::Final(v) => return v,
                Flow::Verdict(v) => {
                    if let Some(v) = self.verdict(b, top.table, v, &rule.source, bt, bc) {
                        return v;
                    }
                }
            }
        }
    }

    /// Enters the next stage of the branch's plan: routing (which extends the plan by the
    /// hooks the packet goes on to), the loopback or a base chain. `Some` ends the packet.
    fn enter_stage(&self, b: &mut Branch, stage: Stage) -> Option<Verdict> {
        match stage {
            Stage::Route => {
                b.route_mark = Some(b.pkt.mark);
                let r = self.route(&b.pkt);
                match &r {
                    RouteDecision::Local => {
                        b.local_delivery = true;
                        let p = self.hook_plan(NftHook::Input, b.pkt.ct_state == CtState::New);
                        b.plan.extend(p);
                    }
                    RouteDecision::Forward { .. } => {
                        let p = self.hook_plan(NftHook::Forward, false);
                        b.plan.extend(p);
                        let p = self.hook_plan(NftHook::Postrouting, true);
                        b.plan.extend(p);
                    }
                    RouteDecision::Unreachable => {
                        b.notes.push(format!("routing: no route to {}", b.pkt.dst));
                        b.route = Some(r);
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
                    let p = self.hook_plan(NftHook::Prerouting, false);
                    b.plan.extend(p);
                    let p = self.hook_plan(NftHook::Input, false);
                    b.plan.extend(p);
                }
            }
            Stage::Chain(hook, t, c) => {
                let ch = self.chain(t, c);
                let is_nat = ch.base.as_ref().is_some_and(|x| x.kind == ChainType::Nat);
                if is_nat {
                    if b.pkt.ct_state != CtState::New {
                        return None;
                    }
                    // The nat core stops at the first chain that set up a mapping.
                    let done = match hook {
                        NftHook::Prerouting | NftHook::Output => b.dnat.is_some(),
                        _ => b.snat.is_some() || b.masquerade,
                    };
                    if done {
                        return None;
                    }
                }
                b.cur = Some((hook, t, c));
                b.stack.push(Frame {
                    table: t,
                    chain: c,
                    pos: 0,
                    gotos: 0,
                });
            }
        }
        None
    }

    /// Applies the base chain's policy (`what`: "end of" / "return from"). `Some` ends the
    /// packet.
    fn policy(&self, b: &mut Branch, bt: usize, bc: usize, what: &str) -> Option<Verdict> {
        let ch = self.chain(bt, bc);
        let drop = ch.base.as_ref().is_some_and(|x| x.policy_drop);
        if drop {
            let why = format!(
                "{what} {} {} {}: policy drop ({})",
                self.rs.tables[bt].family, self.rs.tables[bt].name, ch.name, ch.source
            );
            b.notes.push(why.clone());
            b.ended_by = Some(EndCause::Policy(why));
            return Some(Verdict::Drop);
        }
        None
    }

    fn verdict(
        &self,
        b: &mut Branch,
        t: usize,
        v: NftVerdict,
        src: &SourceRef,
        bt: usize,
        bc: usize,
    ) -> Option<Verdict> {
        match v {
            NftVerdict::Accept => b.stack.clear(),
            NftVerdict::Drop => return Some(Verdict::Drop),
            NftVerdict::Continue => {}
            NftVerdict::Return => {
                if b.stack.len() > 1 {
                    b.stack.pop();
                } else {
                    b.stack.clear();
                    return self.policy(b, bt, bc, "return from");
                }
            }
            NftVerdict::Jump(ref c) | NftVerdict::Goto(ref c) => {
                let goto = matches!(v, NftVerdict::Goto(_));
                let Some(&ci) = self.rs.tables[t].chain_ix.get(c.as_str()) else {
                    return Some(Verdict::Unknown {
                        reason: format!("no chain `{c}` (at {src})"),
                        rule: Some(src.clone()),
                    });
                };
                if b.stack.len() >= MAX_DEPTH {
                    return Some(Verdict::Unknown {
                        reason: format!("chain nesting deeper than {MAX_DEPTH} at {src} (a loop?)"),
                        rule: Some(src.clone()),
                    });
                }
                let mut gotos = 0;
                if goto {
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
                b.stack.push(Frame {
                    table: t,
                    chain: ci,
                    pos: 0,
                    gotos,
                });
            }
        }
        None
    }

    /// Runs one rule's statements on the branch: its matches, then what it does.
    fn exec_rule(&self, b: &mut Branch, run: &RuleRun) -> Flow {
        let src = &run.rule.source;
        let mut unknown: Option<String> = None;
        let mut effects = false;
        let mut stepped = false;
        for st in &run.rule.stmts {
            // Matches decide first: an unknown one only matters if no later match says no
            // before the rule does something.
            let is_match = matches!(st, Stmt::Cmp { .. } | Stmt::Lookup { .. });
            if let Some(reason) = &unknown {
                if !is_match {
                    return run.unknown(reason);
                }
            }
            if !is_match && !stepped && !matches!(st, Stmt::Vmap { .. }) {
                stepped = true;
                run.step(b);
            }
            match st {
                Stmt::Cmp { left, op, right } => {
                    match self.cmp(b, run.hook, left, *op, right, run.numgen) {
                        Res::Yes => {}
                        Res::No => return Flow::Next,
                        Res::Unknown(r) => {
                            if effects {
                                return run.unknown(r);
                            }
                            unknown.get_or_insert(r);
                        }
                    }
                }
                Stmt::Lookup { left, set, neg } => {
                    let r = match self.lookup(b, run.table_ix, run.hook, left, set, run.numgen) {
                        Ok(Some(_)) => !*neg,
                        Ok(None) => *neg,
                        Err(r) if r.is_empty() => false,
                        Err(r) => {
                            if effects {
                                return run.unknown(r);
                            }
                            unknown.get_or_insert(r);
                            continue;
                        }
                    };
                    if !r {
                        return Flow::Next;
                    }
                }
                Stmt::Vmap { key, map } => {
                    match self.lookup(b, run.table_ix, run.hook, key, map, run.numgen) {
                        Ok(Some(Some(MapValue::Verdict(v)))) => {
                            if !stepped {
                                run.step(b);
                            }
                            return Flow::Verdict(v);
                        }
                        Ok(_) => return Flow::Next,
                        Err(r) if r.is_empty() => return Flow::Next,
                        Err(r) => return run.unknown(r),
                    }
                }
                Stmt::Verdict(v) => return Flow::Verdict(v.clone()),
                Stmt::SetMark { ct, value } => {
                    effects = true;
                    if let Some(flow) = self.set_mark(b, run, *ct, value) {
                        return flow;
                    }
                }
                Stmt::SetUpdate { set, key } => {
                    effects = true;
                    b.note(format!(
                        "`update @{set} {{ {} }}` at {src}: the connection's entry is added for later packets (not modelled: this trace is the first packet)",
                        expr_text(key)
                    ));
                }
                Stmt::NoEffect(_) => {}
                Stmt::Limit { over, text } => {
                    b.note(format!(
                        "`{text}` at {src}: the rate is assumed not exceeded"
                    ));
                    if *over {
                        return Flow::Next;
                    }
                }
                Stmt::Notrack => {
                    effects = true;
                    if let Some(flow) = self.notrack(b, run) {
                        return flow;
                    }
                }
                Stmt::Reject(with) => {
                    return Flow::Final(Verdict::Reject { with: with.clone() });
                }
                Stmt::Dnat(spec) => return self.dnat(b, run.hook, spec, src),
                Stmt::Redirect(ports) => return self.redirect(b, run.hook, *ports, src),
                Stmt::Snat(spec) => return self.snat(b, run.hook, spec, src),
                Stmt::Masquerade(spec) => return self.masq(b, run.hook, spec, src),
                Stmt::Opaque(what) => {
                    return Flow::Final(Verdict::Unknown {
                        reason: format!(
                            "unsupported nft expression `{what}` at {src} (in {})",
                            run.chain_label
                        ),
                        rule: Some(src.clone()),
                    })
                }
            }
        }
        if let Some(reason) = unknown {
            return run.unknown(reason);
        }
        if !stepped {
            run.step(b);
        }
        Flow::Next
    }

    /// `meta mark set` / `ct mark set` (`ct`): `Some` ends the rule.
    fn set_mark(&self, b: &mut Branch, run: &RuleRun, ct: bool, value: &Expr) -> Option<Flow> {
        let src = &run.rule.source;
        if ct {
            match self.before_ct(b, run.hook) {
                Err(r) => return Some(run.unknown(r)),
                Ok(true) => {
                    b.note(format!(
                        "`ct mark set` at {src}: the packet has no conntrack entry yet (priority below -200): no effect"
                    ));
                    return None;
                }
                Ok(false) if matches!(b.pkt.ct_state, CtState::Untracked | CtState::Invalid) => {
                    b.note(format!(
                        "`ct mark set` at {src}: the packet has no conntrack entry: no effect"
                    ));
                    return None;
                }
                Ok(false) => {}
            }
        }
        match self.eval(b, run.hook, value, run.numgen) {
            Ok(Val::Num(n)) => {
                if ct {
                    b.pkt.ct_mark = n as u32;
                } else {
                    b.pkt.mark = n as u32;
                }
                None
            }
            Ok(Val::Str(_)) | Err(_) => {
                Some(run.unknown(format!("cannot compute `{}`", expr_text(value))))
            }
        }
    }

    /// `notrack`: `Some` ends the rule.
    fn notrack(&self, b: &mut Branch, run: &RuleRun) -> Option<Flow> {
        // `nft_notrack_eval`: only a packet conntrack has not seen yet.
        match self.before_ct(b, run.hook) {
            Ok(true) => b.pkt.ct_state = CtState::Untracked,
            Ok(false) => b.note(format!(
                "notrack at {}: conntrack has already seen the packet (priority -200 or above): no effect",
                run.rule.source
            )),
            Err(r) => return Some(run.unknown(r)),
        }
        None
    }

    fn nat_hook_ok(&self, b: &Branch, dst: bool, hook: NftHook) -> bool {
        let _ = b;
        if dst {
            matches!(hook, NftHook::Prerouting | NftHook::Output)
        } else {
            matches!(hook, NftHook::Postrouting | NftHook::Input)
        }
    }

    fn dnat(&self, b: &mut Branch, hook: NftHook, spec: &NatSpec, src: &SourceRef) -> Flow {
        if !self.nat_hook_ok(b, true, hook) {
            return unknown_at(format!("dnat outside prerouting/output at {src}"), src);
        }
        if spec.v6 != self.v6 {
            b.note(format!(
                "dnat at {src} is for the other address family: no effect"
            ));
            return Flow::Next;
        }
        let has_ports = b.pkt.proto.has_ports();
        if let Some((lo, hi)) = spec.addr {
            let a = if lo == hi {
                u128_to_addr(lo, spec.v6)
            } else {
                let a = crate::eval::nat_range_pick(
                    b.pkt.src,
                    b.pkt.dst,
                    (lo, hi),
                    spec.v6,
                    spec.flags.iter().any(|f| f == "persistent"),
                    true,
                );
                b.note(format!(
                    "{src}: address range: the kernel's hash of the source and destination picks {a}"
                ));
                a
            };
            b.pkt.dst = a;
        }
        let mut port = None;
        if let (Some((lo, hi)), true) = (spec.port, has_ports) {
            if lo != hi && spec.flags.iter().any(|f| f.contains("random")) {
                return unknown_at(
                    format!("dnat at {src}: the kernel draws the port at random in {lo}-{hi}"),
                    src,
                );
            }
            let p = if (lo..=hi).contains(&b.pkt.dport) {
                b.pkt.dport
            } else {
                lo
            };
            b.pkt.dport = p;
            port = Some(p);
        }
        b.dnat = Some(NatTarget {
            addr: Some(b.pkt.dst),
            port,
        });
        Flow::EndBase
    }

    fn redirect(
        &self,
        b: &mut Branch,
        hook: NftHook,
        ports: Option<(u16, u16)>,
        src: &SourceRef,
    ) -> Flow {
        if !self.nat_hook_ok(b, true, hook) {
            return unknown_at(format!("redirect outside prerouting/output at {src}"), src);
        }
        let addr = if b.local_origin {
            if self.v6 {
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
        } else {
            let from = match (self.env.router, b.in_dev.as_deref()) {
                (Some(r), Some(dev)) => r
                    .iface_addrs(dev)
                    .and_then(|l| l.into_iter().find(|a| a.is_ipv6() == self.v6)),
                _ => None,
            };
            match from {
                Some(a) => a,
                None => {
                    return unknown_at(
                        format!("redirect at {src}: the incoming interface's address is unknown"),
                        src,
                    )
                }
            }
        };
        b.pkt.dst = addr;
        if let (Some((lo, hi)), true) = (ports, b.pkt.proto.has_ports()) {
            if !(lo..=hi).contains(&b.pkt.dport) {
                b.pkt.dport = lo;
            }
        }
        b.dnat = Some(NatTarget {
            addr: Some(addr),
            port: b.pkt.proto.has_ports().then_some(b.pkt.dport),
        });
        Flow::EndBase
    }

    fn snat(&self, b: &mut Branch, hook: NftHook, spec: &NatSpec, src: &SourceRef) -> Flow {
        if !self.nat_hook_ok(b, false, hook) {
            return unknown_at(format!("snat outside postrouting/input at {src}"), src);
        }
        if spec.v6 != self.v6 {
            b.note(format!(
                "snat at {src} is for the other address family: no effect"
            ));
            return Flow::Next;
        }
        let has_ports = b.pkt.proto.has_ports();
        if let Some((lo, hi)) = spec.addr {
            let cur = addr_to_u128(b.pkt.src);
            if !(lo <= cur && cur <= hi) || spec.flags.iter().any(|f| f.contains("random")) {
                b.pkt.src = if lo == hi {
                    u128_to_addr(lo, spec.v6)
                } else {
                    crate::eval::nat_range_pick(
                        b.pkt.src,
                        b.pkt.dst,
                        (lo, hi),
                        spec.v6,
                        spec.flags.iter().any(|f| f == "persistent"),
                        false,
                    )
                };
            }
        }
        let mut port = None;
        if let (Some((lo, hi)), true) = (spec.port, has_ports) {
            if !(lo..=hi).contains(&b.pkt.sport) {
                b.note(format!(
                    "{src}: the original source port is outside {lo}-{hi}: the kernel picks one in the range (modelled as the first)"
                ));
                b.pkt.sport = lo;
            }
            port = Some(b.pkt.sport);
        }
        if spec.flags.iter().any(|f| f.contains("random")) {
            b.note(format!(
                "snat {} at {src}: the source port is randomized",
                spec.flags.join(",")
            ));
        }
        b.snat = Some(NatTarget {
            addr: Some(b.pkt.src),
            port,
        });
        b.masquerade = true;
        Flow::EndBase
    }

    fn masq(&self, b: &mut Branch, hook: NftHook, spec: &NatSpec, src: &SourceRef) -> Flow {
        if hook != NftHook::Postrouting {
            return unknown_at(format!("masquerade outside postrouting at {src}"), src);
        }
        let hint = match &b.route {
            Some(RouteDecision::Forward { src_hint, .. }) => *src_hint,
            Some(RouteDecision::Local) => {
                match self.env.router.and_then(|r| r.select_src("lo", b.pkt.dst)) {
                    Some(a) => Some(a),
                    None => {
                        return unknown_at(
                            format!("masquerade at {src} of a packet leaving by lo: which global address the kernel picks is not known from the routing data"),
                            src,
                        )
                    }
                }
            }
            _ => None,
        };
        let random = spec.flags.iter().any(|f| f.contains("random"));
        let port = match spec.port {
            Some((lo, hi)) if b.pkt.proto.has_ports() => {
                let p = if (lo..=hi).contains(&b.pkt.sport) {
                    b.pkt.sport
                } else {
                    if lo != hi {
                        b.note(format!(
                            "masquerade at {src}: the original source port is outside {lo}-{hi}: the kernel picks one in the range (modelled as the first)"
                        ));
                    }
                    lo
                };
                Some(p)
            }
            _ if random => None,
            _ => b.pkt.proto.has_ports().then_some(b.pkt.sport),
        };
        if random {
            b.note(format!(
                "masquerade {} at {src}: the source port is randomized",
                spec.flags.join(",")
            ));
        }
        match hint {
            Some(a) => b.pkt.src = a,
            None => b.note(format!(
                "masquerade at {src}: the outgoing interface's address is unknown {}",
                crate::types::NO_ROUTING_DATA
            )),
        }
        if let Some(p) = port {
            b.pkt.sport = p;
        }
        let _ = b.orig_sport;
        b.snat = Some(NatTarget { addr: hint, port });
        b.masquerade = true;
        Flow::EndBase
    }

    /// Whether the current base chain runs before conntrack has looked the packet up: below
    /// priority -200 (`NF_IP_PRI_CONNTRACK`) on the packet's first hook (prerouting of an
    /// arriving packet, output of a local one). At exactly -200 the order against conntrack's
    /// own entry depends on when conntrack was registered: `Err`.
    fn before_ct(&self, b: &Branch, hook: NftHook) -> Result<bool, String> {
        let first = match hook {
            NftHook::Prerouting => !b.local_origin,
            NftHook::Output => true,
            _ => false,
        };
        let Some((_, bt, bc)) = b.cur else {
            return Ok(false);
        };
        let prio = self.chain(bt, bc).base.as_ref().map_or(0, |x| x.priority);
        match (first, prio.cmp(&-200)) {
            (true, std::cmp::Ordering::Less) => Ok(true),
            (true, std::cmp::Ordering::Equal) => Err(format!(
                "a conntrack expression in a chain at priority -200 of {}: its order against conntrack's own hook (also -200) depends on which was registered first",
                hook.name()
            )),
            _ => Ok(false),
        }
    }

    /// The packet's value of an expression.
    fn eval(
        &self,
        b: &Branch,
        hook: NftHook,
        e: &Expr,
        numgen: Option<u32>,
    ) -> Result<Val, String> {
        let p = &b.pkt;
        let ports = p.proto.has_ports();
        Ok(match e {
            Expr::Saddr { v6 } | Expr::Daddr { v6 } => {
                if *v6 != self.v6 {
                    return Err(String::new());
                }
                let a = if matches!(e, Expr::Saddr { .. }) {
                    p.src
                } else {
                    p.dst
                };
                Val::Num(addr_to_u128(a))
            }
            Expr::L4proto { v6 } => {
                if v6.is_some_and(|v| v != self.v6) {
                    return Err(String::new());
                }
                Val::Num(u128::from(p.proto.number()))
            }
            Expr::Sport { proto } | Expr::Dport { proto } => {
                if let Some(n) = proto {
                    if p.proto.number() != *n {
                        return Err(String::new());
                    }
                }
                if !ports {
                    return Err(format!(
                        "`{}` of a {} packet (the transport header has no ports)",
                        expr_text(e),
                        p.proto.name()
                    ));
                }
                Val::Num(u128::from(if matches!(e, Expr::Sport { .. }) {
                    p.sport
                } else {
                    p.dport
                }))
            }
            Expr::TcpFlags => {
                // Only TCP packets reach here (the rule's `meta l4proto tcp` dependency). The
                // first packet of a connection, the one traced, is a SYN; later ones carry
                // flags the trace does not know.
                if p.proto != crate::Proto::Tcp {
                    return Err(String::new());
                }
                if p.ct_state != CtState::New {
                    return Err(
                        "`tcp flags` of a packet after the connection's first (the trace knows only the first, a SYN)"
                            .into(),
                    );
                }
                Val::Num(0x02)
            }
            Expr::Mark => Val::Num(u128::from(p.mark)),
            Expr::CtMark => {
                // No conntrack entry (not yet, untracked or invalid): the expression breaks
                // the rule whatever the comparison.
                if self.before_ct(b, hook)?
                    || matches!(p.ct_state, CtState::Untracked | CtState::Invalid)
                {
                    return Err(String::new());
                }
                Val::Num(u128::from(p.ct_mark))
            }
            Expr::CtState if self.before_ct(b, hook)? => Val::Num(match p.ct_state {
                CtState::Untracked => 64,
                _ => 1,
            }),
            Expr::CtState => Val::Num(match p.ct_state {
                CtState::Invalid => 1,
                CtState::Established => 2,
                CtState::Related => 4,
                CtState::New => 8,
                CtState::Untracked => 64,
            }),
            Expr::Iifname => match hook {
                NftHook::Output => Val::Str(String::new()),
                NftHook::Postrouting if b.local_origin => Val::Str(String::new()),
                _ => Val::Str(b.in_dev.clone().ok_or_else(|| {
                    "the incoming interface is unknown (give --in-iface)".to_string()
                })?),
            },
            Expr::Oifname => self.oifname(b, hook)?,
            Expr::NfProto => Val::Num(if self.v6 { 10 } else { 2 }),
            Expr::IpVersion { v6 } => {
                if *v6 != self.v6 {
                    return Err(String::new());
                }
                Val::Num(if self.v6 { 6 } else { 4 })
            }
            Expr::CtDirection => self.ct_direction(b, hook)?,
            Expr::FibType { daddr, dev_out } => {
                self.fib_type_of(b, hook, *daddr, *dev_out, numgen)?
            }
            Expr::Numgen { .. } => match numgen {
                Some(v) => Val::Num(u128::from(v)),
                None => return Err("numgen outside its rule".into()),
            },
            Expr::Const(v) => Val::Num(u128::from(*v)),
            Expr::Random => return Err("`meta random` outside `meta random & M < T`".into()),
            Expr::Bitwise(inner, op, v) => match self.eval(b, hook, inner, numgen)? {
                Val::Num(n) => {
                    let n = n as u32;
                    Val::Num(u128::from(match op {
                        BitOp::And => n & v,
                        BitOp::Or => n | v,
                        BitOp::Xor => n ^ v,
                    }))
                }
                s => s,
            },
            Expr::Concat(_) => return Err("a concatenation outside a set lookup".into()),
            Expr::Opaque(s) => return Err(format!("unsupported nft expression `{s}`")),
        })
    }

    /// `oifname`: empty before routing, else the interface the packet's route leaves by (`lo`
    /// to a local address).
    fn oifname(&self, b: &Branch, hook: NftHook) -> Result<Val, String> {
        let route = match (hook, &b.output_route) {
            (NftHook::Output, Some(r)) => Some(r),
            _ => b.route.as_ref(),
        };
        Ok(match hook {
            NftHook::Prerouting | NftHook::Input => Val::Str(String::new()),
            _ => match route {
                Some(RouteDecision::Forward {
                    out_iface: Some(o), ..
                }) => Val::Str(o.clone()),
                Some(RouteDecision::Local) => Val::Str("lo".into()),
                _ => {
                    return Err(format!(
                        "the outgoing interface is unknown {}",
                        crate::types::NO_ROUTING_DATA
                    ))
                }
            },
        })
    }

    /// `ct direction`: the first packet of a connection goes in the original direction.
    fn ct_direction(&self, b: &Branch, hook: NftHook) -> Result<Val, String> {
        let p = &b.pkt;
        if self.before_ct(b, hook)? || matches!(p.ct_state, CtState::Untracked | CtState::Invalid) {
            return Err(String::new());
        }
        match p.ct_state {
            CtState::New => Ok(Val::Str("original".into())),
            _ => Err("`ct direction` of a packet that is not the connection's first".into()),
        }
    }

    /// `fib saddr|daddr [. iif|. oif] type`: the address type of the packet's source or
    /// destination, local to the node or (with `dev_out`) to the packet's interface.
    fn fib_type_of(
        &self,
        b: &Branch,
        hook: NftHook,
        daddr: bool,
        dev_out: Option<bool>,
        numgen: Option<u32>,
    ) -> Result<Val, String> {
        let p = &b.pkt;
        let a = if daddr { p.dst } else { p.src };
        let local = match dev_out {
            None => self.is_local(a),
            Some(out) => {
                let dev = match self.eval(
                    b,
                    hook,
                    if out { &Expr::Oifname } else { &Expr::Iifname },
                    numgen,
                )? {
                    Val::Str(d) if !d.is_empty() => d,
                    _ => {
                        return Err(format!(
                            "`fib ... . {}` on a packet without that interface here",
                            if out { "oif" } else { "iif" }
                        ))
                    }
                };
                let addrs = self
                    .env
                    .router
                    .and_then(|r| r.iface_addrs(&dev))
                    .ok_or_else(|| {
                        format!(
                            "`fib ... type` limited to {dev}: the addresses of {dev} are unknown"
                        )
                    })?;
                addrs.contains(&a)
            }
        };
        let t = if local {
            "local"
        } else {
            match a {
                IpAddr::V4(v) if v.is_broadcast() => "broadcast",
                IpAddr::V4(v) if v.is_multicast() => "multicast",
                IpAddr::V6(v) if v.is_multicast() => "multicast",
                _ => "unicast",
            }
        };
        Ok(Val::Num(u128::from(fib_type(t).unwrap_or(0))))
    }

    /// Components of a key expression; `Err(String::new())` means "does not apply to this
    /// packet" (a header of the other family or protocol: no match).
    fn eval_key(
        &self,
        b: &Branch,
        hook: NftHook,
        e: &Expr,
        numgen: Option<u32>,
    ) -> Vec<Result<Val, String>> {
        match e {
            Expr::Concat(v) => v.iter().map(|x| self.eval(b, hook, x, numgen)).collect(),
            _ => vec![self.eval(b, hook, e, numgen)],
        }
    }

    fn cmp(
        &self,
        b: &Branch,
        hook: NftHook,
        left: &Expr,
        op: CmpOp,
        right: &[Atom],
        numgen: Option<u32>,
    ) -> Res {
        if let Some(p) = random_cmp(left, op, right) {
            // Forked in `walk`: the pinned value says which side this branch is on.
            let _ = p;
            return match numgen {
                Some(1) => Res::Yes,
                Some(_) => Res::No,
                None => Res::Unknown("meta random outside its rule".into()),
            };
        }
        let vals = self.eval_key(b, hook, left, numgen);
        let mut all_eq = true;
        for (v, a) in vals.iter().zip(right) {
            let v = match v {
                Ok(v) => v,
                Err(r) if r.is_empty() => return Res::No,
                Err(r) => return Res::Unknown(r.clone()),
            };
            if matches!(left, Expr::CtState) {
                let (Val::Num(n), Atom::Range(mask, _)) = (v, a) else {
                    return Res::No;
                };
                let hit = n & mask != 0;
                return match (op, hit) {
                    (CmpOp::Eq, true) | (CmpOp::Ne, false) => Res::Yes,
                    _ => Res::No,
                };
            }
            match (op, v, a) {
                (CmpOp::Eq | CmpOp::Ne, _, _) => all_eq &= atom_has(a, v),
                (_, Val::Num(n), Atom::Range(lo, _)) => {
                    let ok = match op {
                        CmpOp::Lt => n < lo,
                        CmpOp::Gt => n > lo,
                        CmpOp::Le => n <= lo,
                        _ => n >= lo,
                    };
                    if !ok {
                        return Res::No;
                    }
                }
                _ => return Res::No,
            }
        }
        match op {
            CmpOp::Eq if !all_eq => Res::No,
            CmpOp::Ne if all_eq => Res::No,
            _ => Res::Yes,
        }
    }

    /// Look the key up: `Ok(Some(value))` when an element matches.
    #[allow(clippy::type_complexity)]
    fn lookup<'s>(
        &'s self,
        b: &mut Branch,
        t: usize,
        hook: NftHook,
        key: &Expr,
        set: &'s SetRef,
        numgen: Option<u32>,
    ) -> Result<Option<Option<MapValue>>, String> {
        let s: &NftSet = match set {
            SetRef::Named(n) => match self.rs.tables[t].set(n) {
                Some(s) => s,
                None => return Err(format!("no set `@{n}`")),
            },
            SetRef::Anon(s) => s,
        };
        if s.has_flag("dynamic") && s.elements.is_empty() {
            if let Some(n) = &s.name {
                b.note(format!(
                    "dynamic set @{n} lists no elements: no entry yet for this client (first packet; session affinity not yet recorded)"
                ));
            }
        }
        let vals = self.eval_key(b, hook, key, numgen);
        if vals.iter().any(|v| matches!(v, Err(r) if r.is_empty())) {
            // A header of the other family or protocol: the rule does not match, with `!=`
            // too (nft's implicit dependency on the protocol).
            return Err(String::new());
        }
        let mut unknown: Option<String> = None;
        for el in &s.elements {
            let mut hit = true;
            let mut unk = false;
            for (v, a) in vals.iter().zip(&el.key) {
                match v {
                    Ok(v) => {
                        if !atom_has(a, v) {
                            hit = false;
                            break;
                        }
                    }
                    Err(r) => {
                        unk = true;
                        unknown.get_or_insert(r.clone());
                    }
                }
            }
            if hit && !unk {
                return Ok(Some(el.value.clone()));
            }
            if hit && unk {
                return Err(unknown.unwrap_or_default());
            }
        }
        Ok(None)
    }
}

fn atom_has(a: &Atom, v: &Val) -> bool {
    match (a, v) {
        (Atom::Range(lo, hi), Val::Num(n)) => lo <= n && n <= hi,
        (Atom::Str(s), Val::Str(x)) => match s.strip_suffix('*') {
            Some(pre) => x.starts_with(pre),
            None => s == x,
        },
        _ => false,
    }
}

fn unknown_at(reason: String, src: &SourceRef) -> Flow {
    Flow::Final(Verdict::Unknown {
        reason,
        rule: Some(src.clone()),
    })
}

/// A rule as it runs: the table it is in (index), the hook, the numgen value pinned for it,
/// the iptables table nearest its base chain's type (`Step.table`) and its chain's label for
/// steps and reasons.
struct RuleRun<'r> {
    table_ix: usize,
    rule: &'r super::NftRule,
    hook: NftHook,
    numgen: Option<u32>,
    step_table: Table,
    chain_label: &'r str,
}

impl RuleRun<'_> {
    /// UNKNOWN for `reason`, naming the rule and its chain.
    fn unknown(&self, reason: impl std::fmt::Display) -> Flow {
        let src = &self.rule.source;
        Flow::Final(Verdict::Unknown {
            reason: format!("{reason} (rule {src} in {})", self.chain_label),
            rule: Some(src.clone()),
        })
    }

    /// Records the rule as a step of the branch (up to `MAX_STEPS`).
    fn step(&self, b: &mut Branch) {
        if b.steps.len() < MAX_STEPS {
            b.steps.push(Step {
                table: self.step_table,
                chain: self.chain_label.into(),
                source: self.rule.source.clone(),
                text: self.rule.text.clone(),
                branch_probability: find_numgen(&self.rule.stmts)
                    .map(|(_, m, _)| 1.0 / f64::from(m))
                    .or_else(|| random_split(&self.rule.stmts)),
            });
        }
    }
}

enum Flow {
    /// Go on with the next rule.
    Next,
    /// The base chain ends with accept (NAT statements).
    EndBase,
    /// The packet's fate.
    Final(Verdict),
    /// A verdict to apply.
    Verdict(NftVerdict),
}

/// What [`fork_numgen`] did with a rule.
enum Fork {
    /// No `numgen` or random match: the rule runs as it is.
    None,
    /// The branch was split: it re-runs the rule with its value pinned, the others wait.
    Forked,
    /// Too many branches: the packet's fate is UNKNOWN.
    TooMany(Verdict),
}

/// Splits the branch at a rule with `meta random` (two branches, the match holding or not)
/// or `numgen` (one branch per value of equal share), pinning each branch's value for the
/// rule at `key` (table, chain, position); the other branches go to `work`.
fn fork_numgen(
    b: &mut Branch,
    work: &mut Vec<Branch>,
    spawned: &mut usize,
    key: (usize, usize, usize),
    rule: &super::NftRule,
) -> Fork {
    let too_many = || {
        Fork::TooMany(Verdict::Unknown {
            reason: format!(
                "more than {MAX_BRANCHES} probabilistic branches (at {}); the rest is not traced",
                rule.source
            ),
            rule: Some(rule.source.clone()),
        })
    };
    if let Some(p) = random_split(&rule.stmts) {
        // `meta random & M < T`: the rule's match holds with probability p.
        if p > 0.0 && p < 1.0 {
            *spawned += 1;
            if *spawned > MAX_BRANCHES {
                return too_many();
            }
            let mut o = b.clone();
            o.prob *= 1.0 - p;
            o.pin = Some((key, 0));
            work.push(o);
            b.prob *= p;
        }
        b.pin = Some((key, u32::from(p > 0.0)));
        return Fork::Forked;
    }
    let Some((inc, modulus, offset)) = find_numgen(&rule.stmts) else {
        return Fork::None;
    };
    if *spawned + modulus as usize > MAX_BRANCHES {
        return too_many();
    }
    *spawned += modulus as usize;
    if inc {
        b.note(format!(
            "numgen inc mod {modulus} at {}: round robin over connections, modelled as {modulus} equal shares",
            rule.source
        ));
    }
    let share = b.prob / modulus as f64;
    for k in (1..modulus).rev() {
        let mut o = b.clone();
        o.prob = share;
        o.pin = Some((key, offset.wrapping_add(k)));
        work.push(o);
    }
    b.prob = share;
    b.pin = Some((key, offset));
    Fork::Forked
}

/// `meta random & M < T` (iptables-nft's `-m statistic --mode random`): the probability
/// T / (M + 1) that it holds.
fn random_cmp(left: &Expr, op: CmpOp, right: &[Atom]) -> Option<f64> {
    let (Expr::Bitwise(inner, BitOp::And, m), CmpOp::Lt, [Atom::Range(t, _)]) = (left, op, right)
    else {
        return None;
    };
    if **inner != Expr::Random {
        return None;
    }
    Some((*t as f64 / (f64::from(*m) + 1.0)).clamp(0.0, 1.0))
}

fn random_split(stmts: &[Stmt]) -> Option<f64> {
    stmts.iter().find_map(|s| match s {
        Stmt::Cmp { left, op, right } => random_cmp(left, *op, right),
        _ => None,
    })
}

fn find_numgen(stmts: &[Stmt]) -> Option<(bool, u32, u32)> {
    fn in_expr(e: &Expr) -> Option<(bool, u32, u32)> {
        match e {
            Expr::Numgen {
                inc,
                modulus,
                offset,
            } => Some((*inc, *modulus, *offset)),
            Expr::Concat(v) => v.iter().find_map(in_expr),
            Expr::Bitwise(e, _, _) => in_expr(e),
            _ => None,
        }
    }
    stmts.iter().find_map(|s| match s {
        Stmt::Cmp { left, .. } | Stmt::Lookup { left, .. } => in_expr(left),
        Stmt::Vmap { key, .. } => in_expr(key),
        Stmt::SetMark { value, .. } => in_expr(value),
        _ => None,
    })
}

fn add_outcome(outs: &mut Vec<Outcome>, b: Branch, v: Verdict) {
    let out_iface = if b.local_delivery {
        None
    } else {
        match &b.route {
            Some(RouteDecision::Forward { out_iface, .. }) => out_iface.clone(),
            _ => None,
        }
    };
    if let Some(o) = outs.iter_mut().find(|o| {
        o.verdict == v
            && o.packet == b.pkt
            && o.dnat == b.dnat
            && o.snat == b.snat
            && o.masquerade == b.masquerade
            && o.local_delivery == b.local_delivery
            && o.out_iface == out_iface
            && o.route_mark == b.route_mark
    }) {
        o.probability += b.prob;
        let n = "several paths with the same result were merged (steps of the first shown)";
        if !o.notes.iter().any(|x| x == n) {
            o.notes.push(n.to_string());
        }
        return;
    }
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
    let _ = (b.orig_src, b.orig_dst);
}
