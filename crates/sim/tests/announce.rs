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
