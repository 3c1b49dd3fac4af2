//! Evaluating a judge on a benchmark: judge every labeled pair, then score it the benchmark's
//! way.
//!
//! Every pair goes to the judge with the correct response as A (the judge scores both orders
//! itself), so a verdict is right when `p_a > 0.5`.
//!
//! Each benchmark's scoring is one [`Scorer`], in its own file, computed the way the
//! benchmark's authors compute it:
//!
//! | scorer | data | headline number |
//! |---|---|---|
//! | [`RewardBench`] (`rewardbench.rs`) | `rewardbench` | mean of the weighted section scores |
//! | [`RmBench`] (`rm_bench.rs`) | `rm-bench` | mean over domains of hard/normal/easy |
//! | [`JudgeBench`] (`judgebench.rs`) | `judgebench` | two-order decisions against the label (micro; macro over categories beside it) |
//! | [`RewardBench2`] (`rewardbench2.rs`) | `rewardbench2` | mean of the six subset scores (best-of-n; Ties weighted) |
//! | [`Accuracy`] (`accuracy.rs`) | every other format (LLMBar, HH-RLHF, pairs, ...) | plain accuracy |
//!
//! Adding a benchmark is a file with a type implementing [`Scorer`] and its entry in
//! [`SCORERS`]. This module is the driver: it checks and judges the rows, then adds what
//! every benchmark reports (accuracy grouped `--by` a field, position consistency) to the
//! scorer's [`Report`]. What scorers share is in `score.rs`.

mod accuracy;
mod journal;
mod judgebench;
mod rewardbench;
mod rewardbench2;
mod rm_bench;
mod score;

pub use accuracy::Accuracy;
pub use journal::Journal;
pub use judgebench::{
    Decision, JUDGEBENCH_CATEGORIES, JudgeBench, JudgeBenchScores, JudgeBenchTally, judgebench,
    judgebench_category,
};
pub use rewardbench::{
    REWARDBENCH_EXAMPLE_COUNTS, REWARDBENCH_SECTIONS, RewardBench, RewardBenchScores, rewardbench,
};
pub use rewardbench2::{
    REWARDBENCH2_SUBSETS, RewardBench2, RewardBench2Scores, ScoredCompletions, TiesKind, TiesScore,
    best_of_n_result, rewardbench2, ties_score,
};
pub use rm_bench::{
    RM_BENCH_DOMAINS, RmBench, RmBenchDomain, RmBenchScores, StyleVerdicts, rm_bench,
    rm_bench_domain, rm_bench_domain_of,
};
pub use score::{
    BOOTSTRAP_RESAMPLES, Consistency, Interval, Score, accuracy, accuracy_by, consistency,
    is_correct,
};

use crate::data::{Format, Record};
use crate::progress::Progress;
use crate::{Error, Judge, Pair, Result, Verdict};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::Path;

/// One benchmark's way of scoring a judge's verdicts.
pub trait Scorer: Sync {
    /// The name reports and messages use (`rewardbench`, `rm-bench`, ...).
    fn name(&self) -> &'static str;

    /// Whether rows of `format` are scored this way ([`scorer_for`] takes the first in
    /// [`SCORERS`] that says yes).
    fn scores(&self, format: Format) -> bool;

    /// Reject a labeled record this benchmark cannot score, before any judging.
    fn check(&self, _record: &Record) -> Result<()> {
        Ok(())
    }

    /// The pairs to judge for `record`; [`Judged::verdicts`] holds their verdicts in this
    /// order. By default its labeled preferences, correct response as A.
    fn comparisons(&self, record: &Record) -> Vec<Pair> {
        record.preferences().iter().map(|p| p.as_pair()).collect()
    }

    /// The verdicts of `judged` on labeled pairs, correct response as A (what `--by` counts).
    /// By default all of them, as [`Scorer::comparisons`] judges only labeled pairs.
    fn labeled(&self, judged: &Judged<'_>) -> Vec<Verdict> {
        judged.verdicts.to_vec()
    }

    /// The headline score, the report's entries and the full results of the judged records.
    fn score(&self, judged: &[Judged<'_>]) -> Result<Scored>;
}

/// Every benchmark's scorer, in the order [`scorer_for`] asks them; [`Accuracy`], which takes
/// any format, comes last.
pub const SCORERS: [&dyn Scorer; 5] = [
    &RewardBench,
    &RewardBench2,
    &RmBench,
    &JudgeBench,
    &Accuracy,
];

/// The scorer for rows of `format`.
pub fn scorer_for(format: Format) -> &'static dyn Scorer {
    SCORERS
        .into_iter()
        .find(|scorer| scorer.scores(format))
        .unwrap_or(&Accuracy)
}

/// One record and the verdicts on its comparisons, in [`Scorer::comparisons`] order.
#[derive(Debug, Clone, Copy)]
pub struct Judged<'a> {
    pub record: &'a Record,
    pub verdicts: &'a [Verdict],
}

impl Judged<'_> {
    /// The record's group, or `(none)`.
    pub fn group(&self) -> String {
        self.record
            .group
            .clone()
            .unwrap_or_else(|| "(none)".to_owned())
    }
}

/// `(group, verdict)` for every verdict of every record.
pub fn by_group(judged: &[Judged<'_>]) -> Vec<(String, Verdict)> {
    judged
        .iter()
        .flat_map(|j| j.verdicts.iter().map(move |v| (j.group(), *v)))
        .collect()
}

/// What a [`Scorer`] makes of the verdicts: the parts of a [`Report`] that are its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// See [`Report::overall`].
    pub overall: Score,
    pub entries: Vec<Entry>,
    /// See [`Report::details`].
    pub details: serde_json::Value,
}

/// `scores` as a report's details; `benchmark` names it in the error.
pub fn details(benchmark: &str, scores: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(scores)
        .map_err(|e| Error::invalid(format!("cannot serialise the {benchmark} results: {e}")))
}

/// Options of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Also report plain accuracy grouped by this passthrough field (or `group`).
    pub by: Option<String>,
    /// Pairs per call to [`Judge::judge`], at least (whole records per call; progress is
    /// reported after each; see [`calls`]).
    pub chunk: usize,
    /// Print a progress line (pairs done, rate, ETA) to stderr.
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            by: None,
            chunk: 32,
            progress: false,
        }
    }
}

/// One line of a report: a section, subset, domain, difficulty, source category or group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// What the entry is: `section`, `subset`, `difficulty`, `domain`, `category`, `group`,
    /// or `by <field>`.
    pub kind: String,
    pub name: String,
    /// Fraction in [0, 1].
    pub accuracy: f64,
    /// Comparisons behind it (prompts for RM-Bench entries).
    pub count: usize,
}

impl Entry {
    pub fn new(kind: &str, name: &str, score: Score) -> Entry {
        Entry {
            kind: kind.to_owned(),
            name: name.to_owned(),
            accuracy: score.accuracy,
            count: score.count,
        }
    }
}

/// The result of an evaluation, as printed and as written to `--report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub benchmark: String,
    /// The benchmark's headline number: RewardBench's mean of sections, RM-Bench's mean of
    /// domain averages, JudgeBench's share of correct pairs, or plain accuracy.
    pub overall: Score,
    /// Its 95 % bootstrap interval over the records ([`bootstrap`]); `None` when a resample
    /// cannot be scored.
    pub interval: Option<Interval>,
    pub entries: Vec<Entry>,
    pub consistency: Consistency,
    /// The benchmark's full results (RM-Bench matrices, JudgeBench tie counts, ...).
    pub details: serde_json::Value,
}

impl Report {
    /// The report as an aligned text table.
    pub fn table(&self) -> String {
        let width = self
            .entries
            .iter()
            .map(|e| e.kind.len() + e.name.len() + 1)
            .max()
            .unwrap_or(0)
            .max(7);
        let mut out = format!(
            "{:<width$}  {:>8}  {:>6}\n",
            self.benchmark, "accuracy", "count"
        );
        for entry in &self.entries {
            let label = format!("{} {}", entry.kind, entry.name);
            out += &format!(
                "{label:<width$}  {:>7.2}%  {:>6}\n",
                100.0 * entry.accuracy,
                entry.count
            );
        }
        let interval = self.interval.map_or(String::new(), |i| {
            format!(
                "  (95% interval {:.2}-{:.2}%)",
                100.0 * i.low,
                100.0 * i.high
            )
        });
        out += &format!(
            "{:<width$}  {:>7.2}%  {:>6}{interval}\n",
            "overall",
            100.0 * self.overall.accuracy,
            self.overall.count
        );
        out += &format!(
            "position consistency {:.2}% of {} pairs, mean |p_a forward - p_a reverse| {:.4}\n",
            100.0 * self.consistency.rate,
            self.consistency.count,
            self.consistency.mean_gap
        );
        out
    }

    /// Write the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid(format!("report: {e}")))?;
        crate::io::write_atomic(path, (text + "\n").as_bytes())
    }
}

/// Judge every labeled pair of `records` and score them as `scorer` does.
pub fn evaluate(
    judge: &mut impl Judge,
    records: &[Record],
    scorer: &dyn Scorer,
    options: &EvalOptions,
) -> Result<Report> {
    let verdicts = judge_records(judge, records, scorer, options)?;
    score(records, &verdicts, scorer, options)
}

/// The verdicts on each record's preferences ([`Record::preferences`] order), after checking
/// every record is labeled and scorable by `scorer`: the judging half of [`evaluate`], which a
/// sharded run (`gram eval --shard`) does for its slice of the records.
pub fn judge_records(
    judge: &mut impl Judge,
    records: &[Record],
    scorer: &dyn Scorer,
    options: &EvalOptions,
) -> Result<Vec<Vec<Verdict>>> {
    judge_records_after(judge, records, scorer, options, Vec::new(), |_| Ok(true))
}

/// Check that every record is labeled and scorable by `scorer`, before any judging.
pub fn check_records(records: &[Record], scorer: &dyn Scorer) -> Result<()> {
    for record in records {
        if record.preferences().is_empty() {
            return Err(record
                .location
                .error(None, "an unlabeled pair: evaluation needs a label"));
        }
        scorer.check(record)?;
    }
    Ok(())
}

/// [`judge_records`] for a run that continues an earlier one: `done` holds the verdicts on the
/// first `done.len()` records, and only the rest are judged. After each call to the judge,
/// `on_call` gets the verdicts of the records that call judged (to journal them; see
/// [`Journal`]) and says whether to go on; when it says stop, the verdicts so far are returned,
/// fewer than `records`.
pub fn judge_records_after(
    judge: &mut impl Judge,
    records: &[Record],
    scorer: &dyn Scorer,
    options: &EvalOptions,
    done: Vec<Vec<Verdict>>,
    mut on_call: impl FnMut(&[Vec<Verdict>]) -> Result<bool>,
) -> Result<Vec<Vec<Verdict>>> {
    check_records(records, scorer)?;
    if done.len() > records.len() {
        return Err(Error::invalid(format!(
            "verdicts on {} records are done, but there are {}",
            done.len(),
            records.len()
        )));
    }
    let first = done.len();
    let comparisons: Vec<Vec<Pair>> = records[first..]
        .iter()
        .map(|r| scorer.comparisons(r))
        .collect();
    let total: usize = comparisons.iter().map(Vec::len).sum();
    let mut progress = Progress::new("pairs", total, options.progress);
    let mut per_record = done;
    for call in calls(&comparisons, options) {
        let own = &comparisons[call];
        let pairs: Vec<Pair> = own.iter().flatten().cloned().collect();
        let verdicts = judge.judge(&pairs)?;
        if verdicts.len() != pairs.len() {
            return Err(Error::invalid(format!(
                "the judge returned {} verdicts for {} pairs",
                verdicts.len(),
                pairs.len()
            )));
        }
        let called = per_record.len();
        let mut rest = verdicts.as_slice();
        for record in own {
            let (mine, tail) = rest.split_at(record.len());
            per_record.push(mine.to_vec());
            rest = tail;
        }
        progress.advance(pairs.len(), "");
        if !on_call(&per_record[called..])? {
            break;
        }
    }
    Ok(per_record)
}

/// The records of each call to the judge in [`judge_records`], given each record's
/// comparisons ([`Scorer::comparisons`]): whole records, closed once they hold at least
/// `options.chunk` pairs ([`crate::parallel::blocks`]). A sharded run slices whole calls, so it
/// makes the same calls as the one-process run.
pub fn calls(comparisons: &[Vec<Pair>], options: &EvalOptions) -> Vec<std::ops::Range<usize>> {
    crate::parallel::blocks(comparisons.iter().map(Vec::len), options.chunk)
}

/// The report on `records` given the verdicts on each one's preferences: the scoring half of
/// [`evaluate`] (`gram merge` runs it on the verdicts of every slice of a sharded run).
pub fn score(
    records: &[Record],
    verdicts: &[Vec<Verdict>],
    scorer: &dyn Scorer,
    options: &EvalOptions,
) -> Result<Report> {
    if verdicts.len() != records.len() {
        return Err(Error::invalid(format!(
            "verdicts for {} records, but there are {}",
            verdicts.len(),
            records.len()
        )));
    }
    let mut judged = Vec::with_capacity(records.len());
    for (record, own) in records.iter().zip(verdicts) {
        scorer.check(record)?;
        let expected = scorer.comparisons(record).len();
        if own.len() != expected {
            return Err(record.location.error(
                None,
                format!("{} verdicts for {expected} comparisons", own.len()),
            ));
        }
        judged.push(Judged {
            record,
            verdicts: own,
        });
    }

    let Scored {
        overall,
        mut entries,
        details,
    } = scorer.score(&judged)?;
    let interval = bootstrap(&judged, scorer);
    if let Some(field) = &options.by {
        let mut labeled = Vec::with_capacity(verdicts.len());
        for one in &judged {
            let value = one.record.field(field).ok_or_else(|| {
                one.record
                    .location
                    .error(Some(field), "missing (needed by --by)")
            })?;
            labeled.extend(scorer.labeled(one).into_iter().map(|v| (value.clone(), v)));
        }
        let kind = format!("by {field}");
        entries.extend(
            accuracy_by(&labeled)
                .iter()
                .map(|(name, score)| Entry::new(&kind, name, *score)),
        );
    }

    let all: Vec<Verdict> = verdicts.concat();
    Ok(Report {
        benchmark: scorer.name().to_owned(),
        overall,
        interval,
        entries,
        consistency: consistency(&all),
        details,
    })
}

/// The 95 % bootstrap interval of `scorer`'s headline score on `judged`: the records are drawn
/// with replacement [`BOOTSTRAP_RESAMPLES`] times and scored again by the scorer itself, so
/// every benchmark's own aggregation (RM-Bench's domains, RewardBench's sections) is
/// resampled as it is computed; the interval holds the middle 95 % of those scores. The draws
/// come from ChaCha8 with seed 0, so a report (and `gram merge`'s) is reproducible. `None`
/// when a resample cannot be scored (e.g. it holds a RewardBench 2 Ties row without its
/// prompt's reference rows).
pub fn bootstrap(judged: &[Judged<'_>], scorer: &dyn Scorer) -> Option<Interval> {
    if judged.is_empty() {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut scores = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        let resample: Vec<Judged<'_>> = (0..judged.len())
            .map(|_| judged[rng.random_range(0..judged.len())])
            .collect();
        scores.push(scorer.score(&resample).ok()?.overall.accuracy);
    }
    Some(Interval::of(scores))
}
