//! Every KubeRay sample through the engine: golden decisions and properties of filling in.

mod support;

use std::path::{Path, PathBuf};

use raygate::commands::{Inputs, evaluate};
use raygate::engine::Context;
use raygate::manifest;
use raygate::ray::ObjectRef;
use serde_json::Value;

const SAMPLES: &str = "tests/fixtures/kuberay/samples";

fn sample_files() -> Vec<PathBuf> {
    manifest::expand(&[PathBuf::from(SAMPLES)]).expect("the samples are readable")
}

/// The clusterloader2 templates among the samples are not YAML until rendered.
fn is_template(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains("{{"))
}

/// Every document of every sample but the templates, with its file.
fn sample_objects() -> Vec<(PathBuf, Value)> {
    let mut objects = Vec::new();
    for path in sample_files().into_iter().filter(|p| !is_template(p)) {
        let file = manifest::read(&path).unwrap();
        for document in file.documents {
            if let Some(value) = document.value {
                objects.push((path.clone(), value));
            }
        }
    }
    objects
}

#[test]
fn every_sample_parses_except_the_templates() {
    let files = sample_files();
    assert!(files.len() >= 120, "found only {} samples", files.len());
    let mut unparsed = Vec::new();
    for path in &files {
        if let Err(e) = manifest::read(path) {
            assert!(is_template(path), "{e}");
            assert!(e.to_string().starts_with(&path.display().to_string()));
            unparsed.push(path.clone());
        }
    }
    assert_eq!(unparsed.len(), 12, "{unparsed:?}");
}

/// One line per violation, grouped by object: reviewed by hand when it changes.
#[test]
fn decisions_on_the_kuberay_samples() {
    let engine = support::engine();
    let mut golden = String::new();
    for path in sample_files().into_iter().filter(|p| !is_template(p)) {
        let inputs = Inputs::read(std::slice::from_ref(&path));
        assert!(inputs.errors.is_empty(), "{:?}", inputs.errors);
        let report = evaluate(&engine, &inputs);
        for result in report
            .results
            .iter()
            .filter(|r| r.judged != raygate::Judged::OutOfScope)
        {
            let fills = result.violations.iter().filter(|v| v.fillable).count();
            golden.push_str(&format!(
                "{} {} {}: {} ({} filled)\n",
                result.source,
                result.kind,
                result.name,
                if result.allowed { "allowed" } else { "denied" },
                fills
            ));
            for v in result.violations.iter().filter(|v| !v.fillable) {
                golden.push_str(&format!("  {} {} {}\n", v.action, v.rule.as_str(), v.path));
            }
        }
    }
    insta::assert_snapshot!("kuberay_samples", golden);
}

/// Every value of `original` is in `fixed` unchanged: filling in only adds.
fn only_adds(original: &Value, fixed: &Value, path: &str) -> Result<(), String> {
    match (original, fixed) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let Some(other) = b.get(key) else {
                    return Err(format!("{path}/{key} was removed"));
                };
                only_adds(value, other, &format!("{path}/{key}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if b.len() < a.len() {
                return Err(format!("{path} lost items"));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                only_adds(x, y, &format!("{path}/{i}"))?;
            }
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path} changed from {a} to {b}")),
    }
}

#[test]
fn filling_in_cures_what_it_can_only_adds_and_is_idempotent() {
    let engine = support::engine();
    let context = Context::complete(&[]);
    let mut objects_fixed = 0;
    for (path, value) in &sample_objects() {
        let Some(view) = ObjectRef::from_value(value) else {
            continue;
        };
        let decision = engine.evaluate(&view, &context);
        if decision.patch.0.is_empty() {
            assert!(decision.violations.iter().all(|v| !v.fillable));
            continue;
        }
        objects_fixed += 1;
        let fixed = support::apply(value, &decision.patch);
        let at = format!("{}:{}", path.display(), view.name);
        only_adds(value, &fixed, "").unwrap_or_else(|e| panic!("{at}: {e}"));

        let again = engine.evaluate(&ObjectRef::from_value(&fixed).unwrap(), &context);
        assert!(
            again.patch.0.is_empty(),
            "{at}: fix(fix(x)) != fix(x): {:?}",
            again.patch
        );
        let cured: Vec<_> = again.violations.iter().filter(|v| v.fillable).collect();
        assert!(cured.is_empty(), "{at}: {cured:#?}");
        // What was fillable is gone; what was not stays, exactly.
        let before: Vec<_> = decision
            .violations
            .iter()
            .filter(|v| !v.fillable)
            .map(|v| (v.rule.as_str(), v.path.clone()))
            .collect();
        let after: Vec<_> = again
            .violations
            .iter()
            .map(|v| (v.rule.as_str(), v.path.clone()))
            .collect();
        assert_eq!(before, after, "{at}");
    }
    assert!(
        objects_fixed > 100,
        "only {objects_fixed} objects needed filling"
    );
}

/// The mutating call (`Engine::evaluate_patch`, which builds no messages and skips the old
/// object's findings) patches exactly as the validating path does, on a CREATE and on UPDATEs:
/// re-applying the original manifest over the filled-in cluster, and scaling it.
#[test]
fn the_mutating_call_patches_as_the_full_evaluation_does() {
    let engine = support::engine();
    let context = Context::complete(&[]);
    let mut updates = 0;
    for (path, value) in &sample_objects() {
        let Some(view) = ObjectRef::from_value(value) else {
            continue;
        };
        let at = format!("{}:{}", path.display(), view.name);
        let shape = |d: &raygate::Decision| {
            let findings: Vec<_> = d
                .violations
                .iter()
                .map(|v| (v.rule.as_str(), v.action, v.path.clone()))
                .collect();
            (d.judged, d.patch.0.clone(), findings)
        };
        let full = engine.evaluate(&view, &context);
        let mutating = engine.evaluate_patch(&view, None, &context);
        assert_eq!(shape(&mutating), shape(&full), "{at}: CREATE");
        assert!(
            mutating.violations.iter().all(|v| v.message.is_empty()),
            "{at}"
        );
        if full.patch.0.is_empty() {
            continue;
        }
        let filled = support::apply(value, &full.patch);
        let old = ObjectRef::from_value(&filled).unwrap();
        let mut scaled = filled.clone();
        if let Some(groups) = scaled.pointer_mut("/spec/workerGroupSpecs/0/replicas") {
            *groups = serde_json::json!(7);
        }
        for (what, new) in [("re-applied", value), ("scaled", &scaled)] {
            let new = ObjectRef::from_value(new).unwrap();
            let full = engine.evaluate_update(&new, &old, &context);
            let mutating = engine.evaluate_patch(&new, Some(&old), &context);
            assert_eq!(
                (full.judged, &full.patch.0),
                (mutating.judged, &mutating.patch.0),
                "{at}: UPDATE, {what}"
            );
            updates += 1;
        }
    }
    assert!(updates > 200, "only {updates} updates");
}
