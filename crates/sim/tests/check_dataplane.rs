//! The node and data-plane checks (`crates/sim/src/check/dataplane.rs`) on the small trace
//! fixtures (fixtures/trace/*, read-only), edited in memory: each check has a snapshot that
//! triggers it and one that does not.

mod support;
use support::*;

use kubepath_sim::check::{check, CheckReport, Finding, Severity};

fn codes(r: &CheckReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

fn find<'a>(r: &'a CheckReport, code: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {:?}", codes(r)))
}

fn all<'a>(r: &'a CheckReport, code: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.code == code).collect()
}

fn run(files: Files) -> CheckReport {
    check(&model(files))
}

fn add(files: &mut Files, path: &str, text: &str) {
    files.push((path.to_string(), text.as_bytes().to_vec()));
    files.sort();
}

fn remove(files: &mut Files, path: &str) {
    let n = files.len();
    files.retain(|(p, _)| p != path);
    assert!(files.len() < n, "{path} not in the snapshot");
}

const DATAPLANE: [&str; 6] = [
    "nginx-conf-stale",
    "kube-proxy-stale",
    "iptables-legacy-and-nft",
    "pod-ip-outside-pod-cidr",
    "rp-filter-strict-asymmetric",
    "fix-half-applied",
];

/// The healthy fixtures say nothing of the node and data plane.
#[test]
fn healthy_fixtures_have_no_dataplane_finding() {
    for case in [
        "delivered",
        "asymmetric-return",
        "policy-routing",
        "etp-local",
        "l2-mode",
        "two-routers-frr",
    ] {
        let r = run(files(case));
        let found: Vec<_> = codes(&r)
            .into_iter()
            .filter(|c| DATAPLANE.contains(c))
            .collect();
        assert!(found.is_empty(), "{case}: {found:?}");
    }
}

// ---- nginx-conf-stale -----------------------------------------------------------------------

const CTL: &str = "ingress/ingress-nginx/ingress-nginx-controller-7c9d8f6b5-k2x4p/nginx.conf";

/// nginx.conf as ingress-nginx v1.9 writes it, with the servers given (each `(name, [(path,
/// namespace, ingress)])`), the default server and the internal status server.
/// (path, namespace, Ingress name) of one location.
type Loc<'a> = (&'a str, &'a str, &'a str);

fn nginx_conf(servers: &[(&str, &[Loc])]) -> String {
    let mut s = String::from(
        "# Configuration checksum: 1234567890

# setup custom paths that do not require root access
pid /tmp/nginx/nginx.pid;

events {
	multi_accept        on;
	worker_connections  16384;
	use                 epoll;
}

http {
	upstream upstream_balancer {
		server 0.0.0.1; # placeholder

		balancer_by_lua_block {
			balancer.balance()
		}

		keepalive 320;
	}

	## start server _
	server {
		server_name _ ;

		listen 80 default_server reuseport backlog=4096 ;

		set $proxy_upstream_name \"-\";

		location / {

			set $namespace      \"\";
			set $ingress_name   \"\";
			set $service_name   \"\";
			set $service_port   \"\";
			set $location_path  \"/\";

			set $proxy_upstream_name \"upstream-default-backend\";

			proxy_pass http://upstream_balancer;
		}

		location /healthz {
			access_log off;
			return 200;
		}
	}
	## end server _
",
    );
    for (name, locs) in servers {
        s.push_str(&format!(
            "
	## start server {name}
	server {{
		server_name {name} ;

		listen 80  ;

		set $proxy_upstream_name \"-\";
"
        ));
        for (path, ns, ing) in *locs {
            s.push_str(&format!(
                "
		location \"{path}\" {{

			set $namespace      \"{ns}\";
			set $ingress_name   \"{ing}\";
			set $service_name   \"web\";
			set $service_port   \"8080\";
			set $location_path  \"{path}\";

			set $proxy_upstream_name \"{ns}-web-8080\";

			proxy_pass http://upstream_balancer;
		}}
"
            ));
        }
        s.push_str(&format!("\t}}\n\t## end server {name}\n"));
    }
    s.push_str(
        "
	# default server, used for NGINX healthcheck and access to nginx stats
	server {
		listen 127.0.0.1:10246;
		set $proxy_upstream_name \"internal\";

		location /healthz {
			return 200;
		}

		location /nginx_status {
			stub_status on;
		}
	}
}
",
    );
    s
}

#[test]
fn nginx_conf_agreeing_with_the_ingresses_is_not_stale() {
    let mut f = files("delivered");
    add(
        &mut f,
        CTL,
        &nginx_conf(&[("web.example.com", &[("/", "shop", "web")])]),
    );
    let r = run(f);
    assert!(
        !codes(&r).contains(&"nginx-conf-stale"),
        "{:#?}",
        all(&r, "nginx-conf-stale")
    );
}

#[test]
fn nginx_conf_missing_a_path_and_serving_a_gone_host_is_stale() {
    let mut f = files("delivered");
    // The Ingress's `/` is missing (the conf still has an older `/shop`), and the conf serves a
    // host no Ingress gives any more.
    add(
        &mut f,
        CTL,
        &nginx_conf(&[
            ("old.example.com", &[("/", "shop", "old")]),
            ("web.example.com", &[("/shop", "shop", "web")]),
        ]),
    );
    let r = run(f);
    let x = find(&r, "nginx-conf-stale");
    assert_eq!(x.severity, Severity::Warning);
    assert!(
        x.title.contains("ingress-nginx-controller-7c9d8f6b5-k2x4p"),
        "{}",
        x.title
    );
    assert!(x.title.contains("3 differences"), "{}", x.title);
    // Names the Ingress and the nginx.conf lines.
    assert!(
        x.explanation.contains("Ingress shop/web"),
        "{}",
        x.explanation
    );
    assert!(
        x.explanation
            .contains("`location /` for host web.example.com"),
        "{}",
        x.explanation
    );
    assert!(
        x.explanation.contains("server old.example.com at ingress/"),
        "{}",
        x.explanation
    );
    assert!(
        x.explanation
            .contains("`location /shop` of server web.example.com"),
        "{}",
        x.explanation
    );
    assert!(
        x.evidence
            .iter()
            .any(|e| e.starts_with("cluster/ingress.yaml:")),
        "{:?}",
        x.evidence
    );
    assert!(
        x.evidence.iter().any(|e| e.starts_with(CTL)),
        "{:?}",
        x.evidence
    );
    // The default server and the internal status server are never reported.
    assert!(!x.explanation.contains("server _"), "{}", x.explanation);
    assert!(!x.explanation.contains("healthz"), "{}", x.explanation);
}

// ---- kube-proxy-stale -------------------------------------------------------------------------

#[test]
fn kube_proxy_rules_matching_the_endpoints_are_not_stale() {
    let r = run(files("delivered"));
    assert!(!codes(&r).contains(&"kube-proxy-stale"), "{:?}", codes(&r));
}

#[test]
fn kube_proxy_rules_with_an_old_endpoint_and_a_gone_service_are_stale() {
    let mut f = files("delivered");
    // node-b still DNATs to a controller pod that was replaced (192.168.20.9 instead of .5).
    edit(
        &mut f,
        "nodes/node-b/iptables-save.txt",
        "--to-destination 192.168.20.5:80",
        "--to-destination 192.168.20.9:80",
    );
    // node-c still has a cluster IP rule of a Service that was deleted.
    edit(
        &mut f,
        "nodes/node-c/iptables-save.txt",
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports;",
        "-A KUBE-SERVICES -d 10.96.77.7/32 -p tcp -m comment --comment \"shop/old-web:http cluster IP\" -m tcp --dport 8080 -j KUBE-SVC-QX2T7WOCBZ4LEJ5M\n-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports;",
    );
    let r = run(f);
    let stale = all(&r, "kube-proxy-stale");
    assert_eq!(stale.len(), 2, "{stale:#?}");
    let b = stale
        .iter()
        .find(|x| x.title.contains("node node-b"))
        .expect("node-b");
    assert_eq!(b.severity, Severity::Error);
    assert!(
        b.explanation
            .contains("lacks ready endpoint 192.168.20.5:80"),
        "{}",
        b.explanation
    );
    assert!(
        b.explanation.contains("still sends to 192.168.20.9:80"),
        "{}",
        b.explanation
    );
    assert!(
        b.explanation
            .contains("Service ingress-nginx/ingress-nginx-controller:http"),
        "{}",
        b.explanation
    );
    assert!(
        b.evidence
            .iter()
            .any(|e| e.starts_with("nodes/node-b/iptables-save.txt:")),
        "{:?}",
        b.evidence
    );
    let c = stale
        .iter()
        .find(|x| x.title.contains("node node-c"))
        .expect("node-c");
    assert!(
        c.explanation
            .contains("rules for Service shop/old-web, which does not exist"),
        "{}",
        c.explanation
    );
    // node-a agrees: no finding for it.
    assert!(!stale.iter().any(|x| x.title.contains("node-a")));
}

/// Nodes whose rulesets have the same bytes share one parsed ruleset; the check analyses the
/// nodes grouped by ruleset (one ruleset's parsed rules at a time) and still cites each node's
/// own file, whatever the order of the groups: node-a and node-c share one stale ruleset,
/// node-b has another.
#[test]
fn kube_proxy_stale_on_shared_and_distinct_rulesets_cites_each_node() {
    let mut f = files("delivered");
    for n in ["node-a", "node-c"] {
        edit(
            &mut f,
            &format!("nodes/{n}/iptables-save.txt"),
            "--to-destination 192.168.20.5:80",
            "--to-destination 192.168.20.9:80",
        );
    }
    edit(
        &mut f,
        "nodes/node-b/iptables-save.txt",
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports;",
        "-A KUBE-SERVICES -d 10.96.77.7/32 -p tcp -m comment --comment \"shop/old-web:http cluster IP\" -m tcp --dport 8080 -j KUBE-SVC-QX2T7WOCBZ4LEJ5M\n-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports;",
    );
    let m = model(f);
    let (a, c) = (&m.nodes["node-a"], &m.nodes["node-c"]);
    assert!(
        std::sync::Arc::ptr_eq(a.netfilter.as_ref().unwrap(), c.netfilter.as_ref().unwrap()),
        "node-a and node-c should share their ruleset"
    );
    let r = check(&m);
    let stale = all(&r, "kube-proxy-stale");
    assert_eq!(stale.len(), 3, "{stale:#?}");
    for n in ["node-a", "node-b", "node-c"] {
        let x = stale
            .iter()
            .find(|x| x.title.contains(&format!("node {n}")))
            .unwrap_or_else(|| panic!("no finding for {n}: {stale:#?}"));
        let own = format!("nodes/{n}/iptables-save.txt:");
        let nodes_files: Vec<&String> = x
            .evidence
            .iter()
            .filter(|e| e.starts_with("nodes/"))
            .collect();
        assert!(
            !nodes_files.is_empty() && nodes_files.iter().all(|e| e.starts_with(&own)),
            "{n}: {:?}",
            x.evidence
        );
        let what = if n == "node-b" {
            "rules for Service shop/old-web, which does not exist"
        } else {
            "still sends to 192.168.20.9:80"
        };
        assert!(x.explanation.contains(what), "{n}: {}", x.explanation);
    }
}

#[test]
fn kube_proxy_without_a_cluster_ip_rule_for_a_ready_service_is_stale() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "nodes/node-a/iptables-save.txt",
        "-A KUBE-SERVICES -d 10.96.45.10/32 -p tcp -m comment --comment \"shop/web:http cluster IP\" -m tcp --dport 8080 -j KUBE-SVC-QX2T7WOCBZ4LEJ5M\n",
        "",
    );
    let r = run(f);
    let x = find(&r, "kube-proxy-stale");
    assert!(x.title.contains("node node-a"), "{}", x.title);
    assert!(
        x.explanation.contains(
            "ClusterIP 10.96.45.10:8080/tcp has 1 ready endpoint but no KUBE-SERVICES rule"
        ),
        "{}",
        x.explanation
    );
}

/// kube-proxy v1.18's shapes: `! -s POD_CIDR ... -j KUBE-MARK-MASQ` comes before the dispatch
/// rule with the same destination and comment; the chain compared is the dispatch rule's.
#[test]
fn kube_proxy_v118_rules_are_read_past_the_masquerade_rule() {
    let r = run(files("etp-local-v118"));
    assert!(!codes(&r).contains(&"kube-proxy-stale"), "{:?}", codes(&r));
    let mut f = files("etp-local-v118");
    edit(
        &mut f,
        "cluster/endpoints.yaml",
        "- ip: 192.168.30.7",
        "- ip: 192.168.30.8",
    );
    let r = run(f);
    let xs = all(&r, "kube-proxy-stale");
    assert_eq!(xs.len(), 3, "{xs:#?}");
    assert!(
        xs[0].explanation.contains(
            "of Service shop/web:http lacks ready endpoint 192.168.30.8:8080 and still sends to 192.168.30.7:8080"
        ),
        "{}",
        xs[0].explanation
    );
}

/// A nat table collected by table (`iptables-save -t filter` only): nothing to compare.
#[test]
fn kube_proxy_check_needs_the_nat_table() {
    let mut f = files("delivered");
    let text = String::from_utf8(
        f.iter()
            .find(|(p, _)| p == "nodes/node-b/iptables-save.txt")
            .unwrap()
            .1
            .clone(),
    )
    .unwrap();
    let filter_start = text.find("*filter").unwrap();
    let filter_end = filter_start + text[filter_start..].find("COMMIT\n").unwrap() + 7;
    remove(&mut f, "nodes/node-b/iptables-save.txt");
    add(
        &mut f,
        "nodes/node-b/iptables-save-filter.txt",
        &format!(
            "node-b:~ # iptables-save -t filter\n{}",
            &text[filter_start..filter_end]
        ),
    );
    let r = run(f);
    assert!(!codes(&r).contains(&"kube-proxy-stale"), "{:?}", codes(&r));
}

// ---- iptables-legacy-and-nft --------------------------------------------------------------------

const LEGACY_KUBE_PROXY: &str = "# Generated by iptables-save v1.8.9 on Sat Nov 28 04:09:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SEP-3JWRBF2NOKDY6Q3S - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-CG5I4G2RS3ZVWGLK - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-SEP-3JWRBF2NOKDY6Q3S -p tcp -m comment --comment \"ingress-nginx/ingress-nginx-controller:http\" -m tcp -j DNAT --to-destination 192.168.10.5:80
-A KUBE-SERVICES -d 10.96.120.33/32 -p tcp -m comment --comment \"ingress-nginx/ingress-nginx-controller:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-CG5I4G2RS3ZVWGLK
-A KUBE-SVC-CG5I4G2RS3ZVWGLK -m comment --comment \"ingress-nginx/ingress-nginx-controller:http\" -j KUBE-SEP-3JWRBF2NOKDY6Q3S
COMMIT
# Completed on Sat Nov 28 04:09:00 2026
";

/// What kubelet leaves in the legacy tables when the host uses nft: canary and firewall chains,
/// no service rules.
const LEGACY_KUBELET_ONLY: &str = "# Generated by iptables-save v1.8.9 on Sat Nov 28 04:09:00 2026
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
# Completed on Sat Nov 28 04:09:00 2026
";

#[test]
fn kube_proxy_rules_in_both_iptables_variants() {
    let mut f = files("delivered");
    add(
        &mut f,
        "nodes/node-a/iptables-legacy-save.txt",
        &format!("node-a:~ # iptables-legacy-save\n{LEGACY_KUBE_PROXY}"),
    );
    let r = run(f);
    let x = find(&r, "iptables-legacy-and-nft");
    assert_eq!(x.severity, Severity::Warning);
    assert!(x.title.contains("node node-a"), "{}", x.title);
    assert!(
        x.evidence
            .contains(&"nodes/node-a/iptables-legacy-save.txt:2".to_string()),
        "{:?}",
        x.evidence
    );
    assert!(
        x.evidence
            .contains(&"nodes/node-a/iptables-save.txt:1".to_string()),
        "{:?}",
        x.evidence
    );
    assert_eq!(all(&r, "iptables-legacy-and-nft").len(), 1);
}

#[test]
fn kubelet_chains_in_legacy_are_not_kube_proxy_in_both_variants() {
    let mut f = files("delivered");
    add(
        &mut f,
        "nodes/node-a/iptables-legacy-save.txt",
        &format!("node-a:~ # iptables-legacy-save\n{LEGACY_KUBELET_ONLY}"),
    );
    let r = run(f);
    assert!(
        !codes(&r).contains(&"iptables-legacy-and-nft"),
        "{:?}",
        codes(&r)
    );
}

// ---- pod-ip-outside-pod-cidr --------------------------------------------------------------------

#[test]
fn pod_ip_outside_the_node_pod_cidr() {
    let mut f = files("delivered");
    // node-c's podCIDR is another range, and nothing on node-c says its pods come from a CNI
    // block of its own (no Calico blackhole block route).
    edit(
        &mut f,
        "cluster/nodes.yaml",
        "podCIDR: 192.168.30.0/26",
        "podCIDR: 192.168.40.0/26",
    );
    edit(
        &mut f,
        "nodes/node-c/ip-route.txt",
        "blackhole 192.168.30.0/26 proto bird \n",
        "",
    );
    let r = run(f);
    let x = find(&r, "pod-ip-outside-pod-cidr");
    assert_eq!(x.severity, Severity::Warning);
    assert!(x.title.contains("node node-c"), "{}", x.title);
    assert!(x.title.contains("192.168.40.0/26"), "{}", x.title);
    assert!(
        x.explanation
            .contains("shop/web-5d4f7b9c8-q7r2t 192.168.30.7"),
        "{}",
        x.explanation
    );
    assert!(
        x.affected
            .contains(&"Pod shop/web-5d4f7b9c8-q7r2t".to_string()),
        "{:?}",
        x.affected
    );
    // hostNetwork pods (the speakers, with node addresses) are not pods of the pod network.
    assert!(!x.explanation.contains("speaker"), "{}", x.explanation);
    assert_eq!(all(&r, "pod-ip-outside-pod-cidr").len(), 1);
}

/// An IP in another node's podCIDR, or in none, is consistency's `pod-ip-on-other-node` /
/// `pod-ip-on-no-node`: not reported twice.
#[test]
fn pod_ip_held_by_another_node_is_left_to_the_consistency_codes() {
    let r = run(files_of(&root().join("fixtures/snapshots/findings")));
    assert!(
        codes(&r).contains(&"pod-ip-on-other-node"),
        "{:?}",
        codes(&r)
    );
    assert!(codes(&r).contains(&"pod-ip-on-no-node"), "{:?}", codes(&r));
    assert!(
        !codes(&r).contains(&"pod-ip-outside-pod-cidr"),
        "{:?}",
        codes(&r)
    );
}

#[test]
fn pod_ip_in_the_node_calico_block_is_not_outside() {
    // Calico IPAM allocates from its own blocks (the blackhole route proto bird), not from
    // spec.podCIDR: a different podCIDR is not a fault then.
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/nodes.yaml",
        "podCIDR: 192.168.30.0/26",
        "podCIDR: 192.168.40.0/26",
    );
    let r = run(f);
    assert!(
        !codes(&r).contains(&"pod-ip-outside-pod-cidr"),
        "{:?}",
        codes(&r)
    );
}

// ---- rp-filter-strict-asymmetric --------------------------------------------------------------

#[test]
fn strict_rp_filter_where_the_route_back_leaves_elsewhere() {
    let r = run(files("rp-filter"));
    let xs = all(&r, "rp-filter-strict-asymmetric");
    // node-a, node-b and node-c: eth0 strict, default route via eth1.
    assert_eq!(xs.len(), 3, "{xs:#?}");
    let x = xs[0];
    assert_eq!(x.severity, Severity::Error);
    assert!(x.title.contains("strict rp_filter on eth0"), "{}", x.title);
    assert!(x.title.contains("users 10.200.0.0/24"), "{}", x.title);
    assert!(
        x.explanation.contains("leaves by eth1"),
        "{}",
        x.explanation
    );
    // The sysctl line and the router path that delivers the LoadBalancer IP there.
    assert!(
        x.evidence.iter().any(|e| e.contains("sysctl.txt:")),
        "{:?}",
        x.evidence
    );
    assert!(
        x.evidence.iter().any(|e| e.starts_with("routers/R1/")),
        "{:?}",
        x.evidence
    );
    let fix = &x.fixes[0];
    assert_eq!(fix.status, "verified", "{fix:?}");
    assert_eq!(
        fix.commands,
        vec!["sysctl -w net.ipv4.conf.eth0.rp_filter=2".to_string()]
    );
}

/// A host route back by eth0 for one client (the lab's route fix): that class passes, the rest
/// of the prefix is still dropped, and the title says so.
#[test]
fn strict_rp_filter_with_a_route_fix_for_some_hosts() {
    let mut f = files("rp-filter");
    for n in ["node-a", "node-b", "node-c"] {
        edit(
            &mut f,
            &format!("nodes/{n}/ip-route.txt"),
            "default via 10.2.0.254 dev eth1 proto static metric 101 \n",
            "default via 10.2.0.254 dev eth1 proto static metric 101 \n10.200.0.87 via 10.1.0.254 dev eth0 \n",
        );
    }
    let r = run(f);
    let xs = all(&r, "rp-filter-strict-asymmetric");
    assert_eq!(xs.len(), 3, "{xs:#?}");
    assert!(
        xs[0]
            .title
            .contains("users 10.200.0.0/24 (1 of its 2 address classes)"),
        "{}",
        xs[0].title
    );
    assert!(
        !xs[0].explanation.contains("10.200.0.87"),
        "{}",
        xs[0].explanation
    );
    assert!(!codes(&r).contains(&"fix-half-applied"), "{:?}", codes(&r));
}

#[test]
fn rp_filter_check_is_silent_without_sysctls_or_with_a_symmetric_route() {
    // Not collected: nothing said.
    let mut f = files("rp-filter");
    for n in ["node-a", "node-b", "node-c"] {
        remove(&mut f, &format!("nodes/{n}/sysctl.txt"));
    }
    let r = run(f);
    assert!(
        !codes(&r).contains(&"rp-filter-strict-asymmetric"),
        "{:?}",
        codes(&r)
    );
    // Strict, but the route back to the client leaves by eth0 (the persistent fix in place).
    let mut f = files("policy-routing");
    for n in ["node-a", "node-b", "node-c"] {
        let p = format!("nodes/{n}/sysctl.txt");
        edit(
            &mut f,
            &p,
            "net.ipv4.conf.eth0.rp_filter = 0",
            "net.ipv4.conf.eth0.rp_filter = 1",
        );
    }
    let r = run(f);
    assert!(
        !codes(&r).contains(&"rp-filter-strict-asymmetric"),
        "{:?}",
        codes(&r)
    );
}

// ---- fix-half-applied ---------------------------------------------------------------------------

#[test]
fn a_rule_for_the_client_prefix_on_some_nodes_only() {
    let mut f = files("policy-routing");
    edit(
        &mut f,
        "nodes/node-c/ip-rule.txt",
        "1100:\tfrom all to 10.200.0.0/24 lookup 100 proto static\n",
        "",
    );
    let r = run(f);
    let x = find(&r, "fix-half-applied");
    assert_eq!(x.severity, Severity::Error);
    assert!(x.title.contains("on 2 of 3 nodes"), "{}", x.title);
    assert!(x.title.contains("missing on node-c"), "{}", x.title);
    assert!(
        x.explanation.contains("node-a, node-b"),
        "{}",
        x.explanation
    );
    let fix = &x.fixes[0];
    assert_eq!(fix.nodes, vec!["node-c".to_string()]);
    assert_eq!(fix.commands.len(), 1);
    assert!(
        fix.commands[0].starts_with("ip rule add to 10.200.0.0/24 lookup 100"),
        "{:?}",
        fix.commands
    );
    assert!(
        x.evidence
            .iter()
            .any(|e| e.starts_with("nodes/node-a/ip-rule.txt:")),
        "{:?}",
        x.evidence
    );
}

#[test]
fn a_host_route_for_a_client_on_some_nodes_only() {
    let mut f = files("asymmetric-return");
    for n in ["node-a", "node-b"] {
        edit(
            &mut f,
            &format!("nodes/{n}/ip-route.txt"),
            "default via 10.2.0.254 dev eth1 proto static metric 101 \n",
            "default via 10.2.0.254 dev eth1 proto static metric 101 \n10.200.0.87 via 10.1.0.254 dev eth0 \n",
        );
    }
    let r = run(f);
    let x = find(&r, "fix-half-applied");
    assert!(x.title.contains("10.200.0.87"), "{}", x.title);
    assert!(x.title.contains("missing on node-c"), "{}", x.title);
    assert_eq!(
        x.fixes[0].commands,
        vec!["ip route add 10.200.0.87/32 via 10.1.0.254 dev eth0".to_string()]
    );
    assert_eq!(x.fixes[0].nodes, vec!["node-c".to_string()]);
    // The route itself tells this finding from one for another route or rule of the client.
    assert_eq!(
        x.affected.last().map(String::as_str),
        Some("ip route add 10.200.0.87/32 via 10.1.0.254 dev eth0"),
        "{:?}",
        x.affected
    );
}

/// The same with `ip -j route show table all` on node-b (as the lab collects it).
#[test]
fn a_host_route_for_a_client_on_some_nodes_only_from_ip_json_route() {
    let mut f = files("asymmetric-return");
    edit(
        &mut f,
        "nodes/node-a/ip-route.txt",
        "default via 10.2.0.254 dev eth1 proto static metric 101 \n",
        "default via 10.2.0.254 dev eth1 proto static metric 101 \n10.200.0.87 via 10.1.0.254 dev eth0 \n",
    );
    remove(&mut f, "nodes/node-b/ip-route.txt");
    add(
        &mut f,
        "nodes/node-b/ip-route.json",
        r#"[{"dst":"default","gateway":"10.2.0.254","dev":"eth1","protocol":"static","metric":101,"flags":[]},{"dst":"10.200.0.87","gateway":"10.1.0.254","dev":"eth0","flags":[]},{"dst":"10.1.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.1.0.12","metric":100,"flags":[]},{"dst":"10.2.0.0/24","dev":"eth1","protocol":"kernel","scope":"link","prefsrc":"10.2.0.12","metric":101,"flags":[]},{"dst":"192.168.10.0/26","gateway":"10.1.0.11","dev":"tunl0","protocol":"bird","flags":["onlink"]},{"dst":"192.168.30.0/26","gateway":"10.1.0.13","dev":"tunl0","protocol":"bird","flags":["onlink"]},{"type":"blackhole","dst":"192.168.20.0/26","protocol":"bird","flags":[]},{"type":"local","dst":"10.1.0.12","dev":"eth0","table":"local","protocol":"kernel","scope":"host","prefsrc":"10.1.0.12","flags":[]},{"type":"local","dst":"10.2.0.12","dev":"eth1","table":"local","protocol":"kernel","scope":"host","prefsrc":"10.2.0.12","flags":[]}]
"#,
    );
    let r = run(f);
    let x = find(&r, "fix-half-applied");
    assert!(x.title.contains("on 2 of 3 nodes"), "{}", x.title);
    assert!(x.title.contains("missing on node-c"), "{}", x.title);
    assert!(
        x.evidence
            .iter()
            .any(|e| e.starts_with("nodes/node-b/ip-route.json")),
        "{:?}",
        x.evidence
    );
}

#[test]
fn the_same_fix_on_every_node_is_not_half_applied() {
    let mut f = files("asymmetric-return");
    for n in ["node-a", "node-b", "node-c"] {
        edit(
            &mut f,
            &format!("nodes/{n}/ip-route.txt"),
            "default via 10.2.0.254 dev eth1 proto static metric 101 \n",
            "default via 10.2.0.254 dev eth1 proto static metric 101 \n10.200.0.87 via 10.1.0.254 dev eth0 \n",
        );
    }
    let r = run(f);
    assert!(!codes(&r).contains(&"fix-half-applied"), "{:?}", codes(&r));
}
