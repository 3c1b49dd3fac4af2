//! Dialogues: chat message lists (OpenAI `[{role, content}]`, ShareGPT `[{from, value}]`) and
//! the transcript text a judge reads; prompt and response fields given as text or as messages.

use super::row::Row;
use crate::{Result, chat_format};
use serde_json::Value;

/// A speaker in a dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// Accepts the OpenAI (`user`, `assistant`), ShareGPT (`human`, `gpt`) and Gemma (`model`)
    /// names.
    pub(crate) fn parse(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" | "human" => Some(Role::User),
            "assistant" | "gpt" | "model" => Some(Role::Assistant),
            _ => None,
        }
    }

    /// The OpenAI role name.
    fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
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

/// What a prompt or response field may hold, for error messages.
const TEXT_OR_MESSAGES: &str = "a string or a list of chat messages [{\"role\", \"content\"}]";

/// A prompt field as the judge's question block reads it: a string (a rendered chat prompt,
/// `<|im_start|>user\n…`, is undone by [`chat_format`]), a list of chat messages, or one message
/// object; a dialogue of more than a lone user turn becomes a [`render_transcript`] transcript.
pub(crate) fn prompt_text(row: &Row, field: &str, value: &Value) -> Result<String> {
    Ok(match value {
        Value::String(text) => match chat_format::parse(text) {
            Some(turns) => render_transcript(&turns),
            None => {
                chat_format::warn_if_markup(text);
                text.clone()
            }
        },
        Value::Array(messages) => {
            let turns = parse_messages(row, field, messages)?;
            if turns.is_empty() {
                return Err(row.location.error(Some(field), "empty conversation"));
            }
            render_transcript(&turns)
        }
        Value::Object(_) => {
            render_transcript(&parse_messages(row, field, std::slice::from_ref(value))?)
        }
        other => return Err(row.wrong_type(field, TEXT_OR_MESSAGES, other)),
    })
}

/// A response field: a string (trailing end-of-turn strings such as `<|im_end|>` dropped, see
/// [`chat_format::response_text`]), or one assistant message, alone or as a one-message list
/// (TRL's conversational completions, `[{"role": "assistant", "content": …}]`), unwrapped to its
/// content. Anything else is an error naming the field.
pub(crate) fn response_text(row: &Row, field: &str, value: &Value) -> Result<String> {
    Ok(match value {
        Value::String(text) => chat_format::response_text(text),
        Value::Array(messages) => match parse_messages(row, field, messages)?.as_slice() {
            [(Role::Assistant, text)] => text.clone(),
            [(role, _)] => {
                return Err(row.location.error(
                    Some(&format!("{field}[0].role")),
                    format!(
                        "a response must be the assistant's message, found {}",
                        role.name()
                    ),
                ));
            }
            turns => {
                return Err(row.location.error(
                    Some(field),
                    format!(
                        "a response must be one assistant message, found {} messages",
                        turns.len()
                    ),
                ));
            }
        },
        Value::Object(_) => response_text(row, field, &Value::Array(vec![value.clone()]))?,
        other => return Err(row.wrong_type(field, TEXT_OR_MESSAGES, other)),
    })
}
