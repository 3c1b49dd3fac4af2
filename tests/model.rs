//! The model reproduces Hugging Face transformers' logits for SmolLM2-135M-Instruct, on the CPU
//! (burn flex) and on wgpu (lavapipe in CI), within 1e-3.

mod common;

use burn::tensor::Device;
use gram::checkpoint::Checkpoint;
use gram::model::Llama;

use common::ReferenceCase;

/// Run every fixture case through the model on `device` and compare with the reference.
fn check_parity(device: &Device) {
    let fixture = common::fixture();
    let mut checkpoint = Checkpoint::load(&common::model_path()).unwrap();
    let model = Llama::from_checkpoint(&mut checkpoint, device).unwrap();
    let cases: Vec<ReferenceCase> = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| ReferenceCase::new(case, case))
        .collect();
    let verdict = ["token_A", "token_B"].map(|k| fixture[k][0].as_u64().unwrap() as u32);
    let worst = common::check_logits(&model, &checkpoint.codec, &cases, verdict, 1e-3);
    eprintln!("worst |logit - reference| = {worst:.2e}");
}

#[test]
fn logits_match_transformers_on_cpu() {
    check_parity(&Device::flex());
}

#[test]
fn logits_match_transformers_on_wgpu() {
    let Some(device) = common::wgpu_device() else {
        return;
    };
    check_parity(&device);
}
