//! Node, router, DNS and nginx.conf readers.
//!
//! Each format has its own module that parses into its own structure and then lowers it into
//! the model. Files are recognised by content; a file may hold several command outputs, each
//! opened by a shell or router prompt echoing the command (`node:~ # ip r`,
//! `DC173-SLX-L1A# show ip bgp vrf X`): every such segment is sniffed and read on its own, and
//! prompt lines are skipped. The formats are described in docs/formats.md.
//!
//! Entry points (called by the snapshot discovery for each file of a directory):
//! [`read_node_file`], [`read_router_file`], [`read_dns_file`], [`read_nginx_file`], then
//! [`finish`] once every file is read.

use kubepath_model::Model;

use crate::diag::{Diagnostic, ParseError, Severity, SourceFile};

pub mod dns;
pub mod frr;
pub mod ipaddr;
pub mod iproute;
pub mod iprule;
pub mod ipvs;
pub mod netfilter;
pub mod nft;
pub mod nginx;
pub mod router_text;
pub mod sysctl;
pub mod text;

use text::{diag, Segment};

/// What a reader made of one segment.
type SegResult = Result<Option<&'static str>, ParseError>;

/// Run `read` on every segment; combine the format names.
fn read_segments<'a>(
    file: &'a SourceFile,
    diags: &mut Vec<Diagnostic>,
    read: impl FnMut(&Segment<'a>, &mut Vec<Diagnostic>) -> SegResult,
) -> SegResult {
    read_segments_split(file, diags, |s| vec![s], read)
}

/// Split a segment holding several node outputs pasted one after the other without prompts
/// (`ip a; ip r; ip rule`): each `ip addr`, `ip route` or `ip rule` text output ends at the
/// first line that cannot belong to it, and the rest is sniffed again.
fn split_node_segment(seg: Segment<'_>, cut_line: Option<u32>) -> Vec<Segment<'_>> {
    type Fmt = (fn(&Segment<'_>) -> bool, fn(&Segment<'_>) -> Option<usize>);
    const FORMATS: [Fmt; 3] = [
        (ipaddr::sniff, ipaddr::extent),
        (iprule::sniff, iprule::extent),
        (iproute::sniff, iproute::extent),
    ];
    fn sub<'a>(lines: &[text::Line<'a>]) -> Segment<'a> {
        Segment {
            command: None,
            command_line: 0,
            lines: lines.to_vec(),
        }
    }
    let mut out = Vec::new();
    let mut cur = seg;
    loop {
        let fmt = FORMATS.iter().find(|(sniff, _)| sniff(&cur));
        let n = fmt.and_then(|(_, extent)| extent(&cur));
        // A stray line (a pager's `--More--`, a garbled or cut line) followed by more lines of
        // the same output is kept in it, so its reader reports that one line (file:line, the
        // line skipped and what depends on it unknown) and reads the rest; ending the output
        // there dropped every later line silently (issue #11, review). At most
        // MAX_STRAY lines are taken in this way.
        const MAX_STRAY: usize = 100;
        let mut n = n;
        if let (Some((sniff, extent)), Some(mut at)) = (fmt, n) {
            for _ in 0..MAX_STRAY {
                if at == 0 || at >= cur.lines.len() {
                    break;
                }
                if at + 1 == cur.lines.len() {
                    // The last line, cut short (the file ends without a newline: a paste or
                    // copy cut mid-line): part of this output, so its reader reports it.
                    if cut_line == Some(cur.lines[at].no) {
                        at += 1;
                    }
                    break;
                }
                let stray = sub(&cur.lines[at..at + 1]);
                if FORMATS.iter().any(|(s, _)| s(&stray)) {
                    break; // another output starts here
                }
                let rest = sub(&cur.lines[at + 1..]);
                if !sniff(&rest) {
                    break;
                }
                match extent(&rest) {
                    Some(m) if m > 0 => at += 1 + m,
                    _ => break,
                }
            }
            n = Some(at);
        }
        match n {
            Some(n) if n > 0 && n < cur.lines.len() => {
                let tail = Segment {
                    command: None,
                    command_line: 0,
                    lines: cur.lines.split_off(n),
                };
                out.push(cur);
                cur = tail;
            }
            _ => {
                out.push(cur);
                return out;
            }
        }
    }
}

fn read_segments_split<'a>(
    file: &'a SourceFile,
    diags: &mut Vec<Diagnostic>,
    split: impl Fn(Segment<'a>) -> Vec<Segment<'a>>,
    mut read: impl FnMut(&Segment<'a>, &mut Vec<Diagnostic>) -> SegResult,
) -> SegResult {
    let segs: Vec<Segment<'a>> = text::segments(&file.text)
        .into_iter()
        .map(|mut seg| {
            // An elision mark (`...`, `[...]`, `<snip>`) stands for lines the operator left
            // out: it is not read, and what it hid is unknown (a warning says so).
            seg.lines.retain(|l| {
                if text::is_kubectl_run_noise(l.text) {
                    diags.push(diag(
                        Severity::Note,
                        &file.path,
                        l.no,
                        1,
                        format!(
                            "`{}`: printed by `kubectl run`, not output; skipped",
                            l.text.trim()
                        ),
                    ));
                    return false;
                }
                if text::is_pager(l.text) {
                    diags.push(diag(
                        Severity::Note,
                        &file.path,
                        l.no,
                        1,
                        format!("`{}`: a pager's prompt, not output; skipped", l.text.trim()),
                    ));
                    return false;
                }
                if !text::is_elision(l.text) {
                    return true;
                }
                diags.push(diag(
                    Severity::Warning,
                    &file.path,
                    l.no,
                    1,
                    format!(
                        "`{}`: lines left out of the paste; what they showed is unknown",
                        l.text.trim()
                    ),
                ));
                false
            });
            seg
        })
        .flat_map(split)
        .collect();
    let mut formats: Vec<&'static str> = Vec::new();
    let mut unrecognised: Vec<(u32, Option<&str>)> = Vec::new();
    for seg in &segs {
        if seg.content().next().is_none() && !dns::empty_output_answers(seg) {
            // A prompt with no output (e.g. `ip r | grep X` that matched nothing): nothing to
            // read, but a filtered empty output is still information only about that filter.
            continue;
        }
        match read(seg, diags)? {
            Some(f) => {
                if !formats.contains(&f) {
                    formats.push(f);
                }
            }
            None => {
                let first = seg
                    .content()
                    .next()
                    .map(|l| l.no)
                    .unwrap_or(seg.command_line);
                unrecognised.push((first, seg.command));
            }
        }
    }
    if formats.is_empty() {
        return Ok(None);
    }
    for (line, cmd) in unrecognised {
        diags.push(diag(
            Severity::Warning,
            &file.path,
            line,
            0,
            match cmd {
                Some(c) => format!("output of `{c}` not recognised; skipped"),
                None => "lines not recognised as any supported format; skipped".to_string(),
            },
        ));
    }
    if formats.len() == 1 {
        Ok(Some(formats[0]))
    } else {
        diags.push(diag(
            Severity::Note,
            &file.path,
            0,
            0,
            format!("file holds several outputs: {}", formats.join(", ")),
        ));
        Ok(Some("mixed"))
    }
}

/// Sniff `file` (taken in `nodes/<node>/`) and, if recognised, parse it into `model.nodes[node]`.
/// Ok(None) = not a node format.
pub fn read_node_file(
    node: &str,
    file: &SourceFile,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    // The file's last line when the file ends without a newline (cut mid-line).
    let cut_line = (!file.text.is_empty() && !file.text.ends_with('\n'))
        .then(|| file.text.lines().count() as u32);
    let split = |s| split_node_segment(s, cut_line);
    read_segments_split(file, diags, split, |seg, diags| {
        let net = model.nodes.entry(node.to_string()).or_default();
        if let Some(f) = nft::read(&file.path, seg, net, diags)? {
            return Ok(Some(f));
        }
        if let Some(f) = ipaddr::read(&file.path, seg, net, diags)? {
            return Ok(Some(f));
        }
        if let Some(f) = iprule::read(&file.path, seg, net, diags)? {
            return Ok(Some(f));
        }
        if let Some(f) = iproute::read(&file.path, seg, net, diags)? {
            return Ok(Some(f));
        }
        if let Some(f) = ipvs::read(&file.path, seg, net, diags)? {
            return Ok(Some(f));
        }
        if let Some(f) = netfilter::read(&file.path, seg, net, diags)? {
            return Ok(Some(f));
        }
        if let Some(f) = sysctl::read(&file.path, seg, net, diags)? {
            return Ok(Some(f));
        }
        Ok(None)
    })
    .inspect(|r| {
        if r.is_none() {
            // Do not leave an empty node behind for a file that was not a node format.
            if model
                .nodes
                .get(node)
                .is_some_and(|n| n.read.is_empty() && n.interfaces.is_empty())
            {
                model.nodes.remove(node);
            }
        }
    })
}

/// Sniff `file` (taken in `routers/<router>/`) and, if recognised, parse it into
/// `model.routers[router]`.
pub fn read_router_file(
    router: &str,
    file: &SourceFile,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    let existed = model.routers.contains_key(router);
    let r = read_segments(file, diags, |seg, diags| {
        let rt = model
            .routers
            .entry(router.to_string())
            .or_insert_with(|| kubepath_model::net::Router::new(router));
        let f = match frr::read(&file.path, seg, rt, diags)? {
            Some(f) => Some(f),
            None => router_text::read(&file.path, seg, rt, diags)?,
        };
        if let Some(f) = f {
            use kubepath_model::net::RouterFact as F;
            let facts: &[F] = match f {
                "show-ip-bgp" | "frr-bgp-json" => &[F::Bgp],
                "frr-route-json" => &[F::Rib],
                "show-running-config-interface" => &[F::InterfaceConfig],
                "frr-interface-json" => &[F::InterfaceConfig, F::InterfaceState],
                "show-interface" => &[F::InterfaceState],
                _ => &[],
            };
            let line = seg
                .content()
                .next()
                .map(|l| l.no)
                .unwrap_or(seg.command_line);
            for fact in facts {
                rt.read
                    .entry(*fact)
                    .or_default()
                    .push(kubepath_model::SourceRef::new(file.path.clone(), line));
            }
        }
        Ok(f)
    })?;
    if r.is_none() && !existed {
        model.routers.remove(router);
    }
    Ok(r)
}

/// Sniff `file` (in dns/) and, if recognised, add its records to model.dns.
pub fn read_dns_file(
    file: &SourceFile,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    read_segments(file, diags, |seg, diags| {
        dns::read(&file.path, seg, &mut model.dns, diags)
    })
}

/// Sniff `file` as an nginx.conf; pod = Some((namespace, pod)) when the file sits in
/// `ingress/<ns>/<pod>/`.
pub fn read_nginx_file(
    pod: Option<(&str, &str)>,
    file: &SourceFile,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    match nginx::read(pod, file, diags)? {
        Some(conf) => {
            model.nginx.push(conf);
            Ok(Some("nginx-conf"))
        }
        None => Ok(None),
    }
}

/// After every file is read: cross-file work.
///
/// - The manifest's `interfaces:` entries (docs/snapshot.md) set the VRF of node interfaces
///   (`node: "*"` = every node) and of router interfaces that have no `vrf forwarding`.
/// - A node interface enslaved to a VRF device (`master X` where X has kind `vrf`) gets that
///   VRF. Otherwise, when router interfaces with a VRF (`vrf forwarding NAME`) have an address
///   on the same subnet as the node interface, the node interface is taken to be in that VRF
///   (a note says so). When the subnet is in two different VRFs, a warning says so and the
///   interface's VRF stays unknown.
pub fn finish(model: &mut Model, diags: &mut Vec<Diagnostic>) {
    use ipnet::IpNet;
    let entries = model.manifest.interfaces.clone();
    for e in &entries {
        if let Some(r) = &e.router {
            match model
                .routers
                .get_mut(r)
                .and_then(|rt| rt.interfaces.iter_mut().find(|i| i.name == e.interface))
            {
                Some(i) if i.vrf.is_none() => i.vrf = Some(e.vrf.clone()),
                Some(_) => {}
                None => diags.push(diag(
                    Severity::Warning,
                    &e.source.file,
                    e.source.line,
                    0,
                    format!(
                        "manifest names interface {} of router {r}, which no router output shows",
                        e.interface
                    ),
                )),
            }
        }
        if let Some(n) = &e.node {
            let mut hit = false;
            for (name, node) in model.nodes.iter_mut() {
                if n != "*" && n != name {
                    continue;
                }
                if let Some(i) = node.interfaces.iter_mut().find(|i| i.name == e.interface) {
                    i.vrf = Some(e.vrf.clone());
                    hit = true;
                }
            }
            if !hit {
                diags.push(diag(
                    Severity::Warning,
                    &e.source.file,
                    e.source.line,
                    0,
                    format!(
                        "manifest names interface {} of node {n}, which no `ip addr` output shows",
                        e.interface
                    ),
                ));
            }
        }
    }
    // Router subnets with a VRF.
    let mut subnets: Vec<(IpNet, String, String)> = Vec::new();
    for r in model.routers.values() {
        for i in &r.interfaces {
            if let Some(v) = &i.vrf {
                for a in i.addresses.iter().chain(&i.anycast_addresses) {
                    subnets.push((a.trunc(), v.clone(), format!("{} {}", r.name, i.name)));
                }
            }
        }
    }
    // Inferred VRFs, grouped for one note per (interface, VRF): (iface, vrf, subnet, router
    // interface) -> (nodes, first source).
    type Group = (Vec<String>, kubepath_model::SourceRef, usize);
    let mut inferred: std::collections::BTreeMap<(String, String, String, String), Group> =
        Default::default();
    for (node_name, node) in model.nodes.iter_mut() {
        let vrf_devs: Vec<String> = node
            .interfaces
            .iter()
            .filter(|i| i.kind.as_deref() == Some("vrf"))
            .map(|i| i.name.clone())
            .collect();
        for iface in node.interfaces.iter_mut() {
            if iface.vrf.is_some() {
                continue;
            }
            if let Some(m) = &iface.master {
                if vrf_devs.contains(m) {
                    iface.vrf = Some(m.clone());
                    continue;
                }
            }
            let mut found: Vec<&(IpNet, String, String)> = Vec::new();
            for a in &iface.addresses {
                for s in &subnets {
                    if a.address.prefix_len() == s.0.prefix_len() && s.0.contains(&a.address.addr())
                    {
                        found.push(s);
                    }
                }
            }
            let mut vrfs: Vec<&str> = found.iter().map(|s| s.1.as_str()).collect();
            vrfs.sort_unstable();
            vrfs.dedup();
            match vrfs.as_slice() {
                [] => {}
                [vrf] => {
                    let (net, _, where_) = found[0];
                    let g = inferred
                        .entry((iface.name.clone(), vrf.to_string(), net.to_string(), where_.clone()))
                        .or_insert_with(|| (Vec::new(), iface.source.clone(), found.len()));
                    g.0.push(node_name.clone());
                    iface.vrf = Some(vrf.to_string());
                }
                many => diags.push(diag(
                    Severity::Warning,
                    &iface.source.file,
                    iface.source.line,
                    0,
                    format!(
                        "node {node_name} interface {}: its subnet is in several router VRFs ({}); VRF unknown (set it in kubepath.yaml `interfaces:`)",
                        iface.name,
                        many.join(", ")
                    ),
                )),
            }
        }
    }
    for ((iface, vrf, net, where_), (nodes, src, n)) in inferred {
        let others = if n > 1 {
            format!(" (and {} more)", n - 1)
        } else {
            String::new()
        };
        diags.push(diag(
            Severity::Note,
            &src.file,
            src.line,
            0,
            format!(
                "interface {iface} taken to be in VRF {vrf} on {} node(s) ({}): its subnet {net} is on router interface {where_}{others}; kubepath.yaml `interfaces:` overrides this",
                nodes.len(),
                nodes.join(", ")
            ),
        ));
    }
}

#[cfg(test)]
mod tests;
