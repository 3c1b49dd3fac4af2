//! Accepting connections within bounds, and closing them at shutdown within a deadline.
//!
//! Every connection is served by hyper's HTTP/1.1 connection with its header read timeout: a
//! client must deliver a request's complete head within [`ServeConfig::header_timeout`] of the
//! connection opening or of its previous response (so the same timeout closes idle keep-alive
//! connections and slowloris clients sending a byte at a time). At most
//! [`ServeConfig::max_connections`] connections are open at once; beyond that the server stops
//! accepting, and new connections wait in the kernel's listen queue until one closes. After the
//! stop signal no connection is accepted; connections finish the request in flight (idle ones
//! close at once) until [`ServeConfig::shutdown_timeout`], after which the rest are dropped.
//! A response the client stops reading fails the connection once no byte could be sent for
//! [`ServeConfig::send_timeout`] ([`SendDeadline`]; hyper has no write timeout of its own).

use super::ServeConfig;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// How long to pause accepting after an error other than a failed handshake (e.g. out of file
/// descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How a shutdown went.
pub(super) struct Shutdown {
    /// When the shutdown deadline passes (or passed): the stop signal plus the shutdown timeout.
    pub deadline: Instant,
    /// Connections still open at the deadline, left for the caller to drop.
    pub dropped: usize,
}

/// Serve `app` on `listener` until `stop` resolves, then shut down: stop accepting, let open
/// connections finish within `config.shutdown_timeout`, and leave the rest to be dropped.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ServeConfig,
    stop: impl Future<Output = ()>,
) -> Shutdown {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    let open = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = accept(&listener, &open) => accepted,
        };
        let Some((stream, permit)) = accepted else {
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let stream = SendDeadline::new(stream, config.send_timeout);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors are the client's (a timeout, a malformed request, a reset); the connection
            // is closed either way.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    let deadline = Instant::now() + config.shutdown_timeout;
    let dropped = match tokio::time::timeout(config.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => 0,
        Err(_) => config.max_connections - open.available_permits(),
    };
    Shutdown { deadline, dropped }
}

/// The next connection and its slot among the open ones, once a slot is free; `None` after an
/// accept error (after a pause, unless the error concerned only that one connection).
async fn accept(
    listener: &TcpListener,
    open: &Arc<Semaphore>,
) -> Option<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let permit = open.clone().acquire_owned().await.expect("never closed");
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, permit)),
        Err(error) => {
            use std::io::ErrorKind::*;
            if !matches!(
                error.kind(),
                ConnectionAborted | ConnectionReset | ConnectionRefused
            ) {
                eprintln!("gram serve: accepting a connection failed: {error}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            None
        }
    }
}

/// A connection whose writes fail with `TimedOut` once one has waited `timeout` without the
/// client taking a byte (its receive window closed: it stopped reading). Reads are untouched.
struct SendDeadline {
    stream: TcpStream,
    timeout: Duration,
    /// Running while a write, flush or shutdown is pending; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl SendDeadline {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        SendDeadline {
            stream,
            timeout,
            stalled: None,
        }
    }

    /// `poll` of a write-side operation, failed once it has been pending for `timeout`.
    fn within_deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(result) = poll(Pin::new(&mut self.stream), cx) {
            self.stalled = None;
            return Poll::Ready(result);
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {} s", timeout.as_secs_f64()),
        )))
    }
}

impl AsyncRead for SendDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .within_deadline(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .within_deadline(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .within_deadline(cx, |stream, cx| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .within_deadline(cx, |stream, cx| stream.poll_shutdown(cx))
    }
}
