//! Sending probes from the client namespace, concurrently, each from its own source
//! address:port, and classifying what the client's socket saw.

use super::lab::enter_netns;
use kubepath_netfilter_gen::{Probe, ProbeProto};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What the client's socket reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientSaw {
    /// TCP handshake completed.
    Connected,
    /// ECONNREFUSED: a TCP RST or ICMP port-unreachable.
    Refused,
    /// EHOSTUNREACH: ICMP host-unreachable, host-prohibited or admin-prohibited.
    HostUnreach,
    /// ENETUNREACH: ICMP net-unreachable or net-prohibited.
    NetUnreach,
    /// Nothing within the timeout (TCP), or no error (UDP).
    Silence,
    /// Some other local error (a harness problem, reported as such).
    Other(i32),
}

fn classify(e: &io::Error) -> ClientSaw {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => ClientSaw::Refused,
        // Established, then reset by the responder (it closes with RST) before connect_timeout
        // read SO_ERROR: the handshake completed.
        Some(libc::ECONNRESET) => ClientSaw::Connected,
        Some(libc::EHOSTUNREACH) => ClientSaw::HostUnreach,
        Some(libc::ENETUNREACH) => ClientSaw::NetUnreach,
        Some(libc::ETIMEDOUT) | Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => ClientSaw::Silence,
        // A locally generated packet dropped in OUTPUT/POSTROUTING: the sender's send()
        // gets EPERM (NF_DROP in the local-out path); TCP ignores it and just times out.
        Some(libc::EPERM) => ClientSaw::Silence,
        Some(n) => ClientSaw::Other(n),
        None if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            ClientSaw::Silence
        }
        None => ClientSaw::Other(-1),
    }
}

fn one(p: &Probe, timeout: Duration, keep: &Mutex<Vec<Socket>>) -> ClientSaw {
    let src = SocketAddrV4::new(p.src, p.sport);
    let dst = SocketAddrV4::new(p.dst, p.dport);
    let (ty, proto) = match p.proto {
        ProbeProto::Tcp => (Type::STREAM, Protocol::TCP),
        ProbeProto::Udp => (Type::DGRAM, Protocol::UDP),
        // An unprivileged "ping socket" (the lab sets ping_group_range in the client
        // namespace): the bound port is the echo identifier, the kernel fills the checksum.
        ProbeProto::Icmp => (Type::DGRAM, Protocol::ICMPV4),
    };
    let s = match Socket::new(Domain::IPV4, ty, Some(proto)) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    let _ = s.set_reuse_address(true);
    // Closing with RST leaves no TIME_WAIT behind.
    let _ = s.set_linger(Some(Duration::ZERO));
    if let Err(e) = s.bind(&src.into()) {
        return ClientSaw::Other(e.raw_os_error().unwrap_or(-2));
    }
    match p.proto {
        ProbeProto::Tcp => match s.connect_timeout(&dst.into(), timeout) {
            Ok(()) => {
                // Keep the connection open until the responders had time to accept it.
                match keep.lock() {
                    Ok(mut k) => k.push(s),
                    Err(poisoned) => poisoned.into_inner().push(s),
                }
                ClientSaw::Connected
            }
            Err(e) => classify(&e),
        },
        ProbeProto::Udp | ProbeProto::Icmp => {
            // IP_RECVERR: without it Linux reports only "hard" ICMP errors (port/protocol
            // unreachable, prohibited) on a UDP socket; host/net unreachable are soft errors
            // (icmp_err_convert[].fatal == 0 in net/ipv4/icmp.c) that __udp4_lib_err drops
            // unless the socket asked for them.
            let one: libc::c_int = 1;
            // SAFETY: valid fd, option value points to a c_int of the given size.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_RECVERR,
                    &one as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            if let Err(e) = s.connect(&dst.into()) {
                return classify(&e);
            }
            let mut payload = Vec::new();
            if p.proto == ProbeProto::Icmp {
                // Echo request header: type 8, code 0, checksum, identifier (set by the
                // kernel to the bound port), sequence 1.
                payload.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 1]);
            }
            payload.resize(payload.len() + p.udp_payload as usize, b'k');
            if let Err(e) = s.send(&payload) {
                return classify(&e);
            }
            // The responders never answer UDP, so what can arrive is an ICMP error, reported
            // on the connected socket (or, for ICMP, the echo reply).
            let _ = s.set_read_timeout(Some(timeout));
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            match s.recv(&mut buf) {
                Ok(_) => ClientSaw::Silence,
                Err(e) => classify(&e),
            }
        }
    }
}

/// Send all probes from `client_ns`, up to `threads` at a time; results in probe order.
/// TCP connections that were established are closed only after `settle` (so the server side
/// can record them).
pub fn send_all(
    client_ns: &str,
    probes: &[Probe],
    threads: usize,
    timeout: Duration,
    settle: Duration,
) -> Result<Vec<ClientSaw>, String> {
    let results: Vec<Mutex<Option<ClientSaw>>> = probes.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let keep: Mutex<Vec<Socket>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let n = threads.min(probes.len()).max(1);
    std::thread::scope(|sc| {
        for _ in 0..n {
            sc.spawn(|| {
                if let Err(e) = enter_netns(client_ns) {
                    if let Ok(mut g) = errors.lock() {
                        g.push(format!("setns {client_ns}: {e}"));
                    }
                    return;
                }
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= probes.len() {
                        break;
                    }
                    let r = one(&probes[i], timeout, &keep);
                    if let Ok(mut g) = results[i].lock() {
                        *g = Some(r);
                    }
                }
            });
        }
    });
    if let Ok(e) = errors.into_inner() {
        if let Some(first) = e.first() {
            return Err(first.clone());
        }
    }
    std::thread::sleep(settle);
    drop(keep);
    results
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.into_inner()
                .ok()
                .flatten()
                .ok_or_else(|| format!("probe {i} produced no result"))
        })
        .collect()
}
