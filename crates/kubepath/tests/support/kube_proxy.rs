//! What kube-proxy on a node sees of a snapshot's cluster, as the generators of
//! `kubepath_netfilter_gen` take it (the seed written in nftables or IPVS mode).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

use kubepath_model::k8s::TrafficPolicy;
use kubepath_netfilter_gen::kube_proxy_nft::{NftEndpoint, NftServicePort};

fn v4(a: &IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(x) => Some(*x),
        IpAddr::V6(_) => None,
    }
}

/// What kube-proxy on `node` sees: every IPv4 Service port with its ready endpoints.
pub fn services_for(model: &kubepath_model::Model, node: &str) -> Vec<NftServicePort> {
    let by_svc = model.cluster.endpoints_by_service();
    let mut out = Vec::new();
    for (key, svc) in &model.cluster.services {
        let Some(cip) = svc.cluster_ips.iter().find_map(v4) else {
            continue;
        };
        for sp in &svc.ports {
            let mut endpoints = Vec::new();
            for set in by_svc.get(key).into_iter().flatten() {
                let Some(port) = set
                    .port_for(sp)
                    .and_then(|p| p.port)
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                for ep in set.endpoints.iter().filter(|e| e.is_ready()) {
                    for ip in ep.addresses.iter().filter_map(v4) {
                        let e = NftEndpoint {
                            ip,
                            port,
                            local: ep.node_name.as_deref() == Some(node),
                        };
                        if !endpoints.contains(&e) {
                            endpoints.push(e);
                        }
                    }
                }
            }
            out.push(NftServicePort {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                port_name: sp.name.clone().unwrap_or_default(),
                protocol: sp.protocol.to_ascii_lowercase(),
                cluster_ip: Some(cip),
                port: u16::try_from(sp.port).expect("port"),
                node_port: sp.node_port.and_then(|p| u16::try_from(p).ok()),
                external_ips: svc.external_ips.iter().filter_map(v4).collect(),
                lb_ips: svc
                    .lb_ingress
                    .iter()
                    .filter_map(|i| i.ip.as_ref().and_then(v4))
                    .collect(),
                source_ranges: svc
                    .load_balancer_source_ranges
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
                etp_local: svc.external_traffic_policy == TrafficPolicy::Local,
                affinity_seconds: (svc.session_affinity.as_deref() == Some("ClientIP"))
                    .then(|| svc.session_affinity_timeout.unwrap_or(10800) as u32),
                endpoints,
            });
        }
    }
    out
}

/// The seed's (examples/dc173) URL.
pub const SEED_URL: &str = "http://dc173prometheus1.cloud.k2.ericsson.se/";

/// `kubepath trace DIR --from 10.210.150.87 --to <the seed's URL> --json EXTRA...`: exit code
/// and JSON.
pub fn seed_trace(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![
        "trace".to_string(),
        dir.display().to_string(),
        "--from".into(),
        "10.210.150.87".into(),
        "--to".into(),
        SEED_URL.into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(&args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubepath");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// Two JSON maps of probabilities with the same keys and values within 1e-9.
pub fn close_maps(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
    let (a, b) = (
        a.as_object().unwrap_or_else(|| panic!("{what}: {a}")),
        b.as_object().unwrap_or_else(|| panic!("{what}: {b}")),
    );
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (k, x) in a {
        let (x, y) = (x.as_f64().unwrap(), b[k].as_f64().unwrap());
        assert!((x - y).abs() < 1e-9, "{what}[{k}]: {x} vs {y}");
    }
}
