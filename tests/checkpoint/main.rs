//! Checkpoint loading: GGUF parsing and dequantisation, the q/k RoPE un-permutation, Hugging
//! Face directories (save → load round trip, safetensors headers), the weight-layout table, and
//! errors on corrupt or unsupported input.

#[path = "../common/mod.rs"]
mod common;

mod gguf;
mod hf_dir;
mod layout;
mod quant;
mod safetensors;
mod validate;

use std::sync::OnceLock;

use gram::checkpoint::Checkpoint;
use gram::config::{Architecture, ModelConfig};

/// The default model, loaded once for all tests of this crate.
fn smollm2() -> &'static Checkpoint {
    static MODEL: OnceLock<Checkpoint> = OnceLock::new();
    MODEL.get_or_init(|| Checkpoint::load(&common::model_path()).expect("the default model loads"))
}

/// A fresh empty directory under the system temp dir, unique to this process and `tag`,
/// removed when dropped.
fn temp_dir(tag: &str) -> common::Scratch {
    let dir = common::temp_dir(&format!("test-checkpoint-{tag}"));
    std::fs::create_dir_all(&*dir).unwrap();
    dir
}

/// A two-layer model of `model_type` (d = 8, 2 heads of width 4, 1 kv head, untied).
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
