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
        assert!(r.missing().is_empty(), "{name}: {:?}", r.missing());
        assert!(r.knows_bgp("DC173_CCD1_om_vr") && !r.knows_bgp("DC173_CCD1_traffic2_vr"));
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
            "iface {} idx={:?} link={:?} kind={:?} flags={} mtu={:?} mac={:?} master={:?} vrf={:?} @{}",
            i.name, i.ifindex, i.link, i.kind, i.flags.join(","), i.mtu, i.mac, i.master, i.vrf, i.source
        );
        for a in &i.addresses {
            let _ = writeln!(
                o,
                "  addr {} peer={:?} brd={:?} scope={} secondary={} noprefixroute={} label={:?} @{}",
                a.address, a.peer, a.broadcast, a.scope, a.secondary, a.noprefixroute, a.label, a.source
            );
        }
    }
    for r in &n.routes {
        let _ = writeln!(
            o,
            "route table={} {:?} {} tos={:?} via={:?} dev={:?} src={:?} metric={:?} proto={:?} scope={:?} onlink={} nh={:?} flags={:?} extra={:?} @{}",
            r.table, r.kind, r.dst, r.tos, r.gateway, r.dev, r.prefsrc, r.metric, r.proto, r.scope, r.onlink, r.nexthops, r.flags, r.extra, r.source
        );
    }
    for r in &n.rules {
        let _ = writeln!(
            o,
            "rule {} {:?} not={} from={:?} to={:?} fwmark={:?} iif={:?} oif={:?} tos={:?} ipproto={:?} dport={:?} uid={:?} l3mdev={} suppress={:?} proto={:?} {:?} @{}",
            r.priority, r.family, r.not, r.from, r.to, r.fwmark, r.iif, r.oif, r.tos, r.ipproto, r.dport, r.uidrange, r.l3mdev, r.suppress_prefixlength, r.proto, r.action, r.source
        );
    }
    for (k, v) in &n.sysctls {
        let _ = writeln!(o, "sysctl {k} = {} @{}", v.value, v.source);
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
        "coverage={:?} tables={:?} v6={:?} {:?} partial={:?}",
        n.route_coverage,
        n.route_tables_known,
        n.route_coverage_v6,
        n.route_tables_known_v6,
        n.partial
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
                    "    {flags:4} nh={}{} local={} med={:?} lp={:?} w={:?} path={:?} origin={:?} @{}",
                    p.next_hop,
                    p.next_hop_interface
                        .as_ref()
                        .map(|i| format!(" dev={i}"))
                        .unwrap_or_default(),
                    p.local,
                    p.med,
                    p.local_pref,
                    p.weight,
                    p.as_path,
                    p.origin,
                    p.source
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

fn render_dns(d: &kubepath_model::dns::Dns) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for (s, src) in &d.servers {
        let _ = writeln!(o, "server {s} @{src}");
    }
    for r in &d.records {
        let _ = writeln!(
            o,
            "{} {:?} {} {:?} {:?} @{}",
            r.name, r.ttl, r.class, r.data, r.origin, r.source
        );
    }
    o
}

/// Every fixture under fixtures/{iproute,sysctl,ipset,slx,frr,routers,dns,nginx}/{ok,err}: `ok` files
/// must be recognised and read; `err` files must fail with a position. The outcome (lowered
/// model, diagnostics, or the error) is an insta snapshot per file.
#[test]
fn fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut n = 0;
    for fmt in [
        "iproute", "sysctl", "ipset", "slx", "frr", "routers", "dns", "nginx",
    ] {
        for kind in ["ok", "err"] {
            let dir = root.join(fmt).join(kind);
            if !dir.exists() {
                continue;
            }
            for p in files(&dir) {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                let f = SourceFile {
                    path: format!("{fmt}/{kind}/{name}").into(),
                    text: std::fs::read_to_string(&p).unwrap(),
                };
                let mut model = Model::default();
                let mut diags = Vec::new();
                let r = match fmt {
                    "iproute" | "sysctl" | "ipset" => {
                        read_node_file("node1", &f, &mut model, &mut diags)
                    }
                    "slx" | "frr" | "routers" => read_router_file("r1", &f, &mut model, &mut diags),
                    "dns" => read_dns_file(&f, &mut model, &mut diags),
                    _ => {
                        read_nginx_file(Some(("ingress-nginx", "pod1")), &f, &mut model, &mut diags)
                    }
                };
                finish(&mut model, &mut diags);
                let mut out = String::new();
                match (&r, kind) {
                    (Ok(Some(format)), "ok") => {
                        out.push_str(&format!("format: {format}\n"));
                        for d in &diags {
                            out.push_str(&format!(
                                "{:?} {}:{}:{}: {}\n",
                                d.severity, d.file, d.line, d.column, d.message
                            ));
                        }
                        for node in model.nodes.values() {
                            out.push_str(&render_node(node));
                        }
                        for r in model.routers.values() {
                            out.push_str(&render_router(r));
                        }
                        out.push_str(&render_dns(&model.dns));
                        for c in &model.nginx {
                            out.push_str(&format!("{c:#?}\n"));
                        }
                    }
                    (Err(e), "err") => out.push_str(&format!("error: {e}\n")),
                    _ => panic!("{}: unexpected outcome {r:?} for a {kind} fixture", f.path),
                }
                insta::assert_snapshot!(format!("fixture__{fmt}__{kind}__{name}"), out);
                n += 1;
            }
        }
    }
    assert!(n >= 40, "only {n} fixtures found");
}

/// Privileged: build a network namespace with addresses, routes (incl. multipath, blackhole,
/// another table) and rules, print them with this machine's iproute2 in text and JSON, and
/// check that both readers lower to the same model. Runs only with KUBEPATH_PRIV_TESTS=1 as
/// root; the namespace is removed even when the test fails.
#[test]
fn priv_iproute2_text_and_json_agree() {
    use std::process::Command;
    if !kubepath_netfilter_gen::privileged::gate("priv_iproute2_text_and_json_agree", &["ip"]) {
        return;
    }
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let ns = Ns(format!("kp-ing2-ipr-{}", std::process::id()));
    let run = |args: &[&str]| {
        let mut full = vec!["-n", ns.0.as_str()];
        full.extend_from_slice(args);
        let o = Command::new("ip").args(&full).output().expect("ip runs");
        assert!(
            o.status.success(),
            "ip {full:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    run(&["link", "set", "lo", "up"]);
    run(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    run(&["link", "set", "v0", "up"]);
    run(&["link", "set", "v1", "up"]);
    run(&["link", "set", "v0", "mtu", "9000"]);
    run(&[
        "addr",
        "add",
        "10.33.152.74/27",
        "brd",
        "+",
        "dev",
        "v0",
        "noprefixroute",
    ]);
    run(&[
        "addr",
        "add",
        "10.33.152.75/27",
        "dev",
        "v0",
        "label",
        "v0:1",
    ]);
    run(&["addr", "add", "10.0.10.105/24", "dev", "v1"]);
    run(&[
        "route",
        "add",
        "default",
        "via",
        "10.33.152.65",
        "dev",
        "v0",
        "proto",
        "static",
        "metric",
        "804",
        "onlink",
    ]);
    run(&[
        "route",
        "add",
        "blackhole",
        "192.168.22.192/26",
        "proto",
        "bird",
    ]);
    run(&[
        "route",
        "add",
        "192.168.107.128/26",
        "via",
        "10.0.10.102",
        "dev",
        "v1",
        "proto",
        "bird",
        "onlink",
    ]);
    run(&[
        "route",
        "add",
        "10.200.0.0/16",
        "nexthop",
        "via",
        "10.0.10.101",
        "dev",
        "v1",
        "weight",
        "1",
        "nexthop",
        "via",
        "10.0.10.102",
        "dev",
        "v1",
        "weight",
        "2",
    ]);
    run(&[
        "route",
        "add",
        "default",
        "via",
        "10.0.10.1",
        "dev",
        "v1",
        "table",
        "100",
    ]);
    run(&[
        "route",
        "add",
        "unreachable",
        "10.66.0.0/16",
        "table",
        "100",
    ]);
    run(&[
        "rule",
        "add",
        "pref",
        "100",
        "from",
        "10.0.0.0/8",
        "iif",
        "v1",
        "fwmark",
        "0x4000/0x4000",
        "lookup",
        "100",
    ]);
    run(&[
        "rule",
        "add",
        "pref",
        "200",
        "not",
        "to",
        "10.66.0.0/16",
        "ipproto",
        "tcp",
        "dport",
        "80-90",
        "goto",
        "32766",
    ]);
    run(&[
        "rule",
        "add",
        "pref",
        "300",
        "from",
        "all",
        "lookup",
        "main",
        "suppress_prefixlength",
        "0",
    ]);
    run(&["addr", "add", "fd00:33::74/64", "dev", "v0", "nodad"]);
    run(&[
        "route",
        "add",
        "fd01::/64",
        "via",
        "fd00:33::1",
        "dev",
        "v0",
        "metric",
        "50",
    ]);
    run(&[
        "-6",
        "rule",
        "add",
        "pref",
        "150",
        "from",
        "fd00:33::/64",
        "lookup",
        "100",
    ]);
    // `ip -br addr` lowers to the same interface names and addresses as `ip addr`.
    {
        let mut a = Model::default();
        let mut b = Model::default();
        let mut d = Vec::new();
        let full = SourceFile {
            path: "t".into(),
            text: run(&["addr"]),
        };
        let brief = SourceFile {
            path: "t".into(),
            text: run(&["-br", "addr"]),
        };
        assert_eq!(
            read_node_file("n", &full, &mut a, &mut d).unwrap(),
            Some("ip-addr")
        );
        assert_eq!(
            read_node_file("n", &brief, &mut b, &mut d).unwrap(),
            Some("ip-addr-brief"),
            "{}",
            brief.text
        );
        let key = |m: &Model| -> Vec<(String, Vec<String>, bool)> {
            m.nodes["n"]
                .interfaces
                .iter()
                .map(|i| {
                    (
                        i.name.clone(),
                        i.addresses.iter().map(|x| x.address.to_string()).collect(),
                        i.is_up(),
                    )
                })
                .collect()
        };
        assert_eq!(key(&a), key(&b));
    }
    let pairs: [(&[&str], &[&str]); 4] = [
        (&["addr"], &["-j", "addr"]),
        (
            &["route", "show", "table", "all"],
            &["-j", "route", "show", "table", "all"],
        ),
        (&["rule"], &["-j", "rule"]),
        (&["-6", "rule"], &["-6", "-j", "rule"]),
    ];
    for (text_cmd, json_cmd) in pairs {
        let text = run(text_cmd);
        let json = run(json_cmd);
        let mut a = Model::default();
        let mut b = Model::default();
        let mut d = Vec::new();
        let cmd = |c: &[&str]| format!("node:~ # ip {}\n", c.join(" "));
        let ft = SourceFile {
            path: "t".into(),
            text: format!("{}{text}", cmd(text_cmd)),
        };
        let fj = SourceFile {
            path: "t".into(),
            text: format!("{}{json}", cmd(json_cmd)),
        };
        assert!(
            read_node_file("n", &ft, &mut a, &mut d).unwrap().is_some(),
            "{text}"
        );
        assert!(
            read_node_file("n", &fj, &mut b, &mut d).unwrap().is_some(),
            "{json}"
        );
        let (na, nb) = (&a.nodes["n"], &b.nodes["n"]);
        let strip_iface = |i: &kubepath_model::net::Interface| {
            let addrs: Vec<_> = i
                .addresses
                .iter()
                .map(|x| {
                    (
                        x.address,
                        x.broadcast,
                        x.scope.clone(),
                        x.secondary,
                        x.noprefixroute,
                        x.label.clone(),
                    )
                })
                .collect();
            (
                i.name.clone(),
                i.ifindex,
                i.mtu,
                i.mac.clone(),
                i.flags.clone(),
                i.master.clone(),
                addrs,
            )
        };
        let ia: Vec<_> = na.interfaces.iter().map(strip_iface).collect();
        let ib: Vec<_> = nb.interfaces.iter().map(strip_iface).collect();
        assert_eq!(ia, ib, "ip addr text vs JSON");
        let strip_route = |r: &kubepath_model::net::Route| {
            (
                r.table,
                r.kind.clone(),
                r.dst,
                r.gateway,
                r.dev.clone(),
                r.prefsrc,
                r.metric,
                r.proto.clone(),
                r.onlink,
                r.nexthops.clone(),
            )
        };
        let ra: Vec<_> = na.routes.iter().map(strip_route).collect();
        let rb: Vec<_> = nb.routes.iter().map(strip_route).collect();
        assert_eq!(ra, rb, "ip route text vs JSON");
        let strip_rule = |r: &kubepath_model::net::Rule| kubepath_model::net::Rule {
            source: kubepath_model::SourceRef::new("t", 0),
            ..r.clone()
        };
        let ua: Vec<_> = na.rules.iter().map(strip_rule).collect();
        let ub: Vec<_> = nb.rules.iter().map(strip_rule).collect();
        assert_eq!(ua, ub, "ip rule text vs JSON");
        if text_cmd[0] == "route" {
            assert!(
                ra.iter().any(|r| r.9.len() == 2 && r.9[1].weight == 2),
                "multipath with weights: {ra:?}"
            );
            assert!(ra
                .iter()
                .any(|r| r.0 == 100 && r.1 == kubepath_model::net::RouteType::Unreachable));
            assert_eq!(
                na.route_coverage,
                kubepath_model::net::RouteCoverage::AllTables
            );
        }
        if text_cmd == ["-6", "rule"] {
            let r = na.rules.iter().find(|r| r.priority == 150).unwrap();
            assert_eq!(r.family, kubepath_model::net::Family::Ipv6);
            assert!(na
                .rules
                .iter()
                .all(|r| r.family == kubepath_model::net::Family::Ipv6));
        }
        if text_cmd[0] == "route" {
            assert!(
                ra.iter()
                    .any(|r| r.2.to_string() == "fd01::/64" && r.6 == Some(50)),
                "{ra:?}"
            );
        }
        if text_cmd[0] == "rule" {
            let r = na.rules.iter().find(|r| r.priority == 100).unwrap();
            assert_eq!(r.fwmark, Some((0x4000, 0x4000)));
            assert_eq!(r.action, kubepath_model::net::RuleAction::Lookup(100));
            let r = na.rules.iter().find(|r| r.priority == 200).unwrap();
            assert!(r.not);
            assert_eq!(r.dport, Some((80, 90)));
        }
    }
}

/// Robustness: every fixture and example file, truncated at every line and with bytes
/// replaced at pseudo-random places, is read by every reader without a panic (errors are
/// fine). `KP_MANGLE=N` raises the number of mangled variants per input (default 30).
#[test]
fn readers_never_panic_on_mangled_input() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut inputs: Vec<String> = Vec::new();
    for dir in ["iproute", "sysctl", "ipset", "slx", "frr", "dns", "nginx"] {
        for p in files(&base.join("fixtures").join(dir)) {
            inputs.push(std::fs::read_to_string(p).unwrap());
        }
    }
    if let Some(ex) = example() {
        for sub in ["routers", "dns", "ingress"] {
            for p in files(&ex.join(sub)) {
                inputs.push(std::fs::read_to_string(p).unwrap());
            }
        }
        let node = ex.join("nodes/pool2-9976d6447-r776t");
        for f in ["ip-addr.txt", "ip-route.txt", "ip-rule.txt", "sysctl.txt"] {
            inputs.push(std::fs::read_to_string(node.join(f)).unwrap());
        }
    }
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let junk = [
        "",
        " ",
        "\t",
        "{",
        "}",
        "(",
        ")",
        "\"",
        "'",
        ";",
        "/",
        ":",
        "#",
        "-",
        "[[",
        "é",
        "0",
        "999999999999",
        "\n",
    ];
    let run_all = |text: String| {
        let f = SourceFile {
            path: "x".into(),
            text,
        };
        let mut m = Model::default();
        let mut d = Vec::new();
        let _ = read_node_file("n", &f, &mut m, &mut d);
        let _ = read_router_file("r", &f, &mut m, &mut d);
        let _ = read_dns_file(&f, &mut m, &mut d);
        let _ = read_nginx_file(None, &f, &mut m, &mut d);
        finish(&mut m, &mut d);
    };
    let mut cases = 0;
    for input in &inputs {
        let lines: Vec<&str> = input.lines().collect();
        for n in 0..lines.len().min(40) {
            run_all(lines[..n].join("\n"));
            cases += 1;
        }
        for _ in 0..std::env::var("KP_MANGLE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
        {
            let mut chars: Vec<char> = input.chars().collect();
            if chars.is_empty() {
                break;
            }
            for _ in 0..3 {
                let at = (rnd() as usize) % chars.len();
                let j = junk[(rnd() as usize) % junk.len()];
                chars.splice(at..(at + 1).min(chars.len()), j.chars());
                if chars.is_empty() {
                    break;
                }
            }
            run_all(chars.into_iter().collect());
            cases += 1;
        }
    }
    assert!(cases > 500, "{cases}");
}

/// `finish`: VRF from a VRF master, from the manifest (overriding inference), inferred from a
/// router subnet, and unknown (with a warning) when the subnet is in two VRFs.
#[test]
fn finish_assigns_interface_vrfs() {
    let mut model = Model::default();
    let mut d = Vec::new();
    let router = SourceFile {
        path: "routers/r1/run".into(),
        text: "r1# show run int\ninterface Ve 10\n vrf forwarding OM\n ip address 10.0.1.1/24\n!\ninterface Ve 20\n vrf forwarding TRAF\n ip address 10.0.2.1/24\n!\ninterface Ve 30\n vrf forwarding A\n ip address 10.0.3.1/24\n!\ninterface Ve 31\n vrf forwarding B\n ip address 10.0.3.2/24\n!\ninterface Ve 40\n ip address 10.0.4.1/24\n!\n".into(),
    };
    read_router_file("r1", &router, &mut model, &mut d)
        .unwrap()
        .unwrap();
    let node = SourceFile {
        path: "nodes/n1/ip-addr".into(),
        text: "2: om: <UP,LOWER_UP> mtu 1500\n    inet 10.0.1.5/24 scope global om\n3: traf: <UP,LOWER_UP> mtu 1500\n    inet 10.0.2.5/24 scope global traf\n4: amb: <UP,LOWER_UP> mtu 1500\n    inet 10.0.3.5/24 scope global amb\n5: vrfx: <NOARP,MASTER,UP,LOWER_UP> mtu 65575\n    vrf table 10\n6: sl: <UP,LOWER_UP> mtu 1500 master vrfx\n    inet 10.0.4.5/24 scope global sl\n".into(),
    };
    read_node_file("n1", &node, &mut model, &mut d)
        .unwrap()
        .unwrap();
    model
        .manifest
        .interfaces
        .push(kubepath_model::manifest::InterfaceVrf {
            node: Some("*".into()),
            router: None,
            interface: "traf".into(),
            vrf: "FROM-MANIFEST".into(),
            source: kubepath_model::SourceRef::new("kubepath.yaml", 7),
        });
    finish(&mut model, &mut d);
    let n = &model.nodes["n1"];
    let vrf = |i: &str| n.interface(i).unwrap().vrf.clone();
    assert_eq!(vrf("om").as_deref(), Some("OM"));
    assert_eq!(vrf("traf").as_deref(), Some("FROM-MANIFEST"));
    assert_eq!(vrf("amb"), None);
    assert_eq!(vrf("sl").as_deref(), Some("vrfx"));
    assert!(
        d.iter()
            .any(|x| x.severity == Severity::Warning
                && x.message.contains("several router VRFs (A, B)")),
        "{d:#?}"
    );
    assert!(d.iter().any(|x| x.severity == Severity::Note
        && x.message.contains("interface om taken to be in VRF OM")));
}

/// Privileged: run FRR (zebra + bgpd, and two eBGP peers announcing the same prefix) in
/// network namespaces, print `show ip bgp` as text and JSON with vtysh, and check that the
/// Cisco-style text reader and the JSON reader agree (paths, flags, attributes, ECMP set). The
/// router shows next hops with the peer's hostname (`bgp default show-nexthop-hostname`, as
/// FRR's datacenter profile does: `10.6.1.2(peer1)`), and the text is read both as `show ip
/// bgp` and as `show ip bgp vrf all` (`Instance default:`). The lab's differential test does
/// the same on every lab snapshot (crates/lab/tests/differential.rs).
/// Needs KUBEPATH_PRIV_TESTS=1, root and FRR in /usr/lib/frr; everything it starts is
/// stopped by PID and its namespaces removed, even when the test fails.
#[test]
fn priv_frr_text_and_json_agree() {
    use std::process::Command;
    if !kubepath_netfilter_gen::privileged::gate(
        "priv_frr_text_and_json_agree",
        &["ip", "/usr/lib/frr/bgpd", "/usr/lib/frr/zebra"],
    ) {
        return;
    }
    let tag = format!("kp-ing2-frr-{}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    struct Lab {
        ns: Vec<String>,
        pidfiles: Vec<std::path::PathBuf>,
        dir: std::path::PathBuf,
    }
    impl Drop for Lab {
        fn drop(&mut self) {
            for p in &self.pidfiles {
                if let Some(pid) = std::fs::read_to_string(p)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
            for n in &self.ns {
                let _ = Command::new("ip").args(["netns", "del", n]).status();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
    let r = format!("{tag}-r");
    let mut lab = Lab {
        ns: vec![r.clone()],
        pidfiles: Vec::new(),
        dir: dir.clone(),
    };
    let sh = |args: &[&str]| {
        let o = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("runs");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    std::fs::create_dir_all(&dir).unwrap();
    sh(&["chown", "frr:frr", dir.to_str().unwrap()]);
    sh(&["ip", "netns", "add", &r]);
    sh(&["ip", "-n", &r, "link", "set", "lo", "up"]);
    let conf = dir.join("r.conf");
    std::fs::write(&conf, "hostname lab\nrouter bgp 65001\n bgp router-id 10.9.0.1\n no bgp ebgp-requires-policy\n bgp default show-nexthop-hostname\n neighbor 10.6.1.2 remote-as 65002\n neighbor 10.6.2.2 remote-as 65002\n address-family ipv4 unicast\n  network 10.9.0.0/24\n  maximum-paths 4\n exit-address-family\n").unwrap();
    for p in 1..=2 {
        let ns = format!("{tag}-p{p}");
        sh(&["ip", "netns", "add", &ns]);
        lab.ns.push(ns.clone());
        sh(&[
            "ip",
            "link",
            "add",
            &format!("kpr{p}"),
            "netns",
            &r,
            "type",
            "veth",
            "peer",
            "name",
            "e0",
            "netns",
            &ns,
        ]);
        sh(&[
            "ip",
            "-n",
            &r,
            "addr",
            "add",
            &format!("10.6.{p}.1/24"),
            "dev",
            &format!("kpr{p}"),
        ]);
        sh(&["ip", "-n", &r, "link", "set", &format!("kpr{p}"), "up"]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.6.{p}.2/24"),
            "dev",
            "e0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "e0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let pd = dir.join(format!("p{p}"));
        std::fs::create_dir_all(&pd).unwrap();
        let pconf = pd.join("frr.conf");
        std::fs::write(&pconf, format!("hostname peer{p}\nrouter bgp 65002\n bgp router-id 10.6.{p}.2\n no bgp ebgp-requires-policy\n neighbor 10.6.{p}.1 remote-as 65001\n address-family ipv4 unicast\n  network 10.7.0.0/24\n exit-address-family\n")).unwrap();
        sh(&["chown", "-R", "frr:frr", pd.to_str().unwrap()]);
        let pid = pd.join("bgpd.pid");
        lab.pidfiles.push(pid.clone());
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "/usr/lib/frr/bgpd",
            "-d",
            "-Z",
            "-i",
            pid.to_str().unwrap(),
            "--vty_socket",
            pd.to_str().unwrap(),
            "-f",
            pconf.to_str().unwrap(),
            "-u",
            "frr",
            "-g",
            "frr",
            "-l",
            &format!("10.6.{p}.2"),
        ]);
    }
    sh(&["chown", "-R", "frr:frr", dir.to_str().unwrap()]);
    let d = dir.to_str().unwrap();
    let zsock = format!("{d}/zserv.api");
    for daemon in ["zebra", "bgpd"] {
        let pid = dir.join(format!("{daemon}.pid"));
        lab.pidfiles.push(pid.clone());
        let mut args = vec!["ip", "netns", "exec", r.as_str()];
        let bin = format!("/usr/lib/frr/{daemon}");
        let (pid_s, conf_s) = (
            pid.to_str().unwrap().to_string(),
            conf.to_str().unwrap().to_string(),
        );
        args.extend([
            bin.as_str(),
            "-d",
            "-z",
            zsock.as_str(),
            "-i",
            pid_s.as_str(),
            "--vty_socket",
            d,
            "-f",
            conf_s.as_str(),
            "-u",
            "frr",
            "-g",
            "frr",
        ]);
        if daemon == "bgpd" {
            args.extend(["-p", "0"]);
        }
        sh(&args);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let vtysh = |cmd: &str| {
        sh(&[
            "ip",
            "netns",
            "exec",
            &r,
            "vtysh",
            "--vty_socket",
            d,
            "-c",
            cmd,
        ])
    };
    let mut text = String::new();
    let mut json = String::new();
    for _ in 0..60 {
        text = vtysh("show ip bgp");
        json = vtysh("show ip bgp json");
        // Settled: both paths learned, best-path selection done (a `>` path; bgpd prints
        // "table version is 0" and no `>` while it is still running on a loaded machine), and
        // the JSON taken right after says the same.
        let settled = text.lines().filter(|l| l.contains("65002 i")).count() >= 2
            && text.lines().any(|l| l.starts_with("*>"))
            && !text.contains("table version is 0,")
            && json.contains("\"bestpath\":true")
            && json.contains("\"multipath\":true");
        if settled {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let mut m1 = Model::default();
    let mut m2 = Model::default();
    let mut dg = Vec::new();
    let ft = SourceFile {
        path: "t".into(),
        text: format!("lab# show ip bgp\n{text}lab#\n"),
    };
    let fj = SourceFile {
        path: "j".into(),
        text: json.clone(),
    };
    assert_eq!(
        read_router_file("lab", &ft, &mut m1, &mut dg).unwrap(),
        Some("show-ip-bgp"),
        "{text}"
    );
    assert_eq!(
        read_router_file("lab", &fj, &mut m2, &mut dg).unwrap(),
        Some("frr-bgp-json"),
        "{json}"
    );
    let key = |m: &Model| {
        let v = &m.routers["lab"].vrfs["default"];
        v.bgp
            .iter()
            .map(|r| {
                let mut paths: Vec<_> = r
                    .paths
                    .iter()
                    .map(|p| {
                        (
                            p.next_hop,
                            p.status.valid,
                            p.status.best,
                            p.status.multipath,
                            p.status.internal,
                            p.med,
                            p.weight,
                            p.as_path.clone(),
                            p.origin,
                        )
                    })
                    .collect();
                paths.sort_by_key(|p| p.0);
                let mut fw: Vec<_> = r
                    .forwarding_paths(false)
                    .iter()
                    .map(|p| p.next_hop)
                    .collect();
                fw.sort();
                (r.prefix, paths, fw)
            })
            .collect::<Vec<_>>()
    };
    let (k1, k2) = (key(&m1), key(&m2));
    assert_eq!(k1, k2, "text:\n{text}\njson:\n{json}");
    assert!(text.contains("10.6.1.2(peer1)"), "{text}");
    // The same table as `show ip bgp vrf all` text.
    let all = vtysh("show ip bgp vrf all");
    let fa = SourceFile {
        path: "a".into(),
        text: format!("lab# show ip bgp vrf all\n{all}lab#\n"),
    };
    let mut m3 = Model::default();
    assert_eq!(
        read_router_file("lab", &fa, &mut m3, &mut dg).unwrap(),
        Some("show-ip-bgp"),
        "{all}"
    );
    assert_eq!(key(&m3), k2, "vrf all text:\n{all}\njson:\n{json}");
    let ecmp = k1
        .iter()
        .find(|r| r.0.to_string() == "10.7.0.0/24")
        .expect("10.7.0.0/24 learned from both peers");
    assert_eq!(ecmp.2.len(), 2, "{text}");
    // zebra installs exactly the BGP multipath set.
    let routes = vtysh("show ip route json");
    let fr = SourceFile {
        path: "rib".into(),
        text: routes.clone(),
    };
    assert_eq!(
        read_router_file("lab", &fr, &mut m2, &mut dg).unwrap(),
        Some("frr-route-json")
    );
    let rib = m2.routers["lab"].vrfs["default"]
        .rib
        .iter()
        .find(|x| x.prefix.to_string() == "10.7.0.0/24")
        .expect("in the RIB");
    let mut gws: Vec<_> = rib
        .active_nexthops()
        .iter()
        .filter_map(|n| n.gateway)
        .collect();
    gws.sort();
    assert_eq!(gws, ecmp.2, "{routes}");
    assert!(rib.selected && rib.installed && rib.protocol == "bgp");
    drop(lab);
}

/// Real captures of other platforms (fixtures/routers/README.md, fixtures/iproute and
/// fixtures/dns READMEs give the provenance): what each one reads, counted, with a few exact
/// values.
mod captures {
    use super::*;
    use kubepath_model::dns::RData;
    use kubepath_model::net::{BgpRoute, Origin};

    fn read(fmt: &str, name: &str) -> (Model, Vec<Diagnostic>, &'static str) {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures")
            .join(fmt)
            .join("ok")
            .join(name);
        let f = SourceFile {
            path: name.into(),
            text: std::fs::read_to_string(&p).unwrap(),
        };
        let mut model = Model::default();
        let mut diags = Vec::new();
        let r = match fmt {
            "iproute" => read_node_file("n1", &f, &mut model, &mut diags),
            "dns" => read_dns_file(&f, &mut model, &mut diags),
            _ => read_router_file("r1", &f, &mut model, &mut diags),
        };
        let format = r
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: not recognised"));
        (model, diags, format)
    }

    fn no_errors(name: &str, d: &[Diagnostic]) {
        assert!(
            d.iter().all(|x| matches!(x.severity, Severity::Note)),
            "{name}: {d:?}"
        );
    }

    fn bgp<'a>(m: &'a Model, vrf: &str) -> &'a [BgpRoute] {
        &m.routers["r1"].vrfs[vrf].bgp
    }

    fn route<'a>(routes: &'a [BgpRoute], p: &str) -> &'a BgpRoute {
        routes
            .iter()
            .find(|r| r.prefix.to_string() == p)
            .unwrap_or_else(|| panic!("no {p}"))
    }

    #[test]
    fn nxos_path_type_letters() {
        let (m, d, f) = read("routers", "nxos-show-ip-bgp-path-type.txt");
        assert_eq!(f, "show-ip-bgp");
        no_errors("nxos", &d);
        let r = bgp(&m, "default");
        assert_eq!(r.len(), 7);
        assert_eq!(r.iter().map(|r| r.paths.len()).sum::<usize>(), 11);
        // `*>l10.10.0.1/32  0.0.0.0  100  32768 i`: local, best, LocPrf 100 (not Metric).
        let p = &route(r, "10.10.0.1/32").paths[0];
        assert!(p.status.valid && p.status.best && p.local);
        assert_eq!(
            (p.med, p.local_pref, p.weight),
            (None, Some(100), Some(32768))
        );
        // `x e10.10.0.2/32` (deleted) then `*>e` on the next line for the same prefix.
        let r2 = route(r, "10.10.0.2/32");
        assert!(!r2.paths[0].status.valid && !r2.paths[0].status.best_external);
        assert!(r2.paths[1].status.best && !r2.paths[1].status.internal);
        assert_eq!(r2.paths[1].next_hop.to_string(), "10.10.1.1");
        assert_eq!(r2.paths[1].as_path, ["64101", "64002"]);
        assert_eq!(r2.forwarding_paths(false).len(), 1);
        // `*>r`-style path-type letters are not RIB failures; `  l` (no `*`) is not valid.
        let r3 = route(r, "100.100.100.112/30");
        assert!(r3.paths.iter().all(|p| !p.status.rib_failure));
        assert!(!r3.paths[1].status.valid && r3.paths[1].local);
        assert_eq!(r3.paths[0].origin, Some(Origin::Igp));
    }

    #[test]
    fn nxos_redistributed_and_internal_letters() {
        let f: std::sync::Arc<str> = "t".into();
        let text = "Status: s-suppressed, x-deleted, S-stale, d-dampened, h-history, *-valid, >-best\nPath type: i-internal, e-external, c-confed, l-local, a-aggregate, r-redist, I-injected\nOrigin codes: i - IGP, e - EGP, ? - incomplete, | - multipath, & - backup\n\n   Network            Next Hop            Metric     LocPrf     Weight Path\n*>r10.30.0.1/32       0.0.0.0                  0        100      32768 ?\n*>i10.30.0.11/32      10.30.4.1                0        100          0 ?\n* e0.0.0.0/0          10.30.4.9                                      0 65001 i\n";
        let segs = crate::net::text::segments(text);
        let mut rt = kubepath_model::net::Router::new("r1");
        let mut d = Vec::new();
        router_text::read(&f, &segs[0], &mut rt, &mut d).unwrap();
        assert!(d.is_empty(), "{d:?}");
        let r = &rt.vrfs["default"].bgp;
        assert_eq!(r.len(), 3);
        assert!(r[0].paths[0].status.best && !r[0].paths[0].status.rib_failure);
        assert!(r[1].paths[0].status.internal);
        assert_eq!(r[2].prefix.to_string(), "0.0.0.0/0");
        assert!(r[2].paths[0].status.valid && !r[2].paths[0].status.best);
    }

    #[test]
    fn eos_spaced_status_and_dash_next_hop() {
        let (m, d, _) = read("routers", "eos-show-ip-bgp-space-status.txt");
        no_errors("eos", &d);
        let r = bgp(&m, "default");
        assert_eq!(r.len(), 4);
        assert_eq!(r.iter().map(|r| r.paths.len()).sum::<usize>(), 4);
        let p = &route(r, "10.103.1.0/24").paths[0];
        assert!(p.status.valid && p.status.best && p.local);
        assert_eq!(p.next_hop.to_string(), "0.0.0.0");
        assert_eq!((p.med, p.local_pref, p.weight), (Some(1), Some(0), None));
        // `* #`: valid, not installed.
        let p = &route(r, "10.104.1.0/24").paths[0];
        assert!(p.status.valid && !p.status.best && p.status.rib_failure);
        assert_eq!(p.next_hop.to_string(), "10.10.10.20");
        assert_eq!(
            (p.med, p.local_pref, p.weight),
            (Some(0), Some(100), Some(0))
        );
        assert_eq!(p.as_path, ["104"]);
    }

    #[test]
    fn vpnv4_route_distinguisher_default_for_vrf() {
        let (m, d, _) = read("routers", "ios-show-ip-bgp-vpnv4-rd-default-for-vrf.txt");
        no_errors("vpnv4", &d);
        let rt = &m.routers["r1"];
        assert_eq!(rt.vrfs.keys().collect::<Vec<_>>(), ["part"]);
        let r = bgp(&m, "part");
        assert_eq!(r.len(), 3);
        let p = &route(r, "11.11.11.12/32").paths[0];
        assert!(p.status.best && p.local);
        assert_eq!((p.med, p.weight), (Some(0), Some(32768)));
    }

    #[test]
    fn vpnv4_other_rd_is_not_read_into_a_vrf() {
        let f: std::sync::Arc<str> = "t".into();
        let text = "     Network          Next Hop            Metric LocPrf Weight Path\nRoute Distinguisher: 100:100 (default for vrf part)\n *>  11.11.11.11/32   0.0.0.0                  0         32768 i\n *>i 22.22.22.0/24    2.2.2.2                  0    100      0 i\nRoute Distinguisher: 200:200\n *>i 22.22.22.0/24    2.2.2.2                  0    100      0 i\n";
        let segs = crate::net::text::segments(text);
        let mut rt = kubepath_model::net::Router::new("r1");
        let mut d = Vec::new();
        router_text::read(&f, &segs[0], &mut rt, &mut d).unwrap();
        assert_eq!(rt.vrfs.keys().collect::<Vec<_>>(), ["part"]);
        assert_eq!(rt.vrfs["part"].bgp.len(), 2);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].line, 5);
        assert!(
            d[0].message.contains("Route Distinguisher: 200:200"),
            "{d:?}"
        );
    }

    #[test]
    fn iosxr_show_bgp() {
        let (m, d, f) = read("routers", "iosxr-show-bgp.txt");
        assert_eq!(f, "show-ip-bgp");
        // `Processed 3 prefixes, 8 paths` agrees with what was read: no warning.
        no_errors("xr", &d);
        let r = bgp(&m, "default");
        assert_eq!(r.len(), 3);
        assert_eq!(r.iter().map(|r| r.paths.len()).sum::<usize>(), 8);
        let x = route(r, "10.3.0.0/16");
        assert!(x.paths[0].status.internal && !x.paths[0].status.best);
        assert!(x.paths[1].status.best);
        assert_eq!(x.paths[1].next_hop.to_string(), "172.20.16.1");
        assert_eq!(
            (x.paths[1].med, x.paths[1].local_pref, x.paths[1].weight),
            (Some(0), Some(100), Some(0))
        );
        assert_eq!(x.paths[1].as_path, ["1800", "1239"]);
        assert_eq!(x.paths[1].origin, Some(Origin::Incomplete));
        let y = route(r, "10.16.0.0/16");
        assert_eq!(y.paths[1].weight, Some(65535));
        assert_eq!(y.paths[2].as_path, ["1878", "704", "701"]);
        assert_eq!(y.paths[2].local_pref, None);
    }

    #[test]
    fn iosxr_prompt_and_vrf() {
        let f: std::sync::Arc<str> = "t".into();
        let text = "RP/0/RP0/CPU0:pe-02#show bgp vrf L3VPN-2\nNetwork             Next-hop           Metric LocPrf Weight Path\n*> 10.1.2.0/24      0.0.0.0                  0         32768 i\n\nProcessed 2 prefixes, 2 paths\n";
        let segs = crate::net::text::segments(text);
        assert_eq!(segs[0].command, Some("show bgp vrf L3VPN-2"));
        let mut rt = kubepath_model::net::Router::new("r1");
        let mut d = Vec::new();
        router_text::read(&f, &segs[0], &mut rt, &mut d).unwrap();
        assert_eq!(rt.vrfs["L3VPN-2"].bgp.len(), 1);
        // The count says 2, one was read: the table may be truncated.
        assert!(
            d.iter()
                .any(|x| x.message.contains("Processed 2 prefixes, 2 paths")),
            "{d:?}"
        );
    }

    #[test]
    fn ios_running_config_with_building_configuration() {
        let (m, d, f) = read("routers", "ios-show-running-config-interface-building.txt");
        assert_eq!(f, "show-running-config-interface");
        no_errors("run-int", &d);
        let i = &m.routers["r1"].interfaces;
        assert_eq!(i.len(), 2);
        assert_eq!(i[0].name, "GigabitEthernet 2/0/4.223415");
        assert_eq!(i[0].vrf.as_deref(), Some("CLIENT_VOIP:1234"));
        assert_eq!(i[0].addresses[0].to_string(), "10.30.33.161/30");
        assert_eq!(i[1].vrf.as_deref(), Some("CLIENT_VOIP:1234"));
        assert_eq!(i[1].addresses[0].to_string(), "10.39.18.217/30");
    }

    #[test]
    fn nxos_show_interface_headers() {
        let (m, d, f) = read("routers", "nxos-show-interface-no-line-protocol.txt");
        assert_eq!(f, "show-interface");
        no_errors("nxos-int", &d);
        let i = &m.routers["r1"].interfaces;
        let names: Vec<&str> = i.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["Vlan 20", "mgmt 0", "Ethernet 1/1"]);
        // `Vlan20 is down (VLAN/BD is down), line protocol is down`: down, not shut.
        assert_eq!((i[0].admin_up, i[0].oper_up), (Some(true), Some(false)));
        assert_eq!((i[1].admin_up, i[1].oper_up), (Some(true), Some(true)));
        assert_eq!(i[1].mac.as_deref(), Some("50:87:89:a1:d8:ce"));
        assert_eq!(i[2].mac.as_deref(), Some("50:87:89:a1:d8:d6"));
    }

    #[test]
    fn nxos_link_not_connected_and_odd_headers() {
        let f: std::sync::Arc<str> = "t".into();
        let text = "Ethernet1/6 is down (Link not connected)\nadmin state is up, Dedicated Interface\n  Hardware: 100/1000/10000 Ethernet, address: 0050.5684.d7bd (bia 0050.5684.d7bd)\nEthernet1/7 is down (Administratively down)\nadmin state is down, Dedicated Interface\nEthernet1/8 is sleeping\n  Hardware: 100/1000/10000 Ethernet, address: 0050.5684.d7bf (bia 0050.5684.d7bf)\n";
        let segs = crate::net::text::segments(text);
        let mut rt = kubepath_model::net::Router::new("r1");
        let mut d = Vec::new();
        assert_eq!(
            router_text::read(&f, &segs[0], &mut rt, &mut d).unwrap(),
            Some("show-interface")
        );
        let i = &rt.interfaces;
        assert_eq!(i.len(), 2);
        assert_eq!((i[0].admin_up, i[0].oper_up), (Some(true), Some(false)));
        assert_eq!(i[0].mac.as_deref(), Some("00:50:56:84:d7:bd"));
        assert_eq!((i[1].admin_up, i[1].oper_up), (Some(false), Some(false)));
        // Not silently dropped: a header of an unknown shape is a warning with its line.
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].severity), (6, Severity::Warning));
    }

    #[test]
    fn ip_route_nhid_and_ipv6_gateway() {
        let (m, d, f) = read("iproute", "ip-route-nhid-via-inet6.txt");
        assert_eq!(f, "ip-route");
        no_errors("nhid", &d);
        let r = &m.nodes["n1"].routes;
        assert_eq!(r.len(), 3);
        let x = r
            .iter()
            .find(|r| r.dst.to_string() == "4.5.6.7/32")
            .unwrap();
        assert_eq!(x.gateway.map(|g| g.to_string()).as_deref(), Some("fe80::9"));
        assert_eq!(x.dev.as_deref(), Some("eth0"));
    }

    #[test]
    fn prompts_and_quoted_pastes() {
        for name in [
            "ip-route-quoted-paste.txt",
            "ip-route-macos-prompt.txt",
            "ip-route-powershell-prompt.txt",
        ] {
            let (m, d, f) = read("iproute", name);
            assert_eq!(f, "ip-route", "{name}");
            no_errors(name, &d);
            let r = &m.nodes["n1"].routes;
            assert_eq!(r.len(), 3, "{name}");
            assert_eq!(r[0].dst.to_string(), "10.1.1.1/32", "{name}");
            assert_eq!(
                r[0].gateway.map(|g| g.to_string()).as_deref(),
                Some("169.254.0.1")
            );
            assert!(r[0].onlink, "{name}");
            assert_eq!(r[0].metric, Some(20), "{name}");
        }
    }

    #[test]
    fn ip_addr_with_an_elision_line() {
        let (m, d, f) = read("iproute", "ip-a-elided-busybox-prompt.txt");
        assert_eq!(f, "ip-addr");
        let i = &m.nodes["n1"].interfaces;
        assert_eq!(i.len(), 2);
        assert_eq!(i[1].name, "ecfe_traf1");
        assert_eq!(i[1].addresses[0].address.to_string(), "10.33.152.74/27");
        // The elision is reported with its line, never silently.
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].severity), (6, Severity::Warning));
    }

    #[test]
    fn busybox_nslookup_stores_the_fqdn() {
        let (m, d, f) = read("dns", "nslookup-busybox-short-name.txt");
        assert_eq!(f, "nslookup");
        no_errors("busybox", &d);
        assert_eq!(m.dns.records.len(), 1);
        let r = &m.dns.records[0];
        assert_eq!(r.name, "kubernetes.default.svc.cluster.local.");
        assert_eq!(r.data, RData::A("10.32.0.1".parse().unwrap()));
        assert_eq!(m.dns.servers[0].0.to_string(), "10.32.0.10");
    }

    #[test]
    fn windows_nslookup_after_request_timed_out() {
        let (m, _, f) = read("dns", "nslookup-windows-request-timed-out.txt");
        assert_eq!(f, "nslookup");
        assert_eq!(m.dns.records.len(), 1);
        let r = &m.dns.records[0];
        assert_eq!(
            r.name,
            "fsiexample0storage.privatelink.file.core.windows.net."
        );
        assert_eq!(r.data, RData::A("10.0.17.4".parse().unwrap()));
        assert_eq!(m.dns.servers[0].0.to_string(), "10.0.1.4");
    }

    #[test]
    fn dig_under_an_unknown_prompt_is_dig_not_a_zone() {
        let (m, d, f) = read("dns", "dig-under-unknown-prompt.txt");
        assert_eq!(f, "dig");
        assert_eq!(m.dns.records.len(), 1);
        assert_eq!(
            m.dns.records[0].name,
            "kubernetes.default.svc.cluster.local."
        );
        assert_eq!(
            m.dns.records[0].data,
            RData::A("10.43.0.1".parse().unwrap())
        );
        // The prompt line is reported, not read.
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].severity), (1, Severity::Warning));
    }
}
