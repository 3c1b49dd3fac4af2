//! A `gram serve` process for tests: started on a free port with its address read from its
//! stderr, stopped with SIGTERM within a deadline, and killed if a test fails first.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `gram serve`, killed when dropped (if the test fails before it exits).
pub struct ServeProcess(std::process::Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ServeProcess {
    /// Start `gram serve --host 127.0.0.1 --port 0 --device cpu --model <default model>` with
    /// `flags`; returns once it announces its address. Its stderr is drained in the background
    /// so it never blocks on a full pipe.
    pub fn start(flags: &[&str]) -> (ServeProcess, SocketAddr) {
        let mut child = ServeProcess(
            Command::new(env!("CARGO_BIN_EXE_gram"))
                .args([
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--device",
                    "cpu",
                ])
                .args(flags)
                .arg("--model")
                .arg(super::model_path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start gram serve"),
        );
        let mut stderr = BufReader::new(child.0.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).expect("read stderr") > 0,
                "gram serve exited before listening"
            );
            if let Some(rest) = line.trim().split("listening on http://").nth(1) {
                break rest.parse().expect("an address");
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        (child, addr)
    }

    /// Send SIGTERM and wait for the process to exit, failing the test if it takes longer than
    /// `within`; its exit status and how long it took.
    pub fn terminate(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.expect("run kill").success(), "kill -TERM {pid}");
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for gram serve") {
                return (status, start.elapsed());
            }
            assert!(
                start.elapsed() < within,
                "gram serve did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
