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
