//! `gram merge`: put the slices of a sharded `gram judge` or `gram eval` run back together
//! (see [`gram::merge`]).

use crate::cli::eval::{print_report, read_benchmark};
use crate::cli::judge::accuracy_note;
use gram::data::Format;
use gram::eval::EvalOptions;
use gram::merge::{Parts, read_verdicts, write_verdicts};
use gram::{Error, Result};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The slices' outputs (`--output` of `gram judge --shard`, `--verdicts` of
    /// `gram eval --shard`), in any order; each needs its `.shard.json` manifest beside it.
    #[arg(required = true, num_args = 1..)]
    pub parts: Vec<PathBuf>,
    /// The merged file: scored rows for `judge` slices (required), all verdicts for `eval`.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// For `eval` slices: write the report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let parts = Parts::open(&args.parts)?;
    match parts.command() {
        "judge" => merge_judge(&parts, &args),
        "eval" => merge_eval(&parts, &args),
        other => Err(Error::invalid(format!(
            "{}: slices of `gram {other}` cannot be merged",
            args.parts[0].display()
        ))),
    }
}

/// Judge slices: their rows concatenated in order, and the run's summary.
fn merge_judge(parts: &Parts, args: &Args) -> Result<()> {
    let Some(output) = &args.output else {
        return Err(Error::invalid("merging `gram judge` slices needs --output"));
    };
    if args.report.is_some() {
        return Err(Error::invalid("--report is for `gram eval` slices"));
    }
    let bytes = parts.concatenate(output)?;
    let (mut rows, mut labeled, mut correct) = (0usize, 0usize, 0usize);
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        rows += 1;
        if let Ok(serde_json::Value::Object(row)) = serde_json::from_slice(line)
            && let Some(is_correct) = row.get("correct").and_then(|v| v.as_bool())
        {
            labeled += 1;
            correct += is_correct as usize;
        }
    }
    let accuracy = accuracy_note(correct, labeled);
    eprintln!(
        "merged {} slices: {rows} pairs{accuracy} -> {}",
        parts.parts.len(),
        output.display()
    );
    Ok(())
}

/// Eval slices: the benchmark read again, every slice's verdicts, and the report one process
/// would have printed.
fn merge_eval(parts: &Parts, args: &Args) -> Result<()> {
    #[derive(Deserialize)]
    struct Inputs {
        benchmark: Vec<PathBuf>,
        format: Option<String>,
        limit: Option<usize>,
        by: Option<String>,
    }
    let manifest = |e: serde_json::Error| {
        Error::invalid(format!(
            "{}: the manifest's inputs are not an eval's: {e}",
            parts.parts[0].0.display()
        ))
    };
    let inputs: Inputs = serde_json::from_value(parts.inputs().clone()).map_err(manifest)?;
    let format = match &inputs.format {
        Some(name) => <Format as clap::ValueEnum>::from_str(name, true)
            .map_err(|e| Error::invalid(format!("the manifest's format `{name}`: {e}")))?,
        None => Format::Auto,
    };
    let (records, benchmark) = read_benchmark(&inputs.benchmark, format, inputs.limit)?;
    let total = parts.parts[0].1.total;
    if records.len() != total {
        return Err(Error::invalid(format!(
            "the benchmark files now hold {} rows, but the slices were made from {total}: they \
             changed since",
            records.len()
        )));
    }
    let mut verdicts = Vec::with_capacity(total);
    for (path, manifest) in &parts.parts {
        verdicts.extend(read_verdicts(path, manifest.start, manifest.end)?);
    }
    if let Some(output) = &args.output {
        write_verdicts(output, 0, &verdicts)?;
    }
    let options = EvalOptions {
        by: inputs.by,
        ..EvalOptions::default()
    };
    let report = gram::eval::score(&records, &verdicts, benchmark, &options)?;
    print_report(&report, args.report.as_ref())
}
