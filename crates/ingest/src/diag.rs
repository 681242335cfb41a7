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

/// At most this many characters of a quoted token (`found ...`, `expected ...`) are shown.
pub const MAX_QUOTE: usize = 120;

/// `s` cut to [`MAX_QUOTE`] characters, with `…` and its full length in bytes where it was
/// cut: a diagnostic never repeats a megabyte token of the snapshot (issue #11).
pub fn clip_quote(s: &str) -> String {
    clip_to(s, MAX_QUOTE)
}

/// [`clip_quote`] with another bound.
pub fn clip_to(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((b, _)) => format!("{}… ({} bytes)", &s[..b], s.len()),
    }
}

/// One file of the snapshot, read into memory.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the snapshot root, with `/` separators.
    pub path: Arc<str>,
    pub text: String,
}
