//! The report as Markdown (`summary.md`): the headline, what changed, the
//! gate's decisions and the per-cluster results — what a CI job posts as a
//! comment. Table cells have `|` and newlines replaced.

use std::fmt::Write;

use super::{pct, Report};

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(r: &Report) -> String {
    let h = &r.headline;
    let mut s = format!(
        "# slmforge run {} ({})\n\nExit code {} · {:.0} s{}\n\n",
        r.run_id,
        r.pipeline,
        r.exit_code,
        r.secs,
        r.previous_run
            .as_ref()
            .map_or(String::new(), |p| format!(" · previous run {p}"))
    );
    if let Some(e) = &r.error {
        let _ = writeln!(s, "**The run stopped with an error:** {}\n", cell(e));
    }
    let _ = writeln!(
        s,
        "- **{}** calls ({} new), **{}** workloads, **{}** adapter(s) deployed",
        h.calls, h.new_calls, h.clusters, h.deployed_adapters
    );
    let _ = writeln!(
        s,
        "- routable to small models: **{}** of held-out calls, **{}** of those exactly right",
        pct(h.routable_share),
        pct(h.routed_accuracy)
    );
    if let Some(x) = h.savings_monthly_usd {
        let _ = writeln!(
            s,
            "- projected saving: **${x:.0}/month** (LLM ${:.0}/month)",
            h.llm_monthly_usd.unwrap_or(0.0)
        );
    }
    if !h.stays_on_llm.is_empty() {
        s.push_str("\n| stayed on the LLM because | calls |\n|---|---|\n");
        for (k, v) in &h.stays_on_llm {
            let _ = writeln!(s, "| {} | {v} |", cell(k));
        }
    }
    let c = &r.changes;
    let _ = write!(
        s,
        "\n## Changes\n\n{} new log file(s), {} new call(s), {} calls in the dataset.\n",
        c.new_files, c.new_calls, c.dataset_calls
    );
    if let Some(d) = &c.drift {
        let _ = writeln!(
            s,
            "Drift: {:.1}% of {} new calls fit no cluster, shares moved {:.2}{}.",
            100.0 * d.outlier_share,
            d.new_calls,
            d.share_change,
            if d.crossed.is_empty() {
                String::new()
            } else {
                format!(" — crossed: {}", cell(&d.crossed.join("; ")))
            }
        );
    }
    if let Some(w) = &c.reclustered {
        let _ = writeln!(s, "Clustered from scratch: {}.", cell(w));
    }
    for t in &c.tuned {
        let _ = writeln!(
            s,
            "- cluster {}: {} ({})",
            t.cluster,
            if t.tuned { "tuned" } else { "kept" },
            cell(&t.reason)
        );
    }
    if !r.gate.is_empty() {
        s.push_str("\n## Regression gate\n\n| cluster | new adapter | score | deployed | decision |\n|---|---|---|---|---|\n");
        for g in &r.gate {
            let _ = writeln!(
                s,
                "| {} | {} | {} ({} calls) | {} | **{}** |",
                g.cluster,
                g.run_id,
                pct(g.score),
                g.evaluated,
                g.incumbent_score.map_or("–".to_string(), |x| pct(Some(x))),
                g.decision
            );
        }
    }
    if !r.tuning.is_empty() {
        s.push_str("\n## Base vs tuned (held-out exact match)\n\n| cluster | adapter | calls | base | tuned | base guided | tuned guided |\n|---|---|---|---|---|---|---|\n");
        for t in &r.tuning {
            let g = |x: &Option<super::Figures>| {
                x.as_ref().map_or("–".to_string(), |f| pct(f.exact_match))
            };
            let _ = writeln!(
                s,
                "| {} | {} ({}) | {} | {} | {} | {} | {} |",
                t.cluster,
                t.status,
                t.run_id,
                t.evaluated,
                pct(t.base.exact_match),
                pct(t.tuned.exact_match),
                g(&t.guided_base),
                g(&t.guided_tuned)
            );
        }
    }
    if let Some(a) = &r.ingest {
        let _ = write!(
            s,
            "\n## Ingest\n\n{} read = {} written + {} duplicates + {} quarantined; {} redactions.\n",
            a.read,
            a.written,
            a.duplicates,
            a.quarantined,
            a.redactions.values().sum::<u64>()
        );
    }
    s.push_str("\n## Stages\n\n| stage | status | why |\n|---|---|---|\n");
    for x in &r.stages {
        let _ = writeln!(s, "| {} | {} | {} |", x.stage, x.status, cell(&x.reason));
    }
    s
}
