//! The float type a model's weights are held in on the device (`--dtype`).
//!
//! Only the large tensors are held in a 16-bit type: the embedding, the output projection and
//! every projection weight. Norm gains and biases stay f32, and so does everything computed:
//! the residual stream, RMSNorm, RoPE, attention scores and softmax, logits and losses.
//! A projection casts its input to the weight's type, multiplies with f32 accumulation (cubecl's
//! matmul accumulates 16-bit inputs in f32; flex's gemm likewise) and casts the result back to
//! f32; see [`crate::matmul::linear`].
//!
//! What each backend has (burn 0.22.1):
//!
//! | backend | f32 | f16 | bf16 |
//! |---|---|---|---|
//! | wgpu (WGSL) | yes | where the adapter reports `SHADER_F16` | no (WGSL has no bf16): bf16 checkpoints load as f16 |
//! | `cpu` (flex) | yes | yes | yes (matmul widens to f32) |

use burn::tensor::{Device, FloatDType};

use crate::{Error, Result};

/// The `--dtype` choice: a float type for the weights, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// f16 on a GPU that computes in f16, f32 on `cpu` (where 16-bit matmuls are no faster).
    Auto,
    F32,
    F16,
    Bf16,
}

impl Dtype {
    /// The weight type on `device`: `auto` is f16 on a wgpu adapter with f16 arithmetic and
    /// f32 otherwise; an explicit type the device cannot compute in is an error naming the
    /// device and what to use instead.
    pub fn resolve(self, device: &Device) -> Result<FloatDType> {
        let cpu = *device == Device::flex();
        let supported = |dtype: FloatDType| device.supports_dtype(dtype);
        match self {
            Dtype::F32 => Ok(FloatDType::F32),
            Dtype::Auto if !cpu && supported(FloatDType::F16) => Ok(FloatDType::F16),
            Dtype::Auto => Ok(FloatDType::F32),
            Dtype::F16 if supported(FloatDType::F16) => Ok(FloatDType::F16),
            Dtype::Bf16 if supported(FloatDType::BF16) => Ok(FloatDType::BF16),
            Dtype::F16 => Err(Error::Device(format!(
                "--dtype f16: {} has no f16 arithmetic (the adapter does not report \
                 SHADER_F16); use --dtype f32",
                crate::device::describe(device)
            ))),
            Dtype::Bf16 => Err(Error::Device(format!(
                "--dtype bf16: {} has no bf16 arithmetic (burn's WGSL compiler has no bf16); \
                 use --dtype f16, which loads bf16 checkpoints converted to f16, or f32",
                crate::device::describe(device)
            ))),
        }
    }

    /// The flag value: `auto`, `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Auto => "auto",
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }
}
