//! `ipset save` parsing and membership tests (ipset(8): set types and element syntax).

use std::collections::HashMap;
use std::sync::Arc;

use crate::types::{addr_to_u128, Diagnostic, Packet, ParseError, Proto, SourceRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dim {
    Ip,
    Net,
    Port,
    Iface,
    Set,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Elem {
    /// Address with mask (a host is a full mask).
    Net {
        addr: u128,
        mask: u128,
        prefix: u8,
    },
    /// Inclusive address range.
    Range {
        lo: u128,
        hi: u128,
    },
    /// Protocol (0: tcp-or-udp for bitmap:port) and port range; ICMP type/code in lo/hi.
    Port {
        proto: u8,
        lo: u16,
        hi: u16,
    },
    Iface(Box<str>),
    Set(Box<str>),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    elems: Vec<Elem>,
    nomatch: bool,
}

#[derive(Clone, Debug)]
struct Set {
    dims: Vec<Dim>,
    v6: bool,
    /// Type name, for messages.
    ty: Box<str>,
    entries: Vec<Entry>,
    /// The type is not understood: matches are UNKNOWN.
    unsupported: bool,
}

/// IP sets read from `ipset save` output.
#[derive(Clone, Debug, Default)]
pub struct IpSets {
    sets: HashMap<Box<str>, Set>,
}

fn parse_type(ty: &str) -> Option<Vec<Dim>> {
    let (kind, dims) = ty.split_once(':')?;
    if !matches!(kind, "hash" | "bitmap" | "list") {
        return None;
    }
    if kind == "list" {
        return (dims == "set").then(|| vec![Dim::Set]);
    }
    let mut v = Vec::new();
    for d in dims.split(',') {
        v.push(match d {
            "ip" => Dim::Ip,
            "net" => Dim::Net,
            "port" => Dim::Port,
            "iface" => Dim::Iface,
            _ => return None,
        });
    }
    Some(v)
}

fn parse_net(s: &str, v6: bool) -> Option<Elem> {
    if let Some((a, b)) = s.split_once('-') {
        if !s.contains('/') {
            let lo = crate::parse::parse_addr(a, v6)?;
            let hi = crate::parse::parse_addr(b, v6)?;
            return (lo <= hi).then_some(Elem::Range { lo, hi });
        }
    }
    let bits: u32 = if v6 { 128 } else { 32 };
    let full: u128 = if v6 { u128::MAX } else { u32::MAX as u128 };
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, p.parse::<u32>().ok().filter(|p| *p <= bits)?),
        None => (s, bits),
    };
    let addr = crate::parse::parse_addr(a, v6)?;
    let mask = if p == 0 {
        0
    } else {
        (full << (bits - p)) & full
    };
    Some(Elem::Net {
        addr: addr & mask,
        mask,
        prefix: p as u8,
    })
}

fn parse_port_elem(s: &str) -> Option<Elem> {
    let (proto, port) = match s.split_once(':') {
        Some((p, port)) => (Proto::parse(p)?.number(), port),
        None => (6, s), // ipset(8): "the protocol defaults to TCP"
    };
    if proto == 1 || proto == 58 {
        // icmp:TYPE/CODE or a name; only numeric forms are understood here.
        let (t, c) = port.split_once('/')?;
        let t: u16 = t.parse().ok()?;
        let c: u16 = c.parse().ok()?;
        return Some(Elem::Port {
            proto,
            lo: (t << 8) | c,
            hi: (t << 8) | c,
        });
    }
    let (lo, hi) = match port.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let p = port.parse().ok()?;
            (p, p)
        }
    };
    (lo <= hi).then_some(Elem::Port { proto, lo, hi })
}

impl IpSets {
    /// The sets both hold with other types or members (sorted names). The order of a hash or
    /// bitmap set's members does not count (`ipset save` prints them in hash order); a
    /// `list:set`'s does (its members are tried in order). A set only one holds is no
    /// disagreement: `ipset save NAME` prints one set.
    pub fn differing_common(&self, other: &IpSets) -> Vec<String> {
        let mut v: Vec<String> = self
            .sets
            .iter()
            .filter(|(name, a)| {
                other.sets.get(*name).is_some_and(|b| {
                    !(a.dims == b.dims
                        && a.v6 == b.v6
                        && a.ty == b.ty
                        && a.unsupported == b.unsupported
                        && if a.dims.contains(&Dim::Set) {
                            a.entries == b.entries
                        } else {
                            let sorted = |s: &Set| {
                                let mut v = s.entries.clone();
                                v.sort();
                                v
                            };
                            sorted(a) == sorted(b)
                        })
                })
            })
            .map(|(name, _)| name.to_string())
            .collect();
        v.sort();
        v
    }

    /// Add the sets of `other` that `self` does not hold.
    pub fn add_missing(&mut self, other: &IpSets) {
        for (name, set) in &other.sets {
            self.sets.entry(name.clone()).or_insert_with(|| set.clone());
        }
    }

    /// Parse `ipset save` output (`create NAME TYPE ...`, `add NAME ENTRY ...`). Types
    /// hash:ip, hash:net, hash:ip,port, hash:net,port, hash:ip,port,ip, hash:ip,port,net,
    /// hash:net,iface, hash:net,net, bitmap:ip, bitmap:port and list:set are understood; other
    /// types give a diagnostic and matches against them are UNKNOWN.
    pub fn parse_save(file: &str, text: &str) -> Result<(IpSets, Vec<Diagnostic>), ParseError> {
        let file: Arc<str> = Arc::from(file);
        let mut sets = IpSets::default();
        let mut diags = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n as u32 + 1;
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let col = |tok: &str| -> u32 {
                let off = tok.as_ptr() as usize - line.as_ptr() as usize;
                line[..off].chars().count() as u32 + 1
            };
            let err = |tok: &str, expected: &str| ParseError {
                file: file.clone(),
                line: line_no,
                column: col(tok),
                expected: expected.to_string(),
                found: format!("`{tok}`"),
            };
            let eol = |expected: &str| ParseError {
                file: file.clone(),
                line: line_no,
                column: line.trim_end().chars().count() as u32 + 1,
                expected: expected.to_string(),
                found: "end of line".into(),
            };
            let mut it = l.split_whitespace();
            let cmd = it.next().unwrap_or("");
            match cmd {
                "create" | "-N" | "-exist" => {
                    let name = it.next().ok_or_else(|| eol("a set name"))?;
                    let ty = it
                        .next()
                        .ok_or_else(|| eol("a set type (hash:ip, hash:net, ...)"))?;
                    let mut v6 = false;
                    let rest: Vec<&str> = it.collect();
                    for w in rest.windows(2) {
                        if w[0] == "family" {
                            v6 = match w[1] {
                                "inet" => false,
                                "inet6" => true,
                                other => return Err(err(other, "family inet or inet6")),
                            };
                        }
                    }
                    let (dims, unsupported) = match parse_type(ty) {
                        Some(d) => (d, false),
                        None => {
                            diags.push(Diagnostic {
                                source: SourceRef {
                                    file: file.clone(),
                                    line: line_no,
                                },
                                message: format!("unsupported ipset type `{ty}`; matches against set `{name}` are UNKNOWN"),
                            });
                            (Vec::new(), true)
                        }
                    };
                    sets.sets.insert(
                        name.into(),
                        Set {
                            dims,
                            v6,
                            ty: ty.into(),
                            entries: Vec::new(),
                            unsupported,
                        },
                    );
                }
                "add" | "-A" => {
                    let name = it.next().ok_or_else(|| eol("a set name"))?;
                    let Some(set) = sets.sets.get_mut(name) else {
                        return Err(err(name, "a set created earlier with `create`"));
                    };
                    let elem = it.next().ok_or_else(|| eol("a set element"))?;
                    let mut nomatch = false;
                    for w in it {
                        if w == "nomatch" {
                            nomatch = true;
                        }
                    }
                    if set.unsupported {
                        continue;
                    }
                    let parts: Vec<&str> = elem.split(',').collect();
                    if parts.len() != set.dims.len() {
                        return Err(err(
                            elem,
                            &format!(
                                "an element of type {} ({} parts separated by `,`)",
                                set.ty,
                                set.dims.len()
                            ),
                        ));
                    }
                    let mut elems = Vec::with_capacity(parts.len());
                    for (p, d) in parts.iter().zip(set.dims.iter()) {
                        let e = match d {
                            Dim::Ip | Dim::Net => parse_net(p, set.v6),
                            Dim::Port => {
                                if set.ty.starts_with("bitmap") {
                                    parse_port_elem(p).map(|e| match e {
                                        Elem::Port { lo, hi, .. } if !p.contains(':') => {
                                            Elem::Port { proto: 0, lo, hi }
                                        }
                                        e => e,
                                    })
                                } else {
                                    parse_port_elem(p)
                                }
                            }
                            Dim::Iface => Some(Elem::Iface((*p).into())),
                            Dim::Set => Some(Elem::Set((*p).into())),
                        };
                        elems.push(
                            e.ok_or_else(|| err(elem, &format!("an element of type {}", set.ty)))?,
                        );
                    }
                    set.entries.push(Entry { elems, nomatch });
                }
                _ => return Err(err(cmd, "`create` or `add`")),
            }
        }
        Ok((sets, diags))
    }

    /// Is this set known?
    pub fn contains_set(&self, name: &str) -> bool {
        self.sets.contains_key(name)
    }

    /// Does the packet match set `name` with per-dimension directions (`true`: source)?
    /// `Err(reason)` when it cannot be decided. With `return_nomatch`, an element added with
    /// `nomatch` makes it match (xt_set `--return-nomatch`).
    pub(crate) fn test_set(
        &self,
        name: &str,
        dirs: &[bool],
        return_nomatch: bool,
        pkt: &Packet,
        in_iface: Option<&str>,
        out_iface: Option<&str>,
    ) -> Result<bool, String> {
        let probe = SetProbe {
            dirs,
            pkt,
            in_iface,
            out_iface,
            return_nomatch,
        };
        self.test(name, &probe, 0)
    }

    /// [`Self::test_set`] for set `name` at `depth` of `list:set` nesting.
    fn test(&self, name: &str, q: &SetProbe, depth: u8) -> Result<bool, String> {
        let SetProbe {
            dirs,
            pkt,
            in_iface,
            out_iface,
            return_nomatch,
        } = *q;
        let Some(set) = self.sets.get(name) else {
            return Err(format!("ipset `{name}` is not in the ipset data"));
        };
        if set.unsupported {
            return Err(format!("ipset `{name}` has unsupported type {}", set.ty));
        }
        if depth > 8 {
            return Err(format!("ipset `{name}`: list:set nesting too deep"));
        }
        if set.dims == [Dim::Set] {
            for e in &set.entries {
                if let Some(Elem::Set(member)) = e.elems.first() {
                    if self.test(member, q, depth + 1)? {
                        return Ok(true);
                    }
                }
            }
            return Ok(false);
        }
        if dirs.len() < set.dims.len() {
            // The kernel refuses a match with fewer flags than the set has dimensions.
            return Ok(false);
        }
        let pkt_v6 = pkt.src.is_ipv6();
        if pkt_v6 != set.v6 {
            return Ok(false);
        }
        let mut best: Option<(u32, bool)> = None;
        for e in &set.entries {
            let mut ok = true;
            let mut spec = 0u32;
            for (k, el) in e.elems.iter().enumerate() {
                let src = dirs[k];
                let hit = match el {
                    Elem::Net { addr, mask, prefix } => {
                        let a = addr_to_u128(if src { pkt.src } else { pkt.dst });
                        spec += *prefix as u32;
                        (a & mask) == *addr
                    }
                    Elem::Range { lo, hi } => {
                        let a = addr_to_u128(if src { pkt.src } else { pkt.dst });
                        *lo <= a && a <= *hi
                    }
                    Elem::Port { proto, lo, hi } => {
                        let pn = pkt.proto.number();
                        if *proto == 1 || *proto == 58 {
                            match pkt.icmp_type {
                                Some((t, Some(c))) if pn == *proto => {
                                    let v = ((t as u16) << 8) | c as u16;
                                    *lo <= v && v <= *hi
                                }
                                Some((_, None)) if pn == *proto => {
                                    return Err("ICMP code of the packet unknown".into())
                                }
                                _ => false,
                            }
                        } else {
                            let proto_ok = if *proto == 0 {
                                pkt.proto.has_ports()
                            } else {
                                pn == *proto
                            };
                            let p = if src { pkt.sport } else { pkt.dport };
                            proto_ok && *lo <= p && p <= *hi
                        }
                    }
                    Elem::Iface(name) => {
                        let i = if src { in_iface } else { out_iface };
                        match i {
                            Some(i) => i == &**name,
                            None => {
                                return Err(format!(
                                    "ipset `{}` needs the {} interface",
                                    set.ty,
                                    if src { "incoming" } else { "outgoing" }
                                ))
                            }
                        }
                    }
                    Elem::Set(_) => false,
                };
                if !hit {
                    ok = false;
                    break;
                }
            }
            if ok && best.is_none_or(|(s, _)| spec > s) {
                best = Some((spec, e.nomatch));
            }
        }
        Ok(match best {
            Some((_, nomatch)) => !nomatch || return_nomatch,
            None => false,
        })
    }
}

/// What a `set` match asks of a set: the packet, the direction of each dimension (`true`:
/// source), the packet's interfaces and whether a `nomatch` element makes it match.
#[derive(Clone, Copy)]
struct SetProbe<'a> {
    dirs: &'a [bool],
    pkt: &'a Packet,
    in_iface: Option<&'a str>,
    out_iface: Option<&'a str>,
    return_nomatch: bool,
}
