//! `DEPLOY.md` (how to serve every adapter of an export from one base, with
//! llama-server, vLLM, LoRAX and Ollama, file names filled in) and the
//! per-adapter Ollama `Modelfile`.

use std::fmt::Write;
use std::path::Path;

use crate::artifact::export::{
    ExportedAdapter, Manifest, CHAT_TEMPLATE_FILE, MODELFILE, MODELFILE_ADAPTER,
};
use crate::artifact::routing::ROUTING_FILE;

/// vLLM's default `--max-lora-rank`.
const VLLM_DEFAULT_MAX_RANK: usize = 16;
/// Ranks vLLM accepts for `--max-lora-rank`.
const VLLM_RANKS: [usize; 9] = [1, 8, 16, 32, 64, 128, 256, 320, 512];

fn path_of<'a>(a: &'a ExportedAdapter, format: &str) -> Option<&'a str> {
    a.file(format).map(|f| f.path.as_str())
}

/// The `llama-server` command line serving every GGUF adapter of the export.
pub fn llama_server_command(m: &Manifest) -> Option<String> {
    let loras: Vec<&str> = m
        .adapters
        .iter()
        .filter_map(|a| path_of(a, "gguf"))
        .collect();
    if loras.is_empty() {
        return None;
    }
    let mut cmd = format!(
        "llama-server -m {} --jinja --chat-template-file {CHAT_TEMPLATE_FILE} --lora-init-without-apply",
        m.base_model.path
    );
    for l in loras {
        write!(cmd, " --lora {l}").unwrap();
    }
    Some(cmd)
}

/// The export's `DEPLOY.md`; commands are run from the export directory.
pub fn markdown(m: &Manifest, out: &Path) -> String {
    let mut s = String::new();
    let gguf: Vec<&ExportedAdapter> = m
        .adapters
        .iter()
        .filter(|a| a.file("gguf").is_some())
        .collect();
    let peft: Vec<&ExportedAdapter> = m
        .adapters
        .iter()
        .filter(|a| a.file("peft").is_some())
        .collect();
    writeln!(s, "# Deploying the adapters of {}\n", m.run).unwrap();
    writeln!(
        s,
        "Base model: `{}` ({}, sha256 `{}`), file `{}`. Run the commands below from `{}`.\n",
        m.base_model.id,
        m.base_model.hf_repo,
        m.base_model.sha256,
        m.base_model.path,
        out.display()
    )
    .unwrap();
    writeln!(
        s,
        "| adapter | cluster | labels | rank | tuned exact match (test) | files |"
    )
    .unwrap();
    writeln!(s, "|---|---|---|---|---|---|").unwrap();
    for a in &m.adapters {
        let acc = a
            .eval
            .as_ref()
            .and_then(|e| {
                e.tuned_exact_match.rate.map(|r| {
                    format!(
                        "{:.0}% (base {})",
                        100.0 * r,
                        e.base_exact_match
                            .rate
                            .map(|b| format!("{:.0}%", 100.0 * b))
                            .unwrap_or("-".into())
                    )
                })
            })
            .unwrap_or_else(|| "-".into());
        let files: Vec<String> = a.files.iter().map(|f| format!("`{}`", f.path)).collect();
        writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            a.name,
            a.cluster,
            a.label_terms.join(", "),
            a.rank,
            acc,
            files.join("<br>")
        )
        .unwrap();
    }
    writeln!(
        s,
        "\nWhich requests go to which adapter is decided by `{ROUTING_FILE}` \
         (`slmforge route --table {ROUTING_FILE} REQUESTS...`); requests no route accepts stay on the LLM.\n"
    )
    .unwrap();
    writeln!(
        s,
        "The adapters were trained on prompts in slmforge's format (tool schemas in the system turn, \
         `<tool_call>{{json}}</tool_call>` answers). `{CHAT_TEMPLATE_FILE}` renders exactly that format from \
         an OpenAI chat request: always serve with it, or the model sees prompts it was never trained on.\n"
    )
    .unwrap();
    if let Some(cmd) = llama_server_command(m) {
        writeln!(
            s,
            "## llama.cpp (`llama-server`)\n\n```sh\n{cmd} --port 8080\n```\n"
        )
        .unwrap();
        writeln!(
            s,
            "Pick the adapter per request with its index (`--lora` order):\n"
        )
        .unwrap();
        for (i, a) in gguf.iter().enumerate() {
            writeln!(
                s,
                "* `{}`: `curl localhost:8080/v1/chat/completions -d '{{\"messages\":[...],\"tools\":[...],\"lora\":[{{\"id\":{i},\"scale\":1}}]}}'`",
                a.name
            )
            .unwrap();
        }
        writeln!(
            s,
            "\nRequests with different adapters are not batched together.\n"
        )
        .unwrap();
    }
    if !peft.is_empty() {
        let max_rank = peft.iter().map(|a| a.rank).max().unwrap_or(0);
        let vllm_rank = VLLM_RANKS
            .into_iter()
            .find(|&r| r >= max_rank)
            .unwrap_or(512);
        let modules: Vec<String> = peft
            .iter()
            .filter_map(|a| path_of(a, "peft").map(|p| format!("{}={p}", a.name)))
            .collect();
        writeln!(s, "## vLLM\n\n```sh\nvllm serve {} --enable-lora --max-loras {} --max-lora-rank {vllm_rank} \\\n  --lora-modules {} \\\n  --chat-template {CHAT_TEMPLATE_FILE} --enable-auto-tool-choice --tool-call-parser hermes\n```\n",
            m.base_model.hf_repo, peft.len(), modules.join(" ")).unwrap();
        if max_rank > VLLM_DEFAULT_MAX_RANK {
            writeln!(s, "The rank ({max_rank}) is above vLLM's default `--max-lora-rank` of {VLLM_DEFAULT_MAX_RANK}: keep the flag above, or vLLM refuses to start (\"LoRA rank {max_rank} is greater than max_lora_rank {VLLM_DEFAULT_MAX_RANK}\").\n").unwrap();
        }
        writeln!(
            s,
            "A request names its adapter as the model: `\"model\": \"{}\"`.\n",
            peft[0].name
        )
        .unwrap();
        writeln!(s, "## LoRAX\n\n```sh\nlorax-launcher --model-id {} --adapter-source local\n```\n\nPer request: `\"model\": \"<absolute path of {}>\"` (the PEFT directory). LoRAX pads ranks below 8.\n",
            m.base_model.hf_repo, path_of(peft[0], "peft").unwrap_or("")).unwrap();
    }
    let ollama: Vec<&ExportedAdapter> = m
        .adapters
        .iter()
        .filter(|a| a.file("merged").is_some() || a.file("gguf").is_some())
        .collect();
    if !ollama.is_empty() {
        writeln!(s, "## Ollama\n").unwrap();
        for a in ollama {
            let file = if a.file("merged").is_some() {
                MODELFILE
            } else {
                MODELFILE_ADAPTER
            };
            writeln!(
                s,
                "```sh\nollama create slmforge-{0} -f {0}/{file}\nollama run slmforge-{0}\n```\n",
                a.name
            )
            .unwrap();
        }
        writeln!(s, "`{MODELFILE}` uses the merged model (its GGUF carries `{CHAT_TEMPLATE_FILE}` as `tokenizer.chat_template`); `{MODELFILE_ADAPTER}` is `FROM` the base + `ADAPTER` the GGUF LoRA, for Ollama versions whose LoRA support works with this base. Ollama renders prompts with its own Go template: tool calls follow the adapter's format only when the prompt matches `{CHAT_TEMPLATE_FILE}` (llama-server with `--jinja` is the sure way).\n").unwrap();
    }
    pruning_and_checks(m, &mut s);
    s
}

/// An Ollama `Modelfile` for one adapter (paths relative to its
/// directory): `merged` — the merged model, when exported; else the base
/// (absolute path) with the GGUF adapter, when exported. `None` otherwise.
pub fn modelfile(m: &Manifest, a: &ExportedAdapter, merged: bool) -> Option<String> {
    let rel_in = |p: &str| {
        p.strip_prefix(&format!("{}/", a.name))
            .map(|r| format!("./{r}"))
            .unwrap_or_else(|| format!("../{p}"))
    };
    if merged {
        return path_of(a, "merged")
            .map(|p| format!("FROM {}\nPARAMETER temperature 0\n", rel_in(p)));
    }
    path_of(a, "gguf").map(|p| {
        format!(
            "FROM {}\nADAPTER {}\nPARAMETER temperature 0\n",
            m.base_model.path,
            rel_in(p)
        )
    })
}

/// The "Pruned prompts" and "Checks done at export" sections of `DEPLOY.md`.
fn pruning_and_checks(m: &Manifest, s: &mut String) {
    let pruned: Vec<&ExportedAdapter> = m.adapters.iter().filter(|a| a.prune.is_some()).collect();
    if !pruned.is_empty() {
        writeln!(s, "## Pruned prompts\n").unwrap();
        writeln!(s, "These adapters were trained with their workload's static prompt pieces replaced by short markers; a request must be pruned the same way before it reaches them (the rule is in `manifest.json` and in each route of `{ROUTING_FILE}`, under `prune`): the system prompt whose sha256 is `system_sha256` becomes the `marker` line, and each listed tool whose definition has the listed sha256 is sent as its name only (no description, empty parameters). Requests whose pieces differ are sent unchanged. The chat template cannot compute hashes, so the gateway in front of the server applies the rule.\n").unwrap();
        for a in pruned {
            let r = a.prune.as_ref().unwrap();
            writeln!(
                s,
                "* `{}`: system prompt {}, {} tools ({})",
                a.name,
                if r.system_sha256.is_some() {
                    "pruned"
                } else {
                    "kept"
                },
                r.tools.len(),
                r.tools.keys().cloned().collect::<Vec<_>>().join(", ")
            )
            .unwrap();
        }
        writeln!(s).unwrap();
    }
    writeln!(s, "## Checks done at export\n").unwrap();
    for a in &m.adapters {
        for f in &a.files {
            let v = &f.verification;
            writeln!(
                s,
                "* `{}` {}: {} — {}, same greedy answer on {}/{} prompts, adapter vs base {}{}",
                a.name,
                f.format,
                if v.passed { "passed" } else { "FAILED" },
                v.describe(),
                v.same_greedy,
                v.prompts,
                v.base_change(),
                if f.fallbacks.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} tensors in another type ({})",
                        f.fallbacks.len(),
                        f.fallbacks[0]
                    )
                }
            )
            .unwrap();
        }
    }
}
