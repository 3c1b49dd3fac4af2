//! JudgeBench: `question`, `response_A`, `response_B`, `label` `"A>B"`/`"B>A"`, `source`.

use super::{Content, Row};
use crate::{Preference, Result};

/// JudgeBench: `question`, `response_A`, `response_B`, `label` "A>B" or "B>A".
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let prompt = row.take_prompt("question")?;
    let response_a = row.take_response("response_A")?;
    let response_b = row.take_response("response_B")?;
    let label = row.take_str("label")?;
    let (chosen, rejected) = match label.trim() {
        "A>B" => (response_a, response_b),
        "B>A" => (response_b, response_a),
        _ => {
            return Err(row.location.error(
                Some("label"),
                format!("expected \"A>B\" or \"B>A\", found {label:?}"),
            ));
        }
    };
    Ok(Content::Preference(Preference {
        prompt,
        chosen,
        rejected,
    }))
}
