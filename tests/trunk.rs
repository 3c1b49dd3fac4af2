//! Frozen-trunk record and replay on the real model: a fine-tune that shares the base model's
//! bottom layers replays their recorded output and scores bit for bit as running them, a model
//! whose bottom layers differ never reads another's recordings, and a damaged recording is an
//! error that names its file.

mod common;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use gram::checkpoint::Checkpoint;
use gram::judge::{GramJudge, JudgeOptions};
use gram::model::{Llama, Trunk, TrunkStore};
use gram::{Judge, Pair};
use std::path::Path;

/// Layers in the trunk: the default model's 30 less the 4 a `--train-layers 4` fine-tune trains.
const TRUNK: usize = 26;

/// An RM-Bench-shaped 2 × 2 grid of one prompt (nested shared prefixes) and a separate pair.
fn pairs() -> Vec<Pair> {
    let prompt = "Name a prime number and say why it is prime.";
    let mut pairs: Vec<Pair> = [
        "Seven: only 1 and 7 divide it.",
        "**7**, divisible by 1 and 7.",
    ]
    .iter()
    .flat_map(|c| ["Nine, it is odd.", "9 (odd)."].map(|r| Pair::new(prompt, *c, r)))
    .collect();
    pairs.push(Pair::new("Say hi.", "Hi!", "Hello there, how can I help?"));
    pairs
}

/// The default model with `layer`'s MLP output scaled by 1.1: a stand-in for a fine-tune that
/// trained that layer.
fn model_with_changed_layer(layer: Option<usize>) -> (Llama, gram::tokenizer::TextCodec) {
    let mut checkpoint = Checkpoint::load(&common::model_path()).unwrap();
    let mut model = Llama::from_checkpoint(&mut checkpoint, &Device::flex()).unwrap();
    if let Some(layer) = layer {
        let down = &mut model.layers[layer].mlp.down_proj.weight;
        let scaled: Tensor<2> = down.val() * 1.1;
        *down = Param::from_tensor(scaled);
    }
    (model, checkpoint.codec)
}

/// P(A) of every pair in both orders by a judge of `model`, recording into or replaying
/// from `store` (`None`: plain), and the judge's FLOP count.
fn margins(layer: Option<usize>, store: Option<&Path>, batch_size: usize) -> (Vec<f64>, f64) {
    let (model, codec) = model_with_changed_layer(layer);
    let options = JudgeOptions {
        batch_size,
        ..JudgeOptions::default()
    };
    let mut judge = GramJudge::new(model, codec, options).unwrap();
    if let Some(dir) = store {
        let store = TrunkStore::open(dir, judge.model(), TRUNK).unwrap();
        judge = judge.with_trunk_store(store);
    }
    let verdicts = judge.judge(&pairs()).unwrap();
    let margins = verdicts
        .iter()
        .flat_map(|v| [v.p_a_forward, v.p_a_reverse])
        .collect();
    (margins, judge.stats().flops)
}

fn recordings(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn a_fine_tune_replays_the_base_models_trunk_bit_for_bit() {
    for batch_size in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let (base, plain_flops) = margins(None, None, batch_size);
        // Recording changes nothing.
        let (recorded, _) = margins(None, Some(dir.path()), batch_size);
        assert_eq!(
            recorded, base,
            "batch {batch_size}: recording changed a margin"
        );
        assert_eq!(recordings(dir.path()), 1, "one call, one recording");

        // A fine-tune of the top layer replays the base model's trunk: its own scores, exactly,
        // for (30 − 26)/30 of the layers' work on the pairs (the template's fixed head, run once
        // per judge and outside any recording, still runs whole).
        let (tuned, _) = margins(Some(29), None, batch_size);
        assert_ne!(tuned, base, "the changed top layer must change the margins");
        let (replayed, replay_flops) = margins(Some(29), Some(dir.path()), batch_size);
        assert_eq!(
            replayed, tuned,
            "batch {batch_size}: replay differs from running"
        );
        assert_eq!(
            recordings(dir.path()),
            1,
            "the replay must not record again"
        );
        assert!(
            replay_flops < 0.3 * plain_flops,
            "the trunk was not skipped: {replay_flops:.3e} vs {plain_flops:.3e} FLOPs"
        );

        // A model whose bottom layers differ has its own trunk: it records, and scores as
        // running.
        let (below, _) = margins(Some(5), None, batch_size);
        let (below_stored, _) = margins(Some(5), Some(dir.path()), batch_size);
        assert_eq!(below_stored, below);
        assert_eq!(
            recordings(dir.path()),
            2,
            "another trunk, another recording"
        );
    }
}

/// The model-level record and replay: a prefill and a batch after it, replayed, give the same
/// hidden states as running every layer, and a replay that does not fit is an error.
#[test]
fn a_replayed_prefill_and_batch_equal_running_every_layer() {
    let (model, codec) = model_with_changed_layer(None);
    let ids = codec
        .encode("The quick brown fox jumps over the lazy dog.")
        .unwrap();
    let (head, pad) = (&ids[..4], codec.padding_id());
    let sequences = [&ids[..], &ids[..ids.len() - 2]];
    let run = |trunk: Option<&mut Trunk>| {
        let mut trunk = trunk;
        let cache = model.prefill(head, None, trunk.as_deref_mut()).unwrap();
        let hidden = model.last_hidden_states(&sequences, Some(&cache), pad, trunk);
        hidden.unwrap().into_data().try_to_vec::<f32>().unwrap()
    };
    let plain = run(None);
    let mut record = Trunk::record(TRUNK);
    assert_eq!(run(Some(&mut record)), plain);
    let passes = record.into_passes();
    assert_eq!(passes.len(), 2, "a prefill and a batch");
    let mut replay = Trunk::replay(TRUNK, passes.clone());
    assert_eq!(run(Some(&mut replay)), plain);
    assert!(replay.into_passes().is_empty(), "every pass replayed");

    // One pass short, or passes of another shape: errors, not wrong states.
    let mut short = Trunk::replay(TRUNK, passes[..1].to_vec());
    let cache = model.prefill(head, None, Some(&mut short)).unwrap();
    let err = model
        .last_hidden_states(&sequences, Some(&cache), pad, Some(&mut short))
        .unwrap_err();
    assert!(err.to_string().contains("more decoder passes"), "{err}");
    let mut swapped = Trunk::replay(TRUNK, vec![passes[1].clone(), passes[0].clone()]);
    let err = model.prefill(head, None, Some(&mut swapped)).unwrap_err();
    assert!(err.to_string().contains("the recorded pass is"), "{err}");
}

#[test]
fn a_damaged_recording_is_an_error_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    margins(None, Some(dir.path()), 4);
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
    let (model, codec) = model_with_changed_layer(Some(29));
    let store = TrunkStore::open(dir.path(), &model, TRUNK).unwrap();
    let options = JudgeOptions {
        batch_size: 4,
        ..JudgeOptions::default()
    };
    let mut judge = GramJudge::new(model, codec, options)
        .unwrap()
        .with_trunk_store(store);
    let err = judge.judge(&pairs()).unwrap_err().to_string();
    assert!(
        err.contains(&file.display().to_string()) && err.contains("cut short"),
        "{err}"
    );
    // A trunk of every layer, or of none, is refused.
    let (model, _) = model_with_changed_layer(None);
    for layers in [0, 30] {
        let err = TrunkStore::open(dir.path(), &model, layers).err().unwrap();
        assert!(err.to_string().contains("--trunk-layers"), "{err}");
    }
}

/// Training with `--trunk-cache`: a run that records, and a second run with other
/// hyper-parameters that replays, each train exactly as they do without it (weights and
/// losses bit for bit); the trunk is only ever the frozen layers.
#[test]
fn training_replays_the_frozen_layers_bit_for_bit() {
    use gram::train::{Objective, TrainOptions, Trainer};
    const VOCAB: usize = 64;
    let data = common::verdict_data(6, VOCAB, 3);
    let model = Llama::random(&common::tiny_config(VOCAB, 3), &Device::flex().autodiff());
    let dir = tempfile::tempdir().unwrap();
    let options = |smoothing: f32, cache: bool| {
        let mut o = TrainOptions::new(Objective::Gram, [1, 2], 0);
        o.batch_size = 4;
        o.lr = Some(3e-3);
        o.label_smoothing = smoothing;
        o.train_layers = Some(1);
        o.trunk_cache = cache.then(|| dir.path().to_path_buf());
        o
    };
    let train = |smoothing: f32, cache: bool| {
        let mut trainer = Trainer::new(model.clone(), options(smoothing, cache), None).unwrap();
        let history = trainer.run(&data, &data, 6, |_| true).unwrap();
        let losses: Vec<f64> = history.iter().map(|m| m.loss).collect();
        (losses, common::trained_weights(&trainer))
    };
    for smoothing in [0.05, 0.0] {
        let plain = train(smoothing, false);
        let cached = train(smoothing, true);
        assert_eq!(cached.0, plain.0, "ε {smoothing}: losses differ");
        assert!(cached.1 == plain.1, "ε {smoothing}: weights differ");
    }
    // 6 steps of 4 examples over 12 examples, plus the held-out evaluation's 3 batches: what
    // the first run recorded, the second (ε = 0) replayed rather than recording again.
    let recorded = recordings(dir.path());
    assert!(recorded > 0 && recorded <= 6 + 3, "{recorded} recordings");

    // Only frozen layers make a trunk: not without --train-layers, not for all of them, not
    // for stage 1.
    let mut o = options(0.05, true);
    for (layers, objective) in [
        (None, Objective::Gram),
        (Some(3), Objective::Gram),
        (Some(1), Objective::Generation),
    ] {
        o.train_layers = layers;
        o.objective = objective;
        let err = Trainer::new(model.clone(), o.clone(), None).err().unwrap();
        assert!(err.to_string().contains("--trunk-cache"), "{err}");
    }
}
