//! Schema-guided decoding (src/ml/lm/guide.rs): a random tiny model, guided,
//! only ever produces calls and JSON that follow their schemas; text stays
//! possible where allowed; schemas the grammar compiler refuses fall back.

use candle_core::Device;
use serde_json::{json, Value};
use slmforge::ml::lm::chat::parse_reply;
use slmforge::ml::lm::generate::{GenerateOptions, SamplingConfig, TokenConstraint};
use slmforge::ml::lm::guide::{close_objects, infer_schema, schema_valid, Constraint, ToolChoice};
use slmforge::ml::lm::{self, LanguageModel};

use crate::lm::{tiny_gguf, TinyOpts};

fn tiny(dir: &std::path::Path) -> LanguageModel {
    let p = tiny_gguf(dir, "tiny.gguf", 11, &TinyOpts::default());
    lm::load(&p, &Device::Cpu).unwrap()
}

/// A tool with every kind the issue names: enum, integer, nested object,
/// array, required keys (bounded so a random model finishes in the cap).
fn booking_tool() -> (String, Value) {
    (
        "book_room".into(),
        json!({
            "type": "object",
            "properties": {
                "room": {"type": "string", "enum": ["alpha", "beta", "gamma"]},
                "people": {"type": "integer", "minimum": 1, "maximum": 40},
                "slot": {
                    "type": "object",
                    "properties": {
                        "day": {"type": "string", "maxLength": 6},
                        "hour": {"type": "integer", "minimum": 0, "maximum": 23}
                    },
                    "required": ["day", "hour"]
                },
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 3},
                "note": {"type": "string", "maxLength": 5}
            },
            "required": ["room", "people", "slot"]
        }),
    )
}

fn cancel_tool() -> (String, Value) {
    (
        "cancel".into(),
        json!({"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 999}}, "required": ["id"]}),
    )
}

fn prompts(lm: &LanguageModel, n: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            lm.tokenizer
                .encode(&format!(
                    "<|im_start|>user\nbook {i}<|im_end|>\n<|im_start|>assistant\n"
                ))
                .unwrap()
        })
        .collect()
}

fn sampled(max_new_tokens: usize, batch_size: usize) -> GenerateOptions {
    GenerateOptions {
        sampling: SamplingConfig {
            max_new_tokens,
            temperature: 1.0,
            top_p: 1.0,
            seed: 5,
        },
        batch_size,
        ..Default::default()
    }
}

/// Every call of a reply names an offered tool and its arguments validate
/// against that tool's (closed) schema.
fn calls_valid(text: &str, tools: &[(String, Value)]) -> bool {
    let parsed = parse_reply(text);
    !parsed.tool_calls.is_empty()
        && parsed.issues.is_empty()
        && parsed.tool_calls.iter().all(|c| {
            c.arguments_valid
                && tools.iter().any(|(name, params)| {
                    *name == c.name
                        && schema_valid(&close_objects(params), &c.arguments) == Some(true)
                })
        })
}

#[test]
fn guided_tool_calls_always_follow_the_schema_even_from_a_random_model() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny(dir.path());
    let tools = vec![booking_tool(), cancel_tool()];
    let ps = prompts(&lm, 16);
    let c = Constraint::Tools {
        tools: tools.clone(),
        choice: ToolChoice::Required,
        text: false,
        max_calls: None,
    };
    let (rows, fallbacks) = lm.row_guides(&vec![Some(c); ps.len()]).unwrap();
    assert!(fallbacks.is_empty(), "{fallbacks:?}");
    let opts = sampled(230, 8);
    let out = lm.generate_guided(&ps, rows, &opts).unwrap();
    let comps = &out.completions;
    let mut names = std::collections::BTreeSet::new();
    for (c, text) in comps.iter().zip(&out.texts) {
        assert_eq!(c.finish, lm::FinishReason::Stop, "unfinished: {text}");
        assert!(calls_valid(text, &tools), "invalid guided call: {text}");
        for call in parse_reply(text).tool_calls {
            names.insert(call.name);
        }
    }
    // The random model still chooses: both tools come up.
    assert_eq!(names.len(), 2, "{names:?}");
    // The same model unguided produces no valid call at all.
    let free = lm.generate(&ps, &sampled(60, 8)).unwrap();
    assert!(free.texts.iter().all(|t| !calls_valid(t, &tools)));
}

#[test]
fn a_named_tool_choice_calls_only_that_function() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny(dir.path());
    let tools = vec![booking_tool(), cancel_tool()];
    let ps = prompts(&lm, 6);
    let c = Constraint::Tools {
        tools: tools.clone(),
        choice: ToolChoice::Function("cancel".into()),
        text: true,
        max_calls: None,
    };
    let (rows, _) = lm.row_guides(&vec![Some(c); ps.len()]).unwrap();
    let out = lm.generate_guided(&ps, rows, &sampled(200, 6)).unwrap();
    for text in &out.texts {
        let calls = parse_reply(text).tool_calls;
        assert!(calls_valid(text, &tools), "{text}");
        assert!(calls.iter().all(|c| c.name == "cancel"), "{text}");
    }
}

#[test]
fn text_stays_possible_where_allowed_and_calls_cannot_hide_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny(dir.path());
    let tools = vec![booking_tool(), cancel_tool()];
    let guide = lm.guide().unwrap();
    let accepts = |c: &Constraint, text: &str| -> bool {
        let mut g = guide.start(c).unwrap();
        let ids = lm.tokenizer.encode(text).unwrap();
        g.consume(&ids).is_ok() && g.is_accepting()
    };
    let auto = Constraint::Tools {
        tools: tools.clone(),
        choice: ToolChoice::Auto,
        text: true,
        max_calls: None,
    };
    let required = Constraint::Tools {
        tools: tools.clone(),
        choice: ToolChoice::Required,
        text: true,
        max_calls: None,
    };
    let call = r#"<tool_call>{"name":"cancel","arguments":{"id":42}}</tool_call>"#;
    let two = format!("{call}\n{call}");
    let text = "Which room would you like?\nI can book alpha or beta.";
    let text_then_call = format!("Sure, cancelling it.\n{call}");
    for (what, s) in [
        ("call", call),
        ("two calls", &two),
        ("text", text),
        ("text then call", &text_then_call),
    ] {
        assert!(accepts(&auto, s), "auto should accept the {what}: {s}");
    }
    assert!(accepts(&required, call) && accepts(&required, &two));
    let single = Constraint::Tools {
        tools: tools.clone(),
        choice: ToolChoice::Required,
        text: false,
        max_calls: Some(1),
    };
    assert!(
        accepts(&single, call) && !accepts(&single, &two),
        "one call at most"
    );
    assert!(
        !accepts(&required, text),
        "required: text alone is not an answer"
    );
    // Broken or off-schema calls are refused, in text or not.
    let bad = [
        r#"<tool_call>{"name":"cancel","arguments":{"id":"42"}}</tool_call>"#,
        r#"<tool_call>{"name":"cancel","arguments":{"id":42,"why":"x"}}</tool_call>"#,
        r#"<tool_call>{"name":"refund","arguments":{"id":42}}</tool_call>"#,
        r#"<tool_call>{"name":"cancel","arguments":{}}</tool_call>"#,
        r#"<tool_call>{"name":"book_room","arguments":{"room":"delta","people":2,"slot":{"day":"mon","hour":9}}}</tool_call>"#,
        r#"<tool_call>{"name":"cancel","arguments":{"id":42}</tool_call>"#,
        r#"Here it is: <tool_call>{"name":"cancel","arguments":{"id":42}}</tool_call>"#,
        "Done.\n<tool_call>{\"name\":\"cancel\"}",
    ];
    for s in bad {
        assert!(!accepts(&auto, s), "should refuse: {s}");
    }
    // A complete call admits only the end (or another call).
    let mut g = guide.start(&auto).unwrap();
    g.consume(&lm.tokenizer.encode(call).unwrap()).unwrap();
    let mut logits = vec![0.0f32; lm.model.config().vocab_size];
    g.mask_logits(&mut logits, &lm.stop_ids()).unwrap();
    let allowed: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i] > f32::NEG_INFINITY)
        .collect();
    let newline = lm.tokenizer.encode("\n").unwrap();
    for i in &allowed {
        let i = *i as u32;
        assert!(
            lm.stop_ids().contains(&i)
                || newline.contains(&i)
                || lm.tokenizer.decode(&[i], false).unwrap().starts_with('\n'),
            "token {i} allowed after a complete call"
        );
    }
    assert!(lm
        .stop_ids()
        .iter()
        .all(|s| allowed.contains(&(*s as usize))));
}

#[test]
fn unsupported_schemas_fall_back_to_free_decoding_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny(dir.path());
    let good = Constraint::Tools {
        tools: vec![cancel_tool()],
        choice: ToolChoice::Required,
        text: false,
        max_calls: None,
    };
    let bad_type = Constraint::Json {
        schema: json!({"type": "not-a-type"}),
        compact: true,
    };
    let impossible = Constraint::Json {
        schema: json!({"type": "integer", "minimum": 5, "maximum": 1}),
        compact: true,
    };
    let no_tool = Constraint::Tools {
        tools: vec![cancel_tool()],
        choice: ToolChoice::Function("refund".into()),
        text: false,
        max_calls: None,
    };
    let cs = vec![
        Some(good),
        Some(bad_type),
        None,
        Some(impossible),
        Some(no_tool),
    ];
    let (rows, fallbacks) = lm.row_guides(&cs).unwrap();
    let fell: Vec<usize> = fallbacks.iter().map(|f| f.0).collect();
    assert_eq!(fell, vec![1, 3, 4], "{fallbacks:?}");
    assert!(fallbacks.iter().all(|f| !f.1.is_empty()));
    assert!(rows[0].is_some() && rows[1].is_none() && rows[2].is_none());
    // Generation goes on for every row.
    let ps = prompts(&lm, cs.len());
    let out = lm.generate_guided(&ps, rows, &sampled(80, 5)).unwrap();
    let comps = &out.completions;
    assert_eq!(comps.len(), cs.len());
    let first = &out.texts[0];
    assert!(calls_valid(first, &[cancel_tool()]), "{first}");
}

#[test]
fn json_answers_follow_the_schema_inferred_from_training_answers() {
    let answers: Vec<Value> = vec![
        json!({"label": "billing", "priority": 2, "tags": ["refund"], "meta": {"lang": "en"}}),
        json!({"label": "bug", "priority": 1, "tags": [], "meta": {"lang": "de", "tz": null}}),
        json!({"label": "other", "priority": 3, "tags": ["a", "b"], "meta": {"lang": "fr"}, "note": "x"}),
    ];
    let refs: Vec<&Value> = answers.iter().collect();
    let schema = infer_schema(&refs);
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "priority": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "meta": {
                    "type": "object",
                    "properties": {"lang": {"type": "string"}, "tz": {"type": "null"}},
                    "required": ["lang"],
                    "additionalProperties": false
                },
                "note": {"type": "string"}
            },
            "required": ["label", "priority", "tags", "meta"],
            "additionalProperties": false
        })
    );
    for a in &answers {
        assert_eq!(schema_valid(&schema, a), Some(true), "{a}");
    }
    assert_eq!(schema_valid(&schema, &json!({"label": "x"})), Some(false));
    assert_eq!(schema_valid(&json!({"type": 12}), &json!(1)), None);
    assert_eq!(
        infer_schema(&[&json!(1), &json!(2.5), &json!("x")]),
        json!({"anyOf": [{"type": "number"}, {"type": "string"}]})
    );

    // Guided generation from the random model, under a bounded version.
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny(dir.path());
    let bounded = json!({
        "type": "object",
        "properties": {
            "label": {"type": "string", "maxLength": 6},
            "priority": {"type": "integer", "minimum": 1, "maximum": 3},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}
        },
        "required": ["label", "priority"],
        "additionalProperties": false
    });
    let c = Constraint::Json {
        schema: bounded.clone(),
        compact: true,
    };
    let ps = prompts(&lm, 8);
    let (rows, fallbacks) = lm.row_guides(&vec![Some(c); ps.len()]).unwrap();
    assert!(fallbacks.is_empty());
    let out = lm.generate_guided(&ps, rows, &sampled(200, 4)).unwrap();
    for text in &out.texts {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(schema_valid(&bounded, &v), Some(true), "{text}");
        assert_eq!(*text, v.to_string(), "compact JSON");
    }
}

#[test]
fn objects_close_unless_the_schema_says_otherwise() {
    let s = json!({
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "integer"}}},
            "open": {"type": "object", "properties": {}, "additionalProperties": true},
            "list": {"type": "array", "items": {"type": "object", "properties": {"c": {}}}}
        }
    });
    let c = close_objects(&s);
    assert_eq!(c["additionalProperties"], json!(false));
    assert_eq!(c["properties"]["a"]["additionalProperties"], json!(false));
    assert_eq!(c["properties"]["open"]["additionalProperties"], json!(true));
    assert_eq!(
        c["properties"]["list"]["items"]["additionalProperties"],
        json!(false)
    );
    assert_eq!(
        schema_valid(&c, &json!({"a": {"b": 1, "x": 2}})),
        Some(false)
    );
    assert_eq!(
        schema_valid(&s, &json!({"a": {"b": 1, "x": 2}})),
        Some(true)
    );
}

/// Masks at every step (never the greedy shortcut).
struct AlwaysMask(Box<dyn TokenConstraint>);

impl TokenConstraint for AlwaysMask {
    fn mask_logits(&mut self, logits: &mut [f32], stop_ids: &[u32]) -> anyhow::Result<()> {
        self.0.mask_logits(logits, stop_ids)
    }
    fn allows(&mut self, _token: u32, _is_stop: bool) -> anyhow::Result<bool> {
        Ok(false)
    }
    fn accept(&mut self, token: u32) -> anyhow::Result<()> {
        self.0.accept(token)
    }
}

#[test]
fn greedy_guided_decoding_checks_the_best_token_first_and_picks_what_the_mask_would() {
    let dir = tempfile::tempdir().unwrap();
    let lm = tiny(dir.path());
    let tools = vec![booking_tool(), cancel_tool()];
    let ps = prompts(&lm, 6);
    let c = Constraint::Tools {
        tools,
        choice: ToolChoice::Auto,
        text: true,
        max_calls: None,
    };
    let opts = GenerateOptions {
        sampling: SamplingConfig::greedy(120),
        batch_size: 3,
        ..Default::default()
    };
    let run = |wrap: bool| {
        let (rows, _) = lm.row_guides(&vec![Some(c.clone()); ps.len()]).unwrap();
        let rows = rows
            .into_iter()
            .map(|r| match (r, wrap) {
                (Some(g), true) => Some(Box::new(AlwaysMask(g)) as Box<dyn TokenConstraint>),
                (r, _) => r,
            })
            .collect();
        lm::generate::generate_constrained(
            &lm.model,
            &ps,
            rows,
            &lm.stop_ids(),
            lm.tokenizer.pad_id(),
            &opts,
        )
        .unwrap()
    };
    let (fast, fast_stats) = run(false);
    let (masked, masked_stats) = run(true);
    assert_eq!(fast, masked);
    assert!(fast_stats.guide_secs > 0.0 && masked_stats.guide_secs > 0.0);
}

#[test]
fn request_demands_come_from_the_logs_and_decide_the_constraint() {
    use slmforge::call::Demands;
    use slmforge::ml::lm::guide::AnswerShape;
    use std::io::Write;
    // OpenAI pair records and an Anthropic one, through ingest to calls.parquet.
    let tool =
        json!({"type": "function", "function": {"name": "cancel", "parameters": cancel_tool().1}});
    let answer = json!({"choices": [{"message": {"role": "assistant", "content": null,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "cancel", "arguments": "{\"id\":7}"}}]},
        "finish_reason": "tool_calls"}], "model": "gpt-4o"});
    let schema =
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
    let lines = [
        json!({"request": {"model": "gpt-4o", "messages": [{"role": "user", "content": "cancel 7"}],
            "tools": [tool], "tool_choice": "required"}, "response": answer}),
        json!({"request": {"model": "gpt-4o", "messages": [{"role": "user", "content": "cancel 8 please"}],
            "tools": [tool], "tool_choice": {"type": "function", "function": {"name": "cancel"}}}, "response": answer}),
        json!({"request": {"model": "gpt-4o", "messages": [{"role": "user", "content": "is it ok?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}},
            "response": {"choices": [{"message": {"role": "assistant", "content": "{\"ok\":true}"}, "finish_reason": "stop"}]}}),
        json!({"request": {"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "cancel 9"}],
            "tools": [{"name": "cancel", "input_schema": cancel_tool().1}], "tool_choice": {"type": "any"}},
            "response": {"type": "message", "role": "assistant", "model": "claude", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "t1", "name": "cancel", "input": {"id": 9}}],
            "usage": {"input_tokens": 5, "output_tokens": 5}}}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("logs.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let mut cfg = slmforge::ingest::IngestConfig::new(
        slmforge::redact::RedactKey::from_bytes(b"slmforge-test-key-0123456789").unwrap(),
        slmforge::ingest::KeySource::File,
    );
    cfg.progress = false;
    let out = dir.path().join("ds");
    slmforge::ingest::run(&cfg, &[input], &out).unwrap();
    let calls = slmforge::artifact::calls::read_calls(&out).unwrap();
    let by_user = |needle: &str| {
        calls
            .iter()
            .find(|c| {
                c.messages
                    .iter()
                    .any(|m| m.content.as_deref().is_some_and(|t| t.contains(needle)))
            })
            .unwrap_or_else(|| panic!("no call with {needle}"))
            .demands
            .clone()
    };
    assert_eq!(by_user("cancel 7").tool_choice, Some(ToolChoice::Required));
    assert_eq!(
        by_user("cancel 8").tool_choice,
        Some(ToolChoice::Function("cancel".into()))
    );
    assert_eq!(by_user("is it ok").response_schema, Some(schema.clone()));
    assert_eq!(by_user("cancel 9").tool_choice, Some(ToolChoice::Required));

    // A workload that answers in text and calls: auto allows text; a demand does not.
    let shape = AnswerShape {
        text_answers: 3,
        tool_call_answers: 5,
        ..Default::default()
    };
    let tools = vec![cancel_tool(), booking_tool()];
    let auto = shape.constraint(&tools, &Demands::default()).unwrap();
    assert!(matches!(
        auto,
        Constraint::Tools {
            text: true,
            choice: ToolChoice::Auto,
            ..
        }
    ));
    let required = Demands {
        tool_choice: Some(ToolChoice::Required),
        ..Default::default()
    };
    assert!(matches!(
        shape.constraint(&tools, &required),
        Some(Constraint::Tools {
            text: false,
            choice: ToolChoice::Required,
            ..
        })
    ));
    let none = Demands {
        tool_choice: Some(ToolChoice::None),
        ..Default::default()
    };
    assert_eq!(shape.constraint(&tools, &none), None);
    let json_demand = Demands {
        response_schema: Some(schema.clone()),
        tool_choice: Some(ToolChoice::None),
        ..Default::default()
    };
    // Parallel calls: as many as the workload made, one when the request says so.
    let parallel = AnswerShape {
        tool_call_answers: 5,
        max_calls: 2,
        ..Default::default()
    };
    assert!(matches!(
        parallel.constraint(&tools, &Demands::default()),
        Some(Constraint::Tools {
            max_calls: Some(2),
            ..
        })
    ));
    let serial = Demands {
        parallel_tool_calls: Some(false),
        ..Default::default()
    };
    assert!(matches!(
        parallel.constraint(&tools, &serial),
        Some(Constraint::Tools {
            max_calls: Some(1),
            ..
        })
    ));
    assert!(matches!(
        shape.constraint(&tools, &json_demand),
        Some(Constraint::Json { .. })
    ));
    // A text-only workload stays free.
    let text_only = AnswerShape {
        text_answers: 4,
        ..Default::default()
    };
    assert_eq!(text_only.constraint(&tools, &Demands::default()), None);
}

/// The real models (when present): a guided tool call and a guided JSON
/// answer, both valid, on each family's own tokenizer (byte-level BPE for
/// SmolLM2, SentencePiece for Gemma 3).
#[test]
fn real_models_answer_valid_calls_and_json_under_guidance() {
    use slmforge::call::{Message, Role, ToolDef};
    for (rel, name) in [
        (
            "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
            "smollm2",
        ),
        ("gemma3-270m/gemma-3-270m-q4_k_m.gguf", "gemma3"),
    ] {
        let Some(path) = crate::common::real_file(
            rel,
            &format!("real_models_answer_valid_calls_and_json_under_guidance ({name})"),
        ) else {
            continue;
        };
        let lm = lm::load(&path, &Device::Cpu).unwrap();
        let tools = vec![booking_tool(), cancel_tool()];
        let defs: Vec<ToolDef> = tools
            .iter()
            .map(|(n, p)| ToolDef {
                name: n.clone(),
                description: None,
                parameters: p.clone(),
            })
            .collect();
        let msgs = vec![Message::text(
            Role::User,
            "Book room beta for 4 people on Monday at 10.".to_string(),
        )];
        let prompt = lm.prompt_ids(&msgs, &defs).unwrap();
        let json_prompt = lm
            .prompt_ids(
                &[Message::text(
                    Role::User,
                    "Give the weather in Oslo for 2 days as JSON.".to_string(),
                )],
                &[],
            )
            .unwrap();
        let weather = json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
            "days": {"type": "integer", "minimum": 1, "maximum": 14}}, "required": ["city", "days"]});
        let cs = vec![
            Some(Constraint::Tools {
                tools: tools.clone(),
                choice: ToolChoice::Required,
                text: false,
                max_calls: Some(1),
            }),
            Some(Constraint::Json {
                schema: weather.clone(),
                compact: true,
            }),
        ];
        let (rows, fallbacks) = lm.row_guides(&cs).unwrap();
        assert!(fallbacks.is_empty(), "{name}: {fallbacks:?}");
        let out = lm
            .generate_guided(
                &[prompt, json_prompt],
                rows,
                &GenerateOptions {
                    sampling: SamplingConfig::greedy(120),
                    batch_size: 2,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            out.completions[0].finish,
            lm::FinishReason::Stop,
            "{name}: {}",
            out.texts[0]
        );
        assert!(
            calls_valid(&out.texts[0], &tools),
            "{name}: {}",
            out.texts[0]
        );
        assert_eq!(
            out.completions[1].finish,
            lm::FinishReason::Stop,
            "{name}: {}",
            out.texts[1]
        );
        let v: Value = serde_json::from_str(&out.texts[1])
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", out.texts[1]));
        assert_eq!(
            schema_valid(&close_objects(&weather), &v),
            Some(true),
            "{name}: {}",
            out.texts[1]
        );
        eprintln!("{name}: {} | {}", out.texts[0], out.texts[1]);
    }
}

#[test]
fn generate_refuses_a_schema_file_that_is_not_json_and_an_unknown_tool_choice() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_gguf(dir.path(), "tiny.gguf", 11, &TinyOpts::default());
    let bad = dir.path().join("schema.json");
    std::fs::write(&bad, "{not json").unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(crate::common::bin())
            .args(["generate", "--model"])
            .arg(&model)
            .args(["--prompt", "hi"])
            .args(extra)
            .env("SLMFORGE_NO_PROGRESS", "1")
            .output()
            .unwrap()
    };
    let out = run(&["--schema", bad.to_str().unwrap(), "--max-tokens", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--schema") && err.contains("not JSON"),
        "{err}"
    );
    let out = run(&["--guided", "--tool-choice", "refund"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tool-choice"), "{err}");
    // a good schema file guides the answer
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":9}},"required":["n"]}"#).unwrap();
    let out = run(&["--schema", good.to_str().unwrap(), "--max-tokens", "40"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(v["n"].is_u64(), "{text}");
}
