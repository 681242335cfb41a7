//! Matching semantics on hand-built worlds: one small situation per test.

use std::collections::BTreeMap;

use kubepath_model::SourceRef;

use super::config::PREFIX;
use super::controller::{ControllerRef, Version};
use super::world::*;
use super::{HttpRequest, IngressDecision, IngressView};

fn src(what: &str) -> SourceRef {
    SourceRef::new(format!("cluster/{what}.yaml"), 1)
}

fn path(p: &str, t: Option<PathType>, svc: &str, port: u16) -> PathRule {
    PathRule {
        path: Some(p.to_string()),
        path_type: t,
        backend: BackendRef {
            service: Some(svc.to_string()),
            port: Some(ServicePortRef::Number(port)),
            source: None,
        },
        source: Some(src(&format!("path{p}"))),
    }
}

fn named_path(p: &str, svc: &str, port: &str) -> PathRule {
    PathRule {
        backend: BackendRef {
            service: Some(svc.to_string()),
            port: Some(ServicePortRef::Name(port.to_string())),
            source: None,
        },
        ..path(p, Some(PathType::Prefix), svc, 0)
    }
}

fn rule(host: &str, paths: Vec<PathRule>) -> RuleObj {
    RuleObj {
        host: (!host.is_empty()).then(|| host.to_string()),
        paths: Some(paths),
        source: None,
    }
}

fn ingress(ns: &str, name: &str, anns: &[(&str, &str)], rules: Vec<RuleObj>) -> IngressObj {
    IngressObj {
        namespace: ns.into(),
        name: name.into(),
        api_version: "networking.k8s.io/v1".into(),
        creation_timestamp: None,
        class_name: None,
        annotations: anns
            .iter()
            .map(|(k, v)| {
                let k = if k.contains('/') {
                    k.to_string()
                } else {
                    format!("{PREFIX}{k}")
                };
                (k, v.to_string())
            })
            .collect(),
        default_backend: None,
        rules,
        tls: Vec::new(),
        source: src(name),
    }
}

/// A Service with one port `port` -> `target`, and a slice of ready endpoints `ips`.
fn service(w: &mut World, ns: &str, name: &str, port: u16, target: u16, ips: &[&str]) {
    w.services.push(ServiceObj {
        namespace: ns.into(),
        name: name.into(),
        type_: "ClusterIP".into(),
        cluster_ip: Some("10.96.0.50".into()),
        external_name: None,
        ports: vec![ServicePortObj {
            name: Some("http".into()),
            protocol: "TCP".into(),
            port,
            target_port: Some(TargetPort::Number(target)),
            source: None,
        }],
        source: src(&format!("svc-{name}")),
        endpoint_doubt: None,
    });
    w.slices.push(EndpointSliceObj {
        namespace: ns.into(),
        service: name.into(),
        ports: vec![SlicePort {
            name: Some("http".into()),
            port: Some(target),
            protocol: "TCP".into(),
        }],
        endpoints: ips
            .iter()
            .enumerate()
            .map(|(i, ip)| SliceEndpoint {
                addresses: vec![ip.parse().expect("test IP")],
                ready: Some(true),
                pod: Some((ns.into(), format!("{name}-{i}"))),
                node: Some(format!("node{i}")),
                source: None,
            })
            .collect(),
        source: src(&format!("eps-{name}")),
    });
}

fn world(ingresses: Vec<IngressObj>) -> World {
    let mut w = World {
        ingresses,
        ingresses_collected: true,
        ..Default::default()
    };
    for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "10.0.0.3")] {
        service(&mut w, "default", name, 80, 8080, &[ip]);
    }
    w
}

fn ask_with(w: &World, c: &ControllerRef, url: &str, headers: &[&str]) -> IngressDecision {
    let mut req = HttpRequest::from_url(url).expect("test URL");
    for h in headers {
        req.add_header_line(h).expect("test header");
    }
    IngressView::from_world(w.clone()).match_request(c, &req)
}

fn ask(w: &World, url: &str) -> IngressDecision {
    ask_with(w, &ControllerRef::generic(), url, &[])
}

fn versioned(v: Version) -> ControllerRef {
    ControllerRef {
        version: Some(v),
        ..ControllerRef::generic()
    }
}

/// (status, service) of a decision.
fn svc(d: &IngressDecision) -> (u16, Option<String>) {
    (d.status, d.backend.as_ref().map(|b| b.service.clone()))
}

fn ok(s: &str) -> (u16, Option<String>) {
    (200, Some(s.to_string()))
}

const NOT_FOUND: (u16, Option<String>) = (404, None);

#[test]
fn exact_matches_only_the_path() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/foo", Some(PathType::Exact), "a", 80)],
        )],
    )]);
    assert_eq!(svc(&ask(&w, "http://h.test/foo")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/foo/")), NOT_FOUND);
    assert_eq!(svc(&ask(&w, "http://h.test/foo/bar")), NOT_FOUND);
    let d = ask(&w, "http://h.test/foo");
    assert_eq!(d.nginx_location.as_deref(), Some("location = \"/foo\""));
    assert_eq!(d.ingress, Some(("default".into(), "x".into())));
    assert_eq!(d.upstream_path.as_deref(), Some("/foo"));
}

#[test]
fn prefix_is_element_wise() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/foo", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    assert_eq!(svc(&ask(&w, "http://h.test/foo")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/foo/")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/foo/bar")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/foobar")), NOT_FOUND);
    assert_eq!(
        ask(&w, "http://h.test/foo").nginx_location.as_deref(),
        Some("location = \"/foo\"")
    );
    assert_eq!(
        ask(&w, "http://h.test/foo/x").nginx_location.as_deref(),
        Some("location \"/foo/\"")
    );
}

#[test]
fn implementation_specific_follows_the_controller_version() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path(
                "/foo",
                Some(PathType::ImplementationSpecific),
                "a",
                80,
            )],
        )],
    )]);
    // Current controllers treat it as Prefix (SetDefaultNGINXPathType).
    let current = ControllerRef {
        watch_without_class: true,
        ..versioned(Version(1, 9, 4))
    };
    assert_eq!(
        svc(&ask_with(&w, &current, "http://h.test/foobar", &[])),
        NOT_FOUND
    );
    assert_eq!(
        svc(&ask_with(&w, &current, "http://h.test/foo/b", &[])),
        ok("a")
    );
    // Before v1.15 location paths are not quoted in nginx.conf.
    assert_eq!(
        ask_with(&w, &current, "http://h.test/foo/b", &[])
            .nginx_location
            .as_deref(),
        Some("location /foo/")
    );
    // Before v0.41 every non-Exact path is an nginx string prefix.
    let old = versioned(Version(0, 32, 0));
    assert_eq!(
        svc(&ask_with(&w, &old, "http://h.test/foobar", &[])),
        ok("a")
    );
    assert_eq!(
        ask_with(&w, &old, "http://h.test/foobar", &[])
            .nginx_location
            .as_deref(),
        Some("location /foo")
    );
}

#[test]
fn longest_path_wins() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![
                path("/", Some(PathType::Prefix), "c", 80),
                path("/foo", Some(PathType::Prefix), "a", 80),
                path("/foo/bar", Some(PathType::Prefix), "b", 80),
            ],
        )],
    )]);
    assert_eq!(svc(&ask(&w, "http://h.test/foo/bar/baz")), ok("b"));
    assert_eq!(svc(&ask(&w, "http://h.test/foo/baz")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/other")), ok("c"));
    assert_eq!(svc(&ask(&w, "http://h.test/foobar")), ok("c"));
}

#[test]
fn exact_and_prefix_on_the_same_path() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![
                path("/foo", Some(PathType::Exact), "a", 80),
                path("/foo", Some(PathType::Prefix), "b", 80),
            ],
        )],
    )]);
    assert_eq!(svc(&ask(&w, "http://h.test/foo")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/foo/x")), ok("b"));
}

#[test]
fn rules_merge_across_ingresses_of_a_host() {
    let w = world(vec![
        ingress(
            "default",
            "one",
            &[],
            vec![rule(
                "h.test",
                vec![path("/a", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        ingress(
            "default",
            "two",
            &[],
            vec![rule(
                "H.Test",
                vec![path("/b", Some(PathType::Prefix), "b", 80)],
            )],
        ),
    ]);
    assert_eq!(svc(&ask(&w, "http://h.test/a/1")), ok("a"));
    let d = ask(&w, "http://h.TEST:8080/b");
    assert_eq!(svc(&d), ok("b"));
    assert_eq!(d.ingress, Some(("default".into(), "two".into())));
}

#[test]
fn use_regex_spreads_to_every_path_of_the_host() {
    let plain = ingress(
        "default",
        "plain",
        &[],
        vec![rule(
            "h.test",
            vec![path("/foo", Some(PathType::Prefix), "a", 80)],
        )],
    );
    let w = world(vec![plain.clone()]);
    assert_eq!(svc(&ask(&w, "http://h.test/foobar")), NOT_FOUND);
    assert_eq!(svc(&ask(&w, "http://h.test/FOO/x")), NOT_FOUND);
    let regex = ingress(
        "default",
        "regex",
        &[("use-regex", "true")],
        vec![rule(
            "h.test",
            vec![path(
                "/api/v[0-9]+",
                Some(PathType::ImplementationSpecific),
                "b",
                80,
            )],
        )],
    );
    let w = world(vec![plain, regex]);
    // Now `location ~* "^/foo"` (the exact twin, also a regex) matches /foobar, any case.
    let d = ask(&w, "http://h.test/foobar");
    assert_eq!(svc(&d), ok("a"));
    assert_eq!(d.nginx_location.as_deref(), Some("location ~* \"^/foo\""));
    assert_eq!(svc(&ask(&w, "http://h.test/FOO/x")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/api/v2/users")), ok("b"));
    assert_eq!(svc(&ask(&w, "http://h.test/api/vx")), NOT_FOUND);
    // Other hosts are not affected.
    let mut w2 = w.clone();
    w2.ingresses.push(ingress(
        "default",
        "other",
        &[],
        vec![rule(
            "o.test",
            vec![path("/foo", Some(PathType::Prefix), "c", 80)],
        )],
    ));
    assert_eq!(svc(&ask(&w2, "http://o.test/foobar")), NOT_FOUND);
}

#[test]
fn rewrite_target_with_captures() {
    let w = world(vec![ingress(
        "default",
        "rw",
        &[("rewrite-target", "/$2"), ("use-regex", "true")],
        vec![rule(
            "h.test",
            vec![path(
                "/something(/|$)(.*)",
                Some(PathType::ImplementationSpecific),
                "a",
                80,
            )],
        )],
    )]);
    let d = ask(&w, "http://h.test/something/new/x?y=1");
    assert_eq!(svc(&d), ok("a"));
    assert_eq!(d.upstream_path.as_deref(), Some("/new/x?y=1"));
    assert_eq!(
        ask(&w, "http://h.test/something").upstream_path.as_deref(),
        Some("/")
    );
    // `^/something(/|$)` does not match /somethingelse: the root location (a regex `^/` too,
    // pointing at the default backend) takes it.
    assert_eq!(svc(&ask(&w, "http://h.test/somethingelse")), NOT_FOUND);
    assert_eq!(svc(&ask(&w, "http://h.test/SOMETHING/x")), ok("a"));
}

#[test]
fn rewrite_target_alone_enforces_regex() {
    let w = world(vec![ingress(
        "default",
        "rw",
        &[("rewrite-target", "/")],
        vec![rule(
            "h.test",
            vec![path("/app", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    let d = ask(&w, "http://h.test/APPLE/x");
    assert_eq!(svc(&d), ok("a"));
    assert_eq!(d.upstream_path.as_deref(), Some("/"));
}

#[test]
fn wildcard_host_matches_one_label() {
    let w = world(vec![
        ingress(
            "default",
            "wild",
            &[],
            vec![rule(
                "*.example.com",
                vec![path("/", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        ingress(
            "default",
            "exact",
            &[],
            vec![rule(
                "www.example.com",
                vec![path("/", Some(PathType::Prefix), "b", 80)],
            )],
        ),
    ]);
    assert_eq!(svc(&ask(&w, "http://foo.example.com/")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://www.example.com/")), ok("b"));
    assert_eq!(svc(&ask(&w, "http://a.b.example.com/")), NOT_FOUND);
    assert_eq!(svc(&ask(&w, "http://example.com/")), NOT_FOUND);
    // nginx's own wildcard before v0.41: any depth.
    let old = versioned(Version(0, 40, 2));
    assert_eq!(
        svc(&ask_with(&w, &old, "http://a.b.example.com/", &[])),
        ok("a")
    );
}

#[test]
fn unknown_host_goes_to_the_default_server() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    let d = ask(&w, "http://other.test/");
    assert_eq!(svc(&d), NOT_FOUND);
    assert_eq!(d.server.as_deref(), Some("_"));
    assert_eq!(d.ingress, None);
}

#[test]
fn hostless_rule_catches_every_host() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "",
            vec![path("/api", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    assert_eq!(svc(&ask(&w, "http://anything.test/api/x")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://anything.test/other")), NOT_FOUND);
}

#[test]
fn default_backends() {
    // An Ingress with only a default backend configures the catch-all server.
    let mut catch_all = ingress("default", "catch", &[], vec![]);
    catch_all.default_backend = Some(BackendRef {
        service: Some("c".into()),
        port: Some(ServicePortRef::Number(80)),
        source: None,
    });
    let w = world(vec![catch_all]);
    let d = ask(&w, "http://whatever.test/x");
    assert_eq!(svc(&d), ok("c"));
    assert_eq!(d.ingress, Some(("default".into(), "catch".into())));
    // An Ingress with rules and a default backend: its hosts fall back to it.
    let mut both = ingress(
        "default",
        "both",
        &[],
        vec![rule(
            "h.test",
            vec![path("/a", Some(PathType::Prefix), "a", 80)],
        )],
    );
    both.default_backend = Some(BackendRef {
        service: Some("b".into()),
        port: Some(ServicePortRef::Number(80)),
        source: None,
    });
    let w = world(vec![both]);
    assert_eq!(svc(&ask(&w, "http://h.test/a")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/zzz")), ok("b"));
    assert_eq!(svc(&ask(&w, "http://other.test/zzz")), NOT_FOUND);
}

#[test]
fn controller_default_backend_service() {
    let mut w = world(vec![]);
    service(
        &mut w,
        "ingress-nginx",
        "defaultbackend",
        80,
        8080,
        &["10.9.9.9"],
    );
    let c = ControllerRef {
        default_backend: Some(("ingress-nginx".into(), "defaultbackend".into())),
        ..ControllerRef::generic()
    };
    let d = ask_with(&w, &c, "http://nothing.test/", &[]);
    assert_eq!(d.status, 404);
    assert_eq!(
        d.backend.as_ref().map(|b| b.service.as_str()),
        Some("defaultbackend")
    );
    assert_eq!(d.upstreams.len(), 1);
}

fn with_tls(mut ing: IngressObj, host: &str) -> IngressObj {
    ing.tls.push(TlsObj {
        hosts: vec![host.into()],
        secret_name: Some("cert".into()),
        source: None,
    });
    ing
}

#[test]
fn ssl_redirect_needs_tls() {
    let base = ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    );
    // No TLS: ssl-redirect (default true) does nothing.
    let w = world(vec![base.clone()]);
    assert_eq!(svc(&ask(&w, "http://h.test/")), ok("a"));
    // TLS for the host: 308 to https, trailing slash dropped.
    let w = world(vec![with_tls(base.clone(), "h.test")]);
    let d = ask(&w, "http://h.test/");
    assert_eq!(d.status, 308);
    assert_eq!(d.location.as_deref(), Some("https://h.test"));
    let d = ask(&w, "http://h.test:80/x?y=1");
    assert_eq!(d.location.as_deref(), Some("https://h.test/x?y=1"));
    assert_eq!(svc(&ask(&w, "https://h.test/")), ok("a"));
    // The Ingress has a spec.tls section that does not list h.test: ingress-nginx still gives
    // h.test a certificate (the default one), so it redirects.
    let w = world(vec![with_tls(base.clone(), "other.test")]);
    assert_eq!(ask(&w, "http://h.test/").status, 308);
    // Another Ingress's TLS section does not count.
    let other = with_tls(
        ingress(
            "default",
            "other",
            &[],
            vec![rule(
                "o.test",
                vec![path("/", Some(PathType::Prefix), "b", 80)],
            )],
        ),
        "h.test",
    );
    let w = world(vec![base.clone(), other]);
    assert_eq!(svc(&ask(&w, "http://h.test/")), ok("a"));
    assert_eq!(ask(&w, "http://o.test/").status, 308);
    // ssl-redirect disabled.
    let mut off = with_tls(base, "h.test");
    off.annotations
        .insert(format!("{PREFIX}ssl-redirect"), "false".into());
    assert_eq!(svc(&ask(&world(vec![off]), "http://h.test/")), ok("a"));
}

#[test]
fn force_ssl_redirect_without_tls() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[("force-ssl-redirect", "true")],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    let d = ask(&w, "http://h.test/p/");
    assert_eq!(d.status, 308);
    assert_eq!(d.location.as_deref(), Some("https://h.test/p"));
    assert_eq!(svc(&ask(&w, "https://h.test/p/")), ok("a"));
}

#[test]
fn redirect_annotations() {
    let w = world(vec![
        ingress(
            "default",
            "perm",
            &[("permanent-redirect", "https://new.test$request_uri")],
            vec![rule(
                "p.test",
                vec![path("/", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        ingress(
            "default",
            "temp",
            &[
                ("temporal-redirect", "https://tmp.test/"),
                ("temporal-redirect-code", "307"),
            ],
            vec![rule(
                "t.test",
                vec![path("/", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        ingress(
            "default",
            "root",
            &[("app-root", "/app1")],
            vec![rule(
                "r.test",
                vec![path("/", Some(PathType::Prefix), "a", 80)],
            )],
        ),
    ]);
    let d = ask(&w, "http://p.test/x?a=1");
    assert_eq!(
        (d.status, d.location.as_deref()),
        (301, Some("https://new.test/x?a=1"))
    );
    let d = ask(&w, "http://t.test/x");
    assert_eq!(
        (d.status, d.location.as_deref()),
        (307, Some("https://tmp.test/"))
    );
    let d = ask(&w, "http://r.test/");
    assert_eq!(
        (d.status, d.location.as_deref()),
        (302, Some("http://r.test/app1"))
    );
    assert_eq!(svc(&ask(&w, "http://r.test/other")), ok("a"));
}

fn canary_world(anns: &[(&str, &str)]) -> World {
    let mut all = vec![("canary", "true")];
    all.extend_from_slice(anns);
    world(vec![
        ingress(
            "default",
            "main",
            &[],
            vec![rule(
                "h.test",
                vec![path("/", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        ingress(
            "default",
            "canary",
            &all,
            vec![rule(
                "h.test",
                vec![path("/", Some(PathType::Prefix), "b", 80)],
            )],
        ),
    ])
}

#[test]
fn canary_by_header() {
    let w = canary_world(&[("canary-by-header", "X-Canary"), ("canary-weight", "30")]);
    let c = ControllerRef::generic();
    let d = ask_with(&w, &c, "http://h.test/", &["x-canary: always"]);
    assert_eq!(svc(&d), ok("b"));
    assert_eq!(d.ingress, Some(("default".into(), "canary".into())));
    assert!(d.alternatives.is_empty());
    let d = ask_with(&w, &c, "http://h.test/", &["X-Canary: never"]);
    assert_eq!(svc(&d), ok("a"));
    assert!(d.alternatives.is_empty());
    // Another value: falls through to the weight.
    let d = ask_with(&w, &c, "http://h.test/", &["X-Canary: maybe"]);
    assert_eq!(svc(&d), ok("a"));
    let split: Vec<(f64, Option<String>)> = d
        .alternatives
        .iter()
        .map(|(p, a)| (*p, a.backend.as_ref().map(|b| b.service.clone())))
        .collect();
    assert_eq!(split.len(), 2);
    assert!((split[0].0 - 0.7).abs() < 1e-9 && split[0].1.as_deref() == Some("a"));
    assert!((split[1].0 - 0.3).abs() < 1e-9 && split[1].1.as_deref() == Some("b"));
}

#[test]
fn canary_by_header_value_and_cookie() {
    let w = canary_world(&[
        ("canary-by-header", "X-Env"),
        ("canary-by-header-value", "staging"),
        ("canary-by-cookie", "beta"),
    ]);
    let c = ControllerRef::generic();
    assert_eq!(
        svc(&ask_with(&w, &c, "http://h.test/", &["X-Env: staging"])),
        ok("b")
    );
    // With a header value configured, "always" is just another value.
    assert_eq!(
        svc(&ask_with(&w, &c, "http://h.test/", &["X-Env: always"])),
        ok("a")
    );
    assert_eq!(
        svc(&ask_with(
            &w,
            &c,
            "http://h.test/",
            &["Cookie: x=1; beta=always"]
        )),
        ok("b")
    );
    assert_eq!(
        svc(&ask_with(&w, &c, "http://h.test/", &["Cookie: beta=never"])),
        ok("a")
    );
    // No weight: nothing else goes to the canary.
    let d = ask_with(&w, &c, "http://h.test/", &[]);
    assert_eq!(svc(&d), ok("a"));
    assert!(d.alternatives.is_empty());
}

#[test]
fn canary_weight_total() {
    let w = canary_world(&[("canary-weight", "1"), ("canary-weight-total", "1000")]);
    let d = ask(&w, "http://h.test/");
    assert_eq!(d.alternatives.len(), 2);
    assert!((d.alternatives[1].0 - 0.001).abs() < 1e-12);
    let w = canary_world(&[("canary-weight", "100")]);
    assert_eq!(svc(&ask(&w, "http://h.test/")), ok("b"));
}

#[test]
fn canary_without_primary_is_ignored() {
    let w = world(vec![ingress(
        "default",
        "canary",
        &[("canary", "true"), ("canary-weight", "50")],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "b", 80)],
        )],
    )]);
    assert_eq!(svc(&ask(&w, "http://h.test/")), NOT_FOUND);
}

#[test]
fn missing_service_is_503() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "nosuch", 80)],
        )],
    )]);
    let d = ask(&w, "http://h.test/");
    assert_eq!(d.status, 503);
    assert_eq!(
        d.backend.as_ref().map(|b| b.service.as_str()),
        Some("nosuch")
    );
    assert!(d.upstreams.is_empty());
    assert_eq!(d.upstream_path, None);
    assert_eq!(ask(&w, "http://other.test/").upstream_path, None);
}

#[test]
fn no_ready_endpoint_is_503() {
    let mut w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    for s in w.slices.iter_mut() {
        for e in s.endpoints.iter_mut() {
            e.ready = Some(false);
        }
    }
    assert_eq!(ask(&w, "http://h.test/").status, 503);
    // A Service port the backend does not name: 503 too.
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 81)],
        )],
    )]);
    assert_eq!(ask(&w, "http://h.test/").status, 503);
}

#[test]
fn named_service_port_and_target_port() {
    let mut w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule("h.test", vec![named_path("/", "web", "http")])],
    )]);
    service(
        &mut w,
        "default",
        "web",
        8080,
        9090,
        &["10.1.0.1", "10.1.0.2"],
    );
    let d = ask(&w, "http://h.test/");
    assert_eq!(svc(&d), ok("web"));
    let b = d.backend.as_ref().expect("backend");
    assert_eq!(b.port, ServicePortRef::Name("http".into()));
    assert_eq!(b.port_number, Some(8080));
    let ups: Vec<(f64, String, u16)> = d
        .upstreams
        .iter()
        .map(|(p, u)| (*p, u.address.clone(), u.port))
        .collect();
    assert_eq!(
        ups,
        vec![
            (0.5, "10.1.0.1".into(), 9090),
            (0.5, "10.1.0.2".into(), 9090)
        ]
    );
}

#[test]
fn endpoints_come_from_the_ingress_namespace_only() {
    let mut w = world(vec![ingress(
        "monitoring",
        "prom",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "pm", 9090)],
        )],
    )]);
    service(&mut w, "evnfm", "pm", 9090, 9090, &["192.168.188.101"]);
    service(&mut w, "monitoring", "pm", 9090, 9090, &["192.168.22.247"]);
    let d = ask(&w, "http://h.test/");
    assert_eq!(d.status, 200);
    let b = d.backend.as_ref().expect("backend");
    assert_eq!(b.namespace, "monitoring");
    let ips: Vec<&str> = d
        .upstreams
        .iter()
        .map(|(_, u)| u.address.as_str())
        .collect();
    assert_eq!(ips, vec!["192.168.22.247"]);
    assert_eq!(
        d.upstreams[0].1.pod,
        Some(("monitoring".to_string(), "pm-0".to_string()))
    );
}

#[test]
fn service_upstream_uses_the_cluster_ip() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[("service-upstream", "true")],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    let d = ask(&w, "http://h.test/");
    assert_eq!(d.status, 200);
    assert_eq!(d.upstreams.len(), 1);
    assert!(d.upstreams[0].1.via_cluster_ip);
    assert_eq!(
        (d.upstreams[0].1.address.as_str(), d.upstreams[0].1.port),
        ("10.96.0.50", 80)
    );
}

#[test]
fn ingress_class_rules() {
    let mut classless = ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    );
    let v1 = versioned(Version(1, 9, 4));
    let v0 = versioned(Version(0, 32, 0));
    let w = world(vec![classless.clone()]);
    assert_eq!(svc(&ask_with(&w, &v1, "http://h.test/", &[])), NOT_FOUND);
    assert_eq!(svc(&ask_with(&w, &v0, "http://h.test/", &[])), ok("a"));
    let watch = ControllerRef {
        watch_without_class: true,
        ..v1.clone()
    };
    assert_eq!(svc(&ask_with(&w, &watch, "http://h.test/", &[])), ok("a"));
    // The annotation.
    classless
        .annotations
        .insert("kubernetes.io/ingress.class".into(), "nginx".into());
    let w = world(vec![classless.clone()]);
    assert_eq!(svc(&ask_with(&w, &v1, "http://h.test/", &[])), ok("a"));
    classless
        .annotations
        .insert("kubernetes.io/ingress.class".into(), "traefik".into());
    let w = world(vec![classless.clone()]);
    assert_eq!(svc(&ask_with(&w, &v1, "http://h.test/", &[])), NOT_FOUND);
    assert_eq!(svc(&ask_with(&w, &v0, "http://h.test/", &[])), NOT_FOUND);
    // ingressClassName -> IngressClass controller.
    classless.annotations.clear();
    classless.class_name = Some("public".into());
    let mut w = world(vec![classless]);
    assert_eq!(svc(&ask_with(&w, &v1, "http://h.test/", &[])), NOT_FOUND);
    w.classes.push(IngressClassObj {
        name: "public".into(),
        controller: "k8s.io/ingress-nginx".into(),
        is_default: false,
        source: src("ic"),
    });
    assert_eq!(svc(&ask_with(&w, &v1, "http://h.test/", &[])), ok("a"));
    w.classes[0].controller = "example.com/other".into();
    assert_eq!(svc(&ask_with(&w, &v1, "http://h.test/", &[])), NOT_FOUND);
}

#[test]
fn first_ingress_of_a_path_wins() {
    let mut first = ingress(
        "default",
        "first",
        &[],
        vec![rule(
            "h.test",
            vec![path("/x", Some(PathType::Prefix), "a", 80)],
        )],
    );
    first.creation_timestamp = Some("2020-01-01T00:00:00Z".into());
    let mut second = ingress(
        "default",
        "second",
        &[],
        vec![rule(
            "h.test",
            vec![path("/x", Some(PathType::Prefix), "b", 80)],
        )],
    );
    second.creation_timestamp = Some("2021-01-01T00:00:00Z".into());
    let w = world(vec![second, first]);
    assert_eq!(svc(&ask(&w, "http://h.test/x")), ok("a"));
}

#[test]
fn uri_is_normalised_before_matching() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/foo", Some(PathType::Exact), "a", 80)],
        )],
    )]);
    assert_eq!(svc(&ask(&w, "http://h.test//foo")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/bar/../foo")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/%66oo?q")), ok("a"));
    assert_eq!(ask(&w, "http://h.test/../x").status, 400);
}

fn conf(service: &str) -> NginxConfObj {
    NginxConfObj {
        pod: None,
        servers: vec![NginxServerObj {
            names: vec!["h.test".into()],
            locations: vec![NginxLocationObj {
                modifier: LocationModifier::Prefix,
                path: "/".into(),
                namespace: Some("default".into()),
                ingress_name: Some("x".into()),
                service_name: Some(service.into()),
                service_port: Some("80".into()),
                source: SourceRef::new("ingress/nginx.conf", 40),
            }],
            source: SourceRef::new("ingress/nginx.conf", 30),
        }],
        source: SourceRef::new("ingress/nginx.conf", 0),
    }
}

#[test]
fn nginx_conf_cross_check() {
    let mut w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    w.nginx.push(conf("a"));
    let d = ask(&w, "http://h.test/");
    assert_eq!(svc(&d), ok("a"));
    assert!(d.findings.is_empty(), "{:?}", d.findings);
    w.nginx[0] = conf("b");
    let d = ask(&w, "http://h.test/");
    assert_eq!(svc(&d), ok("a"));
    assert_eq!(d.findings.len(), 1);
    assert!(d.findings[0].message.contains("stale configuration"));
    assert_eq!(
        d.findings[0].sources[0],
        SourceRef::new("ingress/nginx.conf", 40)
    );
    w.nginx[0].servers[0].names = vec!["other.test".into()];
    let d = ask(&w, "http://h.test/");
    assert_eq!(d.findings.len(), 1);
    assert!(d.findings[0].message.contains("has no server for h.test"));
}

#[test]
fn controllers_are_found_with_their_flags() {
    let mut w = World::default();
    let pod = |name: &str, labels: &[(&str, &str)], image: &str, args: &[&str]| PodObj {
        namespace: "ingress-nginx".into(),
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        node: Some("n1".into()),
        ips: vec!["192.168.1.1".parse().expect("ip")],
        containers: vec![ContainerObj {
            name: "controller".into(),
            image: image.into(),
            command: vec![],
            args: args.iter().map(|s| s.to_string()).collect(),
        }],
        source: src(name),
    };
    w.pods.push(pod(
        "ctrl",
        &[
            ("app.kubernetes.io/name", "ingress-nginx"),
            ("app.kubernetes.io/component", "controller"),
        ],
        "registry.k8s.io/ingress-nginx/controller:v1.9.4",
        &[
            "/nginx-ingress-controller",
            "--ingress-class=internal",
            "--watch-ingress-without-class=true",
        ],
    ));
    w.pods.push(pod(
        "admission",
        &[
            ("app.kubernetes.io/name", "ingress-nginx"),
            ("app.kubernetes.io/component", "admission-webhook"),
        ],
        "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.4",
        &["create"],
    ));
    w.pods
        .push(pod("web", &[("app", "web")], "nginx:1.25", &[]));
    // NGINX Inc.'s controller shares the old chart's label.
    w.pods.push(pod(
        "nginx-inc",
        &[("app", "nginx-ingress")],
        "nginx/nginx-ingress:3.4.0",
        &["-nginx-configmaps=$(POD_NAMESPACE)/nginx-config"],
    ));
    w.pods.push(pod(
        "old-chart-backend",
        &[("app", "nginx-ingress"), ("component", "default-backend")],
        "k8s.gcr.io/defaultbackend-amd64:1.5",
        &[],
    ));
    let cs = IngressView::from_world(w).controllers();
    assert_eq!(cs.len(), 1);
    let c = &cs[0];
    assert_eq!(c.pod, Some(("ingress-nginx".into(), "ctrl".into())));
    assert_eq!(c.version, Some(Version(1, 9, 4)));
    assert_eq!(c.ingress_class, "internal");
    assert!(c.watch_without_class);
    assert_eq!(c.controller_class, "k8s.io/ingress-nginx");
}

#[test]
fn controller_configmap_sets_the_defaults() {
    let base = with_tls(
        ingress(
            "default",
            "x",
            &[],
            vec![rule(
                "h.test",
                vec![path("/", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        "h.test",
    );
    let mut w = world(vec![base]);
    let c = ControllerRef {
        configmap: Some(("ingress-nginx".into(), "cfg".into())),
        ..ControllerRef::generic()
    };
    // ConfigMap missing: defaults (308), with a note.
    let d = ask_with(&w, &c, "http://h.test/x", &[]);
    assert_eq!(d.status, 308);
    assert!(d.notes.iter().any(|n| n.contains("not in the snapshot")));
    let cm = |pairs: &[(&str, &str)]| ConfigMapObj {
        namespace: "ingress-nginx".into(),
        name: "cfg".into(),
        data: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        lines: BTreeMap::new(),
        source: src("cm"),
    };
    w.config_maps = vec![cm(&[("http-redirect-code", "301")])];
    let d = ask_with(&w, &c, "http://h.test/x", &[]);
    assert_eq!(
        (d.status, d.location.as_deref()),
        (301, Some("https://h.test/x"))
    );
    w.config_maps = vec![cm(&[("ssl-redirect", "false")])];
    assert_eq!(svc(&ask_with(&w, &c, "http://h.test/x", &[])), ok("a"));
    // use-forwarded-headers: a TLS-terminating load balancer in front says https.
    w.config_maps = vec![cm(&[("use-forwarded-headers", "true")])];
    assert_eq!(
        svc(&ask_with(
            &w,
            &c,
            "http://h.test/x",
            &["X-Forwarded-Proto: https"]
        )),
        ok("a")
    );
    assert_eq!(ask_with(&w, &c, "http://h.test/x", &[]).status, 308);
}

#[test]
fn nginx_conf_knows_a_host_the_ingresses_do_not() {
    let mut w = world(vec![]);
    w.nginx.push(conf("a"));
    let d = ask(&w, "http://h.test/");
    assert_eq!(svc(&d), NOT_FOUND);
    assert_eq!(d.findings.len(), 1);
    assert!(d.findings[0]
        .message
        .contains("no Ingress this controller serves defines it"));
}

/// Issue #11 item 6: a snapshot without Ingress objects must not answer a confident 404 for a
/// host the controller's nginx.conf serves.
#[test]
fn without_ingress_objects_the_nginx_conf_decides_or_the_answer_is_unknown() {
    let mut w = world(vec![]);
    w.ingresses_collected = false;
    // No nginx.conf either: nothing says whether an Ingress serves the host.
    let d = ask(&w, "http://h.test/");
    let why = d.unknown.expect("no Ingress and no nginx.conf: unknown");
    assert!(why.contains("kubectl get ingresses -A -o yaml"), "{why}");
    // nginx.conf serves the host: an Ingress the snapshot lacks routes it.
    w.nginx.push(conf("a"));
    let d = ask(&w, "http://h.test/");
    let why = d.unknown.expect("nginx.conf serves the host: unknown");
    assert!(why.contains("ingress/nginx.conf:30"), "{why}");
    assert!(why.contains("kubectl get ingresses"), "{why}");
    assert!(
        d.findings.is_empty(),
        "not a stale configuration: {:?}",
        d.findings
    );
    // A wildcard server as buildServerName renders it covers one label.
    w.nginx[0].servers[0].names = vec![r"~^(?<subdomain>[\w-]+)\.test$".into()];
    assert!(ask(&w, "http://h.test/").unknown.is_some());
    // nginx.conf has no server for the host: its default server answers, a known 404.
    let d = ask(&w, "http://a.b.test/");
    assert_eq!(d.unknown, None);
    assert_eq!(svc(&d), NOT_FOUND);
    w.nginx[0].servers[0].names = vec!["other.test".into()];
    let d = ask(&w, "http://h.test/");
    assert_eq!(d.unknown, None);
    assert_eq!(svc(&d), NOT_FOUND);
    assert!(
        d.notes.iter().any(|n| n.contains("no Ingress objects")),
        "{:?}",
        d.notes
    );
}

#[test]
fn conf_for_another_pod_is_not_used() {
    let mut w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    let mut other = conf("b");
    other.pod = Some(("ingress-nginx".into(), "other-pod".into()));
    w.nginx.push(other);
    let c = ControllerRef {
        pod: Some(("ingress-nginx".into(), "this-pod".into())),
        ..ControllerRef::generic()
    };
    assert!(ask_with(&w, &c, "http://h.test/", &[]).findings.is_empty());
    let c = ControllerRef {
        pod: Some(("ingress-nginx".into(), "other-pod".into())),
        ..ControllerRef::generic()
    };
    assert_eq!(ask_with(&w, &c, "http://h.test/", &[]).findings.len(), 1);
}

#[test]
fn wildcard_certificate_covers_a_plain_host() {
    // certificate.lua falls back to the certificate of `*.<parent>`.
    let wild = with_tls(
        ingress(
            "default",
            "wild",
            &[],
            vec![rule(
                "*.example.com",
                vec![path("/", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        "*.example.com",
    );
    let plain = ingress(
        "default",
        "plain",
        &[],
        vec![rule(
            "www.example.com",
            vec![path("/", Some(PathType::Prefix), "b", 80)],
        )],
    );
    let w = world(vec![wild, plain]);
    let d = ask(&w, "http://www.example.com/x");
    assert_eq!(
        (d.status, d.location.as_deref()),
        (308, Some("https://www.example.com/x"))
    );
    assert_eq!(svc(&ask(&w, "https://www.example.com/x")), ok("b"));
    assert_eq!(ask(&w, "http://a.b.example.com/x").status, 404);
}

#[test]
fn server_alias() {
    let w = world(vec![
        ingress(
            "default",
            "x",
            &[("server-alias", "alias.test, Other.test ,h2.test")],
            vec![rule(
                "h.test",
                vec![path("/", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        ingress(
            "default",
            "y",
            &[],
            vec![rule(
                "h2.test",
                vec![path("/", Some(PathType::Prefix), "b", 80)],
            )],
        ),
    ]);
    assert_eq!(svc(&ask(&w, "http://alias.test/")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://other.test/")), ok("a"));
    // An alias that is another server's name stays that server's.
    assert_eq!(svc(&ask(&w, "http://h2.test/")), ok("b"));
}

#[test]
fn a_path_defined_twice_is_a_finding() {
    let w = world(vec![
        ingress(
            "default",
            "one",
            &[],
            vec![rule(
                "h.test",
                vec![path("/x", Some(PathType::Prefix), "a", 80)],
            )],
        ),
        ingress(
            "default",
            "two",
            &[],
            vec![rule(
                "h.test",
                vec![path("/x", Some(PathType::Prefix), "b", 80)],
            )],
        ),
    ]);
    // Equal (missing) timestamps: ordered by namespace/name descending, so "two" is first.
    let d = ask(&w, "http://h.test/x/1");
    assert_eq!(svc(&d), ok("b"));
    assert_eq!(d.findings.len(), 1);
    assert!(d.findings[0].message.contains("default/one"));
    // A path of its own: no finding.
    assert!(ask(&w, "http://h.test/y").findings.is_empty());
}

#[test]
fn pcre_look_around_in_paths() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[("use-regex", "true")],
        vec![rule(
            "h.test",
            vec![path(
                "/api/(?!internal)",
                Some(PathType::ImplementationSpecific),
                "a",
                80,
            )],
        )],
    )]);
    assert_eq!(svc(&ask(&w, "http://h.test/api/public")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/api/internal")), NOT_FOUND);
}

#[test]
fn default_backend_annotation_takes_over_without_endpoints() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[("default-backend", "c")],
        vec![rule(
            "h.test",
            vec![
                path("/gone", Some(PathType::Prefix), "nosuch", 80),
                path("/", Some(PathType::Prefix), "a", 80),
            ],
        )],
    )]);
    let d = ask(&w, "http://h.test/gone/x");
    assert_eq!(svc(&d), ok("c"));
    assert_eq!(svc(&ask(&w, "http://h.test/x")), ok("a"));
}

/// The whole decision for a host with a regex/rewrite location, a canary weight, TLS and two
/// endpoints: reviewed by hand (the snapshot lists every note, in order).
#[test]
fn snapshot_of_a_full_decision() {
    let mut w = world(vec![
        with_tls(
            ingress(
                "shop",
                "api",
                &[("rewrite-target", "/$2"), ("use-regex", "true")],
                vec![rule(
                    "api.test",
                    vec![path(
                        "/v1(/|$)(.*)",
                        Some(PathType::ImplementationSpecific),
                        "api",
                        80,
                    )],
                )],
            ),
            "api.test",
        ),
        ingress(
            "shop",
            "api-canary",
            &[("canary", "true"), ("canary-weight", "25")],
            vec![rule(
                "api.test",
                vec![path(
                    "/v1(/|$)(.*)",
                    Some(PathType::ImplementationSpecific),
                    "api2",
                    80,
                )],
            )],
        ),
    ]);
    service(&mut w, "shop", "api", 80, 8080, &["10.2.0.1", "10.2.0.2"]);
    service(&mut w, "shop", "api2", 80, 8080, &["10.2.0.3"]);
    let d = ask(&w, "https://api.test/v1/items?id=3");
    insta::assert_debug_snapshot!(d);
}

#[test]
fn watch_namespace_limits_the_ingresses() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    let c = ControllerRef {
        watch_namespace: Some("other".into()),
        ..ControllerRef::generic()
    };
    assert_eq!(svc(&ask_with(&w, &c, "http://h.test/", &[])), NOT_FOUND);
    let c = ControllerRef {
        watch_namespace: Some("default".into()),
        ..ControllerRef::generic()
    };
    assert_eq!(svc(&ask_with(&w, &c, "http://h.test/", &[])), ok("a"));
}

#[test]
fn from_to_www_redirect() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[("from-to-www-redirect", "true")],
        vec![rule(
            "www.h.test",
            vec![path("/", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    let d = ask(&w, "http://h.test/a/?q=1");
    assert_eq!(
        (d.status, d.location.as_deref()),
        (308, Some("http://www.h.test:80/a/?q=1"))
    );
    let d = ask(&w, "https://h.test/a/");
    assert_eq!(d.location.as_deref(), Some("https://www.h.test:443/a"));
    assert_eq!(svc(&ask(&w, "http://www.h.test/")), ok("a"));
}

#[test]
fn odd_input_never_panics() {
    for url in [
        "http://h.test:99999/",
        "http://[::1/",
        "ftp://h.test/",
        "http:///x",
        "http://a@b@h.test/",
    ] {
        assert!(HttpRequest::from_url(url).is_err(), "{url}");
    }
    // The trace's URL grammar: userinfo ignored, the fragment dropped, a bare query asks `/`.
    let r = HttpRequest::from_url("http://user:pw@h.test:8080#top").unwrap();
    assert_eq!(
        (r.host.as_str(), r.port, r.path.as_str()),
        ("h.test:8080", 8080, "/")
    );
    let r = HttpRequest::from_url("https://[::1]?a=b").unwrap();
    assert_eq!(
        (r.host.as_str(), r.port, r.path.as_str()),
        ("[::1]", 443, "/?a=b")
    );
    let w = world(vec![ingress(
        "default",
        "bad-regex",
        &[("use-regex", "true"), ("rewrite-target", "/$9$x${y}")],
        vec![rule(
            "h.test",
            vec![
                path("/a(", Some(PathType::ImplementationSpecific), "a", 80),
                path("/ok(.*)", Some(PathType::ImplementationSpecific), "b", 80),
            ],
        )],
    )]);
    let d = ask(&w, "http://h.test/a(");
    assert!(
        d.notes.iter().any(|n| n.starts_with("unknown:")),
        "{:?}",
        d.notes
    );
    let d = ask(&w, "http://h.test/ok/x");
    assert_eq!(d.backend.as_ref().map(|b| b.service.as_str()), Some("b"));
    // $x is an nginx variable kubepath does not evaluate: said, and no upstream path.
    assert_eq!(d.upstream_path, None);
    assert!(d.notes.iter().any(|n| n.contains("$x")), "{:?}", d.notes);
    for path in ["/%", "/%C3%28", "/\u{1F600}/..", "/a/../../b", "/?", "/#x"] {
        let _ = ask(&w, &format!("http://h.test{path}"));
    }
    let _ = ask(&w, "http://H.TEST.:80/ok");
    let _ = ask(&w, "http://[::1]:8080/ok");
}

/// Issue #10: nginx's automatic redirect (ngx_http_core_find_static_location, NGX_DONE): a
/// path written with a trailing slash, requested without it, is answered 301 to the slashed
/// URL, absolute, without the port (port_in_redirect off), keeping the arguments; a regex
/// server (use-regex) has no static locations, so no redirect.
#[test]
fn a_location_ending_in_slash_redirects_the_unslashed_uri() {
    let w = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![
                path("/foo/", Some(PathType::Prefix), "a", 80),
                path("/", Some(PathType::Prefix), "b", 80),
            ],
        )],
    )]);
    let d = ask(&w, "http://h.test:8080/foo?x=1");
    assert_eq!(d.status, 301, "{:?}", d.notes);
    assert_eq!(d.location.as_deref(), Some("http://h.test/foo/?x=1"));
    // With the slash, and below it: proxied as before; `/foobar` goes to `/`.
    assert_eq!(svc(&ask(&w, "http://h.test/foo/")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/foo/bar")), ok("a"));
    assert_eq!(svc(&ask(&w, "http://h.test/foobar")), ok("b"));
    // Written without the slash: `= /foo` serves /foo, no redirect.
    let w2 = world(vec![ingress(
        "default",
        "x",
        &[],
        vec![rule(
            "h.test",
            vec![path("/foo", Some(PathType::Prefix), "a", 80)],
        )],
    )]);
    assert_eq!(svc(&ask(&w2, "http://h.test/foo")), ok("a"));
    // use-regex: every location of the host is a regex, none is static.
    let w3 = world(vec![ingress(
        "default",
        "x",
        &[("nginx.ingress.kubernetes.io/use-regex", "true")],
        vec![rule(
            "h.test",
            vec![path(
                "/foo/",
                Some(PathType::ImplementationSpecific),
                "a",
                80,
            )],
        )],
    )]);
    assert_ne!(ask(&w3, "http://h.test/foo").status, 301);
}

/// Issue #11: a location regex kubepath's engine cannot compile (PCRE recursion) could match
/// in nginx and take the request: the answer is unknown, naming the regex and its Ingress, not
/// a confident 404.
#[test]
fn unsupported_location_regex_makes_the_answer_unknown() {
    let w = world(vec![ingress(
        "default",
        "rx",
        &[("use-regex", "true")],
        vec![rule(
            "h.test",
            vec![path(
                "/(?R)?",
                Some(PathType::ImplementationSpecific),
                "a",
                80,
            )],
        )],
    )]);
    let d = ask(&w, "http://h.test/");
    let why = d
        .unknown
        .expect("an unsupported regex could decide: unknown");
    assert!(why.contains("/(?R)?"), "{why}");
    assert!(why.contains("default/rx"), "{why}");
    assert!(why.contains("cluster/path/(?R)?.yaml:1"), "{why}");
    // Another host is not concerned.
    let d = ask(&w, "http://other.test/");
    assert_eq!(d.unknown, None);
    assert_eq!(svc(&d), NOT_FOUND);
}

/// Issue #11 (review): constructs fancy-regex reads differently from nginx's PCRE (`\h`,
/// `{,n}`), and URIs or patterns with non-ASCII characters (PCRE without UTF mode matches
/// bytes), give `unknown`, never the other engine's confident answer. ASCII ones still match.
#[test]
fn regexes_pcre_reads_differently_are_unknown() {
    let one = |pattern: &str| {
        world(vec![ingress(
            "default",
            "rx",
            &[("use-regex", "true")],
            vec![rule(
                "h.test",
                vec![path(
                    pattern,
                    Some(PathType::ImplementationSpecific),
                    "a",
                    80,
                )],
            )],
        )])
    };
    for (pattern, url) in [
        ("/\\h", "http://h.test/a"),
        ("/\\h", "http://h.test/%20"),
        ("/a{,3}", "http://h.test/"),
        ("/.$", "http://h.test/%C3%A9"),
        ("/\\d$", "http://h.test/%D9%A3"),
        ("/\u{e9}$", "http://h.test/%C3%89"),
        ("/\\x{e9}", "http://h.test/%C3%A9"),
        ("/..$", "http://h.test/%C3%A9"),
    ] {
        let d = ask(&one(pattern), url);
        let why = d
            .unknown
            .unwrap_or_else(|| panic!("{pattern} {url}: status {}", d.status));
        assert!(why.contains("PCRE"), "{pattern} {url}: {why}");
    }
    // PCRE's `$` also matches before a final newline (`/api%0A`): unknown.
    let d = ask(&one("/api$"), "http://h.test/api%0A");
    assert!(d.unknown.is_some(), "status {}", d.status);
    // A decoded NUL is a bad request in nginx (ngx_http_parse_complex_uri): 400.
    let d = ask(&one("/api"), "http://h.test/api%00");
    assert_eq!(d.status, 400);
    // ASCII patterns on ASCII URIs are evaluated as before.
    let d = ask(&one("/a{1,3}$"), "http://h.test/aa");
    assert_eq!(d.unknown, None);
    assert_eq!(d.status, 200);
    let d = ask(&one("/\\d+$"), "http://h.test/x");
    assert_eq!(d.unknown, None);
    assert_eq!(svc(&d), NOT_FOUND);
}

/// Issue #11: a canary-by-header-pattern kubepath's engine cannot compile may match in nginx:
/// with the header present, whether the canary takes the request is unknown, not "the primary".
#[test]
fn unsupported_canary_header_pattern_makes_the_answer_unknown() {
    let w = canary_world(&[
        ("canary-by-header", "X-Env"),
        ("canary-by-header-pattern", "(?R)?x"),
    ]);
    let c = ControllerRef::generic();
    let d = ask_with(&w, &c, "http://h.test/", &["X-Env: x"]);
    let why = d.unknown.expect("the pattern could match: unknown");
    assert!(
        why.contains("(?R)?x") && why.contains("default/canary"),
        "{why}"
    );
    // Without the header the pattern is not consulted.
    let d = ask_with(&w, &c, "http://h.test/", &[]);
    assert_eq!(d.unknown, None);
    assert_eq!(svc(&d), ok("a"));
}

/// The per-controller host index gives the Ingresses a request's notes name exactly as the
/// scan over every Ingress did: exact hosts (case folded), `*.suffix` wildcards, a bare `*`,
/// rules without host and default-backend-only Ingresses, served and ignored alike.
#[test]
fn host_index_finds_what_the_scan_finds() {
    let p = || vec![path("/", Some(PathType::Prefix), "a", 80)];
    let mut ignored = ingress("default", "other-class", &[], vec![rule("a.test", p())]);
    ignored
        .annotations
        .insert("kubernetes.io/ingress.class".into(), "traefik".into());
    let mut default_only = ingress("default", "default-only", &[], vec![]);
    default_only.default_backend = ingress("x", "y", &[], vec![rule("", p())]).rules[0]
        .paths
        .as_ref()
        .and_then(|ps| ps.first())
        .map(|pr| pr.backend.clone());
    let w = world(vec![
        ingress(
            "default",
            "exact",
            &[],
            vec![rule("A.test", p()), rule("b.test", p())],
        ),
        ingress("default", "wild", &[], vec![rule("*.apps.test", p())]),
        ingress("default", "star", &[], vec![rule("*", p())]),
        ingress("default", "no-host", &[], vec![rule("", p())]),
        ingress("ns2", "exact-too", &[], vec![rule("b.test", p())]),
        default_only,
        ignored,
    ]);
    let cfg = super::config::build(&w, &ControllerRef::generic());
    assert!(
        !cfg.served.is_empty() && !cfg.ignored.is_empty(),
        "{:?}",
        cfg.ignored
    );
    let mut scan = cfg.clone();
    scan.host_index = Default::default();
    for host in [
        "a.test",
        "b.test",
        "x.apps.test",
        "apps.test",
        "c.test",
        "",
        "_",
        "*.apps.test",
    ] {
        assert_eq!(
            cfg.concerning(&w, host),
            scan.concerning(&w, host),
            "{host}"
        );
    }
    let (served, _) = cfg.concerning(&w, "c.test");
    // `*`, no host and the default backend concern every host; the exact and wildcard rules not.
    assert_eq!(served.len(), 3, "{served:?}");
}
