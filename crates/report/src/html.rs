//! `kubepath trace --format html`: one self-contained page (inline CSS, JS and SVG, nothing
//! fetched): the verdicts, the diagram of [`crate::svg`], and a panel that shows the cited
//! config lines (`file:line` and the hop's text) of the box or edge hovered or clicked.
//!
//! The cited lines are written into the page as escaped HTML, one hidden block per element;
//! the script only copies those blocks into the panel, so nothing from the snapshot ever
//! becomes markup or script. `page.html#e3` opens with element `e3`'s lines in the panel.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kubepath_sim::trace::TraceResult;

use crate::svg::{self, esc, Cite, Diagram};
use crate::trace::TraceJson;

const PAGE_STYLE: &str = "\
body{font:14px sans-serif;margin:16px;color:#111;background:#fff}\
h1{font-size:18px;margin:0 0 6px}\
.meta,.verdicts,.fixes{margin:4px 0}\
.verdict{display:inline-block;padding:2px 8px;margin-right:6px;border-radius:4px;font-weight:bold}\
.verdict.v-ok{background:#d9f2d9}.verdict.v-fail{background:#f8d0d0}.verdict.v-unknown{background:#fde9c4}\
#wrap{display:flex;gap:12px;align-items:flex-start}\
#diagram{flex:1 1 auto;overflow:auto;border:1px solid #ccc}\
#diagram svg{max-width:100%;height:auto;display:block}\
#panel{flex:0 0 300px;max-height:90vh;overflow:auto;border:1px solid #ccc;padding:8px;font-size:12px}\
#panel h3{font-size:13px;margin:0 0 6px;word-break:break-all}\
#panel li{margin-bottom:4px;word-break:break-word}\
code{background:#f2f2f2;padding:0 3px}\
.legend span{margin-right:14px}\
.cites{display:none}";

const SCRIPT: &str = "\
(function(){\
var panel=document.getElementById('panel');var pinned=null;\
function show(el){var c=document.getElementById('cite-'+el.getAttribute('data-cite'));\
if(!c){return;}var k=c.cloneNode(true);k.removeAttribute('id');k.className='';\
panel.replaceChildren(k);}\
document.querySelectorAll('[data-cite]').forEach(function(el){\
el.addEventListener('mouseenter',function(){if(!pinned){show(el);}});\
el.addEventListener('click',function(ev){if(pinned){pinned.classList.remove('sel');}\
pinned=el;el.classList.add('sel');show(el);ev.stopPropagation();});});\
document.addEventListener('click',function(){if(pinned){pinned.classList.remove('sel');pinned=null;}});\
var h=decodeURIComponent(location.hash.slice(1));var el=h?document.getElementById(h):null;\
if(el&&el.hasAttribute('data-cite')){pinned=el;el.classList.add('sel');show(el);}\
document.body.setAttribute('data-ready','1');\
})();";

fn verdict_class(v: &str) -> &'static str {
    match v {
        "delivered" => "v-ok",
        "unknown" => "v-unknown",
        _ => "v-fail",
    }
}

fn cites_block(o: &mut String, id: &str, title: &str, cites: &[Cite]) {
    let _ = write!(
        o,
        "<div class=\"cites\" id=\"cite-{id}\"><h3>{}</h3><ul>",
        esc(title)
    );
    if cites.is_empty() {
        let _ = write!(o, "<li>no cited line</li>");
    }
    for c in cites {
        let src = match &c.source {
            Some(s) => format!("<code class=\"src\">{}</code> ", esc(s)),
            None => String::new(),
        };
        let _ = write!(o, "<li>{src}{}</li>", esc(&c.text));
    }
    let _ = writeln!(o, "</ul></div>");
}

/// The page for a laid-out diagram.
pub fn render_page(j: &TraceJson, d: &Diagram) -> String {
    let mut o = String::new();
    let title = format!("kubepath trace {} -> {}", j.request.from, j.request.to);
    let _ = writeln!(o, "<!DOCTYPE html>");
    let _ = writeln!(
        o,
        "<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\"><title>{}</title>",
        esc(&title)
    );
    let _ = writeln!(o, "<style>{PAGE_STYLE}</style></head><body>");
    let _ = writeln!(o, "<h1>{}</h1>", esc(&title));
    let mut meta = format!("{} {}", j.request.proto, j.request.from);
    if let Some(name) = &j.resolved.name {
        let _ = write!(meta, "; DNS {name} -> {}", j.resolved.addresses.join(", "));
    }
    if !j.request.what_if.is_empty() {
        let _ = write!(meta, "; what-if: {}", j.request.what_if.join(" | "));
    }
    let _ = writeln!(o, "<div class=\"meta\">{}</div>", esc(&meta));
    let _ = write!(o, "<div class=\"verdicts\">");
    let mut verdicts: Vec<(&String, &f64)> = j.verdicts.iter().collect();
    verdicts.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    for (v, p) in verdicts {
        let _ = write!(
            o,
            "<span class=\"verdict {}\" data-verdict=\"{}\">{} {}</span>",
            verdict_class(v),
            esc(v),
            esc(v),
            esc(&svg::share_pct(*p))
        );
    }
    let _ = writeln!(o, "</div>");
    for (i, b) in j.branches.iter().enumerate() {
        let _ = writeln!(
            o,
            "<div class=\"branch\" data-verdict=\"{}\">{}. <b>{}</b> {}: {}</div>",
            esc(b.verdict),
            i + 1,
            esc(b.verdict),
            esc(&svg::share_pct(b.probability)),
            esc(&b.reason)
        );
    }
    if !j.fixes.is_empty() {
        let _ = write!(o, "<div class=\"fixes\">");
        for (i, f) in j.fixes.iter().enumerate() {
            let _ = write!(
                o,
                "<div class=\"fix\">fix {}: [{}] <code>{}</code> (on {} nodes)</div>",
                i + 1,
                esc(f.status),
                esc(&f.commands.join(" && ")),
                f.nodes.len()
            );
        }
        let _ = writeln!(o, "</div>");
    }
    for (what, list) in [
        (
            "snapshot errors (what they concern is unknown)",
            &j.snapshot_errors,
        ),
        ("notes", &j.notes),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(
            o,
            "<details class=\"notes\"><summary>{} ({})</summary><ul>",
            esc(what),
            list.len()
        );
        for n in list.iter() {
            let _ = write!(o, "<li>{}</li>", esc(n));
        }
        let _ = writeln!(o, "</ul></details>");
    }
    let _ = writeln!(
        o,
        "<div class=\"legend\"><span>solid: request, labelled with its share</span><span>dashed blue: the reply</span><span>dashed orange: the reply enters a VRF the request did not come through</span><span>red: where the reply is lost</span><span>hover or click a box or an edge for its cited lines</span></div>"
    );
    let _ = writeln!(o, "<div id=\"wrap\"><div id=\"diagram\">");
    o.push_str(&svg::render_svg(d));
    let _ = writeln!(
        o,
        "</div><div id=\"panel\"><h3>cited lines</h3><p>Hover or click a box or an edge.</p></div></div>"
    );
    for n in &d.nodes {
        cites_block(&mut o, &n.id, &n.name, &n.cites);
    }
    for e in d.edges.iter().filter(|e| !e.bulk) {
        let (a, b) = (
            d.nodes.get(e.from).map(|n| n.name.as_str()).unwrap_or(""),
            d.nodes.get(e.to).map(|n| n.name.as_str()).unwrap_or(""),
        );
        let what = if e.layer == "req" { "request" } else { "reply" };
        cites_block(&mut o, &e.id, &format!("{what} {a} -> {b}"), &e.cites);
    }
    let _ = writeln!(o, "<script>{SCRIPT}</script>");
    let _ = writeln!(o, "</body></html>");
    o
}

/// The trace as one self-contained HTML page.
pub fn render_html(j: &TraceJson, res: &TraceResult) -> String {
    render_html_with(j, &res.edges)
}

/// [`render_html`] from the DTO and the node -> ingress pod -> backend mass.
pub fn render_html_with(j: &TraceJson, mass: &BTreeMap<(String, String), f64>) -> String {
    render_page(j, &svg::diagram(j, mass))
}

/// The trace's diagram alone, as an SVG document.
pub fn render_svg(j: &TraceJson, res: &TraceResult) -> String {
    svg::render_svg(&svg::diagram(j, &res.edges))
}
