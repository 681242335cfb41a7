//! Checks shared by the fuzz targets (included with `#[path]`, not a crate module tree).

use kubepath_netfilter::{Diagnostic, ParseError};

/// A parse error must point inside the input: 1-based line and column, the line at most one
/// past the last (end of file), the column at most one past the end of its line.
pub fn check_error(text: &str, e: &ParseError) {
    let rendered = e.to_string();
    assert!(!rendered.is_empty());
    assert!(e.line >= 1, "line 0 in {rendered}");
    assert!(e.column >= 1, "column 0 in {rendered}");
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        (e.line as usize) <= lines.len() + 1,
        "line {} past the end ({} lines) in {rendered}",
        e.line,
        lines.len()
    );
    if let Some(l) = lines.get(e.line as usize - 1) {
        let chars = l.chars().count();
        assert!(
            (e.column as usize) <= chars + 2,
            "column {} past the end of line {} ({chars} chars) in {rendered}",
            e.column,
            e.line
        );
    }
    assert!(!e.expected.is_empty(), "empty `expected` in {rendered}");
}

/// Diagnostics name a line of the input.
pub fn check_diagnostics(text: &str, diags: &[Diagnostic]) {
    let lines = text.split('\n').count();
    for d in diags {
        assert!(
            d.source.line >= 1 && (d.source.line as usize) <= lines + 1,
            "{d}"
        );
        assert!(!d.message.is_empty(), "{d}");
    }
}
