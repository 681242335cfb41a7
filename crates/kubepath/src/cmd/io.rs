//! The binary's only writers to stdout and stderr, and the source snippets of input errors.
//!
//! * [`out`]: every subcommand's answer goes through it. A closed pipe (`kubepath trace ... |
//!   head -c 10`) ends the output quietly; the command keeps its exit code (`print!` would
//!   panic with "failed printing to stdout" and exit 101).
//! * [`err`]: the same for stderr.
//! * [`source_error`]: a miette report for a parse error at `file:line:column` that shows a
//!   window of the offending line around the column, never the whole line: a
//!   multi-megabyte line would be echoed in full, and miette's graphical handler panics on a
//!   column past 65,535 ("Formatting argument out of range" in
//!   `render_single_line_highlights`, miette 7.6).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use miette::{LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Set when writing the output failed otherwise than by a closed pipe (a full disk ...).
static WRITE_FAILED: AtomicBool = AtomicBool::new(false);

/// Write `text` to stdout. A closed pipe is the reader saying it has seen enough: stop
/// quietly. Any other write error is reported on stderr and makes [`write_failed`] true.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            if !WRITE_FAILED.swap(true, Ordering::Relaxed) {
                err(&format!("kubepath: cannot write the output: {e}\n"));
            }
        }
    }
}

/// Was stdout closed when kubepath started (`kubepath ... >&-`)? Rust's runtime then opens
/// /dev/null read-write on descriptor 1 (`sanitize_standard_fds`), so the answer would vanish
/// with exit 0 or 1. A shell's `>/dev/null` (and `Stdio::null()`, systemd's `null`) opens it
/// write-only, which stays allowed. Linux only (it reads /proc/self).
pub fn stdout_closed() -> bool {
    #[cfg(target_os = "linux")]
    {
        let is_null = std::fs::read_link("/proc/self/fd/1")
            .is_ok_and(|t| t == std::path::Path::new("/dev/null"));
        if !is_null {
            return false;
        }
        // `flags:\t0100002`: octal; the access mode is the low two bits (2 = O_RDWR).
        std::fs::read_to_string("/proc/self/fdinfo/1").is_ok_and(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .is_some_and(|f| f & 3 == 2)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Did writing the output fail (not counting a closed pipe)? The output is then incomplete
/// and the exit code must not say the answer was given.
pub fn write_failed() -> bool {
    WRITE_FAILED.load(Ordering::Relaxed)
}

/// [`out`] for a formatted line.
pub fn outln(args: std::fmt::Arguments<'_>) {
    out(&format!("{args}\n"));
}

/// Write `text` to stderr; errors (a closed stderr) are ignored: there is nowhere left to say
/// anything.
pub fn err(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_bytes()).and_then(|_| e.flush());
}

/// Colour the answer on stdout? Never when `NO_COLOR` is set to anything but the empty string
/// (no-color.org), else when `CLICOLOR_FORCE` is set and not `0` (even into a pipe), else only
/// on a terminal. clap's help and miette's errors follow the same variables.
pub fn color_stdout() -> bool {
    use std::io::IsTerminal;
    color_choice(
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("CLICOLOR_FORCE").as_deref(),
        std::io::stdout().is_terminal(),
    )
}

/// [`color_stdout`]'s choice for stderr (miette's error reports).
pub fn color_stderr() -> bool {
    use std::io::IsTerminal;
    color_choice(
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("CLICOLOR_FORCE").as_deref(),
        std::io::stderr().is_terminal(),
    )
}

fn color_choice(
    no_color: Option<&std::ffi::OsStr>,
    force: Option<&std::ffi::OsStr>,
    terminal: bool,
) -> bool {
    if no_color.is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if force.is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    terminal
}

/// `s` with control characters made visible, for messages that quote snapshot data.
pub fn esc(s: &str) -> String {
    kubepath_report::escape_value(s)
}

/// The text of a file named on the command line (`--ruleset`, `--ipset`), read as the snapshot
/// loader reads a snapshot's files (`kubepath_ingest::snapshot::read_regular_file`): a FIFO,
/// socket or device is refused without blocking, a file over 512 MiB without reading it
/// (issue #11). The error names the file and says why (exit 2).
pub fn read_text_arg(path: &std::path::Path) -> miette::Result<String> {
    let name = path.display().to_string();
    let bytes = kubepath_ingest::snapshot::read_regular_file(path)
        .map_err(|why| miette::miette!("cannot read {}: {}", esc(&name), esc(&why)))?;
    String::from_utf8(bytes).map_err(|e| {
        miette::miette!(
            "cannot read {}: not UTF-8 text (invalid byte at offset {})",
            esc(&name),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Characters of the offending line shown on each side of the error's column.
const WINDOW: usize = 60;
/// At most this many characters of any quoted text in a message (`found ...`).
const MAX_QUOTE: usize = 120;

/// `s` cut to at most `max` characters, with `…` where it was cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((b, _)) => format!("{}…", &s[..b]),
    }
}

/// A parse error of `file` (whose text is `text`) at 1-based `line` and `column` (characters):
/// the message `file:line:column: expected E, found F` with F clipped, and a snippet of the
/// line before and a window of the offending line around the column.
pub fn source_error(
    file: &str,
    text: &str,
    line: u32,
    column: u32,
    expected: &str,
    found: &str,
) -> miette::Report {
    // File names and contents may hold control characters (ESC, BEL, CR): show them escaped.
    let esc = kubepath_report::escape_value;
    let file = esc(file);
    let expected = esc(&clip(expected, MAX_QUOTE));
    let msg = format!(
        "{file}:{line}:{column}: expected {expected}, found {}",
        esc(&clip(found, MAX_QUOTE))
    );
    let label = format!("expected {expected}");
    let lines: Vec<&str> = text
        .split('\n')
        .skip((line as usize).saturating_sub(2))
        .take(if line >= 2 { 2 } else { 1 })
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let Some(&bad) = lines.last() else {
        return miette::miette!("{msg}");
    };
    let col = column.saturating_sub(1) as usize;
    // The window of the offending line, in characters: [from, to), split at the column.
    let n = bad.chars().count();
    let at = col.min(n);
    let from = at.saturating_sub(WINDOW);
    let to = (col + WINDOW).min(n);
    let before: String = bad.chars().skip(from).take(at - from).collect();
    let after: String = bad.chars().skip(at).take(to - at).collect();
    let mut snippet = String::new();
    let mut first_line = line as usize;
    if lines.len() == 2 {
        first_line -= 1;
        snippet.push_str(&esc(&clip(lines[0], 2 * WINDOW)));
        snippet.push('\n');
    }
    let line_start = snippet.len();
    if from > 0 {
        snippet.push('…');
    }
    snippet.push_str(&esc(&before));
    let label_at = snippet.len();
    snippet.push_str(&esc(&after));
    if to < n {
        snippet.push('…');
    }
    let label_len = snippet[label_at..]
        .split(char::is_whitespace)
        .next()
        .map(|t| t.len().max(1))
        .unwrap_or(1)
        .min(snippet.len() - label_at);
    // miette's header shows the label's column as its byte offset in the snippet's line plus
    // one: shift it to the error's column in the file.
    let col_shift = col as isize - (label_at - line_start) as isize;
    let source = Clipped {
        name: file.clone(),
        text: snippet,
        first_line: first_line.saturating_sub(1),
        col_shift,
    };
    miette::Report::from(
        miette::MietteDiagnostic::new(msg)
            .with_code("kubepath::malformed_input")
            .with_labels(vec![LabeledSpan::at(label_at..label_at + label_len, label)]),
    )
    .with_source_code(source)
}

/// A few lines cut out of a file: miette numbers them as in the file (first line
/// `first_line` + 1, the label's column shifted by `col_shift`).
struct Clipped {
    name: String,
    text: String,
    first_line: usize,
    col_shift: isize,
}

impl SourceCode for Clipped {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            inner.column().saturating_add_signed(self.col_shift),
            inner.line_count(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &miette::Report) -> String {
        let mut s = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut s, r.as_ref())
            .unwrap();
        s
    }

    #[test]
    fn a_huge_line_is_clipped_around_the_column() {
        let long = format!("-A INPUT --comment \"{}\" --bogus 1\n", "x".repeat(100_000));
        let text = format!("*filter\n{long}COMMIT\n");
        let col = long.find("--bogus").unwrap() as u32 + 1;
        let r = source_error("f.rules", &text, 2, col, "an option", "`--bogus`");
        let s = render(&r);
        assert!(s.len() < 2_000, "{} bytes", s.len());
        assert!(s.contains("--bogus"), "{s}");
        assert!(s.contains(&format!("f.rules:2:{col}")), "{s}");
        // The found text is clipped too.
        let r = source_error("f", &text, 2, 1, "x", &"y".repeat(10_000));
        assert!(render(&r).len() < 2_000);
    }

    #[test]
    fn control_characters_are_escaped() {
        let text = "*filter\n-A INPUT -m comment --comment \"\u{1b}]0;pwned\u{7}\r\" --bogus\n";
        let r = source_error("n\u{1b}[2Jode/f", text, 2, 42, "x", "`\u{1b}`");
        let s = render(&r);
        assert!(
            !s.contains('\u{1b}') && !s.contains('\u{7}') && !s.contains('\r'),
            "{s:?}"
        );
        assert!(
            s.contains("\\x1b]0;pwned\\x07\\x0d") && s.contains("n\\x1b[2Jode/f"),
            "{s}"
        );
        assert!(s.contains("--bogus"), "{s}");
    }

    #[test]
    fn no_color_wins_then_clicolor_force_then_the_terminal() {
        use std::ffi::OsStr;
        let s = |v: &'static str| Some(OsStr::new(v));
        assert!(!color_choice(s("1"), s("1"), true));
        assert!(!color_choice(s("1"), None, true));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(color_choice(s(""), None, true));
        assert!(color_choice(None, s("1"), false));
        assert!(!color_choice(None, s("0"), false));
        assert!(!color_choice(None, s(""), false));
        assert!(color_choice(None, None, true));
        assert!(!color_choice(None, None, false));
    }

    #[test]
    fn short_lines_and_edges() {
        let r = source_error("f", "a\nb c\n", 2, 3, "x", "`c`");
        let s = render(&r);
        assert!(s.contains("b c") && s.contains("f:2:3"), "{s}");
        // Past the end of the file or the line: no panic.
        let _ = render(&source_error("f", "a\n", 9, 9, "x", "y"));
        let _ = render(&source_error("f", "é\n", 1, 99, "x", "y"));
        let _ = render(&source_error("f", "", 1, 1, "x", "y"));
    }
}
