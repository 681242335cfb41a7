//! Lowers the snapshot model into the matcher's [`World`].

use kubepath_model::k8s::{
    Cluster, ConfigMap, EndpointSet, Ingress, IngressBackend, IngressClassSource, Pod, PortRef,
    Service,
};
use kubepath_model::nginx::LocationModifier as NgxMod;
use kubepath_model::nginx::NginxConf;
use kubepath_model::Model;

use super::world::*;

fn port_u16(p: i32) -> Option<u16> {
    u16::try_from(p).ok()
}

fn backend(b: &IngressBackend, source: Option<kubepath_model::SourceRef>) -> BackendRef {
    match b {
        IngressBackend::Service { name, port } => BackendRef {
            service: Some(name.clone()),
            port: Some(match port {
                PortRef::Number(n) => ServicePortRef::Number(port_u16(*n).unwrap_or(0)),
                PortRef::Name(s) => ServicePortRef::Name(s.clone()),
            }),
            source,
        },
        IngressBackend::Resource { .. } => BackendRef {
            service: None,
            port: None,
            source,
        },
    }
}

fn path_type(s: Option<&str>, notes: &mut Vec<String>, what: &str) -> Option<PathType> {
    match s? {
        "Exact" => Some(PathType::Exact),
        "Prefix" => Some(PathType::Prefix),
        "ImplementationSpecific" => Some(PathType::ImplementationSpecific),
        other => {
            notes.push(format!(
                "{what}: unknown pathType {other:?}; the API server would reject it, treated as ImplementationSpecific"
            ));
            Some(PathType::ImplementationSpecific)
        }
    }
}

/// Lowers `model`.
pub fn lower(model: &Model) -> World {
    let c = &model.cluster;
    let mut w = World {
        services_collected: c.collected.contains("Service"),
        endpoints_collected: c.collected.contains("Endpoints")
            || c.collected.contains("EndpointSlice"),
        ingresses_collected: c.collected.contains("Ingress") || !c.ingresses.is_empty(),
        ingress_left_out: c
            .left_out_with("Ingress")
            .map(|(p, why)| (p.to_string(), why.to_string())),
        services_left_out: c
            .left_out_with("Service")
            .map(|(p, why)| (p.to_string(), why.to_string())),
        endpoints_left_out: c
            .left_out_with("Endpoints")
            .or_else(|| c.left_out_with("EndpointSlice"))
            .map(|(p, why)| (p.to_string(), why.to_string())),
        ..World::default()
    };
    for ing in &c.ingresses {
        let obj = lower_ingress(ing, &mut w.notes);
        w.ingresses.push(obj);
    }
    for ic in c.ingress_classes.values() {
        w.classes.push(IngressClassObj {
            name: ic.name.clone(),
            controller: ic.controller.clone().unwrap_or_default(),
            is_default: ic.is_default,
            source: ic.source.clone(),
        });
    }
    let endpoint_sets = c.endpoints_by_service();
    let all_sets = c.endpoint_sets_by_service();
    for svc in c.services.values() {
        w.services.push(lower_service(svc, all_sets.get(&svc.key)));
        // The endpoint sets ingress-nginx would read for this Service: its slices, else its
        // Endpoints (the model's `endpoints_of` picks them).
        for set in endpoint_sets.get(&svc.key).into_iter().flatten() {
            w.slices.push(lower_endpoint_set(svc, set));
        }
    }
    w.pods.extend(c.pods.iter().map(lower_pod));
    w.config_maps
        .extend(c.config_maps.iter().map(lower_config_map));
    w.nginx.extend(model.nginx.iter().map(lower_nginx));
    w.index_slices();
    w
}

/// An Ingress as ingress-nginx reads it; `notes` gets what its pathTypes make doubtful.
fn lower_ingress(ing: &Ingress, notes: &mut Vec<String>) -> IngressObj {
    let key = ing.key.to_string();
    let class_name = match ing.class_source {
        Some(IngressClassSource::Field) => ing.class.clone(),
        _ => None,
    };
    let rules = ing
        .rules
        .iter()
        .map(|r| RuleObj {
            host: r.host.clone().filter(|h| !h.is_empty()),
            paths: Some(
                r.paths
                    .iter()
                    .map(|p| PathRule {
                        path: p.path.clone(),
                        path_type: path_type(p.path_type.as_deref(), notes, &key),
                        backend: backend(&p.backend, Some(p.source.clone())),
                        source: Some(p.source.clone()),
                    })
                    .collect(),
            ),
            source: Some(r.source.clone()),
        })
        .collect();
    IngressObj {
        namespace: ing.key.namespace.clone(),
        name: ing.key.name.clone(),
        api_version: ing.api_version.clone(),
        creation_timestamp: None,
        class_name,
        annotations: ing.annotations.clone(),
        default_backend: ing
            .default_backend
            .as_ref()
            .map(|b| backend(b, Some(ing.source.clone()))),
        rules,
        tls: ing
            .tls
            .iter()
            .map(|t| TlsObj {
                hosts: t.hosts.clone(),
                secret_name: t.secret_name.clone(),
                source: Some(ing.source.clone()),
            })
            .collect(),
        source: ing.source.clone(),
    }
}

/// A Service as ingress-nginx reads it.
/// `sets`: every endpoint set naming `svc` ([`Cluster::endpoint_sets_by_service`]).
fn lower_service(svc: &Service, sets: Option<&Vec<&EndpointSet>>) -> ServiceObj {
    ServiceObj {
        namespace: svc.key.namespace.clone(),
        name: svc.key.name.clone(),
        type_: svc.type_.to_string(),
        cluster_ip: if svc.headless {
            Some("None".to_string())
        } else {
            svc.cluster_ips.first().map(|ip| ip.to_string())
        },
        external_name: svc.external_name.clone(),
        ports: svc
            .ports
            .iter()
            .filter_map(|p| {
                Some(ServicePortObj {
                    name: p.name.clone(),
                    protocol: p.protocol.clone(),
                    port: port_u16(p.port)?,
                    target_port: p.target_port.as_ref().and_then(|t| match t {
                        PortRef::Number(n) => port_u16(*n).map(TargetPort::Number),
                        PortRef::Name(s) => Some(TargetPort::Name(s.clone())),
                    }),
                    source: Some(p.source.clone()),
                })
            })
            .collect(),
        source: svc.source.clone(),
        endpoint_doubt: Cluster::endpoint_sets_disagree(
            &svc.key,
            sets.into_iter().flatten().copied(),
        ),
    }
}

/// One endpoint set (a slice, or the Endpoints) of `svc` as ingress-nginx reads it.
fn lower_endpoint_set(svc: &Service, set: &EndpointSet) -> EndpointSliceObj {
    EndpointSliceObj {
        namespace: svc.key.namespace.clone(),
        service: svc.key.name.clone(),
        ports: set
            .ports
            .iter()
            .map(|p| SlicePort {
                name: p.name.clone(),
                port: p.port.and_then(port_u16),
                protocol: p.protocol.clone(),
            })
            .collect(),
        endpoints: set
            .endpoints
            .iter()
            .map(|e| SliceEndpoint {
                addresses: e.addresses.clone(),
                ready: e.ready,
                pod: e.target_ref.as_ref().and_then(|t| {
                    if t.kind.as_deref().is_some_and(|k| k != "Pod") {
                        return None;
                    }
                    Some((
                        t.namespace
                            .clone()
                            .unwrap_or_else(|| svc.key.namespace.clone()),
                        t.name.clone()?,
                    ))
                }),
                node: e.node_name.clone(),
                source: Some(e.source.clone()),
            })
            .collect(),
        source: set.source.clone(),
    }
}

/// A Pod (the controllers' containers, the endpoints' pods).
fn lower_pod(pod: &Pod) -> PodObj {
    PodObj {
        namespace: pod.key.namespace.clone(),
        name: pod.key.name.clone(),
        labels: pod.labels.clone(),
        node: pod.node_name.clone(),
        ips: pod.pod_ips.clone(),
        containers: pod
            .containers
            .iter()
            .map(|ct| ContainerObj {
                name: ct.name.clone(),
                image: ct.image.clone().unwrap_or_default(),
                command: ct.command.clone(),
                args: ct.args.clone(),
            })
            .collect(),
        source: pod.source.clone(),
    }
}

/// A ConfigMap, with the line of each key.
fn lower_config_map(cm: &ConfigMap) -> ConfigMapObj {
    ConfigMapObj {
        namespace: cm.key.namespace.clone(),
        name: cm.key.name.clone(),
        data: cm.data.clone(),
        lines: cm
            .data_lines
            .iter()
            .map(|(k, l)| {
                (
                    k.clone(),
                    kubepath_model::SourceRef::new(cm.source.file.clone(), *l),
                )
            })
            .collect(),
        source: cm.source.clone(),
    }
}

/// A controller pod's rendered nginx.conf: its servers and locations.
fn lower_nginx(conf: &NginxConf) -> NginxConfObj {
    NginxConfObj {
        pod: conf.pod.clone(),
        servers: conf
            .servers
            .iter()
            .map(|s| NginxServerObj {
                names: s.names.clone(),
                locations: s
                    .locations
                    .iter()
                    .map(|l| NginxLocationObj {
                        modifier: match l.modifier {
                            NgxMod::Prefix => LocationModifier::Prefix,
                            NgxMod::Exact => LocationModifier::Exact,
                            NgxMod::PrefixNoRegex => LocationModifier::PrefixNoRegex,
                            NgxMod::Regex => LocationModifier::Regex,
                            NgxMod::RegexCaseInsensitive => LocationModifier::RegexCaseless,
                        },
                        path: l.path.clone(),
                        namespace: l.namespace.clone(),
                        ingress_name: l.ingress_name.clone(),
                        service_name: l.service_name.clone(),
                        service_port: l.service_port.clone(),
                        source: l.source.clone(),
                    })
                    .collect(),
                source: s.source.clone(),
            })
            .collect(),
        source: conf.source.clone(),
    }
}
