// Preference loss, forward pass (one workgroup for the whole batch).
//
// For pair i with verdict logits (z_A, z_B) and correct verdict c, Δ_i = z_c − z_other and
//     L_i = softplus(−Δ_i) + ε·Δ_i = −(1−ε)·log p(c) − ε·log p(other),
// and the kernel writes mean_i L_i to loss[0]. Each invocation sums a strided slice of the
// batch, then the workgroup adds the partial sums in a tree.

@group(0) @binding(0) var<storage, read> margin_logits: array<f32>; // [batch, 2], row-major
@group(0) @binding(1) var<storage, read> correct: array<i32>;       // [batch], 0 = A, 1 = B
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;    // [1]
@group(0) @binding(3) var<storage, read> params: array<u32>;        // [batch, bits of ε]

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;

var<workgroup> partial_sums: array<f32, WORKGROUP_SIZE>;

// Δ = z_correct − z_other for pair `i`; a label other than 0 or 1 is read as 1 (B).
fn margin(i: u32) -> f32 {
    let c = u32(clamp(correct[i], 0, 1));
    return margin_logits[2u * i + c] - margin_logits[2u * i + 1u - c];
}

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(@builtin(local_invocation_index) lid: u32) {
    let batch = params[0];
    let epsilon = bitcast<f32>(params[1]);

    var sum = 0.0;
    for (var i = lid; i < batch; i += WORKGROUP_SIZE) {
        let delta = margin(i);
        sum += softplus(-delta) + epsilon * delta;
    }
    partial_sums[lid] = sum;
    workgroupBarrier();

    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            partial_sums[lid] += partial_sums[lid + stride];
        }
        workgroupBarrier();
    }

    if lid == 0u {
        loss[0] = partial_sums[0] / f32(batch);
    }
}
