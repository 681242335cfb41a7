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
        let err = |line: u32, expected: &str, found: String| ParseError {
            file: file.clone(),
            line,
            column: col,
            expected: expected.into(),
            found,
        };
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
                match continued_line_start(&mut it) {
                    Some(next_line) => {
                        line += 1;
                        line_start = next_line;
                    }
                    None => {
                        return Err(err(
                            line,
                            "a line continuation (`\\` at the end of a line)",
                            "`\\`".into(),
                        ))
                    }
                }
            }
            '"' => {
                it.next();
                let Some((s, end)) = quoted(&mut it) else {
                    return Err(err(
                        line,
                        "a closing `\"` on the same line",
                        "an unterminated string".into(),
                    ));
                };
                push(Tok::Str(s), end);
            }
            '{' | '}' | ';' | ',' | '@' | '(' | ')' => {
                it.next();
                let Some(t) = punctuation(c) else {
                    return Err(err(line, "a statement", format!("`{c}`")));
                };
                push(t, i + 1);
            }
            '=' | '!' | '<' | '>' | '&' | '|' | '^' => {
                it.next();
                let op = operator(c, &mut it);
                if op == "!" {
                    return Err(err(line, "`!=`", "`!`".into()));
                }
                push(Tok::Op(op), i + op.len());
            }
            _ => {
                let (w, end) = word(i, &mut it);
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

type Chars<'t> = std::iter::Peekable<std::str::CharIndices<'t>>;

/// After a `\`: the start of the next line when only blanks are left on this one (a line
/// continuation), else `None`.
fn continued_line_start(it: &mut Chars) -> Option<usize> {
    while let Some(&(k, c)) = it.peek() {
        if c == '\n' {
            it.next();
            return Some(k + 1);
        }
        if !c.is_whitespace() {
            return None;
        }
        it.next();
    }
    None
}

/// After an opening `"`: the string up to the closing `"` on the same line, and the end of
/// the token; `None` when it is not closed there.
fn quoted(it: &mut Chars) -> Option<(String, usize)> {
    let mut s = String::new();
    for (k, c) in it.by_ref() {
        if c == '"' {
            return Some((s, k + 1));
        }
        if c == '\n' {
            break;
        }
        s.push(c);
    }
    None
}

/// The token of a punctuation character.
fn punctuation(c: char) -> Option<Tok> {
    Some(match c {
        '{' => Tok::LBrace,
        '}' => Tok::RBrace,
        ';' => Tok::Semi,
        ',' => Tok::Comma,
        '@' => Tok::At,
        // Grouping in flag expressions: `tcp flags & (syn | ack) == syn`.
        '(' => Tok::Op("("),
        ')' => Tok::Op(")"),
        _ => return None,
    })
}

/// The operator starting with `c` (consumed), with a following `=` when it makes one of two
/// characters; a lone `!` is no operator.
fn operator(c: char, it: &mut Chars) -> &'static str {
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
    op
}

/// The word starting at `i`, and its end.
fn word(i: usize, it: &mut Chars) -> (String, usize) {
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
    (w, end)
}
