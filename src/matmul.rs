//! The products `x · W` of every projection, run the way each backend runs them fastest.
//!
//! * **Float types** ([`crate::dtype`]): a 16-bit weight multiplies `x` rounded to its type,
//!   with f32 accumulation inside the matmul kernel, and the result is widened back to `x`'s
//!   type (f32).
//! * **The system's BLAS on the CPU** ([`blas`]): where an OpenBLAS or Apple Accelerate library
//!   can be loaded at run time, f32 products on `cpu` go to its `cblas_sgemm` (forward and
//!   backward); elsewhere, and for every other device and float type, they are burn's own
//!   (flex's gemm on the CPU, cubecl's matmul on wgpu). The choice is made per product, so a
//!   model mixes both freely and the results agree to f32 rounding.
//! * **The CPU's attention** ([`attention`]): causal grouped-query attention with its products
//!   on the same BLAS (forward and backward), which the decoder layers use for f32 on `cpu`;
//!   its row softmax ([`softmax`], SIMD) also serves the stage-1 projection's logits.

pub mod attention;
pub mod blas;
pub(crate) mod softmax;

use burn::backend::DispatchDevice;
use burn::tensor::{Device, Tensor};

/// `x · weight (+ bias)` for `weight` `[in, out]` broadcast over `x`'s leading dimensions,
/// multiplied in the weight's float type and returned in `x`'s.
///
/// With a 16-bit weight and f32 activations, `x` is rounded to the weight's type, the product
/// accumulates in f32 inside the matmul kernel, and the result is widened back to f32 before
/// the (f32) bias is added. Works with and without `.autodiff()`.
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let dtype = x.dtype();
    let y = if weight.dtype() == dtype {
        product(x, weight)
    } else {
        product(x.cast(weight.dtype()), weight).cast(dtype)
    };
    match bias {
        Some(bias) => y + bias.cast(dtype).unsqueeze(),
        None => y,
    }
}

/// `x · w` for `x` `[..., k]` and `w` `[k, n]` of one float type: the system's BLAS where it
/// takes the product ([`blas::takes`]), burn's `linear` (leading dimensions folded into rows)
/// otherwise.
fn product<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    if !blas::takes(&x, &w) {
        return burn::tensor::module::linear(x, w, None);
    }
    let dims = x.dims();
    let [k, n] = w.dims();
    let rows = dims[..D - 1].iter().product();
    let y = blas::matmul(x.reshape([rows, k]), w);
    let mut out = dims;
    out[D - 1] = n;
    y.reshape(out)
}

/// Whether `device` is burn's flex CPU backend, with or without autodiff.
pub(crate) fn on_flex(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}
