//! The `preference` format (`prompt`, `chosen`, `rejected`: strings or chat lists) and
//! RewardBench (the same with a `subset`).

use super::dialogue::{final_assistant_turn, parse_messages, render_transcript, response_text};
use super::{Content, Row};
use crate::{Preference, Result};
use serde_json::Value;

/// `prompt`, `chosen`, `rejected`. Either whole conversations in `chosen` and `rejected` that
/// share all but a final assistant turn (the shared messages are then the prompt; a `prompt`
/// field is ignored), or a `prompt` (text or chat messages) with two responses, each text or
/// one assistant message (TRL's explicit-prompt conversational layout).
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let chosen = row.take("chosen")?;
    let rejected = row.take("rejected")?;
    let conversation = |value: &Value| value.as_array().is_some_and(|messages| messages.len() > 1);
    if conversation(&chosen) || conversation(&rejected) {
        return whole_conversations(row, &chosen, &rejected);
    }
    Ok(Content::Preference(Preference {
        prompt: row.take_prompt("prompt")?,
        chosen: non_blank_response(row, "chosen", &chosen)?,
        rejected: non_blank_response(row, "rejected", &rejected)?,
    }))
}

/// A response (see [`response_text`]) that must not be blank.
fn non_blank_response(row: &Row, field: &str, value: &Value) -> Result<String> {
    row.non_blank(field, response_text(row, field, value)?)
}

/// Two conversations sharing everything before their final assistant turns.
fn whole_conversations(row: &mut Row, chosen: &Value, rejected: &Value) -> Result<Content> {
    let messages = |field: &str, value: &Value| match value {
        Value::Array(messages) => parse_messages(row, field, messages),
        other => Err(row.wrong_type(field, "a message list like the other response", other)),
    };
    let mut chosen = messages("chosen", chosen)?;
    let mut rejected = messages("rejected", rejected)?;
    let chosen_reply = final_assistant_turn(row, "chosen", &mut chosen)?;
    let rejected_reply = final_assistant_turn(row, "rejected", &mut rejected)?;
    if chosen != rejected {
        return Err(row.location.error(
            Some("rejected"),
            "chosen and rejected conversations differ before their last assistant message",
        ));
    }
    if chosen.is_empty() {
        return Err(row
            .location
            .error(Some("chosen"), "no prompt messages before the final answer"));
    }
    row.fields.remove("prompt");
    let prompt = row.non_blank("prompt", render_transcript(&chosen))?;
    Ok(Content::Preference(Preference {
        prompt,
        chosen: chosen_reply,
        rejected: rejected_reply,
    }))
}
