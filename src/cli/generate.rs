//! `slmforge generate`: try a model, optionally with a tuned adapter, by hand.
//! With an adapter directory, the request is put in the cluster's usual
//! context (its `prompt.json`) unless `--system` or `--no-cluster-prompt`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use crate::artifact::adapter::{read_prompt, PROMPT_FILE};
use crate::call::{Message, Role};
use crate::ml::lm::{self, GenerateOptions, SamplingConfig};
use crate::ml::models::resolve_model;
use crate::ml::runtime::{device_from_name, init_runtime};
use crate::util::usage;

/// `slmforge generate`: chat with a model (optionally with an adapter).
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// GGUF file, or a catalogue id such as `smollm2-135m`.
    #[arg(long)]
    pub model: String,
    /// LoRA adapter: a training-layout safetensors file, or a directory with
    /// adapter.safetensors + adapter_config.json.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The user message.
    #[arg(long)]
    pub prompt: String,
    /// System message. With an adapter directory from `slmforge tune` and no
    /// --system, the cluster's usual system prompt and tools
    /// (`prompt.json`) are used, as in training.
    #[arg(long)]
    pub system: Option<String>,
    /// Do not use the adapter directory's `prompt.json`.
    #[arg(long)]
    pub no_cluster_prompt: bool,
    #[arg(long, default_value_t = SamplingConfig::default().max_new_tokens)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = SamplingConfig::default().temperature)]
    pub temperature: f64,
    #[arg(long, default_value_t = SamplingConfig::default().top_p)]
    pub top_p: f64,
    #[arg(long, default_value_t = SamplingConfig::default().seed)]
    pub seed: u64,
    /// No chat template: the prompt is the text, with BOS first when the
    /// GGUF says to add one (what a base model such as Gemma 3 270M needs,
    /// and how greedy output is compared with llama.cpp's).
    #[arg(long, conflicts_with_all = ["system", "adapter"])]
    pub raw: bool,
    /// Print one JSON object (text, parsed reply, counts, timing) instead of the text.
    #[arg(long)]
    pub json: bool,
    /// `cpu` (default) or `cuda` (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    init_runtime();
    let sampling = SamplingConfig {
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
    };
    sampling.validate().map_err(|e| usage(format!("{e}")))?;
    let device = device_from_name(&args.device)?;
    let path = resolve_model(&args.model)?;
    let t0 = Instant::now();
    let mut lm = lm::load(&path, &device)?;
    if let Some(a) = &args.adapter {
        lm.apply_adapter(a)?;
        lm.model = lm.model.merge_lora()?;
    }
    let load_secs = t0.elapsed().as_secs_f64();
    let mut messages = Vec::new();
    let mut tools = Vec::new();
    let cluster_prompt = args
        .adapter
        .as_ref()
        .map(|a| a.join(PROMPT_FILE))
        .filter(|p| args.system.is_none() && !args.no_cluster_prompt && p.is_file());
    let mut system = args.system.clone();
    if let Some(p) = cluster_prompt {
        let cp = read_prompt(&p)?;
        eprintln!(
            "slmforge: using the cluster's system prompt and {} tools from {} (--system or --no-cluster-prompt to change)",
            cp.tools.len(),
            p.display()
        );
        system = cp.system;
        tools = cp.tools;
    }
    if let Some(sys) = &system {
        messages.push(Message::text(Role::System, sys.clone()));
    }
    messages.push(Message::text(Role::User, args.prompt.clone()));
    // An adapter trained on pruned prompts sees them pruned here too.
    let rule = match args.adapter.as_ref().map(|a| a.join(PROMPT_FILE)) {
        Some(p) if p.is_file() => read_prompt(&p)?.prune,
        _ => None,
    };
    if let Some(rule) = &rule {
        let pruned = rule.apply(&messages, &tools);
        if pruned.any() {
            eprintln!(
                "slmforge: the adapter was trained on pruned prompts: {}{} tools replaced by markers",
                if pruned.system { "the system prompt and " } else { "" },
                pruned.tools_pruned
            );
        }
        messages = pruned.messages;
        tools = pruned.tools;
    }
    let prompt = if args.raw {
        lm.raw_prompt_ids(&args.prompt)?
    } else {
        lm.prompt_ids(&messages, &tools)?
    };
    let opts = GenerateOptions {
        sampling,
        batch_size: 1,
        ..Default::default()
    };
    let out = lm.generate(&[prompt], &opts)?;
    let text = &out.texts[0];
    let c = &out.completions[0];
    let st = &out.stats;
    if args.json {
        let parsed = lm::parse_reply(text);
        let resp = parsed
            .clone()
            .into_response(Some(c.finish.as_str().to_string()));
        let obj = serde_json::json!({
            "text": text,
            "response": resp,
            "issues": parsed.issues.iter().map(|i| serde_json::json!({"index": i.index, "kind": format!("{:?}", i.kind)})).collect::<Vec<_>>(),
            "finish_reason": c.finish.as_str(),
            "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.tokens.len(),
            "load_secs": load_secs,
            "prefill_secs": st.prefill_secs,
            "decode_secs": st.decode_secs,
        });
        println!("{}", serde_json::to_string_pretty(&obj)?);
    } else {
        println!("{text}");
    }
    eprintln!(
        "slmforge: {} prompt tokens ({:.0} tok/s), {} generated ({:.1} tok/s), finish={}, load {:.2}s",
        c.prompt_tokens,
        st.prefill_tokens_per_sec(),
        c.tokens.len(),
        st.decode_tokens_per_sec(),
        c.finish.as_str(),
        load_secs
    );
    Ok(())
}
