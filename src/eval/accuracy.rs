//! Plain accuracy, per group when the rows have one: LLMBar (per file), HH-RLHF (per file),
//! and any other preference file.

use super::score::{accuracy, accuracy_by};
use super::{Entry, Judged, Scored, Scorer, by_group};
use crate::data::Format;
use crate::{Result, Verdict};

/// Scores every format no other scorer takes: the share of verdicts with `p_a > 0.5`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accuracy;

impl Scorer for Accuracy {
    fn name(&self) -> &'static str {
        "accuracy"
    }

    fn scores(&self, _format: Format) -> bool {
        true
    }

    fn score(&self, judged: &[Judged<'_>]) -> Result<Scored> {
        let mut entries = Vec::new();
        if judged.iter().any(|j| j.record.group.is_some()) {
            entries.extend(
                accuracy_by(&by_group(judged))
                    .iter()
                    .map(|(name, score)| Entry::new("group", name, *score)),
            );
        }
        let verdicts: Vec<Verdict> = judged
            .iter()
            .flat_map(|j| j.verdicts.iter().copied())
            .collect();
        Ok(Scored {
            overall: accuracy(&verdicts),
            entries,
            details: serde_json::Value::Null,
        })
    }
}
