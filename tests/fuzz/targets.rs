//! The fuzz targets: valid seeds and the library entry points they feed.
//!
//! | target | seeds | entry point |
//! |---|---|---|
//! | `gguf` | one-layer Llama and Qwen2 GGUF files ([`tiny_gguf_with`]), one with tied embeddings | [`Checkpoint::load`] of the file (container, metadata, config, tensors, tokenizer) |
//! | `safetensors` | that model saved as a Hugging Face folder | [`Checkpoint::load`] of the folder, `model.safetensors` mutated |
//! | `safetensors_index` | the same weights as one shard named in `model.safetensors.index.json` | [`Checkpoint::load`], the index mutated |
//! | `config` | that `config.json` and the four architectures' fixture configs | `ModelConfig` from JSON, then [`ModelConfig::validate`] and the sizes derived from it |
//! | `tokenizer_json` | that folder's `tokenizer.json` | [`Checkpoint::load`], then encoding a text |
//! | `tokenizer_config` | that folder's `tokenizer_config.json`, with and without a list of templates | [`Checkpoint::load`], then rendering its chat template |
//! | `chat_template` | the fixture architectures' chat templates | compiling a tokenizer with the template, rendering a conversation |
//! | `judge_template` | [`DEFAULT_TEMPLATE`] | [`PromptTemplate::new`] and `fill` |
//! | `data-FORMAT` | two rows of each preference format, as JSON lines and as a JSON array | [`gram::data::read_preferences`] with the format and with detection |
//! | `model_outputs` | AlpacaEval, plain and Arena-Hard rows | [`read_outputs`] and [`build_pairs`] |
//!
//! File-based entry points read from a scratch folder per target (in `/dev/shm` where there is
//! one), rewritten each execution.

use super::Target;
use super::common::gguf::tiny_gguf_with;
use super::mutate::Shape;
use gram::checkpoint::Checkpoint;
use gram::checkpoint::hf::save_hf_dir;
use gram::config::ModelConfig;
use gram::data::unlabeled::{PairOptions, build_pairs, read_outputs};
use gram::data::{Format, read_preferences};
use gram::prompt::{DEFAULT_TEMPLATE, PromptTemplate};
use gram::tokenizer::{ByteLevelBpe, ChatMessage, TextCodec};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A scratch folder for `target`, removed with it; in memory (`/dev/shm`) where there is one,
/// as writing the input to disk each execution makes file targets twenty times slower.
fn scratch(target: &str) -> TempDir {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix(&format!("gram-fuzz-{target}-"))
        .tempdir_in(base)
        .expect("create a scratch folder")
}

/// One-layer Llama and Qwen2 models, and a Llama one with tied embeddings.
fn gguf_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = ["llama", "qwen2"]
        .iter()
        .map(|arch| tiny_gguf_with(arch, &[], |_| {}))
        .collect();
    seeds.push(tiny_gguf_with("llama", &[("context_length", 4096)], |t| {
        t.retain(|(name, _)| *name != "output.weight")
    }));
    seeds
}

pub fn gguf() -> Target {
    let scratch = scratch("gguf");
    let path = scratch.path().join("model.gguf");
    Target {
        name: "gguf",
        scratch: Some(scratch),
        seeds: gguf_seeds(),
        shape: Shape::Binary,
        run: Box::new(move |input| {
            std::fs::write(&path, input).expect("write the input");
            Checkpoint::load(&path).is_ok()
        }),
    }
}

/// A scratch folder holding `model/`, a Hugging Face folder of the one-layer Llama model
/// (`config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`), and the
/// model itself.
pub fn hf_folder(target: &str) -> (TempDir, PathBuf, Checkpoint) {
    let scratch = scratch(target);
    let gguf = scratch.path().join("seed.gguf");
    std::fs::write(&gguf, tiny_gguf_with("llama", &[], |_| {})).expect("write the seed");
    let mut checkpoint = Checkpoint::load(&gguf).expect("the seed GGUF loads");
    let tensors = checkpoint.take_host_tensors().expect("the seed's tensors");
    let dir = scratch.path().join("model");
    save_hf_dir(&dir, &checkpoint.config, &tensors, &checkpoint.codec)
        .expect("save the seed folder");
    (scratch, dir, checkpoint)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn safetensors() -> Target {
    let (scratch, dir, _) = hf_folder("safetensors");
    let weights = dir.join("model.safetensors");
    Target {
        name: "safetensors",
        scratch: Some(scratch),
        seeds: vec![read(&weights)],
        shape: Shape::Binary,
        run: Box::new(move |input| {
            std::fs::write(&weights, input).expect("write the input");
            Checkpoint::load(&dir).is_ok()
        }),
    }
}

pub fn safetensors_index() -> Target {
    let (scratch, dir, checkpoint) = hf_folder("safetensors-index");
    let shard = "model-00001-of-00001.safetensors";
    std::fs::rename(dir.join("model.safetensors"), dir.join(shard)).expect("rename the shard");
    let weight_map: serde_json::Map<String, Value> = checkpoint
        .tensors
        .keys()
        .map(|name| (name.clone(), json!(shard)))
        .collect();
    let index = json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    let index_path = dir.join("model.safetensors.index.json");
    Target {
        name: "safetensors_index",
        scratch: Some(scratch),
        seeds: vec![index.to_string().into_bytes()],
        shape: Shape::Json,
        run: Box::new(move |input| {
            std::fs::write(&index_path, input).expect("write the input");
            Checkpoint::load(&dir).is_ok()
        }),
    }
}

/// The fixture folders of the four architectures (`../shared/fixtures/archs`).
fn arch_fixtures() -> Vec<PathBuf> {
    ["llama3", "mistral", "qwen2", "qwen3"]
        .iter()
        .map(|arch| {
            super::common::shared_dir()
                .join("fixtures/archs")
                .join(arch)
        })
        .collect()
}

pub fn config() -> Target {
    let (_scratch, dir, _) = hf_folder("config");
    let mut seeds = vec![read(&dir.join("config.json"))];
    seeds.extend(
        arch_fixtures()
            .iter()
            .map(|dir| read(&dir.join("config.json"))),
    );
    Target {
        name: "config",
        scratch: None,
        seeds,
        shape: Shape::Json,
        run: Box::new(|input| {
            let Ok(config) = serde_json::from_slice::<ModelConfig>(input) else {
                return false;
            };
            if config.validate().is_err() {
                return false;
            }
            // What loading derives from a valid config must not overflow.
            let _ = (config.head_dim(), config.variant(), config.num_parameters());
            let _ = config.forward_flops(config.max_position_embeddings, 64);
            true
        }),
    }
}

/// The Hugging Face folder's `tokenizer.json` (read by the `tokenizers` crate), loaded with the
/// folder and used to encode a text.
pub fn tokenizer_json() -> Target {
    let (scratch, dir, _) = hf_folder("tokenizer-json");
    let path = dir.join("tokenizer.json");
    Target {
        name: "tokenizer_json",
        scratch: Some(scratch),
        seeds: vec![read(&path)],
        shape: Shape::Json,
        run: Box::new(move |input| {
            std::fs::write(&path, input).expect("write the input");
            let Ok(checkpoint) = Checkpoint::load(&dir) else {
                return false;
            };
            let _ = checkpoint.codec.encode("ab a b <|end|> é");
            true
        }),
    }
}

/// The Hugging Face folder's `tokenizer_config.json` (special tokens, chat template as a string
/// or a list of named templates), loaded with the folder and its template rendered.
pub fn tokenizer_config() -> Target {
    let (scratch, dir, _) = hf_folder("tokenizer-config");
    let path = dir.join("tokenizer_config.json");
    let mut with_template: Value = serde_json::from_slice(&read(&path)).expect("JSON");
    let template = read(&arch_fixtures()[2].join("chat_template.jinja"));
    with_template["chat_template"] = json!([
        { "name": "default", "template": String::from_utf8_lossy(&template) },
        { "name": "tool_use", "template": "{{ messages }}" },
    ]);
    Target {
        name: "tokenizer_config",
        scratch: Some(scratch),
        seeds: vec![read(&path), with_template.to_string().into_bytes()],
        shape: Shape::Json,
        run: Box::new(move |input| {
            std::fs::write(&path, input).expect("write the input");
            let Ok(checkpoint) = Checkpoint::load(&dir) else {
                return false;
            };
            let messages = [ChatMessage::new("user", "which is better?")];
            let _ = checkpoint.codec.apply_chat_template(&messages, true);
            true
        }),
    }
}

/// Jinja fragments to splice into chat templates: loops, recursion, filters, whitespace
/// control, unbalanced delimiters.
pub const JINJA: &[&str] = &[
    "{{ messages }}",
    "{% for m in messages %}{{ m.content }}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ 'x' * 1000000000 }}",
    "{{ messages[0]['content'] * 100000 }}",
    "{{ raise_exception('no') }}",
    "{% set x = namespace(a=1) %}{{ x.a }}",
    "{{ bos_token }}{{ eos_token }}",
    "{% if add_generation_prompt %}",
    "{% endif %}",
    "{%- ",
    " -%}",
    "{{",
    "}}",
    "{#",
    "|tojson",
    "|length",
    "[::-1]",
    "{{ (messages|first).role|upper }}",
    "{{ range(2**62)|length }}",
];

pub fn chat_template() -> Target {
    let seeds = arch_fixtures()
        .iter()
        .map(|dir| read(&dir.join("chat_template.jinja")))
        .collect();
    let tokens: Vec<String> = ["a", "b", "ab", "<|end|>"].map(String::from).to_vec();
    let merges = vec!["a b".to_owned()];
    let source = PathBuf::from("fuzz-chat-template");
    Target {
        name: "chat_template",
        scratch: None,
        seeds,
        shape: Shape::Text(JINJA),
        run: Box::new(move |input| {
            let Ok(template) = std::str::from_utf8(input) else {
                return false;
            };
            let codec = TextCodec::from_byte_level_bpe(
                &source,
                ByteLevelBpe {
                    tokens: &tokens,
                    token_types: &[1, 1, 1, 3],
                    merges: &merges,
                    pre: None,
                    bos_id: Some(0),
                    eos_id: Some(3),
                    pad_id: None,
                    chat_template: Some(template),
                },
            );
            let Ok(codec) = codec else {
                return false;
            };
            let messages = [
                ChatMessage::new("system", "be fair"),
                ChatMessage::new("user", "which is better, A or B?"),
                ChatMessage::new("assistant", "A"),
            ];
            codec.apply_chat_template(&messages, true).is_ok()
                & codec.apply_chat_template(&messages[1..2], false).is_ok()
        }),
    }
}

pub fn judge_template() -> Target {
    Target {
        name: "judge_template",
        scratch: None,
        seeds: vec![DEFAULT_TEMPLATE.as_bytes().to_vec()],
        shape: Shape::Text(&[
            "{prompt}",
            "{response_a}",
            "{response_b}",
            "{",
            "}",
            "{{prompt}}",
        ]),
        run: Box::new(|input| {
            let Ok(template) = PromptTemplate::new(String::from_utf8_lossy(input)) else {
                return false;
            };
            let filled = template.fill("{response_a}", "{prompt}", "é");
            assert!(filled.contains('é'), "the response_b slot was filled");
            true
        }),
    }
}

/// Two rows of `format`.
fn format_rows(format: Format) -> [Value; 2] {
    let chat = |role: &str, text: &str| json!({ "role": role, "content": text });
    let (labels, verdicts) = (["A", "B"], ["A>B", "B>A"]);
    let row = |k: usize| match format {
        Format::Auto | Format::Preference if k == 0 => {
            json!({ "prompt": "q", "chosen": "a", "rejected": "b" })
        }
        Format::Auto | Format::Preference => json!({
            "chosen": [chat("user", "q"), chat("assistant", "a")],
            "rejected": [chat("user", "q"), chat("assistant", "b")],
        }),
        Format::Pairs => json!({
            "prompt": "q", "response_a": "a", "response_b": "b", "label": labels[k],
        }),
        Format::Hh => json!({
            "chosen": "\n\nHuman: q\n\nAssistant: a\n\nHuman: more\n\nAssistant: yes",
            "rejected": format!("\n\nHuman: q\n\nAssistant: a\n\nHuman: more\n\nAssistant: no{k}"),
        }),
        Format::RmBench => json!({
            "prompt": "q", "chosen": ["a", "a a", "**a**"], "rejected": ["b", "b b", "**b**"],
            "domain": "chat",
        }),
        Format::Llmbar => json!({ "input": "q", "output_1": "a", "output_2": "b", "label": k + 1 }),
        Format::LlamaFactory => json!({
            "conversations": [{ "from": "human", "value": "q" }],
            "chosen": { "from": "gpt", "value": "a" },
            "rejected": { "from": "gpt", "value": "b" },
        }),
        Format::Judgebench => json!({
            "question": "q", "response_A": "a", "response_B": "b",
            "label": verdicts[k], "source": "mmlu-pro",
        }),
        Format::Rewardbench => json!({
            "prompt": "q", "chosen": "a", "rejected": "b", "subset": "chat", "id": k,
        }),
        Format::Rewardbench2 => json!({
            "id": k, "prompt": "q", "chosen": ["a"], "rejected": ["b", "c", "d"],
            "num_correct": 1, "num_incorrect": 3, "total_completions": 4,
            "models": ["m1", "m2", "m3", "m4"], "subset": "Math",
        }),
    };
    [row(0), row(1)]
}

/// One target per preference format; inputs are read as JSON lines or as one JSON array
/// (chosen by the input's first byte), with the format given and detected.
pub fn data_formats() -> Vec<Target> {
    [
        Format::Preference,
        Format::Pairs,
        Format::Hh,
        Format::RmBench,
        Format::Llmbar,
        Format::LlamaFactory,
        Format::Judgebench,
        Format::Rewardbench,
        Format::Rewardbench2,
    ]
    .into_iter()
    .map(|format| {
        let rows = format_rows(format);
        let lines = format!("{}\n{}\n", rows[0], rows[1]);
        let array = serde_json::to_string_pretty(&rows).expect("serialise");
        let scratch = scratch(format.name());
        let dir = scratch.path().to_path_buf();
        Target {
            name: format.name(),
            scratch: Some(scratch),
            seeds: vec![lines.into_bytes(), array.into_bytes()],
            shape: Shape::Json,
            run: Box::new(move |input| {
                let array = input.trim_ascii_start().starts_with(b"[");
                let path = dir.join(if array { "rows.json" } else { "rows.jsonl" });
                std::fs::write(&path, input).expect("write the input");
                let given = read_preferences(&path, format).is_ok();
                read_preferences(&path, Format::Auto).is_ok() || given
            }),
        }
    })
    .collect()
}

pub fn model_outputs() -> Target {
    let scratch = scratch("model-outputs");
    let questions = scratch.path().join("question.jsonl");
    let question = json!({ "question_id": "q1", "turns": [{ "content": "why?" }] });
    std::fs::write(&questions, format!("{question}\n")).expect("write the questions");
    let answers = scratch.path().join("answers.jsonl");
    let seeds = [
        vec![
            json!({ "instruction": "q", "output": "a", "generator": "m1" }),
            json!({ "instruction": "q", "output": "b", "generator": "m2" }),
        ],
        vec![
            json!({ "prompt": "q", "response": "a", "model": "m1" }),
            json!({ "prompt": "q", "response": "b" }),
        ],
        vec![
            json!({ "question_id": "q1", "model_id": "m1", "choices": [{ "turns": [{ "content": "a" }] }] }),
            json!({ "question_id": "q1", "model_id": "m2", "choices": [{ "turns": [{ "content": "b" }] }] }),
        ],
    ];
    Target {
        name: "model_outputs",
        scratch: Some(scratch),
        seeds: seeds
            .iter()
            .map(|rows| format!("{}\n{}\n", rows[0], rows[1]).into_bytes())
            .collect(),
        shape: Shape::Json,
        run: Box::new(move |input| {
            std::fs::write(&answers, input).expect("write the input");
            let Ok(outputs) = read_outputs(&[questions.clone(), answers.clone()]) else {
                return false;
            };
            for per_prompt in [None, Some(3)] {
                let _ = build_pairs(
                    &outputs,
                    PairOptions {
                        per_prompt,
                        seed: 1,
                        ..PairOptions::default()
                    },
                );
            }
            true
        }),
    }
}
