//! `nft list ruleset` output (and `nft -f` text, as knftables writes it for kube-proxy's
//! nftables mode), or `nft -j list ruleset` JSON, parsed by kubepath-netfilter's nft reader
//! into the node's nft ruleset.
//!
//! The format is told by content ([`NftRuleset::sniff`]: a `table FAMILY NAME {` block, or
//! `add table|chain|rule|...` commands; or `{` and the `"nftables"` property, on the first
//! line as `nft -j` prints it or on the next, pretty-printed). Several files of one node combine in path order, as
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
    // nft text); JSON pretty-printed (`nft -j list ruleset | jq .`) opens with `{` alone, and
    // the next line says whether it is nft's.
    let mut lines = seg
        .content()
        .map(|l| l.text)
        .filter(|t| !t.trim_start().starts_with('#'));
    let first = lines.next();
    let nft = match first {
        Some(f) if f.trim() == "{" => {
            let head: Vec<&str> = std::iter::once(f).chain(lines.take(2)).collect();
            NftRuleset::sniff(&head.join("\n"))
        }
        Some(f) => NftRuleset::sniff(f),
        None => false,
    };
    if !nft {
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
            } else if earlier.tables.len() == alone.tables.len()
                && alone.compat_statements() < earlier.compat_statements()
            {
                // The same tables again, and this capture says more about them (the text
                // listing translates what `nft -j` names only, `xt match multiport`): it is
                // the one evaluated, and cited.
                net.nft = Some(Arc::new(alone));
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

#[cfg(test)]
mod tests {
    use crate::diag::Severity;
    use crate::snapshot::load_files;
    use kubepath_model::net::NodeFact;
    use kubepath_netfilter::nft::NftFamily;

    /// `nft list ruleset` and `nft -j list ruleset` of one kernel state (kube-proxy's
    /// nftables-mode table, nft 1.0.6; crates/netfilter/tests/nft/json/README.md).
    const TEXT: &str = include_str!("../../../netfilter/tests/nft/json/kube-proxy.txt");
    const JSON: &str = include_str!("../../../netfilter/tests/nft/json/kube-proxy.json");

    fn files(l: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        l.iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect()
    }

    /// Issue #14: a node file holding `nft -j list ruleset` is the node's nft ruleset, told by
    /// content whatever its name: on one line as nft prints it (after an echoed prompt), or
    /// pretty-printed; rules cite the file's own line. A text capture beside it of the same
    /// moment is the same fact (no doubt); a damaged one is left out and named.
    #[test]
    fn an_nft_json_capture_is_the_nodes_nft_ruleset() {
        let prompted = format!("node1:~ # nft -j list ruleset\n{JSON}");
        let v: serde_json::Value = serde_json::from_str(JSON).unwrap();
        let pretty = format!("{}\n", serde_json::to_string_pretty(&v).unwrap());
        let s = load_files(files(&[
            ("nodes/n1/ruleset.out", &prompted),
            ("nodes/n2/nft.json", &pretty),
            ("nodes/n3/nft-ruleset.txt", TEXT),
            ("nodes/n3/nft-ruleset.json", JSON),
        ]))
        .unwrap();
        for node in ["n1", "n2", "n3"] {
            let n = &s.model.nodes[node];
            let rs = n
                .nft
                .as_ref()
                .unwrap_or_else(|| panic!("{node}: no nft ruleset"));
            assert_eq!(rs.rule_count(), 43, "{node}");
            assert!(n.doubts.is_empty(), "{node}: {:?}", n.doubts);
        }
        let rule = |node: &str| {
            let rs = s.model.nodes[node].nft.clone().unwrap();
            let t = rs.table(NftFamily::Ip, "kube-proxy").unwrap();
            let r = t.chain("services").unwrap().rules[0].clone();
            r
        };
        let r1 = rule("n1");
        assert_eq!(&*r1.source.file, "nodes/n1/ruleset.out");
        assert_eq!(r1.source.line, 2, "after the prompt line");
        assert_eq!(r1.handle, Some(44));
        let r2 = rule("n2");
        let line = pretty.lines().nth(r2.source.line as usize - 1).unwrap();
        assert_eq!(line.trim(), "\"rule\": {");
        // The two captures of n3 agree: read once, not doubled, both recorded.
        assert_eq!(s.model.nodes["n3"].read[&NodeFact::Nft].len(), 2);
        for p in [
            "nodes/n1/ruleset.out",
            "nodes/n2/nft.json",
            "nodes/n3/nft-ruleset.json",
        ] {
            let f = s.files.iter().find(|f| f.path == p).unwrap();
            assert_eq!(f.format.as_deref(), Some("nft-ruleset"), "{p}");
        }

        // A capture cut short: left out whole, an error at its position, and named.
        let cut = &JSON[..JSON.len() / 2];
        let s = load_files(files(&[("nodes/n1/nft.json", cut)])).unwrap();
        let n = &s.model.nodes["n1"];
        assert!(n.nft.is_none());
        assert_eq!(n.nft_rejected.len(), 1, "{:?}", n.nft_rejected);
        assert!(s.diagnostics.iter().any(|d| d.severity == Severity::Error
            && &*d.file == "nodes/n1/nft.json"
            && d.line == 1
            && d.column > 1));

        // A JSON capture of another moment (one more rule) beside the text: in doubt.
        let other = JSON.replacen(
            r#"{"rule": {"family": "ip", "table": "kube-proxy", "chain": "services", "handle": 44, "expr": [{"vmap""#,
            r#"{"rule": {"family": "ip", "table": "kube-proxy", "chain": "services", "expr": [{"drop": null}]}}, {"rule": {"family": "ip", "table": "kube-proxy", "chain": "services", "handle": 44, "expr": [{"vmap""#,
            1,
        );
        assert_ne!(other, JSON);
        let s = load_files(files(&[
            ("nodes/n1/nft-ruleset.txt", TEXT),
            ("nodes/n1/nft-ruleset.json", &other),
        ]))
        .unwrap();
        let n = &s.model.nodes["n1"];
        assert_eq!(n.doubts.len(), 1, "{:?}", n.doubts);
        assert!(n.doubts[0].1.contains("`ip kube-proxy`"), "{:?}", n.doubts);
    }
}
