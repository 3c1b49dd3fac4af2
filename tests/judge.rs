//! The judge on the real model: padding never changes a score, truncation keeps the instruction,
//! templates are filled byte for byte, and `gram judge` writes complete output or none.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use gram::checkpoint::Checkpoint;
use gram::judge::{GramJudge, JudgeOptions};
use gram::model::Llama;
use gram::prompt::PromptTemplate;
use gram::{Judge, Pair};
use std::process::Command;

/// A short template keeps real-model tests fast.
const SHORT: &str = "Question: {prompt}\nA: {response_a}\nB: {response_b}\nBetter (A or B):";

fn judge_on(device: &Device, options: JudgeOptions) -> GramJudge {
    GramJudge::load(&common::model_path(), device, options).unwrap()
}

fn short_options(batch_size: usize) -> JudgeOptions {
    JudgeOptions {
        template: Some(SHORT.into()),
        batch_size,
        ..JudgeOptions::default()
    }
}

fn pairs() -> Vec<Pair> {
    vec![
        Pair::new("What is 2+2?", "4", "5"),
        Pair::new(
            "Name a primary colour.",
            "Red is a primary colour.",
            "Bananas are tasty, and they grow in bunches on trees.",
        ),
        Pair::new("Say hi.", "Hi!", "Hello there, how can I help you today?"),
    ]
}

/// Each pair scored alone and inside one pass of mixed lengths gives the same verdict: on a
/// GPU the sequences are right-padded into one batch, on `cpu` each length is its own group
/// in one packed pass.
fn batching_never_changes_a_score(device: &Device, pairs: &[Pair], packs: bool) {
    let plain = |batch_size| JudgeOptions {
        chat_template: false,
        ..short_options(batch_size)
    };
    let mut alone = judge_on(device, plain(1));
    let mut batched = judge_on(device, plain(2 * pairs.len()));
    let single: Vec<_> = pairs
        .iter()
        .map(|p| alone.judge(std::slice::from_ref(p)).unwrap()[0])
        .collect();
    let together = batched.judge(pairs).unwrap();
    let stats = batched.stats();
    if packs {
        assert_eq!(stats.padding, 0, "cpu packs, never pads");
        // The template's head, then every pair's question, then every order, in two passes.
        assert_eq!(stats.batches, 3, "{stats:?}");
    } else {
        assert!(stats.padding > 0, "the batch must actually contain padding");
    }
    for (a, b) in single.iter().zip(&together) {
        assert!(
            (a.p_a_forward - b.p_a_forward).abs() < 1e-5,
            "{a:?} vs {b:?}"
        );
        assert!(
            (a.p_a_reverse - b.p_a_reverse).abs() < 1e-5,
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn batching_never_changes_a_score_on_cpu() {
    batching_never_changes_a_score(&Device::flex(), &pairs(), true);
}

#[test]
fn batching_never_changes_a_score_on_wgpu() {
    // Two pairs keep the number of distinct shapes (kernel compilations on lavapipe) small.
    let Some(device) = common::wgpu_device() else {
        return;
    };
    batching_never_changes_a_score(&device, &pairs()[..2], false);
}

/// `z_A − z_B` of each sequence run whole and alone: the reference for prefix reuse.
fn whole_sequence_margins(judge: &GramJudge, sequences: &[Vec<u32>]) -> Vec<f64> {
    let model = judge.model();
    let device = model.device();
    let [a, b] = judge.verdict_tokens();
    sequences
        .iter()
        .map(|ids| {
            let t = ids.len();
            let input = Tensor::<2, Int>::from_data(
                TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, t]),
                &device,
            );
            let last = model
                .hidden_states(input)
                .slice([0..1, t - 1..t])
                .reshape([1, model.config.hidden_size]);
            let z = model
                .token_logits(last, &[a, b])
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (z[0] - z[1]) as f64
        })
        .collect()
}

/// Reusing the template's prefix and each pair's shared question (batch 1: families of two)
/// or only the template's prefix (pooled batches) scores exactly like running every sequence
/// whole, and the reuse really happens.
fn shared_prefixes_change_no_score(device: &Device, options: JudgeOptions, pairs: &[Pair]) {
    let mut judge = judge_on(device, options);
    let mut sequences = Vec::new();
    for p in pairs {
        sequences.push(
            judge
                .prompts()
                .sequence(&p.prompt, &p.response_a, &p.response_b)
                .unwrap()
                .ids,
        );
        sequences.push(
            judge
                .prompts()
                .sequence(&p.prompt, &p.response_b, &p.response_a)
                .unwrap()
                .ids,
        );
    }
    let reference = whole_sequence_margins(&judge, &sequences);
    let margins = judge.margins(&sequences).unwrap();
    for (m, r) in margins.iter().zip(&reference) {
        assert!((m - r).abs() < 1e-4, "{margins:?} vs {reference:?}");
    }
    let stats = judge.stats();
    let total: usize = sequences.iter().map(Vec::len).sum();
    assert_eq!(stats.tokens, total);
    assert!(
        stats.computed_tokens - stats.padding < total * 3 / 4,
        "shared prefixes were not reused: {stats:?} for {total} tokens"
    );
}

#[test]
fn shared_prefixes_change_no_score_on_cpu() {
    for batch_size in [1, 8] {
        let options = JudgeOptions {
            batch_size,
            ..JudgeOptions::default()
        };
        shared_prefixes_change_no_score(&Device::flex(), options, &pairs());
    }
}

#[test]
fn shared_prefixes_change_no_score_on_wgpu() {
    // The short template (still behind the chat template's system turn) keeps lavapipe quick.
    let Some(device) = common::wgpu_device() else {
        return;
    };
    shared_prefixes_change_no_score(&device, short_options(2), &pairs()[..2]);
}

/// A family larger than a batch (a ranking's comparisons share one prompt) runs after its
/// common prefix in batches of its own, with the same scores.
#[test]
fn a_family_larger_than_a_batch_shares_its_prompt() {
    let prompt = "Which of these is a fruit? Answer in one word.";
    let answers = ["Apple.", "Carrot.", "Potato, which is a tuber.", "Rice."];
    let mut ranking = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        for b in &answers[i + 1..] {
            ranking.push(Pair::new(prompt, *a, *b));
        }
    }
    let options = JudgeOptions {
        batch_size: 4,
        ..JudgeOptions::default()
    };
    shared_prefixes_change_no_score(&Device::flex(), options, &ranking);
}

/// Families nest: RM-Bench's 3 × 3 grid of one prompt shows each response first in three of its
/// eighteen sequences, and at batch 1 every distinct prefix is run exactly once — the tokens
/// computed are the nodes of the sequences' token trie — with the scores of whole sequences.
#[test]
fn nested_families_run_every_distinct_prefix_once() {
    let prompt = "Name a prime number and say why it is prime.";
    let chosen = [
        "Seven: its only divisors are 1 and 7.",
        "**7**, divisible only by 1 and itself.",
        "7 (no divisors but 1 and 7).",
    ];
    let rejected = [
        "Nine, it is odd.",
        "**9**, because it is odd.",
        "9 (odd numbers are prime).",
    ];
    let grid: Vec<Pair> = (chosen.iter())
        .flat_map(|c| rejected.iter().map(move |r| Pair::new(prompt, *c, *r)))
        .collect();
    let options = JudgeOptions {
        batch_size: 1,
        ..JudgeOptions::default()
    };
    let mut judge = judge_on(&Device::flex(), options);
    let mut sequences = Vec::new();
    for p in &grid {
        for (a, b) in [
            (&p.response_a, &p.response_b),
            (&p.response_b, &p.response_a),
        ] {
            sequences.push(judge.prompts().sequence(&p.prompt, a, b).unwrap().ids);
        }
    }
    let reference = whole_sequence_margins(&judge, &sequences);
    let margins = judge.margins(&sequences).unwrap();
    for (m, r) in margins.iter().zip(&reference) {
        assert!((m - r).abs() < 1e-4, "{margins:?} vs {reference:?}");
    }
    // The token trie's nodes: every distinct non-empty prefix.
    let mut prefixes = std::collections::HashSet::new();
    for ids in &sequences {
        for end in 1..=ids.len() {
            prefixes.insert(&ids[..end]);
        }
    }
    let stats = judge.stats();
    assert_eq!(stats.padding, 0);
    assert_eq!(
        stats.computed_tokens,
        prefixes.len(),
        "{stats:?}: not every shared prefix ran once"
    );
}

/// The verdict read from two output rows equals the full-vocabulary logits at that position.
#[test]
fn verdict_logits_equal_full_logits_at_the_last_position() {
    let device = Device::flex();
    let mut checkpoint = Checkpoint::load(&common::model_path()).unwrap();
    let ids = checkpoint
        .codec
        .encode("Which answer is better, A or B?")
        .unwrap();
    let model = Llama::from_checkpoint(&mut checkpoint, &device).unwrap();
    let t = ids.len();
    let input = Tensor::<2, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, t]),
        &device,
    );
    let hidden = model.hidden_states(input);
    let full = model
        .logits(hidden.clone())
        .slice([0..1, t - 1..t])
        .reshape([model.config.vocab_size]);
    let full = full.into_data().try_to_vec::<f32>().unwrap();
    let last = hidden
        .slice([0..1, t - 1..t])
        .reshape([1, model.config.hidden_size]);
    let two = model
        .token_logits(last, &[49, 50])
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(
        (two[0] - full[49]).abs() < 1e-4 && (two[1] - full[50]).abs() < 1e-4,
        "{two:?} vs {} {}",
        full[49],
        full[50]
    );
}

#[test]
fn verdict_probabilities_are_consistent() {
    let mut judge = judge_on(&Device::flex(), short_options(4));
    let verdicts = judge.judge(&pairs()).unwrap();
    for v in &verdicts {
        assert!((v.p_a - 0.5 * (v.p_a_forward + v.p_a_reverse)).abs() < 1e-12);
        assert!((0.0..=1.0).contains(&v.p_a));
    }
    // Swapping the responses mirrors the verdict exactly (both orders are averaged).
    let swapped: Vec<Pair> = pairs().iter().map(Pair::swapped).collect();
    for (v, s) in verdicts.iter().zip(judge.judge(&swapped).unwrap()) {
        assert!((v.p_a + s.p_a - 1.0).abs() < 1e-5, "{v:?} {s:?}");
    }
}

#[test]
fn long_responses_are_cut_from_their_ends_and_the_instruction_kept() {
    let options = JudgeOptions {
        max_len: Some(300),
        ..JudgeOptions::default()
    };
    let mut judge = judge_on(&Device::flex(), options);
    let long_a = "alpha ".repeat(400);
    let long_b = "beta ".repeat(100);
    let prompts = judge.prompts();
    let full = prompts.render("Pick one.", &long_a, &long_b).unwrap();
    assert!(prompts.codec().encode(&full).unwrap().len() > 300);
    let sequence = prompts.sequence("Pick one.", &long_a, &long_b).unwrap();
    assert!(
        sequence.truncated && sequence.ids.len() <= 300,
        "{}",
        sequence.ids.len()
    );
    let text = prompts.codec().decode(&sequence.ids).unwrap();
    // The instruction, the question, every delimiter and the verdict cue survive...
    for kept in [
        "Please act as an impartial judge",
        "Pick one.",
        "[The End of Assistant A's Answer]",
        "[The End of Assistant B's Answer]",
        "Reply with a single letter",
        "<|im_start|>assistant\n",
    ] {
        assert!(text.contains(kept), "{kept:?} missing from {text}");
    }
    // ...and both responses keep a share in proportion to their length (A is 4x longer).
    let (a, b) = (text.matches("alpha").count(), text.matches("beta").count());
    assert!(a > 2 * b && b > 0, "alpha {a}, beta {b}");
    // A question too long for half of the room keeps its end (the latest turns of a dialogue).
    let question = format!(
        "{}Final question: which is better?",
        "earlier turn ".repeat(300)
    );
    let sequence = prompts.sequence(&question, "Yes.", "No.").unwrap();
    let text = prompts.codec().decode(&sequence.ids).unwrap();
    assert!(
        sequence.truncated && sequence.ids.len() <= 300,
        "{}",
        sequence.ids.len()
    );
    for kept in [
        "Final question: which is better?",
        "Yes.",
        "No.",
        "Reply with a single letter",
    ] {
        assert!(text.contains(kept), "{kept:?} missing from {text}");
    }
    assert!(text.matches("earlier turn").count() < 300);
    // Judging counts both orders as truncated.
    judge
        .judge(&[Pair::new("Pick one.", long_a, long_b)])
        .unwrap();
    assert_eq!(judge.stats().truncated, 2);
    // A max_len below the bare prompt is a clear error.
    let tight = JudgeOptions {
        max_len: Some(100),
        ..JudgeOptions::default()
    };
    let err = judge_on(&Device::flex(), tight)
        .judge(&pairs()[..1])
        .unwrap_err();
    assert!(err.to_string().contains("--max-len 100"), "{err}");
}

#[test]
fn template_is_filled_byte_for_byte_and_wrapped_in_the_chat_template() {
    let checkpoint = Checkpoint::load(&common::model_path()).unwrap();
    let model = Llama::random(&tiny_config(&checkpoint), &Device::flex());
    let codec = checkpoint.codec.clone();
    let template = "  {prompt}\t{response_a}\n\n{response_b} {response_a}  ";
    let plain = JudgeOptions {
        template: Some(template.into()),
        chat_template: false,
        ..JudgeOptions::default()
    };
    let judge = GramJudge::new(model, codec, plain).unwrap();
    let text = judge
        .prompts()
        .render("Ünï {x}", "a\u{1F680}", "b")
        .unwrap();
    assert_eq!(text, "  Ünï {x}\ta\u{1F680}\n\nb a\u{1F680}  ");
    let filled = PromptTemplate::new(template).unwrap().fill("q", "a", "b");
    let chat = checkpoint
        .codec
        .apply_chat_template(
            &[gram::tokenizer::ChatMessage::new("user", filled.clone())],
            true,
        )
        .unwrap();
    assert!(
        chat.contains(&filled) && chat.ends_with("<|im_start|>assistant\n"),
        "{chat}"
    );
}

/// A 2-layer model with the real vocabulary, for tests that need the tokenizer but not weights.
fn tiny_config(checkpoint: &Checkpoint) -> gram::config::ModelConfig {
    let mut config = checkpoint.config.clone();
    config.num_hidden_layers = 1;
    config.hidden_size = 16;
    config.intermediate_size = 32;
    config.num_attention_heads = 2;
    config.num_key_value_heads = 1;
    config.head_dim = None;
    config
}

#[test]
fn a_label_that_is_not_one_token_is_an_error() {
    let options = JudgeOptions {
        labels: ("Assistant A is better".into(), "B".into()),
        ..JudgeOptions::default()
    };
    let err = GramJudge::load(&common::model_path(), &Device::flex(), options)
        .err()
        .expect("an error");
    assert!(err.to_string().contains("Assistant A is better"), "{err}");
}

fn gram() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gram"))
}

#[test]
fn judge_command_scores_pairs_and_passes_fields_through() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("scores.jsonl");
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pairs.jsonl");
    let judge_two = || {
        gram()
            .args(["judge", "--device", "cpu", "--limit", "2", "--template"])
            .arg(dir.path().join("t.txt"))
            .args(["--input", input, "--output"])
            .arg(&output)
            .arg("--model")
            .arg(common::model_path())
            .output()
            .unwrap()
    };
    let run = judge_two();
    // The template file does not exist yet: a clear error and no output.
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("t.txt"));
    assert!(!output.exists());

    std::fs::write(dir.path().join("t.txt"), SHORT).unwrap();
    let run = judge_two();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("judged 2 pairs, accuracy"), "{stderr}");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(row["id"].as_str().unwrap().starts_with("helpful-base-"));
        let p = row["p_a"].as_f64().unwrap();
        assert_eq!(row["correct"].as_bool().unwrap(), p > 0.5);
    }
}

#[test]
fn judge_command_names_the_bad_line_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, "{\"prompt\":\"q\",\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"prompt\":\"q\",\"chosen\":\"a\"\n").unwrap();
    let output = dir.path().join("out.jsonl");
    let run = gram()
        .args(["judge", "--device", "cpu", "--model"])
        .arg(common::model_path())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("bad.jsonl:2"), "{stderr}");
    assert!(
        !output.exists() && std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "no partial output"
    );

    let missing = gram()
        .args([
            "judge",
            "--device",
            "cpu",
            "--model",
            "/nonexistent.gguf",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn default_max_len_is_the_context_capped_at_4096_and_more_than_the_context_is_an_error() {
    let checkpoint = Checkpoint::load(&common::model_path()).unwrap();
    let with_context = |context: usize, max_len: Option<usize>| {
        let mut config = tiny_config(&checkpoint);
        config.max_position_embeddings = context;
        let model = Llama::random(&config, &Device::flex());
        let options = JudgeOptions {
            max_len,
            ..JudgeOptions::default()
        };
        GramJudge::new(model, checkpoint.codec.clone(), options)
    };
    let len = |judge: GramJudge| judge.prompts().max_len();
    assert_eq!(gram::judge::DEFAULT_MAX_LEN, 4096);
    assert_eq!(len(with_context(32_768, None).unwrap()), 4096);
    assert_eq!(len(with_context(2048, None).unwrap()), 2048);
    assert_eq!(len(with_context(32_768, Some(8192)).unwrap()), 8192);
    let err = with_context(2048, Some(4096)).err().expect("an error");
    assert!(
        err.to_string().contains("--max-len 4096") && err.to_string().contains("2048"),
        "{err}"
    );
}
