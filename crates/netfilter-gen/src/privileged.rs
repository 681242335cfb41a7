//! The one gate of kubepath's privileged tests (network namespaces, the kernel's netfilter,
//! FRR), and the namespace they run in.
//!
//! A privileged test runs when `KUBEPATH_PRIV_TESTS=1`, which `.ci/run` sets when it runs as
//! root. Without it the test prints `skipped: TEST: why` and passes, so an unprivileged
//! `cargo test` stays green and says what it did not run. With it, a test that cannot run
//! (not root, a program missing) fails: a CI run as root must never pass by skipping.

use std::io::Write;
use std::process::{Command, Stdio};

/// Whether the privileged test `test` runs here, needing `programs` (names on the PATH, or
/// paths such as `/usr/lib/frr/bgpd`) besides root. `false` (after printing `skipped: TEST: why`) when privileged tests were not asked
/// for. Panics when they were (`KUBEPATH_PRIV_TESTS=1`) but this one cannot run.
pub fn gate(test: &str, programs: &[&str]) -> bool {
    if std::env::var("KUBEPATH_PRIV_TESTS").as_deref() != Ok("1") {
        println!("skipped: {test}: KUBEPATH_PRIV_TESTS=1 is not set (privileged tests need it, and root)");
        return false;
    }
    if let Some(why) = cannot_run(programs) {
        panic!("{test}: KUBEPATH_PRIV_TESTS=1 asks for the privileged tests, but {why}");
    }
    true
}

/// Why this process cannot run a privileged test needing `programs`.
fn cannot_run(programs: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("this process is not root (uid 0)".into());
    }
    programs
        .iter()
        .find(|p| !on_path(p))
        .map(|p| format!("`{p}` is not installed"))
}

/// The effective uid is 0, read from `/proc/self/status` (`Uid: real effective saved fs`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// A network namespace of this test process, `kp-TAG-PID-N`, with `lo` up; deleted when
/// dropped (also when the test panics).
pub struct Netns(String);

impl Netns {
    /// Creates it. Panics when `ip netns add` fails.
    pub fn new(tag: &str) -> Netns {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "kp-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"], None)
            .unwrap_or_else(|e| panic!("ip link set lo up in {}: {e}", ns.0));
        ns
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Runs `args` inside it (`ip netns exec NAME args...`), `stdin` written to its input.
    /// Ok(stdout) on success, Err(stderr) otherwise.
    pub fn exec(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip netns exec {}: {e}", self.0))?;
        if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
            let _ = i.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_looked_up_on_the_path() {
        assert!(on_path("sh"));
        assert!(!on_path("kubepath-no-such-program"));
        assert!(on_path("/bin/sh"));
        assert!(!on_path("/kubepath/no/such/program"));
    }

    #[test]
    fn root_is_the_effective_uid_id_reports() {
        let id = Command::new("id").arg("-u").output().expect("id -u");
        let uid = String::from_utf8_lossy(&id.stdout).trim().to_string();
        assert_eq!(is_root(), uid == "0", "id -u says {uid}");
    }
}
