//! ingress-nginx configuration (nginx.conf).
//!
//! What the controller generated for its Ingresses: `server` blocks by host name, their
//! `listen` sockets and `location`s with the `set $namespace / $ingress_name / $service_name /
//! $service_port / $location_path / $proxy_upstream_name` lines that say which backend serves
//! them.

use crate::SourceRef;

/// One nginx.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxConf {
    /// (namespace, pod) of the controller pod it was taken from; None = applies to every
    /// controller pod.
    pub pod: Option<(String, String)>,
    pub servers: Vec<Server>,
    pub upstreams: Vec<Upstream>,
    /// Top-level `proxy_next_upstream*` and similar http-level directives of interest are not
    /// kept here; per-location ones are in [`Location::directives`].
    pub source: SourceRef,
}

impl NginxConf {
    /// The server nginx picks for `host` on `port` (nginx's server selection among the servers
    /// listening on that port: exact name, longest leading wildcard `*.example.com`, longest
    /// trailing wildcard `mail.*`, first matching regex `~...` in file order, then the
    /// `default_server` of the port, else the first server listening on it; see
    /// <https://nginx.org/en/docs/http/request_processing.html> and
    /// <https://nginx.org/en/docs/http/server_names.html>). Regular-expression names are not
    /// evaluated here: a host that would need one returns the regex server with
    /// `needs_regex = true` only if no exact or wildcard name matched.
    pub fn select_server(&self, host: &str, port: u16) -> Option<(&Server, ServerMatch)> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let on_port: Vec<&Server> = self
            .servers
            .iter()
            .filter(|s| s.listens.iter().any(|l| l.port == Some(port)))
            .collect();
        if let Some(s) = on_port
            .iter()
            .find(|s| s.names.iter().any(|n| n.eq_ignore_ascii_case(&host)))
        {
            return Some((s, ServerMatch::Exact));
        }
        let mut best: Option<(&Server, usize)> = None;
        for s in &on_port {
            for n in &s.names {
                let n = n.to_ascii_lowercase();
                let len = if let Some(suffix) = n.strip_prefix("*.") {
                    (host.ends_with(&format!(".{suffix}"))).then_some(suffix.len() + 1)
                } else if let Some(suffix) = n.strip_prefix('.') {
                    // ".example.com" matches example.com and *.example.com
                    (host == suffix || host.ends_with(&format!(".{suffix}")))
                        .then_some(suffix.len())
                } else {
                    None
                };
                if let Some(len) = len {
                    if best.is_none_or(|(_, l)| len > l) {
                        best = Some((s, len));
                    }
                }
            }
        }
        if let Some((s, _)) = best {
            return Some((s, ServerMatch::LeadingWildcard));
        }
        // The longest matching trailing wildcard wins.
        let mut best_trailing: Option<(&Server, usize)> = None;
        for s in &on_port {
            for n in &s.names {
                if let Some(prefix) = n.strip_suffix(".*") {
                    if host.starts_with(&format!("{}.", prefix.to_ascii_lowercase()))
                        && best_trailing.is_none_or(|(_, l)| prefix.len() > l)
                    {
                        best_trailing = Some((s, prefix.len()));
                    }
                }
            }
        }
        if let Some((s, _)) = best_trailing {
            return Some((s, ServerMatch::TrailingWildcard));
        }
        if let Some(s) = on_port
            .iter()
            .find(|s| s.names.iter().any(|n| n.starts_with('~')))
        {
            return Some((s, ServerMatch::RegexNotEvaluated));
        }
        if let Some(s) = on_port.iter().find(|s| {
            s.listens
                .iter()
                .any(|l| l.port == Some(port) && l.default_server)
        }) {
            return Some((s, ServerMatch::DefaultServer));
        }
        on_port.first().map(|s| (*s, ServerMatch::FirstOnPort))
    }
}

/// How [`NginxConf::select_server`] chose a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMatch {
    Exact,
    LeadingWildcard,
    TrailingWildcard,
    /// A server with a regex name exists and no exact/wildcard name matched: whether the regex
    /// matches was not evaluated.
    RegexNotEvaluated,
    DefaultServer,
    FirstOnPort,
}

/// One `server { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The name of the `## start server NAME` marker ingress-nginx writes before it.
    pub marker: Option<String>,
    /// `server_name` values (`_`, `*.example.com`, `~^regex$` kept verbatim).
    pub names: Vec<String>,
    pub listens: Vec<Listen>,
    pub locations: Vec<Location>,
    pub source: SourceRef,
}

/// One `listen` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Address part (`0.0.0.0`, `[::]`, `127.0.0.1`, `unix:/path`); None = all addresses.
    pub address: Option<String>,
    /// None for a unix socket.
    pub port: Option<u16>,
    pub default_server: bool,
    pub ssl: bool,
    pub proxy_protocol: bool,
    pub http2: bool,
    /// Other parameters (`reuseport`, `backlog=511`, `ipv6only=off` ...).
    pub params: Vec<String>,
    pub source: SourceRef,
}

/// Location modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationModifier {
    /// No modifier: prefix match.
    Prefix,
    /// `=`: exact match.
    Exact,
    /// `^~`: prefix match that stops regex search.
    PrefixNoRegex,
    /// `~`: case-sensitive regex.
    Regex,
    /// `~*`: case-insensitive regex.
    RegexCaseInsensitive,
}

/// One `location` (nested locations are flattened into the server's list with `parent` set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub modifier: LocationModifier,
    pub path: String,
    /// Index in the server's `locations` of the enclosing location, for nested ones.
    pub parent: Option<usize>,
    /// `set $namespace "..."` etc. as ingress-nginx writes them.
    pub namespace: Option<String>,
    pub ingress_name: Option<String>,
    pub service_name: Option<String>,
    pub service_port: Option<String>,
    pub location_path: Option<String>,
    pub proxy_upstream_name: Option<String>,
    /// `return CODE [TEXT|URL]`.
    pub returns: Vec<Return>,
    pub rewrites: Vec<Rewrite>,
    /// From the `rewrite_by_lua_block`: `ssl_redirect = true|false`.
    pub ssl_redirect: Option<bool>,
    /// From the `rewrite_by_lua_block`: `force_ssl_redirect = true|false`.
    pub force_ssl_redirect: Option<bool>,
    /// Other simple directives of the location, verbatim (name, args), e.g.
    /// `proxy_next_upstream error timeout`, `proxy_pass http://upstream_balancer`.
    pub directives: Vec<(String, Vec<String>)>,
    pub source: SourceRef,
}

/// `return CODE [TEXT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    /// None for the `return URL` form (302).
    pub code: Option<u16>,
    pub text: Option<String>,
}

/// `rewrite REGEX REPLACEMENT [FLAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub regex: String,
    pub replacement: String,
    pub flag: Option<String>,
}

/// One `upstream NAME { ... }` (ingress-nginx has one: `upstream_balancer`, balanced in Lua).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// `server ADDR ...` entries verbatim (ingress-nginx's `0.0.0.1` placeholder included).
    pub servers: Vec<String>,
    /// A `balancer_by_lua_block` chooses the peer at run time.
    pub lua_balancer: bool,
    pub source: SourceRef,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(names: &[&str], port: u16, default: bool) -> Server {
        Server {
            marker: None,
            names: names.iter().map(|s| s.to_string()).collect(),
            listens: vec![Listen {
                address: None,
                port: Some(port),
                default_server: default,
                ssl: false,
                proxy_protocol: false,
                http2: false,
                params: vec![],
                source: SourceRef::new("n", 1),
            }],
            locations: vec![],
            source: SourceRef::new("n", 1),
        }
    }

    #[test]
    fn server_selection_order() {
        let c = NginxConf {
            pod: None,
            servers: vec![
                server(&["_"], 80, true),
                server(&["*.example.com"], 80, false),
                server(&["*.app.example.com"], 80, false),
                server(&["www.example.com"], 80, false),
                server(&["mail.*"], 80, false),
                server(&["mail.example.*"], 80, false),
            ],
            upstreams: vec![],
            source: SourceRef::new("n", 0),
        };
        let pick = |h: &str| c.select_server(h, 80).map(|(s, m)| (s.names[0].clone(), m));
        assert_eq!(
            pick("WWW.example.com"),
            Some(("www.example.com".into(), ServerMatch::Exact))
        );
        assert_eq!(
            pick("a.app.example.com"),
            Some(("*.app.example.com".into(), ServerMatch::LeadingWildcard))
        );
        assert_eq!(
            pick("b.example.com"),
            Some(("*.example.com".into(), ServerMatch::LeadingWildcard))
        );
        assert_eq!(
            pick("mail.example.org"),
            Some(("mail.example.*".into(), ServerMatch::TrailingWildcard))
        );
        assert_eq!(
            pick("mail.other.org"),
            Some(("mail.*".into(), ServerMatch::TrailingWildcard))
        );
        assert_eq!(
            pick("other.org"),
            Some(("_".into(), ServerMatch::DefaultServer))
        );
        assert_eq!(c.select_server("x", 443), None);
    }
}
