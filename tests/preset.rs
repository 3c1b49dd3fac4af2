//! `--preset gram`: the released GRAM checkpoints' prompt byte for byte, its labels, and
//! `enable_thinking=False` reaching a Qwen3-style chat template.

mod common;

use burn::tensor::Device;
use gram::judge::{GramJudge, JudgeOptions};
use gram::preset::{GRAM, GRAM_TEMPLATE, preset};
use gram::prompt::PromptTemplate;
use gram::{Judge, Pair};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tail of Qwen3's chat template (its `add_generation_prompt` branch, verbatim) after plain
/// ChatML turns.
const QWEN3_STYLE_TEMPLATE: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}\
    {{- '<|im_start|>assistant\\n' }}\
    {%- if enable_thinking is defined and enable_thinking is false %}\
        {{- '<think>\\n\\n</think>\\n\\n' }}\
    {%- endif %}\
{%- endif %}";

#[test]
fn the_gram_prompt_is_the_authors_text() {
    // `system_prompt` of NiuTrans/GRAM evaluation/gram_eval.py is 1,010 bytes with its
    // `{input}` slot; ours names it `{prompt}` (one byte more).
    assert_eq!(GRAM_TEMPLATE.len(), 1011);
    assert!(GRAM_TEMPLATE.starts_with(
        "Please act as an impartial judge and evaluate the quality of the responses provided by \
         two AI assistants to the user question displayed below. You should choose the \
         assistant that follows the user's instructions"
    ));
    assert!(GRAM_TEMPLATE.contains(
        "\"A\" if assistant A is better, \"B\" if assistant B is better.\n\n[User Question]\n{prompt}\n\n\
         [The Start of Assistant A's Answer]\n{response_a}\n[The End of Assistant A's Answer]\n\n"
    ));
    assert!(GRAM_TEMPLATE.ends_with("[The End of Assistant B's Answer]\n\n#Preferred: "));
    let filled = PromptTemplate::new(GRAM_TEMPLATE)
        .unwrap()
        .fill("Q", "a", "b");
    assert!(filled.contains("[User Question]\nQ\n\n"), "{filled}");
    assert_eq!(GRAM.labels(), ("A".into(), "B".into()));
    assert_eq!(
        serde_json::Value::Object(GRAM.chat_template_kwargs().into_iter().collect()),
        serde_json::json!({"enable_thinking": false})
    );
    assert_eq!(preset("gram").unwrap(), &GRAM);
    let err = preset("gpt").unwrap_err().to_string();
    assert!(err.contains("\"gpt\"") && err.contains("gram"), "{err}");
}

/// The tiny Qwen3 checkpoint of the shared fixtures, with a Qwen3-style chat template.
fn qwen3_model(dir: &Path) -> PathBuf {
    let source = common::shared_dir().join("fixtures/archs/qwen3");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.join("chat_template.jinja"), QWEN3_STYLE_TEMPLATE).unwrap();
    dir.to_path_buf()
}

#[test]
fn the_preset_renders_one_user_turn_with_thinking_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let model = qwen3_model(dir.path());
    let options = |kwargs| JudgeOptions {
        template: Some(GRAM.template.into()),
        labels: GRAM.labels(),
        chat_template_kwargs: kwargs,
        batch_size: 1,
        ..JudgeOptions::default()
    };
    let mut judge = GramJudge::load(
        &model,
        &Device::flex(),
        options(GRAM.chat_template_kwargs()),
    )
    .unwrap();
    let filled = PromptTemplate::new(GRAM_TEMPLATE)
        .unwrap()
        .fill("Q?", "one", "two");
    let rendered = judge.prompts().render("Q?", "one", "two").unwrap();
    assert_eq!(
        rendered,
        format!(
            "<|im_start|>user\n{filled}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        )
    );
    // transformers 5.24's apply_chat_template(..., enable_thinking=False) on the same
    // template and texts: 1,056 bytes, ending as above.
    assert_eq!(rendered.len(), 1056);
    let verdict = judge.judge(&[Pair::new("Q?", "one", "two")]).unwrap()[0];
    assert!(verdict.p_a > 0.0 && verdict.p_a < 1.0, "{verdict:?}");

    // Without the option the template leaves thinking on: no empty think block.
    let plain = GramJudge::load(&model, &Device::flex(), options(Default::default())).unwrap();
    let rendered = plain.prompts().render("Q?", "one", "two").unwrap();
    assert!(
        rendered.ends_with("<|im_start|>assistant\n") && !rendered.contains("<think>"),
        "{rendered}"
    );
}

#[test]
fn the_command_line_refuses_a_preset_with_its_own_template_or_an_unknown_name() {
    let gram = || Command::new(env!("CARGO_BIN_EXE_gram"));
    let output = gram()
        .args([
            "judge",
            "--preset",
            "gram",
            "--template",
            "t.txt",
            "--model",
            "m",
        ])
        .args(["--input", "i.jsonl", "--output", "o.jsonl"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--template") && stderr.contains("--preset"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    std::fs::write(
        &input,
        "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n",
    )
    .unwrap();
    let output = gram()
        .args(["judge", "--preset", "nope", "--device", "cpu", "--model"])
        .arg(common::model_path())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out.jsonl"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown preset \"nope\""), "{stderr}");
}
