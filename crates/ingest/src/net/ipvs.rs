//! `ipvsadm -Ln` and `ipvsadm-save -n` output: kube-proxy's IPVS mode, parsed by
//! kubepath-netfilter's IPVS reader into the node's IPVS table ([`NodeNet::ipvs`]).
//!
//! Told by content ([`IpvsTable::sniff`]: the `IP Virtual Server version` or `Prot
//! LocalAddress:Port` header, or `-A -t|-u|-f` lines). A line that cannot be read (a name
//! where `-n` prints an address, a redacted address) is a diagnostic; the table keeps it, and
//! a packet to a service that line may describe is unknown. Two captures that disagree: the
//! services they give differently are unknown, the others stand.

use std::sync::Arc;

use kubepath_model::net::{NodeFact, NodeNet};
use kubepath_model::SourceRef;
use kubepath_netfilter::IpvsTable;

use super::netfilter::{convert_diags, convert_err, segment_text};
use super::text::{diag, Segment};
use crate::diag::{Diagnostic, ParseError, Severity};

/// The format name `snapshot inspect` shows.
pub const FORMAT: &str = "ipvsadm";

/// Reads `seg` into `net.ipvs` when it is `ipvsadm` output; `Ok(None)` when it is not.
pub fn read(
    file: &Arc<str>,
    seg: &Segment<'_>,
    net: &mut NodeNet,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<&'static str>, ParseError> {
    let head: String = seg
        .content()
        .take(20)
        .map(|l| format!("{}\n", l.text))
        .collect();
    let by_command = seg.command.is_some_and(|c| c.contains("ipvsadm"));
    if !IpvsTable::sniff(&head) && !by_command {
        return Ok(None);
    }
    let text = segment_text(seg);
    let src = SourceRef::new(
        file.clone(),
        seg.content().next().map(|l| l.no).unwrap_or(0),
    );
    let (table, d) = IpvsTable::parse(file, &text).map_err(convert_err)?;
    convert_diags(file, d, diags);
    match net.ipvs.as_deref() {
        Some(earlier) if !earlier.same_services(&table) => {
            // Two captures of different moments or nodes: the services they give alike
            // stand; a packet for one they give differently is unknown.
            let before = net.read_files(NodeFact::Ipvs);
            let why = format!(
                "the IPVS captures {before} and {file} of this node give this virtual service differently: two captures of different moments or nodes, so what it does is unknown (collect one `ipvsadm -Ln`)"
            );
            diags.push(diag(
                Severity::Error,
                file,
                src.line,
                0,
                format!(
                    "the IPVS captures {before} and {file} of this node differ: the virtual services they give differently are unknown (collect one `ipvsadm -Ln`)"
                ),
            ));
            let mut merged = earlier.clone();
            merged.dispute_differences(&table, &why);
            net.ipvs = Some(Arc::new(merged));
        }
        Some(_) => {}
        None => net.ipvs = Some(Arc::new(table)),
    }
    if let Some(f) = seg.filter() {
        // `ipvsadm -Ln | grep ...`: services left out would be taken as absent.
        net.partial.push((NodeFact::Ipvs, src.clone(), f));
    }
    net.read.entry(NodeFact::Ipvs).or_default().push(src);
    Ok(Some(FORMAT))
}
