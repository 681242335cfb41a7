//! The realistic rulesets in `fixtures/iptables/ok/` (kube-proxy, Calico, Docker dumps written
//! for the engine's own tests), used as kernel-agreement cases: probes are derived from the
//! rules themselves (every `-d ADDR/32 ... -p P --dport N` in the nat table, every NodePort
//! `--dport N` in KUBE-NODEPORTS, sent to a node address), from a client on each client link.
//! Their pod addresses are not in the lab: the node forwards them by its default route, and
//! conntrack still shows the kernel's DNAT choice.

use kubepath_netfilter_gen::{LabPlan, Probe, ProbeProto};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// One fixture file.
pub struct Fixture {
    /// `fixture:<file name>`.
    pub name: String,
    /// File content.
    pub text: String,
    /// Probes derived from its rules.
    pub probes: Vec<Probe>,
    /// `ipset save` content of the companion `<stem>.ipset` file, if there is one.
    pub ipset: Option<String>,
}

/// Max distinct (destination, port, protocol) targets taken from one fixture.
const MAX_TARGETS: usize = 12;

/// Read every IPv4 `iptables-save` fixture (`*.iptables-save`, `*.rules` with a `*table`
/// header). Returns the fixtures and, for files not used, why.
pub fn load(plan: &LabPlan) -> (Vec<Fixture>, Vec<String>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/iptables/ok");
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        skipped.push(format!("{}: not readable", dir.display()));
        return (out, skipped);
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(text) = std::fs::read_to_string(&f) else {
            skipped.push(format!("{name}: not UTF-8 text"));
            continue;
        };
        if !text.lines().any(|l| l.starts_with('*')) {
            skipped.push(format!(
                "{name}: not iptables-save format (no *table header)"
            ));
            continue;
        }
        if text.contains("ip6tables") || text.lines().any(is_v6_rule) {
            skipped.push(format!("{name}: IPv6 ruleset (the lab is IPv4)"));
            continue;
        }
        let probes = probes_for(&text, plan);
        let ipset = f
            .file_stem()
            .map(|stem| dir.join(format!("{}.ipset", stem.to_string_lossy())))
            .and_then(|p| std::fs::read_to_string(p).ok());
        out.push(Fixture {
            name: format!("fixture:{name}"),
            text,
            probes,
            ipset,
        });
    }
    (out, skipped)
}

fn is_v6_rule(l: &str) -> bool {
    l.starts_with("-A ")
        && l.split_whitespace()
            .zip(l.split_whitespace().skip(1))
            .any(|(o, v)| (o == "-s" || o == "-d") && v.contains(':'))
}

fn probes_for(text: &str, plan: &LabPlan) -> Vec<Probe> {
    let mut targets: BTreeSet<(Ipv4Addr, u16, &'static str)> = BTreeSet::new();
    let mut table = "";
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = if t.trim() == "nat" { "nat" } else { "other" };
            continue;
        }
        if table != "nat" || !line.starts_with("-A ") {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let get = |opt: &str| -> Option<&str> { w.windows(2).find(|p| p[0] == opt).map(|p| p[1]) };
        let negated = |opt: &str| w.windows(2).any(|p| p[0] == "!" && p[1] == opt);
        let proto = match get("-p") {
            Some("tcp") if !negated("-p") => "tcp",
            Some("udp") if !negated("-p") => "udp",
            _ => continue,
        };
        let Some(port) = get("--dport").and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        if negated("--dport") {
            continue;
        }
        let chain = w.get(1).copied().unwrap_or("");
        if let Some(d) = get("-d") {
            if negated("-d") {
                continue;
            }
            let addr = d.strip_suffix("/32").unwrap_or(d);
            if let Ok(a) = addr.parse::<Ipv4Addr>() {
                // Only destinations a client can send to through the node: not loopback,
                // multicast, broadcast or unspecified, and not on a client link (the client
                // would reach those itself).
                let on_client_link = plan
                    .client_links
                    .iter()
                    .any(|l| l.network().octets()[..3] == a.octets()[..3]);
                if !(a.is_loopback()
                    || a.is_multicast()
                    || a.is_broadcast()
                    || a.is_unspecified()
                    || on_client_link)
                {
                    targets.insert((a, port, proto));
                }
            }
        } else if chain == "KUBE-NODEPORTS" {
            targets.insert((plan.node_lo_addrs[0], port, proto));
        }
    }
    // Plain traffic through and to the node too (firewall-only rulesets such as Calico's
    // have no nat service rules to derive destinations from).
    let baseline = [
        (plan.backend_links[0].peer_addrs[0], 80, "tcp"),
        (plan.backend_links[1].peer_addrs[0], 53, "udp"),
        (plan.node_lo_addrs[0], 443, "tcp"),
    ];
    let room = MAX_TARGETS.saturating_sub(baseline.len());
    let targets: Vec<_> = targets.into_iter().take(room).chain(baseline).collect();
    let mut out = Vec::new();
    let mut sport = 40_000u16;
    for (dst, dport, proto) in targets {
        for link in &plan.client_links {
            sport += 7;
            out.push(Probe {
                src: link.peer_addrs[0],
                in_iface: link.node_iface,
                dst,
                proto: if proto == "tcp" {
                    ProbeProto::Tcp
                } else {
                    ProbeProto::Udp
                },
                sport,
                dport,
                udp_payload: 8,
            });
        }
    }
    out
}
