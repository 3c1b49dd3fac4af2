//! Benchmark: judge the first N pairs of HH-RLHF helpful-base with the default model and report
//! throughput against the device's own measured matmul rate.
//!
//! ```text
//! cargo run --example judge_bench -- [--device cpu] [--pairs 32] [--batch-size 1] [--model PATH]
//! ```
//!
//! FLOPs are counted, not estimated from time: for each forward pass the judge runs (shared
//! prefixes once, then the rest of each sequence, padding included), the decoder's matmuls
//! (`ModelConfig::forward_flops`) plus 2·2·d for the two verdict logits. The
//! device's peak is measured in the same run with a square f32 matmul, so the utilisation
//! printed is "fraction of what this device does on burn's best case".
//! Yardstick: the authors' recipe (transformers, batch 1, both orders, full-vocabulary logits)
//! reaches about 0.40 pairs/s on the 2-core CI machine.

use burn::tensor::{Device, Distribution, Tensor};
use gram::data::{self, Content, Format};
use gram::judge::{GramJudge, JudgeOptions};
use gram::{Judge, Pair};
use std::path::PathBuf;
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// GFLOP/s of an `n × n` by `n × n` f32 matmul on `device` (best of several runs).
fn matmul_rate(device: &Device, n: usize) -> f64 {
    let a = Tensor::<2>::random([n, n], Distribution::Default, device);
    let b = Tensor::<2>::random([n, n], Distribution::Default, device);
    let _ = a.clone().matmul(b.clone()).into_data(); // warm-up (and autotune)
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let _ = a.clone().matmul(b.clone()).into_data();
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

fn main() -> gram::Result<()> {
    let device = gram::device::select(&arg("--device").unwrap_or_else(|| "cpu".into()))?;
    let n_pairs: usize = arg("--pairs").map_or(32, |s| s.parse().expect("--pairs N"));
    let batch_size: usize = arg("--batch-size").map_or(1, |s| s.parse().expect("--batch-size N"));
    let home = std::env::var("HOME").unwrap_or_default();
    let model = arg("--model").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(home).join(".cache/gram/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    let shared = std::env::var("GRAM_SHARED").unwrap_or_else(|_| "../shared".into());
    let data_file = PathBuf::from(shared).join("data/hh-rlhf/helpful-base.test.jsonl.gz");

    let pairs: Vec<Pair> = data::open(&data_file, Format::Hh)?
        .take(n_pairs)
        .map(|r| match r?.content {
            Content::Preference(p) => Ok(p.as_pair()),
            _ => unreachable!("HH rows are preferences"),
        })
        .collect::<gram::Result<_>>()?;

    println!("device: {}", gram::device::describe(&device));
    let peak = matmul_rate(&device, 1024);
    println!("measured matmul rate (1024^3, f32): {peak:.1} GFLOP/s");

    let options = JudgeOptions {
        batch_size,
        ..JudgeOptions::default()
    };
    let mut judge = GramJudge::load(&model, &device, options)?;
    // What judging every ordered sequence whole would cost: the FLOPs of the naive recipe.
    let mut whole_flops = 0.0;
    let config = judge.model().config.clone();
    for pair in &pairs {
        for (a, b) in [
            (&pair.response_a, &pair.response_b),
            (&pair.response_b, &pair.response_a),
        ] {
            let text = judge.prompts().render(&pair.prompt, a, b)?;
            let t = judge.prompts().codec().encode(&text)?.len();
            whole_flops += config.forward_flops(t, t) + 2.0 * 2.0 * config.hidden_size as f64;
        }
    }
    // Warm-up on one pair (kernel compilation, autotune, the template prefix) before timing.
    judge.judge(&pairs[..1])?;
    let before = judge.stats();
    let start = Instant::now();
    let verdicts = judge.judge(&pairs)?;
    let seconds = start.elapsed().as_secs_f64();
    let stats = judge.stats();
    let tokens = stats.tokens - before.tokens;
    let computed = stats.computed_tokens - before.computed_tokens;
    let padding = stats.padding - before.padding;
    let flops = stats.flops - before.flops;
    let correct = verdicts.iter().filter(|v| v.p_a > 0.5).count();
    let n = pairs.len() as f64;

    println!(
        "pairs: {}  (batch size {batch_size}, {} forward passes)",
        pairs.len(),
        stats.batches - before.batches
    );
    println!("time: {seconds:.2} s");
    println!(
        "throughput: {:.3} pairs/s, {:.0} judged tokens/s ({:.0} run through the model/s)",
        n / seconds,
        tokens as f64 / seconds,
        computed as f64 / seconds
    );
    println!(
        "tokens per pair: {:.0} judged, {:.0} run ({:.0}% served from shared prefixes, {:.1}% padding)",
        tokens as f64 / n,
        computed as f64 / n,
        100.0 * (1.0 - (computed - padding) as f64 / tokens as f64),
        100.0 * padding as f64 / computed.max(1) as f64
    );
    println!(
        "work: {:.1} GFLOP per pair run ({:.1} GFLOP per pair to run every sequence whole)",
        flops / n / 1e9,
        whole_flops / n / 1e9
    );
    let achieved = flops / seconds / 1e9;
    println!(
        "achieved: {achieved:.1} GFLOP/s = {:.0}% of the measured matmul rate",
        100.0 * achieved / peak
    );
    println!(
        "accuracy (chosen as A): {:.3} on {} pairs",
        correct as f64 / n,
        pairs.len()
    );
    println!("yardstick: transformers batch-1 recipe ~0.40 pairs/s on the 2-core CI machine");
    Ok(())
}
