//! FRRouting vtysh JSON: `show ip bgp [vrf NAME|all] json` (same shape as `show bgp vrf all
//! ipv4 unicast json`), `show ip route [vrf all] json` and `show interface json`.
//!
//! Shapes, as FRR 8.4 prints them (captured from bgpd/zebra run in a network namespace; see
//! fixtures/frr/ok):
//! - BGP: `{"VRF": {"vrfName", "routerId", "localAS", "routes": {"PREFIX": [PATH, ...]}}}` for
//!   `vrf all`, or the inner object alone for one VRF. A PATH has `valid`, `bestpath`,
//!   `multipath`, `pathFrom` (`external`/`internal`), `metric` (MED), `locPrf`, `weight`,
//!   `peerId`, `path` (AS path as a space-separated string), `origin` (`IGP`/`EGP`/
//!   `incomplete`), `nexthops: [{"ip", "used"}]`, and when set `suppressed`, `damped`,
//!   `history`, `stale`.
//! - Routes: `{"PREFIX": [{"protocol", "vrfName", "selected", "installed", "distance",
//!   "metric", "nexthops": [{"ip", "interfaceName", "directlyConnected", "active", "fib",
//!   "weight"}]}]}`; with `vrf all`, one such object per VRF, printed one after the other.
//! - Interfaces: `{"NAME": {"administrativeStatus", "operationalStatus", "vrfName",
//!   "hardwareAddress", "ipAddresses": [{"address": "A/L"}]}}`.

use std::sync::Arc;

use kubepath_model::net::{
    BgpPath, BgpRoute, BgpStatus, Origin, RibNextHop, RibRoute, Router, RouterVendor, DEFAULT_VRF,
};
use kubepath_model::SourceRef;
use serde_json::{Map, Value};

use super::router_text::normalise_mac;
use super::text::{diag, err, line_col, parse_ip, parse_prefix, Segment};
use crate::diag::{Diagnostic, ParseError, Severity};

/// Which FRR JSON output a segment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrrKind {
    Bgp,
    Routes,
    Interfaces,
}

pub fn sniff(seg: &Segment<'_>) -> Option<FrrKind> {
    let first = seg.content().next()?.text.trim_start();
    if !first.starts_with('{') {
        return None;
    }
    let head: String = seg
        .lines
        .iter()
        .take(60)
        .map(|l| l.text)
        .collect::<Vec<_>>()
        .join("\n");
    if head.contains("\"routes\"") || head.contains("\"bestpath\"") || head.contains("\"pathFrom\"")
    {
        Some(FrrKind::Bgp)
    } else if head.contains("\"administrativeStatus\"") || head.contains("\"operationalStatus\"") {
        Some(FrrKind::Interfaces)
    } else if head.contains("\"protocol\"") && head.contains("\"nexthops\"") {
        Some(FrrKind::Routes)
    } else {
        None
    }
}

/// Parse one or more concatenated JSON values (FRR prints one object per VRF for some
/// `vrf all` commands).
fn parse_stream(file: &Arc<str>, text: &str, line0: u32) -> Result<Vec<Value>, ParseError> {
    let mut out = Vec::new();
    let mut it = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        match it.next() {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                return Err(err(
                    file,
                    line0 + e.line().saturating_sub(1) as u32,
                    e.column().max(1) as u32,
                    "valid JSON",
                    e.to_string(),
                ));
            }
            None => break,
        }
    }
    Ok(out)
}

/// The line of the first occurrence of `"key"` in `text` at or after byte `from`.
fn key_line(text: &str, key: &str, from: usize, line0: u32) -> (u32, usize) {
    let needle = format!("\"{key}\"");
    match text[from.min(text.len())..].find(&needle) {
        Some(i) => (line0 + line_col(text, from + i).0 - 1, from + i),
        None => (line0, from),
    }
}

pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    rt: &mut Router,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    let Some(kind) = sniff(seg) else {
        return Ok(None);
    };
    let (text, line0) = seg.text();
    let values = parse_stream(file, &text, line0)?;
    rt.vendor = Some(RouterVendor::Frr);
    match kind {
        FrrKind::Bgp => {
            for v in &values {
                read_bgp(file, &text, line0, v, rt, diags)?;
            }
            Ok(Some("frr-bgp-json"))
        }
        FrrKind::Routes => {
            let mut from = 0;
            for v in &values {
                from = read_routes(file, &text, line0, from, v, rt)?;
            }
            Ok(Some("frr-route-json"))
        }
        FrrKind::Interfaces => {
            for v in &values {
                read_interfaces(file, &text, line0, v, rt)?;
            }
            Ok(Some("frr-interface-json"))
        }
    }
}

fn obj<'a>(
    file: &Arc<str>,
    line: u32,
    v: &'a Value,
    what: &str,
) -> Result<&'a Map<String, Value>, ParseError> {
    v.as_object().ok_or_else(|| {
        err(
            file,
            line,
            1,
            format!("a JSON object ({what})"),
            "another JSON value",
        )
    })
}

fn read_bgp(
    file: &Arc<str>,
    text: &str,
    line0: u32,
    v: &Value,
    rt: &mut Router,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), ParseError> {
    let top = obj(file, line0, v, "FRR BGP table")?;
    // One VRF (`routes` at top level) or several keyed by VRF name.
    let vrfs: Vec<(String, &Value)> = if top.contains_key("routes") {
        vec![(
            top.get("vrfName")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_VRF)
                .to_string(),
            v,
        )]
    } else {
        top.iter().map(|(k, v)| (k.clone(), v)).collect()
    };
    let mut from = 0usize;
    for (name, vv) in vrfs {
        let (vline, voff) = key_line(text, &name, from, line0);
        from = voff;
        let Some(routes) = vv.get("routes").and_then(Value::as_object) else {
            diags.push(diag(
                Severity::Warning,
                file,
                vline,
                0,
                format!("VRF {name}: no `routes` object; skipped"),
            ));
            continue;
        };
        let vrf_name = vv
            .get("vrfName")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .to_string();
        let vrf = rt.vrfs.entry(vrf_name.clone()).or_default();
        vrf.bgp_source = Some(SourceRef::new(file.clone(), vline));
        let mut index: std::collections::HashMap<ipnet::IpNet, usize> = vrf
            .bgp
            .iter()
            .enumerate()
            .map(|(i, r)| (r.prefix, i))
            .collect();
        for (pfx, paths) in routes {
            let (pline, poff) = key_line(text, pfx, from, line0);
            from = poff;
            let prefix = parse_prefix(pfx)
                .ok_or_else(|| err(file, pline, 1, "a prefix as route key", format!("`{pfx}`")))?;
            let arr = paths.as_array().ok_or_else(|| {
                err(
                    file,
                    pline,
                    1,
                    format!("an array of paths for {pfx}"),
                    "another JSON value",
                )
            })?;
            let mut out = Vec::new();
            for p in arr {
                let b = |k: &str| p.get(k).and_then(Value::as_bool).unwrap_or(false);
                let u = |k: &str| {
                    p.get(k)
                        .and_then(Value::as_u64)
                        .and_then(|x| u32::try_from(x).ok())
                };
                let nhs = p.get("nexthops").and_then(Value::as_array);
                let nh = nhs
                    .and_then(|a| {
                        a.iter()
                            .find(|n| n.get("used").and_then(Value::as_bool) == Some(true))
                            .or_else(|| a.first())
                    })
                    .and_then(|n| n.get("ip").and_then(Value::as_str))
                    .and_then(parse_ip);
                let Some(next_hop) = nh else {
                    return Err(err(
                        file,
                        pline,
                        1,
                        format!("a next hop (`nexthops[].ip`) in every path of {pfx}"),
                        "a path without one",
                    ));
                };
                let origin = match p.get("origin").and_then(Value::as_str) {
                    Some("IGP") | Some("i") => Some(Origin::Igp),
                    Some("EGP") | Some("e") => Some(Origin::Egp),
                    Some("incomplete") | Some("?") => Some(Origin::Incomplete),
                    _ => None,
                };
                out.push(BgpPath {
                    next_hop,
                    local: next_hop.is_unspecified(),
                    next_hop_interface: None,
                    status: BgpStatus {
                        valid: b("valid"),
                        best: b("bestpath"),
                        multipath: b("multipath"),
                        best_external: false,
                        internal: p.get("pathFrom").and_then(Value::as_str) == Some("internal"),
                        suppressed: b("suppressed"),
                        damped: b("damped"),
                        history: b("history"),
                        stale: b("stale"),
                        rib_failure: false,
                    },
                    rd: p.get("rd").and_then(Value::as_str).map(str::to_string),
                    med: u("metric").or_else(|| u("med")),
                    local_pref: u("locPrf").or_else(|| u("localpref")),
                    weight: u("weight"),
                    as_path: p
                        .get("path")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                    origin,
                    peer: p.get("peerId").and_then(Value::as_str).and_then(parse_ip),
                    source: SourceRef::new(file.clone(), pline),
                });
            }
            match index.get(&prefix).copied() {
                Some(i) => vrf.bgp[i].paths.extend(out),
                None => {
                    index.insert(prefix, vrf.bgp.len());
                    vrf.bgp.push(BgpRoute { prefix, paths: out });
                }
            }
        }
    }
    Ok(())
}

fn read_routes(
    file: &Arc<str>,
    text: &str,
    line0: u32,
    mut from: usize,
    v: &Value,
    rt: &mut Router,
) -> Result<usize, ParseError> {
    let top = obj(file, line0, v, "FRR routing table")?;
    for (pfx, entries) in top {
        let (pline, poff) = key_line(text, pfx, from, line0);
        from = poff;
        let prefix = parse_prefix(pfx)
            .ok_or_else(|| err(file, pline, 1, "a prefix as route key", format!("`{pfx}`")))?;
        let arr = entries.as_array().ok_or_else(|| {
            err(
                file,
                pline,
                1,
                format!("an array of routes for {pfx}"),
                "another JSON value",
            )
        })?;
        for e in arr {
            let vrf = e
                .get("vrfName")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_VRF)
                .to_string();
            let b = |k: &str| e.get(k).and_then(Value::as_bool).unwrap_or(false);
            let u = |k: &str| {
                e.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|x| u32::try_from(x).ok())
            };
            let nexthops = e
                .get("nexthops")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|n| {
                    let nb = |k: &str| n.get(k).and_then(Value::as_bool).unwrap_or(false);
                    RibNextHop {
                        gateway: n.get("ip").and_then(Value::as_str).and_then(parse_ip),
                        interface: n
                            .get("interfaceName")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        directly_connected: nb("directlyConnected"),
                        active: nb("active"),
                        fib: nb("fib"),
                        weight: n
                            .get("weight")
                            .and_then(Value::as_u64)
                            .and_then(|x| u32::try_from(x).ok()),
                    }
                })
                .collect();
            let r = RibRoute {
                prefix,
                protocol: e
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                selected: b("selected"),
                installed: b("installed"),
                distance: u("distance"),
                metric: u("metric"),
                nexthops,
                source: SourceRef::new(file.clone(), pline),
            };
            let v = rt.vrfs.entry(vrf).or_default();
            if v.rib_source.is_none() {
                v.rib_source = Some(SourceRef::new(file.clone(), pline));
            }
            v.rib.push(r);
        }
    }
    Ok(from)
}

fn read_interfaces(
    file: &Arc<str>,
    text: &str,
    line0: u32,
    v: &Value,
    rt: &mut Router,
) -> Result<(), ParseError> {
    let top = obj(file, line0, v, "FRR interfaces")?;
    let mut from = 0;
    for (name, i) in top {
        let (line, off) = key_line(text, name, from, line0);
        from = off;
        let src = SourceRef::new(file.clone(), line);
        let s = |k: &str| i.get(k).and_then(Value::as_str);
        let mut addrs = Vec::new();
        for a in i
            .get("ipAddresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = a.get("address").and_then(Value::as_str) {
                let n = t
                    .parse::<ipnet::IpNet>()
                    .map_err(|_| err(file, line, 1, "an address `A/LEN`", format!("`{t}`")))?;
                addrs.push(n);
            }
        }
        let vrf = s("vrfName")
            .filter(|v| *v != DEFAULT_VRF)
            .map(str::to_string);
        let ri = rt.interface_mut(name, &src);
        ri.source = src;
        ri.vrf = vrf;
        ri.addresses = addrs;
        ri.mac = s("hardwareAddress").and_then(normalise_mac);
        ri.admin_up = s("administrativeStatus").map(|x| x == "up");
        ri.oper_up = s("operationalStatus").map(|x| x == "up");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::text::segments;

    fn load(path: &str) -> Router {
        let text = std::fs::read_to_string(format!(
            "{}/../../fixtures/frr/ok/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let f: Arc<str> = path.into();
        let mut rt = Router::new("lab");
        for s in segments(&text) {
            assert!(read(&f, &s, &mut rt, &mut Vec::new()).unwrap().is_some());
        }
        rt
    }

    #[test]
    fn bgp_vrf_all_multipath() {
        let rt = load("show-ip-bgp-vrf-all.json.txt");
        let p: ipnet::IpNet = "10.7.0.0/24".parse().unwrap();
        let fw = rt.forwarding_paths("default", &p, false);
        let mut nh: Vec<String> = fw.iter().map(|p| p.next_hop.to_string()).collect();
        nh.sort();
        assert_eq!(nh, vec!["10.6.1.2", "10.6.2.2"]);
        let r = rt
            .bgp_route("default", &"10.9.0.0/24".parse().unwrap())
            .unwrap();
        assert!(r.paths[0].local && r.paths[0].status.best);
        assert_eq!(r.paths[0].weight, Some(32768));
        assert_eq!(r.paths[0].source.line, 12);
    }

    #[test]
    fn routes_ecmp() {
        let rt = load("show-ip-route-vrf-all.json");
        let r = rt.vrfs["default"]
            .rib
            .iter()
            .find(|r| r.prefix.to_string() == "10.7.0.0/24")
            .unwrap();
        assert_eq!(r.protocol, "bgp");
        assert_eq!(r.active_nexthops().len(), 2);
        assert!(r.selected && r.installed);
    }

    #[test]
    fn interfaces() {
        let rt = load("show-interface.json");
        let i = rt.interface("r1").unwrap();
        assert_eq!(i.addresses[0].to_string(), "10.6.1.1/24");
        assert_eq!(i.mac.as_deref(), Some("16:da:b1:7b:2a:28"));
        assert_eq!(i.oper_up, Some(true));
    }
}
