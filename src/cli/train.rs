//! `gram pretrain` (stage 1) and `gram finetune` (stage 2, or the Bradley–Terry baseline): the
//! flags of [`gram::train::Recipe`], whose training hyper-parameters are
//! [`gram::train::TrainOptions`] itself.

use super::common::{DtypeArg, PromptArgs};
use gram::data::Format;
use gram::interrupt::StopFlag;
use gram::progress::Progress;
use gram::train::{Objective, Recipe, StepMetrics, TrainOptions};
use gram::{Error, Result};
use std::path::PathBuf;

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
    /// Output directory: metrics.csv and metrics.svg, checkpoint-<step>/ (for --resume), model/
    /// (the exported model), and a lock file while the run writes it.
    #[arg(long)]
    pub output: PathBuf,
    /// `auto`, `vulkan`, `metal`, `dx12`, an adapter index, or `cpu`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Data-parallel training on several devices, e.g. `0,1` or `vulkan:0,cpu`; `cpu,cpu` runs
    /// two replicas on one device. Each replica takes --batch-size examples of every
    /// micro-batch; gradients are summed on the first device, which steps the optimizer.
    #[arg(long, conflicts_with = "device", value_name = "LIST")]
    pub devices: Option<String>,
    /// Trained weights are always f32; a 16-bit type holds the frozen base of --lora-rank or
    /// --train-layers (`auto`: f32 when every weight trains).
    #[command(flatten)]
    pub dtype: DtypeArg,
    #[command(flatten)]
    pub train: TrainOptions,
    /// Longest sequence in tokens (longer inputs are cut).
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// Continue the run saved in OUTPUT/checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start from these weights (a Hugging Face directory, e.g. a stage-1 export) instead of
    /// --model's (the architecture comes from its config.json); --model still gives the tokenizer.
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
    run(args, Objective::Generation)
}

/// Stage 2 (or the Bradley–Terry baseline).
pub fn finetune(args: FinetuneArgs) -> Result<()> {
    let objective = match args.objective {
        FinetuneObjective::Gram => Objective::Gram,
        FinetuneObjective::Bt => Objective::BradleyTerry,
    };
    run(args.common, objective)
}

fn run(args: Args, objective: Objective) -> Result<()> {
    let mut devices = gram::device::select_list(args.devices.as_deref().unwrap_or(&args.device))?;
    let device = devices.remove(0);
    let recipe = Recipe {
        template: args.prompt.template_text()?,
        labels: args.prompt.labels()?,
        chat_template: !args.prompt.no_chat_template,
        chat_template_kwargs: args.prompt.chat_template_kwargs()?,
        model: args.model,
        init: args.init,
        data: args.data,
        eval: args.eval,
        format: args.format,
        output: args.output,
        device: device.clone(),
        replicas: devices.clone(),
        dtype: args.dtype.dtype,
        max_len: args.max_len,
        resume: args.resume,
        options: TrainOptions {
            objective,
            ..args.train
        },
    };
    let prepared = recipe.prepare()?;
    let on: Vec<String> = std::iter::once(&device)
        .chain(&devices)
        .map(gram::device::describe)
        .collect();
    let options = prepared.trainer.options();
    let trained = match (options.lora_rank, options.train_layers) {
        (Some(rank), _) => format!("LoRA rank {rank}"),
        (None, Some(1)) => "the top layer".to_string(),
        (None, Some(k)) => format!("the top {k} layers"),
        (None, None) => "all layers".to_string(),
    };
    let lr_source = match options.lr {
        Some(_) => "--lr".to_string(),
        None => format!("the default for {trained} at this width"),
    };
    eprintln!(
        "{}: {} training examples, {} held out, {} steps on {}, peak lr {:.1e} ({lr_source})",
        objective.name(),
        prepared.train.len(),
        prepared.eval.len(),
        prepared.total,
        on.join(" + "),
        prepared.trainer.peak_lr(),
    );
    let mut progress = Progress::new("steps", prepared.remaining(), !args.quiet);
    let interrupted =
        StopFlag::on_signal("interrupt: stopping after this step (Ctrl-C again to quit now)");
    let outcome = prepared.run(|m: &StepMetrics| {
        let eval = m.eval.map(|v| format!(", eval {v:.4}")).unwrap_or_default();
        progress.advance(
            1,
            &format!("loss {:.4}{eval}, {:.0} tok/s", m.loss, m.tokens_per_s),
        );
        !interrupted.raised()
    })?;
    match outcome.model_dir {
        Some(dir) => {
            eprintln!("exported {}", dir.display());
            Ok(())
        }
        None => Err(Error::invalid(format!(
            "interrupted after step {}; checkpointed in {} — run the same command with --resume \
             to continue",
            outcome.trainer.step(),
            gram::train::RunDir::at(&recipe.output)
                .resume_state_dir()
                .display()
        ))),
    }
}
