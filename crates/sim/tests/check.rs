//! `kubepath_sim::check` on the small trace fixtures (fixtures/trace/*, read-only), edited in
//! memory where a check needs a fault the fixtures do not have: every check has a snapshot
//! that triggers it and one that does not.

mod support;
use support::*;

use kubepath_sim::check::{check, CheckReport, Finding, Severity};

fn append(files: &mut [(String, Vec<u8>)], path: &str, text: &str) {
    let f = files.iter_mut().find(|(p, _)| p == path).unwrap();
    f.1.extend_from_slice(text.as_bytes());
}

fn codes(r: &CheckReport) -> Vec<&'static str> {
    r.findings.iter().map(|f| f.code).collect()
}

fn find<'a>(r: &'a CheckReport, code: &str) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code} in {:?}", codes(r)))
}

fn run(case: &str) -> CheckReport {
    check(&model(files(case)))
}

/// The healthy fixture: every flow delivered, nothing wrong.
#[test]
fn delivered_has_no_finding() {
    let r = run("delivered");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    // One client prefix x (LoadBalancer IP:80, Ingress host).
    assert_eq!(r.flows.len(), 2);
    for f in &r.flows {
        assert_eq!(f.address.to_string(), "10.200.0.1");
        assert!(f.verdicts.keys().all(|v| v.name() == "delivered"), "{f:?}");
    }
}

/// Each failing trace verdict becomes a finding of its own code, with the trace's fix.
#[test]
fn flow_findings_follow_the_trace_verdicts() {
    let cases: &[(&str, &str, Severity)] = &[
        (
            "asymmetric-return",
            "flow-asymmetric-return",
            Severity::Critical,
        ),
        (
            "multipath-return",
            "flow-asymmetric-return",
            Severity::Critical,
        ),
        ("no-route", "flow-no-route", Severity::Critical),
        ("loose-leak", "flow-no-route", Severity::Critical),
        ("rp-filter", "flow-rp-filter", Severity::Critical),
        ("strict-leak", "flow-rp-filter", Severity::Critical),
        ("dropped", "flow-dropped", Severity::Critical),
        ("forward-policy-drop", "flow-dropped", Severity::Critical),
        ("no-endpoints-backend", "flow-no-endpoints", Severity::Error),
        ("unknown", "flow-unknown", Severity::Warning),
    ];
    for (case, code, sev) in cases {
        let r = run(case);
        let f = find(&r, code);
        assert_eq!(f.severity, *sev, "{case}");
        assert!(!f.evidence.is_empty(), "{case}: {f:?}");
        assert!(f.title.contains("10.200.0.0/24"), "{case}: {}", f.title);
        // The most severe finding comes first.
        assert!(r.findings[0].severity >= f.severity, "{case}");
    }
    // Healthy variants of the same topologies: no flow finding.
    for case in [
        "delivered",
        "asymmetric-same-vrf",
        "policy-routing",
        "two-routers-frr",
        "etp-local",
        "l2-mode",
    ] {
        let r = run(case);
        assert!(
            !codes(&r).iter().any(|c| c.starts_with("flow-")),
            "{case}: {:?}",
            codes(&r)
        );
    }
}

/// The asymmetric return carries the trace's verified fixes, the prefix-wide one first and
/// re-simulated on every entry point of the finding; applied, the finding is gone.
#[test]
fn asymmetric_return_fix_is_verified_and_removes_the_finding() {
    let m = model(files("asymmetric-return"));
    let r = check(&m);
    let f = find(&r, "flow-asymmetric-return");
    assert_eq!(r.findings[0].code, "flow-asymmetric-return");
    // The client prefix is what the finding is about: two prefixes failing alike on the same
    // entry points and nodes have different keys (diff, SARIF fingerprints).
    assert!(
        f.affected[0].starts_with("client ") && f.affected[0].ends_with(" 10.200.0.0/24"),
        "{:?}",
        f.affected
    );
    let fix = &f.fixes[0];
    assert_eq!(fix.status, "verified", "{fix:?}");
    assert!(
        fix.commands.iter().any(|c| c.contains("10.200.0.0/24")),
        "{fix:?}"
    );
    assert!(fix.verification.contains("gone on 2"), "{fix:?}");
    let changes: Vec<_> = fix
        .commands
        .iter()
        .flat_map(|c| c.split(" && "))
        .map(|c| kubepath_ingest::whatif::parse(c).unwrap())
        .collect();
    let (fixed, _) = kubepath_sim::trace::whatif::apply(&m, &changes);
    let r = check(&fixed);
    assert!(
        !codes(&r).contains(&"flow-asymmetric-return"),
        "{:?}",
        codes(&r)
    );
}

#[test]
fn no_client_prefixes_means_no_flow_checks_and_a_note() {
    let mut f = files("asymmetric-return");
    edit(&mut f, "kubepath.yaml", "clients:", "unused_clients:");
    let r = check(&model(f));
    assert!(r.flows.is_empty());
    assert!(
        r.notes.iter().any(|n| n.contains("no client prefixes")),
        "{:?}",
        r.notes
    );
    // Not "nothing wrong": a warning, so a CI gate at the default threshold does not pass.
    let x = find(&r, "flow-not-checked");
    assert_eq!(x.severity, Severity::Warning);
    assert!(x.title.contains("no client prefixes"), "{}", x.title);
    // With clients, the fault is found and nothing says the checks did not run.
    let r = check(&model(files("asymmetric-return")));
    assert!(!codes(&r).contains(&"flow-not-checked"), "{:?}", codes(&r));
}

#[test]
fn lb_ip_announced_by_no_node() {
    // The pool is advertised to no one.
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/metallb.yaml",
        "  ipAddressPools:\n  - ingress",
        "  ipAddressPools:\n  - other",
    );
    let r = check(&model(f));
    let x = find(&r, "lb-ip-not-announced");
    assert_eq!(x.severity, Severity::Error);
    assert!(x.title.contains("10.99.0.10"), "{}", x.title);
    assert!(
        x.explanation.contains("not advertised"),
        "{}",
        x.explanation
    );
    // No serving endpoint anywhere: MetalLB withdraws the route.
    let r = run("no-endpoints");
    assert!(codes(&r).contains(&"lb-ip-not-announced"));
    assert!(!codes(&run("delivered")).contains(&"lb-ip-not-announced"));
}

#[test]
fn lb_announced_by_a_node_without_local_endpoint() {
    let r = run("etp-local-stale-route");
    let x = find(&r, "lb-announced-without-local-endpoint");
    assert_eq!(
        x.affected,
        vec![
            "Service ingress-nginx/ingress-nginx-controller",
            "IP 10.99.0.10",
            "node node-c"
        ],
        "the Service and its address tell two Services apart (diff key, SARIF fingerprint)"
    );
    assert!(
        x.evidence.iter().any(|e| e.starts_with("routers/R1/")),
        "{x:?}"
    );
    // Same topology without the stale path: ETP Local works as designed.
    assert!(!codes(&run("etp-local")).contains(&"lb-announced-without-local-endpoint"));
}

#[test]
fn ingress_status_address_without_controller() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/ingress.yaml",
        "    - ip: 10.99.0.10",
        "    - ip: 10.99.0.10\n    - ip: 10.1.0.77",
    );
    let r = check(&model(f));
    let x = find(&r, "ingress-status-no-controller");
    assert!(
        x.title.contains("10.1.0.77") && !x.title.contains("10.99.0.10"),
        "{}",
        x.title
    );
    assert_eq!(x.severity, Severity::Warning);
    assert!(!codes(&run("delivered")).contains(&"ingress-status-no-controller"));
}

#[test]
fn ingress_host_dns() {
    // The host resolves to an address that is no controller's.
    let mut f = files("delivered");
    edit(
        &mut f,
        "dns/example.com.zone",
        "web     IN  A     10.99.0.10",
        "web     IN  A     10.200.0.99",
    );
    let r = check(&model(f));
    let x = find(&r, "ingress-host-dns-elsewhere");
    assert!(x.title.contains("10.200.0.99"), "{}", x.title);
    // The host does not resolve, in a zone the snapshot holds.
    let mut f = files("delivered");
    edit(
        &mut f,
        "dns/example.com.zone",
        "web     IN  A     10.99.0.10\n",
        "",
    );
    edit(&mut f, "dns/example.com.zone", "www     IN  CNAME web", "");
    let r = check(&model(f));
    find(&r, "ingress-host-no-dns");
    let ok = codes(&run("delivered"));
    assert!(!ok.contains(&"ingress-host-no-dns") && !ok.contains(&"ingress-host-dns-elsewhere"));
    assert!(!ok.contains(&"dns-sources-disagree"));
    // A resolver capture that names another address than the zone (issue #11, defect 13).
    let mut f = files("delivered");
    f.push((
        "dns/nslookup-web.txt".into(),
        b"Server:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\nName:\tweb.example.com\nAddress: 10.99.0.11\n"
            .to_vec(),
    ));
    let r = check(&model(f));
    let x = find(&r, "dns-sources-disagree");
    assert!(
        x.explanation.contains("gives 10.99.0.10") && x.explanation.contains("gives 10.99.0.11"),
        "{}",
        x.explanation
    );
    // A DNS file that cannot be read is a finding, not only a note (review 7 X5).
    assert!(!ok.contains(&"dns-file-not-read"));
    let mut f = files("delivered");
    f.push((
        "dns/dig-web.txt".into(),
        b"web.example.com. 300 IN A 10.99.0.77\n\0".to_vec(),
    ));
    let r = check(&model(f));
    let x = find(&r, "dns-file-not-read");
    assert!(
        x.explanation.contains("dns/dig-web.txt (binary"),
        "{}",
        x.explanation
    );
    // A resolver capture that found no such name (issue #11, fifth review).
    let mut f = files("delivered");
    f.push((
        "dns/nslookup-web.txt".into(),
        b"Server:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\n** server can't find web.example.com: NXDOMAIN\n"
            .to_vec(),
    ));
    let r = check(&model(f));
    let x = find(&r, "dns-sources-disagree");
    assert!(
        x.explanation.contains("gives 10.99.0.10")
            && x.explanation
                .contains("dns/nslookup-web.txt:4 answered NXDOMAIN"),
        "{}",
        x.explanation
    );
}

#[test]
fn dns_name_on_a_pool_address_no_service_holds() {
    let mut f = files("delivered");
    append(
        &mut f,
        "dns/example.com.zone",
        "old     IN  A     10.99.0.11\n",
    );
    let r = check(&model(f));
    let x = find(&r, "dns-address-no-service");
    assert!(
        x.title.contains("old.example.com") && x.title.contains("10.99.0.11"),
        "{}",
        x.title
    );
    assert!(
        x.evidence
            .iter()
            .any(|e| e.starts_with("dns/example.com.zone:")),
        "{x:?}"
    );
    assert!(!codes(&run("delivered")).contains(&"dns-address-no-service"));
}

#[test]
fn two_ingresses_on_one_host_and_path() {
    let mut f = files("delivered");
    append(
        &mut f,
        "cluster/ingress.yaml",
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web-copy\n  namespace: shop\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: web.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 8080\n",
    );
    let r = check(&model(f));
    let x = find(&r, "ingress-path-conflict");
    assert!(
        x.title.contains("shop/web,") && x.title.contains("shop/web-copy"),
        "{}",
        x.title
    );
    assert_eq!(x.evidence.len(), 2);
    assert!(!codes(&run("delivered")).contains(&"ingress-path-conflict"));
}

/// An Ingress without a class and one of class nginx on the same host and path conflict when
/// one controller serves both (it watches class-less Ingresses); not when the class-less one
/// is served by no controller.
#[test]
fn classless_and_classed_ingress_conflict_when_one_controller_serves_both() {
    let classless = "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web-noclass\n  namespace: shop\nspec:\n  rules:\n  - host: web.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n            name: web\n            port:\n              number: 8080\n";
    // v1.9.4 without --watch-ingress-without-class: the class-less Ingress is not served.
    let mut f = files("delivered");
    append(&mut f, "cluster/ingress.yaml", classless);
    assert!(!codes(&check(&model(f))).contains(&"ingress-path-conflict"));
    // Both controller pods run with --watch-ingress-without-class: one controller, one conflict.
    let mut f = files("delivered");
    append(&mut f, "cluster/ingress.yaml", classless);
    for _ in 0..2 {
        edit(
            &mut f,
            "cluster/pods.yaml",
            "- --controller-class=k8s.io/ingress-nginx\n",
            "- --watch-ingress-without-class=true\n",
        );
    }
    let r = check(&model(f));
    let conflicts: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.code == "ingress-path-conflict")
        .collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:#?}");
    let x = conflicts[0];
    assert!(
        x.title.contains("shop/web,") && x.title.contains("shop/web-noclass"),
        "{}",
        x.title
    );
    assert!(
        x.explanation.contains("serves all of them")
            && x.explanation.contains("no class and class nginx"),
        "{}",
        x.explanation
    );
    assert_eq!(x.evidence.len(), 2);
}

/// The contradictions `snapshot inspect` lists come through with a severity and a fix.
#[test]
fn consistency_findings_get_severity_and_fix() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/ingress.yaml",
        "            name: web\n",
        "            name: api\n",
    );
    let r = check(&model(f));
    let x = find(&r, "ingress-backend-missing");
    assert_eq!(x.severity, Severity::Error);
    assert!(!x.fixes.is_empty() && !x.explanation.is_empty());
    assert!(!codes(&run("delivered")).contains(&"ingress-backend-missing"));
}

#[test]
fn service_whose_pods_are_all_unready() {
    let r = run("no-endpoints-backend");
    let x = find(&r, "selector-matches-no-ready-pod");
    assert!(
        x.title
            .starts_with("Service shop/web selects 1 pod, none of them Ready"),
        "{}",
        x.title
    );
    assert!(!codes(&run("delivered")).contains(&"selector-matches-no-ready-pod"));
}

/// The contradictions the issue names, each triggered by one edit of the healthy fixture.
#[test]
fn contradictions_named_by_the_issue() {
    // The same address on two nodes: node-a's address added to node-b's eth0.
    let mut f = files("delivered");
    edit(
        &mut f,
        "nodes/node-b/ip-addr.txt",
        "    inet 10.1.0.12/24 brd 10.1.0.255 scope global eth0\n",
        "    inet 10.1.0.12/24 brd 10.1.0.255 scope global eth0\n       valid_lft forever preferred_lft forever\n    inet 10.1.0.11/24 brd 10.1.0.255 scope global secondary eth0\n",
    );
    let r = check(&model(f));
    let x = find(&r, "duplicate-ip");
    assert_eq!(x.severity, Severity::Error);
    assert!(
        x.title.starts_with("10.1.0.11 is configured on 2 nodes"),
        "{}",
        x.title
    );
    assert!(
        x.evidence
            .iter()
            .any(|e| e.starts_with("nodes/node-a/ip-addr.txt:"))
            && x.evidence
                .iter()
                .any(|e| e.starts_with("nodes/node-b/ip-addr.txt:")),
        "{x:?}"
    );
    // What a contradiction is about is in `affected` (the diff key, SARIF's fingerprint).
    assert_eq!(
        x.affected,
        vec!["IP 10.1.0.11", "node node-a", "node node-b"],
        "{x:?}"
    );
    // A LoadBalancer IP outside every pool.
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/metallb.yaml",
        "  - 10.99.0.0/28",
        "  - 10.98.0.0/28",
    );
    let r = check(&model(f));
    let x = find(&r, "lb-ip-in-no-pool");
    assert!(x.title.contains("10.99.0.10"));
    assert_eq!(x.affected.last().map(String::as_str), Some("IP 10.99.0.10"));
    assert!(x.affected[0].starts_with("Service "), "{x:?}");
    // An Ingress backend port the Service does not have.
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/ingress.yaml",
        "              number: 8080",
        "              number: 8081",
    );
    let r = check(&model(f));
    let x = find(&r, "ingress-backend-port-missing");
    assert!(
        x.affected.iter().any(|a| a.starts_with("Ingress "))
            && x.affected.iter().any(|a| a.starts_with("Service "))
            && x.affected.contains(&"port 8081".to_string()),
        "{x:?}"
    );
    // A selector that matches no pod.
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/services.yaml",
        "      app: web\n",
        "      app: webb\n",
    );
    let r = check(&model(f));
    let x = find(&r, "selector-matches-no-pod");
    assert_eq!(x.affected.len(), 1, "{x:?}");
    assert!(x.affected[0].starts_with("Service "), "{x:?}");
    let ok = codes(&run("delivered"));
    for c in [
        "duplicate-ip",
        "lb-ip-in-no-pool",
        "ingress-backend-port-missing",
        "selector-matches-no-pod",
    ] {
        assert!(!ok.contains(&c), "{c}");
    }
}

/// `asymmetric-return` with the host-route fix applied for one client host only (on every
/// node): the prefix is split into that host and the rest, and the finding says the rest fails
/// while the host is delivered, with the fix that covers the whole prefix first.
#[test]
fn fix_applied_for_one_host_only_is_a_partial_prefix_finding() {
    let mut f = files("asymmetric-return");
    for n in ["node-a", "node-b", "node-c"] {
        append(
            &mut f,
            &format!("nodes/{n}/ip-route.txt"),
            "10.200.0.10 via 10.1.0.254 dev eth0 \n",
        );
    }
    let m = model(f);
    let mut notes = Vec::new();
    let prefix: ipnet::IpNet = "10.200.0.0/24".parse().unwrap();
    let classes = kubepath_sim::check::address_classes(&m, &prefix, &mut notes);
    let got: Vec<(String, String)> = classes
        .iter()
        .map(|c| (c.prefix.to_string(), c.address.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("10.200.0.0/24".to_string(), "10.200.0.1".to_string()),
            ("10.200.0.10/32".to_string(), "10.200.0.10".to_string()),
        ]
    );
    assert_eq!(classes[1].sources.len(), 3, "{classes:?}");
    let r = check(&m);
    // Both classes are traced on both entry points.
    assert_eq!(r.flows.len(), 4);
    assert!(
        !codes(&r).contains(&"flow-asymmetric-return"),
        "{:?}",
        codes(&r)
    );
    let x = find(&r, "flow-partial-prefix");
    // As severe as the asymmetric return the rest of the prefix still has.
    assert_eq!(x.severity, Severity::Critical);
    assert!(
        x.title
            .contains("10.200.0.0/24 except 10.200.0.10/32 (which is delivered)")
            && x.title.ends_with("a fix applied for some hosts only"),
        "{}",
        x.title
    );
    assert!(
        x.explanation.contains("Traced from 10.200.0.1 ")
            && x.explanation.contains("verdict asymmetric-return"),
        "{}",
        x.explanation
    );
    assert!(
        x.evidence[0].starts_with("nodes/node-a/ip-route.txt:"),
        "{:?}",
        x.evidence
    );
    assert!(
        x.affected
            .iter()
            .any(|a| a.contains("addresses 10.200.0.0/24")),
        "{:?}",
        x.affected
    );
    let fix = &x.fixes[0];
    assert_eq!(fix.status, "verified", "{fix:?}");
    assert!(
        fix.commands.iter().any(|c| c.contains("10.200.0.0/24")),
        "{fix:?}"
    );
    // The unedited fixture: one class, the finding as before.
    let r = run("asymmetric-return");
    assert_eq!(r.flows.len(), 2);
    assert!(!codes(&r).contains(&"flow-partial-prefix"));
}

/// A host route that changes nothing (the same way out as the default): both classes fail
/// alike, so the finding stays `flow-asymmetric-return` for the whole prefix.
#[test]
fn classes_failing_alike_keep_one_finding_for_the_prefix() {
    let mut f = files("asymmetric-return");
    for n in ["node-a", "node-b", "node-c"] {
        append(
            &mut f,
            &format!("nodes/{n}/ip-route.txt"),
            "10.200.0.10 via 10.2.0.254 dev eth1 \n",
        );
    }
    let r = check(&model(f));
    assert_eq!(r.flows.len(), 4);
    assert!(
        !codes(&r).contains(&"flow-partial-prefix"),
        "{:?}",
        codes(&r)
    );
    let x = find(&r, "flow-asymmetric-return");
    assert_eq!(r.findings[0].code, "flow-asymmetric-return");
    assert!(
        x.title
            .contains("client users 10.200.0.0/24 on all 3 nodes"),
        "{}",
        x.title
    );
    assert!(
        x.explanation.contains("2 address classes"),
        "{}",
        x.explanation
    );
}

/// The partition: nested sub-prefixes from node routes, an `ip rule` selector and a router's
/// BGP table; each class from its first address outside its more specific ones, never the
/// client prefix's network address; the rest from its first host in none of them.
#[test]
fn address_classes_of_nested_sub_prefixes() {
    let mut f = files("asymmetric-return");
    append(
        &mut f,
        "nodes/node-a/ip-route.txt",
        "10.200.0.0/25 via 10.2.0.254 dev eth1 \n10.200.0.1 via 10.1.0.254 dev eth0 \n",
    );
    edit(
        &mut f,
        "nodes/node-b/ip-rule.txt",
        "32766:",
        "1000:\tfrom all to 10.200.0.128/26 lookup main\n32766:",
    );
    edit(
        &mut f,
        "routers/R1/show-ip-bgp-vrf-OM.txt",
        "*>   10.1.0.0/24 ",
        "*>   10.200.0.192/27    10.90.0.2                       none       100        0      65000 i\n*>   10.1.0.0/24 ",
    );
    let m = model(f);
    let prefix: ipnet::IpNet = "10.200.0.0/24".parse().unwrap();
    let mut notes = Vec::new();
    let got: Vec<String> = kubepath_sim::check::address_classes(&m, &prefix, &mut notes)
        .iter()
        .map(|c| format!("{} {}", c.prefix, c.address))
        .collect();
    assert_eq!(
        got,
        vec![
            "10.200.0.0/24 10.200.0.224",
            "10.200.0.0/25 10.200.0.2",
            "10.200.0.1/32 10.200.0.1",
            // A sub-prefix's own network address is no host either.
            "10.200.0.128/26 10.200.0.129",
            "10.200.0.192/27 10.200.0.193",
        ],
        "{notes:?}"
    );
    assert!(notes.is_empty(), "{notes:?}");
}

/// "verified" is a promise for the finding's whole client prefix: the trace's host route for
/// the traced address is re-simulated on the prefix as it splits with the route (the host, and
/// the rest), so it is `not-sufficient`, naming an address that still fails; the policy
/// routing for the whole prefix stays `verified`.
#[test]
fn a_host_route_fix_is_not_sufficient_for_a_prefix() {
    let r = run("asymmetric-return");
    let x = find(&r, "flow-asymmetric-return");
    let host = x
        .fixes
        .iter()
        .find(|f| f.commands.iter().any(|c| c.contains("10.200.0.1/32")))
        .unwrap_or_else(|| panic!("no host route fix: {:#?}", x.fixes));
    assert_eq!(host.status, "not-sufficient", "{host:?}");
    assert!(
        host.verification
            .contains("asymmetric-return gone for 1 of the 2 classes; still asymmetric-return from 10.200.0.2"),
        "{}",
        host.verification
    );
    let whole = &x.fixes[0];
    assert!(
        whole.commands.iter().any(|c| c.contains("10.200.0.0/24")),
        "{whole:?}"
    );
    assert_eq!(whole.status, "verified", "{whole:?}");
}

/// The same client and prefix twice in the manifest is traced once; a client prefix that
/// covers the nodes' own subnet is traced from a host of it, never from a node's or router's
/// address.
#[test]
fn duplicate_clients_once_and_never_from_a_node_address() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "kubepath.yaml",
        "    prefixes: [10.200.0.0/24]",
        "    prefixes: [10.200.0.0/24, 10.200.0.0/24, 10.1.0.8/29]",
    );
    let m = model(f);
    let r = check(&m);
    let for_prefix = |p: &str| r.flows.iter().filter(|x| x.prefix.to_string() == p).count();
    assert_eq!(for_prefix("10.200.0.0/24"), 2, "{:#?}", r.flows);
    // 10.1.0.8/29: .9 and .10 are hosts, .11-.13 are node-a..c's eth0: traced from .9.
    let own: Vec<String> = m
        .nodes
        .values()
        .flat_map(|n| n.interfaces.iter())
        .flat_map(|i| i.addresses.iter().map(|a| a.address.addr().to_string()))
        .collect();
    assert!(own.contains(&"10.1.0.11".to_string()), "{own:?}");
    let mut notes = Vec::new();
    let classes =
        kubepath_sim::check::address_classes(&m, &"10.1.0.11/32".parse().unwrap(), &mut notes);
    assert!(classes.is_empty(), "{classes:?}");
    assert!(
        notes[0].contains("no client address to trace from"),
        "{notes:?}"
    );
    for fl in r
        .flows
        .iter()
        .filter(|x| x.prefix.to_string() == "10.1.0.8/29")
    {
        assert!(!own.contains(&fl.address.to_string()), "{fl:?}");
    }
    assert!(for_prefix("10.1.0.8/29") > 0);
}

/// A client prefix that covers the cluster (10.0.0.0/8) or martian space is never traced from
/// an address no client can have: a martian source, a node's or router's own address, a
/// subnet's network or broadcast address (the local table's `broadcast` entries included), or
/// a Service's address.
#[test]
fn classes_never_start_from_impossible_client_addresses() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "kubepath.yaml",
        "    prefixes: [10.200.0.0/24]",
        "    prefixes: [10.0.0.0/8, 224.0.0.0/4, 0.0.0.0/8]",
    );
    for n in ["node-a", "node-b", "node-c"] {
        let path = format!("nodes/{n}/ip-route.txt");
        let e = f.iter_mut().find(|(p, _)| *p == path).unwrap();
        e.1.extend_from_slice(
            b"broadcast 10.1.0.255 dev eth0 table local proto kernel scope link src 10.1.0.11 \n",
        );
    }
    let m = model(f);
    let mut notes = Vec::new();
    let classes =
        kubepath_sim::check::address_classes(&m, &"10.0.0.0/8".parse().unwrap(), &mut notes);
    assert!(classes.len() > 1, "{classes:?}");
    let own: Vec<std::net::IpAddr> = m
        .nodes
        .values()
        .flat_map(|n| n.interfaces.iter())
        .flat_map(|i| i.addresses.iter().map(|a| a.address.addr()))
        .chain(
            m.routers
                .values()
                .flat_map(|r| r.interfaces.iter())
                .flat_map(|i| i.addresses.iter().map(|a| a.addr())),
        )
        .collect();
    let services: Vec<std::net::IpAddr> = m
        .cluster
        .services
        .values()
        .flat_map(|s| s.lb_ingress_ips().into_iter().chain(s.cluster_ips.clone()))
        .collect();
    assert!(
        services.iter().any(|s| s.to_string() == "10.99.0.10"),
        "{services:?}"
    );
    for c in &classes {
        let a = c.address;
        assert!(!own.contains(&a), "{c:?}");
        assert!(!services.contains(&a), "{c:?}");
        assert!(!kubepath_sim::check::martian_source(a), "{c:?}");
        assert_ne!(a.to_string(), "10.1.0.255", "{c:?}");
        if c.prefix.prefix_len() < 31 {
            assert_ne!(a, c.prefix.network(), "{c:?}");
            assert_ne!(a, c.prefix.broadcast(), "{c:?}");
        }
    }
    // Martian prefixes: nothing to trace from, said in a note; reach leaves them out.
    let r = check(&m);
    for p in ["224.0.0.0/4", "0.0.0.0/8"] {
        assert!(
            !r.flows.iter().any(|x| x.prefix.to_string() == p),
            "{p}: {:?}",
            r.flows
        );
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains(&format!("client prefix {p}"))
                    && n.contains("no client address")),
            "{:?}",
            r.notes
        );
    }
    let prefixes = kubepath_sim::check::manifest_prefixes(&m);
    let (_, flows) = kubepath_sim::check::reach(&m, &prefixes);
    assert!(flows.iter().all(|x| x.prefix.to_string() == "10.0.0.0/8"));
}

/// A node whose routes were not collected may hold any pod IP: without its `ip route`, the
/// seed's pods on it are not "on no node" (undecided, no finding).
#[test]
fn a_node_without_routes_makes_pod_ip_on_no_node_undecided() {
    let all = files_of(&root().join("examples/dc173"));
    let has = |r: &CheckReport| codes(r).contains(&"pod-ip-on-no-node");
    assert!(!has(&check(&model(all.clone()))));
    let without: Files = all
        .into_iter()
        .filter(|(p, _)| p != "nodes/control-plane-4qjt9/ip-route.txt")
        .collect();
    let r = check(&model(without));
    assert!(!has(&r), "{:#?}", r.findings);
}

/// An IPv6 client prefix against an IPv4-only cluster: no flow to an IPv4 LoadBalancer IP,
/// nor to an Ingress host that the DNS resolves to IPv4 only (a connection never changes
/// family), so no undecided flow either; but the client was not checked, and `check` says so
/// (a warning, never a silent pass).
#[test]
fn a_client_of_the_other_family_is_not_traced_to_a_name_of_one_family() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "kubepath.yaml",
        "    prefixes: [10.200.0.0/24]",
        "    prefixes: [10.200.0.0/24, 2001:db8::/64]",
    );
    let r = check(&model(f));
    assert!(
        !r.flows
            .iter()
            .any(|x| x.prefix.to_string() == "2001:db8::/64"),
        "{:#?}",
        r.flows
    );
    assert_eq!(codes(&r), ["flow-not-checked"], "{:#?}", r.findings);
    let x = &r.findings[0];
    assert_eq!(x.severity, Severity::Warning);
    assert!(
        x.title.contains(
            "2001:db8::/64 was not traced: no exposed entry point of its address family (IPv6)"
        ),
        "{}",
        x.title
    );
    // The martian prefixes of a manifest get the same warning, naming why.
    let mut f = files("delivered");
    edit(
        &mut f,
        "kubepath.yaml",
        "    prefixes: [10.200.0.0/24]",
        "    prefixes: [127.0.0.0/8]",
    );
    let r = check(&model(f));
    assert_eq!(codes(&r), ["flow-not-checked"], "{:#?}", r.findings);
    assert!(
        r.findings[0].title.contains("martian sources"),
        "{}",
        r.findings[0].title
    );
}

/// `flow-routing-loop`: R1 routes the client prefix to R2, R2 back to R1 (the reply bounces
/// until its TTL runs out); the unedited loose-leak fixture is a no-route, not a loop.
#[test]
fn a_reply_loop_between_routers_is_flow_routing_loop() {
    let mut f = files("loose-leak");
    edit(
        &mut f,
        "routers/R1/show-ip-bgp.txt",
        "*>   10.1.0.0/24",
        "*>   10.200.0.0/24      10.2.0.254                      none       100        0      65100 i\n*>   10.1.0.0/24",
    );
    edit(
        &mut f,
        "routers/R2/show-ip-route-vrf-all.json",
        "{\n  \"10.2.0.0/24\"",
        r#"{
  "10.200.0.0/24": [{"prefix": "10.200.0.0/24", "prefixLen": 24, "protocol": "static", "vrfId": 0,
    "vrfName": "default", "selected": true, "destSelected": true, "distance": 1, "metric": 0,
    "installed": true, "table": 254,
    "nexthops": [{"flags": 3, "fib": true, "ip": "10.1.0.254", "afi": "ipv4", "active": true}]}],
  "10.2.0.0/24""#,
    );
    let r = check(&model(f));
    let x = find(&r, "flow-routing-loop");
    assert_eq!(x.severity, Severity::Critical);
    assert!(
        x.explanation.contains("loops between routers"),
        "{}",
        x.explanation
    );
    assert!(!codes(&run("loose-leak")).contains(&"flow-routing-loop"));
}

/// `pod-on-unknown-node`: a pod scheduled on a node that is not among the Nodes read.
#[test]
fn a_pod_on_a_node_not_read_is_pod_on_unknown_node() {
    let mut f = files("delivered");
    edit(
        &mut f,
        "cluster/pods.yaml",
        "    nodeName: node-a",
        "    nodeName: node-gone",
    );
    let r = check(&model(f));
    let x = find(&r, "pod-on-unknown-node");
    assert_eq!(x.severity, Severity::Warning);
    assert!(x.title.contains("node-gone"), "{}", x.title);
    assert!(!codes(&run("delivered")).contains(&"pod-on-unknown-node"));
}
