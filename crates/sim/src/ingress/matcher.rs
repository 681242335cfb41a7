//! nginx's request processing over a controller's [`Config`]: server by Host, server-level
//! redirects, location, location redirects, ssl redirect, rewrite, canary, upstreams.

use fancy_regex::Regex;

use super::config::{Canary, Config, Location, Rendered, Server, Upstream, PREFIX};
use super::controller::ControllerRef;
use super::world::{ServiceObj, ServicePortObj, ServicePortRef, TargetPort, World};
use super::{Backend, HttpRequest, IngressDecision, Scheme, UpstreamEndpoint};

/// The normalised request URI (`$uri`) and its query (`$args`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedUri {
    pub uri: String,
    pub args: Option<String>,
}

/// nginx's URI normalisation (ngx_http_parse_complex_uri): percent-decoding, merging of
/// slashes (`merge_slashes on`), `.` and `..` segments. `Err` = nginx answers 400.
pub fn normalise_uri(target: &str) -> Result<NormalisedUri, String> {
    let (path, args) = match target.split_once('?') {
        Some((p, a)) => (p, Some(a.to_string())),
        None => (target, None),
    };
    if !path.starts_with('/') {
        return Err(format!("request target {target:?} does not start with '/'"));
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                // A decoded NUL makes ngx_http_parse_complex_uri return
                // NGX_HTTP_PARSE_INVALID_REQUEST (sw_quoted_second): 400.
                (Some(0), Some(0)) => return Err(format!("{path:?} decodes to a NUL byte")),
                (Some(h), Some(l)) => {
                    decoded.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => return Err(format!("bad percent-encoding in {path:?}")),
            }
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    let mut segs: Vec<&str> = Vec::new();
    let parts: Vec<&str> = text.split('/').collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing = false;
    for (k, seg) in parts.iter().enumerate().skip(1) {
        match *seg {
            "" => trailing = k == last,
            "." => trailing = true,
            ".." => {
                if segs.pop().is_none() {
                    return Err(format!("{path:?} climbs above the root"));
                }
                trailing = true;
            }
            s => {
                segs.push(s);
                trailing = false;
            }
        }
    }
    let mut uri = String::from("/");
    uri.push_str(&segs.join("/"));
    if trailing && !segs.is_empty() {
        uri.push('/');
    }
    Ok(NormalisedUri { uri, args })
}

/// The Host header as nginx uses it for server selection: port and trailing dot stripped,
/// lowercased (ngx_http_validate_host).
pub fn normalise_host(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match h.rsplit_once(':') {
            Some((a, p)) if p.chars().all(|c| c.is_ascii_digit()) => a,
            _ => h,
        }
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Picks the server for `host`: exact name, then wildcards, else the default server `_`.
fn select_server<'c>(
    cfg: &'c Config,
    controller: &ControllerRef,
    host: &str,
    notes: &mut Vec<String>,
) -> Option<&'c Server> {
    if !host.is_empty() && !host.starts_with("*.") {
        if let Some(s) = cfg.servers.get(host) {
            notes.push(format!(
                "server_name {host} matches the Host header exactly"
            ));
            return Some(s);
        }
    }
    if !host.is_empty() {
        if let Some(s) = cfg
            .servers
            .values()
            .find(|s| s.aliases.iter().any(|a| a == host))
        {
            notes.push(format!("{host} is a server-alias of server {}", s.hostname));
            return Some(s);
        }
    }
    if controller.one_label_wildcard() {
        // buildServerName: `*.example.com` -> `~^(?<subdomain>[\w-]+)\.example\.com$`; nginx
        // tries regex server names in the order of the configuration (sorted by hostname).
        for (name, s) in &cfg.servers {
            let Some(suffix) = name.strip_prefix("*.") else {
                continue;
            };
            if let Some(label) = host.strip_suffix(suffix).and_then(|l| l.strip_suffix('.')) {
                if !label.is_empty() && label.chars().all(is_label_char) {
                    notes.push(format!(
                        "wildcard host {name} matches {host} (ingress-nginx renders it as a regex for exactly one label)"
                    ));
                    return Some(s);
                }
            }
            if host.ends_with(&format!(".{suffix}")) {
                notes.push(format!(
                    "wildcard host {name} does not match {host}: ingress-nginx's wildcard matches exactly one label"
                ));
            }
        }
    } else {
        // nginx's own `*.example.com` wildcard: any depth; the longest matching one wins.
        let best = cfg
            .servers
            .iter()
            .filter_map(|(name, s)| {
                let suffix = name.strip_prefix('*')?;
                (host.len() > suffix.len() && host.ends_with(suffix)).then_some((name, s))
            })
            .max_by_key(|(name, _)| name.len());
        if let Some((name, s)) = best {
            notes.push(format!(
                "wildcard server_name {name} matches {host} (nginx wildcard, controller older than v0.41)"
            ));
            return Some(s);
        }
    }
    notes.push(if host.is_empty() {
        "no Host header: the default server `_` takes the request".to_string()
    } else {
        format!("no server_name matches {host}: the default server `_` takes the request")
    });
    // config::build always creates the default server.
    cfg.servers.get("_")
}

/// A case-insensitive regex, as nginx's `~*` and `rewrite "(?i)..."` compile it with PCRE.
/// fancy-regex covers PCRE's look-around and backreferences; what it cannot compile is
/// reported as unknown by the callers.
fn compile(pattern: &str) -> Result<Regex, String> {
    if let Some(why) = pcre_differs(pattern) {
        return Err(why);
    }
    Regex::new(&format!("(?i){pattern}")).map_err(|e| e.to_string())
}

/// A construct fancy-regex compiles with another meaning than nginx's PCRE (issue #11,
/// review): `\h`/`\v` (PCRE: horizontal/vertical white space), `{,n}` (a literal before PCRE2
/// 10.43, a quantifier after: the controller's nginx build decides), and any non-ASCII
/// character (nginx compiles without UTF mode: PCRE matches bytes, fancy-regex characters).
fn pcre_differs(pattern: &str) -> Option<String> {
    if let Some(c) = pattern.chars().find(|c| !c.is_ascii()) {
        return Some(format!(
            "it holds the non-ASCII character {c:?}, which nginx's PCRE (no UTF mode) matches byte by byte"
        ));
    }
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if let Some(&c) = b.get(i + 1) {
                    if matches!(c, b'h' | b'H' | b'v' | b'V') {
                        return Some(format!(
                            "`\\{}` means horizontal/vertical white space in PCRE, something else in kubepath's regex engine",
                            c as char
                        ));
                    }
                }
                i += 2;
                continue;
            }
            b'{' if b.get(i + 1) == Some(&b',') => {
                let digits = b[i + 2..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 && b.get(i + 2 + digits) == Some(&b'}') {
                    return Some(
                        "`{,n}` is a literal in PCRE before 10.43 and a quantifier after: which one depends on the controller's nginx build".into(),
                    );
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The static prefix location nginx redirects `uri` to (`uri` + `/`), if any: no exact or
/// prefix location is named `uri` itself, and a prefix location is named `uri/`. Every
/// location ingress-nginx writes for a backend proxies, which sets auto_redirect on a name
/// ending in `/` (ngx_http_proxy_pass). Regex locations are never static.
fn auto_redirect<'s>(server: &'s Server, uri: &str) -> Option<&'s Location> {
    let named = |l: &Location, want: &str| match &l.rendered {
        Rendered::Exact(p) | Rendered::Prefix(p) => p == want,
        Rendered::Regex(_) => false,
    };
    if uri.ends_with('/') || server.locations.iter().any(|l| named(l, uri)) {
        return None;
    }
    let with_slash = format!("{uri}/");
    server.locations.iter().find(
        |l| matches!(&l.rendered, Rendered::Prefix(p) | Rendered::Exact(p) if *p == with_slash),
    )
}

/// nginx's location choice (ngx_http_core_find_location): an exact `=` match wins; else the
/// regex locations in order, first match; else the longest prefix. (ingress-nginx never emits
/// `^~`.) A regex location kubepath cannot evaluate that nginx would try before any regex
/// location matching the URI could take the request (PCRE may match it): the choice is then
/// unknown, `Err` says which regex and where its Ingress writes it.
fn select_location<'s>(
    world: &World,
    server: &'s Server,
    uri: &str,
) -> Result<Option<&'s Location>, String> {
    for loc in &server.locations {
        if let Rendered::Exact(p) = &loc.rendered {
            if p == uri {
                return Ok(Some(loc));
            }
        }
    }
    let longest_prefix = server
        .locations
        .iter()
        .filter_map(|l| match &l.rendered {
            Rendered::Prefix(p) if uri.starts_with(p.as_str()) => Some((p.len(), l)),
            _ => None,
        })
        .fold(None::<(usize, &Location)>, |best, (n, l)| match best {
            Some((bn, _)) if bn >= n => best,
            _ => Some((n, l)),
        });
    let whose = |loc: &Location| {
        let ing = loc
            .ingress
            .and_then(|i| world.ingresses.get(i))
            .map(|i| format!(" of Ingress {}", i.key()))
            .unwrap_or_default();
        let at = loc
            .rule_source
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        format!("{ing}{at}")
    };
    for loc in &server.locations {
        if let Rendered::Regex(p) = &loc.rendered {
            if !uri.is_ascii() || uri.contains('\n') {
                // nginx's PCRE matches the URI's bytes (no UTF mode): `.` is one byte, `\d`
                // and case folding are ASCII; kubepath's engine matches characters.
                return Err(format!(
                    "the location regex ^{p}{} decides whether it takes {uri} before any later regex or prefix location, and the URI holds non-ASCII characters or a newline, which nginx's PCRE (no UTF mode; `$` also before a final newline) matches byte by byte and kubepath's regex engine by character",
                    whose(loc)
                ));
            }
            let why = match compile(&format!("^{p}")) {
                Ok(re) => match re.is_match(uri) {
                    Ok(true) => return Ok(Some(loc)),
                    Ok(false) => continue,
                    Err(e) => format!("kubepath's regex engine failed matching it ({e})"),
                },
                Err(e) => format!(
                    "it is not supported by kubepath's regex engine ({})",
                    e.lines().last().unwrap_or("")
                ),
            };
            return Err(format!(
                "the location regex ^{p}{} decides whether it takes {uri} before any later regex or prefix location, and {why}; nginx (PCRE) may match it",
                whose(loc)
            ));
        }
    }
    Ok(longest_prefix.map(|(_, l)| l))
}

/// Applies `rewrite "(?i)<path>" <target> break;` to `uri`. Returns the new URI, or an error
/// note.
fn rewrite(
    path: &str,
    target: &str,
    uri: &str,
    host: &str,
    scheme: Scheme,
) -> Result<Option<String>, String> {
    if !uri.is_ascii() {
        return Err(format!(
            "unknown: the rewrite regex {path} is matched against {uri}, which holds non-ASCII characters: nginx's PCRE (no UTF mode) matches them byte by byte, kubepath's regex engine by character"
        ));
    }
    let re = compile(path).map_err(|e| {
        format!(
            "unknown: the rewrite regex {path} is not supported by kubepath's regex engine ({})",
            e.lines().last().unwrap_or("")
        )
    })?;
    let caps = match re.captures(uri) {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(format!(
                "unknown: matching the rewrite regex {path} failed ({e})"
            ))
        }
    };
    let mut out = String::new();
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
                // `$1x`: a capture reference is one digit.
                if name.len() == 1 && name.as_bytes()[0].is_ascii_digit() && !braced {
                    break;
                }
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if let Ok(n) = name.parse::<usize>() {
            out.push_str(caps.get(n).map(|m| m.as_str()).unwrap_or(""));
        } else {
            match name.as_str() {
                "host" => out.push_str(host),
                "scheme" => out.push_str(scheme.as_str()),
                "" => out.push('$'),
                other => {
                    return Err(format!(
                        "unknown: rewrite-target uses the nginx variable ${other}, which kubepath does not evaluate"
                    ))
                }
            }
        }
    }
    Ok(Some(out))
}

/// Decides what the controller does with `req`.
pub fn decide(
    world: &World,
    controller: &ControllerRef,
    cfg: &Config,
    req: &HttpRequest,
) -> (IngressDecision, Option<Rendered>) {
    let mut d = IngressDecision::new(404);
    let loc = decide_into(world, controller, cfg, req, &mut d);
    (d, loc)
}

fn decide_into(
    world: &World,
    controller: &ControllerRef,
    cfg: &Config,
    req: &HttpRequest,
    d: &mut IngressDecision,
) -> Option<Rendered> {
    d.notes.push(format!(
        "controller {}: {}",
        controller.label(),
        match controller.version {
            Some(v) => format!("ingress-nginx v{v}"),
            None => "ingress-nginx version unknown (current semantics assumed)".to_string(),
        }
    ));
    let host = normalise_host(&req.host);
    served_notes(world, cfg, &host, d);
    d.notes.extend(cfg.notes.iter().cloned());

    let norm = match normalise_uri(&req.path) {
        Ok(n) => n,
        Err(e) => {
            d.status = 400;
            d.notes.push(format!("nginx rejects the request: {e}"));
            return None;
        }
    };
    if let Some(to) = www_redirect(cfg, &host) {
        www_redirect_answer(cfg, req, &host, &to, d);
        return None;
    }
    let Some(server) = select_server(cfg, controller, &host, &mut d.notes) else {
        d.notes
            .push("the configuration has no default server: nginx would not start".into());
        return None;
    };
    d.server = Some(server.hostname.clone());
    if let Some(why) = &server.enforce_regex {
        d.notes.push(format!(
            "every location of server {} is a case-insensitive regex because {why}",
            server.hostname
        ));
    }
    if app_root_redirect(world, req, server, &norm, d) {
        return None;
    }
    if let Some(loc) = auto_redirect(server, &norm.uri) {
        auto_redirect_answer(world, cfg, req, server, &norm, loc, d);
        return None;
    }
    let selected = match select_location(world, server, &norm.uri) {
        Ok(l) => l,
        Err(why) => {
            d.notes.push(format!("unknown: {why}"));
            d.unknown = Some(why);
            return None;
        }
    };
    let Some(loc) = selected else {
        d.status = 404;
        d.notes.push(format!(
            "no location of server {} matches {}",
            server.hostname, norm.uri
        ));
        return None;
    };
    d.nginx_location = Some(loc.rendered.line(cfg.quoted));
    set_ingress(world, d, loc);
    d.notes.push(location_match_note(cfg, server, &norm, loc));
    shadowed_findings(world, server, loc, d);
    unevaluated_annotations(world, loc, d);

    // Location-level `return` (permanent-redirect / temporal-redirect) runs in the rewrite
    // phase before lua_ingress.rewrite().
    if let Some(r) = &loc.anns.redirect {
        d.status = r.code;
        let url = expand_vars(&r.url, req, &host, &norm, &mut d.notes);
        d.location = Some(url);
        d.notes
            .push(format!("redirect annotation: {} {}", r.code, r.url));
        return Some(loc.rendered.clone());
    }
    if ssl_redirect(cfg, req, &host, loc, d) {
        return Some(loc.rendered.clone());
    }
    if rewrite_target(req, &host, &norm, loc, d) {
        return Some(loc.rendered.clone());
    }

    let mut primary = proxy(world, controller, loc, &loc.upstream, d);
    if !primary && d.status == 503 {
        primary = custom_default_backend(world, loc, d);
    }
    if let Some(canary) = cfg.canaries.get(&loc.upstream) {
        apply_canary(world, controller, req, loc, canary, primary, d);
    }
    // Nothing receives the request when nginx answers itself.
    if d.upstreams.is_empty() {
        d.upstream_path = None;
    }
    Some(loc.rendered.clone())
}

/// Notes which Ingresses the controller serves or ignores, for those that concern `host`,
/// and how many others there are.
fn served_notes(world: &World, cfg: &Config, host: &str, d: &mut IngressDecision) {
    let (served, ignored) = cfg.concerning(world, host);
    for &p in &served {
        let (i, why) = &cfg.served[p];
        d.notes.push(format!(
            "serves Ingress {}: {why}",
            world.ingresses[*i].key()
        ));
    }
    for &p in &ignored {
        let (i, why) = &cfg.ignored[p];
        d.notes.push(format!(
            "ignores Ingress {}: {why}",
            world.ingresses[*i].key()
        ));
    }
    let other_served = cfg.served.len() - served.len();
    let other_ignored = cfg.ignored.len() - ignored.len();
    if other_served + other_ignored > 0 {
        d.notes.push(format!(
            "{other_served} other Ingress(es) served and {other_ignored} ignored by this controller have no rule for {host}"
        ));
    }
}

/// The redirect server's answer (nginx.tmpl "Build server redirects", ngx_srv_redirect.lua):
/// scheme, the twin name `to`, the server port, the request URI without a trailing '/'.
fn www_redirect_answer(
    cfg: &Config,
    req: &HttpRequest,
    host: &str,
    to: &str,
    d: &mut IngressDecision,
) {
    let mut uri = req.path.clone();
    if uri.ends_with('/') {
        uri.pop();
    }
    d.status = cfg.globals.http_redirect_code;
    d.server = Some(host.to_string());
    d.location = Some(format!(
        "{}://{to}:{}{uri}",
        req.scheme.as_str(),
        req.scheme.default_port()
    ));
    d.notes.push(format!(
        "{PREFIX}from-to-www-redirect on server {to}: nginx has a redirect server {host} -> {to}"
    ));
}

/// Server-level `if ($uri = /) { return 302 $scheme://$http_host<app-root>; }`: whether it
/// answers the request.
fn app_root_redirect(
    world: &World,
    req: &HttpRequest,
    server: &Server,
    norm: &NormalisedUri,
    d: &mut IngressDecision,
) -> bool {
    if norm.uri != "/" {
        return false;
    }
    let Some((loc, root)) = server
        .locations
        .iter()
        .find_map(|l| l.anns.app_root.as_ref().map(|r| (l, r)))
    else {
        return false;
    };
    d.status = 302;
    d.location = Some(format!("{}://{}{}", req.scheme.as_str(), req.host, root));
    set_ingress(world, d, loc);
    d.notes
        .push(format!("{PREFIX}app-root redirects / to {root}"));
    true
}

/// ngx_http_core_find_static_location: the URI is a static prefix location's name but for its
/// trailing slash, and that location proxies (proxy_pass sets auto_redirect): NGX_DONE, so
/// nginx answers 301 before any regex location or rewrite. The Location is absolute
/// (absolute_redirect on) with the Host header's name and no port (ingress-nginx sets
/// port_in_redirect off); arguments are kept.
fn auto_redirect_answer(
    world: &World,
    cfg: &Config,
    req: &HttpRequest,
    server: &Server,
    norm: &NormalisedUri,
    loc: &Location,
    d: &mut IngressDecision,
) {
    let host = req
        .host
        .rsplit_once(':')
        .map_or(req.host.as_str(), |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') {
                h
            } else {
                req.host.as_str()
            }
        });
    d.status = 301;
    d.location = Some(format!(
        "{}://{host}{}/{}",
        req.scheme.as_str(),
        norm.uri,
        norm.args
            .as_deref()
            .map(|a| format!("?{a}"))
            .unwrap_or_default()
    ));
    d.nginx_location = Some(loc.rendered.line(cfg.quoted));
    set_ingress(world, d, loc);
    d.notes.push(format!(
        "{} of server {} is {}/ : nginx redirects {} to it (301, the automatic redirect of a proxied location ending in /)",
        loc.rendered.line(cfg.quoted),
        server.hostname,
        norm.uri,
        norm.uri
    ));
}

/// The note saying which location of `server` matches the URI, and from which Ingress path.
fn location_match_note(
    cfg: &Config,
    server: &Server,
    norm: &NormalisedUri,
    loc: &Location,
) -> String {
    format!(
        "{} of server {} matches {} ({}{})",
        loc.rendered.line(cfg.quoted),
        server.hostname,
        norm.uri,
        if loc.exact_twin {
            format!("the exact twin of Prefix path {}", loc.ingress_path)
        } else {
            match loc.declared_type {
                Some(t) if t == loc.path_type => {
                    format!("path {} {}", loc.ingress_path, t.as_str())
                }
                Some(t) => format!(
                    "path {} {}, which ingress-nginx treats as {}",
                    loc.ingress_path,
                    t.as_str(),
                    loc.path_type.as_str()
                ),
                None if loc.is_def_backend => format!("path {}", loc.ingress_path),
                None => format!(
                    "path {} without pathType, which ingress-nginx treats as {}",
                    loc.ingress_path,
                    loc.path_type.as_str()
                ),
            }
        },
        if loc.is_def_backend {
            ", the server's root location: no rule path matched"
        } else {
            ""
        }
    )
}

/// A finding for every later Ingress that defines the selected location too.
fn shadowed_findings(world: &World, server: &Server, loc: &Location, d: &mut IngressDecision) {
    for (j, src) in &loc.shadowed {
        let other = &world.ingresses[*j];
        d.findings.push(super::Finding {
            message: format!(
                "Ingress {} also defines {}{} ({}); ingress-nginx ignores it because {} defines it first",
                other.key(),
                server.hostname,
                loc.ingress_path,
                loc.path_type.as_str(),
                d.ingress
                    .as_ref()
                    .map(|(ns, n)| format!("Ingress {ns}/{n}"))
                    .unwrap_or_default()
            ),
            sources: [src.clone(), d.rule_source.clone()]
                .into_iter()
                .flatten()
                .collect(),
        });
    }
}

/// Notes the annotations of the location's Ingress that are not evaluated, with their effect.
fn unevaluated_annotations(world: &World, loc: &Location, d: &mut IngressDecision) {
    let Some(i) = loc.ingress else {
        return;
    };
    let ing = &world.ingresses[i];
    for (key, effect) in [
        (
            "whitelist-source-range",
            "clients outside these ranges get 403",
        ),
        (
            "allowlist-source-range",
            "clients outside these ranges get 403",
        ),
        ("denylist-source-range", "clients in these ranges get 403"),
        (
            "auth-url",
            "requests the auth service rejects get 401/403",
        ),
        ("auth-type", "requests without credentials get 401"),
        (
            "ssl-passthrough",
            "https connections are passed to the backend by SNI without L7 routing (with --enable-ssl-passthrough)",
        ),
        (
            "affinity",
            "a client sticks to one endpoint; over many clients the spread stays even",
        ),
    ] {
        if let Some(v) = ing.annotation(&format!("{PREFIX}{key}")) {
            d.notes.push(format!(
                "not evaluated: Ingress {} sets {PREFIX}{key}: {v} ({effect})",
                ing.key()
            ));
        }
    }
}

/// lua_ingress.lua `redirect_to_https` on `pass_access_scheme` (the request's scheme, or
/// X-Forwarded-Proto when the ConfigMap sets use-forwarded-headers): whether it redirects the
/// request to https.
fn ssl_redirect(
    cfg: &Config,
    req: &HttpRequest,
    host: &str,
    loc: &Location,
    d: &mut IngressDecision,
) -> bool {
    let mut access_scheme = req.scheme.as_str().to_string();
    if cfg.globals.use_forwarded_headers {
        if let Some(p) = req.header("X-Forwarded-Proto") {
            d.notes.push(format!(
                "use-forwarded-headers: X-Forwarded-Proto {p} is the scheme for the ssl redirect"
            ));
            access_scheme = p.to_string();
        }
    }
    if access_scheme != "http" {
        return false;
    }
    let why = if loc.anns.force_ssl_redirect {
        Some(format!("{PREFIX}force-ssl-redirect is true"))
    } else if loc.anns.ssl_redirect {
        match certificate_for(cfg, host) {
            Some(((src, why), name)) => Some(format!(
                "ssl-redirect is true and a certificate is configured for {name}: {why} ({src})"
            )),
            None => {
                d.notes.push(format!(
                    "no redirect to https: ssl-redirect is true but no certificate is configured for {host}: no served Ingress of that host has a spec.tls section (lua_ingress.lua redirects only when certificate.configured_for_current_request())"
                ));
                None
            }
        }
    } else {
        None
    };
    let Some(why) = why else {
        return false;
    };
    let mut uri = req.path.clone();
    if !loc.anns.preserve_trailing_slash && uri.ends_with('/') {
        uri.pop();
    }
    let h = normalise_redirect_host(&req.host);
    d.status = cfg.globals.http_redirect_code;
    d.location = Some(format!("https://{h}{uri}"));
    d.notes.push(format!("{} to https: {why}", d.status));
    true
}

/// rewrite-target (buildProxyPass): sets the path sent upstream; whether the rewrite gives an
/// absolute URL, which nginx answers with a redirect.
fn rewrite_target(
    req: &HttpRequest,
    host: &str,
    norm: &NormalisedUri,
    loc: &Location,
    d: &mut IngressDecision,
) -> bool {
    d.upstream_path = Some(req.path.clone());
    if !loc.needs_rewrite() {
        return false;
    }
    let target = loc.anns.rewrite_target.clone().unwrap_or_default();
    match rewrite(&loc.path, &target, &norm.uri, host, req.scheme) {
        Ok(Some(new)) => {
            if new.starts_with("http://") || new.starts_with("https://") {
                d.status = 302;
                d.location = Some(new.clone());
                d.upstream_path = None;
                d.notes.push(format!(
                    "rewrite-target {target} gives an absolute URL: nginx redirects (302)"
                ));
                return true;
            }
            let full = match (&norm.args, new.contains('?')) {
                (Some(a), false) => format!("{new}?{a}"),
                _ => new.clone(),
            };
            d.notes.push(format!(
                "rewrite \"(?i){}\" {target}: {} -> {full}",
                loc.path, norm.uri
            ));
            d.upstream_path = Some(full);
        }
        Ok(None) => d.notes.push(format!(
            "rewrite \"(?i){}\" does not match {}: the URI is passed unchanged",
            loc.path, norm.uri
        )),
        Err(e) => {
            d.notes.push(e);
            d.upstream_path = None;
        }
    }
    false
}

/// The `from-to-www-redirect` twin server for `host`, if one exists: a server with the flag whose
/// name is `host` with `www.` added or removed, and no server of its own named `host`.
fn www_redirect(cfg: &Config, host: &str) -> Option<String> {
    if cfg.servers.contains_key(host) {
        return None;
    }
    cfg.servers
        .values()
        .filter(|s| s.from_to_www && s.hostname != "_")
        .find(|s| {
            let from = match s.hostname.strip_prefix("www.") {
                Some(bare) => bare.to_string(),
                None => format!("www.{}", s.hostname),
            };
            from == host
        })
        .map(|s| s.hostname.clone())
}

/// certificate.lua `get_pem_cert_uid`: the host's own certificate, else the one of
/// `*.<host without its first label>`. Returns the certificate and the name it is stored under.
fn certificate_for<'c>(
    cfg: &'c Config,
    host: &str,
) -> Option<(&'c (kubepath_model::SourceRef, String), String)> {
    if let Some(t) = cfg.servers.get(host).and_then(|s| s.tls.as_ref()) {
        return Some((t, host.to_string()));
    }
    let (_, rest) = host.split_once('.')?;
    let wild = format!("*.{rest}");
    cfg.servers
        .get(&wild)
        .and_then(|s| s.tls.as_ref())
        .map(|t| (t, wild))
}

/// Expands the nginx variables a `return` URL may use ($scheme, $host, $http_host,
/// $request_uri, $uri, $args, $is_args, $server_port); others are kept and noted.
fn expand_vars(
    text: &str,
    req: &HttpRequest,
    host: &str,
    norm: &NormalisedUri,
    notes: &mut Vec<String>,
) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(b) => match b.find('}') {
                Some(j) => (&b[..j], &b[j + 1..]),
                None => (b, ""),
            },
            None => {
                let n = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..n], &after[n..])
            }
        };
        let value = match name {
            "scheme" => Some(req.scheme.as_str().to_string()),
            "host" => Some(host.to_string()),
            "http_host" => Some(req.host.clone()),
            "request_uri" => Some(req.path.clone()),
            "uri" => Some(norm.uri.clone()),
            "args" | "query_string" => Some(norm.args.clone().unwrap_or_default()),
            "is_args" => Some(if norm.args.is_some() { "?" } else { "" }.to_string()),
            "server_port" => Some(req.port.to_string()),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&v),
            None => {
                notes.push(format!(
                    "the redirect URL uses ${name}, which kubepath does not evaluate"
                ));
                out.push('$');
                out.push_str(name);
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn normalise_redirect_host(host: &str) -> String {
    // lua_ingress.lua `redirect_host`: the part of the Host header before ':'.
    host.split(':').next().unwrap_or(host).to_string()
}

fn set_ingress(world: &World, d: &mut IngressDecision, loc: &Location) {
    // A server's root location that still points at the controller's default backend: no
    // Ingress rule decided.
    if loc.is_def_backend && loc.upstream == Upstream::Default {
        return;
    }
    if let Some(i) = loc.ingress {
        let ing = &world.ingresses[i];
        d.ingress = Some((ing.namespace.clone(), ing.name.clone()));
        d.rule_source = loc.rule_source.clone().or(Some(ing.source.clone()));
    }
}

/// Fills backend, upstreams and status for `upstream`. Returns whether endpoints were found.
fn proxy(
    world: &World,
    controller: &ControllerRef,
    loc: &Location,
    upstream: &Upstream,
    d: &mut IngressDecision,
) -> bool {
    match upstream {
        Upstream::Default => {
            proxy_default(world, controller, d);
            false
        }
        Upstream::Service {
            namespace,
            service,
            port,
        } => proxy_service(world, loc, (namespace, service, port), d),
    }
}

/// No Ingress rule: the controller's default backend (`--default-backend-service`), or nginx's
/// built-in one, answers 404.
fn proxy_default(world: &World, controller: &ControllerRef, d: &mut IngressDecision) {
    d.status = 404;
    match &controller.default_backend {
        Some((ns, name)) => {
            let svc = world
                .services
                .iter()
                .find(|s| &s.namespace == ns && &s.name == name);
            let port = svc.and_then(|s| s.ports.first());
            d.backend = Some(Backend {
                namespace: ns.clone(),
                service: name.clone(),
                port: ServicePortRef::Number(port.map(|p| p.port).unwrap_or(0)),
                port_number: port.map(|p| p.port),
                service_source: svc.map(|s| s.source.clone()),
            });
            if let (Some(svc), Some(port)) = (svc, port) {
                d.upstreams = endpoints(world, svc, port);
            }
            d.notes.push(format!(
                "no Ingress rule: the controller's default backend {ns}/{name} (--default-backend-service) answers (404 unless customised)"
            ));
        }
        None => d
            .notes
            .push("no Ingress rule: nginx's built-in default backend answers 404".to_string()),
    }
}

/// The upstream of a location's Service backend (namespace, name, port): its ClusterIP
/// (service-upstream), its external name, or its ready endpoints. Whether anything receives
/// the request.
fn proxy_service(
    world: &World,
    loc: &Location,
    (namespace, service, port): (&String, &String, &ServicePortRef),
    d: &mut IngressDecision,
) -> bool {
    let svc = world
        .services
        .iter()
        .find(|s| &s.namespace == namespace && &s.name == service);
    let mut backend = Backend {
        namespace: namespace.clone(),
        service: service.clone(),
        port: port.clone(),
        port_number: None,
        service_source: svc.map(|s| s.source.clone()),
    };
    let Some(svc) = svc else {
        d.backend = Some(backend);
        d.status = 503;
        if let Some((file, why)) = &world.services_left_out {
            d.unknown = Some(format!(
                "Service {namespace}/{service} is not in the snapshot, but {file} was left out ({why}) and may hold it, so whether it exists is unknown"
            ));
        } else if !world.services_collected {
            d.unknown = Some(format!(
                "the snapshot holds no Services, so whether {namespace}/{service} exists is unknown (collect `kubectl get services -A -o yaml`)"
            ));
        }
        d.notes.push(format!(
            "Service {namespace}/{service} does not exist: the upstream has no endpoints, nginx answers 503"
        ));
        return false;
    };
    // serviceEndpoints: the first Service port whose number, targetPort or name is
    // the backend port.
    let want = port.to_string();
    let sp = svc.ports.iter().find(|p| {
        p.port.to_string() == want
            || p.target().to_string() == want
            || p.name.as_deref() == Some(want.as_str())
    });
    let Some(sp) = sp else {
        d.backend = Some(backend);
        d.status = 503;
        d.notes.push(format!(
            "Service {namespace}/{service} ({}) has no port {want}: no endpoints, nginx answers 503",
            svc.source
        ));
        return false;
    };
    backend.port_number = Some(sp.port);
    d.backend = Some(backend);
    if loc.anns.service_upstream {
        return cluster_ip_upstream(svc, sp, d);
    }
    if svc.type_ == "ExternalName" {
        if let Some(name) = &svc.external_name {
            external_name_upstream(svc, sp, name, d);
            return true;
        }
    }
    endpoint_upstreams(world, svc, sp, &want, d)
}

/// `service-upstream`: nginx connects to the Service's ClusterIP (503 without one).
fn cluster_ip_upstream(svc: &ServiceObj, sp: &ServicePortObj, d: &mut IngressDecision) -> bool {
    let (namespace, service) = (&svc.namespace, &svc.name);
    match svc
        .cluster_ip
        .as_deref()
        .filter(|c| !c.is_empty() && *c != "None")
    {
        Some(cip) => {
            d.status = 200;
            d.upstreams = vec![(
                1.0,
                UpstreamEndpoint {
                    address: cip.to_string(),
                    ip: cip.parse().ok(),
                    port: sp.port,
                    pod: None,
                    node: None,
                    via_cluster_ip: true,
                    source: Some(svc.source.clone()),
                },
            )];
            d.notes.push(format!(
                "{PREFIX}service-upstream: nginx connects to the ClusterIP {cip}:{}, kube-proxy picks the pod",
                sp.port
            ));
            true
        }
        None => {
            d.status = 503;
            d.notes.push(format!(
                "{PREFIX}service-upstream but Service {namespace}/{service} has no ClusterIP: 503"
            ));
            false
        }
    }
}

/// An ExternalName Service: nginx resolves `name` with its resolver.
fn external_name_upstream(
    svc: &ServiceObj,
    sp: &ServicePortObj,
    name: &str,
    d: &mut IngressDecision,
) {
    let (namespace, service) = (&svc.namespace, &svc.name);
    let port = match sp.target() {
        TargetPort::Number(n) => n,
        TargetPort::Name(_) => sp.port,
    };
    d.status = 200;
    d.upstreams = vec![(
        1.0,
        UpstreamEndpoint {
            address: name.to_string(),
            ip: name.parse().ok(),
            port,
            pod: None,
            node: None,
            via_cluster_ip: false,
            source: Some(svc.source.clone()),
        },
    )];
    d.notes.push(format!(
        "Service {namespace}/{service} is ExternalName {name}: nginx resolves it with its resolver"
    ));
}

/// The Service's ready endpoints for port `sp` (asked for as `want`), spread evenly; 503
/// without any. Whether any receives the request.
fn endpoint_upstreams(
    world: &World,
    svc: &ServiceObj,
    sp: &ServicePortObj,
    want: &str,
    d: &mut IngressDecision,
) -> bool {
    let (namespace, service) = (&svc.namespace, &svc.name);
    d.upstreams = endpoints(world, svc, sp);
    if let Some(why) = &svc.endpoint_doubt {
        d.unknown = Some(why.clone());
    }
    if d.upstreams.is_empty() {
        d.status = 503;
        if let Some((file, why)) = &world.endpoints_left_out {
            d.unknown = Some(format!(
                "Service {namespace}/{service} has no endpoint in the snapshot, but {file} was left out ({why}) and may hold its Endpoints or EndpointSlices, so its endpoints are unknown"
            ));
        } else if !world.endpoints_collected {
            d.unknown = Some(format!(
                "the snapshot holds no Endpoints or EndpointSlices, so the endpoints of {namespace}/{service} are unknown (collect `kubectl get endpointslices -A -o yaml`)"
            ));
        }
        d.notes.push(format!(
            "Service {namespace}/{service} port {want} has no ready endpoint: nginx answers 503"
        ));
        false
    } else {
        d.status = 200;
        if let Some((file, why)) = &world.endpoints_left_out {
            // Its endpoints may be more, fewer or other than those read (issue #11,
            // review: an unparseable endpoints.yaml beside the slices was ignored).
            d.unknown = Some(format!(
                "{file} was left out ({why}) and may hold Endpoints or EndpointSlices of Service {namespace}/{service}, so the endpoints nginx proxies to are unknown"
            ));
        }
        d.notes.push(format!(
            "proxied to Service {namespace}/{service} port {} over {} ready endpoint(s) of its own namespace, spread evenly (round-robin/EWMA; not through the ClusterIP)",
            sp.port,
            d.upstreams.len()
        ));
        true
    }
}

/// The `default-backend` annotation (controller.go, after `createServers`): when the location's
/// upstream has no endpoint, requests go to that Service of the Ingress's namespace (its first
/// port) if it has endpoints.
fn custom_default_backend(world: &World, loc: &Location, d: &mut IngressDecision) -> bool {
    let Some(i) = loc.ingress else { return false };
    let ing = &world.ingresses[i];
    let Some(name) = ing
        .annotation(&format!("{PREFIX}default-backend"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return false;
    };
    let Some(svc) = world
        .services
        .iter()
        .find(|s| s.namespace == ing.namespace && s.name == name)
    else {
        d.notes.push(format!(
            "{PREFIX}default-backend {name}: no such Service in {}; ignored",
            ing.namespace
        ));
        return false;
    };
    let Some(sp) = svc.ports.first() else {
        d.notes.push(format!(
            "{PREFIX}default-backend {name}: the Service has no ports; ignored"
        ));
        return false;
    };
    let ups = endpoints(world, svc, sp);
    if ups.is_empty() {
        d.notes.push(format!(
            "{PREFIX}default-backend {name}: no ready endpoint either; 503 stands"
        ));
        return false;
    }
    d.notes.push(format!(
        "the backend has no endpoint, so the {PREFIX}default-backend Service {}/{name} takes the request",
        ing.namespace
    ));
    d.status = 200;
    d.backend = Some(Backend {
        namespace: ing.namespace.clone(),
        service: name.to_string(),
        port: ServicePortRef::Number(sp.port),
        port_number: Some(sp.port),
        service_source: Some(svc.source.clone()),
    });
    d.upstreams = ups;
    true
}

/// `getEndpointsFromSlices`: ready endpoints of the Service's slices, with the slice port whose
/// name is the Service port's name (or the numeric targetPort), deduplicated, uniform weights.
fn endpoints(
    world: &World,
    svc: &super::world::ServiceObj,
    sp: &super::world::ServicePortObj,
) -> Vec<(f64, UpstreamEndpoint)> {
    let mut out: Vec<UpstreamEndpoint> = Vec::new();
    for slice in world.slices_of(&svc.namespace, &svc.name) {
        let mut ports: Vec<u16> = Vec::new();
        if slice.ports.is_empty() {
            if let TargetPort::Number(n) = sp.target() {
                ports.push(n);
            }
        }
        for p in &slice.ports {
            if !p.protocol.eq_ignore_ascii_case(&sp.protocol) && !(p.protocol.is_empty()) {
                continue;
            }
            let mut port = match (&sp.name, &p.name) {
                (None, _) => p.port.unwrap_or(0),
                (Some(n), _) if n.is_empty() => p.port.unwrap_or(0),
                (Some(n), Some(pn)) if n == pn => p.port.unwrap_or(0),
                _ => 0,
            };
            if port == 0 {
                if let TargetPort::Number(n) = sp.target() {
                    port = n;
                }
            }
            if port != 0 {
                ports.push(port);
            }
        }
        for ep in &slice.endpoints {
            if ep.ready == Some(false) {
                continue;
            }
            for &port in &ports {
                for ip in &ep.addresses {
                    if out.iter().any(|u| u.ip == Some(*ip) && u.port == port) {
                        continue;
                    }
                    out.push(UpstreamEndpoint {
                        address: ip.to_string(),
                        ip: Some(*ip),
                        port,
                        pod: ep.pod.clone(),
                        node: ep.node.clone(),
                        via_cluster_ip: false,
                        source: ep.source.clone().or(Some(slice.source.clone())),
                    });
                }
            }
        }
    }
    let n = out.len();
    out.into_iter().map(|u| (1.0 / n as f64, u)).collect()
}

/// balancer.lua `route_to_alternative_balancer`: header, then cookie, then weight.
fn apply_canary(
    world: &World,
    controller: &ControllerRef,
    req: &HttpRequest,
    loc: &Location,
    canary: &Canary,
    primary_ok: bool,
    d: &mut IngressDecision,
) {
    let ing = &world.ingresses[canary.ingress];
    let p = &canary.policy;
    let canary_decision = |d: &IngressDecision| -> IngressDecision {
        let mut c = d.clone();
        c.alternatives.clear();
        c.notes.clear();
        c.findings.clear();
        c.upstreams.clear();
        c.backend = None;
        c.ingress = Some((ing.namespace.clone(), ing.name.clone()));
        c.rule_source = canary.source.clone();
        proxy(world, controller, loc, &canary.upstream, &mut c);
        c
    };
    let _ = primary_ok;
    // Decided by header?
    let mut decided: Option<(bool, String)> = None;
    if let Some(h) = &p.header {
        if let Some(v) = req.header(h) {
            if let Some(want) = &p.header_value {
                if v == want {
                    decided = Some((
                        true,
                        format!("header {h}: {v} equals canary-by-header-value"),
                    ));
                }
            } else if let Some(pat) = &p.header_pattern {
                // ngx.re.match: PCRE, case-sensitive, unanchored.
                // The same PCRE-only constructs and byte-wise matching as for locations.
                let matched = (pcre_differs(pat).is_none() && v.is_ascii())
                    .then(|| Regex::new(pat).ok())
                    .flatten()
                    .and_then(|re| re.is_match(v).ok());
                match matched {
                    Some(true) => {
                        decided = Some((
                            true,
                            format!("header {h}: {v} matches canary-by-header-pattern {pat}"),
                        ))
                    }
                    Some(false) => {}
                    None => {
                        // nginx (PCRE) may match it and send the request to the canary.
                        let why = format!(
                            "canary-by-header-pattern {pat} of canary Ingress {}{} is not supported by kubepath's regex engine, and whether header {h}: {v} matches it decides between the canary and the primary",
                            ing.key(),
                            canary
                                .source
                                .as_ref()
                                .map(|s| format!(" ({s})"))
                                .unwrap_or_default()
                        );
                        d.notes.push(format!("unknown: {why}"));
                        d.unknown = Some(why);
                        return;
                    }
                }
            } else if v == "always" {
                decided = Some((true, format!("header {h}: always")));
            } else if v == "never" {
                decided = Some((false, format!("header {h}: never")));
            }
        }
    }
    if decided.is_none() {
        if let Some(c) = &p.cookie {
            match req.cookie(c).as_deref() {
                Some("always") => decided = Some((true, format!("cookie {c}=always"))),
                Some("never") => decided = Some((false, format!("cookie {c}=never"))),
                _ => {}
            }
        }
    }
    let canary_name = format!("canary Ingress {}", ing.key());
    match decided {
        Some((true, why)) => {
            let c = canary_decision(d);
            let notes = std::mem::take(&mut d.notes);
            let findings = std::mem::take(&mut d.findings);
            *d = c;
            d.notes = notes;
            d.findings = findings;
            d.notes
                .push(format!("{canary_name} takes the request: {why}"));
        }
        Some((false, why)) => {
            d.notes.push(format!("{canary_name} is skipped: {why}"));
        }
        None => {
            let total = if p.weight_total > 100 {
                p.weight_total
            } else {
                100
            };
            let w = p.weight.clamp(0, total);
            let prob = w as f64 / total as f64;
            if w == 0 {
                d.notes.push(format!(
                    "{canary_name}: canary-weight 0 and no header/cookie decided: primary backend"
                ));
            } else if w == total {
                let c = canary_decision(d);
                let notes = std::mem::take(&mut d.notes);
                *d = c;
                d.notes = notes;
                d.notes.push(format!(
                    "{canary_name}: canary-weight {w}/{total}: every request goes to the canary"
                ));
            } else {
                let c = canary_decision(d);
                let mut primary = d.clone();
                primary.alternatives.clear();
                primary.notes.clear();
                primary.findings.clear();
                d.notes.push(format!(
                    "{canary_name}: canary-weight {w}/{total}: {:.4} of requests go to the canary",
                    prob
                ));
                d.alternatives = vec![(1.0 - prob, primary), (prob, c)];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_normalisation() {
        let n = |s: &str| normalise_uri(s).map(|n| n.uri);
        assert_eq!(n("/").unwrap(), "/");
        assert_eq!(n("//a///b").unwrap(), "/a/b");
        assert_eq!(n("/a/./b/../c/").unwrap(), "/a/c/");
        assert_eq!(n("/a/%62c").unwrap(), "/a/bc");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert!(n("/..").is_err());
        assert!(n("/%zz").is_err());
        assert_eq!(
            normalise_uri("/p?x=1").unwrap().args.as_deref(),
            Some("x=1")
        );
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalise_host("Foo.Example.COM:8080"), "foo.example.com");
        assert_eq!(normalise_host("foo.example.com."), "foo.example.com");
        assert_eq!(normalise_host("[::1]:80"), "::1");
    }

    #[test]
    fn rewrite_captures() {
        let r = rewrite(
            "/something(/|$)(.*)",
            "/$2",
            "/something/new",
            "h",
            Scheme::Http,
        );
        assert_eq!(r, Ok(Some("/new".into())));
        let r = rewrite(
            "/something(/|$)(.*)",
            "/$2",
            "/something",
            "h",
            Scheme::Http,
        );
        assert_eq!(r, Ok(Some("/".into())));
        let r = rewrite("/a", "/b", "/x", "h", Scheme::Http);
        assert_eq!(r, Ok(None));
        assert!(rewrite("/a", "/$request_id", "/a", "h", Scheme::Http).is_err());
    }
}
