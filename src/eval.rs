//! Evaluating a judge on a benchmark: judge every labeled pair, then score it the benchmark's
//! way ([`crate::metrics`]).
//!
//! Every pair goes to the judge with the correct response as A (the judge scores both orders
//! itself), so a verdict is right when `p_a > 0.5`.

use crate::data::{Content, Format, RM_BENCH_STYLES, Record};
use crate::metrics::{self, Consistency, Score, StyleVerdicts};
use crate::progress::Progress;
use crate::{Error, Judge, Pair, Result, Verdict};
use serde::Serialize;
use std::path::Path;

/// How a benchmark is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Benchmark {
    /// Per-subset accuracy, weighted section scores, their mean ([`metrics::rewardbench`]).
    RewardBench,
    /// 3×3 style matrices, hard/normal/easy per domain ([`metrics::rm_bench`]).
    RmBench,
    /// Two-order decisions against the label, per source category ([`metrics::judgebench`]).
    JudgeBench,
    /// Plain accuracy, per group (LLMBar, HH-RLHF, any preference file).
    Accuracy,
}

impl Benchmark {
    /// The scoring a data format calls for.
    pub fn of(format: Format) -> Benchmark {
        match format {
            Format::Rewardbench => Benchmark::RewardBench,
            Format::RmBench => Benchmark::RmBench,
            Format::Judgebench => Benchmark::JudgeBench,
            _ => Benchmark::Accuracy,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Benchmark::RewardBench => "rewardbench",
            Benchmark::RmBench => "rm-bench",
            Benchmark::JudgeBench => "judgebench",
            Benchmark::Accuracy => "accuracy",
        }
    }
}

/// Options of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Also report plain accuracy grouped by this passthrough field (or `group`).
    pub by: Option<String>,
    /// Pairs per call to [`Judge::judge`] (progress is reported after each).
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

/// The result of an evaluation, as printed and as written to `--report`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub benchmark: String,
    /// The benchmark's headline number: RewardBench's mean of sections, RM-Bench's mean of
    /// domain averages, JudgeBench's share of correct pairs, or plain accuracy.
    pub overall: Score,
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
        out += &format!(
            "{:<width$}  {:>7.2}%  {:>6}\n",
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

/// Judge every labeled pair of `records` and score them as `benchmark` does.
pub fn evaluate(
    judge: &mut impl Judge,
    records: &[Record],
    benchmark: Benchmark,
    options: &EvalOptions,
) -> Result<Report> {
    let mut pairs = Vec::new();
    let mut counts = Vec::with_capacity(records.len());
    for record in records {
        let preferences = record.preferences();
        if preferences.is_empty() {
            return Err(record
                .location
                .error(None, "an unlabeled pair: evaluation needs a label"));
        }
        if benchmark == Benchmark::RmBench && !matches!(record.content, Content::StyleGrid(_)) {
            return Err(record
                .location
                .error(Some("chosen"), "RM-Bench rows need 3 style variants"));
        }
        counts.push(preferences.len());
        pairs.extend(preferences.iter().map(|p| p.as_pair()));
    }
    let verdicts = judge_all(judge, &pairs, options)?;

    // Each record's verdicts, in record order.
    let mut per_record = Vec::with_capacity(records.len());
    let mut rest = verdicts.as_slice();
    for count in counts {
        let (own, tail) = rest.split_at(count);
        per_record.push(own);
        rest = tail;
    }
    let group = |record: &Record| record.group.clone().unwrap_or_else(|| "(none)".to_owned());
    let entry = |kind: &str, name: &str, score: Score| Entry {
        kind: kind.to_owned(),
        name: name.to_owned(),
        accuracy: score.accuracy,
        count: score.count,
    };
    let details = |value: serde_json::Result<serde_json::Value>| {
        value.map_err(|e| {
            Error::invalid(format!(
                "cannot serialise the {} results: {e}",
                benchmark.name()
            ))
        })
    };
    // (group, verdict) for every pair.
    let by_group = || -> Vec<(String, Verdict)> {
        records
            .iter()
            .zip(&per_record)
            .flat_map(|(r, v)| v.iter().map(move |v| (group(r), *v)))
            .collect()
    };

    let mut entries = Vec::new();
    let (overall, details) = match benchmark {
        Benchmark::RewardBench => {
            let scores = metrics::rewardbench(&by_group());
            entries.extend(
                scores
                    .sections
                    .iter()
                    .map(|(name, score)| entry("section", name, *score)),
            );
            entries.extend(
                scores
                    .subsets
                    .iter()
                    .map(|(name, score)| entry("subset", name, *score)),
            );
            (
                Score {
                    accuracy: scores.score,
                    count: verdicts.len(),
                },
                details(serde_json::to_value(&scores))?,
            )
        }
        Benchmark::RmBench => {
            let grids: Vec<(String, StyleVerdicts)> = records
                .iter()
                .zip(&per_record)
                .map(|(record, verdicts)| {
                    let mut grid = [[verdicts[0]; RM_BENCH_STYLES]; RM_BENCH_STYLES];
                    for (k, verdict) in verdicts.iter().enumerate() {
                        grid[k / RM_BENCH_STYLES][k % RM_BENCH_STYLES] = *verdict;
                    }
                    (group(record), grid)
                })
                .collect();
            let scores = metrics::rm_bench(&grids);
            let prompts = grids.len();
            for (name, value) in [
                ("hard", scores.hard),
                ("normal", scores.normal),
                ("easy", scores.easy),
            ] {
                entries.push(entry(
                    "difficulty",
                    name,
                    Score {
                        accuracy: value,
                        count: prompts,
                    },
                ));
            }
            for (domain, d) in &scores.domains {
                entries.push(entry(
                    "domain",
                    domain,
                    Score {
                        accuracy: d.average,
                        count: d.prompts,
                    },
                ));
                for (name, value) in [("hard", d.hard), ("normal", d.normal), ("easy", d.easy)] {
                    let name = format!("{domain}/{name}");
                    entries.push(entry(
                        "domain",
                        &name,
                        Score {
                            accuracy: value,
                            count: d.prompts,
                        },
                    ));
                }
            }
            (
                Score {
                    accuracy: scores.average,
                    count: prompts,
                },
                details(serde_json::to_value(&scores))?,
            )
        }
        Benchmark::JudgeBench => {
            let scores = metrics::judgebench(&by_group());
            for (name, tally) in &scores.categories {
                entries.push(entry(
                    "category",
                    name,
                    Score {
                        accuracy: tally.accuracy(),
                        count: tally.count,
                    },
                ));
            }
            (
                Score {
                    accuracy: scores.overall.accuracy(),
                    count: scores.overall.count,
                },
                details(serde_json::to_value(&scores))?,
            )
        }
        Benchmark::Accuracy => {
            if records.iter().any(|r| r.group.is_some()) {
                let groups = metrics::accuracy_by(&by_group());
                entries.extend(
                    groups
                        .iter()
                        .map(|(name, score)| entry("group", name, *score)),
                );
            }
            (metrics::accuracy(&verdicts), serde_json::Value::Null)
        }
    };

    if let Some(field) = &options.by {
        let mut labeled = Vec::with_capacity(verdicts.len());
        for (record, verdicts) in records.iter().zip(&per_record) {
            let value = record.field(field).ok_or_else(|| {
                record
                    .location
                    .error(Some(field), "missing (needed by --by)")
            })?;
            labeled.extend(verdicts.iter().map(|v| (value.clone(), *v)));
        }
        let kind = format!("by {field}");
        entries.extend(
            metrics::accuracy_by(&labeled)
                .iter()
                .map(|(name, score)| entry(&kind, name, *score)),
        );
    }

    Ok(Report {
        benchmark: benchmark.name().to_owned(),
        overall,
        entries,
        consistency: metrics::consistency(&verdicts),
        details,
    })
}

/// Judge `pairs` in chunks, checking the judge answers each pair once, with a progress line.
fn judge_all(
    judge: &mut impl Judge,
    pairs: &[Pair],
    options: &EvalOptions,
) -> Result<Vec<Verdict>> {
    let mut progress = Progress::new("pairs", pairs.len(), options.progress);
    let mut verdicts = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(options.chunk.max(1)) {
        let judged = judge.judge(chunk)?;
        if judged.len() != chunk.len() {
            return Err(Error::invalid(format!(
                "the judge returned {} verdicts for {} pairs",
                judged.len(),
                chunk.len()
            )));
        }
        verdicts.extend(judged);
        progress.advance(chunk.len(), "");
    }
    Ok(verdicts)
}
