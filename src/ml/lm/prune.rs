//! Prompt pruning: a workload's static parts — its system prompt and each
//! of its tool definitions, identical (by sha256) on nearly every call —
//! are replaced by short markers before training and before every
//! generation with the adapter, so the model learns the workload instead of
//! re-reading it (OpenPipe's "pruning rules"). A call whose system prompt or
//! tool differs from the recorded one keeps it in full; the rule only ever
//! replaces text whose hash it knows.
//!
//! * static system prompt → `marker` (one line naming the workload);
//! * static tool → the tool reduced to its name (no description, empty
//!   parameters), so the model still sees which tools are offered;
//! * static leading messages (few-shot examples between the system prompt
//!   and the conversation) → removed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::call::{Message, Role, ToolDef};

/// What a pruned adapter was trained without (stored with the adapter).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneRule {
    /// The system line that replaces the static system prompt.
    pub marker: String,
    /// sha256 of the static system prompt; `None`: system prompts are kept.
    pub system_sha256: Option<String>,
    /// Static tools: name → sha256 of the definition ([`tool_sha256`]).
    pub tools: BTreeMap<String, String>,
    /// Static leading messages (few-shot examples after the system prompt),
    /// removed when they match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leading: Option<LeadingRule>,
}

/// The first `messages` messages after the system prompt, by sha256.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadingRule {
    pub messages: usize,
    pub sha256: String,
}

/// Hex sha256 of a run of messages (their JSON).
pub fn messages_sha256(messages: &[Message]) -> String {
    text_sha256(&serde_json::to_string(messages).unwrap_or_default())
}

/// The messages that may be a static lead: after the leading system
/// message(s), before the last user turn.
pub fn lead_candidates(messages: &[Message]) -> &[Message] {
    let start = messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    let end = messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .unwrap_or(0);
    if end > start {
        &messages[start..end]
    } else {
        &[]
    }
}

/// A conversation after [`PruneRule::apply`].
#[derive(Clone, Debug, PartialEq)]
pub struct Pruned {
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDef>,
    /// The system prompt was replaced by the marker.
    pub system: bool,
    /// Tools reduced to their names.
    pub tools_pruned: usize,
    /// Leading messages removed.
    pub leading: usize,
}

impl Pruned {
    pub fn any(&self) -> bool {
        self.system || self.tools_pruned > 0 || self.leading > 0
    }
}

/// Hex sha256 of a text.
pub fn text_sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Hex sha256 of a tool definition (name, description, parameters as JSON).
pub fn tool_sha256(t: &ToolDef) -> String {
    text_sha256(&serde_json::to_string(t).unwrap_or_default())
}

/// The first system message's text, if any.
pub fn system_text(messages: &[Message]) -> Option<&str> {
    messages
        .iter()
        .find(|m| m.role == Role::System)
        .and_then(|m| m.content.as_deref())
}

impl PruneRule {
    pub fn is_empty(&self) -> bool {
        self.system_sha256.is_none() && self.tools.is_empty() && self.leading.is_none()
    }

    /// Replaces the static parts this rule knows; everything else is kept.
    pub fn apply(&self, messages: &[Message], tools: &[ToolDef]) -> Pruned {
        let mut messages = messages.to_vec();
        let mut leading = 0;
        if let Some(l) = &self.leading {
            let lead = lead_candidates(&messages);
            if lead.len() >= l.messages && messages_sha256(&lead[..l.messages]) == l.sha256 {
                let start = messages
                    .iter()
                    .take_while(|m| m.role == Role::System)
                    .count();
                messages.drain(start..start + l.messages);
                leading = l.messages;
            }
        }
        let mut system = false;
        if let Some(want) = &self.system_sha256 {
            if let Some(m) = messages.iter_mut().find(|m| m.role == Role::System) {
                if m.content.as_deref().map(text_sha256).as_ref() == Some(want) {
                    m.content = Some(self.marker.clone());
                    system = true;
                }
            }
        }
        let mut tools_pruned = 0;
        let tools = tools
            .iter()
            .map(|t| match self.tools.get(&t.name) {
                Some(h) if *h == tool_sha256(t) => {
                    tools_pruned += 1;
                    ToolDef {
                        name: t.name.clone(),
                        description: None,
                        parameters: serde_json::Value::Null,
                    }
                }
                _ => t.clone(),
            })
            .collect();
        Pruned {
            messages,
            tools,
            system,
            tools_pruned,
            leading,
        }
    }
}
