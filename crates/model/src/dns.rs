//! DNS records.
//!
//! Records come from BIND zone files and from resolver outputs (`nslookup`, `dig`). Owner names
//! and CNAME targets are stored as absolute, lowercased names with a trailing dot
//! (`dc173dashboard1.cloud.k2.ericsson.se.`): DNS names compare case-insensitively (RFC 4343).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::SourceRef;

/// Where a record was learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsOrigin {
    /// A BIND zone file.
    ZoneFile,
    /// An `nslookup` answer; `server` is the `Server:`/`Address:` it printed.
    Nslookup { server: Option<IpAddr> },
    /// A `dig` answer; `server` is from `;; SERVER: A#53(...)`.
    Dig { server: Option<IpAddr> },
}

/// A record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Absolute, lowercased, trailing dot.
    Cname(String),
    /// Any other type, kept as text (with a note from the reader).
    Other {
        rtype: String,
        text: String,
    },
}

impl RData {
    /// The data as a zone file writes it (`10.0.0.1`, `b.example.`).
    pub fn text(&self) -> String {
        match self {
            RData::A(a) => a.to_string(),
            RData::Aaaa(a) => a.to_string(),
            RData::Cname(t) => t.clone(),
            RData::Other { text, .. } => text.clone(),
        }
    }

    pub fn type_name(&self) -> &str {
        match self {
            RData::A(_) => "A",
            RData::Aaaa(_) => "AAAA",
            RData::Cname(_) => "CNAME",
            RData::Other { rtype, .. } => rtype,
        }
    }
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// Owner name: absolute, lowercased, trailing dot.
    pub name: String,
    pub data: RData,
    pub ttl: Option<u32>,
    /// `IN` unless stated.
    pub class: String,
    pub origin: DnsOrigin,
    pub source: SourceRef,
}

/// A resolver output that got no answer for a name: `NXDOMAIN` (the name does not exist),
/// `SERVFAIL`, `REFUSED`, or a timeout. A source that answers the traced name this way
/// disagrees with one that gives it addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFailure {
    /// The queried name: absolute, lowercased, trailing dot.
    pub name: String,
    /// What the resolver said (`NXDOMAIN`, `SERVFAIL`, `REFUSED`, `timed out`, ...).
    pub status: String,
    /// When only one record type is without an answer (NOERROR with no answer: the name
    /// exists, without a record of that type), that type (`A`, `AAAA`); `None` when the
    /// name got no answer whatever the type.
    pub qtype: Option<String>,
    pub source: SourceRef,
}

impl DnsFailure {
    /// Does this failure concern a client of this family (it asked for its addresses)?
    pub fn concerns(&self, v4: bool) -> bool {
        match self.qtype.as_deref() {
            Some("A") => v4,
            Some("AAAA") => !v4,
            _ => true,
        }
    }
}

/// All DNS data of the snapshot.
#[derive(Debug, Default, Clone)]
pub struct Dns {
    pub records: Vec<DnsRecord>,
    /// DNS servers named by resolver outputs (nslookup `Server:`, dig `;; SERVER:`).
    pub servers: Vec<(IpAddr, SourceRef)>,
    /// Queries a resolver output shows without an answer (see [`DnsFailure`]).
    pub failures: Vec<DnsFailure>,
    /// Files under `dns/` that were not read (a format kubepath does not recognise, an error,
    /// too large): (path, why). What they answer is unknown, so a name without records may
    /// have its answer there.
    pub left_out: Vec<(std::sync::Arc<str>, String)>,
    /// Records by owner name, and every existing name (owners and their ancestors), built on
    /// first use for the records there are then (a lookup per name was a scan of every
    /// record: a zone of 20,000 names took minutes to inspect).
    index: std::sync::OnceLock<NameIndex>,
}

/// See [`Dns::index`].
#[derive(Debug, Default, Clone)]
struct NameIndex {
    /// How many records it was built for: a change of `records` since (never done after
    /// loading) makes lookups scan instead.
    len: usize,
    by_name: std::collections::HashMap<String, Vec<u32>>,
    exists: std::collections::HashSet<String>,
    zone_files: std::collections::HashSet<std::sync::Arc<str>>,
}

/// Normalise a DNS name: lowercase, with exactly one trailing dot. Relative names are taken
/// as absolute (resolver outputs print absolute names without the dot).
pub fn fqdn(name: &str) -> String {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    format!("{n}.")
}

/// The result of following a name through CNAMEs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution<'a> {
    /// Each CNAME record followed, in order.
    pub chain: Vec<&'a DnsRecord>,
    /// The address records of the final name.
    pub addresses: Vec<&'a DnsRecord>,
    /// Set when the chain loops or is longer than 16 links.
    pub loop_detected: bool,
    /// Set when the chain was cut at 16 links without looping.
    pub too_long: bool,
    /// When the sources that answer the final name (each file: a zone, an `nslookup` or `dig`
    /// capture) give different address sets: each source's first record and its addresses,
    /// in file order. Which answer a client gets is then unknown (a stale capture, a changed
    /// record, split-horizon DNS). Empty when they agree or one source answers.
    pub disagreement: Vec<(SourceRef, Vec<IpAddr>)>,
    /// Resolver outputs that got no answer (`NXDOMAIN`, `SERVFAIL`, a timeout) for the name or
    /// a name of its CNAME chain. Beside addresses from another source, a disagreement too.
    pub failures: Vec<&'a DnsFailure>,
}

impl Dns {
    /// The name index for the current records, if it is current.
    fn index(&self) -> Option<&NameIndex> {
        let ix = self.index.get_or_init(|| {
            let mut ix = NameIndex {
                len: self.records.len(),
                ..NameIndex::default()
            };
            for (i, r) in self.records.iter().enumerate() {
                ix.by_name.entry(r.name.clone()).or_default().push(i as u32);
                // The name and its ancestors exist (`a.b.c.` makes `b.c.` and `c.` exist).
                let mut n = r.name.as_str();
                while !n.is_empty() && ix.exists.insert(n.to_string()) {
                    n = n.split_once('.').map_or("", |(_, rest)| rest);
                }
                if r.origin == DnsOrigin::ZoneFile {
                    ix.zone_files.insert(r.source.file.clone());
                }
            }
            ix
        });
        (ix.len == self.records.len()).then_some(ix)
    }

    /// Is `file` a zone file (it holds every record of the names it has, so a type it does
    /// not give a name is a type the name does not have)?
    pub fn is_zone_file(&self, file: &str) -> bool {
        match self.index() {
            Some(ix) => ix.zone_files.contains(file),
            None => self
                .records
                .iter()
                .any(|r| &*r.source.file == file && r.origin == DnsOrigin::ZoneFile),
        }
    }

    /// Records whose owner is `name` (any spelling; compared as FQDN).
    pub fn records_for<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a DnsRecord> + 'a {
        let n = fqdn(name);
        self.named(&n).into_iter()
    }

    /// Records whose owner is exactly `n` (an FQDN as stored).
    fn named(&self, n: &str) -> Vec<&DnsRecord> {
        match self.index() {
            Some(ix) => ix
                .by_name
                .get(n)
                .map(|v| v.iter().map(|&i| &self.records[i as usize]).collect())
                .unwrap_or_default(),
            None => self.records.iter().filter(|r| r.name == n).collect(),
        }
    }

    /// Whether `name` exists in the data: it owns records, or is an ancestor of a name that
    /// does (an empty non-terminal, RFC 4592 section 2.2.2).
    fn name_exists(&self, name: &str) -> bool {
        if let Some(ix) = self.index() {
            return ix.exists.contains(name);
        }
        let suffix = format!(".{name}");
        self.records
            .iter()
            .any(|r| r.name == name || r.name.ends_with(&suffix))
    }

    /// The records answering `name`: its own, or, when the name does not exist, those of the
    /// wildcard `*.<closest encloser>` (RFC 4592: the closest encloser is the longest existing
    /// ancestor; only the wildcard directly below it applies).
    pub fn answers_for<'a>(&'a self, name: &str) -> Vec<&'a DnsRecord> {
        let n = fqdn(name);
        if self.name_exists(&n) {
            return self.records_for(&n).collect();
        }
        let mut rest = n.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if parent.is_empty() {
                break;
            }
            if self.name_exists(parent) {
                return self.named(&format!("*.{parent}"));
            }
            rest = parent;
        }
        Vec::new()
    }

    /// The addresses `name` resolves to when source `file` is taken as the truth where it
    /// has records for a name, and the other sources where it has none (see
    /// [`Resolution::disagreement`]). Empty on a loop.
    fn resolve_in(&self, name: &str, file: &str) -> Vec<IpAddr> {
        let mut current = fqdn(name);
        for _ in 0..=16 {
            let all = self.answers_for(&current);
            let own: Vec<&DnsRecord> = all
                .iter()
                .copied()
                .filter(|r| &*r.source.file == file)
                .collect();
            let recs = if own.is_empty() { all } else { own };
            if let Some(RData::Cname(t)) = recs
                .iter()
                .map(|r| &r.data)
                .find(|d| matches!(d, RData::Cname(_)))
            {
                current = t.clone();
                continue;
            }
            let mut ips: Vec<IpAddr> = Vec::new();
            for r in recs {
                let ip = match r.data {
                    RData::A(a) => IpAddr::V4(a),
                    RData::Aaaa(a) => IpAddr::V6(a),
                    _ => continue,
                };
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
            return ips;
        }
        Vec::new()
    }

    /// Follow CNAMEs from `name` and collect the A/AAAA records at the end, applying
    /// wildcards ([`Dns::answers_for`]). Duplicates of one record learned from several
    /// sources (zone file and nslookup) are kept once, first seen.
    pub fn resolve(&self, name: &str) -> Resolution<'_> {
        let mut chain: Vec<&DnsRecord> = Vec::new();
        let mut current = fqdn(name);
        let mut seen = vec![current.clone()];
        let mut loop_detected = false;
        let mut too_long = false;
        loop {
            let cname = self
                .answers_for(&current)
                .into_iter()
                .find(|r| matches!(r.data, RData::Cname(_)));
            match cname {
                Some(r) => {
                    let RData::Cname(target) = &r.data else { break };
                    chain.push(r);
                    if seen.contains(target) || chain.len() > 16 {
                        loop_detected = true;
                        too_long = !seen.contains(target);
                        break;
                    }
                    seen.push(target.clone());
                    current = target.clone();
                }
                None => break,
            }
        }
        let mut addresses: Vec<&DnsRecord> = Vec::new();
        let mut by_source: Vec<(SourceRef, Vec<IpAddr>)> = Vec::new();
        if !loop_detected {
            for r in self.answers_for(&current) {
                if matches!(r.data, RData::A(_) | RData::Aaaa(_))
                    && !addresses.iter().any(|a| a.data == r.data)
                {
                    addresses.push(r);
                }
            }
            // What each source that answers a name of the chain would give on its own (its
            // own CNAMEs and addresses where it has records for a name, the other sources'
            // where it has none): a capture whose CNAME or address differs from the zone's
            // disagrees even when the addresses it names are elsewhere in the data.
            let mut names: Vec<String> = vec![fqdn(name)];
            names.extend(chain.iter().filter_map(|r| match &r.data {
                RData::Cname(t) => Some(t.clone()),
                _ => None,
            }));
            for n in &names {
                for r in self.answers_for(n) {
                    if !by_source.iter().any(|(s, _)| s.file == r.source.file) {
                        by_source.push((r.source.clone(), Vec::new()));
                    }
                }
            }
            for (src, ips) in &mut by_source {
                *ips = self.resolve_in(name, &src.file);
            }
        }
        // Compared per family among the sources that answer it: a `dig A` capture beside a
        // zone with A and AAAA records does not disagree. A zone file holds all of the name's
        // records, so a zone without an AAAA record for it says it has none, and a capture
        // that gives one disagrees (issue #11, fifth review).
        let agree = [true, false].into_iter().all(|v4| {
            let sets: Vec<Vec<IpAddr>> = by_source
                .iter()
                .filter(|(src, ips)| {
                    ips.iter().any(|ip| ip.is_ipv4() == v4) || self.is_zone_file(&src.file)
                })
                .map(|(_, ips)| {
                    ips.iter()
                        .copied()
                        .filter(|ip| ip.is_ipv4() == v4)
                        .collect()
                })
                .collect();
            sets.windows(2)
                .all(|w| w[0].len() == w[1].len() && w[0].iter().all(|x| w[1].contains(x)))
        });
        let mut names: Vec<String> = vec![fqdn(name)];
        names.extend(chain.iter().filter_map(|r| match &r.data {
            RData::Cname(t) => Some(t.clone()),
            _ => None,
        }));
        let failures = self
            .failures
            .iter()
            .filter(|f| names.contains(&f.name))
            .collect();
        Resolution {
            chain,
            addresses,
            loop_detected,
            too_long,
            disagreement: if agree { Vec::new() } else { by_source },
            failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, data: RData) -> DnsRecord {
        DnsRecord {
            name: fqdn(name),
            data,
            ttl: None,
            class: "IN".into(),
            origin: DnsOrigin::ZoneFile,
            source: SourceRef::new("z", 1),
        }
    }

    #[test]
    fn sources_that_disagree_on_a_name_are_reported() {
        // Files named `zone` are zone files, the others resolver captures.
        let origin = |file: &str| {
            if file == "zone" {
                DnsOrigin::ZoneFile
            } else {
                DnsOrigin::Nslookup { server: None }
            }
        };
        let at = |file: &str, name: &str, ip: &str| DnsRecord {
            source: SourceRef::new(file, 1),
            origin: origin(file),
            ..rec(name, RData::A(ip.parse().unwrap()))
        };
        let v6 = DnsRecord {
            source: SourceRef::new("zone", 2),
            ..rec("a.example", RData::Aaaa("2001:db8::1".parse().unwrap()))
        };
        let dns = |records| Dns {
            records,
            servers: Vec::new(),
            ..Default::default()
        };
        // The same answer from a zone and a capture (the AAAA only in the zone): agree.
        let d = dns(vec![
            at("zone", "a.example", "10.0.0.1"),
            v6.clone(),
            at("nslookup.txt", "a.example", "10.0.0.1"),
            at("other.txt", "b.example", "10.0.0.9"),
        ]);
        assert!(d.resolve("a.example").disagreement.is_empty());
        // An AAAA record in a capture only, beside a zone that gives the name no AAAA: the
        // zone holds all of the name's records, so they disagree (fifth review).
        let d = dns(vec![
            at("zone", "a.example", "10.0.0.1"),
            at("nslookup.txt", "a.example", "10.0.0.1"),
            DnsRecord {
                source: SourceRef::new("nslookup.txt", 2),
                origin: origin("nslookup.txt"),
                ..rec("a.example", RData::Aaaa("2001:db8::1".parse().unwrap()))
            },
        ]);
        assert_eq!(d.resolve("a.example").disagreement.len(), 2);
        // A capture that names another address: both sources, with their sets.
        let d = dns(vec![
            at("zone", "a.example", "10.0.0.1"),
            v6,
            at("nslookup.txt", "a.example", "10.0.0.2"),
        ]);
        let r = d.resolve("a.example");
        assert_eq!(r.addresses.len(), 3);
        let got: Vec<(&str, usize)> = r
            .disagreement
            .iter()
            .map(|(s, ips)| (&*s.file, ips.len()))
            .collect();
        assert_eq!(got, [("zone", 2), ("nslookup.txt", 1)]);
        // Sources that disagree on the alias, not on an address of it (review): the zone's
        // CNAME leads to 10.0.0.1, the capture's to another name (whose address the zone
        // also holds), or the capture gives the name an address of its own.
        let cname = |file: &str, name: &str, to: &str| DnsRecord {
            source: SourceRef::new(file, 1),
            ..rec(name, RData::Cname(fqdn(to)))
        };
        let d = dns(vec![
            cname("zone", "www.example", "a.example"),
            at("zone", "a.example", "10.0.0.1"),
            at("zone", "b.example", "10.0.0.2"),
            cname("nslookup.txt", "www.example", "b.example"),
            at("nslookup.txt", "b.example", "10.0.0.2"),
        ]);
        let r = d.resolve("www.example");
        let got: Vec<(&str, Vec<IpAddr>)> = r
            .disagreement
            .iter()
            .map(|(s, ips)| (&*s.file, ips.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("zone", vec!["10.0.0.1".parse().unwrap()]),
                ("nslookup.txt", vec!["10.0.0.2".parse().unwrap()])
            ]
        );
        let d = dns(vec![
            cname("zone", "www.example", "a.example"),
            at("zone", "a.example", "10.0.0.1"),
            at("nslookup.txt", "www.example", "10.0.0.9"),
        ]);
        assert_eq!(d.resolve("www.example").disagreement.len(), 2);
        // The same alias and address from both: agree.
        let d = dns(vec![
            cname("zone", "www.example", "a.example"),
            at("zone", "a.example", "10.0.0.1"),
            cname("nslookup.txt", "www.example", "a.example"),
            at("nslookup.txt", "a.example", "10.0.0.1"),
        ]);
        assert!(d.resolve("www.example").disagreement.is_empty());
    }

    #[test]
    fn wildcards_apply_below_the_closest_encloser_only() {
        let d = Dns {
            records: vec![
                rec("*.apps.example.", RData::A("10.0.0.9".parse().unwrap())),
                rec("www.apps.example.", RData::A("10.0.0.1".parse().unwrap())),
                rec("x.sub.apps.example.", RData::A("10.0.0.2".parse().unwrap())),
                rec("alias.example.", RData::Cname("foo.apps.example.".into())),
            ],
            servers: Vec::new(),
            ..Default::default()
        };
        let a = |n: &str| {
            d.resolve(n)
                .addresses
                .iter()
                .map(|r| r.data.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            a("foo.apps.example"),
            vec![RData::A("10.0.0.9".parse().unwrap())]
        );
        assert_eq!(
            a("www.apps.example"),
            vec![RData::A("10.0.0.1".parse().unwrap())]
        );
        assert_eq!(
            a("alias.example"),
            vec![RData::A("10.0.0.9".parse().unwrap())]
        );
        // sub.apps.example exists (empty non-terminal): *.apps.example does not cover it or
        // names below it.
        assert!(a("sub.apps.example").is_empty());
        assert!(a("y.sub.apps.example").is_empty());
        assert!(a("other.example").is_empty());
    }

    #[test]
    fn resolve_follows_cnames_and_detects_loops() {
        let d = Dns {
            records: vec![
                rec("a.example.", RData::Cname("b.example.".into())),
                rec("B.example", RData::A("10.0.0.1".parse().unwrap())),
                rec("b.example.", RData::A("10.0.0.1".parse().unwrap())),
                rec("x.", RData::Cname("y.".into())),
                rec("y.", RData::Cname("x.".into())),
            ],
            servers: Vec::new(),
            ..Default::default()
        };
        let r = d.resolve("A.EXAMPLE");
        assert_eq!(r.chain.len(), 1);
        assert_eq!(r.addresses.len(), 1, "duplicates kept once");
        assert!(!r.loop_detected);
        assert!(d.resolve("x").loop_detected);
        assert!(!d.resolve("x").too_long);
        // A chain of 20 distinct names: cut, and said to be too long, not to loop.
        let d = Dns {
            records: (0..20)
                .map(|i| rec(&format!("c{i}."), RData::Cname(format!("c{}.", i + 1))))
                .collect(),
            servers: Vec::new(),
            ..Default::default()
        };
        let r = d.resolve("c0");
        assert!(r.loop_detected && r.too_long);
        assert!(d.resolve("nothere").addresses.is_empty());
    }
}
