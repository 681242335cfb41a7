//! Reads a snapshot directory (see docs/snapshot.md) into a [`kubepath_model::Model`].
//!
//! Each raw format has its own module that parses into its own structure; lowering into the
//! model is explicit. Parsers never panic: they return values plus [`diag::Diagnostic`]s, or a
//! [`diag::ParseError`] naming file, line, column and what was expected.
//!
//! ```no_run
//! let snap = kubepath_ingest::load_snapshot(std::path::Path::new("examples/dc173")).unwrap();
//! println!("{} services", snap.model.cluster.services.len());
//! ```

pub mod diag;
mod dispatch;
pub mod k8s;
pub mod manifest;
mod metallb;
pub mod net;
mod prefetch;
pub mod snapshot;
pub mod whatif;
pub mod yaml;

pub use diag::{Diagnostic, ParseError, Severity, SourceFile};
pub use snapshot::{
    load_files, load_files_with, load_snapshot, load_snapshot_with, FileReport, IngestError,
    LoadOptions, Snapshot,
};
