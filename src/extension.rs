//! What gram's burn backend extensions share (the stage-1 projection in `loss/projection.rs`,
//! the BLAS product in `matmul/blas.rs`, the CPU attention in `matmul/attention.rs`, the fused
//! blocks in `model/fused.rs`): moving a tensor between burn's device-dispatched [`Tensor`] and
//! the primitive of the backend an extension is implemented for, and reading flex storage.

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
