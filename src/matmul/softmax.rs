//! Row-wise softmax and log-sum-exp on the CPU, eight lanes at a time (`wide`'s portable SIMD:
//! SSE, AVX or NEON as the target has them), for the CPU attention ([`super::attention`]) and
//! the stage-1 projection's rows of vocabulary logits ([`crate::loss`]).
//!
//! ```text
//! lse(z)     = max z + log Σ_v exp(z_v − max z)
//! softmax(z) = exp(z − lse(z))
//! ```
//!
//! flex's element-wise operations take the exponential through the C library's scalar `expf`
//! (its underflow path, too, for masked entries), and a row's log-sum-exp and softmax there are
//! several passes over `[rows, vocab]` temporaries; here one pass forms each row's exponentials
//! in place, and rows run side by side on rayon's threads.

use crate::extension::primitive;
use burn::backend::Flex;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;
use wide::{f32x8, i32x8};

/// Whether the row kernels take `z`: f32 on `cpu`, without autodiff.
pub(crate) fn takes(z: &Tensor<2>) -> bool {
    z.dtype() == DType::F32 && super::on_flex(&z.device()) && !z.device().is_autodiff()
}

/// Each row's softmax (in place of `z`) and log-sum-exp: `([rows, n], [rows])`.
pub(crate) fn softmax_rows(z: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
    let (z, lse) = map_rows(z, |_, row| softmax_in_place(row));
    (z, vector(lse))
}

/// Each row's log-sum-exp, `[rows]` (`z` is consumed: its rows hold exponentials after).
pub(crate) fn log_sum_exp_rows(z: Tensor<2>) -> Tensor<1> {
    vector(map_rows(z, |_, row| log_sum_exp_in_place(row).0).1)
}

/// `factor_t · exp(z[t, v] − lse_t)` in place of `z`.
pub(crate) fn softmax_scaled_rows(z: Tensor<2>, lse: Tensor<1>, factor: Tensor<1>) -> Tensor<2> {
    let read = |x: Tensor<1>| x.into_data().try_to_vec::<f32>().expect("f32 rows");
    let (lse, factor) = (read(lse), read(factor));
    map_rows(z, |t, row| {
        exp_minus(row, lse[t]);
        scale_in_place(row, factor[t]);
        0.0
    })
    .0
}

/// Runs `f(t, row)` on every row of `z` in place, rows side by side on rayon's threads;
/// returns `z` and what `f` returned per row.
fn map_rows(z: Tensor<2>, f: impl Fn(usize, &mut [f32]) -> f32 + Sync) -> (Tensor<2>, Vec<f32>) {
    let [rows, n] = z.dims();
    let mut z = primitive::<Flex, 2>(z).to_contiguous();
    let start = z.layout().start_offset();
    let values = &mut z.storage_mut::<f32>()[start..][..rows * n];
    let mut results = vec![0.0f32; rows];
    if n > 0 {
        values
            .par_chunks_mut(n)
            .zip(results.par_iter_mut())
            .enumerate()
            .for_each(|(t, (row, result))| *result = f(t, row));
    }
    (Tensor::from_primitive::<Flex>(z), results)
}

/// A `[len]` tensor on `cpu`.
fn vector(values: Vec<f32>) -> Tensor<1> {
    let len = values.len();
    Tensor::from_data(TensorData::new(values, [len]), &Device::flex())
}

/// Eight lanes of a chunk.
fn lanes(chunk: &[f32; 8]) -> f32x8 {
    f32x8::from(*chunk)
}

/// `x ← softmax(x)` for one non-empty row, `exp(x − max) / Σ exp(x − max)`; returns the row's
/// log-sum-exp `max + log Σ exp(x − max)`. Eight lanes at a time (`wide`'s portable SIMD: SSE,
/// AVX or NEON as the target has them).
pub(crate) fn softmax_in_place(row: &mut [f32]) -> f32 {
    let (lse, sum) = log_sum_exp_in_place(row);
    scale_in_place(row, 1.0 / sum);
    lse
}

/// `x ← exp(x − max)` for one non-empty row; returns its log-sum-exp `max + log Σ exp(x − max)`
/// and the sum `Σ exp(x − max)`.
fn log_sum_exp_in_place(row: &mut [f32]) -> (f32, f32) {
    let (chunks, tail) = row.as_chunks::<8>();
    let mut maxima = f32x8::splat(f32::NEG_INFINITY);
    for chunk in chunks {
        maxima = maxima.fast_max(lanes(chunk));
    }
    let max = (maxima.to_array().into_iter().chain(tail.iter().copied()))
        .fold(f32::NEG_INFINITY, f32::max);
    let sum = exp_minus(row, max);
    (max + sum.ln(), sum)
}

/// `x ← factor · x` for every entry of `row`.
fn scale_in_place(row: &mut [f32], factor: f32) {
    let factor8 = f32x8::splat(factor);
    let (chunks, tail) = row.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (lanes(chunk) * factor8).to_array();
    }
    tail.iter_mut().for_each(|x| *x *= factor);
}

/// `x ← exp(x − shift)` for every entry of `row`; returns the sum of the new entries.
pub(crate) fn exp_minus(row: &mut [f32], shift: f32) -> f32 {
    let shift8 = f32x8::splat(shift);
    let (chunks, tail) = row.as_chunks_mut::<8>();
    let mut sums = f32x8::ZERO;
    for chunk in chunks {
        let e = exp(lanes(chunk) - shift8);
        sums += e;
        *chunk = e.to_array();
    }
    // The last `len mod 8` entries, padded with `shift` (whose exponential is dropped).
    let mut padded = [shift; 8];
    padded[..tail.len()].copy_from_slice(tail);
    let e = exp(f32x8::from(padded) - shift8).to_array();
    tail.copy_from_slice(&e[..tail.len()]);
    sums.reduce_add() + tail.iter().sum::<f32>()
}

/// `e^x` lane by lane in f32, within 2 ulp of the standard library's (which is a call per
/// element): `e^x = 2^n · e^r` with `n = round(x / ln 2)`, `r = x − n ln 2 ∈ [−ln 2 / 2,
/// ln 2 / 2]`, and `e^r` by Cephes' degree-6 polynomial. Inputs are clamped to `[−87.3, 88.7]`,
/// the range of normal f32 results.
#[inline(always)]
pub(crate) fn exp(x: f32x8) -> f32x8 {
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
        0.5,
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
