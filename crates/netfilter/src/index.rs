//! Per-chain dispatch index: candidate rules by destination address and port.

/// Candidate rule lists for a chain; see [`ChainIndex::next`].
#[derive(Clone, Debug, Default)]
pub(crate) struct ChainIndex {}
