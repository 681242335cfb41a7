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
        if name.ends_with(".ipset") {
            // Companion of an iptables-save fixture, loaded with it.
            continue;
        }
        let text = if text.lines().any(|l| l.starts_with('*')) {
            text
        } else {
            match rules_to_save(&name, &text) {
                Some(t) => t,
                None => {
                    skipped.push(format!(
                        "{name}: neither iptables-save nor `iptables -t TABLE -S` output"
                    ));
                    continue;
                }
            }
        };
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

/// `iptables -t TABLE -S` output (optionally after a shell prompt echoing the command) as
/// iptables-save text, for `iptables-restore`: `-P C P` -> `:C P [0:0]`, `-N C` -> `:C - [0:0]`,
/// `-A ...` kept. The table comes from `-t TABLE` in the prompt line or a `-TABLE.`, `-TABLE-`,
/// `TABLE-` or `TABLE.` part of the file name; `None` when it is not such output.
fn rules_to_save(name: &str, text: &str) -> Option<String> {
    const TABLES: [&str; 5] = ["raw", "mangle", "nat", "filter", "security"];
    let mut table = None;
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(rest) = l.strip_prefix("-P ") {
            let mut w = rest.split_whitespace();
            chains.push(format!(":{} {} [0:0]", w.next()?, w.next()?));
        } else if let Some(rest) = l.strip_prefix("-N ") {
            chains.push(format!(":{} - [0:0]", rest.trim()));
        } else if l.starts_with("-A ") {
            rules.push(l.to_string());
        } else if l.contains("iptables") && l.contains(" -S") {
            let w: Vec<&str> = l.split_whitespace().collect();
            table = w
                .windows(2)
                .find(|p| p[0] == "-t")
                .map(|p| p[1].to_string());
        } else {
            return None;
        }
    }
    let table = table.or_else(|| {
        TABLES
            .iter()
            .find(|t| {
                name.contains(&format!("-{t}."))
                    || name.contains(&format!("-{t}-"))
                    || name.starts_with(&format!("{t}-"))
                    || name.starts_with(&format!("{t}."))
            })
            .map(|t| t.to_string())
    })?;
    if rules.is_empty() || !TABLES.contains(&table.as_str()) {
        return None;
    }
    Some(format!(
        "*{table}\n{}\n{}\nCOMMIT\n",
        chains.join("\n"),
        rules.join("\n")
    ))
}

/// The regression cases in `tests/kernel/regressions/*.rules`: minimal rulesets (iptables-save
/// format) from disagreements this test found, each with its probes written as the test
/// prints them, in comment lines `# probe: udp 10.70.0.4:28480 -> 10.81.0.5:30080 in ethc0
/// (ip len 1028)` or `# probe: tcp 10.71.0.1:5000 -> 10.81.0.5:9000 from the node itself (ip
/// len 60)` (the comments are ignored by iptables-restore). A file whose probe line does not
/// parse panics: a regression case must not silently stop running.
pub fn regressions(plan: &LabPlan) -> Vec<Fixture> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kernel/regressions");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("regression case {name}: {e}"));
        let probes: Vec<Probe> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# probe:"))
            .map(|l| {
                parse_probe(l.trim(), plan)
                    .unwrap_or_else(|| panic!("regression case {name}: bad probe line {l:?}"))
            })
            .collect();
        assert!(!probes.is_empty(), "regression case {name} has no probe");
        out.push(Fixture {
            name: format!("regression:{name}"),
            text,
            probes,
            ipset: None,
        });
    }
    out
}

/// A probe as `Probe`'s Display prints it.
fn parse_probe(s: &str, plan: &LabPlan) -> Option<Probe> {
    let w: Vec<&str> = s.split_whitespace().collect();
    let proto = match *w.first()? {
        "tcp" => ProbeProto::Tcp,
        "udp" => ProbeProto::Udp,
        "icmp" => ProbeProto::Icmp,
        _ => return None,
    };
    let (src, sport) = w.get(1)?.split_once(':')?;
    if *w.get(2)? != "->" {
        return None;
    }
    let (dst, dport) = w.get(3)?.split_once(':')?;
    let (local_origin, in_iface) = match *w.get(4)? {
        "in" => {
            let dev = *w.get(5)?;
            let l = plan.client_links.iter().find(|l| l.node_iface == dev)?;
            (false, l.node_iface)
        }
        "from" => (true, ""),
        _ => return None,
    };
    // "(ip len N)" at the end.
    let ip_len: u16 = w.last()?.strip_suffix(')')?.parse().ok()?;
    let udp_payload = match proto {
        ProbeProto::Tcp => 8,
        _ => ip_len.checked_sub(28)?,
    };
    Some(Probe {
        src: src.parse().ok()?,
        in_iface,
        local_origin,
        dst: dst.parse().ok()?,
        proto,
        sport: sport.parse().ok()?,
        dport: dport.parse().ok()?,
        udp_payload,
    })
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
                local_origin: false,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_s_output_becomes_restorable_save_text() {
        let s = "node:~ # iptables -t nat -S\n-P PREROUTING ACCEPT\n-N KUBE-SERVICES\n-A PREROUTING -j KUBE-SERVICES\n";
        assert_eq!(
            rules_to_save("x.txt", s).as_deref(),
            Some("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n")
        );
        // Table from the file name; anything else is not -S output.
        assert!(rules_to_save(
            "iptables-t-filter-S.txt",
            "-P INPUT DROP\n-A INPUT -j ACCEPT\n"
        )
        .is_some_and(|t| t.starts_with("*filter\n")));
        assert_eq!(rules_to_save("x.txt", "-A INPUT -j ACCEPT\n"), None);
        assert_eq!(rules_to_save("nat.rules", "hello\n-A X -j ACCEPT\n"), None);
    }

    #[test]
    fn printed_probes_parse_back() {
        let plan = LabPlan::standard();
        for p in [
            Probe {
                src: Ipv4Addr::new(10, 70, 0, 4),
                in_iface: plan.client_links[0].node_iface,
                local_origin: false,
                dst: Ipv4Addr::new(10, 81, 0, 5),
                proto: ProbeProto::Udp,
                sport: 28480,
                dport: 30080,
                udp_payload: 1000,
            },
            Probe {
                src: Ipv4Addr::new(10, 71, 0, 1),
                in_iface: "",
                local_origin: true,
                dst: Ipv4Addr::new(10, 81, 0, 5),
                proto: ProbeProto::Tcp,
                sport: 5000,
                dport: 9000,
                udp_payload: 8,
            },
        ] {
            let back = parse_probe(&p.to_string(), &plan).unwrap();
            assert_eq!(back.to_string(), p.to_string());
        }
        // Every checked-in regression case parses.
        for f in regressions(&plan) {
            assert!(!f.probes.is_empty(), "{}", f.name);
        }
    }

    #[test]
    fn probes_go_to_service_destinations_not_loopback() {
        let plan = LabPlan::standard();
        let t = "*nat\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j X\n-A DOCKER -d 127.0.0.1/32 -p tcp -m tcp --dport 5432 -j DNAT --to-destination 172.17.0.2:5432\n-A KUBE-NODEPORTS -p udp -m udp --dport 30053 -j Y\nCOMMIT\n";
        let p = probes_for(t, &plan);
        assert!(p
            .iter()
            .any(|p| p.dst == Ipv4Addr::new(10, 96, 0, 1) && p.dport == 443));
        assert!(p
            .iter()
            .any(|p| p.dst == plan.node_lo_addrs[0] && p.dport == 30053));
        assert!(!p.iter().any(|p| p.dst.is_loopback()));
    }
}
