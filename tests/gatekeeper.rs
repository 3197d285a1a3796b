//! gatekeeper-library's container limits / requests / resources test suites, run against
//! raygate's `resources` rule family as a peer's test suite.
//!
//! Every case of every copied `suite.yaml` (tests/fixtures/gatekeeper-library, see SOURCE.md)
//! is loaded, its Pod is labelled `ray.io/cluster` so raygate evaluates it, the constraint's
//! parameters are mapped onto a raygate policy where raygate has an equivalent (maxima ->
//! `spec.resources.maximum`), and only the `resources/*` violations are considered.
//!
//! `EXPECTED` says, for each case, which `resources/*` rules raygate reports and whether its
//! verdict agrees with gatekeeper's; where it deliberately differs the row gives the reason.
//! The differences are summarised in tests/fixtures/gatekeeper-library/DIFFERENCES.md.

use std::collections::BTreeSet;
use std::path::Path;

use raygate::policy::{Action, BUILT_IN_POLICY};
use raygate::ray::{LABEL_CLUSTER, ObjectRef};
const ABOVE_MAXIMUM: &str = "resources/above-maximum";
const MISSING: &str = "resources/missing";
use raygate::{Context, Decision, Engine, Judged, Policy};
use serde_json::Value;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gatekeeper-library"
);

/// The copied suites and how many cases each holds.
const SUITES: [(&str, usize); 3] = [
    ("containerlimits", 4),
    ("containerrequests", 2),
    ("containerresources", 13),
];
const TOTAL_CASES: usize = 19;
const AGREEING_CASES: usize = 12;

// Why raygate's verdict differs from gatekeeper's (see DIFFERENCES.md).
const LIMITS_ONLY: &str = "K8sContainerLimits only requires limits; raygate's plan also requires \
    CPU and memory requests (raygate fills them in from the limits)";
const IGNORE_CPU: &str = "cpu: \"-1\" switches off gatekeeper's CPU checks; raygate always requires \
    CPU requests and limits (KubeRay derives --num-cpus from them)";
const REQUESTS_ONLY: &str = "K8sContainerRequests only requires requests; raygate also requires \
    limits (KubeRay derives --num-cpus and --memory from the limits)";
const NO_CPU_LIMIT: &str = "the constraint does not list limits.cpu; raygate always requires a CPU \
    limit (KubeRay derives --num-cpus from it)";
const NO_ENFORCEMENTS: &str = "empty parameters enforce nothing in gatekeeper; raygate's plan \
    cannot be relaxed per resource: all four values are required";

#[derive(Debug, Clone, Copy)]
enum Verdict {
    /// raygate violates exactly when gatekeeper does.
    Agrees,
    /// raygate's verdict is the opposite of gatekeeper's, for this reason.
    Differs(&'static str),
}
use Verdict::{Agrees, Differs};

/// What raygate does with one gatekeeper case.
struct Expected {
    suite: &'static str,
    test: &'static str,
    case: &'static str,
    /// The `resources/*` rules raygate reports for the object as given.
    rules: &'static [&'static str],
    verdict: Verdict,
}

const fn row(
    suite: &'static str,
    test: &'static str,
    case: &'static str,
    rules: &'static [&'static str],
    verdict: Verdict,
) -> Expected {
    Expected {
        suite,
        test,
        case,
        rules,
        verdict,
    }
}

#[rustfmt::skip]
const EXPECTED: &[Expected] = &[
    // K8sContainerLimits {cpu: 200m, memory: 1Gi} -> maximum {cpu: 200m, memory: 1Gi}.
    row("containerlimits", "container-limits", "example-allowed", &[MISSING], Differs(LIMITS_ONLY)),
    row("containerlimits", "container-limits", "example-disallowed", &[ABOVE_MAXIMUM, MISSING], Agrees),
    // K8sContainerLimits {cpu: "-1", memory: 1Gi} -> maximum {memory: 1Gi}.
    row("containerlimits", "container-limits-ignore-cpu", "example-allowed", &[MISSING], Differs(IGNORE_CPU)),
    row("containerlimits", "container-limits-ignore-cpu", "example-disallowed", &[ABOVE_MAXIMUM, MISSING], Agrees),
    // K8sContainerRequests {cpu: 200m, memory: 1Gi} -> maximum {cpu: 200m, memory: 1Gi}.
    row("containerrequests", "container-requests", "example-allowed", &[MISSING], Differs(REQUESTS_ONLY)),
    row("containerrequests", "container-requests", "example-disallowed", &[ABOVE_MAXIMUM, MISSING], Agrees),
    // K8sRequiredResources {limits: [cpu, memory], requests: [cpu, memory]}: raygate's own plan.
    row("containerresources", "container-limits-and-requests", "limits-and-requests-defined-allowed", &[], Agrees),
    row("containerresources", "container-limits-and-requests", "only-requests-defined-disallowed", &[MISSING], Agrees),
    row("containerresources", "container-limits-and-requests", "only-cpu-requests-and-memory-limits-defined-disallowed", &[MISSING], Agrees),
    row("containerresources", "container-limits-and-requests", "only-memory-limits-defined-disallowed", &[MISSING], Agrees),
    // K8sRequiredResources {limits: [memory], requests: [cpu, memory]}.
    row("containerresources", "container-cpu-requests-memory-limits-and-requests", "limits-and-requests-defined-allowed", &[], Agrees),
    row("containerresources", "container-cpu-requests-memory-limits-and-requests", "only-cpu-requests-and-memory-limits-and-requests-defined-allowed", &[MISSING], Differs(NO_CPU_LIMIT)),
    row("containerresources", "container-cpu-requests-memory-limits-and-requests", "only-requests-defined-disallowed", &[MISSING], Agrees),
    row("containerresources", "container-cpu-requests-memory-limits-and-requests", "only-memory-limits-defined-disallowed", &[MISSING], Agrees),
    row("containerresources", "container-cpu-requests-memory-limits-and-requests", "empty-resources-disallowed", &[MISSING], Agrees),
    // K8sRequiredResources without parameters.
    row("containerresources", "no-enforcements", "limits-and-requests-defined-allowed", &[], Agrees),
    row("containerresources", "no-enforcements", "only-requests-defined-allowed", &[MISSING], Differs(NO_ENFORCEMENTS)),
    row("containerresources", "no-enforcements", "only-cpu-requests-and-memory-limits-defined-allowed", &[MISSING], Differs(NO_ENFORCEMENTS)),
    row("containerresources", "no-enforcements", "empty-resources-allowed", &[MISSING], Differs(NO_ENFORCEMENTS)),
];

/// One gator test case: an object, the constraint it is tested against, and the expectation.
struct Case {
    suite: String,
    test: String,
    case: String,
    /// The object file, relative to the suite directory.
    object_file: String,
    object: Value,
    constraint: Value,
    gatekeeper_violates: bool,
}

impl Case {
    fn id(&self) -> String {
        format!(
            "{}: test {:?}, case {:?} ({})",
            self.suite, self.test, self.case, self.object_file
        )
    }
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

fn str_field<'v>(value: &'v Value, key: &str, context: &str) -> &'v str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: `{key}` is not a string: {value}"))
}

/// Whether gator expects violations. Only plain `violations: yes | no | <n>` assertions are
/// supported; anything else fails loudly rather than being skipped.
fn expects_violations(assertions: &Value, context: &str) -> bool {
    let [assertion] = assertions.as_array().map(Vec::as_slice).unwrap_or_default() else {
        panic!("{context}: expected exactly one assertion, got {assertions}");
    };
    let keys: Vec<&String> = assertion
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        ["violations"],
        "{context}: unsupported assertion {assertion}"
    );
    match &assertion["violations"] {
        Value::String(s) if s == "yes" => true,
        Value::String(s) if s == "no" => false,
        Value::Bool(b) => *b,
        Value::Number(n) if n.as_u64().is_some() => n.as_u64() != Some(0),
        other => panic!("{context}: unsupported `violations: {other}`"),
    }
}

/// Every case of every suite, in suite order.
fn load_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (suite, _) in SUITES {
        let dir = Path::new(FIXTURES).join(suite);
        let doc = read_yaml(&dir.join("suite.yaml"));
        assert_eq!(doc["kind"], "Suite", "{suite}/suite.yaml");
        let tests = doc["tests"].as_array().expect("suite.yaml has tests");
        for test in tests {
            let test_name = str_field(test, "name", suite);
            let constraint = read_yaml(&dir.join(str_field(test, "constraint", test_name)));
            for case in test["cases"].as_array().expect("a test has cases") {
                let case_name = str_field(case, "name", test_name);
                let context = format!("{suite}: test {test_name:?}, case {case_name:?}");
                let unsupported: Vec<&String> = case
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                    .filter(|k| !["name", "object", "assertions"].contains(&k.as_str()))
                    .collect();
                assert!(
                    unsupported.is_empty(),
                    "{context}: unsupported fields {unsupported:?}"
                );
                let object_file = str_field(case, "object", &context);
                cases.push(Case {
                    suite: suite.to_owned(),
                    test: test_name.to_owned(),
                    case: case_name.to_owned(),
                    object_file: object_file.to_owned(),
                    object: read_yaml(&dir.join(object_file)),
                    constraint: constraint.clone(),
                    gatekeeper_violates: expects_violations(&case["assertions"], &context),
                });
            }
        }
    }
    cases
}

/// The object with the `ray.io/cluster` label that puts it in raygate's scope.
fn in_ray_scope(mut object: Value, id: &str) -> Value {
    // Every sample is a Pod; another kind would need its own mapping (e.g. a RayCluster).
    assert_eq!(
        (&object["apiVersion"], &object["kind"]),
        (&Value::from("v1"), &Value::from("Pod")),
        "{id}: only v1 Pods are mapped onto raygate"
    );
    object["metadata"]["labels"][LABEL_CLUSTER] = "gk".into();
    object
}

/// raygate's policy for a gatekeeper constraint: the built-in plan, with the constraint's
/// maxima (K8sContainerLimits / K8sContainerRequests) as `spec.resources.maximum`.
fn policy_for(constraint: &Value, id: &str) -> Policy {
    let kind = str_field(constraint, "kind", id);
    let params = &constraint["spec"]["parameters"];
    assert!(
        params.get("exemptImages").is_none(),
        "{id}: exemptImages has no raygate equivalent"
    );
    let maxima: Vec<(&str, &str)> = match kind {
        // raygate's maximum caps requests and limits alike.
        "K8sContainerLimits" | "K8sContainerRequests" => ["cpu", "memory"]
            .into_iter()
            .filter_map(|r| Some((r, params.get(r)?.as_str()?)))
            // K8sContainerLimits: "-1" switches the resource's checks off; raygate can only
            // drop the maximum (the limit stays required).
            .filter(|(_, v)| !(kind == "K8sContainerLimits" && *v == "-1"))
            .collect(),
        // The resources to require: raygate always requires all of them.
        "K8sRequiredResources" => Vec::new(),
        other => panic!("{id}: no mapping for constraint kind {other}"),
    };
    if maxima.is_empty() {
        return Policy::built_in();
    }
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(BUILT_IN_POLICY).unwrap();
    let resources = &mut doc["spec"]["resources"];
    for (resource, max) in maxima {
        resources["maximum"][resource] = max.into();
        // A valid policy's defaults may not exceed its maximum.
        resources["defaults"]["requests"][resource] = max.into();
        resources["defaults"]["limits"][resource] = max.into();
    }
    let name = format!("policy for {id}");
    Policy::from_yaml(&serde_yaml_ng::to_string(&doc).unwrap(), &name)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The decision restricted to the `resources/*` rules.
fn resources_only(decision: &Decision) -> Decision {
    let mut only = decision.clone();
    only.violations
        .retain(|v| v.rule.as_str().starts_with("resources/"));
    only
}

fn rule_set<'a>(rules: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    rules.into_iter().collect()
}

#[test]
fn gatekeeper_library_resource_suites() {
    let cases = load_cases();
    for (suite, count) in SUITES {
        let loaded = cases.iter().filter(|c| c.suite == suite).count();
        assert_eq!(loaded, count, "{suite}/suite.yaml: number of cases");
    }
    assert_eq!(cases.len(), TOTAL_CASES, "number of gatekeeper cases");
    assert_eq!(EXPECTED.len(), TOTAL_CASES, "rows of EXPECTED");

    let mut used = vec![false; EXPECTED.len()];
    let mut agreeing = 0;
    for case in &cases {
        let id = case.id();
        let found: Vec<usize> = (0..EXPECTED.len())
            .filter(|&i| {
                let e = &EXPECTED[i];
                (e.suite, e.test, e.case) == (&case.suite, &case.test, &case.case)
            })
            .collect();
        let [index] = found[..] else {
            panic!(
                "{id}: expected exactly one EXPECTED row, found {}",
                found.len()
            );
        };
        used[index] = true;
        let expected = &EXPECTED[index];

        let object = in_ray_scope(case.object.clone(), &id);
        let engine = Engine::new(policy_for(&case.constraint, &id));
        let view = ObjectRef::from_value(&object).unwrap();
        let decision = resources_only(&engine.evaluate(&view, &Context::WITHOUT_CLUSTER));
        assert_eq!(
            decision.judged,
            Judged::Pod,
            "{id}: not evaluated as a Ray Pod"
        );
        let violations = &decision.violations;
        assert!(
            violations.iter().all(|v| v.action == Action::Deny),
            "{id}: resources violations that do not deny: {violations:#?}"
        );

        // Which rules raygate reports.
        assert_eq!(
            rule_set(violations.iter().map(|v| v.rule.as_str())),
            rule_set(expected.rules.iter().copied()),
            "{id}: resources rules reported; violations: {violations:#?}"
        );

        // The verdict on the object as given, against gatekeeper's.
        let raygate_violates = !decision.allowed_as_is();
        let gatekeeper = if case.gatekeeper_violates {
            "violations"
        } else {
            "no violations"
        };
        match expected.verdict {
            Agrees => {
                agreeing += 1;
                assert_eq!(
                    raygate_violates, case.gatekeeper_violates,
                    "{id}: gatekeeper expects {gatekeeper}; raygate reported {violations:#?}"
                );
            }
            Differs(reason) => assert_ne!(
                raygate_violates, case.gatekeeper_violates,
                "{id}: marked as differing ({reason}), but raygate agrees with gatekeeper \
                 ({gatekeeper}); violations: {violations:#?}"
            ),
        }

        // The fill-in patch cures exactly the fillable violations: re-evaluating the patched
        // object leaves the others, and `allowed()` predicts the outcome.
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &decision.patch.0)
            .unwrap_or_else(|e| panic!("{id}: the patch does not apply: {e}"));
        let view = ObjectRef::from_value(&patched).unwrap();
        let after = resources_only(&engine.evaluate(&view, &Context::WITHOUT_CLUSTER));
        assert_eq!(
            rule_set(after.violations.iter().map(|v| v.rule.as_str())),
            rule_set(decision.remaining().map(|v| v.rule.as_str())),
            "{id}: resources rules after the patch; patched object: {patched:#}"
        );
        assert_eq!(
            after.allowed_as_is(),
            decision.allowed(),
            "{id}: allowed() does not predict the patched object's verdict"
        );
    }

    let unused: Vec<String> = EXPECTED
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(e, _)| format!("{}/{}/{}", e.suite, e.test, e.case))
        .collect();
    assert!(
        unused.is_empty(),
        "EXPECTED rows without a gatekeeper case: {unused:?}"
    );
    assert_eq!(
        agreeing, AGREEING_CASES,
        "cases where raygate agrees with gatekeeper"
    );
    assert_eq!(cases.len() - agreeing, TOTAL_CASES - AGREEING_CASES);
}
