//! `gram judge`: score every pair of a file, both orders averaged.
//!
//! Output rows are the input rows plus `p_a`, `p_a_forward`, `p_a_reverse`, and `correct`
//! (p_a > 0.5 with the chosen response as A) for labeled rows.

use crate::cli::common::{JudgeArgs, ScaleArgs};
use clap::ValueEnum;
use gram::data::{self, Content, Format, Record};
use gram::io::AtomicFile;
use gram::parallel;
use gram::progress::Progress;
use gram::{Error, Judge, Pair};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub judge: JudgeArgs,
    #[command(flatten)]
    pub scale: ScaleArgs,
    /// Pairs to judge: JSONL rows {prompt, chosen, rejected} or {prompt, response_a, response_b}
    /// (other supported formats are detected too; see `--format`).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the scored rows (JSONL).
    #[arg(long)]
    pub output: PathBuf,
    /// Input format (default: detected from the first row).
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Judge only the first N rows.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Pairs per call to the judge (one progress update each).
const PAIRS_PER_CALL: usize = 32;

pub fn run(args: Args) -> gram::Result<()> {
    let all = read_records(&args)?;
    let rows = args.scale.rows(&parallel::blocks(
        std::iter::repeat_n(1, all.len()),
        PAIRS_PER_CALL,
    ));
    let records = &all[rows.clone()];
    let mut judge = args.scale.load(&args.judge)?;
    let devices: Vec<String> = (judge.judges().iter())
        .map(|judge| gram::device::describe(&judge.model().device()))
        .collect();
    eprintln!("device: {}", devices.join(" + "));

    let mut output = AtomicFile::create(&args.output)?;
    let mut progress = Progress::new("pairs", records.len(), true);
    let (mut labeled, mut correct) = (0usize, 0usize);
    for chunk in records.chunks(PAIRS_PER_CALL) {
        let pairs: Vec<Pair> = chunk.iter().map(pair_to_judge).collect();
        let verdicts = judge.judge(&pairs)?;
        for (record, verdict) in chunk.iter().zip(verdicts) {
            let mut fields = record.extra.clone();
            fields.extend(record.content.fields());
            fields.insert("p_a".into(), json!(verdict.p_a));
            fields.insert("p_a_forward".into(), json!(verdict.p_a_forward));
            fields.insert("p_a_reverse".into(), json!(verdict.p_a_reverse));
            if matches!(record.content, Content::Preference(_)) {
                let is_correct = verdict.p_a > 0.5;
                fields.insert("correct".into(), json!(is_correct));
                labeled += 1;
                correct += is_correct as usize;
            }
            output.write_json_line(&fields)?;
        }
        progress.advance(chunk.len(), "");
    }
    output.commit()?;
    let format = args
        .format
        .to_possible_value()
        .map(|v| v.get_name().to_owned());
    let inputs = json!({
        "input": gram::io::absolute(&args.input),
        "format": format,
        "limit": args.limit,
    });
    args.scale
        .finish("judge", &args.output, rows, all.len(), inputs)?;

    let stats = gram::judge::JudgeStats::sum(judge.judges().iter().map(|j| j.stats()));
    let accuracy = accuracy_note(correct, labeled);
    eprintln!(
        "judged {} pairs{accuracy}, {:.2} pairs/s, {} truncated sequences, \
         {:.0}% of tokens served from shared prefixes, {:.0}% padding -> {}",
        records.len(),
        records.len() as f64 / progress.elapsed().max(1e-9),
        stats.truncated,
        100.0 * (1.0 - (stats.computed_tokens - stats.padding) as f64 / stats.tokens.max(1) as f64),
        100.0 * stats.padding as f64 / stats.computed_tokens.max(1) as f64,
        args.output.display()
    );
    Ok(())
}

/// The rows of `--input` (at most `--limit`), each a preference or an unlabeled pair.
fn read_records(args: &Args) -> gram::Result<Vec<Record>> {
    let mut records = Vec::new();
    for record in data::open(&args.input, args.format)? {
        if args.limit.is_some_and(|n| records.len() >= n) {
            break;
        }
        let record = record?;
        let several = match record.content {
            Content::StyleGrid(_) => Some(
                "an RM-Bench row holds 9 comparisons; score it with `gram eval --format rm-bench`",
            ),
            Content::BestOfN(_) => Some(
                "a RewardBench 2 row holds a best-of-n set; score it with `gram eval --format rewardbench2`",
            ),
            _ => None,
        };
        if let Some(message) = several {
            return Err(record.location.error(None, message));
        }
        records.push(record);
    }
    if records.is_empty() {
        return Err(Error::data(&args.input, None, None, "no rows to judge"));
    }
    Ok(records)
}

/// The pair a record asks to judge: a preference with its chosen response as A.
fn pair_to_judge(record: &Record) -> Pair {
    match &record.content {
        Content::Preference(p) => p.as_pair(),
        Content::Pair(p) => p.clone(),
        Content::StyleGrid(_) | Content::BestOfN(_) => {
            unreachable!("`read_records` rejects RM-Bench grids and best-of-n sets")
        }
    }
}

/// `, accuracy 0.6250 (5/8)` for a summary line; empty without labeled rows.
pub fn accuracy_note(correct: usize, labeled: usize) -> String {
    if labeled == 0 {
        return String::new();
    }
    format!(
        ", accuracy {:.4} ({correct}/{labeled})",
        correct as f64 / labeled as f64
    )
}
