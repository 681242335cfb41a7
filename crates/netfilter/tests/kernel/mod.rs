//! Support modules of the kernel-agreement test target.

pub mod compare;
pub mod conntrack;
pub mod fixtures;
pub mod lab;
pub mod probe;
pub mod responder;
pub use kubepath_netfilter_gen::stats;
