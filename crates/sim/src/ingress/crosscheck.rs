//! Cross-check of a decision against the nginx.conf taken in the controller pod: the server for
//! the host exists, and the location that matched proxies to the same namespace, Service and
//! port. A disagreement means the controller's running configuration is not what the Ingress
//! objects say (stale configuration, another controller version, or a snapshot taken at
//! different times).

use super::config::{Config, Rendered};
use super::controller::ControllerRef;
use super::world::{LocationModifier, NginxConfObj, NginxLocationObj, World};
use super::{Finding, IngressDecision};

fn confs_for<'w>(world: &'w World, controller: &ControllerRef) -> Vec<&'w NginxConfObj> {
    let own: Vec<&NginxConfObj> = world
        .nginx
        .iter()
        .filter(|c| c.pod.is_some() && c.pod == controller.pod)
        .collect();
    if !own.is_empty() {
        return own;
    }
    world.nginx.iter().filter(|c| c.pod.is_none()).collect()
}

/// Does the nginx.conf location `l` render the same `location` line as `r`?
pub(crate) fn same_location(l: &NginxLocationObj, r: &Rendered) -> bool {
    let strip = |s: &str| s.trim_matches('"').to_string();
    match r {
        Rendered::Exact(p) => l.modifier == LocationModifier::Exact && strip(&l.path) == *p,
        Rendered::Prefix(p) => {
            matches!(
                l.modifier,
                LocationModifier::Prefix | LocationModifier::PrefixNoRegex
            ) && strip(&l.path) == *p
        }
        Rendered::Regex(p) => {
            l.modifier == LocationModifier::RegexCaseless && strip(&l.path) == format!("^{p}")
        }
    }
}

pub(crate) fn server_name_matches(names: &[String], hostname: &str) -> bool {
    names.iter().any(|n| {
        let n = n.trim_matches('"');
        if n.eq_ignore_ascii_case(hostname) {
            return true;
        }
        // A wildcard host as buildServerName renders it: `~^(?<subdomain>[\w-]+)\.example\.com$`.
        if let Some(suffix) = hostname.strip_prefix("*.") {
            let escaped = suffix.replace('.', "\\.");
            return n.starts_with('~') && n.ends_with(&format!("\\.{escaped}$"));
        }
        false
    })
}

/// Could the nginx.conf server `names` take `host`? An exact name, a `*.` wildcard covering
/// it, or a regex name (`~...`, which kubepath does not evaluate, so it may).
fn server_may_take(names: &[String], host: &str) -> bool {
    !host.is_empty()
        && names.iter().any(|n| {
            let n = n.trim_matches('"');
            if n.eq_ignore_ascii_case(host) {
                return true;
            }
            // buildServerName's wildcard: `~^(?<subdomain>[\w-]+)\.example\.com$`.
            if let Some(suffix) = n
                .strip_prefix("~^(?<subdomain>[\\w-]+)\\.")
                .and_then(|r| r.strip_suffix('$'))
            {
                let suffix = suffix.replace("\\.", ".").to_ascii_lowercase();
                let host = host.to_ascii_lowercase();
                return host.strip_suffix(&suffix).is_some_and(|label| {
                    label.strip_suffix('.').is_some_and(|l| {
                        !l.is_empty()
                            && l.chars()
                                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                    })
                });
            }
            n.starts_with('~')
                || n.strip_prefix("*.").is_some_and(|suffix| {
                    host.to_ascii_lowercase()
                        .ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
                })
        })
}

/// The snapshot holds no Ingress objects and the decision fell to the default server `_`: the
/// 404 is only a fact if the controller's running configuration agrees. An nginx.conf that has
/// no server which could take the host says so (its default server answers, as decided); one
/// that has such a server routes the request by an Ingress the snapshot does not hold, and
/// without nginx.conf nothing says whether one exists: the answer is unknown, naming what to
/// collect.
fn uncollected_ingresses(confs: &[&NginxConfObj], host: &str, d: &mut IngressDecision) {
    const COLLECT: &str = "collect `kubectl get ingresses -A -o yaml`";
    if confs.is_empty() {
        d.unknown = Some(format!(
            "the snapshot holds no Ingress objects and no nginx.conf of this controller, so whether any Ingress serves {host:?} is unknown ({COLLECT}, or the controller's nginx.conf)"
        ));
        return;
    }
    for conf in confs {
        if let Some(s) = conf
            .servers
            .iter()
            .find(|s| server_may_take(&s.names, host))
        {
            let pod = conf
                .pod
                .as_ref()
                .map(|(ns, p)| format!("pod {ns}/{p}"))
                .unwrap_or_else(|| "the controller".to_string());
            d.unknown = Some(format!(
                "the snapshot holds no Ingress objects, but nginx.conf in {pod} has a server for {host:?} ({}): the Ingress that routes it is not in the snapshot ({COLLECT})",
                s.source
            ));
            return;
        }
    }
    d.notes.push(format!(
        "the snapshot holds no Ingress objects; the controller's nginx.conf ({}) has no server for {host:?}, so its default server answers",
        confs
            .iter()
            .map(|c| c.source.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

/// Adds findings to `d` where the controller's nginx.conf disagrees with it.
pub fn check(
    world: &World,
    controller: &ControllerRef,
    cfg: &Config,
    host: &str,
    rendered: Option<&Rendered>,
    d: &mut IngressDecision,
) {
    if let (Some((file, why)), None) = (&world.ingress_left_out, &d.unknown) {
        // A cluster file left out may hold an Ingress for this host (a longer path, another
        // backend, the only rule for it): the decision without it is a guess (issue #11).
        d.unknown = Some(format!(
            "{file} was left out ({why}) and may hold Ingress objects that route {host:?}, so ingress-nginx's answer is unknown"
        ));
        return;
    }
    let confs = confs_for(world, controller);
    if !world.ingresses_collected && d.unknown.is_none() && d.server.as_deref() == Some("_") {
        uncollected_ingresses(&confs, host, d);
        return;
    }
    if confs.is_empty() {
        return;
    }
    let Some(server_name) = d.server.clone() else {
        return;
    };
    for conf in confs {
        let pod = conf
            .pod
            .as_ref()
            .map(|(ns, p)| format!("{ns}/{p}"))
            .unwrap_or_else(|| "every controller pod".to_string());
        let ing_src = d.rule_source.clone();
        let ing_name = d
            .ingress
            .as_ref()
            .map(|(ns, n)| format!("Ingress {ns}/{n}"))
            .unwrap_or_else(|| "the Ingress objects".to_string());
        if server_name == "_" {
            // The Ingresses define no server for this host: does the running config?
            if let Some(s) = conf
                .servers
                .iter()
                .find(|s| !host.is_empty() && s.names.iter().any(|n| n.trim_matches('"') == host))
            {
                d.findings.push(Finding {
                    message: format!(
                        "nginx.conf in pod {pod} has a server for {host}, but no Ingress this controller serves defines it (stale configuration?)"
                    ),
                    sources: vec![s.source.clone()],
                });
            }
            continue;
        }
        let Some(server) = conf
            .servers
            .iter()
            .find(|s| server_name_matches(&s.names, &server_name))
        else {
            d.findings.push(Finding {
                message: format!(
                    "nginx.conf in pod {pod} has no server for {server_name}, which {ing_name} defines (stale configuration?)"
                ),
                sources: [Some(conf.source.clone()), ing_src.clone()]
                    .into_iter()
                    .flatten()
                    .collect(),
            });
            continue;
        };
        let Some(rendered) = rendered else { continue };
        let line = d
            .nginx_location
            .clone()
            .unwrap_or_else(|| rendered.to_string());
        let Some(loc) = server.locations.iter().find(|l| same_location(l, rendered)) else {
            d.findings.push(Finding {
                message: format!(
                    "nginx.conf in pod {pod} disagrees with {ing_name}: server {server_name} has no `{line}` (stale configuration?)"
                ),
                sources: [Some(server.source.clone()), ing_src.clone()]
                    .into_iter()
                    .flatten()
                    .collect(),
            });
            continue;
        };
        d.notes.push(format!(
            "nginx.conf in pod {pod} has `{line}` for {server_name} at {}",
            loc.source
        ));
        let Some(b) = &d.backend else { continue };
        let want = (b.namespace.as_str(), b.service.as_str(), b.port.to_string());
        let have = (
            loc.namespace.as_deref().unwrap_or(""),
            loc.service_name.as_deref().unwrap_or(""),
            loc.service_port.clone().unwrap_or_default(),
        );
        // The controller's own default backend is `upstream-default-backend`, without a
        // Service in the location.
        if have.1.is_empty() && d.status == 404 {
            continue;
        }
        if want.0 != have.0 || want.1 != have.1 || want.2 != have.2 {
            d.findings.push(Finding {
                message: format!(
                    "nginx.conf in pod {pod} disagrees with {ing_name}: `{line}` of {server_name} proxies to {}/{}:{} but the Ingress says {}/{}:{} (stale configuration?)",
                    have.0, have.1, have.2, want.0, want.1, want.2
                ),
                sources: [Some(loc.source.clone()), ing_src.clone()]
                    .into_iter()
                    .flatten()
                    .collect(),
            });
        }
    }
    let _ = cfg;
}
