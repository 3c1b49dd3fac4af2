//! The loss core of GRAM training: the preference loss of stage 2 and the masked token
//! cross-entropy of stage 1.
//!
//! Both losses have two implementations with one public entry point each:
//!
//! - on a wgpu device, hand-written WGSL kernels (`shaders/*.wgsl`) run as a burn backend
//!   extension ([`LossBackend`]) with hand-written backward passes registered with burn's
//!   autodiff (see `loss/autodiff.rs`);
//! - anywhere else (the `flex` CPU backend), a reference written with plain tensor operations
//!   ([`preference_loss_reference`], [`masked_token_cross_entropy_reference`]), whose gradient
//!   autodiff derives.
//!
//! The entry points take tensors on any device, with or without `.autodiff()`, in any float
//! type, and return an f32 loss of shape `[1]`; call `.backward()` on it as on any other
//! tensor. 16-bit logits are widened to f32 at the entry (the gradient flows back through the
//! cast), so the losses are always computed in f32 and the WGSL kernels run for every dtype.
//!
//! Which path ran is observable: [`wgsl_launches`] counts the WGSL kernels dispatched (forward
//! and backward), so a test can assert that the kernels, not the fallback, did the work.

mod autodiff;
mod kernels;

use burn::backend::{
    Backend, Dispatch, DispatchDevice, backend_extension,
    tensor::{FloatTensor, IntTensor},
};
use burn::tensor::{DType, FloatDType, Int, Tensor, activation};

use crate::{Error, Result};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Probability mass that the preference loss puts on the verdict the label says is wrong.
///
/// GRAM fine-tunes with label smoothing; PyTorch's `CrossEntropyLoss(label_smoothing = s)` over
/// the two verdicts corresponds to `ε = s / 2`, so this is `s = 0.1`.
pub const DEFAULT_LABEL_SMOOTHING: f32 = 0.05;

/// Label-smoothed preference loss over the verdict logits, averaged over the batch.
///
/// `margin_logits` is `[batch, 2]`: the judge's logits `z_A`, `z_B` for the verdict tokens "A"
/// and "B". `correct` is `[batch]`: 0 when A is the better response, 1 when B is. `epsilon` is
/// the mass on the wrong verdict ([`DEFAULT_LABEL_SMOOTHING`]; 0 disables smoothing). Returns
/// the mean loss in nats, shape `[1]`.
///
/// With `p = softmax(z_A, z_B)` the loss of pair `i` is
///
/// ```text
/// L_i = −(1 − ε)·log p(correct) − ε·log p(other).
/// ```
///
/// Writing `Δ = z_correct − z_other`, `p(correct) = σ(Δ)` and `p(other) = σ(−Δ)`, so
/// `−log p(correct) = softplus(−Δ)` and `−log p(other) = softplus(Δ) = Δ + softplus(−Δ)`, hence
///
/// ```text
/// L_i = (1 − ε)·softplus(−Δ) + ε·(Δ + softplus(−Δ)) = −log σ(Δ) + ε·Δ :
/// ```
///
/// the Bradley–Terry loss on the margin `Δ` plus a regulariser `ε·Δ` that stops the margin from
/// growing without bound (the loss is minimal at `σ(Δ) = 1 − ε`, i.e. `Δ = log((1 − ε)/ε)`).
/// The gradient is `∂L/∂z_correct = (σ(Δ) − 1 + ε)/B = −∂L/∂z_other` for batch size `B`. The
/// kernels evaluate the softplus form, which neither overflows nor loses the small term for
/// `|Δ|` up to the `f32` range.
///
/// Labels other than 0 and 1 are a caller error; they are not checked (that would read the
/// tensor back from the device every step).
///
/// # Errors
///
/// [`Error::Invalid`] if the shapes disagree, the batch is empty, or `epsilon` is not in
/// `[0, 1]`.
pub fn preference_loss(
    margin_logits: Tensor<2>,
    correct: Tensor<1, Int>,
    epsilon: f32,
) -> Result<Tensor<1>> {
    check_preference_inputs(&margin_logits, &correct, epsilon)?;
    let margin_logits = margin_logits.cast(FloatDType::F32);
    if runs_wgsl_kernels(&margin_logits) {
        Ok(Tensor::from_dispatch(
            <Dispatch as LossBackend>::preference_loss(
                margin_logits.into_dispatch(),
                correct.into_dispatch(),
                epsilon,
            ),
        ))
    } else {
        Ok(preference_loss_reference(margin_logits, correct, epsilon))
    }
}

/// [`preference_loss`] written with plain tensor operations, straight from the definition
/// `−(1 − ε)·log p(correct) − ε·log p(other)` with a (stable) log-softmax; autodiff derives its
/// gradient. Runs on every backend; inputs are not validated.
pub fn preference_loss_reference(
    margin_logits: Tensor<2>,
    correct: Tensor<1, Int>,
    epsilon: f32,
) -> Tensor<1> {
    let log_p = activation::log_softmax(margin_logits, 1);
    // Weight 1 − ε on the correct verdict, ε on the other: one_hot·(1 − 2ε) + ε.
    let weights = correct.one_hot::<2>(2).float() * (1.0 - 2.0 * epsilon) + epsilon;
    -(log_p * weights).sum_dim(1).mean()
}

/// Mean negative log-likelihood of the target tokens over the tokens the mask counts.
///
/// `logits` is `[tokens, vocab]`, `targets` is `[tokens]` (token ids), `mask` is `[tokens]`
/// with 1.0 for a token that counts and 0.0 for one that does not (prompt, padding; fractional
/// weights are allowed). Returns, in nats, shape `[1]`:
///
/// ```text
/// loss = Σ_t mask_t·(logsumexp(z_t) − z_t[target_t]) / max(Σ_t mask_t, 1)
/// ```
///
/// so a fully masked batch has loss 0 and zero gradients. The gradient is
/// `∂loss/∂z[t, v] = mask_t/N·(softmax(z_t)[v] − [v = target_t])` with `N = max(Σ mask, 1)`;
/// the mask is treated as a constant (no gradient flows into it).
///
/// The targets of masked tokens are ignored, so padding may carry any id (e.g. −100). A counted
/// token whose target is outside `[0, vocab)` makes the loss NaN (checked on the device, not
/// here, so training never waits for a read-back).
///
/// On wgpu the forward kernel runs one workgroup per token row: an online log-sum-exp (running
/// maximum and rescaled sum of exponentials, merged across the workgroup), stable for any
/// finite logits, saving only the per-row log-sum-exp (`tokens` floats) for the backward
/// kernel, which writes `g·mask_t/N·(e^(z − lse) − onehot)` straight into the one gradient
/// buffer. The logits themselves are still materialised: `tokens·vocab·4` bytes, e.g. 2048
/// tokens × 49 152 vocabulary × 4 B = 403 MB, plus as much again for their gradient. Fusing
/// the output projection into these kernels over chunks of tokens would bound both at
/// `chunk·vocab·4` bytes (16 MB for 80-token chunks); that fusion is not implemented.
///
/// # Errors
///
/// [`Error::Invalid`] if the shapes disagree or `tokens` or `vocab` is 0.
pub fn masked_token_cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    mask: Tensor<1>,
) -> Result<Tensor<1>> {
    check_token_inputs(&logits, &targets, &mask)?;
    let (logits, mask) = (logits.cast(FloatDType::F32), mask.cast(FloatDType::F32));
    if runs_wgsl_kernels(&logits) {
        Ok(Tensor::from_dispatch(
            <Dispatch as LossBackend>::masked_token_cross_entropy(
                logits.into_dispatch(),
                targets.into_dispatch(),
                mask.into_dispatch(),
            ),
        ))
    } else {
        Ok(masked_token_cross_entropy_reference(logits, targets, mask))
    }
}

/// [`masked_token_cross_entropy`] written with plain tensor operations (log-softmax, gather,
/// masked sum); autodiff derives its gradient. Runs on every backend; shapes are not validated,
/// but out-of-range targets behave as in the kernels (ignored when masked, NaN when counted).
pub fn masked_token_cross_entropy_reference(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    mask: Tensor<1>,
) -> Tensor<1> {
    let vocab = logits.dims()[1] as i64;
    let out_of_range = targets
        .clone()
        .lower_elem(0)
        .bool_or(targets.clone().greater_equal_elem(vocab));
    let counted = mask.clone().not_equal_elem(0.0);
    let log_p = activation::log_softmax(logits, 1);
    let target_log_p = log_p
        .gather(1, targets.clamp(0, vocab - 1).unsqueeze_dim::<2>(1))
        .squeeze_dim::<1>(1);
    let masked_nll =
        (-target_log_p * mask.clone()).mask_fill(out_of_range.bool_and(counted), f32::NAN);
    masked_nll.sum() / mask.sum().clamp_min(1.0)
}

/// The loss kernels as a burn backend extension. Implemented by the wgpu backend (`Cube`, the
/// forward kernels) and by `Autodiff<Cube>` (forward kernels plus the backward kernels); the
/// `#[backend_extension]` macro implements it for `Dispatch`, routing each call to whichever of
/// the two the input tensors live on. Call through [`preference_loss`] and
/// [`masked_token_cross_entropy`], which choose between these kernels and the reference.
#[backend_extension(Autodiff, Cube)]
pub trait LossBackend: Backend {
    /// Mean preference loss, `[1]`, of `margin_logits` `[batch, 2]` against `correct` `[batch]`.
    fn preference_loss(
        margin_logits: FloatTensor<Self>,
        correct: IntTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;

    /// Masked mean token cross-entropy, `[1]`, of `logits` `[tokens, vocab]`.
    fn masked_token_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// WGSL loss kernels dispatched by this process so far, forward and backward passes together.
///
/// A preference loss dispatches one forward kernel and, when its gradient is taken, one
/// backward kernel; a token cross-entropy dispatches two forward kernels (the per-row
/// log-sum-exp and the masked mean) and one backward kernel. The plain-tensor-op fallback
/// (any device other than wgpu) dispatches none.
pub fn wgsl_launches() -> u64 {
    WGSL_LAUNCHES.load(Ordering::Relaxed)
}

/// [`wgsl_launches`] counting only the dispatches made from the calling thread: what a test
/// compares before and after its own loss calls while other tests run on other threads.
/// (Kernels are dispatched on the thread that calls the loss, or `.backward()` for the
/// backward kernels.)
pub fn wgsl_launches_on_this_thread() -> u64 {
    THREAD_WGSL_LAUNCHES.with(Cell::get)
}

static WGSL_LAUNCHES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_WGSL_LAUNCHES: Cell<u64> = const { Cell::new(0) };
}

/// Count one kernel dispatch (called by `kernels::launch`).
fn count_wgsl_launch() {
    WGSL_LAUNCHES.fetch_add(1, Ordering::Relaxed);
    THREAD_WGSL_LAUNCHES.with(|n| n.set(n.get() + 1));
}

/// Whether `tensor`'s device and dtype are the ones the WGSL kernels are written for: a wgpu
/// device (with or without autodiff) and `f32` (what the entry points widen every input to).
fn runs_wgsl_kernels<const D: usize>(tensor: &Tensor<D>) -> bool {
    let on_wgpu = matches!(
        tensor.device().inner().as_dispatch(),
        DispatchDevice::Cube(cubecl::Device::Wgpu(_))
    );
    on_wgpu && tensor.dtype() == DType::F32
}

fn check_preference_inputs(
    margin_logits: &Tensor<2>,
    correct: &Tensor<1, Int>,
    epsilon: f32,
) -> Result<()> {
    let [batch, verdicts] = margin_logits.dims();
    let [labels] = correct.dims();
    if verdicts != 2 {
        return Err(Error::invalid(format!(
            "preference loss: margin_logits must be [batch, 2] (logits of verdicts A and B), got [{batch}, {verdicts}]"
        )));
    }
    if labels != batch {
        return Err(Error::invalid(format!(
            "preference loss: {labels} labels in `correct` for a batch of {batch} pairs"
        )));
    }
    if batch == 0 {
        return Err(Error::invalid("preference loss: empty batch"));
    }
    if !(0.0..=1.0).contains(&epsilon) {
        return Err(Error::invalid(format!(
            "preference loss: label smoothing epsilon must be in [0, 1], got {epsilon}"
        )));
    }
    Ok(())
}

fn check_token_inputs(
    logits: &Tensor<2>,
    targets: &Tensor<1, Int>,
    mask: &Tensor<1>,
) -> Result<()> {
    let [tokens, vocab] = logits.dims();
    let [target_count] = targets.dims();
    let [mask_count] = mask.dims();
    if tokens == 0 || vocab == 0 {
        return Err(Error::invalid(format!(
            "token cross-entropy: logits must be non-empty [tokens, vocab], got [{tokens}, {vocab}]"
        )));
    }
    if target_count != tokens || mask_count != tokens {
        return Err(Error::invalid(format!(
            "token cross-entropy: {tokens} logit rows but {target_count} targets and {mask_count} mask values"
        )));
    }
    // The kernels index with 32-bit integers.
    if runs_wgsl_kernels(logits)
        && tokens
            .checked_mul(vocab)
            .is_none_or(|n| n > u32::MAX as usize)
    {
        return Err(Error::invalid(format!(
            "token cross-entropy: [{tokens}, {vocab}] logits exceed 2^32 elements; split the batch"
        )));
    }
    Ok(())
}
