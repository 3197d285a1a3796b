//! What must hold for every input, whatever its shape: the checks the fuzz targets (`fuzz/`)
//! run, and `tests/fuzz_regression.rs` replays over the committed corpus. Also a structural
//! mutator of JSON objects, used by the structure-aware fuzz target and by the property run.
//!
//! Both the fuzz crate and the tests include this file by path, so it depends on nothing but
//! raygate and the crates raygate itself uses.
#![allow(dead_code)]

use base64::Engine as _;
use json_patch::{Patch, PatchOperation};
use raygate::admission::{self, Endpoint};
use raygate::commands::{self, Inputs};
use raygate::engine::{Context, Engine};
use raygate::manifest;
use raygate::ray::ObjectRef;
use raygate::rules::Violation;
use serde_json::{Map, Value, json};

/// Any request body. `review` never panics; a body it accepts gets a well-formed
/// AdmissionReview back; `/mutate` never denies; a patch applies to the request's object.
pub fn check_body(engine: &Engine, body: &[u8]) {
    // Decoded again, as the API server would apply the patch to the object it sent. (Serde
    // skips fields admission ignores without checking their UTF-8, and counts nesting a little
    // differently, so a body admission takes is not always one `Value` takes: then only the
    // answer's shape is checked here; `check_object` checks patches on such objects.)
    let sent: Option<Value> = serde_json::from_slice(body).ok();
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let Ok((answer, _)) = admission::review(engine, &Context::WITHOUT_CLUSTER, endpoint, body)
        else {
            continue;
        };
        let response = checked_answer(&answer, sent.as_ref(), endpoint);
        let object = sent.as_ref().and_then(|s| s.pointer("/request/object"));
        if let (Some(patch), Some(object)) = (patch_of(&response), object) {
            apply(object, &patch);
        }
    }
}

/// An object as a CREATE review carries it (and as an UPDATE against itself, checked as any
/// body is). On top of [`check_body`]: validate and mutate agree on what can be filled; the
/// filled-in object has nothing left to fill, keeps every violation the patch does not cure,
/// and gains none.
pub fn check_object(engine: &Engine, object: &Value) {
    check_body(engine, &review_of(object, "UPDATE"));
    let Some(validated) = run(engine, Endpoint::Validate, object) else {
        return;
    };
    let mutated = run(engine, Endpoint::Mutate, object).expect("validate accepted the body");
    let fillable = validated.1.iter().any(|v| v.fillable);
    let patch = patch_of(&mutated.0);
    // Besides fill-ins, a RayCluster CREATE gets raygate's enforcement mark.
    let fills = patch.as_ref().is_some_and(|p| {
        p.0.iter()
            .any(|op| !op.path().as_str().starts_with("/metadata/annotations"))
    });
    assert_eq!(
        fillable, fills,
        "validate reports fillable violations iff mutate patches: {:?}",
        validated.1
    );
    let Some(patch) = patch else { return };
    let patched = apply(object, &patch);
    let revalidated =
        run(engine, Endpoint::Validate, &patched).expect("the patched object decodes");
    let left: Vec<_> = revalidated.1.iter().filter(|v| v.fillable).collect();
    assert!(left.is_empty(), "filled in, yet still fillable: {left:?}");
    let remutated = run(engine, Endpoint::Mutate, &patched).expect("the patched object decodes");
    assert!(
        patch_of(&remutated.0).is_none(),
        "filling in twice changes the object again: {}",
        remutated.0
    );
    let same =
        |a: &Violation, b: &Violation| a.rule.as_str() == b.rule.as_str() && a.path == b.path;
    for v in validated.1.iter().filter(|v| !v.fillable) {
        assert!(
            revalidated.1.iter().any(|r| same(r, v)),
            "the patch cured {v:?} without saying so"
        );
    }
    for r in &revalidated.1 {
        assert!(
            validated.1.iter().any(|v| same(v, r)),
            "the patch brought {r:?}"
        );
    }
}

/// Manifest text as `raygate check`, `raygate fix` and `--policy` read it.
pub fn check_manifest(engine: &Engine, bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    // A policy is the operator's own file: only the manifest reader guards against nesting
    // that is quadratic in the YAML scanner.
    if manifest::too_deep(text).is_none() {
        let _ = raygate::policy::Policy::from_yaml(text, "fuzz.yaml");
    }
    let Ok(file) = manifest::parse("fuzz.yaml", text) else {
        return;
    };
    for document in &file.documents {
        let _ = manifest::has_comments(&document.text);
        let Some(value) = &document.value else {
            continue;
        };
        let Some(object) = ObjectRef::from_value(value) else {
            continue;
        };
        let decision = engine.evaluate(&object, &Context::WITHOUT_CLUSTER);
        if decision.patch.0.is_empty() {
            continue;
        }
        // What `raygate fix` writes must read back as what it meant to write.
        let fixed = apply(value, &decision.patch);
        if let Ok(Some(done)) = commands::fix_document(engine, &Context::WITHOUT_CLUSTER, document)
        {
            let reread = manifest::parse("fixed.yaml", &done.text).expect("fixed text parses");
            let reread = reread.documents[0].value.as_ref().expect("a document");
            assert_eq!(
                reread, &fixed,
                "fixed text reads back differently:\n{}",
                done.text
            );
        }
        serde_json::to_string_pretty(&fixed).expect("a JSON value renders as JSON");
    }
    let inputs = Inputs {
        files: vec![file],
        errors: Vec::new(),
        default_namespace: None,
    };
    let report = commands::evaluate(engine, &inputs);
    report
        .write(
            raygate::report::Output::Text,
            engine.policy(),
            &mut std::io::sink(),
        )
        .expect("the text report");
    // The JSON report is written one result at a time, as serde_json writes it whole.
    let mut streamed = Vec::new();
    report
        .write(
            raygate::report::Output::Json,
            engine.policy(),
            &mut streamed,
        )
        .expect("the JSON report");
    let mut whole = serde_json::to_vec_pretty(&report).expect("the report renders as JSON");
    whole.push(b'\n');
    assert!(
        streamed == whole,
        "the streamed JSON report differs from serde_json's"
    );
}

const UID: &str = "00000000-0000-0000-0000-00000000f022";

/// Wraps `object` in an AdmissionReview request the way the API server does.
pub fn review_of(object: &Value, operation: &str) -> Vec<u8> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    let old = if operation == "UPDATE" {
        object.clone()
    } else {
        Value::Null
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "things"},
            "name": name.unwrap_or(""),
            "namespace": "kuberay",
            "operation": operation,
            "userInfo": {"username": "fuzz"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    }))
    .expect("a JSON value serialises")
}

type Run = (Value, Vec<Violation>);

/// Reviews `object` on CREATE: the checked response, and the violations found.
fn run(engine: &Engine, endpoint: Endpoint, object: &Value) -> Option<Run> {
    let body = review_of(object, "CREATE");
    let (answer, outcome) =
        admission::review(engine, &Context::WITHOUT_CLUSTER, endpoint, &body).ok()?;
    let response = checked_answer(&answer, Some(&json!({"request": {"uid": UID}})), endpoint);
    if let Some(patch) = patch_of(&response) {
        apply(object, &patch);
    }
    Some((response, outcome.violations))
}

/// The `response` of an answer, after checking its shape.
fn checked_answer(answer: &[u8], sent: Option<&Value>, endpoint: Endpoint) -> Value {
    let answer: Value = serde_json::from_slice(answer).expect("the answer is JSON");
    assert!(answer["apiVersion"].is_string(), "{answer}");
    assert!(answer["kind"].is_string(), "{answer}");
    let response = &answer["response"];
    assert!(response["uid"].is_string(), "{answer}");
    if let Some(sent) = sent {
        assert_eq!(
            response["uid"],
            sent.pointer("/request/uid").cloned().unwrap_or(json!("")),
            "the answer names the request"
        );
    }
    let allowed = response["allowed"]
        .as_bool()
        .unwrap_or_else(|| panic!("allowed is a boolean: {answer}"));
    if endpoint == Endpoint::Mutate {
        assert!(allowed, "mutate never denies: {answer}");
    }
    if !allowed {
        assert_eq!(response["status"]["code"], 403, "{answer}");
    }
    if let Some(patch) = response.get("patch") {
        assert_eq!(endpoint, Endpoint::Mutate, "only mutate patches: {answer}");
        assert_eq!(response["patchType"], "JSONPatch", "{answer}");
        assert!(patch.is_string(), "{answer}");
    }
    response.clone()
}

fn patch_of(response: &Value) -> Option<Patch> {
    let encoded = response.get("patch")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the patch is base64");
    Some(serde_json::from_slice(&bytes).expect("the patch is a JSON Patch"))
}

/// Applies a fill-in patch, checking raygate's promise on the way: it only adds what is
/// missing, and never changes a value the object sets.
fn apply(object: &Value, patch: &Patch) -> Value {
    let mut patched = object.clone();
    for operation in &patch.0 {
        let PatchOperation::Add(add) = operation else {
            panic!("a fill-in that is not an add: {operation}");
        };
        let path = add.path.as_str();
        let (parent, token) = path.rsplit_once('/').expect("a path below the root");
        let token = token.replace("~1", "/").replace("~0", "~");
        match patched.pointer(parent) {
            Some(Value::Object(map)) => assert!(
                !map.contains_key(&token),
                "the fill-in {path} overwrites a value the object sets\nobject: {object}"
            ),
            Some(Value::Array(_)) => assert_eq!(token, "-", "the fill-in {path} inserts mid-list"),
            other => panic!(
                "the fill-in {path} has no object to go in (finds {other:?})\npatch: {}\nobject: {object}",
                serde_json::to_string(patch).unwrap_or_default()
            ),
        }
        if let Err(e) = json_patch::patch(&mut patched, std::slice::from_ref(operation)) {
            panic!("the fill-in {path} does not apply: {e}\nobject: {object}");
        }
    }
    patched
}

/// A small deterministic generator (SplitMix64): the same seed, the same mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Keys the rules read, and keys that are awkward in a JSON pointer.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "generateName",
    "namespace",
    "labels",
    "spec",
    "rayClusterSpec",
    "rayClusterConfig",
    "jobTemplate",
    "clusterSelector",
    "headGroupSpec",
    "workerGroupSpecs",
    "groupName",
    "replicas",
    "rayStartParams",
    "port",
    "dashboard-port",
    "dashboard-host",
    "ray-client-server-port",
    "metrics-export-port",
    "object-manager-port",
    "node-manager-port",
    "runtime-env-agent-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "min-worker-port",
    "max-worker-port",
    "worker-port-list",
    "template",
    "containers",
    "initContainers",
    "ports",
    "containerPort",
    "hostPort",
    "protocol",
    "resources",
    "requests",
    "limits",
    "cpu",
    "memory",
    "nvidia.com/gpu",
    "google.com/tpu",
    "num-gpus",
    "nodeSelector",
    "node-role",
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
    "affinity",
    "nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "tolerations",
    "effect",
    "nodeName",
    "ray.io/cluster",
    "ray.io/node-type",
    "ray.io/group",
    "serviceType",
    "headService",
    "enableInTreeAutoscaling",
    "",
    "a/b",
    "~",
    "~1",
    "~0",
    "-",
    "0",
    "é",
];

const KINDS: &[(&str, &str)] = &[
    ("ray.io/v1", "RayCluster"),
    ("ray.io/v1", "RayJob"),
    ("ray.io/v1", "RayService"),
    ("ray.io/v1", "RayCronJob"),
    ("ray.io/v1alpha1", "RayCluster"),
    ("v1", "Pod"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
];

fn interesting(rng: &mut Rng) -> Value {
    match rng.below(40) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(false),
        3 => json!({}),
        4 => json!([]),
        5 => json!(""),
        6 => json!(-1),
        7 => json!(0),
        8 => json!(65535),
        9 => json!(65536),
        10 => json!(u64::MAX),
        11 => json!(i64::MIN),
        12 => json!(1.5),
        13 => json!(1e308),
        14 => json!(-0.0),
        15 => json!(" 6380 "),
        16 => json!("1Gi"),
        17 => json!("500m"),
        18 => json!("1e3"),
        19 => json!("1E400"),
        20 => json!("0.0.0.0"),
        21 => json!("head"),
        22 => json!("worker"),
        23 => json!("NoSchedule"),
        24 => json!("Exists"),
        25 => json!("In"),
        26 => json!("\u{0}\u{7f}\u{fffd}𝄞"),
        27 => Value::String("ab/~c".repeat(rng.below(2000) + 1)),
        28 => json!("99999999999999999999999999999999Ei"),
        29 => json!("-2Gi"),
        30 => json!({"cpu": "1", "memory": "2Gi"}),
        31 => json!([{"name": "x", "containerPort": 8265}]),
        32 => json!({"node-role": "worker"}),
        33 => json!("SCTP"),
        _ => json!(*rng.pick(&[
            6379, 6380, 8265, 8266, 10001, 10002, 8000, 8001, 8080, 8081, 8301, 8400, 8401, 8500,
            8501, 8600, 30000, 32767, 52365, 1, 1024, 10000, 10100,
        ])),
    }
}

/// Where a node is: keys and indices from the root.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn count(value: &Value) -> usize {
    1 + match value {
        Value::Object(map) => map.values().map(count).sum(),
        Value::Array(items) => items.iter().map(count).sum(),
        _ => 0,
    }
}

/// The path of the `n`th node in document order (the root is 0).
fn nth_path(value: &Value, n: &mut usize, path: &mut Vec<Step>) -> bool {
    if *n == 0 {
        return true;
    }
    *n -= 1;
    let children: Box<dyn Iterator<Item = (Step, &Value)>> = match value {
        Value::Object(map) => Box::new(map.iter().map(|(k, v)| (Step::Key(k.clone()), v))),
        Value::Array(items) => Box::new(items.iter().enumerate().map(|(i, v)| (Step::Index(i), v))),
        _ => return false,
    };
    for (step, child) in children {
        let size = count(child);
        if *n >= size {
            *n -= size;
            continue;
        }
        path.push(step);
        return nth_path(child, n, path);
    }
    false
}

fn random_path(value: &Value, rng: &mut Rng) -> Vec<Step> {
    let mut n = rng.below(count(value));
    let mut path = Vec::new();
    nth_path(value, &mut n, &mut path);
    path
}

fn node_mut<'v>(mut value: &'v mut Value, path: &[Step]) -> &'v mut Value {
    for step in path {
        value = match (step, value) {
            (Step::Key(k), Value::Object(map)) => map.get_mut(k).expect("a path we walked"),
            (Step::Index(i), Value::Array(items)) => &mut items[*i],
            _ => unreachable!("a path we walked"),
        };
    }
    value
}

fn node<'v>(mut value: &'v Value, path: &[Step]) -> &'v Value {
    for step in path {
        value = match step {
            Step::Key(k) => &value[k.as_str()],
            Step::Index(i) => &value[*i],
        };
    }
    value
}

/// One to four structural changes to `value`: replacing a node with a value of another
/// type, removing or adding keys the rules read, copying subtrees, growing arrays, nesting,
/// and changing what kind of object it is.
pub fn mutate(value: &mut Value, rng: &mut Rng) {
    for _ in 0..=rng.below(4) {
        mutate_once(value, rng);
    }
}

fn mutate_once(value: &mut Value, rng: &mut Rng) {
    let path = random_path(value, rng);
    match rng.below(12) {
        0 | 1 => *node_mut(value, &path) = interesting(rng),
        2 | 3 => {
            // Remove the node from its parent.
            if let Some((last, parent)) = path.split_last() {
                match (last, node_mut(value, parent)) {
                    (Step::Key(k), Value::Object(map)) => {
                        map.remove(k);
                    }
                    (Step::Index(i), Value::Array(items)) => {
                        items.remove(*i);
                    }
                    _ => {}
                }
            }
        }
        4 | 5 => {
            let key = (*rng.pick(KEYS)).to_owned();
            let new = if rng.below(2) == 0 {
                interesting(rng)
            } else {
                node(value, &random_path(value, rng)).clone()
            };
            match node_mut(value, &path) {
                Value::Object(map) => {
                    map.insert(key, new);
                }
                Value::Array(items) => {
                    let at = rng.below(items.len() + 1);
                    items.insert(at, new);
                }
                other => *other = json!({ key: new }),
            }
        }
        6 => {
            // Copy one subtree over another.
            let from = node(value, &random_path(value, rng)).clone();
            *node_mut(value, &path) = from;
        }
        7 => {
            // Grow an array by repeating its elements.
            if let Value::Array(items) = node_mut(value, &path)
                && !items.is_empty()
            {
                let times = *rng.pick(&[2usize, 3, 10, 100, 1000]);
                let copy = items.clone();
                for _ in 1..times {
                    items.extend(copy.iter().cloned());
                    if items.len() > 5000 {
                        break;
                    }
                }
            }
        }
        8 => {
            // Nest the node inside objects or arrays.
            let target = node_mut(value, &path);
            let mut nested = target.take();
            for _ in 0..=rng.below(40) {
                nested = if rng.below(2) == 0 {
                    json!({ "a": nested })
                } else {
                    json!([nested])
                };
            }
            *target = nested;
        }
        9 => {
            let (api_version, kind) = *rng.pick(KINDS);
            if let Value::Object(map) = value {
                map.insert("apiVersion".into(), api_version.into());
                map.insert("kind".into(), kind.into());
            }
        }
        10 => {
            // Ray's labels, as the operator puts them on its Pods.
            if let Value::Object(map) = value {
                let metadata = map
                    .entry("metadata")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(metadata) = metadata {
                    let labels = metadata
                        .entry("labels")
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(labels) = labels {
                        labels.insert("ray.io/cluster".into(), "c".into());
                        let role = *rng.pick(&["head", "worker", "other"]);
                        labels.insert("ray.io/node-type".into(), role.into());
                    }
                }
            }
        }
        _ => {
            // Numbers and numeric strings trade places; numbers step by one.
            let target = node_mut(value, &path);
            *target = match &*target {
                Value::Number(n) if rng.below(2) == 0 => Value::String(n.to_string()),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => json!(i.saturating_add(*rng.pick(&[-1, 1]))),
                    None => json!(0),
                },
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map_or_else(|_| interesting(rng), |i| json!(i)),
                _ => interesting(rng),
            };
        }
    }
}
