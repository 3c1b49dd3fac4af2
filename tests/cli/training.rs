//! `pretrain` and `finetune`: one step each, checked on `metrics.csv` and the exported weights.

use super::*;

/// The one data row of `metrics.csv` after a 1-step run: (step, loss, eval); its tokens/s and
/// wall seconds must be positive.
fn single_metrics_row(dir: &Path) -> (usize, f64, Option<f64>) {
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("step,lr,loss,eval,tokens_per_s,seconds"),
        "{csv}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    let row = &rows[0];
    for column in [4, 5] {
        let value: f64 = row[column].parse().unwrap();
        assert!(value > 0.0, "{csv}");
    }
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
    let exported = common::f32_tensors(&model_dir.join("model.safetensors"));
    let mut base = Checkpoint::load(&common::model_path()).unwrap();
    let layers = base.config.num_hidden_layers;
    let top = format!("model.layers.{}.", layers - 1);
    let mut changed_top = 0;
    for (name, tensor) in &base.take_host_tensors().unwrap() {
        let (_, got) = exported
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
