//! The weight-layout table: it lists every parameter a model has, once; its HF and GGUF names
//! map onto each other for every architecture; and `Llama::hf_tensors` writes exactly its
//! tensors, which load back into the same weights.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use gram::checkpoint::Checkpoint;
use gram::config::{Architecture, ModelConfig};
use gram::model::layout::{self, Role, Slot};
use gram::model::{Llama, Lora, Variant};

use super::{smollm2, tiny_config};

/// Every architecture, tied and untied (vocabulary of 16 tokens).
fn configs() -> Vec<ModelConfig> {
    let mut out = Vec::new();
    for arch in Architecture::ALL {
        for tied in [false, true] {
            let mut config = tiny_config(arch, 16);
            config.tie_word_embeddings = tied;
            out.push(config);
        }
    }
    out
}

/// The ids and element counts of a module's float parameters.
#[derive(Default)]
struct Params(Vec<(ParamId, usize)>);

impl ModuleVisitor for Params {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, param.val().dims().iter().product()));
    }
}

#[test]
fn every_parameter_of_a_model_is_one_row_of_the_table() {
    for config in configs() {
        let model = Llama::random(&config, &Device::flex());
        let mut params = Params::default();
        model.visit(&mut params);
        let rows = layout::tensors(&config);
        let what = format!(
            "{:?} tied={}",
            config.model_type, config.tie_word_embeddings
        );
        assert_eq!(params.0.len(), rows.len(), "{what}");
        let ids: BTreeSet<ParamId> = params.0.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), rows.len(), "{what}: parameters are distinct");
        let param_sizes: usize = params.0.iter().map(|p| p.1).sum();
        assert_eq!(
            param_sizes,
            rows.iter().map(|t| t.len()).sum::<usize>(),
            "{what}"
        );
        assert_eq!(param_sizes, config.num_parameters(), "{what}");
        assert_eq!(model.num_params(), config.num_parameters(), "{what}");
        let names: BTreeSet<&str> = rows.iter().map(|t| t.hf_name.as_str()).collect();
        assert_eq!(names.len(), rows.len(), "{what}: each name once");
        let slots: BTreeSet<(Option<usize>, Slot)> =
            rows.iter().map(|t| (t.layer, t.slot)).collect();
        assert_eq!(slots.len(), rows.len(), "{what}: each slot once");
    }
}

#[test]
fn the_table_holds_each_architectures_tensors() {
    for config in configs() {
        let rows = layout::tensors(&config);
        let has = |name: &str| rows.iter().any(|t| t.hf_name == name);
        let variant = Variant::of(config.model_type);
        let qwen2 = config.model_type == Architecture::Qwen2;
        let qwen3 = config.model_type == Architecture::Qwen3;
        assert_eq!(variant.qkv_bias, qwen2);
        assert_eq!(variant.qk_norm, qwen3);
        for i in 0..2 {
            for bias in ["q_proj", "k_proj", "v_proj"] {
                assert_eq!(
                    has(&format!("model.layers.{i}.self_attn.{bias}.bias")),
                    qwen2
                );
            }
            assert!(!has(&format!("model.layers.{i}.self_attn.o_proj.bias")));
            for norm in ["q_norm", "k_norm"] {
                assert_eq!(
                    has(&format!("model.layers.{i}.self_attn.{norm}.weight")),
                    qwen3
                );
            }
        }
        assert_eq!(has("lm_head.weight"), !config.tie_word_embeddings);
        let per_layer = 9 + if qwen2 { 3 } else { 0 } + if qwen3 { 2 } else { 0 };
        let global = if config.tie_word_embeddings { 2 } else { 3 };
        assert_eq!(
            rows.len(),
            global + 2 * per_layer,
            "{:?}",
            config.model_type
        );

        let row = |name: &str| rows.iter().find(|t| t.hf_name == name).unwrap();
        let q = row("model.layers.1.self_attn.q_proj.weight");
        assert_eq!(
            (q.shape.as_slice(), q.role),
            (&[8, 8][..], Role::Projection)
        );
        assert_eq!(q.gguf_name, "blk.1.attn_q.weight");
        let k = row("model.layers.1.self_attn.k_proj.weight");
        assert_eq!(k.shape, [4, 8]);
        let down = row("model.layers.0.mlp.down_proj.weight");
        assert_eq!(down.shape, [8, 12]);
        assert_eq!(row("model.embed_tokens.weight").role, Role::Matrix);
        assert_eq!(row("model.norm.weight").role, Role::Vector);
        // llama.cpp permuted the q/k rows of Llama and Mistral files only.
        let permuted = variant.gguf_rope_permuted;
        assert_eq!(permuted, !(qwen2 || qwen3));
        assert_eq!(q.gguf_rope_heads, permuted.then_some(2));
        assert_eq!(k.gguf_rope_heads, permuted.then_some(1));
        assert!(
            rows.iter()
                .filter(|t| t.gguf_rope_heads.is_some())
                .all(|t| { matches!(t.slot, Slot::QWeight | Slot::KWeight) })
        );
        for t in &rows {
            assert_eq!(
                layout::gguf_rope_heads(&config, &t.hf_name),
                t.gguf_rope_heads
            );
        }
    }
}

#[test]
fn names_round_trip_between_hf_and_gguf() {
    let llama_cpp = [
        "token_embd",
        "output_norm",
        "output",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "attn_q_norm",
        "attn_k_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
        "attn_norm",
        "ffn_norm",
    ];
    let mut seen = BTreeSet::new();
    for config in configs() {
        for t in layout::tensors(&config) {
            assert_eq!(layout::hf_to_gguf(&t.hf_name).as_ref(), Some(&t.gguf_name));
            assert_eq!(layout::gguf_to_hf(&t.gguf_name).as_ref(), Some(&t.hf_name));
            assert_eq!(
                gram::checkpoint::gguf::hf_name(&t.gguf_name).as_ref(),
                Some(&t.hf_name)
            );
            let (stem, suffix) = t.gguf_name.rsplit_once('.').unwrap();
            assert!(matches!(suffix, "weight" | "bias"), "{}", t.gguf_name);
            let part = stem
                .strip_prefix("blk.")
                .map_or(stem, |s| s.split_once('.').unwrap().1);
            assert!(llama_cpp.contains(&part), "{}", t.gguf_name);
            seen.insert(part.to_owned());
        }
    }
    assert_eq!(seen.len(), llama_cpp.len(), "every llama.cpp name is used");
    // Stems map whatever the suffix; anything else has no counterpart.
    assert_eq!(
        layout::gguf_to_hf("blk.12.attn_output.bias").as_deref(),
        Some("model.layers.12.self_attn.o_proj.bias")
    );
    assert_eq!(
        layout::gguf_to_hf("output.bias").as_deref(),
        Some("lm_head.bias")
    );
    for unknown in [
        "rope_freqs.weight",
        "blk.x.attn_q.weight",
        "blk.0.attn_q.scale",
        "blk.0.attn_qkv.weight",
        "token_embd",
        "model.embed_tokens.weight",
    ] {
        assert_eq!(layout::gguf_to_hf(unknown), None, "{unknown}");
    }
    assert_eq!(layout::hf_to_gguf("score.weight"), None);
}

#[test]
fn architecture_names_come_from_the_variants() {
    let names: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(names.join(", "), Architecture::SUPPORTED);
    for arch in Architecture::ALL {
        let serde_name = serde_json::to_value(arch).unwrap();
        assert_eq!(serde_name, arch.name());
        assert_eq!(Architecture::parse(&arch.name().to_uppercase()), Some(arch));
        assert!(Variant::of(arch).hf_class.ends_with("ForCausalLM"));
    }
    assert_eq!(Architecture::parse("gpt_neox"), None);
    // config.json can switch q/k/v biases on for any architecture.
    let mut config = tiny_config(Architecture::Llama, 16);
    assert!(!config.qkv_bias());
    config.attention_bias = true;
    assert!(config.qkv_bias() && config.variant().qkv_bias);
}

/// Hidden states of a few token ids.
fn hidden(model: &Llama) -> Vec<f32> {
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(vec![1i64, 5, 9, 3, 15, 0], [1, 6]),
        &model.device(),
    );
    model
        .hidden_states(ids)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn hf_tensors_are_the_table_and_load_back_into_the_same_weights() {
    let device = Device::flex();
    for config in configs() {
        let what = format!(
            "{:?} tied={}",
            config.model_type, config.tie_word_embeddings
        );
        let mut model = Llama::random(&config, &device);
        // A LoRA adapter with a nonzero B, which the export must fold into q_proj.
        let mut lora = Lora::new(8, 8, 2, 4.0, &device);
        lora.b = Param::from_tensor(Tensor::random(
            [2, 8],
            Distribution::Normal(0.0, 0.1),
            &device,
        ));
        model.layers[1].self_attn.q_proj.lora = Some(lora);
        let tensors = model.hf_tensors().unwrap();
        let rows: BTreeMap<String, Vec<usize>> = layout::tensors(&config)
            .into_iter()
            .map(|t| (t.hf_name, t.shape))
            .collect();
        let exported: BTreeMap<String, Vec<usize>> = tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.shape.clone()))
            .collect();
        assert_eq!(exported, rows, "{what}");

        let mut checkpoint = Checkpoint {
            config: config.clone(),
            tensors: super::common::stored(tensors.clone()),
            codec: smollm2().codec.clone(),
            source: "exported".into(),
        };
        let loaded = Llama::from_checkpoint(&mut checkpoint, &device).unwrap();
        assert!(checkpoint.tensors.is_empty(), "{what}: every tensor used");
        assert_eq!(loaded.hf_tensors().unwrap(), tensors, "{what}");
        let (want, got) = (hidden(&model), hidden(&loaded));
        let gap = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            gap < 1e-5,
            "{what}: merged adapter changes outputs by {gap}"
        );
    }
}

#[test]
fn loading_refuses_left_over_tensors_and_names_a_missing_or_misshapen_one() {
    let config = tiny_config(Architecture::Qwen3, 16);
    let checkpoint = |tensors| Checkpoint {
        config: config.clone(),
        tensors: super::common::stored(tensors),
        codec: smollm2().codec.clone(),
        source: "tiny".into(),
    };
    let device = Device::flex();
    let mut extra = super::common::tiny_tensors(&config);
    extra.insert(
        "score.weight".into(),
        gram::checkpoint::HostTensor::new(vec![1, 8], vec![0.5; 8]).unwrap(),
    );
    let mut with_extra = checkpoint(extra);
    let err = Llama::from_checkpoint(&mut with_extra, &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`score.weight`") && err.contains("not used") && err.contains("tiny"),
        "{err}"
    );

    let mut missing = super::common::tiny_tensors(&config);
    missing.remove("model.layers.1.self_attn.k_norm.weight");
    let err = Llama::from_checkpoint(&mut checkpoint(missing), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers.1.self_attn.k_norm.weight") && err.contains("missing"),
        "{err}"
    );

    let mut misshapen = super::common::tiny_tensors(&config);
    misshapen
        .get_mut("model.layers.0.mlp.up_proj.weight")
        .unwrap()
        .shape = vec![8, 12];
    let err = Llama::from_checkpoint(&mut checkpoint(misshapen), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("up_proj") && err.contains("[8, 12]") && err.contains("[12, 8]"),
        "{err}"
    );
}
