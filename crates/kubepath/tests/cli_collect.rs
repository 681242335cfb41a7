//! `kubepath collect`: the kubectl part against a fake `kubectl` answering with recorded
//! outputs (fixtures/collect/kubectl, examples/dc173's objects as `kubectl get -o json` prints
//! them), the node part through a fake node command and, as root with KUBEPATH_PRIV_TESTS=1,
//! for real against network namespaces the test creates (`ip netns exec {name}`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use kubepath_netfilter_gen::privileged;
use support::{copy_dir, root};

fn kubepath(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .args(args)
        .output()
        .expect("run kubepath")
}

/// A fresh directory under the target's tmp dir (removed at the start, kept for a look after
/// a failure).
fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli_collect-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write_exe(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A fake kubectl in `dir`: logs its argv (one line per run) to `dir/kubectl.log` and answers
/// `api-resources -o name` and `get RESOURCE ... -o json` from `fixtures` (RESOURCE.json,
/// group suffix dropped); anything else fails as kubectl does for an unknown resource.
fn fake_kubectl(dir: &Path, fixtures: &Path) -> PathBuf {
    let bin = dir.join("kubectl");
    let script = format!(
        r#"#!/bin/sh
printf '%s\n' "$*" >> '{log}'
if [ "$1" = "--context" ]; then shift 2; fi
case "$1" in
  api-resources) exec cat '{fix}/api-resources.txt' ;;
  get)
    f='{fix}'/"${{2%%.*}}".json
    if [ -f "$f" ]; then exec cat "$f"; fi
    echo "error: the server doesn't have a resource type \"$2\"" >&2
    exit 1 ;;
esac
echo "fake kubectl: unexpected $*" >&2
exit 1
"#,
        log = dir.join("kubectl.log").display(),
        fix = fixtures.display()
    );
    write_exe(&bin, &script);
    bin
}

fn recorded() -> PathBuf {
    root().join("fixtures/collect/kubectl")
}

/// `fixtures` copied into `dir`, with `nodes.json` replaced by Node objects of these names
/// and InternalIPs.
fn fixtures_with_nodes(dir: &Path, nodes: &[(&str, &str)]) -> PathBuf {
    let fix = dir.join("fixtures");
    std::fs::create_dir_all(&fix).expect("mkdir");
    for e in std::fs::read_dir(recorded()).expect("fixtures") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), fix.join(e.file_name())).expect("copy");
    }
    let items: Vec<Value> = nodes
        .iter()
        .map(|(name, ip)| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "spec": {},
                "status": {"addresses": [
                    {"address": ip, "type": "InternalIP"},
                    {"address": name, "type": "Hostname"}
                ]}
            })
        })
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items,
        "metadata": {"resourceVersion": "", "selfLink": ""}});
    std::fs::write(
        fix.join("nodes.json"),
        serde_json::to_string_pretty(&list).expect("json"),
    )
    .expect("write nodes");
    fix
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn inspect(dir: &Path) -> (Output, Value) {
    let out = kubepath(&[
        "snapshot",
        "inspect",
        dir.to_str().expect("utf-8"),
        "--json",
    ]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

fn assert_no_secrets(log: &str) {
    assert!(
        !log.to_ascii_lowercase().contains("secret"),
        "a kubectl command named secrets:\n{log}"
    );
}

#[test]
fn kubectl_part_from_recorded_outputs() {
    let dir = temp_dir("kubectl");
    let kubectl = fake_kubectl(&dir, &recorded());
    let snap = dir.join("snap");
    let out = kubepath(&[
        "collect",
        "--out",
        snap.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--context",
        "dc173",
        "--skip-nodes",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What kubectl was asked: the context, JSON, -A for namespaced kinds, never Secrets.
    let log = read(&dir.join("kubectl.log"));
    assert_no_secrets(&log);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "--context dc173 api-resources -o name");
    for l in &lines[1..] {
        assert!(l.starts_with("--context dc173 get "), "{l}");
        assert!(l.ends_with(" -o json"), "{l}");
    }
    assert!(lines.contains(&"--context dc173 get nodes -o json"));
    assert!(lines.contains(&"--context dc173 get pods -A -o json"));
    assert!(lines.contains(&"--context dc173 get ingresses.networking.k8s.io -A -o json"));
    assert!(lines.contains(&"--context dc173 get endpointslices.discovery.k8s.io -A -o json"));
    // MetalLB's CRDs are not served by this cluster (ECFE): not asked, a note says so.
    assert!(!log.contains("metallb"), "{log}");
    assert!(stdout.contains("ipaddresspools.metallb.io: not served by this cluster"));

    for f in [
        "nodes",
        "namespaces",
        "services",
        "endpoints",
        "endpointslices",
        "pods",
        "ingresses",
        "ingressclasses",
        "configmaps",
    ] {
        assert!(snap.join(format!("cluster/{f}.json")).is_file(), "{f}");
    }
    // The recorded answer is written as printed.
    assert_eq!(
        read(&snap.join("cluster/nodes.json")),
        read(&recorded().join("nodes.json"))
    );
    // An empty answer says which kind it is, so that it reads as "collected, none".
    let classes: Value =
        serde_json::from_str(&read(&snap.join("cluster/ingressclasses.json"))).expect("json");
    assert_eq!(classes["kind"], "IngressClassList");
    // ConfigMaps: ECFE's configuration and the controllers' --configmap only.
    let cms = read(&snap.join("cluster/configmaps.json"));
    assert!(cms.contains("ecfe-ccdadm") && cms.contains("nginx-configuration"));
    for gone in ["NOT-TO-BE-COLLECTED", "coredns", "tcp-services"] {
        assert!(!cms.contains(gone), "{gone} written");
    }
    // The manifest skeleton, and the router commands to run by hand.
    assert!(read(&snap.join("kubepath.yaml")).contains("clients: []"));
    assert!(stdout.contains("Extreme SLX-OS") && stdout.contains("show ip bgp vrf VRF"));
    assert!(stdout.contains("everything was collected"));

    // The result loads as a snapshot, with dc173's objects.
    let (out, v) = inspect(&snap);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let c = &v["counts"];
    assert_eq!(c["nodes"], 11);
    assert_eq!(c["pods"], 20);
    assert_eq!(c["ingress_controller_pods"], 4);
    assert_eq!(c["ingresses"], 1);
    assert_eq!(c["load_balancer_ips"], 1);
    assert_eq!(c["pools"], 4);
    assert_eq!(c["peers"], 6);
    assert_eq!(c["speaker_nodes"], 11);

    // A second run keeps the operator's manifest.
    std::fs::write(
        snap.join("kubepath.yaml"),
        "apiVersion: kubepath.dev/v1\nkind: Manifest\n",
    )
    .expect("write");
    let out = kubepath(&[
        "collect",
        "--out",
        snap.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--skip-nodes",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!read(&snap.join("kubepath.yaml")).contains("clients"));
    assert_no_secrets(&read(&dir.join("kubectl.log")));
}

#[test]
fn metallb_crds_are_collected_when_served() {
    let dir = temp_dir("metallb");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1")]);
    let mut api = read(&fix.join("api-resources.txt"));
    api.push_str("ipaddresspools.metallb.io\nbgppeers.metallb.io\n");
    std::fs::write(fix.join("api-resources.txt"), api).expect("write");
    std::fs::write(
        fix.join("ipaddresspools.json"),
        r#"{"apiVersion":"v1","items":[{"apiVersion":"metallb.io/v1beta1","kind":"IPAddressPool","metadata":{"name":"pool1","namespace":"metallb-system"},"spec":{"addresses":["10.99.0.0/28"]}}],"kind":"List","metadata":{"resourceVersion":""}}"#,
    )
    .expect("write");
    // bgppeers.json is missing: kubectl fails for it, which is reported, not fatal, and an
    // earlier run's file (and one of a kind no longer served) is removed, not left as current.
    let kubectl = fake_kubectl(&dir, &fix);
    let snap = dir.join("snap");
    std::fs::create_dir_all(snap.join("cluster")).expect("mkdir");
    for stale in ["metallb-bgppeers.json", "metallb-communities.json"] {
        std::fs::write(snap.join("cluster").join(stale), "{}").expect("write");
    }
    let out = kubepath(&[
        "collect",
        "--out",
        snap.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--skip-nodes",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(read(&snap.join("cluster/metallb-ipaddresspools.json")).contains("pool1"));
    assert!(!snap.join("cluster/metallb-bgppeers.json").exists());
    assert!(!snap.join("cluster/metallb-communities.json").exists());
    assert!(
        stdout
            .contains("cluster/metallb-bgppeers.json: `get bgppeers.metallb.io -A -o json` failed"),
        "{stdout}"
    );
    assert!(stdout.contains("doesn't have a resource type"), "{stdout}");
    assert_no_secrets(&read(&dir.join("kubectl.log")));
}

#[test]
fn kubectl_unusable_is_exit_2() {
    let dir = temp_dir("nokubectl");
    let out = kubepath(&[
        "collect",
        "--out",
        dir.join("snap").to_str().expect("utf-8"),
        "--kubectl",
        dir.join("no-such-kubectl").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kubectl is not usable"));
    // A kubectl that answers but lists no `nodes` (no cluster behind it) is not usable either.
    let mute = dir.join("mute-kubectl");
    write_exe(&mute, "#!/bin/sh\nexit 0\n");
    let out = kubepath(&[
        "collect",
        "--out",
        dir.join("snap").to_str().expect("utf-8"),
        "--kubectl",
        mute.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not list `nodes`"));
    // A template that names no node is bad usage too.
    let out = kubepath(&[
        "collect",
        "--out",
        dir.join("snap").to_str().expect("utf-8"),
        "--node-cmd",
        "ssh somehost",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// The node part through a fake node command: each node's outputs land in its directory, a
/// failing command is reported and the rest of the node (and the other nodes) still
/// collected, and a hostile node name is never handed to anything.
#[test]
fn node_part_through_a_template() {
    let dir = temp_dir("nodes");
    let pwned = dir.join("PWNED");
    let hostile = format!("x;touch {}", pwned.display());
    let fix = fixtures_with_nodes(
        &dir,
        &[
            ("node-a", "10.0.0.1"),
            ("node-b", "10.0.0.2"),
            (&hostile, "10.0.0.3"),
        ],
    );
    let kubectl = fake_kubectl(&dir, &fix);
    // The fake node: `fakenode NAME ADDRESS CMD...` logs and prints a recognisable output per
    // command; `ipset` fails on node-b.
    let node = dir.join("fakenode");
    write_exe(
        &node,
        &format!(
            r#"#!/bin/sh
name="$1"; addr="$2"; shift 2
printf '%s|%s|%s\n' "$name" "$addr" "$*" >> '{log}'
case "$*" in
  "ip -j addr") echo '[{{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"operstate":"UNKNOWN","addr_info":[{{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"}}]}},{{"ifindex":2,"ifname":"eth0","flags":["UP"],"mtu":1500,"operstate":"UP","addr_info":[{{"family":"inet","local":"'"$addr"'","prefixlen":24,"scope":"global","label":"eth0"}}]}}]' ;;
  "ip -j route show table all") echo '[{{"dst":"default","gateway":"10.0.0.254","dev":"eth0","flags":[]}}]' ;;
  "ip -j rule") echo '[{{"priority":0,"src":"all","table":"local"}},{{"priority":32766,"src":"all","table":"main"}},{{"priority":32767,"src":"all","table":"default"}}]' ;;
  iptables-save) printf '# Generated by iptables-save v1.8.9 on Sun Dec  6 22:00:00 2026\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' ;;
  ip6tables-save) : ;;
  "nft list ruleset") if [ "$name" = node-a ]; then printf 'table ip kube-proxy {{\n\tcomment "rules for kube-proxy"\n\tchain services {{\n\t}}\n}}\n'; else echo "nft: command not found" >&2; exit 127; fi ;;
  "ipset save") if [ "$name" = node-b ]; then echo "ipset v7.17: Kernel error received: Operation not permitted" >&2; exit 1; fi ;;
  "sysctl -a") printf 'kernel.pid_max = 4194304\nnet.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter = 0\n' ;;
  *) echo "fakenode: unexpected $*" >&2; exit 1 ;;
esac
"#,
            log = dir.join("node.log").display()
        ),
    );
    let snap = dir.join("snap");
    let template = format!("'{}' {{name}} {{address}}", node.display());
    let out = kubepath(&[
        "collect",
        "--out",
        snap.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--node-cmd",
        &template,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let log = read(&dir.join("node.log"));
    assert!(log.contains("node-a|10.0.0.1|iptables-save"), "{log}");
    assert!(log.contains("node-b|10.0.0.2|sysctl -a"), "{log}");
    assert!(
        !log.contains("touch"),
        "the hostile node was reached:\n{log}"
    );
    assert!(!pwned.exists());
    assert!(
        stdout.contains("not a valid Kubernetes node name"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nodes/node-b/ipset-save.txt: ")
            && stdout.contains("Operation not permitted"),
        "{stdout}"
    );
    for n in ["node-a", "node-b"] {
        for f in [
            "ip-addr.json",
            "ip-route.json",
            "ip-rule.json",
            "iptables-save.txt",
            "sysctl.txt",
        ] {
            assert!(snap.join(format!("nodes/{n}/{f}")).is_file(), "{n}/{f}");
        }
    }
    // `nft list ruleset`: written where it printed a ruleset; where nft is not installed the
    // node's nftables tables are missing (exit code 1), named with the command's error.
    assert!(snap.join("nodes/node-a/nft-ruleset.txt").is_file());
    assert!(!snap.join("nodes/node-b/nft-ruleset.txt").exists());
    assert!(
        stdout.contains("nodes/node-b/nft-ruleset.txt: ")
            && stdout.contains("nft: command not found"),
        "{stdout}"
    );
    // Empty outputs (no sets, no IPv6 tables) are not written, with a note.
    assert!(!snap.join("nodes/node-a/ipset-save.txt").exists());
    assert!(!snap.join("nodes/node-a/ip6tables-save.txt").exists());
    assert!(
        stdout.contains("nodes/node-a/ipset-save.txt: `ipset save` printed nothing"),
        "{stdout}"
    );
    assert_eq!(
        read(&snap.join("nodes/node-a/sysctl.txt")),
        "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter = 0\n"
    );
    let (_, v) = inspect(&snap);
    assert_eq!(v["counts"]["node_dirs"], 2, "{v}");
    for f in v["files"].as_array().expect("files") {
        let p = f["path"].as_str().unwrap_or("");
        if p.starts_with("nodes/") {
            assert!(!f["format"].is_null(), "{f}");
        }
    }

    // --nodes: only those, and an unknown name is missing.
    let snap2 = dir.join("snap2");
    let out = kubepath(&[
        "collect",
        "--out",
        snap2.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--node-cmd",
        &template,
        "--nodes",
        "node-a,node-z",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(snap2.join("nodes/node-a/iptables-save.txt").is_file());
    assert!(!snap2.join("nodes/node-b").exists());
    assert!(stdout.contains("node node-z: not among the cluster's Node objects"));
    assert_no_secrets(&read(&dir.join("kubectl.log")));
}

// ---------------------------------------------------------------------------------------------
// Privileged: real network namespaces
// ---------------------------------------------------------------------------------------------

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespaces this test created, whatever happened.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn node_part_against_network_namespaces() {
    if !privileged::gate("node_part_against_network_namespaces", &["ip"]) {
        return;
    }
    let pid = std::process::id();
    let (a, b) = (format!("kpcollect-{pid}-a"), format!("kpcollect-{pid}-b"));
    let mut guard = Namespaces(Vec::new());
    for ns in [&a, &b] {
        sh(&["ip", "netns", "add", ns]);
        guard.0.push(ns.clone());
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    // A veth pair made inside the namespaces (the host's namespace is never touched).
    sh(&[
        "ip", "-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b,
    ]);
    sh(&[
        "ip",
        "-n",
        &a,
        "addr",
        "add",
        "10.250.0.1/24",
        "dev",
        "eth0",
    ]);
    sh(&[
        "ip",
        "-n",
        &b,
        "addr",
        "add",
        "10.250.0.2/24",
        "dev",
        "eth0",
    ]);
    for ns in [&a, &b] {
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    }
    sh(&[
        "ip",
        "-n",
        &a,
        "route",
        "add",
        "10.251.0.0/16",
        "via",
        "10.250.0.2",
    ]);
    sh(&[
        "ip",
        "-n",
        &a,
        "rule",
        "add",
        "from",
        "10.252.0.0/16",
        "lookup",
        "100",
        "priority",
        "1000",
    ]);
    sh(&[
        "ip",
        "-n",
        &a,
        "route",
        "add",
        "default",
        "via",
        "10.250.0.2",
        "table",
        "100",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &a,
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-d",
        "10.251.1.1/32",
        "-p",
        "tcp",
        "--dport",
        "80",
        "-j",
        "DNAT",
        "--to-destination",
        "10.250.0.2:8080",
    ]);

    let dir = temp_dir("netns");
    let fix = fixtures_with_nodes(&dir, &[(&a, "10.250.0.1"), (&b, "10.250.0.2")]);
    let kubectl = fake_kubectl(&dir, &fix);
    let snap = dir.join("snap");
    let out = kubepath(&[
        "collect",
        "--out",
        snap.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--node-cmd",
        "ip netns exec {name}",
        "--timeout",
        "60",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_secrets(&read(&dir.join("kubectl.log")));
    let na = snap.join("nodes").join(&a);
    assert!(read(&na.join("ip-addr.json")).contains("10.250.0.1"));
    assert!(read(&na.join("ip-route.json")).contains("10.251.0.0/16"));
    assert!(read(&na.join("ip-rule.json")).contains("10.252.0.0"));
    assert!(read(&na.join("iptables-save.txt")).contains("--to-destination 10.250.0.2:8080"));
    assert!(read(&na.join("sysctl.txt")).contains("net.ipv4.ip_forward"));
    assert!(read(&snap.join("nodes").join(&b).join("ip-addr.json")).contains("10.250.0.2"));

    // The snapshot reads them: every node file recognised, no error about them.
    let (_, v) = inspect(&snap);
    assert_eq!(v["counts"]["node_dirs"], 2, "{v}");
    for f in v["files"].as_array().expect("files") {
        let p = f["path"].as_str().unwrap_or("");
        if p.starts_with("nodes/")
            && std::fs::metadata(snap.join(p))
                .map(|m| m.len())
                .unwrap_or(0)
                > 0
        {
            assert!(!f["format"].is_null(), "{f}");
        }
    }
    for d in v["diagnostics"].as_array().into_iter().flatten() {
        let file = d["file"].as_str().unwrap_or("");
        assert!(
            !(file.starts_with("nodes/") && d["severity"] == "error"),
            "{d}"
        );
    }
    // And the collected ruleset is the one set up: the DNAT is taken.
    let t = kubepath(&[
        "netfilter",
        "trace",
        "--ruleset",
        na.join("iptables-save.txt").to_str().expect("utf-8"),
        "--src",
        "10.250.0.2",
        "--dst",
        "10.251.1.1",
        "--proto",
        "tcp",
        "--dport",
        "80",
        "--in-iface",
        "eth0",
    ]);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(text.contains("10.250.0.2:8080"), "{text}");
    drop(guard);
    let left = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip")
            .stdout,
    )
    .into_owned();
    assert!(!left.contains(&format!("kpcollect-{pid}-")), "{left}");
}

// ---------------------------------------------------------------------------------------------
// Privileged: a lab scenario collected by `kubepath collect`, then traced (issue #13)
// ---------------------------------------------------------------------------------------------

/// The lab scenarios collected: the healthy one (every connection delivered), and one whose
/// verdict rests on the sysctls (`sysctl -a` collected vs the lab's own few keys).
const LAB_HEALTHY: &str = "seed-prefix-fixed";
const LAB_RP_FILTER: &str = "rp-filter-strict";

/// Converts the lab snapshot's `cluster/*.yaml` (`kubectl get -o yaml` lists) into what the
/// fake kubectl prints: one `kind: List` JSON per resource (`RESOURCE.json`, group suffix
/// dropped, empty when the lab has no such object, 4-space indent as kubectl prints it) and
/// `api-resources.txt` as `kubectl api-resources -o name` prints it (Secrets included: a real
/// cluster serves them, and collect must not ask). PyYAML, not kubepath's own YAML reader, so
/// that a misreading of the reader cannot hide on both sides. A kind with no resource here
/// fails the conversion rather than being lost.
const YAML_TO_KUBECTL_JSON: &str = r#"
import glob, json, os, sys
import yaml
src, out = sys.argv[1], sys.argv[2]
res = {
    "Node": "nodes", "Namespace": "namespaces", "Service": "services",
    "Endpoints": "endpoints", "EndpointSlice": "endpointslices.discovery.k8s.io",
    "Pod": "pods", "ConfigMap": "configmaps",
    "Ingress": "ingresses.networking.k8s.io",
    "IngressClass": "ingressclasses.networking.k8s.io",
    "IPAddressPool": "ipaddresspools.metallb.io", "BGPPeer": "bgppeers.metallb.io",
    "BGPAdvertisement": "bgpadvertisements.metallb.io",
    "L2Advertisement": "l2advertisements.metallb.io",
    "Community": "communities.metallb.io", "BFDProfile": "bfdprofiles.metallb.io",
}
items = {k: [] for k in res}
for f in sorted(glob.glob(os.path.join(src, "*.yaml"))):
    with open(f) as fh:
        for doc in yaml.safe_load_all(fh):
            if doc is None:
                continue
            for it in (doc.get("items") or []) if doc.get("kind") == "List" else [doc]:
                k = it.get("kind")
                if k not in items:
                    sys.exit(f"{f}: kind {k} has no kubectl resource in this conversion")
                items[k].append(it)
os.makedirs(out, exist_ok=True)
for k, r in res.items():
    lst = {"apiVersion": "v1", "items": items[k], "kind": "List",
           "metadata": {"resourceVersion": ""}}
    with open(os.path.join(out, r.split(".")[0] + ".json"), "w") as fh:
        json.dump(lst, fh, indent=4, default=str)
        fh.write("\n")
with open(os.path.join(out, "api-resources.txt"), "w") as fh:
    fh.write("\n".join(sorted(list(res.values()) + ["secrets"])) + "\n")
print(" ".join(f"{k}={len(v)}" for k, v in items.items()))
"#;

/// Tears the lab `prefix` down with `kubepath lab down`, whatever happened (also when `lab up`
/// failed halfway).
struct LabDown(String);

impl Drop for LabDown {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_kubepath"))
            .args(["lab", "down", "--prefix", &self.0])
            .output();
    }
}

/// Namespaces and the run directory of lab `prefix` still there.
fn lab_leftovers(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let want = format!("{prefix}-");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&want))
        .map(String::from)
        .collect();
    let dir = Path::new(kubepath_lab::RUN_ROOT).join(prefix);
    if dir.exists() {
        v.push(dir.display().to_string());
    }
    v
}

/// `kubepath trace DIR --from <the lab's client> --to http://lab.kubepath.test/ --json`.
fn trace_lab(dir: &Path) -> Value {
    let out = kubepath(&[
        "trace",
        dir.to_str().expect("utf-8"),
        "--from",
        "10.210.150.87",
        "--to",
        "http://lab.kubepath.test/",
        "--json",
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "trace {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("trace JSON")
}

/// `kubepath check DIR --severity info --json`.
fn check_lab(dir: &Path) -> Value {
    let out = kubepath(&[
        "check",
        dir.to_str().expect("utf-8"),
        "--severity",
        "info",
        "--json",
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "check {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check JSON")
}

/// `cluster/<file>:<line>` in a text, with the file and line replaced by `*`: the lab writes
/// `cluster/pods.yaml`, collect `cluster/pods.json`, and the lines differ. Likewise the line of
/// `sysctl.txt:<line>`: the lab dumps a few keys, collect every `net.*` one.
fn unsource(s: &str) -> String {
    let s = &unsource_cluster(s);
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("sysctl.txt:") {
        let end = i + "sysctl.txt".len();
        out.push_str(&rest[..end]);
        rest = rest[end + 1..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

fn unsource_cluster(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("cluster/") {
        out.push_str(&rest[..i]);
        out.push_str("cluster/*");
        let tail = &rest[i + "cluster/".len()..];
        let name_end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        let after = &tail[name_end..];
        rest = match after.strip_prefix(':') {
            Some(a) => a.trim_start_matches(|c: char| c.is_ascii_digit()),
            None => after,
        };
    }
    out.push_str(rest);
    out
}

/// A trace or check report without where its facts were read (`file`, `line`, `source`,
/// `snapshot`, and `cluster/FILE:LINE` inside texts): what is left must not depend on whether
/// the lab or `kubepath collect` wrote the snapshot.
fn without_sources(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "file" | "line" | "source" | "snapshot"))
                .map(|(k, v)| (k.clone(), without_sources(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_sources).collect()),
        Value::String(s) => Value::String(unsource(s)),
        v => v.clone(),
    }
}

/// An iptables-save dump without its comments (timestamps) and chain counters.
fn ruleset(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rsplit_once(" [") {
            Some((head, _)) if l.starts_with(':') => head.to_string(),
            _ => l.to_string(),
        })
        .collect()
}

/// The IPv4 addresses of an `ip -j addr` dump, per interface.
fn v4_addresses(text: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(text).expect("ip -j addr JSON");
    let mut out = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            if a["family"] == "inet" {
                out.push((
                    l["ifname"].to_string(),
                    format!("{}/{}", a["local"], a["prefixlen"]),
                ));
            }
        }
    }
    out.sort();
    out
}

/// What [`collect_a_lab`] leaves to compare: both snapshots' trace and check reports.
struct LabRun {
    trace_want: Value,
    trace_got: Value,
    check_want: Value,
    check_got: Value,
}

/// Brings `scenario` up under `prefix`, takes the lab's own snapshot (the reference), builds a
/// second one with `kubepath collect` (nodes through `ip netns exec PREFIX-{name}`, the
/// Kubernetes objects through a fake kubectl answering with the reference's objects; routers,
/// DNS and manifest copied from the reference), and compares them: the same node outputs, the
/// same trace and check reports once where a fact was read is set aside. The lab is torn down
/// by a drop guard, also on failure, and nothing of it may be left.
fn collect_a_lab(scenario: &str, prefix: &str) -> LabRun {
    let guard = LabDown(prefix.to_string());
    let out = kubepath(&["lab", "up", "--scenario", scenario, "--prefix", prefix]);
    assert!(
        out.status.success(),
        "lab up {scenario}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The reference: the lab's own snapshot.
    let dir = temp_dir(&format!("lab-{scenario}"));
    let reference = dir.join("reference");
    let out = kubepath(&[
        "lab",
        "snapshot",
        reference.to_str().expect("utf-8"),
        "--prefix",
        prefix,
    ]);
    assert!(
        out.status.success(),
        "lab snapshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The fake kubectl's answers: the reference's objects, as kubectl prints them.
    let fix = dir.join("kubectl-answers");
    let script = dir.join("yaml-to-kubectl-json.py");
    std::fs::write(&script, YAML_TO_KUBECTL_JSON).expect("write script");
    let conv = Command::new("python3")
        .arg(&script)
        .arg(reference.join("cluster"))
        .arg(&fix)
        .output()
        .expect("python3");
    assert!(
        conv.status.success(),
        "YAML -> kubectl JSON: {}",
        String::from_utf8_lossy(&conv.stderr)
    );
    let kubectl = fake_kubectl(&dir, &fix);

    // What collect does not collect, put in place first (collect must leave it alone).
    let collected = dir.join("collected");
    for d in ["routers", "dns"] {
        copy_dir(&reference.join(d), &collected.join(d));
    }
    std::fs::copy(
        reference.join("kubepath.yaml"),
        collected.join("kubepath.yaml"),
    )
    .expect("copy manifest");
    let template = format!("ip netns exec {prefix}-{{name}}");
    let out = kubepath(&[
        "collect",
        "--out",
        collected.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--node-cmd",
        &template,
        "--timeout",
        "60",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("everything was collected"), "{stdout}");
    assert_no_secrets(&read(&dir.join("kubectl.log")));
    assert_eq!(
        read(&collected.join("kubepath.yaml")),
        read(&reference.join("kubepath.yaml")),
        "collect replaced the manifest"
    );

    // The node outputs are the lab's: same routes, rules, addresses and rules of iptables.
    let nodes: Vec<String> = std::fs::read_dir(reference.join("nodes"))
        .expect("reference nodes")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for n in &nodes {
        let (r, c) = (
            reference.join("nodes").join(n),
            collected.join("nodes").join(n),
        );
        for f in ["ip-route.json", "ip-rule.json"] {
            let rv: Value = serde_json::from_str(&read(&r.join(f))).expect("json");
            let cv: Value = serde_json::from_str(&read(&c.join(f))).expect("json");
            assert_eq!(rv, cv, "{scenario}: {n}/{f}");
        }
        assert_eq!(
            v4_addresses(&read(&r.join("ip-addr.json"))),
            v4_addresses(&read(&c.join("ip-addr.json"))),
            "{scenario}: {n}/ip-addr.json"
        );
        assert_eq!(
            ruleset(&read(&r.join("iptables-save.txt"))),
            ruleset(&read(&c.join("iptables-save.txt"))),
            "{scenario}: {n}/iptables-save.txt"
        );
        // The lab dumps the sysctls a trace reads; collect every net.* one, with the same values.
        let collected_sysctl = read(&c.join("sysctl.txt"));
        for l in read(&r.join("sysctl.txt")).lines() {
            assert!(
                collected_sysctl.lines().any(|c| c == l),
                "{scenario}: {n}/sysctl.txt: `{l}` not collected"
            );
        }
    }

    // The trace of the collected snapshot is the reference's.
    let trace_want = trace_lab(&reference);
    let trace_got = trace_lab(&collected);
    assert_eq!(
        trace_got["verdicts"], trace_want["verdicts"],
        "{scenario}: verdicts"
    );
    for k in ["nodes", "ingress_pods", "backends", "backends_delivered"] {
        assert_eq!(
            trace_got["distribution"][k], trace_want["distribution"][k],
            "{scenario}: distribution.{k}"
        );
    }
    // collect also takes `nft list ruleset`, which the lab's own snapshot of an iptables
    // scenario does not: on these iptables-nft nodes it lists the same tables as
    // iptables-save, so the answer above is the same, and the steps then cite the nft
    // listing (nft's wording). Step by step, the collected snapshot without it must trace as
    // the lab's own.
    let mut listed = 0;
    for n in &nodes {
        let nft = collected.join("nodes").join(n).join("nft-ruleset.txt");
        if nft.exists() {
            listed += 1;
            let text = read(&nft);
            assert!(text.contains("table ip nat {"), "{scenario}: {n}: {text}");
            std::fs::rename(&nft, collected.join(format!("../{n}-nft-ruleset.txt")))
                .expect("move the nft listing aside");
        }
    }
    assert_eq!(
        listed,
        nodes.len(),
        "{scenario}: nft list ruleset of every node"
    );
    let trace_got = trace_lab(&collected);
    assert_eq!(
        without_sources(&trace_got),
        without_sources(&trace_want),
        "{scenario}: the collected snapshot traces otherwise than the lab's own"
    );
    // `kubepath check`: the same findings.
    let check_want = check_lab(&reference);
    let check_got = check_lab(&collected);
    assert_eq!(
        without_sources(&check_got),
        without_sources(&check_want),
        "{scenario}: check of the collected snapshot differs from the lab's own"
    );

    drop(guard);
    let left = lab_leftovers(prefix);
    assert!(left.is_empty(), "left behind: {left:?}");
    LabRun {
        trace_want,
        trace_got,
        check_want,
        check_got,
    }
}

/// Issue #13's done-when: `kubepath collect` builds a snapshot from a namespace topology that
/// `kubepath trace` then traces correctly ([`collect_a_lab`]). On the lab's healthy
/// `seed-prefix-fixed` the collected snapshot traces exactly as the lab's own (verdicts,
/// distributions, entries, fabric, nodes, branches, fixes, notes: everything but where a fact
/// was read), every connection is delivered, and `kubepath check` finds nothing of severity
/// error. On `rp-filter-strict` (strict rp_filter on the om interface: the SYN is dropped) the
/// verdict rests on the collected `sysctl -a`, and check names the same fault.
#[test]
fn collected_lab_traces_as_the_labs_own_snapshot() {
    if !privileged::gate("collected_lab_traces_as_the_labs_own_snapshot", &["ip"]) {
        return;
    }
    let py = Command::new("python3").args(["-c", "import yaml"]).output();
    assert!(
        py.as_ref().is_ok_and(|o| o.status.success()),
        "this test converts the lab's YAML with python3 and PyYAML: {py:?}"
    );
    let pid = std::process::id();

    let run = collect_a_lab(LAB_HEALTHY, &format!("kpc{pid}h"));
    assert_eq!(
        run.trace_want["verdicts"],
        serde_json::json!({"delivered": 1.0}),
        "the healthy scenario's reference is not delivered"
    );
    assert_eq!(run.trace_got["verdicts"], run.trace_want["verdicts"]);
    for k in ["nodes", "ingress_pods", "backends", "backends_delivered"] {
        let d = &run.trace_want["distribution"][k];
        assert!(
            d.as_object().is_some_and(|m| m.len() >= 2),
            "reference distribution.{k}: {d}"
        );
        assert_eq!(run.trace_got["distribution"][k], *d, "distribution.{k}");
    }
    for f in run.check_got["findings"].as_array().into_iter().flatten() {
        assert!(
            !matches!(f["severity"].as_str(), Some("error" | "critical")),
            "{f}"
        );
    }
    for s in ["critical", "error"] {
        assert_eq!(
            run.check_got["summary"][s], 0,
            "{}",
            run.check_got["summary"]
        );
    }

    let run = collect_a_lab(LAB_RP_FILTER, &format!("kpc{pid}r"));
    assert_eq!(
        run.trace_got["verdicts"],
        serde_json::json!({"rp-filter": 1.0})
    );
    let first = &run.check_got["findings"][0];
    assert_eq!(first["code"], "flow-rp-filter", "{first}");
    assert_eq!(
        first["code"], run.check_want["findings"][0]["code"],
        "{first}"
    );
    assert!(
        matches!(first["severity"].as_str(), Some("error" | "critical")),
        "{first}"
    );
}

// ---------------------------------------------------------------------------------------------
// Review: node commands that misbehave, stale files, usage
// ---------------------------------------------------------------------------------------------

/// A fake node command `fakenode NAME ADDRESS CMD...` answering every node command with a
/// small valid output; `extra` is `case "$*"` arms tried first (`$name` is the node).
fn fake_node(dir: &Path, extra: &str) -> PathBuf {
    let node = dir.join("fakenode");
    write_exe(
        &node,
        &format!(
            r#"#!/bin/sh
name="$1"; addr="$2"; shift 2
case "$*" in
{extra}
  "ip -j addr") echo '[{{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"mtu":65536,"operstate":"UNKNOWN","addr_info":[]}}]' ;;
  "ip -j route show table all") echo '[]' ;;
  "ip -j rule") echo '[{{"priority":0,"src":"all","table":"local"}}]' ;;
  iptables-save) printf '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n' ;;
  ip6tables-save) : ;;
  "ipset save") : ;;
  "nft list ruleset") : ;;
  "sysctl -a") printf 'net.ipv4.ip_forward = 1\n' ;;
  *) echo "fakenode: unexpected $*" >&2; exit 1 ;;
esac
"#
        ),
    );
    node
}

/// `kubepath collect` into `snap` through `kubectl` and the fake node, with more arguments.
fn collect_with(snap: &Path, kubectl: &Path, node: &Path, more: &[&str]) -> Output {
    let template = format!("'{}' {{name}} {{address}}", node.display());
    let mut args = vec![
        "collect",
        "--out",
        snap.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--node-cmd",
        &template,
    ];
    args.extend_from_slice(more);
    kubepath(&args)
}

#[test]
fn an_endless_node_output_is_cut_and_failed() {
    let dir = temp_dir("endless");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1")]);
    let kubectl = fake_kubectl(&dir, &fix);
    let node = fake_node(&dir, r#"  "ip -j addr") exec yes ;;"#);
    let snap = dir.join("snap");
    let start = std::time::Instant::now();
    let out = collect_with(&snap, &kubectl, &node, &["--timeout", "60"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(start.elapsed() < std::time::Duration::from_secs(50));
    assert!(
        stdout.contains("nodes/node-a/ip-addr.json: ") && stdout.contains("output over"),
        "{stdout}"
    );
    assert!(!snap.join("nodes/node-a/ip-addr.json").exists());
    assert!(snap.join("nodes/node-a/ip-rule.json").is_file());
}

#[test]
fn the_timeout_holds_while_output_is_read() {
    let dir = temp_dir("slowout");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1")]);
    let kubectl = fake_kubectl(&dir, &fix);
    // Prints a line a second, forever (never over the cap, never done).
    let node = fake_node(
        &dir,
        r#"  "ip -j rule") while :; do echo '['; sleep 1; done ;;"#,
    );
    let snap = dir.join("snap");
    let start = std::time::Instant::now();
    let out = collect_with(&snap, &kubectl, &node, &["--timeout", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    assert!(stdout.contains("timed out after 2s"), "{stdout}");
    assert!(!snap.join("nodes/node-a/ip-rule.json").exists());
}

#[test]
fn only_ingress_nginx_controllers_name_configmaps() {
    let dir = temp_dir("cmleak");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1")]);
    // An application pod with its own `--configmap` flag, naming a ConfigMap with a password.
    let mut pods: Value = serde_json::from_str(&read(&fix.join("pods.json"))).expect("pods json");
    let app = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "billing-0", "namespace": "app"},
        "spec": {"containers": [{"name": "billing", "image": "example.com/billing:2.1",
            "args": ["--configmap=app/billing-env"]}]},
        "status": {}});
    pods["items"].as_array_mut().expect("items").push(app);
    std::fs::write(fix.join("pods.json"), pods.to_string()).expect("write pods");
    let mut cms: Value =
        serde_json::from_str(&read(&fix.join("configmaps.json"))).expect("cm json");
    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "billing-env", "namespace": "app"},
        "data": {"DB_PASSWORD": "hunter2-LEAKED"}});
    cms["items"].as_array_mut().expect("items").push(cm);
    std::fs::write(fix.join("configmaps.json"), cms.to_string()).expect("write cms");
    let kubectl = fake_kubectl(&dir, &fix);
    let snap = dir.join("snap");
    let out = kubepath(&[
        "collect",
        "--out",
        snap.to_str().expect("utf-8"),
        "--kubectl",
        kubectl.to_str().expect("utf-8"),
        "--skip-nodes",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let written = read(&snap.join("cluster/configmaps.json"));
    assert!(!written.contains("hunter2-LEAKED"), "{written}");
    assert!(!written.contains("billing-env"));
    // The controller's own ConfigMap is still written.
    assert!(written.contains("nginx-configuration"), "{written}");
}

/// A file under `dir/.stale/` with this name (any depth).
fn stale_holds(dir: &Path, name: &str) -> bool {
    fn walk(p: &Path, name: &str) -> bool {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_str() == Some(name)
                    || (e.file_type().is_ok_and(|t| t.is_dir()) && walk(&e.path(), name))
            })
    }
    walk(&dir.join(".stale"), name)
}

#[test]
fn stale_files_of_an_earlier_run_are_not_read() {
    let dir = temp_dir("stale");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1"), ("node-b", "10.0.0.2")]);
    let kubectl = fake_kubectl(&dir, &fix);
    let node = fake_node(&dir, "");
    let snap = dir.join("snap");
    // An earlier snapshot: node-a's addresses as text, a node no longer in the cluster, an
    // extra cluster file.
    for (rel, text) in [
        (
            "nodes/node-a/ip-addr.txt",
            "1: lo: <LOOPBACK> mtu 65536\n    inet 192.0.2.99/32 scope global lo\n",
        ),
        ("nodes/node-a/ipset-legacy.txt", "create old hash:ip\n"),
        ("nodes/node-gone/ip-addr.json", "[]\n"),
        ("nodes/node-gone/iptables-save.txt", "*filter\nCOMMIT\n"),
        (
            "cluster/services-old.json",
            "{\"kind\":\"ServiceList\",\"items\":[]}\n",
        ),
    ] {
        let p = snap.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    let out = collect_with(&snap, &kubectl, &node, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!snap.join("nodes/node-a/ip-addr.txt").exists(), "{stdout}");
    assert!(!snap.join("nodes/node-a/ipset-legacy.txt").exists());
    assert!(snap.join("nodes/node-a/ip-addr.json").is_file());
    assert!(!snap.join("nodes/node-gone").exists(), "{stdout}");
    assert!(!snap.join("cluster/services-old.json").exists());
    // Moved aside, never deleted, and said so.
    assert!(stale_holds(&snap, "ip-addr.txt"));
    assert!(stale_holds(&snap, "node-gone"));
    assert!(
        stdout.contains("nodes/node-gone: no such Node in the cluster now"),
        "{stdout}"
    );
    let (_, v) = inspect(&snap);
    assert_eq!(v["counts"]["node_dirs"], 2, "{v}");
    assert!(!v.to_string().contains("192.0.2.99"), "{v}");

    // --nodes: node-b's directory is kept, and the summary says it is an earlier collection's.
    let out = collect_with(&snap, &kubectl, &node, &["--nodes", "node-a"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(snap.join("nodes/node-b/ip-addr.json").is_file());
    assert!(
        stdout.contains("nodes/node-b/: from an earlier collection"),
        "{stdout}"
    );
    // --skip-nodes: both kept, both said to be earlier.
    let out = collect_with(&snap, &kubectl, &node, &["--skip-nodes"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("nodes/node-a/: from an earlier collection"),
        "{stdout}"
    );
    assert!(
        stdout.contains("nodes/node-b/: from an earlier collection"),
        "{stdout}"
    );
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let dir = temp_dir("symlink");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1")]);
    let kubectl = fake_kubectl(&dir, &fix);
    let node = fake_node(&dir, "");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").expect("victim");
    let victim_dir = dir.join("victim-dir");
    std::fs::create_dir_all(&victim_dir).expect("mkdir");
    let snap = dir.join("snap");
    std::fs::create_dir_all(snap.join("cluster")).expect("mkdir");
    std::fs::create_dir_all(snap.join("nodes")).expect("mkdir");
    std::os::unix::fs::symlink(&victim, snap.join("cluster/services.json")).expect("link");
    std::os::unix::fs::symlink(&victim_dir, snap.join("nodes/node-a")).expect("link");
    let out = collect_with(&snap, &kubectl, &node, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(read(&victim), "precious\n");
    assert_eq!(
        std::fs::read_dir(&victim_dir).expect("dir").count(),
        0,
        "written through nodes/node-a"
    );
    assert!(stdout.contains("symbolic link"), "{stdout}");
}

#[test]
fn node_outputs_of_the_wrong_shape_are_failed() {
    let dir = temp_dir("shape");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1")]);
    let kubectl = fake_kubectl(&dir, &fix);
    // A wrapper that answers everything with junk: a login banner, `y` lines.
    let node = fake_node(
        &dir,
        r#"  "ip -j addr") yes | head -n 100000 ;;
  "ip -j route show table all") echo 'Welcome to node-a!' ;;
  "ip -j rule") echo '[{"priority":0' ;;
  iptables-save) yes | head -n 1000 ;;"#,
    );
    let snap = dir.join("snap");
    let out = collect_with(&snap, &kubectl, &node, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(!stdout.contains("everything was collected"), "{stdout}");
    for f in [
        "ip-addr.json",
        "ip-route.json",
        "ip-rule.json",
        "iptables-save.txt",
    ] {
        assert!(!snap.join("nodes/node-a").join(f).exists(), "{f} written");
        assert!(
            stdout.contains(&format!("nodes/node-a/{f}: ")),
            "{f}: {stdout}"
        );
    }
    assert!(stdout.contains("not an iptables-save ruleset"), "{stdout}");
    // The good ones are kept.
    assert!(snap.join("nodes/node-a/sysctl.txt").is_file());
}

#[test]
fn a_timeout_kills_what_the_command_started() {
    let dir = temp_dir("orphans");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1")]);
    let kubectl = fake_kubectl(&dir, &fix);
    let pidfile = dir.join("sleep.pid");
    // A subshell's `sleep 1000`, its pid written down; the command waits for it.
    let node = fake_node(
        &dir,
        &format!(
            r#"  "ip -j rule") ( sleep 1000 & echo $! > '{}'; wait ) ;;"#,
            pidfile.display()
        ),
    );
    let snap = dir.join("snap");
    let out = collect_with(&snap, &kubectl, &node, &["--timeout", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("timed out after 1s"), "{stdout}");
    let pid = read(&pidfile).trim().to_string();
    assert!(!pid.is_empty());
    // Killed (and reaped by whoever inherited it): gone within a few seconds.
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let alive = || {
        std::fs::read_to_string(proc_dir.join("stat"))
            .is_ok_and(|s| !s.contains(") Z ") && s.contains("sleep"))
    };
    let start = std::time::Instant::now();
    while alive() && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let left = alive();
    if left {
        let _ = Command::new("kill").args(["-9", &pid]).status();
    }
    assert!(!left, "the subshell's sleep {pid} was left running");
}

#[test]
fn empty_nodes_and_zero_timeout_are_usage_errors() {
    let dir = temp_dir("usage");
    let fix = fixtures_with_nodes(&dir, &[("node-a", "10.0.0.1")]);
    let kubectl = fake_kubectl(&dir, &fix);
    let node = fake_node(&dir, "");
    let snap = dir.join("snap");
    for more in [
        &["--nodes", ""][..],
        &["--nodes", "node-a,"][..],
        &["--nodes", ","][..],
        &["--timeout", "0"][..],
    ] {
        let out = collect_with(&snap, &kubectl, &node, more);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{more:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!snap.join("nodes").exists(), "{more:?} collected nodes");
    }
}
