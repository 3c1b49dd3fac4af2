//! `gram pairs`: unlabeled response pairs from several models' outputs on the same prompts.

use gram::data::unlabeled::{self, PairOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model-output files: AlpacaEval `model_outputs.json`, Arena-Hard `question.jsonl` plus
    /// per-model answer files, or JSONL `{"prompt", "response"[, "model"]}`.
    #[arg(required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Where to write the pairs (JSONL `prompt, response_a, response_b, model_a, model_b`).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Pairs drawn per prompt (default: every pair of different responses).
    #[arg(long)]
    pub per_prompt: Option<usize>,
    /// Seed for drawing pairs and their A/B order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The most pairs to make in all (checked before any is made).
    #[arg(long, default_value_t = PairOptions::DEFAULT_MAX_PAIRS)]
    pub max_pairs: usize,
}

pub fn run(args: Args) -> gram::Result<()> {
    let outputs = unlabeled::read_outputs(&args.inputs)?;
    let set = unlabeled::build_pairs(
        &outputs,
        PairOptions {
            per_prompt: args.per_prompt,
            seed: args.seed,
            max_pairs: args.max_pairs,
        },
    )?;
    unlabeled::write_pairs(&args.out, &set.pairs)?;
    eprintln!(
        "{} outputs, {} prompts ({} empty and {} repeated responses dropped): {} pairs written to {}",
        outputs.len(),
        set.prompts,
        set.empty,
        set.duplicates,
        set.pairs.len(),
        args.out.display()
    );
    Ok(())
}
