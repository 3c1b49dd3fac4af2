//! The hyper-parameters of a run, defined once: the library's options are also the command
//! line's flags (`#[command(flatten)]` in `gram pretrain` / `gram finetune`), and they are saved
//! with the resume state.

use super::{Objective, Schedule};
use crate::{Error, Result, loss};
use serde::{Deserialize, Serialize};

/// The hyper-parameters of a run. Each default is written once, in its `#[arg]` attribute;
/// [`TrainOptions::new`] reads them back from clap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct TrainOptions {
    /// What is trained (chosen by the subcommand, not a flag).
    #[arg(skip = Objective::Gram)]
    pub objective: Objective,
    /// Passes over the training data (ignored when `max_steps` is set).
    #[arg(long, default_value_t = 1.0, conflicts_with = "max_steps")]
    pub epochs: f64,
    /// Optimizer steps in all (instead of --epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Examples per micro-batch (stage 2 counts each order of a pair as one example).
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Peak learning rate (linear warmup, cosine decay). Default: chosen by what is trained
    /// and the model's width ([`TrainOptions::peak_lr`]): 1e-4 × 576 / hidden size for the
    /// weights (all layers or --train-layers), 10× that for LoRA adapters.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Fraction of the steps spent warming up.
    #[arg(long, default_value_t = 0.03)]
    pub warmup_ratio: f64,
    /// Final learning rate as a fraction of the peak.
    #[arg(skip = 0.1)]
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// AdamW's ε, added to √v̂ in the update m̂ / (√v̂ + ε). The default is burn's, 1e-5;
    /// PyTorch's (and so Hugging Face's and LLaMA-Factory's) is 1e-8, which takes larger steps
    /// where gradients are small. The default learning rates were measured with 1e-5.
    #[serde(default = "default_adam_epsilon")]
    #[arg(long, default_value_t = 1e-5)]
    pub adam_epsilon: f64,
    /// Clip gradients to this global norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Mass ε of the preference loss on the wrong verdict (stage 2; see
    /// `loss::preference_loss`).
    #[arg(long, default_value_t = loss::DEFAULT_LABEL_SMOOTHING)]
    pub label_smoothing: f32,
    /// Train only the top K decoder layers and the final norm.
    #[arg(long, conflicts_with = "lora_rank")]
    pub train_layers: Option<usize>,
    /// Train LoRA adapters of rank R on every attention and MLP projection instead of the
    /// weights (merged into the weights on export).
    #[serde(default)]
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA scale numerator: adapters are scaled by ALPHA / R.
    #[serde(default = "default_lora_alpha")]
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Recompute memory-bound activations in the backward pass instead of keeping them
    /// (burn's gradient checkpointing): less memory, more compute.
    #[serde(default)]
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Record what the frozen layers (all below `--train-layers`) output for every
    /// micro-batch in this folder, and replay it when the folder holds it, running only the
    /// layers that train: for several runs on the same data and batches (a learning-rate
    /// sweep, ε = 0 and ε = 0.05, stage 2 from the base model and from a stage-1 model that
    /// kept those layers). Losses and gradients are unchanged, bit for bit. Stage 2 and
    /// `--objective bt` only. Not saved with the resume state, as it changes no result.
    #[serde(skip)]
    #[arg(long, value_name = "DIR", requires = "train_layers")]
    pub trunk_cache: Option<std::path::PathBuf>,
    /// Seed of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate every N steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Save the resume state every N steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// The verdict tokens `[A, B]` (stage 2; from the tokenizer, not a flag).
    #[arg(skip)]
    pub verdict_tokens: [u32; 2],
    /// Token id used to pad batches, never read (from the tokenizer, not a flag).
    #[arg(skip)]
    pub pad_id: u32,
}

/// LoRA's α in resume states written before it was an option: the flag's default.
fn default_lora_alpha() -> f64 {
    TrainOptions::defaults().lora_alpha
}

/// AdamW's ε in resume states written before it was an option: the value they trained with.
fn default_adam_epsilon() -> f64 {
    TrainOptions::defaults().adam_epsilon
}

impl TrainOptions {
    /// The defaults for `objective`: one epoch, batch 4, the learning rate of
    /// [`TrainOptions::peak_lr`] with 3 % warmup decaying to 10 %, AdamW with weight decay 0 and
    /// ε 1e-5, clip at norm 1, label smoothing [`loss::DEFAULT_LABEL_SMOOTHING`], LoRA α 16,
    /// seed 0 (the flags' defaults).
    pub fn new(objective: Objective, verdict_tokens: [u32; 2], pad_id: u32) -> Self {
        TrainOptions {
            objective,
            verdict_tokens,
            pad_id,
            ..Self::defaults()
        }
    }

    /// The options an empty command line gives.
    fn defaults() -> Self {
        use clap::{Args, FromArgMatches};
        let command = Self::augment_args(clap::Command::new("defaults").no_binary_name(true));
        let matches = command
            .try_get_matches_from(std::iter::empty::<String>())
            .expect("every training flag has a default");
        Self::from_arg_matches(&matches).expect("every training flag has a default")
    }

    /// The AdamW optimizer these options describe (weight decay and ε).
    pub(crate) fn adamw(&self) -> burn::optim::AdamWConfig {
        burn::optim::AdamWConfig::new()
            .with_epsilon(self.adam_epsilon as f32)
            .with_weight_decay(self.weight_decay as f32)
    }

    /// Optimizer steps for `examples` training examples.
    pub fn total_steps(&self, examples: usize) -> usize {
        match self.max_steps {
            Some(steps) => steps,
            None => {
                let per_step = (self.batch_size * self.grad_accum) as f64;
                (self.epochs * examples as f64 / per_step).ceil().max(1.0) as usize
            }
        }
    }

    /// The peak learning rate for a model whose hidden size is `hidden_size`: `--lr` when
    /// given, otherwise
    ///
    /// ```text
    /// lr = base × 576 / hidden_size,   base = 1e-4 for the weights (all layers or the top K),
    ///                                         1e-3 for LoRA adapters
    /// ```
    ///
    /// The base is the best of a sweep on SmolLM2-135M (hidden size 576; README, "Defaults that
    /// learn"); 1e-5, the authors' full fine-tuning rate at 8B, left a 135M model at chance.
    /// Dividing by the width is μP's rule for Adam on hidden matrices (an update's effect on
    /// a layer's output grows with its fan-in). At 1.7–14B (hidden size 2,048–5,120) it gives
    /// 2.8e-5–1.1e-5, the 1e-5 and 2e-5 of the GRAM authors' released configs; LoRA adapters
    /// start at zero and see a low-rank gradient, hence the customary tenfold rate.
    pub fn peak_lr(&self, hidden_size: usize) -> f64 {
        const REFERENCE_WIDTH: f64 = 576.0;
        let base = if self.lora_rank.is_some() { 1e-3 } else { 1e-4 };
        self.lr
            .unwrap_or(base * REFERENCE_WIDTH / hidden_size.max(1) as f64)
    }

    /// The learning-rate schedule for a run of `total` steps on a model whose hidden size is
    /// `hidden_size`.
    pub fn schedule(&self, total: usize, hidden_size: usize) -> Schedule {
        Schedule {
            peak: self.peak_lr(hidden_size),
            warmup: (self.warmup_ratio * total as f64).round() as usize,
            total,
            floor: self.min_lr_ratio,
        }
    }

    /// What keeps a run saved with `self` from continuing with `other`, one line each
    /// (`--lr: checkpoint 0.001, now the default`); the step budget and the evaluation and save
    /// intervals may differ.
    pub(crate) fn differences(&self, other: &TrainOptions) -> Vec<String> {
        let comparable = |o: &TrainOptions| {
            serde_json::to_value(TrainOptions {
                max_steps: None,
                epochs: 0.0,
                eval_every: 0,
                save_every: 0,
                ..o.clone()
            })
            .unwrap_or_default()
        };
        let (then, now) = (comparable(self), comparable(other));
        let (Some(then), Some(now)) = (then.as_object(), now.as_object()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (field, old) in then {
            let new = now.get(field).unwrap_or(&serde_json::Value::Null);
            if old != new {
                let show = |v: &serde_json::Value| match v {
                    serde_json::Value::Null => "the default".to_string(),
                    v => v.to_string(),
                };
                let name = match field.as_str() {
                    "objective" => "objective (the subcommand)".to_string(),
                    "verdict_tokens" => "verdict tokens (--labels and the tokenizer)".to_string(),
                    "pad_id" => "padding token (the tokenizer)".to_string(),
                    _ => format!("--{}", field.replace('_', "-")),
                };
                out.push(format!(
                    "{name}: checkpoint {}, now {}",
                    show(old),
                    show(new)
                ));
            }
        }
        out
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.grad_accum == 0 {
            return Err(Error::invalid(
                "--batch-size and --grad-accum must be at least 1",
            ));
        }
        if let Some(lr) = self.lr
            && !(lr > 0.0 && lr.is_finite())
        {
            return Err(Error::invalid(format!("--lr must be positive, got {lr}")));
        }
        if !(self.adam_epsilon > 0.0 && self.adam_epsilon.is_finite()) {
            return Err(Error::invalid(format!(
                "--adam-epsilon must be positive, got {}",
                self.adam_epsilon
            )));
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::invalid("--label-smoothing must be in [0, 1]"));
        }
        if self.train_layers == Some(0) {
            return Err(Error::invalid("--train-layers must be at least 1"));
        }
        if self.lora_rank == Some(0) {
            return Err(Error::invalid("--lora-rank must be at least 1"));
        }
        if self.lora_rank.is_some() && self.train_layers.is_some() {
            return Err(Error::invalid(
                "--lora-rank and --train-layers are alternatives; give one",
            ));
        }
        Ok(())
    }
}
