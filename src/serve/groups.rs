//! Rollout groups across requests (`gram serve --group-size K [--group-wait-ms W]`).
//!
//! OpenRLHF sends one sample per `/get_reward` request, so the K rollouts of one prompt that
//! GRPO-style training compares arrive as K separate requests at about the same time. Each
//! unlabeled sample joins the *pending group* of its prompt (the exact prompt text); the group
//! closes when it holds K samples, or W after its first sample arrived, whichever is first, and
//! is then ranked round-robin as one group ([`crate::reward::group_rewards_with`], all pairs
//! judged in both orders in one batched call). Each sample's reward is its centred
//! Bradley–Terry log-strength sᵢ within the group (Σ sᵢ = 0; the log-odds of beating the
//! group's average response), its score σ(sᵢ). A group closed by the wait with one sample gets
//! reward 0 and score ½ without judging. Samples of one prompt beyond K start the next group.

use super::http::ApiError;
use super::routes::AppState;
use crate::reward::{Baseline, Group, Scale, group_rewards_with};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

/// One sample's result from its group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct GroupReward {
    /// The centred Bradley–Terry log-strength (natural log).
    pub reward: f64,
    /// σ(reward): the probability of beating the group's average response.
    pub score: f64,
    /// Samples ranked together.
    pub group_size: usize,
}

type Reply = oneshot::Sender<Result<GroupReward, ApiError>>;

/// A group still gathering samples.
struct Pending {
    /// Distinguishes this group from a later one of the same prompt (for its wait timer).
    id: u64,
    responses: Vec<String>,
    replies: Vec<Reply>,
}

/// The pending groups of every prompt, and when to close them.
pub(super) struct Groups {
    size: usize,
    wait: Duration,
    state: Mutex<(u64, HashMap<String, Pending>)>,
}

impl Groups {
    /// Groups of `size` samples (≥ 2), each closed at the latest `wait` after its first sample.
    pub(super) fn new(size: usize, wait: Duration) -> Groups {
        Groups {
            size,
            wait,
            state: Mutex::new((0, HashMap::new())),
        }
    }

    /// Add `response` to its prompt's pending group; the answer arrives once the group is
    /// ranked. Must be called within the server's tokio runtime (it spawns the ranking and the
    /// wait timer).
    pub(super) fn join(
        &self,
        app: &AppState,
        prompt: &str,
        response: String,
    ) -> oneshot::Receiver<Result<GroupReward, ApiError>> {
        let (reply, answer) = oneshot::channel();
        let mut guard = self
            .state
            .lock()
            .expect("the group table is never poisoned");
        let (next_id, pending) = &mut *guard;
        let group = match pending.entry(prompt.to_owned()) {
            Entry::Occupied(group) => group.into_mut(),
            Entry::Vacant(slot) => {
                *next_id += 1;
                let id = *next_id;
                let (app, prompt, wait) = (app.clone(), prompt.to_owned(), self.wait);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    if let Some(groups) = app.groups.clone() {
                        groups.close(&app, &prompt, Some(id));
                    }
                });
                slot.insert(Pending {
                    id,
                    responses: Vec::new(),
                    replies: Vec::new(),
                })
            }
        };
        group.responses.push(response);
        group.replies.push(reply);
        let full = group.responses.len() >= self.size;
        drop(guard);
        if full {
            self.close(app, prompt, None);
        }
        answer
    }

    /// Take `prompt`'s pending group out (only if it is still group `id`, when given) and rank
    /// it in the background.
    fn close(&self, app: &AppState, prompt: &str, id: Option<u64>) {
        let group = {
            let mut guard = self
                .state
                .lock()
                .expect("the group table is never poisoned");
            match guard.1.get(prompt) {
                Some(group) if id.is_none_or(|id| id == group.id) => guard.1.remove(prompt),
                _ => None,
            }
        };
        if let Some(group) = group {
            tokio::spawn(rank(app.clone(), prompt.to_owned(), group));
        }
    }
}

/// Rank one closed group and answer each of its samples.
async fn rank(app: AppState, prompt: String, group: Pending) {
    let Pending {
        responses, replies, ..
    } = group;
    let n = responses.len();
    let limits = app.limits.ranking;
    let group = Group {
        prompt,
        responses,
        baseline: Baseline::RoundRobin,
    };
    let rewards = if n == 1 {
        Ok(vec![0.0])
    } else {
        app.run_blocking(move |judge| {
            let mut rewards = group_rewards_with(judge, &[group], Scale::LogOdds, &limits)?;
            Ok(rewards.remove(0))
        })
        .await
    };
    match rewards {
        Ok(rewards) => {
            for (reply, reward) in replies.into_iter().zip(rewards) {
                let _ = reply.send(Ok(GroupReward {
                    reward,
                    score: crate::pair::sigmoid(reward),
                    group_size: n,
                }));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
