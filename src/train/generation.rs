//! Stage 1: the model learns to generate both responses of a pair given the prompt.
//!
//! An example is `x ++ y` where `x` is the prompt block ([`generation_input`]) and `y` both
//! answer blocks ([`generation_target`]); the loss is the mean over `y` of
//! `−log p(y_t | y_<t, x)`, and only the hidden rows of target positions are projected onto the
//! vocabulary, a chunk of rows at a time ([`crate::model::VocabMatrix::token_cross_entropy`]), so
//! the `[tokens, vocab]` logits are never held whole. The held-out metric is the mean token loss.

use super::{ExampleBuilder, Learner, Task, TrainExample, TrainOptions, scalar};
use crate::Result;
use crate::data::{Content, Record};
use crate::model::right_pad;
use crate::prompt::{generation_input, generation_target};
use crate::tokenizer::TextCodec;
use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;

/// A stage-1 example: BOS (if the tokenizer has one) + input + target + EOS (if any), input and
/// target tokenized separately so the boundary is exact; the target is cut to fit `max_len`.
/// `None` when not even one target token fits.
pub fn generation_example(
    codec: &TextCodec,
    prompt: &str,
    a: &str,
    b: &str,
    max_len: usize,
) -> Result<Option<TrainExample>> {
    let mut ids: Vec<u32> = codec.bos_token_id().into_iter().collect();
    ids.extend(codec.encode_text(&generation_input(prompt))?);
    let target_start = ids.len();
    ids.extend(codec.encode_text(&generation_target(a, b))?);
    ids.extend(codec.eos_token_id());
    ids.truncate(max_len);
    Ok((ids.len() > target_start).then_some(TrainExample::Generation { ids, target_start }))
}

/// The stage-1 objective.
pub(crate) struct Generation;

/// The ids and the first target position of a generation example.
fn parts(example: &TrainExample) -> (&[u32], usize) {
    match example {
        TrainExample::Generation { ids, target_start } => (ids, *target_start),
        _ => (&[], 0),
    }
}

impl Task for Generation {
    fn name(&self) -> &'static str {
        "stage 1"
    }

    /// Unlabeled pairs as they are; labeled rows have their labels dropped, the order of the
    /// two responses drawn at random so the chosen one is not always first.
    fn examples(&self, record: &Record, build: &mut ExampleBuilder) -> Result<Vec<TrainExample>> {
        let pairs: Vec<(String, String, String)> = match &record.content {
            Content::Pair(p) => {
                vec![(p.prompt.clone(), p.response_a.clone(), p.response_b.clone())]
            }
            _ => record
                .preferences()
                .into_iter()
                .map(|p| {
                    if build.rng.random::<bool>() {
                        (p.prompt, p.rejected, p.chosen)
                    } else {
                        (p.prompt, p.chosen, p.rejected)
                    }
                })
                .collect(),
        };
        let codec = build.prompts.codec();
        let mut out = Vec::new();
        for (x, a, b) in pairs {
            out.extend(generation_example(codec, &x, &a, &b, build.max_len)?);
        }
        Ok(out)
    }

    fn learnable(&self, example: &TrainExample) -> bool {
        let (ids, target_start) = parts(example);
        target_start > 0 && ids.len() > target_start
    }

    /// The loss is a mean over target tokens, so an example counts for its target tokens.
    fn loss_weight(&self, example: &TrainExample) -> f64 {
        let (ids, target_start) = parts(example);
        (ids.len() - target_start) as f64
    }

    fn batch_loss(
        &self,
        model: &Learner,
        batch: &[&TrainExample],
        options: &TrainOptions,
    ) -> Result<Tensor<1>> {
        let device = model.llama.device();
        let sequences: Vec<&[u32]> = batch.iter().map(|e| parts(e).0).collect();
        let (ids, width) = right_pad(&sequences, options.pad_id, &device);
        let hidden = model.llama.hidden_states(ids);
        let d = model.llama.config.hidden_size;
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        for (b, example) in batch.iter().enumerate() {
            let (ids, target_start) = parts(example);
            for (t, &id) in ids.iter().enumerate().skip(target_start) {
                rows.push((b * width + t - 1) as i64);
                targets.push(id);
            }
        }
        let n = rows.len();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
        let at_targets = hidden.reshape([batch.len() * width, d]).select(0, rows);
        model
            .llama
            .output_weight()
            .token_cross_entropy(at_targets, &targets)
    }

    /// The mean token loss over all target tokens.
    fn evaluate(
        &self,
        model: &Learner,
        eval: &[TrainExample],
        options: &TrainOptions,
    ) -> Result<f64> {
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in eval.chunks(options.batch_size) {
            let batch: Vec<&TrainExample> = chunk.iter().collect();
            let targets: usize = chunk
                .iter()
                .map(|e| {
                    let (ids, target_start) = parts(e);
                    ids.len() - target_start
                })
                .sum();
            sum += scalar(&self.batch_loss(model, &batch, options)?)? * targets as f64;
            count += targets;
        }
        Ok(sum / count.max(1) as f64)
    }
}
