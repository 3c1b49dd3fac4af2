//! The `preference` format (`prompt`, `chosen`, `rejected`: strings or chat lists) and
//! RewardBench (the same with a `subset`).

use super::dialogue::{final_assistant_turn, parse_messages, render_transcript};
use super::{Content, Row};
use crate::{Preference, Result};
use serde_json::Value;

/// `prompt`, `chosen`, `rejected`: strings, or chat lists sharing all but a final assistant turn.
/// With chat lists the shared messages are the prompt; a `prompt` field is then only needed
/// (and only read) when the lists hold nothing but the final assistant message.
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let chosen = row.take("chosen")?;
    let rejected = row.take("rejected")?;
    let preference = match (chosen, rejected) {
        (Value::String(chosen), Value::String(rejected)) => Preference {
            prompt: row.take_text("prompt")?,
            chosen: row.non_blank("chosen", chosen)?,
            rejected: row.non_blank("rejected", rejected)?,
        },
        (Value::Array(chosen), Value::Array(rejected)) => {
            let mut chosen = parse_messages(row, "chosen", &chosen)?;
            let mut rejected = parse_messages(row, "rejected", &rejected)?;
            let chosen_reply = final_assistant_turn(row, "chosen", &mut chosen)?;
            let rejected_reply = final_assistant_turn(row, "rejected", &mut rejected)?;
            if chosen != rejected {
                return Err(row.location.error(
                    Some("rejected"),
                    "chosen and rejected conversations differ before their last assistant message",
                ));
            }
            let prompt = match (chosen.is_empty(), row.fields.contains_key("prompt")) {
                (false, true) => {
                    row.take_str("prompt")?;
                    render_transcript(&chosen)
                }
                (false, false) => render_transcript(&chosen),
                (true, _) => row.take_text("prompt")?,
            };
            let prompt = row.non_blank("prompt", prompt)?;
            Preference {
                prompt,
                chosen: chosen_reply,
                rejected: rejected_reply,
            }
        }
        (Value::String(_), other) => {
            return Err(row.wrong_type("rejected", "a string like `chosen`", &other));
        }
        (Value::Array(_), other) => {
            return Err(row.wrong_type("rejected", "a message list like `chosen`", &other));
        }
        (other, _) => return Err(row.wrong_type("chosen", "a string or a message list", &other)),
    };
    Ok(Content::Preference(preference))
}
