//! Benchmark: training steps on the first N pairs of HH-RLHF helpful-base with gram and, in the
//! same process tree, with transformers + PyTorch on the same token ids and micro-batches
//! (`scripts/torch_bench.py`, when `torch`, `transformers` and `gguf` are importable): examples
//! per second, peak memory, and each side's fraction of its own measured matmul rate.
//!
//! ```text
//! cargo run --release --example train_bench -- [--stage 2|1] [--pairs 16] [--batch-size N]
//!     [--train-layers 6] [--max-len 512] [--rounds 2] [--device cpu] [--model PATH] [--no-torch]
//! ```
//!
//! Stage 2 (default): each pair in both orders, micro-batches of `--batch-size` (default 4 = 2
//! pairs × 2 orders), the label-smoothed verdict loss. Stage 1: one generation example per pair
//! (prompt, then both responses), micro-batches of 2 by default, the mean token cross-entropy
//! over the full vocabulary. Both sides: the top `--train-layers` layers and the final norm
//! train, AdamW at the default lr (1e-4 on SmolLM2), gradients clipped to norm 1, one optimizer step per micro-batch, one
//! untimed step first. The two sides alternate round by round; each reports its best round.
//!
//! Model FLOPs per example of length T (the same count for both sides, whole sequences, no
//! credit for gram's shared prefixes): the forward pass through every layer, twice that again
//! for the backward pass through the trainable layers, and for stage 1 2·2·vocab·d per target
//! token (logits and their gradient with respect to the hidden state).
//!
//! Each side's matmul rate is its best square f32 `--matmul-size` probe of the run, before the
//! timed rounds and after each ([`bench::MatmulRate`]).
//!
//! Peak memory is each process's peak resident set during the timed steps (reset before them;
//! the weights count, so both sides start from what they hold after loading).

mod bench;

use bench::{MatmulRate, Result, Torch, arg_or, cell, share};
use burn::tensor::FloatDType;
use gram::checkpoint::Checkpoint;
use gram::model::Llama;
use gram::prompt::{PromptBuilder, PromptTemplate, verdict_tokens};
use gram::train::{Objective, TrainExample, TrainOptions, Trainer};
use gram::train::{generation_example, verdict_examples};
use std::time::Instant;

fn main() -> Result<()> {
    let device = gram::device::select(&bench::arg("--device").unwrap_or_else(|| "cpu".into()))?;
    let stage: u32 = arg_or("--stage", 2)?;
    let objective = match stage {
        1 => Objective::Generation,
        2 => Objective::Gram,
        _ => return Err(format!("--stage {stage}: expected 1 or 2").into()),
    };
    let n_pairs: usize = arg_or("--pairs", 16)?;
    let batch_size: usize = arg_or("--batch-size", if stage == 2 { 4 } else { 2 })?;
    let train_layers: usize = arg_or("--train-layers", 6)?;
    let max_len: usize = arg_or("--max-len", 512)?;
    let rounds: usize = arg_or("--rounds", 2)?;
    let matmul_size: usize = arg_or("--matmul-size", 1024)?;
    let model = bench::model_path();
    let pairs = bench::hh_pairs(n_pairs)?;

    let mut checkpoint = Checkpoint::load(&model)?;
    let llama = Llama::from_checkpoint(&mut checkpoint, &device.clone().autodiff())?;
    let codec = checkpoint.codec.clone();
    drop(checkpoint);
    let config = llama.config.clone();
    let labels = ("A".to_string(), "B".to_string());
    let prompts = PromptBuilder::new(
        codec.clone(),
        PromptTemplate::new(gram::prompt::DEFAULT_TEMPLATE)?,
        true,
        max_len,
    );
    let mut examples = Vec::new();
    for p in &pairs {
        match objective {
            Objective::Gram => examples.extend(verdict_examples(&prompts, p)?),
            _ => examples.extend(generation_example(
                &codec,
                &p.prompt,
                &p.chosen,
                &p.rejected,
                max_len,
            )?),
        }
    }
    let steps = examples.len() / batch_size;
    if steps < 2 {
        return Err(format!(
            "{} examples make fewer than 2 batches of {batch_size}",
            examples.len()
        )
        .into());
    }
    examples.truncate(steps * batch_size);

    let mut options = TrainOptions::new(
        objective,
        verdict_tokens(&codec, &labels)?,
        codec.padding_id(),
    );
    options.batch_size = batch_size;
    options.train_layers = Some(train_layers);
    let lr = options.peak_lr(config.hidden_size);
    let mut trainer = Trainer::new(llama, options.clone(), None)?;

    let (flops, targets) = model_flops(&config, &examples, train_layers);
    let batches: Vec<&[TrainExample]> = examples.chunks(batch_size).collect();
    let json_batches: Vec<Vec<serde_json::Value>> = (batches.iter())
        .map(|b| b.iter().map(example_json).collect())
        .collect();
    let workload = serde_json::json!({
        "verdict_tokens": options.verdict_tokens,
        "pad_id": options.pad_id,
        "train": {
            "objective": if stage == 2 { "gram" } else { "generation" },
            "train_layers": train_layers,
            "lr": lr,
            "adam_epsilon": options.adam_epsilon,
            "label_smoothing": options.label_smoothing,
            "batches": json_batches,
        },
    });
    let mut torch = Torch::start(&model, &workload)?;

    println!("device: {}", gram::device::describe(&device));
    let tokens: usize = examples.iter().map(TrainExample::tokens).sum();
    println!(
        "workload: stage {stage}, {} examples from {} HH pairs ({} tokens, {targets} target tokens), {steps} steps of {batch_size}, top {train_layers} layers train",
        examples.len(),
        pairs.len(),
        tokens
    );
    let (mut gram_rate, mut torch_rate) =
        (MatmulRate::new(matmul_size), MatmulRate::new(matmul_size));
    gram_rate.probe_gram(&device, FloatDType::F32);
    torch_rate.probe_torch(torch.as_mut())?;

    trainer.train_step(batches[0], lr)?; // untimed: first-call allocations
    // NaN until a round is timed (`f64::min` skips NaN): without the PyTorch side its
    // column stays NaN.
    let (mut gram_best, mut torch_best) = (f64::NAN, f64::NAN);
    let (mut gram_memory, mut torch_memory) = (0u64, 0u64);
    for round in 0..rounds {
        bench::reset_peak_rss();
        let start = Instant::now();
        let mut loss = 0.0;
        for batch in &batches {
            loss += trainer.train_step(batch, lr)?.0;
        }
        let seconds = start.elapsed().as_secs_f64();
        gram_memory = gram_memory.max(bench::peak_rss_bytes());
        let (torch_seconds, torch_loss) = match torch.as_mut() {
            Some(t) => {
                let reply = t.ask("train")?;
                torch_memory = torch_memory.max(Torch::number(&reply, "peak_rss_bytes")? as u64);
                (
                    Torch::number(&reply, "seconds")?,
                    Torch::number(&reply, "loss")?,
                )
            }
            None => (f64::NAN, f64::NAN),
        };
        let beside = match torch {
            Some(_) => format!(", PyTorch {torch_seconds:.2} s (mean loss {torch_loss:.4})"),
            None => String::new(),
        };
        println!(
            "round {}: gram {seconds:.2} s (mean loss {:.4}){beside}",
            round + 1,
            loss / steps as f64
        );
        gram_best = gram_best.min(seconds);
        torch_best = torch_best.min(torch_seconds);
        gram_rate.probe_gram(&device, FloatDType::F32);
        torch_rate.probe_torch(torch.as_mut())?;
    }
    let (gram_peak, torch_peak) = (gram_rate.gflops(), torch_rate.gflops());

    let n = examples.len() as f64;
    let unit = if stage == 2 { "pairs/s" } else { "examples/s" };
    let per = if stage == 2 { 0.5 } else { 1.0 }; // a pair is two stage-2 examples
    println!("\n| stage {stage}, batch {batch_size} | gram | transformers + PyTorch | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| {unit} | {:.3} | {} | {} |",
        per * n / gram_best,
        cell(per * n / torch_best, 3),
        cell(torch_best / gram_best, 2)
    );
    println!(
        "| tokens/s | {:.0} | {} | {} |",
        tokens as f64 / gram_best,
        cell(tokens as f64 / torch_best, 0),
        cell(torch_best / gram_best, 2)
    );
    let gram_gb = gram_memory as f64 / 1e9;
    let torch_gb = match torch {
        Some(_) => torch_memory as f64 / 1e9,
        None => f64::NAN,
    };
    println!(
        "| peak memory, GB | {gram_gb:.2} | {} | {} |",
        cell(torch_gb, 2),
        cell(gram_gb / torch_gb, 2)
    );
    println!(
        "| f32 matmul {matmul_size}³, GFLOP/s | {gram_peak:.1} | {} | {} |",
        cell(torch_peak, 1),
        cell(gram_peak / torch_peak, 2)
    );
    let (gram_achieved, torch_achieved) = (flops / gram_best / 1e9, flops / torch_best / 1e9);
    println!(
        "| model GFLOP/s (% of own matmul rate) | {gram_achieved:.1} ({:.0}%) | {} | |",
        100.0 * gram_achieved / gram_peak,
        share(torch_achieved, torch_peak)
    );
    Ok(())
}

/// Model FLOPs of one pass over `examples` (see the module docs) and the number of target tokens.
fn model_flops(
    config: &gram::config::ModelConfig,
    examples: &[TrainExample],
    train_layers: usize,
) -> (f64, usize) {
    let layers = config.num_hidden_layers as f64;
    let backward = 2.0 * train_layers as f64 / layers;
    let (mut flops, mut targets) = (0.0, 0);
    for example in examples {
        let t = example.tokens();
        flops += config.forward_flops(t, t) * (1.0 + backward);
        if let TrainExample::Generation { ids, target_start } = example {
            let n = ids.len() - target_start;
            targets += n;
            flops += 2.0 * 2.0 * (config.vocab_size * config.hidden_size * n) as f64;
        }
    }
    (flops, targets)
}

/// An example as scripts/torch_bench.py reads it.
fn example_json(example: &TrainExample) -> serde_json::Value {
    match example {
        TrainExample::Verdict { ids, correct } => {
            serde_json::json!({"ids": ids, "correct": correct})
        }
        TrainExample::Generation { ids, target_start } => {
            serde_json::json!({"ids": ids, "target_start": target_start})
        }
        TrainExample::Comparison { .. } => serde_json::json!({}),
    }
}
