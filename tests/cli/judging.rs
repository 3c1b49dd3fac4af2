//! `devices`, `judge`, `rank`, `reward`, `eval` and `serve` against the library judge.

use super::*;
use common::serve_process::ServeProcess;

/// One line per wgpu adapter the library sees (index, name), then the CPU line.
#[test]
fn devices_lists_every_adapter_and_the_cpu() {
    let (stdout, _) = run_ok(&["devices"], &[]);
    let adapters = gram::device::adapters();
    for adapter in &adapters {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{} ", adapter.index)))
            .unwrap_or_else(|| panic!("no line for adapter {}:\n{stdout}", adapter.index));
        assert!(line.contains(&adapter.name), "{line:?} vs {adapter:?}");
    }
    if adapters.is_empty() {
        assert!(stdout.contains("no wgpu adapters"), "{stdout}");
    }
    let listed = stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<usize>().is_ok())
        })
        .count();
    assert_eq!(listed, adapters.len(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("cpu ")),
        "the CPU is listed:\n{stdout}"
    );
}

// ---- judge, rank, reward, eval -------------------------------------------------------------

/// `gram judge` writes the library's p_a, p_a_forward and p_a_reverse for each row, with
/// p_a = (p_a_forward + p_a_reverse) / 2, `correct` = p_a > 0.5, and the input fields intact.
#[test]
fn judge_writes_the_library_judges_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let output = dir.path().join("scores.jsonl");
    let rows = rows();
    write_jsonl(&input, &rows);
    let (_, stderr) = run_ok(
        &["judge", "--input"],
        &[&input, Path::new("--output"), &output],
    );
    assert!(stderr.contains("judged 2 pairs"), "{stderr}");
    let scored = read_jsonl(&output);
    assert_eq!(scored.len(), rows.len());
    for ((out, row), verdict) in scored.iter().zip(&rows).zip(library_verdicts()) {
        let id = row["id"].as_str().unwrap();
        for field in ["id", "prompt", "chosen", "rejected"] {
            assert_eq!(out[field], row[field], "{id}: {field} passes through");
        }
        let p_a = out["p_a"].as_f64().unwrap();
        let forward = out["p_a_forward"].as_f64().unwrap();
        let reverse = out["p_a_reverse"].as_f64().unwrap();
        assert_same(&format!("{id} p_a"), p_a, verdict.p_a);
        assert_same(&format!("{id} p_a_forward"), forward, verdict.p_a_forward);
        assert_same(&format!("{id} p_a_reverse"), reverse, verdict.p_a_reverse);
        assert!(
            (p_a - (forward + reverse) / 2.0).abs() < 1e-12,
            "{id}: p_a {p_a} is not the mean of {forward} and {reverse}"
        );
        assert_eq!(out["correct"].as_bool(), Some(p_a > 0.5), "{id}");
    }
}

/// `gram rank` on two responses (one comparison): the winner is the library judge's, the scores
/// are the Bradley–Terry fit of that one verdict, and the counts are 1 comparison, 2 passes.
#[test]
fn rank_orders_by_the_library_judges_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rank.jsonl");
    let output = dir.path().join("ranked.jsonl");
    let row = &rows()[0];
    write_jsonl(
        &input,
        &[json!({
            "id": "r1",
            "prompt": row["prompt"],
            "responses": [row["chosen"], row["rejected"]],
        })],
    );
    run_ok(&["rank"], &[&input, Path::new("--output"), &output]);
    let ranked = read_jsonl(&output);
    assert_eq!(ranked.len(), 1);
    let out = &ranked[0];
    let p = library_verdicts()[0].p_a; // P(responses[0] beats responses[1])
    let best = if p > 0.5 { 0 } else { 1 };
    assert_eq!(out["id"], "r1");
    assert_eq!(out["best"], best, "{out} (p {p})");
    assert_eq!(out["order"], json!([best, 1 - best]), "{out}");
    assert_eq!(out["comparisons"], 1, "{out}");
    assert_eq!(out["forward_passes"], 2, "{out}");
    let expected = gram::rank::bradley_terry(2, &[(0, 1, p)]);
    let scores: Vec<f64> = out["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 2);
    for (s, e) in scores.iter().zip(&expected) {
        assert!(
            (s - e).abs() < 1e-5,
            "scores {scores:?}, expected {expected:?}"
        );
    }
}

/// `gram reward` (default scale log-odds): reward = ln(p / (1 − p)) with p the library's
/// P(response beats reference), for the response and reference in both roles.
#[test]
fn reward_is_the_log_odds_of_beating_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("reward.jsonl");
    let output = dir.path().join("rewards.jsonl");
    let row = &rows()[0];
    write_jsonl(
        &input,
        &[json!({
            "id": "w1",
            "prompt": row["prompt"],
            "response": row["chosen"],
            "reference": row["rejected"],
        })],
    );
    run_ok(&["reward"], &[&input, Path::new("--output"), &output]);
    let out = read_jsonl(&output);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["id"], "w1");
    let p = library_verdicts()[0].p_a;
    let reward = out[0]["reward"].as_f64().unwrap();
    assert!(
        (reward - logit(p)).abs() < 1e-5,
        "reward {reward}, ln(p/(1-p)) {} for p {p}",
        logit(p)
    );
}

/// `gram eval --format preference`: the report's accuracy and position consistency are the
/// library verdicts' (accuracy = share with p_a > 0.5, mean |p_a_forward − p_a_reverse|).
#[test]
fn eval_reports_the_library_judges_accuracy_and_consistency() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bench.jsonl");
    let report = dir.path().join("report.json");
    write_jsonl(&input, &rows());
    let (stdout, _) = run_ok(
        &["eval", "--format", "preference", "--benchmark"],
        &[&input, Path::new("--report"), &report],
    );
    assert!(stdout.contains("overall"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let verdicts = library_verdicts();
    let n = verdicts.len() as f64;
    let accuracy = verdicts.iter().filter(|v| v.p_a > 0.5).count() as f64 / n;
    let gap = verdicts
        .iter()
        .map(|v| (v.p_a_forward - v.p_a_reverse).abs())
        .sum::<f64>()
        / n;
    assert_eq!(report["overall"]["count"], 2, "{report}");
    assert_eq!(
        report["overall"]["accuracy"].as_f64(),
        Some(accuracy),
        "{report}"
    );
    assert_eq!(report["consistency"]["count"], 2, "{report}");
    assert_same(
        "mean |p_a_forward - p_a_reverse|",
        report["consistency"]["mean_gap"].as_f64().unwrap(),
        gap,
    );
}

// ---- serve ---------------------------------------------------------------------------------

/// A minimal HTTP/1.1 exchange (one request per connection): status and body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply:?}"));
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `gram serve --port 0 --group-size 3`: announces its address, answers /health 200 once
/// loaded (naming the model and its settings), /judge with the library's probabilities, three
/// concurrent one-sample OpenRLHF requests of one prompt as one rollout group with the
/// library's round-robin rewards, /metrics with what it did, and exits successfully on SIGTERM.
#[test]
fn serve_judges_over_http_and_stops_on_sigterm() {
    let (mut child, addr) = ServeProcess::start(&["--group-size", "3", "--group-wait-ms", "60000"]);

    let start = Instant::now();
    loop {
        let (status, body) = http(addr, "GET", "/health", "");
        if status == 200 {
            let health: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(health["status"], "ready", "{body}");
            let name = common::model_path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert_eq!(health["model"]["name"], name.as_str(), "{body}");
            assert_eq!(health["model"]["labels"], json!(["A", "B"]), "{body}");
            assert_eq!(health["server"]["group_size"], 3, "{body}");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the judge never loaded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let row = &rows()[0];
    let request = json!({"pairs": [{
        "prompt": row["prompt"],
        "response_a": row["chosen"],
        "response_b": row["rejected"],
    }]});
    let (status, body) = http(addr, "POST", "/judge", &request.to_string());
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let result = &reply["results"][0];
    let verdict = &library_verdicts()[0];
    assert_same("p_a", result["p_a"].as_f64().unwrap(), verdict.p_a);
    assert_same(
        "p_a_forward",
        result["p_a_forward"].as_f64().unwrap(),
        verdict.p_a_forward,
    );
    assert_same(
        "p_a_reverse",
        result["p_a_reverse"].as_f64().unwrap(),
        verdict.p_a_reverse,
    );

    // OpenRLHF: three samples of one prompt, one per request, all at once.
    let prompt = row["prompt"].as_str().unwrap();
    let responses = [
        row["chosen"].as_str().unwrap(),
        row["rejected"].as_str().unwrap(),
        "I don't know.",
    ];
    let rewards: Vec<f64> = std::thread::scope(|scope| {
        let asks: Vec<_> = responses
            .iter()
            .map(|response| {
                let request =
                    json!({"query": [format!("{prompt}{response}")], "prompts": [prompt]});
                scope.spawn(move || http(addr, "POST", "/get_reward", &request.to_string()))
            })
            .collect();
        asks.into_iter()
            .map(|ask| {
                let (status, body) = ask.join().unwrap();
                assert_eq!(status, 200, "{body}");
                let reply: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(reply["extra_logs"]["group_size"][0], 3.0, "{body}");
                let reward = reply["rewards"][0].as_f64().unwrap();
                assert_same(
                    "score",
                    reply["scores"][0].as_f64().unwrap(),
                    gram::pair::sigmoid(reward),
                );
                reward
            })
            .collect()
    });
    let group = gram::reward::Group {
        prompt: prompt.into(),
        responses: responses.iter().map(|r| r.to_string()).collect(),
        baseline: gram::reward::Baseline::RoundRobin,
    };
    let options = JudgeOptions {
        batch_size: 1,
        ..JudgeOptions::default()
    };
    let mut judge = GramJudge::load(&common::model_path(), &Device::flex(), options).unwrap();
    let want = gram::reward::group_rewards(&mut judge, &[group], gram::reward::Scale::LogOdds)
        .unwrap()
        .remove(0);
    for (got, want) in rewards.iter().zip(&want) {
        assert_same("group reward", *got, *want);
    }
    assert!(rewards.iter().sum::<f64>().abs() < 1e-6, "{rewards:?}");
    assert!(
        rewards[0] != rewards[1] && rewards[1] != rewards[2],
        "{rewards:?}"
    );

    // /metrics: the four answered requests, one judge call per batch, tokens counted.
    let (status, text) = http(addr, "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(
        value("gram_requests_total{endpoint=\"/judge\",status=\"200\"}"),
        1.0
    );
    assert_eq!(
        value("gram_requests_total{endpoint=\"/get_reward\",status=\"200\"}"),
        3.0
    );
    assert_eq!(value("gram_pairs_judged_total"), 4.0);
    assert_eq!(value("gram_queue_depth"), 0.0);
    assert_eq!(
        value("gram_batch_pairs_count"),
        value("gram_judge_seconds_count")
    );
    assert!(value("gram_tokens_judged_total") > 100.0, "{text}");
    assert!(value("gram_tokens_per_second") > 0.0, "{text}");

    let (status, _) = child.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(TcpStream::connect(addr).is_err(), "still listening");
}

// ---- pairs ---------------------------------------------------------------------------------
