//! The decoder's element-wise blocks as single passes on the CPU, forward and backward: for
//! judging, evaluation and serving, and for both the frozen and the trainable layers of training.
//!
//! burn's CPU backend (flex) runs RMSNorm as six element-wise passes (`x²`, mean, `+ eps`, `√`,
//! `÷`, `× g`), SiLU and the product with the up projection as four more, and RoPE as strided
//! halves concatenated, two products and a sum, followed by a copy to make the heads contiguous.
//! Each of those passes runs on one core and writes a fresh tensor. Here each block is one pass
//! over its rows, rows side by side on rayon's threads:
//!
//! ```text
//! rms_norm   y = x · (Σ x² / n + eps)^(−1/2) ⊙ g          per row of n (the last dimension)
//! silu_mul   y = g · σ(g) ⊙ u = g / (1 + e^(−g)) ⊙ u       (without autodiff in place of g)
//! rope       [B, T, h, hd] → [B, h, T, hd]:  y = x ⊙ cos + [x₂, x₁] ⊙ [−sin, sin]
//! ```
//!
//! (RoPE's table layout is [`super::rope`]'s.) They take f32 tensors on `cpu` ([`takes`]), with
//! autodiff too (the trainable layers): a burn backend extension with the backward passes below,
//! keeping only the inputs (and RMSNorm's `r` per row) where burn's operations keep every
//! intermediate. The MLP's SiLU·up and its down projection are one operation under autodiff
//! ([`silu_mul_down`]), so that the `[tokens, intermediate]` product `silu(g) ⊙ u` is not kept
//! as the projection's input but formed again in the backward pass:
//!
//! ```text
//! rms_norm   r = (Σ x² / n + eps)^(−1/2)
//!            ∂x = r · (∂y ⊙ g) − x · r³ · Σ(∂y ⊙ g ⊙ x) / n,   ∂g = Σ_rows ∂y ⊙ x · r
//! silu_mul   s = σ(g):   ∂u = ∂y ⊙ g · s,   ∂g = ∂y ⊙ u ⊙ s · (1 + g · (1 − s))
//! silu_mul_down   y = (silu(g) ⊙ u) · W:   h = silu(g) ⊙ u formed again,
//!            ∂W = hᵀ · ∂y,   ∂h = ∂y · Wᵀ,   then ∂g, ∂u as silu_mul's from ∂h
//! rope       ∂x_i = ∂y_i cos_i + ∂y_i' sin_i'   (i' = i ± hd/2; heads moved back behind T)
//! ```
//!
//! The layers use burn's operations everywhere else (wgpu, 16-bit float types), and the two
//! agree to f32 rounding (`tests/fused.rs`).

use crate::extension::{dims2, dims4, elements, primitive, record};
use crate::matmul::{blas, on_flex};
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
use wide::f32x8;

/// Rows handed to one rayon task at least: a row of a few hundred values is too little work
/// to be worth a task of its own.
const MIN_ROWS_PER_TASK: usize = 16;

/// Values of an element-wise pass handed to one rayon task.
const CHUNK: usize = 1024;

/// Whether the fused blocks take the pair `a`, `b` (a block's input and its gain, its other
/// input or its tables): both f32 on `cpu`, on one device (both with autodiff, under one
/// checkpointing strategy, or both without).
pub fn takes<const D: usize, const E: usize>(a: &Tensor<D>, b: &Tensor<E>) -> bool {
    let device = a.device();
    a.dtype() == DType::F32 && b.dtype() == DType::F32 && on_flex(&device) && b.device() == device
}

/// Fused blocks this thread has run so far (a test compares it before and after a forward
/// pass, so a silent fallback to burn's operations fails it).
pub fn calls_on_this_thread() -> u64 {
    CALLS.with(Cell::get)
}

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn count_call() {
    CALLS.with(|calls| calls.set(calls.get() + 1));
}

/// RMSNorm over the last dimension: `x · (Σ x² / n + eps)^(−1/2) ⊙ gain`, `x`'s shape, for a
/// `gain` of `n` values ([`takes`]).
pub fn rms_norm<const D: usize>(x: Tensor<D>, gain: Tensor<1>, eps: f64) -> Tensor<D> {
    let shape = x.dims();
    let n = shape[D - 1];
    assert_eq!(gain.dims(), [n], "one gain per element of a row");
    let rows = x.shape().num_elements() / n.max(1);
    let y = <Dispatch as FusedBackend>::rms_norm(
        x.reshape([rows, n]).into_dispatch(),
        gain.into_dispatch(),
        eps,
    );
    count_call();
    Tensor::<2>::from_dispatch(y).reshape(shape)
}

/// `silu(gate) ⊙ up = gate / (1 + e^(−gate)) ⊙ up` (both of one shape, [`takes`]);
/// without autodiff in place of `gate`.
pub fn silu_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    assert_eq!(
        gate.dims(),
        up.dims(),
        "the gate and up projections' shapes"
    );
    let shape = gate.dims();
    let count = gate.shape().num_elements();
    let y = <Dispatch as FusedBackend>::silu_mul(
        gate.reshape([count]).into_dispatch(),
        up.reshape([count]).into_dispatch(),
    );
    count_call();
    Tensor::<1>::from_dispatch(y).reshape(shape)
}

/// The MLP's down projection of its gated product, `(silu(gate) ⊙ up) · w`, `[..., d]`, for
/// `gate`, `up` `[..., I]` and `w` `[I, d]` (all [`takes`], and a BLAS for the product,
/// [`crate::matmul::blas::takes`]). Without autodiff it is [`silu_mul`] in place of `gate`
/// and one BLAS product; under autodiff it keeps `gate` and `up` (and `w`), not their product.
pub fn silu_mul_down<const D: usize>(gate: Tensor<D>, up: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    assert_eq!(
        gate.dims(),
        up.dims(),
        "the gate and up projections' shapes"
    );
    let [inner, d] = w.dims();
    let mut shape = gate.dims();
    assert_eq!(shape[D - 1], inner, "the down projection's input width");
    let rows = gate.shape().num_elements() / inner.max(1);
    let y = <Dispatch as FusedBackend>::silu_mul_down(
        gate.reshape([rows, inner]).into_dispatch(),
        up.reshape([rows, inner]).into_dispatch(),
        w.into_dispatch(),
    );
    count_call();
    shape[D - 1] = d;
    Tensor::<2>::from_dispatch(y).reshape(shape)
}

/// The four blocks as a burn backend extension: forward on flex, forward and backward on
/// `Autodiff<Flex>`.
#[backend_extension(Autodiff, Flex)]
pub trait FusedBackend: Backend {
    /// `[rows, n]` from `x` `[rows, n]` and `gain` `[n]`.
    fn rms_norm(x: FloatTensor<Self>, gain: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
    /// `[len]` from `gate` and `up` `[len]`.
    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `[rows, d]` from `gate`, `up` `[rows, I]` and `w` `[I, d]`.
    fn silu_mul_down(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        w: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `[B, h, T, hd]` from `x` `[B, T, h, hd]` and the tables `cos`, `signed_sin` `[T, hd]`.
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl FusedBackend for Flex {
    fn rms_norm(x: FlexTensor, gain: FlexTensor, eps: f64) -> FlexTensor {
        let [x, gain] = [x, gain].map(|t| t.to_contiguous());
        norm_rows(&x, &gain, eps).0
    }

    fn silu_mul(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        let (mut gate, up) = (gate.to_contiguous(), up.to_contiguous());
        let up = elements(&up);
        let start = gate.layout().start_offset();
        silu_mul_in_place(&mut gate.storage_mut::<f32>()[start..][..up.len()], up);
        gate
    }

    fn silu_mul_down(gate: FlexTensor, up: FlexTensor, w: FlexTensor) -> FlexTensor {
        let hidden = Tensor::<2>::from_primitive::<Flex>(Self::silu_mul(gate, up));
        primitive::<Flex, 2>(blas::matmul(hidden, Tensor::from_primitive::<Flex>(w)))
    }

    fn rope(x: FlexTensor, cos: FlexTensor, signed_sin: FlexTensor) -> FlexTensor {
        let [x, cos, sin] = [x, cos, signed_sin].map(|t| t.to_contiguous());
        primitive::<Flex, 4>(rope_forward(&x, &cos, &sin).0)
    }
}

impl<B: Backend, C: CheckpointStrategy> FusedBackend for Autodiff<B, C>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    fn rms_norm(x: FloatTensor<Self>, gain: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (gain, gain_node) = gain.into_parts();
        let x = flex::<B, 2>(x);
        let gain = flex::<B, 1>(gain);
        let (y, r) = norm_rows(&x, &gain, eps);
        let y = primitive::<B, 2>(Tensor::<2>::from_primitive::<Flex>(y));
        record::<B, C, _, _>(RmsNormBackward, [x_node, gain_node], (x, gain, r), y)
    }

    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let (gate, gate_node) = gate.into_parts();
        let (up, up_node) = up.into_parts();
        let (gate, up) = (flex::<B, 1>(gate), flex::<B, 1>(up));
        let y = gated_values(&gate, &up);
        let len = y.len();
        let y = primitive::<B, 1>(tensor(y, [len]));
        record::<B, C, _, _>(SiluMulBackward, [gate_node, up_node], (gate, up), y)
    }

    fn silu_mul_down(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        w: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (gate, gate_node) = gate.into_parts();
        let (up, up_node) = up.into_parts();
        let (w, w_node) = w.into_parts();
        let (gate, up) = (flex::<B, 2>(gate), flex::<B, 2>(up));
        let w = Tensor::<2>::from_primitive::<B>(w);
        let y = primitive::<B, 2>(blas::matmul(gated(&gate, &up), w.clone()));
        let nodes = [gate_node, up_node, w_node];
        record::<B, C, _, _>(SiluMulDownBackward, nodes, (gate, up, w), y)
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        signed_sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        // The tables are constants: no gradient flows to them.
        let (cos, _) = cos.into_parts();
        let (sin, _) = signed_sin.into_parts();
        let (x, cos, sin) = (flex::<B, 4>(x), flex::<B, 2>(cos), flex::<B, 2>(sin));
        let (y, dims) = rope_forward(&x, &cos, &sin);
        let y = primitive::<B, 4>(y);
        record::<B, C, _, _>(RopeBackward, [x_node], (cos, sin, dims), y)
    }
}

#[derive(Debug)]
struct RopeBackward;

impl<B: Backend> Backward<B, 1> for RopeBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    /// The tables and the input's shape `[B, T, h, hd]`.
    type State = (FlexTensor, FlexTensor, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_y = flex::<B, 4>(grads.consume::<B>(&ops.node));
        let (cos, sin, dims) = ops.state;
        if let [Some(node)] = ops.parents {
            let d_x = rotate(
                elements(&d_y),
                elements(&cos),
                elements(&sin),
                dims,
                Direction::Backward,
            );
            grads.register::<B>(node.id, primitive::<B, 4>(tensor(d_x, dims)));
        }
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl<B: Backend> Backward<B, 2> for RmsNormBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    /// `x` `[rows, n]`, `gain` `[n]` and each row's `r`.
    type State = (FlexTensor, FlexTensor, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_y = flex::<B, 2>(grads.consume::<B>(&ops.node));
        let (x, gain, r) = ops.state;
        let n = gain.layout().num_elements();
        let (x, gain, d_y) = (elements(&x), elements(&gain), elements(&d_y));
        let [x_node, gain_node] = ops.parents;
        if let Some(node) = x_node {
            let mut d_x = vec![0.0f32; x.len()];
            d_x.par_chunks_mut(n.max(1))
                .zip(x.par_chunks(n.max(1)))
                .zip(d_y.par_chunks(n.max(1)))
                .zip(r.par_iter())
                .with_min_len(MIN_ROWS_PER_TASK)
                .for_each(|(((d_x, x), d_y), &r)| {
                    let dot: f32 = (d_y.iter().zip(gain).zip(x))
                        .map(|((d, g), x)| d * g * x)
                        .sum();
                    let c = r * r * r * dot / n as f32;
                    for i in 0..n {
                        d_x[i] = r * d_y[i] * gain[i] - x[i] * c;
                    }
                });
            let rows = r.len();
            grads.register::<B>(node.id, primitive::<B, 2>(tensor(d_x, [rows, n])));
        }
        if let Some(node) = gain_node {
            // Σ over rows, in fixed blocks summed in order: the same bits on every run.
            let rows_per_block = 4 * MIN_ROWS_PER_TASK;
            let partial: Vec<Vec<f32>> = (x.par_chunks(rows_per_block * n.max(1)))
                .zip(d_y.par_chunks(rows_per_block * n.max(1)))
                .zip(r.par_chunks(rows_per_block))
                .map(|((x, d_y), r)| {
                    let mut sums = vec![0.0f32; n];
                    for ((x, d_y), &r) in x.chunks(n).zip(d_y.chunks(n)).zip(r) {
                        for i in 0..n {
                            sums[i] += d_y[i] * x[i] * r;
                        }
                    }
                    sums
                })
                .collect();
            let mut d_gain = vec![0.0f32; n];
            for sums in partial {
                d_gain.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
            }
            grads.register::<B>(node.id, primitive::<B, 1>(tensor(d_gain, [n])));
        }
    }
}

#[derive(Debug)]
struct SiluMulBackward;

impl<B: Backend> Backward<B, 2> for SiluMulBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    /// `gate` and `up`, `[len]` each.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_y = flex::<B, 1>(grads.consume::<B>(&ops.node));
        let (gate, up) = ops.state;
        let len = gate.layout().num_elements();
        let gradients = silu_mul_gradients(&gate, &up, elements(&d_y));
        for (node, gradient) in ops.parents.into_iter().zip(gradients) {
            if let Some(node) = node {
                grads.register::<B>(node.id, primitive::<B, 1>(tensor(gradient, [len])));
            }
        }
    }
}

#[derive(Debug)]
struct SiluMulDownBackward;

impl<B: Backend> Backward<B, 3> for SiluMulDownBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    /// `gate` and `up` `[rows, I]`, and `w` `[I, d]`.
    type State = (FlexTensor, FlexTensor, Tensor<2>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_y = Tensor::<2>::from_primitive::<Flex>(flex::<B, 2>(grads.consume::<B>(&ops.node)));
        let (gate, up, w) = ops.state;
        let [gate_node, up_node, w_node] = ops.parents;
        if let Some(node) = w_node {
            let d_w = blas::matmul(gated(&gate, &up).transpose(), d_y.clone());
            grads.register::<B>(node.id, primitive::<B, 2>(d_w));
        }
        if gate_node.is_none() && up_node.is_none() {
            return;
        }
        let d_hidden = contiguous(blas::matmul(d_y, w.transpose()));
        let shape = dims2(&gate);
        let gradients = silu_mul_gradients(&gate, &up, elements(&d_hidden));
        for (node, gradient) in [gate_node, up_node].into_iter().zip(gradients) {
            if let Some(node) = node {
                grads.register::<B>(node.id, primitive::<B, 2>(tensor(gradient, shape)));
            }
        }
    }
}

/// `[∂g, ∂u]` of `y = silu(g) ⊙ u` from `∂y` (see the module doc), chunks side by side on
/// rayon's threads.
fn silu_mul_gradients(gate: &FlexTensor, up: &FlexTensor, d_y: &[f32]) -> [Vec<f32>; 2] {
    let (g, u) = (elements(gate), elements(up));
    let len = g.len();
    let mut d_g = vec![0.0f32; len];
    let mut d_u = vec![0.0f32; len];
    (d_g.par_chunks_mut(CHUNK).zip(d_u.par_chunks_mut(CHUNK)))
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .zip(d_y.par_chunks(CHUNK))
        .for_each(|(((d_g, d_u), (g, u)), d_y)| {
            for i in 0..g.len() {
                let s = 1.0 / (1.0 + (-g[i]).exp());
                d_u[i] = d_y[i] * g[i] * s;
                d_g[i] = d_y[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
            }
        });
    [d_g, d_u]
}

/// `silu(gate) ⊙ up` as new values (the inputs are kept, for a backward pass).
fn gated_values(gate: &FlexTensor, up: &FlexTensor) -> Vec<f32> {
    let mut hidden = elements(gate).to_vec();
    silu_mul_in_place(&mut hidden, elements(up));
    hidden
}

/// `silu(gate) ⊙ up` as a new `[rows, I]` tensor on `cpu`.
fn gated(gate: &FlexTensor, up: &FlexTensor) -> Tensor<2> {
    tensor(gated_values(gate, up), dims2(gate))
}

/// `y = x · r ⊙ gain` row by row, and each row's `r = (Σ x² / n + eps)^(−1/2)`.
fn norm_rows(x: &FlexTensor, gain: &FlexTensor, eps: f64) -> (FlexTensor, Vec<f32>) {
    let shape = dims2(x);
    let (x, gain) = (elements(x), elements(gain));
    let n = gain.len();
    let mut y = vec![0.0f32; x.len()];
    let mut r = vec![0.0f32; x.len() / n.max(1)];
    if n > 0 {
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .zip(r.par_iter_mut())
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|((y, x), r)| {
                *r = 1.0 / (sum_of_squares(x) / n as f32 + eps as f32).sqrt();
                for ((y, &x), &g) in y.iter_mut().zip(x).zip(gain) {
                    *y = x * *r * g;
                }
            });
    }
    (primitive::<Flex, 2>(tensor(y, shape)), r)
}

/// `g ← g / (1 + e^(−g)) ⊙ u`, eight lanes at a time ([`crate::simd::silu_mul`]), chunks
/// side by side on rayon's threads.
fn silu_mul_in_place(g: &mut [f32], u: &[f32]) {
    g.par_chunks_mut(CHUNK)
        .zip(u.par_chunks(CHUNK))
        .for_each(|(g, u)| crate::simd::silu_mul(g, u));
}

/// RoPE on `x` `[B, T, heads, hd]` (a projection's output, heads split off), returned with the
/// heads first, `[B, heads, T, hd]`: `y = x ⊙ cos + [x₂, x₁] ⊙ signed_sin` for the tables
/// `cos`, `signed_sin` `[T, hd]` of [`super::rope`] ([`takes`] `x` and the tables, which
/// are constants).
pub fn rope(x: Tensor<4>, cos: Tensor<2>, signed_sin: Tensor<2>) -> Tensor<4> {
    let [_, t, _, hd] = x.dims();
    assert_eq!(cos.dims(), [t, hd], "a cos row per position");
    assert_eq!(signed_sin.dims(), [t, hd], "a sin row per position");
    let y = <Dispatch as FusedBackend>::rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        signed_sin.into_dispatch(),
    );
    count_call();
    Tensor::<4>::from_dispatch(y)
}

/// RoPE's forward pass on contiguous storage: `y` `[B, h, T, hd]` on `cpu`, and `x`'s shape
/// `[B, T, h, hd]`.
fn rope_forward(x: &FlexTensor, cos: &FlexTensor, sin: &FlexTensor) -> (Tensor<4>, [usize; 4]) {
    let dims = dims4(x);
    let [b, t, h, hd] = dims;
    let y = rotate(
        elements(x),
        elements(cos),
        elements(sin),
        dims,
        Direction::Forward,
    );
    (tensor(y, [b, h, t, hd]), dims)
}

/// Which way [`rotate`] runs.
#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// `x` `[B, T, h, hd]` into `y` `[B, h, T, hd]`: `y_i = x_i cos_i + x_i' sin_i`.
    Forward,
    /// Its transpose, `∂y` `[B, h, T, hd]` back into `∂x` `[B, T, h, hd]`:
    /// `∂x_i = ∂y_i cos_i + ∂y_i' sin_i'` (the partner map `i' = i ± hd/2` is its own inverse).
    Backward,
}

/// RoPE's rotation of `source`, `[B, T, h, hd]` as `dims` (see [`Direction`]), output rows side
/// by side on rayon's threads.
fn rotate(source: &[f32], cos: &[f32], sin: &[f32], dims: [usize; 4], way: Direction) -> Vec<f32> {
    let [_, t, h, hd] = dims;
    let half = hd / 2;
    let mut out = vec![0.0f32; source.len()];
    if hd == 0 {
        return out;
    }
    (out.par_chunks_mut(hd).enumerate())
        .with_min_len(4 * MIN_ROWS_PER_TASK)
        .for_each(|(r, out)| {
            // Output row `r` and the source row it reads, as (batch, head, position).
            let (batch, head, p) = match way {
                Direction::Forward => (r / (h * t), (r / t) % h, r % t),
                Direction::Backward => (r / (t * h), r % h, (r / h) % t),
            };
            let start = match way {
                Direction::Forward => ((batch * t + p) * h + head) * hd,
                Direction::Backward => ((batch * h + head) * t + p) * hd,
            };
            let source = &source[start..][..hd];
            let (cos, sin) = (&cos[p * hd..][..hd], &sin[p * hd..][..hd]);
            for i in 0..hd {
                let partner = if i < half { i + half } else { i - half };
                let s = match way {
                    Direction::Forward => sin[i],
                    Direction::Backward => sin[partner],
                };
                out[i] = source[i] * cos[i] + source[partner] * s;
            }
        });
    out
}

/// `Σ x²` over a row, eight lanes at a time.
fn sum_of_squares(x: &[f32]) -> f32 {
    let (chunks, tail) = x.as_chunks::<8>();
    let mut sums = f32x8::ZERO;
    for chunk in chunks {
        let x = f32x8::from(*chunk);
        sums += x * x;
    }
    sums.reduce_add() + tail.iter().map(|x| x * x).sum::<f32>()
}

/// `x`'s flex storage, contiguous (a copy only where `x` is a strided view).
fn contiguous<const D: usize>(x: Tensor<D>) -> FlexTensor {
    primitive::<Flex, D>(x).to_contiguous()
}

/// A primitive of `B` (an extension's input, or a gradient) as contiguous flex storage.
fn flex<B: Backend, const D: usize>(x: FloatTensor<B>) -> FlexTensor
where
    DispatchTensor: DispatchKindConversion<B>,
{
    contiguous(Tensor::<D>::from_primitive::<B>(x))
}

/// A tensor on `cpu` holding `values` in `shape`.
fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}
