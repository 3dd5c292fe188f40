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
    let mut line: u64 = 1;
    let mut depth: usize = 0;
    let mut in_str = false;
    let mut escape = false;
    let mut array_mode: Option<bool> = None;
    let mut index: u32 = 0;
    // current element
    let mut cur: Vec<u8> = Vec::new();
    let mut cur_len: u64 = 0;
    let mut cur_line: u64 = 0;
    let mut in_elem = false;
    let mut too_large = false;

    let flush = |cur: &mut Vec<u8>,
                 cur_len: u64,
                 cur_line: u64,
                 too_large: bool,
                 index: &mut u32,
                 emit: &mut dyn FnMut(RawRecord) -> anyhow::Result<()>|
     -> anyhow::Result<()> {
        let body = if too_large {
            Body::TooLarge { len: cur_len }
        } else {
            Body::Bytes(std::mem::take(cur))
        };
        cur.clear();
        let rec = RawRecord {
            file,
            line: cur_line,
            index: *index,
            body,
        };
        *index += 1;
        emit(rec)
    };

    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        let mut start_keep: Option<usize> = if in_elem { Some(0) } else { None };
        let mut i = 0;
        while i < n {
            let b = chunk[i];
            if b == b'\n' {
                line += 1;
            }
            if array_mode.is_none() {
                if b.is_ascii_whitespace() {
                    i += 1;
                    continue;
                }
                array_mode = Some(b == b'[');
                if b == b'[' {
                    depth = 1;
                    i += 1;
                    continue;
                }
            }
            if !in_elem {
                let top = if array_mode == Some(true) { 1 } else { 0 };
                if b.is_ascii_whitespace() || (depth == top && b == b',') {
                    i += 1;
                    continue;
                }
                if array_mode == Some(true) && depth == 1 && b == b']' {
                    depth = 0;
                    i += 1;
                    continue;
                }
                in_elem = true;
                cur_line = line;
                cur_len = 0;
                too_large = false;
                start_keep = Some(i);
            }
            // inside an element
            let top = if array_mode == Some(true) { 1 } else { 0 };
            let mut end_here = false;
            let mut end_before = false;
            if in_str {
                if escape {
                    escape = false;
                } else if b == b'\\' {
                    escape = true;
                } else if b == b'"' {
                    in_str = false;
                    if depth == top {
                        end_here = true; // a bare string element
                    }
                }
            } else {
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        if depth == top {
                            // closing bracket of the enclosing array ends a scalar element
                            end_before = true;
                        } else {
                            depth -= 1;
                            if depth == top {
                                end_here = true;
                            }
                        }
                    }
                    b',' if depth == top => end_before = true,
                    c if depth == top && c.is_ascii_whitespace() => end_before = true,
                    _ => {}
                }
            }
            if end_here || end_before {
                let end = if end_here { i + 1 } else { i };
                let s = start_keep.unwrap_or(0);
                if !too_large {
                    if cur.len() + (end - s) > max_bytes {
                        too_large = true;
                        cur.clear();
                    } else {
                        cur.extend_from_slice(&chunk[s..end]);
                    }
                }
                cur_len += (end - s) as u64;
                flush(&mut cur, cur_len, cur_line, too_large, &mut index, emit)?;
                in_elem = false;
                start_keep = None;
                if end_before && b == b']' && array_mode == Some(true) {
                    depth = 0;
                }
                i += 1;
                continue;
            }
            i += 1;
        }
        if in_elem {
            let s = start_keep.unwrap_or(0);
            if !too_large {
                if cur.len() + (n - s) > max_bytes {
                    too_large = true;
                    cur.clear();
                } else {
                    cur.extend_from_slice(&chunk[s..n]);
                }
            }
            cur_len += (n - s) as u64;
        }
        r.consume(n);
    }
    if in_elem {
        // Unterminated value (truncated file): emit what there is; the
        // parser will call it invalid JSON.
        flush(&mut cur, cur_len, cur_line, too_large, &mut index, emit)?;
    }
    Ok(())
}
