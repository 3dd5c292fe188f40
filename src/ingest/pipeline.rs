//! The streaming machinery of `ingest`: the reader thread's chunks, the
//! per-record parse → normalise → redact step (run in parallel, each record
//! isolated with `catch_unwind`), and the in-order sinks that number the
//! pseudonyms, join batch halves, quarantine, deduplicate and write rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use super::formats::{self, Bad, BatchKey, Item, Reason, TokenField};
use super::output::write_failed;
use super::source::{self, Body, InputFile, RawRecord};
use super::{Counts, IngestConfig, IngestReport};
use crate::artifact::calls::{CallRow, CallsWriter};
use crate::artifact::{CALLS_FILE, QUARANTINE_FILE};
use crate::call::{Origin, RedactedCall, SourceFormat};
use crate::redact::{PendingCall, Pseudonyms, RedactStats, Redactor};

/// One record's outcome after the parallel stage.
enum Outcome {
    Call {
        pending: PendingCall,
        origin: Origin,
    },
    BatchReq {
        key: BatchKey,
        pending: PendingCall,
        origin: Origin,
    },
    BatchResp {
        key: BatchKey,
        result: Result<PendingCall, Quarantined>,
        origin: Origin,
    },
    Skip(&'static str),
    Quarantine(Quarantined),
}

/// A quarantined record; `content` is redacted text with pending markers.
struct Quarantined {
    origin: Origin,
    format: Option<SourceFormat>,
    reason: Reason,
    detail: String,
    bytes: u64,
    content: Option<String>,
}

#[derive(Serialize)]
struct QuarantineLine<'a> {
    file: &'a str,
    line: u64,
    index: u32,
    format_guess: Option<&'static str>,
    reason: &'static str,
    detail: &'a str,
    bytes: u64,
    content: Option<&'a str>,
}

struct Ctx<'a> {
    files: &'a [InputFile],
    redactor: &'a Redactor,
    cfg: &'a IngestConfig,
}

fn origin(ctx: &Ctx, rec: &RawRecord, index: u32) -> Origin {
    Origin {
        file: ctx.files[rec.file].display.clone(),
        line: rec.line,
        index: rec.index + index,
    }
}

/// Parallel stage: bytes → JSON → format items → redacted outcomes.
fn process(ctx: &Ctx, rec: &RawRecord, stats: &mut RedactStats) -> Vec<Outcome> {
    let r = ctx.redactor;
    let quarantine_text =
        |reason, detail: String, text: &str, bytes: u64, stats: &mut RedactStats| {
            Outcome::Quarantine(Quarantined {
                origin: origin(ctx, rec, 0),
                format: None,
                reason,
                detail,
                bytes,
                content: Some(r.redact_text(text, stats)),
            })
        };
    let bytes = match &rec.body {
        Body::TooLarge { len } => {
            return vec![Outcome::Quarantine(Quarantined {
                origin: origin(ctx, rec, 0),
                format: None,
                reason: Reason::TooLarge,
                detail: format!(
                    "record is {len} bytes, over the {} byte limit; content not kept",
                    ctx.cfg.max_record_bytes
                ),
                bytes: *len,
                content: None,
            })]
        }
        Body::Unreadable { detail } => {
            return vec![Outcome::Quarantine(Quarantined {
                origin: origin(ctx, rec, 0),
                format: None,
                reason: Reason::UnreadableInput,
                detail: detail.clone(),
                bytes: 0,
                content: None,
            })]
        }
        Body::Bytes(b) => b,
    };
    let n = bytes.len() as u64;
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let lossy = String::from_utf8_lossy(bytes);
            return vec![quarantine_text(
                Reason::InvalidUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                &lossy,
                n,
                stats,
            )];
        }
    };
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let msg = e.to_string();
            let reason = if msg.contains("recursion limit") {
                Reason::TooDeep
            } else {
                Reason::InvalidJson
            };
            // serde_json syntax errors name a position and a category, never input text.
            return vec![quarantine_text(reason, msg, text, n, stats)];
        }
    };
    if formats::depth(&v) > ctx.cfg.max_depth {
        return vec![quarantine_text(
            Reason::TooDeep,
            format!("JSON nesting deeper than {} levels", ctx.cfg.max_depth),
            text,
            n,
            stats,
        )];
    }
    let redact_json = |v: &Value, stats: &mut RedactStats| {
        let mut c = v.clone();
        r.redact_value(&mut c, stats);
        serde_json::to_string(&c).expect("JSON value serialises")
    };
    let parsed = if ctx.cfg.requests_only {
        formats::parse_record(&formats::as_request_record(&v), ctx.cfg.format)
    } else {
        formats::parse_record(&v, ctx.cfg.format)
    };
    let mut out = Vec::with_capacity(parsed.len());
    for p in parsed {
        let o = origin(ctx, rec, p.index);
        let quarantine = |b: Bad, content: Option<&Value>, stats: &mut RedactStats| Quarantined {
            origin: o.clone(),
            format: p.format,
            reason: b.reason,
            detail: b.detail,
            bytes: n,
            content: Some(redact_json(content.unwrap_or(&v), stats)),
        };
        out.push(match p.item {
            Item::Call(raw) => Outcome::Call {
                pending: r.redact_call(raw, stats),
                origin: o,
            },
            Item::BatchRequest { key, call } => Outcome::BatchReq {
                key,
                pending: r.redact_call(call, stats),
                origin: o,
            },
            Item::BatchResponse { key, result } => {
                let result = match result {
                    Ok(raw) => Ok(r.redact_call(raw, stats)),
                    Err(b) => Err(quarantine(b, p.content.as_ref(), stats)),
                };
                Outcome::BatchResp {
                    key,
                    result,
                    origin: o,
                }
            }
            Item::NotACall(kind) => Outcome::Skip(kind),
            Item::Bad(b) => Outcome::Quarantine(quarantine(b, p.content.as_ref(), stats)),
        });
    }
    out
}

/// [`process`] with panic isolation: a bug on one record quarantines that
/// record (content not kept) instead of stopping the run, and the panic
/// hook (see `cli::install_panic_hook`) keeps its payload out of the logs.
/// Also collects the token counts the record had negative.
fn process_guarded(ctx: &Ctx, rec: &RawRecord) -> Processed {
    let mut s = RedactStats::default();
    formats::take_negative_tokens();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(ctx, rec, &mut s)));
    let negative_tokens = formats::take_negative_tokens();
    match res {
        Ok(o) => (o, s, negative_tokens),
        Err(_) => (
            vec![Outcome::Quarantine(Quarantined {
                origin: origin(ctx, rec, 0),
                format: None,
                reason: Reason::InternalError,
                detail: "slmforge failed on this record; content not kept (please report)".into(),
                bytes: match &rec.body {
                    Body::Bytes(b) => b.len() as u64,
                    _ => 0,
                },
                content: None,
            })],
            RedactStats::default(),
            0,
        ),
    }
}

/// A record's outcomes, its redaction counts, and the token fields it had
/// negative ([`formats::take_negative_tokens`]).
type Processed = (Vec<Outcome>, RedactStats, u8);

/// One half of a batch call waiting for the other.
enum Half {
    Request {
        call: RedactedCall,
        origin: Origin,
    },
    Response {
        result: Result<RedactedCall, Quarantined>,
        origin: Origin,
    },
}

/// Sequential stage state: pseudonyms, batch joins, quarantine.
pub(super) struct Sink {
    pub(super) pseudonyms: Pseudonyms,
    pending: HashMap<BatchKey, Half>,
    pub(super) quarantine: BufWriter<File>,
    pub(super) report: IngestReport,
}

/// Writer thread state: dedup and `calls.parquet`.
pub(super) struct CallSink {
    seen: HashSet<u64>,
    /// `requests_only`: every request gets its row.
    keep_duplicates: bool,
    pub(super) writer: CallsWriter,
    pub(super) read: u64,
    pub(super) written: u64,
    pub(super) duplicates: u64,
    pub(super) formats: BTreeMap<String, Counts>,
}

impl Sink {
    fn fmt_counts(&mut self, f: Option<SourceFormat>) -> &mut Counts {
        let name = f.map(|f| f.as_str()).unwrap_or("unknown");
        self.report.formats.entry(name.to_string()).or_default()
    }

    /// Data-quality counters: one per token field a record had negative
    /// (kept as null).
    fn note_negative_tokens(&mut self, mask: u8) {
        if mask == 0 {
            return;
        }
        for f in TokenField::ALL {
            if formats::has_negative(mask, f) {
                *self
                    .report
                    .data_quality
                    .entry(f.negative_counter().to_string())
                    .or_default() += 1;
            }
        }
    }

    fn quarantine(&mut self, mut q: Quarantined) -> anyhow::Result<()> {
        if let Some(c) = &mut q.content {
            self.pseudonyms.resolve_text(c);
        }
        let line = QuarantineLine {
            file: &q.origin.file,
            line: q.origin.line,
            index: q.origin.index,
            format_guess: q.format.map(|f| f.as_str()),
            reason: q.reason.as_str(),
            detail: &q.detail,
            bytes: q.bytes,
            content: q.content.as_deref(),
        };
        serde_json::to_writer(&mut self.quarantine, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| self.quarantine.write_all(b"\n"))
            .map_err(|e| write_failed(QUARANTINE_FILE, &e.into()))?;
        self.report.read += 1;
        self.report.quarantined += 1;
        *self
            .report
            .quarantine_reasons
            .entry(q.reason.as_str().to_string())
            .or_default() += 1;
        let c = self.fmt_counts(q.format);
        c.read += 1;
        c.quarantined += 1;
        Ok(())
    }

    /// Resolves pseudonyms in input order; returns complete calls.
    fn sequence(
        &mut self,
        outcomes: Vec<Outcome>,
        ready: &mut Vec<RedactedCall>,
    ) -> anyhow::Result<()> {
        for o in outcomes {
            match o {
                Outcome::Call { pending, origin } => {
                    let mut call = self.pseudonyms.finish(pending);
                    call.0.origin = origin;
                    ready.push(call);
                }
                Outcome::Skip(kind) => {
                    *self
                        .report
                        .skipped_non_llm
                        .entry(kind.to_string())
                        .or_default() += 1
                }
                Outcome::Quarantine(q) => self.quarantine(q)?,
                Outcome::BatchReq {
                    key,
                    pending,
                    origin,
                } => {
                    let call = self.pseudonyms.finish(pending);
                    self.join(key, Half::Request { call, origin }, ready)?;
                }
                Outcome::BatchResp {
                    key,
                    result,
                    origin,
                } => {
                    let result = result.map(|p| self.pseudonyms.finish(p));
                    self.join(key, Half::Response { result, origin }, ready)?;
                }
            }
        }
        Ok(())
    }

    fn join(
        &mut self,
        key: BatchKey,
        half: Half,
        ready: &mut Vec<RedactedCall>,
    ) -> anyhow::Result<()> {
        let fmt = Some(key.format);
        match (self.pending.remove(&key), half) {
            (None, half) => {
                self.pending.insert(key, half);
            }
            (Some(Half::Request { mut call, origin }), Half::Response { result, .. })
            | (Some(Half::Response { result, .. }), Half::Request { mut call, origin }) => {
                match result {
                    Ok(resp) => {
                        let resp = resp.into_inner();
                        call.0.response = resp.response;
                        call.0.usage = resp.usage;
                        call.0.model = resp.model.or(call.0.model.take());
                        call.0.timestamp_ms = resp.timestamp_ms.or(call.0.timestamp_ms);
                        call.0.origin = origin;
                        call.0.source_format = fmt;
                        ready.push(call);
                    }
                    Err(mut q) => {
                        q.origin = origin;
                        self.quarantine(q)?;
                    }
                }
            }
            (Some(first), second) => {
                // Two halves of the same kind: keep the first, quarantine the second.
                self.pending.insert(key.clone(), first);
                let (origin, content) = match second {
                    Half::Request { call, origin } => (origin, call_json(&call)),
                    Half::Response {
                        result: Ok(call),
                        origin,
                    } => (origin, call_json(&call)),
                    Half::Response {
                        result: Err(q),
                        origin,
                    } => (origin, q.content.unwrap_or_default()),
                };
                self.quarantine(Quarantined {
                    origin,
                    format: fmt,
                    reason: Reason::BatchDuplicateId,
                    detail: "a batch line with this custom_id was already read".into(),
                    bytes: 0,
                    content: Some(content),
                })?;
            }
        }
        Ok(())
    }

    /// Quarantines the batch halves that never found their partner, in
    /// input order.
    fn flush_unmatched(&mut self) -> anyhow::Result<()> {
        let mut left: Vec<(BatchKey, Half)> = self.pending.drain().collect();
        let pos = |h: &Half| match h {
            Half::Request { origin, .. } | Half::Response { origin, .. } => {
                (origin.file.clone(), origin.line, origin.index)
            }
        };
        left.sort_by_key(|(_, h)| pos(h));
        for (key, half) in left {
            let q = match half {
                Half::Request { call, origin } => Quarantined {
                    origin,
                    format: Some(key.format),
                    reason: Reason::BatchMissingResponse,
                    detail: "no batch output line has this custom_id".into(),
                    bytes: 0,
                    content: Some(call_json(&call)),
                },
                Half::Response {
                    result: Ok(call),
                    origin,
                } => Quarantined {
                    origin,
                    format: Some(key.format),
                    reason: Reason::BatchMissingRequest,
                    detail: "no batch input line has this custom_id".into(),
                    bytes: 0,
                    content: Some(call_json(&call)),
                },
                Half::Response {
                    result: Err(mut q),
                    origin,
                } => {
                    q.origin = origin;
                    q
                }
            };
            self.quarantine(q)?;
        }
        Ok(())
    }
}

impl CallSink {
    /// Dedups and writes complete calls (rows serialised in parallel).
    fn write(&mut self, ready: Vec<RedactedCall>) -> anyhow::Result<()> {
        let rows: Vec<(CallRow, Option<SourceFormat>)> = ready
            .par_iter()
            .map(|c| (CallRow::from_call(c), c.source_format))
            .collect();
        let mut keep = Vec::with_capacity(rows.len());
        for (row, fmt) in rows {
            let id = u64::from_str_radix(&row.call_id, 16).expect("call id is hex");
            self.read += 1;
            let dup = !self.seen.insert(id) && !self.keep_duplicates;
            let name = fmt.map(|f| f.as_str()).unwrap_or("unknown");
            let c = self.formats.entry(name.to_string()).or_default();
            c.read += 1;
            if dup {
                c.duplicates += 1;
                self.duplicates += 1;
            } else {
                c.written += 1;
                self.written += 1;
                keep.push(row);
            }
        }
        self.writer
            .write(&keep)
            .map_err(|e| write_failed(CALLS_FILE, &e))
    }
}

/// A (redacted) partial call as JSON text, for quarantined batch halves.
fn call_json(call: &RedactedCall) -> String {
    serde_json::json!({"messages": call.messages, "tools": call.tools, "response": call.response})
        .to_string()
}

/// Chunk of records handed from the reader thread to the workers.
pub(super) struct Chunk {
    records: Vec<RawRecord>,
    /// Per-file record counts, for the report.
    per_file: Vec<(usize, u64)>,
}

const CHUNK_BYTES: usize = 4 << 20;
const CHUNK_RECORDS: usize = 4096;

/// Streams every record through the pipeline: the reader thread, the
/// parallel parse/redact plus in-order sequencing on this thread, and the
/// writer thread (rows, dedup, parquet) overlap. Returns the sinks (not yet
/// flushed) and the redaction counts.
pub(super) fn stream(
    cfg: &IngestConfig,
    files: &[InputFile],
    redactor: &Redactor,
    pseudonyms: Pseudonyms,
    quarantine: File,
    writer: CallsWriter,
    report: IngestReport,
) -> anyhow::Result<(Sink, CallSink, RedactStats)> {
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let pb = if cfg.progress {
        crate::util::bytes_bar(total_bytes, "ingest")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let counter = Arc::new(AtomicU64::new(0));

    let mut sink = Sink {
        pseudonyms,
        pending: HashMap::new(),
        quarantine: BufWriter::new(quarantine),
        report,
    };
    let mut stats = RedactStats::default();

    let pool = {
        let mut b = rayon::ThreadPoolBuilder::new();
        if let Some(t) = cfg.threads {
            b = b.num_threads(t.max(1));
        }
        b.build()?
    };

    let (tx, rx) = std::sync::mpsc::sync_channel::<anyhow::Result<Chunk>>(2);
    let reader_files = files.to_vec();
    let max_bytes = cfg.max_record_bytes;
    let reader_counter = counter.clone();
    let reader = std::thread::spawn(move || read_all(&reader_files, max_bytes, reader_counter, tx));

    let ctx = Ctx {
        files,
        redactor,
        cfg,
    };
    let timing = std::env::var_os("SLMFORGE_INGEST_TIMING").is_some();
    let (mut t_wait, mut t_par, mut t_seq) = (0f64, 0f64, 0f64);

    // Three stages overlap: the reader thread, the parallel parse/redact plus
    // in-order sequencing here, and the writer thread (rows, dedup, parquet).
    let (wtx, wrx) = std::sync::mpsc::sync_channel::<Vec<RedactedCall>>(2);
    let call_sink = std::thread::scope(|scope| -> anyhow::Result<CallSink> {
        let pool = &pool;
        let writer_thread = scope.spawn(move || -> anyhow::Result<CallSink> {
            let mut cs = CallSink {
                seen: HashSet::new(),
                keep_duplicates: cfg.requests_only,
                writer,
                read: 0,
                written: 0,
                duplicates: 0,
                formats: BTreeMap::new(),
            };
            for batch in wrx {
                pool.install(|| cs.write(batch))?;
            }
            Ok(cs)
        });
        let main_loop = || -> anyhow::Result<()> {
            let mut t0 = Instant::now();
            for chunk in rx {
                let chunk = chunk?;
                t_wait += t0.elapsed().as_secs_f64();
                t0 = Instant::now();
                for (f, n) in &chunk.per_file {
                    sink.report.files[*f].records += n;
                }
                let results: Vec<Processed> = pool.install(|| {
                    chunk
                        .records
                        .par_iter()
                        .map(|rec| process_guarded(&ctx, rec))
                        .collect()
                });
                t_par += t0.elapsed().as_secs_f64();
                t0 = Instant::now();
                let mut ready = Vec::new();
                for (outcomes, s, negative_tokens) in results {
                    stats.merge(&s);
                    sink.note_negative_tokens(negative_tokens);
                    sink.sequence(outcomes, &mut ready)?;
                }
                t_seq += t0.elapsed().as_secs_f64();
                if wtx.send(ready).is_err() {
                    // The writer stopped: its error is reported below.
                    break;
                }
                pb.set_position(counter.load(Ordering::Relaxed));
                t0 = Instant::now();
            }
            Ok(())
        };
        let res = main_loop();
        drop(wtx);
        let cs = writer_thread
            .join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
        res?;
        cs
    })?;
    if timing {
        eprintln!("ingest timing (main thread): waiting for input {t_wait:.2}s, parallel parse+redact {t_par:.2}s, sequencing {t_seq:.2}s");
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    sink.flush_unmatched()?;
    pb.finish_and_clear();

    Ok((sink, call_sink, stats))
}

/// Reader thread: streams every file's records in chunks.
fn read_all(
    files: &[InputFile],
    max_bytes: usize,
    counter: Arc<AtomicU64>,
    tx: std::sync::mpsc::SyncSender<anyhow::Result<Chunk>>,
) -> anyhow::Result<()> {
    let mut chunk = Chunk {
        records: Vec::new(),
        per_file: Vec::new(),
    };
    let mut chunk_bytes = 0usize;
    for (i, f) in files.iter().enumerate() {
        let mut last_line = 0u64;
        let mut n = 0u64;
        let res = source::read_records(i, &f.path, max_bytes, counter.clone(), &mut |rec| {
            last_line = rec.line;
            n += 1;
            chunk_bytes += match &rec.body {
                Body::Bytes(b) => b.len(),
                _ => 0,
            };
            chunk.records.push(rec);
            if chunk_bytes >= CHUNK_BYTES || chunk.records.len() >= CHUNK_RECORDS {
                chunk.per_file.push((i, n));
                n = 0;
                let full = std::mem::replace(
                    &mut chunk,
                    Chunk {
                        records: Vec::new(),
                        per_file: Vec::new(),
                    },
                );
                chunk_bytes = 0;
                tx.send(Ok(full))
                    .map_err(|_| anyhow::anyhow!("ingest stopped"))?;
            }
            Ok(())
        });
        if let Err(e) = res {
            // The rest of this file cannot be read: one quarantine record
            // marks where, and the run goes on with the next file.
            let kind = e
                .downcast_ref::<std::io::Error>()
                .map(source::io_reason)
                .unwrap_or_else(|| "read error".into());
            let detail = format!("stopped reading after line {last_line}: {kind}");
            chunk.records.push(RawRecord {
                file: i,
                line: last_line + 1,
                index: 0,
                body: Body::Unreadable { detail },
            });
            n += 1;
        }
        if n > 0 {
            chunk.per_file.push((i, n));
        }
    }
    if !chunk.records.is_empty() || !chunk.per_file.is_empty() {
        tx.send(Ok(chunk))
            .map_err(|_| anyhow::anyhow!("ingest stopped"))?;
    }
    Ok(())
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Chunk>();
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chunk({} records)", self.records.len())
    }
}
