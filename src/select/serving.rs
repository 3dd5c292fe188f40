//! The serving plan of the select stage: where the chosen small models run
//! and what that costs next to the LLM calls they replace. Pure and
//! deterministic: no model is loaded and nothing is read but the hardware
//! config text handed in.
//!
//! * [`HardwareConfig`]: device kinds, LLM prices and overheads, from
//!   `pipelines/hardware.toml` ([`DEFAULT_HARDWARE_TOML`], built in) or a
//!   user's file of the same layout ([`HardwareConfig::from_toml`]).
//! * [`parse_hardware`]: a hardware spec (`2xL4-24GB,1xA100-80GB`,
//!   `cpu:16`, `cpu:16:64GB`) into [`Device`]s.
//! * [`estimate_memory`]: one deployment (a base model shared by the LoRA
//!   adapters of one or more clusters, as vLLM, LoRAX and llama-server serve
//!   them) on one device: weights + KV cache + adapters + runtime overhead.
//! * [`plan_deployments`]: clusters grouped by base model into deployments,
//!   packed onto the devices (first-fit decreasing on memory, split by
//!   cluster into replicas where a whole deployment fits no device), with a
//!   throughput check; a [`ServingPlan`] with what could not be placed and
//!   why.
//! * [`llm_cost`] and [`cost_summary`]: the LLM's monthly cost from the
//!   log's token counts, the planned hardware's monthly cost, and the
//!   savings per cluster and overall, with every assumption spelled out.
//!
//! Everything returned is `Serialize`, for `plan.json`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::ml::lm::LoraTarget;
use crate::util::usage;

/// The built-in hardware config (`pipelines/hardware.toml`): device kinds,
/// LLM list prices and overheads, every figure an assumption documented in
/// the file.
pub const DEFAULT_HARDWARE_TOML: &str = include_str!("../../pipelines/hardware.toml");

/// Bytes in a GiB.
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Most devices of one kind a spec may ask for.
const MAX_COUNT: u32 = 1024;

/// Slack for floating-point comparisons of throughput shares.
const EPS: f64 = 1e-9;

/// One kind of device (`[[device]]` in the hardware config). For a CPU
/// (`cpu = true`) memory, price and throughput are per core.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceKind {
    /// What a hardware spec names (`L4-24GB`, `cpu`), matched in any case.
    pub name: String,
    /// A CPU: figures are per core and the spec gives the core count.
    #[serde(default)]
    pub cpu: bool,
    /// Usable memory in GiB (per core for a CPU, the default of `cpu:N`).
    pub memory_gib: f64,
    /// On-demand price in USD per hour (per core for a CPU).
    pub hourly_usd: f64,
    /// Tokens per second one stream of a 1-billion-parameter model decodes;
    /// a model of P billion parameters decodes this / P.
    pub decode_tokens_per_sec_per_gparam: f64,
    /// Cap on the single-stream decode rate (small models on a GPU are bound
    /// by kernel launches rather than memory bandwidth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_tokens_per_sec: Option<f64>,
    /// Prompt tokens per second for a 1-billion-parameter model (/ P).
    pub prefill_tokens_per_sec_per_gparam: f64,
    /// Aggregate decode rate with concurrent sequences batched, as a
    /// multiple of the single-stream rate.
    pub batch_factor: f64,
}

/// An LLM's list price (`[[price]]`), USD per million tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmPrice {
    /// Model name or name prefix (`gpt-4o-mini`); `default` prices models
    /// no other entry matches.
    pub model: String,
    /// USD per million input (prompt) tokens.
    pub input_per_mtok: f64,
    /// USD per million output (completion) tokens.
    pub output_per_mtok: f64,
}

/// What a deployment needs besides its weights, and the calendar
/// (`[overhead]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overhead {
    /// Runtime overhead of one serving process on a GPU, GiB.
    pub gpu_runtime_gib: f64,
    /// Runtime overhead of one serving process on a CPU, GiB.
    pub cpu_runtime_gib: f64,
    /// Bytes per KV-cache element (f16 = 2).
    pub kv_dtype_bytes: u64,
    /// Bytes per LoRA weight (f16 = 2).
    pub adapter_dtype_bytes: u64,
    /// The projections each adapter adapts (`attn_q` ... `ffn_down`, or
    /// `q_proj` ... `down_proj`).
    pub adapter_targets: Vec<String>,
    /// Hours billed per month, and the month the log's span is scaled to.
    pub hours_per_month: f64,
}

/// The hardware config: device kinds, LLM prices, overheads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// The hardware to plan on when none is given (`available = "cpu:16"`).
    #[serde(default)]
    pub available: Option<String>,
    /// Device kinds, `[[device]]`.
    #[serde(rename = "device")]
    pub devices: Vec<DeviceKind>,
    /// LLM prices, `[[price]]`, one of them `default`.
    #[serde(rename = "price")]
    pub prices: Vec<LlmPrice>,
    /// `[overhead]`.
    pub overhead: Overhead,
}

impl Default for HardwareConfig {
    /// The built-in config ([`DEFAULT_HARDWARE_TOML`]).
    fn default() -> Self {
        HardwareConfig::from_toml(DEFAULT_HARDWARE_TOML)
            .expect("the built-in hardware.toml is valid")
    }
}

/// The price an LLM call was charged at, and which entry gave it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceMatch {
    /// The `[[price]]` entry used (`default` when none matched).
    pub entry: String,
    /// True when no entry matched the model and `default` was used.
    pub default_used: bool,
    /// USD per million input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
}

impl HardwareConfig {
    /// Parses and checks a hardware config (the layout of
    /// `pipelines/hardware.toml`). Errors are usage errors naming the field.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: HardwareConfig = toml::from_str(text)
            .map_err(|e| usage(format!("the hardware config is not valid: {e}")))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        if self.devices.is_empty() {
            return Err(usage("the hardware config has no [[device]]"));
        }
        let mut names = BTreeSet::new();
        for d in &self.devices {
            let bad_name = d.name.trim().is_empty()
                || d.name.contains([',', ':', '#'])
                || d.name.chars().any(char::is_whitespace);
            if bad_name {
                return Err(usage(format!(
                    "device name `{}`: names are non-empty, without spaces, `,`, `:` or `#`",
                    d.name
                )));
            }
            if !names.insert(d.name.to_ascii_lowercase()) {
                return Err(usage(format!("device `{}` is listed twice", d.name)));
            }
            let positive = [
                ("memory_gib", d.memory_gib),
                (
                    "decode_tokens_per_sec_per_gparam",
                    d.decode_tokens_per_sec_per_gparam,
                ),
                (
                    "prefill_tokens_per_sec_per_gparam",
                    d.prefill_tokens_per_sec_per_gparam,
                ),
                (
                    "max_stream_tokens_per_sec",
                    d.max_stream_tokens_per_sec.unwrap_or(1.0),
                ),
            ];
            for (field, v) in positive {
                if !(v.is_finite() && v > 0.0) {
                    return Err(usage(format!("device `{}`: {field} must be > 0", d.name)));
                }
            }
            if !(d.hourly_usd.is_finite() && d.hourly_usd >= 0.0) {
                return Err(usage(format!(
                    "device `{}`: hourly_usd must be >= 0",
                    d.name
                )));
            }
            if !(d.batch_factor.is_finite() && d.batch_factor >= 1.0) {
                return Err(usage(format!(
                    "device `{}`: batch_factor must be >= 1",
                    d.name
                )));
            }
        }
        self.check_prices()?;
        self.check_overhead()
    }

    fn check_prices(&self) -> Result<()> {
        let mut models = BTreeSet::new();
        for p in &self.prices {
            if p.model.trim().is_empty() || !models.insert(p.model.to_ascii_lowercase()) {
                return Err(usage(format!(
                    "price entry `{}`: model names are non-empty and listed once",
                    p.model
                )));
            }
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(p.input_per_mtok) || !ok(p.output_per_mtok) {
                return Err(usage(format!(
                    "price entry `{}`: prices must be >= 0",
                    p.model
                )));
            }
        }
        if !models.contains("default") {
            return Err(usage(
                "the hardware config has no [[price]] with model = \"default\" (used for unknown models)",
            ));
        }
        Ok(())
    }

    fn check_overhead(&self) -> Result<()> {
        let o = &self.overhead;
        let non_negative = [
            ("gpu_runtime_gib", o.gpu_runtime_gib),
            ("cpu_runtime_gib", o.cpu_runtime_gib),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(usage(format!("[overhead] {field} must be >= 0")));
            }
        }
        if o.kv_dtype_bytes == 0 || o.adapter_dtype_bytes == 0 {
            return Err(usage(
                "[overhead] kv_dtype_bytes and adapter_dtype_bytes must be > 0",
            ));
        }
        if !(o.hours_per_month.is_finite() && o.hours_per_month > 0.0) {
            return Err(usage("[overhead] hours_per_month must be > 0"));
        }
        for t in &o.adapter_targets {
            if LoraTarget::parse(t).is_none() {
                return Err(usage(format!(
                    "[overhead] adapter target `{t}` is not one of attn_q attn_k attn_v attn_output ffn_gate ffn_up ffn_down"
                )));
            }
        }
        Ok(())
    }

    /// The device kind named `name`, in any case.
    pub fn device_kind(&self, name: &str) -> Option<&DeviceKind> {
        self.devices
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name.trim()))
    }

    /// The price of an LLM call to `model`: the entry of the same name, else
    /// the longest entry that is a prefix of it ending at a word boundary
    /// (`gpt-4o-mini-2024-07-18` is `gpt-4o-mini`; `gpt-4` is not a prefix
    /// of `gpt-4o`), trying the name as given (any case), without a provider
    /// prefix (`openai/`, `anthropic.`), and with `.` read as `-`
    /// (`claude-3.5-sonnet`); else `default`, flagged.
    pub fn price_for(&self, model: &str) -> PriceMatch {
        let entries: Vec<(String, &LlmPrice)> = self
            .prices
            .iter()
            .filter(|p| !p.model.eq_ignore_ascii_case("default"))
            .map(|p| (p.model.to_ascii_lowercase(), p))
            .collect();
        for cand in name_candidates(model) {
            let best = entries
                .iter()
                .filter(|(name, _)| {
                    cand.strip_prefix(name.as_str()).is_some_and(|rest| {
                        rest.chars()
                            .next()
                            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '.')
                    })
                })
                .max_by_key(|(name, _)| (name.len(), Reverse(name.clone())));
            if let Some((_, p)) = best {
                return PriceMatch {
                    entry: p.model.clone(),
                    default_used: false,
                    input_per_mtok: p.input_per_mtok,
                    output_per_mtok: p.output_per_mtok,
                };
            }
        }
        let d = self
            .prices
            .iter()
            .find(|p| p.model.eq_ignore_ascii_case("default"))
            .expect("checked: a default price exists");
        PriceMatch {
            entry: d.model.clone(),
            default_used: true,
            input_per_mtok: d.input_per_mtok,
            output_per_mtok: d.output_per_mtok,
        }
    }

    fn adapter_targets(&self) -> Vec<LoraTarget> {
        let mut t: Vec<LoraTarget> = self
            .overhead
            .adapter_targets
            .iter()
            .filter_map(|s| LoraTarget::parse(s))
            .collect();
        t.sort_by_key(|x| x.index());
        t.dedup();
        t
    }
}

/// The names to look a model up by, most literal first: lower-cased, after
/// the last `/`, without dotted provider prefixes (`us.anthropic.`), each
/// also with `.` as `-`.
fn name_candidates(model: &str) -> Vec<String> {
    fn push(out: &mut Vec<String>, s: &str) {
        for v in [s.to_string(), s.replace('.', "-")] {
            if !v.is_empty() && !out.contains(&v) {
                out.push(v);
            }
        }
    }
    let lower = model.trim().to_ascii_lowercase();
    let mut out = Vec::new();
    push(&mut out, &lower);
    let tail = lower.rsplit('/').next().unwrap_or(&lower);
    push(&mut out, tail);
    let mut rest = tail;
    while let Some((head, r)) = rest.split_once('.') {
        if head.is_empty() || !head.chars().all(|c| c.is_ascii_alphabetic()) {
            break;
        }
        push(&mut out, r);
        rest = r;
    }
    out
}

/// One device of a hardware spec, with its kind's figures scaled to it (a
/// CPU's per-core figures times its cores).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Device {
    /// `KIND#N`: the kind's name and the device's index among that kind, in
    /// spec order (`L4-24GB#0`, `L4-24GB#1`, `cpu#0`).
    pub id: String,
    /// The kind's name as the config spells it.
    pub kind: String,
    /// A CPU (throughput and price scale with `cores`).
    pub cpu: bool,
    /// Cores of a CPU; 1 for a GPU.
    pub cores: u32,
    /// Usable memory, bytes.
    pub memory_bytes: u64,
    /// On-demand price of the whole device, USD per hour.
    pub hourly_usd: f64,
    /// Single-stream decode tokens/s of a 1-billion-parameter model.
    pub decode_tokens_per_sec_per_gparam: f64,
    /// Cap on the single-stream decode rate, if any.
    pub max_stream_tokens_per_sec: Option<f64>,
    /// Prompt tokens/s of a 1-billion-parameter model.
    pub prefill_tokens_per_sec_per_gparam: f64,
    /// Aggregate decode rate when batched, as a multiple of one stream's.
    pub batch_factor: f64,
    /// Runtime overhead of one deployment on this device, bytes.
    pub runtime_overhead_bytes: u64,
}

impl Device {
    fn new(kind: &DeviceKind, index: usize, cores: u32, memory_bytes: u64, o: &Overhead) -> Device {
        let scale = if kind.cpu { f64::from(cores) } else { 1.0 };
        let overhead_gib = if kind.cpu {
            o.cpu_runtime_gib
        } else {
            o.gpu_runtime_gib
        };
        Device {
            id: format!("{}#{index}", kind.name),
            kind: kind.name.clone(),
            cpu: kind.cpu,
            cores,
            memory_bytes,
            hourly_usd: kind.hourly_usd * scale,
            decode_tokens_per_sec_per_gparam: kind.decode_tokens_per_sec_per_gparam * scale,
            max_stream_tokens_per_sec: kind.max_stream_tokens_per_sec,
            prefill_tokens_per_sec_per_gparam: kind.prefill_tokens_per_sec_per_gparam * scale,
            batch_factor: kind.batch_factor,
            runtime_overhead_bytes: gib_to_bytes(overhead_gib),
        }
    }

    /// Tokens/s one stream of `model` decodes here: the per-Gparam rate /
    /// the model's billions of parameters, capped by
    /// `max_stream_tokens_per_sec`.
    pub fn stream_decode_tokens_per_sec(&self, model: &ModelSpec) -> f64 {
        let r = self.decode_tokens_per_sec_per_gparam / model.gparams();
        self.max_stream_tokens_per_sec.map_or(r, |cap| r.min(cap))
    }

    /// Aggregate decode tokens/s of `model` with batching: one stream's rate
    /// × `batch_factor`. Deployments sharing the device share this.
    pub fn decode_capacity_tokens_per_sec(&self, model: &ModelSpec) -> f64 {
        self.stream_decode_tokens_per_sec(model) * self.batch_factor
    }

    /// Prompt tokens/s of `model` here.
    pub fn prefill_tokens_per_sec(&self, model: &ModelSpec) -> f64 {
        self.prefill_tokens_per_sec_per_gparam / model.gparams()
    }
}

fn gib_to_bytes(gib: f64) -> u64 {
    (gib * GIB).round() as u64
}

fn bytes_to_gib(bytes: u64) -> f64 {
    bytes as f64 / GIB
}

/// The devices of a hardware spec: comma-separated items `[Nx]KIND`
/// (`2xL4-24GB,1xA100-80GB`, `A100-80GB`) and for CPUs `[Nx]cpu:CORES` or
/// `[Nx]cpu:CORES:MEM` (`cpu:16`: 16 cores with the config's memory per
/// core; `cpu:16:64GB`: 64 GiB; `GB`, `GiB` and `G` all read as GiB).
/// Kind names match in any case. Device ids number each kind from 0 in spec
/// order. An unknown kind is a usage error naming the known ones; a zero
/// count, zero cores or zero memory are errors.
pub fn parse_hardware(spec: &str, cfg: &HardwareConfig) -> Result<Vec<Device>> {
    let mut out = Vec::new();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    if spec.trim().is_empty() {
        return Err(usage(
            "empty hardware spec: name devices, e.g. `2xL4-24GB` or `cpu:16`",
        ));
    }
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(usage(format!("hardware spec `{spec}` has an empty item")));
        }
        let (count, rest) = split_count(item)?;
        let (kind_name, args) = match rest.split_once(':') {
            Some((k, a)) => (k.trim(), Some(a.trim())),
            None => (rest.trim(), None),
        };
        let Some(kind) = cfg.device_kind(kind_name) else {
            let known: Vec<&str> = cfg.devices.iter().map(|d| d.name.as_str()).collect();
            return Err(usage(format!(
                "unknown device kind `{kind_name}` in `{item}`: known kinds are {}",
                known.join(", ")
            )));
        };
        let (cores, memory_bytes) = match (kind.cpu, args) {
            (true, Some(a)) => parse_cpu_args(a, kind, item)?,
            (true, None) => {
                return Err(usage(format!(
                    "`{item}`: say how many cores, e.g. `{0}:16` or `{0}:16:64GB`",
                    kind.name
                )))
            }
            (false, Some(_)) => {
                return Err(usage(format!(
                    "`{item}`: only a CPU takes `:CORES`; write `NxKIND` for several GPUs"
                )))
            }
            (false, None) => (1, gib_to_bytes(kind.memory_gib)),
        };
        for _ in 0..count {
            let n = per_kind.entry(kind.name.clone()).or_insert(0);
            out.push(Device::new(kind, *n, cores, memory_bytes, &cfg.overhead));
            *n += 1;
        }
    }
    Ok(out)
}

/// `3xKIND` into (3, `KIND`); a plain `KIND` is one.
fn split_count(item: &str) -> Result<(u32, &str)> {
    let digits = item.chars().take_while(char::is_ascii_digit).count();
    let after = item[digits..].trim_start();
    let Some(rest) = after.strip_prefix(['x', 'X']).filter(|_| digits > 0) else {
        return Ok((1, item));
    };
    let count: u32 = item[..digits]
        .parse()
        .map_err(|_| usage(format!("`{item}`: the count is too large")))?;
    if count == 0 {
        return Err(usage(format!(
            "`{item}`: a count of zero devices (counts start at 1)"
        )));
    }
    if count > MAX_COUNT {
        return Err(usage(format!(
            "`{item}`: at most {MAX_COUNT} devices of one kind"
        )));
    }
    Ok((count, rest.trim()))
}

/// `16` or `16:64GB` (cores, memory) of a CPU item.
fn parse_cpu_args(args: &str, kind: &DeviceKind, item: &str) -> Result<(u32, u64)> {
    let (cores, mem) = match args.split_once(':') {
        Some((c, m)) => (c.trim(), Some(m.trim())),
        None => (args, None),
    };
    let cores: u32 = cores
        .parse()
        .map_err(|_| usage(format!("`{item}`: `{cores}` is not a core count")))?;
    if cores == 0 {
        return Err(usage(format!("`{item}`: zero cores")));
    }
    let memory_gib = match mem {
        None => kind.memory_gib * f64::from(cores),
        Some(m) => {
            let lower = m.to_ascii_lowercase();
            let num = ["gib", "gb", "g"]
                .iter()
                .find_map(|s| lower.strip_suffix(s))
                .unwrap_or(&lower)
                .trim();
            let v: f64 = num
                .parse()
                .map_err(|_| usage(format!("`{item}`: `{m}` is not a memory size like 64GB")))?;
            if !(v.is_finite() && v > 0.0) {
                return Err(usage(format!("`{item}`: memory must be > 0")));
            }
            v
        }
    };
    Ok((cores, gib_to_bytes(memory_gib)))
}

/// A base model as the memory estimate needs it (the figures of the model
/// catalogue, `pipelines/models.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Catalogue id or name.
    pub id: String,
    /// Parameters, all of them (embeddings included).
    pub params: u64,
    /// Transformer layers.
    pub layers: u64,
    /// Attention (query) heads.
    pub heads: u64,
    /// Key/value heads (fewer than `heads` with grouped-query attention).
    pub kv_heads: u64,
    /// Dimension of one head.
    pub head_dim: u64,
    /// Hidden (embedding) size.
    pub hidden: u64,
    /// Feed-forward intermediate size.
    pub intermediate: u64,
    /// Longest context the model takes, tokens.
    pub context_length: u64,
    /// Bytes per weight of the quantisation served (q8_0 1.0625, q4_k_m
    /// ≈ 0.6, f16 2).
    pub bytes_per_param: f64,
}

impl ModelSpec {
    fn gparams(&self) -> f64 {
        self.params as f64 / 1e9
    }

    fn check(&self) -> Result<()> {
        let counts = [
            ("params", self.params),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("hidden", self.hidden),
            ("intermediate", self.intermediate),
            ("context_length", self.context_length),
        ];
        for (field, v) in counts {
            if v == 0 {
                return Err(usage(format!("model `{}`: {field} must be > 0", self.id)));
            }
        }
        if !(self.bytes_per_param.is_finite() && self.bytes_per_param > 0.0) {
            return Err(usage(format!(
                "model `{}`: bytes_per_param must be > 0",
                self.id
            )));
        }
        Ok(())
    }

    /// (in, out) features of one adapted projection.
    fn projection(&self, t: LoraTarget) -> (u64, u64) {
        let q = self.heads * self.head_dim;
        let kv = self.kv_heads * self.head_dim;
        match t {
            LoraTarget::Q => (self.hidden, q),
            LoraTarget::K | LoraTarget::V => (self.hidden, kv),
            LoraTarget::O => (q, self.hidden),
            LoraTarget::Gate | LoraTarget::Up => (self.hidden, self.intermediate),
            LoraTarget::Down => (self.intermediate, self.hidden),
        }
    }
}

/// One cluster's traffic and adapter, as the serving plan sizes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterLoad {
    /// Cluster id.
    pub cluster: i32,
    /// Prompt plus completion tokens of the cluster's 95th-percentile call:
    /// the KV cache each of its concurrent sequences holds.
    pub p95_context_tokens: u64,
    /// Calls per minute at the busiest minute of the log.
    pub peak_calls_per_min: f64,
    /// Mean completion tokens per call.
    pub mean_completion_tokens: f64,
    /// Mean prompt tokens per call.
    pub mean_prompt_tokens: f64,
    /// LoRA rank of the cluster's adapter (0: served by the base as is).
    pub lora_rank: u64,
}

impl ClusterLoad {
    /// Decode tokens/s the cluster needs at its peak: peak calls per second
    /// × mean completion tokens.
    pub fn required_decode_tokens_per_sec(&self) -> f64 {
        self.peak_calls_per_min / 60.0 * self.mean_completion_tokens
    }

    fn check(&self) -> Result<()> {
        let values = [
            ("peak_calls_per_min", self.peak_calls_per_min),
            ("mean_completion_tokens", self.mean_completion_tokens),
            ("mean_prompt_tokens", self.mean_prompt_tokens),
        ];
        for (field, v) in values {
            if !(v.is_finite() && v >= 0.0) {
                return Err(usage(format!(
                    "cluster {}: {field} must be >= 0",
                    self.cluster
                )));
            }
        }
        Ok(())
    }
}

/// Concurrent sequences a cluster keeps in flight on `device` at its peak,
/// by Little's law: L = λ × W, with λ the peak calls per second and W the
/// seconds one call takes on a single stream (completion tokens / the
/// device's single-stream decode rate + prompt tokens / its prefill rate);
/// rounded up, at least 1. Batching slows each stream, so this is a lower
/// bound when the device is busy.
pub fn concurrency(load: &ClusterLoad, model: &ModelSpec, device: &Device) -> u64 {
    let secs = load.mean_completion_tokens / device.stream_decode_tokens_per_sec(model)
        + load.mean_prompt_tokens / device.prefill_tokens_per_sec(model);
    let l = load.peak_calls_per_min / 60.0 * secs;
    if l.is_finite() && l > 1.0 {
        l.ceil() as u64
    } else {
        1
    }
}

/// KV-cache bytes per token of context: 2 (k and v) × layers × kv_heads ×
/// head_dim × the config's `kv_dtype_bytes`.
pub fn kv_bytes_per_token(model: &ModelSpec, cfg: &HardwareConfig) -> u64 {
    2 * model.layers * model.kv_heads * model.head_dim * cfg.overhead.kv_dtype_bytes
}

/// Bytes of one LoRA adapter of `rank`: rank × the sum over the config's
/// `adapter_targets` of (in + out features) × layers ×
/// `adapter_dtype_bytes`.
pub fn adapter_bytes(model: &ModelSpec, rank: u64, cfg: &HardwareConfig) -> u64 {
    let per_layer: u64 = cfg
        .adapter_targets()
        .into_iter()
        .map(|t| {
            let (i, o) = model.projection(t);
            i + o
        })
        .sum();
    rank * per_layer * model.layers * cfg.overhead.adapter_dtype_bytes
}

/// One cluster's part of a deployment's memory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterMemory {
    /// Cluster id.
    pub cluster: i32,
    /// Context per sequence: its p95 context, capped at the model's
    /// context length.
    pub context_tokens: u64,
    /// Concurrent sequences ([`concurrency`]).
    pub concurrency: u64,
    /// KV cache: bytes per token × context × concurrency.
    pub kv_cache_bytes: u64,
    /// Its adapter ([`adapter_bytes`]).
    pub adapter_bytes: u64,
    /// Decode tokens/s it needs at its peak.
    pub required_decode_tokens_per_sec: f64,
}

/// Memory of one deployment on one device, part by part, in bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryEstimate {
    /// The base model.
    pub base_model: String,
    /// The device kind it was estimated for (concurrency depends on speed).
    pub device_kind: String,
    /// params × bytes_per_param, rounded up; held once however many
    /// clusters share the base.
    pub weights_bytes: u64,
    /// Sum of the clusters' KV caches.
    pub kv_cache_bytes: u64,
    /// Sum of the clusters' adapters.
    pub adapter_bytes: u64,
    /// The device's runtime overhead, once per deployment.
    pub runtime_overhead_bytes: u64,
    /// weights + KV cache + adapters + runtime overhead.
    pub total_bytes: u64,
    /// Each cluster's KV cache and adapter.
    pub clusters: Vec<ClusterMemory>,
}

/// Memory of one deployment: `model` shared by `clusters` (one adapter
/// each) on `device`. weights = params × bytes_per_param; KV cache per
/// cluster = [`kv_bytes_per_token`] × min(p95 context, context length) ×
/// [`concurrency`]; adapters per cluster = [`adapter_bytes`]; plus the
/// device's runtime overhead. Clusters are reported in the order given.
pub fn estimate_memory(
    model: &ModelSpec,
    clusters: &[ClusterLoad],
    device: &Device,
    cfg: &HardwareConfig,
) -> MemoryEstimate {
    let weights_bytes = (model.params as f64 * model.bytes_per_param).ceil() as u64;
    let per_token = kv_bytes_per_token(model, cfg);
    let parts: Vec<ClusterMemory> = clusters
        .iter()
        .map(|c| {
            let context_tokens = c.p95_context_tokens.min(model.context_length);
            let conc = concurrency(c, model, device);
            ClusterMemory {
                cluster: c.cluster,
                context_tokens,
                concurrency: conc,
                kv_cache_bytes: per_token
                    .saturating_mul(context_tokens)
                    .saturating_mul(conc),
                adapter_bytes: adapter_bytes(model, c.lora_rank, cfg),
                required_decode_tokens_per_sec: c.required_decode_tokens_per_sec(),
            }
        })
        .collect();
    let kv_cache_bytes = parts
        .iter()
        .map(|p| p.kv_cache_bytes)
        .fold(0, u64::saturating_add);
    let adapter_total = parts
        .iter()
        .map(|p| p.adapter_bytes)
        .fold(0, u64::saturating_add);
    let total_bytes = weights_bytes
        .saturating_add(kv_cache_bytes)
        .saturating_add(adapter_total)
        .saturating_add(device.runtime_overhead_bytes);
    MemoryEstimate {
        base_model: model.id.clone(),
        device_kind: device.kind.clone(),
        weights_bytes,
        kv_cache_bytes,
        adapter_bytes: adapter_total,
        runtime_overhead_bytes: device.runtime_overhead_bytes,
        total_bytes,
        clusters: parts,
    }
}

/// Clusters served by one base model (select's choice). Requests naming the
/// same base id are merged into one deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingRequest {
    /// The base model.
    pub base: ModelSpec,
    /// The clusters it serves, one adapter each.
    pub clusters: Vec<ClusterLoad>,
}

/// A deployment (or one replica of a split one) placed on a device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deployment {
    /// The base id; `BASE#rN` for the replicas of a deployment split by
    /// cluster.
    pub id: String,
    /// The base model.
    pub base_model: String,
    /// The device it runs on ([`Device::id`]).
    pub device: String,
    /// The clusters it serves, by id.
    pub clusters: Vec<i32>,
    /// Its memory on that device.
    pub memory: MemoryEstimate,
    /// Decode tokens/s its clusters need at their peaks, together.
    pub required_decode_tokens_per_sec: f64,
    /// Decode tokens/s the device gives this model with batching.
    pub decode_capacity_tokens_per_sec: f64,
    /// required / capacity: the device's compute it takes.
    pub compute_share: f64,
}

/// One device and what runs on it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DevicePlan {
    /// The device.
    pub device: Device,
    /// The deployments on it ([`Deployment::id`]), in placement order.
    pub deployments: Vec<String>,
    /// Memory the deployments take, bytes.
    pub memory_used_bytes: u64,
    /// The device's memory, bytes.
    pub memory_capacity_bytes: u64,
    /// used / capacity.
    pub memory_utilisation: f64,
    /// Sum of the deployments' compute shares.
    pub compute_utilisation: f64,
    /// Holds at least one deployment (and is billed).
    pub in_use: bool,
}

/// A cluster no device could take, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnplacedCluster {
    /// Its base model.
    pub base_model: String,
    /// Cluster id.
    pub cluster: i32,
    /// Memory the base with this cluster alone needs on the device with the
    /// most free memory (0 when there are no devices).
    pub memory_needed_bytes: u64,
    /// Decode tokens/s it needs at its peak.
    pub required_decode_tokens_per_sec: f64,
    /// Why, in words: "needs 31.2 GiB (...), largest free device has 24.0
    /// GiB (...)" or "needs 900 tok/s of decoding, ... gives at most 400".
    pub reason: String,
}

/// Where every deployment runs, what could not be placed, and the planning
/// assumptions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServingPlan {
    /// Every device of the spec, in spec order, used or not.
    pub devices: Vec<DevicePlan>,
    /// The deployments placed, in placement order.
    pub deployments: Vec<Deployment>,
    /// Clusters left on the LLM, by base model and cluster id.
    pub unplaced: Vec<UnplacedCluster>,
    /// How the plan was made, in words.
    pub assumptions: Vec<String>,
}

/// A device's free memory and compute while packing.
#[derive(Clone, Debug, Default)]
struct DeviceState {
    used_bytes: u64,
    compute: f64,
    deployments: Vec<String>,
}

/// Why a set of clusters does not go onto a device.
enum Fit {
    Yes(Box<Deployment>),
    NoMemory { need: u64, free: u64 },
    NoThroughput { need: f64, avail: f64 },
}

/// Packing state: the devices, the order they are tried in, what they hold.
struct Packer<'a> {
    devices: &'a [Device],
    cfg: &'a HardwareConfig,
    /// Device indices, cheapest first (then smaller memory, then spec order).
    order: Vec<usize>,
    states: Vec<DeviceState>,
    placed: Vec<Deployment>,
    unplaced: Vec<UnplacedCluster>,
}

/// Packs the clusters of `requests` onto `devices`.
///
/// Clusters sharing a base model form one deployment (the base held once,
/// one adapter per cluster). Deployments are placed largest first (memory
/// on the device kind where it is largest; ties by base id), each on the
/// first device, cheapest first, with room for its memory
/// ([`estimate_memory`] on that device) and its decode throughput (its
/// clusters' peak decode tokens/s within the device's batched capacity for
/// the model, shared with what already runs there). Several deployments may
/// share a device. A deployment no device takes whole is split by cluster
/// into replicas `BASE#r0`, `BASE#r1`...: device by device, each takes as
/// many of the remaining clusters (largest first, ties by id) as fit, each
/// replica holding the base once. Clusters left over are
/// [`UnplacedCluster`]s with the reason. Deterministic: the order of the
/// input does not matter.
///
/// Errors: a malformed model or load, a cluster under two bases, two
/// different models with one id, two devices with one id.
pub fn plan_deployments(
    requests: &[ServingRequest],
    devices: &[Device],
    cfg: &HardwareConfig,
) -> Result<ServingPlan> {
    let groups = group_requests(requests)?;
    let mut ids = BTreeSet::new();
    for d in devices {
        if !ids.insert(d.id.as_str()) {
            return Err(usage(format!("device `{}` is listed twice", d.id)));
        }
    }
    let mut order: Vec<usize> = (0..devices.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&devices[a], &devices[b]);
        x.hourly_usd
            .total_cmp(&y.hourly_usd)
            .then(x.memory_bytes.cmp(&y.memory_bytes))
            .then(a.cmp(&b))
    });
    let mut packer = Packer {
        devices,
        cfg,
        order,
        states: vec![DeviceState::default(); devices.len()],
        placed: Vec::new(),
        unplaced: Vec::new(),
    };
    let mut sized: Vec<(u64, &ModelSpec, &Vec<ClusterLoad>)> = groups
        .values()
        .map(|(m, cs)| (packer.largest_estimate(m, cs), m, cs))
        .collect();
    sized.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    for (_, model, clusters) in sized {
        if !packer.place_whole(model, clusters) {
            packer.place_split(model, clusters);
        }
    }
    Ok(packer.finish())
}

/// Requests merged by base id, clusters sorted by id; checks models and
/// loads.
fn group_requests(
    requests: &[ServingRequest],
) -> Result<BTreeMap<String, (ModelSpec, Vec<ClusterLoad>)>> {
    let mut groups: BTreeMap<String, (ModelSpec, Vec<ClusterLoad>)> = BTreeMap::new();
    let mut seen: BTreeMap<i32, String> = BTreeMap::new();
    for r in requests {
        r.base.check()?;
        let entry = groups
            .entry(r.base.id.clone())
            .or_insert_with(|| (r.base.clone(), Vec::new()));
        if entry.0 != r.base {
            return Err(usage(format!(
                "two different models share the id `{}`",
                r.base.id
            )));
        }
        for c in &r.clusters {
            c.check()?;
            if let Some(other) = seen.insert(c.cluster, r.base.id.clone()) {
                return Err(usage(format!(
                    "cluster {} is requested twice (bases `{other}` and `{}`)",
                    c.cluster, r.base.id
                )));
            }
            entry.1.push(c.clone());
        }
    }
    for (_, cs) in groups.values_mut() {
        cs.sort_by_key(|c| c.cluster);
    }
    groups.retain(|_, (_, cs)| !cs.is_empty());
    Ok(groups)
}

impl Packer<'_> {
    /// The deployment's memory on the device kind where it is largest (the
    /// packing order's key); 0 without devices.
    fn largest_estimate(&self, model: &ModelSpec, clusters: &[ClusterLoad]) -> u64 {
        self.devices
            .iter()
            .map(|d| estimate_memory(model, clusters, d, self.cfg).total_bytes)
            .max()
            .unwrap_or(0)
    }

    fn try_fit(&self, model: &ModelSpec, clusters: &[ClusterLoad], di: usize, id: &str) -> Fit {
        let dev = &self.devices[di];
        let st = &self.states[di];
        let memory = estimate_memory(model, clusters, dev, self.cfg);
        let free = dev.memory_bytes.saturating_sub(st.used_bytes);
        if memory.total_bytes > free {
            return Fit::NoMemory {
                need: memory.total_bytes,
                free,
            };
        }
        let capacity = dev.decode_capacity_tokens_per_sec(model);
        let need: f64 = clusters
            .iter()
            .map(ClusterLoad::required_decode_tokens_per_sec)
            .sum();
        let share = need / capacity;
        if share > 1.0 - st.compute + EPS {
            return Fit::NoThroughput {
                need,
                avail: ((1.0 - st.compute) * capacity).max(0.0),
            };
        }
        Fit::Yes(Box::new(Deployment {
            id: id.to_string(),
            base_model: model.id.clone(),
            device: dev.id.clone(),
            clusters: clusters.iter().map(|c| c.cluster).collect(),
            memory,
            required_decode_tokens_per_sec: need,
            decode_capacity_tokens_per_sec: capacity,
            compute_share: share,
        }))
    }

    fn commit(&mut self, di: usize, d: Deployment) {
        let st = &mut self.states[di];
        st.used_bytes += d.memory.total_bytes;
        st.compute += d.compute_share;
        st.deployments.push(d.id.clone());
        self.placed.push(d);
    }

    /// The whole deployment on the first device with room; false if none.
    fn place_whole(&mut self, model: &ModelSpec, clusters: &[ClusterLoad]) -> bool {
        for k in 0..self.order.len() {
            let di = self.order[k];
            if let Fit::Yes(d) = self.try_fit(model, clusters, di, &model.id) {
                self.commit(di, *d);
                return true;
            }
        }
        false
    }

    /// Replicas by cluster, device by device; the rest unplaced.
    fn place_split(&mut self, model: &ModelSpec, clusters: &[ClusterLoad]) {
        let mut remaining: Vec<(u64, &ClusterLoad)> = clusters
            .iter()
            .map(|c| (self.largest_estimate(model, std::slice::from_ref(c)), c))
            .collect();
        remaining.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cluster.cmp(&b.1.cluster)));
        let mut replica = 0;
        for k in 0..self.order.len() {
            if remaining.is_empty() {
                break;
            }
            let di = self.order[k];
            let id = format!("{}#r{replica}", model.id);
            let mut chosen: Vec<ClusterLoad> = Vec::new();
            let mut best: Option<Deployment> = None;
            for (_, c) in &remaining {
                let mut trial = chosen.clone();
                trial.push((*c).clone());
                trial.sort_by_key(|x| x.cluster);
                if let Fit::Yes(d) = self.try_fit(model, &trial, di, &id) {
                    chosen = trial;
                    best = Some(*d);
                }
            }
            if let Some(d) = best {
                remaining.retain(|(_, c)| !d.clusters.contains(&c.cluster));
                self.commit(di, d);
                replica += 1;
            }
        }
        let mut left: Vec<&ClusterLoad> = remaining.into_iter().map(|(_, c)| c).collect();
        left.sort_by_key(|c| c.cluster);
        for c in left {
            let u = self.why_not(model, c);
            self.unplaced.push(u);
        }
    }

    /// Why `model` with cluster `c` alone fits no device now.
    fn why_not(&self, model: &ModelSpec, c: &ClusterLoad) -> UnplacedCluster {
        let one = std::slice::from_ref(c);
        let mut most_free: Option<(u64, u64, usize)> = None; // (free, need, device)
        let mut most_tps: Option<(f64, f64, usize)> = None; // (avail, need, device)
        for &di in &self.order {
            match self.try_fit(model, one, di, &model.id) {
                Fit::NoMemory { need, free } => {
                    if most_free.is_none_or(|(f, _, _)| free > f) {
                        most_free = Some((free, need, di));
                    }
                }
                Fit::NoThroughput { need, avail } => {
                    if most_tps.is_none_or(|(a, _, _)| avail > a) {
                        most_tps = Some((avail, need, di));
                    }
                }
                Fit::Yes(_) => {}
            }
        }
        let clusters_word = format!("{} with cluster {}", model.id, c.cluster);
        let (memory_needed_bytes, reason) = match (most_tps, most_free) {
            (Some((avail, need, di)), _) => (
                estimate_memory(model, one, &self.devices[di], self.cfg).total_bytes,
                format!(
                    "throughput {need:.0} tok/s of decoding needed ({clusters_word}), {} gives at most {avail:.0} tok/s for this model",
                    self.devices[di].id
                ),
            ),
            (None, Some((free, need, di))) => (
                need,
                format!(
                    "needs {:.1} GiB ({clusters_word}), largest free device has {:.1} GiB ({})",
                    bytes_to_gib(need),
                    bytes_to_gib(free),
                    self.devices[di].id
                ),
            ),
            (None, None) if self.devices.is_empty() => {
                (0, "no devices in the hardware spec".to_string())
            }
            (None, None) => (
                0,
                "no room left beside the deployments already placed".to_string(),
            ),
        };
        UnplacedCluster {
            base_model: model.id.clone(),
            cluster: c.cluster,
            memory_needed_bytes,
            required_decode_tokens_per_sec: c.required_decode_tokens_per_sec(),
            reason,
        }
    }

    fn finish(mut self) -> ServingPlan {
        self.unplaced.sort_by(|a, b| {
            a.base_model
                .cmp(&b.base_model)
                .then(a.cluster.cmp(&b.cluster))
        });
        let devices = self
            .devices
            .iter()
            .zip(self.states)
            .map(|(d, st)| DevicePlan {
                device: d.clone(),
                in_use: !st.deployments.is_empty(),
                deployments: st.deployments,
                memory_used_bytes: st.used_bytes,
                memory_capacity_bytes: d.memory_bytes,
                memory_utilisation: st.used_bytes as f64 / d.memory_bytes.max(1) as f64,
                compute_utilisation: st.compute,
            })
            .collect();
        ServingPlan {
            devices,
            deployments: self.placed,
            unplaced: self.unplaced,
            assumptions: plan_assumptions(self.cfg),
        }
    }
}

fn plan_assumptions(cfg: &HardwareConfig) -> Vec<String> {
    let o = &cfg.overhead;
    vec![
        "clusters sharing a base model are one deployment: the base weights are held once, one LoRA adapter per cluster (multi-LoRA serving)".into(),
        format!(
            "memory = params x bytes_per_param + KV cache (2 x layers x kv_heads x head_dim x {} bytes x min(p95 context, context length) x concurrency, per cluster) + adapters (rank x sum of in+out features of {} x layers x {} bytes, per cluster) + runtime overhead ({} GiB on a GPU, {} GiB on a CPU)",
            o.kv_dtype_bytes,
            o.adapter_targets.join(" "),
            o.adapter_dtype_bytes,
            o.gpu_runtime_gib,
            o.cpu_runtime_gib
        ),
        "concurrency per cluster by Little's law: peak calls/s x (completion tokens / single-stream decode tok/s + prompt tokens / prefill tok/s), rounded up, at least 1".into(),
        "throughput: a device decodes (decode tok/s per Gparam / model Gparams, capped per stream) x batch factor tokens/s for a model; deployments on a device share it; needs are peak calls/s x mean completion tokens".into(),
        "device figures (memory, throughput, prices) come from the hardware config and are assumptions, not measurements on the target".into(),
        "packing: largest deployment first onto the cheapest device with room; a deployment no device takes whole is split by cluster into replicas, each holding the base once".into(),
    ]
}

/// LLM calls of one cluster to one model over the log's span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmUsage {
    /// Cluster id.
    pub cluster: i32,
    /// The model the calls named.
    pub model: String,
    /// Calls.
    pub calls: u64,
    /// Prompt tokens, all calls together.
    pub input_tokens: u64,
    /// Completion tokens, all calls together.
    pub output_tokens: u64,
}

/// What the calls to one model cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelCost {
    /// The model as the calls named it.
    pub model: String,
    /// The price used, and whether it was the default.
    pub price: PriceMatch,
    /// Calls.
    pub calls: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost over the log's span, USD.
    pub observed_usd: f64,
    /// Cost per month, USD.
    pub monthly_usd: f64,
}

/// What one cluster's LLM calls cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterLlmCost {
    /// Cluster id.
    pub cluster: i32,
    /// Calls.
    pub calls: u64,
    /// Cost over the log's span, USD.
    pub observed_usd: f64,
    /// Cost per month, USD.
    pub monthly_usd: f64,
}

/// The LLM's cost, observed and per month, by model and by cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LlmCost {
    /// The log's span, seconds.
    pub span_seconds: f64,
    /// Month / span: what observed costs are multiplied by.
    pub month_factor: f64,
    /// Cost over the span, USD.
    pub observed_usd: f64,
    /// Cost per month, USD.
    pub monthly_usd: f64,
    /// By model, sorted by name.
    pub models: Vec<ModelCost>,
    /// By cluster, sorted by id.
    pub clusters: Vec<ClusterLlmCost>,
    /// What the figures assume.
    pub assumptions: Vec<String>,
}

fn usd(tokens: u64, per_mtok: f64) -> f64 {
    tokens as f64 / 1e6 * per_mtok
}

/// The LLM's cost of `usage`, observed over `span_seconds` (the log's first
/// to last call) and scaled to a month: monthly = observed ×
/// hours_per_month × 3600 / span_seconds (the traffic is assumed to go on
/// at the observed rate). Each model is priced by
/// [`HardwareConfig::price_for`]; a model with no entry uses `default`, and
/// an assumption says so. A span that is not a positive number of seconds
/// is a usage error.
pub fn llm_cost(
    usage_rows: &[LlmUsage],
    span_seconds: f64,
    cfg: &HardwareConfig,
) -> Result<LlmCost> {
    if !(span_seconds.is_finite() && span_seconds > 0.0) {
        return Err(usage(format!(
            "the log's time span must be a positive number of seconds (got {span_seconds})"
        )));
    }
    let month_factor = cfg.overhead.hours_per_month * 3600.0 / span_seconds;
    // Integer totals first, so the input order does not change the sums.
    let mut by_pair: BTreeMap<(i32, &str), (u64, u64, u64)> = BTreeMap::new();
    for u in usage_rows {
        let e = by_pair.entry((u.cluster, u.model.as_str())).or_default();
        e.0 += u.calls;
        e.1 += u.input_tokens;
        e.2 += u.output_tokens;
    }
    let mut models: BTreeMap<&str, ModelCost> = BTreeMap::new();
    let mut clusters: BTreeMap<i32, ClusterLlmCost> = BTreeMap::new();
    for (&(cluster, model), &(calls, input, output)) in &by_pair {
        let m = models.entry(model).or_insert_with(|| ModelCost {
            model: model.to_string(),
            price: cfg.price_for(model),
            calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            observed_usd: 0.0,
            monthly_usd: 0.0,
        });
        let cost = usd(input, m.price.input_per_mtok) + usd(output, m.price.output_per_mtok);
        m.calls += calls;
        m.input_tokens += input;
        m.output_tokens += output;
        m.observed_usd += cost;
        let c = clusters.entry(cluster).or_insert(ClusterLlmCost {
            cluster,
            calls: 0,
            observed_usd: 0.0,
            monthly_usd: 0.0,
        });
        c.calls += calls;
        c.observed_usd += cost;
    }
    let mut assumptions = vec![
        format!(
            "LLM cost scaled from the log's span of {:.2} hours to a month of {} hours (x{:.3}): traffic is assumed to go on at the observed rate",
            span_seconds / 3600.0,
            cfg.overhead.hours_per_month,
            month_factor
        ),
        "LLM prices are list prices per million tokens from the hardware config (standard tier, no batch, cache or negotiated discounts)".into(),
    ];
    if span_seconds < 24.0 * 3600.0 {
        assumptions.push("the log spans less than a day: the monthly figures extrapolate little traffic and are rough".into());
    }
    for m in models.values_mut() {
        m.monthly_usd = m.observed_usd * month_factor;
        if m.price.default_used {
            assumptions.push(format!(
                "model `{}` has no price entry: priced at the default ({} / {} USD per million input / output tokens)",
                m.model, m.price.input_per_mtok, m.price.output_per_mtok
            ));
        }
    }
    for c in clusters.values_mut() {
        c.monthly_usd = c.observed_usd * month_factor;
    }
    let observed_usd: f64 = models.values().map(|m| m.observed_usd).sum();
    Ok(LlmCost {
        span_seconds,
        month_factor,
        observed_usd,
        monthly_usd: observed_usd * month_factor,
        models: models.into_values().collect(),
        clusters: clusters.into_values().collect(),
        assumptions,
    })
}

/// A device billed in the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceCost {
    /// [`Device::id`].
    pub device: String,
    /// USD per hour (a CPU: all its cores).
    pub hourly_usd: f64,
    /// hourly × hours per month.
    pub monthly_usd: f64,
}

/// One cluster's monthly LLM cost against its share of the hardware.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterSavings {
    /// Cluster id.
    pub cluster: i32,
    /// Its base model, when the plan has it (placed or not).
    pub base_model: Option<String>,
    /// Served by a small model in the plan (else it stays on the LLM).
    pub placed: bool,
    /// Its LLM calls' monthly cost, USD.
    pub llm_monthly_usd: f64,
    /// Its share of the hardware's monthly cost, USD (0 when not placed).
    pub hardware_monthly_usd: f64,
    /// llm − hardware when placed, else 0.
    pub savings_monthly_usd: f64,
}

/// The plan's monthly cost against the LLM's, overall and per cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostSummary {
    /// The LLM's cost of all the calls.
    pub llm: LlmCost,
    /// Devices billed (those holding a deployment), in spec order.
    pub hardware: Vec<DeviceCost>,
    /// Sum of the billed devices' monthly cost, USD.
    pub hardware_monthly_usd: f64,
    /// Monthly LLM cost of every call in the usage, USD.
    pub llm_monthly_usd: f64,
    /// Monthly LLM cost of the placed clusters (what the plan replaces).
    pub llm_monthly_usd_replaced: f64,
    /// Monthly LLM cost of everything else (stays on the LLM).
    pub llm_monthly_usd_remaining: f64,
    /// replaced − hardware: the monthly saving of the plan, USD.
    pub savings_monthly_usd: f64,
    /// Per cluster (planned or in the usage), sorted by id.
    pub clusters: Vec<ClusterSavings>,
    /// What every figure assumes.
    pub assumptions: Vec<String>,
}

/// The plan's monthly hardware cost next to the LLM's ([`llm_cost`] of
/// `usage_rows` over `span_seconds`). Whole devices are billed: every
/// device holding a deployment costs hourly × hours_per_month however
/// little of it is used; idle devices cost nothing. A placed cluster's
/// share of a device's cost is its share of the memory used there: its KV
/// cache and adapter plus an equal part of the base weights and runtime
/// overhead of its deployment. Its saving is its monthly LLM cost minus
/// that share; unplaced clusters stay on the LLM and save nothing.
pub fn cost_summary(
    plan: &ServingPlan,
    usage_rows: &[LlmUsage],
    span_seconds: f64,
    cfg: &HardwareConfig,
) -> Result<CostSummary> {
    let llm = llm_cost(usage_rows, span_seconds, cfg)?;
    let hours = cfg.overhead.hours_per_month;
    let mut hardware = Vec::new();
    let mut device_monthly: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    for d in plan.devices.iter().filter(|d| d.in_use) {
        let monthly = d.device.hourly_usd * hours;
        device_monthly.insert(d.device.id.as_str(), (monthly, d.memory_used_bytes));
        hardware.push(DeviceCost {
            device: d.device.id.clone(),
            hourly_usd: d.device.hourly_usd,
            monthly_usd: monthly,
        });
    }
    let hardware_monthly_usd: f64 = hardware.iter().map(|h| h.monthly_usd).sum();
    let mut rows: BTreeMap<i32, ClusterSavings> = BTreeMap::new();
    let blank = |cluster: i32, base: Option<String>| ClusterSavings {
        cluster,
        base_model: base,
        placed: false,
        llm_monthly_usd: 0.0,
        hardware_monthly_usd: 0.0,
        savings_monthly_usd: 0.0,
    };
    for dep in &plan.deployments {
        let (monthly, used) = device_monthly
            .get(dep.device.as_str())
            .copied()
            .unwrap_or((0.0, 0));
        let shared = (dep.memory.weights_bytes + dep.memory.runtime_overhead_bytes) as f64
            / dep.memory.clusters.len().max(1) as f64;
        for cm in &dep.memory.clusters {
            let share = (cm.kv_cache_bytes + cm.adapter_bytes) as f64 + shared;
            let row = rows
                .entry(cm.cluster)
                .or_insert_with(|| blank(cm.cluster, Some(dep.base_model.clone())));
            row.placed = true;
            row.hardware_monthly_usd += monthly * share / used.max(1) as f64;
        }
    }
    for u in &plan.unplaced {
        rows.entry(u.cluster)
            .or_insert_with(|| blank(u.cluster, Some(u.base_model.clone())));
    }
    for c in &llm.clusters {
        rows.entry(c.cluster)
            .or_insert_with(|| blank(c.cluster, None))
            .llm_monthly_usd = c.monthly_usd;
    }
    let mut replaced = 0.0;
    for r in rows.values_mut().filter(|r| r.placed) {
        r.savings_monthly_usd = r.llm_monthly_usd - r.hardware_monthly_usd;
        replaced += r.llm_monthly_usd;
    }
    let assumptions = cost_assumptions(&llm, plan, hours);
    Ok(CostSummary {
        hardware,
        hardware_monthly_usd,
        llm_monthly_usd: llm.monthly_usd,
        llm_monthly_usd_replaced: replaced,
        llm_monthly_usd_remaining: llm.monthly_usd - replaced,
        savings_monthly_usd: replaced - hardware_monthly_usd,
        clusters: rows.into_values().collect(),
        llm,
        assumptions,
    })
}

fn cost_assumptions(llm: &LlmCost, plan: &ServingPlan, hours: f64) -> Vec<String> {
    let mut a = llm.assumptions.clone();
    a.push(format!(
        "hardware is billed as whole devices: every device holding a deployment costs its on-demand hourly price x {hours} hours a month, however little of it is used; idle devices are not billed"
    ));
    a.push("device prices are on-demand list prices from the hardware config (no reserved, committed-use or spot discounts)".into());
    a.push("a cluster's share of a device's cost is its share of the memory used there: its KV cache and adapter plus an equal part of its deployment's base weights and runtime overhead".into());
    a.push("savings count LLM spend against hardware only: no engineering, monitoring or retraining cost, and no quality difference".into());
    if !plan.unplaced.is_empty() {
        a.push(format!(
            "{} cluster(s) found no device and stay on the LLM (llm_monthly_usd_remaining)",
            plan.unplaced.len()
        ));
    }
    a
}
