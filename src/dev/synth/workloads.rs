//! The synthetic workloads of `slmforge synth`: for each, system prompts,
//! tools, user-message templates with slot values and PII, and the answer,
//! which is always a deterministic function of the input (values copied
//! from the message or the tool result, categories mapped from keywords,
//! JSON in a fixed key order, SQL from a template per question type).

use serde_json::{json, Value};

use super::pii::{self, chance, pick, pick_str, Person, R};
use rand::seq::SliceRandom;
use rand::Rng;

/// Workload names, in a fixed order (also the ground-truth label values).
pub const WORKLOADS: [&str; 10] = [
    "support_triage",
    "order_status",
    "invoice_extraction",
    "meeting_summary",
    "sql_generation",
    "calendar_scheduling",
    "travel_agent",
    "chitchat",
    "sentiment_classification",
    "lead_extraction",
];

/// A tool offered to the model.
#[derive(Clone, Debug)]
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: Value,
}

/// A tool call; `id` is a provider-neutral 24-character suffix that each
/// format prefixes its own way (`call_`, `toolu_01`).
#[derive(Clone, Debug)]
pub struct TCall {
    pub id: String,
    pub name: &'static str,
    pub args: Value,
}

/// One turn of the conversation after the system prompt.
#[derive(Clone, Debug)]
pub enum Turn {
    User(String),
    Assistant(Vec<TCall>),
    ToolResult {
        call_id: String,
        name: &'static str,
        content: String,
    },
}

/// The model's answer: text (plain, JSON or SQL) or tool calls.
#[derive(Clone, Debug)]
pub enum Answer {
    Text(String),
    Tools(Vec<TCall>),
}

/// A provider-neutral synthetic call.
#[derive(Clone, Debug)]
pub struct Conv {
    pub workload: &'static str,
    pub system: String,
    pub tools: Vec<Tool>,
    pub turns: Vec<Turn>,
    pub answer: Answer,
    /// The app asked for JSON output (`response_format: json_object`).
    pub json_output: bool,
    pub temperature: f64,
    pub max_tokens: u32,
}

/// Generates one call of workload `idx` (index into [`WORKLOADS`]).
pub fn generate(idx: usize, rng: &mut R) -> Conv {
    match idx {
        0 => support_triage(rng),
        1 => order_status(rng),
        2 => invoice_extraction(rng),
        3 => meeting_summary(rng),
        4 => sql_generation(rng),
        5 => calendar_scheduling(rng),
        6 => travel_agent(rng),
        7 => chitchat(rng),
        8 => sentiment(rng),
        _ => lead_extraction(rng),
    }
}

/// Replaces `{key}` slots in a template.
fn fill(tpl: &str, slots: &[(&str, &str)]) -> String {
    let mut s = tpl.to_string();
    for (k, v) in slots {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// Joins non-empty sentences with single spaces.
fn sentences(parts: &[String]) -> String {
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn call(rng: &mut R, name: &'static str, args: Value) -> TCall {
    TCall {
        id: pii::alnum(rng, 24),
        name,
        args,
    }
}

fn tool(name: &'static str, description: &'static str, parameters: Value) -> Tool {
    Tool {
        name,
        description,
        parameters,
    }
}

fn conv(
    workload: &'static str,
    system: &str,
    tools: Vec<Tool>,
    turns: Vec<Turn>,
    answer: Answer,
) -> Conv {
    Conv {
        workload,
        system: system.to_string(),
        tools,
        turns,
        answer,
        json_output: false,
        temperature: 0.0,
        max_tokens: 512,
    }
}

/// Adds a sign-off on its own line (or inline) when one is drawn.
fn with_signoff(rng: &mut R, body: String, p: &Person, options: &[&str]) -> String {
    let s = fill(
        pick_str(rng, options),
        &[("first", &p.first), ("full", &p.full())],
    );
    if s.is_empty() {
        body
    } else if s.contains('\n') || chance(rng, 0.5) {
        format!("{body}\n\n{s}")
    } else {
        format!("{body} {s}")
    }
}

// ---------------------------------------------------------------- support_triage

const TRIAGE_SYSTEM: [&str; 3] = [
    "You are the support triage assistant for Northwind Cloud. For every customer message, open a ticket with create_ticket. Category: billing, technical, account or shipping. Priority: high if urgent, low if it can wait, otherwise normal. Copy the customer's email exactly and use the problem as the subject.",
    "Northwind Cloud support desk. Triage each incoming message by calling create_ticket with the customer's email as written, a category (billing/technical/account/shipping), a priority (high/normal/low) and the customer's problem as the subject.",
    "Role: ticket triage bot for Northwind Cloud customer support. Always answer with a create_ticket call. Map the problem to billing, technical, account or shipping. Urgent or ASAP means high priority, no rush means low, anything else normal.",
];

pub const TRIAGE_ISSUES: &[(&str, &str)] = &[
    (
        "billing",
        "I was charged twice for my subscription this month",
    ),
    ("billing", "my invoice shows the wrong amount"),
    ("billing", "the refund for my last payment never arrived"),
    ("billing", "my card was declined even though it is valid"),
    ("billing", "we were billed for seats we removed last month"),
    (
        "billing",
        "the annual discount was not applied to our renewal",
    ),
    ("technical", "the dashboard times out when I export reports"),
    ("technical", "the API returns a 500 error on every request"),
    ("technical", "the mobile app crashes when I open settings"),
    ("technical", "webhooks stopped firing since yesterday"),
    (
        "technical",
        "file uploads over 10 MB fail with a network error",
    ),
    ("technical", "single sign-on redirects me to a blank page"),
    ("account", "I am locked out after resetting my password"),
    ("account", "two-factor codes are not arriving on my phone"),
    ("account", "I need to transfer ownership of our workspace"),
    ("account", "I want my account and all my data deleted"),
    ("account", "my username was changed without my consent"),
    ("account", "I cannot add a new admin to our team"),
    (
        "shipping",
        "the package shows delivered but I never received it",
    ),
    ("shipping", "the wrong item arrived in my parcel"),
    (
        "shipping",
        "my delivery has been stuck in customs for a week",
    ),
    (
        "shipping",
        "the box arrived damaged and the router is scratched",
    ),
    (
        "shipping",
        "I need to change the delivery address on my order",
    ),
    ("shipping", "only half of my order was delivered"),
];

fn support_triage(rng: &mut R) -> Conv {
    let domain = pick(rng, pii::COMPANIES).1;
    let p = pii::person(rng, Some(domain));
    let (category, issue) = *pick(rng, TRIAGE_ISSUES);
    let opener = fill(
        pick_str(
            rng,
            &[
                "Hi,",
                "Hello,",
                "Hey team,",
                "Good morning,",
                "Hi support,",
                "Dear Northwind team,",
                "Hello, this is {full}.",
                "Hi, my name is {full}.",
                "",
                "",
            ],
        ),
        &[("full", &p.full())],
    );
    let issue_s = fill(
        pick_str(
            rng,
            &[
                "I'm writing because {issue}.",
                "Quick problem: {issue}.",
                "It seems {issue}.",
                "Ticket please: {issue}.",
                "Can you help? It looks like {issue}.",
                "Hoping you can help - {issue}.",
                "Problem report: {issue}.",
                "Following up on my chat: {issue}.",
            ],
        ),
        &[("issue", issue)],
    );
    let details: &[&str] = match category {
        "billing" => &[
            "The card on file is {card}.",
            "It is about invoice {invoice}.",
            "Please send the refund to {iban}.",
            "Our customer number is {cust} and the card used was {card}.",
        ],
        "technical" => &[
            "We're on version {version}.",
            "Requests come from {ip}.",
            "This is the key we use: {key}",
            "Our bearer token is {jwt}",
            "It started after we upgraded to {version}, requests from {ip}.",
        ],
        "account" => &[
            "My date of birth is {dob} if you need to verify me.",
            "You can text me at {phone}.",
            "The last login came from {ip}.",
            "I was born on {dob}, in case you need it for verification.",
        ],
        _ => &[
            "Order number {order16}.",
            "The tracking number is {tracking}.",
            "It was supposed to go to {address}.",
            "My order number is {order16}, shipping address {address}.",
        ],
    };
    let slots = [
        ("card", pii::card(rng)),
        ("invoice", pii::invoice_number(rng)),
        ("iban", pii::iban(rng, "")),
        ("cust", format!("C-{}", pii::digits(rng, 7))),
        ("version", pii::version(rng)),
        ("ip", pii::ip(rng)),
        ("key", pii::api_key(rng)),
        ("jwt", pii::jwt(rng, &p.email)),
        ("dob", pii::dob(rng)),
        ("phone", pii::phone(rng)),
        ("order16", pii::order_number_16(rng)),
        ("tracking", pii::tracking(rng)),
        ("address", pii::address(rng)),
    ];
    let slot_refs: Vec<(&str, &str)> = slots.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let detail = if chance(rng, 0.75) {
        fill(pick_str(rng, details), &slot_refs)
    } else {
        String::new()
    };
    let extra = if chance(rng, 0.2) {
        fill(
            pick_str(
                rng,
                &[
                    "Call me on {phone} if that is easier.",
                    "Ticket ref from last time: TCK-{n}.",
                ],
            ),
            &[("phone", &slots[9].1), ("n", &pii::digits(rng, 5))],
        )
    } else {
        String::new()
    };
    let priority = *pick(rng, &["high", "normal", "normal", "low"]);
    let urgency = match priority {
        "high" => *pick(
            rng,
            &[
                "This is urgent, our whole team is blocked.",
                "Please treat this as urgent.",
                "We need this fixed ASAP.",
                "Urgent: production is down for us.",
            ],
        ),
        "low" => *pick(
            rng,
            &[
                "No rush, whenever you get a chance.",
                "No rush on this one.",
                "This can wait until next week.",
            ],
        ),
        _ => *pick(
            rng,
            &[
                "",
                "Thanks in advance.",
                "Let me know if you need more details.",
            ],
        ),
    };
    let email_s = fill(
        pick_str(
            rng,
            &[
                "My email is {email}.",
                "Please reply to {email}.",
                "Account email: {email}.",
                "You can reach me at {email}.",
                "I'm registered as {email}.",
            ],
        ),
        &[("email", &p.email)],
    );
    let mut parts = vec![issue_s];
    if chance(rng, 0.3) {
        parts.extend([email_s, detail, urgency.to_string(), extra]);
    } else {
        parts.extend([detail, urgency.to_string(), extra, email_s]);
    }
    let body = match opener.as_str() {
        "" => sentences(&parts),
        o if o.ends_with(',') => format!("{o}\n{}", sentences(&parts)),
        o => format!("{o} {}", sentences(&parts)),
    };
    let user = with_signoff(
        rng,
        body,
        &p,
        &[
            "Thanks,\n{first}",
            "Best regards,\n{full}",
            "Cheers, {first}",
            "-- {full}",
            "Thanks!",
            "",
        ],
    );
    let tools = vec![
        tool(
            "create_ticket",
            "Open a support ticket.",
            json!({"type":"object","properties":{"email":{"type":"string"},"category":{"type":"string","enum":["billing","technical","account","shipping"]},"priority":{"type":"string","enum":["high","normal","low"]},"subject":{"type":"string"}},"required":["email","category","priority","subject"]}),
        ),
        tool(
            "search_help_center",
            "Search help-center articles.",
            json!({"type":"object","properties":{"query":{"type":"string"}},"required":["query"]}),
        ),
    ];
    let answer = Answer::Tools(vec![call(
        rng,
        "create_ticket",
        json!({"email": p.email, "category": category, "priority": priority, "subject": issue}),
    )]);
    let mut c = conv(
        "support_triage",
        pick_str(rng, &TRIAGE_SYSTEM),
        tools,
        vec![Turn::User(user)],
        answer,
    );
    c.temperature = 0.2;
    c
}

// ---------------------------------------------------------------- order_status

const ORDER_SYSTEM: [&str; 3] = [
    "You are ShopRight's order assistant. Use get_order_status to look up an order, cancel_order to cancel one and start_return for returns. Pass the order id exactly as the customer wrote it. After a status result, tell the customer the status in one sentence.",
    "ShopRight customer service agent. Tools: get_order_status, cancel_order, start_return. Copy the order id verbatim and pick the reason from the allowed values. When you get the order status back, summarise it in one sentence.",
    "Help ShopRight shoppers with their orders. Call exactly one tool: get_order_status, cancel_order or start_return, with the order id as written. Reply with one sentence once the status is known.",
];

pub const CANCEL_REASONS: &[(&str, &str)] = &[
    ("changed_mind", "I changed my mind"),
    ("changed_mind", "I don't need it anymore"),
    ("found_cheaper", "I found it cheaper elsewhere"),
    ("found_cheaper", "another shop has a better price"),
    ("too_slow", "the delivery is taking too long"),
    ("too_slow", "it won't arrive in time"),
    ("ordered_by_mistake", "I ordered it by mistake"),
    ("ordered_by_mistake", "I clicked buy twice by accident"),
];

pub const RETURN_REASONS: &[(&str, &str)] = &[
    ("damaged", "it arrived damaged"),
    ("damaged", "the screen is cracked"),
    ("wrong_item", "you sent the wrong item"),
    ("wrong_item", "I received a different model"),
    ("doesnt_fit", "it doesn't fit"),
    ("doesnt_fit", "the size is too small"),
    ("not_as_described", "it's not as described"),
    (
        "not_as_described",
        "the colour is different from the photos",
    ),
];

fn order_id(rng: &mut R) -> String {
    match rng.random_range(0..5) {
        0 => format!("ORD-{}", pii::digits(rng, 6)),
        1 => format!("SR-2025-{}", pii::digits(rng, 5)),
        2 => format!(
            "{}{}-{}",
            pii::upper(rng, 1),
            pii::digits(rng, 2),
            pii::digits(rng, 5)
        ),
        _ => pii::order_number_16(rng),
    }
}

fn order_status(rng: &mut R) -> Conv {
    let p = pii::person(rng, None);
    let id = order_id(rng);
    let tools = vec![
        tool(
            "get_order_status",
            "Look up an order.",
            json!({"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}),
        ),
        tool(
            "cancel_order",
            "Cancel an order.",
            json!({"type":"object","properties":{"order_id":{"type":"string"},"reason":{"type":"string","enum":["changed_mind","found_cheaper","too_slow","ordered_by_mistake"]}},"required":["order_id","reason"]}),
        ),
        tool(
            "start_return",
            "Start a return.",
            json!({"type":"object","properties":{"order_id":{"type":"string"},"reason":{"type":"string","enum":["damaged","wrong_item","doesnt_fit","not_as_described"]}},"required":["order_id","reason"]}),
        ),
    ];
    let intent = rng.random_range(0..10);
    let (request, tcall) = if intent < 5 {
        let s = fill(
            pick_str(
                rng,
                &[
                    "Where is my order {id}?",
                    "Can you check the status of order {id}?",
                    "Order {id} still hasn't arrived, any update?",
                    "I'd like to track my order {id}.",
                    "Has order {id} shipped yet?",
                    "What's going on with {id}? It's been a week.",
                ],
            ),
            &[("id", &id)],
        );
        (s, call(rng, "get_order_status", json!({"order_id": id})))
    } else if intent < 8 {
        let (code, phrase) = *pick(rng, CANCEL_REASONS);
        let s = fill(
            pick_str(
                rng,
                &[
                    "Please cancel order {id}, {reason}.",
                    "I want to cancel {id} because {reason}.",
                    "Cancel my order {id} please - {reason}.",
                    "Could you cancel order {id}? Honestly {reason}.",
                ],
            ),
            &[("id", &id), ("reason", phrase)],
        );
        (
            s,
            call(rng, "cancel_order", json!({"order_id": id, "reason": code})),
        )
    } else {
        let (code, phrase) = *pick(rng, RETURN_REASONS);
        let s = fill(
            pick_str(
                rng,
                &[
                    "I'd like to return order {id} because {reason}.",
                    "Order {id}: {reason}, so I want to send it back.",
                    "Please start a return for {id}, {reason}.",
                    "Return request for order {id} - {reason}.",
                ],
            ),
            &[("id", &id), ("reason", phrase)],
        );
        (
            s,
            call(rng, "start_return", json!({"order_id": id, "reason": code})),
        )
    };
    let intro = fill(
        pick_str(
            rng,
            &[
                "",
                "",
                "Hi, this is {full}.",
                "Hello!",
                "Hi there,",
                "{first} here.",
            ],
        ),
        &[("full", &p.full()), ("first", &p.first)],
    );
    let extra = match rng.random_range(0..6) {
        0 => format!("It was shipped to {}.", pii::address(rng)),
        1 => format!("My email on the account is {}.", p.email),
        2 => format!("Phone: {}.", pii::phone(rng)),
        3 => format!("I paid with the card ending {}.", pii::digits(rng, 4)),
        _ => String::new(),
    };
    let user = with_signoff(
        rng,
        sentences(&[intro, request, extra]),
        &p,
        &["Thanks, {first}", "Best,\n{full}", "", "", "Thank you!"],
    );
    let multi = tcall.name == "get_order_status" && chance(rng, 0.35);
    let mut c = if multi {
        let status = *pick(rng, &["shipped", "processing", "delivered", "delayed"]);
        let carrier = *pick(rng, &["DHL", "UPS", "FedEx", "La Poste", "Royal Mail"]);
        let eta = pii::iso_date(rng);
        let result = json!({"order_id": id, "status": status, "carrier": carrier, "eta": eta});
        let text = match status {
            "shipped" => {
                format!("Your order {id} has shipped with {carrier} and should arrive on {eta}.")
            }
            "processing" => {
                format!("Your order {id} is still being processed and should ship by {eta}.")
            }
            "delivered" => format!("Your order {id} was delivered by {carrier} on {eta}."),
            _ => format!("Your order {id} is delayed; the new estimated delivery date is {eta}."),
        };
        let tool_result = Turn::ToolResult {
            call_id: tcall.id.clone(),
            name: tcall.name,
            content: result.to_string(),
        };
        let turns = vec![Turn::User(user), Turn::Assistant(vec![tcall]), tool_result];
        conv(
            "order_status",
            pick_str(rng, &ORDER_SYSTEM),
            tools,
            turns,
            Answer::Text(text),
        )
    } else {
        conv(
            "order_status",
            pick_str(rng, &ORDER_SYSTEM),
            tools,
            vec![Turn::User(user)],
            Answer::Tools(vec![tcall]),
        )
    };
    c.temperature = 0.2;
    c
}

// ---------------------------------------------------------------- invoice_extraction

const INVOICE_SYSTEM: [&str; 3] = [
    "Extract these fields from the invoice and reply with one JSON object only: invoice_number, vendor, date (the invoice date), total (the amount due, as a string), currency (ISO code) and iban (null if there is none). Keep exactly that key order.",
    "You are an accounts-payable parser. Return compact JSON with keys invoice_number, vendor, date, total, currency, iban in this order. total is the final amount due as a string, currency a three-letter code, iban null when absent. No extra text.",
    "Read the invoice text and output JSON: {\"invoice_number\", \"vendor\", \"date\", \"total\", \"currency\", \"iban\"}. Use the invoice date, the amount due as a string, the ISO currency code, and null for a missing IBAN.",
];

/// (vendor, IBAN country or "" for none, currency, VAT rate in tenths of a percent)
const VENDORS: &[(&str, &str, &str, u64)] = &[
    ("Acme Logistics GmbH", "DE", "EUR", 190),
    ("Hoffmann Druck KG", "DE", "EUR", 190),
    ("Weber & Söhne GmbH", "DE", "EUR", 190),
    ("Brightline Consulting Ltd", "GB", "GBP", 200),
    ("Kestrel Print Ltd", "GB", "GBP", 200),
    ("Papeterie Moreau SARL", "FR", "EUR", 200),
    ("Atelier Dubois SAS", "FR", "EUR", 200),
    ("Van Dijk Installaties B.V.", "NL", "EUR", 210),
    ("Rossi Forniture S.r.l.", "IT", "EUR", 220),
    ("Suministros García S.L.", "ES", "EUR", 210),
    ("Alpenblick Treuhand AG", "CH", "CHF", 81),
    ("Brasserie Janssens NV", "BE", "EUR", 210),
    ("Sunrise Software Inc.", "", "USD", 0),
    ("Redwood Analytics LLC", "", "USD", 0),
];

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn show_amount(rng: &mut R, currency: &str, amount: &str) -> String {
    let forms: &[&str] = match currency {
        "EUR" => &["EUR {a}", "{a} EUR", "€{a}", "{a} €"],
        "GBP" => &["GBP {a}", "£{a}"],
        "USD" => &["USD {a}", "${a}", "{a} USD"],
        _ => &["CHF {a}", "{a} CHF"],
    };
    fill(pick_str(rng, forms), &[("a", amount)])
}

fn invoice_extraction(rng: &mut R) -> Conv {
    let (vendor, iban_cc, currency, vat) = *pick(rng, VENDORS);
    let number = pii::invoice_number(rng);
    let date = pii::iso_date(rng);
    let due = pii::iso_date(rng);
    let sub_cents = rng.random_range(5_000..2_000_000u64);
    let tax_cents = sub_cents * vat / 1000;
    let total = money(sub_cents + tax_cents);
    let iban = if !iban_cc.is_empty() && chance(rng, 0.85) {
        Some(pii::iban(rng, iban_cc))
    } else {
        None
    };
    let contact_domain = pick(rng, pii::COMPANIES).1;
    let contact = pii::person(rng, Some(contact_domain));
    let client = pick(rng, pii::COMPANIES).0;
    let addr = pii::address(rng);
    let total_label = *pick(
        rng,
        &["Total", "Total due", "Amount due", "Grand total", "TOTAL"],
    );
    let total_s = show_amount(rng, currency, &total);
    let sub_s = show_amount(rng, currency, &money(sub_cents));
    let tax_s = show_amount(rng, currency, &money(tax_cents));
    let pay = match &iban {
        Some(i) => format!(
            "{} {i}",
            pick(
                rng,
                &[
                    "IBAN:",
                    "Pay to IBAN",
                    "Bank transfer to",
                    "Account (IBAN):"
                ]
            )
        ),
        None => pick(
            rng,
            &[
                "Payment: card on file",
                "Paid by credit card",
                "Payment by ACH, routing on request",
            ],
        )
        .to_string(),
    };
    let po = format!("PO-{}", pii::digits(rng, 8));
    let service = *pick(
        rng,
        &[
            "consulting services, March",
            "office supplies",
            "printing of 500 brochures",
            "annual maintenance contract",
            "software licences (12 seats)",
            "catering for team event",
            "HVAC repair",
        ],
    );
    let doc = match rng.random_range(0..4) {
        0 => {
            let mut lines = vec![
                vendor.to_string(),
                addr,
                format!("{} {number}", pick(rng, &["Invoice No:", "Invoice number:", "Invoice #"])),
                format!("{} {date}", pick(rng, &["Invoice date:", "Date:", "Issued:"])),
                format!("Due date: {due}"),
            ];
            if vat > 0 {
                lines.push(format!("Subtotal: {sub_s}"));
                lines.push(format!("VAT {}%: {tax_s}", vat as f64 / 10.0));
            }
            lines.push(format!("{total_label}: {total_s}"));
            lines.push(pay);
            lines.push(format!("Questions? {}", contact.email));
            lines.join("\n")
        }
        1 => format!(
            "Invoice {number} from {vendor}, dated {date}. {service} for {client}. {total_label} {total_s}, payable by {due}. {pay}. Contact: {} ({}).",
            contact.full(),
            contact.email
        ),
        2 => {
            let mut lines = vec![
                format!("INVOICE {number}"),
                format!("Date: {date}"),
                format!("From: {vendor}, {addr}"),
                format!("Bill to: {client}, attn. {}", contact.full()),
                format!("Your reference: {po}"),
                format!("Description: {service}"),
            ];
            if vat > 0 {
                lines.push(format!("Net {sub_s} + VAT {tax_s}"));
            }
            lines.push(format!("{total_label}: {total_s}"));
            lines.push(pay);
            lines.join("\n")
        }
        _ => {
            let mut lines = vec![
                format!("{vendor} | {addr} | {}", contact.email),
                format!("Customer no. {} / {po}", pii::digits(rng, 8)),
                format!("Invoice {number} issued {date}, due {due}"),
                format!("{service}: {sub_s}"),
            ];
            if vat > 0 {
                lines.push(format!("VAT {}%: {tax_s}", vat as f64 / 10.0));
            }
            lines.push(format!("{total_label} {total_s}"));
            lines.push(pay);
            lines.join("\n")
        }
    };
    let lead = *pick(
        rng,
        &[
            "Extract the fields from this invoice:\n\n",
            "Invoice text below.\n\n",
            "Please parse:\n",
            "",
            "From the scanner:\n",
        ],
    );
    let user = format!("{lead}{doc}");
    let answer = json!({
        "invoice_number": number,
        "vendor": vendor,
        "date": date,
        "total": total,
        "currency": currency,
        "iban": iban,
    });
    let mut c = conv(
        "invoice_extraction",
        pick_str(rng, &INVOICE_SYSTEM),
        vec![],
        vec![Turn::User(user)],
        Answer::Text(answer.to_string()),
    );
    c.json_output = true;
    c
}

// ---------------------------------------------------------------- meeting_summary

const MEETING_SYSTEM: [&str; 3] = [
    "Summarise the meeting notes in exactly three lines: 'Attendees: <names>.', 'Decisions: <decisions separated by semicolons>.' and 'Action items: <owner> - <task> (due <date>); ...'. Write 'none' for an empty section. Keep the order of the notes.",
    "You turn raw meeting notes into a three-line summary: Attendees, Decisions, Action items (owner - task (due date)). Use semicolons between items, 'none' if there are no decisions, and keep the original order.",
    "Meeting summariser. Output three lines only - Attendees: ..., Decisions: ..., Action items: ... - listing action items as 'Owner - task (due date)' separated by semicolons.",
];

const TOPICS: &[&str] = &[
    "product launch",
    "Q3 budget",
    "hiring",
    "website redesign",
    "customer onboarding",
    "security review",
    "sprint planning",
    "partner integration",
    "office move",
    "pricing update",
];

const DECISIONS: &[&str] = &[
    "move the launch to {date}",
    "keep the current pricing",
    "hire two backend engineers",
    "switch the newsletter to monthly",
    "retire the legacy API on {date}",
    "run the beta with ten customers",
    "freeze new features until {date}",
    "use the new vendor for printing",
    "cancel the trade fair booth",
    "add a weekly support rotation",
];

const TASKS: &[&str] = &[
    "send the revised budget",
    "update the roadmap",
    "book the venue",
    "draft the press release",
    "review the security checklist",
    "share the slides with {email}",
    "set up the demo environment",
    "call the supplier",
    "prepare the onboarding guide",
    "collect customer feedback",
    "write the job descriptions",
    "email the contract to {email}",
];

fn meeting_summary(rng: &mut R) -> Conv {
    let n_att = rng.random_range(2..=3);
    let mut people: Vec<Person> = Vec::new();
    while people.len() < n_att {
        let p = pii::person(rng, Some("northwind.io"));
        if !people.iter().any(|q| q.first == p.first) {
            people.push(p);
        }
    }
    let topic = *pick(rng, TOPICS);
    let date = pii::iso_date(rng);
    let names: Vec<String> = people.iter().map(|p| p.full()).collect();
    let header = match rng.random_range(0..3) {
        0 => format!("Attendees: {}", names.join(", ")),
        1 => format!("present: {}", names.join(", ")),
        _ => format!("Participants - {}", names.join(", ")),
    };
    let mut decisions = Vec::new();
    let n_dec = *pick(rng, &[0usize, 1, 1, 2]);
    let mut dec_pool: Vec<&str> = DECISIONS.to_vec();
    dec_pool.shuffle(rng);
    for d in dec_pool.into_iter().take(n_dec) {
        decisions.push(fill(d, &[("date", &pii::iso_date(rng))]));
    }
    let n_act = *pick(rng, &[1usize, 1, 2, 2]);
    let mut task_pool: Vec<&str> = TASKS.to_vec();
    task_pool.shuffle(rng);
    let mut actions = Vec::new();
    for t in task_pool.into_iter().take(n_act) {
        let owner = pick(rng, &people).first.clone();
        let ext = pii::person(rng, None);
        let task = fill(t, &[("email", &ext.email)]);
        let due = if chance(rng, 0.6) {
            pii::iso_date(rng)
        } else {
            pick(rng, &["Friday", "Monday", "Wednesday", "end of month"]).to_string()
        };
        actions.push((owner, task, due));
    }
    // Note lines in their written order: decisions and actions interleaved with noise.
    enum L {
        Dec(usize),
        Act(usize),
        Noise(String),
    }
    let mut lines: Vec<L> = (0..decisions.len())
        .map(L::Dec)
        .chain((0..actions.len()).map(L::Act))
        .collect();
    for _ in 0..rng.random_range(0..=2) {
        let noise = match rng.random_range(0..4) {
            0 => format!("- discussed {}, no decision yet", pick(rng, TOPICS)),
            1 => format!(
                "- {} gave an update on {}",
                pick(rng, &people).first,
                pick(rng, TOPICS)
            ),
            2 => format!("- dial-in for next time: {}", pii::phone(rng)),
            _ => format!(
                "- open question: who owns the {} follow-up?",
                pick(rng, TOPICS)
            ),
        };
        lines.push(L::Noise(noise));
    }
    lines.shuffle(rng);
    let mut dec_order = Vec::new();
    let mut act_order = Vec::new();
    let mut body = Vec::new();
    for l in &lines {
        match l {
            L::Dec(i) => {
                dec_order.push(*i);
                let d = &decisions[*i];
                body.push(fill(
                    pick_str(
                        rng,
                        &[
                            "- agreed to {d}",
                            "- decided: {d}",
                            "- decision: {d}",
                            "- we will {d}",
                        ],
                    ),
                    &[("d", d)],
                ));
            }
            L::Act(i) => {
                act_order.push(*i);
                let (o, t, due) = &actions[*i];
                body.push(fill(
                    pick_str(
                        rng,
                        &[
                            "- {o} to {t} by {due}",
                            "- AI: {o} will {t} by {due}",
                            "- {o}: {t}, due {due}",
                            "- action: {t} ({o}, {due})",
                        ],
                    ),
                    &[("o", o), ("t", t), ("due", due)],
                ));
            }
            L::Noise(n) => body.push(n.clone()),
        }
    }
    let title = match rng.random_range(0..3) {
        0 => format!("Notes from the {topic} meeting on {date}:"),
        1 => format!("{topic} sync, {date}"),
        _ => format!("Please summarise my notes ({topic}, {date}):"),
    };
    let user = format!("{title}\n{header}\n{}", body.join("\n"));
    let dec_text = if dec_order.is_empty() {
        "none".to_string()
    } else {
        dec_order
            .iter()
            .map(|&i| decisions[i].as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let act_text = act_order
        .iter()
        .map(|&i| {
            let (o, t, due) = &actions[i];
            format!("{o} - {t} (due {due})")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let answer = format!(
        "Attendees: {}.\nDecisions: {dec_text}.\nAction items: {act_text}.",
        names.join(", ")
    );
    let mut c = conv(
        "meeting_summary",
        pick_str(rng, &MEETING_SYSTEM),
        vec![],
        vec![Turn::User(user)],
        Answer::Text(answer),
    );
    c.temperature = 0.3;
    c
}

// ---------------------------------------------------------------- sql_generation

const SQL_SYSTEM: [&str; 3] = [
    "Translate the question into one SQLite query. Schema: customers(id, name, email, city, signup_date); orders(id, customer_id, total, status, order_date); products(id, name, category, price). Return only the SQL, ending with a semicolon.",
    "You write SQLite for the analytics team. Tables: customers(id, name, email, city, signup_date), orders(id, customer_id, total, status, order_date), products(id, name, category, price). Answer with a single query and nothing else.",
    "Text-to-SQL. Database (SQLite): customers(id, name, email, city, signup_date); orders(id, customer_id, total, status, order_date); products(id, name, category, price). Reply with the query only.",
];

const CITIES: &[&str] = &[
    "Berlin",
    "Lisbon",
    "Madrid",
    "Paris",
    "London",
    "Amsterdam",
    "Rome",
    "Vienna",
    "Prague",
    "Dublin",
    "New York",
    "Chicago",
    "Toronto",
    "Tokyo",
    "Singapore",
    "São Paulo",
    "Zürich",
    "Oslo",
    "Athens",
    "Barcelona",
];

fn sql_generation(rng: &mut R) -> Conv {
    let status = *pick(
        rng,
        &["pending", "shipped", "delivered", "cancelled", "refunded"],
    );
    let city = *pick(rng, CITIES);
    let date = pii::iso_date(rng).replace("2025", pick_str(rng, &["2023", "2024", "2025"]));
    let category = *pick(
        rng,
        &[
            "electronics",
            "books",
            "garden",
            "toys",
            "sports",
            "kitchen",
        ],
    );
    let n = rng.random_range(3..=10).to_string();
    let year = rng.random_range(2018..=2025).to_string();
    let amount = pick(rng, &["100", "250", "500", "750", "1000", "2500"]).to_string();
    let mut p = pii::person(rng, None);
    while p.last.contains('\'') {
        p = pii::person(rng, None);
    }
    let slots = [
        ("status", status.to_string()),
        ("city", city.to_string()),
        ("date", date),
        ("category", category.to_string()),
        ("n", n),
        ("year", year),
        ("amount", amount),
        ("email", p.email.clone()),
        ("name", p.full()),
    ];
    let s: Vec<(&str, &str)> = slots.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (questions, sql): (&[&str], &str) = match rng.random_range(0..10) {
        0 => (
            &["How many {status} orders were placed since {date}?", "Count the {status} orders from {date} onwards.", "Number of orders with status {status} since {date}?"],
            "SELECT COUNT(*) FROM orders WHERE status = '{status}' AND order_date >= '{date}';",
        ),
        1 => (
            &["List the names of customers in {city} who signed up since {date}.", "Which customers from {city} joined on or after {date}? Just names.", "Show me names of {city} customers with a signup date from {date}."],
            "SELECT name FROM customers WHERE city = '{city}' AND signup_date >= '{date}';",
        ),
        2 => (
            &["What is the total revenue from orders placed since {date}?", "Sum of order totals from {date} onwards?", "How much revenue have we made since {date}?"],
            "SELECT SUM(total) FROM orders WHERE order_date >= '{date}';",
        ),
        3 => (
            &["Show the {n} most expensive products in the {category} category.", "Top {n} {category} products by price?", "List the {n} priciest items in {category}."],
            "SELECT name, price FROM products WHERE category = '{category}' ORDER BY price DESC LIMIT {n};",
        ),
        4 => (
            &["Find all orders for the customer with email {email}.", "Which orders did {email} place?", "Pull the orders of the account {email}."],
            "SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.email = '{email}';",
        ),
        5 => (
            &["What's the average order total for {status} orders from customers in {city}?", "Average value of {status} orders placed by {city} customers?", "Mean total of {status} orders for customers living in {city}."],
            "SELECT AVG(o.total) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = '{status}' AND c.city = '{city}';",
        ),
        6 => (
            &["How many customers in {city} signed up in {year}?", "Number of {city} signups during {year}?", "Count customers from {city} who joined in {year}."],
            "SELECT COUNT(*) FROM customers WHERE city = '{city}' AND strftime('%Y', signup_date) = '{year}';",
        ),
        7 => (
            &["Which {status} orders are over {amount} dollars?", "List {status} orders with a total above {amount}.", "Show {status} orders bigger than {amount}."],
            "SELECT id, total FROM orders WHERE status = '{status}' AND total > {amount};",
        ),
        8 => (
            &["Which {n} cities had the most customer signups in {year}?", "Top {n} cities by customers who joined in {year}, please.", "Give me the {n} cities with the most {year} signups."],
            "SELECT city, COUNT(*) AS signups FROM customers WHERE strftime('%Y', signup_date) = '{year}' GROUP BY city ORDER BY signups DESC LIMIT {n};",
        ),
        _ => (&["What is the email address of {name}?", "Look up the email for customer {name}.", "I need {name}'s email from the customers table."], "SELECT email FROM customers WHERE name = '{name}';"),
    };
    let q = fill(pick_str(rng, questions), &s);
    let pre_person = pii::person(rng, Some("northwind.io"));
    let team = pick_str(
        rng,
        &[
            "finance",
            "sales",
            "marketing",
            "support",
            "ops",
            "the board deck",
            "growth",
        ],
    );
    let pre = fill(
        pick_str(
            rng,
            &[
                "",
                "Quick one - ",
                "For the weekly report: ",
                "Hi, it's {first} from {team}. ",
                "Ticket DATA-{n}: ",
                "Asking for {first} ({team}): ",
                "Need this for {team} by {day}. ",
                "{first} here. ",
            ],
        ),
        &[
            ("first", &pre_person.first),
            ("n", &pii::digits(rng, 4)),
            ("team", team),
            (
                "day",
                pick_str(
                    rng,
                    &[
                        "Monday",
                        "Tuesday",
                        "Wednesday",
                        "Thursday",
                        "Friday",
                        "tomorrow",
                        "noon",
                    ],
                ),
            ),
        ],
    );
    let user = format!("{pre}{q}");
    let answer = fill(sql, &s);
    conv(
        "sql_generation",
        pick_str(rng, &SQL_SYSTEM),
        vec![],
        vec![Turn::User(user)],
        Answer::Text(answer),
    )
}

// ---------------------------------------------------------------- calendar_scheduling

const CAL_SYSTEM: [&str; 3] = [
    "You are a scheduling assistant. Use create_event to book meetings, find_free_slots to check availability and cancel_event to cancel. Copy the title, date (YYYY-MM-DD), start time (HH:MM) and attendee emails exactly; convert the duration to minutes.",
    "Calendar agent for a busy team. Book with create_event (title, date, start_time, duration_minutes, attendees), look up availability with find_free_slots, cancel with cancel_event. Use the values from the request verbatim.",
    "Manage the user's calendar through tools only. create_event needs the quoted title, the date, the 24h start time, the duration in minutes and the attendees' emails in the order given.",
];

const TITLES: &[&str] = &[
    "Q3 planning",
    "Design review",
    "Budget sync",
    "Hiring debrief",
    "Customer call - Globex",
    "Sprint retro",
    "Roadmap walkthrough",
    "Vendor negotiation",
    "Onboarding check-in",
    "Board prep",
    "Security incident review",
    "Lunch and learn",
];

pub const DURATIONS: &[(u32, &str)] = &[
    (15, "15 minutes"),
    (30, "30 minutes"),
    (30, "half an hour"),
    (45, "45 minutes"),
    (60, "1 hour"),
    (60, "an hour"),
    (90, "90 minutes"),
    (120, "2 hours"),
];

fn calendar_scheduling(rng: &mut R) -> Conv {
    let me = pii::person(rng, Some("contoso.com"));
    let tools = vec![
        tool(
            "create_event",
            "Create a calendar event.",
            json!({"type":"object","properties":{"title":{"type":"string"},"date":{"type":"string"},"start_time":{"type":"string"},"duration_minutes":{"type":"integer"},"attendees":{"type":"array","items":{"type":"string"}}},"required":["title","date","start_time","duration_minutes","attendees"]}),
        ),
        tool(
            "find_free_slots",
            "Find free time on a day.",
            json!({"type":"object","properties":{"date":{"type":"string"},"duration_minutes":{"type":"integer"}},"required":["date","duration_minutes"]}),
        ),
        tool(
            "cancel_event",
            "Cancel an event.",
            json!({"type":"object","properties":{"event_id":{"type":"string"}},"required":["event_id"]}),
        ),
    ];
    let date = pii::iso_date(rng);
    let (mins, dur) = *pick(rng, DURATIONS);
    let intent = rng.random_range(0..10);
    let (text, tcall) = if intent < 7 {
        let title = if chance(rng, 0.15) {
            format!("1:1 with {}", pick(rng, pii::FIRST_NAMES))
        } else {
            pick(rng, TITLES).to_string()
        };
        let time = pii::time_24h(rng);
        let n = *pick(rng, &[1usize, 1, 1, 1, 2, 2, 2, 3]);
        let guests: Vec<Person> = (0..n)
            .map(|_| {
                let domain = pick(rng, pii::COMPANIES).1;
                pii::person(rng, Some(domain))
            })
            .collect();
        let mention: Vec<String> = guests
            .iter()
            .map(|g| {
                if chance(rng, 0.4) {
                    format!("{} ({})", g.first, g.email)
                } else {
                    g.email.clone()
                }
            })
            .collect();
        let who = match mention.len() {
            1 => mention[0].clone(),
            2 => format!("{} and {}", mention[0], mention[1]),
            _ => format!("{}, {} and {}", mention[0], mention[1], mention[2]),
        };
        let s = fill(
            pick_str(
                rng,
                &[
                    "Can you book \"{title}\" on {date} at {time} for {dur} with {who}?",
                    "Please schedule \"{title}\" with {who} on {date}, {time}, {dur}.",
                    "Set up a meeting called \"{title}\" on {date} at {time} for {dur}. Invite {who}.",
                    "Put \"{title}\" in my calendar: {date} {time}, {dur}, attendees {who}.",
                    "I need {dur} on {date} at {time} for \"{title}\" with {who}.",
                ],
            ),
            &[("title", &title), ("date", &date), ("time", &time), ("dur", dur), ("who", &who)],
        );
        let emails: Vec<&str> = guests.iter().map(|g| g.email.as_str()).collect();
        (
            s,
            call(
                rng,
                "create_event",
                json!({"title": title, "date": date, "start_time": time, "duration_minutes": mins, "attendees": emails}),
            ),
        )
    } else if intent < 9 {
        let s = fill(
            pick_str(
                rng,
                &[
                    "When am I free on {date} for {dur}?",
                    "Find me a free {dur} slot on {date}.",
                    "Do I have {dur} open anywhere on {date}?",
                ],
            ),
            &[("date", &date), ("dur", dur)],
        );
        (
            s,
            call(
                rng,
                "find_free_slots",
                json!({"date": date, "duration_minutes": mins}),
            ),
        )
    } else {
        let ev = format!("EVT-{}", pii::digits(rng, 5));
        let s = fill(
            pick_str(
                rng,
                &[
                    "Cancel event {ev}, it's no longer needed.",
                    "Please drop {ev} from my calendar.",
                    "{ev} is cancelled - remove it please.",
                ],
            ),
            &[("ev", &ev)],
        );
        (s, call(rng, "cancel_event", json!({"event_id": ev})))
    };
    let extra = match rng.random_range(0..6) {
        0 => format!("Dial-in: {}.", pii::phone(rng)),
        1 => format!("Room booking is under {}.", me.email),
        2 => "Thanks!".to_string(),
        _ => String::new(),
    };
    let user = with_signoff(
        rng,
        sentences(&[text, extra]),
        &me,
        &["", "", "- {first}", "Thanks, {full}"],
    );
    let mut c = conv(
        "calendar_scheduling",
        pick_str(rng, &CAL_SYSTEM),
        tools,
        vec![Turn::User(user)],
        Answer::Tools(vec![tcall]),
    );
    c.temperature = 0.1;
    c
}

// ---------------------------------------------------------------- travel_agent

const TRAVEL_SYSTEM: [&str; 3] = [
    "You are a travel assistant. Use search_flights, book_hotel and get_weather with the cities and dates exactly as the traveller wrote them; passengers is 1 unless stated. After a tool result, answer in one short sentence.",
    "Travel concierge with three tools: search_flights, book_hotel, get_weather. Copy cities, dates and emails verbatim. Once a tool has returned, summarise the result for the traveller in a single sentence.",
    "Help travellers plan trips. Call the right tool (search_flights, book_hotel or get_weather, or both flights and weather when asked), then reply briefly using the tool output.",
];

fn travel_agent(rng: &mut R) -> Conv {
    let p = pii::person(rng, None);
    let tools = vec![
        tool(
            "search_flights",
            "Search flights.",
            json!({"type":"object","properties":{"origin":{"type":"string"},"destination":{"type":"string"},"date":{"type":"string"},"passengers":{"type":"integer"}},"required":["origin","destination","date","passengers"]}),
        ),
        tool(
            "book_hotel",
            "Book a hotel.",
            json!({"type":"object","properties":{"city":{"type":"string"},"check_in":{"type":"string"},"nights":{"type":"integer"},"guest_email":{"type":"string"}},"required":["city","check_in","nights","guest_email"]}),
        ),
        tool(
            "get_weather",
            "Weather forecast for a city and day.",
            json!({"type":"object","properties":{"city":{"type":"string"},"date":{"type":"string"}},"required":["city","date"]}),
        ),
    ];
    let origin = *pick(rng, CITIES);
    let mut dest = *pick(rng, CITIES);
    while dest == origin {
        dest = *pick(rng, CITIES);
    }
    let date = pii::iso_date(rng);
    let intent = rng.random_range(0..10);
    let pax: u32 = if chance(rng, 0.6) {
        1
    } else {
        rng.random_range(2..=4)
    };
    let pax_s = if pax == 1 {
        String::new()
    } else {
        fill(
            pick_str(
                rng,
                &[" for {n} passengers", " for {n} people", ", {n} adults"],
            ),
            &[("n", &pax.to_string())],
        )
    };
    let nights = rng.random_range(1..=7u32);
    let nights_s = if nights == 1 {
        "1 night".to_string()
    } else {
        format!("{nights} nights")
    };
    let (text, calls): (String, Vec<TCall>) = match intent {
        0..=3 => {
            let s = fill(
                pick_str(
                    rng,
                    &[
                        "Find me a flight from {o} to {d} on {date}{pax}.",
                        "Any flights {o} -> {d} on {date}{pax}?",
                        "I need to fly from {o} to {d} on {date}{pax}.",
                        "Search flights {o} to {d}, departing {date}{pax}.",
                    ],
                ),
                &[("o", origin), ("d", dest), ("date", &date), ("pax", &pax_s)],
            );
            (
                s,
                vec![call(
                    rng,
                    "search_flights",
                    json!({"origin": origin, "destination": dest, "date": date, "passengers": pax}),
                )],
            )
        }
        4..=5 => {
            let s = fill(
                pick_str(
                    rng,
                    &[
                        "Book a hotel in {d} from {date} for {nights}, confirmation to {email}.",
                        "Please reserve a hotel in {d}: check-in {date}, {nights}. Send it to {email}.",
                        "I need a room in {d} for {nights} starting {date}. My email is {email}.",
                    ],
                ),
                &[("d", dest), ("date", &date), ("nights", &nights_s), ("email", &p.email)],
            );
            (
                s,
                vec![call(
                    rng,
                    "book_hotel",
                    json!({"city": dest, "check_in": date, "nights": nights, "guest_email": p.email}),
                )],
            )
        }
        6..=8 => {
            let s = fill(
                pick_str(
                    rng,
                    &[
                        "What's the weather going to be in {d} on {date}?",
                        "Weather forecast for {d} on {date}, please.",
                        "Will it rain in {d} on {date}?",
                    ],
                ),
                &[("d", dest), ("date", &date)],
            );
            (
                s,
                vec![call(
                    rng,
                    "get_weather",
                    json!({"city": dest, "date": date}),
                )],
            )
        }
        _ => {
            let s = fill(
                pick_str(
                    rng,
                    &[
                        "Search flights from {o} to {d} on {date}{pax} and tell me the weather in {d} that day.",
                        "Flights {o} to {d} on {date}{pax}, plus the forecast for {d} on {date}?",
                    ],
                ),
                &[("o", origin), ("d", dest), ("date", &date), ("pax", &pax_s)],
            );
            (
                s,
                vec![
                    call(
                        rng,
                        "search_flights",
                        json!({"origin": origin, "destination": dest, "date": date, "passengers": pax}),
                    ),
                    call(rng, "get_weather", json!({"city": dest, "date": date})),
                ],
            )
        }
    };
    let extra = match rng.random_range(0..7) {
        0 => format!(
            "My passport number is {}{}.",
            pii::upper(rng, 1),
            pii::digits(rng, 8)
        ),
        1 => format!("Call me at {} if anything changes.", pii::phone(rng)),
        2 => format!("Charge it to {}.", pii::card(rng)),
        3 => format!("I'm {}, travelling for work.", p.full()),
        _ => String::new(),
    };
    let user = with_signoff(
        rng,
        sentences(&[text, extra]),
        &p,
        &["", "", "Thanks, {first}", "Cheers"],
    );
    let multi = calls.len() == 1 && chance(rng, 0.35);
    let system = pick(rng, &TRAVEL_SYSTEM);
    let mut c = if multi {
        let tc = &calls[0];
        let (result, answer) = match tc.name {
            "search_flights" => {
                let mut prices: Vec<u32> = (0..rng.random_range(1..=3))
                    .map(|_| rng.random_range(49..900))
                    .collect();
                prices.sort_unstable();
                let flights: Vec<Value> = prices
                    .iter()
                    .map(|pr| {
                        json!({"flight": format!("{} {}", pick(rng, &["LH", "BA", "AF", "KL", "IB", "TP", "UA", "LX"]), rng.random_range(100..9999)), "departs": pii::time_24h(rng), "price": pr, "currency": "EUR"})
                    })
                    .collect();
                let f0 = &flights[0];
                let answer = format!(
                    "The cheapest flight from {origin} to {dest} on {date} is {} departing at {} for {} EUR.",
                    f0["flight"].as_str().unwrap_or_default(),
                    f0["departs"].as_str().unwrap_or_default(),
                    f0["price"]
                );
                (json!({"flights": flights}), answer)
            }
            "book_hotel" => {
                let hotel = *pick(
                    rng,
                    &[
                        "Hotel Aurora",
                        "Grand Central Inn",
                        "Riverside Suites",
                        "Casa Azul",
                        "The Linden",
                        "Harbour View Hotel",
                    ],
                );
                let conf = format!("HTL-{}", pii::digits(rng, 6));
                let total = rng.random_range(80..400) * nights;
                let answer = format!("Booked {hotel} in {dest} for {nights_s} from {date}; confirmation {conf}, total {total} EUR.");
                (
                    json!({"confirmation": conf, "hotel": hotel, "total": total, "currency": "EUR"}),
                    answer,
                )
            }
            _ => {
                let forecast = *pick(
                    rng,
                    &[
                        "sunny",
                        "light rain",
                        "cloudy",
                        "thunderstorms",
                        "snow showers",
                        "partly cloudy",
                    ],
                );
                let low = rng.random_range(-5..20i32);
                let high = low + rng.random_range(3..12i32);
                let answer = format!("Expect {forecast} in {dest} on {date}, with temperatures between {low} and {high}°C.");
                (
                    json!({"city": dest, "date": date, "forecast": forecast, "low_c": low, "high_c": high}),
                    answer,
                )
            }
        };
        let tc = tc.clone();
        let turns = vec![
            Turn::User(user),
            Turn::Assistant(vec![tc.clone()]),
            Turn::ToolResult {
                call_id: tc.id.clone(),
                name: tc.name,
                content: result.to_string(),
            },
        ];
        conv("travel_agent", system, tools, turns, Answer::Text(answer))
    } else {
        conv(
            "travel_agent",
            system,
            tools,
            vec![Turn::User(user)],
            Answer::Tools(calls),
        )
    };
    c.temperature = 0.3;
    c
}

// ---------------------------------------------------------------- chitchat

const CHAT_SYSTEM: [&str; 3] = [
    "You are Pip, the friendly companion in the Brightside app. Keep replies short, warm and positive. Greet people by their first name when they give it.",
    "Brightside's chat buddy Pip. Small talk only: be kind, brief and upbeat, and use the user's first name if they mention it.",
    "You are Pip. Chat casually with Brightside users in one or two short sentences. If the user says their name, use it.",
];

/// (user phrasings, reply; `{n}` becomes ", <first name>" when the user gave one)
pub const CHAT_INTENTS: &[(&[&str], &str)] = &[
    (
        &["hi!", "hello there", "hey, good morning", "hiya"],
        "Hello{n}! How can I help you today?",
    ),
    (
        &[
            "how are you doing today?",
            "how's it going?",
            "how are you?",
        ],
        "I'm doing great, thanks for asking! How about you?",
    ),
    (
        &[
            "thanks so much for the help earlier",
            "thank you, that was useful",
            "cheers, appreciate it",
        ],
        "You're welcome{n}! Happy to help.",
    ),
    (
        &[
            "tell me a joke",
            "got any good jokes?",
            "make me laugh please",
        ],
        "Why did the developer go broke? Because he used up all his cache.",
    ),
    (
        &[
            "ok bye for now",
            "goodnight, talk tomorrow",
            "see you later",
        ],
        "Goodbye{n}! Have a great day.",
    ),
    (
        &[
            "who are you?",
            "are you a real person?",
            "what are you exactly?",
        ],
        "I'm Pip, the Brightside assistant. I'm here to answer questions and keep you company.",
    ),
    (
        &[
            "I'm so bored",
            "nothing to do today, I'm bored",
            "entertain me, I'm bored",
        ],
        "How about a short walk or a new podcast? A small change of scene often helps.",
    ),
    (
        &[
            "it's my birthday today!",
            "guess what, today is my birthday",
        ],
        "Happy birthday{n}! I hope your day is wonderful.",
    ),
    (
        &[
            "any plans for the weekend?",
            "what should I do this weekend?",
        ],
        "How about trying a new recipe or meeting friends outdoors? Have a lovely weekend!",
    ),
    (
        &[
            "you're really helpful",
            "you're the best assistant",
            "I like talking to you",
        ],
        "Thank you, that's very kind of you to say!",
    ),
];

fn chitchat(rng: &mut R) -> Conv {
    let p = pii::person(rng, None);
    let idx = rng.random_range(0..CHAT_INTENTS.len());
    let (phrases, reply) = CHAT_INTENTS[idx];
    let mut msg = pick(rng, phrases).to_string();
    if idx == 7 && chance(rng, 0.6) {
        msg = format!("{msg} I was born on {}.", pii::dob(rng));
    }
    let named = chance(rng, 0.6);
    let intro = if named {
        fill(
            pick_str(
                rng,
                &[
                    "{first} here. ",
                    "It's {first}. ",
                    "This is {first} again. ",
                    "{first} here - ",
                ],
            ),
            &[("first", &p.first)],
        )
    } else {
        String::new()
    };
    let context = *pick(
        rng,
        &[
            "",
            " Just waiting for my train.",
            " Long day at work.",
            " My cat is asleep on my keyboard.",
            " Drinking my second coffee.",
            " Finally home after a busy shift.",
            " It's raining again here.",
            " On my lunch break.",
            " Can't sleep.",
            " Sitting in the park right now.",
            " The kids are finally in bed.",
            " Stuck in traffic, not driving though.",
            " Just got back from the gym.",
            " Waiting for my pizza to arrive.",
            " First day of my holiday!",
            " Working from a café today.",
            " It's so hot outside.",
            " Procrastinating a bit.",
        ],
    );
    let tail = *pick(
        rng,
        &[
            "", "", " :)", " lol", " 🙂", " haha", "!!", " :D", " 😄", " xD",
        ],
    );
    if !intro.is_empty() && intro.ends_with(". ") {
        msg = capitalise(&msg);
    }
    if !context.is_empty() && !msg.ends_with(['.', '!', '?']) {
        msg.push('.');
    }
    let user = format!("{intro}{msg}{context}{tail}");
    let n = if named {
        format!(", {}", p.first)
    } else {
        String::new()
    };
    let answer = reply.replace("{n}", &n);
    let mut c = conv(
        "chitchat",
        pick_str(rng, &CHAT_SYSTEM),
        vec![],
        vec![Turn::User(user)],
        Answer::Text(answer),
    );
    c.temperature = 0.8;
    c.max_tokens = 256;
    c
}

// ---------------------------------------------------------------- sentiment_classification

const SENTIMENT_SYSTEM: [&str; 3] = [
    "Classify the sentiment of the product review as positive, negative or neutral. Answer with the label only, in lower case.",
    "You label customer reviews for the ShopRight catalogue. Reply with exactly one word: positive, negative or neutral.",
    "Review sentiment classifier. Output one of: positive, negative, neutral. A review that only states facts is neutral.",
];

pub const POSITIVE: &[&str] = &[
    "absolutely love it",
    "works perfectly",
    "exceeded my expectations",
    "great value for the money",
    "would definitely buy again",
    "the quality is excellent",
    "setup took two minutes and it just works",
    "five stars from me",
    "really happy with this purchase",
    "customer service was fantastic",
    "my whole family loves it",
    "best purchase I made this year",
    "it feels really solid",
    "battery life is amazing",
];

pub const NEGATIVE: &[&str] = &[
    "stopped working after a week",
    "complete waste of money",
    "very disappointed",
    "the quality is terrible",
    "would not recommend it",
    "it arrived broken",
    "customer service never replied",
    "returned it the next day",
    "cheap plastic that feels flimsy",
    "one star, sadly",
    "the battery dies within an hour",
    "it broke the first time I used it",
    "the instructions are useless",
    "worst purchase this year",
];

pub const NEUTRAL: &[&str] = &[
    "it arrived on Tuesday",
    "it does what the description says",
    "the box contained the charger and a manual",
    "it comes in three colours",
    "I have used it for two weeks",
    "it replaced my old one",
    "the size is as listed",
    "I bought it for my office",
    "it was a gift for my brother",
    "delivery took four days",
    "I use it mostly on weekends",
    "the colour is dark grey",
    "it has two settings",
    "it weighs about a kilo",
];

const PRODUCTS: &[&str] = &[
    "wireless headphones",
    "coffee grinder",
    "standing desk",
    "robot vacuum",
    "e-reader",
    "running shoes",
    "air fryer",
    "USB-C hub",
    "office chair",
    "smart thermostat",
    "electric kettle",
    "yoga mat",
    "mechanical keyboard",
    "baby monitor",
    "camping tent",
    "hair dryer",
];

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn sentiment(rng: &mut R) -> Conv {
    let label = *pick(rng, &["positive", "negative", "neutral"]);
    let product = *pick(rng, PRODUCTS);
    let mut parts: Vec<String> = Vec::new();
    let polar: &[&str] = match label {
        "positive" => POSITIVE,
        "negative" => NEGATIVE,
        _ => &[],
    };
    let mut pool = polar.to_vec();
    pool.shuffle(rng);
    parts.extend(
        pool.into_iter()
            .take(rng.random_range(1..=2))
            .map(String::from),
    );
    let mut neutral = NEUTRAL.to_vec();
    neutral.shuffle(rng);
    let n_neutral = if label == "neutral" {
        rng.random_range(2..=3)
    } else {
        rng.random_range(0..=2)
    };
    parts.extend(neutral.into_iter().take(n_neutral).map(String::from));
    parts.shuffle(rng);
    let mut text = parts
        .iter()
        .map(|s| format!("{}.", capitalise(s)))
        .collect::<Vec<_>>()
        .join(" ");
    if chance(rng, 0.6) {
        let opener = pick_str(
            rng,
            &[
                "Bought the {p}.",
                "Got this {p} last month.",
                "My review of the {p}:",
                "Ordered the {p} for home.",
            ],
        );
        text = format!("{} {text}", opener.replace("{p}", product));
    }
    let p = pii::person(rng, None);
    text = match rng.random_range(0..5) {
        0 => format!(
            "{text} - {} {}.",
            p.first,
            p.last.chars().next().unwrap_or('X')
        ),
        1 => format!("{text}\nReviewer: {}", p.email),
        2 => format!("{text} (order {})", pii::order_number_16(rng)),
        _ => text,
    };
    let user = match rng.random_range(0..3) {
        0 => format!("Review: {text}"),
        1 => format!("Classify this review:\n{text}"),
        _ => format!("Customer review of the {product}:\n\"{text}\""),
    };
    let mut c = conv(
        "sentiment_classification",
        pick_str(rng, &SENTIMENT_SYSTEM),
        vec![],
        vec![Turn::User(user)],
        Answer::Text(label.to_string()),
    );
    c.max_tokens = 5;
    c
}

// ---------------------------------------------------------------- lead_extraction

const LEAD_SYSTEM: [&str; 3] = [
    "Extract the sales lead from the inbound email as JSON with keys name, company, email, phone, seats (integer), in that order. Use null for a missing phone. Output the JSON object only.",
    "You are the CRM intake parser for sales leads. Return one compact JSON object: {\"name\", \"company\", \"email\", \"phone\", \"seats\"}. Copy values exactly, seats as a number, phone null if not given.",
    "Read the prospect's message and output the sales lead as JSON only: name, company, email, phone and seats (a number). Missing phone means null. Keep the key order.",
];

fn lead_extraction(rng: &mut R) -> Conv {
    let (company, domain) = *pick(rng, pii::COMPANIES);
    let p = pii::person(rng, Some(domain));
    let seats = *pick(
        rng,
        &[
            5u32, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 250, 500,
        ],
    );
    let seats_s = fill(
        pick_str(rng, &["about {n}", "{n}", "around {n}", "roughly {n}"]),
        &[("n", &seats.to_string())],
    );
    let phone = if chance(rng, 0.7) {
        Some(pii::phone(rng))
    } else {
        None
    };
    let role = *pick(
        rng,
        &[
            "Head of Operations",
            "CTO",
            "IT manager",
            "procurement lead",
            "VP Sales",
            "founder",
            "office manager",
        ],
    );
    let full = p.full();
    let plan = *pick(
        rng,
        &[
            "Pro plan",
            "Business plan",
            "Enterprise tier",
            "team licences",
        ],
    );
    let user = match rng.random_range(0..4) {
        0 => {
            let ph = phone
                .as_ref()
                .map(|x| format!(" or {x}"))
                .unwrap_or_default();
            format!("Hi, I'm {full}, {role} at {company}. We're evaluating your {plan} for {seats_s} people. You can reach me at {}{ph}.", p.email)
        }
        1 => {
            let ph = phone.as_ref().map(|x| format!("\n{x}")).unwrap_or_default();
            format!("Hello team,\n\nWe at {company} need {seats_s} seats on the {plan} for our support staff. Please send a quote.\n\nBest,\n{full}\n{role}, {company}\n{}{ph}", p.email)
        }
        2 => {
            let ph = phone
                .as_ref()
                .map(|x| format!(" Phone: {x}."))
                .unwrap_or_default();
            format!("{full} from {company} here - interested in the {plan}, {seats_s} seats. Email: {}.{ph}", p.email)
        }
        _ => {
            let ph = phone
                .as_ref()
                .map(|x| format!("; phone={x}"))
                .unwrap_or_default();
            format!("New demo request: name={full}; company={company}; seats={seats}; email={}{ph}; message=Looking at the {plan}, please call after 2pm.", p.email)
        }
    };
    let answer =
        json!({"name": full, "company": company, "email": p.email, "phone": phone, "seats": seats});
    let mut c = conv(
        "lead_extraction",
        pick_str(rng, &LEAD_SYSTEM),
        vec![],
        vec![Turn::User(user)],
        Answer::Text(answer.to_string()),
    );
    c.json_output = true;
    c
}
