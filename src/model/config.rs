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
        self.head_dim.unwrap_or_else(|| {
            self.hidden_size
                .checked_div(self.num_attention_heads)
                .unwrap_or(0)
        })
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

/// Upper bounds [`ModelConfig::validate`] holds a config to. Every released Llama-family model
/// is far inside them (Llama 3.1 405B: 126 layers, d = 16384, f = 53248, 128256 tokens); they
/// exist so that a crafted `config.json` or GGUF header cannot make a size computation overflow
/// or an allocation abort.
pub mod limits {
    /// Decoder layers.
    pub const MAX_LAYERS: usize = 1024;
    /// Model width d.
    pub const MAX_HIDDEN: usize = 65_536;
    /// SwiGLU inner width f.
    pub const MAX_INTERMEDIATE: usize = 1 << 20;
    /// Vocabulary size (4M tokens).
    pub const MAX_VOCAB: usize = 1 << 22;
    /// Attention heads (and key/value heads).
    pub const MAX_HEADS: usize = 1024;
    /// Per-head width.
    pub const MAX_HEAD_DIM: usize = 4096;
    /// Context length (16M positions).
    pub const MAX_POSITIONS: usize = 1 << 24;
    /// Parameters of the whole model: 2^40 (about 1.1 trillion, 4.4 TB of f32).
    pub const MAX_PARAMETERS: usize = 1 << 40;
}

impl ModelConfig {
    /// Check that the config describes a model we can build: every size at least 1 and within
    /// [`limits`], `num_attention_heads` a multiple of `num_key_value_heads`, an even head
    /// width (RoPE rotates pairs), `hidden_size` divisible by the heads when `head_dim` is not
    /// given, `rms_norm_eps` and `rope_theta` finite and positive, and the parameter count of
    /// the weight-layout table computable without overflow and within
    /// [`limits::MAX_PARAMETERS`].
    ///
    /// The error is [`Error::Invalid`](crate::Error::Invalid) naming the field
    /// (`field `num_attention_heads`: must be at least 1`); loaders use
    /// [`ModelConfig::validate_in`] to name the file as well. Checks that need the tensors or
    /// the tokenizer (layer count, vocabulary size) are the checkpoint's
    /// ([`Checkpoint::validate`](crate::checkpoint::Checkpoint::validate)).
    pub fn validate(&self) -> crate::Result<()> {
        self.problem()
            .map_or(Ok(()), |m| Err(crate::Error::invalid(m)))
    }

    /// [`ModelConfig::validate`], the error naming `source` (the config file or GGUF file).
    pub fn validate_in(&self, source: &std::path::Path) -> crate::Result<()> {
        self.problem()
            .map_or(Ok(()), |m| Err(crate::Error::checkpoint(source, m)))
    }

    /// The first thing wrong with the config, as `field `name`: why`.
    fn problem(&self) -> Option<String> {
        use limits::*;
        let sizes = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_HIDDEN),
            (
                "intermediate_size",
                self.intermediate_size,
                MAX_INTERMEDIATE,
            ),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("num_key_value_heads", self.num_key_value_heads, MAX_HEADS),
            ("head_dim", self.head_dim.unwrap_or(1), MAX_HEAD_DIM),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
        ];
        for (field, value, max) in sizes {
            if value == 0 {
                return Some(format!("field `{field}`: must be at least 1"));
            }
            if value > max {
                return Some(format!("field `{field}`: {value} is more than {max}"));
            }
        }
        let (h, kv) = (self.num_attention_heads, self.num_key_value_heads);
        if !h.is_multiple_of(kv) {
            return Some(format!(
                "field `num_key_value_heads`: num_attention_heads ({h}) is not a multiple of num_key_value_heads ({kv})"
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(h) {
            return Some(format!(
                "field `num_attention_heads`: hidden_size ({}) does not split into {h} heads (and no `head_dim` is given)",
                self.hidden_size
            ));
        }
        let head_dim = self.head_dim();
        if head_dim == 0 || head_dim > MAX_HEAD_DIM {
            return Some(format!(
                "field `head_dim`: {head_dim} is not between 1 and {MAX_HEAD_DIM}"
            ));
        }
        if !head_dim.is_multiple_of(2) {
            let field = if self.head_dim.is_some() {
                "head_dim"
            } else {
                "num_attention_heads"
            };
            return Some(format!(
                "field `{field}`: the head width {head_dim} is odd (rotary embeddings need an even one)"
            ));
        }
        for (field, value) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Some(format!(
                    "field `{field}`: {value} is not a finite positive number"
                ));
            }
        }
        // Every size is bounded above, so each product below fits in u64; checked anyway.
        let mut total: usize = 0;
        for t in layout::tensors(self) {
            let len = t
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d));
            match len.and_then(|len| total.checked_add(len)) {
                Some(sum) if sum <= MAX_PARAMETERS => total = sum,
                _ => {
                    return Some(format!(
                        "the model's tensors (`{}` {:?} and the ones before it) hold more than {MAX_PARAMETERS} parameters",
                        t.hf_name, t.shape
                    ));
                }
            }
        }
        None
    }
}
