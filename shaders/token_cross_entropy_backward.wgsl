// Masked token cross-entropy, backward pass: one workgroup per token row, writing the one
// [tokens, vocab] gradient buffer directly from the logits and the saved log-sum-exp:
//     ∂L/∂z[t, v] = g·mask_t/N·(softmax(z_t)[v] − [v = target_t]),   softmax(z_t)[v] = e^(z[t,v] − lse_t),
// with g the incoming gradient of the loss and 1/N = scale[0] from the forward pass.

@group(0) @binding(0) var<storage, read> logits: array<f32>;            // [tokens, vocab]
@group(0) @binding(1) var<storage, read> targets: array<i32>;           // [tokens]
@group(0) @binding(2) var<storage, read> mask: array<f32>;              // [tokens]
@group(0) @binding(3) var<storage, read> log_sum_exp: array<f32>;       // [tokens]
@group(0) @binding(4) var<storage, read> scale: array<f32>;             // [1]
@group(0) @binding(5) var<storage, read> grad_loss: array<f32>;         // [1]
@group(0) @binding(6) var<storage, read_write> grad_logits: array<f32>; // [tokens, vocab]
@group(0) @binding(7) var<storage, read> params: array<u32>;            // [tokens, vocab]

const WORKGROUP_SIZE: u32 = {{ workgroup_size }}u;

@compute @workgroup_size({{ workgroup_size }}, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tokens = params[0];
    let vocab = params[1];
    let row = wid.x + wid.y * groups.x;
    if row >= tokens {
        return;
    }
    let base = row * vocab;
    let coefficient = grad_loss[0] * mask[row] * scale[0];

    if coefficient == 0.0 {
        for (var v = lid; v < vocab; v += WORKGROUP_SIZE) {
            grad_logits[base + v] = 0.0;
        }
        return;
    }

    let lse = log_sum_exp[row];
    let target_index = targets[row];
    for (var v = lid; v < vocab; v += WORKGROUP_SIZE) {
        let p = exp(logits[base + v] - lse);
        let one_hot = select(0.0, 1.0, i32(v) == target_index);
        grad_logits[base + v] = coefficient * (p - one_hot);
    }
}
