//! Scale-out on an existing scheduler. `slmforge run FILE --emit slurm|k8s
//! DIR` does everything up to tuning, then writes one job per cluster to
//! tune (a Slurm array script, or one Kubernetes `Job` manifest per
//! cluster) and a `jobs.json`. Each job is a plain `slmforge tune DATASET
//! --cluster ID --out WORK/runs/RUN_ID/parts/cluster-ID` with the pipeline's
//! settings spelled out as flags, reading and writing the shared work
//! directory (absolute paths). `slmforge collect FILE --run RUN_ID` then
//! checks every job's output (present, the right cluster, the same
//! settings) and gates, promotes, exports and reports as `run` would.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::stages::{tune_config, tune_plan, tune_settings_key};
use super::state::TunedRecord;
use super::{Ctx, Stage};
use crate::artifact::adapter::{read_results, ClusterStatus, TUNE_CONFIG_FILE};
use crate::artifact::run::RUNS_DIR;
use crate::artifact::PLAN_FILE;
use crate::tune::TuneConfig;
use crate::util::usage;

/// `RUN/parts/`: the emitted jobs' outputs, one adapter run per cluster.
pub const PARTS_DIR: &str = "parts";
pub const JOBS_FILE: &str = "jobs.json";
pub const JOBS_FORMAT: &str = "slmforge-jobs-v1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Slurm,
    K8s,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Slurm => "slurm",
            Kind::K8s => "k8s",
        }
    }
}

pub fn parse_emit(v: &[String]) -> anyhow::Result<Option<(Kind, PathBuf)>> {
    match v {
        [] => Ok(None),
        [k, dir] => {
            let kind = match k.as_str() {
                "slurm" => Kind::Slurm,
                "k8s" | "kubernetes" => Kind::K8s,
                other => return Err(usage(format!("--emit {other}: use slurm or k8s"))),
            };
            Ok(Some((kind, PathBuf::from(dir))))
        }
        _ => Err(usage("--emit takes KIND DIR")),
    }
}

/// `jobs.json`: what was emitted, for `collect`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Jobs {
    pub format: String,
    pub run_id: String,
    pub pipeline: String,
    pub kind: String,
    /// The tune settings' hash every job's output must carry.
    pub settings: String,
    pub jobs: Vec<Job>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub cluster: i32,
    /// Where the job writes (absolute).
    pub out: PathBuf,
    /// Whether the serving plan puts this cluster on a GPU.
    pub gpu: bool,
    /// sha256 of the cluster's member call ids when the job was emitted:
    /// `collect` refuses the output if the cluster changed since.
    pub members: String,
    pub argv: Vec<String>,
}

fn members_key(calls: &[String]) -> String {
    let parts: Vec<&[u8]> = calls.iter().map(|c| c.as_bytes()).collect();
    super::state::key_of(&parts)
}

fn abs(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// `slmforge tune` flags that reproduce `c` exactly.
pub fn tune_argv(
    c: &TuneConfig,
    dataset: &Path,
    cluster: i32,
    out: &Path,
    gpu: bool,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "slmforge".into(),
        "tune".into(),
        dataset.display().to_string(),
    ];
    let mut flag = |k: &str, v: String| {
        a.push(format!("--{k}"));
        a.push(v);
    };
    flag("cluster", cluster.to_string());
    flag("out", out.display().to_string());
    flag("model", c.base_model.clone());
    flag("rank", c.lora.rank.to_string());
    flag("alpha", c.lora.alpha.to_string());
    flag("lr", c.lr.to_string());
    flag("warmup-steps", c.warmup_steps.to_string());
    flag("batch-size", c.batch_size.to_string());
    flag("batch-tokens", c.batch_tokens.to_string());
    flag("max-len", c.max_len.to_string());
    flag("epochs", c.epochs.to_string());
    if let Some(s) = c.max_steps {
        flag("max-steps", s.to_string());
    }
    flag("time-budget", c.time_budget_secs.unwrap_or(0.0).to_string());
    flag("eval-every", c.eval_every.to_string());
    flag("patience", c.patience.to_string());
    flag("checkpoint-every", c.checkpoint_every.to_string());
    flag("min-examples", c.min_examples.to_string());
    flag("split", format!("{},{}", c.split.train, c.split.val));
    flag("seed", c.seed.to_string());
    flag("max-test-calls", c.eval.max_test_calls.to_string());
    flag("eval-batch-size", c.eval.batch_size.to_string());
    if gpu {
        flag("device", "cuda".into());
    }
    if !c.eval.guided {
        a.push("--no-guided-eval".into());
    }
    a
}

/// Clusters the serving plan places on a GPU (`plan.json`, when select ran).
fn gpu_clusters(dataset: &Path) -> Vec<i32> {
    let Ok(bytes) = std::fs::read(dataset.join(PLAN_FILE)) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in v["serving"]["deployments"].as_array().into_iter().flatten() {
        let on_gpu = !d["device"].as_str().unwrap_or("cpu").starts_with("cpu");
        if on_gpu {
            out.extend(
                d["clusters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_i64())
                    .map(|c| c as i32),
            );
        }
    }
    out
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./,=:".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Writes the jobs for the clusters this run would tune.
pub fn emit(ctx: &mut Ctx, kind: Kind, dir: &Path) -> anyhow::Result<()> {
    let tcfg = tune_config(&ctx.file);
    let (decisions, members) = tune_plan(ctx, &tcfg)?;
    ctx.record.changes.tuned = decisions.clone();
    let dataset = abs(&ctx.dataset)?;
    let parts = abs(&ctx.run_dir)?.join(PARTS_DIR);
    let gpus = gpu_clusters(&ctx.dataset);
    let jobs: Vec<Job> = decisions
        .iter()
        .filter(|d| d.tuned)
        .map(|d| {
            let out = parts.join(format!("cluster-{}", d.cluster));
            let gpu = gpus.contains(&d.cluster);
            Job {
                cluster: d.cluster,
                argv: tune_argv(&tcfg, &dataset, d.cluster, &out, gpu),
                out,
                gpu,
                members: members_key(members.get(&d.cluster).map_or(&[][..], |v| v.as_slice())),
            }
        })
        .collect();
    if jobs.is_empty() {
        return Err(usage(
            "--emit: no cluster needs tuning in this run (nothing changed enough)",
        ));
    }
    let file = Jobs {
        format: JOBS_FORMAT.into(),
        run_id: ctx.run_id.clone(),
        pipeline: ctx.file.pipeline.name.clone(),
        kind: kind.name().into(),
        settings: tune_settings_key(&tcfg),
        jobs,
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::create_dir_all(&parts)?;
    crate::util::write_json(&dir.join(JOBS_FILE), &file)?;
    crate::util::write_json(&ctx.run_dir.join(JOBS_FILE), &file)?;
    match kind {
        Kind::Slurm => {
            let path = dir.join("slurm-tune.sh");
            crate::util::write_atomic(&path, slurm(&file).as_bytes())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        Kind::K8s => {
            for j in &file.jobs {
                let path = dir.join(format!("tune-cluster-{}.yaml", j.cluster));
                crate::util::write_atomic(&path, k8s(&file, j).as_bytes())?;
            }
        }
    }
    ctx.save_state()?;
    eprintln!(
        "run {}: wrote {} {} job(s) to {}; when they have finished: slmforge collect PIPELINE --run {}",
        ctx.run_id,
        file.jobs.len(),
        kind.name(),
        dir.display(),
        ctx.run_id
    );
    Ok(())
}

/// One Slurm array script: task i tunes the i-th cluster.
fn slurm(f: &Jobs) -> String {
    let gpu = f.jobs.iter().any(|j| j.gpu);
    let mut s = format!(
        "#!/bin/bash\n# slmforge run {run}: tune {n} cluster(s) of pipeline {p:?}, one array task each.\n\
         # Submit with: sbatch slurm-tune.sh ; then: slmforge collect PIPELINE.toml --run {run}\n\
         #SBATCH --job-name=slmforge-tune-{run}\n#SBATCH --array=0-{last}\n#SBATCH --cpus-per-task=8\n#SBATCH --mem=16G\n#SBATCH --time=04:00:00\n",
        run = f.run_id,
        n = f.jobs.len(),
        p = f.pipeline,
        last = f.jobs.len() - 1
    );
    if gpu {
        s.push_str("#SBATCH --gres=gpu:1\n");
    }
    s.push_str("set -euo pipefail\ncase \"$SLURM_ARRAY_TASK_ID\" in\n");
    for (i, j) in f.jobs.iter().enumerate() {
        let cmd: Vec<String> = j.argv.iter().map(|a| shell_quote(a)).collect();
        s.push_str(&format!("  {i}) exec {} ;;\n", cmd.join(" ")));
    }
    s.push_str("  *) echo \"no task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\nesac\n");
    s
}

/// One Kubernetes `Job` for one cluster; the shared work directory is a
/// PersistentVolumeClaim mounted at the same absolute path.
fn k8s(f: &Jobs, j: &Job) -> String {
    let args: Vec<String> = j.argv[1..]
        .iter()
        .map(|a| serde_json::to_string(a).expect("str"))
        .collect();
    let mount = j
        .out
        .ancestors()
        .nth(4)
        .map_or_else(|| "/".to_string(), |p| p.display().to_string());
    let resources = if j.gpu {
        "            limits:\n              nvidia.com/gpu: 1\n".to_string()
    } else {
        "            requests:\n              cpu: \"8\"\n              memory: 16Gi\n".to_string()
    };
    format!(
        "# slmforge run {run}: tune cluster {c} of pipeline {p:?}.\n# kubectl apply -f this file; when every job is done: slmforge collect PIPELINE.toml --run {run}\n\
apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: slmforge-tune-{name}-c{c}\n  labels:\n    app: slmforge\n    slmforge/run: \"{run}\"\n    slmforge/cluster: \"{c}\"\n\
spec:\n  backoffLimit: 2\n  template:\n    spec:\n      restartPolicy: OnFailure\n      containers:\n        - name: tune\n          image: slmforge:latest  # an image with the slmforge binary and the models\n\
          command: [\"slmforge\"]\n          args: [{args}]\n          resources:\n{resources}          volumeMounts:\n            - name: work\n              mountPath: {mount}\n\
      volumes:\n        - name: work\n          persistentVolumeClaim:\n            claimName: slmforge-work\n",
        run = f.run_id,
        name = f.run_id.to_ascii_lowercase().replace(['_', '.'], "-"),
        c = j.cluster,
        p = f.pipeline,
        args = args.join(", "),
    )
}

/// `slmforge collect`: checks each job's output and gates it.
pub fn collect(ctx: &mut Ctx, run: &str, t0: Instant) -> anyhow::Result<()> {
    let run_dir = ctx.work.join(RUNS_DIR).join(run);
    let path = run_dir.join(JOBS_FILE);
    let jobs: Jobs = serde_json::from_slice(&std::fs::read(&path).map_err(|_| {
        usage(format!(
            "no {} in {}: was `run --emit` run with --run-id {run}?",
            JOBS_FILE,
            run_dir.display()
        ))
    })?)
    .with_context(|| format!("parsing {}", path.display()))?;
    let expected = tune_settings_key(&tune_config(&ctx.file));
    if jobs.settings != expected {
        return Err(usage(format!(
            "the pipeline's tune settings changed since run {run} emitted its jobs"
        )));
    }
    let (_, members) = tune_plan(ctx, &tune_config(&ctx.file))?;
    let mut parts = Vec::new();
    for j in &jobs.jobs {
        let out = run_dir
            .join(PARTS_DIR)
            .join(format!("cluster-{}", j.cluster));
        let results = read_results(&out).map_err(|_| {
            usage(format!(
                "cluster {}: no finished output in {} (did its job run?)",
                j.cluster,
                out.display()
            ))
        })?;
        let mine = results
            .iter()
            .find(|r| r.cluster == j.cluster && r.status == ClusterStatus::Tuned);
        if mine.is_none() || results.len() != 1 {
            return Err(usage(format!(
                "cluster {}: {} holds other clusters' output, not a tuned cluster {}",
                j.cluster,
                out.display(),
                j.cluster
            )));
        }
        let cfg: TuneConfig =
            serde_json::from_slice(&std::fs::read(out.join(TUNE_CONFIG_FILE))?)
                .with_context(|| format!("parsing {}", out.join(TUNE_CONFIG_FILE).display()))?;
        if tune_settings_key(&cfg) != jobs.settings {
            return Err(usage(format!(
                "cluster {}: {} was tuned with other settings than the pipeline's (mismatched job output)",
                j.cluster,
                out.display()
            )));
        }
        let now = members.get(&j.cluster).cloned().unwrap_or_default();
        if members_key(&now) != j.members {
            return Err(usage(format!(
                "cluster {}: its calls changed since run {run} emitted the jobs (new calls or clustering again): run the pipeline again instead",
                j.cluster
            )));
        }
        parts.push((j.cluster, out, results, now));
    }
    let mut changes = Vec::new();
    for (cluster, out, results, calls) in parts {
        ctx.state.tuned.insert(
            cluster,
            TunedRecord {
                run_id: run.into(),
                settings: jobs.settings.clone(),
                calls,
            },
        );
        super::gate::decide(ctx, &out, &results)?;
        changes.push(crate::artifact::run::TuneDecision {
            cluster,
            tuned: true,
            reason: format!("tuned by a {} job", jobs.kind),
        });
    }
    ctx.record.changes.tuned = changes;
    ctx.log(
        Stage::Tune,
        "collected",
        format!("{} job output(s) of run {run}", jobs.jobs.len()),
        t0,
    );
    Ok(())
}
