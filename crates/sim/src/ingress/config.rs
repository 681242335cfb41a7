//! The configuration one ingress-nginx controller derives from the Ingresses it serves: one
//! server per host, each with its locations, as internal/ingress/controller/controller.go
//! (`createServers`, `getBackendServers`, `mergeAlternativeBackends`) and location.go
//! (`updateServerLocations`) build it, rendered as nginx.tmpl renders it (template.go:
//! `buildLocation`, `enforceRegexModifier`, `buildServerName`, `buildProxyPass`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kubepath_model::SourceRef;

use super::controller::{serves, ControllerRef};
use super::world::{BackendRef, IngressObj, PathRule, PathType, RuleObj, ServicePortRef, World};

/// The annotation prefix (ingress-nginx's default `--annotations-prefix`).
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// An upstream: a Service port of a namespace, or the controller's default backend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Upstream {
    /// `upstream-default-backend`.
    Default,
    Service {
        namespace: String,
        service: String,
        port: ServicePortRef,
    },
}

/// Redirect from `permanent-redirect` / `temporal-redirect` (annotations/redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectAnn {
    pub code: u16,
    pub url: String,
}

/// The per-location settings that come from the owning Ingress's annotations
/// (`locationApplyAnnotations`).
#[derive(Debug, Clone, Default)]
pub struct LocationAnns {
    pub rewrite_target: Option<String>,
    pub use_regex: bool,
    pub app_root: Option<String>,
    pub ssl_redirect: bool,
    pub force_ssl_redirect: bool,
    pub preserve_trailing_slash: bool,
    pub redirect: Option<RedirectAnn>,
    pub service_upstream: bool,
    pub from_to_www: bool,
}

/// The `canary-*` annotations of a canary Ingress (annotations/canary).
#[derive(Debug, Clone, Default)]
pub struct CanaryPolicy {
    pub header: Option<String>,
    pub header_value: Option<String>,
    pub header_pattern: Option<String>,
    pub cookie: Option<String>,
    pub weight: i64,
    pub weight_total: i64,
}

/// A canary (alternative) backend attached to a primary upstream.
#[derive(Debug, Clone)]
pub struct Canary {
    pub ingress: usize,
    pub upstream: Upstream,
    pub policy: CanaryPolicy,
    pub source: Option<SourceRef>,
}

/// How a location is rendered in nginx.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// `location = "/p"`
    Exact(String),
    /// `location "/p"` (string prefix)
    Prefix(String),
    /// `location ~* "^/p"` (case-insensitive regex, first match in order)
    Regex(String),
}

impl Rendered {
    /// The `location` line as nginx.conf shows it. Since v1.15.0 ingress-nginx quotes every
    /// location path and escapes `"` and `\\` in it (template.go `sanitizeQuotedRegex`).
    pub fn line(&self, quoted: bool) -> String {
        if !quoted {
            return self.to_string();
        }
        let q = |p: &str| p.replace('\\', "\\\\").replace('"', "\\\"");
        match self {
            Rendered::Exact(p) => format!("location = \"{}\"", q(p)),
            Rendered::Prefix(p) => format!("location \"{}\"", q(p)),
            Rendered::Regex(p) => format!("location ~* \"^{}\"", q(p)),
        }
    }
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rendered::Exact(p) => write!(f, "location = {p}"),
            Rendered::Prefix(p) => write!(f, "location {p}"),
            Rendered::Regex(p) => write!(f, "location ~* \"^{p}\""),
        }
    }
}

/// One location of a server.
#[derive(Debug, Clone)]
pub struct Location {
    /// `location.Path` after `updateServerLocations`.
    pub path: String,
    /// The path as the Ingress wrote it.
    pub ingress_path: String,
    pub path_type: PathType,
    /// The pathType the Ingress wrote (`None` when it wrote none).
    pub declared_type: Option<PathType>,
    /// The `location = /p` twin that `updateServerLocations` adds to a Prefix path.
    pub exact_twin: bool,
    /// Index into `World::ingresses` of the Ingress that owns it.
    pub ingress: Option<usize>,
    /// A server's root location still pointing at the (Ingress or controller) default backend.
    pub is_def_backend: bool,
    pub upstream: Upstream,
    pub anns: LocationAnns,
    pub rule_source: Option<SourceRef>,
    pub rendered: Rendered,
    /// Later Ingresses that define the same host, path and pathType: ignored.
    pub shadowed: Vec<(usize, Option<SourceRef>)>,
}

impl Location {
    /// `needsRewrite` (template.go): a rewrite target that differs from the path.
    pub fn needs_rewrite(&self) -> bool {
        matches!(&self.anns.rewrite_target, Some(t) if !t.is_empty() && *t != self.path)
    }
}

/// One server (one host).
#[derive(Debug, Clone)]
pub struct Server {
    /// The Ingress host (`*.example.com` for wildcards) or `_`.
    pub hostname: String,
    pub locations: Vec<Location>,
    /// A certificate is configured for this host (the condition of lua_ingress.lua's
    /// `redirect_to_https`): where and why.
    /// for it (the condition of lua_ingress.lua's `redirect_to_https`).
    pub tls: Option<(SourceRef, String)>,
    /// Why every location of the server is a regex (`enforceRegexModifier`), if so.
    pub enforce_regex: Option<String>,
    /// `server-alias` names (annotations/alias), without the server names of other servers.
    pub aliases: Vec<String>,
    /// A location of the server has `from-to-www-redirect: "true"`: nginx gets a redirect
    /// server for the www/non-www twin name (pkg/util/ingress `BuildRedirects`).
    pub from_to_www: bool,
}

/// Global settings from the controller's ConfigMap that annotations default to
/// (internal/ingress/controller/config `NewDefault`; annotations/rewrite falls back to them).
#[derive(Debug, Clone)]
pub struct Globals {
    pub ssl_redirect: bool,
    pub force_ssl_redirect: bool,
    pub preserve_trailing_slash: bool,
    /// `http-redirect-code` (default 308), the code of the ssl redirect.
    pub http_redirect_code: u16,
    /// `use-forwarded-headers`: trust X-Forwarded-Proto for the ssl redirect.
    pub use_forwarded_headers: bool,
    /// Where the ConfigMap is, when one was read.
    pub source: Option<SourceRef>,
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            ssl_redirect: true,
            force_ssl_redirect: false,
            preserve_trailing_slash: false,
            http_redirect_code: 308,
            use_forwarded_headers: false,
            source: None,
        }
    }
}

/// Reads the controller's `--configmap`.
pub fn globals(world: &World, controller: &ControllerRef, notes: &mut Vec<String>) -> Globals {
    let mut g = Globals::default();
    let Some((ns, name)) = &controller.configmap else {
        return g;
    };
    let Some(cm) = world
        .config_maps
        .iter()
        .find(|c| &c.namespace == ns && &c.name == name)
    else {
        notes.push(format!(
            "the controller's ConfigMap {ns}/{name} (--configmap) is not in the snapshot: ingress-nginx defaults assumed (ssl-redirect true, http-redirect-code 308)"
        ));
        return g;
    };
    g.source = Some(cm.source.clone());
    let mut b = |key: &str, field: &mut bool| {
        if let Some(v) = cm.data.get(key) {
            match parse_bool(v) {
                Some(x) => {
                    *field = x;
                    notes.push(format!(
                        "ConfigMap {ns}/{name}: {key} = {x} ({})",
                        cm.lines.get(key).unwrap_or(&cm.source)
                    ));
                }
                None => notes.push(format!(
                    "ConfigMap {ns}/{name}: {key}: {v:?} is not a boolean; default kept"
                )),
            }
        }
    };
    b("ssl-redirect", &mut g.ssl_redirect);
    b("force-ssl-redirect", &mut g.force_ssl_redirect);
    b("preserve-trailing-slash", &mut g.preserve_trailing_slash);
    b("use-forwarded-headers", &mut g.use_forwarded_headers);
    if let Some(v) = cm.data.get("http-redirect-code") {
        match v.trim().parse::<u16>() {
            Ok(c) if [301, 302, 307, 308].contains(&c) => g.http_redirect_code = c,
            _ => notes.push(format!(
                "ConfigMap {ns}/{name}: http-redirect-code {v:?} is not 301, 302, 307 or 308; 308 kept"
            )),
        }
    }
    g
}

/// The whole configuration of one controller.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Servers keyed by hostname (ingress-nginx writes them sorted by hostname).
    pub servers: BTreeMap<String, Server>,
    /// Canary backend per primary upstream (only the first is used: balancer.lua
    /// `route_to_alternative_balancer` reads `alternative_backends[1]`).
    pub canaries: BTreeMap<Upstream, Canary>,
    /// Ingresses served and why.
    pub served: Vec<(usize, String)>,
    /// Ingresses not served and why.
    pub ignored: Vec<(usize, String)>,
    pub globals: Globals,
    /// Location paths are quoted in nginx.conf (v1.15.0+).
    pub quoted: bool,
    pub notes: Vec<String>,
    /// Which of `served` and `ignored` have a rule for a host ([`Config::concerning`]).
    pub host_index: HostIndex,
}

/// The positions in [`Config::served`] (`true`) and [`Config::ignored`] (`false`) of the
/// Ingresses that have a rule for a host: by exact host, by `*.suffix` wildcard, and those that
/// concern every host (a rule without host, or only a default backend). Built once per
/// controller, so that one request does not look at every Ingress (issue #15).
#[derive(Debug, Clone, Default)]
pub struct HostIndex {
    /// `served.len() + ignored.len()` when built; anything else (a configuration built or
    /// changed by hand) is scanned instead.
    len: usize,
    exact: HashMap<String, Vec<(bool, usize)>>,
    wildcard: Vec<(String, (bool, usize))>,
    every: Vec<(bool, usize)>,
}

/// Does Ingress `ing` have a rule for `host` (lower case), or serve every host?
fn concerns(ing: &IngressObj, host: &str) -> bool {
    (ing.rules.is_empty() && ing.default_backend.is_some())
        || ing.rules.iter().any(|r| {
            let h = host_key(r.host.as_deref());
            h == host
                || h == "_"
                || h.strip_prefix('*')
                    .is_some_and(|suffix| host.ends_with(suffix))
        })
}

impl Config {
    /// Builds [`Config::host_index`] from `served` and `ignored`.
    fn index_hosts(&mut self, world: &World) {
        let mut ix = HostIndex {
            len: self.served.len() + self.ignored.len(),
            ..HostIndex::default()
        };
        let all = self
            .served
            .iter()
            .enumerate()
            .map(|(p, (i, _))| ((true, p), *i))
            .chain(
                self.ignored
                    .iter()
                    .enumerate()
                    .map(|(p, (i, _))| ((false, p), *i)),
            );
        for (at, i) in all {
            let Some(ing) = world.ingresses.get(i) else {
                continue;
            };
            if ing.rules.is_empty() && ing.default_backend.is_some() {
                ix.every.push(at);
            }
            for r in &ing.rules {
                let h = host_key(r.host.as_deref());
                if h == "_" {
                    ix.every.push(at);
                } else if let Some(suffix) = h.strip_prefix('*') {
                    ix.wildcard.push((suffix.to_string(), at));
                } else {
                    ix.exact.entry(h).or_default().push(at);
                }
            }
        }
        self.host_index = ix;
    }

    /// The positions in `served` and in `ignored` of the Ingresses that have a rule for `host`
    /// (lower case) or serve every host, in order.
    pub fn concerning(&self, world: &World, host: &str) -> (BTreeSet<usize>, BTreeSet<usize>) {
        let (mut served, mut ignored) = (BTreeSet::new(), BTreeSet::new());
        let mut put = |(is_served, p): (bool, usize)| {
            if is_served {
                served.insert(p);
            } else {
                ignored.insert(p);
            }
        };
        let ix = &self.host_index;
        if ix.len != self.served.len() + self.ignored.len() {
            for (p, (i, _)) in self.served.iter().enumerate() {
                if world
                    .ingresses
                    .get(*i)
                    .is_some_and(|ing| concerns(ing, host))
                {
                    put((true, p));
                }
            }
            for (p, (i, _)) in self.ignored.iter().enumerate() {
                if world
                    .ingresses
                    .get(*i)
                    .is_some_and(|ing| concerns(ing, host))
                {
                    put((false, p));
                }
            }
            return (served, ignored);
        }
        ix.exact
            .get(host)
            .into_iter()
            .flatten()
            .copied()
            .for_each(&mut put);
        ix.every.iter().copied().for_each(&mut put);
        ix.wildcard
            .iter()
            .filter(|(suffix, _)| host.ends_with(suffix.as_str()))
            .for_each(|(_, at)| put(*at));
        (served, ignored)
    }
}

/// Go's `strconv.ParseBool`, as `parser.GetBoolAnnotation` uses it.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn ann<'a>(ing: &'a IngressObj, name: &str) -> Option<&'a str> {
    ing.annotation(&format!("{PREFIX}{name}"))
}

fn ann_bool(ing: &IngressObj, name: &str, notes: &mut Vec<String>) -> Option<bool> {
    let v = ann(ing, name)?;
    let b = parse_bool(v);
    if b.is_none() {
        notes.push(format!(
            "Ingress {}: annotation {PREFIX}{name}: {v:?} is not a boolean; ingress-nginx ignores it",
            ing.key()
        ));
    }
    b
}

fn ann_int(ing: &IngressObj, name: &str) -> Option<i64> {
    ann(ing, name).and_then(|v| v.trim().parse().ok())
}

/// The location settings an Ingress's annotations give.
pub fn location_anns(ing: &IngressObj, g: &Globals, notes: &mut Vec<String>) -> LocationAnns {
    let rewrite_target = ann(ing, "rewrite-target").map(|s| s.to_string());
    // annotations/redirect: temporal-redirect first (code 300..307, default 302), then
    // permanent-redirect (code 300..308, default 301).
    let redirect = if let Some(url) = ann(ing, "temporal-redirect").filter(|s| !s.is_empty()) {
        let code = ann_int(ing, "temporal-redirect-code")
            .filter(|c| (300..=307).contains(c))
            .unwrap_or(302) as u16;
        Some(RedirectAnn {
            code,
            url: url.to_string(),
        })
    } else if let Some(url) = ann(ing, "permanent-redirect").filter(|s| !s.is_empty()) {
        let code = ann_int(ing, "permanent-redirect-code")
            .filter(|c| (300..=308).contains(c))
            .unwrap_or(301) as u16;
        Some(RedirectAnn {
            code,
            url: url.to_string(),
        })
    } else {
        None
    };
    LocationAnns {
        rewrite_target,
        use_regex: ann_bool(ing, "use-regex", notes).unwrap_or(false),
        app_root: ann(ing, "app-root")
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string()),
        // Without the annotation: the ConfigMap's value (annotations/rewrite `Parse`).
        ssl_redirect: ann_bool(ing, "ssl-redirect", notes).unwrap_or(g.ssl_redirect),
        force_ssl_redirect: ann_bool(ing, "force-ssl-redirect", notes)
            .unwrap_or(g.force_ssl_redirect),
        preserve_trailing_slash: ann_bool(ing, "preserve-trailing-slash", notes)
            .unwrap_or(g.preserve_trailing_slash),
        redirect,
        service_upstream: ann_bool(ing, "service-upstream", notes).unwrap_or(false),
        from_to_www: ann_bool(ing, "from-to-www-redirect", notes).unwrap_or(false),
    }
}

fn canary_policy(ing: &IngressObj, notes: &mut Vec<String>) -> Option<CanaryPolicy> {
    if !ann_bool(ing, "canary", notes).unwrap_or(false) {
        return None;
    }
    let s = |n: &str| ann(ing, n).filter(|s| !s.is_empty()).map(|s| s.to_string());
    Some(CanaryPolicy {
        header: s("canary-by-header"),
        header_value: s("canary-by-header-value"),
        header_pattern: s("canary-by-header-pattern"),
        cookie: s("canary-by-cookie"),
        weight: ann_int(ing, "canary-weight").unwrap_or(0),
        weight_total: ann_int(ing, "canary-weight-total").unwrap_or(100),
    })
}

fn upstream_of(ing: &IngressObj, b: &BackendRef) -> Option<Upstream> {
    let service = b.service.clone()?;
    Some(Upstream::Service {
        namespace: ing.namespace.clone(),
        service,
        port: b.port.clone().unwrap_or(ServicePortRef::Number(0)),
    })
}

/// The pathType ingress-nginx works with: `SetDefaultNGINXPathType` (internal/k8s/main.go)
/// turns a missing pathType and ImplementationSpecific into Prefix.
fn effective_path_type(p: Option<PathType>) -> PathType {
    match p {
        Some(PathType::Exact) => PathType::Exact,
        _ => PathType::Prefix,
    }
}

/// The certificate `createServers` gives host `host` of `ing`: none without `spec.tls`; the
/// secret of the entry listing the host; otherwise (no listed host, or the secret's SANs unknown
/// to kubepath) the controller's default certificate (controller.go `extractTLSSecretName` and
/// the "Using default certificate" fallback).
fn tls_for(ing: &IngressObj, host: &str) -> Option<(SourceRef, String)> {
    if ing.tls.is_empty() {
        return None;
    }
    for t in &ing.tls {
        for h in &t.hosts {
            if h.eq_ignore_ascii_case(host) {
                let src = t.source.clone().unwrap_or_else(|| ing.source.clone());
                let why = match &t.secret_name {
                    Some(sec) => format!(
                        "spec.tls of Ingress {} lists {host} (secret {sec})",
                        ing.key()
                    ),
                    None => format!(
                        "spec.tls of Ingress {} lists {host} without a secret: the default certificate",
                        ing.key()
                    ),
                };
                return Some((src, why));
            }
        }
    }
    let src = ing.tls[0]
        .source
        .clone()
        .unwrap_or_else(|| ing.source.clone());
    Some((
        src,
        format!(
            "Ingress {} has a spec.tls section that does not list {host}: ingress-nginx gives the host the secret whose certificate names it, else its default certificate",
            ing.key()
        ),
    ))
}

/// Orders Ingresses as the store lists them (store.go `sortIngressSlice`): by creation
/// timestamp, and for equal timestamps by "namespace/name" descending.
fn ingress_order(world: &World, served: &[usize]) -> Vec<usize> {
    let mut v = served.to_vec();
    v.sort_by(|&a, &b| {
        let (ia, ib) = (&world.ingresses[a], &world.ingresses[b]);
        let ta = ia.creation_timestamp.as_deref().unwrap_or("");
        let tb = ib.creation_timestamp.as_deref().unwrap_or("");
        ta.cmp(tb).then_with(|| ib.key().cmp(&ia.key()))
    });
    v
}

/// Builds the configuration of `controller`.
pub fn build(world: &World, controller: &ControllerRef) -> Config {
    let mut cfg = Config::default();
    let mut served = Vec::new();
    for (i, ing) in world.ingresses.iter().enumerate() {
        let (ok, why) = serves(world, controller, ing);
        if ok {
            served.push(i);
            cfg.served.push((i, why));
        } else {
            cfg.ignored.push((i, why));
        }
    }
    let order = ingress_order(world, &served);
    let mut notes = Vec::new();
    cfg.globals = globals(world, controller, &mut notes);
    cfg.quoted = controller
        .version
        .is_none_or(|v| v >= super::controller::Version(1, 15, 0));
    let g = cfg.globals.clone();
    let canary: BTreeMap<usize, CanaryPolicy> = order
        .iter()
        .filter_map(|&i| canary_policy(&world.ingresses[i], &mut notes).map(|p| (i, p)))
        .collect();
    let mut b = Builder {
        world,
        cfg,
        notes,
        order,
        canary,
        g,
    };
    b.create_servers();
    b.server_aliases();
    b.server_tls();
    b.backend_locations();
    b.merge_canaries();
    let Builder {
        mut cfg, mut notes, ..
    } = b;
    render_locations(world, controller, &mut cfg);
    notes.sort();
    notes.dedup();
    cfg.notes = notes;
    cfg.index_hosts(world);
    cfg
}

/// A configuration being built from the served Ingresses, one createServers /
/// getBackendServers step at a time.
struct Builder<'a> {
    world: &'a World,
    cfg: Config,
    notes: Vec<String>,
    /// The served Ingresses, in the store's order.
    order: Vec<usize>,
    /// The served canary Ingresses, with their policies.
    canary: BTreeMap<usize, CanaryPolicy>,
    g: Globals,
}

/// A server's root location `/` to `upstream` (createServers).
fn root_location(upstream: Upstream, ingress: Option<usize>, anns: LocationAnns) -> Location {
    Location {
        path: "/".into(),
        ingress_path: "/".into(),
        path_type: PathType::Prefix,
        declared_type: None,
        exact_twin: false,
        ingress,
        is_def_backend: true,
        upstream,
        anns,
        rule_source: None,
        rendered: Rendered::Prefix("/".into()),
        shadowed: Vec::new(),
    }
}

/// A server of `hostname` with only `root`.
fn server_with_root(hostname: String, root: Location) -> Server {
    Server {
        hostname,
        locations: vec![root],
        tls: None,
        enforce_regex: None,
        aliases: Vec::new(),
        from_to_www: false,
    }
}

/// A rule path's path (`/` when empty).
fn rule_path(p: Option<&str>) -> String {
    match p {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "/".to_string(),
    }
}

impl Builder<'_> {
    /// The served Ingresses that are not canaries, in order.
    fn primaries(&self) -> Vec<usize> {
        self.order
            .iter()
            .copied()
            .filter(|i| !self.canary.contains_key(i))
            .collect()
    }

    /// createServers: the default server `_` with its root location, then one server per
    /// host of a non-canary Ingress (the first Ingress of a host gives its root location).
    fn create_servers(&mut self) {
        let g = &self.g;
        let default_anns = LocationAnns {
            ssl_redirect: g.ssl_redirect,
            force_ssl_redirect: g.force_ssl_redirect,
            preserve_trailing_slash: g.preserve_trailing_slash,
            ..Default::default()
        };
        self.cfg.servers.insert(
            "_".into(),
            server_with_root(
                "_".into(),
                root_location(Upstream::Default, None, default_anns),
            ),
        );
        let world = self.world;
        for i in self.primaries() {
            let ing = &world.ingresses[i];
            let anns = location_anns(ing, &self.g, &mut self.notes);
            let mut un = Upstream::Default;
            if let Some(db) = &ing.default_backend {
                if let Some(u) = upstream_of(ing, db) {
                    un = u.clone();
                    self.catch_all(i, db, u, &anns);
                }
            }
            for rule in &ing.rules {
                let host = host_key(rule.host.as_deref());
                if self.cfg.servers.contains_key(&host) {
                    continue;
                }
                let mut loc = root_location(un.clone(), Some(i), anns.clone());
                loc.rule_source = ing.default_backend.as_ref().and_then(|b| b.source.clone());
                self.cfg
                    .servers
                    .insert(host.clone(), server_with_root(host, loc));
            }
        }
    }

    /// The catch-all case: an Ingress `i` with a default backend (to `u`) and no rules
    /// configures the default server's root location, if no other did.
    fn catch_all(&mut self, i: usize, db: &BackendRef, u: Upstream, anns: &LocationAnns) {
        let world = self.world;
        let ing = &world.ingresses[i];
        let Some(def) = self.cfg.servers.get_mut("_") else {
            return;
        };
        let Some(loc) = def.locations.first_mut() else {
            return;
        };
        if loc.is_def_backend && ing.rules.is_empty() {
            loc.is_def_backend = false;
            loc.upstream = u;
            loc.ingress = Some(i);
            loc.rule_source = db.source.clone().or(Some(ing.source.clone()));
            let keep_redirect = loc.anns.redirect.clone();
            let keep_rewrite = loc.anns.rewrite_target.clone();
            let keep_regex = loc.anns.use_regex;
            loc.anns = anns.clone();
            loc.anns.redirect = keep_redirect;
            loc.anns.rewrite_target = keep_rewrite;
            loc.anns.use_regex = keep_regex;
        }
    }

    /// Aliases (createServers): the first Ingress of a host with a server-alias annotation;
    /// names that are a server of their own are dropped.
    fn server_aliases(&mut self) {
        let world = self.world;
        for i in self.primaries() {
            let ing = &world.ingresses[i];
            let Some(v) = ann(ing, "server-alias") else {
                continue;
            };
            let mut aliases: Vec<String> = v
                .split(',')
                .map(|a| a.trim().to_ascii_lowercase())
                .filter(|a| !a.is_empty())
                .collect();
            aliases.sort();
            aliases.dedup();
            for rule in &ing.rules {
                let host = host_key(rule.host.as_deref());
                let taken: Vec<String> = self.cfg.servers.keys().cloned().collect();
                if let Some(server) = self.cfg.servers.get_mut(&host) {
                    if server.aliases.is_empty() {
                        server.aliases = aliases
                            .iter()
                            .filter(|a| **a != host && !taken.contains(a))
                            .cloned()
                            .collect();
                    }
                }
            }
        }
    }

    /// TLS (createServers): the first served Ingress of the host with a spec.tls section.
    fn server_tls(&mut self) {
        let world = self.world;
        for i in self.primaries() {
            let ing = &world.ingresses[i];
            for rule in &ing.rules {
                let host = host_key(rule.host.as_deref());
                if host == "_" {
                    continue; // the default server has the default certificate already
                }
                if let Some(server) = self.cfg.servers.get_mut(&host) {
                    if server.tls.is_none() {
                        server.tls = tls_for(ing, &host);
                    }
                }
            }
        }
    }

    /// getBackendServers: the locations of every rule path (canary upstreams are NoServer).
    fn backend_locations(&mut self) {
        let world = self.world;
        for i in self.primaries() {
            let ing = &world.ingresses[i];
            let anns = location_anns(ing, &self.g, &mut Vec::new());
            for rule in &ing.rules {
                let host = host_key(rule.host.as_deref());
                let Some(paths) = &rule.paths else { continue };
                let server_key = if self.cfg.servers.contains_key(&host) {
                    host
                } else {
                    "_".to_string()
                };
                if !self.cfg.servers.contains_key(&server_key) {
                    continue;
                }
                for p in paths {
                    self.path_location(i, rule, p, &server_key, &anns);
                }
            }
        }
    }

    /// One rule path `p` of Ingress `i` on the server `server_key`: a new location, or the
    /// default-backend location of the same path and type it takes over, or a note that an
    /// earlier Ingress already defines it.
    fn path_location(
        &mut self,
        i: usize,
        rule: &RuleObj,
        p: &PathRule,
        server_key: &str,
        anns: &LocationAnns,
    ) {
        let world = self.world;
        let ing = &world.ingresses[i];
        let Some(server) = self.cfg.servers.get_mut(server_key) else {
            return;
        };
        let notes = &mut self.notes;
        let Some(up) = upstream_of(ing, &p.backend) else {
            notes.push(format!(
                "Ingress {}: path {:?} has a resource backend, which ingress-nginx skips",
                ing.key(),
                p.path.as_deref().unwrap_or("/")
            ));
            return;
        };
        let path = rule_path(p.path.as_deref());
        let pt = effective_path_type(p.path_type);
        let mut add = true;
        for loc in server.locations.iter_mut() {
            if loc.path != path {
                continue;
            }
            if loc.path_type != pt {
                break; // same path, other type: a separate location
            }
            add = false;
            if !loc.is_def_backend {
                loc.shadowed
                    .push((i, p.source.clone().or(rule.source.clone())));
                notes.push(format!(
                    "Ingress {}: path {} of host {} is already defined by Ingress {}; ingress-nginx keeps the first",
                    ing.key(),
                    path,
                    server_key,
                    loc.ingress
                        .map(|j| world.ingresses[j].key())
                        .unwrap_or_default()
                ));
                break;
            }
            loc.upstream = up.clone();
            loc.declared_type = p.path_type;
            loc.is_def_backend = false;
            loc.ingress = Some(i);
            loc.anns = anns.clone();
            loc.rule_source = p.source.clone().or(rule.source.clone());
            if anns.from_to_www {
                server.from_to_www = true;
            }
            break;
        }
        if add {
            if anns.from_to_www {
                server.from_to_www = true;
            }
            server.locations.push(Location {
                path: path.clone(),
                ingress_path: path.clone(),
                path_type: pt,
                declared_type: p.path_type,
                exact_twin: false,
                ingress: Some(i),
                is_def_backend: false,
                upstream: up,
                anns: anns.clone(),
                rule_source: p.source.clone().or(rule.source.clone()),
                rendered: Rendered::Prefix(path),
                shadowed: Vec::new(),
            });
        }
    }

    /// mergeAlternativeBackends: canary Ingresses attach to the primary upstream of the
    /// location with the same host, path and pathType.
    fn merge_canaries(&mut self) {
        if self.order.len() <= self.canary.len() {
            return;
        }
        let canary = std::mem::take(&mut self.canary);
        for (&i, policy) in &canary {
            for target in self.canary_targets(i) {
                self.merge_canary(i, policy, target);
            }
        }
        self.canary = canary;
    }

    /// The (host, path, pathType, canary upstream, source) a canary Ingress `i` asks to be
    /// the alternative of: its default backend for every location of the default server,
    /// then each rule path.
    fn canary_targets(&self, i: usize) -> Vec<CanaryTarget> {
        let ing = &self.world.ingresses[i];
        let mut targets: Vec<CanaryTarget> = Vec::new();
        if let Some(db) = &ing.default_backend {
            if let Some(u) = upstream_of(ing, db) {
                if let Some(def) = self.cfg.servers.get("_") {
                    for loc in &def.locations {
                        targets.push((
                            "_".into(),
                            loc.path.clone(),
                            loc.path_type,
                            u.clone(),
                            db.source.clone(),
                        ));
                    }
                }
            }
        }
        for rule in &ing.rules {
            let host = host_key(rule.host.as_deref());
            for p in rule.paths.iter().flatten() {
                if let Some(u) = upstream_of(ing, &p.backend) {
                    targets.push((
                        host.clone(),
                        rule_path(p.path.as_deref()),
                        effective_path_type(p.path_type),
                        u,
                        p.source.clone(),
                    ));
                }
            }
        }
        targets
    }

    /// Attaches canary Ingress `i` to the primary locations of one target, or notes why it
    /// cannot.
    fn merge_canary(&mut self, i: usize, policy: &CanaryPolicy, target: CanaryTarget) {
        let world = self.world;
        let ing = &world.ingresses[i];
        let (host, path, pt, alt, src) = target;
        let Some(server) = self.cfg.servers.get(&host) else {
            self.notes.push(format!(
                "canary Ingress {}: host {host} has no primary Ingress; the canary is ignored",
                ing.key()
            ));
            return;
        };
        let mut merged = false;
        for loc in &server.locations {
            if loc.upstream == alt {
                break;
            }
            if loc.upstream != Upstream::Default && loc.path == path && loc.path_type == pt {
                if let Some(existing) = self.cfg.canaries.get(&loc.upstream) {
                    if existing.ingress != i {
                        self.notes.push(format!(
                            "canary Ingress {} is ignored for {host}{path}: Ingress {} is already the canary of that backend (only the first is used)",
                            ing.key(),
                            world.ingresses[existing.ingress].key()
                        ));
                    }
                } else {
                    self.cfg.canaries.insert(
                        loc.upstream.clone(),
                        Canary {
                            ingress: i,
                            upstream: alt.clone(),
                            policy: policy.clone(),
                            source: src.clone().or(Some(ing.source.clone())),
                        },
                    );
                }
                merged = true;
            }
        }
        if !merged {
            self.notes.push(format!(
                "canary Ingress {}: no primary location {host}{path} ({}) to attach to; ingress-nginx drops it",
                ing.key(),
                pt.as_str()
            ));
        }
    }
}

/// Where a canary asks to attach: (host, path, pathType, canary upstream, source).
type CanaryTarget = (String, String, PathType, Upstream, Option<SourceRef>);

/// Sorts every server's locations (longest path first, ties by path descending), then
/// updateServerLocations, then renders them (regex for the whole server when one location
/// needs it).
fn render_locations(world: &World, controller: &ControllerRef, cfg: &mut Config) {
    let element_wise = controller.element_wise_prefix();
    for server in cfg.servers.values_mut() {
        server.locations.sort_by(|a, b| b.path.cmp(&a.path));
        server
            .locations
            .sort_by_key(|l| std::cmp::Reverse(l.path.len()));
        if element_wise {
            server.locations = update_server_locations(std::mem::take(&mut server.locations));
        }
        let enforce = server
            .locations
            .iter()
            .find(|l| l.needs_rewrite() || l.anns.use_regex)
            .map(|l| {
                let who = l
                    .ingress
                    .map(|j| format!("Ingress {}", world.ingresses[j].key()))
                    .unwrap_or_else(|| "a location".into());
                if l.needs_rewrite() {
                    format!("{who} sets {PREFIX}rewrite-target")
                } else {
                    format!("{who} sets {PREFIX}use-regex")
                }
            });
        for loc in server.locations.iter_mut() {
            loc.rendered = if enforce.is_some() {
                Rendered::Regex(loc.path.clone())
            } else if loc.path_type == PathType::Exact {
                Rendered::Exact(loc.path.clone())
            } else {
                Rendered::Prefix(loc.path.clone())
            };
        }
        server.enforce_regex = enforce;
    }
}

/// `updateServerLocations` (location.go): a Prefix path `/p` (not `/`, no rewrite, no regex)
/// becomes `location /p/` plus, unless an Exact `/p` exists, `location = /p`.
fn update_server_locations(locations: Vec<Location>) -> Vec<Location> {
    let exact: Vec<String> = locations
        .iter()
        .filter(|l| l.path_type == PathType::Exact)
        .map(|l| l.path.clone())
        .collect();
    let mut out = Vec::with_capacity(locations.len() * 2);
    for mut loc in locations {
        if loc.path == "/"
            || loc.path_type != PathType::Prefix
            || loc.needs_rewrite()
            || loc.anns.use_regex
        {
            out.push(loc);
            continue;
        }
        let had_exact = exact.contains(&loc.path);
        let mut twin = loc.clone();
        if !loc.path.ends_with('/') {
            loc.path.push('/');
        }
        out.push(loc);
        if !had_exact {
            twin.path_type = PathType::Exact;
            twin.exact_twin = true;
            out.push(twin);
        }
    }
    out
}

/// The server key of a rule host: `_` for none, lowercased otherwise.
pub fn host_key(h: Option<&str>) -> String {
    match h {
        Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
        _ => "_".into(),
    }
}
