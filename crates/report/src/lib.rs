//! Versioned output schemas (serde DTOs converted by hand from sim results) and renderers.
//!
//! Invariant: this crate never reaches into ingest.

pub mod announce;
pub mod check;
pub mod diff;
pub mod html;
pub mod ingress;
pub mod inspect;
pub mod netfilter;
pub mod sarif;
pub mod svg;
pub mod trace;

use std::borrow::Cow;

/// `s` with the characters a terminal would act on made visible: C0 and C1 control
/// characters and DEL (ESC, BEL, CR, backspace, CSI ...) but newline and tab, and the
/// bidirectional overrides (U+202A-U+202E, U+2066-U+2069) that reorder what is shown. They
/// become `\xNN` / `\u{NNNN}`. File names, node directory names and file contents (an
/// iptables comment can hold ESC) reach the text outputs and error messages through this;
/// JSON escapes them by itself.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    fn bad(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !bad(c) {
            o.push(c);
        } else if (c as u32) < 0x100 {
            o.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            o.push_str(&format!("\\u{{{:04x}}}", c as u32));
        }
    }
    Cow::Owned(o)
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn controls_are_made_visible() {
        assert_eq!(escape_controls("a\tb\nc"), "a\tb\nc");
        assert_eq!(
            escape_controls("x\u{1b}[31my\u{7}\rz\u{7f}\u{9b}\u{202e}é"),
            "x\\x1b[31my\\x07\\x0dz\\x7f\\x9b\\u{202e}é"
        );
    }
}
