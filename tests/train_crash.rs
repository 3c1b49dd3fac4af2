//! Crash-safe training on a tiny random model: a save interrupted at any point leaves the
//! newest complete checkpoint to resume from (and the old single-`checkpoint/` layout still
//! resumes), a second run on one folder is refused while the first lives, and `--resume` refuses
//! changed settings, naming each.

mod common;

use burn::module::Module;
use burn::tensor::Device;
use gram::model::Llama;
use gram::train::{Objective, RunDir, RunInputs, TrainOptions, Trainer};
use std::path::Path;

const VOCAB: usize = 64;

fn cpu() -> Device {
    Device::flex().autodiff()
}

fn options() -> TrainOptions {
    let mut o = TrainOptions::new(Objective::Gram, [1, 2], 0);
    o.batch_size = 2;
    o.lr = Some(2e-3);
    o.warmup_ratio = 0.1;
    o.save_every = 1;
    o
}

fn model() -> Llama {
    Llama::random(&common::tiny_config(VOCAB, 2), &cpu())
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn inputs(max_len: usize, data: &str) -> RunInputs {
    vec![
        ("--data".into(), data.into()),
        ("--max-len".into(), max_len.to_string()),
    ]
}

/// Every interruption of a save resumes from the newest complete checkpoint and, from there,
/// ends with the weights of a run never interrupted.
#[test]
fn an_interrupted_save_resumes_from_the_newest_complete_checkpoint() {
    let data = common::verdict_data(4, VOCAB, 7);
    let model = model();
    let mut straight = Trainer::new(model.clone(), options(), None).unwrap();
    straight.run(&data, &[], 6, |_| true).unwrap();

    let dir = common::temp_dir("crash-interrupted");
    let mut first = Trainer::new(model.clone(), options(), Some(dir.clone())).unwrap();
    first.run(&data, &[], 6, |m| m.step < 3).unwrap();
    drop(first);
    // The newest checkpoint and the one before it are kept, each complete.
    assert_eq!(
        names(&dir),
        ["checkpoint-2", "checkpoint-3", "metrics.csv"],
        "the lock goes with the trainer"
    );
    assert!(dir.join("checkpoint-3/COMPLETE").is_file());

    // A crash while writing step 4: its staging folder half-written, and a `checkpoint-4/`
    // without its COMPLETE marker (as if renamed by hand or the marker lost).
    let staging = dir.join(".checkpoint-4.partial");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("model.bpk"), b"half").unwrap();
    copy_dir(&dir.join("checkpoint-3"), &dir.join("checkpoint-4"));
    std::fs::remove_file(dir.join("checkpoint-4/COMPLETE")).unwrap();
    std::fs::write(dir.join("checkpoint-4/model.bpk"), b"truncated").unwrap();
    let run_dir = RunDir::at(&*dir);
    assert_eq!(run_dir.latest_checkpoint(), Some(dir.join("checkpoint-3")));
    let resumed = Trainer::resume(model.clone(), options(), dir.clone()).unwrap();
    assert_eq!(resumed.step(), 3);
    drop(resumed);

    // The newest complete one gone as well: the previous one is the fallback.
    std::fs::remove_dir_all(dir.join("checkpoint-3")).unwrap();
    let mut resumed = Trainer::resume(model.clone(), options(), dir.clone()).unwrap();
    assert_eq!(resumed.step(), 2);
    resumed.run(&data, &[], 6, |_| true).unwrap();
    let worst = common::weight_gap(&resumed, &straight);
    assert!(worst < 1e-6, "weights differ by {worst}");
    drop(resumed);
    // The leftovers of the interrupted save are cleared by the next complete one.
    assert_eq!(names(&dir), ["checkpoint-5", "checkpoint-6", "metrics.csv"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// A folder written before numbered checkpoints (one `checkpoint/`, no recorded inputs) still
/// resumes, and stays as the fallback until a second numbered checkpoint exists.
#[test]
fn the_old_single_checkpoint_layout_still_resumes() {
    let data = common::verdict_data(4, VOCAB, 7);
    let model = model();
    let dir = common::temp_dir("crash-legacy");
    let mut first = Trainer::new(model.clone(), options(), Some(dir.clone())).unwrap();
    first.run(&data, &[], 6, |m| m.step < 2).unwrap();
    drop(first);
    std::fs::rename(dir.join("checkpoint-2"), dir.join("checkpoint")).unwrap();
    std::fs::remove_dir_all(dir.join("checkpoint-1")).unwrap();
    std::fs::remove_file(dir.join("checkpoint/COMPLETE")).unwrap();
    let state = dir.join("checkpoint/trainer_state.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("inputs");
    std::fs::write(&state, serde_json::to_string(&json).unwrap()).unwrap();

    let mut resumed =
        Trainer::resume_with_inputs(model.clone(), options(), dir.clone(), inputs(256, "a"))
            .unwrap();
    assert_eq!(resumed.step(), 2);
    resumed.run(&data, &[], 6, |m| m.step < 3).unwrap();
    drop(resumed);
    assert_eq!(names(&dir), ["checkpoint", "checkpoint-3", "metrics.csv"]);
    let mut resumed = Trainer::resume(model, options(), dir.clone()).unwrap();
    assert_eq!(resumed.step(), 3);
    resumed.run(&data, &[], 6, |m| m.step < 4).unwrap();
    drop(resumed);
    assert_eq!(names(&dir), ["checkpoint-3", "checkpoint-4", "metrics.csv"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// A second run on a folder another live run holds is refused, naming the folder and the pid;
/// a lock left by a process that is gone is taken over; the lock goes when the run ends.
#[test]
fn a_second_run_on_one_folder_is_refused() {
    let dir = common::temp_dir("crash-locked");
    let first = Trainer::new(model(), options(), Some(dir.clone())).unwrap();
    let lock = dir.join("lock");
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        std::process::id().to_string()
    );
    let Err(error) = Trainer::new(model(), options(), Some(dir.clone())) else {
        panic!("a second run on a locked folder was let in");
    };
    let message = error.to_string();
    assert!(
        message.contains(&dir.display().to_string())
            && message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    drop(first);
    assert!(!lock.exists(), "the lock outlived its run");

    // Stale: no process 4194304 + 1 exists (above Linux's pid_max).
    std::fs::write(&lock, "4194305\n").unwrap();
    let second = Trainer::new(model(), options(), Some(dir.clone())).unwrap();
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        std::process::id().to_string()
    );
    drop(second);
    let _ = std::fs::remove_dir_all(dir);
}

/// Resuming with another sequence length, data file or hyper-parameter is refused, each
/// difference named with the checkpoint's value and the new one.
#[test]
fn resume_refuses_changed_settings_naming_each() {
    let data = common::verdict_data(4, VOCAB, 7);
    let dir = common::temp_dir("crash-changed");
    let mut first = Trainer::new_with_inputs(
        model(),
        options(),
        Some(dir.clone()),
        inputs(512, "a.jsonl"),
    )
    .unwrap();
    first.run(&data, &[], 6, |m| m.step < 1).unwrap();
    drop(first);

    let refused = |o: TrainOptions, i: RunInputs| -> String {
        match Trainer::resume_with_inputs(model(), o, dir.clone(), i) {
            Ok(_) => panic!("resumed with changed settings"),
            Err(e) => e.to_string(),
        }
    };
    let message = refused(options(), inputs(384, "a.jsonl"));
    assert!(
        message.contains("--max-len: checkpoint 512, now 384"),
        "{message}"
    );
    assert!(!message.contains("--data"), "{message}");
    let message = refused(options(), inputs(384, "b.jsonl"));
    assert!(
        message.contains("--max-len: checkpoint 512, now 384")
            && message.contains("--data: checkpoint a.jsonl, now b.jsonl"),
        "{message}"
    );
    let mut other = options();
    other.lr = Some(1e-4);
    other.batch_size = 3;
    let message = refused(other, inputs(512, "a.jsonl"));
    assert!(
        message.contains("--lr: checkpoint 0.002, now 0.0001")
            && message.contains("--batch-size: checkpoint 2, now 3"),
        "{message}"
    );
    // A run saved with an explicit rate does not resume on the default one (which may differ).
    let mut other = options();
    other.lr = None;
    let message = refused(other, inputs(512, "a.jsonl"));
    assert!(
        message.contains("--lr: checkpoint 0.002, now the default"),
        "{message}"
    );
    let mut other = options();
    other.adam_epsilon = 1e-8;
    let message = refused(other, inputs(512, "a.jsonl"));
    assert!(
        message.contains("--adam-epsilon: checkpoint 0.00001, now 1e-8"),
        "{message}"
    );
    let mut other = options();
    other.objective = Objective::BradleyTerry;
    let message = refused(other, inputs(512, "a.jsonl"));
    assert!(message.contains("objective"), "{message}");

    // The step budget and the intervals may change.
    let mut longer = options();
    longer.max_steps = Some(9);
    longer.save_every = 2;
    let resumed =
        Trainer::resume_with_inputs(model(), longer, dir.clone(), inputs(512, "a.jsonl")).unwrap();
    assert_eq!(resumed.step(), 1);
    drop(resumed);
    let _ = std::fs::remove_dir_all(dir);
}

/// A checkpoint holds only the weights that train (with `--train-layers 1` of two layers: the
/// top layer and the final norm). The frozen rest comes from the model the run is resumed
/// with, and the resumed run ends with the weights of a run never interrupted.
#[test]
fn a_checkpoint_holds_only_the_weights_that_train() {
    let data = common::verdict_data(4, VOCAB, 7);
    let base = model();
    let mut o = options();
    o.train_layers = Some(1);
    let straight_dir = common::temp_dir("crash-partial-straight");
    let mut straight = Trainer::new(base.clone(), o.clone(), Some(straight_dir.clone())).unwrap();
    straight.run(&data, &[], 4, |_| true).unwrap();

    let dir = common::temp_dir("crash-partial");
    let mut first = Trainer::new(base.clone(), o.clone(), Some(dir.clone())).unwrap();
    first.run(&data, &[], 4, |m| m.step < 2).unwrap();
    drop(first);
    let saved = burn::store::ModuleRecord::load(dir.join("checkpoint-2/model.bpk")).unwrap();
    let whole = base.clone().into_record();
    // Each layer holds 9 tensors (4 attention and 3 MLP projections, 2 norms); the embedding
    // and the final norm make 20. The checkpoint: the top layer and the final norm.
    assert_eq!((saved.len(), whole.len()), (10, 20));

    let mut resumed = Trainer::resume(base, o, dir.clone()).unwrap();
    assert_eq!(resumed.step(), 2);
    resumed.run(&data, &[], 4, |_| true).unwrap();
    let worst = common::weight_gap(&resumed, &straight);
    assert!(worst < 1e-6, "weights differ by {worst}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(straight_dir);
}

/// The fingerprint a resumed run compares for the frozen weights' source: equal for a copy,
/// different for other bytes of the same size where the samples reach, and for a folder whose
/// file changed.
#[test]
fn the_weights_fingerprint_tells_other_weights_of_the_same_size() {
    let dir = common::temp_dir("fingerprint");
    std::fs::create_dir_all(&dir).unwrap();
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.join("model.safetensors");
    std::fs::write(&file, &bytes).unwrap();
    let copy = dir.join("copy.safetensors");
    std::fs::copy(&file, &copy).unwrap();
    let print = gram::io::fingerprint(&file);
    assert!(print.starts_with("1 files, 3000000 bytes"), "{print}");
    // Another name, the same bytes: a file alone is fingerprinted by its contents.
    assert_eq!(gram::io::fingerprint(&copy), print);
    let folder = gram::io::fingerprint(&dir);
    // One byte in the middle (inside the 8th of the 16 sampled blocks): another fingerprint.
    let mut other = bytes.clone();
    other[1_400_000] ^= 1;
    std::fs::write(&copy, &other).unwrap();
    assert_ne!(gram::io::fingerprint(&copy), print);
    assert_ne!(gram::io::fingerprint(&dir), folder);
    assert_eq!(gram::io::fingerprint(&dir.join("missing")), "unreadable");
    drop(dir);
}
