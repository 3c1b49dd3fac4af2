//! [`LossBackend`] on the wgpu backend: forward kernels alone on `Cube`, and forward kernels with
//! hand-written backward passes on `Autodiff<Cube>`.
//!
//! For autodiff the loss registers one graph node whose parent is the logits tensor; the labels
//! are constants. The backward step receives the gradient of the `[1]` loss and launches the
//! backward kernel, which writes the logits' gradient in one pass.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Autodiff, Cube};

use super::LossBackend;
use super::kernels;

impl LossBackend for Cube {
    fn preference_loss(
        margin_logits: FloatTensor<Self>,
        correct: IntTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        kernels::preference_forward(margin_logits, correct, epsilon)
    }
}

/// Backward step of the preference loss; its state is (logits, labels, ε).
#[derive(Debug)]
struct PreferenceLossBackward;

impl Backward<Cube, 1> for PreferenceLossBackward {
    type State = (CubeTensor, CubeTensor, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (margin_logits, correct, epsilon) = ops.state;
        unary::<Cube, _>(ops.parents, ops.node, grads, |grad_loss| {
            kernels::preference_backward(margin_logits, correct, epsilon, grad_loss)
        });
    }
}

impl<C: CheckpointStrategy> LossBackend for Autodiff<Cube, C> {
    fn preference_loss(
        margin_logits: FloatTensor<Self>,
        correct: IntTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        let (margin_logits, node) = margin_logits.into_parts();
        // Compute-bound: keep the state rather than recompute the forward pass under checkpointing.
        match PreferenceLossBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (margin_logits.clone(), correct.clone(), epsilon);
                prep.finish(
                    state,
                    kernels::preference_forward(margin_logits, correct, epsilon),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(kernels::preference_forward(margin_logits, correct, epsilon))
            }
        }
    }
}
