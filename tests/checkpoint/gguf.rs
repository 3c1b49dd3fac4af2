//! GGUF files: the real model against python's `gguf` package, the q/k RoPE row permutation,
//! hand-written files of each architecture, and corrupt or unsupported input.

use std::path::Path;

use gram::checkpoint::gguf::{GgufFile, unpermute_rope_rows};
use gram::checkpoint::{Checkpoint, HostTensor};
use gram::config::Architecture;

use super::common::gguf::tiny_gguf;
use super::{common, smollm2, temp_dir};

pub(super) use super::common::gguf::{gguf_bytes, tiny_gguf_with};

// ---------------------------------------------------------------- GGUF on the real model

#[test]
fn gguf_config_is_smollm2_135m() {
    let c = &smollm2().config;
    assert_eq!(c.model_type, Architecture::Llama);
    assert_eq!(c.num_hidden_layers, 30);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.num_attention_heads, 9);
    assert_eq!(c.num_key_value_heads, 3);
    assert_eq!(c.head_dim(), 64);
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(c.rope_theta, 1e5);
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-10, "{}", c.rms_norm_eps);
    assert_eq!(c.max_position_embeddings, 8192);
    assert!(c.tie_word_embeddings);
    assert!(!c.qkv_bias());
    assert_eq!(c.bos_token_id, Some(1));
    assert_eq!(c.eos_token_id, Some(serde_json::json!(2)));
}

#[test]
fn gguf_tensors_have_hf_names_and_shapes() {
    let t = &smollm2().tensors;
    assert_eq!(
        t.len(),
        30 * 9 + 2,
        "9 tensors per layer + embedding + final norm, no lm_head (tied)"
    );
    assert!(!t.contains_key("lm_head.weight"));
    let shape = |name: &str| {
        t.get(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .shape
            .clone()
    };
    assert_eq!(shape("model.embed_tokens.weight"), [49152, 576]);
    assert_eq!(shape("model.norm.weight"), [576]);
    assert_eq!(shape("model.layers.29.self_attn.q_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.0.self_attn.k_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.0.self_attn.v_proj.weight"), [192, 576]);
    assert_eq!(shape("model.layers.0.self_attn.o_proj.weight"), [576, 576]);
    assert_eq!(shape("model.layers.0.mlp.gate_proj.weight"), [1536, 576]);
    assert_eq!(shape("model.layers.0.mlp.up_proj.weight"), [1536, 576]);
    assert_eq!(shape("model.layers.0.mlp.down_proj.weight"), [576, 1536]);
    assert_eq!(shape("model.layers.0.input_layernorm.weight"), [576]);
    assert_eq!(
        shape("model.layers.0.post_attention_layernorm.weight"),
        [576]
    );
    let finite = |x: &gram::checkpoint::StoredTensor| {
        x.to_host().unwrap().data.iter().all(|v| v.is_finite())
    };
    assert!(t.values().all(finite));
}

#[test]
fn take_removes_a_tensor_and_names_a_missing_one() {
    let mut checkpoint = Checkpoint::load(&common::model_path()).unwrap();
    let norm = checkpoint.take("model.norm.weight").unwrap();
    assert_eq!(norm.shape, [576]);
    let err = checkpoint
        .take("model.norm.weight")
        .unwrap_err()
        .to_string();
    let file = common::model_path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        err.contains("model.norm.weight") && err.contains(&file),
        "{err}"
    );
}

/// Rows of the real file against python's `gguf` package (tests/data/smollm2_gguf_rows.json,
/// from scripts/gguf-reference.py): Q8_0 and Q4_1 as stored, and q/k after transformers'
/// reverse permutation.
#[test]
fn real_tensors_match_gguf_py() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_gguf_rows.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let file = GgufFile::read(&common::model_path()).unwrap();
    let mut checked = 0;
    for tensor in reference["tensors"].as_array().unwrap() {
        let name = tensor["name"].as_str().unwrap();
        let ours = match tensor["layout"].as_str().unwrap() {
            "gguf" => file.tensor_f32(name).unwrap(),
            _ => smollm2().tensors[&gram::checkpoint::gguf::hf_name(name).unwrap()]
                .to_host()
                .unwrap(),
        };
        let info = file.tensors.iter().find(|t| t.name == name).unwrap();
        assert_eq!(
            format!("{:?}", info.ggml_type),
            tensor["ggml_type"].as_str().unwrap()
        );
        let shape: Vec<usize> = serde_json::from_value(tensor["shape"].clone()).unwrap();
        assert_eq!(ours.shape, shape, "{name}");
        let cols = shape[1];
        for (row, expected) in tensor["rows"].as_object().unwrap() {
            let row: usize = row.parse().unwrap();
            for (col, want) in expected.as_array().unwrap().iter().enumerate() {
                let got = ours.data[row * cols + col];
                assert_eq!(got, want.as_f64().unwrap() as f32, "{name}[{row}, {col}]");
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

// ---------------------------------------------------------------- RoPE row permutation

/// llama.cpp's converter: `w.reshape(n_head, 2, half, cols).swapaxes(1, 2)`, i.e. GGUF row
/// `h·hd + 2j + i` holds HF row `h·hd + i·half + j`.
fn llama_cpp_permute(t: &HostTensor, n_head: usize) -> HostTensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let (hd, half) = (rows / n_head, rows / n_head / 2);
    let mut data = vec![0.0; t.data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                let (dst, src) = (h * hd + 2 * j + i, h * hd + i * half + j);
                data[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor {
        shape: t.shape.clone(),
        data,
    }
}

#[test]
fn unpermute_undoes_llama_cpp_permute() {
    let (rows, cols, n_head) = (3 * 64, 5, 3);
    let hf = HostTensor {
        shape: vec![rows, cols],
        data: (0..rows * cols).map(|x| (x as f32 * 0.37).sin()).collect(),
    };
    let gguf = llama_cpp_permute(&hf, n_head);
    assert_ne!(gguf, hf);
    assert_eq!(unpermute_rope_rows(&gguf, n_head).unwrap(), hf);
}

#[test]
fn unpermute_small_example() {
    // Two heads of width 4 (half 2), one column: GGUF rows [10..18) are HF rows
    // [g0, g2, g1, g3 | g4, g6, g5, g7].
    let gguf = HostTensor {
        shape: vec![8, 1],
        data: (10..18).map(|x| x as f32).collect(),
    };
    let hf = unpermute_rope_rows(&gguf, 2).unwrap();
    assert_eq!(hf.data, [10.0, 12.0, 11.0, 13.0, 14.0, 16.0, 15.0, 17.0]);
    assert!(
        unpermute_rope_rows(&gguf, 3).is_none(),
        "8 rows are not 3 heads"
    );
}

// ---------------------------------------------------------------- corrupt and unsupported GGUF

/// Llama files get their q/k rows un-permuted (heads of width 4: HF rows = GGUF rows
/// [0, 2, 1, 3] within each head); Qwen2 files keep GGUF row order. Both map every name,
/// keep the untied `lm_head`, and read the config and the tokenizer.
#[test]
fn hand_written_gguf_loads_with_hf_names() {
    let dir = temp_dir("tiny-gguf");
    for arch in ["llama", "qwen2"] {
        let path = dir.join(format!("{arch}.gguf"));
        std::fs::write(&path, tiny_gguf(arch)).unwrap();
        let mut checkpoint = Checkpoint::load(&path).unwrap();
        let c = &checkpoint.config;
        assert_eq!(
            (c.num_hidden_layers, c.hidden_size, c.intermediate_size),
            (1, 8, 8)
        );
        assert_eq!(
            (c.num_attention_heads, c.num_key_value_heads, c.head_dim()),
            (2, 1, 4)
        );
        assert_eq!(
            (c.vocab_size, c.max_position_embeddings, c.rope_theta),
            (4, 128, 1e6)
        );
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.eos_token_id, Some(serde_json::json!(3)));
        let t = &checkpoint.take_host_tensors().unwrap();
        assert_eq!(t.len(), 12);
        assert_eq!(t["lm_head.weight"].shape, [4, 8]);
        assert_eq!(t["model.layers.0.self_attn.k_proj.weight"].shape, [4, 8]);
        assert_eq!(
            t["model.layers.0.mlp.down_proj.weight"].data[..9],
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        );
        let first_column =
            |name: &str| -> Vec<f32> { t[name].data.iter().step_by(8).copied().collect() };
        let (q, k) = if arch == "llama" {
            (
                vec![0.0, 16.0, 8.0, 24.0, 32.0, 48.0, 40.0, 56.0],
                vec![0.0, 16.0, 8.0, 24.0],
            )
        } else {
            (
                vec![0.0, 8.0, 16.0, 24.0, 32.0, 40.0, 48.0, 56.0],
                vec![0.0, 8.0, 16.0, 24.0],
            )
        };
        assert_eq!(
            first_column("model.layers.0.self_attn.q_proj.weight"),
            q,
            "{arch}"
        );
        assert_eq!(
            first_column("model.layers.0.self_attn.k_proj.weight"),
            k,
            "{arch}"
        );
        assert_eq!(
            first_column("model.layers.0.self_attn.v_proj.weight"),
            [0.0, 8.0, 16.0, 24.0],
            "{arch}"
        );
        assert_eq!(checkpoint.codec.encode("ab<|end|>b").unwrap(), [2, 3, 1]);
        assert_eq!(checkpoint.codec.eos_token_id(), Some(3));
    }
}

pub(super) fn parse_err(bytes: Vec<u8>) -> String {
    let path = Path::new("/models/broken.gguf");
    let err = GgufFile::parse(path, bytes).unwrap_err();
    assert!(matches!(err, gram::Error::Checkpoint { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("broken.gguf"), "{message}");
    message
}

#[test]
fn truncated_gguf_is_an_error_naming_the_file() {
    let real = std::fs::read(common::model_path()).unwrap();
    let full = GgufFile::parse(Path::new("whole.gguf"), real.clone()).unwrap();
    let header_end = full.tensors.iter().map(|t| t.start).min().unwrap();
    let lengths = [
        0,
        3,
        4,
        7,
        15,
        23,
        24,
        100,
        4096,
        1 << 20,
        header_end - 1,
        header_end,
        header_end + 1000,
        real.len() - 1,
    ];
    for len in lengths {
        let message = parse_err(real[..len].to_vec());
        assert!(
            message.contains("truncated") || message.contains("magic"),
            "{len}: {message}"
        );
    }
    // Through Checkpoint::load from an actual file.
    let dir = temp_dir("truncated");
    let path = dir.join("cut.gguf");
    std::fs::write(&path, &real[..header_end + 1000]).unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("cut.gguf") && err.contains("past the end"),
        "{err}"
    );
}

#[test]
fn corrupt_gguf_is_an_error_not_a_panic() {
    assert!(parse_err(b"GGML\x03\0\0\0".to_vec()).contains("magic"));
    // A kv_count that cannot fit in the file (no huge allocation).
    let mut huge = gguf_bytes(&[], &[], 0);
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(parse_err(huge).contains("kv_count"));
    // A string length past the end of the file.
    let mut long_key = gguf_bytes(&[("general.architecture", "llama")], &[], 0);
    long_key[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(parse_err(long_key).contains("metadata key"));
    // Tensor data past the end, and a tensor size that overflows.
    assert!(parse_err(gguf_bytes(&[], &[("w", vec![4, 4], 0)], 32)).contains("past the end"));
    assert!(parse_err(gguf_bytes(&[], &[("w", vec![u64::MAX, 4], 0)], 0)).contains("overflow"));
    assert!(parse_err(gguf_bytes(&[], &[("w", vec![4], 64)], 16)).contains("past the end"));
    assert!(parse_err(gguf_bytes(&[], &[("w", vec![4], 3)], 64)).contains("alignment"));
    // Well-formed but empty file parses.
    let ok = GgufFile::parse(
        Path::new("ok.gguf"),
        gguf_bytes(&[("a", "b")], &[("w", vec![4], 0)], 16),
    )
    .unwrap();
    assert_eq!(ok.tensor_f32("w").unwrap().shape, [4]);
}

#[test]
fn unknown_gguf_architecture_is_named() {
    let dir = temp_dir("unknown-gguf-arch");
    let path = dir.join("phi.gguf");
    std::fs::write(
        &path,
        gguf_bytes(&[("general.architecture", "phi3")], &[], 0),
    )
    .unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("phi3") && err.contains(Architecture::SUPPORTED) && err.contains("phi.gguf"),
        "{err}"
    );
}

#[test]
fn missing_checkpoint_is_an_error() {
    let err = Checkpoint::load(Path::new("/nonexistent/model.gguf"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}

/// Llama 3.2's `rope_freqs` as llama.cpp's converter writes them (factor 32, low 1, high 4,
/// original context 8192, θ = 500000, head_dim 64) give back that scaling; other divisors are refused.
#[test]
fn llama3_rope_scaling_is_recovered_from_rope_freqs() {
    use gram::checkpoint::gguf::llama3_rope_scaling;
    let (theta, dim, factor) = (500_000.0f64, 64, 32.0f64);
    let factors: Vec<f32> = (0..dim / 2)
        .map(|i| {
            let wavelen = 2.0 * std::f64::consts::PI * theta.powf(2.0 * i as f64 / dim as f64);
            if wavelen < 8192.0 / 4.0 {
                1.0
            } else if wavelen > 8192.0 {
                factor as f32
            } else {
                let smooth = (8192.0 / wavelen - 1.0) / 3.0;
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect();
    assert!(
        factors.iter().any(|&f| f > 1.0 && f < 32.0),
        "some frequencies are in the smooth band"
    );
    let scaling = llama3_rope_scaling(&factors, theta).unwrap();
    assert_eq!(
        (scaling.rope_type.as_str(), scaling.factor),
        ("llama3", 32.0)
    );
    assert_eq!(
        (scaling.low_freq_factor, scaling.high_freq_factor),
        (1.0, 4.0)
    );
    assert_eq!(scaling.original_max_position_embeddings, Some(8192));
    let mut other = factors.clone();
    other[dim / 4] *= 1.5;
    assert!(llama3_rope_scaling(&other, theta).is_none());
    assert!(llama3_rope_scaling(&[], theta).is_none());
}
