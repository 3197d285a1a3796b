//! The webhook server, as components that each return a handle: the certificate reloader,
//! the policy reloader, the Lease election, the background audit loop, the NetworkPolicy
//! controller, the metrics endpoint and the admission listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::ClusterState;
use crate::cluster::ClusterCache;
use crate::engine::Engine;
use crate::metrics::{
    AdmissionMetrics, AuditMetrics, CertificateMetrics, MetricsRegistry,
    NetworkPolicyControllerMetrics, PolicyMetrics, WatchMetrics,
};

mod audit_loop;
mod certificates;
mod election;
mod error;
mod file_watch;
mod listener;
mod live_engine;
mod metrics_endpoint;
mod network_policy_controller;
mod policy_reload;
mod webhook;

use audit_loop::AuditLoop;
use certificates::{CertificateReloader, TlsFiles};
use election::Election;
use listener::AdmissionListener;
use metrics_endpoint::MetricsEndpoint;
use network_policy_controller::NetworkPolicyController;
use policy_reload::PolicyReloader;

pub use crate::connections::Limits;
pub use error::Error;
pub use live_engine::LiveEngine;
pub use network_policy_controller::Settings as NetworkPolicyGeneration;
pub use policy_reload::PolicyFile;
pub use webhook::{AdmissionState, MAX_BODY_BYTES, Readiness, app};

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
    /// Write the NetworkPolicy each uncovered Ray object lacks (`--generate-network-policies`).
    pub network_policies: Option<NetworkPolicyGeneration>,
}

/// Every component's metrics. All are registered whether or not their component runs, so
/// that each family is exported (at zero) either way.
struct ComponentMetrics {
    admission: AdmissionMetrics,
    certificate: CertificateMetrics,
    audit: AuditMetrics,
    watch: WatchMetrics,
    policy: PolicyMetrics,
    network_policies: NetworkPolicyControllerMetrics,
}

impl ComponentMetrics {
    fn register(registry: &mut MetricsRegistry) -> ComponentMetrics {
        ComponentMetrics {
            admission: AdmissionMetrics::register(registry),
            certificate: CertificateMetrics::register(registry),
            audit: AuditMetrics::register(registry),
            watch: WatchMetrics::register(registry),
            policy: PolicyMetrics::register(registry),
            network_policies: NetworkPolicyControllerMetrics::register(registry),
        }
    }
}

/// A started server: a handle on each component.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    readiness: Readiness,
    registry: Arc<MetricsRegistry>,
    listener: AdmissionListener,
    election: Option<Election>,
    audit: Option<AuditLoop>,
    network_policy_controller: Option<NetworkPolicyController>,
    _certificates: CertificateReloader,
    _policy: PolicyReloader,
    _metrics_endpoint: Option<MetricsEndpoint>,
}

impl Running {
    /// Fails the readiness probe from now on, while still serving: the endpoints drop this
    /// replica before it stops listening.
    pub fn set_unready(&self) {
        self.readiness.set_unready();
    }

    /// Stops taking new connections, marks the server unready, and lets requests in flight
    /// finish within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        self.readiness.set_unready();
        if let Some(audit) = &self.audit {
            audit.stop();
        }
        if let Some(controller) = &self.network_policy_controller {
            controller.stop();
        }
        if let Some(election) = &self.election {
            election.stop();
        }
        self.listener.shutdown(grace);
    }

    /// Whether the server task still runs (it ends only on shutdown or a listener error).
    pub fn is_serving(&self) -> bool {
        self.listener.is_serving()
    }

    /// The full names of every metric raygate exports (counters without `_total`).
    pub fn metric_names(&self) -> &[String] {
        self.registry.names()
    }

    pub async fn wait(self) -> std::io::Result<()> {
        let served = self.listener.wait().await;
        // Let the Lease be released so that another replica takes over at once.
        if let Some(election) = self.election {
            election.released().await;
        }
        served
    }
}

/// The cluster view admission reads, started here when it is the API server's.
fn cluster_view(
    access: Option<&ClusterAccess>,
    engine: &Engine,
    metrics: &WatchMetrics,
) -> Option<Arc<dyn ClusterState>> {
    let stale_after =
        Duration::from_secs(engine.policy().spec().network_policy.stale_after_seconds);
    match access? {
        ClusterAccess::Api(access) => Some(Arc::new(ClusterCache::start(
            access.client.clone(),
            metrics,
            stale_after,
            access.cache_sync_timeout,
        ))),
        ClusterAccess::View(view) => Some(view.clone()),
    }
}

/// The leader-only components, and the one election they share: each runs only when there
/// is an API server and it was asked for.
#[derive(Default)]
struct LeaderComponents {
    election: Option<Election>,
    audit: Option<AuditLoop>,
    network_policy_controller: Option<NetworkPolicyController>,
}

fn leader_components(
    access: Option<&ClusterAccess>,
    engine: &LiveEngine,
    audit_metrics: AuditMetrics,
    controller_metrics: NetworkPolicyControllerMetrics,
    watch_metrics: &WatchMetrics,
) -> LeaderComponents {
    let Some(ClusterAccess::Api(access)) = access else {
        return LeaderComponents::default();
    };
    if access.audit_interval.is_none() && access.network_policies.is_none() {
        return LeaderComponents::default();
    }
    let election = Election::start(access.client.clone());
    let audit = access.audit_interval.map(|interval| {
        AuditLoop::start(
            access.client.clone(),
            interval,
            access.write_reports,
            engine.clone(),
            audit_metrics,
            election.leadership(),
        )
    });
    let network_policy_controller = access.network_policies.clone().map(|settings| {
        NetworkPolicyController::start(
            access.client.clone(),
            settings,
            engine.clone(),
            election.leadership(),
            controller_metrics,
            watch_metrics,
        )
    });
    LeaderComponents {
        election: Some(election),
        audit,
        network_policy_controller,
    }
}

pub async fn start(config: ServeConfig) -> Result<Running, Error> {
    let mut registry = MetricsRegistry::default();
    let metrics = ComponentMetrics::register(&mut registry);
    let tls_files = TlsFiles {
        cert: config.tls_cert,
        key: config.tls_key,
        client_ca: config.client_ca,
    };
    let certificates = CertificateReloader::start(tls_files, metrics.certificate)?;
    let cluster = cluster_view(config.cluster.as_ref(), &config.engine, &metrics.watch);
    let engine = LiveEngine::new(config.engine);
    let leaders = leader_components(
        config.cluster.as_ref(),
        &engine,
        metrics.audit,
        metrics.network_policies,
        &metrics.watch,
    );
    let policy = PolicyReloader::start(config.policy_file, &engine, metrics.policy)?;
    let registry = Arc::new(registry);
    let metrics_endpoint = match config.metrics_listen {
        Some(listen) => Some(MetricsEndpoint::start(listen, registry.clone()).await?),
        None => None,
    };
    let readiness = Readiness::default();
    let routes = app(Arc::new(AdmissionState {
        engine,
        metrics: metrics.admission,
        readiness: readiness.clone(),
        cluster,
    }));
    let listener = AdmissionListener::start(
        config.listen,
        &config.limits,
        certificates.rustls_config(),
        routes,
    )?;
    let (addr, metrics_addr) = (
        listener.addr,
        metrics_endpoint.as_ref().and_then(|m| m.addr),
    );
    match metrics_addr {
        Some(metrics) => tracing::info!(%addr, %metrics, "raygate is serving"),
        None => tracing::info!(%addr, metrics = "off", "raygate is serving"),
    }
    Ok(Running {
        addr,
        metrics_addr,
        readiness,
        registry,
        listener,
        election: leaders.election,
        audit: leaders.audit,
        network_policy_controller: leaders.network_policy_controller,
        _certificates: certificates,
        _policy: policy,
        _metrics_endpoint: metrics_endpoint,
    })
}
