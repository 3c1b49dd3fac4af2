//! Every `gram` subcommand run as a process on tiny inputs, checked on its values and files.
//!
//! The judging commands (`judge`, `rank`, `reward`, `eval`, `serve`) are compared with the
//! library judge (`GramJudge` on the CPU, batch 1, the default prompt) on the same pairs, so a
//! command that swaps the two responses, drops an order, mislabels a field or applies the wrong
//! scale fails. Training commands run one step on the CPU and are checked on `metrics.csv` and the
//! exported weights. Bad input must exit non-zero naming the file and line.
//!
//! `judging.rs` holds the judging commands, `training.rs` the training ones, `inputs.rs` `pairs`
//! and bad input. Everything uses SmolLM2-135M on the CPU (`--device cpu`) and the two shortest rows of
//! `examples/pairs.jsonl` without digits, so the whole file takes about a minute on 2 cores.

#[path = "../common/mod.rs"]
mod common;
mod inputs;
mod judging;
mod training;

use burn::tensor::Device;
use gram::checkpoint::Checkpoint;
use gram::judge::{GramJudge, JudgeOptions};
use gram::{Judge, Pair, Verdict};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The rows of `examples/pairs.jsonl` used here: short and without runs of digits.
const ROW_IDS: [&str; 2] = ["helpful-base-11", "helpful-base-6"];

/// Agreement required between a command's numbers and the library's on the same pairs (the
/// same code on the same device: differences are float noise at most).
const SAME: f64 = 1e-6;

fn gram() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gram"))
}

/// `gram <args> --model M --device cpu`, which must succeed; returns (stdout, stderr).
fn run_ok(args: &[&str], extra: &[&Path]) -> (String, String) {
    let output = run(args, extra);
    let (stdout, stderr) = texts(&output);
    assert!(
        output.status.success(),
        "gram {args:?} failed ({}):\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// `gram <args> <extra paths...>`; `--model` and `--device cpu` are added for commands that
/// load a model.
fn run(args: &[&str], extra: &[&Path]) -> Output {
    let mut command = gram();
    command.args(args).args(extra);
    if !matches!(args[0], "devices" | "pairs") {
        command
            .arg("--model")
            .arg(common::model_path())
            .args(["--device", "cpu"]);
    }
    command.output().expect("run gram")
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn examples_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/pairs.jsonl")
}

/// The rows [`ROW_IDS`] of `examples/pairs.jsonl`, in that order.
fn rows() -> Vec<Value> {
    let all: Vec<Value> = std::fs::read_to_string(examples_file())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    ROW_IDS
        .iter()
        .map(|id| {
            all.iter()
                .find(|r| r["id"] == *id)
                .unwrap_or_else(|| panic!("{id} is in examples/pairs.jsonl"))
                .clone()
        })
        .collect()
}

fn pair_of(row: &Value) -> Pair {
    Pair::new(
        row["prompt"].as_str().unwrap(),
        row["chosen"].as_str().unwrap(),
        row["rejected"].as_str().unwrap(),
    )
}

/// The library judge's verdicts on [`rows`] (chosen as A), computed once per test process.
fn library_verdicts() -> &'static [Verdict] {
    static VERDICTS: OnceLock<Vec<Verdict>> = OnceLock::new();
    VERDICTS.get_or_init(|| {
        let options = JudgeOptions {
            // As `gram judge` batches.
            batch_size: gram::judge::DEFAULT_BATCH_SIZE,
            ..JudgeOptions::default()
        };
        let mut judge = GramJudge::load(&common::model_path(), &Device::flex(), options).unwrap();
        let pairs: Vec<Pair> = rows().iter().map(pair_of).collect();
        judge.judge(&pairs).unwrap()
    })
}

fn assert_same(what: &str, actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= SAME,
        "{what}: command {actual}, library {expected}"
    );
}

fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

// ---- devices -------------------------------------------------------------------------------
