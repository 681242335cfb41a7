//! `kubepath lab snapshot DIR`: the lab's real command outputs, laid out as a kubepath
//! snapshot (docs/snapshot.md).
//!
//! ```text
//! DIR/kubepath.yaml                    the client's entry points (both leaves, VRF om_vr)
//! DIR/cluster/*.yaml                   the Kubernetes and MetalLB objects the scenario stands for
//! DIR/nodes/<node>/ip-addr.json        ip -j addr
//! DIR/nodes/<node>/ip-route.json       ip -j route show table all
//! DIR/nodes/<node>/ip-rule.json        ip -j rule
//! DIR/nodes/<node>/iptables-save.txt   iptables-save
//! DIR/nodes/<node>/nft-ruleset.txt     nft list ruleset (kube-proxy in nftables mode only)
//! DIR/nodes/<node>/sysctl.txt          sysctl of forwarding, rp_filter and multipath hashing
//! DIR/routers/<router>/…               vtysh: show ip bgp vrf all json, and FRR's default text
//!                                      of show ip bgp vrf V and show ip bgp vrf all (what
//!                                      operators paste), show ip route vrf all json,
//!                                      show interface json
//! DIR/dns/kubepath.test.zone           the zone with the Ingress host
//! ```
//!
//! Only the nodes and the routers of the fabric (the two leaves and the traffic router) are
//! collected; the edge router in front of the leaves stands for "the client's network", which
//! the manifest's `clients` entry describes instead.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::k8s;
use crate::lab::Lab;
use crate::scenario::{
    ProxyMode, Scenario, CLIENT_PREFIX, HOST, NODE_OM_IF, NODE_TRAFFIC_IF, OM_VRF, VIP,
};
use crate::sh::{self, io_err, Result};

/// The files written, relative to the snapshot root.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFiles {
    pub root: PathBuf,
    pub files: Vec<String>,
}

impl SnapshotFiles {
    fn write(&mut self, rel: &str, text: &str) -> Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent.display()))?;
        }
        std::fs::write(&path, text).map_err(io_err(path.display()))?;
        self.files.push(rel.to_string());
        Ok(())
    }
}

/// The snapshot manifest for the lab's client.
pub fn manifest(scenario: &Scenario) -> String {
    let mut s = String::from("apiVersion: kubepath.dev/v1\nkind: Manifest\n\n");
    s.push_str("# The lab's client sits behind an edge router that splits its flows evenly over\n# both leaves (static ECMP route); the leaves then hash the 5-tuple over the BGP next hops.\n");
    let _ = writeln!(
        s,
        "clients:\n  - name: lab-client\n    prefixes: [{CLIENT_PREFIX}]\n    entry:"
    );
    for l in &scenario.leaves {
        let _ = writeln!(s, "      - router: {}\n        vrf: {OM_VRF}", l.name);
    }
    s.push_str("\n# Each router namespace is one VRF (FRR runs with -o NAME); the nodes' interfaces\n# follow the routers on the same subnet, stated here as well.\ninterfaces:\n");
    let _ = writeln!(
        s,
        "  - node: \"*\"\n    interface: {NODE_OM_IF}\n    vrf: {OM_VRF}\n  - node: \"*\"\n    interface: {NODE_TRAFFIC_IF}\n    vrf: {}",
        scenario.traffic_vrf
    );
    s.push_str("\n# The leaves run Linux with fib_multipath_hash_policy=3, fields 0x37: a hash of the\n# 5-tuple picks one next hop, each next hop getting 1/N of the flows.\nrouters:\n");
    for l in &scenario.leaves {
        let _ = writeln!(s, "  {}:\n    ecmp_hash: l4", l.name);
    }
    s
}

/// The DNS zone with the Ingress host.
pub fn zone() -> String {
    let name = HOST.trim_end_matches(".kubepath.test");
    format!(
        "$ORIGIN kubepath.test.\n$TTL 300\n@\tIN\tSOA\tns1.kubepath.test. hostmaster.kubepath.test. (\n\t\t2026010101 ; serial\n\t\t3600       ; refresh\n\t\t600        ; retry\n\t\t86400      ; expire\n\t\t300 )      ; minimum\n\tIN\tNS\tns1.kubepath.test.\nns1\tIN\tA\t10.210.150.81\n{name}\tIN\tA\t{VIP}\n"
    )
}

/// Collects the snapshot of a running lab into `dir` (created if missing).
pub fn collect(lab: &Lab, dir: &Path) -> Result<SnapshotFiles> {
    let s = &lab.scenario;
    let mut out = SnapshotFiles {
        root: dir.to_path_buf(),
        files: Vec::new(),
    };
    out.write("kubepath.yaml", &manifest(s))?;
    out.write("cluster/nodes.yaml", &k8s::nodes(s))?;
    out.write("cluster/pods.yaml", &k8s::pods(s))?;
    out.write("cluster/services.yaml", &k8s::services(s))?;
    out.write("cluster/endpointslices.yaml", &k8s::endpoint_slices(s))?;
    out.write("cluster/ingress.yaml", &k8s::ingress())?;
    out.write("cluster/metallb.yaml", &k8s::metallb(s))?;
    out.write("dns/kubepath.test.zone", &zone())?;

    for n in &s.nodes {
        let ns = lab.ns(&n.name);
        let base = format!("nodes/{}", n.name);
        out.write(
            &format!("{base}/ip-addr.json"),
            &sh::ip(&ns, &["-j", "addr"])?,
        )?;
        out.write(
            &format!("{base}/ip-route.json"),
            &sh::ip(&ns, &["-j", "route", "show", "table", "all"])?,
        )?;
        out.write(
            &format!("{base}/ip-rule.json"),
            &sh::ip(&ns, &["-j", "rule"])?,
        )?;
        out.write(
            &format!("{base}/iptables-save.txt"),
            &sh::in_ns(&ns, &["iptables-save"], None)?,
        )?;
        if s.proxy_mode == ProxyMode::Nftables {
            // The whole ruleset as an operator collects it: kube-proxy's table and the lab's
            // own observer table (a filter chain at -400 with policy accept).
            out.write(
                &format!("{base}/nft-ruleset.txt"),
                &sh::in_ns(&ns, &["nft", "list", "ruleset"], None)?,
            )?;
        }
        out.write(&format!("{base}/sysctl.txt"), &node_sysctls(&ns)?)?;
    }

    for (role, inst) in &lab.frr {
        if !(role.starts_with("leaf-") || role == "trafgw") {
            continue;
        }
        let base = format!("routers/{role}");
        out.write(
            &format!("{base}/show-ip-bgp-vrf-all.json"),
            &inst.vtysh("show ip bgp vrf all json")?,
        )?;
        // The text table of the one VRF, with the command echoed as an operator's copy would
        // show it: FRR's text header says only "vrf id 0", the echo names the VRF.
        let vrf = inst.vrf.unwrap_or("default");
        let cmd = format!("show ip bgp vrf {vrf}");
        let text = inst.vtysh(&cmd)?;
        out.write(
            &format!("{base}/show-ip-bgp.txt"),
            &format!("{role}# {cmd}\n{text}"),
        )?;
        // Every VRF in FRR's text, `Instance NAME:` per VRF (FRR 8.4.4).
        let cmd = "show ip bgp vrf all";
        let text = inst.vtysh(cmd)?;
        out.write(
            &format!("{base}/show-ip-bgp-vrf-all.txt"),
            &format!("{role}# {cmd}\n{text}"),
        )?;
        out.write(
            &format!("{base}/show-ip-route-vrf-all.json"),
            &inst.vtysh("show ip route vrf all json")?,
        )?;
        out.write(
            &format!("{base}/show-interface.json"),
            &inst.vtysh("show interface json")?,
        )?;
    }
    Ok(out)
}

/// The sysctls a trace reads from a node (forwarding, multipath hashing, rp_filter of `all`,
/// `default` and every link), as `sysctl KEY...` prints them in namespace `ns`.
pub(crate) fn node_sysctls(ns: &str) -> Result<String> {
    let mut keys = vec![
        "net.ipv4.ip_forward".to_string(),
        "net.ipv4.fib_multipath_hash_policy".into(),
        "net.ipv4.fib_multipath_hash_fields".into(),
        "net.ipv4.conf.all.rp_filter".into(),
        "net.ipv4.conf.default.rp_filter".into(),
    ];
    let links = sh::ip(ns, &["-j", "link"])?;
    let v: serde_json::Value = serde_json::from_str(&links).unwrap_or_default();
    for l in v.as_array().into_iter().flatten() {
        if let Some(name) = l.get("ifname").and_then(|x| x.as_str()) {
            keys.push(format!("net.ipv4.conf.{name}.rp_filter"));
        }
    }
    let mut args = vec!["sysctl"];
    args.extend(keys.iter().map(String::as_str));
    sh::in_ns(ns, &args, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_the_host() {
        let z = zone();
        assert!(z.contains("lab\tIN\tA\t10.33.151.160"));
        assert!(z.starts_with("$ORIGIN kubepath.test."));
    }

    #[test]
    fn manifest_enters_at_both_leaves() {
        let m = manifest(&Scenario::by_name("seed").unwrap());
        assert!(m.contains("prefixes: [10.210.150.80/28]"));
        assert!(m.contains("- router: leaf-a\n        vrf: om_vr"));
        assert!(m.contains("- router: leaf-b\n        vrf: om_vr"));
        assert!(m.contains("interface: ecfe_traf1\n    vrf: traffic_vr"));
    }

    #[test]
    fn manifest_snapshot() {
        insta::assert_snapshot!(manifest(&Scenario::by_name("seed").unwrap()));
    }
}
