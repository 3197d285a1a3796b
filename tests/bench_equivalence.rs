//! The Rego and CEL policies the benchmarks compare raygate with implement the same rules:
//! on the benchmark inputs and every KubeRay sample, all three reach the same verdict and
//! break the same rules (Rego also at the same JSON pointers).

#[path = "../benches/peers/mod.rs"]
mod peers;

use peers::{Cel, Rego, Verdict};

fn compare(name: &str, object: &serde_json::Value, rego: &mut Rego, cel: &Cel) -> Verdict {
    let engine = raygate::Engine::new(peers::policy());
    let ours = peers::raygate_verdict(&engine, object);
    let theirs = rego.verdict(object);
    assert_eq!(ours.findings, theirs.findings, "Rego on {name}");
    assert_eq!(ours.allowed, theirs.allowed, "Rego's verdict on {name}");
    let celv = cel.verdict(object);
    assert_eq!(ours.rules, celv.rules, "CEL on {name}");
    assert_eq!(ours.allowed, celv.allowed, "CEL's verdict on {name}");
    ours
}

#[test]
fn the_peers_agree_on_the_benchmark_inputs() {
    let mut rego = Rego::new();
    let cel = Cel::new();
    for input in peers::bench_inputs() {
        let verdict = compare(input.name, &input.object, &mut rego, &cel);
        if input.name.starts_with("compliant") {
            assert!(verdict.allowed, "{} is denied", input.name);
            assert!(
                verdict.rules.is_empty(),
                "{}: {:?}",
                input.name,
                verdict.rules
            );
        } else {
            assert!(!verdict.rules.is_empty(), "{} breaks no rule", input.name);
        }
    }
}

#[test]
fn the_synthetic_cluster_is_a_mebibyte_of_worker_groups() {
    let cluster = peers::synthetic_cluster(1 << 20);
    let size = serde_json::to_vec(&cluster).unwrap().len();
    assert!((1 << 20..(1 << 20) + 8192).contains(&size), "{size} bytes");
    assert!(
        cluster["spec"]["workerGroupSpecs"]
            .as_array()
            .unwrap()
            .len()
            > 300
    );
    assert_eq!(cluster, peers::synthetic_cluster(1 << 20), "deterministic");
}

#[test]
fn the_peers_agree_on_every_kuberay_sample() {
    let mut rego = Rego::new();
    let cel = Cel::new();
    let mut checked = 0;
    let mut allowed = 0;
    let mut rules = std::collections::BTreeSet::new();
    for (name, object) in peers::samples() {
        let verdict = compare(&name, &object, &mut rego, &cel);
        checked += 1;
        allowed += usize::from(verdict.allowed);
        rules.extend(verdict.rules);
    }
    assert!(checked >= 100, "only {checked} sample objects");
    // The samples exercise most rules, so agreement means something.
    assert!(rules.len() >= 7, "{rules:?}");
    assert!(allowed > 0 && allowed < checked);
}

/// Objects written to break each rule one way at a time, and one that breaks none.
#[test]
fn the_peers_agree_on_targeted_objects() {
    use serde_json::json;
    let mut rego = Rego::new();
    let cel = Cel::new();
    let probe = |delay: u32, failures: u32| {
        json!({"exec": {"command": ["bash", "-c", "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success && wget --tries 1 -T 10 -q -O- http://localhost:8266/api/gcs_healthz | grep success"]},
            "initialDelaySeconds": delay, "timeoutSeconds": 5, "periodSeconds": 5,
            "successThreshold": 1, "failureThreshold": failures})
    };
    let compliant = json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {"name": "ok", "namespace": "kuberay"},
        "spec": {
            "headGroupSpec": {
                "rayStartParams": {"port": "6380", "ray-client-server-port": "10002", "dashboard-port": "8266",
                    "metrics-export-port": "8081", "object-manager-port": "8301",
                    "node-manager-port": "8401", "runtime-env-agent-port": "8501",
                    "dashboard-agent-grpc-port": "8601", "dashboard-agent-listen-port": "52365",
                    "min-worker-port": "10003", "max-worker-port": "19999"},
                "template": {"spec": {"nodeSelector": {"node-role": "worker"}, "containers": [{
                    "name": "ray-head", "image": "rayproject/ray:2.52.0",
                    "ports": [{"name": "gcs-server", "containerPort": 6380}, {"name": "client", "containerPort": 10002},
                        {"name": "dashboard", "containerPort": 8266}, {"name": "serve", "containerPort": 8001},
                        {"name": "metrics", "containerPort": 8081}],
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
                    // KubeRay's probes on the plan's dashboard port (ports/probe-port).
                    "readinessProbe": probe(10, 10),
                    "livenessProbe": probe(30, 120)
                }]}}
            },
            "workerGroupSpecs": []
        }
    });
    let ours = compare("compliant", &compliant, &mut rego, &cel);
    assert!(ours.allowed && ours.rules.is_empty(), "{ours:?}");

    let head = "/spec/headGroupSpec";
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("/rayStartParams/port", json!(6379)),
        ("/rayStartParams/node-manager-port", json!("9000")),
        ("/rayStartParams/min-worker-port", json!("8000")),
        ("/rayStartParams/max-worker-port", json!("8350")),
        ("/rayStartParams/max-worker-port", json!("20000")),
        ("/rayStartParams/min-worker-port", json!("10002")),
        ("/rayStartParams/min-worker-port", json!("12000")),
        ("/rayStartParams/min-worker-port", json!("any")),
        ("/rayStartParams/dashboard-agent-grpc-port", json!("0")),
        (
            "/template/spec/containers/0/ports/3/name",
            json!("ray-serve"),
        ),
        (
            "/template/spec/containers/0/ports/4/containerPort",
            json!(8080),
        ),
        ("/template/spec/containers/0/ports/0/name", json!("gcs")),
        ("/template/spec/nodeName", json!("gpu-node")),
        ("/template/spec/nodeName", json!("worker-1")),
        (
            "/template/spec/nodeSelector",
            json!({"kubernetes.io/hostname": "gpu-node"}),
        ),
        ("/template/spec/nodeSelector", json!({})),
        (
            "/template/spec/tolerations",
            json!([{"operator": "Exists"}]),
        ),
        (
            "/template/spec/affinity",
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}]}}}),
        ),
        (
            "/template/spec/affinity",
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["gpu-node"]}]}]}}}),
        ),
        (
            "/template/spec/containers/0/resources/limits/memory",
            json!("1Gi"),
        ),
        (
            "/template/spec/containers/0/resources/limits/cpu",
            json!("lots"),
        ),
        (
            "/template/spec/containers/0/resources/requests",
            json!({"cpu": "500m", "nvidia.com/gpu": 1}),
        ),
        (
            "/template/spec/initContainers",
            json!([{"name": "init", "ports": [{"containerPort": 1, "hostPort": 8265}]}]),
        ),
    ];
    for (pointer, value) in cases {
        let mut object = compliant.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = object.pointer_mut(&format!("{head}{parent}")).unwrap();
        match target {
            serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value.clone(),
            serde_json::Value::Object(map) => {
                map.insert(key.to_owned(), value.clone());
            }
            _ => panic!("{pointer} is not in a container"),
        }
        compare(&format!("{pointer} = {value}"), &object, &mut rego, &cel);
    }
}
