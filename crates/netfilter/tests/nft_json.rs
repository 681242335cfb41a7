//! Issue #14: `nft -j list ruleset` (libnftables JSON) is read into the same model as `nft list
//! ruleset` text, so everything downstream takes either.
//!
//! * `checked_in_captures_read_alike`: the captures in `tests/nft/json/` (README there: taken
//!   with nft 1.0.6 from one kernel state, text and JSON) read to the same model (tables,
//!   chains with their base-chain settings and creation order, every rule's statements and
//!   printed text, sets with their types, flags and elements), and probe packets trace alike.
//! * `text_and_json_listings_trace_alike` (privileged: `KUBEPATH_PRIV_TESTS=1` as root, else
//!   it prints `skipped: ...` and passes): every fixture `tests/nft/*.nft` and
//!   `tests/nft/review/*.nft`, and generated kube-proxy rulesets (this crate's seeded
//!   generator, and `kube_proxy_nft::render` of the same Services in both layouts, V1_29 and
//!   Split) are loaded with `nft -f` into a network namespace of their own (created and
//!   deleted by the test, also when it fails), listed as text and as JSON, and the two
//!   listings must read to the same model and trace every probe alike: verdict, DNAT, SNAT,
//!   masquerade, probability and the rules matched.

mod nft_support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use kubepath_netfilter::{
    trace_nft, Env, NftRuleset, Packet, Proto, RouteDecision, RouteOracle, Verdict,
};
use kubepath_netfilter_gen::kube_proxy_nft::{
    render, NftEndpoint, NftLayout, NftProxyConfig, NftServicePort,
};
use nft_support::{Net, Netns, NftIn};

/// Generated seeds (each gives three rulesets).
const SEEDS: u64 = 20;

/// Where two models differ, one line each (empty: the same model).
fn model_differences(a: &NftRuleset, b: &NftRuleset) -> Vec<String> {
    let mut out = Vec::new();
    let names = |rs: &NftRuleset| -> Vec<String> {
        rs.tables
            .iter()
            .map(|t| format!("{} {}", t.family, t.name))
            .collect()
    };
    if names(a) != names(b) {
        out.push(format!("tables {:?} / {:?}", names(a), names(b)));
        return out;
    }
    for (ta, tb) in a.tables.iter().zip(&b.tables) {
        let t = format!("{} {}", ta.family, ta.name);
        let chains = |x: &kubepath_netfilter::nft::NftTable| -> Vec<String> {
            x.chains.iter().map(|c| c.name.clone()).collect()
        };
        if chains(ta) != chains(tb) {
            out.push(format!("{t}: chains {:?} / {:?}", chains(ta), chains(tb)));
            continue;
        }
        for (ca, cb) in ta.chains.iter().zip(&tb.chains) {
            let c = format!("{t} {}", ca.name);
            if ca.base != cb.base {
                out.push(format!("{c}: base {:?} / {:?}", ca.base, cb.base));
            }
            if ca.seq != cb.seq {
                out.push(format!("{c}: created {} / {}", ca.seq, cb.seq));
            }
            if ca.rules.len() != cb.rules.len() {
                out.push(format!(
                    "{c}: {} / {} rules",
                    ca.rules.len(),
                    cb.rules.len()
                ));
                continue;
            }
            for (ra, rb) in ca.rules.iter().zip(&cb.rules) {
                if ra.text != rb.text {
                    out.push(format!("{c}: rule `{}` / `{}`", ra.text, rb.text));
                }
                let (sa, sb) = (format!("{:?}", ra.stmts), format!("{:?}", rb.stmts));
                if sa != sb {
                    out.push(format!("{c}: `{}` reads as {sa} / {sb}", ra.text));
                }
            }
        }
        let sets = |x: &kubepath_netfilter::nft::NftTable| -> Vec<String> {
            x.sets
                .iter()
                .map(|s| {
                    format!(
                        "{:?} {:?} : {:?} flags {:?} elements {:?}",
                        s.name, s.key, s.data, s.flags, s.elements
                    )
                })
                .collect()
        };
        for (sa, sb) in sets(ta).iter().zip(&sets(tb)) {
            if sa != sb {
                out.push(format!("{t}: set {sa} / {sb}"));
            }
        }
        if ta.sets.len() != tb.sets.len() {
            out.push(format!("{t}: {} / {} sets", ta.sets.len(), tb.sets.len()));
        }
    }
    out
}

/// The node's own addresses in every probe run (the lab's NodePort address, the fixtures'
/// node addresses).
fn local() -> Vec<IpAddr> {
    ["10.70.0.1", "192.168.50.4", "192.168.0.2", "10.1.0.1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Local destinations are delivered; the rest leaves by `eth0` or `r1` (some fixtures match
/// `oifname "r1"`), alternating with the destination.
struct Node {
    local: Vec<IpAddr>,
}

impl RouteOracle for Node {
    fn route(&self, pkt: &Packet) -> RouteDecision {
        if pkt.dst.is_loopback() || self.local.contains(&pkt.dst) {
            return RouteDecision::Local;
        }
        let odd = match pkt.dst {
            IpAddr::V4(a) => a.octets()[3] % 2 == 1,
            IpAddr::V6(a) => a.octets()[15] % 2 == 1,
        };
        RouteDecision::Forward {
            out_iface: Some(if odd { "r1" } else { "eth0" }.into()),
            src_hint: Some(self.local[0]),
        }
    }
}

/// Probe packets for a ruleset: its listed IPv4 addresses (and the next address after each)
/// to its listed ports (after `dport`/`sport`, in `tcp . PORT` keys, NAT targets' `:PORT`),
/// from a pod, a lab client, an outside client and the listed addresses, arriving on `eth0`
/// or `r0`, TCP and UDP, some with a mark, and some sent by the node itself.
fn probes(listing: &str) -> Vec<Packet> {
    let mut addrs: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut ports: BTreeSet<u16> = [22, 53, 80, 443, 8080].into_iter().collect();
    let words: Vec<&str> = listing
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | '}' | '"'))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let prev = |k: usize| i.checked_sub(k).map(|j| words[j]).unwrap_or("");
        let host = w.split(['/', '-', ':']).next().unwrap_or("");
        if let Ok(a) = host.parse::<Ipv4Addr>() {
            addrs.insert(a);
            addrs.insert(Ipv4Addr::from(u32::from(a).wrapping_add(1)));
        }
        let port_word = matches!(prev(1), "dport" | "sport")
            || (prev(1) == "." && matches!(prev(2), "tcp" | "udp" | "sctp"));
        let after_colon = w.rsplit_once(':').map(|(_, p)| p);
        for p in [Some(*w), after_colon]
            .into_iter()
            .flatten()
            .filter(|_| port_word || after_colon.is_some())
            .flat_map(|p| p.split('-'))
        {
            if let Ok(n) = p.parse::<u16>() {
                if n > 0 {
                    ports.insert(n);
                }
            }
        }
    }
    let addrs: Vec<Ipv4Addr> = addrs.into_iter().take(64).collect();
    let ports: Vec<u16> = ports.into_iter().take(24).collect();
    let mut srcs: Vec<IpAddr> = ["10.80.0.9", "10.70.0.5", "203.0.113.9"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    srcs.extend(addrs.iter().take(6).map(|a| IpAddr::V4(*a)));
    let mut out = Vec::new();
    let mut n = 0usize;
    for dst in &addrs {
        for (&dport, k) in ports.iter().flat_map(|p| [(p, 0), (p, 3)]) {
            n += 1;
            let src = srcs[(n + k) % srcs.len()];
            let proto = if n % 5 == 0 { Proto::Udp } else { Proto::Tcp };
            let mut p = Packet::new(src, IpAddr::V4(*dst), proto);
            p.sport = 40000 + (n % 7) as u16;
            p.dport = dport;
            if n % 9 != 0 {
                p.in_iface = Some(if n % 2 == 0 { "eth0" } else { "r0" }.into());
            }
            p.mark = if n % 11 == 0 { 0x10 } else { 0 };
            out.push(p);
        }
    }
    out
}

/// What a trace says, without the citations (line numbers differ between the two files).
fn signature(rs: &NftRuleset, p: &Packet, file: &str) -> Vec<String> {
    let local = local();
    let node = Node {
        local: local.clone(),
    };
    let env = Env {
        local_addrs: &local,
        local_origin: p.in_iface.is_none(),
        router: Some(&node),
        ..Env::default()
    };
    let t = trace_nft(rs, p, &env);
    let mut v: Vec<String> = t
        .outcomes
        .iter()
        .map(|o| {
            let verdict = match &o.verdict {
                Verdict::Unknown { reason, .. } => format!("UNKNOWN {}", uncite(reason, file)),
                v => format!("{v:?}"),
            };
            let steps: Vec<String> = o
                .steps
                .iter()
                .map(|s| format!("{}: {}", s.chain, s.text))
                .collect();
            format!(
                "{verdict} p={:.9} dnat={:?} snat={:?} masq={} local={} out={:?} mark={:?} packet={:?} steps={steps:?}",
                o.probability,
                o.dnat.as_ref().map(|d| d.to_string()),
                o.snat.as_ref().map(|d| d.to_string()),
                o.masquerade,
                o.local_delivery,
                o.out_iface,
                o.route_mark,
                (o.packet.src, o.packet.dst, o.packet.sport, o.packet.dport, o.packet.mark),
            )
        })
        .collect();
    v.sort();
    v
}

/// `reason` with `FILE:LINE` citations replaced by `FILE`.
fn uncite(reason: &str, file: &str) -> String {
    let mut out = String::new();
    let mut rest = reason;
    while let Some(i) = rest.find(file) {
        out.push_str(&rest[..i]);
        out.push_str("FILE");
        rest = &rest[i + file.len()..];
        if let Some(r) = rest.strip_prefix(':') {
            rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
        }
    }
    out.push_str(rest);
    out
}

/// The tally of one comparison.
#[derive(Default)]
struct Tally {
    rulesets: usize,
    rules: usize,
    probes: usize,
    outcomes: usize,
    /// Outcomes by verdict (ACCEPT, DROP, REJECT, UNKNOWN), and those with a DNAT.
    verdicts: std::collections::BTreeMap<&'static str, usize>,
    dnat: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Read `text` and `json` (two listings of one ruleset), compare their models and trace
    /// every probe through both.
    fn figures(&self) -> String {
        format!(
            "{} rulesets, {} rules, {} probes: {} outcomes ({}; {} with DNAT) alike",
            self.rulesets,
            self.rules,
            self.probes,
            self.outcomes,
            self.verdicts
                .iter()
                .map(|(v, n)| format!("{v} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.dnat
        )
    }

    fn compare(&mut self, name: &str, text: &str, json: &str) {
        let (tf, jf) = (format!("{name}.txt"), format!("{name}.json"));
        let (a, _) = match NftRuleset::parse(&tf, text) {
            Ok(x) => x,
            Err(e) => {
                self.failures.push(format!("{name}: the text listing: {e}"));
                return;
            }
        };
        let (b, _) = match NftRuleset::parse(&jf, json) {
            Ok(x) => x,
            Err(e) => {
                self.failures.push(format!("{name}: the JSON listing: {e}"));
                return;
            }
        };
        assert!(
            NftRuleset::sniff(json),
            "{name}: the JSON is told by content"
        );
        let diff = model_differences(&a, &b);
        if !diff.is_empty() {
            self.failures.push(format!(
                "{name}: the models differ:\n  {}",
                diff.iter()
                    .take(12)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        self.rulesets += 1;
        self.rules += b.rule_count();
        for p in probes(text) {
            let (x, y) = (signature(&a, &p, &tf), signature(&b, &p, &jf));
            self.probes += 1;
            self.outcomes += x.len();
            for o in &x {
                let v = ["ACCEPT", "DROP", "REJECT", "UNKNOWN"]
                    .into_iter()
                    .find(|v| o.to_ascii_uppercase().starts_with(v))
                    .unwrap_or("other");
                *self.verdicts.entry(v).or_default() += 1;
                self.dnat += usize::from(o.contains("dnat=Some"));
            }
            if x != y {
                self.failures
                    .push(format!("{name}: {p:?}\n  text: {x:#?}\n  json: {y:#?}"));
            }
        }
    }
}

#[test]
fn checked_in_captures_read_alike() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nft/json");
    let mut tally = Tally::default();
    for name in ["kube-proxy", "wide"] {
        let read = |ext: &str| {
            std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).expect("a capture")
        };
        tally.compare(name, &read("txt"), &read("json"));
    }
    println!("nft JSON captures: {}", tally.figures());
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
    assert_eq!(tally.rulesets, 2);
    assert!(tally.rules > 150, "{}", tally.rules);
    assert!(tally.probes > 500, "{}", tally.probes);
}

/// The comparison can fail: a JSON capture with one changed rule (a port) differs from its
/// text in the model and in the probes that reach it.
#[test]
fn a_changed_capture_is_told_apart() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nft/json");
    let text = std::fs::read_to_string(dir.join("kube-proxy.txt")).unwrap();
    let json = std::fs::read_to_string(dir.join("kube-proxy.json")).unwrap();
    let changed = json.replacen(
        r#""dnat": {"addr": "10.244.1.5", "port": 8443}"#,
        r#""dnat": {"addr": "10.244.1.5", "port": 8444}"#,
        1,
    );
    assert_ne!(changed, json);
    let mut tally = Tally::default();
    tally.compare("kube-proxy", &text, &changed);
    assert!(
        tally
            .failures
            .iter()
            .any(|f| f.contains("the models differ")),
        "{:?}",
        tally.failures
    );
    assert!(
        tally.failures.iter().any(|f| f.contains("10.244.1.5:8444")),
        "{:?}",
        tally.failures
    );
}

/// The Services of a generated ruleset as `kube_proxy_nft::render` takes them.
fn services(g: &nft_support::Generated, net: &Net) -> Vec<NftServicePort> {
    g.services
        .iter()
        .map(|s| {
            let mut parts = s.name.split('/');
            let (ns, name, _, port_name) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next(),
                parts.next().unwrap_or_default(),
            );
            NftServicePort {
                namespace: ns.into(),
                name: name.into(),
                port_name: port_name.into(),
                protocol: "tcp".into(),
                cluster_ip: Some(s.cluster_ip),
                port: s.port,
                node_port: s.node_port,
                external_ips: s.external_ip.into_iter().collect(),
                lb_ips: Vec::new(),
                source_ranges: if s.source_range {
                    vec![net.allowed_range.to_string()]
                } else {
                    Vec::new()
                },
                etp_local: s.etp_local,
                affinity_seconds: s.affinity.then_some(10800),
                endpoints: s
                    .endpoints
                    .iter()
                    .map(|&(ip, port, local)| NftEndpoint { ip, port, local })
                    .collect(),
            }
        })
        .collect()
}

#[test]
fn text_and_json_listings_trace_alike() {
    if !kubepath_netfilter_gen::privileged::gate("text_and_json_listings_trace_alike", &["nft"]) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nft");
    let mut inputs: Vec<(String, String)> = Vec::new();
    for dir in [root.clone(), root.join("review")] {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("tests/nft")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "nft"))
            .collect();
        files.sort();
        for p in files {
            let name = p.strip_prefix(&root).unwrap().display().to_string();
            inputs.push((name, std::fs::read_to_string(&p).expect("a fixture")));
        }
    }
    let fixtures = inputs.len();
    let net = Net::lab();
    for seed in 0..SEEDS {
        let g = nft_support::kube_proxy(seed, &net);
        for layout in [NftLayout::V1_29, NftLayout::Split] {
            let cfg = NftProxyConfig {
                cluster_cidr: Some(net.pod_cidr.into()),
                nodeport_ips: if seed % 2 == 0 {
                    vec![net.nodeport_ip]
                } else {
                    Vec::new()
                },
                masquerade_mark: 0x4000,
                layout,
                service_cidrs: vec![net.service_cidr.into()],
            };
            inputs.push((
                format!("render {layout:?} seed {seed}"),
                render(&cfg, &services(&g, &net)),
            ));
        }
        inputs.push((format!("generated seed {seed}"), g.text));
    }
    let mut tally = Tally::default();
    let mut refused = Vec::new();
    for (name, input) in &inputs {
        let ns = Netns::new("nftj");
        if let Err(e) = ns.nft(&["-f", "-"], Some(input)) {
            refused.push(format!("{name}: {}", e.lines().next().unwrap_or("")));
            continue;
        }
        let text = ns
            .nft(&["list", "ruleset"], None)
            .expect("nft list ruleset");
        let json = ns
            .nft(&["-j", "list", "ruleset"], None)
            .expect("nft -j list ruleset");
        drop(ns);
        // The text reader refuses some listings (named objects, `typeof` sets): the JSON
        // reader must still read them.
        if let Err(e) = NftRuleset::parse("t", &text) {
            match NftRuleset::parse("j", &json) {
                Ok(_) => refused.push(format!("{name}: only the JSON listing reads ({e})")),
                Err(j) => tally
                    .failures
                    .push(format!("{name}: neither listing reads: {e}; {j}")),
            }
            continue;
        }
        tally.compare(name, &text, &json);
    }
    println!(
        "nft text vs JSON listings: {} inputs ({fixtures} fixtures, {} generated); compared: {}; not compared: {}",
        inputs.len(),
        inputs.len() - fixtures,
        tally.figures(),
        refused.join("; ")
    );
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
    assert!(
        tally.rulesets >= 3 * SEEDS as usize + 10,
        "{}",
        tally.rulesets
    );
}
