//! What one client can hold of the webhook: timeouts, and a cap on open connections with an
//! inactivity timeout on each.

use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Bounds on slow, idle and numerous clients. The defaults suit an API server as the only
/// client; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to send a request's headers; on a new connection, time until its first request.
    pub header_timeout: Duration,
    /// Time to send a request's body and be answered (408 after it).
    pub request_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed (idle keep-alive
    /// connections included, HTTP/1.1 and HTTP/2 alike).
    pub idle_timeout: Duration,
    /// Connections open at once, in the handshake or not; one more is closed on accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            // Longer than the API server's own idle timeout (90 s), so that it closes first.
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
        }
    }
}

/// The innermost acceptor: takes a connection slot or closes the connection, and adds the
/// inactivity timeout. TLS runs over the [`Guarded`] stream, so the slot covers the handshake.
#[derive(Debug, Clone)]
pub struct LimitAcceptor {
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl LimitAcceptor {
    pub fn new(limits: &Limits) -> LimitAcceptor {
        LimitAcceptor {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            idle_timeout: limits.idle_timeout,
        }
    }
}

impl<S> Accept<TcpStream, S> for LimitAcceptor {
    type Stream = Guarded<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Guarded<TcpStream>, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        ready(match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok((Guarded::new(stream, self.idle_timeout, slot), service)),
            // Dropping the stream closes it: a client at the cap fails fast and may retry.
            Err(_) => {
                tracing::debug!("connection limit reached; closing a new connection");
                Err(io::Error::other("connection limit reached"))
            }
        })
    }
}

/// A stream that holds a connection slot until it is dropped, and fails with `TimedOut` when
/// neither direction makes progress for the idle timeout.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    idle_timeout: Duration,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl<S> Guarded<S> {
    fn new(inner: S, idle_timeout: Duration, slot: OwnedSemaphorePermit) -> Guarded<S> {
        let now = Instant::now();
        Guarded {
            inner,
            idle_timeout,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            _slot: slot,
        }
    }

    /// Called when the inner stream is not ready: errors once the connection has been idle
    /// too long, otherwise arranges to be woken when it will have been.
    fn poll_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer is reset lazily: progress only moves `last_progress`.
            let due = self.last_progress + self.idle_timeout;
            if Instant::now() >= due {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle",
                )));
            }
            self.timer.as_mut().reset(due);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.poll_idle(cx),
            ready => {
                if buf.filled().len() > before {
                    this.last_progress = Instant::now();
                }
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.poll_idle(cx),
            ready => {
                if matches!(ready, Poll::Ready(Ok(n)) if n > 0) {
                    this.last_progress = Instant::now();
                }
                ready
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.poll_idle(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.poll_idle(cx),
            ready => {
                if matches!(ready, Poll::Ready(Ok(n)) if n > 0) {
                    this.last_progress = Instant::now();
                }
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
