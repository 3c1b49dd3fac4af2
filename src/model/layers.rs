//! The building blocks of one decoder layer, each with its math.
//!
//! ```text
//! h       = x + Attn(RMSNorm(x))                 pre-norm residual attention
//! x'      = h + MLP(RMSNorm(h))                  pre-norm residual SwiGLU
//! RMSNorm(x) = x / sqrt(mean(x²) + eps) ⊙ (offset + g)
//! MLP(x)     = W_down (act(W_gate x) ⊙ W_up x)  act = SiLU
//! Attn(x)    = W_o · concat_heads softmax(q kᵀ / √hd + causal mask) v,
//!              q = rope(norm_q(W_q x)), k = rope(norm_k(W_k x)), v = W_v x
//! ```
//!
//! Projections hold their weight `[in, out]` (transposed from the checkpoint's `[out, in]`) so
//! every projection is a plain `x · W`. `norm_q`/`norm_k` (Qwen3) and the q/k/v biases (Qwen2)
//! are present only where the [`Variant`](super::Variant) says so.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::fused;
use super::lora::Lora;
use super::variant::Activation;
use super::{CausalMask, LayerKv, Segment};
use crate::matmul::blas;

/// Root-mean-square layer norm with a learned gain `g`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    #[module(skip)]
    pub eps: f64,
    /// Added to the stored gain ([`Variant::norm_weight_offset`](super::Variant), 0 so far).
    #[module(skip)]
    pub weight_offset: f64,
}

impl RmsNorm {
    /// `x / sqrt(mean(x², last dim) + eps) ⊙ (offset + g)`: one fused pass on `cpu`, with or
    /// without autodiff ([`fused::rms_norm`]), burn's operations otherwise.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let gain = self.gain();
        if fused::takes(&x, &gain) {
            return fused::rms_norm(x, gain, self.eps);
        }
        let rms = (x.clone().powi_scalar(2).mean_dim(D - 1) + self.eps).sqrt();
        x.div(rms).mul(gain.unsqueeze())
    }

    /// The effective gain `offset + g`.
    pub fn gain(&self) -> Tensor<1> {
        if self.weight_offset == 0.0 {
            self.weight.val()
        } else {
            self.weight.val() + self.weight_offset
        }
    }
}

/// A dense projection `y = x · W (+ b)` with `W` stored `[in, out]`, optionally with a
/// low-rank adapter: `y = x · W (+ b) + (α/r) · (x · A) · B`.
#[derive(Module, Debug)]
pub struct Projection {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub lora: Option<Lora>,
}

impl Projection {
    /// `x · W (+ b) (+ adapter)`, multiplied in `W`'s float type, returned in `x`'s
    /// ([`crate::matmul::linear`]).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let bias = self.bias.as_ref().map(|b| b.val());
        let y = crate::matmul::linear(x.clone(), self.weight.val(), bias);
        match &self.lora {
            Some(lora) => y + lora.forward(x),
            None => y,
        }
    }

    /// The weight with the adapter folded in, `W + (α/r) · A · B` (`[in, out]`), in the
    /// adapter's float type (f32) when there is one.
    pub fn merged_weight(&self) -> Tensor<2> {
        match &self.lora {
            Some(lora) => {
                let update = lora.a.val().matmul(lora.b.val()) * lora.scale;
                self.weight.val().cast(update.dtype()) + update
            }
            None => self.weight.val(),
        }
    }
}

/// Causal grouped-query self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Projection,
    pub k_proj: Projection,
    pub v_proj: Projection,
    pub o_proj: Projection,
    /// Qwen3's per-head RMSNorm on queries and keys.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    #[module(skip)]
    pub num_heads: usize,
    #[module(skip)]
    pub num_kv_heads: usize,
    #[module(skip)]
    pub head_dim: usize,
}

impl Attention {
    /// `x`: the rows of a pass's `segments` (`[B, T, d]` for one segment, `[1, R, d]` for
    /// several stacked), each segment at positions `P..P+T` after its cached prefix of `P`
    /// (this is layer `layer`): query `P + i` sees keys `≤ P + i` of its own sequence only.
    /// Returns the output, `x`'s shape, and each segment's keys and values of this call
    /// (after RoPE), `[B, kv, T, hd]` each, so a caller can extend a [`KvCache`](super::KvCache).
    ///
    /// The projections run once over all rows; the attention segment by segment.
    pub(super) fn forward(
        &self,
        x: Tensor<3>,
        segments: &[Segment],
        layer: usize,
    ) -> (Tensor<3>, Vec<LayerKv>) {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self.q_proj.forward(x.clone()).reshape([b, t, h, hd]);
        let k = self.k_proj.forward(x.clone()).reshape([b, t, kv, hd]);
        let v = self.v_proj.forward(x).reshape([b, t, kv, hd]);
        let (q, k) = match (&self.q_norm, &self.k_norm) {
            (Some(qn), Some(kn)) => (qn.forward(q), kn.forward(k)),
            _ => (q, k),
        };
        let (out, fresh) = match segments {
            [one] => {
                let (out, fresh) = self.attend(q, k, v, one, layer);
                (out, vec![fresh])
            }
            _ => {
                // [B·T, heads, hd] rows of segment `s`, as [B_s, T_s, heads, hd].
                let rows = |x: &Tensor<4>, s: &Segment| {
                    let [_, _, heads, _] = x.dims();
                    (x.clone().reshape([b * t, heads, hd]))
                        .narrow(0, s.offset, s.b * s.t)
                        .reshape([s.b, s.t, heads, hd])
                };
                let (outs, fresh): (Vec<_>, Vec<_>) = segments
                    .iter()
                    .map(|s| {
                        let (out, fresh) =
                            self.attend(rows(&q, s), rows(&k, s), rows(&v, s), s, layer);
                        (out.reshape([1, s.b * s.t, h * hd]), fresh)
                    })
                    .unzip();
                (Tensor::cat(outs, 1), fresh)
            }
        };
        (self.o_proj.forward(out), fresh)
    }

    /// One segment's attention: `q` `[B, T, h, hd]`, `k`, `v` `[B, T, kv, hd]` at positions
    /// `P..P+T`; returns `[B, T, h·hd]` and the segment's keys and values.
    fn attend(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        segment: &Segment,
        layer: usize,
    ) -> (Tensor<3>, LayerKv) {
        let [b, t, _, _] = q.dims();
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = h / kv;
        // [B, heads, T, hd]
        let q = segment.rope.rotate(q);
        let k = segment.rope.rotate(k);
        let v = v.swap_dims(1, 2);
        let new = LayerKv {
            keys: k.clone(),
            values: v.clone(),
        };
        // Keys and values of the shared prefix (batch 1) come first, seen by every row.
        let (k, v) = match segment.past.map(|past| past.layer(layer)) {
            Some(past) => {
                let [_, _, p, _] = past.keys.dims();
                (
                    Tensor::cat(vec![past.keys.clone().expand([b, kv, p, hd]), k], 2),
                    Tensor::cat(vec![past.values.clone().expand([b, kv, p, hd]), v], 2),
                )
            }
            None => (k, v),
        };

        let device = q.device();
        let out = if crate::matmul::attention::takes(&q, &k, &v) {
            // f32 on `cpu` with a BLAS: gram's own kernel, with or without autodiff (grouped
            // heads read natively, no mask).
            crate::matmul::attention::causal_attention(q, k, v)
        } else if CausalMask::fused(&device) {
            // softmax(q kᵀ / √hd, bottom-right causal) v, query head j reading key/value head
            // j / G, in one op: [B, h, T, hd]. flex reads the grouped heads natively; wgpu's
            // kernels want as many key/value heads as query heads, so those are repeated.
            let (k, v) = if crate::matmul::on_flex(&device) || group == 1 {
                (k, v)
            } else {
                let repeat = |x: Tensor<4>| {
                    let [_, _, s, _] = x.dims();
                    x.unsqueeze_dim::<5>(2)
                        .expand([b, kv, group, s, hd])
                        .reshape([b, h, s, hd])
                };
                (repeat(k), repeat(v))
            };
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: true,
            };
            attention(q, k, v, None, None, options)
        } else {
            // Grouped-query attention without copying K/V: the `group` query heads that share
            // one key/value head are stacked along the time axis, [B, kv, group·T, hd].
            let q = q.reshape([b, kv, group * t, hd]);
            let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt(); // [B, kv, G·T, P+T]
            let mask = segment.mask.explicit(&device).unsqueeze::<4>();
            let scores = scores.mask_fill(mask, -1.0e9);
            softmax(scores, 3).matmul(v).reshape([b, h, t, hd]) // [B, kv, G·T, hd] → [B, h, T, hd]
        };
        // [B, T, h·hd]: a copy, except after gram's CPU attention, whose output is stored so.
        (out.swap_dims(1, 2).reshape([b, t, h * hd]), new)
    }
}

/// The gated feed-forward block: `W_down (act(W_gate x) ⊙ W_up x)` (SwiGLU with SiLU).
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Projection,
    pub up_proj: Projection,
    pub down_proj: Projection,
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    /// `W_down (act(W_gate x) ⊙ W_up x)`; SiLU and the product are one fused pass on `cpu`,
    /// with or without autodiff ([`fused::silu_mul`]), and one operation with a plain down
    /// projection ([`fused::silu_mul_down`], which under autodiff does not keep the product).
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = self.gate_proj.forward(x.clone());
        let up = self.up_proj.forward(x);
        let down = &self.down_proj;
        if let (Activation::Silu, None, None) = (self.activation, &down.bias, &down.lora) {
            let w = down.weight.val();
            if fused::takes(&gate, &up) && fused::takes(&gate, &w) && blas::takes(&gate, &w) {
                return fused::silu_mul_down(gate, up, w);
            }
        }
        let hidden = match self.activation {
            Activation::Silu if fused::takes(&gate, &up) => fused::silu_mul(gate, up),
            activation => activation.apply(gate) * up,
        };
        self.down_proj.forward(hidden)
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    /// `x' = h + MLP(RMSNorm(h))` with `h = x + Attn(RMSNorm(x))`, and each segment's keys and
    /// values of this call (see [`Attention::forward`]).
    pub(super) fn forward(
        &self,
        x: Tensor<3>,
        segments: &[Segment],
        layer: usize,
    ) -> (Tensor<3>, Vec<LayerKv>) {
        let (h, kv) = self.attend(x, segments, layer);
        (self.feed_forward(h), kv)
    }

    /// `x` as this layer runs it: without autodiff when the layer's weights have none (the
    /// frozen bottom layers of `--train-layers` training, see `Learner::set_trainable`), so
    /// that they run the inference path; unchanged otherwise (a plain `x` meeting autodiff
    /// weights is a constant to them).
    pub(super) fn take_input(&self, x: Tensor<3>) -> Tensor<3> {
        if self.input_layernorm.weight.val().is_autodiff() {
            return x;
        }
        debug_assert!(!x.is_tracked(), "a frozen layer above a trainable one");
        x.inner()
    }

    /// The attention half: `h = x + Attn(RMSNorm(x))`, and each segment's keys and values.
    pub(super) fn attend(
        &self,
        x: Tensor<3>,
        segments: &[Segment],
        layer: usize,
    ) -> (Tensor<3>, Vec<LayerKv>) {
        let normed = self.input_layernorm.forward(x.clone());
        let (attn, kv) = self.self_attn.forward(normed, segments, layer);
        (x + attn, kv)
    }

    /// The feed-forward half, position by position: `h + MLP(RMSNorm(h))`.
    pub(super) fn feed_forward(&self, h: Tensor<3>) -> Tensor<3> {
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

impl DecoderLayer {
    /// The seven projections (attention q, k, v, o; MLP gate, up, down), for adapters.
    pub fn projections_mut(&mut self) -> [&mut Projection; 7] {
        let (attn, mlp) = (&mut self.self_attn, &mut self.mlp);
        [
            &mut attn.q_proj,
            &mut attn.k_proj,
            &mut attn.v_proj,
            &mut attn.o_proj,
            &mut mlp.gate_proj,
            &mut mlp.up_proj,
            &mut mlp.down_proj,
        ]
    }
}
