//! Launching the WGSL loss kernels (`shaders/*.wgsl`) on the wgpu backend's tensors.
//!
//! Every kernel reads contiguous `f32` tensors (and `i32` labels), takes its sizes from a small
//! `params` buffer of `u32` (floats as their bits), and writes freshly allocated outputs.
//! The shaders declare every binding `read_write`, even the inputs: cubecl sub-allocates small
//! tensors from shared wgpu buffers, and wgpu rejects a dispatch that binds one buffer both
//! read-only and read-write.

use burn::backend::Cube;
use burn::backend::ops::{FloatTensorOps, IntTensorOps};
use burn::backend::wgpu::{
    CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous,
};
use burn::tensor::{DType, FloatDType, IntDType, Shape};
use cubecl::prelude::KernelId;
use cubecl::server::{BufferBinding, KernelArguments};
use cubecl::{CubeCount, CubeDim};

/// Helpers appended to every kernel: stable `log1p`, softplus and sigmoid.
const STABLE_MATH: &str = include_str!("../../shaders/stable_math.wgsl");

/// Invocations per workgroup (a power of two: the reductions halve it).
const WORKGROUP_SIZE: u32 = 256;

/// The most workgroups a dispatch may have along one dimension (WebGPU's guaranteed limit).
const MAX_GROUPS_PER_DIMENSION: usize = 65_535;

/// One of the shaders, with the workgroup size spliced into its `{{ workgroup_size }}` slots.
struct WgslKernel {
    name: &'static str,
    source: &'static str,
}

impl KernelSource for WgslKernel {
    fn source(&self) -> SourceTemplate {
        SourceTemplate::new(self.source)
            .add_template(STABLE_MATH)
            .register("workgroup_size", WORKGROUP_SIZE.to_string())
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.name, WORKGROUP_SIZE))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

const PREFERENCE_FORWARD: WgslKernel = WgslKernel {
    name: "preference_forward",
    source: include_str!("../../shaders/preference_forward.wgsl"),
};
const PREFERENCE_BACKWARD: WgslKernel = WgslKernel {
    name: "preference_backward",
    source: include_str!("../../shaders/preference_backward.wgsl"),
};
const ROW_LOG_SUM_EXP: WgslKernel = WgslKernel {
    name: "row_log_sum_exp",
    source: include_str!("../../shaders/row_log_sum_exp.wgsl"),
};
const ROW_SOFTMAX_SCALED: WgslKernel = WgslKernel {
    name: "row_softmax_scaled",
    source: include_str!("../../shaders/row_softmax_scaled.wgsl"),
};

/// Mean preference loss `[1]` of `margin_logits` `[batch, 2]` against `correct` `[batch]`.
pub(super) fn preference_forward(
    margin_logits: CubeTensor,
    correct: CubeTensor,
    epsilon: f32,
) -> CubeTensor {
    let margin_logits = as_f32(margin_logits);
    let correct = as_i32(correct);
    let batch = margin_logits.meta.shape()[0];
    let loss = empty_f32(&margin_logits, [1]);
    let params = params(&margin_logits, &[batch as u32, epsilon.to_bits()]);
    launch(
        &margin_logits,
        PREFERENCE_FORWARD,
        CubeCount::Static(1, 1, 1),
        vec![
            binding(&margin_logits),
            binding(&correct),
            binding(&loss),
            binding(&params),
        ],
    );
    loss
}

/// Gradient `[batch, 2]` of the mean preference loss given the loss's own gradient `[1]`.
pub(super) fn preference_backward(
    margin_logits: CubeTensor,
    correct: CubeTensor,
    epsilon: f32,
    grad_loss: CubeTensor,
) -> CubeTensor {
    let margin_logits = as_f32(margin_logits);
    let correct = as_i32(correct);
    let grad_loss = as_f32(grad_loss);
    let batch = margin_logits.meta.shape()[0];
    let grad_logits = empty_f32(&margin_logits, [batch, 2]);
    let params = params(&margin_logits, &[batch as u32, epsilon.to_bits()]);
    launch(
        &margin_logits,
        PREFERENCE_BACKWARD,
        CubeCount::Static(batch.div_ceil(WORKGROUP_SIZE as usize) as u32, 1, 1),
        vec![
            binding(&margin_logits),
            binding(&correct),
            binding(&grad_loss),
            binding(&grad_logits),
            binding(&params),
        ],
    );
    grad_logits
}

/// `[rows]`: `log Σ_v e^(z[t, v])` of each row of `logits` `[rows, vocab]`.
pub(super) fn row_log_sum_exp(logits: CubeTensor) -> CubeTensor {
    let logits = as_f32(logits);
    let [rows, vocab] = [logits.meta.shape()[0], logits.meta.shape()[1]];
    let log_sum_exp = empty_f32(&logits, [rows]);
    let params = params(&logits, &[rows as u32, vocab as u32]);
    launch(
        &logits,
        ROW_LOG_SUM_EXP,
        one_workgroup_per_row(rows),
        vec![binding(&logits), binding(&log_sum_exp), binding(&params)],
    );
    log_sum_exp
}

/// `[rows, vocab]`: `factor[t] · e^(z[t, v] − log_sum_exp[t])`, each row's softmax times its
/// factor, from `logits` `[rows, vocab]` and the row's saved log-sum-exp `[rows]`.
pub(super) fn row_softmax_scaled(
    logits: CubeTensor,
    log_sum_exp: CubeTensor,
    factor: CubeTensor,
) -> CubeTensor {
    let logits = as_f32(logits);
    let log_sum_exp = as_f32(log_sum_exp);
    let factor = as_f32(factor);
    let [rows, vocab] = [logits.meta.shape()[0], logits.meta.shape()[1]];
    let out = empty_f32(&logits, [rows, vocab]);
    let params = params(&logits, &[rows as u32, vocab as u32]);
    launch(
        &logits,
        ROW_SOFTMAX_SCALED,
        one_workgroup_per_row(rows),
        vec![
            binding(&logits),
            binding(&log_sum_exp),
            binding(&factor),
            binding(&out),
            binding(&params),
        ],
    );
    out
}

/// `rows` workgroups, folded into a second dimension past the per-dimension limit; the kernels
/// number rows `x + y·groups.x` and skip the few past the end.
fn one_workgroup_per_row(rows: usize) -> CubeCount {
    let x = rows.clamp(1, MAX_GROUPS_PER_DIMENSION);
    CubeCount::Static(x as u32, rows.div_ceil(x) as u32, 1)
}

fn launch(on: &CubeTensor, kernel: WgslKernel, count: CubeCount, buffers: Vec<BufferBinding>) {
    super::count_wgsl_launch();
    on.client.launch(
        Box::new(SourceKernel::new(kernel, CubeDim::new_1d(WORKGROUP_SIZE))),
        count,
        KernelArguments::new().with_buffers(buffers),
    );
}

fn binding(tensor: &CubeTensor) -> BufferBinding {
    tensor.handle.clone().binding()
}

/// A contiguous `f32` tensor with the same values.
fn as_f32(tensor: CubeTensor) -> CubeTensor {
    let tensor = match tensor.dtype {
        DType::F32 => tensor,
        _ => Cube::float_cast(tensor, FloatDType::F32),
    };
    into_contiguous(tensor)
}

/// A contiguous `i32` tensor with the same values (WGSL has no 64-bit integers).
fn as_i32(tensor: CubeTensor) -> CubeTensor {
    let tensor = match tensor.dtype {
        DType::I32 => tensor,
        _ => Cube::int_cast(tensor, IntDType::I32),
    };
    into_contiguous(tensor)
}

/// A new, uninitialised contiguous `f32` tensor on `like`'s device.
fn empty_f32<const D: usize>(like: &CubeTensor, shape: [usize; D]) -> CubeTensor {
    let shape = Shape::new(shape);
    let handle = like.client.empty(shape.num_elements() * DType::F32.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        handle,
        DType::F32,
    )
}

/// A `u32` parameter buffer on `like`'s device.
fn params(like: &CubeTensor, values: &[u32]) -> CubeTensor {
    let handle = like.client.create_from_slice(bytemuck::cast_slice(values));
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::new([values.len()]),
        handle,
        DType::U32,
    )
}
