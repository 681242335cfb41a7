//! Node and router network state.
//!
//! A [`NodeNet`] is what `ip addr`, `ip route`, `ip rule`, `sysctl`, `iptables-save` and
//! `ipset save` say about one node; a [`Router`] is what a router's interface configuration and
//! BGP/routing tables say. Everything is vendor-neutral and carries a [`SourceRef`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::SourceRef;

/// The name kubepath uses for a router's default VRF (FRR prints `default` too).
pub const DEFAULT_VRF: &str = "default";

/// Address family of a route, rule or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// The kinds of node facts whose absence matters to a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeFact {
    /// `ip addr` / `ip -j addr`.
    Addresses,
    /// `ip route` (any table).
    Routes,
    /// `ip rule`.
    Rules,
    /// `sysctl` values.
    Sysctls,
    /// IPv4 iptables.
    Iptables,
    /// IPv6 ip6tables.
    Ip6tables,
    /// `ipset save`.
    Ipsets,
    /// `nft list ruleset` (not in [`NodeFact::ALL`]: a node without it is traced by its
    /// iptables rules, as before; see docs/snapshot.md).
    Nft,
    /// `ipvsadm -Ln` (kube-proxy's IPVS mode; not in [`NodeFact::ALL`]: a node without it
    /// has no IPVS, unless its addresses show `kube-ipvs0`).
    Ipvs,
}

impl NodeFact {
    /// The command whose output provides this fact (for "unknown: no ... output" messages).
    pub fn command(self) -> &'static str {
        match self {
            NodeFact::Addresses => "ip addr",
            NodeFact::Routes => "ip route show table all",
            NodeFact::Rules => "ip rule",
            NodeFact::Sysctls => "sysctl -a",
            NodeFact::Iptables => "iptables-save",
            NodeFact::Ip6tables => "ip6tables-save",
            NodeFact::Ipsets => "ipset save",
            NodeFact::Nft => "nft list ruleset",
            NodeFact::Ipvs => "ipvsadm -Ln",
        }
    }

    pub const ALL: [NodeFact; 7] = [
        NodeFact::Addresses,
        NodeFact::Routes,
        NodeFact::Rules,
        NodeFact::Sysctls,
        NodeFact::Iptables,
        NodeFact::Ip6tables,
        NodeFact::Ipsets,
    ];
}

/// How much of the routing tables a node's route outputs cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum RouteCoverage {
    /// No route output was read.
    #[default]
    None,
    /// Only some tables (e.g. a plain `ip route`, which prints table main), each complete.
    Tables,
    /// `ip route show table all` (or its JSON form): every table.
    AllTables,
}

/// One node's network state.
#[derive(Debug, Default, Clone)]
pub struct NodeNet {
    pub interfaces: Vec<Interface>,
    /// Routes of every table read, in file order.
    pub routes: Vec<Route>,
    /// Policy routing rules, in file order (sort by priority with [`NodeNet::rules_in_order`]).
    pub rules: Vec<Rule>,
    /// `sysctl` key (dotted form, e.g. `net.ipv4.conf.eth0.rp_filter`) -> value.
    pub sysctls: BTreeMap<String, Sysctl>,
    /// IPv4 iptables rules (iptables-save or `iptables -t T -S` files, combined). Shared
    /// (the same `Arc`) between nodes whose ruleset files are byte-for-byte the same: the
    /// loader parses such a file once; its rules then cite the first node's file, which
    /// [`NodeNet::netfilter_cites`] maps back to this node's own.
    pub netfilter: Option<std::sync::Arc<kubepath_netfilter::Ruleset>>,
    /// IPv6 ip6tables rules (shared the same way).
    pub netfilter6: Option<std::sync::Arc<kubepath_netfilter::Ruleset>>,
    /// For a shared ruleset: (the file its rules cite, this node's own file with the same
    /// contents), so that a trace on this node cites this node's file.
    pub netfilter_cites: Vec<(std::sync::Arc<str>, std::sync::Arc<str>)>,
    /// `ipset save` sets.
    pub ipsets: Option<kubepath_netfilter::IpSets>,
    /// `nft list ruleset` (or `nft -f` text): the tables of every family, their rules citing
    /// the file they were read from. Several files combine in path order, as `nft -f` of each
    /// in turn would. Where the node's files are is in `read[NodeFact::Nft]`.
    pub nft: Option<std::sync::Arc<kubepath_netfilter::NftRuleset>>,
    /// Files of this node read as nft text that `nft -f` would reject: left out (the kernel
    /// loads a ruleset all or nothing), (path, why). The node's netfilter stage is unknown,
    /// naming them.
    pub nft_rejected: Vec<(std::sync::Arc<str>, String)>,
    /// `ipvsadm -Ln` / `ipvsadm-save -n`: kube-proxy's IPVS virtual and real servers, which
    /// schedule a packet delivered locally to a virtual service (kubepath_netfilter::ipvs).
    pub ipvs: Option<std::sync::Arc<kubepath_netfilter::IpvsTable>>,
    /// The iptables tables read (per family), so a trace can tell "no nat table read" from
    /// "an empty nat table".
    pub netfilter_tables: Vec<(Family, kubepath_netfilter::Table)>,
    /// The families of which a complete `iptables-save` / `ip6tables-save` (no `-t`) was read:
    /// a table absent from it is not loaded in the kernel, so it holds no rules. For another
    /// family, or a collection by table (`-t nat`, `iptables -t nat -S`), an absent table was
    /// not collected: see [`NodeNet::uncollected_tables`].
    pub netfilter_complete: Vec<Family>,
    /// Which facts were read, and from where.
    pub read: BTreeMap<NodeFact, Vec<SourceRef>>,
    /// Every iptables output read for this node, in file order: which iptables variant printed
    /// it and whether it holds kube-proxy's rules. The rulesets above combine them (a later
    /// `*table` block replaces an earlier one), so this is where a node with rules in both the
    /// legacy and the nft tables shows.
    pub iptables_dumps: Vec<IptablesDump>,
    /// IPv4 route tables covered (see [`RouteCoverage`]); with [`RouteCoverage::Tables`], the
    /// table ids whose contents are known are in `route_tables_known`. (A plain `ip route`
    /// prints IPv4 table main only; `ip route show table all` prints both families.)
    pub route_coverage: RouteCoverage,
    pub route_tables_known: Vec<u32>,
    /// The same for IPv6 (`ip -6 route`, or a table-all dump).
    pub route_coverage_v6: RouteCoverage,
    pub route_tables_known_v6: Vec<u32>,
    /// Outputs that were filtered (a `| grep` in the echoed command, `ip a show DEV`): the
    /// facts they provide are partial. Each entry names the file and the filter.
    pub partial: Vec<(NodeFact, SourceRef, String)>,
    /// Lines of this node's outputs that could not be read and were skipped.
    pub skipped: Vec<SkippedLine>,
    /// Facts that two captures of this node give differently (two `iptables-save` outputs
    /// with different rules for one table, two `ipset save` outputs with different
    /// members): taken at different moments or of different nodes, so neither is known to be
    /// what the node runs. Each with why, naming both files; what needs the fact is unknown.
    pub doubts: Vec<(NodeFact, String)>,
    /// Files of this node's directory the loader left out whole (too large, not a regular
    /// file, a link out of the snapshot): (path, why). What they would have provided is not
    /// collected, and a hop that needs it says which file was left out.
    pub left_out: Vec<(std::sync::Arc<str>, String)>,
}

/// A line of a command output that could not be read: skipped, so the snapshot still loads,
/// and what it may have said is unknown (see [`SkippedLine::may_concern`]). Also the last
/// line of an output that ends without a newline where that line still reads (`read`): the
/// output may have been cut in or after it (`lookup 1` of `lookup 100`, or a route list cut
/// between two lines), so it too may concern anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    pub source: SourceRef,
    /// The line as it was.
    pub text: String,
    /// What the reader expected there.
    pub why: String,
    /// The file ends in this line without a newline: the output was cut here, and whatever
    /// followed it is missing too, so the line may concern anything.
    pub cut: bool,
    /// The line was read (it parses), but it may be incomplete: with `cut`, the file ends in
    /// it without a newline. Without `cut`, a doubt about what `text` names (two captures
    /// that disagree on an interface: `text` lists its prefixes), not about a line.
    pub read: bool,
}

impl SkippedLine {
    /// What a hop says about the line: `FILE:LINE could not be read (WHY)`, or for a line that
    /// was read but may have been cut, `FILE:LINE may have been cut (WHY)`.
    pub fn describe(&self) -> String {
        let state = match (self.read, self.text.is_empty()) {
            // A doubt about the whole output (two captures that disagree, a count that
            // does not add up), not about one line.
            (true, true) => "is in doubt",
            (true, false) if !self.cut => "is in doubt",
            (true, false) => "may have been cut",
            (false, _) => "could not be read",
        };
        format!("{} {state} ({})", self.source, self.why)
    }

    /// Whether the skipped line may have been about `addr`: it names a prefix or address that
    /// covers `addr`, or names none that can be read (a continuation line, a garbled one).
    pub fn may_concern(&self, addr: IpAddr) -> bool {
        if self.cut {
            return true;
        }
        let mut named = false;
        for tok in self
            .text
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
            .filter(|t| !t.is_empty())
        {
            // BGP status codes glued to the network (`*>i10.2.2.2/32`).
            let t = if tok.starts_with(['*', '>', '=']) {
                tok.trim_start_matches(['*', '>', '='])
                    .trim_start_matches('i')
            } else {
                tok
            };
            // `default` is a route to everything (`default via ...`, `ip -6 route`'s too).
            if t == "default" {
                return true;
            }
            let net = t
                .parse::<IpNet>()
                .ok()
                .or_else(|| t.parse::<IpAddr>().ok().map(IpNet::from));
            if let Some(n) = net {
                named = true;
                if n.contains(&addr) {
                    return true;
                }
            }
        }
        !named
    }
}

impl NodeNet {
    /// Why `fact` of node `node` is not known, worded for an `unknown` reason that names what
    /// to collect (issue #11: an unknown names what is missing): `None` when it was read, and
    /// no two captures of it disagree.
    pub fn lacks(&self, node: &str, fact: NodeFact) -> Option<String> {
        if let Some((_, why)) = self.doubts.iter().find(|(f, _)| *f == fact) {
            return Some(why.clone());
        }
        if self.read.contains_key(&fact) {
            return None;
        }
        let cmd = fact.command();
        let left = if self.left_out.is_empty() {
            String::new()
        } else {
            format!(
                "; left out of the snapshot: {}",
                self.left_out
                    .iter()
                    .map(|(f, why)| format!("{f} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Some(format!(
            "the snapshot has no `{cmd}` output of node {node}{left}: collect `{cmd}` on it"
        ))
    }

    /// The outputs `fact` was read from (`file:line`), in reading order, joined with `, `
    /// (empty when it was not read).
    pub fn read_files(&self, fact: NodeFact) -> String {
        self.read
            .get(&fact)
            .map(|v| {
                v.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }

    /// The iptables tables of `family` whose contents are unknown: absent from what was read,
    /// when what was read was not a complete `iptables-save`. Empty when nothing of the family
    /// was read at all (the trace then says the whole ruleset is missing).
    pub fn uncollected_tables(&self, family: Family) -> Vec<kubepath_netfilter::Table> {
        if !self.netfilter_tables.iter().any(|(f, _)| *f == family) {
            return Vec::new();
        }
        if self.netfilter_complete.contains(&family) {
            // A complete save with kube-proxy's (or kubelet's) KUBE- chains in any table
            // (filter, or mangle alone: kubelet's KUBE-KUBELET-CANARY) but no nat table
            // cannot come from a running node: kube-proxy's iptables and IPVS modes, and
            // kubelet, always program nat. The nat block was lost on the way (a cut paste):
            // not collected, rather than "not loaded".
            let rules = match family {
                Family::Ipv4 => self.netfilter.as_ref(),
                Family::Ipv6 => self.netfilter6.as_ref(),
            };
            let kube_chains = rules.is_some_and(|r| {
                kubepath_netfilter::Table::ALL
                    .into_iter()
                    // Calico's Felix (iptables data plane) programs nat too whenever it runs
                    // (cali-PREROUTING, cali-POSTROUTING, cali-nat-outgoing).
                    .any(|t| {
                        r.chain_names(t)
                            .iter()
                            .any(|c| c.starts_with("KUBE-") || c.starts_with("cali-"))
                    })
            });
            let nat = kubepath_netfilter::Table::Nat;
            if kube_chains && !self.netfilter_tables.contains(&(family, nat)) {
                return vec![nat];
            }
            return Vec::new();
        }
        kubepath_netfilter::Table::ALL
            .into_iter()
            .filter(|t| !self.netfilter_tables.contains(&(family, *t)))
            .collect()
    }

    /// Facts for which no output was read, each with the command that would provide it.
    pub fn missing(&self) -> Vec<(NodeFact, &'static str)> {
        NodeFact::ALL
            .iter()
            .filter(|f| !self.read.contains_key(f))
            .map(|f| (*f, f.command()))
            .collect()
    }

    /// Whether the contents of IPv4 routing table `table` are known.
    pub fn knows_table(&self, table: u32) -> bool {
        self.knows_table_of(Family::Ipv4, table)
    }

    /// Whether the contents of routing table `table` of `family` are known.
    pub fn knows_table_of(&self, family: Family, table: u32) -> bool {
        let (cov, known) = match family {
            Family::Ipv4 => (self.route_coverage, &self.route_tables_known),
            Family::Ipv6 => (self.route_coverage_v6, &self.route_tables_known_v6),
        };
        match cov {
            RouteCoverage::None => false,
            RouteCoverage::AllTables => true,
            RouteCoverage::Tables => known.contains(&table),
        }
    }

    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The interface holding `addr` as one of its addresses.
    pub fn interface_with_address(&self, addr: IpAddr) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.addresses.iter().any(|a| a.address.addr() == addr))
    }

    /// Whether `iface` has an IPv4 address (`ip addr`): `None` when the addresses were not
    /// read, were filtered, or do not list the interface. The kernel's reverse-path check
    /// treats a device without one specially (`no_addr` in `__fib_validate_source`).
    pub fn has_ipv4_address(&self, iface: &str) -> Option<bool> {
        if !self.read.contains_key(&NodeFact::Addresses) {
            return None;
        }
        let listed = self.interfaces.iter().find(|i| i.name == iface);
        match listed {
            Some(i) if i.addresses.iter().any(|a| a.address.addr().is_ipv4()) => Some(true),
            Some(_)
                if !self
                    .partial
                    .iter()
                    .any(|(f, _, _)| *f == NodeFact::Addresses) =>
            {
                Some(false)
            }
            _ => None,
        }
    }

    /// Routes of one table, in file order.
    pub fn table(&self, table: u32) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(move |r| r.table == table)
    }

    /// Rules sorted by priority (stable: equal priorities keep file order, as the kernel keeps
    /// insertion order among them).
    pub fn rules_in_order(&self, family: Family) -> Vec<&Rule> {
        let mut v: Vec<&Rule> = self.rules.iter().filter(|r| r.family == family).collect();
        v.sort_by_key(|r| r.priority);
        v
    }

    pub fn sysctl(&self, key: &str) -> Option<&Sysctl> {
        self.sysctls.get(key)
    }

    fn sysctl_int(&self, key: &str) -> Option<i64> {
        self.sysctls
            .get(key)
            .and_then(|s| s.value.trim().parse().ok())
    }

    /// `net.ipv4.ip_forward` (None when not read). It is the same setting as
    /// `net.ipv4.conf.all.forwarding` (net/ipv4/devinet.c: writing either updates
    /// `IPV4_DEVCONF_ALL(FORWARDING)`), which is used when ip_forward itself was not printed.
    pub fn ip_forward(&self) -> Option<bool> {
        self.sysctl_int("net.ipv4.ip_forward")
            .or_else(|| self.sysctl_int("net.ipv4.conf.all.forwarding"))
            .map(|v| v != 0)
    }

    /// Whether packets received on `iface` may be forwarded: the kernel checks the input
    /// device's own `conf.IFACE.forwarding` (`IN_DEV_FORWARD` in ip_route_input_slow; writing
    /// `all.forwarding`/`ip_forward` copies the value to every device). Falls back to
    /// [`NodeNet::ip_forward`] when the per-interface key was not read.
    pub fn forwarding(&self, iface: &str) -> Option<bool> {
        self.sysctl_int(&format!("net.ipv4.conf.{iface}.forwarding"))
            .map(|v| v != 0)
            .or_else(|| self.ip_forward())
    }

    /// Every address configured on the node (the kernel accepts packets to any of them on any
    /// interface: the weak host model of the local table).
    pub fn local_addresses(&self) -> impl Iterator<Item = (&Interface, &IfAddr)> {
        self.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(move |a| (i, a)))
    }

    /// The effective reverse-path filter mode of `iface`: the kernel uses
    /// `IN_DEV_MAXCONF(in_dev, RP_FILTER)`, i.e. max(conf.all.rp_filter, conf.IFACE.rp_filter)
    /// (include/linux/inetdevice.h, `IN_DEV_RPFILTER`; Documentation/networking/ip-sysctl.rst:
    /// "The max value from conf/{all,interface}/rp_filter is used"). None when neither is known;
    /// when only one is known, that one is used with the other taken as unknown -> None unless
    /// the known one is already 2 (the maximum).
    pub fn rp_filter(&self, iface: &str) -> Option<u8> {
        let all = self.sysctl_int("net.ipv4.conf.all.rp_filter");
        let dev = self.sysctl_int(&format!("net.ipv4.conf.{iface}.rp_filter"));
        let clamp = |v: i64| v.clamp(0, 2) as u8;
        match (all, dev) {
            (Some(a), Some(d)) => Some(clamp(a.max(d))),
            (Some(v), None) | (None, Some(v)) if v >= 2 => Some(2),
            _ => None,
        }
    }

    /// `net.ipv4.fib_multipath_hash_policy` (0 = L3, 1 = L4, 2 = L3 or inner L3, 3 = custom).
    pub fn fib_multipath_hash_policy(&self) -> Option<u8> {
        self.sysctl_int("net.ipv4.fib_multipath_hash_policy")
            .and_then(|v| u8::try_from(v).ok())
    }
}

/// The iptables variant that printed a ruleset: the kernel keeps the legacy (x_tables) and
/// the nf_tables rules apart, and both are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IptablesBackend {
    /// `iptables-legacy-save`, or `# Generated by iptables-save vX` without `(nf_tables)`.
    Legacy,
    /// `iptables-nft-save`, or a header with `(nf_tables)`.
    Nft,
}

impl IptablesBackend {
    pub fn name(self) -> &'static str {
        match self {
            IptablesBackend::Legacy => "iptables-legacy",
            IptablesBackend::Nft => "iptables-nft",
        }
    }
}

/// One iptables output of a node (a file, or a segment of one after an echoed command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesDump {
    pub family: Family,
    /// None when neither the header nor the echoed command says.
    pub backend: Option<IptablesBackend>,
    /// It holds kube-proxy's service rules (`-A KUBE-SERVICES`, a `KUBE-SVC-` chain).
    pub kube_proxy: bool,
    /// iptables-nft's `# Warning: iptables-legacy tables present`.
    pub warns_legacy_tables: bool,
    pub source: SourceRef,
}

/// One sysctl value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub value: String,
    pub source: SourceRef,
}

/// One network interface of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: Option<u32>,
    /// The peer of `name@peer` (`@if12`, `@eth0`, `@NONE`).
    pub link: Option<String>,
    /// `link/ether`, `link/loopback`, `link/ipip`, `link/none` ...
    pub link_type: Option<String>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// The flags between `<` and `>` (`BROADCAST`, `MULTICAST`, `UP`, `LOWER_UP`, ...).
    pub flags: Vec<String>,
    /// `state UP|DOWN|UNKNOWN` (operstate).
    pub operstate: Option<String>,
    /// Link kind from `ip -d` / JSON `linkinfo.info_kind` (vlan, vxlan, bridge, vrf, veth ...).
    pub kind: Option<String>,
    /// `master DEV` (bridge, bond or VRF device this one is enslaved to).
    pub master: Option<String>,
    pub altnames: Vec<String>,
    pub addresses: Vec<IfAddr>,
    /// The VRF this interface belongs to: from a `master` that is a VRF device, from the
    /// manifest, or inferred across files by the reader's `finish` step.
    pub vrf: Option<String>,
    pub source: SourceRef,
}

impl Interface {
    /// Administratively up (`UP` flag).
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
    /// Carrier present (`LOWER_UP` flag).
    pub fn lower_up(&self) -> bool {
        self.flags.iter().any(|f| f == "LOWER_UP")
    }
    /// The link cannot carry packets: administratively down, no carrier (`NO-CARRIER`: no
    /// `LOWER_UP`), or `state DOWN`. Unknown flags (none read) are not "down".
    pub fn link_down(&self) -> bool {
        (!self.flags.is_empty() && (!self.is_up() || !self.lower_up()))
            || self.operstate.as_deref() == Some("DOWN")
    }
}

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    /// Address with its prefix length (`10.33.152.74/27`).
    pub address: IpNet,
    /// Point-to-point peer (`inet A peer P/L`).
    pub peer: Option<IpNet>,
    pub broadcast: Option<IpAddr>,
    /// `global`, `link`, `host`, `site` or a number.
    pub scope: String,
    /// The address label (last word of an `inet` line when it is not the interface name).
    pub label: Option<String>,
    pub secondary: bool,
    pub noprefixroute: bool,
    /// Other flags (`dynamic`, `deprecated`, `tentative`, `nodad`, `mngtmpaddr` ...).
    pub flags: Vec<String>,
    pub source: SourceRef,
}

impl IfAddr {
    /// A primary global address with no other attributes (`ip addr add ADDRESS`), to be
    /// filled in by the caller.
    pub fn new(address: IpNet, source: SourceRef) -> IfAddr {
        IfAddr {
            address,
            peer: None,
            broadcast: None,
            scope: "global".into(),
            label: None,
            secondary: false,
            noprefixroute: false,
            flags: Vec::new(),
            source,
        }
    }
}

/// Well-known routing table ids (`/etc/iproute2/rt_tables`).
pub const TABLE_LOCAL: u32 = 255;
pub const TABLE_MAIN: u32 = 254;
pub const TABLE_DEFAULT: u32 = 253;

/// The table id for a name as iproute2 resolves it without a custom rt_tables file.
pub fn table_id(name: &str) -> Option<u32> {
    match name {
        "local" => Some(TABLE_LOCAL),
        "main" => Some(TABLE_MAIN),
        "default" => Some(TABLE_DEFAULT),
        "unspec" => Some(0),
        n => n.parse().ok(),
    }
}

/// The name iproute2 prints for a table id.
pub fn table_name(id: u32) -> String {
    match id {
        TABLE_LOCAL => "local".into(),
        TABLE_MAIN => "main".into(),
        TABLE_DEFAULT => "default".into(),
        n => n.to_string(),
    }
}

/// Route type (`rtm_type`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteType {
    Unicast,
    Local,
    Broadcast,
    Multicast,
    Anycast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    Nat,
}

impl RouteType {
    pub fn parse(s: &str) -> Option<RouteType> {
        Some(match s {
            "unicast" => RouteType::Unicast,
            "local" => RouteType::Local,
            "broadcast" => RouteType::Broadcast,
            "multicast" => RouteType::Multicast,
            "anycast" => RouteType::Anycast,
            "blackhole" => RouteType::Blackhole,
            "unreachable" => RouteType::Unreachable,
            "prohibit" => RouteType::Prohibit,
            "throw" => RouteType::Throw,
            "nat" => RouteType::Nat,
            _ => return None,
        })
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub family: Family,
    /// Table id (255 local, 254 main, 253 default).
    pub table: u32,
    pub kind: RouteType,
    /// Destination; `default` is `0.0.0.0/0` or `::/0`.
    pub dst: IpNet,
    /// `tos`/`dsfield` selector.
    pub tos: Option<u8>,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
    pub prefsrc: Option<IpAddr>,
    pub metric: Option<u32>,
    /// `proto` (kernel, boot, static, dhcp, bird, bgp, ... or a number).
    pub proto: Option<String>,
    /// `scope`; None = `global` (iproute2 does not print the universe scope).
    pub scope: Option<String>,
    pub onlink: bool,
    /// Multipath next hops (empty for a single-path route).
    pub nexthops: Vec<NextHop>,
    /// Other flags (`linkdown`, `dead`, `offload`, `pervasive` ...).
    pub flags: Vec<String>,
    /// Attributes kept verbatim that kubepath does not interpret (`mtu 1400`, `pref medium`...).
    pub extra: Vec<(String, String)>,
    pub source: SourceRef,
}

impl Route {
    /// Whether this main-table route says the node holds pod addresses: a CNI's own block
    /// (`blackhole <block> proto bird`, Calico) or a route to a local pod's veth (`<ip> dev
    /// caliXXX` / `vethXXX` / `lxcXXX`, no gateway).
    pub fn is_pod_route(&self) -> bool {
        let own_block = self.kind == RouteType::Blackhole;
        let local_pod = self.kind == RouteType::Unicast
            && self.gateway.is_none()
            && self.dev.as_deref().is_some_and(|d| {
                d.starts_with("cali") || d.starts_with("veth") || d.starts_with("lxc")
            });
        (own_block || local_pod) && self.table == TABLE_MAIN
    }

    /// A unicast route to `dst` in table main with no attributes (`ip route add DST`), to be
    /// filled in by the caller.
    pub fn new(dst: IpNet, source: SourceRef) -> Route {
        Route {
            family: Family::of(&dst.addr()),
            table: 254,
            kind: RouteType::Unicast,
            dst,
            tos: None,
            gateway: None,
            dev: None,
            prefsrc: None,
            metric: None,
            proto: None,
            scope: None,
            onlink: false,
            nexthops: Vec::new(),
            flags: Vec::new(),
            extra: Vec::new(),
            source,
        }
    }
}

/// One next hop of a multipath route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
    /// `weight N` (the kernel's default is 1).
    pub weight: u32,
    pub onlink: bool,
    pub flags: Vec<String>,
}

/// What an `ip rule` does when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    Lookup(u32),
    Goto(u32),
    Blackhole,
    Unreachable,
    Prohibit,
    Nop,
}

/// One `ip rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub priority: u32,
    pub not: bool,
    /// None = `from all`.
    pub from: Option<IpNet>,
    pub to: Option<IpNet>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// (mark, mask); mask 0xffffffff when not printed.
    pub fwmark: Option<(u32, u32)>,
    pub tos: Option<u8>,
    pub ipproto: Option<String>,
    pub sport: Option<(u16, u16)>,
    pub dport: Option<(u16, u16)>,
    pub uidrange: Option<(u32, u32)>,
    pub l3mdev: bool,
    pub action: RuleAction,
    pub suppress_prefixlength: Option<u32>,
    pub suppress_ifgroup: Option<String>,
    /// `proto` of the rule (who installed it), kept for display.
    pub proto: Option<String>,
    pub source: SourceRef,
}

impl Rule {
    /// `PRIORITY: from all ACTION` with no selector, to be filled in by the caller.
    pub fn new(family: Family, priority: u32, action: RuleAction, source: SourceRef) -> Rule {
        Rule {
            family,
            priority,
            not: false,
            from: None,
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            tos: None,
            ipproto: None,
            sport: None,
            dport: None,
            uidrange: None,
            l3mdev: false,
            action,
            suppress_prefixlength: None,
            suppress_ifgroup: None,
            proto: None,
            source,
        }
    }
}

/// Router vendors / output dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouterVendor {
    /// Extreme SLX-OS.
    Slx,
    /// Cisco IOS-style text (`show ip bgp`).
    CiscoLike,
    /// FRRouting (vtysh JSON).
    Frr,
}

/// One router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    pub name: String,
    pub vendor: Option<RouterVendor>,
    pub interfaces: Vec<RouterInterface>,
    /// Per-VRF state, keyed by VRF name ([`DEFAULT_VRF`] for the default VRF).
    pub vrfs: BTreeMap<String, RouterVrf>,
    /// Which outputs were read, and from where.
    pub read: BTreeMap<RouterFact, Vec<SourceRef>>,
    /// Lines of this router's outputs that could not be read and were skipped.
    pub skipped: Vec<SkippedLine>,
}

/// The kinds of router outputs whose absence matters to a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouterFact {
    /// A BGP table (`show ip bgp`, FRR BGP JSON), per VRF in [`RouterVrf::bgp_source`].
    Bgp,
    /// A routing table (FRR `show ip route json`).
    Rib,
    /// Interface configuration (`show running-config interface`, FRR `show interface json`).
    InterfaceConfig,
    /// Interface state and MACs (`show interface`).
    InterfaceState,
}

impl RouterFact {
    pub fn command(self) -> &'static str {
        match self {
            RouterFact::Bgp => "show ip bgp vrf NAME",
            RouterFact::Rib => "show ip route vrf all json",
            RouterFact::InterfaceConfig => "show running-config interface",
            RouterFact::InterfaceState => "show interface",
        }
    }
}

impl Router {
    /// A line of `iface`'s configuration block (after its `interface` line, before the next
    /// interface of the same file) that could not be read: its VRF, addresses or state may be
    /// other than the model says (a `vrf forwarding` line garbled or not UTF-8 would put the
    /// interface in VRF default).
    pub fn interface_doubt(&self, iface: &RouterInterface) -> Option<&SkippedLine> {
        let file = &iface.source.file;
        let start = iface.source.line;
        let end = self
            .interfaces
            .iter()
            .filter(|i| i.source.file == *file && i.source.line > start)
            .map(|i| i.source.line)
            .min()
            .unwrap_or(u32::MAX);
        self.skipped
            .iter()
            .find(|l| l.source.file == *file && l.source.line > start && l.source.line < end)
    }

    pub fn new(name: &str) -> Router {
        Router {
            name: name.to_string(),
            vendor: None,
            interfaces: Vec::new(),
            vrfs: BTreeMap::new(),
            read: BTreeMap::new(),
            skipped: Vec::new(),
        }
    }

    /// Outputs of which no instance was read (`Rib` only matters for FRR), with the command.
    pub fn missing(&self) -> Vec<(RouterFact, &'static str)> {
        let mut facts = vec![
            RouterFact::Bgp,
            RouterFact::InterfaceConfig,
            RouterFact::InterfaceState,
        ];
        if self.vendor == Some(RouterVendor::Frr) {
            facts.push(RouterFact::Rib);
        }
        facts
            .into_iter()
            .filter(|f| !self.read.contains_key(f))
            .map(|f| (f, f.command()))
            .collect()
    }

    /// Whether a BGP table was read for `vrf`.
    pub fn knows_bgp(&self, vrf: &str) -> bool {
        self.vrfs.get(vrf).is_some_and(|v| v.bgp_source.is_some())
    }

    /// The interface entry for `name`, created when missing (SLX outputs spread one interface
    /// over several commands).
    pub fn interface_mut(&mut self, name: &str, source: &SourceRef) -> &mut RouterInterface {
        let idx = match self.interfaces.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                self.interfaces.push(RouterInterface {
                    name: name.to_string(),
                    vrf: None,
                    addresses: Vec::new(),
                    anycast_addresses: Vec::new(),
                    mac: None,
                    admin_up: None,
                    oper_up: None,
                    source: source.clone(),
                });
                self.interfaces.len() - 1
            }
        };
        &mut self.interfaces[idx]
    }

    pub fn interface(&self, name: &str) -> Option<&RouterInterface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The interface whose connected subnet (address or anycast address) holds `addr`, the
    /// longest prefix winning; optionally only in `vrf` (None = any VRF).
    pub fn connected_interface(&self, addr: IpAddr, vrf: Option<&str>) -> Option<&RouterInterface> {
        self.interfaces
            .iter()
            .filter(|i| vrf.is_none_or(|v| i.vrf.as_deref().unwrap_or(DEFAULT_VRF) == v))
            .filter_map(|i| {
                i.addresses
                    .iter()
                    .chain(&i.anycast_addresses)
                    .filter(|a| a.trunc().contains(&addr))
                    .map(|a| a.prefix_len())
                    .max()
                    .map(|l| (l, i))
            })
            .max_by_key(|(l, _)| *l)
            .map(|(_, i)| i)
    }

    /// The BGP route for exactly `prefix` in `vrf`.
    pub fn bgp_route(&self, vrf: &str, prefix: &IpNet) -> Option<&BgpRoute> {
        self.vrfs.get(vrf)?.bgp.iter().find(|r| &r.prefix == prefix)
    }

    /// Longest-prefix match of `addr` among the BGP routes of `vrf` that have a best path
    /// (the routes a router would install from BGP; a prefix without a best path is not
    /// forwarded on).
    pub fn bgp_lookup(&self, vrf: &str, addr: IpAddr) -> Option<&BgpRoute> {
        self.vrfs
            .get(vrf)?
            .bgp
            .iter()
            .filter(|r| r.prefix.contains(&addr) && r.best().is_some())
            .max_by_key(|r| r.prefix.prefix_len())
    }

    /// The BGP paths a router forwards over for `prefix` in `vrf` (an exact prefix).
    ///
    /// When the router itself flagged multipath members (FRR JSON `multipath: true`), those
    /// plus the best path are returned. Otherwise (SLX / Cisco text, which flag only the best
    /// path), the best path plus every valid path that ties with it on every step of the
    /// best-path algorithm before the router-id tie-breakers: same weight, LOCAL_PREF, AS path
    /// length, origin, MED, and same peer type (eBGP vs iBGP; FRR `bgp_path_info_cmp` decides
    /// "eBGP over iBGP" before it sets the multipath-equal flag, and Cisco/SLX likewise only
    /// combine eBGP paths under `maximum-paths` and iBGP ones under `maximum-paths ibgp`).
    /// Multipath also requires the same AS path (not only its length) unless
    /// `as_path_relax` (FRR/Cisco `bgp bestpath as-path multipath-relax`). Damped and history
    /// paths are never used; aggregate-suppressed (`s`) ones still forward. Returns an empty
    /// list when there is no best path.
    pub fn forwarding_paths(
        &self,
        vrf: &str,
        prefix: &IpNet,
        as_path_relax: bool,
    ) -> Vec<&BgpPath> {
        let Some(route) = self.bgp_route(vrf, prefix) else {
            return Vec::new();
        };
        route.forwarding_paths(as_path_relax)
    }
}

/// One interface of a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterInterface {
    /// As the router names it: `Ve 805`, `Vlan 10`, `eth0`.
    pub name: String,
    /// None = default VRF.
    pub vrf: Option<String>,
    pub addresses: Vec<IpNet>,
    /// SLX `ip anycast-address` (a gateway address shared by both leaves).
    pub anycast_addresses: Vec<IpNet>,
    /// MAC as `00:04:96:d6:8e:bc` (normalised from `0004.96d6.8ebc`).
    pub mac: Option<String>,
    /// `no shutdown` -> Some(true), `shutdown` -> Some(false).
    pub admin_up: Option<bool>,
    /// From `show interface` (`line protocol is up`).
    pub oper_up: Option<bool>,
    pub source: SourceRef,
}

/// Per-VRF state of a router.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterVrf {
    /// BGP table, one entry per prefix, in file order.
    pub bgp: Vec<BgpRoute>,
    /// Where the BGP table came from (None = not read for this VRF).
    pub bgp_source: Option<SourceRef>,
    /// `Total number of BGP Routes: N` as printed, to cross-check.
    pub bgp_total_printed: Option<u32>,
    /// The router's own count of the table (`Total number of BGP Routes`, FRR's `Displayed N
    /// routes and M total paths`, IOS-XR's `Processed`) was printed and equals what was read:
    /// the table is whole, even in a file that does not end with a newline.
    pub bgp_counted: bool,
    /// Routing table (FRR `show ip route vrf all json`).
    pub rib: Vec<RibRoute>,
    pub rib_source: Option<SourceRef>,
}

/// BGP origin attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp,
    Egp,
    Incomplete,
}

/// Status flags of a BGP path as the router printed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BgpStatus {
    pub valid: bool,
    pub best: bool,
    /// Cisco `m` / FRR `multipath`.
    pub multipath: bool,
    /// SLX/Cisco `x` best-external.
    pub best_external: bool,
    /// `i`: learned from an iBGP peer.
    pub internal: bool,
    pub suppressed: bool,
    pub damped: bool,
    pub history: bool,
    pub stale: bool,
    /// Cisco `r` RIB-failure.
    pub rib_failure: bool,
}

/// One BGP prefix with all its paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpRoute {
    pub prefix: IpNet,
    pub paths: Vec<BgpPath>,
}

impl BgpRoute {
    pub fn best(&self) -> Option<&BgpPath> {
        self.paths.iter().find(|p| p.status.best)
    }

    /// See [`Router::forwarding_paths`].
    pub fn forwarding_paths(&self, as_path_relax: bool) -> Vec<&BgpPath> {
        let Some(best) = self.best() else {
            return Vec::new();
        };
        // `s` (suppressed by an aggregate's summary-only) stays in the RIB and forwards; Cisco
        // prints it in place of `*`. Damped (`d`) and history (`h`) paths are not used.
        let usable = |p: &&BgpPath| {
            (p.status.valid || p.status.suppressed || p.status.best)
                && !p.status.damped
                && !p.status.history
        };
        if self
            .paths
            .iter()
            .any(|p| p.status.multipath && !p.status.best)
        {
            return self
                .paths
                .iter()
                .filter(usable)
                .filter(|p| p.status.best || p.status.multipath)
                .collect();
        }
        self.paths
            .iter()
            .filter(usable)
            .filter(|p| {
                std::ptr::eq(*p, best)
                    || (p.weight.unwrap_or(0) == best.weight.unwrap_or(0)
                        && p.local_pref.unwrap_or(100) == best.local_pref.unwrap_or(100)
                        && p.as_path.len() == best.as_path.len()
                        && (as_path_relax || p.as_path == best.as_path)
                        && p.origin == best.origin
                        && p.med.unwrap_or(0) == best.med.unwrap_or(0)
                        && p.status.internal == best.status.internal
                        && p.local == best.local)
            })
            .collect()
    }
}

/// One BGP path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpPath {
    pub next_hop: IpAddr,
    /// Next hop `0.0.0.0` / `::`: locally originated (connected, static, network statement).
    pub local: bool,
    /// The interface FRR's text prints as the next hop of a BGP unnumbered session (`eth0`);
    /// `next_hop` is then `::` (the peer's link-local address is not in that output).
    pub next_hop_interface: Option<String>,
    pub status: BgpStatus,
    pub rd: Option<String>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub weight: Option<u32>,
    /// AS path segments as printed (`4259841731`, `{65001,65002}` for a set).
    pub as_path: Vec<String>,
    pub origin: Option<Origin>,
    /// The peer it was learned from, when the output says (FRR JSON `peerId`).
    pub peer: Option<IpAddr>,
    pub source: SourceRef,
}

/// One route of a router's routing table (FRR `show ip route vrf all json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibRoute {
    pub prefix: IpNet,
    /// `bgp`, `connected`, `kernel`, `static`, `local` ...
    pub protocol: String,
    pub selected: bool,
    pub installed: bool,
    pub distance: Option<u32>,
    pub metric: Option<u32>,
    pub nexthops: Vec<RibNextHop>,
    pub source: SourceRef,
}

impl RouterVrf {
    /// Longest-prefix match of `addr` among the selected routes of the routing table (FRR
    /// `show ip route json`).
    pub fn rib_lookup(&self, addr: IpAddr) -> Option<&RibRoute> {
        self.rib
            .iter()
            .filter(|r| r.selected && r.prefix.contains(&addr))
            .max_by_key(|r| r.prefix.prefix_len())
    }
}

impl RibRoute {
    /// The next hops used for forwarding (active and in the FIB); more than one = ECMP.
    pub fn active_nexthops(&self) -> Vec<&RibNextHop> {
        self.nexthops.iter().filter(|n| n.active && n.fib).collect()
    }
}

/// One next hop of a router's routing-table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibNextHop {
    pub gateway: Option<IpAddr>,
    pub interface: Option<String>,
    pub directly_connected: bool,
    pub active: bool,
    pub fib: bool,
    pub weight: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(nh: &str, st: &str, as_path: &[&str], med: Option<u32>) -> BgpPath {
        BgpPath {
            next_hop: nh.parse().unwrap(),
            local: false,
            next_hop_interface: None,
            status: BgpStatus {
                valid: st.contains('*'),
                best: st.contains('>'),
                multipath: st.contains('m'),
                internal: st.contains('i'),
                damped: st.contains('d'),
                ..BgpStatus::default()
            },
            rd: None,
            med,
            local_pref: Some(100),
            weight: Some(0),
            as_path: as_path.iter().map(|s| s.to_string()).collect(),
            origin: Some(Origin::Igp),
            peer: None,
            source: SourceRef::new("t", 1),
        }
    }

    fn nhs(r: &BgpRoute, relax: bool) -> Vec<String> {
        r.forwarding_paths(relax)
            .iter()
            .map(|p| p.next_hop.to_string())
            .collect()
    }

    #[test]
    fn ecmp_excludes_ibgp_med_and_other_as_paths() {
        let r = BgpRoute {
            prefix: "10.33.151.160/32".parse().unwrap(),
            paths: vec![
                path("10.0.0.1", "*>", &["65001"], None),
                path("10.0.0.2", "*", &["65001"], None),
                path("10.0.0.3", "*", &["65002"], None),
                path("10.0.0.4", "*", &["65001"], Some(5)),
                path("10.0.0.5", "*i", &["65001"], None),
                path("10.0.0.6", "d", &["65001"], None),
            ],
        };
        assert_eq!(nhs(&r, false), vec!["10.0.0.1", "10.0.0.2"]);
        assert_eq!(nhs(&r, true), vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    }

    #[test]
    fn router_multipath_flags_win_and_no_best_means_nothing() {
        let r = BgpRoute {
            prefix: "10.0.0.0/8".parse().unwrap(),
            paths: vec![
                path("10.0.0.1", "*>", &["1"], None),
                path("10.0.0.2", "*m", &["2"], None),
                path("10.0.0.3", "*", &["1"], None),
            ],
        };
        assert_eq!(nhs(&r, false), vec!["10.0.0.1", "10.0.0.2"]);
        let r = BgpRoute {
            prefix: "10.0.0.0/8".parse().unwrap(),
            paths: vec![path("10.0.0.1", "*", &["1"], None)],
        };
        assert!(nhs(&r, false).is_empty());
    }

    #[test]
    fn connected_interface_by_subnet_and_vrf() {
        let mut r = Router::new("r");
        let src = SourceRef::new("t", 1);
        let i = r.interface_mut("Ve 805", &src);
        i.vrf = Some("OM".into());
        i.addresses.push("10.33.151.66/27".parse().unwrap());
        i.anycast_addresses.push("10.33.151.65/27".parse().unwrap());
        let j = r.interface_mut("Ve 1", &src);
        j.addresses.push("192.168.0.1/24".parse().unwrap());
        let a = "10.33.151.70".parse().unwrap();
        assert_eq!(
            r.connected_interface(a, None).map(|i| i.name.as_str()),
            Some("Ve 805")
        );
        assert_eq!(
            r.connected_interface(a, Some("OM"))
                .map(|i| i.name.as_str()),
            Some("Ve 805")
        );
        assert_eq!(
            r.connected_interface(a, Some("default"))
                .map(|i| i.name.as_str()),
            None
        );
        assert_eq!(
            r.connected_interface("192.168.0.9".parse().unwrap(), Some("default"))
                .map(|i| i.name.as_str()),
            Some("Ve 1")
        );
    }

    #[test]
    fn bgp_lookup_is_longest_prefix_with_a_best_path() {
        let mut r = Router::new("r");
        let v = r.vrfs.entry("OM".into()).or_default();
        v.bgp.push(BgpRoute {
            prefix: "0.0.0.0/0".parse().unwrap(),
            paths: vec![path("10.90.0.2", "*>", &["100"], None)],
        });
        v.bgp.push(BgpRoute {
            prefix: "10.33.151.160/32".parse().unwrap(),
            paths: vec![path("10.33.151.68", "*>", &["1"], None)],
        });
        v.bgp.push(BgpRoute {
            prefix: "10.33.151.0/24".parse().unwrap(),
            paths: vec![path("10.0.0.9", "*", &["1"], None)],
        });
        let nh = |a: &str| {
            r.bgp_lookup("OM", a.parse().unwrap())
                .map(|x| x.best().unwrap().next_hop.to_string())
        };
        assert_eq!(nh("10.33.151.160").as_deref(), Some("10.33.151.68"));
        assert_eq!(
            nh("10.33.151.161").as_deref(),
            Some("10.90.0.2"),
            "the /24 has no best path"
        );
        assert_eq!(r.bgp_lookup("OTHER", "10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn table_names() {
        assert_eq!(table_id("local"), Some(255));
        assert_eq!(table_id("main"), Some(254));
        assert_eq!(table_id("100"), Some(100));
        assert_eq!(table_id("om"), None);
        assert_eq!(table_name(253), "default");
    }
}
