// Masked mean of per-token losses (one workgroup): loss = Σ masked_nll / max(Σ mask, 1), and
// scale = 1 / max(Σ mask, 1), which the backward pass multiplies into every gradient.

@group(0) @binding(0) var<storage, read> masked_nll: array<f32>;   // [tokens]
@group(0) @binding(1) var<storage, read> mask: array<f32>;         // [tokens]
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;   // [1]
@group(0) @binding(3) var<storage, read_write> scale: array<f32>;  // [1]
@group(0) @binding(4) var<storage, read> params: array<u32>;       // [tokens]

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;

var<workgroup> nll_sums: array<f32, WORKGROUP_SIZE>;
var<workgroup> mask_sums: array<f32, WORKGROUP_SIZE>;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32) {
    let tokens = params[0];
    var nll_sum = 0.0;
    var mask_sum = 0.0;
    for (var t = lid; t < tokens; t += WORKGROUP_SIZE) {
        nll_sum += masked_nll[t];
        mask_sum += mask[t];
    }
    nll_sums[lid] = nll_sum;
    mask_sums[lid] = mask_sum;
    workgroupBarrier();

    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            nll_sums[lid] += nll_sums[lid + stride];
            mask_sums[lid] += mask_sums[lid + stride];
        }
        workgroupBarrier();
    }

    if lid == 0u {
        let count = max(mask_sums[0], 1.0);
        loss[0] = nll_sums[0] / count;
        scale[0] = 1.0 / count;
    }
}
