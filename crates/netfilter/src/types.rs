//! Public value types: packets, environment, outcomes, errors.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Where something was read: file name and 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRef {
    /// The file name as given to the parser.
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: u32,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Address family of a ruleset (`iptables` or `ip6tables`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`iptables-save`).
    Ipv4,
    /// IPv6 (`ip6tables-save`).
    Ipv6,
}

/// An xtables table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `raw`: before connection tracking (NOTRACK, CT).
    Raw,
    /// `mangle`: packet alteration (MARK, ...).
    Mangle,
    /// `nat`: consulted for the first packet of a connection only.
    Nat,
    /// `filter`: the default table.
    Filter,
    /// `security`: SELinux marking, after filter.
    Security,
}

impl Table {
    /// All tables, in the order iptables-save prints them is not guaranteed; this is just a list.
    pub const ALL: [Table; 5] = [
        Table::Raw,
        Table::Mangle,
        Table::Nat,
        Table::Filter,
        Table::Security,
    ];

    /// The table an echoed iptables command lists: `iptables -t nat -S`, `sudo
    /// /usr/sbin/ip6tables-legacy --table=mangle -S`, `iptables -tnat -S | grep KUBE`. `None`
    /// when `cmd` runs no `iptables`/`ip6tables` program (legacy or nft) before any `|`;
    /// `Some(None)` when it names a table that does not exist; else the table, `filter`
    /// without `-t`, which is iptables' default (iptables(8), `-t, --table`: "The default
    /// table is filter"). The one reading of an echoed command, for the netfilter parser's
    /// table hint and the snapshot loader alike.
    pub fn from_command(cmd: &str) -> Option<Option<Table>> {
        const PROGRAMS: [&str; 6] = [
            "iptables",
            "ip6tables",
            "iptables-legacy",
            "ip6tables-legacy",
            "iptables-nft",
            "ip6tables-nft",
        ];
        // The command as words, with the shell's separators (`;`, `&`, `|`, `<`, `>`) as words
        // of their own (`cd /;iptables`, `true&&iptables`), quotes, parentheses and backquotes
        // taken off both ends of a word (`sh -c "iptables -t 'nat'"`, `$(iptables`).
        let mut words: Vec<&str> = Vec::new();
        for w in cmd.split_whitespace() {
            let mut rest = w;
            while let Some(i) = rest.find([';', '&', '|', '<', '>']) {
                words.push(&rest[..i]);
                words.push(&rest[i..i + 1]);
                rest = &rest[i + 1..];
            }
            words.push(rest);
        }
        let words: Vec<&str> = words
            .into_iter()
            .map(|w| w.trim_matches(['"', '\'', '(', ')', '`']))
            .filter(|w| !w.is_empty())
            .collect();
        // A prompt may be glued to the program (`root@node:~#iptables`, `node-a%iptables`), a
        // path before it (`/usr/sbin/iptables`), `$(` after the trim.
        let program = |w: &str| {
            let w = w.rsplit(['#', '$', '%', '(']).next().unwrap_or(w);
            w.rsplit('/').next().unwrap_or(w).to_string()
        };
        let is_sep = |w: &str| matches!(w, ";" | "&" | "|" | "<" | ">");
        // The first program run (review 10: a later `echo iptables ok`, a file named
        // `iptables` or a comment naming it are not commands that print the listing); its
        // arguments end at a separator or a shell comment.
        let args_of = |p: usize| -> Vec<&str> {
            words[p + 1..]
                .iter()
                .copied()
                .take_while(|w| !is_sep(w) && !w.starts_with('#'))
                .collect()
        };
        let mut runs: Vec<usize> = (0..words.len())
            .filter(|&i| !is_sep(words[i]) && PROGRAMS.contains(&program(words[i]).as_str()))
            .collect();
        // A shell comment after the first run ends the command (`iptables -t nat -S # see
        // iptables -S`); before it, `#` is a prompt's.
        if let Some(&first) = runs.first() {
            if let Some(c) = (first + 1..words.len()).find(|&i| words[i].starts_with('#')) {
                runs.retain(|&p| p < c);
            }
        }
        // Which run printed the listing that follows (reviews 10 and 11): one that lists
        // (`-S`, `--list-rules`, `-L`, `--list`; not `--version`, not a word of `echo` or `ls`)
        // and whose output is not sent to a file (`iptables -t nat -S > nat.txt; iptables
        // -S`); of those the last. Without such a run, the last listing run (its file may be
        // printed after it); without any, the first run given options, else the first run.
        let lists = |p: usize| {
            args_of(p).iter().any(|a| {
                matches!(*a, "-S" | "-L" | "--list-rules" | "--list")
                    || (a.starts_with('-')
                        && !a.starts_with("--")
                        && !a.starts_with("-t")
                        && a.len() > 2
                        && a[1..].bytes().all(|b| b.is_ascii_alphabetic())
                        && a[1..].contains(['S', 'L']))
            })
        };
        // Its standard output goes to a file: a `>` right after its arguments, not `2>`.
        let to_file = |p: usize| {
            let n = args_of(p).len();
            words.get(p + 1 + n) == Some(&">") && args_of(p).last() != Some(&"2")
        };
        let listing: Vec<usize> = runs.iter().copied().filter(|&p| lists(p)).collect();
        let prog = listing
            .iter()
            .copied()
            .rfind(|&p| !to_file(p))
            .or_else(|| listing.last().copied())
            .or_else(|| {
                runs.iter()
                    .copied()
                    .find(|&p| args_of(p).first().is_some_and(|a| a.starts_with('-')))
            })
            .or_else(|| runs.first().copied())?;
        let args = args_of(prog);
        let table = |t: &str| Table::parse(t.trim_matches(['"', '\'']));
        if let Some(i) = args.iter().position(|a| *a == "-t" || *a == "--table") {
            return Some(args.get(i + 1).and_then(|t| table(t)));
        }
        if let Some(t) = args.iter().find_map(|a| {
            a.strip_prefix("--table=").or_else(|| {
                a.strip_prefix("-t")
                    .filter(|r| !r.is_empty() && !r.starts_with('-'))
            })
        }) {
            return Some(table(t));
        }
        Some(Some(Table::Filter))
    }

    /// Parse a table name as written after `*` or `-t` (`"nat"`, `"filter"`, ...).
    pub fn parse(s: &str) -> Option<Table> {
        match s {
            "raw" => Some(Table::Raw),
            "mangle" => Some(Table::Mangle),
            "nat" => Some(Table::Nat),
            "filter" => Some(Table::Filter),
            "security" => Some(Table::Security),
            _ => None,
        }
    }

    /// The table's name as iptables writes it.
    pub fn name(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Filter => "filter",
            Table::Security => "security",
        }
    }

    pub(crate) fn idx(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The textual format of a ruleset file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `iptables-save` / `ip6tables-save`: `*table`, `:CHAIN POLICY [p:b]`, `-A ...`, `COMMIT`.
    Save,
    /// `iptables [-t TABLE] -S`: `-P CHAIN POLICY`, `-N CHAIN`, `-A ...`, no table headers.
    Rules,
}

/// A parse error: where, what was expected and what was found.
///
/// Displays as `file:line:column: expected X, found Y`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// File name as given to the parser.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters) of the offending token.
    pub column: u32,
    /// What the parser expected there.
    pub expected: String,
    /// What it found (the token, or `end of line` / `end of file`).
    pub found: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: expected {}, found {}",
            self.file, self.line, self.column, self.expected, self.found
        )
    }
}

impl std::error::Error for ParseError {}

/// A non-fatal remark from the parser, e.g. an unsupported match kept as an opaque rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub source: SourceRef,
    /// What (one sentence).
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// Layer-4 protocol of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
    /// ICMP (1).
    Icmp,
    /// ICMPv6 (58).
    Icmpv6,
    /// Any other IP protocol number.
    Other(u8),
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Other(n) => n,
        }
    }

    /// The protocol for an IP protocol number.
    pub fn from_number(n: u8) -> Proto {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            132 => Proto::Sctp,
            1 => Proto::Icmp,
            58 => Proto::Icmpv6,
            n => Proto::Other(n),
        }
    }

    /// Parse a protocol name or number as iptables accepts it (`tcp`, `udp`, `sctp`, `icmp`,
    /// `icmpv6`/`ipv6-icmp`, `6`, ...). `all` is not a protocol and gives `None`.
    pub fn parse(s: &str) -> Option<Proto> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            "icmp" => Some(Proto::Icmp),
            "icmpv6" | "ipv6-icmp" | "icmp6" => Some(Proto::Icmpv6),
            "udplite" => Some(Proto::Other(136)),
            "esp" => Some(Proto::Other(50)),
            "ah" => Some(Proto::Other(51)),
            "gre" => Some(Proto::Other(47)),
            "ipip" | "ipencap" => Some(Proto::Other(4)),
            "igmp" => Some(Proto::Other(2)),
            "vrrp" => Some(Proto::Other(112)),
            "dccp" => Some(Proto::Other(33)),
            "mh" | "ipv6-mh" => Some(Proto::Other(135)),
            _ => s.parse::<u8>().ok().map(Proto::from_number),
        }
    }

    /// Lower-case name (`tcp`, ...), or the number.
    pub fn name(self) -> String {
        match self {
            Proto::Tcp => "tcp".into(),
            Proto::Udp => "udp".into(),
            Proto::Sctp => "sctp".into(),
            Proto::Icmp => "icmp".into(),
            Proto::Icmpv6 => "icmpv6".into(),
            Proto::Other(n) => n.to_string(),
        }
    }

    pub(crate) fn has_ports(self) -> bool {
        matches!(
            self,
            Proto::Tcp | Proto::Udp | Proto::Sctp | Proto::Other(136) | Proto::Other(33)
        )
    }
}

/// Connection-tracking state of the packet as the kernel classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CtState {
    /// First packet of a connection (the default): nat tables are consulted.
    #[default]
    New,
    /// A packet of an existing connection (either direction): nat tables are skipped.
    Established,
    /// Related to an existing connection (ICMP errors, FTP data ...): nat skipped.
    Related,
    /// Conntrack could not classify it: nat skipped.
    Invalid,
    /// Not tracked (NOTRACK in raw): nat skipped.
    Untracked,
}

/// TCP flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

impl Default for TcpFlags {
    /// A connection's first TCP packet: SYN only.
    fn default() -> Self {
        TcpFlags(TcpFlags::SYN)
    }
}

/// A packet as the netfilter hooks see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Layer-4 protocol.
    pub proto: Proto,
    /// Source port (TCP/UDP/SCTP; ignored otherwise).
    pub sport: u16,
    /// Destination port (TCP/UDP/SCTP; ignored otherwise).
    pub dport: u16,
    /// ICMP type and optional code (ICMP/ICMPv6 only).
    pub icmp_type: Option<(u8, Option<u8>)>,
    /// TCP flags (default: SYN).
    pub tcp_flags: TcpFlags,
    /// Incoming interface; `None` for a locally generated packet (or when unknown: `-i`
    /// matches then give UNKNOWN unless the packet is local-origin).
    pub in_iface: Option<String>,
    /// `skb->mark` (nfmark).
    pub mark: u32,
    /// Connection mark (ctmark).
    pub ct_mark: u32,
    /// Conntrack state; `New` by default. Anything but `New` skips the nat tables.
    pub ct_state: CtState,
    /// IP total length in bytes (for `-m length`).
    pub length: u16,
}

impl Packet {
    /// A first packet with the given addresses and protocol; ports 0, TCP SYN, no marks,
    /// conntrack NEW, no incoming interface, length 60 (a SYN with options).
    pub fn new(src: IpAddr, dst: IpAddr, proto: Proto) -> Packet {
        Packet {
            src,
            dst,
            proto,
            sport: 0,
            dport: 0,
            icmp_type: if matches!(proto, Proto::Icmp) {
                Some((8, Some(0)))
            } else if matches!(proto, Proto::Icmpv6) {
                Some((128, Some(0)))
            } else {
                None
            },
            tcp_flags: TcpFlags::default(),
            in_iface: None,
            mark: 0,
            ct_mark: 0,
            ct_state: CtState::New,
            length: 60,
        }
    }

    /// A TCP SYN `src:sport -> dst:dport`.
    pub fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Packet {
        Packet {
            sport,
            dport,
            ..Packet::new(src, dst, Proto::Tcp)
        }
    }

    /// A UDP datagram `src:sport -> dst:dport`.
    pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Packet {
        Packet {
            sport,
            dport,
            length: 48,
            ..Packet::new(src, dst, Proto::Udp)
        }
    }

    /// Set the incoming interface (builder style).
    pub fn with_in_iface(mut self, iface: &str) -> Packet {
        self.in_iface = Some(iface.to_string());
        self
    }
}

/// The node's routing decision for a packet (the simulator supplies the real one from
/// `ip rule` / `ip route`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteDecision {
    /// Delivered locally (INPUT path).
    Local,
    /// Forwarded (or sent, for local-origin packets) out of an interface.
    Forward {
        /// Outgoing interface, when known (`-o` matches need it).
        out_iface: Option<String>,
        /// The preferred source address of the route / the interface address (MASQUERADE
        /// uses it).
        src_hint: Option<IpAddr>,
    },
    /// No route: the kernel drops the packet (ICMP unreachable).
    Unreachable,
    /// The routing data cannot tell whether the packet is delivered locally or forwarded
    /// (the node's policy rules were not collected, say, and its destination is one of its
    /// own addresses): the packet's fate is UNKNOWN, with this reason.
    Unknown(String),
}

/// The verdict of a branch whose routing decision the oracle could not make
/// ([`RouteDecision::Unknown`]): at the input route whether `dst` is delivered or forwarded
/// (`input`), at an output route or a reroute its route.
pub(crate) fn route_unknown(dst: IpAddr, why: &str, input: bool) -> Verdict {
    let what = if input {
        format!("whether {dst} is delivered locally or forwarded")
    } else {
        format!("the route of {dst}")
    };
    Verdict::Unknown {
        reason: format!("{what} is unknown {NO_ROUTING_DATA}: {why}"),
        rule: None,
    }
}

/// Supplies routing decisions to [`trace`](crate::trace).
pub trait RouteOracle {
    /// Route the packet as it is after nat PREROUTING (or nat OUTPUT).
    fn route(&self, pkt: &Packet) -> RouteDecision;

    /// The addresses of an interface, primary first (as `ip addr show dev IFACE` lists them);
    /// `None` when unknown. REDIRECT uses the incoming interface's first address of the
    /// family, `addrtype --limit-iface-in/out` the interface's addresses. The default knows
    /// none.
    fn iface_addrs(&self, iface: &str) -> Option<Vec<IpAddr>> {
        let _ = iface;
        None
    }

    /// The source address MASQUERADE gives a packet leaving by `iface` towards next hop
    /// `nexthop`: the kernel's `inet_select_addr(iface, nexthop, RT_SCOPE_UNIVERSE)`
    /// (net/ipv4/devinet.c): the interface's first primary address that is not host-scope
    /// and whose subnet holds `nexthop`, else its first primary non-host-scope address, else
    /// such an address of another interface (in interface order). The engine asks it for
    /// locally generated packets leaving by `lo`; `None` when it cannot be known (the trace
    /// is then UNKNOWN).
    ///
    /// The default decides from [`iface_addrs`](Self::iface_addrs) alone where prefixes do
    /// not matter: 127.0.0.0/8 addresses are taken as host-scope (as the kernel configures
    /// lo); one other IPv4 address is the answer; with several, only a `nexthop` equal to
    /// the first. Anything else (IPv6, no such address, several candidates) is `None`.
    fn select_src(&self, iface: &str, nexthop: IpAddr) -> Option<IpAddr> {
        let IpAddr::V4(_) = nexthop else {
            return None;
        };
        let cands: Vec<IpAddr> = self
            .iface_addrs(iface)?
            .into_iter()
            .filter(|a| matches!(a, IpAddr::V4(v) if !v.is_loopback()))
            .collect();
        match cands.as_slice() {
            [one] => Some(*one),
            [first, ..] if *first == nexthop => Some(*first),
            _ => None,
        }
    }
}

/// What a trace needs to know about the node besides its ruleset.
#[derive(Clone, Copy, Default)]
pub struct Env<'a> {
    /// The node's own addresses: `addrtype LOCAL` and the default routing decision.
    pub local_addrs: &'a [IpAddr],
    /// The packet is generated by a local process (OUTPUT path) rather than arriving.
    pub local_origin: bool,
    /// The node's routing; `None`: `Local` when the destination is a local address, else
    /// `Forward { out_iface: None, src_hint: None }`.
    pub router: Option<&'a dyn RouteOracle>,
    /// IP sets from `ipset save`; `None`: `-m set` matches give UNKNOWN.
    pub ipsets: Option<&'a crate::IpSets>,
    /// Tables absent from the ruleset because they were not collected (an `iptables -t nat -S`
    /// without the filter table, an `iptables-save -t filter`): a packet that reaches one of
    /// their hooks gets UNKNOWN naming the table. A table absent and not listed here is taken
    /// as not loaded in the kernel (no rules: the hook accepts).
    pub uncollected: &'a [Table],
    /// The node's IPVS table (`ipvsadm -Ln`), where kube-proxy runs in IPVS mode: a packet
    /// delivered locally to one of its virtual services is scheduled to a real server at
    /// LOCAL_IN ([`crate::ipvs`]). `None`: no IPVS.
    pub ipvs: Option<&'a crate::IpvsTable>,
}

impl<'a> Env<'a> {
    /// An environment with just the node's local addresses.
    pub fn new(local_addrs: &'a [IpAddr]) -> Env<'a> {
        Env {
            local_addrs,
            ..Env::default()
        }
    }
}

impl fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("local_addrs", &self.local_addrs)
            .field("local_origin", &self.local_origin)
            .field("router", &self.router.is_some())
            .field("ipsets", &self.ipsets.is_some())
            .field("uncollected", &self.uncollected)
            .field("ipvs", &self.ipvs.map(|t| t.services.len()))
            .finish()
    }
}

/// A NAT mapping chosen for the packet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NatTarget {
    /// The new address (`None` only for MASQUERADE when the out interface's address is
    /// unknown).
    pub addr: Option<IpAddr>,
    /// The new port, if the target changes it.
    pub port: Option<u16>,
}

impl fmt::Display for NatTarget {
    /// `ip:port`, `[v6]:port`, `ip`, or `?` when the address is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (Some(IpAddr::V6(a)), Some(p)) => write!(f, "[{a}]:{p}"),
            (Some(a), Some(p)) => write!(f, "{a}:{p}"),
            (Some(a), None) => write!(f, "{a}"),
            (None, Some(p)) => write!(f, "?:{p}"),
            (None, None) => f.write_str("?"),
        }
    }
}

/// The packet's fate on this node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Accepted: delivered locally or forwarded/sent.
    Accept,
    /// Silently dropped.
    Drop,
    /// Rejected with an error (`icmp-port-unreachable`, `tcp-reset`, ...).
    Reject {
        /// The `--reject-with` type as iptables names it.
        with: String,
    },
    /// The engine cannot decide (unsupported rule, unknown interface, no ipset data ...).
    /// A reason that comes from routing or ipset data the caller did not give contains
    /// [`NO_ROUTING_DATA`] or [`NO_IPSET_DATA`], so the caller can name what to collect.
    Unknown {
        /// Why.
        reason: String,
        /// The rule that made it unknown, if one did.
        rule: Option<SourceRef>,
    },
}

impl Verdict {
    /// `ACCEPT`, `DROP`, `REJECT` or `UNKNOWN`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Accept => "ACCEPT",
            Verdict::Drop => "DROP",
            Verdict::Reject { .. } => "REJECT",
            Verdict::Unknown { .. } => "UNKNOWN",
        }
    }
}

/// One rule the packet matched (its target was applied), in traversal order.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Table.
    pub table: Table,
    /// Chain the rule is in.
    pub chain: Arc<str>,
    /// Where the rule was read.
    pub source: SourceRef,
    /// The rule as written (e.g. `-A KUBE-SERVICES -d 10.0.0.1/32 ... -j KUBE-SVC-X`).
    pub text: String,
    /// For a rule with a `statistic` match: the probability of this branch at that rule.
    pub branch_probability: Option<f64>,
}

/// One distinct result of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Probability of this outcome (all outcomes of a trace sum to 1).
    pub probability: f64,
    /// The packet's fate on this node.
    pub verdict: Verdict,
    /// The packet as it leaves the last hook: NATed source/destination, marks.
    pub packet: Packet,
    /// Destination NAT applied (nat PREROUTING/OUTPUT: DNAT or REDIRECT).
    pub dnat: Option<NatTarget>,
    /// Source NAT applied (nat POSTROUTING/INPUT: SNAT or MASQUERADE).
    pub snat: Option<NatTarget>,
    /// MASQUERADE (or SNAT) applied in nat POSTROUTING/INPUT.
    pub masquerade: bool,
    /// Delivered to a local socket (INPUT path) rather than forwarded/sent out.
    pub local_delivery: bool,
    /// The outgoing interface, when routed out and known.
    pub out_iface: Option<String>,
    /// The packet's mark at the (last) routing decision, which `ip rule fwmark` matches: a
    /// mark set in nat PREROUTING (kube-proxy's 0x4000) and cleared in nat POSTROUTING is in
    /// force here but gone from `packet`. None when the packet was not routed.
    pub route_mark: Option<u32>,
    /// The rules matched, in order.
    pub steps: Vec<Step>,
    /// Remarks: modelling choices (nth as 1/every, limit assumed under the rate, DNAT range
    /// choice, policies applied, merged paths).
    pub notes: Vec<String>,
    /// What gave the verdict when no rule's own target did: a chain policy, or IPVS without a
    /// real server. `None`: the last of `steps` decided (or nothing stopped the packet).
    pub ended_by: Option<EndCause>,
}

/// Why a packet's walk ended when no rule's target ended it ([`Outcome::ended_by`]). Each
/// carries the sentence the engine also puts in the outcome's notes, naming the chain or
/// virtual service and where it was read.
#[derive(Clone, Debug, PartialEq)]
pub enum EndCause {
    /// A built-in chain's (nft: base chain's) policy: the packet fell off its end, or a
    /// `RETURN` left it. E.g. `filter/FORWARD policy DROP (rules.txt:3)`.
    Policy(String),
    /// An IPVS virtual service without a real server of weight above 0: the kernel answers
    /// ICMP port unreachable (`ip_vs_leave`).
    NoRealServer(String),
}

impl EndCause {
    /// The sentence naming the cause and where it was read.
    pub fn text(&self) -> &str {
        match self {
            EndCause::Policy(t) | EndCause::NoRealServer(t) => t,
        }
    }

    /// The sentence, to rewrite (a shared ruleset's file name for the node's own).
    pub fn text_mut(&mut self) -> &mut String {
        match self {
            EndCause::Policy(t) | EndCause::NoRealServer(t) => t,
        }
    }
}

/// The result of [`trace`](crate::trace): every distinct outcome with its probability.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Trace {
    /// Outcomes, most probable first (ties in traversal order). Probabilities sum to 1.
    pub outcomes: Vec<Outcome>,
}

pub(crate) fn addr_to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

pub(crate) fn u128_to_addr(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

/// In an [`Verdict::Unknown`] reason: the decision needed the route (the outgoing interface or
/// its address) and the routing oracle had none.
pub const NO_ROUTING_DATA: &str = "(no routing data)";

/// In an [`Verdict::Unknown`] reason: the rule matches an ipset and no ipset data was given.
pub const NO_IPSET_DATA: &str = "no ipset data was given";

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn the_table_an_echoed_command_lists() {
        for (cmd, want) in [
            ("iptables -S", Some(Some(Table::Filter))),
            ("iptables -t nat -S", Some(Some(Table::Nat))),
            (
                "sudo /usr/sbin/ip6tables-legacy --table=mangle -S",
                Some(Some(Table::Mangle)),
            ),
            ("ip6tables-nft -traw -S", Some(Some(Table::Raw))),
            ("iptables --table security -S", Some(Some(Table::Security))),
            ("iptables -S | grep -t nat", Some(Some(Table::Filter))),
            // Review 8: what the shell or a prompt glues to the program or the table.
            (
                "kubectl exec kp -n kube-system -- sh -c \"iptables -t nat -S KUBE-SEP-X\"",
                Some(Some(Table::Nat)),
            ),
            ("sh -c \"iptables -t nat\"", Some(Some(Table::Nat))),
            ("root@node-a:~#iptables -t nat -S", Some(Some(Table::Nat))),
            ("$(ip6tables-nft -tmangle -S)", Some(Some(Table::Mangle))),
            // Review 9: more of what shells and prompts do.
            ("root@h:~# cd /;iptables -t nat -S", Some(Some(Table::Nat))),
            ("root@h:~# true&&iptables -t nat -S", Some(Some(Table::Nat))),
            (
                "root@h:~# node-a%iptables -t nat -S",
                Some(Some(Table::Nat)),
            ),
            ("$ \"/usr/sbin/iptables\" -t nat -S", Some(Some(Table::Nat))),
            ("$ '/usr/sbin/iptables' -t nat -S", Some(Some(Table::Nat))),
            ("$ sudo \"iptables\" -t nat -S", Some(Some(Table::Nat))),
            ("iptables -t 'nat' -S", Some(Some(Table::Nat))),
            ("iptables --table=\"nat\" -S", Some(Some(Table::Nat))),
            (
                "$ sh -c 'iptables -S' # not -t nat",
                Some(Some(Table::Filter)),
            ),
            (
                "$ nsenter -t 1 -n -- iptables -t mangle -S",
                Some(Some(Table::Mangle)),
            ),
            // Reviews 10 and 11: what follows the command is not the command; several runs.
            (
                "$ iptables -t nat -S # see iptables -S for filter",
                Some(Some(Table::Nat)),
            ),
            (
                "$ sh -c 'iptables -t nat -S #iptables'",
                Some(Some(Table::Nat)),
            ),
            (
                "$ iptables -t nat -S > /tmp/iptables; cat /tmp/iptables",
                Some(Some(Table::Nat)),
            ),
            (
                "$ iptables -t nat -S && echo \"iptables ok\"",
                Some(Some(Table::Nat)),
            ),
            (
                "$ iptables -t nat -S; iptables --version",
                Some(Some(Table::Nat)),
            ),
            ("$ iptables -S; echo -t nat", Some(Some(Table::Filter))),
            ("user@h:~> iptables -t raw -S", Some(Some(Table::Raw))),
            (
                "$ ls -l /usr/sbin/iptables && iptables -t nat -S",
                Some(Some(Table::Nat)),
            ),
            (
                "$ iptables --version; iptables -t nat -S",
                Some(Some(Table::Nat)),
            ),
            (
                "$ iptables -V 2>&1; iptables -t nat -S",
                Some(Some(Table::Nat)),
            ),
            (
                "$ iptables -L -n >/dev/null 2>&1 && iptables -t nat -S",
                Some(Some(Table::Nat)),
            ),
            (
                "$ iptables-legacy -S >/dev/null 2>&1; iptables-nft -t nat -S",
                Some(Some(Table::Nat)),
            ),
            (
                "$ iptables -t nat -S > /tmp/nat.txt; iptables -S",
                Some(Some(Table::Filter)),
            ),
            (
                "$ iptables -t mangle -S > /tmp/m.txt; iptables -S",
                Some(Some(Table::Filter)),
            ),
            (
                "$ iptables -t nat -S >nat.txt && iptables -t filter -S",
                Some(Some(Table::Filter)),
            ),
            (
                "$ echo \"iptables -t nat\" && iptables -S",
                Some(Some(Table::Filter)),
            ),
            ("$ iptables -t nat -S 2>&1", Some(Some(Table::Nat))),
            ("$ iptables -t nat -vnL", Some(Some(Table::Nat))),
            ("$ iptables -t nat;echo", Some(Some(Table::Nat))),
            ("iptables -t bogus -S", Some(None)),
            ("iptables -t", Some(None)),
            ("iptables-save -t nat", None),
            ("ip route show", None),
        ] {
            assert_eq!(Table::from_command(cmd), want, "{cmd}");
        }
    }
}
