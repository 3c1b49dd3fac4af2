//! The payloads real clients send: TRL's plain and conversational reward-function arguments,
//! OpenRLHF's per-sample `/get_reward` requests with chat-template-rendered prompts and the
//! end-of-turn token, `scripts/gram_client.py`, and a rendered request on the real model.

use super::*;
use gram::judge::{GramJudge, JudgeOptions};
use std::collections::BTreeSet;
use std::process::Command;

/// The fake judge, remembering every prompt and response it was shown.
#[derive(Clone, Default)]
struct Recorder {
    judge: FakeJudge,
    seen: Arc<Mutex<BTreeSet<(String, String)>>>,
}

impl Judge for Recorder {
    fn judge(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
        let mut seen = self.seen.lock().unwrap();
        for pair in pairs {
            seen.insert((pair.prompt.clone(), pair.response_a.clone()));
            seen.insert((pair.prompt.clone(), pair.response_b.clone()));
        }
        drop(seen);
        self.judge.judge(pairs)
    }
}

impl Recorder {
    /// What the judge saw since the last call, cleared.
    fn take(&self) -> BTreeSet<(String, String)> {
        std::mem::take(&mut self.seen.lock().unwrap())
    }
}

fn user(text: &str) -> Value {
    json!([{ "role": "user", "content": text }])
}

fn assistant(text: &str) -> Value {
    json!([{ "role": "assistant", "content": text }])
}

/// The prompt of two turns, as the judge's question block shows it.
const TRANSCRIPT: &str = "Human: Hi\n\nAssistant: Hello.\n\nHuman: Pick a number";

/// The same two-turn prompt as messages.
fn dialogue() -> Value {
    json!([
        { "role": "user", "content": "Hi" },
        { "role": "assistant", "content": "Hello." },
        { "role": "user", "content": "Pick a number" },
    ])
}

fn seen(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(p, r)| (p.to_string(), r.to_string()))
        .collect()
}

#[test]
fn trl_conversational_rows_score_as_plain_text() {
    let recorder = Recorder::default();
    let server = start(recorder.clone(), config());
    let addr = server.addr();
    let reward = |rows: Value| {
        let reply = post(
            addr,
            "/reward",
            &json!({ "rows": rows, "scale": "log-odds", "reference": "round-robin" }),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["results"].clone()
    };
    // TRL's GRPO groups: one prompt, several completions, no reference.
    let plain = reward(json!([{ "prompt": "Pick a number", "responses": ["3", "1", "2"] }]));
    let plain_seen = recorder.take();
    let chat = reward(json!([{
        "prompt": user("Pick a number"),
        "responses": [assistant("3"), assistant("1"), assistant("2")],
    }]));
    assert_eq!(chat[0]["rewards"], plain[0]["rewards"]);
    assert_eq!(recorder.take(), plain_seen);
    let rewards: Vec<f64> = serde_json::from_value(plain[0]["rewards"].clone()).unwrap();
    assert!(
        rewards[0] > rewards[2] && rewards[2] > rewards[1],
        "{rewards:?}"
    );
    assert!(rewards.iter().sum::<f64>().abs() < 1e-9, "{rewards:?}");

    // Against a reference column; a multi-turn prompt keeps its turns.
    let rows = json!([{ "prompt": dialogue(), "response": assistant("3"), "reference": "1" }]);
    let results = reward(rows);
    let log_odds = |p: f64| (p / (1.0 - p)).ln();
    assert!(close(
        &results[0]["reward"],
        log_odds(expected("3", "1").p_a)
    ));
    assert_eq!(
        recorder.take(),
        seen(&[(TRANSCRIPT, "3"), (TRANSCRIPT, "1")])
    );

    // /judge and /rank take messages the same way.
    let pairs = json!([{ "prompt": dialogue(), "response_a": assistant("2"), "response_b": "1" }]);
    let reply = post(addr, "/judge", &json!({ "pairs": pairs }));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(close(
        &reply.json()["results"][0]["p_a"],
        expected("2", "1").p_a
    ));
    let rows = json!([{ "prompt": dialogue(), "responses": [assistant("0"), "5"] }]);
    let reply = post(addr, "/rank", &json!({ "rows": rows }));
    assert_eq!(
        reply.json()["results"][0]["best"],
        json!(1),
        "{}",
        reply.body
    );
    assert_eq!(
        recorder.take(),
        seen(&[
            (TRANSCRIPT, "2"),
            (TRANSCRIPT, "1"),
            (TRANSCRIPT, "0"),
            (TRANSCRIPT, "5")
        ])
    );
    server.shutdown().unwrap();
}

#[test]
fn openrlhf_rendered_samples_score_as_plain_text() {
    let recorder = Recorder::default();
    let server = start(recorder.clone(), config());
    let addr = server.addr();
    let get_reward = |query: String, prompt: &str, label: Value| {
        let body = json!({ "query": [query], "prompts": [prompt], "labels": [label] });
        let reply = post(addr, "/get_reward", &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["rewards"][0].as_f64().unwrap()
    };
    let plain = get_reward("Pick a number3".into(), "Pick a number", json!("1"));
    assert_eq!(
        recorder.take(),
        seen(&[("Pick a number", "3"), ("Pick a number", "1")])
    );
    // One policy template each: (templated prompt, end of the decoded response).
    let rendered = [
        (
            "<|im_start|>user\nPick a number<|im_end|>\n<|im_start|>assistant\n",
            "<|im_end|>",
        ),
        (
            "<|im_start|>user\nPick a number<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            "<|im_end|>\n<|endoftext|>",
        ),
        (
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nPick a number<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n",
            "<|eot_id|>",
        ),
        ("<s>[INST] Pick a number [/INST]", "</s>"),
        (
            "<bos><start_of_turn>user\nPick a number<end_of_turn>\n<start_of_turn>model\n",
            "<end_of_turn>",
        ),
        (
            "<|user|>\nPick a number<|end|>\n<|assistant|>\n",
            "<|end|>\n<|endoftext|>",
        ),
    ];
    for (prompt, eos) in rendered {
        let label = json!(format!("1{eos}"));
        let reward = get_reward(format!("{prompt}3{eos}"), prompt, label);
        assert_eq!(reward, plain, "{prompt:?}");
        assert_eq!(
            recorder.take(),
            seen(&[("Pick a number", "3"), ("Pick a number", "1")]),
            "{prompt:?}"
        );
    }
    // A multi-turn ChatML prompt keeps its turns; a label may be an assistant message.
    let prompt = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n\
                  <|im_start|>user\nPick a number<|im_end|>\n<|im_start|>assistant\n";
    get_reward(format!("{prompt}3<|im_end|>"), prompt, assistant("1"));
    assert_eq!(
        recorder.take(),
        seen(&[(TRANSCRIPT, "3"), (TRANSCRIPT, "1")])
    );
    server.shutdown().unwrap();
}

#[test]
fn bad_message_shapes_are_400_naming_the_field() {
    let server = start(FakeJudge::default(), config());
    let addr = server.addr();
    let cases = [
        (
            "/judge",
            json!({ "pairs": [{ "prompt": "q", "response_a": user("a"), "response_b": "b" }] }),
            "pairs:1: field `response_a[0].role`: a response must be the assistant's message, found user",
        ),
        (
            "/reward",
            json!({ "rows": [{ "prompt": 5, "response": "a", "reference": "b" }] }),
            "rows:1: field `prompt`: expected a string or a list of chat messages [{\"role\", \"content\"}], found a number",
        ),
        (
            "/rank",
            json!({ "rows": [{ "prompt": "q", "responses": ["a", [{ "role": "assistant" }]] }] }),
            "rows:1: field `responses[1][0].content`: missing",
        ),
        (
            "/reward",
            json!({ "rows": [{ "prompt": [{ "role": "robot", "content": "q" }], "responses": ["a", "b"] }] }),
            "rows:1: field `prompt[0].role`: unknown role `robot`",
        ),
        (
            "/get_reward",
            json!({ "query": ["qa"], "prompts": ["q"], "labels": [[{ "role": "assistant", "content": "x" }, { "role": "assistant", "content": "y" }]] }),
            "query:1: field `labels`: a response must be one assistant message, found 2 messages",
        ),
    ];
    for (path, body, message) in cases {
        let reply = post(addr, path, &body);
        assert_eq!(
            (reply.status, reply.json()["error"].clone()),
            (400, json!(message)),
            "{path} {body}"
        );
    }
    server.shutdown().unwrap();
}

/// `scripts/gram_client.py` against the server: TRL's conversational and plain arguments, sync
/// and async, with and without a reference column, give what the server's rows give.
#[test]
fn python_client_rewards_trl_batches() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let server = start(FakeJudge::default(), config());
    let addr = server.addr();
    let script = r#"
import asyncio, json, sys
sys.path.insert(0, "scripts")
from gram_client import gram_reward, async_gram_reward, GramError
msg = lambda role, text: [{"role": role, "content": text}]
numbers = [msg("user", "Pick a number")] * 3 + [msg("user", "Another")] * 2
completions = [msg("assistant", t) for t in ["3", "1", "2", "5", "4"]]
out = {
    "conversational": gram_reward(prompts=numbers, completions=completions, trainer_state=None),
    "plain": asyncio.run(async_gram_reward(
        prompts=["Pick a number"] * 3 + ["Another"] * 2, completions=["3", "1", "2", "5", "4"])),
    "reference": gram_reward(numbers[:2], completions[:2], reference=["1", "1"]),
}
try:
    gram_reward([msg("user", "q")], [msg("user", "not a reply")])
except GramError as error:
    out["error"] = str(error)
print(json.dumps(out))
"#;
    let output = Command::new("python3")
        .args(["-c", script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GRAM_URL", format!("http://{addr}"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_str(&stdout).unwrap();
    let rows = json!([
        { "prompt": "Pick a number", "responses": ["3", "1", "2"] },
        { "prompt": "Another", "responses": ["5", "4"] },
    ]);
    let results = post(
        addr,
        "/reward",
        &json!({ "rows": rows, "scale": "log-odds", "reference": "round-robin" }),
    )
    .json();
    let results = &results["results"];
    let mut want: Vec<Value> = results[0]["rewards"].as_array().unwrap().clone();
    want.extend(results[1]["rewards"].as_array().unwrap().iter().cloned());
    assert_eq!(got["conversational"], json!(want));
    assert_eq!(got["plain"], json!(want));
    let log_odds = |p: f64| (p / (1.0 - p)).ln();
    assert!(close(
        &got["reference"][0],
        log_odds(expected("3", "1").p_a)
    ));
    assert!(close(&got["reference"][1], 0.0));
    assert_eq!(
        got["error"],
        json!(
            "gram serve answered 400 to /reward: rows:1: field `responses[0][0].role`: a response must be the assistant's message, found user"
        )
    );
    server.shutdown().unwrap();
}

/// On the real model (cpu): an OpenRLHF sample whose prompt is ChatML-rendered and whose
/// response ends with the end-of-turn token scores as the same sample in plain text (1e-6),
/// and typed special tokens do not leak into the judge prompt as control tokens.
#[test]
fn rendered_openrlhf_sample_scores_as_plain_on_the_real_model() {
    let model = common::model_path();
    let factory = move || {
        GramJudge::load(
            &model,
            &burn::tensor::Device::flex(),
            JudgeOptions::default(),
        )
    };
    let server = start_with(factory, config(), Duration::from_secs(300));
    let addr = server.addr();
    let get_reward = |query: &str, prompt: &str, label: &str| {
        let body = json!({ "query": [query], "prompts": [prompt], "labels": [label] });
        let reply = post(addr, "/get_reward", &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["rewards"][0].as_f64().unwrap()
    };
    let plain = get_reward(
        "What is the capital of France?The capital of France is Paris.",
        "What is the capital of France?",
        "I think it is Rome.",
    );
    let prompt =
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let rendered = get_reward(
        &format!("{prompt}The capital of France is Paris.<|im_end|>"),
        prompt,
        "I think it is Rome.<|im_end|>",
    );
    eprintln!("real model: plain {plain:.9}, rendered {rendered:.9}");
    assert!(plain.abs() > 1e-3, "a reward with signal: {plain}");
    assert!((rendered - plain).abs() < 1e-6, "{rendered} vs {plain}");
    server.shutdown().unwrap();
}
