//! Rollout groups across `/get_reward` requests (`--group-size K`), and the reply fields
//! OpenRLHF reads.

use super::*;
use gram::reward::{Baseline, Group, Scale, group_rewards};

/// What the library gives a round-robin group of `responses` with the fake judge.
fn round_robin(prompt: &str, responses: &[&str]) -> Vec<f64> {
    let group = Group {
        prompt: prompt.into(),
        responses: responses.iter().map(|r| r.to_string()).collect(),
        baseline: Baseline::RoundRobin,
    };
    group_rewards(&mut FakeJudge::default(), &[group], Scale::LogOdds)
        .unwrap()
        .remove(0)
}

fn one_sample(prompt: &str, response: &str) -> Value {
    json!({ "query": [format!("{prompt}{response}")], "prompts": [prompt] })
}

#[test]
fn k_separate_requests_of_one_prompt_are_ranked_together() {
    let judge = FakeJudge::default();
    let (server, batches) = start_counting(
        judge,
        ServeConfig {
            group_size: 3,
            group_wait: Duration::from_secs(20),
            ..config()
        },
    );
    let addr = server.addr();
    let prompt = "Q: ";
    let responses = ["1", "3", "0.5"];
    // Three concurrent one-sample requests, as OpenRLHF sends them.
    let replies: Vec<Value> = thread::scope(|scope| {
        let handles: Vec<_> = responses
            .iter()
            .map(|r| scope.spawn(move || post(addr, "/get_reward", &one_sample(prompt, r))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let reply = h.join().unwrap();
                assert_eq!(reply.status, 200, "{}", reply.body);
                reply.json()
            })
            .collect()
    });
    let want = round_robin(prompt, &responses);
    let mut sum = 0.0;
    for ((reply, want), response) in replies.iter().zip(&want).zip(responses) {
        let reward = reply["rewards"][0].as_f64().unwrap();
        assert!((reward - want).abs() < 1e-9, "{response}: {reply}");
        assert!(close(&reply["scores"][0], sigmoid(*want)), "{reply}");
        assert_eq!(reply["extra_logs"]["group_size"][0], 3.0, "{reply}");
        assert_eq!(reply["extra_logs"]["labeled"][0], 0.0, "{reply}");
        sum += reward;
    }
    assert!(sum.abs() < 1e-6, "rewards sum to {sum}");
    // Distinct, ordered by strength: "3" > "1" > "0.5".
    assert!(want[1] > want[0] && want[0] > want[2], "{want:?}");
    // The group's three comparisons went to the judge in one call.
    assert_eq!(*batches.lock().unwrap(), [3]);
    server.shutdown().unwrap();
}

#[test]
fn a_lone_sample_is_answered_after_the_wait_and_labels_keep_their_reference() {
    let server = start(
        FakeJudge::default(),
        ServeConfig {
            group_size: 4,
            group_wait: Duration::from_millis(200),
            ..config()
        },
    );
    let started = Instant::now();
    let reply = post(server.addr(), "/get_reward", &one_sample("P: ", "2"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(started.elapsed() >= Duration::from_millis(200));
    let body = reply.json();
    assert_eq!(body["rewards"][0], 0.0, "{body}");
    assert!(close(&body["scores"][0], 0.5), "{body}");
    assert_eq!(body["extra_logs"]["group_size"][0], 1.0, "{body}");

    // A labeled sample is scored against its label at once: log-odds of P(beats label).
    let request = json!({ "query": ["P: 2"], "prompts": ["P: "], "labels": ["1"] });
    let started = Instant::now();
    let body = post(server.addr(), "/get_reward", &request).json();
    assert!(started.elapsed() < Duration::from_millis(200), "{body}");
    let p = expected("2", "1").p_a;
    assert!(close(&body["rewards"][0], (p / (1.0 - p)).ln()), "{body}");
    assert!(close(&body["scores"][0], p), "{body}");
    assert_eq!(body["extra_logs"]["labeled"][0], 1.0, "{body}");
    server.shutdown().unwrap();
}

#[test]
fn a_group_size_beyond_the_round_robin_limit_is_refused() {
    let err = Server::start(
        || Ok(FakeJudge::default()),
        ServeConfig {
            group_size: 65,
            ..config()
        },
    )
    .err()
    .expect("an error");
    assert!(err.to_string().contains("--group-size"), "{err}");
}
