#![no_main]
//! The evaluator: parse arbitrary text as a ruleset (and, after a NUL byte, as `ipset save`
//! output), then trace packets built from the input's first bytes through it. No panic, no
//! endless loop; outcome probabilities are in (0, 1] and sum to 1; the indexed trace equals the
//! linear-scan trace (`trace_linear`).
//!
//! Input layout: 16 header bytes, then the ruleset text, optionally `\0` and ipset text.
//! header[0] flags: bit0 local origin, bit1 no incoming interface, bit2 IPv6, bit3 the
//! destination is one of the node's addresses, bit4 pass the ipsets, bits5-7 protocol.
//! header[1..5] source (IPv4; IPv6 repeats it), [5..9] destination, [9..11] sport,
//! [11..13] dport, [13] mark, [14] ctmark, [15] TCP flags.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kubepath_netfilter::{
    trace, trace_linear, Env, IpSets, Packet, Proto, Ruleset, TcpFlags, Trace,
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn addr(b: &[u8], v6: bool) -> IpAddr {
    let v4 = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    if v6 {
        let mut o = [0u8; 16];
        o[0] = 0xfd;
        o[12..].copy_from_slice(&b[..4]);
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(v4)
    }
}

fn check_trace(t: &Trace) {
    assert!(!t.outcomes.is_empty(), "a trace has at least one outcome");
    let mut sum = 0.0;
    for o in &t.outcomes {
        assert!(
            o.probability > 0.0 && o.probability <= 1.0 + 1e-9,
            "probability {}",
            o.probability
        );
        sum += o.probability;
    }
    assert!((sum - 1.0).abs() < 1e-6, "probabilities sum to {sum}");
}

/// What must agree between the indexed and the linear trace.
fn summary(t: &Trace) -> Vec<String> {
    t.outcomes
        .iter()
        .map(|o| {
            let steps: Vec<String> = o
                .steps
                .iter()
                .map(|s| format!("{}/{}:{}", s.table, s.chain, s.source.line))
                .collect();
            format!(
                "{:.9} {:?} dnat={:?} snat={:?} masq={} local={} steps={}",
                o.probability,
                o.verdict,
                o.dnat,
                o.snat,
                o.masquerade,
                o.local_delivery,
                steps.join(",")
            )
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (h, body) = data.split_at(16);
    let (rules_bytes, ipset_bytes) = match body.iter().position(|&b| b == 0) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let text = String::from_utf8_lossy(rules_bytes);
    let rs = match Ruleset::parse("fuzz.rules", &text) {
        Ok((rs, diags)) => {
            common::check_diagnostics(&text, &diags);
            rs
        }
        Err(e) => {
            common::check_error(&text, &e);
            return;
        }
    };
    let sets = ipset_bytes.and_then(|b| {
        let t = String::from_utf8_lossy(b);
        IpSets::parse_save("fuzz.ipset", &t).ok().map(|(s, _)| s)
    });

    let flags = h[0];
    let v6 = flags & 4 != 0;
    let proto = match flags >> 5 {
        0 | 1 | 2 => Proto::Tcp,
        3 | 4 => Proto::Udp,
        5 => Proto::Sctp,
        6 => {
            if v6 {
                Proto::Icmpv6
            } else {
                Proto::Icmp
            }
        }
        _ => Proto::Other(h[15]),
    };
    let src = addr(&h[1..5], v6);
    let dst = addr(&h[5..9], v6);
    let mut pkt = Packet::new(src, dst, proto);
    pkt.sport = u16::from_be_bytes([h[9], h[10]]);
    pkt.dport = u16::from_be_bytes([h[11], h[12]]);
    pkt.mark = u32::from(h[13]) << 8;
    pkt.ct_mark = u32::from(h[14]);
    pkt.tcp_flags = TcpFlags(h[15]);
    if flags & 2 == 0 {
        pkt.in_iface = Some(if h[13] & 1 == 0 { "eth0" } else { "cali1234" }.to_string());
    }
    let mut local = vec![addr(&[10, 0, 0, 11], v6)];
    if flags & 8 != 0 {
        local.push(dst);
    }
    let mut env = Env::new(&local);
    env.local_origin = flags & 1 != 0;
    if flags & 16 != 0 {
        env.ipsets = sets.as_ref();
    }

    let indexed = trace(&rs, &pkt, &env);
    check_trace(&indexed);
    let linear = trace_linear(&rs, &pkt, &env);
    check_trace(&linear);
    assert_eq!(summary(&indexed), summary(&linear), "indexed != linear");
});
