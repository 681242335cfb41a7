//! L7: which backend an ingress-nginx controller sends an HTTP request to, decided as
//! ingress-nginx itself decides it.
//!
//! The semantics follow the ingress-nginx source (kubernetes/ingress-nginx), cited per rule:
//!
//! * **Which Ingresses** a controller serves ([`controller`]): `spec.ingressClassName` ->
//!   IngressClass `spec.controller` == `--controller-class`; the legacy
//!   `kubernetes.io/ingress.class` annotation == `--ingress-class`; class-less Ingresses by
//!   0.x controllers with the default class, by 1.x only with `--watch-ingress-without-class`.
//! * **Servers**: one per host over all served Ingresses; the first (oldest) Ingress of a host
//!   creates it with a root location `/` pointing at its `spec.defaultBackend` or the
//!   controller's default backend (controller.go `createServers`). nginx picks the server by
//!   the Host header (port stripped, lowercased): exact name, then wildcard hosts (rendered by
//!   `buildServerName` as a regex matching exactly one label since v0.41), else the default
//!   server `_`.
//! * **Locations** (controller.go `getBackendServers`, location.go `updateServerLocations`,
//!   template.go `buildLocation`): a missing pathType and ImplementationSpecific are Prefix
//!   (internal/k8s `SetDefaultNGINXPathType`); Exact -> `location = /p`; Prefix `/p` ->
//!   `location /p/` plus `location = /p` (v0.41+; before, a plain string prefix); paths sorted
//!   longest first; when any location of a host has `use-regex` or a `rewrite-target`, every
//!   location of that host becomes `location ~* "^<path>"` (`enforceRegexModifier`). nginx's
//!   own choice: exact match, else regexes in order, else the longest prefix.
//! * **Redirects**: `app-root` (302 for `/`), `permanent-redirect` (301) / `temporal-redirect`
//!   (302), then lua_ingress.lua `redirect_to_https`: `force-ssl-redirect` on plain HTTP, or
//!   `ssl-redirect` (default true) when a certificate is configured for the host (the first
//!   served Ingress of the host has a `spec.tls` section: controller.go `createServers` gives
//!   the host the listed secret or the default certificate; certificate.lua also tries
//!   `*.<parent>`) -> 308 (`http-redirect-code`) to `https://host<uri>`. The controller's
//!   ConfigMap (`--configmap`) gives the defaults.
//! * **Rewrite**: `rewrite "(?i)<path>" <target> break;` (`buildProxyPass`) gives the path the
//!   backend receives.
//! * **Canary** (balancer.lua `route_to_alternative_balancer`): header, then cookie, then
//!   weight; a weight gives a probability split in [`IngressDecision::alternatives`].
//! * **Upstreams** (controller.go `serviceEndpoints`, endpointslices.go
//!   `getEndpointsFromSlices`): the Service in the Ingress's namespace, its ready endpoints'
//!   pod IP and target port, spread uniformly; `service-upstream` -> the ClusterIP. No Service
//!   or no ready endpoint -> 503.
//!
//! Entry points: [`controllers`], [`match_request`] (or [`IngressView`] to lower the model once
//! and match many requests), [`HttpRequest::from_url`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use kubepath_model::{Model, SourceRef};

pub mod config;
pub mod controller;
pub(crate) mod crosscheck;
pub mod lower;
mod matcher;
pub mod world;

pub use controller::{ControllerRef, Version};
pub use world::{ServicePortRef, World};

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The HTTP request as it reaches the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub scheme: Scheme,
    /// The Host header (may carry a port; nginx strips it).
    pub host: String,
    /// The port the client connected to.
    pub port: u16,
    /// The request target: path and optional `?query`, as sent.
    pub path: String,
    /// Other headers (name, value); names compare case-insensitively.
    pub headers: Vec<(String, String)>,
    /// Cookies (name, value), in addition to any `Cookie` header in `headers`.
    pub cookies: Vec<(String, String)>,
}

/// A malformed URL or header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError(pub String);

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RequestError {}

impl HttpRequest {
    /// Parses `http[s]://[userinfo@]host[:port][/path][?query][#fragment]` with the trace's
    /// URL grammar ([`Target::parse`](crate::trace::Target::parse)): the userinfo is ignored,
    /// the fragment dropped; `host` keeps the authority's `host[:port]` as the Host header
    /// carries it.
    pub fn from_url(url_in: &str) -> Result<Self, RequestError> {
        use crate::trace::Target;
        let not_a_url = || {
            RequestError(format!(
                "{:?}: expected a URL starting with http:// or https://",
                crate::trace::redact_userinfo(url_in.trim())
            ))
        };
        if !url_in.contains("://") {
            return Err(not_a_url());
        }
        let Target::Url {
            https,
            host,
            port,
            path,
        } = Target::parse(url_in).map_err(|e| {
            // Quote the URL (its userinfo redacted) where the message does not already.
            let shown = crate::trace::redact_userinfo(url_in.trim());
            RequestError(if e.contains(&shown) {
                e
            } else {
                format!("{shown:?}: {e}")
            })
        })?
        else {
            return Err(not_a_url());
        };
        let scheme = if https { Scheme::Https } else { Scheme::Http };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(HttpRequest {
            scheme,
            host: match port {
                Some(p) => format!("{bracketed}:{p}"),
                None => bracketed,
            },
            port: port.unwrap_or(scheme.default_port()),
            path,
            headers: Vec::new(),
            cookies: Vec::new(),
        })
    }

    /// Adds a header given as `Name: value`. A `Host` header replaces the URL's host.
    pub fn add_header_line(&mut self, line: &str) -> Result<(), RequestError> {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| RequestError(format!("header {line:?}: expected `Name: value`")))?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(RequestError(format!(
                "header {line:?}: expected a header name before ':'"
            )));
        }
        let value = value.trim().to_string();
        if name.eq_ignore_ascii_case("host") {
            self.host = value;
        } else {
            self.headers.push((name.to_string(), value));
        }
        Ok(())
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name`: from [`HttpRequest::cookies`], else `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.cookies.iter().find(|(n, _)| n == name) {
            return Some(v.clone());
        }
        for (n, v) in &self.headers {
            if !n.eq_ignore_ascii_case("cookie") {
                continue;
            }
            for part in v.split(';') {
                if let Some((k, val)) = part.trim().split_once('=') {
                    if k.trim() == name {
                        return Some(val.trim().to_string());
                    }
                }
            }
        }
        None
    }
}

/// The Service port a request is proxied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    /// As the Ingress names it.
    pub port: ServicePortRef,
    /// The Service port number it resolved to, if the Service and port exist.
    pub port_number: Option<u16>,
    /// The Service object, if it exists.
    pub service_source: Option<SourceRef>,
}

/// One endpoint the controller's balancer may pick.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamEndpoint {
    /// The address as nginx uses it (an IP, or an ExternalName's DNS name).
    pub address: String,
    pub ip: Option<IpAddr>,
    pub port: u16,
    /// The pod behind it (`targetRef`), as (namespace, name).
    pub pod: Option<(String, String)>,
    pub node: Option<String>,
    /// `true` when this is the Service's ClusterIP (`service-upstream`): kube-proxy picks the
    /// pod.
    pub via_cluster_ip: bool,
    pub source: Option<SourceRef>,
}

/// Something in the snapshot that looks wrong, citing where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub message: String,
    pub sources: Vec<SourceRef>,
}

/// What the controller does with one request.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressDecision {
    /// 200 proxied (the backend answers), 301/302/308 redirect, 404 no rule (nginx's own
    /// default backend), 503 no Service or no ready endpoint, 400 bad request.
    pub status: u16,
    /// The Ingress (namespace, name) whose rule decided, if any.
    pub ingress: Option<(String, String)>,
    /// Where that rule (path entry or default backend) is written.
    pub rule_source: Option<SourceRef>,
    /// The nginx server that took the request (`_` = default server).
    pub server: Option<String>,
    /// The nginx location that matched, as nginx.conf would show it (`location = /a`).
    pub nginx_location: Option<String>,
    /// The Service port the request is proxied to (also set for a 503 naming the missing
    /// Service, and for the controller's `--default-backend-service`).
    pub backend: Option<Backend>,
    /// The redirect target, for 3xx.
    pub location: Option<String>,
    /// The path (and query) the backend receives.
    pub upstream_path: Option<String>,
    /// When a canary weight splits the traffic: every branch with its probability (summing to
    /// 1; the primary included). The top-level fields describe the primary branch. Empty when
    /// the request is decided deterministically.
    pub alternatives: Vec<(f64, IngressDecision)>,
    /// How the balancer spreads requests over the backend's endpoints (probabilities sum to 1),
    /// empty when not proxied.
    pub upstreams: Vec<(f64, UpstreamEndpoint)>,
    /// Explanations: which rules applied and why, and the assumptions made.
    pub notes: Vec<String>,
    /// Problems found (e.g. the controller's nginx.conf disagrees with the Ingresses).
    pub findings: Vec<Finding>,
    /// Set when the decision depends on objects the snapshot does not hold (no Services or no
    /// Endpoints/EndpointSlices collected): what to collect. The status is then a guess.
    pub unknown: Option<String>,
}

impl IngressDecision {
    fn new(status: u16) -> Self {
        IngressDecision {
            status,
            ingress: None,
            rule_source: None,
            server: None,
            nginx_location: None,
            backend: None,
            location: None,
            upstream_path: None,
            alternatives: Vec::new(),
            upstreams: Vec::new(),
            notes: Vec::new(),
            findings: Vec::new(),
            unknown: None,
        }
    }
}

/// The model lowered once, for matching many requests.
#[derive(Debug, Clone)]
pub struct IngressView {
    world: World,
    /// Controller configurations already built, by the controller settings they depend on
    /// (pods of one Deployment share one).
    configs: Arc<Mutex<HashMap<String, Arc<config::Config>>>>,
    /// [`controller::find_controllers`], computed once.
    controllers: std::sync::OnceLock<Vec<ControllerRef>>,
}

impl IngressView {
    /// Lowers `model`.
    pub fn new(model: &Model) -> Self {
        IngressView::from_world(lower::lower(model))
    }

    /// The view of `model`, lowered once per model and shared by every caller (and by the
    /// model's copies, whose Kubernetes objects are the same: see `Model::derived`).
    pub fn shared(model: &Model) -> Arc<IngressView> {
        model.derived.get_or_build(|| IngressView::new(model))
    }

    /// Wraps an already built world (tests, other front ends).
    pub fn from_world(world: World) -> Self {
        IngressView {
            world,
            configs: Arc::default(),
            controllers: std::sync::OnceLock::new(),
        }
    }

    fn config(&self, c: &ControllerRef) -> Arc<config::Config> {
        let key = format!(
            "{:?}",
            (
                c.version,
                &c.ingress_class,
                &c.controller_class,
                c.watch_without_class,
                c.ingress_class_by_name,
                &c.configmap,
                &c.watch_namespace,
            )
        );
        // A poisoned lock only means another thread panicked mid-insert: rebuild.
        if let Ok(map) = self.configs.lock() {
            if let Some(cfg) = map.get(&key) {
                return cfg.clone();
            }
        }
        let cfg = Arc::new(config::build(&self.world, c));
        if let Ok(mut map) = self.configs.lock() {
            map.insert(key, cfg.clone());
        }
        cfg
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// The ingress-nginx controller pods of the snapshot.
    pub fn controllers(&self) -> Vec<ControllerRef> {
        self.controllers
            .get_or_init(|| controller::find_controllers(&self.world))
            .clone()
    }

    /// What `controllers` do with `req`, as one answer: every controller is asked; the answer
    /// printed is one where an Ingress rule decided (a controller of another class answers
    /// 404), given by the most controllers, ties to the first. It carries the findings of
    /// every controller that agrees and a note for each that answers differently. `None` when
    /// `controllers` is empty.
    pub fn match_by_vote(&self, controllers: &[ControllerRef], req: &HttpRequest) -> Option<Vote> {
        let answers: Vec<(&ControllerRef, IngressDecision, String)> = controllers
            .iter()
            .map(|c| {
                let d = self.match_request(c, req);
                let k = answer_key(&d);
                (c, d, k)
            })
            .collect();
        let mut best: Option<(usize, (bool, usize))> = None;
        for (i, (_, d, k)) in answers.iter().enumerate() {
            let score = (
                d.ingress.is_some(),
                answers.iter().filter(|(_, _, o)| o == k).count(),
            );
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        let (_, first, key) = answers.get(best?.0)?;
        let mut decision = first.clone();
        let mut agreeing = Vec::new();
        for (c, d, k) in &answers {
            if k == key {
                if c.pod.is_some() {
                    agreeing.push(c.label());
                }
                for f in &d.findings {
                    if !decision.findings.contains(f) {
                        decision.findings.push(f.clone());
                    }
                }
            } else {
                decision.notes.push(format!(
                    "controller {} answers differently: status {}{}",
                    c.label(),
                    d.status,
                    d.backend
                        .as_ref()
                        .map(|b| format!(", backend {}/{}:{}", b.namespace, b.service, b.port))
                        .unwrap_or_default()
                ));
            }
        }
        Some(Vote { decision, agreeing })
    }

    /// What `controller` does with `req`.
    pub fn match_request(&self, controller: &ControllerRef, req: &HttpRequest) -> IngressDecision {
        let cfg = self.config(controller);
        let (mut d, rendered) = matcher::decide(&self.world, controller, &cfg, req);
        let host = matcher::normalise_host(&req.host);
        crosscheck::check(
            &self.world,
            controller,
            &cfg,
            &host,
            rendered.as_ref(),
            &mut d,
        );
        d
    }
}

/// The answer of several controllers ([`IngressView::match_by_vote`]).
#[derive(Debug, Clone)]
pub struct Vote {
    /// The answer given, with the findings of every controller that gives it and a note per
    /// controller that answers otherwise.
    pub decision: IngressDecision,
    /// The labels of the controller pods that give it.
    pub agreeing: Vec<String>,
}

/// The fields that make two controllers' answers the same.
fn answer_key(d: &IngressDecision) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        d.status,
        d.unknown,
        d.backend
            .as_ref()
            .map(|b| (&b.namespace, &b.service, &b.port)),
        d.ingress,
        d.location,
        d.upstream_path,
        d.upstreams
            .iter()
            .map(|(p, u)| (format!("{p:.6}"), &u.address, u.port))
            .collect::<Vec<_>>(),
        d.alternatives
            .iter()
            .map(|(p, a)| (
                format!("{p:.6}"),
                a.backend.as_ref().map(|b| b.service.clone())
            ))
            .collect::<Vec<_>>()
    )
}

/// The ingress-nginx controller pods of the snapshot (IngressClass controller
/// `k8s.io/ingress-nginx`, labels `app`/`app.kubernetes.io/name=ingress-nginx`, a container
/// running `/nginx-ingress-controller`), with their class flags and version. Empty when the
/// snapshot has none: use [`ControllerRef::generic`] then.
pub fn controllers(model: &Model) -> Vec<ControllerRef> {
    IngressView::shared(model).controllers()
}

/// What `controller` does with `req`, on the model's shared view ([`IngressView::shared`]).
pub fn match_request(
    model: &Model,
    controller: &ControllerRef,
    req: &HttpRequest,
) -> IngressDecision {
    IngressView::shared(model).match_request(controller, req)
}

#[cfg(test)]
mod tests;
