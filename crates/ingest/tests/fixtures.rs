//! Every fixture under fixtures/{k8s,metallb,ecfe}/{ok,err}/, read as a file of `cluster/`.
//!
//! `ok/` fixtures: the lowered model is dumped as text and compared with an insta snapshot.
//! `err/` fixtures: a sidecar `<file>.expect` holds either `LINE:COL` / `LINE:` (the parse
//! error's position) or `diag:error:LINE` (the file loads, with an error diagnostic at LINE).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kubepath_ingest::{load_files_with, IngestError, LoadOptions, Severity, Snapshot};

fn fixtures(format: &str, kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(format)
        .join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e != "expect"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures in {}", dir.display());
    v
}

fn load(path: &Path) -> Result<Snapshot, IngestError> {
    let name = path.file_name().expect("file name").to_string_lossy();
    let bytes = std::fs::read(path).expect("read fixture");
    // Strict: the fixture's error must be the reader's, at its line and column.
    load_files_with(
        vec![(format!("cluster/{name}"), bytes)],
        LoadOptions {
            strict: true,
            ..Default::default()
        },
    )
}

fn kv(m: &std::collections::BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn dump(s: &Snapshot) -> String {
    let c = &s.model.cluster;
    let mut o = String::new();
    for f in &s.files {
        let _ = writeln!(
            o,
            "file {} [{}] {:?}",
            f.path,
            f.format.as_deref().unwrap_or("-"),
            f.objects
        );
    }
    for n in c.namespaces.values() {
        let _ = writeln!(
            o,
            "namespace {} phase={:?} labels[{}] @{}",
            n.name,
            n.phase,
            kv(&n.labels),
            n.source
        );
    }
    for n in c.nodes.values() {
        let _ = writeln!(
            o,
            "node {} internal={:?} hostname={:?} podCIDRs={:?} ready={:?} netUnavailable={} excluded={} labels[{}] @{}",
            n.name,
            n.internal_ips,
            n.hostname,
            n.pod_cidrs.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            n.ready(),
            n.network_unavailable(),
            n.excluded_from_lb(),
            kv(&n.labels),
            n.source
        );
    }
    for s in c.services.values() {
        let _ = writeln!(
            o,
            "service {} type={} clusterIPs={:?} headless={} lbIngress={:?} lbIP={:?} class={:?} etp={} @{} itp={} affinity={:?}/{:?} sourceRanges={:?} selector={:?} @{}",
            s.key,
            s.type_,
            s.cluster_ips,
            s.headless,
            s.lb_ingress_ips(),
            s.load_balancer_ip,
            s.load_balancer_class,
            s.external_traffic_policy,
            s.external_traffic_policy_source,
            s.internal_traffic_policy,
            s.session_affinity,
            s.session_affinity_timeout,
            s.load_balancer_source_ranges.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            s.selector.as_ref().map(kv),
            s.source
        );
        for p in &s.ports {
            let _ = writeln!(
                o,
                "  port {:?} {}/{} -> {} nodePort={:?} @{}",
                p.name,
                p.port,
                p.protocol,
                p.effective_target_port(),
                p.node_port,
                p.source
            );
        }
    }
    for p in &c.pods {
        let _ = writeln!(
            o,
            "pod {} node={:?} hostIP={:?} podIPs={:?} phase={:?} ready={:?} terminating={} hostNetwork={} owner={:?} labels[{}] @{}",
            p.key, p.node_name, p.host_ip, p.pod_ips, p.phase, p.ready, p.terminating, p.host_network, p.owner, kv(&p.labels), p.source
        );
        for ct in &p.containers {
            let ports: Vec<String> = ct
                .ports
                .iter()
                .map(|x| {
                    format!(
                        "{}={}/{}",
                        x.name.as_deref().unwrap_or("-"),
                        x.container_port,
                        x.protocol
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "  container {} ports={:?} args={:?}",
                ct.name, ports, ct.args
            );
        }
    }
    for e in &c.endpoints {
        let _ = writeln!(
            o,
            "endpoints {} of {:?} {:?} type={:?} ports={:?} @{}",
            e.key,
            e.service.as_ref().map(|k| k.to_string()),
            e.origin,
            e.address_type,
            e.ports
                .iter()
                .map(|p| format!(
                    "{}={:?}/{}",
                    p.name.as_deref().unwrap_or("-"),
                    p.port,
                    p.protocol
                ))
                .collect::<Vec<_>>(),
            e.source
        );
        for ep in &e.endpoints {
            let _ = writeln!(
                o,
                "  {:?} ready={:?} serving={:?} terminating={:?} canServe={} node={:?} zone={:?} target={:?} @{}",
                ep.addresses,
                ep.ready,
                ep.serving,
                ep.terminating,
                ep.can_serve(),
                ep.node_name,
                ep.zone,
                ep.target_ref.as_ref().and_then(|t| t.name.clone()),
                ep.source
            );
        }
    }
    for i in &c.ingresses {
        let _ = writeln!(
            o,
            "ingress {} {} class={:?} via {:?} status={:?} tls={:?} default={:?} @{}",
            i.key,
            i.api_version,
            i.class,
            i.class_source,
            i.status_ips,
            i.tls,
            i.default_backend,
            i.source
        );
        for r in &i.rules {
            let _ = writeln!(o, "  rule host={:?} @{}", r.host, r.source);
            for p in &r.paths {
                let _ = writeln!(
                    o,
                    "    path {:?} {:?} -> {:?} @{}",
                    p.path, p.path_type, p.backend, p.source
                );
            }
        }
    }
    for ic in c.ingress_classes.values() {
        let _ = writeln!(
            o,
            "ingressclass {} controller={:?} default={} @{}",
            ic.name, ic.controller, ic.is_default, ic.source
        );
    }
    for cm in &c.config_maps {
        let _ = writeln!(
            o,
            "configmap {} keys={:?} lines={:?} @{}",
            cm.key,
            cm.data.keys().collect::<Vec<_>>(),
            cm.data_lines,
            cm.source
        );
    }
    for x in &c.other {
        let _ = writeln!(
            o,
            "other {} {} {:?}/{} @{}",
            x.api_version, x.kind, x.namespace, x.name, x.source
        );
    }
    let lb = &c.lb;
    for (f, s) in &lb.configs {
        let _ = writeln!(o, "lb config {f} @{s}");
    }
    for p in &lb.pools {
        let _ = writeln!(
            o,
            "pool {} ranges={:?} auto={} buggy={} protocol={:?} labels[{}] @{}",
            p.name,
            p.ranges
                .iter()
                .map(|r| format!("{}..{}", r.first, r.last))
                .collect::<Vec<_>>(),
            p.auto_assign,
            p.avoid_buggy_ips,
            p.protocol,
            kv(&p.labels),
            p.source
        );
    }
    for p in &lb.peers {
        let _ = writeln!(
            o,
            "peer {} asn={} my={} port={:?} hold={:?} keepalive={:?} routerID={:?} src={:?} multihop={:?} bfd={:?} selectors={:?} pools={:?} {:?} @{}",
            p, p.peer_asn, p.my_asn, p.peer_port, p.hold_time, p.keepalive_time, p.router_id, p.source_address, p.ebgp_multihop, p.bfd,
            p.node_selectors.iter().map(|s| s.to_string()).collect::<Vec<_>>(), p.my_address_pools, p.flavor, p.source
        );
    }
    for a in &lb.bgp_advertisements {
        let _ = writeln!(
            o,
            "bgp-ad {:?} pools={:?} poolSelectors={:?} nodes={:?} peers={:?} communities={:?} localPref={:?} agg={:?}/{:?} @{}",
            a.name,
            a.pools,
            a.pool_selectors.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            a.node_selectors.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            a.peers,
            a.communities,
            a.local_pref,
            a.aggregation_length,
            a.aggregation_length_v6,
            a.source
        );
    }
    for a in &lb.l2_advertisements {
        let _ = writeln!(
            o,
            "l2-ad {:?} pools={:?} interfaces={:?} @{}",
            a.name, a.pools, a.interfaces, a.source
        );
    }
    for b in &lb.bfd_profiles {
        let _ = writeln!(
            o,
            "bfd-profile {} rx={:?} tx={:?} mult={:?} @{}",
            b.name, b.receive_interval, b.transmit_interval, b.detect_multiplier, b.source
        );
    }
    for (k, v) in &lb.communities {
        let _ = writeln!(o, "community {k}={v}");
    }
    for d in &s.diagnostics {
        let _ = writeln!(
            o,
            "diag {:?} {}:{}:{} {}",
            d.severity, d.file, d.line, d.column, d.message
        );
    }
    o
}

fn check_ok(format: &str) {
    for path in fixtures(format, "ok") {
        let snap = load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .replace('.', "_");
        assert!(
            snap.files.iter().all(|f| f.format.is_some()),
            "{} was not recognised",
            path.display()
        );
        assert!(
            !snap
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error),
            "{}: unexpected error diagnostic: {:?}",
            path.display(),
            snap.diagnostics
        );
        insta::assert_snapshot!(format!("{format}__{name}"), dump(&snap));
    }
}

fn check_err(format: &str) {
    for path in fixtures(format, "err") {
        let expect_path = PathBuf::from(format!("{}.expect", path.display()));
        let expect = std::fs::read_to_string(&expect_path)
            .unwrap_or_else(|_| panic!("{} has no .expect file", path.display()));
        let expect = expect.trim();
        let res = load(&path);
        if let Some(line) = expect.strip_prefix("diag:error:") {
            let line: u32 = line.parse().expect("diag line");
            let snap =
                res.unwrap_or_else(|e| panic!("{}: expected to load, got {e}", path.display()));
            assert!(
                snap.diagnostics
                    .iter()
                    .any(|d| d.severity == Severity::Error && d.line == line),
                "{}: expected an error diagnostic at line {line}, got {:#?}",
                path.display(),
                snap.diagnostics
            );
        } else {
            let (line, col) = expect.split_once(':').expect("LINE:COL");
            match res {
                Err(IngestError::Parse(e)) => {
                    assert_eq!(e.line.to_string(), line, "{}: {e}", path.display());
                    if !col.is_empty() {
                        assert_eq!(e.column.to_string(), col, "{}: {e}", path.display());
                    }
                    assert!(e.column > 0, "{}: column missing", path.display());
                    assert!(e
                        .file
                        .ends_with(&*path.file_name().expect("n").to_string_lossy()));
                }
                other => panic!("{}: expected a parse error, got {other:?}", path.display()),
            }
        }
    }
}

#[test]
fn k8s_ok() {
    check_ok("k8s");
}

#[test]
fn k8s_err() {
    check_err("k8s");
}

#[test]
fn metallb_ok() {
    check_ok("metallb");
}

#[test]
fn metallb_err() {
    check_err("metallb");
}

#[test]
fn ecfe_ok() {
    check_ok("ecfe");
}

#[test]
fn ecfe_err() {
    check_err("ecfe");
}
