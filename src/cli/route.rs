//! `slmforge route --table routing.json INPUT...`: reads requests in any
//! format ingest reads (responses not needed), redacts them as ingest does,
//! and writes one JSON line per request — its origin, id, route, target,
//! distance, threshold and reason, and for an adapter trained on pruned
//! prompts what its rule replaces in this request — then a summary on
//! stderr. A record that cannot be read gets a line with its reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use serde_json::json;

use crate::artifact::calls::read_calls;
use crate::artifact::routing::{read_table, RouteTarget, LLM_ROUTE};
use crate::ingest::{self, read_quarantine, resolve_key, IngestConfig};
use crate::ml::embed::LazyEmbedder;
use crate::ml::models::embedder_dir;
use crate::ml::runtime::init_runtime;

#[derive(clap::Args, Debug)]
pub struct RouteArgs {
    /// The routing table (`slmforge export` writes RUN/export/routing.json).
    #[arg(long)]
    pub table: PathBuf,
    /// Request logs or directories (any format ingest reads; bare OpenAI
    /// chat and Anthropic Messages request bodies too).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Write the JSON lines here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The redaction key ingest used (pseudonyms then match the dataset's).
    #[arg(long, value_name = "FILE")]
    pub redact_key_file: Option<PathBuf>,
    /// Values never redacted (as for ingest).
    #[arg(long = "allow", value_name = "VALUE")]
    pub allow: Vec<String>,
}

pub fn run(args: RouteArgs) -> Result<ExitCode> {
    init_runtime();
    let t0 = Instant::now();
    let table = read_table(&args.table)?;
    let (key, key_source) = resolve_key(args.redact_key_file.as_deref())?;
    let mut cfg = IngestConfig::new(key, key_source);
    cfg.redact.allow_values = args.allow.clone();
    cfg.requests_only = true;
    cfg.progress = false;
    let work = std::env::temp_dir().join(format!("slmforge-route-{}", std::process::id()));
    if key_source == ingest::KeySource::Random {
        eprintln!(
            "route: no redaction key given (--redact-key-file or SLMFORGE_REDACT_KEY): pseudonyms will not match the dataset's"
        );
    }
    let res = (|| -> Result<_> {
        let out = ingest::run(&cfg, &args.inputs, &work)?;
        Ok((
            out.report.files,
            read_calls(&work)?,
            read_quarantine(&work)?,
        ))
    })();
    let _ = std::fs::remove_dir_all(&work);
    let (files, calls, bad) = res?;
    // Lines come out in input order: file in discovery order, then position.
    let file_rank: std::collections::HashMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.file.clone(), i))
        .collect();
    let rank = |f: &str| file_rank.get(f).copied().unwrap_or(usize::MAX);
    let t_read = t0.elapsed().as_secs_f64();
    let embedder = LazyEmbedder::new(&embedder_dir())?;
    let refs: Vec<&crate::call::Call> = calls.iter().map(|c| &**c).collect();
    let t1 = Instant::now();
    let decisions = crate::route::route_calls(&table, &refs, &embedder, &ProgressBar::hidden())?;
    let t_route = t1.elapsed().as_secs_f64();

    let mut lines: Vec<((usize, u64, u32), serde_json::Value)> = Vec::new();
    let mut per_route: BTreeMap<String, usize> = BTreeMap::new();
    let mut llm_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (c, d) in calls.iter().zip(&decisions) {
        // A pruned adapter needs the request pruned: say what the rule does to it.
        let (target, pruned) = match d.routed.map(|i| &table.routes[i].target) {
            Some(RouteTarget::Adapter { adapter, prune, .. }) => (
                adapter.clone(),
                prune.as_ref().map(|r| {
                    let p = r.apply(&c.messages, &c.tools);
                    json!({"system": p.system, "tools": p.tools_pruned})
                }),
            ),
            _ => (LLM_ROUTE.to_string(), None),
        };
        *per_route.entry(d.route.clone()).or_default() += 1;
        if d.routed.is_none() {
            *llm_reasons.entry(d.reason.clone()).or_default() += 1;
        }
        let o = &c.origin;
        lines.push((
            (rank(&o.file), o.line, o.index),
            json!({"file": o.file, "line": o.line, "index": o.index, "id": c.id(),
                   "route": d.route, "target": target, "nearest": d.nearest,
                   "distance": d.distance, "threshold": d.threshold, "reason": d.reason,
                   "prune": pruned}),
        ));
    }
    for q in &bad {
        let reason = format!("unreadable request: {} ({})", q.reason, q.detail);
        *per_route.entry(LLM_ROUTE.to_string()).or_default() += 1;
        *llm_reasons
            .entry(format!("unreadable request: {}", q.reason))
            .or_default() += 1;
        lines.push((
            (rank(&q.file), q.line, q.index),
            json!({"file": q.file, "line": q.line, "index": q.index, "id": null,
                   "route": LLM_ROUTE, "target": LLM_ROUTE, "nearest": null,
                   "distance": null, "threshold": null, "reason": reason}),
        ));
    }
    lines.sort_by_key(|l| l.0);
    let mut w: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for (_, v) in &lines {
        writeln!(w, "{v}")?;
    }
    w.flush()?;
    let n = lines.len().max(1);
    eprintln!(
        "route: {} requests ({} unreadable) in {:.2} s: read + redact {:.2} s, embed + route {:.2} s ({:.0} requests/s)",
        lines.len(),
        bad.len(),
        t0.elapsed().as_secs_f64(),
        t_read,
        t_route,
        calls.len() as f64 / t_route.max(1e-9)
    );
    for (r, c) in &per_route {
        eprintln!("  {r:<14} {c:>6}  {:>5.1}%", 100.0 * *c as f64 / n as f64);
    }
    if !llm_reasons.is_empty() {
        eprintln!("  kept on the LLM because:");
        for (r, c) in &llm_reasons {
            eprintln!("    {c:>6}  {r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
