//! Dialogues: chat message lists (OpenAI `[{role, content}]`, ShareGPT `[{from, value}]`) and
//! the transcript text a judge reads.

use super::row::Row;
use crate::Result;
use serde_json::Value;

/// A speaker in a dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// Accepts the OpenAI (`user`, `assistant`) and ShareGPT (`human`, `gpt`) names.
    fn parse(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" | "human" => Some(Role::User),
            "assistant" | "gpt" => Some(Role::Assistant),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Role::System => "System",
            Role::User => "Human",
            Role::Assistant => "Assistant",
        }
    }
}

/// A dialogue as the judge reads it: a lone user turn is its bare text; anything longer is a
/// transcript of `Human: …`, `Assistant: …` (and `System: …`) turns separated by blank lines.
pub(crate) fn render_transcript(turns: &[(Role, String)]) -> String {
    match turns {
        [(Role::User, text)] => text.trim().to_owned(),
        _ => turns
            .iter()
            .map(|(role, text)| format!("{}: {}", role.label(), text.trim()))
            .collect::<Vec<_>>()
            .join("\n\n"),
    }
}

/// A chat message list `[{role, content}]` (or ShareGPT `[{from, value}]`) as turns.
pub(crate) fn parse_messages(
    row: &Row,
    field: &str,
    messages: &[Value],
) -> Result<Vec<(Role, String)>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let name = format!("{field}[{i}]");
            let message = message
                .as_object()
                .ok_or_else(|| row.wrong_type(&name, "a message object", message))?;
            let (role_key, text_key) = if message.contains_key("from") {
                ("from", "value")
            } else {
                ("role", "content")
            };
            let role = match message.get(role_key) {
                Some(Value::String(role)) => Role::parse(role).ok_or_else(|| {
                    row.location.error(
                        Some(&format!("{name}.{role_key}")),
                        format!("unknown role `{role}`"),
                    )
                })?,
                Some(other) => {
                    return Err(row.wrong_type(&format!("{name}.{role_key}"), "a string", other));
                }
                None => {
                    return Err(row
                        .location
                        .error(Some(&format!("{name}.{role_key}")), "missing"));
                }
            };
            let text = match message.get(text_key) {
                Some(Value::String(text)) => text.clone(),
                Some(other) => {
                    return Err(row.wrong_type(&format!("{name}.{text_key}"), "a string", other));
                }
                None => {
                    return Err(row
                        .location
                        .error(Some(&format!("{name}.{text_key}")), "missing"));
                }
            };
            Ok((role, text))
        })
        .collect()
}

/// Pop the last turn of a conversation, which must be a non-blank assistant message.
pub(crate) fn final_assistant_turn(
    row: &Row,
    field: &str,
    turns: &mut Vec<(Role, String)>,
) -> Result<String> {
    match turns.pop() {
        Some((Role::Assistant, text)) => row.non_blank(field, text),
        Some(_) => Err(row
            .location
            .error(Some(field), "the last message is not the assistant's")),
        None => Err(row.location.error(Some(field), "empty conversation")),
    }
}
