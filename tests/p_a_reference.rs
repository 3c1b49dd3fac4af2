//! End to end against Hugging Face transformers: `GramJudge` on the CPU reproduces the p_a,
//! p_a_forward and p_a_reverse that transformers computed in f32 from the same GGUF with the
//! same default judge prompt (`tests/data/smollm2_p_a_reference.json`, written by
//! `scripts/transformers-crosscheck.py --pairs ... --write-reference ...`; its `made_by` says how
//! and with which versions). Unlike the logit fixture this covers everything between the text
//! and the verdict: template filling, chat template, tokenization, prefix reuse, both orders.
//! With f16 weights (on the CPU and on wgpu) p_a stays within 1e-2 of transformers' f32.

mod common;

use burn::tensor::Device;
use gram::dtype::Dtype;
use gram::judge::{GramJudge, JudgeOptions};
use gram::prompt::DEFAULT_TEMPLATE;
use gram::{Judge, Pair};
use serde_json::Value;

/// |p_a(gram) − p_a(transformers)| allowed (gram's f32 kernels against PyTorch's).
const P_A_TOLERANCE: f64 = 2e-3;

/// |p_a(gram, f16 weights) − p_a(transformers, f32)| allowed: the precision target of 16-bit
/// weights.
const F16_P_A_TOLERANCE: f64 = 1e-2;

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/smollm2_p_a_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn gram_judge_reproduces_transformers_p_a() {
    check_p_a(
        "cpu",
        &Device::flex(),
        Dtype::F32,
        P_A_TOLERANCE,
        usize::MAX,
    );
}

#[test]
fn gram_judge_with_f16_weights_stays_near_transformers_f32_p_a_on_cpu() {
    check_p_a(
        "cpu",
        &Device::flex(),
        Dtype::F16,
        F16_P_A_TOLERANCE,
        usize::MAX,
    );
}

#[test]
fn gram_judge_with_f16_weights_stays_near_transformers_f32_p_a_on_wgpu() {
    let Some(device) = common::wgpu_device() else {
        return;
    };
    // Two pairs: lavapipe compiles its f16 kernels cold in CI (minutes for the five).
    check_p_a("wgpu", &device, Dtype::F16, F16_P_A_TOLERANCE, 2);
}

/// Judge the first `max_pairs` reference pairs on `device` with weights in `dtype` and compare
/// p_a, p_a_forward and p_a_reverse with transformers' within `tolerance`.
fn check_p_a(name: &str, device: &Device, dtype: Dtype, tolerance: f64, max_pairs: usize) {
    let reference = reference();
    let made_by = &reference["made_by"];
    assert_eq!(
        made_by["template_text"].as_str(),
        Some(DEFAULT_TEMPLATE),
        "the default judge template changed since the fixture was made: regenerate it with `{}`",
        made_by["command"]
    );
    let model = common::model_path();
    assert_eq!(
        model.file_name().and_then(|n| n.to_str()),
        made_by["model"].as_str(),
        "the fixture was made for another model"
    );

    let rows = reference["pairs"].as_array().unwrap();
    assert!(rows.len() >= 4, "{} pairs", rows.len());
    let rows = &rows[..rows.len().min(max_pairs)];
    let pairs: Vec<Pair> = rows
        .iter()
        .map(|r| {
            Pair::new(
                r["prompt"].as_str().unwrap(),
                r["response_a"].as_str().unwrap(),
                r["response_b"].as_str().unwrap(),
            )
        })
        .collect();
    let options = JudgeOptions {
        batch_size: 4,
        dtype,
        ..JudgeOptions::default()
    };
    let mut judge = GramJudge::load(&model, device, options).unwrap();
    let want = dtype.resolve(device).unwrap();
    assert_eq!(judge.model().dtype(), want);
    assert_eq!(judge.load_report().map(|r| r.dtype), Some(want));

    // Same token counts as transformers: the same text went in.
    for (row, pair) in rows.iter().zip(&pairs) {
        let id = &row["id"];
        for (key, (a, b)) in [
            ("tokens_forward", (&pair.response_a, &pair.response_b)),
            ("tokens_reverse", (&pair.response_b, &pair.response_a)),
        ] {
            let ids = judge.prompts().sequence(&pair.prompt, a, b).unwrap().ids;
            assert_eq!(ids.len() as u64, row[key].as_u64().unwrap(), "{id}: {key}");
        }
    }

    let verdicts = judge.judge(&pairs).unwrap();
    let mut worst = 0.0f64;
    for (row, verdict) in rows.iter().zip(&verdicts) {
        let id = &row["id"];
        for (key, ours) in [
            ("p_a", verdict.p_a),
            ("p_a_forward", verdict.p_a_forward),
            ("p_a_reverse", verdict.p_a_reverse),
        ] {
            let theirs = row[key].as_f64().unwrap();
            let gap = (ours - theirs).abs();
            worst = worst.max(gap);
            assert!(
                gap <= tolerance,
                "{id} {key}: gram {ours:.6}, transformers {theirs:.6} (made by {})",
                made_by["command"]
            );
        }
    }
    eprintln!(
        "{} pairs on {name}, {want:?} weights: largest gap to transformers f32 {worst:.2e}",
        rows.len()
    );
}
