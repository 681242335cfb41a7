//! kubepath-netfilter: read real iptables rulesets and trace a packet through them as the Linux
//! kernel would.
//!
//! * [`Ruleset`] parses `iptables-save` / `ip6tables-save` output and `iptables [-t T] -S`
//!   output (several files combine, e.g. one per table). Malformed lines give a [`ParseError`]
//!   with file, line, column and what was expected; unsupported matches and targets are kept
//!   as opaque rules with a [`Diagnostic`].
//! * [`trace`] walks the first packet of a connection through the kernel's hook order (raw,
//!   mangle, nat, filter, security; PREROUTING, routing, INPUT or FORWARD, POSTROUTING; or
//!   OUTPUT for local-origin packets), splitting on `-m statistic` into weighted branches, and
//!   returns every distinct [`Outcome`] with its probability, verdict, NAT and the rules it
//!   matched.
//! * [`IpSets`] reads `ipset save` output for `-m set` matches.
//!
//! Large chains (kube-proxy's `KUBE-SERVICES`, `KUBE-NODEPORTS`) are indexed by destination
//! address and port, so a trace does not scan them linearly; the result is identical to the
//! linear semantics.
//!
//! ```
//! use kubepath_netfilter::{trace, Env, Packet, Ruleset, Verdict};
//!
//! let text = "\
//! *nat
//! :PREROUTING ACCEPT [0:0]
//! :INPUT ACCEPT [0:0]
//! :OUTPUT ACCEPT [0:0]
//! :POSTROUTING ACCEPT [0:0]
//! :SVC - [0:0]
//! -A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j SVC
//! -A SVC -p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 192.168.1.1:8080
//! -A SVC -p tcp -j DNAT --to-destination 192.168.1.2:8080
//! COMMIT
//! ";
//! let (rules, diagnostics) = Ruleset::parse("node.iptables-save", text).unwrap();
//! assert!(diagnostics.is_empty());
//! let pkt = Packet::tcp("10.9.9.9".parse().unwrap(), 40000, "10.0.0.1".parse().unwrap(), 80)
//!     .with_in_iface("eth0");
//! let local = ["10.0.0.1".parse().unwrap()];
//! let t = trace(&rules, &pkt, &Env::new(&local));
//! assert_eq!(t.outcomes.len(), 2);
//! for o in &t.outcomes {
//!     assert_eq!(o.verdict, Verdict::Accept);
//!     assert!((o.probability - 0.5).abs() < 1e-9);
//!     assert_eq!(o.dnat.as_ref().unwrap().port, Some(8080));
//! }
//! ```

#![deny(missing_docs)]

mod eval;
mod index;
mod ipset;
pub mod ipvs;
pub mod nft;
mod parse;
mod rule;
mod ruleset;
mod types;

pub use crate::{
    eval::{trace, trace_linear},
    ipset::IpSets,
    ipvs::IpvsTable,
    nft::{trace_nft, NftRuleset},
    ruleset::{Ruleset, RulesetStats},
    types::{
        CtState, Diagnostic, EndCause, Env, Family, Format, NatTarget, Outcome, Packet, ParseError,
        Proto, RouteDecision, RouteOracle, SourceRef, Step, Table, TcpFlags, Trace, Verdict,
        NO_IPSET_DATA, NO_ROUTING_DATA,
    },
};

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod parse_tests;
