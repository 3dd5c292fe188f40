//! Tests of the serving chat template (src/ml/lm/template.rs): rendered from
//! raw OpenAI requests, it gives byte for byte the text training renders for
//! the same requests read by ingest.

use std::path::Path;

use serde_json::{json, Value as Json};
use slmforge::call::{Message, ToolDef};
use slmforge::ingest::formats::openai;
use slmforge::ml::lm::chat::tools_system_block;
use slmforge::ml::lm::gguf::GgufFile;
use slmforge::ml::lm::template::serving_template;
use slmforge::ml::lm::{ChatTemplate, LmTokenizer};

use crate::common;

/// SmolLM2-135M-Instruct's `tokenizer.chat_template` (checked against the
/// real file by `the_smollm2_template_constant_is_the_real_one`).
const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const REAL_MODEL: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The ChatML tokenizer of the tiny test GGUF.
fn tokenizer(dir: &Path) -> LmTokenizer {
    let path = dir.join("tok.gguf");
    common::tiny_gguf(
        &path,
        &common::TinyGguf {
            seed: 1,
            merges: &[],
            tied: true,
            template: Some(SMOLLM2_TEMPLATE.into()),
            pre: "smollm",
            arch: "llama",
            context_length: 64,
            add_bos: Some(false),
            sliding_window: 512,
        },
    );
    LmTokenizer::from_gguf(GgufFile::open(&path).unwrap().metadata()).unwrap()
}

/// The base (training) template and the serving template built from it.
struct Pair {
    base: ChatTemplate,
    serving: ChatTemplate,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let base = ChatTemplate::new(SMOLLM2_TEMPLATE, &tok).unwrap();
    assert!(!base.supports_tools());
    let serving = ChatTemplate::new(
        &serving_template(SMOLLM2_TEMPLATE, base.supports_tools()),
        &tok,
    )
    .unwrap();
    Pair { base, serving }
}

/// What ingest reads from a request: the canonical messages and tools.
fn ingest(req: &Json) -> (Vec<Message>, Vec<ToolDef>) {
    let msgs = openai::messages(req.get("messages"), "messages").unwrap();
    let tools = openai::tools(req, "").unwrap();
    (msgs, tools)
}

/// Renders `req_text` (an OpenAI chat request) with the serving template and
/// checks that it equals the training render of what ingest reads from it,
/// with and without the generation prompt. Returns the render with it.
fn same(p: &Pair, req_text: &str) -> String {
    let req: Json = serde_json::from_str(req_text).unwrap();
    let (msgs, tools) = ingest(&req);
    let no_tools = Json::Null;
    let req_tools = req.get("tools").unwrap_or(&no_tools);
    for agp in [true, false] {
        let want = p.base.render(&msgs, &tools, agp).unwrap();
        let got = p
            .serving
            .render_openai(&req["messages"], req_tools, agp)
            .unwrap();
        assert_eq!(got, want, "request {req_text}, add_generation_prompt {agp}");
        // The serving template also handles the Hugging Face shape that
        // `render` passes to templates with tools.
        let hf = p.serving.render(&msgs, &tools, agp).unwrap();
        assert_eq!(
            hf, want,
            "HF shape of {req_text}, add_generation_prompt {agp}"
        );
    }
    p.base.render(&msgs, &tools, true).unwrap()
}

/// 1e21 as serde_json writes it (`1e+21` now, `1e21` with older versions).
fn e21() -> String {
    serde_json::to_string(&1e21f64).unwrap()
}

const SYS_WEATHER: &str = "<|im_start|>system\nBe terse.\n\n";
const HEADER: &str = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n";
const FOOTER: &str = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>{\"name\": <function-name>, \"arguments\": <args-json-object>}</tool_call>";

#[test]
fn the_tools_block_wording_is_the_one_tested_here() {
    let t = ToolDef {
        name: "f".into(),
        description: None,
        parameters: Json::Null,
    };
    assert_eq!(
        tools_system_block(&[t]),
        format!("{HEADER}{{\"type\":\"function\",\"function\":{{\"name\":\"f\",\"parameters\":{{\"type\":\"object\",\"properties\":{{}}}}}}}}{FOOTER}")
    );
}

#[test]
fn plain_conversations_render_as_training() {
    let p = pair();
    let r = same(
        &p,
        r#"{"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Hi \"you\"\nthere {{ x }} {% y %}"}]}"#,
    );
    assert_eq!(
        r,
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi \"you\"\nthere {{ x }} {% y %}<|im_end|>\n<|im_start|>assistant\n"
    );
    // No system turn: the base template's default one.
    let r = same(&p, r#"{"messages":[{"role":"user","content":"Hi"}]}"#);
    assert!(r.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
    // Multi-turn text, `developer` as system, null content, tools: null.
    same(
        &p,
        r#"{"messages":[{"role":"developer","content":"Dev rules."},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":null},{"role":"assistant","content":""},{"role":"user","content":"ünïcødé ✓ 🎉 \\ \t tab"}],"tools":null}"#,
    );
    // An empty tools list adds nothing.
    let r = same(
        &p,
        r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"u"}],"tools":[]}"#,
    );
    assert!(!r.contains("<tools>"), "{r}");
}

#[test]
fn content_parts_are_joined_as_ingest_joins_them() {
    let p = pair();
    let r = same(
        &p,
        r#"{"messages":[
            {"role":"system","content":[{"type":"text","text":"Sys one."},{"type":"text","text":"Sys two."}]},
            {"role":"user","content":[{"type":"text","text":"Look:"},{"type":"image_url","image_url":{"url":"data:x"}},"bare string",{"text":"untyped"},{"type":"input_text","text":"in"},{"type":"unknown","text":"skipped"},{"type":"text"},{"type":"text","text":""}]},
            {"role":"assistant","content":[{"type":"output_text","text":"out"},{"type":"refusal","refusal":"no"}]},
            {"role":"user","content":[]},
            {"role":"assistant","content":null,"refusal":"I can't."},
            {"role":"user","content":[{"type":"input_audio"},{"type":"file"}]}
        ]}"#,
    );
    assert!(r.starts_with("<|im_start|>system\nSys one.\nSys two.<|im_end|>\n<|im_start|>user\nLook:\n[image]\nbare string\nuntyped\nin\n<|im_end|>\n<|im_start|>assistant\nout\nno<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\nI can't.<|im_end|>\n<|im_start|>user\n[audio]\n[file]<|im_end|>\n"), "{r}");
}

/// Tools with and without description and parameters, a nested schema with
/// keys out of alphabetical order, odd strings and numbers, extra keys. (The
/// literal `-0` is -0.0 to serde_json on both sides here; Python and
/// nlohmann read it as the integer 0, so a server writes `0` there.)
const TOOLS: &str = r#"[
    {"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City, e.g. \"Paris\"\nor Zürich ✓"},"unit":{"enum":["c","f"],"type":"string","default":"c"}},"required":["city"]}},"strict":true},
    {"type":"function","function":{"name":"ping"}},
    {"type":"function","function":{"name":"no_desc","parameters":{"z":1,"a":{"y":[1.0,1e21,-0,-0.0,1E5,1.5e-7,0.00001,123456789012345678,3.14,true,false,null,"s"],"b":{}},"m":[]}}},
    {"type":"function","function":{"name":"nulls","description":null,"parameters":null}},
    {"type":"function","function":{"name":"as_string","description":"Schema sent as a string.","parameters":"{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}}}"}}
]"#;

#[test]
fn tools_go_in_the_system_turn_as_training() {
    let p = pair();
    let msgs = |m: &str| format!(r#"{{"messages":{m},"tools":{TOOLS}}}"#);
    let r = same(
        &p,
        &msgs(r#"[{"role":"system","content":"Be terse."},{"role":"user","content":"Weather?"}]"#),
    );
    let lines: [&str; 5] = [
        r#"{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string","description":"City, e.g. \"Paris\"\nor Zürich ✓"},"unit":{"enum":["c","f"],"type":"string","default":"c"}},"required":["city"]}}}"#,
        r#"{"type":"function","function":{"name":"ping","parameters":{"type":"object","properties":{}}}}"#,
        &format!(
            r#"{{"type":"function","function":{{"name":"no_desc","parameters":{{"z":1,"a":{{"y":[1.0,{},-0.0,-0.0,100000.0,1.5e-7,0.00001,123456789012345678,3.14,true,false,null,"s"],"b":{{}}}},"m":[]}}}}}}"#,
            e21()
        ),
        r#"{"type":"function","function":{"name":"nulls","parameters":{"type":"object","properties":{}}}}"#,
        r#"{"type":"function","function":{"name":"as_string","description":"Schema sent as a string.","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}"#,
    ];
    assert_eq!(
        r,
        format!(
            "{SYS_WEATHER}{HEADER}{}{FOOTER}<|im_end|>\n<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\n",
            lines.join("\n")
        )
    );
    // No system turn: one is made for the tools (and the default is gone).
    let r = same(&p, &msgs(r#"[{"role":"user","content":"Weather?"}]"#));
    assert!(
        r.starts_with(&format!("<|im_start|>system\n{HEADER}")),
        "{r}"
    );
    // A system turn with empty content holds just the block.
    let r = same(
        &p,
        &msgs(r#"[{"role":"system","content":""},{"role":"user","content":"Weather?"}]"#),
    );
    assert!(
        r.starts_with(&format!("<|im_start|>system\n{HEADER}")),
        "{r}"
    );
    // The first system turn gets it, wherever it is; later ones do not.
    let r = same(
        &p,
        &msgs(
            r#"[{"role":"user","content":"u"},{"role":"developer","content":"First."},{"role":"system","content":"Second."}]"#,
        ),
    );
    assert!(
        r.contains(&format!("<|im_start|>system\nFirst.\n\n{HEADER}")),
        "{r}"
    );
    assert!(r.contains("<|im_start|>system\nSecond.<|im_end|>"), "{r}");
    // No messages at all.
    same(&p, &msgs("[]"));
}

#[test]
fn tool_calls_and_results_render_as_training() {
    let p = pair();
    let req = format!(
        r#"{{"messages":[
            {{"role":"system","content":"Be terse."}},
            {{"role":"user","content":"Weather in Paris and Zürich?"}},
            {{"role":"assistant","content":null,"tool_calls":[
                {{"id":"c1","type":"function","function":{{"name":"get_weather","arguments":{{"city":"Paris","unit":"c"}}}}}},
                {{"id":"c2","type":"function","function":{{"name":"get_weather","arguments":{{"unit":"f","city":"Zürich \"ZH\"\n","n":[1.0,1e21,-0,-0.0,2.5e-8,{{"z":null,"a":true}}]}}}}}}
            ]}},
            {{"role":"tool","tool_call_id":"c1","content":"{{\"temp\": 21}}"}},
            {{"role":"tool","tool_call_id":"c2","name":"get_weather","content":[{{"type":"text","text":"sunny"}},{{"type":"text","text":"windy"}}]}},
            {{"role":"tool","tool_call_id":"c3","content":null}},
            {{"role":"user","content":"Thanks. And Rome?"}},
            {{"role":"assistant","content":"Checking Rome.","tool_calls":[{{"id":"c4","type":"function","function":{{"name":"get_weather","arguments":{{}}}}}}]}},
            {{"role":"tool","tool_call_id":"c4","content":"rain"}},
            {{"role":"assistant","content":"","tool_calls":[{{"type":"function","function":{{"name":"ping","arguments":null}}}},{{"type":"function","function":{{"name":"ping","arguments":""}}}},{{"type":"function","function":{{"name":"ping","arguments":"{{\"a\":1,\"b\":[true]}}"}}}}]}},
            {{"role":"function","name":"ping","content":"pong"}},
            {{"role":"user","content":"<tool_response>\nnot a tool\n</tool_response>"}},
            {{"role":"tool","content":"merged into the user turn above, as training does"}}
        ],"tools":{TOOLS}}}"#
    );
    let r = same(&p, &req);
    let want = [
        "<|im_start|>user\nWeather in Paris and Zürich?<|im_end|>\n",
        "<|im_start|>assistant\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\",\"unit\":\"c\"}}</tool_call>\n",
        &format!("<tool_call>{{\"name\":\"get_weather\",\"arguments\":{{\"unit\":\"f\",\"city\":\"Zürich \\\"ZH\\\"\\n\",\"n\":[1.0,{},-0.0,-0.0,2.5e-8,{{\"z\":null,\"a\":true}}]}}}}</tool_call><|im_end|>\n", e21()),
        "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n<tool_response>\nsunny\nwindy\n</tool_response>\n<tool_response>\n\n</tool_response><|im_end|>\n",
        "<|im_start|>user\nThanks. And Rome?<|im_end|>\n",
        "<|im_start|>assistant\nChecking Rome.\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{}}</tool_call><|im_end|>\n",
        "<|im_start|>user\n<tool_response>\nrain\n</tool_response><|im_end|>\n",
        "<|im_start|>assistant\n<tool_call>{\"name\":\"ping\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"ping\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"ping\",\"arguments\":{\"a\":1,\"b\":[true]}}</tool_call><|im_end|>\n",
        "<|im_start|>user\n<tool_response>\npong\n</tool_response><|im_end|>\n",
        "<|im_start|>user\n<tool_response>\nnot a tool\n</tool_response>\n<tool_response>\nmerged into the user turn above, as training does\n</tool_response><|im_end|>\n",
        "<|im_start|>assistant\n",
    ]
    .concat();
    assert!(r.ends_with(&want), "{r}");
    // A tool result with nothing before it opens a user turn.
    same(
        &p,
        r#"{"messages":[{"role":"tool","content":"early"},{"role":"user","content":"u"}]}"#,
    );
}

#[test]
fn string_arguments_are_passed_through_unchanged() {
    let p = pair();
    let msgs = json!([
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{\"b\": 1, \"a\": 2}"}}
        ]}
    ]);
    let r = p.serving.render_openai(&msgs, &Json::Null, false).unwrap();
    assert!(
        r.contains("<tool_call>{\"name\":\"f\",\"arguments\":{\"b\": 1, \"a\": 2}}</tool_call>"),
        "{r}"
    );
}

#[test]
fn floats_are_spelled_as_serde_json_spells_them() {
    // Python's repr and nlohmann's dump (what Hugging Face and llama.cpp's
    // tojson write) re-spelled by the prelude's float macro.
    let texts = [
        "1e+21",
        "1.5e-07",
        "1e-05",
        "1.234e-05",
        "1e+16",
        "1.5e+16",
        "-2.5e-10",
        "1e+15",
        "1.2345e+15",
        "-1e-05",
        "5e-324",
        "1.7976931348623157e+308",
        "1e+100",
        "0.001",
        "123.0",
        "-0.0",
        "1.0",
        "1e21",
        "1.5e-7",
        "0.00001",
        "0.0001",
    ];
    let base = format!(
        "{{% for s in {} %}}{{{{ slm_float(s) }}}}|{{% endfor %}}",
        serde_json::to_string(&texts).unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let t = ChatTemplate::new(&serving_template(&base, false), &tokenizer(dir.path())).unwrap();
    let got = t.render_openai(&json!([]), &Json::Null, false).unwrap();
    let want: String = texts
        .iter()
        .map(|s| {
            format!(
                "{}|",
                serde_json::to_string(&s.parse::<f64>().unwrap()).unwrap()
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        want.starts_with(&format!("{}|1.5e-7|0.00001|0.00001234|", e21())),
        "{want}"
    );
    assert!(
        want.contains("|-2.5e-10|1000000000000000.0|1234500000000000.0|-0.00001|5e-324|"),
        "{want}"
    );
}

#[test]
fn the_prelude_renders_nothing_and_keeps_the_base_verbatim() {
    let s = serving_template(SMOLLM2_TEMPLATE, false);
    assert!(s.ends_with(SMOLLM2_TEMPLATE));
    assert!(s.starts_with("{#- slmforge serving prelude"));
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer(dir.path());
    let t = ChatTemplate::new(&serving_template("[{{ messages | length }}]", false), &tok).unwrap();
    let msgs = json!([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}, {"role": "tool", "content": "c"}]);
    assert_eq!(t.render_openai(&msgs, &Json::Null, true).unwrap(), "[2]");
    assert_eq!(
        t.render_openai(&json!([]), &Json::Null, true).unwrap(),
        "[0]"
    );
}

#[test]
fn a_template_with_tool_support_comes_back_unchanged() {
    let src = "{%- if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}";
    let dir = tempfile::tempdir().unwrap();
    let t = ChatTemplate::new(src, &tokenizer(dir.path())).unwrap();
    assert!(t.supports_tools());
    assert_eq!(serving_template(src, t.supports_tools()), src);
    assert_ne!(serving_template(src, false), src);
}

#[test]
fn the_smollm2_template_constant_is_the_real_one() {
    let Some(path) = common::real_file(REAL_MODEL, "the_smollm2_template_constant_is_the_real_one")
    else {
        return;
    };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(
        f.string("tokenizer.chat_template").unwrap(),
        SMOLLM2_TEMPLATE
    );
}
