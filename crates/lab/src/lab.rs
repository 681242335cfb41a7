//! Building a scenario's topology in network namespaces, and tearing it down completely.
//!
//! Every namespace is named `<prefix>-<role>`; the lab's files (FRR configs, sockets, pid files,
//! logs, the state file) live in `/run/kubepath-lab/<prefix>/`. Teardown needs nothing but the
//! prefix: it ends the FRR daemons and the pod-server process named in the pid files under that
//! directory (after checking their command lines), deletes every namespace whose name starts
//! with `<prefix>-`, and removes the directory. [`Lab`] does that on drop, so a failure
//! anywhere (including halfway through [`Lab::up`]) leaves nothing behind.
//!
//! Network safety: addresses and routes are only ever added with `ip -n <lab namespace>`; the
//! host's namespace gets no interface, address or route.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::frr::{self, Instance};
use crate::kubeproxy;
use crate::kubeproxy_nft;
use crate::pods::PodServers;
use crate::scenario::{
    Pod, ProxyMode, Scenario, ANYCAST_GW, CLIENT_GW, CLIENT_IP, CLIENT_PREFIX, NODE_CLUSTER_IF,
    NODE_OM_IF, NODE_TRAFFIC_IF, OM_VRF, TRAFFIC_GW, VIP,
};
use crate::sh::{self, io_err, LabError, Result};

/// Where the lab keeps its per-prefix files.
pub const RUN_ROOT: &str = "/run/kubepath-lab";
/// The prefix `kubepath lab` uses when none is given.
pub const DEFAULT_PREFIX: &str = "kpl";

/// Knobs for [`Lab::up`].
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Namespace-name prefix; must be unique per concurrently running lab.
    pub prefix: String,
    /// Start the pod HTTP servers as threads of this process (true for tests and
    /// `kubepath lab test`); `kubepath lab up` starts a separate server process instead.
    pub serve_in_process: bool,
    /// How long to wait for BGP to converge.
    pub converge_timeout: Duration,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            prefix: DEFAULT_PREFIX.into(),
            serve_in_process: true,
            converge_timeout: Duration::from_secs(40),
        }
    }
}

/// What `lab down` needs to know, kept in `<run dir>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub prefix: String,
    pub scenario: String,
    pub namespaces: Vec<String>,
}

/// Validates a prefix: short, `[a-z0-9]`, so that `<prefix>-<role>` is a safe file name.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 16
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LabError::Other(format!(
            "bad lab prefix `{prefix}`: use 1-16 characters a-z, 0-9"
        )))
    }
}

pub fn run_dir(prefix: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(prefix)
}

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    pub scenario: Scenario,
    pub prefix: String,
    pub dir: PathBuf,
    pub(crate) frr: Vec<(String, Instance)>,
    servers: Option<PodServers>,
    state: LabState,
    torn_down: bool,
}

impl Lab {
    /// The namespace of a role (`client`, `edge`, `leaf-a`, `node-1`, `trafgw`, ...).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{}", self.prefix, role)
    }

    /// The namespace of a pod.
    pub fn pod_ns(&self, pod: &Pod) -> String {
        pod_ns(&self.prefix, pod)
    }

    /// The FRR instance of a router (`leaf-a`, `leaf-b`, `trafgw`).
    pub fn frr(&self, role: &str) -> Option<&Instance> {
        self.frr.iter().find(|(r, _)| r == role).map(|(_, i)| i)
    }

    /// Builds `scenario` under `opts.prefix`. On any error everything built so far is torn
    /// down before the error is returned.
    pub fn up(scenario: Scenario, opts: &LabOptions) -> Result<Lab> {
        sh::require_root()?;
        check_prefix(&opts.prefix)?;
        let dir = run_dir(&opts.prefix);
        if dir.join("state.json").exists() {
            return Err(LabError::Other(format!(
                "a lab with prefix `{}` is already up ({}); run `kubepath lab down --prefix {}` first",
                opts.prefix,
                dir.display(),
                opts.prefix
            )));
        }
        std::fs::create_dir_all(&dir).map_err(io_err(dir.display()))?;
        let mut lab = Lab {
            state: LabState {
                prefix: opts.prefix.clone(),
                scenario: scenario.name.to_string(),
                namespaces: Vec::new(),
            },
            scenario,
            prefix: opts.prefix.clone(),
            dir,
            frr: Vec::new(),
            servers: None,
            torn_down: false,
        };
        lab.save_state()?;
        // On error `lab` is dropped here, which tears down what was built.
        lab.build(opts)?;
        Ok(lab)
    }

    fn save_state(&self) -> Result<()> {
        let path = self.dir.join("state.json");
        let text = serde_json::to_string_pretty(&self.state)
            .map_err(|e| LabError::Other(e.to_string()))?;
        std::fs::write(&path, text).map_err(io_err(path.display()))
    }

    fn add_ns(&mut self, role: &str) -> Result<String> {
        let name = self.ns(role);
        self.add_ns_named(name)
    }

    fn add_ns_named(&mut self, name: String) -> Result<String> {
        sh::run(&["ip", "netns", "add", &name])?;
        self.state.namespaces.push(name.clone());
        self.save_state()?;
        sh::ip(&name, &["link", "set", "lo", "up"])?;
        // New namespaces start from the kernel's defaults; make the ones the lab relies on
        // explicit. icmp_ratemask=0 exempts every ICMP type from both the per-destination
        // (icmp_ratelimit) and the global (icmp_msgs_per_sec) limits (net/ipv4/icmp.c,
        // icmpv4_mask_allow), so each of 300 SYNs gets its own ICMP error.
        sh::sysctl(&name, "net.ipv4.conf.all.rp_filter", "0")?;
        sh::sysctl(&name, "net.ipv4.conf.default.rp_filter", "0")?;
        sh::sysctl(&name, "net.ipv4.icmp_ratemask", "0")?;
        Ok(name)
    }

    fn build(&mut self, opts: &LabOptions) -> Result<()> {
        let s = self.scenario.clone();
        // Namespaces.
        let client = self.add_ns("client")?;
        let edge = self.add_ns("edge")?;
        let om_l2 = self.add_ns("om-l2")?;
        let k8s_l2 = self.add_ns("k8s-l2")?;
        let trafgw = self.add_ns("trafgw")?;
        let mut leaf_ns = Vec::new();
        for l in &s.leaves {
            leaf_ns.push(self.add_ns(l.name)?);
        }
        let mut node_ns = Vec::new();
        for n in &s.nodes {
            node_ns.push(self.add_ns(&n.name)?);
        }
        let mut pods_ns = Vec::new();
        for p in &s.pods {
            pods_ns.push(self.add_ns_named(pod_ns(&self.prefix, p))?);
        }
        for ns in [&edge, &trafgw]
            .into_iter()
            .chain(leaf_ns.iter())
            .chain(node_ns.iter())
        {
            sh::sysctl(ns, "net.ipv4.ip_forward", "1")?;
            // A pure function of the 5-tuple (policy 3 = custom, fields 0x37 = source and
            // destination address, protocol, source and destination port); policy 1 would
            // reuse the socket's random hash for locally generated traffic.
            sh::sysctl(ns, "net.ipv4.fib_multipath_hash_policy", "3")?;
            sh::sysctl(ns, "net.ipv4.fib_multipath_hash_fields", "0x37")?;
        }
        // Distinct hash seeds per router. With the default (0) every namespace uses the same
        // boot-time random key, so consecutive ECMP stages hash a flow identically and
        // polarize: with 2 next hops on the edge, leaf-a only ever sees the lower half of the
        // hash space and never picks node-3 (observed: leaf-a 104/40/0, leaf-b 0/51/105).
        // Real routers hash with their own seeds; so do the lab's.
        for (i, ns) in std::iter::once(&edge).chain(leaf_ns.iter()).enumerate() {
            let seed = format!("{}", 0x6b70_0000u32 + 7919 * (i as u32 + 1));
            sh::sysctl(ns, "net.ipv4.fib_multipath_hash_seed", &seed)?;
        }

        // L2 segments: bridges in their own namespaces (om, cluster network) and in trafgw.
        for ns in [&om_l2, &k8s_l2] {
            sh::ip(ns, &["link", "add", "br0", "type", "bridge"])?;
            sh::ip(ns, &["link", "set", "br0", "up"])?;
        }
        sh::ip(&trafgw, &["link", "add", "br-traf", "type", "bridge"])?;
        sh::ip(&trafgw, &["link", "set", "br-traf", "up"])?;
        sh::ip(
            &trafgw,
            &["addr", "add", &format!("{TRAFFIC_GW}/27"), "dev", "br-traf"],
        )?;

        // Client <-> edge.
        veth(&client, "eth0", &edge, "c0")?;
        addr(&client, "eth0", "10.210.150.87/28")?;
        addr(&edge, "c0", &format!("{CLIENT_GW}/28"))?;
        sh::ip(
            &client,
            &["route", "add", "default", "via", &CLIENT_GW.to_string()],
        )?;

        // Edge <-> leaves; leaves on the om segment.
        let mut multipath: Vec<String> = vec!["route".into(), "add".into(), format!("{VIP}/32")];
        for (l, ns) in s.leaves.iter().zip(&leaf_ns) {
            let edge_if = format!("to-{}", l.name);
            veth(&edge, &edge_if, ns, "up0")?;
            addr(&edge, &edge_if, &format!("{}/30", l.edge_ip))?;
            addr(ns, "up0", &format!("{}/30", l.uplink_ip))?;
            multipath.extend([
                "nexthop".into(),
                "via".into(),
                l.uplink_ip.to_string(),
                "dev".into(),
                edge_if.clone(),
            ]);
            bridge_port(ns, "om0", &om_l2, &format!("p-{}", l.name))?;
            addr(ns, "om0", &format!("{}/27", l.om_ip))?;
            if l.anycast {
                addr(ns, "om0", &format!("{ANYCAST_GW}/27"))?;
            }
            sh::ip(
                ns,
                &[
                    "route",
                    "add",
                    crate::scenario::CLIENT_PREFIX,
                    "via",
                    &l.edge_ip.to_string(),
                ],
            )?;
        }
        let mp: Vec<&str> = multipath.iter().map(String::as_str).collect();
        sh::ip(&edge, &mp)?;

        // Nodes.
        for (n, ns) in s.nodes.iter().zip(&node_ns) {
            bridge_port(ns, NODE_OM_IF, &om_l2, &format!("p-{}", n.name))?;
            addr(ns, NODE_OM_IF, &format!("{}/27", n.om_ip))?;
            let tport = format!("t-{}", n.name);
            veth(ns, NODE_TRAFFIC_IF, &trafgw, &tport)?;
            sh::ip(&trafgw, &["link", "set", &tport, "master", "br-traf"])?;
            addr(ns, NODE_TRAFFIC_IF, &format!("{}/27", n.traffic_ip))?;
            bridge_port(ns, NODE_CLUSTER_IF, &k8s_l2, &format!("p-{}", n.name))?;
            addr(ns, NODE_CLUSTER_IF, &format!("{}/24", n.internal_ip))?;
            // The seed's node default route: through the traffic VRF.
            sh::ip(
                ns,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    &TRAFFIC_GW.to_string(),
                    "dev",
                    NODE_TRAFFIC_IF,
                    "proto",
                    "static",
                    "metric",
                    "804",
                ],
            )?;
            // The pod network: other nodes' pod CIDRs via their InternalIP (Calico BGP /
            // flannel host-gw style).
            pod_routes(
                ns,
                s.nodes
                    .iter()
                    .filter(|o| o.name != n.name)
                    .map(|o| (o.pod_cidr.as_str(), o.internal_ip)),
            )?;
            if s.return_route_fix {
                sh::ip(
                    ns,
                    &[
                        "route",
                        "add",
                        &if s.return_route_prefix {
                            CLIENT_PREFIX.to_string()
                        } else {
                            format!("{CLIENT_IP}/32")
                        },
                        "via",
                        &ANYCAST_GW.to_string(),
                    ],
                )?;
            }
            let om_rp = format!("net.ipv4.conf.{NODE_OM_IF}.rp_filter");
            match s.rp_filter {
                0 => {}
                2 => {
                    sh::sysctl(ns, &om_rp, "2")?;
                    sh::sysctl(ns, "net.ipv4.conf.all.rp_filter", "2")?;
                }
                v => sh::sysctl(ns, &om_rp, &v.to_string())?,
            }
            if s.rp_filter_fix {
                // The rp_filter-only fix, as an operator applies it to the running node.
                sh::sysctl(ns, &om_rp, "2")?;
                sh::sysctl(ns, "net.ipv4.conf.all.rp_filter", "2")?;
            }
            match s.proxy_mode {
                ProxyMode::Iptables => {
                    let rules = kubeproxy::node_rules(&s, n);
                    sh::in_ns(ns, &["iptables-restore"], Some(&rules))?;
                }
                ProxyMode::Nftables => {
                    let rules = kubeproxy_nft::node_rules(&s, n);
                    sh::in_ns(ns, &["nft", "-f", "-"], Some(&rules))?;
                }
            }
            sh::in_ns(ns, &["nft", "-f", "-"], Some(&node_observer()))?;
        }

        // Pods: Calico-style /32 on eth0 behind a `cali…` veth with proxy ARP on the node.
        for (p, pns) in s.pods.iter().zip(&pods_ns) {
            let node_idx = s
                .nodes
                .iter()
                .position(|n| n.name == p.node)
                .ok_or_else(|| LabError::Other(format!("pod {} on unknown node", p.key())))?;
            let nns = &node_ns[node_idx];
            let cali = cali_name(p);
            veth(pns, "eth0", nns, &cali)?;
            addr(pns, "eth0", &format!("{}/32", p.ip))?;
            sh::ip(
                pns,
                &[
                    "route",
                    "add",
                    "169.254.1.1",
                    "dev",
                    "eth0",
                    "scope",
                    "link",
                ],
            )?;
            sh::ip(
                pns,
                &[
                    "route",
                    "add",
                    "default",
                    "via",
                    "169.254.1.1",
                    "dev",
                    "eth0",
                ],
            )?;
            sh::sysctl(nns, &format!("net.ipv4.conf.{cali}.proxy_arp"), "1")?;
            sh::ip(
                nns,
                &[
                    "route",
                    "add",
                    &format!("{}/32", p.ip),
                    "dev",
                    &cali,
                    "scope",
                    "link",
                ],
            )?;
        }

        // Observers (nftables sets that record ports; they never change a verdict).
        for ns in &leaf_ns {
            sh::in_ns(ns, &["nft", "-f", "-"], Some(&router_observer()))?;
        }
        sh::in_ns(&trafgw, &["nft", "-f", "-"], Some(&router_observer()))?;

        // FRR.
        let announcing: Vec<String> = s
            .announcing_nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        for (role, inst) in self.frr_instances() {
            let conf = if let Some(l) = s.leaves.iter().find(|l| l.name == role) {
                frr::leaf_bgpd_conf(l, &s)
            } else if let Some(n) = s.node(&role) {
                frr::node_bgpd_conf(n, &s, announcing.contains(&n.name))
            } else {
                frr::trafgw_bgpd_conf()
            };
            self.frr.push((role, inst.clone()));
            frr::start(&inst, &conf)?;
        }

        if opts.serve_in_process {
            self.servers = Some(PodServers::start(&self.prefix, &s)?);
        }
        self.wait_converged(announcing.len(), opts.converge_timeout)?;
        Ok(())
    }

    /// Waits until every leaf has every BGP session up and a kernel route to the VIP with
    /// one next hop per announcing node (or no route, when nobody announces).
    fn wait_converged(&self, announcing: usize, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let mut done = true;
            let mut why = String::new();
            for l in &self.scenario.leaves {
                let ns = self.ns(l.name);
                let hops = crate::observe::vip_nexthops(&ns)?;
                let established = self
                    .frr(l.name)
                    .map(|i| established_peers(i).unwrap_or(0))
                    .unwrap_or(0);
                if hops.len() != announcing || established < self.scenario.nodes.len() {
                    done = false;
                    let _ = write!(
                        why,
                        "{}: {} next hops for {VIP} (want {announcing}), {established}/{} sessions up; ",
                        l.name,
                        hops.len(),
                        self.scenario.nodes.len()
                    );
                }
            }
            if done {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(LabError::Other(format!(
                    "BGP did not converge within {timeout:?}: {why}"
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A handle on a lab that `kubepath lab up` left running (from its state file). Dropping
    /// the handle does not tear the lab down.
    pub fn attach(prefix: &str) -> Result<Lab> {
        check_prefix(prefix)?;
        let dir = run_dir(prefix);
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LabError::Other(format!(
                "no lab with prefix `{prefix}` is up ({}: {e})",
                path.display()
            ))
        })?;
        let state: LabState = serde_json::from_str(&text)
            .map_err(|e| LabError::Other(format!("{}: {e}", path.display())))?;
        let scenario = Scenario::by_name(&state.scenario)?;
        let mut lab = Lab {
            scenario,
            prefix: prefix.to_string(),
            dir,
            frr: Vec::new(),
            servers: None,
            state,
            torn_down: true,
        };
        lab.frr = lab.frr_instances();
        Ok(lab)
    }

    /// The FRR instances of this lab's scenario.
    fn frr_instances(&self) -> Vec<(String, Instance)> {
        let mut v = Vec::new();
        for l in &self.scenario.leaves {
            v.push((
                l.name.to_string(),
                Instance {
                    ns: self.ns(l.name),
                    dir: self.dir.join("frr").join(l.name),
                    zebra: true,
                    vrf: Some(OM_VRF),
                },
            ));
        }
        v.push((
            "trafgw".to_string(),
            Instance {
                ns: self.ns("trafgw"),
                dir: self.dir.join("frr").join("trafgw"),
                zebra: true,
                vrf: Some(self.scenario.traffic_vrf),
            },
        ));
        for n in &self.scenario.nodes {
            v.push((
                n.name.clone(),
                Instance {
                    ns: self.ns(&n.name),
                    dir: self.dir.join("frr").join(&n.name),
                    zebra: false,
                    vrf: None,
                },
            ));
        }
        v
    }

    /// Stops the pod servers run by this process (if any), then tears everything down.
    pub fn down(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        if let Some(servers) = self.servers.take() {
            servers.stop();
        }
        teardown_prefix(&self.prefix)
    }

    /// Hands the lab over to `kubepath lab down`: dropping the handle no longer tears down.
    pub fn detach(mut self) -> LabState {
        self.torn_down = true;
        self.state.clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            // Not eprintln!: a closed stderr would panic inside Drop.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "kubepath lab: teardown of `{}`: {e}",
                self.prefix
            );
        }
    }
}

fn established_peers(inst: &Instance) -> Result<usize> {
    let out = inst.vtysh("show bgp summary json")?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| LabError::Other(format!("bgp summary: {e}")))?;
    // FRR: {"ipv4Unicast": {"peers": {"10.33.151.68": {"state": "Established", ...}}}}
    let peers = v
        .get("ipv4Unicast")
        .and_then(|a| a.get("peers"))
        .and_then(|p| p.as_object());
    Ok(peers
        .map(|p| {
            p.values()
                .filter(|x| x.get("state").and_then(|s| s.as_str()) == Some("Established"))
                .count()
        })
        .unwrap_or(0))
}

/// Starts the pod servers of a lab that outlives this process: `program args...` (the
/// binary's `kubepath lab serve --prefix P`, which calls [`serve_forever`]) in a process group
/// of its own, its stderr in `<run dir>/server.log`, its pid in `server.pid` (where
/// [`teardown_prefix`] finds it), and waits up to 15 s for its `server.ready`. On failure the
/// caller drops `lab`, which tears everything down, the server process included.
pub fn start_detached_server(lab: &Lab, program: &std::path::Path, args: &[&str]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log_path = lab.dir.join("server.log");
    let log = std::fs::File::create(&log_path).map_err(io_err(log_path.display()))?;
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|source| LabError::Spawn {
            cmd: program.display().to_string(),
            source,
        })?;
    let pid_path = lab.dir.join("server.pid");
    std::fs::write(&pid_path, child.id().to_string()).map_err(io_err(pid_path.display()))?;
    let ready = lab.dir.join("server.ready");
    let start = std::time::Instant::now();
    while !ready.exists() {
        if start.elapsed() > Duration::from_secs(15) {
            return Err(LabError::Other(format!(
                "the pod servers did not start; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The body of `kubepath lab serve`: runs the pod servers of the lab `prefix` until the
/// process is killed (by `kubepath lab down`), after writing `<run dir>/server.ready`.
pub fn serve_forever(prefix: &str) -> Result<()> {
    let lab = Lab::attach(prefix)?;
    let _servers = PodServers::start(prefix, &lab.scenario)?;
    let ready = lab.dir.join("server.ready");
    std::fs::write(&ready, std::process::id().to_string()).map_err(io_err(ready.display()))?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Tears down everything under `prefix`: the FRR daemons and pod-server process named by the
/// pid files in the run directory, every namespace named `<prefix>-…`, the run directory.
/// Safe to call when nothing (or only part) exists.
pub fn teardown_prefix(prefix: &str) -> Result<()> {
    check_prefix(prefix)?;
    let dir = run_dir(prefix);
    let mut problems = Vec::new();
    let mut pids = Vec::new();
    // Pod-server process started by `kubepath lab up` (its command line is `kubepath lab serve`).
    if let Ok(text) = std::fs::read_to_string(dir.join("server.pid")) {
        if let Ok(pid) = text.trim().parse::<i32>() {
            if frr::is_ours(pid, "serve") {
                pids.push(pid);
            }
        }
    }
    // FRR daemons: every *.pid under <dir>/frr/*/.
    if let Ok(entries) = std::fs::read_dir(dir.join("frr")) {
        for e in entries.flatten() {
            for f in ["bgpd.pid", "zebra.pid"] {
                if let Some(pid) = frr::frr_pid(&e.path().join(f)) {
                    pids.push(pid);
                }
            }
        }
    }
    frr::stop_pids(&pids);
    let want = format!("{prefix}-");
    match sh::list_netns() {
        Ok(list) => {
            for ns in list.into_iter().filter(|n| n.starts_with(&want)) {
                if let Err(e) = sh::run(&["ip", "netns", "del", &ns]) {
                    problems.push(e.to_string());
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            problems.push(format!("{}: {e}", dir.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::Other(problems.join("; ")))
    }
}

/// The namespace of a pod: `<prefix>-<pod name>`.
/// The pod network on a node: every other node's pod CIDR via its InternalIP on the cluster
/// interface (Calico BGP / flannel host-gw style).
pub(crate) fn pod_routes<'a>(
    ns: &str,
    others: impl IntoIterator<Item = (&'a str, std::net::Ipv4Addr)>,
) -> Result<()> {
    for (cidr, via) in others {
        sh::ip(
            ns,
            &[
                "route",
                "add",
                cidr,
                "via",
                &via.to_string(),
                "dev",
                NODE_CLUSTER_IF,
                "proto",
                "bird",
            ],
        )?;
    }
    Ok(())
}

pub fn pod_ns(prefix: &str, pod: &Pod) -> String {
    format!("{prefix}-{}", pod.name)
}

/// Calico names a pod's host-side veth `cali` + 11 hex digits of a hash of the workload; the
/// lab does the same with SHA-256 over "namespace.name".
pub fn cali_name(pod: &Pod) -> String {
    let d = Sha256::digest(format!("{}.{}", pod.namespace, pod.name).as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("cali{}", &hex[..11])
}

pub(crate) fn veth(ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) -> Result<()> {
    sh::ip(
        ns_a,
        &[
            "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b,
        ],
    )?;
    sh::ip(ns_a, &["link", "set", if_a, "up"])?;
    sh::ip(ns_b, &["link", "set", if_b, "up"])?;
    Ok(())
}

pub(crate) fn bridge_port(ns: &str, ifname: &str, l2: &str, port: &str) -> Result<()> {
    veth(ns, ifname, l2, port)?;
    sh::ip(l2, &["link", "set", port, "master", "br0"])?;
    Ok(())
}

pub(crate) fn addr(ns: &str, ifname: &str, cidr: &str) -> Result<()> {
    sh::ip(ns, &["addr", "add", cidr, "dev", ifname]).map(|_| ())
}

/// nftables on a node: records the source port of every SYN from the client to the VIP that
/// arrives on the om interface, before conntrack and before rp_filter (priority -400 is ahead
/// of conntrack's -200), so a SYN that rp_filter drops is still seen.
fn node_observer() -> String {
    format!(
        "table ip kubepath_lab {{\n  set syn_in {{ type inet_service; size 65535; flags dynamic; }}\n  chain pre {{\n    type filter hook prerouting priority -400; policy accept;\n    iifname \"{NODE_OM_IF}\" ip saddr {CLIENT_IP} ip daddr {VIP} tcp flags & (syn|ack) == syn update @syn_in {{ tcp sport }}\n  }}\n}}\n"
    )
}

/// nftables on a router: records the client port of every SYN it receives for the VIP and of
/// every SYN-ACK it receives from the VIP back to the client.
pub(crate) fn router_observer() -> String {
    format!(
        "table ip kubepath_lab {{\n  set syn_in {{ type inet_service; size 65535; flags dynamic; }}\n  set synack_in {{ type inet_service; size 65535; flags dynamic; }}\n  chain pre {{\n    type filter hook prerouting priority -400; policy accept;\n    ip saddr {CLIENT_IP} ip daddr {VIP} tcp flags & (syn|ack) == syn update @syn_in {{ tcp sport }}\n    ip saddr {VIP} ip daddr {CLIENT_IP} tcp flags & (syn|ack) == syn|ack update @synack_in {{ tcp dport }}\n  }}\n}}\n"
    )
}
