//! RewardBench 2: the official scorer's numbers on hand-made cases, the data format and its
//! errors, `evaluate` with a length judge, and `gram eval --format rewardbench2` on the real
//! model.
//!
//! The reference numbers were computed by running allenai/reward-bench's own functions
//! (`rewardbench/utils.py` at 05a9005: `reroll_and_score_dataset`'s result rule,
//! `_compute_prompt_stats`, `process_single_model`) on the same scores.

mod common;

use gram::data::{self, Content, Format};
use gram::eval::{
    self, EvalOptions, REWARDBENCH2_SUBSETS, RewardBench2, ScoredCompletions, TiesKind,
    best_of_n_result, rewardbench2, ties_score,
};
use gram::{Judge, Pair, Verdict};
use std::path::PathBuf;

const EPS: f64 = 1e-12;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rewardbench2_sample.jsonl")
}

fn row(subset: &str, scores: &[f64], num_correct: usize) -> ScoredCompletions {
    ScoredCompletions {
        subset: subset.to_owned(),
        ties: None,
        scores: scores.to_vec(),
        num_correct,
    }
}

fn ties_row(kind: TiesKind, prompt: u64, scores: &[f64], num_correct: usize) -> ScoredCompletions {
    ScoredCompletions {
        ties: Some((kind, prompt)),
        ..row("Ties", scores, num_correct)
    }
}

#[test]
fn best_of_n_shares_a_tied_top_score() {
    // (scores, official result)
    let cases: [(&[f64], f64); 5] = [
        (&[3.0, 1.0, 2.0, 0.0], 1.0),
        (&[2.0, 2.0, 1.0, 0.0], 0.5),
        (&[1.0, 3.0, 2.0, 0.0], 0.0),
        (&[2.0, 2.0, 2.0, 2.0], 0.25),
        (&[-0.5, -1.0, -2.0, -0.75], 1.0),
    ];
    for (scores, expected) in cases {
        assert_eq!(best_of_n_result(scores, 0.0), expected, "{scores:?}");
    }
    // A tolerance widens the top: within 1e-9 of the best counts as tied.
    assert_eq!(best_of_n_result(&[1.0, 1.0 + 1e-12, 0.0], 0.0), 0.0);
    assert_eq!(best_of_n_result(&[1.0, 1.0 + 1e-12, 0.0], 1e-9), 0.5);
}

/// Nine Ties rows over five prompts: accurate and not, a zero spread of correct answers with a
/// positive margin (tanh(∞) = 1) and with a zero one (0/0, counted 0), a `tied:` prompt
/// without its `ref:` row.
fn ties_rows() -> Vec<ScoredCompletions> {
    use TiesKind::{Reference as R, Tied as T};
    vec![
        ties_row(R, 0, &[5.0, 1.0, 2.0], 1),
        ties_row(T, 0, &[4.0, 3.5, 3.0, 1.0, 0.0], 3),
        ties_row(R, 1, &[1.0, 2.0, 0.0], 1),
        ties_row(T, 1, &[3.0, 1.0, 2.0], 2),
        ties_row(R, 2, &[1.0, 0.5], 1),
        ties_row(T, 2, &[2.0, 2.0, 0.0], 2),
        ties_row(R, 3, &[1.0, 1.0], 1),
        ties_row(T, 3, &[2.0, 2.0, 2.0], 2),
        ties_row(T, 4, &[3.0, 1.0, 0.0], 2),
    ]
}

#[test]
fn ties_reproduces_process_single_model() {
    let rows = ties_rows();
    let ties = ties_score(&rows.iter().collect::<Vec<_>>());
    // process_single_model on the same scores:
    // {"ref": 0.5, "tied": 0.6, "pref": 0.5, "hard": 0.5,
    //  "margin": 0.21411147557772459, "score": 0.5321411147557772}
    assert!((ties.ref_accuracy - 0.5).abs() < EPS, "{ties:?}");
    assert!((ties.tied_accuracy - 0.6).abs() < EPS, "{ties:?}");
    assert!((ties.correctness_preferred - 0.5).abs() < EPS, "{ties:?}");
    assert!(
        (ties.correctness_preferred_hard - 0.5).abs() < EPS,
        "{ties:?}"
    );
    assert!(
        (ties.margin_score - 0.21411147557772459).abs() < EPS,
        "{ties:?}"
    );
    assert!((ties.score - 0.5321411147557772).abs() < EPS, "{ties:?}");
    assert_eq!(ties.prompts, 9);

    // Rows sharing an id are pooled: splitting tied:0's incorrect answers over two rows with
    // the same id changes nothing.
    let mut split = rows.clone();
    split[1] = ties_row(TiesKind::Tied, 0, &[4.0, 3.5, 3.0, 1.0], 3);
    split.push(ties_row(TiesKind::Tied, 0, &[0.0], 0));
    assert_eq!(ties_score(&split.iter().collect::<Vec<_>>()), ties);

    // No prompt with both rows: NumPy's empty mean makes the official score NaN.
    let only_tied = ties_row(TiesKind::Tied, 4, &[3.0, 1.0, 0.0], 2);
    assert!(ties_score(&[&only_tied]).score.is_nan());
}

#[test]
fn overall_is_the_mean_of_the_subsets() {
    let mut rows = vec![
        row("Factuality", &[3.0, 1.0, 2.0, 0.0], 1), // 1
        row("Factuality", &[2.0, 2.0, 1.0, 0.0], 1), // 1/2
        row("Math", &[1.0, 3.0, 2.0, 0.0], 1),       // 0
        row("Focus", &[2.0, 2.0, 2.0, 2.0], 1),      // 1/4
    ];
    rows.extend(ties_rows());
    let scores = rewardbench2(&rows, 0.0);
    let names: Vec<&str> = scores.subsets.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Factuality", "Math", "Focus", "Ties"]);
    assert!((scores.subset("Factuality").unwrap() - 0.75).abs() < EPS);
    assert_eq!(scores.subsets[0].1.count, 2);
    assert_eq!(scores.subset("Math"), Some(0.0));
    assert_eq!(scores.subset("Focus"), Some(0.25));
    assert!((scores.subset("Ties").unwrap() - 0.5321411147557772).abs() < EPS);
    let mean = (0.75 + 0.0 + 0.25 + 0.5321411147557772) / 4.0;
    assert!((scores.score - mean).abs() < EPS, "{}", scores.score);
    assert!(scores.ties.is_some());
}

#[test]
fn rows_read_in_the_published_layout() {
    let records = data::read_preferences(sample(), Format::Auto).unwrap();
    assert_eq!(records.len(), 7);
    let groups: Vec<&str> = records
        .iter()
        .map(|r| r.group.as_deref().unwrap())
        .collect();
    // One row per subset in the leaderboard's order, then Ties' `ref:` and `tied:` rows.
    assert_eq!(groups[..6], REWARDBENCH2_SUBSETS);
    assert_eq!(groups[6], "Ties");
    let Content::BestOfN(tied) = &records[6].content else {
        panic!("{:?}", records[6].content);
    };
    assert_eq!(tied.chosen, ["Red.", "Green.", "Blue."]);
    assert_eq!(tied.all().len(), 5);
    // Each correct completion over each incorrect one, correct as chosen.
    let preferences = records[6].preferences();
    assert_eq!(preferences.len(), 6);
    assert_eq!(
        (&*preferences[1].chosen, &*preferences[1].rejected),
        ("Red.", "Brown.")
    );
    // id, counts and models pass through.
    assert_eq!(records[6].field("id").as_deref(), Some("tied:7"));
    assert!(records[0].extra.contains_key("models"));
}

#[test]
fn bad_rows_name_their_line_and_field() {
    let good = r#""id": "1", "prompt": "p", "subset": "Math""#;
    let cases = [
        (
            format!(r#"{{{good}, "chosen": ["a"], "rejected": ["b", "c"], "num_correct": 2}}"#),
            "num_correct",
            "is 2 but the row has 1",
        ),
        (
            format!(
                r#"{{{good}, "chosen": ["a"], "rejected": ["b"], "num_correct": 1, "total_completions": 3}}"#
            ),
            "total_completions",
            "is 3 but the row has 2",
        ),
        (
            format!(r#"{{{good}, "chosen": [], "rejected": ["b"], "num_correct": 0}}"#),
            "chosen",
            "an empty list",
        ),
        (
            format!(r#"{{{good}, "chosen": ["a"], "rejected": ["b", 3], "num_correct": 1}}"#),
            "rejected[1]",
            "expected a string, found a number",
        ),
        (
            format!(r#"{{{good}, "chosen": ["a"], "rejected": " b", "num_correct": 1}}"#),
            "rejected",
            "expected a list of strings, found a string",
        ),
    ];
    for (line, field, message) in cases {
        let text = format!("{line}\n");
        let (_dir, path) = common::scratch("rb2.jsonl", &text);
        let (at, at_field, got) =
            common::data_error(data::read_preferences(&path, Format::Rewardbench2));
        assert_eq!(at, Some(1), "{line}");
        assert_eq!(at_field.as_deref(), Some(field), "{line}: {got}");
        assert!(got.contains(message), "{line}: {got}");
    }
}

/// Prefers the longer response, with the same confidence in both orders.
struct LongerJudge;

impl Judge for LongerJudge {
    fn judge(&mut self, pairs: &[Pair]) -> gram::Result<Vec<Verdict>> {
        Ok(pairs
            .iter()
            .map(|pair| {
                let (a, b) = (pair.response_a.len(), pair.response_b.len());
                let p = match a.cmp(&b) {
                    std::cmp::Ordering::Greater => 0.9,
                    std::cmp::Ordering::Less => 0.1,
                    std::cmp::Ordering::Equal => 0.5,
                };
                Verdict {
                    p_a: p,
                    p_a_forward: p,
                    p_a_reverse: p,
                }
            })
            .collect())
    }
}

#[test]
fn evaluate_fits_bradley_terry_scores_per_row() {
    let records = data::read_preferences(sample(), Format::Auto).unwrap();
    let options = EvalOptions {
        by: Some("subset".into()),
        ..Default::default()
    };
    let report = eval::evaluate(&mut LongerJudge, &records, &RewardBench2, &options).unwrap();
    assert_eq!(report.benchmark, "rewardbench2");
    let subset = |name: &str| {
        report
            .entries
            .iter()
            .find(|e| e.kind == "subset" && e.name == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", report.entries))
            .accuracy
    };
    // The longest completion wins: the chosen one is longest only in Focus; in Math it ties
    // in length with two incorrect ones (equal Bradley–Terry strengths: 1/3).
    assert_eq!(subset("Factuality"), 0.0);
    assert_eq!(subset("Precise IF"), 0.0);
    assert!((subset("Math") - 1.0 / 3.0).abs() < EPS);
    assert_eq!(subset("Safety"), 0.0);
    assert_eq!(subset("Focus"), 1.0);
    // Ties: "Red." is the shortest correct answer and shorter than every incorrect one, so
    // neither row is accurate and no margin beats the spread; only the tanh term remains,
    // negative.
    let ties = subset("Ties");
    assert!(ties < 0.0 && ties > -0.01, "{ties}");
    let mean = (1.0 / 3.0 + 1.0 + ties) / 6.0;
    assert!((report.overall.accuracy - mean).abs() < EPS);
    assert_eq!(report.overall.count, 7);
    // Every pair of completions was judged: 5 rows × 6 + 3 + 10.
    assert_eq!(report.consistency.count, 43);
    // `--by` counts only correct-over-incorrect pairs: 5 × 3 + 2 + 3 × 2.
    let by: usize = report
        .entries
        .iter()
        .filter(|e| e.kind == "by subset")
        .map(|e| e.count)
        .sum();
    assert_eq!(by, 23);
    assert_eq!(report.details["ties"]["ref_accuracy"], 0.0);
}

/// The error `evaluate` gives on the sample rows after `change`.
fn eval_error(change: impl FnOnce(&mut [gram::data::Record])) -> String {
    let mut records = data::read_preferences(sample(), Format::Auto).unwrap();
    change(&mut records);
    let options = EvalOptions::default();
    eval::evaluate(&mut LongerJudge, &records, &RewardBench2, &options)
        .unwrap_err()
        .to_string()
}

#[test]
fn ties_rows_need_a_ref_or_tied_id() {
    let err = eval_error(|records| {
        records[5].extra.insert("id".into(), "reference:7".into());
    });
    assert!(
        err.contains("\"ref:<number>\"") && err.contains(":6"),
        "{err}"
    );
    let err = eval_error(|records| {
        let Content::BestOfN(tied) = &mut records[6].content else {
            unreachable!()
        };
        tied.chosen.truncate(1);
    });
    assert!(err.contains("at least two correct"), "{err}");
}

/// `gram eval --format rewardbench2` on SmolLM2-135M (CPU): every subset scored, the overall
/// the mean of the six, and the report's Ties parts consistent with its score.
#[test]
fn gram_eval_rewardbench2_on_the_real_model() {
    let model = common::model_path();
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gram"))
        .args([
            "eval",
            "--device",
            "cpu",
            "--format",
            "rewardbench2",
            "--model",
        ])
        .arg(&model)
        .arg("--benchmark")
        .arg(sample())
        .arg("--report")
        .arg(&report_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("subset Precise IF"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let subsets = report["details"]["subsets"].as_array().unwrap();
    assert_eq!(subsets.len(), 6, "{report}");
    let values: Vec<f64> = subsets
        .iter()
        .map(|s| s[1]["accuracy"].as_f64().unwrap())
        .collect();
    for (subset, value) in subsets.iter().zip(&values) {
        let name = subset[0].as_str().unwrap();
        if name == "Ties" {
            assert!((-0.01..=1.01).contains(value), "{name}: {value}");
        } else {
            // One row each: 1/k for k completions tied at the top, or 0.
            let k = 1.0 / value;
            assert!(
                *value == 0.0 || (k - k.round()).abs() < 1e-9,
                "{name}: {value}"
            );
        }
    }
    let mean = values.iter().sum::<f64>() / 6.0;
    assert!((report["overall"]["accuracy"].as_f64().unwrap() - mean).abs() < EPS);
    let ties = &report["details"]["ties"];
    let parts = 0.3 * ties["tied_accuracy"].as_f64().unwrap()
        + 0.3 * ties["ref_accuracy"].as_f64().unwrap()
        + 0.2 * ties["correctness_preferred"].as_f64().unwrap()
        + 0.2 * ties["correctness_preferred_hard"].as_f64().unwrap()
        + 0.01 * ties["margin_score"].as_f64().unwrap();
    assert!((parts - values[5]).abs() < EPS);
    assert_eq!(report["consistency"]["count"], 43);
    eprintln!("{stdout}");
}
