//! Per-chain dispatch index: candidate rules by destination address and port.
//!
//! A chain with many rules (kube-proxy's KUBE-SERVICES holds one or more rules per Service
//! port, each with a distinct `-d VIP/32` and `--dport`) is split into three ordered lists of
//! rule positions: rules that require one destination host (`-d A/32` without `!`), rules that
//! otherwise require one destination port (`--dport N`), and all other rules. A rule outside
//! the lists for the packet's destination and port cannot match it, so visiting the merge of
//! `by_dst[dst]`, `by_port[dport]` and `other` in rule order gives exactly the linear result.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::rule::{Match, Rule, TableData};

/// Chains with fewer rules are scanned linearly.
pub(crate) const INDEX_MIN_RULES: usize = 16;

/// A small multiplicative hasher (FxHash-style) for integer keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

/// Candidate rule lists for a chain; see [`ChainIndex::next`].
#[derive(Clone, Debug, Default)]
pub(crate) struct ChainIndex {
    by_dst: HashMap<(u128, bool), Vec<u32>, FxBuild>,
    by_port: HashMap<u16, Vec<u32>, FxBuild>,
    other: Vec<u32>,
}

enum Key {
    Dst(u128, bool),
    Port(u16),
    Other,
}

fn classify(ms: &[Match]) -> Key {
    let mut port = None;
    for m in ms {
        match m {
            Match::Dst(c, false) if c.is_host() => return Key::Dst(c.addr, c.v6),
            Match::Dport(r, false) if r.lo == r.hi && port.is_none() => port = Some(r.lo),
            _ => {}
        }
    }
    match port {
        Some(p) => Key::Port(p),
        None => Key::Other,
    }
}

impl ChainIndex {
    pub fn build(rules: &[Rule], td_matches: &[Match]) -> ChainIndex {
        let mut ix = ChainIndex::default();
        for (i, r) in rules.iter().enumerate() {
            let ms = &td_matches[r.m_start as usize..(r.m_start + r.m_len) as usize];
            match classify(ms) {
                Key::Dst(a, v6) => ix.by_dst.entry((a, v6)).or_default().push(i as u32),
                Key::Port(p) => ix.by_port.entry(p).or_default().push(i as u32),
                Key::Other => ix.other.push(i as u32),
            }
        }
        ix
    }

    /// The first rule position `>= from` that may match a packet with this destination and
    /// destination port (`None` for protocols without ports).
    pub fn next(&self, from: usize, dst: (u128, bool), dport: Option<u16>) -> Option<usize> {
        fn first_ge(v: &[u32], from: usize) -> Option<usize> {
            let i = v.partition_point(|&x| (x as usize) < from);
            v.get(i).map(|&x| x as usize)
        }
        let mut best = first_ge(&self.other, from);
        if let Some(v) = self.by_dst.get(&dst) {
            best = min_opt(best, first_ge(v, from));
        }
        if let Some(p) = dport {
            if let Some(v) = self.by_port.get(&p) {
                best = min_opt(best, first_ge(v, from));
            }
        }
        best
    }
}

fn min_opt(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// (Re)build the indexes of every large chain of a table.
pub(crate) fn build_indexes(td: &mut TableData) {
    let TableData {
        chains, matches, ..
    } = td;
    for c in chains.iter_mut() {
        c.index = if c.rules.len() >= INDEX_MIN_RULES {
            Some(Box::new(ChainIndex::build(&c.rules, matches)))
        } else {
            None
        };
    }
}
