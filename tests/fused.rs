//! `gram::model::fused`, single-pass RMSNorm, SwiGLU and RoPE on the CPU: each against the same
//! math in burn's tensor operations (shapes whose rows are not a multiple of the SIMD width, one
//! row, extreme values), the gradients of RMSNorm, SiLU·up, RoPE and SiLU·up with the down
//! projection under autodiff against burn's, and a whole forward pass with and without
//! autodiff, counting the fused calls so a silent fallback fails.

mod common;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use gram::model::{Llama, fused};

/// `n` values in `[lo, hi)` from the seeded sequence of [`common::Numbers`].
fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut numbers = common::Numbers(seed);
    (0..n).map(|_| numbers.uniform(lo, hi)).collect()
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// The largest `|a − b| / (1 + |b|)`.
fn gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

#[test]
fn rms_norm_matches_burns_operations() {
    for (shape, eps) in [
        ([2, 5, 13], 1e-5),
        ([1, 1, 576], 1e-6),
        ([3, 4, 8], 1e-5),
        ([1, 7, 1], 1e-2),
    ] {
        let n = shape[2];
        let count = shape.iter().product();
        let mut x = values(count, 1, -3.0, 3.0);
        x[..n].fill(0.0); // an all-zero row: y = 0
        x[n..2 * n.min(count / 2)]
            .iter_mut()
            .for_each(|v| *v *= 1.0e4);
        let (x, gain) = (tensor(x, shape), tensor(values(n, 2, 0.5, 1.5), [n]));
        assert!(fused::takes(&x, &gain));
        let want = {
            let rms = (x.clone().powi_scalar(2).mean_dim(2) + eps).sqrt();
            x.clone().div(rms).mul(gain.clone().unsqueeze())
        };
        let got = fused::rms_norm(x, gain, eps);
        assert_eq!(got.dims(), shape);
        let (got, want) = (read(got), read(want));
        assert!(got[..n].iter().all(|&v| v == 0.0), "a zero row stays zero");
        assert!(gap(&got, &want) < 2e-6, "{shape:?}: {}", gap(&got, &want));
    }
}

#[test]
fn silu_mul_matches_burns_operations() {
    // Lengths around the SIMD width and the 1024-value chunks rows are split into.
    for len in [1, 7, 8, 9, 1023, 1024, 1025, 3001] {
        let mut g = values(len, 3, -12.0, 12.0);
        g[0] = -100.0;
        if len > 1 {
            g[len - 1] = 100.0;
        }
        let (g, u) = (
            tensor(g, [1, 1, len]),
            tensor(values(len, 4, -2.0, 2.0), [1, 1, len]),
        );
        let want = read(silu(g.clone()) * u.clone());
        let got = read(fused::silu_mul(g, u));
        assert!(
            gap(&got, &want) < 1e-6,
            "length {len}: {}",
            gap(&got, &want)
        );
    }
    // A batch of rows, as the MLP gives it.
    let (g, u) = (
        tensor(values(2 * 3 * 40, 5, -6.0, 6.0), [2, 3, 40]),
        tensor(values(2 * 3 * 40, 6, -1.0, 1.0), [2, 3, 40]),
    );
    let want = read(silu(g.clone()) * u.clone());
    let got = fused::silu_mul(g, u);
    assert_eq!(got.dims(), [2, 3, 40]);
    assert!(gap(&read(got), &want) < 1e-6);
}

#[test]
fn rope_matches_burns_operations_and_puts_heads_first() {
    for [b, t, h, hd] in [[1, 1, 1, 2], [2, 5, 3, 8], [1, 17, 4, 64], [3, 2, 2, 6]] {
        let x = tensor(values(b * t * h * hd, 7, -2.0, 2.0), [b, t, h, hd]);
        let cos = tensor(values(t * hd, 8, -1.0, 1.0), [t, hd]);
        let sin = tensor(values(t * hd, 9, -1.0, 1.0), [t, hd]);
        let want = rope_reference(x.clone(), cos.clone(), sin.clone());
        let got = fused::rope(x, cos, sin);
        assert_eq!(got.dims(), [b, h, t, hd]);
        let (got, want) = (read(got), read(want));
        assert!(
            gap(&got, &want) < 1e-6,
            "{:?}: {}",
            [b, t, h, hd],
            gap(&got, &want)
        );
    }
}

/// RoPE in burn's operations: `[B, T, h, hd]` → `[B, h, T, hd]`.
fn rope_reference(x: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>) -> Tensor<4> {
    let [b, t, h, hd] = x.dims();
    let x = x.swap_dims(1, 2);
    let half = hd / 2;
    let swapped = Tensor::cat(
        vec![
            x.clone().narrow(3, half, half),
            x.clone().narrow(3, 0, half),
        ],
        3,
    );
    let table = |t_: Tensor<2>| t_.reshape([1, 1, t, hd]).expand([b, h, t, hd]);
    x * table(cos) + swapped * table(sin)
}

#[test]
fn rope_gradient_matches_burns() {
    for [b, t, h, hd] in [[1, 1, 1, 2], [2, 5, 3, 8], [1, 33, 4, 64]] {
        let device = Device::flex().autodiff();
        let on = |values: Vec<f32>, shape: [usize; 1]| {
            Tensor::<1>::from_data(TensorData::new(values, shape), &device)
        };
        let n = b * t * h * hd;
        let run = |rope: fn(Tensor<4>, Tensor<2>, Tensor<2>) -> Tensor<4>| {
            let x = on(values(n, 14, -2.0, 2.0), [n]).require_grad();
            let cos = on(values(t * hd, 15, -1.0, 1.0), [t * hd]).reshape([t, hd]);
            let sin = on(values(t * hd, 16, -1.0, 1.0), [t * hd]).reshape([t, hd]);
            let c = on(values(n, 17, -1.0, 1.0), [n]).reshape([b, h, t, hd]);
            let y = rope(x.clone().reshape([b, t, h, hd]), cos, sin);
            let grads = (y.clone() * c).sum().backward();
            [read(y), read(x.grad(&grads).expect("x's gradient"))]
        };
        let before = fused::calls_on_this_thread();
        let [y, d_x] = run(fused::rope);
        assert_eq!(fused::calls_on_this_thread(), before + 1);
        let [want_y, want_d_x] = run(rope_reference);
        assert!(gap(&y, &want_y) < 1e-6, "{:?} y", [b, t, h, hd]);
        assert!(
            gap(&d_x, &want_d_x) < 1e-6,
            "{:?} ∂x: {}",
            [b, t, h, hd],
            gap(&d_x, &want_d_x)
        );
    }
}

#[test]
fn a_forward_pass_runs_the_fused_blocks_with_and_without_autodiff() {
    let layers = 3;
    let model = Llama::random(&common::tiny_config(200, layers), &Device::flex());
    let ids: Vec<i64> = (0..2 * 19).map(|i| (i * 37 + 5) % 200).collect();
    let ids = |device: &Device| {
        Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [2, 19]), device)
    };

    let before = fused::calls_on_this_thread();
    let fast = read(model.hidden_states(ids(&Device::flex())));
    // Per layer two norms, RoPE on queries and keys, and SiLU·up; then the final norm.
    assert_eq!(
        fused::calls_on_this_thread() - before,
        5 * layers as u64 + 1
    );

    // The same weights under autodiff (the trainable layers' path): every block fused too, the
    // attention run with its backward pass.
    let autodiff = Device::flex().autodiff();
    let reference = model.clone().map(&mut Autodiff);
    let before = fused::calls_on_this_thread();
    let want = read(reference.hidden_states(ids(&autodiff)));
    assert_eq!(
        fused::calls_on_this_thread() - before,
        5 * layers as u64 + 1
    );
    assert!(
        gap(&fast, &want) < 1e-5,
        "hidden states differ by {}",
        gap(&fast, &want)
    );
}

/// `(y, ∂/∂a, ∂/∂b)` of `Σ c ⊙ op(a, b)` under autodiff on `cpu`, for `a` `[rows, n]` and `b`
/// of `b_shape`, with values drawn from `a_range` and `b_range`.
fn with_gradients<const E: usize>(
    [rows, n]: [usize; 2],
    b_shape: [usize; E],
    (a_range, b_range): ((f32, f32), (f32, f32)),
    op: impl Fn(Tensor<2>, Tensor<E>) -> Tensor<2>,
) -> [Vec<f32>; 3] {
    let device = Device::flex().autodiff();
    let vector = |values: Vec<f32>| {
        let len = values.len();
        Tensor::<1>::from_data(TensorData::new(values, [len]), &device)
    };
    let b_count = b_shape.iter().product();
    let a = vector(values(rows * n, 11, a_range.0, a_range.1)).require_grad();
    let b = vector(values(b_count, 12, b_range.0, b_range.1)).require_grad();
    let c = vector(values(rows * n, 13, -1.0, 1.0)).reshape([rows, n]);
    let y = op(a.clone().reshape([rows, n]), b.clone().reshape(b_shape));
    let grads = (y.clone() * c).sum().backward();
    [
        read(y),
        read(a.grad(&grads).expect("a's gradient")),
        read(b.grad(&grads).expect("b's gradient")),
    ]
}

/// `got` and `want` (`y` and the two gradients, named by `what`) within `tolerance`.
fn check(case: &str, what: [&str; 3], got: [Vec<f32>; 3], want: [Vec<f32>; 3]) {
    for ((what, got), want) in what.iter().zip(&got).zip(&want) {
        assert!(gap(got, want) < 1e-5, "{case} {what}: {}", gap(got, want));
    }
}

#[test]
fn rms_norm_gradients_match_burns() {
    // Row counts below, at and above the blocks the gain's gradient is summed in.
    for shape in [[1, 1], [3, 13], [64, 64], [130, 9]] {
        let eps = 1e-5;
        let ranges = ((-3.0, 3.0), (0.5, 1.5));
        let before = fused::calls_on_this_thread();
        let got = with_gradients(shape, [shape[1]], ranges, |x, g| fused::rms_norm(x, g, eps));
        assert_eq!(fused::calls_on_this_thread(), before + 1);
        let want = with_gradients(shape, [shape[1]], ranges, |x, g| {
            let rms = (x.clone().powi_scalar(2).mean_dim(1) + eps).sqrt();
            x.div(rms).mul(g.unsqueeze())
        });
        check(&format!("{shape:?}"), ["y", "∂x", "∂g"], got, want);
    }
}

#[test]
fn silu_mul_gradients_match_burns() {
    for shape in [[1, 1], [3, 1030], [5, 9]] {
        let ranges = ((-12.0, 12.0), (-2.0, 2.0));
        let got = with_gradients(shape, shape, ranges, fused::silu_mul);
        let want = with_gradients(shape, shape, ranges, |g, u| silu(g) * u);
        check(&format!("{shape:?}"), ["y", "∂g", "∂u"], got, want);
    }
}

#[test]
fn silu_mul_down_and_its_gradients_match_burns() {
    if !common::blas_loaded() {
        return;
    }
    // Which inputs want a gradient: all (a trainable layer), the weight only, the inputs only
    // (a frozen weight); and the forward pass without autodiff.
    for ([rows, inner, d], wanted) in [
        ([1, 1, 1], [true, true, true]),
        ([7, 1030, 5], [true, true, true]),
        ([33, 40, 24], [false, false, true]),
        ([4, 9, 16], [true, true, false]),
    ] {
        let run = |autodiff: bool, op: fn(Tensor<2>, Tensor<2>, Tensor<2>) -> Tensor<2>| {
            let device = match autodiff {
                true => Device::flex().autodiff(),
                false => Device::flex(),
            };
            let on = |values: Vec<f32>, shape: [usize; 2], grad: bool| {
                let t = Tensor::<2>::from_data(TensorData::new(values, shape), &device);
                if grad && autodiff {
                    t.require_grad()
                } else {
                    t
                }
            };
            let g = on(
                values(rows * inner, 21, -12.0, 12.0),
                [rows, inner],
                wanted[0],
            );
            let u = on(
                values(rows * inner, 22, -2.0, 2.0),
                [rows, inner],
                wanted[1],
            );
            let w = on(values(inner * d, 23, -1.0, 1.0), [inner, d], wanted[2]);
            let y = op(g.clone(), u.clone(), w.clone());
            if !autodiff {
                return vec![read(y)];
            }
            let c = on(values(rows * d, 24, -1.0, 1.0), [rows, d], false);
            let grads = (y.clone() * c).sum().backward();
            let mut out = vec![read(y)];
            for (t, want) in [g, u, w].into_iter().zip(wanted) {
                let grad = t.grad(&grads).map(read);
                assert_eq!(
                    grad.is_some(),
                    want,
                    "a gradient exactly where one is wanted"
                );
                out.extend(grad);
            }
            out
        };
        let reference: fn(Tensor<2>, Tensor<2>, Tensor<2>) -> Tensor<2> =
            |g, u, w| (silu(g) * u).matmul(w);
        for autodiff in [false, true] {
            let before = fused::calls_on_this_thread();
            let got = run(autodiff, fused::silu_mul_down);
            assert_eq!(fused::calls_on_this_thread(), before + 1);
            let want = run(autodiff, reference);
            for (i, (got, want)) in got.iter().zip(&want).enumerate() {
                let what = ["y", "first gradient", "second", "third"][i];
                let case = format!("{:?} autodiff {autodiff} {what}", [rows, inner, d]);
                // Sums of `inner` products, rounded in another order by the BLAS.
                let tolerance = 1e-5 * (1.0 + inner as f32 / 100.0);
                assert!(gap(got, want) < tolerance, "{case}: {}", gap(got, want));
            }
        }
    }
}

/// Every weight made an autodiff tensor (not tracked: nothing requires a gradient).
struct Autodiff;

impl ModuleMapper for Autodiff {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.autodiff())
    }
}
