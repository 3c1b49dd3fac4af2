//! Training, checked on the weights themselves: `--train-layers` leaves every frozen weight
//! bitwise unchanged and changes every trained one; a LoRA export holds exactly
//! `W + (α/r)·A·B` for every projection, recomputed here from the trained adapters.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use gram::checkpoint::Checkpoint;
use gram::model::Llama;
use gram::train::{self, Objective, TrainOptions, Trainer};
use std::collections::BTreeMap;

const VOCAB: usize = 64;
const VERDICTS: [u32; 2] = [1, 2];
const LAYERS: usize = 3;

fn cpu() -> Device {
    Device::flex().autodiff()
}

/// Every weight under its Hugging Face name, as raw `f32` bits (for bitwise comparison).
fn weight_bits(trainer: &Trainer) -> BTreeMap<String, Vec<u32>> {
    train::hf_tensors(&trainer.model)
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name, t.data.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// `--train-layers 1` on a 3-layer model: after three optimizer steps, exactly the top
/// layer's 9 tensors and the final norm differ from the start, and every other weight
/// (embeddings, lower layers) is bitwise identical — a frozen parameter that the optimizer
/// still touches (weight decay, a stray gradient) fails this.
#[test]
fn train_layers_changes_exactly_the_top_layers_and_final_norm() {
    let data = common::verdict_data(3, VOCAB, 11);
    let model = Llama::random(&common::tiny_config(VOCAB, LAYERS), &cpu());
    let mut options = TrainOptions::new(Objective::Gram, VERDICTS, 0);
    options.batch_size = 4;
    options.lr = Some(1e-2);
    options.warmup_ratio = 0.0;
    options.weight_decay = 0.1; // would move frozen weights if it were applied to them
    options.train_layers = Some(1);
    let mut trainer = Trainer::new(model, options, None).unwrap();
    let before = weight_bits(&trainer);
    let history = trainer.run(&data, &[], 3, |_| true).unwrap();
    assert_eq!(history.len(), 3);
    let after = weight_bits(&trainer);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );

    let top = format!("model.layers.{}.", LAYERS - 1);
    let mut trained = Vec::new();
    for (name, old) in &before {
        let new = &after[name];
        let should_train = name.starts_with(&top) || name == "model.norm.weight";
        let changed = old != new;
        if should_train {
            trained.push(name.clone());
            assert!(changed, "{name} is trained but did not change");
        } else {
            assert!(
                !changed,
                "{name} is frozen but {} of {} values changed",
                old.iter().zip(new).filter(|(a, b)| a != b).count(),
                old.len()
            );
        }
    }
    assert_eq!(trained.len(), 10, "{trained:?}");
}

/// A row-major `[rows, cols]` host matrix from a tensor.
fn host(tensor: Tensor<2>) -> (Vec<f32>, [usize; 2]) {
    let dims = tensor.dims();
    (tensor.into_data().try_to_vec::<f32>().unwrap(), dims)
}

/// LoRA (rank 4, α 8, so scale 2) trained for a few steps, then exported: every projection in
/// the exported `model.safetensors` equals `(W + (α/r)·A·B)ᵀ` (Hugging Face `[out, in]`) computed
/// here in f64 from the trained base weight and adapters, within 1e-5 relative; no adapter
/// tensor is exported; every other tensor is the base model's. Catches a wrong scale (α, 1/r,
/// or none), a wrong product order or layout, an unmerged export, and B still zero.
#[test]
fn lora_export_holds_the_merged_weights() {
    let codec = Checkpoint::load(&common::model_path()).unwrap().codec;
    let vocab = codec.vocab_size();
    let data = common::verdict_data(2, 200, 12);
    let model = Llama::random(&common::tiny_config(vocab, LAYERS), &cpu());
    let (rank, alpha) = (4usize, 8.0f64);
    let mut options = TrainOptions::new(Objective::Gram, VERDICTS, 0);
    options.batch_size = 4;
    options.lr = Some(1e-2);
    options.warmup_ratio = 0.0;
    options.lora_rank = Some(rank);
    options.lora_alpha = alpha;
    let mut trainer = Trainer::new(model, options, None).unwrap();
    trainer.run(&data, &[], 3, |_| true).unwrap();

    let dir = tempfile::tempdir().unwrap();
    train::export(&trainer.model, &codec, dir.path()).unwrap();
    let exported_tensors = common::f32_tensors(&dir.path().join("model.safetensors"));
    let names: Vec<&String> = exported_tensors.keys().collect();
    assert!(
        names.iter().all(|n| !n.contains("lora")),
        "adapters exported: {names:?}"
    );

    let scale = alpha / rank as f64;
    let llama = trainer.model.llama.valid();
    let mut checked = 0;
    for (i, layer) in llama.layers.iter().enumerate() {
        let attn = &layer.self_attn;
        let mlp = &layer.mlp;
        for (name, proj) in [
            ("self_attn.q_proj", &attn.q_proj),
            ("self_attn.k_proj", &attn.k_proj),
            ("self_attn.v_proj", &attn.v_proj),
            ("self_attn.o_proj", &attn.o_proj),
            ("mlp.gate_proj", &mlp.gate_proj),
            ("mlp.up_proj", &mlp.up_proj),
            ("mlp.down_proj", &mlp.down_proj),
        ] {
            let lora = proj.lora.as_ref().expect("every projection has an adapter");
            let (w, [d_in, d_out]) = host(proj.weight.val());
            let (a, [a_in, r]) = host(lora.a.val());
            let (b, [b_r, b_out]) = host(lora.b.val());
            assert_eq!((a_in, r, b_r, b_out), (d_in, rank, rank, d_out), "{name}");
            assert!(
                b.iter().any(|&x| x != 0.0),
                "layer {i} {name}: B is still zero after training, the test would prove nothing"
            );
            let key = format!("model.layers.{i}.{name}.weight");
            let (shape, exported) = &exported_tensors[&key];
            assert_eq!(
                shape,
                &[d_out, d_in],
                "{key}: Hugging Face layout [out, in]"
            );
            let mut worst = 0.0f64;
            let mut delta_norm = 0.0f64;
            for o in 0..d_out {
                for k in 0..d_in {
                    let delta: f64 = (0..rank)
                        .map(|j| a[k * rank + j] as f64 * b[j * d_out + o] as f64)
                        .sum::<f64>()
                        * scale;
                    let expected = w[k * d_out + o] as f64 + delta;
                    let gap = (exported[o * d_in + k] as f64 - expected).abs();
                    worst = worst.max(gap / (1.0 + expected.abs()));
                    delta_norm = delta_norm.max(delta.abs());
                }
            }
            assert!(worst < 1e-5, "{key}: exported vs W + (α/r)·A·B: {worst:e}");
            // The adapter's contribution must be far above the tolerance, or a missing merge
            // would pass too.
            assert!(
                delta_norm > 1e-3,
                "{key}: adapter contribution {delta_norm:e}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 7 * LAYERS);

    // Everything else is the (frozen) base model's.
    let (_, embed) = &exported_tensors["model.embed_tokens.weight"];
    let base_embed = llama.embed_tokens.host().unwrap().data;
    assert!(*embed == base_embed, "embeddings exported as trained");
}
