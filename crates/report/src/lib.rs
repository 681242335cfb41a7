//! Versioned output schemas (serde DTOs converted by hand from sim results) and renderers.
//!
//! Invariant: this crate never reaches into ingest.

pub mod announce;
pub mod ingress;
pub mod inspect;
pub mod netfilter;
pub mod trace;
