//! Loaders that validate: a crafted config, index, GGUF header or tensor set is an error that
//! names the file and the field, never a panic, an abort, a hang or a read outside the model.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use gram::checkpoint::{Checkpoint, HostTensor, save_hf_dir};
use gram::config::{Architecture, ModelConfig};
use gram::model::Llama;
use serde_json::json;

use super::gguf::{gguf_bytes, parse_err, tiny_gguf_with};
use super::{common, smollm2, temp_dir, tiny_config};

/// A loadable two-layer Hugging Face directory at `<temp>/<tag>/model` (the default model's
/// tokenizer, `tiny_config`'s tensors), and the scratch folder that holds it.
fn hf_model(tag: &str) -> (common::Scratch, PathBuf) {
    let codec = &smollm2().codec;
    let config = tiny_config(Architecture::Llama, codec.vocab_size());
    let scratch = temp_dir(tag);
    let dir = scratch.join("model");
    save_hf_dir(&dir, &config, &common::tiny_tensors(&config), codec).unwrap();
    (scratch, dir)
}

/// Load `dir` after setting `field` of its config.json to `value`; the error text.
fn load_with_config_field(dir: &Path, field: &str, value: serde_json::Value) -> String {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let original = config[field].clone();
    config[field] = value.clone();
    std::fs::write(&path, config.to_string()).unwrap();
    let result = std::panic::catch_unwind(|| Checkpoint::load(dir));
    config[field] = original;
    std::fs::write(&path, config.to_string()).unwrap();
    match result {
        Ok(Ok(_)) => panic!("`{field}: {value}` loaded"),
        Ok(Err(err)) => {
            assert!(
                matches!(err, gram::Error::Checkpoint { .. }),
                "{field}: {err:?}"
            );
            err.to_string()
        }
        Err(_) => panic!("`{field}: {value}` panicked"),
    }
}

#[test]
fn crafted_hf_configs_are_errors_naming_the_file_and_field() {
    let (_scratch, dir) = hf_model("crafted-config");
    Checkpoint::load(&dir).expect("the unmodified directory loads");

    let cases = [
        ("num_attention_heads", json!(0), "must be at least 1"),
        ("num_key_value_heads", json!(0), "must be at least 1"),
        ("num_hidden_layers", json!(1u64 << 60), "more than 1024"),
        ("num_hidden_layers", json!(0), "must be at least 1"),
        ("intermediate_size", json!(0), "must be at least 1"),
        ("hidden_size", json!(0), "must be at least 1"),
        ("hidden_size", json!(1u64 << 40), "more than 65536"),
        ("vocab_size", json!(0), "must be at least 1"),
        ("vocab_size", json!(1u64 << 40), "more than"),
        ("max_position_embeddings", json!(0), "must be at least 1"),
        ("num_key_value_heads", json!(3), "not a multiple"),
        ("head_dim", json!(3), "odd"),
        ("head_dim", json!(0), "must be at least 1"),
        ("num_attention_heads", json!(8), "odd"), // 8 / 8 heads: width 1
        ("num_attention_heads", json!(3), "does not split"), // 8 / 3
        ("rms_norm_eps", json!(0.0), "finite positive"),
        ("rms_norm_eps", json!(-1e-6), "finite positive"),
        ("rope_theta", json!(0.0), "finite positive"),
        ("rope_theta", json!(-10000.0), "finite positive"),
    ];
    for (field, value, expected) in cases {
        let err = load_with_config_field(&dir, field, value.clone());
        assert!(
            err.contains("config.json") && err.contains(&format!("field `{field}`")),
            "{field}: {value}: {err}"
        );
        assert!(err.contains(expected), "{field}: {value}: {err}");
    }
    // Sizes each within bounds whose parameters together are too many.
    let huge = {
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["num_hidden_layers"] = json!(1024);
        config["hidden_size"] = json!(65536);
        config["num_attention_heads"] = json!(512);
        config["num_key_value_heads"] = json!(512);
        config["intermediate_size"] = json!(1 << 20);
        std::fs::write(&path, config.to_string()).unwrap();
        Checkpoint::load(&dir).unwrap_err().to_string()
    };
    assert!(huge.contains("parameters"), "{huge}");
}

#[test]
fn layer_count_and_vocabulary_must_agree_with_the_tensors_and_tokenizer() {
    let (_scratch, dir) = hf_model("layers-vocab");
    let err = load_with_config_field(&dir, "num_hidden_layers", json!(3));
    assert!(
        err.contains("field `num_hidden_layers`") && err.contains("3 layers"),
        "{err}"
    );
    let err = load_with_config_field(&dir, "num_hidden_layers", json!(1));
    assert!(err.contains("field `num_hidden_layers`"), "{err}");
    let err = load_with_config_field(&dir, "vocab_size", json!(16));
    assert!(
        err.contains("field `vocab_size`")
            && err.contains("16")
            && err.contains(&smollm2().codec.vocab_size().to_string()),
        "{err}"
    );
}

#[test]
fn model_config_validate_names_the_field() {
    let mut config = tiny_config(Architecture::Qwen2, 16);
    config.validate().unwrap();
    config.num_attention_heads = 0;
    let err = config.validate().unwrap_err();
    assert!(matches!(err, gram::Error::Invalid(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "field `num_attention_heads`: must be at least 1"
    );
    assert_eq!(config.head_dim(), 0, "no division by zero");
    let err = config.validate_in(Path::new("/m/config.json")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/m/config.json: field `num_attention_heads`: must be at least 1"
    );
    let mut nan = tiny_config(Architecture::Llama, 16);
    nan.rms_norm_eps = f64::NAN;
    assert!(
        nan.validate()
            .unwrap_err()
            .to_string()
            .contains("rms_norm_eps")
    );
    nan.rms_norm_eps = 1e-6;
    nan.rope_theta = f64::INFINITY;
    assert!(
        nan.validate()
            .unwrap_err()
            .to_string()
            .contains("rope_theta")
    );
}

/// A checkpoint built by hand (not through `Checkpoint::load`) is validated by
/// `Llama::from_checkpoint` too: an error, not a divide-by-zero or capacity-overflow panic.
#[test]
fn from_checkpoint_validates_a_hand_made_config() {
    let base = tiny_config(Architecture::Llama, 16);
    let tensors = common::tiny_tensors(&base);
    type Edit = (&'static str, fn(&mut ModelConfig));
    let edits: [Edit; 3] = [
        ("num_attention_heads", |c| c.num_attention_heads = 0),
        ("num_hidden_layers", |c| c.num_hidden_layers = 1 << 60),
        ("intermediate_size", |c| c.intermediate_size = 0),
    ];
    for (field, edit) in edits {
        let mut config = base.clone();
        edit(&mut config);
        let mut checkpoint = Checkpoint {
            config,
            tensors: common::stored(tensors.clone()),
            codec: smollm2().codec.clone(),
            source: "hand-made".into(),
        };
        let err = Llama::from_checkpoint(&mut checkpoint, &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("hand-made") && err.contains(&format!("field `{field}`")),
            "{err}"
        );
    }
}

#[test]
fn unused_tensors_are_an_error_listing_them() {
    let config = tiny_config(Architecture::Llama, 16);
    let device = Device::flex();
    let checkpoint = |tensors| Checkpoint {
        config: config.clone(),
        tensors: common::stored(tensors),
        codec: smollm2().codec.clone(),
        source: "tiny".into(),
    };
    let mut many = common::tiny_tensors(&config);
    for i in 0..12 {
        many.insert(
            format!("extra.{i:02}.weight"),
            HostTensor::new(vec![2], vec![0.0; 2]).unwrap(),
        );
    }
    let err = Llama::from_checkpoint(&mut checkpoint(many), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tiny")
            && err.contains("12 tensor(s) are not used")
            && err.contains("`extra.00.weight`")
            && err.contains("`extra.09.weight`")
            && !err.contains("extra.10")
            && err.contains("and 2 more"),
        "{err}"
    );
    // A layer beyond the config's is unused too.
    let mut three = tiny_config(Architecture::Llama, 16);
    three.num_hidden_layers = 3;
    let mut extra_layer = common::tiny_tensors(&three);
    let err = Llama::from_checkpoint(&mut checkpoint(extra_layer.clone()), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.layers.2."), "{err}");
    // A tied model's stored copy of the embedding is dropped silently.
    let mut tied = config.clone();
    tied.tie_word_embeddings = true;
    extra_layer = common::tiny_tensors(&tied);
    extra_layer.insert(
        "lm_head.weight".into(),
        extra_layer["model.embed_tokens.weight"].clone(),
    );
    let mut tied_checkpoint = Checkpoint {
        config: tied,
        tensors: common::stored(extra_layer),
        codec: smollm2().codec.clone(),
        source: "tied".into(),
    };
    Llama::from_checkpoint(&mut tied_checkpoint, &device).unwrap();
    assert!(tied_checkpoint.tensors.is_empty());
}

// ---------------------------------------------------------------- safetensors shards

/// `dir` without `model.safetensors`, its tensors in `shard.safetensors` listed by an index
/// whose weight map sends the embedding to `embedding_shard`.
fn sharded(dir: &Path, embedding_shard: &str) {
    std::fs::rename(dir.join("model.safetensors"), dir.join("shard.safetensors")).unwrap_or(());
    let index = json!({
        "weight_map": {
            "model.embed_tokens.weight": embedding_shard,
            "model.norm.weight": "shard.safetensors",
        }
    });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

fn load_err(dir: &Path) -> String {
    match std::panic::catch_unwind(|| Checkpoint::load(dir)) {
        Ok(Ok(_)) => panic!("{} loaded", dir.display()),
        Ok(Err(err)) => err.to_string(),
        Err(_) => panic!("{} panicked", dir.display()),
    }
}

#[test]
fn shard_paths_stay_inside_the_model_directory() {
    let (_scratch, dir) = hf_model("shards");
    sharded(&dir, "shard.safetensors");
    Checkpoint::load(&dir).expect("a plain shard name loads");
    // A valid safetensors file just outside the model directory is not read.
    std::fs::copy(dir.join("shard.safetensors"), dir.join("../x")).unwrap();
    for shard in [
        "../x",
        "sub/../../x",
        "/dev/zero",
        "./shard.safetensors",
        "",
    ] {
        sharded(&dir, shard);
        let err = load_err(&dir);
        assert!(
            err.contains("model.safetensors.index.json")
                && err.contains("field `weight_map`")
                && err.contains("not a relative path"),
            "{shard:?}: {err}"
        );
    }
}

#[test]
fn shards_must_be_regular_files() {
    let (_scratch, dir) = hf_model("fifo");
    sharded(&dir, "pipe.safetensors");
    let fifo = dir.join("pipe.safetensors");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = load_err(&dir);
    assert!(
        err.contains("pipe.safetensors") && err.contains("not a regular file"),
        "{err}"
    );
    // A symlink to a device, and a directory.
    std::fs::remove_file(&fifo).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &fifo).unwrap();
    let err = load_err(&dir);
    assert!(err.contains("not a regular file"), "{err}");
    std::fs::remove_file(&fifo).unwrap();
    std::fs::create_dir(&fifo).unwrap();
    let err = load_err(&dir);
    assert!(err.contains("a directory"), "{err}");
    // So must config.json be.
    std::fs::remove_file(dir.join("config.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("config.json")).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("config.json") && err.contains("not a regular file"),
        "{err}"
    );
}

/// A shard whose header claims more bytes than the file holds is refused by the safetensors
/// crate's own checks.
#[test]
fn truncated_safetensors_is_an_error() {
    let (_scratch, dir) = hf_model("short-shard");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
    let err = load_err(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("invalid safetensors"),
        "{err}"
    );
}

// ---------------------------------------------------------------- GGUF

fn load_gguf(tag: &str, bytes: Vec<u8>) -> String {
    let scratch = temp_dir(tag);
    let path = scratch.join("crafted.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = load_err(&path);
    assert!(err.contains("crafted.gguf"), "{err}");
    err
}

#[test]
fn duplicate_gguf_tensor_names_are_an_error() {
    let err = parse_err(gguf_bytes(&[], &[("w", vec![4], 0), ("w", vec![4], 0)], 16));
    assert!(err.contains("`w` appears more than once"), "{err}");
    let err = load_gguf(
        "gguf-dup",
        tiny_gguf_with("llama", &[], |t| t.push(("output_norm.weight", vec![8]))),
    );
    assert!(
        err.contains("`output_norm.weight` appears more than once"),
        "{err}"
    );
}

#[test]
fn zero_sized_gguf_tensors_are_an_error() {
    let err = parse_err(gguf_bytes(&[], &[("w", vec![4, 0], 0)], 16));
    assert!(err.contains("include a zero"), "{err}");
    for dims in [vec![], vec![0, 4], vec![8, 0]] {
        let err = load_gguf(
            "gguf-zero-embd",
            tiny_gguf_with("llama", &[], |t| t[0].1 = dims.clone()),
        );
        assert!(err.contains("token_embd.weight"), "{dims:?}: {err}");
    }
    // The embedding must be [vocab, hidden]: 4 tokens, d = 8.
    let err = load_gguf(
        "gguf-embd-shape",
        tiny_gguf_with("llama", &[], |t| t[0].1 = vec![8, 3]),
    );
    assert!(
        err.contains("token_embd.weight") && err.contains("[3, 8]") && err.contains("[4, 8]"),
        "{err}"
    );
}

#[test]
fn crafted_gguf_configs_are_errors() {
    let cases = [
        ("attention.head_count", 0, "num_attention_heads"),
        ("attention.head_count_kv", 0, "num_key_value_heads"),
        ("block_count", 0, "num_hidden_layers"),
        ("block_count", u32::MAX, "num_hidden_layers"),
        ("block_count", 2, "num_hidden_layers"),
        ("feed_forward_length", 0, "intermediate_size"),
        ("embedding_length", 0, "hidden_size"),
        ("attention.head_count", 8, "odd"),
    ];
    for (key, value, expected) in cases {
        let err = load_gguf(
            "gguf-config",
            tiny_gguf_with("llama", &[(key, value)], |_| {}),
        );
        assert!(err.contains(expected), "{key} = {value}: {err}");
    }
}
