//! Beyond one device: data-parallel training equals one device with the whole batch, judging
//! on replicas equals one judge, and sharded `judge`/`eval` runs merge into exactly what one
//! process writes.
//!
//! The command-line tests judge with the tiny Llama 3 checkpoint of `../shared/fixtures/archs`
//! (2 layers, width 64), so tens of real HH-RLHF and RM-Bench rows take seconds on the CPU.

mod common;

use burn::tensor::Device;
use gram::model::Llama;
use gram::train::{Objective, TrainExample, TrainOptions, Trainer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VOCAB: usize = 64;

fn options(objective: Objective, batch_size: usize) -> TrainOptions {
    let mut options = TrainOptions::new(objective, [1, 2], 0);
    options.batch_size = batch_size;
    options.lr = Some(3e-3);
    options.max_grad_norm = 0.5;
    options
}

/// Stage-1 examples of different lengths (so a token-weighted mean differs from a mean over
/// examples): a random prompt, then 2–6 target tokens.
fn generation_data(n: usize) -> Vec<TrainExample> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    (0..n)
        .map(|i| {
            let ids: Vec<u32> = (0..5 + 2 + i % 5)
                .map(|_| rng.random_range(3..VOCAB as u32))
                .collect();
            TrainExample::Generation {
                ids,
                target_start: 5,
            }
        })
        .collect()
}

/// Bradley–Terry examples: one random prompt with two random responses each.
fn comparison_data(n: usize) -> Vec<TrainExample> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let mut tokens =
        |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(3..VOCAB as u32)).collect() };
    (0..n)
        .map(|_| {
            let prompt = tokens(4);
            TrainExample::Comparison {
                chosen: [prompt.clone(), tokens(3)].concat(),
                rejected: [prompt, tokens(2)].concat(),
            }
        })
        .collect()
}

/// `--devices X,X --batch-size b` against `--device X --batch-size 2b`: the same examples per
/// step, the same mean loss, the same summed gradients, hence the same weights after each
/// optimizer step (gradient clipping and AdamW included).
fn replicas_match_one_device(device: &Device) {
    for (objective, data) in [
        (Objective::Gram, common::verdict_data(8, VOCAB, 7)),
        (Objective::Generation, generation_data(12)),
        (Objective::BradleyTerry, comparison_data(8)),
    ] {
        let model = Llama::random(&common::tiny_config(VOCAB, 2), &device.clone().autodiff());
        let mut whole = Trainer::new(model.clone(), options(objective, 4), None).unwrap();
        let mut split = Trainer::new(model, options(objective, 2), None)
            .unwrap()
            .with_replicas(std::slice::from_ref(device));
        assert_eq!(split.replica_count(), 2);
        for step in 0..3 {
            let (loss_whole, tokens_whole) = whole.train_step(&data, 1e-2).unwrap();
            let (loss_split, tokens_split) = split.train_step(&data, 1e-2).unwrap();
            assert_eq!(
                tokens_whole, tokens_split,
                "{objective:?} step {step}: other rows"
            );
            assert!(
                (loss_whole - loss_split).abs() < 1e-5,
                "{objective:?} step {step}: loss {loss_whole} on one device, {loss_split} split"
            );
        }
        let (a, b) = (
            common::trained_weights(&whole),
            common::trained_weights(&split),
        );
        let worst = common::max_difference(&a, &b);
        assert!(worst < 1e-4, "{objective:?}: weights differ by {worst}");
        let moved = (a.iter())
            .zip(common::trained_weights(
                &Trainer::new(
                    Llama::random(&common::tiny_config(VOCAB, 2), &device.clone().autodiff()),
                    options(objective, 4),
                    None,
                )
                .unwrap(),
            ))
            .any(|(x, y)| (x - y).abs() > 1e-3);
        assert!(moved, "{objective:?}: training changed nothing");
    }
}

#[test]
fn data_parallel_training_equals_one_device_on_cpu() {
    replicas_match_one_device(&Device::flex());
}

#[test]
fn data_parallel_training_equals_one_device_on_wgpu() {
    if let Some(gpu) = common::wgpu_device() {
        replicas_match_one_device(&gpu);
    }
}

// ---- sharded scoring, as commands ----

fn fixture_model() -> PathBuf {
    common::shared_dir().join("fixtures/archs/llama3")
}

fn hh() -> PathBuf {
    common::shared_dir().join("data/hh-rlhf/helpful-base.test.jsonl.gz")
}

/// `gram <args> --model <tiny llama3>`, which must succeed.
fn gram(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gram"))
        .args(args)
        .args(paths)
        .arg("--model")
        .arg(fixture_model())
        .output()
        .expect("run gram")
}

/// `gram merge <parts> <args>`.
fn merge(parts: &[PathBuf], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gram"))
        .arg("merge")
        .args(parts)
        .args(args)
        .output()
        .expect("run gram merge")
}

/// (stdout, stderr) of a command that must have succeeded.
fn ok(output: Output, what: &str) -> (String, String) {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{what} failed:\n{stderr}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

fn failure(output: Output, what: &str) -> String {
    assert!(!output.status.success(), "{what} should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn sharded_judging_merges_into_the_same_bytes() {
    let dir = common::temp_dir("shard-judge");
    std::fs::create_dir_all(&dir).unwrap();
    let input = hh();
    let judge = |extra: &[&str], output: &Path| {
        let args = [
            &["judge", "--device", "cpu", "--limit", "70"],
            extra,
            &["--input"],
        ]
        .concat();
        ok(
            gram(&args, &[&input, Path::new("--output"), output]),
            "judge",
        );
    };
    let whole = dir.join("whole.jsonl");
    judge(&[], &whole);
    let mut parts = Vec::new();
    for i in [2, 0, 1] {
        let part = dir.join(format!("part{i}.jsonl"));
        judge(&["--shard", &format!("{i}/3")], &part);
        assert!(gram::merge::Manifest::path_for(&part).is_file());
        parts.push(part);
    }
    let merged = dir.join("merged.jsonl");
    let (_, said) = ok(
        merge(&parts, &["--output", merged.to_str().unwrap()]),
        "merge",
    );
    assert!(said.contains("70 pairs"), "{said}");
    assert_eq!(
        std::fs::read(&whole).unwrap(),
        std::fs::read(&merged).unwrap(),
        "merged slices differ from the one-process output"
    );
    // Every slice got work: 70 rows are 3 calls of 32, 32 and 6 rows.
    for part in &parts {
        assert!(
            std::fs::metadata(part).unwrap().len() > 0,
            "{}",
            part.display()
        );
    }

    // Incomplete or inconsistent sets are refused, and nothing is written.
    let refused = dir.join("refused.jsonl");
    let out = refused.to_str().unwrap();
    let error = failure(
        merge(&parts[..2], &["--output", out]),
        "two of three slices",
    );
    assert!(error.contains("slice 1/3 is missing"), "{error}");
    let twice = [parts[0].clone(), parts[1].clone(), parts[1].clone()];
    let error = failure(merge(&twice, &["--output", out]), "a slice twice");
    assert!(error.contains("given twice"), "{error}");
    std::fs::remove_file(gram::merge::Manifest::path_for(&parts[0])).unwrap();
    let error = failure(
        merge(&parts, &["--output", out]),
        "a slice without manifest",
    );
    assert!(error.contains("no shard manifest"), "{error}");
    assert!(!refused.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn judging_on_two_replicas_equals_one_device() {
    let dir = common::temp_dir("replica-judge");
    std::fs::create_dir_all(&dir).unwrap();
    let (one, two) = (dir.join("one.jsonl"), dir.join("two.jsonl"));
    for (devices, output) in [
        (["--device", "cpu"], &one),
        (["--devices", "cpu,cpu"], &two),
    ] {
        let args = ["judge", devices[0], devices[1], "--limit", "40", "--input"];
        let (_, said) = ok(
            gram(&args, &[&hh(), Path::new("--output"), output]),
            "judge",
        );
        assert!(said.contains("judged 40 pairs"), "{said}");
    }
    let (a, b) = (common::p_a_column(&one), common::p_a_column(&two));
    assert_eq!(a.len(), 40);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "replicas differ from one device by {worst}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sharded_evaluation_merges_into_the_same_report() {
    let dir = common::temp_dir("shard-eval");
    std::fs::create_dir_all(&dir).unwrap();
    let bench = common::shared_dir().join("data/rm-bench/chat.json");
    let common_args = [
        "eval", "--device", "cpu", "--format", "rm-bench", "--limit", "7",
    ];
    let whole = dir.join("whole.json");
    let whole_verdicts = dir.join("whole.verdicts.jsonl");
    let (table, _) = ok(
        gram(
            &[common_args.as_slice(), &["--benchmark"]].concat(),
            &[
                &bench,
                Path::new("--report"),
                &whole,
                Path::new("--verdicts"),
                &whole_verdicts,
            ],
        ),
        "eval",
    );
    let mut parts = Vec::new();
    for i in 0..3 {
        let part = dir.join(format!("part{i}.verdicts.jsonl"));
        let shard = format!("{i}/3");
        let args = [common_args.as_slice(), &["--shard", &shard, "--benchmark"]].concat();
        ok(
            gram(&args, &[&bench, Path::new("--verdicts"), &part]),
            "eval slice",
        );
        parts.push(part);
    }
    let merged = dir.join("merged.json");
    let merged_verdicts = dir.join("merged.verdicts.jsonl");
    let (merged_table, _) = ok(
        merge(
            &parts,
            &[
                "--report",
                merged.to_str().unwrap(),
                "--output",
                merged_verdicts.to_str().unwrap(),
            ],
        ),
        "merge",
    );
    assert_eq!(
        std::fs::read_to_string(&whole).unwrap(),
        std::fs::read_to_string(&merged).unwrap(),
        "merged report differs"
    );
    assert_eq!(
        std::fs::read(&whole_verdicts).unwrap(),
        std::fs::read(&merged_verdicts).unwrap()
    );
    assert!(table.contains("overall"), "{table}");
    assert_eq!(table, merged_table, "the printed reports differ");

    // A slice of another run (other --limit) does not merge with these.
    let other = dir.join("other.verdicts.jsonl");
    let args = [
        "eval", "--device", "cpu", "--format", "rm-bench", "--limit", "6",
    ];
    let args = [args.as_slice(), &["--shard", "1/3", "--benchmark"]].concat();
    ok(
        gram(&args, &[&bench, Path::new("--verdicts"), &other]),
        "eval slice",
    );
    let mixed = [parts[0].clone(), other, parts[2].clone()];
    let error = failure(merge(&mixed, &[]), "slices of two runs");
    assert!(error.contains("not one run"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `gram finetune --devices cpu,cpu` trains and checkpoints; resuming on another number of
/// replicas is refused (the replicas decide which rows each step reads), on the same one it
/// continues.
#[test]
fn finetune_on_two_replicas_resumes_only_with_two() {
    let dir = common::temp_dir("replica-train");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("pairs.jsonl");
    let rows: Vec<String> = (0..6)
        .map(|i| {
            serde_json::json!({
                "prompt": format!("Question {i}: what is a cat?"),
                "chosen": "A small domesticated feline.",
                "rejected": "A kind of fish.",
            })
            .to_string()
        })
        .collect();
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let output = dir.join("run");
    let train = |devices: &[&str], steps: &str, resume: bool| {
        let mut args = vec!["finetune", "--max-steps", steps, "--batch-size", "2"];
        args.extend(devices);
        if resume {
            args.push("--resume");
        }
        args.extend(["--max-len", "320", "--data"]);
        gram(&args, &[&data, Path::new("--output"), &output])
    };
    let (_, said) = ok(train(&["--devices", "cpu,cpu"], "2", false), "finetune");
    assert!(said.contains(" + "), "two devices named: {said}");
    let metrics = std::fs::read_to_string(output.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    let error = failure(
        train(&["--device", "cpu"], "3", true),
        "resume on one device",
    );
    assert!(
        error.contains("--devices (replicas): checkpoint 2, now 1"),
        "{error}"
    );
    ok(train(&["--devices", "cpu,cpu"], "3", true), "resume on two");
    let metrics = std::fs::read_to_string(output.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 4, "{metrics}");
    let _ = std::fs::remove_dir_all(&dir);
}
