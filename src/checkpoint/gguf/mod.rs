//! GGUF files as Hugging Face-layout [`Checkpoint`]s: the model config and tokenizer from the
//! metadata, tensors renamed through the weight-layout table and dequantised to f32. The
//! container itself is read by [`file`].

mod file;

pub use file::{GgufFile, MetaValue, TensorInfo};

use std::collections::BTreeMap;
use std::path::Path;

use super::{Checkpoint, HostTensor, StoredTensor};
use crate::config::{Architecture, ModelConfig, RopeScaling, RopeType};
use crate::model::layout::{self, Slot};
use crate::tokenizer::{ByteLevelBpe, TextCodec};
use crate::{Error, Result};

/// Load a GGUF file as a Hugging Face-layout checkpoint.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let file = GgufFile::read(path)?;
    let mut config = config_from_metadata(&file)?;
    config.validate_in(path)?;
    let mut tensors: BTreeMap<String, StoredTensor> = BTreeMap::new();
    for info in &file.tensors {
        if info.name == ROPE_FREQS {
            let factors = file.dequantize(info).data;
            config.rope_scaling = Some(llama3_rope_scaling(&factors, config.rope_theta).ok_or_else(|| {
                Error::checkpoint(path, format!("`{ROPE_FREQS}` is not Llama 3 RoPE scaling (low 1, high 4, original context 8192)"))
            })?);
            continue;
        }
        let name = hf_name(&info.name).ok_or_else(|| {
            Error::checkpoint(
                path,
                format!(
                    "tensor `{}` has no Hugging Face counterpart we know of",
                    info.name
                ),
            )
        })?;
        let mut tensor = file.dequantize(info);
        if let Some(n_head) = layout::gguf_rope_heads(&config, &name) {
            tensor = unpermute_rope_rows(&tensor, n_head).ok_or_else(|| {
                Error::checkpoint(
                    path,
                    format!(
                        "tensor `{}` {:?} does not split into {n_head} heads",
                        info.name, tensor.shape
                    ),
                )
            })?;
        }
        if tensors.insert(name.clone(), tensor.into()).is_some() {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{}` is a second `{name}`", info.name),
            ));
        }
    }
    let (embedding_name, gguf_embedding_name) = layout::names(Slot::Embedding, 0);
    let embedding = tensors.get(&embedding_name).map(|t| &t.shape);
    let expected = [config.vocab_size, config.hidden_size];
    if embedding.map(Vec::as_slice) != Some(&expected[..]) {
        let found = embedding.map_or("is missing".to_owned(), |shape| {
            format!("has shape {shape:?}")
        });
        return Err(Error::checkpoint(
            path,
            format!(
                "{gguf_embedding_name} {found}; the tokenizer's {} tokens and embedding_length {} imply [{}, {}]",
                config.vocab_size, config.hidden_size, config.vocab_size, config.hidden_size
            ),
        ));
    }
    let codec = codec_from_metadata(&file)?;
    Ok(Checkpoint {
        config,
        tensors,
        codec,
        source: path.to_path_buf(),
    })
}

/// llama.cpp's per-frequency RoPE divisors (Llama 3.1/3.2 frequency scaling).
const ROPE_FREQS: &str = "rope_freqs.weight";

/// Llama 3 RoPE scaling recovered from llama.cpp's `rope_freqs` divisors.
///
/// llama.cpp's converter stores, for each rotary frequency `f_i = θ^(−2i/dim)` with wavelength
/// `λ_i = 2π/f_i`, the divisor `1` when `λ_i < L/high`, `factor` when `λ_i > L/low`, and
/// otherwise `1 / ((1 − s)/factor + s)` with `s = (L/λ_i − low)/(high − low)`. Every Llama 3.x
/// release uses `low = 1`, `high = 4`, `L = 8192`, so `factor` is the largest divisor; the
/// scaling is returned only if recomputing all divisors from these values reproduces
/// `factors` (to 1e-4 relative), so anything else is refused rather than guessed.
pub fn llama3_rope_scaling(factors: &[f32], rope_theta: f64) -> Option<RopeScaling> {
    let (low, high, context) = (1.0, 4.0, 8192.0);
    let factor = factors.iter().copied().fold(f32::NAN, f32::max) as f64;
    if factors.is_empty() || factor.is_nan() || factor < 1.0 {
        return None;
    }
    let dim = 2 * factors.len();
    let consistent = factors.iter().enumerate().all(|(i, &stored)| {
        let freq = rope_theta.powf(-((2 * i) as f64) / dim as f64);
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let expected = if wavelen < context / high {
            1.0
        } else if wavelen > context / low {
            factor
        } else {
            let s = (context / wavelen - low) / (high - low);
            1.0 / ((1.0 - s) / factor + s)
        };
        (stored as f64 - expected).abs() <= 1e-4 * expected
    });
    consistent.then_some(RopeScaling {
        rope_type: RopeType::Llama3,
        factor,
        low_freq_factor: low,
        high_freq_factor: high,
        original_max_position_embeddings: Some(context as usize),
    })
}

/// The model configuration from `general.architecture` and `{arch}.*` metadata.
pub fn config_from_metadata(file: &GgufFile) -> Result<ModelConfig> {
    let arch_name = file.get_str("general.architecture")?;
    let model_type = Architecture::parse(arch_name).ok_or_else(|| {
        Error::checkpoint(
            &file.path,
            format!(
                "architecture `{arch_name}` is not supported (supported: {})",
                Architecture::SUPPORTED
            ),
        )
    })?;
    let key = |k: &str| format!("{arch_name}.{k}");
    let has_tensor = |name: &str| file.tensors.iter().any(|t| t.name == name);
    let token_id = |k: &str| -> Result<Option<u32>> {
        file.optional(k, GgufFile::get_usize)?
            .map(|id| {
                u32::try_from(id).map_err(|_| {
                    Error::checkpoint(
                        &file.path,
                        format!("metadata `{k}` = {id} is not a token id"),
                    )
                })
            })
            .transpose()
    };
    Ok(ModelConfig {
        model_type,
        vocab_size: file
            .get("tokenizer.ggml.tokens")?
            .as_array()
            .map(<[_]>::len)
            .ok_or_else(|| file.wrong_type("tokenizer.ggml.tokens", "an array"))?,
        hidden_size: file.get_usize(&key("embedding_length"))?,
        intermediate_size: file.get_usize(&key("feed_forward_length"))?,
        num_hidden_layers: file.get_usize(&key("block_count"))?,
        num_attention_heads: file.get_usize(&key("attention.head_count"))?,
        num_key_value_heads: file
            .optional(&key("attention.head_count_kv"), GgufFile::get_usize)?
            .map_or_else(|| file.get_usize(&key("attention.head_count")), Ok)?,
        head_dim: file.optional(&key("attention.key_length"), GgufFile::get_usize)?,
        rms_norm_eps: file.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
        rope_theta: file
            .optional(&key("rope.freq_base"), GgufFile::get_f64)?
            .unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: file.get_usize(&key("context_length"))?,
        tie_word_embeddings: !has_tensor(&layout::names(Slot::LmHead, 0).1),
        attention_bias: has_tensor(&layout::names(Slot::QBias, 0).1),
        bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
        eos_token_id: token_id("tokenizer.ggml.eos_token_id")?.map(serde_json::Value::from),
    })
}

/// The tokenizer and chat template from `tokenizer.*` metadata (byte-level BPE only).
pub fn codec_from_metadata(file: &GgufFile) -> Result<TextCodec> {
    let model = file.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::checkpoint(
            &file.path,
            format!(
                "tokenizer.ggml.model = {model:?} is not supported (only \"gpt2\", byte-level BPE); use the Hugging Face directory"
            ),
        ));
    }
    let tokens = file.get_strings("tokenizer.ggml.tokens")?;
    let token_types = file
        .optional("tokenizer.ggml.token_type", GgufFile::get_ints)?
        .unwrap_or_default();
    let merges = file.get_strings("tokenizer.ggml.merges")?;
    let id = |k: &str| {
        file.optional(k, GgufFile::get_usize)
            .map(|id| id.map(|id| id as u32))
    };
    TextCodec::from_byte_level_bpe(
        &file.path,
        ByteLevelBpe {
            tokens: &tokens,
            token_types: &token_types,
            merges: &merges,
            pre: file.optional("tokenizer.ggml.pre", GgufFile::get_str)?,
            bos_id: id("tokenizer.ggml.bos_token_id")?,
            eos_id: id("tokenizer.ggml.eos_token_id")?,
            pad_id: id("tokenizer.ggml.padding_token_id")?,
            chat_template: file.optional("tokenizer.chat_template", GgufFile::get_str)?,
        },
    )
}

/// The Hugging Face name of GGUF tensor `name`, if it is one of the Llama-family tensors of the
/// weight-layout table ([`layout::gguf_to_hf`]).
pub fn hf_name(name: &str) -> Option<String> {
    layout::gguf_to_hf(name)
}

/// Undo llama.cpp's RoPE row permutation of a `[n_head·head_dim, in]` projection.
///
/// HF rotates each head's halves (`x[j]` with `x[j + head_dim/2]`); llama.cpp rotates adjacent
/// pairs (`x[2j]` with `x[2j+1]`) and so stores, within each head, row `i·half + j` (`i ∈ {0,1}`,
/// `j < half = head_dim/2`) at row `2j + i`. This returns the HF order:
/// `hf[h·head_dim + i·half + j] = gguf[h·head_dim + 2j + i]`. `None` if the rows do not split
/// into `n_head` heads of even width.
pub fn unpermute_rope_rows(t: &HostTensor, n_head: usize) -> Option<HostTensor> {
    let rows = *t.shape.first()?;
    let cols = t.data.len().checked_div(rows).unwrap_or(0);
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return None;
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut data = Vec::with_capacity(t.data.len());
    for hf_row in 0..rows {
        let (h, r) = (hf_row / head_dim, hf_row % head_dim);
        let (i, j) = (r / half, r % half);
        let src = h * head_dim + 2 * j + i;
        data.extend_from_slice(&t.data[src * cols..(src + 1) * cols]);
    }
    Some(HostTensor {
        shape: t.shape.clone(),
        data,
    })
}
