//! Ctrl-C during `gram finetune`, then `--resume`: the run stops after the step in flight
//! with a checkpoint and a message saying how to continue, and the resumed run exports the same
//! model as a run never interrupted (every weight within 1e-6).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 4;

/// `gram finetune` on `data` into `output`: CPU, tiny, a checkpoint after every step.
fn finetune(data: &Path, output: &Path, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gram"));
    command
        .args(["finetune", "--device", "cpu", "--quiet"])
        // The default judge prompt alone is 200 tokens; these two rows are 235 and 251.
        .args([
            "--train-layers",
            "1",
            "--max-len",
            "256",
            "--batch-size",
            "2",
        ])
        .args(["--max-steps", &STEPS.to_string(), "--save-every", "1"])
        .args(["--lr", "1e-3", "--warmup-ratio", "0.25"])
        .arg("--model")
        .arg(common::model_path())
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(output);
    if resume {
        command.arg("--resume");
    }
    command
}

fn run_to_end(mut command: Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Data rows of `metrics.csv` so far (0 while it does not exist).
fn steps_logged(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .map(|csv| csv.lines().skip(1).filter(|l| !l.is_empty()).count())
        .unwrap_or(0)
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("gram finetune still running {limit:?} after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two labeled pairs (short rows of `examples/pairs.jsonl`): 4 examples, 2 per step.
fn data(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pairs.jsonl"))
            .unwrap();
    let rows: String = text
        .lines()
        .filter(|l| l.contains("\"helpful-base-11\"") || l.contains("\"helpful-base-6\""))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(rows.lines().count(), 2);
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, rows).unwrap();
    path
}

#[test]
fn sigint_then_resume_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());

    // Interrupted: SIGINT as soon as the first step is logged.
    let interrupted = dir.path().join("interrupted");
    let mut child = finetune(&data, &interrupted, false)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while steps_logged(&interrupted) == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            panic!("finetune exited ({status}) before its first step:\n{stderr}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no step logged in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_with_timeout(&mut child, Duration::from_secs(300));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !status.success(),
        "an interrupted run must not exit 0:\n{stderr}"
    );
    assert!(
        stderr.contains("interrupted after step") && stderr.contains("--resume"),
        "{stderr}"
    );
    let stopped_at = steps_logged(&interrupted);
    assert!(
        (1..STEPS).contains(&stopped_at),
        "stopped after {stopped_at} of {STEPS} steps:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("interrupted after step {stopped_at}")),
        "{stderr}"
    );
    assert!(
        !interrupted.join("model").exists(),
        "no export from an interrupted run"
    );

    // Resumed with the same command plus --resume.
    let resumed = run_to_end(finetune(&data, &interrupted, true));
    assert_eq!(
        steps_logged(&interrupted),
        STEPS,
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );

    // Uninterrupted.
    let straight = dir.path().join("straight");
    run_to_end(finetune(&data, &straight, false));

    let csv = |d: &Path| std::fs::read_to_string(d.join("metrics.csv")).unwrap();
    let losses = |d: &Path| -> Vec<String> {
        csv(d)
            .lines()
            .skip(1)
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect()
    };
    let (a, b) = (losses(&interrupted), losses(&straight));
    assert_eq!(a.len(), STEPS);
    for (x, y) in a.iter().zip(&b) {
        let loss = |row: &str| row.rsplit(',').next().unwrap().parse::<f64>().unwrap();
        assert!(
            (loss(x) - loss(y)).abs() < 1e-6,
            "step,lr,loss {a:?} vs {b:?}"
        );
    }

    let (a, b) = (
        common::f32_tensors(&interrupted.join("model/model.safetensors")),
        common::f32_tensors(&straight.join("model/model.safetensors")),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut worst = (0.0f32, String::new());
    for (name, (_, x)) in &a {
        let (_, y) = &b[name];
        assert_eq!(x.len(), y.len(), "{name}");
        for (u, v) in x.iter().zip(y) {
            let gap = (u - v).abs();
            if gap > worst.0 || gap.is_nan() {
                worst = (gap, name.clone());
            }
        }
    }
    assert!(
        worst.0 < 1e-6,
        "resumed and uninterrupted exports differ by {} in {}",
        worst.0,
        worst.1
    );
}
