//! `gram judge`: score every pair of a file, both orders averaged.
//!
//! Output rows are the input rows plus `p_a`, `p_a_forward`, `p_a_reverse`, and `correct`
//! (p_a > 0.5 with the chosen response as A) for labeled rows.

use crate::cli::common::JudgeArgs;
use gram::data::{self, Example, Format};
use gram::io::AtomicFile;
use gram::progress::Progress;
use gram::{Error, Judge, Pair};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub judge: JudgeArgs,
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

/// One input row: the pair to judge, whether A is the chosen response, and fields to echo.
struct Row {
    pair: Pair,
    labeled: bool,
    fields: serde_json::Map<String, Value>,
}

pub fn run(args: Args) -> gram::Result<()> {
    let rows = read_rows(&args)?;
    let mut judge = args.judge.load()?;
    eprintln!(
        "device: {}",
        gram::device::describe(&judge.model().device())
    );

    let mut output = AtomicFile::create(&args.output)?;
    let mut progress = Progress::new("pairs", rows.len(), true);
    let (mut labeled, mut correct) = (0usize, 0usize);
    for chunk in rows.chunks(32) {
        let pairs: Vec<Pair> = chunk.iter().map(|r| r.pair.clone()).collect();
        let verdicts = judge.judge(&pairs)?;
        for (row, verdict) in chunk.iter().zip(verdicts) {
            let mut fields = row.fields.clone();
            fields.insert("p_a".into(), json!(verdict.p_a));
            fields.insert("p_a_forward".into(), json!(verdict.p_a_forward));
            fields.insert("p_a_reverse".into(), json!(verdict.p_a_reverse));
            if row.labeled {
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

    let stats = judge.stats();
    let accuracy = if labeled > 0 {
        format!(
            ", accuracy {:.4} ({correct}/{labeled})",
            correct as f64 / labeled as f64
        )
    } else {
        String::new()
    };
    eprintln!(
        "judged {} pairs{accuracy}, {:.2} pairs/s, {} truncated sequences, \
         {:.0}% of tokens served from shared prefixes, {:.0}% padding -> {}",
        rows.len(),
        rows.len() as f64 / progress.elapsed().max(1e-9),
        stats.truncated,
        100.0 * (1.0 - (stats.computed_tokens - stats.padding) as f64 / stats.tokens.max(1) as f64),
        100.0 * stats.padding as f64 / stats.computed_tokens.max(1) as f64,
        args.output.display()
    );
    Ok(())
}

fn read_rows(args: &Args) -> gram::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for record in data::open(&args.input, args.format)? {
        if args.limit.is_some_and(|n| rows.len() >= n) {
            break;
        }
        let record = record?;
        let mut fields = record.extra.clone();
        let (pair, labeled) = match record.example {
            Example::Preference(p) => {
                fields.insert("prompt".into(), json!(p.prompt));
                fields.insert("chosen".into(), json!(p.chosen));
                fields.insert("rejected".into(), json!(p.rejected));
                (p.as_pair(), true)
            }
            Example::Pair(p) => {
                fields.insert("prompt".into(), json!(p.prompt));
                fields.insert("response_a".into(), json!(p.response_a));
                fields.insert("response_b".into(), json!(p.response_b));
                (p, false)
            }
            Example::StyleGrid(_) => {
                return Err(record.location.error(
                    None,
                    "an RM-Bench row holds 9 comparisons; score it with `gram eval --format rm-bench`",
                ));
            }
        };
        rows.push(Row {
            pair,
            labeled,
            fields,
        });
    }
    if rows.is_empty() {
        return Err(Error::data(&args.input, None, None, "no rows to judge"));
    }
    Ok(rows)
}
