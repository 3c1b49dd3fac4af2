//! `gram eval`: judge a benchmark's labeled pairs and score them the benchmark's way.

use crate::cli::common::JudgeArgs;
use gram::data::{self, Format, Record};
use gram::eval::{EvalOptions, Scorer, scorer_for};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Benchmark files (JSONL, JSON array, `.gz`); several files of one benchmark are scored
    /// together (e.g. all four RM-Bench domains).
    #[arg(long, required = true, num_args = 1..)]
    pub benchmark: Vec<PathBuf>,
    /// The data format, which also picks the scoring: `rewardbench`, `rewardbench2`,
    /// `rm-bench` and `judgebench` are scored their own way, every other format by plain
    /// accuracy.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Use only the first N rows of each file.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also report accuracy grouped by this field of the rows (`group` = subset/domain/file).
    #[arg(long)]
    pub by: Option<String>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn run(args: Args) -> gram::Result<()> {
    let mut records: Vec<Record> = Vec::new();
    let mut benchmark: Option<(&dyn Scorer, &PathBuf)> = None;
    for path in &args.benchmark {
        let rows = data::open(path, args.format)?;
        let this = scorer_for(rows.format());
        match benchmark {
            Some((first, first_path)) if first.name() != this.name() => {
                return Err(gram::Error::invalid(format!(
                    "{} is scored as {} but {} as {}: evaluate them separately",
                    first_path.display(),
                    first.name(),
                    path.display(),
                    this.name()
                )));
            }
            _ => benchmark = Some((this, path)),
        }
        for row in rows.take(args.limit.unwrap_or(usize::MAX)) {
            records.push(row?);
        }
    }
    let Some((benchmark, _)) = benchmark else {
        return Err(gram::Error::invalid("no benchmark file given"));
    };
    eprintln!(
        "{} rows from {} file(s), scored as {}",
        records.len(),
        args.benchmark.len(),
        benchmark.name()
    );

    let mut judge = args.judge.load()?;
    let options = EvalOptions {
        by: args.by.clone(),
        chunk: 4 * args.judge.batch_size.unwrap_or(8).max(1),
        progress: true,
    };
    let report = gram::eval::evaluate(&mut judge, &records, benchmark, &options)?;
    print!("{}", report.table());
    if let Some(path) = &args.report {
        report.write_json(path)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
