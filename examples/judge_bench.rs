//! Benchmark: judge the first N pairs of HH-RLHF helpful-base (or, with `--workload rm-bench`,
//! whole 3 × 3 grids of RM-Bench rows) in both orders with gram and, in the same process tree,
//! with the transformers + PyTorch recipe on the same token ids (`scripts/torch_bench.py`, when
//! `torch`, `transformers` and `gguf` are importable), and print both throughputs, their ratio,
//! and each side's fraction of its own measured matmul rate.
//!
//! ```text
//! cargo run --release --example judge_bench -- [--device cpu] [--dtype auto|f32|f16|bf16]
//!     [--pairs 32] [--batch-size B] [--rounds 2] [--model PATH] [--no-torch]
//!     [--workload hh|rm-bench]
//! ```
//!
//! RM-Bench's comparisons share more than a question: each response of a row is shown first in
//! three of its eighteen ordered sequences, which gram's nested prefix sharing runs once.
//!
//! The two sides alternate, round by round (gram, PyTorch, gram, PyTorch, …), and each reports
//! its best round, so a burst of load on a shared machine hurts both alike; the ratio is of
//! the bests. gram runs its judge ([`GramJudge::margins`]: shared prefixes once, passes of
//! `--batch-size` sequences, by default what `gram judge` takes,
//! [`gram::judge::DEFAULT_BATCH_SIZE`]); PyTorch runs the usual recipe, each ordered sequence
//! whole at batch 1.
//!
//! FLOPs are counted, not estimated from time: for gram, each forward pass it runs (shared
//! prefixes once, then the rest of each sequence, padding included),
//! `ModelConfig::forward_flops` plus 2·2·d for the two verdict logits; for PyTorch, every
//! sequence whole, plus 2·vocab·d for its output projection at the last position. Each side's
//! matmul rate (a square f32 `--matmul-size` matmul, the best probe of the run: before the
//! timed rounds and after each, [`bench::MatmulRate`]) is measured in the same run,
//! and gram's also in the weights' type when `--dtype` makes it 16-bit (its utilisation is
//! then of that rate). The PyTorch side always runs f32.

mod bench;

use bench::{MatmulRate, Result, Torch, arg_or, cell, share};
use burn::tensor::FloatDType;
use clap::ValueEnum;
use gram::dtype::Dtype;
use gram::judge::{GramJudge, JudgeOptions};
use std::time::Instant;

fn main() -> Result<()> {
    let device = gram::device::select(&bench::arg("--device").unwrap_or_else(|| "cpu".into()))?;
    let n_pairs: usize = arg_or("--pairs", 32)?;
    let batch_size: usize = arg_or("--batch-size", gram::judge::DEFAULT_BATCH_SIZE)?;
    let rounds: usize = arg_or("--rounds", 2)?;
    let matmul_size: usize = arg_or("--matmul-size", 1024)?;
    let dtype_flag = bench::arg("--dtype").unwrap_or_else(|| "auto".into());
    let dtype = Dtype::from_str(&dtype_flag, true).map_err(|_| "--dtype auto|f32|f16|bf16")?;
    let weights = dtype.resolve(&device)?;
    let model = bench::model_path();
    let workload_name = bench::arg("--workload").unwrap_or_else(|| "hh".into());
    let (pairs, described): (Vec<gram::Pair>, &str) = match workload_name.as_str() {
        "hh" => (
            bench::hh_pairs(n_pairs)?
                .iter()
                .map(gram::Preference::as_pair)
                .collect(),
            "pairs of HH-RLHF helpful-base test",
        ),
        "rm-bench" => (
            bench::rm_bench_pairs(n_pairs)?,
            "RM-Bench comparisons (whole 3 × 3 rows, the domains in turn)",
        ),
        other => return Err(format!("--workload hh|rm-bench, not {other}").into()),
    };

    let options = JudgeOptions {
        batch_size,
        dtype,
        ..JudgeOptions::default()
    };
    let mut judge = GramJudge::load(&model, &device, options)?;
    let config = judge.model().config.clone();
    // Both orders of every pair, as the judge builds them.
    let mut sequences = Vec::with_capacity(2 * pairs.len());
    for p in &pairs {
        for (a, b) in [
            (&p.response_a, &p.response_b),
            (&p.response_b, &p.response_a),
        ] {
            sequences.push(judge.prompts().sequence(&p.prompt, a, b)?.ids);
        }
    }
    let d = config.hidden_size as f64;
    let whole_flops: f64 = (sequences.iter())
        .map(|s| config.forward_flops(s.len(), s.len()) + 2.0 * config.vocab_size as f64 * d)
        .sum();
    let workload = serde_json::json!({
        "verdict_tokens": judge.verdict_tokens(),
        "judge": sequences,
    });
    let mut torch = Torch::start(&model, &workload)?;

    println!("device: {}", gram::device::describe(&device));
    println!(
        "workload: {} {described}, both orders, {} tokens per pair",
        pairs.len(),
        sequences.iter().map(Vec::len).sum::<usize>() / pairs.len()
    );
    if let Some(report) = judge.load_report() {
        println!("weights: {report}");
    }
    // gram's yardstick is the matmul rate in the weights' type (bf16 matmuls widen to f32 on
    // flex); its f32 rate is shown beside PyTorch's.
    let mut gram_f32_rate = MatmulRate::new(matmul_size);
    let mut gram_rate = MatmulRate::new(matmul_size);
    let mut torch_rate = MatmulRate::new(matmul_size);
    let mut probe = |torch: Option<&mut Torch>| -> Result<()> {
        gram_f32_rate.probe_gram(&device, FloatDType::F32);
        if weights != FloatDType::F32 {
            gram_rate.probe_gram(&device, weights);
        }
        torch_rate.probe_torch(torch)
    };
    probe(torch.as_mut())?;

    // Warm-up (kernel compilation, autotune, the template prefix) before timing.
    judge.margins(&sequences[..2])?;
    // NaN until a round is timed (`f64::min` skips NaN): without the PyTorch side its
    // column stays NaN.
    let (mut gram_best, mut torch_best) = (f64::NAN, f64::NAN);
    let mut gram_flops = 0.0;
    let (mut correct, mut computed) = (0, 0);
    for round in 0..rounds {
        let before = judge.stats();
        let start = Instant::now();
        let margins = judge.margins(&sequences)?;
        let seconds = start.elapsed().as_secs_f64();
        let after = judge.stats();
        gram_flops = after.flops - before.flops;
        computed = after.computed_tokens - before.computed_tokens;
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        correct = (margins.chunks(2))
            .filter(|m| sigmoid(m[0]) + sigmoid(-m[1]) > 1.0) // p_a > 1/2
            .count();
        let torch_seconds = match torch.as_mut() {
            Some(t) => Torch::number(&t.ask("judge")?, "seconds")?,
            None => f64::NAN,
        };
        let beside = match torch {
            Some(_) => format!(", PyTorch {torch_seconds:.2} s"),
            None => String::new(),
        };
        println!("round {}: gram {seconds:.2} s{beside}", round + 1);
        gram_best = gram_best.min(seconds);
        torch_best = torch_best.min(torch_seconds);
        probe(torch.as_mut())?;
    }
    let (gram_f32_peak, torch_peak) = (gram_f32_rate.gflops(), torch_rate.gflops());
    let gram_peak = match weights {
        FloatDType::F32 => gram_f32_peak,
        other => {
            let rate = gram_rate.gflops();
            println!("gram {other:?} matmul {matmul_size}³: {rate:.1} GFLOP/s");
            rate
        }
    };

    let n = pairs.len() as f64;
    println!("\n| judging, batch {batch_size} | gram | transformers + PyTorch | ratio |");
    println!("|---|---|---|---|");
    let torch_rate = n / torch_best;
    println!(
        "| pairs/s | {:.3} | {} | {} |",
        n / gram_best,
        cell(torch_rate, 3),
        cell(torch_best / gram_best, 2)
    );
    println!(
        "| f32 matmul {matmul_size}³, GFLOP/s | {gram_f32_peak:.1} | {} | {} |",
        cell(torch_peak, 1),
        cell(gram_f32_peak / torch_peak, 2)
    );
    let gram_achieved = gram_flops / gram_best / 1e9;
    let torch_achieved = whole_flops / torch_best / 1e9;
    println!(
        "| achieved GFLOP/s (% of own matmul rate) | {gram_achieved:.1} ({:.0}%) | {} | |",
        100.0 * gram_achieved / gram_peak,
        share(torch_achieved, torch_peak)
    );
    println!(
        "| GFLOP per pair | {:.1} | {:.1} | |",
        gram_flops / n / 1e9,
        whole_flops / n / 1e9
    );
    println!(
        "\ntokens per pair: {:.0} judged, {:.0} run through the model by gram (shared prefixes once)",
        sequences.iter().map(Vec::len).sum::<usize>() as f64 / n,
        computed as f64 / n
    );
    if let Some(pools) = device.memory_pool_usage() {
        println!(
            "device memory held by burn's pools after the run: {:.2} GB ({:.2} GB in use)",
            pools.bytes_reserved as f64 / 1e9,
            pools.bytes_in_use as f64 / 1e9
        );
    }
    println!(
        "peak process memory (VmHWM): {:.2} GB",
        bench::peak_rss_bytes() as f64 / 1e9
    );
    println!(
        "accuracy (chosen as A, both orders averaged): {:.3} on {} pairs",
        correct as f64 / n,
        pairs.len()
    );
    Ok(())
}
