//! Input discovery and record reading: files or directories, JSONL or JSON
//! (an array, one object, or concatenated objects), plain, gzip or zstd
//! (detected by magic bytes). Streams with bounded memory: a record longer
//! than the limit is skipped over, never buffered whole.

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

/// Expands the INPUT arguments into files: a file is taken as given; a
/// directory is walked recursively (sorted, hidden entries skipped) for
/// `.jsonl`/`.ndjson`/`.json` files, optionally `.gz`/`.zst`. A missing or
/// unreadable path is a usage error (exit 2).
pub fn discover(inputs: &[PathBuf]) -> anyhow::Result<Vec<InputFile>> {
    if inputs.is_empty() {
        return Err(usage("no input given: pass log files or directories"));
    }
    let mut out = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| {
            usage(format!(
                "cannot read input {}: {}",
                input.display(),
                io_reason(&e)
            ))
        })?;
        if meta.is_dir() {
            let before = out.len();
            walk(input, &mut out)?;
            if out.len() == before {
                return Err(usage(format!(
                    "input directory {} holds no .jsonl/.ndjson/.json files (optionally .gz/.zst)",
                    input.display()
                )));
            }
        } else {
            File::open(input).map_err(|e| {
                usage(format!(
                    "cannot read input {}: {}",
                    input.display(),
                    io_reason(&e)
                ))
            })?;
            out.push(InputFile {
                path: input.clone(),
                display: input.display().to_string(),
                size: meta.len(),
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<InputFile>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| {
            usage(format!(
                "cannot read input directory {}: {}",
                dir.display(),
                io_reason(&e)
            ))
        })?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, out)?;
        } else if is_log_name(&name) {
            out.push(InputFile {
                display: path.display().to_string(),
                path,
                size: meta.len(),
            });
        }
    }
    Ok(())
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
    let mut r = open_decoded(path, counter)?;
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
