//! The benchmark inputs and the peers that evaluate the same rules: Rego through `regorus`
//! (Gatekeeper's language) and CEL through `cel` (ValidatingAdmissionPolicy's language).
//!
//! Shared by `benches/engine.rs` and `tests/bench_equivalence.rs`.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raygate::engine::{Context, Engine};
use raygate::ray::ObjectRef;
use serde_json::{Value, json};

const REGO: &str = include_str!("../policies/raygate.rego");
const CEL: &str = include_str!("../policies/raygate.cel.yaml");

/// Rules the peers leave out: NetworkPolicy coverage needs the cluster, a RayService's
/// `serveConfigV2` is YAML inside a string, which CEL cannot parse, and reading the command
/// line as bash and click do (`start-command`, the port options of `unplanned-port`) is a
/// parser neither language has; the probes' and the autoscaler's ports are read from that
/// command line too. Host exposure and declared ports are not written in them yet.
const LEFT_OUT: [&str; 8] = [
    "network-policy/",
    "ports/serve-config",
    "ports/start-command",
    "ports/unplanned-port",
    "ports/host-",
    "ports/node-port-service",
    "ports/probe-port",
    "ports/autoscaler-gcs-port",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// --- inputs ----------------------------------------------------------------------------------

/// One benchmark input: the object and the AdmissionReview that carries it.
pub struct Input {
    pub name: &'static str,
    pub object: Value,
    pub review: Vec<u8>,
}

impl Input {
    pub fn new(name: &'static str, object: Value) -> Input {
        let review = review(&object, name);
        Input {
            name,
            object,
            review,
        }
    }
}

/// The four inputs of the benchmarks.
pub fn bench_inputs() -> Vec<Input> {
    vec![
        Input::new("typical-raycluster", typical_cluster()),
        Input::new("compliant-raycluster", compliant_cluster()),
        Input::new("largest-sample", largest_sample().1),
        Input::new("synthetic-1mib", synthetic_cluster(1 << 20)),
        Input::new("ray-pod", ray_pod()),
    ]
}

/// Every object of every KubeRay sample that parses, with its source.
pub fn samples() -> Vec<(String, Value)> {
    let dir = root().join("tests/fixtures/kuberay/samples");
    let files = raygate::manifest::expand(&[dir]).expect("the samples are readable");
    let mut out = Vec::new();
    for path in files {
        let Ok(file) = raygate::manifest::read(&path) else {
            continue; // clusterloader2 templates are not YAML until rendered
        };
        let name = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        for (i, document) in file.documents.into_iter().enumerate() {
            if let Some(value) = document.value {
                out.push((format!("{name}#{i}"), value));
            }
        }
    }
    out
}

fn sample(file: &str) -> Value {
    let path = root().join("tests/fixtures/kuberay/samples").join(file);
    let file = raygate::manifest::read(&path).expect("the sample parses");
    file.documents
        .into_iter()
        .filter_map(|d| d.value)
        .find(|v| v["kind"] == "RayCluster")
        .expect("a RayCluster in the sample")
}

/// A typical RayCluster: KubeRay's `ray-cluster.complete.yaml`.
pub fn typical_cluster() -> Value {
    sample("ray-cluster.complete.yaml")
}

/// The typical cluster as a team following the plan writes it, the common case in
/// production: the head's ports on the plan's numbers, and everything raygate fills in
/// filled in. It breaks no rule; its NetworkPolicy coverage needs the cluster, so a check
/// without one reports it as not verified.
pub fn compliant_cluster() -> Value {
    let mut cluster = typical_cluster();
    cluster["metadata"]["name"] = json!("raycluster-compliant");
    let ports = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array_mut()
        .expect("the head declares its ports");
    for port in ports {
        let (name, planned) = match port["name"].as_str() {
            Some("gcs" | "gcs-server") => ("gcs-server", 6380),
            Some("dashboard") => ("dashboard", 8266),
            Some("client") => ("client", 10002),
            _ => continue,
        };
        port["name"] = json!(name);
        port["containerPort"] = json!(planned);
    }
    let engine = Engine::new(policy());
    let view = ObjectRef::from_value(&cluster).expect("a Ray object");
    let patch = engine.evaluate(&view, &Context::WITHOUT_CLUSTER).patch;
    json_patch::patch(&mut cluster, &patch.0).expect("raygate's fill-ins apply");
    cluster
}

fn is_ray_object(value: &Value) -> bool {
    value["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("ray.io/"))
}

/// The built-in policy, with room for the synthetic cluster's worker groups: the benchmarks
/// and the peers compare judging it, not the size limit that denies it unjudged.
pub fn policy() -> raygate::Policy {
    // The peers know one Ray; the warning that a group runs an unmeasured one is raygate's.
    let text = raygate::policy::BUILT_IN_POLICY
        .replace("maxWorkerGroups: 64", "maxWorkerGroups: 10000")
        .replace(
            "  ruleActions:\n",
            "  ruleActions:\n    ports/unmeasured-ray: \"off\"\n",
        );
    raygate::Policy::from_yaml(&text, "built-in, maxWorkerGroups 10000").expect("a valid policy")
}

/// The largest Ray object among the KubeRay samples (by its JSON size).
pub fn largest_sample() -> (String, Value) {
    samples()
        .into_iter()
        .filter(|(_, v)| is_ray_object(v))
        .max_by_key(|(name, v)| (serde_json::to_vec(v).map_or(0, |b| b.len()), name.clone()))
        .expect("Ray objects among the samples")
}

/// A RayCluster of at least `bytes` of JSON: the typical cluster with worker groups added
/// until it is that large. Deterministic; every fourth group breaks a rule in its own way.
pub fn synthetic_cluster(bytes: usize) -> Value {
    let mut cluster = typical_cluster();
    cluster["metadata"]["name"] = json!("synthetic-large");
    let template = cluster["spec"]["workerGroupSpecs"][0].clone();
    cluster["spec"]["workerGroupSpecs"] = json!([]);
    // The JSON of an array is its items, the commas between them and two brackets.
    let mut size = serde_json::to_vec(&cluster).map_or(0, |b| b.len()) - 1;
    let mut groups = Vec::new();
    let mut i = 0usize;
    while size < bytes {
        let mut group = template.clone();
        group["groupName"] = json!(format!("group-{i:04}"));
        group["replicas"] = json!(1 + i % 8);
        group["maxReplicas"] = json!(8 + i % 8);
        group["rayStartParams"] = json!({
            "metrics-export-port": "8081",
            "object-manager-port": (8301 + i % 100).to_string(),
            "node-manager-port": (8401 + i % 100).to_string(),
            "runtime-env-agent-port": (8501 + i % 100).to_string(),
            "dashboard-agent-grpc-port": "8601",
            "min-worker-port": "10003",
            "max-worker-port": "19999",
        });
        {
            let pod = &mut group["template"]["spec"];
            pod["containers"][0]["env"] = json!([
                {"name": "GROUP_INDEX", "value": i.to_string()},
                {"name": "RAY_BACKEND_LOG_LEVEL", "value": "warning"},
            ]);
            pod["nodeSelector"] =
                json!({"node-role": "worker", "pool": format!("pool-{}", i % 16)});
            match i % 4 {
                1 => {
                    if let Some(resources) = pod["containers"][0]["resources"].as_object_mut() {
                        resources.remove("limits");
                    }
                }
                2 => {
                    pod["tolerations"] =
                        json!([{"key": "node-role.kubernetes.io/master", "operator": "Exists"}])
                }
                _ => {}
            }
        }
        if i % 4 == 3 {
            group["rayStartParams"]["node-manager-port"] = json!("9000");
        }
        size += serde_json::to_vec(&group).map_or(0, |b| b.len()) + 1;
        groups.push(group);
        i += 1;
    }
    cluster["spec"]["workerGroupSpecs"] = Value::Array(groups);
    cluster
}

/// A worker Pod as the KubeRay operator creates it from the typical cluster's worker group.
pub fn ray_pod() -> Value {
    let cluster = typical_cluster();
    let name = cluster["metadata"]["name"]
        .as_str()
        .unwrap_or("raycluster")
        .to_owned();
    let group = &cluster["spec"]["workerGroupSpecs"][0];
    let group_name = group["groupName"].as_str().unwrap_or("workers");
    let mut spec = group["template"]["spec"].clone();
    let container = &mut spec["containers"][0];
    container["args"] = json!([format!(
        "ulimit -n 65536; ray start --address={name}-head-svc.default.svc.cluster.local:6379 \
         --block --dashboard-agent-listen-port=52365 --memory=2147483648 --metrics-export-port=8080 --num-cpus=1"
    )]);
    container["command"] = json!(["/bin/bash", "-lc", "--"]);
    container["env"] = json!([
        {"name": "FQ_RAY_IP", "value": format!("{name}-head-svc.default.svc.cluster.local")},
        {"name": "RAY_IP", "value": format!("{name}-head-svc")},
        {"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}},
        {"name": "RAY_CLOUD_INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "RAY_NODE_TYPE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/group']"}}},
        {"name": "KUBERAY_GEN_RAY_START_CMD", "value": "ray start --address=... --block"},
        {"name": "RAY_PORT", "value": "6379"},
        {"name": "RAY_ADDRESS", "value": format!("{name}-head-svc.default.svc.cluster.local:6379")},
        {"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "1"},
        {"name": "REDIS_PASSWORD"},
        {"name": "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "value": "1"}
    ]);
    container["livenessProbe"] = json!({
        "exec": {"command": ["bash", "-c", "wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success"]},
        "failureThreshold": 120, "initialDelaySeconds": 30, "periodSeconds": 5, "timeoutSeconds": 2
    });
    container["readinessProbe"] = container["livenessProbe"].clone();
    container["volumeMounts"] = json!([{"mountPath": "/dev/shm", "name": "shared-mem"}]);
    spec["volumes"] =
        json!([{"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]);
    spec["restartPolicy"] = json!("Never");
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{name}-{group_name}-worker-"),
            "namespace": "default",
            "labels": {
                "app.kubernetes.io/created-by": "kuberay-operator",
                "app.kubernetes.io/name": "kuberay",
                "ray.io/cluster": name,
                "ray.io/group": group_name,
                "ray.io/identifier": format!("{name}-worker"),
                "ray.io/is-ray-node": "yes",
                "ray.io/node-type": "worker"
            },
            "annotations": {"ray.io/ft-enabled": "false"},
            "ownerReferences": [{
                "apiVersion": "ray.io/v1", "kind": "RayCluster", "name": name,
                "uid": "6f0c3b1e-3f57-4d59-9b4c-2a1d5e7f9a10", "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": spec
    })
}

/// An admission.k8s.io/v1 AdmissionReview of a CREATE of `object`, as the API server sends it.
pub fn review(object: &Value, uid: &str) -> Vec<u8> {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = object["kind"].as_str().unwrap_or("");
    let resource = format!("{}s", kind.to_ascii_lowercase());
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("705ab4f5-6393-11e8-b7cc-42010a800002-{uid}"),
            "kind": gvk, "resource": gvr,
            "requestKind": gvk, "requestResource": gvr,
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "admin", "uid": "014fbff9a07c", "groups": ["system:authenticated", "my-admin-group"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    serde_json::to_vec(&body).expect("JSON")
}

// --- verdicts --------------------------------------------------------------------------------

/// What an engine decided about one object: allowed as given, and the rules it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub rules: BTreeSet<String>,
    /// (rule, JSON pointer) pairs; `None` for CEL, whose validations are per rule.
    pub findings: Option<BTreeSet<(String, String)>>,
}

const WARN_RULES: &[&str] = &["ports/serve-port-name"];

fn allowed_for(rules: &BTreeSet<String>) -> bool {
    rules.iter().all(|r| WARN_RULES.contains(&r.as_str()))
}

/// raygate's verdict on an object (without cluster context), network-policy rules left out.
pub fn raygate_verdict(engine: &Engine, object: &Value) -> Verdict {
    let Some(view) = ObjectRef::from_value(object) else {
        return Verdict {
            allowed: true,
            rules: BTreeSet::new(),
            findings: Some(BTreeSet::new()),
        };
    };
    let decision = engine.evaluate(&view, &Context::WITHOUT_CLUSTER);
    let kept = decision.violations.iter().filter(|v| {
        !LEFT_OUT
            .iter()
            .any(|left| v.rule.as_str().starts_with(left))
    });
    let findings: BTreeSet<(String, String)> = kept
        .clone()
        .map(|v| (v.rule.as_str().to_owned(), v.path.clone()))
        .collect();
    let rules: BTreeSet<String> = kept.map(|v| v.rule.as_str().to_owned()).collect();
    Verdict {
        allowed: decision.allowed_as_is(),
        rules,
        findings: Some(findings),
    }
}

// --- Rego ------------------------------------------------------------------------------------

/// raygate's rules in Rego, evaluated by regorus.
pub struct Rego {
    engine: regorus::Engine,
}

impl Default for Rego {
    fn default() -> Self {
        Self::new()
    }
}

impl Rego {
    pub fn new() -> Rego {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("raygate.rego".into(), REGO.into())
            .expect("the Rego policy compiles");
        Rego { engine }
    }

    /// The input for an object: an AdmissionReview as Gatekeeper and OPA receive it.
    pub fn input_for(object: &Value) -> regorus::Value {
        let body = review(object, "rego");
        regorus::Value::from_json_str(std::str::from_utf8(&body).expect("UTF-8")).expect("JSON")
    }

    /// Evaluates `data.raygate.violation` for an input.
    pub fn violations(&mut self, input: regorus::Value) -> regorus::Value {
        self.engine.set_input(input);
        self.engine
            .eval_rule("data.raygate.violation".into())
            .expect("the Rego policy evaluates")
    }

    pub fn verdict(&mut self, object: &Value) -> Verdict {
        let violations = self.violations(Self::input_for(object));
        let mut findings = BTreeSet::new();
        if let Ok(set) = violations.as_set() {
            for v in set.iter() {
                let rule = v["rule"].as_string().expect("rule").to_string();
                let path = v["path"].as_string().expect("path").to_string();
                findings.insert((rule, path));
            }
        }
        let rules: BTreeSet<String> = findings.iter().map(|(r, _)| r.clone()).collect();
        Verdict {
            allowed: allowed_for(&rules),
            rules,
            findings: Some(findings),
        }
    }

    /// AdmissionReview bytes in, AdmissionReview bytes out, as a Rego webhook answers.
    pub fn review(&mut self, body: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(body).expect("UTF-8");
        let input = regorus::Value::from_json_str(text).expect("an AdmissionReview");
        let uid = input["request"]["uid"]
            .as_string()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let violations = self.violations(input);
        let mut denials = Vec::new();
        let mut warnings = Vec::new();
        if let Ok(set) = violations.as_set() {
            for v in set.iter() {
                let rule = v["rule"]
                    .as_string()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let text = format!(
                    "{rule} at {}: {}",
                    v["path"]
                        .as_string()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    v["msg"]
                        .as_string()
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                );
                if WARN_RULES.contains(&rule.as_str()) {
                    warnings.push(text);
                } else {
                    denials.push(text);
                }
            }
        }
        respond(&uid, &denials, &warnings)
    }
}

/// The AdmissionReview answer the peers give, shaped like raygate's.
fn respond(uid: &str, denials: &[String], warnings: &[String]) -> Vec<u8> {
    let mut response = json!({"uid": uid, "allowed": denials.is_empty()});
    if !denials.is_empty() {
        let message = format!(
            "{} violation(s) of the Ray platform plan:\n- {}",
            denials.len(),
            denials
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n- ")
        );
        response["status"] = json!({"code": 403, "message": message, "reason": "Forbidden"});
    }
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings);
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
    .expect("JSON")
}

// --- CEL -------------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct CelPolicy {
    variables: Vec<CelVariable>,
    validations: Vec<CelValidation>,
}

#[derive(serde::Deserialize)]
struct CelVariable {
    name: String,
    expression: String,
}

#[derive(serde::Deserialize)]
struct CelValidation {
    rule: String,
    #[serde(default)]
    action: Option<String>,
    message: String,
    expression: String,
}

/// raygate's rules in CEL, evaluated by the `cel` crate the way a ValidatingAdmissionPolicy
/// is: variables in order, then every validation.
pub struct Cel {
    root: cel::Context<'static, 'static>,
    variables: Vec<(String, cel::Program)>,
    validations: Vec<(String, bool, String, cel::Program)>,
}

impl Default for Cel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cel {
    pub fn new() -> Cel {
        let policy: CelPolicy = serde_yaml_ng::from_str(CEL).expect("the CEL policy parses");
        let mut env = cel::Env::stdlib();
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension");
        let env = Arc::new(env);
        let compile = |source: &str| {
            env.compile(source)
                .unwrap_or_else(|e| panic!("CEL does not compile: {e}\n{source}"))
        };
        let variables = policy
            .variables
            .iter()
            .map(|v| (v.name.clone(), compile(&v.expression)))
            .collect();
        let validations = policy
            .validations
            .iter()
            .map(|v| {
                (
                    v.rule.clone(),
                    v.action.as_deref() == Some("warn"),
                    v.message.clone(),
                    compile(&v.expression),
                )
            })
            .collect();
        let mut root = cel::Context::with_env(env.clone());
        root.add_function("isQuantity", |v: cel::Value| quantity(&v).is_some())
            .expect("isQuantity");
        root.add_function("quantityLess", |a: cel::Value, b: cel::Value| {
            matches!((quantity(&a), quantity(&b)), (Some(a), Some(b)) if a < b)
        })
        .expect("quantityLess");
        root.add_function("quantityEqual", |a: cel::Value, b: cel::Value| {
            match (quantity(&a), quantity(&b)) {
                (Some(a), Some(b)) => a == b,
                _ => scalar_text(&a) == scalar_text(&b),
            }
        })
        .expect("quantityEqual");
        Cel {
            root,
            variables,
            validations,
        }
    }

    /// The `object` and `request` variables for an AdmissionReview.
    pub fn input_for(object: &Value) -> (cel::Value, cel::Value) {
        let body = review(object, "cel");
        let review: Value = serde_json::from_slice(&body).expect("JSON");
        Self::split_review(&review)
    }

    fn split_review(review: &Value) -> (cel::Value, cel::Value) {
        let request = &review["request"];
        let object = to_cel(&request["object"]);
        let mut fields = HashMap::new();
        for key in ["uid", "operation", "namespace", "name"] {
            if let Some(v) = request.get(key) {
                fields.insert(key.to_owned(), to_cel(v));
            }
        }
        (object, cel::Value::from(fields))
    }

    /// Evaluates every validation; `(rule, warn, message)` of each that fails.
    pub fn failures(&self, object: &cel::Value, request: &cel::Value) -> Vec<(&str, bool, &str)> {
        let mut context = self.root.new_inner_scope();
        context.add_variable_from_value("object", object.clone());
        context.add_variable_from_value("request", request.clone());
        let mut variables: HashMap<String, cel::Value> = HashMap::new();
        for (name, program) in &self.variables {
            let value = program.execute(&context).unwrap_or(cel::Value::Null);
            variables.insert(name.clone(), value);
            context.add_variable_from_value("variables", variables.clone());
        }
        if variables.get("isCluster") != Some(&cel::Value::Bool(true))
            && variables.get("isRayPod") != Some(&cel::Value::Bool(true))
        {
            return Vec::new();
        }
        self.validations
            .iter()
            .filter(|(_, _, _, program)| {
                // An evaluation error fails the validation, as failurePolicy: Fail does.
                program.execute(&context) != Ok(cel::Value::Bool(true))
            })
            .map(|(rule, warn, message, _)| (rule.as_str(), *warn, message.as_str()))
            .collect()
    }

    pub fn verdict(&self, object: &Value) -> Verdict {
        let (object, request) = Self::input_for(object);
        let rules: BTreeSet<String> = self
            .failures(&object, &request)
            .into_iter()
            .map(|(rule, _, _)| rule.to_owned())
            .collect();
        Verdict {
            allowed: allowed_for(&rules),
            rules,
            findings: None,
        }
    }

    /// AdmissionReview bytes in, AdmissionReview bytes out.
    pub fn review(&self, body: &[u8]) -> Vec<u8> {
        let review: Value = serde_json::from_slice(body).expect("an AdmissionReview");
        let uid = review["request"]["uid"].as_str().unwrap_or("").to_owned();
        let (object, request) = Self::split_review(&review);
        let mut denials = Vec::new();
        let mut warnings = Vec::new();
        for (rule, warn, message) in self.failures(&object, &request) {
            let text = format!("{rule}: {message}");
            if warn {
                warnings.push(text);
            } else {
                denials.push(text);
            }
        }
        respond(&uid, &denials, &warnings)
    }
}

/// JSON to CEL as Kubernetes converts it: integers are `int`, other numbers `double`.
pub fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

fn scalar_text(value: &cel::Value) -> Option<String> {
    match value {
        cel::Value::String(s) => Some(s.trim().to_owned()),
        cel::Value::Int(i) => Some(i.to_string()),
        cel::Value::UInt(u) => Some(u.to_string()),
        cel::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// A Kubernetes quantity's value, as the native CEL quantity library reads it.
fn quantity(value: &cel::Value) -> Option<f64> {
    let text = scalar_text(value)?;
    let text = text.as_str();
    let (sign, rest) = match text.as_bytes().first()? {
        b'-' => (-1.0, &text[1..]),
        b'+' => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let mantissa: f64 = number.strip_suffix('.').unwrap_or(number).parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        other => {
            let power: i32 = other.strip_prefix(['e', 'E'])?.parse().ok()?;
            if power.abs() > 60 {
                return None;
            }
            10f64.powi(power)
        }
    };
    Some(sign * mantissa * factor)
}

/// The paths of the inputs the equivalence test reads (for messages).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The worst case a tenant can send: the largest object the API server stores (1.5 MiB of
/// worker groups, a head on the master, GCS on 6379); the largest cluster the built-in policy
/// still judges (the same, cut to 64 worker groups); and 200 NetworkPolicies in their
/// namespace that all select them (each admits one group's port, egress kept to the cluster).
pub fn worst_case() -> (
    Value,
    Value,
    Vec<std::sync::Arc<k8s_openapi::api::networking::v1::NetworkPolicy>>,
) {
    let mut huge = synthetic_cluster(1_500_000);
    huge["spec"]["headGroupSpec"]["template"]["spec"]["nodeName"] = json!("gpu-node");
    huge["spec"]["headGroupSpec"]["rayStartParams"]["port"] = json!("6379");
    let mut largest_judged = huge.clone();
    largest_judged["spec"]["workerGroupSpecs"]
        .as_array_mut()
        .expect("groups")
        .truncate(64);
    let policies = (0..200)
        .map(|i| {
            std::sync::Arc::new(
                serde_json::from_value(json!({
                    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": format!("np-{i}"), "namespace": "kuberay"},
                    "spec": {
                        "podSelector": {"matchLabels": {"ray.io/cluster": "synthetic-large"}},
                        "policyTypes": ["Ingress", "Egress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"ray.io/group": format!("group-{i:04}")}}}],
                                     "ports": [{"port": 8000 + i}]}],
                        "egress": [{"to": [{"podSelector": {"matchLabels": {"ray.io/cluster": "synthetic-large"}}}]}]
                    }
                }))
                .expect("a NetworkPolicy"),
            )
        })
        .collect();
    (huge, largest_judged, policies)
}
