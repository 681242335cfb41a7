//! Trace benchmarks: loading a large snapshot and tracing through it.
//!
//! `cargo bench -p kubepath --bench trace` (figures in docs/PERFORMANCE.md).

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/support/scale.rs"]
mod scale;

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("kubepath-bench-{}", std::process::id()));
    let s = scale::Scale {
        nodes: 500,
        ingress: 50,
        backends: 100,
    };
    scale::write(&dir, &s).expect("write the snapshot");
    let mut g = c.benchmark_group("trace");
    g.sample_size(10);
    g.bench_function("load snapshot 500 nodes", |b| {
        b.iter(|| kubepath_ingest::load_snapshot(&dir).expect("loads"))
    });
    let snap = kubepath_ingest::load_snapshot(&dir).expect("loads");
    let req = kubepath_sim::trace::TraceRequest {
        client: "10.200.1.2".parse().expect("ip"),
        client_port: None,
        target: kubepath_sim::trace::Target::parse(&format!("http://{}/", scale::HOST))
            .expect("url"),
        proto: kubepath_sim::trace::L4::Tcp,
        what_if: Vec::new(),
    };
    g.bench_function("trace 500 nodes x 50 ingress pods x 100 backends", |b| {
        b.iter(|| kubepath_sim::trace::run(&snap.model, &req))
    });
    g.finish();

    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dc173");
    let snap = kubepath_ingest::load_snapshot(&seed).expect("examples/dc173 loads");
    let req = kubepath_sim::trace::TraceRequest {
        client: "10.210.150.87".parse().expect("ip"),
        client_port: None,
        target: kubepath_sim::trace::Target::parse("http://dc173prometheus1.cloud.k2.ericsson.se/")
            .expect("url"),
        proto: kubepath_sim::trace::L4::Tcp,
        what_if: Vec::new(),
    };
    let mut g = c.benchmark_group("seed");
    g.bench_function("load examples/dc173", |b| {
        b.iter(|| kubepath_ingest::load_snapshot(&seed).expect("loads"))
    });
    g.bench_function("trace examples/dc173 (no fixes)", |b| {
        b.iter(|| kubepath_sim::trace::run(&snap.model, &req))
    });
    g.bench_function("trace examples/dc173 with verified fixes", |b| {
        b.iter(|| kubepath_sim::trace::trace(&snap.model, &req))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
