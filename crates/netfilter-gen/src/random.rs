//! Random rulesets over the supported matches and targets, with probe packets.
//!
//! A case is fully determined by `(seed, index, kind)`: the generator is a ChaCha8 stream
//! (`seed` is the key, `index` the stream number), so one failing case reproduces alone.
//!
//! Kernel constraints the generator respects (so `iptables-restore` accepts every case):
//! * DNAT/REDIRECT only in nat PREROUTING, SNAT/MASQUERADE only in nat POSTROUTING, REJECT only
//!   in filter INPUT/FORWARD (`ipt_REJECT` registers `.table = "filter"` with those hooks);
//!   user chains are private to one built-in chain, so a target's hook mask always holds.
//! * DNAT/REDIRECT with a port, and `--reject-with tcp-reset`, need a non-negated `-p tcp|udp`
//!   (resp. `-p tcp`) in the same rule (iptables' DNAT/REDIRECT/REJECT option checks).
//! * nat chains keep policy ACCEPT and never DROP (iptables refuses DROP in nat).
//! * `-i` is not used in POSTROUTING, `-o` not in PREROUTING/INPUT; `--limit-iface-in` only
//!   where an input interface exists.
//! * Chains form a DAG (a chain only jumps to later ones), so there are no loops.
//! * No `recent` (its list outlives conntrack flushes, so kernel state would leak between
//!   probes) and no NOTRACK (the harness observes the kernel through conntrack).

use crate::{LabPlan, Probe, ProbeProto};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// Which family of ruleset to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseKind {
    /// Random rules without `statistic`: every probe has exactly one outcome.
    Deterministic,
    /// Random rules, some with `-m statistic --mode random`.
    Statistic,
    /// A kube-proxy-shaped nat+filter dump (services, endpoints with statistic ladders,
    /// NodePorts, source-range firewalls, a service without endpoints, masquerade marks).
    KubeLike,
    /// Random rules in the OUTPUT chains (raw, mangle, nat, filter) and POSTROUTING, probed
    /// with packets the node itself sends.
    LocalOrigin,
}

impl CaseKind {
    /// Short name used in case names.
    pub fn name(self) -> &'static str {
        match self {
            CaseKind::Deterministic => "det",
            CaseKind::Statistic => "stat",
            CaseKind::KubeLike => "kube",
            CaseKind::LocalOrigin => "local",
        }
    }
}

/// A generated ruleset and the probes to send through it.
#[derive(Debug, Clone)]
pub struct Case {
    /// `random-<kind>-<seed>-<index>`.
    pub name: String,
    /// Generator seed.
    pub seed: u64,
    /// Case index (ChaCha stream).
    pub index: u64,
    /// Family.
    pub kind: CaseKind,
    /// iptables-save text, loadable with `iptables-restore`.
    pub text: String,
    /// Probe packets, with distinct source ports.
    pub probes: Vec<Probe>,
    /// How many probes a harness should keep: random cases carry twice as many candidates,
    /// so a harness that knows the engine can keep the ones with distinct outcomes first.
    pub keep: usize,
}

/// Draw case `index` of the given kind from `seed`.
pub fn random_case(seed: u64, index: u64, kind: CaseKind, plan: &LabPlan) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index.wrapping_mul(3).wrapping_add(kind as u64));
    let mut g = Gen {
        rng,
        plan,
        statistic: kind == CaseKind::Statistic,
        sports: BTreeSet::new(),
        dsts: BTreeSet::new(),
    };
    let (text, nprobes) = match kind {
        CaseKind::LocalOrigin => {
            let t = g.ruleset_local();
            let probes = g.local_probes(24);
            return Case {
                name: format!("random-{}-{seed}-{index}", kind.name()),
                seed,
                index,
                kind,
                text: t,
                probes,
                keep: 12,
            };
        }
        CaseKind::Deterministic | CaseKind::Statistic => {
            let t = g.ruleset();
            // Twice as many candidates as the harness keeps (see `Case::keep`).
            (t, if g.statistic { 8 } else { 24 })
        }
        CaseKind::KubeLike => {
            let (t, targets) = g.kube_like();
            let probes = g.kube_probes(&targets);
            let keep = probes.len();
            return Case {
                name: format!("random-{}-{seed}-{index}", kind.name()),
                seed,
                index,
                kind,
                text: t,
                probes,
                keep,
            };
        }
    };
    let probes = g.probes(nprobes);
    Case {
        name: format!("random-{}-{seed}-{index}", kind.name()),
        seed,
        index,
        kind,
        text,
        probes,
        keep: nprobes / 2,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tbl {
    Raw,
    Mangle,
    Nat,
    Filter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Pre,
    In,
    Fwd,
    Post,
    Out,
}

impl Hook {
    fn chain(self) -> &'static str {
        match self {
            Hook::Pre => "PREROUTING",
            Hook::In => "INPUT",
            Hook::Fwd => "FORWARD",
            Hook::Post => "POSTROUTING",
            Hook::Out => "OUTPUT",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Hook::Pre => "PRE",
            Hook::In => "IN",
            Hook::Fwd => "FWD",
            Hook::Post => "POST",
            Hook::Out => "OUT",
        }
    }
    fn has_in(self) -> bool {
        matches!(self, Hook::Pre | Hook::In | Hook::Fwd)
    }
    fn has_out(self) -> bool {
        matches!(self, Hook::Fwd | Hook::Post | Hook::Out)
    }
}

impl Tbl {
    fn name(self) -> &'static str {
        match self {
            Tbl::Raw => "raw",
            Tbl::Mangle => "mangle",
            Tbl::Nat => "nat",
            Tbl::Filter => "filter",
        }
    }
    fn builtins(self) -> &'static [&'static str] {
        match self {
            Tbl::Raw => &["PREROUTING", "OUTPUT"],
            Tbl::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            Tbl::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            Tbl::Filter => &["INPUT", "FORWARD", "OUTPUT"],
        }
    }
}

/// The protocol constraint of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    Any,
    Tcp,
    Udp,
    Icmp,
    NotUdp,
}

struct TableBuf {
    tbl: Tbl,
    policies: Vec<(&'static str, &'static str)>,
    user: Vec<String>,
    rules: Vec<String>,
}

impl TableBuf {
    fn new(tbl: Tbl) -> Self {
        TableBuf {
            tbl,
            policies: tbl.builtins().iter().map(|c| (*c, "ACCEPT")).collect(),
            user: Vec::new(),
            rules: Vec::new(),
        }
    }
    fn set_policy(&mut self, chain: &str, pol: &'static str) {
        for p in &mut self.policies {
            if p.0 == chain {
                p.1 = pol;
            }
        }
    }
    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "*{}", self.tbl.name());
        for (c, p) in &self.policies {
            let _ = writeln!(out, ":{c} {p} [0:0]");
        }
        for c in &self.user {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for r in &self.rules {
            out.push_str(r);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
}

struct Gen<'a> {
    rng: ChaCha8Rng,
    plan: &'a LabPlan,
    statistic: bool,
    /// Source ports and destinations that rules mention, so probes can hit them.
    sports: BTreeSet<u16>,
    dsts: BTreeSet<Ipv4Addr>,
}

const MARKS: &[u32] = &[0x1, 0x2, 0x10, 0x20, 0x4000, 0x8000];
const MASKS: &[u32] = &[0xf, 0xff, 0xf0, 0x4000, 0xffff, 0xffffffff];

impl Gen<'_> {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs.choose(&mut self.rng).expect("non-empty pool").clone()
    }
    fn neg(&mut self, p: f64) -> &'static str {
        if self.chance(p) {
            "! "
        } else {
            ""
        }
    }

    // ----- address pools ---------------------------------------------------------------------

    fn src_spec(&mut self) -> String {
        let srcs = self.plan.client_sources();
        match self.rng.random_range(0..6) {
            0 | 1 => format!("{}/32", self.pick(&srcs).0),
            2 => {
                let l = self.pick(&self.plan.client_links.clone());
                format!("{}/24", l.network())
            }
            3 => "10.70.0.0/15".to_string(),
            4 => "10.0.0.0/8".to_string(),
            _ => {
                // A /31 or /30 around a client address.
                let (a, _) = self.pick(&srcs);
                let len = self.pick(&[30u8, 31]);
                let mask = u32::MAX << (32 - len);
                format!("{}/{len}", Ipv4Addr::from(u32::from(a) & mask))
            }
        }
    }

    fn dst_addr(&mut self) -> Ipv4Addr {
        match self.rng.random_range(0..4) {
            0 => self.pick(&self.plan.service_ips.clone()),
            1 => self.pick(&self.plan.backend_addrs()),
            2 => self.pick(&self.plan.node_addrs()),
            _ => self.pick(&self.plan.service_ips.clone()),
        }
    }

    fn dst_spec(&mut self) -> String {
        match self.rng.random_range(0..7) {
            0..=2 => {
                let a = self.dst_addr();
                self.dsts.insert(a);
                format!("{a}/32")
            }
            3 => format!("{}/{}", self.plan.service_net.0, self.plan.service_net.1),
            4 => {
                let l = self.pick(&self.plan.backend_links.clone());
                format!("{}/24", l.network())
            }
            5 => "10.99.0.0/24".to_string(),
            _ => "10.80.0.0/15".to_string(),
        }
    }

    fn port(&mut self) -> u16 {
        self.pick(&self.plan.ports.clone())
    }

    fn port_range(&mut self) -> String {
        let a = self.port();
        let b = self.port();
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        if lo == hi {
            // multiport refuses a range with equal bounds ("invalid portrange").
            return lo.to_string();
        }
        format!("{lo}:{hi}")
    }

    fn sport_spec(&mut self) -> String {
        let bands = self.plan.sport_bands.clone();
        let (lo, hi) = self.pick(&bands);
        match self.rng.random_range(0..3) {
            0 => format!("{lo}:{hi}"),
            1 => {
                let p = self.rng.random_range(lo..=hi);
                self.sports.insert(p);
                p.to_string()
            }
            _ => {
                let mid = lo + (hi - lo) / 2;
                format!("{lo}:{mid}")
            }
        }
    }

    fn mark_spec(&mut self) -> String {
        let v = self.pick(MARKS);
        if self.chance(0.5) {
            format!("0x{v:x}")
        } else {
            let m = self.pick(MASKS);
            format!("0x{:x}/0x{m:x}", v & m)
        }
    }

    // ----- matches ---------------------------------------------------------------------------

    /// Matches for one rule at `hook` (any table), honouring the protocol `p`.
    fn matches(&mut self, hook: Hook, p: P) -> String {
        let mut head = String::new();
        let mut mods: Vec<String> = Vec::new();
        let n = self.rng.random_range(0..=3);
        let mut used = BTreeSet::new();
        for _ in 0..n {
            // 1 and 2 both mean `-d` (twice the weight; iptables allows one `-d` per rule).
            let k = match self.rng.random_range(0..17) {
                2 => 1,
                k => k,
            };
            if !used.insert(k) {
                continue;
            }
            match k {
                0 => {
                    let neg = self.neg(0.25);
                    let s = self.src_spec();
                    let _ = write!(head, "{neg}-s {s} ");
                }
                1 | 2 => {
                    let neg = self.neg(0.25);
                    let d = self.dst_spec();
                    let _ = write!(head, "{neg}-d {d} ");
                }
                3 if hook.has_in() => {
                    let neg = self.neg(0.25);
                    let i = self.pick(&["ethc0", "ethc1", "ethc+", "eth+", "ethb+", "lo"]);
                    let _ = write!(head, "{neg}-i {i} ");
                }
                4 if hook.has_out() => {
                    let neg = self.neg(0.25);
                    let o = self.pick(&["ethb1", "ethb2", "ethb+", "eth+", "ethc+"]);
                    let _ = write!(head, "{neg}-o {o} ");
                }
                5 if matches!(p, P::Tcp | P::Udp) => {
                    let proto = if p == P::Tcp { "tcp" } else { "udp" };
                    let mut opts = String::new();
                    if self.chance(0.8) {
                        let neg = self.neg(0.25);
                        let d = if self.chance(0.6) {
                            self.port().to_string()
                        } else {
                            self.port_range()
                        };
                        let _ = write!(opts, "{neg}--dport {d} ");
                    }
                    if opts.is_empty() || self.chance(0.3) {
                        let neg = self.neg(0.25);
                        let s = self.sport_spec();
                        let _ = write!(opts, "{neg}--sport {s} ");
                    }
                    mods.push(format!("-m {proto} {}", opts.trim_end()));
                }
                6 if matches!(p, P::Tcp | P::Udp) => {
                    let neg = self.neg(0.25);
                    let which = self.pick(&["--dports", "--dports", "--sports", "--ports"]);
                    let mut items = Vec::new();
                    for _ in 0..self.rng.random_range(1..=3) {
                        if which == "--sports" {
                            let s = self.sport_spec();
                            items.push(s);
                        } else if self.chance(0.7) {
                            items.push(self.port().to_string());
                        } else {
                            items.push(self.port_range());
                        }
                    }
                    mods.push(format!("-m multiport {neg}{which} {}", items.join(",")));
                }
                7 => {
                    let mut opt = String::new();
                    let neg = self.neg(0.3);
                    if self.chance(0.75) {
                        let t = self.pick(&["LOCAL", "LOCAL", "UNICAST", "BROADCAST", "MULTICAST"]);
                        let _ = write!(opt, "{neg}--dst-type {t}");
                    } else {
                        let t = self.pick(&["LOCAL", "UNICAST"]);
                        let _ = write!(opt, "{neg}--src-type {t}");
                    }
                    if hook.has_in() && self.chance(0.2) {
                        opt.push_str(" --limit-iface-in");
                    } else if hook == Hook::Post && self.chance(0.2) {
                        opt.push_str(" --limit-iface-out");
                    }
                    mods.push(format!("-m addrtype {opt}"));
                }
                8 => {
                    let neg = self.neg(0.25);
                    let m = self.mark_spec();
                    mods.push(format!("-m mark {neg}--mark {m}"));
                }
                9 => {
                    let neg = self.neg(0.25);
                    let m = self.mark_spec();
                    mods.push(format!("-m connmark {neg}--mark {m}"));
                }
                10 => {
                    // Also in raw, where no connection is attached yet (the kernel's
                    // conntrack/state matches see INVALID there).
                    let neg = self.neg(0.2);
                    let mut states = vec![
                        "NEW",
                        "NEW",
                        "RELATED,ESTABLISHED",
                        "INVALID",
                        "NEW,ESTABLISHED",
                    ];
                    if matches!(hook, Hook::In | Hook::Fwd | Hook::Post | Hook::Out) {
                        states.push("DNAT");
                        states.push("DNAT");
                    }
                    let s = self.pick(&states);
                    match self.rng.random_range(0..4) {
                        // The older state module, still common in hand-written rulesets.
                        0 if s != "DNAT" => mods.push(format!("-m state {neg}--state {s}")),
                        // The destination before DNAT (after nat PREROUTING it differs).
                        1 if matches!(hook, Hook::In | Hook::Fwd | Hook::Post | Hook::Out) => {
                            let neg = self.neg(0.25);
                            let d = self.dst_spec();
                            mods.push(format!("-m conntrack {neg}--ctorigdst {d}"));
                        }
                        _ => mods.push(format!("-m conntrack {neg}--ctstate {s}")),
                    }
                }
                11 => {
                    let c = self.pick(&[
                        "ka generated",
                        "default/web:http cluster IP",
                        "kube-system/dns:dns-tcp",
                        "plain",
                    ]);
                    if c.contains(' ') || c.contains('/') {
                        mods.push(format!("-m comment --comment \"{c}\""));
                    } else {
                        mods.push(format!("-m comment --comment {c}"));
                    }
                }
                12 => {
                    let neg = self.neg(0.25);
                    if self.chance(0.5) {
                        let l = self.pick(&self.plan.client_links.clone());
                        let o = l.network().octets();
                        let a = self.rng.random_range(1..=4u8);
                        let b = self.rng.random_range(a..=6u8);
                        mods.push(format!(
                            "-m iprange {neg}--src-range {}.{}.{}.{a}-{}.{}.{}.{b}",
                            o[0], o[1], o[2], o[0], o[1], o[2]
                        ));
                    } else {
                        let l = self.pick(&self.plan.backend_links.clone());
                        let o = l.network().octets();
                        let a = self.rng.random_range(1..=5u8);
                        let b = self.rng.random_range(a..=8u8);
                        mods.push(format!(
                            "-m iprange {neg}--dst-range {}.{}.{}.{a}-{}.{}.{}.{b}",
                            o[0], o[1], o[2], o[0], o[1], o[2]
                        ));
                    }
                }
                13 => {
                    let neg = self.neg(0.25);
                    let l =
                        self.pick(&["0:100", "60", "61:400", "300:2000", "1000:65535", "28:59"]);
                    mods.push(format!("-m length {neg}--length {l}"));
                }
                14 if p == P::Tcp => {
                    let f = self.pick(&[
                        "--tcp-flags FIN,SYN,RST,ACK SYN",
                        "--syn",
                        "! --syn",
                        "--tcp-flags SYN,ACK SYN,ACK",
                        "--tcp-flags FIN,SYN,RST,PSH,ACK,URG ACK",
                        "! --tcp-flags SYN,RST RST",
                    ]);
                    mods.push(format!("-m tcp {f}"));
                }
                15 if p == P::Icmp => {
                    let t = self.pick(&["8", "echo-request", "0", "3/3", "any"]);
                    let neg = self.neg(0.2);
                    mods.push(format!("-m icmp {neg}--icmp-type {t}"));
                }
                16 if self.statistic => {
                    let neg = self.neg(0.15);
                    let pr = self.pick(&[
                        "0.50000000000",
                        "0.25000000000",
                        "0.33333333349",
                        "0.20000000019",
                        "0.75000000000",
                    ]);
                    mods.push(format!(
                        "-m statistic --mode random {neg}--probability {pr}"
                    ));
                }
                _ => {}
            }
        }
        // Statistic cases: make sure the chance of at least one split is high.
        if self.statistic && !used.contains(&16) && self.chance(0.35) {
            let pr = self.pick(&["0.50000000000", "0.33333333349", "0.25000000000"]);
            mods.push(format!("-m statistic --mode random --probability {pr}"));
        }
        let proto = match p {
            P::Any => String::new(),
            P::Tcp => "-p tcp ".into(),
            P::Udp => "-p udp ".into(),
            P::Icmp => "-p icmp ".into(),
            P::NotUdp => "! -p udp ".into(),
        };
        let mut s = format!("{head}{proto}");
        for m in mods {
            s.push_str(&m);
            s.push(' ');
        }
        s
    }

    fn proto_choice(&mut self, need_port_proto: bool) -> P {
        if need_port_proto {
            return if self.chance(0.6) { P::Tcp } else { P::Udp };
        }
        match self.rng.random_range(0..10) {
            0..=2 => P::Any,
            3..=5 => P::Tcp,
            6..=7 => P::Udp,
            8 => P::NotUdp,
            _ => P::Icmp,
        }
    }

    // ----- targets ---------------------------------------------------------------------------

    fn mark_target(&mut self) -> String {
        let v = self.pick(MARKS);
        let m = self.pick(MASKS);
        match self.rng.random_range(0..6) {
            0 => format!("-j MARK --set-mark 0x{v:x}"),
            1 => format!("-j MARK --set-xmark 0x{:x}/0x{m:x}", v & m),
            2 => format!("-j MARK --or-mark 0x{v:x}"),
            3 => format!("-j MARK --and-mark 0x{:x}", !v),
            4 => format!("-j MARK --xor-mark 0x{v:x}"),
            _ => format!("-j MARK --set-mark 0x{:x}/0x{m:x}", v & m),
        }
    }

    fn connmark_target(&mut self) -> String {
        let v = self.pick(MARKS);
        let m = self.pick(MASKS);
        match self.rng.random_range(0..5) {
            0 => format!("-j CONNMARK --set-xmark 0x{:x}/0x{m:x}", v & m),
            1 => format!("-j CONNMARK --set-mark 0x{v:x}"),
            2 => "-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff".into(),
            3 => format!("-j CONNMARK --save-mark --nfmask 0x{m:x} --ctmask 0x{m:x}"),
            _ => "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff".into(),
        }
    }

    /// (target text, protocol it needs).
    fn target(&mut self, tbl: Tbl, hook: Hook, user_chain: bool) -> (String, Option<P>) {
        let r = self.rng.random_range(0..100);
        let ret = user_chain && r < 8;
        if ret {
            return ("-j RETURN".into(), None);
        }
        match (tbl, hook) {
            (Tbl::Raw, _) => match r % 5 {
                0 => ("-j DROP".into(), None),
                1 | 2 => (self.mark_target(), None),
                3 => ("-j ACCEPT".into(), None),
                _ => (String::new(), None),
            },
            (Tbl::Mangle, _) => match r % 7 {
                0..=2 => (self.mark_target(), None),
                3 | 4 => (self.connmark_target(), None),
                5 => ("-j ACCEPT".into(), None),
                _ => {
                    if hook == Hook::Post || r < 50 {
                        (self.mark_target(), None)
                    } else {
                        ("-j DROP".into(), None)
                    }
                }
            },
            (Tbl::Nat, Hook::Pre | Hook::Out) => match r % 8 {
                0..=2 => {
                    let to = self.dnat_dest();
                    if self.chance(0.6) {
                        let p = self.port();
                        let need = if self.chance(0.6) { P::Tcp } else { P::Udp };
                        (format!("-j DNAT --to-destination {to}:{p}"), Some(need))
                    } else {
                        (format!("-j DNAT --to-destination {to}"), None)
                    }
                }
                3 => {
                    if self.chance(0.5) {
                        let p = self.port();
                        let need = if self.chance(0.6) { P::Tcp } else { P::Udp };
                        (format!("-j REDIRECT --to-ports {p}"), Some(need))
                    } else {
                        ("-j REDIRECT".into(), None)
                    }
                }
                4 | 5 => (self.mark_target(), None),
                6 => ("-j ACCEPT".into(), None),
                _ => ("-j RETURN".into(), None),
            },
            (Tbl::Nat, _) => match r % 7 {
                0..=2 => {
                    let opt = self.pick(&["", "", " --random", " --random-fully"]);
                    (format!("-j MASQUERADE{opt}"), None)
                }
                3 | 4 => {
                    let a = self.pick(&[
                        self.plan.node_lo_addrs[0],
                        self.plan.backend_links[0].node_addr,
                        self.plan.node_lo_addrs[1],
                    ]);
                    (format!("-j SNAT --to-source {a}"), None)
                }
                5 => (self.mark_target(), None),
                _ => ("-j ACCEPT".into(), None),
            },
            (Tbl::Filter, _) => match r % 9 {
                0 | 1 => ("-j ACCEPT".into(), None),
                2 | 3 => ("-j DROP".into(), None),
                4 => ("-j REJECT --reject-with icmp-port-unreachable".into(), None),
                5 => {
                    let w = self.pick(&[
                        "icmp-host-unreachable",
                        "icmp-net-unreachable",
                        "icmp-admin-prohibited",
                        "icmp-host-prohibited",
                    ]);
                    (format!("-j REJECT --reject-with {w}"), None)
                }
                6 => ("-j REJECT --reject-with tcp-reset".into(), Some(P::Tcp)),
                7 => (self.mark_target(), None),
                _ => (self.connmark_target(), None),
            },
        }
    }

    fn dnat_dest(&mut self) -> Ipv4Addr {
        if self.chance(0.8) {
            self.pick(&self.plan.backend_addrs())
        } else {
            self.pick(&self.plan.node_lo_addrs.clone())
        }
    }

    // ----- rulesets --------------------------------------------------------------------------

    fn ruleset(&mut self) -> String {
        let mut tables = Vec::new();
        let contexts: &[(Tbl, Hook, f64)] = &[
            (Tbl::Raw, Hook::Pre, 0.3),
            (Tbl::Mangle, Hook::Pre, 0.5),
            (Tbl::Mangle, Hook::In, 0.15),
            (Tbl::Mangle, Hook::Fwd, 0.25),
            (Tbl::Mangle, Hook::Post, 0.2),
            (Tbl::Nat, Hook::Pre, 0.9),
            (Tbl::Nat, Hook::Post, 0.75),
            (Tbl::Filter, Hook::In, 0.6),
            (Tbl::Filter, Hook::Fwd, 0.85),
        ];
        for &(tbl, hook, p) in contexts {
            if !self.chance(p) {
                continue;
            }
            let idx = match tables.iter().position(|t: &TableBuf| t.tbl == tbl) {
                Some(i) => i,
                None => {
                    tables.push(TableBuf::new(tbl));
                    tables.len() - 1
                }
            };
            self.context(&mut tables[idx], hook);
        }
        let mut out = String::from("# generated by kubepath-netfilter-gen (random)\n");
        for t in &tables {
            t.render(&mut out);
        }
        out
    }

    /// Rules for locally generated packets: OUTPUT in every table, then POSTROUTING.
    fn ruleset_local(&mut self) -> String {
        let mut tables = Vec::new();
        let contexts: &[(Tbl, Hook, f64)] = &[
            (Tbl::Raw, Hook::Out, 0.3),
            (Tbl::Mangle, Hook::Out, 0.5),
            (Tbl::Nat, Hook::Out, 0.85),
            (Tbl::Filter, Hook::Out, 0.85),
            (Tbl::Mangle, Hook::Post, 0.25),
            (Tbl::Nat, Hook::Post, 0.75),
        ];
        for &(tbl, hook, p) in contexts {
            if !self.chance(p) {
                continue;
            }
            let idx = match tables.iter().position(|t: &TableBuf| t.tbl == tbl) {
                Some(i) => i,
                None => {
                    tables.push(TableBuf::new(tbl));
                    tables.len() - 1
                }
            };
            // A REJECT's answer to a locally generated packet (ICMP error or RST) is itself
            // sent by the node to its own address and traverses OUTPUT and POSTROUTING: were
            // the random rules to drop it, the sender would see silence. The probes go to
            // remote destinations, so this first rule only exempts those answers (and packets
            // that nat OUTPUT redirected to the node, which both sides then accept alike).
            if tbl != Tbl::Nat {
                let chain = hook.chain();
                tables[idx].rules.push(format!(
                    "-A {chain} -m addrtype --dst-type LOCAL -m comment --comment \"answers to the node\" -j ACCEPT"
                ));
            }
            self.context(&mut tables[idx], hook);
        }
        let mut out =
            String::from("# generated by kubepath-netfilter-gen (random, local origin)\n");
        for t in &tables {
            t.render(&mut out);
        }
        out
    }

    /// Probes the node sends itself, from one of its addresses to remote destinations.
    fn local_probes(&mut self, n: usize) -> Vec<Probe> {
        let mut out = Vec::new();
        let mut used = BTreeSet::new();
        let srcs = self.plan.node_addrs();
        let rule_sports: Vec<u16> = self.sports.iter().copied().collect();
        let mut remote: Vec<Ipv4Addr> = self.plan.backend_addrs();
        remote.extend(&self.plan.service_ips);
        for _ in 0..n {
            let src = self.pick(&srcs);
            let dst = self.pick(&remote);
            let proto = match self.rng.random_range(0..20) {
                0..=10 => ProbeProto::Tcp,
                11..=17 => ProbeProto::Udp,
                _ => ProbeProto::Icmp,
            };
            let mut sport;
            loop {
                sport = if !rule_sports.is_empty() && self.chance(0.3) {
                    self.pick(&rule_sports)
                } else {
                    let bands = self.plan.sport_bands.clone();
                    let (lo, hi) = self.pick(&bands);
                    self.rng.random_range(lo..=hi)
                };
                if used.insert(sport) {
                    break;
                }
            }
            let dport = if proto == ProbeProto::Icmp {
                0
            } else {
                self.port()
            };
            let udp_payload = self.pick(&[8u16, 300, 1000]);
            out.push(Probe {
                src,
                in_iface: "",
                local_origin: true,
                dst,
                proto,
                sport,
                dport,
                udp_payload,
            });
        }
        out
    }

    fn context(&mut self, buf: &mut TableBuf, hook: Hook) {
        let tbl = buf.tbl;
        if tbl == Tbl::Filter && self.chance(0.3) {
            buf.set_policy(hook.chain(), "DROP");
        }
        let nuser = self.rng.random_range(0..=3usize);
        let prefix = format!("KA-{}-{}", tbl.name().to_uppercase(), hook.short());
        let names: Vec<String> = std::iter::once(hook.chain().to_string())
            .chain((1..=nuser).map(|k| format!("{prefix}-{k}")))
            .collect();
        buf.user.extend(names[1..].iter().cloned());
        // rules[i] = rules of chain i, in order.
        let mut rules: Vec<Vec<String>> = vec![Vec::new(); names.len()];
        for (i, chain_rules) in rules.iter_mut().enumerate() {
            let n = if i == 0 {
                self.rng.random_range(1..=6)
            } else {
                self.rng.random_range(1..=4)
            };
            for _ in 0..n {
                let (t, need) = self.target(tbl, hook, i > 0);
                let p = match need {
                    Some(p) => p,
                    None => self.proto_choice(false),
                };
                let m = self.matches(hook, p);
                chain_rules.push(format!("-A {} {m}{t}", names[i]).trim_end().to_string());
            }
        }
        // Reach every user chain from an earlier chain (jump or goto), at a random position.
        for k in 1..names.len() {
            let from = self.rng.random_range(0..k);
            let how = if from > 0 && self.chance(0.35) {
                "-g"
            } else {
                "-j"
            };
            let p = self.proto_choice(false);
            let m = self.matches(hook, p);
            let rule = format!("-A {} {m}{how} {}", names[from], names[k]);
            let pos = self.rng.random_range(0..=rules[from].len());
            rules[from].insert(pos, rule);
        }
        for r in rules.into_iter().flatten() {
            buf.rules.push(r);
        }
    }

    fn probes(&mut self, n: usize) -> Vec<Probe> {
        let mut out = Vec::new();
        let mut used = BTreeSet::new();
        let srcs = self.plan.client_sources();
        let rule_sports: Vec<u16> = self.sports.iter().copied().collect();
        let rule_dsts: Vec<Ipv4Addr> = self.dsts.iter().copied().collect();
        for _ in 0..n {
            let (src, in_iface) = self.pick(&srcs);
            let dst = if !rule_dsts.is_empty() && self.chance(0.3) {
                self.pick(&rule_dsts)
            } else {
                self.dst_addr()
            };
            let proto = match self.rng.random_range(0..20) {
                0..=10 => ProbeProto::Tcp,
                11..=17 => ProbeProto::Udp,
                _ => ProbeProto::Icmp,
            };
            let mut sport;
            loop {
                sport = if !rule_sports.is_empty() && self.chance(0.3) {
                    self.pick(&rule_sports)
                } else {
                    let bands = self.plan.sport_bands.clone();
                    let (lo, hi) = self.pick(&bands);
                    self.rng.random_range(lo..=hi)
                };
                if used.insert(sport) {
                    break;
                }
            }
            let dport = if proto == ProbeProto::Icmp {
                0
            } else {
                self.port()
            };
            let udp_payload = self.pick(&[8u16, 300, 1000]);
            out.push(Probe {
                src,
                in_iface,
                local_origin: false,
                dst,
                proto,
                sport,
                dport,
                udp_payload,
            });
        }
        out
    }

    // ----- kube-proxy-shaped ---------------------------------------------------------------------

    fn hash_name(&mut self, prefix: &str) -> String {
        const ALPH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut s = String::from(prefix);
        for _ in 0..16 {
            s.push(ALPH[self.rng.random_range(0..ALPH.len())] as char);
        }
        s
    }

    /// A nat+filter dump in the shape kube-proxy's iptables proxier writes (KUBE-SERVICES ->
    /// KUBE-SVC-* with `statistic` ladders -> KUBE-SEP-* -> DNAT; KUBE-NODEPORTS on
    /// `addrtype LOCAL`; KUBE-FW-* for loadBalancerSourceRanges; KUBE-MARK-MASQ and
    /// KUBE-POSTROUTING masquerading on mark 0x4000; filter REJECT for a service without
    /// endpoints). Returns the text and the probe targets (dst, port, proto).
    fn kube_like(&mut self) -> (String, Vec<(Ipv4Addr, u16, ProbeProto)>) {
        let cluster_cidr = self.pick(&["10.244.0.0/16", "10.70.0.0/16"]);
        let mut nat_user: Vec<String> = vec![
            "KUBE-SERVICES".into(),
            "KUBE-NODEPORTS".into(),
            "KUBE-POSTROUTING".into(),
            "KUBE-MARK-MASQ".into(),
            "KUBE-MARK-DROP".into(),
        ];
        let mut nat = vec![
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_string(),
            "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING".to_string(),
            "-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000".to_string(),
            "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000".to_string(),
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN".to_string(),
            "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000".to_string(),
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully".to_string(),
        ];
        let mut services = Vec::new();
        let mut filter_svc = Vec::new();
        let mut filter_ext = Vec::new();
        let mut nodeports = Vec::new();
        let mut targets = Vec::new();
        let nsvc = self.rng.random_range(2..=5usize);
        let mut vips = self.plan.service_ips.clone();
        let backends = self.plan.backend_addrs();
        let mut multi = 0;
        for s in 0..nsvc {
            if vips.is_empty() {
                break;
            }
            let vi = self.rng.random_range(0..vips.len());
            let vip = vips.swap_remove(vi);
            let port = self.port();
            let proto = if self.chance(0.7) {
                ProbeProto::Tcp
            } else {
                ProbeProto::Udp
            };
            let pn = proto.name();
            let name = format!("ns{s}/svc{s}:p{port}");
            let mut neps = self.rng.random_range(0..=4usize);
            if neps >= 2 {
                if multi >= 2 {
                    neps = 1;
                } else {
                    multi += 1;
                }
            }
            targets.push((vip, port, proto));
            if neps == 0 {
                // kube-proxy: filter KUBE-SERVICES rejects traffic to a service without endpoints.
                filter_svc.push(format!(
                    "-A KUBE-SERVICES -d {vip}/32 -p {pn} -m comment --comment \"{name} has no endpoints\" -m {pn} --dport {port} -j REJECT --reject-with icmp-port-unreachable"
                ));
                continue;
            }
            let svc = self.hash_name("KUBE-SVC-");
            nat_user.push(svc.clone());
            services.push(format!(
                "-A KUBE-SERVICES -d {vip}/32 -p {pn} -m comment --comment \"{name} cluster IP\" -m {pn} --dport {port} -j {svc}"
            ));
            nat.push(format!(
                "-A {svc} ! -s {cluster_cidr} -d {vip}/32 -p {pn} -m comment --comment \"{name} cluster IP\" -m {pn} --dport {port} -j KUBE-MARK-MASQ"
            ));
            let mut eps: Vec<Ipv4Addr> = Vec::new();
            while eps.len() < neps {
                let e = self.pick(&backends);
                if !eps.contains(&e) {
                    eps.push(e);
                }
            }
            let tport = self.port();
            for (i, ep) in eps.iter().enumerate() {
                let sep = self.hash_name("KUBE-SEP-");
                nat_user.push(sep.clone());
                if i + 1 < neps {
                    let prob = 1.0 / (neps - i) as f64;
                    nat.push(format!(
                        "-A {svc} -m comment --comment \"{name} -> {ep}:{tport}\" -m statistic --mode random --probability {prob:.11} -j {sep}"
                    ));
                } else {
                    nat.push(format!(
                        "-A {svc} -m comment --comment \"{name} -> {ep}:{tport}\" -j {sep}"
                    ));
                }
                nat.push(format!(
                    "-A {sep} -s {ep}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ"
                ));
                nat.push(format!(
                    "-A {sep} -p {pn} -m comment --comment \"{name}\" -m {pn} -j DNAT --to-destination {ep}:{tport}"
                ));
            }
            // NodePort for single-endpoint services (keeps statistical probes few).
            if neps == 1 && self.chance(0.6) {
                let ext = self.hash_name("KUBE-EXT-");
                nat_user.push(ext.clone());
                nodeports.push(format!(
                    "-A KUBE-NODEPORTS -p {pn} -m comment --comment \"{name}\" -m {pn} --dport 30080 -j {ext}"
                ));
                nat.push(format!(
                    "-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"
                ));
                nat.push(format!("-A {ext} -j {svc}"));
                targets.push((self.plan.node_lo_addrs[0], 30080, proto));
                targets.push((self.plan.client_links[0].node_addr, 30080, proto));
            }
            // A LoadBalancer IP with loadBalancerSourceRanges for some single-endpoint services.
            if neps == 1 && self.chance(0.5) {
                let lb = self.plan.node_lo_addrs[1];
                let fw = self.hash_name("KUBE-FW-");
                nat_user.push(fw.clone());
                services.push(format!(
                    "-A KUBE-SERVICES -d {lb}/32 -p {pn} -m comment --comment \"{name} loadbalancer IP\" -m {pn} --dport {port} -j {fw}"
                ));
                let allowed = self.plan.client_links[0].network();
                nat.push(format!(
                    "-A {fw} -s {allowed}/24 -m comment --comment \"{name} loadbalancer IP\" -j {svc}"
                ));
                nat.push(format!(
                    "-A {fw} -m comment --comment \"{name} loadbalancer IP\" -j KUBE-MARK-DROP"
                ));
                filter_ext.push(format!(
                    "-A KUBE-EXTERNAL-SERVICES -d {lb}/32 -p {pn} -m comment --comment \"{name} loadbalancer IP\" -m {pn} --dport {port} -m mark --mark 0x8000/0x8000 -j DROP"
                ));
                targets.push((lb, port, proto));
            }
        }
        services.push("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS".into());
        // Non-service traffic too.
        targets.push((self.pick(&backends), self.port(), ProbeProto::Tcp));
        targets.push((self.plan.node_lo_addrs[0], 9000, ProbeProto::Udp));

        let mut out = String::from("# generated by kubepath-netfilter-gen (kube-proxy-shaped)\n");
        out.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
        for c in &nat_user {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for r in nat.iter().take(2) {
            let _ = writeln!(out, "{r}");
        }
        for r in &nat[2..] {
            let _ = writeln!(out, "{r}");
        }
        for r in services.iter().chain(&nodeports) {
            let _ = writeln!(out, "{r}");
        }
        out.push_str("COMMIT\n");
        out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-SERVICES - [0:0]\n");
        out.push_str("-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n");
        out.push_str("-A INPUT -j KUBE-FIREWALL\n");
        out.push_str(
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n",
        );
        out.push_str("-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
        out.push_str("-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n");
        for r in &filter_ext {
            let _ = writeln!(out, "{r}");
        }
        out.push_str("-A KUBE-FIREWALL -m comment --comment \"kubernetes firewall for dropping marked packets\" -m mark --mark 0x8000/0x8000 -j DROP\n");
        out.push_str("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
        out.push_str("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n");
        for r in &filter_svc {
            let _ = writeln!(out, "{r}");
        }
        out.push_str("COMMIT\n");
        (out, targets)
    }

    fn kube_probes(&mut self, targets: &[(Ipv4Addr, u16, ProbeProto)]) -> Vec<Probe> {
        let srcs = self.plan.client_sources();
        let mut out = Vec::new();
        let mut sport = self.rng.random_range(20000..21000u16);
        for &(dst, dport, proto) in targets.iter() {
            // One probe from each client link, so source ranges and cluster-CIDR masquerade
            // decisions differ between them.
            for link in 0..self.plan.client_links.len() {
                let cands: Vec<_> = srcs
                    .iter()
                    .filter(|(_, i)| *i == self.plan.client_links[link].node_iface)
                    .copied()
                    .collect();
                let (src, in_iface) = self.pick(&cands);
                sport += 1 + self.rng.random_range(0..7u16);
                out.push(Probe {
                    src,
                    in_iface,
                    local_origin: false,
                    dst,
                    proto,
                    sport,
                    dport,
                    udp_payload: 8,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_case_and_different_indexes_differ() {
        let plan = LabPlan::standard();
        for kind in [
            CaseKind::Deterministic,
            CaseKind::Statistic,
            CaseKind::KubeLike,
        ] {
            let a = random_case(7, 3, kind, &plan);
            let b = random_case(7, 3, kind, &plan);
            assert_eq!(a.text, b.text);
            assert_eq!(a.probes, b.probes);
            let c = random_case(7, 4, kind, &plan);
            assert_ne!(a.text, c.text, "{kind:?}");
        }
    }

    #[test]
    fn probes_have_distinct_source_ports_and_known_sources() {
        let plan = LabPlan::standard();
        let srcs = plan.client_sources();
        for i in 0..200 {
            for kind in [
                CaseKind::Deterministic,
                CaseKind::Statistic,
                CaseKind::KubeLike,
            ] {
                let c = random_case(1, i, kind, &plan);
                let mut seen = BTreeSet::new();
                for p in &c.probes {
                    assert!(
                        seen.insert(p.sport),
                        "{}: duplicate sport {}",
                        c.name,
                        p.sport
                    );
                    assert!(
                        srcs.contains(&(p.src, p.in_iface))
                            || (p.local_origin && plan.node_addrs().contains(&p.src))
                    );
                }
            }
        }
    }

    #[test]
    fn targets_stay_in_their_tables_and_hooks() {
        let plan = LabPlan::standard();
        for i in 0..300 {
            for kind in [
                CaseKind::Deterministic,
                CaseKind::Statistic,
                CaseKind::KubeLike,
            ] {
                let c = random_case(99, i, kind, &plan);
                let mut table = "";
                for line in c.text.lines() {
                    if let Some(t) = line.strip_prefix('*') {
                        table = t;
                    }
                    if !line.starts_with("-A ") {
                        continue;
                    }
                    let chain = line.split_whitespace().nth(1).unwrap_or("");
                    if line.contains("-j DNAT") || line.contains("-j REDIRECT") {
                        assert_eq!(table, "nat", "{line}");
                        assert!(!chain.contains("POST") && chain != "POSTROUTING", "{line}");
                    }
                    if line.contains("-j MASQUERADE") || line.contains("-j SNAT") {
                        assert_eq!(table, "nat", "{line}");
                        assert!(!chain.contains("PRE"), "{line}");
                    }
                    if line.contains("-j REJECT") {
                        assert_eq!(table, "filter", "{line}");
                    }
                    if line.contains("-j DROP") {
                        assert_ne!(table, "nat", "{line}");
                    }
                    if line.contains("tcp-reset") || line.contains("--to-ports") {
                        assert!(line.contains("-p tcp") || line.contains("-p udp"), "{line}");
                        assert!(!line.contains("! -p"), "{line}");
                    }
                    if line.contains("--to-destination") && line.contains(':') {
                        let to = line.rsplit("--to-destination ").next().unwrap_or("");
                        if to.contains(':') {
                            assert!(line.contains("-p tcp") || line.contains("-p udp"), "{line}");
                        }
                    }
                }
                if kind == CaseKind::Deterministic {
                    assert!(!c.text.contains("statistic"), "{}", c.name);
                }
            }
        }
    }

    #[test]
    fn statistic_cases_usually_contain_statistic() {
        let plan = LabPlan::standard();
        let n = (0..50)
            .filter(|&i| {
                random_case(5, i, CaseKind::Statistic, &plan)
                    .text
                    .contains("-m statistic")
            })
            .count();
        assert!(n > 40, "{n}");
    }

    #[test]
    fn kube_like_has_the_kube_proxy_shape() {
        let plan = LabPlan::standard();
        let c = random_case(11, 0, CaseKind::KubeLike, &plan);
        for needle in [
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
            "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
            "-j MASQUERADE --random-fully",
        ] {
            assert!(c.text.contains(needle), "missing {needle}\n{}", c.text);
        }
    }
}
