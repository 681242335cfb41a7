//! YAML 1.2 (and therefore JSON) documents with line numbers.
//!
//! `saphyr-parser` produces events with positions; this module builds one
//! [`serde_json::Value`] per document plus a side table mapping each JSON-pointer path
//! (`/spec/ports/0/port`) to the 1-based line where that node (or its mapping key) starts.
//! Plain scalars are resolved with the YAML 1.2 core schema (null, bool, int, float, else
//! string); quoted scalars are strings; `!!str` forces a string.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{BufferedInput, Event, Parser, ScalarStyle, ScanError, Span, StrInput};
use serde_json::{Map, Number, Value};

use crate::diag::{Diagnostic, ParseError, Severity};

/// JSON-pointer path -> 1-based line.
///
/// Keyed by a 64-bit hash of the path rather than the path itself: a table holds one entry per
/// node of the document, and the path strings (`/items/130367/spec/containers/0/ports/0/name`)
/// were most of a large `List`'s memory. Two paths of one document sharing a hash (odds about
/// n^2 / 2^65, 1 in a million for 6 million nodes) would only give one of them the other's line
/// in a diagnostic.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    map: HashMap<u64, u32>,
}

/// The key of `path` in [`Lines`]: `DefaultHasher::new()` hashes alike in one process, which
/// is all a table built and read by the same run needs.
fn path_key(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

impl Lines {
    /// The line of `path` (a JSON pointer: `""` is the document), if recorded.
    pub fn get(&self, path: &str) -> Option<u32> {
        self.map.get(&path_key(path)).copied()
    }

    fn record(&mut self, path: &str, line: u32) {
        self.map.entry(path_key(path)).or_insert(line);
    }
}

/// One YAML document.
#[derive(Debug, Clone)]
pub struct Doc {
    pub value: Value,
    pub lines: Lines,
    /// Line of the document's first node.
    pub line: u32,
}

/// Escape a key for a JSON pointer (RFC 6901).
pub fn escape_key(k: &str) -> Cow<'_, str> {
    if k.contains('~') || k.contains('/') {
        Cow::Owned(k.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(k)
    }
}

/// Blank out a leading shell-prompt line (`user@host:~> kubectl get svc -A -o yaml`) and a
/// trailing bare prompt, keeping line numbers. Returns the text to parse: `text` itself when
/// there is no prompt (no copy of a large file).
pub fn strip_prompts(text: &str) -> Cow<'_, str> {
    let first = text
        .split('\n')
        .find(|l| !l.trim().is_empty())
        .is_some_and(is_command_prompt);
    let last = text
        .rsplit('\n')
        .find(|l| !l.trim().is_empty())
        .is_some_and(is_bare_prompt);
    if !first && !last {
        return Cow::Borrowed(text);
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<&str> = lines.clone();
    if let Some(first) = lines.iter().position(|l| !l.trim().is_empty()) {
        if is_command_prompt(lines[first]) {
            out[first] = "";
        }
    }
    if let Some(last) = lines.iter().rposition(|l| !l.trim().is_empty()) {
        if is_bare_prompt(lines[last]) {
            out[last] = "";
        }
    }
    Cow::Owned(out.join("\n"))
}

/// `prompt$ command ...` / `host:~ # command` / `host:~> command`, where the command is a
/// tool that prints Kubernetes objects or files.
pub fn is_command_prompt(line: &str) -> bool {
    const TOOLS: &[&str] = &["kubectl", "oc", "cat", "k", "microk8s", "k3s"];
    let t = line.trim();
    if t.starts_with('#') || t.starts_with('{') || t.starts_with('[') || t.starts_with('-') {
        return false;
    }
    for (i, c) in t.char_indices() {
        if matches!(c, '$' | '#' | '>') {
            let rest = t[i + 1..].trim_start();
            let word = rest.split_whitespace().next().unwrap_or("");
            if TOOLS.contains(&word) && !t[..i].contains(": ") {
                return true;
            }
        }
    }
    false
}

/// `user@host:~>` / `host:~ #` / `$` with nothing after it.
pub fn is_bare_prompt(line: &str) -> bool {
    let t = line.trim_end();
    (t.ends_with('$') || t.ends_with('#') || t.ends_with('>'))
        && !t.contains(": ")
        && !t.trim_start().starts_with('#')
        && !t.trim_start().starts_with('-')
        && t.split_whitespace().count() <= 2
}

/// Deepest nesting of collections accepted, in any style (block `- - - x`, flow `[[[x]]]`,
/// mappings). Kubernetes objects, CRD schemas included, stay far below; without a bound,
/// 100,000 levels of `- ` (200 KB) took 5.5 GiB here (each level keeps its JSON-pointer path).
pub const MAX_DEPTH: usize = 256;
/// Most alias uses (`*name`) in one file.
pub const MAX_ALIASES: usize = 10_000;
/// Most nodes plus scalar bytes that aliases may add to one file, all aliases together: each
/// alias is a copy of its anchor's value, so nested anchors grow exponentially (a 380-byte
/// "billion laughs" file expanded to 8 GiB).
pub const MAX_ALIAS_EXPANSION: usize = 1_000_000;

enum Frame {
    Seq {
        path: String,
        items: Vec<Value>,
        anchor: usize,
        /// Children attached so far (`items.len()`, except in a streamed `items` sequence,
        /// which keeps none).
        count: usize,
        /// The top-level `items` sequence of a document whose items go to the sink one at a
        /// time ([`parse_docs_streaming`]).
        stream: bool,
    },
    Map {
        path: String,
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
    },
}

/// What a completed node was, for [`DocHead`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Scalar,
    Seq,
    Map,
    Alias,
}

/// A top-level field of a document's root mapping, as [`scan_docs`] saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum HeadField {
    /// Not there.
    #[default]
    Missing,
    /// A scalar, resolved as in the document's value.
    Scalar(Value),
    /// A collection or an alias.
    Other,
}

impl HeadField {
    /// The field as `Value::as_str` would read it from the document's value (`""` when it is
    /// not a string); `None` when it is missing, a collection or an alias.
    pub fn scalar_str(&self) -> Option<&str> {
        match self {
            HeadField::Scalar(v) => Some(v.as_str().unwrap_or("")),
            _ => None,
        }
    }
}

/// The shape of one document (one per `---`, empty documents included), from [`scan_docs`]:
/// enough to decide, before building anything, whether its `items` can be handed over one at a
/// time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocHead {
    /// The root node is a mapping.
    pub is_map: bool,
    /// The root mapping's `kind` and `apiVersion` (the last one, if repeated: the last value
    /// wins in the document's value too).
    pub kind: HeadField,
    pub api_version: HeadField,
    /// How many `items` keys the root mapping has.
    pub items_keys: usize,
    /// The (last) `items` value is a sequence without an anchor.
    pub items_plain_seq: bool,
    /// The line of the (last) `items` value.
    pub items_line: u32,
}

/// One entry of a streamed `items` sequence ([`parse_docs_streaming`]).
#[derive(Debug, Clone)]
pub struct Item {
    /// Which document (counting every `---`, as [`scan_docs`]'s heads do).
    pub doc: usize,
    /// Its index in `items`.
    pub index: usize,
    pub value: Value,
    /// The lines of the item's nodes, under the same paths as in the whole document
    /// (`/items/7/metadata/name`); the paths outside the item are in its document's table.
    pub lines: Lines,
    /// Line where the item starts.
    pub line: u32,
}

/// What [`parse_docs_streaming`] hands over, in document order: a document's streamed items as
/// each is complete, then the document itself (its `items` left empty).
#[derive(Debug)]
pub enum Parsed {
    Item(Item),
    Doc { index: usize, doc: Doc },
}

/// Parse every document of `text` (`file` names it in errors and diagnostics).
pub fn parse_docs(
    file: &Arc<str>,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<Doc>, ParseError> {
    let mut docs = Vec::new();
    walk(
        file,
        text,
        diags,
        Mode::Build {
            stream: &[],
            sink: &mut |p| {
                if let Parsed::Doc { doc, .. } = p {
                    docs.push(doc);
                }
            },
        },
    )?;
    Ok(docs)
}

/// The first pass over `text`: every error [`parse_docs`] would return (the same checks, the
/// same events), and the shape of each document, without building any value. Memory stays
/// within the parser's own plus one path and size per open collection.
pub fn scan_docs(file: &Arc<str>, text: &str) -> Result<Vec<DocHead>, ParseError> {
    walk(file, text, &mut Vec::new(), Mode::Scan)
}

/// A guess of [`scan_docs`]'s heads from the text alone, for YAML as kubectl prints it (root
/// keys at column 0, `---` between documents): about a hundred times cheaper than the parser's
/// pass. None where the text is not that simple (JSON, a `---` with content after it, `...`,
/// anything at column 0 that is not a key, a comment or a sequence entry under `items:`).
/// Never trusted on its own: whoever lowers with it checks it against the heads
/// [`parse_docs_streaming`] returns (`k8s::read_cluster_file_fresh`).
pub fn guess_heads(text: &str) -> Option<Vec<DocHead>> {
    let mut heads = Vec::new();
    let mut head = DocHead::default();
    let mut started = false;
    // After a root `items:` with nothing after it: whether a sequence follows is decided by
    // the next line with content.
    let mut items_open = false;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some(&first) = line.as_bytes().first() else {
            continue;
        };
        match first {
            b' ' => {
                let t = line.trim_start_matches(' ');
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if items_open {
                    head.items_plain_seq = t == "-" || t.starts_with("- ");
                    items_open = false;
                }
                continue;
            }
            b'#' => continue,
            b'-' if line.trim_end() == "---" => {
                if started {
                    heads.push(std::mem::take(&mut head));
                }
                started = true;
                items_open = false;
                continue;
            }
            b'-' if items_open
                || (head.items_keys > 0 && (line == "-" || line.starts_with("- "))) =>
            {
                // A sequence entry at column 0: under the `items:` above.
                if items_open {
                    head.items_plain_seq = true;
                    items_open = false;
                }
                continue;
            }
            c if c.is_ascii_alphabetic() => {}
            _ => return None,
        }
        // A root key: `key:` or `key: value`.
        let (key, rest) = line.split_once(':')?;
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || !(rest.is_empty() || rest.starts_with(' '))
        {
            return None;
        }
        if items_open {
            // `items:` with nothing under it: a null, not a sequence.
            head.items_plain_seq = false;
            items_open = false;
        }
        started = true;
        head.is_map = true;
        let value = rest.trim();
        let scalar = || -> Option<HeadField> {
            if value.is_empty() || value.contains('#') {
                return None;
            }
            if let Some(q) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                return (!q.contains(['\\', '"']))
                    .then(|| HeadField::Scalar(Value::String(q.into())));
            }
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"./_-".contains(&b))
                .then(|| HeadField::Scalar(resolve_plain(value)))
        };
        match key {
            "kind" => head.kind = scalar()?,
            "apiVersion" => head.api_version = scalar()?,
            "items" => {
                head.items_keys += 1;
                head.items_line = i as u32 + 1;
                match value {
                    "" => items_open = true,
                    "[]" => head.items_plain_seq = true,
                    _ => return None,
                }
            }
            _ => {}
        }
    }
    if items_open {
        head.items_plain_seq = false;
    }
    if started {
        heads.push(head);
    }
    (!heads.is_empty()).then_some(heads)
}

/// Parse every document of `text` like [`parse_docs`], handing them to `sink` in order; for a
/// document `d` with `stream[d]` (`d` counting every `---`, as [`scan_docs`] does), each entry
/// of the root mapping's `items` sequence goes to `sink` as soon as it is complete, with a line
/// table of its own, and is not kept: the memory of a large `kind: List` is then one item's
/// tree, not the whole document's. Set `stream[d]` only for a document whose head has one
/// `items` key that is a sequence without an anchor (an alias could not copy a streamed
/// sequence). Anchors inside the items still work (their values are kept, as always).
///
/// An error can come after some documents or items were handed over; [`scan_docs`] first
/// returns the same error without handing over anything.
///
/// Returns the documents' heads, as [`scan_docs`] gives them: a caller that chose `stream`
/// from a guess can check it against them.
pub fn parse_docs_streaming(
    file: &Arc<str>,
    text: &str,
    diags: &mut Vec<Diagnostic>,
    stream: &[bool],
    sink: &mut dyn FnMut(Parsed),
) -> Result<Vec<DocHead>, ParseError> {
    walk(file, text, diags, Mode::Build { stream, sink })
}

enum Mode<'a> {
    Scan,
    Build {
        stream: &'a [bool],
        sink: &'a mut dyn FnMut(Parsed),
    },
}

fn walk(
    file: &Arc<str>,
    text: &str,
    diags: &mut Vec<Diagnostic>,
    mut mode: Mode<'_>,
) -> Result<Vec<DocHead>, ParseError> {
    let scan = matches!(mode, Mode::Scan);
    // One head per document started, empty ones included (both modes).
    let mut heads: Vec<DocHead> = Vec::new();
    let (mut parser, marked) = Events::new(text);
    // 1-based column of a 0-based column of the parser's input: on a line where `Events`
    // inserted its `--- `, the text's columns are 4 less.
    let col = |line: u32, c: usize| -> u32 {
        let c = if marked.binary_search(&line).is_ok() {
            c.saturating_sub(MARK.len())
        } else {
            c
        };
        c as u32 + 1
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut lines = Lines::default();
    // The document's line table while a streamed item's nodes are recorded in `lines`.
    let mut doc_lines: Option<Lines> = None;
    // Line where the streamed item being built starts.
    let mut item_line = 0u32;
    // Anchored values with their size (nodes + scalar bytes, as counted for MAX_ALIAS_EXPANSION).
    // The scan keeps the sizes only (the values are `Null`).
    let mut anchors: HashMap<usize, (Value, usize)> = HashMap::new();
    // Size of each open collection so far (parallel to `stack`).
    let mut sizes: Vec<usize> = Vec::new();
    let mut alias_uses = 0usize;
    let mut alias_expansion = 0usize;
    let mut doc_line = 0u32;
    let mut root: Option<Value> = None;
    // Documents started so far (the current one is `ndocs - 1`).
    let mut ndocs = 0usize;
    let mut stream_doc = false;
    let mut head = DocHead::default();
    // The line of the root mapping's latest key.
    let mut root_key_line = 0u32;

    let err = |span: &Span, expected: &str, found: String| ParseError {
        file: file.clone(),
        line: span.start.line() as u32,
        column: col(span.start.line() as u32, span.start.col()),
        expected: expected.to_string(),
        found,
    };

    loop {
        let (ev, span) = match parser.next_event() {
            None => break,
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                return Err(ParseError {
                    file: file.clone(),
                    line: e.marker().line() as u32,
                    column: col(e.marker().line() as u32, e.marker().col()),
                    expected: "well-formed YAML or JSON".into(),
                    found: e.info().to_string(),
                })
            }
        };
        let line = span.start.line() as u32;
        // A completed node (scalar, alias, or closed collection) to attach to its parent, with
        // its anchor, its size and what it was.
        let completed: Option<(Value, usize, usize, NodeKind)> = match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                lines = Lines::default();
                doc_lines = None;
                anchors.clear();
                root = None;
                doc_line = 0;
                ndocs += 1;
                head = DocHead::default();
                stream_doc = match &mode {
                    Mode::Scan => false,
                    Mode::Build { stream, .. } => stream.get(ndocs - 1).copied().unwrap_or(false),
                };
                None
            }
            Event::DocumentEnd => {
                while heads.len() + 1 < ndocs {
                    heads.push(DocHead::default());
                }
                if heads.len() < ndocs {
                    heads.push(std::mem::take(&mut head));
                }
                match &mut mode {
                    Mode::Scan => {}
                    Mode::Build { sink, .. } => {
                        if let Some(v) = root.take() {
                            sink(Parsed::Doc {
                                index: ndocs.saturating_sub(1),
                                doc: Doc {
                                    value: v,
                                    lines: std::mem::take(&mut lines),
                                    line: doc_line,
                                },
                            });
                        }
                    }
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((v, size)) => {
                    alias_uses += 1;
                    alias_expansion = alias_expansion.saturating_add(*size);
                    if alias_uses > MAX_ALIASES {
                        return Err(err(
                            &span,
                            &format!("at most {MAX_ALIASES} aliases in a file"),
                            "one more alias (an alias bomb?)".into(),
                        ));
                    }
                    if alias_expansion > MAX_ALIAS_EXPANSION {
                        return Err(err(
                            &span,
                            &format!(
                                "aliases that expand to at most {MAX_ALIAS_EXPANSION} nodes and bytes in a file"
                            ),
                            format!(
                                "an alias that brings the expansion to {alias_expansion} (an alias bomb?)"
                            ),
                        ));
                    }
                    Some((v.clone(), 0, *size, NodeKind::Alias))
                }
                None => return Err(err(&span, "a defined anchor", "an unknown alias".into())),
            },
            Event::Scalar(s, style, anchor, tag) => {
                // A mapping key?
                let depth = stack.len();
                if let Some(Frame::Map { key, path, .. }) = stack.last_mut() {
                    if key.is_none() {
                        if depth == 1 {
                            root_key_line = line;
                        }
                        if !scan {
                            let child = format!("{}/{}", path, escape_key(&s));
                            lines.record(&child, line);
                        }
                        if let Some(top) = sizes.last_mut() {
                            *top = top.saturating_add(1 + s.len());
                        }
                        *key = Some(s.into_owned());
                        continue;
                    }
                }
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let size = 1 + s.len();
                // The scan resolves only the root mapping's scalars (its head).
                let v = if scan && stack.len() != 1 {
                    Value::Null
                } else if style == ScalarStyle::Plain && !forced_str {
                    resolve_plain(&s)
                } else {
                    Value::String(s.into_owned())
                };
                Some((v, anchor, size, NodeKind::Scalar))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let is_seq = matches!(ev, Event::SequenceStart(..));
                let path = if scan {
                    String::new()
                } else {
                    child_path(&stack)
                };
                if stack.is_empty() {
                    doc_line = line;
                }
                if let Some(Frame::Map { key: None, .. }) = stack.last() {
                    return Err(err(
                        &span,
                        "a scalar mapping key",
                        "a collection used as a key".into(),
                    ));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(err(
                        &span,
                        &format!("at most {MAX_DEPTH} levels of nested collections"),
                        format!("level {}", stack.len() + 1),
                    ));
                }
                // The root mapping's `items` sequence of a streamed document?
                let stream = is_seq
                    && stream_doc
                    && anchor == 0
                    && stack.len() == 1
                    && matches!(stack.last(), Some(Frame::Map { key: Some(k), .. }) if k == "items");
                // An item of it: its nodes' lines go to a table of its own.
                if matches!(stack.last(), Some(Frame::Seq { stream: true, .. })) {
                    doc_lines = Some(std::mem::take(&mut lines));
                    item_line = line;
                }
                if !scan {
                    lines.record(&path, line);
                }
                sizes.push(1);
                stack.push(if is_seq {
                    Frame::Seq {
                        path,
                        items: Vec::new(),
                        anchor,
                        count: 0,
                        stream,
                    }
                } else {
                    Frame::Map {
                        path,
                        map: Map::new(),
                        key: None,
                        anchor,
                    }
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { items, anchor, .. }) => Some((
                    Value::Array(items),
                    anchor,
                    sizes.pop().unwrap_or(1),
                    NodeKind::Seq,
                )),
                _ => return Err(err(&span, "a sequence", "an unbalanced end".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { map, anchor, .. }) => Some((
                    Value::Object(map),
                    anchor,
                    sizes.pop().unwrap_or(1),
                    NodeKind::Map,
                )),
                _ => return Err(err(&span, "a mapping", "an unbalanced end".into())),
            },
        };
        let Some((v, anchor, size, node)) = completed else {
            continue;
        };
        if let Some(top) = sizes.last_mut() {
            *top = top.saturating_add(size);
        }
        if anchor != 0 {
            // The scan keeps the size only; an alias of it is then a `Null` too.
            let kept = if scan { Value::Null } else { v.clone() };
            anchors.insert(anchor, (kept, size));
        }
        let depth = stack.len();
        match stack.last_mut() {
            None => {
                if doc_line == 0 {
                    doc_line = line;
                }
                head.is_map = node == NodeKind::Map;
                if !scan {
                    lines.record("", line);
                }
                root = Some(v);
            }
            Some(Frame::Seq {
                items,
                path,
                count,
                stream,
                ..
            }) => {
                let index = *count;
                *count += 1;
                if *stream {
                    // A collection item recorded its nodes in a table of its own (swapped in
                    // at its start); a scalar or alias item has only its own line.
                    let (item_lines, start) = match doc_lines.take() {
                        Some(d) => (std::mem::replace(&mut lines, d), item_line),
                        None => (Lines::default(), line),
                    };
                    if let Mode::Build { sink, .. } = &mut mode {
                        sink(Parsed::Item(Item {
                            doc: ndocs.saturating_sub(1),
                            index,
                            value: v,
                            lines: item_lines,
                            line: start,
                        }));
                    }
                } else if !scan {
                    lines.record(&format!("{path}/{index}"), line);
                    items.push(v);
                }
            }
            Some(Frame::Map { map, key, path, .. }) => {
                if let Some(k) = key.take() {
                    if depth == 1 {
                        let field = || {
                            if node == NodeKind::Scalar {
                                HeadField::Scalar(v.clone())
                            } else {
                                HeadField::Other
                            }
                        };
                        match k.as_str() {
                            "kind" => head.kind = field(),
                            "apiVersion" => head.api_version = field(),
                            "items" => {
                                head.items_keys += 1;
                                head.items_plain_seq = node == NodeKind::Seq && anchor == 0;
                                head.items_line = root_key_line;
                            }
                            _ => {}
                        }
                    }
                    if scan {
                        continue;
                    }
                    if map.contains_key(&k) {
                        diags.push(Diagnostic {
                            severity: Severity::Warning,
                            file: file.clone(),
                            line,
                            column: col(line, span.start.col()),
                            message: format!(
                                "duplicate key `{k}` under `{}`: the last value wins",
                                if path.is_empty() { "/" } else { path }
                            ),
                        });
                    }
                    map.insert(k, v);
                }
            }
        }
    }
    while heads.len() < ndocs {
        heads.push(DocHead::default());
    }
    Ok(heads)
}

/// What `Events` inserts at the start of the line of a JSON document's opening bracket.
const MARK: &str = "--- ";

/// A change `Events` makes to the text, at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    /// Insert [`MARK`].
    Mark,
    /// Leave out a byte order mark (3 bytes).
    DropBom,
    /// Read a `---` line's marker as three spaces (its `---` moves to the next `Mark`).
    Blank,
}

/// `text` with its edits applied, one character at a time.
struct Edited<'a> {
    text: &'a str,
    pos: usize,
    edits: Vec<(usize, Edit)>,
    next: usize,
    /// Characters still to give from an insertion or a blanking.
    pending: std::str::Chars<'static>,
}

impl Iterator for Edited<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        loop {
            if let Some(c) = self.pending.next() {
                return Some(c);
            }
            match self.edits.get(self.next) {
                Some(&(at, edit)) if at == self.pos => {
                    self.next += 1;
                    match edit {
                        Edit::Mark => self.pending = MARK.chars(),
                        Edit::DropBom => self.pos += '\u{feff}'.len_utf8(),
                        Edit::Blank => {
                            self.pending = "   ".chars();
                            self.pos += 3;
                        }
                    }
                }
                _ => {
                    let c = self.text.get(self.pos..)?.chars().next()?;
                    self.pos += c.len_utf8();
                    return Some(c);
                }
            }
        }
    }
}

/// Where `Events` edits `text`, and the (1-based) lines where it inserts [`MARK`]: the start of
/// the line of every document that is JSON (its first character, past blanks, comments and
/// byte order marks, is `{` or `[`), at whatever column the bracket is. A `---` line before such
/// a document is blanked (the inserted marker stands for it, so documents count the same);
/// byte order marks before the bracket are left out (they are zero-width).
fn json_edits(text: &str) -> (Vec<(usize, Edit)>, Vec<u32>) {
    let mut edits = Vec::new();
    let mut marked = Vec::new();
    let mut at_doc_start = true;
    let mut dashes: Option<usize> = None;
    let mut start = 0usize;
    let mut lineno = 0u32;
    while start < text.len() {
        lineno += 1;
        let end = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        let line = &text[start..end];
        let line_start = start;
        start = end;
        if let Some(rest) = line.strip_prefix("---") {
            if rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']) {
                let r = rest.trim();
                if r.is_empty() || r.starts_with('#') {
                    at_doc_start = true;
                    dashes = Some(line_start);
                } else {
                    at_doc_start = false;
                    dashes = None;
                }
                continue;
            }
        }
        if line.starts_with("...") && line[3..].trim().is_empty() {
            at_doc_start = true;
            dashes = None;
            continue;
        }
        if !at_doc_start {
            continue;
        }
        let body = line.trim_start_matches([' ', '\t', '\u{feff}']);
        let t = body.trim_end();
        if t.is_empty() || t.starts_with('#') || (t.starts_with('%') && line.starts_with('%')) {
            continue;
        }
        at_doc_start = false;
        if body.starts_with(['{', '[']) {
            if let Some(d) = dashes.take() {
                edits.push((d, Edit::Blank));
            }
            edits.push((line_start, Edit::Mark));
            let lead = &line[..line.len() - body.len()];
            for (i, c) in lead.char_indices() {
                if c == '\u{feff}' {
                    edits.push((line_start + i, Edit::DropBom));
                }
            }
            marked.push(lineno);
            // Past the document's closing bracket: the next JSON document may follow on the
            // next line without a `---` (`kubectl ... -o json` twice into one file), which
            // YAML would read as a second node of this document, tokenized whole first.
            let open = line_start + (line.len() - body.len());
            let Some((close, newlines)) = json_end(text.as_bytes(), open) else {
                break; // unclosed: the parser reports it
            };
            lineno += newlines;
            let end = text[close..]
                .find('\n')
                .map_or(text.len(), |i| close + i + 1);
            let rest = text[close..end].trim();
            at_doc_start = rest.is_empty() || rest.starts_with('#');
            start = end;
        }
        dashes = None;
    }
    (edits, marked)
}

/// The end (past the closing bracket) of the JSON value whose opening bracket is at `open`,
/// and how many line breaks it spans; `None` when it does not close. Strings are skipped
/// (JSON strings hold no raw line break), so a bracket inside one does not count.
fn json_end(b: &[u8], open: usize) -> Option<(usize, u32)> {
    let mut depth = 0usize;
    let mut newlines = 0u32;
    let mut in_str = false;
    let mut i = open;
    while let Some(&c) = b.get(i) {
        i += 1;
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = false,
                b'\n' => newlines += 1,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some((i, newlines));
                }
            }
            b'\n' => newlines += 1,
            _ => {}
        }
    }
    None
}

/// The parser's events for `text`. saphyr-parser takes a flow collection that starts a line
/// for a possible implicit key (`{...}: value`) and, in flow context, never gives up on it
/// before the collection closes, so it tokenizes a whole JSON document (`kubectl -o json`)
/// before its first event: 800 MB of tokens for 64 MB of JSON. A document marker before the
/// bracket, on its line (`--- {`), rules the key out (YAML allows no implicit key there) and
/// means the same document, so the parser reads `--- ` inserted at the start of the line of
/// every JSON document (see [`json_edits`]; columns on those lines are corrected by the
/// caller).
enum Events<'a> {
    Plain(Parser<'a, StrInput<'a>>),
    Marked(Parser<'a, BufferedInput<Edited<'a>>>),
}

impl<'a> Events<'a> {
    /// The events, and the lines where `--- ` was inserted (sorted).
    fn new(text: &'a str) -> (Events<'a>, Vec<u32>) {
        let (edits, marked) = json_edits(text);
        if marked.is_empty() {
            return (Events::Plain(Parser::new_from_str(text)), marked);
        }
        let chars = Edited {
            text,
            pos: 0,
            edits,
            next: 0,
            pending: "".chars(),
        };
        (Events::Marked(Parser::new_from_iter(chars)), marked)
    }

    fn next_event(&mut self) -> Option<Result<(Event<'a>, Span), ScanError>> {
        match self {
            Events::Plain(p) => p.next_event(),
            Events::Marked(p) => p.next_event(),
        }
    }
}

fn child_path(stack: &[Frame]) -> String {
    match stack.last() {
        None => String::new(),
        Some(Frame::Seq { path, count, .. }) => format!("{path}/{count}"),
        Some(Frame::Map { path, key, .. }) => {
            format!("{}/{}", path, escape_key(key.as_deref().unwrap_or("")))
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let int_like = {
        let b = s.strip_prefix(['-', '+']).unwrap_or(s);
        !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit())
    };
    if int_like {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Number(i.into());
        }
        if let Ok(u) = s.trim_start_matches('+').parse::<u64>() {
            return Value::Number(u.into());
        }
    }
    if let Some(h) = s.strip_prefix("0x") {
        if let Ok(u) = u64::from_str_radix(h, 16) {
            return Value::Number(u.into());
        }
    }
    if let Some(o) = s.strip_prefix("0o") {
        if let Ok(u) = u64::from_str_radix(o, 8) {
            return Value::Number(u.into());
        }
    }
    // Floats: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let fb = s.strip_prefix(['-', '+']).unwrap_or(s);
    let looks_float = !fb.is_empty()
        && fb
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == b'.')
        && fb
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'-' | b'+'))
        && fb.bytes().any(|c| c.is_ascii_digit());
    if looks_float {
        if let Ok(f) = s.parse::<f64>() {
            if let Some(n) = Number::from_f64(f) {
                return Value::Number(n);
            }
        }
    }
    Value::String(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Doc>, ParseError> {
        let mut d = Vec::new();
        parse_docs(&Arc::from("t.yaml"), text, &mut d)
    }

    #[test]
    fn values_and_lines() {
        let docs = parse(
            "apiVersion: v1\nkind: Service\nspec:\n  ports:\n  - name: http\n    port: 80\n    targetPort: \"80\"\n  x: ~\n  f: 1.5\n  b: true\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 1);
        let v = &docs[0].value;
        assert_eq!(v["spec"]["ports"][0]["port"], Value::from(80));
        assert_eq!(v["spec"]["ports"][0]["targetPort"], Value::from("80"));
        assert_eq!(v["spec"]["x"], Value::Null);
        assert_eq!(v["spec"]["f"], Value::from(1.5));
        assert_eq!(v["spec"]["b"], Value::Bool(true));
        let l = &docs[0].lines;
        assert_eq!(l.get("/spec"), Some(3));
        assert_eq!(l.get("/spec/ports/0"), Some(5));
        assert_eq!(l.get("/spec/ports/0/port"), Some(6));
        assert_eq!(docs[0].line, 1);
    }

    #[test]
    fn streams_and_json() {
        let docs = parse("---\na: 1\n---\nb: [1, 2]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].lines.get("/b"), Some(4));
        let docs =
            parse("{\n  \"kind\": \"List\",\n  \"items\": [\n    {\"a\": 1}\n  ]\n}\n").unwrap();
        assert_eq!(docs[0].value["items"][0]["a"], Value::from(1));
        assert_eq!(docs[0].lines.get("/items/0"), Some(4));
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(&*e.file, "t.yaml");
        assert!(e.line >= 2, "{e}");
        let e = parse("a:\n  - 1\n b: 2\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn prompts_are_blanked() {
        let t = "eccd@control-plane-wfb88:~> kubectl get svc -A -o yaml\napiVersion: v1\nkind: List\nitems: []\neccd@control-plane-wfb88:~>\n";
        let s = strip_prompts(t);
        assert!(s.starts_with("\napiVersion"));
        let docs = parse(&s).unwrap();
        assert_eq!(docs[0].lines.get("/kind"), Some(3));
        assert!(!is_command_prompt("# a comment with kubectl"));
        assert!(is_command_prompt("$ kubectl get pods -o yaml"));
        assert!(is_command_prompt("node1:~ # cat cm.yaml"));
        assert!(!is_bare_prompt("key: value #"));
    }

    #[test]
    fn anchors_and_duplicates() {
        let mut d = Vec::new();
        let docs = parse_docs(&Arc::from("t"), "a: &x {k: 1}\nb: *x\na: 2\n", &mut d).unwrap();
        assert_eq!(docs[0].value["b"]["k"], Value::from(1));
        assert_eq!(docs[0].value["a"], Value::from(2));
        assert_eq!(d.len(), 1);
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    fn file() -> Arc<str> {
        Arc::from("l.yaml")
    }

    /// Everything `parse_docs_streaming` hands over, with the items of streamed documents.
    fn streamed(text: &str, stream: &[bool]) -> (Vec<Parsed>, Vec<Diagnostic>) {
        let mut got = Vec::new();
        let mut d = Vec::new();
        parse_docs_streaming(&file(), text, &mut d, stream, &mut |p| got.push(p)).unwrap();
        (got, d)
    }

    const LIST: &str = "apiVersion: v1\nitems:\n- kind: Pod\n  metadata:\n    name: a\n- kind: Pod\n  metadata:\n    name: b\n    name: b2\n- 7\nkind: List\n---\nkind: Service\n";

    #[test]
    fn the_heads_say_which_documents_are_lists() {
        let heads = scan_docs(&file(), LIST).unwrap();
        assert_eq!(heads.len(), 2);
        assert!(heads[0].is_map);
        assert_eq!(heads[0].kind.scalar_str(), Some("List"));
        assert_eq!(heads[0].api_version.scalar_str(), Some("v1"));
        assert_eq!((heads[0].items_keys, heads[0].items_plain_seq), (1, true));
        assert_eq!(heads[1].kind.scalar_str(), Some("Service"));
        assert_eq!(heads[1].api_version, HeadField::Missing);
        // An anchored `items`, a repeated one, a kind that is not a scalar, empty documents.
        let heads = scan_docs(
            &file(),
            "items: &i [1]\nkind: [List]\n---\n---\nitems: []\nitems: []\n",
        )
        .unwrap();
        assert_eq!(heads.len(), 3);
        assert!(!heads[0].items_plain_seq);
        assert_eq!(heads[0].kind, HeadField::Other);
        assert_eq!(heads[1], DocHead::default());
        assert_eq!(heads[2].items_keys, 2);
    }

    /// A streamed List's items come one at a time, each with the lines of its nodes under the
    /// whole document's paths, before the document, which keeps an empty `items`; put back
    /// together they are exactly what `parse_docs` builds, diagnostics included.
    #[test]
    fn items_are_handed_over_one_at_a_time_as_parse_docs_reads_them() {
        let whole = parse_docs(&file(), LIST, &mut Vec::new()).unwrap();
        let (got, d) = streamed(LIST, &[true, true]);
        let mut items = Vec::new();
        let mut docs = Vec::new();
        for p in got {
            match p {
                Parsed::Item(it) => {
                    assert!(docs.is_empty(), "an item after its document");
                    items.push(it)
                }
                Parsed::Doc { index, doc } => docs.push((index, doc)),
            }
        }
        assert_eq!(items.len(), 3);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].1.value["items"], Value::Array(Vec::new()));
        for (i, it) in items.iter().enumerate() {
            assert_eq!((it.doc, it.index), (0, i));
            assert_eq!(it.value, whole[0].value["items"][i]);
            assert_eq!(Some(it.line), whole[0].lines.get(&format!("/items/{i}")));
        }
        assert_eq!(items[1].lines.get("/items/1/metadata/name"), Some(8));
        assert_eq!(items[1].lines.get("/items/1/metadata"), Some(7));
        // Only the item's own nodes: not its neighbours', nor the document's.
        assert_eq!(items[1].lines.get("/items/0/metadata"), None);
        assert_eq!(items[1].lines.get("/kind"), None);
        assert_eq!(docs[0].1.lines.get("/kind"), Some(11));
        assert_eq!(docs[0].1.lines.get("/items/0/metadata"), None);
        // The duplicate key inside an item, with the document's path.
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.contains("under `/items/1/metadata`"),
            "{}",
            d[0].message
        );
        assert_eq!(d[0].line, 9);
        // The second document, not streamed (and not a List), is whole.
        assert_eq!(docs[1].0, 1);
        assert_eq!(docs[1].1.value, whole[1].value);
    }

    /// Anchors defined in one item and used in another (or after the list) still resolve.
    #[test]
    fn anchors_across_streamed_items() {
        let t = "items:\n- &a {x: 1}\n- *a\n- {y: *a}\nkind: List\nother: *a\n";
        let (got, _) = streamed(t, &[true]);
        let v: Vec<Value> = got
            .iter()
            .map(|p| match p {
                Parsed::Item(it) => it.value.clone(),
                Parsed::Doc { doc, .. } => doc.value["other"].clone(),
            })
            .collect();
        let x = serde_json::json!({"x": 1});
        assert_eq!(
            v,
            vec![x.clone(), x.clone(), serde_json::json!({"y": x}), x]
        );
    }

    /// The scan returns the same errors as the build, bounds included, so a caller can check
    /// a file before lowering any of it.
    #[test]
    fn the_scan_returns_the_errors_of_the_build() {
        let deep = format!("{}x\n", "- ".repeat(MAX_DEPTH + 5));
        let mut aliases = String::from("a: &a 1\nb: [");
        aliases.push_str(&vec!["*a"; MAX_ALIASES + 1].join(","));
        aliases.push_str("]\n");
        for t in [
            "items:\n- a: 1\n- b: [1, 2\nkind: List\n",
            "a: *nope\n",
            "? [a]\n: 1\n",
            deep.as_str(),
            aliases.as_str(),
            "{\"items\": [1, 2,, 3], \"kind\": \"List\"}\n",
        ] {
            let a = scan_docs(&file(), t).unwrap_err();
            let b = parse_docs(&file(), t, &mut Vec::new()).unwrap_err();
            assert_eq!(
                (a.line, a.column, &a.expected, &a.found),
                (b.line, b.column, &b.expected, &b.found),
                "{t:?}"
            );
        }
    }

    /// JSON is read with `--- ` before its opening bracket (see `Events`): the same value and
    /// lines, and columns on the bracket's line as in the file.
    #[test]
    fn json_documents_read_the_same_with_columns_of_the_file() {
        let t = "{\"kind\": \"List\", \"items\": [\n  {\"a\": 1},\n  {\"a\": 2}\n]}\n";
        let docs = parse_docs(&file(), t, &mut Vec::new()).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].value["items"][1]["a"], Value::from(2));
        assert_eq!(docs[0].lines.get("/items/1"), Some(3));
        assert_eq!(docs[0].lines.get("/kind"), Some(1));
        assert_eq!(docs[0].line, 1);
        // An error on the first line: the column of the file, not of the marked text.
        for t in [
            "{\"a\": 1,, \"b\": 2}\n",
            "\n\n[1, 2]]\n",
            "{\"a\": [1, 2}\n",
        ] {
            let e = parse_docs(&file(), t, &mut Vec::new()).unwrap_err();
            let raw = Parser::new_from_str(t)
                .find_map(|r| r.err())
                .expect("an error");
            let at = (raw.marker().line() as u32, raw.marker().col() as u32 + 1);
            assert_eq!((e.line, e.column), at, "{t:?}: {e}");
        }
        let mut d = Vec::new();
        parse_docs(&file(), "\n{\"a\": 1, \"a\": 2}\n", &mut d).unwrap();
        assert_eq!((d[0].line, d[0].column), (2, 15), "{:?}", d[0]);
        // An indented bracket is left alone (a marker there would not be one).
        let docs = parse_docs(&file(), "  {\"a\": 1}\n", &mut Vec::new()).unwrap();
        assert_eq!(docs[0].value["a"], Value::from(1));
    }
}

/// Issue #11: a JSON document whose bracket is indented, or follows a byte order mark, a tab,
/// a comment line or a `---` line, is read as it comes (the parser gives the document's
/// collections before it reaches the end of the text), not tokenized whole first.
#[cfg(test)]
mod json_mark_tests {
    use super::*;

    /// Whether the parser gives the root collection's start before the error at the end of
    /// `text` (it buffers nothing when it does).
    fn streams(
        mut next: impl FnMut() -> Option<Result<(Event<'static>, Span), ScanError>>,
    ) -> bool {
        while let Some(r) = next() {
            match r {
                Ok((Event::MappingStart(..) | Event::SequenceStart(..), _)) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    #[test]
    fn json_documents_anywhere_on_their_line_are_read_as_they_come() {
        let long = "{\"items\": [".to_string() + &"1, ".repeat(2000) + "@";
        for head in [
            "",
            "\u{feff}",
            "  ",
            "\t",
            " \u{feff}",
            "# kubectl get pods -A -o json\n",
            "\n\n  # c\n\t",
            "{\"kind\": \"List\", \"items\": []}\n---\n",
            "{\"kind\": \"List\", \"items\": []}\n--- # two\n# c\n   ",
        ] {
            let text: &'static str = Box::leak((head.to_string() + &long).into_boxed_str());
            let mut raw = Parser::new_from_str(text);
            if head.is_empty() {
                assert!(!streams(|| raw.next_event()), "the parser alone buffers");
            }
            let (mut ev, marked) = Events::new(text);
            assert!(!marked.is_empty(), "{head:?}");
            assert!(streams(|| ev.next_event()), "{head:?}");
        }
        // Values, document count, lines and columns are those of the file.
        let t = "\u{feff}  {\"a\": 1}\n---\n\t[\"x\",\n  2,, 3]\n";
        let e = parse_docs(&Arc::from("t.json"), t, &mut Vec::new()).unwrap_err();
        assert_eq!((e.line, e.column), (4, 5), "{e}");
        let t = "# c\n  {\"a\": 1}\n---\n\t[\"x\"]\n---\nkind: Pod\n";
        let docs = parse_docs(&Arc::from("t.json"), t, &mut Vec::new()).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].value["a"], Value::from(1));
        assert_eq!(docs[1].value[0], Value::from("x"));
        assert_eq!(docs[2].value["kind"], Value::from("Pod"));
        assert_eq!(docs[0].line, 2);
        assert_eq!(docs[1].line, 4);
        let mut d = Vec::new();
        parse_docs(&Arc::from("t.json"), "\t{\"a\": 1, \"a\": 2}\n", &mut d).unwrap();
        assert_eq!((d[0].line, d[0].column), (1, 16), "{:?}", d[0]);
        // Two JSON documents one after the other, no `---`: two documents, each read as it
        // comes; a bracket in a string does not end one.
        let t = "{\"a\": \"}\\\" {\"}\n\n{\"b\": [\n  1]}\n[2]\n";
        let (_, marked) = Events::new(t);
        assert_eq!(marked, [1, 3, 5]);
        let docs = parse_docs(&Arc::from("t.json"), t, &mut Vec::new()).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].value["a"], Value::from("}\" {"));
        assert_eq!(docs[1].value["b"][0], Value::from(1));
        assert_eq!(docs[2].line, 5);
        let text: &'static str = Box::leak(format!("{{}}\n{long}").into_boxed_str());
        let (mut ev, _) = Events::new(text);
        let mut n = 0;
        assert!(
            streams(|| {
                // Past the first document's collection.
                let e = ev.next_event();
                if matches!(e, Some(Ok((Event::MappingStart(..), _)))) {
                    n += 1;
                    if n == 1 {
                        return Some(Ok((Event::Nothing, Span::empty(Default::default()))));
                    }
                }
                e
            }),
            "the second document streams"
        );
        // A block scalar's `{` line is not a document.
        let (_, marked) = Events::new("a: |\n  {\n---\nb: 1\n  {\n");
        assert!(marked.is_empty());
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Doc>, ParseError> {
        parse_docs(&Arc::from("t.yaml"), text, &mut Vec::new())
    }

    #[test]
    fn crlf_bom_empty_and_comments() {
        let docs = parse("apiVersion: v1\r\nkind: Pod\r\nmetadata:\r\n  name: p\r\n").unwrap();
        assert_eq!(docs[0].value["metadata"]["name"], Value::from("p"));
        assert_eq!(docs[0].lines.get("/metadata/name"), Some(4));
        let docs = parse("\u{feff}kind: Pod\n").unwrap();
        assert_eq!(docs[0].value["kind"], Value::from("Pod"));
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# only a comment\n").unwrap().is_empty());
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let docs = parse(
            "a: 0x1F\nb: 0o17\nc: '007'\nd: 1e3\ne: .5\nf: yes\ng: !!str 42\nh: -3\ni: 3.0.1\n",
        )
        .unwrap();
        let v = &docs[0].value;
        assert_eq!(v["a"], Value::from(31));
        assert_eq!(v["b"], Value::from(15));
        assert_eq!(v["c"], Value::from("007"));
        assert_eq!(v["d"], Value::from(1000.0));
        assert_eq!(v["e"], Value::from(0.5));
        // YAML 1.2: `yes` is a string (kubectl quotes such values anyway).
        assert_eq!(v["f"], Value::from("yes"));
        assert_eq!(v["g"], Value::from("42"));
        assert_eq!(v["h"], Value::from(-3));
        assert_eq!(v["i"], Value::from("3.0.1"));
    }

    #[test]
    fn keys_with_slashes_are_escaped_in_paths() {
        let docs = parse("metadata:\n  labels:\n    kubernetes.io/service-name: web\n").unwrap();
        assert_eq!(
            docs[0]
                .lines
                .get("/metadata/labels/kubernetes.io~1service-name"),
            Some(3)
        );
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Doc>, ParseError> {
        parse_docs(&Arc::from("bomb.yaml"), text, &mut Vec::new())
    }

    /// Run `body` in a child process of this test binary whose address space is limited to
    /// 1 GiB (`ulimit -v`): if a bound regresses, the child fails to allocate and the test
    /// fails, instead of the input exhausting the machine (they used 5.5 and 8 GiB).
    fn in_limited_child(name: &str, body: impl FnOnce()) {
        const VAR: &str = "KUBEPATH_YAML_BOUND_CHILD";
        if std::env::var(VAR).as_deref() == Ok(name) {
            body();
            return;
        }
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 1048576 && exec \"$0\" \"$@\"")
            .arg(exe)
            .args([
                &format!("yaml::bound_tests::{name}"),
                "--exact",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(VAR, name)
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} in a 1 GiB child: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The 380-byte "billion laughs": 9 levels of 9 aliases (9^9 copies, 8 GiB expanded).
    fn billion_laughs() -> String {
        let mut t = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            let refs = vec![format!("*{prev}"); 9].join(",");
            t.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        t
    }

    #[test]
    fn alias_bomb() {
        in_limited_child("alias_bomb", || {
            let text = billion_laughs();
            assert!(text.len() < 400, "{}", text.len());
            let e = parse(&text).unwrap_err();
            // a: 37, b: 334, c: 3,007, d: 27,064, e: 243,577 per copy; the expansion passes
            // 1,000,000 at the third `*e`, on line 6.
            assert_eq!((&*e.file, e.line), ("bomb.yaml", 6), "{e}");
            assert!(e.expected.contains("aliases that expand"), "{e}");
        });
    }

    #[test]
    fn alias_count() {
        in_limited_child("alias_count", || {
            let mut t = String::from("a: &a 1\nb: [");
            t.push_str(&vec!["*a"; MAX_ALIASES + 1].join(","));
            t.push_str("]\n");
            let e = parse(&t).unwrap_err();
            assert_eq!(e.line, 2, "{e}");
            assert!(e.expected.contains("aliases in a file"), "{e}");
            // Up to the bound is fine.
            let mut t = String::from("a: &a 1\nb: [");
            t.push_str(&vec!["*a"; MAX_ALIASES].join(","));
            t.push_str("]\n");
            assert!(parse(&t).is_ok());
        });
    }

    #[test]
    fn deep_block_sequences() {
        in_limited_child("deep_block_sequences", || {
            // 100,000 levels of `- ` on one line (200 KB): took 5.5 GiB.
            let t = format!("{}x\n", "- ".repeat(100_000));
            let e = parse(&t).unwrap_err();
            assert_eq!(e.line, 1, "{e}");
            assert_eq!(e.column, 2 * MAX_DEPTH as u32 + 1, "{e}");
            assert!(e.expected.contains("levels of nested collections"), "{e}");
        });
    }

    #[test]
    fn deep_flow_collections() {
        in_limited_child("deep_flow_collections", || {
            for (open, close) in [("[", "]"), ("{a: ", "}")] {
                let t = format!("x: {}1{}\n", open.repeat(100_000), close.repeat(100_000));
                let e = parse(&t).unwrap_err();
                assert_eq!(e.line, 1, "{e}");
                // saphyr-parser bounds flow nesting itself ("recursion limit exceeded"), at
                // about the same depth; either bound will do.
                assert!(
                    e.expected.contains("levels of nested collections")
                        || e.found.contains("recursion limit"),
                    "{e}"
                );
            }
        });
    }

    #[test]
    fn deep_block_mappings() {
        in_limited_child("deep_block_mappings", || {
            let mut t = String::new();
            for i in 0..MAX_DEPTH + 10 {
                t.push_str(&" ".repeat(i));
                t.push_str("k:\n");
            }
            let e = parse(&t).unwrap_err();
            // The top-level mapping is level 1; the mapping under the 256th `k:` is too deep.
            assert_eq!(e.line, MAX_DEPTH as u32 + 1, "{e}");
            // Exactly MAX_DEPTH levels are fine.
            let mut t = String::new();
            for i in 0..MAX_DEPTH - 1 {
                t.push_str(&" ".repeat(i));
                t.push_str("k:\n");
            }
            t.push_str(&" ".repeat(MAX_DEPTH - 1));
            t.push_str("k: v\n");
            assert!(parse(&t).is_ok());
        });
    }
}
