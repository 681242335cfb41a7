//! What the privileged lab tests share: the gate, the predictor binary, and the leftovers
//! check after teardown.

use std::path::PathBuf;

use kubepath_lab::RUN_ROOT;

/// The `kubepath` binary that predicts: `$KUBEPATH_BIN`, or the one next to this test's
/// target directory (`<target>/debug/deps/TEST-HASH` -> `<target>/debug/kubepath`).
pub fn kubepath_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KUBEPATH_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("kubepath");
    candidate.exists().then_some(candidate)
}

/// Namespaces and run directories of `prefix` still there (empty after a clean teardown).
pub fn leftovers(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let want = format!("{prefix}-");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&want))
        .map(String::from)
        .collect();
    let dir = PathBuf::from(RUN_ROOT).join(prefix);
    if dir.exists() {
        v.push(dir.display().to_string());
    }
    v
}
