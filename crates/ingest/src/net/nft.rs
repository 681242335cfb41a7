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
use super::text::{diag, Segment};
use crate::diag::{Diagnostic, ParseError, Severity};

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
    match net.nft.as_deref() {
        Some(earlier) => {
            // A second capture (issue #11, review): `nft -f` of both would add the second's
            // rules to the first's chains, so a capture of another moment would be a union
            // that no node runs. Tables that both give the same are one fact read twice;
            // tables they give differently are in doubt.
            let (alone, _) = NftRuleset::parse(file, &text).map_err(convert_err)?;
            let differ = earlier.tables_differing_from(&alone);
            let all_known = alone
                .tables
                .iter()
                .all(|t| earlier.table(t.family, &t.name).is_some());
            if !differ.is_empty() {
                let before = net.read_files(NodeFact::Nft);
                let why = format!(
                    "the nft tables {} of this node are given differently by {before} and {file}: two captures of different moments or nodes, so the node's nft rules are unknown (collect one `nft list ruleset`)",
                    differ
                        .iter()
                        .map(|(f, n)| format!("`{} {n}`", f.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                diags.push(diag(Severity::Error, file, src.line, 0, why.clone()));
                if !net.doubts.iter().any(|(f, _)| *f == NodeFact::Nft) {
                    net.doubts.push((NodeFact::Nft, why));
                }
                net.nft = Some(Arc::new(rs));
            } else if !all_known {
                net.nft = Some(Arc::new(rs));
            }
            // Else the same tables again: the ruleset read first stands, rules not doubled.
        }
        None => net.nft = Some(Arc::new(rs)),
    }
    if let Some(f) = seg.filter() {
        // `nft list ruleset | grep ...`: rules left out change the verdicts after them.
        net.partial.push((NodeFact::Nft, src.clone(), f));
    }
    net.read.entry(NodeFact::Nft).or_default().push(src);
    Ok(Some(FORMAT))
}
