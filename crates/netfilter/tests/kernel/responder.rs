//! Listeners in every server namespace (node and backends): TCP accept and UDP receive on
//! every port the generator uses, recording for each connection or datagram the local
//! address:port it arrived on and the peer address:port. That is the kernel's DNAT (local)
//! and SNAT/MASQUERADE (peer) as the receiving socket sees them.
//!
//! One thread per namespace: it `setns`es, opens its sockets there and polls them; no
//! process is spawned.

use super::lab::enter_netns;
use kubepath_netfilter_gen::ProbeProto;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One arrival at a server socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Index into the namespaces given to [`Responders::start`].
    pub ns: usize,
    /// Transport.
    pub proto: ProbeProto,
    /// Address:port the connection/datagram arrived on.
    pub local: SocketAddrV4,
    /// The peer as the server sees it.
    pub peer: SocketAddrV4,
}

/// The running responders; dropping stops and joins their threads.
pub struct Responders {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    handles: Vec<JoinHandle<()>>,
}

fn v4(a: &SockAddr) -> Option<SocketAddrV4> {
    match a.as_socket() {
        Some(SocketAddr::V4(v)) => Some(v),
        _ => None,
    }
}

impl Responders {
    /// Start one responder per namespace: TCP listeners on `0.0.0.0:port` and UDP sockets on
    /// each of that namespace's `udp_addrs` (a specific bind tells the datagram's local
    /// address) for every port. Returns once every socket is bound.
    pub fn start(namespaces: &[(String, Vec<Ipv4Addr>)], ports: &[u16]) -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        let mut readies = Vec::new();
        for (idx, (ns, addrs)) in namespaces.iter().enumerate() {
            let (tx, rx) = mpsc::channel::<Result<(), String>>();
            readies.push(rx);
            let (ns, addrs, ports) = (ns.clone(), addrs.clone(), ports.to_vec());
            let (stop, seen) = (stop.clone(), seen.clone());
            handles.push(std::thread::spawn(move || {
                let sockets = match open(&ns, &addrs, &ports) {
                    Ok(s) => {
                        let _ = tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                serve(idx, sockets, &stop, &seen);
            }));
        }
        let r = Responders {
            stop,
            seen,
            handles,
        };
        for rx in readies {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(format!("responder did not start: {e}")),
            }
        }
        Ok(r)
    }

    /// Take (and clear) everything seen so far.
    pub fn take(&self) -> Vec<Seen> {
        match self.seen.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

impl Drop for Responders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

struct Sock {
    s: Socket,
    proto: ProbeProto,
}

fn open(ns: &str, addrs: &[Ipv4Addr], ports: &[u16]) -> Result<Vec<Sock>, String> {
    enter_netns(ns).map_err(|e| format!("setns {ns}: {e}"))?;
    let mut out = Vec::new();
    for &port in ports {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| e.to_string())?;
        s.set_reuse_address(true).map_err(|e| e.to_string())?;
        let a = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        s.bind(&a.into())
            .map_err(|e| format!("{ns}: bind tcp {a}: {e}"))?;
        s.listen(4096).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        out.push(Sock {
            s,
            proto: ProbeProto::Tcp,
        });
        for &addr in addrs {
            let u = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
                .map_err(|e| e.to_string())?;
            u.set_reuse_address(true).map_err(|e| e.to_string())?;
            let a = SocketAddrV4::new(addr, port);
            u.bind(&a.into())
                .map_err(|e| format!("{ns}: bind udp {a}: {e}"))?;
            u.set_nonblocking(true).map_err(|e| e.to_string())?;
            out.push(Sock {
                s: u,
                proto: ProbeProto::Udp,
            });
        }
    }
    Ok(out)
}

fn serve(idx: usize, socks: Vec<Sock>, stop: &AtomicBool, seen: &Mutex<Vec<Seen>>) {
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: fds is a valid, exclusively borrowed array of pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        if n <= 0 {
            continue;
        }
        let mut got = Vec::new();
        for (i, fd) in fds.iter_mut().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            fd.revents = 0;
            let sock = &socks[i];
            match sock.proto {
                ProbeProto::Tcp => {
                    while let Ok((c, peer)) = sock.s.accept() {
                        let local = c.local_addr().ok().as_ref().and_then(v4);
                        if let (Some(local), Some(peer)) = (local, v4(&peer)) {
                            got.push(Seen {
                                ns: idx,
                                proto: ProbeProto::Tcp,
                                local,
                                peer,
                            });
                        }
                        // Close with RST: no TIME_WAIT to disturb a later probe's tuple.
                        let _ = c.set_linger(Some(Duration::ZERO));
                    }
                }
                // No ICMP responders: the kernel answers echo requests itself.
                ProbeProto::Icmp => {}
                ProbeProto::Udp => {
                    let local = sock.s.local_addr().ok().as_ref().and_then(v4);
                    while let Ok((_, peer)) = sock.s.recv_from(&mut buf) {
                        if let (Some(local), Some(peer)) = (local, v4(&peer)) {
                            got.push(Seen {
                                ns: idx,
                                proto: ProbeProto::Udp,
                                local,
                                peer,
                            });
                        }
                    }
                }
            }
        }
        if !got.is_empty() {
            match seen.lock() {
                Ok(mut g) => g.extend(got),
                Err(p) => p.into_inner().extend(got),
            }
        }
    }
}
