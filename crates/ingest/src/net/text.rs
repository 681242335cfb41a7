//! Shared helpers for the text readers: shell-prompt stripping, segments, tokens with columns,
//! error construction.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::diag::{Diagnostic, ParseError, Severity};

/// One line of a file, 1-based.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub no: u32,
    pub text: &'a str,
}

/// A run of output lines produced by one command (or the whole file when no prompt is there).
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    /// The command echoed after the prompt that opened the segment, if any.
    pub command: Option<&'a str>,
    /// Line of that prompt (0 when none).
    pub command_line: u32,
    pub lines: Vec<Line<'a>>,
}

impl Segment<'_> {
    /// The lines that are not blank.
    pub fn content(&self) -> impl Iterator<Item = &Line<'_>> {
        self.lines.iter().filter(|l| !l.text.trim().is_empty())
    }

    /// The text of the segment (lines joined with `\n`), with the line number of its first line.
    pub fn text(&self) -> (String, u32) {
        let first = self.lines.first().map(|l| l.no).unwrap_or(1);
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(l.text);
            s.push('\n');
        }
        (s, first)
    }

    /// Whether the command filtered its output (`| grep`, `| include`, `| begin`, `ip a show X`).
    pub fn filter(&self) -> Option<String> {
        let cmd = self.command?;
        if let Some(i) = cmd.find('|') {
            return Some(cmd[i..].trim().to_string());
        }
        None
    }
}

/// Recognise a shell or router prompt line: `host:/path # CMD`, `user@host:~> CMD`,
/// `[root@host ~]# CMD`, `ROUTER# CMD`, `$ CMD`, or a bare prompt. Returns the command (empty
/// for a bare prompt).
pub fn prompt_command(line: &str) -> Option<&str> {
    let t = line.trim_end();
    let b = t.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'[') {
        // [user@host dir]#
        let close = t.find(']')?;
        if t[1..close].chars().any(|c| c == '[') {
            return None;
        }
        i = close + 1;
    } else {
        // host part: [A-Za-z0-9_.@-]+ then optional :path (no spaces, no prompt chars)
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_.@-".contains(&b[i])) {
            i += 1;
        }
        if i == 0 && !matches!(b.first(), Some(b'$')) {
            return None;
        }
        if i < b.len() && b[i] == b':' {
            i += 1;
            while i < b.len() && !b[i].is_ascii_whitespace() && !b"#>$".contains(&b[i]) {
                i += 1;
            }
        }
        // optional single space before the prompt char (SUSE: `host:/home/eccd # cmd`)
        if i < b.len() && b[i] == b' ' && i + 1 < b.len() && b"#>$".contains(&b[i + 1]) {
            i += 1;
        }
    }
    if i >= b.len() || !b"#>$".contains(&b[i]) {
        return None;
    }
    let rest = &t[i + 1..];
    if rest.is_empty() {
        // A bare `$`, `#` or `>` alone is not a prompt.
        return if i == 0 { None } else { Some("") };
    }
    if !rest.starts_with(' ') && !rest.starts_with('\t') {
        // Cisco-style devices echo `R1#show ip bgp` without a blank.
        let plain_host = t[..i]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        let verb = ["show ", "sh ", "display "]
            .iter()
            .any(|v| rest.starts_with(v));
        if !(b[i] == b'#' && plain_host && i >= 2 && verb) {
            return None;
        }
    }
    let host = &t[..i];
    // One-letter "hosts" are BGP status codes (`s>`, `d>`), and no command starts with a digit
    // (a route line such as `h> 10.0.0.0/8 ...`).
    if host.trim().chars().count() == 1
        || rest.trim_start().starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    // A host part that is a number or an address (`Address: 10.96.0.10#53` is excluded by the
    // space rule; a config line such as `1 # comment` is excluded here).
    if !host.is_empty() && host.trim().chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some(rest.trim())
}

/// Split a file into segments at prompt lines. Prompt lines themselves are dropped.
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out: Vec<Segment<'_>> = Vec::new();
    let mut cur = Segment {
        command: None,
        command_line: 0,
        lines: Vec::new(),
    };
    for (i, raw) in text.lines().enumerate() {
        let no = (i + 1) as u32;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(cmd) = prompt_command(raw) {
            if cur.command.is_some() || cur.lines.iter().any(|l| !l.text.trim().is_empty()) {
                out.push(cur);
            }
            cur = Segment {
                command: if cmd.is_empty() { None } else { Some(cmd) },
                command_line: no,
                lines: Vec::new(),
            };
            continue;
        }
        cur.lines.push(Line { no, text: raw });
    }
    if cur.command.is_some() || cur.lines.iter().any(|l| !l.text.trim().is_empty()) {
        out.push(cur);
    }
    out
}

/// A whitespace-separated token with its 1-based column.
#[derive(Debug, Clone, Copy)]
pub struct Tok<'a> {
    pub s: &'a str,
    pub col: u32,
}

pub fn tokens(line: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in line.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push(Tok {
                    s: &line[s..i],
                    col: (line[..s].chars().count() + 1) as u32,
                });
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(Tok {
            s: &line[s..],
            col: (line[..s].chars().count() + 1) as u32,
        });
    }
    out
}

/// Build a [`ParseError`].
pub fn err(
    file: &Arc<str>,
    line: u32,
    col: u32,
    expected: impl Into<String>,
    found: impl Into<String>,
) -> ParseError {
    ParseError {
        file: file.clone(),
        line,
        column: col,
        expected: expected.into(),
        found: found.into(),
    }
}

pub fn diag(
    sev: Severity,
    file: &Arc<str>,
    line: u32,
    col: u32,
    message: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        severity: sev,
        file: file.clone(),
        line,
        column: col,
        message: message.into(),
    }
}

/// Token cursor over one line, producing errors that name the line and column.
pub struct Cursor<'a, 'f> {
    pub toks: Vec<Tok<'a>>,
    pub pos: usize,
    pub file: &'f Arc<str>,
    pub line: u32,
    /// Column just after the end of the line (for "expected X, found end of line").
    pub eol: u32,
}

impl<'a, 'f> Cursor<'a, 'f> {
    pub fn new(file: &'f Arc<str>, line: Line<'a>) -> Self {
        Cursor {
            toks: tokens(line.text),
            pos: 0,
            file,
            line: line.no,
            eol: (line.text.chars().count() + 1) as u32,
        }
    }
    pub fn peek(&self) -> Option<&'a str> {
        self.toks.get(self.pos).map(|t| t.s)
    }
    pub fn col(&self) -> u32 {
        self.toks.get(self.pos).map(|t| t.col).unwrap_or(self.eol)
    }
    pub fn bump(&mut self) -> Option<Tok<'a>> {
        let t = self.toks.get(self.pos).copied();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    pub fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
    pub fn error(&self, expected: impl Into<String>) -> ParseError {
        let found = match self.toks.get(self.pos) {
            Some(t) => format!("`{}`", t.s),
            None => "end of line".to_string(),
        };
        err(self.file, self.line, self.col(), expected, found)
    }
    pub fn error_at(&self, tok: Tok<'a>, expected: impl Into<String>) -> ParseError {
        err(
            self.file,
            self.line,
            tok.col,
            expected,
            format!("`{}`", tok.s),
        )
    }
    /// The next token, or an error naming what was expected.
    pub fn expect(&mut self, what: &str) -> Result<Tok<'a>, ParseError> {
        match self.bump() {
            Some(t) => Ok(t),
            None => Err(self.error(what)),
        }
    }
    pub fn expect_parse<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, ParseError> {
        let t = self.expect(what)?;
        t.s.parse().map_err(|_| self.error_at(t, what))
    }
    pub fn expect_ip(&mut self, what: &str) -> Result<IpAddr, ParseError> {
        let t = self.expect(what)?;
        parse_ip(t.s).ok_or_else(|| self.error_at(t, what))
    }
}

/// An IP address, accepting an IPv6 zone-less form only.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// A prefix `A/L`, or a bare address as a host prefix (/32, /128).
pub fn parse_prefix(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        s.parse::<IpNet>().ok()
    } else {
        parse_ip(s).map(IpNet::from)
    }
}

/// A number in decimal or `0x` hexadecimal.
pub fn parse_u32(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// Line/column of a byte offset in `text` (both 1-based), for JSON errors.
pub fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let mut line = 1u32;
    let mut col = 1u32;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Parse JSON text, mapping serde_json's error position (relative to `first_line`) into a
/// [`ParseError`].
pub fn parse_json(
    file: &Arc<str>,
    text: &str,
    first_line: u32,
) -> Result<serde_json::Value, ParseError> {
    serde_json::from_str(text).map_err(|e| {
        err(
            file,
            first_line + e.line().saturating_sub(1) as u32,
            e.column().max(1) as u32,
            "valid JSON",
            e.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts() {
        assert_eq!(
            prompt_command("pool2-6859c57999-7hfs2:/home/eccd # ip r"),
            Some("ip r")
        );
        assert_eq!(
            prompt_command("eccd@control-plane-wfb88:~> nslookup a.b"),
            Some("nslookup a.b")
        );
        assert_eq!(
            prompt_command("DC173-SLX-L1A# show ip bgp vrf X"),
            Some("show ip bgp vrf X")
        );
        assert_eq!(prompt_command("DC173-SLX-L1B#"), Some(""));
        assert_eq!(prompt_command("[root@node1 ~]# ip rule"), Some("ip rule"));
        assert_eq!(prompt_command("$ ip a"), Some("ip a"));
        assert_eq!(prompt_command("# Generated by iptables-save v1.8"), None);
        assert_eq!(prompt_command("Address: 10.96.0.10#53"), None);
        assert_eq!(prompt_command("*nat"), None);
        assert_eq!(prompt_command("-A KUBE-SERVICES -j X"), None);
        assert_eq!(prompt_command("#"), None);
        assert_eq!(prompt_command("server_name foo;"), None);
        assert_eq!(prompt_command("1 # comment"), None);
        assert_eq!(
            prompt_command("s>   10.2.0.0/24        10.90.1.2   none 100 0 65010 e"),
            None
        );
        assert_eq!(prompt_command("R1>show ip bgp"), None);
        assert_eq!(prompt_command("R1#show ip bgp"), Some("show ip bgp"));
        assert_eq!(prompt_command("R1# show ip bgp"), Some("show ip bgp"));
    }

    #[test]
    fn segments_split() {
        let s = segments("h:~ # ip r\ndefault via 1.1.1.1 dev e\nh:~ # ip rule\n0: from all lookup local\nh:~ #\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].command, Some("ip r"));
        assert_eq!(s[0].lines.len(), 1);
        assert_eq!(s[1].lines[0].no, 4);
    }
}
