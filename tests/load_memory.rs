//! Loading streams one tensor at a time: a bf16 Hugging Face checkpoint loaded with f16 weights
//! raises the process's peak memory by about its file size (the weights themselves, plus one
//! tensor in flight), never by an f32 copy of the model. Measured with Linux's peak resident
//! set (`VmHWM`, reset through `/proc/self/clear_refs`), on `cpu` and on wgpu (lavapipe's
//! device memory is process memory too). One test in its own binary, so no other test's
//! allocations land in the measurement.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;

use burn::tensor::{Device, FloatDType};
use gram::checkpoint::Checkpoint;
use gram::config::ModelConfig;
use gram::model::Llama;

/// Peak process memory while loading, over what the process held before, as a multiple of
/// the checkpoint's file size (the bound for Qwen3-0.6B on lavapipe).
const MAX_PEAK_OVER_FILE: f64 = 1.6;

/// A Llama of 160 MB in bf16: 16 layers of width 512, the SmolLM2 vocabulary (49,152), tied
/// embeddings — the embedding a third of the file, as in small real models.
fn config() -> ModelConfig {
    ModelConfig {
        hidden_size: 512,
        intermediate_size: 1536,
        num_attention_heads: 8,
        num_key_value_heads: 4,
        max_position_embeddings: 2048,
        ..common::tiny_config(49_152, 16)
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Load `dir` onto `device` in f16 and return the peak memory growth over the file size.
fn peak_over_file(dir: &Path, file_bytes: u64, device: &Device) -> f64 {
    let mut checkpoint = Checkpoint::load(dir).unwrap();
    // Reset the peak to the current resident set (Linux ≥ 4.0).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS");
    let (model, report) =
        Llama::from_checkpoint_as(&mut checkpoint, device, FloatDType::F16).unwrap();
    let peak = status_bytes("VmHWM");
    assert_eq!(model.dtype(), FloatDType::F16);
    assert!(report.kept_f32.is_empty(), "{report}");
    // The weights on the device: all of the file's data, norm gains widened to f32.
    let weights = report.device_bytes as f64;
    assert!(
        (weights / file_bytes as f64 - 1.0).abs() < 0.01,
        "{report} for a {file_bytes}-byte file"
    );
    let ratio = (peak - before) as f64 / file_bytes as f64;
    eprintln!(
        "{}: {file_bytes} B bf16 file, {report}; peak resident growth while loading {:.0} MB = {ratio:.2}× the file",
        gram::device::describe(device),
        (peak - before) as f64 / 1e6
    );
    drop(model);
    ratio
}

#[test]
fn loading_bf16_in_f16_peaks_near_the_file_size_not_an_f32_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let file_bytes = common::write_bf16_dir(dir.path(), &config(), |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07
    });
    let mut devices = vec![Device::flex()];
    devices.extend(common::wgpu_device());
    for device in &devices {
        let ratio = peak_over_file(dir.path(), file_bytes, device);
        assert!(
            ratio < MAX_PEAK_OVER_FILE,
            "{}: loading peaked at {ratio:.2}× the file size (bound {MAX_PEAK_OVER_FILE})",
            gram::device::describe(device)
        );
    }
}
