//! Metrics, and the liveness probe: on their own plain listener, so that a probe never takes
//! one of the admission listener's capped connections.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::routing::get;

use super::error::Error;
use crate::metrics::MetricsRegistry;

/// A running metrics listener.
pub struct MetricsEndpoint {
    pub addr: Option<SocketAddr>,
}

impl MetricsEndpoint {
    pub async fn start(
        listen: SocketAddr,
        registry: Arc<MetricsRegistry>,
    ) -> Result<MetricsEndpoint, Error> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| Error::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().ok();
        let app = routes(registry);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "metrics listener stopped");
            }
        });
        Ok(MetricsEndpoint { addr })
    }
}

fn routes(registry: Arc<MetricsRegistry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(encode))
        .with_state(registry)
}

async fn encode(State(registry): State<Arc<MetricsRegistry>>) -> impl axum::response::IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        registry.encode(),
    )
}
