//! Causal grouped-query attention on the CPU, its products on the system's BLAS, with its
//! backward pass.
//!
//! For query row `i` of `T` (position `P + i` after a cached prefix of `P`), keys and values
//! `0..S` with `S = P + T`, query head `j` reading key/value head `j / G`, and `c = 1/√d`:
//!
//! ```text
//! s_i,σ = c · q_i · k_σ            for σ ≤ P + i (the keys row i sees)
//! ℓ_i   = log Σ_σ exp(s_i,σ)       (kept for the backward pass)
//! p_i,σ = exp(s_i,σ − ℓ_i)
//! o_i   = Σ_σ p_i,σ · v_σ
//! ```
//!
//! burn's fused attention op on flex computes the forward pass in key tiles of 64 with flex's
//! gemm, forms the scores of keys a row may not see as well, and takes each exponential one at
//! a time; under autodiff burn decomposes it into batched matmuls, a mask and a softmax, and
//! keeps the `[T, S]` probabilities of every head for the backward pass. Here, per (batch,
//! query head) and block of [`BLOCK`] query rows `[i0, i1)`, every product is one sgemm over
//! the keys `0..P+i1` the block sees (keys after its last row are never formed):
//!
//! ```text
//! forward    S  = c · Q_blk · K[..P+i1]ᵀ,  E = exp(S − rowmax S) on the visible columns,
//!            O_blk = diag(1 / Σ_σ E) · E · V   (ℓ kept)
//! backward   P recomputed from S and ℓ;  D_i = Σ_c ∂o_i,c · o_i,c
//!            ∂V += Pᵀ · ∂O_blk,   ∂P = ∂O_blk · Vᵀ,   ∂S = P ⊙ (∂P − D)
//!            ∂Q_blk = c · ∂S · K,   ∂K += c · ∂Sᵀ · Q_blk
//! ```
//!
//! (the gradients of FlashAttention, Dao et al. 2022). Heads are independent and run side by
//! side on rayon's threads, each product on one BLAS thread; in the backward pass each query
//! head accumulates its own `∂K`, `∂V`, summed over the `G` heads of a group at the end. On
//! the 2-core CI machine the forward pass ran 2.5–4.0× faster than flex's op on judging's
//! shapes (`cargo run --example attention_bench`). f32 only; [`takes`] says when.

use super::blas;
use super::softmax::log_sum_exp_in_place;
use crate::extension::{dims4, elements, primitive, record};
use crate::simd::{exp_minus, scale_in_place};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Dispatch, DispatchKindConversion, DispatchTensor, Flex, backend_extension,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;
use std::cell::Cell;

/// Query rows per block: the block's scores, `BLOCK × S` f32, stay in the L2 cache for
/// sequences of a few thousand tokens.
pub const BLOCK: usize = 64;

/// Whether [`causal_attention`] takes these tensors: f32, on `cpu` (with or without
/// autodiff), a BLAS loaded, and the shapes of grouped-query attention (`q` `[B, h, T, d]`,
/// `k`/`v` `[B, kv, S, d]` with `h` a multiple of `kv` and `S ≥ T`).
pub fn takes(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> bool {
    let ([b, h, t, d], [kb, kv, s, kd]) = (q.dims(), k.dims());
    [q.dtype(), k.dtype(), v.dtype()]
        .iter()
        .all(|&dtype| dtype == DType::F32)
        && super::on_flex(&q.device())
        && blas::name().is_some()
        && v.dims() == k.dims()
        && kb == b
        && kd == d
        && kv > 0
        && h % kv == 0
        && s >= t
}

/// `softmax(q kᵀ / √d, causal from the bottom right) · v`, `[B, h, T, d]`, for `q` `[B, h, T,
/// d]` and `k`, `v` `[B, kv, S, d]` ([`takes`] said yes); under autodiff with its backward pass.
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let out = Tensor::from_dispatch(<Dispatch as AttentionBackend>::causal_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
    ));
    CALLS.with(|calls| calls.set(calls.get() + 1));
    out
}

/// Attentions this thread has run through [`causal_attention`] so far (a test compares it
/// before and after, so a silent fallback to burn's ops fails it).
pub fn calls_on_this_thread() -> u64 {
    CALLS.with(Cell::get)
}

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// The attention as a burn backend extension: forward on flex, forward and backward on
/// `Autodiff<Flex>`.
#[backend_extension(Autodiff, Flex)]
pub trait AttentionBackend: Backend {
    /// `[B, h, T, d]` from `q` `[B, h, T, d]`, `k` and `v` `[B, kv, S, d]`.
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl AttentionBackend for Flex {
    fn causal_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor) -> FlexTensor {
        let [q, k, v] = [q, k, v].map(|x| x.to_contiguous());
        forward(&q, &k, &v).0
    }
}

#[derive(Debug)]
struct AttentionBackward;

/// What the backward pass reads: `q`, `k`, `v`, the output and `ℓ` (`[B, h, T]`).
type Saved = (Tensor<4>, Tensor<4>, Tensor<4>, Tensor<4>, Tensor<3>);

impl<B: Backend> Backward<B, 3> for AttentionBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = Tensor::<4>::from_primitive::<B>(grads.consume::<B>(&ops.node));
        let (q, k, v, out, lse) = ops.state;
        let [q, k, v, out, d_out] = [q, k, v, out, d_out].map(flex);
        let lse = primitive::<Flex, 3>(lse).to_contiguous();
        let gradients = backward(&q, &k, &v, &out, &lse, &d_out);
        for (node, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = node {
                let gradient = Tensor::<4>::from_primitive::<Flex>(gradient);
                grads.register::<B>(node.id, primitive::<B, 4>(gradient));
            }
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> AttentionBackend for Autodiff<B, C>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (q, q_node) = q.into_parts();
        let (k, k_node) = k.into_parts();
        let (v, v_node) = v.into_parts();
        // Contiguous once, here: the backward pass reads the same copies.
        let [q, k, v] = [q, k, v].map(|x| flex(Tensor::<4>::from_primitive::<B>(x)));
        let (out, lse) = forward(&q, &k, &v);
        let [b, h, t, _] = dims4(&q);
        let lse = Tensor::<3>::from_data(TensorData::new(lse, [b, h, t]), &Device::flex());
        let [q, k, v, out] = [q, k, v, out].map(Tensor::<4>::from_primitive::<Flex>);
        let y = primitive::<B, 4>(out.clone());
        let nodes = [q_node, k_node, v_node];
        record::<B, C, _, _>(AttentionBackward, nodes, (q, k, v, out, lse), y)
    }
}

/// A flex tensor's storage, contiguous.
fn flex(x: Tensor<4>) -> FlexTensor {
    primitive::<Flex, 4>(x).to_contiguous()
}

/// The sizes of one attention: batch, query heads, key/value heads, new rows `T`, keys `S`,
/// head width.
#[derive(Clone, Copy)]
struct Sizes {
    b: usize,
    h: usize,
    kv: usize,
    t: usize,
    s: usize,
    d: usize,
}

impl Sizes {
    fn of(q: &FlexTensor, k: &FlexTensor) -> Self {
        let ([b, h, t, d], [_, kv, s, _]) = (dims4(q), dims4(k));
        Sizes { b, h, kv, t, s, d }
    }

    /// Where query head `head` (counted over the batch)'s key/value head starts in `k`, `v`.
    fn kv_start(&self, head: usize) -> usize {
        let (batch, j) = (head / self.h, head % self.h);
        (batch * self.kv + j / (self.h / self.kv)) * self.s * self.d
    }

    /// The blocks of query rows: `(i0, rows, keys seen by the block's last row)`.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize, usize)> {
        let Sizes { t, s, .. } = *self;
        (0..t).step_by(BLOCK).map(move |i0| {
            let rows = BLOCK.min(t - i0);
            (i0, rows, s - t + i0 + rows)
        })
    }
}

/// Runs `task` on every query head (counted over the batch) with that head's chunks of the
/// `outputs` (each of `per_head[n]` elements): side by side, each product on one BLAS thread;
/// where the BLAS cannot be held to one thread per product, one head after another.
fn each_head<const N: usize>(
    outputs: [&mut [f32]; N],
    per_head: [usize; N],
    task: impl Fn(&mut Vec<f32>, usize, [&mut [f32]; N]) + Sync,
) {
    let heads = outputs[0].len() / per_head[0].max(1);
    let mut chunks: Vec<[&mut [f32]; N]> =
        (0..heads).map(|_| [(); N].map(|_| &mut [][..])).collect();
    for (n, output) in outputs.into_iter().enumerate() {
        for (chunk, slot) in output.chunks_mut(per_head[n].max(1)).zip(&mut chunks) {
            slot[n] = chunk;
        }
    }
    let parallel = |chunks: Vec<[&mut [f32]; N]>| {
        chunks
            .into_par_iter()
            .enumerate()
            .for_each_init(Vec::new, |scratch, (head, chunk)| {
                task(scratch, head, chunk)
            })
    };
    let mut chunks = Some(chunks);
    if blas::one_thread_per_product(|| parallel(chunks.take().expect("not run yet"))).is_none() {
        let mut scratch = Vec::new();
        for (head, chunk) in chunks.take().expect("not run").into_iter().enumerate() {
            task(&mut scratch, head, chunk);
        }
    }
}

/// The forward pass: the output `[B, h, T, d]` (stored `[B, T, h, d]`, [`rows_first`]) and `ℓ`
/// (`B·h·T` values, row-major).
fn forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> (FlexTensor, Vec<f32>) {
    let size = Sizes::of(q, k);
    let Sizes { b, h, t, s, d, .. } = size;
    let (q, k, v) = (elements(q), elements(k), elements(v));
    let mut out = vec![0.0f32; b * h * t * d];
    let mut lse = vec![0.0f32; b * h * t];
    each_head(
        [&mut out, &mut lse],
        [t * d, t],
        |scores, head, [o, lse]| {
            let q = &q[head * t * d..][..t * d];
            let kv = size.kv_start(head);
            let (k, v) = (&k[kv..][..s * d], &v[kv..][..s * d]);
            let mut sums = [0.0f32; BLOCK];
            for (i0, rows, seen) in size.blocks() {
                scores.resize(rows * seen, 0.0);
                // E = exp(S − max) per row; P = E / Σ E is applied to the rows of E · V below,
                // `d` wide, rather than to E, `seen` wide.
                block_scores(q, k, (i0, rows, seen), d, scores, |r, visible| {
                    (lse[i0 + r], sums[r]) = log_sum_exp_in_place(visible)
                });
                let o_block = &mut o[i0 * d..][..rows * d];
                blas::sgemm_slices(
                    (rows, d, seen),
                    1.0,
                    (scores, seen, false),
                    (v, d, false),
                    0.0,
                    (o_block, d),
                );
                for (o_row, sum) in o_block.chunks_exact_mut(d).zip(sums) {
                    scale_in_place(o_row, 1.0 / sum);
                }
            }
        },
    );
    (rows_first(&out, [b, h, t, d]), lse)
}

/// `out` (`[B, h, T, d]`, heads first, as the heads computed it) as a `[B, h, T, d]` view of
/// `[B, T, h, d]` storage: the layout the output projection reads, `[B, T, h·d]`, so that the
/// caller's `swap_dims(1, 2)` and reshape copy nothing, and under autodiff the one tensor is
/// kept both here and by that projection. The copy runs on rayon's threads, row by row.
fn rows_first(out: &[f32], [b, h, t, d]: [usize; 4]) -> FlexTensor {
    let mut rows = vec![0.0f32; out.len()];
    rows.par_chunks_mut(h * d)
        .enumerate()
        .for_each(|(row, into)| {
            let (batch, i) = (row / t, row % t);
            for (j, head) in into.chunks_exact_mut(d).enumerate() {
                head.copy_from_slice(&out[((batch * h + j) * t + i) * d..][..d]);
            }
        });
    let rows = Tensor::<4>::from_data(TensorData::new(rows, [b, t, h, d]), &Device::flex());
    primitive::<Flex, 4>(rows.swap_dims(1, 2))
}

/// The backward pass: `[∂q, ∂k, ∂v]` from the inputs, the output, `ℓ` and `∂out`.
fn backward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    out: &FlexTensor,
    lse: &FlexTensor,
    d_out: &FlexTensor,
) -> [FlexTensor; 3] {
    let size = Sizes::of(q, k);
    let Sizes { b, h, kv, t, s, d } = size;
    let scale = 1.0 / (d as f32).sqrt();
    let (q, k, v) = (elements(q), elements(k), elements(v));
    let (out, d_out) = (elements(out), elements(d_out));
    let lse = &lse.storage::<f32>()[lse.layout().start_offset()..][..b * h * t];
    let mut d_q = vec![0.0f32; b * h * t * d];
    // Each query head's share of ∂K and ∂V, summed over its group below.
    let mut d_k_head = vec![0.0f32; b * h * s * d];
    let mut d_v_head = vec![0.0f32; b * h * s * d];
    each_head(
        [&mut d_q, &mut d_k_head, &mut d_v_head],
        [t * d, s * d, s * d],
        |scratch, head, [d_q, d_k, d_v]| {
            let rows = head * t * d..(head + 1) * t * d;
            let (q, o, d_o) = (&q[rows.clone()], &out[rows.clone()], &d_out[rows]);
            let lse = &lse[head * t..][..t];
            let start = size.kv_start(head);
            let (k, v) = (&k[start..][..s * d], &v[start..][..s * d]);
            for (i0, rows, seen) in size.blocks() {
                scratch.resize(2 * rows * seen, 0.0);
                let (p, d_s) = scratch.split_at_mut(rows * seen);
                let q_block = (&q[i0 * d..], d, false);
                let d_o_block = (&d_o[i0 * d..], d, false);
                // P, recomputed: exp(c · Q Kᵀ − ℓ) on the visible columns, 0 elsewhere.
                block_scores(q, k, (i0, rows, seen), d, p, |r, visible| {
                    exp_minus(visible, lse[i0 + r]);
                });
                // ∂V += Pᵀ · ∂O;  ∂P = ∂O · Vᵀ.
                blas::sgemm_slices(
                    (seen, d, rows),
                    1.0,
                    (p, seen, true),
                    d_o_block,
                    1.0,
                    (d_v, d),
                );
                blas::sgemm_slices(
                    (rows, seen, d),
                    1.0,
                    d_o_block,
                    (v, d, true),
                    0.0,
                    (d_s, seen),
                );
                // ∂S = P ⊙ (∂P − D), D_i = ∂o_i · o_i.
                for r in 0..rows {
                    let i = i0 + r;
                    let dot: f32 = (d_o[i * d..][..d].iter().zip(&o[i * d..][..d]))
                        .map(|(a, b)| a * b)
                        .sum();
                    let (p_row, d_s_row) = (&p[r * seen..][..seen], &mut d_s[r * seen..][..seen]);
                    for (g, &p) in d_s_row.iter_mut().zip(p_row) {
                        *g = p * (*g - dot);
                    }
                }
                // ∂Q = c · ∂S · K;  ∂K += c · ∂Sᵀ · Q.
                let d_q_block = (&mut d_q[i0 * d..], d);
                blas::sgemm_slices(
                    (rows, d, seen),
                    scale,
                    (d_s, seen, false),
                    (k, d, false),
                    0.0,
                    d_q_block,
                );
                blas::sgemm_slices(
                    (seen, d, rows),
                    scale,
                    (d_s, seen, true),
                    q_block,
                    1.0,
                    (d_k, d),
                );
            }
        },
    );
    // ∂K, ∂V of a key/value head: the sum over the query heads that read it.
    let group = h / kv;
    let sum_groups = |per_head: Vec<f32>| -> FlexTensor {
        let mut total = vec![0.0f32; b * kv * s * d];
        for (head, share) in per_head.chunks_exact(s * d).enumerate() {
            let (batch, j) = (head / h, head % h);
            let into = &mut total[(batch * kv + j / group) * s * d..][..s * d];
            into.iter_mut().zip(share).for_each(|(x, y)| *x += y);
        }
        flex_from(total, [b, kv, s, d])
    };
    [
        flex_from(d_q, [b, h, t, d]),
        sum_groups(d_k_head),
        sum_groups(d_v_head),
    ]
}

/// A block's scores `c · Q[i0..i0+rows] · K[..seen]ᵀ` (`c = 1/√d`) into `scores`, `[rows,
/// seen]`; then `visible(r, columns)` on each row's columns up to its own position, and 0 in
/// the rest (keys after the row).
fn block_scores(
    q: &[f32],
    k: &[f32],
    (i0, rows, seen): (usize, usize, usize),
    d: usize,
    scores: &mut [f32],
    mut visible: impl FnMut(usize, &mut [f32]),
) {
    let scale = 1.0 / (d as f32).sqrt();
    let q_block = (&q[i0 * d..], d, false);
    blas::sgemm_slices(
        (rows, seen, d),
        scale,
        q_block,
        (k, d, true),
        0.0,
        (scores, seen),
    );
    for (r, row) in scores.chunks_exact_mut(seen).enumerate() {
        let (columns, hidden) = row.split_at_mut(seen - rows + r + 1);
        visible(r, columns);
        hidden.fill(0.0);
    }
}

/// A new contiguous flex tensor holding `values`.
fn flex_from(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    let tensor = Tensor::<4>::from_data(TensorData::new(values, shape), &Device::flex());
    primitive::<Flex, 4>(tensor)
}
