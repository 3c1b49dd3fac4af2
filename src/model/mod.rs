//! The Llama-family decoder, written once against burn's device-agnostic tensor API.
//!
//! For token ids `t_1..t_T` the model computes
//!
//! ```text
//! x_0     = s · E[t]                               embedding rows, [B, T, d] (s = 1 so far)
//! h_l     = x_l + Attn_l(RMSNorm(x_l))             pre-norm residual attention
//! x_{l+1} = h_l + MLP_l(RMSNorm(h_l))              pre-norm residual SwiGLU
//! hidden  = RMSNorm(x_L)                           [B, T, d]
//! logits  = hidden · Wᵀ                            W = lm_head, or E when tied
//! ```
//!
//! with causal grouped-query attention and rotary position embeddings. Batches are
//! right-padded. With a causal mask, the output at a real position `t < len` attends only to
//! keys `≤ t`, all real tokens, so padding never changes a real position's output and no
//! separate key-padding mask is needed; outputs at padded positions are never read.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Llama`]: the decoder stack, [`KvCache`] (shared prefixes), hidden states, logits |
//! | [`layers`] | [`RmsNorm`], [`Projection`], [`Attention`], [`Mlp`], [`DecoderLayer`] |
//! | [`rope`] | rotary position embeddings, Llama 3 frequency scaling |
//! | [`lora`] | [`Lora`] adapters on projections |
//! | [`config`] | [`ModelConfig`](config::ModelConfig), [`Architecture`](config::Architecture) (mirrors `config.json`) |
//! | [`variant`] | [`Variant`]: how each architecture differs from Llama |
//! | [`layout`] | the weight-layout table: every tensor's HF and GGUF name, shape and role |
//! | `weights.rs` | [`Llama::from_checkpoint`], [`Llama::random`], [`Llama::hf_tensors`] through the table |

pub mod config;
pub mod layers;
pub mod layout;
pub mod lora;
pub mod rope;
pub mod variant;
pub(crate) mod weights;

pub use layers::{Attention, DecoderLayer, Mlp, Projection, RmsNorm};
pub use lora::Lora;
pub use rope::inverse_frequencies;
pub use variant::{Activation, Variant};

use burn::module::{Module, Param};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use config::ModelConfig;
use rope::Rope;

/// A Llama-family causal language model.
#[derive(Module, Debug)]
pub struct Llama {
    /// Token embeddings `E`, `[vocab, d]`.
    pub embed_tokens: Param<Tensor<2>>,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// Output projection `[vocab, d]`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<Param<Tensor<2>>>,
    #[module(skip)]
    pub config: ModelConfig,
}

impl Llama {
    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed_tokens.val().device()
    }

    /// Final-normed hidden states `[B, T, d]` for right-padded token ids `[B, T]`.
    pub fn hidden_states(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.decode(ids, None).0
    }

    /// Final-normed hidden states at each sequence's last token, `[B, d]`, running the sequences
    /// as one right-padded batch. With a `prefix`, every sequence starts with its ids and only
    /// the tokens after it are run, attending to its keys and values.
    pub fn last_hidden_states(
        &self,
        sequences: &[&[u32]],
        prefix: Option<&KvCache>,
        pad_id: u32,
    ) -> Tensor<2> {
        let device = self.device();
        let skip = prefix.map_or(0, KvCache::len);
        let rest: Vec<&[u32]> = sequences.iter().map(|s| &s[skip..]).collect();
        let (ids, width) = right_pad(&rest, pad_id, &device);
        let last: Vec<i64> = rest
            .iter()
            .enumerate()
            .map(|(row, s)| (row * width + s.len() - 1) as i64)
            .collect();
        let last = Tensor::<1, Int>::from_data(TensorData::new(last, [rest.len()]), &device);
        let hidden = self.decode(ids, prefix).0;
        hidden
            .reshape([rest.len() * width, self.config.hidden_size])
            .select(0, last)
    }

    /// Run `ids` (one sequence, not empty) after `past` (if any) and keep every layer's keys and
    /// values of the whole: the cache of `past ++ ids`.
    pub fn prefill(&self, ids: &[u32], past: Option<&KvCache>) -> KvCache {
        assert!(!ids.is_empty(), "prefill needs at least one token");
        let device = self.device();
        let mut all = past.map(|p| p.ids.clone()).unwrap_or_default();
        all.extend_from_slice(ids);
        let tensor = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, ids.len()]),
            &device,
        );
        let (_, fresh) = self.decode(tensor, past);
        let layers = match past {
            None => fresh,
            Some(past) => past
                .layers
                .iter()
                .zip(fresh)
                .map(|(old, new)| LayerKv {
                    keys: Tensor::cat(vec![old.keys.clone(), new.keys], 2),
                    values: Tensor::cat(vec![old.values.clone(), new.values], 2),
                })
                .collect(),
        };
        KvCache { ids: all, layers }
    }

    /// The decoder stack on `ids` `[B, T]` at positions `P..P+T` after an optional prefix of
    /// length `P`: final-normed hidden states and each layer's new keys and values.
    fn decode(&self, ids: Tensor<2, Int>, past: Option<&KvCache>) -> (Tensor<3>, Vec<LayerKv>) {
        let [_, t] = ids.dims();
        let device = ids.device();
        let config = &self.config;
        let group = config.num_attention_heads / config.num_key_value_heads;
        let start = past.map_or(0, KvCache::len);
        let rope = Rope::new(config, start, t, &device);
        let mask = causal_mask(start, t, group, &device);
        let mut x = burn::tensor::module::embedding(self.embed_tokens.val(), ids);
        let scale = config.variant().embedding_scale;
        if scale != 1.0 {
            x = x * scale;
        }
        let mut fresh = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let (out, kv) = layer.forward(x, &rope, &mask, past.map(|p| &p.layers[i]));
            x = out;
            fresh.push(kv);
        }
        (self.norm.forward(x), fresh)
    }

    /// The output projection `W`, `[vocab, d]` (the embedding matrix when tied).
    pub fn output_weight(&self) -> Tensor<2> {
        match &self.lm_head {
            Some(w) => w.val(),
            None => self.embed_tokens.val(),
        }
    }

    /// Full-vocabulary logits `hidden · Wᵀ`, `[B, T, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        hidden.matmul(self.output_weight().transpose().unsqueeze())
    }

    /// Logits of a few tokens only: `hidden · W[tokens]ᵀ`, `[N, tokens.len()]` for `hidden` `[N, d]`.
    ///
    /// This is how the judge reads a verdict: 2·d multiply-adds per sequence instead of vocab·d.
    pub fn token_logits(&self, hidden: Tensor<2>, tokens: &[u32]) -> Tensor<2> {
        let device = hidden.device();
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let rows = self.output_weight().select(
            0,
            Tensor::<1, Int>::from_data(TensorData::new(ids, [tokens.len()]), &device),
        );
        hidden.matmul(rows.transpose())
    }
}

/// One layer's keys (after RoPE) and values, `[B, kv_heads, T, head_dim]` each.
#[derive(Debug, Clone)]
pub(crate) struct LayerKv {
    pub(crate) keys: Tensor<4>,
    pub(crate) values: Tensor<4>,
}

/// The keys and values every layer computed for a token prefix, so that sequences starting with
/// that prefix need only run their remaining tokens: a judge prompt's instruction is the same for
/// every pair, and its question the same for both orders of a pair.
///
/// Running `prefix ++ rest` in one pass and running `rest` after [`Llama::prefill`]`(prefix)` give
/// the same hidden states for `rest` (up to float summation order): each layer's attention sees
/// the same keys and values, and RoPE positions continue from the prefix length.
#[derive(Debug, Clone)]
pub struct KvCache {
    ids: Vec<u32>,
    layers: Vec<LayerKv>,
}

impl KvCache {
    /// The prefix's token ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The prefix length in tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the prefix is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Right-pad `sequences` with `pad_id` into `[B, T]` ids; returns them and the width `T`.
pub fn right_pad(sequences: &[&[u32]], pad_id: u32, device: &Device) -> (Tensor<2, Int>, usize) {
    let width = sequences.iter().map(|s| s.len()).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(sequences.len() * width);
    for s in sequences {
        ids.extend(s.iter().map(|&t| t as i64));
        ids.extend(std::iter::repeat_n(pad_id as i64, width - s.len()));
    }
    let ids = Tensor::from_data(TensorData::new(ids, [sequences.len(), width]), device);
    (ids, width)
}

/// Length of the longest common prefix of two token sequences.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// `[G·T, P+T]` mask, true where query position `P + (row mod T)` may not see key position
/// (column): every prefix key is visible, later keys are not; the causal mask repeated for the
/// `G` query heads stacked per key/value head.
fn causal_mask(prefix: usize, t: usize, group: usize, device: &Device) -> Tensor<2, Bool> {
    let columns = prefix + t;
    let mut blocked = Vec::with_capacity(group * t * columns);
    for _ in 0..group {
        for i in 0..t {
            blocked.extend((0..columns).map(|j| j > prefix + i));
        }
    }
    Tensor::from_data(TensorData::new(blocked, [group * t, columns]), device)
}
