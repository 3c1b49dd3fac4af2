//! Rotary position embeddings (Su et al., 2021) in Hugging Face's "rotate-half" layout.
//!
//! Each head vector `x` (width `hd`) at position `p` is rotated pairwise, pairing element `j`
//! with element `j + hd/2`:
//!
//! ```text
//! ω_i        = θ^(−2i/hd)                        i < hd/2 (Llama 3 scaling applied if configured)
//! rope(x, p) = x ⊙ cos(pω) + rotate_half(x) ⊙ sin(pω)
//! rotate_half([x₁, x₂]) = [−x₂, x₁]              the frequencies repeated over both halves
//! ```
//!
//! so the dot product of a rotated query at `p` and a rotated key at `p'` depends on `p − p'`
//! only. (llama.cpp pairs adjacent elements instead; its GGUF files store q/k rows permuted to
//! match, which the GGUF reader undoes.)

use burn::tensor::{Device, Tensor, TensorData};

use super::config::{ModelConfig, RopeScaling, RopeType};
use super::fused;

/// The `cos(pω)` and signed `sin(pω)` tables `[T, hd]` for positions `p = start..start+T`.
///
/// `rotate_half(x) ⊙ sin = [−x₂, x₁] ⊙ [s, s] = [x₂, x₁] ⊙ [−s, s]`, so the table holds `−sin`
/// in its first half and `sin` in its second, and [`Rope::apply`] swaps the halves without
/// negating them (one pass fewer).
pub(super) struct Rope {
    cos: Tensor<2>,
    signed_sin: Tensor<2>,
}

impl Rope {
    pub(super) fn new(config: &ModelConfig, start: usize, t: usize, device: &Device) -> Self {
        let hd = config.head_dim();
        let scaling = config.variant().rope_scaling;
        let freqs = inverse_frequencies(config.rope_theta, hd, scaling.as_ref());
        let mut cos = Vec::with_capacity(t * hd);
        let mut sin = Vec::with_capacity(t * hd);
        for p in start..start + t {
            for sign in [-1.0, 1.0] {
                for &w in &freqs {
                    let angle = p as f64 * w;
                    cos.push(angle.cos() as f32);
                    sin.push((sign * angle.sin()) as f32);
                }
            }
        }
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, [t, hd]), device),
            signed_sin: Tensor::from_data(TensorData::new(sin, [t, hd]), device),
        }
    }

    /// Rotate `x` `[B, T, heads, hd]` (a projection's output, heads split off) and return it
    /// heads first, `[B, heads, T, hd]`: one fused pass on `cpu`, with or without autodiff
    /// ([`fused::rope`]), burn's operations on the transposed view otherwise.
    pub(super) fn rotate(&self, x: Tensor<4>) -> Tensor<4> {
        // The tables as constants on `x`'s device: with autodiff (and its checkpointing
        // strategy) where `x` has it, without where not.
        let table = |t: &Tensor<2>| match x.is_autodiff() {
            true => t.clone().to_device(&x.device()),
            false => t.clone().inner(),
        };
        let (cos, sin) = (table(&self.cos), table(&self.signed_sin));
        if fused::takes(&x, &cos) {
            return fused::rope(x, cos, sin);
        }
        self.apply(x.swap_dims(1, 2))
    }

    /// Rotate `x`: `[B, heads, T, hd]`.
    fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, t, hd] = x.dims();
        let half = hd / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let swapped = Tensor::cat(vec![x2, x1], 3);
        let cos = self
            .cos
            .clone()
            .reshape([1, 1, t, hd])
            .expand([b, h, t, hd]);
        let sin = self
            .signed_sin
            .clone()
            .reshape([1, 1, t, hd])
            .expand([b, h, t, hd]);
        x * cos + swapped * sin
    }
}

/// `ω_i = θ^(−2i/hd)` for `i < hd/2`, with Llama 3 frequency scaling when configured:
/// wavelengths longer than `orig_ctx / low_freq_factor` are divided by `factor`, shorter than
/// `orig_ctx / high_freq_factor` kept, and those between interpolated smoothly.
///
/// [`RopeType::Llama3`] is the only scaling a [`RopeScaling`] can hold: other types are refused
/// when config.json is read, never ignored here.
pub fn inverse_frequencies(theta: f64, head_dim: usize, scaling: Option<&RopeScaling>) -> Vec<f64> {
    let base: Vec<f64> = (0..head_dim / 2)
        .map(|i| theta.powf(-((2 * i) as f64) / head_dim as f64))
        .collect();
    let Some(s) = scaling else {
        return base;
    };
    match s.rope_type {
        RopeType::Llama3 => {}
    }
    let original = s.original_max_position_embeddings.unwrap_or(8192) as f64;
    let low_wavelen = original / s.low_freq_factor;
    let high_wavelen = original / s.high_freq_factor;
    base.into_iter()
        .map(|w| {
            let wavelen = 2.0 * std::f64::consts::PI / w;
            if wavelen < high_wavelen {
                w
            } else if wavelen > low_wavelen {
                w / s.factor
            } else {
                let smooth = (original / wavelen - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * w / s.factor + smooth * w
            }
        })
        .collect()
}
