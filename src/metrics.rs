//! Prometheus metrics with typed labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
/// Labels of the per-request metrics: all but the kind are static, so counting a request
/// allocates nothing once its label set exists.
pub struct RequestLabels {
    pub kind: String,
    pub operation: &'static str,
    pub decision: &'static str,
    /// `true` for dry runs (`kubectl --dry-run=server`, Argo CD's server-side diff), so that
    /// they never inflate what was admitted or denied.
    pub dry_run: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub rule: &'static str,
    pub action: &'static str,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    pub namespace: String,
    pub rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UndecidedLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `applied` or `rejected`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GeneratedLabels {
    /// `created`, `updated`, `foreign` or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub name: String,
    pub version: String,
}

/// The registry every component registers its metrics into, and the names they took.
pub struct MetricsRegistry {
    registry: Registry,
    /// Every metric's full name (`raygate_…`, without `_total`), for tests and docs.
    names: Vec<String>,
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        MetricsRegistry {
            registry: Registry::with_prefix("raygate"),
            names: Vec::new(),
        }
    }
}

impl MetricsRegistry {
    /// Registers `metric` as `raygate_<name>`.
    pub fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.names.push(format!("raygate_{name}"));
        self.registry.register(name, help, metric);
    }

    /// The full names of every metric registered (counters without `_total`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Buckets from 25 µs: raygate decides in microseconds, far below the API server's 5 ms floor.
const DURATION_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.5, 1.0,
];

/// What the admission listener counts. Clones share the registered values.
#[derive(Clone)]
pub struct AdmissionMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Histogram,
    pub violations: Family<ViolationLabels, Counter>,
    pub bad_requests: Counter,
    pub undecided: Family<UndecidedLabels, Counter>,
}

impl AdmissionMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> AdmissionMetrics {
        let metrics = AdmissionMetrics {
            requests: Family::default(),
            duration: Histogram::new(DURATION_BUCKETS),
            violations: Family::default(),
            bad_requests: Counter::default(),
            undecided: Family::default(),
        };
        registry.register(
            "admission_requests",
            "Admission reviews answered, by object kind, operation and decision",
            metrics.requests.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time from a complete request body to the encoded response",
            metrics.duration.clone(),
        );
        registry.register(
            "policy_violations",
            "Violations found in admitted or denied objects, by rule and action",
            metrics.violations.clone(),
        );
        registry.register(
            "bad_requests",
            "Bodies that were not an AdmissionReview",
            metrics.bad_requests.clone(),
        );
        registry.register(
            "undecided",
            "Reviews answered without a decision (deadline exceeded or evaluation failed)",
            metrics.undecided.clone(),
        );
        metrics
    }
}

/// What the certificate reloader exports.
#[derive(Clone)]
pub struct CertificateMetrics {
    pub expiry: Gauge,
}

impl CertificateMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> CertificateMetrics {
        let metrics = CertificateMetrics {
            expiry: Gauge::default(),
        };
        registry.register(
            "tls_cert_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix time)",
            metrics.expiry.clone(),
        );
        metrics
    }
}

/// What the background audit exports.
#[derive(Clone)]
pub struct AuditMetrics {
    pub violations: Family<AuditLabels, Gauge>,
    pub scans: Counter,
    pub failures: Counter,
}

impl AuditMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> AuditMetrics {
        let metrics = AuditMetrics {
            violations: Family::default(),
            scans: Counter::default(),
            failures: Counter::default(),
        };
        registry.register(
            "audit_violations",
            "Violations found by the last background audit, by namespace and rule",
            metrics.violations.clone(),
        );
        registry.register(
            "audit_scans",
            "Background audit scans completed",
            metrics.scans.clone(),
        );
        registry.register(
            "audit_failures",
            "Background audit scans that could not list the cluster",
            metrics.failures.clone(),
        );
        metrics
    }
}

/// What the cluster watches export.
#[derive(Clone)]
pub struct WatchMetrics {
    pub cache_synced: Family<ResourceLabels, Gauge>,
    pub watch_errors: Family<ResourceLabels, Counter>,
}

impl WatchMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> WatchMetrics {
        let metrics = WatchMetrics {
            cache_synced: Family::default(),
            watch_errors: Family::default(),
        };
        registry.register(
            "cache_synced",
            "1 once the watch cache of a resource has listed it, 0 while it is unavailable",
            metrics.cache_synced.clone(),
        );
        registry.register(
            "watch_errors",
            "Errors of the watch behind a cache, by resource",
            metrics.watch_errors.clone(),
        );
        metrics
    }
}

/// What the policy reloader exports.
#[derive(Clone)]
pub struct PolicyMetrics {
    pub reloads: Family<ReloadLabels, Counter>,
    pub info: Family<PolicyLabels, Gauge>,
}

impl PolicyMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> PolicyMetrics {
        let metrics = PolicyMetrics {
            reloads: Family::default(),
            info: Family::default(),
        };
        registry.register(
            "policy_reloads",
            "Changes of the --policy file, applied or rejected (the old policy keeps serving)",
            metrics.reloads.clone(),
        );
        registry.register(
            "policy_info",
            "1 for the policy in force, by name and version (a hash of its effective content)",
            metrics.info.clone(),
        );
        metrics
    }
}

/// What the NetworkPolicy controller exports.
#[derive(Clone)]
pub struct NetworkPolicyControllerMetrics {
    pub generated: Family<GeneratedLabels, Counter>,
    pub passes: Counter,
}

impl NetworkPolicyControllerMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> NetworkPolicyControllerMetrics {
        let metrics = NetworkPolicyControllerMetrics {
            generated: Family::default(),
            passes: Counter::default(),
        };
        registry.register(
            "generated_network_policies",
            "NetworkPolicies the controller wrote for Ray objects (created, updated), left alone because someone else owns the name (foreign), or failed to write",
            metrics.generated.clone(),
        );
        registry.register(
            "network_policy_controller_passes",
            "Passes of the NetworkPolicy controller over every Ray object",
            metrics.passes.clone(),
        );
        metrics
    }
}
