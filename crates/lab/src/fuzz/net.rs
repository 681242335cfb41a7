//! A generated topology built in network namespaces (`<prefix>-<role>`), observed with real
//! connections and collected as a kubepath snapshot. [`FuzzLab`] tears everything down on drop
//! (the same prefix-based teardown as the fixed lab: FRR daemons by their pid files, the
//! namespaces, the run directory), so a panic or an error anywhere leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::topo::{Gateway, Selector, Topology, NODE_OM_IF, NODE_TRAFFIC_IF};
use crate::frr::{self, Instance};
use crate::lab::{addr, bridge_port, cali_name, check_prefix, router_observer, run_dir, veth};
use crate::observe::{
    nft_set, route_get_batch, route_to, rp_filter_counter, run_client, ConnObservation, CtEntry,
    Observation, ObserveOptions, Outcome, ReturnRouter,
};
use crate::pods::{parse_body_field, PodServers};
use crate::scenario::{
    ProxyMode, Scenario, CLIENT_GW, CLIENT_IP, CLIENT_PREFIX, CLUSTER_CIDR, NODE_CLUSTER_IF,
    OM_VRF, VIP,
};
use crate::sh::{self, io_err, LabError, Result};

/// A running fuzz topology; dropping it tears it down.
pub struct FuzzLab {
    pub topo: Topology,
    pub scenario: Scenario,
    pub prefix: String,
    pub dir: PathBuf,
    frr: Vec<(String, Instance)>,
    servers: Option<PodServers>,
    done: bool,
}

impl Drop for FuzzLab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("kubepath lab fuzz: teardown of `{}`: {e}", self.prefix);
        }
    }
}

fn add_ns(name: &str) -> Result<()> {
    sh::run(&["ip", "netns", "add", name])?;
    sh::ip(name, &["link", "set", "lo", "up"])?;
    sh::sysctl(name, "net.ipv4.conf.all.rp_filter", "0")?;
    sh::sysctl(name, "net.ipv4.conf.default.rp_filter", "0")?;
    // Every SYN gets its own ICMP error where the kernel sends one.
    sh::sysctl(name, "net.ipv4.icmp_ratemask", "0")?;
    sh::sysctl(name, "net.ipv4.icmp_ratelimit", "0")?;
    Ok(())
}

/// nftables on a node: the client's SYNs arriving on the om interface (before conntrack and
/// rp_filter) and the client's SYNs at the forward hook (after the routing decision, so after
/// rp_filter, and before iptables' filter table): seen at `pre` but not at `fwd` = dropped by
/// the routing decision (rp_filter); seen at `fwd` without a conntrack entry = dropped in
/// filter FORWARD.
fn node_observer() -> String {
    format!(
        "table ip kubepath_lab {{\n  set syn_in {{ type inet_service; size 65535; flags dynamic; }}\n  set fwd_in {{ type inet_service; size 65535; flags dynamic; }}\n  chain pre {{\n    type filter hook prerouting priority -400; policy accept;\n    iifname \"{NODE_OM_IF}\" ip saddr {CLIENT_IP} ip daddr {VIP} tcp flags & (syn|ack) == syn update @syn_in {{ tcp sport }}\n  }}\n  chain fwdobs {{\n    type filter hook forward priority -400; policy accept;\n    ip saddr {CLIENT_IP} tcp flags & (syn|ack) == syn update @fwd_in {{ tcp sport }}\n  }}\n}}\n"
    )
}

fn default_route_args(gws: &[Gateway], table: Option<u32>) -> Vec<String> {
    let mut v: Vec<String> = vec!["route".into(), "add".into(), "default".into()];
    if let [g] = gws {
        v.extend(["via".into(), g.ip.to_string(), "dev".into(), g.dev.into()]);
    }
    v.extend(["proto".into(), "static".into()]);
    if let Some(t) = table {
        v.extend(["table".into(), t.to_string()]);
    } else {
        v.extend(["metric".into(), "804".into()]);
    }
    if gws.len() > 1 {
        for g in gws {
            v.extend([
                "nexthop".into(),
                "via".into(),
                g.ip.to_string(),
                "dev".into(),
                g.dev.into(),
                "weight".into(),
                g.weight.to_string(),
            ]);
        }
    }
    v
}

fn ip_strs(ns: &str, args: &[String]) -> Result<String> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    sh::ip(ns, &a)
}

/// kube-proxy's rules for `node`, with `:FORWARD DROP` and a CNI-style pod-to-pod ACCEPT when
/// the topology asks for it: (`iptables-restore` input, `nft -f` input). In nftables mode the
/// FORWARD policy is still iptables' (a CNI's), so a node may carry both.
fn node_rules(
    topo: &Topology,
    s: &Scenario,
    node: &crate::scenario::Node,
) -> (Option<String>, Option<String>) {
    let forward_drop = || {
        format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -s {CLUSTER_CIDR} -d {CLUSTER_CIDR} -m comment --comment \"cni: pod to pod\" -j ACCEPT\nCOMMIT\n")
    };
    match topo.proxy_mode {
        ProxyMode::Nftables => (
            topo.forward_drop.then(forward_drop),
            Some(crate::kubeproxy_nft::node_rules(s, node)),
        ),
        ProxyMode::Iptables => {
            let rules = crate::kubeproxy::node_rules(s, node);
            if !topo.forward_drop {
                return (Some(rules), None);
            }
            let rules = rules.replacen(":FORWARD ACCEPT [0:0]", ":FORWARD DROP [0:0]", 1);
            let rules = rules.replacen(
                "COMMIT\n",
                &format!("-A FORWARD -s {CLUSTER_CIDR} -d {CLUSTER_CIDR} -m comment --comment \"cni: pod to pod\" -j ACCEPT\nCOMMIT\n"),
                1,
            );
            (Some(rules), None)
        }
    }
}

impl FuzzLab {
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Builds `topo` under `prefix` (which must not be in use).
    pub fn up(topo: &Topology, prefix: &str) -> Result<FuzzLab> {
        sh::require_root()?;
        check_prefix(prefix)?;
        let dir = run_dir(prefix);
        let want = format!("{prefix}-");
        if dir.exists() || sh::list_netns()?.iter().any(|n| n.starts_with(&want)) {
            return Err(LabError::Other(format!(
                "prefix `{prefix}` is in use; run `kubepath lab down --prefix {prefix}`"
            )));
        }
        std::fs::create_dir_all(&dir).map_err(io_err(dir.display()))?;
        let mut lab = FuzzLab {
            topo: topo.clone(),
            scenario: topo.scenario(),
            prefix: prefix.to_string(),
            dir,
            frr: Vec::new(),
            servers: None,
            done: false,
        };
        lab.build()?;
        Ok(lab)
    }

    fn teardown(&mut self) -> Result<()> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if let Some(s) = self.servers.take() {
            s.stop();
        }
        crate::lab::teardown_prefix(&self.prefix)
    }

    /// Tears down now (also done on drop).
    pub fn down(mut self) -> Result<()> {
        self.teardown()
    }

    fn build(&mut self) -> Result<()> {
        let t = self.topo.clone();
        let s = self.scenario.clone();
        let client = self.ns("client");
        let edge = self.ns("edge");
        let om_l2 = self.ns("om-l2");
        let k8s_l2 = self.ns("k8s-l2");
        let tr_l2 = self.ns("tr-l2");
        let has_traffic = !t.further.is_empty();
        let mut all = vec![client.clone(), edge.clone(), om_l2.clone(), k8s_l2.clone()];
        if has_traffic {
            all.push(tr_l2.clone());
        }
        let routers: Vec<String> = t.routers().into_iter().map(|(r, _)| r).collect();
        let forwarding: Vec<String> = std::iter::once(edge.clone())
            .chain(routers.iter().map(|r| self.ns(r)))
            .chain(t.nodes.iter().map(|n| self.ns(&n.name)))
            .collect();
        all.extend(forwarding.iter().skip(1).cloned());
        for p in &s.pods {
            all.push(crate::lab::pod_ns(&self.prefix, p));
        }
        for ns in &all {
            add_ns(ns)?;
        }
        for (i, ns) in forwarding.iter().enumerate() {
            sh::sysctl(ns, "net.ipv4.ip_forward", "1")?;
            sh::sysctl(ns, "net.ipv4.fib_multipath_hash_policy", "3")?;
            sh::sysctl(ns, "net.ipv4.fib_multipath_hash_fields", "0x37")?;
            // Each ECMP stage hashes with its own seed (see docs/lab.md, ECMP polarization).
            let seed = 0x6b70_0000u32
                .wrapping_add(7919 * (i as u32 + 1))
                .wrapping_add((t.seed as u32).wrapping_mul(104_729));
            sh::sysctl(
                ns,
                "net.ipv4.fib_multipath_hash_seed",
                &(seed % 0x7fff_ffff).to_string(),
            )?;
        }
        for ns in [&om_l2, &k8s_l2]
            .into_iter()
            .chain(has_traffic.then_some(&tr_l2))
        {
            sh::ip(ns, &["link", "add", "br0", "type", "bridge"])?;
            sh::ip(ns, &["link", "set", "br0", "up"])?;
        }

        veth(&client, "eth0", &edge, "c0")?;
        addr(&client, "eth0", &format!("{CLIENT_IP}/28"))?;
        addr(&edge, "c0", &format!("{CLIENT_GW}/28"))?;
        sh::ip(
            &client,
            &["route", "add", "default", "via", &CLIENT_GW.to_string()],
        )?;

        // Entry routers.
        let mut edge_mp: Vec<String> = vec!["route".into(), "add".into(), format!("{VIP}/32")];
        for e in &t.entries {
            let ns = self.ns(&e.name);
            let edge_if = format!("to-{}", e.name);
            veth(&edge, &edge_if, &ns, "up0")?;
            addr(&edge, &edge_if, &format!("{}/30", e.edge_ip))?;
            addr(&ns, "up0", &format!("{}/30", e.uplink_ip))?;
            edge_mp.extend([
                "nexthop".into(),
                "via".into(),
                e.uplink_ip.to_string(),
                "dev".into(),
                edge_if,
            ]);
            bridge_port(&ns, "om0", &om_l2, &format!("p-{}", e.name))?;
            addr(&ns, "om0", &format!("{}/27", e.om_ip))?;
            if let Some(tip) = e.traffic_ip {
                bridge_port(&ns, "tr0", &tr_l2, &format!("p-{}", e.name))?;
                addr(&ns, "tr0", &format!("{tip}/27"))?;
            }
            if e.route_back {
                sh::ip(
                    &ns,
                    &["route", "add", CLIENT_PREFIX, "via", &e.edge_ip.to_string()],
                )?;
            }
            let mut vip: Vec<String> = vec!["route".into(), "add".into(), format!("{VIP}/32")];
            match e.vip_nodes.as_slice() {
                [] => {}
                [j] => {
                    vip.extend([
                        "via".into(),
                        t.nodes[*j].om_ip.to_string(),
                        "dev".into(),
                        "om0".into(),
                    ]);
                    ip_strs(&ns, &vip)?;
                }
                many => {
                    for j in many {
                        vip.extend([
                            "nexthop".into(),
                            "via".into(),
                            t.nodes[*j].om_ip.to_string(),
                            "dev".into(),
                            "om0".into(),
                        ]);
                    }
                    ip_strs(&ns, &vip)?;
                }
            }
            sh::in_ns(&ns, &["nft", "-f", "-"], Some(&router_observer()))?;
        }
        if t.entries.len() == 1 {
            // A single next hop: `nexthop` with one entry is fine for ip, but keep it plain.
            let e = &t.entries[0];
            sh::ip(
                &edge,
                &[
                    "route",
                    "add",
                    &format!("{VIP}/32"),
                    "via",
                    &e.uplink_ip.to_string(),
                ],
            )?;
        } else {
            ip_strs(&edge, &edge_mp)?;
        }

        // Further routers.
        for f in &t.further {
            let ns = self.ns(&f.name);
            bridge_port(&ns, "tr0", &tr_l2, &format!("p-{}", f.name))?;
            addr(&ns, "tr0", &format!("{}/27", f.ip))?;
            if let Some(g) = f.route_back {
                sh::ip(&ns, &["route", "add", CLIENT_PREFIX, "via", &g.to_string()])?;
            }
            sh::in_ns(&ns, &["nft", "-f", "-"], Some(&router_observer()))?;
        }

        // Nodes.
        for (n, kn) in t.nodes.iter().zip(&s.nodes) {
            let ns = self.ns(&n.name);
            bridge_port(&ns, NODE_OM_IF, &om_l2, &format!("p-{}", n.name))?;
            addr(&ns, NODE_OM_IF, &format!("{}/27", n.om_ip))?;
            if let Some(tip) = n.traffic_ip {
                bridge_port(&ns, NODE_TRAFFIC_IF, &tr_l2, &format!("p-{}", n.name))?;
                addr(&ns, NODE_TRAFFIC_IF, &format!("{tip}/27"))?;
            }
            bridge_port(&ns, NODE_CLUSTER_IF, &k8s_l2, &format!("p-{}", n.name))?;
            addr(&ns, NODE_CLUSTER_IF, &format!("{}/24", n.internal_ip))?;
            ip_strs(&ns, &default_route_args(&n.default, None))?;
            crate::lab::pod_routes(
                &ns,
                s.nodes
                    .iter()
                    .filter(|o| o.name != n.name)
                    .map(|o| (o.pod_cidr.as_str(), o.internal_ip)),
            )?;
            for r in &n.rules {
                if let Some(g) = r.gateway {
                    ip_strs(&ns, &default_route_args(&[g], Some(r.table)))?;
                }
                let sel = match r.selector {
                    Selector::FromVip => ["from".to_string(), format!("{VIP}/32")],
                    Selector::ToClient => ["to".to_string(), CLIENT_PREFIX.to_string()],
                    Selector::IifOm => ["iif".to_string(), NODE_OM_IF.to_string()],
                    Selector::FwmarkMasq => ["fwmark".to_string(), "0x4000/0x4000".to_string()],
                };
                sh::ip(
                    &ns,
                    &[
                        "rule",
                        "add",
                        &sel[0],
                        &sel[1],
                        "priority",
                        &r.priority.to_string(),
                        "lookup",
                        &r.table.to_string(),
                    ],
                )?;
            }
            sh::sysctl(
                &ns,
                &format!("net.ipv4.conf.{NODE_OM_IF}.rp_filter"),
                &n.rp_om.to_string(),
            )?;
            if n.traffic_ip.is_some() {
                sh::sysctl(
                    &ns,
                    &format!("net.ipv4.conf.{NODE_TRAFFIC_IF}.rp_filter"),
                    &n.rp_traffic.to_string(),
                )?;
            }
            sh::sysctl(&ns, "net.ipv4.conf.all.rp_filter", &n.rp_all.to_string())?;
            let (iptables, nft) = node_rules(&t, &s, kn);
            if let Some(rules) = iptables {
                sh::in_ns(&ns, &["iptables-restore"], Some(&rules))?;
            }
            if let Some(rules) = nft {
                sh::in_ns(&ns, &["nft", "-f", "-"], Some(&rules))?;
            }
            sh::in_ns(&ns, &["nft", "-f", "-"], Some(&node_observer()))?;
        }

        // Pods (Calico style, as in the fixed lab).
        for p in &s.pods {
            let pns = crate::lab::pod_ns(&self.prefix, p);
            let nns = self.ns(&p.node);
            let cali = cali_name(p);
            veth(&pns, "eth0", &nns, &cali)?;
            addr(&pns, "eth0", &format!("{}/32", p.ip))?;
            sh::ip(
                &pns,
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
                &pns,
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
            sh::sysctl(&nns, &format!("net.ipv4.conf.{cali}.proxy_arp"), "1")?;
            sh::ip(
                &nns,
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

        // zebra on every router (it reads the kernel routes added above).
        for (r, vrf) in t.routers() {
            let inst = Instance {
                ns: self.ns(&r),
                dir: self.dir.join("frr").join(&r),
                zebra: true,
                vrf: Some(vrf),
            };
            self.frr.push((r.clone(), inst.clone()));
            frr::start(&inst, "")?;
        }
        self.servers = Some(PodServers::start(&self.prefix, &s)?);
        self.wait_zebra(Duration::from_secs(20))
    }

    /// Waits until every zebra shows the kernel routes the snapshot needs.
    fn wait_zebra(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        for (r, inst) in &self.frr {
            let mut want: Vec<String> = Vec::new();
            if let Some(e) = self.topo.entries.iter().find(|e| e.name == *r) {
                if e.route_back {
                    want.push(CLIENT_PREFIX.to_string());
                }
                if !e.vip_nodes.is_empty() {
                    want.push(format!("{VIP}/32"));
                }
            }
            if let Some(f) = self.topo.further.iter().find(|f| f.name == *r) {
                if f.route_back.is_some() {
                    want.push(CLIENT_PREFIX.to_string());
                }
            }
            loop {
                let ok = inst
                    .vtysh("show ip route json")
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .is_some_and(|v| want.iter().all(|p| v.get(p).is_some()));
                if ok {
                    break;
                }
                if start.elapsed() > timeout {
                    return Err(LabError::Other(format!(
                        "zebra of {r} did not show {want:?} within {timeout:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The snapshot (docs/snapshot.md layout) of the running topology.
    pub fn snapshot(&self, dir: &Path) -> Result<()> {
        let s = &self.scenario;
        let w = |rel: &str, text: &str| -> Result<()> {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent.display()))?;
            }
            std::fs::write(&path, text).map_err(io_err(path.display()))
        };
        w("kubepath.yaml", &self.manifest())?;
        w("cluster/nodes.yaml", &crate::k8s::nodes(s))?;
        w("cluster/pods.yaml", &crate::k8s::pods(s))?;
        w("cluster/services.yaml", &crate::k8s::services(s))?;
        w(
            "cluster/endpointslices.yaml",
            &crate::k8s::endpoint_slices(s),
        )?;
        w("cluster/ingress.yaml", &crate::k8s::ingress())?;
        w("dns/kubepath.test.zone", &crate::snapshot::zone())?;
        for n in &self.topo.nodes {
            let ns = self.ns(&n.name);
            let base = format!("nodes/{}", n.name);
            w(
                &format!("{base}/ip-addr.json"),
                &sh::ip(&ns, &["-j", "addr"])?,
            )?;
            w(
                &format!("{base}/ip-route.json"),
                &sh::ip(&ns, &["-j", "route", "show", "table", "all"])?,
            )?;
            w(
                &format!("{base}/ip-rule.json"),
                &sh::ip(&ns, &["-j", "rule"])?,
            )?;
            w(
                &format!("{base}/iptables-save.txt"),
                &sh::in_ns(&ns, &["iptables-save"], None)?,
            )?;
            if self.topo.proxy_mode == ProxyMode::Nftables {
                w(
                    &format!("{base}/nft-ruleset.txt"),
                    &sh::in_ns(&ns, &["nft", "list", "ruleset"], None)?,
                )?;
            }
            w(
                &format!("{base}/sysctl.txt"),
                &crate::snapshot::node_sysctls(&ns)?,
            )?;
        }
        for (r, inst) in &self.frr {
            let base = format!("routers/{r}");
            w(
                &format!("{base}/show-ip-route-vrf-all.json"),
                &inst.vtysh("show ip route vrf all json")?,
            )?;
            w(
                &format!("{base}/show-interface.json"),
                &inst.vtysh("show interface json")?,
            )?;
        }
        Ok(())
    }

    /// `kubepath.yaml`: the client enters at every entry router (the edge splits evenly).
    pub fn manifest(&self) -> String {
        let mut s = String::from("apiVersion: kubepath.dev/v1\nkind: Manifest\n\n");
        let _ = writeln!(
            s,
            "clients:\n  - name: lab-client\n    prefixes: [{CLIENT_PREFIX}]\n    entry:"
        );
        for e in &self.topo.entries {
            let _ = writeln!(s, "      - router: {}\n        vrf: {OM_VRF}", e.name);
        }
        s.push_str("\ninterfaces:\n");
        let _ = writeln!(
            s,
            "  - node: \"*\"\n    interface: {NODE_OM_IF}\n    vrf: {OM_VRF}"
        );
        if !self.topo.further.is_empty() {
            let _ = writeln!(
                s,
                "  - node: \"*\"\n    interface: {NODE_TRAFFIC_IF}\n    vrf: {}",
                self.topo.traffic_vrf
            );
        }
        s.push_str("\nrouters:\n");
        for (r, _) in self.topo.routers() {
            let _ = writeln!(s, "  {r}:\n    ecmp_hash: l4");
        }
        s
    }

    /// Opens `opts.connections` connections from the client and reads the verdict of each
    /// from the evidence.
    pub fn observe(&self, opts: &ObserveOptions) -> Result<Observation> {
        let t = &self.topo;
        let s = &self.scenario;
        let routers = t.routers();
        for n in &t.nodes {
            let ns = self.ns(&n.name);
            for set in ["syn_in", "fwd_in"] {
                sh::in_ns(
                    &ns,
                    &["nft", "flush", "set", "ip", "kubepath_lab", set],
                    None,
                )?;
            }
            let _ = sh::in_ns(&ns, &["conntrack", "-F"], None);
        }
        for (r, _) in &routers {
            let ns = self.ns(r);
            for set in ["syn_in", "synack_in"] {
                sh::in_ns(
                    &ns,
                    &["nft", "flush", "set", "ip", "kubepath_lab", set],
                    None,
                )?;
            }
        }
        let mut rp_before = BTreeMap::new();
        for n in &t.nodes {
            rp_before.insert(n.name.clone(), rp_filter_counter(&self.ns(&n.name))?);
        }
        let mut return_routers = BTreeMap::new();
        for (r, vrf) in &routers {
            return_routers.insert(
                r.clone(),
                ReturnRouter {
                    vrf: vrf.to_string(),
                    route_to_client: route_to(&self.ns(r), CLIENT_IP)?,
                },
            );
        }
        let mut leaf_nexthops = BTreeMap::new();
        for e in &t.entries {
            leaf_nexthops.insert(
                e.name.clone(),
                crate::observe::vip_nexthops(&self.ns(&e.name))?,
            );
        }

        // Each ingress pod records the SYNs that reach it (source . port, as the node's
        // conntrack entry has them as reply destination): a fact of the kernel, where the
        // pod's half-open sockets (`ss state syn-recv`) may already be gone (a fatal ICMP
        // error drops them; how many the routers send depends on timing).
        for p in s.ingress_pods() {
            let ns = crate::lab::pod_ns(&self.prefix, p);
            sh::in_ns(&ns, &["nft", "-f", "-"], Some(&pod_observer()))?;
        }
        let results = run_client(&self.ns("client"), opts)?;
        let ports: Vec<u16> = results.iter().map(|r| r.0).collect();
        std::thread::sleep(Duration::from_millis(300));

        let mut node_syn: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
        let mut node_fwd: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
        let mut node_ct: BTreeMap<String, BTreeMap<u16, CtEntry>> = BTreeMap::new();
        let mut rp_filter_drops = BTreeMap::new();
        for n in &t.nodes {
            let ns = self.ns(&n.name);
            node_syn.insert(n.name.clone(), nft_set(&ns, "syn_in")?);
            node_fwd.insert(n.name.clone(), nft_set(&ns, "fwd_in")?);
            node_ct.insert(n.name.clone(), crate::observe::client_conntrack(&ns));
            let after = rp_filter_counter(&ns)?;
            let before = rp_before.get(&n.name).copied().unwrap_or(0);
            rp_filter_drops.insert(n.name.clone(), after.saturating_sub(before));
        }
        let mut router_syn = BTreeMap::new();
        let mut router_synack = BTreeMap::new();
        for (r, _) in &routers {
            let ns = self.ns(r);
            router_syn.insert(r.clone(), nft_set(&ns, "syn_in")?);
            router_synack.insert(r.clone(), nft_set(&ns, "synack_in")?);
        }
        let edge_choice = route_get_batch(&self.ns("edge"), "c0", &ports)?;
        let mut entry_choice: BTreeMap<String, BTreeMap<u16, Option<String>>> = BTreeMap::new();
        for e in &t.entries {
            let mine: Vec<u16> = ports
                .iter()
                .zip(&edge_choice)
                .filter(|(_, g)| g.as_deref() == Some(&e.uplink_ip.to_string()))
                .map(|(p, _)| *p)
                .collect();
            let got = route_get_batch(&self.ns(&e.name), "up0", &mine)?;
            entry_choice.insert(e.name.clone(), mine.into_iter().zip(got).collect());
        }

        // Where a node forwards the DNATed SYN (the kernel's own `ip route get`, with the
        // masquerade mark for externalTrafficPolicy Cluster), then router by router: for
        // SYNs that got no answer at all (policy rules can send them to a router).
        let mark = if t.etp_local { "0" } else { "0x4000" };
        let mut fates: BTreeMap<(String, Ipv4Addr), &'static str> = BTreeMap::new();
        for (node, m) in &node_ct {
            for e in m.values() {
                let key = (node.clone(), e.reply_src);
                if fates.contains_key(&key) || e.state.as_deref() != Some("SYN_SENT") {
                    continue;
                }
                let fate = self.request_fate(node, e.reply_src, mark)?;
                fates.insert(key, fate);
            }
        }

        // The ingress pods' half-open connections (`ss state syn-recv`): peer address and
        // port, which are the node conntrack entry's reply destination.
        let mut syn_recv: BTreeMap<Ipv4Addr, BTreeSet<(Ipv4Addr, u16)>> = BTreeMap::new();
        for p in s.ingress_pods() {
            let ns = crate::lab::pod_ns(&self.prefix, p);
            let out = sh::in_ns(&ns, &["ss", "-Htn", "state", "syn-recv"], None)?;
            let mut peers = parse_ss_peers(&out);
            let seen = sh::in_ns(
                &ns,
                &[
                    "nft",
                    "-j",
                    "list",
                    "set",
                    "ip",
                    "kubepath_lab_pod",
                    "syn_seen",
                ],
                None,
            )?;
            peers.extend(parse_nft_addr_ports(&seen));
            syn_recv.insert(p.ip, peers);
        }

        let mut anomalies = Vec::new();
        let mut connections = Vec::new();
        for ((sport, outcome, body), edge_gw) in results.into_iter().zip(edge_choice) {
            let leaf = t
                .entries
                .iter()
                .find(|e| router_syn.get(&e.name).is_some_and(|s| s.contains(&sport)))
                .map(|e| e.name.clone());
            let seen: Vec<&String> = node_syn
                .iter()
                .filter(|(_, set)| set.contains(&sport))
                .map(|(n, _)| n)
                .collect();
            if seen.len() > 1 {
                anomalies.push(format!("port {sport}: SYN seen on several nodes {seen:?}"));
            }
            let node = seen.first().map(|n| n.to_string());
            let forwarded = node
                .as_ref()
                .and_then(|n| node_fwd.get(n))
                .is_some_and(|s| s.contains(&sport));
            let ct = node
                .as_ref()
                .and_then(|n| node_ct.get(n))
                .and_then(|m| m.get(&sport));
            let ct_pod = ct.and_then(|e| s.pod_by_ip(e.reply_src)).map(|p| p.key());
            let body_pod = body.as_deref().and_then(|b| parse_body_field(b, "pod"));
            if let (Some(a), Some(b)) = (&ct_pod, &body_pod) {
                if a != b {
                    anomalies.push(format!(
                        "port {sport}: conntrack says {a}, the HTTP body says {b}"
                    ));
                }
            }
            let synack_seen_at: Vec<String> = router_synack
                .iter()
                .filter(|(_, set)| set.contains(&sport))
                .map(|(r, _)| r.clone())
                .collect();
            let route_get_leaf = edge_gw.as_ref().and_then(|g| {
                t.entries
                    .iter()
                    .find(|e| e.uplink_ip.to_string() == *g)
                    .map(|e| e.name.clone())
            });
            let route_get_node = route_get_leaf
                .as_ref()
                .and_then(|l| entry_choice.get(l))
                .and_then(|m| m.get(&sport))
                .cloned()
                .flatten()
                .and_then(|g| g.parse().ok())
                .and_then(|ip: Ipv4Addr| s.node_by_om_ip(ip))
                .map(|n| n.name.clone());
            let leaf_has_route = leaf
                .as_ref()
                .and_then(|l| leaf_nexthops.get(l))
                .is_some_and(|h| !h.is_empty());
            let request_fate = node.as_ref().zip(ct).and_then(|(n, e)| {
                (e.state.as_deref() == Some("SYN_SENT"))
                    .then(|| fates.get(&(n.clone(), e.reply_src)).copied())
                    .flatten()
            });
            let verdict = classify(
                &outcome,
                &Evidence {
                    request_fate,
                    leaf: leaf.as_deref(),
                    leaf_has_route,
                    node_saw_syn: node.is_some(),
                    forwarded,
                    conntrack: ct.is_some(),
                    synack_seen_at: &synack_seen_at,
                    routers: &return_routers,
                    topo: t,
                },
            );
            connections.push(ConnObservation {
                sport,
                verdict,
                outcome,
                leaf,
                node,
                ingress_pod: ct_pod.or(body_pod),
                backend_pod: body.as_deref().and_then(|b| parse_body_field(b, "backend")),
                seen_client: body.as_deref().and_then(|b| parse_body_field(b, "client")),
                synack_seen_at,
                conntrack_state: ct.and_then(|e| e.state.clone()),
                route_get_leaf,
                route_get_node,
                pod_syn_recv: ct.is_some_and(|e| {
                    e.reply_dport.is_some_and(|port| {
                        syn_recv
                            .get(&e.reply_src)
                            .is_some_and(|set| set.contains(&(e.reply_dst, port)))
                    })
                }),
            });
        }
        Ok(Observation {
            scenario: format!("fuzz seed {}", t.seed),
            connections,
            rp_filter_drops,
            leaf_nexthops,
            anomalies,
            return_routers,
        })
    }
}

impl FuzzLab {
    /// Where `node` sends the DNATed SYN to `pod` (`ip route get POD from CLIENT iif
    /// ccd_ecfe_om mark M`), followed router by router with `ip route get POD`: `no-route` at
    /// a router without a route, `routing-loop` when the routers send it in a circle,
    /// `dropped` otherwise (delivered to a node or pod: then something else dropped it).
    fn request_fate(&self, node: &str, pod: Ipv4Addr, mark: &str) -> Result<&'static str> {
        let first = sh::ip(
            &self.ns(node),
            &[
                "-j",
                "route",
                "get",
                &pod.to_string(),
                "from",
                &CLIENT_IP.to_string(),
                "iif",
                NODE_OM_IF,
                "mark",
                mark,
            ],
        );
        let gw = |out: &str| -> Option<Ipv4Addr> {
            let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
            v.get(0)?.get("gateway")?.as_str()?.parse().ok()
        };
        let Ok(first) = first else {
            return Ok("no-route");
        };
        let mut next = gw(&first);
        let mut visited = BTreeSet::new();
        while let Some(r) = next.and_then(|ip| self.topo.router_by_ip(ip)) {
            if !visited.insert(r.clone()) {
                return Ok("routing-loop");
            }
            match route_to(&self.ns(&r), pod)? {
                None => return Ok("no-route"),
                Some(g) => next = g.parse().ok(),
            }
        }
        // The SYN reaches the pod's node (and the pod) but no SYN-ACK comes back: a Calico
        // pod sends everything to 169.254.1.1, which its node answers by proxy ARP only when
        // the input route of the pod's own packets exists and passes the reverse-path check
        // (`arp_process` -> `ip_route_input`). The kernel's answer for that lookup tells
        // which: "Invalid argument" is the reverse-path check (`__fib_validate_source`),
        // an unreachable route is no route (docs/lab.md, seeds 114, 167 and 1044).
        Ok(self.pod_gateway_fate(pod)?.unwrap_or("dropped"))
    }

    /// Whether the pod at `pod` can reach its gateway 169.254.1.1: `None` if its node has an
    /// input route for it, else `rp-filter` or `no-route` as `ip route get` fails.
    fn pod_gateway_fate(&self, pod: Ipv4Addr) -> Result<Option<&'static str>> {
        let Some(p) = self.scenario.pod_by_ip(pod) else {
            return Ok(None);
        };
        let got = sh::ip(
            &self.ns(&p.node),
            &[
                "route",
                "get",
                "169.254.1.1",
                "from",
                &pod.to_string(),
                "iif",
                &cali_name(p),
            ],
        );
        match got {
            Ok(_) => Ok(None),
            Err(LabError::Command { stderr, .. }) if stderr.contains("Invalid argument") => {
                Ok(Some("rp-filter"))
            }
            Err(LabError::Command { stderr, .. }) if stderr.contains("unreachable") => {
                Ok(Some("no-route"))
            }
            Err(e) => Err(e),
        }
    }
}

/// The peers (address, port) of `ss -Htn state syn-recv` lines: `RECV-Q SEND-Q LOCAL PEER`.
pub fn parse_ss_peers(text: &str) -> BTreeSet<(Ipv4Addr, u16)> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|peer| {
            let (ip, port) = peer.rsplit_once(':')?;
            Some((ip.parse().ok()?, port.parse().ok()?))
        })
        .collect()
}

/// nftables in an ingress pod: every SYN that reaches it, by source address and port.
fn pod_observer() -> String {
    "table ip kubepath_lab_pod {}\ndelete table ip kubepath_lab_pod\ntable ip kubepath_lab_pod {\n  set syn_seen { type ipv4_addr . inet_service; size 65535; flags dynamic; }\n  chain pre {\n    type filter hook prerouting priority -400; policy accept;\n    tcp flags & (syn|ack) == syn update @syn_seen { ip saddr . tcp sport }\n  }\n}\n".to_string()
}

/// The `ipv4_addr . inet_service` elements of `nft -j list set` output.
pub fn parse_nft_addr_ports(json: &str) -> BTreeSet<(Ipv4Addr, u16)> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    let mut out = BTreeSet::new();
    let items = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten();
    for e in items
        .filter_map(|i| i.get("set")?.get("elem")?.as_array())
        .flatten()
    {
        // `{"concat": [..]}`, or `{"elem": {"val": {"concat": [..]}, ...}}` with a timeout.
        let c = e
            .get("concat")
            .or_else(|| e.get("elem")?.get("val")?.get("concat"))
            .and_then(|c| c.as_array());
        if let Some([a, p]) = c.map(Vec::as_slice) {
            if let (Some(a), Some(p)) = (a.as_str().and_then(|a| a.parse().ok()), p.as_u64()) {
                if let Ok(p) = u16::try_from(p) {
                    out.insert((a, p));
                }
            }
        }
    }
    out
}

/// What the kernel showed about one connection.
pub struct Evidence<'a> {
    /// For a SYN that got no answer (conntrack SYN_SENT): where the kernel's routes send it
    /// after the DNAT ([`FuzzLab::request_fate`]).
    pub request_fate: Option<&'static str>,
    pub leaf: Option<&'a str>,
    pub leaf_has_route: bool,
    pub node_saw_syn: bool,
    /// The node's forward hook saw the SYN (it passed the routing decision, rp_filter included).
    pub forwarded: bool,
    pub conntrack: bool,
    pub synack_seen_at: &'a [String],
    /// Every router: VRF and `ip route get <client>`.
    pub routers: &'a BTreeMap<String, ReturnRouter>,
    pub topo: &'a Topology,
}

/// The verdict of one connection, in kubepath's vocabulary.
///
/// A timeout is explained from the evidence: the SYN reached an entry router without a route
/// to the VIP and no node (`no-route`; the kernel rate-limits the router's ICMP errors with the
/// non-namespaced `net.ipv4.route.error_cost`); a node saw it on the om interface but its
/// forward hook did not (`rp-filter`: dropped by the routing decision's reverse-path check);
/// forwarded without a confirmed conntrack entry (`dropped`: filter FORWARD); the SYN-ACK
/// reached a router of another VRF than the request's (`asymmetric-return`), a router without
/// a route to the client (`no-route`), or routers whose routes to the client form a cycle
/// (`routing-loop`); otherwise `dropped`.
pub fn classify(outcome: &Outcome, ev: &Evidence<'_>) -> String {
    let v = match outcome {
        Outcome::Established {
            http_status: Some(200),
        } => "delivered",
        Outcome::Established { .. } => "http-error",
        Outcome::Refused => "refused",
        Outcome::Unreachable(_) => "no-route",
        Outcome::Error(_) => "error",
        Outcome::Timeout => {
            if !ev.node_saw_syn {
                if ev.leaf.is_some() && !ev.leaf_has_route {
                    "no-route"
                } else {
                    "dropped"
                }
            } else if !ev.forwarded {
                "rp-filter"
            } else if !ev.conntrack {
                "dropped"
            } else if let (Some(fate), true) = (ev.request_fate, ev.synack_seen_at.is_empty()) {
                fate
            } else {
                reply_verdict(ev)
            }
        }
    };
    v.to_string()
}

fn reply_verdict(ev: &Evidence<'_>) -> &'static str {
    let seen = ev.synack_seen_at;
    if seen.is_empty() {
        return "dropped";
    }
    if seen
        .iter()
        .any(|r| ev.routers.get(r).is_some_and(|rr| rr.vrf != OM_VRF))
    {
        return "asymmetric-return";
    }
    if seen.iter().any(|r| {
        ev.routers
            .get(r)
            .is_some_and(|rr| rr.route_to_client.is_none())
    }) {
        return "no-route";
    }
    // Follow the kernel's own routes to the client from a router that saw the SYN-ACK.
    for start in seen {
        let mut at = start.clone();
        let mut visited = BTreeSet::new();
        while visited.insert(at.clone()) {
            let Some(next) = ev
                .routers
                .get(&at)
                .and_then(|rr| rr.route_to_client.as_ref())
                .and_then(|g| g.parse::<Ipv4Addr>().ok())
                .and_then(|ip| ev.topo.router_by_ip(ip))
            else {
                break;
            };
            at = next;
        }
        if visited.contains(&at) && ev.routers.contains_key(&at) {
            // The walk stopped because it came back to a router it had visited.
            let next_known = ev
                .routers
                .get(&at)
                .and_then(|rr| rr.route_to_client.as_ref())
                .and_then(|g| g.parse::<Ipv4Addr>().ok())
                .and_then(|ip| ev.topo.router_by_ip(ip))
                .is_some();
            if next_known {
                return "routing-loop";
            }
        }
    }
    "dropped"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_concat_elements() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "ip", "name": "syn_seen", "table": "kubepath_lab_pod", "type": ["ipv4_addr", "inet_service"], "handle": 1, "size": 65535, "flags": ["dynamic"], "elem": [{"concat": ["10.33.151.71", 40001]}, {"concat": ["10.0.10.102", 40002]}]}}]}"#;
        let got: Vec<_> = parse_nft_addr_ports(j).into_iter().collect();
        assert_eq!(
            got,
            [
                ("10.0.10.102".parse().unwrap(), 40002),
                ("10.33.151.71".parse().unwrap(), 40001)
            ]
        );
        assert!(
            parse_nft_addr_ports(r#"{"nftables": [{"set": {"name": "syn_seen"}}]}"#).is_empty()
        );
    }

    #[test]
    fn ss_syn_recv_peers() {
        // `ss -Htn state syn-recv` (iproute2 6.1): no state column.
        let out =
            "0      0      192.168.4.11:80 10.0.10.101:49128\n0 0 192.168.4.11:80 10.0.10.102:3\n";
        let got = parse_ss_peers(out);
        assert!(got.contains(&(Ipv4Addr::new(10, 0, 10, 101), 49128)));
        assert!(got.contains(&(Ipv4Addr::new(10, 0, 10, 102), 3)));
        assert_eq!(got.len(), 2);
        assert!(parse_ss_peers("").is_empty());
    }

    fn rr(vrf: &str, route: Option<&str>) -> ReturnRouter {
        ReturnRouter {
            vrf: vrf.into(),
            route_to_client: route.map(str::to_string),
        }
    }

    #[test]
    fn verdicts_from_the_evidence() {
        // Seed 20 has two further routers (gw-1 10.33.152.65, gw-2 .66); only router_by_ip
        // is used.
        let topo = Topology::generate(20);
        assert_eq!(topo.further.len(), 2);
        let mut routers = BTreeMap::new();
        routers.insert("leaf-1".to_string(), rr(OM_VRF, Some("10.90.0.2")));
        routers.insert("gw-1".to_string(), rr(OM_VRF, Some("10.33.152.66")));
        routers.insert("gw-2".to_string(), rr(OM_VRF, Some("10.33.152.65")));
        routers.insert("gw-3".to_string(), rr(OM_VRF, None));
        routers.insert("gw-9".to_string(), rr("traffic_vr", None));
        let seen = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ev = |synack: &[String], fate: Option<&'static str>| Evidence {
            request_fate: fate,
            leaf: Some("leaf-1"),
            leaf_has_route: true,
            node_saw_syn: true,
            forwarded: true,
            conntrack: true,
            synack_seen_at: synack.to_vec().leak(),
            routers: Box::leak(Box::new(routers.clone())),
            topo: Box::leak(Box::new(topo.clone())),
        };
        let t = Outcome::Timeout;
        assert_eq!(
            classify(&t, &ev(&seen(&["gw-9"]), None)),
            "asymmetric-return"
        );
        assert_eq!(classify(&t, &ev(&seen(&["gw-3"]), None)), "no-route");
        // gw-1 and gw-2 (10.33.152.65/.66) route the client to each other.
        assert_eq!(
            classify(&t, &ev(&seen(&["gw-1", "gw-2"]), None)),
            "routing-loop"
        );
        assert_eq!(classify(&t, &ev(&[], None)), "dropped");
        assert_eq!(classify(&t, &ev(&[], Some("no-route"))), "no-route");
        let no_fwd = Evidence {
            forwarded: false,
            ..ev(&[], None)
        };
        assert_eq!(classify(&t, &no_fwd), "rp-filter");
        let no_ct = Evidence {
            conntrack: false,
            ..ev(&[], None)
        };
        assert_eq!(classify(&t, &no_ct), "dropped");
        let no_vip = Evidence {
            node_saw_syn: false,
            leaf_has_route: false,
            ..ev(&[], None)
        };
        assert_eq!(classify(&t, &no_vip), "no-route");
        let ok = Outcome::Established {
            http_status: Some(200),
        };
        assert_eq!(classify(&ok, &ev(&[], None)), "delivered");
        let bad = Outcome::Established {
            http_status: Some(502),
        };
        assert_eq!(classify(&bad, &ev(&[], None)), "http-error");
    }
}
