//! The `pairs` format: `prompt`, `response_a`, `response_b`, optional `label` `"A"`/`"B"`
//! (unlabeled pairs for stage 1, or labeled ones).

use super::{Content, Row};
use crate::{Pair, Preference, Result};
use serde_json::Value;

/// `prompt`, `response_a`, `response_b`, optional `label` "A"/"B".
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let pair = Pair {
        prompt: row.take_prompt("prompt")?,
        response_a: row.take_response("response_a")?,
        response_b: row.take_response("response_b")?,
    };
    let label = match row.fields.remove("label") {
        None | Some(Value::Null) => return Ok(Content::Pair(pair)),
        Some(Value::String(label)) => label,
        Some(other) => return Err(row.wrong_type("label", "\"A\" or \"B\"", &other)),
    };
    let (chosen, rejected) = match label.trim() {
        "A" | "a" => (pair.response_a, pair.response_b),
        "B" | "b" => (pair.response_b, pair.response_a),
        _ => {
            return Err(row.location.error(
                Some("label"),
                format!("expected \"A\" or \"B\", found {label:?}"),
            ));
        }
    };
    Ok(Content::Preference(Preference {
        prompt: pair.prompt,
        chosen,
        rejected,
    }))
}
