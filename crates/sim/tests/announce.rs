//! MetalLB's address allocation as its controller does it (controller/service.go
//! `getDesiredLbIPs` + `allocateIPs`, internal/allocator `Assign`): a requested address must be
//! in a pool, in the pool the address-pool annotation names, and not requested twice over.

use kubepath_ingest::load_files;
use kubepath_sim::announce::{announce, Reason};

const POOLS: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: a, namespace: metallb-system}
spec: {addresses: [10.0.0.0/28]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: b, namespace: metallb-system}
spec: {addresses: [10.0.1.0/28], autoAssign: false}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
spec: {}
";

fn service(name: &str, anns: &[(&str, &str)], lb_ip: Option<&str>, status: Option<&str>) -> String {
    let mut s = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n"
    );
    if !anns.is_empty() {
        s.push_str("  annotations:\n");
        for (k, v) in anns {
            s.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    s.push_str(
        "spec:\n  type: LoadBalancer\n  selector: {app: x}\n  ports: [{port: 80, protocol: TCP}]\n",
    );
    if let Some(ip) = lb_ip {
        s.push_str(&format!("  loadBalancerIP: {ip}\n"));
    }
    if let Some(ip) = status {
        s.push_str(&format!(
            "status:\n  loadBalancer:\n    ingress: [{{ip: {ip}}}]\n"
        ));
    }
    s
}

#[test]
fn requested_addresses_follow_metallbs_rules() {
    let services = [
        service("not-in-a-pool", &[], Some("10.9.9.9"), None),
        service(
            "both",
            &[("metallb.io/loadBalancerIPs", "10.0.0.5")],
            Some("10.0.0.5"),
            None,
        ),
        service(
            "wrong-pool",
            &[("metallb.io/address-pool", "b")],
            Some("10.0.0.6"),
            None,
        ),
        service(
            "right-pool",
            &[("metallb.io/address-pool", "b")],
            Some("10.0.1.7"),
            None,
        ),
        service("status-wins", &[], Some("10.0.0.8"), Some("10.0.0.9")),
        // autoAssign only affects automatic choice: a request from pool b is honoured.
        service("no-auto", &[], Some("10.0.1.3"), None),
    ]
    .concat();
    let snap = load_files(vec![
        ("cluster/metallb.yaml".into(), POOLS.as_bytes().to_vec()),
        ("cluster/services.yaml".into(), services.into_bytes()),
    ])
    .unwrap();
    let anns = announce(&snap.model, None);
    let by = |n: &str| anns.iter().find(|a| a.service.name == n).unwrap();
    for (name, why) in [
        ("not-in-a-pool", "in no address pool"),
        ("both", "both"),
        ("wrong-pool", "not in pool `b`"),
    ] {
        let a = by(name);
        assert!(a.ips.is_empty(), "{name}: {:?}", a.ips);
        match &a.blocked {
            Some(Reason::NoIp(r)) => assert!(r.contains(why), "{name}: {r}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        by("right-pool").ips,
        ["10.0.1.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(by("right-pool").pool.as_deref(), Some("b"));
    assert_eq!(
        by("no-auto").ips,
        ["10.0.1.3".parse::<std::net::IpAddr>().unwrap()]
    );
    let s = by("status-wins");
    assert_eq!(s.ips, ["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]);
    assert!(
        s.notes
            .iter()
            .any(|n| n.starts_with("finding:") && n.contains("10.0.0.8")),
        "{:?}",
        s.notes
    );
}

fn nodes_yaml() -> String {
    let node = |name: &str, extra: &str| {
        format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n{extra}status:\n  addresses: [{{type: InternalIP, address: 10.1.0.{}}}]\n",
            if name == "n1" { 11 } else if name == "n2" { 12 } else { 13 }
        )
    };
    [
        node("n1", ""),
        node(
            "n2",
            "  labels: {node.kubernetes.io/exclude-from-external-load-balancers: \"\"}\n",
        ),
        format!(
            "{}  conditions: [{{type: NetworkUnavailable, status: \"True\"}}]\n",
            node("n3", "")
        ),
    ]
    .concat()
}

fn speakers_yaml(image: &str) -> String {
    ["n1", "n2", "n3"]
        .iter()
        .map(|n| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: speaker-{n}\n  namespace: metallb-system\n  labels: {{app: metallb, component: speaker}}\nspec:\n  nodeName: {n}\n  containers: [{{name: speaker, image: \"{image}\", args: [\"--port=7472\"]}}]\nstatus: {{phase: Running}}\n"
            )
        })
        .collect()
}

/// Issue #10: which node exclusions the speakers honour depends on the MetalLB version:
/// NetworkUnavailable from v0.13.10, the exclude-from-external-load-balancers label from
/// v0.14.0; the legacy ConfigMap era (and ECFE) honours neither.
#[test]
fn node_exclusions_follow_the_metallb_version() {
    let svc = service("s", &[], Some("10.0.0.4"), None)
        + "---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: s, namespace: default}\nsubsets: [{addresses: [{ip: 192.168.1.5, nodeName: n1}], ports: [{port: 80}]}]\n";
    let cases = [
        ("quay.io/metallb/speaker:v0.14.3", vec!["n1"]),
        ("quay.io/metallb/speaker:v0.13.12", vec!["n1", "n2"]),
        ("quay.io/metallb/speaker:v0.13.7", vec!["n1", "n2", "n3"]),
    ];
    for (image, want) in cases {
        let snap = load_files(vec![
            ("cluster/metallb.yaml".into(), POOLS.as_bytes().to_vec()),
            ("cluster/nodes.yaml".into(), nodes_yaml().into_bytes()),
            (
                "cluster/speakers.yaml".into(),
                speakers_yaml(image).into_bytes(),
            ),
            ("cluster/services.yaml".into(), svc.clone().into_bytes()),
        ])
        .unwrap();
        let a = &announce(&snap.model, None)[0];
        let excluded = |n: &str| {
            matches!(
                a.not_announcing.get(n),
                Some(Reason::NetworkUnavailable(_)) | Some(Reason::ExcludedByLabel(_))
            )
        };
        let usable: Vec<&str> = ["n1", "n2", "n3"]
            .into_iter()
            .filter(|n| !excluded(n))
            .collect();
        assert_eq!(usable, want, "{image}: {:?}", a.not_announcing);
        assert!(
            a.notes.iter().any(|n| n.starts_with("MetalLB v")),
            "{:?}",
            a.notes
        );
    }
    // Legacy ConfigMap, no image tag: neither exclusion (MetalLB v0.9-v0.12).
    let legacy = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    address-pools:\n    - name: a\n      protocol: layer2\n      addresses: [10.0.0.0/28]\n";
    let snap = load_files(vec![
        ("cluster/metallb.yaml".into(), legacy.as_bytes().to_vec()),
        ("cluster/nodes.yaml".into(), nodes_yaml().into_bytes()),
        (
            "cluster/speakers.yaml".into(),
            speakers_yaml("metallb/speaker:latest").into_bytes(),
        ),
        ("cluster/services.yaml".into(), svc.into_bytes()),
    ])
    .unwrap();
    let a = &announce(&snap.model, None)[0];
    assert!(
        a.not_announcing.values().all(|r| !matches!(
            r,
            Reason::NetworkUnavailable(_) | Reason::ExcludedByLabel(_)
        )),
        "{:?}",
        a.not_announcing
    );
    assert!(
        a.notes.iter().any(|n| n.contains("legacy ConfigMap")),
        "{:?}",
        a.notes
    );
}
