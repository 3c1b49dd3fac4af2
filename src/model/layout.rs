//! The weight-layout table: every tensor of a Llama-family checkpoint, written down once.
//!
//! Each row names one kind of tensor: its Hugging Face name, its llama.cpp (GGUF) name, its
//! shape as the checkpoint stores it (row-major, projections `[out, in]`), its [`Role`], and
//! when it is present. [`tensors`] expands the table for a config (one set of layer rows per
//! decoder layer, optional rows by the config's [`Variant`]); everything that names weights
//! reads it:
//!
//! * loading ([`Llama::from_checkpoint`](super::Llama::from_checkpoint), [`Llama::random`]
//!   (super::Llama::random)) fetches exactly these tensors, checked against these shapes;
//! * export ([`Llama::hf_tensors`](super::Llama::hf_tensors)) writes exactly these;
//! * the GGUF reader renames tensors with [`gguf_to_hf`] and un-permutes q/k rows by
//!   [`gguf_rope_heads`].
//!
//! ```text
//! HF name                                      GGUF name                 stored shape
//! model.embed_tokens.weight                    token_embd.weight         [vocab, d]
//! model.norm.weight                            output_norm.weight        [d]
//! lm_head.weight               (untied only)   output.weight             [vocab, d]
//! model.layers.{i}.input_layernorm.weight      blk.{i}.attn_norm.weight  [d]
//! model.layers.{i}.self_attn.q_proj.weight     blk.{i}.attn_q.weight     [h·hd, d]
//!   … k_proj, v_proj [kv·hd, d], o_proj [d, h·hd], biases of q/k/v, q_norm/k_norm [hd]
//! model.layers.{i}.mlp.gate_proj.weight        blk.{i}.ffn_gate.weight   [f, d]  (up, down)
//! ```

use super::config::ModelConfig;
use super::variant::Variant;

/// A Bradley–Terry reward model's scalar value head, stored `[1, d]` beside the table's
/// tensors (Hugging Face's `LlamaForSequenceClassification` name): written by training's
/// export, read by the judge.
pub const VALUE_HEAD: &str = "score.weight";

/// How a stored tensor becomes a model parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A 1-D tensor (norm gain, bias), used as stored.
    Vector,
    /// A 2-D tensor used as stored (embedding, output projection: `[vocab, d]`).
    Matrix,
    /// A linear layer's weight, stored `[out, in]` and transposed to `[in, out]` on load (and
    /// back on export) so that every projection is a plain `x · W`.
    Projection,
}

/// Which parameter of the decoder a tensor fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// Token embeddings `E`.
    Embedding,
    /// The final RMSNorm's gain.
    FinalNorm,
    /// The untied output projection.
    LmHead,
    /// A layer's RMSNorm before attention.
    AttnNorm,
    QWeight,
    QBias,
    KWeight,
    KBias,
    VWeight,
    VBias,
    OWeight,
    /// Qwen3's per-head RMSNorm gains on queries and keys.
    QNorm,
    KNorm,
    /// A layer's RMSNorm before the MLP.
    MlpNorm,
    GateWeight,
    UpWeight,
    DownWeight,
}

/// A size the config implies.
#[derive(Debug, Clone, Copy)]
enum Dim {
    Vocab,
    /// Model width d.
    Hidden,
    /// SwiGLU inner width f.
    Ffn,
    /// Query width h·hd.
    Q,
    /// Key/value width kv·hd.
    Kv,
    /// Per-head width hd.
    Head,
}

/// When a row is present.
#[derive(Debug, Clone, Copy)]
enum When {
    Always,
    /// Only when the output projection is not tied to the embeddings.
    Untied,
    /// Only with [`Variant::qkv_bias`].
    QkvBias,
    /// Only with [`Variant::qk_norm`].
    QkNorm,
}

/// Whose heads llama.cpp's converter interleaved the rows of (q/k weights only).
#[derive(Debug, Clone, Copy)]
enum Heads {
    Query,
    KeyValue,
}

/// One row of the table. Layer rows' names follow `model.layers.{i}.` / `blk.{i}.`.
struct Row {
    slot: Slot,
    hf: &'static str,
    gguf: &'static str,
    role: Role,
    shape: &'static [Dim],
    when: When,
    rope_rows: Option<Heads>,
}

const fn row(
    slot: Slot,
    hf: &'static str,
    gguf: &'static str,
    role: Role,
    shape: &'static [Dim],
) -> Row {
    Row {
        slot,
        hf,
        gguf,
        role,
        shape,
        when: When::Always,
        rope_rows: None,
    }
}

impl Row {
    const fn when(self, when: When) -> Row {
        Row { when, ..self }
    }

    const fn rope_rows(self, heads: Heads) -> Row {
        Row {
            rope_rows: Some(heads),
            ..self
        }
    }
}

use Dim::{Ffn, Head, Hidden, Kv, Q, Vocab};
use Role::{Matrix, Projection, Vector};

/// Tensors outside the decoder layers.
#[rustfmt::skip]
const GLOBAL: [Row; 3] = [
    row(Slot::Embedding, "model.embed_tokens.weight", "token_embd.weight", Matrix, &[Vocab, Hidden]),
    row(Slot::FinalNorm, "model.norm.weight", "output_norm.weight", Vector, &[Hidden]),
    row(Slot::LmHead, "lm_head.weight", "output.weight", Matrix, &[Vocab, Hidden]).when(When::Untied),
];

/// Tensors of each decoder layer, named after `model.layers.{i}.` and `blk.{i}.`.
#[rustfmt::skip]
const LAYER: [Row; 14] = [
    row(Slot::AttnNorm, "input_layernorm.weight", "attn_norm.weight", Vector, &[Hidden]),
    row(Slot::QWeight, "self_attn.q_proj.weight", "attn_q.weight", Projection, &[Q, Hidden]).rope_rows(Heads::Query),
    row(Slot::QBias, "self_attn.q_proj.bias", "attn_q.bias", Vector, &[Q]).when(When::QkvBias),
    row(Slot::KWeight, "self_attn.k_proj.weight", "attn_k.weight", Projection, &[Kv, Hidden]).rope_rows(Heads::KeyValue),
    row(Slot::KBias, "self_attn.k_proj.bias", "attn_k.bias", Vector, &[Kv]).when(When::QkvBias),
    row(Slot::VWeight, "self_attn.v_proj.weight", "attn_v.weight", Projection, &[Kv, Hidden]),
    row(Slot::VBias, "self_attn.v_proj.bias", "attn_v.bias", Vector, &[Kv]).when(When::QkvBias),
    row(Slot::OWeight, "self_attn.o_proj.weight", "attn_output.weight", Projection, &[Hidden, Q]),
    row(Slot::QNorm, "self_attn.q_norm.weight", "attn_q_norm.weight", Vector, &[Head]).when(When::QkNorm),
    row(Slot::KNorm, "self_attn.k_norm.weight", "attn_k_norm.weight", Vector, &[Head]).when(When::QkNorm),
    row(Slot::MlpNorm, "post_attention_layernorm.weight", "ffn_norm.weight", Vector, &[Hidden]),
    row(Slot::GateWeight, "mlp.gate_proj.weight", "ffn_gate.weight", Projection, &[Ffn, Hidden]),
    row(Slot::UpWeight, "mlp.up_proj.weight", "ffn_up.weight", Projection, &[Ffn, Hidden]),
    row(Slot::DownWeight, "mlp.down_proj.weight", "ffn_down.weight", Projection, &[Hidden, Ffn]),
];

const HF_LAYERS: &str = "model.layers.";
const GGUF_LAYERS: &str = "blk.";

/// One tensor of a configured model.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorLayout {
    /// The parameter it fills, and its decoder layer (`None` outside the layers).
    pub slot: Slot,
    pub layer: Option<usize>,
    /// `model.layers.3.self_attn.q_proj.weight`.
    pub hf_name: String,
    /// `blk.3.attn_q.weight`.
    pub gguf_name: String,
    /// Row-major shape as stored in a checkpoint (`[out, in]` for projections).
    pub shape: Vec<usize>,
    pub role: Role,
    /// Heads to un-permute a GGUF tensor's rows by ([`gguf_rope_heads`]).
    pub gguf_rope_heads: Option<usize>,
}

impl TensorLayout {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every tensor of a model with `config`: global tensors first, then each layer's, in table
/// order.
pub fn tensors(config: &ModelConfig) -> Vec<TensorLayout> {
    let variant = config.variant();
    let present = |row: &Row| match row.when {
        When::Always => true,
        When::Untied => !config.tie_word_embeddings,
        When::QkvBias => variant.qkv_bias,
        When::QkNorm => variant.qk_norm,
    };
    let global = GLOBAL.iter().filter(|r| present(r)).map(|r| (r, None));
    let layers = (0..config.num_hidden_layers).flat_map(|i| {
        LAYER
            .iter()
            .filter(|r| present(r))
            .map(move |r| (r, Some(i)))
    });
    global
        .chain(layers)
        .map(|(row, layer)| expand(config, &variant, row, layer))
        .collect()
}

/// A row of the table for `config`, at `layer` for layer rows.
fn expand(
    config: &ModelConfig,
    variant: &Variant,
    row: &Row,
    layer: Option<usize>,
) -> TensorLayout {
    let (hf_name, gguf_name) = match layer {
        None => (row.hf.to_owned(), row.gguf.to_owned()),
        Some(i) => (
            format!("{HF_LAYERS}{i}.{}", row.hf),
            format!("{GGUF_LAYERS}{i}.{}", row.gguf),
        ),
    };
    let rope_heads = match row.rope_rows.filter(|_| variant.gguf_rope_permuted) {
        None => None,
        Some(Heads::Query) => Some(config.num_attention_heads),
        Some(Heads::KeyValue) => Some(config.num_key_value_heads),
    };
    TensorLayout {
        slot: row.slot,
        layer,
        hf_name,
        gguf_name,
        shape: row.shape.iter().map(|&dim| size(config, dim)).collect(),
        role: row.role,
        gguf_rope_heads: rope_heads,
    }
}

fn size(config: &ModelConfig, dim: Dim) -> usize {
    match dim {
        Vocab => config.vocab_size,
        Hidden => config.hidden_size,
        Ffn => config.intermediate_size,
        Q => config.num_attention_heads * config.head_dim(),
        Kv => config.num_key_value_heads * config.head_dim(),
        Head => config.head_dim(),
    }
}

/// The table row of Hugging Face tensor `name`, and its layer.
fn find_hf(name: &str) -> Option<(&'static Row, Option<usize>)> {
    if let Some(row) = GLOBAL.iter().find(|r| r.hf == name) {
        return Some((row, None));
    }
    let (layer, rest) = split_hf_layer(name)?;
    let row = LAYER.iter().find(|r| r.hf == rest)?;
    Some((row, Some(layer)))
}

/// `model.layers.{i}.rest` → `(i, rest)`.
fn split_hf_layer(name: &str) -> Option<(usize, &str)> {
    let (layer, rest) = name.strip_prefix(HF_LAYERS)?.split_once('.')?;
    Some((layer.parse().ok()?, rest))
}

/// The decoder layer a Hugging Face tensor name belongs to (`model.layers.{i}.…` → `i`),
/// whether or not the table knows the rest of the name.
pub fn hf_layer(name: &str) -> Option<usize> {
    split_hf_layer(name).map(|(layer, _)| layer)
}

/// Rename `name` between naming schemes: its stem (the name without `.weight`/`.bias`) is
/// looked up among the table's stems under `from`, and written as the matching stem under `to`
/// with the same suffix and layer. Stems, not whole names, so a bias the table does not list
/// (say `blk.0.attn_output.bias`) still maps as its weight does.
fn rename(
    name: &str,
    (from_prefix, from): (&str, fn(&Row) -> &'static str),
    (to_prefix, to): (&str, fn(&Row) -> &'static str),
) -> Option<String> {
    let stem = |s: &'static str| s.rsplit_once('.').map_or(s, |(stem, _)| stem);
    let (name_stem, suffix) = name
        .rsplit_once('.')
        .filter(|(_, s)| matches!(*s, "weight" | "bias"))?;
    if let Some(row) = GLOBAL.iter().find(|r| stem(from(r)) == name_stem) {
        return Some(format!("{}.{suffix}", stem(to(row))));
    }
    let (layer, part) = name_stem.strip_prefix(from_prefix)?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let row = LAYER.iter().find(|r| stem(from(r)) == part)?;
    Some(format!("{to_prefix}{layer}.{}.{suffix}", stem(to(row))))
}

fn hf(row: &Row) -> &'static str {
    row.hf
}

fn gguf(row: &Row) -> &'static str {
    row.gguf
}

/// The Hugging Face name of GGUF tensor `name` (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`), if it is one of the Llama-family tensors.
pub fn gguf_to_hf(name: &str) -> Option<String> {
    rename(name, (GGUF_LAYERS, gguf), (HF_LAYERS, hf))
}

/// The GGUF name of Hugging Face tensor `name`, the inverse of [`gguf_to_hf`].
pub fn hf_to_gguf(name: &str) -> Option<String> {
    rename(name, (HF_LAYERS, hf), (GGUF_LAYERS, gguf))
}

/// The table row of Hugging Face tensor `name` under `config`: its slot, layer, shape and role,
/// whether or not the config has that tensor.
pub fn lookup_hf(config: &ModelConfig, name: &str) -> Option<TensorLayout> {
    let (row, layer) = find_hf(name)?;
    Some(expand(config, &config.variant(), row, layer))
}

/// Heads to un-permute by, when the Hugging Face tensor `hf_name` is a q or k projection weight
/// that llama.cpp's converter stored in interleaved-RoPE row order ([`Variant::gguf_rope_permuted`]
/// architectures only): q by the attention heads, k by the key/value heads.
pub fn gguf_rope_heads(config: &ModelConfig, hf_name: &str) -> Option<usize> {
    lookup_hf(config, hf_name)?.gguf_rope_heads
}

/// The Hugging Face and GGUF names of `slot` (of decoder layer `layer` for per-layer slots),
/// for code that asks about one particular tensor (is there an `output.weight`? a q bias?).
pub fn names(slot: Slot, layer: usize) -> (String, String) {
    if let Some(row) = GLOBAL.iter().find(|r| r.slot == slot) {
        return (row.hf.to_owned(), row.gguf.to_owned());
    }
    let row = LAYER
        .iter()
        .find(|r| r.slot == slot)
        .expect("every slot has a row in the table");
    (
        format!("{HF_LAYERS}{layer}.{}", row.hf),
        format!("{GGUF_LAYERS}{layer}.{}", row.gguf),
    )
}
