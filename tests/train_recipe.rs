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
        (1, None, 0.03)
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
        (Some(7), Some(3e-4), Some(8), true)
    );
    assert!(Cli::try_parse_from(["gram", "--epochs", "2", "--max-steps", "3"]).is_err());
    assert!(Cli::try_parse_from(["gram", "--train-layers", "2", "--lora-rank", "4"]).is_err());
}

/// A tiny random model with the default model's tokenizer, exported as a Hugging Face folder,
/// and a folder holding `rows` (prompt, chosen, rejected) as `pairs.jsonl`.
fn tiny_model_and_data(
    tag: &str,
    rows: &[(&str, &str, &str)],
) -> (gram::tokenizer::TextCodec, common::Scratch, common::Scratch) {
    let codec = Checkpoint::load(&common::model_path()).unwrap().codec;
    let mut config = common::tiny_config(codec.vocab_size(), 2);
    config.max_position_embeddings = 512;
    let base = common::temp_dir(&format!("{tag}-base"));
    let random = Trainer::new(
        Llama::random(&config, &Device::flex()),
        TrainOptions::new(Objective::Gram, [0, 0], 0),
        None,
    )
    .unwrap();
    train::export(&random.model, &codec, &base).unwrap();
    let data_dir = common::temp_dir(&format!("{tag}-data"));
    std::fs::create_dir_all(&data_dir).unwrap();
    let jsonl: String = (rows.iter())
        .map(|(p, c, r)| {
            let row = serde_json::json!({"prompt": p, "chosen": c, "rejected": r});
            format!("{row}\n")
        })
        .collect();
    std::fs::write(data_dir.join("pairs.jsonl"), jsonl).unwrap();
    (codec, base, data_dir)
}

/// The library recipe end to end on a tiny model: examples from a data file, training with
/// held-out evaluation, metrics.svg, the exported model; `resume` continues to a larger
/// budget; `init` takes the weights from one directory and the tokenizer from `model` (the
/// GGUF file, whose weights are not read).
#[test]
fn recipe_trains_plots_exports_and_resumes() {
    use gram::train::Recipe;
    let rows = [
        ("What is 2+2?", "4", "5"),
        ("Capital of France?", "Paris.", "Rome."),
        ("Say hi.", "Hi!", "No."),
    ];
    let (codec, base, data_dir) = tiny_model_and_data("recipe", &rows);
    let data = data_dir.join("pairs.jsonl");

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
}

/// A Bradley–Terry reward model as `gram finetune --objective bt` exports it is a judge:
/// `GramJudge::load` reads its value head, and every verdict is `σ(r_a − r_b)` in both
/// orders, with `r = h_last · w` recomputed here from the exported tensors on the reward
/// sequence; its accuracy on the held-out pairs is the trainer's own held-out metric.
#[test]
fn a_bradley_terry_export_judges_by_its_value_head() {
    use gram::Judge;
    use gram::judge::{GramJudge, JudgeOptions};
    use gram::train::Recipe;
    let rows = [
        ("What is 2+2?", "4", "5"),
        (
            "Capital of France?",
            "Paris.",
            "Rome, the capital of Italy.",
        ),
        ("Say hi.", "Hi!", "No."),
        ("Name a colour.", "Blue is a colour.", "Seven."),
    ];
    let (codec, base, data_dir) = tiny_model_and_data("bt-judge", &rows);
    let data = data_dir.join("pairs.jsonl");

    let output = common::temp_dir("bt-judge-run");
    let mut options = TrainOptions::new(Objective::BradleyTerry, [0, 0], 0);
    options.max_steps = Some(3);
    options.batch_size = 2;
    options.lr = Some(1e-2);
    let mut recipe = Recipe::new(&*base, &data, &*output, Device::flex(), options);
    recipe.eval = Some(data.clone());
    let outcome = recipe.prepare().unwrap().run(|_| true).unwrap();
    let held_out = outcome.history.last().unwrap().eval.unwrap();
    let model_dir = outcome.model_dir.unwrap();
    drop(outcome.trainer);

    let options = JudgeOptions {
        batch_size: 3,
        ..JudgeOptions::default()
    };
    let mut judge = GramJudge::load(&model_dir, &Device::flex(), options).unwrap();
    assert!(judge.has_value_head());
    let pairs: Vec<gram::Pair> = (rows.iter())
        .map(|(p, c, r)| gram::Pair::new(*p, *c, *r))
        .collect();
    let verdicts = judge.judge(&pairs).unwrap();

    // The reference: the exported weights, the value head applied by hand.
    let mut checkpoint = Checkpoint::load(&model_dir).unwrap();
    let w = checkpoint
        .take("score.weight")
        .unwrap()
        .elements()
        .unwrap()
        .into_f32();
    let llama = Llama::from_checkpoint(&mut checkpoint, &Device::flex()).unwrap();
    let reward = |prompt: &str, response: &str| {
        let ids = gram::prompt::reward_sequence(&codec, prompt, response, 512).unwrap();
        let h = llama
            .last_hidden_states(&[ids.as_slice()], None, codec.padding_id(), None)
            .unwrap();
        let h = h.into_data().try_to_vec::<f32>().unwrap();
        h.iter().zip(&w).map(|(a, b)| (a * b) as f64).sum::<f64>()
    };
    let mut right = 0;
    for ((prompt, chosen, rejected), verdict) in rows.iter().zip(&verdicts) {
        let margin = reward(prompt, chosen) - reward(prompt, rejected);
        let p = 1.0 / (1.0 + (-margin).exp());
        assert!((verdict.p_a - p).abs() < 1e-5, "{verdict:?} vs {p}");
        assert_eq!(verdict.p_a_forward, verdict.p_a_reverse);
        right += usize::from(verdict.p_a > 0.5);
    }
    assert!(
        (right as f64 / rows.len() as f64 - held_out).abs() < 1e-9,
        "judge {right}/4, trainer {held_out}"
    );
}
