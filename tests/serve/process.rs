//! A real `gram serve` process (the default model on the CPU) against abusive clients: after a
//! slowloris head, a stalled body and more idle sockets than its connection cap, `/health`
//! answers and another client's pair is judged; SIGTERM while a slow client is connected and a
//! long request is being judged ends the process within its shutdown deadline.

use super::common::serve_process::ServeProcess;
use super::connections::read_until_closed;
use super::*;

/// `/health` answers 200 and a pair is judged: `p_a` a probability, the mean of both orders.
fn judges(addr: SocketAddr) {
    assert_eq!(http(addr, "GET", "/health", b"").status, 200);
    let request = json!({ "pairs": [pair("What is 2+2?", "4", "5")] });
    let reply = post(addr, "/judge", &request);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let result = &reply.json()["results"][0];
    let p = |field: &str| result[field].as_f64().expect("a number");
    assert!(p("p_a") > 0.0 && p("p_a") < 1.0, "{result}");
    assert!((p("p_a") - 0.5 * (p("p_a_forward") + p("p_a_reverse"))).abs() < 1e-9);
}

#[test]
fn a_real_server_outlasts_abusive_clients_and_stops_at_its_shutdown_deadline() {
    let (mut child, addr) = ServeProcess::start(&[
        "--max-batch",
        "4",
        "--max-connections",
        "8",
        "--header-timeout-secs",
        "1",
        "--body-timeout-secs",
        "1",
        "--shutdown-timeout-secs",
        "2",
    ]);
    let loading = Instant::now();
    while http(addr, "GET", "/health", b"").status != 200 {
        assert!(loading.elapsed() < Duration::from_secs(300), "never loaded");
        thread::sleep(Duration::from_millis(200));
    }
    judges(addr);

    // A head sent one byte every 200 ms is cut off at the 1 s header timeout.
    let slow_head = |addr: SocketAddr| {
        let mut stream = TcpStream::connect(addr).unwrap();
        let reader = stream.try_clone().unwrap();
        thread::spawn(move || {
            for &byte in b"POST /judge HTTP/1.1\r\nHost: gram\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        reader
    };
    let start = Instant::now();
    let (_, ended) = read_until_closed(&mut slow_head(addr), start, Duration::from_secs(10));
    assert!(ended < Duration::from_secs(3), "slowloris lasted {ended:?}");
    judges(addr);

    // Headers, then a stalled body: 408 at the 1 s body timeout.
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /judge HTTP/1.1\r\nHost: gram\r\nContent-Type: application/json\r\n\
         Content-Length: 500\r\n\r\n{{\"pairs\":["
    )
    .unwrap();
    let (reply, ended) = read_until_closed(&mut stream, Instant::now(), Duration::from_secs(10));
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        ended < Duration::from_secs(3),
        "the stalled body held {ended:?}"
    );
    judges(addr);

    // Five times the connection cap in idle sockets: served once they time out.
    let idle: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let start = Instant::now();
    judges(addr);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    drop(idle);

    // SIGTERM with a slow client connected and 256 pairs being judged (tens of seconds): the process exits within
    // the 2 s shutdown deadline (plus the time to notice), successfully.
    let long = "a detailed answer with many words ".repeat(20);
    let pairs: Vec<Value> = (0..256)
        .map(|k| pair(&format!("q{k}"), &long, "no"))
        .collect();
    let busy = thread::spawn(move || post(addr, "/judge", &json!({ "pairs": pairs })));
    let _slow = slow_head(addr);
    thread::sleep(Duration::from_millis(500));
    let (status, took) = child.terminate(Duration::from_secs(6));
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(
        took >= Duration::from_millis(1500),
        "exited after {took:?}: the long request was not given its deadline"
    );
    drop(busy);
}
