//! The log-sum-exp of projected hidden states, `lse_t = log Σ_v e^(h_t · w_v)`, computed over
//! chunks of rows so that the `[tokens, vocab]` logits never exist whole — forward or backward.
//!
//! For a chunk `c` of rows (at most `chunk_rows` of them):
//!
//! ```text
//! forward    z_c = h_c · Wᵀ                 [C, vocab], in W's float type, widened to f32
//!            lse_c = row_log_sum_exp(z_c)    [C]
//! backward   P_c = g_c ⊙ softmax(z_c)        [C, vocab]   (row_softmax_scaled)
//!            ∂/∂h_c = P_c · W                [C, d]
//!            ∂/∂W  += P_cᵀ · h_c             [vocab, d]
//! ```
//!
//! with `g` the incoming gradient of `lse`. When `W` is frozen (a frozen embedding under
//! `--train-layers`, a 16-bit base under LoRA) the forward pass already computes
//! `J_t = softmax(z_t) · W = ∂lse_t/∂h_t` and keeps that `[tokens, d]` matrix, so the backward
//! pass is `g_t · J_t` and the logits are formed once per step, not twice. When `W` trains, the
//! backward pass forms them again, chunk by chunk.
//!
//! The two row kernels are WGSL on wgpu (`shaders/row_log_sum_exp.wgsl`,
//! `shaders/row_softmax_scaled.wgsl`), SIMD passes on `cpu` (`crate::matmul::softmax`, one pass
//! for both when the forward pass forms `J`) and plain tensor operations on any other backend;
//! the matmuls are burn's. The op is a burn backend extension for the wgpu and flex backends,
//! with the backward pass above registered with burn's autodiff.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Cube, DispatchKindConversion, DispatchTensor, Flex, backend_extension,
};
use burn::tensor::{FloatDType, Tensor};
use std::ops::Range;

use super::{kernels, runs_wgsl_kernels};
use crate::extension::primitive;
use crate::matmul::softmax;

/// The projected log-sum-exp as a burn backend extension: forward only on the wgpu (`Cube`) and
/// flex backends, forward and backward on `Autodiff` of either. Call it through
/// [`super::projected_log_sum_exp`].
#[backend_extension(Autodiff, Cube, Flex)]
pub trait ProjectionBackend: Backend {
    /// `[tokens]`: `log Σ_v e^(h_t · w_v)` for `hidden` `[tokens, d]` (f32) and `weight`
    /// `[vocab, d]`, `chunk_rows` rows of logits at a time.
    fn projected_log_sum_exp(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        chunk_rows: usize,
    ) -> FloatTensor<Self>;
}

impl ProjectionBackend for Cube {
    fn projected_log_sum_exp(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        chunk_rows: usize,
    ) -> FloatTensor<Self> {
        forward_on::<Self>(hidden, weight, chunk_rows)
    }
}

impl ProjectionBackend for Flex {
    fn projected_log_sum_exp(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        chunk_rows: usize,
    ) -> FloatTensor<Self> {
        forward_on::<Self>(hidden, weight, chunk_rows)
    }
}

/// What the backward pass keeps (one per graph node, so the variants' sizes do not matter).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
enum Saved {
    /// Only the hidden states need a gradient: `J = softmax(h · Wᵀ) · W`, `[tokens, d]`.
    RowGradients(Tensor<2>),
    /// The weight needs one too: the inputs and `lse`, to form the logits again.
    Inputs {
        hidden: Tensor<2>,
        weight: Tensor<2>,
        log_sum_exp: Tensor<1>,
        chunk_rows: usize,
    },
}

#[derive(Debug)]
struct ProjectedLogSumExpBackward;

impl<B: Backend> Backward<B, 2> for ProjectedLogSumExpBackward
where
    DispatchTensor: DispatchKindConversion<B>,
{
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [hidden_node, weight_node] = ops.parents;
        let g = Tensor::<1>::from_primitive::<B>(grads.consume::<B>(&ops.node));
        match ops.state {
            Saved::RowGradients(j) => {
                if let Some(node) = hidden_node {
                    grads.register::<B>(node.id, primitive::<B, _>(j * g.unsqueeze_dim(1)));
                }
            }
            Saved::Inputs {
                hidden,
                weight,
                log_sum_exp,
                chunk_rows,
            } => {
                let (d_hidden, d_weight) =
                    gradients(&hidden, &weight, &log_sum_exp, &g, chunk_rows);
                if let Some(node) = hidden_node {
                    grads.register::<B>(node.id, primitive::<B, _>(d_hidden));
                }
                if let Some(node) = weight_node {
                    grads.register::<B>(node.id, primitive::<B, _>(d_weight));
                }
            }
        }
    }
}

impl<B: Backend, C: CheckpointStrategy> ProjectionBackend for Autodiff<B, C>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    fn projected_log_sum_exp(
        hidden: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        chunk_rows: usize,
    ) -> FloatTensor<Self> {
        let weight_trains = weight.is_tracked();
        let (hidden, hidden_node) = hidden.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let hidden = Tensor::<2>::from_primitive::<B>(hidden);
        let weight = Tensor::<2>::from_primitive::<B>(weight);
        // Compute-bound: keep the state rather than recompute under gradient checkpointing.
        match ProjectedLogSumExpBackward
            .prepare::<C>([hidden_node, weight_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) if weight_trains => {
                let lse = log_sum_exp(&hidden, &weight, chunk_rows);
                let state = Saved::Inputs {
                    hidden,
                    weight,
                    log_sum_exp: lse.clone(),
                    chunk_rows,
                };
                prep.finish(state, primitive::<B, _>(lse))
            }
            OpsKind::Tracked(prep) => {
                let (lse, row_gradients) =
                    log_sum_exp_and_row_gradients(&hidden, &weight, chunk_rows);
                prep.finish(Saved::RowGradients(row_gradients), primitive::<B, _>(lse))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(primitive::<B, _>(log_sum_exp(&hidden, &weight, chunk_rows)))
            }
        }
    }
}

/// The forward pass on a backend without autodiff.
fn forward_on<B: Backend>(
    hidden: FloatTensor<B>,
    weight: FloatTensor<B>,
    chunk_rows: usize,
) -> FloatTensor<B>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    let hidden = Tensor::<2>::from_primitive::<B>(hidden);
    let weight = Tensor::<2>::from_primitive::<B>(weight);
    primitive::<B, _>(log_sum_exp(&hidden, &weight, chunk_rows))
}

/// The row ranges of `rows` rows in chunks of at most `chunk_rows`.
fn chunks(rows: usize, chunk_rows: usize) -> impl Iterator<Item = Range<usize>> {
    let step = chunk_rows.max(1);
    (0..rows)
        .step_by(step)
        .map(move |start| start..(start + step).min(rows))
}

fn narrow<const D: usize>(tensor: &Tensor<D>, rows: &Range<usize>) -> Tensor<D> {
    tensor.clone().narrow(0, rows.start, rows.len())
}

/// `z_c = h_c · Wᵀ`, multiplied in `W`'s float type, as f32.
fn logits(hidden: Tensor<2>, weight: &Tensor<2>) -> Tensor<2> {
    crate::matmul::linear(hidden, weight.clone().transpose(), None).cast(FloatDType::F32)
}

/// `lse_t = log Σ_v e^(h_t · w_v)`, `[tokens]`.
fn log_sum_exp(hidden: &Tensor<2>, weight: &Tensor<2>, chunk_rows: usize) -> Tensor<1> {
    let parts = chunks(hidden.dims()[0], chunk_rows)
        .map(|rows| row_log_sum_exp(logits(narrow(hidden, &rows), weight)))
        .collect();
    Tensor::cat(parts, 0)
}

/// `lse` and its row gradients `J_t = ∂lse_t/∂h_t = softmax(z_t) · W`, `[tokens, d]`, from one
/// product `z_c = h_c · Wᵀ` per chunk.
fn log_sum_exp_and_row_gradients(
    hidden: &Tensor<2>,
    weight: &Tensor<2>,
    chunk_rows: usize,
) -> (Tensor<1>, Tensor<2>) {
    let (mut lse, mut row_gradients) = (Vec::new(), Vec::new());
    for rows in chunks(hidden.dims()[0], chunk_rows) {
        let (p, chunk_lse) = softmax_and_log_sum_exp(logits(narrow(hidden, &rows), weight));
        row_gradients.push(crate::matmul::linear(p, weight.clone(), None));
        lse.push(chunk_lse);
    }
    (Tensor::cat(lse, 0), Tensor::cat(row_gradients, 0))
}

/// `(∂/∂h, ∂/∂W)` of `Σ_t g_t·lse_t`: `P · W` and `Pᵀ · h` with `P = g ⊙ softmax(h · Wᵀ)`, the
/// weight's gradient accumulated over chunks in f32 and returned in the weight's float type.
fn gradients(
    hidden: &Tensor<2>,
    weight: &Tensor<2>,
    lse: &Tensor<1>,
    g: &Tensor<1>,
    chunk_rows: usize,
) -> (Tensor<2>, Tensor<2>) {
    let mut d_weight = Tensor::<2>::zeros(weight.dims(), &weight.device());
    let mut d_hidden = Vec::new();
    for rows in chunks(hidden.dims()[0], chunk_rows) {
        let h = narrow(hidden, &rows);
        let p = row_softmax_scaled(
            logits(h.clone(), weight),
            narrow(lse, &rows),
            narrow(g, &rows),
        );
        d_hidden.push(crate::matmul::linear(p.clone(), weight.clone(), None));
        d_weight = d_weight + crate::matmul::linear(p.transpose(), h, None);
    }
    (Tensor::cat(d_hidden, 0), d_weight.cast(weight.dtype()))
}

/// `(softmax(z), lse)` of f32 logits `[rows, vocab]`: on `cpu` one SIMD pass in place of the
/// logits, elsewhere the two row kernels.
fn softmax_and_log_sum_exp(logits: Tensor<2>) -> (Tensor<2>, Tensor<1>) {
    if softmax::takes(&logits) {
        return softmax::softmax_rows(logits);
    }
    let lse = row_log_sum_exp(logits.clone());
    let ones = Tensor::ones([lse.dims()[0]], &logits.device());
    (row_softmax_scaled(logits, lse.clone(), ones), lse)
}

/// `[rows]`: `log Σ_v e^(z[t, v])` of f32 logits `[rows, vocab]`; the WGSL kernel on wgpu, a
/// SIMD pass on `cpu`.
fn row_log_sum_exp(logits: Tensor<2>) -> Tensor<1> {
    if softmax::takes(&logits) {
        return softmax::log_sum_exp_rows(logits);
    }
    if runs_wgsl_kernels(&logits) {
        let logits = logits.try_into_primitive::<Cube>().expect("a wgpu tensor");
        return Tensor::from_primitive::<Cube>(kernels::row_log_sum_exp(logits));
    }
    let max = logits.clone().max_dim(1);
    let sum = (logits - max.clone()).exp().sum_dim(1);
    (max + sum.log()).squeeze_dim(1)
}

/// `[rows, vocab]`: `factor_t · e^(z[t, v] − lse_t)`; the WGSL kernel on wgpu, a SIMD pass on
/// `cpu`.
fn row_softmax_scaled(logits: Tensor<2>, lse: Tensor<1>, factor: Tensor<1>) -> Tensor<2> {
    if softmax::takes(&logits) {
        return softmax::softmax_scaled_rows(logits, lse, factor);
    }
    if runs_wgsl_kernels(&logits) {
        let [logits, lse, factor] = [logits, lse.unsqueeze_dim(1), factor.unsqueeze_dim(1)]
            .map(|t: Tensor<2>| t.try_into_primitive::<Cube>().expect("a wgpu tensor"));
        return Tensor::from_primitive::<Cube>(kernels::row_softmax_scaled(logits, lse, factor));
    }
    (logits - lse.unsqueeze_dim(1)).exp() * factor.unsqueeze_dim(1)
}
