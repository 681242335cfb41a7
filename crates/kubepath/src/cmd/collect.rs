//! `kubepath collect --out DIR`: a snapshot (docs/snapshot.md) taken from a live cluster,
//! read-only (docs/collect.md).
//!
//! * Kubernetes objects through the user's `kubectl` (its context and credentials), one
//!   `kubectl get RESOURCE [-A] -o json` per kind into `cluster/RESOURCE.json`; kinds the
//!   cluster does not serve (`kubectl api-resources -o name`) are skipped with a note. Secrets
//!   are never asked for: every kubectl argument is checked before it is run. ConfigMaps are
//!   filtered: only the MetalLB/ECFE configuration and the ingress-nginx controllers'
//!   `--configmap` are written.
//! * Per node, the outputs the node readers read, through a command template (`ssh
//!   {address}`, `ip netns exec {name}`, ...) split into words once; the node's name and
//!   address are substituted inside words, never through a shell, and must look like a
//!   Kubernetes node name and an IP address.
//! * Router outputs are not collected: the commands to run per platform are printed.
//!
//! * Each command runs in its own process group (killed whole on timeout); a node command's
//!   output streams to its file (at most 256 MiB) and is checked for its shape.
//! * Files of an earlier run are never read as current: see `Stale`.
//!
//! A failure of one kind or one node command is reported and skipped. Exit 0 when everything
//! was collected, 1 when something is missing, 2 on bad usage or when kubectl is unusable.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use miette::miette;
use serde_json::Value;

use super::io::{esc, out};

#[derive(clap::Args, Debug)]
pub struct CollectArgs {
    /// The snapshot directory to write (created if missing; files of an earlier run are
    /// replaced, a file whose command now fails is removed, other files under cluster/ and
    /// the collected nodes' directories and the directories of nodes no longer in the
    /// cluster are moved to DIR/.stale/).
    #[arg(long)]
    pub out: PathBuf,
    /// The kubectl binary to run (its current context and credentials are used).
    #[arg(long, default_value = "kubectl")]
    pub kubectl: String,
    /// The kubeconfig context (`kubectl --context CTX`).
    #[arg(long)]
    pub context: Option<String>,
    /// How to run a command on a node: a template split into words (quotes as in a shell,
    /// but no shell runs it), `{name}` and `{address}` (the node's InternalIP) substituted
    /// inside words; the node command's words are appended. Examples: `ssh {address}`,
    /// `ssh core@{name} sudo`, `ip netns exec {name}`.
    #[arg(long, default_value = DEFAULT_NODE_CMD)]
    pub node_cmd: String,
    /// Only these nodes (comma-separated names of Node objects; an empty name is refused).
    #[arg(long, value_delimiter = ',', value_parser = nonempty_node_name)]
    pub nodes: Vec<String>,
    /// Collect the Kubernetes objects only, no node outputs.
    #[arg(long, conflicts_with = "nodes")]
    pub skip_nodes: bool,
    /// Seconds after which one command (kubectl or a node's) is killed and counted as failed.
    /// At least 1.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// A `--nodes` name: never empty (`--nodes ''` would otherwise mean every node).
fn nonempty_node_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err(
            "an empty node name (`--nodes` needs at least one name; leave it out for every node)"
                .into(),
        )
    } else {
        Ok(s.to_string())
    }
}

/// The default node template: ssh to the InternalIP, never prompting (a password prompt
/// would wait forever: nobody answers it).
pub const DEFAULT_NODE_CMD: &str = "ssh -o BatchMode=yes {address}";

/// One Kubernetes kind: the resources to ask for (the first one the cluster serves), the file
/// under `cluster/`, and whether it is namespaced (`-A`).
struct Kind {
    /// The object kind (`Ingress`): an empty answer is written as its typed list.
    kind: &'static str,
    resources: &'static [&'static str],
    file: &'static str,
    namespaced: bool,
}

/// Every kind collected, in order (ConfigMaps come last: the pods name the controllers'
/// `--configmap`). Never a Secret: `secret_free` checks every argument.
const KINDS: &[Kind] = &[
    Kind {
        kind: "Node",
        resources: &["nodes"],
        file: "nodes",
        namespaced: false,
    },
    Kind {
        kind: "Namespace",
        resources: &["namespaces"],
        file: "namespaces",
        namespaced: false,
    },
    Kind {
        kind: "Service",
        resources: &["services"],
        file: "services",
        namespaced: true,
    },
    Kind {
        kind: "Endpoints",
        resources: &["endpoints"],
        file: "endpoints",
        namespaced: true,
    },
    Kind {
        kind: "EndpointSlice",
        resources: &["endpointslices.discovery.k8s.io"],
        file: "endpointslices",
        namespaced: true,
    },
    Kind {
        kind: "Pod",
        resources: &["pods"],
        file: "pods",
        namespaced: true,
    },
    Kind {
        kind: "Ingress",
        resources: &["ingresses.networking.k8s.io", "ingresses.extensions"],
        file: "ingresses",
        namespaced: true,
    },
    Kind {
        kind: "IngressClass",
        resources: &["ingressclasses.networking.k8s.io"],
        file: "ingressclasses",
        namespaced: false,
    },
    Kind {
        kind: "IPAddressPool",
        resources: &["ipaddresspools.metallb.io"],
        file: "metallb-ipaddresspools",
        namespaced: true,
    },
    Kind {
        kind: "BGPPeer",
        resources: &["bgppeers.metallb.io"],
        file: "metallb-bgppeers",
        namespaced: true,
    },
    Kind {
        kind: "BGPAdvertisement",
        resources: &["bgpadvertisements.metallb.io"],
        file: "metallb-bgpadvertisements",
        namespaced: true,
    },
    Kind {
        kind: "L2Advertisement",
        resources: &["l2advertisements.metallb.io"],
        file: "metallb-l2advertisements",
        namespaced: true,
    },
    Kind {
        kind: "Community",
        resources: &["communities.metallb.io"],
        file: "metallb-communities",
        namespaced: true,
    },
    Kind {
        kind: "BFDProfile",
        resources: &["bfdprofiles.metallb.io"],
        file: "metallb-bfdprofiles",
        namespaced: true,
    },
];

/// The ConfigMaps resource: fetched whole, filtered before anything is written.
const CONFIGMAPS: &str = "configmaps";

/// One node command: the file under `nodes/<node>/` and the words appended to the template.
struct NodeCmd {
    file: &'static str,
    argv: &'static [&'static str],
}

/// What the node readers read (docs/formats.md), as the lab collects it.
const NODE_CMDS: &[NodeCmd] = &[
    NodeCmd {
        file: "ip-addr.json",
        argv: &["ip", "-j", "addr"],
    },
    NodeCmd {
        file: "ip-route.json",
        argv: &["ip", "-j", "route", "show", "table", "all"],
    },
    NodeCmd {
        file: "ip-rule.json",
        argv: &["ip", "-j", "rule"],
    },
    NodeCmd {
        file: "iptables-save.txt",
        argv: &["iptables-save"],
    },
    NodeCmd {
        file: "ip6tables-save.txt",
        argv: &["ip6tables-save"],
    },
    NodeCmd {
        file: "ipset-save.txt",
        argv: &["ipset", "save"],
    },
    // Every nftables table of every family: kube-proxy's nftables mode, firewalld, Calico or
    // Cilium in nft mode, and (on iptables-nft nodes) the xtables tables iptables-save also
    // shows, which the loader compares with it (docs/snapshot.md).
    NodeCmd {
        file: "nft-ruleset.txt",
        argv: &["nft", "list", "ruleset"],
    },
    NodeCmd {
        file: "sysctl.txt",
        argv: &["sysctl", "-a"],
    },
];

/// iptables-nft's note that iptables-legacy holds rules too: those are then dumped as well.
const LEGACY_WARNING: &str = "# Warning: iptables-legacy tables present";

/// The first words of a MetalLB (≤ 0.12) or ECFE `config` key (docs/snapshot.md).
const LB_CONFIG_KEYS: &[&str] = &[
    "peers:",
    "bgp-bfd-peers:",
    "address-pools:",
    "bgp-communities:",
    "bfd-profiles:",
];

/// The manifest written when the snapshot has none.
const MANIFEST_SKELETON: &str = "\
apiVersion: kubepath.dev/v1
kind: Manifest

# Written by `kubepath collect`. What cannot be collected from the cluster goes here
# (docs/snapshot.md, \"The manifest\").
#
# Where external clients enter the fabric, one entry per client network, e.g.
#   - name: office-lan
#     prefixes: [10.210.150.80/28]
#     entry:
#       - router: LEAF-A
#         vrf: VRF_NAME
# Without an entry, clients enter at every router whose VRF has a default route.
clients: []
";

/// What the run found, for the summary.
#[derive(Default)]
struct Outcome {
    /// Files written, relative to the snapshot root.
    written: Vec<String>,
    /// What could not be collected (each one makes the exit code 1).
    missing: Vec<String>,
    /// Things worth knowing that are not missing data (kinds the cluster does not serve ...).
    notes: Vec<String>,
}

/// Progress lines on stderr, only when it is a terminal.
struct Progress {
    on: bool,
}

impl Progress {
    fn line(&self, s: &str) {
        if self.on {
            super::io::err(&format!("{}\n", esc(s)));
        }
    }
}

pub fn run(a: CollectArgs) -> miette::Result<ExitCode> {
    let template = parse_template(&a.node_cmd)?;
    let timeout = Duration::from_secs(a.timeout);
    if a.timeout == 0 {
        return Err(miette!("--timeout must be at least 1"));
    }
    std::fs::create_dir_all(&a.out)
        .map_err(|e| miette!("cannot create {}: {e}", esc(&a.out.display().to_string())))?;
    let progress = Progress {
        on: std::io::stderr().is_terminal(),
    };
    let mut o = Outcome::default();
    let kubectl = Kubectl {
        bin: &a.kubectl,
        context: a.context.as_deref(),
        timeout,
    };

    // kubectl must work at all: the served resources are the first question.
    progress.line("kubectl api-resources -o name");
    let (served, note) = kubectl.api_resources()?;
    o.notes.extend(note);

    let cluster = a.out.join("cluster");
    std::fs::create_dir_all(&cluster)
        .map_err(|e| miette!("cannot create {}: {e}", esc(&cluster.display().to_string())))?;
    let mut nodes_json: Option<Value> = None;
    let mut pods_json: Option<Value> = None;
    for k in KINDS {
        let rel = format!("cluster/{}.json", k.file);
        let Some(res) = k.resources.iter().find(|r| served.contains(**r)) else {
            remove_stale(&a.out, &rel);
            o.notes.push(format!(
                "{}: not served by this cluster (not in `kubectl api-resources`), skipped",
                k.resources.join(" / ")
            ));
            continue;
        };
        progress.line(&format!("kubectl get {res}"));
        match kubectl.get(res, k.namespaced) {
            Ok((bytes, v)) => {
                write_file(&a.out, &rel, &typed_if_empty(bytes, &v, k.kind), &mut o);
                if k.file == "nodes" {
                    nodes_json = Some(v);
                } else if k.file == "pods" {
                    pods_json = Some(v);
                }
            }
            Err(e) => {
                remove_stale(&a.out, &rel);
                o.missing.push(format!("{rel}: {e}"));
            }
        }
    }
    collect_configmaps(
        &a.out,
        &kubectl,
        &served,
        pods_json.as_ref(),
        &progress,
        &mut o,
    );
    drop(pods_json);
    let stale = Stale::new(&a.out);
    // A file under cluster/ that this run did not write (an earlier snapshot's) is not the
    // cluster's now.
    stale.tidy_dir("cluster", &cluster_files(), &mut o);

    let mut collected: BTreeSet<String> = BTreeSet::new();
    if a.skip_nodes {
        o.notes
            .push("node outputs not collected (--skip-nodes)".to_string());
    } else {
        match &nodes_json {
            None => o.missing.push(
                "nodes/: the Node objects could not be read, so no node was reached".to_string(),
            ),
            Some(v) => {
                let nodes = select_nodes(node_list(v), &a.nodes, &mut o);
                for (i, n) in nodes.iter().enumerate() {
                    progress.line(&format!("node {} ({}/{})", n.name, i + 1, nodes.len()));
                    collect_node(&a.out, &template, n, timeout, &progress, &mut o);
                    if valid_node_name(&n.name) {
                        // What an earlier run left there (or another tool) is not this node's
                        // now, whether or not the node was reached.
                        stale.tidy_dir(&format!("nodes/{}", n.name), &node_files(), &mut o);
                        collected.insert(n.name.clone());
                    }
                }
            }
        }
    }
    let in_cluster: Option<BTreeSet<String>> = nodes_json
        .as_ref()
        .map(|v| node_list(v).into_iter().map(|n| n.name).collect());
    stale.tidy_nodes(in_cluster.as_ref(), &collected, &mut o);

    let manifest = a.out.join("kubepath.yaml");
    if !manifest.exists() {
        write_file(
            &a.out,
            "kubepath.yaml",
            MANIFEST_SKELETON.as_bytes(),
            &mut o,
        );
    }

    out(&summary(&a.out, &o));
    Ok(if o.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

// ---------------------------------------------------------------------------------------------
// kubectl
// ---------------------------------------------------------------------------------------------

struct Kubectl<'a> {
    bin: &'a str,
    context: Option<&'a str>,
    timeout: Duration,
}

impl Kubectl<'_> {
    fn argv(&self, args: &[&str]) -> Result<Vec<String>, String> {
        let mut v = vec![self.bin.to_string()];
        if let Some(c) = self.context {
            v.push("--context".into());
            v.push(c.to_string());
        }
        v.extend(args.iter().map(|s| s.to_string()));
        // Never a Secret, whatever a future edit of KINDS says.
        if !secret_free(&v[1..]) {
            return Err("refusing a kubectl command that names secrets".into());
        }
        Ok(v)
    }

    /// `kubectl api-resources -o name`: the resources the cluster serves.
    fn api_resources(&self) -> miette::Result<(BTreeSet<String>, Option<String>)> {
        let argv = self
            .argv(&["api-resources", "-o", "name"])
            .map_err(|e| miette!("{e}"))?;
        let r = run_argv(&argv, self.timeout);
        let served: BTreeSet<String> = String::from_utf8_lossy(&r.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        // An aggregated API that is down makes api-resources fail after printing the rest:
        // what it printed is used (with a note), and the kinds it did not list are skipped.
        // Without even `nodes` kubectl is not talking to a cluster.
        if !served.contains("nodes") {
            let why = if r.error.is_some() {
                r.describe()
            } else {
                "did not list `nodes`".to_string()
            };
            return Err(miette!(
                "kubectl is not usable: `{}` {}",
                esc(&argv.join(" ")),
                esc(&why)
            ));
        }
        let note = r.error.is_some().then(|| {
            format!(
                "`kubectl api-resources -o name` {} (the resources it listed are used)",
                r.describe()
            )
        });
        Ok((served, note))
    }

    /// `kubectl get RESOURCE [-A] -o json`: the bytes as printed and the parsed value.
    fn get(&self, resource: &str, namespaced: bool) -> Result<(Vec<u8>, Value), String> {
        let mut args = vec!["get", resource];
        if namespaced {
            args.push("-A");
        }
        args.extend(["-o", "json"]);
        let argv = self.argv(&args)?;
        let r = run_argv(&argv, self.timeout);
        if r.error.is_some() {
            return Err(format!("`{}` {}", argv[1..].join(" "), r.describe()));
        }
        let v: Value = serde_json::from_slice(&r.stdout)
            .map_err(|e| format!("`{}` printed no JSON ({e})", argv[1..].join(" ")))?;
        Ok((r.stdout, v))
    }
}

/// kubectl prints an empty answer as `kind: List`, which says nothing of the kind asked for:
/// the snapshot would read it as "not collected" (docs/snapshot.md). An empty answer is
/// written as the typed list (`IngressList`), which says "collected, none"; any other answer
/// is written as printed.
fn typed_if_empty(bytes: Vec<u8>, v: &Value, kind: &str) -> Vec<u8> {
    let empty = v["kind"] == "List" && v["items"].as_array().is_some_and(Vec::is_empty);
    if !empty {
        return bytes;
    }
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), Value::from(format!("{kind}List")));
    }
    serde_json::to_vec_pretty(&v).unwrap_or(bytes)
}

/// No argument names secrets (`secrets`, `secret`, `secrets.v1.`, `secret/NAME` ...).
pub fn secret_free<S: AsRef<str>>(args: &[S]) -> bool {
    args.iter()
        .all(|a| !a.as_ref().to_ascii_lowercase().contains("secret"))
}

/// ConfigMaps: every one is fetched (kubectl cannot filter by content), only those kubepath
/// reads are written: a `config` key holding MetalLB's or ECFE's configuration, and those a
/// pod names with `--configmap=NS/NAME` (ingress-nginx controllers). The rest (possibly
/// credentials in the wrong kind) never reach the disk.
fn collect_configmaps(
    root: &Path,
    kubectl: &Kubectl<'_>,
    served: &BTreeSet<String>,
    pods: Option<&Value>,
    progress: &Progress,
    o: &mut Outcome,
) {
    let rel = "cluster/configmaps.json";
    if !served.contains(CONFIGMAPS) {
        remove_stale(root, rel);
        o.notes
            .push("configmaps: not served by this cluster, skipped".to_string());
        return;
    }
    progress.line("kubectl get configmaps (filtered)");
    let v = match kubectl.get(CONFIGMAPS, true) {
        Ok((_, v)) => v,
        Err(e) => {
            remove_stale(root, rel);
            o.missing.push(format!("{rel}: {e}"));
            return;
        }
    };
    let named = pods.map(controller_configmaps).unwrap_or_default();
    let (kept, dropped) = filter_configmaps(v, &named);
    let kept_n = kept["items"].as_array().map_or(0, Vec::len);
    match serde_json::to_vec_pretty(&kept) {
        Ok(bytes) => write_file(root, rel, &typed_if_empty(bytes, &kept, "ConfigMap"), o),
        Err(e) => o.missing.push(format!("{rel}: {e}")),
    }
    o.notes.push(format!(
        "configmaps: {kept_n} written (MetalLB/ECFE configuration, ingress-nginx --configmap), {dropped} not written"
    ));
    for (ns, name) in &named {
        let found = kept["items"].as_array().into_iter().flatten().any(|c| {
            c["metadata"]["namespace"].as_str() == Some(ns.as_str())
                && c["metadata"]["name"].as_str() == Some(name.as_str())
        });
        if !found {
            o.notes.push(format!(
                "configmap {ns}/{name}: named by a pod's --configmap but not in the cluster"
            ));
        }
    }
}

/// Is this container an ingress-nginx controller? As the trace recognises it (sim's ingress
/// controller): it runs `/nginx-ingress-controller`, or its image is ingress-nginx's.
fn ingress_nginx_container(c: &Value) -> bool {
    let runs = ["command", "args"]
        .iter()
        .flat_map(|k| c[*k].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .any(|a| a.ends_with("/nginx-ingress-controller") || a == "nginx-ingress-controller");
    let image = c["image"].as_str().unwrap_or("");
    let without_digest = image.split('@').next().unwrap_or("");
    // The repository: the tag (after the last `:` not followed by a `/`) dropped.
    let repo = match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    };
    runs || repo.ends_with("ingress-nginx/controller")
        || repo.ends_with("nginx-ingress-controller")
        || repo.ends_with("ingress-nginx/controller-chroot")
}

/// The `--configmap=NS/NAME` (or `--configmap NS/NAME`) of every ingress-nginx controller
/// container: another pod's `--configmap` (an application's own flag) names nothing kubepath
/// reads, and is not written.
fn controller_configmaps(pods: &Value) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for p in pods["items"].as_array().into_iter().flatten() {
        let pod_ns = p["metadata"]["namespace"].as_str().unwrap_or("");
        for c in p["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| ingress_nginx_container(c))
        {
            // As the trace reads them (sim's ingress controller): `$(POD_NAMESPACE)` is the
            // pod's namespace.
            let words: Vec<String> = ["command", "args"]
                .iter()
                .flat_map(|k| c[*k].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .map(|w| w.replace("$(POD_NAMESPACE)", pod_ns))
                .collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            for (i, w) in words.iter().enumerate() {
                let val = if let Some(v) = w.strip_prefix("--configmap=") {
                    Some(v)
                } else if *w == "--configmap" {
                    words.get(i + 1).copied()
                } else {
                    None
                };
                if let Some((ns, name)) = val.and_then(|v| v.split_once('/')) {
                    set.insert((ns.to_string(), name.to_string()));
                }
            }
        }
    }
    set
}

/// `list` (a ConfigMapList) with only the ConfigMaps kubepath reads; the number dropped.
fn filter_configmaps(list: Value, named: &BTreeSet<(String, String)>) -> (Value, usize) {
    let mut list = list;
    let items = match list.get_mut("items").and_then(Value::as_array_mut) {
        Some(items) => std::mem::take(items),
        None => Vec::new(),
    };
    let total = items.len();
    let kept: Vec<Value> = items
        .into_iter()
        .filter(|c| {
            let ns = c["metadata"]["namespace"].as_str().unwrap_or("");
            let name = c["metadata"]["name"].as_str().unwrap_or("");
            named.contains(&(ns.to_string(), name.to_string()))
                || c["data"]["config"].as_str().is_some_and(|cfg| {
                    cfg.lines()
                        .any(|l| LB_CONFIG_KEYS.iter().any(|k| l.starts_with(k)))
                })
        })
        .collect();
    let dropped = total - kept.len();
    if let Some(obj) = list.as_object_mut() {
        obj.insert("items".into(), Value::Array(kept));
    }
    (list, dropped)
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/// A node to reach: its name and InternalIP (if it has one).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRef {
    pub name: String,
    pub address: Option<String>,
}

/// The nodes of a NodeList: `metadata.name` and the first `InternalIP`.
fn node_list(v: &Value) -> Vec<NodeRef> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let name = n["metadata"]["name"].as_str()?.to_string();
            let address = n["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str())
                .map(str::to_string);
            Some(NodeRef { name, address })
        })
        .collect()
}

/// The nodes to reach: `--nodes` or all; a name that is no Node object is missing.
fn select_nodes(all: Vec<NodeRef>, wanted: &[String], o: &mut Outcome) -> Vec<NodeRef> {
    let wanted: Vec<&String> = wanted.iter().filter(|w| !w.is_empty()).collect();
    if wanted.is_empty() {
        return all;
    }
    for w in &wanted {
        if !all.iter().any(|n| &&n.name == w) {
            o.missing.push(format!(
                "node {}: not among the cluster's Node objects",
                esc(w)
            ));
        }
    }
    all.into_iter()
        .filter(|n| wanted.iter().any(|w| **w == n.name))
        .collect()
}

/// A Kubernetes node name (an RFC 1123 subdomain: lower-case letters, digits, `-` and `.`,
/// starting and ending with a letter or digit, at most 253 characters). The name becomes a
/// directory and a word of the node command: anything else (`a;rm -rf /`, `-oProxyCommand=`,
/// `../x`) is refused.
pub fn valid_node_name(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && s.chars().next().is_some_and(alnum)
        && s.chars().last().is_some_and(alnum)
        && !s.contains("..")
}

fn collect_node(
    root: &Path,
    template: &[String],
    n: &NodeRef,
    timeout: Duration,
    progress: &Progress,
    o: &mut Outcome,
) {
    if !valid_node_name(&n.name) {
        o.missing.push(format!(
            "node {}: not a valid Kubernetes node name, not reached",
            esc(&n.name)
        ));
        return;
    }
    let address = match &n.address {
        Some(a) if a.parse::<std::net::IpAddr>().is_ok() => Some(a.as_str()),
        Some(a) => {
            if uses(template, "{address}") {
                o.missing.push(format!(
                    "node {}: InternalIP {} is not an IP address, not reached",
                    n.name,
                    esc(a)
                ));
                return;
            }
            None
        }
        None => None,
    };
    if address.is_none() && uses(template, "{address}") {
        o.missing.push(format!(
            "node {}: no InternalIP for {{address}}, not reached",
            n.name
        ));
        return;
    }
    let prefix = expand(template, &n.name, address.unwrap_or(""));
    let mut failures = 0;
    let mut bad = 0;
    // Each command's output streams to its file (at most NODE_OUTPUT_CAP bytes); a failed
    // command leaves no file. Returns whether the file was written.
    let mut run_one = |file: &str, argv: &[&str], o: &mut Outcome| -> bool {
        let rel = format!("nodes/{}/{file}", n.name);
        let mut full = prefix.clone();
        full.extend(argv.iter().map(|s| s.to_string()));
        let (r, wrote) = match create_file(root, &rel) {
            Ok(f) => {
                let (r, sink) = run_into(&full, timeout, f, NODE_OUTPUT_CAP);
                (r, sink.is_some())
            }
            Err(e) => (
                RunResult {
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    error: Some(format!("cannot write {rel} ({e})")),
                },
                false,
            ),
        };
        let size = std::fs::symlink_metadata(root.join(&rel)).map_or(0, |m| m.len());
        // `sysctl -a` fails on a key it may not read, after printing the rest.
        let partial_ok = argv.first() == Some(&"sysctl")
            && size > 0
            && r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("failed ("));
        if wrote && (r.error.is_none() || partial_ok) {
            if r.error.is_some() {
                o.notes.push(format!(
                    "{rel}: `{}` {} (its output is kept)",
                    argv.join(" "),
                    r.describe()
                ));
            }
            true
        } else {
            failures += 1;
            remove_stale(root, &rel);
            let msg = format!("{rel}: `{}` {}", esc(&full.join(" ")), esc(&r.describe()));
            progress.line(&format!("  failed: {msg}"));
            o.missing.push(msg);
            false
        }
    };
    for c in NODE_CMDS {
        if !run_one(c.file, c.argv, o) {
            continue;
        }
        let rel = format!("nodes/{}/{}", n.name, c.file);
        let path = root.join(&rel);
        if c.argv[0] == "sysctl" {
            let bytes = std::fs::read(&path).map(|b| net_sysctls(&b));
            match bytes {
                Ok(b) => {
                    let before = o.written.len();
                    write_file(root, &rel, &b, o);
                    o.written.truncate(before);
                }
                Err(e) => {
                    remove_stale(root, &rel);
                    o.missing.push(format!("{rel}: cannot read back ({e})"));
                    continue;
                }
            }
        }
        let blank = match std::fs::read(&path) {
            Ok(b) => b.iter().all(u8::is_ascii_whitespace),
            Err(_) => false,
        };
        if blank {
            // `ipset save` without sets, `ip6tables-save` without tables: nothing to read, and
            // an empty file would be "not recognised".
            remove_stale(root, &rel);
            o.notes.push(format!(
                "{rel}: `{}` printed nothing (nothing loaded): not written",
                c.argv.join(" ")
            ));
            continue;
        }
        if let Err(e) = check_shape(c.file, &path) {
            bad += 1;
            remove_stale(root, &rel);
            o.missing.push(format!(
                "{rel}: `{}` {e}: not written",
                esc(&prefix
                    .iter()
                    .map(String::as_str)
                    .chain(c.argv.iter().copied())
                    .collect::<Vec<_>>()
                    .join(" "))
            ));
            continue;
        }
        o.written.push(rel.clone());
        // iptables-nft says when iptables-legacy holds rules too: dump those as well.
        if c.argv[0].ends_with("tables-save") && file_contains(&path, LEGACY_WARNING) {
            let legacy = c.argv[0].replace("tables-save", "tables-legacy-save");
            let file = format!("{legacy}.txt");
            if run_one(&file, &[legacy.as_str()], o) {
                let lrel = format!("nodes/{}/{file}", n.name);
                match check_shape(&file, &root.join(&lrel)) {
                    Ok(()) => o.written.push(lrel),
                    Err(e) => {
                        bad += 1;
                        remove_stale(root, &lrel);
                        o.missing
                            .push(format!("{lrel}: `{legacy}` {e}: not written"));
                    }
                }
            }
        }
    }
    let failures = failures + bad;
    progress.line(&format!(
        "  {}: {}",
        n.name,
        if failures == 0 {
            "ok".to_string()
        } else {
            format!("{failures} command(s) failed")
        }
    ));
}

/// A cheap check that a node output is what its reader reads: `ip -j` prints a JSON array;
/// `iptables-save` a `*table` line, every line a table, chain, rule, `COMMIT` or comment;
/// `ipset save` `create`/`add` lines; `sysctl -a` (its `net.` lines) `key = value`. A command
/// that printed something else (a wrapper's banner, `yes`) fails.
fn check_shape(file: &str, path: &Path) -> Result<(), String> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read back its output ({e})"))?;
    let mut r = std::io::BufReader::new(f);
    if file.ends_with(".json") {
        let first = loop {
            let buf = r
                .fill_buf()
                .map_err(|e| format!("cannot read back ({e})"))?;
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => break Some(buf[i]),
                None if buf.is_empty() => break None,
                None => {
                    let n = buf.len();
                    r.consume(n);
                }
            }
        };
        if first != Some(b'[') {
            return Err("printed no JSON array (not `ip -j` output)".into());
        }
        // Checked without building it: nothing is kept in memory.
        return serde_json::from_reader::<_, serde::de::IgnoredAny>(r)
            .map(|_| ())
            .map_err(|e| format!("printed no valid JSON ({e})"));
    }
    if file.starts_with("nft") {
        return check_nft_shape(r);
    }
    let table_like = file.contains("tables-");
    let mut tables = 0usize;
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        // A line is at most 1 MiB: longer is no ruleset, sysctl or ipset line.
        let got = (&mut r)
            .take(1 << 20)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read back ({e})"))?;
        if got == 0 {
            break;
        }
        n += 1;
        if line.len() >= 1 << 20 && line.last() != Some(&b'\n') {
            return Err(format!("printed a line over 1 MiB (line {n})"));
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let ok = if table_like {
            if l.starts_with('*') {
                tables += 1;
            }
            l.starts_with('*') || l.starts_with(':') || l.starts_with('-') || l == "COMMIT"
        } else if file.starts_with("ipset") {
            l.starts_with("create ") || l.starts_with("add ")
        } else {
            l.contains(" = ") || l.starts_with("sysctl:") || l.starts_with("net.")
        };
        if !ok {
            let what = if table_like {
                "an iptables-save ruleset"
            } else if file.starts_with("ipset") {
                "`ipset save` output"
            } else {
                "`sysctl` output"
            };
            return Err(format!(
                "printed something that is not {what} (line {n}: {})",
                super::io::clip(l, 60)
            ));
        }
    }
    if table_like && tables == 0 {
        return Err("printed no `*table` line (not an iptables-save ruleset)".into());
    }
    Ok(())
}

/// `nft list ruleset`: every line outside a table is a `table FAMILY NAME {` line, a comment
/// or blank, and there is at least one table (its reader checks the rest).
fn check_nft_shape(r: impl std::io::BufRead) -> Result<(), String> {
    let mut depth = 0usize;
    let mut tables = 0usize;
    for (i, line) in r.split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("cannot read back ({e})"))?;
        if line.len() >= 1 << 20 {
            return Err(format!("printed a line over 1 MiB (line {})", i + 1));
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim();
        if depth == 0 && !l.is_empty() && !l.starts_with('#') {
            if !l.starts_with("table ") {
                return Err(format!(
                    "printed something that is not `nft list ruleset` output (line {}: {})",
                    i + 1,
                    super::io::clip(l, 60)
                ));
            }
            tables += 1;
        }
        // Braces inside quoted comments do not count.
        let mut quoted = false;
        for c in l.chars() {
            match c {
                '"' => quoted = !quoted,
                '{' if !quoted => depth += 1,
                '}' if !quoted => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    if tables == 0 {
        return Err("printed no `table` (not `nft list ruleset` output)".into());
    }
    Ok(())
}

/// Whether the file (at most NODE_OUTPUT_CAP bytes) holds `needle`.
fn file_contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
}

/// The `net.*` lines of `sysctl -a` (and its `permission denied` notes): what the readers use.
fn net_sysctls(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut s = String::new();
    for l in text.lines() {
        if l.starts_with("net.") || l.starts_with("sysctl:") {
            s.push_str(l);
            s.push('\n');
        }
    }
    s.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// The node template
// ---------------------------------------------------------------------------------------------

/// The template's words, split as a shell splits words (blanks, `'...'`, `"..."` with `\"`
/// and `\\`, a backslash outside quotes) but never run by a shell. It must name the node
/// (`{name}` or `{address}`): otherwise every node's command would reach the same host.
pub fn parse_template(t: &str) -> miette::Result<Vec<String>> {
    let words = split_words(t).map_err(|e| miette!("--node-cmd: {e}"))?;
    if words.is_empty() {
        return Err(miette!("--node-cmd is empty"));
    }
    if !uses(&words, "{name}") && !uses(&words, "{address}") {
        return Err(miette!(
            "--node-cmd `{}` names no node: put {{name}} or {{address}} in it",
            esc(t)
        ));
    }
    Ok(words)
}

fn uses(words: &[String], placeholder: &str) -> bool {
    words.iter().any(|w| w.contains(placeholder))
}

/// The template's words with `{name}` and `{address}` replaced inside each word: a value
/// never adds or splits a word, whatever it holds.
pub fn expand(words: &[String], name: &str, address: &str) -> Vec<String> {
    words
        .iter()
        .map(|w| w.replace("{name}", name).replace("{address}", address))
        .collect()
}

fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err("a trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

// ---------------------------------------------------------------------------------------------
// Running commands and writing files
// ---------------------------------------------------------------------------------------------

struct RunResult {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Why the command failed (not started, exit status, timeout); `None`: exit 0.
    error: Option<String>,
}

impl RunResult {
    /// The failure and the first line of stderr.
    fn describe(&self) -> String {
        let err = String::from_utf8_lossy(&self.stderr);
        let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let what = self.error.as_deref().unwrap_or("succeeded");
        if first.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {}", super::io::clip(first.trim(), 200))
        }
    }
}

/// The most a kubectl answer may print (kept in memory).
const KUBECTL_OUTPUT_CAP: u64 = 4 << 30;

/// The most one node command may print (streamed to its file): over it, the command is
/// killed and counted as failed.
pub const NODE_OUTPUT_CAP: u64 = 256 << 20;

/// Runs `argv` directly (no shell), stdin closed, killed after `timeout`; stdout in memory.
fn run_argv(argv: &[String], timeout: Duration) -> RunResult {
    let (mut r, buf) = run_into(argv, timeout, Vec::new(), KUBECTL_OUTPUT_CAP);
    r.stdout = buf.unwrap_or_default();
    r
}

/// Kills the process group `pgid` (the command and everything it started that stayed in
/// its group).
fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is shared.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Runs `argv` directly (no shell), stdin closed, in its own process group, its stdout copied
/// into `sink` (at most `cap` bytes: over it the command is killed and failed). After
/// `timeout` (counted from the start, while the output is being read as well) the whole group
/// is killed. The sink is returned when the output was read to its end (the command may still
/// have failed: see `error`); `RunResult::stdout` stays empty.
fn run_into<W: std::io::Write + Send + 'static>(
    argv: &[String],
    timeout: Duration,
    sink: W,
    cap: u64,
) -> (RunResult, Option<W>) {
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let fail = |e: String| RunResult {
        stdout: Vec::new(),
        stderr: Vec::new(),
        error: Some(e),
    };
    let Some((prog, rest)) = argv.split_first() else {
        return (fail("empty command".into()), None);
    };
    let mut child = match Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (fail(format!("could not be started ({e})")), None),
    };
    let pgid = child.id();
    // Each pipe is read by a thread that sends what it read: after a timeout, a process left
    // outside the group (ssh's remote side ...) may still hold the pipe open, and is not
    // waited for.
    let over = Arc::new(AtomicBool::new(false));
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let out_pipe = child.stdout.take();
    let over_t = Arc::clone(&over);
    std::thread::spawn(move || {
        let mut sink = sink;
        let mut res: Result<(), String> = Ok(());
        if let Some(mut p) = out_pipe {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total: u64 = 0;
            loop {
                match p.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        total += n as u64;
                        if total > cap {
                            over_t.store(true, Ordering::SeqCst);
                            res = Err(format!("output over {cap} bytes"));
                            break;
                        }
                        if let Err(e) = sink.write_all(&buf[..n]) {
                            res = Err(format!("its output could not be written ({e})"));
                            over_t.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        res = Err(format!("its output could not be read ({e})"));
                        break;
                    }
                }
            }
        }
        let res = res.and_then(|()| {
            sink.flush()
                .map_err(|e| format!("its output could not be written ({e})"))
        });
        let _ = out_tx.send((sink, res));
    });
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    let err_pipe = child.stderr.take();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe {
            // Only the first line is shown: a little is enough.
            let _ = p.take(64 * 1024).read_to_end(&mut buf);
        }
        let _ = err_tx.send(buf);
    });
    let start = Instant::now();
    let status = loop {
        if over.load(Ordering::SeqCst) {
            kill_group(pgid);
            let _ = child.kill();
            let _ = child.wait();
            break Err(String::new());
        }
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if start.elapsed() >= timeout => {
                kill_group(pgid);
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                kill_group(pgid);
                break Err(format!("could not be waited for ({e})"));
            }
        }
    };
    // Exited: the pipe closes unless a process it left behind holds it; the timeout still
    // runs (at least a second more).
    let grace = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_secs(1));
    let got = out_rx.recv_timeout(grace);
    if got.is_err() {
        kill_group(pgid);
    }
    let stderr = err_rx
        .recv_timeout(Duration::from_millis(200))
        .unwrap_or_default();
    let mut error = match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("failed ({s})")),
        Err(e) if e.is_empty() => None,
        Err(e) => Some(e),
    };
    // Output cut short is no output: a partial ruleset must not pass for the node's.
    let sink = match got {
        Ok((sink, Ok(()))) => Some(sink),
        Ok((_, Err(e))) => {
            // Over the cap (or not writable): that is the failure, whatever the exit status.
            error = Some(e);
            None
        }
        Err(_) => {
            error.get_or_insert_with(|| {
                format!(
                    "exited, but its output was still open after {}s (a process it left behind?)",
                    grace.as_secs()
                )
            });
            None
        }
    };
    let r = RunResult {
        stdout: Vec::new(),
        stderr,
        error,
    };
    (r, sink)
}

/// The files collect writes under `cluster/`.
fn cluster_files() -> BTreeSet<String> {
    KINDS
        .iter()
        .map(|k| format!("{}.json", k.file))
        .chain([format!("{CONFIGMAPS}.json")])
        .collect()
}

/// The files collect writes under `nodes/<node>/`.
fn node_files() -> BTreeSet<String> {
    NODE_CMDS
        .iter()
        .map(|c| c.file.to_string())
        .chain(
            ["iptables-legacy-save.txt", "ip6tables-legacy-save.txt"]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect()
}

/// Files of an earlier snapshot that this run did not write: a file under a name collect
/// writes is removed (itself: a symbolic link is never followed); anything else is moved to
/// `DIR/.stale/<seconds since 1970>/` (the snapshot loader skips hidden directories), never
/// deleted.
struct Stale<'a> {
    root: &'a Path,
    stamp: String,
}

impl<'a> Stale<'a> {
    fn new(root: &'a Path) -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Stale {
            root,
            stamp: secs.to_string(),
        }
    }

    /// `rel` (a file, a directory or a link) moved under `.stale/`, with a note; when it
    /// cannot be moved, it is missing (it would be read as current).
    fn move_aside(&self, rel: &str, why: &str, o: &mut Outcome) {
        let to_rel = format!(".stale/{}/{rel}", self.stamp);
        let res = make_dirs(self.root, &to_rel)
            .and_then(|_| std::fs::rename(self.root.join(rel), self.root.join(&to_rel)));
        match res {
            Ok(()) => o
                .notes
                .push(format!("{rel}: {why}: moved to {to_rel} (not read)")),
            Err(e) => o.missing.push(format!(
                "{rel}: {why}, and it could not be moved aside ({e}): remove it by hand"
            )),
        }
    }

    /// In `dir_rel`, every entry this run did not write: a known name removed, the rest moved
    /// aside. Hidden entries are left (the loader skips them). A link in place of the
    /// directory is moved aside.
    fn tidy_dir(&self, dir_rel: &str, known: &BTreeSet<String>, o: &mut Outcome) {
        let dir = self.root.join(dir_rel);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                self.move_aside(dir_rel, "not a directory", o);
                return;
            }
            Err(_) => return,
        }
        let written: BTreeSet<&str> = o
            .written
            .iter()
            .filter_map(|w| w.strip_prefix(dir_rel)?.strip_prefix('/'))
            .collect();
        let mut remove = Vec::new();
        let mut aside = Vec::new();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                aside.push(e.file_name().to_string_lossy().into_owned());
                continue;
            };
            if name.starts_with('.') || written.contains(name.as_str()) {
                continue;
            }
            let is_file_or_link = std::fs::symlink_metadata(e.path())
                .is_ok_and(|m| m.is_file() || m.file_type().is_symlink());
            if known.contains(&name) && is_file_or_link {
                remove.push(name);
            } else {
                aside.push(name);
            }
        }
        for name in remove {
            let _ = std::fs::remove_file(dir.join(&name));
        }
        for name in aside {
            self.move_aside(
                &format!("{dir_rel}/{name}"),
                "not written by this collection",
                o,
            );
        }
    }

    /// `nodes/`: the directory of a node no longer in the cluster is moved aside; that of a
    /// node not collected this time (`--nodes`, `--skip-nodes`, Node objects unreadable) is
    /// kept, and the summary says it is from an earlier collection.
    fn tidy_nodes(
        &self,
        in_cluster: Option<&BTreeSet<String>>,
        collected: &BTreeSet<String>,
        o: &mut Outcome,
    ) {
        let nodes = self.root.join("nodes");
        match std::fs::symlink_metadata(&nodes) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                self.move_aside("nodes", "not a directory", o);
                return;
            }
            Err(_) => return,
        }
        let mut names: Vec<String> = std::fs::read_dir(&nodes)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            if collected.contains(&name) {
                continue;
            }
            let rel = format!("nodes/{name}");
            match in_cluster {
                Some(all) if !all.contains(&name) => {
                    self.move_aside(&rel, "no such Node in the cluster now", o);
                }
                _ => o.notes.push(format!(
                    "{rel}/: from an earlier collection (not collected this time), kept"
                )),
            }
        }
    }
}

/// The directories of `root/rel` (its last part is a file) created; a symbolic link on the
/// way is refused.
fn make_dirs(root: &Path, rel: &str) -> std::io::Result<PathBuf> {
    let mut dir = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    let Some((_, dirs)) = parts.split_last() else {
        return Err(std::io::Error::other("empty path"));
    };
    for d in dirs {
        dir.push(d);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(std::io::Error::other(format!(
                    "{} is a symbolic link: nothing is written through it",
                    dir.display()
                )))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory",
                    dir.display()
                )))
            }
            Err(_) => std::fs::create_dir(&dir)?,
        }
    }
    Ok(dir)
}

/// `root/rel` opened for writing as a new file, its directories created. Nothing is written
/// through a symbolic link inside the snapshot: a link in the way is refused (an earlier
/// regular file is replaced).
fn create_file(root: &Path, rel: &str) -> std::io::Result<std::fs::File> {
    let dir = make_dirs(root, rel)?;
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(std::io::Error::other(format!(
                "{} is a symbolic link: nothing is written through it",
                path.display()
            )))
        }
        Ok(m) if m.is_file() => std::fs::remove_file(&path)?,
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )))
        }
        Err(_) => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
}

fn write_file(root: &Path, rel: &str, bytes: &[u8], o: &mut Outcome) {
    use std::io::Write;
    let res = create_file(root, rel).and_then(|mut f| f.write_all(bytes));
    match res {
        Ok(()) => o.written.push(rel.to_string()),
        Err(e) => {
            remove_stale(root, rel);
            o.missing.push(format!("{rel}: cannot write ({e})"))
        }
    }
}

/// A file of an earlier run whose command failed now would pass for current data: removed
/// (a regular file only; a symbolic link is removed itself, never what it points to).
fn remove_stale(root: &Path, rel: &str) {
    let path = root.join(rel);
    if let Ok(m) = std::fs::symlink_metadata(&path) {
        if m.is_file() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The summary
// ---------------------------------------------------------------------------------------------

/// What to run on each router platform (docs/collect.md); the outputs go to
/// `routers/<router>/`, one file per command, with the prompt and command line kept on top.
pub const ROUTER_COMMANDS: &[(&str, &[&str])] = &[
    (
        "Extreme SLX-OS",
        &[
            "show ip bgp vrf VRF",
            "show running-config interface",
            "show interface",
        ],
    ),
    (
        "Cisco NX-OS",
        &[
            "show ip bgp vrf VRF",
            "show running-config interface",
            "show interface",
        ],
    ),
    (
        "Cisco IOS-XE",
        &[
            "show ip bgp vpnv4 all (or show ip bgp for the global table)",
            "show running-config | section ^interface",
            "show interfaces",
        ],
    ),
    (
        "Arista EOS",
        &[
            "show ip bgp vrf VRF",
            "show running-config interfaces",
            "show interfaces",
        ],
    ),
    (
        "FRR (vtysh -c)",
        &[
            "show ip bgp vrf all json",
            "show ip route vrf all json",
            "show interface json",
        ],
    ),
    (
        "Juniper Junos",
        &["no reader yet: describe the entry in kubepath.yaml; router hops stay unknown"],
    ),
];

fn summary(root: &Path, o: &Outcome) -> String {
    let mut s = format!(
        "kubepath collect: {} file(s) written under {}\n",
        o.written.len(),
        esc(&root.display().to_string())
    );
    if !o.notes.is_empty() {
        s.push_str("\nnotes:\n");
        for n in &o.notes {
            s.push_str(&format!("  - {}\n", esc(n)));
        }
    }
    s.push_str("\nrouter outputs are not collected: on each router in front of the cluster run\n(one file per command under routers/<router>/, keeping the prompt and command line):\n");
    for (platform, cmds) in ROUTER_COMMANDS {
        s.push_str(&format!("  {platform}:\n"));
        for c in *cmds {
            s.push_str(&format!("    {c}\n"));
        }
    }
    if o.missing.is_empty() {
        s.push_str("\neverything was collected\n");
    } else {
        s.push_str(&format!("\nmissing ({}):\n", o.missing.len()));
        for m in &o.missing {
            s.push_str(&format!("  - {}\n", esc(m)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn nft_listing_shape() {
        let ok = "# Warning: table ip nat is managed by iptables-nft, do not touch!\ntable ip nat {\n\tchain PREROUTING {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tcounter jump KUBE-SERVICES comment \"a } brace\"\n\t}\n}\ntable inet filter {\n}\n";
        assert!(check_nft_shape(ok.as_bytes()).is_ok());
        for bad in [
            "",
            "Welcome to node-1\ntable ip nat {\n}\n",
            "table ip nat {\n}\nyes\n",
            "*filter\nCOMMIT\n",
        ] {
            assert!(check_nft_shape(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_kind_and_no_command_names_secrets() {
        for k in KINDS {
            assert!(secret_free(k.resources), "{:?}", k.resources);
        }
        assert!(secret_free(&[CONFIGMAPS]));
        assert!(!secret_free(&["get", "Secrets", "-A"]));
        assert!(!secret_free(&["get", "secret/x"]));
    }

    #[test]
    fn template_words_and_placeholders() {
        let t =
            parse_template("kubectl debug 'node/{name}' -i --image=\"busybox:1\" -- chroot /host")
                .expect("parses");
        assert_eq!(
            t,
            w(&[
                "kubectl",
                "debug",
                "node/{name}",
                "-i",
                "--image=busybox:1",
                "--",
                "chroot",
                "/host"
            ])
        );
        assert_eq!(expand(&t, "n1", "")[2], "node/n1");
        assert!(parse_template("ssh host").is_err(), "names no node");
        assert!(parse_template("ssh '{name}").is_err(), "unterminated");
        assert!(parse_template("   ").is_err());
    }

    #[test]
    fn a_hostile_name_stays_one_word_and_is_refused() {
        let t = parse_template("ip netns exec {name}").expect("parses");
        let v = expand(&t, "a;rm -rf /", "");
        assert_eq!(v, w(&["ip", "netns", "exec", "a;rm -rf /"]));
        for bad in [
            "a;rm -rf /",
            "-oProxyCommand=x",
            "../x",
            "A",
            "a/b",
            "",
            "a..b",
            "x-",
        ] {
            assert!(!valid_node_name(bad), "{bad}");
        }
        for good in ["pool2-9976d6447-2gnmp", "node1.example.com", "n"] {
            assert!(valid_node_name(good), "{good}");
        }
    }

    #[test]
    fn configmaps_are_filtered() {
        let list = serde_json::json!({"kind": "List", "items": [
            {"metadata": {"namespace": "ingress-nginx", "name": "ingress-nginx-controller"}, "data": {"ssl-redirect": "false"}},
            {"metadata": {"namespace": "metallb-system", "name": "config"}, "data": {"config": "address-pools:\n- name: a\n"}},
            {"metadata": {"namespace": "app", "name": "db"}, "data": {"password": "hunter2"}},
        ]});
        let named = BTreeSet::from([(
            "ingress-nginx".to_string(),
            "ingress-nginx-controller".to_string(),
        )]);
        let (kept, dropped) = filter_configmaps(list, &named);
        assert_eq!(dropped, 1);
        assert_eq!(kept["items"].as_array().map(Vec::len), Some(2));
        assert!(!kept.to_string().contains("hunter2"));
    }

    #[test]
    fn configmap_flags_of_pods() {
        let pods = serde_json::json!({"items": [{"spec": {"containers": [
            {"args": ["/nginx-ingress-controller", "--configmap=ingress-nginx/ctl", "--configmap", "x/y"]}
        ]}}, {"metadata": {"namespace": "ing"}, "spec": {"containers": [
            {"image": "registry.k8s.io/ingress-nginx/controller:v1.9.4@sha256:00",
             "args": ["--configmap=$(POD_NAMESPACE)/nginx-configuration"]}
        ]}}, {"metadata": {"namespace": "app"}, "spec": {"containers": [
            {"image": "example/app:1", "args": ["--configmap=app/db"]}
        ]}}]});
        let set = controller_configmaps(&pods);
        assert!(!set.contains(&("app".into(), "db".into())));
        assert_eq!(set.len(), 3);
        assert!(set.contains(&("ingress-nginx".into(), "ctl".into())));
        assert!(set.contains(&("x".into(), "y".into())));
        assert!(set.contains(&("ing".into(), "nginx-configuration".into())));
    }

    #[test]
    fn a_hung_command_is_killed_and_failed() {
        let start = Instant::now();
        let r = run_argv(&w(&["sleep", "30"]), Duration::from_secs(1));
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(r.error.as_deref().is_some_and(|e| e.contains("timed out")));
        // A process left behind holding the output: not waited for past the grace period.
        let r = run_argv(
            &w(&["sh", "-c", "echo partial; sleep 30 & exit 0"]),
            Duration::from_secs(1),
        );
        assert!(start.elapsed() < Duration::from_secs(20));
        assert!(r.error.is_some(), "a partial output passed");
        let r = run_argv(
            &w(&["sh", "-c", "echo ok; echo why >&2; exit 3"]),
            Duration::from_secs(5),
        );
        assert_eq!(r.stdout, b"ok\n");
        assert!(r.describe().contains("why"), "{}", r.describe());
        let r = run_argv(&w(&["/no/such/binary"]), Duration::from_secs(5));
        assert!(r
            .error
            .as_deref()
            .is_some_and(|e| e.contains("could not be started")));
    }

    #[test]
    fn sysctl_keeps_net() {
        let b = net_sysctls(
            b"kernel.pid_max = 1\nnet.ipv4.ip_forward = 1\nsysctl: permission denied on key 'x'\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&b),
            "net.ipv4.ip_forward = 1\nsysctl: permission denied on key 'x'\n"
        );
    }
}
