//! Every `gram` subcommand run as a process on tiny inputs, checked on its values and files.
//!
//! The judging commands (`judge`, `rank`, `reward`, `eval`, `serve`) are compared with the
//! library judge (`GramJudge` on the CPU, batch 1, the default prompt) on the same pairs, so a
//! command that swaps the two responses, drops an order, mislabels a field or applies the wrong
//! scale fails. Training commands run one step on the CPU and are checked on `metrics.csv` and the
//! exported weights. Bad input must exit non-zero naming the file and line.
//!
//! Everything uses SmolLM2-135M on the CPU (`--device cpu`) and the two shortest rows of
//! `examples/pairs.jsonl` without digits, so the whole file takes about a minute on 2 cores.

mod common;

use burn::tensor::Device;
use gram::checkpoint::Checkpoint;
use gram::judge::{GramJudge, JudgeOptions};
use gram::{Judge, Pair, Verdict};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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
            batch_size: 1, // as `gram judge --device cpu`
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

/// One line per wgpu adapter the library sees (index, name), then the CPU line.
#[test]
fn devices_lists_every_adapter_and_the_cpu() {
    let (stdout, _) = run_ok(&["devices"], &[]);
    let adapters = gram::device::adapters();
    for adapter in &adapters {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", adapter.index)))
            .unwrap_or_else(|| panic!("no line for adapter {}:\n{stdout}", adapter.index));
        assert!(line.contains(&adapter.name), "{line:?} vs {adapter:?}");
    }
    if adapters.is_empty() {
        assert!(stdout.contains("no wgpu adapters"), "{stdout}");
    }
    let listed = stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<usize>().is_ok())
        })
        .count();
    assert_eq!(listed, adapters.len(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("cpu ")),
        "the CPU is listed:\n{stdout}"
    );
}

// ---- judge, rank, reward, eval -------------------------------------------------------------

/// `gram judge` writes the library's p_a, p_a_forward and p_a_reverse for each row, with
/// p_a = (p_a_forward + p_a_reverse) / 2, `correct` = p_a > 0.5, and the input fields intact.
#[test]
fn judge_writes_the_library_judges_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let output = dir.path().join("scores.jsonl");
    let rows = rows();
    write_jsonl(&input, &rows);
    let (_, stderr) = run_ok(
        &["judge", "--input"],
        &[&input, Path::new("--output"), &output],
    );
    assert!(stderr.contains("judged 2 pairs"), "{stderr}");
    let scored = read_jsonl(&output);
    assert_eq!(scored.len(), rows.len());
    for ((out, row), verdict) in scored.iter().zip(&rows).zip(library_verdicts()) {
        let id = row["id"].as_str().unwrap();
        for field in ["id", "prompt", "chosen", "rejected"] {
            assert_eq!(out[field], row[field], "{id}: {field} passes through");
        }
        let p_a = out["p_a"].as_f64().unwrap();
        let forward = out["p_a_forward"].as_f64().unwrap();
        let reverse = out["p_a_reverse"].as_f64().unwrap();
        assert_same(&format!("{id} p_a"), p_a, verdict.p_a);
        assert_same(&format!("{id} p_a_forward"), forward, verdict.p_a_forward);
        assert_same(&format!("{id} p_a_reverse"), reverse, verdict.p_a_reverse);
        assert!(
            (p_a - (forward + reverse) / 2.0).abs() < 1e-12,
            "{id}: p_a {p_a} is not the mean of {forward} and {reverse}"
        );
        assert_eq!(out["correct"].as_bool(), Some(p_a > 0.5), "{id}");
    }
}

/// `gram rank` on two responses (one comparison): the winner is the library judge's, the scores
/// are the Bradley–Terry fit of that one verdict, and the counts are 1 comparison, 2 passes.
#[test]
fn rank_orders_by_the_library_judges_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rank.jsonl");
    let output = dir.path().join("ranked.jsonl");
    let row = &rows()[0];
    write_jsonl(
        &input,
        &[json!({
            "id": "r1",
            "prompt": row["prompt"],
            "responses": [row["chosen"], row["rejected"]],
        })],
    );
    run_ok(&["rank"], &[&input, Path::new("--output"), &output]);
    let ranked = read_jsonl(&output);
    assert_eq!(ranked.len(), 1);
    let out = &ranked[0];
    let p = library_verdicts()[0].p_a; // P(responses[0] beats responses[1])
    let best = if p > 0.5 { 0 } else { 1 };
    assert_eq!(out["id"], "r1");
    assert_eq!(out["best"], best, "{out} (p {p})");
    assert_eq!(out["order"], json!([best, 1 - best]), "{out}");
    assert_eq!(out["comparisons"], 1, "{out}");
    assert_eq!(out["forward_passes"], 2, "{out}");
    let expected = gram::rank::bradley_terry(2, &[(0, 1, p)]);
    let scores: Vec<f64> = out["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 2);
    for (s, e) in scores.iter().zip(&expected) {
        assert!(
            (s - e).abs() < 1e-5,
            "scores {scores:?}, expected {expected:?}"
        );
    }
}

/// `gram reward` (default scale log-odds): reward = ln(p / (1 − p)) with p the library's
/// P(response beats reference), for the response and reference in both roles.
#[test]
fn reward_is_the_log_odds_of_beating_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("reward.jsonl");
    let output = dir.path().join("rewards.jsonl");
    let row = &rows()[0];
    write_jsonl(
        &input,
        &[json!({
            "id": "w1",
            "prompt": row["prompt"],
            "response": row["chosen"],
            "reference": row["rejected"],
        })],
    );
    run_ok(&["reward"], &[&input, Path::new("--output"), &output]);
    let out = read_jsonl(&output);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], "w1");
    let p = library_verdicts()[0].p_a;
    let reward = out[0]["reward"].as_f64().unwrap();
    assert!(
        (reward - logit(p)).abs() < 1e-5,
        "reward {reward}, ln(p/(1-p)) {} for p {p}",
        logit(p)
    );
}

/// `gram eval --format preference`: the report's accuracy and position consistency are the
/// library verdicts' (accuracy = share with p_a > 0.5, mean |p_a_forward − p_a_reverse|).
#[test]
fn eval_reports_the_library_judges_accuracy_and_consistency() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bench.jsonl");
    let report = dir.path().join("report.json");
    write_jsonl(&input, &rows());
    let (stdout, _) = run_ok(
        &["eval", "--format", "preference", "--benchmark"],
        &[&input, Path::new("--report"), &report],
    );
    assert!(stdout.contains("overall"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let verdicts = library_verdicts();
    let n = verdicts.len() as f64;
    let accuracy = verdicts.iter().filter(|v| v.p_a > 0.5).count() as f64 / n;
    let gap = verdicts
        .iter()
        .map(|v| (v.p_a_forward - v.p_a_reverse).abs())
        .sum::<f64>()
        / n;
    assert_eq!(report["overall"]["count"], 2, "{report}");
    assert_eq!(
        report["overall"]["accuracy"].as_f64(),
        Some(accuracy),
        "{report}"
    );
    assert_eq!(report["consistency"]["count"], 2, "{report}");
    assert_same(
        "mean |p_a_forward - p_a_reverse|",
        report["consistency"]["mean_gap"].as_f64().unwrap(),
        gap,
    );
}

// ---- serve ---------------------------------------------------------------------------------

/// A minimal HTTP/1.1 exchange (one request per connection): status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The server is killed if the test fails before it exits.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `gram serve --port 0`: announces its address, answers /health 200 once loaded, /judge
/// with the library's probabilities, and exits successfully on SIGTERM.
#[test]
fn serve_judges_over_http_and_stops_on_sigterm() {
    let mut child = Child(
        gram()
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--device",
                "cpu",
            ])
            .arg("--model")
            .arg(common::model_path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    let addr: SocketAddr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "gram serve exited before listening"
        );
        if let Some(rest) = line.trim().split("listening on http://").nth(1) {
            break rest.parse().unwrap();
        }
    };
    // Drain the rest of stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    let start = Instant::now();
    loop {
        let (status, body) = http(addr, "GET", "/health", "");
        if status == 200 {
            assert!(body.contains("ready"), "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the judge never loaded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let row = &rows()[0];
    let request = json!({"pairs": [{
        "prompt": row["prompt"],
        "response_a": row["chosen"],
        "response_b": row["rejected"],
    }]});
    let (status, body) = http(addr, "POST", "/judge", &request.to_string());
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let result = &reply["results"][0];
    let verdict = &library_verdicts()[0];
    assert_same("p_a", result["p_a"].as_f64().unwrap(), verdict.p_a);
    assert_same(
        "p_a_forward",
        result["p_a_forward"].as_f64().unwrap(),
        verdict.p_a_forward,
    );
    assert_same(
        "p_a_reverse",
        result["p_a_reverse"].as_f64().unwrap(),
        verdict.p_a_reverse,
    );

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "gram serve did not exit within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(TcpStream::connect(addr).is_err(), "still listening");
}

// ---- pairs ---------------------------------------------------------------------------------

/// `gram pairs` on three models' outputs: every pair of different responses to a prompt, with
/// the responses' own models, dropping empty and repeated responses.
#[test]
fn pairs_builds_every_distinct_pair_with_its_models() {
    let dir = tempfile::tempdir().unwrap();
    let write = |model: &str, outputs: &[(&str, &str)]| {
        let path = dir.path().join(format!("{model}.jsonl"));
        let rows: Vec<Value> = outputs
            .iter()
            .map(|(p, r)| json!({"prompt": p, "response": r, "model": model}))
            .collect();
        write_jsonl(&path, &rows);
        path
    };
    let files = [
        write("m1", &[("Name a colour.", "Red."), ("Say hi.", "Hi!")]),
        write("m2", &[("Name a colour.", "Blue."), ("Say hi.", "Hi!")]), // repeated
        write("m3", &[("Name a colour.", "  "), ("Say hi.", "Hello.")]), // empty
    ];
    let out = dir.path().join("pairs.jsonl");
    let mut args: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    args.extend([Path::new("-o"), out.as_path()]);
    let (_, stderr) = run_ok(&["pairs"], &args);
    assert!(stderr.contains("6 outputs, 2 prompts"), "{stderr}");
    assert!(
        stderr.contains("1 empty and 1 repeated responses dropped"),
        "{stderr}"
    );
    let mut found: Vec<(String, String, String)> = read_jsonl(&out)
        .iter()
        .flat_map(|p| {
            let side = |r: &str, m: &str| (p[r].as_str().unwrap(), p[m].as_str().unwrap());
            let (a, b) = (side("response_a", "model_a"), side("response_b", "model_b"));
            // Each response is labelled with the model that wrote it.
            for (response, model) in [a, b] {
                let expected = match response {
                    "Red." | "Hi!" => "m1",
                    "Blue." => "m2",
                    "Hello." => "m3",
                    other => panic!("unexpected response {other:?}"),
                };
                assert_eq!(model, expected, "{p}");
            }
            let (x, y) = if a.0 < b.0 { (a.0, b.0) } else { (b.0, a.0) };
            [(
                p["prompt"].as_str().unwrap().to_string(),
                x.to_string(),
                y.to_string(),
            )]
        })
        .collect();
    found.sort();
    let expected = [
        ("Name a colour.", "Blue.", "Red."),
        ("Say hi.", "Hello.", "Hi!"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(p, a, b)| (p.to_string(), a.to_string(), b.to_string()))
        .collect();
    assert_eq!(found, expected);
}

// ---- pretrain, finetune --------------------------------------------------------------------

/// `f32` tensors of a safetensors file by name.
fn safetensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, data)
        })
        .collect()
}

/// The one data row of `metrics.csv` after a 1-step run: (step, loss, eval).
fn single_metrics_row(dir: &Path) -> (usize, f64, Option<f64>) {
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("step,lr,loss,eval,tokens_per_s"),
        "{csv}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    let row = &rows[0];
    (
        row[0].parse().unwrap(),
        row[2].parse().unwrap(),
        row[3].parse().ok(),
    )
}

/// After `--train-layers 1` on SmolLM2 (30 layers): the exported model is a loadable HF
/// directory in which layers 0–28 and the embeddings are bitwise the GGUF's weights and
/// layer 29 and the final norm changed.
fn assert_only_the_top_layer_trained(model_dir: &Path) {
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(model_dir.join(file).is_file(), "{file} exported");
    }
    let exported = safetensors(&model_dir.join("model.safetensors"));
    let base = Checkpoint::load(&common::model_path()).unwrap();
    let layers = base.config.num_hidden_layers;
    let top = format!("model.layers.{}.", layers - 1);
    let mut changed_top = 0;
    for (name, tensor) in &base.tensors {
        let got = exported
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the export"));
        let same = got.len() == tensor.data.len()
            && got
                .iter()
                .zip(&tensor.data)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if name.starts_with(&top) || name == "model.norm.weight" {
            changed_top += usize::from(!same);
        } else {
            assert!(same, "{name} is frozen by --train-layers 1 but changed");
        }
    }
    assert!(
        changed_top >= 5,
        "only {changed_top} tensors of the top layer and final norm changed"
    );
}

/// `gram pretrain` (stage 1), one step: metrics.csv holds step 1 with a token loss near the
/// model's (a few nats, not 0 or ln|V|), and only the top layer trained.
#[test]
fn pretrain_one_step_trains_the_top_layer_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unlabeled.jsonl");
    let row = &rows()[1];
    write_jsonl(
        &data,
        &[json!({
            "prompt": row["prompt"],
            "response_a": row["chosen"],
            "response_b": row["rejected"],
        })],
    );
    let out = dir.path().join("stage1");
    let (_, stderr) = run_ok(
        &[
            "pretrain",
            "--max-steps",
            "1",
            "--train-layers",
            "1",
            "--max-len",
            "128",
            "--batch-size",
            "1",
            "--lr",
            "1e-3",
            "--quiet",
            "--data",
        ],
        &[&data, Path::new("--output"), &out],
    );
    assert!(stderr.contains("stage 1: 1 training examples"), "{stderr}");
    let (step, loss, _) = single_metrics_row(&out);
    assert_eq!(step, 1);
    assert!(
        loss.is_finite() && loss > 0.1 && loss < (49_152f64).ln(),
        "token loss {loss}"
    );
    assert!(out.join("metrics.svg").is_file());
    assert_only_the_top_layer_trained(&out.join("model"));
}

/// `gram finetune` (stage 2), one step with an eval file: metrics.csv holds step 1 with a
/// preference loss and a pairwise accuracy, only the top layer trained, and `gram judge`
/// loads the exported directory and scores differently from the base model.
#[test]
fn finetune_one_step_exports_a_model_gram_judge_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("labeled.jsonl");
    write_jsonl(&data, &rows());
    let out = dir.path().join("stage2");
    let (_, stderr) = run_ok(
        &[
            "finetune",
            "--max-steps",
            "1",
            "--train-layers",
            "1",
            // The default judge prompt alone is 200 tokens; these rows are 235 and 251.
            "--max-len",
            "256",
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
            "--quiet",
            "--data",
        ],
        &[
            &data,
            Path::new("--eval"),
            &data,
            Path::new("--output"),
            &out,
        ],
    );
    // Each labeled pair is shown in both orders.
    assert!(
        stderr.contains("stage 2: 4 training examples, 4 held out"),
        "{stderr}"
    );
    let (step, loss, eval) = single_metrics_row(&out);
    assert_eq!(step, 1);
    assert!(loss.is_finite() && loss > 0.0 && loss < 5.0, "loss {loss}");
    let eval = eval.expect("eval accuracy at the last step");
    assert!(
        [0.0, 0.5, 1.0].contains(&eval),
        "accuracy of 2 pairs: {eval}"
    );
    let model = out.join("model");
    assert_only_the_top_layer_trained(&model);

    let scores = dir.path().join("scores.jsonl");
    let judged = gram()
        .args(["judge", "--device", "cpu", "--limit", "1", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(&data)
        .arg("--output")
        .arg(&scores)
        .output()
        .unwrap();
    let (_, stderr) = texts(&judged);
    assert!(judged.status.success(), "{stderr}");
    let p_a = read_jsonl(&scores)[0]["p_a"].as_f64().unwrap();
    let base = library_verdicts()[0].p_a;
    assert!(
        p_a > 0.0 && p_a < 1.0 && (p_a - base).abs() > 1e-4,
        "fine-tuned p_a {p_a}, base {base}"
    );
}

// ---- bad input -----------------------------------------------------------------------------

/// A file whose second line is cut off.
fn bad_file(dir: &Path, name: &str, good: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{good}\n{{\"prompt\": \"q\", \"chosen\n")).unwrap();
    path
}

fn assert_fails_naming(output: &Output, location: &str) {
    let (_, stderr) = texts(output);
    assert!(!output.status.success(), "succeeded on bad input");
    assert!(
        stderr.contains(location),
        "the error should name {location}:\n{stderr}"
    );
}

#[test]
fn pairs_rejects_a_bad_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_file(
        dir.path(),
        "outputs.jsonl",
        &json!({"prompt": "p", "response": "r", "model": "m"}),
    );
    let out = dir.path().join("pairs.jsonl");
    let output = run(&["pairs"], &[&bad, Path::new("-o"), &out]);
    assert_fails_naming(&output, "outputs.jsonl:2");
    assert!(!out.exists(), "no output on error");
}

#[test]
fn rank_rejects_a_bad_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_file(
        dir.path(),
        "rank.jsonl",
        &json!({"prompt": "p", "responses": ["a", "b"]}),
    );
    let out = dir.path().join("ranked.jsonl");
    let output = run(&["rank"], &[&bad, Path::new("--output"), &out]);
    assert_fails_naming(&output, "rank.jsonl:2");
}

#[test]
fn finetune_rejects_a_bad_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_file(
        dir.path(),
        "train.jsonl",
        &json!({"prompt": "p", "chosen": "a", "rejected": "b"}),
    );
    let out = dir.path().join("run");
    let output = run(
        &["finetune", "--max-steps", "1", "--data"],
        &[&bad, Path::new("--output"), &out],
    );
    assert_fails_naming(&output, "train.jsonl:2");
    assert!(!out.join("model").exists(), "no model exported on error");
}

/// An unlabeled row cannot train stage 2: the error names the file and the row.
#[test]
fn finetune_rejects_unlabeled_rows_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unlabeled.jsonl");
    write_jsonl(
        &data,
        &[json!({"prompt": "p", "response_a": "a", "response_b": "b"})],
    );
    let out = dir.path().join("run");
    let output = run(
        &["finetune", "--max-steps", "1", "--data"],
        &[&data, Path::new("--output"), &out],
    );
    assert_fails_naming(&output, "unlabeled.jsonl:1");
    assert!(texts(&output).1.contains("labeled pairs"));
}
