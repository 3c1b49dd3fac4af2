//! The HTTP reward server over real loopback sockets, with fake judges (and the real model in
//! `process.rs`).
//!
//! The client is hand-written HTTP/1.1 over `std::net::TcpStream` (one request per connection).
//! `protocol.rs` covers the endpoints, batching and failures; `guards.rs` what protects the
//! server from its clients (API key, content type, deadlines, clients that go away);
//! `clients.rs` the payloads of TRL and OpenRLHF (chat messages, chat-template-rendered text),
//! `scripts/gram_client.py`, and a rendered request on the real model; `connections.rs` the
//! bounds on connections (header and body timeouts, the connection cap, the shutdown deadline,
//! judging stopped when its client leaves); `process.rs` the same abuse against a real
//! `gram serve` process on the default model; `groups.rs` rollout groups across requests and
//! the OpenRLHF reply fields.

mod clients;
#[path = "../common/mod.rs"]
mod common;
mod connections;
mod groups;
mod guards;
mod process;
mod protocol;

use gram::pair::sigmoid;
use gram::serve::{ServeConfig, Server};
use gram::{Judge, Pair, Result, Verdict};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// A deterministic judge: each response is a number, its strength s; P(A beats B) in the given
/// order is σ(s_A − s_B + 0.1), in the swapped order σ(s_A − s_B − 0.1) (a position bias the
/// average cancels). Each call costs `call_cost + pair_cost · pairs` of sleep, like a GPU batch.
/// A pair whose prompt is "panic" makes the call panic. Records every call's size.
#[derive(Clone, Default)]
struct FakeJudge {
    call_cost: Duration,
    pair_cost: Duration,
    batches: Arc<Mutex<Vec<usize>>>,
}

fn strength(response: &str) -> f64 {
    response.trim().parse().unwrap_or(0.0)
}

/// The verdict the fake judge gives on (a, b).
fn expected(a: &str, b: &str) -> Verdict {
    let d = strength(a) - strength(b);
    let (forward, reverse) = (sigmoid(d + 0.1), sigmoid(d - 0.1));
    Verdict {
        p_a: 0.5 * (forward + reverse),
        p_a_forward: forward,
        p_a_reverse: reverse,
    }
}

impl Judge for FakeJudge {
    fn judge(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
        self.batches.lock().unwrap().push(pairs.len());
        thread::sleep(self.call_cost + self.pair_cost * pairs.len() as u32);
        if pairs.iter().any(|p| p.prompt == "panic") {
            panic!("asked to panic");
        }
        Ok(pairs
            .iter()
            .map(|p| expected(&p.response_a, &p.response_b))
            .collect())
    }
}

fn config() -> ServeConfig {
    ServeConfig {
        port: 0,
        ..ServeConfig::default()
    }
}

/// Start a server with `judge` and wait until `/health` says it is ready.
fn start(judge: impl Judge + Send + 'static, config: ServeConfig) -> Server {
    start_with(move || Ok(judge), config, Duration::from_secs(10))
}

/// [`start`] with a [`FakeJudge`], and the sizes of the judge calls it will make.
fn start_counting(judge: FakeJudge, config: ServeConfig) -> (Server, Arc<Mutex<Vec<usize>>>) {
    let batches = judge.batches.clone();
    (start(judge, config), batches)
}

/// Start a server whose judge `factory` builds, and wait up to `load` until it is ready.
fn start_with<J: Judge + 'static>(
    factory: impl FnOnce() -> Result<J> + Send + 'static,
    config: ServeConfig,
    load: Duration,
) -> Server {
    let server = Server::start(factory, config).expect("server starts");
    let deadline = Instant::now() + load;
    while http(server.addr(), "GET", "/health", b"").status != 200 {
        assert!(Instant::now() < deadline, "never became healthy");
        thread::sleep(Duration::from_millis(5));
    }
    server
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection; the whole reply.
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    http_with(
        addr,
        method,
        path,
        "Content-Type: application/json\r\n",
        body,
    )
}

/// One HTTP/1.1 request with `headers` (whole `Name: value\r\n` lines) on a fresh connection.
fn http_with(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read reply");
    let raw = String::from_utf8(raw).expect("UTF-8 reply");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut reply = Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    };
    if reply.header("transfer-encoding") == Some("chunked") {
        reply.body = dechunk(body);
    }
    reply
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    http(addr, "POST", path, body.to_string().as_bytes())
}

fn pair(prompt: &str, a: &str, b: &str) -> Value {
    json!({ "prompt": prompt, "response_a": a, "response_b": b })
}

fn close(got: &Value, want: f64) -> bool {
    (got.as_f64().expect("a number") - want).abs() < 1e-9
}
