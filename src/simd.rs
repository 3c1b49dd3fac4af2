//! Vector math on the CPU, eight f32 lanes at a time: `e^x`, and the row and element-wise
//! passes built on it (a row's maximum, scaling, `exp(x − shift)` with its sum, SiLU·up) for
//! the CPU attention's and the stage-1 projection's softmax ([`crate::matmul::softmax`]) and
//! the fused SwiGLU ([`crate::model::fused`]).
//!
//! The crate is built for the x86-64 baseline (SSE2), where `wide`'s eight lanes are two
//! 4-lane halves and every `a · b + c` is two roundings. Each pass therefore has two
//! implementations, chosen at run time: AVX2 with fused multiply-adds ([`avx2`], where the CPU
//! has them: most x86-64 CPUs since Intel's Haswell and AMD's Excavator, 2013–2015), and
//! `wide`'s portable lanes ([`portable`]: SSE2, or NEON on ARM) everywhere else. Both compute
//!
//! ```text
//! e^x = 2^n · e^r,   n = round(x / ln 2),   r = x − n·ln 2 ∈ [−ln 2 / 2, ln 2 / 2],
//! e^r ≈ 1 + r + r²·p(r)                     (Cephes' degree-6 polynomial)
//! ```
//!
//! within 2 ulp of the standard library's `exp` (a call per element), for inputs clamped to
//! [`EXP_DOMAIN`], the range of normal f32 results.

use wide::{f32x8, i32x8};

/// ln 2 split in two, so that `n · LN2_HI` is exact for |n| < 2⁹.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// `p(r)`'s coefficients, from the highest power down.
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

/// The largest entry of `row` (−∞ for an empty row).
pub(crate) fn row_max(row: &[f32]) -> f32 {
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

/// `g ← SiLU(g) ⊙ u = g / (1 + e^(−g)) ⊙ u` for `g` and `u` of one length.
pub(crate) fn silu_mul(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "SiLU·up: gate and up of one length");
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx2::silu_mul(g, u) };
    }
    portable::silu_mul(g, u)
}

/// `e^x` lane by lane in `wide`'s portable lanes (see the module docs).
#[inline(always)]
fn exp(x: f32x8) -> f32x8 {
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

/// The last `len mod 8` entries of a row through an 8-lane `f`, padded with `pad`; returns
/// the sum of the new entries.
fn tail_lanes(tail: &mut [f32], pad: f32, f: impl FnOnce(&mut [f32; 8])) -> f32 {
    let mut padded = [pad; 8];
    padded[..tail.len()].copy_from_slice(tail);
    f(&mut padded);
    tail.copy_from_slice(&padded[..tail.len()]);
    tail.iter().sum()
}

/// The passes in `wide`'s eight lanes, for any target.
mod portable {
    use super::{exp, tail_lanes};
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
        let e_minus = |chunk: &mut [f32; 8]| {
            let e = exp(lanes(chunk) - shift8);
            *chunk = e.to_array();
            e
        };
        let (chunks, tail) = row.as_chunks_mut::<8>();
        let mut sums = f32x8::ZERO;
        for chunk in chunks {
            sums += e_minus(chunk);
        }
        // Padded with `shift`, whose exponential is dropped.
        sums.reduce_add() + tail_lanes(tail, shift, |chunk| _ = e_minus(chunk))
    }

    /// See [`super::silu_mul`].
    pub fn silu_mul(g: &mut [f32], u: &[f32]) {
        let one = f32x8::splat(1.0);
        let (g8, g_tail) = g.as_chunks_mut::<8>();
        let (u8, u_tail) = u.as_chunks::<8>();
        for (g, u) in g8.iter_mut().zip(u8) {
            let x = lanes(g);
            *g = (x / (one + exp(-x)) * lanes(u)).to_array();
        }
        for (g, &u) in g_tail.iter_mut().zip(u_tail) {
            *g = *g / (1.0 + (-*g).exp()) * u;
        }
    }
}

/// The passes with AVX2 and fused multiply-adds: each 8-lane operation one instruction.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{EXP_DOMAIN, EXP_POLYNOMIAL, LN2_HI, LN2_LO, tail_lanes};
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

    /// The eight lanes as an array.
    #[target_feature(enable = "avx2,fma")]
    fn array(x: __m256) -> [f32; 8] {
        let mut lanes = [0.0f32; 8];
        store(&mut lanes, x);
        lanes
    }

    /// `e^x` lane by lane (see the module docs).
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
        (array(maxima).into_iter().chain(tail.iter().copied())).fold(f32::NEG_INFINITY, f32::max)
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
        let e_minus = |chunk: &mut [f32; 8]| {
            let e = exp(_mm256_sub_ps(load(chunk), shift8));
            store(chunk, e);
            e
        };
        let (chunks, tail) = row.as_chunks_mut::<8>();
        let mut sums = _mm256_setzero_ps();
        for chunk in chunks {
            sums = _mm256_add_ps(sums, e_minus(chunk));
        }
        // Padded with `shift`, whose exponential is dropped.
        array(sums).iter().sum::<f32>() + tail_lanes(tail, shift, |chunk| _ = e_minus(chunk))
    }

    /// See [`super::silu_mul`].
    #[target_feature(enable = "avx2,fma")]
    pub fn silu_mul(g: &mut [f32], u: &[f32]) {
        let one = _mm256_set1_ps(1.0);
        let (g8, g_tail) = g.as_chunks_mut::<8>();
        let (u8, u_tail) = u.as_chunks::<8>();
        for (g, u) in g8.iter_mut().zip(u8) {
            let x = load(g);
            let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
            store(
                g,
                _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), load(u)),
            );
        }
        for (g, &u) in g_tail.iter_mut().zip(u_tail) {
            *g = *g / (1.0 + (-*g).exp()) * u;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The passes, one implementation.
    struct Passes {
        name: &'static str,
        row_max: fn(&[f32]) -> f32,
        scale_in_place: fn(&mut [f32], f32),
        exp_minus: fn(&mut [f32], f32) -> f32,
        silu_mul: fn(&mut [f32], &[f32]),
    }

    /// Every implementation this CPU runs: `wide`'s lanes always, AVX2 with FMA where the CPU
    /// has them (so a test run on such a CPU checks both).
    fn implementations() -> Vec<Passes> {
        let mut all = vec![Passes {
            name: "portable",
            row_max: portable::row_max,
            scale_in_place: portable::scale_in_place,
            exp_minus: portable::exp_minus,
            silu_mul: portable::silu_mul,
        }];
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            // SAFETY (of every call through these): the CPU has AVX2 and FMA.
            all.push(Passes {
                name: "avx2",
                row_max: |row| unsafe { avx2::row_max(row) },
                scale_in_place: |row, factor| unsafe { avx2::scale_in_place(row, factor) },
                exp_minus: |row, shift| unsafe { avx2::exp_minus(row, shift) },
                silu_mul: |g, u| unsafe { avx2::silu_mul(g, u) },
            });
        }
        all
    }

    /// Relative error of `ours` against the f64 value `exact`.
    fn relative(ours: f32, exact: f64) -> f64 {
        ((ours as f64 - exact) / exact.abs().max(1e-30)).abs()
    }

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
    fn row_passes_match_the_standard_library() {
        for passes in implementations() {
            let name = passes.name;
            for len in [1, 7, 8, 9, 33, 1000] {
                let row: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 40.0).collect();
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                assert_eq!((passes.row_max)(&row), max, "{name}, len {len}");

                let mut scaled = row.clone();
                (passes.scale_in_place)(&mut scaled, -0.5);
                assert!(
                    scaled.iter().zip(&row).all(|(s, x)| *s == -0.5 * x),
                    "{name}"
                );

                let mut e = row.clone();
                let sum = (passes.exp_minus)(&mut e, max);
                let mut exact_sum = 0.0f64;
                for (ours, x) in e.iter().zip(&row) {
                    let exact = ((x - max) as f64).exp();
                    exact_sum += exact;
                    assert!(
                        relative(*ours, exact) < 3.0e-7,
                        "{name}: e^{} = {ours}",
                        x - max
                    );
                }
                assert!(relative(sum, exact_sum) < 1.0e-5, "{name}: sum {sum}");
            }
            // Far below the domain: 0 (not NaN or a negative); the shift itself gives 1.
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
            let sum = (passes.exp_minus)(&mut row, 5.0);
            assert!(
                row[..4].iter().all(|e| (0.0..1.0e-37).contains(e)),
                "{name}: {row:?}"
            );
            assert_eq!(row[4], 1.0, "{name}");
            let expected = 1.0
                + [-5.0f32, -4.0, -3.0, -2.0]
                    .map(f32::exp)
                    .iter()
                    .sum::<f32>();
            assert!((sum - expected).abs() < 1e-6, "{name}: {sum} vs {expected}");
        }
    }

    #[test]
    fn silu_mul_matches_the_standard_library() {
        for passes in implementations() {
            for len in [1, 7, 8, 9, 1000] {
                let g: Vec<f32> = (0..len).map(|i| (i as f32 * 0.61).sin() * 12.0).collect();
                let u: Vec<f32> = (0..len).map(|i| (i as f32 * 0.23).cos() * 3.0).collect();
                let mut ours = g.clone();
                (passes.silu_mul)(&mut ours, &u);
                for ((ours, g), u) in ours.iter().zip(&g).zip(&u) {
                    let (g, u) = (*g as f64, *u as f64);
                    let exact = g / (1.0 + (-g).exp()) * u;
                    assert!(
                        (*ours as f64 - exact).abs() < 1e-6 * (1.0 + exact.abs()),
                        "{}: silu({g})·{u} = {ours}, not {exact}",
                        passes.name
                    );
                }
            }
        }
    }
}
