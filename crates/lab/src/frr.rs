//! FRR per network namespace: configuration files and daemon start-up.
//!
//! Facts this relies on (FRR 8.4 on this machine, checked with `zebra --help` and by running
//! the daemons in a namespace):
//! * zebra runs as user `frr` (it has no `-S`); bgpd runs with `-S` (skip the user switch).
//! * Each instance gets its own zebra socket (`-z`), vty socket directory (`--vty_socket`),
//!   pid files (`-i`), no vty TCP port (`-P 0`) and config file (`-f`).
//! * `-o NAME` names the default VRF, so `show ip bgp vrf all json` reports the leaves' table
//!   as `om_vr` and the traffic router's as `traffic_vr` although the kernel here has no VRF
//!   devices: each router namespace is one VRF.
//! * FRR 8 needs `no bgp ebgp-requires-policy` to exchange eBGP routes without route-maps, and
//!   `no bgp network import-check` to announce a `network` that is not in the RIB (the speaker
//!   nodes run bgpd with `-Z`, without zebra, as MetalLB's speaker announces a VIP it does not
//!   route itself).
//! * `bgp default show-nexthop-hostname` (on by default in FRR's `datacenter` profile, checked
//!   by turning it off there) makes the routers' `show ip bgp` text print next hops as
//!   `10.33.151.68(node-1)`, from the hostname every FRR peer advertises by default: the text an
//!   operator of such a fabric pastes, which the snapshot keeps beside the JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::scenario::{Leaf, Node, Scenario, LEAF_ASN, NODE_ASN, VIP};
use crate::sh::{self, io_err, LabError, Result};

pub const FRR_DIR: &str = "/usr/lib/frr";

/// The BGP configuration of a leaf: eBGP to every speaker node, ECMP over up to 16 paths.
pub fn leaf_bgpd_conf(leaf: &Leaf, scenario: &Scenario) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "frr defaults traditional\nhostname {}\n!", leaf.name);
    let _ = writeln!(s, "router bgp {LEAF_ASN}");
    let _ = writeln!(s, " bgp router-id {}", leaf.om_ip);
    s.push_str(" no bgp ebgp-requires-policy\n bgp default show-nexthop-hostname\n");
    // The seed's ECFE config: hold time 3 s.
    s.push_str(" timers bgp 1 3\n");
    for n in &scenario.nodes {
        let _ = writeln!(s, " neighbor {} remote-as {NODE_ASN}", n.om_ip);
        let _ = writeln!(s, " neighbor {} timers connect 1", n.om_ip);
        let _ = writeln!(s, " neighbor {} advertisement-interval 0", n.om_ip);
    }
    s.push_str(" !\n address-family ipv4 unicast\n  redistribute connected\n  maximum-paths 16\n exit-address-family\nexit\n!\n");
    s
}

/// The BGP configuration of a speaker node (a MetalLB speaker in BGP mode): peers with both
/// leaves and announces the VIP when MetalLB would.
pub fn node_bgpd_conf(node: &Node, scenario: &Scenario, announce: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "frr defaults traditional\nhostname {}\n!", node.name);
    let _ = writeln!(s, "router bgp {NODE_ASN}");
    let _ = writeln!(s, " bgp router-id {}", node.om_ip);
    s.push_str(" no bgp ebgp-requires-policy\n no bgp network import-check\n timers bgp 1 3\n");
    for l in &scenario.leaves {
        let _ = writeln!(s, " neighbor {} remote-as {LEAF_ASN}", l.om_ip);
        let _ = writeln!(s, " neighbor {} timers connect 1", l.om_ip);
        let _ = writeln!(s, " neighbor {} advertisement-interval 0", l.om_ip);
    }
    s.push_str(" !\n address-family ipv4 unicast\n");
    if announce {
        let _ = writeln!(s, "  network {VIP}/32");
    }
    s.push_str(" exit-address-family\nexit\n!\n");
    s
}

/// The traffic VRF's router: no BGP neighbours, its connected subnet only.
pub fn trafgw_bgpd_conf() -> String {
    format!(
        "frr defaults traditional\nhostname trafgw\n!\nrouter bgp {LEAF_ASN}\n bgp router-id 10.33.152.65\n no bgp ebgp-requires-policy\n bgp default show-nexthop-hostname\n !\n address-family ipv4 unicast\n  redistribute connected\n exit-address-family\nexit\n!\n"
    )
}

/// One FRR instance of the lab.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The network namespace it runs in.
    pub ns: String,
    /// Its directory (configs, sockets, pid files, logs).
    pub dir: PathBuf,
    /// Whether zebra runs too (routers) or bgpd alone with `-Z` (speaker nodes).
    pub zebra: bool,
    /// The name of the default VRF (`-o`).
    pub vrf: Option<&'static str>,
}

impl Instance {
    pub fn pid_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.dir.join("bgpd.pid")];
        if self.zebra {
            v.push(self.dir.join("zebra.pid"));
        }
        v
    }

    /// `vtysh --vty_socket DIR -c CMD`.
    pub fn vtysh(&self, command: &str) -> Result<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        sh::run(&["vtysh", "--vty_socket", &dir, "-c", command])
    }
}

fn frr_ids() -> Result<(u32, u32)> {
    let name = std::ffi::CString::new("frr").map_err(|e| LabError::Other(e.to_string()))?;
    // SAFETY: getpwnam takes a valid C string and returns NULL or a pointer to static data
    // that we read immediately.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(LabError::Other(
            "user `frr` not found (install the Debian package `frr`)".into(),
        ));
    }
    // SAFETY: pw is non-null and points to a valid passwd struct.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok((uid, gid))
}

fn wait_for(path: &Path, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            return Err(LabError::Other(format!(
                "{} did not appear within {:?}",
                path.display(),
                timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Writes the configs and starts the daemons of `inst` with `bgpd_conf` (empty: zebra only).
pub fn start(inst: &Instance, bgpd_conf: &str) -> Result<()> {
    let (uid, gid) = frr_ids()?;
    std::fs::create_dir_all(&inst.dir).map_err(io_err(inst.dir.display()))?;
    std::os::unix::fs::chown(&inst.dir, Some(uid), Some(gid))
        .map_err(io_err(inst.dir.display()))?;
    let d = |f: &str| inst.dir.join(f).to_string_lossy().into_owned();
    let bgpd_path = d("bgpd.conf");
    std::fs::write(&bgpd_path, bgpd_conf).map_err(io_err(&bgpd_path))?;
    std::os::unix::fs::chown(&bgpd_path, Some(uid), Some(gid)).map_err(io_err(&bgpd_path))?;
    let dir = inst.dir.to_string_lossy().into_owned();
    let zserv = d("zserv.api");
    let zebra_bin = format!("{FRR_DIR}/zebra");
    let bgpd_bin = format!("{FRR_DIR}/bgpd");
    let mut vrf_args: Vec<&str> = Vec::new();
    if let Some(v) = inst.vrf {
        vrf_args.extend(["-o", v]);
    }
    if inst.zebra {
        let zebra_conf = d("zebra.conf");
        std::fs::write(&zebra_conf, "!\n").map_err(io_err(&zebra_conf))?;
        std::os::unix::fs::chown(&zebra_conf, Some(uid), Some(gid)).map_err(io_err(&zebra_conf))?;
        let pid = d("zebra.pid");
        let log = format!("file:{}", d("zebra.log"));
        let mut args = vec![
            zebra_bin.as_str(),
            "-d",
            "-u",
            "frr",
            "-g",
            "frr",
            "-z",
            &zserv,
            "--vty_socket",
            &dir,
            "-P",
            "0",
            "-i",
            &pid,
            "-f",
            &zebra_conf,
            "--log",
            &log,
        ];
        args.extend(&vrf_args);
        sh::in_ns(&inst.ns, &args, None)?;
        wait_for(Path::new(&zserv), Duration::from_secs(10))?;
    }
    if bgpd_conf.is_empty() {
        // zebra only (the fuzz topologies' routers: kernel routes, no BGP).
        return Ok(());
    }
    let pid = d("bgpd.pid");
    let log = format!("file:{}", d("bgpd.log"));
    let mut args = vec![
        bgpd_bin.as_str(),
        "-d",
        "-S",
        "--vty_socket",
        &dir,
        "-P",
        "0",
        "-i",
        &pid,
        "-f",
        &bgpd_path,
        "--log",
        &log,
    ];
    if inst.zebra {
        args.extend(["-z", zserv.as_str()]);
    } else {
        args.push("-Z");
    }
    args.extend(&vrf_args);
    sh::in_ns(&inst.ns, &args, None)?;
    wait_for(Path::new(&pid), Duration::from_secs(10))?;
    Ok(())
}

/// The pid in `pid_file` if it names a running FRR process (the command line is checked, so a
/// recycled pid is never signalled).
pub fn frr_pid(pid_file: &Path) -> Option<i32> {
    let pid = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    is_ours(pid, FRR_DIR).then_some(pid)
}

/// Whether `pid` is alive (not a zombie) and its command line contains `marker`.
pub fn is_ours(pid: i32, marker: &str) -> bool {
    if pid <= 1 || !alive(pid) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(marker)
}

/// Whether `pid` exists and is not a zombie. (Daemons the lab started double-fork, so after
/// they exit they may linger as zombies until init reaps them.)
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Sends SIGTERM to every pid, waits up to 2 s for all of them, then SIGKILLs the rest.
/// Callers pass only pids checked with [`is_ours`] / [`frr_pid`].
pub fn stop_pids(pids: &[i32]) {
    for &pid in pids {
        // SAFETY: kill with a positive pid that belongs to a process the lab started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) && start.elapsed() < Duration::from_secs(2) {
        for &pid in pids {
            // Reap it if it is our own child (the pod-server process of `lab up` can be).
            // SAFETY: waitpid with WNOHANG; harmless if it is not our child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for &pid in pids {
        if alive(pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_have_what_frr8_needs() {
        let s = Scenario::by_name("seed").unwrap();
        let leaf = leaf_bgpd_conf(&s.leaves[0], &s);
        assert!(leaf.contains("no bgp ebgp-requires-policy"));
        assert!(leaf.contains("maximum-paths 16"));
        assert!(leaf.contains("bgp default show-nexthop-hostname"));
        assert_eq!(leaf.matches("remote-as 4259841731").count(), 3);
        let node = node_bgpd_conf(&s.nodes[0], &s, true);
        assert!(node.contains("network 10.33.151.160/32"));
        assert!(node.contains("no bgp network import-check"));
        assert!(!node_bgpd_conf(&s.nodes[0], &s, false).contains("network 10.33"));
        assert!(trafgw_bgpd_conf().contains("redistribute connected"));
    }
}
