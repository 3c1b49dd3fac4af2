//! Ranking and rewards with fake judges whose preferences are known exactly.

use gram::data::Row;
use gram::data::jsonl::read_rows;
use gram::pair::sigmoid;
use gram::rank::{
    BT_PRIOR_PRECISION, Limits, Strategy, bradley_terry, rank, rank_many, rank_many_with,
    rank_rows, rank_rows_with,
};
use gram::reward::{
    Baseline, Group, ReferenceChoice, Scale, group_rewards, group_rewards_with, reward_rows,
};
use gram::{Judge, Pair, Result, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;

/// A deterministic judge: P(A beats B) = σ(s_A − s_B) with a known strength per response
/// (unlisted responses have strength 0), or an explicit probability per ordered pair. Records
/// every call's pairs.
#[derive(Default)]
struct KnownJudge {
    strength: HashMap<String, f64>,
    pair_probability: HashMap<(String, String), f64>,
    calls: Vec<Vec<Pair>>,
}

impl KnownJudge {
    fn with_strengths(strengths: &[(&str, f64)]) -> Self {
        KnownJudge {
            strength: strengths.iter().map(|(r, s)| (r.to_string(), *s)).collect(),
            ..Default::default()
        }
    }

    fn p_a(&self, pair: &Pair) -> f64 {
        let key = (pair.response_a.clone(), pair.response_b.clone());
        let swapped = (pair.response_b.clone(), pair.response_a.clone());
        if let Some(p) = self.pair_probability.get(&key) {
            return *p;
        }
        if let Some(p) = self.pair_probability.get(&swapped) {
            return 1.0 - p;
        }
        let s = |r: &str| self.strength.get(r).copied().unwrap_or(0.0);
        sigmoid(s(&pair.response_a) - s(&pair.response_b))
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.calls.iter().map(Vec::len).collect()
    }
}

impl Judge for KnownJudge {
    fn judge(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
        self.calls.push(pairs.to_vec());
        Ok(pairs
            .iter()
            .map(|pair| {
                let p = self.p_a(pair);
                Verdict {
                    p_a: p,
                    p_a_forward: p,
                    p_a_reverse: p,
                }
            })
            .collect())
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const ALL: [Strategy; 3] = [Strategy::Linear, Strategy::Knockout, Strategy::RoundRobin];

#[test]
fn all_strategies_pick_the_dominant_response() {
    let responses = texts(&["a", "b", "c", "best", "e"]);
    let strengths = [
        ("a", 0.1),
        ("b", -0.4),
        ("c", 0.3),
        ("best", 4.0),
        ("e", 0.0),
    ];
    for (strategy, comparisons) in ALL.into_iter().zip([4, 4, 10]) {
        let mut judge = KnownJudge::with_strengths(&strengths);
        let ranking = rank(&mut judge, "q", &responses, strategy).unwrap();
        assert_eq!(ranking.best, 3, "{strategy:?}: {ranking:?}");
        assert_eq!(ranking.order[0], 3, "{strategy:?}");
        assert_eq!(ranking.comparisons, comparisons, "{strategy:?}");
        assert_eq!(ranking.forward_passes, 2 * comparisons, "{strategy:?}");
        let mut sorted = ranking.order.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4], "order is a permutation");
    }
}

#[test]
fn linear_challenges_the_current_best_one_by_one() {
    let responses = texts(&["a", "b", "c", "d"]);
    let mut judge = KnownJudge::with_strengths(&[("a", 0.0), ("b", 1.0), ("c", -1.0), ("d", 0.5)]);
    let ranking = rank(&mut judge, "q", &responses, Strategy::Linear).unwrap();
    let played: Vec<(String, String)> = judge
        .calls
        .iter()
        .flatten()
        .map(|p| (p.response_a.clone(), p.response_b.clone()))
        .collect();
    let want = [("a", "b"), ("b", "c"), ("b", "d")].map(|(a, b)| (a.to_string(), b.to_string()));
    assert_eq!(played, want);
    assert_eq!(judge.batch_sizes(), vec![1, 1, 1]);
    assert_eq!(ranking.best, 1);
}

#[test]
fn knockout_sends_each_round_as_one_batch() {
    for (n, rounds) in [(5, vec![2, 1, 1]), (8, vec![4, 2, 1]), (2, vec![1])] {
        let responses: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        let strengths: Vec<(&str, f64)> = responses
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i as f64 * 0.3))
            .collect();
        let mut judge = KnownJudge::with_strengths(&strengths);
        let ranking = rank(&mut judge, "q", &responses, Strategy::Knockout).unwrap();
        assert_eq!(judge.batch_sizes(), rounds, "n = {n}");
        assert_eq!(ranking.comparisons, n - 1);
        assert_eq!(ranking.best, n - 1, "the strongest wins the bracket");
    }
}

#[test]
fn round_robin_scores_are_the_bradley_terry_strengths() {
    let responses = texts(&["mid", "top", "low"]);
    let mut judge = KnownJudge::with_strengths(&[("mid", 0.0), ("top", 1.0), ("low", -1.0)]);
    let ranking = rank(&mut judge, "q", &responses, Strategy::RoundRobin).unwrap();
    assert_eq!(
        judge.batch_sizes(),
        vec![3],
        "one judge call with every pair"
    );
    for (got, want) in ranking.scores.iter().zip([0.0, 1.0, -1.0]) {
        assert!((got - want).abs() < 1e-5, "{:?}", ranking.scores);
    }
    assert_eq!(ranking.order, vec![1, 0, 2]);
}

#[test]
fn round_robin_ranks_by_strength_not_by_win_count() {
    // "narrow" beats everyone by a hair (3 wins); "strong" loses narrowly to it but crushes the
    // rest (2 wins). Win counting would pick "narrow"; the Bradley–Terry fit picks "strong".
    let responses = texts(&["narrow", "strong", "c", "d"]);
    let mut judge = KnownJudge::default();
    for (a, b, p) in [
        ("narrow", "strong", 0.51),
        ("narrow", "c", 0.51),
        ("narrow", "d", 0.51),
        ("strong", "c", 0.99),
        ("strong", "d", 0.99),
        ("c", "d", 0.5),
    ] {
        judge.pair_probability.insert((a.into(), b.into()), p);
    }
    let ranking = rank(&mut judge, "q", &responses, Strategy::RoundRobin).unwrap();
    assert_eq!(ranking.best, 1, "{ranking:?}");
    assert!(ranking.scores[1] > ranking.scores[0]);
}

#[test]
fn bradley_terry_two_players_three_to_one() {
    let s = bradley_terry(2, &[(1, 0, 0.75)]);
    assert!((s[1] - s[0] - 3f64.ln()).abs() < 1e-5, "{s:?}");
    assert!(
        s[0].abs() - s[1].abs() < 1e-12 && (s[0] + s[1]).abs() < 1e-12,
        "centred: {s:?}"
    );
}

#[test]
fn one_response_needs_no_comparison() {
    for strategy in ALL {
        let mut judge = KnownJudge::default();
        let ranking = rank(&mut judge, "q", &texts(&["only"]), strategy).unwrap();
        assert_eq!(
            (ranking.best, ranking.comparisons, ranking.forward_passes),
            (0, 0, 0)
        );
        assert_eq!(ranking.order, vec![0]);
        assert_eq!(ranking.scores, vec![0.0]);
        assert!(judge.calls.is_empty());
    }
}

#[test]
fn zero_responses_is_an_error() {
    for strategy in ALL {
        let err = rank(&mut KnownJudge::default(), "q", &[], strategy).unwrap_err();
        assert!(err.to_string().contains("zero responses"), "{err}");
    }
}

#[test]
fn duplicate_responses_tie_without_forward_passes() {
    let responses = texts(&["same", "other", "same"]);
    let mut judge = KnownJudge::with_strengths(&[("same", 1.0), ("other", 0.0)]);
    let ranking = rank(&mut judge, "q", &responses, Strategy::RoundRobin).unwrap();
    assert_eq!(ranking.comparisons, 3);
    assert_eq!(
        ranking.forward_passes, 4,
        "the identical pair costs nothing"
    );
    assert_eq!(judge.batch_sizes(), vec![2]);
    assert!(
        (ranking.scores[0] - ranking.scores[2]).abs() < 1e-9,
        "{:?}",
        ranking.scores
    );
    assert_eq!(ranking.best, 0, "equal scores: the first wins");
    assert_eq!(ranking.order, vec![0, 2, 1]);
}

#[test]
fn rows_are_ranked_in_lockstep_batches() {
    let first = texts(&["a", "b", "c"]);
    let second = texts(&["d", "e", "f", "g", "h"]);
    let mut judge = KnownJudge::default();
    let rows: [(&str, &[String]); 2] = [("p", &first), ("q", &second)];
    let rankings = rank_many(&mut judge, &rows, Strategy::Knockout).unwrap();
    // Round 1: 1 + 2 pairs, round 2: 1 + 1, round 3: 0 + 1.
    assert_eq!(judge.batch_sizes(), vec![3, 2, 1]);
    assert_eq!(rankings[0].comparisons, 2);
    assert_eq!(rankings[1].comparisons, 4);
    assert!(judge.calls[0].iter().take(1).all(|p| p.prompt == "p"));
    assert!(judge.calls[0].iter().skip(1).all(|p| p.prompt == "q"));
}

#[test]
fn rank_rows_pass_fields_through_and_name_bad_rows() {
    let source = Path::new("rows.jsonl");
    let rows = read_rows(source, r#"{"id":7,"prompt":"p","responses":["a","b"]}"#).unwrap();
    let mut judge = KnownJudge::with_strengths(&[("b", 2.0)]);
    let out = rank_rows(&mut judge, &rows, Strategy::Linear).unwrap();
    assert_eq!(out[0]["id"], 7);
    assert_eq!(out[0]["best"], 1);
    assert_eq!(out[0]["order"], serde_json::json!([1, 0]));
    assert_eq!(out[0]["comparisons"], 1);
    assert_eq!(out[0]["forward_passes"], 2);

    let bad = read_rows(
        source,
        "{\"prompt\":\"p\",\"responses\":[\"a\"]}\n{\"prompt\":\"p\",\"responses\":[]}",
    )
    .unwrap();
    let err = rank_rows(&mut judge, &bad, Strategy::Linear).unwrap_err();
    assert_eq!(err.to_string(), "rows.jsonl:2: field `responses`: is empty");
}

// ---- rewards ----

#[test]
fn reward_against_a_reference_on_each_scale() {
    let p = sigmoid(1.0);
    for (scale, want) in [
        (Scale::Probability, p),
        (Scale::LogOdds, 1.0),
        (Scale::Centered, p - 0.5),
    ] {
        let mut judge = KnownJudge::with_strengths(&[("good", 1.0), ("ref", 0.0)]);
        let groups = [Group {
            prompt: "q".into(),
            responses: texts(&["good"]),
            baseline: Baseline::Reference("ref".into()),
        }];
        let rewards = group_rewards(&mut judge, &groups, scale).unwrap();
        assert!(
            (rewards[0][0] - want).abs() < 1e-9,
            "{scale:?}: {rewards:?}"
        );
        let pair = &judge.calls[0][0];
        assert_eq!(
            (pair.response_a.as_str(), pair.response_b.as_str()),
            ("good", "ref")
        );
    }
}

fn rows(text: &str) -> Vec<Row> {
    read_rows(Path::new("in.jsonl"), text).unwrap()
}

#[test]
fn reward_rows_judge_every_row_in_one_call() {
    let input = [
        r#"{"prompt":"p","response":"x","reference":"y"}"#,
        r#"{"prompt":"p","response":"y","reference":"x","id":"k"}"#,
        r#"{"prompt":"p","responses":["x","y","z"]}"#,
    ]
    .join("\n");
    let mut judge = KnownJudge::with_strengths(&[("x", 1.0), ("y", 0.0), ("z", -2.0)]);
    let out = reward_rows(
        &mut judge,
        &rows(&input),
        ReferenceChoice::First,
        Scale::LogOdds,
    )
    .unwrap();
    assert_eq!(
        judge.batch_sizes(),
        vec![4],
        "2 single rows + 2 non-identical group pairs"
    );
    assert!((out[0]["reward"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!((out[1]["reward"].as_f64().unwrap() + 1.0).abs() < 1e-9);
    assert_eq!(out[1]["id"], "k");
    let group: Vec<f64> = out[2]["rewards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (got, want) in group.iter().zip([0.0, -1.0, -3.0]) {
        assert!((got - want).abs() < 1e-9, "{group:?}");
    }
}

#[test]
fn group_references_greedy_longest_and_round_robin() {
    let strengths = [("short", 0.5), ("longest one", 0.0), ("greedy", 1.0)];
    let row = r#"{"prompt":"p","responses":["short","longest one"],"greedy":"greedy"}"#;
    let run = |reference| {
        let mut judge = KnownJudge::with_strengths(&strengths);
        let out = reward_rows(&mut judge, &rows(row), reference, Scale::LogOdds).unwrap();
        out[0]["rewards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect::<Vec<f64>>()
    };
    let close = |got: Vec<f64>, want: [f64; 2]| {
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-5),
            "{got:?} vs {want:?}"
        );
    };
    close(run(ReferenceChoice::GreedyField), [-0.5, -1.0]);
    close(run(ReferenceChoice::Longest), [0.5, 0.0]);
    // Round-robin: centred strengths (0.25, −0.25), reported as log-odds σ⁻¹(σ(s)) = s.
    close(run(ReferenceChoice::RoundRobin), [0.25, -0.25]);

    let mut judge = KnownJudge::default();
    let no_greedy = rows(r#"{"prompt":"p","responses":["a"]}"#);
    let err = reward_rows(
        &mut judge,
        &no_greedy,
        ReferenceChoice::GreedyField,
        Scale::Probability,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "in.jsonl:1: field `greedy`: is missing");
    let no_reference = rows(r#"{"prompt":"p","response":"a"}"#);
    let err = reward_rows(
        &mut judge,
        &no_reference,
        ReferenceChoice::First,
        Scale::Probability,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "in.jsonl:1: field `reference`: is missing");
}

/// The dense Newton fit `bradley_terry` used before it went matrix-free: the n×n negated
/// Hessian, Cholesky-factored each iteration. The reference for the comparison below.
fn dense_newton_bradley_terry(n: usize, outcomes: &[(usize, usize, f64)]) -> Vec<f64> {
    let lambda = BT_PRIOR_PRECISION;
    let log_sigmoid = |x: f64| {
        if x >= 0.0 {
            -(-x).exp().ln_1p()
        } else {
            x - x.exp().ln_1p()
        }
    };
    let objective = |s: &[f64]| -> f64 {
        let fit: f64 = outcomes
            .iter()
            .map(|&(i, j, p)| {
                let d = s[i] - s[j];
                p * log_sigmoid(d) + (1.0 - p) * log_sigmoid(-d)
            })
            .sum();
        fit - 0.5 * lambda * s.iter().map(|x| x * x).sum::<f64>()
    };
    let mut s = vec![0.0; n];
    for _ in 0..200 {
        let mut g: Vec<f64> = s.iter().map(|x| -lambda * x).collect();
        let mut h = vec![vec![0.0; n]; n];
        for (k, row) in h.iter_mut().enumerate() {
            row[k] = lambda;
        }
        for &(i, j, p) in outcomes {
            let q = sigmoid(s[i] - s[j]);
            g[i] += p - q;
            g[j] -= p - q;
            let w = q * (1.0 - q);
            h[i][i] += w;
            h[j][j] += w;
            h[i][j] -= w;
            h[j][i] -= w;
        }
        // Cholesky solve of h · step = g.
        let mut a = h;
        let mut b = g;
        for j in 0..n {
            let diagonal = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
            a[j][j] = diagonal.max(f64::MIN_POSITIVE).sqrt();
            for i in j + 1..n {
                let dot: f64 = (0..j).map(|k| a[i][k] * a[j][k]).sum();
                a[i][j] = (a[i][j] - dot) / a[j][j];
            }
        }
        for i in 0..n {
            b[i] = (b[i] - (0..i).map(|k| a[i][k] * b[k]).sum::<f64>()) / a[i][i];
        }
        for i in (0..n).rev() {
            b[i] = (b[i] - (i + 1..n).map(|k| a[k][i] * b[k]).sum::<f64>()) / a[i][i];
        }
        let step = b;
        let current = objective(&s);
        let mut scale = 1.0;
        let mut next: Vec<f64> = s.iter().zip(&step).map(|(x, d)| x + d).collect();
        while objective(&next) < current && scale > 1e-10 {
            scale *= 0.5;
            next = s.iter().zip(&step).map(|(x, d)| x + scale * d).collect();
        }
        let moved = step.iter().map(|d| (scale * d).abs()).fold(0.0, f64::max);
        s = next;
        if moved < 1e-12 {
            break;
        }
    }
    let mean = s.iter().sum::<f64>() / n.max(1) as f64;
    s.iter().map(|x| x - mean).collect()
}

#[test]
fn matrix_free_bradley_terry_matches_the_dense_newton_fit() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut worst: f64 = 0.0;
    for trial in 0..60 {
        let n = rng.random_range(2..25);
        // Sparse random graphs (often disconnected), trees and complete graphs; soft outcomes
        // with now and then a certain win or an exact tie.
        let graph: Vec<(usize, usize)> = match trial % 3 {
            0 => (0..rng.random_range(1..3 * n))
                .filter_map(|_| {
                    let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
                    (i != j).then_some((i, j))
                })
                .collect(),
            1 => (1..n).map(|j| (rng.random_range(0..j), j)).collect(),
            _ => (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .collect(),
        };
        let outcomes: Vec<(usize, usize, f64)> = graph
            .into_iter()
            .map(|(i, j)| {
                let p = match rng.random_range(0..20) {
                    0 => 1.0,
                    1 => 0.0,
                    2 => 0.5,
                    _ => rng.random_range(0.02..0.98),
                };
                (i, j, p)
            })
            .collect();
        let sparse = bradley_terry(n, &outcomes);
        let dense = dense_newton_bradley_terry(n, &outcomes);
        for (a, b) in sparse.iter().zip(&dense) {
            worst = worst.max((a - b).abs());
            assert!(
                (a - b).abs() < 1e-6,
                "trial {trial}, n {n}: {sparse:?} vs {dense:?}"
            );
        }
    }
    eprintln!("largest difference from the dense Newton fit: {worst:e}");
}

#[test]
fn linear_ranks_five_thousand_responses_and_round_robin_refuses_them() {
    let n = 5_000;
    let responses: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let strengths: Vec<(String, f64)> = responses
        .iter()
        .map(|r| (r.clone(), rng.random_range(-3.0..3.0)))
        .collect();
    let mut judge = KnownJudge {
        strength: strengths.iter().cloned().collect(),
        ..Default::default()
    };
    let limits = Limits {
        max_responses: n,
        ..Limits::default()
    };
    let rankings = rank_many_with(
        &mut judge,
        &[("q", responses.as_slice())],
        Strategy::Linear,
        &limits,
    )
    .unwrap();
    let ranking = &rankings[0];
    let strongest = (0..n)
        .max_by(|&a, &b| strengths[a].1.total_cmp(&strengths[b].1))
        .unwrap();
    assert_eq!(ranking.best, strongest);
    assert_eq!(ranking.comparisons, n - 1);
    assert_eq!(ranking.scores.len(), n);
    // The comparisons form a tree, so each edge's score difference is the judge's log-odds
    // (up to the weak prior's pull towards 0).
    let best = ranking.best;
    for (k, pair) in judge.calls.iter().flatten().enumerate().take(50) {
        let (a, b) = (
            pair.response_a[1..].parse::<usize>().unwrap(),
            pair.response_b[1..].parse::<usize>().unwrap(),
        );
        let want = strengths[a].1 - strengths[b].1;
        let got = ranking.scores[a] - ranking.scores[b];
        assert!((got - want).abs() < 1e-2, "comparison {k}: {got} vs {want}");
    }
    assert!(ranking.scores[best] >= ranking.scores.iter().copied().fold(f64::MIN, f64::max) - 1e-9);

    // Round-robin would be 12,497,500 comparisons: refused up front, naming the row and limit.
    let mut judge = KnownJudge::default();
    let err = rank_many(
        &mut judge,
        &[("q", responses.as_slice())],
        Strategy::RoundRobin,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("row 1") && err.contains("limit of 64"),
        "{err}"
    );
    assert!(judge.calls.is_empty());
    // Linear within the default limits refuses 5,000 too (1,024 per row).
    let err = rank_many(&mut judge, &[("q", responses.as_slice())], Strategy::Linear)
        .unwrap_err()
        .to_string();
    assert!(err.contains("limit of 1024"), "{err}");
}

#[test]
fn limits_name_the_row_and_the_limit() {
    let mut judge = KnownJudge::default();
    let many: Vec<String> = (0..65).map(|i| format!("r{i}")).collect();
    let text = format!(
        "{{\"prompt\":\"q\",\"responses\":[\"a\",\"b\"]}}\n{}\n",
        serde_json::json!({"prompt": "q", "responses": many})
    );
    let rows = read_rows(Path::new("in.jsonl"), &text).unwrap();
    let err = rank_rows(&mut judge, &rows, Strategy::RoundRobin)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("in.jsonl:2: field `responses`:"), "{err}");
    assert!(
        err.contains("65 responses") && err.contains("limit of 64"),
        "{err}"
    );
    // Linear allows them; a comparison limit of 10 does not (1 + 64 comparisons).
    assert!(rank_rows(&mut judge, &rows, Strategy::Linear).is_ok());
    let tight = Limits {
        max_comparisons: 10,
        ..Limits::default()
    };
    let err = rank_rows_with(&mut judge, &rows, Strategy::Linear, &tight)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("65 comparisons") && err.contains("limit of 10"),
        "{err}"
    );
    // The same limit for reward rows, and `with_max_responses` lifts both response limits.
    let err = reward_rows(
        &mut judge,
        &rows,
        ReferenceChoice::RoundRobin,
        Scale::LogOdds,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("in.jsonl:2: field `responses`:"), "{err}");
    let group = Group {
        prompt: "q".into(),
        responses: many.clone(),
        baseline: Baseline::RoundRobin,
    };
    let err = group_rewards(&mut judge, std::slice::from_ref(&group), Scale::LogOdds)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("group 1") && err.contains("limit of 64"),
        "{err}"
    );
    let wide = Limits::default().with_max_responses(65);
    let rewards = group_rewards_with(&mut judge, &[group], Scale::LogOdds, &wide).unwrap();
    assert_eq!(rewards[0].len(), 65);
}
