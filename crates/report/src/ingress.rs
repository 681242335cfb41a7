//! `kubepath ingress match` output: the versioned JSON schema `kubepath.ingress-match/v1`
//! (documented in docs/ingress-match.md) and the text rendering. DTOs are converted by hand
//! from [`kubepath_sim::ingress::IngressDecision`].

use serde::Serialize;

use kubepath_sim::ingress::{
    Backend, Finding, HttpRequest, IngressDecision, ServicePortRef, UpstreamEndpoint,
};

/// The schema name and version.
pub const SCHEMA: &str = "kubepath.ingress-match/v1";

/// The request as matched.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestDto {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub headers: Vec<String>,
}

/// `backend`: the Service port the request is proxied to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackendDto {
    pub namespace: String,
    pub service: String,
    /// The Service port number when the Service and port exist, otherwise the port as the
    /// Ingress names it (a number, or a string for a named port).
    pub port: serde_json::Value,
    /// The port name when the Ingress names the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Where the Service is defined, or null when it does not exist.
    pub service_source: Option<String>,
}

/// One endpoint of `upstreams`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpstreamDto {
    pub probability: f64,
    pub address: String,
    pub port: u16,
    /// "namespace/name" of the pod behind the endpoint.
    pub pod: Option<String>,
    pub node: Option<String>,
    pub via_cluster_ip: bool,
    pub source: Option<String>,
}

/// One finding.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingDto {
    pub message: String,
    pub sources: Vec<String>,
}

/// One branch of a canary split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlternativeDto {
    pub probability: f64,
    pub status: u16,
    pub backend: Option<BackendDto>,
    pub ingress: Option<String>,
    pub upstreams: Vec<UpstreamDto>,
}

/// The whole `--json` object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IngressMatchDto {
    pub schema: &'static str,
    pub request: RequestDto,
    /// The controller pods that give this answer ("namespace/pod"); empty when the snapshot has
    /// no controller pod and a generic controller was assumed.
    pub controllers: Vec<String>,
    pub status: u16,
    /// Set when the answer depends on something kubepath could not evaluate or the snapshot
    /// does not hold (a regex its engine lacks, no Services or endpoints collected): why. The
    /// other fields are then what happens if that part does not decide: a guess.
    pub unknown: Option<String>,
    pub backend: Option<BackendDto>,
    /// "namespace/name" of the Ingress whose rule decided.
    pub ingress: Option<String>,
    /// The redirect target (3xx), else null.
    pub location: Option<String>,
    /// The path (and query) the backend receives, after any rewrite.
    pub upstream_path: Option<String>,
    /// The nginx server that took the request (`_` = default server).
    pub server: Option<String>,
    /// The nginx `location` that matched.
    pub nginx_location: Option<String>,
    /// Where the deciding rule is written ("file:line").
    pub rule_source: Option<String>,
    pub upstreams: Vec<UpstreamDto>,
    /// Canary split, when a weight decides (probabilities sum to 1).
    pub alternatives: Vec<AlternativeDto>,
    pub findings: Vec<FindingDto>,
    pub notes: Vec<String>,
}

fn backend(b: &Backend) -> BackendDto {
    let (port, port_name) = match (&b.port, b.port_number) {
        (ServicePortRef::Name(n), Some(num)) => (serde_json::json!(num), Some(n.clone())),
        (ServicePortRef::Name(n), None) => (serde_json::json!(n), Some(n.clone())),
        (ServicePortRef::Number(n), _) => (serde_json::json!(n), None),
    };
    BackendDto {
        namespace: b.namespace.clone(),
        service: b.service.clone(),
        port,
        port_name,
        service_source: b.service_source.as_ref().map(|s| s.to_string()),
    }
}

fn upstream(p: f64, u: &UpstreamEndpoint) -> UpstreamDto {
    UpstreamDto {
        probability: p,
        address: u.address.clone(),
        port: u.port,
        pod: u.pod.as_ref().map(|(ns, n)| format!("{ns}/{n}")),
        node: u.node.clone(),
        via_cluster_ip: u.via_cluster_ip,
        source: u.source.as_ref().map(|s| s.to_string()),
    }
}

fn finding(f: &Finding) -> FindingDto {
    FindingDto {
        message: f.message.clone(),
        sources: f.sources.iter().map(|s| s.to_string()).collect(),
    }
}

fn ingress_name(i: &Option<(String, String)>) -> Option<String> {
    i.as_ref().map(|(ns, n)| format!("{ns}/{n}"))
}

impl IngressMatchDto {
    /// Converts a decision.
    pub fn new(req: &HttpRequest, controllers: Vec<String>, d: &IngressDecision) -> Self {
        IngressMatchDto {
            schema: SCHEMA,
            request: RequestDto {
                scheme: req.scheme.as_str().to_string(),
                host: req.host.clone(),
                port: req.port,
                path: req.path.clone(),
                headers: req
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        // Credentials play no part in the decision and are never echoed
                        // (as a URL's userinfo is not).
                        let lower = n.to_ascii_lowercase();
                        if lower == "cookie" {
                            // Cookie names decide canaries; their values are not echoed.
                            let names: Vec<String> = v
                                .split(';')
                                .map(|c| match c.trim().split_once('=') {
                                    Some((k, _)) => format!("{k}=***"),
                                    None => c.trim().to_string(),
                                })
                                .collect();
                            format!("{n}: {}", names.join("; "))
                        } else if ["auth", "token", "key", "secret", "password", "session"]
                            .iter()
                            .any(|w| lower.contains(w))
                        {
                            format!("{n}: ***")
                        } else {
                            format!("{n}: {v}")
                        }
                    })
                    .collect(),
            },
            controllers,
            status: d.status,
            unknown: d.unknown.clone(),
            backend: d.backend.as_ref().map(backend),
            ingress: ingress_name(&d.ingress),
            location: d.location.clone(),
            upstream_path: d.upstream_path.clone(),
            server: d.server.clone(),
            nginx_location: d.nginx_location.clone(),
            rule_source: d.rule_source.as_ref().map(|s| s.to_string()),
            upstreams: d.upstreams.iter().map(|(p, u)| upstream(*p, u)).collect(),
            alternatives: d
                .alternatives
                .iter()
                .map(|(p, a)| AlternativeDto {
                    probability: *p,
                    status: a.status,
                    backend: a.backend.as_ref().map(backend),
                    ingress: ingress_name(&a.ingress),
                    upstreams: a.upstreams.iter().map(|(q, u)| upstream(*q, u)).collect(),
                })
                .collect(),
            findings: d.findings.iter().map(finding).collect(),
            notes: d.notes.clone(),
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The text rendering (control characters escaped).
    pub fn render_text(&self) -> String {
        crate::escape_controls(&crate::escaped(self).render_text_raw()).into_owned()
    }

    fn render_text_raw(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let r = &self.request;
        let _ = writeln!(
            s,
            "GET {}://{}{} (port {})",
            r.scheme, r.host, r.path, r.port
        );
        for h in &r.headers {
            let _ = writeln!(s, "  {h}");
        }
        let ctrl = if self.controllers.is_empty() {
            "no controller pod in the snapshot (generic ingress-nginx assumed)".to_string()
        } else {
            self.controllers.join(", ")
        };
        let _ = writeln!(s, "controller     {ctrl}");
        let what = match self.status {
            200 => "proxied",
            301 | 302 | 307 | 308 => "redirect",
            400 => "bad request",
            404 => "not found",
            503 => "no endpoints",
            _ => "",
        };
        match &self.unknown {
            Some(why) => {
                let _ = writeln!(s, "status         UNKNOWN: {why}");
                let _ = writeln!(
                    s,
                    "               (if that does not decide: {} {what}; the lines below assume so)",
                    self.status
                );
            }
            None => {
                let _ = writeln!(s, "status         {} ({what})", self.status);
            }
        }
        if let Some(i) = &self.ingress {
            let _ = writeln!(
                s,
                "ingress        {i}{}",
                self.rule_source
                    .as_ref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            );
        }
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "server         {sv}{}",
                self.nginx_location
                    .as_ref()
                    .map(|l| format!(", {l}"))
                    .unwrap_or_default()
            );
        }
        if let Some(b) = &self.backend {
            let port = match &b.port {
                serde_json::Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(s, "backend        {}/{}:{port}", b.namespace, b.service);
        }
        if let Some(l) = &self.location {
            let _ = writeln!(s, "location       {l}");
        }
        if let Some(p) = &self.upstream_path {
            let _ = writeln!(s, "upstream path  {p}");
        }
        for (k, u) in self.upstreams.iter().enumerate() {
            let _ = writeln!(
                s,
                "{}{:.4}  {}:{}{}{}",
                if k == 0 {
                    "upstreams      "
                } else {
                    "               "
                },
                u.probability,
                u.address,
                u.port,
                u.pod
                    .as_ref()
                    .map(|p| format!("  pod {p}"))
                    .unwrap_or_default(),
                u.node
                    .as_ref()
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default()
            );
        }
        for a in &self.alternatives {
            let b = a
                .backend
                .as_ref()
                .map(|b| format!("{}/{}:{}", b.namespace, b.service, b.port))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "canary split   {:.4}  {} {b} (ingress {})",
                a.probability,
                a.status,
                a.ingress.as_deref().unwrap_or("-")
            );
        }
        for f in &self.findings {
            let _ = writeln!(s, "FINDING        {} [{}]", f.message, f.sources.join(", "));
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "why:");
            for n in &self.notes {
                let _ = writeln!(s, "  - {n}");
            }
        }
        s
    }
}

// Single-line strings for the text renderers (`crate::EscapeData`).
crate::escape_fields!(RequestDto {
    scheme,
    host,
    port,
    path,
    headers
});
crate::escape_fields!(BackendDto {
    namespace,
    service,
    port,
    port_name,
    service_source
});
crate::escape_fields!(UpstreamDto {
    probability,
    address,
    port,
    pod,
    node,
    via_cluster_ip,
    source
});
crate::escape_fields!(FindingDto { message, sources });
crate::escape_fields!(AlternativeDto {
    probability,
    status,
    backend,
    ingress,
    upstreams
});
crate::escape_fields!(IngressMatchDto {
    schema,
    request,
    controllers,
    status,
    unknown,
    backend,
    ingress,
    location,
    upstream_path,
    server,
    nginx_location,
    rule_source,
    upstreams,
    alternatives,
    findings,
    notes
});
