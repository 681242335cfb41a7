//! The parsed ruleset: tables -> chains -> rules, plus per-chain dispatch indexes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::rule::TableData;
use crate::types::{Diagnostic, Family, Format, ParseError, SourceRef, Table, Verdict};

/// A parsed ruleset of one address family: tables, chains (with policies), rules and their
/// dispatch indexes. Build it with [`Ruleset::parse`] or [`Ruleset::new`] +
/// [`Ruleset::add_text`].
#[derive(Clone, Debug)]
pub struct Ruleset {
    pub(crate) family: Family,
    /// Per file: name and full text (rule texts are slices of it), shared with the caller
    /// that gave it with [`Ruleset::add_shared_text`] (a 26 MB text is not copied).
    pub(crate) files: Vec<(Arc<str>, Arc<String>)>,
    pub(crate) tables: [Option<TableData>; 5],
    /// Where each table was last given (file index, line of its `*table` header, or 1 for
    /// `iptables -S` text): named when a later block replaces it.
    pub(crate) table_src: [Option<(u32, u32)>; 5],
}

/// Sizes of a ruleset, for reports and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RulesetStats {
    /// Tables present.
    pub tables: usize,
    /// Chains (built-in and user).
    pub chains: usize,
    /// Rules.
    pub rules: usize,
    /// Chains with a destination/port dispatch index.
    pub indexed_chains: usize,
}

impl Ruleset {
    /// An empty ruleset (every table absent: all traffic accepted).
    pub fn new(family: Family) -> Self {
        Ruleset {
            family,
            files: Vec::new(),
            tables: Default::default(),
            table_src: [None; 5],
        }
    }

    /// The address family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Parse `iptables-save` / `ip6tables-save` text (tables from `*table` headers) or
    /// `iptables [-t T] -S` text (no headers: rules go to `default_table`; when it is `None`
    /// and the text has no header, the error says the table is missing) and add its chains and
    /// rules. Several calls combine (e.g. one file per table). A `*table` block for a table
    /// that an earlier block or call already gave replaces it, with a diagnostic, as
    /// `iptables-restore` (without `--noflush`) does with every block it reads; `iptables -S`
    /// text, which may be a filtered part of a listing, is added to the table.
    ///
    /// Returns the diagnostics (unsupported matches/targets kept as opaque rules ...). On
    /// error the ruleset is left as it was before the call.
    pub fn add_text(
        &mut self,
        file: &str,
        text: &str,
        default_table: Option<Table>,
    ) -> Result<Vec<Diagnostic>, ParseError> {
        self.add_shared_text(file, Arc::new(text.to_owned()), default_table)
    }

    /// [`Ruleset::add_text`] with a text the caller already owns: the ruleset keeps a reference
    /// to it (rule texts are slices of it) instead of a copy.
    pub fn add_shared_text(
        &mut self,
        file: &str,
        text: Arc<String>,
        default_table: Option<Table>,
    ) -> Result<Vec<Diagnostic>, ParseError> {
        // Keep a copy of what is already there so a failed parse leaves it untouched (nothing to
        // copy for the first text, the usual case for a big iptables-save).
        let backup = self
            .tables
            .iter()
            .any(Option::is_some)
            .then(|| self.tables.clone());
        let table_src = self.table_src;
        let files = self.files.len();
        match crate::parse::parse_into(self, file, text, default_table) {
            Ok(diags) => Ok(diags),
            Err(e) => {
                self.files.truncate(files);
                self.tables = backup.unwrap_or_default();
                self.table_src = table_src;
                Err(e)
            }
        }
    }

    /// Convenience: a new ruleset from one text. The family is IPv6 when the text looks like
    /// `ip6tables-save` output (its first address option holds a `:`, or it uses ICMPv6),
    /// else IPv4. `-S` text without a table header is read as the filter table, as
    /// `iptables -S` without `-t` prints it.
    pub fn parse(file: &str, text: &str) -> Result<(Ruleset, Vec<Diagnostic>), ParseError> {
        Ruleset::parse_shared(file, Arc::new(text.to_owned()))
    }

    /// [`Ruleset::parse`] of a text the caller owns (kept by reference, not copied).
    pub fn parse_shared(
        file: &str,
        text: Arc<String>,
    ) -> Result<(Ruleset, Vec<Diagnostic>), ParseError> {
        let mut rs = Ruleset::new(crate::parse::guess_family(&text));
        let default = Ruleset::table_hint(file, &text).or(Some(Table::Filter));
        let diags = rs.add_shared_text(file, text, default)?;
        Ok((rs, diags))
    }

    /// Is this text `iptables-save` output ([`Format::Save`]) or `iptables -S` output
    /// ([`Format::Rules`])? `None` when it is neither. Looks at the first meaningful lines only.
    pub fn sniff(text: &str) -> Option<Format> {
        crate::parse::sniff(text)
    }

    /// For `-S` text without headers, the table: named by a file-name component (`nat.rules`,
    /// `iptables-t-nat-S.txt`, `mangle-S`); else by a first line echoing the command
    /// (`host:~ # iptables -t nat -S`); else by the set of built-in chains its `-P` lines name
    /// (each table has its own set; filter's is shared with security, filter is chosen).
    /// `None` when none of these says.
    pub fn table_hint(file: &str, text: &str) -> Option<Table> {
        crate::parse::table_hint(file, text)
    }

    /// Is this table present (given by some input)?
    pub fn has_table(&self, table: Table) -> bool {
        self.tables[table.idx()].is_some()
    }

    /// Chain names of a table, in declaration order.
    pub fn chain_names(&self, table: Table) -> Vec<Arc<str>> {
        self.tables[table.idx()]
            .as_ref()
            .map(|t| t.chains.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Each chain of `table` in declaration order: its name, number of rules and whether its
    /// policy (built-in chains) is other than ACCEPT. What another view of the same tables
    /// (`nft list ruleset` of iptables-nft's tables) can be compared with.
    pub fn chain_shapes(&self, table: Table) -> Vec<(Arc<str>, usize, bool)> {
        self.tables[table.idx()]
            .as_ref()
            .map(|t| {
                t.chains
                    .iter()
                    .map(|c| {
                        let strict = c.policy.as_ref().is_some_and(|p| *p != Verdict::Accept);
                        (c.name.clone(), c.rules.len(), strict)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every rule of `table` as it was written (`-A CHAIN ...`), with its chain and where it
    /// is: chains in declaration order, rules in chain order. For tools that read what a
    /// ruleset says rather than evaluate it (kube-proxy's `--comment "ns/name:port"`).
    pub fn rule_texts(&self, table: Table) -> Vec<(Arc<str>, SourceRef, &str)> {
        let Some(t) = self.tables[table.idx()].as_ref() else {
            return Vec::new();
        };
        t.chains
            .iter()
            .flat_map(|c| {
                c.rules.iter().map(move |r| {
                    (
                        c.name.clone(),
                        self.source(r.file, r.line),
                        self.rule_text(r),
                    )
                })
            })
            .collect()
    }

    /// A chain's rules as written, with runs of blanks made one: what two captures of one
    /// chain are compared by (counters are not part of a rule's text).
    /// `iptables -S -v` writes a rule's counters as `-c PKTS BYTES`: left out too.
    fn normalized_rules(&self, c: &crate::rule::Chain) -> Vec<String> {
        c.rules
            .iter()
            .map(|r| {
                let w: Vec<&str> = self.rule_text(r).split_whitespace().collect();
                let mut out: Vec<&str> = Vec::with_capacity(w.len());
                let mut i = 0;
                while i < w.len() {
                    let counters = w[i] == "-c"
                        && w.get(i + 1).is_some_and(|x| x.parse::<u64>().is_ok())
                        && w.get(i + 2).is_some_and(|x| x.parse::<u64>().is_ok());
                    if counters {
                        i += 3;
                        continue;
                    }
                    out.push(w[i]);
                    i += 1;
                }
                out.join(" ")
            })
            .collect()
    }

    /// The chains of `table` whose rules in `part`, a partial capture of the same node, `self`
    /// (a whole one) does not give. `listed`: `part` is `iptables -S CHAIN` of that chain,
    /// which it gives whole (its rules, and for a built-in chain its policy); without it
    /// (a `| grep` of a listing shows some rules) each chain's rules in `part` must be found
    /// in `self`'s chain in that order. Rules are compared by their text with blanks made
    /// one. Other chains without rules in `part` say nothing (`-S KUBE-SERVICES` leaves the
    /// table's built-in chains empty).
    /// Each with where the two captures declare it (`self`'s, then `part`'s), when they do.
    pub fn chains_not_within(
        &self,
        part: &Ruleset,
        table: Table,
        listed: Option<&str>,
    ) -> Vec<(Arc<str>, Vec<SourceRef>)> {
        let (Some(whole), Some(p)) = (
            self.tables[table.idx()].as_ref(),
            part.tables[table.idx()].as_ref(),
        ) else {
            return Vec::new();
        };
        let norm = |rs: &Ruleset, c: &crate::rule::Chain| rs.normalized_rules(c);
        p.chains
            .iter()
            .filter(|cp| !cp.rules.is_empty() || listed == Some(&*cp.name))
            .filter(|cp| {
                let Some(cw) = whole.chains.iter().find(|cw| cw.name == cp.name) else {
                    return true;
                };
                let (w, q) = (norm(self, cw), norm(part, cp));
                if listed == Some(&*cp.name) {
                    let policy_differs =
                        cp.policy.is_some() && cw.policy.is_some() && cp.policy != cw.policy;
                    return policy_differs || w != q;
                }
                // A subsequence: each rule of the part found in order.
                let mut it = w.iter();
                !q.iter().all(|r| it.any(|x| x == r))
            })
            .map(|cp| {
                let mut at = Vec::new();
                if let Some((f, l)) = whole
                    .chains
                    .iter()
                    .find(|cw| cw.name == cp.name)
                    .and_then(|cw| cw.decl)
                {
                    at.push(self.source(f, l));
                }
                if let Some((f, l)) = cp.decl {
                    at.push(part.source(f, l));
                }
                (cp.name.clone(), at)
            })
            .collect()
    }

    /// Replace `table` with `earlier`'s, where `self` was made from a copy of `earlier` by
    /// adding texts (so the files `earlier`'s rules cite are the first of `self`'s): a later
    /// partial capture that agrees with the whole one read first does not replace it.
    pub fn restore_table_from(&mut self, earlier: &Ruleset, table: Table) {
        debug_assert!(earlier.files.len() <= self.files.len());
        self.tables[table.idx()] = earlier.tables[table.idx()].clone();
        self.table_src[table.idx()] = earlier.table_src[table.idx()];
    }

    /// Do the two rulesets give `table` the same chains, policies and rules? Chains are
    /// compared by name (`iptables -S` and `iptables-save` list them in different orders),
    /// rules in chain order, by their text with runs of blanks made one (counters are not
    /// part of a rule's text). Two captures of one node that differ here were taken at
    /// different moments, or of different nodes.
    pub fn same_table(&self, other: &Ruleset, table: Table) -> bool {
        type View<'a> = BTreeMap<&'a str, (Option<&'a Verdict>, Vec<String>)>;
        fn view<'a>(rs: &'a Ruleset, table: Table) -> Option<View<'a>> {
            let t = rs.tables[table.idx()].as_ref()?;
            Some(
                t.chains
                    .iter()
                    .map(|c| (&*c.name, (c.policy.as_ref(), rs.normalized_rules(c))))
                    .collect(),
            )
        }
        view(self, table) == view(other, table)
    }

    /// Counts of tables, chains, rules and indexed chains.
    pub fn stats(&self) -> RulesetStats {
        let mut s = RulesetStats::default();
        for t in self.tables.iter().flatten() {
            s.tables += 1;
            s.chains += t.chains.len();
            for c in &t.chains {
                s.rules += c.rules.len();
                if c.index.is_some() {
                    s.indexed_chains += 1;
                }
            }
        }
        s
    }

    pub(crate) fn source(&self, file: u32, line: u32) -> SourceRef {
        SourceRef {
            file: self.files[file as usize].0.clone(),
            line,
        }
    }

    pub(crate) fn rule_text(&self, r: &crate::rule::Rule) -> &str {
        let text = &self.files[r.file as usize].1;
        let s = r.text_start as usize;
        text.get(s..s + r.text_len as usize).unwrap_or("")
    }
}
