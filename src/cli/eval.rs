//! `gram eval`: judge a benchmark's labeled pairs and score them the benchmark's way.

use crate::cli::common::{JudgeArgs, ScaleArgs};
use clap::ValueEnum;
use gram::Verdict;
use gram::data::{self, Format, Record};
use gram::eval::{EvalOptions, Journal, Report, Scorer, scorer_for};
use gram::interrupt::StopFlag;
use serde_json::json;
use std::ops::Range;
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
    /// Continue an interrupted run: while a run with --report or --verdicts lasts, the verdicts
    /// of each call are kept in a journal beside that file (`<file>.journal.jsonl`); with
    /// --resume only the rows it lacks are judged. The first Ctrl-C stops after the current
    /// call.
    #[arg(long)]
    pub resume: bool,
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

    gram::eval::check_records(&records, benchmark)?;
    let mut judge = args.scale.load(&args.judge)?;
    let options = EvalOptions {
        by: args.by.clone(),
        // A pass of pairs per replica (each pair judged as two sequences), after their prompts'
        // pass: each call's verdicts are journaled before the next.
        chunk: judge.judges()[0].batch_size().div_ceil(2) * judge.judges().len(),
        progress: true,
    };
    let comparisons: Vec<Vec<gram::Pair>> =
        records.iter().map(|r| benchmark.comparisons(r)).collect();
    let rows = args.scale.rows(&gram::eval::calls(&comparisons, &options));
    let format = args
        .format
        .to_possible_value()
        .map(|v| v.get_name().to_owned());
    let benchmarks: Vec<String> = (args.benchmark.iter())
        .map(|p| gram::io::absolute(p))
        .collect();
    let inputs = json!({
        "benchmark": benchmarks,
        "format": format,
        "limit": args.limit,
        "by": args.by,
    });

    let output = args.verdicts.as_ref().or(args.report.as_ref());
    let (mut journal, done) = open_journal(&args, output, &inputs, rows.clone())?;
    // With a journal the first Ctrl-C stops after the current call; without one it ends the run.
    let stop = journal.is_some().then(|| {
        StopFlag::on_signal("interrupt: stopping after this call (Ctrl-C again to quit now)")
    });
    let verdicts = gram::eval::judge_records_after(
        &mut judge,
        &records[rows.clone()],
        benchmark,
        &options,
        done,
        |judged| {
            if let Some(journal) = journal.as_mut() {
                journal.append(judged)?;
            }
            Ok(!stop.as_ref().is_some_and(StopFlag::raised))
        },
    )?;
    if verdicts.len() < rows.len() {
        let path = output.map(|o| Journal::path_for(o).display().to_string());
        return Err(gram::Error::invalid(format!(
            "interrupted after {} of {} rows; their verdicts are in {} — run the same command \
             with --resume to continue",
            verdicts.len(),
            rows.len(),
            path.unwrap_or_default()
        )));
    }
    if let Some(path) = &args.verdicts {
        gram::merge::write_verdicts(path, rows.start, &verdicts)?;
    }
    if let Some(path) = slice_output {
        args.scale
            .finish("eval", path, rows, records.len(), inputs)?;
    } else {
        let report = gram::eval::score(&records, &verdicts, benchmark, &options)?;
        print_report(&report, args.report.as_ref())?;
    }
    // The outputs are complete: the journal has served.
    journal.map_or(Ok(()), Journal::finish)
}

/// The journal of a run writing `output` (the verdicts file, else the report), continued with
/// `--resume`, and the verdicts it already holds; none without an output file.
fn open_journal(
    args: &Args,
    output: Option<&PathBuf>,
    inputs: &serde_json::Value,
    rows: Range<usize>,
) -> gram::Result<(Option<Journal>, Vec<Vec<Verdict>>)> {
    let Some(output) = output else {
        if args.resume {
            return Err(gram::Error::invalid(
                "--resume needs --report or --verdicts: the journal it continues is kept beside \
                 that file",
            ));
        }
        return Ok((None, Vec::new()));
    };
    let path = Journal::path_for(output);
    let journal_inputs = json!({
        "benchmark": inputs,
        "judge": args.judge.settings()?,
        "rows": [rows.start, rows.end],
    });
    if !args.resume {
        return Ok((
            Some(Journal::create(&path, &journal_inputs, rows.start)?),
            Vec::new(),
        ));
    }
    let (journal, done) = Journal::resume(&path, &journal_inputs, rows.start)?;
    eprintln!(
        "resuming from {}: {} of {} rows judged already",
        path.display(),
        done.len(),
        rows.len()
    );
    Ok((Some(journal), done))
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
