//! `kubepath trace` output: the versioned JSON schema (`kubepath.trace/v1`, docs/trace-json.md),
//! the text walkthrough and the Graphviz diagram.
//!
//! The DTOs are written by hand from [`kubepath_sim::trace::TraceResult`], so the simulator's
//! types can change without changing the schema.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kubepath_model::SourceRef;
use kubepath_sim::trace::{Hop, TraceRequest, TraceResult, L4};
use serde::Serialize;

pub const SCHEMA: &str = "kubepath.trace/v1";

#[derive(Debug, Clone, Serialize)]
pub struct TraceJson {
    pub schema: &'static str,
    pub request: RequestJson,
    pub resolved: ResolvedJson,
    pub entries: Vec<EntryJson>,
    pub fabric: Vec<FabricJson>,
    pub nodes: Vec<NodeJson>,
    pub distribution: DistributionJson,
    pub verdicts: BTreeMap<String, f64>,
    pub branches: Vec<BranchJson>,
    pub fixes: Vec<FixJson>,
    pub notes: Vec<String>,
    /// Lines of the snapshot that could not be read (skipped) and files left out, as
    /// `file:line: message`: what depended on them is `unknown` in the trace.
    pub snapshot_errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestJson {
    pub from: String,
    pub from_port: Option<u16>,
    pub to: String,
    pub proto: &'static str,
    pub dport: Option<u16>,
    pub what_if: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedJson {
    pub name: Option<String>,
    /// The canonical names, in the order the CNAME chain visits them.
    pub cnames: Vec<String>,
    pub cname_chain: Vec<CnameJson>,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CnameJson {
    pub name: String,
    pub target: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntryJson {
    pub router: String,
    pub vrf: String,
    pub probability: f64,
    pub why: String,
    pub source: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FabricJson {
    pub router: String,
    pub vrf: String,
    pub prefix: String,
    pub via: String,
    pub source: String,
    pub next_hops: Vec<NextHopJson>,
    pub unused: Vec<UnusedJson>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextHopJson {
    pub address: String,
    pub connected: bool,
    pub router_interface: Option<String>,
    pub probability: f64,
    pub source: String,
    /// The node that owns the next hop, and the interface the packet arrives on.
    pub node: Option<String>,
    pub node_iface: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnusedJson {
    pub next_hop: String,
    pub reason: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeJson {
    /// The nodes with this identical netfilter result, each with its probability.
    pub nodes: BTreeMap<String, f64>,
    pub in_iface: String,
    pub probability: f64,
    pub outcomes: Vec<NodeOutcomeJson>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeOutcomeJson {
    pub probability: f64,
    pub verdict: String,
    pub dnat: Option<String>,
    pub masquerade: bool,
    pub pod: Option<String>,
    pub steps: Vec<HopJson>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DistributionJson {
    pub nodes: BTreeMap<String, f64>,
    pub ingress_pods: BTreeMap<String, f64>,
    pub backends: BTreeMap<String, f64>,
    pub backends_delivered: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BranchJson {
    pub probability: f64,
    pub verdict: &'static str,
    pub reason: String,
    pub members: usize,
    pub nodes: Vec<String>,
    pub ingress_pods: Vec<String>,
    pub backends: Vec<String>,
    pub http_status: Option<u16>,
    pub forward: Vec<HopJson>,
    #[serde(rename = "return")]
    pub ret: Vec<HopJson>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HopJson {
    pub stage: &'static str,
    pub at: String,
    pub text: String,
    /// `file:line`, or null.
    pub source: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub probability: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FixJson {
    pub description: String,
    pub commands: Vec<String>,
    pub nodes: Vec<String>,
    pub verified: bool,
    /// `verified`, `not-sufficient` or `not-verifiable`.
    pub status: &'static str,
    /// Share delivered when the whole trace is re-run with the fix (null: not re-simulated).
    pub delivered: Option<f64>,
    pub verification: String,
    /// For a fix that is not sufficient: how and where the traffic then fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then_fails: Option<String>,
}

fn src(s: &SourceRef) -> String {
    s.to_string()
}

fn strip_dot(s: &str) -> String {
    s.strip_suffix('.').unwrap_or(s).to_string()
}

fn hop(h: &Hop) -> HopJson {
    HopJson {
        stage: h.stage,
        at: h.at.clone(),
        text: h.text.clone(),
        source: h.source.as_ref().map(src),
        file: h.source.as_ref().map(|s| s.file.to_string()),
        line: h.source.as_ref().map(|s| s.line).filter(|l| *l > 0),
        probability: h.probability,
    }
}

/// Rounds away floating-point noise (1/11 stays 0.0909..., 0.9999999999 becomes 1).
fn r(p: f64) -> f64 {
    (p * 1e12).round() / 1e12
}

/// Converts the sim result into the versioned DTO.
pub fn to_json(req: &TraceRequest, target_text: &str, res: &TraceResult) -> TraceJson {
    TraceJson {
        schema: SCHEMA,
        request: RequestJson {
            from: req.client.to_string(),
            from_port: req.client_port,
            to: target_text.to_string(),
            proto: match req.proto {
                L4::Tcp => "tcp",
                L4::Udp => "udp",
            },
            dport: res.dport,
            what_if: req.what_if.iter().map(|c| c.text.clone()).collect(),
        },
        resolved: ResolvedJson {
            name: res.resolved.name.clone(),
            cnames: res
                .resolved
                .cnames
                .iter()
                .map(|(_, t, _)| strip_dot(t))
                .collect(),
            cname_chain: res
                .resolved
                .cnames
                .iter()
                .map(|(n, t, s)| CnameJson {
                    name: strip_dot(n),
                    target: strip_dot(t),
                    source: src(s),
                })
                .collect(),
            addresses: res
                .resolved
                .addresses
                .iter()
                .map(|(a, _)| a.to_string())
                .collect(),
        },
        entries: res
            .entries
            .iter()
            .map(|e| EntryJson {
                router: e.router.clone(),
                vrf: e.vrf.clone(),
                probability: r(e.probability),
                why: e.why.clone(),
                source: e.source.as_ref().map(src),
            })
            .collect(),
        fabric: res
            .fabric
            .iter()
            .map(|f| FabricJson {
                router: f.router.clone(),
                vrf: f.vrf.clone(),
                prefix: f.prefix.to_string(),
                via: f.via.clone(),
                source: src(&f.source),
                next_hops: f
                    .next_hops
                    .iter()
                    .map(|n| NextHopJson {
                        address: n.addr.to_string(),
                        connected: n.connected,
                        router_interface: n.iface.clone(),
                        probability: r(n.probability),
                        source: src(&n.source),
                        node: n.node.as_ref().map(|x| x.0.clone()),
                        node_iface: n.node.as_ref().map(|x| x.1.clone()),
                    })
                    .collect(),
                unused: f
                    .unused
                    .iter()
                    .map(|u| UnusedJson {
                        next_hop: u.next_hop.to_string(),
                        reason: u.reason.clone(),
                        source: src(&u.source),
                    })
                    .collect(),
                notes: f.notes.clone(),
            })
            .collect(),
        nodes: res
            .node_stages
            .iter()
            .map(|n| NodeJson {
                nodes: n.members.iter().map(|(k, v)| (k.clone(), r(*v))).collect(),
                in_iface: n.in_iface.clone(),
                probability: r(n.probability),
                outcomes: n
                    .outcomes
                    .iter()
                    .map(|o| NodeOutcomeJson {
                        probability: r(o.probability),
                        verdict: o.verdict.clone(),
                        dnat: o.dnat.clone(),
                        masquerade: o.masquerade,
                        pod: o.pod.clone(),
                        steps: o.steps.iter().map(hop).collect(),
                    })
                    .collect(),
            })
            .collect(),
        distribution: DistributionJson {
            nodes: res
                .distribution_nodes
                .iter()
                .map(|(k, v)| (k.clone(), r(*v)))
                .collect(),
            ingress_pods: res
                .distribution_ingress_pods
                .iter()
                .map(|(k, v)| (k.clone(), r(*v)))
                .collect(),
            backends: res
                .distribution_backends
                .iter()
                .map(|(k, v)| (k.clone(), r(*v)))
                .collect(),
            backends_delivered: res
                .distribution_backends_delivered
                .iter()
                .map(|(k, v)| (k.clone(), r(*v)))
                .collect(),
        },
        verdicts: res
            .verdicts
            .iter()
            .map(|(k, v)| (k.name().to_string(), r(*v)))
            .collect(),
        branches: res
            .branches
            .iter()
            .map(|b| BranchJson {
                probability: r(b.probability),
                verdict: b.verdict.name(),
                reason: b.reason.clone(),
                members: b.members,
                nodes: b.nodes.clone(),
                ingress_pods: b.ingress_pods.clone(),
                backends: b.backends.clone(),
                http_status: b.http_status,
                forward: b.forward.iter().map(hop).collect(),
                ret: b.ret.iter().map(hop).collect(),
            })
            .collect(),
        fixes: res
            .fixes
            .iter()
            .map(|f| FixJson {
                description: f.description.clone(),
                commands: f.commands.clone(),
                nodes: f.nodes.clone(),
                verified: f.verified,
                status: f.status(),
                delivered: f.delivered.map(r),
                verification: f.verification.clone(),
                then_fails: f.then_fails.clone(),
            })
            .collect(),
        notes: res.notes.clone(),
        snapshot_errors: Vec::new(),
    }
}

/// Terminal styling: plain text, or ANSI colours on a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

/// Stands for ESC in the colour codes [`Style::paint`] writes, until [`render_text`] has
/// escaped the control characters of the data (a private-use character).
const ESC_MARK: char = '\u{e01b}';

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("{ESC_MARK}[{code}m{s}{ESC_MARK}[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn verdict(&self, v: &str) -> String {
        let code = if v == "delivered" {
            "32;1"
        } else if v == "unknown" {
            "33;1"
        } else {
            "31;1"
        };
        self.paint(code, v)
    }
}

/// A percentage with two decimals, without `.00`: a share that rounds to a whole percent is
/// printed as one (`25%`, never `25.00%` beside it for 24.999...%).
fn pct(p: f64) -> String {
    let s = format!("{:.2}", p * 100.0);
    let s = s.strip_suffix(".00").unwrap_or(&s);
    // -0.00 rounds to -0.
    let s = if s == "-0" { "0" } else { s };
    format!("{s}%")
}

/// `1/11` when p is the inverse of a small integer, else a percentage.
fn frac(p: f64) -> String {
    if p > 0.0 {
        let n = (1.0 / p).round();
        if (1.0..=1000.0).contains(&n) && ((1.0 / n) - p).abs() < 1e-9 {
            return if n == 1.0 {
                "1".into()
            } else {
                format!("1/{n}")
            };
        }
    }
    pct(p)
}

fn cite(s: &Option<String>, st: Style) -> String {
    match s {
        Some(s) => format!("  {}", st.dim(&format!("[{s}]"))),
        None => String::new(),
    }
}

/// How much of the walkthrough the text shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// `-q`: only the verdict lines.
    Quiet,
    /// The answer (one screen: path, verdicts, where each failing branch fails, fixes), then
    /// the stages with the decisive rules.
    #[default]
    Normal,
    /// `-v`: also every netfilter step and the notes.
    Verbose,
}

/// The text walkthrough, with the control characters of the data escaped
/// ([`crate::escape_controls`]); with `st.color`, ANSI colours of its own.
pub fn render_text(j: &TraceJson, st: Style) -> String {
    render_text_at(j, st, Detail::Normal)
}

/// [`render_text`] at a level of detail.
pub fn render_text_at(j: &TraceJson, st: Style, detail: Detail) -> String {
    let j = &crate::escaped(j);
    let plain = render_text_raw(j, Style { color: false }, detail);
    // Data holding the mark itself (no real input does) would turn into ESC: no colours then.
    if !st.color || plain.contains(ESC_MARK) {
        return crate::escape_controls(&plain).into_owned();
    }
    crate::escape_controls(&render_text_raw(j, st, detail)).replace(ESC_MARK, "\x1b")
}

/// The verdict lines: the totals and one line per branch.
fn verdict_lines(o: &mut String, j: &TraceJson, st: Style) {
    let totals: Vec<String> = j
        .verdicts
        .iter()
        .map(|(k, v)| format!("{} {}", st.verdict(k), pct(*v)))
        .collect();
    let _ = writeln!(o, "   {}", totals.join(", "));
    for b in &j.branches {
        // Where it fails: the hop the reason quotes (a failure inside the proxied
        // connection is in the forward hops although the client's reply has hops too), else
        // the last hop of the reply, else of the request.
        let quoted = b
            .forward
            .iter()
            .chain(b.ret.iter())
            .rev()
            .find(|h| h.text.len() > 20 && b.reason.contains(h.text.as_str()));
        let at = quoted
            .or_else(|| b.ret.last())
            .filter(|_| b.verdict != "delivered")
            .or_else(|| b.forward.last().filter(|_| b.verdict != "delivered"))
            .map(|h| h.at.clone())
            .filter(|a| !a.is_empty())
            .map(|a| format!(" at {a}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "   {} {}{at}: {}",
            st.verdict(b.verdict),
            pct(b.probability),
            b.reason
        );
    }
}

/// The answer on one screen: the path, one line per stage with its shares, the verdicts with
/// where each failing branch fails, and the fixes.
fn answer(o: &mut String, j: &TraceJson, st: Style) {
    if !j.snapshot_errors.is_empty() {
        let _ = writeln!(
            o,
            "\n{}",
            st.paint(
                "31;1",
                &format!(
                    "Snapshot: {} part{} could not be read (what depends on them is unknown; `snapshot inspect` lists all)",
                    j.snapshot_errors.len(),
                    if j.snapshot_errors.len() == 1 { "" } else { "s" }
                )
            )
        );
        for e in j.snapshot_errors.iter().take(5) {
            let _ = writeln!(o, "   {e}");
        }
        if j.snapshot_errors.len() > 5 {
            let _ = writeln!(o, "   ... and {} more", j.snapshot_errors.len() - 5);
        }
    }
    let _ = writeln!(o, "\n{}", st.bold("Answer"));
    let mut path: Vec<String> = Vec::new();
    if let Some(n) = &j.resolved.name {
        path.push(format!(
            "DNS {n} -> {}",
            if j.resolved.addresses.is_empty() {
                "no address".into()
            } else {
                j.resolved.addresses.join(", ")
            }
        ));
    }
    if !j.entries.is_empty() {
        let e: Vec<String> = j
            .entries
            .iter()
            .map(|e| format!("{} VRF {} {}", e.router, e.vrf, frac(e.probability)))
            .collect();
        path.push(format!("enters at {}", e.join(", ")));
    }
    let d = &j.distribution;
    for (what, m) in [
        ("node", &d.nodes),
        ("ingress pod", &d.ingress_pods),
        ("backend pod", &d.backends),
    ] {
        if m.is_empty() {
            continue;
        }
        let mut shares: Vec<f64> = m.values().copied().collect();
        shares.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let line = if m.len() > 3 && shares.len() == 1 {
            format!("{} {what}s, {} each", m.len(), frac(shares[0]))
        } else {
            m.iter()
                .map(|(k, v)| format!("{what} {k} {}", frac(*v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        path.push(line);
    }
    for p in path {
        let _ = writeln!(o, "   {p}");
    }
    verdict_lines(o, j, st);
    for (i, f) in j
        .fixes
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.commands.is_empty())
    {
        let tag = fix_tag(f, st);
        let _ = writeln!(
            o,
            "   fix {}: [{tag}] {} (on {} node{}; details in 6.)",
            i + 1,
            f.commands.join(" && "),
            f.nodes.len(),
            if f.nodes.len() == 1 { "" } else { "s" }
        );
    }
}

fn fix_tag(f: &FixJson, st: Style) -> String {
    match f.status {
        "verified" => st.paint("32;1", "verified"),
        "not-sufficient" => st.paint("31;1", "not sufficient"),
        _ => st.paint("33;1", "not verified"),
    }
}

fn render_text_raw(j: &TraceJson, st: Style, detail: Detail) -> String {
    let mut o = String::new();
    if detail == Detail::Quiet {
        verdict_lines(&mut o, j, st);
        return o;
    }
    let _ = writeln!(
        o,
        "{} {} -> {} ({}{})",
        st.bold("kubepath trace"),
        j.request.from,
        j.request.to,
        j.request.proto,
        j.request.dport.map(|p| format!("/{p}")).unwrap_or_default()
    );
    for w in &j.request.what_if {
        let _ = writeln!(o, "  what-if: {w}");
    }
    answer(&mut o, j, st);
    // DNS
    if j.resolved.name.is_some() {
        let _ = writeln!(o, "\n{}", st.bold("1. DNS"));
        for c in &j.resolved.cname_chain {
            let _ = writeln!(
                o,
                "   {} is an alias (CNAME) for {}{}",
                c.name,
                c.target,
                cite(&Some(c.source.clone()), st)
            );
        }
        let _ = writeln!(
            o,
            "   -> {}",
            if j.resolved.addresses.is_empty() {
                "no address".to_string()
            } else {
                j.resolved.addresses.join(", ")
            }
        );
    }
    // Fabric: entries whose lookups give the same next hops to the same nodes are printed once.
    if !j.entries.is_empty() {
        let _ = writeln!(o, "\n{}", st.bold("2. Fabric"));
        let sig = |e: &EntryJson| -> String {
            j.fabric
                .iter()
                .filter(|f| f.router == e.router && f.vrf == e.vrf)
                .map(|f| {
                    let hops: Vec<String> = f
                        .next_hops
                        .iter()
                        .map(|h| format!("{}>{:?}>{:?}", h.address, h.node, h.node_iface))
                        .collect();
                    format!("{}|{}|{}", f.prefix, f.via, hops.join(","))
                })
                .collect::<Vec<_>>()
                .join(";")
        };
        let mut groups: Vec<(String, Vec<&EntryJson>)> = Vec::new();
        for e in &j.entries {
            let k = sig(e);
            match groups.iter_mut().find(|(g, _)| *g == k && !k.is_empty()) {
                Some((_, v)) => v.push(e),
                None => groups.push((k, vec![e])),
            }
        }
        for (_, members) in &groups {
            let e = members[0];
            for m in members {
                let _ = writeln!(
                    o,
                    "   enters at {} VRF {} ({}){}",
                    m.router,
                    m.vrf,
                    frac(m.probability),
                    cite(&m.source, st)
                );
            }
            if members.len() > 1 {
                let _ = writeln!(
                    o,
                    "     {}",
                    st.dim(&format!(
                        "the same next hops on all {} (lines cited from {}; --json has each router's)",
                        members.len(),
                        e.router
                    ))
                );
            }
            for f in j
                .fabric
                .iter()
                .filter(|f| f.router == e.router && f.vrf == e.vrf)
            {
                let n = f.next_hops.len();
                if f.next_hops.iter().all(|h| h.connected) {
                    let _ = writeln!(
                        o,
                        "     {} ({}): connected{}",
                        f.prefix,
                        f.via,
                        cite(&Some(f.source.clone()), st)
                    );
                } else {
                    let _ = writeln!(
                        o,
                        "     {} ({}): {} equal-cost next hop{}, {} each; the router hashes the 5-tuple, so one connection stays on one next hop",
                        f.prefix,
                        f.via,
                        n,
                        if n == 1 { "" } else { "s" },
                        frac(1.0 / n.max(1) as f64)
                    );
                }
                for h in &f.next_hops {
                    let _ = writeln!(
                        o,
                        "       {:<16} {} -> {}{}",
                        h.address,
                        h.router_interface.clone().unwrap_or_default(),
                        h.node
                            .as_ref()
                            .map(|n| format!("{n} {}", h.node_iface.clone().unwrap_or_default()))
                            .unwrap_or_else(|| "no node in the snapshot".into()),
                        cite(&Some(h.source.clone()), st)
                    );
                }
                for u in &f.unused {
                    let _ = writeln!(
                        o,
                        "       {} {}: {}{}",
                        st.dim("not used"),
                        u.next_hop,
                        u.reason,
                        cite(&Some(u.source.clone()), st)
                    );
                }
            }
        }
    }
    // Nodes: the sim groups nodes with identical results; groups whose rules differ only in
    // where they are cited (each node's own file and line) are printed once more, with the
    // list of the nodes they hold on.
    if !j.nodes.is_empty() {
        let _ = writeln!(o, "\n{}", st.bold("3. Nodes (netfilter, first packet)"));
        let mut groups: Vec<(Vec<String>, Vec<NodeMember>)> = Vec::new();
        for n in &j.nodes {
            let lines = node_lines(n, st, detail);
            let mut key: Vec<String> = lines.iter().map(|l| l.key.clone()).collect();
            key.push(format!("in {}", n.in_iface));
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push((n, lines)),
                None => groups.push((key, vec![(n, lines)])),
            }
        }
        for (_, members) in &groups {
            let mut nodes: Vec<(&String, f64)> = members
                .iter()
                .flat_map(|(n, _)| n.nodes.iter().map(|(k, p)| (k, *p)))
                .collect();
            nodes.sort_by(|a, b| a.0.cmp(b.0));
            let mut shares: Vec<f64> = nodes.iter().map(|(_, p)| *p).collect();
            shares.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
            let header = if nodes.len() == 1 {
                format!("node {} ({})", nodes[0].0, frac(nodes[0].1))
            } else if shares.len() == 1 {
                format!(
                    "{} nodes, {} each, the same rules: {}",
                    nodes.len(),
                    frac(shares[0]),
                    nodes
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!(
                    "{} nodes, the same rules: {}",
                    nodes.len(),
                    nodes
                        .iter()
                        .map(|(n, p)| format!("{n} ({})", frac(*p)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let (first, lines) = &members[0];
            let _ = writeln!(o, "   {header}:");
            if nodes.len() > 1 {
                let cited = first.nodes.keys().next().map(String::as_str).unwrap_or("");
                let _ = writeln!(
                    o,
                    "     {}",
                    st.dim(&format!("lines cited from {cited}; --json has each node's"))
                );
            }
            let _ = writeln!(o, "   arriving on {}:", first.in_iface);
            for (i, l) in lines.iter().enumerate() {
                match l.hidden {
                    None => {
                        let _ = writeln!(o, "{}", l.text);
                    }
                    Some(_) => {
                        let counts: Vec<usize> = members
                            .iter()
                            .filter_map(|(_, ls)| ls.get(i).and_then(|l| l.hidden))
                            .collect();
                        let lo = counts.iter().copied().min().unwrap_or(0);
                        let hi = counts.iter().copied().max().unwrap_or(0);
                        if hi == 0 {
                            continue;
                        }
                        let n = if lo == hi {
                            format!("{lo}")
                        } else {
                            format!("{lo} to {hi}, by node,")
                        };
                        let _ = writeln!(
                            o,
                            "       {}",
                            st.dim(&format!(
                                "({n} raw/mangle/filter steps of these connections not shown: -v or --json)"
                            ))
                        );
                    }
                }
            }
        }
    }
    // Distribution
    let d = &j.distribution;
    if !d.ingress_pods.is_empty() || !d.backends.is_empty() {
        let _ = writeln!(o, "\n{}", st.bold("4. Where the requests go"));
        if !d.nodes.is_empty() {
            let _ = writeln!(
                o,
                "   nodes: {}",
                d.nodes
                    .iter()
                    .map(|(k, v)| format!("{k} {}", frac(*v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (k, v) in &d.ingress_pods {
            let _ = writeln!(o, "   ingress pod {k}: {}", frac(*v));
        }
        for (k, v) in &d.backends {
            let _ = writeln!(o, "   backend pod {k}: {}", frac(*v));
        }
    }
    // Branches
    let _ = writeln!(o, "\n{}", st.bold("5. Verdicts"));
    let totals: Vec<String> = j
        .verdicts
        .iter()
        .map(|(k, v)| format!("{} {}", st.verdict(k), pct(*v)))
        .collect();
    let _ = writeln!(o, "   {}", totals.join(", "));
    for b in &j.branches {
        let _ = writeln!(
            o,
            "   {} {} ({} path{}): {}",
            st.verdict(b.verdict),
            pct(b.probability),
            b.members,
            if b.members == 1 { "" } else { "s" },
            b.reason
        );
        let l7: Vec<&HopJson> = b
            .forward
            .iter()
            .filter(|h| matches!(h.stage, "ingress" | "backend" | "pod"))
            .collect();
        for h in l7 {
            let _ = writeln!(
                o,
                "       {:<10} {}{}",
                h.stage,
                h.text,
                cite(&h.source, st)
            );
        }
        for h in &b.ret {
            let _ = writeln!(
                o,
                "       {:<10} {}{}",
                h.stage,
                h.text,
                cite(&h.source, st)
            );
        }
    }
    if !j.fixes.is_empty() {
        let _ = writeln!(o, "\n{}", st.bold("6. Fixes"));
        for (i, f) in j.fixes.iter().enumerate() {
            let tag = fix_tag(f, st);
            let _ = writeln!(o, "   {}. [{}] {}", i + 1, tag, f.description);
            for c in &f.commands {
                let _ = writeln!(o, "        $ {c}");
            }
            if !f.nodes.is_empty() {
                let _ = writeln!(
                    o,
                    "        on {} node{}: {}",
                    f.nodes.len(),
                    if f.nodes.len() == 1 { "" } else { "s" },
                    f.nodes.join(", ")
                );
            }
            let _ = writeln!(o, "        {}", st.dim(&f.verification));
            if let Some(t) = &f.then_fails {
                let _ = writeln!(o, "        {}", st.dim(t));
            }
        }
    }
    if !j.notes.is_empty() {
        if detail == Detail::Verbose {
            let _ = writeln!(o, "\n{}", st.bold("Notes"));
            for n in &j.notes {
                let _ = writeln!(o, "   - {n}");
            }
        } else {
            let _ = writeln!(
                o,
                "\n{}",
                st.dim(&format!(
                    "{} note{} (assumptions, unused paths, ingress details): -v",
                    j.notes.len(),
                    if j.notes.len() == 1 { "" } else { "s" }
                ))
            );
        }
    }
    o
}

fn trim_p(p: f64) -> String {
    let s = format!("{p:.11}");
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_string()
}

/// A node group of the JSON with its lines.
type NodeMember<'a> = (&'a NodeJson, Vec<NodeLine>);

/// One line of a node group's walkthrough: `key` is the line without its citation (what two
/// nodes must share to be printed once); `hidden`, the count of a "steps not shown" line.
struct NodeLine {
    key: String,
    text: String,
    hidden: Option<usize>,
}

/// A node group's outcomes, each with the steps it does not share with the first outcome:
/// the same first steps and the same last steps are said, not repeated. Without `-v` only the
/// NAT decisions and each outcome's final rule are shown; the raw, mangle and filter
/// bookkeeping is counted in one line at the end (it is in --json).
fn node_lines(n: &NodeJson, st: Style, detail: Detail) -> Vec<NodeLine> {
    let shown = |key: String, text: String| NodeLine {
        key,
        text,
        hidden: None,
    };
    let mut v = Vec::new();
    let mut hidden = 0;
    let first: Vec<&HopJson> = n
        .outcomes
        .first()
        .map(|f| visible(f, detail))
        .unwrap_or_default();
    for (i, x) in n.outcomes.iter().enumerate() {
        let line = format!(
            "{} {}{}{}",
            x.verdict,
            x.dnat
                .as_ref()
                .map(|d| format!("DNAT -> {d}"))
                .unwrap_or_default(),
            if x.masquerade { ", masqueraded" } else { "" },
            x.pod
                .as_ref()
                .map(|p| format!(" = pod {p}"))
                .unwrap_or_default()
        );
        let tag = format!("[{}]", frac(x.probability));
        v.push(shown(
            format!("{tag} {line}"),
            format!("   {} {line}", st.bold(&tag)),
        ));
        let steps = visible(x, detail);
        hidden += x.steps.len() - steps.len();
        let (shared, tail) = if i > 0 {
            let shared = common_prefix(&first, &steps);
            let rest = steps.get(shared..).unwrap_or(&[]);
            let fr = first.get(shared..).unwrap_or(&[]);
            (shared, common_suffix(fr, rest))
        } else {
            (0, 0)
        };
        if shared > 0 {
            let t = format!("(the same first {} as above)", steps_word(shared));
            v.push(shown(t.clone(), format!("       {}", st.dim(&t))));
        }
        for s in steps
            .iter()
            .skip(shared)
            .take(steps.len().saturating_sub(shared + tail))
        {
            let body = format!(
                "{}{}",
                s.text,
                s.probability
                    .map(|p| format!("  (p={})", trim_p(p)))
                    .unwrap_or_default()
            );
            v.push(shown(
                body.clone(),
                format!("       {body}{}", cite(&s.source, st)),
            ));
        }
        if tail > 0 {
            let t = format!("(then the same last {} as above)", steps_word(tail));
            v.push(shown(t.clone(), format!("       {}", st.dim(&t))));
        }
    }
    v.push(NodeLine {
        key: "(hidden)".into(),
        text: String::new(),
        hidden: Some(hidden),
    });
    v
}

/// The steps of `x` the text shows: without `-v`, the NAT decisions and the final rule.
fn visible(x: &NodeOutcomeJson, detail: Detail) -> Vec<&HopJson> {
    let last = x.steps.len().saturating_sub(1);
    x.steps
        .iter()
        .enumerate()
        .filter(|(k, s)| detail == Detail::Verbose || s.text.starts_with("nat/") || *k == last)
        .map(|(_, s)| s)
        .collect()
}

/// `1 step`, `2 steps`, ...: "the same first 1 step" reads `the same first step`.
fn steps_word(n: usize) -> String {
    if n == 1 {
        "step".into()
    } else {
        format!("{n} steps")
    }
}

/// How many last steps `a` and `b` share.
fn common_suffix(a: &[&HopJson], b: &[&HopJson]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x.text == y.text && x.probability == y.probability)
        .count()
}

fn common_prefix(a: &[&HopJson], b: &[&HopJson]) -> usize {
    a.iter()
        .zip(b.iter())
        .take_while(|(x, y)| x.text == y.text && x.probability == y.probability)
        .count()
}

/// Graphviz: client -> entry routers -> nodes -> ingress pods -> backends, edges labelled with
/// their probability mass, nodes coloured by verdict where it is uniform.
pub fn render_dot(j: &TraceJson, res: &TraceResult) -> String {
    crate::escape_controls(&render_dot_raw(j, res)).into_owned()
}

fn render_dot_raw(j: &TraceJson, res: &TraceResult) -> String {
    let mut o = String::new();
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\\\""));
    let _ = writeln!(o, "digraph kubepath_trace {{");
    let _ = writeln!(o, "  rankdir=LR; node [shape=box, fontname=\"monospace\"];");
    let client = format!("client {}", j.request.from);
    let _ = writeln!(o, "  {} [shape=ellipse];", q(&client));
    let mut target = client.clone();
    if let Some(name) = &j.resolved.name {
        let label = format!("DNS {name}\\n-> {}", j.resolved.addresses.join(", "));
        let _ = writeln!(o, "  \"dns\" [label={}, shape=note];", q(&label));
        let _ = writeln!(o, "  {} -> \"dns\";", q(&client));
        target = "dns".into();
    }
    for e in &j.entries {
        let id = format!("{} / {}", e.router, e.vrf);
        let _ = writeln!(o, "  {} [shape=box3d];", q(&id));
        let _ = writeln!(
            o,
            "  {} -> {} [label=\"{}\"];",
            q(&target),
            q(&id),
            frac(e.probability)
        );
        for f in j
            .fabric
            .iter()
            .filter(|f| f.router == e.router && f.vrf == e.vrf)
        {
            for h in &f.next_hops {
                let to = h.node.clone().unwrap_or_else(|| h.address.clone());
                let _ = writeln!(
                    o,
                    "  {} -> {} [label=\"{}\"];",
                    q(&id),
                    q(&to),
                    frac(h.probability)
                );
            }
        }
    }
    for ((a, b), p) in &res.edges {
        let _ = writeln!(o, "  {} -> {} [label=\"{}\"];", q(a), q(b), pct(*p));
    }
    for (k, v) in &j.verdicts {
        let color = if k == "delivered" {
            "green"
        } else if k == "unknown" {
            "orange"
        } else {
            "red"
        };
        let _ = writeln!(
            o,
            "  {} [shape=octagon, color={color}];",
            q(&format!("{k} {}", pct(*v)))
        );
    }
    let _ = writeln!(o, "}}");
    o
}

// Single-line strings for the text renderers (`crate::EscapeData`).
crate::escape_fields!(TraceJson {
    schema,
    request,
    resolved,
    entries,
    fabric,
    nodes,
    distribution,
    verdicts,
    branches,
    fixes,
    notes,
    snapshot_errors
});
crate::escape_fields!(RequestJson {
    from,
    from_port,
    to,
    proto,
    dport,
    what_if
});
crate::escape_fields!(ResolvedJson {
    name,
    cnames,
    cname_chain,
    addresses
});
crate::escape_fields!(CnameJson {
    name,
    target,
    source
});
crate::escape_fields!(EntryJson {
    router,
    vrf,
    probability,
    why,
    source
});
crate::escape_fields!(FabricJson {
    router,
    vrf,
    prefix,
    via,
    source,
    next_hops,
    unused,
    notes
});
crate::escape_fields!(NextHopJson {
    address,
    connected,
    router_interface,
    probability,
    source,
    node,
    node_iface
});
crate::escape_fields!(UnusedJson {
    next_hop,
    reason,
    source
});
crate::escape_fields!(NodeJson {
    nodes,
    in_iface,
    probability,
    outcomes
});
crate::escape_fields!(NodeOutcomeJson {
    probability,
    verdict,
    dnat,
    masquerade,
    pod,
    steps
});
crate::escape_fields!(DistributionJson {
    nodes,
    ingress_pods,
    backends,
    backends_delivered
});
crate::escape_fields!(BranchJson {
    probability,
    verdict,
    reason,
    members,
    nodes,
    ingress_pods,
    backends,
    http_status,
    forward,
    ret
});
crate::escape_fields!(HopJson {
    stage,
    at,
    text,
    source,
    file,
    line,
    probability
});
crate::escape_fields!(FixJson {
    description,
    commands,
    nodes,
    verified,
    status,
    delivered,
    verification,
    then_fails
});

#[cfg(test)]
mod pct_tests {
    use super::pct;

    /// Issue #11: one format in a verdict list (`dropped 25.00%` beside `dropped 25%`).
    #[test]
    fn a_whole_percent_is_printed_one_way() {
        assert_eq!(pct(0.25), "25%");
        assert_eq!(pct(0.249_999_9), "25%");
        assert_eq!(pct(0.250_000_1), "25%");
        assert_eq!(pct(1.0 / 3.0), "33.33%");
        assert_eq!(pct(1.0), "100%");
        assert_eq!(pct(0.0), "0%");
        assert_eq!(pct(-1e-12), "0%");
    }
}
