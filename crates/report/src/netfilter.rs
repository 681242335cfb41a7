//! `kubepath netfilter trace` output: the versioned JSON DTOs (schema
//! `kubepath.netfilter-trace/v1`, docs/netfilter-trace.md) and the text walkthrough.
//!
//! Engine types are converted by hand so the schema does not change when the engine does.

use std::fmt::Write as _;

use kubepath_netfilter::{Diagnostic, NatTarget, Outcome, Packet, Proto, Step, Trace, Verdict};
use serde::Serialize;

/// The schema identifier written in every document.
pub const SCHEMA: &str = "kubepath.netfilter-trace/v1";

/// The whole document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetfilterTraceDto {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The packet as given.
    pub packet: PacketDto,
    /// Distinct outcomes, most probable first; probabilities sum to 1.
    pub outcomes: Vec<OutcomeDto>,
    /// Parser diagnostics (unsupported rules kept opaque, ...).
    pub diagnostics: Vec<DiagnosticDto>,
}

/// A packet's addressing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PacketDto {
    pub proto: String,
    pub src: String,
    pub dst: String,
    /// `null` for protocols without ports.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub in_iface: Option<String>,
    /// nfmark, hex (`0x4000`).
    pub mark: String,
}

/// One outcome.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutcomeDto {
    pub probability: f64,
    /// `ACCEPT`, `DROP`, `REJECT` or `UNKNOWN`.
    pub verdict: &'static str,
    /// For REJECT: the `--reject-with` type.
    pub reject_with: Option<String>,
    /// New destination after nat PREROUTING/OUTPUT: `ip:port`, `[v6]:port`, `ip`; `null`
    /// when unchanged.
    pub dnat: Option<String>,
    /// True when nat POSTROUTING (or INPUT) applied MASQUERADE or SNAT.
    pub masquerade: bool,
    /// New source (`ip:port`, `ip`, `?:port` when MASQUERADE's address is unknown); `null`
    /// when unchanged.
    pub snat: Option<String>,
    /// Delivered locally (INPUT) rather than forwarded/sent.
    pub local_delivery: bool,
    /// Outgoing interface when forwarded and known.
    pub out_iface: Option<String>,
    /// Why the verdict is UNKNOWN; `null` otherwise.
    pub reason: Option<String>,
    /// `file:line` of the rule that made it UNKNOWN, when one did.
    pub reason_rule: Option<String>,
    /// The packet as it leaves this node's hooks.
    pub packet: PacketDto,
    /// Matched rules in order.
    pub steps: Vec<StepDto>,
    /// Modelling remarks.
    pub notes: Vec<String>,
}

/// One matched rule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepDto {
    pub table: &'static str,
    pub chain: String,
    pub file: String,
    pub line: u32,
    pub text: String,
    /// For a rule with a `statistic` match: this branch's probability at the rule.
    pub probability: Option<f64>,
}

/// A parser diagnostic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DiagnosticDto {
    pub file: String,
    pub line: u32,
    pub message: String,
}

fn nat_str(n: &Option<NatTarget>) -> Option<String> {
    n.as_ref().map(|t| t.to_string())
}

/// Convert a packet.
pub fn packet_dto(p: &Packet) -> PacketDto {
    let ports = matches!(p.proto, Proto::Tcp | Proto::Udp | Proto::Sctp);
    PacketDto {
        proto: p.proto.name(),
        src: p.src.to_string(),
        dst: p.dst.to_string(),
        sport: ports.then_some(p.sport),
        dport: ports.then_some(p.dport),
        in_iface: p.in_iface.clone(),
        mark: format!("{:#x}", p.mark),
    }
}

fn step_dto(s: &Step) -> StepDto {
    StepDto {
        table: s.table.name(),
        chain: s.chain.to_string(),
        file: s.source.file.to_string(),
        line: s.source.line,
        text: s.text.clone(),
        probability: s.branch_probability,
    }
}

fn outcome_dto(o: &Outcome) -> OutcomeDto {
    let (reason, reason_rule, reject_with) = match &o.verdict {
        Verdict::Unknown { reason, rule } => (
            Some(reason.clone()),
            rule.as_ref().map(|r| r.to_string()),
            None,
        ),
        Verdict::Reject { with } => (None, None, Some(with.clone())),
        _ => (None, None, None),
    };
    OutcomeDto {
        probability: o.probability,
        verdict: o.verdict.name(),
        reject_with,
        dnat: nat_str(&o.dnat),
        masquerade: o.masquerade,
        snat: nat_str(&o.snat),
        local_delivery: o.local_delivery,
        out_iface: o.out_iface.clone(),
        reason,
        reason_rule,
        packet: packet_dto(&o.packet),
        steps: o.steps.iter().map(step_dto).collect(),
        notes: o.notes.clone(),
    }
}

/// Convert a trace and the parser's diagnostics into the JSON document.
pub fn to_dto(pkt: &Packet, trace: &Trace, diagnostics: &[Diagnostic]) -> NetfilterTraceDto {
    NetfilterTraceDto {
        schema: SCHEMA,
        packet: packet_dto(pkt),
        outcomes: trace.outcomes.iter().map(outcome_dto).collect(),
        diagnostics: diagnostics
            .iter()
            .map(|d| DiagnosticDto {
                file: d.source.file.to_string(),
                line: d.source.line,
                message: d.message.clone(),
            })
            .collect(),
    }
}

/// Pretty JSON.
pub fn render_json(dto: &NetfilterTraceDto) -> String {
    // Serialization of these plain structs cannot fail; fall back to an empty object anyway.
    serde_json::to_string_pretty(dto).unwrap_or_else(|_| "{}".to_string())
}

fn pct(p: f64) -> String {
    let s = format!("{:.4}", p);
    format!("{s} ({:.2}%)", p * 100.0)
}

fn endpoint(addr: &str, port: Option<u16>) -> String {
    match port {
        Some(p) if addr.contains(':') => format!("[{addr}]:{p}"),
        Some(p) => format!("{addr}:{p}"),
        None => addr.to_string(),
    }
}

/// The walkthrough: per outcome, its probability, each rule matched (table/chain, file:line,
/// the rule as written, statistic branch probabilities) and the final verdict with NAT.
pub fn render_text(dto: &NetfilterTraceDto) -> String {
    crate::escape_controls(&render_text_raw(&crate::escaped(dto))).into_owned()
}

fn render_text_raw(dto: &NetfilterTraceDto) -> String {
    let mut s = String::new();
    let p = &dto.packet;
    let _ = write!(
        s,
        "{} {} -> {}",
        p.proto,
        endpoint(&p.src, p.sport),
        endpoint(&p.dst, p.dport)
    );
    match &p.in_iface {
        Some(i) => {
            let _ = writeln!(s, " arriving on {i}");
        }
        None => {
            let _ = writeln!(s);
        }
    }
    let n = dto.outcomes.len();
    let _ = writeln!(s, "{n} outcome{}", if n == 1 { "" } else { "s" });
    for (k, o) in dto.outcomes.iter().enumerate() {
        let _ = writeln!(s);
        let mut head = format!(
            "[{}] probability {}: {}",
            k + 1,
            pct(o.probability),
            o.verdict
        );
        if let Some(w) = &o.reject_with {
            let _ = write!(head, " with {w}");
        }
        if o.verdict == "ACCEPT" {
            head.push_str(if o.local_delivery {
                ", delivered locally"
            } else {
                ", forwarded"
            });
            if let Some(i) = &o.out_iface {
                let _ = write!(head, " out {i}");
            }
        }
        if let Some(d) = &o.dnat {
            let _ = write!(head, ", DNAT to {d}");
        }
        if o.masquerade {
            match &o.snat {
                Some(x) => {
                    let _ = write!(head, ", masqueraded (source {x})");
                }
                None => head.push_str(", masqueraded"),
            }
        }
        let _ = writeln!(s, "{head}");
        let width = o
            .steps
            .iter()
            .map(|st| st.table.len() + 1 + st.chain.len())
            .max()
            .unwrap_or(0);
        let loc_width = o
            .steps
            .iter()
            .map(|st| st.file.len() + 1 + st.line.to_string().len())
            .max()
            .unwrap_or(0);
        for st in &o.steps {
            let hop = format!("{}/{}", st.table, st.chain);
            let loc = format!("{}:{}", st.file, st.line);
            let _ = write!(s, "    {hop:<width$}  {loc:<loc_width$}  {}", st.text);
            if let Some(bp) = st.probability {
                let _ = write!(s, "   [branch p={:.4}]", bp);
            }
            let _ = writeln!(s);
        }
        if let Some(r) = &o.reason {
            let _ = writeln!(s, "    UNKNOWN: {r}");
        }
        let lp = &o.packet;
        let _ = writeln!(
            s,
            "    leaves as {} {} -> {} mark {}",
            lp.proto,
            endpoint(&lp.src, lp.sport),
            endpoint(&lp.dst, lp.dport),
            lp.mark
        );
        for note in &o.notes {
            let _ = writeln!(s, "    note: {note}");
        }
    }
    if !dto.diagnostics.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "diagnostics:");
        for d in &dto.diagnostics {
            let _ = writeln!(s, "  {}:{}: {}", d.file, d.line, d.message);
        }
    }
    s
}

// Single-line strings for the text renderers (`crate::EscapeData`).
crate::escape_fields!(NetfilterTraceDto {
    schema,
    packet,
    outcomes,
    diagnostics
});
crate::escape_fields!(PacketDto {
    proto,
    src,
    dst,
    sport,
    dport,
    in_iface,
    mark
});
crate::escape_fields!(OutcomeDto {
    probability,
    verdict,
    reject_with,
    dnat,
    masquerade,
    snat,
    local_delivery,
    out_iface,
    reason,
    reason_rule,
    packet,
    steps,
    notes
});
crate::escape_fields!(StepDto {
    table,
    chain,
    file,
    line,
    text,
    probability
});
crate::escape_fields!(DiagnosticDto {
    file,
    line,
    message
});
