//! The loss core of GRAM training: the preference loss of stage 2, and the vocabulary-sized
//! part of stage 1's token cross-entropy, the log-sum-exp of the projected hidden states.
//!
//! - [`preference_loss`]: on a wgpu device, hand-written WGSL kernels (`shaders/*.wgsl`) run as
//!   a burn backend extension ([`LossBackend`]) with a hand-written backward pass registered
//!   with burn's autodiff (see `loss/autodiff.rs`); anywhere else (the `flex` CPU backend), a
//!   reference written with plain tensor operations ([`preference_loss_reference`]), whose
//!   gradient autodiff derives.
//! - [`projected_log_sum_exp`]: `log Σ_v e^(h_t · w_v)` over chunks of rows, so that stage 1
//!   never holds the `[tokens, vocab]` logits or their gradient; one backend extension for wgpu
//!   and flex with a hand-written backward pass (`loss/projection.rs`), its row reductions WGSL
//!   kernels on wgpu.
//!
//! The entry points take tensors on any device, with or without `.autodiff()`, in any float
//! type, and return f32; call `.backward()` on a loss as on any other tensor. 16-bit inputs are
//! widened to f32 at the entry (the gradient flows back through the cast) or, for a 16-bit
//! weight, multiplied with f32 accumulation, so the losses are computed in f32 and the WGSL
//! kernels run for every dtype.
//!
//! Which path ran is observable: [`wgsl_launches`] counts the WGSL kernels dispatched (forward
//! and backward), so a test can assert that the kernels, not the fallback, did the work.

mod autodiff;
mod kernels;
mod projection;

pub use projection::ProjectionBackend;

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

/// Bytes of f32 logits one chunk of [`projected_log_sum_exp`] may hold: 32 MiB, a quarter of the
/// smallest storage-buffer binding a GPU may cap at (WebGPU's guaranteed 128 MiB).
pub const PROJECTION_CHUNK_BYTES: usize = 1 << 25;

/// Rows of logits per chunk of [`projected_log_sum_exp`] for a vocabulary of `vocab` tokens:
/// as many as [`PROJECTION_CHUNK_BYTES`] holds (170 for SmolLM2's 49,152, 55 for Qwen3's
/// 151,936), at least one.
pub fn projection_chunk_rows(vocab: usize) -> usize {
    (PROJECTION_CHUNK_BYTES / (4 * vocab.max(1))).max(1)
}

/// Row-wise log-sum-exp of the logits `hidden · Wᵀ`, without the `[tokens, vocab]` logits.
///
/// `hidden` is `[tokens, d]`, `weight` is `W`, `[vocab, d]`, in any float type (the product is
/// taken in `W`'s type with f32 accumulation, [`crate::matmul::linear`]). Returns, in nats, f32
/// `[tokens]`:
///
/// ```text
/// lse_t = log Σ_v e^(h_t · w_v)
/// ```
///
/// This is the vocabulary-sized half of a token cross-entropy, `−log p(y_t) = lse_t − h_t·w_y`
/// ([`crate::model::VocabMatrix::token_cross_entropy`] adds the other half). Its gradients are
///
/// ```text
/// ∂lse_t/∂h_t = softmax(z_t) · W,    ∂lse_t/∂W = softmax(z_t)ᵀ · h_t,    z_t = h_t · Wᵀ,
/// ```
///
/// both formed `chunk_rows` rows at a time ([`projection_chunk_rows`] is the default), so the
/// largest temporary is `chunk_rows × vocab` f32 values rather than the logits and their
/// gradient, `2 × tokens × vocab`. On wgpu the row reductions are WGSL kernels
/// (`row_log_sum_exp`, and `row_softmax_scaled` for the gradient), counted by
/// [`wgsl_launches`]; elsewhere they are plain tensor operations. Works with and without
/// `.autodiff()`; see `loss/projection.rs` for the backward pass.
///
/// # Errors
///
/// [`Error::Invalid`] if the widths differ, `tokens` or `vocab` is 0, or `chunk_rows` is 0.
pub fn projected_log_sum_exp(
    hidden: Tensor<2>,
    weight: Tensor<2>,
    chunk_rows: usize,
) -> Result<Tensor<1>> {
    let [tokens, d] = hidden.dims();
    let [vocab, weight_d] = weight.dims();
    if tokens == 0 || vocab == 0 || d != weight_d || chunk_rows == 0 {
        return Err(Error::invalid(format!(
            "projected log-sum-exp: hidden [{tokens}, {d}] and weight [{vocab}, {weight_d}] must be non-empty and equally wide, in chunks of at least one row (got {chunk_rows})"
        )));
    }
    let hidden = hidden.cast(FloatDType::F32);
    Ok(Tensor::from_dispatch(
        <Dispatch as ProjectionBackend>::projected_log_sum_exp(
            hidden.into_dispatch(),
            weight.into_dispatch(),
            chunk_rows,
        ),
    ))
}

/// The loss kernels as a burn backend extension. Implemented by the wgpu backend (`Cube`, the
/// forward kernels) and by `Autodiff<Cube>` (forward kernels plus the backward kernels); the
/// `#[backend_extension]` macro implements it for `Dispatch`, routing each call to whichever of
/// the two the input tensors live on. Call through [`preference_loss`], which chooses between
/// these kernels and the reference.
#[backend_extension(Autodiff, Cube)]
pub trait LossBackend: Backend {
    /// Mean preference loss, `[1]`, of `margin_logits` `[batch, 2]` against `correct` `[batch]`.
    fn preference_loss(
        margin_logits: FloatTensor<Self>,
        correct: IntTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self>;
}

/// WGSL loss kernels dispatched by this process so far, forward and backward passes together.
///
/// A preference loss dispatches one forward kernel and, when its gradient is taken, one
/// backward kernel. A projected log-sum-exp dispatches one `row_log_sum_exp` per chunk of
/// rows, plus one `row_softmax_scaled` per chunk for its gradient (in the forward pass when
/// only the hidden states train, in the backward pass when the weight does). The
/// plain-tensor-op fallback (any device other than wgpu) dispatches none.
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
