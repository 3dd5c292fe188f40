//! The `calls.parquet` artifact: the versioned on-disk form of redacted
//! calls, written by `ingest` and read by every later stage.
//!
//! The on-disk row ([`CallRow`]) is a separate type from the in-memory
//! [`Call`]; nested parts are JSON strings. Schema changes bump
//! [`SCHEMA_VERSION`]; readers refuse other versions with a clear message.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context};
use polars::prelude::*;

use crate::call::{
    Call, Message, Origin, RedactedCall, Response, SourceFormat, ToolCall, ToolDef, Usage,
};

/// Version of the `calls.parquet` column layout (stored in the
/// `schema_version` column of every row).
pub const SCHEMA_VERSION: u32 = 1;

use super::CALLS_FILE;

/// The columns, in order. Documented in ARCHITECTURE.md.
pub const COLUMNS: &[&str] = &[
    "call_id",
    "schema_version",
    "source_format",
    "source_file",
    "source_line",
    "source_index",
    "workload_id",
    "client_id",
    "model",
    "timestamp_ms",
    "latency_ms",
    "system_prompt",
    "user_prompt",
    "messages_json",
    "tools_json",
    "tool_names",
    "response_text",
    "response_tool_calls_json",
    "response_kind",
    "called_tools",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "metadata_json",
];

/// Columns added after version 1 was fixed: written always, read when
/// present (a dataset without them reads as before).
const OPTIONAL_COLUMNS: [&str; 1] = ["demands_json"];

/// One row of `calls.parquet`, already serialised.
#[derive(Clone, Debug, Default)]
pub struct CallRow {
    pub call_id: String,
    pub source_format: String,
    pub source_file: String,
    pub source_line: u64,
    pub source_index: u32,
    pub workload_id: Option<String>,
    pub client_id: Option<String>,
    pub model: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub latency_ms: Option<f64>,
    pub system_prompt: String,
    pub user_prompt: Option<String>,
    pub messages_json: String,
    pub tools_json: String,
    pub tool_names: String,
    pub response_text: Option<String>,
    pub response_tool_calls_json: String,
    pub response_kind: String,
    pub called_tools: String,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub metadata_json: String,
    /// `{}` when the request demanded nothing.
    pub demands_json: String,
}

impl CallRow {
    /// Serialises a redacted call (the only kind that may reach disk).
    pub fn from_call(call: &RedactedCall) -> CallRow {
        let c: &Call = call;
        let messages_json = serde_json::to_string(&c.messages).expect("messages serialise");
        let tools_json = serde_json::to_string(&c.tools).expect("tools serialise");
        // the id is RedactedCall::id, from the strings serialised once
        let call_id = hex::encode(
            &crate::call::content_hash_of(messages_json.as_bytes(), tools_json.as_bytes(), c)[..8],
        );
        debug_assert_eq!(call_id, call.id());
        CallRow {
            call_id,
            source_format: c
                .source_format
                .map(|f| f.as_str().to_string())
                .unwrap_or_default(),
            source_file: c.origin.file.clone(),
            source_line: c.origin.line,
            source_index: c.origin.index,
            workload_id: c.workload_id.clone(),
            client_id: c.client_id.clone(),
            model: c.model.clone(),
            timestamp_ms: c.timestamp_ms,
            latency_ms: c.latency_ms,
            system_prompt: c.system_prompt(),
            user_prompt: c.last_user_message().map(str::to_string),
            messages_json,
            tools_json,
            tool_names: c
                .tools
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            response_text: c.response.content.clone(),
            response_tool_calls_json: serde_json::to_string(&c.response.tool_calls)
                .expect("tool calls serialise"),
            response_kind: c.response.kind().to_string(),
            called_tools: c
                .response
                .tool_calls
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            finish_reason: c.response.finish_reason.clone(),
            prompt_tokens: c.usage.prompt_tokens,
            completion_tokens: c.usage.completion_tokens,
            total_tokens: c.usage.total_tokens,
            metadata_json: serde_json::to_string(&c.metadata).expect("metadata serialise"),
            demands_json: serde_json::to_string(&c.demands).expect("demands serialise"),
        }
    }

    /// Rebuilds the call from its row.
    pub fn to_call(&self) -> anyhow::Result<RedactedCall> {
        let messages: Vec<Message> =
            serde_json::from_str(&self.messages_json).context("messages_json")?;
        let tools: Vec<ToolDef> = serde_json::from_str(&self.tools_json).context("tools_json")?;
        let tool_calls: Vec<ToolCall> = serde_json::from_str(&self.response_tool_calls_json)
            .context("response_tool_calls_json")?;
        let metadata = serde_json::from_str(&self.metadata_json).context("metadata_json")?;
        let demands = match self.demands_json.as_str() {
            "" => Default::default(),
            j => serde_json::from_str(j).context("demands_json")?,
        };
        Ok(RedactedCall(Call {
            source_format: SourceFormat::parse(&self.source_format),
            origin: Origin {
                file: self.source_file.clone(),
                line: self.source_line,
                index: self.source_index,
            },
            workload_id: self.workload_id.clone(),
            client_id: self.client_id.clone(),
            model: self.model.clone(),
            timestamp_ms: self.timestamp_ms,
            latency_ms: self.latency_ms,
            messages,
            tools,
            response: Response {
                content: self.response_text.clone(),
                tool_calls,
                finish_reason: self.finish_reason.clone(),
            },
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                total_tokens: self.total_tokens,
            },
            metadata,
            demands,
        }))
    }
}

fn rows_to_frame(rows: &[CallRow]) -> PolarsResult<DataFrame> {
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), rows.iter().map($f).collect::<Vec<_>>())
        };
    }
    let n = rows.len();
    DataFrame::new(
        n,
        vec![
            col!("call_id", |r: &CallRow| r.call_id.as_str()),
            Column::new("schema_version".into(), vec![SCHEMA_VERSION; n]),
            col!("source_format", |r: &CallRow| r.source_format.as_str()),
            col!("source_file", |r: &CallRow| r.source_file.as_str()),
            col!("source_line", |r: &CallRow| r.source_line),
            col!("source_index", |r: &CallRow| r.source_index),
            col!("workload_id", |r: &CallRow| r.workload_id.as_deref()),
            col!("client_id", |r: &CallRow| r.client_id.as_deref()),
            col!("model", |r: &CallRow| r.model.as_deref()),
            col!("timestamp_ms", |r: &CallRow| r.timestamp_ms),
            col!("latency_ms", |r: &CallRow| r.latency_ms),
            col!("system_prompt", |r: &CallRow| r.system_prompt.as_str()),
            col!("user_prompt", |r: &CallRow| r.user_prompt.as_deref()),
            col!("messages_json", |r: &CallRow| r.messages_json.as_str()),
            col!("tools_json", |r: &CallRow| r.tools_json.as_str()),
            col!("tool_names", |r: &CallRow| r.tool_names.as_str()),
            col!("response_text", |r: &CallRow| r.response_text.as_deref()),
            col!("response_tool_calls_json", |r: &CallRow| r
                .response_tool_calls_json
                .as_str()),
            col!("response_kind", |r: &CallRow| r.response_kind.as_str()),
            col!("called_tools", |r: &CallRow| r.called_tools.as_str()),
            col!("finish_reason", |r: &CallRow| r.finish_reason.as_deref()),
            col!("prompt_tokens", |r: &CallRow| r.prompt_tokens),
            col!("completion_tokens", |r: &CallRow| r.completion_tokens),
            col!("total_tokens", |r: &CallRow| r.total_tokens),
            col!("metadata_json", |r: &CallRow| r.metadata_json.as_str()),
            col!("demands_json", |r: &CallRow| r.demands_json.as_str()),
        ],
    )
}

/// Streams rows into `calls.parquet` in row groups, so memory stays bounded
/// by the batch size whatever the input size. Writes to a temporary file and
/// renames on [`CallsWriter::finish`], so a crashed run leaves no half file.
pub struct CallsWriter {
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    rows: usize,
}

impl CallsWriter {
    pub fn create(path: &Path) -> anyhow::Result<CallsWriter> {
        let tmp = path.with_extension("parquet.partial");
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let schema = rows_to_frame(&[])?.schema().as_ref().clone();
        let writer = ParquetWriter::new(file)
            .with_compression(ParquetCompression::Zstd(None))
            .set_parallel(false)
            .batched(&schema)?;
        Ok(CallsWriter {
            writer: Some(writer),
            tmp,
            path: path.to_path_buf(),
            rows: 0,
        })
    }

    pub fn write(&mut self, rows: &[CallRow]) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let df = rows_to_frame(rows)?;
        self.writer
            .as_mut()
            .expect("writer open")
            .write_batch(&df)?;
        self.rows += rows.len();
        Ok(())
    }

    /// Closes the file and moves it into place; returns the row count.
    pub fn finish(mut self) -> anyhow::Result<usize> {
        let w = self.writer.take().expect("writer open");
        w.finish()?;
        drop(w);
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("moving {} into place", self.path.display()))?;
        Ok(self.rows)
    }
}

impl Drop for CallsWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads `DIR/calls.parquet` back into redacted calls, in file order.
/// A missing file, an empty dataset or another schema version is a
/// [`crate::util::UsageError`] (exit 2) with a message saying what to do.
pub fn read_calls(dir: &Path) -> anyhow::Result<Vec<RedactedCall>> {
    read_rows(dir)?
        .iter()
        .map(CallRow::to_call)
        .collect::<anyhow::Result<Vec<_>>>()
}

/// Reads the raw rows of `DIR/calls.parquet`.
pub fn read_rows(dir: &Path) -> anyhow::Result<Vec<CallRow>> {
    let path = dir.join(CALLS_FILE);
    if !path.exists() {
        return Err(crate::util::usage(format!(
            "no dataset at {}: run `slmforge ingest LOGS --out {}` first",
            path.display(),
            dir.display()
        )));
    }
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("reading {}", path.display()))?;
    if df.height() == 0 {
        return Err(crate::util::usage(format!(
            "{} holds no calls: nothing to work on",
            path.display()
        )));
    }
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    if !names.iter().any(|n| n == "schema_version") {
        return Err(crate::util::usage(format!(
            "{} is not a slmforge calls file (no schema_version column)",
            path.display()
        )));
    }
    let versions = df.column("schema_version")?.u32()?.clone();
    if let Some(v) = versions.iter().flatten().find(|v| *v != SCHEMA_VERSION) {
        return Err(crate::util::usage(format!(
            "{} has schema version {v}, this slmforge reads version {SCHEMA_VERSION}: re-run `slmforge ingest`",
            path.display()
        )));
    }
    for c in COLUMNS {
        if !names.iter().any(|n| n == c) {
            bail!("{} lacks column {c}", path.display());
        }
    }
    let s = |name: &str| -> anyhow::Result<Vec<Option<String>>> {
        Ok(df
            .column(name)?
            .str()?
            .iter()
            .map(|o| o.map(str::to_string))
            .collect())
    };
    let u64s = |name: &str| -> anyhow::Result<Vec<Option<u64>>> {
        Ok(df.column(name)?.u64()?.iter().collect())
    };
    let call_id = s("call_id")?;
    let source_format = s("source_format")?;
    let source_file = s("source_file")?;
    let source_line = u64s("source_line")?;
    let source_index: Vec<Option<u32>> = df.column("source_index")?.u32()?.iter().collect();
    let workload_id = s("workload_id")?;
    let client_id = s("client_id")?;
    let model = s("model")?;
    let timestamp_ms: Vec<Option<i64>> = df.column("timestamp_ms")?.i64()?.iter().collect();
    let latency_ms: Vec<Option<f64>> = df.column("latency_ms")?.f64()?.iter().collect();
    let system_prompt = s("system_prompt")?;
    let user_prompt = s("user_prompt")?;
    let messages_json = s("messages_json")?;
    let tools_json = s("tools_json")?;
    let tool_names = s("tool_names")?;
    let response_text = s("response_text")?;
    let response_tool_calls_json = s("response_tool_calls_json")?;
    let response_kind = s("response_kind")?;
    let called_tools = s("called_tools")?;
    let finish_reason = s("finish_reason")?;
    let prompt_tokens = u64s("prompt_tokens")?;
    let completion_tokens = u64s("completion_tokens")?;
    let total_tokens = u64s("total_tokens")?;
    let metadata_json = s("metadata_json")?;
    let demands_json = match names.iter().any(|n| n == OPTIONAL_COLUMNS[0]) {
        true => s(OPTIONAL_COLUMNS[0])?,
        false => vec![None; df.height()],
    };
    let rows = (0..df.height())
        .map(|i| CallRow {
            call_id: call_id[i].clone().unwrap_or_default(),
            source_format: source_format[i].clone().unwrap_or_default(),
            source_file: source_file[i].clone().unwrap_or_default(),
            source_line: source_line[i].unwrap_or(0),
            source_index: source_index[i].unwrap_or(0),
            workload_id: workload_id[i].clone(),
            client_id: client_id[i].clone(),
            model: model[i].clone(),
            timestamp_ms: timestamp_ms[i],
            latency_ms: latency_ms[i],
            system_prompt: system_prompt[i].clone().unwrap_or_default(),
            user_prompt: user_prompt[i].clone(),
            messages_json: messages_json[i].clone().unwrap_or_else(|| "[]".into()),
            tools_json: tools_json[i].clone().unwrap_or_else(|| "[]".into()),
            tool_names: tool_names[i].clone().unwrap_or_default(),
            response_text: response_text[i].clone(),
            response_tool_calls_json: response_tool_calls_json[i]
                .clone()
                .unwrap_or_else(|| "[]".into()),
            response_kind: response_kind[i].clone().unwrap_or_default(),
            called_tools: called_tools[i].clone().unwrap_or_default(),
            finish_reason: finish_reason[i].clone(),
            prompt_tokens: prompt_tokens[i],
            completion_tokens: completion_tokens[i],
            total_tokens: total_tokens[i],
            metadata_json: metadata_json[i].clone().unwrap_or_else(|| "{}".into()),
            demands_json: demands_json[i].clone().unwrap_or_default(),
        })
        .collect();
    Ok(rows)
}
