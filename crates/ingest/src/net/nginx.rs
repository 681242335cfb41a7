//! ingress-nginx's generated nginx.conf.
//!
//! A tokenizer for nginx's configuration syntax (ngx_conf_file.c: words separated by blanks,
//! `;` ends a directive, `{ }` delimit blocks, `#` starts a comment at the start of a word,
//! `"..."` and `'...'` quote with `\` escapes), plus the lua-nginx-module's `*_by_lua_block {
//! ... }` directives, whose bodies are Lua: they are skipped by counting braces outside Lua
//! strings (`'...'`, `"..."`, `[[...]]`, `[==[...]==]`) and comments (`--`, `--[[...]]`). From
//! the `rewrite_by_lua_block` of a location, ingress-nginx's `ssl_redirect = BOOL` and
//! `force_ssl_redirect = BOOL` arguments (rootfs/etc/nginx/template/nginx.tmpl) are extracted.
//!
//! Then: `## start server NAME` markers, `server` blocks (server_name, listen with its
//! parameters), their `location`s (nested ones too) with ingress-nginx's `set $namespace`,
//! `$ingress_name`, `$service_name`, `$service_port`, `$location_path` and
//! `$proxy_upstream_name`, `return` and `rewrite`, and `upstream` blocks.

use std::sync::Arc;

use kubepath_model::nginx::{
    Listen, Location, LocationModifier, NginxConf, Return, Rewrite, Server, Upstream,
};
use kubepath_model::SourceRef;

use super::text::{diag, err, prompt_command};
use crate::diag::{Diagnostic, ParseError, Severity, SourceFile};

/// One parsed directive (the per-format structure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub line: u32,
    pub col: u32,
    /// Child directives of a `{ }` block.
    pub block: Option<Vec<Directive>>,
    /// Body of a `*_by_lua_block`.
    pub lua: Option<String>,
    /// `## start server NAME` seen just before this directive.
    pub marker: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
    Marker(String),
}

struct Lexer<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    line: u32,
    col: u32,
    file: &'a Arc<str>,
}

impl<'a> Lexer<'a> {
    fn bump(&mut self) -> Option<u8> {
        let c = *self.s.get(self.i)?;
        self.i += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if (c & 0xC0) != 0x80 {
            self.col += 1;
        }
        Some(c)
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn error(&self, expected: &str, found: &str) -> ParseError {
        err(self.file, self.line, self.col, expected, found)
    }

    /// Next token with its position.
    fn next(&mut self) -> Result<Option<(Tok, u32, u32)>, ParseError> {
        loop {
            match self.peek() {
                None => return Ok(None),
                Some(c) if c.is_ascii_whitespace() => {
                    self.bump();
                }
                Some(b'#') => {
                    let (l, c) = (self.line, self.col);
                    let start = self.i;
                    while let Some(ch) = self.peek() {
                        if ch == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                    let comment = &self.text[start..self.i];
                    if let Some(name) = comment.strip_prefix("## start server ") {
                        return Ok(Some((Tok::Marker(name.trim().to_string()), l, c)));
                    }
                }
                Some(_) => break,
            }
        }
        let (l, c) = (self.line, self.col);
        match self.peek() {
            Some(b';') => {
                self.bump();
                return Ok(Some((Tok::Semi, l, c)));
            }
            Some(b'{') => {
                self.bump();
                return Ok(Some((Tok::Open, l, c)));
            }
            Some(b'}') => {
                self.bump();
                return Ok(Some((Tok::Close, l, c)));
            }
            _ => {}
        }
        let mut w: Vec<u8> = Vec::new();
        if let Some(q @ (b'"' | b'\'')) = self.peek() {
            self.bump();
            loop {
                match self.bump() {
                    None => return Err(err(self.file, l, c, "a closing quote", "end of file")),
                    Some(b'\\') => {
                        if let Some(n) = self.bump() {
                            if n != q && n != b'\\' {
                                w.push(b'\\');
                            }
                            w.push(n);
                        }
                    }
                    Some(ch) if ch == q => break,
                    Some(ch) => w.push(ch),
                }
            }
            return Ok(Some((
                Tok::Word(String::from_utf8_lossy(&w).into_owned()),
                l,
                c,
            )));
        }
        while let Some(ch) = self.peek() {
            if ch.is_ascii_whitespace() || ch == b';' || ch == b'{' || ch == b'}' {
                break;
            }
            if ch == b'\\' {
                self.bump();
                if let Some(n) = self.bump() {
                    w.push(b'\\');
                    w.push(n);
                }
                continue;
            }
            w.push(ch);
            self.bump();
        }
        Ok(Some((
            Tok::Word(String::from_utf8_lossy(&w).into_owned()),
            l,
            c,
        )))
    }

    /// After the `{` of a `*_by_lua_block`: the Lua body up to the matching `}`.
    fn lua_body(&mut self, open_line: u32, open_col: u32) -> Result<String, ParseError> {
        let start = self.i;
        let mut depth = 1;
        loop {
            let Some(c) = self.bump() else {
                return Err(err(
                    self.file,
                    open_line,
                    open_col,
                    "the `}` closing this Lua block",
                    "end of file",
                ));
            };
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(self.text[start..self.i - 1].to_string());
                    }
                }
                b'"' | b'\'' => {
                    // Position of the opening quote, for the error.
                    let (sl, sc) = (self.line, self.col - 1);
                    loop {
                        match self.bump() {
                            None | Some(b'\n') => {
                                return Err(err(
                                    self.file,
                                    sl,
                                    sc,
                                    "a closing quote for the Lua string opened here",
                                    "end of line",
                                ));
                            }
                            Some(b'\\') => {
                                self.bump();
                            }
                            Some(x) if x == c => break,
                            _ => {}
                        }
                    }
                }
                b'-' if self.peek() == Some(b'-') => {
                    self.bump();
                    if let Some(level) = self.long_bracket_open() {
                        self.long_bracket_close(level)?;
                    } else {
                        while let Some(x) = self.peek() {
                            if x == b'\n' {
                                break;
                            }
                            self.bump();
                        }
                    }
                }
                b'[' => {
                    // `[[` or `[=*[` opens a long string; `[` alone is indexing.
                    self.i -= 1;
                    self.col -= 1;
                    if let Some(level) = self.long_bracket_open() {
                        self.long_bracket_close(level)?;
                    } else {
                        self.bump();
                    }
                }
                _ => {}
            }
        }
    }

    /// At `[`: if a long bracket `[=*[` starts here, consume it and return its level.
    fn long_bracket_open(&mut self) -> Option<usize> {
        if self.peek() != Some(b'[') {
            return None;
        }
        let mut j = self.i + 1;
        let mut level = 0;
        while self.s.get(j) == Some(&b'=') {
            level += 1;
            j += 1;
        }
        if self.s.get(j) != Some(&b'[') {
            return None;
        }
        while self.i <= j {
            self.bump();
        }
        Some(level)
    }

    fn long_bracket_close(&mut self, level: usize) -> Result<(), ParseError> {
        loop {
            match self.bump() {
                None => {
                    return Err(self.error("the end of a Lua long string/comment", "end of file"))
                }
                Some(b']') => {
                    let mut j = self.i;
                    let mut l = 0;
                    while self.s.get(j) == Some(&b'=') {
                        l += 1;
                        j += 1;
                    }
                    if l == level && self.s.get(j) == Some(&b']') {
                        while self.i <= j {
                            self.bump();
                        }
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }
}

/// Parse nginx.conf text into directives.
/// The deepest nesting of blocks read (`http { server { location { location { if {`: real
/// configurations stay within a handful of levels). A deeper file is an error naming this
/// bound, so no recursive walk of the tree (lowering, nested locations, dropping it) can go
/// deep enough to overflow the stack.
pub const MAX_BLOCK_DEPTH: usize = 64;

pub fn parse(file: &Arc<str>, text: &str) -> Result<Vec<Directive>, ParseError> {
    let mut lx = Lexer {
        s: text.as_bytes(),
        text,
        i: 0,
        line: 1,
        col: 1,
        file,
    };
    let mut stack: Vec<Vec<Directive>> = vec![Vec::new()];
    let mut opens: Vec<(u32, u32)> = Vec::new();
    let mut cur: Option<Directive> = None;
    let mut marker: Option<String> = None;
    while let Some((t, l, c)) = lx.next()? {
        match t {
            Tok::Marker(m) => {
                if cur.is_none() {
                    marker = Some(m);
                }
            }
            Tok::Word(w) => match &mut cur {
                Some(d) => d.args.push(w),
                None => {
                    cur = Some(Directive {
                        name: w,
                        args: Vec::new(),
                        line: l,
                        col: c,
                        block: None,
                        lua: None,
                        marker: marker.take(),
                    });
                }
            },
            Tok::Semi => match cur.take() {
                Some(d) => stack.last_mut().map(|v| v.push(d)).unwrap_or(()),
                None => return Err(err(file, l, c, "a directive name", "`;`")),
            },
            Tok::Open => {
                let Some(mut d) = cur.take() else {
                    return Err(err(file, l, c, "a directive name before `{`", "`{`"));
                };
                if d.name.ends_with("_by_lua_block") {
                    d.lua = Some(lx.lua_body(l, c)?);
                    stack.last_mut().map(|v| v.push(d)).unwrap_or(());
                } else {
                    if opens.len() >= MAX_BLOCK_DEPTH {
                        return Err(err(
                            file,
                            l,
                            c,
                            format!(
                                "blocks nested at most {MAX_BLOCK_DEPTH} levels deep (kubepath's bound)"
                            ),
                            format!("a block at level {} (`{}`)", opens.len() + 1, d.name),
                        ));
                    }
                    stack.last_mut().map(|v| v.push(d)).unwrap_or(());
                    stack.push(Vec::new());
                    opens.push((l, c));
                }
            }
            Tok::Close => {
                if let Some(d) = &cur {
                    return Err(err(
                        file,
                        l,
                        c,
                        format!("`;` ending the directive `{}` (line {})", d.name, d.line),
                        "`}`",
                    ));
                }
                if stack.len() < 2 {
                    return Err(err(
                        file,
                        l,
                        c,
                        "a directive (this `}` closes no block)",
                        "`}`",
                    ));
                }
                let children = stack.pop().unwrap_or_default();
                opens.pop();
                if let Some(parent) = stack.last_mut().and_then(|v| v.last_mut()) {
                    parent.block = Some(children);
                }
            }
        }
    }
    if let Some(d) = cur {
        return Err(err(
            file,
            lx.line,
            lx.col,
            format!(
                "`;` or `{{` after the directive `{}` (line {})",
                d.name, d.line
            ),
            "end of file",
        ));
    }
    if let Some((l, c)) = opens.last() {
        return Err(err(
            file,
            *l,
            *c,
            "the `}` closing this block",
            "end of file",
        ));
    }
    Ok(stack.pop().unwrap_or_default())
}

/// Blank out shell-prompt lines (a `cat nginx.conf` echo) so line numbers stay right.
fn without_prompts(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    for l in text.split_inclusive('\n') {
        let body = l.trim_end_matches(['\n', '\r']);
        if prompt_command(body).is_some() {
            out.push_str(&l[body.len()..]);
        } else {
            out.push_str(l);
        }
    }
    out
}

pub fn sniff(text: &str) -> bool {
    let mut saw_block = false;
    for l in text.lines().take(400) {
        let t = l.trim();
        if t.starts_with("http {")
            || t.starts_with("server {")
            || t.starts_with("events {")
            || t.starts_with("upstream ")
        {
            saw_block = true;
        }
    }
    saw_block && !text.trim_start().starts_with('{') && !text.trim_start().starts_with('[')
}

/// `lua_ingress.rewrite({ ssl_redirect = true, ... })`: the value of `key`.
fn lua_bool(body: &str, key: &str) -> Option<bool> {
    let mut rest = body;
    while let Some(i) = rest.find(key) {
        let before = rest[..i].chars().last();
        let after = &rest[i + key.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let a = after.trim_start();
        if let Some(v) = a.strip_prefix('=') {
            let v = v.trim_start();
            if v.starts_with("true") {
                return Some(true);
            }
            if v.starts_with("false") {
                return Some(false);
            }
        }
    }
    None
}

pub fn read(
    pod: Option<(&str, &str)>,
    file: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<NginxConf>, ParseError> {
    let text = without_prompts(&file.text);
    if !sniff(&text) {
        return Ok(None);
    }
    let dirs = parse(&file.path, &text)?;
    Ok(Some(lower(pod, &file.path, &dirs, diags)?))
}

fn src(file: &Arc<str>, d: &Directive) -> SourceRef {
    SourceRef::new(file.clone(), d.line)
}

pub fn lower(
    pod: Option<(&str, &str)>,
    file: &Arc<str>,
    dirs: &[Directive],
    diags: &mut Vec<Diagnostic>,
) -> Result<NginxConf, ParseError> {
    let mut conf = NginxConf {
        pod: pod.map(|(a, b)| (a.to_string(), b.to_string())),
        servers: Vec::new(),
        upstreams: Vec::new(),
        source: SourceRef::new(file.clone(), 0),
    };
    let http: Vec<&Directive> = dirs.iter().filter(|d| d.name == "http").collect();
    // A file holding only the http block's contents (or a server snippet) is read too.
    let scopes: Vec<&[Directive]> = if http.is_empty() {
        vec![dirs]
    } else {
        http.iter().filter_map(|d| d.block.as_deref()).collect()
    };
    // Directives whose effect is not modelled: said once per file.
    fn walk<'a>(ds: &'a [Directive], out: &mut Vec<&'a Directive>) {
        for d in ds {
            // `include mime.types` only defines a `types { }` block (content types): harmless.
            let mime =
                d.name == "include" && d.args.first().is_some_and(|a| a.ends_with("mime.types"));
            if (d.name == "include" && !mime) || d.name == "map" {
                out.push(d);
            }
            if let Some(b) = &d.block {
                walk(b, out);
            }
        }
    }
    let mut unmodelled = Vec::new();
    walk(dirs, &mut unmodelled);
    if let Some(d) = unmodelled.iter().find(|d| d.name == "include") {
        let n = unmodelled.iter().filter(|d| d.name == "include").count();
        diags.push(diag(Severity::Warning, file, d.line, d.col, format!("{n} `include` directive(s) not followed: the included files are not read (first: `include {}`)", d.args.join(" "))));
    }
    if let Some(d) = unmodelled.iter().find(|d| d.name == "map") {
        let n = unmodelled.iter().filter(|d| d.name == "map").count();
        diags.push(diag(
            Severity::Note,
            file,
            d.line,
            d.col,
            format!("{n} `map` block(s) not evaluated (variables they set are unknown)"),
        ));
    }
    for scope in scopes {
        for d in scope {
            match d.name.as_str() {
                "server" => conf.servers.push(lower_server(file, d, diags)?),
                "upstream" => {
                    let name = d.args.first().cloned().unwrap_or_default();
                    let body = d.block.as_deref().unwrap_or(&[]);
                    conf.upstreams.push(Upstream {
                        name,
                        servers: body
                            .iter()
                            .filter(|x| x.name == "server")
                            .map(|x| x.args.join(" "))
                            .collect(),
                        lua_balancer: body.iter().any(|x| x.name == "balancer_by_lua_block"),
                        source: src(file, d),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(conf)
}

fn lower_server(
    file: &Arc<str>,
    d: &Directive,
    diags: &mut Vec<Diagnostic>,
) -> Result<Server, ParseError> {
    let mut s = Server {
        marker: d.marker.clone(),
        names: Vec::new(),
        listens: Vec::new(),
        locations: Vec::new(),
        source: src(file, d),
    };
    for c in d.block.as_deref().unwrap_or(&[]) {
        match c.name.as_str() {
            "server_name" => s.names.extend(c.args.iter().cloned()),
            "listen" => s.listens.push(lower_listen(file, c)?),
            "location" => lower_location(file, c, None, &mut s.locations, diags)?,
            _ => {}
        }
    }
    if s.names.is_empty() {
        // nginx's default server_name is "" (matches requests without Host).
        s.names.push(String::new());
    }
    Ok(s)
}

fn lower_listen(file: &Arc<str>, d: &Directive) -> Result<Listen, ParseError> {
    let Some(first) = d.args.first() else {
        return Err(err(
            file,
            d.line,
            d.col,
            "an address or port after `listen`",
            "`;`",
        ));
    };
    let (address, port) = if first.starts_with("unix:") {
        (Some(first.clone()), None)
    } else if let Ok(p) = first.parse::<u16>() {
        (None, Some(p))
    } else if let Some((a, p)) = first
        .rsplit_once(':')
        .filter(|(a, _)| !a.is_empty() && (!a.contains(':') || a.ends_with(']')))
    {
        let port = p.parse::<u16>().map_err(|_| {
            err(
                file,
                d.line,
                d.col,
                "a port number in `listen ADDRESS:PORT`",
                format!("`{first}`"),
            )
        })?;
        (Some(a.to_string()), Some(port))
    } else {
        // An address alone listens on port 80.
        (Some(first.clone()), Some(80))
    };
    let mut l = Listen {
        address,
        port,
        default_server: false,
        ssl: false,
        proxy_protocol: false,
        http2: false,
        params: Vec::new(),
        source: src(file, d),
    };
    for a in &d.args[1..] {
        match a.as_str() {
            "default_server" | "default" => l.default_server = true,
            "ssl" => l.ssl = true,
            "proxy_protocol" => l.proxy_protocol = true,
            "http2" => l.http2 = true,
            _ => l.params.push(a.clone()),
        }
    }
    Ok(l)
}

fn lower_location(
    file: &Arc<str>,
    d: &Directive,
    parent: Option<usize>,
    out: &mut Vec<Location>,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), ParseError> {
    let (modifier, path) = match d.args.as_slice() {
        [p] => match p.as_str() {
            // `location =/x` is accepted by nginx without a blank.
            x if x.starts_with("^~") && x.len() > 2 => {
                (LocationModifier::PrefixNoRegex, x[2..].to_string())
            }
            x if x.starts_with("~*") && x.len() > 2 => {
                (LocationModifier::RegexCaseInsensitive, x[2..].to_string())
            }
            x if x.starts_with('=') && x.len() > 1 => (LocationModifier::Exact, x[1..].to_string()),
            x if x.starts_with('~') && x.len() > 1 => (LocationModifier::Regex, x[1..].to_string()),
            x if x.starts_with('@') => {
                diags.push(diag(
                    Severity::Note,
                    file,
                    d.line,
                    d.col,
                    format!("named location {x} is only reached by internal redirects"),
                ));
                (LocationModifier::Exact, x.to_string())
            }
            x => (LocationModifier::Prefix, x.to_string()),
        },
        [m, p] => {
            let m = match m.as_str() {
                "=" => LocationModifier::Exact,
                "~" => LocationModifier::Regex,
                "~*" => LocationModifier::RegexCaseInsensitive,
                "^~" => LocationModifier::PrefixNoRegex,
                _ => {
                    return Err(err(
                        file,
                        d.line,
                        d.col,
                        "a location modifier (=, ~, ~*, ^~)",
                        format!("`{m}`"),
                    ))
                }
            };
            (m, p.clone())
        }
        _ => {
            return Err(err(
                file,
                d.line,
                d.col,
                "`location [MODIFIER] PATH {`",
                format!("{} arguments", d.args.len()),
            ))
        }
    };
    let mut loc = Location {
        modifier,
        path,
        parent,
        namespace: None,
        ingress_name: None,
        service_name: None,
        service_port: None,
        location_path: None,
        proxy_upstream_name: None,
        returns: Vec::new(),
        rewrites: Vec::new(),
        ssl_redirect: None,
        force_ssl_redirect: None,
        directives: Vec::new(),
        source: src(file, d),
    };
    let idx = out.len();
    out.push(loc.clone());
    let mut nested: Vec<&Directive> = Vec::new();
    for c in d.block.as_deref().unwrap_or(&[]) {
        match c.name.as_str() {
            "set" => {
                let (Some(var), Some(val)) = (c.args.first(), c.args.get(1)) else {
                    return Err(err(
                        file,
                        c.line,
                        c.col,
                        "`set $VARIABLE VALUE;`",
                        format!("{} arguments", c.args.len()),
                    ));
                };
                let v = Some(val.clone());
                match var.as_str() {
                    "$namespace" => loc.namespace = v,
                    "$ingress_name" => loc.ingress_name = v,
                    "$service_name" => loc.service_name = v,
                    "$service_port" => loc.service_port = v,
                    "$location_path" => loc.location_path = v,
                    "$proxy_upstream_name" => loc.proxy_upstream_name = v,
                    _ => loc.directives.push((c.name.clone(), c.args.clone())),
                }
            }
            "return" => {
                let code = c.args.first().and_then(|a| a.parse::<u16>().ok());
                let text = if code.is_some() {
                    c.args.get(1).cloned()
                } else {
                    c.args.first().cloned()
                };
                loc.returns.push(Return { code, text });
            }
            "rewrite" => {
                let (Some(re), Some(rep)) = (c.args.first(), c.args.get(1)) else {
                    return Err(err(
                        file,
                        c.line,
                        c.col,
                        "`rewrite REGEX REPLACEMENT [FLAG];`",
                        format!("{} arguments", c.args.len()),
                    ));
                };
                loc.rewrites.push(Rewrite {
                    regex: re.clone(),
                    replacement: rep.clone(),
                    flag: c.args.get(2).cloned(),
                });
            }
            "rewrite_by_lua_block" => {
                if let Some(body) = &c.lua {
                    loc.ssl_redirect = lua_bool(body, "ssl_redirect");
                    loc.force_ssl_redirect = lua_bool(body, "force_ssl_redirect");
                }
            }
            "location" => nested.push(c),
            "if" => {
                diags.push(diag(
                    Severity::Warning,
                    file,
                    c.line,
                    c.col,
                    format!(
                        "`if {}` inside location {} is not evaluated",
                        c.args.join(" "),
                        loc.path
                    ),
                ));
                loc.directives.push((c.name.clone(), c.args.clone()));
            }
            n if n.ends_with("_by_lua_block") => {}
            _ => loc.directives.push((c.name.clone(), c.args.clone())),
        }
    }
    out[idx] = loc;
    for n in nested {
        lower_location(file, n, Some(idx), out, diags)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(t: &str) -> Result<NginxConf, ParseError> {
        let f = SourceFile {
            path: "nginx.conf".into(),
            text: t.to_string(),
        };
        read(Some(("ingress-nginx", "p")), &f, &mut Vec::new()).map(|c| c.expect("recognised"))
    }

    const SRV: &str = r#"
http {
	upstream upstream_balancer {
		server 0.0.0.1; # placeholder
		balancer_by_lua_block {
			balancer.balance()
		}
	}
	## start server dc173prometheus1.cloud.k2.ericsson.se
	server {
		server_name dc173prometheus1.cloud.k2.ericsson.se ;
		listen 80  ;
		listen 442 proxy_protocol  ssl http2 ;
		listen [::]:80 default_server;
		location / {
			set $namespace      "monitoring";
			set $service_name   "eric-pm-server";
			set $service_port   "9090";
			rewrite_by_lua_block {
				lua_ingress.rewrite({
					force_ssl_redirect = false,
					ssl_redirect = true,
					s = "}{'", t = [[ } ]], -- } comment
				})
				--[==[ } ]==]
			}
			set $proxy_upstream_name "monitoring-eric-pm-server-9090";
			proxy_next_upstream error timeout;
			proxy_pass http://upstream_balancer;
			location ~* "^/api" { return 301 https://x/; }
		}
	}
	## end server dc173prometheus1.cloud.k2.ericsson.se
}
"#;

    #[test]
    fn server_locations_lua() {
        let c = conf(SRV).unwrap();
        assert_eq!(c.upstreams[0].name, "upstream_balancer");
        assert!(c.upstreams[0].lua_balancer);
        let s = &c.servers[0];
        assert_eq!(
            s.marker.as_deref(),
            Some("dc173prometheus1.cloud.k2.ericsson.se")
        );
        assert_eq!(s.names, vec!["dc173prometheus1.cloud.k2.ericsson.se"]);
        assert_eq!(s.listens[0].port, Some(80));
        assert!(s.listens[1].proxy_protocol && s.listens[1].ssl && s.listens[1].http2);
        assert_eq!(s.listens[1].port, Some(442));
        assert_eq!(s.listens[2].address.as_deref(), Some("[::]"));
        assert!(s.listens[2].default_server);
        let l = &s.locations[0];
        assert_eq!(l.namespace.as_deref(), Some("monitoring"));
        assert_eq!(l.service_port.as_deref(), Some("9090"));
        assert_eq!(l.ssl_redirect, Some(true));
        assert_eq!(l.force_ssl_redirect, Some(false));
        assert_eq!(
            l.proxy_upstream_name.as_deref(),
            Some("monitoring-eric-pm-server-9090")
        );
        assert!(l.directives.iter().any(|(n, a)| n == "proxy_next_upstream"
            && a == &vec!["error".to_string(), "timeout".to_string()]));
        let n = &s.locations[1];
        assert_eq!(n.modifier, LocationModifier::RegexCaseInsensitive);
        assert_eq!(n.path, "^/api");
        assert_eq!(n.parent, Some(0));
        assert_eq!(n.returns[0].code, Some(301));
        let (sel, _) = c
            .select_server("DC173prometheus1.cloud.k2.ericsson.se", 80)
            .unwrap();
        assert_eq!(sel.names[0], "dc173prometheus1.cloud.k2.ericsson.se");
    }

    #[test]
    fn errors() {
        let e = conf("http {\n server {\n  listen 80\n }\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (4, 2));
        let e = conf("http {\n server {\n  listen 80;\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 9));
        let e = conf("http {\n server {\n  server_name \"abc;\n }\n}\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 15));
        let e = conf("http {\n server {\n  content_by_lua_block { x = '}\n }\n}\n").unwrap_err();
        assert!(e.expected.contains("Lua string"));
    }

    /// Issue #11 (hostile input): blocks nested deeper than any real configuration are an
    /// error naming the bound at the block that crosses it, never a stack overflow while the
    /// tree is lowered or dropped.
    #[test]
    fn hostile_deep_nesting_is_an_error_not_a_stack_overflow() {
        let n = 10_000;
        let mut t = String::from("http {\n server {\n  listen 80;\n");
        for _ in 0..n {
            t.push_str("location /deep {\n");
        }
        for _ in 0..n {
            t.push_str("}\n");
        }
        t.push_str(" }\n}\n");
        let e = conf(&t).unwrap_err();
        assert!(e.expected.contains("64 levels"), "{e}");
        // `http`, `server` and 62 locations fit; the 63rd (line 66, after `listen`) does not.
        assert_eq!(e.line, MAX_BLOCK_DEPTH as u32 + 2, "{e}");
        // A million bare `a {` (no closing braces): the same error, at once.
        let t = "http {\n".to_string() + &"a {\n".repeat(1_000_000);
        let e = parse(&Arc::from("nginx.conf"), &t).unwrap_err();
        assert!(e.expected.contains("64 levels"), "{e}");
        // At the bound it still reads.
        let mut t = String::from("http {\n server {\n  listen 80;\n");
        for _ in 0..MAX_BLOCK_DEPTH - 2 {
            t.push_str("location /deep {\n");
        }
        for _ in 0..MAX_BLOCK_DEPTH - 2 {
            t.push_str("}\n");
        }
        t.push_str(" }\n}\n");
        conf(&t).expect("64 levels read");
    }
}
