//! Stage 2 (GRAM): the model learns the judge's verdict token on labeled pairs.
//!
//! An example is the judge prompt of a pair ([`crate::prompt::PromptBuilder`]) and the correct
//! verdict `c`; with `Δ = z_c − z_other` the two verdict-token logits at the last real token
//! (only those two rows of the output projection are applied), the loss is the label-smoothed
//! `−log σ(Δ) + ε·Δ` ([`loss::preference_loss`]). Each pair is shown in both orders, kept
//! together in the data order and in micro-batches so their shared prefix runs once; the
//! held-out metric is the pairwise accuracy with both orders averaged as the judge does.

use super::{ExampleBuilder, Learner, Task, TrainExample, TrainOptions, to_vec};
use crate::data::Record;
use crate::prompt::PromptBuilder;
use crate::{Preference, Result, Verdict as PairVerdict, loss};
use burn::tensor::{Int, Tensor, TensorData};

/// Stage-2 examples for one labeled pair, in both orders (swap augmentation): the judge prompt
/// with the chosen response as A (correct verdict A), then with it as B (correct verdict B).
/// Evaluation relies on this adjacency to average the two orders as the judge does.
pub fn verdict_examples(
    prompts: &PromptBuilder,
    preference: &Preference,
) -> Result<[TrainExample; 2]> {
    let (x, chosen, rejected) = (&preference.prompt, &preference.chosen, &preference.rejected);
    Ok([
        TrainExample::Verdict {
            ids: prompts.sequence(x, chosen, rejected)?.ids,
            correct: 0,
        },
        TrainExample::Verdict {
            ids: prompts.sequence(x, rejected, chosen)?.ids,
            correct: 1,
        },
    ])
}

/// The stage-2 objective.
pub(crate) struct Verdict;

/// The ids and the correct verdict of a verdict example.
fn parts(example: &TrainExample) -> (&[u32], u32) {
    match example {
        TrainExample::Verdict { ids, correct } => (ids, *correct),
        _ => (&[], 0),
    }
}

/// Verdict logits `[B, 2]` (`z_A`, `z_B`) of verdict examples.
fn verdict_logits(
    model: &Learner,
    batch: &[&TrainExample],
    options: &TrainOptions,
) -> Result<Tensor<2>> {
    let sequences: Vec<&[u32]> = batch.iter().map(|e| parts(e).0).collect();
    let hidden = model.last_hidden(&sequences, options.pad_id)?;
    Ok(model.llama.token_logits(hidden, &options.verdict_tokens))
}

impl Task for Verdict {
    fn name(&self) -> &'static str {
        "stage 2"
    }

    /// A pair's two orders.
    fn unit(&self) -> usize {
        2
    }

    fn examples(&self, record: &Record, build: &mut ExampleBuilder) -> Result<Vec<TrainExample>> {
        let preferences = super::labeled(record)?;
        let mut out = Vec::with_capacity(2 * preferences.len());
        for preference in &preferences {
            let at_row = |e: crate::Error| record.location.error(None, e.to_string());
            out.extend(verdict_examples(build.prompts, preference).map_err(at_row)?);
        }
        Ok(out)
    }

    fn learnable(&self, example: &TrainExample) -> bool {
        let (ids, correct) = parts(example);
        !ids.is_empty() && correct <= 1
    }

    fn batch_loss(
        &self,
        model: &Learner,
        batch: &[&TrainExample],
        options: &TrainOptions,
    ) -> Result<Tensor<1>> {
        let logits = verdict_logits(model, batch, options)?;
        let correct: Vec<i64> = batch.iter().map(|e| parts(e).1 as i64).collect();
        let correct = Tensor::<1, Int>::from_data(
            TensorData::new(correct, [batch.len()]),
            &model.llama.device(),
        );
        loss::preference_loss(logits, correct, options.label_smoothing)
    }

    /// Pairwise accuracy, each pair's two orders averaged as the judge does:
    /// `p = (σ(Δ_fwd) + σ(Δ_rev)) / 2 > ½`.
    fn evaluate(
        &self,
        model: &Learner,
        eval: &[TrainExample],
        options: &TrainOptions,
    ) -> Result<f64> {
        // `z_correct − z_other` per example.
        let mut margins = Vec::with_capacity(eval.len());
        for chunk in eval.chunks(options.batch_size) {
            let batch: Vec<&TrainExample> = chunk.iter().collect();
            let logits = to_vec(verdict_logits(model, &batch, options)?)?;
            margins.extend(chunk.iter().zip(logits.chunks_exact(2)).map(|(e, z)| {
                let margin = (z[0] - z[1]) as f64;
                if parts(e).1 == 1 { -margin } else { margin }
            }));
        }
        let right = margins
            .chunks_exact(2)
            .filter(|m| PairVerdict::from_margins(m[0], -m[1]).p_a > 0.5)
            .count();
        Ok(right as f64 / (margins.len() / 2).max(1) as f64)
    }
}
