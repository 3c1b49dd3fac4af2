//! `gram`: train and use generative reward models from the command line.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "gram",
    version,
    about = "Generative foundation reward models (GRAM) on any GPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the compute devices (wgpu adapters and the CPU).
    Devices(cli::devices::Args),
    /// Judge response pairs: P(A is better), both orders averaged.
    Judge(cli::judge::Args),
    /// Rank several responses to a prompt (best-of-n, knockout, round-robin).
    Rank(cli::rank::Args),
    /// Scalar rewards for RL: how much a response beats a reference.
    Reward(cli::reward::Args),
    /// Evaluate on a benchmark file (RewardBench, RM-Bench, JudgeBench, LLMBar, HH-RLHF).
    Eval(cli::eval::Args),
    /// Combine the slices of a sharded `judge` or `eval` run (`--shard i/N`).
    Merge(cli::merge::Args),
    /// Serve the judge over HTTP.
    Serve(cli::serve::Args),
    /// Build unlabeled pairs from files of model outputs.
    Pairs(cli::pairs::Args),
    /// Training stage 1: learn to generate both responses of unlabeled pairs.
    Pretrain(cli::train::Args),
    /// Training stage 2: learn the judge's verdict on labeled pairs (or a Bradley–Terry head).
    Finetune(cli::train::FinetuneArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Devices(args) => cli::devices::run(args),
        Command::Judge(args) => cli::judge::run(args),
        Command::Rank(args) => cli::rank::run(args),
        Command::Reward(args) => cli::reward::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Merge(args) => cli::merge::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Pairs(args) => cli::pairs::run(args),
        Command::Pretrain(args) => cli::train::pretrain(args),
        Command::Finetune(args) => cli::train::finetune(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
