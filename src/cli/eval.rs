//! `gram eval`: judge a benchmark's labeled pairs and score them the benchmark's way.

use crate::cli::common::{JudgeArgs, ScaleArgs};
use clap::ValueEnum;
use gram::data::{self, Format, Record};
use gram::eval::{EvalOptions, Report, Scorer, scorer_for};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub judge: JudgeArgs,
    #[command(flatten)]
    pub scale: ScaleArgs,
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
    #[arg(long, conflicts_with = "shard")]
    pub report: Option<PathBuf>,
    /// Write the verdicts on every row here (JSONL; required with --shard, whose slices
    /// `gram merge` scores together).
    #[arg(long)]
    pub verdicts: Option<PathBuf>,
}

pub fn run(args: Args) -> gram::Result<()> {
    // A slice's output is its verdicts file.
    let slice_output = match (&args.scale.shard, &args.verdicts) {
        (Some(_), None) => {
            return Err(gram::Error::invalid(
                "--shard needs --verdicts FILE: the slice's verdicts, which `gram merge` scores",
            ));
        }
        (Some(_), Some(path)) => Some(path),
        (None, _) => None,
    };
    let (records, benchmark) = read_benchmark(&args.benchmark, args.format, args.limit)?;
    eprintln!(
        "{} rows from {} file(s), scored as {}",
        records.len(),
        args.benchmark.len(),
        benchmark.name()
    );

    let mut judge = args.scale.load(&args.judge)?;
    let options = EvalOptions {
        by: args.by.clone(),
        chunk: 4 * args.judge.batch_size.unwrap_or(8).max(1) * judge.judges().len(),
        progress: true,
    };
    let comparisons: Vec<Vec<gram::Pair>> =
        records.iter().map(|r| benchmark.comparisons(r)).collect();
    let rows = args.scale.rows(&gram::eval::calls(&comparisons, &options));
    let verdicts =
        gram::eval::judge_records(&mut judge, &records[rows.clone()], benchmark, &options)?;
    if let Some(path) = &args.verdicts {
        gram::merge::write_verdicts(path, rows.start, &verdicts)?;
    }
    if let Some(path) = slice_output {
        let format = args
            .format
            .to_possible_value()
            .map(|v| v.get_name().to_owned());
        let benchmarks: Vec<String> = args
            .benchmark
            .iter()
            .map(|p| gram::io::absolute(p))
            .collect();
        let inputs = json!({
            "benchmark": benchmarks,
            "format": format,
            "limit": args.limit,
            "by": args.by,
        });
        return args.scale.finish("eval", path, rows, records.len(), inputs);
    }
    let report = gram::eval::score(&records, &verdicts, benchmark, &options)?;
    print_report(&report, args.report.as_ref())
}

/// Print `report`'s table and write it as JSON to `path` if given.
pub fn print_report(report: &Report, path: Option<&PathBuf>) -> gram::Result<()> {
    print!("{}", report.table());
    if let Some(path) = path {
        report.write_json(path)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// The rows of every benchmark file (at most `limit` from each) and the scorer they share.
pub fn read_benchmark(
    paths: &[PathBuf],
    format: Format,
    limit: Option<usize>,
) -> gram::Result<(Vec<Record>, &'static dyn Scorer)> {
    let mut records: Vec<Record> = Vec::new();
    let mut benchmark: Option<(&dyn Scorer, &PathBuf)> = None;
    for path in paths {
        let rows = data::open(path, format)?;
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
        for row in rows.take(limit.unwrap_or(usize::MAX)) {
            records.push(row?);
        }
    }
    let Some((benchmark, _)) = benchmark else {
        return Err(gram::Error::invalid("no benchmark file given"));
    };
    Ok((records, benchmark))
}
