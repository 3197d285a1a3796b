//! The webhook's per-namespace reads of its watch caches, in a large cluster: 10,000
//! NetworkPolicies over 1,000 namespaces. raygate's store, indexed by
//! namespace, beside kube's reflector store read with `state_filter`, which scans every
//! object: `cargo bench --bench cluster_view`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use raygate::cluster::NamespacedStore;

const NAMESPACES: usize = 1_000;
const PER_NAMESPACE: usize = 10;

fn policies() -> impl Iterator<Item = NetworkPolicy> {
    (0..NAMESPACES).flat_map(|namespace| {
        (0..PER_NAMESPACE).map(move |name| {
            let mut policy = NetworkPolicy::default();
            policy.metadata.namespace = Some(format!("team-{namespace}"));
            policy.metadata.name = Some(format!("policy-{name}"));
            policy
        })
    })
}

fn reads(c: &mut Criterion) {
    let indexed = Arc::new(NamespacedStore::default());
    let mut apply = NamespacedStore::writer(&indexed);
    let (flat, mut writer) = reflector::store::<NetworkPolicy>();
    for policy in policies() {
        let event = Event::Apply(policy);
        apply(&event);
        writer.apply_watcher_event(&event);
    }
    let namespace = "team-500";

    let mut group = c.benchmark_group("cluster-view-10000-objects");
    group.bench_function(BenchmarkId::new("namespace", "raygate-index"), |b| {
        b.iter(|| indexed.in_namespace(black_box(namespace)))
    });
    group.bench_function(BenchmarkId::new("namespace", "reflector-scan"), |b| {
        b.iter(|| {
            flat.state_filter(|p| p.metadata.namespace.as_deref() == Some(black_box(namespace)))
        })
    });
    group.bench_function(BenchmarkId::new("one-object", "raygate-index"), |b| {
        b.iter(|| indexed.get(black_box(namespace), black_box("policy-7")))
    });
    group.bench_function(BenchmarkId::new("one-object", "reflector-scan"), |b| {
        b.iter(|| {
            flat.state_filter(|p| p.metadata.namespace.as_deref() == Some(black_box(namespace)))
                .into_iter()
                .find(|p| p.metadata.name.as_deref() == Some("policy-7"))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = reads
}
criterion_main!(benches);
