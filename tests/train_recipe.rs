//! Training as users drive it: the command-line options are `TrainOptions` itself, and the
//! library recipe (data file → examples → training → plot → export → resume) end to end.

mod common;

use burn::tensor::Device;
use gram::checkpoint::Checkpoint;
use gram::model::Llama;
use gram::train::{self, Objective, TrainOptions, Trainer};

/// The training flags are `TrainOptions` itself: defaults written once, parsed by clap, and
/// the same as `TrainOptions::new`.
#[test]
fn options_are_the_command_line_flags() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: TrainOptions,
    }
    let defaults = Cli::try_parse_from(["gram"]).unwrap().options;
    assert_eq!(defaults, TrainOptions::new(Objective::Gram, [0, 0], 0));
    assert_eq!(
        (defaults.epochs, defaults.max_steps, defaults.batch_size),
        (1.0, None, 4)
    );
    assert_eq!(
        (defaults.grad_accum, defaults.lr, defaults.warmup_ratio),
        (1, 1e-5, 0.03)
    );
    assert_eq!(
        (
            defaults.min_lr_ratio,
            defaults.weight_decay,
            defaults.max_grad_norm
        ),
        (0.1, 0.0, 1.0)
    );
    assert_eq!(
        defaults.label_smoothing,
        gram::loss::DEFAULT_LABEL_SMOOTHING
    );
    assert_eq!((defaults.lora_rank, defaults.lora_alpha), (None, 16.0));
    assert_eq!(
        (defaults.seed, defaults.eval_every, defaults.save_every),
        (0, 0, 0)
    );
    assert!(!defaults.gradient_checkpointing && defaults.train_layers.is_none());
    let given = Cli::try_parse_from([
        "gram",
        "--max-steps",
        "7",
        "--lr",
        "3e-4",
        "--lora-rank",
        "8",
        "--gradient-checkpointing",
    ])
    .unwrap()
    .options;
    assert_eq!(
        (
            given.max_steps,
            given.lr,
            given.lora_rank,
            given.gradient_checkpointing
        ),
        (Some(7), 3e-4, Some(8), true)
    );
    assert!(Cli::try_parse_from(["gram", "--epochs", "2", "--max-steps", "3"]).is_err());
    assert!(Cli::try_parse_from(["gram", "--train-layers", "2", "--lora-rank", "4"]).is_err());
}

/// The library recipe end to end on a tiny model: examples from a data file, training with
/// held-out evaluation, metrics.svg, the exported model; `resume` continues to a larger
/// budget; `init` takes the weights from one directory and the tokenizer from `model` (the
/// GGUF file, whose weights are not read).
#[test]
fn recipe_trains_plots_exports_and_resumes() {
    use gram::train::Recipe;
    let codec = Checkpoint::load(&common::model_path()).unwrap().codec;
    let mut config = common::tiny_config(codec.vocab_size(), 2);
    config.max_position_embeddings = 512;
    let base = common::temp_dir("recipe-base");
    let random = Trainer::new(
        Llama::random(&config, &Device::flex()),
        TrainOptions::new(Objective::Gram, [0, 0], 0),
        None,
    )
    .unwrap();
    train::export(&random.model, &codec, &base).unwrap();
    let data_dir = common::temp_dir("recipe-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let data = data_dir.join("pairs.jsonl");
    let rows = [
        ("What is 2+2?", "4", "5"),
        ("Capital of France?", "Paris.", "Rome."),
        ("Say hi.", "Hi!", "No."),
    ];
    let jsonl: String = rows
        .iter()
        .map(|(p, c, r)| {
            format!(
                "{}\n",
                serde_json::json!({"prompt": p, "chosen": c, "rejected": r})
            )
        })
        .collect();
    std::fs::write(&data, jsonl).unwrap();

    let output = common::temp_dir("recipe-run");
    let mut options = TrainOptions::new(Objective::Gram, [0, 0], 0);
    options.max_steps = Some(2);
    options.batch_size = 2;
    let mut recipe = Recipe::new(&*base, &data, &*output, Device::flex(), options);
    recipe.eval = Some(data.clone());
    let prepared = recipe.prepare().unwrap();
    assert_eq!(
        (prepared.train.len(), prepared.eval.len()),
        (6, 6),
        "both orders"
    );
    assert_eq!((prepared.total, prepared.remaining()), (2, 2));
    assert_eq!(
        prepared.trainer.options().verdict_tokens,
        [codec.token_id("A").unwrap(), codec.token_id("B").unwrap()]
    );
    let outcome = prepared.run(|_| true).unwrap();
    assert!(!outcome.stopped);
    assert_eq!(outcome.history.len(), 2);
    assert!(outcome.history[1].eval.is_some());
    let model_dir = outcome.model_dir.unwrap();
    assert_eq!(model_dir, output.join("model"));
    Checkpoint::load(&model_dir).unwrap();
    let svg = std::fs::read_to_string(output.join("metrics.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    drop(outcome.trainer); // the folder's lock goes with the run

    recipe.resume = true;
    recipe.options.max_steps = Some(3);
    let prepared = recipe.prepare().unwrap();
    assert_eq!((prepared.trainer.step(), prepared.remaining()), (2, 1));
    prepared.run(|_| true).unwrap();
    let rows = train::read_metrics(&output.join("metrics.csv")).unwrap();
    assert_eq!(rows.iter().map(|m| m.step).collect::<Vec<_>>(), [1, 2, 3]);

    let second = common::temp_dir("recipe-init");
    let mut options = TrainOptions::new(Objective::Generation, [0, 0], 0);
    options.max_steps = Some(1);
    let mut stage1 = Recipe::new(
        common::model_path(),
        &data,
        &*second,
        Device::flex(),
        options,
    );
    stage1.init = Some(model_dir);
    let outcome = stage1.prepare().unwrap().run(|_| false).unwrap();
    assert!(outcome.stopped && outcome.model_dir.is_none());
    assert_eq!(outcome.trainer.model.llama.config.hidden_size, 32);
    assert!(second.join("checkpoint-1/COMPLETE").is_file() && !second.join("model").exists());
    for dir in [base, output, second, data_dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
