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
