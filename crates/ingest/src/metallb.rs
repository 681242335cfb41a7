//! MetalLB and ECFE load-balancer configuration.
//!
//! * MetalLB's legacy ConfigMap (MetalLB ≤ 0.12, `internal/config/config.go` of
//!   metallb/metallb at v0.12: `configFile` with `peers`, `bgp-communities`, `address-pools`,
//!   `bfd-profiles`; a pool's `protocol`, `addresses` (CIDRs and `a-b` ranges), `auto-assign`
//!   (default true), `avoid-buggy-ips`, `bgp-advertisements` (`aggregation-length`,
//!   `localpref`, `communities`); a BGP pool without `bgp-advertisements` gets one default
//!   advertisement (aggregation length 32 / 128)). MetalLB parses it strictly; unknown keys
//!   become warnings here.
//! * ECFE's variant of it: `bgp-bfd-peers` (peer fields plus `min-rx`, `min-tx`, `multiplier`
//!   and `my-address-pools`: the peer only receives routes of the listed pools).
//! * MetalLB's CRDs (metallb.io/v1beta1, v1beta2): IPAddressPool, BGPPeer, BGPAdvertisement,
//!   L2Advertisement, BFDProfile, Community.
//! * Speakers: pods labelled `component=speaker` (MetalLB's and ECFE's DaemonSets) or
//!   `app.kubernetes.io/component=speaker`; their `--lb-class` and `--ignore-exclude-lb`
//!   flags (MetalLB `speaker/main.go`).

use std::net::IpAddr;
use std::sync::Arc;

use kubepath_model::k8s::*;
use kubepath_model::{Model, SourceRef};
use serde_json::Value;

use crate::diag::{Diagnostic, Severity};
use crate::k8s::Ctx;
use crate::yaml::{self, Lines};

/// Where one parsed config document lives in the file.
struct Place<'a> {
    file: &'a Arc<str>,
    lines: &'a Lines,
    /// Added to the embedded document's lines (0 when they cannot be mapped).
    offset: u32,
    /// Used when a line is unknown.
    fallback: u32,
}

impl Place<'_> {
    fn line(&self, path: &str) -> u32 {
        if self.offset == 0 {
            return self.fallback;
        }
        self.lines
            .get(path)
            .map(|l| l + self.offset)
            .unwrap_or(self.fallback)
    }
    fn src(&self, path: &str) -> SourceRef {
        SourceRef::new(self.file.clone(), self.line(path))
    }
    fn diag(&self, diags: &mut Vec<Diagnostic>, sev: Severity, path: &str, msg: String) {
        diags.push(Diagnostic {
            severity: sev,
            file: self.file.clone(),
            line: self.line(path),
            column: 0,
            message: msg,
        });
    }
}

/// Interpret a ConfigMap whose `config` key holds MetalLB's (or ECFE's) configuration.
pub(crate) fn read_config_map(
    cm: &ConfigMap,
    ctx: &Ctx,
    file_text: &str,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(cfg) = cm.data.get("config") else {
        return;
    };
    let key_line = cm
        .data_lines
        .get("config")
        .copied()
        .unwrap_or(cm.source.line);
    // A literal block (`config: |`) starts on the next line: its lines map 1:1 onto the
    // file's. Anything else (a JSON string with \n escapes) cannot be mapped.
    let block = file_text
        .lines()
        .nth(key_line.saturating_sub(1) as usize)
        .is_some_and(|l| {
            let t = l.trim_end();
            t.ends_with('|') || t.ends_with("|-") || t.ends_with("|+") || t.ends_with('>')
        });
    let mut local = Vec::new();
    let docs = match yaml::parse_docs(ctx.file, cfg, &mut local) {
        Ok(d) => d,
        Err(e) => {
            // Only an error if it looked like a MetalLB config at all.
            if cfg.contains("address-pools") || cfg.contains("peers") {
                diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: ctx.file.clone(),
                    line: if block { key_line + e.line } else { key_line },
                    column: if block { e.column } else { 0 },
                    message: format!(
                        "ConfigMap {}: key `config` is not valid YAML ({}): load-balancer configuration unknown",
                        cm.key, e.found
                    ),
                });
            }
            return;
        }
    };
    let Some(doc) = docs.first() else { return };
    let Some(obj) = doc.value.as_object() else {
        return;
    };
    let known = [
        "peers",
        "bgp-bfd-peers",
        "address-pools",
        "bgp-communities",
        "bfd-profiles",
    ];
    if !obj.keys().any(|k| known.contains(&k.as_str())) {
        return;
    }
    let place = Place {
        file: ctx.file,
        lines: &doc.lines,
        offset: if block { key_line } else { 0 },
        fallback: key_line,
    };
    for d in local {
        place.diag(diags, d.severity, "", d.message);
    }
    let flavor = if obj.contains_key("bgp-bfd-peers") {
        Flavor::Ecfe
    } else {
        Flavor::Legacy
    };
    let lb_flavor = match flavor {
        Flavor::Ecfe => LbFlavor::Ecfe,
        Flavor::Legacy => LbFlavor::MetallbConfigMap,
    };
    model
        .cluster
        .lb
        .configs
        .push((lb_flavor, SourceRef::new(ctx.file.clone(), key_line)));
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            place.diag(
                diags,
                Severity::Warning,
                &format!("/{}", yaml::escape_key(k)),
                format!("ConfigMap {}: unknown top-level key `{k}` ignored", cm.key),
            );
        }
    }
    let lb = &mut model.cluster.lb;
    if let Some(comms) = obj.get("bgp-communities").and_then(Value::as_object) {
        for (k, v) in comms {
            lb.communities
                .insert(k.clone(), scalar_string(v).unwrap_or_default());
        }
    }
    for field in ["peers", "bgp-bfd-peers"] {
        for (i, p) in list(obj.get(field)).iter().enumerate() {
            let path = format!("/{field}/{i}");
            if let Some(peer) = legacy_peer(p, &path, lb_flavor, &place, diags) {
                lb.peers.push(peer);
            }
        }
    }
    for (i, p) in list(obj.get("bfd-profiles")).iter().enumerate() {
        let path = format!("/bfd-profiles/{i}");
        lb.bfd_profiles.push(BfdProfile {
            name: s(p, "name").unwrap_or_default(),
            receive_interval: u(p, "receive-interval"),
            transmit_interval: u(p, "transmit-interval"),
            detect_multiplier: u(p, "detect-multiplier"),
            source: place.src(&path),
        });
    }
    for (i, p) in list(obj.get("address-pools")).iter().enumerate() {
        let path = format!("/address-pools/{i}");
        legacy_pool(p, &path, lb_flavor, &place, lb, diags);
    }
}

#[derive(Clone, Copy)]
enum Flavor {
    Legacy,
    Ecfe,
}

fn list(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_array).cloned().unwrap_or_default()
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(scalar_string)
}

fn u(v: &Value, k: &str) -> Option<u32> {
    v.get(k).and_then(|x| {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .or_else(|| x.as_str().and_then(|t| t.parse().ok()))
    })
}

fn b(v: &Value, k: &str) -> Option<bool> {
    v.get(k).and_then(|x| {
        x.as_bool().or_else(|| match x.as_str() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        })
    })
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(scalar_string).collect())
        .unwrap_or_default()
}

/// A Go-style duration (`300ms`, `3s`, `1m30s`) or a bare number of milliseconds, in ms.
pub(crate) fn duration_ms(text: &str) -> Option<u32> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u32>() {
        return Some(n);
    }
    let mut total: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let n: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let mul = match unit {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "us" | "µs" => 0.001,
            _ => return None,
        };
        total += n * mul;
        rest = next;
    }
    Some(total.round() as u32)
}

fn selectors(v: Option<&Value>, legacy: bool) -> Vec<LabelSelector> {
    let (ml, me) = if legacy {
        ("match-labels", "match-expressions")
    } else {
        ("matchLabels", "matchExpressions")
    };
    list(v).iter().map(|sel| selector(sel, ml, me)).collect()
}

fn selector(sel: &Value, ml: &str, me: &str) -> LabelSelector {
    LabelSelector {
        match_labels: sel
            .get(ml)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), scalar_string(v).unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
        match_expressions: list(sel.get(me))
            .iter()
            .map(|e| LabelExpression {
                key: s(e, "key").unwrap_or_default(),
                operator: s(e, "operator").unwrap_or_default(),
                values: strings(e, "values"),
            })
            .collect(),
    }
}

fn check_keys(
    v: &Value,
    allowed: &[&str],
    what: &str,
    path: &str,
    place: &Place,
    diags: &mut Vec<Diagnostic>,
) {
    if let Some(o) = v.as_object() {
        for k in o.keys() {
            if !allowed.contains(&k.as_str()) {
                place.diag(
                    diags,
                    Severity::Warning,
                    &format!("{path}/{}", yaml::escape_key(k)),
                    format!("{what}: unknown key `{k}` ignored"),
                );
            }
        }
    }
}

fn legacy_peer(
    p: &Value,
    path: &str,
    flavor: LbFlavor,
    place: &Place,
    diags: &mut Vec<Diagnostic>,
) -> Option<Peer> {
    check_keys(
        p,
        &[
            "peer-address",
            "peer-asn",
            "my-asn",
            "peer-port",
            "hold-time",
            "keepalive-time",
            "router-id",
            "node-selectors",
            "password",
            "source-address",
            "bfd-profile",
            "ebgp-multihop",
            "min-rx",
            "min-tx",
            "multiplier",
            "my-address-pools",
            "vrf",
        ],
        "peer",
        path,
        place,
        diags,
    );
    let addr_s = s(p, "peer-address").unwrap_or_default();
    let Ok(address) = addr_s.parse::<IpAddr>() else {
        place.diag(
            diags,
            Severity::Error,
            &format!("{path}/peer-address"),
            format!("peer-address `{addr_s}` is not an IP address: peer ignored"),
        );
        return None;
    };
    let (Some(peer_asn), Some(my_asn)) = (u(p, "peer-asn"), u(p, "my-asn")) else {
        place.diag(
            diags,
            Severity::Error,
            path,
            format!(
                "peer {address}: peer-asn and my-asn are required (32-bit numbers): peer ignored"
            ),
        );
        return None;
    };
    let ip = |k: &str, diags: &mut Vec<Diagnostic>| -> Option<IpAddr> {
        let t = s(p, k)?;
        match t.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                place.diag(
                    diags,
                    Severity::Warning,
                    &format!("{path}/{k}"),
                    format!("{k} `{t}` is not an IP address"),
                );
                None
            }
        }
    };
    let has_bfd = p.get("min-rx").is_some()
        || p.get("min-tx").is_some()
        || p.get("multiplier").is_some()
        || p.get("bfd-profile").is_some();
    let bfd = has_bfd.then(|| Bfd {
        profile: s(p, "bfd-profile"),
        min_rx: s(p, "min-rx").and_then(|t| duration_ms(&t)),
        min_tx: s(p, "min-tx").and_then(|t| duration_ms(&t)),
        multiplier: u(p, "multiplier"),
    });
    Some(Peer {
        name: None,
        address,
        peer_asn,
        my_asn,
        peer_port: u(p, "peer-port").and_then(|n| u16::try_from(n).ok()),
        hold_time: s(p, "hold-time"),
        keepalive_time: s(p, "keepalive-time"),
        router_id: ip("router-id", diags),
        source_address: ip("source-address", diags),
        ebgp_multihop: b(p, "ebgp-multihop"),
        vrf: s(p, "vrf"),
        bfd,
        node_selectors: selectors(p.get("node-selectors"), true),
        my_address_pools: p
            .get("my-address-pools")
            .map(|_| strings(p, "my-address-pools")),
        flavor,
        source: place.src(path),
    })
}

/// Parse a pool address entry: a CIDR or `first-last`.
pub(crate) fn addr_range(text: &str) -> Result<AddrRange, String> {
    let t = text.trim();
    if let Some((a, z)) = t.split_once('-') {
        let first: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{a}` is not an IP address"))?;
        let last: IpAddr = z
            .trim()
            .parse()
            .map_err(|_| format!("`{z}` is not an IP address"))?;
        if first.is_ipv4() != last.is_ipv4() {
            return Err("range mixes IPv4 and IPv6".into());
        }
        if last < first {
            return Err(format!("range end {last} is before its start {first}"));
        }
        return Ok(AddrRange {
            text: t.to_string(),
            first,
            last,
            is_cidr: false,
        });
    }
    let net: ipnet::IpNet = t
        .parse()
        .map_err(|_| format!("`{t}` is neither a CIDR nor a range `a-b`"))?;
    Ok(AddrRange {
        text: t.to_string(),
        first: net.network(),
        last: net.broadcast(),
        is_cidr: true,
    })
}

fn legacy_pool(
    p: &Value,
    path: &str,
    flavor: LbFlavor,
    place: &Place,
    lb: &mut LoadBalancer,
    diags: &mut Vec<Diagnostic>,
) {
    check_keys(
        p,
        &[
            "name",
            "protocol",
            "addresses",
            "avoid-buggy-ips",
            "auto-assign",
            "bgp-advertisements",
        ],
        "address pool",
        path,
        place,
        diags,
    );
    let name = s(p, "name").unwrap_or_default();
    let protocol = match s(p, "protocol").as_deref() {
        Some("bgp") => Some(LbMode::Bgp),
        Some("layer2") => Some(LbMode::Layer2),
        other => {
            place.diag(
                diags,
                Severity::Error,
                &format!("{path}/protocol"),
                format!("pool `{name}`: protocol {:?} is neither `bgp` nor `layer2`: the pool is never announced", other.unwrap_or("(missing)")),
            );
            None
        }
    };
    let mut ranges = Vec::new();
    for (i, a) in strings(p, "addresses").iter().enumerate() {
        match addr_range(a) {
            Ok(r) => ranges.push(r),
            Err(e) => place.diag(
                diags,
                Severity::Error,
                &format!("{path}/addresses/{i}"),
                format!("pool `{name}`: {e}: address ignored"),
            ),
        }
    }
    let source = place.src(path);
    match protocol {
        Some(LbMode::Bgp) => {
            let ads = list(p.get("bgp-advertisements"));
            if ads.is_empty() {
                lb.bgp_advertisements.push(BgpAdvertisement {
                    name: None,
                    pools: vec![name.clone()],
                    pool_selectors: vec![],
                    node_selectors: vec![],
                    peers: vec![],
                    communities: vec![],
                    local_pref: None,
                    aggregation_length: None,
                    aggregation_length_v6: None,
                    source: source.clone(),
                });
            }
            for (i, ad) in ads.iter().enumerate() {
                let ap = format!("{path}/bgp-advertisements/{i}");
                check_keys(
                    ad,
                    &[
                        "aggregation-length",
                        "aggregation-length-v6",
                        "localpref",
                        "communities",
                    ],
                    "bgp-advertisement",
                    &ap,
                    place,
                    diags,
                );
                lb.bgp_advertisements.push(BgpAdvertisement {
                    name: None,
                    pools: vec![name.clone()],
                    pool_selectors: vec![],
                    node_selectors: vec![],
                    peers: vec![],
                    communities: strings(ad, "communities"),
                    local_pref: u(ad, "localpref"),
                    aggregation_length: u(ad, "aggregation-length")
                        .and_then(|n| u8::try_from(n).ok()),
                    aggregation_length_v6: u(ad, "aggregation-length-v6")
                        .and_then(|n| u8::try_from(n).ok()),
                    source: place.src(&ap),
                });
            }
        }
        Some(LbMode::Layer2) => lb.l2_advertisements.push(L2Advertisement {
            name: None,
            pools: vec![name.clone()],
            pool_selectors: vec![],
            node_selectors: vec![],
            interfaces: vec![],
            source: source.clone(),
        }),
        None => {}
    }
    lb.pools.push(Pool {
        name,
        namespace: None,
        labels: Default::default(),
        ranges,
        auto_assign: b(p, "auto-assign").unwrap_or(true),
        avoid_buggy_ips: b(p, "avoid-buggy-ips").unwrap_or(false),
        protocol,
        flavor,
        source,
    });
}

/// Read a metallb.io CRD. Returns false for kinds that are not load-balancer configuration.
pub(crate) fn read_crd(
    kind: &str,
    v: &Value,
    ctx: &Ctx,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let meta = v.get("metadata").cloned().unwrap_or(Value::Null);
    let name = s(&meta, "name").unwrap_or_default();
    let namespace = s(&meta, "namespace");
    let labels = meta
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), scalar_string(v).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let spec = v.get("spec").cloned().unwrap_or(Value::Null);
    let lb = &mut model.cluster.lb;
    let src = ctx.obj_src();
    let known = matches!(
        kind,
        "IPAddressPool"
            | "BGPPeer"
            | "BGPAdvertisement"
            | "L2Advertisement"
            | "BFDProfile"
            | "Community"
    );
    if known
        && !lb
            .configs
            .iter()
            .any(|(f, s)| *f == LbFlavor::MetallbCrd && s.file == src.file)
    {
        lb.configs
            .push((LbFlavor::MetallbCrd, SourceRef::new(src.file.clone(), 0)));
    }
    match kind {
        "IPAddressPool" => {
            if spec.get("serviceAllocation").is_some() {
                ctx.diag(
                    diags,
                    Severity::Warning,
                    "/spec/serviceAllocation",
                    format!(
                        "IPAddressPool {name}: serviceAllocation (pool priority and namespace/service selectors) is not modelled: predicted assignments may differ from MetalLB's"
                    ),
                );
            }
            let mut ranges = Vec::new();
            for (i, a) in strings(&spec, "addresses").iter().enumerate() {
                match addr_range(a) {
                    Ok(r) => ranges.push(r),
                    Err(e) => ctx.diag(
                        diags,
                        Severity::Error,
                        &format!("/spec/addresses/{i}"),
                        format!("IPAddressPool {name}: {e}: address ignored"),
                    ),
                }
            }
            lb.pools.push(Pool {
                name,
                namespace,
                labels,
                ranges,
                auto_assign: b(&spec, "autoAssign").unwrap_or(true),
                avoid_buggy_ips: b(&spec, "avoidBuggyIPs").unwrap_or(false),
                protocol: None,
                flavor: LbFlavor::MetallbCrd,
                source: src,
            });
        }
        "BGPPeer" => {
            let addr_s = s(&spec, "peerAddress").unwrap_or_default();
            let Ok(address) = addr_s.parse::<IpAddr>() else {
                ctx.diag(
                    diags,
                    Severity::Error,
                    "/spec/peerAddress",
                    format!(
                        "BGPPeer {name}: peerAddress `{addr_s}` is not an IP address: peer ignored"
                    ),
                );
                return true;
            };
            let (Some(peer_asn), Some(my_asn)) = (u(&spec, "peerASN"), u(&spec, "myASN")) else {
                ctx.diag(
                    diags,
                    Severity::Error,
                    "/spec",
                    format!("BGPPeer {name}: peerASN and myASN are required: peer ignored"),
                );
                return true;
            };
            let bfd = s(&spec, "bfdProfile").map(|p| Bfd {
                profile: Some(p),
                ..Bfd::default()
            });
            lb.peers.push(Peer {
                name: Some(name),
                address,
                peer_asn,
                my_asn,
                peer_port: u(&spec, "peerPort").and_then(|n| u16::try_from(n).ok()),
                hold_time: s(&spec, "holdTime"),
                keepalive_time: s(&spec, "keepaliveTime"),
                router_id: s(&spec, "routerID").and_then(|t| t.parse().ok()),
                source_address: s(&spec, "sourceAddress").and_then(|t| t.parse().ok()),
                ebgp_multihop: b(&spec, "ebgpMultiHop"),
                vrf: s(&spec, "vrf"),
                bfd,
                node_selectors: selectors(spec.get("nodeSelectors"), false),
                my_address_pools: None,
                flavor: LbFlavor::MetallbCrd,
                source: src,
            });
        }
        "BGPAdvertisement" => lb.bgp_advertisements.push(BgpAdvertisement {
            name: Some(name),
            pools: strings(&spec, "ipAddressPools"),
            pool_selectors: list(spec.get("ipAddressPoolSelectors"))
                .iter()
                .map(|x| selector(x, "matchLabels", "matchExpressions"))
                .collect(),
            node_selectors: selectors(spec.get("nodeSelectors"), false),
            peers: strings(&spec, "peers"),
            communities: strings(&spec, "communities"),
            local_pref: u(&spec, "localPref"),
            aggregation_length: u(&spec, "aggregationLength").and_then(|n| u8::try_from(n).ok()),
            aggregation_length_v6: u(&spec, "aggregationLengthV6")
                .and_then(|n| u8::try_from(n).ok()),
            source: src,
        }),
        "L2Advertisement" => lb.l2_advertisements.push(L2Advertisement {
            name: Some(name),
            pools: strings(&spec, "ipAddressPools"),
            pool_selectors: list(spec.get("ipAddressPoolSelectors"))
                .iter()
                .map(|x| selector(x, "matchLabels", "matchExpressions"))
                .collect(),
            node_selectors: selectors(spec.get("nodeSelectors"), false),
            interfaces: strings(&spec, "interfaces"),
            source: src,
        }),
        "BFDProfile" => lb.bfd_profiles.push(BfdProfile {
            name,
            receive_interval: u(&spec, "receiveInterval"),
            transmit_interval: u(&spec, "transmitInterval"),
            detect_multiplier: u(&spec, "detectMultiplier"),
            source: src,
        }),
        "Community" => {
            for c in list(spec.get("communities")) {
                if let (Some(n), Some(val)) = (s(&c, "name"), s(&c, "value")) {
                    lb.communities.insert(n, val);
                }
            }
        }
        _ => return false,
    }
    true
}

fn is_speaker(p: &Pod) -> bool {
    p.labels.get("component").map(String::as_str) == Some("speaker")
        || p.labels
            .get("app.kubernetes.io/component")
            .map(String::as_str)
            == Some("speaker")
}

fn is_controller(p: &Pod) -> bool {
    let lb_app = |p: &Pod| {
        p.labels
            .values()
            .any(|v| v.contains("metallb") || v.contains("ecfe"))
            || p.key.name.contains("metallb")
            || p.key.name.contains("ecfe")
    };
    (p.labels.get("component").map(String::as_str) == Some("controller")
        || p.labels
            .get("app.kubernetes.io/component")
            .map(String::as_str)
            == Some("controller"))
        && lb_app(p)
}

/// Takes the MetalLB version from `p`'s images, when none was found yet.
fn note_version(speakers: &mut Speakers, p: &Pod) {
    if speakers.version.is_none() {
        speakers.version = p
            .containers
            .iter()
            .find_map(|c| c.image.as_deref().and_then(image_version));
        if speakers.version.is_some() {
            speakers.version_source = Some(p.source.clone());
        }
    }
}

/// `major.minor.patch` from an image reference's tag (`quay.io/metallb/speaker:v0.13.7`,
/// `metallb/controller:0.12.1@sha256:...`); None for `latest`, a digest only, or no tag.
fn image_version(image: &str) -> Option<(u32, u32, u32)> {
    let no_digest = image.split('@').next()?;
    let last = no_digest.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let mut parts = tag.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// `--flag=value` or `--flag value` in `args`.
fn flag_value<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix(flag) {
            if let Some(v) = v.strip_prefix('=') {
                return Some(v);
            }
            if v.is_empty() {
                return args.get(i + 1).copied();
            }
        }
    }
    None
}

fn flag_set(args: &[&str], flag: &str) -> bool {
    args.iter().any(|a| {
        *a == flag
            || a.strip_prefix(flag)
                .and_then(|v| v.strip_prefix('='))
                .is_some_and(|v| v != "false")
    })
}

/// After every cluster file: find the speakers and their flags.
pub(crate) fn finish(model: &mut Model, diags: &mut Vec<Diagnostic>) {
    let mut known_nodes: std::collections::BTreeSet<&String> = model.cluster.nodes.keys().collect();
    known_nodes.extend(model.nodes.keys());
    let node_count = known_nodes.len();
    let cluster = &mut model.cluster;
    let mut speakers = Speakers::default();
    for p in &cluster.pods {
        if is_speaker(p) {
            let Some(node) = p.node_name.clone() else {
                continue;
            };
            let running = p.phase.as_deref().is_none_or(|ph| ph == "Running")
                && p.ready.unwrap_or(true)
                && !p.terminating;
            note_version(&mut speakers, p);
            if speakers.flags_source.is_none() {
                let args: Vec<&str> = p.all_args().collect();
                speakers.lb_class = flag_value(&args, "--lb-class").map(str::to_string);
                speakers.ignore_exclude_lb = flag_set(&args, "--ignore-exclude-lb");
                speakers.flags_source = Some(p.source.clone());
            }
            speakers.pods.push(Speaker {
                node,
                pod: p.key.clone(),
                running,
                source: p.source.clone(),
            });
        } else if is_controller(p) {
            note_version(&mut speakers, p);
            let args: Vec<&str> = p.all_args().collect();
            if speakers.controllers.is_empty() {
                speakers.controller_lb_class = flag_value(&args, "--lb-class").map(str::to_string);
            }
            speakers.controllers.push(p.key.clone());
        }
    }
    speakers.pods.sort_by(|a, b| a.node.cmp(&b.node));
    // MetalLB reads its CRDs from its own namespace only (the controller and the speakers
    // watch the namespace they run in, `--namespace`/`METALLB_NAMESPACE`): where its pods
    // run. IPAddressPools of other namespaces are not used. Without MetalLB's pods in the
    // snapshot its namespace is not known (it is whatever it was installed in): every pool
    // is kept.
    let ns = speakers
        .controllers
        .first()
        .or(speakers.pods.first().map(|s| &s.pod))
        .map(|k| k.namespace.clone());
    let (ours, foreign): (Vec<Pool>, Vec<Pool>) = std::mem::take(&mut cluster.lb.pools)
        .into_iter()
        .partition(|p| {
            p.flavor != LbFlavor::MetallbCrd
                || ns.is_none()
                || p.namespace
                    .as_deref()
                    .is_none_or(|n| Some(n) == ns.as_deref())
        });
    let ns = ns.unwrap_or_default();
    cluster.lb.pools = ours;
    for p in foreign {
        diags.push(Diagnostic {
            severity: Severity::Note,
            file: p.source.file.clone(),
            line: p.source.line,
            column: 0,
            message: format!(
                "IPAddressPool {} is in namespace {}, not MetalLB's ({ns}): MetalLB does not read it, left out",
                p.name,
                p.namespace.as_deref().unwrap_or("")
            ),
        });
        cluster.lb.foreign_pools.push((p, ns.clone()));
    }
    if speakers.pods.is_empty() && cluster.lb.is_configured() {
        speakers.assumed_all_nodes = true;
        let file = cluster
            .lb
            .configs
            .first()
            .map(|(_, s)| s.file.clone())
            .unwrap_or_else(|| Arc::from(""));
        diags.push(Diagnostic {
            severity: Severity::Note,
            file,
            line: 0,
            column: 0,
            message: format!(
                "no speaker pod (label component=speaker) in the snapshot: assuming every node ({node_count}) runs a speaker"
            ),
        });
    }
    for s in &speakers.pods {
        if !cluster.nodes.contains_key(&s.node) && !cluster.nodes.is_empty() {
            diags.push(Diagnostic {
                severity: Severity::Warning,
                file: s.source.file.clone(),
                line: s.source.line,
                column: 0,
                message: format!(
                    "speaker pod {} runs on node `{}`, which is not among the Nodes read",
                    s.pod, s.node
                ),
            });
        }
    }
    cluster.lb.speakers = speakers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("300ms"), Some(300));
        assert_eq!(duration_ms("3s"), Some(3000));
        assert_eq!(duration_ms("1m30s"), Some(90_000));
        assert_eq!(duration_ms("300"), Some(300));
        assert_eq!(duration_ms("3x"), None);
    }

    #[test]
    fn ranges() {
        let r = addr_range("10.33.151.161-10.33.151.167").unwrap();
        assert!(!r.is_cidr);
        assert_eq!(r.last, "10.33.151.167".parse::<IpAddr>().unwrap());
        let r = addr_range("10.33.152.16/28").unwrap();
        assert_eq!(r.first, "10.33.152.16".parse::<IpAddr>().unwrap());
        assert_eq!(r.last, "10.33.152.31".parse::<IpAddr>().unwrap());
        assert!(addr_range("10.0.0.5-10.0.0.1").is_err());
        assert!(addr_range("nope").is_err());
    }

    #[test]
    fn flags() {
        let a = ["--port=7472", "--lb-class", "x", "--ignore-exclude-lb"];
        assert_eq!(flag_value(&a, "--lb-class"), Some("x"));
        assert!(flag_set(&a, "--ignore-exclude-lb"));
        assert!(!flag_set(
            &["--ignore-exclude-lb=false"],
            "--ignore-exclude-lb"
        ));
    }
}
