//! Developer driver: `labdev up|observe|down SCENARIO PREFIX`.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let prefix = a.get(3).cloned().unwrap_or_else(|| "kpdev".into());
    match a.get(1).map(String::as_str) {
        Some("down") => kubepath_lab::teardown_prefix(&prefix).unwrap(),
        Some("run") => {
            let s = kubepath_lab::Scenario::by_name(&a[2]).unwrap();
            let t = std::time::Instant::now();
            let lab = kubepath_lab::Lab::up(
                s,
                &kubepath_lab::LabOptions {
                    prefix,
                    ..Default::default()
                },
            )
            .unwrap();
            eprintln!("up in {:?}", t.elapsed());
            let obs =
                kubepath_lab::observe(&lab, &kubepath_lab::ObserveOptions::default()).unwrap();
            eprintln!("observed in {:?}", t.elapsed());
            println!("verdicts {:?}\nleaves {:?}\nnodes {:?}\ningress {:?}\nbackends {:?}\nrp {:?}\nnexthops {:?}\nanomalies {:?}", obs.verdicts(), obs.leaves(), obs.nodes(), obs.ingress_pods(), obs.backends(), obs.rp_filter_drops, obs.leaf_nexthops, obs.anomalies);
            let bad = obs
                .connections
                .iter()
                .filter(|c| c.route_get_node != c.node)
                .count();
            println!("route-get mismatches: {bad}");
            for c in obs.connections.iter().take(3) {
                println!("{c:?}");
            }
            if std::env::var("KEEP").is_ok() {
                let _ = lab.detach();
            }
        }
        _ => eprintln!("usage"),
    }
}
