//! Shared test helpers: where the real data, the fixture and the default model are.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared` beside the repository (override with `GRAM_SHARED`).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("GRAM_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// The default model, SmolLM2-135M-Instruct Q4_1 (override with `GRAM_MODEL`).
pub fn model_path() -> PathBuf {
    let path = match std::env::var_os("GRAM_MODEL") {
        Some(path) => PathBuf::from(path),
        None => {
            let cache = std::env::var_os("GRAM_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/gram"));
            cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    assert!(path.exists(), "model {} not found: run scripts/fetch-model.sh", path.display());
    path
}

/// The Hugging Face reference values for SmolLM2-135M-Instruct.
pub fn fixture() -> serde_json::Value {
    let path = shared_dir().join("fixtures/smollm2_135m_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
