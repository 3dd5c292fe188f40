//! Labels people can read: each cluster's dominant called tools (or JSON
//! keys) and the most distinctive words of its user requests (class-based
//! TF-IDF; the system prompt only for calls without a user turn, so shared
//! boilerplate never names a cluster), a few example requests, the tools
//! its responses call, a representative call, token and response-kind
//! statistics, how homogeneous it is (answer kind and signature, mixed
//! clusters flagged) and purity against logged `workload_id`s.

use std::collections::{BTreeMap, HashMap};

use ndarray::Array2;
use rayon::prelude::*;

use super::algo::Clustering;
use super::cache::TextTable;
use super::{metrics, Calls};
use crate::artifact::clusters::{
    ClusterStats, ClusterSummary, Homogeneity, Percentiles, ToolShare,
};
use crate::ml::features::{AnswerClass, CallFacts, FeatureSpec, KINDS};

/// Terms kept per cluster label.
pub const LABEL_TERMS: usize = 6;
/// Tools listed per cluster (those called by at least 1% of its calls).
pub const TOP_TOOLS: usize = 5;
/// Example calls per cluster.
pub const EXAMPLES: usize = 5;
/// Example user requests per cluster, and their length in characters.
pub const EXAMPLE_REQUESTS: usize = 3;
pub const EXAMPLE_CHARS: usize = 160;
/// A cluster whose most common answer kind covers less than this share of
/// its calls is flagged as mixed.
pub const MIXED_BELOW: f64 = 0.9;
/// A cluster's radius is this times the 95th percentile of its members' distances.
pub const RADIUS_SLACK: f32 = 1.25;

/// Common English words that never make a useful label.
const STOPWORDS: &[&str] = &[
    "about",
    "above",
    "after",
    "again",
    "all",
    "also",
    "and",
    "any",
    "are",
    "as",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "else",
    "etc",
    "ever",
    "every",
    "few",
    "for",
    "from",
    "further",
    "get",
    "got",
    "had",
    "has",
    "have",
    "having",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "into",
    "its",
    "itself",
    "just",
    "let",
    "like",
    "may",
    "might",
    "more",
    "most",
    "much",
    "must",
    "myself",
    "need",
    "nor",
    "not",
    "now",
    "off",
    "once",
    "one",
    "only",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "per",
    "please",
    "same",
    "shall",
    "she",
    "should",
    "some",
    "such",
    "than",
    "thanks",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "too",
    "under",
    "until",
    "upon",
    "use",
    "very",
    "was",
    "way",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "yes",
    "yet",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "hello",
    "dear",
    "can't",
    "don't",
    "i'm",
    "it's",
    "we're",
    "you're",
    "let's",
    "want",
    "would",
    "know",
    "hey",
    "thank",
];

/// Lower-case words of a task text that can label a cluster: letters,
/// digits and underscores, three characters or more, not only digits, not
/// a stop word; placeholders such as `<EMAIL>` are dropped.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_tag = false;
    for raw in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '<' || c == '>')) {
        // Skip `<TAG>` placeholders (and anything angle-bracketed).
        let mut word = String::new();
        for c in raw.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                _ if !in_tag => word.extend(c.to_lowercase()),
                _ => {}
            }
        }
        in_tag = false;
        let w = word.trim_matches('_');
        let n = w.chars().count();
        if (3..=30).contains(&n)
            && !w.chars().all(|c| c.is_ascii_digit() || c == '_')
            && !STOPWORDS.contains(&w)
        {
            out.push(w.to_string());
        }
    }
    out
}

/// Class-based TF-IDF (as BERTopic): for cluster c and term t,
/// tf(t, c) * ln(1 + A / f(t)), where tf is the term's share of the
/// cluster's words, f(t) its count over all clusters and A the mean number
/// of words per cluster. `doc_terms` holds the (term, count) pairs of each
/// distinct text; call i uses text `user_of[i]`, or `system_of[i]` when it
/// has no user turn;
/// `labels[i]` is its cluster (negative: outlier, left out). Returns the
/// top terms per cluster.
pub fn label_terms(
    doc_terms: &[Vec<(u32, u32)>],
    vocab: &[String],
    system_of: &[Option<usize>],
    user_of: &[Option<usize>],
    labels: &[i32],
    k: usize,
) -> Vec<Vec<String>> {
    // Count per cluster how many calls use each distinct text, then expand.
    let mut doc_counts: Vec<BTreeMap<usize, u64>> = vec![BTreeMap::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 {
            // The user's request names the task; the system prompt only
            // when there is none (its boilerplate is shared across workloads).
            if let Some(doc) = user_of[i].or(system_of[i]) {
                *doc_counts[l as usize].entry(doc).or_default() += 1;
            }
        }
    }
    let mut counts: Vec<HashMap<u32, u64>> = vec![HashMap::new(); k];
    let mut totals = vec![0u64; k];
    let mut overall: HashMap<u32, u64> = HashMap::new();
    for c in 0..k {
        for (&doc, &times) in &doc_counts[c] {
            for &(t, n) in &doc_terms[doc] {
                let add = n as u64 * times;
                *counts[c].entry(t).or_default() += add;
                *overall.entry(t).or_default() += add;
                totals[c] += add;
            }
        }
    }
    let mean_words = totals.iter().sum::<u64>() as f64 / k.max(1) as f64;
    (0..k)
        .map(|c| {
            let mut scored: Vec<(f64, &str)> = counts[c]
                .iter()
                .map(|(&t, &n)| {
                    let tf = n as f64 / totals[c].max(1) as f64;
                    let idf = (1.0 + mean_words / overall[&t] as f64).ln();
                    (tf * idf, vocab[t as usize].as_str())
                })
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            scored
                .into_iter()
                .take(LABEL_TERMS)
                .map(|(_, t)| t.to_string())
                .collect()
        })
        .collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Nearest-rank percentile of unsorted distances.
pub fn percentile_f32(values: &[f32], p: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Token percentiles, response-kind rates of a set of calls.
pub fn stats(members: &[&CallFacts]) -> ClusterStats {
    let mut prompt: Vec<u64> = members.iter().map(|f| f.prompt_tokens).collect();
    let mut completion: Vec<u64> = members.iter().map(|f| f.completion_tokens).collect();
    prompt.sort_unstable();
    completion.sort_unstable();
    let logged = members
        .iter()
        .filter(|f| f.prompt_logged && f.completion_logged)
        .count();
    let tokens_source = if logged == members.len() {
        "logged"
    } else if members
        .iter()
        .all(|f| !f.prompt_logged && !f.completion_logged)
    {
        "estimated"
    } else {
        "mixed"
    };
    let n = members.len().max(1) as f64;
    let rate = |k: usize| round4(members.iter().filter(|f| f.kind == Some(k)).count() as f64 / n);
    ClusterStats {
        prompt_tokens: Percentiles {
            p50: percentile(&prompt, 0.5),
            p95: percentile(&prompt, 0.95),
        },
        completion_tokens: Percentiles {
            p50: percentile(&completion, 0.5),
            p95: percentile(&completion, 0.95),
        },
        tokens_source: tokens_source.to_string(),
        tool_call_rate: rate(0),
        json_rate: rate(1),
        text_rate: rate(2),
    }
}

/// Tools called by the members' responses, by share (names break ties).
pub fn tools(members: &[&CallFacts]) -> Vec<ToolShare> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in members {
        for t in &f.called {
            *counts.entry(t.as_str()).or_default() += 1;
        }
    }
    let n = members.len().max(1) as f64;
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .filter(|(_, c)| *c as f64 / n >= 0.01)
        .take(TOP_TOOLS)
        .map(|(name, c)| ToolShare {
            name: name.to_string(),
            share: round4(c as f64 / n),
        })
        .collect()
}

/// The answer signature of a call: its called tool set, its JSON key set,
/// or its kind.
pub fn signature(f: &CallFacts) -> String {
    match f.kind {
        Some(0) => format!("tool:{}", f.called.join("+")),
        Some(1) => format!("keys:{}", f.json_keys.join(",")),
        Some(k) => KINDS[k].to_string(),
        None => "none".to_string(),
    }
}

/// Most common value and its share (ties: the smallest value).
fn dominant<'a>(values: impl Iterator<Item = &'a str>) -> (String, f64) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut n = 0;
    for v in values {
        *counts.entry(v).or_default() += 1;
        n += 1;
    }
    let best = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(v, c)| (v.to_string(), *c));
    best.map_or((String::new(), 0.0), |(v, c)| (v, share(c, n)))
}

/// Answer class, kind and signature homogeneity of a set of calls, and
/// the reason it is mixed (classes below [`MIXED_BELOW`]), if it is.
pub fn homogeneity(members: &[&CallFacts]) -> (Homogeneity, Option<String>) {
    let kind_of = |f: &CallFacts| f.kind.map_or("none", |k| KINDS[k]);
    let class_of = |f: &CallFacts| AnswerClass::of(f).as_str();
    let (kind, kind_share) = dominant(members.iter().map(|f| kind_of(f)));
    let (class, class_share) = dominant(members.iter().map(|f| class_of(f)));
    let sigs: Vec<String> = members.iter().map(|f| signature(f)).collect();
    let (signature, signature_share) = dominant(sigs.iter().map(String::as_str));
    let mixed = (class_share < MIXED_BELOW).then(|| {
        let mut shares: BTreeMap<&str, usize> = BTreeMap::new();
        for f in members {
            *shares.entry(class_of(f)).or_default() += 1;
        }
        let mut v: Vec<(&str, usize)> = shares.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        format!(
            "mixed answer classes: {}",
            v.iter()
                .map(|(k, c)| format!("{:.0}% {k}", 100.0 * share(*c, members.len())))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    (
        Homogeneity {
            class,
            class_share,
            kind,
            kind_share,
            signature,
            signature_share,
        },
        mixed,
    )
}

/// "tool_a, tool_b · word, word, word": the tools called by at least a
/// fifth of the calls (else the three most called and "…"; else the
/// dominant JSON keys, else "text"), then label terms.
pub fn label(tools: &[ToolShare], h: &Homogeneity, terms: &[String]) -> String {
    let mut head: Vec<String> = tools
        .iter()
        .filter(|t| t.share >= 0.2)
        .take(3)
        .map(|t| t.name.clone())
        .collect();
    if head.is_empty() && !tools.is_empty() {
        // Many tools, none dominant (generic function calling, agent loops).
        head = tools.iter().take(3).map(|t| t.name.clone()).collect();
        head.push("…".into());
    }
    if head.is_empty() {
        if let Some(keys) = h.signature.strip_prefix("keys:") {
            head.push(format!(
                "{{{}}}",
                keys.split(',').take(4).collect::<Vec<_>>().join(", ")
            ));
        } else if h.kind == "text" {
            head.push("text".into());
        }
    }
    let words = terms.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    match (head.is_empty(), words.is_empty()) {
        (false, false) => format!("{} · {words}", head.join(", ")),
        (false, true) => head.join(", "),
        _ => words,
    }
}

/// Up to [`EXAMPLE_REQUESTS`] distinct user requests of the members in
/// `order`, each cut to [`EXAMPLE_CHARS`].
pub fn example_requests(order: &[usize], facts: &[CallFacts]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for &i in order {
        let u = &facts[i].user;
        if u.is_empty() {
            continue;
        }
        let cut = crate::ml::features::clean_and_truncate(u, EXAMPLE_CHARS);
        if !out.contains(&cut) {
            out.push(cut);
        }
        if out.len() >= EXAMPLE_REQUESTS {
            break;
        }
    }
    out
}

/// Purity of the members against their logged `workload_id`s.
pub fn purity(members: &[&CallFacts]) -> Option<(f64, String)> {
    metrics::purity(members.iter().map(|f| f.workload_id.as_deref())).map(|(p, w)| (round4(p), w))
}

/// Member indices ordered by distance to the centroid (call ids break ties).
pub fn nearest_members(members: &[usize], distances: &[f32], call_ids: &[String]) -> Vec<usize> {
    let mut v = members.to_vec();
    v.sort_by(|&a, &b| {
        distances[a]
            .total_cmp(&distances[b])
            .then(call_ids[a].cmp(&call_ids[b]))
    });
    v
}

pub fn share(part: usize, whole: usize) -> f64 {
    round4(part as f64 / whole.max(1) as f64)
}

// ---------------------------------------------------------------------------
// The description phase.

/// Describes each kept cluster: label terms (class-based TF-IDF over the
/// distinct texts), tools, size and share, the calls nearest the centroid,
/// radii (full and request-only, for routing), stats and purity.
pub fn clusters(
    calls: &Calls,
    table: &TextTable,
    spec: &FeatureSpec,
    x: &Array2<f32>,
    clustering: &Clustering,
) -> Vec<ClusterSummary> {
    let (facts, call_ids) = (&calls.facts, &calls.call_ids);
    let (labels, distances, centroids) = (
        &clustering.labels,
        &clustering.distances,
        &clustering.centroids,
    );
    let (n, k) = (calls.len(), clustering.k());
    let members = clustering.members();
    let (doc_terms, vocab) = intern_terms(&table.texts);
    let terms_per_cluster = label_terms(
        &doc_terms,
        &vocab,
        &table.system_of,
        &table.user_of,
        labels,
        k,
    );
    (0..k)
        .map(|c| {
            let m = &members[c];
            let mf: Vec<&CallFacts> = m.iter().map(|&i| &facts[i]).collect();
            let order = nearest_members(m, distances, call_ids);
            let member_d: Vec<f32> = m.iter().map(|&i| distances[i]).collect();
            let request_d: Vec<f32> = m
                .iter()
                .map(|&i| {
                    spec.request_distance(
                        x.row(i).as_slice().expect("standard layout"),
                        &centroids[c],
                    )
                })
                .collect();
            let purity = purity(&mf);
            let tools = tools(&mf);
            let (homogeneity, mixed) = homogeneity(&mf);
            ClusterSummary {
                id: c as i32,
                label: label(&tools, &homogeneity, &terms_per_cluster[c]),
                label_terms: terms_per_cluster[c].clone(),
                example_requests: example_requests(&order, facts),
                homogeneity,
                mixed,
                tools,
                size: m.len(),
                share: share(m.len(), n),
                representative_call_id: call_ids[order[0]].clone(),
                example_call_ids: order
                    .iter()
                    .take(EXAMPLES)
                    .map(|&i| call_ids[i].clone())
                    .collect(),
                centroid: centroids[c].clone(),
                radius: percentile_f32(&member_d, 0.95) * RADIUS_SLACK,
                request_radius: percentile_f32(&request_d, 0.95) * RADIUS_SLACK,
                stats: stats(&mf),
                purity: purity.as_ref().map(|p| p.0),
                workload_id: purity.map(|p| p.1),
            }
        })
        .collect()
}

/// Purity against logged `workload_id`s over all clustered calls that have
/// one, weighted by those calls; `None` when no call has one.
pub fn overall_purity(
    clusters: &[ClusterSummary],
    clustering: &Clustering,
    facts: &[CallFacts],
) -> Option<f64> {
    let members = clustering.members();
    let (mut pure, mut total) = (0.0, 0usize);
    for (c, cl) in clusters.iter().enumerate() {
        let with_id = members[c]
            .iter()
            .filter(|&&i| facts[i].workload_id.is_some())
            .count();
        if let Some(p) = cl.purity {
            pure += p * with_id as f64;
            total += with_id;
        }
    }
    (total > 0).then(|| (pure / total as f64 * 1e4).round() / 1e4)
}

/// Terms of each distinct text, as (term id, count), and the term strings.
fn intern_terms(texts: &[String]) -> (Vec<Vec<(u32, u32)>>, Vec<String>) {
    let per_text: Vec<Vec<String>> = texts.par_iter().map(|t| terms(t)).collect();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut vocab: Vec<String> = Vec::new();
    let docs = per_text
        .into_iter()
        .map(|words| {
            let mut counts: BTreeMap<u32, u32> = BTreeMap::new();
            for w in words {
                let next = vocab.len() as u32;
                let id = *ids.entry(w).or_insert_with_key(|w| {
                    vocab.push(w.clone());
                    next
                });
                *counts.entry(id).or_default() += 1;
            }
            counts.into_iter().collect()
        })
        .collect();
    (docs, vocab)
}
