//! Checkpoint loading: GGUF parsing and dequantisation, the q/k RoPE un-permutation, Hugging
//! Face directories (save → load round trip), and errors on corrupt or unsupported input.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gram::checkpoint::gguf::{GgufFile, unpermute_rope_rows};
use gram::checkpoint::quant::GgmlType;
use gram::checkpoint::{Checkpoint, HostTensor, save_hf_dir};
use gram::config::{Architecture, ModelConfig};
use gram::tokenizer::ChatMessage;

/// The default model, loaded once for all tests of this file.
fn smollm2() -> &'static Checkpoint {
    static MODEL: OnceLock<Checkpoint> = OnceLock::new();
    MODEL.get_or_init(|| Checkpoint::load(&common::model_path()).expect("the default model loads"))
}

/// A fresh empty directory under the system temp dir, unique to this process and `tag`.
fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("gram-test-checkpoint-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dequantize(ty: GgmlType, block: &[u8]) -> Vec<f32> {
    let mut out = vec![f32::NAN; block.len() / ty.block_bytes() * ty.block_len()];
    ty.dequantize(block, &mut out);
    out
}

fn f16(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

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
    assert!(t.values().all(|x| x.data.iter().all(|v| v.is_finite())));
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
            _ => smollm2().tensors[&gram::checkpoint::gguf::hf_name(name).unwrap()].clone(),
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

// ---------------------------------------------------------------- dequantisation, by hand

#[test]
fn dequantizes_plain_floats() {
    let values = [1.5f32, -0.25, 65504.0, 0.0];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(dequantize(GgmlType::F32, &f32_bytes), values);
    let f16_bytes: Vec<u8> = values.iter().flat_map(|&v| f16(v)).collect();
    assert_eq!(dequantize(GgmlType::F16, &f16_bytes), values);
    // bf16 is the top half of the f32: 1.5 = 0x3FC0, -0.25 = 0xBE80, 256.0 = 0x4380.
    let bf16_bytes = [0xC0, 0x3F, 0x80, 0xBE, 0x80, 0x43, 0x00, 0x00];
    assert_eq!(
        dequantize(GgmlType::BF16, &bf16_bytes),
        [1.5, -0.25, 256.0, 0.0]
    );
}

#[test]
fn dequantizes_q8_0_block() {
    let mut block = f16(0.5).to_vec();
    let qs: Vec<i8> = (0..32i32)
        .map(|j| if j == 0 { -128 } else { (127 - 8 * j) as i8 })
        .collect();
    block.extend(qs.iter().map(|&q| q as u8));
    let expected: Vec<f32> = qs.iter().map(|&q| 0.5 * q as f32).collect();
    assert_eq!(dequantize(GgmlType::Q8_0, &block), expected);
    assert_eq!(dequantize(GgmlType::Q8_0, &block)[..3], [-64.0, 59.5, 55.5]);
}

/// Nibble `j` of byte `j` is `j & 15` (values 0..16), the high nibble `15 − j` (values 16..32).
fn nibble_block(header: &[u8]) -> Vec<u8> {
    let mut block = header.to_vec();
    block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    block
}

#[test]
fn dequantizes_q4_0_block() {
    let got = dequantize(GgmlType::Q4_0, &nibble_block(&f16(2.0)));
    // x[j] = 2·(j − 8), x[16 + j] = 2·((15 − j) − 8)
    let expected: Vec<f32> = (0..16)
        .map(|j| 2.0 * (j as f32 - 8.0))
        .chain((0..16).map(|j| 2.0 * (7.0 - j as f32)))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        (got[0], got[15], got[16], got[31]),
        (-16.0, 14.0, 14.0, -16.0)
    );
}

#[test]
fn dequantizes_q4_1_block() {
    let header = [f16(0.25), f16(-1.0)].concat();
    let got = dequantize(GgmlType::Q4_1, &nibble_block(&header));
    // x[j] = 0.25·j − 1, x[16 + j] = 0.25·(15 − j) − 1
    assert_eq!(
        (got[0], got[1], got[15], got[16], got[31]),
        (-1.0, -0.75, 2.75, 2.75, -1.0)
    );
    let expected: Vec<f32> = (0..16)
        .map(|j| 0.25 * j as f32 - 1.0)
        .chain((0..16).map(|j| 0.25 * (15 - j) as f32 - 1.0))
        .collect();
    assert_eq!(got, expected);
}

/// Sub-block scales and mins of the hand-built K-quant blocks, packed as ggml's quantizer does:
/// bytes 0..4 hold sc[0..4] (+ top bits of sc[4..8] in bits 6–7), 4..8 m[0..4] (+ top bits of
/// m[4..8]), 8..12 the low nibbles of sc[4..8] and m[4..8].
const SC: [u8; 8] = [1, 2, 3, 4, 33, 40, 63, 17];
const MIN: [u8; 8] = [0, 5, 10, 15, 20, 62, 1, 2];

fn k_header() -> Vec<u8> {
    let mut scales = [0u8; 12];
    for k in 0..4 {
        scales[k] = SC[k] | (SC[k + 4] >> 4) << 6;
        scales[k + 4] = MIN[k] | (MIN[k + 4] >> 4) << 6;
        scales[k + 8] = (SC[k + 4] & 15) | (MIN[k + 4] & 15) << 4;
    }
    [f16(0.5).as_slice(), &f16(0.25), &scales].concat()
}

#[test]
fn unpacks_k_quant_scales() {
    let scales = &k_header()[4..];
    for j in 0..8 {
        assert_eq!(
            gram::checkpoint::quant::scale_min_k4(j, scales),
            (SC[j], MIN[j]),
            "sub-block {j}"
        );
    }
}

#[test]
fn dequantizes_q4_k_block() {
    // Every quant byte 0x73: even sub-blocks read 3, odd ones 7.
    let block = [k_header(), vec![0x73; 128]].concat();
    let got = dequantize(GgmlType::Q4_K, &block);
    for (sub, values) in got.chunks(32).enumerate() {
        let q = if sub % 2 == 0 { 3.0 } else { 7.0 };
        let want = 0.5 * SC[sub] as f32 * q - 0.25 * MIN[sub] as f32;
        assert!(
            values.iter().all(|&v| v == want),
            "sub-block {sub}: {values:?} != {want}"
        );
    }
    assert_eq!(got[0], 1.5); // 0.5·1·3 − 0
    assert_eq!(got[32 * 5], 0.5 * 40.0 * 7.0 - 0.25 * 62.0);
}

#[test]
fn dequantizes_q5_k_block() {
    // qh = 0b0101_0101: the fifth bit (+16) is set for even sub-blocks only.
    let block = [k_header(), vec![0b0101_0101; 32], vec![0x73; 128]].concat();
    let got = dequantize(GgmlType::Q5_K, &block);
    for (sub, values) in got.chunks(32).enumerate() {
        let q = if sub % 2 == 0 { 3.0 + 16.0 } else { 7.0 };
        let want = 0.5 * SC[sub] as f32 * q - 0.25 * MIN[sub] as f32;
        assert!(
            values.iter().all(|&v| v == want),
            "sub-block {sub}: {values:?} != {want}"
        );
    }
    assert_eq!(got[0], 9.5); // 0.5·1·19 − 0
}

#[test]
fn dequantizes_q6_k_block() {
    // ql = 0x21 (low nibble 1, high 2), qh = 0b11_10_01_00 (2-bit fields 0, 1, 2, 3), so the four
    // 32-value groups of each half read (1|0<<4)−32 = −31, (1|1<<4)−32 = −15, (2|2<<4)−32 = 2,
    // (2|3<<4)−32 = 18, with scales[8h + l/16 + 2k] for value 128h + 32k + l.
    let scales: [i8; 16] = [
        1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16,
    ];
    let block = [
        vec![0x21; 128],
        vec![0b1110_0100; 64],
        scales.iter().map(|&s| s as u8).collect(),
        f16(0.5).to_vec(),
    ]
    .concat();
    let got = dequantize(GgmlType::Q6_K, &block);
    let q = [-31.0, -15.0, 2.0, 18.0];
    for (i, &v) in got.iter().enumerate() {
        let (h, k, l) = (i / 128, i % 128 / 32, i % 32);
        let want = 0.5 * scales[8 * h + l / 16 + 2 * k] as f32 * q[k];
        assert_eq!(v, want, "value {i}");
    }
    assert_eq!(
        (got[0], got[16], got[32], got[255]),
        (-15.5, 31.0, -22.5, 0.5 * -16.0 * 18.0)
    );
}

/// Seeded random blocks of every quantised type against python's `gguf` package
/// (tests/data/quant_blocks.json, from scripts/quant-blocks-reference.py).
#[test]
fn random_blocks_match_gguf_py() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/quant_blocks.json");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];
    for case in cases.as_array().unwrap() {
        let name = case["type"].as_str().unwrap();
        let ty = *types
            .iter()
            .find(|t| format!("{t:?}") == name)
            .unwrap_or_else(|| panic!("type {name}"));
        let hex = case["bytes"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let got = dequantize(ty, &bytes);
        let want = case["values"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let w = w.as_f64().unwrap() as f32;
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name}[{i}]: {g} != {w}"
            );
        }
    }
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

// ---------------------------------------------------------------- HF directories

fn tiny_config(model_type: Architecture, vocab_size: usize) -> ModelConfig {
    ModelConfig {
        model_type,
        vocab_size,
        hidden_size: 8,
        intermediate_size: 12,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: None,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
        attention_bias: false,
        bos_token_id: Some(1),
        eos_token_id: Some(serde_json::json!(2)),
    }
}

/// Random tensors with HF names and shapes for `config` (q/k/v biases when it has them).
fn tiny_tensors(config: &ModelConfig) -> BTreeMap<String, HostTensor> {
    let (d, f, hd) = (
        config.hidden_size,
        config.intermediate_size,
        config.head_dim(),
    );
    let (q, kv) = (
        config.num_attention_heads * hd,
        config.num_key_value_heads * hd,
    );
    let mut shapes = vec![
        (
            "model.embed_tokens.weight".to_owned(),
            vec![config.vocab_size, d],
        ),
        ("model.norm.weight".to_owned(), vec![d]),
        ("lm_head.weight".to_owned(), vec![config.vocab_size, d]),
    ];
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        shapes.extend([
            (format!("{p}.self_attn.q_proj.weight"), vec![q, d]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, d]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, d]),
            (format!("{p}.self_attn.o_proj.weight"), vec![d, q]),
            (format!("{p}.mlp.gate_proj.weight"), vec![f, d]),
            (format!("{p}.mlp.up_proj.weight"), vec![f, d]),
            (format!("{p}.mlp.down_proj.weight"), vec![d, f]),
            (format!("{p}.input_layernorm.weight"), vec![d]),
            (format!("{p}.post_attention_layernorm.weight"), vec![d]),
        ]);
        if config.qkv_bias() {
            shapes.extend([
                (format!("{p}.self_attn.q_proj.bias"), vec![q]),
                (format!("{p}.self_attn.k_proj.bias"), vec![kv]),
                (format!("{p}.self_attn.v_proj.bias"), vec![kv]),
            ]);
        }
    }
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let data = (0..shape.iter().product())
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            (name, HostTensor { shape, data })
        })
        .collect()
}

#[test]
fn save_hf_dir_then_load_round_trips() {
    let codec = &smollm2().codec;
    let config = tiny_config(Architecture::Qwen2, codec.vocab_size());
    let tensors = tiny_tensors(&config);
    let dir = temp_dir("roundtrip").join("model");
    save_hf_dir(&dir, &config, &tensors, codec).unwrap();
    let loaded = Checkpoint::load(&dir).unwrap();
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.tensors, tensors);
    assert_eq!(loaded.source, dir);
    assert_eq!(loaded.codec.chat_template(), codec.chat_template());
    assert_eq!(
        (loaded.codec.eos_token_id(), loaded.codec.pad_token_id()),
        (Some(2), Some(2))
    );
    for case in common::fixture()["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            loaded.codec.encode(text).unwrap(),
            codec.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let messages = [ChatMessage::new("user", "Which answer is better, A or B?")];
    assert_eq!(
        loaded.codec.apply_chat_template(&messages, true).unwrap(),
        codec.apply_chat_template(&messages, true).unwrap()
    );

    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config_json["architectures"],
        serde_json::json!(["Qwen2ForCausalLM"])
    );
    assert_eq!(config_json["torch_dtype"], "float32");
    assert_eq!(config_json["model_type"], "qwen2");

    // Saving again replaces the directory and leaves no staging directories behind.
    let mut tied = tiny_config(Architecture::Llama, codec.vocab_size());
    tied.tie_word_embeddings = true;
    let mut tied_tensors = tiny_tensors(&tied);
    tied_tensors.remove("lm_head.weight");
    save_hf_dir(&dir, &tied, &tied_tensors, codec).unwrap();
    let reloaded = Checkpoint::load(&dir).unwrap();
    assert_eq!(reloaded.config, tied);
    assert_eq!(reloaded.tensors, tied_tensors);
    let siblings: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["model"]);
}

#[test]
fn failed_save_leaves_no_directory() {
    let codec = &smollm2().codec;
    let config = tiny_config(Architecture::Llama, codec.vocab_size());
    let mut tensors = tiny_tensors(&config);
    tensors.insert(
        "broken".into(),
        HostTensor {
            shape: vec![3, 3],
            data: vec![0.0; 4],
        },
    );
    let parent = temp_dir("failed-save");
    let err = save_hf_dir(&parent.join("model"), &config, &tensors, codec)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken"), "{err}");
    assert_eq!(
        std::fs::read_dir(&parent).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn unknown_hf_architecture_is_named() {
    let dir = temp_dir("unknown-arch");
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "gpt_neox", "vocab_size": 10}"#,
    )
    .unwrap();
    let err = Checkpoint::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("gpt_neox")
            && err.contains(Architecture::SUPPORTED)
            && err.contains("config.json"),
        "{err}"
    );
}

// ---------------------------------------------------------------- corrupt and unsupported GGUF

/// A metadata value for [`gguf_bytes`].
enum Meta<'a> {
    Str(&'a str),
    U32(u32),
    F32(f32),
    Strs(&'a [&'a str]),
    I32s(&'a [i32]),
}

/// A hand-written GGUF v3 file: metadata as given, F32 tensors `(name, dims, offset)` and
/// `data` after the header (padded to the default 32-byte alignment).
fn gguf_file(
    metadata: &[(&str, Meta)],
    tensors: &[(&str, Vec<u64>, u64)],
    data: &[f32],
) -> Vec<u8> {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut out, key);
        match value {
            Meta::Str(s) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, s);
            }
            Meta::U32(v) => out.extend([4u32.to_le_bytes(), v.to_le_bytes()].concat()),
            Meta::F32(v) => out.extend([6u32.to_le_bytes(), v.to_le_bytes()].concat()),
            Meta::Strs(items) => {
                out.extend([9u32, 8].iter().flat_map(|t| t.to_le_bytes()));
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|s| string(&mut out, s));
            }
            Meta::I32s(items) => {
                out.extend([9u32, 5].iter().flat_map(|t| t.to_le_bytes()));
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
        }
    }
    for (name, dims, offset) in tensors {
        string(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
        out.extend(0u32.to_le_bytes()); // F32
        out.extend(offset.to_le_bytes());
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    out.extend(data.iter().flat_map(|x| x.to_le_bytes()));
    out
}

/// [`gguf_file`] with string metadata and `data_len` zero bytes of tensor data.
fn gguf_bytes(
    metadata: &[(&str, &str)],
    tensors: &[(&str, Vec<u64>, u64)],
    data_len: usize,
) -> Vec<u8> {
    let metadata: Vec<_> = metadata.iter().map(|&(k, v)| (k, Meta::Str(v))).collect();
    let mut out = gguf_file(&metadata, tensors, &[]);
    out.resize(out.len() + data_len, 0);
    out
}

/// A one-layer GGUF of architecture `arch` (d = 8, 2 heads of width 4, 1 kv head, 4 tokens)
/// whose every tensor holds 0, 1, 2, ... and whose output projection is stored (untied).
fn tiny_gguf(arch: &str) -> Vec<u8> {
    let key = |k: &str| format!("{arch}.{k}");
    let keys: Vec<String> = [
        "block_count",
        "embedding_length",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "context_length",
        "attention.layer_norm_rms_epsilon",
        "rope.freq_base",
    ]
    .iter()
    .map(|k| key(k))
    .collect();
    let tokens = ["a", "b", "ab", "<|end|>"];
    let metadata = [
        ("general.architecture", Meta::Str(arch)),
        (keys[0].as_str(), Meta::U32(1)),
        (keys[1].as_str(), Meta::U32(8)),
        (keys[2].as_str(), Meta::U32(8)),
        (keys[3].as_str(), Meta::U32(2)),
        (keys[4].as_str(), Meta::U32(1)),
        (keys[5].as_str(), Meta::U32(128)),
        (keys[6].as_str(), Meta::F32(1e-6)),
        (keys[7].as_str(), Meta::F32(1e6)),
        ("tokenizer.ggml.model", Meta::Str("gpt2")),
        ("tokenizer.ggml.tokens", Meta::Strs(&tokens)),
        ("tokenizer.ggml.merges", Meta::Strs(&["a b"])),
        ("tokenizer.ggml.token_type", Meta::I32s(&[1, 1, 1, 3])),
        ("tokenizer.ggml.eos_token_id", Meta::U32(3)),
    ];
    // GGUF dims are [in, out].
    let shapes: [(&str, Vec<u64>); 12] = [
        ("token_embd.weight", vec![8, 4]),
        ("output.weight", vec![8, 4]),
        ("output_norm.weight", vec![8]),
        ("blk.0.attn_q.weight", vec![8, 8]),
        ("blk.0.attn_k.weight", vec![8, 4]),
        ("blk.0.attn_v.weight", vec![8, 4]),
        ("blk.0.attn_output.weight", vec![8, 8]),
        ("blk.0.ffn_gate.weight", vec![8, 8]),
        ("blk.0.ffn_up.weight", vec![8, 8]),
        ("blk.0.ffn_down.weight", vec![8, 8]),
        ("blk.0.attn_norm.weight", vec![8]),
        ("blk.0.ffn_norm.weight", vec![8]),
    ];
    let mut tensors = Vec::new();
    let mut data = Vec::new();
    for (name, dims) in shapes {
        let n: u64 = dims.iter().product();
        tensors.push((name, dims, 4 * data.len() as u64));
        data.extend((0..n).map(|x| x as f32));
        data.resize(data.len().div_ceil(8) * 8, 0.0); // keep offsets 32-byte aligned
    }
    gguf_file(&metadata, &tensors, &data)
}

/// Llama files get their q/k rows un-permuted (heads of width 4: HF rows = GGUF rows
/// [0, 2, 1, 3] within each head); Qwen2 files keep GGUF row order. Both map every name,
/// keep the untied `lm_head`, and read the config and the tokenizer.
#[test]
fn hand_written_gguf_loads_with_hf_names() {
    let dir = temp_dir("tiny-gguf");
    for arch in ["llama", "qwen2"] {
        let path = dir.join(format!("{arch}.gguf"));
        std::fs::write(&path, tiny_gguf(arch)).unwrap();
        let checkpoint = Checkpoint::load(&path).unwrap();
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
        let t = &checkpoint.tensors;
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

fn parse_err(bytes: Vec<u8>) -> String {
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
