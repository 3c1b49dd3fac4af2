//! The training loop, the same for every objective: AdamW, the learning-rate [`Schedule`],
//! gradient accumulation, clipping by the global gradient norm, a seeded data order, held-out
//! evaluation, metrics, and the resume state.

use super::run_dir::{ResumeState, RunInputs, RunLock};
use super::{
    Learner, Objective, RunDir, Schedule, StepMetrics, TrainExample, TrainOptions, check_examples,
    scalar, to_vec,
};
use crate::model::{Llama, TrunkStore};
use crate::{Error, Result, parallel};
use burn::module::{Module, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;

/// The training loop.
pub struct Trainer {
    pub model: Learner,
    optimizer: ModuleOptimizer,
    options: TrainOptions,
    /// Trainable parameters and their ranks, for the global gradient norm.
    params: Vec<(ParamId, usize)>,
    step: usize,
    run_dir: Option<RunDir>,
    /// The settings beyond the options saved with (and compared on resuming) the checkpoints.
    inputs: RunInputs,
    /// Held while the run may write its folder.
    _lock: Option<RunLock>,
    /// The (autodiff) devices of the extra replicas ([`Trainer::with_replicas`]).
    replicas: Vec<Device>,
}

impl Trainer {
    /// Start a run on `llama`'s device (plain or `.autodiff()`; its weights become autodiff
    /// leaves). With an `output` directory, metrics (rows of an earlier run there dropped) and
    /// the resume state are written there, and the folder is locked ([`RunLock`]) while the
    /// trainer lives.
    pub fn new(llama: Llama, options: TrainOptions, output: Option<PathBuf>) -> Result<Self> {
        Self::new_with_inputs(llama, options, output, RunInputs::new())
    }

    /// [`Trainer::new`], recording `inputs` (the model and data paths, the sequence length, …)
    /// in the checkpoints for [`Trainer::resume_with_inputs`] to compare.
    pub fn new_with_inputs(
        llama: Llama,
        options: TrainOptions,
        output: Option<PathBuf>,
        inputs: RunInputs,
    ) -> Result<Self> {
        options.validate()?;
        let run_dir = output.map(RunDir::create).transpose()?;
        let lock = run_dir
            .as_ref()
            .map(|dir| RunLock::acquire(dir.path()))
            .transpose()?;
        if let Some(dir) = &run_dir {
            // A fresh run: the rows of an earlier one in this folder are not its own.
            dir.truncate_metrics(0)?;
        }
        Self::build(llama, options, run_dir, inputs, lock)
    }

    fn build(
        llama: Llama,
        options: TrainOptions,
        run_dir: Option<RunDir>,
        inputs: RunInputs,
        lock: Option<RunLock>,
    ) -> Result<Self> {
        options.validate()?;
        if let Some(k) = options.train_layers
            && k > llama.layers.len()
        {
            return Err(Error::invalid(format!(
                "--train-layers {k}: the model has only {} layers",
                llama.layers.len()
            )));
        }
        let mut model = Learner::new(llama, options.objective, options.seed);
        if let Some(rank) = options.lora_rank {
            model = model.add_lora(rank, options.lora_alpha);
        }
        let mut model = model.set_trainable(options.train_layers, options.gradient_checkpointing);
        if let Some(dir) = &options.trunk_cache {
            let n = model.llama.layers.len();
            let frozen = match options.train_layers {
                Some(k) if k < n && options.objective != Objective::Generation => n - k,
                _ => {
                    return Err(Error::invalid(
                        "--trunk-cache records the frozen layers below --train-layers K (K less \
                         than the model's layers) for stage 2 or --objective bt",
                    ));
                }
            };
            let store = TrunkStore::open(dir, &model.llama, frozen)?;
            model = model.with_trunk_store(store);
        }
        let optimizer = options.adamw().init();
        let params = model.trainable_params();
        Ok(Trainer {
            model,
            optimizer,
            options,
            params,
            step: 0,
            run_dir,
            inputs,
            _lock: lock,
            replicas: Vec::new(),
        })
    }

    /// Data parallelism: every micro-batch grows to `batch_size × (1 + devices.len())`
    /// examples, split into contiguous shares ([`parallel::shares`], a pair's two orders on one
    /// replica); the model's own device runs the first, each of `devices` (plain devices, e.g.
    /// another GPU, or the same device again for a second replica) a fork of the current
    /// weights on the next, all concurrently. Each replica's loss is its share's mean weighted
    /// by the share's part of the batch (examples, or target tokens for stage 1), so the summed
    /// gradients — moved to the main device — equal those of the whole micro-batch on one
    /// device. One optimizer step follows, and the next step forks the new weights again.
    pub fn with_replicas(mut self, devices: &[Device]) -> Self {
        let checkpointing = self.options.gradient_checkpointing;
        self.replicas = (devices.iter())
            .map(|device| {
                let device = device.clone().autodiff();
                if checkpointing {
                    device.gradient_checkpointing()
                } else {
                    device
                }
            })
            .collect();
        self
    }

    /// Devices running a share of each micro-batch: 1 + the extra replicas.
    pub fn replica_count(&self) -> usize {
        1 + self.replicas.len()
    }

    /// Continue the run saved in `output`'s newest complete checkpoint
    /// ([`RunDir::latest_checkpoint`]): the weights that train (with their parameter ids, which
    /// key the optimizer state), AdamW moments and the step. A checkpoint holds nothing of the
    /// frozen weights, so `llama` must be the model the run started from (the CLI checks its
    /// files' fingerprint among the inputs). `metrics.csv` rows after that step are dropped.
    /// The options given must match the saved ones except the step budget and the eval/save
    /// intervals.
    pub fn resume(llama: Llama, options: TrainOptions, output: PathBuf) -> Result<Self> {
        Self::resume_with_inputs(llama, options, output, RunInputs::new())
    }

    /// [`Trainer::resume`], refused when `inputs` differ from those the checkpoint recorded
    /// (each difference named; inputs it does not record are not compared).
    pub fn resume_with_inputs(
        llama: Llama,
        options: TrainOptions,
        output: PathBuf,
        inputs: RunInputs,
    ) -> Result<Self> {
        let run_dir = RunDir::at(&output);
        if run_dir.latest_checkpoint().is_none() {
            return Err(Error::invalid(format!(
                "--resume: no complete checkpoint in {} (start without --resume)",
                output.display()
            )));
        }
        let lock = RunLock::acquire(&output)?;
        let (state, dir) = run_dir.load_state(&options, &inputs)?;
        let mut trainer = Self::build(llama, options, Some(run_dir.clone()), inputs, Some(lock))?;
        let model = RunDir::load_weights(&dir, trainer.model)?;
        let options = &trainer.options;
        trainer.model = model.set_trainable(options.train_layers, options.gradient_checkpointing);
        trainer.params = trainer.model.trainable_params();
        trainer.optimizer = RunDir::load_optimizer(&dir, &trainer.options)?;
        trainer.step = state.step;
        run_dir.truncate_metrics(trainer.step)?;
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

    /// The peak learning rate: `--lr`, or the default for what is trained and the model's
    /// width ([`TrainOptions::peak_lr`]).
    pub fn peak_lr(&self) -> f64 {
        self.options.peak_lr(self.hidden_size())
    }

    fn hidden_size(&self) -> usize {
        self.model.llama.config.hidden_size
    }

    /// The output folder, when the run has one.
    pub fn run_dir(&self) -> Option<&RunDir> {
        self.run_dir.as_ref()
    }

    /// Train until `total` optimizer steps are done, evaluating on `eval` (if not empty) every
    /// `eval_every` steps and at the end, saving the resume state every `save_every` steps and
    /// at the end. `on_step` sees every step's metrics (for a progress line) and returns whether
    /// to go on; when it says stop, the resume state is saved and this returns early. Returns
    /// the metrics of the steps run by this call.
    pub fn run(
        &mut self,
        train: &[TrainExample],
        eval: &[TrainExample],
        total: usize,
        mut on_step: impl FnMut(&StepMetrics) -> bool,
    ) -> Result<Vec<StepMetrics>> {
        check_examples(train, self.options.objective, "training")?;
        check_examples(eval, self.options.objective, "evaluation")?;
        let schedule: Schedule = self.options.schedule(total, self.hidden_size());
        let every = |n: usize, step: usize| n > 0 && step.is_multiple_of(n);
        let mut history = Vec::new();
        while self.step < total {
            let start = Instant::now();
            let lr = schedule.lr(self.step);
            let (loss, tokens) = self.train_step(train, lr)?;
            let tokens_per_s = tokens as f64 / start.elapsed().as_secs_f64().max(1e-9);
            let last = self.step == total;
            let eval_due = !eval.is_empty() && (last || every(self.options.eval_every, self.step));
            let held_out = if eval_due {
                Some(self.evaluate(eval)?)
            } else {
                None
            };
            let metrics = StepMetrics {
                step: self.step,
                lr,
                loss,
                eval: held_out,
                tokens_per_s,
                seconds: Some(start.elapsed().as_secs_f64()),
            };
            if let Some(dir) = &self.run_dir {
                dir.append_metrics(&metrics)?;
            }
            let go_on = on_step(&metrics);
            if !go_on || last || every(self.options.save_every, self.step) {
                self.save()?;
            }
            history.push(metrics);
            if !go_on {
                break;
            }
        }
        Ok(history)
    }

    /// One optimizer step: `grad_accum` micro-batches (of `batch_size` examples per replica)
    /// from the seeded stream, their mean loss's gradients accumulated, clipped to
    /// `max_grad_norm` by global norm, AdamW at `lr`. Returns the mean loss and the real tokens
    /// processed.
    pub fn train_step(&mut self, train: &[TrainExample], lr: f64) -> Result<(f64, usize)> {
        if train.is_empty() {
            return Err(Error::invalid("no training examples"));
        }
        let micro = self.options.batch_size * self.replica_count();
        let accum = self.options.grad_accum;
        let unit = self.options.objective.task().unit();
        let mut accumulator = GradientsAccumulator::<Learner>::new();
        let (mut loss_sum, mut tokens) = (0.0, 0usize);
        for m in 0..accum {
            let first = (self.step * accum + m) * micro;
            let batch: Vec<&TrainExample> = (first..first + micro)
                .map(|i| &train[stream_index(i, train.len(), unit, self.options.seed)])
                .collect();
            tokens += batch.iter().map(|e| e.tokens()).sum::<usize>();
            let (loss, shares) = self.micro_batch(&batch, accum)?;
            loss_sum += loss;
            for grads in shares {
                accumulator.accumulate(&self.model, grads);
            }
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

    /// The mean loss of `batch` and the gradients of `loss / accum`, one set per replica that
    /// had a share (on the main device; their sum is the batch's gradient).
    fn micro_batch(
        &self,
        batch: &[&TrainExample],
        accum: usize,
    ) -> Result<(f64, Vec<GradientsParams>)> {
        let task = self.options.objective.task();
        let shares = parallel::shares(batch.len(), self.replica_count(), task.unit());
        let weights: Vec<f64> = (shares.iter())
            .map(|range| {
                batch[range.clone()]
                    .iter()
                    .map(|e| task.loss_weight(e))
                    .sum()
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let main = self.model.llama.device();
        // Replica r's loss is its share's mean scaled by `weights[r] / total`; r = 0 runs on the
        // main model itself, the others on forks of it.
        let run = |model: &Learner, r: usize| -> Result<(f64, GradientsParams)> {
            let loss = task.batch_loss(model, &batch[shares[r].clone()], &self.options)?;
            let part = weights[r] / total;
            let value = scalar(&loss)? * part;
            let loss = loss.mul_scalar(part).div_scalar(accum as f64);
            let grads = GradientsParams::from_grads(loss.backward(), model);
            // The main model's gradients are already where the optimizer steps.
            let grads = if r == 0 {
                grads
            } else {
                grads.to_device(&main, model)
            };
            Ok((value, grads))
        };
        let results: Vec<Result<(f64, GradientsParams)>> = std::thread::scope(|scope| {
            let forks: Vec<_> = (self.replicas.iter().enumerate())
                .filter(|(i, _)| !shares[i + 1].is_empty())
                .map(|(i, device)| {
                    let run = &run;
                    let model = &self.model;
                    scope.spawn(move || run(&model.clone().fork(device), i + 1))
                })
                .collect();
            let mut results = vec![run(&self.model, 0)];
            results.extend(forks.into_iter().map(|fork| {
                fork.join()
                    .unwrap_or_else(|_| Err(Error::invalid("a training replica panicked")))
            }));
            results
        });
        let (mut loss, mut grads) = (0.0, Vec::with_capacity(results.len()));
        for result in results {
            let (value, share) = result?;
            loss += value;
            grads.push(share);
        }
        Ok((loss, grads))
    }

    /// The mean loss of `batch` and the gradient of every trainable parameter (in the module's
    /// visiting order, row-major), without updating anything — for checking devices agree.
    pub fn gradients(&self, batch: &[TrainExample]) -> Result<(f64, Vec<Vec<f32>>)> {
        check_examples(batch, self.options.objective, "gradient")?;
        let batch: Vec<&TrainExample> = batch.iter().collect();
        let (loss, shares) = self.micro_batch(&batch, 1)?;
        let mut accumulator = GradientsAccumulator::<Learner>::new();
        for share in shares {
            accumulator.accumulate(&self.model, share);
        }
        let grads = accumulator.grads();
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

    /// The held-out metric on `eval`, without gradients: pairwise accuracy for Gram and
    /// Bradley–Terry, the mean token loss for Generation (see each objective's module).
    pub fn evaluate(&self, eval: &[TrainExample]) -> Result<f64> {
        let task = self.options.objective.task();
        task.evaluate(&self.model.valid(), eval, &self.options)
    }

    /// Save the resume state in `output/checkpoint-<step>` ([`RunDir`] tells how it survives a
    /// crash at any instant); nothing without an output.
    pub fn save(&self) -> Result<()> {
        let Some(dir) = &self.run_dir else {
            return Ok(());
        };
        let state = ResumeState {
            step: self.step,
            options: self.options.clone(),
            inputs: self.inputs.clone(),
        };
        dir.save_state(&self.model, &self.optimizer, &state)
    }
}

/// The example at position `i` of the endless seeded stream: epoch `e = i / n` is a permutation
/// of `0..n` drawn from `ChaCha8(seed, e)`, taken in units of `unit` consecutive examples that
/// stay together (a pair's two orders, so they share a micro-batch and their common prefix runs
/// once). Recomputed on demand, so the data order needs no saved state to resume.
fn stream_index(i: usize, n: usize, unit: usize, seed: u64) -> usize {
    let unit = if unit > 1 && n.is_multiple_of(unit) {
        unit
    } else {
        1
    };
    let units = n / unit;
    let epoch = (i / n) as u64;
    let mut order: Vec<usize> = (0..units).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch);
    order.shuffle(&mut rng);
    let within = i % n;
    order[within / unit] * unit + within % unit
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
