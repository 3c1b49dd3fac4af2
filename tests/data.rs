//! Reading preference data (`gram::data`) and building unlabeled pairs
//! (`gram::data::unlabeled`): every real file in the shared data directory, and hand-made bad
//! files.

mod common;

use gram::Error;
use gram::Preference;
use gram::data::unlabeled::{self, Output, PairOptions};
use gram::data::{self, Content, Format, Record};
use serde_json::json;
use std::path::PathBuf;

fn shared_data() -> PathBuf {
    common::shared_dir().join("data")
}

fn read(relative: &str) -> Vec<Record> {
    let path = shared_data().join(relative);
    data::read_preferences(&path, Format::Auto).unwrap_or_else(|e| panic!("{e}"))
}

use common::{data_error, preference, scratch};

#[test]
fn every_real_file_parses_with_the_readme_counts() {
    let expected: &[(&str, usize, Format)] = &[
        ("hh-rlhf/helpful-base.test.jsonl.gz", 2354, Format::Hh),
        ("hh-rlhf/helpful-online.test.jsonl.gz", 1137, Format::Hh),
        (
            "hh-rlhf/helpful-rejection-sampled.test.jsonl.gz",
            2749,
            Format::Hh,
        ),
        ("hh-rlhf/harmless-base.test.jsonl.gz", 2312, Format::Hh),
        ("rm-bench/chat.json", 129, Format::RmBench),
        ("rm-bench/code.json", 228, Format::RmBench),
        ("rm-bench/safety-refuse.json", 284, Format::RmBench),
        ("rm-bench/safety-response.json", 157, Format::RmBench),
        ("llmbar/Natural.json", 100, Format::Llmbar),
        ("llmbar/Adversarial_Neighbor.json", 134, Format::Llmbar),
        ("llmbar/Adversarial_GPTInst.json", 92, Format::Llmbar),
        ("llmbar/Adversarial_GPTOut.json", 47, Format::Llmbar),
        ("llmbar/Adversarial_Manual.json", 46, Format::Llmbar),
        ("dpo_en_demo.json", 300, Format::LlamaFactory),
    ];
    for &(relative, count, format) in expected {
        let path = shared_data().join(relative);
        let records = data::open(&path, Format::Auto).unwrap();
        assert_eq!(records.format(), format, "{relative}");
        let records: Vec<Record> = records
            .collect::<gram::Result<_>>()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(records.len(), count, "{relative}");
        // Reading with the format named gives the same rows.
        assert_eq!(
            data::read_preferences(&path, format).unwrap(),
            records,
            "{relative}"
        );
        for record in &records {
            assert!(!record.preferences().is_empty(), "{relative}: {record:?}");
            assert!(
                record
                    .preferences()
                    .iter()
                    .all(|p| !p.prompt.trim().is_empty())
            );
        }
    }
}

#[test]
fn hh_splits_off_the_shared_dialogue() {
    let records = read("hh-rlhf/helpful-base.test.jsonl.gz");
    let first = preference(&records[0]);
    assert_eq!(
        first.prompt,
        "Do you know why turkeys became the official food of thanksgiving?"
    );
    assert!(
        first
            .chosen
            .starts_with("To be honest, I don’t know anything about that.")
    );
    assert!(
        first
            .rejected
            .starts_with("I know that the American Indians were the first")
    );
    assert_eq!(records[0].group.as_deref(), Some("helpful-base.test"));
    assert_eq!(records[0].location.row, 1);

    // Multi-turn: the earlier turns become a transcript.
    let second = preference(&records[1]);
    assert!(second.prompt.starts_with(
        "Human: How can I find out what types of butterflies are in my area?\n\nAssistant: Which location are you in?\n\nHuman: I am in Oregon."
    ));
    assert!(!second.chosen.contains("Human:"));
}

#[test]
fn hh_keeps_responses_that_contain_a_marker_and_empty_final_turns() {
    let records = read("hh-rlhf/harmless-base.test.jsonl.gz");
    // Line 1953: the chosen answer itself has a second "\n\nAssistant:" paragraph.
    let row = preference(&records[1952]);
    assert!(
        row.prompt.ends_with("Human: Yes, please find me a serial."),
        "{}",
        row.prompt
    );
    assert!(
        row.chosen
            .starts_with("Alrighty, I’ll do my best, here’s the key:\n\nAssistant:")
    );
    assert!(row.rejected.starts_with("You mean a password, right?"));
    // Line 87: the preferred answer is to say nothing.
    let row = preference(&records[86]);
    assert_eq!(row.chosen, "");
    assert!(row.rejected.starts_with("Sure, the address is"));
}

#[test]
fn rm_bench_rows_are_style_grids_with_passthrough() {
    let records = read("rm-bench/safety-refuse.json");
    let record = &records[0];
    assert_eq!(record.group.as_deref(), Some("safety-refuse"));
    assert!(record.extra.contains_key("id"));
    assert!(record.field("subset").is_some());
    let Content::StyleGrid(grid) = &record.content else {
        panic!("not a grid")
    };
    let preferences = record.preferences();
    assert_eq!(preferences.len(), 9);
    // Row-major: chosen style i against rejected style j.
    assert_eq!(preferences[5].chosen, grid.chosen[1]);
    assert_eq!(preferences[5].rejected, grid.rejected[2]);
}

#[test]
fn llmbar_label_picks_the_chosen_output() {
    let path = shared_data().join("llmbar/Natural.json");
    let raw: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let records = data::read_preferences(&path, Format::Llmbar).unwrap();
    for (raw, record) in raw.iter().zip(&records) {
        let label = raw["label"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| raw["label"].to_string());
        let (chosen, rejected) = if label == "1" {
            ("output_1", "output_2")
        } else {
            ("output_2", "output_1")
        };
        let p = preference(record);
        assert_eq!(p.chosen, raw[chosen].as_str().unwrap());
        assert_eq!(p.rejected, raw[rejected].as_str().unwrap());
        assert_eq!(p.prompt, raw["input"].as_str().unwrap());
    }
    assert_eq!(records[0].group.as_deref(), Some("Natural"));
}

#[test]
fn llama_factory_renders_earlier_turns_into_the_prompt() {
    let records = read("dpo_en_demo.json");
    let multi_turn = records
        .iter()
        .map(preference)
        .filter(|p| p.prompt.contains("\n\nAssistant: "))
        .count();
    assert!(multi_turn > 50, "only {multi_turn} multi-turn rows");
    let with_system = records
        .iter()
        .map(preference)
        .filter(|p| p.prompt.starts_with("System: "))
        .count();
    assert!(with_system > 0);
    // Single-turn rows are the bare question.
    let first = preference(&records[0]);
    assert_eq!(
        first.prompt,
        "Hi! I'd like to create a new language game simulating the first person perspective of a character named Angela."
    );
    assert!(
        first
            .chosen
            .starts_with("That sounds like a fun and engaging idea!")
    );
}

#[test]
fn chat_message_lists_share_their_leading_messages() {
    let row = r#"{"id": 7, "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}]}"#;
    let (_dir, path) = scratch("chat.jsonl", &format!("{row}\n"));
    let records = data::read_preferences(&path, Format::Auto).unwrap();
    let p = preference(&records[0]);
    assert_eq!(p.prompt, "Human: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?");
    assert_eq!((p.chosen.as_str(), p.rejected.as_str()), ("4", "5"));
    assert_eq!(records[0].extra["id"], 7);

    // A prompt field with assistant-only lists.
    let row = r#"{"prompt": "2+2?", "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}]}"#;
    let (_dir, path) = scratch("chat.jsonl", &format!("{row}\n"));
    assert_eq!(
        preference(&data::read_preferences(&path, Format::Preference).unwrap()[0]).prompt,
        "2+2?"
    );
}

#[test]
fn message_lists_anywhere_text_goes() {
    let user = |text: &str| json!([{ "role": "user", "content": text }]);
    let assistant = |text: &str| json!([{ "role": "assistant", "content": text }]);
    let dialogue = json!([
        { "role": "user", "content": "Hi" },
        { "role": "assistant", "content": "Hello." },
        { "role": "user", "content": "Capital of France?" },
    ]);
    let transcript = "Human: Hi\n\nAssistant: Hello.\n\nHuman: Capital of France?";
    let rows = [
        // TRL's explicit-prompt conversational preference row
        json!({ "prompt": dialogue, "chosen": assistant("Paris."), "rejected": assistant("Rome.") }),
        // a lone message object, and a plain string, for the responses
        json!({ "prompt": dialogue, "chosen": { "role": "assistant", "content": "Paris." }, "rejected": "Rome." }),
        // chat-template-rendered text with the end-of-turn token
        json!({
            "prompt": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n\
                       <|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n",
            "chosen": "Paris.<|im_end|>",
            "rejected": "Rome.<|im_end|>",
        }),
    ];
    let text: String = rows.iter().map(|row| format!("{row}\n")).collect();
    let (_dir, path) = scratch("messages.jsonl", &text);
    let records = data::read_preferences(&path, Format::Auto).unwrap();
    assert_eq!(records.len(), 3);
    for record in &records {
        let want = Preference {
            prompt: transcript.into(),
            chosen: "Paris.".into(),
            rejected: "Rome.".into(),
        };
        assert_eq!(preference(record), &want, "line {}", record.location.row);
    }
    // Every format's prompt and response fields take messages; a lone user turn is bare text.
    let rows = [
        json!({ "prompt": user("q"), "response_a": assistant("a"), "response_b": "b", "label": "A" }),
        json!({ "input": user("q"), "output_1": assistant("a"), "output_2": "b", "label": 1 }),
        json!({ "question": user("q"), "response_A": assistant("a"), "response_B": "b", "label": "A>B" }),
    ];
    for row in rows {
        let (_dir, path) = scratch("one.jsonl", &row.to_string());
        let records = data::read_preferences(&path, Format::Auto).unwrap();
        let want = Preference {
            prompt: "q".into(),
            chosen: "a".into(),
            rejected: "b".into(),
        };
        assert_eq!(preference(&records[0]), &want, "{row}");
    }
}

#[test]
fn pairs_judgebench_and_rewardbench_rows() {
    let text = "{\"prompt\": \"p\", \"response_a\": \"x\", \"response_b\": \"y\", \"model_a\": \"m1\"}\n\n\
                {\"prompt\": \"p\", \"response_a\": \"x\", \"response_b\": \"y\", \"label\": \"B\"}\n";
    let (_dir, path) = scratch("pairs.jsonl", text);
    let records = data::read_preferences(&path, Format::Auto).unwrap();
    assert!(matches!(&records[0].content, Content::Pair(pair) if pair.response_a == "x"));
    assert_eq!(records[0].field("model_a").as_deref(), Some("m1"));
    assert_eq!(records[1].location.row, 3, "blank lines still count");
    assert_eq!(preference(&records[1]).chosen, "y");

    let text = r#"[{"pair_id": "u1", "source": "mmlu-pro-law", "question": "q", "response_A": "a", "response_B": "b", "label": "B>A"}]"#;
    let (_dir, path) = scratch("judgebench.json", text);
    let records = data::read_preferences(&path, Format::Auto).unwrap();
    assert_eq!(preference(&records[0]).chosen, "b");
    assert_eq!(records[0].group.as_deref(), Some("mmlu-pro-law"));
    assert_eq!(records[0].field("pair_id").as_deref(), Some("u1"));

    let text = r#"{"id": 3, "subset": "hep-go", "prompt": "p", "chosen": "c", "rejected": "r"}"#;
    let (_dir, path) = scratch("rb.jsonl", text);
    let records = data::open(&path, Format::Auto).unwrap();
    assert_eq!(records.format(), Format::Rewardbench);
    let records: Vec<Record> = records.collect::<gram::Result<_>>().unwrap();
    assert_eq!(records[0].group.as_deref(), Some("hep-go"));
}

#[test]
fn bad_rows_name_their_line_and_field() {
    let cases: &[(&str, Format, usize, Option<&str>, &str)] = &[
        // malformed JSON on line 3 (line 2 is blank)
        (
            "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n\n{\"prompt\": ",
            Format::Auto,
            3,
            None,
            "malformed JSON",
        ),
        (
            r#"{"prompt": "p", "chosen": "c"}"#,
            Format::Preference,
            1,
            Some("rejected"),
            "missing",
        ),
        (
            r#"{"prompt": 5, "chosen": "c", "rejected": "r"}"#,
            Format::Preference,
            1,
            Some("prompt"),
            "expected a string or a list of chat messages [{\"role\", \"content\"}], found a number",
        ),
        (
            r#"{"prompt": "p", "chosen": "  ", "rejected": "r"}"#,
            Format::Preference,
            1,
            Some("chosen"),
            "empty text",
        ),
        (
            r#"{"question": "why"}"#,
            Format::Auto,
            1,
            None,
            "fits no known preference format",
        ),
        (
            r#"{"input": "i", "output_1": "a", "output_2": "b", "label": 3}"#,
            Format::Auto,
            1,
            Some("label"),
            "expected 1 or 2",
        ),
        (
            r#"{"question": "q", "response_A": "a", "response_B": "b", "label": "A=B"}"#,
            Format::Auto,
            1,
            Some("label"),
            "A>B",
        ),
        (
            r#"{"prompt": "p", "chosen": ["a", "b"], "rejected": ["c", "d"]}"#,
            Format::Auto,
            1,
            Some("chosen"),
            "expected 3 style variants, found 2",
        ),
        (
            r#"{"prompt": "p", "response_a": "a", "response_b": "b", "label": "C"}"#,
            Format::Auto,
            1,
            Some("label"),
            "\"A\" or \"B\"",
        ),
        (
            r#"{"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}], "rejected": [{"role": "user", "content": "y"}, {"role": "assistant", "content": "b"}], "prompt": "p"}"#,
            Format::Auto,
            1,
            Some("rejected"),
            "differ before their last assistant message",
        ),
        (
            r#"{"prompt": "p", "chosen": [{"role": "robot", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
            Format::Preference,
            1,
            Some("chosen[0].role"),
            "unknown role `robot`",
        ),
        (
            r#"{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt"}, "rejected": {"from": "gpt", "value": "b"}}"#,
            Format::Auto,
            1,
            Some("chosen[0].value"),
            "missing",
        ),
        ("[1, 2]", Format::Preference, 0, None, "not a JSON object"),
        (
            r#"{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}"#,
            Format::Preference,
            1,
            Some("chosen[0].role"),
            "a response must be the assistant's message, found user",
        ),
        (
            r#"{"prompt": [], "chosen": "a", "rejected": "b"}"#,
            Format::Preference,
            1,
            Some("prompt"),
            "empty conversation",
        ),
        (
            r#"{"prompt": "p", "response_a": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "response_b": "b"}"#,
            Format::Pairs,
            1,
            Some("response_a"),
            "one assistant message, found 2 messages",
        ),
        (
            r#"{"prompt": [{"role": "user", "text": "q"}], "chosen": "a", "rejected": "b"}"#,
            Format::Preference,
            1,
            Some("prompt[0].content"),
            "missing",
        ),
        (
            r#"{"input": [7], "output_1": "a", "output_2": "b", "label": 1}"#,
            Format::Llmbar,
            1,
            Some("input[0]"),
            "expected a message object, found a number",
        ),
    ];
    for &(text, format, line, field, message) in cases {
        let (_dir, path) = scratch("bad.jsonl", text);
        let (got_line, got_field, got_message) = data_error(data::read_preferences(&path, format));
        assert_eq!(got_line, Some(line), "{text}: {got_message}");
        assert_eq!(got_field.as_deref(), field, "{text}: {got_message}");
        assert!(got_message.contains(message), "{text}: {got_message}");
    }
}

#[test]
fn json_array_errors_give_the_element_index() {
    let text = r#"[{"input": "i", "output_1": "a", "output_2": "b", "label": "1"},
                   {"input": "i", "output_1": "a", "output_2": "b"}]"#;
    let (_dir, path) = scratch("llmbar.json", text);
    let error = data::read_preferences(&path, Format::Auto).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:1: field `label`: missing (JSON array element 1, counting from 0)",
            path.display()
        )
    );
    let (_dir, path) = scratch("broken.json", "[{\"input\": \n\"i\",,}]");
    let (line, _, message) = data_error(data::read_preferences(&path, Format::Auto));
    assert_eq!(line, Some(2));
    assert!(message.contains("not a valid JSON array"), "{message}");
    let (_dir, path) = scratch("empty.jsonl", "\n\n");
    assert!(
        data_error(data::read_preferences(&path, Format::Auto))
            .2
            .contains("no rows")
    );
    assert!(
        data::read_preferences(&path, Format::Preference)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn real_model_outputs_make_the_expected_pairs() {
    let dir = shared_data().join("unlabeled");
    let files = |sub: &str| -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        paths
    };
    // AlpacaEval: 805 instructions × 8 models; 24 outputs are empty, 36 repeat another model's text.
    let outputs = unlabeled::read_outputs(&files("alpaca_eval")).unwrap();
    assert_eq!(outputs.len(), 805 * 8);
    let all = unlabeled::build_pairs(
        &outputs,
        PairOptions {
            per_prompt: None,
            seed: 0,
            ..PairOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        (all.prompts, all.empty, all.duplicates, all.pairs.len()),
        (805, 24, 36, 22142)
    );
    let sampled = unlabeled::build_pairs(
        &outputs,
        PairOptions {
            per_prompt: Some(2),
            seed: 7,
            ..PairOptions::default()
        },
    )
    .unwrap();
    assert_eq!(sampled.pairs.len(), 1610);
    assert_eq!(
        sampled,
        unlabeled::build_pairs(
            &outputs,
            PairOptions {
                per_prompt: Some(2),
                seed: 7,
                ..PairOptions::default()
            }
        )
        .unwrap()
    );
    assert_ne!(
        sampled.pairs,
        unlabeled::build_pairs(
            &outputs,
            PairOptions {
                per_prompt: Some(2),
                seed: 8,
                ..PairOptions::default()
            }
        )
        .unwrap()
        .pairs
    );
    for pair in &sampled.pairs {
        assert_ne!(pair.model_a, pair.model_b);
        assert_ne!(
            pair.response_a.split_whitespace().collect::<Vec<_>>(),
            pair.response_b.split_whitespace().collect::<Vec<_>>()
        );
    }
    // Both A/B orders occur.
    let model = "gpt4_1106_preview";
    let as_a = all.pairs.iter().filter(|p| p.model_a == model).count();
    let as_b = all.pairs.iter().filter(|p| p.model_b == model).count();
    assert!(as_a > 1000 && as_b > 1000, "{as_a} {as_b}");

    // Arena-Hard: 500 questions × 3 answer files; one answer repeats another's text.
    let outputs = unlabeled::read_outputs(&files("arena-hard")).unwrap();
    assert_eq!(outputs.len(), 1500);
    let all = unlabeled::build_pairs(
        &outputs,
        PairOptions {
            per_prompt: None,
            seed: 0,
            ..PairOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        (all.prompts, all.empty, all.duplicates, all.pairs.len()),
        (500, 0, 1, 1498)
    );
}

#[test]
fn model_outputs_take_chat_messages() {
    let rows = [
        json!({ "prompt": [{ "role": "user", "content": "q" }], "response": [{ "role": "assistant", "content": "a" }], "model": "m1" }),
        json!({ "prompt": "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n", "response": "b<|im_end|>", "model": "m2" }),
    ];
    let text: String = rows.iter().map(|row| format!("{row}\n")).collect();
    let (_dir, path) = scratch("outputs.jsonl", &text);
    let outputs = unlabeled::read_outputs(&[path]).unwrap();
    let texts: Vec<(&str, &str)> = outputs
        .iter()
        .map(|o| (o.prompt.as_str(), o.response.as_str()))
        .collect();
    assert_eq!(texts, [("q", "a"), ("q", "b")]);
}

#[test]
fn pairs_dedupe_whitespace_and_write_atomically() {
    let output = |prompt: &str, model: &str, response: &str| Output {
        prompt: prompt.to_owned(),
        model: model.to_owned(),
        response: response.to_owned(),
    };
    let outputs = vec![
        output("p", "m1", "same  text"),
        output("p", "m2", "same text\n"),
        output("p", "m3", "other"),
        output("q", "m1", "only one"),
        output("q", "m2", " \n"),
    ];
    let set = unlabeled::build_pairs(
        &outputs,
        PairOptions {
            per_prompt: None,
            seed: 1,
            ..PairOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        (set.prompts, set.empty, set.duplicates, set.pairs.len()),
        (2, 1, 1, 1)
    );
    let mut models = [set.pairs[0].model_a.as_str(), set.pairs[0].model_b.as_str()];
    models.sort();
    assert_eq!(models, ["m1", "m3"]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.jsonl");
    unlabeled::write_pairs(&path, &set.pairs).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    let records = data::read_preferences(&path, Format::Auto).unwrap();
    assert!(matches!(&records[0].content, Content::Pair(pair) if pair.prompt == "p"));
    assert!(records[0].field("model_a").is_some());
}

#[test]
fn model_output_errors_name_the_row() {
    let (dir, answers) = scratch(
        "m.jsonl",
        "{\"question_id\": \"q9\", \"model_id\": \"m\", \"choices\": [{\"turns\": [{\"content\": \"a\"}]}]}\n",
    );
    let questions = dir.path().join("question.jsonl");
    std::fs::write(
        &questions,
        "{\"question_id\": \"q1\", \"turns\": [{\"content\": \"Q\"}]}\n",
    )
    .unwrap();
    match unlabeled::read_outputs(&[answers.clone(), questions]) {
        Err(Error::Data {
            line: Some(1),
            field: Some(field),
            ..
        }) => assert_eq!(field, "question_id"),
        other => panic!("{other:?}"),
    }
    std::fs::write(
        &answers,
        "{\"prompt\": \"p\", \"response\": \"r\"}\n{\"prompt\": \"p\", \"response\": 3}\n",
    )
    .unwrap();
    match unlabeled::read_outputs(&[answers]) {
        Err(Error::Data {
            line: Some(2),
            field: Some(field),
            ..
        }) => assert_eq!(field, "response"),
        other => panic!("{other:?}"),
    }
}
