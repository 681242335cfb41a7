//! IPVS, the kernel's layer-4 load balancer, as kube-proxy's IPVS mode uses it: the virtual
//! servers and real servers of `ipvsadm -Ln` (or `ipvsadm-save -n`), and the scheduling of a
//! connection's first packet.
//!
//! Where IPVS sits (net/netfilter/ipvs/ip_vs_core.c, `ip_vs_ops4`): a packet to a virtual
//! service is a packet to a local address (kube-proxy binds every ClusterIP, external and
//! LoadBalancer IP to the dummy `kube-ipvs0`), so it is routed to INPUT; IPVS's
//! `ip_vs_remote_request4` runs at LOCAL_IN with priority `NF_IP_PRI_NAT_SRC - 2` (98): after
//! mangle, filter and security INPUT, before nat INPUT. For a new connection it looks the
//! service up (by firewall mark first, then protocol, address and port), asks the scheduler
//! for a real server, rewrites the destination (NAT, "Masq" forwarding) and sends the packet
//! out itself (`ip_vs_nat_xmit` -> `ip_vs_nat_send_or_cont`): through the LOCAL_OUT hook (raw,
//! mangle, filter and security OUTPUT; nat OUTPUT is not consulted again, the connection's
//! destination NAT being set up) and POSTROUTING, where kube-proxy's `KUBE-POSTROUTING`
//! masquerades marked packets (kube-proxy sets `net.ipv4.vs.conntrack=1` so that conntrack,
//! and so iptables NAT, sees IPVS's connections). A service without a real server of weight
//! above 0 answers ICMP port unreachable (`ip_vs_leave`).
//!
//! Schedulers (`ip_vs_*.c`): `rr` takes every real server of weight > 0 in turn (equal
//! shares), `wrr` in proportion to the weights; `sh` / `mh` hash the source address (one
//! client always gets the same real server; over many clients the shares follow the weights);
//! `lc`, `wlc`, `sed`, `nq`, `fo`, `ovf`, `lblc`, `lblcr`, `dh` and `twos` decide by load or
//! destination, which the snapshot's counters show only for one instant: kubepath gives the
//! weight shares and says so. `persistent T` (kube-proxy's ClientIP session affinity) keeps a
//! client on its first real server for T seconds.

use std::net::IpAddr;
use std::sync::Arc;

use crate::types::{Diagnostic, ParseError, Proto, SourceRef};

/// How IPVS forwards to a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// NAT (`Masq`, `-m`): the destination is rewritten; what kube-proxy uses.
    Masq,
    /// Direct routing (`Route`, `-g`).
    Route,
    /// IP-in-IP (`Tunnel`, `-i`).
    Tunnel,
    /// The real server is a local address (`Local`).
    Local,
}

impl Forward {
    fn parse(s: &str) -> Option<Forward> {
        match s {
            "Masq" => Some(Forward::Masq),
            "Route" => Some(Forward::Route),
            "Tunnel" => Some(Forward::Tunnel),
            "Local" => Some(Forward::Local),
            _ => None,
        }
    }
}

/// One real server of a virtual service.
#[derive(Clone, Debug, PartialEq)]
pub struct RealServer {
    /// Address.
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
    /// Forwarding method.
    pub forward: Forward,
    /// Weight (0: no new connections).
    pub weight: u32,
    /// `ActiveConn` / `InActConn` when the capture shows them (`ipvsadm -Ln`).
    pub active: Option<u64>,
    /// See `active`.
    pub inactive: Option<u64>,
    /// Where it was read.
    pub source: SourceRef,
}

/// What a virtual service matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VsKey {
    /// `TCP` / `UDP` / `SCTP` address:port.
    Addr {
        /// Protocol.
        proto: Proto,
        /// Virtual address.
        addr: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// `FWM N`: packets with firewall mark N.
    Fwmark(u32),
}

/// One virtual service.
#[derive(Clone, Debug, PartialEq)]
pub struct VirtualService {
    /// What it matches.
    pub key: VsKey,
    /// Scheduler name (`rr`, `wrr`, `sh`, ...).
    pub scheduler: String,
    /// `persistent T`: seconds.
    pub persistent: Option<u32>,
    /// Other flags as printed (`ops`, `mask M`, `pe NAME`, scheduler flags).
    pub flags: Vec<String>,
    /// Real servers, in the listed order.
    pub reals: Vec<RealServer>,
    /// Where it was read.
    pub source: SourceRef,
    /// The text of its line as written.
    pub text: String,
}

/// A real server's share of new connections, and what to say about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule<'a> {
    /// Real servers that get new connections, with their shares.
    pub shares: Vec<(&'a RealServer, f64)>,
    /// The share IPVS finds no real server for (ICMP port unreachable, `ip_vs_leave`):
    /// `shares` and this sum to 1.
    pub reject: f64,
    /// Modelling notes (load-dependent schedulers, hashing, persistence, quiesced servers).
    pub notes: Vec<String>,
}

/// The IPVS table of one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IpvsTable {
    /// Virtual services in the listed order.
    pub services: Vec<VirtualService>,
    /// Lines that could not be read: a packet no readable service matches may be one of
    /// theirs, so its fate is unknown.
    pub unread: Vec<Diagnostic>,
    /// Virtual services the capture gives in more than one way (listed twice differently,
    /// a real server added twice or before its service): what they do is unknown.
    pub disputed: Vec<(VsKey, Diagnostic)>,
}

impl VirtualService {
    /// A service read from a line whose place and text the caller fills in.
    fn unplaced(
        key: VsKey,
        scheduler: String,
        persistent: Option<u32>,
        flags: Vec<String>,
    ) -> VirtualService {
        VirtualService {
            key,
            scheduler,
            persistent,
            flags,
            reals: Vec::new(),
            source: SourceRef {
                file: Arc::from(""),
                line: 0,
            },
            text: String::new(),
        }
    }

    /// The shares of new connections among the real servers, as the scheduler gives them
    /// for a client at `src`:`sport` (`sh` hashes the client's address, so its choice for one
    /// client is exact; the others do not depend on the client).
    pub fn schedule_for(&self, src: IpAddr, sport: u16) -> Schedule<'_> {
        let mut notes = Vec::new();
        let live: Vec<&RealServer> = self.reals.iter().filter(|r| r.weight > 0).collect();
        let quiesced = self.reals.len() - live.len();
        if quiesced > 0 && self.scheduler != "sh" {
            notes.push(format!(
                "IPVS: {quiesced} real server(s) of weight 0 get no new connections"
            ));
        }
        let total: f64 = live.iter().map(|r| r.weight as f64).sum();
        let by_weight: Vec<(&RealServer, f64)> =
            live.iter().map(|r| (*r, r.weight as f64 / total)).collect();
        let mut reject = 0.0;
        let shares = match self.scheduler.as_str() {
            // ip_vs_rr.c: the next real server of weight > 0 in the list, whatever its weight.
            "rr" => {
                let n = live.len() as f64;
                live.iter().map(|r| (*r, 1.0 / n)).collect()
            }
            "wrr" => by_weight,
            "sh" => match self.sh_choice(src, sport) {
                Some(r) => {
                    notes.push(format!(
                        "IPVS scheduler sh: the real server is a hash of the client's address{}: {} gets {}'s connections (ip_vs_sh.c)",
                        if self.sh_port() { " and port" } else { "" },
                        fmt_addr_port(r.addr, r.port),
                        src
                    ));
                    vec![(r, 1.0)]
                }
                None => {
                    notes.push(format!(
                        "IPVS scheduler sh: {src}'s hash bucket holds a real server of weight 0 (or none){}: no destination (ip_vs_sh.c)",
                        if self.sh_fallback() { " and no other is available" } else { ", and the service has no sh-fallback" }
                    ));
                    reject = 1.0;
                    Vec::new()
                }
            },
            "mh" => {
                notes.push(
                    "IPVS scheduler mh: the real server is a Maglev hash of the client's address (one client always gets the same one); shown in proportion to the weights over many clients".to_string(),
                );
                by_weight
            }
            other => {
                notes.push(format!(
                    "IPVS scheduler {other}: the choice depends on each real server's current load or on the destination, which a snapshot does not fix; shown in proportion to the weights"
                ));
                by_weight
            }
        };
        if shares.is_empty() {
            reject = 1.0;
        }
        if let Some(t) = self.persistent {
            notes.push(format!(
                "IPVS persistent {t}: a client keeps its first real server for {t} s (ClientIP session affinity)"
            ));
        }
        Schedule {
            shares,
            reject,
            notes,
        }
    }

    fn sh_fallback(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.contains("sh-fallback") || f.contains("flag-1"))
    }

    fn sh_port(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f.contains("sh-port") || f.contains("flag-2"))
    }

    /// The source-hashing scheduler's choice (net/netfilter/ipvs/ip_vs_sh.c): 256 buckets
    /// filled in list order, each real server taking `max(weight, 1)` consecutive buckets in
    /// turn (`ip_vs_sh_reassign`); the client's bucket is `hash_32(port + addr, 8)` (the
    /// port only with `sh-port`; an IPv6 address folded by XOR of its four words); a real
    /// server of weight 0 there is unavailable: `None`, unless `sh-fallback` probes on (see
    /// below) to an available one.
    fn sh_choice(&self, src: IpAddr, sport: u16) -> Option<&RealServer> {
        const SIZE: usize = 256;
        if self.reals.is_empty() {
            return None;
        }
        let mut table: Vec<usize> = Vec::with_capacity(SIZE);
        let (mut idx, mut count) = (0usize, 0u32);
        for _ in 0..SIZE {
            table.push(idx);
            count += 1;
            if count >= self.reals[idx].weight {
                idx = (idx + 1) % self.reals.len();
                count = 0;
            }
        }
        let fold = match src {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(a) => {
                let o = a.octets();
                (0..4).fold(0u32, |x, i| {
                    x ^ u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
                })
            }
        };
        let port = if self.sh_port() { u32::from(sport) } else { 0 };
        // hash_32: the top bits of the product with GOLDEN_RATIO_32.
        let hash = (port.wrapping_add(fold).wrapping_mul(0x61C8_8647) >> 24) as usize;
        let available = |i: usize| self.reals[table[i]].weight > 0;
        if available(hash) {
            return Some(&self.reals[table[hash]]);
        }
        if !self.sh_fallback() {
            return None;
        }
        // `ip_vs_sh_get_fallback` probes `ip_vs_sh_hashkey(addr, port, roffset)` with
        // `roffset = (offset + ihash) % 256`, and the hash key adds the client's hash again:
        // bucket `(2 * ihash + offset) % 256` for offset 0, 1, ... (review 13, checked
        // against the kernel's loop).
        (0..SIZE)
            .map(|off| (2 * hash + off) % SIZE)
            .find(|&i| available(i))
            .map(|i| &self.reals[table[i]])
    }

    /// The same service as `other`, whatever file, line or counters (`ipvsadm -Ln` and
    /// `ipvsadm-save -n` of one table are equal).
    pub fn same_as(&self, other: &VirtualService) -> bool {
        let mut f1 = self.flags.clone();
        let mut f2 = other.flags.clone();
        f1.sort();
        f2.sort();
        self.key == other.key
            && self.scheduler == other.scheduler
            && self.persistent == other.persistent
            && f1 == f2
            && self.reals.len() == other.reals.len()
            && self.reals.iter().zip(&other.reals).all(|(a, b)| {
                a.addr == b.addr
                    && a.port == b.port
                    && a.forward == b.forward
                    && a.weight == b.weight
            })
    }
}

/// `addr:port` (`[v6]:port`).
fn fmt_addr_port(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V6(v) => format!("[{v}]:{port}"),
        IpAddr::V4(v) => format!("{v}:{port}"),
    }
}

impl IpvsTable {
    /// The virtual service a new connection's first packet meets: by firewall mark first,
    /// then by protocol, destination address and port (`ip_vs_service_find`).
    pub fn lookup(
        &self,
        proto: Proto,
        dst: IpAddr,
        dport: u16,
        mark: u32,
    ) -> Option<&VirtualService> {
        if mark != 0 {
            if let Some(s) = self.services.iter().find(|s| s.key == VsKey::Fwmark(mark)) {
                return Some(s);
            }
        }
        self.services.iter().find(|s| {
            s.key
                == VsKey::Addr {
                    proto,
                    addr: dst,
                    port: dport,
                }
        })
    }

    /// Why the service a packet would meet is in doubt (given twice differently, or a real
    /// server line that does not fit), by the same order as [`IpvsTable::lookup`].
    pub fn disputed_for(
        &self,
        proto: Proto,
        dst: IpAddr,
        dport: u16,
        mark: u32,
    ) -> Option<&Diagnostic> {
        let key = VsKey::Addr {
            proto,
            addr: dst,
            port: dport,
        };
        self.disputed
            .iter()
            .find(|(k, _)| (mark != 0 && *k == VsKey::Fwmark(mark)) || *k == key)
            .map(|(_, d)| d)
    }

    /// Whether two captures hold the same table (sources and counters aside).
    pub fn same_services(&self, other: &IpvsTable) -> bool {
        self.services.len() == other.services.len()
            && self.services.iter().all(|a| {
                other
                    .services
                    .iter()
                    .any(|b| b.key == a.key && a.same_as(b))
            })
            && self.disputed.len() == other.disputed.len()
    }

    /// Folds a second capture of the same node into this one: services both give alike
    /// stay; a service they give differently, or only one of them gives, is disputed (a
    /// packet for it is unknown), with `why` and the line in `other` (or here) that
    /// describes it.
    pub fn dispute_differences(&mut self, other: &IpvsTable, why: &str) {
        let mut keys: Vec<(VsKey, SourceRef)> = Vec::new();
        for a in &self.services {
            if !other.services.iter().any(|b| a.same_as(b)) {
                keys.push((a.key, a.source.clone()));
            }
        }
        for b in &other.services {
            if !self.services.iter().any(|a| a.same_as(b)) && !keys.iter().any(|(k, _)| *k == b.key)
            {
                keys.push((b.key, b.source.clone()));
            }
        }
        for (k, d) in &other.disputed {
            if !self.disputed.iter().any(|(x, _)| x == k) {
                self.disputed.push((*k, d.clone()));
            }
        }
        for (key, source) in keys {
            self.services.retain(|s| s.key != key);
            if !self.disputed.iter().any(|(k, _)| *k == key) {
                self.disputed.push((
                    key,
                    Diagnostic {
                        source,
                        message: why.to_string(),
                    },
                ));
            }
        }
    }

    /// Services listed more than once: the same definition again is one fact (a paste of the
    /// same output twice); different definitions are a dispute. Real servers listed twice
    /// likewise.
    fn settle(&mut self) {
        let mut kept: Vec<VirtualService> = Vec::new();
        for vs in std::mem::take(&mut self.services) {
            if self.disputed.iter().any(|(k, _)| *k == vs.key) {
                continue;
            }
            match kept.iter().position(|k| k.key == vs.key) {
                Some(i) if kept[i].same_as(&vs) => {}
                Some(i) => {
                    let first = kept.remove(i);
                    self.disputed.push((
                        vs.key,
                        Diagnostic {
                            source: vs.source.clone(),
                            message: format!(
                                "virtual service `{}` is given twice, differently ({} and here): two captures of different moments, or a merged paste; what it does is unknown (collect one `ipvsadm -Ln`)",
                                vs.text, first.source
                            ),
                        },
                    ));
                }
                None => kept.push(vs),
            }
        }
        for vs in &mut kept {
            let mut reals: Vec<RealServer> = Vec::new();
            let mut clash = None;
            for r in std::mem::take(&mut vs.reals) {
                match reals.iter().find(|x| x.addr == r.addr && x.port == r.port) {
                    Some(x) if x.forward == r.forward && x.weight == r.weight => {}
                    Some(x) => clash = Some((x.source.clone(), r.source.clone())),
                    None => reals.push(r),
                }
            }
            vs.reals = reals;
            if let Some((a, b)) = clash {
                self.disputed.push((
                    vs.key,
                    Diagnostic {
                        source: b,
                        message: format!(
                            "a real server of `{}` is given twice, differently ({a} and here): what the service does is unknown",
                            vs.text
                        ),
                    },
                ));
            }
        }
        let disputed: Vec<VsKey> = self.disputed.iter().map(|(k, _)| *k).collect();
        kept.retain(|s| !disputed.contains(&s.key));
        self.services = kept;
    }

    /// Whether `text` looks like `ipvsadm -Ln` or `ipvsadm-save -n` output.
    pub fn sniff(text: &str) -> bool {
        text.lines().take(20).any(|l| {
            let l = l.trim_start();
            l.starts_with("IP Virtual Server version")
                || l.starts_with("Prot LocalAddress:Port")
                || l.starts_with("IPVS connection entries")
                || save_service(l).is_some()
        })
    }

    /// Reads `ipvsadm -Ln` (optionally with the `IP Virtual Server version` and column
    /// header lines) or `ipvsadm-save -n`. A line that cannot be read is a diagnostic and is
    /// kept in [`IpvsTable::unread`]; an output of another kind (`--stats`, `--rate`, names
    /// instead of numbers) is an error naming what to collect.
    pub fn parse(file: &str, text: &str) -> Result<(IpvsTable, Vec<Diagnostic>), ParseError> {
        let file: Arc<str> = Arc::from(file);
        let mut t = IpvsTable::default();
        let mut diags = Vec::new();
        let err = |line: u32, col: u32, expected: &str, found: &str| ParseError {
            file: file.clone(),
            line,
            column: col,
            expected: expected.to_string(),
            found: found.to_string(),
        };
        // The last `-Ln` service line could not be read: its real-server lines belong to it,
        // not to the service before it.
        let mut in_unread = false;
        for (i, raw) in text.lines().enumerate() {
            let n = i as u32 + 1;
            let src = SourceRef {
                file: file.clone(),
                line: n,
            };
            let l = raw.trim_end_matches('\r');
            let trimmed = l.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if trimmed.starts_with("IP Virtual Server version") || echoed_command(trimmed) {
                continue;
            }
            if trimmed.starts_with("IPVS connection entries")
                || (trimmed.starts_with("pro ") && trimmed.contains("expire"))
            {
                return Err(err(
                    n,
                    1,
                    "`ipvsadm -Ln` output (the virtual and real servers)",
                    "`ipvsadm -Lnc` connection entries, which list connections, not the table: collect `ipvsadm -Ln`",
                ));
            }
            if trimmed.starts_with("Prot LocalAddress:Port") {
                if trimmed.contains("Conns") || trimmed.contains("CPS") {
                    return Err(err(
                        n,
                        1,
                        "`ipvsadm -Ln` output (schedulers and weights)",
                        "`ipvsadm -Ln --stats` or `--rate` counters, which name no scheduler or weight: collect `ipvsadm -Ln`",
                    ));
                }
                continue;
            }
            if trimmed.starts_with("-> RemoteAddress:Port") {
                continue;
            }
            let mut unread = |why: String| {
                let d = Diagnostic {
                    source: src.clone(),
                    message: why,
                };
                diags.push(d.clone());
                t.unread.push(d);
            };
            // ipvsadm-save -n
            if let Some(r) = save_service(trimmed) {
                match r {
                    Ok(vs) => t.services.push(VirtualService {
                        source: src.clone(),
                        text: trimmed.to_string(),
                        ..vs
                    }),
                    Err(e) => unread(e),
                }
                continue;
            }
            if trimmed.starts_with("-a ") {
                match save_real(trimmed, &src) {
                    Ok((key, rs)) => match t.services.iter_mut().rev().find(|s| s.key == key) {
                        Some(s) => s.reals.push(rs),
                        None => {
                            let d = Diagnostic {
                                source: src.clone(),
                                message: format!(
                                    "`{trimmed}` adds a real server to a service no earlier `-A` line defines (ipvsadm -R refuses it): what that service does is unknown"
                                ),
                            };
                            diags.push(d.clone());
                            t.disputed.push((key, d));
                        }
                    },
                    Err(e) => unread(e),
                }
                continue;
            }
            // ipvsadm -Ln
            if let Some(rest) = trimmed.strip_prefix("->") {
                if in_unread {
                    // Covered by the service line's diagnostic.
                    continue;
                }
                match list_real(rest, &src) {
                    Ok(rs) => match t.services.last_mut() {
                        Some(s) => s.reals.push(rs),
                        None => unread("a real server line before any virtual service".into()),
                    },
                    Err(e) => {
                        // The service's real servers are then not all known: remember it on
                        // the service too (an unreadable real server line makes it unknown).
                        unread(e);
                    }
                }
                continue;
            }
            match list_service(trimmed) {
                Ok(vs) => {
                    in_unread = false;
                    t.services.push(VirtualService {
                        source: src.clone(),
                        text: trimmed.to_string(),
                        ..vs
                    })
                }
                Err(e) => {
                    in_unread = true;
                    unread(format!("{e}; its real-server lines are not read either"))
                }
            }
        }
        let before = t.disputed.len();
        t.settle();
        diags.extend(t.disputed[before..].iter().map(|(_, d)| d.clone()));
        if t.services.is_empty() && !t.unread.is_empty() {
            let first = &t.unread[0];
            return Err(err(
                first.source.line,
                1,
                "`ipvsadm -Ln` or `ipvsadm-save -n` output",
                &first.message,
            ));
        }
        Ok((t, diags))
    }

    /// The unread line that may have described the service at `line`'s real servers: a
    /// diagnostic between this service's line and the next service's.
    pub fn unread_within(&self, vs: &VirtualService) -> Option<&Diagnostic> {
        let next = self
            .services
            .iter()
            .filter(|s| s.source.file == vs.source.file && s.source.line > vs.source.line)
            .map(|s| s.source.line)
            .min()
            .unwrap_or(u32::MAX);
        self.unread.iter().find(|d| {
            d.source.file == vs.source.file
                && d.source.line > vs.source.line
                && d.source.line < next
        })
    }
}

/// A shell prompt with the command, as operators paste it: `[root@vm01 ~]# ipvsadm -L -n`,
/// `$ sudo ipvsadm -Ln`.
fn echoed_command(l: &str) -> bool {
    let Some(at) = l.find("ipvsadm") else {
        return false;
    };
    let before = &l[..at];
    before.contains("# ")
        || before.contains("$ ")
        || before.trim().is_empty() && !l.starts_with('-')
}

fn parse_proto(s: &str) -> Option<Proto> {
    match s {
        "TCP" => Some(Proto::Tcp),
        "UDP" => Some(Proto::Udp),
        "SCTP" => Some(Proto::Sctp),
        _ => None,
    }
}

/// `ADDR:PORT` or `[V6]:PORT` with numbers (as `-n` prints them).
fn addr_port(s: &str) -> Result<(IpAddr, u16), String> {
    let (a, p) = if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("`{s}`: expected [ADDRESS]:PORT"))?;
        (a, p)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| format!("`{s}`: expected ADDRESS:PORT"))?
    };
    let addr: IpAddr = a.parse().map_err(|_| {
        format!("`{s}`: `{a}` is not an IP address (ipvsadm without -n prints names: collect `ipvsadm -Ln`)")
    })?;
    let port: u16 = p.parse().map_err(|_| {
        format!("`{s}`: `{p}` is not a port number (ipvsadm without -n prints service names: collect `ipvsadm -Ln`)")
    })?;
    Ok((addr, port))
}

/// `TCP  10.96.0.1:443 rr persistent 10800` / `FWM  100 rr`.
fn list_service(l: &str) -> Result<VirtualService, String> {
    let mut w = l.split_whitespace();
    let kind = w.next().unwrap_or_default();
    let key = if kind == "FWM" {
        let m = w.next().ok_or("`FWM` without its mark")?;
        VsKey::Fwmark(
            m.parse()
                .map_err(|_| format!("`FWM {m}`: the mark is not a number"))?,
        )
    } else {
        let proto = parse_proto(kind).ok_or_else(|| {
            format!("`{l}`: expected TCP, UDP, SCTP or FWM and a virtual service")
        })?;
        let (addr, port) = addr_port(w.next().ok_or("a virtual service without its address")?)?;
        VsKey::Addr { proto, addr, port }
    };
    let scheduler = w
        .next()
        .ok_or_else(|| format!("`{l}`: no scheduler"))?
        .to_string();
    let mut persistent = None;
    let mut flags = Vec::new();
    while let Some(x) = w.next() {
        match x {
            "persistent" => {
                let v = w.next().ok_or("`persistent` without its timeout")?;
                persistent = Some(
                    v.parse()
                        .map_err(|_| format!("`persistent {v}`: not a number of seconds"))?,
                );
            }
            "mask" | "pe" => {
                let v = w.next().unwrap_or_default();
                flags.push(format!("{x} {v}"));
            }
            other => flags.push(other.to_string()),
        }
    }
    Ok(VirtualService::unplaced(key, scheduler, persistent, flags))
}

/// `  -> 10.244.1.5:8443   Masq    1      0          0`.
fn list_real(rest: &str, src: &SourceRef) -> Result<RealServer, String> {
    let w: Vec<&str> = rest.split_whitespace().collect();
    if w.len() < 3 {
        return Err(format!(
            "`->{rest}`: expected ADDRESS:PORT FORWARD WEIGHT ACTIVECONN INACTCONN"
        ));
    }
    let (addr, port) = addr_port(w[0])?;
    let forward = Forward::parse(w[1])
        .ok_or_else(|| format!("`{}`: expected Masq, Route, Tunnel or Local", w[1]))?;
    let weight = w[2]
        .parse()
        .map_err(|_| format!("`{}`: the weight is not a number", w[2]))?;
    let num = |i: usize| w.get(i).and_then(|v| v.parse().ok());
    Ok(RealServer {
        addr,
        port,
        forward,
        weight,
        active: num(3),
        inactive: num(4),
        source: src.clone(),
    })
}

/// The service key of an `ipvsadm-save` `-t|-u|--sctp-service ADDR:PORT` / `-f MARK` pair.
fn save_key(kind: &str, v: &str) -> Result<VsKey, String> {
    let proto = match kind {
        "-t" | "--tcp-service" => Proto::Tcp,
        "-u" | "--udp-service" => Proto::Udp,
        "--sctp-service" => Proto::Sctp,
        "-f" | "--fwmark-service" => {
            return v
                .parse()
                .map(VsKey::Fwmark)
                .map_err(|_| format!("`{kind} {v}`: the mark is not a number"));
        }
        _ => return Err(format!("`{kind}`: expected -t, -u, --sctp-service or -f")),
    };
    let (addr, port) = addr_port(v)?;
    Ok(VsKey::Addr { proto, addr, port })
}

/// `-A -t 10.96.0.1:443 -s rr -p 10800` (None: not such a line).
fn save_service(l: &str) -> Option<Result<VirtualService, String>> {
    let mut w = l.split_whitespace();
    if w.next()? != "-A" {
        return None;
    }
    let kind = w.next()?;
    if !matches!(
        kind,
        "-t" | "-u"
            | "-f"
            | "--tcp-service"
            | "--udp-service"
            | "--sctp-service"
            | "--fwmark-service"
    ) {
        return None;
    }
    Some((|| {
        let key = save_key(kind, w.next().ok_or("a service option without its value")?)?;
        let mut scheduler = "wlc".to_string();
        let mut persistent = None;
        let mut flags = Vec::new();
        let rest: Vec<&str> = w.collect();
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                "-s" | "--scheduler" => {
                    scheduler = rest
                        .get(i + 1)
                        .ok_or("`-s` without a scheduler")?
                        .to_string();
                    i += 2;
                }
                "-p" | "--persistent" => {
                    // The timeout is optional (default 300 s).
                    match rest.get(i + 1).and_then(|v| v.parse().ok()) {
                        Some(t) => {
                            persistent = Some(t);
                            i += 2;
                        }
                        None => {
                            persistent = Some(300);
                            i += 1;
                        }
                    }
                }
                other => {
                    flags.push(other.to_string());
                    i += 1;
                }
            }
        }
        Ok(VirtualService::unplaced(key, scheduler, persistent, flags))
    })())
}

/// `-a -t 10.96.0.1:443 -r 172.16.16.81:6443 -m -w 1`.
fn save_real(l: &str, src: &SourceRef) -> Result<(VsKey, RealServer), String> {
    let w: Vec<&str> = l.split_whitespace().collect();
    let kind = w.get(1).ok_or("`-a` without a service")?;
    let key = save_key(kind, w.get(2).ok_or("a service option without its value")?)?;
    let mut real = None;
    let mut forward = Forward::Route; // ipvsadm's default is gatewaying (-g)
    let mut weight = 1;
    let mut i = 3;
    while i < w.len() {
        match w[i] {
            "-r" | "--real-server" => {
                let v = w.get(i + 1).ok_or("`-r` without an address")?;
                real = Some(addr_port(v)?);
                i += 2;
            }
            "-m" | "--masquerading" => {
                forward = Forward::Masq;
                i += 1;
            }
            "-g" | "--gatewaying" => {
                forward = Forward::Route;
                i += 1;
            }
            "-i" | "--ipip" => {
                forward = Forward::Tunnel;
                i += 1;
            }
            "-w" | "--weight" => {
                let v = w.get(i + 1).ok_or("`-w` without a weight")?;
                weight = v
                    .parse()
                    .map_err(|_| format!("`-w {v}`: the weight is not a number"))?;
                i += 2;
            }
            "-x" | "-y" | "--u-threshold" | "--l-threshold" | "--tun-type" | "--tun-port" => i += 2,
            other => return Err(format!("`{other}`: not an ipvsadm-save real-server option")),
        }
    }
    let (addr, port) = real.ok_or("`-a` without `-r ADDRESS:PORT`")?;
    Ok((
        key,
        RealServer {
            addr,
            port,
            forward,
            weight,
            active: None,
            inactive: None,
            source: src.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const LIST: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.1:443 rr persistent 10800
  -> 172.16.16.81:6443            Masq    1      0          0
  -> 172.16.16.82:6443            Masq    1      3          7
TCP  10.96.0.10:53 wrr
  -> 10.244.1.5:53                Masq    3      0          0
  -> 10.244.2.5:53                Masq    1      0          0
  -> 10.244.3.5:53                Masq    0      0          0
UDP  10.96.0.10:53 rr
TCP  [fd00:96::1]:443 rr
  -> [fd00:244::5]:6443           Masq    1      0          0
FWM  100 wlc
  -> 10.244.1.9:0                 Masq    1      0          0
";

    #[test]
    fn reads_ipvsadm_list() {
        let (t, d) = IpvsTable::parse("ipvsadm.txt", LIST).unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(t.services.len(), 5);
        let api = t.lookup(Proto::Tcp, ip("10.96.0.1"), 443, 0).unwrap();
        assert_eq!(api.persistent, Some(10800));
        assert_eq!(api.reals.len(), 2);
        assert_eq!(api.reals[1].active, Some(3));
        assert_eq!(api.source.line, 4);
        let s = api.schedule_for(ip("1.2.3.4"), 1);
        assert_eq!(s.shares.len(), 2);
        assert!(s.shares.iter().all(|(_, p)| (*p - 0.5).abs() < 1e-12));
        assert!(s.notes.iter().any(|n| n.contains("persistent 10800")));
        // wrr: 3:1, the weight-0 server quiesced
        let dns = t.lookup(Proto::Tcp, ip("10.96.0.10"), 53, 0).unwrap();
        let s = dns.schedule_for(ip("1.2.3.4"), 1);
        assert_eq!(s.shares.len(), 2);
        assert!((s.shares[0].1 - 0.75).abs() < 1e-12);
        assert!(s.notes.iter().any(|n| n.contains("weight 0")));
        // UDP without real servers: no shares
        let u = t.lookup(Proto::Udp, ip("10.96.0.10"), 53, 0).unwrap();
        assert!(u.schedule_for(ip("1.2.3.4"), 1).shares.is_empty());
        assert!(t.lookup(Proto::Tcp, ip("fd00:96::1"), 443, 0).is_some());
        // fwmark first
        let f = t.lookup(Proto::Tcp, ip("10.96.0.1"), 443, 100).unwrap();
        assert_eq!(f.key, VsKey::Fwmark(100));
        assert!(f
            .schedule_for(ip("1.2.3.4"), 1)
            .notes
            .iter()
            .any(|n| n.contains("wlc")));
        assert!(t.lookup(Proto::Tcp, ip("10.96.0.2"), 443, 0).is_none());
    }

    #[test]
    fn source_hashing_is_exact_per_client() {
        // Weights 1, 1, 0: buckets cycle A, B, C (a weight-0 server still takes a bucket,
        // ip_vs_sh_reassign); 10.210.150.87 hashes to bucket 166 = 1 mod 3: B.
        let text = "TCP  10.96.0.1:80 sh\n  -> 10.0.0.1:80 Masq 1 0 0\n  -> 10.0.0.2:80 Masq 1 0 0\n  -> 10.0.0.3:80 Masq 0 0 0\n";
        let (t, _) = IpvsTable::parse("x", text).unwrap();
        let vs = &t.services[0];
        let s = vs.schedule_for(ip("10.210.150.87"), 40000);
        assert_eq!(s.shares.len(), 1);
        assert_eq!(s.shares[0].0.addr, ip("10.0.0.2"));
        assert_eq!(s.reject, 0.0);
        // A client whose bucket is C's (bucket 2 mod 3): no destination without sh-fallback.
        let c = (0u32..)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .find(|a| {
                let IpAddr::V4(v) = a else { unreachable!() };
                ((u32::from(*v).wrapping_mul(0x61C8_8647) >> 24) % 3) == 2
            })
            .unwrap();
        let s = vs.schedule_for(c, 1);
        assert!(s.shares.is_empty());
        assert_eq!(s.reject, 1.0);
        // The reviewer's case (review 13): weights 2, 0, 1 with sh-fallback; 10.0.0.5's bucket
        // (174) holds the weight-0 server; the kernel's fallback probes bucket 2*174 % 256 =
        // 92 first, which holds the first server.
        let wf = "TCP  10.96.0.20:80 sh sh-fallback\n  -> 192.168.1.1:80 Masq 2 0 0\n  -> 192.168.1.2:80 Masq 0 0 0\n  -> 192.168.1.3:80 Masq 1 0 0\n";
        let (t, _) = IpvsTable::parse("x", wf).unwrap();
        let s = t.services[0].schedule_for(ip("10.0.0.5"), 1);
        assert_eq!(s.shares.len(), 1);
        assert_eq!(s.shares[0].0.addr, ip("192.168.1.1"));
        let fb = text.replace(" sh\n", " sh sh-fallback\n");
        let (t, _) = IpvsTable::parse("x", &fb).unwrap();
        let s = t.services[0].schedule_for(c, 1);
        assert_eq!(s.shares.len(), 1);
        assert_eq!(s.reject, 0.0);
    }

    #[test]
    fn a_service_given_twice() {
        // The same output pasted twice: one fact.
        let one = "TCP  10.96.0.1:443 rr\n  -> 10.0.0.1:6443 Masq 1 0 0\n";
        let (t, d) = IpvsTable::parse("x", &format!("{one}{one}")).unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(t.services.len(), 1);
        // Differently: unknown for that service only.
        let other = "TCP  10.96.0.1:443 rr\n  -> 10.0.0.2:6443 Masq 0 0 0\nTCP  10.96.0.10:53 rr\n  -> 10.0.0.9:53 Masq 1 0 0\n";
        let (t, d) = IpvsTable::parse("x", &format!("{one}{other}")).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(t
            .disputed_for(Proto::Tcp, ip("10.96.0.1"), 443, 0)
            .is_some());
        assert!(t.lookup(Proto::Tcp, ip("10.96.0.1"), 443, 0).is_none());
        assert!(t.lookup(Proto::Tcp, ip("10.96.0.10"), 53, 0).is_some());
        // ipvsadm-save: a second -A, a real server twice with other weights, -a before -A.
        for text in [
            "-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 10.0.0.1:6443 -m -w 1\n-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 10.0.0.2:6443 -m -w 1\n",
            "-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 10.0.0.1:6443 -m -w 1\n-a -t 10.96.0.1:443 -r 10.0.0.1:6443 -m -w 0\n",
            "-a -t 10.96.0.1:443 -r 10.0.0.1:6443 -m -w 1\n-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 10.0.0.2:6443 -m -w 1\n",
        ] {
            let (t, d) = IpvsTable::parse("save", text).unwrap();
            assert_eq!(d.len(), 1, "{text}: {d:?}");
            assert!(
                t.disputed_for(Proto::Tcp, ip("10.96.0.1"), 443, 0).is_some(),
                "{text}"
            );
        }
        // -Ln and -save of one table are the same table.
        let (a, _) = IpvsTable::parse(
            "a",
            "TCP  10.96.0.1:443 rr persistent 10800\n  -> 10.0.0.1:6443 Masq 1 3 9\n",
        )
        .unwrap();
        let (b, _) = IpvsTable::parse(
            "b",
            "-A -t 10.96.0.1:443 -s rr -p 10800\n-a -t 10.96.0.1:443 -r 10.0.0.1:6443 -m -w 1\n",
        )
        .unwrap();
        assert!(a.same_services(&b));
        let (c, _) = IpvsTable::parse(
            "c",
            "-A -t 10.96.0.1:443 -s rr -p 10800\n-a -t 10.96.0.1:443 -r 10.0.0.1:6443 -m -w 2\n",
        )
        .unwrap();
        assert!(!a.same_services(&c));
    }

    #[test]
    fn connection_listings_are_named() {
        let text = "IPVS connection entries\npro expire state       source             virtual            destination\nTCP 14:56  ESTABLISHED 10.0.0.5:40000     10.96.0.1:443      10.0.0.1:6443\n";
        assert!(IpvsTable::sniff(text));
        let e = IpvsTable::parse("c", text).unwrap_err();
        assert!(e.found.contains("ipvsadm -Lnc"), "{e}");
    }

    #[test]
    fn reads_ipvsadm_save() {
        let text = "-A -t 10.96.0.1:443 -s rr -p 10800\n-a -t 10.96.0.1:443 -r 172.16.16.81:6443 -m -w 1\n-a -t 10.96.0.1:443 -r 172.16.16.82:6443 -m -w 2\n-A -u 10.96.0.10:53 -s rr\n-A -f 7 -s sh\n-a -f 7 -r 10.0.0.1:0 -g -w 1\n";
        assert!(IpvsTable::sniff(text));
        let (t, d) = IpvsTable::parse("save.txt", text).unwrap();
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(t.services.len(), 3);
        let api = t.lookup(Proto::Tcp, ip("10.96.0.1"), 443, 0).unwrap();
        assert_eq!(api.reals.len(), 2);
        assert_eq!(api.reals[1].weight, 2);
        assert_eq!(api.reals[0].forward, Forward::Masq);
        assert_eq!(api.reals[1].source.line, 3);
        let f = t.lookup(Proto::Udp, ip("1.1.1.1"), 1, 7).unwrap();
        assert_eq!(f.reals[0].forward, Forward::Route);
    }

    #[test]
    fn odd_lines_are_diagnostics_and_other_outputs_errors() {
        let text = "TCP  10.96.0.1:443 rr\n  -> 10.244.1.5:https Masq 1 0 0\n  -> 10.244.2.5:443 Masq 1 0 0\nTCP  ip-10-0-62-121.ec2.internal: rr\n";
        let (t, d) = IpvsTable::parse("x", text).unwrap();
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].message.contains("collect `ipvsadm -Ln`"), "{d:?}");
        let vs = t.lookup(Proto::Tcp, ip("10.96.0.1"), 443, 0).unwrap();
        assert_eq!(vs.reals.len(), 1);
        assert_eq!(t.unread_within(vs).map(|d| d.source.line), Some(2));
        let stats = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\nTCP  10.3.0.1:443 0 0 0 0 0\n";
        let e = IpvsTable::parse("stats", stats).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.found.contains("--stats"), "{e}");
        assert!(IpvsTable::parse("y", "hello world\n").is_err());
        assert!(!IpvsTable::sniff("-A KUBE-SERVICES -j ACCEPT\n"));
    }
}
