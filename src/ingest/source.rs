//! Input discovery and record reading: files or directories (each directory
//! walked once and each file read once, by identity: symlink loops end,
//! links to a file read already are skipped, the output directory is never
//! read), JSONL or JSON (an array, one object, or concatenated objects),
//! plain, gzip or zstd (detected by magic bytes), a leading UTF-8 byte order
//! mark skipped. Streams with bounded memory: a record longer than the limit
//! is skipped over, never buffered whole.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::util::usage;

/// One input file.
#[derive(Clone, Debug)]
pub struct InputFile {
    pub path: PathBuf,
    /// The path as shown in reports and `source_file`.
    pub display: String,
    pub size: u64,
}

const LOG_EXTS: &[&str] = &["jsonl", "ndjson", "json"];

fn strip_compression(name: &str) -> &str {
    name.strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .or_else(|| name.strip_suffix(".zstd"))
        .unwrap_or(name)
}

fn is_log_name(name: &str) -> bool {
    let base = strip_compression(name);
    // Sidecar label files written by `slmforge synth` are not logs.
    if base.ends_with(".labels.jsonl") {
        return false;
    }
    base.rsplit_once('.')
        .is_some_and(|(_, ext)| LOG_EXTS.contains(&ext))
}

/// An input path that was not read, and why (`ingest.json`'s
/// `skipped_inputs`; the path redacted like every other path).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SkippedInput {
    pub path: String,
    /// `output_directory` (this run's `--out` inside an input directory),
    /// `symlink_cycle` (a directory inside itself), `directory_already_read`
    /// and `file_already_read` (a second way to the same directory or file:
    /// symlinks, hard links, an input given twice), `unreadable` (a
    /// dangling link or an entry that cannot be stat'ed).
    pub reason: String,
}

/// The files to read, each once, and what was skipped.
pub struct Discovered {
    pub files: Vec<InputFile>,
    pub skipped: Vec<SkippedInput>,
}

/// Identity of a file or directory: (device, inode) on Unix, so that
/// symlinks, hard links and bind mounts of one file are one file; the
/// canonical path elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(NodeKey);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum NodeKey {
    #[cfg_attr(not(unix), allow(dead_code))]
    Inode(u64, u64),
    #[cfg_attr(unix, allow(dead_code))]
    Path(PathBuf),
}

impl NodeId {
    /// The identity of `path`, whose (followed) metadata is `meta`.
    #[cfg(unix)]
    pub fn of(_path: &Path, meta: &std::fs::Metadata) -> NodeId {
        use std::os::unix::fs::MetadataExt;
        NodeId(NodeKey::Inode(meta.dev(), meta.ino()))
    }

    /// The identity of `path`, whose (followed) metadata is `meta`.
    #[cfg(not(unix))]
    pub fn of(path: &Path, _meta: &std::fs::Metadata) -> NodeId {
        NodeId(NodeKey::Path(
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        ))
    }
}

/// Expands the INPUT arguments into files: a file is taken as given; a
/// directory is walked recursively (sorted, hidden entries skipped) for
/// `.jsonl`/`.ndjson`/`.json` files, optionally `.gz`/`.zst`. Symlinks are
/// followed, but every directory is walked once and every file read once
/// (by identity, [`NodeId`]): a symlink loop ends, a second link to a file
/// is skipped. The output directory `out` is never walked. Each path is
/// shown through `name` (path redaction). A missing or unreadable path, an
/// input directory without logs, or `out` itself as an input is a usage
/// error (exit 2).
pub fn discover(
    inputs: &[PathBuf],
    out: Option<&NodeId>,
    name: &mut dyn FnMut(&Path) -> String,
) -> anyhow::Result<Discovered> {
    if inputs.is_empty() {
        return Err(usage("no input given: pass log files or directories"));
    }
    let mut w = Walker {
        out: out.cloned(),
        dirs: HashSet::new(),
        files: HashSet::new(),
        stack: Vec::new(),
        found: Discovered {
            files: Vec::new(),
            skipped: Vec::new(),
        },
        name,
    };
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| {
            usage(format!(
                "cannot read input {}: {}",
                (w.name)(input),
                io_reason(&e)
            ))
        })?;
        let id = NodeId::of(input, &meta);
        if meta.is_dir() {
            if w.out.as_ref() == Some(&id) {
                return Err(usage(format!(
                    "input directory {} is the output directory: choose another --out",
                    (w.name)(input)
                )));
            }
            let seen = w.seen();
            w.dir(input, id)?;
            if w.seen() == seen {
                return Err(usage(format!(
                    "input directory {} holds no .jsonl/.ndjson/.json files (optionally .gz/.zst)",
                    (w.name)(input)
                )));
            }
        } else {
            File::open(input).map_err(|e| {
                usage(format!(
                    "cannot read input {}: {}",
                    (w.name)(input),
                    io_reason(&e)
                ))
            })?;
            w.file(input.clone(), id, meta.len());
        }
    }
    Ok(w.found)
}

/// Discovery state: identities already taken, the directories being
/// walked (to tell a cycle from a second path), what was found.
struct Walker<'a> {
    out: Option<NodeId>,
    dirs: HashSet<NodeId>,
    files: HashSet<NodeId>,
    stack: Vec<NodeId>,
    found: Discovered,
    name: &'a mut dyn FnMut(&Path) -> String,
}

impl Walker<'_> {
    /// Files and skips so far (a directory that adds neither holds no logs).
    fn seen(&self) -> usize {
        self.found.files.len() + self.found.skipped.len()
    }

    fn skip(&mut self, path: &Path, reason: &str) {
        let path = (self.name)(path);
        self.found.skipped.push(SkippedInput {
            path,
            reason: reason.to_string(),
        });
    }

    fn file(&mut self, path: PathBuf, id: NodeId, size: u64) {
        if !self.files.insert(id) {
            self.skip(&path, "file_already_read");
            return;
        }
        self.found.files.push(InputFile {
            display: (self.name)(&path),
            path,
            size,
        });
    }

    fn dir(&mut self, dir: &Path, id: NodeId) -> anyhow::Result<()> {
        if self.stack.contains(&id) {
            self.skip(dir, "symlink_cycle");
            return Ok(());
        }
        if !self.dirs.insert(id.clone()) {
            self.skip(dir, "directory_already_read");
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| {
                usage(format!(
                    "cannot read input directory {}: {}",
                    (self.name)(dir),
                    io_reason(&e)
                ))
            })?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        self.stack.push(id);
        for e in entries {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                if is_log_name(&name) {
                    self.skip(&path, "unreadable");
                }
                continue;
            };
            let id = NodeId::of(&path, &meta);
            if meta.is_dir() {
                if self.out.as_ref() == Some(&id) {
                    self.skip(&path, "output_directory");
                } else {
                    self.dir(&path, id)?;
                }
            } else if is_log_name(&name) {
                self.file(path, id, meta.len());
            }
        }
        self.stack.pop();
        Ok(())
    }
}

/// An io::Error kind as words, without the OS message's path echo.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Counts bytes read from the underlying (possibly compressed) file, for
/// the progress bar.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens a file, transparently decompressing gzip (multi-member) and zstd.
pub fn open_decoded(
    path: &Path,
    counter: Arc<AtomicU64>,
) -> std::io::Result<Box<dyn BufRead + Send>> {
    let f = File::open(path)?;
    let mut raw = BufReader::with_capacity(1 << 16, Counting { inner: f, counter });
    let magic = raw
        .fill_buf()?
        .get(..4)
        .map(|m| m.to_vec())
        .unwrap_or_default();
    let cap = 1 << 18;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            cap,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(BufReader::with_capacity(
            cap,
            zstd::stream::read::Decoder::with_buffer(raw)?,
        ))
    } else {
        Box::new(BufReader::with_capacity(cap, raw))
    })
}

/// One record's bytes, or the fact that it was too large to keep.
pub enum Body {
    Bytes(Vec<u8>),
    TooLarge {
        len: u64,
    },
    /// The file stopped being readable here (corrupt compression, I/O error).
    Unreadable {
        detail: String,
    },
}

/// A record read from a file: 1-based line of its first byte, index of the
/// element inside a JSON array (0 otherwise).
pub struct RawRecord {
    pub file: usize,
    pub line: u64,
    pub index: u32,
    pub body: Body,
}

/// How a file's records are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Lines,
    Json,
}

fn layout_for(path: &Path, first_byte: Option<u8>) -> Layout {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let base = strip_compression(&name);
    if base.ends_with(".jsonl") || base.ends_with(".ndjson") {
        return Layout::Lines;
    }
    if base.ends_with(".json") {
        return Layout::Json;
    }
    if first_byte == Some(b'[') {
        Layout::Json
    } else {
        Layout::Lines
    }
}

/// Reads the records of one file, calling `emit` for each.
pub fn read_records(
    file_idx: usize,
    path: &Path,
    max_bytes: usize,
    counter: Arc<AtomicU64>,
    emit: &mut dyn FnMut(RawRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut r = strip_bom(open_decoded(path, counter)?)?;
    // Peek the first non-whitespace byte to decide the layout.
    let first = loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break None;
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(p) => break Some(buf[p]),
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    };
    match layout_for(path, first) {
        Layout::Lines => read_lines(file_idx, &mut r, max_bytes, emit),
        Layout::Json => read_json_values(file_idx, &mut r, max_bytes, emit),
    }
}

/// The UTF-8 byte order mark some Windows tools write at the start of a file.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Skips a UTF-8 byte order mark at the start of the (decoded) stream, so
/// that the first record parses. Anything else is left as it is.
fn strip_bom(mut r: Box<dyn BufRead + Send>) -> std::io::Result<Box<dyn BufRead + Send>> {
    let buf = r.fill_buf()?;
    if buf.len() >= BOM.len() || buf.is_empty() || !BOM.starts_with(buf) {
        if buf.starts_with(BOM) {
            r.consume(BOM.len());
        }
        return Ok(r);
    }
    // The first read returned a strict prefix of a BOM: gather up to three
    // bytes, and put them back in front unless they are the whole mark.
    let mut head = Vec::with_capacity(BOM.len());
    while head.len() < BOM.len() {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(BOM.len() - head.len());
        head.extend_from_slice(&buf[..n]);
        r.consume(n);
    }
    if head == BOM {
        return Ok(r);
    }
    Ok(Box::new(std::io::Cursor::new(head).chain(r)))
}

/// JSONL: one record per non-blank line. Lines over `max_bytes` are skipped
/// to their end and reported as too large.
fn read_lines(
    file: usize,
    r: &mut dyn BufRead,
    max_bytes: usize,
    emit: &mut dyn FnMut(RawRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut line_no = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut len: u64 = 0;
    let mut too_large = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            if len > 0 {
                line_no += 1;
                finish_line(file, line_no, &mut buf, len, too_large, emit)?;
            }
            return Ok(());
        }
        match memchr::memchr(b'\n', chunk) {
            Some(pos) => {
                if !too_large {
                    if buf.len() + pos > max_bytes {
                        too_large = true;
                        buf = Vec::new();
                    } else {
                        buf.extend_from_slice(&chunk[..pos]);
                    }
                }
                len += pos as u64;
                r.consume(pos + 1);
                line_no += 1;
                finish_line(file, line_no, &mut buf, len, too_large, emit)?;
                len = 0;
                too_large = false;
            }
            None => {
                let n = chunk.len();
                if !too_large {
                    if buf.len() + n > max_bytes {
                        too_large = true;
                        buf = Vec::new();
                    } else {
                        buf.extend_from_slice(chunk);
                    }
                }
                len += n as u64;
                r.consume(n);
            }
        }
    }
}

fn finish_line(
    file: usize,
    line: u64,
    buf: &mut Vec<u8>,
    len: u64,
    too_large: bool,
    emit: &mut dyn FnMut(RawRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if too_large {
        return emit(RawRecord {
            file,
            line,
            index: 0,
            body: Body::TooLarge { len },
        });
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        buf.clear();
        return Ok(());
    }
    let bytes = std::mem::replace(buf, Vec::with_capacity(buf.capacity().min(1 << 16)));
    emit(RawRecord {
        file,
        line,
        index: 0,
        body: Body::Bytes(bytes),
    })
}

/// JSON files: the elements of a top-level array, or each top-level value
/// when the file holds one object or several concatenated ones (pretty
/// printed or not). A byte scanner finds value boundaries without parsing,
/// so an array of any size streams.
fn read_json_values(
    file: usize,
    r: &mut dyn BufRead,
    max_bytes: usize,
    emit: &mut dyn FnMut(RawRecord) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut split = ValueSplitter::new(file, max_bytes);
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        split.feed(chunk, emit)?;
        r.consume(n);
    }
    split.finish(emit)
}

/// How an element ends at the byte just scanned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// The byte is the element's last (`}`, `]`, a closing quote).
    After,
    /// The byte follows the element (`,`, whitespace, the array's `]`).
    Before,
}

/// Splits a stream of bytes into top-level JSON values: the elements of one
/// top-level array, or concatenated values. Tracks strings and nesting only
/// (no parsing); an element longer than `max_bytes` is skipped over and
/// reported as too large, never buffered whole.
struct ValueSplitter {
    file: usize,
    max_bytes: usize,
    line: u64,
    depth: usize,
    in_str: bool,
    escape: bool,
    /// Whether the input is one array; `None` until its first byte.
    array_mode: Option<bool>,
    /// Index of the next element.
    index: u32,
    /// The current element: its bytes, length, first line.
    cur: Vec<u8>,
    cur_len: u64,
    cur_line: u64,
    in_elem: bool,
    too_large: bool,
}

impl ValueSplitter {
    fn new(file: usize, max_bytes: usize) -> Self {
        ValueSplitter {
            file,
            max_bytes,
            line: 1,
            depth: 0,
            in_str: false,
            escape: false,
            array_mode: None,
            index: 0,
            cur: Vec::new(),
            cur_len: 0,
            cur_line: 0,
            in_elem: false,
            too_large: false,
        }
    }

    /// Nesting depth of the elements themselves.
    fn top(&self) -> usize {
        if self.array_mode == Some(true) {
            1
        } else {
            0
        }
    }

    /// Scans one chunk, emitting every element that ends in it.
    fn feed(
        &mut self,
        chunk: &[u8],
        emit: &mut dyn FnMut(RawRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let n = chunk.len();
        let mut start_keep: Option<usize> = if self.in_elem { Some(0) } else { None };
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' {
                self.line += 1;
            }
            if !self.in_elem {
                if self.between_elements(b) {
                    continue;
                }
                self.in_elem = true;
                self.cur_line = self.line;
                self.cur_len = 0;
                self.too_large = false;
                start_keep = Some(i);
            }
            if let Some(end) = self.scan(b) {
                let e = if end == End::After { i + 1 } else { i };
                self.keep(&chunk[start_keep.unwrap_or(0)..e]);
                self.flush(emit)?;
                self.in_elem = false;
                start_keep = None;
                if end == End::Before && b == b']' && self.array_mode == Some(true) {
                    self.depth = 0;
                }
            }
        }
        if self.in_elem {
            self.keep(&chunk[start_keep.unwrap_or(0)..n]);
        }
        Ok(())
    }

    /// Outside an element: whether `b` is whitespace, a separator or the
    /// enclosing array's bracket (skipped), rather than an element's start.
    fn between_elements(&mut self, b: u8) -> bool {
        if self.array_mode.is_none() {
            if b.is_ascii_whitespace() {
                return true;
            }
            self.array_mode = Some(b == b'[');
            if b == b'[' {
                self.depth = 1;
                return true;
            }
        }
        let top = self.top();
        if b.is_ascii_whitespace() || (self.depth == top && b == b',') {
            return true;
        }
        if self.array_mode == Some(true) && self.depth == 1 && b == b']' {
            self.depth = 0;
            return true;
        }
        false
    }

    /// Inside an element: strings and nesting; where the element ends.
    fn scan(&mut self, b: u8) -> Option<End> {
        let top = self.top();
        if self.in_str {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_str = false;
                if self.depth == top {
                    return Some(End::After); // a bare string element
                }
            }
            return None;
        }
        match b {
            b'"' => self.in_str = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                if self.depth == top {
                    // closing bracket of the enclosing array ends a scalar element
                    return Some(End::Before);
                }
                self.depth -= 1;
                if self.depth == top {
                    return Some(End::After);
                }
            }
            b',' if self.depth == top => return Some(End::Before),
            c if self.depth == top && c.is_ascii_whitespace() => return Some(End::Before),
            _ => {}
        }
        None
    }

    /// Appends bytes of the current element, unless it has outgrown the
    /// limit (then only its length is counted).
    fn keep(&mut self, bytes: &[u8]) {
        if !self.too_large {
            if self.cur.len() + bytes.len() > self.max_bytes {
                self.too_large = true;
                self.cur.clear();
            } else {
                self.cur.extend_from_slice(bytes);
            }
        }
        self.cur_len += bytes.len() as u64;
    }

    fn flush(
        &mut self,
        emit: &mut dyn FnMut(RawRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let body = if self.too_large {
            Body::TooLarge { len: self.cur_len }
        } else {
            Body::Bytes(std::mem::take(&mut self.cur))
        };
        self.cur.clear();
        let rec = RawRecord {
            file: self.file,
            line: self.cur_line,
            index: self.index,
            body,
        };
        self.index += 1;
        emit(rec)
    }

    /// At the end of the input: an unterminated value (truncated file) is
    /// emitted as it is; the parser will call it invalid JSON.
    fn finish(
        mut self,
        emit: &mut dyn FnMut(RawRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        if self.in_elem {
            self.flush(emit)?;
        }
        Ok(())
    }
}
