//! What gram's burn backend extensions share (the stage-1 projection in `loss/projection.rs`,
//! the BLAS product in `matmul/blas.rs`, the CPU attention in `matmul/attention.rs`): moving a
//! tensor between burn's device-dispatched [`Tensor`] and the primitive of the backend an
//! extension is implemented for.

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
