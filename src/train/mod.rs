//! Training a GRAM: stage 1 (generating response pairs) and stage 2 (judging labeled pairs), plus
//! a discriminative Bradley–Terry baseline, all through one loop.
//!
//! Each objective lives in its own file, which owns how its examples are built from data
//! records, its batch loss and its held-out metric:
//!
//! | objective | file | example | loss per example | eval metric |
//! |---|---|---|---|---|
//! | [`Objective::Generation`] (stage 1) | [`generation`] | `x ++ y`, target positions `y` | mean over `y` of `−log p(y_t \| y_<t, x)` | mean token loss |
//! | [`Objective::Gram`] (stage 2) | [`verdict`] | judge prompt, correct verdict `c` | `−log σ(Δ) + ε·Δ`, `Δ = z_c − z_other` | pairwise accuracy, both orders averaged |
//! | [`Objective::BradleyTerry`] | [`bradley_terry`] | chosen and rejected sequences | `−log σ(r_chosen − r_rejected)` | pairwise accuracy |
//!
//! where `z` are the two verdict-token logits at the last real token (only those two rows of the
//! output projection are applied) and `r = h_last · w` is a scalar value head. Stage 1 projects
//! only the hidden rows of target positions onto the vocabulary. The texts come from
//! [`crate::prompt`], as the judge's do.
//!
//! The rest is shared:
//!
//! * [`Learner`] ([`learner`]): the model being trained — decoder, optional value head, LoRA
//!   adapters, which parameters train.
//! * [`Trainer`] ([`trainer`]): AdamW, the linear-warmup + cosine [`Schedule`], gradient
//!   accumulation, clipping by the global gradient norm, a seeded data order, evaluation, and
//!   resuming exactly (weights with their parameter ids, optimizer moments, step; the data order
//!   is a pure function of the seed and the step).
//! * [`TrainOptions`] ([`options`]): the hyper-parameters, also the command line's flags.
//! * [`RunDir`] ([`run_dir`]): the output folder — resume states in `checkpoint-<step>/`
//!   (a complete one survives a crash at any instant), `metrics.csv`, `metrics.svg`, and the
//!   [`RunLock`] that keeps a second run out.
//! * [`export`](export()) ([`mod@export`]): the trained model as a Hugging Face directory.
//! * [`Recipe`] ([`recipe`]): data file to exported model, what `gram pretrain` and
//!   `gram finetune` run.

pub mod bradley_terry;
pub mod export;
pub mod generation;
pub mod learner;
pub mod options;
pub mod recipe;
pub mod run_dir;
pub mod schedule;
pub mod trainer;
pub mod verdict;

pub use bradley_terry::comparison_example;
pub use export::{export, hf_tensors};
pub use generation::generation_example;
pub use learner::Learner;
pub use options::TrainOptions;
pub use recipe::{Outcome, PreparedRun, Recipe};
pub use run_dir::{RunDir, RunInputs, RunLock, StepMetrics, plot_svg, read_metrics};
pub use schedule::Schedule;
pub use trainer::Trainer;
pub use verdict::verdict_examples;

use crate::data::Record;
use crate::prompt::PromptBuilder;
use crate::{Error, Result};
use burn::tensor::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What the model is trained to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Objective {
    /// Stage 1: generate both responses given the prompt.
    Generation,
    /// Stage 2: the verdict token of the judge prompt (label-smoothed preference loss).
    Gram,
    /// Baseline: a scalar value head with the Bradley–Terry loss.
    BradleyTerry,
}

impl Objective {
    /// The code of this objective. The one place an objective is matched on.
    pub(crate) fn task(self) -> &'static dyn Task {
        match self {
            Objective::Generation => &generation::Generation,
            Objective::Gram => &verdict::Verdict,
            Objective::BradleyTerry => &bradley_terry::BradleyTerry,
        }
    }

    /// A short name for messages: `stage 1`, `stage 2`, `bradley-terry`.
    pub fn name(self) -> &'static str {
        self.task().name()
    }
}

/// What each objective defines ([`generation`], [`verdict`], [`bradley_terry`]); the trainer
/// and the recipe reach objectives only through it.
pub(crate) trait Task: Sync {
    /// A short name for messages.
    fn name(&self) -> &'static str;

    /// Consecutive examples that stay together in the data order and in micro-batches.
    fn unit(&self) -> usize {
        1
    }

    /// What one example counts for in [`Task::batch_loss`]'s mean (positive): 1 when the loss
    /// is a mean over examples. Data parallelism weights each replica's share by it.
    fn loss_weight(&self, _example: &TrainExample) -> f64 {
        1.0
    }

    /// Whether the learner carries a scalar value head.
    fn value_head(&self) -> bool {
        false
    }

    /// The token-level examples of one data record.
    fn examples(&self, record: &Record, build: &mut ExampleBuilder) -> Result<Vec<TrainExample>>;

    /// Whether `example` (already known to be of this objective) has tokens to learn from.
    fn learnable(&self, example: &TrainExample) -> bool;

    /// The mean loss of a micro-batch, `[1]`.
    fn batch_loss(
        &self,
        model: &Learner,
        batch: &[&TrainExample],
        options: &TrainOptions,
    ) -> Result<Tensor<1>>;

    /// The held-out metric on `eval`, run in chunks of `options.batch_size`.
    fn evaluate(
        &self,
        model: &Learner,
        eval: &[TrainExample],
        options: &TrainOptions,
    ) -> Result<f64>;
}

/// What building examples from text needs: the judge prompt (its tokenizer and `max_len` serve
/// the other layouts too) and a seeded generator (stage 1 shuffles the order of labeled pairs).
pub struct ExampleBuilder<'a> {
    pub prompts: &'a PromptBuilder,
    pub max_len: usize,
    pub rng: ChaCha8Rng,
}

/// One token-level training or evaluation example.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainExample {
    /// Stage 1: `ids[target_start..]` are predicted from what precedes them.
    Generation { ids: Vec<u32>, target_start: usize },
    /// Stage 2: a judge prompt; `correct` is 0 when response A is the better one, 1 when B is.
    Verdict { ids: Vec<u32>, correct: u32 },
    /// Bradley–Terry: the same prompt with the chosen and with the rejected response.
    Comparison {
        chosen: Vec<u32>,
        rejected: Vec<u32>,
    },
}

impl TrainExample {
    /// Real tokens the example feeds through the model.
    pub fn tokens(&self) -> usize {
        match self {
            TrainExample::Generation { ids, .. } | TrainExample::Verdict { ids, .. } => ids.len(),
            TrainExample::Comparison { chosen, rejected } => chosen.len() + rejected.len(),
        }
    }

    /// The objective this kind of example trains.
    pub fn objective(&self) -> Objective {
        match self {
            TrainExample::Generation { .. } => Objective::Generation,
            TrainExample::Verdict { .. } => Objective::Gram,
            TrainExample::Comparison { .. } => Objective::BradleyTerry,
        }
    }
}

/// Check that every example is of `objective` and has something to learn from.
pub(crate) fn check_examples(
    examples: &[TrainExample],
    objective: Objective,
    what: &str,
) -> Result<()> {
    for (i, example) in examples.iter().enumerate() {
        if example.objective() != objective {
            return Err(Error::invalid(format!(
                "{what} example {i} is a {:?} example, the run trains {objective:?}",
                example.objective()
            )));
        }
        if !objective.task().learnable(example) {
            return Err(Error::invalid(format!(
                "{what} example {i} has no tokens to learn from"
            )));
        }
    }
    Ok(())
}

/// A tensor's values on the host.
pub(crate) fn to_vec<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let fail = |e: &dyn std::fmt::Debug| {
        Error::Device(format!("reading a tensor back from the device: {e:?}"))
    };
    let data = tensor.try_into_data().map_err(|e| fail(&e))?;
    data.try_to_vec::<f32>().map_err(|e| fail(&e))
}

/// The first value of a tensor on the host.
pub(crate) fn scalar(tensor: &Tensor<1>) -> Result<f64> {
    Ok(to_vec(tensor.clone())?.first().copied().unwrap_or(f32::NAN) as f64)
}

/// The labeled pairs of a record: an error at the row when it has none (stage 2 and the
/// Bradley–Terry baseline learn from labels).
fn labeled(record: &Record) -> Result<Vec<crate::Preference>> {
    let preferences = record.preferences();
    if preferences.is_empty() {
        return Err(record
            .location
            .error(None, "stage 2 needs labeled pairs (chosen/rejected)"));
    }
    Ok(preferences)
}
