//! A change to the nodes' network state, as an operator would type it (`ip route add ...`,
//! `ip rule add ...`, `sysctl -w key=value`): what `--what-if` applies and what a fix proposes.
//!
//! It is data only: ingest parses the text with the same iproute2 grammar it reads snapshots
//! with, sim applies it to a copy of the model and renders proposed changes as commands.

use crate::net::{Route, Rule};

/// One change, on every node or (with `node`) on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The text as the operator gave it (or as a fix renders it).
    pub text: String,
    /// `Some(node)` for a change on one node (`NODE:` prefix).
    pub node: Option<String>,
    pub op: Op,
    pub item: Item,
}

/// `add` (`append`), `del` (`delete`) or `replace` (`change`); a sysctl write is a replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Del,
    Replace,
}

/// What changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A route as given on the command line: its device may be left for the kernel to find
    /// from the gateway (`dev` None), its table defaults to main.
    Route(Route),
    /// A policy rule; `priority` is `u32::MAX` when the command gave none (the kernel then
    /// picks one below the first existing rule that is not priority 0).
    Rule(Rule),
    /// `sysctl -w key=value`, the key in dotted form.
    Sysctl(String, String),
}
