//! Low-rank adapters (LoRA, Hu et al., 2021) on a projection.
//!
//! A frozen projection `y = x · W` (`W` `[in, out]`) learns a low-rank update instead of `W`:
//!
//! ```text
//! y = x · W + (α/r) · (x · A) · B        A: [in, r] ~ U(±1/√in),  B: [r, out] = 0
//! ```
//!
//! `B = 0` makes an adapted model start equal to its base; on export the update is folded into
//! the weight, `W' = W + (α/r) · A · B` ([`super::Projection::merged_weight`]).

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

/// A LoRA adapter (Hu et al., 2021) of rank `r`: `Δy = (α/r) · (x · A) · B` with `A` `[in, r]`
/// drawn from U(±1/√in) and `B` `[r, out]` zero, so an adapted model starts equal to its base.
#[derive(Module, Debug)]
pub struct Lora {
    pub a: Param<Tensor<2>>,
    pub b: Param<Tensor<2>>,
    /// `α / r`.
    #[module(skip)]
    pub scale: f64,
}

impl Lora {
    /// A fresh adapter for an `[d_in, d_out]` projection.
    pub fn new(d_in: usize, d_out: usize, rank: usize, alpha: f64, device: &Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Lora {
            a: Param::from_tensor(Tensor::random(
                [d_in, rank],
                Distribution::Uniform(-bound, bound),
                device,
            )),
            b: Param::from_tensor(Tensor::zeros([rank, d_out], device)),
            scale: alpha / rank as f64,
        }
    }

    pub(super) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let down = burn::tensor::module::linear(x, self.a.val(), None);
        burn::tensor::module::linear(down, self.b.val(), None) * self.scale
    }
}
