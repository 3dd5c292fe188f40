//! Calibration of the routing table on the validation split.
//!
//! 1. Every workload of `clusters.json` becomes a route; the ones with an
//!    exported adapter target it, the others the LLM.
//! 2. The tuned adapter answers its workload's validation calls (greedy,
//!    the prompt it trained on); each answer is scored with the evaluation's
//!    comparison rules ([`crate::ml::lm::score`]).
//! 3. Every validation call — of any workload, outliers included — is a
//!    candidate of its nearest route when it passes the tool rule. A
//!    candidate counts as correct only when it belongs to the route's
//!    workload and the tuned model got it right: foreign traffic is wrong.
//! 4. Per route, the threshold is the largest candidate distance at which
//!    the routed accuracy (cumulative, nearest first) is still at least the
//!    target, with at least `min_routed_calls` routed. A route that never
//!    gets there goes to the LLM, with the reason.
//! 5. The test split reports the share routed and the accuracy on it (the
//!    tuned answers of `eval_samples.jsonl` where present, else generated).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use super::{decide, featurise, nearest, tools_allowed, Featurised};
use crate::artifact::adapter::{
    cluster_dir, read_eval_samples, read_prompt, read_results, read_run_settings, Rate,
    RunSettings, PROMPT_FILE,
};
use crate::artifact::calls::read_calls;
use crate::artifact::clusters::{read_assignment_rows, read_summary};
use crate::artifact::export::read_manifest;
use crate::artifact::routing::{
    Route, RouteCalibration, RouteTarget, RoutingTable, TestReport, LLM_ROUTE, ROUTER_FILE,
    ROUTING_FILE, ROUTING_FORMAT,
};
use crate::artifact::split::{split_of, Split};
use crate::artifact::OUTLIER;
use crate::call::RedactedCall;
use crate::ml::embed::TextEmbedder;
use crate::ml::lm::generate::{generate_constrained, GenerateOptions, SamplingConfig};
use crate::ml::lm::guide::{tool_pairs, AnswerShape};
use crate::ml::lm::prune::PruneRule;
use crate::ml::lm::score::score_reply;
use crate::ml::lm::{self, LanguageModel};
use crate::util::usage;

#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationConfig {
    /// Routed accuracy must be at least this.
    pub accuracy_target: f64,
    /// A route needs at least this many routed validation calls.
    pub min_routed_calls: usize,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// Exemplar call ids per route.
    pub exemplars: usize,
    /// Utterances per route in `router.json`.
    pub utterances: usize,
    /// Judge the tuned models with schema-guided decoding (how a route
    /// serves: tool calls and JSON constrained to their schemas).
    pub guided: bool,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            accuracy_target: 0.95,
            min_routed_calls: 5,
            batch_size: 16,
            exemplars: 5,
            utterances: 10,
            guided: true,
        }
    }
}

struct Data {
    calls: Vec<RedactedCall>,
    label: Vec<i32>,
    split: Vec<Split>,
}

fn read_data(dataset_dir: &Path, settings: &RunSettings) -> Result<Data> {
    let calls = read_calls(dataset_dir)?;
    let rows = read_assignment_rows(dataset_dir)?;
    let of: HashMap<&str, i32> = rows
        .iter()
        .map(|r| (r.call_id.as_str(), r.cluster))
        .collect();
    let ids: Vec<String> = calls.iter().map(|c| c.id()).collect();
    let label = ids
        .iter()
        .map(|id| *of.get(id.as_str()).unwrap_or(&OUTLIER))
        .collect();
    let split = ids.iter().map(|id| split_of(id, &settings.split)).collect();
    Ok(Data {
        calls,
        label,
        split,
    })
}

/// Greedy answers of `model` to calls (training prompts, pruned by the
/// adapter's rule), scored.
fn judge(
    lm: &LanguageModel,
    model: &lm::CausalLm,
    calls: &[&RedactedCall],
    rules: (Option<&PruneRule>, Option<&AnswerShape>),
    max_len: usize,
    max_new: usize,
    batch: usize,
) -> Result<Vec<bool>> {
    let (texts, _) = answers(lm, model, calls, rules, max_len, max_new, batch)?;
    let mut ok = vec![false; calls.len()];
    for (i, text) in texts.iter().enumerate() {
        let Some(text) = text else { continue };
        let c = calls[i];
        let schema_of = |name: &str| {
            c.tools
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.parameters.clone())
        };
        let rendered = lm.chat.render_answer(&c.response);
        ok[i] =
            score_reply(&c.response, c.response.kind(), &rendered, text, &schema_of).exact_match;
    }
    Ok(ok)
}

/// Greedy answers of `model` to calls (training prompts, pruned by the
/// adapter's rule; guided by `shape` when given): `None` for a call whose
/// prompt cannot be rendered; and the generation's counts and times.
fn answers(
    lm: &LanguageModel,
    model: &lm::CausalLm,
    calls: &[&RedactedCall],
    (prune, shape): (Option<&PruneRule>, Option<&AnswerShape>),
    max_len: usize,
    max_new: usize,
    batch: usize,
) -> Result<(Vec<Option<String>>, lm::GenerationStats)> {
    // A call whose prompt cannot be rendered is scored wrong (empty prompt).
    let mut prompts = Vec::with_capacity(calls.len());
    for c in calls {
        let pruned = prune.map(|r| r.apply(&c.messages, &c.tools));
        let (msgs, tools) = match &pruned {
            Some(p) => (&p.messages[..], &p.tools[..]),
            None => (&c.messages[..], &c.tools[..]),
        };
        let ids = match lm.encode_for_training(msgs, tools, &c.response, max_len) {
            Ok(ex) => ex.ids[..ex.answer_mask.iter().take_while(|m| !**m).count()].to_vec(),
            Err(_) => match lm.prompt_ids(msgs, tools) {
                Ok(mut ids) => {
                    if ids.len() > max_len {
                        ids.drain(..ids.len() - max_len);
                    }
                    ids
                }
                Err(_) => Vec::new(),
            },
        };
        prompts.push(ids);
    }
    let mut order: Vec<usize> = (0..calls.len())
        .filter(|&i| !prompts[i].is_empty())
        .collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(prompts[i].len()), i));
    let opts = GenerateOptions {
        sampling: SamplingConfig::greedy(max_new.max(1)),
        batch_size: batch.max(1),
        ..Default::default()
    };
    let mut out = vec![None; calls.len()];
    let mut stats = lm::GenerationStats::default();
    for chunk in order.chunks(batch.max(1)) {
        let ps: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let rows = match shape {
            Some(shape) => {
                let cs: Vec<_> = chunk
                    .iter()
                    .map(|&i| shape.constraint(&tool_pairs(&calls[i].tools), &calls[i].demands))
                    .collect();
                let (rows, fallbacks) = lm.row_guides(&cs)?;
                for (r, why) in &fallbacks {
                    eprintln!(
                        "route: call {} decoded free: its schema is not supported by guided decoding ({why})",
                        calls[chunk[*r]].id()
                    );
                }
                rows
            }
            None => Vec::new(),
        };
        let (comps, st) = generate_constrained(
            model,
            &ps,
            rows,
            &lm.stop_ids(),
            lm.tokenizer.pad_id(),
            &opts,
        )?;
        stats.prompts += st.prompts;
        stats.prompt_tokens += st.prompt_tokens;
        stats.padded_prompt_tokens += st.padded_prompt_tokens;
        stats.generated_tokens += st.generated_tokens;
        stats.prefill_secs += st.prefill_secs;
        stats.decode_secs += st.decode_secs;
        stats.guide_secs += st.guide_secs;
        for (comp, &i) in comps.iter().zip(chunk) {
            out[i] = Some(lm.tokenizer.decode(&comp.tokens, true)?);
        }
    }
    Ok((out, stats))
}

/// Whether the quantized decoder answers as the f32 path does: each tuned
/// adapter of `run_dir` answers its cluster's calls of `split` (the first
/// `max_calls`) greedily, free and guided, on the quantized decoder and
/// on the f32 weights (adapter merged). JSON: per cluster the calls
/// compared, how many answers are the same, and the ids of the others.
pub fn decode_parity(
    dataset_dir: &Path,
    run_dir: &Path,
    split: Split,
    max_calls: usize,
    batch: usize,
) -> Result<serde_json::Value> {
    let settings = read_run_settings(run_dir)?;
    let results = read_results(run_dir)?;
    let data = read_data(dataset_dir, &settings)?;
    let path = crate::ml::models::resolve_model(&settings.base_model)?;
    let mut lm = lm::load(&path, &candle_core::Device::Cpu)?;
    let base = lm.model.clone();
    let mut out = Vec::new();
    let (mut total, mut same_total) = (0, 0);
    for r in results.iter().filter(|r| {
        cluster_dir(run_dir, r.cluster)
            .join("adapter.safetensors")
            .exists()
    }) {
        let c = r.cluster;
        let idx: Vec<usize> = (0..data.calls.len())
            .filter(|&i| data.split[i] == split && data.label[i] == c)
            .take(max_calls)
            .collect();
        let refs: Vec<&RedactedCall> = idx.iter().map(|&i| &data.calls[i]).collect();
        let prune = prune_of(run_dir, c);
        let max_new = max_new_of(&results, c);
        let mut passes = serde_json::Map::new();
        // the adapter read once; the quantized decoder's model and the f32 one
        lm.model = base.clone();
        lm.apply_adapter(&cluster_dir(run_dir, c))?;
        let mut models = Vec::new();
        for quantized in [true, false] {
            let mut m = lm.model.clone();
            m.set_quantized_decode(quantized);
            models.push(m.for_inference()?);
        }
        for (name, shape) in [("free", None), ("guided", shape_of(run_dir, c, true))] {
            if name == "guided" && shape.is_none() {
                continue;
            }
            let mut texts = Vec::new();
            for model in &models {
                let rules = (prune.as_ref(), shape.as_ref());
                texts.push(answers(
                    &lm,
                    model,
                    &refs,
                    rules,
                    settings.max_len,
                    max_new,
                    batch,
                )?);
            }
            let differ: Vec<String> = (0..refs.len())
                .filter(|&i| texts[0].0[i] != texts[1].0[i])
                .map(|i| refs[i].id())
                .collect();
            total += refs.len();
            same_total += refs.len() - differ.len();
            let times = |st: &lm::GenerationStats| {
                serde_json::json!({
                    "prefill_secs": st.prefill_secs, "decode_secs": st.decode_secs,
                    "generated_tokens": st.generated_tokens,
                    "decode_tokens_per_sec": st.decode_tokens_per_sec(),
                })
            };
            passes.insert(
                name.into(),
                serde_json::json!({
                    "calls": refs.len(), "same": refs.len() - differ.len(), "differ": differ,
                    "quantized": times(&texts[0].1), "f32": times(&texts[1].1),
                }),
            );
        }
        out.push(serde_json::json!({"cluster": c, "passes": passes}));
    }
    Ok(serde_json::json!({
        "bench": "decode-parity", "split": format!("{split:?}").to_lowercase(),
        "answers": total, "same": same_total,
        "share_same": same_total as f64 / total.max(1) as f64, "clusters": out,
    }))
}

/// The loosest threshold whose cumulative accuracy meets the target.
/// `cands` are (distance, correct), any order. Returns (threshold, routed, correct).
pub fn choose_threshold(
    cands: &[(f32, bool)],
    target: f64,
    min_routed: usize,
) -> Option<(f32, usize, usize)> {
    let mut v = cands.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut best = None;
    let mut correct = 0;
    for (n, (d, ok)) in v.iter().enumerate() {
        correct += *ok as usize;
        let routed = n + 1;
        // Only where the next candidate is farther: equal distances are all in or all out.
        let boundary = v.get(n + 1).is_none_or(|next| next.0 > *d);
        if boundary && routed >= min_routed.max(1) && correct as f64 >= target * routed as f64 {
            best = Some((*d, routed, correct));
        }
    }
    best
}

/// The pruning rule a cluster's adapter was trained with.
fn prune_of(run_dir: &Path, c: i32) -> Option<PruneRule> {
    read_prompt(&cluster_dir(run_dir, c).join(PROMPT_FILE))
        .ok()
        .and_then(|p| p.prune)
}

/// The answer shape a cluster's adapter is guided by (`None` when the run
/// predates it or guidance is off).
fn shape_of(run_dir: &Path, c: i32, guided: bool) -> Option<AnswerShape> {
    if !guided {
        return None;
    }
    read_prompt(&cluster_dir(run_dir, c).join(PROMPT_FILE))
        .ok()
        .and_then(|p| p.answers)
}

/// The decode cap for a cluster: its longest training answer + 16 tokens.
fn max_new_of(results: &[crate::artifact::adapter::ClusterResult], c: i32) -> usize {
    results
        .iter()
        .find(|x| x.cluster == c)
        .map(|x| x.lengths.max_train_answer_tokens + 16)
        .unwrap_or(256)
}

struct Scored {
    /// Per call index: the tuned model's verdict on its own workload.
    own: HashMap<usize, bool>,
}

/// Builds and writes `routing.json` and `router.json` in `export_dir`.
pub fn calibrate(
    cfg: &CalibrationConfig,
    dataset_dir: &Path,
    run_dir: &Path,
    export_dir: &Path,
    embedder: &dyn TextEmbedder,
) -> Result<RoutingTable> {
    let summary = read_summary(dataset_dir)?;
    if embedder.checksum() != summary.embedder.checksum {
        return Err(usage(format!(
            "the clusters of {} were made with another embedder (sha256 {}): routing must featurise requests the same way",
            dataset_dir.display(),
            summary.embedder.checksum
        )));
    }
    let settings = read_run_settings(run_dir)?;
    let manifest = read_manifest(export_dir)?;
    let results = read_results(run_dir)?;
    let data = read_data(dataset_dir, &settings)?;
    let held: Vec<usize> = (0..data.calls.len())
        .filter(|&i| data.split[i] != Split::Train)
        .collect();
    let held_calls: Vec<&crate::call::Call> = held.iter().map(|&i| &*data.calls[i]).collect();
    let pb = crate::util::count_bar(held.len() as u64, "embedding held-out calls");
    let feats = featurise(&summary.features, &held_calls, embedder, &pb)?;
    pb.finish_and_clear();
    let pos: HashMap<usize, usize> = held.iter().enumerate().map(|(p, &i)| (i, p)).collect();

    let mut routes = build_routes(cfg, &summary, &manifest, &data)?;
    for r in routes.iter_mut() {
        if let RouteTarget::Adapter { guide, .. } = &mut r.target {
            *guide = shape_of(run_dir, r.cluster, cfg.guided).map(Box::new);
        }
    }
    let mut table = RoutingTable {
        format: ROUTING_FORMAT.to_string(),
        embedder: summary.embedder.clone(),
        features: summary.features.clone(),
        accuracy_target: cfg.accuracy_target,
        min_routed_calls: cfg.min_routed_calls,
        routes: Vec::new(),
        default_route: LLM_ROUTE.to_string(),
        test: TestReport::default(),
    };
    // The tuned models' answers on their own validation calls.
    let lm_path = Path::new(&manifest.base_model.path);
    let device = candle_core::Device::Cpu;
    let mut lm = lm::load(lm_path, &device)
        .with_context(|| format!("loading the base model {}", lm_path.display()))?;
    let base = lm.model.clone();
    let mut scored = Scored {
        own: HashMap::new(),
    };
    let tuned_routes: Vec<usize> = (0..routes.len())
        .filter(|&r| matches!(routes[r].target, RouteTarget::Adapter { .. }))
        .collect();
    let bar = crate::util::count_bar(tuned_routes.len() as u64, "calibrating routes");
    for &r in &tuned_routes {
        let c = routes[r].cluster;
        lm.model = base.clone();
        lm.apply_adapter(&cluster_dir(run_dir, c))?;
        let model = lm.model.for_inference()?;
        let max_new = max_new_of(&results, c);
        let own: Vec<usize> = (0..data.calls.len())
            .filter(|&i| data.split[i] == Split::Val && data.label[i] == c)
            .collect();
        let refs: Vec<&RedactedCall> = own.iter().map(|&i| &data.calls[i]).collect();
        let prune = prune_of(run_dir, c);
        let shape = shape_of(run_dir, c, cfg.guided);
        let ok = judge(
            &lm,
            &model,
            &refs,
            (prune.as_ref(), shape.as_ref()),
            settings.max_len,
            max_new,
            cfg.batch_size,
        )?;
        for (&i, v) in own.iter().zip(ok) {
            scored.own.insert(i, v);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    set_thresholds(
        cfg,
        &mut routes,
        &summary.features,
        &data,
        &feats,
        &pos,
        &scored,
    );
    table.routes = routes;
    let ctx = TestCtx {
        run_dir,
        settings: &settings,
        results: &results,
        base: &base,
    };
    table.test = test_report(cfg, &table, &data, &feats, &pos, &mut lm, &ctx)?;
    lm.model = base;
    crate::util::write_json(&export_dir.join(ROUTING_FILE), &table)?;
    crate::util::write_json(
        &export_dir.join(ROUTER_FILE),
        &router_json(cfg, &table, &data, &feats, &pos, &scored, embedder)?,
    )?;
    Ok(table)
}

fn build_routes(
    cfg: &CalibrationConfig,
    summary: &crate::artifact::clusters::ClustersJson,
    manifest: &crate::artifact::export::Manifest,
    data: &Data,
) -> Result<Vec<Route>> {
    let mut tools: HashMap<i32, std::collections::BTreeSet<String>> = HashMap::new();
    // From the training and validation splits only: the test split reports.
    for ((c, &l), s) in data.calls.iter().zip(&data.label).zip(&data.split) {
        if *s == Split::Test {
            continue;
        }
        let e = tools.entry(l).or_default();
        e.extend(c.tools.iter().map(|t| t.name.clone()));
    }
    Ok(summary
        .clusters
        .iter()
        .map(|c| {
            let failed = manifest.adapter(c.id).and_then(|a| {
                a.files.iter().find(|f| !f.verification.passed).map(|f| {
                    format!(
                        "the exported {} adapter failed verification: {}",
                        f.format,
                        f.verification.failure.as_deref().unwrap_or("failed")
                    )
                })
            });
            let target = match (manifest.adapter(c.id), failed) {
                (Some(_), Some(reason)) => RouteTarget::Llm { reason },
                (Some(a), None) => RouteTarget::Adapter {
                    base_model: manifest.base_model.id.clone(),
                    base_sha256: manifest.base_model.sha256.clone(),
                    adapter: a.name.clone(),
                    files: a
                        .files
                        .iter()
                        .map(|f| (f.format.clone(), f.path.clone()))
                        .collect(),
                    prune: a.prune.clone(),
                    guide: None,
                },
                (None, _) => RouteTarget::Llm {
                    reason: "no tuned adapter for this workload".into(),
                },
            };
            Route {
                name: format!("cluster-{}", c.id),
                cluster: c.id,
                label_terms: c.label_terms.clone(),
                centroid: c.centroid.clone(),
                exemplar_call_ids: c
                    .example_call_ids
                    .iter()
                    .take(cfg.exemplars)
                    .cloned()
                    .collect(),
                tools: tools
                    .get(&c.id)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default(),
                target,
                threshold: None,
                accuracy: None,
                tuned_test_accuracy: manifest
                    .adapter(c.id)
                    .and_then(|a| a.eval.as_ref())
                    .and_then(|e| e.tuned_exact_match.rate),
                traffic_share: c.share,
                calibration: RouteCalibration::default(),
            }
        })
        .collect())
}

fn set_thresholds(
    cfg: &CalibrationConfig,
    routes: &mut [Route],
    _spec: &crate::ml::features::FeatureSpec,
    data: &Data,
    feats: &Featurised,
    pos: &HashMap<usize, usize>,
    scored: &Scored,
) {
    let probe = RoutingTable {
        format: String::new(),
        embedder: crate::artifact::clusters::EmbedderInfo {
            id: String::new(),
            checksum: String::new(),
            dim: 0,
        },
        features: _spec.clone(),
        accuracy_target: 0.0,
        min_routed_calls: 0,
        routes: routes.to_vec(),
        default_route: String::new(),
        test: TestReport::default(),
    };
    let mut cands: Vec<Vec<(f32, bool)>> = vec![Vec::new(); routes.len()];
    let mut foreign: Vec<Vec<f32>> = vec![Vec::new(); routes.len()];
    for i in (0..data.calls.len()).filter(|&i| data.split[i] == Split::Val) {
        let p = pos[&i];
        let Some((r, d)) = nearest(&probe, &feats.rows[p]) else {
            continue;
        };
        if !tools_allowed(&routes[r].tools, &feats.facts[p].offered) {
            continue;
        }
        let own = data.label[i] == routes[r].cluster;
        let ok = own && scored.own.get(&i).copied().unwrap_or(false);
        cands[r].push((d, ok));
        if !own {
            foreign[r].push(d);
        }
    }
    for (r, route) in routes.iter_mut().enumerate() {
        let own_calls = (0..data.calls.len())
            .filter(|&i| data.split[i] == Split::Val && data.label[i] == route.cluster)
            .count();
        let own_correct = scored
            .own
            .iter()
            .filter(|(i, ok)| **ok && data.label[**i] == route.cluster)
            .count();
        route.calibration = RouteCalibration {
            own_calls,
            own_correct,
            candidates: cands[r].len(),
            ..Default::default()
        };
        if !matches!(route.target, RouteTarget::Adapter { .. }) {
            continue;
        }
        match choose_threshold(&cands[r], cfg.accuracy_target, cfg.min_routed_calls) {
            Some((t, routed, correct)) => {
                route.threshold = Some(t);
                route.accuracy = Some(Rate {
                    count: correct,
                    of: routed,
                    rate: Some(correct as f64 / routed as f64),
                });
                route.calibration.routed = routed;
                route.calibration.foreign_routed = foreign[r].iter().filter(|d| **d <= t).count();
            }
            None => {
                let acc = if own_calls > 0 {
                    format!(
                        "{:.0}% ({own_correct}/{own_calls})",
                        100.0 * own_correct as f64 / own_calls as f64
                    )
                } else {
                    "no validation calls".into()
                };
                route.target = RouteTarget::Llm {
                    reason: format!(
                        "the tuned model does not reach {:.0}% routed accuracy on at least {} validation calls (own calls right: {acc})",
                        100.0 * cfg.accuracy_target,
                        cfg.min_routed_calls
                    ),
                };
            }
        }
    }
}

/// What the test report needs to judge routed calls without samples.
struct TestCtx<'a> {
    run_dir: &'a Path,
    settings: &'a RunSettings,
    results: &'a [crate::artifact::adapter::ClusterResult],
    base: &'a lm::CausalLm,
}

fn test_report(
    cfg: &CalibrationConfig,
    table: &RoutingTable,
    data: &Data,
    feats: &Featurised,
    pos: &HashMap<usize, usize>,
    lm: &mut LanguageModel,
    ctx: &TestCtx,
) -> Result<TestReport> {
    let run_dir = ctx.run_dir;
    let mut rep = TestReport::default();
    let mut judged: Vec<bool> = Vec::new();
    let mut to_generate: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    let mut samples: HashMap<i32, HashMap<String, bool>> = HashMap::new();
    for i in (0..data.calls.len()).filter(|&i| data.split[i] == Split::Test) {
        rep.calls += 1;
        let p = pos[&i];
        let d = decide(table, &feats.rows[p], &feats.facts[p]);
        let Some(r) = d.routed else {
            *rep.llm_reasons.entry(d.reason).or_default() += 1;
            continue;
        };
        rep.routed += 1;
        let c = table.routes[r].cluster;
        if data.label[i] != c {
            judged.push(false);
            continue;
        }
        let s = match samples.entry(c) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                read_eval_samples(&cluster_dir(run_dir, c))?
                    .into_iter()
                    .map(|s| {
                        let score = match (&s.tuned_guided_score, cfg.guided) {
                            (Some(g), true) => g,
                            _ => &s.tuned_score,
                        };
                        (s.call_id, score.exact_match)
                    })
                    .collect(),
            ),
        };
        match s.get(&data.calls[i].id()) {
            Some(ok) => judged.push(*ok),
            None => to_generate.entry(c).or_default().push(i),
        }
    }
    // One tuned model at a time (each is a full copy of the base).
    for (c, idx) in to_generate {
        lm.model = ctx.base.clone();
        lm.apply_adapter(&cluster_dir(run_dir, c))?;
        let model = lm.model.for_inference()?;
        let refs: Vec<&RedactedCall> = idx.iter().map(|&i| &data.calls[i]).collect();
        let prune = prune_of(run_dir, c);
        let shape = shape_of(run_dir, c, cfg.guided);
        judged.extend(judge(
            lm,
            &model,
            &refs,
            (prune.as_ref(), shape.as_ref()),
            ctx.settings.max_len,
            max_new_of(ctx.results, c),
            cfg.batch_size,
        )?);
    }
    rep.routed_share = rep.routed as f64 / rep.calls.max(1) as f64;
    rep.routed_accuracy = Rate::of_outcomes(judged.into_iter());
    Ok(rep)
}

/// The mean of the 5 best cosine similarities of `u` to `utterances`
/// (semantic-router's route score).
fn route_score(utterances: &[Vec<f32>], u: &[f32]) -> Option<f32> {
    let mut s: Vec<f32> = utterances
        .iter()
        .map(|v| v.iter().zip(u).map(|(a, b)| a * b).sum())
        .collect();
    s.sort_by(|a, b| b.total_cmp(a));
    let k = s.len().min(5);
    (k > 0).then(|| s[..k].iter().sum::<f32>() / k as f32)
}

/// The routes with a small model in semantic-router's `router.json` shape:
/// utterances are user texts of the workload's training calls. semantic-
/// router scores a query by its user text only (no tool rule, no system
/// prompt), so each route's `score_threshold` is fitted like ours: every
/// validation call with a user text is a candidate (other workloads and
/// outliers count as wrong, so are the tuned model's misses), and the
/// threshold is the lowest score at which the accuracy of the calls scoring
/// at least that much still meets the target. A route that never does gets
/// threshold 1.0 (it takes nothing).
fn router_json(
    cfg: &CalibrationConfig,
    table: &RoutingTable,
    data: &Data,
    feats: &Featurised,
    pos: &HashMap<usize, usize>,
    scored: &Scored,
    embedder: &dyn TextEmbedder,
) -> Result<serde_json::Value> {
    let mut routes = Vec::new();
    for route in &table.routes {
        if !matches!(route.target, RouteTarget::Adapter { .. }) {
            continue;
        }
        let mut seen = HashSet::new();
        let utterances: Vec<String> = (0..data.calls.len())
            .filter(|&i| data.split[i] == Split::Train && data.label[i] == route.cluster)
            .filter_map(|i| {
                let f = table.features.facts(&data.calls[i]);
                (!f.user.is_empty() && seen.insert(f.user.clone())).then_some(f.user)
            })
            .take(cfg.utterances)
            .collect();
        let refs: Vec<&str> = utterances.iter().map(String::as_str).collect();
        let uvecs = if refs.is_empty() {
            Vec::new()
        } else {
            embedder.embed(&refs, &ProgressBar::hidden())?
        };
        // Candidates as distances (1 - score) so the same rule applies.
        let cands: Vec<(f32, bool)> = (0..data.calls.len())
            .filter(|&i| data.split[i] == Split::Val)
            .filter_map(|i| {
                let u = feats.user[pos[&i]].as_ref()?;
                let score = route_score(&uvecs, u)?;
                let ok =
                    data.label[i] == route.cluster && scored.own.get(&i).copied().unwrap_or(false);
                Some((1.0 - score, ok))
            })
            .collect();
        let threshold = choose_threshold(&cands, cfg.accuracy_target, cfg.min_routed_calls)
            .map(|(d, _, _)| ((1.0 - d) * 1000.0).floor() / 1000.0)
            .unwrap_or(1.0);
        routes.push(serde_json::json!({
            "name": route.name,
            "utterances": utterances,
            "description": route.label_terms.join(", "),
            "function_schemas": null,
            "llm": null,
            "score_threshold": threshold,
            "metadata": {"cluster": route.cluster, "target": route.target},
        }));
    }
    Ok(serde_json::json!({
        "encoder_type": "huggingface",
        "encoder_name": crate::ml::models::find(&table.embedder.id).map(|e| e.hf_repo).unwrap_or(table.embedder.id.as_str()),
        "routes": routes,
    }))
}

/// The table for the terminal: per route its target, threshold and accuracy.
pub fn table_summary(t: &RoutingTable) -> String {
    let mut s = String::new();
    for r in &t.routes {
        let (target, why) = match &r.target {
            RouteTarget::Adapter { adapter, .. } => (adapter.clone(), String::new()),
            RouteTarget::Llm { reason } => ("llm".to_string(), format!(" ({reason})")),
        };
        if why.contains("no tuned adapter") {
            continue;
        }
        let acc = r
            .accuracy
            .and_then(|a| {
                a.rate
                    .map(|x| format!("{:.0}% ({}/{})", 100.0 * x, a.count, a.of))
            })
            .unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "  route {:<12} → {:<12} threshold {:<8} validation accuracy {}{}\n",
            r.name,
            target,
            r.threshold.map(|x| format!("{x:.3}")).unwrap_or("-".into()),
            acc,
            why
        ));
    }
    let untuned = t
        .routes
        .iter()
        .filter(|r| matches!(&r.target, RouteTarget::Llm { reason } if reason.contains("no tuned adapter")))
        .count();
    s.push_str(&format!(
        "  {untuned} workloads without an adapter stay on the LLM\n"
    ));
    let acc = t
        .test
        .routed_accuracy
        .rate
        .map(|x| {
            format!(
                "{:.0}% ({}/{})",
                100.0 * x,
                t.test.routed_accuracy.count,
                t.test.routed_accuracy.of
            )
        })
        .unwrap_or_else(|| "-".into());
    s.push_str(&format!(
        "  test split: {:.0}% of {} calls routed to small models, accuracy on them {acc}\n",
        100.0 * t.test.routed_share,
        t.test.calls
    ));
    s
}
