//! `slmforge ingest`: flags → [`IngestConfig`], then [`crate::ingest::run`],
//! and the summary printed on stderr. Exit 1 with `--strict` when anything
//! was quarantined, 74 when writing the outputs failed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::call::SourceFormat;
use crate::ingest::{self, resolve_key, IngestConfig, IngestOutput};
use crate::util::{usage, IoFailure, EXIT_IO_ERROR};

/// `slmforge ingest`.
#[derive(clap::Args, Debug)]
pub struct IngestArgs {
    /// Log files or directories (.jsonl/.ndjson/.json, optionally .gz/.zst).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output dataset directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Force one format instead of detecting per record: openai_chat,
    /// openai_batch, anthropic, otel, langfuse, helicone, litellm, langsmith.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<SourceFormat>,
    /// Exit 1 when any record was quarantined.
    #[arg(long)]
    pub strict: bool,
    /// File holding the pseudonym key (>= 16 bytes). Else $SLMFORGE_REDACT_KEY,
    /// else a random key for this run only.
    #[arg(long, value_name = "FILE")]
    pub redact_key_file: Option<PathBuf>,
    /// A value never redacted (repeatable).
    #[arg(long = "allow", value_name = "VALUE")]
    pub allow: Vec<String>,
    /// A regex whose full matches are never redacted (repeatable).
    #[arg(long = "allow-regex", value_name = "REGEX")]
    pub allow_regex: Vec<String>,
    /// Do not detect person names (they are context-based and the least precise).
    #[arg(long)]
    pub no_names: bool,
    /// Records larger than this many MiB are quarantined as too_large (a
    /// 128k-token conversation is well under 1 MiB of JSON); 1 to 4096.
    #[arg(long, default_value_t = ingest::DEFAULT_MAX_RECORD_MB, value_parser = parse_max_record_mb)]
    pub max_record_mb: usize,
    /// Records nested deeper than this are quarantined as too_deep.
    #[arg(long, default_value_t = ingest::DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_format(s: &str) -> Result<SourceFormat, String> {
    SourceFormat::parse(s).ok_or_else(|| {
        format!(
            "unknown format `{s}`; one of: {}",
            SourceFormat::ALL.map(|f| f.as_str()).join(", ")
        )
    })
}

fn parse_max_record_mb(s: &str) -> Result<usize, String> {
    let limit = ingest::MAX_RECORD_MB_LIMIT;
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=limit as u64).contains(&n) => Ok(n as usize),
        _ => Err(format!("`{s}` is not a size in MiB from 1 to {limit}")),
    }
}

pub fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let (key, key_source) = resolve_key(args.redact_key_file.as_deref())?;
    let mut cfg = IngestConfig::new(key, key_source);
    cfg.format = args.format;
    cfg.redact.allow_values = args.allow;
    cfg.redact.allow_regexes = args.allow_regex;
    cfg.redact.detect_names = !args.no_names;
    cfg.max_record_bytes = args
        .max_record_mb
        .checked_mul(1 << 20)
        .ok_or_else(|| usage("--max-record-mb is too large for this machine"))?;
    cfg.max_depth = args.max_depth;
    cfg.threads = args.threads;
    let out = match ingest::run(&cfg, &args.inputs, &args.out) {
        Ok(out) => out,
        Err(e) => {
            return match e.downcast_ref::<IoFailure>() {
                Some(f) => {
                    eprintln!("slmforge: {f}");
                    Ok(ExitCode::from(EXIT_IO_ERROR))
                }
                None => Err(e),
            }
        }
    };
    eprint!("{}", summary(&out));
    Ok(if args.strict && out.report.quarantined > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn top(map: &BTreeMap<String, u64>, n: usize) -> String {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .take(n)
        .map(|(k, c)| format!("{k} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The short human summary printed on stderr.
pub fn summary(out: &IngestOutput) -> String {
    let r = &out.report;
    let mb = r.input_bytes as f64 / 1e6;
    let secs = out.elapsed_s.max(1e-9);
    let mut s = format!(
        "ingest: {} records from {} file(s), {:.1} MB in {:.1} s ({:.1} MB/s, {:.0} calls/s)\n",
        r.read,
        r.files.len(),
        mb,
        out.elapsed_s,
        mb / secs,
        r.read as f64 / secs
    );
    s += &format!(
        "  written      {:>8}  -> {}\n",
        r.written,
        r.outputs.get("calls").map(String::as_str).unwrap_or("")
    );
    s += &format!("  duplicates   {:>8}\n", r.duplicates);
    s += &format!("  quarantined  {:>8}", r.quarantined);
    if r.quarantined > 0 {
        s += &format!(
            "  -> {} ({})",
            r.outputs
                .get("quarantine")
                .map(String::as_str)
                .unwrap_or(""),
            top(&r.quarantine_reasons, 6)
        );
    }
    s += "\n";
    s += &format!(
        "  redacted     {:>8} values ({})\n",
        r.redactions_total,
        top(&r.redactions, 6)
    );
    if !r.data_quality.is_empty() {
        s += &format!(
            "  data quality (records kept): {}\n",
            top(&r.data_quality, 6)
        );
    }
    if !r.skipped_inputs.is_empty() {
        let shown: Vec<String> = r
            .skipped_inputs
            .iter()
            .take(4)
            .map(|k| format!("{} ({})", k.path, k.reason.replace('_', " ")))
            .collect();
        let more = r.skipped_inputs.len().saturating_sub(shown.len());
        s += &format!(
            "  inputs skipped: {}{}\n",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more (ingest.json)")
            } else {
                String::new()
            }
        );
    }
    if !r.skipped_non_llm.is_empty() {
        s += &format!(
            "  not LLM calls (skipped): {}\n",
            top(&r.skipped_non_llm, 4)
        );
    }
    let fmts: Vec<String> = r
        .formats
        .iter()
        .map(|(k, c)| format!("{k} {}", c.read))
        .collect();
    s += &format!("  formats: {}\n", fmts.join(", "));
    if r.key_source == "random" {
        s += "  note: random redaction key (pass --redact-key-file or set SLMFORGE_REDACT_KEY for pseudonyms stable across runs)\n";
    }
    s
}
