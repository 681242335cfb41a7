//! Issue #4, point 2: huge fan-outs (500 nodes x 50 ingress pods x 100 backends) stay small,
//! and the probability of every node, ingress pod and backend stays exact.

mod support;

use support::scale::{self, Scale};

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn large_fan_out_is_aggregated_with_exact_probabilities() {
    let dir = TempDir(std::env::temp_dir().join(format!("kubepath-scale-{}", std::process::id())));
    let s = Scale {
        nodes: 500,
        ingress: 50,
        backends: 100,
    };
    scale::write(&dir.0, &s).expect("write the snapshot");
    let snap = kubepath_ingest::load_snapshot(&dir.0).expect("the generated snapshot loads");
    assert_eq!(snap.model.nodes.len(), 500);
    let req = kubepath_sim::trace::TraceRequest {
        client: "10.200.1.2".parse().unwrap(),
        client_port: None,
        target: kubepath_sim::trace::Target::parse(&format!("http://{}/", scale::HOST)).unwrap(),
        proto: kubepath_sim::trace::L4::Tcp,
        what_if: Vec::new(),
    };
    let r = kubepath_sim::trace::trace(&snap.model, &req);
    assert!(
        r.all_delivered(),
        "verdicts {:?}; branches {:#?}",
        r.verdicts,
        r.branches.first()
    );

    assert_eq!(r.distribution_nodes.len(), 500);
    for p in r.distribution_nodes.values() {
        assert!((p - 1.0 / 500.0).abs() < 1e-9, "{p}");
    }
    assert_eq!(r.distribution_ingress_pods.len(), 50);
    for p in r.distribution_ingress_pods.values() {
        // kube-proxy prints the ladder with 11 decimals: exact up to that rounding.
        assert!((p - 1.0 / 50.0).abs() < 1e-8, "{p}");
    }
    assert_eq!(r.distribution_backends.len(), 100);
    for p in r.distribution_backends.values() {
        assert!((p - 1.0 / 100.0).abs() < 1e-8, "{p}");
    }
    let total: f64 = r.verdicts.values().sum();
    assert!((total - 1.0).abs() < 1e-9);

    // Aggregated: one branch, one node group per distinct netfilter result, small JSON.
    assert_eq!(
        r.branches.len(),
        1,
        "{:#?}",
        r.branches.iter().map(|b| &b.reason).collect::<Vec<_>>()
    );
    assert_eq!(r.branches[0].members, 500 * 50);
    assert_eq!(r.branches[0].backends.len(), 100);
    assert!(
        r.node_stages.len() <= 2,
        "{} node groups",
        r.node_stages.len()
    );
    let json = kubepath_report::trace::to_json(&req, "web", &r);
    let size = serde_json::to_string(&json).unwrap().len();
    assert!(size < 2_000_000, "JSON is {size} bytes");
}
