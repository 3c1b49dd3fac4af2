//! LLMBar: `input`, `output_1`, `output_2`, `label` 1/2.

use super::{Content, Row};
use crate::{Preference, Result};
use serde_json::Value;

/// LLMBar: `input`, `output_1`, `output_2`, `label` 1 or 2 (number or string).
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let prompt = row.take_prompt("input")?;
    let output_1 = row.take_response("output_1")?;
    let output_2 = row.take_response("output_2")?;
    let label = row.take("label")?;
    let label = match &label {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(number) => number.to_string(),
        other => return Err(row.wrong_type("label", "1 or 2", other)),
    };
    let (chosen, rejected) = match label.as_str() {
        "1" => (output_1, output_2),
        "2" => (output_2, output_1),
        _ => {
            return Err(row
                .location
                .error(Some("label"), format!("expected 1 or 2, found {label}")));
        }
    };
    Ok(Content::Preference(Preference {
        prompt,
        chosen,
        rejected,
    }))
}
