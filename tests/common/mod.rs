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
