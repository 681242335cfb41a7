//! iptables-save / `iptables [-t T] -S` / ipset save, through kubepath-netfilter.

use std::sync::Arc;

use kubepath_model::net::NodeNet;

use super::text::Segment;
use crate::diag::{Diagnostic, ParseError};

pub fn read(
    _file: &Arc<str>,
    _seg: &Segment<'_>,
    _net: &mut NodeNet,
    _diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    // Wired to kubepath_netfilter once its Ruleset API lands.
    Ok(None)
}
