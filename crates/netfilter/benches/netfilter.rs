//! Criterion benchmarks of the netfilter engine on a kube-proxy-shaped ruleset (issue #2,
//! point 6): parse + index of 10,000 Services x 5 endpoints, and one trace each for the cluster
//! IP whose rules come last in `KUBE-SERVICES`, a NodePort and a miss.
//!
//! `cargo bench -p kubepath-netfilter --bench netfilter` (set `KP_BENCH_SERVICES` /
//! `KP_BENCH_ENDPOINTS` for another size). The summary table with `iptables-restore --test` and
//! peak memory comes from `cargo run --release -p kubepath-netfilter --example perf`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use kubepath_netfilter::{trace, Env, Packet, Ruleset};
use kubepath_netfilter_gen::kube_proxy::{generate, KubeProxyParams, PortProtocol};

fn size() -> (usize, usize) {
    let get = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        get("KP_BENCH_SERVICES", 10_000),
        get("KP_BENCH_ENDPOINTS", 5),
    )
}

fn packet(udp: bool, dst: Ipv4Addr, dport: u16) -> Packet {
    let src = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let dst = IpAddr::V4(dst);
    if udp {
        Packet::udp(src, 40000, dst, dport)
    } else {
        Packet::tcp(src, 40000, dst, dport)
    }
    .with_in_iface("eth0")
}

fn benches(c: &mut Criterion) {
    let (n, e) = size();
    let params = KubeProxyParams::new(n, e, 1);
    let gen = generate(&params);
    let label = format!("{n}x{e}");

    let mut g = c.benchmark_group("parse");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function(format!("parse_index_{label}"), |b| {
        // The parsed ruleset is dropped outside the timing (it is ~110 MB of structures).
        b.iter_with_large_drop(|| Ruleset::parse("kube-proxy.iptables-save", black_box(&gen.text)))
    });
    g.finish();

    let (rs, _) = match Ruleset::parse("kube-proxy.iptables-save", &gen.text) {
        Ok(r) => r,
        Err(err) => panic!("the generated ruleset does not parse: {err}"),
    };
    let local = [IpAddr::V4(params.node_ip)];
    let env = Env::new(&local);
    let mut probes = Vec::new();
    if let Some((svc, port)) = gen.last_cluster_ip_port() {
        let udp = port.protocol == PortProtocol::Udp;
        probes.push(("last_service", packet(udp, svc.cluster_ip, port.port)));
    }
    if let Some((_, port)) = gen.last_cluster_policy_node_port() {
        let udp = port.protocol == PortProtocol::Udp;
        let np = port.node_port.unwrap_or(0);
        probes.push(("nodeport", packet(udp, params.node_ip, np)));
    }
    probes.push(("miss", packet(false, Ipv4Addr::new(10, 96, 0, 1), 80)));

    let mut g = c.benchmark_group("trace");
    for (name, pkt) in &probes {
        g.bench_function(format!("{name}_{label}"), |b| {
            b.iter(|| trace(&rs, black_box(pkt), &env))
        });
    }
    g.finish();
}

criterion_group!(netfilter, benches);
criterion_main!(netfilter);
