//! `slmforge export RUN`: deployable adapters (PEFT, llama.cpp GGUF, merged
//! model), the serving chat template, DEPLOY.md and manifest.json, then the
//! calibrated routing table (`routing.json` + `router.json`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;

use crate::artifact::adapter::read_run_settings;
use crate::artifact::export::{DEPLOY_FILE, EXPORT_DIR};
use crate::artifact::routing::ROUTING_FILE;
use crate::export::{self, ExportConfig, Format};
use crate::ml::embed::{LazyEmbedder, TextEmbedder};
use crate::ml::lm::export::{parse_quant, TensorDtype};
use crate::ml::models::embedder_dir;
use crate::ml::runtime::init_runtime;
use crate::route::{self, CalibrationConfig};
use crate::util::usage;

/// `slmforge export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The adapter run (`slmforge tune --out`).
    pub run: PathBuf,
    /// Output directory (default: RUN/export).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The dataset the run was tuned on (default: the one the run records).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Formats, comma-separated: peft, gguf, merged.
    #[arg(long, value_delimiter = ',', default_value = "peft,gguf,merged")]
    pub formats: Vec<String>,
    /// Adapter tensor type: f16, f32, or q8_0 (llama.cpp adapters only).
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Weight type of the merged model (q8_0, q6_k, q5_k, q4_k, q5_0, q4_0, f16...).
    #[arg(long, default_value = "q8_0")]
    pub merged_quant: String,
    /// Export only this cluster (repeatable; default: every tuned cluster).
    #[arg(long = "cluster")]
    pub clusters: Vec<i32>,
    /// Prompts per cluster for the verification of each exported file.
    #[arg(long, default_value_t = export::VerifyConfig::default().prompts)]
    pub verify_prompts: usize,
    /// Do not build the routing table.
    #[arg(long)]
    pub no_route: bool,
    /// Calibrate the routes on free decoding. By default each adapter is
    /// judged, and marked in routing.json to be served, with schema-guided
    /// decoding (tool calls and JSON constrained to their schemas).
    #[arg(long)]
    pub unguided: bool,
    /// Routing calibration target: routed accuracy at least this.
    #[arg(long, default_value_t = CalibrationConfig::default().accuracy_target)]
    pub accuracy_target: f64,
    /// A route needs at least this many routed validation calls.
    #[arg(long, default_value_t = CalibrationConfig::default().min_routed_calls)]
    pub min_routed_calls: usize,
}

impl ExportArgs {
    fn config(&self) -> Result<ExportConfig> {
        let formats = self
            .formats
            .iter()
            .map(|f| {
                Format::parse(f).ok_or_else(|| {
                    usage(format!(
                        "unknown export format {f:?} (choose from peft, gguf, merged)"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dtype = TensorDtype::parse(&self.dtype)
            .ok_or_else(|| usage(format!("unknown --dtype {:?} (f16, f32, q8_0)", self.dtype)))?;
        let merged_quant = parse_quant(&self.merged_quant)
            .ok_or_else(|| usage(format!("unknown --merged-quant {:?}", self.merged_quant)))?;
        let verify = export::VerifyConfig {
            prompts: self.verify_prompts.max(1),
            ..Default::default()
        };
        Ok(ExportConfig {
            formats,
            dtype,
            merged_quant,
            clusters: (!self.clusters.is_empty()).then(|| self.clusters.clone()),
            verify,
        })
    }
}

/// The dataset of a run: `--dataset`, else the one `tune` recorded. Reads
/// the run's settings either way, so that a directory that is not an
/// adapter run is refused before anything is loaded (the embedder).
pub fn dataset_of(run: &Path, given: Option<&Path>) -> Result<PathBuf> {
    let settings = read_run_settings(run)?;
    if let Some(d) = given {
        return Ok(d.to_path_buf());
    }
    settings.dataset.ok_or_else(|| {
        usage(format!(
            "{} does not record its dataset: pass --dataset DIR",
            run.display()
        ))
    })
}

pub fn run(args: ExportArgs) -> Result<ExitCode> {
    init_runtime();
    let cfg = args.config()?;
    let dataset = dataset_of(&args.run, args.dataset.as_deref())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join(EXPORT_DIR));
    let ccfg = (!args.no_route).then(|| CalibrationConfig {
        accuracy_target: args.accuracy_target,
        min_routed_calls: args.min_routed_calls,
        guided: !args.unguided,
        ..Default::default()
    });
    let embedder = ccfg
        .is_some()
        .then(|| LazyEmbedder::new(&embedder_dir()))
        .transpose()?;
    let ok = export_and_route(
        &cfg,
        ccfg.as_ref()
            .zip(embedder.as_ref().map(|e| e as &dyn TextEmbedder)),
        &args.run,
        &dataset,
        &out,
    )?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Exports a run, then (with a calibration config) builds the routing
/// table; prints what was written and the llama-server line. False when a
/// verification failed.
pub fn export_and_route(
    cfg: &ExportConfig,
    calibration: Option<(&CalibrationConfig, &dyn TextEmbedder)>,
    run_dir: &Path,
    dataset: &Path,
    out: &Path,
) -> Result<bool> {
    let t0 = Instant::now();
    let res = export::run(cfg, run_dir, dataset, out)?;
    eprintln!(
        "exported {} adapter(s) in {:.0} s to {}",
        res.manifest.adapters.len(),
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    print!("{}", export_summary(&res));
    if let Some((ccfg, embedder)) = calibration {
        let t1 = Instant::now();
        let table = route::calibrate(ccfg, dataset, run_dir, out, embedder)?;
        eprintln!(
            "routing table calibrated in {:.0} s",
            t1.elapsed().as_secs_f64()
        );
        print!("{}", route::table_summary(&table));
        println!("routing table: {}", out.join(ROUTING_FILE).display());
    }
    println!("how to serve them: {}", out.join(DEPLOY_FILE).display());
    if let Some(cmd) = crate::export::llama_server_command(&res.manifest) {
        println!("  (cd {} && {cmd})", out.display());
    }
    for f in &res.failures {
        eprintln!("verification FAILED: {f}");
    }
    Ok(res.failures.is_empty())
}

/// One line per exported file with its verification.
pub fn export_summary(res: &export::ExportOutput) -> String {
    let mut s = String::new();
    for a in &res.manifest.adapters {
        for f in &a.files {
            let v = &f.verification;
            s.push_str(&format!(
                "  {:<12} {:<7} {:<44} {} ({}, greedy {}/{}, vs base {})\n",
                a.name,
                f.format,
                f.path,
                if v.passed { "verified" } else { "FAILED" },
                v.describe(),
                v.same_greedy,
                v.prompts,
                v.base_change()
            ));
        }
    }
    s
}
