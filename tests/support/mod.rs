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
    let mut container = json!({
        "name": name,
        "image": "rayproject/ray:2.52.0",
        "ports": ports,
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"}
        }
    });
    if head {
        // Without probes KubeRay v1.5.0 adds its own, on the dashboard's default 8265.
        container["readinessProbe"] = head_probe(false);
        container["livenessProbe"] = head_probe(true);
    }
    container
}

/// The exec command of KubeRay v1.5.0's head probes, on the dashboard agent's 52365 and the
/// plan's dashboard port 8266.
pub const fn head_probe_command() -> &'static str {
    "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success && wget --tries 1 -T 10 -q -O- http://localhost:8266/api/gcs_healthz | grep success"
}

/// KubeRay v1.5.0's head readiness (or liveness) probe on the plan's dashboard port 8266, as
/// raygate fills it in.
pub fn head_probe(liveness: bool) -> Value {
    let (delay, failures) = if liveness { (30, 120) } else { (10, 10) };
    json!({
        "exec": {"command": ["bash", "-c", head_probe_command()]},
        "initialDelaySeconds": delay,
        "timeoutSeconds": 5,
        "periodSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": failures
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

/// A Pod as KubeRay v1.5.0 builds it: [`ray_pod`] whose Ray container runs the generated
/// `ray start` line `start` (`ray start --head  --block  --port=6380 ...`), handed over in
/// `KUBERAY_GEN_RAY_START_CMD` as well.
pub fn kuberay_pod(cluster: &str, head: bool, start: &str) -> Value {
    let mut pod = ray_pod(cluster, head);
    let ray = &mut pod["spec"]["containers"][0];
    ray["command"] = json!(["/bin/bash", "-c", "--"]);
    ray["args"] = json!([format!("ulimit -n 65536; {start}")]);
    ray["env"] = json!([{"name": "KUBERAY_GEN_RAY_START_CMD", "value": start}]);
    pod
}

/// The generated `ray start` of the plan's head with in-tree autoscaling, its GCS on `port`.
pub fn head_start(port: u16) -> String {
    format!(
        "ray start --head  --block  --dashboard-agent-grpc-port=8601  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --dashboard-port=8266  --max-worker-port=19999  --metrics-export-port=8081  --min-worker-port=10003  --no-monitor  --node-manager-port=8401  --object-manager-port=8301  --port={port}  --ray-client-server-port=10002  --runtime-env-agent-port=8501  --num-cpus=2  --memory=4294967296 "
    )
}

/// KubeRay v1.5.0's autoscaler container (`BuildAutoscalerContainer`) on `image`.
pub fn autoscaler_container(image: &str) -> Value {
    json!({
        "name": "autoscaler",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/bash", "-lc", "--"],
        "args": ["ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"],
        "env": [
            {"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}},
            {"name": "RAY_CLUSTER_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "KUBERAY_CRD_VER", "value": "v1"}
        ],
        "resources": {
            "limits": {"cpu": "500m", "memory": "512Mi"},
            "requests": {"cpu": "500m", "memory": "512Mi"}
        }
    })
}

/// The head Pod KubeRay v1.5.0 builds for an autoscaling cluster whose GCS is on `port`, its
/// autoscaler on `image`.
pub fn autoscaling_head_pod(cluster: &str, port: u16, image: &str) -> Value {
    let mut pod = kuberay_pod(cluster, true, &head_start(port));
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(autoscaler_container(image));
    pod
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
    decision
        .violations
        .iter()
        .map(|v| v.rule.as_str())
        .collect()
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

/// The built-in policy's KubeRay operator Pod, as a peer in a policy of its own namespace.
pub fn operator_peer() -> Value {
    json!({"podSelector": {"matchLabels": {"app.kubernetes.io/component": "kuberay-operator"}}})
}

/// An ingress rule that admits the KubeRay operator's Pod (from its own namespace, kuberay)
/// on the named ports, e.g. `["dashboard"]`.
pub fn operator_ingress(ports: &[&str]) -> Value {
    let ports: Vec<Value> = ports.iter().map(|p| json!({"port": p})).collect();
    json!({"from": [operator_peer()], "ports": ports})
}
