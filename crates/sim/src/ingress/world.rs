//! The small, self-contained representation the matcher works on ("the world").
//!
//! It holds exactly what ingress-nginx reads from the API server (Ingresses, IngressClasses,
//! Services, EndpointSlices, the controller pods) plus the nginx.conf files of the snapshot. It is
//! lowered from [`kubepath_model::Model`] by one function ([`super::lower`]), and unit tests build
//! it directly, so the matching semantics can be tested without YAML.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kubepath_model::SourceRef;

/// Everything the ingress matcher needs.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub ingresses: Vec<IngressObj>,
    pub classes: Vec<IngressClassObj>,
    pub services: Vec<ServiceObj>,
    pub slices: Vec<EndpointSliceObj>,
    pub pods: Vec<PodObj>,
    /// nginx.conf files taken in controller pods.
    pub nginx: Vec<NginxConfObj>,
    /// ConfigMaps (the controllers' `--configmap`).
    pub config_maps: Vec<ConfigMapObj>,
    /// Problems met while lowering the model (unsupported objects, missing fields).
    pub notes: Vec<String>,
    /// Whether the snapshot holds Services, and Endpoints or EndpointSlices (see
    /// `Cluster::collected`): without them a missing Service or endpoint is unknown, not a 503.
    pub services_collected: bool,
    pub endpoints_collected: bool,
    /// Whether the snapshot holds Ingress objects (or an empty `IngressList`): without them a
    /// host no Ingress defines is not known to be unserved (the controller's nginx.conf may
    /// serve it), so the default server's 404 is not a fact.
    pub ingresses_collected: bool,
    /// A cluster file left out that may hold Ingress objects (path, why): any decision may
    /// be changed by what it holds, so it is unknown.
    pub ingress_left_out: Option<(String, String)>,
    /// The same for Services, and for Endpoints/EndpointSlices: a Service or endpoint not in
    /// the snapshot may be in the left-out file, so "no such Service" / "no endpoints" (503)
    /// is unknown, naming it (issue #11).
    pub services_left_out: Option<(String, String)>,
    pub endpoints_left_out: Option<(String, String)>,
    /// `slices` by (namespace, Service), in their order: set by `lower` once `slices` is
    /// complete. Used only while `slices` still has the length it was built for (a world built
    /// or changed by hand is scanned instead).
    pub slice_index: SliceIndex,
}

/// See [`World::slice_index`].
#[derive(Debug, Clone, Default)]
pub struct SliceIndex {
    pub len: usize,
    pub by_service: std::collections::HashMap<(String, String), Vec<usize>>,
}

impl World {
    /// The slices of Service `name` in `namespace`, in order (issue #15: a scan of every slice
    /// per upstream made one trace grow with the cluster).
    pub fn slices_of<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> Box<dyn Iterator<Item = &'a EndpointSliceObj> + 'a> {
        if self.slice_index.len == self.slices.len() {
            let ix = self
                .slice_index
                .by_service
                .get(&(namespace.to_string(), name.to_string()));
            Box::new(
                ix.into_iter()
                    .flatten()
                    .filter_map(|&i| self.slices.get(i))
                    .filter(move |s| s.namespace == namespace && s.service == name),
            )
        } else {
            Box::new(
                self.slices
                    .iter()
                    .filter(move |s| s.namespace == namespace && s.service == name),
            )
        }
    }

    /// Builds [`World::slice_index`] for `slices` as they are.
    pub fn index_slices(&mut self) {
        let mut by_service: std::collections::HashMap<(String, String), Vec<usize>> =
            std::collections::HashMap::new();
        for (i, s) in self.slices.iter().enumerate() {
            by_service
                .entry((s.namespace.clone(), s.service.clone()))
                .or_default()
                .push(i);
        }
        self.slice_index = SliceIndex {
            len: self.slices.len(),
            by_service,
        };
    }
}

/// `spec.rules[].http.paths[].pathType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

impl PathType {
    pub fn as_str(self) -> &'static str {
        match self {
            PathType::Exact => "Exact",
            PathType::Prefix => "Prefix",
            PathType::ImplementationSpecific => "ImplementationSpecific",
        }
    }
}

/// A Service port as an Ingress backend names it: `port.number` / `servicePort: 80`, or
/// `port.name` / `servicePort: http`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServicePortRef {
    Number(u16),
    Name(String),
}

impl std::fmt::Display for ServicePortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServicePortRef::Number(n) => write!(f, "{n}"),
            ServicePortRef::Name(s) => f.write_str(s),
        }
    }
}

/// An Ingress backend: a Service and port, or a non-Service `resource` backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendRef {
    /// `None` for a `resource` backend (ingress-nginx skips those).
    pub service: Option<String>,
    pub port: Option<ServicePortRef>,
    pub source: Option<SourceRef>,
}

/// One `spec.rules[].http.paths[]` entry.
#[derive(Debug, Clone)]
pub struct PathRule {
    /// `None` or empty: ingress-nginx uses `/` (store.go, `syncIngress`).
    pub path: Option<String>,
    /// `None` when the object did not say (extensions/v1beta1 often does not).
    pub path_type: Option<PathType>,
    pub backend: BackendRef,
    pub source: Option<SourceRef>,
}

/// One `spec.rules[]` entry.
#[derive(Debug, Clone)]
pub struct RuleObj {
    /// `None` or empty: the rule applies to every host (ingress-nginx's default server `_`).
    pub host: Option<String>,
    /// `None` when the rule has no `http` section.
    pub paths: Option<Vec<PathRule>>,
    pub source: Option<SourceRef>,
}

/// One `spec.tls[]` entry.
#[derive(Debug, Clone)]
pub struct TlsObj {
    pub hosts: Vec<String>,
    pub secret_name: Option<String>,
    pub source: Option<SourceRef>,
}

/// An Ingress of any API version, normalised.
#[derive(Debug, Clone)]
pub struct IngressObj {
    pub namespace: String,
    pub name: String,
    /// The apiVersion it was read as (for notes only).
    pub api_version: String,
    /// `metadata.creationTimestamp` (RFC 3339 text; ingress-nginx orders Ingresses by it).
    pub creation_timestamp: Option<String>,
    /// `spec.ingressClassName`.
    pub class_name: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.defaultBackend` (v1) / `spec.backend` (v1beta1).
    pub default_backend: Option<BackendRef>,
    pub rules: Vec<RuleObj>,
    pub tls: Vec<TlsObj>,
    pub source: SourceRef,
}

impl IngressObj {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.get(name).map(|s| s.as_str())
    }
}

/// An IngressClass.
#[derive(Debug, Clone)]
pub struct IngressClassObj {
    pub name: String,
    pub controller: String,
    /// `ingressclass.kubernetes.io/is-default-class: "true"`.
    pub is_default: bool,
    pub source: SourceRef,
}

/// `targetPort`: a number or a container port name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

impl std::fmt::Display for TargetPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(s) => f.write_str(s),
        }
    }
}

/// One Service port.
#[derive(Debug, Clone)]
pub struct ServicePortObj {
    pub name: Option<String>,
    pub protocol: String,
    pub port: u16,
    /// `None`: defaults to `port`.
    pub target_port: Option<TargetPort>,
    pub source: Option<SourceRef>,
}

impl ServicePortObj {
    /// The effective targetPort (defaults to `port`).
    pub fn target(&self) -> TargetPort {
        self.target_port
            .clone()
            .unwrap_or(TargetPort::Number(self.port))
    }
}

/// A Service.
#[derive(Debug, Clone)]
pub struct ServiceObj {
    pub namespace: String,
    pub name: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`, `ExternalName`.
    pub type_: String,
    /// `spec.clusterIP` (`None` or `"None"` for headless).
    pub cluster_ip: Option<String>,
    pub external_name: Option<String>,
    pub ports: Vec<ServicePortObj>,
    pub source: SourceRef,
    /// Why its endpoints are in doubt (its Endpoints and EndpointSlices disagree), if they
    /// are: what nginx proxies to is then unknown.
    pub endpoint_doubt: Option<String>,
}

/// One port of an EndpointSlice (or of an Endpoints subset).
#[derive(Debug, Clone)]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<u16>,
    pub protocol: String,
}

/// One endpoint of an EndpointSlice (or one address of an Endpoints subset).
#[derive(Debug, Clone)]
pub struct SliceEndpoint {
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready`; `None` = unknown, which consumers treat as ready.
    pub ready: Option<bool>,
    /// `targetRef` when it is a Pod: (namespace, name).
    pub pod: Option<(String, String)>,
    pub node: Option<String>,
    pub source: Option<SourceRef>,
}

/// An EndpointSlice (discovery.k8s.io) or an Endpoints object lowered to the same shape (one
/// per subset).
#[derive(Debug, Clone)]
pub struct EndpointSliceObj {
    pub namespace: String,
    /// The Service it belongs to (`kubernetes.io/service-name` label, or the Endpoints name).
    pub service: String,
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<SliceEndpoint>,
    pub source: SourceRef,
}

/// One container of a pod: what controller detection looks at.
#[derive(Debug, Clone, Default)]
pub struct ContainerObj {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
}

/// A Pod.
#[derive(Debug, Clone)]
pub struct PodObj {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    pub containers: Vec<ContainerObj>,
    pub source: SourceRef,
}

/// nginx `location` modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationModifier {
    /// No modifier: prefix match.
    Prefix,
    /// `=`
    Exact,
    /// `~`
    Regex,
    /// `~*`
    RegexCaseless,
    /// `^~`
    PrefixNoRegex,
}

/// One `location` of an nginx.conf server, with the values ingress-nginx sets in it.
#[derive(Debug, Clone)]
pub struct NginxLocationObj {
    pub modifier: LocationModifier,
    pub path: String,
    pub namespace: Option<String>,
    pub ingress_name: Option<String>,
    pub service_name: Option<String>,
    pub service_port: Option<String>,
    pub source: SourceRef,
}

/// One `server` block.
#[derive(Debug, Clone)]
pub struct NginxServerObj {
    pub names: Vec<String>,
    pub locations: Vec<NginxLocationObj>,
    pub source: SourceRef,
}

/// One nginx.conf.
#[derive(Debug, Clone)]
pub struct NginxConfObj {
    /// (namespace, pod) it was taken in; `None` applies to every controller pod.
    pub pod: Option<(String, String)>,
    pub servers: Vec<NginxServerObj>,
    pub source: SourceRef,
}

/// A ConfigMap (only its data matters here).
#[derive(Debug, Clone)]
pub struct ConfigMapObj {
    pub namespace: String,
    pub name: String,
    pub data: BTreeMap<String, String>,
    /// Line of each data key.
    pub lines: BTreeMap<String, SourceRef>,
    pub source: SourceRef,
}
