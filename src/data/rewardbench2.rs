//! RewardBench 2 (allenai/reward-bench-2, its dataset card's columns): `id`, `prompt`,
//! `chosen` (list of strings), `rejected` (list of strings), `num_correct`, `num_incorrect`,
//! `total_completions`, `models`, `subset`.
//!
//! A row is a best-of-n set: outside Ties one correct completion and three incorrect ones;
//! in Ties several correct ones. The counts, when present, must agree with the lists (the
//! official scorer splits `chosen + rejected` at `num_correct`), and stay in the row as
//! passthrough fields with `id`, `models` and the rest.

use super::{Content, Row};
use crate::{Preference, Result};
use serde_json::Value;

/// One best-of-n row: correct completions (`chosen`) and incorrect ones (`rejected`) to one
/// prompt. The official scorer reads the completions in the order `chosen` then `rejected`
/// ([`Completions::all`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Completions {
    pub prompt: String,
    pub chosen: Vec<String>,
    pub rejected: Vec<String>,
}

impl Completions {
    /// Every completion, `chosen` first: completion `i` is correct when `i < chosen.len()`.
    pub fn all(&self) -> Vec<&str> {
        self.chosen
            .iter()
            .chain(&self.rejected)
            .map(String::as_str)
            .collect()
    }

    /// The labeled pairs: each correct completion over each incorrect one, correct major.
    pub fn preferences(&self) -> Vec<Preference> {
        self.chosen
            .iter()
            .flat_map(|chosen| {
                self.rejected.iter().map(move |rejected| Preference {
                    prompt: self.prompt.clone(),
                    chosen: chosen.clone(),
                    rejected: rejected.clone(),
                })
            })
            .collect()
    }
}

/// `prompt`, non-empty lists `chosen` and `rejected`; `num_correct`, `num_incorrect` and
/// `total_completions`, where present, must equal the lists' lengths.
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let prompt = row.take_prompt("prompt")?;
    let chosen = texts(row, "chosen")?;
    let rejected = texts(row, "rejected")?;
    for (field, expected) in [
        ("num_correct", chosen.len()),
        ("num_incorrect", rejected.len()),
        ("total_completions", chosen.len() + rejected.len()),
    ] {
        match row.fields.get(field) {
            None => {}
            Some(value) if value.as_u64() == Some(expected as u64) => {}
            Some(value) => {
                return Err(row.location.error(
                    Some(field),
                    format!("is {value} but the row has {expected} such completions"),
                ));
            }
        }
    }
    Ok(Content::BestOfN(Completions {
        prompt,
        chosen,
        rejected,
    }))
}

/// A required non-empty list of non-blank strings, taken from the row.
fn texts(row: &mut Row, field: &str) -> Result<Vec<String>> {
    let items = match row.take(field)? {
        Value::Array(items) => items,
        other => return Err(row.wrong_type(field, "a list of strings", &other)),
    };
    if items.is_empty() {
        return Err(row.location.error(Some(field), "an empty list"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let name = format!("{field}[{i}]");
            match item {
                Value::String(text) => row.non_blank(&name, text),
                other => Err(row.wrong_type(&name, "a string", &other)),
            }
        })
        .collect()
}
