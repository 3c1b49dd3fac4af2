//! Stopping long work cleanly: SIGINT (Ctrl-C) and SIGTERM, for the server and for training.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A flag raised by the first Ctrl-C (or SIGTERM), for loops that stop at a safe point (a
/// training run stops after its current step and checkpoints). The second signal exits the
/// process at once with status 130; work that must survive that is written atomically.
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Listen for signals on a background thread; `notice` is printed when the first arrives.
    pub fn on_signal(notice: &'static str) -> StopFlag {
        let flag = Arc::new(AtomicBool::new(false));
        let raised = flag.clone();
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                termination_signal().await;
                raised.store(true, Ordering::SeqCst);
                eprintln!("\n{notice}");
                termination_signal().await;
                exit_now(130);
            });
        });
        StopFlag(flag)
    }

    /// Whether a stop was asked for.
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// End the process now with `code`, without running exit handlers; stdout and stderr are
/// flushed first.
///
/// For exits while another thread may still be computing (the second Ctrl-C, a server that
/// stops without its busy judge): libc's `exit` runs native libraries' destructors, and
/// OpenBLAS's joins its thread pool, which can wait forever on a pool thread that a call in
/// flight had woken (seen: `gram serve` hung in `blas_thread_shutdown_` after SIGTERM).
pub fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(unix)]
    // SAFETY: `_exit` only ends the process; no Rust state is touched afterwards.
    unsafe {
        libc::_exit(code)
    }
    #[cfg(not(unix))]
    std::process::exit(code)
}
