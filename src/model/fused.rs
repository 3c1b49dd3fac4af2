//! The decoder's element-wise blocks as single passes on the CPU, for the inference path
//! (judging, evaluation, serving, and the frozen layers of `--train-layers` training).
//!
//! burn's CPU backend (flex) runs RMSNorm as six element-wise passes (`x²`, mean, `+ eps`, `√`,
//! `÷`, `× g`), SiLU and the product with the up projection as four more, and RoPE as strided
//! halves concatenated, two products and a sum, followed by a copy to make the heads contiguous.
//! Each of those passes runs on one core and writes a fresh tensor. Here each block is one pass
//! over its rows, rows side by side on rayon's threads:
//!
//! ```text
//! rms_norm   y = x · (Σ x² / n + eps)^(−1/2) ⊙ g          per row of n (the last dimension)
//! silu_mul   g ← g · σ(g) ⊙ u = g / (1 + e^(−g)) ⊙ u       in place of the gate g
//! rope       [B, T, h, hd] → [B, h, T, hd]:  y = x ⊙ cos + [x₂, x₁] ⊙ [−sin, sin]
//! ```
//!
//! (RoPE's table layout is [`super::rope`]'s.) They take f32 tensors on `cpu` without autodiff
//! ([`takes`]); the layers use burn's operations everywhere else (the trainable layers under
//! autodiff, wgpu, 16-bit float types), and the two agree to f32 rounding (`tests/fused.rs`).

use crate::extension::primitive;
use crate::matmul::on_flex;
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;
use std::cell::Cell;
use wide::f32x8;

/// Rows handed to one rayon task at least: a row of a few hundred values is too little work
/// to be worth a task of its own.
const MIN_ROWS_PER_TASK: usize = 16;

/// Whether the fused blocks take `x`: f32, on `cpu`, without autodiff.
pub fn takes<const D: usize>(x: &Tensor<D>) -> bool {
    x.dtype() == DType::F32 && on_flex(&x.device()) && !x.is_autodiff()
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
/// `gain` of `n` values ([`takes`] both).
pub fn rms_norm<const D: usize>(x: Tensor<D>, gain: Tensor<1>, eps: f64) -> Tensor<D> {
    let shape = x.dims();
    let n = shape[D - 1];
    assert_eq!(gain.dims(), [n], "one gain per element of a row");
    let (x, gain) = (contiguous(x), contiguous(gain));
    let (x, gain) = (values(&x), values(&gain));
    let mut y = vec![0.0f32; x.len()];
    if n > 0 {
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .with_min_len(MIN_ROWS_PER_TASK)
            .for_each(|(y, x)| {
                let scale = 1.0 / (sum_of_squares(x) / n as f32 + eps as f32).sqrt();
                for ((y, &x), &g) in y.iter_mut().zip(x).zip(gain) {
                    *y = x * scale * g;
                }
            });
    }
    count_call();
    tensor(y, shape)
}

/// `silu(gate) ⊙ up = gate / (1 + e^(−gate)) ⊙ up`, computed in place of `gate` (both of one
/// shape; [`takes`] both).
pub fn silu_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    assert_eq!(
        gate.dims(),
        up.dims(),
        "the gate and up projections' shapes"
    );
    let shape = gate.dims();
    let mut gate = contiguous(gate);
    let up = contiguous(up);
    let up = values(&up);
    let start = gate.layout().start_offset();
    let g = &mut gate.storage_mut::<f32>()[start..][..up.len()];
    const CHUNK: usize = 1024;
    g.par_chunks_mut(CHUNK)
        .zip(up.par_chunks(CHUNK))
        .for_each(|(g, u)| {
            let (g8, g_tail) = g.as_chunks_mut::<8>();
            let (u8, u_tail) = u.as_chunks::<8>();
            let one = f32x8::splat(1.0);
            for (g, u) in g8.iter_mut().zip(u8) {
                let x = f32x8::from(*g);
                let e = crate::matmul::softmax::exp(-x);
                *g = (x / (one + e) * f32x8::from(*u)).to_array();
            }
            for (g, &u) in g_tail.iter_mut().zip(u_tail) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
        });
    count_call();
    let gate = Tensor::<D>::from_primitive::<Flex>(gate);
    gate.reshape(shape)
}

/// RoPE on `x` `[B, T, heads, hd]` (a projection's output, heads split off), returned with the
/// heads first, `[B, heads, T, hd]`: `y = x ⊙ cos + [x₂, x₁] ⊙ signed_sin` for the tables
/// `cos`, `signed_sin` `[T, hd]` of [`super::rope`] ([`takes`] all three).
pub fn rope(x: Tensor<4>, cos: Tensor<2>, signed_sin: Tensor<2>) -> Tensor<4> {
    let [b, t, h, hd] = x.dims();
    assert_eq!(cos.dims(), [t, hd], "a cos row per position");
    assert_eq!(signed_sin.dims(), [t, hd], "a sin row per position");
    let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(signed_sin));
    let (x, cos, sin) = (values(&x), values(&cos), values(&sin));
    let half = hd / 2;
    let mut y = vec![0.0f32; x.len()];
    if hd > 0 {
        // Output row `r` is (batch, head, position) = (r / (h·T), (r / T) mod h, r mod T).
        y.par_chunks_mut(hd)
            .enumerate()
            .with_min_len(4 * MIN_ROWS_PER_TASK)
            .for_each(|(r, y)| {
                let (batch, head, p) = (r / (h * t), (r / t) % h, r % t);
                let x = &x[((batch * t + p) * h + head) * hd..][..hd];
                let (cos, sin) = (&cos[p * hd..][..hd], &sin[p * hd..][..hd]);
                for i in 0..hd {
                    let partner = if i < half { x[i + half] } else { x[i - half] };
                    y[i] = x[i] * cos[i] + partner * sin[i];
                }
            });
    }
    count_call();
    tensor(y, [b, h, t, hd])
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

/// A contiguous flex tensor's elements.
fn values(x: &FlexTensor) -> &[f32] {
    let count = x.layout().num_elements();
    &x.storage::<f32>()[x.layout().start_offset()..][..count]
}

/// A tensor on `cpu` holding `values` in `shape`.
fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}
