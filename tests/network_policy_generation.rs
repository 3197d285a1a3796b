//! The NetworkPolicy `raygate fix` writes is one the `network-policy/*` rules admit: over
//! every KubeRay sample and fixture, filled in and judged under the generated policy alone,
//! no network-policy finding remains.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use raygate::engine::{Context, Engine};
use raygate::manifest;
use raygate::policy::Policy;
use raygate::ray::{ObjectRef, Target};
use raygate::rule_id::Family;
use raygate::rules::network_policy;
use serde_json::Value;

const INPUTS: [&str; 3] = [
    "tests/fixtures/kuberay/samples",
    "tests/fixtures/kuberay/helm-ray-cluster",
    "tests/fixtures/manifests",
];

/// Every Ray object with a cluster spec among the inputs (templates that are not YAML yet are
/// skipped), with where it came from.
fn ray_objects() -> Vec<(String, Value)> {
    let paths: Vec<PathBuf> = INPUTS.iter().map(PathBuf::from).collect();
    let mut objects = Vec::new();
    for path in manifest::expand(&paths).expect("the fixtures are readable") {
        let Ok(file) = manifest::read(&path) else {
            continue;
        };
        for document in file.documents {
            let Some(value) = document.value else {
                continue;
            };
            let is_cluster = ObjectRef::from_value(&value)
                .is_some_and(|o| matches!(Target::of(&o), Target::Cluster(_)));
            if is_cluster {
                objects.push((document.source.to_string(), value));
            }
        }
    }
    objects
}

/// The object with admission's fill-ins applied.
fn filled(engine: &Engine, value: &Value) -> Value {
    let object = ObjectRef::from_value(value).unwrap();
    let decision = engine.evaluate(&object, &Context::complete(&[]));
    let mut filled = value.clone();
    json_patch::patch(&mut filled, &decision.patch.0).unwrap();
    filled
}

/// The policy `generate` writes for `object` under the engine's plan, if it has a cluster
/// spec whose Pods can be selected.
fn generated_for(
    engine: &Engine,
    object: &ObjectRef<'_>,
) -> Option<network_policy::GeneratedPolicy> {
    let Target::Cluster(cluster) = Target::of(object) else {
        return None;
    };
    let plan = engine.policy();
    let addresses = &plan.spec().network_policy.api_server_addresses;
    network_policy::generate(&cluster, object.namespace, plan, addresses)
}

/// The built-in plan with external access and the API server's address.
fn plan_text() -> String {
    include_str!("../policies/ray-platform.yaml").replace(
        "    externalAccess: []",
        "    externalAccess:\n    - {namespaceLabels: {kubernetes.io/metadata.name: monitoring}, ports: [metrics, as-metrics]}\n    - {namespaceLabels: {team: notebooks}, ports: [client, dashboard, serve]}",
    )
    .replace("    apiServerAddresses: []", "    apiServerAddresses: [198.18.0.1/32]")
}

fn plan_with_external_access() -> Policy {
    Policy::from_yaml(&plan_text(), "plan.yaml").expect("the edited plan is valid")
}

/// Also DNS elsewhere: Pods of another namespace on another port, and a node-local address.
fn plan_with_everything() -> Policy {
    let dns = "    dns:\n      namespace: kube-system\n      podLabels: {k8s-app: kube-dns}\n      port: 53\n      addresses: []\n";
    let text = plan_text();
    assert!(text.contains(dns), "the built-in dns block moved");
    let text = text.replace(
        dns,
        "    dns: {namespace: openshift-dns, podLabels: {dns.operator.openshift.io/daemonset-dns: default}, port: 5353, addresses: [169.254.20.10/32]}\n",
    );
    Policy::from_yaml(&text, "plan.yaml").expect("the edited plan is valid")
}

fn assert_generated_policies_admit(engine: &Engine) -> usize {
    let mut judged = 0;
    let mut failures = Vec::new();
    for (source, value) in ray_objects() {
        let value = filled(engine, &value);
        let object = ObjectRef::from_value(&value).unwrap();
        let Target::Cluster(cluster) = Target::of(&object) else {
            continue;
        };
        let addresses = &engine.policy().spec().network_policy.api_server_addresses;
        let Some(generated) =
            network_policy::generate(&cluster, object.namespace, engine.policy(), addresses)
        else {
            // Only an object without a name (`generateName`) has Pods raygate cannot select.
            if value.pointer("/metadata/name").is_some() {
                failures.push(format!("{source}: no policy generated"));
            }
            continue;
        };
        // The YAML says exactly what the object holds.
        let reread = manifest::parse("generated.yaml", &generated.text)
            .unwrap()
            .documents[0]
            .value
            .clone()
            .unwrap();
        assert_eq!(reread, generated.object, "{source}:\n{}", generated.text);
        let policies = [Arc::new(generated.network_policy().unwrap())];
        let decision = engine.evaluate(&object, &Context::complete(&policies));
        for violation in decision.violations.iter() {
            if violation.rule.family() == Some(Family::NetworkPolicy) {
                failures.push(format!(
                    "{source}: {} {}",
                    violation.rule.as_str(),
                    violation.message
                ));
            }
        }
        judged += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    judged
}

#[test]
fn generated_policies_pass_the_network_policy_rules_on_every_sample() {
    let judged = assert_generated_policies_admit(&support::engine());
    eprintln!("{judged} Ray objects judged under their generated policies");
    assert!(judged >= 100, "only {judged} Ray objects judged");
}

#[test]
fn generated_policies_admit_the_named_namespaces_and_the_api_server() {
    let judged = assert_generated_policies_admit(&Engine::new(plan_with_everything()));
    assert!(judged >= 100, "only {judged} Ray objects judged");
}

/// What the rules say of `object` under `policy`: the network-policy rule ids found.
fn network_findings(engine: &Engine, object: &ObjectRef<'_>, policy: &Value) -> Vec<String> {
    let policy = serde_json::from_value(policy.clone()).unwrap();
    let policies = [Arc::new(policy)];
    engine
        .evaluate(object, &Context::complete(&policies))
        .violations
        .iter()
        .filter(|v| v.rule.family() == Some(Family::NetworkPolicy))
        .map(|v| v.rule.as_str().to_owned())
        .collect()
}

/// The generated policy is the least the rules accept: without any one of its rules, or any
/// one port of a rule, some network-policy rule reports the cluster.
#[test]
fn every_rule_and_port_of_a_generated_policy_is_needed() {
    let engine = Engine::new(plan_with_everything());
    let mut kinds = std::collections::BTreeSet::new();
    let mut removals = 0;
    for (source, value) in ray_objects() {
        let value = filled(&engine, &value);
        let object = ObjectRef::from_value(&value).unwrap();
        let Some(generated) = generated_for(&engine, &object) else {
            continue;
        };
        kinds.insert(object.kind.to_owned());
        for direction in ["ingress", "egress"] {
            let rules = generated.object["spec"][direction].as_array().unwrap();
            for (i, rule) in rules.iter().enumerate() {
                let peer = &rule[if direction == "ingress" { "from" } else { "to" }][0];
                let mut without_rule = generated.object.clone();
                without_rule["spec"][direction]
                    .as_array_mut()
                    .unwrap()
                    .remove(i);
                let found = network_findings(&engine, &object, &without_rule);
                assert!(
                    !found.is_empty(),
                    "{source}: {direction} rule {} is not needed",
                    i + 1
                );
                removals += 1;
                let ports = rule["ports"].as_array().unwrap();
                // A rule without ports admits every port: its last port goes with the rule.
                // The API server's 443 and 6443 are alternatives: CNIs judge its Service port
                // or, after DNAT, its endpoint's, and the rule accepts either.
                let alternatives = peer.get("ipBlock").is_some();
                for j in (0..ports.len()).filter(|_| ports.len() > 1 && !alternatives) {
                    let mut without_port = generated.object.clone();
                    without_port["spec"][direction][i]["ports"]
                        .as_array_mut()
                        .unwrap()
                        .remove(j);
                    let found = network_findings(&engine, &object, &without_port);
                    assert!(
                        !found.is_empty(),
                        "{source}: port {} of {direction} rule {} is not needed",
                        j + 1,
                        i + 1
                    );
                    removals += 1;
                }
            }
        }
    }
    eprintln!("{removals} policies with one rule or port removed, each reported");
    assert!(kinds.len() >= 3, "only {kinds:?}");
    assert!(removals > 1000, "only {removals} removals judged");
}

/// The policies written for the real-cluster tier's RayCluster, RayJob and RayService, as a
/// reviewer reads them: reviewed by hand when they change.
#[test]
fn generated_policies_as_written() {
    let engine = Engine::new(plan_with_external_access());
    let mut texts = String::new();
    for name in ["seed-cluster.yaml", "rayjob.yaml", "rayservice.yaml"] {
        let file = manifest::read(&PathBuf::from("tests/cluster/manifests").join(name)).unwrap();
        for value in file.documents.into_iter().filter_map(|d| d.value) {
            let value = filled(&engine, &value);
            let object = ObjectRef::from_value(&value).unwrap();
            if !matches!(Target::of(&object), Target::Cluster(_)) {
                continue;
            }
            let generated = generated_for(&engine, &object).unwrap();
            texts.push_str("---\n");
            texts.push_str(&generated.text);
        }
    }
    insta::assert_snapshot!("generated_network_policies", texts);
}

/// A RayJob whose templates carry a `raygate.dev/ray-cr-name` the user chose (or that a
/// RayCronJob's RayJob inherits) is selected by that value, which its Pods carry; groups that
/// disagree leave no one label to select, and nothing is written.
#[test]
fn a_chosen_cr_name_label_is_what_the_policy_selects() {
    let engine = support::engine();
    let text = std::fs::read_to_string("tests/cluster/manifests/rayjob.yaml").unwrap();
    let job = manifest::parse("rayjob.yaml", &text).unwrap().documents[0]
        .value
        .clone()
        .unwrap();
    let label_groups = |job: &mut Value, head: &str, worker: &str| {
        for (group, value) in [
            ("/spec/rayClusterSpec/headGroupSpec/template", head),
            ("/spec/rayClusterSpec/workerGroupSpecs/0/template", worker),
        ] {
            job.pointer_mut(group).unwrap()["metadata"] =
                serde_json::json!({"labels": {"raygate.dev/ray-cr-name": value}});
        }
    };
    let mut chosen = job.clone();
    label_groups(&mut chosen, "nightly", "nightly");
    let chosen = filled(&engine, &chosen);
    let object = ObjectRef::from_value(&chosen).unwrap();
    let Target::Cluster(cluster) = Target::of(&object) else {
        panic!("no cluster spec");
    };
    let generated =
        network_policy::generate(&cluster, object.namespace, engine.policy(), &[]).unwrap();
    assert_eq!(
        generated.object["spec"]["podSelector"]["matchLabels"]["raygate.dev/ray-cr-name"],
        "nightly"
    );
    let policies = [Arc::new(generated.network_policy().unwrap())];
    let decision = engine.evaluate(&object, &Context::complete(&policies));
    assert!(
        decision
            .violations
            .iter()
            .all(|v| v.rule.family() != Some(Family::NetworkPolicy)),
        "{:#?}",
        decision.violations
    );

    let mut split = job;
    label_groups(&mut split, "a", "b");
    let object = ObjectRef::from_value(&split).unwrap();
    let Target::Cluster(cluster) = Target::of(&object) else {
        panic!("no cluster spec");
    };
    assert!(network_policy::generate(&cluster, object.namespace, engine.policy(), &[]).is_none());
}
