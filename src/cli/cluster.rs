//! `slmforge cluster`: flags → [`ClusterConfig`], then
//! [`crate::cluster::run`] with a lazily loaded embedder, and the summary
//! printed on stderr (`--json` adds the figures on stdout).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::artifact::CALLS_FILE;
use crate::cluster::{self, Algorithm, ClusterConfig, ClusterOutput};
use crate::ml::embed::LazyEmbedder;
use crate::ml::features::{FeatureWeights, TextLimits};
use crate::ml::models::embedder_dir;
use crate::util::usage;

/// `--k auto` or a number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KArg(pub Option<usize>);

impl std::str::FromStr for KArg {
    type Err = String;
    fn from_str(s: &str) -> Result<KArg, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(KArg(None));
        }
        s.parse::<usize>()
            .map(|k| KArg(Some(k)))
            .map_err(|_| format!("expected `auto` or a number of clusters, got {s:?}"))
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgorithmArg {
    Kmeans,
    Dbscan,
}

/// `slmforge cluster`.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Dataset directory written by `slmforge ingest` (reads DIR/calls.parquet;
    /// writes clusters.parquet, clusters.json, clusters.svg and cache/ there).
    pub dataset: PathBuf,
    /// Number of clusters, or `auto` to choose it by silhouette.
    #[arg(long, default_value = "auto")]
    pub k: KArg,
    /// Largest k tried by `--k auto` [default: min(20, calls / min-cluster-size)].
    #[arg(long)]
    pub k_max: Option<usize>,
    /// With `--k auto`, search k over all calls at once instead of within
    /// each answer class (tool calls and agent-loop steps, text answers,
    /// JSON answers) separately.
    #[arg(long)]
    pub no_partition: bool,
    /// Number clusters afresh (by size) instead of keeping the ids of the
    /// dataset's earlier clustering.
    #[arg(long)]
    pub fresh_ids: bool,
    /// Seed: the same dataset, options and seed give byte-identical outputs.
    #[arg(long, default_value_t = ClusterConfig::default().seed)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Kmeans)]
    pub algorithm: AlgorithmArg,
    /// DBSCAN neighbourhood radius, in the space of the calls' first 48
    /// principal components plus their residual length [default: chosen on
    /// the sample].
    #[arg(long)]
    pub eps: Option<f32>,
    /// DBSCAN core-point threshold (the point itself included).
    #[arg(long, default_value_t = cluster::DEFAULT_MIN_POINTS)]
    pub min_points: usize,
    /// Clusters smaller than this become outliers (left on the LLM).
    #[arg(long, default_value_t = ClusterConfig::default().min_cluster_size)]
    pub min_cluster_size: usize,
    /// KMeans: a member whose 4th-nearest fellow member is farther than the
    /// cluster's median plus this many robust standard deviations (and 1.2 ×
    /// the median) becomes an outlier; `off` keeps every call in a cluster.
    #[arg(long, default_value = "2")]
    pub outlier_z: String,
    /// Feature weight, PART=W (repeatable); parts: system, user,
    /// tools_offered, tools_called, response_kind, json_keys, length.
    #[arg(long = "weight", value_name = "PART=W")]
    pub weights: Vec<String>,
    /// Characters of the system prompt embedded.
    #[arg(long, default_value_t = TextLimits::default().system_chars)]
    pub system_chars: usize,
    /// Characters of the user request embedded.
    #[arg(long, default_value_t = TextLimits::default().user_chars)]
    pub user_chars: usize,
    /// Ground-truth labels (`slmforge synth`'s .labels.jsonl): report the
    /// adjusted Rand index.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Embedder directory [default: the catalogue's all-minilm-l6-v2 in $SLMFORGE_MODELS].
    #[arg(long)]
    pub embedder: Option<PathBuf>,
    /// Calls sampled for the k search, silhouettes and the plot.
    #[arg(long, default_value_t = ClusterConfig::default().sample)]
    pub sample: usize,
    /// Do not write clusters.svg.
    #[arg(long)]
    pub no_plot: bool,
    /// Also print the timings and cache figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ClusterArgs {
    /// The run configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<ClusterConfig> {
        let weights = FeatureWeights::default()
            .parse_overrides(&self.weights)
            .map_err(usage)?;
        Ok(ClusterConfig {
            k: self.k.0,
            partition: !self.no_partition,
            stable_ids: !self.fresh_ids,
            k_max: self.k_max,
            seed: self.seed,
            algorithm: match self.algorithm {
                AlgorithmArg::Kmeans => Algorithm::KMeans,
                AlgorithmArg::Dbscan => Algorithm::Dbscan {
                    eps: self.eps,
                    min_points: self.min_points,
                },
            },
            min_cluster_size: self.min_cluster_size.max(1),
            outlier_z: match self.outlier_z.as_str() {
                "off" | "none" => None,
                z => Some(
                    z.parse::<f32>()
                        .ok()
                        .filter(|z| z.is_finite() && *z > 0.0)
                        .ok_or_else(|| {
                            usage(format!(
                                "--outlier-z: expected a positive number or `off`, got {z:?}"
                            ))
                        })?,
                ),
            },
            weights,
            text: TextLimits {
                system_chars: self.system_chars.max(1),
                user_chars: self.user_chars.max(1),
            },
            normalise_placeholders: true,
            truth: self.truth.clone(),
            sample: self.sample,
            plot: !self.no_plot,
            progress: true,
        })
    }
}

/// Runs `slmforge cluster`.
pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    if matches!(cfg.algorithm, Algorithm::KMeans) && (args.eps.is_some()) {
        return Err(usage("--eps applies to --algorithm dbscan only"));
    }
    // Fail on a missing dataset before touching the embedder.
    let calls = args.dataset.join(CALLS_FILE);
    if !calls.exists() {
        return Err(usage(format!(
            "no dataset at {}: run `slmforge ingest LOGS --out {}` first",
            calls.display(),
            args.dataset.display()
        )));
    }
    let dir = args.embedder.clone().unwrap_or_else(embedder_dir);
    let embedder = LazyEmbedder::new(&dir)?;
    let out = cluster::run(&cfg, &args.dataset, &embedder)?;
    eprint!("{}", summary_text(&out));
    if args.json {
        let v = serde_json::json!({
            "calls": out.summary.calls,
            "k": out.k,
            "outliers": out.summary.outliers,
            "k_search": out.silhouettes,
            "ari": out.summary.ari,
            "nmi": out.summary.nmi,
            "purity": out.summary.purity,
            "timings": out.timings,
            "cache": out.cache,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The short human summary printed on stderr.
pub fn summary_text(out: &ClusterOutput) -> String {
    let s = &out.summary;
    let mut t = format!(
        "cluster: {} calls -> {} clusters ({}), {} outliers ({:.1}%) in {:.1} s\n",
        s.calls,
        s.k,
        s.algorithm,
        s.outliers,
        100.0 * s.outliers as f64 / s.calls.max(1) as f64,
        out.timings.total_s
    );
    let mut parts: Vec<Option<&str>> = s.k_search.iter().map(|x| x.partition.as_deref()).collect();
    parts.dedup();
    for part in parts {
        let scores: Vec<_> = s
            .k_search
            .iter()
            .filter(|x| x.partition.as_deref() == part)
            .collect();
        if scores.len() < 2 {
            continue;
        }
        let chosen = scores.iter().find(|x| x.chosen);
        t += &format!(
            "  k auto{}: silhouette {} at k={} (tried {}..{}; {})\n",
            part.map_or(String::new(), |p| format!(" [{p} answers]")),
            chosen.map_or("-".into(), |x| format!("{:.3}", x.silhouette)),
            chosen.map_or(0, |x| x.k),
            scores.first().map_or(0, |x| x.k),
            scores.last().map_or(0, |x| x.k),
            scores
                .iter()
                .map(|x| format!("{}:{:.2}", x.k, x.silhouette))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if s.k == 0 {
        t += &format!(
            "  note: no cluster reached --min-cluster-size {}: every call stays on the LLM\n",
            s.min_cluster_size
        );
    }
    if let Some(d) = &s.dbscan {
        t += &format!(
            "  dbscan: eps {:.3}{} min_points {}\n",
            d.eps,
            if d.eps_auto { " (estimated)" } else { "" },
            d.min_points
        );
    }
    for c in &s.clusters {
        let tools = c
            .tools
            .iter()
            .take(3)
            .map(|x| format!("{} {:.0}%", x.name, x.share * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        t += &format!(
            "  #{:<2} {:>6} ({:>5.1}%)  {}  [{} {:.0}%{}]{}{}\n",
            c.id,
            c.size,
            c.share * 100.0,
            c.label,
            c.homogeneity.class,
            c.homogeneity.class_share * 100.0,
            if tools.is_empty() {
                String::new()
            } else {
                format!("; {tools}")
            },
            match (&c.workload_id, c.purity) {
                (Some(w), Some(p)) => format!("  {w} {:.0}%", p * 100.0),
                _ => String::new(),
            },
            c.mixed
                .as_ref()
                .map_or(String::new(), |m| format!("  MIXED: {m}"))
        );
    }
    if let Some(mix) = &out.truth_mix {
        t += "  true workloads per cluster (one-offs: oneoff_*):\n";
        for (c, v) in mix {
            let mut merged: Vec<(String, usize)> = Vec::new();
            for (g, n) in v {
                let g = if g.starts_with("oneoff_") {
                    "oneoff_*".to_string()
                } else {
                    g.clone()
                };
                match merged.iter_mut().find(|x| x.0 == g) {
                    Some(x) => x.1 += n,
                    None => merged.push((g, *n)),
                }
            }
            merged.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            t += &format!(
                "    #{c:<3} {}\n",
                merged
                    .iter()
                    .take(5)
                    .map(|(g, n)| format!("{g} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let mut q = Vec::new();
    if let Some(p) = s.purity {
        q.push(format!("purity vs workload_id {p:.3}"));
    }
    if let (Some(a), Some(m), Some(n)) = (s.ari, s.nmi, s.truth_calls) {
        q.push(format!("ARI vs truth {a:.3}, NMI {m:.3} over {n} calls"));
    }
    if !q.is_empty() {
        t += &format!("  {}\n", q.join("; "));
    }
    let c = &out.cache;
    t += &format!(
        "  embeddings: {} distinct texts, {} cached, {} embedded ({:.1} s)\n",
        c.texts, c.hits, c.misses, out.timings.embed_s
    );
    t += &format!(
        "  time: read {:.1} s, embed {:.1} s, cluster {:.1} s, describe {:.1} s, write {:.1} s\n",
        out.timings.read_s,
        out.timings.embed_s,
        out.timings.cluster_s,
        out.timings.describe_s,
        out.timings.write_s
    );
    t += &format!(
        "  -> {}\n",
        out.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    t
}
