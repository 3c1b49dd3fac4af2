//! `gram pretrain` (stage 1) and `gram finetune` (stage 2, or the Bradley–Terry baseline).

use super::common::PromptArgs;
use gram::checkpoint::Checkpoint;
use gram::data::{self, Example as Row, Format};
use gram::interrupt::StopFlag;
use gram::model::Llama;
use gram::progress::Progress;
use gram::prompt::{PromptBuilder, PromptTemplate};
use gram::tokenizer::TextCodec;
use gram::train::{self, Example, Objective, StepMetrics, TrainOptions, Trainer};
use gram::{Error, Preference, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// The objective `gram finetune` trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FinetuneObjective {
    /// The generative judge: the verdict token of the judge prompt.
    Gram,
    /// A scalar value head with the Bradley–Terry loss (discriminative baseline).
    Bt,
}

/// Options of both training stages.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The starting model: a GGUF file or a Hugging Face directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Training data.
    #[arg(long)]
    pub data: PathBuf,
    /// Data format (detected from the first row by default).
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Held-out data (same format) evaluated every --eval-every steps and at the end.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// Output directory: metrics.csv and metrics.svg, checkpoint/ (for --resume), model/ (the
    /// exported model).
    #[arg(long)]
    pub output: PathBuf,
    /// `auto`, `vulkan`, `metal`, `dx12`, an adapter index, or `cpu`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Passes over the training data.
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
    /// Peak learning rate (linear warmup, cosine decay).
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    /// Fraction of the steps spent warming up.
    #[arg(long, default_value_t = 0.03)]
    pub warmup_ratio: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Clip gradients to this global norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Mass ε of the preference loss on the wrong verdict (stage 2).
    #[arg(long, default_value_t = gram::loss::DEFAULT_LABEL_SMOOTHING)]
    pub label_smoothing: f32,
    /// Train only the top K decoder layers and the final norm.
    #[arg(long, conflicts_with = "lora_rank")]
    pub train_layers: Option<usize>,
    /// Train LoRA adapters of rank R on every attention and MLP projection instead of the
    /// weights (merged into the weights on export).
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// LoRA scale numerator: adapters are scaled by ALPHA / R.
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Recompute memory-bound activations in the backward pass instead of keeping them
    /// (burn's gradient checkpointing): less memory, more compute.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Longest sequence in tokens (longer inputs are cut).
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// Seed of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the run checkpointed in OUTPUT/checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Evaluate every N steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Start from these weights (a Hugging Face directory, e.g. a stage-1 export) instead of
    /// --model's; --model still names the architecture and tokenizer.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// The judge prompt (stage 2; `gram judge` must then be given the same).
    #[command(flatten)]
    pub prompt: PromptArgs,
}

/// `gram finetune` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub common: Args,
    /// `gram`: the generative judge; `bt`: a Bradley–Terry scalar head.
    #[arg(long, value_enum, default_value = "gram")]
    pub objective: FinetuneObjective,
}

/// Stage 1: learn to generate both responses given the prompt.
pub fn pretrain(args: Args) -> Result<()> {
    run(&args, Objective::Generation)
}

/// Stage 2 (or the Bradley–Terry baseline).
pub fn finetune(args: FinetuneArgs) -> Result<()> {
    let objective = match args.objective {
        FinetuneObjective::Gram => Objective::Gram,
        FinetuneObjective::Bt => Objective::BradleyTerry,
    };
    run(&args.common, objective)
}

fn run(args: &Args, objective: Objective) -> Result<()> {
    let device = gram::device::select(&args.device)?;
    let mut checkpoint = Checkpoint::load(args.init.as_deref().unwrap_or(args.model.as_path()))?;
    let codec = match &args.init {
        Some(_) => Checkpoint::load(&args.model)?.codec,
        None => checkpoint.codec.clone(),
    };
    let llama = Llama::from_checkpoint(&mut checkpoint, &device.clone().autodiff())?;
    drop(checkpoint);
    let max_len = args.max_len.min(llama.config.max_position_embeddings);

    let template = args.prompt.template_text()?;
    let prompts = PromptBuilder::new(
        codec.clone(),
        PromptTemplate::or_default(template.as_deref())?,
        !args.prompt.no_chat_template,
        max_len,
    );
    let train_examples = examples(
        &args.data,
        args.format,
        objective,
        &prompts,
        &codec,
        max_len,
        args.seed,
    )?;
    let eval_examples = match &args.eval {
        Some(path) => examples(
            path,
            args.format,
            objective,
            &prompts,
            &codec,
            max_len,
            args.seed,
        )?,
        None => Vec::new(),
    };
    if train_examples.is_empty() {
        return Err(Error::data(
            &args.data,
            None,
            None,
            "no usable training rows",
        ));
    }

    let verdict_tokens = gram::prompt::verdict_tokens(&codec, &args.prompt.labels())?;
    let pad_id = codec.padding_id();
    let mut options = TrainOptions::new(objective, verdict_tokens, pad_id);
    options.epochs = args.epochs;
    options.max_steps = args.max_steps;
    options.batch_size = args.batch_size;
    options.grad_accum = args.grad_accum;
    options.lr = args.lr;
    options.warmup_ratio = args.warmup_ratio;
    options.weight_decay = args.weight_decay;
    options.max_grad_norm = args.max_grad_norm;
    options.label_smoothing = args.label_smoothing;
    options.train_layers = args.train_layers;
    options.lora_rank = args.lora_rank;
    options.lora_alpha = args.lora_alpha;
    options.gradient_checkpointing = args.gradient_checkpointing;
    options.seed = args.seed;
    options.eval_every = args.eval_every;
    options.save_every = args.save_every;
    let total = options.total_steps(train_examples.len());

    let mut trainer = if args.resume {
        Trainer::resume(llama, options, args.output.clone())?
    } else {
        Trainer::new(llama, options, Some(args.output.clone()))?
    };
    eprintln!(
        "{} {} training examples, {} held out, {total} steps on {}",
        match objective {
            Objective::Generation => "stage 1:",
            Objective::Gram => "stage 2:",
            Objective::BradleyTerry => "bradley-terry:",
        },
        train_examples.len(),
        eval_examples.len(),
        gram::device::describe(&device),
    );
    let mut progress = Progress::new("steps", total.saturating_sub(trainer.step()), !args.quiet);
    let interrupted =
        StopFlag::on_signal("interrupt: stopping after this step (Ctrl-C again to quit now)");
    trainer.run(&train_examples, &eval_examples, total, |m: &StepMetrics| {
        let eval = m.eval.map(|v| format!(", eval {v:.4}")).unwrap_or_default();
        progress.advance(
            1,
            &format!("loss {:.4}{eval}, {:.0} tok/s", m.loss, m.tokens_per_s),
        );
        !interrupted.raised()
    })?;
    if interrupted.raised() {
        return Err(Error::invalid(format!(
            "interrupted after step {}; checkpointed in {} — run the same command with --resume \
             to continue",
            trainer.step(),
            args.output.join("checkpoint").display()
        )));
    }
    let metrics = train::read_metrics(&args.output.join("metrics.csv"))?;
    gram::io::write_atomic(
        args.output.join("metrics.svg"),
        train::plot_svg(&metrics).as_bytes(),
    )?;
    let dir = args.output.join("model");
    train::export(&trainer.model, &codec, &dir)?;
    eprintln!("exported {}", dir.display());
    Ok(())
}

/// The token-level examples of a data file for `objective`.
fn examples(
    path: &Path,
    format: Format,
    objective: Objective,
    prompts: &PromptBuilder,
    codec: &TextCodec,
    max_len: usize,
    seed: u64,
) -> Result<Vec<Example>> {
    // Labeled rows used for stage 1 have their labels dropped: the order of the two responses
    // is then drawn at random so the chosen one is not always first.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for record in data::open(path, format)? {
        let record = record?;
        let preferences: Vec<Preference> = record.preferences();
        match objective {
            Objective::Generation => {
                let pairs: Vec<(String, String, String)> = match &record.example {
                    Row::Pair(p) => {
                        vec![(p.prompt.clone(), p.response_a.clone(), p.response_b.clone())]
                    }
                    _ => preferences
                        .into_iter()
                        .map(|p| {
                            if rng.random::<bool>() {
                                (p.prompt, p.rejected, p.chosen)
                            } else {
                                (p.prompt, p.chosen, p.rejected)
                            }
                        })
                        .collect(),
                };
                for (x, a, b) in pairs {
                    out.extend(train::generation_example(codec, &x, &a, &b, max_len)?);
                }
            }
            Objective::Gram | Objective::BradleyTerry => {
                if preferences.is_empty() {
                    return Err(record
                        .location
                        .error(None, "stage 2 needs labeled pairs (chosen/rejected)"));
                }
                for preference in &preferences {
                    let at_row = |e: Error| record.location.error(None, e.to_string());
                    if objective == Objective::Gram {
                        out.extend(train::verdict_examples(prompts, preference).map_err(at_row)?);
                    } else {
                        out.push(
                            train::comparison_example(codec, preference, max_len)
                                .map_err(at_row)?,
                        );
                    }
                }
            }
        }
    }
    Ok(out)
}
