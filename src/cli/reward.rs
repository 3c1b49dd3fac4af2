//! `gram reward`: scalar RL rewards from the judge.
//!
//! Input rows `{"prompt", "response", "reference"}` gain `reward` = how much the response beats
//! the reference (both orders averaged); rows `{"prompt", "responses": [...]}` gain `rewards`,
//! relative to the group (see `--reference`). All pairs of `--rows-per-call` rows form one
//! judge call. See [`gram::reward`].

use super::common::{JudgeArgs, RankLimitArgs};
use gram::Result;
use gram::data::jsonl::process_rows;
use gram::reward::{ReferenceChoice, Scale, reward_rows_with};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// JSON-lines input; `-` reads standard input.
    pub input: PathBuf,
    /// Where to write the rewarded rows (JSON lines); default: standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// `probability` (p), `log-odds` (ln p/(1−p)) or `centered` (p − ½).
    #[arg(long, default_value = "log-odds")]
    pub output_scale: Scale,
    /// For group rows: `first`, `greedy-field` (the row's `greedy`), `longest` or `round-robin`.
    #[arg(long, default_value = "first")]
    pub reference: ReferenceChoice,
    /// Rows whose pairs are judged in one call.
    #[arg(long, default_value_t = 64)]
    pub rows_per_call: usize,
    #[command(flatten)]
    pub limits: RankLimitArgs,
}

pub fn run(args: Args) -> Result<()> {
    let limits = args.limits.limits();
    let mut judge = args.judge.load()?;
    process_rows(
        &args.input,
        args.output.as_deref(),
        args.rows_per_call,
        |rows| reward_rows_with(&mut judge, rows, args.reference, args.output_scale, &limits),
    )
}
