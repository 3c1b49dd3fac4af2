//! Benchmark: causal grouped-query attention on `cpu`, burn's fused op on flex against gram's
//! kernel (`gram::matmul::attention`: products on the system's BLAS, keys after a block's last
//! row never formed, a SIMD softmax), on the shapes judging the default model meets.
//!
//! ```text
//! cargo run --example attention_bench -- [--heads 9] [--kv-heads 3] [--head-dim 64]
//! ```
//!
//! Each shape is `P` cached prefix positions and `T` new rows (a prefill when `P = 0`; a
//! response after a shared prompt otherwise). FLOPs are those a causal attention needs, 4·h·d
//! multiply-adds ×2 per (query, visible key) pair, `4·h·d·(T·P + T(T+1)/2)`, so a kernel that
//! forms the masked half too is not credited for it. The product's own rate (a 1024³ f32
//! matmul through `gram::matmul::linear`, best of 5) is measured in the same run as the anchor.
//! Each timing is the best of three batches of repetitions; the largest difference between
//! the two outputs is printed beside it.

mod bench;

use bench::{Result, arg_or, matmul_gflops, matmul_seconds, share};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, FloatDType, Tensor};
use gram::matmul::attention::{causal_attention, takes};
use std::time::Instant;

fn main() -> Result<()> {
    let heads: usize = arg_or("--heads", 9)?;
    let kv_heads: usize = arg_or("--kv-heads", 3)?;
    let d: usize = arg_or("--head-dim", 64)?;
    let device = Device::flex();
    let peak = matmul_gflops(1024, matmul_seconds(&device, 1024, FloatDType::F32));
    println!(
        "heads {heads}, key/value heads {kv_heads}, head width {d}; f32 matmul 1024³: {peak:.1} GFLOP/s ({})",
        gram::matmul::blas::name().unwrap_or("flex's gemm: no BLAS, so gram's kernel is not used")
    );
    println!(
        "\n| P | T | flex's op, ms | GFLOP/s (% of matmul) | gram, ms | GFLOP/s (% of matmul) | speed-up | max difference |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (p, t) in [
        (0, 100),
        (0, 400),
        (0, 1000),
        (0, 2000),
        (500, 50),
        (900, 300),
    ] {
        let random = |heads, rows| {
            Tensor::<4>::random([1, heads, rows, d], Distribution::Normal(0.0, 1.0), &device)
        };
        let (q, k, v) = (
            random(heads, t),
            random(kv_heads, p + t),
            random(kv_heads, p + t),
        );
        if !takes(&q, &k, &v) {
            return Err("gram's attention kernel does not take these shapes (see `takes`)".into());
        }
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let flex = || attention(q.clone(), k.clone(), v.clone(), None, None, options);
        let gram = || causal_attention(q.clone(), k.clone(), v.clone());
        let read = |x: Tensor<4>| x.into_data().try_to_vec::<f32>().expect("f32 output");
        let difference = read(flex())
            .iter()
            .zip(read(gram()))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let (t, p) = (t as f64, p as f64);
        let flops = 4.0 * (heads * d) as f64 * (t * p + t * (t + 1.0) / 2.0);
        let repetitions = (2e9 / flops).clamp(3.0, 200.0) as usize;
        let seconds = |run: &dyn Fn() -> Tensor<4>| {
            let mut best = f64::MAX;
            for _ in 0..3 {
                let start = Instant::now();
                for _ in 0..repetitions {
                    read(run());
                }
                best = best.min(start.elapsed().as_secs_f64() / repetitions as f64);
            }
            best
        };
        let (flex_s, gram_s) = (seconds(&flex), seconds(&gram));
        let rate = |s: f64| share(flops / s / 1e9, peak);
        println!(
            "| {p} | {t} | {:.2} | {} | {:.2} | {} | {:.2}× | {difference:.1e} |",
            flex_s * 1e3,
            rate(flex_s),
            gram_s * 1e3,
            rate(gram_s),
            flex_s / gram_s
        );
    }
    Ok(())
}
