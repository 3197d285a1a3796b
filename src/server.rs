//! The webhook server: HTTPS only, thin handlers over [`crate::admission`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use tower_http::timeout::TimeoutLayer;

use crate::admission::{self, ClusterState, Endpoint, NoCluster, Outcome};
use crate::cluster::ClusterCache;
use crate::connections::LimitAcceptor;
use crate::engine::Engine;
use crate::metrics::{Metrics, RequestLabels, UndecidedLabels, ViolationLabels};
use crate::metrics::{PolicyLabels, ReloadLabels};
use crate::tls;

pub use crate::connections::Limits;

/// The API server's own body limit is 3 MiB; 8 MiB leaves room and still bounds memory.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("cannot watch {dir} for certificate changes: {source}")]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct ServeConfig {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub engine: Engine,
    /// The policy file `engine` was loaded from: watched, and swapped in when it changes
    /// (a ConfigMap volume swaps its `..data` symlink). `None` for the built-in policy.
    pub policy_file: Option<PolicyFile>,
    /// Cluster access for the NetworkPolicy and RayCluster caches; without it coverage is
    /// reported as unverified.
    pub cluster: Option<ClusterAccess>,
    /// Timeouts and the connection cap.
    pub limits: Limits,
}

pub struct PolicyFile {
    pub path: PathBuf,
    /// `--mode`, which overrides the file's own mode on every reload too.
    pub mode: Option<crate::policy::Mode>,
}

pub enum ClusterAccess {
    /// Watch the API server with this client.
    Api(ApiAccess),
    /// A view of the cluster kept by whoever embeds the server.
    View(Arc<dyn ClusterState>),
}

pub struct ApiAccess {
    pub client: kube::Client,
    pub cache_sync_timeout: Duration,
    /// Audit the whole cluster this often, and export `raygate_audit_violations`.
    pub audit_interval: Option<Duration>,
    pub write_reports: bool,
}

pub struct AppState {
    /// The policy in force. A request takes it once and finishes on it, so a reload never
    /// changes a decision half-way.
    pub engine: arc_swap::ArcSwap<Engine>,
    pub metrics: Metrics,
    /// False once shutting down.
    pub ready: AtomicBool,
    pub cluster: Option<Arc<dyn ClusterState>>,
    /// Whether this replica runs the background audit (it holds the audit Lease).
    pub audit_leadership: crate::leader::Leadership,
    /// Becomes true on shutdown (the audit Lease is then released).
    pub stopping: tokio::sync::watch::Sender<bool>,
}

/// The webhook's routes, without a socket: tests may drive it in-process.
pub fn app(state: Arc<AppState>) -> Router {
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
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
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

/// Metrics, and the liveness probe: on their own plain listener, so that a probe never takes
/// one of the admission listener's capped connections.
fn metrics_app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(state): State<Arc<AppState>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    state.metrics.encode(),
                )
            }),
        )
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.ready.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if state.cluster.as_ref().is_some_and(|c| !c.ready()) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the NetworkPolicy cache to sync",
        )
            .into_response()
    } else {
        let engine = state.engine.load();
        let policy = engine.policy();
        format!("ok: policy {} {}", policy.name(), policy.version()).into_response()
    }
}

async fn validate(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(state, Endpoint::Validate, body).await
}

async fn mutate(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    answer(state, Endpoint::Mutate, body).await
}

type Reviewed = Result<(Vec<u8>, Outcome), admission::Error>;

/// Decides within the policy's deadline. Without cluster state evaluation is bounded CPU
/// on a bounded body and runs inline; with it, a read of the cluster view could stall, so
/// evaluation runs on the blocking pool under a timeout.
async fn decide_in_time(state: &Arc<AppState>, endpoint: Endpoint, body: &Bytes) -> Reviewed {
    let engine = state.engine.load_full();
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
fn undecided(state: &AppState, endpoint: Endpoint, body: &[u8], reason: &str) -> Reviewed {
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
    let engine = state.engine.load();
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

async fn answer(state: Arc<AppState>, endpoint: Endpoint, body: Bytes) -> Response {
    let started = Instant::now();
    match decide_in_time(&state, endpoint, &body).await {
        Ok((bytes, outcome)) => {
            state
                .metrics
                .duration
                .observe(started.elapsed().as_secs_f64());
            record(&state, endpoint, &outcome);
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

fn record(state: &AppState, endpoint: Endpoint, outcome: &Outcome) {
    state
        .metrics
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
            state
                .metrics
                .violations
                .get_or_create(&ViolationLabels {
                    rule: v.rule.as_str(),
                    action: v.action.as_str(),
                    dry_run: outcome.dry_run,
                })
                .inc();
        }
    }
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

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    handle: Handle<SocketAddr>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _watcher: notify::RecommendedWatcher,
    _policy_watcher: Option<notify::RecommendedWatcher>,
    elector: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops taking new connections, marks the server unready, and lets requests in flight
    /// finish within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.state.ready.store(false, Ordering::Relaxed);
        self.state.stopping.send_replace(true);
        self.handle.graceful_shutdown(Some(grace));
    }

    /// Whether the server task still runs (it ends only on shutdown or a listener error).
    pub fn is_serving(&self) -> bool {
        !self.server.is_finished()
    }

    pub async fn wait(self) -> std::io::Result<()> {
        let served = self
            .server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        // Let the audit Lease be released so that another replica takes over at once.
        if let Some(elector) = self.elector {
            let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
        }
        served
    }
}

fn set_policy_info(metrics: &Metrics, engine: &Engine) {
    metrics.policy_info.clear();
    let policy = engine.policy();
    metrics
        .policy_info
        .get_or_create(&PolicyLabels {
            name: policy.name().to_owned(),
            version: policy.version(),
        })
        .set(1);
}

/// Watches the policy file's directory and swaps in each valid new policy. An invalid one is
/// logged with its file and field, counted, and the policy in force keeps serving.
fn watch_policy(
    file: PolicyFile,
    state: Arc<AppState>,
) -> Result<notify::RecommendedWatcher, Error> {
    let dir = file
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let reload = move || {
        let count = |result: &str| {
            state
                .metrics
                .policy_reloads
                .get_or_create(&ReloadLabels {
                    result: result.to_owned(),
                })
                .inc();
        };
        match crate::policy::Policy::load(&file.path) {
            Ok(policy) => {
                let policy = match file.mode {
                    Some(mode) => policy.with_mode(mode),
                    None => policy,
                };
                let version = policy.version();
                if version == state.engine.load().policy().version() {
                    return;
                }
                let engine = Engine::new(policy);
                set_policy_info(&state.metrics, &engine);
                state.engine.store(Arc::new(engine));
                count("applied");
                tracing::info!(file = %file.path.display(), %version, "applied the new policy");
            }
            Err(error) => {
                count("rejected");
                tracing::error!(%error, "rejected the changed policy; the policy in force keeps serving");
            }
        }
    };
    tls::watch(dir.clone(), reload).map_err(|source| Error::Watch { dir, source })
}

pub async fn start(config: ServeConfig) -> Result<Running, Error> {
    let loaded = tls::load(
        &config.tls_cert,
        &config.tls_key,
        config.client_ca.as_deref(),
    )?;
    let metrics = Metrics::default();
    let stale_after = Duration::from_secs(
        config
            .engine
            .policy()
            .spec()
            .network_policy
            .stale_after_seconds,
    );
    let cluster: Option<Arc<dyn ClusterState>> = match &config.cluster {
        Some(ClusterAccess::Api(access)) => Some(Arc::new(ClusterCache::start(
            access.client.clone(),
            &metrics,
            stale_after,
            access.cache_sync_timeout,
        ))),
        Some(ClusterAccess::View(view)) => Some(view.clone()),
        None => None,
    };
    set_policy_info(&metrics, &config.engine);
    let state = Arc::new(AppState {
        engine: arc_swap::ArcSwap::from_pointee(config.engine),
        metrics,
        ready: AtomicBool::new(true),
        cluster,
        audit_leadership: Default::default(),
        stopping: tokio::sync::watch::channel(false).0,
    });
    let mut elector = None;
    if let Some(ClusterAccess::Api(access)) = &config.cluster
        && let Some(interval) = access.audit_interval
    {
        // One replica audits and writes reports; admission never depends on the Lease.
        let namespace = std::env::var("POD_NAMESPACE")
            .unwrap_or_else(|_| access.client.default_namespace().to_owned());
        let lease = crate::leader::LeaseConfig::new(namespace, crate::leader::identity());
        let mut stopping = state.stopping.subscribe();
        elector = Some(tokio::spawn(crate::leader::run(
            access.client.clone(),
            lease,
            state.audit_leadership.clone(),
            async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            },
        )));
        tokio::spawn(crate::audit::run_periodically(
            access.client.clone(),
            state.clone(),
            interval,
            access.write_reports,
        ));
    }
    state.metrics.cert_expiry.set(loaded.not_after);
    let rustls_config = RustlsConfig::from_config(loaded.config);

    let watcher = {
        let dir = config
            .tls_cert
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let (cert, key, client_ca) = (
            config.tls_cert.clone(),
            config.tls_key.clone(),
            config.client_ca.clone(),
        );
        let reload_config = rustls_config.clone();
        let reload_state = state.clone();
        tls::watch(dir.clone(), move || {
            match tls::load(&cert, &key, client_ca.as_deref()) {
                Ok(loaded) => {
                    reload_config.reload_from_config(loaded.config);
                    reload_state.metrics.cert_expiry.set(loaded.not_after);
                    tracing::info!(cert = %cert.display(), "reloaded the serving certificate");
                }
                // Keep serving the old certificate; a half-written pair is retried on the next event.
                Err(error) => tracing::warn!(%error, "certificate change not loaded"),
            }
        })
        .map_err(|source| Error::Watch { dir, source })?
    };
    let policy_watcher = match config.policy_file {
        Some(file) => Some(watch_policy(file, state.clone())?),
        None => None,
    };

    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })?;
            let bound = listener.local_addr().ok();
            let app = metrics_app(state.clone());
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, app).await {
                    tracing::error!(%error, "metrics listener stopped");
                }
            });
            bound
        }
        None => None,
    };

    let listener = std::net::TcpListener::bind(config.listen).map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;
    let limits = config.limits;
    let handle = Handle::new();
    let mut server = axum_server::from_tcp(listener)
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?
        .acceptor(
            RustlsAcceptor::new(rustls_config)
                .handshake_timeout(limits.handshake_timeout)
                .acceptor(LimitAcceptor::new(&limits)),
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
    // Outside the routes' own timeout, which has the default length.
    let app = app(state.clone()).layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let task = tokio::spawn(server.serve(app.into_make_service()));
    match metrics_addr {
        Some(metrics) => tracing::info!(%addr, %metrics, "raygate is serving"),
        None => tracing::info!(%addr, metrics = "off", "raygate is serving"),
    }
    Ok(Running {
        addr,
        metrics_addr,
        state,
        handle,
        server: task,
        _watcher: watcher,
        _policy_watcher: policy_watcher,
        elector,
    })
}
