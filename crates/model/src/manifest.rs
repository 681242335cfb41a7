//! The snapshot manifest (`kubepath.yaml`, see docs/snapshot.md).

/// The manifest.
#[derive(Debug, Default, Clone)]
pub struct Manifest {}
