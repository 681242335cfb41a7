//! Kubernetes objects from `kubectl get ... -o yaml|json` outputs.
//!
//! Each document (or each `items[]` entry of a `kind: List`) is dispatched by `apiVersion` and
//! `kind`, deserialized with k8s-openapi's types (small serde structs for the legacy versions
//! k8s-openapi no longer ships: networking.k8s.io/v1beta1 and extensions/v1beta1 Ingress,
//! discovery.k8s.io/v1beta1 EndpointSlice), and lowered into [`kubepath_model::k8s`].
//! MetalLB's CRDs and the legacy/ECFE ConfigMap go to [`crate::metallb`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as disc;
use k8s_openapi::api::networking::v1 as net1;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubepath_model::k8s::*;
use kubepath_model::{Model, SourceRef};
use serde::Deserialize;
use serde_json::Value;

use crate::diag::{Diagnostic, ParseError, Severity, SourceFile};
use crate::yaml::{self, Lines};

/// Where an object sits: its file, the line table of its document and its path prefix in it.
pub(crate) struct Ctx<'a> {
    pub file: &'a Arc<str>,
    pub lines: &'a Lines,
    pub prefix: String,
    pub line: u32,
}

impl Ctx<'_> {
    /// Line of `rel` (a JSON pointer relative to the object), or the object's line.
    pub fn line_of(&self, rel: &str) -> u32 {
        self.lines
            .get(&format!("{}{}", self.prefix, rel))
            .unwrap_or(self.line)
    }
    pub fn src(&self, rel: &str) -> SourceRef {
        SourceRef::new(self.file.clone(), self.line_of(rel))
    }
    pub fn obj_src(&self) -> SourceRef {
        SourceRef::new(self.file.clone(), self.line)
    }
    pub fn diag(&self, diags: &mut Vec<Diagnostic>, sev: Severity, rel: &str, msg: String) {
        diags.push(Diagnostic {
            severity: sev,
            file: self.file.clone(),
            line: self.line_of(rel),
            column: 0,
            message: msg,
        });
    }
}

/// Sniff and read a file of `cluster/`. `Ok(None)` when it holds no Kubernetes object.
/// `objects` receives one `Kind ns/name` per object read.
pub fn read_cluster_file(
    file: &SourceFile,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
    objects: &mut Vec<String>,
) -> Result<Option<&'static str>, ParseError> {
    let text = yaml::strip_prompts(&file.text);
    // Two passes: the first returns any error before anything is lowered (a file that does not
    // parse adds nothing to the model) and says which documents are Lists; the second lowers
    // each item of those as soon as it is parsed, so a large List never exists as one tree
    // (docs/PERFORMANCE.md, "A 64 MB Kubernetes List").
    let heads = yaml::scan_docs(&file.path, &text)?;
    whole_lists_fit(file, &text, &heads)?;
    lower_docs(file, &text, &heads, model, diags, objects).map(|(r, _)| r)
}

/// [`read_cluster_file`] into an empty `model` (with `diags` and `objects` empty too), in one
/// pass where it can: the documents' heads are guessed from the text ([`yaml::guess_heads`])
/// instead of parsed by a first pass, and the one pass that lowers the documents checks them
/// (it gives the parser's heads). Where the guess was wrong in anything the lowering used, or
/// the file has an error (the two passes report it before lowering anything), the file is read
/// again the two-pass way into the emptied model: the answer is always [`read_cluster_file`]'s.
pub(crate) fn read_cluster_file_fresh(
    file: &SourceFile,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
    objects: &mut Vec<String>,
) -> Result<Option<&'static str>, ParseError> {
    let text = yaml::strip_prompts(&file.text);
    if let Some(guess) = yaml::guess_heads(&text) {
        if whole_lists_fit(file, &text, &guess).is_ok() {
            if let Ok((r, heads)) = lower_docs(file, &text, &guess, model, diags, objects) {
                if same_lowering(&guess, &heads) {
                    return Ok(r);
                }
            }
        }
        *model = Model::default();
        diags.clear();
        objects.clear();
    }
    read_cluster_file(file, model, diags, objects)
}

/// Whether lowering with heads `a` does what it does with heads `b`: the same documents'
/// items are streamed, each with the same list kind and apiVersion (nothing else of a head is
/// read while lowering).
fn same_lowering(a: &[yaml::DocHead], b: &[yaml::DocHead]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| {
            streams_items(a) == streams_items(b)
                && (!streams_items(a)
                    || (a.kind.scalar_str() == b.kind.scalar_str()
                        && a.api_version.scalar_str() == b.api_version.scalar_str()))
        })
}

/// A file larger than [`MAX_WHOLE_LIST_BYTES`] with a List that cannot be streamed is refused.
fn whole_lists_fit(
    file: &SourceFile,
    text: &str,
    heads: &[yaml::DocHead],
) -> Result<(), ParseError> {
    if text.len() > MAX_WHOLE_LIST_BYTES {
        if let Some(h) = heads
            .iter()
            .find(|h| is_list(h) && h.items_keys > 0 && !streams_items(h))
        {
            return Err(ParseError {
                file: file.path.clone(),
                line: h.items_line.max(1),
                column: 1,
                expected: format!(
                    "a List with one `items` sequence without an anchor, or at most {} MB",
                    MAX_WHOLE_LIST_BYTES >> 20
                ),
                found: format!(
                    "anchored or repeated `items` in {} bytes (read whole: about 40x that in memory)",
                    text.len()
                ),
            });
        }
    }
    Ok(())
}

/// The second pass of [`read_cluster_file`]: lowers the documents of `text`, streaming the
/// items of the documents whose `heads` say so; gives the answer and the parser's heads.
fn lower_docs(
    file: &SourceFile,
    text: &str,
    heads: &[yaml::DocHead],
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
    objects: &mut Vec<String>,
) -> Result<(Option<&'static str>, Vec<yaml::DocHead>), ParseError> {
    let trimmed = text.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    let is_json = trimmed.starts_with('{') || trimmed.starts_with('[');
    let stream: Vec<bool> = heads.iter().map(streams_items).collect();
    // Parser diagnostics (duplicate keys) come first, then the objects' in document order,
    // as when every document was parsed before any was lowered.
    let mut local = Vec::new();
    let mut lowered = Vec::new();
    let mut any = false;
    let mut di = 0usize;
    let parsed =
        yaml::parse_docs_streaming(&file.path, text, &mut local, &stream, &mut |p| match p {
            yaml::Parsed::Item(it) => {
                let head = heads.get(it.doc);
                let field = |f: fn(&yaml::DocHead) -> &yaml::HeadField| {
                    head.and_then(|h| f(h).scalar_str()).unwrap_or("")
                };
                let ctx = Ctx {
                    file: &file.path,
                    lines: &it.lines,
                    prefix: format!("/items/{}", it.index),
                    line: it.line,
                };
                let list = ListHead {
                    kind: field(|h| &h.kind),
                    api_version: field(|h| &h.api_version),
                };
                read_list_item(it.value, &list, &ctx, text, model, &mut lowered, objects);
            }
            yaml::Parsed::Doc { doc, .. } => {
                di += 1;
                let Some(obj) = doc.value.as_object() else {
                    if !doc.value.is_null() {
                        lowered.push(Diagnostic {
                            severity: Severity::Warning,
                            file: file.path.clone(),
                            line: doc.line,
                            column: 0,
                            message: format!(
                                "document {di} is not a Kubernetes object (not a mapping): skipped"
                            ),
                        });
                    }
                    return;
                };
                if !obj.contains_key("kind") || !obj.contains_key("apiVersion") {
                    lowered.push(Diagnostic {
                        severity: Severity::Warning,
                        file: file.path.clone(),
                        line: doc.line,
                        column: 0,
                        message: format!(
                        "document {di} has no `apiVersion`/`kind`: not a Kubernetes object, skipped"
                    ),
                    });
                    return;
                }
                any = true;
                let ctx = Ctx {
                    file: &file.path,
                    lines: &doc.lines,
                    prefix: String::new(),
                    line: doc.line,
                };
                read_object(&doc.value, &ctx, text, model, &mut lowered, objects);
            }
        })?;
    if !any {
        // Not a Kubernetes file at all: the caller's single "not recognised" warning says
        // so; per-document complaints would only repeat it. (Nothing was lowered: items are
        // streamed only from documents with a `kind` and an `apiVersion`.)
        return Ok((None, parsed));
    }
    diags.extend(local);
    diags.extend(lowered);
    Ok((
        Some(if is_json {
            "kubernetes-json"
        } else {
            "kubernetes-yaml"
        }),
        parsed,
    ))
}

/// A List whose items cannot be streamed ([`streams_items`]) is built as one tree (about 40x
/// its size in memory): a file holding one is read only up to this size (issue #11).
pub const MAX_WHOLE_LIST_BYTES: usize = 8 << 20;

/// A document [`read_object`] would read as a list, streamed or not: a `kind: List` or
/// `kind: <Kind>List` mapping with an `apiVersion`.
fn is_list(h: &yaml::DocHead) -> bool {
    h.is_map
        && h.api_version.scalar_str().is_some()
        && h.kind.scalar_str().is_some_and(|k| k.ends_with("List"))
}

/// Whether the items of a document with this head are lowered one at a time as they are
/// parsed: exactly the documents [`read_object`] reads as a list (a `kind: List` or
/// `kind: <Kind>List` mapping with an `apiVersion` and one `items` sequence).
fn streams_items(h: &yaml::DocHead) -> bool {
    let (Some(kind), Some(_)) = (h.kind.scalar_str(), h.api_version.scalar_str()) else {
        return false;
    };
    h.is_map && h.items_keys == 1 && h.items_plain_seq && kind.ends_with("List")
}

/// The `kind` and `apiVersion` of the List a streamed item is in.
struct ListHead<'a> {
    kind: &'a str,
    api_version: &'a str,
}

/// One entry of the `items` of a list.
fn read_list_item(
    mut item: Value,
    list: &ListHead,
    ctx: &Ctx,
    text: &str,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
    objects: &mut Vec<String>,
) {
    // Items of a typed list may omit apiVersion/kind.
    let item_kind = list.kind.strip_suffix("List").filter(|k| !k.is_empty());
    if let (Some(ik), Some(o)) = (item_kind, item.as_object_mut()) {
        o.entry("kind").or_insert_with(|| Value::from(ik));
        o.entry("apiVersion")
            .or_insert_with(|| Value::from(list.api_version));
    }
    read_object(&item, ctx, text, model, diags, objects);
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn read_object(
    v: &Value,
    ctx: &Ctx,
    text: &str,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
    objects: &mut Vec<String>,
) {
    let api = str_field(v, "apiVersion");
    let kind = str_field(v, "kind");
    // `kind: List` (kubectl) and typed lists (`ServiceList`).
    if kind == "List" || (kind.ends_with("List") && v.get("items").is_some()) {
        let Some(items) = v.get("items").and_then(Value::as_array) else {
            ctx.diag(
                diags,
                Severity::Warning,
                "/items",
                format!("{kind} without an `items` list"),
            );
            return;
        };
        let item_kind = kind.strip_suffix("List").filter(|k| !k.is_empty());
        if let Some(k) = item_kind {
            // `kubectl get svc -o yaml` with nothing to list still says ServiceList: the kind
            // was collected, and it is empty.
            model.cluster.collected.insert(k.to_string());
        }
        let list = ListHead {
            kind,
            api_version: api,
        };
        for (i, item) in items.iter().enumerate() {
            let prefix = format!("{}/items/{}", ctx.prefix, i);
            let line = ctx.lines.get(&prefix).unwrap_or(ctx.line);
            let sub = Ctx {
                file: ctx.file,
                lines: ctx.lines,
                prefix,
                line,
            };
            read_list_item(item.clone(), &list, &sub, text, model, diags, objects);
        }
        return;
    }
    let meta = v.get("metadata");
    let name = meta.map(|m| str_field(m, "name")).unwrap_or("");
    let ns = meta.map(|m| str_field(m, "namespace")).unwrap_or("");
    let label = if ns.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {ns}/{name}")
    };
    if name.is_empty() && !kind.is_empty() {
        // The API server never returns an object without a name: this one was garbled (a
        // line out of its indentation took `metadata.name` with it). Reading it would put
        // an object named "" in namespace default (issue #11, review).
        ctx.diag(
            diags,
            Severity::Error,
            "/metadata",
            format!(
                "{label} ({api}) {SCHEMA_MISMATCH}, skipped: `metadata.name` is missing or empty"
            ),
        );
        return;
    }
    let group = api.split_once('/').map(|(g, _)| g).unwrap_or("");
    let res: Result<bool, String> = match (group, kind) {
        ("", "Service") => de::<core::Service>(v).map(|o| lower_service(o, ctx, model, diags)),
        ("", "Pod") => de::<core::Pod>(v).map(|o| lower_pod(o, ctx, model, diags)),
        ("", "Node") => de::<core::Node>(v).map(|o| lower_node(o, ctx, model, diags)),
        ("", "Endpoints") => {
            de::<core::Endpoints>(v).map(|o| lower_endpoints(o, ctx, model, diags))
        }
        ("", "ConfigMap") => {
            de::<core::ConfigMap>(v).map(|o| lower_config_map(o, ctx, text, model, diags))
        }
        ("", "Namespace") => de::<core::Namespace>(v).map(|o| lower_namespace(o, ctx, model)),
        ("discovery.k8s.io", "EndpointSlice") if api == "discovery.k8s.io/v1" => {
            de::<disc::EndpointSlice>(v).map(|o| lower_slice_v1(o, ctx, model, diags))
        }
        ("discovery.k8s.io", "EndpointSlice") if api == "discovery.k8s.io/v1beta1" => {
            de::<SliceV1beta1>(v).map(|o| lower_slice_v1beta1(o, ctx, model, diags))
        }
        ("networking.k8s.io", "Ingress") if api == "networking.k8s.io/v1" => {
            de::<net1::Ingress>(v).map(|o| lower_ingress_v1(o, ctx, model, diags))
        }
        ("networking.k8s.io" | "extensions", "Ingress") if api.ends_with("/v1beta1") => {
            de::<IngressV1beta1>(v).map(|o| lower_ingress_v1beta1(o, api, ctx, model, diags))
        }
        ("networking.k8s.io", "IngressClass")
            if api == "networking.k8s.io/v1" || api == "networking.k8s.io/v1beta1" =>
        {
            de::<IngressClassAny>(v).map(|o| lower_ingress_class(o, ctx, model))
        }
        ("metallb.io", _) => Ok(crate::metallb::read_crd(kind, v, ctx, model, diags)),
        _ => Ok(false),
    };
    match res {
        Ok(true) => {
            model.cluster.collected.insert(kind.to_string());
            objects.push(label)
        }
        Ok(false) => {
            ctx.diag(
                diags,
                Severity::Note,
                "",
                format!("{label} ({api}): kind not modelled by kubepath, kept as an opaque object"),
            );
            model.cluster.other.push(OtherObject {
                api_version: api.to_string(),
                kind: kind.to_string(),
                namespace: (!ns.is_empty()).then(|| ns.to_string()),
                name: name.to_string(),
                source: ctx.obj_src(),
            });
            objects.push(format!("{label} (not modelled)"));
        }
        Err(e) => {
            let at = offending_path(v, &e).unwrap_or_default();
            ctx.diag(
                diags,
                Severity::Error,
                &at,
                format!("{label} ({api}) {SCHEMA_MISMATCH}, skipped: {e}"),
            )
        }
    }
}

/// What a schema error's message says (`--strict` makes such an error fatal).
pub(crate) const SCHEMA_MISMATCH: &str = "does not match the API schema";

/// The JSON pointer (relative to the object `v`) of the value a serde error names, when its
/// message quotes one (`invalid type: string "x"`, `invalid value: integer `7``, `unknown
/// variant `X``) and the object holds exactly that scalar somewhere: so the error cites the
/// field's line, not the object's. The first such scalar found.
pub(crate) fn offending_path(v: &Value, err: &str) -> Option<String> {
    let quoted = |s: &str, open: char, close: char| -> Option<String> {
        let rest = s.split_once(open)?.1;
        Some(rest.split_once(close)?.0.to_string())
    };
    let want: Value = if let Some(r) = err.split_once("invalid type: string ").map(|x| x.1) {
        // serde quotes a string with Debug escapes; a plain one is enough here.
        Value::String(quoted(r, '"', '"')?)
    } else if let Some(r) = err.split_once("unknown variant ").map(|x| x.1) {
        Value::String(quoted(r, '`', '`')?)
    } else {
        let (_, r) = err.split_once("invalid ")?;
        let (what, r) = r.split_once(": ")?.1.split_once(' ')?;
        let tok = quoted(r, '`', '`')?;
        match what {
            "integer" | "floating" => {
                let tok = if what == "floating" {
                    quoted(r.split_once("point ")?.1, '`', '`')?
                } else {
                    tok
                };
                serde_json::from_str::<Value>(&tok).ok()?
            }
            "boolean" => Value::Bool(tok == "true"),
            "string" => Value::String(tok),
            _ => return None,
        }
    };
    fn find(v: &Value, want: &Value, path: &mut String) -> bool {
        let same = match (v, want) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            _ => v == want,
        };
        if same {
            return true;
        }
        let len = path.len();
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    path.push('/');
                    path.push_str(&yaml::escape_key(k));
                    if find(c, want, path) {
                        return true;
                    }
                    path.truncate(len);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    path.push_str(&format!("/{i}"));
                    if find(c, want, path) {
                        return true;
                    }
                    path.truncate(len);
                }
            }
            _ => {}
        }
        false
    }
    let mut path = String::new();
    find(v, &want, &mut path).then_some(path)
}

fn de<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T, String> {
    T::deserialize(v).map_err(|e| e.to_string())
}

pub(crate) fn parse_ip(
    s: &str,
    ctx: &Ctx,
    rel: &str,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<IpAddr> {
    match s.trim().parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            ctx.diag(
                diags,
                Severity::Warning,
                rel,
                format!("{what}: `{s}` is not an IP address, ignored"),
            );
            None
        }
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

fn traffic_policy(
    s: Option<&str>,
    ctx: &Ctx,
    rel: &str,
    diags: &mut Vec<Diagnostic>,
) -> TrafficPolicy {
    match s {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => {
            ctx.diag(
                diags,
                Severity::Warning,
                rel,
                format!("unknown traffic policy `{other}`, taken as Cluster (the API default)"),
            );
            TrafficPolicy::Cluster
        }
    }
}

fn port_ref(p: &IntOrString) -> PortRef {
    match p {
        IntOrString::Int(i) => PortRef::Number(*i),
        IntOrString::String(s) => match s.parse::<i32>() {
            Ok(n) => PortRef::Number(n),
            Err(_) => PortRef::Name(s.clone()),
        },
    }
}

fn lower_service(
    o: core::Service,
    ctx: &Ctx,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let key = key_of(&o.metadata);
    let spec = o.spec.unwrap_or_default();
    let type_ = match spec.type_.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(t) => ServiceType::Other(t.to_string()),
    };
    let mut headless = false;
    let mut cluster_ips = Vec::new();
    let ips_src: Vec<String> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(v), _) if !v.is_empty() => v.clone(),
        (_, Some(one)) => vec![one.clone()],
        _ => vec![],
    };
    for s in ips_src {
        if s == "None" {
            headless = true;
        } else if !s.is_empty() {
            cluster_ips.extend(parse_ip(&s, ctx, "/spec/clusterIP", "clusterIP", diags));
        }
    }
    let external_ips = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|s| parse_ip(s, ctx, "/spec/externalIPs", "externalIPs", diags))
        .collect();
    let load_balancer_ip = spec
        .load_balancer_ip
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| parse_ip(s, ctx, "/spec/loadBalancerIP", "loadBalancerIP", diags));
    let mut ranges = Vec::new();
    for s in spec.load_balancer_source_ranges.iter().flatten() {
        match s.trim().parse::<ipnet::IpNet>() {
            Ok(n) => ranges.push(n),
            Err(_) => ctx.diag(
                diags,
                Severity::Warning,
                "/spec/loadBalancerSourceRanges",
                format!("loadBalancerSourceRanges: `{s}` is not a CIDR, ignored"),
            ),
        }
    }
    let lb_ingress = o
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, ing)| LbIngress {
            ip: ing.ip.as_deref().and_then(|s| {
                parse_ip(
                    s,
                    ctx,
                    &format!("/status/loadBalancer/ingress/{i}"),
                    "status.loadBalancer.ingress",
                    diags,
                )
            }),
            hostname: ing.hostname,
        })
        .collect();
    let ports = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| ServicePort {
            name: p.name.filter(|n| !n.is_empty()),
            protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
            port: p.port,
            target_port: p.target_port.as_ref().map(port_ref),
            node_port: p.node_port,
            source: ctx.src(&format!("/spec/ports/{i}")),
        })
        .collect();
    let etp = traffic_policy(
        spec.external_traffic_policy.as_deref(),
        ctx,
        "/spec/externalTrafficPolicy",
        diags,
    );
    let itp = traffic_policy(
        spec.internal_traffic_policy.as_deref(),
        ctx,
        "/spec/internalTrafficPolicy",
        diags,
    );
    let svc = Service {
        key: key.clone(),
        labels: o.metadata.labels.unwrap_or_default(),
        annotations: o.metadata.annotations.unwrap_or_default(),
        type_,
        cluster_ips,
        headless,
        external_ips,
        load_balancer_ip,
        load_balancer_class: spec.load_balancer_class,
        load_balancer_source_ranges: ranges,
        lb_ingress,
        ports,
        selector: spec.selector,
        external_traffic_policy: etp,
        external_traffic_policy_source: ctx.src("/spec/externalTrafficPolicy"),
        internal_traffic_policy: itp,
        session_affinity: spec.session_affinity,
        session_affinity_timeout: spec
            .session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds),
        health_check_node_port: spec.health_check_node_port,
        allocate_load_balancer_node_ports: spec.allocate_load_balancer_node_ports,
        external_name: spec.external_name,
        source: ctx.obj_src(),
    };
    if let Some(prev) = model.cluster.services.get(&key) {
        ctx.diag(
            diags,
            Severity::Warning,
            "",
            format!(
                "Service {key} appears twice (also at {}): the later one is kept",
                prev.source
            ),
        );
    }
    model.cluster.services.insert(key, svc);
    true
}

fn lower_pod(o: core::Pod, ctx: &Ctx, model: &mut Model, diags: &mut Vec<Diagnostic>) -> bool {
    let key = key_of(&o.metadata);
    let spec = o.spec.unwrap_or_default();
    let status = o.status.unwrap_or_default();
    let owner = o
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .or_else(|| o.metadata.owner_references.iter().flatten().next())
        .map(|r| (r.kind.clone(), r.name.clone()));
    let mut pod_ips: Vec<IpAddr> = Vec::new();
    for p in status.pod_ips.iter().flatten() {
        pod_ips.extend(parse_ip(&p.ip, ctx, "/status/podIPs", "podIPs", diags));
    }
    if pod_ips.is_empty() {
        if let Some(s) = status.pod_ip.as_deref().filter(|s| !s.is_empty()) {
            pod_ips.extend(parse_ip(s, ctx, "/status/podIP", "podIP", diags));
        }
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status == "True");
    let containers = spec
        .containers
        .into_iter()
        .map(|c| Container {
            name: c.name,
            image: c.image,
            command: c.command.unwrap_or_default(),
            args: c.args.unwrap_or_default(),
            ports: c
                .ports
                .unwrap_or_default()
                .into_iter()
                .map(|p| ContainerPort {
                    name: p.name,
                    container_port: p.container_port,
                    protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
                    host_port: p.host_port,
                })
                .collect(),
        })
        .collect();
    model.cluster.pods.push(Pod {
        key,
        labels: o.metadata.labels.unwrap_or_default(),
        annotations: o.metadata.annotations.unwrap_or_default(),
        owner,
        node_name: spec.node_name,
        host_network: spec.host_network.unwrap_or(false),
        host_ip: status
            .host_ip
            .as_deref()
            .filter(|s| !s.is_empty())
            .and_then(|s| parse_ip(s, ctx, "/status/hostIP", "hostIP", diags)),
        pod_ips,
        phase: status.phase,
        ready,
        terminating: o.metadata.deletion_timestamp.is_some(),
        containers,
        source: ctx.obj_src(),
    });
    true
}

fn lower_node(o: core::Node, ctx: &Ctx, model: &mut Model, diags: &mut Vec<Diagnostic>) -> bool {
    let name = o.metadata.name.clone().unwrap_or_default();
    let spec = o.spec.unwrap_or_default();
    let status = o.status.unwrap_or_default();
    let mut internal_ips = Vec::new();
    let mut external_ips = Vec::new();
    let mut hostname = None;
    for a in status.addresses.iter().flatten() {
        match a.type_.as_str() {
            "InternalIP" => internal_ips.extend(parse_ip(
                &a.address,
                ctx,
                "/status/addresses",
                "InternalIP",
                diags,
            )),
            "ExternalIP" => external_ips.extend(parse_ip(
                &a.address,
                ctx,
                "/status/addresses",
                "ExternalIP",
                diags,
            )),
            "Hostname" => hostname = Some(a.address.clone()),
            _ => {}
        }
    }
    let mut cidrs: Vec<String> = spec.pod_cidrs.clone().unwrap_or_default();
    if cidrs.is_empty() {
        cidrs.extend(spec.pod_cidr.clone());
    }
    let mut pod_cidrs = Vec::new();
    for c in cidrs {
        match c.parse::<ipnet::IpNet>() {
            Ok(n) => pod_cidrs.push(n),
            Err(_) => ctx.diag(
                diags,
                Severity::Warning,
                "/spec/podCIDR",
                format!("podCIDR `{c}` is not a CIDR, ignored"),
            ),
        }
    }
    let conditions = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| NodeCondition {
            type_: c.type_,
            status: c.status,
            reason: c.reason,
        })
        .collect();
    model.cluster.nodes.insert(
        name.clone(),
        Node {
            name,
            labels: o.metadata.labels.unwrap_or_default(),
            annotations: o.metadata.annotations.unwrap_or_default(),
            internal_ips,
            external_ips,
            hostname,
            conditions,
            pod_cidrs,
            unschedulable: spec.unschedulable.unwrap_or(false),
            source: ctx.obj_src(),
        },
    );
    true
}

fn obj_ref(r: core::ObjectReference) -> ObjectRef {
    ObjectRef {
        kind: r.kind,
        namespace: r.namespace,
        name: r.name,
    }
}

fn lower_endpoints(
    o: core::Endpoints,
    ctx: &Ctx,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let key = key_of(&o.metadata);
    for (si, subset) in o.subsets.unwrap_or_default().into_iter().enumerate() {
        let mut endpoints = Vec::new();
        for (ready, list, field) in [
            (true, subset.addresses, "addresses"),
            (false, subset.not_ready_addresses, "notReadyAddresses"),
        ] {
            for (ai, a) in list.unwrap_or_default().into_iter().enumerate() {
                let rel = format!("/subsets/{si}/{field}/{ai}");
                let Some(ip) = parse_ip(&a.ip, ctx, &rel, "endpoint address", diags) else {
                    continue;
                };
                endpoints.push(Endpoint {
                    addresses: vec![ip],
                    ready: Some(ready),
                    serving: Some(ready),
                    terminating: Some(false),
                    node_name: a.node_name,
                    hostname: a.hostname,
                    target_ref: a.target_ref.map(obj_ref),
                    zone: None,
                    source: ctx.src(&rel),
                });
            }
        }
        let ports = subset
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name,
                port: Some(p.port),
                protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
            })
            .collect();
        model.cluster.endpoints.push(EndpointSet {
            key: key.clone(),
            service: Some(key.clone()),
            origin: EndpointOrigin::Endpoints,
            address_type: None,
            ports,
            endpoints,
            source: ctx.src(&format!("/subsets/{si}")),
        });
    }
    true
}

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn lower_slice_v1(
    o: disc::EndpointSlice,
    ctx: &Ctx,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let key = key_of(&o.metadata);
    let service = slice_service(&key, o.metadata.labels.as_ref(), ctx, diags);
    let mut endpoints = Vec::new();
    for (i, e) in o.endpoints.into_iter().enumerate() {
        let rel = format!("/endpoints/{i}");
        let addresses = addresses(&e.addresses, &o.address_type, ctx, &rel, diags);
        let c = e.conditions.unwrap_or_default();
        endpoints.push(Endpoint {
            addresses,
            ready: c.ready,
            serving: c.serving,
            terminating: c.terminating,
            node_name: e.node_name.or_else(|| {
                e.deprecated_topology
                    .as_ref()
                    .and_then(|t| t.get("kubernetes.io/hostname").cloned())
            }),
            hostname: e.hostname,
            target_ref: e.target_ref.map(obj_ref),
            zone: e.zone,
            source: ctx.src(&rel),
        });
    }
    let ports = o
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| EndpointPort {
            name: p.name,
            port: p.port,
            protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
        })
        .collect();
    model.cluster.endpoints.push(EndpointSet {
        key,
        service,
        origin: EndpointOrigin::SliceV1,
        address_type: Some(o.address_type),
        ports,
        endpoints,
        source: ctx.obj_src(),
    });
    true
}

fn slice_service(
    key: &ObjectKey,
    labels: Option<&BTreeMap<String, String>>,
    ctx: &Ctx,
    diags: &mut Vec<Diagnostic>,
) -> Option<ObjectKey> {
    match labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
        Some(s) => Some(ObjectKey::new(key.namespace.clone(), s.clone())),
        None => {
            ctx.diag(
                diags,
                Severity::Warning,
                "/metadata",
                format!("EndpointSlice {key} has no `{SERVICE_NAME_LABEL}` label: it belongs to no Service"),
            );
            None
        }
    }
}

fn addresses(
    list: &[String],
    address_type: &str,
    ctx: &Ctx,
    rel: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<IpAddr> {
    if address_type == "FQDN" {
        return Vec::new();
    }
    list.iter()
        .filter_map(|a| parse_ip(a, ctx, rel, "endpoint address", diags))
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SliceV1beta1 {
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    address_type: String,
    #[serde(default)]
    endpoints: Vec<EndpointV1beta1>,
    #[serde(default)]
    ports: Vec<disc::EndpointPort>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct EndpointV1beta1 {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Option<disc::EndpointConditions>,
    hostname: Option<String>,
    target_ref: Option<core::ObjectReference>,
    /// v1beta1 before 1.20: the node is `topology["kubernetes.io/hostname"]`.
    #[serde(default)]
    topology: BTreeMap<String, String>,
    node_name: Option<String>,
}

fn lower_slice_v1beta1(
    o: SliceV1beta1,
    ctx: &Ctx,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let key = key_of(&o.metadata);
    let service = slice_service(&key, o.metadata.labels.as_ref(), ctx, diags);
    let mut endpoints = Vec::new();
    for (i, e) in o.endpoints.into_iter().enumerate() {
        let rel = format!("/endpoints/{i}");
        let c = e.conditions.unwrap_or_default();
        endpoints.push(Endpoint {
            addresses: addresses(&e.addresses, &o.address_type, ctx, &rel, diags),
            ready: c.ready,
            serving: c.serving,
            terminating: c.terminating,
            node_name: e
                .node_name
                .or_else(|| e.topology.get("kubernetes.io/hostname").cloned()),
            hostname: e.hostname,
            target_ref: e.target_ref.map(obj_ref),
            zone: e.topology.get("topology.kubernetes.io/zone").cloned(),
            source: ctx.src(&rel),
        });
    }
    let ports = o
        .ports
        .into_iter()
        .map(|p| EndpointPort {
            name: p.name,
            port: p.port,
            protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
        })
        .collect();
    model.cluster.endpoints.push(EndpointSet {
        key,
        service,
        origin: EndpointOrigin::SliceV1beta1,
        address_type: Some(o.address_type),
        ports,
        endpoints,
        source: ctx.obj_src(),
    });
    true
}

const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

fn ingress_class(
    field: Option<String>,
    annotations: &BTreeMap<String, String>,
) -> (Option<String>, Option<IngressClassSource>) {
    // ingress-nginx reads the annotation first when both are set (it is deprecated but
    // still honoured); the field is the API's answer otherwise.
    if let Some(a) = annotations.get(INGRESS_CLASS_ANNOTATION) {
        return (Some(a.clone()), Some(IngressClassSource::Annotation));
    }
    match field {
        Some(f) => (Some(f), Some(IngressClassSource::Field)),
        None => (None, None),
    }
}

fn status_addrs(
    list: Vec<(Option<String>, Option<String>)>,
    ctx: &Ctx,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<IpAddr>, Vec<String>) {
    let mut ips = Vec::new();
    let mut hosts = Vec::new();
    for (ip, host) in list {
        if let Some(ip) = ip {
            ips.extend(parse_ip(
                &ip,
                ctx,
                "/status/loadBalancer/ingress",
                "Ingress status",
                diags,
            ));
        }
        hosts.extend(host);
    }
    (ips, hosts)
}

fn v1_backend(
    b: net1::IngressBackend,
    ctx: &Ctx,
    rel: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<IngressBackend> {
    if let Some(s) = b.service {
        let port = match s.port {
            Some(net1::ServiceBackendPort {
                number: Some(n), ..
            }) => PortRef::Number(n),
            Some(net1::ServiceBackendPort { name: Some(n), .. }) => PortRef::Name(n),
            _ => {
                ctx.diag(
                    diags,
                    Severity::Warning,
                    rel,
                    format!("backend service `{}` has no port", s.name),
                );
                PortRef::Number(0)
            }
        };
        return Some(IngressBackend::Service { name: s.name, port });
    }
    if let Some(r) = b.resource {
        return Some(IngressBackend::Resource {
            api_group: r.api_group,
            kind: r.kind,
            name: r.name,
        });
    }
    ctx.diag(
        diags,
        Severity::Warning,
        rel,
        "backend has neither service nor resource".into(),
    );
    None
}

fn lower_ingress_v1(
    o: net1::Ingress,
    ctx: &Ctx,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let key = key_of(&o.metadata);
    let spec = o.spec.unwrap_or_default();
    let annotations = o.metadata.annotations.unwrap_or_default();
    let (class, class_source) = ingress_class(spec.ingress_class_name, &annotations);
    let mut rules = Vec::new();
    for (ri, r) in spec.rules.unwrap_or_default().into_iter().enumerate() {
        let mut paths = Vec::new();
        for (pi, p) in r
            .http
            .map(|h| h.paths)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let rel = format!("/spec/rules/{ri}/http/paths/{pi}");
            if let Some(backend) = v1_backend(p.backend, ctx, &rel, diags) {
                paths.push(IngressPath {
                    path: p.path,
                    path_type: Some(p.path_type),
                    backend,
                    source: ctx.src(&rel),
                });
            }
        }
        rules.push(IngressRule {
            host: r.host,
            paths,
            source: ctx.src(&format!("/spec/rules/{ri}")),
        });
    }
    let default_backend = spec
        .default_backend
        .and_then(|b| v1_backend(b, ctx, "/spec/defaultBackend", diags));
    let (status_ips, status_hostnames) = status_addrs(
        o.status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.ip, i.hostname))
            .collect(),
        ctx,
        diags,
    );
    model.cluster.ingresses.push(Ingress {
        key,
        api_version: "networking.k8s.io/v1".into(),
        labels: o.metadata.labels.unwrap_or_default(),
        annotations,
        class,
        class_source,
        rules,
        default_backend,
        tls: spec
            .tls
            .unwrap_or_default()
            .into_iter()
            .map(|t| IngressTls {
                hosts: t.hosts.unwrap_or_default(),
                secret_name: t.secret_name,
            })
            .collect(),
        status_ips,
        status_hostnames,
        source: ctx.obj_src(),
    });
    true
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IngressV1beta1 {
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    spec: IngressSpecV1beta1,
    #[serde(default)]
    status: Option<IngressStatusV1beta1>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IngressSpecV1beta1 {
    backend: Option<BackendV1beta1>,
    ingress_class_name: Option<String>,
    #[serde(default)]
    rules: Vec<RuleV1beta1>,
    #[serde(default)]
    tls: Vec<net1::IngressTLS>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BackendV1beta1 {
    service_name: Option<String>,
    service_port: Option<IntOrString>,
    resource: Option<core::TypedLocalObjectReference>,
}

#[derive(Deserialize, Default)]
struct RuleV1beta1 {
    host: Option<String>,
    http: Option<HttpV1beta1>,
}

#[derive(Deserialize, Default)]
struct HttpV1beta1 {
    #[serde(default)]
    paths: Vec<PathV1beta1>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PathV1beta1 {
    path: Option<String>,
    path_type: Option<String>,
    backend: BackendV1beta1,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct IngressStatusV1beta1 {
    load_balancer: Option<LbStatusV1beta1>,
}

#[derive(Deserialize, Default)]
struct LbStatusV1beta1 {
    #[serde(default)]
    ingress: Vec<LbIngressV1beta1>,
}

#[derive(Deserialize, Default)]
struct LbIngressV1beta1 {
    ip: Option<String>,
    hostname: Option<String>,
}

fn v1beta1_backend(
    b: BackendV1beta1,
    ctx: &Ctx,
    rel: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<IngressBackend> {
    if let Some(name) = b.service_name {
        let port = match b.service_port {
            Some(p) => port_ref(&p),
            None => {
                ctx.diag(
                    diags,
                    Severity::Warning,
                    rel,
                    format!("backend service `{name}` has no servicePort"),
                );
                PortRef::Number(0)
            }
        };
        return Some(IngressBackend::Service { name, port });
    }
    if let Some(r) = b.resource {
        return Some(IngressBackend::Resource {
            api_group: r.api_group,
            kind: r.kind,
            name: r.name,
        });
    }
    ctx.diag(
        diags,
        Severity::Warning,
        rel,
        "backend has neither serviceName nor resource".into(),
    );
    None
}

fn lower_ingress_v1beta1(
    o: IngressV1beta1,
    api: &str,
    ctx: &Ctx,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let key = key_of(&o.metadata);
    let annotations = o.metadata.annotations.unwrap_or_default();
    let (class, class_source) = ingress_class(o.spec.ingress_class_name, &annotations);
    let mut rules = Vec::new();
    for (ri, r) in o.spec.rules.into_iter().enumerate() {
        let mut paths = Vec::new();
        for (pi, p) in r
            .http
            .map(|h| h.paths)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let rel = format!("/spec/rules/{ri}/http/paths/{pi}");
            if let Some(backend) = v1beta1_backend(p.backend, ctx, &rel, diags) {
                paths.push(IngressPath {
                    path: p.path,
                    path_type: p.path_type,
                    backend,
                    source: ctx.src(&rel),
                });
            }
        }
        rules.push(IngressRule {
            host: r.host,
            paths,
            source: ctx.src(&format!("/spec/rules/{ri}")),
        });
    }
    let default_backend = o
        .spec
        .backend
        .and_then(|b| v1beta1_backend(b, ctx, "/spec/backend", diags));
    let (status_ips, status_hostnames) = status_addrs(
        o.status
            .and_then(|s| s.load_balancer)
            .map(|l| l.ingress)
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.ip, i.hostname))
            .collect(),
        ctx,
        diags,
    );
    model.cluster.ingresses.push(Ingress {
        key,
        api_version: api.to_string(),
        labels: o.metadata.labels.unwrap_or_default(),
        annotations,
        class,
        class_source,
        rules,
        default_backend,
        tls: o
            .spec
            .tls
            .into_iter()
            .map(|t| IngressTls {
                hosts: t.hosts.unwrap_or_default(),
                secret_name: t.secret_name,
            })
            .collect(),
        status_ips,
        status_hostnames,
        source: ctx.obj_src(),
    });
    true
}

#[derive(Deserialize, Default)]
struct IngressClassAny {
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(default)]
    spec: IngressClassSpecAny,
}

#[derive(Deserialize, Default)]
struct IngressClassSpecAny {
    controller: Option<String>,
}

fn lower_ingress_class(o: IngressClassAny, ctx: &Ctx, model: &mut Model) -> bool {
    let name = o.metadata.name.clone().unwrap_or_default();
    let is_default = o
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"))
        .is_some_and(|v| v == "true");
    model.cluster.ingress_classes.insert(
        name.clone(),
        IngressClass {
            name,
            controller: o.spec.controller,
            is_default,
            source: ctx.obj_src(),
        },
    );
    true
}

fn lower_namespace(o: core::Namespace, ctx: &Ctx, model: &mut Model) -> bool {
    let name = o.metadata.name.clone().unwrap_or_default();
    model.cluster.namespaces.insert(
        name.clone(),
        Namespace {
            name,
            labels: o.metadata.labels.unwrap_or_default(),
            phase: o.status.and_then(|s| s.phase),
            source: ctx.obj_src(),
        },
    );
    true
}

fn lower_config_map(
    o: core::ConfigMap,
    ctx: &Ctx,
    text: &str,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let key = key_of(&o.metadata);
    let data = o.data.unwrap_or_default();
    let data_lines: BTreeMap<String, u32> = data
        .keys()
        .map(|k| {
            (
                k.clone(),
                ctx.line_of(&format!("/data/{}", yaml::escape_key(k))),
            )
        })
        .collect();
    let cm = ConfigMap {
        key,
        labels: o.metadata.labels.unwrap_or_default(),
        data,
        data_lines,
        source: ctx.obj_src(),
    };
    crate::metallb::read_config_map(&cm, ctx, text, model, diags);
    model.cluster.config_maps.push(cm);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        text: &str,
    ) -> (
        Model,
        Vec<Diagnostic>,
        Result<Option<&'static str>, ParseError>,
    ) {
        let file = SourceFile {
            path: Arc::from("cluster/pods.yaml"),
            text: text.to_string(),
        };
        let mut model = Model::default();
        let mut diags = Vec::new();
        let r = read_cluster_file(&file, &mut model, &mut diags, &mut Vec::new());
        (model, diags, r)
    }

    fn pod(name: &str) -> String {
        format!("- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: {name}\n    namespace: ns\n  spec:\n    containers:\n    - name: c\n")
    }

    /// `read_cluster_file_fresh` (one pass on guessed heads, checked) answers as
    /// `read_cluster_file` (two passes) on texts where the guess is right, wrong, or not made,
    /// and on files that do not parse; and it takes the one pass where the guess is right.
    #[test]
    fn one_pass_on_guessed_heads_reads_as_two() {
        let pods = format!("{}{}", pod("a"), pod("b"));
        let indented = pods.replace("\n", "\n  ").replacen("- ", "  - ", 1);
        let texts: Vec<(String, bool)> = vec![
            // (text, whether the guess must be taken)
            (format!("apiVersion: v1\nitems:\n{pods}kind: List\nmetadata:\n  resourceVersion: \"\"\n"), true),
            (format!("apiVersion: v1\nitems:\n{}\nkind: PodList\n", indented.trim_end()), true),
            (format!("apiVersion: v1\nitems:\n# a comment\n{pods}kind: \"List\"\n"), true),
            (format!("apiVersion: v1\nkind: List\nitems:\n{pods}"), true),
            ("apiVersion: v1\nitems: []\nkind: List\n".into(), true),
            ("apiVersion: v1\nitems:\nkind: List\n".into(), true),
            (format!("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: ns\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nitems:\n{pods}kind: List\n---\n---\n"), true),
            // Two `items`: not streamed (by the guess and by the parser).
            (format!("apiVersion: v1\nitems:\n{pods}items:\n{pods}kind: List\n"), true),
            // The guess is wrong (a tagged sequence is one): read again in two passes.
            ("apiVersion: v1\nitems:\n  !!seq [{kind: Pod, apiVersion: v1, metadata: {name: x, namespace: ns}}]\nkind: List\n".into(), false),
            // Not guessed: JSON, an anchor, a flow mapping at the root.
            ("{\"apiVersion\": \"v1\", \"items\": [], \"kind\": \"List\"}\n".into(), false),
            (format!("apiVersion: v1\nitems: &i\n{pods}kind: List\n"), false),
            // Errors: found by the first pass before anything is lowered.
            (format!("apiVersion: v1\nitems:\n{pods}kind: List\n  bad: [\n"), false),
            (format!("apiVersion: v1\nitems:\n{pods}- {{\nkind: List\n"), false),
            // A prompt line above the output.
            (format!("user@host:~> kubectl get pods -o yaml\napiVersion: v1\nitems:\n{pods}kind: List\n"), true),
        ];
        for (text, one_pass) in texts {
            let file = SourceFile {
                path: Arc::from("cluster/pods.yaml"),
                text: text.clone(),
            };
            let (mut m1, mut d1, mut o1) = (Model::default(), Vec::new(), Vec::new());
            let r1 = read_cluster_file(&file, &mut m1, &mut d1, &mut o1);
            let (mut m2, mut d2, mut o2) = (Model::default(), Vec::new(), Vec::new());
            let r2 = read_cluster_file_fresh(&file, &mut m2, &mut d2, &mut o2);
            assert_eq!(
                format!("{r1:?}\n{:#?}\n{d1:#?}\n{o1:?}", m1.cluster),
                format!("{r2:?}\n{:#?}\n{d2:#?}\n{o2:?}", m2.cluster),
                "{text}"
            );
            // Where the guess is right, lowering with it needs no second parse.
            let text = yaml::strip_prompts(&text);
            let taken = yaml::guess_heads(&text).is_some_and(|g| {
                yaml::scan_docs(&file.path, &text).is_ok_and(|h| same_lowering(&g, &h))
            });
            assert_eq!(taken, one_pass, "{text}");
        }
    }

    /// The items of a List are lowered as they are parsed; a file that fails to parse further
    /// on still adds nothing (the first pass finds the error before anything is lowered).
    #[test]
    fn a_list_that_fails_late_adds_nothing() {
        let ok = format!(
            "apiVersion: v1\nitems:\n{}{}kind: List\n",
            pod("a"),
            pod("b")
        );
        let (m, d, r) = read(&ok);
        assert_eq!(r.unwrap(), Some("kubernetes-yaml"), "{d:?}");
        assert_eq!(m.cluster.pods.len(), 2);
        assert_eq!(m.cluster.pods[1].source.line, 11);
        let bad = format!("{ok}extra: [1\n");
        let (m, _, r) = read(&bad);
        assert!(r.is_err());
        assert!(m.cluster.pods.is_empty());
        assert!(m.cluster.collected.is_empty());
    }

    /// Issue #11: a List whose `items` is anchored or repeated cannot be streamed (an alias
    /// could copy it) and is built whole, about 40x its size: past MAX_WHOLE_LIST_BYTES the
    /// file is refused with an error at the `items` line, not read until memory runs out.
    #[test]
    fn a_large_list_with_anchored_or_repeated_items_is_refused() {
        let n = MAX_WHOLE_LIST_BYTES / pod("a").len() + 1;
        let pods = pod("a").repeat(n);
        for t in [
            format!("apiVersion: v1\nkind: List\nitems: &it\n{pods}"),
            format!("apiVersion: v1\nkind: List\nitems: []\nitems:\n{pods}"),
        ] {
            let (m, _, r) = read(&t);
            let e = r.expect_err("refused");
            assert!(m.cluster.pods.is_empty());
            assert_eq!(e.line, if t.contains("&it") { 3 } else { 4 }, "{e}");
            let msg = e.to_string();
            assert!(msg.contains("anchored or repeated `items`"), "{msg}");
            assert!(msg.contains(&format!("{} bytes", t.len())), "{msg}");
        }
        // A small one is read.
        let (m, d, r) = read(&format!(
            "apiVersion: v1\nkind: List\nitems: &it\n{}",
            pod("a")
        ));
        assert_eq!(r.unwrap(), Some("kubernetes-yaml"), "{d:?}");
        assert_eq!(m.cluster.pods.len(), 1);
    }

    /// A typed list (`PodList`) whose items lack apiVersion/kind, after a Service: the same
    /// objects, lines and order as before items were streamed.
    #[test]
    fn typed_lists_and_document_order() {
        let t = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: ns\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nitems:\n- metadata:\n    name: p\n    namespace: ns\nkind: PodList\n";
        let file = SourceFile {
            path: Arc::from("cluster/x.yaml"),
            text: t.to_string(),
        };
        let mut model = Model::default();
        let mut objects = Vec::new();
        let r = read_cluster_file(&file, &mut model, &mut Vec::new(), &mut objects);
        assert!(r.is_ok());
        assert_eq!(objects, vec!["Service ns/s", "Pod ns/p"]);
        assert_eq!(model.cluster.pods[0].source.line, 12);
        assert!(model.cluster.collected.contains("Pod"));
    }
}
