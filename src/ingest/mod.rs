//! Phases 1-2, collect and sanitise: `slmforge ingest INPUT... --out DIR`.
//!
//! Reads LLM call logs in every supported format, normalises each call into
//! the canonical [`crate::call::Call`], redacts PII and secrets before
//! anything is written, drops exact duplicates, and writes
//! `DIR/calls.parquet`, `DIR/quarantine.jsonl` and `DIR/ingest.json`.
//!
//! Data flow: a reader thread streams records in chunks (bounded channel) →
//! rayon parses, normalises and redacts each record in parallel (pending
//! pseudonym markers) → one sequential pass, in input order, numbers the
//! pseudonyms, joins batch halves and quarantines → rows are serialised in
//! parallel → duplicates dropped → row groups written. Memory is bounded by
//! the chunk size, the pending batch halves and the dedup set (8 bytes/call).
//!
//! Invariant: `read = written + duplicates + quarantined`, per format too.

pub mod formats;
mod pipeline;
pub mod quarantine;
pub mod source;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::artifact::calls::CallsWriter;
use crate::artifact::{CALLS_FILE, INGEST_REPORT_FILE, QUARANTINE_FILE};
use crate::call::SourceFormat;
use crate::redact::{RedactConfig, RedactKey, RedactStats, Redactor};
use crate::util::usage;
use pipeline::{CallSink, Sink};

pub use quarantine::{read_quarantine, QuarantineEntry};

/// Records larger than this many MiB are quarantined as too large (a
/// 128k-token conversation is well under 1 MiB of JSON).
pub const DEFAULT_MAX_RECORD_MB: usize = 8;
/// Records nested deeper than this are quarantined as too deep.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Where the redaction key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    File,
    Env,
    /// Generated for this run and not stored: pseudonyms are consistent
    /// within the run only.
    Random,
}

/// Resolved ingest settings.
pub struct IngestConfig {
    pub format: Option<SourceFormat>,
    pub redact: RedactConfig,
    pub key_source: KeySource,
    pub max_record_bytes: usize,
    pub max_depth: usize,
    pub threads: Option<usize>,
    pub progress: bool,
    /// Requests without responses (for `slmforge route`): a bare OpenAI chat
    /// or Anthropic Messages request body is read as a call with a
    /// placeholder answer, and identical requests are all kept.
    pub requests_only: bool,
}

impl IngestConfig {
    /// Defaults with the given key (tests, library use).
    pub fn new(key: RedactKey, key_source: KeySource) -> IngestConfig {
        IngestConfig {
            format: None,
            redact: RedactConfig::new(key),
            key_source,
            max_record_bytes: DEFAULT_MAX_RECORD_MB << 20,
            max_depth: DEFAULT_MAX_DEPTH,
            threads: None,
            progress: true,
            requests_only: false,
        }
    }
}

/// Counts for one format (or overall).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counts {
    pub read: u64,
    pub written: u64,
    pub duplicates: u64,
    pub quarantined: u64,
}

/// Per-file counts.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct FileReport {
    pub file: String,
    pub bytes: u64,
    pub records: u64,
}

/// `DIR/ingest.json`. Deterministic for the same inputs and options
/// (timings go to stderr, not here).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct IngestReport {
    pub schema_version: u32,
    pub read: u64,
    pub written: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub quarantine_reasons: BTreeMap<String, u64>,
    /// Telemetry items that are not LLM calls (tool/agent spans, chain
    /// runs); not records, so outside the `read` identity.
    pub skipped_non_llm: BTreeMap<String, u64>,
    pub redactions: BTreeMap<String, u64>,
    pub redactions_total: u64,
    pub distinct_entities: BTreeMap<String, u64>,
    pub formats: BTreeMap<String, Counts>,
    pub files: Vec<FileReport>,
    pub input_bytes: u64,
    pub key_source: String,
    /// 8 hex chars identifying the key (only when a key was supplied).
    pub key_fingerprint: Option<String>,
    pub outputs: BTreeMap<String, String>,
}

/// What the run produced, for callers.
pub struct IngestOutput {
    pub report: IngestReport,
    pub elapsed_s: f64,
}

/// Runs the ingest stage: `inputs` → `out/{calls.parquet, quarantine.jsonl, ingest.json}`.
pub fn run(cfg: &IngestConfig, inputs: &[PathBuf], out: &Path) -> anyhow::Result<IngestOutput> {
    let start = Instant::now();
    let files = source::discover(inputs)?;
    let quarantine = open_outputs(out)?;
    let redactor = Redactor::new(cfg.redact.clone()).map_err(|e| usage(format!("{e:#}")))?;
    let writer = CallsWriter::create(&out.join(CALLS_FILE))?;
    let report = IngestReport {
        schema_version: crate::artifact::calls::SCHEMA_VERSION,
        files: files
            .iter()
            .map(|f| FileReport {
                file: f.display.clone(),
                bytes: f.size,
                records: 0,
            })
            .collect(),
        input_bytes: files.iter().map(|f| f.size).sum(),
        ..Default::default()
    };
    let streamed = pipeline::stream(cfg, &files, &redactor, quarantine, writer, report)?;
    let report = finish_report(cfg, out, streamed)?;
    crate::util::write_json(&out.join(INGEST_REPORT_FILE), &report)?;
    Ok(IngestOutput {
        report,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// Creates the output directory and the quarantine file; an unusable
/// directory is a usage error.
fn open_outputs(out: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(out).map_err(|e| {
        usage(format!(
            "cannot create output directory {}: {}",
            out.display(),
            source::io_reason(&e)
        ))
    })?;
    let quarantine = File::create(out.join(QUARANTINE_FILE)).map_err(|e| {
        usage(format!(
            "output directory {} is not writable: {}",
            out.display(),
            source::io_reason(&e)
        ))
    })?;
    Ok(quarantine)
}

/// Closes the outputs and completes the report: the sinks' counts (which
/// add up: `read = written + duplicates + quarantined`), redaction figures,
/// the key's source and fingerprint, and the output paths.
fn finish_report(
    cfg: &IngestConfig,
    out: &Path,
    (sink, call_sink, stats): (Sink, CallSink, RedactStats),
) -> anyhow::Result<IngestReport> {
    let Sink {
        pseudonyms,
        mut report,
        mut quarantine,
        ..
    } = sink;
    quarantine.flush()?;
    let CallSink {
        writer,
        read,
        written,
        duplicates,
        formats,
        ..
    } = call_sink;
    writer.finish()?;
    report.read += read;
    report.written = written;
    report.duplicates = duplicates;
    for (f, c) in formats {
        let e = report.formats.entry(f).or_default();
        e.read += c.read;
        e.written += c.written;
        e.duplicates += c.duplicates;
    }
    report.redactions_total = stats.total();
    report.redactions = stats.by_kind;
    report.distinct_entities = pseudonyms.distinct_counts();
    report.key_source = serde_json::to_value(cfg.key_source)?
        .as_str()
        .unwrap_or("")
        .to_string();
    report.key_fingerprint =
        (cfg.key_source != KeySource::Random).then(|| cfg.redact.key.fingerprint());
    report.outputs = [
        ("calls", out.join(CALLS_FILE)),
        ("quarantine", out.join(QUARANTINE_FILE)),
        ("report", out.join(INGEST_REPORT_FILE)),
    ]
    .into_iter()
    .map(|(k, p)| (k.to_string(), p.display().to_string()))
    .collect();
    debug_assert_eq!(
        report.read,
        report.written + report.duplicates + report.quarantined
    );
    Ok(report)
}

/// Resolves the key: `--redact-key-file`, else the environment, else random.
pub fn resolve_key(file: Option<&Path>) -> anyhow::Result<(RedactKey, KeySource)> {
    if let Some(f) = file {
        let key =
            RedactKey::from_file(f).map_err(|e| usage(format!("--redact-key-file: {e:#}")))?;
        return Ok((key, KeySource::File));
    }
    if let Some(key) = RedactKey::from_env().map_err(|e| usage(format!("{e:#}")))? {
        return Ok((key, KeySource::Env));
    }
    Ok((RedactKey::random()?, KeySource::Random))
}
