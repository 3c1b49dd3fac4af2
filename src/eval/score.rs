//! What every benchmark's scoring shares: whether a verdict is correct, accuracy, and how much
//! the verdicts depend on the order the responses are shown in.
//!
//! Every scorer reads [`Verdict`]s on pairs oriented with the *correct* response as A, so
//! `p_a` is the probability the judge gives to the right answer. A verdict is correct when
//! `p_a > 0.5` strictly: an exact tie counts as wrong, as RewardBench's `chosen > rejected` does.

use crate::Verdict;
use serde::Serialize;
use std::collections::BTreeMap;

/// Whether a verdict on (correct, incorrect) picks the correct response; a tie is wrong.
pub fn is_correct(verdict: &Verdict) -> bool {
    verdict.p_a > 0.5
}

/// An accuracy (fraction in [0, 1]; NaN, serialised as `null`, when `count` is 0) and the
/// number of comparisons behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub accuracy: f64,
    pub count: usize,
}

impl Score {
    pub fn from_counts(correct: usize, count: usize) -> Score {
        Score {
            accuracy: correct as f64 / count as f64,
            count,
        }
    }
}

/// Resamples behind an [`Interval`].
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// A 95 % percentile-bootstrap interval of a headline score (same units: a fraction in
/// [0, 1]): the 2.5th and 97.5th percentiles of the score over [`BOOTSTRAP_RESAMPLES`]
/// resamples of the records, drawn with replacement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub resamples: usize,
}

impl Interval {
    /// The interval of the (unsorted) resampled `scores`.
    pub fn of(mut scores: Vec<f64>) -> Interval {
        scores.sort_by(f64::total_cmp);
        let at = |q: f64| scores[((q * (scores.len() - 1) as f64).round()) as usize];
        Interval {
            low: at(0.025),
            high: at(0.975),
            resamples: scores.len(),
        }
    }
}

/// Plain accuracy: the fraction of verdicts with `p_a > 0.5`.
pub fn accuracy(verdicts: &[Verdict]) -> Score {
    let correct = verdicts.iter().filter(|v| is_correct(v)).count();
    Score::from_counts(correct, verdicts.len())
}

/// Plain accuracy per group, groups in sorted order.
pub fn accuracy_by<S: AsRef<str>>(labeled: &[(S, Verdict)]) -> BTreeMap<String, Score> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (group, verdict) in labeled {
        let entry = counts.entry(group.as_ref().to_owned()).or_default();
        entry.0 += usize::from(is_correct(verdict));
        entry.1 += 1;
    }
    counts
        .into_iter()
        .map(|(group, (correct, count))| (group, Score::from_counts(correct, count)))
        .collect()
}

/// How much the judge's verdict depends on the order the responses are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Consistency {
    /// Fraction of pairs whose two orders pick the same winner ([`Verdict::is_position_consistent`]).
    pub rate: f64,
    /// Mean |p_a_forward − p_a_reverse|: how far apart the two orders' probabilities for the
    /// same response are. In raw verdict-token terms this is |P_fwd("A") − (1 − P_rev("A"))|.
    pub mean_gap: f64,
    pub count: usize,
}

/// Position-consistency statistics of a set of verdicts.
pub fn consistency(verdicts: &[Verdict]) -> Consistency {
    let n = verdicts.len() as f64;
    let consistent = verdicts
        .iter()
        .filter(|v| v.is_position_consistent())
        .count();
    let gap: f64 = verdicts
        .iter()
        .map(|v| (v.p_a_forward - v.p_a_reverse).abs())
        .sum();
    Consistency {
        rate: consistent as f64 / n,
        mean_gap: gap / n,
        count: verdicts.len(),
    }
}
