//! The adversarial corpus: for every field a tenant controls that could move a Ray process off
//! the port plan, onto the master, onto the node's network or out of its limits, one object
//! that tries it. Each must be denied, with the rule named, both by `raygate check` and by the
//! webhook (mutate, then validate the patched object), as `kubectl apply` would meet it.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::DynamicObject;
use raygate::admission::{self, ClusterState, Endpoint};
use serde_json::{Value, json};
use support::*;

const HEAD: &str = "/spec/headGroupSpec";
const HEAD_RAY: &str = "/spec/headGroupSpec/template/spec/containers/0";
const WORKER_POD: &str = "/spec/workerGroupSpecs/0/template/spec";

/// What the webhook's caches hold: the namespace's NetworkPolicies and live RayClusters.
struct Live {
    policies: Vec<Arc<NetworkPolicy>>,
    clusters: Vec<Arc<DynamicObject>>,
}

impl Live {
    fn covering(cluster: &str) -> Live {
        Live {
            policies: vec![Arc::new(
                serde_json::from_value(network_policy(cluster)).unwrap(),
            )],
            clusters: Vec::new(),
        }
    }
}

impl ClusterState for Live {
    fn network_policies(&self, _: &str) -> Option<Vec<Arc<NetworkPolicy>>> {
        Some(self.policies.clone())
    }
    fn ray_clusters(&self, _: &str) -> Option<Vec<Arc<DynamicObject>>> {
        Some(self.clusters.clone())
    }
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            namespace.to_owned(),
        )]))
    }
}

fn review(object: &Value, operation: &str, old: Option<&Value>) -> Vec<u8> {
    let kind = object["kind"].as_str().unwrap();
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", "v1"),
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "adversarial",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "x"},
            "name": object["metadata"]["name"],
            "namespace": "kuberay",
            "operation": operation,
            "userInfo": {"username": "tenant"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    }))
    .unwrap()
}

/// The webhook's answer to `object`: mutate, apply the patch, validate. Returns whether it is
/// allowed and the denying rules.
fn through_webhook(object: &Value, live: &Live) -> (bool, Vec<String>, bool) {
    let engine = engine();
    let (mutated, _) = admission::review_live(
        &engine,
        live,
        Endpoint::Mutate,
        &review(object, "CREATE", None),
    )
    .unwrap();
    let mutated: Value = serde_json::from_slice(&mutated).unwrap();
    let patched = match mutated["response"]["patch"].as_str() {
        Some(patch) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            apply(object, &patch)
        }
        None => object.clone(),
    };
    let patched_anything = mutated["response"]["patch"].is_string();
    let (validated, outcome) = admission::review_live(
        &engine,
        live,
        Endpoint::Validate,
        &review(&patched, "CREATE", None),
    )
    .unwrap();
    let validated: Value = serde_json::from_slice(&validated).unwrap();
    let denied: Vec<String> = outcome
        .violations
        .iter()
        .filter(|v| v.action == raygate::Action::Deny)
        .map(|v| v.rule.as_str().to_owned())
        .collect();
    (
        validated["response"]["allowed"] == json!(true),
        denied,
        patched_anything,
    )
}

/// `raygate check` on the object beside a NetworkPolicy covering its cluster: its exit code
/// and the denying rules.
fn through_check(object: &Value) -> (i32, Vec<String>) {
    let name = object["metadata"]["labels"]["ray.io/cluster"]
        .as_str()
        .or(object["metadata"]["name"].as_str())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.yaml");
    let text = format!(
        "{}\n---\n{}\n",
        serde_json::to_string(object).unwrap(),
        serde_json::to_string(&network_policy(name)).unwrap()
    );
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raygate"))
        .args(["check", "-o", "json", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let denied = report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["violations"].as_array().cloned().unwrap_or_default())
        .filter(|v| v["action"] == "deny")
        .map(|v| v["rule"].as_str().unwrap().to_owned())
        .collect();
    (out.status.code().unwrap_or(-1), denied)
}

/// The object is denied for `rule` by both `raygate check` and the webhook.
fn assert_denied(case: &str, object: &Value, rule: &str) {
    let (code, denied) = through_check(object);
    assert_eq!(
        code, 1,
        "{case}: raygate check exit {code}, denied {denied:?}"
    );
    assert!(
        denied.iter().any(|r| r == rule),
        "{case}: raygate check denied {denied:?}, not {rule}"
    );
    let name = object["metadata"]["labels"]["ray.io/cluster"]
        .as_str()
        .or(object["metadata"]["name"].as_str())
        .unwrap();
    let (allowed, denied, _) = through_webhook(object, &Live::covering(name));
    assert!(!allowed, "{case}: the webhook admitted it");
    assert!(
        denied.iter().any(|r| r == rule),
        "{case}: the webhook denied {denied:?}, not {rule}"
    );
}

/// Sets `pointer` to `value`, creating missing objects on the way (an index one past the
/// end of a list appends).
fn put(object: &mut Value, pointer: &str, value: Value) {
    let mut node = object;
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, token) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        node = match node {
            Value::Array(items) => {
                let index: usize = token.parse().expect("an index");
                if index == items.len() {
                    items.push(if last { value.clone() } else { json!({}) });
                }
                &mut items[index]
            }
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .unwrap()
                    .entry(token.clone())
                    .or_insert_with(|| json!({}))
            }
        };
        if last {
            *node = value.clone();
        }
    }
}

fn with(mut object: Value, edits: &[(&str, Value)]) -> Value {
    for (pointer, value) in edits {
        put(&mut object, pointer, value.clone());
    }
    object
}

fn overwrite_cmd(mut object: Value) -> Value {
    object["metadata"]["annotations"] = json!({"ray.io/overwrite-container-cmd": "true"});
    object
}

/// The compliant cluster passes both ways: the cases below fail for what they change.
#[test]
fn the_compliant_cluster_is_admitted_both_ways() {
    let (code, denied) = through_check(&cluster("c"));
    assert_eq!(code, 0, "{denied:?}");
    let (allowed, denied, _) = through_webhook(&cluster("c"), &Live::covering("c"));
    assert!(allowed, "{denied:?}");
}

/// Class 2: host exposure.
#[test]
fn host_exposure_is_denied() {
    let c = cluster("c");
    assert_denied(
        "hostNetwork on the head",
        &with(
            c.clone(),
            &[(&format!("{HEAD}/template/spec/hostNetwork"), json!(true))],
        ),
        "ports/host-network",
    );
    assert_denied(
        "hostPort on a worker",
        &with(
            c.clone(),
            &[(
                &format!("{WORKER_POD}/containers/0/ports/0/hostPort"),
                json!(8081),
            )],
        ),
        "ports/host-port",
    );
    assert_denied(
        "a NodePort head Service",
        &with(
            c.clone(),
            &[(&format!("{HEAD}/serviceType"), json!("NodePort"))],
        ),
        "ports/node-port-service",
    );
    assert_denied(
        "a nodePort in headService",
        &with(
            c.clone(),
            &[(
                &format!("{HEAD}/headService"),
                json!({"spec": {"ports": [{"name": "x", "port": 6380, "nodePort": 30001}]}}),
            )],
        ),
        "ports/node-port-service",
    );
    let mut pod = ray_pod("c", false);
    pod["spec"]["hostNetwork"] = json!(true);
    assert_denied("hostNetwork on a Ray Pod", &pod, "ports/host-network");
}

/// Class 3: rayStartParams values reach KubeRay's `bash -c` unquoted.
#[test]
fn start_param_values_that_bash_would_split_are_denied() {
    let c = cluster("c");
    for (key, value) in [
        ("temp-dir", "/tmp/ray --port=6379"),
        ("port", " 6380"),
        ("port", "6380 #"),
        ("temp-dir", "$(echo --port=6379)"),
        ("temp-dir", "/tmp/ray;ray start --port=6379"),
        ("temp-dir", "/tmp/*"),
        ("dashboard-grpc-port", "9999"),
        ("node-ip-address", "true"),
    ] {
        assert_denied(
            &format!("rayStartParams.{key}: {value:?}"),
            &with(
                c.clone(),
                &[(&format!("{HEAD}/rayStartParams/{key}"), json!(value))],
            ),
            "ports/start-command",
        );
    }
}

/// Class 4: own `ray start` commands are read as bash and click read them.
#[test]
fn own_commands_are_read_as_bash_and_click_read_them() {
    let plan = "--head --block --ray-client-server-port=10002 --dashboard-port=8266 \
        --metrics-export-port=8081 --dashboard-agent-grpc-port=8601 \
        --dashboard-agent-listen-port=52365 --object-manager-port=8301 --node-manager-port=8401 \
        --runtime-env-agent-port=8501 --min-worker-port=10003 --max-worker-port=19999";
    let own = |script: String, annotated: bool| {
        let mut c = cluster("c");
        put(
            &mut c,
            &format!("{HEAD_RAY}/command"),
            json!(["/bin/bash", "-c", "--"]),
        );
        put(&mut c, &format!("{HEAD_RAY}/args"), json!([script]));
        put(
            &mut c,
            &format!("{WORKER_POD}/containers/0/command"),
            json!(["/bin/bash", "-c", "$KUBERAY_GEN_RAY_START_CMD"]),
        );
        if annotated { overwrite_cmd(c) } else { c }
    };
    // click keeps the last of a repeated option.
    assert_denied(
        "a repeated --port",
        &own(format!("ray start {plan} --port=6380 --port=6379"), false),
        "ports/ray-start-param",
    );
    assert_denied(
        "--port as a separate word",
        &own(format!("ray start {plan} --port 6379"), true),
        "ports/ray-start-param",
    );
    // `ray  start` is `ray start` to bash: run as is, its port is read...
    assert_denied(
        "two spaces, run as written",
        &own(format!("ray  start {plan} --port=6379"), true),
        "ports/ray-start-param",
    );
    // ...and KubeRay, not finding "ray start" in it, runs it before its own: two of them.
    assert_denied(
        "two spaces, before KubeRay's",
        &own(format!("ray  start {plan} --port=6379"), false),
        "ports/start-command",
    );
    for (case, script) in [
        (
            "a second ray start",
            format!("ray stop; ray start {plan} --port=6379"),
        ),
        (
            "python -m",
            format!("python -m ray.scripts.scripts start {plan} --port=6379"),
        ),
        (
            "a variable",
            format!("RAY_CMD='ray start {plan} --port=6379'; $RAY_CMD"),
        ),
        (
            "flags after the generated command",
            "$KUBERAY_GEN_RAY_START_CMD --port=6379 extra".to_owned(),
        ),
        ("a pipe", format!("ray start {plan} --port=6380 | tee x")),
        ("a subshell", format!("(ray start {plan} --port=6380)")),
        (
            "an unknown option",
            format!("ray start {plan} --port=6380 --gcs-port=1"),
        ),
    ] {
        assert_denied(case, &own(script, true), "ports/start-command");
    }
    // A comment that names the generated command does not make the command generated.
    let c = own(
        format!("# not $KUBERAY_GEN_RAY_START_CMD\nray start {plan} --port=6379"),
        false,
    );
    assert_denied(
        "a comment naming the generated command",
        &c,
        "ports/ray-start-param",
    );
}

/// Class 5: ports off the plan.
#[test]
fn unplanned_ports_are_denied() {
    let c = cluster("c");
    assert_denied(
        "an extra port on the Ray container",
        &with(
            c.clone(),
            &[(
                &format!("{HEAD_RAY}/ports/5"),
                json!({"name": "debug", "containerPort": 9999}),
            )],
        ),
        "ports/unplanned-port",
    );
    let sidecar = json!({
        "name": "sidecar", "image": "busybox",
        "ports": [{"containerPort": 2222}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
    });
    assert_denied(
        "a sidecar's port",
        &with(
            c.clone(),
            &[(&format!("{WORKER_POD}/containers/1"), sidecar.clone())],
        ),
        "ports/unplanned-port",
    );
    let mut native = sidecar.clone();
    native["restartPolicy"] = json!("Always");
    assert_denied(
        "a native sidecar's port",
        &with(
            c.clone(),
            &[(&format!("{WORKER_POD}/initContainers"), json!([native]))],
        ),
        "ports/unplanned-port",
    );
    assert_denied(
        "redis-shard-ports",
        &with(
            c.clone(),
            &[(
                &format!("{HEAD}/rayStartParams/redis-shard-ports"),
                json!("7000"),
            )],
        ),
        "ports/unplanned-port",
    );
    assert_denied(
        "Serve's port moved by a variable",
        &with(
            c.clone(),
            &[(
                &format!("{WORKER_POD}/containers/0/env"),
                json!([{"name": "RAY_SERVE_DEFAULT_HTTP_PORT", "value": "9000"}]),
            )],
        ),
        "ports/unplanned-port",
    );
    assert_denied(
        "the autoscaler's metrics port moved in autoscalerOptions",
        &with(
            c.clone(),
            &[(
                "/spec/autoscalerOptions",
                json!({"env": [{"name": "AUTOSCALER_METRIC_PORT", "value": "1234"}]}),
            )],
        ),
        "ports/unplanned-port",
    );
    assert_denied(
        "variables from envFrom",
        &with(
            c.clone(),
            &[(
                &format!("{HEAD_RAY}/envFrom"),
                json!([{"configMapRef": {"name": "ports"}}]),
            )],
        ),
        "ports/unplanned-port",
    );
}

/// Class 6: resources that are no limit.
#[test]
fn resources_that_are_no_limit_are_denied() {
    let c = cluster("c");
    for (field, value) in [
        ("limits/cpu", "0"),
        ("limits/memory", "1"),
        ("requests/cpu", "1n"),
        ("limits/cpu", "-2"),
    ] {
        assert_denied(
            &format!("{field}: {value}"),
            &with(
                c.clone(),
                &[(&format!("{HEAD_RAY}/resources/{field}"), json!(value))],
            ),
            "resources/below-minimum",
        );
    }
    assert_denied(
        "autoscalerOptions.resources: {}",
        &with(
            c.clone(),
            &[
                ("/spec/enableInTreeAutoscaling", json!(true)),
                ("/spec/autoscalerOptions", json!({"resources": {}})),
            ],
        ),
        "resources/missing",
    );
    // Under pod-level limits nothing is filled: the container stays denied, not shrunk.
    let mut limited = c.clone();
    remove(&mut limited, &format!("{HEAD_RAY}/resources"));
    put(
        &mut limited,
        &format!("{HEAD}/template/spec/resources"),
        json!({"limits": {"cpu": "500m", "memory": "1Gi"}}),
    );
    assert_denied(
        "a fill beyond pod-level limits",
        &limited,
        "resources/missing",
    );
}

/// Class 10: placement that only looks pinned, and the GPU exception.
#[test]
fn placement_needs_the_worker_label_and_whole_gpus_on_workers() {
    let mut c = cluster("c");
    remove(&mut c, &format!("{WORKER_POD}/nodeSelector"));
    put(
        &mut c,
        &format!("{WORKER_POD}/affinity"),
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["gpu-node"]}]}]}}}),
    );
    assert_denied(
        "hostname NotIn [gpu-node]",
        &c,
        "placement/not-pinned-to-workers",
    );

    let gpu_on_master = |pointer: &str, gpu: &str| {
        let mut c = cluster("c");
        put(&mut c, &format!("{pointer}/nodeName"), json!("gpu-node"));
        put(
            &mut c,
            &format!("{pointer}/containers/0/resources/limits/nvidia.com~1gpu"),
            json!(gpu),
        );
        put(
            &mut c,
            &format!("{pointer}/containers/0/resources/requests/nvidia.com~1gpu"),
            json!(gpu),
        );
        c
    };
    assert_denied(
        "a head with a GPU on the master",
        &gpu_on_master(&format!("{HEAD}/template/spec"), "1"),
        "placement/node-name",
    );
    assert_denied(
        "a worker with 1m of a GPU on the master",
        &gpu_on_master(WORKER_POD, "1m"),
        "placement/node-name",
    );
    // A worker group with a whole GPU may use the master, as the policy allows.
    let (code, denied) = through_check(&gpu_on_master(WORKER_POD, "1"));
    assert_eq!(code, 0, "{denied:?}");
}

/// Class 8: Pods of a live cluster raygate never marked (created before it enforced).
#[test]
fn pods_of_unmarked_clusters_keep_placement_and_host_denials_and_are_never_patched() {
    let live_cluster: DynamicObject = serde_json::from_value(cluster("c")).unwrap();
    let live = Live {
        clusters: vec![Arc::new(live_cluster)],
        ..Live::covering("c")
    };
    let mut pod = ray_pod("c", false);
    pod["spec"]["nodeName"] = json!("gpu-node");
    let (allowed, denied, _) = through_webhook(&pod, &live);
    assert!(
        !allowed && denied.contains(&"placement/node-name".to_owned()),
        "{denied:?}"
    );

    let mut pod = ray_pod("c", false);
    pod["spec"]["hostNetwork"] = json!(true);
    let (allowed, denied, _) = through_webhook(&pod, &live);
    assert!(
        !allowed && denied.contains(&"ports/host-network".to_owned()),
        "{denied:?}"
    );

    // Zero limits the cluster's template never had: denied, not spared.
    let mut pod = ray_pod("c", false);
    pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("0");
    let (allowed, denied, _) = through_webhook(&pod, &live);
    assert!(
        !allowed && denied.contains(&"resources/below-minimum".to_owned()),
        "{denied:?}"
    );

    // A Pod that lacks what the template lacks too is spared, and never patched.
    let mut legacy = cluster("c");
    remove(&mut legacy, &format!("{WORKER_POD}/containers/0/resources"));
    let live = Live {
        clusters: vec![Arc::new(serde_json::from_value(legacy).unwrap())],
        ..Live::covering("c")
    };
    let mut pod = ray_pod("c", false);
    pod["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("resources");
    let (allowed, denied, patched) = through_webhook(&pod, &live);
    assert!(allowed, "{denied:?}");
    assert!(!patched, "a Pod of an unmarked cluster was patched");
}
