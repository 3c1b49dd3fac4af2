//! The unit of judging: a prompt and two responses, and the verdict on them.

use serde::{Deserialize, Serialize};

/// A prompt `x` and two candidate responses `y_a`, `y_b`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub prompt: String,
    pub response_a: String,
    pub response_b: String,
}

impl Pair {
    pub fn new(prompt: impl Into<String>, a: impl Into<String>, b: impl Into<String>) -> Self {
        Pair {
            prompt: prompt.into(),
            response_a: a.into(),
            response_b: b.into(),
        }
    }

    /// The same pair with the two responses swapped.
    pub fn swapped(&self) -> Pair {
        Pair {
            prompt: self.prompt.clone(),
            response_a: self.response_b.clone(),
            response_b: self.response_a.clone(),
        }
    }
}

/// A labeled pair: which response people preferred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preference {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

impl Preference {
    /// The pair with `chosen` as response A.
    pub fn as_pair(&self) -> Pair {
        Pair::new(
            self.prompt.clone(),
            self.chosen.clone(),
            self.rejected.clone(),
        )
    }
}

/// The judge's verdict on a pair, position bias cancelled by scoring both orders.
///
/// With `p_fwd = softmax(z_A, z_B)` for the pair as given and `p_rev` for the swapped pair,
/// `p_a = (p_fwd[A] + p_rev[B]) / 2` is the probability that response A is the better one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `(p_a_forward + p_a_reverse) / 2`.
    pub p_a: f64,
    /// P(A) with the responses in the given order: σ(z_A − z_B).
    pub p_a_forward: f64,
    /// P(A) from the swapped order, i.e. the probability of verdict "B" there: σ(z_B − z_A).
    pub p_a_reverse: f64,
}

impl Verdict {
    /// Combine the verdict-token logit differences of both orders.
    ///
    /// `margin_forward` = z_A − z_B for (a, b); `margin_reverse` = z_A − z_B for (b, a).
    pub fn from_margins(margin_forward: f64, margin_reverse: f64) -> Self {
        let p_a_forward = sigmoid(margin_forward);
        let p_a_reverse = sigmoid(-margin_reverse);
        Verdict {
            p_a: 0.5 * (p_a_forward + p_a_reverse),
            p_a_forward,
            p_a_reverse,
        }
    }

    /// log(p_a / (1 − p_a)): the margin in logits, for use as an RL reward.
    pub fn log_odds(&self) -> f64 {
        let p = self.p_a.clamp(1e-12, 1.0 - 1e-12);
        (p / (1.0 - p)).ln()
    }

    /// Whether the two orders agree on the winner.
    pub fn is_position_consistent(&self) -> bool {
        (self.p_a_forward > 0.5) == (self.p_a_reverse > 0.5)
    }
}

/// A judge scores pairs; the model-backed one is [`crate::judge::GramJudge`], tests use fakes.
pub trait Judge {
    /// The verdict on every pair, in input order.
    fn judge(&mut self, pairs: &[Pair]) -> crate::Result<Vec<Verdict>>;

    /// Judge-input tokens judged so far (both orders), for throughput metrics; `None` if the
    /// judge does not count them.
    fn tokens_judged(&self) -> Option<u64> {
        None
    }
}

/// The logistic function σ(x) = 1 / (1 + e^(−x)), stable for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_averages_both_orders() {
        // forward says A by margin 2, reverse (b,a) says its A (= our b) by margin 1 -> our A loses there.
        let v = Verdict::from_margins(2.0, 1.0);
        assert!((v.p_a_forward - sigmoid(2.0)).abs() < 1e-12);
        assert!((v.p_a_reverse - sigmoid(-1.0)).abs() < 1e-12);
        assert!((v.p_a - 0.5 * (sigmoid(2.0) + sigmoid(-1.0))).abs() < 1e-12);
        assert!(!v.is_position_consistent());
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(800.0) <= 1.0);
    }
}
