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
pub struct PolicyLabels {
    pub name: String,
    pub version: String,
}

pub struct Metrics {
    registry: Registry,
    /// Every metric's full name (`raygate_…`, without `_total`), for tests and docs.
    names: Vec<String>,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Histogram,
    pub violations: Family<ViolationLabels, Counter>,
    pub cert_expiry: Gauge,
    pub bad_requests: Counter,
    pub audit_violations: Family<AuditLabels, Gauge>,
    pub audit_scans: Counter,
    pub audit_failures: Counter,
    pub cache_synced: Family<ResourceLabels, Gauge>,
    pub watch_errors: Family<ResourceLabels, Counter>,
    pub undecided: Family<UndecidedLabels, Counter>,
    pub policy_reloads: Family<ReloadLabels, Counter>,
    pub policy_info: Family<PolicyLabels, Gauge>,
}

/// Buckets from 25 µs: raygate decides in microseconds, far below the API server's 5 ms floor.
const DURATION_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.5, 1.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("raygate");
        let mut names = Vec::new();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Histogram::new(DURATION_BUCKETS);
        let violations = Family::<ViolationLabels, Counter>::default();
        let cert_expiry = Gauge::default();
        let bad_requests = Counter::default();
        register(
            &mut registry,
            &mut names,
            "admission_requests",
            "Admission reviews answered, by object kind, operation and decision",
            requests.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "admission_duration_seconds",
            "Time from a complete request body to the encoded response",
            duration.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "policy_violations",
            "Violations found in admitted or denied objects, by rule and action",
            violations.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "tls_cert_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix time)",
            cert_expiry.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "bad_requests",
            "Bodies that were not an AdmissionReview",
            bad_requests.clone(),
        );
        let audit_violations = Family::<AuditLabels, Gauge>::default();
        let audit_scans = Counter::default();
        let audit_failures = Counter::default();
        let cache_synced = Family::<ResourceLabels, Gauge>::default();
        let watch_errors = Family::<ResourceLabels, Counter>::default();
        register(
            &mut registry,
            &mut names,
            "audit_violations",
            "Violations found by the last background audit, by namespace and rule",
            audit_violations.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "audit_scans",
            "Background audit scans completed",
            audit_scans.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "audit_failures",
            "Background audit scans that could not list the cluster",
            audit_failures.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "cache_synced",
            "1 once the watch cache of a resource has listed it, 0 while it is unavailable",
            cache_synced.clone(),
        );
        register(
            &mut registry,
            &mut names,
            "watch_errors",
            "Errors of the watch behind a cache, by resource",
            watch_errors.clone(),
        );
        let undecided = Family::<UndecidedLabels, Counter>::default();
        register(
            &mut registry,
            &mut names,
            "undecided",
            "Reviews answered without a decision (deadline exceeded or evaluation failed)",
            undecided.clone(),
        );
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        register(
            &mut registry,
            &mut names,
            "policy_reloads",
            "Changes of the --policy file, applied or rejected (the old policy keeps serving)",
            policy_reloads.clone(),
        );
        let policy_info = Family::<PolicyLabels, Gauge>::default();
        register(
            &mut registry,
            &mut names,
            "policy_info",
            "1 for the policy in force, by name and version (a hash of its effective content)",
            policy_info.clone(),
        );
        Metrics {
            registry,
            names,
            undecided,
            policy_reloads,
            policy_info,
            audit_violations,
            audit_scans,
            audit_failures,
            cache_synced,
            watch_errors,
            requests,
            duration,
            violations,
            cert_expiry,
            bad_requests,
        }
    }
}

fn register(
    registry: &mut Registry,
    names: &mut Vec<String>,
    name: &str,
    help: &str,
    metric: impl prometheus_client::registry::Metric,
) {
    names.push(format!("raygate_{name}"));
    registry.register(name, help, metric);
}

/// The metrics a watch task updates (handles share the registry's values).
pub struct WatchMetrics {
    pub cache_synced: Family<ResourceLabels, Gauge>,
    pub watch_errors: Family<ResourceLabels, Counter>,
}

impl Metrics {
    pub fn watch_metrics(&self) -> WatchMetrics {
        WatchMetrics {
            cache_synced: self.cache_synced.clone(),
            watch_errors: self.watch_errors.clone(),
        }
    }

    /// The full names of every metric raygate exports (counters without `_total`).
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
