//! Conversations to model text and back: the model's own Jinja chat template
//! (via minijinja), the tool-call convention, the reply parser, and the
//! encoding of training examples.
//!
//! # Tool convention (templates without tool support, e.g. SmolLM2)
//!
//! * Tool schemas go at the end of the system turn (a system turn is created
//!   when there is none), one compact JSON object per line inside
//!   `<tools></tools>`, preceded and followed by short instructions
//!   (the Hermes/Qwen wording, see [`tools_system_block`]).
//! * An assistant tool call is written in the assistant text as
//!   `<tool_call>{"name":"f","arguments":{...}}</tool_call>` (compact JSON),
//!   one per call, separated by newlines, after the text content if any.
//! * A tool result becomes a `user` turn whose content is
//!   `<tool_response>\n{result}\n</tool_response>`; consecutive tool results
//!   are merged into one user turn, one block per result.
//!
//! When the template source mentions `tools`, the template is trusted to
//! handle tools: `tools`, assistant `tool_calls` and `tool` messages are
//! passed through in the Hugging Face shape instead. The answer to train on
//! always uses the `<tool_call>` convention above, which [`parse_reply`] reads.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::quantized::gguf_file::Value as GgufValue;
use minijinja::value::Kwargs;
use minijinja::{Environment, ErrorKind, Value};
use serde_json::{json, Value as Json};

use super::gguf::md_str;
use super::tokenizer::LmTokenizer;
use crate::call::{Message, Response, Role, ToolCall, ToolDef};

/// ChatML, used when the GGUF has no `tokenizer.chat_template`.
pub const DEFAULT_CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Gemma's turn format, for Gemma GGUFs that carry no template (the base
/// models): `<start_of_turn>user … <end_of_turn>`, the assistant as
/// `model`, a system message put before the first user turn (Gemma has no
/// system role), and `<bos>` first. Tools follow our convention (a system
/// block, `<tool_call>` replies), as for any template without tool support.
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% if messages and messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\n\n' %}{% set msgs = messages[1:] %}{% else %}{% set prefix = '' %}{% set msgs = messages %}{% endif %}{% if not msgs and prefix %}{{ '<start_of_turn>user\n' + prefix + '<end_of_turn>\n' }}{% endif %}{% for message in msgs %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + message['content'] + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// End-of-turn tokens recognised in templates, most specific first.
const EOT_CANDIDATES: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
];

/// The model's chat template, compiled once.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    eot_token: String,
    eot_id: u32,
    supports_tools: bool,
}

/// A training example: token ids, which of them are answer tokens (the loss
/// is taken on those), and whether the context was cut to fit.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainExample {
    pub ids: Vec<u32>,
    /// True on the answer tokens, including the closing end-of-turn token.
    pub answer_mask: Vec<bool>,
    /// True when earlier turns were dropped from the middle of the conversation.
    pub truncated: bool,
}

impl TrainExample {
    pub fn answer_len(&self) -> usize {
        self.answer_mask.iter().filter(|&&m| m).count()
    }
}

impl ChatTemplate {
    /// The template stored in the GGUF; when there is none, the family's
    /// turn format ([`GEMMA_TEMPLATE`] for Gemma, ChatML for the others).
    pub fn from_gguf(md: &HashMap<String, GgufValue>, tok: &LmTokenizer) -> Result<ChatTemplate> {
        let fallback = match md_str(md, "general.architecture") {
            Ok(a) if a.starts_with("gemma") => GEMMA_TEMPLATE,
            _ => DEFAULT_CHATML_TEMPLATE,
        };
        let source = md_str(md, "tokenizer.chat_template").unwrap_or(fallback);
        ChatTemplate::new(source, tok)
    }

    pub fn new(source: &str, tok: &LmTokenizer) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // Hugging Face renders with trim_blocks and lstrip_blocks.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("template raised: {msg}"),
                ))
            },
        );
        env.add_function("strftime_now", |fmt: String| {
            chrono::Local::now().format(&fmt).to_string()
        });
        env.add_filter("tojson", py_tojson);
        env.add_template_owned("chat", source.to_string())
            .context("compiling the chat template")?;
        let tok_text = |id: Option<u32>| id.and_then(|i| tok.token(i)).unwrap_or("").to_string();
        let (eot_token, eot_id) = EOT_CANDIDATES
            .iter()
            .find_map(|c| {
                tok.token_id(c)
                    .filter(|_| source.contains(c))
                    .map(|id| (c.to_string(), id))
            })
            .unwrap_or_else(|| (tok_text(Some(tok.eos_id())), tok.eos_id()));
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: tok_text(tok.bos_id()),
            eos_token: tok_text(Some(tok.eos_id())),
            eot_token,
            eot_id,
            supports_tools: source.contains("tools"),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template handles `tools` itself.
    pub fn supports_tools(&self) -> bool {
        self.supports_tools
    }

    /// The token that closes an assistant turn (`<|im_end|>` for ChatML).
    pub fn eot_token(&self) -> &str {
        &self.eot_token
    }

    pub fn eot_id(&self) -> u32 {
        self.eot_id
    }

    /// Renders a conversation. With `add_generation_prompt` the text ends
    /// where the assistant's answer starts.
    pub fn render(
        &self,
        messages: &[Message],
        tools: &[ToolDef],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let (msgs, tools_ctx) = if self.supports_tools {
            (
                messages.iter().map(hf_message).collect::<Vec<_>>(),
                tools.iter().map(tool_schema).collect::<Vec<_>>(),
            )
        } else {
            (convention_messages(messages, tools), Vec::new())
        };
        let tmpl = self.env.get_template("chat")?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(&msgs),
            tools => if tools_ctx.is_empty() { Value::from(()) } else { Value::from_serialize(&tools_ctx) },
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        tmpl.render(ctx)
            .map_err(|e| anyhow::anyhow!("rendering the chat template: {e:#}"))
    }

    /// Renders an OpenAI-shaped request (`messages` and `tools` as a client
    /// sends them, `tools` null when there are none) with this template, as
    /// a serving engine would; see [`super::template::serving_template`].
    pub fn render_openai(
        &self,
        messages: &Json,
        tools: &Json,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tmpl = self.env.get_template("chat")?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            tools => Value::from_serialize(tools),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        tmpl.render(ctx)
            .map_err(|e| anyhow::anyhow!("rendering the chat template: {e:#}"))
    }

    /// The assistant text of an answer under the tool convention (without
    /// the end-of-turn token).
    pub fn render_answer(&self, answer: &Response) -> String {
        assistant_text(answer.content.as_deref(), &answer.tool_calls)
    }
}

/// Python-`json.dumps`-style `tojson` (", " and ": " separators, non-ASCII
/// kept, optional `indent`), as Hugging Face's template environment has.
fn py_tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    // Other Python kwargs (ensure_ascii, separators, sort_keys) are accepted and ignored.
    for k in ["ensure_ascii", "separators", "sort_keys"] {
        let _: Option<Value> = kwargs.get(k)?;
    }
    kwargs.assert_all_used()?;
    let json: Json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    py_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn py_json(v: &Json, indent: Option<usize>, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        Json::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                py_json(x, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        Json::Object(o) if !o.is_empty() => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                py_json(x, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// OpenAI-style tool schema object.
fn tool_schema(t: &ToolDef) -> Json {
    let mut f = serde_json::Map::new();
    f.insert("name".into(), Json::String(t.name.clone()));
    if let Some(d) = &t.description {
        f.insert("description".into(), Json::String(d.clone()));
    }
    let params = if t.parameters.is_null() {
        json!({"type": "object", "properties": {}})
    } else {
        t.parameters.clone()
    };
    f.insert("parameters".into(), params);
    json!({"type": "function", "function": Json::Object(f)})
}

/// The system-turn block listing the tools.
pub fn tools_system_block(tools: &[ToolDef]) -> String {
    let lines: Vec<String> = tools.iter().map(|t| tool_schema(t).to_string()).collect();
    format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{}\n</tools>\n\n\
         For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n\
         <tool_call>{{\"name\": <function-name>, \"arguments\": <args-json-object>}}</tool_call>",
        lines.join("\n")
    )
}

/// One `<tool_call>...</tool_call>` element.
pub fn tool_call_text(tc: &ToolCall) -> String {
    let obj = json!({"name": tc.name, "arguments": tc.arguments});
    format!("<tool_call>{obj}</tool_call>")
}

fn assistant_text(content: Option<&str>, calls: &[ToolCall]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(c) = content.filter(|c| !c.is_empty()) {
        parts.push(c.to_string());
    }
    parts.extend(calls.iter().map(tool_call_text));
    parts.join("\n")
}

fn tool_response_block(m: &Message) -> String {
    format!(
        "<tool_response>\n{}\n</tool_response>",
        m.content.as_deref().unwrap_or("")
    )
}

/// Messages under the tool convention, as `{role, content}` objects.
fn convention_messages(messages: &[Message], tools: &[ToolDef]) -> Vec<Json> {
    let mut out: Vec<(String, String)> = Vec::new();
    for m in messages {
        match m.role {
            Role::Tool => {
                let block = tool_response_block(m);
                match out.last_mut() {
                    Some((role, content))
                        if role == "user" && content.starts_with("<tool_response>") =>
                    {
                        content.push('\n');
                        content.push_str(&block);
                    }
                    _ => out.push(("user".into(), block)),
                }
            }
            Role::Assistant => out.push((
                "assistant".into(),
                assistant_text(m.content.as_deref(), &m.tool_calls),
            )),
            r => out.push((r.as_str().into(), m.content.clone().unwrap_or_default())),
        }
    }
    if !tools.is_empty() {
        let block = tools_system_block(tools);
        match out.iter_mut().find(|(r, _)| r == "system") {
            Some((_, c)) if !c.is_empty() => *c = format!("{c}\n\n{block}"),
            Some((_, c)) => *c = block,
            None => out.insert(0, ("system".into(), block)),
        }
    }
    out.into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

/// A message in the Hugging Face shape for templates that handle tools.
fn hf_message(m: &Message) -> Json {
    let mut o = serde_json::Map::new();
    o.insert("role".into(), Json::String(m.role.as_str().into()));
    o.insert(
        "content".into(),
        Json::String(m.content.clone().unwrap_or_default()),
    );
    if !m.tool_calls.is_empty() {
        let calls: Vec<Json> = m
            .tool_calls
            .iter()
            .map(|tc| {
                let mut c = json!({"type": "function", "function": {"name": tc.name, "arguments": tc.arguments}});
                if let Some(id) = &tc.id {
                    c["id"] = Json::String(id.clone());
                }
                c
            })
            .collect();
        o.insert("tool_calls".into(), Json::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        o.insert("tool_call_id".into(), Json::String(id.clone()));
    }
    if let Some(n) = &m.name {
        o.insert("name".into(), Json::String(n.clone()));
    }
    Json::Object(o)
}

// ---------------------------------------------------------------------------
// Parsing generated text.

/// What is wrong with one `<tool_call>` element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolCallIssueKind {
    /// `<tool_call>` without `</tool_call>` (the call is still parsed if its JSON is complete).
    Unterminated,
    /// The element is not valid JSON.
    InvalidJson,
    /// Valid JSON but not an object.
    NotAnObject,
    /// No non-empty string `name`.
    MissingName,
    /// `arguments` present but neither an object nor a string holding one.
    ArgumentsNotObject,
}

/// A problem found while parsing; `index` is the 0-based `<tool_call>` element.
/// No text from the reply is kept here (it may hold sensitive data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCallIssue {
    pub index: usize,
    pub kind: ToolCallIssueKind,
}

/// A reply split into text content and structured tool calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedReply {
    /// Text outside the tool-call elements, trimmed; `None` when empty.
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub issues: Vec<ToolCallIssue>,
}

impl ParsedReply {
    pub fn into_response(self, finish_reason: Option<String>) -> Response {
        Response {
            content: self.content,
            tool_calls: self.tool_calls,
            finish_reason,
        }
    }
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// Parses generated assistant text. Never fails: malformed calls are
/// reported in `issues` (and, when a name can still be read, kept as a call
/// with `arguments_valid = false` and the raw element as a string).
pub fn parse_reply(text: &str) -> ParsedReply {
    let mut content = String::new();
    let mut out = ParsedReply::default();
    let mut rest = text;
    let mut index = 0;
    while let Some(start) = rest.find(OPEN) {
        content.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let (body, next, terminated) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..], true),
            None => (after, "", false),
        };
        if !terminated {
            out.issues.push(ToolCallIssue {
                index,
                kind: ToolCallIssueKind::Unterminated,
            });
        }
        parse_call(body.trim(), index, &mut out);
        index += 1;
        rest = next;
    }
    content.push_str(rest);
    let c = content.trim();
    out.content = (!c.is_empty()).then(|| c.to_string());
    out
}

fn parse_call(body: &str, index: usize, out: &mut ParsedReply) {
    let issue = |kind| ToolCallIssue { index, kind };
    match serde_json::from_str::<Json>(body) {
        Ok(Json::Object(mut o)) => {
            let name = match o.get("name").and_then(Json::as_str).map(str::trim) {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => {
                    out.issues.push(issue(ToolCallIssueKind::MissingName));
                    return;
                }
            };
            let args = o.remove("arguments").or_else(|| o.remove("parameters"));
            let (arguments, valid) = match args {
                None | Some(Json::Null) => (json!({}), true),
                Some(Json::Object(a)) => (Json::Object(a), true),
                Some(Json::String(s)) => match serde_json::from_str::<Json>(&s) {
                    Ok(Json::Object(a)) => (Json::Object(a), true),
                    _ => (Json::String(s), false),
                },
                Some(other) => (other, false),
            };
            if !valid {
                out.issues
                    .push(issue(ToolCallIssueKind::ArgumentsNotObject));
            }
            let id = o.get("id").and_then(Json::as_str).map(str::to_string);
            out.tool_calls.push(ToolCall {
                id,
                name,
                arguments,
                arguments_valid: valid,
            });
        }
        Ok(_) => out.issues.push(issue(ToolCallIssueKind::NotAnObject)),
        Err(_) => {
            out.issues.push(issue(ToolCallIssueKind::InvalidJson));
            if let Some(name) = salvage_name(body) {
                out.tool_calls.push(ToolCall {
                    id: None,
                    name,
                    arguments: Json::String(body.to_string()),
                    arguments_valid: false,
                });
            }
        }
    }
}

/// The `"name": "..."` of a broken JSON call, if it can be read.
fn salvage_name(body: &str) -> Option<String> {
    let re = regex::Regex::new(r#""name"\s*:\s*"([^"\\]+)""#).ok()?;
    re.captures(body)
        .map(|c| c[1].trim().to_string())
        .filter(|n| !n.is_empty())
}

// ---------------------------------------------------------------------------
// Training examples.

/// Token ids of the generation prompt for a conversation: exactly what
/// [`encode_for_training`] puts before the answer.
pub fn prompt_ids(
    tok: &LmTokenizer,
    tmpl: &ChatTemplate,
    messages: &[Message],
    tools: &[ToolDef],
) -> Result<Vec<u32>> {
    let text = tmpl.render(messages, tools, true)?;
    tok.encode(&text)
}

/// Why a call cannot become a training example.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the answer has {answer} tokens, more than max_len {max_len} allows with any context")]
    AnswerTooLong { answer: usize, max_len: usize },
    #[error("the system prompt, tools and last user turn ({prompt} tokens) and the answer ({answer}) do not fit max_len {max_len} even without earlier turns")]
    DoesNotFit {
        prompt: usize,
        answer: usize,
        max_len: usize,
    },
}

/// The message to drop next when a prompt is too long: the oldest one
/// between the system prompt(s) and the last user turn (never a system
/// message, never the last user turn or what follows it).
fn oldest_droppable(messages: &[Message]) -> Option<usize> {
    let last_user = messages.iter().rposition(|m| m.role == Role::User)?;
    (0..last_user).find(|&i| messages[i].role != Role::System)
}

/// Encodes `messages` (+ `tools`) and the `answer` for training: the prompt
/// ids (as for generation), then the answer text's ids and the end-of-turn
/// token, marked in `answer_mask`. When longer than `max_len`, whole turns
/// are dropped from the middle of the conversation, oldest first (an
/// assistant turn with the tool results that follow it), and `truncated`
/// is set; the system prompt, the tool definitions, the last user turn and
/// what follows it are never cut. [`EncodeError`] when it cannot fit.
pub fn encode_for_training(
    tok: &LmTokenizer,
    tmpl: &ChatTemplate,
    messages: &[Message],
    tools: &[ToolDef],
    answer: &Response,
    max_len: usize,
) -> Result<TrainExample> {
    let mut ans = tok.encode(&tmpl.render_answer(answer))?;
    ans.push(tmpl.eot_id());
    if ans.len() >= max_len {
        return Err(EncodeError::AnswerTooLong {
            answer: ans.len(),
            max_len,
        }
        .into());
    }
    let mut msgs = messages.to_vec();
    let mut truncated = false;
    let prompt = loop {
        let prompt = prompt_ids(tok, tmpl, &msgs, tools)?;
        if prompt.len() + ans.len() <= max_len {
            break prompt;
        }
        let Some(i) = oldest_droppable(&msgs) else {
            return Err(EncodeError::DoesNotFit {
                prompt: prompt.len(),
                answer: ans.len(),
                max_len,
            }
            .into());
        };
        msgs.remove(i);
        // Tool results lose their meaning without the call before them.
        while i < msgs.len() && msgs[i].role == Role::Tool && oldest_droppable(&msgs) == Some(i) {
            msgs.remove(i);
        }
        truncated = true;
    };
    let mut ids = prompt;
    let mut answer_mask = vec![false; ids.len()];
    answer_mask.extend(std::iter::repeat_n(true, ans.len()));
    ids.extend(ans);
    Ok(TrainExample {
        ids,
        answer_mask,
        truncated,
    })
}
