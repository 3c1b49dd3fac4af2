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
                std::process::exit(130);
            });
        });
        StopFlag(flag)
    }

    /// Whether a stop was asked for.
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
