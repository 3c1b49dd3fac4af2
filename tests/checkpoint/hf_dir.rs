//! Hugging Face directories: save → load round trips, atomic saves, unknown architectures.

use gram::checkpoint::{Checkpoint, HostTensor, save_hf_dir};
use gram::config::Architecture;
use gram::tokenizer::ChatMessage;

use super::{common, smollm2, temp_dir, tiny_config};
use common::tiny_tensors;

#[test]
fn save_hf_dir_then_load_round_trips() {
    let codec = &smollm2().codec;
    let config = tiny_config(Architecture::Qwen2, codec.vocab_size());
    let tensors = tiny_tensors(&config);
    let scratch = temp_dir("roundtrip");
    let dir = scratch.join("model");
    save_hf_dir(&dir, &config, &tensors, codec).unwrap();
    // The file, written a tensor at a time, is valid for the reference reader too.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.len(), tensors.len());
    for (name, t) in &tensors {
        let view = file.tensor(name).unwrap();
        assert_eq!(
            (view.dtype(), view.shape()),
            (safetensors::Dtype::F32, &t.shape[..])
        );
        let first = f32::from_le_bytes(view.data()[..4].try_into().unwrap());
        assert_eq!(first, t.data[0], "{name}");
    }
    let mut loaded = Checkpoint::load(&dir).unwrap();
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.take_host_tensors().unwrap(), tensors);
    assert_eq!(loaded.source, dir);
    assert_eq!(loaded.codec.chat_template(), codec.chat_template());
    assert_eq!(
        (loaded.codec.eos_token_id(), loaded.codec.pad_token_id()),
        (Some(2), Some(2))
    );
    for case in common::fixture()["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            loaded.codec.encode(text).unwrap(),
            codec.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let messages = [ChatMessage::new("user", "Which answer is better, A or B?")];
    assert_eq!(
        loaded.codec.apply_chat_template(&messages, true).unwrap(),
        codec.apply_chat_template(&messages, true).unwrap()
    );

    let config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config_json["architectures"],
        serde_json::json!(["Qwen2ForCausalLM"])
    );
    assert_eq!(config_json["torch_dtype"], "float32");
    assert_eq!(config_json["model_type"], "qwen2");

    // Saving again replaces the directory and leaves no staging directories behind.
    let mut tied = tiny_config(Architecture::Llama, codec.vocab_size());
    tied.tie_word_embeddings = true;
    let tied_tensors = tiny_tensors(&tied);
    assert!(!tied_tensors.contains_key("lm_head.weight"));
    save_hf_dir(&dir, &tied, &tied_tensors, codec).unwrap();
    let mut reloaded = Checkpoint::load(&dir).unwrap();
    assert_eq!(reloaded.config, tied);
    assert_eq!(reloaded.take_host_tensors().unwrap(), tied_tensors);
    let siblings: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["model"]);
}

#[test]
fn failed_save_leaves_no_directory() {
    let codec = &smollm2().codec;
    let config = tiny_config(Architecture::Llama, codec.vocab_size());
    let mut tensors = tiny_tensors(&config);
    tensors.insert(
        "broken".into(),
        HostTensor {
            shape: vec![3, 3],
            data: vec![0.0; 4],
        },
    );
    let parent = temp_dir("failed-save");
    let err = save_hf_dir(&parent.join("model"), &config, &tensors, codec)
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken"), "{err}");
    assert_eq!(
        std::fs::read_dir(&parent).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn unknown_hf_architecture_is_named() {
    let dir = temp_dir("unknown-arch");
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "gpt_neox", "vocab_size": 10}"#,
    )
    .unwrap();
    let err = Checkpoint::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("gpt_neox")
            && err.contains(Architecture::SUPPORTED)
            && err.contains("config.json"),
        "{err}"
    );
}

/// Checkpoints saved by transformers before 4.31 store each layer's RoPE frequencies as
/// `…self_attn.rotary_emb.inv_freq`; they are derived from the config, so loading drops them
/// instead of calling them unused tensors.
#[test]
fn stored_rotary_frequencies_are_dropped() {
    let codec = &smollm2().codec;
    let config = tiny_config(Architecture::Llama, codec.vocab_size());
    let plain = tiny_tensors(&config);
    let mut old_style = plain.clone();
    let head_dim = config.head_dim();
    for layer in 0..config.num_hidden_layers {
        old_style.insert(
            format!("model.layers.{layer}.self_attn.rotary_emb.inv_freq"),
            HostTensor::new(vec![head_dim / 2], vec![1.0; head_dim / 2]).unwrap(),
        );
    }
    let scratch = temp_dir("inv-freq");
    let dir = scratch.join("model");
    save_hf_dir(&dir, &config, &old_style, codec).unwrap();
    let mut loaded = Checkpoint::load(&dir).unwrap();
    assert!(loaded.tensors.keys().eq(plain.keys()));
    gram::model::Llama::from_checkpoint(&mut loaded, &burn::tensor::Device::flex()).unwrap();
}
