//! raygate's engine beside the same rules in Rego (regorus) and CEL (cel), on the same inputs
//! in one run: `cargo bench --bench engine`.
//!
//! For each input, two measurements per engine:
//! - `review`: AdmissionReview bytes in, AdmissionReview bytes out (what a webhook does);
//! - `evaluate`: the rules alone, on the object already decoded into the engine's own form.
//!
//! And raygate alone: `mutate`, the same review sent to the mutating webhook, and
//! `update/scaling-only`, an UPDATE that only scales.

#[path = "peers/mod.rs"]
mod peers;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use raygate::admission::{self, Endpoint};
use raygate::engine::{Context, Engine};
use raygate::ray::ObjectRef;

fn engines(c: &mut Criterion) {
    let engine = Engine::new(peers::policy());
    let mut rego = peers::Rego::new();
    let cel = peers::Cel::new();
    let context = Context::WITHOUT_CLUSTER;

    for input in peers::bench_inputs() {
        let mut group = c.benchmark_group(input.name);
        group.throughput(Throughput::Bytes(input.review.len() as u64));
        if input.review.len() > 100_000 {
            group.sample_size(20);
            group.measurement_time(Duration::from_secs(8));
        }

        group.bench_function(BenchmarkId::new("review", "raygate"), |b| {
            b.iter(|| {
                admission::review(
                    &engine,
                    &context,
                    Endpoint::Validate,
                    black_box(&input.review),
                )
                .expect("a review")
                .0
            })
        });
        // The mutating call on the same review: raygate alone (the peers have no patches).
        group.bench_function(BenchmarkId::new("mutate", "raygate"), |b| {
            b.iter(|| {
                admission::review(
                    &engine,
                    &context,
                    Endpoint::Mutate,
                    black_box(&input.review),
                )
                .expect("a review")
                .0
            })
        });
        group.bench_function(BenchmarkId::new("review", "regorus"), |b| {
            b.iter(|| rego.review(black_box(&input.review)))
        });
        group.bench_function(BenchmarkId::new("review", "cel"), |b| {
            b.iter(|| cel.review(black_box(&input.review)))
        });

        // Evaluation alone, each engine on its own decoded form of the same review.
        let review: AdmissionReview<DynamicObject> =
            serde_json::from_slice(&input.review).expect("a review");
        let object = review
            .request
            .as_ref()
            .and_then(|r| r.object.as_ref())
            .expect("an object");
        group.bench_function(BenchmarkId::new("evaluate", "raygate"), |b| {
            b.iter(|| {
                let view = ObjectRef::from_dynamic(black_box(object));
                engine.evaluate(&view, &context)
            })
        });
        let rego_input = peers::Rego::input_for(&input.object);
        group.bench_function(BenchmarkId::new("evaluate", "regorus"), |b| {
            b.iter(|| rego.violations(black_box(rego_input.clone())))
        });
        let (cel_object, cel_request) = peers::Cel::input_for(&input.object);
        group.bench_function(BenchmarkId::new("evaluate", "cel"), |b| {
            b.iter(|| cel.failures(black_box(&cel_object), &cel_request).len())
        });
        group.finish();
    }

    // An UPDATE that only scales a worker group, as the autoscaler sends them: ratcheting
    // answers it without running the rules on the new or the old object.
    let old = peers::bench_inputs()
        .into_iter()
        .find(|i| i.name == "compliant-raycluster")
        .expect("the compliant cluster")
        .object;
    let mut scaled = old.clone();
    scaled["spec"]["workerGroupSpecs"][0]["replicas"] = serde_json::json!(3);
    let old: DynamicObject = serde_json::from_value(old).expect("a RayCluster");
    let scaled: DynamicObject = serde_json::from_value(scaled).expect("a RayCluster");
    let mut group = c.benchmark_group("update");
    group.bench_function(BenchmarkId::new("scaling-only", "raygate"), |b| {
        b.iter(|| {
            let new = ObjectRef::from_dynamic(black_box(&scaled));
            let before = ObjectRef::from_dynamic(black_box(&old));
            engine.evaluate_update(&new, &before, &context)
        })
    });
    // The original manifest applied again over the filled-in cluster (kubectl apply, an Argo
    // CD sync): the validating call judges it against the old object; the mutating call,
    // which before ran the same judgement, now only computes the patch.
    let original = peers::bench_inputs()
        .into_iter()
        .find(|i| i.name == "typical-raycluster")
        .expect("the typical cluster")
        .object;
    let original: DynamicObject = serde_json::from_value(original).expect("a RayCluster");
    let view = ObjectRef::from_dynamic(&original);
    let filled = engine.evaluate(&view, &context).patch;
    let mut filled_value = serde_json::to_value(&original).expect("JSON");
    json_patch::patch(&mut filled_value, &filled.0).expect("the patch applies");
    let filled: DynamicObject = serde_json::from_value(filled_value).expect("a RayCluster");
    group.bench_function(BenchmarkId::new("re-applied", "validate"), |b| {
        b.iter(|| {
            let new = ObjectRef::from_dynamic(black_box(&original));
            let old = ObjectRef::from_dynamic(black_box(&filled));
            engine.evaluate_update(&new, &old, &context)
        })
    });
    group.bench_function(BenchmarkId::new("re-applied", "mutate"), |b| {
        b.iter(|| {
            let new = ObjectRef::from_dynamic(black_box(&original));
            let old = ObjectRef::from_dynamic(black_box(&filled));
            engine.evaluate_patch(&new, Some(&old), &context)
        })
    });
    group.finish();
}

/// The worst case a tenant can send: the largest object the API server stores (1.5 MiB of
/// worker groups, a head on the master, GCS on 6379) in a namespace with 200 NetworkPolicies
/// that select it, under the built-in policy, through the whole validating review; and the
/// largest cluster the built-in policy still judges (64 worker groups) beside the same 200.
fn worst_case(c: &mut Criterion) {
    let engine = Engine::new(raygate::Policy::built_in());
    let (huge, largest_judged, policies) = peers::worst_case();
    let context = Context {
        at_admission: true,
        ..Context::complete(&policies)
    };
    let mut group = c.benchmark_group("worst-case");
    group.sample_size(20);
    for (name, object) in [
        ("1.5MiB-200-policies", &huge),
        ("64-groups-200-policies", &largest_judged),
    ] {
        let review = peers::review(object, "worst-case");
        group.throughput(Throughput::Bytes(review.len() as u64));
        group.bench_function(BenchmarkId::new("validate", name), |b| {
            b.iter(|| {
                admission::review(&engine, &context, Endpoint::Validate, black_box(&review))
                    .expect("a review")
                    .0
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = engines, worst_case
}
criterion_main!(benches);
