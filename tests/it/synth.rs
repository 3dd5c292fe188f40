//! Tests of `slmforge synth`: determinism, coverage of workloads and
//! formats, label integrity (line and span index point at the right record),
//! answers consistent with inputs, valid PII checksums, compression, CLI,
//! and the committed sample.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use serde_json::Value;
use slmforge::call::SourceFormat;
use slmforge::dev::synth::{
    self, labels_path, pii, synthesize, workload_names, workloads, SynthConfig,
};

fn cfg(calls: usize, seed: u64) -> SynthConfig {
    SynthConfig {
        calls,
        seed,
        malformed: None,
        formats: None,
    }
}

fn read_all(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    let name = path.to_string_lossy();
    if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else if name.ends_with(".zst") {
        zstd::decode_all(&raw[..]).unwrap()
    } else {
        raw
    }
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    assert_eq!(v.pop(), Some(&b""[..]), "file must end with a newline");
    v
}

struct Labels {
    calls: Vec<(usize, usize, String, String)>,
    malformed: BTreeMap<usize, String>,
}

fn read_labels(out: &Path) -> Labels {
    let text = std::fs::read_to_string(labels_path(out)).unwrap();
    let mut calls = Vec::new();
    let mut malformed = BTreeMap::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let line = v["line"].as_u64().unwrap() as usize;
        if let Some(r) = v["malformed"].as_str() {
            assert!(
                malformed.insert(line, r.to_string()).is_none(),
                "two malformed labels on line {line}"
            );
        } else {
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(keys, ["line", "index", "workload", "format"]);
            calls.push((
                line,
                v["index"].as_u64().unwrap() as usize,
                v["workload"].as_str().unwrap().to_string(),
                v["format"].as_str().unwrap().to_string(),
            ));
        }
    }
    Labels { calls, malformed }
}

fn gen(dir: &Path, name: &str, c: &SynthConfig) -> (PathBuf, synth::SynthSummary) {
    let out = dir.join(name);
    let s = synthesize(c, &out).unwrap();
    (out, s)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = gen(dir.path(), "a.jsonl", &cfg(300, 11));
    let (b, _) = gen(dir.path(), "b.jsonl", &cfg(300, 11));
    let (c, _) = gen(dir.path(), "c.jsonl", &cfg(300, 12));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(
        std::fs::read(labels_path(&a)).unwrap(),
        std::fs::read(labels_path(&b)).unwrap()
    );
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

#[test]
fn labels_path_replaces_the_jsonl_suffix() {
    assert_eq!(
        labels_path(Path::new("d/calls.jsonl.gz")),
        PathBuf::from("d/calls.labels.jsonl")
    );
    assert_eq!(
        labels_path(Path::new("d/calls.jsonl.zst")),
        PathBuf::from("d/calls.labels.jsonl")
    );
    assert_eq!(
        labels_path(Path::new("calls.jsonl")),
        PathBuf::from("calls.labels.jsonl")
    );
}

/// A substring that each workload's record carries (system prompt or tool
/// name) and no other workload's does.
fn marker(workload: &str) -> &'static str {
    match workload {
        "support_triage" => "create_ticket",
        "order_status" => "get_order_status",
        "invoice_extraction" => "invoice_number",
        "meeting_summary" => "Attendees",
        "sql_generation" => "signup_date",
        "calendar_scheduling" => "create_event",
        "travel_agent" => "search_flights",
        "chitchat" => "Pip",
        "sentiment_classification" => "neutral",
        "lead_extraction" => "sales lead",
        other => panic!("unknown workload {other}"),
    }
}

fn otel_spans(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for rs in v["resourceSpans"].as_array().unwrap() {
        for ss in rs["scopeSpans"].as_array().unwrap() {
            out.extend(ss["spans"].as_array().unwrap());
        }
    }
    out
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[test]
fn n400_covers_workloads_formats_and_labels_point_at_the_right_records() {
    let dir = tempfile::tempdir().unwrap();
    let (out, summary) = gen(dir.path(), "calls.jsonl", &cfg(400, 7));
    let bytes = read_all(&out);
    let ls = lines(&bytes);
    let labels = read_labels(&out);

    assert_eq!(labels.calls.len(), 400);
    assert_eq!(summary.calls, 400);
    assert_eq!(
        labels.malformed.len(),
        3,
        "default malformed count is max(3, N/200)"
    );
    assert_eq!(summary.lines as usize, ls.len());

    let workloads: BTreeSet<&str> = labels.calls.iter().map(|c| c.2.as_str()).collect();
    assert_eq!(
        workloads,
        workload_names().into_iter().collect::<BTreeSet<_>>()
    );
    assert!(workload_names().len() >= 8);
    let formats: BTreeSet<&str> = labels.calls.iter().map(|c| c.3.as_str()).collect();
    let all: BTreeSet<&str> = SourceFormat::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(formats, all);
    for w in workload_names() {
        assert_eq!(summary.per_workload[w], 40, "balanced workloads");
    }

    // Every line is JSON except the labelled malformed ones.
    let parsed: Vec<Option<Value>> = ls
        .iter()
        .map(|l| {
            std::str::from_utf8(l)
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
        })
        .collect();
    for (i, p) in parsed.iter().enumerate() {
        if p.is_none() {
            assert!(
                labels.malformed.contains_key(&(i + 1)),
                "line {} does not parse and is not labelled malformed",
                i + 1
            );
        }
    }

    // Batch outputs: one per batch input, later in the file, status 200.
    let mut outputs: HashMap<String, usize> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        if let Some(v) = p {
            if v["response"]["status_code"] == 200 {
                assert!(outputs
                    .insert(v["custom_id"].as_str().unwrap().to_string(), i + 1)
                    .is_none());
            }
        }
    }

    let mut seen = BTreeSet::new();
    let mut otel_nonzero = 0;
    let mut multi_call_lines = BTreeMap::<usize, usize>::new();
    for (line, index, workload, format) in &labels.calls {
        assert!(
            seen.insert((*line, *index)),
            "duplicate label {line}/{index}"
        );
        assert!(!labels.malformed.contains_key(line));
        let v = parsed[line - 1]
            .as_ref()
            .unwrap_or_else(|| panic!("call line {line} does not parse"));
        let item: &Value = match format.as_str() {
            "otel" => {
                let spans = otel_spans(v);
                let s = spans[*index];
                let op = attr(s, "gen_ai.operation.name")
                    .or_else(|| attr(s, "llm.request.type"))
                    .unwrap();
                assert_eq!(
                    op["stringValue"], "chat",
                    "line {line} index {index} is not the chat span"
                );
                if *index > 0 {
                    otel_nonzero += 1;
                }
                *multi_call_lines.entry(*line).or_default() += 1;
                s
            }
            other => {
                assert_eq!(*index, 0);
                match other {
                    "openai_chat" => {
                        assert!(v.get("request").is_some() || v.get("messages").is_some())
                    }
                    "openai_batch" => {
                        assert_eq!(v["method"], "POST");
                        assert_eq!(v["url"], "/v1/chat/completions");
                        let out_line = outputs[v["custom_id"].as_str().unwrap()];
                        assert!(out_line > *line, "batch output must follow its input");
                    }
                    "anthropic" => assert_eq!(v["response"]["type"], "message"),
                    "langfuse" => assert_eq!(v["type"], "GENERATION"),
                    "helicone" => assert_eq!(v["response_status"], 200),
                    "litellm" => assert_eq!(v["status"], "success"),
                    "langsmith" => assert_eq!(v["run_type"], "llm"),
                    f => panic!("unknown format {f}"),
                }
                v
            }
        };
        let text = item.to_string();
        assert!(
            text.contains(marker(workload)),
            "line {line}/{index}: {workload} marker missing"
        );
        for other in workload_names().into_iter().filter(|w| w != workload) {
            assert!(
                !text.contains(marker(other)),
                "line {line}/{index} labelled {workload} carries the {other} marker"
            );
        }
    }
    assert!(
        otel_nonzero > 0,
        "some OTLP payloads carry non-LLM spans before the chat span"
    );
    assert_eq!(
        outputs.len(),
        summary.per_format["openai_batch"],
        "every batch input has exactly one output"
    );
    let _ = multi_call_lines;
}

#[test]
fn malformed_records_cover_every_reason_and_are_broken() {
    let dir = tempfile::tempdir().unwrap();
    let c = SynthConfig {
        calls: 60,
        seed: 3,
        malformed: Some(21),
        formats: None,
    };
    let (out, s) = gen(dir.path(), "m.jsonl", &c);
    let bytes = read_all(&out);
    let ls = lines(&bytes);
    let labels = read_labels(&out);
    assert_eq!(labels.malformed.len(), 21);
    assert_eq!(s.malformed, 21);
    let mut batch_outputs: HashMap<String, Value> = HashMap::new();
    for l in &ls {
        if let Some(v) = std::str::from_utf8(l)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        {
            if v["response"]["status_code"].is_number() {
                batch_outputs.insert(v["custom_id"].as_str().unwrap().to_string(), v);
            }
        }
    }
    let reasons: BTreeSet<&str> = labels.malformed.values().map(|s| s.as_str()).collect();
    let expected: BTreeSet<&str> = synth::malformed::REASONS.into_iter().collect();
    assert_eq!(reasons, expected);
    for (line, reason) in &labels.malformed {
        let raw = ls[line - 1];
        let utf8 = std::str::from_utf8(raw);
        let json = utf8
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        match reason.as_str() {
            "truncated_json" => assert!(utf8.is_ok() && json.is_none(), "line {line}"),
            "invalid_utf8" => assert!(utf8.is_err(), "line {line}"),
            "streamed_chunk" => {
                assert!(json.unwrap().to_string().contains("chat.completion.chunk"))
            }
            "deep_nesting" => {
                let s = utf8.unwrap();
                let mut depth = 0usize;
                let mut max = 0usize;
                for b in s.bytes() {
                    match b {
                        b'[' | b'{' => {
                            depth += 1;
                            max = max.max(depth)
                        }
                        b']' | b'}' => depth -= 1,
                        _ => {}
                    }
                }
                assert!(max > 100, "line {line} nests only {max} deep");
            }
            "missing_response" => {
                let v = json.unwrap();
                if let Some(id) = v["custom_id"].as_str() {
                    assert!(
                        !batch_outputs.contains_key(id),
                        "line {line}: batch input has an output"
                    );
                }
                let has_response = ["response", "completion", "output"]
                    .iter()
                    .any(|k| v.get(*k).is_some_and(|x| !x.is_null()));
                assert!(!has_response, "line {line}");
            }
            "error_response" => {
                let mut v = json.unwrap();
                if v.get("method").is_some() {
                    // A Batch API input: the error is in its output line.
                    v = batch_outputs[v["custom_id"].as_str().unwrap()].clone();
                }
                let is_error = v["response"]["error"].is_object()
                    || v["response"]["status_code"] == 500
                    || v["response_status"] == 500
                    || v["result"]["type"] == "errored"
                    || v["status"] == "failure"
                    || v["error"].is_string();
                assert!(is_error, "line {line}: {v}");
            }
            "wrong_types" => {
                let v = json.unwrap();
                let m = &v["request"]["messages"];
                let wrong = !m.is_array()
                    || m.as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["content"].is_number() || x["role"].is_number());
                assert!(wrong, "line {line}");
            }
            other => panic!("unexpected reason {other}"),
        }
    }
}

// ---------------------------------------------------------------- answer consistency

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// (user text, tool-result text, answer text, answer tool calls) of an
/// openai_chat or anthropic record.
fn extract(format: &str, v: &Value) -> (String, String, Option<String>, Vec<(String, Value)>) {
    let mut user = String::new();
    let mut tool_result = String::new();
    let mut calls = Vec::new();
    let mut text = None;
    if format == "openai_chat" {
        let req = if v.get("request").is_some() {
            &v["request"]
        } else {
            v
        };
        for m in req["messages"].as_array().unwrap() {
            match m["role"].as_str().unwrap() {
                "user" if user.is_empty() => user = text_of(&m["content"]),
                "tool" => tool_result = text_of(&m["content"]),
                _ => {}
            }
        }
        let resp = if v.get("response").is_some() {
            &v["response"]
        } else {
            &v["completion"]
        };
        let msg = &resp["choices"][0]["message"];
        if let Some(tcs) = msg["tool_calls"].as_array() {
            for tc in tcs {
                let args: Value =
                    serde_json::from_str(tc["function"]["arguments"].as_str().unwrap()).unwrap();
                calls.push((tc["function"]["name"].as_str().unwrap().to_string(), args));
            }
        } else if msg["function_call"].is_object() {
            let fc = &msg["function_call"];
            calls.push((
                fc["name"].as_str().unwrap().to_string(),
                serde_json::from_str(fc["arguments"].as_str().unwrap()).unwrap(),
            ));
        } else {
            text = msg["content"].as_str().map(String::from);
        }
    } else {
        for m in v["request"]["messages"].as_array().unwrap() {
            if m["role"] != "user" {
                continue;
            }
            match &m["content"] {
                Value::String(s) if user.is_empty() => user = s.clone(),
                Value::Array(blocks) => {
                    for b in blocks {
                        match b["type"].as_str().unwrap() {
                            "text" if user.is_empty() => {
                                user = b["text"].as_str().unwrap().to_string()
                            }
                            "tool_result" => {
                                tool_result = b["content"].as_str().unwrap().to_string()
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        for b in v["response"]["content"].as_array().unwrap() {
            match b["type"].as_str().unwrap() {
                "tool_use" => {
                    calls.push((b["name"].as_str().unwrap().to_string(), b["input"].clone()))
                }
                "text" => text = b["text"].as_str().map(String::from),
                _ => {}
            }
        }
    }
    (user, tool_result, text, calls)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn check_consistent(
    workload: &str,
    user: &str,
    tool_result: &str,
    text: Option<&str>,
    calls: &[(String, Value)],
) {
    let ctx = format!("{workload}: user={user:?} answer={text:?} calls={calls:?}");
    match workload {
        "support_triage" => {
            assert_eq!(calls.len(), 1, "{ctx}");
            let (name, a) = &calls[0];
            assert_eq!(name, "create_ticket", "{ctx}");
            assert!(user.contains(s(a, "email")), "{ctx}");
            let subject = s(a, "subject");
            assert!(user.contains(subject), "{ctx}");
            let cat = workloads::TRIAGE_ISSUES
                .iter()
                .find(|(_, i)| *i == subject)
                .unwrap()
                .0;
            assert_eq!(s(a, "category"), cat, "{ctx}");
            let lower = user.to_lowercase();
            let pri = if lower.contains("urgent") || lower.contains("asap") {
                "high"
            } else if lower.contains("no rush") || lower.contains("can wait") {
                "low"
            } else {
                "normal"
            };
            assert_eq!(s(a, "priority"), pri, "{ctx}");
        }
        "order_status" => {
            if let Some(t) = text {
                let r: Value = serde_json::from_str(tool_result).unwrap();
                assert!(
                    t.contains(s(&r, "order_id")) && t.contains(s(&r, "eta")),
                    "{ctx}"
                );
                assert!(user.contains(s(&r, "order_id")), "{ctx}");
            } else {
                assert_eq!(calls.len(), 1, "{ctx}");
                let (name, a) = &calls[0];
                assert!(user.contains(s(a, "order_id")), "{ctx}");
                let table = match name.as_str() {
                    "get_order_status" => None,
                    "cancel_order" => Some(workloads::CANCEL_REASONS),
                    "start_return" => Some(workloads::RETURN_REASONS),
                    n => panic!("unexpected tool {n}"),
                };
                if let Some(t) = table {
                    let reason = s(a, "reason");
                    assert!(
                        t.iter()
                            .any(|(code, phrase)| *code == reason && user.contains(phrase)),
                        "{ctx}"
                    );
                }
            }
        }
        "invoice_extraction" => {
            let v: Value = serde_json::from_str(text.unwrap()).unwrap();
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "invoice_number",
                    "vendor",
                    "date",
                    "total",
                    "currency",
                    "iban"
                ],
                "{ctx}"
            );
            for k in ["invoice_number", "vendor", "date", "total"] {
                assert!(user.contains(s(&v, k)), "{ctx}: {k}");
            }
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                text.unwrap(),
                "compact serialisation"
            );
            match &v["iban"] {
                Value::Null => assert!(
                    !user.contains("IBAN") && !user.contains("Bank transfer"),
                    "{ctx}"
                ),
                Value::String(i) => {
                    assert!(user.contains(i.as_str()) && pii::iban_valid(i), "{ctx}");
                }
                _ => panic!("{ctx}"),
            }
        }
        "meeting_summary" => {
            let t = text.unwrap();
            let ls: Vec<&str> = t.lines().collect();
            assert_eq!(ls.len(), 3, "{ctx}");
            assert!(
                ls[0].starts_with("Attendees: ")
                    && ls[1].starts_with("Decisions: ")
                    && ls[2].starts_with("Action items: "),
                "{ctx}"
            );
            for name in ls[0]["Attendees: ".len()..]
                .trim_end_matches('.')
                .split(", ")
            {
                assert!(user.contains(name), "{ctx}: {name}");
            }
        }
        "sql_generation" => {
            let t = text.unwrap();
            assert!(t.starts_with("SELECT ") && t.ends_with(';'), "{ctx}");
            for (k, lit) in t.split('\'').enumerate() {
                if k % 2 == 1 && lit != "%Y" {
                    assert!(user.contains(lit), "{ctx}: literal {lit}");
                }
            }
        }
        "calendar_scheduling" => {
            assert_eq!(calls.len(), 1, "{ctx}");
            let (name, a) = &calls[0];
            match name.as_str() {
                "create_event" => {
                    for k in ["title", "date", "start_time"] {
                        assert!(user.contains(s(a, k)), "{ctx}: {k}");
                    }
                    for e in a["attendees"].as_array().unwrap() {
                        assert!(user.contains(e.as_str().unwrap()), "{ctx}");
                    }
                }
                "find_free_slots" => assert!(user.contains(s(a, "date")), "{ctx}"),
                "cancel_event" => assert!(user.contains(s(a, "event_id")), "{ctx}"),
                n => panic!("unexpected tool {n}"),
            }
            if let Some(m) = a.get("duration_minutes") {
                let m = m.as_u64().unwrap() as u32;
                assert!(
                    workloads::DURATIONS
                        .iter()
                        .any(|(mins, phrase)| *mins == m && user.contains(phrase)),
                    "{ctx}"
                );
            }
        }
        "travel_agent" => {
            if let Some(t) = text {
                let r: Value = serde_json::from_str(tool_result).unwrap();
                let needle = r
                    .get("confirmation")
                    .or_else(|| r.get("forecast"))
                    .or_else(|| r["flights"][0].get("flight"))
                    .unwrap();
                assert!(t.contains(needle.as_str().unwrap()), "{ctx}");
            } else {
                assert!(!calls.is_empty(), "{ctx}");
                for (_, a) in calls {
                    for (k, v) in a.as_object().unwrap() {
                        match v {
                            Value::String(x) => assert!(user.contains(x.as_str()), "{ctx}: {k}"),
                            Value::Number(n) if k == "passengers" && n.as_u64() == Some(1) => {
                                assert!(
                                    !user.contains("passengers")
                                        && !user.contains("adults")
                                        && !user.contains("people"),
                                    "{ctx}"
                                )
                            }
                            Value::Number(n) => {
                                assert!(user.contains(&n.to_string()), "{ctx}: {k}")
                            }
                            _ => panic!("{ctx}"),
                        }
                    }
                }
            }
        }
        "chitchat" => {
            let t = text.unwrap();
            let ok = workloads::CHAT_INTENTS.iter().any(|(phrases, reply)| {
                phrases
                    .iter()
                    .any(|p| user.to_lowercase().contains(&p.to_lowercase()))
                    && {
                        let (pre, post) = reply.split_once("{n}").unwrap_or((reply, ""));
                        t == *reply
                            || (t.starts_with(pre) && t.ends_with(post) && {
                                let name = &t[pre.len()..t.len() - post.len()];
                                name.is_empty()
                                    || (name.starts_with(", ") && user.contains(&name[2..]))
                            })
                    }
            });
            assert!(ok, "{ctx}");
        }
        "sentiment_classification" => {
            let lower = user.to_lowercase();
            let pos = workloads::POSITIVE
                .iter()
                .any(|p| lower.contains(&p.to_lowercase()));
            let neg = workloads::NEGATIVE
                .iter()
                .any(|p| lower.contains(&p.to_lowercase()));
            let expected = match (pos, neg) {
                (true, false) => "positive",
                (false, true) => "negative",
                (false, false) => "neutral",
                _ => panic!("{ctx}: mixed review"),
            };
            assert_eq!(text.unwrap(), expected, "{ctx}");
        }
        "lead_extraction" => {
            let v: Value = serde_json::from_str(text.unwrap()).unwrap();
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(
                keys,
                ["name", "company", "email", "phone", "seats"],
                "{ctx}"
            );
            for k in ["name", "company", "email"] {
                assert!(user.contains(s(&v, k)), "{ctx}: {k}");
            }
            if let Some(p) = v["phone"].as_str() {
                assert!(user.contains(p), "{ctx}");
            }
            assert!(
                user.contains(&v["seats"].as_u64().unwrap().to_string()),
                "{ctx}"
            );
        }
        other => panic!("unknown workload {other}"),
    }
}

#[test]
fn answers_are_consistent_with_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let c = SynthConfig {
        calls: 600,
        seed: 21,
        malformed: Some(0),
        formats: Some(vec![SourceFormat::OpenaiChat, SourceFormat::Anthropic]),
    };
    let (out, _) = gen(dir.path(), "calls.jsonl", &c);
    let bytes = read_all(&out);
    let ls = lines(&bytes);
    let labels = read_labels(&out);
    assert_eq!(ls.len(), 600);
    let mut per_workload = BTreeMap::<&str, usize>::new();
    let mut multi_turn = 0;
    for (line, _, workload, format) in &labels.calls {
        let v: Value = serde_json::from_slice(ls[line - 1]).unwrap();
        let (user, tool_result, text, calls) = extract(format, &v);
        assert!(!user.is_empty(), "line {line}: no user text");
        let words = user.split_whitespace().count();
        assert!(words <= 120, "line {line}: user message of {words} words");
        if !tool_result.is_empty() {
            multi_turn += 1;
        }
        check_consistent(workload, &user, &tool_result, text.as_deref(), &calls);
        *per_workload.entry(workload.as_str()).or_default() += 1;
    }
    assert_eq!(per_workload.len(), 10);
    assert!(
        multi_turn > 10,
        "multi-turn tool conversations present ({multi_turn})"
    );
}

#[test]
fn same_input_same_answer_and_no_duplicate_calls() {
    // The answer is a function of the input: identical requests never get
    // different answers; and slot variety makes identical requests rare.
    let dir = tempfile::tempdir().unwrap();
    let c = SynthConfig {
        calls: 1000,
        seed: 5,
        malformed: Some(0),
        formats: Some(vec![SourceFormat::OpenaiChat]),
    };
    let (out, _) = gen(dir.path(), "calls.jsonl", &c);
    let bytes = read_all(&out);
    let mut by_input: HashMap<String, String> = HashMap::new();
    let mut dup = 0;
    for l in lines(&bytes) {
        let v: Value = serde_json::from_slice(l).unwrap();
        let (user, tool_result, text, calls) = extract("openai_chat", &v);
        let req = if v.get("request").is_some() {
            &v["request"]
        } else {
            &v
        };
        let system = text_of(&req["messages"][0]["content"]);
        let key = format!("{system}\u{0}{user}\u{0}{tool_result}");
        let answer = format!(
            "{text:?}{:?}",
            calls
                .iter()
                .map(|(n, a)| format!("{n}{a}"))
                .collect::<Vec<_>>()
        );
        if let Some(prev) = by_input.insert(key, answer.clone()) {
            dup += 1;
            assert_eq!(prev, answer);
        }
    }
    assert!(dup <= 2, "{dup} duplicate inputs out of 1000");
}

#[test]
fn generated_pii_has_valid_checksums_and_lookalikes_do_not() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for _ in 0..500 {
        let c = pii::card(&mut rng);
        assert!(pii::luhn_valid(&c), "card {c}");
        let i = pii::iban(&mut rng, "");
        assert!(pii::iban_valid(&i), "iban {i}");
        let o = pii::order_number_16(&mut rng);
        assert_eq!(o.chars().filter(|c| c.is_ascii_digit()).count(), 16);
        assert!(!pii::luhn_valid(&o), "order number {o} passes Luhn");
    }
    assert!(pii::iban_valid("DE89 3704 0044 0532 0130 00"));
    assert!(!pii::iban_valid("DE88 3704 0044 0532 0130 00"));
    assert!(pii::luhn_valid("4111 1111 1111 1111"));
    assert!(!pii::luhn_valid("4111 1111 1111 1112"));
}

#[test]
fn gz_and_zst_hold_the_same_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(200, 9);
    let (plain, _) = gen(dir.path(), "x.jsonl", &c);
    let (gz, _) = gen(dir.path(), "y.jsonl.gz", &c);
    let (zst, _) = gen(dir.path(), "z.jsonl.zst", &c);
    let p = read_all(&plain);
    assert_eq!(read_all(&gz), p);
    assert_eq!(read_all(&zst), p);
    assert!(std::fs::metadata(&gz).unwrap().len() * 3 < p.len() as u64);
    assert_eq!(
        std::fs::read(labels_path(&plain)).unwrap(),
        std::fs::read(labels_path(&gz)).unwrap()
    );
    assert_eq!(
        std::fs::read(labels_path(&plain)).unwrap(),
        std::fs::read(labels_path(&zst)).unwrap()
    );
    assert!(synthesize(&c, &dir.path().join("bad.json")).is_err());
}

#[test]
fn cli_writes_only_the_requested_formats_and_rejects_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub/calls.jsonl");
    let o = std::process::Command::new(crate::common::bin())
        .args([
            "synth",
            "--calls",
            "60",
            "--seed",
            "4",
            "--formats",
            "otel,anthropic",
            "--out",
        ])
        .arg(&out)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "one-line summary: {stderr}");
    let labels = read_labels(&out);
    let formats: BTreeSet<&str> = labels.calls.iter().map(|c| c.3.as_str()).collect();
    assert_eq!(formats, ["anthropic", "otel"].into_iter().collect());
    assert_eq!(labels.calls.len(), 60);

    let o = std::process::Command::new(crate::common::bin())
        .args(["synth", "--calls", "5", "--formats", "csv", "--out"])
        .arg(dir.path().join("x.jsonl"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn committed_sample_matches_its_documented_command() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/sample");
    let sample = root.join("calls.jsonl.gz");
    if !sample.exists() {
        panic!("datasets/sample/calls.jsonl.gz is missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let c = SynthConfig {
        calls: 3000,
        seed: 7,
        malformed: Some(20),
        formats: None,
    };
    let (out, s) = gen(dir.path(), "calls.jsonl.gz", &c);
    assert_eq!(
        read_all(&out),
        read_all(&sample),
        "regenerate the sample: see datasets/sample/README.md"
    );
    assert_eq!(
        std::fs::read(labels_path(&out)).unwrap(),
        std::fs::read(labels_path(&sample)).unwrap()
    );
    assert!(s.per_workload.values().all(|&n| n == 300));
}
