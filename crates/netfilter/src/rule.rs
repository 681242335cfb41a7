//! Internal representation of chains, rules, matches and targets.

use std::sync::Arc;

use crate::types::{Table, Verdict};

/// An address with an arbitrary mask (iptables accepts non-contiguous netmasks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub addr: u128,
    pub mask: u128,
    pub v6: bool,
}

impl Cidr {
    pub fn contains(&self, a: u128, v6: bool) -> bool {
        v6 == self.v6 && (a & self.mask) == self.addr
    }
    pub fn is_host(&self) -> bool {
        self.mask == if self.v6 { u128::MAX } else { u32::MAX as u128 }
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

/// Interface pattern: exact, or prefix with `+`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IfacePat {
    pub name: Box<str>,
    pub wildcard: bool,
}

impl IfacePat {
    pub fn matches(&self, iface: &str) -> bool {
        if self.wildcard {
            iface.starts_with(&*self.name)
        } else {
            iface == &*self.name
        }
    }
}

/// addrtype types (bit flags, as in xt_addrtype.h).
pub(crate) mod addrtype {
    pub const UNSPEC: u16 = 1 << 0;
    pub const UNICAST: u16 = 1 << 1;
    pub const LOCAL: u16 = 1 << 2;
    pub const BROADCAST: u16 = 1 << 3;
    pub const ANYCAST: u16 = 1 << 4;
    pub const MULTICAST: u16 = 1 << 5;
    pub const BLACKHOLE: u16 = 1 << 6;
    pub const UNREACHABLE: u16 = 1 << 7;
    pub const PROHIBIT: u16 = 1 << 8;
    pub const THROW: u16 = 1 << 9;
    pub const NAT: u16 = 1 << 10;
    pub const XRESOLVE: u16 = 1 << 11;

    pub fn parse(s: &str) -> Option<u16> {
        Some(match s {
            "UNSPEC" => UNSPEC,
            "UNICAST" => UNICAST,
            "LOCAL" => LOCAL,
            "BROADCAST" => BROADCAST,
            "ANYCAST" => ANYCAST,
            "MULTICAST" => MULTICAST,
            "BLACKHOLE" => BLACKHOLE,
            "UNREACHABLE" => UNREACHABLE,
            "PROHIBIT" => PROHIBIT,
            "THROW" => THROW,
            "NAT" => NAT,
            "XRESOLVE" => XRESOLVE,
            _ => return None,
        })
    }
}

/// conntrack --ctstate bits.
pub(crate) mod ctstate {
    pub const INVALID: u8 = 1;
    pub const NEW: u8 = 2;
    pub const ESTABLISHED: u8 = 4;
    pub const RELATED: u8 = 8;
    pub const UNTRACKED: u8 = 16;
    pub const SNAT: u8 = 32;
    pub const DNAT: u8 = 64;

    pub fn parse(s: &str) -> Option<u8> {
        Some(match s {
            "INVALID" => INVALID,
            "NEW" => NEW,
            "ESTABLISHED" => ESTABLISHED,
            "RELATED" => RELATED,
            "UNTRACKED" => UNTRACKED,
            "SNAT" => SNAT,
            "DNAT" => DNAT,
            _ => return None,
        })
    }
}

/// conntrack --ctstatus bits.
pub(crate) mod ctstatus {
    // Kernel IPS_* bits as xt_conntrack tests them (`status_mask & ct->status`); libxt_conntrack
    // parses NONE as 0, so `--ctstatus NONE` alone never matches (and `! --ctstatus NONE` always).
    pub const NONE: u8 = 0;
    pub const EXPECTED: u8 = 1;
    pub const SEEN_REPLY: u8 = 2;
    pub const ASSURED: u8 = 4;
    pub const CONFIRMED: u8 = 8;

    pub fn parse(s: &str) -> Option<u8> {
        Some(match s {
            "NONE" => NONE,
            "EXPECTED" => EXPECTED,
            "SEEN_REPLY" => SEEN_REPLY,
            "ASSURED" => ASSURED,
            "CONFIRMED" => CONFIRMED,
            _ => return None,
        })
    }
}

/// Which conntrack tuple field a `--ctorig*/--ctrepl*` option tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CtField {
    OrigSrc,
    OrigDst,
    ReplSrc,
    ReplDst,
}

/// What `-m set --match-set NAME flags` looks at: per dimension, src (true) or dst (false).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SetRef {
    pub name: Box<str>,
    pub dirs: Vec<bool>,
    /// `--return-nomatch`: an element added with `nomatch` makes the match true.
    pub return_nomatch: bool,
}

/// One match condition. `neg` inverts it (`!`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Match {
    Src(Cidr, bool),
    Dst(Cidr, bool),
    /// Protocol number; `neg`.
    Proto(u8, bool),
    InIface(IfacePat, bool),
    OutIface(IfacePat, bool),
    /// `-f`: second and further fragments (never the first packet).
    Fragment(bool),
    /// tcp/udp/sctp --sport/--dport (the protocol is checked too).
    Sport(PortRange, bool),
    Dport(PortRange, bool),
    /// multiport: (source?, dest?) lists; `neg`.
    Multiport {
        src: bool,
        dst: bool,
        ports: Box<[PortRange]>,
        neg: bool,
    },
    /// --tcp-flags mask comp (`--syn` is `SYN,RST,ACK,FIN SYN`).
    TcpFlags {
        mask: u8,
        comp: u8,
        neg: bool,
    },
    /// --icmp-type / --icmpv6-type: type, optional code, `any` when type is None.
    Icmp {
        v6: bool,
        ty: Option<u8>,
        code: Option<u8>,
        neg: bool,
    },
    AddrType {
        src: Option<(u16, bool)>,
        dst: Option<(u16, bool)>,
        limit_in: bool,
        limit_out: bool,
    },
    Mark {
        value: u32,
        mask: u32,
        neg: bool,
    },
    ConnMark {
        value: u32,
        mask: u32,
        neg: bool,
    },
    CtState(u8, bool),
    CtStatus(u8, bool),
    CtProto(u8, bool),
    CtAddr(CtField, Cidr, bool),
    /// --ctorigsrcport etc.: (field, range, neg); field as for addresses.
    CtPort(CtField, PortRange, bool),
    /// Several options of one `-m conntrack` instance: they are tested together (without a
    /// connection, xt_conntrack returns whether the instance tested --ctstate).
    CtGroup(Box<[Match]>),
    /// --ctdir ORIGINAL (true) / REPLY (false).
    CtDir(bool),
    /// --ctexpire: no expiry for an unconfirmed connection; matches when the range includes 0.
    CtExpire(PortRangeU32, bool),
    /// statistic random: probability quantized as the kernel does; `nth` flag for the note.
    Statistic {
        p: f64,
        neg: bool,
        nth: Option<u32>,
    },
    /// recent: --set/--remove match, --rcheck/--update do not (first packet).
    Recent {
        matches_first: bool,
        neg: bool,
    },
    /// iprange: (lo, hi, neg) for source and destination; boxed to keep `Match` small.
    IpRange(Box<IpRangeM>),
    Set(SetRef, bool),
    /// A set match with counter conditions we cannot evaluate.
    SetCounters,
    Length(PortRange, bool),
    /// limit / hashlimit: assumed under the rate (a note says so).
    Limit,
    /// physdev: the packet is assumed not bridged (a note says so).
    PhysDev {
        /// (option name, neg): each physdev condition; all are false for an unbridged packet.
        conds: Box<[(Box<str>, bool)]>,
    },
    /// IPsec policy match: --pol none/ipsec; no IPsec is modelled.
    Policy {
        ipsec: bool,
    },
    /// rpfilter: reverse-path check through the routing oracle (UNKNOWN without one).
    RpFilter {
        loose: bool,
        validmark: bool,
        accept_local: bool,
        invert: bool,
    },
    /// pkttype: unicast/broadcast/multicast from the destination address.
    PktType(u8, bool),
    /// A match whose syntax is known but whose value depends on something the engine does not
    /// model (mac, owner, socket, rpfilter, ...): evaluating it gives UNKNOWN.
    Unknowable(Box<str>),
    /// A module the parser does not know: the rule is opaque.
    Opaque(Box<str>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IpRangeM {
    pub src: Option<(u128, u128, bool)>,
    pub dst: Option<(u128, u128, bool)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortRangeU32 {
    pub lo: u32,
    pub hi: u32,
}

/// A NAT range from --to-destination / --to-source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NatRange {
    /// Inclusive address range (both None: keep the address, port-only mapping).
    pub addr: Option<(u128, u128)>,
    pub v6: bool,
    pub ports: Option<PortRange>,
    /// `--persistent` (NF_NAT_RANGE_PERSISTENT): the address hash ignores the destination.
    pub persistent: bool,
    /// `--random`/`--random-fully` (NF_NAT_RANGE_PROTO_RANDOM_ALL): the port is drawn at
    /// random within the port range, even when the original port is inside it.
    pub random: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkOp {
    /// mark = (mark & !mask) ^ value (covers set-mark, and/or/xor as libxt_MARK encodes them).
    Xset { value: u32, mask: u32 },
}

impl MarkOp {
    pub fn apply(self, mark: u32) -> u32 {
        match self {
            MarkOp::Xset { value, mask } => (mark & !mask) ^ value,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnmarkOp {
    /// ctmark = (ctmark & !mask) ^ value.
    Set { value: u32, mask: u32 },
    /// ctmark = (ctmark & !ctmask) ^ (mark & nfmask)  (shift ignored unless given).
    Save { nfmask: u32, ctmask: u32 },
    /// mark = (mark & !nfmask) ^ (ctmark & ctmask).
    Restore { nfmask: u32, ctmask: u32 },
}

/// A rule's target.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Target {
    /// No `-j`: the rule only counts.
    None,
    Accept,
    Drop,
    Reject(Box<str>),
    Return,
    Jump(u32),
    Goto(u32),
    /// A `-j NAME` / `-g NAME` not yet resolved (end of table).
    Unresolved {
        name: Box<str>,
        goto: bool,
    },
    Mark(MarkOp),
    Connmark(ConnmarkOp),
    Dnat {
        ranges: Box<[NatRange]>,
    },
    Snat {
        ranges: Box<[NatRange]>,
        random_fully: bool,
    },
    Masquerade {
        ports: Option<PortRange>,
        random_fully: bool,
    },
    Redirect {
        ports: Option<PortRange>,
    },
    /// NOTRACK or CT --notrack.
    Notrack,
    /// A target with no effect on the verdict or the packet as modelled (LOG, NFLOG, CT
    /// --zone, CLASSIFY, TCPMSS, ...): the name is kept for the trace.
    NoEffect,
    /// A target whose decision lives outside the ruleset (NFQUEUE, TPROXY ...): UNKNOWN.
    Unknowable(Box<str>),
    /// Unknown target extension: opaque rule.
    Opaque(Box<str>),
}

/// A rule in a chain.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    /// Range into [`TableData::matches`].
    pub m_start: u32,
    pub m_len: u32,
    pub target: Target,
    /// Index into [`crate::Ruleset`] file list.
    pub file: u32,
    pub line: u32,
    /// Byte range of the rule text in the file's text.
    pub text_start: u32,
    pub text_len: u32,
}

/// A chain: built-in chains have a policy.
#[derive(Clone, Debug)]
pub(crate) struct Chain {
    pub name: Arc<str>,
    pub policy: Option<Verdict>,
    /// Where the chain was declared (file index, line).
    pub decl: Option<(u32, u32)>,
    pub rules: Vec<Rule>,
    pub index: Option<Box<crate::index::ChainIndex>>,
}

/// One table's chains.
#[derive(Clone, Debug, Default)]
pub(crate) struct TableData {
    pub chains: Vec<Chain>,
    pub by_name: crate::parse::ChainMap,
    pub matches: Vec<Match>,
}

impl TableData {
    pub fn chain_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name)
    }

    /// Find or create a chain.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.by_name.get(name) {
            return id;
        }
        let id = self.chains.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.chains.push(Chain {
            name: name.clone(),
            policy: None,
            decl: None,
            rules: Vec::new(),
            index: None,
        });
        self.by_name.insert(&name, id);
        id
    }

    pub fn rule_matches(&self, r: &Rule) -> &[Match] {
        &self.matches[r.m_start as usize..(r.m_start + r.m_len) as usize]
    }
}

/// Built-in chains of a table.
pub(crate) fn builtin_chains(t: Table) -> &'static [&'static str] {
    match t {
        Table::Raw => &["PREROUTING", "OUTPUT"],
        Table::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        Table::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        Table::Filter => &["INPUT", "FORWARD", "OUTPUT"],
        Table::Security => &["INPUT", "FORWARD", "OUTPUT"],
    }
}
