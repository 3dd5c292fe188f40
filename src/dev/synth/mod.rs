//! `slmforge synth`: realistic synthetic agent traffic in every supported
//! log format, with a ground-truth sidecar (workload and format per call,
//! reason per malformed record). Feeds tests, demos and benchmarks of
//! ingest, redaction, clustering and fine-tuning.
//!
//! Two profiles: `easy` (ten balanced, well-separated workloads) and
//! `hard` ([`hard`]: what real agent traffic adds — a changing tool pool,
//! refusals and clarifying questions, a multi-API agent, multi-turn calls
//! with tool results, near-duplicate schemas, unbalanced sizes, one-offs).
//!
//! Invariants: the output is a pure function of the config (seeded
//! ChaCha streams, no hash-map iteration, no clock); every answer is a
//! deterministic function of its input; each workload's content does not
//! depend on which format renders it.

pub mod formats;
pub mod hard;
pub mod malformed;
pub mod pii;
pub mod truth;
pub mod workloads;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::call::SourceFormat;
use crate::util::usage;
use formats::{Meta, Provider};
use hard::Kind;
use pii::R;
use workloads::{Conv, WORKLOADS};

/// What to generate.
#[derive(Clone, Debug, Default)]
pub struct SynthConfig {
    /// Number of LLM calls.
    pub calls: usize,
    pub seed: u64,
    /// Malformed records to mix in; `None` means `max(3, calls / 200)`.
    /// 100 or more include one record over 8 MiB.
    pub malformed: Option<usize>,
    /// Formats to use; `None` means all of them.
    pub formats: Option<Vec<SourceFormat>>,
}

/// Which traffic to generate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// Ten balanced, well-separated workloads (the bundled sample).
    #[default]
    Easy,
    /// Traffic shaped like real agent logs ([`hard`]).
    Hard,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Easy, Profile::Hard];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Easy => "easy",
            Profile::Hard => "hard",
        }
    }

    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What was written.
#[derive(Clone, Debug, Serialize)]
pub struct SynthSummary {
    pub profile: &'static str,
    pub seed: u64,
    pub calls: usize,
    pub malformed: usize,
    /// Lines in the output file.
    pub lines: u64,
    pub per_workload: BTreeMap<String, usize>,
    pub per_format: BTreeMap<String, usize>,
    /// Calls per `format/variant` (record shape inside a format).
    pub per_variant: BTreeMap<String, usize>,
    pub malformed_reasons: BTreeMap<String, usize>,
    /// The data file, then the labels file.
    pub files: Vec<PathBuf>,
}

/// The workload names used as ground-truth labels.
pub fn workload_names() -> Vec<&'static str> {
    WORKLOADS.to_vec()
}

const SUFFIXES: [&str; 3] = [".jsonl.gz", ".jsonl.zst", ".jsonl"];

/// The labels sidecar of an output file: the `.jsonl[.gz|.zst]` suffix
/// replaced by `.labels.jsonl` (any other extension is replaced likewise).
pub fn labels_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = SUFFIXES
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .map(str::to_string)
        .unwrap_or_else(|| {
            out.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or(name.clone())
        });
    out.with_file_name(format!("{stem}.labels.jsonl"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    Plain,
    Gzip,
    Zstd,
}

fn compression_for(out: &Path) -> anyhow::Result<Compression> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".jsonl.gz") {
        Ok(Compression::Gzip)
    } else if name.ends_with(".jsonl.zst") {
        Ok(Compression::Zstd)
    } else if name.ends_with(".jsonl") {
        Ok(Compression::Plain)
    } else {
        Err(usage(format!(
            "--out {}: the file name must end in .jsonl, .jsonl.gz or .jsonl.zst",
            out.display()
        )))
    }
}

/// Relative weights of the formats when all are enabled.
fn weight(f: SourceFormat) -> u32 {
    match f {
        SourceFormat::OpenaiChat => 24,
        SourceFormat::OpenaiBatch => 12,
        SourceFormat::Anthropic => 16,
        SourceFormat::Otel => 12,
        _ => 9,
    }
}

/// A seeded stream per (purpose, item): content never depends on the
/// order other items were drawn in.
fn rng_for(seed: u64, stream: u64, item: u64) -> R {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&stream.to_le_bytes());
    s[16..24].copy_from_slice(&item.to_le_bytes());
    s[24..].copy_from_slice(b"slmsynth");
    ChaCha8Rng::from_seed(s)
}

const STREAM_PLAN: u64 = 0;
const STREAM_CONTENT: u64 = 1;
const STREAM_RENDER: u64 = 2;
const STREAM_MALFORMED: u64 = 3;

/// 2025-03-03T08:00:00Z; calls are spread over the 14 days after it.
const BASE_MS: i64 = 1_740_988_800_000;
const SPAN_MS: i64 = 14 * 24 * 3600 * 1000;

/// The per-call plan: kind (workload) and format.
struct Plan {
    profile: Profile,
    kinds: Vec<Kind>,
    formats: Vec<SourceFormat>,
    /// (insert before call i, reason), sorted by position.
    malformed: Vec<(usize, &'static str)>,
}

fn plan(cfg: &SynthConfig, profile: Profile, allowed: &[SourceFormat], rng: &mut R) -> Plan {
    let n = cfg.calls;
    let kinds = match profile {
        Profile::Easy => {
            let mut workloads: Vec<usize> = (0..n).map(|i| i % WORKLOADS.len()).collect();
            workloads.shuffle(rng);
            workloads.into_iter().map(Kind::Easy).collect()
        }
        Profile::Hard => hard::plan(n, rng),
    };
    let total: u32 = allowed.iter().map(|f| weight(*f)).sum();
    let mut formats: Vec<SourceFormat> = (0..n)
        .map(|_| {
            let mut x = rng.random_range(0..total);
            for f in allowed {
                if x < weight(*f) {
                    return *f;
                }
                x -= weight(*f);
            }
            allowed[allowed.len() - 1]
        })
        .collect();
    if n >= allowed.len() {
        // Every allowed format appears at least once.
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(rng);
        for (f, &i) in allowed.iter().zip(&idx) {
            formats[i] = *f;
        }
    }
    let m = cfg.malformed.unwrap_or_else(|| (n / 200).max(3));
    let mut order = malformed::REASONS.to_vec();
    order.shuffle(rng);
    let mut reasons: Vec<&'static str> = (0..m).map(|j| order[j % order.len()]).collect();
    if m >= 100 {
        reasons[m - 1] = malformed::OVERSIZED;
    }
    let mut mal: Vec<(usize, &'static str)> = reasons
        .into_iter()
        .map(|r| (rng.random_range(0..=n), r))
        .collect();
    mal.sort_by_key(|(p, _)| *p);
    Plan {
        profile,
        kinds,
        formats,
        malformed: mal,
    }
}

/// The compressed (or not) output stream, counting lines.
struct Sink {
    inner: SinkInner,
    line: u64,
}

enum SinkInner {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
}

impl Sink {
    fn create(path: &Path, c: Compression) -> anyhow::Result<Sink> {
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let w = BufWriter::with_capacity(1 << 20, f);
        let inner = match c {
            Compression::Plain => SinkInner::Plain(w),
            Compression::Gzip => SinkInner::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            )),
            Compression::Zstd => {
                SinkInner::Zstd(zstd::Encoder::new(w, 3).context("starting zstd")?)
            }
        };
        Ok(Sink { inner, line: 0 })
    }

    /// Writes one line; returns its 1-based number.
    fn emit(&mut self, bytes: &[u8]) -> anyhow::Result<u64> {
        let w: &mut dyn Write = match &mut self.inner {
            SinkInner::Plain(w) => w,
            SinkInner::Gzip(w) => w,
            SinkInner::Zstd(w) => w,
        };
        w.write_all(bytes)?;
        w.write_all(b"\n")?;
        self.line += 1;
        Ok(self.line)
    }

    fn finish(self) -> anyhow::Result<()> {
        let mut w = match self.inner {
            SinkInner::Plain(w) => w,
            SinkInner::Gzip(e) => e.finish()?,
            SinkInner::Zstd(e) => e.finish()?,
        };
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(())
    }
}

enum Label {
    Call {
        workload: Cow<'static, str>,
        format: SourceFormat,
    },
    Malformed(&'static str),
}

fn tmp_path(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Generates the calls of the easy profile, writes `out` and its labels
/// sidecar.
pub fn synthesize(cfg: &SynthConfig, out: &Path) -> anyhow::Result<SynthSummary> {
    synthesize_profile(cfg, Profile::Easy, out)
}

/// Generates the calls of `profile`, writes `out` and its labels sidecar.
pub fn synthesize_profile(
    cfg: &SynthConfig,
    profile: Profile,
    out: &Path,
) -> anyhow::Result<SynthSummary> {
    let compression = compression_for(out)?;
    let allowed = allowed_formats(cfg)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let labels_out = labels_path(out);
    let n = cfg.calls;
    let mut prng = rng_for(cfg.seed, STREAM_PLAN, 0);
    let plan = plan(cfg, profile, &allowed, &mut prng);

    let tmp = tmp_path(out);
    let mut w = Writing {
        sink: Sink::create(&tmp, compression)?,
        labels: Vec::with_capacity(n + plan.malformed.len()),
        pending_outputs: Vec::new(),
        batch_seq: 0,
    };
    let mut summary = SynthSummary {
        profile: profile.as_str(),
        seed: cfg.seed,
        calls: n,
        malformed: plan.malformed.len(),
        lines: 0,
        per_workload: BTreeMap::new(),
        per_format: BTreeMap::new(),
        per_variant: BTreeMap::new(),
        malformed_reasons: BTreeMap::new(),
        files: vec![out.to_path_buf(), labels_out.clone()],
    };
    let mut mal_next = 0;
    let bar = crate::util::count_bar(n as u64, "synth");
    let mut i = 0;
    while i < n {
        while mal_next < plan.malformed.len() && plan.malformed[mal_next].0 <= i {
            emit_malformed(cfg, &plan, &mut w, mal_next, plan.malformed[mal_next].1)?;
            mal_next += 1;
        }
        let format = plan.formats[i];
        // An OTel payload may carry the next call too, unless a malformed
        // record goes before it.
        let next_pairs = i + 1 < n
            && plan.formats[i + 1] == SourceFormat::Otel
            && !(mal_next < plan.malformed.len() && plan.malformed[mal_next].0 == i + 1);
        let variants = render_call(cfg, &plan, i, next_pairs, &mut w)?;
        let done = variants.len();
        for (k, v) in variants.into_iter().enumerate() {
            *summary
                .per_workload
                .entry(plan.kinds[i + k].label().into_owned())
                .or_default() += 1;
            *summary
                .per_format
                .entry(format.as_str().to_string())
                .or_default() += 1;
            *summary
                .per_variant
                .entry(format!("{}/{v}", format.as_str()))
                .or_default() += 1;
        }
        // Batch outputs arrive later, a few at a time and out of order.
        if !w.pending_outputs.is_empty() && (w.pending_outputs.len() >= 6 || prng.random_bool(0.3))
        {
            w.pending_outputs.shuffle(&mut prng);
            for o in w.pending_outputs.drain(..) {
                w.sink.emit(&o)?;
            }
        }
        i += done;
        bar.inc(done as u64);
    }
    while mal_next < plan.malformed.len() {
        emit_malformed(cfg, &plan, &mut w, mal_next, plan.malformed[mal_next].1)?;
        mal_next += 1;
    }
    w.pending_outputs.shuffle(&mut prng);
    for o in w.pending_outputs.drain(..) {
        w.sink.emit(&o)?;
    }
    bar.finish_and_clear();
    summary.lines = w.sink.line;
    w.sink
        .finish()
        .with_context(|| format!("writing {}", tmp.display()))?;
    write_labels(&mut w.labels, &mut summary, &labels_out)?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming into {}", out.display()))?;
    Ok(summary)
}

/// The formats `--formats` allows (all by default), in the catalogue's order.
fn allowed_formats(cfg: &SynthConfig) -> anyhow::Result<Vec<SourceFormat>> {
    Ok(match &cfg.formats {
        Some(fs) if fs.is_empty() => return Err(usage("--formats: no format given")),
        Some(fs) => SourceFormat::ALL
            .into_iter()
            .filter(|f| fs.contains(f))
            .collect(),
        None => SourceFormat::ALL.to_vec(),
    })
}

/// What the generation loop writes into: the log, the labels (line, index
/// in the line, label), batch outputs still to come, the batch counter.
struct Writing {
    sink: Sink,
    labels: Vec<(u64, u32, Label)>,
    pending_outputs: Vec<Vec<u8>>,
    batch_seq: usize,
}

/// A call of `kind`: its conversation, the workload slot that picks its
/// usual models, and its calling application.
fn conv_for(kind: Kind, rng: &mut R) -> (Conv, usize, &'static str) {
    let (app, slot) = hard::app(kind);
    (hard::generate(kind, rng), slot, app)
}

/// Call `i`'s conversation and metadata (its own RNG stream).
fn call_at(cfg: &SynthConfig, plan: &Plan, i: usize) -> (Conv, Meta) {
    let n = cfg.calls;
    let mut crng = rng_for(cfg.seed, STREAM_CONTENT, i as u64);
    let (conv, w, app) = conv_for(plan.kinds[i], &mut crng);
    let provider = match plan.formats[i] {
        SourceFormat::OpenaiChat | SourceFormat::OpenaiBatch => Provider::OpenAi,
        SourceFormat::Anthropic => Provider::Anthropic,
        _ if crng.random_bool(0.3) => Provider::Anthropic,
        _ => Provider::OpenAi,
    };
    let slot = SPAN_MS / n.max(1) as i64;
    let ts = BASE_MS + slot * i as i64 + crng.random_range(0..slot.max(1));
    let mut meta = formats::meta(&conv, w, provider, ts, &mut crng);
    meta.app = app;
    (conv, meta)
}

/// Malformed record `k` (its own RNG stream), labelled on its first line.
fn emit_malformed(
    cfg: &SynthConfig,
    plan: &Plan,
    out: &mut Writing,
    k: usize,
    reason: &'static str,
) -> anyhow::Result<()> {
    let mut mrng = rng_for(cfg.seed, STREAM_MALFORMED, k as u64);
    let kind = match plan.profile {
        Profile::Easy => Kind::Easy(mrng.random_range(0..WORKLOADS.len())),
        Profile::Hard => hard::random_kind(&mut mrng),
    };
    let (conv, w, app) = conv_for(kind, &mut mrng);
    let ts = BASE_MS + mrng.random_range(0..SPAN_MS);
    let mut openai = formats::meta(&conv, w, Provider::OpenAi, ts, &mut mrng);
    let mut anthropic = formats::meta(&conv, w, Provider::Anthropic, ts, &mut mrng);
    openai.app = app;
    anthropic.app = app;
    let either = if mrng.random_bool(0.3) {
        &anthropic
    } else {
        &openai
    };
    let metas = malformed::Metas {
        openai: &openai,
        anthropic: &anthropic,
        either,
    };
    let rec = malformed::build(reason, &conv, &metas, &mut mrng);
    let mut first = None;
    for l in &rec.lines {
        let no = out.sink.emit(l)?;
        first.get_or_insert(no);
    }
    if let Some(no) = first {
        out.labels.push((no, 0, Label::Malformed(rec.reason)));
    }
    Ok(())
}

/// Writes call `i` in its planned format (an OTel payload may carry call
/// `i + 1` too when `next_pairs`); returns the variant of each call
/// written (one or two).
fn render_call(
    cfg: &SynthConfig,
    plan: &Plan,
    i: usize,
    next_pairs: bool,
    out: &mut Writing,
) -> anyhow::Result<Vec<String>> {
    let format = plan.formats[i];
    let (conv, meta) = call_at(cfg, plan, i);
    let mut rrng = rng_for(cfg.seed, STREAM_RENDER, i as u64);
    let label = |workload| Label::Call { workload, format };
    let kind = |k: usize| plan.kinds[i + k].label();
    let mut variants: Vec<String> = Vec::new();
    match format {
        SourceFormat::Otel => {
            let pair = next_pairs && rrng.random_bool(0.3);
            let (payload, idx) = if pair {
                let (conv2, meta2) = call_at(cfg, plan, i + 1);
                formats::otel_payload(&[(&conv, &meta), (&conv2, &meta2)], &mut rrng)
            } else {
                formats::otel_payload(&[(&conv, &meta)], &mut rrng)
            };
            let no = out.sink.emit(&serde_json::to_vec(&payload)?)?;
            for (k, (index, form)) in idx.into_iter().enumerate() {
                out.labels.push((no, index, label(kind(k))));
                let shape = if pair { "multi_call_" } else { "" };
                variants.push(format!("{shape}{}", form.name()));
            }
        }
        SourceFormat::OpenaiBatch => {
            let (input, output, v) = formats::openai_batch(&conv, &meta, out.batch_seq, &mut rrng);
            out.batch_seq += 1;
            let no = out.sink.emit(&serde_json::to_vec(&input)?)?;
            out.pending_outputs.push(serde_json::to_vec(&output)?);
            out.labels.push((no, 0, label(kind(0))));
            variants.push(v.to_string());
        }
        _ => {
            let (v, variant) = match format {
                SourceFormat::Anthropic => formats::anthropic(&conv, &meta, &mut rrng),
                SourceFormat::Langfuse => formats::langfuse(&conv, &meta, &mut rrng),
                SourceFormat::Helicone => formats::helicone(&conv, &meta, &mut rrng),
                SourceFormat::Litellm => formats::litellm(&conv, &meta, &mut rrng),
                SourceFormat::Langsmith => formats::langsmith(&conv, &meta, &mut rrng),
                _ => formats::openai_chat(&conv, &meta, &mut rrng),
            };
            let no = out.sink.emit(&serde_json::to_vec(&v)?)?;
            out.labels.push((no, 0, label(kind(0))));
            variants.push(variant.to_string());
        }
    }
    Ok(variants)
}

/// Writes the labels sidecar (sorted by line and index) and counts the
/// malformed reasons into the summary.
fn write_labels(
    labels: &mut [(u64, u32, Label)],
    summary: &mut SynthSummary,
    path: &Path,
) -> anyhow::Result<()> {
    labels.sort_by_key(|(l, idx, _)| (*l, *idx));
    let mut buf = Vec::with_capacity(labels.len() * 80);
    for (line, index, label) in labels.iter() {
        let v = match label {
            Label::Call { workload, format } => {
                serde_json::json!({"line": line, "index": index, "workload": workload, "format": format.as_str()})
            }
            Label::Malformed(reason) => {
                *summary
                    .malformed_reasons
                    .entry(reason.to_string())
                    .or_default() += 1;
                serde_json::json!({"line": line, "malformed": reason})
            }
        };
        serde_json::to_writer(&mut buf, &v)?;
        buf.push(b'\n');
    }
    crate::util::write_atomic(path, &buf)
}
