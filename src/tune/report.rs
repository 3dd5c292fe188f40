//! The run-level reports of `tune`: `summary.json` (every cluster's result)
//! and `summary.md` (a table for people), plus the terminal summary.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;

use super::data::{epoch_plan, BatchLimits};
use super::{Outcome, Prepared, TuneConfig, TuneOutput};
use crate::artifact::adapter::{
    ClusterResult, ClusterStatus, Rate, SUMMARY_FORMAT, SUMMARY_JSON, SUMMARY_MD,
};
use crate::artifact::split::Split;

/// Writes `summary.json` and `summary.md` (atomically).
pub fn write_summary(
    out: &Path,
    settings: &serde_json::Value,
    results: &[ClusterResult],
    outcome: Outcome,
) -> Result<()> {
    let v = serde_json::json!({
        "format": SUMMARY_FORMAT,
        "config": settings,
        "interrupted": outcome == Outcome::Interrupted,
        "clusters": results,
    });
    crate::util::write_json(&out.join(SUMMARY_JSON), &v)?;
    crate::util::write_atomic(&out.join(SUMMARY_MD), markdown(results, outcome).as_bytes())
}

fn rate(r: &Rate) -> String {
    match r.rate {
        Some(x) => format!("{:.0}% ({}/{})", 100.0 * x, r.count, r.of),
        None => "-".into(),
    }
}

fn status(r: &ClusterResult) -> &'static str {
    match r.status {
        ClusterStatus::Tuned => "tuned",
        ClusterStatus::AlreadyDone => "tuned (earlier run)",
        ClusterStatus::Skipped => "skipped",
        ClusterStatus::Interrupted => "interrupted",
    }
}

/// The `summary.md` table.
pub fn markdown(results: &[ClusterResult], outcome: Outcome) -> String {
    let mut s = String::from("# Tune summary\n\n");
    if outcome == Outcome::Interrupted {
        s.push_str("**Interrupted**: run the same command with `--resume` to finish.\n\n");
    }
    s.push_str(
        "| cluster | label | status | examples (train/val/test) | pruned / truncated / dropped | steps | epochs | train time | tok/s | exact match base → tuned | guided: base → tuned | tool call base → tuned | JSON valid base → tuned | loss base → tuned |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in results {
        let label = r
            .label_terms
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        let c = &r.counts;
        let (steps, epochs, secs, tps) = match &r.train {
            Some(t) => (
                t.steps.to_string(),
                format!("{:.2}", t.epochs),
                format!("{:.0}s", t.train_secs),
                format!("{:.0}", t.tokens_per_sec),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let guided = match r.eval.as_ref().and_then(|e| e.guided.as_ref()) {
            Some(g) => format!(
                "{} → {}",
                rate(&g.base.exact_match),
                rate(&g.tuned.exact_match)
            ),
            None => "-".into(),
        };
        let (em, tc, jv, loss) = match &r.eval {
            Some(e) => (
                format!(
                    "{} → {}",
                    rate(&e.base.exact_match),
                    rate(&e.tuned.exact_match)
                ),
                if e.tuned.tool_call_accuracy.of > 0 {
                    format!(
                        "{} → {}",
                        rate(&e.base.tool_call_accuracy),
                        rate(&e.tuned.tool_call_accuracy)
                    )
                } else {
                    "-".into()
                },
                if e.tuned.json_valid.of > 0 {
                    format!(
                        "{} → {}",
                        rate(&e.base.json_valid),
                        rate(&e.tuned.json_valid)
                    )
                } else {
                    "-".into()
                },
                match (e.base.mean_loss, e.tuned.mean_loss) {
                    (Some(a), Some(b)) => format!("{a:.3} → {b:.3}"),
                    _ => "-".into(),
                },
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}/{}/{} | {} / {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.cluster,
            label,
            status(r),
            c.train,
            c.val,
            c.test,
            c.pruned,
            c.truncated,
            c.dropped(),
            steps,
            epochs,
            secs,
            tps,
            em,
            guided,
            tc,
            jv,
            loss
        );
    }
    s.push_str(
        "\nExact match: parsed JSON for JSON answers, full tool call (name + arguments) for tool calls, trimmed text otherwise; rules in `src/ml/lm/score.rs`. Guided: the same with schema-guided decoding (tool calls under the offered tools' schemas, JSON under the schema inferred from the training answers), what a deployment serves; `-` where the cluster has no schema to follow. Counts are of the evaluated test calls, which no training step saw. Pruned: calls whose static system prompt or tools were replaced by markers (see each cluster's prompt.json); truncated: calls that lost earlier turns to fit --max-len; dropped: calls left out (too long even without earlier turns, answer too long, empty, unrenderable).\n",
    );
    s
}

/// A short terminal summary.
pub fn summary_text(out: &TuneOutput) -> String {
    let mut s = String::new();
    for r in &out.clusters {
        let _ = write!(s, "  cluster {:>4} {:<22}", r.cluster, status(r));
        if let Some(e) = &r.eval {
            let _ = write!(
                s,
                " exact match {} -> {}",
                rate(&e.base.exact_match),
                rate(&e.tuned.exact_match)
            );
            if let Some(g) = &e.guided {
                let _ = write!(
                    s,
                    ", guided {} -> {}",
                    rate(&g.base.exact_match),
                    rate(&g.tuned.exact_match)
                );
            }
        }
        if let Some(why) = &r.skip_reason {
            let _ = write!(s, " ({why})");
        }
        s.push('\n');
    }
    s
}

/// The per-cluster encoding figures of a dry run: one line per cluster for
/// people, and the same as JSON (`{"clusters": [...]}`).
pub fn dry_run(cfg: &TuneConfig, prepared: &[Prepared]) -> (String, serde_json::Value) {
    let mut text = String::new();
    let mut rows = Vec::new();
    for p in prepared {
        let cd = &p.data;
        let train = cd.split(Split::Train);
        let lens: Vec<usize> = train.iter().map(|e| e.ex.ids.len()).collect();
        let limits = BatchLimits {
            max_examples: cfg.batch_size,
            max_tokens: cfg.batch_tokens,
        };
        let plan = epoch_plan(train.len(), &lens, limits, 1, cfg.seed);
        let steps_per_epoch = plan.first().map_or(0, Vec::len);
        let padded: usize = plan.first().map_or(0, |e| {
            e.iter()
                .map(|b| b.len() * b.iter().map(|&i| lens[i]).max().unwrap_or(0))
                .sum()
        });
        let tokens: usize = lens.iter().sum();
        let c = &cd.counts;
        let dropped = c.dropped();
        let _ = writeln!(
            text,
            "cluster {:>4}: {:>5} calls, train/val/test {}/{}/{}, pruned {} ({}), truncated {}, dropped {dropped}, tokens mean {:.0} max {}, answer mean {:.0} max {}, {steps_per_epoch} steps/epoch, {tokens} train tokens/epoch ({:.0}% padding)",
            p.cluster, c.calls, c.train, c.val, c.test, c.pruned, p.prompt.static_parts.decision, c.truncated,
            cd.lengths.mean_tokens, cd.lengths.max_tokens, cd.lengths.mean_answer_tokens, cd.lengths.max_answer_tokens,
            100.0 * (padded as f64 - tokens as f64) / padded.max(1) as f64,
        );
        rows.push(serde_json::json!({
            "cluster": p.cluster, "label_terms": p.label_terms,
            "base_model": p.base_model, "counts": c, "lengths": cd.lengths,
            "steps_per_epoch": steps_per_epoch, "train_tokens_per_epoch": tokens,
            "padded_tokens_per_epoch": padded, "static_parts": p.prompt.static_parts,
            "prune": p.prompt.prune,
        }));
    }
    (text, serde_json::json!({ "clusters": rows }))
}
