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
mod output;
mod pipeline;
pub mod quarantine;
pub mod source;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::artifact::calls::CallsWriter;
use crate::artifact::{CALLS_FILE, INGEST_REPORT_FILE, QUARANTINE_FILE};
use crate::call::SourceFormat;
use crate::redact::{Pseudonyms, RedactConfig, RedactKey, RedactStats, Redactor};
use crate::util::{usage, IoFailure};
use output::{write_failed, OutputDir};
use pipeline::{CallSink, Sink};

pub use output::LOCK_FILE;
pub use quarantine::{read_quarantine, QuarantineEntry};
pub use source::SkippedInput;

/// Records larger than this many MiB are quarantined as too large (a
/// 128k-token conversation is well under 1 MiB of JSON).
pub const DEFAULT_MAX_RECORD_MB: usize = 8;
/// The largest `--max-record-mb` accepted: a record is buffered whole, so
/// the limit bounds memory per record in flight.
pub const MAX_RECORD_MB_LIMIT: usize = 4096;
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
    /// The demo's fixed, public key for the bundled synthetic sample, so
    /// that demo runs are reproducible. Never for real data.
    Demo,
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
    /// Called with each artifact's file name once its temporary is written
    /// and flushed, before anything is moved into place; an error counts as
    /// a failed write of that artifact (tests inject a full disk with it).
    pub write_hook: Option<fn(&str) -> std::io::Result<()>>,
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
            write_hook: None,
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
    /// Data-quality warnings about records that were kept: records whose
    /// token count was negative (stored as null), per field
    /// (`negative_prompt_tokens`, `negative_completion_tokens`,
    /// `negative_total_tokens`).
    #[serde(default)]
    pub data_quality: BTreeMap<String, u64>,
    /// Input paths not read, with the reason (the output directory inside
    /// an input directory, symlink cycles, second paths to a file or
    /// directory already read), in discovery order.
    #[serde(default)]
    pub skipped_inputs: Vec<SkippedInput>,
    /// Values redacted in the names of input files and directories
    /// (`source_file`, `files`, `skipped_inputs` and `outputs` show
    /// redacted paths).
    #[serde(default)]
    pub path_redactions: u64,
}

/// What the run produced, for callers.
pub struct IngestOutput {
    pub report: IngestReport,
    pub elapsed_s: f64,
}

/// Runs the ingest stage: `inputs` → `out/{calls.parquet, quarantine.jsonl,
/// ingest.json}`. The output directory is locked for the run; the artifacts
/// are written to temporaries and moved into place together at the end
/// (`ingest.json` last), so a failed run leaves the previous one. Errors:
/// [`crate::util::UsageError`] for an unusable invocation (exit 2),
/// [`IoFailure`] when writing the outputs fails (exit 74).
pub fn run(cfg: &IngestConfig, inputs: &[PathBuf], out: &Path) -> anyhow::Result<IngestOutput> {
    let start = Instant::now();
    if cfg.max_record_bytes == 0 {
        return Err(usage("the record size limit must be at least 1 MiB"));
    }
    let redactor = Redactor::new(cfg.redact.clone()).map_err(|e| usage(format!("{e:#}")))?;
    let mut names = PathNames::new(&redactor);
    // Shown in messages only: numbered apart, so `--out` never shifts the
    // dataset's pseudonyms.
    let shown = PathNames::new(&redactor).show(out);
    let mut dir = OutputDir::open(out, &shown)?;
    let out_id = std::fs::metadata(out)
        .ok()
        .map(|m| source::NodeId::of(out, &m));
    let found = source::discover(inputs, out_id.as_ref(), &mut |p| names.show(p))?;
    let files = found.files;
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
        skipped_inputs: found.skipped,
        ..Default::default()
    };
    let failed = |e: anyhow::Error| in_dir(e, &shown, "it keeps its previous contents");
    let quarantine = dir.create_temp(QUARANTINE_FILE).map_err(failed)?;
    let writer = CallsWriter::create(&dir.temp(CALLS_FILE))
        .map_err(|e| failed(write_failed(CALLS_FILE, &e)))?;
    let (pseudonyms, path_stats) = (names.pseudonyms, names.stats);
    let streamed = pipeline::stream(
        cfg, &files, &redactor, pseudonyms, quarantine, writer, report,
    )
    .map_err(failed)?;
    let mut names = PathNames {
        redactor: &redactor,
        pseudonyms: Pseudonyms::new(),
        stats: path_stats,
    };
    let report = finish_report(cfg, &dir, out, &mut names, streamed).map_err(failed)?;
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    bytes.push(b'\n');
    std::fs::write(dir.temp(INGEST_REPORT_FILE), &bytes)
        .map_err(|e| failed(write_failed(INGEST_REPORT_FILE, &e.into())))?;
    dir.seal(INGEST_REPORT_FILE, cfg.write_hook)
        .map_err(failed)?;
    if let Err(e) = dir.commit() {
        return Err(if dir.touched() {
            in_dir(
                e,
                &shown,
                "it holds no complete run until ingest runs again",
            )
        } else {
            failed(e)
        });
    }
    Ok(IngestOutput {
        report,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// An output failure, with the directory and its state added to the message.
fn in_dir(e: anyhow::Error, shown: &str, state: &str) -> anyhow::Error {
    match e.downcast_ref::<IoFailure>() {
        Some(f) => crate::util::io_failure(format!("{f} in output directory {shown}; {state}")),
        None => e,
    }
}

/// Paths as they are shown and stored: each component run through text
/// redaction, the pseudonyms numbered in the run's table (input paths
/// first, in discovery order), so that `exports/carol@example.com/x.jsonl`
/// becomes `exports/<EMAIL_1>/x.jsonl` in `source_file`, `ingest.json` and
/// every message.
struct PathNames<'a> {
    redactor: &'a Redactor,
    pseudonyms: Pseudonyms,
    stats: RedactStats,
}

impl<'a> PathNames<'a> {
    fn new(redactor: &'a Redactor) -> Self {
        PathNames {
            redactor,
            pseudonyms: Pseudonyms::new(),
            stats: RedactStats::default(),
        }
    }

    fn show(&mut self, path: &Path) -> String {
        let mut shown = PathBuf::new();
        for c in path.components() {
            match c {
                Component::Normal(part) => {
                    let mut t = self
                        .redactor
                        .redact_text(&part.to_string_lossy(), &mut self.stats);
                    self.pseudonyms.resolve_text(&mut t);
                    shown.push(t);
                }
                other => shown.push(other.as_os_str()),
            }
        }
        shown.display().to_string()
    }
}

/// The log files [`run`] would read from `inputs` (the same discovery;
/// `skip` is never walked), each with its path as given and as shown
/// (redacted as `ingest.json` shows it), for callers that decide which
/// files to ingest.
pub fn discover_inputs(
    cfg: &IngestConfig,
    inputs: &[PathBuf],
    skip: Option<&Path>,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let redactor = Redactor::new(cfg.redact.clone()).map_err(|e| usage(format!("{e:#}")))?;
    let mut names = PathNames::new(&redactor);
    let skip_id = skip.and_then(|p| std::fs::metadata(p).ok().map(|m| source::NodeId::of(p, &m)));
    let found = source::discover(inputs, skip_id.as_ref(), &mut |p| names.show(p))?;
    Ok(found
        .files
        .into_iter()
        .map(|f| (f.path, f.display))
        .collect())
}

/// Closes the outputs (sealed temporaries, not yet in place) and completes
/// the report: the sinks' counts (which add up: `read = written +
/// duplicates + quarantined`), redaction figures, the key's source and
/// fingerprint, and the output paths (redacted).
fn finish_report(
    cfg: &IngestConfig,
    dir: &OutputDir,
    out: &Path,
    names: &mut PathNames,
    (sink, call_sink, stats): (Sink, CallSink, RedactStats),
) -> anyhow::Result<IngestReport> {
    let Sink {
        pseudonyms,
        mut report,
        mut quarantine,
        ..
    } = sink;
    quarantine
        .flush()
        .map_err(|e| write_failed(QUARANTINE_FILE, &e.into()))?;
    drop(quarantine);
    dir.seal(QUARANTINE_FILE, cfg.write_hook)?;
    let CallSink {
        writer,
        read,
        written,
        duplicates,
        formats,
        ..
    } = call_sink;
    writer.finish().map_err(|e| write_failed(CALLS_FILE, &e))?;
    dir.seal(CALLS_FILE, cfg.write_hook)?;
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
    // Input paths only: the report (but `outputs`) does not depend on `--out`.
    report.path_redactions = names.stats.total();
    // The output paths after every record: numbered in the run's table.
    names.pseudonyms = pseudonyms;
    report.outputs = [
        ("calls", CALLS_FILE),
        ("quarantine", QUARANTINE_FILE),
        ("report", INGEST_REPORT_FILE),
    ]
    .into_iter()
    .map(|(k, f)| (k.to_string(), names.show(&out.join(f))))
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
