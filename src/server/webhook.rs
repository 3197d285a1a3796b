//! The admission routes: thin handlers over [`crate::admission`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::live_engine::LiveEngine;
use crate::admission::{self, ClusterState, Endpoint, NoCluster, Outcome};
use crate::metrics::{AdmissionMetrics, RequestLabels, UndecidedLabels, ViolationLabels};

/// The API server's own body limit is 3 MiB; 8 MiB leaves room and still bounds memory.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Whether this replica takes admission traffic; false once shutting down, so that the
/// endpoints drop it before it stops listening. Clones share it.
#[derive(Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness(Arc::new(AtomicBool::new(true)))
    }
}

impl Readiness {
    pub fn set_unready(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the admission handlers read.
pub struct AdmissionState {
    pub engine: LiveEngine,
    pub metrics: AdmissionMetrics,
    pub readiness: Readiness,
    pub cluster: Option<Arc<dyn ClusterState>>,
}

/// The webhook's routes, without a socket: tests may drive it in-process. The request
/// timeout is the listener's (see [`crate::connections::Limits`]).
pub fn app(state: Arc<AdmissionState>) -> Router {
    Router::new()
        .route("/validate", post(validate).fallback(method_not_allowed))
        .route("/mutate", post(mutate).fallback(method_not_allowed))
        .route(
            "/healthz",
            get(|| async { "ok" }).fallback(method_not_allowed),
        )
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

// Both read the whole request body before answering: over HTTP/2 an answer sent while the
// client is still uploading ends in a stream reset, which curl and others report as a framing
// error instead of the status.
async fn not_found(_body: axum::body::Bytes) -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

async fn method_not_allowed(_body: axum::body::Bytes) -> (StatusCode, &'static str) {
    (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
}

async fn readyz(State(state): State<Arc<AdmissionState>>) -> Response {
    if !state.readiness.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if state.cluster.as_ref().is_some_and(|c| !c.ready()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the NetworkPolicy cache to sync",
        )
            .into_response()
    } else {
        let engine = state.engine.current();
        let policy = engine.policy();
        format!("ok: policy {} {}", policy.name(), policy.version()).into_response()
    }
}

async fn validate(State(state): State<Arc<AdmissionState>>, body: Bytes) -> Response {
    answer(state, Endpoint::Validate, body).await
}

async fn mutate(State(state): State<Arc<AdmissionState>>, body: Bytes) -> Response {
    answer(state, Endpoint::Mutate, body).await
}

type Reviewed = Result<(Vec<u8>, Outcome), admission::Error>;

/// Decides within the policy's deadline. Without cluster state evaluation is bounded CPU
/// on a bounded body and runs inline; with it, a read of the cluster view could stall, so
/// evaluation runs on the blocking pool under a timeout.
async fn decide_in_time(state: &AdmissionState, endpoint: Endpoint, body: &Bytes) -> Reviewed {
    let engine = state.engine.current();
    let budget = Duration::from_millis(engine.policy().spec().deadline.milliseconds);
    // Evaluation itself stops here (and denies); the timeout below is for a stalled read.
    let deadline = Instant::now() + budget;
    let Some(cluster) = state.cluster.clone() else {
        let inline = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            admission::review_live_until(&engine, &NoCluster, endpoint, body, deadline)
        }));
        return inline.unwrap_or_else(|_| undecided(state, endpoint, body, "evaluation failed"));
    };
    let task_body = body.clone();
    let task = tokio::task::spawn_blocking(move || {
        admission::review_live_until(&engine, &*cluster, endpoint, &task_body, deadline)
    });
    match tokio::time::timeout(budget + Duration::from_millis(50), task).await {
        Ok(Ok(reviewed)) => reviewed,
        Ok(Err(_panicked)) => undecided(state, endpoint, body, "evaluation failed"),
        Err(_elapsed) => undecided(
            state,
            endpoint,
            body,
            &format!("no decision within {} ms", budget.as_millis()),
        ),
    }
}

/// Answers without a decision, as the policy's per-family failure actions say (deny unless
/// every family is listed as allow).
fn undecided(state: &AdmissionState, endpoint: Endpoint, body: &[u8], reason: &str) -> Reviewed {
    state
        .metrics
        .undecided
        .get_or_create(&UndecidedLabels {
            endpoint: endpoint.as_str().to_owned(),
        })
        .inc();
    tracing::error!(
        endpoint = endpoint.as_str(),
        reason,
        "answered without a decision"
    );
    let engine = state.engine.current();
    let closed: Vec<&str> = engine
        .policy()
        .spec()
        .deadline
        .failing_closed()
        .into_iter()
        .map(|family| family.as_str())
        .collect();
    let families = closed.join(", ");
    admission::undecided(
        endpoint,
        body,
        reason,
        (!closed.is_empty()).then_some(families.as_str()),
    )
}

async fn answer(state: Arc<AdmissionState>, endpoint: Endpoint, body: Bytes) -> Response {
    let started = Instant::now();
    match decide_in_time(&state, endpoint, &body).await {
        Ok((bytes, outcome)) => {
            state
                .metrics
                .duration
                .observe(started.elapsed().as_secs_f64());
            count(&state.metrics, endpoint, &outcome);
            log(endpoint, &outcome);
            ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(error) => {
            state.metrics.bad_requests.inc();
            tracing::warn!(endpoint = endpoint.as_str(), %error, "rejected a malformed request");
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({"error": error.to_string()}).to_string(),
            )
                .into_response()
        }
    }
}

fn count(metrics: &AdmissionMetrics, endpoint: Endpoint, outcome: &Outcome) {
    metrics
        .requests
        .get_or_create(&RequestLabels {
            kind: outcome.kind.clone(),
            operation: outcome.operation,
            decision: outcome.verdict.as_str(),
            dry_run: outcome.dry_run,
        })
        .inc();
    // Violations are counted once per review, on the validating call.
    if endpoint == Endpoint::Validate {
        for v in &outcome.violations {
            metrics
                .violations
                .get_or_create(&ViolationLabels {
                    rule: v.rule.as_str(),
                    action: v.action.as_str(),
                    dry_run: outcome.dry_run,
                })
                .inc();
        }
    }
}

fn log(endpoint: Endpoint, outcome: &Outcome) {
    let span = tracing::info_span!(
        "admission",
        uid = %outcome.uid,
        kind = %outcome.kind,
        namespace = %outcome.namespace,
        name = %outcome.name,
        operation = outcome.operation,
        decision = outcome.verdict.as_str(),
        endpoint = endpoint.as_str(),
        dry_run = outcome.dry_run,
    );
    let _entered = span.enter();
    if outcome.violations.is_empty() {
        tracing::debug!("reviewed");
    } else if tracing::enabled!(tracing::Level::INFO) {
        let rules: Vec<&str> = outcome.violations.iter().map(|v| v.rule.as_str()).collect();
        tracing::info!(violations = rules.len(), rules = ?rules, "reviewed");
    }
}
