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

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
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
/// trailing bare prompt, keeping line numbers. Returns the text to parse.
pub fn strip_prompts(text: &str) -> String {
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
    out.join("\n")
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
    },
    Map {
        path: String,
        map: Map<String, Value>,
        key: Option<String>,
        anchor: usize,
    },
}

/// Parse every document of `text` (`file` names it in errors and diagnostics).
pub fn parse_docs(
    file: &Arc<str>,
    text: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<Doc>, ParseError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut lines = Lines::default();
    // Anchored values with their size (nodes + scalar bytes, as counted for MAX_ALIAS_EXPANSION).
    let mut anchors: HashMap<usize, (Value, usize)> = HashMap::new();
    // Size of each open collection so far (parallel to `stack`).
    let mut sizes: Vec<usize> = Vec::new();
    let mut alias_uses = 0usize;
    let mut alias_expansion = 0usize;
    let mut doc_line = 0u32;
    let mut root: Option<Value> = None;

    let err = |span: &Span, expected: &str, found: String| ParseError {
        file: file.clone(),
        line: span.start.line() as u32,
        column: span.start.col() as u32 + 1,
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
                    column: e.marker().col() as u32 + 1,
                    expected: "well-formed YAML or JSON".into(),
                    found: e.info().to_string(),
                })
            }
        };
        let line = span.start.line() as u32;
        // A completed node (scalar, alias, or closed collection) to attach to its parent, with
        // its size.
        let completed: Option<(Value, usize, usize)> = match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                lines = Lines::default();
                anchors.clear();
                root = None;
                doc_line = 0;
                None
            }
            Event::DocumentEnd => {
                if let Some(v) = root.take() {
                    docs.push(Doc {
                        value: v,
                        lines: std::mem::take(&mut lines),
                        line: doc_line,
                    });
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
                    Some((v.clone(), 0, *size))
                }
                None => return Err(err(&span, "a defined anchor", "an unknown alias".into())),
            },
            Event::Scalar(s, style, anchor, tag) => {
                // A mapping key?
                if let Some(Frame::Map { key, path, .. }) = stack.last_mut() {
                    if key.is_none() {
                        let child = format!("{}/{}", path, escape_key(&s));
                        lines.record(&child, line);
                        if let Some(top) = sizes.last_mut() {
                            *top = top.saturating_add(1 + s.len());
                        }
                        *key = Some(s.into_owned());
                        continue;
                    }
                }
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let size = 1 + s.len();
                let v = if style == ScalarStyle::Plain && !forced_str {
                    resolve_plain(&s)
                } else {
                    Value::String(s.into_owned())
                };
                Some((v, anchor, size))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let is_seq = matches!(ev, Event::SequenceStart(..));
                let path = child_path(&stack);
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
                lines.record(&path, line);
                sizes.push(1);
                stack.push(if is_seq {
                    Frame::Seq {
                        path,
                        items: Vec::new(),
                        anchor,
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
                Some(Frame::Seq { items, anchor, .. }) => {
                    Some((Value::Array(items), anchor, sizes.pop().unwrap_or(1)))
                }
                _ => return Err(err(&span, "a sequence", "an unbalanced end".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { map, anchor, .. }) => {
                    Some((Value::Object(map), anchor, sizes.pop().unwrap_or(1)))
                }
                _ => return Err(err(&span, "a mapping", "an unbalanced end".into())),
            },
        };
        let Some((v, anchor, size)) = completed else {
            continue;
        };
        if let Some(top) = sizes.last_mut() {
            *top = top.saturating_add(size);
        }
        if anchor != 0 {
            anchors.insert(anchor, (v.clone(), size));
        }
        match stack.last_mut() {
            None => {
                if doc_line == 0 {
                    doc_line = line;
                }
                lines.record("", line);
                root = Some(v);
            }
            Some(Frame::Seq { items, path, .. }) => {
                lines.record(&format!("{}/{}", path, items.len()), line);
                items.push(v);
            }
            Some(Frame::Map { map, key, path, .. }) => {
                if let Some(k) = key.take() {
                    if map.contains_key(&k) {
                        diags.push(Diagnostic {
                            severity: Severity::Warning,
                            file: file.clone(),
                            line,
                            column: span.start.col() as u32 + 1,
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
    Ok(docs)
}

fn child_path(stack: &[Frame]) -> String {
    match stack.last() {
        None => String::new(),
        Some(Frame::Seq { path, items, .. }) => format!("{}/{}", path, items.len()),
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
