//! The discriminative baseline: a scalar value head `r = h_last · w` on the last real token,
//! trained with the Bradley–Terry loss `−log σ(r_chosen − r_rejected)` and exported as
//! `score.weight`. The reward model reads a user and an assistant turn
//! ([`crate::prompt::reward_sequence`]); the held-out metric is the pairwise accuracy
//! (`r_chosen > r_rejected`).

use super::{ExampleBuilder, Learner, Task, TrainExample, TrainOptions, to_vec};
use crate::data::Record;
use crate::prompt::reward_sequence;
use crate::tokenizer::TextCodec;
use crate::{Preference, Result};
use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;

/// A Bradley–Terry example for a labeled pair.
pub fn comparison_example(
    codec: &TextCodec,
    preference: &Preference,
    max_len: usize,
) -> Result<TrainExample> {
    Ok(TrainExample::Comparison {
        chosen: reward_sequence(codec, &preference.prompt, &preference.chosen, max_len)?,
        rejected: reward_sequence(codec, &preference.prompt, &preference.rejected, max_len)?,
    })
}

/// The Bradley–Terry objective.
pub(crate) struct BradleyTerry;

/// The chosen and rejected sequences of a comparison example.
fn parts(example: &TrainExample) -> (&[u32], &[u32]) {
    match example {
        TrainExample::Comparison { chosen, rejected } => (chosen, rejected),
        _ => (&[], &[]),
    }
}

/// Scalar rewards `[2B]`: the chosen sequences' then the rejected ones'.
fn rewards(model: &Learner, batch: &[&TrainExample], pad_id: u32) -> Result<Tensor<1>> {
    let mut sequences: Vec<&[u32]> = batch.iter().map(|e| parts(e).0).collect();
    sequences.extend(batch.iter().map(|e| parts(e).1));
    let hidden = model.last_hidden(&sequences, pad_id)?;
    let n = sequences.len();
    Ok(match &model.score {
        Some(w) => hidden.matmul(w.val()).reshape([n]),
        None => Tensor::zeros([n], &model.llama.device()),
    })
}

impl Task for BradleyTerry {
    fn name(&self) -> &'static str {
        "bradley-terry"
    }

    fn value_head(&self) -> bool {
        true
    }

    fn examples(&self, record: &Record, build: &mut ExampleBuilder) -> Result<Vec<TrainExample>> {
        let codec = build.prompts.codec();
        let at_row = |e: crate::Error| record.location.error(None, e.to_string());
        super::labeled(record)?
            .iter()
            .map(|p| comparison_example(codec, p, build.max_len).map_err(at_row))
            .collect()
    }

    fn learnable(&self, example: &TrainExample) -> bool {
        let (chosen, rejected) = parts(example);
        !chosen.is_empty() && !rejected.is_empty()
    }

    fn batch_loss(
        &self,
        model: &Learner,
        batch: &[&TrainExample],
        options: &TrainOptions,
    ) -> Result<Tensor<1>> {
        let rewards = rewards(model, batch, options.pad_id)?;
        let half = batch.len();
        let margin = rewards.clone().narrow(0, 0, half) - rewards.narrow(0, half, half);
        Ok(-log_sigmoid(margin).mean())
    }

    /// Pairwise accuracy: `r_chosen > r_rejected`.
    fn evaluate(
        &self,
        model: &Learner,
        eval: &[TrainExample],
        options: &TrainOptions,
    ) -> Result<f64> {
        let mut right = 0usize;
        for chunk in eval.chunks(options.batch_size) {
            let batch: Vec<&TrainExample> = chunk.iter().collect();
            let values = to_vec(rewards(model, &batch, options.pad_id)?)?;
            let half = chunk.len();
            right += (0..half).filter(|&i| values[i] > values[half + i]).count();
        }
        Ok(right as f64 / eval.len().max(1) as f64)
    }
}
