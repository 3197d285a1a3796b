//! Test builders: objects that satisfy the built-in policy, for tests to break one way at a time.
#![allow(dead_code)]

pub mod serve;

use json_patch::Patch;
use raygate::engine::{Context, Decision, Engine};
use raygate::policy::Policy;
use raygate::ray::ObjectRef;
use serde_json::{Value, json};

pub fn engine() -> Engine {
    Engine::new(Policy::built_in())
}

pub fn ray_container(name: &str, head: bool) -> Value {
    let mut ports = vec![json!({"name": "metrics", "containerPort": 8081})];
    if head {
        ports = vec![
            json!({"name": "gcs-server", "containerPort": 6380}),
            json!({"name": "client", "containerPort": 10002}),
            json!({"name": "dashboard", "containerPort": 8266}),
            json!({"name": "serve", "containerPort": 8001}),
            json!({"name": "metrics", "containerPort": 8081}),
        ];
    }
    json!({
        "name": name,
        "image": "rayproject/ray:2.52.0",
        "ports": ports,
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"}
        }
    })
}

fn node_params(head: bool) -> Value {
    let mut params = json!({
        "metrics-export-port": "8081",
        "object-manager-port": "8301",
        "node-manager-port": "8401",
        "runtime-env-agent-port": "8501",
        "dashboard-agent-grpc-port": "8601",
        "dashboard-agent-listen-port": "52365",
        "min-worker-port": "10003",
        "max-worker-port": "19999"
    });
    if head {
        params["port"] = "6380".into();
        params["ray-client-server-port"] = "10002".into();
        params["dashboard-port"] = "8266".into();
        params["dashboard-host"] = "0.0.0.0".into();
    }
    params
}

pub fn worker_group(name: &str) -> Value {
    json!({
        "groupName": name,
        "replicas": 1, "minReplicas": 1, "maxReplicas": 3,
        "rayStartParams": node_params(false),
        "template": {"spec": {
            "nodeSelector": {"node-role": "worker"},
            "containers": [ray_container("ray-worker", false)]
        }}
    })
}

/// A RayCluster that breaks no rule of the built-in policy (given [`network_policy`]).
pub fn cluster(name: &str) -> Value {
    json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": "kuberay"},
        "spec": {
            "rayVersion": "2.52.0",
            "headGroupSpec": {
                "rayStartParams": node_params(true),
                "template": {"spec": {
                    "nodeSelector": {"node-role": "worker"},
                    "containers": [ray_container("ray-head", true)]
                }}
            },
            "workerGroupSpecs": [worker_group("cpu")]
        }
    })
}

/// The planned ports and ranges as NetworkPolicy ports.
pub fn planned_policy_ports() -> Value {
    json!([
        {"port": 6380}, {"port": 10002}, {"port": 8266}, {"port": 8001}, {"port": 8081},
        {"port": 8301, "endPort": 8400}, {"port": 8401, "endPort": 8500},
        {"port": 8501, "endPort": 8600}, {"port": 8601}, {"port": 52365},
        {"port": 10003, "endPort": 19999}
    ])
}

/// A NetworkPolicy in `kuberay` that admits all TCP between the pods of `cluster`, as Ray's
/// direct worker-to-worker calls need.
pub fn network_policy(cluster: &str) -> Value {
    let selector = json!({"matchLabels": {"ray.io/cluster": cluster}});
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("{cluster}-ray"), "namespace": "kuberay"},
        "spec": {
            "podSelector": selector,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": selector}]}]
        }
    })
}

/// A Pod as the KubeRay operator creates it for `cluster`.
pub fn ray_pod(cluster: &str, head: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{cluster}-{}", if head { "head-x" } else { "worker-x" }),
            "namespace": "kuberay",
            "labels": {
                "ray.io/cluster": cluster,
                "ray.io/node-type": if head { "head" } else { "worker" },
                "ray.io/group": if head { "headgroup" } else { "cpu" }
            }
        },
        "spec": {
            "nodeSelector": {"node-role": "worker"},
            "containers": [ray_container(if head { "ray-head" } else { "ray-worker" }, head)]
        }
    })
}

pub fn evaluate_with(engine: &Engine, object: &Value, policies: &[Value]) -> Decision {
    let policies: Vec<_> = policies
        .iter()
        .map(|p| std::sync::Arc::new(serde_json::from_value(p.clone()).expect("a NetworkPolicy")))
        .collect();
    let view = ObjectRef::from_value(object).expect("an object with a kind");
    engine.evaluate(&view, &Context::complete(&policies))
}

/// Evaluates with the built-in policy and a NetworkPolicy covering the object's cluster.
pub fn evaluate(object: &Value) -> Decision {
    let name = object["metadata"]["labels"]["ray.io/cluster"]
        .as_str()
        .or(object["metadata"]["name"].as_str())
        .unwrap_or("");
    evaluate_with(&engine(), object, &[network_policy(name)])
}

pub fn rules(decision: &Decision) -> Vec<&'static str> {
    decision.violations.iter().map(|v| v.rule).collect()
}

pub fn set(object: &mut Value, pointer: &str, value: Value) {
    *object
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the object")) = value;
}

pub fn remove(object: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = object.pointer_mut(parent).unwrap();
    match parent {
        Value::Object(map) => {
            map.remove(key).unwrap_or_else(|| panic!("no {pointer}"));
        }
        Value::Array(items) => {
            items.remove(key.parse().unwrap());
        }
        _ => panic!("{pointer} is not in a container"),
    }
}

pub fn apply(object: &Value, patch: &Patch) -> Value {
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch.0).expect("the patch applies");
    patched
}

pub const HEAD: &str = "/spec/headGroupSpec";
pub const HEAD_POD: &str = "/spec/headGroupSpec/template/spec";
pub const HEAD_RAY: &str = "/spec/headGroupSpec/template/spec/containers/0";
pub const WORKER: &str = "/spec/workerGroupSpecs/0";
pub const WORKER_POD: &str = "/spec/workerGroupSpecs/0/template/spec";
pub const WORKER_RAY: &str = "/spec/workerGroupSpecs/0/template/spec/containers/0";
