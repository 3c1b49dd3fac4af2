//! What distinguishes one Llama-family architecture from another, in one value.
//!
//! Every architecture we run is the Llama decoder (see [`super`]) with a few switches flipped.
//! [`Variant::llama`] is the baseline; [`Variant::of`] lists each other architecture as its
//! differences from it; [`Variant::of_config`] adds what a `config.json` can still change
//! (`attention_bias`, `rope_scaling`). The decoder, the weight-layout table
//! ([`super::layout`]), the GGUF reader and the Hugging Face writer read these switches
//! instead of testing `model_type`.
//!
//! ```text
//!                 q/k/v bias  q/k norm  GGUF q/k rows RoPE-permuted
//! llama, mistral      -          -            yes
//! qwen2              yes         -             -
//! qwen3               -         yes            -
//! ```

use burn::tensor::Tensor;
use burn::tensor::activation::silu;

use super::config::{Architecture, ModelConfig, RopeScaling};

/// The feed-forward gate's non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu(x) = x · σ(x)` (SwiGLU), every architecture we run.
    Silu,
}

impl Activation {
    /// Apply the activation element-wise.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Silu => silu(x),
        }
    }
}

/// How a decoder differs from plain Llama.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// `model_type` in config.json, `general.architecture` in GGUF.
    pub model_type: &'static str,
    /// The transformers class that loads it (`architectures` in config.json).
    pub hf_class: &'static str,
    /// Biases on the q, k and v projections.
    pub qkv_bias: bool,
    /// A per-head RMSNorm on queries and keys before RoPE.
    pub qk_norm: bool,
    /// RMSNorm scales by `offset + g` (Gemma stores `g − 1`; 0 for every current architecture).
    pub norm_weight_offset: f64,
    /// The MLP gate's activation.
    pub activation: Activation,
    /// Embedding rows are multiplied by this before the first layer (1 for every current one).
    pub embedding_scale: f64,
    /// RoPE frequency scaling (from config.json, or GGUF `rope_freqs`).
    pub rope_scaling: Option<RopeScaling>,
    /// llama.cpp's converter stored the q and k projection rows in interleaved-RoPE order,
    /// so they are un-permuted on load ([`crate::checkpoint::gguf::unpermute_rope_rows`]).
    pub gguf_rope_permuted: bool,
}

impl Variant {
    /// Plain Llama: no biases, no q/k norm, SiLU, unscaled embeddings, permuted GGUF q/k rows.
    pub fn llama() -> Variant {
        Variant {
            model_type: "llama",
            hf_class: "LlamaForCausalLM",
            qkv_bias: false,
            qk_norm: false,
            norm_weight_offset: 0.0,
            activation: Activation::Silu,
            embedding_scale: 1.0,
            rope_scaling: None,
            gguf_rope_permuted: true,
        }
    }

    /// The architecture's variant, before config.json has its say. A new architecture is one
    /// arm here: its names and what it changes.
    pub fn of(architecture: Architecture) -> Variant {
        let llama = Variant::llama();
        match architecture {
            Architecture::Llama => llama,
            Architecture::Mistral => Variant {
                model_type: "mistral",
                hf_class: "MistralForCausalLM",
                ..llama
            },
            Architecture::Qwen2 => Variant {
                model_type: "qwen2",
                hf_class: "Qwen2ForCausalLM",
                qkv_bias: true,
                gguf_rope_permuted: false,
                ..llama
            },
            Architecture::Qwen3 => Variant {
                model_type: "qwen3",
                hf_class: "Qwen3ForCausalLM",
                qk_norm: true,
                gguf_rope_permuted: false,
                ..llama
            },
        }
    }

    /// The variant of a configured model: [`Variant::of`] its architecture, with q/k/v biases
    /// also when `attention_bias` is set, and the config's RoPE scaling.
    pub fn of_config(config: &ModelConfig) -> Variant {
        let base = Variant::of(config.model_type);
        Variant {
            qkv_bias: base.qkv_bias || config.attention_bias,
            rope_scaling: config.rope_scaling.clone(),
            ..base
        }
    }
}
