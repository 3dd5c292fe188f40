//! Every on-disk format the stages exchange, with its reader and writer, and
//! the names of the files. Stages meet here: one writes an artifact, the
//! next reads it through the typed, version-checked reader.
//!
//! ```text
//! DATASET_DIR/calls.parquet        calls      (ingest)      versioned columns, one row per call
//! DATASET_DIR/quarantine.jsonl     ingest     (ingest)      records not written, with reasons
//! DATASET_DIR/ingest.json          ingest     (ingest)      counts that add up
//! DATASET_DIR/clusters.parquet     clusters   (cluster)     call_id, cluster (-1 outlier), distance
//! DATASET_DIR/clusters.json        clusters   (cluster)     summary, feature spec, centroids
//! DATASET_DIR/clusters.svg         clusters   (cluster)     the 2-D picture
//! DATASET_DIR/plan.json            plan       (select)      which clusters to tune, on which base
//! RUN/cluster-ID/...               adapter    (tune)        tune.json, eval.json, prompt.json, ...
//! RUN/summary.json, summary.md     adapter    (tune)        one entry per cluster
//! RUN/export/manifest.json         export     (export)      every exported file, checksums, verification
//! RUN/export/routing.json          routing    (route)       calibrated routes (+ router.json)
//! ```

pub mod adapter;
pub mod calls;
pub mod clusters;
pub mod export;
pub mod plan;
pub mod routing;
pub mod run;
pub mod split;

/// The calls of a dataset (`calls.parquet`).
pub const CALLS_FILE: &str = "calls.parquet";
/// Records ingest could not use, each with its reason (redacted).
pub const QUARANTINE_FILE: &str = "quarantine.jsonl";
/// Ingest's counts (`read = written + duplicates + quarantined`).
pub const INGEST_REPORT_FILE: &str = "ingest.json";
/// One row per call: its cluster and distance.
pub const ASSIGNMENTS_FILE: &str = "clusters.parquet";
/// The clustering summary (`clusters.json`).
pub const SUMMARY_FILE: &str = "clusters.json";
/// The clustering picture.
pub const PLOT_FILE: &str = "clusters.svg";
/// The select stage's plan.
pub const PLAN_FILE: &str = "plan.json";

/// Cluster id of an outlier (a call left to the general LLM).
pub const OUTLIER: i32 = -1;
