//! `POST /get_reward`, OpenRLHF's remote reward-model protocol (described in [`super`]): the
//! request, grouping its queries by label or by prompt, and the rewards in query order. All
//! groups are judged in one call; with `--group-size K` the unlabeled queries instead join the
//! rollout groups gathered across requests ([`super::groups`]).
//!
//! The reply is what OpenRLHF 0.11 reads: `rewards` (log-odds: of beating the label, or the
//! centred Bradley–Terry log-strength in the group), `scores` (the same as a probability,
//! σ(reward), in [0, 1]) and `extra_logs` (per query: `group_size`, the responses ranked
//! together — 1 against a label — and `labeled`, 1 or 0), each a list in query order.

use super::http::{ApiError, ok};
use super::routes::AppState;
use crate::data::{Location, Row};
use crate::reward::{Baseline, Group, Scale, check_group, group_rewards_with};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// OpenRLHF's remote reward-model request: `query[i]` is `prompts[i]` followed by the response,
/// both as the policy's tokenizer decoded them (chat markup and end-of-turn token included,
/// undone here by [`crate::chat_format`]); `labels[i]`, if given and not empty, is a reference
/// response (text or one assistant message).
#[derive(Deserialize)]
struct GetRewardRequest {
    query: Vec<String>,
    prompts: Vec<String>,
    #[serde(default)]
    labels: Option<Vec<Value>>,
}

/// A group to reward and the indices (in `query`) of its responses.
type IndexedGroup = (Group, Vec<usize>);

/// The handler: group the queries, reward every group, answer in query order.
pub(super) async fn get_reward(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: GetRewardRequest = state.parse(body)?;
    let count = request.query.len();
    let mut groups = groups(&state, request)?;
    // With cross-request groups, each unlabeled query joins its prompt's pending group.
    let mut gathered = Vec::new();
    if let Some(gatherer) = state.groups.clone() {
        let (unlabeled, labeled): (Vec<IndexedGroup>, Vec<IndexedGroup>) = groups
            .into_iter()
            .partition(|(group, _)| group.baseline == Baseline::RoundRobin);
        groups = labeled;
        for (group, indices) in unlabeled {
            for (response, index) in group.responses.into_iter().zip(indices) {
                gathered.push((index, gatherer.join(&state, &group.prompt, response)));
            }
        }
    }
    let limits = state.limits.ranking;
    for (group, indices) in &groups {
        check_group(group, &limits).map_err(|message| {
            ApiError::bad_request(format!(
                "query[{}] and the other unlabeled queries of its prompt: {message}",
                indices[0]
            ))
        })?;
    }
    let sizes: Vec<(Vec<usize>, usize, bool)> = groups
        .iter()
        .map(|(group, indices)| {
            let labeled = matches!(group.baseline, Baseline::Reference(_));
            (indices.clone(), group.responses.len(), labeled)
        })
        .collect();
    let rewards = state
        .run_blocking(move |judge| {
            let (groups, indices): (Vec<Group>, Vec<Vec<usize>>) = groups.into_iter().unzip();
            let rewards = group_rewards_with(judge, &groups, Scale::LogOdds, &limits)?;
            Ok(in_query_order(count, &indices, rewards))
        })
        .await?;
    let mut reply = Reply::new(rewards);
    for (indices, size, labeled) in sizes {
        for index in indices {
            reply.group_size[index] = size as f64;
            reply.labeled[index] = f64::from(u8::from(labeled));
        }
    }
    for (index, answer) in gathered {
        let result = answer
            .await
            .map_err(|_| ApiError::from(super::batcher::Failure::Unavailable))??;
        reply.rewards[index] = result.reward;
        reply.group_size[index] = result.group_size as f64;
    }
    Ok(ok(reply.json()))
}

/// Per-query reply fields, in query order.
struct Reply {
    rewards: Vec<f64>,
    group_size: Vec<f64>,
    labeled: Vec<f64>,
}

impl Reply {
    fn new(rewards: Vec<f64>) -> Reply {
        let n = rewards.len();
        Reply {
            rewards,
            group_size: vec![1.0; n],
            labeled: vec![0.0; n],
        }
    }

    /// `{"rewards", "scores", "extra_logs": {"group_size", "labeled"}}`; scores = σ(rewards).
    fn json(self) -> serde_json::Value {
        let scores: Vec<f64> = self
            .rewards
            .iter()
            .map(|&r| crate::pair::sigmoid(r))
            .collect();
        json!({
            "rewards": self.rewards,
            "scores": scores,
            "extra_logs": { "group_size": self.group_size, "labeled": self.labeled },
        })
    }
}

/// Split OpenRLHF queries into groups: each labeled query against its label, the unlabeled ones
/// round-robin with the others of the same prompt. Each group carries the queries' indices.
fn groups(state: &AppState, request: GetRewardRequest) -> Result<Vec<IndexedGroup>, ApiError> {
    let n = request.query.len();
    if request.prompts.len() != n {
        return Err(ApiError::bad_request(format!(
            "`prompts` has {} entries but `query` has {n}",
            request.prompts.len()
        )));
    }
    let labels = request.labels.unwrap_or_else(|| vec![Value::Null; n]);
    if labels.len() != n {
        return Err(ApiError::bad_request(format!(
            "`labels` has {} entries but `query` has {n}",
            labels.len()
        )));
    }
    let mut groups: Vec<IndexedGroup> = Vec::new();
    // The round-robin group of each prompt seen without a label, by its index in `groups`.
    let mut round_robin: HashMap<String, usize> = HashMap::new();
    for (i, ((query, prompt), label)) in request
        .query
        .into_iter()
        .zip(request.prompts)
        .zip(labels)
        .enumerate()
    {
        state.check_length(|| format!("query[{i}]"), &query)?;
        let Sample {
            prompt,
            response,
            label,
        } = Sample::parse(i, &query, prompt, label)?;
        let alone = |prompt, baseline| {
            let group = Group {
                prompt,
                responses: vec![response.clone()],
                baseline,
            };
            (group, vec![i])
        };
        match label {
            Some(label) => {
                state.check_length(|| format!("labels[{i}]"), &label)?;
                groups.push(alone(prompt, Baseline::Reference(label)));
            }
            None => match round_robin.entry(prompt) {
                Entry::Occupied(g) => {
                    let (group, indices) = &mut groups[*g.get()];
                    group.responses.push(response);
                    indices.push(i);
                }
                Entry::Vacant(g) => {
                    let group = alone(g.key().clone(), Baseline::RoundRobin);
                    g.insert(groups.len());
                    groups.push(group);
                }
            },
        }
    }
    Ok(groups)
}

/// One OpenRLHF sample as the judge reads it.
struct Sample {
    /// The prompt's dialogue (its chat markup undone).
    prompt: String,
    /// The query after the prompt, without its trailing end-of-turn strings.
    response: String,
    /// The reference response, when a non-empty label was given.
    label: Option<String>,
}

impl Sample {
    /// Sample `i`: the response is `query` minus `prompt`; all three texts read as data rows
    /// read them ([`Row::prompt`], [`Row::response`]), so errors name `query:N` and the field.
    fn parse(i: usize, query: &str, prompt: String, label: Value) -> Result<Sample, ApiError> {
        let Some(response) = query.strip_prefix(prompt.as_str()) else {
            return Err(ApiError::bad_request(format!(
                "query[{i}] does not start with prompts[{i}]"
            )));
        };
        let mut fields = Map::new();
        fields.insert("prompts".into(), Value::String(prompt.clone()));
        fields.insert("response".into(), Value::String(response.to_owned()));
        fields.insert("labels".into(), label);
        let row = Row::new(Location::request("query", i), fields);
        let bad = |e: crate::Error| ApiError::bad_request(e.to_string());
        let label = match &row.fields["labels"] {
            Value::Null => None,
            Value::String(text) if text.is_empty() => None,
            _ => Some(row.response("labels").map_err(bad)?),
        };
        Ok(Sample {
            prompt: row.prompt("prompts").map_err(bad)?,
            response: row.response("response").map_err(bad)?,
            label,
        })
    }
}

/// Scatter each group's rewards back to its queries' positions.
fn in_query_order(count: usize, indices: &[Vec<usize>], rewards: Vec<Vec<f64>>) -> Vec<f64> {
    let mut flat = vec![0.0; count];
    for (group_indices, rewards_of_group) in indices.iter().zip(rewards) {
        for (&index, reward) in group_indices.iter().zip(rewards_of_group) {
            flat[index] = reward;
        }
    }
    flat
}
