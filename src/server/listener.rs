//! The admission listener: HTTPS only, with the bounds of [`Limits`] on every client.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use tokio::task::JoinHandle;
use tower_http::timeout::TimeoutLayer;

use super::error::Error;
use crate::connections::{LimitAcceptor, Limits};

/// A running admission listener.
pub struct AdmissionListener {
    pub addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdmissionListener {
    /// Binds `listen` now (so that the address is known on return) and serves `routes` on it.
    pub fn start(
        listen: SocketAddr,
        limits: &Limits,
        tls: RustlsConfig,
        routes: Router,
    ) -> Result<AdmissionListener, Error> {
        let listen_error = |source| Error::Listen {
            addr: listen,
            source,
        };
        let listener = std::net::TcpListener::bind(listen).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        let addr = listener.local_addr().map_err(listen_error)?;
        let handle = Handle::new();
        let mut server = axum_server::from_tcp(listener)
            .map_err(listen_error)?
            .acceptor(
                RustlsAcceptor::new(tls)
                    .handshake_timeout(limits.handshake_timeout)
                    .acceptor(LimitAcceptor::new(limits)),
            )
            .handle(handle.clone())
            .first_request_timeout(limits.header_timeout);
        server
            .http_builder()
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        server
            .http_builder()
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256);
        // The one request timeout: the time to send a body and be answered. The policy's own,
        // shorter deadline is the handlers'.
        let app = routes.layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
        let task = tokio::spawn(server.serve(app.into_make_service()));
        Ok(AdmissionListener { addr, handle, task })
    }

    /// Stops taking new connections and lets requests in flight finish within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
    }

    /// Whether the server task still runs (it ends only on shutdown or a listener error).
    pub fn is_serving(&self) -> bool {
        !self.task.is_finished()
    }

    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}
