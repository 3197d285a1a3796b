//! Prometheus metrics with typed labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub kind: String,
    pub operation: String,
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub rule: String,
    pub action: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Histogram,
    pub violations: Family<ViolationLabels, Counter>,
    pub cert_expiry: Gauge,
    pub bad_requests: Counter,
}

/// Buckets from 25 µs: raygate decides in microseconds, far below the API server's 5 ms floor.
const DURATION_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.5, 1.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("raygate");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Histogram::new(DURATION_BUCKETS);
        let violations = Family::<ViolationLabels, Counter>::default();
        let cert_expiry = Gauge::default();
        let bad_requests = Counter::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by object kind, operation and decision",
            requests.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time from a complete request body to the encoded response",
            duration.clone(),
        );
        registry.register(
            "policy_violations",
            "Violations found in admitted or denied objects, by rule and action",
            violations.clone(),
        );
        registry.register(
            "tls_cert_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix time)",
            cert_expiry.clone(),
        );
        registry.register(
            "bad_requests",
            "Bodies that were not an AdmissionReview",
            bad_requests.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            violations,
            cert_expiry,
            bad_requests,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
