//! LLaMA-Factory's preference format: `conversations[{from, value}]`, `chosen{from, value}`,
//! `rejected{from, value}`.

use super::dialogue::{Role, final_assistant_turn, parse_messages, render_transcript};
use super::{Content, Row};
use crate::{Preference, Result};

/// LLaMA-Factory: `conversations[{from, value}]` (optional `system`), `chosen`/`rejected`
/// `{from, value}` answers to the last turn.
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let conversations = row.take("conversations")?;
    let messages = conversations
        .as_array()
        .ok_or_else(|| row.wrong_type("conversations", "a message list", &conversations))?;
    let mut turns = parse_messages(row, "conversations", messages)?;
    if turns.is_empty() {
        return Err(row
            .location
            .error(Some("conversations"), "empty conversation"));
    }
    if row.fields.contains_key("system") {
        let system = row.take_str("system")?;
        if !system.trim().is_empty() {
            turns.insert(0, (Role::System, system));
        }
    }
    let mut answer = |field: &str| -> Result<String> {
        let value = row.take(field)?;
        let message = std::slice::from_ref(&value);
        let mut turns = parse_messages(row, field, message)?;
        final_assistant_turn(row, field, &mut turns)
    };
    let chosen = answer("chosen")?;
    let rejected = answer("rejected")?;
    Ok(Content::Preference(Preference {
        prompt: render_transcript(&turns),
        chosen,
        rejected,
    }))
}
