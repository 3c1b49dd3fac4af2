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
//! separate key-padding mask is needed; outputs at padded positions are never read. One pass
//! can stack several such batches, each continuing its own cached prefix ([`Llama::pass`]):
//! every step that acts on each position alone (norms, projections, the MLP) runs once over all
//! their rows, and the attention batch by batch.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Llama`]: the decoder stack, [`KvCache`] (shared prefixes), packed passes ([`Llama::pass`]), hidden states, logits |
//! | [`layers`] | [`RmsNorm`], [`Projection`], [`Attention`], [`Mlp`], [`DecoderLayer`] |
//! | [`rope`] | rotary position embeddings, Llama 3 frequency scaling |
//! | [`fused`] | RMSNorm, SiLU·up and RoPE as single passes on the CPU, forward and backward |
//! | [`lora`] | [`Lora`] adapters on projections |
//! | [`trunk`] | [`Trunk`]: record the bottom layers' output once, replay it for fine-tunes |
//! | [`config`] | [`ModelConfig`](config::ModelConfig), [`Architecture`](config::Architecture) (mirrors `config.json`) |
//! | [`variant`] | [`Variant`]: how each architecture differs from Llama |
//! | [`layout`] | the weight-layout table: every tensor's HF and GGUF name, shape and role |
//! | `weights.rs` | [`Llama::from_checkpoint`], [`Llama::random`], [`Llama::hf_tensors`] through the table |

pub mod config;
pub mod fused;
pub mod layers;
pub mod layout;
pub mod lora;
pub mod rope;
pub mod trunk;
pub mod variant;
pub mod vocab;
pub(crate) mod weights;

pub use layers::{Attention, DecoderLayer, Mlp, Projection, RmsNorm};
pub use lora::Lora;
pub use rope::inverse_frequencies;
pub use trunk::{Trunk, TrunkStore};
pub use variant::{Activation, Variant};
pub use vocab::VocabMatrix;
pub use weights::LoadReport;

use crate::Result;
use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use std::cell::OnceCell;

use config::ModelConfig;
use rope::Rope;

/// A Llama-family causal language model.
#[derive(Module, Debug)]
pub struct Llama {
    /// Token embeddings `E`, `[vocab, d]`.
    pub embed_tokens: VocabMatrix,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// Output projection `[vocab, d]`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<VocabMatrix>,
    #[module(skip)]
    pub config: ModelConfig,
}

impl Llama {
    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.embed_tokens.device()
    }

    /// Final-normed hidden states `[B, T, d]` for right-padded token ids `[B, T]`.
    pub fn hidden_states(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [b, t] = ids.dims();
        let segment = Segment::new(&self.config, 0, b, t, None, &ids.device());
        self.decode(ids, &[segment], Rows::All, None)
            .expect("no trunk to replay")
            .0
            .expect("every row kept")
            .reshape([b, t, self.config.hidden_size])
    }

    /// Final-normed hidden states at each sequence's last token, `[B, d]`, running the sequences
    /// as one right-padded batch. With a `prefix`, every sequence starts with its ids and only
    /// the tokens after it are run, attending to its keys and values. With a `trunk`, the
    /// input of its layer is recorded, or replayed instead of running the layers below it
    /// (an error only when a replay does not fit this pass).
    pub fn last_hidden_states(
        &self,
        sequences: &[&[u32]],
        prefix: Option<&KvCache>,
        pad_id: u32,
        trunk: Option<&mut Trunk>,
    ) -> Result<Tensor<2>> {
        let skip = prefix.map_or(0, KvCache::len);
        let group = PassGroup {
            ids: sequences.iter().map(|s| &s[skip..]).collect(),
            past: prefix,
            keep: Keep::LastRows,
        };
        let (last, _) = self.pass(&[group], pad_id, trunk)?;
        Ok(last.expect("the last rows kept"))
    }

    /// Run `ids` (one sequence, not empty) after `past` (if any) and keep every layer's keys and
    /// values of the whole: the cache of `past ++ ids`. With a replayed `trunk` only the layers
    /// from its layer up run, and the cache holds only those.
    pub fn prefill(
        &self,
        ids: &[u32],
        past: Option<&KvCache>,
        trunk: Option<&mut Trunk>,
    ) -> Result<KvCache> {
        let group = PassGroup {
            ids: vec![ids],
            past,
            keep: Keep::Cache,
        };
        let (_, mut caches) = self.pass(&[group], 0, trunk)?;
        Ok(caches.pop().flatten().expect("the cache kept"))
    }

    /// One forward pass over several groups of sequences, each group right-padded on its own
    /// and continuing its own cached prefix: the groups' token rows are stacked, so every
    /// projection of the pass is one product over all of them (taller products run nearer the
    /// device's matmul rate), while each group's attention reads only its own keys and values.
    ///
    /// Returns the final-normed hidden states at the last token of every sequence of the
    /// [`Keep::LastRows`] groups, in order (`[Σ B, d]`; `None` if no group keeps rows), and for
    /// each group the cache of `past ++ ids` where it asked for one ([`Keep::Cache`]).
    pub fn pass(
        &self,
        groups: &[PassGroup],
        pad_id: u32,
        trunk: Option<&mut Trunk>,
    ) -> Result<(Option<Tensor<2>>, Vec<Option<KvCache>>)> {
        assert!(!groups.is_empty(), "a pass runs at least one group");
        let device = self.device();
        let mut ids = Vec::new();
        let mut segments = Vec::with_capacity(groups.len());
        let mut last = Vec::new();
        for group in groups {
            assert!(
                group.ids.iter().all(|s| !s.is_empty()),
                "every sequence of a pass runs at least one token"
            );
            assert!(
                group.keep == Keep::LastRows || group.ids.len() == 1,
                "a cache is kept for a group of one sequence"
            );
            let offset = ids.len();
            let (padded, width) = padded_ids(&group.ids, pad_id);
            ids.extend(padded);
            if group.keep == Keep::LastRows {
                last.extend(
                    (group.ids.iter().enumerate())
                        .map(|(r, s)| (offset + r * width + s.len() - 1) as i64),
                );
            }
            let b = group.ids.len();
            segments.push(Segment::new(
                &self.config,
                offset,
                b,
                width,
                group.past,
                &device,
            ));
        }
        // One group keeps its [B, T] shape; several are stacked as one row of tokens.
        let shape = match segments.as_slice() {
            [one] => [one.b, one.t],
            _ => [1, ids.len()],
        };
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, shape), &device);
        let rows = match last.len() {
            0 => Rows::None,
            n => Rows::Only(Box::new(Tensor::from_data(
                TensorData::new(last, [n]),
                &device,
            ))),
        };
        let (hidden, fresh) = self.decode(ids, &segments, rows, trunk)?;
        let first = self.layers.len() - fresh.len();
        let mut fresh: Vec<_> = fresh.into_iter().map(Vec::into_iter).collect();
        let caches = groups
            .iter()
            .map(|group| {
                // This group's keys and values of every layer run, in layer order.
                let layers: Vec<LayerKv> = (fresh.iter_mut())
                    .map(|layer| layer.next().expect("one per group"))
                    .collect();
                if group.keep != Keep::Cache {
                    return None;
                }
                let mut all = group.past.map(|p| p.ids.clone()).unwrap_or_default();
                all.extend_from_slice(group.ids[0]);
                let layers = (layers.into_iter().enumerate())
                    .map(|(i, new)| match group.past {
                        None => new,
                        Some(past) => {
                            let old = past.layer(first + i);
                            LayerKv {
                                keys: Tensor::cat(vec![old.keys.clone(), new.keys], 2),
                                values: Tensor::cat(vec![old.values.clone(), new.values], 2),
                            }
                        }
                    })
                    .collect();
                Some(KvCache {
                    ids: all,
                    first,
                    layers,
                })
            })
            .collect();
        Ok((hidden, caches))
    }

    /// The decoder stack on `ids`, the rows of the pass's `segments` (`[B, T]` for one
    /// segment, `[1, R]` for several stacked): the final-normed hidden states of the `rows`
    /// asked for, `[rows, d]` (rows numbered as `ids`' elements), and for each layer run (all
    /// of them, or, replaying a `trunk`, those from its layer up) each segment's new keys and
    /// values.
    ///
    /// Every layer's attention needs the keys and values of every position, but the last
    /// layer's feed-forward block and the final norm act on each position alone, so they run
    /// on the rows asked for only (none for a prefill, which keeps only keys and values).
    fn decode(
        &self,
        ids: Tensor<2, Int>,
        segments: &[Segment],
        rows: Rows,
        mut trunk: Option<&mut Trunk>,
    ) -> Result<(Option<Tensor<2>>, Vec<Vec<LayerKv>>)> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let config = &self.config;
        let replayed = match trunk.as_deref_mut() {
            Some(trunk) => trunk
                .next_input([b, t, config.hidden_size])?
                .map(|x| (trunk.layer(), x.to_device(&device))),
            None => None,
        };
        let (first, mut x) = match replayed {
            Some(replayed) => replayed,
            None => {
                // Embedding rows in the weights' type, widened: activations are f32 (see
                // crate::dtype).
                let x = self.embed_tokens.embed(ids);
                let scale = config.variant().embedding_scale;
                (0, if scale != 1.0 { x * scale } else { x })
            }
        };
        let n = self.layers.len();
        let mut fresh = Vec::with_capacity(n - first);
        if n == 0 {
            let hidden = rows.select(x.reshape([b * t, config.hidden_size]));
            return Ok((hidden.map(|h| self.norm.forward(h)), fresh));
        }
        for (i, layer) in self.layers.iter().enumerate().take(n - 1).skip(first) {
            if let Some(trunk) = trunk.as_deref_mut() {
                trunk.keep(i, &x);
            }
            x = layer.take_input(x);
            let (out, kv) = layer.forward(x, segments, i);
            x = out;
            fresh.push(kv);
        }
        if let Some(trunk) = trunk {
            trunk.keep(n - 1, &x);
        }
        let last = &self.layers[n - 1];
        x = last.take_input(x);
        let (h, kv) = last.attend(x, segments, n - 1);
        fresh.push(kv);
        let hidden = rows
            .select(h.reshape([b * t, config.hidden_size]))
            .map(|h| {
                self.norm
                    .forward(last.feed_forward(h.unsqueeze::<3>()).squeeze_dim::<2>(0))
            });
        Ok((hidden, fresh))
    }

    /// The output projection `W`, `[vocab, d]` (the embedding matrix when tied).
    pub fn output_weight(&self) -> &VocabMatrix {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// Full-vocabulary logits `hidden · Wᵀ`, `[.., vocab]` for `hidden` `[.., d]`, multiplied
    /// in `W`'s float type and returned in `hidden`'s ([`VocabMatrix::logits`]).
    pub fn logits<const D: usize>(&self, hidden: Tensor<D>) -> Tensor<D> {
        self.output_weight().logits(hidden)
    }

    /// Logits of a few tokens only: `hidden · W[tokens]ᵀ`, `[N, tokens.len()]` for `hidden` `[N, d]`.
    ///
    /// This is how the judge reads a verdict: 2·d multiply-adds per sequence instead of vocab·d.
    /// Panics if a token is beyond the vocabulary ([`VocabMatrix::rows`]).
    pub fn token_logits(&self, hidden: Tensor<2>, tokens: &[u32]) -> Tensor<2> {
        let rows = self.output_weight().rows(tokens);
        // Widened (exactly) to the hidden states' type: the verdict logits are computed in f32.
        let dtype = hidden.dtype();
        hidden.matmul(rows.cast(dtype).transpose())
    }
}

/// Which positions of a decoder pass need final hidden states.
enum Rows {
    /// Every row `b·T + t`.
    All,
    /// These rows, in this order.
    Only(Box<Tensor<1, Int>>),
    /// None: only the keys and values are kept (a prefill).
    None,
}

impl Rows {
    /// The kept rows of `hidden` `[B·T, d]`.
    fn select(self, hidden: Tensor<2>) -> Option<Tensor<2>> {
        match self {
            Rows::All => Some(hidden),
            Rows::Only(rows) => Some(hidden.select(0, *rows)),
            Rows::None => None,
        }
    }
}

/// Sequences that run together in a [`Llama::pass`]: right-padded among themselves, all
/// continuing the same cached prefix (or starting from the first token).
pub struct PassGroup<'a> {
    /// Each sequence's ids after the prefix's tokens (none empty).
    pub ids: Vec<&'a [u32]>,
    /// The cached prefix every sequence continues.
    pub past: Option<&'a KvCache>,
    /// What the pass keeps of the group.
    pub keep: Keep,
}

/// What a [`Llama::pass`] keeps of a [`PassGroup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Each sequence's final-normed hidden state at its last token.
    LastRows,
    /// The cache of `past ++ ids` (a group of one sequence).
    Cache,
}

/// Where one group sits in a pass's rows, and what its attention needs: `B` sequences of `T`
/// rows each from row `offset`, at positions `P..P+T` after a prefix of `P`.
struct Segment<'a> {
    offset: usize,
    b: usize,
    t: usize,
    past: Option<&'a KvCache>,
    rope: Rope,
    mask: CausalMask,
}

impl<'a> Segment<'a> {
    fn new(
        config: &ModelConfig,
        offset: usize,
        b: usize,
        t: usize,
        past: Option<&'a KvCache>,
        device: &Device,
    ) -> Self {
        let start = past.map_or(0, KvCache::len);
        let group = config.num_attention_heads / config.num_key_value_heads;
        Segment {
            offset,
            b,
            t,
            past,
            rope: Rope::new(config, start, t, device),
            mask: CausalMask::new(start, t, group),
        }
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
///
/// A cache filled while replaying a [`Trunk`] holds the layers from the trunk's layer up only.
#[derive(Debug, Clone)]
pub struct KvCache {
    ids: Vec<u32>,
    /// The first layer held: `layers[i]` is layer `first + i`'s.
    first: usize,
    layers: Vec<LayerKv>,
}

impl KvCache {
    /// Layer `i`'s keys and values; panics if the cache does not hold that layer (a pass below
    /// a replayed trunk never asks).
    pub(crate) fn layer(&self, i: usize) -> &LayerKv {
        let held = i.checked_sub(self.first).and_then(|k| self.layers.get(k));
        held.unwrap_or_else(|| panic!("layer {i} is below the cached layers {}..", self.first))
    }

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
    let (ids, width) = padded_ids(sequences, pad_id);
    let ids = Tensor::from_data(TensorData::new(ids, [sequences.len(), width]), device);
    (ids, width)
}

/// `sequences` right-padded with `pad_id` to the longest, row after row, and that width.
fn padded_ids(sequences: &[&[u32]], pad_id: u32) -> (Vec<i64>, usize) {
    let width = sequences.iter().map(|s| s.len()).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(sequences.len() * width);
    for s in sequences {
        ids.extend(s.iter().map(|&t| t as i64));
        ids.extend(std::iter::repeat_n(pad_id as i64, width - s.len()));
    }
    (ids, width)
}

/// Length of the longest common prefix of two token sequences.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The causal mask of one segment of a decoder pass, `T` tokens after a prefix of `P`: query position
/// `P + i` sees keys `0..=P + i`.
///
/// Without autodiff, attention runs as burn's fused attention op ([`CausalMask::fused`]), whose
/// `is_causal` mask is aligned to the bottom-right corner of the `[T, P+T]` score matrix
/// (exactly the rule above): on `cpu` flex reads grouped key/value heads natively; on wgpu
/// they are repeated to one per query head, and burn's autotune picks its flash kernel (no
/// `[T, P+T]` scores held) or its plain kernels by shape. Under autodiff, where burn would
/// decompose the op anyway, attention is written out with an explicit `[G·T, P+T]` mask, built
/// once per segment of a pass on first use and shared by the layers.
pub(crate) struct CausalMask {
    prefix: usize,
    t: usize,
    group: usize,
    explicit: OnceCell<Tensor<2, Bool>>,
}

impl CausalMask {
    pub(crate) fn new(prefix: usize, t: usize, group: usize) -> Self {
        CausalMask {
            prefix,
            t,
            group,
            explicit: OnceCell::new(),
        }
    }

    /// Whether attention on `device` runs as burn's fused op.
    pub(crate) fn fused(device: &Device) -> bool {
        !device.is_autodiff()
    }

    /// `[G·T, P+T]`, true where query row `r` (position `P + (r mod T)`; the `G` query heads
    /// that share a key/value head stacked along the time axis) may not see the key (column).
    pub(crate) fn explicit(&self, device: &Device) -> Tensor<2, Bool> {
        let (prefix, t, group) = (self.prefix, self.t, self.group);
        (self.explicit.get_or_init(|| {
            let columns = prefix + t;
            let mut blocked = Vec::with_capacity(group * t * columns);
            for _ in 0..group {
                for i in 0..t {
                    blocked.extend((0..columns).map(|j| j > prefix + i));
                }
            }
            Tensor::from_data(TensorData::new(blocked, [group * t, columns]), device)
        }))
        .clone()
    }
}
