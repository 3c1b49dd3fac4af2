//! Row-wise softmax and log-sum-exp on the CPU, eight lanes at a time ([`crate::simd`]: AVX2
//! with FMA where the CPU has them, `wide`'s portable lanes elsewhere), for the CPU attention
//! ([`super::attention`]) and the stage-1 projection's rows of vocabulary logits
//! ([`crate::loss`]).
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
use crate::simd::{exp_minus, row_max, scale_in_place};
use burn::backend::Flex;
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

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

/// `x ← softmax(x)` for one non-empty row, `exp(x − max) / Σ exp(x − max)`; returns the row's
/// log-sum-exp `max + log Σ exp(x − max)`.
pub(crate) fn softmax_in_place(row: &mut [f32]) -> f32 {
    let (lse, sum) = log_sum_exp_in_place(row);
    scale_in_place(row, 1.0 / sum);
    lse
}

/// `x ← exp(x − max)` for one non-empty row; returns its log-sum-exp `max + log Σ exp(x − max)`
/// and the sum `Σ exp(x − max)`.
pub(crate) fn log_sum_exp_in_place(row: &mut [f32]) -> (f32, f32) {
    let max = row_max(row);
    let sum = exp_minus(row, max);
    (max + sum.ln(), sum)
}

#[cfg(test)]
mod tests {
    use super::*;

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
