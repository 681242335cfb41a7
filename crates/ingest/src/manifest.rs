//! The snapshot manifest `kubepath.yaml` (docs/snapshot.md).

use std::sync::Arc;

use kubepath_model::manifest::*;
use kubepath_model::SourceRef;
use serde_json::Value;

use crate::diag::{Diagnostic, ParseError, Severity, SourceFile};
use crate::yaml;

fn pe(file: &Arc<str>, line: u32, expected: &str, found: String) -> ParseError {
    ParseError {
        file: file.clone(),
        line,
        column: 1,
        expected: expected.into(),
        found,
    }
}

/// Read `kubepath.yaml`. Structural mistakes are errors (the manifest is written by hand,
/// for kubepath, so a typo should stop the run rather than be guessed around).
pub fn read_manifest(
    file: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Result<Manifest, ParseError> {
    let docs = yaml::parse_docs(&file.path, &file.text, diags)?;
    let mut m = Manifest {
        source: Some(SourceRef::new(file.path.clone(), 0)),
        ..Manifest::default()
    };
    let Some(doc) = docs.first() else {
        return Ok(m);
    };
    let f = &file.path;
    let line = |p: &str| doc.lines.get(p).unwrap_or(doc.line);
    let Some(root) = doc.value.as_object() else {
        return Err(pe(
            f,
            doc.line,
            "a mapping (apiVersion, kind, clients, interfaces, routers)",
            "something else".into(),
        ));
    };
    for k in root.keys() {
        if !["apiVersion", "kind", "clients", "interfaces", "routers"].contains(&k.as_str()) {
            diags.push(Diagnostic {
                severity: Severity::Warning,
                file: f.clone(),
                line: line(&format!("/{k}")),
                column: 1,
                message: format!("kubepath.yaml: unknown key `{k}` ignored"),
            });
        }
    }
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(clients) = root.get("clients") {
        let Some(arr) = clients.as_array() else {
            return Err(pe(
                f,
                line("/clients"),
                "a list of client entries",
                "something else".into(),
            ));
        };
        for (i, c) in arr.iter().enumerate() {
            let p = format!("/clients/{i}");
            let Some(obj) = c.as_object() else {
                return Err(pe(
                    f,
                    line(&p),
                    "a client entry (name, prefixes, entry)",
                    "something else".into(),
                ));
            };
            for k in obj.keys() {
                if !["name", "prefixes", "entry"].contains(&k.as_str()) {
                    return Err(pe(
                        f,
                        line(&format!("{p}/{k}")),
                        "a client key: name, prefixes or entry",
                        format!("`{k}`"),
                    ));
                }
            }
            // A client without prefixes would silently switch the flow checks off for it.
            let listed = c.get("prefixes").and_then(Value::as_array);
            if listed.is_none_or(|a| a.is_empty()) {
                return Err(pe(
                    f,
                    line(&format!("{p}/prefixes")),
                    "`prefixes:` with at least one CIDR prefix or address",
                    if c.get("prefixes").is_none() {
                        "a client without prefixes".into()
                    } else {
                        "no prefix".into()
                    },
                ));
            }
            let mut prefixes = Vec::new();
            for (j, x) in c
                .get("prefixes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let t = x.as_str().unwrap_or("");
                let net = t
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        pe(
                            f,
                            line(&format!("{p}/prefixes/{j}")),
                            "a CIDR prefix",
                            format!("`{t}`"),
                        )
                    })?;
                prefixes.push(net);
            }
            let mut entry = Vec::new();
            for (j, e) in c
                .get("entry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let Some(router) = str_of(e, "router") else {
                    return Err(pe(
                        f,
                        line(&format!("{p}/entry/{j}")),
                        "`router: NAME`",
                        "an entry without router".into(),
                    ));
                };
                entry.push(EntryPoint {
                    router,
                    vrf: str_of(e, "vrf"),
                });
            }
            m.clients.push(ClientEntry {
                name: str_of(c, "name"),
                prefixes,
                entry,
                source: SourceRef::new(f.clone(), line(&p)),
            });
        }
    }
    if let Some(ifs) = root.get("interfaces") {
        let Some(arr) = ifs.as_array() else {
            return Err(pe(
                f,
                line("/interfaces"),
                "a list of interface entries",
                "something else".into(),
            ));
        };
        for (i, e) in arr.iter().enumerate() {
            let p = format!("/interfaces/{i}");
            let node = str_of(e, "node");
            let router = str_of(e, "router");
            if node.is_some() == router.is_some() {
                return Err(pe(
                    f,
                    line(&p),
                    "exactly one of `node` and `router`",
                    "both or neither".into(),
                ));
            }
            let (Some(interface), Some(vrf)) = (str_of(e, "interface"), str_of(e, "vrf")) else {
                return Err(pe(
                    f,
                    line(&p),
                    "`interface` and `vrf`",
                    "an entry missing one".into(),
                ));
            };
            m.interfaces.push(InterfaceVrf {
                node,
                router,
                interface,
                vrf,
                source: SourceRef::new(f.clone(), line(&p)),
            });
        }
    }
    if let Some(routers) = root.get("routers") {
        let Some(obj) = routers.as_object() else {
            return Err(pe(
                f,
                line("/routers"),
                "a mapping of router name to settings",
                "something else".into(),
            ));
        };
        for (name, s) in obj {
            let p = format!("/routers/{}", yaml::escape_key(name));
            let ecmp_hash = match s.get("ecmp_hash").and_then(Value::as_str) {
                None | Some("l4") => EcmpHash::L4,
                Some("l3") => EcmpHash::L3,
                Some("per-packet") => EcmpHash::PerPacket,
                Some(o) => {
                    return Err(pe(
                        f,
                        line(&format!("{p}/ecmp_hash")),
                        "l4, l3 or per-packet",
                        format!("`{o}`"),
                    ))
                }
            };
            m.routers.insert(
                name.clone(),
                RouterSettings {
                    ecmp_hash,
                    source: Some(SourceRef::new(f.clone(), line(&p))),
                },
            );
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Manifest, ParseError> {
        let f = SourceFile {
            path: Arc::from("kubepath.yaml"),
            text: text.to_string(),
        };
        read_manifest(&f, &mut Vec::new())
    }

    #[test]
    fn full_manifest() {
        let m = read(
            "apiVersion: kubepath.dev/v1\nkind: Manifest\nclients:\n  - name: office-lan\n    prefixes: [10.210.150.80/28, 10.1.1.1]\n    entry:\n      - router: DC173-SLX-L1A\n        vrf: DC173_CCD1_om_vr\n      - router: DC173-SLX-L1B\ninterfaces:\n  - node: \"*\"\n    interface: ccd_ecfe_om\n    vrf: OM\n  - node: n1\n    interface: ccd_ecfe_om\n    vrf: OTHER\nrouters:\n  DC173-SLX-L1A:\n    ecmp_hash: per-packet\n",
        )
        .unwrap();
        assert_eq!(m.clients.len(), 1);
        assert_eq!(m.clients[0].prefixes.len(), 2);
        assert_eq!(m.clients[0].entry[1].vrf, None);
        assert_eq!(m.clients[0].source.line, 4);
        assert_eq!(m.node_interface_vrf("n1", "ccd_ecfe_om"), Some("OTHER"));
        assert_eq!(m.node_interface_vrf("n2", "ccd_ecfe_om"), Some("OM"));
        assert_eq!(m.ecmp_hash("DC173-SLX-L1A"), EcmpHash::PerPacket);
        assert_eq!(m.ecmp_hash("DC173-SLX-L1B"), EcmpHash::L4);
    }

    #[test]
    fn mistakes_are_errors_with_lines() {
        let e = read("clients:\n  - prefixes: [10.0.0.0/33]\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = read("routers:\n  r1:\n    ecmp_hash: random\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = read("interfaces:\n  - interface: eth0\n    vrf: X\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(read("").unwrap().clients.is_empty());
        // A client whose prefixes are misspelt, missing or empty would silently switch the
        // flow checks off: an error naming the line.
        let e = read("clients:\n  - name: lan\n    prefixs: [10.0.0.0/24]\n").unwrap_err();
        assert_eq!((e.line, e.found.as_str()), (3, "`prefixs`"));
        let e = read("clients:\n  - name: lan\n").unwrap_err();
        assert!(e.expected.contains("at least one"), "{e:?}");
        let e = read("clients:\n  - name: lan\n    prefixes: []\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = read("clients:\n  - 10.0.0.0/24\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
