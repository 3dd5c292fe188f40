//! Tests of `slmforge run` (src/cli/run) and the report (src/report) on the
//! tiny random Llama GGUF and the tiny embedder, with review and weather
//! calls written as OpenAI logs: a pipeline file with an unknown key is
//! refused with the key's name; an unchanged re-run skips every stage; a new
//! log file of weather calls is ingested alone, joins the existing clusters
//! and re-tunes only the weather cluster; the regression gate blocks a
//! worse adapter (exit 3) and leaves the deployed one in place; a new tool
//! name is drift that clusters the dataset again; the HTML report has every
//! section and chart, also as rendered by headless chromium; `--emit
//! slurm|k8s` writes the jobs and `collect` refuses missing or mismatched
//! outputs, then gathers them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::common;

fn write_logs(path: &Path, lines: &[Value]) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn reviews(r: std::ops::Range<usize>) -> Vec<Value> {
    r.map(crate::tune::review_line).collect()
}

fn weathers(r: std::ops::Range<usize>) -> Vec<Value> {
    r.map(crate::tune::weather_line).collect()
}

/// Flight bookings: a workload with a tool no earlier call used.
fn flights(r: std::ops::Range<usize>) -> Vec<Value> {
    r.map(|i| {
        let to = ["OSL", "ROM", "LIM"][i % 3];
        let args = json!({"from": "LIS", "to": to, "seats": 1 + i % 2}).to_string();
        json!({"request": {"messages": [
                {"role": "system", "content": "Book flights with the tool."},
                {"role": "user", "content": format!("book flight {i} please")}],
                "tools": [{"type": "function", "function": {"name": "book_flight",
                    "parameters": {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}, "seats": {"type": "integer"}}}}}]},
            "response": {"choices": [{"message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": format!("call_f{i}"), "type": "function", "function": {"name": "book_flight", "arguments": args}}]},
                "finish_reason": "tool_calls"}]}})
    })
    .collect()
}

struct Setup {
    _tmp: tempfile::TempDir,
    _emb: crate::cluster::Tiny,
    root: PathBuf,
    toml: PathBuf,
    logs: PathBuf,
    work: PathBuf,
}

/// A pipeline over `root/logs` with the tiny models: clusters fixed at 2,
/// every cluster tuned for 4 steps, PEFT + GGUF export, every route taken.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let model = root.join("tiny.gguf");
    crate::tune::tiny_gguf(&model, 11);
    let emb = crate::cluster::tiny();
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    write_logs(
        &logs.join("logs-1.jsonl"),
        &[reviews(0..40), weathers(0..40)].concat(),
    );
    std::fs::write(root.join("key"), "a-test-redaction-key-0123456789").unwrap();
    let toml = root.join("pipeline.toml");
    let work = root.join("work");
    std::fs::write(
        &toml,
        format!(
            r#"[pipeline]
name = "test"
work = {work:?}
reports = {reports:?}
seed = 3

[ingest]
inputs = [{logs:?}]
key_file = {key:?}

[cluster]
k = 2
min_cluster_size = 1
embedder = {emb:?}

[cluster.drift]
max_outlier_share = 0.5
max_share_change = 0.9

[tune]
clusters = "all"
model = {model:?}
steps = 4
time_budget_secs = 0
max_test_calls = 4
min_examples = 10
lr = 0.01
rank = 4
batch_size = 4
max_len = 1024
eval_every = 4

[export]
formats = ["peft", "gguf"]
accuracy_target = 0.0
min_routed_calls = 1
"#,
            work = work.display().to_string(),
            reports = root.join("reports").display().to_string(),
            logs = logs.display().to_string(),
            key = root.join("key").display().to_string(),
            emb = emb.path.display().to_string(),
            model = model.display().to_string(),
        ),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        _emb: emb,
        root,
        toml,
        logs,
        work,
    }
}

fn slmforge(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .unwrap()
}

fn run(s: &Setup, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["run", s.toml.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = slmforge(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), err)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn run_record(s: &Setup, id: &str) -> Value {
    read_json(&s.work.join("runs").join(id).join("run.json"))
}

fn statuses(rec: &Value) -> Vec<(String, String)> {
    rec["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["stage"].as_str().unwrap().to_string(),
                x["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of(rec: &Value, stage: &str) -> String {
    statuses(rec)
        .into_iter()
        .find(|(s, _)| s == stage)
        .map(|(_, st)| st)
        .unwrap_or_default()
}

#[test]
fn a_pipeline_file_with_an_unknown_key_is_refused_with_its_name() {
    use slmforge::cli::run::config::parse;
    let good = "[pipeline]\nname = \"x\"\nwork = \"w\"\n[ingest]\ninputs = [\"logs\"]\n";
    let f = parse(good).unwrap();
    assert_eq!(f.tune.steps, 60, "defaults fill what the file leaves out");
    for (bad, key) in [
        (format!("{good}[tune]\nstpes = 3\n"), "stpes"),
        (
            format!("{good}[cluster.drift]\nmax_outliers = 0.1\n"),
            "max_outliers",
        ),
        (format!("{good}[deploy]\nx = 1\n"), "deploy"),
        (
            good.replace("name = \"x\"", "name = \"x\"\nwrok = \"w\""),
            "wrok",
        ),
    ] {
        let e = format!("{:#}", parse(&bad).unwrap_err());
        assert!(e.contains(key), "{key}: {e}");
    }
    let e = format!(
        "{:#}",
        parse(&format!("{good}[tune]\nclusters = \"biggest\"\n")).unwrap_err()
    );
    assert!(e.contains("largest:N"), "{e}");
    let e = format!(
        "{:#}",
        parse(&format!("{good}[export]\nformats = [\"onnx\"]\n")).unwrap_err()
    );
    assert!(e.contains("onnx"), "{e}");
    // The shipped pipeline files stay valid.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in ["pipelines/demo.toml", "examples/ci/prod.toml"] {
        slmforge::cli::run::config::load(&root.join(f)).unwrap_or_else(|e| panic!("{f}: {e:#}"));
    }
    // On the command line: exit 2, the file and the key named.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, format!("{good}[tune]\nstpes = 3\n")).unwrap();
    let out = slmforge(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stpes") && err.contains("p.toml"), "{err}");

    // A work directory belongs to one pipeline, and to one run at a time.
    let work = dir.path().join("w");
    std::fs::create_dir_all(&work).unwrap();
    let state = json!({"format": "slmforge-run-state-v1", "pipeline": "other", "stages": {},
        "ingested_files": {}, "tuned": {}, "promoted": {}, "runs": []});
    std::fs::write(work.join("state.json"), state.to_string()).unwrap();
    let body = format!(
        "[pipeline]\nname = \"x\"\nwork = {:?}\n[ingest]\ninputs = [\"logs\"]\n",
        work.display().to_string()
    );
    std::fs::write(&p, &body).unwrap();
    let out = slmforge(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to pipeline \"other\""));
    std::fs::remove_file(work.join("state.json")).unwrap();
    // A running `run` holds an advisory lock on WORK/.run.lock.
    let lock = std::fs::File::create(work.join(".run.lock")).unwrap();
    lock.try_lock().unwrap();
    let out = slmforge(&["run", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another"));
    drop(lock);
}

/// Which cluster holds the weather calls (the tool-calling one).
fn weather_cluster(s: &Setup) -> i64 {
    let summary = read_json(&s.work.join("dataset/clusters.json"));
    summary["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tools"].as_array().is_some_and(|t| !t.is_empty()))
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[test]
fn runs_are_incremental_gated_drift_aware_and_reported() {
    let s = setup();
    // First run: every stage runs, both clusters are deployed and exported.
    let (code, err) = run(&s, &["--run-id", "r1"]);
    assert_eq!(code, 0, "{err}");
    let r1 = run_record(&s, "r1");
    for (stage, st) in [
        ("ingest", "ran"),
        ("cluster", "ran"),
        ("select", "off"),
        ("tune", "ran"),
        ("export", "ran"),
    ] {
        assert_eq!(status_of(&r1, stage), st, "{stage}: {:?}", statuses(&r1));
    }
    assert_eq!(r1["changes"]["new_calls"], 80);
    let deployed = s.work.join("deployed");
    for c in 0..2 {
        assert!(deployed
            .join(format!("cluster-{c}/adapter.safetensors"))
            .exists());
    }
    assert!(
        deployed.join("export/manifest.json").exists()
            && deployed.join("export/routing.json").exists()
    );
    let gate: Vec<&str> = r1["gate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["decision"].as_str().unwrap())
        .collect();
    assert_eq!(gate, ["promoted", "promoted"]);
    let rep = s.root.join("reports/r1");
    let summary = read_json(&rep.join("summary.json"));
    assert_eq!(summary["headline"]["calls"], 80);
    assert_eq!(summary["headline"]["deployed_adapters"], 2);
    assert!(summary["routing"]["test_calls"].as_u64().unwrap() > 0);
    let md = std::fs::read_to_string(rep.join("summary.md")).unwrap();
    assert!(
        md.contains("## Regression gate") && md.contains("promoted"),
        "{md}"
    );

    // Nothing new: every stage is skipped.
    let (code, err) = run(&s, &["--run-id", "r2"]);
    assert_eq!(code, 0, "{err}");
    let r2 = run_record(&s, "r2");
    for stage in ["ingest", "cluster", "tune", "export"] {
        assert_eq!(
            status_of(&r2, stage),
            "skipped",
            "{stage}: {:?}",
            statuses(&r2)
        );
    }
    assert!(!s.work.join("runs/r2/adapters").exists());

    // A new log file of weather calls: read alone, joins the clusters,
    // only the weather cluster is tuned again.
    let weather = weather_cluster(&s);
    write_logs(&s.logs.join("logs-2.jsonl"), &weathers(40..52));
    let (code, err) = run(&s, &["--run-id", "r3"]);
    assert_eq!(code, 0, "{err}");
    let r3 = run_record(&s, "r3");
    assert_eq!(status_of(&r3, "ingest"), "incremental");
    assert_eq!(
        status_of(&r3, "cluster"),
        "incremental",
        "{:?}",
        r3["changes"]
    );
    assert_eq!(r3["changes"]["new_files"], 1);
    assert_eq!(r3["changes"]["new_calls"], 12);
    assert_eq!(r3["changes"]["dataset_calls"], 92);
    assert!(r3["changes"]["reclustered"].is_null());
    assert_eq!(r3["changes"]["drift"]["new_calls"], 12);
    let tuned: Vec<(i64, bool)> = r3["changes"]["tuned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["cluster"].as_i64().unwrap(),
                t["tuned"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(tuned.len(), 2);
    for (c, t) in &tuned {
        assert_eq!(*t, *c == weather, "{:?}", r3["changes"]["tuned"]);
    }
    assert_eq!(r3["gate"].as_array().unwrap().len(), 1);
    assert_eq!(r3["gate"][0]["cluster"], weather);

    // The gate: the deployed weather adapter is recorded as perfect, so the
    // next one (a random tiny model) is worse: blocked, exit 3, the
    // deployed adapter untouched.
    let state_path = s.work.join("state.json");
    let mut state = read_json(&state_path);
    state["promoted"][weather.to_string()]["score"] = json!(1.0);
    std::fs::write(&state_path, state.to_string()).unwrap();
    let adapter = deployed.join(format!("cluster-{weather}/adapter.safetensors"));
    let before = std::fs::read(&adapter).unwrap();
    write_logs(&s.logs.join("logs-3.jsonl"), &weathers(52..66));
    let (code, err) = run(&s, &["--run-id", "r4"]);
    assert_eq!(code, 3, "{err}");
    let r4 = run_record(&s, "r4");
    assert_eq!(r4["gate"][0]["decision"], "blocked", "{}", r4["gate"]);
    assert_eq!(r4["gate"][0]["incumbent_score"], 1.0);
    assert_eq!(r4["exit_code"], 3);
    assert_eq!(
        std::fs::read(&adapter).unwrap(),
        before,
        "a blocked adapter is not deployed"
    );
    let html = std::fs::read_to_string(s.root.join("reports/r4/index.html")).unwrap();
    for id in [
        "headline", "changes", "ingest", "clusters", "plan", "tuning", "routing", "stages",
    ] {
        assert!(html.contains(&format!("<section id={id}>")), "section {id}");
    }
    assert!(html.contains("blocked"));
    // Charts: redactions? (none here), base vs tuned, one training curve per
    // adapter, and the cluster map.
    assert!(
        html.matches("<svg").count() >= 4,
        "{} charts",
        html.matches("<svg").count()
    );
    assert!(!html.contains("chart unavailable"));
    browser_check(&s.root.join("reports/r4/index.html"));

    // Drift: a workload with a new tool clusters the dataset again
    // (`--only` runs one stage at a time).
    write_logs(&s.logs.join("logs-4.jsonl"), &flights(0..20));
    let (code, err) = run(&s, &["--only", "ingest", "--run-id", "r5"]);
    assert_eq!(code, 0, "{err}");
    let r5 = run_record(&s, "r5");
    assert_eq!(status_of(&r5, "ingest"), "incremental");
    assert_eq!(status_of(&r5, "cluster"), "not_selected");
    let (code, err) = run(&s, &["--only", "cluster", "--run-id", "r6"]);
    assert_eq!(code, 0, "{err}");
    let r6 = run_record(&s, "r6");
    assert_eq!(status_of(&r6, "cluster"), "ran");
    assert_eq!(status_of(&r6, "tune"), "not_selected");
    let drift = &r6["changes"]["drift"];
    assert_eq!(drift["new_tools"], json!(["book_flight"]), "{drift}");
    assert!(r6["changes"]["reclustered"]
        .as_str()
        .unwrap()
        .contains("new tool names: book_flight"));

    // A stage that fails still leaves a run record and a report, with the
    // error and the exit code.
    let bad = s.root.join("bad.toml");
    let text = std::fs::read_to_string(&s.toml).unwrap();
    std::fs::write(
        &bad,
        text.replace("clusters = \"all\"", "clusters = \"99\""),
    )
    .unwrap();
    let out = slmforge(&["run", bad.to_str().unwrap(), "--run-id", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    let rb = run_record(&s, "bad");
    assert_eq!(rb["exit_code"], 2);
    assert!(
        rb["error"].as_str().unwrap().contains("no cluster 99"),
        "{rb}"
    );
    let html = std::fs::read_to_string(s.root.join("reports/bad/index.html")).unwrap();
    assert!(html.contains("<section id=error>") && html.contains("no cluster 99"));

    // Clustering again retires a deployed adapter whose cluster no longer
    // holds the calls it was tuned on (here its record says it was tuned on
    // calls the dataset does not have, as after a renumbering).
    let mut state = read_json(&state_path);
    let victim: String = state["promoted"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let bogus: Vec<String> = (0..10).map(|i| format!("{i:016x}")).collect();
    state["tuned"][&victim]["calls"] = json!(bogus);
    std::fs::write(&state_path, state.to_string()).unwrap();
    let (code, err) = run(&s, &["--only", "cluster", "--force", "--run-id", "r7"]);
    assert_eq!(code, 0, "{err}");
    let r7 = run_record(&s, "r7");
    let retired: Vec<String> = r7["gate"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["decision"] == "retired")
        .map(|g| g["cluster"].to_string())
        .collect();
    assert_eq!(retired, std::slice::from_ref(&victim), "{}", r7["gate"]);
    assert!(!deployed.join(format!("cluster-{victim}")).exists());
    let state = read_json(&state_path);
    assert!(state["promoted"].get(&victim).is_none() && state["tuned"].get(&victim).is_none());

    // A new redaction key means rebuilding the dataset from the log files;
    // with a file gone from the inputs that would drop its calls: refused.
    std::fs::write(s.root.join("key"), "another-test-redaction-key-98765").unwrap();
    std::fs::remove_file(s.logs.join("logs-4.jsonl")).unwrap();
    let (code, err) = run(&s, &["--run-id", "r8"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no longer among the inputs"), "{err}");
    let rows = slmforge::artifact::calls::read_rows(&s.work.join("dataset")).unwrap();
    assert_eq!(rows.len(), 126, "the dataset is untouched");
}

/// Renders the report in headless chromium: the DOM it builds holds every
/// section and the charts, and a screenshot is taken (kept next to the
/// report for a person to look at).
fn browser_check(html: &Path) {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("SKIPPED the browser check of the report: no chromium on this machine (apt install chromium)");
        return;
    };
    let url = format!("file://{}", html.display());
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--allow-file-access-from-files",
    ];
    let dom = Command::new(browser)
        .args(flags)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in [
        "headline", "changes", "ingest", "clusters", "plan", "tuning", "routing", "stages",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "rendered DOM lacks section {id}"
        );
    }
    assert!(dom.matches("<svg").count() >= 4);
    let shot = html.with_file_name("screenshot.png");
    let out = Command::new(browser)
        .args(flags)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,2400")
        .arg(&url)
        .output()
        .unwrap();
    assert!(shot.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 20_000,
        "an empty screenshot"
    );
}

#[test]
fn emitted_jobs_are_gathered_by_collect_which_refuses_missing_or_mismatched_outputs() {
    let s = setup();
    let slurm = s.root.join("slurm");
    let (code, err) = run(
        &s,
        &["--emit", "slurm", slurm.to_str().unwrap(), "--run-id", "e1"],
    );
    assert_eq!(code, 0, "{err}");
    let script = std::fs::read_to_string(slurm.join("slurm-tune.sh")).unwrap();
    assert!(script.contains("#SBATCH --array=0-1"), "{script}");
    let parts = s.work.join("runs/e1/parts");
    for c in 0..2 {
        assert!(
            script.contains(&format!(
                "--cluster {c} --out {}",
                parts.join(format!("cluster-{c}")).display()
            )),
            "{script}"
        );
    }
    assert!(
        script.contains("--max-steps 4")
            && script.contains("--lr 0.01")
            && !script.contains("--gres=gpu")
    );
    let k8s = s.root.join("k8s");
    let (code, err) = run(
        &s,
        &["--emit", "k8s", k8s.to_str().unwrap(), "--run-id", "e2"],
    );
    assert_eq!(code, 0, "{err}");
    let job = std::fs::read_to_string(k8s.join("tune-cluster-1.yaml")).unwrap();
    for want in [
        "kind: Job",
        "\"--cluster\", \"1\"",
        "claimName: slmforge-work",
        "cpu: \"8\"",
    ] {
        assert!(job.contains(want), "{want}: {job}");
    }
    assert!(
        job.contains(&format!("mountPath: {}", s.work.display())),
        "{job}"
    );

    let collect = |extra: &[&str]| {
        let mut a = vec!["collect", s.toml.to_str().unwrap(), "--run", "e1"];
        a.extend_from_slice(extra);
        slmforge(&a)
    };
    let out = collect(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no finished output"));

    // Run the jobs here, as the scheduler would.
    let jobs = read_json(&slurm.join("jobs.json"));
    for j in jobs["jobs"].as_array().unwrap() {
        let argv: Vec<&str> = j["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(argv[0], "slmforge");
        let out = slmforge(&argv[1..]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A job run with other settings is refused.
    let cfg_path = parts.join("cluster-1/tune_config.json");
    let good = std::fs::read(&cfg_path).unwrap();
    let mut cfg: Value = serde_json::from_slice(&good).unwrap();
    cfg["lr"] = json!(0.5);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = collect(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("mismatched"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&cfg_path, good).unwrap();
    // Promotion left to a person: collected and gated, but held.
    let out = collect(&["--no-promote"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held = run_record(&s, "e1-collect");
    let decisions: Vec<&str> = held["gate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["held", "held"]);
    assert!(!s.work.join("deployed/cluster-0").exists());
    // The person promotes the held run: deployed, exported, reported.
    let (code, err) = run(&s, &["--promote", "e1-collect", "--run-id", "p1"]);
    assert_eq!(code, 0, "{err}");
    for c in 0..2 {
        assert!(s
            .work
            .join(format!("deployed/cluster-{c}/adapter.safetensors"))
            .exists());
    }
    let p1 = run_record(&s, "p1");
    assert_eq!(p1["gate"][0]["decision"], "promoted");
    assert_eq!(
        p1["gate"][0]["run_id"], "e1",
        "the adapter comes from the run that tuned it"
    );
    assert!(s.work.join("deployed/export/routing.json").exists());
    assert!(s.root.join("reports/p1/index.html").exists());
}
