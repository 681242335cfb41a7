//! nftables: read `nft list ruleset` text and `nft -f` transaction text (`add table/chain/
//! rule/set/map/element ...`, as knftables writes it for kube-proxy's nftables mode) into a
//! typed model, and trace the first packet of a connection through it as the kernel would.
//!
//! * [`NftRuleset::parse`] reads the text; malformed text is a [`ParseError`] with
//!   file:line:column, expressions kubepath does not model are kept as opaque statements with
//!   a [`Diagnostic`] (a packet that reaches one is UNKNOWN, naming it).
//! * [`trace_nft`] walks the base chains of every table whose family sees the packet (`ip`,
//!   `ip6`, `inet`) hook by hook, ordered by priority, and returns the same [`Trace`] as the
//!   iptables engine.
//!
//! [`ParseError`]: crate::ParseError
//! [`Diagnostic`]: crate::Diagnostic
//! [`Trace`]: crate::Trace

mod eval;
mod json;
mod lex;
mod parse;

#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use crate::types::SourceRef;

pub use eval::trace_nft;

/// An nftables address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NftFamily {
    /// `ip`: IPv4.
    Ip,
    /// `ip6`: IPv6.
    Ip6,
    /// `inet`: both.
    Inet,
    /// `arp` (not traced).
    Arp,
    /// `bridge` (not traced).
    Bridge,
    /// `netdev` (not traced).
    Netdev,
}

impl NftFamily {
    pub(crate) fn parse(s: &str) -> Option<NftFamily> {
        Some(match s {
            "ip" => NftFamily::Ip,
            "ip6" => NftFamily::Ip6,
            "inet" => NftFamily::Inet,
            "arp" => NftFamily::Arp,
            "bridge" => NftFamily::Bridge,
            "netdev" => NftFamily::Netdev,
            _ => return None,
        })
    }

    /// The family's name as nft writes it.
    pub fn name(self) -> &'static str {
        match self {
            NftFamily::Ip => "ip",
            NftFamily::Ip6 => "ip6",
            NftFamily::Inet => "inet",
            NftFamily::Arp => "arp",
            NftFamily::Bridge => "bridge",
            NftFamily::Netdev => "netdev",
        }
    }
}

impl fmt::Display for NftFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A base chain's hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NftHook {
    /// `prerouting`.
    Prerouting,
    /// `input`.
    Input,
    /// `forward`.
    Forward,
    /// `output`.
    Output,
    /// `postrouting`.
    Postrouting,
    /// `ingress` / `egress` (netdev; not traced).
    Other,
}

impl NftHook {
    pub(crate) fn parse(s: &str) -> Option<NftHook> {
        Some(match s {
            "prerouting" => NftHook::Prerouting,
            "input" => NftHook::Input,
            "forward" => NftHook::Forward,
            "output" => NftHook::Output,
            "postrouting" => NftHook::Postrouting,
            "ingress" | "egress" => NftHook::Other,
            _ => return None,
        })
    }

    /// The hook's name.
    pub fn name(self) -> &'static str {
        match self {
            NftHook::Prerouting => "prerouting",
            NftHook::Input => "input",
            NftHook::Forward => "forward",
            NftHook::Output => "output",
            NftHook::Postrouting => "postrouting",
            NftHook::Other => "ingress",
        }
    }
}

/// A base chain's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainType {
    /// `filter`.
    Filter,
    /// `nat`: first packet of a connection only; run at the nat core's fixed priority.
    Nat,
    /// `route`: like filter; in output a changed mark or address reroutes the packet.
    Route,
}

/// Type, hook, priority and policy of a base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseChain {
    /// `type`.
    pub kind: ChainType,
    /// `hook`.
    pub hook: NftHook,
    /// `priority`, numeric (symbolic names resolved: raw -300, mangle -150, dstnat -100,
    /// filter 0, security 50, srcnat 100).
    pub priority: i32,
    /// `policy drop` (else accept).
    pub policy_drop: bool,
}

/// A chain.
#[derive(Clone, Debug)]
pub struct NftChain {
    /// Name (may contain `/`).
    pub name: String,
    /// For a base chain: type, hook, priority, policy.
    pub base: Option<BaseChain>,
    /// Rules in order.
    pub rules: Vec<NftRule>,
    /// Where the chain was declared.
    pub source: SourceRef,
    /// When the chain was created, counted over the whole ruleset (nft registers a base
    /// chain's hook when the chain is added, in transaction order): among base chains of equal
    /// priority on one hook the kernel runs the one registered later first.
    pub seq: u64,
}

/// A rule: statements evaluated left to right.
#[derive(Clone, Debug)]
pub struct NftRule {
    /// The statements.
    pub stmts: Vec<Stmt>,
    /// Where the rule was read.
    pub source: SourceRef,
    /// The column of the rule's first token.
    pub column: u32,
    /// The rule as written (without `add rule FAMILY TABLE CHAIN`); for a rule read from
    /// `nft -j` JSON, as `nft list ruleset` prints it.
    pub text: String,
    /// The rule's handle, when the input gives it (`nft -j list ruleset` does, as `nft -a
    /// list ruleset` prints it): with [`NftRule::column`] it finds the rule in JSON printed
    /// on one line.
    pub handle: Option<u64>,
}

/// A data type of a set key, a map value or an expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `ipv4_addr`.
    Ipv4,
    /// `ipv6_addr`.
    Ipv6,
    /// `inet_proto`.
    Proto,
    /// `inet_service`.
    Service,
    /// `mark`.
    Mark,
    /// `ifname`.
    Ifname,
    /// `ct_state`.
    CtState,
    /// `tcp_flag`.
    TcpFlags,
    /// `fib_addrtype`.
    FibAddrType,
    /// `verdict`.
    Verdict,
    /// `integer` and other numeric types.
    Integer,
    /// `nf_proto` (`ipv4`, `ipv6`).
    NfProto,
    /// Anything else (kept by name; its values are kept as written).
    Other(String),
}

impl DataType {
    pub(crate) fn parse(s: &str) -> DataType {
        match s {
            "ipv4_addr" => DataType::Ipv4,
            "ipv6_addr" => DataType::Ipv6,
            "inet_proto" => DataType::Proto,
            "inet_service" => DataType::Service,
            "mark" => DataType::Mark,
            "ifname" => DataType::Ifname,
            "ct_state" => DataType::CtState,
            "tcp_flag" => DataType::TcpFlags,
            "fib_addrtype" => DataType::FibAddrType,
            "verdict" => DataType::Verdict,
            "integer" | "ifindex" | "iface_index" => DataType::Integer,
            "nf_proto" => DataType::NfProto,
            other => DataType::Other(other.to_string()),
        }
    }
}

/// One component of a set element or a compared value: a numeric interval (a single value,
/// a prefix or a range) or a string (an interface name, `*` at the end a wildcard).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Atom {
    /// `lo..=hi` (addresses as integers, IPv4 in the low 32 bits).
    Range(u128, u128),
    /// A string value.
    Str(String),
}

/// A verdict statement or a verdict map's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NftVerdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `continue`.
    Continue,
    /// `return`.
    Return,
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
}

impl fmt::Display for NftVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NftVerdict::Accept => f.write_str("accept"),
            NftVerdict::Drop => f.write_str("drop"),
            NftVerdict::Continue => f.write_str("continue"),
            NftVerdict::Return => f.write_str("return"),
            NftVerdict::Jump(c) => write!(f, "jump {c}"),
            NftVerdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// A map element's value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MapValue {
    /// A verdict (verdict maps, `vmap`).
    Verdict(NftVerdict),
    /// Data (e.g. an address for `dnat to ... map`).
    Data(Vec<Atom>),
}

/// A set or map element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    /// The key, one atom per concatenated component.
    pub key: Vec<Atom>,
    /// The value (maps).
    pub value: Option<MapValue>,
    /// `comment "..."`.
    pub comment: Option<String>,
}

/// A named or anonymous set or map.
#[derive(Clone, Debug)]
pub struct NftSet {
    /// Name (`None` for an anonymous set written in a rule).
    pub name: Option<String>,
    /// Key type, one per concatenated component.
    pub key: Vec<DataType>,
    /// Value type for a map.
    pub data: Option<DataType>,
    /// `flags` (`interval`, `dynamic`, `timeout`, `constant`, ...).
    pub flags: Vec<String>,
    /// Elements.
    pub elements: Vec<Element>,
    /// Where the set was declared.
    pub source: Option<SourceRef>,
}

impl NftSet {
    pub(crate) fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// A packet field, meta key, conntrack key or computed value a rule reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `ip saddr` / `ip6 saddr`.
    Saddr {
        /// IPv6 (`ip6`).
        v6: bool,
    },
    /// `ip daddr` / `ip6 daddr`.
    Daddr {
        /// IPv6 (`ip6`).
        v6: bool,
    },
    /// `ip protocol` / `ip6 nexthdr` / `meta l4proto`; `nfproto` set for the first two.
    L4proto {
        /// The family the header implies (`ip protocol`: IPv4), if any.
        v6: Option<bool>,
    },
    /// `th sport` / `tcp sport` ...: `proto` set when the header names a protocol.
    Sport {
        /// `tcp`/`udp`/`sctp` (its number), `None` for `th`.
        proto: Option<u8>,
    },
    /// `th dport` / `tcp dport` ...
    Dport {
        /// `tcp`/`udp`/`sctp` (its number), `None` for `th`.
        proto: Option<u8>,
    },
    /// `meta mark` / `mark`.
    Mark,
    /// `ct mark`.
    CtMark,
    /// `ct state`.
    CtState,
    /// `tcp flags` (only TCP packets: the rule carries nft's `meta l4proto tcp` dependency).
    TcpFlags,
    /// `iifname` / `meta iifname`.
    Iifname,
    /// `oifname` / `meta oifname`.
    Oifname,
    /// `meta nfproto`.
    NfProto,
    /// `ip version` / `ip6 version`.
    IpVersion {
        /// `ip6`.
        v6: bool,
    },
    /// `ct direction` (`original` / `reply`).
    CtDirection,
    /// `fib saddr type` / `fib daddr type`, optionally `. iif` / `. oif`.
    FibType {
        /// `daddr` (else `saddr`).
        daddr: bool,
        /// `. iif` (Some(false)) / `. oif` (Some(true)): only the addresses of the packet's
        /// incoming / outgoing interface count as local (`nft_fib4_eval_type` passes the
        /// device to `inet_dev_addr_type`, as `-m addrtype --limit-iface-in/out` does;
        /// iptables-nft translates Calico's `--limit-iface-out` to `fib saddr . oif type`).
        dev_out: Option<bool>,
    },
    /// `numgen random|inc mod N [offset K]`.
    Numgen {
        /// `inc` (round robin) rather than `random`.
        inc: bool,
        /// Modulus.
        modulus: u32,
        /// Offset.
        offset: u32,
    },
    /// `a . b . c`.
    Concat(Vec<Expr>),
    /// `EXPR & v`, `EXPR | v`, `EXPR ^ v` (marks).
    Bitwise(Box<Expr>, BitOp, u32),
    /// A constant (`meta mark set 0x1`).
    Const(u32),
    /// `meta random` (iptables-nft writes `-m statistic --mode random` as
    /// `meta random & 2147483647 < T`: probability T / 2^31).
    Random,
    /// An expression kubepath does not model, as written.
    Opaque(String),
}

/// A bitwise operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOp {
    /// `&` / `and`.
    And,
    /// `|` / `or`.
    Or,
    /// `^` / `xor`.
    Xor,
}

/// A relational operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// Implicit or `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `>`.
    Gt,
    /// `<=`.
    Le,
    /// `>=`.
    Ge,
}

/// A set a rule refers to: named (`@name`) or written in the rule.
#[derive(Clone, Debug)]
pub enum SetRef {
    /// `@name`.
    Named(String),
    /// `{ ... }`.
    Anon(Box<NftSet>),
}

/// NAT statement details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatSpec {
    /// Address range (integers), `None` when only a port is given.
    pub addr: Option<(u128, u128)>,
    /// IPv6 address.
    pub v6: bool,
    /// Port range.
    pub port: Option<(u16, u16)>,
    /// `random`, `fully-random`, `persistent` flags as written.
    pub flags: Vec<String>,
}

/// A statement of a rule.
#[derive(Clone, Debug)]
pub enum Stmt {
    /// `EXPR [op] VALUE`.
    Cmp {
        /// Left side.
        left: Expr,
        /// Operator.
        op: CmpOp,
        /// Right side: one atom per concatenated component; for flags (`ct state a,b`) the
        /// ORed bitmask.
        right: Vec<Atom>,
    },
    /// `EXPR [!=] @set` / `EXPR [!=] { ... }`.
    Lookup {
        /// Key.
        left: Expr,
        /// Set.
        set: SetRef,
        /// `!=`.
        neg: bool,
    },
    /// `EXPR vmap @map` / `EXPR vmap { ... }`.
    Vmap {
        /// Key.
        key: Expr,
        /// Map.
        map: SetRef,
    },
    /// `meta mark set ...` / `ct mark set ...`.
    SetMark {
        /// `ct mark` (else `meta mark`).
        ct: bool,
        /// The value.
        value: Expr,
    },
    /// `update @set { EXPR }` / `add @set { EXPR }`.
    SetUpdate {
        /// Set name.
        set: String,
        /// Key.
        key: Expr,
    },
    /// A verdict.
    Verdict(NftVerdict),
    /// `dnat [ip|ip6] to ...`.
    Dnat(NatSpec),
    /// `snat [ip|ip6] to ...`.
    Snat(NatSpec),
    /// `masquerade [to :PORT] [fully-random|random|persistent]`.
    Masquerade(NatSpec),
    /// `redirect [to :PORT]`.
    Redirect(Option<(u16, u16)>),
    /// `reject [with ...]`: the kind as iptables names it.
    Reject(String),
    /// `notrack`.
    Notrack,
    /// `counter`, `log`, `comment` ...: no effect on the packet.
    NoEffect(&'static str),
    /// `limit rate [over] ...` (`over`: matches when exceeded).
    Limit {
        /// `over`.
        over: bool,
        /// As written.
        text: String,
    },
    /// Something kubepath does not model, as written.
    Opaque(String),
}

/// A table.
#[derive(Clone, Debug)]
pub struct NftTable {
    /// Family.
    pub family: NftFamily,
    /// Name.
    pub name: String,
    /// Chains in declaration order.
    pub chains: Vec<NftChain>,
    /// Named sets and maps in declaration order.
    pub sets: Vec<NftSet>,
    pub(crate) chain_ix: HashMap<String, usize>,
    pub(crate) set_ix: HashMap<String, usize>,
}

impl NftTable {
    /// The chain named `name`.
    pub fn chain(&self, name: &str) -> Option<&NftChain> {
        self.chain_ix.get(name).map(|&i| &self.chains[i])
    }

    /// The set or map named `name`.
    pub fn set(&self, name: &str) -> Option<&NftSet> {
        self.set_ix.get(name).map(|&i| &self.sets[i])
    }
}

/// An nftables ruleset: tables of all families.
#[derive(Clone, Debug, Default)]
pub struct NftRuleset {
    /// Tables in declaration order.
    pub tables: Vec<NftTable>,
    /// The next chain's [`NftChain::seq`].
    pub(crate) next_seq: u64,
}

impl NftRuleset {
    /// An empty ruleset.
    pub fn new() -> NftRuleset {
        NftRuleset::default()
    }

    /// Whether `text` looks like an nft ruleset: nft text (a `table FAMILY NAME {` block, or
    /// `add table` / `add chain` / `add rule` ... lines: the first statement that is not a
    /// comment or blank), or libnftables JSON (`nft -j list ruleset`: `{` and then the
    /// `"nftables"` property). The first line or two of a large file are enough.
    pub fn sniff(text: &str) -> bool {
        if json::is_json(text) {
            return json::sniff(text);
        }
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut w = l.split_whitespace();
            let first = w.next().unwrap_or("");
            return match first {
                "table" => l.ends_with('{') || l.contains(" {"),
                "add" | "create" | "insert" => matches!(
                    w.next(),
                    Some("table" | "chain" | "rule" | "set" | "map" | "element")
                ),
                "flush" => matches!(w.next(), Some("ruleset" | "table" | "chain")),
                _ => false,
            };
        }
        false
    }

    /// Parse an nft ruleset read from `file`: nft text (`nft list ruleset` output or an `nft
    /// -f` file) or libnftables JSON (`nft -j list ruleset` output, or JSON commands), told
    /// by content (JSON starts with `{`, which nft text never does).
    pub fn parse(
        file: &str,
        text: &str,
    ) -> Result<(NftRuleset, Vec<crate::Diagnostic>), crate::ParseError> {
        let mut rs = NftRuleset::new();
        let d = rs.add_text(file, text)?;
        Ok((rs, d))
    }

    /// Add the commands of another file (several files apply in order, as `nft -f` would);
    /// nft text or JSON, told by content as [`NftRuleset::parse`] does.
    pub fn add_text(
        &mut self,
        file: &str,
        text: &str,
    ) -> Result<Vec<crate::Diagnostic>, crate::ParseError> {
        if json::is_json(text) {
            json::parse_into(self, file, text)
        } else {
            parse::parse_into(self, file, text)
        }
    }

    /// Parse libnftables JSON (`nft -j list ruleset` output, or a JSON command list) read
    /// from `file` into the model the text reader gives for `nft list ruleset`: the same
    /// statements, and each rule's [`NftRule::text`] as `nft list ruleset` prints it.
    pub fn parse_json(
        file: &str,
        text: &str,
    ) -> Result<(NftRuleset, Vec<crate::Diagnostic>), crate::ParseError> {
        let mut rs = NftRuleset::new();
        let d = json::parse_into(&mut rs, file, text)?;
        Ok((rs, d))
    }

    /// The tables of `other` that this ruleset also holds (same family and name) with other
    /// contents: chains (by name: base chain settings, rules in order by their text with
    /// blanks made one) or sets and maps (by name: types, flags, and elements in any order).
    /// Two captures of one node that differ here were taken at different moments or of
    /// different nodes.
    pub fn tables_differing_from(&self, other: &NftRuleset) -> Vec<(NftFamily, String)> {
        other
            .tables
            .iter()
            .filter_map(|b| {
                let a = self.table(b.family, &b.name)?;
                let same = a.chains.len() == b.chains.len()
                    && a.sets.len() == b.sets.len()
                    && b.chains.iter().all(|cb| {
                        a.chain(&cb.name)
                            .is_some_and(|ca| capture_compare::same_chain(ca, cb))
                    })
                    && b.sets.iter().all(|sb| {
                        sb.name
                            .as_deref()
                            .and_then(|n| a.set(n))
                            .is_some_and(|sa| capture_compare::same_set(sa, sb))
                    });
                (!same).then(|| (b.family, b.name.clone()))
            })
            .collect()
    }

    /// The table of `family` named `name`.
    pub fn table(&self, family: NftFamily, name: &str) -> Option<&NftTable> {
        self.tables
            .iter()
            .find(|t| t.family == family && t.name == name)
    }

    /// Statements iptables-nft's compat expressions became (`xt match NAME`, opaque): `nft
    /// -j` gives them by name only, where the text listing shows most of them translated.
    pub fn compat_statements(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| &t.chains)
            .flat_map(|c| &c.rules)
            .flat_map(|r| &r.stmts)
            .filter(|s| matches!(s, Stmt::Opaque(x) if x.starts_with("xt ")))
            .count()
    }

    /// Number of rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| &t.chains)
            .map(|c| c.rules.len())
            .sum()
    }
}

/// Whether two captures of one node's ruleset (the text listing and `nft -j`, or two of
/// either) show the same chains and sets: [`NftRuleset::tables_differing_from`].
mod capture_compare {
    use super::{NftChain, NftSet};

    // What a rule does, as two captures of one moment both show it: counter values move
    // with every packet, comments change nothing, and iptables-nft's compat expressions
    // are printed translated by `nft list ruleset` but by name only by `nft -j` (review
    // 13), so they are left out of the comparison.
    fn norm(s: &str) -> String {
        let mut out: Vec<&str> = Vec::new();
        let w: Vec<&str> = s.split_whitespace().collect();
        let mut i = 0;
        while i < w.len() {
            match w[i] {
                "counter" if w.get(i + 1) == Some(&"packets") => {
                    out.push("counter");
                    i += 5; // counter packets N bytes M
                }
                "xt" if matches!(w.get(i + 1), Some(&"match") | Some(&"target")) => i += 3,
                "comment" if w.get(i + 1).is_some_and(|x| x.starts_with('"')) => {
                    // The quoted words up to the closing quote.
                    let first = w[i + 1];
                    i += 2;
                    let mut closed = first.len() >= 2 && first.ends_with('"');
                    while !closed && i < w.len() {
                        closed = w[i].ends_with('"');
                        i += 1;
                    }
                }
                x => {
                    out.push(x);
                    i += 1;
                }
            }
        }
        out.join(" ")
    }
    // `nft -j` names iptables-nft's compat expressions (`xt match multiport`) where the
    // text listing shows their translation (`tcp dport 22`): such a name stands for one
    // statement of the kind its extension translates to (review 14: for nothing else),
    // and the rest of the two rules must be the same.
    fn xt_names(s: &str) -> Vec<String> {
        let w: Vec<&str> = s.split_whitespace().collect();
        w.windows(3)
            .filter(|x| x[0] == "xt" && (x[1] == "match" || x[1] == "target"))
            .map(|x| format!("{} {}", x[1], x[2].trim_matches('"')))
            .collect()
    }
    /// The first words of the statements an extension's translation starts with.
    fn translated_as(xt: &str) -> &'static [&'static str] {
        match xt {
            "match multiport" => &["tcp", "udp", "sctp", "th"],
            "match conntrack" | "match state" => &["ct"],
            "match addrtype" => &["fib"],
            "match statistic" => &["meta random", "numgen"],
            "match mark" => &["meta mark", "mark"],
            "match limit" => &["limit"],
            "target MASQUERADE" => &["masquerade"],
            "target DNAT" => &["dnat"],
            "target SNAT" => &["snat"],
            "target REDIRECT" => &["redirect"],
            "target REJECT" => &["reject"],
            "target MARK" => &["meta mark set", "mark set"],
            "target CONNMARK" => &["ct mark"],
            _ => &[],
        }
    }
    const STARTS: &[&str] = &[
        "meta",
        "ct",
        "ip",
        "ip6",
        "tcp",
        "udp",
        "sctp",
        "th",
        "fib",
        "counter",
        "accept",
        "drop",
        "jump",
        "goto",
        "return",
        "queue",
        "masquerade",
        "dnat",
        "snat",
        "redirect",
        "reject",
        "mark",
        "iifname",
        "oifname",
        "iif",
        "oif",
        "numgen",
        "log",
        "limit",
        "notrack",
        "icmp",
        "icmpv6",
        "ether",
        "vlan",
        "update",
        "add",
    ];
    fn statements(norm: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut prev = "";
        for t in norm.split(' ').filter(|t| !t.is_empty()) {
            // A key or value (`meta mark`, `meta l4proto tcp`, `ip protocol udp`, `. th dport`)
            // is no start.
            let value = matches!(
                prev,
                "meta"
                    | "ct"
                    | "l4proto"
                    | "protocol"
                    | "nexthdr"
                    | "state"
                    | "status"
                    | "direction"
                    | "."
                    | "=="
                    | "!="
                    | "{"
                    | ","
                    | "set"
            ) || prev.ends_with(',');
            prev = t;
            match out.last_mut() {
                Some(last) if !STARTS.contains(&t) || value => {
                    last.push(' ');
                    last.push_str(t);
                }
                _ => out.push(t.to_string()),
            }
        }
        out
    }
    fn same_rule(x: &str, y: &str) -> bool {
        let (nx, ny) = (norm(x), norm(y));
        let (xn, yn) = (xt_names(x), xt_names(y));
        let translatable = |v: &[String]| v.iter().filter(|n| !translated_as(n).is_empty()).count();
        if translatable(&xn) == translatable(&yn) {
            // The same compat names on both sides (or none): the same words.
            return nx == ny;
        }
        let (names, named, full) = if translatable(&xn) >= translatable(&yn) {
            (xn, nx, ny)
        } else {
            (yn, ny, nx)
        };
        let mut rest = statements(&full);
        for n in &names {
            // `-m tcp` / `-m udp` without port options translate to nothing beyond the
            // protocol match both sides show.
            let optional = matches!(n.as_str(), "match tcp" | "match udp" | "match sctp");
            let kinds: &[&str] = if optional {
                &["tcp", "udp", "sctp", "th"]
            } else {
                translated_as(n)
            };
            if kinds.is_empty() {
                continue;
            }
            match rest.iter().position(|st| {
                kinds
                    .iter()
                    .any(|k| st == k || st.starts_with(&format!("{k} ")))
            }) {
                Some(i) => {
                    rest.remove(i);
                }
                None if optional => {}
                None => return false,
            }
        }
        rest == statements(&named)
    }
    pub(super) fn same_chain(a: &NftChain, b: &NftChain) -> bool {
        a.base == b.base
            && a.rules.len() == b.rules.len()
            && a.rules
                .iter()
                .zip(&b.rules)
                .all(|(x, y)| same_rule(&x.text, &y.text))
    }
    pub(super) fn same_set(a: &NftSet, b: &NftSet) -> bool {
        let elems = |s: &NftSet| {
            let mut v: Vec<String> = s.elements.iter().map(|e| format!("{e:?}")).collect();
            v.sort_unstable();
            v
        };
        // `nft -j` (1.0.6) omits the `dynamic` flag that the text listing shows.
        let flags = |s: &NftSet| {
            let mut f: Vec<String> = s
                .flags
                .iter()
                .filter(|f| f.as_str() != "dynamic")
                .cloned()
                .collect();
            f.sort();
            f
        };
        a.key == b.key
            && a.data == b.data
            && flags(a) == flags(b)
            && a.elements.len() == b.elements.len()
            && elems(a) == elems(b)
    }
}
