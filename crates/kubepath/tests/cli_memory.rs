//! Bounded memory for a large Kubernetes `List` (#11): `snapshot inspect` of a generated
//! ~16 MB `kubectl get pods -o yaml` / `-o json` List in a child whose address space is
//! limited (`ulimit -v`). Before the items were lowered one at a time (and JSON read without
//! saphyr-parser buffering the whole document) these needed 516 MB (YAML) and 332 MB (JSON)
//! of resident memory, and fail under the limits below; since, about 150 MB and 85 MB in a
//! release build (docs/PERFORMANCE.md, "A 64 MB Kubernetes List"). No timing is measured;
//! skipped where `sh` cannot set `ulimit -v`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A snapshot with `cluster/pods.<ext>` holding a List of Pods of about `bytes` bytes, in the
/// shape kubectl prints (keys sorted: `items` before `kind`). Returns the number of pods.
fn write_list(dir: &Path, json: bool, bytes: usize) -> usize {
    std::fs::create_dir_all(dir.join("cluster")).expect("mkdir");
    let mut t = String::with_capacity(bytes + 4096);
    let mut n = 0;
    if json {
        t.push_str("{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n");
    } else {
        t.push_str("apiVersion: v1\nitems:\n");
    }
    while t.len() < bytes {
        let i = n;
        let (a, b, c) = ((i >> 16) & 255, (i >> 8) & 255, i & 255);
        if json {
            if n > 0 {
                t.push_str(",\n");
            }
            let _ = write!(
                t,
                r#"        {{
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {{
                "labels": {{
                    "app": "web-{app}",
                    "pod-template-hash": "5dff4dcd48"
                }},
                "name": "web-{i}",
                "namespace": "ns-{ns}",
                "uid": "00000000-0000-0000-0000-{i:012}"
            }},
            "spec": {{
                "containers": [
                    {{
                        "image": "registry.example.com/web:1.2.3",
                        "name": "web",
                        "ports": [
                            {{
                                "containerPort": 8080,
                                "name": "http",
                                "protocol": "TCP"
                            }}
                        ]
                    }}
                ],
                "nodeName": "node-{node}"
            }},
            "status": {{
                "conditions": [
                    {{
                        "status": "True",
                        "type": "Ready"
                    }}
                ],
                "hostIP": "10.250.0.{node}",
                "phase": "Running",
                "podIP": "10.{a}.{b}.{c}"
            }}
        }}"#,
                app = i % 500,
                ns = i % 50,
                node = i % 200,
            );
        } else {
            let _ = write!(
                t,
                "- apiVersion: v1
  kind: Pod
  metadata:
    labels:
      app: web-{app}
      pod-template-hash: 5dff4dcd48
    name: web-{i}
    namespace: ns-{ns}
    uid: 00000000-0000-0000-0000-{i:012}
  spec:
    containers:
    - image: registry.example.com/web:1.2.3
      name: web
      ports:
      - containerPort: 8080
        name: http
        protocol: TCP
    nodeName: node-{node}
  status:
    conditions:
    - status: \"True\"
      type: Ready
    hostIP: 10.250.0.{node}
    phase: Running
    podIP: 10.{a}.{b}.{c}
",
                app = i % 500,
                ns = i % 50,
                node = i % 200,
            );
        }
        n += 1;
    }
    if json {
        t.push_str("\n    ],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n");
    } else {
        t.push_str("kind: List\nmetadata:\n  resourceVersion: \"\"\n");
    }
    let name = if json { "pods.json" } else { "pods.yaml" };
    std::fs::write(dir.join("cluster").join(name), t).expect("write the list");
    n
}

/// Whether `sh` can limit a child's address space here.
fn ulimit_works() -> bool {
    Command::new("sh")
        .args(["-c", "ulimit -v 4000000 && exec true"])
        .status()
        .is_ok_and(|s| s.success())
}

/// `kubepath snapshot inspect DIR` with at most `kib` KiB of address space.
fn inspect_limited(dir: &Path, kib: u64) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_kubepath"))
        .args(["snapshot", "inspect"])
        .arg(dir)
        .output()
        .expect("run sh")
}

fn check(json: bool, limit_kib: u64) {
    if !ulimit_works() {
        println!("skipped: `sh -c 'ulimit -v N'` is not available");
        return;
    }
    let dir = Scratch(std::env::temp_dir().join(format!(
        "kubepath-list-mem-{}-{}",
        if json { "json" } else { "yaml" },
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&dir.0);
    let pods = write_list(&dir.0, json, 16 << 20);
    let out = inspect_limited(&dir.0, limit_kib);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("pods: {pods} ")),
        "a 16 MB List of {pods} Pods ({}) within {limit_kib} KiB of address space: {}\n{stdout}\n{}",
        if json { "JSON" } else { "YAML" },
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The address-space limits, each about 1.5x what a debug build needs since the change
/// (bisected with `ulimit -v`: the YAML List loads within 200,000 KiB, the JSON one within
/// 150,000 KiB; peak RSS 157 MB and 90 MB), and well under what the code before it needed (the
/// release build of 3e233ad: peak RSS 516 MB and 332 MB; it failed under 400,000 and
/// 300,000 KiB).
const YAML_LIMIT_KIB: u64 = 320_000;
const JSON_LIMIT_KIB: u64 = 220_000;

#[test]
fn a_16_mb_yaml_list_loads_within_bounded_memory() {
    check(false, YAML_LIMIT_KIB);
}

#[test]
fn a_16_mb_json_list_loads_within_bounded_memory() {
    check(true, JSON_LIMIT_KIB);
}
