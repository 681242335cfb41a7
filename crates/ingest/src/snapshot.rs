//! Snapshot discovery: walk the directory (docs/snapshot.md), read every file, recognise its
//! format by content, dispatch by the directory it sits in, and record what each file was read
//! as.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubepath_model::Model;

use crate::diag::{Diagnostic, ParseError, Severity, SourceFile};
use crate::prefetch::{merge_cluster, Job, Prefetch, Prepared};

/// What one file was read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Path relative to the snapshot root, `/`-separated.
    pub path: String,
    /// The format recognised (`kubernetes-yaml`, `iptables-save`, ...), or `None` when the file
    /// was not recognised (a warning says so) or deliberately skipped (`skipped` says why).
    pub format: Option<String>,
    /// The objects it contributed (`Service ns/name`, `node X`, ...).
    pub objects: Vec<String>,
    /// Why the file was not read, when it was skipped on purpose (documentation, hidden).
    pub skipped: Option<String>,
}

/// A loaded snapshot.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub root: PathBuf,
    pub model: Model,
    pub diagnostics: Vec<Diagnostic>,
    pub files: Vec<FileReport>,
}

/// Why a snapshot could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Read every file of the snapshot directory `dir` (leniently: see [`LoadOptions`]).
pub fn load_snapshot(dir: &Path) -> Result<Snapshot, IngestError> {
    load_snapshot_with(dir, LoadOptions::default())
}

/// One path found under the snapshot root: read it, or say why not (without opening it).
struct Found {
    rel: String,
    /// The path that was examined: the one opened, never one rebuilt from `rel`.
    path: PathBuf,
    /// The examined file's identity and size (links followed), checked again once it is open.
    ident: Option<Ident>,
    skip: Option<String>,
}

/// What the walk saw of a regular file.
#[derive(Clone, Copy)]
struct Ident {
    len: u64,
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
}

impl Ident {
    fn of(m: &std::fs::Metadata) -> Ident {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Ident {
            len: m.len(),
            #[cfg(unix)]
            dev: m.dev(),
            #[cfg(unix)]
            ino: m.ino(),
        }
    }
    fn same_file(&self, m: &std::fs::Metadata) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            self.dev == m.dev() && self.ino == m.ino()
        }
        #[cfg(not(unix))]
        {
            let _ = m;
            true
        }
    }
}

/// The deepest directory walked below the snapshot root (the layout needs three levels).
const MAX_DEPTH: usize = 16;

/// The largest file read (512 MiB): a larger one is left out with a diagnostic, so one
/// enormous (or sparse) file cannot exhaust memory. docs/snapshot.md.
pub const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// The largest file under `dns/` read (64 MiB, about 2.5 million names).
pub const MAX_DNS_FILE_BYTES: u64 = 64 * 1024 * 1024;

fn too_large(len: u64) -> String {
    format!("too large ({len} bytes, the limit is {MAX_FILE_BYTES} bytes = 512 MiB): not read")
}

/// What [`read_checked`] read.
enum Read {
    /// Contents no candidate has.
    New(Vec<u8>),
    /// The same bytes as this candidate (index of its first file, its contents).
    Same(usize, Arc<Vec<u8>>),
}

/// The size of the pieces a file is compared in with the candidates of its length.
const COMPARE_CHUNK: usize = 1 << 20;

/// Reads the file the walk examined, and only that one: opened without blocking (a FIFO
/// swapped in since would otherwise block), then checked to still be the same regular file
/// (not a FIFO or device, not another file behind a retargeted link), at most
/// [`MAX_FILE_BYTES`] long.
/// Reads a file named on the command line (`netfilter trace --ruleset`/`--ipset`, a lab seed
/// list) under the rules snapshot files are read by: opened without blocking, read only when
/// it is a regular file (a FIFO would block forever, `/dev/zero` never ends) of at most
/// [`MAX_FILE_BYTES`], checked from its size before reading and again while reading (never
/// more than the limit plus one byte is read). The error says why, without the path.
pub fn read_regular_file(path: &Path) -> Result<Vec<u8>, String> {
    let mut scratch = Vec::new();
    match read_checked(path, None, || None, |_| Vec::new(), &mut scratch)? {
        Read::New(b) => Ok(b),
        Read::Same(_, b) => Ok(b.as_ref().clone()),
    }
}

/// The file the walk examined (`ident`: still the same file, see above) or, without it, any
/// regular file at `path`.
///
/// The file is compared, while it is read, with `candidates(len)` (files already read
/// with the length the file has when opened): while a candidate still matches, the file
/// is read a chunk at a time into `scratch` (reused, so a duplicate costs no allocation and no
/// page faults) and compared; when none matches any more it is read on into a buffer of its
/// own, starting with the prefix they had in common. A file `same_file()` has read before
/// under another path (the same device and inode: a hard link) with the length it has now is
/// not read again.
fn read_checked(
    path: &Path,
    ident: Option<Ident>,
    same_file: impl FnOnce() -> Option<(usize, Arc<Vec<u8>>)>,
    candidates: impl FnOnce(u64) -> Vec<(usize, Arc<Vec<u8>>)>,
    scratch: &mut Vec<u8>,
) -> Result<Read, String> {
    use std::io::Read as _;
    let mut oo = std::fs::OpenOptions::new();
    oo.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        oo.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let f = oo.open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let m = f.metadata().map_err(|e| format!("cannot be read: {e}"))?;
    if !m.is_file() {
        return Err("not a regular file (FIFO, socket or device): not read".into());
    }
    if ident.is_some_and(|i| !i.same_file(&m)) {
        return Err(
            "changed while the snapshot was read (another file at this path): not read".into(),
        );
    }
    if m.len() > MAX_FILE_BYTES {
        return Err(too_large(m.len()));
    }
    let mut f = f.take(MAX_FILE_BYTES + 1);
    let io = |e: std::io::Error| format!("cannot be read: {e}");
    // A NUL byte in the first 64 KiB: no command output (a core dump, an image, a sparse
    // file), left out before the rest is read, as grep tells binary files (fifth review D12:
    // a sparse file under the size limit took seconds to read and try every reader on). A
    // UTF-16 text (PowerShell's `>` writes it, with a byte-order mark) is read, decoded.
    let mut head = Vec::with_capacity(BINARY_PEEK);
    (&mut f)
        .take(BINARY_PEEK as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    let utf16 = head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]);
    if !utf16 {
        if let Some(at) = head.iter().position(|b| *b == 0) {
            return Err(format!(
                "binary (a NUL byte at offset {at}), not a command output: not read"
            ));
        }
    }
    let mut f = std::io::Cursor::new(head).chain(f);
    // Another path of this very file (a hard link), already read with this length.
    if let Some((first, b)) = same_file().filter(|(_, b)| b.len() as u64 == m.len()) {
        return Ok(Read::Same(first, b));
    }
    let mut alive = candidates(m.len());
    // Bytes read so far (`pos`), equal to the first `pos` bytes of every candidate in `alive`
    // (kept in `common` when they all fail), then `pending` bytes in `scratch` that differ.
    let mut pos = 0usize;
    let mut pending = 0usize;
    let mut common: Option<Arc<Vec<u8>>> = None;
    if !alive.is_empty() {
        scratch.resize(COMPARE_CHUNK, 0);
        loop {
            // Fill the chunk (a read may return less than asked).
            let mut n = 0;
            while n < scratch.len() {
                match f.read(&mut scratch[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io(e)),
                }
            }
            let chunk = &scratch[..n];
            if n == 0 {
                // End of file: a candidate of exactly this length has the same contents.
                if let Some(i) = alive.iter().position(|(_, b)| b.len() == pos) {
                    let (first, b) = alive.swap_remove(i);
                    return Ok(Read::Same(first, b));
                }
                common = alive.into_iter().next().map(|(_, b)| b);
                break;
            }
            let any = alive.first().map(|(_, b)| b.clone());
            alive.retain(|(_, b)| b.get(pos..pos + n) == Some(chunk));
            if alive.is_empty() {
                common = any;
                pending = n;
                break;
            }
            pos += n;
        }
    }
    // Sized from the metadata: read_to_end then fills it without growing (copying) it.
    let mut bytes = Vec::with_capacity(
        usize::try_from(m.len())
            .unwrap_or(0)
            .max(pos + pending)
            .saturating_add(1),
    );
    if let Some(c) = common {
        bytes.extend_from_slice(&c[..pos]);
    }
    bytes.extend_from_slice(&scratch[..pending]);
    f.read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    if utf16 {
        return decode_utf16(&bytes).map(Read::New);
    }
    Ok(Read::New(bytes))
}

/// How much of a file is looked at for a NUL byte before it is read whole.
const BINARY_PEEK: usize = 64 * 1024;

/// UTF-16 text with its byte-order mark (`FF FE` little-endian, `FE FF` big-endian) as UTF-8,
/// without the mark. Line numbers stay those of the file.
fn decode_utf16(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let le = bytes.starts_with(&[0xff, 0xfe]);
    let body = &bytes[2..];
    if body.len() % 2 != 0 {
        return Err("UTF-16 text (it starts with a byte-order mark) of an odd length: it may have been cut; not read".into());
    }
    let units = body.chunks_exact(2).map(|c| {
        if le {
            u16::from_le_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], c[1]])
        }
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map(String::into_bytes)
        .map_err(|e| format!("UTF-16 text (it starts with a byte-order mark) that does not decode ({e}): not read"))
}

/// Walks the snapshot directory. The directory is untrusted input: a symbolic link to a file is
/// followed only when its target stays inside the snapshot root; a symbolic link to a
/// directory is never followed (each is reported), so every real directory is walked under its
/// own name, once;
/// only regular files are read (a FIFO would block forever, a device could be endless);
/// hidden directories are not entered.
fn walk(
    root: &Path,
    canon_root: &Path,
    dir: &Path,
    depth: usize,
    seen: &mut std::collections::BTreeSet<PathBuf>,
    out: &mut Vec<Found>,
) -> Result<(), IngestError> {
    let rd = std::fs::read_dir(dir).map_err(|e| IngestError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let p = entry.path();
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let skip = |rel: String, p: &PathBuf, why: &str| Found {
            rel,
            path: p.clone(),
            ident: None,
            skip: Some(why.to_string()),
        };
        // A name that is not UTF-8 is reported under its lossy form and not read (nor
        // entered): that form may be another file's real name.
        if entry.file_name().to_str().is_none() {
            out.push(skip(
                rel,
                &p,
                "name is not valid UTF-8 (shown with U+FFFD): not read",
            ));
            continue;
        }
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let Ok(lmeta) = std::fs::symlink_metadata(&p) else {
            out.push(skip(rel, &p, "cannot be examined"));
            continue;
        };
        let meta = if lmeta.file_type().is_symlink() {
            match std::fs::canonicalize(&p) {
                Ok(target) if target.starts_with(canon_root) => match std::fs::metadata(&p) {
                    // A directory link is never followed, even inside the snapshot: it would
                    // read a directory under another name (nodes/ as cluster YAML, a node
                    // twice) and could hide the real one (issue #11).
                    Ok(m) if m.is_dir() => {
                        if !hidden {
                            out.push(skip(
                                rel,
                                &p,
                                "symbolic link to a directory: not followed (kubepath follows no directory link; put the directory itself in the snapshot)",
                            ));
                        }
                        continue;
                    }
                    Ok(m) => m,
                    Err(_) => {
                        out.push(skip(rel, &p, "dangling symbolic link"));
                        continue;
                    }
                },
                Ok(_) => {
                    out.push(skip(
                        rel,
                        &p,
                        "symbolic link to a path outside the snapshot: not followed",
                    ));
                    continue;
                }
                Err(_) => {
                    out.push(skip(rel, &p, "dangling symbolic link"));
                    continue;
                }
            }
        } else {
            lmeta
        };
        if meta.is_dir() {
            if hidden {
                continue;
            }
            let canon = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if !seen.insert(canon) {
                continue; // a link back to a directory already walked
            }
            if depth + 1 > MAX_DEPTH {
                // The layout is at most three levels deep (ingress/<ns>/<pod>/nginx.conf);
                // thousands of nested directories took time quadratic in their depth.
                out.push(skip(
                    rel,
                    &p,
                    &format!("more than {MAX_DEPTH} directory levels below the snapshot root: not walked"),
                ));
                continue;
            }
            walk(root, canon_root, &p, depth + 1, seen, out)?;
        } else if meta.is_file() {
            let ident = Ident::of(&meta);
            out.push(Found {
                rel,
                path: p,
                ident: Some(ident),
                skip: (ident.len > MAX_FILE_BYTES).then(|| too_large(ident.len)),
            });
        } else {
            out.push(skip(
                rel,
                &p,
                "not a regular file (FIFO, socket or device): not read",
            ));
        }
    }
    Ok(())
}

/// Where a file sits in the layout.
pub(crate) enum Place<'a> {
    Manifest,
    Cluster,
    Node(&'a str),
    Router(&'a str),
    Dns,
    Nginx(Option<(&'a str, &'a str)>),
    Docs,
    Hidden,
    Outside,
    Nested,
}

pub(crate) fn place(rel: &str) -> Place<'_> {
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.iter().any(|p| p.starts_with('.')) {
        return Place::Hidden;
    }
    let last = parts.last().copied().unwrap_or("");
    let lower = last.to_ascii_lowercase();
    let is_doc = lower.starts_with("readme") || lower.ends_with(".md") || lower == "license";
    match parts.as_slice() {
        ["kubepath.yaml"] | ["kubepath.yml"] => Place::Manifest,
        ["cluster", ..] if !is_doc => Place::Cluster,
        ["nodes", node, _] if !is_doc => Place::Node(node),
        ["routers", r, _] if !is_doc => Place::Router(r),
        // A directory inside a node's (a copy of other nodes' directories, an archive
        // unpacked there) is not more of that node.
        ["nodes", _, _, _, ..] | ["routers", _, _, _, ..] if !is_doc => Place::Nested,
        ["dns", _, ..] if !is_doc => Place::Dns,
        ["ingress", ns, pod, _, ..] if !is_doc => Place::Nginx(Some((ns, pod))),
        ["ingress", _] if !is_doc => Place::Nginx(None),
        _ if is_doc => Place::Docs,
        _ => Place::Outside,
    }
}

/// How strictly a snapshot is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Any line a reader does not understand is an error of the whole snapshot (exit 2).
    /// Otherwise (the default) a command output's odd line is reported and skipped, and a
    /// file that cannot be read at all (a Kubernetes file that does not parse, a ruleset
    /// iptables-restore would reject) is reported and left out; the rest still loads.
    pub strict: bool,
    /// Read every file on this thread, nothing prepared ahead on other cores
    /// (crate::prefetch): the reference the parallel load is tested against (same answer).
    pub one_thread: bool,
}

/// One file to load: its contents, shared with every file of the same contents, and its
/// group: the index (in path order) of the first file with these contents.
struct Input {
    rel: String,
    bytes: Arc<Vec<u8>>,
    group: usize,
}

/// Reads the files (index in path order, path, identity) on every core, keeping one copy of
/// each distinct contents: a file whose bytes equal an earlier read one's (same length, then
/// compared byte for byte) shares its buffer and group. Groups are numbered by their first
/// member in path order, whatever order the threads read them in.
/// One file read: its index, and its shared contents and group (or why it was not read).
type ReadResult = (usize, Result<(Arc<Vec<u8>>, usize), String>);

fn read_all(list: Vec<(usize, PathBuf, Ident)>) -> Vec<ReadResult> {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    // By length: (index of the first file read with these contents, the contents).
    type ByLength = HashMap<u64, Vec<(usize, Arc<Vec<u8>>)>>;
    let seen: Mutex<ByLength> = Mutex::new(HashMap::new());
    // By (device, inode): what a path of that file read.
    type ByFile = HashMap<(u64, u64), (usize, Arc<Vec<u8>>)>;
    let files: Mutex<ByFile> = Mutex::new(HashMap::new());
    let file_key = |ident: &Ident| -> Option<(u64, u64)> {
        #[cfg(unix)]
        return Some((ident.dev, ident.ino));
        #[cfg(not(unix))]
        {
            let _ = ident;
            None
        }
    };
    let results: Mutex<Vec<ReadResult>> = Mutex::new(Vec::with_capacity(list.len()));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(list.len().max(1));
    let work = || {
        let mut scratch = Vec::new();
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let Some((i, path, ident)) = list.get(k) else {
                break;
            };
            // Compared with the files of the same length read before, outside the lock; a file
            // with new contents is then added unless another thread added the same meanwhile.
            let mut known = 0usize;
            let mut asked = None;
            let r = read_checked(
                path,
                Some(*ident),
                || {
                    let files = files.lock().unwrap_or_else(|e| e.into_inner());
                    files.get(&file_key(ident)?).cloned()
                },
                |len| {
                    asked = Some(len);
                    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    let same = seen.get(&len).cloned().unwrap_or_default();
                    known = same.len();
                    same
                },
                &mut scratch,
            )
            .map(|read| match read {
                Read::Same(first, b) => (b, first),
                Read::New(bytes) => {
                    let len = bytes.len() as u64;
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    let same = seen.entry(len).or_default();
                    // Only those added since the candidates were taken (all of them when the file
                    // no longer has the length it had when opened).
                    let start = if asked == Some(len) {
                        known.min(same.len())
                    } else {
                        0
                    };
                    match same[start..]
                        .iter()
                        .find(|(_, b)| b.as_slice() == bytes.as_slice())
                    {
                        Some((first, b)) => (b.clone(), *first),
                        None => {
                            let b = Arc::new(bytes);
                            same.push((*i, b.clone()));
                            (b, *i)
                        }
                    }
                }
            });
            if let (Ok((b, first)), Some(key)) = (&r, file_key(ident)) {
                files
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key)
                    .or_insert_with(|| (*first, b.clone()));
            }
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((*i, r));
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    // Renumber each group by its first member in path order.
    let mut lowest: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (i, r) in &results {
        if let Ok((_, g)) = r {
            let e = lowest.entry(*g).or_insert(*i);
            *e = (*e).min(*i);
        }
    }
    for (_, r) in &mut results {
        if let Ok((_, g)) = r {
            *g = lowest.get(g).copied().unwrap_or(*g);
        }
    }
    results
}

/// [`load_snapshot`] with options.
pub fn load_snapshot_with(dir: &Path, opts: LoadOptions) -> Result<Snapshot, IngestError> {
    let meta = std::fs::metadata(dir).map_err(|e| IngestError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    if !meta.is_dir() {
        return Err(IngestError::Io {
            path: dir.display().to_string(),
            message: "not a directory (a snapshot is a directory, see docs/snapshot.md)".into(),
        });
    }
    let canon_root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut found = Vec::new();
    let mut seen = std::collections::BTreeSet::from([canon_root.clone()]);
    walk(dir, &canon_root, dir, 0, &mut seen, &mut found)?;
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    let mut files: Vec<Input> = Vec::new();
    let mut not_read = Vec::new();
    let mut to_read: Vec<(usize, PathBuf, Ident)> = Vec::new();
    for f in found {
        if let Some(why) = f.skip {
            not_read.push((f.rel, why));
            continue;
        }
        // Paths the layout skips (documentation, hidden, outside the layout) are not opened.
        if matches!(
            place(&f.rel),
            Place::Docs | Place::Hidden | Place::Outside | Place::Nested
        ) {
            let group = files.len();
            files.push(Input {
                rel: f.rel,
                bytes: Arc::new(Vec::new()),
                group,
            });
            continue;
        }
        let Some(ident) = f.ident else {
            not_read.push((f.rel, "cannot be examined".into()));
            continue;
        };
        to_read.push((files.len(), f.path, ident));
        let group = files.len();
        files.push(Input {
            rel: f.rel,
            bytes: Arc::new(Vec::new()),
            group,
        });
    }
    let mut failed = vec![false; files.len()];
    for (i, r) in read_all(to_read) {
        match r {
            Ok((bytes, group)) => {
                files[i].bytes = bytes;
                files[i].group = group;
            }
            Err(why) => {
                failed[i] = true;
                not_read.push((files[i].rel.clone(), why));
            }
        }
    }
    let files: Vec<Input> = files
        .into_iter()
        .zip(failed)
        .filter(|(_, f)| !f)
        .map(|(i, _)| i)
        .collect();
    if opts.strict {
        // --strict: a file of the layout that was not read (a link out of the snapshot, a
        // FIFO, a device, too large) is an error of the snapshot, as a file that does not
        // parse is (issue #11, review: these exited 1 with the file left out).
        if let Some((rel, why)) = not_read.iter().find(|(rel, _)| {
            !matches!(
                place(rel),
                Place::Docs | Place::Hidden | Place::Outside | Place::Nested
            )
        }) {
            return Err(IngestError::Io {
                path: rel.clone(),
                message: format!("{why} (--strict: every file of the snapshot must be read)"),
            });
        }
    }
    let mut snap = load_inputs(files, opts)?;
    for (rel, why) in not_read {
        match place(&rel) {
            Place::Node(n) => {
                if let Some(net) = snap.model.nodes.get_mut(n) {
                    net.left_out.push((Arc::from(rel.as_str()), why.clone()));
                }
            }
            // A zone or capture not read (binary, too large): its answers are unknown.
            Place::Dns => snap
                .model
                .dns
                .left_out
                .push((Arc::from(rel.as_str()), why.clone())),
            _ => {}
        }
        snap.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            file: Arc::from(rel.as_str()),
            line: 0,
            column: 0,
            message: why.clone(),
        });
        snap.files.push(FileReport {
            path: rel,
            format: None,
            objects: Vec::new(),
            skipped: Some(why),
        });
    }
    snap.files.sort_by(|a, b| a.path.cmp(&b.path));
    snap.root = dir.to_path_buf();
    Ok(snap)
}

/// Load a snapshot from in-memory files (`relative path`, contents). Used by
/// [`load_snapshot`] and by tests.
pub fn load_files(files: Vec<(String, Vec<u8>)>) -> Result<Snapshot, IngestError> {
    load_files_with(files, LoadOptions::default())
}

/// The longest diagnostic message kept (characters); a longer one is clipped.
const MAX_MESSAGE: usize = 600;

/// At most this many lines of one file are skipped before the file is left out altogether.
const MAX_SKIPPED_LINES: usize = 100;

/// The part of the model one file may change, saved so a failed read can be undone. The
/// node's rulesets are not copied: their reader parses a whole ruleset before it stores it, so
/// a parse error leaves them as they were.
enum Saved {
    Node(Option<Box<kubepath_model::net::NodeNet>>),
    Router(Option<Box<kubepath_model::net::Router>>),
    Dns(Box<kubepath_model::dns::Dns>),
    Other,
}

fn save(model: &mut Model, pl: &Place<'_>) -> Saved {
    match pl {
        Place::Node(n) => Saved::Node(model.nodes.get_mut(*n).map(|net| {
            let nf = net.netfilter.take();
            let nf6 = net.netfilter6.take();
            let nft = net.nft.take();
            let copy = Box::new(net.clone());
            net.netfilter = nf;
            net.netfilter6 = nf6;
            net.nft = nft;
            copy
        })),
        Place::Router(r) => Saved::Router(model.routers.get(*r).cloned().map(Box::new)),
        Place::Dns => Saved::Dns(Box::new(model.dns.clone())),
        _ => Saved::Other,
    }
}

fn restore(model: &mut Model, pl: &Place<'_>, saved: &Saved) {
    match (pl, saved) {
        (Place::Node(n), Saved::Node(s)) => match s {
            Some(net) => {
                let cur = model.nodes.remove(*n).unwrap_or_default();
                let mut back = (**net).clone();
                back.netfilter = cur.netfilter;
                back.netfilter6 = cur.netfilter6;
                back.nft = cur.nft;
                model.nodes.insert(n.to_string(), back);
            }
            None => {
                model.nodes.remove(*n);
            }
        },
        (Place::Router(r), Saved::Router(s)) => match s {
            Some(rt) => {
                model.routers.insert(r.to_string(), (**rt).clone());
            }
            None => {
                model.routers.remove(*r);
            }
        },
        (Place::Dns, Saved::Dns(d)) => model.dns = (**d).clone(),
        _ => {}
    }
}

/// Whether the reader's grammar is line by line, so one odd line can be skipped without
/// changing what the others mean (not for rulesets: a rule left out changes every verdict
/// after it, so iptables-restore's all-or-nothing is kept).
fn line_skippable(pl: &Place<'_>, text: &str) -> bool {
    match pl {
        Place::Router(_) | Place::Dns => true,
        Place::Node(_) => {
            kubepath_netfilter::Ruleset::sniff(text).is_none()
                && !kubepath_netfilter::NftRuleset::sniff(text)
                && !text.lines().any(|l| {
                    let t = l.trim_start();
                    t.starts_with("create ") || t.starts_with("add ") || t.starts_with("*")
                })
        }
        _ => false,
    }
}

/// The kinds of Kubernetes objects a whole file that was left out (it does not parse) may
/// hold, from its `kind:` lines (YAML, or JSON's `"kind": "X"`; a typed list `ServiceList`
/// counts as its items' kind; a generic `List`'s items carry their own). The whole text is
/// there, so every object's kind line is too. None, meaning any kind, when none can be read.
fn kinds_in(text: &str) -> Option<std::collections::BTreeSet<String>> {
    let mut kinds = std::collections::BTreeSet::new();
    for l in text.lines() {
        let t = l.trim_start().trim_start_matches("- ").trim_start();
        let v = if let Some(v) = t.strip_prefix("kind:") {
            v.trim()
        } else if let Some(v) = t.strip_prefix("\"kind\":") {
            v.trim().trim_end_matches(',').trim()
        } else {
            continue;
        };
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric()) {
            // A kind that cannot be read: any kind.
            return None;
        }
        match v.strip_suffix("List") {
            Some("") => {}
            Some(item) => {
                kinds.insert(item.to_string());
            }
            None => {
                kinds.insert(v.to_string());
            }
        }
    }
    (!kinds.is_empty()).then_some(kinds)
}

/// The last line of a capture that ends without a newline, when that line is not blank: (its
/// 1-based number, the line). A command output and kubectl's YAML always end in a newline, so
/// such a file may have been cut in or after that line even where it still reads (issue #11).
/// `None` for JSON, which cannot be cut and still parse (its brackets close it;
/// `serde_json::to_string` writes no final newline), and for a file that ends well.
pub(crate) fn unterminated_last_line(text: &str) -> Option<(u32, &str)> {
    if text.ends_with('\n') || text.trim_start().starts_with(['[', '{']) {
        return None;
    }
    let last = text.rsplit('\n').next().unwrap_or("");
    (!last.trim().is_empty()).then(|| (text.split('\n').count() as u32, last))
}

/// Blanks line `no` (1-based) of `text`, keeping every other line where it was.
fn blank_line(text: &str, no: u32) -> (String, String) {
    let mut removed = String::new();
    let out: Vec<&str> = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == no as usize {
                removed = l.to_string();
                ""
            } else {
                l
            }
        })
        .collect();
    (out.join("\n"), removed)
}

/// Load a snapshot from in-memory files, with options.
pub fn load_files_with(
    files: Vec<(String, Vec<u8>)>,
    opts: LoadOptions,
) -> Result<Snapshot, IngestError> {
    let mut first: std::collections::HashMap<Arc<Vec<u8>>, usize> =
        std::collections::HashMap::new();
    let inputs = files
        .into_iter()
        .enumerate()
        .map(|(i, (rel, bytes))| {
            let bytes = Arc::new(bytes);
            let group = *first.entry(bytes.clone()).or_insert(i);
            Input { rel, bytes, group }
        })
        .collect();
    load_inputs(inputs, opts)
}

/// What reading a node's ruleset file gave that node, kept so that a node whose file has the
/// same bytes gets the same parsed ruleset (shared, not parsed again) with its own citations.
struct NfShare {
    file: Arc<str>,
    format: &'static str,
    netfilter: Option<Arc<kubepath_netfilter::Ruleset>>,
    netfilter6: Option<Arc<kubepath_netfilter::Ruleset>>,
    tables: Vec<(kubepath_model::net::Family, kubepath_netfilter::Table)>,
    complete: Vec<kubepath_model::net::Family>,
    dumps: Vec<kubepath_model::net::IptablesDump>,
    read: Vec<(kubepath_model::net::NodeFact, kubepath_model::SourceRef)>,
    partial: Vec<(
        kubepath_model::net::NodeFact,
        kubepath_model::SourceRef,
        String,
    )>,
    diags: Vec<Diagnostic>,
}

/// The parts of a node a ruleset file does not touch, to tell that a file gave nothing else.
fn node_shape(net: Option<&kubepath_model::net::NodeNet>) -> Option<[usize; 7]> {
    let Some(n) = net else {
        return Some([0; 7]);
    };
    // Only a node without iptables state yet: a later file combines with an earlier one.
    (n.netfilter.is_none()
        && n.netfilter6.is_none()
        && n.iptables_dumps.is_empty()
        && n.netfilter_tables.is_empty()
        && n.netfilter_complete.is_empty())
    .then(|| shape_after(n))
}

fn shape_after(n: &kubepath_model::net::NodeNet) -> [usize; 7] {
    [
        n.interfaces.len(),
        n.routes.len(),
        n.rules.len(),
        n.sysctls.len(),
        n.skipped.len(),
        usize::from(n.ipsets.is_some()),
        n.left_out.len(),
    ]
}

impl NfShare {
    /// What reading `file` into the (formerly iptables-less) node `net` added.
    fn capture(
        file: &Arc<str>,
        format: &'static str,
        net: &kubepath_model::net::NodeNet,
        diags: &[Diagnostic],
    ) -> NfShare {
        NfShare {
            file: file.clone(),
            format,
            netfilter: net.netfilter.clone(),
            netfilter6: net.netfilter6.clone(),
            tables: net.netfilter_tables.clone(),
            complete: net.netfilter_complete.clone(),
            dumps: net.iptables_dumps.clone(),
            read: net
                .read
                .iter()
                .flat_map(|(f, v)| {
                    v.iter()
                        .filter(|s| s.file == *file)
                        .map(|s| (*f, s.clone()))
                })
                .collect(),
            partial: net
                .partial
                .iter()
                .filter(|(_, s, _)| s.file == *file)
                .cloned()
                .collect(),
            diags: diags.to_vec(),
        }
    }

    /// Gives node `net` the same, citing `file` (its own file with the same bytes).
    fn apply(&self, file: &Arc<str>, net: &mut kubepath_model::net::NodeNet) -> Vec<Diagnostic> {
        let re = |s: &kubepath_model::SourceRef| kubepath_model::SourceRef {
            file: file.clone(),
            line: s.line,
        };
        net.netfilter = self.netfilter.clone();
        net.netfilter6 = self.netfilter6.clone();
        net.netfilter_cites.push((self.file.clone(), file.clone()));
        net.netfilter_tables.extend(self.tables.iter().copied());
        net.netfilter_complete.extend(self.complete.iter().copied());
        net.iptables_dumps.extend(self.dumps.iter().map(|d| {
            let mut d = d.clone();
            d.source = re(&d.source);
            d
        }));
        for (f, s) in &self.read {
            net.read.entry(*f).or_default().push(re(s));
        }
        net.partial
            .extend(self.partial.iter().map(|(f, s, x)| (*f, re(s), x.clone())));
        self.diags
            .iter()
            .map(|d| Diagnostic {
                file: file.clone(),
                ..d.clone()
            })
            .collect()
    }
}

fn load_inputs(files: Vec<Input>, opts: LoadOptions) -> Result<Snapshot, IngestError> {
    // The costly part of cluster files and of node rulesets is done ahead, on every core
    // (crate::prefetch): jobs largest first, so the longest does not start last.
    let mut order: Vec<(usize, Job)> = Vec::new();
    let mut leaders = std::collections::HashSet::new();
    for (i, f) in files.iter().enumerate() {
        let pl = place(&f.rel);
        let leader = leaders.insert(f.group);
        let job = Job::for_file(
            matches!(pl, Place::Cluster),
            matches!(pl, Place::Node(_)) && leader,
            &Arc::from(f.rel.as_str()),
            &f.bytes,
        );
        if let Some(job) = job {
            order.push((i, job));
        }
    }
    if opts.one_thread {
        order.clear();
    }
    order.sort_by_key(|(i, _)| std::cmp::Reverse(files[*i].bytes.len()));
    let file_jobs: std::collections::HashMap<usize, usize> = order
        .iter()
        .enumerate()
        .filter(|(_, (_, j))| matches!(j, Job::Cluster { .. } | Job::Nginx { .. }))
        .map(|(k, (i, _))| (*i, k))
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        - 1;
    let spawn = if order.is_empty() { 0 } else { workers };
    let prefetch = Arc::new(Prefetch::new(order.into_iter().map(|(_, j)| j).collect()));
    std::thread::scope(|s| {
        for _ in 0..spawn {
            let p = prefetch.clone();
            s.spawn(move || while p.work_one() {});
        }
        let _current = crate::prefetch::enter(prefetch.clone());
        let r = load_inputs_in_order(files, opts, &prefetch, &file_jobs);
        prefetch.cancel();
        r
    })
}

/// [`load_inputs`]' pass over the files in path order, taking what was prepared ahead.
fn load_inputs_in_order(
    files: Vec<Input>,
    opts: LoadOptions,
    prefetch: &Prefetch,
    file_jobs: &std::collections::HashMap<usize, usize>,
) -> Result<Snapshot, IngestError> {
    let mut model = Model::default();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut reports = Vec::new();
    // Files of a node left out whole (path, why): recorded on the node once all are read.
    let mut left_out: Vec<(String, String)> = Vec::new();
    // Of the cluster files left out whole, the kinds each may hold (see `kinds_in`).
    let mut cluster_kinds: std::collections::HashMap<
        String,
        Option<std::collections::BTreeSet<String>>,
    > = std::collections::HashMap::new();
    // Of those, the files read as nft text that nft would reject (path, why).
    let mut nft_rejected: Vec<(String, String)> = Vec::new();
    let mut shares: std::collections::HashMap<usize, NfShare> = std::collections::HashMap::new();
    for (file_index, Input { rel, bytes, group }) in files.into_iter().enumerate() {
        let path: Arc<str> = Arc::from(rel.as_str());
        let mut report = FileReport {
            path: rel.clone(),
            format: None,
            objects: Vec::new(),
            skipped: None,
        };
        let pl = place(&rel);
        match pl {
            Place::Hidden => {
                report.skipped = Some("hidden file".into());
                reports.push(report);
                continue;
            }
            Place::Docs => {
                report.skipped = Some("documentation, not a command output".into());
                reports.push(report);
                continue;
            }
            Place::Nested => {
                diags.push(Diagnostic {
                    severity: Severity::Warning,
                    file: path.clone(),
                    line: 0,
                    column: 0,
                    message: "a directory inside a node's or router's directory is not read as part of it (nodes/<node>/FILE and routers/<router>/FILE only)".into(),
                });
                report.skipped = Some("nested below a node or router directory".into());
                reports.push(report);
                continue;
            }
            Place::Outside => {
                // Not a command output kubepath knows where to put (tools, notes): said, not
                // warned about, so a snapshot with helper files still reads cleanly.
                diags.push(Diagnostic {
                    severity: Severity::Note,
                    file: path.clone(),
                    line: 0,
                    column: 0,
                    message: "not part of the snapshot layout (kubepath.yaml, cluster/, nodes/<node>/, routers/<router>/, dns/, ingress/): not read".into(),
                });
                report.skipped = Some("outside the snapshot layout".into());
                reports.push(report);
                continue;
            }
            _ => {}
        }
        // A node's ruleset file with the same bytes as one already read: the same rules.
        let shape = match pl {
            Place::Node(n) => node_shape(model.nodes.get(n)),
            _ => None,
        };
        if let (Place::Node(n), Some(_), Some(share)) = (&pl, shape, shares.get(&group)) {
            let net = model.nodes.entry(n.to_string()).or_default();
            diags.extend(share.apply(&path, net));
            report.format = Some(share.format.to_string());
            report.objects.push(format!("node {n}"));
            reports.push(report);
            continue;
        }
        let diag_mark = diags.len();
        let mut skipped_lines: Vec<kubepath_model::net::SkippedLine> = Vec::new();
        // A DNS file is lowered into records of about 150 bytes per 25-byte line (a zone
        // costs 18x its size to load, 26x to trace, measured with a million names): one
        // larger than any cluster's zone is left out rather than exhaust memory (sixth review:
        // a 156 MB zone aborted under a 4 GB limit).
        let not_read = if matches!(pl, Place::Dns) && bytes.len() as u64 > MAX_DNS_FILE_BYTES {
            Some((
                0,
                format!(
                    "too large for a DNS file ({} bytes, the limit is {MAX_DNS_FILE_BYTES} bytes = 64 MiB): not read",
                    bytes.len()
                ),
            ))
        } else {
            // A NUL byte anywhere: no command output prints one (iptables-restore reads lines
            // as C strings, so a NUL inside a rule fails the restore). Left out, what it would
            // hold unknown (sixth review R11; the first 64 KiB are looked at before reading a
            // file).
            memchr::memchr(0, &bytes).map(|at| {
                (
                    memchr::memchr_iter(b'\n', &bytes[..at]).count() as u32 + 1,
                    format!("binary (a NUL byte at offset {at}), not a command output: not read"),
                )
            })
        };
        if let Some((line, why)) = not_read {
            diags.push(Diagnostic {
                severity: Severity::Warning,
                file: path.clone(),
                line,
                column: 0,
                message: why.clone(),
            });
            left_out.push((rel.clone(), why.clone()));
            report.skipped = Some(why);
            reports.push(report);
            continue;
        }
        // Contents no other file shares move into the text without a copy.
        let bytes: Vec<u8> = Arc::try_unwrap(bytes).unwrap_or_else(|b| b.as_ref().clone());
        let text = match String::from_utf8(bytes) {
            Ok(t) => Some(t),
            // A node's or router's command output with a few bytes that are not UTF-8 (a
            // hostname, a description in another encoding) loses those lines only: each is
            // skipped (what it may concern is unknown), the rest is read (issue #11, review:
            // one byte cost the whole file, e.g. a sysctl output and with it forwarding).
            Err(e) if matches!(pl, Place::Node(_) | Place::Router(_)) && !opts.strict => {
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                let mut kept = String::with_capacity(lossy.len());
                for (i, l) in lossy.split_inclusive('\n').enumerate() {
                    if l.contains('\u{FFFD}') && skipped_lines.len() < MAX_SKIPPED_LINES {
                        skipped_lines.push(kubepath_model::net::SkippedLine {
                            source: kubepath_model::SourceRef::new(path.clone(), i as u32 + 1),
                            text: l.trim_end().to_string(),
                            why: "the line is not UTF-8 text".into(),
                            cut: false,
                            read: false,
                        });
                        if l.ends_with('\n') {
                            kept.push('\n');
                        }
                    } else {
                        kept.push_str(l);
                    }
                }
                // More such lines than are skipped one by one: the file is left out.
                (!kept.contains('\u{FFFD}')).then_some(kept)
            }
            Err(_) => None,
        };
        let Some(text) = text else {
            diags.push(Diagnostic {
                severity: Severity::Warning,
                file: path.clone(),
                line: 0,
                column: 0,
                message: "not UTF-8 text: not read".into(),
            });
            left_out.push((rel.clone(), "not UTF-8 text".to_string()));
            reports.push(report);
            continue;
        };
        // kubectl's YAML ends with a newline. A cluster file that ends without one may have
        // been cut inside its last object where what is left still parses (`serviceName:
        // eric-pm-s`, a `uid` cut short): left out like a file that does not parse, so what
        // needs it is unknown rather than read from a truncated object (issue #11, review).
        // JSON cannot be cut and still parse (its brackets close it); kubepath.yaml is the
        // user's own question, not a capture.
        if matches!(pl, Place::Cluster) {
            if let Some((line, last)) = unterminated_last_line(&text) {
                let what = "the file ends without a newline, as kubectl's output never does: it may have been cut inside its last object (end the file with a newline if it is complete)".to_string();
                if opts.strict {
                    return Err(ParseError {
                        file: path.clone(),
                        line,
                        column: last.chars().count() as u32 + 1,
                        expected: "a newline at the end of the YAML (--strict: the output may have been cut here)".into(),
                        found: "the end of the file".into(),
                    }
                    .into());
                }
                diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: path.clone(),
                    line,
                    column: 0,
                    message: format!(
                        "{what}: the file is left out (what depends on it is unknown; --strict makes this fatal)"
                    ),
                });
                report.skipped = Some("may have been cut: left out".into());
                left_out.push((rel.clone(), format!("may have been cut: {what}")));
                reports.push(report);
                continue;
            }
        }
        let mut text = text;
        let recognised = loop {
            let saved = if opts.strict {
                Saved::Other
            } else {
                save(&mut model, &pl)
            };
            let mark = diags.len();
            let objects_mark = report.objects.len();
            // The text moves into the reader's file and back: not copied per read.
            let file = SourceFile {
                path: path.clone(),
                text: std::mem::take(&mut text),
            };
            // A cluster file lowered ahead into a model of its own is merged, where that gives
            // what reading it here gives (crate::prefetch::merge_cluster); an nginx.conf read
            // ahead is added.
            let prepared = match file_jobs.get(&file_index).map(|&j| prefetch.take(j)) {
                Some(Some(Prepared::Cluster(Some(part)))) => {
                    merge_cluster(part, &mut model, &mut diags, &mut report.objects)
                }
                Some(Some(Prepared::Nginx(Some(conf)))) => Some(
                    conf.apply(&mut model, &mut diags)
                        .inspect(|r| nginx_objects(&pl, r, &mut report.objects)),
                ),
                _ => None,
            };
            let res = match prepared {
                Some(res) => res,
                None => read_one(&pl, &file, &mut model, &mut diags, &mut report.objects),
            };
            text = file.text;
            match res {
                Ok(r) => {
                    // Under --strict an object the API schema rejects is an error of the
                    // snapshot, like a line no reader understands (issue #11).
                    if opts.strict && matches!(pl, Place::Cluster) {
                        if let Some(d) = diags[mark..].iter().find(|d| {
                            d.severity == Severity::Error
                                && d.message.contains(crate::k8s::SCHEMA_MISMATCH)
                        }) {
                            // The column of the line's first character.
                            let column = text
                                .lines()
                                .nth(d.line.saturating_sub(1) as usize)
                                .map_or(0, |l| l.len() - l.trim_start().len())
                                as u32
                                + 1;
                            return Err(ParseError {
                                file: d.file.clone(),
                                line: d.line,
                                column,
                                expected: "objects that match the Kubernetes API schema (--strict)"
                                    .into(),
                                found: d.message.replace(", skipped:", ":"),
                            }
                            .into());
                        }
                    }
                    break r;
                }
                // The manifest is the question itself (who the clients are, where they
                // enter): answering with part of it left out would answer another question.
                Err(e) if opts.strict || matches!(pl, Place::Manifest) => return Err(e.into()),
                Err(e) => {
                    restore(&mut model, &pl, &saved);
                    diags.truncate(mark);
                    report.objects.truncate(objects_mark);
                    // The location is the diagnostic's own (file, line, column): said once.
                    let what = format!(
                        "expected {}, found {}",
                        crate::diag::clip_quote(&e.expected),
                        crate::diag::clip_quote(&e.found)
                    );
                    if e.line > 0
                        && line_skippable(&pl, &text)
                        && skipped_lines.len() < MAX_SKIPPED_LINES
                    {
                        // The last line of a file that ends without a newline: cut there.
                        let cut = !text.ends_with('\n') && text.lines().count() == e.line as usize;
                        let (t, removed) = blank_line(&text, e.line);
                        text = t;
                        skipped_lines.push(kubepath_model::net::SkippedLine {
                            source: kubepath_model::SourceRef::new(path.clone(), e.line),
                            text: removed,
                            why: if cut {
                                format!("{what}; the file ends in this line: the output was cut here, and what followed is missing")
                            } else {
                                what
                            },
                            cut,
                            read: false,
                        });
                        continue;
                    }
                    diags.push(Diagnostic {
                        severity: Severity::Error,
                        file: path.clone(),
                        line: e.line,
                        column: e.column,
                        message: format!(
                            "{what}: the file is left out (what depends on it is unknown; --strict makes this fatal)"
                        ),
                    });
                    report.skipped = Some("not readable: left out".into());
                    if matches!(pl, Place::Node(_)) && kubepath_netfilter::NftRuleset::sniff(&text)
                    {
                        nft_rejected.push((rel.clone(), what.clone()));
                    }
                    if matches!(pl, Place::Cluster) {
                        cluster_kinds.insert(rel.clone(), kinds_in(&text));
                    }
                    left_out.push((rel.clone(), format!("not readable: {what}")));
                    skipped_lines.clear();
                    break None;
                }
            }
        };
        // A node's output no reader recognises is left out (recorded, so a hop that needed
        // what it may hold names it). When lines of it were skipped first (a rule file cut to
        // `0:\tfrom all `), or it ends without a newline, it is a cut output, an error: one,
        // not "line skipped, the rest is read" beside "not read" (issue #11, review).
        if let (Place::Node(_), None, None) = (&pl, recognised, &report.skipped) {
            let cut = !skipped_lines.is_empty() || unterminated_last_line(&text).is_some();
            if cut {
                diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: path.clone(),
                    line: skipped_lines.first().map_or(1, |l| l.source.line),
                    column: 0,
                    message: "format not recognised, and the file ends without a newline or in lines no reader understands: it may have been cut (what a node's output of this name would hold is unknown; --strict makes this fatal)".into(),
                });
                if opts.strict {
                    return Err(ParseError {
                        file: path.clone(),
                        line: skipped_lines.first().map_or(1, |l| l.source.line),
                        column: 1,
                        expected: "a node command output kubepath reads (--strict)".into(),
                        found: "an output that may have been cut".into(),
                    }
                    .into());
                }
                skipped_lines.clear();
                report.skipped = Some("may have been cut: left out".into());
                left_out.push((
                    rel.clone(),
                    "format not recognised; it may have been cut".into(),
                ));
            } else {
                left_out.push((rel.clone(), "format not recognised".into()));
            }
        }
        let no_skipped = skipped_lines.is_empty();
        for sl in &skipped_lines {
            diags.push(Diagnostic {
                severity: Severity::Error,
                file: path.clone(),
                line: sl.source.line,
                column: 0,
                message: format!(
                    "{}: line skipped (the rest of the file is read; what depends on this line is unknown; --strict makes this fatal)",
                    sl.why
                ),
            });
        }
        // A command output ends with a newline. A node's output that does not may have been
        // cut in or after its last line even where that line still reads (`lookup 1` of
        // `lookup 100`, a route list cut between two routes): what the line and whatever
        // followed it said is unknown, so the line may concern any lookup on the node
        // (issue #11, review). Kept as read; the hops it may decide say why they are unknown.
        // A router's BGP table that ends so is cut unless the router's own count of it was
        // printed and matches (the SLX table cut inside `Total number of ` read as empty).
        let counted_table = |m: &Model| match pl {
            Place::Router(r) => m.routers.get(r).is_none_or(|rt| {
                let mine: Vec<_> = rt
                    .vrfs
                    .values()
                    .filter(|v| v.bgp_source.as_ref().is_some_and(|s| s.file == path))
                    .collect();
                mine.is_empty() || mine.iter().all(|v| v.bgp_counted)
            }),
            _ => false,
        };
        // An iptables-save that ends without a newline may have been cut after a table's
        // COMMIT (or its `# Completed` comment): the tables it does not hold are then not
        // known to be unloaded, so they are uncollected (unknown when a packet reaches
        // them), not empty (issue #11, review).
        // An `ipset save` that ends without a newline may have been cut inside its last set
        // (`add blocked 10.210.150.8` of `...80/28`), or before sets and members that
        // followed: its sets are unknown. Left out whole, as a cut iptables-save is (issue
        // #11, review: read as complete, it gave `delivered`).
        if let (Place::Node(n), Some("ipset-save")) = (&pl, recognised) {
            if let (Some((no, _)), Some(net)) =
                (unterminated_last_line(&text), model.nodes.get_mut(*n))
            {
                if opts.strict {
                    return Err(ParseError {
                        file: path.clone(),
                        line: no,
                        column: 1,
                        expected: "a newline at the end of the `ipset save` output (--strict: it may have been cut here)".into(),
                        found: "the end of the file".into(),
                    }
                    .into());
                }
                let why = "the `ipset save` output ends without a newline, as ipset never does: it may have been cut, so its sets are unknown";
                net.ipsets = None;
                if let Some(v) = net.read.get_mut(&kubepath_model::net::NodeFact::Ipsets) {
                    v.retain(|s| s.file != path);
                    if v.is_empty() {
                        net.read.remove(&kubepath_model::net::NodeFact::Ipsets);
                    }
                }
                net.left_out.push((path.clone(), why.to_string()));
                diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: path.clone(),
                    line: no,
                    column: 0,
                    message: format!("{why}: the file is left out (--strict makes this fatal)"),
                });
                report.skipped = Some("may have been cut: left out".into());
            }
        }
        if let (Place::Node(n), Some(_)) = (&pl, recognised) {
            if let (Some((no, _)), Some(net)) =
                (unterminated_last_line(&text), model.nodes.get_mut(*n))
            {
                let fams: Vec<kubepath_model::net::Family> = net
                    .iptables_dumps
                    .iter()
                    .filter(|d| d.source.file == path)
                    .map(|d| d.family)
                    .collect();
                if !fams.is_empty() {
                    if opts.strict {
                        return Err(ParseError {
                            file: path.clone(),
                            line: no,
                            column: 1,
                            expected: "a newline at the end of the iptables-save output (--strict: it may have been cut here)".into(),
                            found: "the end of the file".into(),
                        }
                        .into());
                    }
                    net.netfilter_complete.retain(|f| !fams.contains(f));
                    diags.push(Diagnostic {
                        severity: Severity::Error,
                        file: path.clone(),
                        line: no,
                        column: 0,
                        message: "the iptables-save output ends without a newline, as iptables-save never does: it may have been cut after its last table, so the tables it does not hold are unknown rather than empty (--strict makes this fatal)".into(),
                    });
                }
            }
        }
        if let (Place::Node(_) | Place::Router(_), Some(_)) = (&pl, recognised) {
            let unterminated = unterminated_last_line(&text).filter(|_| {
                line_skippable(&pl, &text)
                    && !skipped_lines.iter().any(|l| l.cut)
                    && !counted_table(&model)
            });
            if let Some((no, last)) = unterminated {
                if opts.strict {
                    return Err(ParseError {
                        file: path.clone(),
                        line: no,
                        column: last.chars().count() as u32 + 1,
                        expected: "a newline at the end of the command output (--strict: the output may have been cut here)".into(),
                        found: "the end of the file".into(),
                    }
                    .into());
                }
                let why = "the file ends in this line without a newline, as a command output never does: the output may have been cut in or after it, and what followed is missing (end the file with a newline if it is complete)".to_string();
                diags.push(Diagnostic {
                    severity: Severity::Error,
                    file: path.clone(),
                    line: no,
                    column: 0,
                    message: format!(
                        "{why}: the line is read, but what {} routing depends on is unknown (--strict makes this fatal)",
                        if matches!(pl, Place::Router(_)) { "the router's" } else { "the node's" }
                    ),
                });
                skipped_lines.push(kubepath_model::net::SkippedLine {
                    source: kubepath_model::SourceRef::new(path.clone(), no),
                    text: last.trim_end().to_string(),
                    why,
                    cut: true,
                    read: true,
                });
            }
        }
        if !skipped_lines.is_empty() {
            match pl {
                Place::Node(n) => {
                    if let Some(net) = model.nodes.get_mut(n) {
                        net.skipped.extend(skipped_lines);
                    }
                }
                Place::Router(r) => {
                    if let Some(rt) = model.routers.get_mut(r) {
                        rt.skipped.extend(skipped_lines);
                        // A table shorter than its printed total by no more than the lines
                        // skipped here was not cut: those lines are the missing paths (each
                        // concerns only what it names).
                        let here = |l: &kubepath_model::net::SkippedLine| l.source.file == path;
                        let skips = rt.skipped.iter().filter(|l| !l.cut && here(l)).count();
                        let shortfall: usize = rt
                            .vrfs
                            .values()
                            .filter(|v| v.bgp_source.as_ref().is_some_and(|s| s.file == path))
                            .map(|v| {
                                let read: usize = v.bgp.iter().map(|r| r.paths.len()).sum();
                                (v.bgp_total_printed.unwrap_or(0) as usize).saturating_sub(read)
                            })
                            .sum();
                        // Only the count checks' cuts (no line of their own: empty text) are
                        // explained so; a file ending mid-line or an FRR table without its
                        // closing count stays cut.
                        if skips > 0 && shortfall <= skips {
                            rt.skipped
                                .retain(|l| !(l.cut && here(l) && l.text.is_empty()));
                        }
                    }
                }
                _ => {}
            }
        }
        if report.skipped.is_some() {
            reports.push(report);
            continue;
        }
        if let (Place::Node(n), Some(before), Some(fmt)) = (&pl, shape, recognised) {
            if matches!(fmt, "iptables-save" | "ip6tables-save") && no_skipped {
                if let Some(net) = model.nodes.get(*n) {
                    if shape_after(net) == before && !shares.contains_key(&group) {
                        shares.insert(
                            group,
                            NfShare::capture(&path, fmt, net, &diags[diag_mark..]),
                        );
                    }
                }
            }
        }
        if let (Place::Dns, None, None) = (&pl, recognised, &report.skipped) {
            // A resolver output of a shape kubepath does not read (`dig +short` without its
            // command, a tool's own format): the answer it holds is unknown.
            left_out.push((rel.clone(), "format not recognised".into()));
        }
        match recognised {
            Some(fmt) => report.format = Some(fmt.to_string()),
            None => diags.push(Diagnostic {
                severity: Severity::Warning,
                file: path.clone(),
                line: 0,
                column: 0,
                message: format!(
                    "format not recognised for a file under {}: not read",
                    rel.split('/').next().unwrap_or("")
                ),
            }),
        }
        reports.push(report);
    }
    for (rel, why) in left_out {
        match place(&rel) {
            // A node whose every file was left out is still a node of the snapshot: what
            // its hops need says which files were not read.
            Place::Node(n) => {
                let net = model.nodes.entry(n.to_string()).or_default();
                net.left_out.push((Arc::from(rel.as_str()), why));
            }
            Place::Cluster => {
                let kinds = cluster_kinds.remove(&rel).flatten();
                model
                    .cluster
                    .left_out
                    .push((Arc::from(rel.as_str()), why, kinds));
            }
            Place::Dns => model.dns.left_out.push((Arc::from(rel.as_str()), why)),
            _ => {}
        }
    }
    for (rel, why) in nft_rejected {
        if let Place::Node(n) = place(&rel) {
            let net = model.nodes.entry(n.to_string()).or_default();
            net.nft_rejected.push((Arc::from(rel.as_str()), why));
        }
    }
    crate::metallb::finish(&mut model, &mut diags);
    crate::dispatch::finish(&mut model, &mut diags);
    // A reader's own diagnostics may quote a token too (an unsupported directive, a schema
    // error): none is longer than this.
    for d in &mut diags {
        if d.message.len() > MAX_MESSAGE {
            d.message = crate::diag::clip_to(&d.message, MAX_MESSAGE);
        }
    }
    // --strict: any error a node's or router's outputs gave (two captures of one node that
    // disagree, a sysctl key with two values, ...) ends the load, not only a line that
    // cannot be read (issue #11, review). Errors about what the cluster's objects say (a
    // MetalLB pool MetalLB itself rejects) are facts about the cluster, read whole.
    if opts.strict {
        if let Some(d) = diags.iter().find(|d| {
            d.severity == Severity::Error
                && matches!(place(&d.file), Place::Node(_) | Place::Router(_))
        }) {
            return Err(ParseError {
                file: d.file.clone(),
                line: d.line,
                column: d.column,
                expected: "a snapshot without errors (--strict)".into(),
                found: d.message.clone(),
            }
            .into());
        }
    }
    Ok(Snapshot {
        root: PathBuf::new(),
        model,
        diagnostics: diags,
        files: reports,
    })
}

/// What an nginx.conf read as `r` contributed, for its file report.
fn nginx_objects(pl: &Place<'_>, r: &Option<&'static str>, objects: &mut Vec<String>) {
    if let (Place::Nginx(pod), Some(_)) = (pl, r) {
        objects.push(match pod {
            Some((ns, p)) => format!("nginx.conf of pod {ns}/{p}"),
            None => "nginx.conf (every controller pod)".into(),
        });
    }
}

/// Reads one file into the model by its place in the layout.
fn read_one(
    pl: &Place<'_>,
    file: &SourceFile,
    model: &mut Model,
    diags: &mut Vec<Diagnostic>,
    objects: &mut Vec<String>,
) -> Result<Option<&'static str>, ParseError> {
    let r = match pl {
        Place::Manifest => {
            model.manifest = crate::manifest::read_manifest(file, diags)?;
            objects.push("manifest".into());
            Some("kubepath-manifest")
        }
        Place::Cluster => crate::k8s::read_cluster_file(file, model, diags, objects)?,
        Place::Node(node) => {
            let r = crate::dispatch::read_node_file(node, file, model, diags)?;
            if r.is_some() {
                objects.push(format!("node {node}"));
            }
            r
        }
        Place::Router(router) => {
            let r = crate::dispatch::read_router_file(router, file, model, diags)?;
            if r.is_some() {
                objects.push(format!("router {router}"));
            }
            r
        }
        Place::Dns => {
            let before = model.dns.records.len();
            let r = crate::dispatch::read_dns_file(file, model, diags)?;
            let mut seen = std::collections::BTreeSet::new();
            for rec in model.dns.records.iter().skip(before) {
                if seen.insert((rec.name.clone(), rec.data.type_name().to_string())) {
                    objects.push(format!("{} {}", rec.data.type_name(), rec.name));
                }
            }
            r
        }
        Place::Nginx(pod) => {
            let r = crate::dispatch::read_nginx_file(*pod, file, model, diags)?;
            nginx_objects(pl, &r, objects);
            r
        }
        Place::Docs | Place::Hidden | Place::Outside | Place::Nested => None,
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn layout_and_skips() {
        let snap = load_files(files(&[
            ("README.md", "# notes"),
            (".tools/gen.py", "print(1)"),
            ("tools/gen.py", "print(1)"),
            (
                "cluster/ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
            ),
            ("cluster/junk.txt", "hello world\n"),
            ("kubepath.yaml", "clients: []\n"),
        ]))
        .unwrap();
        let by: std::collections::BTreeMap<&str, &FileReport> =
            snap.files.iter().map(|f| (f.path.as_str(), f)).collect();
        assert_eq!(
            by["README.md"].skipped.as_deref(),
            Some("documentation, not a command output")
        );
        assert_eq!(by[".tools/gen.py"].skipped.as_deref(), Some("hidden file"));
        assert!(by["tools/gen.py"].skipped.is_some());
        assert_eq!(
            by["cluster/ns.yaml"].format.as_deref(),
            Some("kubernetes-yaml")
        );
        assert_eq!(by["cluster/ns.yaml"].objects, vec!["Namespace a"]);
        assert_eq!(by["cluster/junk.txt"].format, None);
        assert_eq!(
            by["kubepath.yaml"].format.as_deref(),
            Some("kubepath-manifest")
        );
        let warnings: Vec<&str> = snap
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| &*d.file)
            .collect();
        assert_eq!(warnings, vec!["cluster/junk.txt"]);
        assert!(snap.model.cluster.namespaces.contains_key("a"));
    }

    /// Issue #11: an object the API schema rejects cites the offending field's line, and is
    /// fatal under --strict (it was an error at the object's first line, exit 1).
    #[test]
    fn schema_errors_cite_the_field_and_are_fatal_when_strict() {
        let list = files(&[(
            "cluster/x.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: b}\nspec:\n  ports:\n  - name: x\n    port: notanumber\n",
        )]);
        let snap = load_files(list.clone()).unwrap();
        let e = snap
            .diagnostics
            .iter()
            .find(|d| d.severity == Severity::Error)
            .expect("a schema error");
        assert_eq!(e.line, 7, "{e:?}");
        assert!(e.message.contains("notanumber"), "{e:?}");
        match load_files_with(
            list,
            LoadOptions {
                strict: true,
                ..Default::default()
            },
        )
        .unwrap_err()
        {
            IngestError::Parse(p) => {
                assert_eq!((&*p.file, p.line), ("cluster/x.yaml", 7), "{p}");
                assert!(p.found.contains("API schema"), "{p}");
            }
            other => panic!("{other:?}"),
        }
        // Other shapes of serde's message.
        let v: serde_json::Value = serde_json::from_str(
            r#"{"spec": {"ports": [{"port": 80, "protocol": 7}], "x": true}}"#,
        )
        .unwrap();
        assert_eq!(
            crate::k8s::offending_path(&v, "invalid type: integer `7`, expected a string")
                .as_deref(),
            Some("/spec/ports/0/protocol")
        );
        assert_eq!(
            crate::k8s::offending_path(&v, "invalid type: boolean `true`, expected a map")
                .as_deref(),
            Some("/spec/x")
        );
        assert_eq!(crate::k8s::offending_path(&v, "missing field `name`"), None);
    }

    #[test]
    fn malformed_cluster_file_is_fatal_only_when_strict() {
        let list = files(&[
            ("cluster/x.yaml", "a: [1,\n"),
            (
                "cluster/ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
            ),
        ]);
        let e = load_files_with(
            list.clone(),
            LoadOptions {
                strict: true,
                ..Default::default()
            },
        )
        .unwrap_err();
        match e {
            IngestError::Parse(p) => assert_eq!(&*p.file, "cluster/x.yaml"),
            other => panic!("{other:?}"),
        }
        // Lenient: the file is left out with an error naming it; the rest loads.
        let snap = load_files(list).unwrap();
        assert!(snap.model.cluster.namespaces.contains_key("a"));
        let errs: Vec<&Diagnostic> = snap
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(errs.len(), 1);
        assert_eq!(&*errs[0].file, "cluster/x.yaml");
        assert!(errs[0].message.contains("left out"), "{}", errs[0].message);
    }

    /// The manifest is the question: a mistake in it is fatal even when lenient (exit 2),
    /// never a manifest left out and a check that answers another question.
    #[test]
    fn malformed_manifest_is_fatal() {
        let list = files(&[
            (
                "kubepath.yaml",
                "clients:\n  - name: lan\n    prefixs: [10.0.0.0/24]\n",
            ),
            (
                "cluster/ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
            ),
        ]);
        match load_files(list).unwrap_err() {
            IngestError::Parse(p) => assert_eq!((&*p.file, p.line), ("kubepath.yaml", 3)),
            other => panic!("{other:?}"),
        }
    }

    /// Issue #10: one odd line of a router's output costs that line, not the snapshot; what
    /// it may have said is recorded so the trace can say `unknown` where it matters.
    #[test]
    fn an_odd_router_line_is_skipped_and_recorded() {
        let bgp = "R1# show ip bgp\nTotal number of BGP Routes: 2\nStatus codes: s suppressed, d damped, h history, * valid, > best, i internal, S stale, x best-external\nOrigin codes: i - IGP, e - EGP, ? - incomplete\n\n     Network            Next Hop        RD              MED        LocPrf     Weight Path\n*>   10.9.0.0/24        10.1.0.11                       none       100        0      64512 i\n*>   10.8.0.0/24        10.1.0.12 ### garbage ###\n*>   10.7.0.0/24        10.1.0.13                       none       100        0      64512 i\n";
        let list = files(&[("routers/R1/show-ip-bgp.txt", bgp)]);
        assert!(load_files_with(
            list.clone(),
            LoadOptions {
                strict: true,
                ..Default::default()
            }
        )
        .is_err());
        let snap = load_files(list).unwrap();
        let r = &snap.model.routers["R1"];
        let prefixes: Vec<String> = r.vrfs["default"]
            .bgp
            .iter()
            .map(|b| b.prefix.to_string())
            .collect();
        assert_eq!(prefixes.len(), 2, "{prefixes:?}");
        assert!(!prefixes.contains(&"10.8.0.0/24".to_string()));
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].source.line, 8);
        assert!(r.skipped[0].may_concern("10.8.0.5".parse().unwrap()));
        assert!(!r.skipped[0].may_concern("10.9.0.5".parse().unwrap()));
        let e: Vec<&Diagnostic> = snap
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!((e.len(), e[0].line), (1, 8), "{e:?}");
        assert!(e[0].message.contains("line skipped"));
    }

    /// Issue #11 (hostile input): a megabyte token is quoted in a window, never whole, in
    /// every diagnostic (and the skipped line's reason the trace quotes); the location is said
    /// once, by the diagnostic's own file and line.
    #[test]
    fn hostile_huge_token_is_clipped_in_every_diagnostic() {
        let tok = "x".repeat(1_000_000);
        let list = files(&[
            (
                "nodes/n1/ip-route.txt",
                &format!("default via 10.0.0.1 dev eth0\n10.1.0.0/24 via {tok} dev eth0\n"),
            ),
            ("nodes/n1/ip-rule.txt", &format!("0:\tfrom all lookup {tok}\n")),
            (
                "nodes/n1/ip-addr.txt",
                &format!("2: eth0: <UP> mtu 1500\n    inet {tok} scope global eth0\n"),
            ),
            (
                "cluster/x.yaml",
                &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: a}}\nspec: {{ports: [{{port: {tok}}}]}}\n"),
            ),
            ("dns/zone.txt", &format!("$ORIGIN example.\n{tok} IN A 10.0.0.1\nb IN {tok} 1\n")),
            (
                "routers/R1/show-ip-bgp.txt",
                &format!("R1# show ip bgp\n     Network            Next Hop        RD              MED        LocPrf     Weight Path\n*>   {tok}        10.1.0.11                       none       100        0      64512 i\n"),
            ),
        ]);
        let snap = load_files(list).unwrap();
        assert!(!snap.diagnostics.is_empty());
        for d in &snap.diagnostics {
            assert!(
                d.message.len() < 1_000,
                "{}:{}: {} bytes: {}…",
                d.file,
                d.line,
                d.message.len(),
                &d.message[..200.min(d.message.len())]
            );
            assert!(
                !d.message.contains(&format!("{}:", d.file)),
                "location repeated: {}",
                d.message
            );
        }
        let route = snap
            .diagnostics
            .iter()
            .find(|d| &*d.file == "nodes/n1/ip-route.txt")
            .expect("a diagnostic for ip-route.txt");
        assert!(
            route.message.contains("… (1000002 bytes)"),
            "{}",
            route.message
        );
        for sl in &snap.model.nodes["n1"].skipped {
            assert!(sl.why.len() < 1_000, "{} bytes", sl.why.len());
        }
    }

    #[test]
    fn missing_directory() {
        assert!(matches!(
            load_snapshot(Path::new("/nonexistent/kubepath/snapshot")),
            Err(IngestError::Io { .. })
        ));
    }
}

/// Issue #11 (second review): one odd line in a node's routing output costs that line only.
#[cfg(test)]
mod stray_line_tests {
    use super::*;

    fn node(file: &str, text: &str) -> Snapshot {
        load_files(vec![(format!("nodes/n1/{file}"), text.as_bytes().to_vec())]).unwrap()
    }

    fn errors_at(s: &Snapshot) -> Vec<u32> {
        s.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.line)
            .collect()
    }

    /// Issue #14: a node's `nft list ruleset` is read into its nft ruleset (format by content,
    /// a prompt echoing `nft list ruleset` skipped, line numbers the file's); several files
    /// combine; a file nft would reject is an error, left out whole and recorded, and the
    /// node's ruleset stays what the other files gave.
    #[test]
    fn nft_rulesets_are_read_and_a_rejected_one_is_left_out() {
        let good = "node1:~ # nft list ruleset\ntable ip kube-proxy {\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tip daddr 10.96.0.10 tcp dport 53 dnat to 10.80.0.2:53\n\t}\n}\n";
        let more = "table inet firewall {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n";
        let bad = "table ip broken {\n\tchain c {\n\t\tjump nowhere\n\t}\n}\n";
        let files = |l: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
            l.iter()
                .map(|(p, t)| (p.to_string(), t.as_bytes().to_vec()))
                .collect()
        };
        let s = load_files(files(&[
            ("nodes/n1/a-nft.txt", good),
            ("nodes/n1/b-nft.txt", more),
            ("nodes/n1/c-nft.txt", bad),
        ]))
        .unwrap();
        let n = &s.model.nodes["n1"];
        let rs = n.nft.as_ref().expect("the nft ruleset");
        assert_eq!(rs.tables.len(), 2, "a-nft.txt and b-nft.txt combine");
        let c = rs
            .table(kubepath_netfilter::nft::NftFamily::Ip, "kube-proxy")
            .and_then(|t| t.chain("nat-prerouting"))
            .unwrap();
        assert_eq!(&*c.rules[0].source.file, "nodes/n1/a-nft.txt");
        assert_eq!(c.rules[0].source.line, 5, "the file's own line numbers");
        assert_eq!(n.read[&kubepath_model::net::NodeFact::Nft].len(), 2);
        assert_eq!(n.nft_rejected.len(), 1, "{:?}", n.nft_rejected);
        assert_eq!(&*n.nft_rejected[0].0, "nodes/n1/c-nft.txt");
        assert!(s
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error && &*d.file == "nodes/n1/c-nft.txt"));
        let f = |p: &str| s.files.iter().find(|f| f.path == p).unwrap();
        assert_eq!(
            f("nodes/n1/a-nft.txt").format.as_deref(),
            Some("nft-ruleset")
        );
        assert!(f("nodes/n1/c-nft.txt").skipped.is_some());
        // --strict: the rejected file ends the load.
        assert!(load_files_with(
            files(&[("nodes/n1/c-nft.txt", bad)]),
            LoadOptions {
                strict: true,
                ..Default::default()
            }
        )
        .is_err());
    }

    /// A stray line amid `ip route` output was the end of that output: every later route was
    /// dropped with a warning only. Now the line is an error (skipped, what it may concern
    /// unknown) and the later routes are read.
    #[test]
    fn a_stray_line_amid_routes_is_skipped_and_the_rest_is_read() {
        for stray in [
            "x",
            "hello world",
            "default via 10.0.0.1 dev eth0 bogusword",
        ] {
            let s = node(
                "ip-route.txt",
                &format!("10.1.0.0/16 dev eth0 scope link\n{stray}\n10.2.0.0/16 via 10.1.0.1 dev eth0\n10.3.0.0/16 via 10.1.0.1 dev eth0\n"),
            );
            let n = &s.model.nodes["n1"];
            assert_eq!(n.routes.len(), 3, "{stray}: {:?}", n.routes);
            assert_eq!(errors_at(&s), vec![2], "{stray}: {:?}", s.diagnostics);
            assert_eq!(n.skipped.len(), 1);
        }
        // A `default` route that could not be read may concern any destination.
        let s = node(
            "ip-route.txt",
            "10.1.0.0/16 dev eth0 scope link\ndefault via 10.1.0.1 dev eth0 metric\n",
        );
        let sl = &s.model.nodes["n1"].skipped[0];
        assert!(sl.may_concern("192.0.2.1".parse().unwrap()));
    }

    /// A pager's prompt is not output: dropped with a note, nothing unknown.
    #[test]
    fn a_pager_prompt_is_not_a_stray_line() {
        let s = node(
            "ip-route.txt",
            "10.1.0.0/16 dev eth0 scope link\n--More--\n10.2.0.0/16 via 10.1.0.1 dev eth0\n",
        );
        assert_eq!(s.model.nodes["n1"].routes.len(), 2);
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        assert!(s.model.nodes["n1"].skipped.is_empty());
    }

    /// `ip rule` output: a rule line without its colon, and a file cut mid-line (no newline at
    /// the end), are skipped lines of the rules, not the end of them.
    #[test]
    fn a_garbled_or_cut_rule_line_is_a_skipped_line() {
        let s = node(
            "ip-rule.txt",
            "0:\tfrom all lookup local\n32766 from all lookup main\n32767:\tfrom all lookup default\n",
        );
        assert_eq!(s.model.nodes["n1"].rules.len(), 2);
        assert_eq!(errors_at(&s), vec![2]);
        let s = node("ip-rule.txt", "0:\tfrom all lookup local\n3");
        assert_eq!(s.model.nodes["n1"].rules.len(), 1);
        assert_eq!(errors_at(&s), vec![2], "{:?}", s.diagnostics);
        // Trailing text after a complete file (a newline at the end) is not taken as a cut.
        let s = node("ip-rule.txt", "0:\tfrom all lookup local\nlogout\n");
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
    }

    /// Two `ip route` outputs of one node that disagree on a table (an older capture, another
    /// node's copy) are an error and the node's routing is in doubt; outputs that agree (`ip
    /// route` beside `ip route show table all`) are one picture (issue #11, review).
    #[test]
    fn two_route_captures_that_disagree_are_in_doubt() {
        let main = "default via 10.0.0.1 dev eth0\n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.5\n";
        let all = "default via 10.0.0.1 dev eth0\n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.5\nlocal 10.0.0.5 dev eth0 table local proto kernel scope host src 10.0.0.5\n";
        let s = load_files(vec![
            ("nodes/n1/ip-route.txt".into(), main.as_bytes().to_vec()),
            ("nodes/n1/ip-route-all.txt".into(), all.as_bytes().to_vec()),
        ])
        .unwrap();
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        assert!(s.model.nodes["n1"].skipped.is_empty());
        let old = "default via 10.0.0.254 dev eth0 metric 100\n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.5\n";
        let s = load_files(vec![
            ("nodes/n1/ip-route.txt".into(), main.as_bytes().to_vec()),
            ("nodes/n1/ip-route-old.txt".into(), old.as_bytes().to_vec()),
        ])
        .unwrap();
        assert_eq!(errors_at(&s), vec![1], "{:?}", s.diagnostics);
        let n = &s.model.nodes["n1"];
        assert_eq!(n.skipped.len(), 1);
        assert!(n.skipped[0].may_concern("192.0.2.1".parse().unwrap()));
        assert!(
            n.skipped[0].describe().contains("is in doubt"),
            "{}",
            n.skipped[0].describe()
        );
    }

    /// A DNS file over 64 MiB is left out, named, before it is lowered into records (a zone
    /// costs about 18x its size in records; sixth review: a 156 MB zone aborted).
    #[test]
    fn a_dns_file_over_its_limit_is_left_out() {
        let line = "; a comment line of the zone, repeated to pass the limit\n";
        let n = (MAX_DNS_FILE_BYTES as usize / line.len()) + 1;
        let s = load_files(vec![("dns/big.zone".into(), line.repeat(n).into_bytes())]).unwrap();
        assert!(
            s.model
                .dns
                .left_out
                .iter()
                .any(|(f, why)| &**f == "dns/big.zone" && why.contains("too large for a DNS file")),
            "{:?}",
            s.model.dns.left_out
        );
    }

    /// Two whole `ip addr` captures where an interface with addresses is in one only: an
    /// error, and what those addresses decide is in doubt, nothing else; an interface with
    /// IPv6 addresses only is not missing from `ip -4 addr` (issue #11, fifth review D14).
    #[test]
    fn an_interface_in_one_addr_capture_only_is_in_doubt() {
        let lo = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000\n    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever\n";
        let eth0 = "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default qlen 1000\n    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\n       valid_lft forever preferred_lft forever\n";
        let eth1 = "3: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default qlen 1000\n    inet 10.5.0.11/24 brd 10.5.0.255 scope global eth1\n       valid_lft forever preferred_lft forever\n";
        let cali = "7: cali1@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1480 qdisc noqueue state UP group default qlen 1000\n    inet6 fe80::ecee:eeff:feee:eeee/64 scope link\n       valid_lft forever preferred_lft forever\n";
        let load = |a: String, b: String| {
            load_files(vec![
                ("nodes/n1/ip-addr.txt".into(), a.into_bytes()),
                ("nodes/n1/ip-addr-2.txt".into(), b.into_bytes()),
            ])
            .unwrap()
        };
        let s = load(
            format!("{lo}{eth0}{eth1}{cali}"),
            format!("{lo}{eth0}{eth1}"),
        );
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        let s = load(format!("{lo}{eth0}{eth1}"), format!("{lo}{eth0}"));
        assert_eq!(errors_at(&s), vec![1], "{:?}", s.diagnostics);
        let n = &s.model.nodes["n1"];
        assert_eq!(n.skipped.len(), 1);
        let l = &n.skipped[0];
        assert!(l.may_concern("10.5.0.7".parse().unwrap()));
        assert!(!l.may_concern("10.0.0.9".parse().unwrap()));
        assert!(!l.may_concern("192.0.2.1".parse().unwrap()));
        assert!(
            l.describe().contains("is in doubt") && l.describe().contains("interface eth1"),
            "{}",
            l.describe()
        );
        // Two moments that differ by a pod's veth (link-local only): its address only.
        let eth0_6 = format!("{eth0}    inet6 fe80::1/64 scope link\n       valid_lft forever preferred_lft forever\n");
        let s = load(format!("{lo}{eth0_6}{cali}"), format!("{lo}{eth0_6}"));
        assert_eq!(errors_at(&s), vec![1], "{:?}", s.diagnostics);
        assert!(!s.model.nodes["n1"].skipped[0].may_concern("10.0.0.9".parse().unwrap()));
    }

    /// Two captures of one node's iptables, ipsets or nft rules that disagree are an error
    /// and the fact is in doubt; captures that agree (`iptables-save` beside `iptables -t nat
    /// -S`, an `ipset save` with its members in another order, one `nft list ruleset` twice)
    /// are one fact read twice (issue #11, fifth review: the later one used to win, and two
    /// nft captures were added together).
    #[test]
    fn two_netfilter_captures_that_disagree_are_in_doubt() {
        use kubepath_model::net::NodeFact;
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let nat_s = "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n-N KUBE-SERVICES\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport  443 -j ACCEPT\n";
        let files = |extra: (&str, &str)| {
            vec![
                (
                    "nodes/n1/iptables-save.txt".into(),
                    save.as_bytes().to_vec(),
                ),
                (format!("nodes/n1/{}", extra.0), extra.1.as_bytes().to_vec()),
            ]
        };
        let s = load_files(files(("iptables-t-nat-S.txt", nat_s))).unwrap();
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        assert!(s.model.nodes["n1"].doubts.is_empty());
        let older = nat_s.replace("-j ACCEPT", "-j RETURN");
        let s = load_files(files(("iptables-t-nat-S.txt", &older))).unwrap();
        assert_eq!(errors_at(&s), vec![1], "{:?}", s.diagnostics);
        let n = &s.model.nodes["n1"];
        assert_eq!(n.doubts.len(), 1);
        assert_eq!(n.doubts[0].0, NodeFact::Iptables);
        let why = n.lacks("n1", NodeFact::Iptables).unwrap();
        assert!(
            why.contains("nat table")
                && why.contains("iptables-save.txt")
                && why.contains("iptables-t-nat-S.txt"),
            "{why}"
        );
        // Partial captures of the same moment (one chain, a grep) agree, and the whole nat
        // table read first stays; a partial one that gives a common chain another rule does
        // not (fifth review R6).
        let one_chain = "node:~ # iptables -t nat -S KUBE-SERVICES\n-N KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j ACCEPT\n";
        let grep = "node:~ # iptables -t nat -S | grep 10.96\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j ACCEPT\n";
        for part in [one_chain, grep] {
            let s = load_files(files(("nat-part.txt", part))).unwrap();
            assert!(errors_at(&s).is_empty(), "{part}: {:?}", s.diagnostics);
            let n = &s.model.nodes["n1"];
            assert!(n.doubts.is_empty(), "{part}");
            let rs = n.netfilter.as_ref().unwrap();
            assert!(
                rs.rule_texts(kubepath_netfilter::Table::Nat)
                    .iter()
                    .any(|(c, _, _)| &**c == "PREROUTING"),
                "{part}: the whole nat table stays"
            );
        }
        let s = load_files(files((
            "nat-part.txt",
            &one_chain.replace("-j ACCEPT", "-j RETURN"),
        )))
        .unwrap();
        assert_eq!(errors_at(&s), vec![2], "{:?}", s.diagnostics);
        assert!(s.model.nodes["n1"].doubts[0]
            .1
            .contains("chain KUBE-SERVICES of the nat table"));
        // `iptables -S FORWARD` gives that chain whole, its policy too (review 7 X3).
        let fwd = |policy: &str| format!("node:~ # iptables -S FORWARD\n-P FORWARD {policy}\n");
        let s = load_files(files(("fwd.txt", &fwd("ACCEPT")))).unwrap();
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        let s = load_files(files(("fwd.txt", &fwd("DROP")))).unwrap();
        assert_eq!(errors_at(&s), vec![2], "{:?}", s.diagnostics);
        // Read before the whole one (as `fwd.txt` sorts before `iptables-save.txt`).
        let mut rev = files(("fwd.txt", &fwd("DROP")));
        rev.reverse();
        let s = load_files(rev).unwrap();
        assert_eq!(errors_at(&s), vec![1], "{:?}", s.diagnostics);
        // `-S -v` counters (`-c PKTS BYTES`), `-S CHAIN N` (one rule) and a bare `-S` whose
        // table is guessed agree with the whole capture (review 8 Y4-Y6).
        let counted = "node:~ # iptables -t nat -S KUBE-SERVICES -v\n-N KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -c 12 720 -j ACCEPT\n";
        let one_rule = "node:~ # iptables -t nat -S PREROUTING 1\n-A PREROUTING -j KUBE-SERVICES\n";
        let bare = "-N KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j ACCEPT\n";
        for part in [counted, one_rule, bare] {
            for first in [false, true] {
                let mut v = files(("part.txt", part));
                if first {
                    v.reverse();
                }
                let s = load_files(v).unwrap();
                assert!(errors_at(&s).is_empty(), "{part}: {:?}", s.diagnostics);
                assert!(s.model.nodes["n1"].doubts.is_empty(), "{part}");
            }
        }
        // ipsets: members in another order agree; another member does not.
        let a = "create KUBE-X hash:ip family inet hashsize 1024 maxelem 65536\nadd KUBE-X 10.0.0.1\nadd KUBE-X 10.0.0.2\n";
        let b = "create KUBE-X hash:ip family inet hashsize 1024 maxelem 65536\nadd KUBE-X 10.0.0.2\nadd KUBE-X 10.0.0.1\n";
        let c = "create KUBE-X hash:ip family inet hashsize 1024 maxelem 65536\nadd KUBE-X 10.0.0.2\nadd KUBE-X 10.0.0.3\n";
        let sets = |x: &str, y: &str| {
            load_files(vec![
                ("nodes/n1/ipset-save.txt".into(), x.as_bytes().to_vec()),
                ("nodes/n1/ipset-save-2.txt".into(), y.as_bytes().to_vec()),
            ])
            .unwrap()
        };
        let s = sets(a, b);
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        assert!(s.model.nodes["n1"].ipsets.is_some());
        // `ipset save KUBE-Y`: one set of the same moment; added, not a disagreement.
        let ab = format!("{a}create KUBE-Y hash:ip family inet hashsize 1024 maxelem 65536\nadd KUBE-Y 10.0.0.9\n");
        let s = sets(
            &ab,
            "create KUBE-Y hash:ip family inet hashsize 1024 maxelem 65536\nadd KUBE-Y 10.0.0.9\n",
        );
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        let s = sets(
            a,
            "create KUBE-Y hash:ip family inet hashsize 1024 maxelem 65536\nadd KUBE-Y 10.0.0.9\n",
        );
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        let s = sets(a, c);
        assert_eq!(errors_at(&s), vec![1], "{:?}", s.diagnostics);
        let n = &s.model.nodes["n1"];
        assert!(n.ipsets.is_none());
        assert!(n
            .lacks("n1", NodeFact::Ipsets)
            .unwrap()
            .contains("ipset-save-2.txt"));
        // nft: the same ruleset twice is not doubled; another rule is a doubt.
        let nft = "table ip kube-proxy {\n\tchain services {\n\t\tip daddr 10.96.0.1 tcp dport 443 accept\n\t}\n\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}\n}\n";
        let two = |x: &str, y: &str| {
            load_files(vec![
                (
                    "nodes/n1/nft-list-ruleset.txt".into(),
                    x.as_bytes().to_vec(),
                ),
                (
                    "nodes/n1/nft-list-ruleset-2.txt".into(),
                    y.as_bytes().to_vec(),
                ),
            ])
            .unwrap()
        };
        let s = two(nft, nft);
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        assert_eq!(s.model.nodes["n1"].nft.as_ref().unwrap().rule_count(), 2);
        let s = two(
            nft,
            &nft.replace("accept\n\t}\n\tchain pre", "drop\n\t}\n\tchain pre"),
        );
        assert_eq!(errors_at(&s), vec![1], "{:?}", s.diagnostics);
        let n = &s.model.nodes["n1"];
        assert_eq!(n.doubts.len(), 1);
        assert!(
            n.doubts[0].1.contains("`ip kube-proxy`"),
            "{}",
            n.doubts[0].1
        );
    }

    /// A node output cut where its last line still reads (`lookup 1` of `lookup 100`, or
    /// between two routes): the file ends without a newline, the line is read, and it is
    /// recorded as a cut that may concern any lookup (issue #11, review).
    #[test]
    fn an_output_without_its_final_newline_may_have_been_cut() {
        let s = node(
            "ip-rule.txt",
            "0:\tfrom all lookup local\n100:\tfrom 10.0.0.0/8 lookup 1",
        );
        let n = &s.model.nodes["n1"];
        assert_eq!(n.rules.len(), 2, "the line still reads");
        assert_eq!(errors_at(&s), vec![2], "{:?}", s.diagnostics);
        assert_eq!(n.skipped.len(), 1);
        let sl = &n.skipped[0];
        assert!(sl.cut && sl.read, "{sl:?}");
        assert!(sl.may_concern("192.0.2.1".parse().unwrap()));
        assert!(
            sl.describe().contains("may have been cut"),
            "{}",
            sl.describe()
        );
        let s = node(
            "ip-route.txt",
            "default via 10.0.0.1 dev eth0\n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.5",
        );
        assert_eq!(s.model.nodes["n1"].skipped.len(), 1, "{:?}", s.diagnostics);
        // Trailing blank space after the final newline is not a cut; nor is a complete file.
        let s = node("ip-rule.txt", "0:\tfrom all lookup local\n  ");
        assert!(
            s.model.nodes["n1"].skipped.is_empty(),
            "{:?}",
            s.diagnostics
        );
        // JSON closes itself: `ip -j route` without a final newline is whole.
        let s = node(
            "ip-route.json",
            r#"[{"dst":"default","gateway":"10.0.0.1","dev":"eth0","flags":[]}]"#,
        );
        assert!(
            s.model.nodes["n1"].skipped.is_empty(),
            "{:?}",
            s.diagnostics
        );
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        let s = node("ip-rule.txt", "0:\tfrom all lookup local\n");
        assert!(
            s.model.nodes["n1"].skipped.is_empty(),
            "{:?}",
            s.diagnostics
        );
        // Cut so short that no reader recognises it (`0:`, `0:\tfrom all `, `def`): one
        // error, the file left out and recorded on the node (not a warning and the kernel's
        // default rules assumed).
        for (file, text) in [
            ("ip-rule.txt", "0:"),
            ("ip-rule.txt", "0:\tfrom all "),
            ("ip-route.txt", "def"),
        ] {
            let s = node(file, text);
            assert_eq!(errors_at(&s), vec![1], "{text:?}: {:?}", s.diagnostics);
            assert!(
                !s.diagnostics
                    .iter()
                    .any(|d| d.message.contains("the rest of the file is read")
                        || d.message.contains("format not recognised for a file")),
                "{text:?}: {:?}",
                s.diagnostics
            );
            let n = &s.model.nodes["n1"];
            assert!(n.skipped.is_empty());
            assert_eq!(n.left_out.len(), 1, "{text:?}");
            assert!(n.left_out[0].1.contains("may have been cut"));
        }
        // An output of another command, whole: a warning, and recorded as not read.
        let s = node("uname.txt", "Linux n1 6.1.0 #1 SMP x86_64 GNU/Linux\n");
        assert!(errors_at(&s).is_empty(), "{:?}", s.diagnostics);
        assert_eq!(s.model.nodes["n1"].left_out.len(), 1);
        // A line cut where it no longer reads is one skipped line, not two.
        let s = node("ip-rule.txt", "0:\tfrom all lookup local\n3");
        assert_eq!(s.model.nodes["n1"].skipped.len(), 1, "{:?}", s.diagnostics);
        assert!(!s.model.nodes["n1"].skipped[0].read);
    }
}

/// Issue #11: the snapshot directory is untrusted.
#[cfg(all(test, unix))]
mod untrusted_dir_tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn links_out_fifos_docs_and_nested_node_dirs() {
        let t = Tmp(std::env::temp_dir().join(format!("kp-untrusted-{}", std::process::id())));
        let d = &t.0;
        let _ = std::fs::remove_dir_all(d);
        for sub in ["cluster", "nodes/n1/copy", ".tools", "outside"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // A secret outside the snapshot, linked into cluster/: never read.
        let secret = std::env::temp_dir().join(format!("kp-secret-{}", std::process::id()));
        std::fs::write(
            &secret,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: leaked}\n",
        )
        .unwrap();
        symlink(&secret, d.join("cluster/x.yaml")).unwrap();
        // A link to a system directory: not walked.
        symlink("/etc", d.join("cluster/etc")).unwrap();
        // A dangling link where documentation is skipped, and one in cluster/.
        symlink(d.join("nowhere"), d.join("README.md")).unwrap();
        symlink(d.join("nowhere"), d.join("cluster/gone.yaml")).unwrap();
        // FIFOs: one in a hidden directory, one in cluster/ (opening either would block).
        for f in [".tools/pipe", "cluster/pipe.yaml"] {
            let st = std::process::Command::new("mkfifo")
                .arg(d.join(f))
                .status()
                .unwrap();
            assert!(st.success());
        }
        // A copy of another node's outputs nested in n1's directory: not more of n1.
        std::fs::write(
            d.join("nodes/n1/ip-addr.txt"),
            "2: eth0: <BROADCAST,UP,LOWER_UP> mtu 1500 state UP\n    inet 10.1.0.11/24 scope global eth0\n",
        )
        .unwrap();
        std::fs::write(
            d.join("nodes/n1/copy/ip-addr.txt"),
            "2: eth0: <BROADCAST,UP,LOWER_UP> mtu 1500 state UP\n    inet 10.1.0.12/24 scope global eth0\n",
        )
        .unwrap();
        // A link inside the snapshot is fine.
        std::fs::write(
            d.join("outside/ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: inside}\n",
        )
        .unwrap();
        symlink(d.join("outside/ns.yaml"), d.join("cluster/ns.yaml")).unwrap();

        let snap = load_snapshot(d).expect("loads");
        let _ = std::fs::remove_file(&secret);
        assert!(!snap.model.cluster.namespaces.contains_key("leaked"));
        assert!(snap.model.cluster.namespaces.contains_key("inside"));
        let addrs: Vec<String> = snap.model.nodes["n1"]
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.address.to_string()))
            .collect();
        assert_eq!(addrs, ["10.1.0.11/24"]);
        let why = |p: &str| {
            snap.files
                .iter()
                .find(|f| f.path == p)
                .and_then(|f| f.skipped.clone())
                .unwrap_or_default()
        };
        assert!(why("cluster/x.yaml").contains("outside the snapshot"));
        assert!(why("cluster/etc").contains("outside the snapshot"));
        assert!(why("cluster/pipe.yaml").contains("not a regular file"));
        assert!(why("cluster/gone.yaml").contains("dangling"));
        assert!(why("nodes/n1/copy/ip-addr.txt").contains("nested"));
        // No diagnostic quotes the secret.
        assert!(snap
            .diagnostics
            .iter()
            .all(|d| !d.message.contains("leaked")));
    }

    fn tmp(tag: &str) -> Tmp {
        let t = Tmp(std::env::temp_dir().join(format!("kp-{tag}-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&t.0);
        t
    }

    /// A file with a NUL byte in its first 64 KiB is left out as binary without being read
    /// further (a sparse file under the size limit used to be read whole and tried by every
    /// reader: seconds each; fifth review D12); a NUL past the first 64 KiB still reads as
    /// text, and UTF-16 text with a byte-order mark (PowerShell's `>`) is decoded.
    #[test]
    fn binary_files_are_left_out_and_utf16_is_decoded() {
        let t = tmp("binary");
        let d = &t.0;
        std::fs::create_dir_all(d.join("nodes/n1")).unwrap();
        std::fs::create_dir_all(d.join("dns")).unwrap();
        let addr = "2: eth0: <BROADCAST,UP,LOWER_UP> mtu 1500 state UP\n    inet 10.1.0.11/24 scope global eth0\n";
        std::fs::write(d.join("nodes/n1/ip-addr.txt"), addr).unwrap();
        let mut bin = vec![0u8; 100_000];
        bin.extend_from_slice(addr.as_bytes());
        std::fs::write(d.join("nodes/n1/core"), &bin).unwrap();
        let nx = "Server:\t\t10.96.0.10\r\nAddress:\t10.96.0.10#53\r\n\r\nName:\tweb.example.com\r\nAddress: 10.99.0.10\r\n";
        let mut u16le = vec![0xff, 0xfe];
        for u in nx.encode_utf16() {
            u16le.extend_from_slice(&u.to_le_bytes());
        }
        std::fs::write(d.join("dns/nslookup.txt"), &u16le).unwrap();
        let snap = load_snapshot(d).expect("loads");
        let f = snap
            .files
            .iter()
            .find(|f| f.path == "nodes/n1/core")
            .unwrap();
        assert!(
            f.skipped
                .as_deref()
                .unwrap_or("")
                .contains("binary (a NUL byte at offset 0)"),
            "{:?}",
            f.skipped
        );
        assert!(snap.model.nodes["n1"]
            .left_out
            .iter()
            .any(|(p, why)| &**p == "nodes/n1/core" && why.contains("binary")));
        let r = snap.model.dns.resolve("web.example.com");
        assert_eq!(r.addresses.len(), 1, "{:?}", snap.diagnostics);
    }

    /// Issue #11: a directory link inside the snapshot is not followed and is reported; the
    /// real directory it points at is still read under its own name (`cluster/aaa -> ../nodes`
    /// sorted before `nodes/` hid every node; `nodes/zz-alias -> n1` was silently ignored).
    #[test]
    fn directory_links_are_reported_and_never_hide_the_real_directory() {
        let t = tmp("dirlinks");
        let d = &t.0;
        for sub in ["cluster", "nodes/n1"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(
            d.join("nodes/n1/ip-addr.txt"),
            "2: eth0: <BROADCAST,UP,LOWER_UP> mtu 1500 state UP\n    inet 10.1.0.11/24 scope global eth0\n",
        )
        .unwrap();
        symlink("../nodes", d.join("cluster/aaa")).unwrap();
        symlink("n1", d.join("nodes/zz-alias")).unwrap();
        let snap = load_snapshot(d).expect("loads");
        assert_eq!(snap.model.nodes.len(), 1, "{:?}", snap.model.nodes.keys());
        assert!(snap.model.nodes.contains_key("n1"));
        for link in ["cluster/aaa", "nodes/zz-alias"] {
            let f = snap.files.iter().find(|f| f.path == link).expect(link);
            let why = f.skipped.clone().unwrap_or_default();
            assert!(
                why.contains("symbolic link to a directory"),
                "{link}: {why}"
            );
            assert!(
                snap.diagnostics
                    .iter()
                    .any(|g| &*g.file == link && g.severity == Severity::Warning),
                "{link}: {:?}",
                snap.diagnostics
            );
        }
        assert!(!snap
            .files
            .iter()
            .any(|f| f.path.starts_with("cluster/aaa/")));
    }

    /// Issue #11 (hostile input): a name that is not UTF-8 must not make the loader open the
    /// sibling whose real name is its lossy form (a link out of the snapshot, a FIFO).
    #[test]
    fn hostile_non_utf8_name_never_opens_its_lossy_sibling() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let t = tmp("nonutf8");
        let d = &t.0;
        std::fs::create_dir_all(d.join("cluster")).unwrap();
        let secret = d
            .join("../")
            .join(format!("kp-nonutf8-secret-{}", std::process::id()));
        std::fs::write(
            &secret,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: leaked}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("cluster").join(OsStr::from_bytes(b"\xff.yaml")),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: bytes}\n",
        )
        .unwrap();
        symlink(&secret, d.join("cluster/\u{fffd}.yaml")).unwrap();
        // And a FIFO under the lossy name of another non-UTF-8 file: no hang.
        std::fs::write(
            d.join("cluster").join(OsStr::from_bytes(b"\xfe.yml")),
            "a: 1\n",
        )
        .unwrap();
        let st = std::process::Command::new("mkfifo")
            .arg(d.join("cluster/\u{fffd}.yml"))
            .status()
            .unwrap();
        assert!(st.success());
        let snap = load_snapshot(d).expect("loads");
        let _ = std::fs::remove_file(&secret);
        assert!(!snap.model.cluster.namespaces.contains_key("leaked"));
        assert!(snap
            .diagnostics
            .iter()
            .all(|d| !d.message.contains("leaked")));
        let skipped: Vec<(&str, &str)> = snap
            .files
            .iter()
            .filter_map(|f| Some((f.path.as_str(), f.skipped.as_deref()?)))
            .collect();
        assert!(
            skipped
                .iter()
                .filter(|(_, why)| why.contains("not valid UTF-8"))
                .count()
                == 2,
            "{skipped:?}"
        );
        assert!(skipped
            .iter()
            .any(|(_, why)| why.contains("outside the snapshot")));
        assert!(skipped
            .iter()
            .any(|(_, why)| why.contains("not a regular file")));
    }

    /// [`read_checked`] without candidates: the file's bytes.
    fn read_plain(path: &Path, ident: Ident) -> Result<Vec<u8>, String> {
        read_checked(path, Some(ident), || None, |_| Vec::new(), &mut Vec::new()).map(|r| match r {
            Read::New(b) => b,
            Read::Same(..) => unreachable!("no candidates"),
        })
    }

    /// A file read against candidates of its length is the same as one of them exactly when
    /// its bytes are, whichever chunk differs (first, middle, last byte, a shorter or longer
    /// file than the metadata said); otherwise its own bytes are read in full.
    #[test]
    fn read_compares_with_candidates_chunk_by_chunk() {
        let t = tmp("dedup");
        let d = &t.0;
        std::fs::create_dir_all(d).unwrap();
        let n = COMPARE_CHUNK * 2 + 123;
        // Text bytes (33..123): a NUL would make the file binary, left out unread.
        let base: Vec<u8> = (0..n).map(|i| b'!' + (i * 7 % 90) as u8).collect();
        let mut variants: Vec<Vec<u8>> = vec![base.clone()];
        for at in [
            0,
            1,
            COMPARE_CHUNK - 1,
            COMPARE_CHUNK,
            COMPARE_CHUNK + 5,
            n - 1,
        ] {
            let mut v = base.clone();
            v[at] = if v[at] == b'#' { b'$' } else { b'#' };
            variants.push(v);
        }
        variants.push(base[..n - 1].to_vec());
        variants.push(base[..COMPARE_CHUNK].to_vec());
        let mut longer = base.clone();
        longer.push(b'x');
        variants.push(longer);
        variants.push(Vec::new());
        let other = Arc::new(base.iter().map(|b| b ^ 0x20).collect::<Vec<u8>>());
        let same = Arc::new(base.clone());
        let mut scratch = Vec::new();
        for (k, v) in variants.iter().enumerate() {
            let p = d.join(format!("f{k}"));
            std::fs::write(&p, v).unwrap();
            let ident = Ident::of(&std::fs::metadata(&p).unwrap());
            // Candidates as the metadata length would give them: both of the base's length.
            let cands = vec![(7, other.clone()), (3, same.clone())];
            let r = read_checked(&p, Some(ident), || None, |_| cands, &mut scratch).unwrap();
            match r {
                Read::Same(first, b) => {
                    assert_eq!(k, 0, "variant {k} taken for the same");
                    assert_eq!(first, 3);
                    assert_eq!(*b, base);
                }
                Read::New(b) => {
                    assert_ne!(k, 0);
                    assert_eq!(&b, v, "variant {k}: its own bytes");
                }
            }
            assert_eq!(read_plain(&p, ident).unwrap(), *v);
        }
    }

    /// A hard link of a file read before is not read again when it has the length that read
    /// gave; otherwise it is read (and compared) as any file.
    #[test]
    fn read_reuses_another_path_of_the_same_file() {
        let t = tmp("hardlink");
        let d = &t.0;
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("a"), "abc").unwrap();
        std::fs::hard_link(d.join("a"), d.join("b")).unwrap();
        let ident = Ident::of(&std::fs::metadata(d.join("b")).unwrap());
        let earlier = Arc::new(b"abc".to_vec());
        let r = read_checked(
            &d.join("b"),
            Some(ident),
            || Some((4, earlier.clone())),
            |_| Vec::new(),
            &mut Vec::new(),
        )
        .unwrap();
        assert!(matches!(r, Read::Same(4, ref b) if Arc::ptr_eq(b, &earlier)));
        // Another length than the file has now: read.
        let stale = Arc::new(b"ab".to_vec());
        let r = read_checked(
            &d.join("b"),
            Some(ident),
            || Some((4, stale.clone())),
            |_| Vec::new(),
            &mut Vec::new(),
        )
        .unwrap();
        assert!(matches!(r, Read::New(ref b) if b == b"abc"));
    }

    /// Issue #11 (hostile input): the file opened is the one examined; a FIFO or another file
    /// swapped in between is refused without blocking.
    #[test]
    fn hostile_swap_after_the_walk_is_refused() {
        let t = tmp("swap");
        let d = &t.0;
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("a"), "a").unwrap();
        std::fs::write(d.join("b"), "b").unwrap();
        let ident = Ident::of(&std::fs::metadata(d.join("a")).unwrap());
        assert_eq!(read_plain(&d.join("a"), ident).unwrap(), b"a");
        assert!(read_plain(&d.join("b"), ident)
            .unwrap_err()
            .contains("changed"));
        std::fs::remove_file(d.join("a")).unwrap();
        let st = std::process::Command::new("mkfifo")
            .arg(d.join("a"))
            .status()
            .unwrap();
        assert!(st.success());
        assert!(read_plain(&d.join("a"), ident)
            .unwrap_err()
            .contains("not a regular file"));
    }

    /// Issue #11 (review): 2,000 nested directories took minutes (time quadratic in the
    /// depth); directories below 16 levels are reported and not walked.
    #[test]
    fn hostile_deep_nesting_is_not_walked() {
        let t = tmp("deep");
        let d = &t.0;
        std::fs::create_dir_all(d.join("cluster")).unwrap();
        std::fs::write(
            d.join("cluster/ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        )
        .unwrap();
        let mut p = d.join("cluster");
        for _ in 0..200 {
            p.push("a");
        }
        std::fs::create_dir_all(&p).unwrap();
        let snap = load_snapshot(d).expect("loads");
        assert!(snap.model.cluster.namespaces.contains_key("a"));
        assert!(snap.files.iter().any(|f| f
            .skipped
            .as_deref()
            .is_some_and(|w| w.contains("directory levels"))));
    }

    /// Issue #11 (hostile input): a file larger than the cap (here sparse) is left out with
    /// its size and the limit, before anything is read; a link to a device is never read; the
    /// rest loads.
    #[test]
    fn hostile_huge_file_and_device_link_are_not_read() {
        let t = tmp("huge");
        let d = &t.0;
        std::fs::create_dir_all(d.join("nodes/n1")).unwrap();
        std::fs::create_dir_all(d.join("cluster")).unwrap();
        let f = std::fs::File::create(d.join("nodes/n1/iptables-save.txt")).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        symlink("/dev/zero", d.join("nodes/n1/ip-route.txt")).unwrap();
        std::fs::write(
            d.join("nodes/n1/ip-addr.txt"),
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n    inet 127.0.0.1/8 scope host lo\n",
        )
        .unwrap();
        std::fs::write(
            d.join("cluster/ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
        )
        .unwrap();
        let snap = load_snapshot(d).expect("loads");
        assert!(snap.model.cluster.namespaces.contains_key("a"));
        let why = |p: &str| {
            snap.files
                .iter()
                .find(|f| f.path == p)
                .and_then(|f| f.skipped.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            why("nodes/n1/iptables-save.txt"),
            format!(
                "too large ({} bytes, the limit is {MAX_FILE_BYTES} bytes = 512 MiB): not read",
                MAX_FILE_BYTES + 1
            )
        );
        assert!(why("nodes/n1/ip-route.txt").contains("not followed"));
        assert!(snap
            .diagnostics
            .iter()
            .any(|d| &*d.file == "nodes/n1/iptables-save.txt" && d.message.contains("too large")));
        // The node remembers what was left out, so a hop that needs it can name the file.
        let left: Vec<&str> = snap.model.nodes["n1"]
            .left_out
            .iter()
            .map(|(f, _)| &**f)
            .collect();
        assert_eq!(
            left,
            ["nodes/n1/ip-route.txt", "nodes/n1/iptables-save.txt"]
        );
        // --strict: a file of the layout that was not read ends the load (review: exit 1).
        let e = load_snapshot_with(
            d,
            LoadOptions {
                strict: true,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("nodes/n1/i") && e.to_string().contains("--strict"),
            "{e}"
        );
    }

    /// --strict refuses a node's outputs that contradict each other (two `ip addr` or `ip
    /// route` captures that disagree), which the default mode reports as errors and reads
    /// as unknown (issue #11, review: they exited 1 under --strict).
    #[test]
    fn strict_refuses_captures_that_disagree() {
        let addr = |a: &str| {
            format!(
                "1: eth0: <BROADCAST,UP> mtu 1500 state UP\n    inet {a}/24 scope global eth0\n"
            )
            .into_bytes()
        };
        let route = |via: &str| format!("default via {via} dev eth0\n").into_bytes();
        for (what, files) in [
            (
                "ip addr",
                vec![
                    ("nodes/n1/ip-addr.txt".to_string(), addr("10.0.0.1")),
                    ("nodes/n1/ip-addr-2.txt".to_string(), addr("10.0.0.2")),
                ],
            ),
            (
                "ip route",
                vec![
                    ("nodes/n1/ip-route.txt".to_string(), route("10.0.0.254")),
                    ("nodes/n1/ip-route-2.txt".to_string(), route("10.0.0.253")),
                ],
            ),
        ] {
            let snap = load_files(files.clone()).expect("loads leniently");
            assert!(
                snap.diagnostics
                    .iter()
                    .any(|d| d.severity == Severity::Error),
                "{what}: {:?}",
                snap.diagnostics
            );
            let e = load_files_with(
                files,
                LoadOptions {
                    strict: true,
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert!(e.to_string().contains("--strict"), "{what}: {e}");
        }
    }
}
