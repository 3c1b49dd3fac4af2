//! Scalar rewards for reinforcement learning from a pairwise judge.
//!
//! A response's reward is how much it beats a *baseline*: p = P(response ≻ reference), the
//! judge's verdict with both orders averaged, reported on one of three [`Scale`]s. Without a
//! reference, a group of responses to the same prompt is scored relative to itself: against
//! one of its members ([`ReferenceChoice`]) or by a round-robin Bradley–Terry fit, whose
//! centred log-strength sᵢ gives p = σ(sᵢ), the probability of beating the group's average
//! response.
//!
//! All groups' pairs go to the judge in one call ([`group_rewards`]).

use crate::data::Row;
use crate::error::parse_choice;
use crate::rank::{Limits, Strategy, bradley_terry, judge_distinct, round_robin_pairs};
use crate::{Error, Judge, Pair, Result};
use serde_json::{Map, Value};
use std::str::FromStr;

/// How a win probability p is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// p itself, in [0, 1].
    Probability,
    /// ln(p / (1 − p)), in logits (p clamped to [1e−12, 1 − 1e−12]); 0 = a tie.
    #[default]
    LogOdds,
    /// p − ½, in [−½, ½].
    Centered,
}

impl Scale {
    /// Report win probability `p` on this scale.
    pub fn apply(self, p: f64) -> f64 {
        match self {
            Scale::Probability => p,
            Scale::LogOdds => {
                let p = p.clamp(1e-12, 1.0 - 1e-12);
                (p / (1.0 - p)).ln()
            }
            Scale::Centered => p - 0.5,
        }
    }
}

impl FromStr for Scale {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let choices = [
            ("probability", Scale::Probability),
            ("log-odds", Scale::LogOdds),
            ("centered", Scale::Centered),
        ];
        parse_choice("reward scale", name, &choices)
    }
}

/// Which baseline a group of responses without a reference is scored against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReferenceChoice {
    /// The group's first response (which therefore scores p = ½).
    #[default]
    First,
    /// The row's `greedy` field (e.g. the greedy-decoded response).
    GreedyField,
    /// The group's longest response in characters (the first of equally long ones).
    Longest,
    /// No single reference: round-robin Bradley–Terry strengths within the group.
    RoundRobin,
}

impl FromStr for ReferenceChoice {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        let choices = [
            ("first", ReferenceChoice::First),
            ("greedy-field", ReferenceChoice::GreedyField),
            ("longest", ReferenceChoice::Longest),
            ("round-robin", ReferenceChoice::RoundRobin),
        ];
        parse_choice("reference", name, &choices)
    }
}

/// What a group's responses are measured against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// A fixed reference response: p = P(response ≻ reference).
    Reference(String),
    /// The group itself: p = σ(sᵢ) from a round-robin Bradley–Terry fit (sᵢ centred at 0).
    RoundRobin,
}

/// Responses to one prompt and the baseline they are rewarded against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub prompt: String,
    pub responses: Vec<String>,
    pub baseline: Baseline,
}

/// The reward of every response of every group, with all pairs judged in one call, within the
/// default [`Limits`] (see [`group_rewards_with`]).
///
/// A response identical to its reference gets p = ½ without judging.
pub fn group_rewards(
    judge: &mut dyn Judge,
    groups: &[Group],
    scale: Scale,
) -> Result<Vec<Vec<f64>>> {
    group_rewards_with(judge, groups, scale, &Limits::default())
}

/// [`group_rewards`] within `limits`: a group against a reference may hold
/// `limits.max_responses` responses, a round-robin group `limits.max_round_robin_responses`,
/// and all groups together may ask for `limits.max_comparisons` comparisons; beyond that an
/// error names the group (counting from 1) and the limit before anything is judged.
pub fn group_rewards_with(
    judge: &mut dyn Judge,
    groups: &[Group],
    scale: Scale,
    limits: &Limits,
) -> Result<Vec<Vec<f64>>> {
    for (index, group) in groups.iter().enumerate() {
        check_group(group, limits)
            .map_err(|message| Error::invalid(format!("group {}: {message}", index + 1)))?;
    }
    limits.check_comparisons(groups.iter().map(comparisons))?;
    let mut pairs = Vec::new();
    for group in groups {
        match &group.baseline {
            Baseline::Reference(reference) => pairs.extend(
                group
                    .responses
                    .iter()
                    .map(|r| Pair::new(&group.prompt, r.as_str(), reference.as_str())),
            ),
            Baseline::RoundRobin => pairs.extend(
                round_robin_pairs(group.responses.len())
                    .into_iter()
                    .map(|(i, j)| {
                        Pair::new(
                            &group.prompt,
                            group.responses[i].as_str(),
                            group.responses[j].as_str(),
                        )
                    }),
            ),
        }
    }
    let (verdicts, _) = judge_distinct(judge, &pairs)?;
    let mut verdicts = verdicts.into_iter();
    let mut rewards = Vec::with_capacity(groups.len());
    for group in groups {
        let n = group.responses.len();
        let win_probabilities: Vec<f64> = match &group.baseline {
            Baseline::Reference(_) => verdicts.by_ref().take(n).map(|v| v.p_a).collect(),
            Baseline::RoundRobin => {
                let outcomes: Vec<(usize, usize, f64)> = round_robin_pairs(n)
                    .into_iter()
                    .zip(verdicts.by_ref())
                    .map(|((i, j), v)| (i, j, v.p_a))
                    .collect();
                bradley_terry(n, &outcomes)
                    .into_iter()
                    .map(crate::pair::sigmoid)
                    .collect()
            }
        };
        rewards.push(
            win_probabilities
                .into_iter()
                .map(|p| scale.apply(p))
                .collect(),
        );
    }
    Ok(rewards)
}

/// Reward rows, in one judge call, within the default [`Limits`] (see [`reward_rows_with`]).
///
/// A row `{"prompt", "response", "reference"}` gains `reward`; a row `{"prompt", "responses":
/// [...]}` (no reference) gains `rewards`, scored against the baseline `reference` picks. Other
/// fields pass through. Errors name a bad row by its [`Row::location`].
pub fn reward_rows(
    judge: &mut dyn Judge,
    rows: &[Row],
    reference: ReferenceChoice,
    scale: Scale,
) -> Result<Vec<Map<String, Value>>> {
    reward_rows_with(judge, rows, reference, scale, &Limits::default())
}

/// [`reward_rows`] within `limits` (see [`group_rewards_with`]); a row over a response limit is
/// named by its location.
pub fn reward_rows_with(
    judge: &mut dyn Judge,
    rows: &[Row],
    reference: ReferenceChoice,
    scale: Scale,
    limits: &Limits,
) -> Result<Vec<Map<String, Value>>> {
    let groups = rows
        .iter()
        .map(|row| {
            let group = row_group(row, reference)?;
            check_group(&group, limits)
                .map_err(|message| row.location.error(Some("responses"), message))?;
            Ok(group)
        })
        .collect::<Result<Vec<_>>>()?;
    let rewards = group_rewards_with(judge, &groups, scale, limits)?;
    Ok(rows
        .iter()
        .zip(rewards)
        .map(|(row, mut rewards)| {
            let mut out = row.fields.clone();
            if row.fields.contains_key("responses") {
                out.insert("rewards".into(), rewards.into());
            } else {
                out.insert("reward".into(), rewards.remove(0).into());
            }
            out
        })
        .collect())
}

/// The comparisons rewarding `group` takes: one per response against a reference, n(n − 1)/2
/// round-robin.
fn comparisons(group: &Group) -> usize {
    match group.baseline {
        Baseline::Reference(_) => group.responses.len(),
        Baseline::RoundRobin => Strategy::RoundRobin.comparisons(group.responses.len()),
    }
}

/// Why `group` is over a response limit, if it is.
pub(crate) fn check_group(group: &Group, limits: &Limits) -> std::result::Result<(), String> {
    let n = group.responses.len();
    match group.baseline {
        Baseline::Reference(_) if n > limits.max_responses => Err(format!(
            "{n} responses exceed the limit of {} responses per group (--max-responses)",
            limits.max_responses
        )),
        Baseline::Reference(_) => Ok(()),
        Baseline::RoundRobin => limits.check_row(n, Strategy::RoundRobin),
    }
}

/// The group a row describes: a single response with its reference, or a group of responses.
fn row_group(row: &Row, reference: ReferenceChoice) -> Result<Group> {
    let prompt = row.prompt("prompt")?;
    if !row.fields.contains_key("responses") {
        return Ok(Group {
            prompt,
            responses: vec![row.response("response")?],
            baseline: Baseline::Reference(row.response("reference")?),
        });
    }
    let responses = row.responses("responses")?;
    if responses.is_empty() {
        return Err(row.location.error(Some("responses"), "is empty"));
    }
    let baseline = match reference {
        ReferenceChoice::First => Baseline::Reference(responses[0].clone()),
        ReferenceChoice::GreedyField => Baseline::Reference(row.response("greedy")?),
        ReferenceChoice::Longest => {
            let longest = responses
                .iter()
                .enumerate()
                .max_by_key(|(index, r)| (r.chars().count(), std::cmp::Reverse(*index)))
                .map(|(_, r)| r.clone())
                .expect("responses is not empty");
            Baseline::Reference(longest)
        }
        ReferenceChoice::RoundRobin => Baseline::RoundRobin,
    };
    Ok(Group {
        prompt,
        responses,
        baseline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_map_probability() {
        assert_eq!(Scale::Probability.apply(0.75), 0.75);
        assert!((Scale::LogOdds.apply(0.75) - 3f64.ln()).abs() < 1e-12);
        assert_eq!(Scale::Centered.apply(0.75), 0.25);
        assert!(Scale::LogOdds.apply(1.0).is_finite());
        assert!("odds".parse::<Scale>().is_err());
        assert_eq!(
            "greedy-field".parse::<ReferenceChoice>().unwrap(),
            ReferenceChoice::GreedyField
        );
    }
}
