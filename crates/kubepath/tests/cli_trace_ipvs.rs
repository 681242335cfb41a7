//! Issue #14, IPVS mode in the whole trace: the seed (examples/dc173) with kube-proxy in IPVS
//! mode. For each node, `kubepath_netfilter_gen::kube_proxy_ipvs::render` writes what the node
//! would show from the cluster's Services and EndpointSlices as kubepath reads them: its
//! `iptables-save` (kube-proxy's IPVS-mode marks and masquerade; the seed's own file, with
//! Calico's and kube-proxy's iptables-mode rules, is replaced), `ipset save`, `ipvsadm -Ln`,
//! and the `kube-ipvs0` addresses appended to its `ip addr` (with their `table local` routes in
//! `ip route show table all`). The trace must give the seed's
//! answer: the same verdicts and distributions (`rr` over the four ingress pods gives the
//! same 1/4 shares as iptables mode's `statistic` rules), the node stage naming the IPVS
//! virtual service and real server lines of `ipvsadm.txt`.

use std::net::{IpAddr, Ipv4Addr};

use kubepath_netfilter_gen::kube_proxy_ipvs::{render, IpvsProxyConfig};

mod support;
use support::kube_proxy::{close_maps, seed_trace, services_for};
use support::{copy_dir, root, scratch};

/// A copy of the seed whose nodes run kube-proxy in IPVS mode.
fn ipvs_seed(tag: &str) -> std::path::PathBuf {
    let seed = root().join("examples/dc173");
    let snap = kubepath_ingest::load_snapshot(&seed).expect("the seed loads");
    let dir = scratch(tag);
    copy_dir(&seed, &dir);
    for (node, net) in &snap.model.nodes {
        let node_ips: Vec<Ipv4Addr> = net
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter())
            .filter_map(|a| match a.address.addr() {
                IpAddr::V4(v) if !v.is_loopback() => Some(v),
                _ => None,
            })
            .collect();
        let cfg = IpvsProxyConfig {
            cluster_cidr: Some("192.168.0.0/16".into()),
            node_ips,
            masquerade_mark: 0x4000,
        };
        let out = render(&cfg, &services_for(&snap.model, node));
        let nd = dir.join("nodes").join(node);
        std::fs::write(nd.join("iptables-save.txt"), &out.iptables_save).unwrap();
        std::fs::write(nd.join("ipset-save.txt"), &out.ipset_save).unwrap();
        std::fs::write(nd.join("ipvsadm.txt"), &out.ipvsadm).unwrap();
        let mut addr = std::fs::read_to_string(nd.join("ip-addr.txt")).unwrap();
        addr.push_str("99: kube-ipvs0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN group default \n    link/ether 6e:2f:1e:5b:9a:1c brd ff:ff:ff:ff:ff:ff\n");
        for ip in &out.kube_ipvs0 {
            addr.push_str(&format!(
                "    inet {ip}/32 scope global kube-ipvs0\n       valid_lft forever preferred_lft forever\n"
            ));
        }
        std::fs::write(nd.join("ip-addr.txt"), addr).unwrap();
        // The kernel adds a local route for every address, also on a device that is down
        // (`fib_add_ifaddr` adds the RTN_LOCAL route before its IFF_UP check): that is what
        // makes kube-ipvs0's addresses local.
        let mut routes = std::fs::read_to_string(nd.join("ip-route.txt")).unwrap();
        for ip in &out.kube_ipvs0 {
            routes.push_str(&format!(
                "local {ip} dev kube-ipvs0 table local proto kernel scope host src {ip} \n"
            ));
        }
        std::fs::write(nd.join("ip-route.txt"), routes).unwrap();
    }
    dir
}

#[test]
fn the_seed_in_ipvs_mode_traces_as_in_iptables_mode() {
    let dir = ipvs_seed("ipvs-seed");
    let (code_ipt, ipt) = seed_trace(&root().join("examples/dc173"), &[]);
    let (code_ipvs, ipvs) = seed_trace(&dir, &[]);
    assert_eq!(code_ipvs, code_ipt, "{ipvs:#}");
    close_maps(&ipvs["verdicts"], &ipt["verdicts"], "verdicts");
    for part in ["nodes", "ingress_pods", "backends"] {
        close_maps(
            &ipvs["distribution"][part],
            &ipt["distribution"][part],
            part,
        );
    }
    // The reply: IPVS gives it the virtual address back, not a nat rule's conntrack entry.
    assert!(ipvs
        .to_string()
        .contains("IPVS (ip_vs_out) restores its source to 10.33.151.160:80"));
    assert!(!ipt.to_string().contains("ip_vs_out"));
    // The node stage is IPVS's: the virtual service of the VIP in ipvsadm.txt, rr over the
    // four ingress pods, masqueraded by kube-proxy's KUBE-POSTROUTING.
    let group = &ipvs["nodes"][0];
    let outcomes = group["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 4, "{outcomes:#?}");
    for o in outcomes {
        assert!((o["probability"].as_f64().unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(o["masquerade"], true);
        let steps = o["steps"].as_array().unwrap();
        assert!(
            steps.iter().any(|s| s["text"]
                .as_str()
                .unwrap()
                .starts_with("nat/IPVS: TCP  10.33.151.160:80 rr -> ")),
            "{steps:#?}"
        );
    }
}

#[test]
fn an_ipvs_service_without_real_servers_is_refused() {
    // The VIP's virtual service with its real servers removed (the ingress pods gone, the
    // Service kept): IPVS answers ICMP port unreachable.
    let dir = ipvs_seed("ipvs-noreal");
    for e in std::fs::read_dir(dir.join("nodes")).unwrap() {
        let p = e.unwrap().path().join("ipvsadm.txt");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut out = String::new();
        let mut in_vip = false;
        for l in text.lines() {
            if !l.starts_with("  ->") {
                in_vip = l.starts_with("TCP  10.33.151.160:80 ");
            } else if in_vip {
                continue;
            }
            out.push_str(l);
            out.push('\n');
        }
        std::fs::write(&p, out).unwrap();
    }
    let (code, v) = seed_trace(&dir, &[]);
    assert_ne!(code, 0);
    let text = v.to_string();
    assert!(text.contains("ip_vs_leave"), "{v:#}");
}

#[test]
fn the_same_ipvs_capture_twice_is_one_fact_and_two_different_ones_a_doubt() {
    let dir = ipvs_seed("ipvs-twice");
    let (_, want) = seed_trace(&dir, &[]);
    // The same table again, once as a copy and once in ipvsadm-save form.
    for e in std::fs::read_dir(dir.join("nodes")).unwrap() {
        let nd = e.unwrap().path();
        std::fs::copy(nd.join("ipvsadm.txt"), nd.join("ipvsadm-copy.txt")).unwrap();
    }
    let (_, got) = seed_trace(&dir, &[]);
    close_maps(&got["verdicts"], &want["verdicts"], "verdicts (copy)");
    // One node's second capture differs (an ingress pod's real server gone from the VIP's
    // service): the VIP's service on that node is unknown; the rest stands.
    let node = dir.join("nodes/control-plane-4qjt9");
    let text = std::fs::read_to_string(node.join("ipvsadm-copy.txt")).unwrap();
    let mut in_vip = false;
    let mut seen = false;
    let cut: String = text
        .lines()
        .filter(|l| {
            if !l.starts_with("  ->") {
                in_vip = l.starts_with("TCP  10.33.151.160:80 ");
            }
            let drop = in_vip && !seen && l.starts_with("  ->");
            seen |= drop;
            !drop
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(seen);
    std::fs::write(node.join("ipvsadm-copy.txt"), cut).unwrap();
    let (_, got) = seed_trace(&dir, &[]);
    let unknown = got["verdicts"]["unknown"].as_f64().unwrap_or(0.0);
    assert!((unknown - 1.0 / 11.0).abs() < 1e-9, "{}", got["verdicts"]);
    assert!(got.to_string().contains("differ"), "{got:#}");
}

fn check_codes(dir: &std::path::Path) -> (Vec<String>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubepath"))
        .arg("check")
        .arg(dir)
        .args(["--severity", "info", "--json"])
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubepath check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("check JSON");
    let codes = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["code"].as_str().unwrap_or_default().to_string())
        .collect();
    (codes, stdout)
}

#[test]
fn check_compares_the_ipvs_table_with_the_endpoints() {
    let dir = ipvs_seed("ipvs-stale");
    let (codes, out) = check_codes(&dir);
    assert!(
        !codes.iter().any(|c| c == "kube-proxy-stale"),
        "a false alarm: {out}"
    );
    // One node still balances the VIP over a pod that is gone (192.168.9.9).
    let p = dir.join("nodes/pool2-9976d6447-xmbcz/ipvsadm.txt");
    let text = std::fs::read_to_string(&p).unwrap();
    let stale = text.replacen(
        "TCP  10.33.151.160:80 rr\n",
        "TCP  10.33.151.160:80 rr\n  -> 192.168.9.9:80                Masq    1      0          0\n",
        1,
    );
    assert_ne!(stale, text);
    std::fs::write(&p, stale).unwrap();
    let (codes, out) = check_codes(&dir);
    assert!(codes.iter().any(|c| c == "kube-proxy-stale"), "{out}");
    assert!(
        out.contains("kube-proxy's IPVS table on node pool2-9976d6447-xmbcz"),
        "{out}"
    );
    assert!(
        out.contains("still sends to 192.168.9.9:80 at nodes/pool2-9976d6447-xmbcz/ipvsadm.txt:"),
        "{out}"
    );
}
