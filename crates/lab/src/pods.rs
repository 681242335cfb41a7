//! The pods' HTTP servers: one listener per pod, bound inside the pod's namespace.
//!
//! A thread enters a network namespace with `setns(2)` (per thread for CLONE_NEWNET); a socket
//! belongs to the namespace it was created in, so the listener and every connection the pod
//! opens live in the pod's namespace. Each accepted connection gets its own thread (which
//! enters the namespace again before opening the upstream connection).
//!
//! * A backend pod answers `pod=<ns>/<name> client=<peer address>`.
//! * An ingress pod behaves like ingress-nginx with one Ingress rule: for `Host: lab.kubepath.test`
//!   it proxies `GET /` to one of the backend Service's endpoints and answers
//!   `pod=<ns>/<name> client=<peer address> backend=<backend pod>`; any other host gets 404
//!   from the "default backend", as nginx's default server would. Like ingress-nginx, it
//!   connects to the endpoint's pod IP directly (its Lua balancer gets the EndpointSlices from
//!   the controller; it does not go through the Service's cluster IP and kube-proxy), choosing
//!   round-robin, the controller's default `load-balance: round_robin`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::scenario::{Scenario, Tier, HOST};
use crate::sh::{io_err, LabError, Result};

/// Moves the calling thread into the network namespace `/run/netns/<name>`.
pub fn enter_netns(name: &str) -> Result<()> {
    let path = Path::new("/run/netns").join(name);
    let f = File::open(&path).map_err(io_err(path.display()))?;
    enter_netns_fd(&f).map_err(io_err(path.display()))
}

fn enter_netns_fd(f: &File) -> std::io::Result<()> {
    // SAFETY: setns on a valid fd of a network namespace; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The running servers; [`PodServers::stop`] (or drop) ends them.
pub struct PodServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

struct PodInfo {
    key: String,
    netns: Arc<File>,
    tier: Tier,
    /// Backend endpoints (ingress pods only), chosen round-robin.
    upstreams: Vec<SocketAddrV4>,
    next: AtomicUsize,
}

impl PodServers {
    /// Starts one listener per pod of `scenario` (namespaces `<prefix>-<pod>`).
    pub fn start(prefix: &str, scenario: &Scenario) -> Result<PodServers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut ready = Vec::new();
        for pod in &scenario.pods {
            let ns = crate::lab::pod_ns(prefix, pod);
            let path = Path::new("/run/netns").join(&ns);
            let netns = Arc::new(File::open(&path).map_err(io_err(path.display()))?);
            let upstreams = match pod.tier {
                Tier::Ingress => scenario
                    .backend_pods()
                    .map(|b| SocketAddrV4::new(b.ip, b.port))
                    .collect(),
                Tier::Backend => Vec::new(),
            };
            let info = Arc::new(PodInfo {
                key: pod.key(),
                netns,
                tier: pod.tier,
                upstreams,
                next: AtomicUsize::new(0),
            });
            let addr = SocketAddrV4::new(pod.ip, pod.port);
            let stop2 = stop.clone();
            let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
            threads.push(std::thread::spawn(move || {
                let listener = match bind_in(&info.netns, addr) {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{}: listen on {addr}: {e}", info.key)));
                        return;
                    }
                };
                accept_loop(listener, info, stop2);
            }));
            ready.push(rx);
        }
        let servers = PodServers { stop, threads };
        for rx in ready {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(LabError::Other(e)),
                Err(_) => return Err(LabError::Other("a pod server thread died".into())),
            }
        }
        Ok(servers)
    }

    /// Stops every listener and waits for the accept loops to end.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for PodServers {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn bind_in(netns: &File, addr: SocketAddrV4) -> std::io::Result<TcpListener> {
    enter_netns_fd(netns)?;
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(addr).into())?;
    // Room for every connection of a whole observation batch.
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn accept_loop(listener: TcpListener, info: Arc<PodInfo>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let info = info.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, peer, &info);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Reads an HTTP request head (up to the blank line) and returns the Host header's value.
fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("host")
            .then(|| v.trim().to_string())
    }))
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(msg.as_bytes())
}

fn handle(mut stream: TcpStream, peer: SocketAddr, info: &PodInfo) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let host = read_request(&mut stream)?;
    let client = peer.ip();
    match info.tier {
        Tier::Backend => respond(
            &mut stream,
            "200 OK",
            &format!("pod={} client={client}\n", info.key),
        ),
        Tier::Ingress => {
            let host_only = host
                .as_deref()
                .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
            if host_only.as_deref() != Some(HOST) {
                return respond(&mut stream, "404 Not Found", "default backend - 404\n");
            }
            enter_netns_fd(&info.netns)?;
            match proxy_to_backend(info) {
                Ok(backend) => respond(
                    &mut stream,
                    "200 OK",
                    &format!("pod={} client={client} backend={backend}\n", info.key),
                ),
                Err(e) => respond(
                    &mut stream,
                    "502 Bad Gateway",
                    &format!("pod={} client={client} upstream-error={e}\n", info.key),
                ),
            }
        }
    }
}

/// GET / from the next backend endpoint (round-robin); returns the answering pod's name.
fn proxy_to_backend(info: &PodInfo) -> std::io::Result<String> {
    if info.upstreams.is_empty() {
        return Err(std::io::Error::other("no endpoints"));
    }
    let i = info.next.fetch_add(1, Ordering::SeqCst) % info.upstreams.len();
    let addr = SocketAddr::V4(info.upstreams[i]);
    let mut up = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    up.set_read_timeout(Some(Duration::from_secs(3)))?;
    up.write_all(b"GET / HTTP/1.1\r\nHost: backend.web.svc\r\nConnection: close\r\n\r\n")?;
    let mut resp = String::new();
    up.read_to_string(&mut resp)?;
    Ok(parse_body_field(&resp, "pod").unwrap_or_else(|| "?".into()))
}

/// The value of `key=` in an HTTP response's body (`pod=web/backend-0 client=...`).
pub fn parse_body_field(response: &str, key: &str) -> Option<String> {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or(response);
    body.split_whitespace().find_map(|w| {
        let (k, v) = w.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_fields() {
        let r =
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\npod=web/backend-0 client=192.168.1.10\n";
        assert_eq!(parse_body_field(r, "pod").as_deref(), Some("web/backend-0"));
        assert_eq!(
            parse_body_field(r, "client").as_deref(),
            Some("192.168.1.10")
        );
        assert_eq!(parse_body_field(r, "backend"), None);
    }
}
