//! The model reproduces Hugging Face transformers' logits for SmolLM2-135M-Instruct, on the CPU
//! (burn flex) and on wgpu (lavapipe in CI), within 1e-3.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use gram::checkpoint::Checkpoint;
use gram::model::Llama;

/// Run every fixture case through the model on `device` and compare with the reference.
fn check_parity(device: &Device) {
    let fixture = common::fixture();
    let mut checkpoint = Checkpoint::load(&common::model_path()).unwrap();
    let codec_ids: Vec<Vec<u32>> = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            checkpoint
                .codec
                .encode(case["text"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    let model = Llama::from_checkpoint(&mut checkpoint, device).unwrap();
    let token_a = fixture["token_A"][0].as_u64().unwrap() as usize;
    let token_b = fixture["token_B"][0].as_u64().unwrap() as usize;
    let mut worst = 0.0f32;
    for (case, ids) in fixture["cases"].as_array().unwrap().iter().zip(&codec_ids) {
        let expected_ids: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, &expected_ids, "token ids of {:?}", case["text"]);
        let t = ids.len();
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, t]),
            device,
        );
        let logits = model.logits(model.hidden_states(input)); // [1, T, V]
        let vocab = model.config.vocab_size;
        let logits = logits.into_data().try_to_vec::<f32>().unwrap();
        let mut check = |what: &str, got: f32, want: f64| {
            let err = (got - want as f32).abs();
            worst = worst.max(err);
            assert!(
                err < 1e-3,
                "{what} of {:?}: got {got}, want {want}",
                case["text"]
            );
        };
        let last = &logits[(t - 1) * vocab..t * vocab];
        for (id, want) in case["last_top20_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["last_top20_logits"].as_array().unwrap())
        {
            check(
                "top-20 logit",
                last[id.as_u64().unwrap() as usize],
                want.as_f64().unwrap(),
            );
        }
        check(
            "logit of A",
            last[token_a],
            case["last_logit_A"].as_f64().unwrap(),
        );
        check(
            "logit of B",
            last[token_b],
            case["last_logit_B"].as_f64().unwrap(),
        );
        for p in 0..t {
            let row = &logits[p * vocab..(p + 1) * vocab];
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = max
                + row
                    .iter()
                    .map(|&z| ((z - max) as f64).exp())
                    .sum::<f64>()
                    .ln() as f32;
            check(
                "logsumexp",
                lse,
                case["logsumexp_per_position"][p].as_f64().unwrap(),
            );
            let argmax = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            assert_eq!(
                argmax as u64,
                case["argmax_per_position"][p].as_u64().unwrap(),
                "argmax at {p}"
            );
        }
    }
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
