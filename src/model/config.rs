//! The model configuration: mirrors a Hugging Face `config.json` of the Llama family.
//!
//! Field names are the checkpoint's own, so `config.json` deserialises straight into
//! [`ModelConfig`] and a trained model exports back to the same file.

use serde::{Deserialize, Serialize};

use super::layout;
use super::variant::Variant;

/// The decoder families we run (`model_type` in config.json, `general.architecture` in GGUF).
///
/// They differ only in small, config-visible ways, listed once per family in
/// [`Variant::of`](super::variant::Variant::of).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama 2/3.x, SmolLM2, TinyLlama: no projection biases.
    Llama,
    /// Mistral: Llama layout (sliding window ignored for the context lengths we judge).
    Mistral,
    /// Qwen2 / Qwen2.5: biases on the q, k and v projections.
    Qwen2,
    /// Qwen3: per-head RMSNorm on q and k before rotary embedding, no biases.
    Qwen3,
}

impl Architecture {
    /// Every architecture, in the order of [`Architecture::SUPPORTED`].
    pub const ALL: [Architecture; 4] = [
        Architecture::Llama,
        Architecture::Mistral,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ];

    /// The architecture names we accept, for error messages.
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, qwen3";

    /// The `model_type` / `general.architecture` name.
    pub fn name(self) -> &'static str {
        Variant::of(self).model_type
    }

    /// Parse a `model_type` (config.json) or `general.architecture` (GGUF) value.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|arch| arch.name().eq_ignore_ascii_case(name))
    }
}

/// Llama-3-style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}

/// A Llama-family decoder's hyper-parameters (the subset of `config.json` that shapes the math).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `model_type` in config.json.
    pub model_type: Architecture,
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// SwiGLU inner width.
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: heads sharing one key/value head = heads / kv_heads.
    pub num_key_value_heads: usize,
    /// Per-head width; defaults to hidden_size / num_attention_heads.
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Context length the model was trained for.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Output projection shares the input embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (Qwen2). Absent in config.json for Qwen2, so derived from the architecture.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    2048
}

impl ModelConfig {
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// How this model differs from plain Llama: its architecture's [`Variant`] with what the
    /// config adds (`attention_bias`, `rope_scaling`).
    pub fn variant(&self) -> Variant {
        Variant::of_config(self)
    }

    /// Whether q, k and v projections carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.variant().qkv_bias
    }

    /// Whether q and k get a per-head RMSNorm before RoPE (Qwen3).
    pub fn qk_norm(&self) -> bool {
        self.variant().qk_norm
    }

    /// Number of parameters implied by the config (embeddings counted once when tied): the
    /// sizes of the tensors of its [`layout`](layout::tensors).
    pub fn num_parameters(&self) -> usize {
        layout::tensors(self).iter().map(|t| t.len()).sum()
    }

    /// Matmul FLOPs of one forward pass over `tokens` tokens of a sequence of length `seq`,
    /// excluding the output projection (counted separately, since the judge forms only 2 rows).
    ///
    /// 2 FLOPs per multiply-add: projections 2·tokens·params_per_layer, attention scores and
    /// weighted values 2·2·tokens·seq·q_width (causal: half of that on average).
    pub fn forward_flops(&self, tokens: usize, seq: usize) -> f64 {
        let d = self.hidden_size as f64;
        let hd = self.head_dim() as f64;
        let q = self.num_attention_heads as f64 * hd;
        let kv = self.num_key_value_heads as f64 * hd;
        let proj = 2.0 * (d * q + 2.0 * d * kv + q * d + 3.0 * d * self.intermediate_size as f64);
        let attn = 2.0 * q * seq as f64; // QK^T and PV, causal average seq/2 keys each, x2 FLOPs
        self.num_hidden_layers as f64 * tokens as f64 * (proj + attn)
    }
}
