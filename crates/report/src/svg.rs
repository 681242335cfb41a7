//! `kubepath trace --format svg|html`: the path tree as a diagram, laid out here (no Graphviz).
//!
//! [`diagram`] builds the graph from the trace DTO ([`TraceJson`], the data `--json` prints)
//! plus the probability mass along node -> ingress pod -> backend edges; [`layout`] places it
//! in columns by stage (client, DNS, routers, nodes, ingress pods, Service, backends) and rows
//! by order; [`render_svg`] draws it. The request's edges are solid; the return path of each
//! branch (its most probable member's hops) is a second layer of dashed edges, and the edge
//! where the reply enters a VRF the request did not come through is marked `leaves-vrf`, the
//! last edge of a failing reply `fail`. Every string from the snapshot is XML-escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::trace::{HopJson, TraceJson};

/// The stages, in the order of the columns.
pub const COLUMNS: [&str; 7] = [
    "client", "dns", "router", "node", "ingress", "service", "backend",
];

/// A cited line: `file:line` (or none) and what it says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cite {
    pub source: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Stable id (`n0`, `n1`, ...), in the order nodes are created.
    pub id: String,
    /// Index into [`COLUMNS`].
    pub col: usize,
    /// The full name (a node, `ns/pod`, `router / VRF`).
    pub name: String,
    /// The second line (a share, a VRF, an address).
    pub detail: String,
    /// `delivered`, `unknown`, `mixed`, another verdict, or empty when no branch names it.
    pub verdict: String,
    /// Only on the return path.
    pub return_only: bool,
    pub cites: Vec<Cite>,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub id: String,
    pub from: usize,
    pub to: usize,
    /// Probability mass (request edges) or the branch's share (return edges).
    pub p: f64,
    /// The label drawn (`1/11`, `25%`), or empty when the group is too dense to label.
    pub label: String,
    /// `req` or `ret`.
    pub layer: &'static str,
    /// Return edge into a VRF the request did not come through.
    pub leaves_vrf: bool,
    /// The last edge of a reply that does not reach the client; the verdict.
    pub fail: Option<String>,
    /// One of more than [`MAX_CITED_EDGES`] edges between two columns: drawn bare (no cited
    /// lines, no tooltip, not hoverable; its boxes have the lines), to keep the page small.
    pub bulk: bool,
    pub cites: Vec<Cite>,
}

#[derive(Debug, Clone, Default)]
pub struct Diagram {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub width: f64,
    pub height: f64,
}

/// XML/HTML escaping of text and attribute values; characters XML 1.0 cannot carry and the
/// terminal controls become visible (`\xNN`, as in the text output).
pub fn esc(s: &str) -> String {
    let s = crate::escape_controls(s);
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\n' => o.push_str("&#10;"),
            '\t' => o.push_str("&#9;"),
            c => o.push(c),
        }
    }
    o
}

fn pct(p: f64) -> String {
    let v = p * 100.0;
    if (v - v.round()).abs() < 1e-6 {
        format!("{v:.0}%")
    } else {
        format!("{v:.2}%")
    }
}

/// A percentage (`25%`, `9.09%`).
pub fn share_pct(p: f64) -> String {
    pct(p)
}

/// `1/11` when p is the inverse of a small integer (up to kube-proxy's rounding), else a
/// percentage.
pub fn share(p: f64) -> String {
    if p > 0.0 {
        let n = (1.0 / p).round();
        if (1.0..=1000.0).contains(&n) && ((1.0 / n) - p).abs() < 1e-6 {
            return if n == 1.0 {
                "1".into()
            } else {
                format!("1/{n}")
            };
        }
    }
    pct(p)
}

fn cite(h: &HopJson) -> Cite {
    Cite {
        source: h.source.clone(),
        text: h.text.clone(),
    }
}

/// The token after `VRF ` in `text` (a router's VRF named by a hop).
fn vrf_in(text: &str) -> Option<String> {
    let i = text.find("VRF ")?;
    let v: String = text[i + 4..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .collect();
    let v = v.trim_end_matches('.');
    (!v.is_empty()).then(|| v.to_string())
}

/// The Service an ingress hop sends to (`... -> Service ns/name:port`).
fn service_in(text: &str) -> Option<String> {
    let i = text.rfind("-> Service ")?;
    let v: String = text[i + 11..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',' && *c != ';')
        .collect();
    (!v.is_empty()).then_some(v)
}

/// At most this many cited lines per element.
const MAX_CITES: usize = 60;
/// Column pairs with more edges than this are not labelled (the boxes show their shares).
const MAX_LABELS: usize = 12;
/// Column pairs with more edges than this draw them bare ([`Edge::bulk`]): 500 nodes x 50
/// ingress pods would otherwise write tens of megabytes of cited lines.
pub const MAX_CITED_EDGES: usize = 1000;
/// At most this many cited lines in an edge's `<title>` (the page's panel has them all).
const EDGE_TITLE_CITES: usize = 3;

#[derive(Default)]
struct Builder {
    d: Diagram,
    index: BTreeMap<(usize, String), usize>,
    edge_index: BTreeMap<(usize, usize, &'static str), usize>,
}

impl Builder {
    fn node(&mut self, col: usize, name: &str, detail: String) -> usize {
        if let Some(i) = self.index.get(&(col, name.to_string())) {
            return *i;
        }
        let i = self.d.nodes.len();
        self.d.nodes.push(Node {
            id: format!("n{i}"),
            col,
            name: name.to_string(),
            detail,
            verdict: String::new(),
            return_only: false,
            cites: Vec::new(),
            x: 0.0,
            y: 0.0,
            w: 0.0,
            h: 0.0,
        });
        self.index.insert((col, name.to_string()), i);
        i
    }
    fn find(&self, col: usize, name: &str) -> Option<usize> {
        self.index.get(&(col, name.to_string())).copied()
    }
    fn edge(&mut self, from: usize, to: usize, p: f64, layer: &'static str) -> usize {
        if let Some(i) = self.edge_index.get(&(from, to, layer)) {
            self.d.edges[*i].p += p;
            return *i;
        }
        let i = self.d.edges.len();
        self.d.edges.push(Edge {
            id: format!("e{i}"),
            from,
            to,
            p,
            label: String::new(),
            layer,
            leaves_vrf: false,
            fail: None,
            bulk: false,
            cites: Vec::new(),
        });
        self.edge_index.insert((from, to, layer), i);
        i
    }
    fn cite_node(&mut self, i: usize, c: Cite) {
        let v = &mut self.d.nodes[i].cites;
        if !v.contains(&c) {
            v.push(c);
        }
    }
    fn cite_edge(&mut self, i: usize, c: Cite) {
        let v = &mut self.d.edges[i].cites;
        if !v.contains(&c) {
            v.push(c);
        }
    }
}

/// Builds the diagram from the trace DTO and the node -> ingress pod -> backend mass (the sim's
/// `TraceResult::edges`), laid out.
pub fn diagram(j: &TraceJson, mass: &BTreeMap<(String, String), f64>) -> Diagram {
    let mut b = Builder::default();
    let all_verdicts: BTreeSet<&str> = j.branches.iter().map(|x| x.verdict).collect();

    // Client and DNS.
    let client = b.node(0, &j.request.from, "client".into());
    b.cite_node(
        client,
        Cite {
            source: None,
            text: format!("{} {} -> {}", j.request.proto, j.request.from, j.request.to),
        },
    );
    let mut prev = client;
    if let Some(name) = &j.resolved.name {
        let dns = b.node(
            1,
            name,
            format!("DNS -> {}", j.resolved.addresses.join(", ")),
        );
        for c in &j.resolved.cname_chain {
            b.cite_node(
                dns,
                Cite {
                    source: Some(c.source.clone()),
                    text: format!("{} is an alias (CNAME) for {}", c.name, c.target),
                },
            );
        }
        b.edge(client, dns, 1.0, "req");
        prev = dns;
    }

    // Entry routers (router / VRF) and their next hops to the nodes.
    let mut request_vrfs: BTreeSet<String> = BTreeSet::new();
    for e in &j.entries {
        request_vrfs.insert(e.vrf.clone());
        let r = b.node(
            2,
            &format!("{} / {}", e.router, e.vrf),
            format!("VRF {}", e.vrf),
        );
        b.cite_node(
            r,
            Cite {
                source: e.source.clone(),
                text: format!("enters at {} in VRF {}: {}", e.router, e.vrf, e.why),
            },
        );
        let ei = b.edge(prev, r, e.probability, "req");
        if let Some(s) = &e.source {
            b.cite_edge(
                ei,
                Cite {
                    source: Some(s.clone()),
                    text: e.why.clone(),
                },
            );
        }
    }
    for f in &j.fabric {
        request_vrfs.insert(f.vrf.clone());
        let Some(r) = b.find(2, &format!("{} / {}", f.router, f.vrf)) else {
            continue;
        };
        let entry_p: f64 = j
            .entries
            .iter()
            .filter(|e| e.router == f.router && e.vrf == f.vrf)
            .map(|e| e.probability)
            .sum();
        b.cite_node(
            r,
            Cite {
                source: Some(f.source.clone()),
                text: format!("{} ({}): {} next hops", f.prefix, f.via, f.next_hops.len()),
            },
        );
        for u in &f.unused {
            b.cite_node(
                r,
                Cite {
                    source: Some(u.source.clone()),
                    text: format!("not used: {} ({})", u.next_hop, u.reason),
                },
            );
        }
        for h in &f.next_hops {
            let to = h.node.clone().unwrap_or_else(|| h.address.clone());
            let n = b.node(3, &to, String::new());
            let ei = b.edge(r, n, entry_p * h.probability, "req");
            b.cite_edge(
                ei,
                Cite {
                    source: Some(h.source.clone()),
                    text: format!(
                        "{} next hop {} via {} -> {} {} ({})",
                        f.router,
                        h.address,
                        h.router_interface.as_deref().unwrap_or("?"),
                        to,
                        h.node_iface.as_deref().unwrap_or(""),
                        share(h.probability)
                    ),
                },
            );
        }
    }
    for (n, p) in &j.distribution.nodes {
        let i = b.node(3, n, String::new());
        b.d.nodes[i].detail = share(*p);
    }
    for (n, p) in &j.distribution.ingress_pods {
        let i = b.node(4, n, String::new());
        b.d.nodes[i].detail = format!("ingress {}", share(*p));
    }
    // The Services the ingress pods send to, from their decisions.
    let mut services: BTreeMap<String, Vec<Cite>> = BTreeMap::new();
    for br in &j.branches {
        for h in &br.forward {
            if h.stage == "ingress" {
                if let Some(s) = service_in(&h.text) {
                    services.entry(s).or_default().push(cite(h));
                }
            }
        }
    }
    let one_service = if services.len() == 1 {
        services.keys().next().cloned()
    } else {
        None
    };
    for (s, cites) in &services {
        let i = b.node(5, s, "Service".into());
        for c in cites {
            b.cite_node(i, c.clone());
        }
    }
    for (n, p) in &j.distribution.backends {
        let i = b.node(6, n, String::new());
        b.d.nodes[i].detail = format!("backend {}", share(*p));
    }
    // node -> ingress pod, ingress pod (or node) -> backend.
    let mut svc_in: BTreeMap<usize, f64> = BTreeMap::new();
    let mut svc_out: BTreeMap<usize, f64> = BTreeMap::new();
    for ((a, c), p) in mass {
        let to_ingress = b.find(4, c);
        let to_backend = b.find(6, c);
        let from = b
            .find(3, a)
            .filter(|_| to_ingress.is_some() || to_backend.is_some());
        let from = from.or_else(|| b.find(4, a));
        let (Some(from), Some(to)) = (from, to_ingress.or(to_backend)) else {
            continue;
        };
        let via_svc = one_service
            .as_ref()
            .and_then(|s| b.find(5, s))
            .filter(|_| b.d.nodes[from].col == 4 && b.d.nodes[to].col == 6);
        if via_svc.is_some() {
            *svc_in.entry(from).or_default() += p;
            *svc_out.entry(to).or_default() += p;
        } else {
            b.edge(from, to, *p, "req");
        }
    }
    if let Some(s) = one_service.as_ref().and_then(|s| b.find(5, s)) {
        for (from, p) in svc_in {
            b.edge(from, s, p, "req");
        }
        for (to, p) in svc_out {
            b.edge(s, to, p, "req");
        }
    }

    // Cited lines of every hop at a node, pod or router.
    for g in &j.nodes {
        for name in g.nodes.keys() {
            let Some(i) = b.find(3, name) else { continue };
            b.cite_node(
                i,
                Cite {
                    source: None,
                    text: format!("arrives on {}", g.in_iface),
                },
            );
            for o in &g.outcomes {
                for s in &o.steps {
                    b.cite_node(i, cite(s));
                }
                let target = o.pod.as_deref().unwrap_or("");
                let Some(t) = b.find(4, target).or_else(|| b.find(6, target)) else {
                    continue;
                };
                if let Some(&ei) = b.edge_index.get(&(i, t, "req")) {
                    for s in o
                        .steps
                        .iter()
                        .filter(|s| s.probability.is_some() || s.text.contains("DNAT"))
                    {
                        b.cite_edge(ei, cite(s));
                    }
                }
            }
        }
    }
    for br in &j.branches {
        for h in br.forward.iter().chain(br.ret.iter()) {
            let i = match h.stage {
                "entry" | "router" => None,
                _ => [3, 4, 6].iter().find_map(|c| b.find(*c, &h.at)),
            };
            if let Some(i) = i {
                b.cite_node(i, cite(h));
            }
        }
    }

    // Verdicts: a box's verdict is that of every branch naming it, `mixed` when they differ.
    let mut named: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for br in &j.branches {
        let mut mark = |i: Option<usize>| {
            if let Some(i) = i {
                named.entry(i).or_default().insert(br.verdict);
            }
        };
        for n in &br.nodes {
            mark(b.find(3, n));
        }
        for n in &br.ingress_pods {
            mark(b.find(4, n));
        }
        for n in &br.backends {
            mark(b.find(6, n));
        }
        for h in br.forward.iter() {
            if h.stage == "ingress" {
                if let Some(s) = service_in(&h.text) {
                    mark(b.find(5, &s));
                }
            }
        }
    }
    for (i, n) in b.d.nodes.iter_mut().enumerate() {
        let set = match n.col {
            0..=2 => Some(&all_verdicts),
            _ => named.get(&i),
        };
        n.verdict = match set {
            Some(s) if s.len() == 1 => s.iter().next().map(|v| v.to_string()).unwrap_or_default(),
            Some(s) if s.len() > 1 => "mixed".into(),
            _ => String::new(),
        };
    }

    // The return layer: per branch, its most probable member's reply, from the pod that
    // answers the client through the nodes and routers its hops name, to the client.
    for br in &j.branches {
        if br.ret.is_empty() {
            continue;
        }
        let mut chain: Vec<(usize, Vec<Cite>, bool)> = Vec::new();
        let answering = br
            .forward
            .iter()
            .filter(|h| h.stage == "pod")
            .find_map(|h| b.find(4, &h.at).or_else(|| b.find(6, &h.at)));
        if let Some(a) = answering {
            chain.push((a, Vec::new(), false));
        }
        let mut cur_vrf: Option<String> = None;
        for h in &br.ret {
            let at = match h.stage {
                "return-router" | "router" => {
                    let vrf = vrf_in(&h.text).or_else(|| cur_vrf.clone());
                    let name = match &vrf {
                        Some(v) => format!("{} / {}", h.at, v),
                        None => h.at.clone(),
                    };
                    let i = match b.find(2, &name) {
                        Some(i) => i,
                        None => {
                            let i = b.node(
                                2,
                                &name,
                                vrf.as_ref().map(|v| format!("VRF {v}")).unwrap_or_default(),
                            );
                            b.d.nodes[i].return_only = true;
                            b.d.nodes[i].verdict = br.verdict.to_string();
                            i
                        }
                    };
                    let leaves = vrf.as_ref().is_some_and(|v| !request_vrfs.contains(v));
                    Some((i, leaves))
                }
                "egress" => {
                    cur_vrf = vrf_in(&h.text);
                    [3, 4, 6]
                        .iter()
                        .find_map(|c| b.find(*c, &h.at))
                        .map(|i| (i, false))
                }
                _ => [3, 4, 6]
                    .iter()
                    .find_map(|c| b.find(*c, &h.at))
                    .map(|i| (i, false)),
            };
            match (at, chain.last_mut()) {
                (Some((i, _)), Some(last)) if last.0 == i => last.1.push(cite(h)),
                (Some((i, leaves)), _) => chain.push((i, vec![cite(h)], leaves)),
                (None, Some(last)) => last.1.push(cite(h)),
                (None, None) => {}
            }
        }
        chain.push((client, Vec::new(), false));
        let n = chain.len();
        for k in 1..n {
            let (from, to) = (chain[k - 1].0, chain[k].0);
            if from == to {
                continue;
            }
            let ei = b.edge(from, to, br.probability, "ret");
            let cites: Vec<Cite> = chain[k - 1]
                .1
                .iter()
                .chain(chain[k].1.iter())
                .cloned()
                .collect();
            for c in cites {
                b.cite_edge(ei, c);
            }
            if chain[k].2 {
                b.d.edges[ei].leaves_vrf = true;
            }
            if k == n - 1 && br.verdict != "delivered" {
                b.d.edges[ei].fail = Some(br.verdict.to_string());
                b.cite_edge(
                    ei,
                    Cite {
                        source: None,
                        text: format!("{} {}: {}", br.verdict, pct(br.probability), br.reason),
                    },
                );
            }
        }
    }

    // Labels: the share of each request edge, unless its column pair is dense.
    let mut per_pair: BTreeMap<(usize, usize, &str), usize> = BTreeMap::new();
    for e in &b.d.edges {
        let k = (b.d.nodes[e.from].col, b.d.nodes[e.to].col, e.layer);
        *per_pair.entry(k).or_default() += 1;
    }
    let nodes = &b.d.nodes;
    for e in &mut b.d.edges {
        let k = (nodes[e.from].col, nodes[e.to].col, e.layer);
        let count = per_pair.get(&k).copied().unwrap_or(0);
        let dense = count > MAX_LABELS;
        if count > MAX_CITED_EDGES && e.fail.is_none() && !e.leaves_vrf {
            e.bulk = true;
            e.cites.clear();
        }
        e.label = match (&e.fail, e.layer) {
            (Some(v), _) => format!("✗ {v} {}", pct(e.p)),
            (None, "ret") if e.leaves_vrf => format!("reply {} into another VRF", pct(e.p)),
            (None, "ret") => String::new(),
            _ if dense => String::new(),
            _ => share(e.p),
        };
    }
    for n in &mut b.d.nodes {
        n.cites.truncate(MAX_CITES);
    }
    for e in &mut b.d.edges {
        e.cites.truncate(MAX_CITES);
    }
    let mut d = b.d;
    layout(&mut d);
    d
}

const CHAR_W: f64 = 7.2;
const BOX_H: f64 = 38.0;
const ROW_GAP: f64 = 14.0;
const COL_GAP: f64 = 110.0;
const MARGIN: f64 = 30.0;
const MAX_CHARS: usize = 58;

fn label_chars(n: &Node) -> usize {
    n.name
        .chars()
        .count()
        .max(n.detail.chars().count())
        .min(MAX_CHARS)
}

/// Columns by stage (empty ones dropped), rows by creation order; each column centred
/// vertically; the return-only routers below the request's.
pub fn layout(d: &mut Diagram) {
    let mut cols: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, n) in d.nodes.iter().enumerate() {
        cols.entry(n.col).or_default().push(i);
    }
    for v in cols.values_mut() {
        v.sort_by_key(|i| (d.nodes[*i].return_only, *i));
    }
    let tallest = cols.values().map(Vec::len).max().unwrap_or(0) as f64;
    let full_h = tallest * (BOX_H + ROW_GAP) - ROW_GAP;
    let top = MARGIN + 24.0;
    let mut x = MARGIN;
    for v in cols.values() {
        let w = v
            .iter()
            .map(|i| label_chars(&d.nodes[*i]))
            .max()
            .unwrap_or(8)
            .max(8) as f64
            * CHAR_W
            + 20.0;
        let h = v.len() as f64 * (BOX_H + ROW_GAP) - ROW_GAP;
        let mut y = top + (full_h - h) / 2.0;
        for i in v {
            let n = &mut d.nodes[*i];
            n.x = x;
            n.y = y;
            n.w = w;
            n.h = BOX_H;
            y += BOX_H + ROW_GAP;
        }
        x += w + COL_GAP;
    }
    d.width = (x - COL_GAP + MARGIN).max(2.0 * MARGIN);
    // Room below for the return edges that dip under the boxes.
    d.height = top + full_h + MARGIN + 80.0;
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_CHARS {
        return s.to_string();
    }
    let head: String = s.chars().take(MAX_CHARS - 1).collect();
    format!("{head}…")
}

fn verdict_class(v: &str) -> &'static str {
    match v {
        "" => "v-none",
        "delivered" => "v-ok",
        "unknown" => "v-unknown",
        "mixed" => "v-mixed",
        _ => "v-fail",
    }
}

/// A `<title>` body: the name and the first cited lines.
fn tooltip(name: &str, cites: &[Cite], max: usize) -> String {
    let mut t = name.to_string();
    for c in cites.iter().take(max) {
        t.push('\n');
        if let Some(s) = &c.source {
            t.push_str(&format!("[{s}] "));
        }
        t.push_str(&c.text);
    }
    if cites.len() > max {
        t.push_str(&format!("\n... {} more", cites.len() - max));
    }
    esc(&t)
}

pub const SVG_STYLE: &str = "\
.col-title{font:bold 13px sans-serif;fill:#444}\
.node rect{stroke:#333;stroke-width:1.2;rx:6}\
.node text{font:12px monospace;fill:#111;pointer-events:none}\
.node .detail{fill:#444;font-size:11px}\
.v-ok rect{fill:#d9f2d9}.v-fail rect{fill:#f8d0d0}.v-unknown rect{fill:#fde9c4}\
.v-mixed rect{fill:#e6e0f5}.v-none rect{fill:#eeeeee}\
.node.return-only rect{stroke-dasharray:5 3}\
.edge path{fill:none;stroke:#555;stroke-width:1.4}\
.edge.ret path{stroke:#1f5fbf;stroke-dasharray:7 4;stroke-width:1.8}\
.edge.leaves-vrf path{stroke:#c05000;stroke-width:2.4}\
.edge.fail path{stroke:#d00000;stroke-width:2.6}\
.edge text{font:11px sans-serif;fill:#222;paint-order:stroke;stroke:#fff;stroke-width:3px}\
.edge.fail text{fill:#b00000;font-weight:bold}\
.edge .hit{stroke:transparent;stroke-width:10;stroke-dasharray:none;fill:none}\
.node:hover rect,.node.sel rect{stroke-width:3}\
.edge:hover path,.edge.sel path{stroke-width:4}";

/// The diagram as an SVG document (standalone: its own style, `<title>` tooltips).
pub fn render_svg(d: &Diagram) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"kubepath-trace\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" font-family=\"monospace\">",
        w = d.width,
        h = d.height
    );
    let _ = writeln!(o, "<style>{SVG_STYLE}</style>");
    let _ = writeln!(
        o,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>"
    );
    // Column titles.
    let mut seen = BTreeSet::new();
    for n in &d.nodes {
        if seen.insert(n.col) {
            let title = match COLUMNS.get(n.col).copied().unwrap_or("") {
                "client" => "client",
                "dns" => "DNS",
                "router" => "entry routers (VRF)",
                "node" => "nodes",
                "ingress" => "ingress pods",
                "service" => "Service",
                "backend" => "backend pods",
                _ => "",
            };
            let _ = writeln!(
                o,
                "<text class=\"col-title\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                n.x,
                MARGIN + 4.0,
                esc(title)
            );
        }
    }
    // Edges first, under the boxes.
    let bottom = d.nodes.iter().map(|n| n.y + n.h).fold(0.0_f64, f64::max);
    for e in &d.edges {
        let (Some(a), Some(b)) = (d.nodes.get(e.from), d.nodes.get(e.to)) else {
            continue;
        };
        let (x1, y1, x2, y2, path, lx, ly);
        if e.layer == "req" {
            x1 = a.x + a.w;
            y1 = a.y + a.h / 2.0;
            x2 = b.x;
            y2 = b.y + b.h / 2.0;
            let dx = ((x2 - x1) / 2.0).max(30.0);
            path = format!(
                "M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}",
                x1 + dx,
                x2 - dx
            );
            lx = (x1 + x2) / 2.0;
            ly = (y1 + y2) / 2.0 - 3.0;
        } else {
            // The reply runs right to left, leaving a box's bottom and dipping under the
            // boxes between, so it does not hide the request's edges.
            x1 = a.x + a.w / 2.0;
            y1 = a.y + a.h;
            x2 = b.x + b.w / 2.0;
            y2 = b.y + b.h;
            let dip = bottom + 40.0;
            path = format!("M{x1:.1},{y1:.1} C{x1:.1},{dip:.1} {x2:.1},{dip:.1} {x2:.1},{y2:.1}");
            lx = (x1 + x2) / 2.0;
            ly = y1.max(y2) * 0.25 + dip * 0.75 - 4.0;
        }
        let mut class = format!("edge {}", e.layer);
        if e.leaves_vrf {
            class.push_str(" leaves-vrf");
        }
        if e.fail.is_some() {
            class.push_str(" fail");
        }
        if e.bulk {
            // Bare: the path alone, with its ends and share as attributes.
            let _ = writeln!(
                o,
                "<g id=\"{}\" class=\"{class} bulk\" data-from=\"{}\" data-to=\"{}\" data-p=\"{}\"><path d=\"{path}\" marker-end=\"url(#arrow)\"/></g>",
                e.id,
                a.id,
                b.id,
                (e.p * 1e9).round() / 1e9
            );
            continue;
        }
        let _ = write!(
            o,
            "<g id=\"{}\" class=\"{class}\" data-cite=\"{}\" data-from=\"{}\" data-to=\"{}\" data-p=\"{}\"",
            e.id,
            e.id,
            d.nodes[e.from].id,
            d.nodes[e.to].id,
            (e.p * 1e9).round() / 1e9
        );
        if let Some(v) = &e.fail {
            let _ = write!(o, " data-verdict=\"{}\"", esc(v));
        }
        let name = format!(
            "{} {} -> {}",
            if e.layer == "req" { "request" } else { "reply" },
            a.name,
            b.name
        );
        let _ = write!(
            o,
            "><title>{}</title><path class=\"hit\" d=\"{path}\"/><path d=\"{path}\" marker-end=\"url(#arrow)\"/>",
            tooltip(&name, &e.cites, EDGE_TITLE_CITES)
        );
        if !e.label.is_empty() {
            let _ = write!(
                o,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">{}</text>",
                esc(&e.label)
            );
        }
        let _ = writeln!(o, "</g>");
    }
    for n in &d.nodes {
        let mut class = format!("node {}", verdict_class(&n.verdict));
        if n.return_only {
            class.push_str(" return-only");
        }
        let _ = writeln!(
            o,
            "<g id=\"{id}\" class=\"{class}\" data-cite=\"{id}\" data-stage=\"{stage}\" data-name=\"{name}\" data-verdict=\"{v}\"><title>{tip}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"6\"/><text x=\"{tx:.1}\" y=\"{ty1:.1}\">{label}</text><text class=\"detail\" x=\"{tx:.1}\" y=\"{ty2:.1}\">{detail}</text></g>",
            id = n.id,
            stage = COLUMNS.get(n.col).copied().unwrap_or(""),
            name = esc(&n.name),
            v = esc(&n.verdict),
            tip = tooltip(&n.name, &n.cites, 8),
            x = n.x,
            y = n.y,
            w = n.w,
            h = n.h,
            tx = n.x + 8.0,
            ty1 = n.y + 16.0,
            ty2 = n.y + 31.0,
            label = esc(&truncate(&n.name)),
            detail = esc(&truncate(&n.detail)),
        );
    }
    let _ = writeln!(o, "</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(col: usize, name: &str) -> Node {
        Node {
            id: String::new(),
            col,
            name: name.into(),
            detail: String::new(),
            verdict: String::new(),
            return_only: false,
            cites: Vec::new(),
            x: 0.0,
            y: 0.0,
            w: 0.0,
            h: 0.0,
        }
    }

    pub(crate) fn assert_sane(d: &Diagram) {
        for (i, a) in d.nodes.iter().enumerate() {
            assert!(a.w > 0.0 && a.h > 0.0, "{} has no size", a.name);
            assert!(
                a.x >= 0.0 && a.y >= 0.0 && a.x + a.w <= d.width && a.y + a.h <= d.height,
                "{} outside the drawing",
                a.name
            );
            for b in &d.nodes[i + 1..] {
                let apart =
                    a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
                assert!(apart, "{} overlaps {}", a.name, b.name);
            }
        }
        for e in &d.edges {
            assert!(e.from < d.nodes.len() && e.to < d.nodes.len(), "{e:?}");
            assert_ne!(e.from, e.to);
        }
        let ids: BTreeSet<&str> = d.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids.len(), d.nodes.len(), "ids are unique");
    }

    #[test]
    fn layout_has_no_overlaps() {
        let mut d = Diagram::default();
        for (i, (c, n)) in [
            (0, "client"),
            (2, "r1 / vrf"),
            (2, "r2 / vrf"),
            (3, "a"),
            (3, "b"),
            (3, "c"),
            (
                6,
                "a very long backend pod name that goes on and on and on beyond any width",
            ),
        ]
        .iter()
        .enumerate()
        {
            let mut x = node(*c, n);
            x.id = format!("n{i}");
            x.return_only = i == 2;
            d.nodes.push(x);
        }
        layout(&mut d);
        assert_sane(&d);
        // Columns run left to right by stage.
        assert!(d.nodes[0].x < d.nodes[1].x && d.nodes[1].x < d.nodes[3].x);
        assert!(d.nodes[3].x < d.nodes[6].x);
        // Rows by order.
        assert!(d.nodes[3].y < d.nodes[4].y && d.nodes[4].y < d.nodes[5].y);
    }

    const EVIL: &str = "<script>alert(\"x\")</script>&'";

    fn hop(stage: &'static str, at: &str, text: &str, source: Option<&str>) -> HopJson {
        HopJson {
            stage,
            at: at.into(),
            text: text.into(),
            source: source.map(String::from),
            file: None,
            line: None,
            probability: None,
        }
    }

    /// Two entry routers, three nodes (one named with markup), two ingress pods, a Service,
    /// a backend, and a branch whose reply leaves by another VRF.
    fn sample() -> (TraceJson, BTreeMap<(String, String), f64>) {
        use crate::trace::*;
        let nodes = ["n1".to_string(), "n2".into(), format!("n3{EVIL}")];
        let pods = ["ns/ing-a".to_string(), format!("ns/ing-b{EVIL}")];
        let backend = "app/web-0".to_string();
        let mut mass = BTreeMap::new();
        for n in &nodes {
            for p in &pods {
                mass.insert((n.clone(), p.clone()), 1.0 / 6.0);
            }
        }
        for p in &pods {
            mass.insert((p.clone(), backend.clone()), 0.5);
        }
        let entry = |r: &str| EntryJson {
            router: r.into(),
            vrf: "om".into(),
            probability: 0.5,
            why: format!("manifest {EVIL}"),
            source: Some(format!("kubepath{EVIL}.yaml:7")),
        };
        let fabric = |r: &str| FabricJson {
            router: r.into(),
            vrf: "om".into(),
            prefix: "10.0.0.1/32".into(),
            via: "bgp".into(),
            source: "routers/r/bgp.txt:3".into(),
            next_hops: nodes
                .iter()
                .map(|n| NextHopJson {
                    address: "10.1.1.1".into(),
                    connected: true,
                    router_interface: Some("Ve 1".into()),
                    probability: 1.0 / 3.0,
                    source: "routers/r/bgp.txt:4".into(),
                    node: Some(n.clone()),
                    node_iface: Some("eth0".into()),
                })
                .collect(),
            unused: Vec::new(),
            notes: Vec::new(),
        };
        let ingress_hop = hop(
            "ingress",
            &pods[0],
            "Host h path / -> Ingress app/web -> Service app/web:80",
            Some("cluster/ing.yaml:9"),
        );
        let j = TraceJson {
            schema: SCHEMA,
            request: RequestJson {
                from: "192.0.2.1".into(),
                from_port: None,
                to: format!("http://h/{EVIL}"),
                proto: "tcp",
                dport: Some(80),
                what_if: Vec::new(),
            },
            resolved: ResolvedJson {
                name: Some("h".into()),
                cnames: Vec::new(),
                cname_chain: Vec::new(),
                addresses: vec!["10.0.0.1".into()],
            },
            entries: vec![entry("r1"), entry("r2")],
            fabric: vec![fabric("r1"), fabric("r2")],
            nodes: Vec::new(),
            distribution: DistributionJson {
                nodes: nodes.iter().map(|n| (n.clone(), 1.0 / 3.0)).collect(),
                ingress_pods: pods.iter().map(|n| (n.clone(), 0.5)).collect(),
                backends: [(backend.clone(), 1.0)].into_iter().collect(),
                backends_delivered: BTreeMap::new(),
            },
            verdicts: [("no-route".to_string(), 1.0)].into_iter().collect(),
            branches: vec![BranchJson {
                probability: 1.0,
                verdict: "no-route",
                reason: format!("no route {EVIL}"),
                members: 6,
                nodes: nodes.to_vec(),
                ingress_pods: pods.to_vec(),
                backends: vec![backend.clone()],
                http_status: None,
                forward: vec![
                    hop("pod", &pods[0], "pod", Some("cluster/pods.yaml:1")),
                    ingress_hop,
                ],
                ret: vec![
                    hop("conntrack", &nodes[2], "un-NAT", None),
                    hop(
                        "egress",
                        &nodes[2],
                        "the reply leaves by eth1 towards r1 Ve 2 (VRF traffic)",
                        None,
                    ),
                    hop(
                        "return-router",
                        "r1",
                        &format!("router r1 has no route in VRF traffic {EVIL}"),
                        Some("routers/r1/t.txt:7"),
                    ),
                ],
            }],
            fixes: Vec::new(),
            notes: vec![format!("a note {EVIL}")],
            snapshot_errors: vec![format!("nodes/x{EVIL}:3: bad line")],
        };
        (j, mass)
    }

    #[test]
    fn a_trace_is_laid_out_without_overlaps_and_with_its_return_layer() {
        let (j, mass) = sample();
        let d = diagram(&j, &mass);
        assert_sane(&d);
        let names: Vec<&str> = d.nodes.iter().map(|n| n.name.as_str()).collect();
        for n in [
            "192.0.2.1",
            "h",
            "r1 / om",
            "r2 / om",
            "n1",
            "ns/ing-a",
            "app/web:80",
            "app/web-0",
            "r1 / traffic",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        // One column per stage, left to right.
        let x = |name: &str| {
            d.nodes
                .iter()
                .find(|n| n.name == name)
                .map(|n| n.x)
                .unwrap_or(-1.0)
        };
        assert!(x("192.0.2.1") < x("h") && x("h") < x("r1 / om") && x("r1 / om") < x("n1"));
        assert!(
            x("n1") < x("ns/ing-a")
                && x("ns/ing-a") < x("app/web:80")
                && x("app/web:80") < x("app/web-0")
        );
        // The reply: the answering ingress pod -> its node -> r1 in VRF traffic (leaves the
        // request's VRF) -> the client, where it fails.
        let ret: Vec<&Edge> = d.edges.iter().filter(|e| e.layer == "ret").collect();
        assert_eq!(ret.len(), 3, "{ret:?}");
        assert!(ret[1].leaves_vrf && d.nodes[ret[1].to].name == "r1 / traffic");
        assert_eq!(ret[2].fail.as_deref(), Some("no-route"));
        assert_eq!(d.nodes[ret[2].to].name, "192.0.2.1");
        assert!(ret[2]
            .cites
            .iter()
            .any(|c| c.source.as_deref() == Some("routers/r1/t.txt:7")));
        // Request edges carry their shares.
        assert!(d.edges.iter().any(|e| e.label == "1/2"));
        assert_eq!(d.nodes.iter().filter(|n| n.detail == "1/3").count(), 3);
    }

    #[test]
    fn dense_column_pairs_are_drawn_bare() {
        let (mut j, mut mass) = sample();
        for n in 0..40 {
            j.distribution.nodes.insert(format!("big{n}"), 0.01);
            for p in 0..30 {
                let pod = format!("ns/pod{p}");
                j.distribution.ingress_pods.insert(pod.clone(), 0.01);
                mass.insert((format!("big{n}"), pod), 0.0001);
            }
        }
        let d = diagram(&j, &mass);
        assert_sane(&d);
        let bulk = d.edges.iter().filter(|e| e.bulk).count();
        assert!(bulk > MAX_CITED_EDGES, "{bulk}");
        assert!(d
            .edges
            .iter()
            .filter(|e| e.bulk)
            .all(|e| e.cites.is_empty() && e.layer == "req"));
        // The reply stays cited.
        assert!(d
            .edges
            .iter()
            .any(|e| e.fail.is_some() && !e.bulk && !e.cites.is_empty()));
        let svg = render_svg(&d);
        assert_eq!(svg.matches("class=\"edge req bulk\"").count(), bulk);
        let html = crate::html::render_page(&j, &d);
        assert!(!html.contains(&format!(
            "id=\"cite-{}\"",
            d.edges
                .iter()
                .find(|e| e.bulk)
                .map(|e| e.id.as_str())
                .unwrap_or("?")
        )));
    }

    #[test]
    fn markup_from_the_snapshot_is_escaped_and_output_deterministic() {
        let (j, mass) = sample();
        let svg = render_svg(&diagram(&j, &mass));
        assert!(!svg.contains("<script"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
        let html = crate::html::render_html_with(&j, &mass);
        assert_eq!(
            html.matches("<script").count(),
            1,
            "only the page's own script"
        );
        assert!(!html.contains("alert(\"x\")"));
        assert!(html.contains(
            "kubepath&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;.yaml:7"
        ));
        assert_eq!(html, crate::html::render_html_with(&j, &mass));
        assert!(html.contains("<summary>notes (1)</summary><ul><li>a note &lt;script&gt;"));
        assert!(html.contains("<li>nodes/x&lt;script&gt;"));
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<script>alert(\"x\" & 'y')</script>\u{1b}"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;\\x1b"
        );
        // Not allowed in XML at all: made visible, so the SVG stays well-formed.
        assert!(!esc("bgp\u{fffe}.txt").contains('\u{fffe}'));
    }

    #[test]
    fn shares() {
        assert_eq!(share(1.0 / 11.0), "1/11");
        assert_eq!(share(0.250000000116), "1/4");
        assert_eq!(share(1.0), "1");
        assert_eq!(share(0.3), "30%");
        assert_eq!(
            vrf_in("towards R Ve 806 (VRF DC_traffic_vr)").as_deref(),
            Some("DC_traffic_vr")
        );
        assert_eq!(
            vrf_in("matches 0.0.0.0/0 (bgp) in VRF om_vr: 2 next hops").as_deref(),
            Some("om_vr")
        );
        assert_eq!(vrf_in("in VRF om_vr.").as_deref(), Some("om_vr"));
        assert_eq!(
            service_in("path / -> Ingress a/b -> Service monitoring/eric-pm-server:9090")
                .as_deref(),
            Some("monitoring/eric-pm-server:9090")
        );
    }
}
