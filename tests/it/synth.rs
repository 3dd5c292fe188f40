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
    self, hard, labels_path, pii, synthesize, workload_names, workloads, SynthConfig,
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

// ---------------------------------------------------------------- hard profile

fn gen_hard(
    dir: &Path,
    name: &str,
    calls: usize,
    seed: u64,
    malformed: Option<usize>,
) -> (PathBuf, synth::SynthSummary) {
    let out = dir.join(name);
    let c = SynthConfig {
        calls,
        seed,
        malformed,
        formats: None,
    };
    let s = synth::synthesize_profile(&c, synth::Profile::Hard, &out).unwrap();
    (out, s)
}

/// A hard file after `ingest`: the report, every written row with the
/// label of its (line, index), and the labelled calls that were not written.
struct Ingested {
    report: slmforge::ingest::IngestReport,
    rows: Vec<(String, slmforge::artifact::calls::CallRow)>,
    missing: Vec<(usize, usize, String)>,
    malformed: usize,
}

fn ingest_labelled(out: &Path, dir: &Path) -> Ingested {
    let mut icfg = slmforge::ingest::IngestConfig::new(
        slmforge::redact::RedactKey::from_bytes(b"slmforge-test-key-0123456789").unwrap(),
        slmforge::ingest::KeySource::File,
    );
    icfg.progress = false;
    let ds = dir.join("ds");
    let report = slmforge::ingest::run(&icfg, &[out.to_path_buf()], &ds)
        .unwrap()
        .report;
    let labels = read_labels(out);
    let by_pos: HashMap<(usize, usize), &str> = labels
        .calls
        .iter()
        .map(|(l, i, w, _)| ((*l, *i), w.as_str()))
        .collect();
    let mut written = BTreeSet::new();
    let rows: Vec<(String, slmforge::artifact::calls::CallRow)> =
        slmforge::artifact::calls::read_rows(&ds)
            .unwrap()
            .into_iter()
            .map(|r| {
                let pos = (r.source_line as usize, r.source_index as usize);
                written.insert(pos);
                let w = by_pos
                    .get(&pos)
                    .unwrap_or_else(|| panic!("row at {pos:?} has no label"));
                (w.to_string(), r)
            })
            .collect();
    let missing = labels
        .calls
        .iter()
        .filter(|(l, i, _, _)| !written.contains(&(*l, *i)))
        .map(|(l, i, w, _)| (*l, *i, w.clone()))
        .collect();
    Ingested {
        report,
        rows,
        missing,
        malformed: labels.malformed.len(),
    }
}

/// 600 hard calls, generated and ingested once for all the tests below.
fn hard600() -> &'static Ingested {
    static H: std::sync::OnceLock<Ingested> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (out, s) = gen_hard(dir.path(), "hard.jsonl.gz", 600, 5, None);
        assert_eq!(s.profile, "hard");
        ingest_labelled(&out, dir.path())
    })
}

fn rows_of<'a>(h: &'a Ingested, label: &str) -> Vec<&'a slmforge::artifact::calls::CallRow> {
    let v: Vec<_> = h
        .rows
        .iter()
        .filter(|(w, _)| w == label)
        .map(|(_, r)| r)
        .collect();
    assert!(v.len() >= 10, "{label}: only {} calls", v.len());
    v
}

fn tool_names(r: &slmforge::artifact::calls::CallRow) -> Vec<&str> {
    r.tool_names.split(',').filter(|s| !s.is_empty()).collect()
}

/// The rows whose record logs the offered tools (OTel event-style spans
/// carry no tool definitions); most must.
fn with_tools<'a>(
    rows: &[&'a slmforge::artifact::calls::CallRow],
) -> Vec<&'a slmforge::artifact::calls::CallRow> {
    let v: Vec<_> = rows
        .iter()
        .copied()
        .filter(|r| !r.tool_names.is_empty())
        .collect();
    assert!(
        v.len() * 100 >= rows.len() * 75,
        "{} of {} rows log their tools",
        v.len(),
        rows.len()
    );
    for r in rows.iter().filter(|r| r.tool_names.is_empty()) {
        assert_eq!(r.source_format, "otel");
    }
    v
}

fn roles(r: &slmforge::artifact::calls::CallRow) -> Vec<String> {
    let m: Value = serde_json::from_str(&r.messages_json).unwrap();
    m.as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string())
        .collect()
}

fn assert_ingested_cleanly(h: &Ingested, calls: usize) {
    assert!(
        h.missing.is_empty(),
        "labelled calls not written: {:?}",
        &h.missing[..h.missing.len().min(10)]
    );
    assert_eq!(h.rows.len(), calls);
    assert_eq!(h.report.written as usize, calls);
    assert_eq!(h.report.duplicates, 0);
    assert_eq!(
        h.report.quarantined as usize, h.malformed,
        "only the malformed records are quarantined: {:?}",
        h.report.quarantine_reasons
    );
}

#[test]
fn hard_profile_ingests_every_call_and_quarantines_only_the_malformed() {
    let h = hard600();
    assert_ingested_cleanly(h, 600);
    assert_eq!(h.malformed, 3);
}

#[test]
fn hard_fc_calls_offer_changing_tool_sets_and_call_an_offered_tool() {
    let h = hard600();
    let rows = with_tools(&rows_of(h, "fc_call"));
    let mut sets = BTreeSet::new();
    let mut systems = BTreeSet::new();
    let mut called = BTreeSet::new();
    for r in &rows {
        let offered = tool_names(r);
        assert!((1..=4).contains(&offered.len()), "{}", r.tool_names);
        sets.insert(offered.iter().copied().collect::<BTreeSet<_>>());
        systems.insert(r.system_prompt.clone());
        assert_eq!(r.response_kind, "tool_call");
        let calls: Value = serde_json::from_str(&r.response_tool_calls_json).unwrap();
        let calls = calls.as_array().unwrap();
        assert_eq!(calls.len(), 1);
        let name = calls[0]["name"].as_str().unwrap();
        assert!(offered.contains(&name), "{name} not offered: {offered:?}");
        called.insert(name.to_string());
        // The arguments fit the offered schema: required keys present, no unknown keys.
        let tools: Value = serde_json::from_str(&r.tools_json).unwrap();
        let def = tools
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap();
        let args = calls[0]["arguments"].as_object().unwrap();
        for k in def["parameters"]["required"].as_array().unwrap() {
            assert!(
                args.contains_key(k.as_str().unwrap()),
                "{name}: {k} missing"
            );
        }
        let props = def["parameters"]["properties"].as_object().unwrap();
        for k in args.keys() {
            assert!(props.contains_key(k), "{name}: unknown argument {k}");
        }
    }
    assert!(
        sets.len() * 100 > rows.len() * 80,
        "offered tool sets: {} distinct of {}",
        sets.len(),
        rows.len()
    );
    assert!(systems.len() <= 3, "generic system prompts: {systems:?}");
    assert!(called.len() >= 30, "{} functions called", called.len());
    assert!(hard::fc_pool_size() >= 40);
}

#[test]
fn hard_fc_refusals_are_text_and_call_nothing() {
    let h = hard600();
    let fc_systems: BTreeSet<String> = rows_of(h, "fc_call")
        .iter()
        .map(|r| r.system_prompt.clone())
        .collect();
    let rows = rows_of(h, "fc_refusal");
    for r in with_tools(&rows) {
        assert!((1..=4).contains(&tool_names(r).len()), "{}", r.tool_names);
    }
    for r in rows {
        assert_eq!(r.response_kind, "text");
        assert!(r.called_tools.is_empty());
        assert!(fc_systems.contains(&r.system_prompt));
        let t = r.response_text.as_deref().unwrap();
        assert!(t.contains("none of the"), "{t}");
    }
}

#[test]
fn hard_bank_no_call_shares_prompt_and_tools_with_bank_call() {
    let h = hard600();
    let calls = rows_of(h, "bank_call");
    let no_calls = rows_of(h, "bank_no_call");
    let prompts: BTreeSet<&str> = calls
        .iter()
        .chain(&no_calls)
        .map(|r| r.system_prompt.as_str())
        .collect();
    let all: Vec<_> = calls.iter().chain(&no_calls).copied().collect();
    let tools: BTreeSet<&str> = with_tools(&all)
        .iter()
        .map(|r| r.tools_json.as_str())
        .collect();
    assert_eq!(prompts.len(), 1, "one fixed system prompt");
    assert_eq!(tools.len(), 1, "one fixed tool list");
    assert!((4..=6).contains(&tool_names(with_tools(&all)[0]).len()));
    for r in &calls {
        assert_eq!(r.response_kind, "tool_call");
    }
    let mut questions = 0;
    for r in &no_calls {
        assert_eq!(r.response_kind, "text");
        let t = r.response_text.as_deref().unwrap();
        if t.starts_with("I'm sorry") {
            assert!(t.contains("I can check balances"), "{t}");
        } else {
            assert!(t.contains('?'), "a clarifying question: {t}");
            questions += 1;
        }
    }
    assert!(
        questions > 0 && questions < no_calls.len(),
        "both clarifying questions and refusals"
    );
    let share = no_calls.len() as f64 / (calls.len() + no_calls.len()) as f64;
    assert!((0.15..0.35).contains(&share), "no-call share {share}");
}

#[test]
fn hard_multiapi_shares_one_prompt_and_tools_and_each_label_calls_its_api() {
    let h = hard600();
    let mut prompts = BTreeSet::new();
    let mut tools = BTreeSet::new();
    let labels = ["multiapi_flights", "multiapi_hotels", "multiapi_cars"];
    for (label, prefix) in labels.into_iter().zip(hard::MULTI_PREFIXES) {
        let mut used = BTreeSet::new();
        let rows = rows_of(h, label);
        for r in with_tools(&rows) {
            tools.insert(r.tools_json.clone());
            assert_eq!(tool_names(r).len(), 9);
        }
        for r in rows {
            prompts.insert(r.system_prompt.clone());
            assert_eq!(r.response_kind, "tool_call");
            for c in r.called_tools.split(',') {
                assert!(c.starts_with(prefix), "{label} called {c}");
                used.insert(c.to_string());
            }
        }
        assert!(used.len() >= 2, "{label} uses several tools of its API");
    }
    assert_eq!(prompts.len(), 1);
    assert_eq!(tools.len(), 1);
}

#[test]
fn hard_ops_calls_carry_a_tool_result_before_the_answer() {
    let h = hard600();
    // One label for both steps of the loop: the next tool call, and the
    // final text answer.
    let all = rows_of(h, "ops_agent");
    for kind in ["tool_call", "text"] {
        let label = kind;
        let mut two_rounds = 0;
        let rows: Vec<_> = all.iter().filter(|r| r.response_kind == kind).collect();
        assert!(rows.len() >= 10, "{kind}: {}", rows.len());
        for r in rows {
            let roles = roles(r);
            assert_eq!(
                roles.last().map(String::as_str),
                Some("tool"),
                "{label}: {roles:?}"
            );
            let a = roles.iter().position(|x| x == "assistant").unwrap();
            let u = roles.iter().position(|x| x == "user").unwrap();
            assert!(u < a, "{roles:?}");
            if roles.iter().filter(|x| *x == "tool").count() == 2 {
                two_rounds += 1;
            }
        }
        if label == "text" {
            assert!(two_rounds > 0, "some final answers follow two tool rounds");
        } else {
            assert_eq!(two_rounds, 0);
        }
    }
}

#[test]
fn hard_extraction_schemas_differ_only_in_the_schema() {
    let h = hard600();
    for (i, label) in ["extract_schema_a", "extract_schema_b"].iter().enumerate() {
        for r in rows_of(h, label) {
            assert!(tool_names(r).is_empty());
            let generic = r
                .system_prompt
                .replace(hard::EXTRACT_SCHEMAS[i], "{schema}");
            assert!(
                hard::EXTRACT_SYSTEM.contains(&generic.as_str()),
                "{label}: {}",
                r.system_prompt
            );
            assert_eq!(r.response_kind, "json");
            let v: Value = serde_json::from_str(r.response_text.as_deref().unwrap()).unwrap();
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(keys, hard::EXTRACT_KEYS[i], "{label}");
        }
    }
    let a: BTreeSet<&str> = hard::EXTRACT_KEYS[0].iter().copied().collect();
    let b: BTreeSet<&str> = hard::EXTRACT_KEYS[1].iter().copied().collect();
    assert!(a.is_disjoint(&b));
}

#[test]
fn hard_sizes_are_unbalanced_with_a_tail_of_one_offs() {
    let dir = tempfile::tempdir().unwrap();
    for (n, min_oneoffs) in [(600, 10), (2000, 35)] {
        let (out, s) = gen_hard(dir.path(), &format!("h{n}.jsonl"), n, 3, Some(0));
        assert_eq!(s.per_workload.values().sum::<usize>(), n);
        assert_eq!(read_labels(&out).calls.len(), n);
        let oneoffs: Vec<usize> = s
            .per_workload
            .iter()
            .filter(|(w, _)| w.starts_with("oneoff_"))
            .map(|(_, &c)| c)
            .collect();
        assert!(
            oneoffs.len() >= min_oneoffs,
            "{n}: {} one-offs",
            oneoffs.len()
        );
        assert!(oneoffs.iter().all(|&c| c == 1));
        assert_eq!(oneoffs.len(), hard::oneoff_count(n));
        assert!(oneoffs.len() <= hard::oneoff_table_len());
        let mut sizes: Vec<usize> = s
            .per_workload
            .iter()
            .filter(|(w, _)| !w.starts_with("oneoff_"))
            .map(|(_, &c)| c)
            .collect();
        sizes.sort();
        let median = sizes[sizes.len() / 2];
        let largest = *sizes.last().unwrap();
        assert!(
            largest >= 5 * median,
            "{n}: largest {largest}, median {median}"
        );
        assert_eq!(
            s.per_workload.iter().max_by_key(|(_, &c)| c).unwrap().0,
            "fc_call"
        );
        for w in hard::LABELS.iter().chain(&hard::EASY_MIXED) {
            let c = s.per_workload[*w];
            assert!(c * 100 >= n * 2, "{n}: {w} has {c}");
        }
        // Both kinds of traffic: easy workloads mixed in at moderate sizes.
        let easy: BTreeSet<&str> = workload_names().into_iter().collect();
        let mixed: Vec<&String> = s
            .per_workload
            .keys()
            .filter(|w| easy.contains(w.as_str()))
            .collect();
        assert_eq!(mixed.len(), hard::EASY_MIXED.len(), "{mixed:?}");
    }
}

#[test]
fn hard_same_seed_same_bytes_other_seed_or_profile_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = gen_hard(dir.path(), "a.jsonl", 300, 11, None);
    let (b, _) = gen_hard(dir.path(), "b.jsonl", 300, 11, None);
    let (c, _) = gen_hard(dir.path(), "c.jsonl", 300, 12, None);
    let (e, _) = gen(dir.path(), "e.jsonl", &cfg(300, 11));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(
        std::fs::read(labels_path(&a)).unwrap(),
        std::fs::read(labels_path(&b)).unwrap()
    );
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&e).unwrap());
}

#[test]
fn hard_malformed_records_and_formats_mix_as_in_easy() {
    let dir = tempfile::tempdir().unwrap();
    let c = SynthConfig {
        calls: 200,
        seed: 9,
        malformed: Some(14),
        formats: Some(vec![SourceFormat::Anthropic, SourceFormat::Langsmith]),
    };
    let out = dir.path().join("m.jsonl");
    let s = synth::synthesize_profile(&c, synth::Profile::Hard, &out).unwrap();
    let labels = read_labels(&out);
    assert_eq!(labels.malformed.len(), 14);
    assert_eq!(s.malformed_reasons.values().sum::<usize>(), 14);
    assert!(s.malformed_reasons.len() >= 6, "{:?}", s.malformed_reasons);
    let formats: BTreeSet<&str> = labels.calls.iter().map(|c| c.3.as_str()).collect();
    assert_eq!(formats, ["anthropic", "langsmith"].into_iter().collect());
    let h = ingest_labelled(&out, dir.path());
    assert_ingested_cleanly(&h, 200);
}

#[test]
fn cli_profile_selects_the_traffic_and_rejects_unknown_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.jsonl");
    let o = std::process::Command::new(crate::common::bin())
        .args([
            "synth",
            "--profile",
            "hard",
            "--calls",
            "80",
            "--seed",
            "2",
            "--out",
        ])
        .arg(&out)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labels = read_labels(&out);
    assert_eq!(labels.calls.len(), 80);
    assert!(labels.calls.iter().any(|c| c.2 == "fc_call"));
    let c = SynthConfig {
        calls: 80,
        seed: 2,
        malformed: None,
        formats: None,
    };
    let lib = dir.path().join("l.jsonl");
    synth::synthesize_profile(&c, synth::Profile::Hard, &lib).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&lib).unwrap());

    let o = std::process::Command::new(crate::common::bin())
        .args(["synth", "--profile", "medium", "--calls", "5", "--out"])
        .arg(dir.path().join("x.jsonl"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(synth::Profile::parse("hard"), Some(synth::Profile::Hard));
    assert_eq!(synth::Profile::default(), synth::Profile::Easy);
}

#[test]
fn committed_hard_sample_matches_its_documented_command_and_ingests_cleanly() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/hard");
    let sample = root.join("calls.jsonl.gz");
    if !sample.exists() {
        panic!("datasets/hard/calls.jsonl.gz is missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, s) = gen_hard(dir.path(), "calls.jsonl.gz", 2000, 11, Some(10));
    assert_eq!(
        read_all(&out),
        read_all(&sample),
        "regenerate the sample: see datasets/hard/README.md"
    );
    assert_eq!(
        std::fs::read(labels_path(&out)).unwrap(),
        std::fs::read(labels_path(&sample)).unwrap()
    );
    assert_eq!(s.per_workload["fc_call"], 570);
    let h = ingest_labelled(&sample, dir.path());
    assert_ingested_cleanly(&h, 2000);
    assert_eq!(h.malformed, 10);
}
