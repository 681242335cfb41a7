//! DNS records.

/// All DNS data of the snapshot.
#[derive(Debug, Default, Clone)]
pub struct Dns {}
