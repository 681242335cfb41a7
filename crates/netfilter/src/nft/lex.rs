//! Tokens of the nft language (`nft list ruleset` output and `nft -f` input), with positions.

use std::sync::Arc;

use crate::types::ParseError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A bare word: keywords, names, addresses, numbers, `a.b.c.d/n`, `x-y`, a lone `.`.
    Word(String),
    /// A double-quoted string (without the quotes).
    Str(String),
    /// `@` (a set reference follows).
    At,
    LBrace,
    RBrace,
    Comma,
    Semi,
    Newline,
    /// `==`, `!=`, `<`, `>`, `<=`, `>=`, `&`, `|`, `^`, `=`, `(`, `)`.
    Op(&'static str),
    Eof,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::At => "`@`".into(),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Semi => "`;`".into(),
            Tok::Newline => "end of line".into(),
            Tok::Op(o) => format!("`{o}`"),
            Tok::Eof => "end of file".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: u32,
    pub col: u32,
    /// Byte offsets in the text.
    pub start: usize,
    pub end: usize,
}

fn is_word_char(c: char) -> bool {
    !(c.is_whitespace()
        || matches!(
            c,
            '{' | '}'
                | ';'
                | ','
                | '"'
                | '#'
                | '@'
                | '='
                | '!'
                | '<'
                | '>'
                | '&'
                | '|'
                | '^'
                | '\\'
                | '('
                | ')'
        ))
}

pub(crate) fn lex(file: &Arc<str>, text: &str) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut line_start = 0usize;
    let mut it = text.char_indices().peekable();
    // Columns are counted incrementally from the last position asked for (counting from the
    // line start for every token is quadratic in the length of a line: a one-line set of
    // 300k elements).
    let mut at = (0usize, 1u32);
    let mut col_of = |pos: usize, line_start: usize| -> u32 {
        if at.0 < line_start || at.0 > pos {
            at = (line_start, 1);
        }
        at.1 += text[at.0..pos].chars().count() as u32;
        at.0 = pos;
        at.1
    };
    while let Some(&(i, c)) = it.peek() {
        let col = col_of(i, line_start);
        let mut push = |tok: Tok, end: usize| {
            out.push(Token {
                tok,
                line,
                col,
                start: i,
                end,
            })
        };
        match c {
            '\n' => {
                it.next();
                push(Tok::Newline, i + 1);
                line += 1;
                line_start = i + 1;
            }
            c if c.is_whitespace() => {
                it.next();
            }
            '#' => {
                while let Some(&(_, c)) = it.peek() {
                    if c == '\n' {
                        break;
                    }
                    it.next();
                }
            }
            '\\' => {
                // Line continuation: a backslash before the end of the line.
                it.next();
                let mut j = i + 1;
                while let Some(&(k, c)) = it.peek() {
                    if c == '\n' {
                        it.next();
                        line += 1;
                        line_start = k + 1;
                        j = usize::MAX;
                        break;
                    }
                    if !c.is_whitespace() {
                        j = k;
                        break;
                    }
                    it.next();
                }
                if j != usize::MAX {
                    return Err(ParseError {
                        file: file.clone(),
                        line,
                        column: col,
                        expected: "a line continuation (`\\` at the end of a line)".into(),
                        found: "`\\`".into(),
                    });
                }
            }
            '"' => {
                it.next();
                let mut s = String::new();
                let mut closed = None;
                for (k, c) in it.by_ref() {
                    if c == '"' {
                        closed = Some(k);
                        break;
                    }
                    if c == '\n' {
                        break;
                    }
                    s.push(c);
                }
                let Some(k) = closed else {
                    return Err(ParseError {
                        file: file.clone(),
                        line,
                        column: col,
                        expected: "a closing `\"` on the same line".into(),
                        found: "an unterminated string".into(),
                    });
                };
                push(Tok::Str(s), k + 1);
            }
            '{' | '}' | ';' | ',' | '@' | '(' | ')' => {
                it.next();
                let t = match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    ';' => Tok::Semi,
                    ',' => Tok::Comma,
                    '@' => Tok::At,
                    // Grouping in flag expressions: `tcp flags & (syn | ack) == syn`.
                    '(' => Tok::Op("("),
                    ')' => Tok::Op(")"),
                    _ => {
                        return Err(ParseError {
                            file: file.clone(),
                            line,
                            column: col,
                            expected: "a statement".into(),
                            found: format!("`{c}`"),
                        })
                    }
                };
                push(t, i + 1);
            }
            '=' | '!' | '<' | '>' | '&' | '|' | '^' => {
                it.next();
                let two = matches!(it.peek(), Some(&(_, '=')));
                let op: &'static str = match (c, two) {
                    ('=', true) => "==",
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('=', false) => "=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    ('&', _) => "&",
                    ('|', _) => "|",
                    ('^', _) => "^",
                    _ => "!",
                };
                if two && matches!(c, '=' | '!' | '<' | '>') {
                    it.next();
                }
                if op == "!" {
                    return Err(ParseError {
                        file: file.clone(),
                        line,
                        column: col,
                        expected: "`!=`".into(),
                        found: "`!`".into(),
                    });
                }
                push(Tok::Op(op), i + op.len());
            }
            _ => {
                let mut end = i;
                let mut w = String::new();
                while let Some(&(k, c)) = it.peek() {
                    if !is_word_char(c) {
                        break;
                    }
                    w.push(c);
                    end = k + c.len_utf8();
                    it.next();
                }
                push(Tok::Word(w), end);
            }
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        col: col_of(text.len(), line_start),
        start: text.len(),
        end: text.len(),
    });
    Ok(out)
}
