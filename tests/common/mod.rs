//! Helpers shared by the integration tests: where the shared data, the default model and the
//! reference fixture are.
#![allow(dead_code)] // each test crate uses its own subset of these helpers

use std::path::PathBuf;

/// The shared read-only data directory: `$GRAM_SHARED`, else `<repo root>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("GRAM_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// The default model: `$GRAM_MODEL`, else `~/.cache/gram/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
/// Panics with instructions if it is missing.
pub fn model_path() -> PathBuf {
    let path = match std::env::var_os("GRAM_MODEL") {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/gram/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    assert!(
        path.is_file(),
        "model {} is missing: run scripts/fetch-model.sh or set GRAM_MODEL",
        path.display()
    );
    path
}

/// The reference values `fixtures/smollm2_135m_reference.json` (see fixtures/README.md).
pub fn fixture() -> serde_json::Value {
    let path = shared_dir().join("fixtures/smollm2_135m_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} unreadable ({e}): set GRAM_SHARED to the shared data directory",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()))
}

/// Seeded random tensors under every name and stored shape of the weight-layout table for
/// `config` (q/k/v biases, q/k norms and an untied `lm_head` exactly when the config has them).
pub fn tiny_tensors(
    config: &gram::config::ModelConfig,
) -> std::collections::BTreeMap<String, gram::checkpoint::HostTensor> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    gram::model::layout::tensors(config)
        .into_iter()
        .map(|t| {
            let data = (0..t.len())
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let tensor = gram::checkpoint::HostTensor::new(t.shape, data).expect("sizes agree");
            (t.hf_name, tensor)
        })
        .collect()
}

/// The wgpu device for tests that need one (`gram::device::select("auto")`), or `None` when
/// this machine has no wgpu adapter: the caller then returns early, and one line
/// `skipped: no wgpu adapter ...` naming the test goes to stderr (written past the test
/// harness's capture, so it shows even for a passing test).
///
/// With `GRAM_REQUIRE_GPU=1` (CI sets it) a missing adapter is a failure instead, so CI never
/// skips these tests silently. An adapter that exists but does not initialise always fails.
pub fn wgpu_device() -> Option<burn::tensor::Device> {
    if gram::device::adapters().is_empty() {
        let test = std::thread::current()
            .name()
            .unwrap_or("this test")
            .to_string();
        assert!(
            !require_gpu(),
            "{test}: GRAM_REQUIRE_GPU=1 but there is no wgpu adapter: install a Vulkan driver \
             (Debian/Ubuntu: mesa-vulkan-drivers libvulkan1 for lavapipe; see .ci/install-lavapipe.sh)"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipped: no wgpu adapter (install mesa-vulkan-drivers): {test}"
        );
        return None;
    }
    Some(
        gram::device::select("auto")
            .unwrap_or_else(|e| panic!("a wgpu adapter is listed but did not initialise: {e}")),
    )
}

/// Whether `GRAM_REQUIRE_GPU=1`: tests that need a wgpu adapter fail instead of skipping.
pub fn require_gpu() -> bool {
    std::env::var("GRAM_REQUIRE_GPU").is_ok_and(|v| v.trim() == "1")
}

/// A tiny Llama config (width 32, 4 query / 2 key-value heads, tied embeddings) for training
/// tests on random weights.
pub fn tiny_config(vocab_size: usize, layers: usize) -> gram::config::ModelConfig {
    gram::config::ModelConfig {
        model_type: gram::config::Architecture::Llama,
        vocab_size,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: layers,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: None,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: None,
        eos_token_id: None,
    }
}

/// `pairs` synthetic judge inputs over token ids `3..vocab`, each in both orders:
/// `prompt a 0 b` with verdict A (0) when the chosen segment comes first, B (1) when swapped.
pub fn verdict_data(pairs: usize, vocab: usize, seed: u64) -> Vec<gram::train::TrainExample> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tokens =
        |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(3..vocab as u32)).collect() };
    let mut out = Vec::new();
    for _ in 0..pairs {
        let (prompt, chosen, rejected) = (tokens(4), tokens(3), tokens(3));
        for (correct, (a, b)) in [(0, (&chosen, &rejected)), (1, (&rejected, &chosen))] {
            let ids = [prompt.clone(), a.clone(), vec![0], b.clone()].concat();
            out.push(gram::train::TrainExample::Verdict { ids, correct });
        }
    }
    out
}

/// Every tensor of an F32 safetensors file (an exported `model.safetensors`): name → (shape, data).
pub fn f32_tensors(
    path: &std::path::Path,
) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}
