//! RM-Bench: `prompt`, `chosen[3]`, `rejected[3]` (concise, detailed, detailed markdown).

use super::dialogue::response_text;
use super::{Content, Row};
use crate::{Preference, Result};

/// The number of style variants per response in RM-Bench: concise, detailed, detailed markdown.
pub const RM_BENCH_STYLES: usize = 3;

/// One RM-Bench prompt: [`RM_BENCH_STYLES`] style variants of the chosen and of the rejected
/// response, in the order concise, detailed plain, detailed markdown.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleGrid {
    pub prompt: String,
    pub chosen: [String; RM_BENCH_STYLES],
    pub rejected: [String; RM_BENCH_STYLES],
}

impl StyleGrid {
    /// The preference chosen style `i` over rejected style `j`.
    pub fn preference(&self, i: usize, j: usize) -> Preference {
        Preference {
            prompt: self.prompt.clone(),
            chosen: self.chosen[i].clone(),
            rejected: self.rejected[j].clone(),
        }
    }

    /// All nine preferences, chosen style major: `(0, 0), (0, 1), …, (2, 2)`.
    pub fn preferences(&self) -> Vec<Preference> {
        (0..RM_BENCH_STYLES)
            .flat_map(|i| (0..RM_BENCH_STYLES).map(move |j| (i, j)))
            .map(|(i, j)| self.preference(i, j))
            .collect()
    }
}

/// RM-Bench: `prompt`, and [`RM_BENCH_STYLES`] variants each of `chosen` and `rejected`.
pub(super) fn parse(row: &mut Row) -> Result<Content> {
    let prompt = row.take_prompt("prompt")?;
    let mut variants = |field: &str| -> Result<[String; RM_BENCH_STYLES]> {
        let value = row.take(field)?;
        let items = value
            .as_array()
            .ok_or_else(|| row.wrong_type(field, "a list of 3 strings", &value))?;
        if items.len() != RM_BENCH_STYLES {
            return Err(row.location.error(
                Some(field),
                format!(
                    "expected {RM_BENCH_STYLES} style variants, found {}",
                    items.len()
                ),
            ));
        }
        let mut texts: [String; RM_BENCH_STYLES] = Default::default();
        for (i, item) in items.iter().enumerate() {
            let name = format!("{field}[{i}]");
            texts[i] = row.non_blank(&name, response_text(row, &name, item)?)?;
        }
        Ok(texts)
    };
    let chosen = variants("chosen")?;
    let rejected = variants("rejected")?;
    Ok(Content::StyleGrid(StyleGrid {
        prompt,
        chosen,
        rejected,
    }))
}
