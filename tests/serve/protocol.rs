//! The endpoints, batching, failures and shutdown.

use super::*;

#[test]
fn health_is_503_until_the_judge_is_loaded() {
    let (release, loaded) = mpsc::channel::<()>();
    let server = Server::start(
        move || {
            loaded.recv().unwrap();
            Ok(FakeJudge::default())
        },
        config(),
    )
    .unwrap();
    let reply = http(server.addr(), "GET", "/health", b"");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()["status"], "loading");
    release.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http(server.addr(), "GET", "/health", b"").status != 200 {
        assert!(Instant::now() < deadline, "never became healthy");
        thread::sleep(Duration::from_millis(10));
    }
    server.shutdown().unwrap();
}

#[test]
fn judge_round_trip_returns_both_orders() {
    let server = start(FakeJudge::default(), config());
    let reply = post(
        server.addr(),
        "/judge",
        &json!({ "pairs": [pair("q", "2", "1"), pair("q", "-1", "0.5")] }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2);
    for (result, (a, b)) in results.iter().zip([("2", "1"), ("-1", "0.5")]) {
        let want = expected(a, b);
        assert!(close(&result["p_a"], want.p_a), "{result}");
        assert!(close(&result["p_a_forward"], want.p_a_forward), "{result}");
        assert!(close(&result["p_a_reverse"], want.p_a_reverse), "{result}");
    }
    let empty = post(server.addr(), "/judge", &json!({ "pairs": [] }));
    assert_eq!(
        (empty.status, empty.json()["results"].clone()),
        (200, json!([]))
    );
    server.shutdown().unwrap();
}

#[test]
fn concurrent_clients_are_all_answered_and_batched() {
    let judge = FakeJudge {
        call_cost: Duration::from_millis(5),
        ..FakeJudge::default()
    };
    let (server, batches) = start_counting(
        judge,
        ServeConfig {
            max_wait: Duration::from_millis(20),
            ..config()
        },
    );
    let addr = server.addr();
    let clients: Vec<_> = (0..16)
        .map(|client| {
            thread::spawn(move || {
                for request in 0..8 {
                    // Distinct strengths per request, 1 or 2 pairs.
                    let a = format!("{}", client as f64 * 0.1);
                    let b = format!("{}", request as f64 * 0.07);
                    let pairs: Vec<Value> = (0..1 + request % 2)
                        .map(|k| pair("q", &a, &format!("{b}{k}")))
                        .collect();
                    let reply = post(addr, "/judge", &json!({ "pairs": pairs }));
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    let results = reply.json()["results"].as_array().unwrap().clone();
                    assert_eq!(results.len(), pairs.len());
                    for (result, sent) in results.iter().zip(&pairs) {
                        let want = expected(
                            sent["response_a"].as_str().unwrap(),
                            sent["response_b"].as_str().unwrap(),
                        );
                        assert!(close(&result["p_a"], want.p_a), "{result} for {sent}");
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    server.shutdown().unwrap();
    let batches = batches.lock().unwrap().clone();
    let sent: usize = (0..16)
        .map(|_| (0..8).map(|r| 1 + r % 2).sum::<usize>())
        .sum();
    assert_eq!(
        batches.iter().sum::<usize>(),
        sent,
        "every pair judged exactly once"
    );
    assert!(
        batches.iter().max().unwrap() > &2,
        "dynamic batching: {batches:?}"
    );
    assert!(
        batches
            .iter()
            .all(|&b| b <= ServeConfig::default().max_batch),
        "{batches:?}"
    );
    println!(
        "{} pairs in {} judge calls: {batches:?}",
        sent,
        batches.len()
    );
}

#[test]
fn malformed_json_is_400_naming_the_problem() {
    let server = start(FakeJudge::default(), config());
    let reply = http(server.addr(), "POST", "/judge", b"{\"pairs\": [");
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{}",
        reply.body
    );
    let reply = post(
        server.addr(),
        "/judge",
        &json!({ "pairs": [{ "prompt": "q", "response_a": "1" }] }),
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("pairs:1: field `response_b`: is missing"),
        "{}",
        reply.body
    );
    let reply = post(
        server.addr(),
        "/rank",
        &json!({ "rows": [{ "prompt": "q", "responses": ["1"] }], "strategy": "best" }),
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("unknown ranking strategy `best`"),
        "{}",
        reply.body
    );
    let reply = post(
        server.addr(),
        "/rank",
        &json!({ "rows": [{ "prompt": "q" }] }),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error"],
        "rows:1: field `responses`: is missing"
    );
    server.shutdown().unwrap();
}

#[test]
fn oversized_body_is_413_and_long_text_is_400() {
    let server = start(
        FakeJudge::default(),
        ServeConfig {
            max_body_bytes: 1024,
            max_chars: 100,
            ..config()
        },
    );
    let big = "9".repeat(2000);
    let reply = post(
        server.addr(),
        "/judge",
        &json!({ "pairs": [pair("q", &big, "1")] }),
    );
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("1024 bytes"),
        "{}",
        reply.body
    );
    let long = "x".repeat(101);
    let reply = post(
        server.addr(),
        "/judge",
        &json!({ "pairs": [pair("q", "1", &long)] }),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error"],
        "pairs[0].response_b has 101 characters; the limit is 100"
    );
    let reply = post(
        server.addr(),
        "/reward",
        &json!({ "rows": [{ "prompt": "q", "responses": ["1", long] }] }),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json()["error"],
        "rows[0].responses[1] has 101 characters; the limit is 100"
    );
    server.shutdown().unwrap();
}

#[test]
fn full_queue_is_503_with_retry_after() {
    let judge = FakeJudge {
        call_cost: Duration::from_millis(300),
        ..FakeJudge::default()
    };
    let server = start(
        judge,
        ServeConfig {
            max_queue: 1,
            max_batch: 1,
            max_wait: Duration::ZERO,
            ..config()
        },
    );
    let addr = server.addr();
    let clients: Vec<_> = (0..6)
        .map(|_| {
            thread::spawn(move || post(addr, "/judge", &json!({ "pairs": [pair("q", "1", "0")] })))
        })
        .collect();
    let replies: Vec<Reply> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert!(
        !busy.is_empty(),
        "one worker + one queue slot cannot hold 6 requests"
    );
    for reply in &busy {
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert!(
            reply.json()["error"]
                .as_str()
                .unwrap()
                .contains("queue is full")
        );
    }
    for reply in replies.iter().filter(|r| r.status != 503) {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(close(
            &reply.json()["results"][0]["p_a"],
            expected("1", "0").p_a
        ));
    }
    server.shutdown().unwrap();
}

#[test]
fn judge_panic_is_500_for_its_request_only() {
    let judge = FakeJudge::default();
    let (server, batches) = start_counting(
        judge,
        ServeConfig {
            max_wait: Duration::from_millis(100),
            ..config()
        },
    );
    let addr = server.addr();
    // Sent together so they share a batch; the panic must reach only its own request.
    let clients: Vec<_> = ["panic", "q", "q", "q"]
        .into_iter()
        .map(|prompt| {
            thread::spawn(move || {
                (
                    prompt,
                    post(
                        addr,
                        "/judge",
                        &json!({ "pairs": [pair(prompt, "1", "0")] }),
                    ),
                )
            })
        })
        .collect();
    for client in clients {
        let (prompt, reply) = client.join().unwrap();
        if prompt == "panic" {
            assert_eq!(reply.status, 500, "{}", reply.body);
            assert!(
                reply.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("asked to panic"),
                "{}",
                reply.body
            );
        } else {
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    assert!(
        batches.lock().unwrap()[0] > 1,
        "the requests were batched: {:?}",
        batches.lock().unwrap()
    );
    assert_eq!(http(addr, "GET", "/health", b"").status, 200);
    let after = post(addr, "/judge", &json!({ "pairs": [pair("q", "3", "0")] }));
    assert!(close(
        &after.json()["results"][0]["p_a"],
        expected("3", "0").p_a
    ));
    server.shutdown().unwrap();
}

#[test]
fn rank_and_reward_endpoints_answer_rows() {
    let server = start(FakeJudge::default(), config());
    let rows = json!([{ "id": 1, "prompt": "q", "responses": ["0", "5", "1", "2"] }]);
    for strategy in ["linear", "knockout", "round-robin"] {
        let reply = post(
            server.addr(),
            "/rank",
            &json!({ "rows": rows, "strategy": strategy }),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let result = &reply.json()["results"][0];
        assert_eq!(
            (result["id"].clone(), result["best"].clone()),
            (json!(1), json!(1)),
            "{strategy}: {result}"
        );
    }
    let reward = json!({ "rows": [{ "prompt": "q", "response": "1", "reference": "0" }], "scale": "probability" });
    let reply = post(server.addr(), "/reward", &reward);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(close(
        &reply.json()["results"][0]["reward"],
        expected("1", "0").p_a
    ));
    server.shutdown().unwrap();
}

#[test]
fn get_reward_follows_the_openrlhf_protocol() {
    let server = start(FakeJudge::default(), config());
    let addr = server.addr();
    // Labeled: log-odds that the response beats the label.
    let request =
        json!({ "query": ["Q: 2", "Q: 1"], "prompts": ["Q: ", "Q: "], "labels": ["1", "1"] });
    let reply = post(addr, "/get_reward", &request);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let rewards = reply.json()["rewards"].clone();
    let log_odds = |p: f64| (p / (1.0 - p)).ln();
    assert!(
        close(&rewards[0], log_odds(expected("2", "1").p_a)),
        "{rewards}"
    );
    assert!(close(&rewards[1], 0.0), "identical to the label: a tie");

    // Unlabeled: centred round-robin strengths within each prompt's group; a lone response gets 0.
    let request = json!({ "query": ["A3", "B7", "A1"], "prompts": ["A", "B", "A"] });
    let rewards = post(addr, "/get_reward", &request).json()["rewards"].clone();
    let gap = log_odds(expected("3", "1").p_a);
    for (got, want) in rewards
        .as_array()
        .unwrap()
        .iter()
        .zip([gap / 2.0, 0.0, -gap / 2.0])
    {
        assert!((got.as_f64().unwrap() - want).abs() < 1e-5, "{rewards}");
    }
    // Mixed: a labeled query does not join its prompt's round-robin group.
    let request = json!({
        "query": ["A3", "A5", "B7", "A1"],
        "prompts": ["A", "A", "B", "A"],
        "labels": ["", "1", null, null],
    });
    let rewards = post(addr, "/get_reward", &request).json()["rewards"].clone();
    for (got, want) in rewards.as_array().unwrap().iter().zip([
        gap / 2.0,
        log_odds(expected("5", "1").p_a),
        0.0,
        -gap / 2.0,
    ]) {
        assert!((got.as_f64().unwrap() - want).abs() < 1e-5, "{rewards}");
    }

    let reply = post(
        addr,
        "/get_reward",
        &json!({ "query": ["A3"], "prompts": ["B"] }),
    );
    assert_eq!(
        (reply.status, reply.json()["error"].clone()),
        (400, json!("query[0] does not start with prompts[0]"))
    );
    let reply = post(
        addr,
        "/get_reward",
        &json!({ "query": ["A3"], "prompts": ["A"], "labels": [] }),
    );
    assert_eq!(reply.status, 400);
    server.shutdown().unwrap();
}

#[test]
fn shutdown_finishes_requests_in_flight() {
    let judge = FakeJudge {
        call_cost: Duration::from_millis(400),
        ..FakeJudge::default()
    };
    let server = start(judge, config());
    let addr = server.addr();
    let in_flight =
        thread::spawn(move || post(addr, "/judge", &json!({ "pairs": [pair("q", "1", "0")] })));
    thread::sleep(Duration::from_millis(100));
    server.shutdown().unwrap();
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

#[test]
fn a_judge_that_fails_to_load_stops_the_server_with_its_error() {
    let server = Server::start(
        || -> Result<FakeJudge> { Err(gram::Error::invalid("no such model")) },
        config(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(server.addr()).is_ok() {
        assert!(Instant::now() < deadline, "still listening");
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.shutdown().unwrap_err().to_string(), "no such model");
}

/// Throughput with dynamic batching vs one pair per judge call, for a judge that costs 20 ms per
/// call + 1 ms per pair (like a GPU batch): 16 clients × 8 single-pair requests.
#[test]
fn load_test_batching_beats_sequential() {
    let run = |max_batch: usize| {
        let judge = FakeJudge {
            call_cost: Duration::from_millis(20),
            pair_cost: Duration::from_millis(1),
            ..FakeJudge::default()
        };
        let (server, batches) = start_counting(
            judge,
            ServeConfig {
                max_batch,
                max_wait: Duration::from_millis(5),
                ..config()
            },
        );
        let addr = server.addr();
        let began = Instant::now();
        let clients: Vec<_> = (0..16)
            .map(|_| {
                thread::spawn(move || {
                    for _ in 0..8 {
                        let reply =
                            post(addr, "/judge", &json!({ "pairs": [pair("q", "1", "0")] }));
                        assert_eq!(reply.status, 200, "{}", reply.body);
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        let seconds = began.elapsed().as_secs_f64();
        server.shutdown().unwrap();
        let calls = batches.lock().unwrap().len();
        let throughput = 128.0 / seconds;
        println!(
            "max_batch {max_batch:>2}: 128 requests in {seconds:.2} s = {throughput:.0} req/s, {calls} judge calls"
        );
        throughput
    };
    let sequential = run(1);
    let batched = run(16);
    println!("speed-up from batching: {:.1}x", batched / sequential);
    assert!(
        batched > 3.0 * sequential,
        "batched {batched:.0} req/s vs sequential {sequential:.0} req/s"
    );
}
