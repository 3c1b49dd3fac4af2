//! Ctrl-C during `gram finetune`, then `--resume`: the run stops after the step in flight
//! with a checkpoint and a message saying how to continue, and the resumed run exports the same
//! model as a run never interrupted (every weight within 1e-6).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 4;

/// `gram finetune` on `data` into `output`: CPU, tiny, a checkpoint after every step.
fn finetune(data: &Path, output: &Path, resume: bool) -> Command {
    finetune_steps(data, output, resume, STEPS, 256)
}

/// [`finetune`] for `steps` optimizer steps, sequences cut at `max_len` tokens.
fn finetune_steps(
    data: &Path,
    output: &Path,
    resume: bool,
    steps: usize,
    max_len: usize,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gram"));
    command
        .args(["finetune", "--device", "cpu", "--quiet"])
        // The default judge prompt alone is 200 tokens; these two rows are 235 and 251.
        .args([
            "--train-layers",
            "1",
            "--max-len",
            &max_len.to_string(),
            "--batch-size",
            "2",
        ])
        .args(["--max-steps", &steps.to_string(), "--save-every", "1"])
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
    let stderr = common::interrupt_when(&mut finetune(&data, &interrupted, false), || {
        steps_logged(&interrupted) > 0
    });
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

    assert_same_exports(&interrupted, &straight);
}

/// Every weight of the two runs' exports within 1e-6.
fn assert_same_exports(interrupted: &Path, straight: &Path) {
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

/// `kill -9` at seeded random moments (`GRAM_KILLS` times, default 3, each after at least one
/// more step was logged, so a kill may land in a step, a metrics row or a checkpoint save),
/// each time started again with `--resume` (without it while no complete checkpoint exists
/// yet, as a supervisor would): the run finishes with the export of a run never killed, taking
/// over the dead runs' locks; then resuming with another `--max-len` is refused, naming it.
#[test]
fn kill_9_then_resume_equals_an_uninterrupted_run() {
    use rand::{Rng, SeedableRng};
    let wanted: usize = std::env::var("GRAM_KILLS").map_or(3, |v| v.parse().unwrap());
    let steps = 2 * wanted;
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path());
    let killed = dir.path().join("killed");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut kills = 0;
    while kills < wanted {
        let before = steps_logged(&killed);
        if before >= steps - 1 {
            break;
        }
        let resume = gram::train::RunDir::at(&killed)
            .latest_checkpoint()
            .is_some();
        let mut child = finetune_steps(&data, &killed, resume, steps, 256)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut finished = false;
        // A fresh process logs its first step after loading the model; resumed, the rows after
        // its checkpoint are dropped first, so wait for a row past the checkpoint's step.
        let done = gram::train::RunDir::at(&killed)
            .latest_checkpoint()
            .and_then(|d| std::fs::read_to_string(d.join("COMPLETE")).ok())
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while steps_logged(&killed) <= done {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(300), "no progress");
            std::thread::sleep(Duration::from_millis(10));
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert!(
        kills >= wanted.div_ceil(2).max(2),
        "only {kills} of {wanted} kills landed before the run ended"
    );
    eprintln!("{kills} kills, each resumed");
    let resume = gram::train::RunDir::at(&killed)
        .latest_checkpoint()
        .is_some();
    let resumed = run_to_end(finetune_steps(&data, &killed, resume, steps, 256));
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        stderr.contains("no longer running"),
        "stale lock not taken over:\n{stderr}"
    );
    assert!(!killed.join("lock").exists(), "the lock outlived the run");
    assert_eq!(
        steps_logged(&killed),
        steps,
        "{}",
        std::fs::read_to_string(killed.join("metrics.csv")).unwrap()
    );

    let straight = dir.path().join("straight");
    run_to_end(finetune_steps(&data, &straight, false, steps, 256));
    assert_same_exports(&killed, &straight);

    let refused = finetune_steps(&data, &killed, true, steps, 384)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("--max-len: checkpoint 256, now 384"),
        "{stderr}"
    );
}
