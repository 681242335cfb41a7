//! Running the system tools the lab drives (`ip`, `iptables-restore`, `nft`, `conntrack`,
//! `vtysh`, FRR daemons), always inside a named network namespace of the lab or on files of
//! the lab's run directory. Nothing here touches the host's own namespace: every network
//! command is either `ip -n NS ...` or `ip netns exec NS ...`.

use std::io::Write;
use std::process::{Command, Stdio};

/// Everything that can go wrong while building, observing or tearing down a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the lab needs root (uid 0): network namespaces, FRR and iptables are privileged")]
    NotRoot,
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("unknown scenario `{0}` (known: {1})")]
    UnknownScenario(String, String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.to_string();
    move |source| LabError::Io { path, source }
}

/// Fails with [`LabError::NotRoot`] unless the effective uid is 0.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

fn render(args: &[&str]) -> String {
    args.join(" ")
}

/// Runs `args[0] args[1..]`, feeding `stdin` if given; returns stdout or a [`LabError::Command`].
pub fn run_with_input(args: &[&str], stdin: Option<&str>) -> Result<String> {
    let (prog, rest) = args
        .split_first()
        .ok_or_else(|| LabError::Other("empty command".into()))?;
    let mut cmd = Command::new(prog);
    cmd.args(rest)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| LabError::Spawn {
        cmd: render(args),
        source,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|source| LabError::Spawn {
                cmd: render(args),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| LabError::Spawn {
        cmd: render(args),
        source,
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            cmd: render(args),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs a command and returns its stdout.
pub fn run(args: &[&str]) -> Result<String> {
    run_with_input(args, None)
}

/// Runs `ip -n NS <args>`.
pub fn ip(ns: &str, args: &[&str]) -> Result<String> {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    run(&v)
}

/// Runs `ip netns exec NS <args>`, optionally feeding stdin.
pub fn in_ns(ns: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    run_with_input(&v, stdin)
}

/// Sets a sysctl inside namespace `ns` (net.* sysctls are per network namespace).
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let kv = format!("{key}={value}");
    in_ns(ns, &["sysctl", "-q", "-w", &kv], None).map(|_| ())
}

/// Names of the network namespaces that exist now (`ip netns list`).
pub fn list_netns() -> Result<Vec<String>> {
    let out = run(&["ip", "netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}
