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

/// Chain name -> chain id of one table, built for the parser's lookups (one per chain
/// declared, one per rule that jumps, one per rule whose chain is neither the previous rule's
/// nor the next declared): an open-addressing table of 16-byte slots (a 32-bit hash tag, the
/// id, where the name is) over one contiguous arena of the names, so a lookup reads one slot
/// and, when the tag agrees, the name in the arena, instead of a hash map's key in an
/// allocation of its own (two cache misses instead of three on kube-proxy's 61,542 chains).
#[derive(Clone, Debug, Default)]
pub(crate) struct ChainMap {
    /// Power-of-two length (or empty); `id == u32::MAX` marks an empty slot.
    slots: Vec<Slot>,
    /// Per id: where its name is in `names`.
    spans: Vec<(u32, u32)>,
    names: String,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    tag: u32,
    id: u32,
    start: u32,
    len: u32,
}

const EMPTY: Slot = Slot {
    tag: 0,
    id: u32::MAX,
    start: 0,
    len: 0,
};

fn name_hash(name: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(name.as_bytes());
    // Mix the high bits down: slots are picked by the low bits, tags are the high ones.
    let x = h.finish();
    x ^ (x >> 29)
}

impl ChainMap {
    fn name(&self, id: u32) -> &str {
        self.spans
            .get(id as usize)
            .and_then(|&(s, l)| self.names.get(s as usize..(s + l) as usize))
            .unwrap_or("")
    }

    /// The id of chain `name`.
    pub fn get(&self, name: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let h = name_hash(name);
        let tag = (h >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s.id == u32::MAX {
                return None;
            }
            if s.tag == tag
                && self
                    .names
                    .get(s.start as usize..(s.start + s.len) as usize)
                    .is_some_and(|n| n == name)
            {
                return Some(s.id);
            }
            i = (i + 1) & mask;
        }
    }

    /// Is there a chain `name`?
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Add chain `name` (not present) with id `id` (ids are given in order: 0, 1, ...).
    pub fn insert(&mut self, name: &str, id: u32) {
        if (self.spans.len() + 1) * 4 > self.slots.len() * 3 {
            self.grow(self.spans.len() + 1);
        }
        if self.spans.len() <= id as usize {
            self.spans.resize(id as usize + 1, (0, 0));
        }
        let (start, len) = (self.names.len() as u32, name.len() as u32);
        self.spans[id as usize] = (start, len);
        self.names.push_str(name);
        self.place(Slot {
            tag: (name_hash(name) >> 32) as u32,
            id,
            start,
            len,
        });
    }

    /// Room for `n` more chains without growing.
    pub fn reserve(&mut self, n: usize) {
        self.grow(self.spans.len() + n);
        self.spans.reserve(n);
        self.names.reserve(n * 24);
    }

    /// Rebuild from the chains' names in order (ids are positions), after a chain is deleted.
    pub fn rebuild<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        *self = ChainMap::default();
        for (id, n) in names.enumerate() {
            self.insert(n, id as u32);
        }
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut i = name_hash(self.name(slot.id)) as usize & mask;
        while self.slots[i].id != u32::MAX {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    /// Room for `n` names at a load of at most 3/4.
    fn grow(&mut self, n: usize) {
        if n * 4 <= self.slots.len() * 3 {
            return;
        }
        let size = (n * 4 / 3 + 1).next_power_of_two().max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        for s in old {
            if s.id != u32::MAX {
                self.place(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChainMap;

    #[test]
    fn chain_map_finds_every_name_and_only_those() {
        let names: Vec<String> = (0..5000).map(|i| format!("KUBE-SEP-{i:016X}")).collect();
        let mut m = ChainMap::default();
        for (i, n) in names.iter().enumerate() {
            assert_eq!(m.get(n), None);
            m.insert(n, i as u32);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(m.get(n), Some(i as u32));
        }
        assert_eq!(m.get("KUBE-SEP-"), None);
        assert_eq!(m.get(""), None);
        // Delete the first name: the others move down by one.
        m.rebuild(names[1..].iter().map(|s| s.as_str()));
        assert_eq!(m.get(&names[0]), None);
        assert_eq!(m.get(&names[1]), Some(0));
        assert_eq!(m.get(&names[4999]), Some(4998));
        let mut r = ChainMap::default();
        r.reserve(100_000);
        r.insert("A", 0);
        assert_eq!(r.get("A"), Some(0));
    }
}
