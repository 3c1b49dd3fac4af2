//! The loss core against independent answers.
//!
//! On `Device::flex()` the public functions run the plain-tensor-op reference; those tests
//! compare its values and autodiff gradients with the closed forms evaluated in `f64` here.
//! On wgpu (lavapipe in CI) the public functions run the WGSL kernels; those tests compare the
//! kernels' values and hand-written gradients with the reference on the same numbers.
//!
//! Tolerance: every element must satisfy |actual − expected| <= 1e-4·|expected| + 1e-6·max|expected|
//! (a relative error of 1e-4, with a floor for entries far below the tensor's scale).

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use gram::loss::{
    DEFAULT_LABEL_SMOOTHING, masked_token_cross_entropy, masked_token_cross_entropy_reference,
    preference_loss, preference_loss_reference,
};

// ---- test data -----------------------------------------------------------------------------

/// Deterministic uniform numbers (xorshift64*), so failures reproduce.
struct Numbers(u64);

impl Numbers {
    fn uniform(&mut self, low: f32, high: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        low + (high - low) * (bits as f32 / (1u64 << 24) as f32)
    }

    fn below(&mut self, n: usize) -> usize {
        ((self.uniform(0.0, 1.0) * n as f32) as usize).min(n - 1)
    }
}

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

/// A token batch: logits `[tokens, vocab]`, targets and mask.
struct TokenBatch {
    vocab: usize,
    logits: Vec<f32>,
    targets: Vec<i64>,
    mask: Vec<f32>,
}

impl TokenBatch {
    /// Random logits in ±`spread`, random targets, and the given mask (its length is the
    /// number of tokens). Masked tokens get the padding target −100.
    fn random(vocab: usize, mask: &[f32], spread: f32, seed: u64) -> Self {
        let mut numbers = Numbers(seed);
        let tokens = mask.len();
        Self {
            vocab,
            logits: (0..tokens * vocab)
                .map(|_| numbers.uniform(-spread, spread))
                .collect(),
            targets: mask
                .iter()
                .map(|&m| {
                    if m == 0.0 {
                        -100
                    } else {
                        numbers.below(vocab) as i64
                    }
                })
                .collect(),
            mask: mask.to_vec(),
        }
    }

    /// Puts logits of ±100 into row `row`, with its target at +100 or −100.
    fn with_extreme_row(mut self, row: usize, target_high: bool) -> Self {
        let vocab = self.vocab;
        for (v, z) in self.logits[row * vocab..(row + 1) * vocab]
            .iter_mut()
            .enumerate()
        {
            *z = if v % 3 == 0 { 100.0 } else { -100.0 };
        }
        let target = if target_high { 3 } else { 4 };
        self.targets[row] = target;
        self
    }

    fn tokens(&self) -> usize {
        self.mask.len()
    }

    fn tensors(&self, device: &Device) -> (Tensor<2>, Tensor<1, Int>, Tensor<1>) {
        let logits = TensorData::new(self.logits.clone(), [self.tokens(), self.vocab]);
        (
            trainable(Tensor::from_data(logits, device)),
            Tensor::from_data(
                TensorData::new(self.targets.clone(), [self.tokens()]),
                device,
            ),
            Tensor::from_data(TensorData::new(self.mask.clone(), [self.tokens()]), device),
        )
    }

    /// Loss Σ mask·nll / max(Σ mask, 1) and gradient mask_t/N·(softmax − onehot), in f64.
    fn closed_form(&self) -> (f64, Vec<f64>) {
        let count = self.mask.iter().map(|&m| m as f64).sum::<f64>().max(1.0);
        let mut loss = 0.0;
        let mut grad = vec![0.0; self.logits.len()];
        for t in 0..self.tokens() {
            let row = &self.logits[t * self.vocab..(t + 1) * self.vocab];
            let max = row.iter().fold(f64::MIN, |m, &z| m.max(z as f64));
            let lse = max
                + row
                    .iter()
                    .map(|&z| (z as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            let weight = self.mask[t] as f64 / count;
            if weight == 0.0 {
                continue;
            }
            let target = self.targets[t] as usize;
            loss += weight * (lse - row[target] as f64);
            for (v, &z) in row.iter().enumerate() {
                let onehot = if v == target { 1.0 } else { 0.0 };
                grad[t * self.vocab + v] = weight * ((z as f64 - lse).exp() - onehot);
            }
        }
        (loss, grad)
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

fn tokens_on(device: &Device, batch: &TokenBatch) -> (f32, Vec<f32>) {
    // Two forward kernels (row log-sum-exp, masked mean) and one backward kernel.
    with_kernel_count("token cross-entropy", kernels_on(device, 3), || {
        let (logits, targets, mask) = batch.tensors(device);
        let loss = masked_token_cross_entropy(logits.clone(), targets, mask).expect("valid inputs");
        loss_and_gradient(loss, &logits)
    })
}

fn tokens_reference(batch: &TokenBatch) -> (f32, Vec<f32>) {
    let (logits, targets, mask) = batch.tensors(&Device::flex().autodiff());
    let loss = masked_token_cross_entropy_reference(logits.clone(), targets, mask);
    loss_and_gradient(loss, &logits)
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
fn flex_token_cross_entropy_matches_closed_form() {
    let device = Device::flex().autodiff();
    let cases = [
        (
            TokenBatch::random(1000, &[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], 5.0, 4),
            "7 × 1000",
        ),
        (TokenBatch::random(37, &[1.0], 3.0, 5), "1 × 37"),
        (
            TokenBatch::random(257, &[1.0, 1.0, 0.0, 0.5, 1.0], 2.0, 6)
                .with_extreme_row(0, true)
                .with_extreme_row(1, false)
                .with_extreme_row(2, false),
            "5 × 257 with ±100 logits",
        ),
    ];
    for (batch, what) in &cases {
        assert_matches_closed_form(what, tokens_on(&device, batch), batch.closed_form());
    }
}

#[test]
fn flex_fully_masked_batch_has_zero_loss_and_gradient() {
    let device = Device::flex().autodiff();
    let batch = TokenBatch::random(300, &[0.0; 3], 100.0, 7);
    let (loss, grad) = tokens_on(&device, &batch);
    assert_eq!(loss, 0.0);
    assert!(
        grad.iter().all(|&g| g == 0.0),
        "gradient of a fully masked batch must be 0"
    );
}

#[test]
fn counted_token_with_impossible_target_gives_nan() {
    let device = Device::flex();
    let mut batch = TokenBatch::random(10, &[1.0, 1.0], 1.0, 8);
    batch.targets[1] = 10;
    let (logits, targets, mask) = batch.tensors(&device);
    let loss = masked_token_cross_entropy(logits, targets, mask).expect("shapes are valid");
    assert!(loss.into_data().try_to_vec::<f32>().unwrap()[0].is_nan());
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

    let logits = Tensor::<2>::zeros([4, 10], &device);
    let targets = Tensor::<1, Int>::zeros([4], &device);
    let short_mask = Tensor::<1>::ones([3], &device);
    let err = masked_token_cross_entropy(logits, targets, short_mask).unwrap_err();
    assert!(err.to_string().contains("3 mask values"), "{err}");
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
fn wgpu_token_cross_entropy_matches_reference() {
    let Some(device) = wgpu_device() else {
        return;
    };
    let cases = [
        (
            TokenBatch::random(1000, &[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5], 5.0, 14),
            "7 × 1000",
        ),
        (TokenBatch::random(37, &[1.0], 3.0, 15), "1 × 37"),
        (
            TokenBatch::random(49_152, &[1.0, 0.0, 1.0], 4.0, 16).with_extreme_row(2, false),
            "3 × 49152",
        ),
        (
            TokenBatch::random(1000, &[1.0, 1.0, 0.0, 1.0, 1.0], 2.0, 17)
                .with_extreme_row(0, true)
                .with_extreme_row(1, false)
                .with_extreme_row(2, true),
            "5 × 1000 with ±100 logits",
        ),
    ];
    for (batch, what) in &cases {
        assert_matches(what, tokens_on(&device, batch), tokens_reference(batch));
    }
}

#[test]
fn wgpu_fully_masked_batch_has_zero_loss_and_gradient() {
    let Some(device) = wgpu_device() else {
        return;
    };
    let batch = TokenBatch::random(1000, &[0.0; 3], 100.0, 18);
    let (loss, grad) = tokens_on(&device, &batch);
    assert_eq!(loss, 0.0);
    assert!(
        grad.iter().all(|&g| g == 0.0),
        "gradient of a fully masked batch must be 0"
    );
}

#[test]
fn wgpu_forward_without_autodiff_and_on_strided_logits() {
    // Without autodiff the call routes to the plain forward kernels; a transposed view
    // exercises the copy to a contiguous layout.
    let Some(device) = wgpu_device().map(Device::without_autodiff) else {
        return;
    };
    let batch = TokenBatch::random(300, &[1.0, 1.0, 0.0, 1.0], 3.0, 19);
    let (_, targets, mask) = batch.tensors(&device);
    let (tokens, vocab) = (batch.tokens(), batch.vocab);
    let columns: Vec<f32> = (0..vocab * tokens)
        .map(|i| batch.logits[(i % tokens) * vocab + i / tokens])
        .collect();
    let strided =
        Tensor::<2>::from_data(TensorData::new(columns, [vocab, tokens]), &device).transpose();
    let loss = with_kernel_count("forward-only token cross-entropy", 2, || {
        masked_token_cross_entropy(strided, targets, mask).expect("valid inputs")
    });
    let expected = tokens_reference(&batch).0;
    let actual = loss.into_data().try_to_vec::<f32>().unwrap()[0];
    assert_close("no-autodiff loss", &[actual], &[expected as f64]);

    let pairs = PreferenceBatch::random(5, 20);
    let (logits, correct) = pairs.tensors(&device);
    let loss = with_kernel_count("forward-only preference loss", 1, || {
        preference_loss(logits, correct, DEFAULT_LABEL_SMOOTHING).expect("valid inputs")
    });
    let expected = preference_reference(&pairs, DEFAULT_LABEL_SMOOTHING).0;
    let actual = loss.into_data().try_to_vec::<f32>().unwrap()[0];
    assert_close("no-autodiff preference loss", &[actual], &[expected as f64]);
}
