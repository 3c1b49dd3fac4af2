//! The loss core against independent answers.
//!
//! Preference loss: on `Device::flex()` the public function runs the plain-tensor-op
//! reference, whose values and autodiff gradients are compared with the closed form evaluated
//! in `f64` here; on wgpu (lavapipe in CI) it runs the WGSL kernels, compared with the
//! reference on the same numbers.
//!
//! Projected log-sum-exp: its hand-written backward pass runs on both backends (plain tensor
//! operations on flex, WGSL row kernels on wgpu), and both are compared with the closed form
//! in `f64`: values, the hidden states' gradient and the weight's.
//!
//! Tolerance: every element must satisfy |actual − expected| <= 1e-4·|expected| + 1e-6·max|expected|
//! (a relative error of 1e-4, with a floor for entries far below the tensor's scale).

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::Numbers;
use gram::loss::{
    DEFAULT_LABEL_SMOOTHING, preference_loss, preference_loss_reference, projected_log_sum_exp,
};

// ---- test data -----------------------------------------------------------------------------

/// A preference batch: verdict logits `[batch, 2]` (row-major) and labels.
struct PreferenceBatch {
    logits: Vec<f32>,
    correct: Vec<i64>,
}

impl PreferenceBatch {
    fn random(batch: usize, seed: u64) -> Self {
        let mut numbers = Numbers(seed);
        Self {
            logits: (0..2 * batch).map(|_| numbers.uniform(-4.0, 4.0)).collect(),
            correct: (0..batch).map(|_| numbers.below(2) as i64).collect(),
        }
    }

    /// Pairs with margins Δ = z_correct − z_other of ±1e3 and ±100 and logits of ±100.
    fn extreme() -> Self {
        Self {
            logits: vec![
                500.0, -500.0, -500.0, 500.0, 100.0, -100.0, -100.0, 0.0, 100.0, 100.0,
            ],
            correct: vec![0, 0, 1, 0, 1],
        }
    }

    fn batch(&self) -> usize {
        self.correct.len()
    }

    fn tensors(&self, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let logits = TensorData::new(self.logits.clone(), [self.batch(), 2]);
        let correct = TensorData::new(self.correct.clone(), [self.batch()]);
        (
            trainable(Tensor::from_data(logits, device)),
            Tensor::from_data(correct, device),
        )
    }

    /// The loss and its gradient from the closed forms L = mean softplus(−Δ) + ε·Δ,
    /// ∂L/∂z_correct = (σ(Δ) − 1 + ε)/B = −∂L/∂z_other, in f64.
    fn closed_form(&self, epsilon: f64) -> (f64, Vec<f64>) {
        let batch = self.batch() as f64;
        let mut loss = 0.0;
        let mut grad = vec![0.0; self.logits.len()];
        for (i, &c) in self.correct.iter().enumerate() {
            let (c, other) = (2 * i + c as usize, 2 * i + 1 - c as usize);
            let delta = self.logits[c] as f64 - self.logits[other] as f64;
            let softplus = (-delta).max(0.0) + (-delta.abs()).exp().ln_1p();
            loss += (softplus + epsilon * delta) / batch;
            let sigmoid = 1.0 / (1.0 + (-delta).exp());
            grad[c] = (sigmoid - 1.0 + epsilon) / batch;
            grad[other] = -grad[c];
        }
        (loss, grad)
    }
}

/// Hidden states `[tokens, d]`, a projection `W` `[vocab, d]`, and the per-row weights `c` of
/// the test objective `Σ_t c_t·lse_t` (distinct, so each row's incoming gradient differs).
struct ProjectionBatch {
    tokens: usize,
    d: usize,
    vocab: usize,
    hidden: Vec<f32>,
    weight: Vec<f32>,
    row_weights: Vec<f32>,
}

impl ProjectionBatch {
    /// Hidden states in ±`spread`, weights in ±1, row weights in [0.5, 1.5].
    fn random(tokens: usize, d: usize, vocab: usize, spread: f32, seed: u64) -> Self {
        let mut numbers = Numbers(seed);
        let mut draw = |n: usize, low: f32, high: f32| -> Vec<f32> {
            (0..n).map(|_| numbers.uniform(low, high)).collect()
        };
        Self {
            tokens,
            d,
            vocab,
            hidden: draw(tokens * d, -spread, spread),
            weight: draw(vocab * d, -1.0, 1.0),
            row_weights: draw(tokens, 0.5, 1.5),
        }
    }

    /// `(hidden, weight, c)` on `device`, each input marked as needing a gradient where the
    /// device records one (the weight only if `weight_trains`).
    fn tensors(&self, device: &Device, weight_trains: bool) -> (Tensor<2>, Tensor<2>, Tensor<1>) {
        let hidden = TensorData::new(self.hidden.clone(), [self.tokens, self.d]);
        let weight = Tensor::from_data(
            TensorData::new(self.weight.clone(), [self.vocab, self.d]),
            device,
        );
        (
            trainable(Tensor::from_data(hidden, device)),
            if weight_trains {
                trainable(weight)
            } else {
                weight
            },
            Tensor::from_data(
                TensorData::new(self.row_weights.clone(), [self.tokens]),
                device,
            ),
        )
    }

    /// `lse_t`, `∂/∂h` and `∂/∂W` of `Σ_t c_t·lse_t`, in f64: `c_t·softmax(z_t)·W` and
    /// `Σ_t c_t·softmax(z_t)ᵀ·h_t` with `z_t = h_t·Wᵀ`.
    fn closed_form(&self) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (d, vocab) = (self.d, self.vocab);
        let mut lse = Vec::new();
        let mut d_hidden = vec![0.0; self.tokens * d];
        let mut d_weight = vec![0.0; vocab * d];
        for t in 0..self.tokens {
            let h = &self.hidden[t * d..(t + 1) * d];
            let z: Vec<f64> = (0..vocab)
                .map(|v| {
                    let w = &self.weight[v * d..(v + 1) * d];
                    h.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum()
                })
                .collect();
            let max = z.iter().fold(f64::MIN, |m, &x| m.max(x));
            let row_lse = max + z.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
            lse.push(row_lse);
            let c = self.row_weights[t] as f64;
            for (v, &zv) in z.iter().enumerate() {
                let p = c * (zv - row_lse).exp();
                for k in 0..d {
                    d_hidden[t * d + k] += p * self.weight[v * d + k] as f64;
                    d_weight[v * d + k] += p * h[k] as f64;
                }
            }
        }
        (lse, d_hidden, d_weight)
    }
}

/// `logits` marked as needing a gradient where the device records one.
fn trainable(logits: Tensor<2>) -> Tensor<2> {
    if logits.device().is_autodiff() {
        logits.require_grad()
    } else {
        logits
    }
}

// ---- evaluation ----------------------------------------------------------------------------

/// The loss value and the gradient of the logits, read back as `f32`.
fn loss_and_gradient(loss: Tensor<1>, logits: &Tensor<2>) -> (f32, Vec<f32>) {
    let value = loss
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 loss")[0];
    let grads = loss.backward();
    let grad = logits.grad(&grads).expect("the logits receive a gradient");
    (
        value,
        grad.into_data().try_to_vec::<f32>().expect("f32 gradient"),
    )
}

/// Asserts that `run` dispatched `expected` WGSL loss kernels from this thread: the kernels on
/// wgpu, none (the plain-op reference) on flex. Without this a silent fallback to the
/// reference would make every wgpu-against-reference comparison pass trivially.
fn with_kernel_count<T>(what: &str, expected: u64, run: impl FnOnce() -> T) -> T {
    let before = gram::loss::wgsl_launches_on_this_thread();
    let out = run();
    let launched = gram::loss::wgsl_launches_on_this_thread() - before;
    assert_eq!(
        launched, expected,
        "{what}: {launched} WGSL kernel dispatches, expected {expected}"
    );
    out
}

/// Kernels a loss with its backward pass dispatches on `device`: `on_wgpu` there, 0 on flex.
fn kernels_on(device: &Device, on_wgpu: u64) -> u64 {
    if device.clone().without_autodiff() == Device::flex() {
        0
    } else {
        on_wgpu
    }
}

fn preference_on(device: &Device, pairs: &PreferenceBatch, epsilon: f32) -> (f32, Vec<f32>) {
    // One forward and one backward kernel.
    with_kernel_count("preference loss", kernels_on(device, 2), || {
        let (logits, correct) = pairs.tensors(device);
        let loss = preference_loss(logits.clone(), correct, epsilon).expect("valid inputs");
        loss_and_gradient(loss, &logits)
    })
}

fn preference_reference(pairs: &PreferenceBatch, epsilon: f32) -> (f32, Vec<f32>) {
    let (logits, correct) = pairs.tensors(&Device::flex().autodiff());
    let loss = preference_loss_reference(logits.clone(), correct, epsilon);
    loss_and_gradient(loss, &logits)
}

/// `lse`, the hidden states' gradient and (if `weight_trains`) the weight's from
/// [`projected_log_sum_exp`] on `device` in chunks of `chunk_rows`, with the kernel count
/// asserted: one `row_log_sum_exp` and one `row_softmax_scaled` per chunk on wgpu.
fn projection_on(
    device: &Device,
    batch: &ProjectionBatch,
    chunk_rows: usize,
    weight_trains: bool,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let chunks = batch.tokens.div_ceil(chunk_rows) as u64;
    with_kernel_count(
        "projected log-sum-exp",
        kernels_on(device, 2 * chunks),
        || {
            let (hidden, weight, c) = batch.tensors(device, weight_trains);
            let lse = projected_log_sum_exp(hidden.clone(), weight.clone(), chunk_rows)
                .expect("valid inputs");
            let values = lse.clone().into_data().try_to_vec::<f32>().unwrap();
            let grads = (lse * c).sum().backward();
            let read = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
            let d_hidden = read(hidden.grad(&grads).expect("the hidden states' gradient"));
            (values, d_hidden, weight.grad(&grads).map(read))
        },
    )
}

/// The projection's values and gradients against the closed form, with the weight frozen and
/// training, in chunks of each of `chunk_sizes` rows.
fn check_projection(device: &Device, batch: &ProjectionBatch, chunk_sizes: &[usize], what: &str) {
    let (lse, d_hidden, d_weight) = batch.closed_form();
    for &chunk_rows in chunk_sizes {
        for weight_trains in [false, true] {
            let what = format!("{what}, chunks of {chunk_rows}, weight trains: {weight_trains}");
            let (got_lse, got_hidden, got_weight) =
                projection_on(device, batch, chunk_rows, weight_trains);
            assert_close(&format!("{what}: lse"), &got_lse, &lse);
            assert_close(&format!("{what}: ∂/∂h"), &got_hidden, &d_hidden);
            match got_weight {
                Some(got) => assert_close(&format!("{what}: ∂/∂W"), &got, &d_weight),
                None => assert!(!weight_trains, "{what}: the weight got no gradient"),
            }
        }
    }
}

fn assert_close(what: &str, actual: &[f32], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let scale = expected.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let tolerance = 1e-4 * e.abs() + 1e-6 * scale;
        assert!(
            (a as f64 - e).abs() <= tolerance,
            "{what}[{i}]: got {a}, expected {e} (tolerance {tolerance:e})"
        );
    }
}

fn assert_matches(what: &str, actual: (f32, Vec<f32>), expected: (f32, Vec<f32>)) {
    assert_close(&format!("{what} loss"), &[actual.0], &[expected.0 as f64]);
    let expected_grad: Vec<f64> = expected.1.iter().map(|&g| g as f64).collect();
    assert_close(&format!("{what} gradient"), &actual.1, &expected_grad);
}

fn assert_matches_closed_form(what: &str, actual: (f32, Vec<f32>), expected: (f64, Vec<f64>)) {
    assert_close(&format!("{what} loss"), &[actual.0], &[expected.0]);
    assert_close(&format!("{what} gradient"), &actual.1, &expected.1);
}

/// The wgpu device with autodiff, `None` (the test is skipped) without an adapter; see
/// `common::wgpu_device`.
fn wgpu_device() -> Option<Device> {
    common::wgpu_device().map(Device::autodiff)
}

// ---- reference on flex against the closed forms -------------------------------------------

#[test]
fn flex_preference_loss_matches_closed_form() {
    let device = Device::flex().autodiff();
    for (batch, seed) in [(1, 1), (7, 2), (64, 3)] {
        let pairs = PreferenceBatch::random(batch, seed);
        for epsilon in [0.0, DEFAULT_LABEL_SMOOTHING, 0.3] {
            assert_matches_closed_form(
                &format!("batch {batch}, ε {epsilon}"),
                preference_on(&device, &pairs, epsilon),
                pairs.closed_form(epsilon as f64),
            );
        }
    }
}

#[test]
fn flex_preference_loss_is_stable_for_extreme_margins() {
    let device = Device::flex().autodiff();
    let pairs = PreferenceBatch::extreme();
    for epsilon in [0.0, DEFAULT_LABEL_SMOOTHING] {
        assert_matches_closed_form(
            &format!("extreme margins, ε {epsilon}"),
            preference_on(&device, &pairs, epsilon),
            pairs.closed_form(epsilon as f64),
        );
    }
}

#[test]
fn label_smoothing_matches_pytorch_convention() {
    // PyTorch CrossEntropyLoss(label_smoothing = 0.1) on logits (2, 0), class 0:
    // −(0.95·log p0 + 0.05·log p1) with p = softmax(2, 0).
    let device = Device::flex();
    let logits = Tensor::<2>::from_data([[2.0f32, 0.0]], &device);
    let correct = Tensor::<1, Int>::from_data([0], &device);
    let loss = preference_loss(logits, correct, 0.1 / 2.0).expect("valid inputs");
    let log_p0 = -(1.0f64 + (-2.0f64).exp()).ln();
    let log_p1 = log_p0 - 2.0;
    let expected = -(0.95 * log_p0 + 0.05 * log_p1);
    assert_close(
        "smoothed loss",
        &loss.into_data().try_to_vec::<f32>().unwrap(),
        &[expected],
    );
}

#[test]
fn flex_projected_log_sum_exp_matches_closed_form() {
    let device = Device::flex().autodiff();
    for (batch, what) in [
        (ProjectionBatch::random(7, 5, 1000, 1.0, 4), "7 × 1000"),
        (ProjectionBatch::random(1, 8, 37, 1.0, 5), "1 × 37"),
        // |z| up to ~100: the log-sum-exp must not overflow.
        (
            ProjectionBatch::random(5, 4, 257, 30.0, 6),
            "5 × 257, large logits",
        ),
    ] {
        // Chunks that divide the rows, that do not, and one chunk for all.
        check_projection(&device, &batch, &[1, 2, 3, batch.tokens], what);
    }
}

#[test]
fn malformed_inputs_are_errors() {
    let device = Device::flex();
    let logits = Tensor::<2>::zeros([3, 2], &device);
    let correct = Tensor::<1, Int>::zeros([3], &device);
    let wrong_labels = Tensor::<1, Int>::zeros([2], &device);
    let three_verdicts = Tensor::<2>::zeros([3, 3], &device);
    assert!(preference_loss(logits.clone(), wrong_labels, 0.05).is_err());
    assert!(preference_loss(three_verdicts, correct.clone(), 0.05).is_err());
    assert!(preference_loss(logits.clone(), correct.clone(), -0.1).is_err());
    assert!(preference_loss(logits, correct, f32::NAN).is_err());

    let hidden = Tensor::<2>::zeros([4, 8], &device);
    let narrower = Tensor::<2>::zeros([10, 6], &device);
    let err = projected_log_sum_exp(hidden.clone(), narrower, 2).unwrap_err();
    assert!(err.to_string().contains("[10, 6]"), "{err}");
    let weight = Tensor::<2>::zeros([10, 8], &device);
    assert!(projected_log_sum_exp(hidden, weight.clone(), 0).is_err());
    assert!(projected_log_sum_exp(Tensor::zeros([0, 8], &device), weight, 2).is_err());
}

// ---- WGSL kernels on wgpu against the reference --------------------------------------------

#[test]
fn wgpu_preference_loss_matches_reference() {
    let Some(device) = wgpu_device() else {
        return;
    };
    for (pairs, what) in [
        (PreferenceBatch::random(1, 11), "batch 1"),
        (PreferenceBatch::random(7, 12), "batch 7"),
        (PreferenceBatch::random(300, 13), "batch 300"),
        (PreferenceBatch::extreme(), "extreme margins"),
    ] {
        for epsilon in [0.0, DEFAULT_LABEL_SMOOTHING] {
            assert_matches(
                &format!("{what}, ε {epsilon}"),
                preference_on(&device, &pairs, epsilon),
                preference_reference(&pairs, epsilon),
            );
        }
    }
}

#[test]
fn wgpu_projected_log_sum_exp_matches_closed_form() {
    let Some(device) = wgpu_device() else {
        return;
    };
    // Few chunk shapes: on a cold cache lavapipe tunes a matmul for each new shape.
    for (batch, chunks, what) in [
        (ProjectionBatch::random(7, 5, 1000, 1.0, 14), 3, "7 × 1000"),
        (ProjectionBatch::random(1, 8, 37, 1.0, 15), 1, "1 × 37"),
        (
            ProjectionBatch::random(3, 4, 49_152, 1.0, 16),
            2,
            "3 × 49152",
        ),
        (
            ProjectionBatch::random(5, 4, 257, 30.0, 17),
            5,
            "5 × 257, large logits",
        ),
    ] {
        check_projection(&device, &batch, &[chunks], what);
    }
}

#[test]
fn wgpu_forward_without_autodiff_and_on_strided_inputs() {
    // Without autodiff the calls route to the plain forward kernels; a transposed view of the
    // hidden states exercises strided inputs.
    let Some(device) = wgpu_device().map(Device::without_autodiff) else {
        return;
    };
    let batch = ProjectionBatch::random(9, 6, 300, 1.0, 19);
    let (_, weight, _) = batch.tensors(&device, false);
    let columns: Vec<f32> = (0..batch.d * batch.tokens)
        .map(|i| batch.hidden[(i % batch.tokens) * batch.d + i / batch.tokens])
        .collect();
    let strided =
        Tensor::<2>::from_data(TensorData::new(columns, [batch.d, batch.tokens]), &device)
            .transpose();
    // One row_log_sum_exp per chunk of 4 rows, nothing else.
    let lse = with_kernel_count("forward-only projected log-sum-exp", 3, || {
        projected_log_sum_exp(strided, weight, 4).expect("valid inputs")
    });
    let actual = lse.into_data().try_to_vec::<f32>().unwrap();
    assert_close("no-autodiff lse", &actual, &batch.closed_form().0);

    let pairs = PreferenceBatch::random(5, 20);
    let (logits, correct) = pairs.tensors(&device);
    let loss = with_kernel_count("forward-only preference loss", 1, || {
        preference_loss(logits, correct, DEFAULT_LABEL_SMOOTHING).expect("valid inputs")
    });
    let expected = preference_reference(&pairs, DEFAULT_LABEL_SMOOTHING).0;
    let actual = loss.into_data().try_to_vec::<f32>().unwrap()[0];
    assert_close("no-autodiff preference loss", &[actual], &[expected as f64]);
}

/// A chunk of the projection holds at most 32 MiB of f32 logits, and at least one row.
#[test]
fn projection_chunks_hold_at_most_32_mib_of_logits() {
    use gram::loss::{PROJECTION_CHUNK_BYTES, projection_chunk_rows};
    assert_eq!(PROJECTION_CHUNK_BYTES, 32 << 20);
    assert_eq!(projection_chunk_rows(49_152), 170); // SmolLM2
    assert_eq!(projection_chunk_rows(151_936), 55); // Qwen3
    assert_eq!(projection_chunk_rows(1 << 30), 1);
    for vocab in [1, 37, 49_152, 151_936, 1 << 22] {
        assert!(projection_chunk_rows(vocab) * vocab * 4 <= PROJECTION_CHUNK_BYTES);
    }
}
