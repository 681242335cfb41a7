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
use std::collections::BTreeMap;

/// A value of the snapshot shown in a text output, on one line: a newline (LF) in it becomes
/// `\n` (and U+2028/U+2029, line and paragraph separators, `\u{2028}`/`\u{2029}`), so a
/// name cannot start a line of its own ("FAKE: 0 findings"). Tabs stay (they cannot start a
/// line). The other control characters are left to [`escape_controls`], which the renderers
/// apply to their whole output afterwards.
pub fn escape_newlines(s: &str) -> Cow<'_, str> {
    if !s.contains(['\n', '\u{2028}', '\u{2029}']) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => o.push_str("\\n"),
            '\u{2028}' | '\u{2029}' => o.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => o.push(c),
        }
    }
    Cow::Owned(o)
}

/// One value of the snapshot quoted in a message, on one line and with its control characters
/// made visible: [`escape_newlines`] then [`escape_controls`].
pub fn escape_value(s: &str) -> String {
    escape_controls(&escape_newlines(s)).into_owned()
}

/// The strings of a DTO made single-line ([`escape_newlines`]) before its text rendering:
/// every string of a DTO comes from the snapshot or is built from it, and the layout's own
/// newlines are the renderer's. Implemented for every DTO a text renderer takes (the
/// [`escape_fields!`] list of a struct names every field, so a field added is not forgotten).
pub(crate) trait EscapeData {
    fn escape_data(&mut self);
}

impl EscapeData for String {
    fn escape_data(&mut self) {
        if let Cow::Owned(o) = escape_newlines(self) {
            *self = o;
        }
    }
}

impl<T: EscapeData> EscapeData for Vec<T> {
    fn escape_data(&mut self) {
        self.iter_mut().for_each(EscapeData::escape_data);
    }
}

impl<T: EscapeData> EscapeData for Option<T> {
    fn escape_data(&mut self) {
        if let Some(x) = self {
            x.escape_data();
        }
    }
}

impl<V: EscapeData> EscapeData for BTreeMap<String, V> {
    fn escape_data(&mut self) {
        if self
            .keys()
            .all(|k| matches!(escape_newlines(k), Cow::Borrowed(_)))
        {
            self.values_mut().for_each(EscapeData::escape_data);
            return;
        }
        *self = std::mem::take(self)
            .into_iter()
            .map(|(mut k, mut v)| {
                k.escape_data();
                v.escape_data();
                (k, v)
            })
            .collect();
    }
}

impl EscapeData for serde_json::Value {
    fn escape_data(&mut self) {
        match self {
            serde_json::Value::String(s) => s.escape_data(),
            serde_json::Value::Array(v) => v.iter_mut().for_each(EscapeData::escape_data),
            serde_json::Value::Object(m) => {
                if m.keys()
                    .any(|k| matches!(escape_newlines(k), Cow::Owned(_)))
                {
                    *m = std::mem::take(m)
                        .into_iter()
                        .map(|(mut k, mut v)| {
                            k.escape_data();
                            v.escape_data();
                            (k, v)
                        })
                        .collect();
                } else {
                    m.values_mut().for_each(EscapeData::escape_data);
                }
            }
            _ => {}
        }
    }
}

/// Values with no string of the snapshot in them.
macro_rules! escape_nothing {
    ($($t:ty),*) => {
        $(impl EscapeData for $t {
            fn escape_data(&mut self) {}
        })*
    };
}
escape_nothing!(bool, u16, u32, usize, f64, &'static str, std::net::IpAddr);

/// `EscapeData` for a struct: every field listed (the destructuring fails to compile when one
/// is missing).
macro_rules! escape_fields {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl $crate::EscapeData for $t {
            fn escape_data(&mut self) {
                let Self { $($f),* } = self;
                $($crate::EscapeData::escape_data($f);)*
            }
        }
    };
}
pub(crate) use escape_fields;

/// A copy of `x` with its strings single-line, for a text renderer.
pub(crate) fn escaped<T: EscapeData + Clone>(x: &T) -> T {
    let mut x = x.clone();
    x.escape_data();
    x
}

/// `s` with the characters a terminal would act on made visible: C0 and C1 control
/// characters and DEL (ESC, BEL, CR, backspace, CSI ...) but newline and tab, and the
/// bidirectional overrides (U+202A-U+202E, U+2066-U+2069) that reorder what is shown. They
/// become `\xNN` / `\u{NNNN}`. File names, node directory names and file contents (an
/// iptables comment can hold ESC) reach the text outputs and error messages through this;
/// JSON escapes them by itself.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    fn bad(c: char) -> bool {
        (c.is_control() && c != '\n' && c != '\t')
            // Bidi embeddings, overrides and isolates: they reorder what follows.
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            // Invisible and direction marks (two names that look the same must not be),
            // the line and paragraph separators, the byte-order mark.
            || matches!(
                c,
                '\u{00ad}'
                    | '\u{061c}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{2029}'
                    | '\u{2060}'..='\u{2064}'
                    | '\u{feff}'
            )
            // Noncharacters (U+FDD0-U+FDEF, U+xFFFE/U+xFFFF): U+FFFE and U+FFFF are not even
            // allowed in XML, so they would break an SVG.
            || matches!(c, '\u{fdd0}'..='\u{fdef}')
            || (c as u32) & 0xfffe == 0xfffe
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
    fn newlines_of_data_are_escaped() {
        assert_eq!(super::escape_newlines("a\tb"), "a\tb");
        assert_eq!(
            super::escape_newlines("x\nFAKE: 0 findings\u{2028}y"),
            "x\\nFAKE: 0 findings\\u{2028}y"
        );
    }

    #[test]
    fn controls_are_made_visible() {
        assert_eq!(escape_controls("a\tb\nc"), "a\tb\nc");
        assert_eq!(
            escape_controls("x\u{1b}[31my\u{7}\rz\u{7f}\u{9b}\u{202e}é"),
            "x\\x1b[31my\\x07\\x0dz\\x7f\\x9b\\u{202e}é"
        );
        // Invisible characters and noncharacters (U+FFFE would make an SVG invalid XML).
        assert_eq!(
            escape_controls("a\u{200b}b\u{200f}c\u{feff}d\u{ad}e\u{fffe}f\u{2029}g\u{1fffe}"),
            "a\\u{200b}b\\u{200f}c\\u{feff}d\\xade\\u{fffe}f\\u{2029}g\\u{1fffe}"
        );
        assert_eq!(escape_controls("ünïcødé ✓ 名前"), "ünïcødé ✓ 名前");
    }
}
