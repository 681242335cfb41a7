//! Node and router network state.

/// One node's network state.
#[derive(Debug, Default, Clone)]
pub struct NodeNet {}

/// One router.
#[derive(Debug, Default, Clone)]
pub struct Router {}
