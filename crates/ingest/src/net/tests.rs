//! Tests over the whole example snapshot (examples/dc173).
use super::*;
use std::path::Path;

fn example() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dc173");
    p.is_dir().then_some(p)
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Read every node/router/DNS/ingress file of the example with the readers of this module.
fn load(root: &Path) -> (Model, Vec<Diagnostic>, Vec<(String, &'static str)>) {
    let mut model = Model::default();
    let mut diags = Vec::new();
    let mut read = Vec::new();
    for p in files(root) {
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let parts: Vec<&str> = rel.split('/').collect();
        let f = SourceFile {
            path: rel.as_str().into(),
            text: std::fs::read_to_string(&p).unwrap(),
        };
        let r = match parts.as_slice() {
            ["nodes", node, _] => read_node_file(node, &f, &mut model, &mut diags),
            ["routers", router, _] => read_router_file(router, &f, &mut model, &mut diags),
            ["dns", _] => read_dns_file(&f, &mut model, &mut diags),
            ["ingress", ns, pod, _] => read_nginx_file(Some((ns, pod)), &f, &mut model, &mut diags),
            ["ingress", _] => read_nginx_file(None, &f, &mut model, &mut diags),
            _ => continue,
        };
        match r {
            Ok(Some(fmt)) => read.push((rel.clone(), fmt)),
            Ok(None) => panic!("{rel}: not recognised"),
            Err(e) => panic!("{e}"),
        }
    }
    finish(&mut model, &mut diags);
    (model, diags, read)
}

#[test]
fn dc173_every_file_reads() {
    let Some(root) = example() else {
        println!("skipped: examples/dc173 not present");
        return;
    };
    let (model, diags, read) = load(&root);
    assert!(read.len() > 60, "{read:?}");
    let warnings: Vec<_> = diags
        .iter()
        .filter(|d| d.severity != Severity::Note)
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    for (name, r) in &model.routers {
        let p: ipnet::IpNet = "10.33.151.160/32".parse().unwrap();
        let fw = r.forwarding_paths("DC173_CCD1_om_vr", &p, false);
        assert_eq!(fw.len(), 11, "{name}");
        let ve = r.interface("Ve 805").unwrap();
        assert_eq!(ve.vrf.as_deref(), Some("DC173_CCD1_om_vr"));
        assert!(ve.mac.is_some());
    }
    assert_eq!(model.routers.len(), 2);
    let res = model.dns.resolve("dc173prometheus1.cloud.k2.ericsson.se");
    assert_eq!(res.addresses.len(), 1);
    assert_eq!(
        res.addresses[0].data,
        kubepath_model::dns::RData::A("10.33.151.160".parse().unwrap())
    );
    assert_eq!(model.nginx.len(), 1);
    for (name, n) in &model.nodes {
        assert!(
            n.missing()
                .iter()
                .all(|(f, _)| *f == kubepath_model::net::NodeFact::Ip6tables),
            "{name}: {:?}",
            n.missing()
        );
        let om = n
            .interface("ccd_ecfe_om")
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(om.vrf.as_deref(), Some("DC173_CCD1_om_vr"), "{name}");
    }
}

/// A compact, reviewable rendering of one node's lowered state.
fn render_node(n: &kubepath_model::net::NodeNet) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for i in &n.interfaces {
        let _ = writeln!(
            o,
            "iface {} idx={:?} link={:?} flags={} mtu={:?} mac={:?} master={:?} vrf={:?} @{}",
            i.name,
            i.ifindex,
            i.link,
            i.flags.join(","),
            i.mtu,
            i.mac,
            i.master,
            i.vrf,
            i.source
        );
        for a in &i.addresses {
            let _ = writeln!(
                o,
                "  addr {} brd={:?} scope={} secondary={} noprefixroute={} label={:?} @{}",
                a.address, a.broadcast, a.scope, a.secondary, a.noprefixroute, a.label, a.source
            );
        }
    }
    for r in &n.routes {
        let _ = writeln!(
            o,
            "route table={} {:?} {} via={:?} dev={:?} src={:?} metric={:?} proto={:?} scope={:?} onlink={} nh={:?} flags={:?} extra={:?} @{}",
            r.table, r.kind, r.dst, r.gateway, r.dev, r.prefsrc, r.metric, r.proto, r.scope, r.onlink, r.nexthops, r.flags, r.extra, r.source
        );
    }
    for r in &n.rules {
        let _ = writeln!(
            o,
            "rule {} not={} from={:?} to={:?} fwmark={:?} iif={:?} {:?} @{}",
            r.priority, r.not, r.from, r.to, r.fwmark, r.iif, r.action, r.source
        );
    }
    let _ = writeln!(
        o,
        "ip_forward={:?} hash_policy={:?}",
        n.ip_forward(),
        n.fib_multipath_hash_policy()
    );
    for i in &n.interfaces {
        let _ = writeln!(o, "rp_filter {}={:?}", i.name, n.rp_filter(&i.name));
    }
    let _ = writeln!(
        o,
        "coverage={:?} tables={:?} partial={:?}",
        n.route_coverage, n.route_tables_known, n.partial
    );
    let _ = writeln!(o, "missing={:?}", n.missing());
    let _ = writeln!(
        o,
        "netfilter={:?} tables={:?} ipsets={}",
        n.netfilter.as_ref().map(|r| r.stats()),
        n.netfilter_tables,
        n.ipsets.is_some()
    );
    o
}

fn render_router(r: &kubepath_model::net::Router) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "router {} vendor={:?}", r.name, r.vendor);
    for i in &r.interfaces {
        let _ =
            writeln!(
            o,
            "iface {:?} vrf={:?} addrs={:?} anycast={:?} mac={:?} admin_up={:?} oper_up={:?} @{}",
            i.name,
            i.vrf,
            i.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            i.anycast_addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            i.mac,
            i.admin_up,
            i.oper_up,
            i.source
        );
    }
    for (name, v) in &r.vrfs {
        let _ = writeln!(
            o,
            "vrf {name} bgp_source={:?} total={:?}",
            v.bgp_source.as_ref().map(|s| s.to_string()),
            v.bgp_total_printed
        );
        for route in &v.bgp {
            let fw: Vec<String> = route
                .forwarding_paths(false)
                .iter()
                .map(|p| p.next_hop.to_string())
                .collect();
            let _ = writeln!(o, "  {} forwarding={:?}", route.prefix, fw);
            for p in &route.paths {
                let st = p.status;
                let flags: String = [
                    (st.valid, '*'),
                    (st.best, '>'),
                    (st.best_external, 'x'),
                    (st.multipath, 'm'),
                    (st.internal, 'i'),
                ]
                .iter()
                .filter(|(b, _)| *b)
                .map(|(_, c)| *c)
                .collect();
                let _ = writeln!(
                    o,
                    "    {flags:4} nh={} local={} med={:?} lp={:?} w={:?} path={:?} origin={:?} @{}",
                    p.next_hop, p.local, p.med, p.local_pref, p.weight, p.as_path, p.origin, p.source
                );
            }
        }
    }
    o
}

#[test]
fn dc173_snapshots() {
    let Some(root) = example() else {
        println!("skipped: examples/dc173 not present");
        return;
    };
    let (model, _, _) = load(&root);
    insta::assert_snapshot!(
        "dc173_node_pool2-9976d6447-r776t",
        render_node(&model.nodes["pool2-9976d6447-r776t"])
    );
    insta::assert_snapshot!(
        "dc173_router_L1A",
        render_router(&model.routers["DC173-SLX-L1A"])
    );
    insta::assert_snapshot!(
        "dc173_router_L1B",
        render_router(&model.routers["DC173-SLX-L1B"])
    );
}
