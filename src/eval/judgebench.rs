//! JudgeBench: each order of a pair is one decision against the label, counted per source
//! category (`compute_final_metrics` with `reverse_order` in JudgeBench's scripts). The official
//! score is the micro mean over pairs; the macro mean over the four categories (the GRAM
//! README's "Avg.") is reported beside it.

use super::score::Score;
use super::{Entry, Judged, Scored, Scorer, by_group, details};
use crate::data::Format;
use crate::{Result, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

/// Scores `judgebench` rows: one entry per source category.
#[derive(Debug, Clone, Copy, Default)]
pub struct JudgeBench;

impl Scorer for JudgeBench {
    fn name(&self) -> &'static str {
        "judgebench"
    }

    fn scores(&self, format: Format) -> bool {
        format == Format::Judgebench
    }

    fn score(&self, judged: &[Judged<'_>]) -> Result<Scored> {
        let scores = judgebench(&by_group(judged));
        let mut entries: Vec<Entry> = scores
            .categories
            .iter()
            .map(|(name, tally)| {
                let score = Score {
                    accuracy: tally.accuracy(),
                    count: tally.count,
                };
                Entry::new("category", name, score)
            })
            .collect();
        let macro_score = Score {
            accuracy: scores.macro_accuracy,
            count: scores.macro_count,
        };
        entries.push(Entry::new("macro", "mean of categories", macro_score));
        Ok(Scored {
            overall: Score {
                accuracy: scores.overall.accuracy(),
                count: scores.overall.count,
            },
            entries,
            details: details(self.name(), &scores)?,
        })
    }
}

/// One order's decision, as JudgeBench's judges output it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// "A>B".
    A,
    /// "B>A".
    B,
    /// Neither (exactly 0.5).
    Tie,
}

impl Decision {
    /// The decision a probability that A is better implies.
    pub fn from_probability(p_a: f64) -> Decision {
        if p_a > 0.5 {
            Decision::A
        } else if p_a < 0.5 {
            Decision::B
        } else {
            Decision::Tie
        }
    }
}

/// JudgeBench counts for a set of pairs (`compute_final_metrics` with `reverse_order`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JudgeBenchTally {
    /// Pairs where more of the two orders pick the right answer than the wrong one.
    pub correct: usize,
    /// Pairs where more orders pick the wrong answer.
    pub incorrect: usize,
    /// Pairs where right and wrong picks balance (one each, or ties in both orders).
    pub tie: usize,
    /// Pairs whose two orders decide differently.
    pub inconsistent: usize,
    pub count: usize,
}

impl JudgeBenchTally {
    /// The JudgeBench score: `correct / count` (ties and inconsistent splits count as wrong).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count as f64
    }

    fn add(&mut self, verdict: &Verdict) {
        let forward = Decision::from_probability(verdict.p_a_forward);
        let reverse = Decision::from_probability(verdict.p_a_reverse);
        let vote = |d: Decision| -> i32 {
            match d {
                Decision::A => 1,
                Decision::B => -1,
                Decision::Tie => 0,
            }
        };
        match (vote(forward) + vote(reverse)).signum() {
            1 => self.correct += 1,
            -1 => self.incorrect += 1,
            _ => self.tie += 1,
        }
        self.inconsistent += usize::from(forward != reverse);
        self.count += 1;
    }
}

/// JudgeBench results: overall and per source category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeBenchScores {
    /// The official (micro) score is `overall.accuracy()`: correct pairs over all pairs.
    pub overall: JudgeBenchTally,
    pub categories: BTreeMap<String, JudgeBenchTally>,
    /// The macro mean: the unweighted mean of the [`JUDGEBENCH_CATEGORIES`] present
    /// (Knowledge, Reasoning, Math, Coding in the GRAM README); NaN when none is.
    pub macro_accuracy: f64,
    /// Pairs in those categories.
    pub macro_count: usize,
}

/// JudgeBench's reporting categories (`run_judge.py`); a `source` such as `mmlu-pro-law`
/// belongs to the category it starts with.
pub const JUDGEBENCH_CATEGORIES: [&str; 4] = [
    "mmlu-pro",
    "livebench-reasoning",
    "livebench-math",
    "livecodebench",
];

/// The JudgeBench category of a `source` (itself if none matches).
pub fn judgebench_category(source: &str) -> &str {
    JUDGEBENCH_CATEGORIES
        .into_iter()
        .find(|category| source.starts_with(category))
        .unwrap_or(source)
}

/// Score JudgeBench from `(source, verdict)` pairs, verdicts oriented with the right answer as A.
/// Each order is one decision: a pair is correct when the decisions agreeing with the label
/// outnumber those against it.
pub fn judgebench<S: AsRef<str>>(labeled: &[(S, Verdict)]) -> JudgeBenchScores {
    let mut overall = JudgeBenchTally::default();
    let mut categories: BTreeMap<String, JudgeBenchTally> = BTreeMap::new();
    for (source, verdict) in labeled {
        overall.add(verdict);
        categories
            .entry(judgebench_category(source.as_ref()).to_owned())
            .or_default()
            .add(verdict);
    }
    let present: Vec<&JudgeBenchTally> = JUDGEBENCH_CATEGORIES
        .iter()
        .filter_map(|name| categories.get(*name))
        .collect();
    let macro_accuracy = present.iter().map(|t| t.accuracy()).sum::<f64>() / present.len() as f64;
    let macro_count = present.iter().map(|t| t.count).sum();
    JudgeBenchScores {
        overall,
        categories,
        macro_accuracy,
        macro_count,
    }
}
