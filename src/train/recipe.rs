//! The whole recipe of `gram pretrain` and `gram finetune`, callable from Rust: load the model
//! once, build the training and held-out examples from a data file, train (or resume), plot
//! the metrics and export the model.
//!
//! ```no_run
//! use gram::train::{Objective, Recipe, TrainOptions};
//!
//! let mut options = TrainOptions::new(Objective::Gram, [0, 0], 0); // tokens set by the recipe
//! options.max_steps = Some(100);
//! let recipe = Recipe::new(
//!     "SmolLM2-135M-Instruct.Q4_1.gguf",
//!     "pairs.jsonl",
//!     "runs/stage2",
//!     gram::device::select("cpu")?,
//!     options,
//! );
//! let outcome = recipe.prepare()?.run(|m| {
//!     eprintln!("step {} loss {:.4}", m.step, m.loss);
//!     true
//! })?;
//! println!("model in {}", outcome.model_dir.unwrap().display());
//! # Ok::<(), gram::Error>(())
//! ```

use super::{ExampleBuilder, Objective, StepMetrics, TrainExample, TrainOptions, Trainer};
use crate::checkpoint::{Checkpoint, gguf};
use crate::data::{self, Format};
use crate::dtype::Dtype;
use crate::model::Llama;
use crate::prompt::{PromptBuilder, PromptTemplate, verdict_tokens};
use crate::tokenizer::{ChatTemplateKwargs, TextCodec};
use crate::{Error, Result};
use burn::tensor::{Device, FloatDType};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Everything a training run needs besides its hyper-parameters' defaults.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The starting model: a GGUF file or a Hugging Face directory (architecture, tokenizer,
    /// and weights unless `init` is given).
    pub model: PathBuf,
    /// Start from these weights (a Hugging Face directory, e.g. a stage-1 export) instead of
    /// `model`'s; `model` still names the tokenizer.
    pub init: Option<PathBuf>,
    /// Training data.
    pub data: PathBuf,
    /// Held-out data, same format.
    pub eval: Option<PathBuf>,
    /// Data format (`Auto`: detected from the first row).
    pub format: Format,
    /// The run's folder ([`RunDir`]).
    pub output: PathBuf,
    pub device: Device,
    /// More devices, each running a replica on a share of every micro-batch (data
    /// parallelism, [`Trainer::with_replicas`]); empty: `device` alone.
    pub replicas: Vec<Device>,
    /// The float type of the weights that do not train ([`Recipe::weight_dtype`]).
    pub dtype: Dtype,
    /// Longest sequence in tokens (longer inputs are cut); capped at the model's context.
    pub max_len: usize,
    /// Continue the run saved in `output`.
    pub resume: bool,
    /// The judge prompt template (stage 2); `None`: [`crate::prompt::DEFAULT_TEMPLATE`].
    pub template: Option<String>,
    /// The verdict labels (stage 2), each one token.
    pub labels: (String, String),
    /// Wrap the judge prompt in the model's chat template.
    pub chat_template: bool,
    /// Extra chat-template variables (e.g. Qwen3's `enable_thinking: false`).
    pub chat_template_kwargs: ChatTemplateKwargs,
    /// The hyper-parameters; `verdict_tokens` and `pad_id` are set from the tokenizer.
    pub options: TrainOptions,
}

impl Recipe {
    /// A recipe with the command line's defaults: no held-out data, format detected, sequences
    /// up to 1024 tokens, the default judge prompt with labels A and B in the chat template.
    pub fn new(
        model: impl Into<PathBuf>,
        data: impl Into<PathBuf>,
        output: impl Into<PathBuf>,
        device: Device,
        options: TrainOptions,
    ) -> Self {
        Recipe {
            model: model.into(),
            init: None,
            data: data.into(),
            eval: None,
            format: Format::Auto,
            output: output.into(),
            device,
            replicas: Vec::new(),
            dtype: Dtype::F32,
            max_len: 1024,
            resume: false,
            template: None,
            labels: ("A".into(), "B".into()),
            chat_template: true,
            chat_template_kwargs: ChatTemplateKwargs::new(),
            options,
        }
    }

    /// Load the model (once; under `init` only the tokenizer is read from `model`), build the
    /// examples, and start or resume the trainer.
    pub fn prepare(&self) -> Result<PreparedRun> {
        let objective = self.options.objective;
        let (mut checkpoint, codec) = match &self.init {
            None => {
                let checkpoint = Checkpoint::load(&self.model)?;
                let codec = checkpoint.codec.clone();
                (checkpoint, codec)
            }
            Some(init) => (Checkpoint::load(init)?, load_codec(&self.model)?),
        };
        let dtype = self.weight_dtype()?;
        // Loaded straight onto the device that trains (with gradient checkpointing if asked),
        // so making the weights autodiff leaves copies none of them.
        let mut device = self.device.clone().autodiff();
        if self.options.gradient_checkpointing {
            device = device.gradient_checkpointing();
        }
        let (llama, _) = Llama::from_checkpoint_as(&mut checkpoint, &device, dtype)?;
        drop(checkpoint);
        let max_len = self.max_len.min(llama.config.max_position_embeddings);
        let prompts = PromptBuilder::new(
            codec.clone(),
            PromptTemplate::or_default(self.template.as_deref())?,
            self.chat_template,
            max_len,
        )
        .with_chat_template_kwargs(self.chat_template_kwargs.clone());
        let build =
            |path: &Path| examples(path, self.format, objective, &prompts, self.options.seed);
        let train = build(&self.data)?;
        let eval = match &self.eval {
            Some(path) => build(path)?,
            None => Vec::new(),
        };
        if train.is_empty() {
            return Err(Error::data(
                &self.data,
                None,
                None,
                "no usable training rows",
            ));
        }
        let mut options = self.options.clone();
        options.verdict_tokens = verdict_tokens(&codec, &self.labels)?;
        options.pad_id = codec.padding_id();
        let total = options.total_steps(train.len());
        let inputs = self.inputs();
        let trainer = if self.resume {
            Trainer::resume_with_inputs(llama, options, self.output.clone(), inputs)?
        } else {
            Trainer::new_with_inputs(llama, options, Some(self.output.clone()), inputs)?
        }
        .with_replicas(&self.replicas);
        Ok(PreparedRun {
            trainer,
            train,
            eval,
            total,
            codec,
        })
    }
}

impl Recipe {
    /// The float type the model is loaded in: `dtype` resolved for the device
    /// ([`Dtype::resolve`]). Whatever it is, the weights that train are held in f32 with f32
    /// optimizer state ([`super::Learner::set_trainable`]), so a 16-bit type only makes sense
    /// when something is frozen: `auto` is f32 unless LoRA adapters or `--train-layers` leave
    /// a frozen base, and an explicit 16-bit type without either is an error.
    pub fn weight_dtype(&self) -> Result<FloatDType> {
        let frozen_base = self.options.lora_rank.is_some() || self.options.train_layers.is_some();
        match (self.dtype, frozen_base) {
            (_, true) | (Dtype::F32, _) => self.dtype.resolve(&self.device),
            (Dtype::Auto, false) => Ok(FloatDType::F32),
            (Dtype::F16 | Dtype::Bf16, false) => Err(Error::invalid(format!(
                "--dtype {}: every weight would train, and trained weights are held in f32; \
                 freeze a 16-bit base with --lora-rank R or --train-layers K, or use --dtype f32",
                self.dtype.name()
            ))),
        }
    }

    /// The settings beyond the options that a resumed run must share with the checkpoint:
    /// the model and initial-weights paths and a fingerprint of the files the weights come from
    /// ([`crate::io::fingerprint`]), data and held-out paths (absolute where they exist), format,
    /// sequence length, judge prompt template, labels, chat wrapping and the replica count.
    pub fn inputs(&self) -> super::RunInputs {
        let path = crate::io::absolute;
        let optional = |p: &Option<PathBuf>| p.as_deref().map(path).unwrap_or("none".into());
        vec![
            ("--model".into(), path(&self.model)),
            // Checkpoints hold only the weights that train; the rest is reloaded from here.
            (
                "weights (contents of --init, else --model)".into(),
                crate::io::fingerprint(self.init.as_ref().unwrap_or(&self.model)),
            ),
            ("--init".into(), optional(&self.init)),
            ("--data".into(), path(&self.data)),
            ("--eval".into(), optional(&self.eval)),
            (
                "--format".into(),
                format!("{:?}", self.format).to_lowercase(),
            ),
            ("--max-len".into(), self.max_len.to_string()),
            (
                "--template".into(),
                self.template.clone().unwrap_or("default".into()),
            ),
            (
                "--labels".into(),
                format!("{},{}", self.labels.0, self.labels.1),
            ),
            ("--chat-template".into(), self.chat_template.to_string()),
            // The replicas multiply the micro-batch, so they decide which rows each step reads.
            (
                "--devices (replicas)".into(),
                (1 + self.replicas.len()).to_string(),
            ),
            (
                "--chat-template-kwargs".into(),
                serde_json::to_string(&self.chat_template_kwargs).unwrap_or_default(),
            ),
            ("--dtype".into(), self.dtype.name().into()),
        ]
    }
}

/// A run ready to train: the model loaded, the examples built.
pub struct PreparedRun {
    pub trainer: Trainer,
    pub train: Vec<TrainExample>,
    pub eval: Vec<TrainExample>,
    /// Optimizer steps of the whole run (some may be done already, when resumed).
    pub total: usize,
    codec: TextCodec,
}

/// How a run ended.
pub struct Outcome {
    pub trainer: Trainer,
    /// The metrics of the steps this call ran.
    pub history: Vec<StepMetrics>,
    /// `on_step` asked to stop: the resume state is saved, nothing plotted or exported.
    pub stopped: bool,
    /// The exported Hugging Face directory, when the run finished.
    pub model_dir: Option<PathBuf>,
}

impl PreparedRun {
    /// Steps left to run.
    pub fn remaining(&self) -> usize {
        self.total.saturating_sub(self.trainer.step())
    }

    /// Train to the end (see [`Trainer::run`]; `on_step` returns whether to go on), then write
    /// `metrics.svg` and export the model to `model/`.
    pub fn run(mut self, mut on_step: impl FnMut(&StepMetrics) -> bool) -> Result<Outcome> {
        let mut stopped = false;
        let history = self.trainer.run(&self.train, &self.eval, self.total, |m| {
            let go_on = on_step(m);
            stopped |= !go_on;
            go_on
        })?;
        let run_dir = self
            .trainer
            .run_dir()
            .expect("a recipe has an output")
            .clone();
        let mut model_dir = None;
        if !stopped {
            run_dir.write_plot()?;
            let dir = run_dir.model_dir();
            super::export(&self.trainer.model, &self.codec, &dir)?;
            model_dir = Some(dir);
        }
        Ok(Outcome {
            trainer: self.trainer,
            history,
            stopped,
            model_dir,
        })
    }
}

/// The tokenizer of a GGUF file or Hugging Face directory, without reading its weights (a GGUF
/// file is read whole, but no tensor is decoded).
fn load_codec(path: &Path) -> Result<TextCodec> {
    if path.is_dir() {
        TextCodec::from_hf_dir(path)
    } else if path.is_file() {
        gguf::codec_from_metadata(&gguf::GgufFile::read(path)?)
    } else {
        Checkpoint::load(path).map(|c| c.codec)
    }
}

/// The token-level examples of a data file for `objective`.
fn examples(
    path: &Path,
    format: Format,
    objective: Objective,
    prompts: &PromptBuilder,
    seed: u64,
) -> Result<Vec<TrainExample>> {
    let mut build = ExampleBuilder {
        prompts,
        max_len: prompts.max_len(),
        rng: ChaCha8Rng::seed_from_u64(seed),
    };
    let task = objective.task();
    let mut out = Vec::new();
    for record in data::open(path, format)? {
        out.extend(task.examples(&record?, &mut build)?);
    }
    Ok(out)
}
