//! `kubepath check`'s load-balancer and fabric checks (crates/sim/src/check/fabric.rs): each
//! code has a snapshot that triggers it and one that does not, built from the trace fixtures
//! (fixtures/trace/*, fixtures/snapshots/ecfe, read-only) edited in memory.

mod support;
use support::*;

use kubepath_sim::check::{check, CheckReport, Finding, Severity};

const FABRIC: [&str; 6] = [
    "lb-pool-overlap",
    "lb-pool-not-advertised",
    "bgp-path-missing",
    "bgp-path-extra",
    "bgp-peer-unreachable",
    "lb-status-mismatch",
];

fn append(files: &mut [(String, Vec<u8>)], path: &str, text: &str) {
    let f = files.iter_mut().find(|(p, _)| p == path).unwrap();
    f.1.extend_from_slice(text.as_bytes());
}

fn codes(r: &CheckReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

fn all<'a>(r: &'a CheckReport, code: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.code == code).collect()
}

fn one<'a>(r: &'a CheckReport, code: &str) -> &'a Finding {
    let v = all(r, code);
    assert_eq!(v.len(), 1, "{code}: {:#?}", r.findings);
    v[0]
}

fn none(r: &CheckReport, code: &str) {
    assert!(all(r, code).is_empty(), "{code}: {:#?}", all(r, code));
}

fn run(files: Files) -> CheckReport {
    check(&model(files))
}

const METALLB: &str = "cluster/metallb.yaml";
const R1_BGP: &str = "routers/R1/show-ip-bgp.txt";

fn pool(name: &str, addrs: &[&str]) -> String {
    let mut s = format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: {name}\n  namespace: metallb-system\nspec:\n  addresses:\n"
    );
    for a in addrs {
        s.push_str(&format!("  - {a}\n"));
    }
    s
}

/// The healthy fixtures give none of these findings.
#[test]
fn healthy_fixtures_have_no_fabric_finding() {
    for case in [
        "delivered",
        "two-routers-frr",
        "l2-mode",
        "etp-local",
        "asymmetric-return",
        "policy-routing",
    ] {
        let r = run(files(case));
        for code in FABRIC {
            assert!(!codes(&r).contains(&code), "{case}: {:#?}", r.findings);
        }
    }
}

#[test]
fn pool_overlap() {
    let mut f = files("delivered");
    append(&mut f, METALLB, &pool("extra", &["10.99.0.8-10.99.0.20"]));
    let r = run(f);
    let x = one(&r, "lb-pool-overlap");
    assert_eq!(x.severity, Severity::Error);
    assert!(
        x.title.contains("`ingress`") && x.title.contains("`extra`"),
        "{}",
        x.title
    );
    assert!(x.title.contains("10.99.0.8-10.99.0.15"), "{}", x.title);
    assert!(x.explanation.contains("refuses"), "{}", x.explanation);
    assert_eq!(x.evidence.len(), 2);
    assert!(x
        .evidence
        .iter()
        .all(|e| e.starts_with("cluster/metallb.yaml:")));
    // `extra` is advertised by nothing; the Service's 10.99.0.10 counts for `ingress`, the
    // first pool that holds it, so `extra` is unused: a warning.
    assert_eq!(
        one(&r, "lb-pool-not-advertised").severity,
        Severity::Warning
    );

    // Adjacent but disjoint: no overlap.
    let mut f = files("delivered");
    append(
        &mut f,
        METALLB,
        &pool("extra", &["10.99.0.16/28", "10.99.1.0/24"]),
    );
    none(&run(f), "lb-pool-overlap");
}

#[test]
fn pool_overlap_in_a_legacy_config_map() {
    let mut f = files("delivered");
    let crd = f.iter().position(|(p, _)| p == METALLB).unwrap();
    f.remove(crd);
    let cm = |second: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\n  namespace: metallb-system\ndata:\n  config: |\n    peers:\n    - peer-address: 10.1.0.254\n      peer-asn: 65000\n      my-asn: 64512\n    address-pools:\n    - name: ingress\n      protocol: bgp\n      addresses:\n      - 10.99.0.0/28\n    - name: second\n      protocol: bgp\n      addresses:\n      - {second}\n"
        )
        .into_bytes()
    };
    let mut bad = f.clone();
    bad.push(("cluster/metallb-config.yaml".into(), cm("10.99.0.10/32")));
    let r = run(bad);
    let x = one(&r, "lb-pool-overlap");
    assert!(x.title.contains("10.99.0.10 "), "{}", x.title);
    assert!(
        x.explanation.contains("MetalLB ConfigMap"),
        "{}",
        x.explanation
    );
    let mut good = f;
    good.push(("cluster/metallb-config.yaml".into(), cm("10.99.0.16/32")));
    let r = run(good);
    none(&r, "lb-pool-overlap");
    none(&r, "lb-pool-not-advertised");
}

#[test]
fn pool_not_advertised() {
    // The only advertisement names another pool: the Service's pool is not advertised.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "ipAddressPools:\n  - ingress",
        "ipAddressPools:\n  - other",
    );
    append(&mut f, METALLB, &pool("spare", &["10.98.0.0/28"]));
    let r = run(f);
    let v = all(&r, "lb-pool-not-advertised");
    assert_eq!(v.len(), 2, "{v:#?}");
    let used = v.iter().find(|x| x.title.contains("`ingress`")).unwrap();
    assert_eq!(used.severity, Severity::Error);
    assert!(
        used.explanation
            .contains("ingress-nginx/ingress-nginx-controller holds 10.99.0.10"),
        "{}",
        used.explanation
    );
    assert!(used
        .evidence
        .iter()
        .any(|e| e.starts_with("cluster/services.yaml:")));
    let spare = v.iter().find(|x| x.title.contains("`spare`")).unwrap();
    assert_eq!(spare.severity, Severity::Warning);

    // An advertisement without ipAddressPools or selectors carries every pool (MetalLB
    // setBGPAdvertisementsToPools).
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "spec:\n  ipAddressPools:\n  - ingress",
        "spec: {}",
    );
    append(&mut f, METALLB, &pool("spare", &["10.98.0.0/28"]));
    none(&run(f), "lb-pool-not-advertised");

    // A pool selected by label is carried; an L2Advertisement carries it too.
    let mut f = files("delivered");
    append(
        &mut f,
        METALLB,
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: spare\n  namespace: metallb-system\n  labels: {tier: spare}\nspec:\n  addresses: [10.98.0.0/28]\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: by-label\n  namespace: metallb-system\nspec:\n  ipAddressPoolSelectors:\n  - matchLabels: {tier: spare}\n",
    );
    append(&mut f, METALLB, &pool("l2", &["10.97.0.0/28"]));
    append(
        &mut f,
        METALLB,
        "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: l2\n  namespace: metallb-system\nspec:\n  ipAddressPools: [l2]\n",
    );
    none(&run(f), "lb-pool-not-advertised");

    // Advertised in BGP only, to a peer that does not exist.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "ipAddressPools:\n  - ingress",
        "ipAddressPools:\n  - ingress\n  peers:\n  - r9",
    );
    let r = run(f);
    let x = one(&r, "lb-pool-not-advertised");
    assert_eq!(x.severity, Severity::Error);
    assert!(x.explanation.contains("[r9]"), "{}", x.explanation);
}

#[test]
fn bgp_path_missing_slx_text() {
    let mut f = files("delivered");
    edit(
        &mut f,
        R1_BGP,
        "*    10.99.0.10/32      10.1.0.13                       none       100        0      64512 i\n",
        "",
    );
    edit(&mut f, R1_BGP, "Routes: 6", "Routes: 5");
    let r = run(f);
    let x = one(&r, "bgp-path-missing");
    assert_eq!(x.severity, Severity::Error);
    assert!(x.title.contains("R1 vrf default"), "{}", x.title);
    assert!(x.title.contains("1 node "), "{}", x.title);
    assert!(
        x.explanation
            .contains("10.99.0.10/32 via 10.1.0.13 (node-c)"),
        "{}",
        x.explanation
    );
    assert!(
        x.evidence.iter().any(|e| e.starts_with(R1_BGP)),
        "{:?}",
        x.evidence
    );
    assert!(x.affected.contains(&"node node-c".to_string()));
    none(&r, "bgp-path-extra");
    none(&run(files("delivered")), "bgp-path-missing");
}

/// FRR `show ip bgp vrf all json` on R2, once the speakers peer with it.
#[test]
fn bgp_path_missing_frr_json() {
    let peer_r2 = "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: r2\n  namespace: metallb-system\nspec:\n  myASN: 64512\n  peerASN: 65000\n  peerAddress: 10.1.0.253\n";
    let mut f = files("two-routers-frr");
    append(&mut f, METALLB, peer_r2);
    let r = run(f.clone());
    none(&r, "bgp-path-missing");
    none(&r, "bgp-path-extra");

    // Drop node-c's path (the third of 10.99.0.10/32) from R2's table.
    let path = "routers/R2/show-ip-bgp-vrf-all.json";
    let file = f.iter_mut().find(|(p, _)| p == path).unwrap();
    let text = String::from_utf8(file.1.clone()).unwrap();
    let start = text
        .rfind(",\n        {\n          \"valid\": true,\n          \"multipath\": true")
        .unwrap();
    let end = text[start..].find("\n        }").unwrap() + start + "\n        }".len();
    assert!(text[start..end].contains("10.1.0.13"));
    file.1 = format!("{}{}", &text[..start], &text[end..]).into_bytes();
    let r = run(f);
    let x = one(&r, "bgp-path-missing");
    assert!(x.title.contains("R2 vrf default"), "{}", x.title);
    assert!(
        x.explanation.contains("via 10.1.0.13 (node-c)"),
        "{}",
        x.explanation
    );
    assert!(
        x.evidence.iter().any(|e| e.starts_with(path)),
        "{:?}",
        x.evidence
    );
}

/// ECFE: node e2's path to the om-pool address is missing on LEAF-A; the path via 10.10.0.9
/// belongs to no node and is not `bgp-path-extra`.
#[test]
fn bgp_path_missing_ecfe() {
    let r = run(files_of(&root().join("fixtures/snapshots/ecfe")));
    let x = one(&r, "bgp-path-missing");
    assert!(x.title.contains("LEAF-A vrf OM"), "{}", x.title);
    assert!(
        x.explanation.contains("via 10.10.0.4 (e2)"),
        "{}",
        x.explanation
    );
    none(&r, "bgp-path-extra");
    none(&r, "lb-pool-overlap");
    none(&r, "lb-pool-not-advertised");
}

#[test]
fn bgp_path_extra() {
    // The advertisement leaves node-c out, but R1 still has its path.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "ipAddressPools:\n  - ingress",
        "ipAddressPools:\n  - ingress\n  nodeSelectors:\n  - matchExpressions:\n    - {key: kubernetes.io/hostname, operator: NotIn, values: [node-c]}",
    );
    let r = run(f);
    let x = one(&r, "bgp-path-extra");
    assert_eq!(x.severity, Severity::Warning);
    assert!(
        x.title.contains("R1 vrf default") && x.title.contains("1 node "),
        "{}",
        x.title
    );
    assert!(
        x.explanation
            .contains("10.99.0.10/32 via 10.1.0.13 (node-c)"),
        "{}",
        x.explanation
    );
    assert!(
        x.explanation
            .contains("no advertisement of the pool selects this node"),
        "{}",
        x.explanation
    );
    assert!(
        x.evidence.iter().any(|e| e.starts_with(R1_BGP)),
        "{:?}",
        x.evidence
    );
    assert!(
        x.evidence
            .iter()
            .any(|e| e.starts_with("cluster/metallb.yaml:")),
        "{:?}",
        x.evidence
    );
    none(&r, "bgp-path-missing");

    // A stale path of a node without a local endpoint (externalTrafficPolicy Local) is
    // lb-announced-without-local-endpoint, not this.
    let r = run(files("etp-local-stale-route"));
    assert!(
        codes(&r).contains(&"lb-announced-without-local-endpoint"),
        "{:?}",
        codes(&r)
    );
    none(&r, "bgp-path-extra");
    none(&r, "bgp-path-missing");
}

fn drop_default_route(f: &mut Files, node: &str) {
    edit(
        f,
        &format!("nodes/{node}/ip-route.txt"),
        "default via 10.1.0.254 dev eth0 proto static metric 100 \n",
        "",
    );
}

#[test]
fn bgp_peer_unreachable() {
    // A peer off the nodes' subnet, and no default route on any node.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "peerAddress: 10.1.0.254",
        "peerAddress: 10.5.0.254",
    );
    for n in ["node-a", "node-b", "node-c"] {
        drop_default_route(&mut f, n);
    }
    let r = run(f);
    let x = one(&r, "bgp-peer-unreachable");
    assert_eq!(x.severity, Severity::Error);
    assert!(
        x.title.contains("r1 (10.5.0.254)") && x.title.contains("3 speaker nodes"),
        "{}",
        x.title
    );
    assert!(
        x.explanation.contains("node-a: no route"),
        "{}",
        x.explanation
    );
    assert!(x
        .evidence
        .iter()
        .any(|e| e.starts_with("cluster/metallb.yaml:")));
    assert!(
        x.evidence
            .iter()
            .any(|e| e.starts_with("nodes/node-a/ip-route.txt")),
        "{:?}",
        x.evidence
    );

    // node-c's directory is not in the snapshot: left out, and said so.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "peerAddress: 10.1.0.254",
        "peerAddress: 10.5.0.254",
    );
    for n in ["node-a", "node-b"] {
        drop_default_route(&mut f, n);
    }
    f.retain(|(p, _)| !p.starts_with("nodes/node-c/"));
    let r = run(f);
    let x = one(&r, "bgp-peer-unreachable");
    assert!(
        x.title
            .contains("2 speaker nodes it applies to (1 more not in the snapshot)"),
        "{}",
        x.title
    );
    assert!(
        x.explanation
            .contains("1 other selected node has no nodes/<name>/ directory"),
        "{}",
        x.explanation
    );
    // node-c's routes were not collected (its addresses were): undecided.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "peerAddress: 10.1.0.254",
        "peerAddress: 10.5.0.254",
    );
    for n in ["node-a", "node-b"] {
        drop_default_route(&mut f, n);
    }
    f.retain(|(p, _)| p != "nodes/node-c/ip-route.txt");
    none(&run(f), "bgp-peer-unreachable");

    // The same peer with the default route still there: routed, no finding.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "peerAddress: 10.1.0.254",
        "peerAddress: 10.5.0.254",
    );
    none(&run(f), "bgp-peer-unreachable");
    // One node can still reach it: the two others are named (bgp_peer_unreachable_from_some_nodes).
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "peerAddress: 10.1.0.254",
        "peerAddress: 10.5.0.254",
    );
    drop_default_route(&mut f, "node-a");
    drop_default_route(&mut f, "node-b");
    let r = run(f);
    let x = one(&r, "bgp-peer-unreachable");
    assert!(x.title.contains("2 of the 3"), "{}", x.title);
}

#[test]
fn bgp_peer_unreachable_respects_node_selectors() {
    let only_a = "peerAddress: 10.5.0.254\n  nodeSelectors:\n  - matchLabels:\n      kubernetes.io/hostname: node-a";
    // The peer is used from node-a only, which has no route to it.
    let mut f = files("delivered");
    edit(&mut f, METALLB, "peerAddress: 10.1.0.254", only_a);
    drop_default_route(&mut f, "node-a");
    let r = run(f);
    let x = one(&r, "bgp-peer-unreachable");
    assert!(x.title.contains("1 speaker node "), "{}", x.title);
    assert_eq!(x.affected, vec!["BGP peer r1 (10.5.0.254)", "node node-a"]);
    // node-b and node-c cannot reach it either, but they do not use it.
    let mut f = files("delivered");
    edit(&mut f, METALLB, "peerAddress: 10.1.0.254", only_a);
    drop_default_route(&mut f, "node-b");
    drop_default_route(&mut f, "node-c");
    none(&run(f), "bgp-peer-unreachable");
}

const LB_LINE: &str = "    type: LoadBalancer\n    clusterIP: 10.96.120.33\n";

#[test]
fn status_mismatch() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/services.yaml",
        LB_LINE,
        "    type: LoadBalancer\n    loadBalancerIP: 10.99.0.5\n    clusterIP: 10.96.120.33\n",
    );
    let r = run(f);
    let x = one(&r, "lb-status-mismatch");
    assert_eq!(x.severity, Severity::Warning);
    assert!(
        x.title.contains("ingress-nginx/ingress-nginx-controller"),
        "{}",
        x.title
    );
    assert!(
        x.explanation.contains("spec.loadBalancerIP requests 10.99.0.5, but status.loadBalancer.ingress holds 10.99.0.10"),
        "{}",
        x.explanation
    );
    assert!(x.evidence[0].starts_with("cluster/services.yaml:"));

    // The annotation naming another pool than the one the status address is in.
    let mut f = files("delivered");
    append(&mut f, METALLB, &pool("other", &["10.98.0.0/28"]));
    edit(
        &mut f,
        "cluster/services.yaml",
        "      app.kubernetes.io/name: ingress-nginx\n  spec:",
        "      app.kubernetes.io/name: ingress-nginx\n    annotations:\n      metallb.universe.tf/address-pool: other\n  spec:",
    );
    let r = run(f);
    let x = one(&r, "lb-status-mismatch");
    assert!(
        x.explanation.contains("names pool `other`"),
        "{}",
        x.explanation
    );

    // Requested and held agree.
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/services.yaml",
        LB_LINE,
        "    type: LoadBalancer\n    loadBalancerIP: 10.99.0.10\n    clusterIP: 10.96.120.33\n",
    );
    none(&run(f), "lb-status-mismatch");

    // Dual stack: spec.loadBalancerIP names the IPv4 address only; the IPv6 one is not a
    // mismatch.
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/services.yaml",
        LB_LINE,
        "    type: LoadBalancer\n    loadBalancerIP: 10.99.0.10\n    clusterIP: 10.96.120.33\n",
    );
    edit(
        &mut f,
        "cluster/services.yaml",
        "      - ip: 10.99.0.10\n",
        "      - ip: 10.99.0.10\n      - ip: fd00:99::10\n",
    );
    none(&run(f), "lb-status-mismatch");
}

/// Paths are compared only for addresses in use (status.loadBalancer.ingress): a predicted
/// assignment is announced by nobody yet.
#[test]
fn bgp_paths_only_for_addresses_in_use() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/services.yaml",
        "    loadBalancer:\n      ingress:\n      - ip: 10.99.0.10\n",
        "    loadBalancer: {}\n",
    );
    let r = run(f);
    none(&r, "bgp-path-missing");
    none(&r, "bgp-path-extra");
}

/// Two Services sharing 10.99.0.10 (allow-shared-ip): the second has no endpoint, so it alone
/// would be announced by nobody, but the first one's announcement explains R1's paths.
#[test]
fn bgp_paths_of_a_shared_address() {
    let shared = "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: shared\n    namespace: ingress-nginx\n    annotations:\n      metallb.universe.tf/allow-shared-ip: ingress\n  spec:\n    type: LoadBalancer\n    clusterIP: 10.96.120.34\n    clusterIPs:\n    - 10.96.120.34\n    externalTrafficPolicy: Cluster\n    ports:\n    - name: dns\n      port: 53\n      protocol: UDP\n      targetPort: 53\n    selector:\n      app: nothing-here\n  status:\n    loadBalancer:\n      ingress:\n      - ip: 10.99.0.10\nmetadata:\n  resourceVersion: \"\"\n";
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/services.yaml",
        "metadata:\n  resourceVersion: \"\"\n",
        shared,
    );
    // Both carry the key (MetalLB sharingOK), on different ports.
    edit(
        &mut f,
        "cluster/services.yaml",
        "      app.kubernetes.io/name: ingress-nginx\n  spec:",
        "      app.kubernetes.io/name: ingress-nginx\n    annotations:\n      metallb.universe.tf/allow-shared-ip: ingress\n  spec:",
    );
    let r = run(f);
    none(&r, "lb-ip-sharing-conflict");
    assert!(
        codes(&r).contains(&"lb-ip-not-announced"),
        "{:?}",
        codes(&r)
    );
    none(&r, "bgp-path-extra");
    none(&r, "bgp-path-missing");
}

/// A dual-stack Service: its IPv6 address is not compared with R1's IPv4 `show ip bgp` (the
/// router's IPv6 table is not in the snapshot), so no path is "missing" for it.
#[test]
fn dual_stack_address_is_not_compared_with_the_ipv4_table() {
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "  - 10.99.0.0/28\n",
        "  - 10.99.0.0/28\n  - fd00:99::/120\n",
    );
    edit(
        &mut f,
        "cluster/services.yaml",
        "      - ip: 10.99.0.10\n",
        "      - ip: 10.99.0.10\n      - ip: fd00:99::10\n",
    );
    let r = run(f);
    none(&r, "bgp-path-missing");
    none(&r, "bgp-path-extra");
    // The IPv4 comparison still runs.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "  - 10.99.0.0/28\n",
        "  - 10.99.0.0/28\n  - fd00:99::/120\n",
    );
    edit(
        &mut f,
        "cluster/services.yaml",
        "      - ip: 10.99.0.10\n",
        "      - ip: 10.99.0.10\n      - ip: fd00:99::10\n",
    );
    edit(
        &mut f,
        R1_BGP,
        "*    10.99.0.10/32      10.1.0.13                       none       100        0      64512 i\n",
        "",
    );
    edit(&mut f, R1_BGP, "Routes: 6", "Routes: 5");
    let r = run(f);
    let x = one(&r, "bgp-path-missing");
    assert!(
        x.explanation.contains("10.99.0.10/32 via 10.1.0.13"),
        "{}",
        x.explanation
    );
    assert!(!x.explanation.contains("fd00"), "{}", x.explanation);
}

/// aggregationLength 24 on a /28 pool: MetalLB refuses the configuration
/// (validateBGPAdvPerPool); no path is expected from it.
#[test]
fn invalid_aggregation_length_is_lb_config_invalid() {
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "ipAddressPools:\n  - ingress",
        "ipAddressPools:\n  - ingress\n  aggregationLength: 24",
    );
    let m = model(f);
    // announce derives no /24 route from the refused advertisement, and says why.
    for a in kubepath_sim::announce::announce(&m, None) {
        assert!(
            a.routes
                .values()
                .flatten()
                .all(|r| r.prefix.prefix_len() == 32),
            "{a:#?}"
        );
        assert!(
            a.notes.iter().any(|n| n.contains("MetalLB refuses")),
            "{a:#?}"
        );
    }
    let r = check(&m);
    let x = one(&r, "lb-config-invalid");
    assert_eq!(x.severity, Severity::Error);
    assert!(
        x.title.contains("invalid aggregation length 24: prefix 28"),
        "{}",
        x.title
    );
    assert!(x.evidence.iter().all(|e| e.starts_with(METALLB)));
    none(&r, "bgp-path-missing");
    none(&r, "bgp-path-extra");
    // 28 is as long as the pool's prefix: valid.
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "ipAddressPools:\n  - ingress",
        "ipAddressPools:\n  - ingress\n  aggregationLength: 28",
    );
    none(&run(f), "lb-config-invalid");
}

/// Overlaps inside one pool (two entries sharing addresses, or one written twice).
#[test]
fn pool_overlap_inside_one_pool() {
    for extra in ["10.99.0.4-10.99.0.8", "10.99.0.0/28"] {
        let mut f = files("delivered");
        edit(
            &mut f,
            METALLB,
            "  - 10.99.0.0/28\n",
            &format!("  - 10.99.0.0/28\n  - {extra}\n"),
        );
        let r = run(f);
        let x = one(&r, "lb-pool-overlap");
        assert!(x.title.contains("`ingress` overlaps itself"), "{}", x.title);
        assert!(x.title.contains(extra), "{}", x.title);
        assert!(x.explanation.contains("poolsFor"), "{}", x.explanation);
    }
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "  - 10.99.0.0/28\n",
        "  - 10.99.0.0/28\n  - 10.99.0.16/28\n",
    );
    none(&run(f), "lb-pool-overlap");
}

/// An address-pool annotation naming a pool that does not exist: MetalLB clears the status and
/// cannot allocate, so nothing is announced (announce and check agree).
#[test]
fn pool_annotation_naming_no_pool() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/services.yaml",
        "      app.kubernetes.io/name: ingress-nginx\n  spec:",
        "      app.kubernetes.io/name: ingress-nginx\n    annotations:\n      metallb.universe.tf/address-pool: other\n  spec:",
    );
    let m = model(f);
    let anns = kubepath_sim::announce::announce(&m, None);
    let a = anns
        .iter()
        .find(|a| a.service.to_string() == "ingress-nginx/ingress-nginx-controller")
        .unwrap();
    assert!(a.announcing_nodes.is_empty(), "{a:#?}");
    assert!(a.pool.is_none(), "{a:#?}");
    let r = check(&m);
    let x = one(&r, "lb-ip-not-announced");
    assert!(x.title.contains("10.99.0.10"), "{}", x.title);
    assert!(
        x.explanation
            .contains("names pool `other`, which does not exist"),
        "{}",
        x.explanation
    );
}

/// A router table that may be incomplete (a skipped line, a printed total above the paths
/// read): a path it does not show is undecided, not bgp-path-missing.
#[test]
fn unreliable_router_table_makes_a_missing_path_undecided() {
    // Truncated: the total says 6, 5 paths listed.
    let mut f = files("delivered");
    edit(
        &mut f,
        R1_BGP,
        "*    10.99.0.10/32      10.1.0.13                       none       100        0      64512 i\n",
        "",
    );
    let r = run(f);
    none(&r, "bgp-path-missing");
    let x = one(&r, "bgp-path-undecided");
    assert_eq!(x.severity, Severity::Info);
    assert!(x.explanation.contains("via 10.1.0.13"), "{}", x.explanation);
    assert!(
        x.explanation.contains("Total number of BGP Routes: 6"),
        "{}",
        x.explanation
    );
    // A garbled path line, skipped by the reader.
    let mut f = files("delivered");
    edit(
        &mut f,
        R1_BGP,
        "*    10.99.0.10/32      10.1.0.13                       none       100        0      64512 i\n",
        "*    10.99.0.10/32      10.1.0.13   garbage\n",
    );
    let r = run(f);
    none(&r, "bgp-path-missing");
    let x = one(&r, "bgp-path-undecided");
    assert!(
        x.evidence.iter().any(|e| e == &format!("{R1_BGP}:12")),
        "{:?}",
        x.evidence
    );
}

/// SLX leaves the Network column blank on the further paths of a prefix: all are read.
#[test]
fn slx_blank_network_lines_are_paths_of_the_prefix_above() {
    let mut f = files("delivered");
    edit(
        &mut f,
        R1_BGP,
        "*    10.99.0.10/32      10.1.0.12",
        "*                       10.1.0.12",
    );
    edit(
        &mut f,
        R1_BGP,
        "*    10.99.0.10/32      10.1.0.13",
        "*                       10.1.0.13",
    );
    let r = run(f);
    none(&r, "bgp-path-missing");
    none(&r, "bgp-path-undecided");
}

/// A second Service holding 10.99.0.10 (status), with the given sharing annotations and port.
fn second_on_the_address(first_key: Option<&str>, key: Option<&str>, port: i32) -> Files {
    let mut f = files("delivered");
    let ann = |k: Option<&str>| {
        k.map(|k| format!("    annotations:\n      metallb.universe.tf/allow-shared-ip: {k}\n"))
            .unwrap_or_default()
    };
    let second = format!(
        "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: second\n    namespace: ingress-nginx\n{}  spec:\n    type: LoadBalancer\n    clusterIP: 10.96.120.34\n    clusterIPs:\n    - 10.96.120.34\n    externalTrafficPolicy: Cluster\n    ports:\n    - name: p\n      port: {port}\n      protocol: TCP\n      targetPort: 80\n    selector:\n      app.kubernetes.io/component: controller\n      app.kubernetes.io/instance: ingress-nginx\n      app.kubernetes.io/name: ingress-nginx\n  status:\n    loadBalancer:\n      ingress:\n      - ip: 10.99.0.10\nmetadata:\n  resourceVersion: \"\"\n",
        ann(key)
    );
    edit(
        &mut f,
        "cluster/services.yaml",
        "metadata:\n  resourceVersion: \"\"\n",
        &second,
    );
    if let Some(k) = first_key {
        edit(
            &mut f,
            "cluster/services.yaml",
            "      app.kubernetes.io/name: ingress-nginx\n  spec:",
            &format!(
                "      app.kubernetes.io/name: ingress-nginx\n{}  spec:",
                ann(Some(k))
            ),
        );
    }
    f
}

/// Two Services on one address that MetalLB does not let share it: a finding naming both;
/// which one MetalLB refuses is undecided (announce says so).
#[test]
fn lb_ip_sharing_conflict() {
    for (k1, k2, port, why) in [
        (None, None, 443, "does not allow sharing"),
        (Some("a"), Some("b"), 443, "keys differ"),
        (Some("a"), Some("a"), 80, "both use port TCP/80"),
    ] {
        let m = model(second_on_the_address(k1, k2, port));
        let r = check(&m);
        let x = one(&r, "lb-ip-sharing-conflict");
        assert_eq!(x.severity, Severity::Error);
        assert!(
            x.title.contains("ingress-nginx/ingress-nginx-controller")
                && x.title.contains("ingress-nginx/second")
                && x.title.contains("10.99.0.10"),
            "{}",
            x.title
        );
        assert!(x.explanation.contains(why), "{why}: {}", x.explanation);
        assert!(x.explanation.contains("undecided"), "{}", x.explanation);
        let anns = kubepath_sim::announce::announce(&m, None);
        assert!(
            anns.iter()
                .all(|a| a.notes.iter().any(|n| n.starts_with("undecided:"))),
            "{anns:#?}"
        );
    }
    // Same key, other ports: shared.
    let r = run(second_on_the_address(Some("a"), Some("a"), 443));
    none(&r, "lb-ip-sharing-conflict");
}

/// An invalid loadBalancerIPs annotation on a single-stack Service: the finding says the
/// annotation is invalid, not that the status differs from a request.
#[test]
fn status_mismatch_names_an_invalid_annotation() {
    for (value, why) in [
        ("10.99.0.10, 10.99.0.11", "two addresses of the same family"),
        ("10.99.0.10,fd00:99::10", "single-stack"),
    ] {
        let mut f = files("delivered");
        edit(
            &mut f,
            "cluster/services.yaml",
            "      app.kubernetes.io/name: ingress-nginx\n  spec:",
            &format!("      app.kubernetes.io/name: ingress-nginx\n    annotations:\n      metallb.universe.tf/loadBalancerIPs: \"{value}\"\n  spec:"),
        );
        let r = run(f);
        let x = one(&r, "lb-status-mismatch");
        assert!(
            x.title.contains("invalid loadBalancerIPs annotation"),
            "{}",
            x.title
        );
        assert!(x.explanation.contains(why), "{why}: {}", x.explanation);
        assert!(
            !x.explanation.contains("assigns the requested address"),
            "{}",
            x.explanation
        );
    }
}

/// avoidBuggyIPs: a status address ending in .255 is in no pool for MetalLB (poolFor skips
/// it), as `kubepath announce` says; check reports it with the reason.
#[test]
fn avoid_buggy_ips_status_address_is_in_no_pool() {
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "  addresses:\n  - 10.99.0.0/28\n",
        "  avoidBuggyIPs: true\n  addresses:\n  - 10.99.0.0/24\n",
    );
    edit(
        &mut f,
        "cluster/services.yaml",
        "      - ip: 10.99.0.10\n",
        "      - ip: 10.99.0.255\n",
    );
    let r = run(f);
    let x = one(&r, "lb-ip-in-no-pool");
    assert!(
        x.title.contains("10.99.0.255") || x.explanation.contains("10.99.0.255"),
        "{x:#?}"
    );
    let text = format!("{} {}", x.title, x.explanation);
    assert!(text.contains("avoidBuggyIPs"), "{text}");
    // Without avoidBuggyIPs the address is in the pool.
    let mut f = files("delivered");
    edit(&mut f, METALLB, "  - 10.99.0.0/28\n", "  - 10.99.0.0/24\n");
    edit(
        &mut f,
        "cluster/services.yaml",
        "      - ip: 10.99.0.10\n",
        "      - ip: 10.99.0.255\n",
    );
    none(&run(f), "lb-ip-in-no-pool");
}

/// A pool outside MetalLB's namespace is not read by MetalLB: no overlap with it, an info
/// finding instead.
#[test]
fn pool_outside_metallbs_namespace_is_ignored() {
    let mut f = files("delivered");
    append(
        &mut f,
        METALLB,
        &pool("stray", &["10.99.0.0/24"])
            .replace("namespace: metallb-system", "namespace: default"),
    );
    let r = run(f);
    none(&r, "lb-pool-overlap");
    none(&r, "lb-pool-not-advertised");
    let x = one(&r, "lb-pool-ignored");
    assert_eq!(x.severity, Severity::Info);
    assert!(
        x.title.contains("`stray` in namespace default"),
        "{}",
        x.title
    );
    assert!(x.title.contains("metallb-system"), "{}", x.title);
    // In MetalLB's namespace it counts (and overlaps).
    let mut f = files("delivered");
    append(&mut f, METALLB, &pool("stray", &["10.99.0.0/24"]));
    assert_eq!(all(&run(f), "lb-pool-overlap").len(), 1);
}

/// Only node-a can reach a peer off the nodes' subnet: node-b and node-c, which should
/// announce to it, are named (error).
#[test]
fn bgp_peer_unreachable_from_some_nodes() {
    let mut f = files("delivered");
    edit(
        &mut f,
        METALLB,
        "peerAddress: 10.1.0.254",
        "peerAddress: 10.5.0.254\n  ebgpMultiHop: true",
    );
    drop_default_route(&mut f, "node-b");
    drop_default_route(&mut f, "node-c");
    let r = run(f);
    let x = one(&r, "bgp-peer-unreachable");
    assert_eq!(x.severity, Severity::Error);
    assert!(
        x.title
            .contains("unreachable from 2 of the 3 speaker nodes")
            && x.title.contains("node-b, node-c"),
        "{}",
        x.title
    );
    assert!(
        x.explanation.contains("node-b: no route"),
        "{}",
        x.explanation
    );
    assert!(
        x.explanation
            .contains("ingress-nginx/ingress-nginx-controller from node-b, node-c"),
        "{}",
        x.explanation
    );
}

/// eth0 without carrier on every node (NO-CARRIER, routes marked linkdown): the peer on
/// eth0's subnet is reachable from none.
#[test]
fn bgp_peer_unreachable_over_a_link_down() {
    let mut f = files("delivered");
    for n in ["node-a", "node-b", "node-c"] {
        let path = format!("nodes/{n}/ip-addr.txt");
        let file = f.iter_mut().find(|(p, _)| *p == path).unwrap();
        let text = String::from_utf8(file.1.clone()).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains(": eth0:"))
            .unwrap()
            .to_string();
        let down = line
            .replace(
                "<BROADCAST,MULTICAST,UP,LOWER_UP>",
                "<NO-CARRIER,BROADCAST,MULTICAST,UP>",
            )
            .replace("state UP", "state DOWN");
        assert_ne!(line, down, "{line}");
        file.1 = text.replacen(&line, &down, 1).into_bytes();
    }
    let r = run(f);
    let x = one(&r, "bgp-peer-unreachable");
    assert!(x.title.contains("none of the 3"), "{}", x.title);
    assert!(x.explanation.contains("link is down"), "{}", x.explanation);
}
