//! The chat template to ship for serving: a Jinja prelude that renders an
//! OpenAI chat request exactly as `ChatTemplate::render` does for training.
//!
//! Serving engines (llama-server `--jinja --chat-template-file`, vLLM
//! `--chat-template`, Hugging Face `apply_chat_template`) render OpenAI-shaped
//! requests (`messages`, `tools`, `add_generation_prompt`, `bos_token`,
//! `eos_token`) with a Jinja template. A base template without tool support
//! (SmolLM2's ChatML) would leave the tools to the engine, which then prompts
//! in a format the adapter never saw. [`serving_template`] prefixes such a
//! template with a prelude that applies the tool convention of
//! [`super::chat`] itself and hands the result to the base template as
//! `messages`:
//!
//! * content: a string, null (then a string `refusal`, if any), or a list of
//!   parts joined with `"\n"`, as ingest reads them (text parts, refusals,
//!   `[image]` / `[audio]` / `[file]` markers);
//! * roles: `developer` becomes `system` (also `human` → `user`, `ai`/`model`
//!   → `assistant`, `function`/`ipython` → `tool`), as ingest maps them;
//! * assistant `tool_calls` → `<tool_call>{"name":…,"arguments":…}</tool_call>`
//!   lines after the text. Object arguments (vLLM and Hugging Face parse them)
//!   are written as compact JSON in their key order; **string arguments (the
//!   OpenAI wire form, and what llama-server passes) are written unchanged**, so
//!   they match training only when the client sends compact JSON (as
//!   llama-server itself returns them);
//! * tool results → one `user` turn of `<tool_response>` blocks;
//! * `tools` → the block of [`tools_system_block`] at the end of the first
//!   system turn (or a new first system turn).
//!
//! Floats are re-spelled the way serde_json writes them (`1e+21`, `1.5e-7`,
//! `0.00001`: fixed notation for exponents -5 to 15, no exponent padding),
//! whatever notation the engine's `tojson` uses (Python writes `1.5e-07`,
//! `1e-05`; nlohmann writes `1e+15`). Not read from requests: legacy
//! `function_call`, `custom` tool calls, `input_schema`; a tool `parameters`
//! sent as a JSON string is written unchanged, like string arguments.
//!
//! The prelude renders to no text (every tag trims both sides, which also
//! trims leading whitespace of the base template) and uses only Jinja
//! features that Jinja2 (Hugging Face's sandbox), minijinja and llama.cpp's
//! minja share.

use super::chat::tools_system_block;

/// What a rendered `tools_system_block` holds around the tool lines.
const TOOLS_SLOT: &str = "<tools>\n\n</tools>";

/// The chat template a server should render with: `base_source` itself when
/// it handles tools (`supports_tools`, see
/// [`ChatTemplate::supports_tools`](super::chat::ChatTemplate::supports_tools)),
/// else the tool-convention prelude followed by `base_source` verbatim.
pub fn serving_template(base_source: &str, supports_tools: bool) -> String {
    if supports_tools {
        return base_source.to_string();
    }
    let mut out = prelude();
    out.push_str(base_source);
    out
}

/// The prelude with the tools-block wording taken from [`tools_system_block`].
fn prelude() -> String {
    let empty = tools_system_block(&[]);
    let (head, tail) = empty
        .split_once(TOOLS_SLOT)
        .expect("tools_system_block wraps the tool lines in <tools>\\n...\\n</tools>");
    PRELUDE
        .replace("@TOOLS_HEAD@", &jinja_string(&format!("{head}<tools>\n")))
        .replace("@TOOLS_TAIL@", &jinja_string(&format!("\n</tools>{tail}")))
        .replace("@EXP_PLUS@", &jinja_string(exponent_plus()))
}

/// The sign serde_json writes before a positive exponent (`1e+21` with its
/// current float formatter, `1e21` with the older ryu one).
fn exponent_plus() -> &'static str {
    let text = serde_json::to_string(&1e21f64).unwrap_or_default();
    if text.contains("e+") {
        "+"
    } else {
        ""
    }
}

/// `s` as a single-quoted Jinja string literal.
fn jinja_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The prelude. Every tag trims whitespace on both sides, so it renders to
/// nothing; its top-level names are `slm` and `slm_*`, which base templates
/// do not use. `@TOOLS_HEAD@` / `@TOOLS_TAIL@` are replaced by the text
/// before and after the tool lines of the tools block, `@EXP_PLUS@` by the
/// sign of a positive float exponent.
const PRELUDE: &str = r#"{#- slmforge serving prelude: renders an OpenAI chat request under slmforge's tool convention (tool calls and results as text, tool schemas in the system turn), exactly as the adapter was trained. The model's own template follows it. -#}
{#- A float's JSON text (any engine's tojson) re-spelled as serde_json writes it. -#}
{%- macro slm_float(s) -%}
  {%- if 'e' in s -%}
    {%- set p = s.split('e') -%}
    {%- set neg = p[0][:1] == '-' -%}
    {%- set mant = p[0][1:] if neg else p[0] -%}
    {%- set digits = mant.replace('.', '') -%}
    {%- set n = digits | length -%}
    {%- set kk = (p[1] | int) + 1 -%}
    {{- '-' if neg else '' -}}
    {%- if kk >= n and kk <= 16 -%}
      {{- digits -}}{%- for i in range(kk - n) -%}0{%- endfor -%}{{- '.0' -}}
    {%- elif kk > 0 and kk <= 16 -%}
      {{- digits[:kk] ~ '.' ~ digits[kk:] -}}
    {%- elif kk > -5 and kk <= 0 -%}
      {{- '0.' -}}{%- for i in range(0 - kk) -%}0{%- endfor -%}{{- digits -}}
    {%- else -%}
      {{- digits[:1] ~ ('.' ~ digits[1:] if n > 1 else '') ~ 'e' ~ (@EXP_PLUS@ if kk > 0 else '') ~ (kk - 1) -}}
    {%- endif -%}
  {%- else -%}
    {{- s -}}
  {%- endif -%}
{%- endmacro -%}
{#- Compact JSON (no spaces), object keys in their order. -#}
{%- macro slm_json(v) -%}
  {%- if v is mapping -%}
    {{- '{' -}}
    {%- for k, x in v.items() -%}
      {{- (',' if not loop.first else '') ~ (k | tojson) ~ ':' ~ slm_json(x) -}}
    {%- endfor -%}
    {{- '}' -}}
  {%- elif v is string -%}
    {{- v | tojson -}}
  {%- elif v is sequence -%}
    {{- '[' -}}
    {%- for x in v -%}
      {{- (',' if not loop.first else '') ~ slm_json(x) -}}
    {%- endfor -%}
    {{- ']' -}}
  {%- elif v is float -%}
    {{- slm_float(v | tojson) -}}
  {%- else -%}
    {{- v | tojson -}}
  {%- endif -%}
{%- endmacro -%}
{#- The canonical role of an OpenAI role. -#}
{%- macro slm_role(r) -%}
  {%- if r == 'developer' -%}system
  {%- elif r == 'human' -%}user
  {%- elif r == 'ai' or r == 'model' -%}assistant
  {%- elif r == 'function' or r == 'ipython' -%}tool
  {%- else -%}{{- r -}}
  {%- endif -%}
{%- endmacro -%}
{#- A message's text: string content, else a string refusal, else the parts joined by newlines. -#}
{%- macro slm_content(m) -%}
  {%- set c = m['content'] -%}
  {%- if c is string -%}
    {{- c -}}
  {%- elif c is not defined or c is none -%}
    {%- if m['refusal'] is string -%}{{- m['refusal'] -}}{%- endif -%}
  {%- elif c is sequence -%}
    {%- set ns = namespace(parts=[]) -%}
    {%- for part in c -%}
      {%- if part is string -%}
        {%- set ns.parts = ns.parts + [part] -%}
      {%- elif part is mapping -%}
        {%- set ty = part['type'] if part['type'] is string else 'text' -%}
        {%- if ty == 'text' or ty == 'input_text' or ty == 'output_text' -%}
          {%- if part['text'] is string -%}
            {%- set ns.parts = ns.parts + [part['text']] -%}
          {%- elif part['content'] is string -%}
            {%- set ns.parts = ns.parts + [part['content']] -%}
          {%- endif -%}
        {%- elif ty == 'refusal' -%}
          {%- if part['refusal'] is string -%}{%- set ns.parts = ns.parts + [part['refusal']] -%}{%- endif -%}
        {%- elif ty == 'image_url' or ty == 'image' or ty == 'input_image' -%}
          {%- set ns.parts = ns.parts + ['[image]'] -%}
        {%- elif ty == 'input_audio' or ty == 'audio' -%}
          {%- set ns.parts = ns.parts + ['[audio]'] -%}
        {%- elif ty == 'file' or ty == 'input_file' or ty == 'document' -%}
          {%- set ns.parts = ns.parts + ['[file]'] -%}
        {%- endif -%}
      {%- endif -%}
    {%- endfor -%}
    {{- ns.parts | join('\n') -}}
  {%- endif -%}
{%- endmacro -%}
{#- An assistant turn: its text, then one <tool_call> line per call. String arguments are written as they are. -#}
{%- macro slm_assistant(m) -%}
  {%- set ns = namespace(parts=[]) -%}
  {%- set text = slm_content(m) -%}
  {%- if text -%}{%- set ns.parts = [text] -%}{%- endif -%}
  {%- if m['tool_calls'] -%}
    {%- for tc in m['tool_calls'] -%}
      {%- set f = tc['function'] if tc['function'] is mapping else tc -%}
      {%- set a = f['arguments'] -%}
      {%- if a is string -%}
        {%- set args = a if a | trim else '{}' -%}
      {%- elif a is not defined or a is none -%}
        {%- set args = '{}' -%}
      {%- else -%}
        {%- set args = slm_json(a) -%}
      {%- endif -%}
      {%- set ns.parts = ns.parts + ['<tool_call>{"name":' ~ (f['name'] | tojson) ~ ',"arguments":' ~ args ~ '}</tool_call>'] -%}
    {%- endfor -%}
  {%- endif -%}
  {{- ns.parts | join('\n') -}}
{%- endmacro -%}
{#- The messages under the convention; consecutive tool results share one user turn. -#}
{%- set slm = namespace(msgs=[], has=false, role='', content='', tools='') -%}
{%- for m in messages -%}
  {%- set role = slm_role(m['role']) -%}
  {%- if role == 'tool' and slm.has and slm.role == 'user' and slm.content.startswith('<tool_response>') -%}
    {%- set slm.content = slm.content ~ '\n<tool_response>\n' ~ slm_content(m) ~ '\n</tool_response>' -%}
  {%- else -%}
    {%- if slm.has -%}
      {%- set slm.msgs = slm.msgs + [{'role': slm.role, 'content': slm.content}] -%}
    {%- endif -%}
    {%- set slm.has = true -%}
    {%- if role == 'tool' -%}
      {%- set slm.role = 'user' -%}
      {%- set slm.content = '<tool_response>\n' ~ slm_content(m) ~ '\n</tool_response>' -%}
    {%- elif role == 'assistant' -%}
      {%- set slm.role = 'assistant' -%}
      {%- set slm.content = slm_assistant(m) -%}
    {%- else -%}
      {%- set slm.role = role -%}
      {%- set slm.content = slm_content(m) -%}
    {%- endif -%}
  {%- endif -%}
{%- endfor -%}
{%- if slm.has -%}
  {%- set slm.msgs = slm.msgs + [{'role': slm.role, 'content': slm.content}] -%}
{%- endif -%}
{#- The tools block: one compact JSON schema per line, at the end of the first system turn. -#}
{%- if tools -%}
  {%- for t in tools -%}
    {%- set f = t['function'] if t['function'] is mapping else t -%}
    {%- set params = f['parameters'] -%}
    {%- if params is not defined or params is none -%}
      {%- set params = '{"type":"object","properties":{}}' -%}
    {%- elif params is not string -%}
      {%- set params = slm_json(params) -%}
    {%- endif -%}
    {%- set line = '{"type":"function","function":{"name":' ~ (f['name'] | tojson) ~ ((',"description":' ~ (f['description'] | tojson)) if f['description'] is string else '') ~ ',"parameters":' ~ params ~ '}' ~ '}' -%}
    {%- set slm.tools = (slm.tools ~ '\n' ~ line) if not loop.first else line -%}
  {%- endfor -%}
  {%- set slm_block = @TOOLS_HEAD@ ~ slm.tools ~ @TOOLS_TAIL@ -%}
  {%- set slm_sys = namespace(found=false, msgs=[]) -%}
  {%- for x in slm.msgs -%}
    {%- if x['role'] == 'system' and not slm_sys.found -%}
      {%- set slm_sys.found = true -%}
      {%- set slm_sys.msgs = slm_sys.msgs + [{'role': 'system', 'content': (x['content'] ~ '\n\n' ~ slm_block) if x['content'] else slm_block}] -%}
    {%- else -%}
      {%- set slm_sys.msgs = slm_sys.msgs + [x] -%}
    {%- endif -%}
  {%- endfor -%}
  {%- if not slm_sys.found -%}
    {%- set slm_sys.msgs = [{'role': 'system', 'content': slm_block}] + slm_sys.msgs -%}
  {%- endif -%}
  {%- set slm.msgs = slm_sys.msgs -%}
{%- endif -%}
{%- set messages = slm.msgs -%}
{%- set tools = none -%}
"#;
