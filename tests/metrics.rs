//! Benchmark metrics against hand-computed cases, and
//! `evaluate` end to end with fake judges on real RM-Bench and LLMBar rows.

mod common;

use gram::data::{self, Content, Format, Record};
use gram::eval::{self, Decision, EvalOptions, StyleVerdicts};
use gram::{Judge, Pair, Verdict};
use std::path::PathBuf;

const EPS: f64 = 1e-12;

/// A verdict whose two orders give `forward` and `reverse` as P(A).
fn verdict(forward: f64, reverse: f64) -> Verdict {
    Verdict {
        p_a: 0.5 * (forward + reverse),
        p_a_forward: forward,
        p_a_reverse: reverse,
    }
}

/// A position-consistent verdict with probability `p` for A.
fn sure(p: f64) -> Verdict {
    verdict(p, p)
}

#[test]
fn accuracy_counts_exact_ties_as_wrong() {
    let verdicts = [sure(0.9), sure(0.5), sure(0.2), sure(0.5000001)];
    let score = eval::accuracy(&verdicts);
    assert_eq!(score.count, 4);
    assert!((score.accuracy - 0.5).abs() < EPS);
    // A tie from disagreeing orders is also wrong.
    assert!(!eval::is_correct(&verdict(0.8, 0.2)));

    let by = eval::accuracy_by(&[
        ("x", sure(0.9)),
        ("y", sure(0.1)),
        ("x", sure(0.4)),
        ("x", sure(0.7)),
    ]);
    assert!((by["x"].accuracy - 2.0 / 3.0).abs() < EPS);
    assert_eq!((by["x"].count, by["y"].count), (3, 1));
    assert_eq!(by["y"].accuracy, 0.0);
}

#[test]
fn rewardbench_weights_subsets_by_example_counts() {
    let labeled = [
        ("alpacaeval-easy", sure(0.9)),
        ("alpacaeval-easy", sure(0.5)), // tie: wrong
        ("mt-bench-easy", sure(0.8)),
        ("math-prm", sure(0.7)),
        ("hep-python", sure(0.3)),
        ("anthropic_helpful", sure(0.9)), // not in any section
    ];
    let scores = eval::rewardbench(&labeled);
    assert_eq!(scores.subsets.len(), 5);
    assert!((scores.subsets["alpacaeval-easy"].accuracy - 0.5).abs() < EPS);
    let sections: Vec<&str> = scores
        .sections
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(sections, ["Chat", "Reasoning"]);
    // Chat: (0.5·100 + 1·28) / (100 + 28); Reasoning: (1·984 + 0·164) / (984 + 164).
    let chat = 78.0 / 128.0;
    let reasoning = 984.0 / 1148.0;
    assert!((scores.sections[0].1.accuracy - chat).abs() < EPS);
    assert_eq!(scores.sections[0].1.count, 3);
    assert!((scores.sections[1].1.accuracy - reasoning).abs() < EPS);
    assert!((scores.score - (chat + reasoning) / 2.0).abs() < EPS);
}

/// A grid where chosen style i beats rejected style j exactly when `wins(i, j)`.
fn grid(wins: impl Fn(usize, usize) -> bool) -> StyleVerdicts {
    std::array::from_fn(|i| std::array::from_fn(|j| if wins(i, j) { sure(0.8) } else { sure(0.5) }))
}

#[test]
fn rm_bench_triangles_follow_the_authors_definition() {
    // Prompt 1 wins only where the chosen is plainer (i < j); prompt 2 wins everywhere.
    let domain = eval::rm_bench_domain(&[grid(|i, j| i < j), grid(|_, _| true)]);
    assert_eq!(domain.prompts, 2);
    assert!((domain.matrix[0][1] - 1.0).abs() < EPS);
    assert!((domain.matrix[1][0] - 0.5).abs() < EPS);
    assert!((domain.matrix[2][2] - 0.5).abs() < EPS);
    assert!((domain.hard - 1.0).abs() < EPS);
    assert!((domain.normal - 0.5).abs() < EPS);
    assert!((domain.easy - 0.5).abs() < EPS);
    assert!((domain.average - 2.0 / 3.0).abs() < EPS);

    // Only the diagonal and the one easy cell (2, 0).
    let domain = eval::rm_bench_domain(&[grid(|i, j| i == j || (i, j) == (2, 0))]);
    assert_eq!((domain.hard, domain.normal), (0.0, 1.0));
    assert!((domain.easy - 1.0 / 3.0).abs() < EPS);

    // safety-refuse and safety-response pool into one `safety` domain; overall = mean of domains.
    let scores = eval::rm_bench(&[
        ("chat", grid(|_, _| true)),
        ("safety-refuse", grid(|_, _| false)),
        ("safety-response", grid(|i, j| i >= j)),
    ]);
    assert_eq!(
        scores.domains.keys().collect::<Vec<_>>(),
        ["chat", "safety"]
    );
    let safety = &scores.domains["safety"];
    assert_eq!(safety.prompts, 2);
    assert!(
        (safety.hard - 0.0).abs() < EPS
            && (safety.normal - 0.5).abs() < EPS
            && (safety.easy - 0.5).abs() < EPS
    );
    assert!((scores.hard - 0.5).abs() < EPS);
    assert!((scores.normal - 0.75).abs() < EPS);
    assert!((scores.average - (1.0 + 1.0 / 3.0) / 2.0).abs() < EPS);
    assert_eq!(eval::rm_bench_domain_of("math-prm"), "math");
}

#[test]
fn judgebench_combines_both_orders_like_the_official_scorer() {
    assert_eq!(Decision::from_probability(0.5), Decision::Tie);
    assert_eq!(Decision::from_probability(0.51), Decision::A);
    let labeled = [
        ("mmlu-pro-law", verdict(0.9, 0.8)),        // both right: correct
        ("mmlu-pro-math", verdict(0.9, 0.2)),       // one each: tie, inconsistent
        ("livebench-math", verdict(0.5, 0.7)),      // tie + right: correct, inconsistent
        ("livebench-math", verdict(0.5, 0.5)),      // both ties: tie
        ("livecodebench", verdict(0.1, 0.3)),       // both wrong: incorrect
        ("livebench-reasoning", verdict(0.4, 0.5)), // wrong + tie: incorrect, inconsistent
    ];
    let scores = eval::judgebench(&labeled);
    let overall = scores.overall;
    assert_eq!(
        (
            overall.correct,
            overall.incorrect,
            overall.tie,
            overall.inconsistent,
            overall.count
        ),
        (2, 2, 2, 3, 6)
    );
    assert!((overall.accuracy() - 2.0 / 6.0).abs() < EPS);
    let names: Vec<&str> = scores.categories.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "livebench-math",
            "livebench-reasoning",
            "livecodebench",
            "mmlu-pro"
        ]
    );
    assert_eq!(scores.categories["mmlu-pro"].count, 2);
    assert!((scores.categories["livebench-math"].accuracy() - 0.5).abs() < EPS);
    // Macro: the four categories' own accuracies (1/2, 0, 1/2, 0) averaged, beside the
    // micro 2/6.
    assert!((scores.macro_accuracy - 0.25).abs() < EPS);
    assert_eq!(scores.macro_count, 6);
}

#[test]
fn consistency_rate_and_mean_gap() {
    let stats = eval::consistency(&[verdict(0.9, 0.7), verdict(0.8, 0.4), verdict(0.3, 0.1)]);
    assert!((stats.rate - 2.0 / 3.0).abs() < EPS);
    assert!((stats.mean_gap - (0.2 + 0.4 + 0.2) / 3.0).abs() < EPS);
    assert_eq!(stats.count, 3);
}

// -------------------------------------------------------------------------------------------
// evaluate

fn shared_data() -> PathBuf {
    common::shared_dir().join("data")
}

/// Prefers the longer response, with the same confidence in both orders; counts calls.
struct LongerJudge {
    calls: usize,
}

impl Judge for LongerJudge {
    fn judge(&mut self, pairs: &[Pair]) -> gram::Result<Vec<Verdict>> {
        self.calls += 1;
        Ok(pairs
            .iter()
            .map(|pair| {
                let (a, b) = (
                    pair.response_a.chars().count(),
                    pair.response_b.chars().count(),
                );
                sure(if a > b {
                    0.9
                } else if a < b {
                    0.1
                } else {
                    0.5
                })
            })
            .collect())
    }
}

/// [`LongerJudge`]'s report on `records` under `scorer`, with the default options.
fn by_length(records: &[Record], scorer: &dyn eval::Scorer) -> eval::Report {
    eval::evaluate(
        &mut LongerJudge { calls: 0 },
        records,
        scorer,
        &EvalOptions::default(),
    )
    .unwrap()
}

/// Always picks whatever is shown first.
struct FirstJudge;

impl Judge for FirstJudge {
    fn judge(&mut self, pairs: &[Pair]) -> gram::Result<Vec<Verdict>> {
        Ok(pairs.iter().map(|_| verdict(0.9, 0.1)).collect())
    }
}

#[test]
fn evaluate_rm_bench_with_a_length_judge() {
    let mut records = Vec::new();
    for file in ["chat.json", "safety-refuse.json"] {
        records.extend(
            data::read_preferences(shared_data().join("rm-bench").join(file), Format::Auto)
                .unwrap(),
        );
    }
    // The length judge's hard accuracy, counted directly: chosen style i longer than rejected j, i < j.
    let mut hard = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for record in &records {
        let Content::StyleGrid(grid) = &record.content else {
            panic!()
        };
        let entry = hard.entry(record.group.clone().unwrap()).or_default();
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            entry.0 += f64::from(u8::from(
                grid.chosen[i].chars().count() > grid.rejected[j].chars().count(),
            ));
            entry.1 += 1.0;
        }
    }
    let mut judge = LongerJudge { calls: 0 };
    let options = EvalOptions {
        chunk: 100,
        ..EvalOptions::default()
    };
    let report = eval::evaluate(&mut judge, &records, &eval::RmBench, &options).unwrap();
    // Whole records per judge call, closed at 100 pairs or more: 12 records of 9 pairs each.
    assert_eq!(judge.calls, (129 + 284usize).div_ceil(100usize.div_ceil(9)));
    assert_eq!(report.overall.count, 129 + 284);
    let entry = |name: &str| {
        report
            .entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let chat_hard = hard["chat"].0 / hard["chat"].1;
    let safety_hard = hard["safety-refuse"].0 / hard["safety-refuse"].1;
    assert!((entry("chat/hard").accuracy - chat_hard).abs() < 1e-9);
    assert!((entry("safety/hard").accuracy - safety_hard).abs() < 1e-9);
    assert!((entry("hard").accuracy - (chat_hard + safety_hard) / 2.0).abs() < 1e-9);
    // Detailed answers are longer than concise ones, so the length judge fails hard cells more
    // often than easy ones.
    assert!(entry("hard").accuracy < entry("easy").accuracy);
    assert_eq!(report.consistency.rate, 1.0);
    assert!(report.table().contains("domain chat/hard"));
}

#[test]
fn evaluate_llmbar_groups_and_writes_a_json_report() {
    let dir = shared_data().join("llmbar");
    let mut records: Vec<Record> = Vec::new();
    for file in ["Natural.json", "Adversarial_GPTOut.json"] {
        records.extend(data::read_preferences(dir.join(file), Format::Auto).unwrap());
    }
    let longer = records
        .iter()
        .filter(|r| {
            let p = &r.preferences()[0];
            p.chosen.chars().count() > p.rejected.chars().count()
        })
        .count();
    let options = EvalOptions {
        by: Some("group".to_owned()),
        chunk: 16,
        progress: true,
    };
    let report = eval::evaluate(
        &mut LongerJudge { calls: 0 },
        &records,
        eval::scorer_for(Format::Llmbar),
        &options,
    )
    .unwrap();
    assert_eq!(report.benchmark, "accuracy");
    assert_eq!(report.overall.count, 147);
    assert!((report.overall.accuracy - longer as f64 / 147.0).abs() < 1e-12);
    let groups: Vec<(&str, &str, usize)> = report
        .entries
        .iter()
        .map(|e| (e.kind.as_str(), e.name.as_str(), e.count))
        .collect();
    assert_eq!(
        groups,
        [
            ("group", "Adversarial_GPTOut", 47),
            ("group", "Natural", 100),
            ("by group", "Adversarial_GPTOut", 47),
            ("by group", "Natural", 100)
        ]
    );

    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("report.json");
    report.write_json(&path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["overall"]["count"], 147);
    assert_eq!(json["entries"][1]["name"], "Natural");
    assert_eq!(json["consistency"]["rate"], 1.0);
}

/// The headline's 95 % bootstrap interval: for plain accuracy it matches the normal
/// approximation p ± 1.96·√(p(1−p)/n), for RM-Bench it brackets the mean of domains; it is
/// reproducible, and a judge that is always right has the interval [1, 1].
#[test]
fn reports_carry_a_bootstrap_interval_of_the_headline() {
    let llmbar =
        data::read_preferences(shared_data().join("llmbar/Natural.json"), Format::Auto).unwrap();
    let options = EvalOptions::default();
    let report = by_length(&llmbar, &eval::Accuracy);
    let interval = report.interval.unwrap();
    assert_eq!(interval.resamples, eval::BOOTSTRAP_RESAMPLES);
    let (p, n) = (report.overall.accuracy, report.overall.count as f64);
    let half = 1.96 * (p * (1.0 - p) / n).sqrt();
    assert!(
        (interval.low - (p - half)).abs() < 0.02 && (interval.high - (p + half)).abs() < 0.02,
        "{interval:?} vs {p} ± {half}"
    );
    assert!(
        report.table().contains("95% interval"),
        "{}",
        report.table()
    );
    let again = by_length(&llmbar, &eval::Accuracy);
    assert_eq!(again.interval, report.interval);

    let rm_bench =
        data::read_preferences(shared_data().join("rm-bench/chat.json"), Format::Auto).unwrap();
    let report = by_length(&rm_bench, &eval::RmBench);
    let interval = report.interval.unwrap();
    assert!(
        interval.low < report.overall.accuracy && report.overall.accuracy < interval.high,
        "{interval:?} around {}",
        report.overall.accuracy
    );
    assert!(interval.high - interval.low < 0.2, "{interval:?}");

    struct RightJudge;
    impl Judge for RightJudge {
        fn judge(&mut self, pairs: &[Pair]) -> gram::Result<Vec<Verdict>> {
            Ok(pairs.iter().map(|_| sure(0.9)).collect())
        }
    }
    let report = eval::evaluate(&mut RightJudge, &llmbar, &eval::Accuracy, &options).unwrap();
    let interval = report.interval.unwrap();
    assert_eq!((interval.low, interval.high), (1.0, 1.0));
}

#[test]
fn evaluate_counts_a_position_biased_judge_as_wrong() {
    let records = data::read_preferences(
        shared_data().join("llmbar/Adversarial_Manual.json"),
        Format::Auto,
    )
    .unwrap();
    let report = eval::evaluate(
        &mut FirstJudge,
        &records,
        &eval::Accuracy,
        &EvalOptions::default(),
    )
    .unwrap();
    assert_eq!(report.overall.accuracy, 0.0);
    assert_eq!(report.consistency.rate, 0.0);
    assert!((report.consistency.mean_gap - 0.8).abs() < 1e-12);
}

#[test]
fn evaluate_rejects_unlabeled_rows_and_miscounting_judges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.jsonl");
    std::fs::write(&path, "{\"prompt\": \"p\", \"response_a\": \"a\", \"response_b\": \"b\", \"label\": \"A\"}\n{\"prompt\": \"p\", \"response_a\": \"a\", \"response_b\": \"b\"}\n").unwrap();
    let records = data::read_preferences(&path, Format::Auto).unwrap();
    match eval::evaluate(
        &mut LongerJudge { calls: 0 },
        &records,
        &eval::Accuracy,
        &EvalOptions::default(),
    ) {
        Err(gram::Error::Data {
            line: Some(2),
            message,
            ..
        }) => assert!(message.contains("unlabeled")),
        other => panic!("{other:?}"),
    }
    struct Silent;
    impl Judge for Silent {
        fn judge(&mut self, _: &[Pair]) -> gram::Result<Vec<Verdict>> {
            Ok(Vec::new())
        }
    }
    assert!(
        eval::evaluate(
            &mut Silent,
            &records[..1],
            &eval::Accuracy,
            &EvalOptions::default()
        )
        .is_err()
    );
    let by = EvalOptions {
        by: Some("nope".to_owned()),
        ..EvalOptions::default()
    };
    match eval::evaluate(
        &mut LongerJudge { calls: 0 },
        &records[..1],
        &eval::Accuracy,
        &by,
    ) {
        Err(gram::Error::Data {
            field: Some(field), ..
        }) => assert_eq!(field, "nope"),
        other => panic!("{other:?}"),
    }
}
