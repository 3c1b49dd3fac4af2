//! What gram's burn backend extensions share (the stage-1 projection in `loss/projection.rs`,
//! the BLAS product in `matmul/blas.rs`, the CPU attention in `matmul/attention.rs`, the fused
//! blocks in `model/fused.rs`): moving a tensor between burn's device-dispatched [`Tensor`] and
//! the primitive of the backend an extension is implemented for, recording an operation's
//! output and backward state on the autodiff graph, and reading flex storage.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, NodeGuard, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DispatchKindConversion, DispatchTensor};
use burn::tensor::Tensor;

/// `tensor`'s primitive on `B`, the backend its extension's inputs came from (and so where
/// every tensor the extension computed from them lives).
pub(crate) fn primitive<B: Backend, const D: usize>(tensor: Tensor<D>) -> FloatTensor<B>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    tensor
        .try_into_primitive::<B>()
        .expect("a backend extension's tensors live on the backend its inputs came from")
}

/// Records `y`, computed from the inputs whose autodiff nodes are `nodes`, as the output of
/// the compute-bound operation `op` (under gradient checkpointing its inputs are kept, not the
/// operation recomputed); `state` is kept for `op`'s backward pass only when an input needs a
/// gradient. Returns `y` as a tensor of `Autodiff<B, C>`.
pub(crate) fn record<B, C, O, const N: usize>(
    op: O,
    nodes: [NodeGuard; N],
    state: O::State,
    y: FloatTensor<B>,
) -> FloatTensor<burn::backend::Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    O: Backward<B, N>,
    O::State: Clone + Send + std::fmt::Debug + 'static,
{
    match op.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// The shape of a 2-d flex tensor.
pub(crate) fn dims2(x: &FlexTensor) -> [usize; 2] {
    let shape = x.layout().shape();
    [shape[0], shape[1]]
}

/// The shape of a 4-d flex tensor.
pub(crate) fn dims4(x: &FlexTensor) -> [usize; 4] {
    let shape = x.layout().shape();
    [shape[0], shape[1], shape[2], shape[3]]
}

/// A contiguous flex tensor's f32 elements.
pub(crate) fn elements(x: &FlexTensor) -> &[f32] {
    let count = x.layout().num_elements();
    &x.storage::<f32>()[x.layout().start_offset()..][..count]
}
