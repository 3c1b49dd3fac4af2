//! `gram::matmul::linear` on the CPU: with a system BLAS, f32 products and both their
//! gradients go to `cblas_sgemm`, one call each; they must equal flex's own matmul, and judging
//! must give the same scores with the BLAS and without it (`GRAM_BLAS=off`).
//!
//! Without a BLAS these tests say so and pass; `GRAM_REQUIRE_BLAS=1` (as `.ci/run` sets after
//! installing OpenBLAS) makes a missing BLAS a failure.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use gram::matmul::{attention, blas, linear};

/// `n` values in [-1, 1) from the seeded sequence of [`common::Numbers`].
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut numbers = common::Numbers(seed);
    (0..n).map(|_| numbers.uniform(-1.0, 1.0)).collect()
}

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// The factors of `Σ c ⊙ (x · W + b)`: `x` `[batch, rows, k]`, `W` `[k, n]` (made as `[n, k]`
/// and transposed when `transposed`, the view a tied output projection is), `b`, `c`.
struct Case {
    batch: usize,
    rows: usize,
    k: usize,
    n: usize,
    transposed: bool,
}

impl Case {
    /// `(y, ∂/∂x, ∂/∂W, ∂/∂b)` with the product taken by `product`, on `cpu` with autodiff.
    fn run(&self, product: impl Fn(Tensor<3>, Tensor<2>, Tensor<1>) -> Tensor<3>) -> [Vec<f32>; 4] {
        let Case {
            batch,
            rows,
            k,
            n,
            transposed,
        } = *self;
        let device = Device::flex().autodiff();
        let tensor = |count: usize, seed| {
            Tensor::<1>::from_data(TensorData::new(values(count, seed), [count]), &device)
        };
        let x = tensor(batch * rows * k, 1)
            .reshape([batch, rows, k])
            .require_grad();
        let w = if transposed {
            tensor(k * n, 2).reshape([n, k]).require_grad()
        } else {
            tensor(k * n, 2).reshape([k, n]).require_grad()
        };
        let b = tensor(n, 3).require_grad();
        let c = tensor(batch * rows * n, 4).reshape([batch, rows, n]);
        let factor = if transposed {
            w.clone().transpose()
        } else {
            w.clone()
        };
        let y = product(x.clone(), factor, b.clone());
        let grads = (y.clone() * c).sum().backward();
        [
            read(y),
            read(x.grad(&grads).expect("x's gradient")),
            read(w.grad(&grads).expect("W's gradient")),
            read(b.grad(&grads).expect("b's gradient")),
        ]
    }
}

#[test]
fn blas_products_and_gradients_equal_flex_matmul() {
    if !common::blas_loaded() {
        return;
    }
    let cases = [
        // degenerate sizes: one row, one inner element, one output column
        Case {
            batch: 1,
            rows: 1,
            k: 1,
            n: 1,
            transposed: false,
        },
        Case {
            batch: 1,
            rows: 7,
            k: 1,
            n: 5,
            transposed: false,
        },
        Case {
            batch: 1,
            rows: 1,
            k: 33,
            n: 1,
            transposed: true,
        },
        // wider than tall: split by columns of Y (B plain and transposed)
        Case {
            batch: 1,
            rows: 3,
            k: 64,
            n: 300,
            transposed: false,
        },
        // leading dimensions folded into rows; the model's widths
        Case {
            batch: 3,
            rows: 37,
            k: 96,
            n: 40,
            transposed: false,
        },
        Case {
            batch: 1,
            rows: 300,
            k: 576,
            n: 192,
            transposed: false,
        },
        Case {
            batch: 2,
            rows: 45,
            k: 64,
            n: 257,
            transposed: true,
        },
    ];
    for case in &cases {
        let before = blas::calls_on_this_thread();
        let got = case.run(|x, w, b| linear(x, w, Some(b)));
        let calls = blas::calls_on_this_thread() - before;
        let want = case.run(|x, w, b| x.matmul(w.unsqueeze()) + b.unsqueeze());
        let shape = format!(
            "[{}, {}, {}] · [{}, {}]",
            case.batch, case.rows, case.k, case.k, case.n
        );
        assert_eq!(calls, 3, "{shape}: forward, ∂/∂x and ∂/∂W through the BLAS");
        for (what, (got, want)) in ["y", "∂/∂x", "∂/∂W", "∂/∂b"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            assert_eq!(got.len(), want.len());
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let gap = common::max_difference(got, want);
            assert!(
                gap <= 2e-6 * scale * (case.k.max(case.rows) as f32).sqrt(),
                "{shape}: {what} differs by {gap} (scale {scale})"
            );
        }
    }
}

#[test]
fn only_f32_products_on_the_cpu_go_to_the_blas() {
    if !common::blas_loaded() {
        return;
    }
    let cpu = Device::flex();
    let x = Tensor::<2>::ones([4, 8], &cpu);
    let w = Tensor::<2>::ones([8, 3], &cpu);
    assert!(blas::takes(&x, &w));
    assert!(blas::takes(
        &x.clone(),
        &w.clone().cast(burn::tensor::FloatDType::F32)
    ));
    let half = w.clone().cast(burn::tensor::FloatDType::F16);
    assert!(
        !blas::takes(&x.clone().cast(burn::tensor::FloatDType::F16), &half),
        "f16 stays with flex"
    );
    let before = blas::calls_on_this_thread();
    let y = read(linear(x.clone(), half, None));
    assert_eq!(
        blas::calls_on_this_thread(),
        before,
        "a 16-bit weight's product is flex's"
    );
    assert!(y.iter().all(|&v| v == 8.0));
    if let Some(gpu) = common::wgpu_device() {
        let x = Tensor::<2>::ones([4, 8], &gpu);
        assert!(
            !blas::takes(&x, &Tensor::<2>::ones([8, 3], &gpu)),
            "wgpu runs its own matmul"
        );
    }
}

/// `gram judge` on two pairs of the default model, with the BLAS and with `GRAM_BLAS=off`:
/// the same verdicts and p_a to f32 rounding, and the log says which ran.
#[test]
fn judging_gives_the_same_scores_with_and_without_the_blas() {
    if !common::blas_loaded() {
        return;
    }
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pairs.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let judge = |blas: &str| {
        let output = dir.path().join(format!("{blas}.jsonl"));
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_gram"))
            .args(["judge", "--device", "cpu", "--limit", "2", "--model"])
            .arg(common::model_path())
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&output)
            .env("GRAM_BLAS", blas)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(run.status.success(), "GRAM_BLAS={blas}: {stderr}");
        (stderr, common::p_a_column(&output))
    };
    let (with_log, with) = judge("on");
    let (without_log, without) = judge("off");
    assert!(with_log.contains("f32 products through"), "{with_log}");
    assert!(without_log.contains("pure Rust"), "{without_log}");
    assert_eq!(with.len(), 2);
    for (a, b) in with.iter().zip(&without) {
        assert!((a - b).abs() < 1e-4, "p_a {a} with the BLAS, {b} without");
    }
}

/// `softmax(q kᵀ / √d, causal from the bottom right) v` in plain tensor ops: key/value heads
/// repeated for their query heads, keys after a row's position filled with −∞.
fn plain_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let ([b, h, t, d], [_, kv, s, _]) = (q.dims(), k.dims());
    let repeat = |x: Tensor<4>| {
        x.unsqueeze_dim::<5>(2)
            .expand([b, kv, h / kv, s, d])
            .reshape([b, h, s, d])
    };
    let scores = q.matmul(repeat(k).swap_dims(2, 3)) / (d as f64).sqrt(); // [b, h, t, s]
    let hidden: Vec<bool> = (0..t)
        .flat_map(|i| (0..s).map(move |j| j > s - t + i))
        .collect();
    let hidden = Tensor::<2, burn::tensor::Bool>::from_data(
        TensorData::new(hidden, [t, s]),
        &scores.device(),
    );
    let scores = scores.mask_fill(hidden.unsqueeze::<4>(), f32::NEG_INFINITY);
    burn::tensor::activation::softmax(scores, 3).matmul(repeat(v))
}

/// The CPU attention kernel against plain tensor ops, forward and backward: grouped and
/// ungrouped heads, batches, a cached prefix, row counts around its block of 64 and a single
/// row; one kernel call counted each time, so a silent fallback fails.
#[test]
fn blas_attention_and_its_gradients_equal_plain_attention() {
    if !common::blas_loaded() {
        return;
    }
    let worst = common::max_difference;
    // (batch, query heads, key/value heads, new rows T, prefix P, head width)
    let shapes = [
        (1, 9, 3, 100, 0, 64),
        (2, 4, 4, 70, 30, 8),
        (1, 2, 1, 1, 0, 2),
        (1, 6, 2, 130, 500, 16),
        (3, 2, 2, 64, 1, 5),
    ];
    for (seed, (b, h, kv, t, p, d)) in shapes.into_iter().enumerate() {
        let shape = (b, h, kv, t, p, d);
        let run = |device: &Device, kernel: bool| {
            let tensor = |dims: [usize; 4], stream| {
                let count = dims.iter().product();
                let data = values(count, 10 * seed as u64 + stream);
                let x = Tensor::<4>::from_data(TensorData::new(data, dims), device) * 3.0;
                if device.is_autodiff() {
                    x.require_grad()
                } else {
                    x
                }
            };
            let q = tensor([b, h, t, d], 1);
            let k = tensor([b, kv, p + t, d], 2);
            // A strided view, as the model's values are, to be copied to contiguous.
            let v_storage = tensor([b, p + t, kv, d], 3);
            let v = v_storage.clone().swap_dims(1, 2);
            let out = if kernel {
                assert!(attention::takes(&q, &k, &v));
                let before = attention::calls_on_this_thread();
                let out = attention::causal_attention(q.clone(), k.clone(), v.clone());
                assert_eq!(attention::calls_on_this_thread(), before + 1);
                out
            } else {
                plain_attention(q.clone(), k.clone(), v.clone())
            };
            if !device.is_autodiff() {
                return vec![read(out)];
            }
            let weights = tensor([b, h, t, d], 4).detach();
            let grads = (out.clone() * weights).sum().backward();
            let grad = |x: &Tensor<4>| read(x.grad(&grads).expect("a gradient"));
            vec![read(out), grad(&q), grad(&k), grad(&v_storage)]
        };
        let grad_device = Device::flex().autodiff();
        let (ours, plain) = (run(&grad_device, true), run(&grad_device, false));
        for (name, (a, b)) in ["output", "∂q", "∂k", "∂v"]
            .iter()
            .zip(ours.iter().zip(&plain))
        {
            let gap = worst(a, b);
            assert!(gap < 5e-5, "{shape:?}: {name} differs by {gap:.2e}");
        }
        let inference = run(&Device::flex(), true);
        let gap = worst(&inference[0], &plain[0]);
        assert!(
            gap < 2e-5,
            "{shape:?}: output without autodiff differs by {gap:.2e}"
        );
    }
    // What it does not take: 16-bit values, fewer keys than queries, heads that do not group,
    // wgpu.
    let cpu = Device::flex();
    let ones = |dims: [usize; 4], device: &Device| Tensor::<4>::ones(dims, device);
    let (q, k) = (ones([1, 2, 4, 8], &cpu), ones([1, 1, 4, 8], &cpu));
    let half = |x: &Tensor<4>| x.clone().cast(burn::tensor::FloatDType::F16);
    assert!(!attention::takes(&half(&q), &half(&k), &half(&k)));
    assert!(!attention::takes(
        &q,
        &ones([1, 1, 3, 8], &cpu),
        &ones([1, 1, 3, 8], &cpu)
    ));
    assert!(!attention::takes(
        &q,
        &ones([1, 3, 4, 8], &cpu),
        &ones([1, 3, 4, 8], &cpu)
    ));
    if let Some(gpu) = common::wgpu_device() {
        let (q, k) = (ones([1, 2, 4, 8], &gpu), ones([1, 1, 4, 8], &gpu));
        assert!(!attention::takes(&q, &k, &k), "wgpu runs burn's op");
    }
}
