//! Hop engines and the path tree: DNS, router LPM + ECMP, announcements, node netfilter,
//! pod/service resolution, L7 ingress, conntrack reversal, return routing, verdicts, fixes.
//!
//! Invariants: no IO, no printing, never panics on an odd model; deterministic.

pub mod announce;
pub mod check;
pub mod diff;
pub mod ingress;
pub mod trace;
