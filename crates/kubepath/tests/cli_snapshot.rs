//! End-to-end tests of `kubepath snapshot inspect` and `kubepath announce` on the snapshots
//! under fixtures/snapshots/ and on examples/dc173.

use std::process::{Command, Output};

use serde_json::Value;

mod support;
use support::root;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run kubepath")
}

fn json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "kubepath {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn service<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|s| s["service"] == name)
        .unwrap_or_else(|| panic!("{name} not in the output"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn code<'a>(svc: &'a Value, node: &str) -> &'a str {
    svc["not_announcing_codes"][node]
        .as_str()
        .unwrap_or("<announces>")
}

// ---------------------------------------------------------------------------------------------
// examples/dc173 (the issue's acceptance check)
// ---------------------------------------------------------------------------------------------

#[test]
fn dc173_inspect_acceptance() {
    if !root().join("examples/dc173").is_dir() {
        println!("skipped: examples/dc173 is not there");
        return;
    }
    let r = json(&["snapshot", "inspect", "examples/dc173", "--json"]);
    assert_eq!(r["schema"], "kubepath.inspect/v1");
    assert_eq!(r["counts"]["speaker_nodes"], 11);
    assert_eq!(r["counts"]["ingress_controller_pods"], 4);
    assert_eq!(r["counts"]["routers"], 2);
    // Every file read (or deliberately skipped), no warning or error.
    for f in r["files"].as_array().unwrap() {
        assert!(
            f["format"].is_string() || f["skipped"].is_string(),
            "file not read: {f}"
        );
    }
    for d in r["diagnostics"].as_array().unwrap() {
        assert_eq!(d["severity"], "note", "unexpected diagnostic {d}");
    }
    let routers = r["routers"].as_array().unwrap();
    for rt in routers {
        let vrf = rt["vrfs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "DC173_CCD1_om_vr")
            .unwrap_or_else(|| panic!("{} has no DC173_CCD1_om_vr", rt["name"]));
        let p = vrf["lb_prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["prefix"] == "10.33.151.160/32")
            .expect("the VIP in the om VRF");
        assert_eq!(p["ecmp_next_hops"].as_array().unwrap().len(), 11);
    }
    let chain = r["dns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "dc173prometheus1.cloud.k2.ericsson.se.")
        .expect("DNS chain of dc173prometheus1");
    assert_eq!(
        strings(&chain["chain"]),
        vec![
            "dc173prometheus1.cloud.k2.ericsson.se.",
            "dc173dashboard1.cloud.k2.ericsson.se."
        ]
    );
    assert_eq!(strings(&chain["addresses"]), vec!["10.33.151.160"]);
    assert_eq!(
        strings(&chain["load_balancer_services"]),
        vec!["ingress-nginx/ingress-nginx"]
    );
}

#[test]
fn dc173_announce_acceptance() {
    if !root().join("examples/dc173").is_dir() {
        println!("skipped: examples/dc173 is not there");
        return;
    }
    let r = json(&[
        "announce",
        "examples/dc173",
        "--service",
        "ingress-nginx/ingress-nginx",
        "--json",
    ]);
    assert_eq!(r.as_array().unwrap().len(), 1);
    let s = &r[0];
    assert_eq!(strings(&s["ips"]), vec!["10.33.151.160"]);
    assert_eq!(s["pool"], "ingress");
    assert_eq!(s["mode"], "bgp");
    assert_eq!(s["announcing_nodes"].as_array().unwrap().len(), 11);
    let peers: Vec<&String> = s["routes"].as_object().unwrap().keys().collect();
    assert_eq!(peers, vec!["10.33.151.66", "10.33.151.67"]);
    for routes in s["routes"].as_object().unwrap().values() {
        assert_eq!(routes.as_array().unwrap().len(), 11);
        assert!(routes
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["prefix"] == "10.33.151.160/32"));
    }
    assert_eq!(s["missing_on_routers"].as_array().unwrap().len(), 0);
    assert_eq!(s["unexplained_on_routers"].as_array().unwrap().len(), 0);
}

// ---------------------------------------------------------------------------------------------
// announce: one case per reason
// ---------------------------------------------------------------------------------------------

#[test]
fn metallb_crd_bgp_reasons() {
    let r = json(&["announce", "fixtures/snapshots/metallb-crd-bgp", "--json"]);
    let web = service(&r, "demo/web");
    assert_eq!(strings(&web["announcing_nodes"]), vec!["n1", "n6"]);
    assert_eq!(code(web, "n2"), "network-unavailable");
    assert_eq!(code(web, "n3"), "excluded-by-label");
    assert_eq!(code(web, "n4"), "advertisement-peers");
    assert_eq!(code(web, "n5"), "no-speaker");
    assert_eq!(code(web, "n7"), "no-peer-for-node");
    assert_eq!(
        web["routes"]["10.0.0.1"],
        serde_json::json!([{"prefix": "192.0.2.1/32", "node": "n1"}, {"prefix": "192.0.2.1/32", "node": "n6"}])
    );

    let local = service(&r, "demo/web-local");
    assert_eq!(strings(&local["announcing_nodes"]), vec!["n1"]);
    assert_eq!(code(local, "n6"), "no-local-endpoint");

    let down = service(&r, "demo/down");
    assert!(down["announcing_nodes"].as_array().unwrap().is_empty());
    assert_eq!(code(down, "n1"), "no-serving-endpoint");

    let other = service(&r, "demo/other-class");
    assert!(other["ips"].as_array().unwrap().is_empty());
    assert_eq!(code(other, "n1"), "no-ip");

    let pending = service(&r, "demo/pending");
    // .0 is skipped (avoid-buggy-ips), .1-.3 are taken by the other Services.
    assert_eq!(strings(&pending["ips"]), vec!["192.0.2.4"]);
    assert!(pending["ip_origin"]
        .as_str()
        .unwrap()
        .starts_with("predicted"));

    let manual = service(&r, "demo/manual");
    assert_eq!(strings(&manual["ips"]), vec!["203.0.113.10"]);
    assert_eq!(manual["mode"], "none");
    assert_eq!(code(manual, "n1"), "pool-not-advertised");

    let edge = service(&r, "demo/edge-only");
    assert_eq!(strings(&edge["announcing_nodes"]), vec!["n1"]);
    assert_eq!(code(edge, "n4"), "advertisement-node-selectors");
    // aggregationLength 30 on the edge advertisement.
    assert_eq!(edge["routes"]["10.0.0.1"][0]["prefix"], "198.51.100.4/30");
}

#[test]
fn lb_class_not_served() {
    // The same Service, but the snapshot's controller/speakers run without --lb-class, and
    // the Service has an IP already: only the speakers' class decides.
    let r = json(&["announce", "fixtures/snapshots/lb-class", "--json"]);
    let s = service(&r, "demo/classy");
    assert!(s["announcing_nodes"].as_array().unwrap().is_empty());
    assert_eq!(code(s, "k1"), "lb-class");
    let s = service(&r, "demo/plain");
    assert_eq!(strings(&s["announcing_nodes"]), vec!["k1"]);
}

#[test]
fn metallb_l2_election() {
    let r = json(&["announce", "fixtures/snapshots/metallb-l2", "--json"]);
    // Oracle: Python's hashlib, sorted(nodes, key=sha256(node + "#" + ip)).
    let s = service(&r, "shop/shop");
    assert_eq!(s["mode"], "l2");
    assert_eq!(strings(&s["announcing_nodes"]), vec!["worker-a"]);
    assert_eq!(code(s, "worker-b"), "l2-not-elected");
    let s = service(&r, "shop/shop-local");
    assert_eq!(strings(&s["announcing_nodes"]), vec!["worker-c"]);
    assert_eq!(code(s, "worker-a"), "no-local-endpoint");
    assert_eq!(code(s, "worker-b"), "l2-not-elected");
}

#[test]
fn legacy_configmap_peers_and_aggregation() {
    let r = json(&["announce", "fixtures/snapshots/metallb-configmap", "--json"]);
    let s = service(&r, "prod/api");
    assert_eq!(s["pool"], "public");
    assert_eq!(
        s["routes"]["10.9.255.1"],
        serde_json::json!([{"prefix": "10.2.0.0/24", "node": "m1"}, {"prefix": "10.2.0.5/32", "node": "m1"}])
    );
    assert_eq!(
        s["routes"]["10.9.255.2"],
        serde_json::json!([{"prefix": "10.2.0.0/24", "node": "m2"}, {"prefix": "10.2.0.5/32", "node": "m2"}])
    );
    assert_eq!(code(s, "m3"), "no-peer-for-node");
    let s = service(&r, "prod/intranet");
    assert_eq!(s["mode"], "l2");
    assert_eq!(strings(&s["ips"]), vec!["10.3.0.10"]);
    assert_eq!(s["announcing_nodes"].as_array().unwrap().len(), 1);
}

#[test]
fn ecfe_pools_bound_to_peers_and_router_comparison() {
    let r = json(&["announce", "fixtures/snapshots/ecfe", "--json"]);
    let s = service(&r, "apps/signalling");
    assert_eq!(strings(&s["announcing_nodes"]), vec!["e3"]);
    assert_eq!(code(s, "e1"), "peers-bound-to-other-pools");
    let peers: Vec<&String> = s["routes"].as_object().unwrap().keys().collect();
    assert_eq!(peers, vec!["10.30.0.2"]);

    let s = service(&r, "apps/web");
    assert_eq!(strings(&s["announcing_nodes"]), vec!["e1", "e2", "e3"]);
    let peers: Vec<&String> = s["routes"].as_object().unwrap().keys().collect();
    assert_eq!(peers, vec!["10.10.0.2"]);
    let missing = s["missing_on_routers"].as_array().unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0]["next_hop"], "10.10.0.4");
    assert_eq!(missing[0]["node"], "e2");
    let unexplained = s["unexplained_on_routers"].as_array().unwrap();
    assert_eq!(unexplained.len(), 1);
    assert_eq!(unexplained[0]["next_hop"], "10.10.0.9");
    assert!(unexplained[0]["source"]
        .as_str()
        .unwrap()
        .starts_with("routers/LEAF-A/show-ip-bgp-vrf-OM.txt:"));
}

// ---------------------------------------------------------------------------------------------
// bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_yaml_is_exit_2_with_position() {
    let out = run(&[
        "--strict",
        "snapshot",
        "inspect",
        "fixtures/snapshots/err-malformed-yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster/svc.yaml:9:4"), "{err}");
    let out = run(&[
        "announce",
        "--strict",
        "fixtures/snapshots/err-malformed-yaml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // Without --strict the file is left out, listed with its position, and the rest loads.
    let out = run(&[
        "snapshot",
        "inspect",
        "fixtures/snapshots/err-malformed-yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cluster/svc.yaml:9:4"), "{text}");
    assert!(text.contains("left out"), "{text}");
}

#[test]
fn unrecognised_file_is_a_warning_not_a_failure() {
    let r = json(&[
        "snapshot",
        "inspect",
        "fixtures/snapshots/unrecognised-file",
        "--json",
    ]);
    let warnings: Vec<&Value> = r["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "warning")
        .collect();
    let files: Vec<&str> = warnings
        .iter()
        .map(|d| d["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, vec!["cluster/notes.txt", "dns/whatever.txt"]);
    assert_eq!(r["counts"]["services_by_type"]["ClusterIP"], 1);
}

#[test]
fn missing_directory_and_unknown_service_are_exit_2() {
    assert_eq!(
        run(&["snapshot", "inspect", "fixtures/snapshots/does-not-exist"])
            .status
            .code(),
        Some(2)
    );
    let out = run(&[
        "announce",
        "fixtures/snapshots/ecfe",
        "--service",
        "apps/nope",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "announce",
        "fixtures/snapshots/ecfe",
        "--service",
        "no-slash",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn text_output_names_reasons() {
    let out = run(&[
        "announce",
        "fixtures/snapshots/metallb-crd-bgp",
        "--service",
        "demo/web",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("not n2: node condition NetworkUnavailable=True (cluster/nodes.yaml:"),
        "{text}"
    );
    assert!(
        text.contains("to peer 10.0.0.1: 192.0.2.1/32 from 2 node(s): n1, n6"),
        "{text}"
    );
}

#[test]
fn assignment_and_speaker_flags() {
    let r = json(&["announce", "fixtures/snapshots/assignment", "--json"]);
    let a = service(&r, "t/a-first");
    // --ignore-exclude-lb: the labelled x1 announces; x2's speaker is Pending.
    assert_eq!(strings(&a["announcing_nodes"]), vec!["x1"]);
    assert_eq!(code(a, "x2"), "speaker-not-running");
    let b = service(&r, "t/b-request-taken");
    assert!(b["ips"].as_array().unwrap().is_empty());
    assert_eq!(code(b, "x1"), "no-ip");
    let c = service(&r, "t/c-pool-missing");
    assert_eq!(code(c, "x1"), "no-ip");
    // .0 avoided (avoid-buggy-ips), .1 taken: .2 then .3, then the pool is full.
    assert_eq!(strings(&service(&r, "t/d-auto")["ips"]), vec!["10.7.0.2"]);
    assert_eq!(strings(&service(&r, "t/e-auto")["ips"]), vec!["10.7.0.3"]);
    let f = service(&r, "t/f-auto-full");
    assert!(f["ips"].as_array().unwrap().is_empty());
    assert!(f["reason"].as_str().unwrap().contains("full"));
    // A requested address in no pool: MetalLB's allocator refuses it ("not allowed in
    // config") and the Service stays pending: no IP at all.
    let g = service(&r, "t/g-requested-outside");
    assert_eq!(code(g, "x1"), "no-ip");
    assert!(g["ips"].as_array().unwrap().is_empty());
    assert!(
        g["reason"].as_str().unwrap().contains("in no address pool"),
        "{g}"
    );
    // Only LoadBalancer Services are listed.
    assert!(r
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["service"] != "t/h-cluster-ip"));
    let out = run(&[
        "announce",
        "fixtures/snapshots/assignment",
        "--service",
        "t/h-cluster-ip",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn no_speaker_pods_means_every_node_with_a_note() {
    // No Node objects and no speaker pods: the nodes are the node directories.
    let r = json(&["announce", "fixtures/snapshots/no-node-objects", "--json"]);
    let s = service(&r, "default/api");
    assert_eq!(strings(&s["announcing_nodes"]), vec!["a", "b"]);
    assert_eq!(
        s["routes"]["172.30.0.1"],
        serde_json::json!([{"prefix": "172.31.0.10/32", "node": "a"}, {"prefix": "172.31.0.10/32", "node": "b"}])
    );
    let i = json(&[
        "snapshot",
        "inspect",
        "fixtures/snapshots/no-node-objects",
        "--json",
    ]);
    assert_eq!(i["counts"]["speaker_nodes"], 2);
    assert_eq!(i["load_balancer"]["speakers_assumed"], true);
    assert!(i["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["severity"] == "note"
            && d["message"].as_str().unwrap().contains("no speaker pod")));
}

#[test]
fn inspect_findings_cite_both_places() {
    let r = json(&[
        "snapshot",
        "inspect",
        "fixtures/snapshots/findings",
        "--json",
    ]);
    let findings = r["findings"].as_array().unwrap();
    let kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for k in [
        "duplicate-ip",
        "pod-ip-on-other-node",
        "pod-ip-on-no-node",
        "ingress-backend-missing",
        "ingress-backend-port-missing",
        "selector-matches-no-pod",
        "lb-ip-in-no-pool",
        "lb-route-without-service",
        "endpoint-pod-ip-mismatch",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let dup = findings
        .iter()
        .find(|f| f["kind"] == "duplicate-ip")
        .unwrap();
    assert_eq!(
        strings(&dup["places"]),
        vec!["cluster/objects.yaml:4", "cluster/objects.yaml:10"]
    );
    let other = findings
        .iter()
        .find(|f| f["kind"] == "pod-ip-on-other-node")
        .unwrap();
    assert_eq!(
        strings(&other["places"]),
        vec!["cluster/objects.yaml:16", "cluster/objects.yaml:10"]
    );
    let missing = findings
        .iter()
        .find(|f| f["kind"] == "ingress-backend-missing")
        .unwrap();
    assert!(missing["message"].as_str().unwrap().contains("other/web"));
    // The clean examples have none.
    let clean = json(&[
        "snapshot",
        "inspect",
        "fixtures/snapshots/metallb-l2",
        "--json",
    ]);
    assert!(
        clean["findings"].as_array().unwrap().is_empty(),
        "{}",
        clean["findings"]
    );
}

/// `snapshot inspect` lists the ingress-nginx controllers the ingress stage asks, by one rule
/// (sim's): the chart's admission-webhook job carries the same name label and an ingress-nginx
/// image, and is not a controller.
#[test]
fn inspect_lists_the_controllers_the_ingress_stage_asks() {
    let dir = std::env::temp_dir().join(format!("kubepath-inspect-ic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("cluster")).unwrap();
    std::fs::write(
        dir.join("cluster/pods.yaml"),
        r#"apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: ingress-nginx-admission-create-x7k2p
    namespace: ingress-nginx
    labels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: admission-webhook}
  spec:
    containers:
    - name: create
      image: registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.4.0
      args: [create, --namespace=$(POD_NAMESPACE)]
  status: {phase: Succeeded, podIP: 10.244.1.7}
- apiVersion: v1
  kind: Pod
  metadata:
    name: ingress-nginx-controller-5d8c9f-abcde
    namespace: ingress-nginx
    labels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/component: controller}
  spec:
    nodeName: node-a
    containers:
    - name: controller
      image: registry.k8s.io/ingress-nginx/controller:v1.10.1
      args: [/nginx-ingress-controller, --ingress-class=nginx]
  status: {phase: Running, podIP: 10.244.1.8}
"#,
    )
    .unwrap();
    let v = json(&["snapshot", "inspect", dir.to_str().unwrap(), "--json"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        strings(&v["ingress_controller_pods"]),
        ["ingress-nginx/ingress-nginx-controller-5d8c9f-abcde"]
    );
    assert_eq!(v["counts"]["ingress_controller_pods"], 1);
}
