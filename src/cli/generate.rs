//! `slmforge generate`: try a model, optionally with a tuned adapter, by hand.
//! With an adapter directory, the request is put in the cluster's usual
//! context (its `prompt.json`) unless `--system` or `--no-cluster-prompt`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use crate::artifact::adapter::{read_prompt, PROMPT_FILE};
use crate::call::{Message, Role, ToolDef};
use crate::ml::lm::guide::{AnswerShape, Constraint, ToolChoice};
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
    /// Schema-guided decoding: with an adapter directory, the answer follows
    /// the cluster's shape (tool calls under the offered tools' schemas,
    /// text only where the cluster also answers in text; JSON under the
    /// schema inferred from its training answers).
    #[arg(long)]
    pub guided: bool,
    /// Guide the answer to this JSON Schema (a file); implies --guided.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// With --guided and tools: `auto` (text or calls, as the cluster
    /// answers), `required` (at least one call), `none`, or a function name.
    #[arg(long)]
    pub tool_choice: Option<String>,
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
    }
    lm.model.make_inference()?;
    let load_secs = t0.elapsed().as_secs_f64();
    let mut messages = Vec::new();
    let mut tools = Vec::new();
    let cluster_prompt = args
        .adapter
        .as_ref()
        .map(|a| a.join(PROMPT_FILE))
        .filter(|p| args.system.is_none() && !args.no_cluster_prompt && p.is_file());
    let mut system = args.system.clone();
    let mut shape = None;
    if let Some(p) = cluster_prompt {
        let cp = read_prompt(&p)?;
        shape = cp.answers.clone();
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
    let constraint = guided_constraint(&args, shape.as_ref(), &tools)?;
    let (rows, fallbacks) = lm.row_guides(std::slice::from_ref(&constraint))?;
    if let Some((_, why)) = fallbacks.first() {
        eprintln!(
            "slmforge: the schema is not supported by guided decoding ({why}); decoding free"
        );
    }
    let out = lm.generate_guided(&[prompt], rows, &opts)?;
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
            "guided": constraint.is_some() && fallbacks.is_empty(),
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

/// The constraint `generate` decodes under (`None`: free).
fn guided_constraint(
    args: &GenerateArgs,
    shape: Option<&AnswerShape>,
    tools: &[ToolDef],
) -> Result<Option<Constraint>> {
    if let Some(path) = &args.schema {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("--schema {}: {e}", path.display())))?;
        let schema: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| usage(format!("--schema {}: not JSON: {e}", path.display())))?;
        return Ok(Some(Constraint::Json {
            schema,
            compact: true,
        }));
    }
    if !args.guided {
        if args.tool_choice.is_some() {
            return Err(usage("--tool-choice needs --guided"));
        }
        return Ok(None);
    }
    let pairs = crate::ml::lm::guide::tool_pairs(tools);
    let tool_choice = match args.tool_choice.as_deref() {
        None => None,
        Some("auto") => Some(ToolChoice::Auto),
        Some("required") => Some(ToolChoice::Required),
        Some("none") => Some(ToolChoice::None),
        Some(name) if pairs.iter().any(|p| p.0 == name) => {
            Some(ToolChoice::Function(name.to_string()))
        }
        Some(other) => {
            return Err(usage(format!(
                "--tool-choice {other}: not auto, required, none or an offered tool ({})",
                pairs
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    if tool_choice.is_some() && pairs.is_empty() {
        return Err(usage(
            "--tool-choice needs tools (an adapter directory whose prompt.json offers some)",
        ));
    }
    let demands = crate::call::Demands {
        tool_choice: tool_choice.clone(),
        ..Default::default()
    };
    let c = match shape {
        Some(s) => s.constraint(&pairs, &demands),
        None if !pairs.is_empty() && tool_choice != Some(ToolChoice::None) => {
            Some(Constraint::Tools {
                tools: pairs,
                choice: tool_choice.unwrap_or(ToolChoice::Auto),
                text: true,
                max_calls: None,
            })
        }
        None => None,
    };
    if c.is_none() {
        eprintln!("slmforge: --guided: no tools and no JSON schema to follow; decoding free");
    }
    Ok(c)
}
