//! [`LossBackend`] on the wgpu backend: forward kernels alone on `Cube`, and forward kernels with
//! hand-written backward passes on `Autodiff<Cube>`.
//!
//! For autodiff each loss registers one graph node whose parent is the logits tensor; the
//! labels, targets and mask are constants. The backward step receives the gradient of the
//! `[1]` loss and launches the matching backward kernel, which writes the logits' gradient in
//! one pass.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::CubeTensor;
use burn::backend::{Autodiff, Cube};

use super::LossBackend;
use super::kernels::{self, TokenCrossEntropySaved};

impl LossBackend for Cube {
    fn preference_loss(
        margin_logits: FloatTensor<Self>,
        correct: IntTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        kernels::preference_forward(margin_logits, correct, epsilon)
    }

    fn masked_token_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        kernels::token_cross_entropy_forward(logits, targets, mask).0
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

/// Backward step of the token cross-entropy; its state is (logits, targets, mask, saved).
#[derive(Debug)]
struct TokenCrossEntropyBackward;

impl Backward<Cube, 1> for TokenCrossEntropyBackward {
    type State = (CubeTensor, CubeTensor, CubeTensor, TokenCrossEntropySaved);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, targets, mask, saved) = ops.state;
        unary::<Cube, _>(ops.parents, ops.node, grads, |grad_loss| {
            kernels::token_cross_entropy_backward(logits, targets, mask, saved, grad_loss)
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

    fn masked_token_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        mask: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (logits, node) = logits.into_parts();
        let mask = mask.into_primitive();
        match TokenCrossEntropyBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (loss, saved) = kernels::token_cross_entropy_forward(
                    logits.clone(),
                    targets.clone(),
                    mask.clone(),
                );
                prep.finish((logits, targets, mask, saved), loss)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(kernels::token_cross_entropy_forward(logits, targets, mask).0)
            }
        }
    }
}
