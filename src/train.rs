//! Training a GRAM: stage 1 (generating response pairs) and stage 2 (judging labeled pairs), plus
//! a discriminative Bradley–Terry baseline, all through one loop.
//!
//! Every objective trains on token-level [`Example`]s built from text by [`verdict_examples`],
//! [`generation_example`] and [`comparison_example`]:
//!
//! | objective | example | loss per example |
//! |---|---|---|
//! | [`Objective::Generation`] (stage 1) | `x ++ y`, target positions `y` | mean over `y` of `−log p(y_t | y_<t, x)` |
//! | [`Objective::Gram`] (stage 2) | judge prompt, correct verdict `c` | `−log σ(Δ) + ε·Δ`, `Δ = z_c − z_other` |
//! | [`Objective::BradleyTerry`] | chosen and rejected sequences | `−log σ(r_chosen − r_rejected)` |
//!
//! where `z` are the two verdict-token logits at the last real token (only those two rows of the
//! output projection are applied) and `r = h_last · w` is a scalar value head. Stage 1 projects
//! only the hidden rows of target positions onto the vocabulary.
//!
//! The loop ([`Trainer`]): AdamW, a linear-warmup + cosine learning-rate [`Schedule`], gradient
//! accumulation over `grad_accum` micro-batches, clipping by the global gradient norm, a seeded
//! data order, held-out evaluation, `metrics.csv`, and atomic checkpoints that `resume` continues
//! from exactly (weights with their parameter ids, optimizer moments, step; the data order is a
//! pure function of the seed and the step).

use crate::checkpoint::{HostTensor, save_hf_dir};
use crate::model::{Llama, Lora, Projection, RmsNorm, common_prefix, right_pad};
use crate::prompt::{PromptBuilder, generation_input, generation_target, reward_sequence};
use crate::tokenizer::TextCodec;
use crate::{Error, Preference, Result, Verdict, loss};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

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

/// One token-level training or evaluation example.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
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

impl Example {
    /// Real tokens the example feeds through the model.
    pub fn tokens(&self) -> usize {
        match self {
            Example::Generation { ids, .. } | Example::Verdict { ids, .. } => ids.len(),
            Example::Comparison { chosen, rejected } => chosen.len() + rejected.len(),
        }
    }

    fn objective(&self) -> Objective {
        match self {
            Example::Generation { .. } => Objective::Generation,
            Example::Verdict { .. } => Objective::Gram,
            Example::Comparison { .. } => Objective::BradleyTerry,
        }
    }
}

/// Stage-2 examples for one labeled pair, in both orders (swap augmentation): the judge prompt
/// with the chosen response as A (correct verdict A), then with it as B (correct verdict B).
/// Evaluation relies on this adjacency to average the two orders as the judge does.
pub fn verdict_examples(prompts: &PromptBuilder, preference: &Preference) -> Result<[Example; 2]> {
    let (x, chosen, rejected) = (&preference.prompt, &preference.chosen, &preference.rejected);
    Ok([
        Example::Verdict {
            ids: prompts.sequence(x, chosen, rejected)?.ids,
            correct: 0,
        },
        Example::Verdict {
            ids: prompts.sequence(x, rejected, chosen)?.ids,
            correct: 1,
        },
    ])
}

/// A stage-1 example: BOS (if the tokenizer has one) + input + target + EOS (if any), input and
/// target tokenized separately so the boundary is exact; the target is cut to fit `max_len`.
/// `None` when not even one target token fits.
pub fn generation_example(
    codec: &TextCodec,
    prompt: &str,
    a: &str,
    b: &str,
    max_len: usize,
) -> Result<Option<Example>> {
    let mut ids: Vec<u32> = codec.bos_token_id().into_iter().collect();
    ids.extend(codec.encode(&generation_input(prompt))?);
    let target_start = ids.len();
    ids.extend(codec.encode(&generation_target(a, b))?);
    ids.extend(codec.eos_token_id());
    ids.truncate(max_len);
    Ok((ids.len() > target_start).then_some(Example::Generation { ids, target_start }))
}

/// A Bradley–Terry example for a labeled pair.
pub fn comparison_example(
    codec: &TextCodec,
    preference: &Preference,
    max_len: usize,
) -> Result<Example> {
    Ok(Example::Comparison {
        chosen: reward_sequence(codec, &preference.prompt, &preference.chosen, max_len)?,
        rejected: reward_sequence(codec, &preference.prompt, &preference.rejected, max_len)?,
    })
}

/// The model being trained: the decoder, plus the scalar value head `w` (`[d, 1]`) of the
/// Bradley–Terry baseline.
#[derive(Module, Debug)]
pub struct Trainee {
    pub llama: Llama,
    pub score: Option<Param<Tensor<2>>>,
}

impl Trainee {
    /// Wrap `llama` for `objective`; the Bradley–Terry head starts at N(0, 0.02²).
    pub fn new(llama: Llama, objective: Objective) -> Self {
        let score = (objective == Objective::BradleyTerry).then(|| {
            let d = llama.config.hidden_size;
            Param::from_tensor(Tensor::random(
                [d, 1],
                Distribution::Normal(0.0, 0.02),
                &llama.device(),
            ))
        });
        Trainee { llama, score }
    }

    /// Give every projection of every layer a fresh LoRA adapter of `rank` (scale `alpha / rank`).
    pub fn add_lora(mut self, rank: usize, alpha: f64) -> Self {
        let device = self.llama.device();
        for layer in &mut self.llama.layers {
            for projection in layer.projections_mut() {
                let [d_in, d_out] = projection.weight.val().dims();
                projection.lora = Some(Lora::new(d_in, d_out, rank, alpha, &device));
            }
        }
        self
    }

    /// Choose what trains. With LoRA adapters, only they (and a Bradley–Terry head) train.
    /// Otherwise every parameter trains, or with `layers = Some(K)` only the top K decoder layers
    /// and the final norm (embeddings and output projection frozen). Frozen parameters are
    /// untracked, so the backward pass computes no weight gradient for them (with `K` layers it
    /// stops below the lowest trainable layer).
    ///
    /// With `checkpointing`, the weights move to the same device with burn's gradient
    /// checkpointing (memory-bound activations are recomputed in the backward pass instead of
    /// kept until it).
    pub fn set_trainable(self, layers: Option<usize>, checkpointing: bool) -> Self {
        let mut trainee = self
            .map(&mut Leaves { checkpointing })
            .set_require_grad(true);
        let adapted = (trainee.llama.layers.iter()).any(|l| l.self_attn.q_proj.lora.is_some());
        if adapted {
            let score = trainee.score.take();
            let mut trainee = trainee.no_grad();
            for layer in &mut trainee.llama.layers {
                for projection in layer.projections_mut() {
                    if let Some(lora) = projection.lora.as_mut() {
                        lora.a = lora.a.clone().set_require_grad(true);
                        lora.b = lora.b.clone().set_require_grad(true);
                    }
                }
            }
            trainee.score = score;
            return trainee;
        }
        let Some(k) = layers else { return trainee };
        let llama = &mut trainee.llama;
        let n = llama.layers.len();
        llama.embed_tokens = llama.embed_tokens.clone().set_require_grad(false);
        llama.lm_head = llama.lm_head.take().map(|w| w.set_require_grad(false));
        llama.layers = std::mem::take(&mut llama.layers)
            .into_iter()
            .enumerate()
            .map(|(i, layer)| if i + k < n { layer.no_grad() } else { layer })
            .collect();
        trainee
    }
}

/// Turns every weight into a fresh autodiff leaf (same values and parameter id): weights that
/// were plain tensors, or results of earlier tracked operations (e.g. a move between devices),
/// can then require gradients. With `checkpointing` the leaves are made on the device with
/// burn's gradient checkpointing (a copy of the weights, once).
struct Leaves {
    checkpointing: bool,
}

impl ModuleMapper for Leaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let checkpointing = self.checkpointing;
        param.map(|t| {
            if checkpointing {
                let device = t.device().autodiff().gradient_checkpointing();
                Tensor::from_data(t.into_data(), &device)
            } else {
                t.inner().autodiff()
            }
        })
    }
}

/// Peak learning rate, linear warmup over `warmup` steps, cosine decay to `floor · peak` at
/// `total` steps:
///
/// ```text
/// lr(s) = peak · (s + 1) / warmup                                   s < warmup
/// lr(s) = peak · (floor + (1 − floor) · (1 + cos(π·(s − warmup)/(total − warmup))) / 2)   otherwise
/// ```
///
/// for the 0-based optimizer step `s` (so the first step already has a non-zero rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    pub floor: f64,
}

impl Schedule {
    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.floor + (1.0 - self.floor) * cosine)
    }
}

/// The hyper-parameters of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub objective: Objective,
    /// Passes over the data (ignored when `max_steps` is set).
    pub epochs: f64,
    /// Optimizer steps to run in all.
    pub max_steps: Option<usize>,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of the steps spent warming up.
    pub warmup_ratio: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Largest global gradient norm; larger gradients are scaled down to it.
    pub max_grad_norm: f64,
    /// ε of [`loss::preference_loss`].
    pub label_smoothing: f32,
    /// Train only the top K decoder layers (and the final norm).
    pub train_layers: Option<usize>,
    /// Train LoRA adapters of this rank on every projection instead of the weights; they are
    /// merged into the weights on export.
    #[serde(default)]
    pub lora_rank: Option<usize>,
    /// LoRA's α: adapters are scaled by `α / rank`.
    #[serde(default = "default_lora_alpha")]
    pub lora_alpha: f64,
    /// Recompute memory-bound activations in the backward pass instead of keeping them
    /// (burn's gradient checkpointing): less memory, more compute.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Seed of the data order.
    pub seed: u64,
    /// Evaluate every N optimizer steps (0: only at the end).
    pub eval_every: usize,
    /// Checkpoint every N optimizer steps (0: only at the end).
    pub save_every: usize,
    /// The verdict tokens `[A, B]` (stage 2).
    pub verdict_tokens: [u32; 2],
    /// Token id used to pad batches (never read).
    pub pad_id: u32,
}

impl TrainOptions {
    /// Defaults: one epoch, batch 4, lr 1e-5 with 3 % warmup decaying to 10 %, weight decay 0,
    /// clip at norm 1, ε = [`loss::DEFAULT_LABEL_SMOOTHING`], seed 0.
    pub fn new(objective: Objective, verdict_tokens: [u32; 2], pad_id: u32) -> Self {
        TrainOptions {
            objective,
            epochs: 1.0,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            lr: 1e-5,
            warmup_ratio: 0.03,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            label_smoothing: loss::DEFAULT_LABEL_SMOOTHING,
            train_layers: None,
            lora_rank: None,
            lora_alpha: default_lora_alpha(),
            gradient_checkpointing: false,
            seed: 0,
            eval_every: 0,
            save_every: 0,
            verdict_tokens,
            pad_id,
        }
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

    /// The learning-rate schedule for a run of `total` steps.
    pub fn schedule(&self, total: usize) -> Schedule {
        Schedule {
            peak: self.lr,
            warmup: (self.warmup_ratio * total as f64).round() as usize,
            total,
            floor: self.min_lr_ratio,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.grad_accum == 0 {
            return Err(Error::invalid(
                "--batch-size and --grad-accum must be at least 1",
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid(format!(
                "--lr must be positive, got {}",
                self.lr
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

/// LoRA's α when not given: 16, PEFT's common choice for ranks 8–16.
fn default_lora_alpha() -> f64 {
    16.0
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepMetrics {
    /// Optimizer steps done.
    pub step: usize,
    pub lr: f64,
    /// Mean training loss of the step's micro-batches, nats.
    pub loss: f64,
    /// Held-out metric when evaluated: pairwise accuracy (Gram, Bradley–Terry) or loss (Generation).
    pub eval: Option<f64>,
    /// Real (unpadded) tokens per second over the step.
    pub tokens_per_s: f64,
}

/// What is saved beside the weights and optimizer state so a run resumes where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: usize,
    options: TrainOptions,
}

const CHECKPOINT_DIR: &str = "checkpoint";
const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.bpk";
const STATE_FILE: &str = "trainer_state.json";
const METRICS_FILE: &str = "metrics.csv";
const METRICS_HEADER: &str = "step,lr,loss,eval,tokens_per_s";

/// The training loop.
pub struct Trainer {
    pub model: Trainee,
    optimizer: ModuleOptimizer,
    options: TrainOptions,
    /// Trainable parameters and their ranks, for the global gradient norm.
    params: Vec<(ParamId, usize)>,
    step: usize,
    output: Option<PathBuf>,
}

impl Trainer {
    /// Start a run on `llama`'s device (plain or `.autodiff()`; its weights become autodiff
    /// leaves). With an `output` directory, metrics and checkpoints are written there.
    pub fn new(llama: Llama, options: TrainOptions, output: Option<PathBuf>) -> Result<Self> {
        options.validate()?;
        if let Some(k) = options.train_layers
            && k > llama.layers.len()
        {
            return Err(Error::invalid(format!(
                "--train-layers {k}: the model has only {} layers",
                llama.layers.len()
            )));
        }
        let mut model = Trainee::new(llama, options.objective);
        if let Some(rank) = options.lora_rank {
            model = model.add_lora(rank, options.lora_alpha);
        }
        let model = model.set_trainable(options.train_layers, options.gradient_checkpointing);
        let optimizer = AdamWConfig::new()
            .with_weight_decay(options.weight_decay as f32)
            .init();
        let params = trainable_params(&model);
        if let Some(dir) = &output {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(Trainer {
            model,
            optimizer,
            options,
            params,
            step: 0,
            output,
        })
    }

    /// Continue the run checkpointed in `output/checkpoint`: weights (with their parameter ids,
    /// which key the optimizer state), AdamW moments and the step. `metrics.csv` rows after that
    /// step are dropped. The options given must match the checkpoint's except the step budget and the eval/save intervals.
    pub fn resume(llama: Llama, options: TrainOptions, output: PathBuf) -> Result<Self> {
        let dir = output.join(CHECKPOINT_DIR);
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
        let state: TrainerState = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(&state_path, format!("not a trainer state: {e}")))?;
        let comparable = |o: &TrainOptions| TrainOptions {
            max_steps: None,
            epochs: 0.0,
            eval_every: 0,
            save_every: 0,
            ..o.clone()
        };
        if comparable(&state.options) != comparable(&options) {
            return Err(Error::invalid(format!(
                "--resume: the options differ from the checkpoint's ({}): {:?}",
                state_path.display(),
                state.options
            )));
        }
        let mut trainer = Trainer::new(llama, options, Some(output))?;
        let model_path = dir.join(MODEL_FILE);
        let record = ModuleRecord::load(&model_path)
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))?;
        let model = trainer
            .model
            .try_load_record(record)
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))?;
        let options = &trainer.options;
        trainer.model = model.set_trainable(options.train_layers, options.gradient_checkpointing);
        trainer.params = trainable_params(&trainer.model);
        let optimizer_path = dir.join(OPTIMIZER_FILE);
        let optimizer = AdamWConfig::new()
            .with_weight_decay(trainer.options.weight_decay as f32)
            .init();
        trainer.optimizer = optimizer
            .load(&optimizer_path)
            .map_err(|e| Error::checkpoint(&optimizer_path, format!("{e:?}")))?;
        trainer.step = state.step;
        trainer.truncate_metrics()?;
        Ok(trainer)
    }

    /// Optimizer steps done.
    pub fn step(&self) -> usize {
        self.step
    }

    /// The run's options.
    pub fn options(&self) -> &TrainOptions {
        &self.options
    }

    /// Train until `total` optimizer steps are done, evaluating on `eval` (if not empty) every
    /// `eval_every` steps and at the end, checkpointing every `save_every` steps and at the end.
    /// `on_step` sees every step's metrics (for a progress line) and returns whether to go on;
    /// when it says stop, the run is checkpointed and this returns early. Returns the metrics of
    /// the steps run by this call.
    pub fn run(
        &mut self,
        train: &[Example],
        eval: &[Example],
        total: usize,
        mut on_step: impl FnMut(&StepMetrics) -> bool,
    ) -> Result<Vec<StepMetrics>> {
        check_examples(train, self.options.objective, "training")?;
        check_examples(eval, self.options.objective, "evaluation")?;
        let schedule = self.options.schedule(total);
        let mut history = Vec::new();
        while self.step < total {
            let start = Instant::now();
            let lr = schedule.lr(self.step);
            let (loss, tokens) = self.train_step(train, lr)?;
            let tokens_per_s = tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let last = self.step == total;
            let eval_due = !eval.is_empty()
                && (last
                    || (self.options.eval_every > 0 && self.step % self.options.eval_every == 0));
            let metrics = StepMetrics {
                step: self.step,
                lr,
                loss,
                eval: if eval_due {
                    Some(self.evaluate(eval)?)
                } else {
                    None
                },
                tokens_per_s,
            };
            self.append_metrics(&metrics)?;
            let go_on = on_step(&metrics);
            if !go_on
                || last
                || (self.options.save_every > 0 && self.step % self.options.save_every == 0)
            {
                self.save_checkpoint()?;
            }
            history.push(metrics);
            if !go_on {
                break;
            }
        }
        Ok(history)
    }

    /// One optimizer step: `grad_accum` micro-batches from the seeded stream, their mean loss's
    /// gradients accumulated, clipped to `max_grad_norm` by global norm, AdamW at `lr`.
    /// Returns the mean loss and the real tokens processed.
    pub fn train_step(&mut self, train: &[Example], lr: f64) -> Result<(f64, usize)> {
        if train.is_empty() {
            return Err(Error::invalid("no training examples"));
        }
        let micro = self.options.batch_size;
        let accum = self.options.grad_accum;
        // Stage-2 examples come as (chosen-first, chosen-second) orders of one pair.
        let unit = if self.options.objective == Objective::Gram {
            2
        } else {
            1
        };
        let mut accumulator = GradientsAccumulator::<Trainee>::new();
        let (mut loss_sum, mut tokens) = (0.0, 0usize);
        for m in 0..accum {
            let first = (self.step * accum + m) * micro;
            let batch: Vec<&Example> = (first..first + micro)
                .map(|i| &train[stream_index(i, train.len(), unit, self.options.seed)])
                .collect();
            tokens += batch.iter().map(|e| e.tokens()).sum::<usize>();
            let (loss, grads) = self.micro_batch(&batch, accum)?;
            loss_sum += loss;
            accumulator.accumulate(&self.model, grads);
        }
        let grads = clip_global_norm(
            accumulator.grads(),
            &self.params,
            self.options.max_grad_norm,
        )?;
        self.model = self.optimizer.step(lr, self.model.clone(), grads);
        self.step += 1;
        Ok((loss_sum / accum as f64, tokens))
    }

    /// The mean loss of `batch` and the gradients of `loss / accum`.
    fn micro_batch(&self, batch: &[&Example], accum: usize) -> Result<(f64, GradientsParams)> {
        let loss = batch_loss(&self.model, batch, &self.options)?;
        let value = scalar(&loss)?;
        let grads =
            GradientsParams::from_grads(loss.div_scalar(accum as f64).backward(), &self.model);
        Ok((value, grads))
    }

    /// The mean loss of `batch` and the gradient of every trainable parameter (in the module's
    /// visiting order, row-major), without updating anything — for checking devices agree.
    pub fn gradients(&self, batch: &[Example]) -> Result<(f64, Vec<Vec<f32>>)> {
        check_examples(batch, self.options.objective, "gradient")?;
        let batch: Vec<&Example> = batch.iter().collect();
        let (loss, grads) = self.micro_batch(&batch, 1)?;
        let mut out = Vec::with_capacity(self.params.len());
        for &(id, rank) in &self.params {
            let values = match rank {
                1 => grads.get::<1>(id).map(to_vec),
                2 => grads.get::<2>(id).map(to_vec),
                _ => None,
            };
            out.push(values.transpose()?.unwrap_or_default());
        }
        Ok((loss, out))
    }

    /// The held-out metric on `eval`, without gradients: pairwise accuracy for Gram (each pair's
    /// two orders averaged as the judge does: `p = (σ(Δ_fwd) + σ(Δ_rev)) / 2 > ½`) and for
    /// Bradley–Terry (`r_chosen > r_rejected`), the mean token loss for Generation.
    pub fn evaluate(&self, eval: &[Example]) -> Result<f64> {
        let model = self.model.valid();
        let batch_size = self.options.batch_size;
        match self.options.objective {
            Objective::Generation => {
                let (mut sum, mut count) = (0.0, 0usize);
                for chunk in eval.chunks(batch_size) {
                    let batch: Vec<&Example> = chunk.iter().collect();
                    let targets: usize = chunk.iter().map(target_count).sum();
                    sum += scalar(&batch_loss(&model, &batch, &self.options)?)? * targets as f64;
                    count += targets;
                }
                Ok(sum / count.max(1) as f64)
            }
            Objective::Gram => {
                let mut margins = Vec::with_capacity(eval.len());
                for chunk in eval.chunks(batch_size) {
                    margins.extend(correct_margins(&model, chunk, &self.options)?);
                }
                let right = margins
                    .chunks_exact(2)
                    .filter(|m| Verdict::from_margins(m[0], -m[1]).p_a > 0.5)
                    .count();
                Ok(right as f64 / (margins.len() / 2).max(1) as f64)
            }
            Objective::BradleyTerry => {
                let mut right = 0usize;
                for chunk in eval.chunks(batch_size) {
                    let rewards = comparison_rewards(&model, chunk, self.options.pad_id);
                    let values = to_vec(rewards)?;
                    let half = chunk.len();
                    right += (0..half).filter(|&i| values[i] > values[half + i]).count();
                }
                Ok(right as f64 / eval.len().max(1) as f64)
            }
        }
    }

    /// Write `output/checkpoint` atomically: into a temporary sibling directory, then renamed.
    pub fn save_checkpoint(&self) -> Result<()> {
        let Some(output) = &self.output else {
            return Ok(());
        };
        let dir = output.join(CHECKPOINT_DIR);
        let staging = output.join(format!(".{CHECKPOINT_DIR}.partial"));
        let previous = output.join(format!(".{CHECKPOINT_DIR}.previous"));
        for stale in [&staging, &previous] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).map_err(|e| Error::io(stale, e))?;
            }
        }
        std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        let model_path = staging.join(MODEL_FILE);
        self.model
            .clone()
            .save_file(&model_path)
            .map_err(|e| Error::checkpoint(&model_path, format!("{e:?}")))?;
        let optimizer_path = staging.join(OPTIMIZER_FILE);
        self.optimizer
            .save(&optimizer_path)
            .map_err(|e| Error::checkpoint(&optimizer_path, format!("{e:?}")))?;
        let state = TrainerState {
            step: self.step,
            options: self.options.clone(),
        };
        let json = serde_json::to_vec_pretty(&state).map_err(|e| Error::invalid(e.to_string()))?;
        crate::io::write_atomic(staging.join(STATE_FILE), &json)?;
        if dir.exists() {
            std::fs::rename(&dir, &previous).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::rename(&staging, &dir).map_err(|e| Error::io(&dir, e))?;
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| Error::io(&previous, e))?;
        }
        Ok(())
    }

    fn metrics_path(&self) -> Option<PathBuf> {
        self.output.as_ref().map(|dir| dir.join(METRICS_FILE))
    }

    fn append_metrics(&self, m: &StepMetrics) -> Result<()> {
        let Some(path) = self.metrics_path() else {
            return Ok(());
        };
        let fresh = !path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let eval = m.eval.map(|v| format!("{v:.6}")).unwrap_or_default();
        let mut line = String::new();
        if fresh {
            line.push_str(METRICS_HEADER);
            line.push('\n');
        }
        line.push_str(&format!(
            "{},{:.6e},{:.6},{eval},{:.1}\n",
            m.step, m.lr, m.loss, m.tokens_per_s
        ));
        file.write_all(line.as_bytes())
            .map_err(|e| Error::io(&path, e))
    }

    /// Drop `metrics.csv` rows for steps after the resumed one (they were never checkpointed).
    fn truncate_metrics(&self) -> Result<()> {
        let Some(path) = self.metrics_path() else {
            return Ok(());
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let kept: String = text
            .lines()
            .filter(|line| {
                line.split(',')
                    .next()
                    .and_then(|s| s.parse::<usize>().ok())
                    .is_none_or(|s| s <= self.step)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        crate::io::write_atomic(&path, kept.as_bytes())
    }
}

/// The example at position `i` of the endless seeded stream: epoch `e = i / n` is a permutation
/// of `0..n` drawn from `ChaCha8(seed, e)`, taken in units of `unit` consecutive examples that
/// stay together (a pair's two orders, so they share a micro-batch and their common prefix runs
/// once). Recomputed on demand, so the data order needs no saved state to resume.
fn stream_index(i: usize, n: usize, unit: usize, seed: u64) -> usize {
    let unit = if unit > 1 && n % unit == 0 { unit } else { 1 };
    let units = n / unit;
    let epoch = (i / n) as u64;
    let mut order: Vec<usize> = (0..units).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch);
    order.shuffle(&mut rng);
    let within = i % n;
    order[within / unit] * unit + within % unit
}

fn check_examples(examples: &[Example], objective: Objective, what: &str) -> Result<()> {
    for (i, example) in examples.iter().enumerate() {
        if example.objective() != objective {
            return Err(Error::invalid(format!(
                "{what} example {i} is a {:?} example, the run trains {objective:?}",
                example.objective()
            )));
        }
        let empty = match example {
            Example::Generation { ids, target_start } => {
                *target_start == 0 || ids.len() <= *target_start
            }
            Example::Verdict { ids, correct } => ids.is_empty() || *correct > 1,
            Example::Comparison { chosen, rejected } => chosen.is_empty() || rejected.is_empty(),
        };
        if empty {
            return Err(Error::invalid(format!(
                "{what} example {i} has no tokens to learn from"
            )));
        }
    }
    Ok(())
}

/// Target tokens of a generation example.
fn target_count(example: &Example) -> usize {
    match example {
        Example::Generation { ids, target_start } => ids.len() - target_start,
        _ => 0,
    }
}

/// The mean loss of a micro-batch, `[1]`.
fn batch_loss(model: &Trainee, batch: &[&Example], options: &TrainOptions) -> Result<Tensor<1>> {
    let device = model.llama.device();
    match options.objective {
        Objective::Gram => {
            let logits = verdict_logits(model, batch, options);
            let correct: Vec<i64> = batch
                .iter()
                .map(|e| match e {
                    Example::Verdict { correct, .. } => *correct as i64,
                    _ => 0,
                })
                .collect();
            let correct =
                Tensor::<1, Int>::from_data(TensorData::new(correct, [batch.len()]), &device);
            loss::preference_loss(logits, correct, options.label_smoothing)
        }
        Objective::Generation => {
            let sequences: Vec<&[u32]> = batch.iter().map(|e| sequence_of(e)).collect();
            let (ids, width) = right_pad(&sequences, options.pad_id, &device);
            let hidden = model.llama.hidden_states(ids);
            let d = model.llama.config.hidden_size;
            let (mut rows, mut targets) = (Vec::new(), Vec::new());
            for (b, example) in batch.iter().enumerate() {
                if let Example::Generation { ids, target_start } = example {
                    for t in *target_start..ids.len() {
                        rows.push((b * width + t - 1) as i64);
                        targets.push(ids[t] as i64);
                    }
                }
            }
            let n = rows.len();
            let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &device);
            let at_targets = hidden.reshape([batch.len() * width, d]).select(0, rows);
            let logits = at_targets.matmul(model.llama.output_weight().transpose());
            let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), &device);
            loss::masked_token_cross_entropy(logits, targets, Tensor::ones([n], &device))
        }
        Objective::BradleyTerry => {
            let examples: Vec<Example> = batch.iter().map(|e| (*e).clone()).collect();
            let rewards = comparison_rewards(model, &examples, options.pad_id);
            let half = batch.len();
            let margin = rewards.clone().narrow(0, 0, half) - rewards.narrow(0, half, half);
            Ok(-log_sigmoid(margin).mean())
        }
    }
}

fn sequence_of(example: &Example) -> &[u32] {
    match example {
        Example::Generation { ids, .. } | Example::Verdict { ids, .. } => ids,
        Example::Comparison { chosen, .. } => chosen,
    }
}

/// Final hidden states at each sequence's last real token, `[B, d]`.
///
/// When the sequences share a prefix (the judge instruction; with both orders of a pair in one
/// micro-batch, the question too), the prefix runs once with batch 1 and the rest of each
/// sequence attends to its keys and values ([`Llama::prefill`]); under autodiff the gradient
/// flows through those keys and values, so loss and gradients equal running every sequence whole.
fn last_hidden(model: &Trainee, sequences: &[&[u32]], pad_id: u32) -> Tensor<2> {
    let shortest = sequences.iter().map(|s| s.len()).min().unwrap_or(0);
    let shared = sequences
        .iter()
        .skip(1)
        .map(|s| common_prefix(sequences[0], s))
        .min()
        .unwrap_or(0)
        .min(shortest.saturating_sub(1));
    let prefix = (sequences.len() > 1 && shared >= MIN_SHARED_PREFIX)
        .then(|| model.llama.prefill(&sequences[0][..shared], None));
    model
        .llama
        .last_hidden_states(sequences, prefix.as_ref(), pad_id)
}

/// Shortest shared prefix worth an extra batch-1 pass.
const MIN_SHARED_PREFIX: usize = 8;

/// Verdict logits `[B, 2]` (`z_A`, `z_B`) of verdict examples.
fn verdict_logits(model: &Trainee, batch: &[&Example], options: &TrainOptions) -> Tensor<2> {
    let sequences: Vec<&[u32]> = batch.iter().map(|e| sequence_of(e)).collect();
    let hidden = last_hidden(model, &sequences, options.pad_id);
    model.llama.token_logits(hidden, &options.verdict_tokens)
}

/// `z_correct − z_other` per verdict example.
fn correct_margins(model: &Trainee, chunk: &[Example], options: &TrainOptions) -> Result<Vec<f64>> {
    let batch: Vec<&Example> = chunk.iter().collect();
    let logits = to_vec(verdict_logits(model, &batch, options))?;
    Ok(chunk
        .iter()
        .zip(logits.chunks_exact(2))
        .map(|(e, z)| {
            let margin = (z[0] - z[1]) as f64;
            match e {
                Example::Verdict { correct: 1, .. } => -margin,
                _ => margin,
            }
        })
        .collect())
}

/// Scalar rewards `[2B]`: the chosen sequences' then the rejected ones'.
fn comparison_rewards(model: &Trainee, chunk: &[Example], pad_id: u32) -> Tensor<1> {
    let mut sequences: Vec<&[u32]> = Vec::with_capacity(2 * chunk.len());
    for e in chunk {
        if let Example::Comparison { chosen, .. } = e {
            sequences.push(chosen);
        }
    }
    for e in chunk {
        if let Example::Comparison { rejected, .. } = e {
            sequences.push(rejected);
        }
    }
    let hidden = last_hidden(model, &sequences, pad_id);
    let n = sequences.len();
    match &model.score {
        Some(w) => hidden.matmul(w.val()).reshape([n]),
        None => Tensor::zeros([n], &model.llama.device()),
    }
}

fn to_vec<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let fail = |e: &dyn std::fmt::Debug| {
        Error::Device(format!("reading a tensor back from the device: {e:?}"))
    };
    let data = tensor.try_into_data().map_err(|e| fail(&e))?;
    data.try_to_vec::<f32>().map_err(|e| fail(&e))
}

fn scalar(tensor: &Tensor<1>) -> Result<f64> {
    Ok(to_vec(tensor.clone())?.first().copied().unwrap_or(f32::NAN) as f64)
}

/// Ids and ranks of the parameters that require gradients.
fn trainable_params(model: &Trainee) -> Vec<(ParamId, usize)> {
    struct Collect(Vec<(ParamId, usize)>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                self.0.push((param.id, D));
            }
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// Scale all gradients by `min(1, max_norm / ‖g‖)` where `‖g‖² = Σ_params Σ g²` (one read-back).
fn clip_global_norm(
    mut grads: GradientsParams,
    params: &[(ParamId, usize)],
    max_norm: f64,
) -> Result<GradientsParams> {
    if max_norm <= 0.0 || !max_norm.is_finite() {
        return Ok(grads);
    }
    let mut squares: Option<Tensor<1>> = None;
    for &(id, rank) in params {
        let sum = match rank {
            1 => grads.get::<1>(id).map(|g| g.square().sum()),
            2 => grads.get::<2>(id).map(|g| g.square().sum()),
            _ => None,
        };
        if let Some(sum) = sum {
            squares = Some(match squares {
                Some(total) => total + sum,
                None => sum,
            });
        }
    }
    let Some(squares) = squares else {
        return Ok(grads);
    };
    let norm = scalar(&squares)?.sqrt();
    if norm <= max_norm {
        return Ok(grads);
    }
    let factor = max_norm / (norm + 1e-6);
    for &(id, rank) in params {
        match rank {
            1 => {
                if let Some(g) = grads.remove::<1>(id) {
                    grads.register(id, g.mul_scalar(factor));
                }
            }
            2 => {
                if let Some(g) = grads.remove::<2>(id) {
                    grads.register(id, g.mul_scalar(factor));
                }
            }
            _ => {}
        }
    }
    Ok(grads)
}

/// The model's weights under Hugging Face names and layouts (projections back to `[out, in]`),
/// plus `score.weight` (`[1, d]`) for a Bradley–Terry head.
pub fn hf_tensors(model: &Trainee) -> Result<BTreeMap<String, HostTensor>> {
    let mut out = BTreeMap::new();
    let llama = &model.llama;
    let mut put = |name: String, tensor: HostTensor| {
        out.insert(name, tensor);
    };
    put(
        "model.embed_tokens.weight".into(),
        host(llama.embed_tokens.val())?,
    );
    for (i, layer) in llama.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        put(
            format!("{p}.input_layernorm.weight"),
            norm(&layer.input_layernorm)?,
        );
        put(
            format!("{p}.post_attention_layernorm.weight"),
            norm(&layer.post_attention_layernorm)?,
        );
        let attn = &layer.self_attn;
        for (name, proj) in [
            ("q_proj", &attn.q_proj),
            ("k_proj", &attn.k_proj),
            ("v_proj", &attn.v_proj),
            ("o_proj", &attn.o_proj),
        ] {
            projection(&mut put, &format!("{p}.self_attn.{name}"), proj)?;
        }
        if let (Some(q), Some(k)) = (&attn.q_norm, &attn.k_norm) {
            put(format!("{p}.self_attn.q_norm.weight"), norm(q)?);
            put(format!("{p}.self_attn.k_norm.weight"), norm(k)?);
        }
        for (name, proj) in [
            ("gate_proj", &layer.mlp.gate_proj),
            ("up_proj", &layer.mlp.up_proj),
            ("down_proj", &layer.mlp.down_proj),
        ] {
            projection(&mut put, &format!("{p}.mlp.{name}"), proj)?;
        }
    }
    put("model.norm.weight".into(), norm(&llama.norm)?);
    if let Some(w) = &llama.lm_head {
        put("lm_head.weight".into(), host(w.val())?);
    }
    if let Some(w) = &model.score {
        put("score.weight".into(), host(w.val().transpose())?);
    }
    Ok(out)
}

fn host<const D: usize>(tensor: Tensor<D>) -> Result<HostTensor> {
    let shape = tensor.dims().to_vec();
    Ok(HostTensor {
        shape,
        data: to_vec(tensor)?,
    })
}

fn norm(n: &RmsNorm) -> Result<HostTensor> {
    host(n.weight.val())
}

/// A projection under its Hugging Face name, `[out, in]`, with any LoRA adapter merged.
fn projection(put: &mut impl FnMut(String, HostTensor), name: &str, p: &Projection) -> Result<()> {
    put(
        format!("{name}.weight"),
        host(p.merged_weight().transpose())?,
    );
    if let Some(b) = &p.bias {
        put(format!("{name}.bias"), host(b.val())?);
    }
    Ok(())
}

/// Export the trained model as a Hugging Face directory (see [`save_hf_dir`]) that
/// `gram judge --model DIR` loads.
pub fn export(model: &Trainee, codec: &TextCodec, dir: &Path) -> Result<()> {
    save_hf_dir(dir, &model.llama.config, &hf_tensors(model)?, codec)
}

/// Read `metrics.csv` back (rows that do not parse are skipped).
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Some(StepMetrics {
                step: f.first()?.parse().ok()?,
                lr: f.get(1)?.parse().ok()?,
                loss: f.get(2)?.parse().ok()?,
                eval: f.get(3).and_then(|v| v.parse().ok()),
                tokens_per_s: f.get(4)?.parse().ok()?,
            })
        })
        .collect())
}

/// An SVG line plot of the training loss (blue, left axis) and the held-out metric (orange
/// dots and line, right axis) against the step, each axis spanning its series' range.
pub fn plot_svg(metrics: &[StepMetrics]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 360.0;
    const PAD: f64 = 48.0;
    let last_step = metrics.iter().map(|m| m.step).max().unwrap_or(1).max(1) as f64;
    let x = |step: usize| PAD + (W - 2.0 * PAD) * step as f64 / last_step;
    let series = |values: Vec<(usize, f64)>, color: &str, label: &str, right: bool| -> String {
        let finite: Vec<(usize, f64)> = values.into_iter().filter(|v| v.1.is_finite()).collect();
        let (lo, hi) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v.1), hi.max(v.1))
            });
        if finite.is_empty() {
            return String::new();
        }
        let span = if hi > lo { hi - lo } else { 1.0 };
        let y = |v: f64| H - PAD - (H - 2.0 * PAD) * (v - lo) / span;
        let points: Vec<String> = finite
            .iter()
            .map(|&(s, v)| format!("{:.1},{:.1}", x(s), y(v)))
            .collect();
        let axis_x = if right { W - PAD + 4.0 } else { 4.0 };
        let anchor = "start";
        let mut out = format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            out.push_str(&format!(
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"2\" fill=\"{color}\"/>\n"
            ));
        }
        out.push_str(&format!(
            "<text x=\"{axis_x}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"11\" text-anchor=\"{anchor}\">{hi:.4}</text>\n\
             <text x=\"{axis_x}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"11\" text-anchor=\"{anchor}\">{lo:.4}</text>\n\
             <text x=\"{axis_x}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"12\" text-anchor=\"{anchor}\">{label}</text>\n",
            y(hi) + 4.0,
            y(lo) + 4.0,
            PAD - 20.0,
        ));
        out
    };
    let loss = series(
        metrics.iter().map(|m| (m.step, m.loss)).collect(),
        "#1f77b4",
        "train loss",
        false,
    );
    let eval = series(
        metrics
            .iter()
            .filter_map(|m| Some((m.step, m.eval?)))
            .collect(),
        "#ff7f0e",
        "eval",
        true,
    );
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{PAD}\" y=\"{t}\" font-size=\"11\">0</text>\n\
         <text x=\"{r}\" y=\"{t}\" font-size=\"11\" text-anchor=\"end\">step {last_step}</text>\n\
         {loss}{eval}</svg>\n",
        b = H - PAD,
        r = W - PAD,
        t = H - PAD + 16.0,
    )
}
