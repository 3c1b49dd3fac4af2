//! What protects the server from its clients: API keys, content types, deadlines, clients
//! that go away. After each refusal `/health` answers and a normal request still completes.

use super::*;

/// After an abusive request the server is still healthy and judges a normal request.
pub(super) fn still_serves(addr: SocketAddr, headers: &str) {
    assert_eq!(http(addr, "GET", "/health", b"").status, 200);
    let body = json!({ "pairs": [pair("q", "2", "0")] }).to_string();
    let reply = http_with(addr, "POST", "/judge", headers, body.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(close(
        &reply.json()["results"][0]["p_a"],
        expected("2", "0").p_a
    ));
}

#[test]
fn api_key_is_required_everywhere_but_health() {
    let judge = FakeJudge::default();
    let (server, batches) = start_counting(
        judge,
        ServeConfig {
            api_key: Some("s3cret-key".into()),
            ..config()
        },
    );
    let addr = server.addr();
    let shown = format!(
        "{:?}",
        ServeConfig {
            api_key: Some("s3cret-key".into()),
            ..config()
        }
    );
    assert!(
        !shown.contains("s3cret") && shown.contains("<hidden>"),
        "{shown}"
    );
    let json = "Content-Type: application/json\r\n";
    let good = format!("{json}Authorization: Bearer s3cret-key\r\n");
    let body = json!({ "pairs": [pair("q", "1", "0")] }).to_string();
    for headers in [
        json.to_string(),
        format!("{json}Authorization: Bearer s3cret-kez\r\n"),
        format!("{json}Authorization: Bearer s3cret-key-and-more\r\n"),
        format!("{json}Authorization: Bearer \r\n"),
        format!("{json}Authorization: s3cret-key\r\n"),
        format!("{json}Authorization: Basic s3cret-key\r\n"),
    ] {
        for path in ["/judge", "/rank", "/reward", "/get_reward"] {
            let reply = http_with(addr, "POST", path, &headers, body.as_bytes());
            assert_eq!(reply.status, 401, "{path} with {headers:?}: {}", reply.body);
            assert!(
                reply.json()["error"].as_str().unwrap().contains("API key"),
                "{}",
                reply.body
            );
        }
        still_serves(addr, &good);
    }
    // Unauthenticated requests never reach the judge; /health stays open.
    assert_eq!(batches.lock().unwrap().len(), 6, "only the good requests");
    let health = http_with(addr, "GET", "/health", "", b"");
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("ready"))
    );
    let reply = http_with(addr, "POST", "/judge", &good, body.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.shutdown().unwrap();
}

#[test]
fn a_body_not_declared_json_is_415() {
    let judge = FakeJudge::default();
    let (server, batches) = start_counting(judge, config());
    let addr = server.addr();
    let body = json!({ "pairs": [pair("q", "1", "0")] }).to_string();
    for headers in [
        "Content-Type: text/plain\r\n",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "Content-Type: multipart/form-data; boundary=x\r\n",
        "Content-Type: application/jsonp\r\n",
        "",
    ] {
        for path in ["/judge", "/rank", "/reward", "/get_reward"] {
            let reply = http_with(addr, "POST", path, headers, body.as_bytes());
            assert_eq!(reply.status, 415, "{path} with {headers:?}: {}", reply.body);
            assert!(
                reply.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("application/json"),
                "{}",
                reply.body
            );
        }
        still_serves(addr, "Content-Type: application/json\r\n");
    }
    assert_eq!(batches.lock().unwrap().len(), 5, "only the JSON requests");
    // Parameters and letter case are allowed.
    for headers in [
        "Content-Type: application/json; charset=utf-8\r\n",
        "Content-Type: Application/JSON\r\n",
    ] {
        let reply = http_with(addr, "POST", "/judge", headers, body.as_bytes());
        assert_eq!(reply.status, 200, "{headers:?}: {}", reply.body);
    }
    server.shutdown().unwrap();
}

#[test]
fn a_request_past_its_deadline_is_504_and_its_queued_job_is_not_judged() {
    let judge = FakeJudge {
        call_cost: Duration::from_millis(600),
        ..FakeJudge::default()
    };
    let (server, batches) = start_counting(
        judge,
        ServeConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            request_timeout: Duration::from_millis(300),
            ..config()
        },
    );
    let addr = server.addr();
    // The first request occupies the judge for 600 ms; the two behind it wait in the queue,
    // and all three pass their 300 ms deadline.
    let clients: Vec<_> = (0..3)
        .map(|k| {
            thread::sleep(Duration::from_millis(50));
            thread::spawn(move || {
                let pairs = json!({ "pairs": [pair("q", &k.to_string(), "0")] });
                post(addr, "/judge", &pairs)
            })
        })
        .collect();
    for client in clients {
        let reply = client.join().unwrap();
        assert_eq!(reply.status, 504, "{}", reply.body);
        assert!(
            reply.json()["error"].as_str().unwrap().contains("deadline"),
            "{}",
            reply.body
        );
    }
    // Let the running batch finish; the abandoned queued jobs are skipped.
    thread::sleep(Duration::from_millis(700));
    assert_eq!(
        batches.lock().unwrap().len(),
        1,
        "only the batch already running was judged"
    );
    let rows = json!({ "rows": [{ "prompt": "q", "responses": ["1", "0"] }] });
    let reply = post(addr, "/rank", &rows);
    assert_eq!(reply.status, 504, "{}", reply.body);
    thread::sleep(Duration::from_millis(700));
    let calls = batches.lock().unwrap().len();
    assert_eq!(http(addr, "GET", "/health", b"").status, 200);
    server.shutdown().unwrap();
    assert!(calls <= 2, "a timed-out ranking stops: {calls} calls");
}

#[test]
fn a_queued_job_whose_client_went_away_is_not_judged() {
    let judge = FakeJudge {
        call_cost: Duration::from_millis(500),
        ..FakeJudge::default()
    };
    let (server, batches) = start_counting(
        judge,
        ServeConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            ..config()
        },
    );
    let addr = server.addr();
    let busy =
        thread::spawn(move || post(addr, "/judge", &json!({ "pairs": [pair("q", "1", "0")] })));
    thread::sleep(Duration::from_millis(100));
    // A second client queues a job behind it, then hangs up before it is judged.
    let body = json!({ "pairs": [pair("q", "5", "0")] }).to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /judge HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    thread::sleep(Duration::from_millis(100));
    drop(stream);
    assert_eq!(busy.join().unwrap().status, 200);
    thread::sleep(Duration::from_millis(200));
    still_serves(addr, "Content-Type: application/json\r\n");
    server.shutdown().unwrap();
    let batches = batches.lock().unwrap().clone();
    assert_eq!(
        batches.len(),
        2,
        "the abandoned job was not judged: {batches:?}"
    );
}
