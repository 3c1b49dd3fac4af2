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

/// The largest entry of `row` (−∞ for an empty row).
fn row_max(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::row_max(row) };
    }
    portable::row_max(row)
}

/// `x ← factor · x` for every entry of `row`.
pub(crate) fn scale_in_place(row: &mut [f32], factor: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::scale_in_place(row, factor) };
    }
    portable::scale_in_place(row, factor)
}

/// `x ← exp(x − shift)` for every entry of `row`; returns the sum of the new entries.
pub(crate) fn exp_minus(row: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::exp_minus(row, shift) };
    }
    portable::exp_minus(row, shift)
}

/// The row kernels in `wide`'s eight lanes, for any target: SSE2 on the x86-64 baseline the
/// crate is built for (each 8-lane operation two 4-lane instructions), NEON on ARM.
mod portable {
    use super::exp;
    use wide::f32x8;

    /// Eight lanes of a chunk.
    fn lanes(chunk: &[f32; 8]) -> f32x8 {
        f32x8::from(*chunk)
    }

    /// See [`super::row_max`].
    pub fn row_max(row: &[f32]) -> f32 {
        let (chunks, tail) = row.as_chunks::<8>();
        let mut maxima = f32x8::splat(f32::NEG_INFINITY);
        for chunk in chunks {
            maxima = maxima.fast_max(lanes(chunk));
        }
        (maxima.to_array().into_iter().chain(tail.iter().copied()))
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// See [`super::scale_in_place`].
    pub fn scale_in_place(row: &mut [f32], factor: f32) {
        let factor8 = f32x8::splat(factor);
        let (chunks, tail) = row.as_chunks_mut::<8>();
        for chunk in chunks {
            *chunk = (lanes(chunk) * factor8).to_array();
        }
        tail.iter_mut().for_each(|x| *x *= factor);
    }

    /// See [`super::exp_minus`].
    pub fn exp_minus(row: &mut [f32], shift: f32) -> f32 {
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
}

/// ln 2 split in two so `n · LN2_HI` is exact for |n| < 2⁹.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' polynomial for `e^r` on `[−ln 2 / 2, ln 2 / 2]`: `e^r ≈ 1 + r + r² · p(r)`, `p`'s
/// coefficients from the highest power down.
const EXP_POLYNOMIAL: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// The inputs whose exponentials are normal f32 numbers.
const EXP_DOMAIN: (f32, f32) = (-87.336_55, 88.722_83);

/// `e^x` lane by lane in f32, within 2 ulp of the standard library's (which is a call per
/// element): `e^x = 2^n · e^r` with `n = round(x / ln 2)`, `r = x − n ln 2 ∈ [−ln 2 / 2,
/// ln 2 / 2]`, and `e^r` by Cephes' degree-6 polynomial. Inputs are clamped to [`EXP_DOMAIN`].
#[inline(always)]
pub(crate) fn exp(x: f32x8) -> f32x8 {
    let c = f32x8::splat;
    // Adding and subtracting 1.5 · 2²³ rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.fast_max(c(EXP_DOMAIN.0)).fast_min(c(EXP_DOMAIN.1));
    let n = (x * c(std::f32::consts::LOG2_E) + c(ROUND)) - c(ROUND);
    let r = x - n * c(LN2_HI) - n * c(LN2_LO);
    let mut p = c(EXP_POLYNOMIAL[0]);
    for coefficient in &EXP_POLYNOMIAL[1..] {
        p = p * r + c(*coefficient);
    }
    let e_r = p * r * r + r + c(1.0);
    // 2^n from its bits: the float 2²³ + (n + 127) holds n + 127 in its low mantissa bits,
    // shifted up into the exponent field.
    let biased: i32x8 = bytemuck::cast(n + c(127.0 + 8_388_608.0));
    e_r * bytemuck::cast::<i32x8, f32x8>(biased << 23)
}

/// The row kernels with AVX2 and fused multiply-adds, chosen at run time when the CPU has
/// them. The crate is built for the x86-64 baseline (SSE2), where `wide`'s eight lanes are two
/// 4-lane halves and every `a · b + c` is two roundings; here each is one 8-lane instruction.
/// Same algorithm as [`exp`], so the same error bound.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{EXP_DOMAIN, EXP_POLYNOMIAL, LN2_HI, LN2_LO};
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    /// Whether this CPU runs AVX2 and FMA instructions (asked once).
    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE
            .get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// Eight lanes of a chunk.
    #[target_feature(enable = "avx2,fma")]
    fn load(chunk: &[f32; 8]) -> __m256 {
        // SAFETY: `chunk` is eight readable f32s; the load is unaligned.
        unsafe { _mm256_loadu_ps(chunk.as_ptr()) }
    }

    /// Writes eight lanes into a chunk.
    #[target_feature(enable = "avx2,fma")]
    fn store(chunk: &mut [f32; 8], x: __m256) {
        // SAFETY: `chunk` is eight writable f32s; the store is unaligned.
        unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), x) }
    }

    /// The sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn sum_lanes(x: __m256) -> f32 {
        let mut lanes = [0.0f32; 8];
        store(&mut lanes, x);
        lanes.iter().sum()
    }

    /// `e^x` lane by lane: [`super::exp`] with one-rounding multiply-adds.
    #[target_feature(enable = "avx2,fma")]
    fn exp(x: __m256) -> __m256 {
        let c = _mm256_set1_ps;
        let x = _mm256_min_ps(_mm256_max_ps(x, c(EXP_DOMAIN.0)), c(EXP_DOMAIN.1));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, c(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, c(LN2_LO), _mm256_fnmadd_ps(n, c(LN2_HI), x));
        let mut p = c(EXP_POLYNOMIAL[0]);
        for coefficient in &EXP_POLYNOMIAL[1..] {
            p = _mm256_fmadd_ps(p, r, c(*coefficient));
        }
        let e_r = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, c(1.0)));
        // 2^n: n + 127 shifted into the exponent field.
        let biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
        _mm256_mul_ps(e_r, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(biased)))
    }

    /// See [`super::row_max`].
    #[target_feature(enable = "avx2,fma")]
    pub fn row_max(row: &[f32]) -> f32 {
        let (chunks, tail) = row.as_chunks::<8>();
        let mut maxima = _mm256_set1_ps(f32::NEG_INFINITY);
        for chunk in chunks {
            maxima = _mm256_max_ps(maxima, load(chunk));
        }
        let mut lanes = [0.0f32; 8];
        store(&mut lanes, maxima);
        (lanes.into_iter().chain(tail.iter().copied())).fold(f32::NEG_INFINITY, f32::max)
    }

    /// See [`super::scale_in_place`].
    #[target_feature(enable = "avx2,fma")]
    pub fn scale_in_place(row: &mut [f32], factor: f32) {
        let factor8 = _mm256_set1_ps(factor);
        let (chunks, tail) = row.as_chunks_mut::<8>();
        for chunk in chunks {
            store(chunk, _mm256_mul_ps(load(chunk), factor8));
        }
        tail.iter_mut().for_each(|x| *x *= factor);
    }

    /// See [`super::exp_minus`].
    #[target_feature(enable = "avx2,fma")]
    pub fn exp_minus(row: &mut [f32], shift: f32) -> f32 {
        let shift8 = _mm256_set1_ps(shift);
        let (chunks, tail) = row.as_chunks_mut::<8>();
        let mut sums = _mm256_setzero_ps();
        for chunk in chunks {
            let e = exp(_mm256_sub_ps(load(chunk), shift8));
            sums = _mm256_add_ps(sums, e);
            store(chunk, e);
        }
        // The last `len mod 8` entries, padded with `shift` (whose exponential is dropped).
        let mut padded = [shift; 8];
        padded[..tail.len()].copy_from_slice(tail);
        let e = exp(_mm256_sub_ps(load(&padded), shift8));
        store(&mut padded, e);
        tail.copy_from_slice(&padded[..tail.len()]);
        sum_lanes(sums) + tail.iter().sum::<f32>()
    }
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

    /// Each implementation of the row kernels this CPU runs: `wide`'s lanes always, AVX2 with
    /// FMA where the CPU has them.
    type RowKernels = (
        fn(&[f32]) -> f32,
        fn(&mut [f32], f32),
        fn(&mut [f32], f32) -> f32,
    );

    fn implementations() -> Vec<(&'static str, RowKernels)> {
        let mut all: Vec<(&str, RowKernels)> = vec![(
            "portable",
            (
                portable::row_max,
                portable::scale_in_place,
                portable::exp_minus,
            ),
        )];
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            // SAFETY (of the calls through these pointers): the CPU has AVX2 and FMA.
            all.push((
                "avx2",
                (
                    |row| unsafe { avx2::row_max(row) },
                    |row, factor| unsafe { avx2::scale_in_place(row, factor) },
                    |row, shift| unsafe { avx2::exp_minus(row, shift) },
                ),
            ));
        }
        all
    }

    #[test]
    fn row_kernels_match_the_standard_library() {
        for (name, (row_max, scale_in_place, exp_minus)) in implementations() {
            for len in [1, 7, 8, 9, 33, 1000] {
                let row: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 40.0).collect();
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(row_max(&row), max, "{name}, len {len}");

                let mut scaled = row.clone();
                scale_in_place(&mut scaled, -0.5);
                assert!(
                    scaled.iter().zip(&row).all(|(s, x)| *s == -0.5 * x),
                    "{name}"
                );

                let mut e = row.clone();
                let sum = exp_minus(&mut e, max);
                let mut expected_sum = 0.0f64;
                for (ours, x) in e.iter().zip(&row) {
                    let exact = ((x - max) as f64).exp();
                    expected_sum += exact;
                    let error = ((*ours as f64 - exact) / exact.max(1e-30)).abs();
                    assert!(error < 3.0e-7, "{name}, len {len}: e^{} = {ours}", x - max);
                }
                assert!(
                    ((sum as f64 - expected_sum) / expected_sum).abs() < 1.0e-5,
                    "{name}"
                );
            }
            // Far below the domain: 0 (not NaN or a negative), and the row's maximum gives 1.
            let mut row = vec![
                -1.0e4,
                f32::NEG_INFINITY,
                -200.0,
                -95.0,
                5.0,
                0.0,
                1.0,
                2.0,
                3.0,
            ];
            let sum = exp_minus(&mut row, 5.0);
            assert!(
                row[..4].iter().all(|e| (0.0..1.0e-37).contains(e)),
                "{name}: {row:?}"
            );
            assert_eq!(row[4], 1.0, "{name}");
            let expected: f32 = 1.0
                + [-5.0f32, -4.0, -3.0, -2.0]
                    .map(f32::exp)
                    .iter()
                    .sum::<f32>();
            assert!((sum - expected).abs() < 1e-6, "{name}: {sum} vs {expected}");
        }
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
