//! The packet-flow evaluator.

use crate::ruleset::Ruleset;
use crate::types::{Env, Packet, Trace};

/// Trace the packet through the ruleset as the kernel would for the hook path it takes, and
/// return every distinct outcome with its probability (summing to 1), most probable first.
pub fn trace(rules: &Ruleset, pkt: &Packet, env: &Env) -> Trace {
    let _ = (rules, pkt, env);
    Trace::default()
}

/// Like [`trace`] but without the dispatch indexes: every rule of every chain is tested in
/// order. For tests and benchmarks that check the index gives identical results.
#[doc(hidden)]
pub fn trace_linear(rules: &Ruleset, pkt: &Packet, env: &Env) -> Trace {
    let _ = (rules, pkt, env);
    Trace::default()
}
