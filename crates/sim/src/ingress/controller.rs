//! Which pods are ingress-nginx controllers, how they are configured (flags, version), and
//! which Ingresses each one serves.

use std::net::IpAddr;

use kubepath_model::SourceRef;

use super::world::{IngressObj, PodObj, World};

/// ingress-nginx's default `--controller-class` (internal/ingress/controller/ingressclass,
/// `DefaultControllerName`).
pub const DEFAULT_CONTROLLER_CLASS: &str = "k8s.io/ingress-nginx";
/// ingress-nginx's default `--ingress-class` (`DefaultAnnotationValue`).
pub const DEFAULT_INGRESS_CLASS: &str = "nginx";
/// The legacy class annotation.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// A controller version `major.minor.patch` read from the container image tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32, pub u32);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One ingress-nginx controller: a pod found in the snapshot, or the generic controller used
/// when the snapshot has none.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerRef {
    /// `None` for the generic controller ([`ControllerRef::generic`]).
    pub pod: Option<(String, String)>,
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    /// The controller container's image.
    pub image: Option<String>,
    /// The version read from the image tag, when the image is a known ingress-nginx image.
    pub version: Option<Version>,
    /// `--ingress-class` (default `nginx`): the legacy annotation value it serves.
    pub ingress_class: String,
    /// `--controller-class` (default `k8s.io/ingress-nginx`): IngressClasses it serves.
    pub controller_class: String,
    /// `--watch-ingress-without-class`.
    pub watch_without_class: bool,
    /// `--ingress-class-by-name`.
    pub ingress_class_by_name: bool,
    /// `--default-backend-service` as (namespace, name).
    pub default_backend: Option<(String, String)>,
    /// `--configmap` as (namespace, name): global settings (ssl-redirect, ...).
    pub configmap: Option<(String, String)>,
    /// `--watch-namespace`: the only namespace whose Ingresses it sees (None = all).
    pub watch_namespace: Option<String>,
    /// Why this pod was recognised as an ingress-nginx controller.
    pub recognised_by: Vec<String>,
    pub source: Option<SourceRef>,
}

impl ControllerRef {
    /// The controller assumed when the snapshot has no controller pod: default flags, unknown
    /// version.
    pub fn generic() -> Self {
        ControllerRef {
            pod: None,
            node: None,
            ips: Vec::new(),
            image: None,
            version: None,
            ingress_class: DEFAULT_INGRESS_CLASS.to_string(),
            controller_class: DEFAULT_CONTROLLER_CLASS.to_string(),
            watch_without_class: false,
            ingress_class_by_name: false,
            default_backend: None,
            configmap: None,
            watch_namespace: None,
            recognised_by: vec!["no controller pod in the snapshot: default flags assumed".into()],
            source: None,
        }
    }

    /// "ns/pod" or "(generic controller)".
    pub fn label(&self) -> String {
        match &self.pod {
            Some((ns, name)) => format!("{ns}/{name}"),
            None => "(generic ingress-nginx controller)".to_string(),
        }
    }

    /// Prefix locations are element-wise (`location /foo/` + `location = /foo`) from
    /// controller-v0.41 on (internal/ingress/controller/location.go, `updateServerLocations`,
    /// added in "Refactor handling of path Prefix and Exact"); before, every non-Exact path was
    /// an nginx string-prefix location. Unknown version: the current behaviour.
    pub fn element_wise_prefix(&self) -> bool {
        self.version.is_none_or(|v| v >= Version(0, 41, 0))
    }

    /// Wildcard hosts are rendered as a one-label regex from v0.41 on (template.go,
    /// `buildServerName`); before, nginx's own `*.example.com` wildcard (any depth).
    pub fn one_label_wildcard(&self) -> bool {
        self.version.is_none_or(|v| v >= Version(0, 41, 0))
    }

    /// Ingress class rules of 1.x (store.go `GetIngressClass`) vs the annotation-first rules of
    /// 0.x (internal/ingress/annotations/class, `IsValid`).
    fn v1_class_rules(&self) -> Option<bool> {
        self.version.map(|v| v >= Version(1, 0, 0))
    }
}

/// Whether `controller` serves `ing`, and the rule that decided.
pub fn serves(world: &World, controller: &ControllerRef, ing: &IngressObj) -> (bool, String) {
    if let Some(ns) = &controller.watch_namespace {
        if &ing.namespace != ns {
            return (
                false,
                format!("the controller runs with --watch-namespace={ns}"),
            );
        }
    }
    let class = IngressClassRef {
        annotation: ing.annotation(CLASS_ANNOTATION),
        name: ing.class_name.as_deref().filter(|s| !s.is_empty()),
    };
    match controller.v1_class_rules() {
        Some(true) => serves_v1(world, controller, class),
        Some(false) => serves_v0(world, controller, class),
        None => serves_unknown_version(world, controller, class),
    }
}

/// How an Ingress names its class: the class annotation and `spec.ingressClassName` (not
/// empty).
#[derive(Clone, Copy)]
struct IngressClassRef<'a> {
    annotation: Option<&'a str>,
    name: Option<&'a str>,
}

/// Whether the controller serves `spec.ingressClassName: name`.
fn class_name_served(world: &World, controller: &ControllerRef, name: &str) -> (bool, String) {
    match world.classes.iter().find(|c| c.name == name) {
        Some(c) if c.controller == controller.controller_class => (
            true,
            format!(
                "spec.ingressClassName {name}: IngressClass {name} ({}) has controller {}, the controller's --controller-class",
                c.source, c.controller
            ),
        ),
        Some(c) if controller.ingress_class_by_name && c.name == controller.ingress_class => (
            true,
            format!(
                "spec.ingressClassName {name} equals --ingress-class and --ingress-class-by-name is set"
            ),
        ),
        Some(c) => (
            false,
            format!(
                "spec.ingressClassName {name}: IngressClass {name} ({}) belongs to controller {}, not {}",
                c.source, c.controller, controller.controller_class
            ),
        ),
        None => (
            false,
            format!("spec.ingressClassName {name}: no IngressClass {name} in the snapshot"),
        ),
    }
}

/// Whether the controller serves the class annotation `a` when it must equal --ingress-class
/// (1.x, and an unknown version).
fn annotation_equals_class(controller: &ControllerRef, a: &str) -> (bool, String) {
    if a == controller.ingress_class {
        (
            true,
            format!("annotation {CLASS_ANNOTATION}: {a} equals --ingress-class"),
        )
    } else {
        (
            false,
            format!(
                "annotation {CLASS_ANNOTATION}: {a:?} is not --ingress-class {:?}",
                controller.ingress_class
            ),
        )
    }
}

/// 1.x: ingressClassName first, then the annotation, then --watch-ingress-without-class.
fn serves_v1(
    world: &World,
    controller: &ControllerRef,
    class: IngressClassRef<'_>,
) -> (bool, String) {
    if let Some(name) = class.name {
        return class_name_served(world, controller, name);
    }
    if let Some(a) = class.annotation {
        return annotation_equals_class(controller, a);
    }
    if controller.watch_without_class {
        (
            true,
            "no class; the controller runs with --watch-ingress-without-class".into(),
        )
    } else {
        let mut why = format!(
            "no ingressClassName and no {CLASS_ANNOTATION} annotation; controller {} (v{}) serves class-less Ingresses only with --watch-ingress-without-class",
            controller.label(),
            controller.version.map(|v| v.to_string()).unwrap_or_default()
        );
        if let Some(d) = world.classes.iter().find(|c| c.is_default) {
            why.push_str(&format!(
                " (IngressClass {} is marked default, but the API server applies that only when an Ingress is created)",
                d.name
            ));
        }
        (false, why)
    }
}

/// 0.x: the annotation first ("" means the default class), then ingressClassName, then
/// class-less Ingresses are served when --ingress-class is the default "nginx".
fn serves_v0(
    world: &World,
    controller: &ControllerRef,
    class: IngressClassRef<'_>,
) -> (bool, String) {
    if let Some(a) = class.annotation {
        return if a == controller.ingress_class
            || (a.is_empty() && controller.ingress_class == DEFAULT_INGRESS_CLASS)
        {
            (
                true,
                format!(
                    "annotation {CLASS_ANNOTATION}: {a:?} accepted by --ingress-class {:?}",
                    controller.ingress_class
                ),
            )
        } else {
            (
                false,
                format!(
                    "annotation {CLASS_ANNOTATION}: {a:?} is not --ingress-class {:?}",
                    controller.ingress_class
                ),
            )
        };
    }
    if let Some(name) = class.name {
        return class_name_served(world, controller, name);
    }
    if controller.ingress_class == DEFAULT_INGRESS_CLASS {
        (
            true,
            format!(
                "no class; controller {} is a 0.x version with the default --ingress-class nginx, which serves class-less Ingresses",
                controller.label()
            ),
        )
    } else {
        (
            false,
            format!(
                "no class; a 0.x controller with --ingress-class {:?} serves only Ingresses of that class",
                controller.ingress_class
            ),
        )
    }
}

/// Unknown version: the rules both generations share, and class-less Ingresses served (as
/// 0.x, or 1.x with --watch-ingress-without-class, would) with that assumption said.
fn serves_unknown_version(
    world: &World,
    controller: &ControllerRef,
    class: IngressClassRef<'_>,
) -> (bool, String) {
    if let Some(name) = class.name {
        return class_name_served(world, controller, name);
    }
    if let Some(a) = class.annotation {
        return annotation_equals_class(controller, a);
    }
    if controller.watch_without_class {
        (
            true,
            "no class; the controller runs with --watch-ingress-without-class".into(),
        )
    } else if let Some(d) = world
        .classes
        .iter()
        .find(|c| c.is_default && c.controller == controller.controller_class)
    {
        (
            true,
            format!(
                "no class; IngressClass {} ({}) of this controller is the default class (controller version unknown)",
                d.name, d.source
            ),
        )
    } else {
        (
            true,
            "no class; controller version unknown: assumed served (0.x controllers serve class-less Ingresses, 1.x only with --watch-ingress-without-class)".into(),
        )
    }
}

/// Reads `major.minor.patch` from an ingress-nginx image reference such as
/// `registry.k8s.io/ingress-nginx/controller:v1.9.4@sha256:...` or
/// `quay.io/kubernetes-ingress-controller/nginx-ingress-controller:0.32.0`. Images of other
/// repositories (vendor rebuilds) give `None`: their tags are not ingress-nginx versions.
pub fn version_from_image(image: &str) -> Option<Version> {
    let without_digest = image.split('@').next()?;
    let (repo, tag) = match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => {
            (&without_digest[..i], &without_digest[i + 1..])
        }
        _ => return None,
    };
    let known = repo.ends_with("ingress-nginx/controller")
        || repo.ends_with("nginx-ingress-controller")
        || repo.ends_with("ingress-nginx/controller-chroot");
    if !known {
        return None;
    }
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let core = tag.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().unwrap_or("0").parse().ok()?;
    Some(Version(major, minor, patch))
}

/// Reads a controller's flags from its container command and args.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.as_str();
        if let Some(rest) = a.strip_prefix(&long) {
            if let Some(v) = rest.strip_prefix('=') {
                return Some(v);
            }
            if rest.is_empty() {
                return Some(match it.clone().next() {
                    Some(v) if !v.starts_with("--") => {
                        it.next();
                        v.as_str()
                    }
                    _ => "true",
                });
            }
        }
    }
    None
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// Is this pod an ingress-nginx controller? Returns the reasons it is recognised, or an empty
/// list.
fn recognise(pod: &PodObj) -> Vec<String> {
    let mut why = Vec::new();
    // The charts' admission-webhook jobs and default backends carry the same name label.
    for key in ["app.kubernetes.io/component", "component"] {
        if matches!(pod.labels.get(key), Some(c) if c != "controller") {
            return why;
        }
    }
    let mut by_label = Vec::new();
    for key in ["app.kubernetes.io/name", "app"] {
        if let Some(v) = pod.labels.get(key) {
            if v == "ingress-nginx" || v == "nginx-ingress" {
                by_label.push((key, v.as_str()));
            }
        }
    }
    for c in &pod.containers {
        if c.command
            .iter()
            .chain(c.args.iter())
            .any(|a| a.ends_with("/nginx-ingress-controller") || a == "nginx-ingress-controller")
        {
            why.push(format!(
                "container {} runs /nginx-ingress-controller",
                c.name
            ));
        }
        if version_from_image(&c.image).is_some() {
            why.push(format!("container {} image {}", c.name, c.image));
        }
    }
    // `app: nginx-ingress` alone is also NGINX Inc.'s controller (another product): it needs
    // the binary or the image as well.
    for (key, v) in by_label {
        if v == "ingress-nginx" || !why.is_empty() {
            why.insert(0, format!("label {key}={v}"));
        }
    }
    why
}

/// Every ingress-nginx controller pod of the world, sorted by namespace and name.
pub fn find_controllers(world: &World) -> Vec<ControllerRef> {
    let mut out = Vec::new();
    for pod in &world.pods {
        let why = recognise(pod);
        if why.is_empty() {
            continue;
        }
        // The controller container: the one running the binary, else the first.
        let container = pod
            .containers
            .iter()
            .find(|c| {
                c.command
                    .iter()
                    .chain(c.args.iter())
                    .any(|a| a.ends_with("nginx-ingress-controller"))
            })
            .or_else(|| pod.containers.first());
        let args: Vec<String> = container
            .map(|c| {
                c.command
                    .iter()
                    .chain(c.args.iter())
                    .map(|a| a.replace("$(POD_NAMESPACE)", &pod.namespace))
                    .collect()
            })
            .unwrap_or_default();
        let image = container.map(|c| c.image.clone()).filter(|s| !s.is_empty());
        let default_backend = flag(&args, "default-backend-service").and_then(|v| {
            let (ns, name) = v.split_once('/')?;
            Some((ns.to_string(), name.to_string()))
        });
        let configmap = flag(&args, "configmap").and_then(|v| {
            let (ns, name) = v.split_once('/')?;
            Some((ns.to_string(), name.to_string()))
        });
        out.push(ControllerRef {
            configmap,
            watch_namespace: flag(&args, "watch-namespace")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            pod: Some((pod.namespace.clone(), pod.name.clone())),
            node: pod.node.clone(),
            ips: pod.ips.clone(),
            version: image.as_deref().and_then(version_from_image),
            image,
            ingress_class: flag(&args, "ingress-class")
                .unwrap_or(DEFAULT_INGRESS_CLASS)
                .to_string(),
            controller_class: flag(&args, "controller-class")
                .unwrap_or(DEFAULT_CONTROLLER_CLASS)
                .to_string(),
            watch_without_class: flag(&args, "watch-ingress-without-class").is_some_and(truthy),
            ingress_class_by_name: flag(&args, "ingress-class-by-name").is_some_and(truthy),
            default_backend,
            recognised_by: why,
            source: Some(pod.source.clone()),
        });
    }
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_images() {
        assert_eq!(
            version_from_image("registry.k8s.io/ingress-nginx/controller:v1.9.4@sha256:abc"),
            Some(Version(1, 9, 4))
        );
        assert_eq!(
            version_from_image(
                "quay.io/kubernetes-ingress-controller/nginx-ingress-controller:0.32.0"
            ),
            Some(Version(0, 32, 0))
        );
        assert_eq!(version_from_image("example.com/eric-foo:1.2.3"), None);
        assert_eq!(
            version_from_image("registry.k8s.io/ingress-nginx/controller"),
            None
        );
        assert_eq!(
            version_from_image("localhost:5000/ingress-nginx/controller"),
            None
        );
    }

    #[test]
    fn flags() {
        let args: Vec<String> = [
            "/nginx-ingress-controller",
            "--ingress-class=internal",
            "--watch-ingress-without-class",
            "--controller-class",
            "example.com/x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(flag(&args, "ingress-class"), Some("internal"));
        assert_eq!(flag(&args, "watch-ingress-without-class"), Some("true"));
        assert_eq!(flag(&args, "controller-class"), Some("example.com/x"));
        assert_eq!(flag(&args, "default-backend-service"), None);
    }
}
