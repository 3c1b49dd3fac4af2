//! Causal grouped-query attention on the CPU, its products on the system's BLAS.
//!
//! For query row `i` of `T` (position `P + i` after a cached prefix of `P`), keys and values
//! `0..S` with `S = P + T`, and query head `j` reading key/value head `j / G`:
//!
//! ```text
//! o_i = Σ_{s ≤ P+i} softmax_s(q_i · k_s / √d) · v_s
//! ```
//!
//! burn's fused attention op on flex computes this in key tiles of 64 with flex's gemm, forms
//! the scores of keys a row may not see as well, and takes each exponential one at a time. Here,
//! per (batch, query head) and block of [`BLOCK`] query rows `[i0, i1)`:
//!
//! ```text
//! scores = Q[i0..i1] · K[0..P+i1]ᵀ / √d            one sgemm, [rows, P + i1]: keys after the
//!                                                  block's last row are never formed
//! row r: softmax over its P + i0 + r + 1 visible   max, exp, sum, scale; the rest set to 0
//!        columns
//! O[i0..i1] = scores · V[0..P+i1]                  one sgemm
//! ```
//!
//! Heads are independent and run side by side on rayon's threads, each product on one BLAS
//! thread. On the 2-core CI machine this ran 2.0–3.4× faster than flex's op on judging's
//! shapes (`cargo run --example attention_bench`). f32 only, without autodiff (inference and
//! the frozen layers of training); [`takes`] says when.

use super::blas;
use crate::extension::primitive;
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, Tensor};
use rayon::prelude::*;
use std::cell::Cell;
use wide::{f32x8, i32x8};

/// Query rows per block: the block's scores, `BLOCK × S` f32, stay in the L2 cache for
/// sequences of a few thousand tokens.
pub const BLOCK: usize = 64;

/// Whether [`causal_attention`] takes these tensors: f32, on `cpu` without autodiff, a BLAS
/// loaded, and the shapes of grouped-query attention (`q` `[B, h, T, d]`, `k`/`v`
/// `[B, kv, S, d]` with `h` a multiple of `kv` and `S ≥ T`).
pub fn takes(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>) -> bool {
    let device = q.device();
    let ([b, h, t, d], [kb, kv, s, kd]) = (q.dims(), k.dims());
    [q.dtype(), k.dtype(), v.dtype()]
        .iter()
        .all(|&dtype| dtype == DType::F32)
        && super::on_flex(&device)
        && !device.is_autodiff()
        && blas::name().is_some()
        && v.dims() == k.dims()
        && kb == b
        && kd == d
        && kv > 0
        && h % kv == 0
        && s >= t
}

/// `softmax(q kᵀ / √d, causal from the bottom right) · v`, `[B, h, T, d]`, for `q` `[B, h, T,
/// d]` and `k`, `v` `[B, kv, S, d]` ([`takes`] said yes).
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let [q, k, v] = [q, k, v].map(|x| primitive::<Flex, 4>(x).to_contiguous());
    let out = attend(&q, &k, &v);
    CALLS.with(|calls| calls.set(calls.get() + 1));
    Tensor::from_primitive::<Flex>(out)
}

/// Attentions this thread has run through [`causal_attention`] so far (a test compares it
/// before and after, so a silent fallback to flex's op fails it).
pub fn calls_on_this_thread() -> u64 {
    CALLS.with(Cell::get)
}

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn attend(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> FlexTensor {
    let [b, h, t, d] = dims(q);
    let [_, kv, s, _] = dims(k);
    let (group, prefix) = (h / kv, s - t);
    let scale = 1.0 / (d as f32).sqrt();
    let q = &q.storage::<f32>()[q.layout().start_offset()..][..b * h * t * d];
    let k = &k.storage::<f32>()[k.layout().start_offset()..][..b * kv * s * d];
    let v = &v.storage::<f32>()[v.layout().start_offset()..][..b * kv * s * d];
    let mut out = FlexTensor::empty(Shape::from(vec![b, h, t, d]), DType::F32);
    let heads = out.storage_mut::<f32>();
    if t == 0 || d == 0 {
        return out;
    }
    // One task per (batch, query head): its rows of Q and O, its key/value head's K and V.
    let task = |scores: &mut Vec<f32>, (head, o): (usize, &mut [f32])| {
        let (batch, j) = (head / h, head % h);
        let kv_head = (batch * kv + j / group) * s * d;
        let q = &q[head * t * d..][..t * d];
        let (k, v) = (&k[kv_head..][..s * d], &v[kv_head..][..s * d]);
        for i0 in (0..t).step_by(BLOCK) {
            let rows = BLOCK.min(t - i0);
            let seen = prefix + i0 + rows; // keys the block's last row sees
            scores.resize(rows * seen, 0.0);
            blas::sgemm_slices(
                (rows, seen, d),
                scale,
                (&q[i0 * d..], d),
                (k, d, true),
                (scores, seen),
            );
            for (r, row) in scores.chunks_exact_mut(seen).enumerate() {
                let (visible, hidden) = row.split_at_mut(prefix + i0 + r + 1);
                softmax_in_place(visible);
                hidden.fill(0.0);
            }
            blas::sgemm_slices(
                (rows, d, seen),
                1.0,
                (scores, seen),
                (v, d, false),
                (&mut o[i0 * d..], d),
            );
        }
    };
    // Heads side by side, each product on one thread; where the BLAS cannot be held to one
    // thread per product, one head after another, each product on all of its threads.
    let parallel = |heads: &mut [f32]| {
        heads
            .par_chunks_mut(t * d)
            .enumerate()
            .for_each_init(Vec::new, task)
    };
    if blas::one_thread_per_product(|| parallel(heads)).is_none() {
        let mut scores = Vec::new();
        heads
            .chunks_mut(t * d)
            .enumerate()
            .for_each(|head| task(&mut scores, head));
    }
    out
}

fn dims(x: &FlexTensor) -> [usize; 4] {
    let shape = x.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// `x ← softmax(x)` for one non-empty row, `exp(x − max) / Σ exp(x − max)`, eight lanes at a
/// time (`wide`'s portable SIMD: SSE, AVX or NEON as the target has them).
fn softmax_in_place(row: &mut [f32]) {
    let lanes = |chunk: &[f32]| f32x8::from(<[f32; 8]>::try_from(chunk).expect("8 lanes"));
    let (chunks, tail) = row.as_chunks_mut::<8>();
    let mut maxima = f32x8::splat(f32::NEG_INFINITY);
    for chunk in chunks.iter() {
        maxima = maxima.fast_max(lanes(chunk));
    }
    let max = maxima
        .to_array()
        .into_iter()
        .chain(tail.iter().copied())
        .fold(f32::NEG_INFINITY, f32::max);
    let max8 = f32x8::splat(max);
    let mut sums = f32x8::ZERO;
    for chunk in chunks.iter_mut() {
        let e = exp(lanes(chunk) - max8);
        sums += e;
        *chunk = e.to_array();
    }
    // The last `len mod 8` entries, padded with `max` (whose exponential is dropped).
    let mut padded = [max; 8];
    padded[..tail.len()].copy_from_slice(tail);
    let e = exp(f32x8::from(padded) - max8).to_array();
    tail.copy_from_slice(&e[..tail.len()]);
    let sum = sums.reduce_add() + tail.iter().sum::<f32>();
    let inverse = f32x8::splat(1.0 / sum);
    for chunk in chunks.iter_mut() {
        *chunk = (f32x8::from(*chunk) * inverse).to_array();
    }
    tail.iter_mut().for_each(|x| *x /= sum);
}

/// `e^x` lane by lane in f32, within 2 ulp of the standard library's (which is a call per
/// element): `e^x = 2^n · e^r` with `n = round(x / ln 2)`, `r = x − n ln 2 ∈ [−ln 2 / 2,
/// ln 2 / 2]`, and `e^r` by Cephes' degree-6 polynomial. Inputs are clamped to `[−87.3, 88.7]`,
/// the range of normal f32 results.
#[inline(always)]
fn exp(x: f32x8) -> f32x8 {
    let c = f32x8::splat;
    // ln 2 split in two so `n · LN2_HI` is exact for |n| < 2⁹.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2²³ rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.fast_max(c(-87.336_55)).fast_min(c(88.722_83));
    let n = (x * c(std::f32::consts::LOG2_E) + c(ROUND)) - c(ROUND);
    let r = x - n * c(LN2_HI) - n * c(LN2_LO);
    let mut p = c(1.987_569_1e-4);
    for coefficient in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5.000_000_1e-1,
    ] {
        p = p * r + c(coefficient);
    }
    let e_r = p * r * r + r + c(1.0);
    // 2^n from its bits: the float 2²³ + (n + 127) holds n + 127 in its low mantissa bits,
    // shifted up into the exponent field.
    let biased: i32x8 = bytemuck::cast(n + c(127.0 + 8_388_608.0));
    e_r * bytemuck::cast::<i32x8, f32x8>(biased << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0.0f32;
        for i in (-87_000..88_000).step_by(8) {
            let x: [f32; 8] =
                std::array::from_fn(|lane| (i + lane as i32) as f32 / 1000.0 + 3.7e-4);
            for (ours, x) in exp(f32x8::from(x)).to_array().into_iter().zip(x) {
                worst = worst.max(((ours - x.exp()) / x.exp()).abs());
            }
        }
        assert!(worst < 3.0e-7, "relative error {worst}");
        let edges = exp(f32x8::from([
            0.0,
            -1.0e4,
            f32::NEG_INFINITY,
            1.0,
            -1.0,
            0.0,
            0.0,
            0.0,
        ]));
        let [one, tiny, at_minus_infinity, e, inverse_e, ..] = edges.to_array();
        assert_eq!(one, 1.0);
        assert!((0.0..1.0e-37).contains(&tiny) && (0.0..1.0e-37).contains(&at_minus_infinity));
        assert!(
            (e - std::f32::consts::E).abs() < 3.0e-7 && (inverse_e - 0.367_879_44).abs() < 1.0e-7
        );
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        for len in [1, 7, 8, 9, 33] {
            let mut row: Vec<f32> = (0..len).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
            let expected: Vec<f32> = {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                e.iter().map(|x| x / sum).collect()
            };
            softmax_in_place(&mut row);
            for (a, b) in row.iter().zip(&expected) {
                assert!((a - b).abs() < 1.0e-6, "len {len}: {a} vs {b}");
            }
        }
    }
}
