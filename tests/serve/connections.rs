//! What bounds connections: the header timeout (slow and idle clients), the body timeout, the
//! connection cap, the shutdown deadline, and judging that stops when its client leaves. After
//! each abusive client `/health` answers and another client's request completes.

use super::guards::still_serves;
use super::*;

const JSON: &str = "Content-Type: application/json\r\n";

/// Small timeouts so each test takes seconds.
fn tight() -> ServeConfig {
    ServeConfig {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        send_timeout: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(1),
        ..config()
    }
}

/// Read until the server closes the connection (or `limit` passes); what arrived and when the
/// connection ended, counted from `since`.
pub(super) fn read_until_closed(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
) -> (String, Duration) {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    (String::from_utf8_lossy(&raw).into_owned(), since.elapsed())
}

/// A client that sends a request head one byte every 200 ms is cut off at the 1 s header
/// timeout, not after the head it never finishes.
#[test]
fn a_slowloris_head_is_cut_off_at_the_header_timeout() {
    let server = start(FakeJudge::default(), tight());
    let addr = server.addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let start = Instant::now();
    let head = format!(
        "POST /judge HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}",
        "a".repeat(100)
    );
    let writer = thread::spawn(move || {
        for byte in head.bytes() {
            if stream.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    let (_, ended) = read_until_closed(&mut reader, start, Duration::from_secs(10));
    assert!(
        ended >= Duration::from_millis(900) && ended < Duration::from_secs(3),
        "closed after {ended:?}; the header timeout is 1 s"
    );
    writer.join().unwrap();
    still_serves(addr, JSON);
    server.shutdown().unwrap();
}

/// A keep-alive connection that goes quiet after its response is closed at the header timeout.
#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_header_timeout() {
    let server = start(FakeJudge::default(), tight());
    let addr = server.addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let start = Instant::now();
    let (reply, ended) = read_until_closed(&mut stream, start, Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        ended >= Duration::from_millis(900) && ended < Duration::from_secs(3),
        "the idle connection lasted {ended:?}; the header timeout is 1 s"
    );
    still_serves(addr, JSON);
    server.shutdown().unwrap();
}

/// The header timeout bounds waiting for a request, not answering one: a request judged for
/// longer than it (1.5 s against 1 s) is answered.
#[test]
fn a_request_judged_longer_than_the_header_timeout_is_answered() {
    let judge = FakeJudge {
        call_cost: Duration::from_millis(1500),
        ..FakeJudge::default()
    };
    let server = start(judge, tight());
    let reply = post(
        server.addr(),
        "/judge",
        &json!({ "pairs": [pair("q", "1", "0")] }),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.shutdown().unwrap();
}

/// A client that sends its head and then stalls its body gets 408 at the 1 s body timeout.
#[test]
fn a_stalled_body_is_408_at_the_body_timeout() {
    let judge = FakeJudge::default();
    let (server, batches) = start_counting(judge, tight());
    let addr = server.addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    write!(
        stream,
        "POST /judge HTTP/1.1\r\nHost: {addr}\r\n{JSON}Content-Length: 1000\r\n\r\n{{\"pairs\":"
    )
    .unwrap();
    let (reply, ended) = read_until_closed(&mut stream, start, Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("did not arrive within 1 s"), "{reply}");
    assert!(
        ended < Duration::from_secs(3),
        "answered after {ended:?}; the body timeout is 1 s"
    );
    // A body declared over the limit is refused before it is read.
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /judge HTTP/1.1\r\nHost: {addr}\r\n{JSON}Content-Length: 999999999\r\n\r\n"
    )
    .unwrap();
    let (reply, _) = read_until_closed(&mut stream, Instant::now(), Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    still_serves(addr, JSON);
    server.shutdown().unwrap();
    assert_eq!(
        batches.lock().unwrap().len(),
        1,
        "only the good request was judged"
    );
}

/// A client that asks for a 25 MB answer and never reads it is dropped at the 1 s send
/// timeout, which frees the only connection slot for the next client.
#[test]
fn a_client_that_stops_reading_its_answer_is_dropped_at_the_send_timeout() {
    let server = start(
        FakeJudge::default(),
        ServeConfig {
            max_connections: 1,
            max_batch: 1 << 20,
            ..tight()
        },
    );
    let addr = server.addr();
    let pairs: Vec<Value> = (0..300_000).map(|_| pair("q", "1", "0")).collect();
    let body = json!({ "pairs": pairs }).to_string();
    let mut deaf = TcpStream::connect(addr).unwrap();
    write!(
        deaf,
        "POST /judge HTTP/1.1\r\nHost: {addr}\r\n{JSON}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    deaf.write_all(body.as_bytes()).unwrap();
    let start = Instant::now();
    assert_eq!(http(addr, "GET", "/health", b"").status, 200);
    let waited = start.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "the next client waited {waited:?} for the slot"
    );
    still_serves(addr, JSON);
    drop(deaf);
    server.shutdown().unwrap();
}

/// With a cap of 4 connections, 40 idle sockets do not lock other clients out for good: new
/// connections wait until the idle ones reach the header timeout, then are served.
#[test]
fn idle_sockets_beyond_the_connection_cap_delay_but_do_not_block_others() {
    let server = start(
        FakeJudge::default(),
        ServeConfig {
            max_connections: 4,
            ..tight()
        },
    );
    let addr = server.addr();
    let start = Instant::now();
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let reply = http(addr, "GET", "/health", b"");
    let waited = start.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        waited >= Duration::from_millis(800),
        "answered after {waited:?}: the 4 connection slots were taken by idle sockets"
    );
    assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    still_serves(addr, JSON);
    drop(idle);
    server.shutdown().unwrap();
}

/// Shutting down with a request still judged (5 s) and a slow client returns at the 1 s
/// shutdown deadline.
#[test]
fn shutdown_stops_at_its_deadline() {
    let judge = FakeJudge {
        call_cost: Duration::from_secs(5),
        ..FakeJudge::default()
    };
    let server = start(judge, tight());
    let addr = server.addr();
    let in_flight =
        thread::spawn(move || post(addr, "/judge", &json!({ "pairs": [pair("q", "1", "0")] })));
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"POST /judge HTTP/1.1\r\n").unwrap();
    thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    server.shutdown().unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "shutdown took {took:?}; the deadline is 1 s"
    );
    drop(in_flight);
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

/// Send `body` to `path` and hang up after `after`, without reading the answer.
fn hang_up_after(addr: SocketAddr, path: &str, body: &Value, after: Duration) {
    let body = body.to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{JSON}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    thread::sleep(after);
}

/// A server judging at most 4 pairs per call with a fake judge that takes `pair_cost` per pair,
/// and the sizes of the judge calls it makes.
fn slow_server(pair_cost: Duration) -> (Server, Arc<Mutex<Vec<usize>>>) {
    let judge = FakeJudge {
        pair_cost,
        ..FakeJudge::default()
    };
    let config = ServeConfig {
        max_batch: 4,
        ..tight()
    };
    start_counting(judge, config)
}

/// A round-robin ranking of 40 responses (780 comparisons, 4 per judge call) whose client hangs
/// up stops soon after: the comparisons judged are a fraction of them.
#[test]
fn a_ranking_stops_consuming_the_judge_when_its_client_leaves() {
    let (server, batches) = slow_server(Duration::from_millis(20));
    let addr = server.addr();
    let responses: Vec<String> = (0..40).map(|k| k.to_string()).collect();
    let rows = json!({
        "rows": [{ "prompt": "q", "responses": responses }],
        "strategy": "round-robin",
    });
    hang_up_after(addr, "/rank", &rows, Duration::from_millis(500));
    thread::sleep(Duration::from_millis(500));
    still_serves(addr, JSON);
    server.shutdown().unwrap();
    let judged: usize = batches.lock().unwrap().iter().sum::<usize>() - 1;
    assert!(
        (1..200).contains(&judged),
        "{judged} of 780 comparisons judged: the ranking should start, then stop with its client"
    );
}

/// A request of 40 pairs with `max_batch` 4 is judged 4 pairs per call; when its client hangs
/// up after the first calls, the rest are not judged, and other clients are served.
#[test]
fn a_long_request_stops_consuming_the_judge_when_its_client_leaves() {
    let (server, batches) = slow_server(Duration::from_millis(50));
    let addr = server.addr();
    let pairs: Vec<Value> = (0..40).map(|k| pair("q", &k.to_string(), "0")).collect();
    hang_up_after(
        addr,
        "/judge",
        &json!({ "pairs": pairs }),
        Duration::from_millis(500),
    );
    thread::sleep(Duration::from_millis(500));
    still_serves(addr, JSON);
    server.shutdown().unwrap();
    let batches = batches.lock().unwrap().clone();
    assert!(batches.iter().all(|&size| size <= 4), "{batches:?}");
    let judged: usize = batches.iter().sum::<usize>() - 1;
    assert!(
        (1..20).contains(&judged),
        "{judged} of the 40 pairs were judged: judging should start, then stop with its client: {batches:?}"
    );
}

/// Bodies in memory are budgeted across requests: while a stalled client holds 2,000 of the
/// 2,048 bytes, another body is 503 with `Retry-After` (a request without a body is served);
/// once the stalled one times out, bodies are accepted again.
#[test]
fn request_bodies_share_a_memory_budget() {
    let server = start(
        FakeJudge::default(),
        ServeConfig {
            max_body_bytes: 2048,
            max_body_memory: 2048,
            ..tight()
        },
    );
    let addr = server.addr();
    let mut stalled = TcpStream::connect(addr).unwrap();
    write!(
        stalled,
        "POST /judge HTTP/1.1\r\nHost: {addr}\r\n{JSON}Content-Length: 2000\r\n\r\n{{"
    )
    .unwrap();
    thread::sleep(Duration::from_millis(200));
    let body = json!({ "pairs": [pair("q", "2", "0")] }).to_string();
    let reply = http_with(addr, "POST", "/judge", JSON, body.as_bytes());
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply.body.contains("limit of 2048 bytes"), "{}", reply.body);
    assert_eq!(http(addr, "GET", "/health", b"").status, 200);
    let (reply, _) = read_until_closed(&mut stalled, Instant::now(), Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    still_serves(addr, JSON);
    server.shutdown().unwrap();
}
