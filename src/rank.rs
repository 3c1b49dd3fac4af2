//! Ranking several responses to one prompt with a pairwise judge.
//!
//! A judge answers "is A better than B?" for a [`Pair`]; each answer (a *comparison*) costs two
//! forward passes because the judge scores both orders. Three strategies turn comparisons into
//! a ranking of `n` responses:
//!
//! | strategy | comparisons | judge calls | aggregation |
//! |---|---|---|---|
//! | [`Strategy::Linear`] (the paper's best-of-n) | n − 1 | n − 1 | keep the current best, challenge it with each remaining response |
//! | [`Strategy::Knockout`] | n − 1 | ⌈log₂ n⌉ (one per round) | single-elimination bracket, an odd one out gets a bye |
//! | [`Strategy::RoundRobin`] | n(n − 1)/2 | 1 | Bradley–Terry maximum-likelihood strengths |
//!
//! Every ranking reports per-response *scores*: the Bradley–Terry log-strengths fitted to the
//! comparisons that strategy made ([`bradley_terry`]). For round-robin they decide the order;
//! for linear and knockout the comparisons form a tree and the scores explain the bracket.
//!
//! Many rows can be ranked together ([`rank_many`]): their strategies advance in lockstep so each
//! step's comparisons of all rows reach the judge as one batch.
//!
//! Two identical responses need no judging: with both orders averaged, a judge's verdict on
//! `(y, y)` is exactly ½ (σ(m) and σ(−m) for the same input), so such pairs are answered without
//! forward passes ([`judge_distinct`]).

use crate::data::Row;
use crate::error::parse_choice;
use crate::{Error, Judge, Pair, Result, Verdict};
use serde::Serialize;
use serde_json::{Map, Value};
use std::str::FromStr;

/// How to rank `n` responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Keep the current best and compare it with each remaining response: n − 1 comparisons.
    #[default]
    Linear,
    /// A single-elimination bracket: n − 1 comparisons in ⌈log₂ n⌉ batched rounds.
    Knockout,
    /// Every unordered pair once, aggregated by a Bradley–Terry fit: n(n − 1)/2 comparisons.
    RoundRobin,
}

impl FromStr for Strategy {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let choices = [
            ("linear", Strategy::Linear),
            ("knockout", Strategy::Knockout),
            ("round-robin", Strategy::RoundRobin),
        ];
        parse_choice("ranking strategy", name, &choices)
    }
}

/// The outcome of ranking one prompt's responses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    /// Index of the best response (the strategy's winner).
    pub best: usize,
    /// All indices, best first, then by descending score (ties by index).
    pub order: Vec<usize>,
    /// Bradley–Terry log-strength of each response (natural-log units, centred at 0): the
    /// judge's log-odds that response `i` beats response `j` is `scores[i] − scores[j]`.
    pub scores: Vec<f64>,
    /// Pairs judged (each one is both orders).
    pub comparisons: usize,
    /// Forward passes spent: 2 per comparison of two different responses, 0 for identical ones.
    pub forward_passes: usize,
}

/// Rank `responses` to `prompt`. Errors if there are no responses; one response needs no judging.
pub fn rank(
    judge: &mut dyn Judge,
    prompt: &str,
    responses: &[String],
    strategy: Strategy,
) -> Result<Ranking> {
    let mut rankings = rank_many(judge, &[(prompt, responses)], strategy)?;
    Ok(rankings.remove(0))
}

/// Rank several prompts' responses at once; each step's comparisons of all rows form one batch.
pub fn rank_many(
    judge: &mut dyn Judge,
    rows: &[(&str, &[String])],
    strategy: Strategy,
) -> Result<Vec<Ranking>> {
    if let Some(row) = rows.iter().position(|(_, responses)| responses.is_empty()) {
        return Err(Error::invalid(format!(
            "row {}: cannot rank zero responses",
            row + 1
        )));
    }
    let mut tournaments: Vec<Tournament> = rows
        .iter()
        .map(|(_, responses)| Tournament::new(strategy, responses.len()))
        .collect();
    let mut forward_passes = vec![0; rows.len()];
    loop {
        // Gather every row's next comparisons into one batch, remembering where each came from.
        let mut batch = Vec::new();
        let mut owners = Vec::new();
        for (row, tournament) in tournaments.iter().enumerate() {
            let (prompt, responses) = rows[row];
            for (i, j) in tournament.pending() {
                batch.push(Pair::new(
                    prompt,
                    responses[i].as_str(),
                    responses[j].as_str(),
                ));
                owners.push(row);
            }
        }
        if batch.is_empty() {
            break;
        }
        let (verdicts, passes) = judge_distinct(judge, &batch)?;
        let mut start = 0;
        for (row, tournament) in tournaments.iter_mut().enumerate() {
            let count = owners[start..]
                .iter()
                .take_while(|&&owner| owner == row)
                .count();
            if count > 0 {
                forward_passes[row] += passes[start..start + count].iter().sum::<usize>();
                tournament.record(&verdicts[start..start + count]);
                start += count;
            }
        }
    }
    Ok(tournaments
        .into_iter()
        .zip(forward_passes)
        .map(|(t, passes)| t.finish(passes))
        .collect())
}

/// Judge `pairs`, answering pairs of identical responses with ½ without the judge.
///
/// Returns the verdicts in input order and the forward passes each pair cost (0 or 2).
pub fn judge_distinct(judge: &mut dyn Judge, pairs: &[Pair]) -> Result<(Vec<Verdict>, Vec<usize>)> {
    let distinct: Vec<Pair> = pairs
        .iter()
        .filter(|p| p.response_a != p.response_b)
        .cloned()
        .collect();
    let mut judged = if distinct.is_empty() {
        Vec::new()
    } else {
        judge.judge(&distinct)?
    }
    .into_iter();
    if judged.len() != distinct.len() {
        return Err(Error::invalid(format!(
            "the judge returned {} verdicts for {} pairs",
            judged.len(),
            distinct.len()
        )));
    }
    let tie = Verdict {
        p_a: 0.5,
        p_a_forward: 0.5,
        p_a_reverse: 0.5,
    };
    let mut verdicts = Vec::with_capacity(pairs.len());
    let mut passes = Vec::with_capacity(pairs.len());
    for pair in pairs {
        if pair.response_a == pair.response_b {
            verdicts.push(tie);
            passes.push(0);
        } else {
            verdicts.push(
                judged
                    .next()
                    .expect("one verdict per distinct pair (checked above)"),
            );
            passes.push(2);
        }
    }
    Ok((verdicts, passes))
}

/// Every unordered pair `(i, j)`, `i < j`, of `n` items.
pub fn round_robin_pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect()
}

/// One row's ranking in progress: which comparisons come next, and what was observed.
struct Tournament {
    n: usize,
    state: Progress,
    /// `(i, j, P(i beats j))` for every comparison made.
    outcomes: Vec<(usize, usize, f64)>,
}

enum Progress {
    /// The current best and the next challenger.
    Linear { best: usize, next: usize },
    /// The responses still in the bracket, in bracket order.
    Knockout { alive: Vec<usize> },
    /// Whether the single round of all pairs has been played.
    RoundRobin { played: bool },
}

impl Tournament {
    fn new(strategy: Strategy, n: usize) -> Self {
        let state = match strategy {
            Strategy::Linear => Progress::Linear { best: 0, next: 1 },
            Strategy::Knockout => Progress::Knockout {
                alive: (0..n).collect(),
            },
            Strategy::RoundRobin => Progress::RoundRobin { played: false },
        };
        Tournament {
            n,
            state,
            outcomes: Vec::new(),
        }
    }

    /// The comparisons of the next step (empty once finished).
    fn pending(&self) -> Vec<(usize, usize)> {
        match &self.state {
            Progress::Linear { best, next } if *next < self.n => vec![(*best, *next)],
            Progress::Linear { .. } => Vec::new(),
            // Pair neighbours; with an odd count the last one gets a bye.
            Progress::Knockout { alive } if alive.len() > 1 => {
                alive.chunks_exact(2).map(|c| (c[0], c[1])).collect()
            }
            Progress::Knockout { .. } => Vec::new(),
            Progress::RoundRobin { played: false } => round_robin_pairs(self.n),
            Progress::RoundRobin { played: true } => Vec::new(),
        }
    }

    /// Record the verdicts on [`Self::pending`]'s comparisons, in that order.
    /// A verdict of exactly ½ keeps the earlier response (the incumbent) ahead.
    fn record(&mut self, verdicts: &[Verdict]) {
        let pending = self.pending();
        for (&(i, j), verdict) in pending.iter().zip(verdicts) {
            self.outcomes.push((i, j, verdict.p_a));
        }
        match &mut self.state {
            Progress::Linear { best, next } => {
                if verdicts[0].p_a < 0.5 {
                    *best = *next;
                }
                *next += 1;
            }
            Progress::Knockout { alive } => {
                let mut winners: Vec<usize> = pending
                    .iter()
                    .zip(verdicts)
                    .map(|(&(i, j), v)| if v.p_a >= 0.5 { i } else { j })
                    .collect();
                if alive.len() % 2 == 1 {
                    winners.push(alive[alive.len() - 1]);
                }
                *alive = winners;
            }
            Progress::RoundRobin { played } => *played = true,
        }
    }

    fn finish(self, forward_passes: usize) -> Ranking {
        let scores = bradley_terry(self.n, &self.outcomes);
        let best = match &self.state {
            Progress::Linear { best, .. } => *best,
            Progress::Knockout { alive } => alive[0],
            // Scores within 1e-9 (fit noise) count as tied; the earliest response wins a tie.
            Progress::RoundRobin { .. } => {
                let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (0..self.n)
                    .find(|&i| scores[i] >= top - 1e-9)
                    .expect("n >= 1")
            }
        };
        let mut order: Vec<usize> = (0..self.n).filter(|&i| i != best).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        order.insert(0, best);
        Ranking {
            best,
            order,
            scores,
            comparisons: self.outcomes.len(),
            forward_passes,
        }
    }
}

/// Strength of the symmetric Gaussian prior on log-strengths (precision λ: the objective adds
/// −λ/2 · Σ sᵢ²). Tiny: it only pins down strengths the data leave free (a response that wins
/// every comparison with p = 1, or disconnected groups), moving others by O(λ).
pub const BT_PRIOR_PRECISION: f64 = 1e-6;

/// Bradley–Terry maximum-likelihood log-strengths from soft outcomes.
///
/// Model: P(i beats j) = σ(sᵢ − sⱼ). Each `(i, j, p)` is a comparison in which `i` beat `j`
/// with probability `p` (a judge's averaged verdict, in [0, 1]). Maximises
/// `Σ [p·ln σ(sᵢ − sⱼ) + (1 − p)·ln σ(sⱼ − sᵢ)] − λ/2·Σ sₖ²` (λ = [`BT_PRIOR_PRECISION`]) by
/// Newton's method with step halving; the objective is strictly concave so this converges to the
/// unique optimum. Returns log-strengths (natural log) centred at 0.
///
/// Example: two players with p = 0.75 give s₀ − s₁ = ln 3.
pub fn bradley_terry(n: usize, outcomes: &[(usize, usize, f64)]) -> Vec<f64> {
    let lambda = BT_PRIOR_PRECISION;
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
        // Gradient g and negated Hessian H (a weighted graph Laplacian plus λI).
        let mut g: Vec<f64> = s.iter().map(|x| -lambda * x).collect();
        let mut h = vec![vec![0.0; n]; n];
        for (k, row) in h.iter_mut().enumerate() {
            row[k] = lambda;
        }
        for &(i, j, p) in outcomes {
            let q = crate::pair::sigmoid(s[i] - s[j]);
            g[i] += p - q;
            g[j] -= p - q;
            let w = q * (1.0 - q);
            h[i][i] += w;
            h[j][j] += w;
            h[i][j] -= w;
            h[j][i] -= w;
        }
        let step = solve_positive_definite(h, g);
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

/// ln σ(x), stable for large |x|.
fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// Solve `A x = b` for symmetric positive definite `A` (Cholesky; `n` is a handful of responses).
fn solve_positive_definite(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    // In place: the lower triangle of `a` becomes L with A = L Lᵀ.
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
    b
}

/// Rank rows `{"prompt", "responses": [...]}` (other fields pass through) in lockstep.
///
/// Each output row is its input row plus `best`, `order`, `scores`, `comparisons`,
/// `forward_passes` (see [`Ranking`]). Errors name a bad row by its [`Row::location`].
pub fn rank_rows(
    judge: &mut dyn Judge,
    rows: &[Row],
    strategy: Strategy,
) -> Result<Vec<Map<String, Value>>> {
    let mut parsed = Vec::with_capacity(rows.len());
    for row in rows {
        let responses = row.texts("responses")?;
        if responses.is_empty() {
            return Err(row.location.error(Some("responses"), "is empty"));
        }
        parsed.push((row.text("prompt")?, responses));
    }
    let views: Vec<(&str, &[String])> = parsed
        .iter()
        .map(|(prompt, responses)| (prompt.as_str(), responses.as_slice()))
        .collect();
    let rankings = rank_many(judge, &views, strategy)?;
    Ok(rows
        .iter()
        .zip(rankings)
        .map(|(row, ranking)| {
            let mut out = row.fields.clone();
            if let Value::Object(fields) = serde_json::to_value(ranking).expect("plain numbers") {
                out.extend(fields);
            }
            out
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_players_at_three_to_one_differ_by_ln_3() {
        let s = bradley_terry(2, &[(0, 1, 0.75)]);
        assert!((s[0] - s[1] - 3f64.ln()).abs() < 1e-5, "{s:?}");
        assert!((s[0] + s[1]).abs() < 1e-12, "centred: {s:?}");
    }

    #[test]
    fn chain_of_two_three_to_one_wins() {
        // 0 beats 1 and 1 beats 2, each at p = 0.75, no direct 0-2 game: s = (ln 3, 0, −ln 3).
        let s = bradley_terry(3, &[(0, 1, 0.75), (1, 2, 0.75)]);
        let ln3 = 3f64.ln();
        for (got, want) in s.iter().zip([ln3, 0.0, -ln3]) {
            assert!((got - want).abs() < 1e-5, "{s:?}");
        }
    }

    #[test]
    fn consistent_three_player_round_robin_is_recovered() {
        let truth = [1.0, 0.0, -1.0];
        let outcomes: Vec<_> = round_robin_pairs(3)
            .into_iter()
            .map(|(i, j)| (i, j, crate::pair::sigmoid(truth[i] - truth[j])))
            .collect();
        let s = bradley_terry(3, &outcomes);
        for (got, want) in s.iter().zip(truth) {
            assert!((got - want).abs() < 1e-5, "{s:?}");
        }
    }

    #[test]
    fn certain_wins_stay_finite() {
        let s = bradley_terry(3, &[(0, 1, 1.0), (1, 2, 1.0), (0, 2, 1.0)]);
        assert!(s.iter().all(|x| x.is_finite()), "{s:?}");
        assert!(s[0] > s[1] && s[1] > s[2], "{s:?}");
    }

    #[test]
    fn strategy_names_parse() {
        assert_eq!("knockout".parse::<Strategy>().unwrap(), Strategy::Knockout);
        assert_eq!(
            "round-robin".parse::<Strategy>().unwrap(),
            Strategy::RoundRobin
        );
        assert!("best".parse::<Strategy>().is_err());
    }
}
