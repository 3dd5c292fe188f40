//! The report as one self-contained HTML page: inline CSS, inline SVG
//! charts, no script and no network. Sections carry stable ids (`headline`,
//! `changes`, `ingest`, `clusters`, `plan`, `tuning`, `routing`, `stages`)
//! that the browser test looks for.

use std::fmt::Write;

use super::{charts, pct, Report};

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#f6f7f9}\
main{max-width:1120px;margin:0 auto;padding:24px}h1{margin:0 0 4px 0;font-size:26px}h2{margin:0 0 12px 0;font-size:20px;border-bottom:2px solid #e3e6ea;padding-bottom:6px}\
section{background:#fff;border:1px solid #e3e6ea;border-radius:8px;padding:18px 20px;margin:18px 0}.sub{color:#666;font-size:14px}\
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{flex:1 1 160px;background:#f0f4f9;border-radius:8px;padding:12px}.card b{display:block;font-size:24px;color:#1f4e79}\
table{border-collapse:collapse;width:100%;font-size:14px;margin:8px 0}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff2;vertical-align:top}th{background:#f7f8fa}\
.ok{color:#237a2f;font-weight:600}.bad{color:#b3261e;font-weight:600}.held{color:#8a6d00;font-weight:600}.charts{display:flex;flex-wrap:wrap;gap:10px}\
.charts svg,.map svg{max-width:100%;height:auto;border:1px solid #eceff2;border-radius:6px}code{background:#f0f2f5;padding:1px 4px;border-radius:3px;font-size:13px}";

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{c}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// A chart, or the reason it is missing.
fn chart(r: anyhow::Result<String>) -> String {
    r.unwrap_or_else(|e| {
        format!(
            "<p class=sub>chart unavailable: {}</p>",
            esc(&format!("{e:#}"))
        )
    })
}

/// `$123`, `-$45`, or "–".
fn money(x: Option<f64>) -> String {
    match x {
        None => "–".to_string(),
        Some(x) if x < 0.0 => format!("-${:.0}", -x),
        Some(x) => format!("${x:.0}"),
    }
}

fn decision_class(d: &str) -> &'static str {
    match d {
        "promoted" | "deployed" => "ok",
        "blocked" => "bad",
        _ => "held",
    }
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>\
         <title>slmforge run {id}</title><style>{CSS}</style></head><body><main>\
         <h1>slmforge run {id}</h1><p class=sub>pipeline <b>{p}</b> · started {st} · {secs:.0} s · exit code {code}{prev}</p>",
        id = esc(&r.run_id),
        p = esc(&r.pipeline),
        st = esc(&r.started),
        secs = r.secs,
        code = r.exit_code,
        prev = r.previous_run.as_ref().map_or(String::new(), |p| format!(" · previous run {}", esc(p))),
    );
    if let Some(e) = &r.error {
        let _ = write!(
            s,
            "<section id=error><h2 class=bad>The run stopped with an error</h2><p><code>{}</code></p></section>",
            esc(e)
        );
    }
    headline(&mut s, r);
    changes(&mut s, r);
    ingest(&mut s, r);
    clusters(&mut s, r);
    plan(&mut s, r);
    tuning(&mut s, r);
    routing(&mut s, r);
    stages(&mut s, r);
    s.push_str("<p class=sub>Written by slmforge from the run's artifacts; every text shown was redacted at ingest.</p></main></body></html>\n");
    s
}

fn headline(s: &mut String, r: &Report) {
    let h = &r.headline;
    let card =
        |v: String, what: &str| format!("<div class=card><b>{}</b>{}</div>", esc(&v), esc(what));
    let ms = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.0} ms"));
    let _ = write!(
        s,
        "<section id=headline><h2>Headline</h2><div class=cards>{}{}{}{}{}{}{}</div>",
        card(
            h.calls.to_string(),
            &format!("calls seen ({} new)", h.new_calls)
        ),
        card(h.clusters.to_string(), "workloads found"),
        card(h.deployed_adapters.to_string(), "adapters deployed"),
        card(
            pct(h.routable_share),
            "of held-out calls routable to small models"
        ),
        card(pct(h.routed_accuracy), "of routed calls answered exactly"),
        card(
            money(h.savings_monthly_usd),
            &if h.savings_monthly_usd.is_some_and(|x| x < 0.0) {
                format!(
                    "projected monthly saving: the hardware costs more than this traffic's LLM bill ({}/month)",
                    money(h.llm_monthly_usd)
                )
            } else {
                format!(
                    "projected monthly saving (LLM {}/month)",
                    money(h.llm_monthly_usd)
                )
            }
        ),
        card(
            ms(h.slm_latency_ms),
            &format!(
                "small-model time per call here (LLM logged {})",
                ms(h.llm_latency_ms)
            )
        ),
    );
    if !h.stays_on_llm.is_empty() {
        s.push_str("<p>What stayed on the LLM (held-out calls) and why:</p>");
        let rows: Vec<Vec<String>> = h
            .stays_on_llm
            .iter()
            .map(|(k, v)| vec![esc(k), v.to_string()])
            .collect();
        s.push_str(&table(&["reason", "calls"], &rows));
    }
    s.push_str("</section>");
}

fn changes(s: &mut String, r: &Report) {
    let c = &r.changes;
    let _ = write!(
        s,
        "<section id=changes><h2>Changes since the previous run</h2><p>{} new log file(s), {} new call(s); the dataset holds {} calls.</p>",
        c.new_files, c.new_calls, c.dataset_calls
    );
    if let Some(d) = &c.drift {
        let _ = write!(
            s,
            "<p>Drift of the {} new calls: {:.1}% fit no cluster, cluster shares moved {:.2} (total variation){}. {}</p>",
            d.new_calls,
            100.0 * d.outlier_share,
            d.share_change,
            if d.new_tools.is_empty() { String::new() } else { format!("; new tools: {}", esc(&d.new_tools.join(", "))) },
            if d.crossed.is_empty() { "Under every threshold: the calls joined the existing clusters.".to_string() } else { format!("Crossed: {}.", esc(&d.crossed.join("; "))) }
        );
    }
    if let Some(why) = &c.reclustered {
        let _ = write!(s, "<p><b>Clustered from scratch</b>: {}</p>", esc(why));
    }
    if !c.tuned.is_empty() {
        let rows: Vec<Vec<String>> = c
            .tuned
            .iter()
            .map(|t| {
                vec![
                    t.cluster.to_string(),
                    if t.tuned {
                        "tuned".into()
                    } else {
                        "kept".into()
                    },
                    esc(&t.reason),
                ]
            })
            .collect();
        s.push_str(&table(&["cluster", "this run", "why"], &rows));
    }
    if !r.gate.is_empty() {
        s.push_str(
            "<p><b>Regression gate</b> (held-out exact match, guided decoding when evaluated):</p>",
        );
        let rows: Vec<Vec<String>> = r
            .gate
            .iter()
            .map(|g| {
                vec![
                    g.cluster.to_string(),
                    esc(&g.run_id),
                    format!("{} ({} calls)", pct(g.score), g.evaluated),
                    g.incumbent_score.map_or("–".into(), |x| {
                        format!(
                            "{} (run {})",
                            pct(Some(x)),
                            esc(g.incumbent_run.as_deref().unwrap_or(""))
                        )
                    }),
                    format!(
                        "<span class={}>{}</span>",
                        decision_class(&g.decision),
                        esc(&g.decision)
                    ),
                    esc(&g.reason),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "cluster",
                "new adapter from",
                "score",
                "deployed adapter",
                "decision",
                "why",
            ],
            &rows,
        ));
    }
    s.push_str("</section>");
}

fn ingest(s: &mut String, r: &Report) {
    s.push_str("<section id=ingest><h2>Ingest and redaction audit</h2>");
    let Some(a) = &r.ingest else {
        s.push_str("<p>No ingest report.</p></section>");
        return;
    };
    let _ = write!(
        s,
        "<p class=sub>{} · redaction key: {}</p><p>Read {} records: {} written, {} exact duplicates, {} quarantined (read = written + duplicates + quarantined{}).</p>",
        a.from_run.as_ref().map_or("the dataset's latest ingest".to_string(), |r| format!("ingested in run {}", esc(r))),
        esc(&a.key_source),
        a.read,
        a.written,
        a.duplicates,
        a.quarantined,
        if a.read == a.written + a.duplicates + a.quarantined { ": holds" } else { ": DOES NOT hold" }
    );
    let formats: Vec<Vec<String>> = a
        .formats
        .iter()
        .map(|(k, v)| {
            let mut row = vec![esc(k)];
            row.extend(v.iter().map(|n| n.to_string()));
            row
        })
        .collect();
    s.push_str(&table(
        &["format", "read", "written", "duplicates", "quarantined"],
        &formats,
    ));
    if !a.quarantine_reasons.is_empty() {
        let rows: Vec<Vec<String>> = a
            .quarantine_reasons
            .iter()
            .map(|(k, v)| {
                let ex: Vec<String> = a
                    .quarantine_examples
                    .iter()
                    .filter(|e| &e.0 == k)
                    .map(|e| format!("<code>{}</code>", esc(&e.1)))
                    .collect();
                vec![esc(k), v.to_string(), ex.join("<br>")]
            })
            .collect();
        s.push_str(&table(
            &["quarantine reason", "records", "examples (redacted)"],
            &rows,
        ));
    }
    let mut red: Vec<(String, u64)> = a.redactions.iter().map(|(k, v)| (k.clone(), *v)).collect();
    red.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    if !red.is_empty() {
        let _ = write!(
            s,
            "<div class=charts>{}</div>",
            chart(charts::count_bars("redactions by type", &red))
        );
    }
    s.push_str("</section>");
}

fn clusters(s: &mut String, r: &Report) {
    s.push_str("<section id=clusters><h2>Workloads (clusters)</h2>");
    let Some(c) = &r.clusters else {
        s.push_str("<p>Not clustered yet.</p></section>");
        return;
    };
    let _ = write!(
        s,
        "<p class=sub>{} · k = {} · {} outliers{}{}</p>",
        esc(&c.algorithm),
        c.k,
        c.outliers,
        c.purity
            .map_or(String::new(), |p| format!(" · purity {:.2}", p)),
        c.ari.map_or(String::new(), |p| format!(
            " · ARI {:.2} against the ground truth",
            p
        ))
    );
    if let Some(svg) = &r.cluster_map_svg {
        let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
        let _ = write!(s, "<div class=map>{body}</div>");
    }
    let rows: Vec<Vec<String>> = c
        .rows
        .iter()
        .map(|x| {
            vec![
                x.id.to_string(),
                esc(&x.label),
                x.size.to_string(),
                format!("{:.1}%", 100.0 * x.share),
                esc(&x.kind),
                esc(&x.tools.join(", ")),
                format!("{} / {}", x.prompt_tokens_p50, x.completion_tokens_p50),
                if x.deployed {
                    "<span class=ok>deployed</span>".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "id",
            "label",
            "calls",
            "share",
            "answers",
            "tools",
            "tokens p50 (prompt / answer)",
            "adapter",
        ],
        &rows,
    ));
    s.push_str("</section>");
}

fn plan(s: &mut String, r: &Report) {
    s.push_str("<section id=plan><h2>Selection and serving plan</h2>");
    let Some(p) = &r.plan else {
        s.push_str("<p>No serving plan: <code>select</code> is off in this pipeline (<code>[select] enabled = true</code> measures the candidates and plans the hardware).</p></section>");
        return;
    };
    if !p.devices.is_empty() {
        let _ = write!(
            s,
            "<div class=charts>{}</div>",
            chart(charts::packing(&p.devices))
        );
    }
    let _ = write!(
        s,
        "<p>LLM cost of this traffic: {} per month; hardware: {} per month; saving: {} per month.</p>",
        money(p.llm_monthly_usd),
        money(p.hardware_monthly_usd),
        money(p.savings_monthly_usd)
    );
    let rows: Vec<Vec<String>> = p
        .choices
        .iter()
        .map(|(c, m, d)| vec![c.to_string(), esc(m), esc(d)])
        .collect();
    s.push_str(&table(&["cluster", "base model", "decision"], &rows));
    for u in &p.unplaced {
        let _ = write!(s, "<p class=bad>not placed: {}</p>", esc(u));
    }
    s.push_str("</section>");
}

fn tuning(s: &mut String, r: &Report) {
    s.push_str("<section id=tuning><h2>Base vs tuned, on held-out calls</h2>");
    if r.tuning.is_empty() {
        s.push_str("<p>No adapter yet.</p></section>");
        return;
    }
    let _ = write!(
        s,
        "<div class=charts>{}</div>",
        chart(charts::exact_match_bars(&r.tuning))
    );
    let f = |x: &super::Figures| format!("{} ({})", pct(x.exact_match), x.exact_count);
    let rows: Vec<Vec<String>> = r
        .tuning
        .iter()
        .map(|t| {
            vec![
                t.cluster.to_string(),
                format!(
                    "<span class={}>{}</span> ({})",
                    decision_class(&t.status),
                    esc(&t.status),
                    esc(&t.run_id)
                ),
                t.evaluated.to_string(),
                f(&t.base),
                f(&t.tuned),
                t.guided_base.as_ref().map_or("–".into(), f),
                t.guided_tuned.as_ref().map_or("–".into(), f),
                pct(t.tuned.tool_call_accuracy),
                pct(t.tuned.json_valid),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "cluster",
            "adapter",
            "test calls",
            "base exact",
            "tuned exact",
            "base guided",
            "tuned guided",
            "tuned tool calls",
            "tuned JSON valid",
        ],
        &rows,
    ));
    s.push_str("<div class=charts>");
    for t in &r.tuning {
        s.push_str(&chart(charts::training_curve(t)));
    }
    s.push_str("</div></section>");
}

fn routing(s: &mut String, r: &Report) {
    s.push_str("<section id=routing><h2>Routing table</h2>");
    let Some(t) = &r.routing else {
        s.push_str("<p>No routing table (nothing exported yet, or routing is off).</p></section>");
        return;
    };
    let _ = write!(
        s,
        "<p>On the {} held-out test calls: {} routed to small models ({}), {} of them exactly right; accuracy target {:.0}%.</p>",
        t.test_calls,
        t.routed,
        pct(Some(t.routed_share)),
        pct(t.routed_accuracy),
        100.0 * t.accuracy_target
    );
    let rows: Vec<Vec<String>> = t
        .routes
        .iter()
        .map(|x| {
            vec![
                esc(&x.name),
                x.cluster.to_string(),
                esc(&x.target),
                x.threshold.map_or("–".into(), |v| format!("{v:.3}")),
                pct(x.validation_accuracy),
                pct(x.tuned_test_accuracy),
                format!("{:.1}%", 100.0 * x.traffic_share),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "route",
            "cluster",
            "target",
            "distance threshold",
            "validation accuracy",
            "tuned test accuracy",
            "traffic",
        ],
        &rows,
    ));
    s.push_str("</section>");
}

fn stages(s: &mut String, r: &Report) {
    s.push_str("<section id=stages><h2>Stages of this run</h2>");
    let rows: Vec<Vec<String>> = r
        .stages
        .iter()
        .map(|x| {
            vec![
                esc(&x.stage),
                esc(&x.status),
                esc(&x.reason),
                format!("{:.1} s", x.secs),
            ]
        })
        .collect();
    s.push_str(&table(&["stage", "status", "why", "time"], &rows));
    s.push_str("</section>");
}
