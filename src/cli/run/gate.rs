//! The regression gate and promotion. A new adapter's score is its
//! held-out exact-match rate (schema-guided when guided evaluation ran, as
//! deployed); it replaces the deployed adapter of its cluster unless it
//! scores lower than that adapter's recorded score by more than
//! `[gate] tolerance` (then it is `blocked` and the run exits 3), or
//! promotion is left to a person (`held`, `--no-promote`; promote later with
//! `--promote RUN_ID`). Promoted adapters are copied into `WORK/deployed/`,
//! an adapter run directory (`summary.json`, `tune_config.json`,
//! `cluster-ID/`) that `export` reads like any other.
//!
//! The recorded score of the deployed adapter was measured on the test
//! calls of its own run; when new calls joined the cluster, the new
//! adapter's test calls include some of them (the split is a function of
//! the call id, so the earlier test calls stay test calls).

use std::path::Path;

use anyhow::Context;

use super::state::Promoted;
use super::Ctx;
use std::collections::{HashMap, HashSet};

use crate::artifact::adapter::{
    cluster_dir, read_results, read_run_settings, ClusterResult, ClusterStatus, EvalReport,
    EVAL_FILE, SUMMARY_FORMAT, SUMMARY_JSON, SUMMARY_MD, TUNE_CONFIG_FILE, TUNE_FILE,
};
use crate::artifact::clusters::read_assignment_rows;
use crate::artifact::run::{read_run, GateDecision, DEPLOYED_DIR, DEPLOYED_FROM, RUNS_DIR};

/// The gate's score of an adapter directory: (exact-match rate, calls).
pub fn score(dir: &Path) -> Option<(f64, usize)> {
    let bytes = std::fs::read(dir.join(EVAL_FILE)).ok()?;
    let e: EvalReport = serde_json::from_slice(&bytes).ok()?;
    let m = e.guided.as_ref().map_or(&e.tuned, |g| &g.tuned);
    m.exact_match.rate.map(|r| (r, m.exact_match.of))
}

/// The gate's verdict on a candidate against the deployed adapter.
pub fn verdict(
    candidate: Option<(f64, usize)>,
    incumbent: Option<&Promoted>,
    tolerance: f64,
    promote: bool,
) -> (&'static str, String) {
    let Some((s, n)) = candidate else {
        return (
            "not_evaluated",
            "no held-out evaluation: not promoted".into(),
        );
    };
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    if let Some(inc) = incumbent {
        if s < inc.score - tolerance {
            return (
                "blocked",
                format!(
                    "held-out exact match {} ({n} calls) is below the deployed adapter's {} ({} calls, run {}) by more than {}",
                    pct(s),
                    pct(inc.score),
                    inc.evaluated,
                    inc.run_id,
                    pct(tolerance)
                ),
            );
        }
    }
    let vs = incumbent.map_or("no adapter deployed".to_string(), |inc| {
        format!("deployed adapter {} (run {})", pct(inc.score), inc.run_id)
    });
    if promote {
        (
            "promoted",
            format!("held-out exact match {} ({n} calls) vs {vs}", pct(s)),
        )
    } else {
        (
            "held",
            format!(
                "held-out exact match {} ({n} calls) vs {vs}; promotion left to a person",
                pct(s)
            ),
        )
    }
}

/// Gates every adapter `tune` produced in `out` and promotes those that pass.
pub fn decide(ctx: &mut Ctx, out: &Path, results: &[ClusterResult]) -> anyhow::Result<()> {
    let run_id = out_run_id(ctx, out);
    let base = base_key(out)?;
    let mut promoted_any = false;
    for r in results.iter().filter(|r| r.status == ClusterStatus::Tuned) {
        let cand = score(&cluster_dir(out, r.cluster));
        let inc = ctx.state.promoted.get(&r.cluster).cloned();
        let (decision, reason) = verdict(cand, inc.as_ref(), ctx.file.gate.tolerance, ctx.promote);
        eprintln!("run: gate: cluster {} {decision}: {reason}", r.cluster);
        if decision == "promoted" {
            install(&ctx.work, out, r.cluster)?;
            let (score, evaluated) = cand.expect("promoted adapters were evaluated");
            ctx.state.promoted.insert(
                r.cluster,
                Promoted {
                    run_id: run_id.clone(),
                    base: base.clone(),
                    score,
                    evaluated,
                },
            );
            promoted_any = true;
        }
        ctx.record.gate.push(GateDecision {
            cluster: r.cluster,
            run_id: run_id.clone(),
            score: cand.map(|c| c.0),
            evaluated: cand.map_or(0, |c| c.1),
            incumbent_run: inc.as_ref().map(|i| i.run_id.clone()),
            incumbent_score: inc.as_ref().map(|i| i.score),
            incumbent_evaluated: inc.as_ref().map(|i| i.evaluated),
            decision: decision.into(),
            reason,
        });
    }
    if promoted_any {
        retire_other_bases(ctx, &base)?;
    }
    refresh_deployed(ctx)
}

/// Deployed adapters must share one base model (and max_len, split) to be
/// exported and served together: once an adapter on a new base is
/// promoted, those on another base are retired.
fn retire_other_bases(ctx: &mut Ctx, base: &str) -> anyhow::Result<()> {
    let other: Vec<i32> = ctx
        .state
        .promoted
        .iter()
        .filter(|(_, p)| p.base != base)
        .map(|(id, _)| *id)
        .collect();
    for id in other {
        retire(ctx, id, "an adapter on another base model (or max_len, split) was deployed; tune this cluster again on it".into())?;
    }
    Ok(())
}

/// The run an adapter directory belongs to (`WORK/runs/RUN_ID/...`).
fn out_run_id(ctx: &Ctx, out: &Path) -> String {
    out.strip_prefix(ctx.work.join(RUNS_DIR))
        .ok()
        .and_then(|p| p.components().next())
        .map_or(ctx.run_id.clone(), |c| {
            c.as_os_str().to_string_lossy().into_owned()
        })
}

/// Copies `out/cluster-ID` (and the run's settings) into `WORK/deployed/`,
/// replacing what was deployed for that cluster.
fn install(work: &Path, out: &Path, cluster: i32) -> anyhow::Result<()> {
    let deployed = work.join(DEPLOYED_DIR);
    std::fs::create_dir_all(&deployed)?;
    let src = cluster_dir(out, cluster);
    let dst = cluster_dir(&deployed, cluster);
    let tmp = deployed.join(format!(".cluster-{cluster}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    copy_dir(&src, &tmp).with_context(|| format!("copying {}", src.display()))?;
    if dst.exists() {
        std::fs::remove_dir_all(&dst)?;
    }
    std::fs::rename(&tmp, &dst)?;
    std::fs::copy(out.join(TUNE_CONFIG_FILE), deployed.join(TUNE_CONFIG_FILE))
        .with_context(|| format!("copying {}", out.join(TUNE_CONFIG_FILE).display()))?;
    Ok(())
}

/// Copies the files of an adapter directory (checkpoints are not needed to
/// serve and are left behind).
fn copy_dir(src: &Path, dst: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let p = e.path();
        if p.is_file() {
            std::fs::copy(&p, dst.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// `deployed/summary.json` and `summary.md` from the deployed clusters'
/// `tune.json`.
fn write_deployed_summary(ctx: &Ctx) -> anyhow::Result<()> {
    let deployed = ctx.work.join(DEPLOYED_DIR);
    if ctx.state.promoted.is_empty() {
        return Ok(());
    }
    let mut results = Vec::new();
    let mut md = String::from(
        "# Deployed adapters\n\n| cluster | from run | held-out exact match |\n|---|---|---|\n",
    );
    for (id, p) in &ctx.state.promoted {
        let path = cluster_dir(&deployed, *id).join(TUNE_FILE);
        let r: ClusterResult = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        results.push(r);
        md.push_str(&format!(
            "| {id} | {} | {:.1}% ({} calls) |\n",
            p.run_id,
            100.0 * p.score,
            p.evaluated
        ));
    }
    crate::util::write_json(
        &deployed.join(SUMMARY_JSON),
        &serde_json::json!({
            "format": SUMMARY_FORMAT,
            "clusters": results,
            // cluster id -> the run whose adapter is deployed (the report reads it)
            DEPLOYED_FROM: ctx.state.promoted.iter().map(|(id, p)| (id.to_string(), p.run_id.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        }),
    )?;
    crate::util::write_atomic(&deployed.join(SUMMARY_MD), md.as_bytes())?;
    // The summary must read back as a run.
    read_results(&deployed).map(|_| ())
}

/// Hash of what all deployed adapters must share (base model, max_len,
/// split), from an adapter run's `tune_config.json`.
fn base_key(run_dir: &Path) -> anyhow::Result<String> {
    let s = read_run_settings(run_dir)?;
    Ok(super::state::key_of(&[
        s.base_model.as_bytes(),
        &s.max_len.to_le_bytes(),
        serde_json::to_string(&s.split)?.as_bytes(),
    ]))
}

/// Takes a cluster's adapter out of `deployed/` and says why in the run record.
fn retire(ctx: &mut Ctx, id: i32, why: String) -> anyhow::Result<()> {
    let Some(p) = ctx.state.promoted.remove(&id) else {
        return Ok(());
    };
    let dir = cluster_dir(&ctx.work.join(DEPLOYED_DIR), id);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    eprintln!("run: gate: cluster {id}: deployed adapter retired: {why}");
    ctx.record.gate.push(GateDecision {
        cluster: id,
        run_id: p.run_id.clone(),
        score: Some(p.score),
        evaluated: p.evaluated,
        incumbent_run: Some(p.run_id),
        incumbent_score: Some(p.score),
        incumbent_evaluated: Some(p.evaluated),
        decision: "retired".into(),
        reason: why,
    });
    Ok(())
}

/// After any clustering (from scratch, or new calls joining): a cluster
/// that no longer exists, or that now holds less than half of the calls its
/// adapter was tuned on (renumbered, re-formed, or every call id changed
/// with the redaction key), loses its tuning record and its deployed
/// adapter; it is tuned afresh when chosen.
pub fn reconcile(ctx: &mut Ctx) -> anyhow::Result<()> {
    let mut members: HashMap<i32, HashSet<String>> = HashMap::new();
    for a in read_assignment_rows(&ctx.dataset)? {
        members.entry(a.cluster).or_default().insert(a.call_id);
    }
    let mut stale: Vec<(i32, String)> = Vec::new();
    for (id, t) in &ctx.state.tuned {
        let why = match members.get(id) {
            None => Some("the cluster no longer exists".to_string()),
            Some(m) => {
                let kept = t.calls.iter().filter(|c| m.contains(*c)).count();
                let share = kept as f64 / t.calls.len().max(1) as f64;
                (share < 0.5).then(|| {
                    format!(
                        "the cluster holds only {:.0}% of the calls its adapter was tuned on",
                        100.0 * share
                    )
                })
            }
        };
        if let Some(w) = why {
            stale.push((*id, w));
        }
    }
    let orphans: Vec<i32> = ctx
        .state
        .promoted
        .keys()
        .filter(|id| !members.contains_key(id) && !stale.iter().any(|s| s.0 == **id))
        .copied()
        .collect();
    stale.extend(
        orphans
            .into_iter()
            .map(|id| (id, "the cluster no longer exists".to_string())),
    );
    for (id, why) in stale {
        ctx.state.tuned.remove(&id);
        retire(ctx, id, why)?;
    }
    refresh_deployed(ctx)
}

/// Rewrites deployed/summary.json, or clears deployed/ when nothing is left.
fn refresh_deployed(ctx: &Ctx) -> anyhow::Result<()> {
    let deployed = ctx.work.join(DEPLOYED_DIR);
    if ctx.state.promoted.is_empty() {
        let _ = std::fs::remove_file(deployed.join(SUMMARY_JSON));
        let _ = std::fs::remove_dir_all(deployed.join(crate::artifact::export::EXPORT_DIR));
        Ok(())
    } else {
        write_deployed_summary(ctx)
    }
}

/// `--promote RUN_ID`: promotes the adapters that run held, then exports.
pub fn promote_held(ctx: &mut Ctx, held_run: &str) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let dir = ctx.work.join(RUNS_DIR).join(held_run);
    let rec = read_run(&dir).map_err(|e| {
        crate::util::usage(format!(
            "--promote {held_run}: not a run of this pipeline ({e:#})"
        ))
    })?;
    let held: Vec<&GateDecision> = rec.gate.iter().filter(|g| g.decision == "held").collect();
    if held.is_empty() {
        return Err(crate::util::usage(format!(
            "--promote {held_run}: that run held no adapter"
        )));
    }
    let clusters: HashSet<i32> = read_assignment_rows(&ctx.dataset)?
        .iter()
        .map(|a| a.cluster)
        .collect();
    // Refuse a held adapter that the pipeline has moved past.
    for g in &held {
        let now = ctx.state.promoted.get(&g.cluster).map(|p| p.run_id.clone());
        if !clusters.contains(&g.cluster)
            || ctx
                .state
                .tuned
                .get(&g.cluster)
                .is_none_or(|t| t.run_id != g.run_id)
        {
            return Err(crate::util::usage(format!(
                "--promote {held_run}: cluster {} was clustered or tuned again since; its held adapter is stale",
                g.cluster
            )));
        }
        if now != g.incumbent_run {
            return Err(crate::util::usage(format!(
                "--promote {held_run}: cluster {} has had another adapter deployed since (run {})",
                g.cluster,
                now.unwrap_or_default()
            )));
        }
    }
    for g in held {
        // The adapter lives in the run that tuned it (a `collect` run holds
        // the adapters its jobs tuned under the emitting run).
        let tuned_in = ctx.work.join(RUNS_DIR).join(&g.run_id);
        let out = tuned_in.join(adapters_of(&tuned_in, g.cluster));
        let base = base_key(&out)?;
        install(&ctx.work, &out, g.cluster)?;
        let p = Promoted {
            run_id: g.run_id.clone(),
            base: base.clone(),
            score: g.score.unwrap_or(0.0),
            evaluated: g.evaluated,
        };
        ctx.state.promoted.insert(g.cluster, p);
        ctx.record.gate.push(GateDecision {
            decision: "promoted".into(),
            reason: "promoted by hand (--promote)".into(),
            ..g.clone()
        });
        retire_other_bases(ctx, &base)?;
    }
    refresh_deployed(ctx)?;
    ctx.save_state()?;
    ctx.log(
        super::Stage::Tune,
        "promoted",
        format!("the adapters held by run {held_run}"),
        t0,
    );
    let embedder = super::stages::embedder(&ctx.file)?;
    super::stages::export(ctx, &embedder, std::time::Instant::now())
}

/// Where a run keeps a cluster's adapter: `adapters/` when tuned here,
/// `parts/cluster-ID/` when tuned by an emitted job.
fn adapters_of(run_dir: &Path, cluster: i32) -> std::path::PathBuf {
    let part = Path::new(super::emit::PARTS_DIR).join(format!("cluster-{cluster}"));
    if run_dir.join(&part).exists() {
        part
    } else {
        "adapters".into()
    }
}
