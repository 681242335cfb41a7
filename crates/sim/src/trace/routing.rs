//! A node's policy routing, as the Linux kernel does it: `ip rule` in priority order, then the
//! selected table's longest-prefix match.
//!
//! Sources of truth: `man 8 ip-rule` and `man 8 ip-route`; the kernel's `fib_rules_lookup()`
//! (net/core/fib_rules.c: rules in ascending priority; `goto`; `suppress_prefixlength`, applied
//! after a table returns a route whose prefix is not longer than the limit; a table without a
//! match falls through to the next rule), `fib_table_lookup()` (longest prefix, then the lowest
//! `metric`, the kernel's route priority) and `__fib_validate_source()` in
//! net/ipv4/fib_frontend.c (reverse-path filtering: the reverse lookup's `iif` for rule
//! matching is the forward route's output device - `fl4.flowi4_iif = oif ? : LOOPBACK_IFINDEX`,
//! with `oif = FIB_RES_OIF(res)` from `__mkroute_input` - and loopback for local delivery; no
//! mark unless `src_valid_mark`; strict mode requires a device of the reverse route to be the
//! incoming device).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use kubepath_model::net::{Family, NodeNet, Route, RouteType, Rule, RuleAction};
use kubepath_model::SourceRef;

/// The flow being routed.
#[derive(Debug, Clone)]
pub struct Flow<'a> {
    pub src: Option<IpAddr>,
    pub dst: IpAddr,
    /// Incoming interface; `None` = locally generated (rules see `iif lo`).
    pub iif: Option<&'a str>,
    pub mark: u32,
    /// Protocol and ports, for `ip rule ... ipproto/sport/dport`.
    pub l4: FlowL4,
}

/// What the routing decision knows of a flow's protocol and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowL4 {
    /// Not tracked by the caller: rules selecting on protocol or ports are taken to match
    /// (as before they were modelled), and the lookup says so in a note.
    Unknown,
    /// No transport header: an ARP request's route lookup (protocol 0, ports 0), which no
    /// `ipproto`/`sport`/`dport` rule matches unless its port range holds 0.
    None,
    /// IP protocol number, source and destination port.
    Known(u8, u16, u16),
}

impl FlowL4 {
    /// The same flow seen from the other end (the reverse-path lookup swaps the ports:
    /// `__fib_validate_source` after `fib4_rules_early_flow_dissect`).
    pub fn reversed(self) -> FlowL4 {
        match self {
            FlowL4::Known(p, s, d) => FlowL4::Known(p, d, s),
            other => other,
        }
    }
}

/// `ipproto NAME|NUMBER` of an `ip rule` as a protocol number.
fn ipproto_number(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "sctp" => Some(132),
        "ipv6-icmp" | "icmpv6" => Some(58),
        "gre" => Some(47),
        "esp" => Some(50),
        "udplite" => Some(136),
        n => n.parse().ok(),
    }
}

/// Why a lookup failed.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteFailure {
    /// No rule produced a route (ENETUNREACH).
    NoRoute,
    /// A `blackhole`/`unreachable`/`prohibit` route or rule.
    Rejected { kind: String },
    /// The snapshot lacks what the lookup needs.
    Unknown(String),
}

/// The result of a route lookup.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub result: Result<Hop, RouteFailure>,
    /// The rule that selected the table (None when the node's rules are not in the snapshot and
    /// the kernel's default rules were assumed).
    pub rule: Option<Rule>,
    /// The route that matched.
    pub route: Option<Route>,
    pub table: u32,
    pub notes: Vec<String>,
}

/// Where a routed packet goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Hop {
    /// Delivered to the node itself.
    Local,
    /// Sent out of `dev`, to `gateway` (None = on-link, to the destination itself).
    Forward {
        dev: Option<String>,
        gateway: Option<IpAddr>,
        src: Option<IpAddr>,
    },
}

impl Lookup {
    pub fn source(&self) -> Option<SourceRef> {
        self.route.as_ref().map(|r| r.source.clone())
    }
}

/// Whether `rule` selects `flow` (`fib_rule_match`, net/core/fib_rules.c, and
/// `fib4_rule_match`, net/ipv4/fib_rules.c).
fn rule_matches(rule: &Rule, flow: &Flow) -> bool {
    let m = (|| {
        if let Some(from) = rule.from {
            match flow.src {
                Some(s) if from.contains(&s) => {}
                Some(_) => return false,
                // Unknown source (a locally generated packet before source selection) matches
                // only `from all`; the kernel uses saddr 0 here.
                None => {
                    if from.prefix_len() != 0 {
                        return false;
                    }
                }
            }
        }
        if let Some(to) = rule.to {
            if !to.contains(&flow.dst) {
                return false;
            }
        }
        if let Some(iif) = &rule.iif {
            let actual = flow.iif.unwrap_or("lo");
            if !iface_matches(iif, actual) {
                return false;
            }
        }
        if rule.oif.is_some() {
            // Only sockets bound to a device set an oif; forwarded packets have none.
            return false;
        }
        if let Some((value, mask)) = rule.fwmark {
            if flow.mark & mask != value & mask {
                return false;
            }
        }
        // A TOS (DSCP) selector matches only packets with that TOS (`fib4_rule_match`; `ip
        // rule` prints no `tos` for 0, any). The traced packets, a client's SYN or datagram,
        // the replies and the proxied connections, carry TOS 0: such a rule does not select
        // them (it used to select every packet, review 11).
        if rule.tos.is_some_and(|t| t != 0) {
            return false;
        }
        let l4 = match flow.l4 {
            FlowL4::Unknown => None,
            FlowL4::None => Some((0, 0, 0)),
            FlowL4::Known(p, s, d) => Some((p, s, d)),
        };
        if let Some((proto, sport, dport)) = l4 {
            if let Some(p) = &rule.ipproto {
                // An unreadable protocol name: treated as matching (the selector is kept).
                if ipproto_number(p).is_some_and(|n| n != proto) {
                    return false;
                }
            }
            let in_range =
                |r: Option<(u16, u16)>, v: u16| r.is_none_or(|(lo, hi)| lo <= v && v <= hi);
            if !in_range(rule.sport, sport) || !in_range(rule.dport, dport) {
                return false;
            }
        }
        // A uid range is compared with the flow's uid (`fib_rule_match`). A packet the node
        // receives is routed with uid 0, the namespace's root (`ip_route_input_slow` and
        // `__fib_validate_source`: `flowi4_uid = sock_net_uid(net, NULL)`). A locally
        // generated one has its socket owner's, which no output of the snapshot shows: it is
        // taken as root's too, and [`lookup`] notes it.
        if let Some((lo, hi)) = rule.uidrange {
            if !(lo..=hi).contains(&0) {
                return false;
            }
        }
        true
    })();
    m != rule.not
}

fn iface_matches(pattern: &str, actual: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => actual.starts_with(prefix),
        None => pattern == actual,
    }
}

/// The kernel's address selection for a packet leaving `dev` towards `gateway_or_dst`:
/// the primary address of the device whose subnet contains the next hop, else its first
/// primary global address (`inet_select_addr()`).
pub fn select_src(node: &NodeNet, dev: &str, next: IpAddr) -> Option<IpAddr> {
    let iface = node.interface(dev)?;
    let fam = Family::of(&next);
    let candidates: Vec<&IpNet> = iface
        .addresses
        .iter()
        .filter(|a| !a.secondary && Family::of(&a.address.addr()) == fam)
        .map(|a| &a.address)
        .collect();
    candidates
        .iter()
        .find(|a| a.contains(&next))
        .or_else(|| candidates.first())
        .map(|a| a.addr())
        .or_else(|| {
            // A device without an address of the family (a Calico veth): the kernel takes a
            // global address of another device (inet_select_addr() walks the other devices).
            node.interfaces
                .iter()
                .filter(|i| i.name != "lo")
                .flat_map(|i| i.addresses.iter())
                .find(|a| {
                    !a.secondary && a.scope == "global" && Family::of(&a.address.addr()) == fam
                })
                .map(|a| a.address.addr())
        })
}

/// Routes of `table`, plus the local table synthesised from interface addresses when the
/// snapshot has no local table (a plain `ip route` prints only `main`): the routes the linear
/// [`lpm`] scans, the reference [`NodeRoutes`] is tested against.
#[cfg(test)]
fn table_routes<'n>(node: &'n NodeNet, table: u32, synth_local: &'n [Route]) -> Vec<&'n Route> {
    let mut v: Vec<&Route> = node.routes.iter().filter(|r| r.table == table).collect();
    if table == 255 && !node.knows_table(255) {
        v.extend(synth_local.iter());
    }
    v
}

/// A small multiplicative hasher (FxHash-style) for the index's integer keys.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
}

type KeyBuild = std::hash::BuildHasherDefault<KeyHasher>;

/// Where an indexed route lives: `NodeNet::routes` or the synthesised local routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteRef {
    Node(u32),
    Synth(u32),
}

/// (IPv6, prefix length, network bits) of a destination prefix.
pub(crate) type PrefixKey = (bool, u8, u128);

pub(crate) fn prefix_key(net: &IpNet) -> PrefixKey {
    match net.trunc() {
        IpNet::V4(n) => (false, n.prefix_len(), u128::from(u32::from(n.addr()))),
        IpNet::V6(n) => (true, n.prefix_len(), u128::from(n.addr())),
    }
}

/// The key of `dst` masked to `len` bits.
pub(crate) fn addr_key(dst: IpAddr, len: u8) -> PrefixKey {
    match dst {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let masked = if len == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(len)))
            };
            (false, len, u128::from(masked))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let masked = if len == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(len)))
            };
            (true, len, masked)
        }
    }
}

/// One routing table's longest-prefix index: for each destination prefix, the route the
/// linear scan ([`lpm`]) picks among the routes with exactly that prefix (the lowest metric,
/// then the first in table order); a lookup probes the prefix lengths present, longest first.
#[derive(Debug, Default)]
struct TableIndex {
    /// Prefix lengths present, longest first: [IPv4, IPv6].
    lens: [Vec<u8>; 2],
    best: HashMap<PrefixKey, RouteRef, KeyBuild>,
}

impl TableIndex {
    fn add(&mut self, r: &Route, at: RouteRef, metric_of: impl Fn(RouteRef) -> u32) {
        // What the linear scan never picks: a route whose family is not its prefix's (no
        // destination is both), broadcast and multicast routes.
        if Family::of(&r.dst.addr()) != r.family
            || matches!(r.kind, RouteType::Broadcast | RouteType::Multicast)
        {
            return;
        }
        let key = prefix_key(&r.dst);
        match self.best.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(at);
                let lens = &mut self.lens[usize::from(key.0)];
                if let Err(p) = lens.binary_search_by(|l| key.1.cmp(l)) {
                    lens.insert(p, key.1);
                }
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                // Strictly lower metric only: an equal one keeps the earlier route.
                if r.metric.unwrap_or(0) < metric_of(*o.get()) {
                    o.insert(at);
                }
            }
        }
    }

    fn lookup(&self, dst: IpAddr) -> Option<RouteRef> {
        let fam = usize::from(dst.is_ipv6());
        self.lens[fam]
            .iter()
            .find_map(|len| self.best.get(&addr_key(dst, *len)).copied())
    }
}

/// A node's routing state indexed once: the synthesised local routes, a longest-prefix index
/// per table ([`TableIndex`]: the linear scan's answer, tie-breaks included, property-tested
/// against it) and the rules of each family in the kernel's order. Built for one [`NodeNet`]
/// and valid for it only while it is not changed; the functions of this module take both.
#[derive(Debug, Default)]
pub struct NodeRoutes {
    synth: Vec<Route>,
    tables: Vec<(u32, TableIndex)>,
    /// Indices into `NodeNet::rules` of each family ([IPv4, IPv6]), stably sorted by priority.
    rules: [Vec<u32>; 2],
    /// `NodeNet::routes.len()` when built (a cheap check that it is used with its node).
    n_routes: usize,
}

impl NodeRoutes {
    pub fn new(node: &NodeNet) -> NodeRoutes {
        let synth = synth_local_routes(node);
        let mut tables: Vec<(u32, TableIndex)> = Vec::new();
        let slot = |tables: &mut Vec<(u32, TableIndex)>, t: u32| -> usize {
            match tables.iter().position(|(id, _)| *id == t) {
                Some(p) => p,
                None => {
                    tables.push((t, TableIndex::default()));
                    tables.len() - 1
                }
            }
        };
        let metric = |synth: &[Route], at: RouteRef| -> u32 {
            match at {
                RouteRef::Node(i) => node.routes[i as usize].metric.unwrap_or(0),
                RouteRef::Synth(i) => synth[i as usize].metric.unwrap_or(0),
            }
        };
        for (i, r) in node.routes.iter().enumerate() {
            let p = slot(&mut tables, r.table);
            tables[p]
                .1
                .add(r, RouteRef::Node(i as u32), |at| metric(&synth, at));
        }
        // The synthesised local routes come after the node's own table-255 routes, as in
        // `table_routes`.
        if !node.knows_table(255) {
            let p = slot(&mut tables, 255);
            for (i, r) in synth.iter().enumerate() {
                tables[p]
                    .1
                    .add(r, RouteRef::Synth(i as u32), |at| metric(&synth, at));
            }
        }
        let mut rules: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        for (i, r) in node.rules.iter().enumerate() {
            rules[usize::from(r.family == Family::Ipv6)].push(i as u32);
        }
        for v in &mut rules {
            // Stable: file order among equal priorities, as the kernel's list keeps it.
            v.sort_by_key(|i| node.rules[*i as usize].priority);
        }
        NodeRoutes {
            synth,
            tables,
            rules,
            n_routes: node.routes.len(),
        }
    }

    /// Longest prefix match in `table` (the linear [`lpm`] over the table's routes).
    fn lpm<'n>(&'n self, node: &'n NodeNet, table: u32, dst: IpAddr) -> Option<&'n Route> {
        debug_assert_eq!(
            self.n_routes,
            node.routes.len(),
            "NodeRoutes of another node"
        );
        let (_, t) = self.tables.iter().find(|(id, _)| *id == table)?;
        match t.lookup(dst)? {
            RouteRef::Node(i) => node.routes.get(i as usize),
            RouteRef::Synth(i) => self.synth.get(i as usize),
        }
    }

    /// The node's rules of `family` in the kernel's order.
    fn rules<'n>(&self, node: &'n NodeNet, family: Family) -> Vec<&'n Rule> {
        self.rules[usize::from(family == Family::Ipv6)]
            .iter()
            .filter_map(|i| node.rules.get(*i as usize))
            .collect()
    }
}

/// Local routes the kernel creates for each interface address (`local A dev D table local`).
pub fn synth_local_routes(node: &NodeNet) -> Vec<Route> {
    let mut out = Vec::new();
    for iface in &node.interfaces {
        for a in &iface.addresses {
            let addr = a.address.addr();
            let Ok(dst) = IpNet::new(addr, if addr.is_ipv4() { 32 } else { 128 }) else {
                continue;
            };
            out.push(Route {
                family: Family::of(&addr),
                table: 255,
                kind: RouteType::Local,
                dst,
                tos: None,
                gateway: None,
                dev: Some(iface.name.clone()),
                prefsrc: Some(addr),
                metric: None,
                proto: Some("kernel".into()),
                scope: Some("host".into()),
                onlink: false,
                nexthops: Vec::new(),
                flags: Vec::new(),
                extra: Vec::new(),
                source: a.source.clone(),
            });
        }
    }
    // 127.0.0.0/8 is local on every Linux host.
    if let Ok(dst) = "127.0.0.0/8".parse::<IpNet>() {
        out.push(Route {
            family: Family::Ipv4,
            table: 255,
            kind: RouteType::Local,
            dst,
            tos: None,
            gateway: None,
            dev: Some("lo".into()),
            prefsrc: "127.0.0.1".parse().ok(),
            metric: None,
            proto: Some("kernel".into()),
            scope: Some("host".into()),
            onlink: false,
            nexthops: Vec::new(),
            flags: Vec::new(),
            extra: Vec::new(),
            source: SourceRef::new("(kernel: loopback)", 0),
        });
    }
    out
}

/// Longest prefix match in one table; ties broken by the lowest metric, then file order. The
/// reference of [`NodeRoutes`]'s index.
#[cfg(test)]
fn lpm<'r>(routes: &[&'r Route], dst: IpAddr) -> Option<&'r Route> {
    let mut best: Option<&Route> = None;
    for r in routes {
        if Family::of(&dst) != r.family || !r.dst.contains(&dst) {
            continue;
        }
        // Broadcast/multicast/anycast routes in the local table only concern those addresses.
        if matches!(r.kind, RouteType::Broadcast | RouteType::Multicast) {
            continue;
        }
        best = match best {
            None => Some(r),
            Some(b) => {
                let (pl, bl) = (r.dst.prefix_len(), b.dst.prefix_len());
                if pl > bl || (pl == bl && r.metric.unwrap_or(0) < b.metric.unwrap_or(0)) {
                    Some(r)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

/// Why the routing decision is unknown when the snapshot has no rules for the node: its
/// routes use a table no default rule selects (policy routing), a file of the node was left
/// out (it may have held them), or there is no `ip rule` output at all (the kernel's default
/// rules would be a guess: issue #11, review).
fn rules_missing(node: &NodeNet, fam: Family, left: &str) -> String {
    let policy_table = node
        .routes
        .iter()
        .find(|r| r.family == fam && !matches!(r.table, 253..=255));
    // IPv6 has rules of its own: `ip rule` shows IPv4's only.
    let cmd = if fam == Family::Ipv6 {
        "ip -6 rule"
    } else {
        "ip rule"
    };
    match (policy_table, node.left_out.first()) {
        (Some(r), _) => format!(
            "the snapshot has no `{cmd}` output for this node{left}, and its routes use table {} ({}): policy routing is in use, so which table decides is unknown (collect `{cmd}`)",
            kubepath_model::net::table_name(r.table),
            r.source
        ),
        (None, Some((f, why))) => format!(
            "the snapshot has no `{cmd}` output for this node, and {f} was left out ({why}): it may hold the rules, so which table decides is unknown"
        ),
        // No `ip rule` output at all: the kernel's default rules are a guess (a `prohibit`
        // or `blackhole` rule, a rule to `main` with a suppressor, needs no table of its
        // own), so which rule decides is not collected (issue #11, review).
        (None, None) => format!(
            "the snapshot has no `{cmd}` output for this node: the kernel's default rules would be a guess (policy rules need no table of their own to decide), so the routing decision is unknown (collect `{cmd}`)"
        ),
    }
}

/// Where a unicast (or NAT, anycast) `route` chosen for `flow` sends it: the device, gateway
/// and source address, or unknown where the route line or the node's addresses say it was
/// cut.
fn unicast_hop(
    node: &NodeNet,
    nr: &NodeRoutes,
    route: &Route,
    flow: &Flow,
    notes: &mut Vec<String>,
) -> Result<Hop, RouteFailure> {
    let (gateway, dev) = if !route.nexthops.is_empty() {
        // Multipath: the kernel hashes the flow; we report the first next hop and
        // say so (node-side multipath does not change which VRF a reply uses when
        // all next hops share a device, the common case).
        let nh = &route.nexthops[0];
        notes.push(format!(
            "multipath route {} has {} next hops; the kernel hashes each flow to one, shown: the first",
            route.dst,
            route.nexthops.len()
        ));
        (nh.gateway, nh.dev.clone())
    } else {
        (route.gateway, route.dev.clone())
    };
    let dev = dev.or_else(|| {
        // A gateway without a device: the device of the connected route to it.
        let gw = gateway?;
        nr.lpm(node, 254, gw).and_then(|r| r.dev.clone())
    });
    let next = gateway.unwrap_or(flow.dst);
    let src = route
        .prefsrc
        .or_else(|| dev.as_deref().and_then(|d| select_src(node, d, next)));
    // A device the node's complete `ip addr` output does not list: the route line
    // was cut or garbled (`dev ecfe_tra` of `dev ecfe_traf1`), or the outputs
    // are of different moments; where it leads is unknown (issue #11, review).
    let addrs_complete = node
        .read
        .contains_key(&kubepath_model::net::NodeFact::Addresses)
        && !node
            .partial
            .iter()
            .any(|(f, _, _)| *f == kubepath_model::net::NodeFact::Addresses);
    match dev.as_deref() {
        Some(d) if addrs_complete && !node.interfaces.iter().any(|i| i.name == d) => {
            Err(RouteFailure::Unknown(format!(
                "route `{}` ({}) leaves by device {d}, which the node's `ip addr` output does not list: the line may be cut or garbled, so where it leads is unknown",
                route.dst, route.source
            )))
        }
        // `ip route` prints a device (or next hops) on every unicast route: a
        // line with neither was cut (`10.210.150.8` of `10.210.150.87 via ...`).
        None if gateway.is_none() && route.nexthops.is_empty() => {
            Err(RouteFailure::Unknown(format!(
                "route `{}` ({}) names neither a device nor a gateway: the line may be cut, so where it leads is unknown",
                route.dst, route.source
            )))
        }
        _ => Ok(Hop::Forward { dev, gateway, src }),
    }
}

/// Routes `flow` on `node`.
pub fn lookup(node: &NodeNet, nr: &NodeRoutes, flow: &Flow) -> Lookup {
    let fam = Family::of(&flow.dst);
    let mut notes = Vec::new();
    // Files of the node the loader left out (unrecognised, cut, too large): they may have
    // been the missing output, so a reason names them (issue #11).
    let left: String = node
        .left_out
        .iter()
        .map(|(f, why)| format!(" ({f} was left out: {why})"))
        .collect();
    if node.route_coverage == kubepath_model::net::RouteCoverage::None {
        return Lookup {
            result: Err(RouteFailure::Unknown(format!(
                "the snapshot has no `ip route show table all` output for this node{left}: collect it"
            ))),
            rule: None,
            route: None,
            table: 254,
            notes,
        };
    }
    // The node's rules by reference (a lookup is made for every path of a trace), in
    // priority order (stable: file order among equal priorities, as the kernel's list).
    let rules: Vec<&Rule> = nr.rules(node, fam);
    if rules.is_empty() {
        return Lookup {
            result: Err(RouteFailure::Unknown(rules_missing(node, fam, &left))),
            rule: None,
            route: None,
            table: 254,
            notes,
        };
    }

    let mut i = 0;
    while i < rules.len() {
        let rule: &Rule = rules[i];
        i += 1;
        if flow.iif.is_none() {
            if let Some((lo, hi)) = rule.uidrange {
                notes.push(format!(
                    "rule {} ({}) selects by the uid of the sending process (uidrange {lo}-{hi}): this locally generated packet was taken as root's (uid 0), which the snapshot does not show",
                    rule.priority, rule.source
                ));
            }
        }
        if !rule_matches(rule, flow) {
            continue;
        }
        let table = match &rule.action {
            RuleAction::Lookup(t) => *t,
            RuleAction::Goto(target) => {
                // Continue at the first rule with priority >= target.
                match rules.iter().position(|r| r.priority >= *target) {
                    Some(p) if p >= i => {
                        i = p;
                        continue;
                    }
                    _ => continue,
                }
            }
            RuleAction::Nop => continue,
            RuleAction::Blackhole | RuleAction::Unreachable | RuleAction::Prohibit => {
                return Lookup {
                    result: Err(RouteFailure::Rejected {
                        kind: format!("{:?}", rule.action).to_lowercase(),
                    }),
                    rule: Some(rule.clone()),
                    route: None,
                    table: 0,
                    notes,
                };
            }
        };
        if !node.knows_table(table) && table != 255 {
            return Lookup {
                result: Err(RouteFailure::Unknown(format!(
                    "rule {} selects table {} whose routes are not in the snapshot (collect `ip route show table all`)",
                    rule.priority,
                    kubepath_model::net::table_name(table)
                ))),
                rule: Some(rule.clone()),
                route: None,
                table,
                notes,
            };
        }
        let Some(route) = nr.lpm(node, table, flow.dst) else {
            continue;
        };
        if let Some(limit) = rule.suppress_prefixlength {
            if u32::from(route.dst.prefix_len()) <= limit {
                continue;
            }
        }
        let rule_out = Some(rule.clone());
        let result = match route.kind {
            RouteType::Local => Ok(Hop::Local),
            RouteType::Unicast | RouteType::Nat | RouteType::Anycast => {
                unicast_hop(node, nr, route, flow, &mut notes)
            }
            RouteType::Throw => continue,
            RouteType::Blackhole | RouteType::Unreachable | RouteType::Prohibit => {
                Err(RouteFailure::Rejected {
                    kind: format!("{:?}", route.kind).to_lowercase(),
                })
            }
            RouteType::Broadcast | RouteType::Multicast => Ok(Hop::Local),
        };
        return Lookup {
            result,
            rule: rule_out,
            route: Some(route.clone()),
            table,
            notes,
        };
    }
    Lookup {
        result: Err(RouteFailure::NoRoute),
        rule: None,
        route: None,
        table: 0,
        notes,
    }
}

/// The device of the main table's on-link route to `addr` (longest prefix, no gateway):
/// a pod's host-side veth (`192.168.30.7 dev cali… scope link`). None when that route has a
/// gateway, is no unicast route, or is missing.
pub fn direct_device(node: &NodeNet, nr: &NodeRoutes, addr: IpAddr) -> Option<String> {
    let r = nr.lpm(node, 254, addr)?;
    if r.kind != RouteType::Unicast || r.gateway.is_some() || !r.nexthops.is_empty() {
        return None;
    }
    r.dev.clone()
}

/// The output devices a forwarding lookup may use, with their weights: every next hop of a
/// multipath route (the kernel hashes each flow to one of them), else the one device.
/// Empty when the lookup does not forward.
pub fn forward_devices(node: &NodeNet, nr: &NodeRoutes, l: &Lookup) -> Vec<(Option<String>, u32)> {
    let Ok(Hop::Forward { dev, .. }) = &l.result else {
        return Vec::new();
    };
    match &l.route {
        Some(r) if r.nexthops.len() > 1 => r
            .nexthops
            .iter()
            .map(|nh| {
                let dev = nh.dev.clone().or_else(|| {
                    let gw = nh.gateway?;
                    nr.lpm(node, 254, gw).and_then(|r| r.dev.clone())
                });
                (dev, nh.weight.max(1))
            })
            .collect(),
        _ => vec![(dev.clone(), 1)],
    }
}

/// Reverse-path filter mode in force for packets arriving on `iface`: the kernel uses
/// max(conf.all.rp_filter, conf.<iface>.rp_filter). `None` when the snapshot has no sysctls.
pub fn rp_filter_mode(node: &NodeNet, iface: &str) -> Option<u8> {
    node.rp_filter(iface)
}

/// The reverse-path check for a packet from `src` arriving on `iif` addressed to `dst`.
/// Returns Ok(()) when it passes, Err(reason) when the kernel drops it.
/// `fwd_oif` is the forward route's output device (None for local delivery).
pub fn rp_filter_check(
    node: &NodeNet,
    nr: &NodeRoutes,
    (iif, fwd_oif): (&str, Option<&str>),
    src: IpAddr,
    dst: IpAddr,
    l4: FlowL4,
) -> Result<(), String> {
    let Some(mode) = rp_filter_mode(node, iif) else {
        return Ok(());
    };
    rp_filter_check_mode(node, nr, (iif, fwd_oif), src, dst, mode, l4)
}

/// [`rp_filter_check`] as if the mode in force were `mode` (for a node whose sysctls were not
/// collected: would a strict or loose filter drop this packet?).
pub fn rp_filter_check_mode(
    node: &NodeNet,
    nr: &NodeRoutes,
    (iif, fwd_oif): (&str, Option<&str>),
    src: IpAddr,
    dst: IpAddr,
    mode: u8,
    l4: FlowL4,
) -> Result<(), String> {
    if mode == 0 {
        return Ok(());
    }
    // __fib_validate_source: the reverse lookup (daddr = packet source) is made with
    // iif = the forward route's output device (loopback when delivered locally) for rule
    // matching, and mark 0.
    let rev = lookup(
        node,
        nr,
        &Flow {
            src: Some(dst),
            dst: src,
            iif: fwd_oif,
            mark: 0,
            l4: l4.reversed(),
        },
    );
    match (&rev.result, mode) {
        (Ok(Hop::Forward { dev, .. }), _) => {
            // fib_info_nh_uses_dev: the check passes when any next hop of the route found
            // (every path of a multipath route, not only the one a hash would pick) leaves by
            // the interface the packet came in on.
            let any_nexthop_on_iif = rev.route.as_ref().is_some_and(|r| {
                r.nexthops.iter().any(|nh| {
                    let dev = nh.dev.clone().or_else(|| {
                        let gw = nh.gateway?;
                        nr.lpm(node, 254, gw).and_then(|r| r.dev.clone())
                    });
                    dev.as_deref() == Some(iif)
                })
            });
            if dev.as_deref() == Some(iif) || any_nexthop_on_iif {
                return Ok(());
            }
            let via = format!(
                "the route back to {src} leaves by {} ({}), not by {iif}",
                dev.as_deref().unwrap_or("?"),
                rev.route
                    .as_ref()
                    .map(|r| r.source.to_string())
                    .unwrap_or_default()
            );
            if mode == 1 {
                return Err(format!("strict rp_filter on {iif}: {via}"));
            }
            // Loose mode accepts any route back, except on a device without an IPv4 address:
            // `if (no_addr) goto last_resort;` comes before the loose lookup, and last_resort
            // rejects whenever rp_filter is on (net/ipv4/fib_frontend.c). A pod's host-side
            // veth (Calico's cali*) has none.
            if node.has_ipv4_address(iif) == Some(false) {
                return Err(format!(
                    "loose rp_filter on {iif}: {via}, and {iif} has no IPv4 address, so the kernel rejects it as in strict mode"
                ));
            }
            Ok(())
        }
        (Ok(_), _) => Ok(()),
        (Err(RouteFailure::Unknown(_)), _) => Ok(()),
        (Err(_), _) => Err(format!(
            "rp_filter ({}) on {iif}: no route back to {src}",
            if mode == 1 { "strict" } else { "loose" }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubepath_model::net::{IfAddr, Interface, NextHop, RouteCoverage};
    use proptest::prelude::*;

    const KINDS: [RouteType; 10] = [
        RouteType::Unicast,
        RouteType::Local,
        RouteType::Broadcast,
        RouteType::Multicast,
        RouteType::Anycast,
        RouteType::Blackhole,
        RouteType::Unreachable,
        RouteType::Prohibit,
        RouteType::Throw,
        RouteType::Nat,
    ];
    const TABLES: [u32; 4] = [100, 253, 254, 255];
    const LENS: [u8; 8] = [0, 1, 8, 16, 24, 25, 30, 32];

    /// An address of a small space (10.0.x.y and 2001:db8::x:y), so that prefixes overlap.
    fn addr(v6: bool, x: u8, y: u8) -> IpAddr {
        if v6 {
            IpAddr::V6(std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                u16::from(x),
                u16::from(y),
            ))
        } else {
            IpAddr::V4(std::net::Ipv4Addr::new(10, 0, x & 3, y & 7))
        }
    }

    fn net(a: IpAddr, len: u8) -> IpNet {
        let len = if a.is_ipv6() { len.min(128) * 4 } else { len };
        IpNet::new(a, len.min(if a.is_ipv6() { 128 } else { 32 })).unwrap()
    }

    type RouteSpec = (bool, u8, u8, usize, usize, usize, Option<u32>, bool, bool);

    fn route((v6, x, y, len, table, kind, metric, mismatch, host_bits): RouteSpec) -> Route {
        let a = addr(v6, x, y);
        let mut dst = net(a, LENS[len % LENS.len()]);
        if !host_bits {
            dst = dst.trunc();
        }
        let v6_family = v6 != mismatch;
        Route {
            family: if v6_family {
                Family::Ipv6
            } else {
                Family::Ipv4
            },
            table: TABLES[table % TABLES.len()],
            kind: KINDS[kind % KINDS.len()].clone(),
            dst,
            tos: None,
            gateway: None,
            dev: Some(format!("d{x}")),
            prefsrc: None,
            metric,
            proto: None,
            scope: None,
            onlink: false,
            nexthops: if x % 5 == 0 {
                vec![NextHop {
                    gateway: None,
                    dev: Some("m".into()),
                    weight: 1,
                    onlink: false,
                    flags: Vec::new(),
                }]
            } else {
                Vec::new()
            },
            flags: Vec::new(),
            extra: Vec::new(),
            source: SourceRef::new("routes", 0),
        }
    }

    fn ifaddr(address: IpNet) -> IfAddr {
        IfAddr::new(address, SourceRef::new("addr", 0))
    }

    fn iface(name: &str, addrs: &[(bool, u8, u8)]) -> Interface {
        Interface {
            name: name.into(),
            ifindex: None,
            link: None,
            link_type: None,
            mac: None,
            mtu: None,
            flags: Vec::new(),
            operstate: None,
            kind: None,
            master: None,
            altnames: Vec::new(),
            addresses: addrs
                .iter()
                .map(|(v6, x, y)| ifaddr(net(addr(*v6, *x, *y), 24)))
                .collect(),
            vrf: None,
            source: SourceRef::new("addr", 0),
        }
    }

    fn spec() -> impl Strategy<Value = RouteSpec> {
        (
            any::<bool>(),
            0u8..8,
            0u8..8,
            0usize..8,
            0usize..4,
            0usize..10,
            proptest::option::of(0u32..3),
            proptest::bool::weighted(0.05),
            proptest::bool::weighted(0.2),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The index gives exactly the linear scan's route (the same one, by address: the
        /// same tie-breaks on metric and file order) in every table, for every destination.
        #[test]
        fn index_is_the_linear_scan(
            specs in proptest::collection::vec(spec(), 0..40),
            addrs in proptest::collection::vec((any::<bool>(), 0u8..8, 0u8..8), 0..4),
            coverage in 0usize..3,
            probes in proptest::collection::vec((any::<bool>(), any::<u8>(), any::<u8>()), 1..24),
        ) {
            let mut node = NodeNet {
                routes: specs.into_iter().map(route).collect(),
                interfaces: vec![iface("eth0", &addrs)],
                ..NodeNet::default()
            };
            (node.route_coverage, node.route_tables_known) = match coverage {
                0 => (RouteCoverage::AllTables, Vec::new()),
                1 => (RouteCoverage::Tables, vec![254]),
                _ => (RouteCoverage::Tables, vec![254, 255]),
            };
            let nr = NodeRoutes::new(&node);
            for (v6, x, y) in probes {
                let dst = addr(v6, x % 8, y % 8);
                for table in TABLES.iter().copied().chain([7]) {
                    let linear = lpm(&table_routes(&node, table, &nr.synth), dst);
                    let indexed = nr.lpm(&node, table, dst);
                    prop_assert!(
                        linear.map(|r| r as *const Route) == indexed.map(|r| r as *const Route),
                        "table {} dst {}: linear {:?}, indexed {:?}",
                        table,
                        dst,
                        linear,
                        indexed
                    );
                }
            }
        }
    }

    /// `tos` and `uidrange` selectors as the kernel applies them to the packets a trace
    /// routes: a received packet is routed with TOS 0 (the traced packets carry no DSCP) and
    /// uid 0 (`ip_route_input_slow`: `sock_net_uid(net, NULL)`); a locally generated packet's
    /// uid is its socket owner's, unknown to the snapshot: taken as 0, with a note.
    #[test]
    fn tos_and_uidrange_selectors() {
        let src = SourceRef::new("nodes/n/ip-rule.txt", 3);
        let rule = |tos: Option<u8>, uid: Option<(u32, u32)>, not: bool| {
            let mut r = Rule::new(Family::Ipv4, 100, RuleAction::Prohibit, src.clone());
            r.tos = tos;
            r.uidrange = uid;
            r.not = not;
            r
        };
        let flow = |iif: Option<&'static str>| Flow {
            src: Some("10.0.0.1".parse().unwrap()),
            dst: "10.0.1.1".parse().unwrap(),
            iif,
            mark: 0,
            l4: FlowL4::Known(6, 40000, 80),
        };
        let fwd = flow(Some("eth0"));
        let local = flow(None);
        // TOS: only packets with that TOS; `tos 0` (not printed by `ip rule`) is any.
        assert!(!rule_matches(&rule(Some(0x10), None, false), &fwd));
        assert!(!rule_matches(&rule(Some(0x10), None, false), &local));
        assert!(rule_matches(&rule(Some(0x10), None, true), &fwd));
        assert!(rule_matches(&rule(Some(0), None, false), &fwd));
        // uid: a received packet has uid 0.
        assert!(!rule_matches(&rule(None, Some((1000, 1999)), false), &fwd));
        assert!(rule_matches(&rule(None, Some((0, 0)), false), &fwd));
        assert!(!rule_matches(&rule(None, Some((0, 99)), true), &fwd));
        // The lookup of a local packet takes uid 0 and says so.
        let node = NodeNet {
            rules: vec![rule(None, Some((1000, 1999)), false)],
            route_coverage: RouteCoverage::AllTables,
            ..NodeNet::default()
        };
        let nr = NodeRoutes::new(&node);
        let l = lookup(&node, &nr, &local);
        assert!(
            matches!(l.result, Err(RouteFailure::NoRoute)),
            "{:?}",
            l.result
        );
        assert!(
            l.notes
                .iter()
                .any(|n| n.contains("uidrange 1000-1999") && n.contains("nodes/n/ip-rule.txt:3")),
            "{:?}",
            l.notes
        );
        let l = lookup(&node, &nr, &fwd);
        assert!(
            matches!(l.result, Err(RouteFailure::NoRoute)),
            "{:?}",
            l.result
        );
        assert!(l.notes.is_empty(), "{:?}", l.notes);
    }

    /// The kernel's answer for the same rules (privileged: `KUBEPATH_PRIV_TESTS=1`, as root):
    /// in a throwaway namespace with va 10.0.0.2/24, vb 10.0.1.2/24 and forwarding on, a packet
    /// from 10.0.0.1 received on va for 10.0.1.1 (`ip route get ... iif va`, TOS 0 as the
    /// traced packets) is forwarded out of vb or refused by the `prohibit` rule (EACCES); the
    /// model's lookup of the same flow with the same rule must agree.
    #[test]
    fn tos_and_uidrange_agree_with_the_kernel() {
        use kubepath_netfilter_gen::privileged::{gate, Netns};
        if !gate("tos_and_uidrange_agree_with_the_kernel", &["ip"]) {
            return;
        }
        let ns = Netns::new("rules");
        for cmd in [
            "ip link add va type veth peer name vb",
            "ip link set va up",
            "ip link set vb up",
            "ip addr add 10.0.0.2/24 dev va",
            "ip addr add 10.0.1.2/24 dev vb",
            "sysctl -qw net.ipv4.ip_forward=1",
        ] {
            let args: Vec<&str> = cmd.split(' ').collect();
            ns.exec(&args, None)
                .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        }
        let connected = |dst: &str, dev: &str| Route {
            dev: Some(dev.into()),
            ..Route::new(dst.parse().unwrap(), SourceRef::new("ip-route", 1))
        };
        let mut va = iface("va", &[]);
        let mut vb = iface("vb", &[]);
        va.addresses.push(ifaddr("10.0.0.2/24".parse().unwrap()));
        vb.addresses.push(ifaddr("10.0.1.2/24".parse().unwrap()));
        let src = SourceRef::new("ip-rule", 1);
        let flow = Flow {
            src: Some("10.0.0.1".parse().unwrap()),
            dst: "10.0.1.1".parse().unwrap(),
            iif: Some("va"),
            mark: 0,
            l4: FlowL4::Unknown,
        };
        // (selector, tos, uidrange, not)
        type Case = (&'static str, Option<u8>, Option<(u32, u32)>, bool);
        let cases: [Case; 6] = [
            ("uidrange 1000-1999", None, Some((1000, 1999)), false),
            ("uidrange 0-0", None, Some((0, 0)), false),
            ("uidrange 0-4294967294", None, Some((0, 4294967294)), false),
            ("not uidrange 0-0", None, Some((0, 0)), true),
            ("tos 0x10", Some(0x10), None, false),
            ("not tos 0x10", Some(0x10), None, true),
        ];
        for (sel, tos, uid, not) in cases {
            let add = format!("ip rule add pref 100 {sel} prohibit");
            let args: Vec<&str> = add.split(' ').collect();
            ns.exec(&args, None)
                .unwrap_or_else(|e| panic!("{add}: {e}"));
            let kernel = ns.exec(
                &[
                    "ip", "route", "get", "10.0.1.1", "from", "10.0.0.1", "iif", "va",
                ],
                None,
            );
            ns.exec(&["ip", "rule", "del", "pref", "100"], None)
                .unwrap_or_else(|e| panic!("ip rule del: {e}"));
            let kernel_prohibits = match &kernel {
                Ok(out) => {
                    assert!(out.contains("dev vb"), "{sel}: {out}");
                    false
                }
                Err(e) => {
                    assert!(e.contains("Permission denied"), "{sel}: {e}");
                    true
                }
            };
            let mut rule = Rule::new(Family::Ipv4, 100, RuleAction::Prohibit, src.clone());
            (rule.tos, rule.uidrange, rule.not) = (tos, uid, not);
            let node = NodeNet {
                interfaces: vec![va.clone(), vb.clone()],
                routes: vec![
                    connected("10.0.0.0/24", "va"),
                    connected("10.0.1.0/24", "vb"),
                ],
                rules: vec![
                    Rule::new(Family::Ipv4, 0, RuleAction::Lookup(255), src.clone()),
                    rule,
                    Rule::new(Family::Ipv4, 32766, RuleAction::Lookup(254), src.clone()),
                ],
                route_coverage: RouteCoverage::AllTables,
                ..NodeNet::default()
            };
            let nr = NodeRoutes::new(&node);
            let l = lookup(&node, &nr, &flow);
            let model_prohibits = matches!(l.result, Err(RouteFailure::Rejected { .. }));
            assert_eq!(
                model_prohibits, kernel_prohibits,
                "{sel}: model {:?}, kernel {kernel:?}",
                l.result
            );
        }
    }
}
