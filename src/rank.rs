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

impl Strategy {
    /// The comparisons ranking `n` responses takes: n − 1, or n(n − 1)/2 for round-robin
    /// (saturating; only compared against limits).
    pub fn comparisons(self, n: usize) -> usize {
        match self {
            Strategy::Linear | Strategy::Knockout => n.saturating_sub(1),
            Strategy::RoundRobin => round_robin_comparisons(n),
        }
    }
}

/// n(n − 1)/2, saturating at `usize::MAX`.
pub fn round_robin_comparisons(n: usize) -> usize {
    let n = n as u128;
    usize::try_from(n * n.saturating_sub(1) / 2).unwrap_or(usize::MAX)
}

/// Bounds on the work one ranking or reward call may ask for. They are checked before any
/// comparison list is built or any pair judged, so an oversized request is a clear error
/// instead of an allocation failure or hours of judging.
///
/// | limit | default | why |
/// |---|---|---|
/// | [`max_responses`](Self::max_responses) | 1,024 | responses in one row ranked `linear` or `knockout` (n − 1 comparisons), or rewarded against a reference (n) |
/// | [`max_round_robin_responses`](Self::max_round_robin_responses) | 64 | responses in one row ranked `round-robin` or rewarded round-robin: n(n − 1)/2 comparisons, 2,016 at 64 |
/// | [`max_comparisons`](Self::max_comparisons) | 65,536 | comparisons of all rows of one call together (a request, or one `--rows-per-call` chunk); each is two forward passes |
///
/// `gram rank` and `gram reward` set them with `--max-responses` (both response limits) and
/// `--max-comparisons`; `gram serve` takes them in [`crate::serve::ServeConfig::ranking`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most responses in one row ranked `linear` or `knockout`, or rewarded against a
    /// reference. Default 1,024.
    pub max_responses: usize,
    /// Most responses in one row ranked or rewarded round-robin. Default 64 (2,016 comparisons).
    pub max_round_robin_responses: usize,
    /// Most comparisons in one call, all rows together. Default 65,536.
    pub max_comparisons: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_responses: 1024,
            max_round_robin_responses: 64,
            max_comparisons: 65_536,
        }
    }
}

impl Limits {
    /// These limits with both response limits (any strategy) set to `max_responses`.
    pub fn with_max_responses(self, max_responses: usize) -> Limits {
        Limits {
            max_responses,
            max_round_robin_responses: max_responses,
            ..self
        }
    }

    /// The most responses a row may hold when ranked with `strategy`.
    pub fn responses_for(&self, strategy: Strategy) -> usize {
        match strategy {
            Strategy::RoundRobin => self.max_round_robin_responses,
            Strategy::Linear | Strategy::Knockout => self.max_responses,
        }
    }

    /// Why a row of `n` responses cannot be ranked with `strategy`, if it cannot.
    pub(crate) fn check_row(
        &self,
        n: usize,
        strategy: Strategy,
    ) -> std::result::Result<(), String> {
        let limit = self.responses_for(strategy);
        if n <= limit {
            return Ok(());
        }
        let name = match strategy {
            Strategy::Linear => "linear",
            Strategy::Knockout => "knockout",
            Strategy::RoundRobin => "round-robin",
        };
        let extra = if strategy == Strategy::RoundRobin {
            format!(
                " ({} comparisons; `linear` and `knockout` allow up to {})",
                round_robin_comparisons(n),
                self.max_responses
            )
        } else {
            String::new()
        };
        Err(format!(
            "{n} responses exceed the limit of {limit} responses per row for {name} ranking{extra} \
             (--max-responses)"
        ))
    }

    /// An error if `counts` (comparisons per row) add up to more than `max_comparisons`.
    pub(crate) fn check_comparisons(&self, counts: impl IntoIterator<Item = usize>) -> Result<()> {
        let total = counts.into_iter().fold(0usize, usize::saturating_add);
        if total > self.max_comparisons {
            return Err(Error::invalid(format!(
                "these rows ask for {total} comparisons together, over the limit of {} per call \
                 (--max-comparisons); send fewer rows or responses at a time",
                self.max_comparisons
            )));
        }
        Ok(())
    }
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
/// Within the default [`Limits`].
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
/// Within the default [`Limits`] (see [`rank_many_with`]).
pub fn rank_many(
    judge: &mut dyn Judge,
    rows: &[(&str, &[String])],
    strategy: Strategy,
) -> Result<Vec<Ranking>> {
    rank_many_with(judge, rows, strategy, &Limits::default())
}

/// [`rank_many`] within `limits`: a row with more responses than the strategy's limit, or rows
/// asking for more comparisons together than `limits.max_comparisons`, are refused (naming the
/// row, counting from 1, and the limit) before anything is judged.
pub fn rank_many_with(
    judge: &mut dyn Judge,
    rows: &[(&str, &[String])],
    strategy: Strategy,
    limits: &Limits,
) -> Result<Vec<Ranking>> {
    if let Some(row) = rows.iter().position(|(_, responses)| responses.is_empty()) {
        return Err(Error::invalid(format!(
            "row {}: cannot rank zero responses",
            row + 1
        )));
    }
    for (row, (_, responses)) in rows.iter().enumerate() {
        limits
            .check_row(responses.len(), strategy)
            .map_err(|message| Error::invalid(format!("row {}: {message}", row + 1)))?;
    }
    limits.check_comparisons(
        rows.iter()
            .map(|(_, responses)| strategy.comparisons(responses.len())),
    )?;
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
///
/// ```text
/// F(s) = Σₖ [pₖ·ln σ(sᵢ − sⱼ) + (1 − pₖ)·ln σ(sⱼ − sᵢ)] − λ/2·Σᵢ sᵢ²     (λ = BT_PRIOR_PRECISION)
/// ```
///
/// F is strictly concave (the prior makes it so even where the data leave strengths free), so
/// it has one maximiser. Returns log-strengths (natural log) centred at 0.
///
/// **Method: truncated Newton (Newton–conjugate-gradient), O(n + m) memory for n responses and
/// m comparisons.** With qₖ = σ(sᵢ − sⱼ) and wₖ = qₖ(1 − qₖ):
///
/// ```text
/// gradient    gᵢ = −λ sᵢ + Σ_{k: i first} (pₖ − qₖ) − Σ_{k: i second} (pₖ − qₖ)
/// −Hessian    H  = λI + Σₖ wₖ (eᵢ − eⱼ)(eᵢ − eⱼ)ᵀ        (a weighted graph Laplacian plus λI)
/// ```
///
/// H is never formed: `H·x` is one pass over the comparisons (`(H x)ᵢ = λxᵢ + Σₖ wₖ (xᵢ − xⱼ)`,
/// and the same with i and j swapped), and the Newton step d = H⁻¹g is solved by conjugate
/// gradients preconditioned with H's diagonal (λ + Σ of the weights at each response) to a
/// residual of 10⁻¹² · |g|. Each CG iteration costs O(n + m); in exact arithmetic CG ends in
/// at most n iterations, and on the graphs ranking makes (a tree for linear and knockout, a
/// complete graph for round-robin) it needs far fewer. The step is halved until F does not
/// decrease, as before, so every iteration is an ascent step and the method converges to the
/// same optimum as the dense Newton fit it replaces (that fit built the n×n matrix H and
/// Cholesky-factored it: O(n²) memory, O(n³) time; `tests/rank.rs` keeps it as the reference
/// and checks agreement to 10⁻⁶ on random outcomes).
///
/// Why not Hunter's minorise–maximise (MM) iteration? Its surrogate for this F is separable
/// and O(m) per step — with γ = eˢ, −ln(γᵢ + γⱼ) ≥ const − (γᵢ + γⱼ)/(γᵢᵗ + γⱼᵗ), so each sᵢ
/// maximises Wᵢ sᵢ − Dᵢ e^{sᵢ} − λ sᵢ²/2 (Wᵢ its soft wins, Dᵢ = Σ 1/(γᵢᵗ + γⱼᵗ) over its
/// comparisons), a one-dimensional concave problem — but it converges linearly, at a rate set
/// by the ratio of F's curvature to the surrogate's. Where wins are certain (p = 1, only the
/// prior holds strengths finite) that ratio is about λ = 10⁻⁶, and on a long chain of
/// comparisons (a linear ranking where every challenger wins) it is O(1/n²): millions of
/// iterations to agree with Newton to 10⁻⁶. Newton–CG keeps Newton's quadratic convergence at
/// MM's cost per iteration.
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
    let mut weights = vec![0.0; outcomes.len()];
    for _ in 0..200 {
        // Gradient g, and the comparison weights and diagonal of the negated Hessian H.
        let mut g: Vec<f64> = s.iter().map(|x| -lambda * x).collect();
        let mut diagonal = vec![lambda; n];
        for (&(i, j, p), w) in outcomes.iter().zip(weights.iter_mut()) {
            let q = crate::pair::sigmoid(s[i] - s[j]);
            g[i] += p - q;
            g[j] -= p - q;
            *w = q * (1.0 - q);
            diagonal[i] += *w;
            diagonal[j] += *w;
        }
        let hessian = LaplacianPlusDiagonal {
            outcomes,
            weights: &weights,
            diagonal: &diagonal,
        };
        let step = hessian.solve(&g);
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

/// The negated Bradley–Terry Hessian `diag(diagonal) − Σₖ wₖ (eᵢ eⱼᵀ + eⱼ eᵢᵀ)`, held as the
/// comparisons and their weights: O(n + m) memory, never an n×n matrix.
struct LaplacianPlusDiagonal<'a> {
    outcomes: &'a [(usize, usize, f64)],
    weights: &'a [f64],
    diagonal: &'a [f64],
}

impl LaplacianPlusDiagonal<'_> {
    /// `y = H x`, one pass over the comparisons.
    fn apply(&self, x: &[f64], y: &mut [f64]) {
        for ((y, d), x) in y.iter_mut().zip(self.diagonal).zip(x) {
            *y = d * x;
        }
        for (&(i, j, _), w) in self.outcomes.iter().zip(self.weights) {
            y[i] -= w * x[j];
            y[j] -= w * x[i];
        }
    }

    /// Solve `H x = b` by conjugate gradients preconditioned with the diagonal (H is symmetric
    /// positive definite: a Laplacian with non-negative weights plus λI).
    fn solve(&self, b: &[f64]) -> Vec<f64> {
        let n = b.len();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let mut x = vec![0.0; n];
        let mut r = b.to_vec();
        let tolerance = 1e-24 * dot(b, b);
        let mut z: Vec<f64> = r.iter().zip(self.diagonal).map(|(r, d)| r / d).collect();
        let mut p = z.clone();
        let mut hp = vec![0.0; n];
        let mut rz = dot(&r, &z);
        // Exact arithmetic needs at most n iterations; allow for rounding.
        for _ in 0..2 * n + 20 {
            if dot(&r, &r) <= tolerance {
                break;
            }
            self.apply(&p, &mut hp);
            let curvature = dot(&p, &hp);
            if !(curvature > 0.0 && rz > 0.0) {
                break;
            }
            let alpha = rz / curvature;
            for k in 0..n {
                x[k] += alpha * p[k];
                r[k] -= alpha * hp[k];
            }
            for k in 0..n {
                z[k] = r[k] / self.diagonal[k];
            }
            let rz_next = dot(&r, &z);
            let beta = rz_next / rz;
            rz = rz_next;
            for k in 0..n {
                p[k] = z[k] + beta * p[k];
            }
        }
        x
    }
}

/// Rank rows `{"prompt", "responses": [...]}` (other fields pass through) in lockstep, within
/// the default [`Limits`] (see [`rank_rows_with`]).
///
/// Each output row is its input row plus `best`, `order`, `scores`, `comparisons`,
/// `forward_passes` (see [`Ranking`]). Errors name a bad row by its [`Row::location`].
pub fn rank_rows(
    judge: &mut dyn Judge,
    rows: &[Row],
    strategy: Strategy,
) -> Result<Vec<Map<String, Value>>> {
    rank_rows_with(judge, rows, strategy, &Limits::default())
}

/// [`rank_rows`] within `limits`: a row over the response limit is refused with an error naming
/// its location and the limit, before anything is judged.
pub fn rank_rows_with(
    judge: &mut dyn Judge,
    rows: &[Row],
    strategy: Strategy,
    limits: &Limits,
) -> Result<Vec<Map<String, Value>>> {
    let mut parsed = Vec::with_capacity(rows.len());
    for row in rows {
        let responses = row.responses("responses")?;
        if responses.is_empty() {
            return Err(row.location.error(Some("responses"), "is empty"));
        }
        limits
            .check_row(responses.len(), strategy)
            .map_err(|message| row.location.error(Some("responses"), message))?;
        parsed.push((row.prompt("prompt")?, responses));
    }
    let views: Vec<(&str, &[String])> = parsed
        .iter()
        .map(|(prompt, responses)| (prompt.as_str(), responses.as_slice()))
        .collect();
    let rankings = rank_many_with(judge, &views, strategy, limits)?;
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
