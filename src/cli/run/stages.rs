//! The stages of `slmforge run`, each deciding from its inputs' hashes
//! whether to run, run incrementally or skip, then calling the stage's own
//! entry function (`ingest::run`, `cluster::run`, `select`, `tune::run`,
//! `export::run` + `route::calibrate`) exactly as the subcommands do.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;

use super::config::{ClusterPick, PipelineFile};
use super::state::{file_key, input_files, key_of, TunedRecord};
use super::{Ctx, Stage};
use crate::artifact::adapter::StopReason;
use crate::artifact::calls::{read_rows, CallRow, CallsWriter};
use crate::artifact::clusters::{
    read_assignment_rows, read_summary, write_assignments, Assignment,
};
use crate::artifact::export::{EXPORT_DIR, MANIFEST_FILE};
use crate::artifact::run::{Drift, TuneDecision, DEPLOYED_DIR};
use crate::artifact::{
    ASSIGNMENTS_FILE, CALLS_FILE, INGEST_REPORT_FILE, OUTLIER, PLAN_FILE, QUARANTINE_FILE,
    SUMMARY_FILE,
};
use crate::export::{ExportConfig, Format};
use crate::ingest::{self, IngestConfig, KeySource};
use crate::ml::embed::LazyEmbedder;
use crate::ml::models::embedder_dir;
use crate::redact::RedactKey;
use crate::route::CalibrationConfig;
use crate::tune::{self, Outcome, Session, TuneConfig};
use crate::util::usage;

/// The work directory's lock (an advisory file lock on `WORK/.run.lock`,
/// released by the operating system when the process ends, however it
/// ends): a second `run` on the same work directory exits 2 instead of
/// mixing two runs' artifacts.
pub struct WorkLock(#[allow(dead_code)] std::fs::File);

pub fn lock_work(work: &Path) -> anyhow::Result<WorkLock> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let path = work.join(".run.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(WorkLock(f)),
        Err(std::fs::TryLockError::WouldBlock) => Err(usage(format!(
            "{} is in use by another `slmforge run` (it holds {})",
            work.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

pub fn embedder(file: &PipelineFile) -> anyhow::Result<LazyEmbedder> {
    LazyEmbedder::new(&file.cluster.embedder.clone().unwrap_or_else(embedder_dir))
}

fn json_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("settings serialise")
}

/// The redaction key: the pipeline's key file, `SLMFORGE_REDACT_KEY`, the
/// demo key, or one made once and kept in `WORK/redact.key`.
fn redact_key(ctx: &Ctx) -> anyhow::Result<(RedactKey, KeySource)> {
    let f = &ctx.file.ingest;
    if f.key_file.is_some() {
        return ingest::resolve_key(f.key_file.as_deref());
    }
    if let Some(k) = RedactKey::from_env().map_err(|e| usage(format!("{e:#}")))? {
        return Ok((k, KeySource::Env));
    }
    if f.demo_key {
        return Ok((
            super::super::demo::demo_key(ctx.file.pipeline.seed)?,
            KeySource::Demo,
        ));
    }
    let path = ctx.work.join("redact.key");
    if !path.exists() {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random key: {e}"))?;
        crate::util::write_atomic(&path, hex::encode(bytes).as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        eprintln!(
            "run: made a redaction key in {} (keep it: the same key keeps pseudonyms consistent)",
            path.display()
        );
    }
    Ok((
        RedactKey::from_file(&path).with_context(|| format!("reading {}", path.display()))?,
        KeySource::File,
    ))
}

/// Ingest: new log files (by content) into `RUN/ingest/`, merged into the
/// dataset by call id. A change of the redaction settings or key (or
/// `--force`, or no dataset yet) reads every input file again and rebuilds
/// the dataset from them; that is refused when files ingested earlier are
/// no longer among the inputs (their calls would leave the dataset),
/// unless `--force`.
pub fn ingest(ctx: &mut Ctx, t0: Instant) -> anyhow::Result<()> {
    let (key, source) = redact_key(ctx)?;
    let f = ctx.file.ingest.clone();
    let settings = key_of(&[
        &json_bytes(&(&f.allow_values, &f.allow_regexes, f.detect_names)),
        key.fingerprint().as_bytes(),
    ]);
    let mut icfg = IngestConfig::new(key, source);
    icfg.redact.allow_values = f.allow_values.clone();
    icfg.redact.allow_regexes = f.allow_regexes.clone();
    icfg.redact.detect_names = f.detect_names;
    let files = input_files(&icfg, &f.inputs, &ctx.work)?;
    let have = ctx.dataset.join(CALLS_FILE).exists();
    let changed = have && !ctx.state.unchanged("ingest", &settings);
    let rebuild = ctx.force || !have || changed;
    if changed && !ctx.force {
        let present: HashSet<&String> = files.iter().map(|(_, h)| h).collect();
        let gone = ctx
            .state
            .ingested_files
            .keys()
            .filter(|h| !present.contains(h))
            .count();
        if gone > 0 {
            return Err(usage(format!(
                "the redaction settings or key changed, so the dataset must be rebuilt from the log files, but {gone} file(s) ingested earlier are no longer among the inputs: their calls would leave the dataset. Put them back, restore the key, or run with --force to rebuild from the files present"
            )));
        }
    }
    let todo: Vec<&(PathBuf, String)> = files
        .iter()
        .filter(|(_, h)| rebuild || !ctx.state.ingested_files.contains_key(h))
        .collect();
    if todo.is_empty() {
        ctx.record.changes.dataset_calls = read_rows(&ctx.dataset)?.len();
        let n = files.len();
        ctx.log(
            Stage::Ingest,
            "skipped",
            format!("no new log files ({n} already ingested)"),
            t0,
        );
        return Ok(());
    }
    let staging = ctx.run_dir.join("ingest");
    let paths: Vec<PathBuf> = todo.iter().map(|(p, _)| p.clone()).collect();
    let out = ingest::run(&icfg, &paths, &staging)?;
    eprint!("{}", super::super::ingest::summary(&out));
    std::fs::create_dir_all(&ctx.dataset)?;
    let added = if rebuild {
        if !staging.join(CALLS_FILE).exists() {
            return Err(usage(format!(
                "no call could be read from the {} input file(s) (see {}): the dataset was left as it was",
                todo.len(),
                staging.join(QUARANTINE_FILE).display()
            )));
        }
        for name in [QUARANTINE_FILE, INGEST_REPORT_FILE, CALLS_FILE] {
            let bytes = std::fs::read(staging.join(name))
                .with_context(|| format!("reading {}", staging.join(name).display()))?;
            crate::util::write_atomic(&ctx.dataset.join(name), &bytes)?;
        }
        ctx.state.ingested_files.clear();
        out.report.written as usize
    } else {
        merge_calls(&ctx.dataset, &staging)?
    };
    for (p, h) in &todo {
        let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        ctx.state.ingested_files.insert(h.clone(), size);
    }
    ctx.state.record("ingest", settings, &ctx.run_id);
    let c = &mut ctx.record.changes;
    c.new_files = todo.len();
    c.new_calls = added;
    c.dataset_calls = read_rows(&ctx.dataset)?.len();
    c.ingest_dir = Some(staging);
    let how = if rebuild { "ran" } else { "incremental" };
    let why = if !rebuild {
        format!("{} new file(s): {added} new calls", todo.len())
    } else if changed {
        format!("redaction settings or key changed: {} file(s) read again, dataset rebuilt: {added} calls", todo.len())
    } else {
        format!(
            "{} file(s) read, dataset rebuilt: {added} calls",
            todo.len()
        )
    };
    ctx.log(Stage::Ingest, how, why, t0);
    Ok(())
}

/// Appends the staging dataset's calls that the dataset lacks (by call
/// id); returns how many. The new quarantine and report are this run's
/// (kept in the staging directory, which the report reads).
fn merge_calls(dataset: &Path, staging: &Path) -> anyhow::Result<usize> {
    let old = read_rows(dataset)?;
    let known: HashSet<String> = old.iter().map(|r| r.call_id.clone()).collect();
    let fresh: Vec<CallRow> = match read_rows(staging) {
        Ok(rows) => rows
            .into_iter()
            .filter(|r| !known.contains(&r.call_id))
            .collect(),
        Err(_) => Vec::new(), // nothing written (every record quarantined)
    };
    if fresh.is_empty() {
        return Ok(0);
    }
    let mut w = CallsWriter::create(&dataset.join(CALLS_FILE))?;
    w.write(&old)?;
    w.write(&fresh)?;
    w.finish()?;
    Ok(fresh.len())
}

/// Cluster: from scratch on the first run, a settings change or `--force`;
/// otherwise new calls join the existing clusters unless drift crosses a
/// threshold.
pub fn cluster(ctx: &mut Ctx, embedder: &LazyEmbedder, t0: Instant) -> anyhow::Result<()> {
    let calls_key = file_key(&ctx.dataset.join(CALLS_FILE))?;
    if calls_key.is_empty() {
        return Err(usage(format!(
            "no dataset in {}: run the ingest stage first",
            ctx.dataset.display()
        )));
    }
    let c = &ctx.file.cluster;
    let settings = key_of(&[
        &json_bytes(&(c.k, c.min_cluster_size, &c.embedder, &c.truth)),
        &ctx.file.pipeline.seed.to_le_bytes(),
    ]);
    let key = key_of(&[calls_key.as_bytes(), settings.as_bytes()]);
    let have =
        ctx.dataset.join(SUMMARY_FILE).exists() && ctx.dataset.join(ASSIGNMENTS_FILE).exists();
    if !ctx.force && have && ctx.state.unchanged("cluster", &key) {
        ctx.log(
            Stage::Cluster,
            "skipped",
            "calls and settings unchanged".into(),
            t0,
        );
        return Ok(());
    }
    let why = if ctx.force {
        "--force".to_string()
    } else if !have {
        "first clustering".to_string()
    } else if !ctx.state.unchanged("cluster-settings", &settings) {
        "cluster settings changed".to_string()
    } else {
        match join_existing(ctx, embedder)? {
            Ok(drift) => {
                let n = drift.new_calls;
                ctx.record.changes.drift = Some(drift);
                super::gate::reconcile(ctx)?;
                ctx.state.record("cluster", key, &ctx.run_id);
                ctx.log(
                    Stage::Cluster,
                    "incremental",
                    format!("{n} new calls joined the clusters (drift under every threshold)"),
                    t0,
                );
                return Ok(());
            }
            Err((drift, why)) => {
                ctx.record.changes.drift = drift;
                why
            }
        }
    };
    let ccfg = crate::cluster::ClusterConfig {
        seed: ctx.file.pipeline.seed,
        k: c.k,
        min_cluster_size: c
            .min_cluster_size
            .unwrap_or(crate::cluster::ClusterConfig::default().min_cluster_size),
        truth: c.truth.clone().filter(|t| t.exists()),
        ..Default::default()
    };
    let out = crate::cluster::run(&ccfg, &ctx.dataset, embedder)?;
    eprint!("{}", super::super::cluster::summary_text(&out));
    super::gate::reconcile(ctx)?;
    ctx.record.changes.reclustered = Some(why.clone());
    ctx.state.record("cluster", key, &ctx.run_id);
    ctx.state.record("cluster-settings", settings, &ctx.run_id);
    ctx.log(Stage::Cluster, "ran", why, t0);
    Ok(())
}

fn names(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Places the dataset's unassigned calls in the existing clusters. `Ok`:
/// they joined (clusters.parquet updated); `Err((drift, why))`: cluster
/// again.
#[allow(clippy::type_complexity)]
fn join_existing(
    ctx: &Ctx,
    embedder: &LazyEmbedder,
) -> anyhow::Result<Result<Drift, (Option<Drift>, String)>> {
    let rows = read_rows(&ctx.dataset)?;
    let ids: HashSet<&str> = rows.iter().map(|r| r.call_id.as_str()).collect();
    let assigned = read_assignment_rows(&ctx.dataset)?;
    let known: HashSet<&str> = assigned.iter().map(|a| a.call_id.as_str()).collect();
    if assigned.iter().any(|a| !ids.contains(a.call_id.as_str())) {
        return Ok(Err((
            None,
            "the clusters hold calls the dataset no longer has".into(),
        )));
    }
    let new_rows: Vec<&CallRow> = rows
        .iter()
        .filter(|r| !known.contains(r.call_id.as_str()))
        .collect();
    if new_rows.is_empty() {
        return Ok(Ok(Drift::default()));
    }
    let summary = read_summary(&ctx.dataset)?;
    let calls = new_rows
        .iter()
        .map(|r| r.to_call())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&crate::call::Call> = calls.iter().map(|c| &**c).collect();
    let bar = crate::util::count_bar(refs.len() as u64, "placing new calls");
    let placed = crate::route::assign_batch(&summary, &refs, embedder, &bar)?;
    bar.finish_and_clear();
    // Drift: outliers, the change in cluster shares, tool names never seen.
    let mut old_share: BTreeMap<i32, f64> = BTreeMap::new();
    for a in &assigned {
        *old_share.entry(a.cluster).or_default() += 1.0 / assigned.len() as f64;
    }
    let mut new_share: BTreeMap<i32, f64> = BTreeMap::new();
    for (c, _) in &placed {
        *new_share.entry(c.unwrap_or(OUTLIER)).or_default() += 1.0 / placed.len() as f64;
    }
    let keys: BTreeSet<i32> = old_share.keys().chain(new_share.keys()).copied().collect();
    let share_change = 0.5
        * keys
            .iter()
            .map(|k| (old_share.get(k).unwrap_or(&0.0) - new_share.get(k).unwrap_or(&0.0)).abs())
            .sum::<f64>();
    let outlier_share =
        placed.iter().filter(|(c, _)| c.is_none()).count() as f64 / placed.len() as f64;
    let seen: HashSet<&str> = rows
        .iter()
        .filter(|r| known.contains(r.call_id.as_str()))
        .flat_map(|r| names(&r.tool_names).chain(names(&r.called_tools)))
        .collect();
    let new_tools: Vec<String> = new_rows
        .iter()
        .flat_map(|r| names(&r.tool_names).chain(names(&r.called_tools)))
        .filter(|t| !seen.contains(t))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(String::from)
        .collect();
    let d = &ctx.file.cluster.drift;
    let mut crossed = Vec::new();
    if outlier_share > d.max_outlier_share {
        crossed.push(format!(
            "outlier share {:.0}% > {:.0}%",
            100.0 * outlier_share,
            100.0 * d.max_outlier_share
        ));
    }
    if share_change > d.max_share_change {
        crossed.push(format!(
            "cluster shares moved {share_change:.2} > {:.2}",
            d.max_share_change
        ));
    }
    if d.on_new_tools && !new_tools.is_empty() {
        crossed.push(format!("new tool names: {}", new_tools.join(", ")));
    }
    let drift = Drift {
        new_calls: placed.len(),
        outlier_share,
        share_change,
        new_tools,
        crossed: crossed.clone(),
    };
    if !crossed.is_empty() {
        return Ok(Err((Some(drift), format!("drift: {}", crossed.join("; ")))));
    }
    let mut all = assigned;
    all.extend(new_rows.iter().zip(&placed).map(|(r, (c, d))| Assignment {
        call_id: r.call_id.clone(),
        cluster: c.unwrap_or(OUTLIER),
        distance: *d,
    }));
    write_assignments(&ctx.dataset.join(ASSIGNMENTS_FILE), &all)?;
    Ok(Ok(drift))
}

/// `slmforge select`'s arguments, parsed as on its command line.
#[derive(Parser)]
struct SelectCmd {
    #[command(flatten)]
    args: super::super::select::SelectArgs,
}

/// Select (when enabled): base-model choice and the serving plan.
pub fn select(ctx: &mut Ctx, t0: Instant) -> anyhow::Result<()> {
    let s = ctx.file.select.clone();
    if !s.enabled {
        ctx.log(Stage::Select, "off", "[select] enabled = false".into(), t0);
        return Ok(());
    }
    let key = key_of(&[
        file_key(&ctx.dataset.join(CALLS_FILE))?.as_bytes(),
        file_key(&ctx.dataset.join(ASSIGNMENTS_FILE))?.as_bytes(),
        &json_bytes(&s),
        &ctx.file.pipeline.seed.to_le_bytes(),
    ]);
    if !ctx.force && ctx.state.unchanged("select", &key) && ctx.dataset.join(PLAN_FILE).exists() {
        ctx.log(
            Stage::Select,
            "skipped",
            "clusters and settings unchanged".into(),
            t0,
        );
        return Ok(());
    }
    let mut argv: Vec<String> = vec!["select".into(), ctx.dataset.display().to_string()];
    argv.extend(["--seed".into(), ctx.file.pipeline.seed.to_string()]);
    if !s.candidates.is_empty() {
        argv.extend(["--candidates".into(), s.candidates.join(",")]);
    }
    if let Some(v) = s.val_calls {
        argv.extend(["--val-calls".into(), v.to_string()]);
    }
    if let Some(h) = &s.hardware {
        argv.extend(["--hardware".into(), h.clone()]);
    }
    if let Some(h) = &s.hardware_config {
        argv.extend(["--hardware-config".into(), h.display().to_string()]);
    }
    let cmd = SelectCmd::try_parse_from(&argv).map_err(|e| usage(format!("[select]: {e}")))?;
    let code = super::super::select::run(cmd.args)?;
    anyhow::ensure!(code == std::process::ExitCode::SUCCESS, "select failed");
    ctx.state.record("select", key, &ctx.run_id);
    ctx.log(
        Stage::Select,
        "ran",
        format!("plan in {}", ctx.dataset.join(PLAN_FILE).display()),
        t0,
    );
    Ok(())
}

/// The tune settings the pipeline file gives.
pub fn tune_config(file: &PipelineFile) -> TuneConfig {
    let t = &file.tune;
    let mut c = TuneConfig {
        base_model: t.model.clone(),
        seed: file.pipeline.seed,
        max_steps: Some(t.steps),
        time_budget_secs: (t.time_budget_secs > 0.0).then_some(t.time_budget_secs),
        ..Default::default()
    };
    c.eval.max_test_calls = t.max_test_calls;
    c.eval.guided = t.guided_eval;
    if let Some(v) = t.min_examples {
        c.min_examples = v;
    }
    if let Some(v) = t.lr {
        c.lr = v;
        c.warmup_steps = c.warmup_steps.min(t.steps / 4);
    }
    if let Some(v) = t.rank {
        c.lora.rank = v;
        c.lora.alpha = 2.0 * v as f64;
    }
    if let Some(v) = t.batch_size {
        c.batch_size = v;
        c.eval.batch_size = v;
    }
    if let Some(v) = t.max_len {
        c.max_len = v;
    }
    if let Some(v) = t.eval_every {
        c.eval_every = v;
    }
    c
}

/// The hash of what decides an adapter: training settings, base, eval.
pub fn tune_settings_key(c: &TuneConfig) -> String {
    key_of(&[
        &json_bytes(&c.training_fingerprint()),
        c.base_model.as_bytes(),
        &json_bytes(&(c.eval.max_test_calls, c.eval.guided, c.min_examples)),
    ])
}

/// Cluster id → its member call ids, sorted.
pub type Members = BTreeMap<i32, Vec<String>>;

/// Which clusters to tune in this run and why (the others and why not).
pub fn tune_plan(ctx: &Ctx, tcfg: &TuneConfig) -> anyhow::Result<(Vec<TuneDecision>, Members)> {
    let settings = tune_settings_key(tcfg);
    let mut members: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for a in read_assignment_rows(&ctx.dataset)? {
        if a.cluster != OUTLIER {
            members.entry(a.cluster).or_default().push(a.call_id);
        }
    }
    for v in members.values_mut() {
        v.sort();
    }
    let summary = read_summary(&ctx.dataset)?;
    let mut clusters = summary.clusters.clone();
    for c in &mut clusters {
        c.size = members.get(&c.id).map_or(0, Vec::len);
    }
    let chosen: Vec<i32> = match ClusterPick::parse(&ctx.file.tune.clusters)? {
        ClusterPick::Largest(n) => crate::select::demo_clusters(&clusters, n, tcfg.min_examples),
        ClusterPick::All => clusters
            .iter()
            .filter(|c| c.size >= tcfg.min_examples)
            .map(|c| c.id)
            .collect(),
        ClusterPick::Plan => {
            crate::select::tune_targets(&ctx.dataset, None, &tcfg.base_model, tcfg.min_examples)?
                .iter()
                .map(|t| t.cluster)
                .collect()
        }
        ClusterPick::Ids(ids) => {
            for id in &ids {
                if !members.contains_key(id) {
                    return Err(usage(format!(
                        "[tune] clusters: no cluster {id} (clusters: {:?})",
                        members.keys().collect::<Vec<_>>()
                    )));
                }
            }
            ids
        }
    };
    let mut out = Vec::new();
    for id in chosen {
        let now = members.get(&id).cloned().unwrap_or_default();
        let (tuned, reason) = match ctx.state.tuned.get(&id) {
            _ if ctx.force => (true, "--force".to_string()),
            None => (true, "not tuned before".to_string()),
            Some(r) if r.settings != settings => (true, "tune settings changed".to_string()),
            Some(r) => {
                let before: HashSet<&String> = r.calls.iter().collect();
                let new = now.iter().filter(|c| !before.contains(c)).count();
                let share = new as f64 / r.calls.len().max(1) as f64;
                let msg = format!(
                    "{new} new calls ({:.0}% of the {} it was tuned on)",
                    100.0 * share,
                    r.calls.len()
                );
                if share >= ctx.file.tune.retune_min_change {
                    (true, msg)
                } else {
                    (
                        false,
                        format!(
                            "{msg}, under retune_min_change {:.0}%",
                            100.0 * ctx.file.tune.retune_min_change
                        ),
                    )
                }
            }
        };
        out.push(TuneDecision {
            cluster: id,
            tuned,
            reason,
        });
    }
    Ok((out, members))
}

/// Tune the clusters that changed enough, then gate and promote. `Some(130)`
/// when interrupted.
pub fn tune(ctx: &mut Ctx, t0: Instant) -> anyhow::Result<Option<u8>> {
    let tcfg = tune_config(&ctx.file);
    let (decisions, members) = tune_plan(ctx, &tcfg)?;
    let todo: Vec<i32> = decisions
        .iter()
        .filter(|d| d.tuned)
        .map(|d| d.cluster)
        .collect();
    ctx.record.changes.tuned = decisions.clone();
    if todo.is_empty() {
        let why = if decisions.is_empty() {
            format!("no cluster has {} calls", tcfg.min_examples)
        } else {
            "no cluster changed enough to tune again".to_string()
        };
        ctx.log(Stage::Tune, "skipped", why, t0);
        return Ok(None);
    }
    let out = ctx.run_dir.join("adapters");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let targets = crate::select::tune_targets(
        &ctx.dataset,
        Some(&todo),
        &tcfg.base_model,
        tcfg.min_examples,
    )?;
    super::super::tune::install_ctrlc();
    let tuned = tune::run(&tcfg, &Session::default(), &ctx.dataset, &targets, &out)?;
    eprint!("{}", tune::report::summary_text(&tuned));
    if tuned.outcome == Outcome::Interrupted {
        ctx.log(
            Stage::Tune,
            "interrupted",
            "Ctrl-C: run again to start the tuning over".into(),
            t0,
        );
        return Ok(Some(130));
    }
    let settings = tune_settings_key(&tcfg);
    for r in &tuned.clusters {
        if let Some(t) = r
            .train
            .as_ref()
            .filter(|t| t.stop_reason == StopReason::TimeBudget)
        {
            eprintln!(
                "run: WARNING: the {} s safety cap stopped cluster {} at step {} of {}: its results depend on this machine's speed",
                ctx.file.tune.time_budget_secs, r.cluster, t.steps, ctx.file.tune.steps
            );
        }
        ctx.state.tuned.insert(
            r.cluster,
            TunedRecord {
                run_id: ctx.run_id.clone(),
                settings: settings.clone(),
                calls: members.get(&r.cluster).cloned().unwrap_or_default(),
            },
        );
    }
    super::gate::decide(ctx, &out, &tuned.clusters)?;
    let list = todo
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    ctx.log(Stage::Tune, "ran", format!("tuned cluster(s) {list}"), t0);
    Ok(None)
}

/// Export the deployed adapters and calibrate the routing table, unless
/// neither they, the dataset nor the settings changed.
pub fn export(ctx: &mut Ctx, embedder: &LazyEmbedder, t0: Instant) -> anyhow::Result<()> {
    let deployed = ctx.work.join(DEPLOYED_DIR);
    let summary = deployed.join(crate::artifact::adapter::SUMMARY_JSON);
    if !summary.exists() {
        ctx.log(Stage::Export, "skipped", "nothing deployed yet".into(), t0);
        return Ok(());
    }
    let e = ctx.file.export.clone();
    let key = key_of(&[
        &std::fs::read(&summary)?,
        file_key(&ctx.dataset.join(CALLS_FILE))?.as_bytes(),
        file_key(&ctx.dataset.join(SUMMARY_FILE))?.as_bytes(),
        &json_bytes(&e),
    ]);
    let out = deployed.join(EXPORT_DIR);
    if !ctx.force && ctx.state.unchanged("export", &key) && out.join(MANIFEST_FILE).exists() {
        ctx.log(
            Stage::Export,
            "skipped",
            "deployed adapters, dataset and settings unchanged".into(),
            t0,
        );
        return Ok(());
    }
    let xcfg = ExportConfig {
        formats: e.formats.iter().filter_map(|f| Format::parse(f)).collect(),
        merged_quant: super::config::parse_merged_quant(&e.merged_quant)?,
        ..Default::default()
    };
    let defaults = CalibrationConfig::default();
    let cal = e.route.then_some(CalibrationConfig {
        accuracy_target: e.accuracy_target.unwrap_or(defaults.accuracy_target),
        min_routed_calls: e.min_routed_calls.unwrap_or(defaults.min_routed_calls),
        guided: e.guided,
        ..CalibrationConfig::default()
    });
    let ok = super::super::export::export_and_route(
        &xcfg,
        cal.as_ref()
            .map(|c| (c, embedder as &dyn crate::ml::embed::TextEmbedder)),
        &deployed,
        &ctx.dataset,
        &out,
    )?;
    ctx.export_failed = !ok;
    if ok {
        // A failed export is exported again by the next run (and fails it
        // again) rather than skipped.
        ctx.state.record("export", key, &ctx.run_id);
    }
    let why = if ok {
        "exported and verified"
    } else {
        "a verification FAILED"
    };
    ctx.log(
        Stage::Export,
        "ran",
        format!("{why}: {}", out.display()),
        t0,
    );
    Ok(())
}
