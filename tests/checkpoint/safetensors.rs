//! Safetensors files are opened by their header alone: every tensor's dtype, shape and byte
//! range are checked against each other and the file before anything is read, and the
//! elements are read only when the model takes the tensor.

use gram::checkpoint::{Checkpoint, save_hf_dir};
use gram::config::Architecture;

use super::{common, smollm2, temp_dir, tiny_config};

/// A saved tiny model directory (F32 safetensors), the path of its `model.safetensors`, and
/// the scratch folder that holds them.
fn saved(tag: &str) -> (common::Scratch, std::path::PathBuf, std::path::PathBuf) {
    let codec = &smollm2().codec;
    let config = tiny_config(Architecture::Llama, codec.vocab_size());
    let scratch = temp_dir(tag);
    let dir = scratch.join("model");
    save_hf_dir(&dir, &config, &common::tiny_tensors(&config), codec).unwrap();
    let file = dir.join("model.safetensors");
    (scratch, dir, file)
}

/// Replace the header of the safetensors file at `path` with `edit(header)`, keeping the data.
fn edit_header(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

const NORM: &str = "model.norm.weight";

#[test]
fn inconsistent_headers_are_errors_naming_file_and_tensor() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 4] = [
        (
            "beyond",
            |h| h[NORM]["data_offsets"] = serde_json::json!([0u64, 1u64 << 40]),
            "does not fit",
        ),
        (
            "shape",
            |h| h[NORM]["shape"] = serde_json::json!([9]),
            "does not fit",
        ),
        ("dtype", |h| h[NORM]["dtype"] = "I8".into(), "dtype I8"),
        (
            "not-info",
            |h| h[NORM] = serde_json::json!({"dtype": "F32"}),
            "invalid safetensors",
        ),
    ];
    for (tag, edit, expected) in cases {
        let (_scratch, dir, file) = saved(&format!("st-{tag}"));
        edit_header(&file, edit);
        let err = Checkpoint::load(&dir).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains(NORM) && err.contains(expected),
            "{tag}: {err}"
        );
    }
    // A header length beyond the file, and a file too short for one.
    let (_scratch, dir, file) = saved("st-header");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let err = Checkpoint::load(&dir).unwrap_err().to_string();
    assert!(err.contains("header length"), "{err}");
    std::fs::write(&file, [1u8, 2, 3]).unwrap();
    let err = Checkpoint::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("8-byte"),
        "{err}"
    );
}

/// Opening reads headers only: the elements come from the file when a tensor is taken (a file
/// emptied after opening shows it), and equal what was saved.
#[test]
fn tensors_are_read_when_taken() {
    let (_scratch, dir, file) = saved("st-lazy");
    let mut checkpoint = Checkpoint::load(&dir).unwrap();
    let codec = &smollm2().codec;
    let config = tiny_config(Architecture::Llama, codec.vocab_size());
    let saved = common::tiny_tensors(&config);
    let norm = checkpoint.take(NORM).unwrap().into_host().unwrap();
    assert_eq!(norm, saved[NORM]);
    std::fs::write(&file, b"").unwrap();
    let err = checkpoint
        .take("model.embed_tokens.weight")
        .unwrap()
        .into_host()
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}
