//! Snapshot discovery: walk the directory (docs/snapshot.md), read every file, recognise its
//! format by content, dispatch by the directory it sits in, and record what each file was read
//! as.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubepath_model::Model;

use crate::diag::{Diagnostic, ParseError, Severity, SourceFile};

/// What one file was read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Path relative to the snapshot root, `/`-separated.
    pub path: String,
    /// The format recognised (`kubernetes-yaml`, `iptables-save`, ...), or `None` when the file
    /// was not recognised (a warning says so) or deliberately skipped (`skipped` says why).
    pub format: Option<String>,
    /// The objects it contributed (`Service ns/name`, `node X`, ...).
    pub objects: Vec<String>,
    /// Why the file was not read, when it was skipped on purpose (documentation, hidden).
    pub skipped: Option<String>,
}

/// A loaded snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub root: PathBuf,
    pub model: Model,
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<FileReport>,
}

/// Why a snapshot could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Read every file of the snapshot directory `dir`.
pub fn load_snapshot(dir: &Path) -> Result<Snapshot, IngestError> {
    let meta = std::fs::metadata(dir).map_err(|e| IngestError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    if !meta.is_dir() {
        return Err(IngestError::Io {
            path: dir.display().to_string(),
            message: "not a directory (a snapshot is a directory, see docs/snapshot.md)".into(),
        });
    }
    let mut paths = Vec::new();
    walk(dir, dir, &mut paths)?;
    paths.sort();
    let mut files = Vec::new();
    for rel in paths {
        let full = dir.join(&rel);
        let bytes = std::fs::read(&full).map_err(|e| IngestError::Io {
            path: full.display().to_string(),
            message: e.to_string(),
        })?;
        files.push((rel, bytes));
    }
    let mut snap = load_files(files)?;
    snap.root = dir.to_path_buf();
    Ok(snap)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), IngestError> {
    let rd = std::fs::read_dir(dir).map_err(|e| IngestError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    for entry in rd {
        let entry = entry.map_err(|e| IngestError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let p = entry.path();
        let ft = entry.file_type().map_err(|e| IngestError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        // Follow symlinks to files/dirs (metadata follows them).
        let is_dir = ft.is_dir() || (ft.is_symlink() && p.is_dir());
        if is_dir {
            walk(root, &p, out)?;
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push(rel);
        }
    }
    Ok(())
}

/// Where a file sits in the layout.
enum Place<'a> {
    Manifest,
    Cluster,
    Node(&'a str),
    Router(&'a str),
    Dns,
    Nginx(Option<(&'a str, &'a str)>),
    Docs,
    Hidden,
    Outside,
}

fn place(rel: &str) -> Place<'_> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.iter().any(|p| p.starts_with('.')) {
        return Place::Hidden;
    }
    let last = parts.last().copied().unwrap_or("");
    let lower = last.to_ascii_lowercase();
    let is_doc = lower.starts_with("readme") || lower.ends_with(".md") || lower == "license";
    match parts.as_slice() {
        ["kubepath.yaml"] | ["kubepath.yml"] => Place::Manifest,
        ["cluster", ..] if !is_doc => Place::Cluster,
        ["nodes", node, _, ..] if !is_doc => Place::Node(node),
        ["routers", r, _, ..] if !is_doc => Place::Router(r),
        ["dns", _, ..] if !is_doc => Place::Dns,
        ["ingress", ns, pod, _, ..] if !is_doc => Place::Nginx(Some((ns, pod))),
        ["ingress", _] if !is_doc => Place::Nginx(None),
        _ if is_doc => Place::Docs,
        _ => Place::Outside,
    }
}

/// Load a snapshot from in-memory files (`relative path`, contents). Used by
/// [`load_snapshot`] and by tests.
pub fn load_files(files: Vec<(String, Vec<u8>)>) -> Result<Snapshot, IngestError> {
    let mut model = Model::default();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut reports = Vec::new();
    for (rel, bytes) in files {
        let path: Arc<str> = Arc::from(rel.as_str());
        let mut report = FileReport {
            path: rel.clone(),
            format: None,
            objects: Vec::new(),
            skipped: None,
        };
        let pl = place(&rel);
        match pl {
            Place::Hidden => {
                report.skipped = Some("hidden file".into());
                reports.push(report);
                continue;
            }
            Place::Docs => {
                report.skipped = Some("documentation, not a command output".into());
                reports.push(report);
                continue;
            }
            Place::Outside => {
                // Not a command output kubepath knows where to put (tools, notes): said, not
                // warned about, so a snapshot with helper files still reads cleanly.
                diags.push(Diagnostic {
                    severity: Severity::Note,
                    file: path.clone(),
                    line: 0,
                    column: 0,
                    message: "not part of the snapshot layout (kubepath.yaml, cluster/, nodes/<node>/, routers/<router>/, dns/, ingress/): not read".into(),
                });
                report.skipped = Some("outside the snapshot layout".into());
                reports.push(report);
                continue;
            }
            _ => {}
        }
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(_) => {
                diags.push(Diagnostic {
                    severity: Severity::Warning,
                    file: path.clone(),
                    line: 0,
                    column: 0,
                    message: "not UTF-8 text: not read".into(),
                });
                reports.push(report);
                continue;
            }
        };
        let file = SourceFile {
            path: path.clone(),
            text,
        };
        let recognised: Option<&'static str> = match pl {
            Place::Manifest => {
                model.manifest = crate::manifest::read_manifest(&file, &mut diags)?;
                report.objects.push("manifest".into());
                Some("kubepath-manifest")
            }
            Place::Cluster => {
                crate::k8s::read_cluster_file(&file, &mut model, &mut diags, &mut report.objects)?
            }
            Place::Node(node) => {
                let r = crate::dispatch::read_node_file(node, &file, &mut model, &mut diags)?;
                if r.is_some() {
                    report.objects.push(format!("node {node}"));
                }
                r
            }
            Place::Router(router) => {
                let r = crate::dispatch::read_router_file(router, &file, &mut model, &mut diags)?;
                if r.is_some() {
                    report.objects.push(format!("router {router}"));
                }
                r
            }
            Place::Dns => {
                let before = model.dns.records.len();
                let r = crate::dispatch::read_dns_file(&file, &mut model, &mut diags)?;
                let mut seen = std::collections::BTreeSet::new();
                for rec in model.dns.records.iter().skip(before) {
                    if seen.insert((rec.name.clone(), rec.data.type_name().to_string())) {
                        report
                            .objects
                            .push(format!("{} {}", rec.data.type_name(), rec.name));
                    }
                }
                r
            }
            Place::Nginx(pod) => {
                let r = crate::dispatch::read_nginx_file(pod, &file, &mut model, &mut diags)?;
                if r.is_some() {
                    report.objects.push(match pod {
                        Some((ns, p)) => format!("nginx.conf of pod {ns}/{p}"),
                        None => "nginx.conf (every controller pod)".into(),
                    });
                }
                r
            }
            Place::Docs | Place::Hidden | Place::Outside => None,
        };
        match recognised {
            Some(fmt) => report.format = Some(fmt.to_string()),
            None => diags.push(Diagnostic {
                severity: Severity::Warning,
                file: path.clone(),
                line: 0,
                column: 0,
                message: format!(
                    "format not recognised for a file under {}: not read",
                    rel.split('/').next().unwrap_or("")
                ),
            }),
        }
        reports.push(report);
    }
    crate::metallb::finish(&mut model, &mut diags);
    crate::dispatch::finish(&mut model, &mut diags);
    Ok(Snapshot {
        root: PathBuf::new(),
        model,
        diagnostics: diags,
        files: reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn layout_and_skips() {
        let snap = load_files(files(&[
            ("README.md", "# notes"),
            (".tools/gen.py", "print(1)"),
            ("tools/gen.py", "print(1)"),
            (
                "cluster/ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
            ),
            ("cluster/junk.txt", "hello world\n"),
            ("kubepath.yaml", "clients: []\n"),
        ]))
        .unwrap();
        let by: std::collections::BTreeMap<&str, &FileReport> =
            snap.files.iter().map(|f| (f.path.as_str(), f)).collect();
        assert_eq!(
            by["README.md"].skipped.as_deref(),
            Some("documentation, not a command output")
        );
        assert_eq!(by[".tools/gen.py"].skipped.as_deref(), Some("hidden file"));
        assert!(by["tools/gen.py"].skipped.is_some());
        assert_eq!(
            by["cluster/ns.yaml"].format.as_deref(),
            Some("kubernetes-yaml")
        );
        assert_eq!(by["cluster/ns.yaml"].objects, vec!["Namespace a"]);
        assert_eq!(by["cluster/junk.txt"].format, None);
        assert_eq!(
            by["kubepath.yaml"].format.as_deref(),
            Some("kubepath-manifest")
        );
        let warnings: Vec<&str> = snap
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| &*d.file)
            .collect();
        assert_eq!(warnings, vec!["cluster/junk.txt"]);
        assert!(snap.model.cluster.namespaces.contains_key("a"));
    }

    #[test]
    fn malformed_cluster_file_is_fatal() {
        let e = load_files(files(&[("cluster/x.yaml", "a: [1,\n")])).unwrap_err();
        match e {
            IngestError::Parse(p) => assert_eq!(&*p.file, "cluster/x.yaml"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_directory() {
        assert!(matches!(
            load_snapshot(Path::new("/nonexistent/kubepath/snapshot")),
            Err(IngestError::Io { .. })
        ));
    }
}
