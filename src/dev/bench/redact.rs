//! `slmforge bench redact`: throughput of the redactor on synthetic LLM-log
//! calls (English prose, system prompts, JSON tool calls and results, a few
//! entities), generated deterministically from a seed.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::{json, Value};

use super::measure::peak_rss_bytes;
use crate::call::{Call, Message, RawCall, Response, Role, ToolCall, ToolDef};
use crate::redact::{Pseudonyms, RedactConfig, RedactKey, RedactStats, Redactor};

const PROSE: &[&str] = &[
    "The quarterly report shows revenue growth of 12% compared with last year, driven mainly by the enterprise segment.",
    "Please summarise the following document in three bullet points and keep the tone neutral.",
    "I tried restarting the service but the deployment still fails with a timeout after about 30 seconds.",
    "Our onboarding flow has five steps, and most users drop off at the payment page.",
    "Can you rewrite this paragraph so that it is easier to read for a non-technical audience?",
    "The migration to the new database finished on Tuesday, and query latency dropped by roughly 40 percent.",
    "We need a short product description for the new noise-cancelling headphones, under 80 words.",
    "The customer asked whether the Premium plan includes priority support and an uptime guarantee.",
    "According to the documentation, the API returns a 429 status code when the rate limit is exceeded.",
    "Translate the following sentence into French, keeping the formal register.",
    "The meeting has been moved to next Thursday at 3 PM because the design review ran late.",
    "Version 2.4.1 fixes the memory leak in the ingestion worker and adds retries for transient errors.",
    "Explain the difference between a process and a thread in simple terms, with one example each.",
    "The invoice total was $1,249.00 including tax, and payment is due within 30 days.",
    "Write a SQL query that returns the top ten products by revenue for the last quarter.",
    "The model should answer only with valid JSON matching the schema described below.",
    "Shipping usually takes three to five business days, and tracking information is sent by email.",
    "Our team uses Kubernetes on Google Cloud, with Terraform for infrastructure and GitHub Actions for CI.",
    "Classify the sentiment of the review as positive, negative or neutral, and give a one-line reason.",
    "The warehouse in Rotterdam reported a stock discrepancy of 14 units for item SKU-4471.",
    "If the user asks about refunds, point them to the returns policy and do not promise anything.",
    "The function should handle empty input gracefully and return an error instead of panicking.",
    "Sales in the Northeast region were flat, while the West Coast grew by 8% quarter over quarter.",
    "Draft a polite reply declining the partnership offer but leaving the door open for next year.",
];

const SYSTEMS: &[&str] = &[
    "You are a helpful customer support assistant for Acme Cloud. Answer concisely, cite the knowledge base when possible, never invent policies, and escalate billing disputes to a human agent. Keep answers under 200 words unless the user asks for detail. If you are unsure, say so and offer to open a ticket.",
    "You are an expert software engineer. Review the code the user provides, point out bugs, security issues and performance problems, and suggest concrete fixes with short code snippets. Prefer idiomatic solutions and explain trade-offs briefly.",
    "You extract structured data from emails. Return a JSON object with the fields intent, urgency (low, medium, high), products mentioned, and a one-sentence summary. Do not include any text outside the JSON object.",
    "You are a travel booking assistant. Use the available tools to search flights and hotels, confirm details with the user before booking, and always state prices with currency and taxes included.",
];

const FIRST: &[&str] = &[
    "Sarah", "James", "Priya", "Mohammed", "Elena", "Kenji", "Olivia", "Carlos", "Fatima", "Lukas",
];
const LAST: &[&str] = &[
    "Johnson",
    "Miller",
    "Natarajan",
    "Haddad",
    "Rossi",
    "Tanaka",
    "Nguyen",
    "Garcia",
    "Okafor",
    "Schmidt",
];

fn entity(rng: &mut ChaCha8Rng) -> String {
    let f = FIRST[rng.random_range(0..FIRST.len())];
    let l = LAST[rng.random_range(0..LAST.len())];
    let n: u32 = rng.random_range(100..999);
    match rng.random_range(0..10) {
        0 => format!(
            "You can reach me at {}.{}@example.com if anything changes.",
            f.to_lowercase(),
            l.to_lowercase()
        ),
        1 => format!(
            "My phone number is (555) {n}-{:04}, call after 5pm.",
            rng.random_range(0..10000)
        ),
        2 => format!("Thanks,\n{f} {l}"),
        3 => format!(
            "Please ship it to {} Oak Street, Springfield, IL 62704.",
            rng.random_range(10..999)
        ),
        4 => format!(
            "The request came from 10.{}.{}.{} according to the gateway logs.",
            n % 256,
            n % 200,
            n % 100
        ),
        5 => format!("Hi {f}, thanks for getting back to me so quickly."),
        6 => "The card 4111 1111 1111 1111 was declined at checkout.".to_string(),
        7 => format!("Our contact there is Dr. {l}, who runs the lab."),
        8 => "export OPENAI_API_KEY=sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789".to_string(),
        _ => format!("I'm {f} and I manage the account for our team."),
    }
}

fn paragraph(rng: &mut ChaCha8Rng, sentences: usize, entity_p: f64) -> String {
    let mut s = String::new();
    for _ in 0..sentences {
        if !s.is_empty() {
            s.push(' ');
        }
        if rng.random_bool(entity_p) {
            s.push_str(&entity(rng));
        } else {
            s.push_str(PROSE[rng.random_range(0..PROSE.len())]);
        }
    }
    s
}

fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "search_orders".into(),
            description: Some(
                "Search the order database by customer, status or date range.".into(),
            ),
            parameters: json!({"type": "object", "properties": {
                "customer_name": {"type": "string", "description": "Full name of the customer"},
                "status": {"type": "string", "enum": ["open", "shipped", "cancelled"]},
                "from_date": {"type": "string", "description": "ISO date, e.g. 2024-01-31"}},
                "required": ["status"]}),
        },
        ToolDef {
            name: "get_weather".into(),
            description: Some("Current weather for a city.".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}}),
        },
    ]
}

/// Deterministic synthetic calls totalling at least `target_bytes` of text.
pub fn synthetic_calls(seed: u64, target_bytes: usize) -> (Vec<Call>, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut calls = Vec::new();
    let mut total = 0usize;
    while total < target_bytes {
        let mut c = Call {
            model: Some("gpt-4o-mini".into()),
            ..Default::default()
        };
        c.messages.push(Message::text(
            Role::System,
            SYSTEMS[rng.random_range(0..SYSTEMS.len())],
        ));
        let turns = rng.random_range(1..4);
        for _ in 0..turns {
            let n = rng.random_range(2..8);
            c.messages
                .push(Message::text(Role::User, paragraph(&mut rng, n, 0.08)));
            let n = rng.random_range(3..10);
            c.messages
                .push(Message::text(Role::Assistant, paragraph(&mut rng, n, 0.02)));
        }
        if rng.random_bool(0.4) {
            c.tools = tools();
            let who = format!(
                "{} {}",
                FIRST[rng.random_range(0..FIRST.len())],
                LAST[rng.random_range(0..LAST.len())]
            );
            let args = json!({"customer_name": who, "status": "open", "from_date": "2024-03-01"});
            c.messages.push(Message {
                role: Role::Assistant,
                content: None,
                tool_calls: vec![ToolCall {
                    id: Some(format!("call_{}", calls.len())),
                    name: "search_orders".into(),
                    arguments: args,
                    arguments_valid: true,
                }],
                tool_call_id: None,
                name: None,
            });
            let rows: Vec<Value> = (0..rng.random_range(1..6))
                .map(|i| json!({"order_id": format!("A-{}", 10000 + i), "status": "open", "total": 129.5 + i as f64,
                    "items": ["USB-C cable", "Laptop stand"], "note": PROSE[rng.random_range(0..PROSE.len())]}))
                .collect();
            let mut m = Message::text(
                Role::Tool,
                serde_json::to_string(&json!({"orders": rows})).unwrap_or_default(),
            );
            m.tool_call_id = Some(format!("call_{}", calls.len()));
            c.messages.push(m);
        }
        let n = rng.random_range(3..9);
        c.response = Response {
            content: Some(paragraph(&mut rng, n, 0.02)),
            tool_calls: vec![],
            finish_reason: Some("stop".into()),
        };
        c.metadata.insert(
            "user_id".into(),
            json!(format!("u_{}", rng.random_range(0..5000))),
        );
        c.metadata.insert("env".into(), json!("production"));
        total += text_bytes(&c);
        calls.push(c);
    }
    (calls, total)
}

/// Bytes of text the redactor looks at in a call.
pub fn text_bytes(c: &Call) -> usize {
    let mut c = c.clone();
    let mut n = 0;
    c.for_each_text_mut(&mut |s| n += s.len());
    n
}

/// Calls made from a text file: ~4 KB chunks cut at line ends, each one
/// user message.
pub fn corpus_calls(path: &std::path::Path) -> anyhow::Result<(Vec<Call>, usize)> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading corpus {}", path.display()))?;
    let mut calls = Vec::new();
    let mut chunk = String::new();
    for line in text.split_inclusive('\n') {
        chunk.push_str(line);
        if chunk.len() >= 4096 {
            calls.push(std::mem::take(&mut chunk));
        }
    }
    if !chunk.is_empty() {
        calls.push(chunk);
    }
    let calls: Vec<Call> = calls
        .into_iter()
        .map(|t| {
            let mut c = Call::default();
            c.messages.push(Message::text(Role::User, t));
            c
        })
        .collect();
    Ok((calls, text.len()))
}

pub fn run(mb: usize, corpus: Option<&std::path::Path>) -> anyhow::Result<()> {
    let key = RedactKey::from_bytes(b"slmforge-bench-key-not-secret-0001")?;
    let red = Redactor::new(RedactConfig::new(key))?;
    let (calls, bytes) = match corpus {
        Some(p) => corpus_calls(p)?,
        None => synthetic_calls(42, mb.max(1) << 20),
    };
    let n = calls.len();
    let mbf = bytes as f64 / (1 << 20) as f64;
    if std::env::var_os("SLMFORGE_BENCH_PROFILE").is_some() {
        let mut texts = Vec::new();
        for c in &calls {
            let mut c = c.clone();
            c.for_each_text_mut(&mut |s| texts.push(s.clone()));
        }
        for (name, secs) in red.profile_patterns(&texts) {
            eprintln!("{name:>16}: {:8.1} MB/s  ({:.3} s)", mbf / secs, secs);
        }
    }

    // one thread
    let raws: Vec<RawCall> = calls.iter().cloned().map(RawCall::new).collect();
    let mut stats = RedactStats::default();
    let t0 = Instant::now();
    let c0 = thread_cpu_seconds();
    let pending: Vec<_> = raws
        .into_iter()
        .map(|r| red.redact_call(r, &mut stats))
        .collect();
    let single_s = t0.elapsed().as_secs_f64();
    let single_cpu = thread_cpu_seconds().zip(c0).map(|(b, a)| b - a);

    let mut ps = Pseudonyms::new();
    let t1 = Instant::now();
    let done: Vec<_> = pending.into_iter().map(|p| ps.finish(p)).collect();
    let finish_s = t1.elapsed().as_secs_f64();
    drop(done);

    // all threads, in chunks as ingest does
    let raws: Vec<RawCall> = calls.iter().cloned().map(RawCall::new).collect();
    let threads = rayon::current_num_threads();
    let t2 = Instant::now();
    let results: Vec<(Vec<_>, RedactStats)> = {
        let mut chunks: Vec<Vec<RawCall>> = Vec::new();
        let mut it = raws.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(256).collect());
        }
        chunks
            .into_par_iter()
            .map(|chunk| {
                let mut st = RedactStats::default();
                let p: Vec<_> = chunk
                    .into_iter()
                    .map(|r| red.redact_call(r, &mut st))
                    .collect();
                (p, st)
            })
            .collect()
    };
    let par_s = t2.elapsed().as_secs_f64();
    drop(results);

    let entities = stats.total();
    let out = json!({
        "target": "redact",
        "corpus": corpus.map(|p| p.display().to_string()),
        "text_mb": mbf,
        "calls": n,
        "avg_call_bytes": bytes / n.max(1),
        "single_thread": {"seconds": single_s, "mb_per_s": mbf / single_s, "calls_per_s": n as f64 / single_s,
            "cpu_seconds": single_cpu, "mb_per_cpu_s": single_cpu.map(|c| mbf / c)},
        "pseudonym_finish": {"seconds": finish_s, "mb_per_s": mbf / finish_s},
        "parallel": {"threads": threads, "seconds": par_s, "mb_per_s": mbf / par_s, "calls_per_s": n as f64 / par_s},
        "entities": entities,
        "entities_per_mb": entities as f64 / mbf,
        "by_kind": stats.by_kind,
        "distinct": ps.distinct_counts(),
        "peak_rss_bytes": peak_rss_bytes(),
    });
    eprintln!(
        "redact: {mbf:.1} MB of text in {n} calls; 1 thread {:.1} MB/s ({:.1} MB per CPU-second, {:.0} calls/s); {threads} threads {:.1} MB/s; finish {:.0} MB/s; {entities} entities",
        mbf / single_s,
        single_cpu.map(|c| mbf / c).unwrap_or(f64::NAN),
        n as f64 / single_s,
        mbf / par_s,
        mbf / finish_s
    );
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`,
/// nanoseconds on CPU), so throughput can be read per CPU-second on a
/// machine shared with other work.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}
