//! Diagnostics and errors shared by every reader.

use std::sync::Arc;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Something could not be read; hops that depend on it become `unknown`.
    Error,
    /// Something was skipped or is suspicious (an unrecognised file, an unsupported directive).
    Warning,
    /// Information (an assumption kubepath made).
    Note,
}

/// A message about one place in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Path relative to the snapshot root.
    pub file: Arc<str>,
    /// 1-based; 0 when about the whole file.
    pub line: u32,
    /// 1-based; 0 when unknown.
    pub column: u32,
    pub message: String,
}

/// A malformed input that stops a file from being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: expected {expected}, found {found}")]
pub struct ParseError {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
    pub expected: String,
    pub found: String,
}

/// One file of the snapshot, read into memory.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the snapshot root, with `/` separators.
    pub path: Arc<str>,
    pub text: String,
}
