//! Parsing `conntrack -L` output (conntrack-tools' default text format):
//!
//! ```text
//! tcp      6 119 SYN_SENT src=10.70.0.2 dst=10.96.0.10 sport=20001 dport=80 [UNREPLIED] src=10.80.0.3 dst=10.80.0.1 sport=8080 dport=20001 mark=0 use=1
//! udp      17 29 src=10.70.0.3 dst=10.99.0.1 sport=25001 dport=53 [UNREPLIED] src=10.99.0.1 dst=10.70.0.3 sport=53 dport=25001 mark=16 use=1
//! ```
//!
//! The first `src/dst/sport/dport` group is the original direction, the second the reply
//! direction: the reply source is the original destination after DNAT, the reply
//! destination the original source after SNAT/MASQUERADE.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

/// One tracked connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `tcp` / `udp` / ...
    pub proto: String,
    /// Original direction: (src, dst).
    pub orig: (SocketAddrV4, SocketAddrV4),
    /// Reply direction: (src, dst).
    pub reply: (SocketAddrV4, SocketAddrV4),
    /// `mark=` (the connection mark).
    pub mark: u32,
    /// The conntrack id (`-o id`), when printed.
    pub id: Option<u32>,
}

/// Parse the listing; lines that are not TCP/UDP/ICMP entries are ignored. For ICMP the
/// echo identifier stands in for the source port (orig) and destination port (reply).
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let proto = match words.next() {
            Some(p @ ("tcp" | "udp" | "icmp")) => p.to_string(),
            _ => continue,
        };
        let mut groups: Vec<[Option<String>; 4]> = vec![Default::default()];
        let mut mark = 0;
        let mut icmp_ids: Vec<String> = Vec::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                continue;
            };
            let slot = match k {
                "src" => 0,
                "dst" => 1,
                "sport" => 2,
                "dport" => 3,
                "mark" => {
                    mark = v.parse().unwrap_or(0);
                    continue;
                }
                // ICMP echo: the identifier plays the source port (orig) / destination port
                // (reply); the other port is 0.
                "id" => {
                    icmp_ids.push(v.to_string());
                    continue;
                }
                _ => continue,
            };
            if groups.last().is_some_and(|g| g[slot].is_some()) {
                groups.push(Default::default());
            }
            if let Some(g) = groups.last_mut() {
                g[slot] = Some(v.to_string());
            }
        }
        let sa = |g: &[Option<String>; 4], a: usize, p: usize| -> Option<SocketAddrV4> {
            let ip: Ipv4Addr = g[a].as_deref()?.parse().ok()?;
            let port: u16 = g[p].as_deref()?.parse().ok()?;
            Some(SocketAddrV4::new(ip, port))
        };
        // `-o id` appends `id=N` (the conntrack id) after `use=`; ICMP entries carry two
        // earlier `id=` (the echo identifiers of both directions).
        let echo_ids = if proto == "icmp" { 2 } else { 0 };
        let ct_id = if icmp_ids.len() > echo_ids {
            icmp_ids.last().and_then(|v| v.parse().ok())
        } else {
            None
        };
        if proto == "icmp" {
            // src/dst pairs only; fill the ports from the identifiers.
            if groups.len() < 2 || icmp_ids.len() < 2 {
                continue;
            }
            groups[0][2] = Some(icmp_ids[0].clone());
            groups[0][3] = Some("0".into());
            groups[1][2] = Some("0".into());
            groups[1][3] = Some(icmp_ids[1].clone());
        }
        if groups.len() < 2 {
            continue;
        }
        let (o, r) = (&groups[0], &groups[1]);
        if let (Some(os), Some(od), Some(rs), Some(rd)) =
            (sa(o, 0, 2), sa(o, 1, 3), sa(r, 0, 2), sa(r, 1, 3))
        {
            out.push(Entry {
                proto,
                orig: (os, od),
                reply: (rs, rd),
                mark,
                id: ct_id,
            });
        }
    }
    out
}

/// Index entries by (proto, original source, original destination).
pub fn index(entries: Vec<Entry>) -> HashMap<(String, SocketAddrV4, SocketAddrV4), Entry> {
    entries
        .into_iter()
        .map(|e| ((e.proto.clone(), e.orig.0, e.orig.1), e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_original_and_reply_tuples_and_mark() {
        let t = "tcp      6 119 SYN_SENT src=10.70.0.2 dst=10.96.0.10 sport=20001 dport=80 [UNREPLIED] src=10.80.0.3 dst=10.80.0.1 sport=8080 dport=20001 mark=16 use=1\n\
                 udp      17 29 src=10.70.0.3 dst=10.99.0.1 sport=25001 dport=53 [UNREPLIED] src=10.99.0.1 dst=10.70.0.3 sport=53 dport=25001 mark=0 use=1\n\
                 icmp     1 29 src=10.70.0.3 dst=10.99.0.1 type=8 code=0 id=7 src=10.99.0.1 dst=10.70.0.3 type=0 code=0 id=7 mark=0 use=1 id=4076372030\n";
        let e = parse(t);
        assert_eq!(e.len(), 3);
        assert_eq!(e[2].proto, "icmp");
        assert_eq!(e[2].orig.0, "10.70.0.3:7".parse().unwrap());
        assert_eq!(
            e[2].reply,
            (
                "10.99.0.1:0".parse().unwrap(),
                "10.70.0.3:7".parse().unwrap()
            )
        );
        assert_eq!(e[0].orig.1, "10.96.0.10:80".parse().unwrap());
        assert_eq!(e[0].reply.0, "10.80.0.3:8080".parse().unwrap());
        assert_eq!(e[0].reply.1, "10.80.0.1:20001".parse().unwrap());
        assert_eq!(e[0].mark, 16);
        assert_eq!(e[0].id, None);
        assert_eq!(e[2].id, Some(4076372030));
        assert_eq!(e[1].proto, "udp");
    }
}
