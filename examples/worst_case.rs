//! The worst case a tenant can send, many times over: the validating review of the largest
//! object the API server stores (1.5 MiB) and of the largest cluster the built-in policy still
//! judges (64 worker groups), each with 200 NetworkPolicies in its namespace, through the
//! webhook's own entry point (`review_live_until`, the policy's deadline, a cluster view that
//! serves the policies as the server's cache does), on one thread with the server's allocator.
//! Prints each request's time (p50, p99, max) and the RSS every tenth of the run.
//!
//! `cargo run --release --example worst_case -- [REQUESTS]` (default 10000 of each)

#[path = "../benches/peers/mod.rs"]
mod peers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::DynamicObject;
use raygate::admission::{self, ClusterState, Endpoint};
use raygate::engine::Engine;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A namespace's NetworkPolicies as the server's cache hands them out.
struct Namespace(Vec<Arc<NetworkPolicy>>);

impl ClusterState for Namespace {
    fn network_policies(&self, _: &str) -> Option<Vec<Arc<NetworkPolicy>>> {
        Some(self.0.clone())
    }
    fn ray_clusters(&self, _: &str) -> Option<Vec<Arc<DynamicObject>>> {
        Some(Vec::new())
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let engine = Engine::new(raygate::Policy::built_in());
    let budget = Duration::from_millis(engine.policy().spec().deadline.milliseconds);
    let (huge, largest_judged, policies) = peers::worst_case();
    let cluster = Namespace(policies);
    println!(
        "| input | AdmissionReview bytes | requests | verdict | p50 ms | p99 ms | max ms | RSS before, then every tenth (MiB) |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---|");
    for (name, object) in [
        ("1.5 MiB RayCluster, 200 NetworkPolicies", &huge),
        ("64 worker groups, 200 NetworkPolicies", &largest_judged),
    ] {
        let review = peers::review(object, "worst-case");
        let mut times = Vec::with_capacity(requests);
        let mut rss = vec![format!("{:.1}", rss_mib())];
        let mut verdict = String::new();
        for i in 0..requests {
            let started = Instant::now();
            let (_, outcome) = admission::review_live_until(
                &engine,
                &cluster,
                Endpoint::Validate,
                &review,
                started + budget,
            )
            .expect("a review");
            times.push(started.elapsed());
            if i == 0 {
                let rules: Vec<&str> = outcome.violations.iter().map(|v| v.rule.as_str()).collect();
                verdict = format!("{} ({} findings)", outcome.verdict, rules.len());
                if rules.contains(&"limits/deadline") {
                    verdict.push_str(", out of time");
                }
            }
            if (i + 1) % (requests / 10).max(1) == 0 {
                rss.push(format!("{:.1}", rss_mib()));
            }
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {} | {requests} | {verdict} | {} | {} | {} | {} |",
            review.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(*times.last().expect("a request")),
            rss.join(", ")
        );
    }
}
