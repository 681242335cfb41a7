//! `nft list ruleset` output (and `nft -f` text, as knftables writes it for kube-proxy's
//! nftables mode), parsed by kubepath-netfilter's nft reader into the node's nft ruleset.
//!
//! The format is told by content ([`NftRuleset::sniff`]: a `table FAMILY NAME {` block, or
//! `add table|chain|rule|...` commands). Several files of one node combine in path order, as
//! `nft -f` of each in turn would. Text `nft -c -f` would reject is a [`ParseError`]: the
//! loader leaves the file out (the kernel loads a ruleset all or nothing) and records it in
//! [`NodeNet::nft_rejected`], so the node's netfilter stage is unknown, naming it.

use std::sync::Arc;

use kubepath_model::net::{NodeFact, NodeNet};
use kubepath_model::SourceRef;
use kubepath_netfilter::NftRuleset;

use super::netfilter::{convert_diags, convert_err, segment_text};
use super::text::Segment;
use crate::diag::{Diagnostic, ParseError};

/// The format name `snapshot inspect` shows.
pub const FORMAT: &str = "nft-ruleset";

/// Reads `seg` into `net.nft` when it is nft text; `Ok(None)` when it is not.
pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    net: &mut NodeNet,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    // Told by the first line that is not a comment (no copy of a large output that is not
    // nft text).
    let first = seg
        .content()
        .map(|l| l.text)
        .find(|t| !t.trim_start().starts_with('#'));
    if !first.is_some_and(NftRuleset::sniff) {
        return Ok(None);
    }
    let text = segment_text(seg);
    let src = SourceRef::new(
        file.clone(),
        seg.content().next().map(|l| l.no).unwrap_or(0),
    );
    // Parsed into a copy: a file nft would reject leaves the node's ruleset as it was.
    let mut rs = net.nft.as_deref().cloned().unwrap_or_default();
    let d = rs.add_text(file, &text).map_err(convert_err)?;
    convert_diags(file, d, diags);
    net.nft = Some(Arc::new(rs));
    if let Some(f) = seg.filter() {
        // `nft list ruleset | grep ...`: rules left out change the verdicts after them.
        net.partial.push((NodeFact::Nft, src.clone(), f));
    }
    net.read.entry(NodeFact::Nft).or_default().push(src);
    Ok(Some(FORMAT))
}
