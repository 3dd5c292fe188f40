//! Redaction: every entity kind in every field kind of a call, checksum
//! look-alikes kept, consistent and deterministic pseudonyms, key handling,
//! marker forgery, allow-list, precision on ordinary text, catch rates on
//! tricky fixtures.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde_json::{json, Value};
use slmforge::call::{Call, Message, RawCall, RedactedCall, Response, Role, ToolCall, ToolDef};
use slmforge::redact::*;

fn key() -> RedactKey {
    RedactKey::from_bytes(b"test-key-0123456789abcdef").unwrap()
}

fn redactor() -> Redactor {
    Redactor::new(RedactConfig::new(key())).unwrap()
}

/// Redacts one text and resolves its markers with a fresh table.
fn red(r: &Redactor, s: &str) -> String {
    let mut st = RedactStats::default();
    let mut out = r.redact_text(s, &mut st);
    Pseudonyms::new().resolve_text(&mut out);
    out
}

/// Each text redacted on its own leaves no trace of its raw value.
fn assert_gone(r: &Redactor, cases: &[(&str, &str)]) {
    for (s, raw) in cases {
        let out = red(r, s);
        assert!(!out.contains(raw), "{raw} left in {out}");
    }
}

/// Redacts calls in order through one pseudonym table.
fn redact_calls(r: &Redactor, calls: Vec<Call>) -> (Vec<RedactedCall>, RedactStats, Pseudonyms) {
    let mut st = RedactStats::default();
    let mut ps = Pseudonyms::new();
    let out = calls
        .into_iter()
        .map(|c| ps.finish(r.redact_call(RawCall::new(c), &mut st)))
        .collect();
    (out, st, ps)
}

/// Every string of a call (values and object keys), as one searchable text.
fn all_text(c: &Call) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => {
                for (k, x) in o {
                    out.push_str(k);
                    out.push('\n');
                    walk(x, out);
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    walk(&serde_json::to_value(&c.messages).unwrap(), &mut out);
    walk(&serde_json::to_value(&c.tools).unwrap(), &mut out);
    walk(&serde_json::to_value(&c.response).unwrap(), &mut out);
    walk(&Value::Object(c.metadata.clone()), &mut out);
    if let Some(x) = &c.client_id {
        out.push_str(x);
    }
    out
}

/// Asserts that every `(raw, TAG)` pair was replaced: `raw` is gone and a
/// `<TAG_n>` placeholder is present.
fn check(r: &Redactor, input: &str, expect: &[(&str, &str)]) {
    let out = red(r, input);
    for (raw, tag) in expect {
        assert!(!out.contains(raw), "{raw:?} survived in {out:?}");
        assert!(out.contains(&format!("<{tag}_")), "no <{tag}_n> in {out:?}");
    }
}

fn kept(r: &Redactor, input: &str) {
    let out = red(r, input);
    assert_eq!(out, input, "unexpected redaction");
}

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
const GITHUB: &str = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
const GITHUB_PAT: &str =
    "github_pat_11ABCDEFG0123456789abc_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab";
const OPENAI: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAB7cD0eF";
const OPENAI_LEGACY: &str = "sk-abcdefghij0123456789T3BlbkFJabcdefghij0123456789";
const ANTHROPIC: &str = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBaZx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa-AbCdEfGhIjKlMnOpQrStUvWxAA";
const SLACK: &str = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
const GOOGLE: &str = "AIzaSyA-1234567890abcdefghijklmnopqrstu";
const STRIPE: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
const HF: &str = "hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh";
const GITLAB: &str = "glpat-Ab1Cd2Ef3Gh4Ij5Kl6Mn";
const JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

#[test]
fn every_entity_kind_in_free_text() {
    let r = redactor();
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("Write to jane.doe@example.org today.", &[("jane.doe@example.org", "EMAIL")]),
        ("Call +44 20 7946 0958 or (415) 555-2671.", &[("7946 0958", "PHONE"), ("555-2671", "PHONE")]),
        ("Card 4111 1111 1111 1111 exp 12/27.", &[("4111 1111 1111 1111", "CREDIT_CARD")]),
        ("IBAN DE89 3704 0044 0532 0130 00 please.", &[("DE89 3704 0044 0532 0130 00", "IBAN")]),
        ("SSN 123-45-6789 on file.", &[("123-45-6789", "SSN")]),
        ("Client 203.0.113.42 and 2001:db8::8a2e:370:7334.", &[("203.0.113.42", "IP_ADDRESS"), ("2001:db8::8a2e:370:7334", "IP_ADDRESS")]),
        ("Device 00:1A:2B:3C:4D:5E joined.", &[("00:1A:2B:3C:4D:5E", "MAC_ADDRESS")]),
        ("I was born on 12 March 1985 in Leeds.", &[("12 March 1985", "DATE_OF_BIRTH")]),
        ("Ship to 221B Baker Street, London NW1 6XE.", &[("Baker Street", "ADDRESS"), ("NW1 6XE", "ADDRESS")]),
        ("My name is Xochitl Ramirez.", &[("Xochitl", "PERSON"), ("Ramirez", "PERSON")]),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1b2c3d4e5f6\nZmFrZWtleWJ5dGVz\n-----END RSA PRIVATE KEY-----", &[("MIIEowIBAAKCAQEA1b2c3d4e5f6", "SECRET"), ("ZmFrZWtleWJ5dGVz", "SECRET")]),
        ("config: password=Tr0ub4dor&3x", &[("Tr0ub4dor&3x", "SECRET")]),
        ("api_key: \"q8Zr2LmX91kPw0Vb\"", &[("q8Zr2LmX91kPw0Vb", "SECRET")]),
    ];
    for (input, expect) in cases {
        check(&r, input, expect);
    }
    for secret in [
        AWS,
        GITHUB,
        GITHUB_PAT,
        OPENAI,
        OPENAI_LEGACY,
        ANTHROPIC,
        SLACK,
        GOOGLE,
        STRIPE,
        HF,
        GITLAB,
        JWT,
    ] {
        check(
            &r,
            &format!("the key is {secret} ok"),
            &[(secret, "SECRET")],
        );
    }
    let out = red(
        &r,
        "hook https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX done",
    );
    assert!(
        out.starts_with("hook https://hooks.slack.com/services/<SECRET_1>"),
        "{out}"
    );
}

#[test]
fn urls_keep_everything_but_the_secret() {
    let r = redactor();
    let out = red(
        &r,
        "db at postgres://admin:hunter2pass@db.internal:5432/app now",
    );
    assert_eq!(
        out,
        "db at postgres://<CREDENTIALS_1>@db.internal:5432/app now"
    );
    let out = red(
        &r,
        "GET https://api.example.com/v1/items?page=2&access_token=abcDEF123456xyz&sort=asc",
    );
    assert_eq!(
        out,
        "GET https://api.example.com/v1/items?page=2&access_token=<SECRET_1>&sort=asc"
    );
    let out = red(&r, "https://bucket.s3.amazonaws.com/f.pdf?X-Amz-Signature=9f8e7d6c5b4a39281706&X-Amz-Expires=300");
    assert_eq!(
        out,
        "https://bucket.s3.amazonaws.com/f.pdf?X-Amz-Signature=<SECRET_1>&X-Amz-Expires=300"
    );
    // a plain query is left alone
    kept(
        &r,
        "See https://example.com/search?q=rust+regex&page=3 for details.",
    );
}

#[test]
fn stats_count_each_secret_kind_separately() {
    let r = redactor();
    let mut st = RedactStats::default();
    let text = format!("{AWS} {GITHUB} {OPENAI} {ANTHROPIC} {SLACK} {GOOGLE} {STRIPE} {HF} {GITLAB} {JWT} x@example.com");
    r.redact_text(&text, &mut st);
    for k in [
        "secret_aws",
        "secret_github",
        "secret_openai",
        "secret_anthropic",
        "secret_slack",
        "secret_google",
        "secret_stripe",
        "secret_huggingface",
        "secret_gitlab",
        "secret_jwt",
        "email",
    ] {
        assert_eq!(st.by_kind.get(k), Some(&1), "{k} in {:?}", st.by_kind);
    }
    assert_eq!(st.total(), 11);
    let mut other = RedactStats::default();
    r.redact_text("a@example.com", &mut other);
    st.merge(&other);
    assert_eq!(st.by_kind["email"], 2);
    assert_eq!(st.total(), 12);
}

/// A call with the same entities planted in every field kind.
fn full_call() -> Call {
    let mut c = Call::default();
    c.messages.push(Message::text(
        Role::System,
        "You assist the account of Dr. Amara Okafor (amara.okafor@clinic.example).",
    ));
    c.messages.push(Message::text(
        Role::User,
        "Hi, my card 4111 1111 1111 1111 was declined. Call me on +44 20 7946 0958.",
    ));
    let mut named = Message::text(Role::User, "And my SSN is 123-45-6789.");
    named.name = Some("Priya Natarajan".into());
    c.messages.push(named);
    c.messages.push(Message {
        role: Role::Assistant,
        content: None,
        tool_calls: vec![
            ToolCall {
                id: Some("call_1".into()),
                name: "lookup_customer".into(),
                arguments: json!({
                    "customer_name": "Tendai Moyo",
                    "email": "tendai@moyo-family.example",
                    "user_id": 884213,
                    "client_ip": "198.51.100.23",
                    "note": "IBAN GB82 WEST 1234 5698 7654 32, token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
                    "attendees": ["Alice Johnson", "Bob Lee"],
                    "filters": {"status": "open", "since": "2024-01-31"}
                }),
                arguments_valid: true,
            },
            ToolCall {
                id: Some("call_2".into()),
                name: "broken".into(),
                arguments: Value::String("{\"email\": \"zoe@brokenjson.example\", \"phone\": \"+1 415 555 2671\"".into()),
                arguments_valid: false,
            },
        ],
        tool_call_id: None,
        name: None,
    });
    let mut tool = Message::text(
        Role::Tool,
        r#"{"customer": {"full_name": "Tendai Moyo", "dob": "1984-07-09", "address": "42 Elm Road, Springfield, IL 62701", "ip": "198.51.100.23", "mac": "00:1a:2b:3c:4d:5e"}}"#,
    );
    tool.tool_call_id = Some("call_1".into());
    c.messages.push(tool);
    c.tools.push(ToolDef {
        name: "lookup_customer".into(),
        description: Some("Looks up a customer. Example: lookup jane.roe@example.net; escalate to Mr. Kowalski.".into()),
        parameters: json!({
            "type": "object",
            "properties": {
                "email": {"type": "string", "description": "Customer e-mail", "examples": ["mark.twain@samples.example"]},
                "api_key": {"type": "string", "default": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}
            }
        }),
    });
    c.response = Response {
        content: Some("Thanks Tendai, I emailed tendai@moyo-family.example and the server 198.51.100.23 is fine.".into()),
        tool_calls: vec![ToolCall {
            id: Some("call_3".into()),
            name: "send_sms".into(),
            arguments: json!({"phone": "+44 20 7946 0958", "text": "Your AWS key AKIAIOSFODNN7EXAMPLE was rotated"}),
            arguments_valid: true,
        }],
        finish_reason: Some("tool_calls".into()),
    };
    c.client_id = Some("ops+alerts@tenant.example".into());
    c.metadata.insert("user_id".into(), json!("u_77123"));
    c.metadata.insert("ip".into(), json!("203.0.113.9"));
    c.metadata.insert(
        "trace".into(),
        json!({"end_user": "customer-4471", "tags": ["vip", "born 1960-05-04"]}),
    );
    c
}

const PLANTED: &[&str] = &[
    "Amara",
    "Okafor",
    "amara.okafor@clinic.example",
    "4111 1111 1111 1111",
    "7946 0958",
    "123-45-6789",
    "Priya",
    "Natarajan",
    "Tendai",
    "Moyo",
    "tendai@moyo-family.example",
    "884213",
    "198.51.100.23",
    "GB82 WEST",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "Alice Johnson",
    "Bob Lee",
    "zoe@brokenjson.example",
    "555 2671",
    "1984-07-09",
    "42 Elm Road",
    "00:1a:2b:3c:4d:5e",
    "jane.roe@example.net",
    "Kowalski",
    "mark.twain@samples.example",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "AKIAIOSFODNN7EXAMPLE",
    "ops+alerts@tenant.example",
    "u_77123",
    "203.0.113.9",
    "customer-4471",
    "1960-05-04",
];

#[test]
fn every_field_kind_of_a_call_is_redacted() {
    let r = redactor();
    let (out, stats, _) = redact_calls(&r, vec![full_call()]);
    let c = &out[0];
    let m = &c.messages;
    assert!(
        m[0].content.as_ref().unwrap().contains("Dr. <PERSON_"),
        "{:?}",
        m[0].content
    );
    assert!(m[0].content.as_ref().unwrap().contains("<EMAIL_"));
    assert!(m[1].content.as_ref().unwrap().contains("<CREDIT_CARD_1>"));
    assert!(m[1].content.as_ref().unwrap().contains("<PHONE_1>"));
    assert!(m[2].content.as_ref().unwrap().contains("<SSN_1>"));
    assert!(
        m[2].name.as_ref().unwrap().starts_with("<PERSON_"),
        "{:?}",
        m[2].name
    );
    // tool-call arguments: by key, numbers included, arrays of names, free text inside
    let args = &m[3].tool_calls[0].arguments;
    assert!(args["customer_name"]
        .as_str()
        .unwrap()
        .starts_with("<PERSON_"));
    assert!(args["email"].as_str().unwrap().starts_with("<EMAIL_"));
    assert!(
        args["user_id"].as_str().unwrap().starts_with("<USER_ID_"),
        "{args}"
    );
    assert!(args["client_ip"]
        .as_str()
        .unwrap()
        .starts_with("<IP_ADDRESS_"));
    assert!(
        args["note"].as_str().unwrap().contains("<IBAN_1>"),
        "{args}"
    );
    assert!(args["note"].as_str().unwrap().contains("<SECRET_"));
    assert!(args["attendees"][0]
        .as_str()
        .unwrap()
        .starts_with("<PERSON_"));
    assert_eq!(
        args["filters"]["since"], "2024-01-31",
        "an ordinary date stays"
    );
    // invalid arguments are redacted as text and stay a string
    let raw = m[3].tool_calls[1].arguments.as_str().unwrap();
    assert!(raw.contains("<EMAIL_") && raw.contains("<PHONE_"), "{raw}");
    // tool result (JSON text)
    let tr = m[4].content.as_ref().unwrap();
    for tag in [
        "<PERSON_",
        "<DATE_OF_BIRTH_",
        "<ADDRESS_",
        "<IP_ADDRESS_",
        "<MAC_ADDRESS_",
    ] {
        assert!(tr.contains(tag), "{tag} missing in {tr}");
    }
    assert!(
        serde_json::from_str::<Value>(tr).is_ok(),
        "tool result still parses: {tr}"
    );
    // tool description and JSON-schema examples/defaults
    let t = &c.tools[0];
    assert!(t.description.as_ref().unwrap().contains("<EMAIL_"));
    assert!(t.description.as_ref().unwrap().contains("Mr. <PERSON_"));
    assert!(t.parameters["properties"]["email"]["examples"][0]
        .as_str()
        .unwrap()
        .starts_with("<EMAIL_"));
    assert!(t.parameters["properties"]["api_key"]["default"]
        .as_str()
        .unwrap()
        .starts_with("<SECRET_"));
    assert_eq!(t.parameters["properties"]["email"]["type"], "string");
    // response text and response tool calls
    let resp = c.response.content.as_ref().unwrap();
    assert!(
        resp.contains("<EMAIL_") && resp.contains("<IP_ADDRESS_") && resp.contains("<PERSON_"),
        "{resp}"
    );
    let ra = &c.response.tool_calls[0].arguments;
    assert_eq!(
        ra["phone"], "<PHONE_1>",
        "same phone, same placeholder: {ra}"
    );
    assert!(ra["text"].as_str().unwrap().contains("<SECRET_"));
    // client id and metadata
    assert!(c.client_id.as_ref().unwrap().starts_with("<EMAIL_"));
    assert!(c.metadata["user_id"]
        .as_str()
        .unwrap()
        .starts_with("<USER_ID_"));
    assert!(c.metadata["ip"]
        .as_str()
        .unwrap()
        .starts_with("<IP_ADDRESS_"));
    assert!(c.metadata["trace"]["end_user"]
        .as_str()
        .unwrap()
        .starts_with("<USER_ID_"));
    assert!(c.metadata["trace"]["tags"][1]
        .as_str()
        .unwrap()
        .contains("<DATE_OF_BIRTH_"));
    assert_eq!(c.metadata["trace"]["tags"][0], "vip");
    // structure that is not text is untouched
    assert_eq!(m[3].tool_calls[0].name, "lookup_customer");
    assert_eq!(m[4].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(c.response.finish_reason.as_deref(), Some("tool_calls"));
    assert!(stats.total() >= 30, "{stats:?}");
}

#[test]
fn canaries_never_appear_in_any_output_string() {
    let r = redactor();
    let (out, stats, ps) = redact_calls(&r, vec![full_call(), full_call()]);
    for c in &out {
        let text = all_text(c);
        for canary in PLANTED {
            assert!(!text.contains(canary), "canary {canary:?} leaked");
            assert!(
                !text.to_lowercase().contains(&canary.to_lowercase()),
                "canary {canary:?} leaked (case)"
            );
        }
        assert!(!has_pending_marker(&text));
    }
    // the pseudonym table and the stats hold no raw value either
    let table =
        serde_json::to_string(&ps.to_table()).unwrap() + &serde_json::to_string(&stats).unwrap();
    for canary in PLANTED {
        assert!(!table.contains(canary));
    }
    // both copies of the call were redacted identically
    assert_eq!(out[0], out[1]);
}

#[test]
fn tool_call_arguments_still_parse_as_json() {
    let r = redactor();
    let (out, _, _) = redact_calls(&r, vec![full_call()]);
    for m in &out[0].messages {
        for tc in &m.tool_calls {
            let s = serde_json::to_string(&tc.arguments).unwrap();
            let back: Value = serde_json::from_str(&s).unwrap();
            assert_eq!(back, tc.arguments);
        }
    }
    let args = &out[0].messages[3].tool_calls[0].arguments;
    let s = serde_json::to_string(args).unwrap();
    assert!(s.contains("\"customer_name\":\"<PERSON_"), "{s}");
    assert!(!s.contains('\u{E000}'));
}

#[test]
fn checksum_and_context_lookalikes_are_kept() {
    let r = redactor();
    // 16-digit order number failing Luhn; a Luhn-valid number with no card prefix
    kept(
        &r,
        "Your order number is 4111 1111 1111 1112 and ref 1234 5678 9012 3452.",
    );
    // IBAN with a wrong check digit, and a right one for contrast
    kept(&r, "Pay to DE89 3704 0044 0532 0130 01 please.");
    check(
        &r,
        "Pay to DE89 3704 0044 0532 0130 00 please.",
        &[("0130 00", "IBAN")],
    );
    // invalid IPs; loopback and unspecified are not personal
    kept(
        &r,
        "Bad addresses 999.1.1.1 and 256.300.1.1; local 127.0.0.1 and 0.0.0.0.",
    );
    // version numbers: with a version word or a v prefix they are kept...
    kept(
        &r,
        "Upgrade to version 1.2.3.4 (also v2.0.1.7, pkg==4.3.2.1).",
    );
    // ...a bare dotted quad parses as an address and is redacted (documented choice)
    check(
        &r,
        "Resolved to 1.2.3.4 today.",
        &[("1.2.3.4", "IP_ADDRESS")],
    );
    // SSNs with impossible area, group or serial
    kept(
        &r,
        "Numbers 000-12-3456, 666-12-3456, 912-12-3456, 123-00-4567 and 123-45-0000.",
    );
    // dates that are not birth dates
    kept(
        &r,
        "The meeting is on 1985-03-12 and the invoice is due 12/03/2024.",
    );
    kept(
        &r,
        "The company was founded on 1984-06-04 and listed on 06/04/1994.",
    );
    // a birth-date context with an impossible date
    kept(&r, "Her birthday is 31/04/1990, which does not exist.");
    // phone-shaped dates, order numbers, versions and timestamps
    kept(
        &r,
        "Dates 2024-01-15, 15.01.2024 and 01-02-2024; order #555-123-4567; invoice 555-123-4567.",
    );
    kept(
        &r,
        "Build 10.2.3 shipped at 1718035200123; ISBN 978-3-16-148410-0; price 1,234,567.89.",
    );
    // MAC-like time stamps and ordinary colons
    kept(&r, "At 10:30:00 the job ran; ratio 3:2; see std::vec::Vec.");
}

#[test]
fn pseudonyms_are_consistent_within_and_across_calls() {
    let r = redactor();
    let mk = |text: &str| {
        let mut c = Call::default();
        c.messages.push(Message::text(Role::User, text));
        c
    };
    let calls = vec![
        mk("Mail ann@example.com or bob@example.com; again ann@example.com."),
        mk("Forward to ANN@Example.COM and carol@example.com."),
        mk("Phone +1 (415) 555-2671 then +1 415 555 2671 and Dr. Sarah Lee, then dr. SARAH  LEE"),
    ];
    let (out, _, ps) = redact_calls(&r, calls);
    assert_eq!(
        out[0].messages[0].content.as_deref(),
        Some("Mail <EMAIL_1> or <EMAIL_2>; again <EMAIL_1>.")
    );
    assert_eq!(
        out[1].messages[0].content.as_deref(),
        Some("Forward to <EMAIL_1> and <EMAIL_3>.")
    );
    let third = out[2].messages[0].content.as_deref().unwrap();
    assert!(
        third.starts_with("Phone <PHONE_1> then <PHONE_1> and Dr. <PERSON_1>"),
        "{third}"
    );
    let counts = ps.distinct_counts();
    assert_eq!(counts["email"], 3);
    assert_eq!(counts["phone"], 1);
}

#[test]
fn numbering_is_deterministic_regardless_of_thread_count() {
    let r = redactor();
    let (calls, _) = slmforge::dev::bench::redact::synthetic_calls(7, 400_000);
    assert!(calls.len() > 100);
    let run = |threads: usize| -> (Vec<RedactedCall>, RedactStats) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (pending, stats): (Vec<PendingCall>, RedactStats) = pool.install(|| {
            let parts: Vec<(Vec<PendingCall>, RedactStats)> = calls
                .par_chunks(7)
                .map(|chunk| {
                    let mut st = RedactStats::default();
                    let p = chunk
                        .iter()
                        .map(|c| r.redact_call(RawCall::new(c.clone()), &mut st))
                        .collect();
                    (p, st)
                })
                .collect();
            let mut all = Vec::new();
            let mut st = RedactStats::default();
            for (p, s) in parts {
                all.extend(p);
                st.merge(&s);
            }
            (all, st)
        });
        let mut ps = Pseudonyms::new();
        (pending.into_iter().map(|p| ps.finish(p)).collect(), stats)
    };
    let (one, s1) = run(1);
    let (four, s4) = run(4);
    assert_eq!(one, four);
    assert_eq!(s1.by_kind, s4.by_kind);
    assert!(
        s1.total() > 100,
        "the synthetic calls hold entities: {s1:?}"
    );
    // a second run with the same key gives the same output
    let (again, _) = run(2);
    assert_eq!(one, again);
}

#[test]
fn pending_markers_then_placeholders() {
    let r = redactor();
    let mut st = RedactStats::default();
    let pending = r.redact_text("Mail ann@example.com now", &mut st);
    assert!(has_pending_marker(&pending));
    assert!(!pending.contains("ann@example.com"));
    assert!(pending.contains('\u{E000}') && pending.contains('\u{E001}'));
    // the marker is the class code plus a keyed digest, independent of the text around it
    let other = r.redact_text("ANN@example.com", &mut st);
    let m1 = &pending[pending.find('\u{E000}').unwrap()..];
    assert!(m1.starts_with(&other));
    // another key gives another digest
    let r2 = Redactor::new(RedactConfig::new(
        RedactKey::from_bytes(b"another-key-abcdefghij").unwrap(),
    ))
    .unwrap();
    assert_ne!(r2.redact_text("ann@example.com", &mut st), other);

    let mut ps = Pseudonyms::new();
    let mut s = pending.clone();
    ps.resolve_text(&mut s);
    assert_eq!(s, "Mail <EMAIL_1> now");
    assert!(!has_pending_marker(&s));
    // the table round-trips and numbering continues after it
    let table = ps.to_table();
    assert_eq!(table.len(), 1);
    assert!(table.values().all(|v| v == "<EMAIL_1>"));
    let mut ps2 = Pseudonyms::from_table(&table).unwrap();
    let mut s2 = r.redact_text("bob@example.com and ann@example.com", &mut st);
    ps2.resolve_text(&mut s2);
    assert_eq!(s2, "<EMAIL_2> and <EMAIL_1>");
    assert!(Pseudonyms::from_table(&BTreeMap::from([(
        "zz".to_string(),
        "<EMAIL_1>".to_string()
    )]))
    .is_err());
}

#[test]
fn forged_markers_are_neutralised() {
    let r = redactor();
    let forged = format!("x \u{E000}E{}\u{E001} y \u{E001} z", "0".repeat(32));
    let mut c = Call::default();
    c.messages.push(Message::text(Role::User, forged.clone()));
    c.metadata
        .insert("k\u{E000}".to_string(), json!(forged.clone()));
    c.model = Some("m\u{E000}".into());
    let (out, _, ps) = redact_calls(&r, vec![c]);
    let content = out[0].messages[0].content.as_deref().unwrap();
    assert_eq!(
        content,
        "x \u{FFFD}E00000000000000000000000000000000\u{FFFD} y \u{FFFD} z"
    );
    assert!(!content.contains("<EMAIL_"));
    assert!(ps.distinct_counts().is_empty());
    let text = all_text(&out[0]);
    assert!(!text.contains('\u{E000}') && !text.contains('\u{E001}'));
    assert!(!out[0].model.as_deref().unwrap().contains('\u{E000}'));
    // free text too
    let out = red(&r, &forged);
    assert!(!out.contains('\u{E000}') && !out.contains('\u{E001}') && !out.contains("<EMAIL"));
}

#[test]
fn allow_list_keeps_values_and_regexes() {
    let mut cfg = RedactConfig::new(key());
    cfg.allow_values = vec!["support@acme.example".into()];
    cfg.allow_regexes = vec![r".*@example\.com".into(), r"10\.0\.0\.\d+".into()];
    let r = Redactor::new(cfg).unwrap();
    let out = red(
        &r,
        "Ask Support@Acme.example, a@example.com or me@private.example from 10.0.0.7 / 10.1.0.7.",
    );
    assert_eq!(
        out,
        "Ask Support@Acme.example, a@example.com or <EMAIL_1> from 10.0.0.7 / <IP_ADDRESS_1>."
    );
    // allow-listed names stay too
    let mut cfg = RedactConfig::new(key());
    cfg.allow_values = vec!["Ada Lovelace".into()];
    let r = Redactor::new(cfg).unwrap();
    assert_eq!(
        red(&r, "Ada Lovelace met Sarah Johnson."),
        "Ada Lovelace met <PERSON_1>."
    );
    // a bad regex names its index, not its text
    let mut cfg = RedactConfig::new(key());
    cfg.allow_regexes = vec!["ok".into(), "secret-(unclosed".into()];
    let err = Redactor::new(cfg).err().expect("bad regex rejected");
    let msg = format!("{err:#}");
    assert!(msg.contains("allow_regexes[1]"), "{msg}");
    assert!(!msg.contains("secret-(unclosed"), "{msg}");
}

#[test]
fn message_name_is_a_person_or_a_handle() {
    let r = redactor();
    let mk = |role: Role, name: &str| {
        let mut m = Message::text(role, "hello");
        m.name = Some(name.into());
        let mut c = Call::default();
        c.messages.push(m);
        c
    };
    let (out, _, _) = redact_calls(
        &r,
        vec![
            mk(Role::User, "Sarah Johnson"),
            mk(Role::User, "sarah_j84"),
            mk(Role::Tool, "get_weather"),
        ],
    );
    assert_eq!(out[0].messages[0].name.as_deref(), Some("<PERSON_1>"));
    assert_eq!(out[1].messages[0].name.as_deref(), Some("<USER_ID_1>"));
    assert_eq!(
        out[2].messages[0].name.as_deref(),
        Some("get_weather"),
        "a tool message's name is the function"
    );
}

#[test]
fn redactor_is_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Redactor>();
    send::<PendingCall>();
    send::<Pseudonyms>();
}

#[test]
fn names_can_be_switched_off() {
    let mut cfg = RedactConfig::new(key());
    cfg.detect_names = false;
    let r = Redactor::new(cfg).unwrap();
    assert_eq!(
        red(&r, "Hi Sarah, mail sarah@example.com"),
        "Hi Sarah, mail <EMAIL_1>"
    );
    let mut v = json!({"full_name": "Sarah Johnson"});
    r.redact_value(&mut v, &mut RedactStats::default());
    assert_eq!(v["full_name"], "Sarah Johnson");
}

#[test]
fn key_from_file_env_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("key");
    std::fs::write(&good, "0123456789abcdef-material\n\n").unwrap();
    let k1 = RedactKey::from_file(&good).unwrap();
    let k2 = RedactKey::from_bytes(b"0123456789abcdef-material").unwrap();
    assert_eq!(
        k1.fingerprint(),
        k2.fingerprint(),
        "trailing whitespace is trimmed"
    );
    assert_eq!(k1.fingerprint().len(), 8);
    assert!(k1.fingerprint().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(k1.fingerprint(), key().fingerprint());

    let short = dir.path().join("short");
    std::fs::write(&short, "too-short-key  \n").unwrap();
    let err = format!("{:#}", RedactKey::from_file(&short).unwrap_err());
    assert!(err.contains("too short") && err.contains("16"), "{err}");
    assert!(
        !err.contains("too-short-key"),
        "key material in error: {err}"
    );
    assert!(RedactKey::from_file(&dir.path().join("missing")).is_err());
    assert!(RedactKey::from_bytes(b"fifteen-bytes!!").is_err());
    assert!(RedactKey::from_bytes(b"sixteen-bytes!!!").is_ok());

    let dbg = format!("{k1:?}");
    assert_eq!(dbg, "RedactKey(<hidden>)");
    let cfg = format!("{:?}", RedactConfig::new(k1));
    assert!(
        cfg.contains("RedactKey(<hidden>)") && !cfg.contains("0123456789abcdef"),
        "{cfg}"
    );

    let a = RedactKey::random().unwrap();
    let b = RedactKey::random().unwrap();
    assert_ne!(a.fingerprint(), b.fingerprint());

    // the environment variable (only this test touches it)
    std::env::remove_var(KEY_ENV);
    assert!(RedactKey::from_env().unwrap().is_none());
    std::env::set_var(KEY_ENV, "short");
    assert!(RedactKey::from_env().is_err());
    std::env::set_var(KEY_ENV, "0123456789abcdef-material\n");
    assert_eq!(
        RedactKey::from_env().unwrap().unwrap().fingerprint(),
        k2.fingerprint()
    );
    std::env::remove_var(KEY_ENV);
}

#[test]
fn json_values_use_their_key_as_context() {
    let r = redactor();
    let mut v = json!({
        "name": "Premium Plan",
        "items": [{"name": "Sarah Connor"}, {"name": "get_weather"}, {"name": "London"}],
        "full_name": "Xochitl Ramirez",
        "owner": "Platform Team",
        "assignee": "Priya Natarajan",
        "userId": 48213,
        "end_user": "acct-9f3e2",
        "client_ip": "192.0.2.44",
        "email": "root@localhost",
        "phone": "555 0100",
        "dob": "1990-02-28",
        "zip": 94105,
        "password": "hunter2!",
        "authorization": "Bearer abcdefghijklmnop123456",
        "count": 12,
        "note": "contact Sarah Connor at sarah@example.com",
    });
    let mut st = RedactStats::default();
    r.redact_value(&mut v, &mut st);
    let mut ps = Pseudonyms::new();
    let mut s = serde_json::to_string(&v).unwrap();
    ps.resolve_text(&mut s);
    let v: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["name"], "Premium Plan");
    assert_eq!(v["items"][0]["name"], "<PERSON_1>");
    assert_eq!(v["items"][1]["name"], "get_weather");
    assert_eq!(v["items"][2]["name"], "London");
    assert_eq!(v["full_name"], "<PERSON_2>");
    assert_eq!(v["owner"], "Platform Team");
    assert_eq!(v["assignee"], "<PERSON_3>");
    assert_eq!(v["userId"], "<USER_ID_1>");
    assert_eq!(v["end_user"], "<USER_ID_2>");
    assert_eq!(v["client_ip"], "<IP_ADDRESS_1>");
    assert_eq!(v["email"], "<EMAIL_1>");
    assert_eq!(v["phone"], "<PHONE_1>");
    assert_eq!(v["dob"], "<DATE_OF_BIRTH_1>");
    assert_eq!(v["zip"], "<ADDRESS_1>");
    assert_eq!(v["password"], "<SECRET_1>");
    assert_eq!(v["authorization"], "Bearer <SECRET_2>");
    assert_eq!(v["count"], 12);
    assert_eq!(
        v["note"], "contact <PERSON_1> at <EMAIL_2>",
        "same name, same placeholder"
    );
}

#[test]
fn names_found_anywhere_in_a_call_are_redacted_everywhere_in_it() {
    let r = redactor();
    let mut c = Call::default();
    c.messages.push(Message::text(
        Role::User,
        "Attendees: Zanele Mokoena, Dmitri Ivanov",
    ));
    c.messages.push(Message::text(
        Role::Tool,
        r#"{"minutes": "Mokoena approved the budget; Ivanov abstained."}"#,
    ));
    c.response.content = Some("Noted: Mokoena approved and Dmitri abstained.".into());
    let (out, _, _) = redact_calls(&r, vec![c]);
    let text = all_text(&out[0]);
    for n in ["Zanele", "Mokoena", "Dmitri", "Ivanov"] {
        assert!(!text.contains(n), "{n} survived: {text}");
    }
}

#[test]
fn propagation_matches_whole_words_only_and_falls_back_to_shorter_names() {
    let r = redactor();
    let mut c = Call::default();
    c.messages
        .push(Message::text(Role::User, "Attendees: Zanele Mokoena"));
    // "Zanele Mokoenas" is not the whole name, but "Zanele" alone is;
    // "Mokoenaville" and "xZanele" are other words.
    c.response.content =
        Some("Zanele Mokoenas wrote; Mokoenaville and xZanele stay; (Mokoena) agreed.".into());
    let (out, _, _) = redact_calls(&r, vec![c]);
    let text = out[0].messages[0].content.clone().unwrap_or_default()
        + "\n"
        + out[0].response.content.as_deref().unwrap_or("");
    assert!(
        text.contains("Mokoenaville") && text.contains("xZanele"),
        "{text}"
    );
    assert!(!text.contains("Zanele Mokoenas"), "{text}");
    assert!(!text.contains("(Mokoena)"), "{text}");
}

#[test]
fn repeated_texts_give_the_same_findings_as_the_first_time() {
    // The per-thread findings memo must not change results: the same long
    // system prompt in many calls, with different keys and a second
    // redactor configured differently (names off).
    let prompt = "You are the travel desk of Acme. Escalate to Zanele Mokoena (zanele.mokoena@example.com, +44 20 7946 0958) when unsure.";
    let r = redactor();
    let mut first = None;
    for _ in 0..3 {
        let mut st = RedactStats::default();
        let out = r.redact_text(prompt, &mut st);
        assert!(!out.contains("Mokoena") && !out.contains("7946"), "{out}");
        assert_eq!(first.get_or_insert_with(|| out.clone()), &out);
    }
    let mut cfg = RedactConfig::new(key());
    cfg.detect_names = false;
    let r2 = Redactor::new(cfg).unwrap();
    let mut st = RedactStats::default();
    let out2 = r2.redact_text(prompt, &mut st);
    assert!(out2.contains("Zanele Mokoena"), "names off: {out2}");
    assert!(!out2.contains("7946"), "{out2}");
    // and back to the first redactor: names found again
    let out3 = r.redact_text(prompt, &mut st);
    assert!(!out3.contains("Mokoena"), "{out3}");
}

#[test]
fn ordinary_business_text_is_left_alone() {
    let r = redactor();
    let paragraphs = [
        "Q3 2024 revenue for Acme Cloud reached $4.2M, up 12% from Q2. The Premium plan (v2.4.1) now costs \
         $1,249.00 per year, and the Enterprise tier starts at 250 seats. On Tuesday, March 5, the Product team \
         shipped Release 3.1.0 to the EU region; the rollout finished at 14:30 UTC with 99.95% uptime.",
        "Please review the attached Statement of Work before Friday. Our Kubernetes clusters on Google Cloud run \
         PostgreSQL 15.4 and Redis 7.2; Terraform and GitHub Actions handle deployment. Customer Success will \
         follow up with the Marketing Director about the New York launch in June.",
        "The North America sales team closed 37 deals worth 2,450,000 EUR. Invoice INV-2024-0042 is due on \
         2024-04-30. Shipping from Rotterdam takes 3-5 business days; item SKU-4471 is back in stock (14 units).",
        "Use the Adam optimizer with a learning rate of 0.001 and batch size 32 for 10 epochs. Mark the task as \
         done when the May release ships. Will the API return 429 under load? Grace periods last 30 days.",
        "Apple, Microsoft and Amazon reported earnings on Thursday. The United States and Canada lead the \
         rankings; Paris and Sydney follow. JavaScript, TypeScript and Rust are the most wanted languages.",
        "Error: connection refused at line 42 of main.rs; retrying in 5 seconds (attempt 3 of 10). \
         Set max_tokens: 1024, temperature: 0.7, top_p: 0.95 and token_count = 512.",
        "embedding: [0.0123, -0.0456, 0.0789] and 0.0123 0.0456 0.0789 0.1234 0.5678 -0.0012345678; \
         id 550e8400-e29b-41d4-a716-446655440000, sha a94a8fe5ccb19ba61c4c0873d391e987982fbbd3, \
         at 2024-03-15T10:30:00.123Z, discord/560857607196377088, total 1234567.89, +0.00000097",
        "fn main() { let user_id: u64 = parse(); let token: Option<String> = None; let c = Config::default(); \
         println!(\"{}\", Option::<i32>::None.is_none()); }",
    ];
    for p in paragraphs {
        kept(&r, p);
    }
}

/// Fixtures with the raw pieces that must vanish. Tricky on purpose; not
/// every one is expected to be caught. The printed rates are reported.
fn fixtures() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        ("email", "Contact first.last+tag@sub.example.co.uk today.", vec!["first.last+tag@sub.example.co.uk"]),
        ("email", "SHOUT AT UPPER@EXAMPLE.COM", vec!["UPPER@EXAMPLE.COM"]),
        ("email", "Mail o'neil@example.ie", vec!["o'neil@example.ie"]),
        ("email", "mailto:joe_bloggs@company-name.com", vec!["joe_bloggs@company-name.com"]),
        ("email", "<bob@example.org>", vec!["bob@example.org"]),
        ("email", "\"carol@example.net\",", vec!["carol@example.net"]),
        ("email", "write to jane [at] example [dot] com", vec!["jane [at] example [dot] com"]),
        ("email", "x@y.museum is valid", vec!["x@y.museum"]),
        ("email", "Reply to\\nkim@example.dev", vec!["kim@example.dev"]),
        ("email", "δοκιμή@παράδειγμα.δοκιμή", vec!["δοκιμή@παράδειγμα.δοκιμή"]),
        ("phone", "Call +1 (415) 555-2671", vec!["555-2671"]),
        ("phone", "UK office +44 20 7946 0958", vec!["7946 0958"]),
        ("phone", "Berlin +49 30 901820", vec!["901820"]),
        ("phone", "Paris +33 1 23 45 67 89", vec!["23 45 67 89"]),
        ("phone", "(415) 555-2671 is the desk", vec!["555-2671"]),
        ("phone", "Dial 415.555.2671", vec!["415.555.2671"]),
        ("phone", "Toll free 1-800-555-0199", vec!["800-555-0199"]),
        ("phone", "London 020 7946 0958", vec!["7946 0958"]),
        ("phone", "mobile 07700 900123", vec!["07700 900123"]),
        ("phone", "India +91 98765 43210", vec!["98765 43210"]),
        ("phone", "Tokyo +81 3-1234-5678", vec!["1234-5678"]),
        ("phone", "call me at 4155552671", vec!["4155552671"]),
        ("phone", "Tel: 030 1234567", vec!["1234567"]),
        ("phone", "Sydney +61 2 9876 5432", vec!["9876 5432"]),
        ("phone", "Reach me on +8613800138000", vec!["8613800138000"]),
        ("phone", "my cell is 555 1234", vec!["555 1234"]),
        ("phone", "ring 0161 496 0000 after six", vec!["496 0000"]),
        ("credit_card", "Visa 4111 1111 1111 1111", vec!["4111 1111 1111 1111"]),
        ("credit_card", "Visa 4111-1111-1111-1111", vec!["4111-1111-1111-1111"]),
        ("credit_card", "card=4242424242424242", vec!["4242424242424242"]),
        ("credit_card", "Amex 3782 822463 10005", vec!["3782 822463 10005"]),
        ("credit_card", "MC 2223 0000 4841 0010", vec!["2223 0000 4841 0010"]),
        ("credit_card", "Discover 6011 1111 1111 1117", vec!["6011 1111 1111 1117"]),
        ("credit_card", "JCB 3530111333300000", vec!["3530111333300000"]),
        ("credit_card", "Diners 3056 9309 0259 04", vec!["3056 9309 0259 04"]),
        ("credit_card", "UnionPay 6200000000000005", vec!["6200000000000005"]),
        ("credit_card", "Mastercard 5555555555554444.", vec!["5555555555554444"]),
        ("iban", "DE89 3704 0044 0532 0130 00", vec!["DE89 3704 0044 0532 0130 00"]),
        ("iban", "GB82 WEST 1234 5698 7654 32", vec!["GB82 WEST 1234 5698 7654 32"]),
        ("iban", "FR14 2004 1010 0505 0001 3M02 606", vec!["FR14 2004 1010 0505 0001 3M02 606"]),
        ("iban", "NL91ABNA0417164300", vec!["NL91ABNA0417164300"]),
        ("iban", "ES9121000418450200051332", vec!["ES9121000418450200051332"]),
        ("iban", "IT60 X054 2811 1010 0000 0123 456", vec!["IT60 X054 2811 1010 0000 0123 456"]),
        ("iban", "CH93 0076 2011 6238 5295 7", vec!["CH93 0076 2011 6238 5295 7"]),
        ("iban", "iban: gb82west12345698765432", vec!["gb82west12345698765432"]),
        ("ssn", "SSN 123-45-6789", vec!["123-45-6789"]),
        ("ssn", "SSN: 123 45 6789", vec!["123 45 6789"]),
        ("ssn", "ssn 078051120", vec!["078051120"]),
        ("ssn", "social security number is 219-09-9999", vec!["219-09-9999"]),
        ("ssn", "SSN#: 536-22-1234", vec!["536-22-1234"]),
        ("ip_address", "from 203.0.113.42", vec!["203.0.113.42"]),
        ("ip_address", "gateway 10.0.0.1", vec!["10.0.0.1"]),
        ("ip_address", "host 172.16.254.1:8080", vec!["172.16.254.1"]),
        ("ip_address", "v6 2001:db8::1", vec!["2001:db8::1"]),
        ("ip_address", "link fe80::1ff:fe23:4567:890a%eth0", vec!["fe80::1ff:fe23:4567:890a"]),
        ("ip_address", "full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", vec!["2001:0db8:85a3:0000:0000:8a2e:0370:7334"]),
        ("ip_address", "mapped ::ffff:192.0.2.128", vec!["192.0.2.128"]),
        ("ip_address", "IP=8.8.4.4", vec!["8.8.4.4"]),
        ("mac_address", "mac 00:1A:2B:3C:4D:5E", vec!["00:1A:2B:3C:4D:5E"]),
        ("mac_address", "mac 00-1a-2b-3c-4d-5e", vec!["00-1a-2b-3c-4d-5e"]),
        ("mac_address", "cisco 001a.2b3c.4d5e", vec!["001a.2b3c.4d5e"]),
        ("secret", AWS, vec![AWS]),
        ("secret", GITHUB, vec![GITHUB]),
        ("secret", GITHUB_PAT, vec![GITHUB_PAT]),
        ("secret", OPENAI, vec![OPENAI]),
        ("secret", OPENAI_LEGACY, vec![OPENAI_LEGACY]),
        ("secret", ANTHROPIC, vec![ANTHROPIC]),
        ("secret", SLACK, vec![SLACK]),
        ("secret", GOOGLE, vec![GOOGLE]),
        ("secret", STRIPE, vec![STRIPE]),
        ("secret", HF, vec![HF]),
        ("secret", GITLAB, vec![GITLAB]),
        ("secret", JWT, vec![JWT]),
        ("secret", "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", vec!["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]),
        ("secret", "\"client_secret\": \"8f14e45fceea167a5a36dedd4bea2543\"", vec!["8f14e45fceea167a5a36dedd4bea2543"]),
        ("secret", "export DB_PASSWORD='S3cure!Passw0rd'", vec!["S3cure!Passw0rd"]),
        ("secret", "Authorization: Bearer 0b79bab50daca910b000d4f1a2b675d604257e42", vec!["0b79bab50daca910b000d4f1a2b675d604257e42"]),
        ("secret", "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\n-----END OPENSSH PRIVATE KEY-----", vec!["b3BlbnNzaC1rZXktdjEAAAAA"]),
        ("secret", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B (truncated)", vec!["MIIEvQIBADANBgkqhkiG9w0B"]),
        ("secret", "redis://:p4ssw0rdXYZ@cache:6379/0", vec!["p4ssw0rdXYZ"]),
        ("secret", "https://u:pw123456@git.example.com/r.git", vec!["pw123456"]),
        ("secret", "https://x.io/?api_key=Zx81Kq29Lm47Np03&q=1", vec!["Zx81Kq29Lm47Np03"]),
        ("date_of_birth", "born on March 3, 1985", vec!["March 3, 1985"]),
        ("date_of_birth", "DOB: 1985-03-03", vec!["1985-03-03"]),
        ("date_of_birth", "date of birth 03/12/1979", vec!["03/12/1979"]),
        ("date_of_birth", "Birthday: 12th of June 1990", vec!["12th of June 1990"]),
        ("date_of_birth", "D.O.B. 07.04.1968", vec!["07.04.1968"]),
        ("date_of_birth", "birthdate 19850303", vec!["19850303"]),
        ("date_of_birth", "I was born 4 Jul 1976 in Ohio", vec!["4 Jul 1976"]),
        ("date_of_birth", "12/25/1990 (DOB)", vec!["12/25/1990"]),
        ("address", "1600 Pennsylvania Ave NW, Washington, DC 20500", vec!["1600 Pennsylvania", "20500"]),
        ("address", "221B Baker Street, London NW1 6XE", vec!["221B Baker", "NW1 6XE"]),
        ("address", "350 Fifth Avenue, New York, NY 10118", vec!["350 Fifth", "10118"]),
        ("address", "at 10 Downing St.", vec!["10 Downing"]),
        ("address", "742 Evergreen Terrace", vec!["742 Evergreen"]),
        ("address", "55 Elm Rd, Apt 4B", vec!["55 Elm", "Apt 4B"]),
        ("address", "1 Infinite Loop, Cupertino, CA 95014", vec!["Infinite Loop", "95014"]),
        ("address", "Hauptstraße 5, 10115 Berlin", vec!["Hauptstraße 5", "10115"]),
        ("address", "12 rue de la Paix, 75002 Paris", vec!["rue de la Paix", "75002"]),
        ("address", "P.O. Box 1234", vec!["Box 1234"]),
        ("address", "4059 Mt Lee Dr., Hollywood", vec!["4059 Mt Lee"]),
        ("address", "Calle Mayor 12, Madrid", vec!["Calle Mayor 12"]),
        ("person", "My name is Xochitl Ramirez.", vec!["Xochitl", "Ramirez"]),
        ("person", "I'm Tanvir, the new intern.", vec!["Tanvir"]),
        ("person", "Hi, this is Grace from billing.", vec!["Grace"]),
        ("person", "Dear Mr. Chen,", vec!["Chen"]),
        ("person", "Hi Sarah,\nthanks for the update.", vec!["Sarah"]),
        ("person", "Thanks,\nJohn Miller", vec!["John Miller"]),
        ("person", "Best regards, Anna", vec!["Anna"]),
        ("person", "Attendees: Alice Johnson, Bob Lee and Priya Natarajan", vec!["Alice", "Bob Lee", "Priya"]),
        ("person", "Prof. Ngozi Okonjo-Iweala spoke first.", vec!["Ngozi", "Okonjo-Iweala"]),
        ("person", "Ask Dmitri Ivanov about it.", vec!["Dmitri", "Ivanov"]),
        ("person", "cc: Tendai Moyo", vec!["Tendai", "Moyo"]),
        ("person", "Dr. Ayodele Adeyemi will see you.", vec!["Ayodele", "Adeyemi"]),
        ("person", "Wei Zhang signed off.", vec!["Wei Zhang"]),
        ("person", "María José García called.", vec!["María", "García"]),
        ("person", "Jean-Luc Picard approved.", vec!["Jean-Luc", "Picard"]),
        ("person", "Will Smith and May Chen joined.", vec!["Will Smith", "May Chen"]),
        ("person", "Signed, Kwame Mensah", vec!["Kwame", "Mensah"]),
        ("person", "Emily's report is late.", vec!["Emily"]),
        ("person", "According to Kenji Watanabe, it works.", vec!["Kenji", "Watanabe"]),
        ("person", "my name is john smith", vec!["john smith"]),
        ("person", "Siobhan O'Connor said yes.", vec!["Siobhan", "O'Connor"]),
        ("person", "Good morning Olivia, here is the file.", vec!["Olivia"]),
        ("person", "Hello Xavi Puig!", vec!["Xavi", "Puig"]),
        ("person", "Nkechi Eze sent the invoice.", vec!["Nkechi", "Eze"]),
        ("person", "The ticket was assigned to Lars Eriksson.", vec!["Lars", "Eriksson"]),
        ("person", "Regards,\\nMs. Fatima Al-Sayed", vec!["Fatima", "Al-Sayed"]),
        ("person", "From: Jane Doe <jane@corp.example>", vec!["Jane Doe"]),
        ("person", "Ludwig van Beethoven wrote it.", vec!["Ludwig", "Beethoven"]),
        ("person", "Nguyen Van Minh's visa", vec!["Nguyen", "Minh"]),
        ("person", "-- \nRahul", vec!["Rahul"]),
    ]
}

#[test]
fn catch_rates_on_tricky_fixtures() {
    let r = redactor();
    let mut rates: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut missed = Vec::new();
    for (kind, input, raws) in fixtures() {
        let out = red(&r, input);
        let ok = raws.iter().all(|raw| !out.contains(raw)) && out.contains('<');
        let e = rates.entry(kind).or_default();
        e.1 += 1;
        if ok {
            e.0 += 1;
        } else {
            missed.push(format!("{kind}: {input:?} -> {out:?}"));
        }
    }
    eprintln!("catch rate per kind (caught/total):");
    for (k, (c, t)) in &rates {
        eprintln!("  {k:>14}: {c}/{t} = {:.0}%", 100.0 * *c as f64 / *t as f64);
    }
    for m in &missed {
        eprintln!("  missed {m}");
    }
    // floors set a little under what the fixtures give today: regressions fail
    let floor: &[(&str, f64)] = &[
        ("email", 0.85),
        ("phone", 0.9),
        ("credit_card", 1.0),
        ("iban", 0.85),
        ("ssn", 1.0),
        ("ip_address", 0.85),
        ("mac_address", 1.0),
        ("secret", 0.9),
        ("date_of_birth", 0.85),
        ("address", 0.8),
        ("person", 0.8),
    ];
    for (k, f) in floor {
        let (c, t) = rates[k];
        assert!(c as f64 / t as f64 >= *f, "{k}: {c}/{t} below {f}");
    }
}

#[test]
fn odd_input_never_panics_or_leaves_marker_characters() {
    use rand::{Rng, SeedableRng};
    let r = redactor();
    let pieces = [
        "é",
        "ü",
        "中文",
        "🙂",
        "\u{E000}",
        "\u{E001}",
        "\u{FFFD}",
        "ß",
        "İ",
        "Mr.",
        "Dr ",
        " and ",
        ", ",
        "\n",
        "\\n",
        "\\\"",
        "\"",
        ":",
        "::",
        "@",
        "+1 ",
        "(",
        ")",
        "-",
        ".",
        "0",
        "7",
        "9",
        "12",
        "555",
        "4111",
        "DE89",
        "Sarah",
        "O'Neil",
        "Jean-Luc",
        "name\": \"",
        "{\"user_id\": ",
        "'",
        "’s",
        "born ",
        "DOB ",
        "Street",
        "ghp_",
        "sk-",
        "eyJ",
        "-----BEGIN PRIVATE KEY-----",
        "xx:",
        "fe80::",
        "Straße 5",
        "\t",
        " ",
        "Hi ",
        "Attendees: ",
        "Ünal",
        "Éva",
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut st = RedactStats::default();
    let mut ps = Pseudonyms::new();
    for _ in 0..2000 {
        let n = rng.random_range(0..60);
        let s: String = (0..n)
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        let mut out = r.redact_text(&s, &mut st);
        ps.resolve_text(&mut out);
        assert!(!out.contains('\u{E000}') && !out.contains('\u{E001}'));
        let mut v = json!({"name": s.clone(), "attendees": [s.clone()], "user_id": s.clone(), s.clone(): 1});
        r.redact_value(&mut v, &mut st);
        let mut t = serde_json::to_string(&v).unwrap();
        ps.resolve_text(&mut t);
        assert!(!t.contains('\u{E000}') && !t.contains('\u{E001}'));
    }
}

#[test]
fn a_call_with_thousands_of_names_is_redacted_throughout() {
    let r = redactor();
    let syl = [
        "ka", "lo", "mi", "ren", "tu", "sha", "vo", "dei", "nar", "bel",
    ];
    let name = |i: usize| {
        let cap = |s: String| s[..1].to_uppercase() + &s[1..];
        cap(format!(
            "{}{}{}",
            syl[i % 10],
            syl[(i / 10) % 10],
            syl[(i / 100) % 10]
        )) + " "
            + &cap(format!("{}{}", syl[(i * 7) % 10], syl[(i / 7) % 10]))
    };
    let rows: Vec<Value> = (0..2000)
        .map(|i| json!({"full_name": name(i), "score": i}))
        .collect();
    let mut c = Call::default();
    c.messages.push(Message::text(
        Role::Tool,
        serde_json::to_string(&json!({"people": rows})).unwrap(),
    ));
    c.response.content = Some(format!(
        "The top three are {}, {} and {}.",
        name(17),
        name(1234),
        name(1999)
    ));
    let (out, _, ps) = redact_calls(&r, vec![c]);
    let resp = out[0].response.content.as_deref().unwrap();
    assert!(
        !resp.contains(&name(17)) && !resp.contains(&name(1234)) && !resp.contains(&name(1999)),
        "{resp}"
    );
    assert!(ps.distinct_counts()["person"] >= 1000);
}

/// Natural snippets written after the detectors, without tuning against
/// them (first-run results are in the report). Same scoring as above.
fn held_out() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "person",
            "Can you forward this to Marguerite Delacroix in accounting?",
            vec!["Marguerite", "Delacroix"],
        ),
        (
            "person",
            "Thanks for reaching out, Deshawn.",
            vec!["Deshawn"],
        ),
        (
            "person",
            "Our CEO, Satya Raghunathan, will join the call.",
            vec!["Satya", "Raghunathan"],
        ),
        (
            "person",
            "Please ask Kevin O'Malley to sign the NDA.",
            vec!["Kevin", "O'Malley"],
        ),
        (
            "person",
            "I spoke with Ms. Horvath yesterday.",
            vec!["Horvath"],
        ),
        (
            "person",
            "Booking for Mr and Mrs Thompson, arriving Friday.",
            vec!["Thompson"],
        ),
        ("person", "Regards,\nBeatriz", vec!["Beatriz"]),
        (
            "person",
            "The reviewer (Oluwadamilare Ogunbanjo) left comments.",
            vec!["Oluwadamilare", "Ogunbanjo"],
        ),
        (
            "person",
            "Hey Ravi, quick q about the invoice",
            vec!["Ravi"],
        ),
        (
            "person",
            "Patient name: Lakshmi Venkataraman",
            vec!["Lakshmi", "Venkataraman"],
        ),
        (
            "person",
            "Cc'ing Hannah and Tomasz here.",
            vec!["Hannah", "Tomasz"],
        ),
        (
            "person",
            "I am writing on behalf of my mother, Eleanor Rigby.",
            vec!["Eleanor", "Rigby"],
        ),
        (
            "person",
            "Contact person: Ingrid Bergström",
            vec!["Ingrid", "Bergström"],
        ),
        (
            "person",
            "Shout-out to Mateo for fixing the build!",
            vec!["Mateo"],
        ),
        (
            "person",
            "Agent Sofia Marchetti escalated the case to Tier 2.",
            vec!["Sofia Marchetti"],
        ),
        (
            "person",
            "Do you know whether Björn signed the lease?",
            vec!["Björn"],
        ),
        (
            "person",
            "Meeting notes - present: Chidi, Eleanor, Tahani, Jason",
            vec!["Chidi", "Tahani"],
        ),
        (
            "person",
            "My son Ethan has a peanut allergy.",
            vec!["Ethan"],
        ),
        (
            "person",
            "The account belongs to Mr. Kwabena Asante-Darko.",
            vec!["Kwabena", "Asante-Darko"],
        ),
        (
            "person",
            "Hola, soy Valentina Rojas y tengo una pregunta.",
            vec!["Valentina", "Rojas"],
        ),
        (
            "phone",
            "You can text me at 917-555-0143.",
            vec!["917-555-0143"],
        ),
        (
            "phone",
            "Our support line is 1 (800) 555-0175.",
            vec!["555-0175"],
        ),
        ("phone", "WhatsApp: +34 612 345 678", vec!["612 345 678"]),
        (
            "phone",
            "ring the front desk on 0207 946 0321",
            vec!["946 0321"],
        ),
        (
            "phone",
            "my mobile's 0412 345 678 (Australia)",
            vec!["0412 345 678"],
        ),
        ("phone", "Phone: 555-0143", vec!["555-0143"]),
        ("phone", "call 212 555 0198 ext. 4", vec!["212 555 0198"]),
        ("phone", "Fax +1.415.555.0132", vec!["415.555.0132"]),
        (
            "email",
            "reply to hr-team@globex-corp.com",
            vec!["hr-team@globex-corp.com"],
        ),
        (
            "email",
            "J.Smith@Uni-Heidelberg.de wrote the paper",
            vec!["J.Smith@Uni-Heidelberg.de"],
        ),
        (
            "email",
            "send it to: priya dot natarajan at gmail dot com",
            vec!["natarajan at gmail"],
        ),
        (
            "address",
            "Deliver to 4821 W. Sunset Blvd., Los Angeles, CA 90027",
            vec!["4821 W. Sunset", "90027"],
        ),
        (
            "address",
            "Our office moved to Suite 300, 1200 18th Street NW",
            vec!["1200 18th Street"],
        ),
        (
            "address",
            "Return address: Flat 2, 17 Queen's Road, Brighton BN1 3XE",
            vec!["17 Queen's Road", "BN1 3XE"],
        ),
        (
            "address",
            "I live on Maple Avenue near the school",
            vec!["Maple Avenue"],
        ),
        (
            "address",
            "Ship to 77 Massachusetts Ave, Cambridge, MA 02139",
            vec!["77 Massachusetts", "02139"],
        ),
        (
            "address",
            "Meet me at 500 Terry Francois Blvd",
            vec!["500 Terry Francois"],
        ),
        ("date_of_birth", "DOB 4/7/82", vec!["4/7/82"]),
        ("date_of_birth", "she was born in 1990", vec!["1990"]),
        (
            "date_of_birth",
            "Date of birth: 1975-11-30",
            vec!["1975-11-30"],
        ),
        (
            "date_of_birth",
            "my birthday's on the 3rd of May, 1988",
            vec!["3rd of May, 1988"],
        ),
        ("date_of_birth", "Born: Sept. 9, 1971", vec!["9, 1971"]),
        (
            "credit_card",
            "card no 5500 0000 0000 0004",
            vec!["5500 0000 0000 0004"],
        ),
        (
            "credit_card",
            "use 4000-0566-5566-5556 for the test payment",
            vec!["4000-0566-5566-5556"],
        ),
        (
            "iban",
            "Wire to IBAN: BE68 5390 0754 7034",
            vec!["BE68 5390 0754 7034"],
        ),
        (
            "iban",
            "Kontonummer DE44500105175407324931",
            vec!["DE44500105175407324931"],
        ),
        ("ssn", "My social is 078-05-1120", vec!["078-05-1120"]),
        ("ssn", "SSN (last 9): 219099999", vec!["219099999"]),
        (
            "ip_address",
            "login from 81.2.69.160 flagged",
            vec!["81.2.69.160"],
        ),
        (
            "ip_address",
            "X-Forwarded-For: 203.0.113.195, 70.41.3.18",
            vec!["203.0.113.195", "70.41.3.18"],
        ),
        (
            "secret",
            "here's my token: 2f6c1a9b8e7d4c3b2a1f0e9d8c7b6a5f",
            vec!["2f6c1a9b8e7d4c3b2a1f0e9d8c7b6a5f"],
        ),
        ("secret", "my password is Winter2024!", vec!["Winter2024!"]),
        (
            "secret",
            "OPENAI_API_KEY=sk-proj-9xQ2mT7vB4nK8pL1wZ6cR3yH5jD0fG2sA8eU4iO7",
            vec!["9xQ2mT7vB4nK8pL1wZ6cR3yH5jD0fG2sA8eU4iO7"],
        ),
        (
            "secret",
            "aws_secret_access_key = kJ8s/Qw3+ZxCv7BnM1aS2dF4gH6jK8lP0oI9uY7t",
            vec!["kJ8s/Qw3+ZxCv7BnM1aS2dF4gH6jK8lP0oI9uY7t"],
        ),
        (
            "secret",
            "the wifi password: c0ffee-and-cake",
            vec!["c0ffee-and-cake"],
        ),
    ]
}

#[test]
fn catch_rates_on_held_out_fixtures() {
    let r = redactor();
    let mut rates: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for (kind, input, raws) in held_out() {
        let out = red(&r, input);
        let ok = raws.iter().all(|raw| !out.contains(raw)) && out.contains('<');
        let e = rates.entry(kind).or_default();
        e.1 += 1;
        e.0 += ok as u32;
        if !ok {
            eprintln!("  held-out miss {kind}: {input:?} -> {out:?}");
        }
    }
    let (mut c_all, mut t_all) = (0, 0);
    for (k, (c, t)) in &rates {
        eprintln!("  held-out {k:>14}: {c}/{t}");
        c_all += c;
        t_all += t;
    }
    eprintln!("  held-out overall: {c_all}/{t_all}");
    // first run, before any fix: 45/55 overall, persons 15/20
    assert!(
        c_all as f64 / t_all as f64 >= 0.85,
        "held-out overall {c_all}/{t_all}"
    );
    let (c, t) = rates["person"];
    assert!(c as f64 / t as f64 >= 0.8, "held-out persons {c}/{t}");
    for k in [
        "phone",
        "credit_card",
        "iban",
        "ip_address",
        "secret",
        "email",
    ] {
        let (c, t) = rates[k];
        assert_eq!(c, t, "held-out {k}");
    }
}

// ---------------------------------------------------------------------------
// Structural fields (tool names, tool-call ids, model, finish_reason,
// workload_id): readable identifiers stay, PII inside them goes.

/// A call whose structural fields are all set to `tool`, `id`, `model`...
fn structural_call(tool: &str, id: &str, model: &str, finish: &str, workload: &str) -> Call {
    let mut c = Call {
        model: Some(model.into()),
        workload_id: Some(workload.into()),
        ..Default::default()
    };
    c.tools.push(ToolDef {
        name: tool.into(),
        description: Some("Does the thing.".into()),
        parameters: json!({"type": "object"}),
    });
    c.messages
        .push(Message::text(Role::User, "please do the thing"));
    c.messages.push(Message {
        role: Role::Assistant,
        content: None,
        tool_calls: vec![ToolCall {
            id: Some(id.into()),
            name: tool.into(),
            arguments: json!({"x": 1}),
            arguments_valid: true,
        }],
        tool_call_id: None,
        name: None,
    });
    let mut result = Message::text(Role::Tool, "done");
    result.tool_call_id = Some(id.into());
    result.name = Some(tool.into());
    c.messages.push(result);
    c.response = Response {
        content: None,
        tool_calls: vec![ToolCall {
            id: Some(id.into()),
            name: tool.into(),
            arguments: json!({}),
            arguments_valid: true,
        }],
        finish_reason: Some(finish.into()),
    };
    c
}

/// Every structural string of a call, one per line.
fn structural_text(c: &Call) -> String {
    let mut out = vec![];
    out.extend(c.tools.iter().map(|t| t.name.clone()));
    for m in &c.messages {
        out.extend(m.tool_calls.iter().map(|t| t.name.clone()));
        out.extend(m.tool_calls.iter().filter_map(|t| t.id.clone()));
        out.extend(m.tool_call_id.clone());
        out.extend(m.name.clone());
    }
    out.extend(c.response.tool_calls.iter().map(|t| t.name.clone()));
    out.extend(c.response.tool_calls.iter().filter_map(|t| t.id.clone()));
    out.extend(c.response.finish_reason.clone());
    out.extend(c.model.clone());
    out.extend(c.workload_id.clone());
    out.join("\n")
}

#[test]
fn pii_inside_structural_fields_is_redacted() {
    let r = redactor();
    let calls = vec![
        structural_call(
            "notify_jane.roe@corp.example",
            "call_ops@tenant.example",
            "ft:gpt-4o-mini:acme:owner-bob@example.com",
            "stop sent to +44 20 7946 0958",
            "Sarah Johnson onboarding",
        ),
        structural_call(
            "get_weather",
            "call_+14155552671",
            "gpt-4o-mini",
            "stop",
            "billing-bot for jane.doe@example.com",
        ),
        structural_call(
            "get_weather",
            "415-555-2671",
            "gpt-4o-mini",
            "stop",
            "onboarding-sarah-johnson",
        ),
    ];
    let (out, stats, _) = redact_calls(&r, calls);
    let raws = [
        "jane.roe@corp.example",
        "ops@tenant.example",
        "bob@example.com",
        "7946 0958",
        "Sarah",
        "Johnson",
        "4155552671",
        "jane.doe@example.com",
        "555-2671",
        "sarah",
        "johnson",
    ];
    let all: String = out.iter().map(|c| structural_text(c) + "\n").collect();
    for raw in raws {
        assert!(
            !all.contains(raw),
            "{raw:?} survived in structural fields:\n{all}"
        );
    }
    let c = &out[0];
    // the detected span is replaced; the readable rest stays
    assert!(
        c.tools[0].name.starts_with("<EMAIL_"),
        "{}",
        c.tools[0].name
    );
    assert!(c
        .model
        .as_deref()
        .unwrap()
        .starts_with("ft:gpt-4o-mini:acme:"));
    assert!(c.model.as_deref().unwrap().contains("<EMAIL_"));
    assert_eq!(
        c.response.finish_reason.as_deref(),
        Some("stop sent to <PHONE_1>")
    );
    assert!(
        c.workload_id.as_deref().unwrap().starts_with("<PERSON_")
            && c.workload_id.as_deref().unwrap().ends_with(" onboarding"),
        "{:?}",
        c.workload_id
    );
    // the same value gets the same placeholder in every field it occurs in
    for c in &out {
        let def = &c.tools[0].name;
        assert_eq!(&c.messages[1].tool_calls[0].name, def);
        assert_eq!(&c.response.tool_calls[0].name, def);
        assert_eq!(c.messages[2].name.as_ref(), Some(def));
        let id = c.messages[1].tool_calls[0].id.as_deref();
        assert_eq!(c.messages[2].tool_call_id.as_deref(), id);
        assert_eq!(c.response.tool_calls[0].id.as_deref(), id);
    }
    assert_eq!(
        out[1].messages[1].tool_calls[0].id.as_deref(),
        Some("call_<PHONE_2>")
    );
    assert_eq!(
        out[2].messages[1].tool_calls[0].id.as_deref(),
        Some("<PHONE_3>")
    );
    assert!(out[1]
        .workload_id
        .as_deref()
        .unwrap()
        .starts_with("billing-bot for <EMAIL_"));
    // "sarah-johnson" in a label and "Sarah Johnson" are one person
    assert_eq!(out[0].workload_id.as_deref(), Some("<PERSON_1> onboarding"));
    assert_eq!(out[2].workload_id.as_deref(), Some("onboarding-<PERSON_1>"));
    assert!(out[2]
        .workload_id
        .as_deref()
        .unwrap()
        .starts_with("onboarding-<PERSON_"));
    assert_eq!(out[1].tools[0].name, "get_weather");
    assert_eq!(out[1].model.as_deref(), Some("gpt-4o-mini"));
    assert!(stats.total() >= 10, "{stats:?}");
}

#[test]
fn ordinary_structural_identifiers_are_kept() {
    let r = redactor();
    let cases = [
        (
            "get_weather",
            "call_abc123",
            "gpt-4o-mini",
            "stop",
            "support_triage",
        ),
        (
            "lookup_order_v2",
            "toolu_01A09q90qw90lq917835lq9",
            "claude-3-5-sonnet-20241022",
            "tool_calls",
            "order_status",
        ),
        (
            "search.docs",
            "550e8400-e29b-41d4-a716-446655440000",
            "ft:gpt-4o-mini-2024-07-18:acme::9xyzABC",
            "length",
            "Invoice Extraction",
        ),
        (
            "fetch_v1.2.3.4",
            "call_1718035200123",
            "meta-llama/Llama-3.1-8B-Instruct",
            "end_turn",
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
        ),
        (
            "create_ticket",
            "call_0",
            "mistral-large-2407",
            "max_tokens",
            "ap-invoice-parser",
        ),
    ];
    for (tool, id, model, finish, workload) in cases {
        let c = structural_call(tool, id, model, finish, workload);
        let before = structural_text(&c);
        let (out, stats, _) = redact_calls(&r, vec![c]);
        assert_eq!(structural_text(&out[0]), before, "{stats:?}");
    }
}

// ---------------------------------------------------------------------------
// Values the free-text detectors used to miss.

#[test]
fn url_encoded_emails_are_redacted() {
    let r = redactor();
    check(
        &r,
        "unsubscribe john.doe%40example.com now",
        &[("john.doe%40example.com", "EMAIL")],
    );
    let out = red(
        &r,
        "GET https://shop.example/unsub?email=john.doe%40example.com&list=7 and mail john.doe@example.com",
    );
    assert_eq!(
        out, "GET https://shop.example/unsub?email=<EMAIL_1>&list=7 and mail <EMAIL_1>",
        "the encoded and plain forms are one entity"
    );
    let out = red(&r, "redirect=%2Fhome%3Fto%3Dmary_smith%40corp.example.org");
    assert!(
        !out.contains("mary_smith") && out.contains("<EMAIL_1>"),
        "{out}"
    );
    // a whole local part with an underscore goes, not just its tail
    assert_eq!(
        red(&r, "mail joe_bloggs@company-name.com"),
        "mail <EMAIL_1>"
    );
    // an @ in a package path is not an e-mail
    kept(
        &r,
        "see https://cdn.example/npm/%40babel%2Fcore%407.24.0/index.js",
    );
}

#[test]
fn aws_secret_key_next_to_its_access_key_id_is_redacted() {
    let r = redactor();
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    for text in [
        format!("creds: {AWS} {secret}"),
        format!("{AWS}:{secret}"),
        format!("Access key ID,Secret access key\n{AWS},{secret}\n"),
        format!("use {secret} with {AWS} please"),
        format!("[default]\\n{AWS}\\n{secret}"),
    ] {
        let out = red(&r, &text);
        assert!(!out.contains(AWS) && !out.contains(secret), "{out}");
        assert!(
            out.contains("<SECRET_1>") && out.contains("<SECRET_2>"),
            "{out}"
        );
    }
    // a 40-character git hash near an access key id is not a secret key
    let out = red(
        &r,
        &format!("{AWS} rotated in commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
    );
    assert!(
        out.contains("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
        "{out}"
    );
}

const PEM_LINES: [&str; 5] = [
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK",
    "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo",
    "9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ0iT9wCS0DRTXu269V264Vf/3jvre",
    "Fq5mH7z9rEk0hGG3bCm8uY8xKq2Z0RnMGE1XRoz2ZGD0ArXtbA==",
];

#[test]
fn private_key_body_in_a_later_message_is_redacted() {
    let r = redactor();
    let body = PEM_LINES.join("\n");
    // the BEGIN line in one message, the body and END in the next
    let mut c = Call::default();
    c.messages.push(Message::text(
        Role::User,
        "Here is the deploy key:\n-----BEGIN RSA PRIVATE KEY-----",
    ));
    c.messages.push(Message::text(
        Role::User,
        format!("{body}\n-----END RSA PRIVATE KEY-----\nCan you check it?"),
    ));
    // split in three: BEGIN and a line, two lines, the rest and END
    let mut c3 = Call::default();
    c3.messages.push(Message::text(
        Role::User,
        format!("-----BEGIN PRIVATE KEY-----\n{}", PEM_LINES[0]),
    ));
    c3.messages
        .push(Message::text(Role::User, PEM_LINES[1..3].join("\n")));
    c3.messages.push(Message::text(
        Role::User,
        format!(
            "{}\n{}\n-----END PRIVATE KEY-----",
            PEM_LINES[3], PEM_LINES[4]
        ),
    ));
    c3.response.content = Some("Thanks, got it.".into());
    let (out, _, _) = redact_calls(&r, vec![c, c3]);
    for c in &out {
        let text = all_text(c);
        for line in PEM_LINES {
            assert!(!text.contains(line), "{line} survived:\n{text}");
        }
    }
    assert_eq!(
        out[0].messages[1].content.as_deref().unwrap(),
        "<SECRET_2>\nCan you check it?"
    );
    assert_eq!(out[1].response.content.as_deref(), Some("Thanks, got it."));
    // on its own (a quarantined fragment): END with the body before it...
    let out = red(
        &r,
        &format!("rest of it:\n{body}\n-----END RSA PRIVATE KEY-----"),
    );
    assert_eq!(out, "rest of it:\n<SECRET_1>");
    // ...or just the 64-character lines of a base64 block
    let out = red(
        &r,
        &format!("middle part:\n{}\nmore later", PEM_LINES[..4].join("\n")),
    );
    assert_eq!(out, "middle part:\n<SECRET_1>\nmore later");
}

#[test]
fn phone_with_a_00_international_prefix_is_redacted() {
    let r = redactor();
    let out = red(&r, "Office: 0044 20 7946 0958, or +44 20 7946 0958.");
    assert_eq!(
        out, "Office: <PHONE_1>, or <PHONE_1>.",
        "same number, same placeholder"
    );
    let out = red(&r, "Call 0044 20 7946 0958 or +44 20 7946 0958.");
    assert_eq!(
        out, "Call <PHONE_1> or <PHONE_1>.",
        "same number, same placeholder"
    );
    check(&r, "Tel 0033 1 23 45 67 89", &[("23 45 67 89", "PHONE")]);
    check(&r, "ring 0049-30-901820 today", &[("901820", "PHONE")]);
    // zero-padded numbers without separators are ids
    kept(&r, "Batch 004412345678 and part 0012345678901 shipped.");
}

#[test]
fn low_entropy_password_assignments_are_redacted() {
    let r = redactor();
    for (text, value) in [
        ("password=letmeinnow", "letmeinnow"),
        ("db.password: letmeinnow", "letmeinnow"),
        ("DB_PASSWORD=letmeinnow", "letmeinnow"),
        ("passwd = sunshine", "sunshine"),
        ("pwd: dragonfly", "dragonfly"),
        ("{\"password\": \"letmeinnow\"}", "letmeinnow"),
        (
            "login with user=admin password='letmeinnow' then",
            "letmeinnow",
        ),
        ("secret=opensesame", "opensesame"),
        ("token: abcdefghij", "abcdefghij"),
        ("api_key=testkeyvalue", "testkeyvalue"),
        ("export API_KEY=\"mysupersecret\"", "mysupersecret"),
        ("my password: letmeinnow and then", "letmeinnow"),
    ] {
        check(&r, text, &[(value, "SECRET")]);
    }
}

#[test]
fn quarantined_raw_text_redacts_a_phone_under_an_id_key() {
    let r = redactor();
    // a record that failed to parse goes through redact_text as raw text
    let raw = r#"{"id": "+1 415 555 2671", "messages": [{"role": "user", "content": "hi"#;
    check(&r, raw, &[("555 2671", "PHONE")]);
    check(&r, r#"{"id":"415-555-2671","x":"#, &[("555-2671", "PHONE")]);
    check(
        &r,
        r#"{"tool_calls": [{"id": "call_+14155552671", "type": "#,
        &[("4155552671", "PHONE")],
    );
    check(
        &r,
        r#"{"user": {"id": "0044 20 7946 0958"}, "#,
        &[("7946 0958", "PHONE")],
    );
    // order ids and plain numeric ids stay
    kept(&r, r#"{"order_id": "555-123-4567", "id": 4155552671, "#);
}

#[test]
fn look_alikes_stay_unredacted() {
    let r = redactor();
    for text in [
        // versions
        "Upgraded to 10.4.12 and v2.3.1-rc.2; pinned requests==2.31.0; build 2024.06.1",
        // order numbers and references that are not phones
        "Order #00441234567 and order number 555-123-4567; ticket 020-7946-0958",
        // commit hashes and UUIDs
        "commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 fixed it; id 550e8400-e29b-41d4-a716-446655440000",
        "Merged 1f0e3dad99908345f7439f8ffabdffc4 into main (sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855)",
        // password mentions without a value
        "Please reset your password. The password field is required.",
        "Forgot password? Use the link; password: must be 12+ chars.",
        "password: ********, token: <redacted>, secret: ${VAULT_SECRET}, api_key=None",
        "def login(user, password): return check(password=password)",
        "password = getpass.getpass() if interactive else None",
        "let token: Option<String> = None; password: String,",
        "PWD=/home/builder/project and OLDPWD=/tmp",
        "The secret: practice every day, and keep the token: simple rules apply",
    ] {
        kept(&r, text);
    }
}

#[test]
fn a_stored_row_carries_the_redacted_calls_id() {
    // CallRow serialises messages and tools once and derives the id from
    // those strings; it must be the id RedactedCall::id computes.
    let r = redactor();
    let (out, _, _) = redact_calls(&r, vec![full_call()]);
    let row = slmforge::artifact::calls::CallRow::from_call(&out[0]);
    assert_eq!(row.call_id, out[0].id());
}

#[test]
fn unlisted_names_are_found_by_not_being_english_words() {
    // Neither word is in the name lexicon (invented spellings), nor an
    // English word, a place or an organisation word: a name by shape.
    let r = redactor();
    for s in [
        "Remind Quvendo Taralisk to submit the expense report.",
        "Your driver Quvendo Taralisk is 5 minutes away.",
        "Meeting notes: Quvendo Taralisk will own the rollout.",
        "Is Quvendo Taralisk free on Wednesday?",
    ] {
        check(&r, s, &[("Quvendo", "PERSON"), ("Taralisk", "PERSON")]);
    }
    let out = red(&r, r#"{"name":"Quvendo Taralisk","date":"2026-03-14"}"#);
    assert!(!out.contains("Quvendo"), "{out}");
    // English words, software, companies and things named the same way stay
    for s in [
        "We moved the logs to Grafana Loki last week.",
        "Deploy it on the Quvendo Taralisk cluster.",
        "Invoice from Quvendo Taralisk GmbH, due in 30 days.",
        "Vendor: Quvendo Taralisk S.r.l. (Milano), net 30",
        "Upgrade Quvendo Taralisk 3.2 before Friday.",
        "Harvest Moon Festival tickets are on sale.",
        "Open the Visual Studio Code settings.",
        "Quvendo Taralisk Vemoru Stael is a phrase, not a name.",
    ] {
        kept(&r, s);
    }
}

/// `key=value; key=value` form lines (web-form notifications, CRM events):
/// the values are found as in prose, the key naming the kind.
#[test]
fn form_field_lines_are_redacted() {
    let r = redactor();
    let lines = [
        "New demo request: name=Mei Dang; company=Umbrella Health; seats=100; email=mei.dang@umbrella-health.org; phone=415-517-2720; message=Looking at the team licences, please call after 2pm.",
        "New demo request: name=Tara Bauer; company=Contoso; seats=10; email=tara@contoso.com; phone=+49 170 37195621; message=Looking at the Business plan.",
        "New demo request: name=Nora Andersen; company=Litware; seats=500; email=nora@litware.io; phone=+91 98955 48677; message=please call.",
        "Lead: phone=415-385-4973, name=Isabel Novak, seats=5",
        "notify(phone=+1 (415) 555-0134, name=Tom Murphy)",
    ];
    for (s, raw) in lines.iter().zip([
        ["Mei Dang", "415-517-2720"],
        ["Tara Bauer", "37195621"],
        ["Nora Andersen", "48677"],
        ["Isabel Novak", "415-385-4973"],
        ["Tom Murphy", "555-0134"],
    ]) {
        let out = red(&r, s);
        eprintln!("{out}");
        for v in raw {
            assert!(!out.contains(v), "{v} left in {out}");
        }
        assert!(
            !out.contains("+<"),
            "a sign left outside the placeholder: {out}"
        );
        for kept in [
            "Umbrella Health",
            "Contoso",
            "Litware",
            "seats=",
            "company=",
        ] {
            if s.contains(kept) {
                assert!(out.contains(kept), "{kept} lost in {out}");
            }
        }
    }
    // The form's values and the same values in a JSON answer share placeholders.
    let out = red(
        &r,
        "name=Mei Dang; phone=415-517-2720\n{\"name\":\"Mei Dang\",\"phone\":\"415-517-2720\"}",
    );
    assert_eq!(
        out,
        "name=<PERSON_1>; phone=<PHONE_1>\n{\"name\":\"<PERSON_1>\",\"phone\":\"<PHONE_1>\"}"
    );
    // A backslash in a value, at the very end of the text, or a multi-byte
    // character right after it: no panic, the value still found.
    for s in [
        "phone=415-517-2720\\",
        "phone=415-517-2720\\n",
        "name=Mei Dang\\né",
        "x=é=é;name=",
    ] {
        let out = red(&r, s);
        assert!(
            !out.contains("415-517") && !out.contains("Mei Dang"),
            "{out}"
        );
    }
    // Prose after the value on the same line: the leading words that read
    // as the key's kind are the value.
    assert_gone(
        &r,
        &[
            ("Lead phone=415-517-2720 wants a callback", "517-2720"),
            ("Lead: phone=+49 170 37195621 (mobile), asap", "37195621"),
            ("name=Mei Dang wants a demo", "Mei Dang"),
            ("owner=Mei Dang (Sales); x=1", "Mei Dang"),
        ],
    );
    // Linear on text full of `=`: a megabyte of `name=` and of a repr list.
    for s in ["name=".repeat(200_000), "[User(name=ab), ".repeat(60_000)] {
        let t = std::time::Instant::now();
        red(&r, &s);
        assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
    }
    // URL-encoded values (a query string, `+` for a space) are read decoded
    // and redacted whole, with the plain form's placeholders.
    let out = red(
        &r,
        "name=Mei Dang; phone=415-517-2720; email=mei.dang@umbrella-health.org\n\
         GET /leads?name=Mei%20Dang&phone=415%20517%202720&src=ad&email=mei.dang%40umbrella-health.org\n\
         lead: name=Mei+Dang",
    );
    assert_eq!(
        out,
        "name=<PERSON_1>; phone=<PHONE_1>; email=<EMAIL_1>\n\
         GET /leads?name=<PERSON_1>&phone=<PHONE_1>&src=ad&email=<EMAIL_1>\n\
         lead: name=<PERSON_1>"
    );
    // Not fields: comparisons, code defaults, ordinary words after `=`; nor
    // values whose shape is not the key's kind (a memory or network address,
    // a file name under `zip`, a date under `fax`).
    for s in [
        "if phone_count == 415: pass",
        "def f(name=None, phone=0): ...",
        "set seats=100 and plan=Enterprise",
        "segfault at address=0x7ffe5c3a9b10 in worker",
        "listening on address=localhost:8080; zip=archive12; fax=2024-01-15",
    ] {
        assert_eq!(red(&r, s), s);
    }
}

/// Values whose shape looks odd for their key are still read by it: street
/// addresses with `:` `.` `/`, eight-digit phones that read as a date,
/// plus-addressed mail under an e-mail key, two-word postcodes; several
/// people in one URL-encoded value keep one placeholder each.
#[test]
fn odd_shaped_form_values_are_still_redacted() {
    let r = redactor();
    assert_gone(
        &r,
        &[
            ("address=Home: Flat 2, Kings Court, Leeds", "Kings Court"),
            ("address=Attn:Jane Roe, 5 Elm Rd", "Jane Roe"),
            ("street=Hauptstr.5; x=1", "Hauptstr"),
            ("address=ul.Marszalkowska/12", "Marszalkowska"),
            ("phone=20051230; fax=19991231", "2005"),
            ("phone=20051230; fax=19991231", "1999"),
            ("email=jo+orders@acmecorp; x=1", "jo+orders"),
            ("zip=Oslo 0150; x=1", "0150"),
        ],
    );
    assert_eq!(
        red(&r, "name=Mei%20Dang%2C%20Ann%20Lee then x\nname=Ann Lee"),
        "name=<PERSON_1>%2C%20<PERSON_2> then x\nname=<PERSON_2>"
    );
}

/// E-mail addresses with letters outside ASCII (RFC 6531) are redacted
/// whole, one pseudonym whatever the case.
#[test]
fn unicode_email_addresses_are_redacted_whole() {
    let r = redactor();
    let out = red(
        &r,
        "Hi, I'm Søren, write to søren@example.dk or SØREN@example.dk; \
         cc josé.garcía@correo.es and anna@bücher.de",
    );
    for raw in ["søren", "SØREN", "josé", "garcía", "anna@", "bücher"] {
        assert!(!out.contains(raw), "{raw} left in {out}");
    }
    assert!(
        out.contains("write to <EMAIL_1> or <EMAIL_1>;"),
        "one pseudonym for both cases: {out}"
    );
    // text in a script written without spaces is not part of the address
    assert_eq!(
        red(&r, "请发邮件到john@example.com 或者 john@example.com"),
        "请发邮件到<EMAIL_1> 或者 <EMAIL_1>"
    );
}

/// A context word inside an e-mail address or URL says nothing about the
/// number after it: `+orders@` is a mailbox tag, not an order number.
#[test]
fn words_inside_addresses_do_not_hide_phones() {
    let r = redactor();
    assert_gone(
        &r,
        &[
            (
                "You can reach me at david.larsen+orders@tailspintoys.com or +1 917 965 8769.",
                "965 8769",
            ),
            (
                "Best,\nFatima\noffice manager\nfatima.nguyen+orders@yahoo.com\n718-215-8091",
                "215-8091",
            ),
            (
                "see https://shop.example/order/x or 512-208-2695",
                "208-2695",
            ),
            (
                "see https://shop.example.com/orders/x or 512-208-2695",
                "208-2695",
            ),
            ("see shop.example/order/x or 512-208-2695", "208-2695"),
        ],
    );
    // The word itself still keeps an order number.
    let s = "order 512-208-2695 shipped";
    assert_eq!(red(&r, s), s);
}
