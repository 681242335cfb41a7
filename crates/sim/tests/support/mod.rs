//! Shared by the sim crate's tests: the trace fixtures as in-memory file lists, edited in
//! place where a test needs a fault the fixtures do not have.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use kubepath_ingest::load_files;
use kubepath_model::Model;

/// A snapshot as (relative path, bytes), sorted.
pub type Files = Vec<(String, Vec<u8>)>;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file of `fixtures/trace/<case>`.
pub fn files(case: &str) -> Files {
    files_of(&root().join("fixtures/trace").join(case))
}

/// Every file below `base`.
pub fn files_of(base: &Path) -> Files {
    fn walk(base: &Path, dir: &Path, out: &mut Files) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(base, base, &mut out);
    out.sort();
    out
}

/// The model of a file list that must load.
pub fn model(files: Files) -> Model {
    load_files(files).expect("the snapshot loads").model
}

/// Replaces the first `from` in `path` by `to` (which must be there).
pub fn edit(files: &mut [(String, Vec<u8>)], path: &str, from: &str, to: &str) {
    let f = files.iter_mut().find(|(p, _)| p == path).unwrap();
    let text = String::from_utf8(f.1.clone()).unwrap();
    assert!(text.contains(from), "{path} has no {from:?}");
    f.1 = text.replacen(from, to, 1).into_bytes();
}

/// After paths were edited out of a router's `show ip bgp` text, set its printed `Total number
/// of BGP Routes: N` to the paths left (lines starting with `*`), as the router would print
/// it; a total above the paths listed means a cut table (unknown).
pub fn recount_bgp_total(files: &mut [(String, Vec<u8>)], path: &str) {
    let f = files.iter_mut().find(|(p, _)| p == path).unwrap();
    let text = String::from_utf8(f.1.clone()).unwrap();
    let n = text
        .lines()
        .filter(|l| l.trim_start().starts_with('*'))
        .count();
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.strip_prefix("Total number of BGP Routes: ") {
            Some(_) => format!("Total number of BGP Routes: {n}"),
            None => l.to_string(),
        })
        .collect();
    f.1 = (out.join("\n") + "\n").into_bytes();
}
