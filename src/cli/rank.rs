//! `gram rank`: rank each row's responses with the judge.
//!
//! Input: JSON lines `{"prompt", "responses": [...]}` (other fields pass through). Output: each
//! row plus `best`, `order`, `scores`, `comparisons`, `forward_passes` (see [`gram::rank`]).

use super::common::{JudgeArgs, RankLimitArgs};
use gram::Result;
use gram::data::jsonl::process_rows;
use gram::rank::{Strategy, rank_rows_with};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// JSON-lines input; `-` reads standard input.
    pub input: PathBuf,
    /// Where to write the ranked rows (JSON lines); default: standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// `linear` (best-of-n), `knockout` or `round-robin` (Bradley–Terry).
    #[arg(long, default_value = "linear")]
    pub strategy: Strategy,
    /// Rows ranked together: each step's comparisons of these rows form one judge call.
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
        |rows| rank_rows_with(&mut judge, rows, args.strategy, &limits),
    )
}
