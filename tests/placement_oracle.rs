//! kube-scheduler and the kubelet as the oracle for raygate's placement rules
//! (tests/placement-oracle: k8s.io/kubernetes v1.34.4's NodeName, NodeAffinity,
//! TaintToleration, NodeResourcesFit and NodeUnschedulable Filter plugins for an unbound Pod,
//! the kubelet's own admission for a Pod whose `nodeName` binds it, both fed the Nodes and Pods
//! as the API server defaults, validates and stores them; built from the Go module proxy by
//! scripts/placement-oracle.sh, whose main.go header says exactly what it evaluates). Fails,
//! never skips, when the oracle cannot be built.
//!
//! The corpus: RayClusters (a head group and one to three worker groups) and Ray Pods, each
//! Pod spec from a catalog (every nodeName, nodeSelector pair, requirement and toleration of
//! the generator alone, on a head, on a worker and on a worker with one GPU, and GPU counts on
//! heads and workers) or generated from a seed: nodeName (the master, a worker, the cordoned
//! worker, an unlabelled node with or without a GPU, an unknown node), nodeSelector pairs,
//! required node affinity with one to three terms (ORed) of one to three requirements (ANDed)
//! with every operator, matchFields on metadata.name, preferred affinity (which must not
//! matter), tolerations (no key with Exists, the control-plane taint with Exists, Equal, the
//! wrong value or effect, NoExecute, the legacy `node-role.kubernetes.io/master` key, the
//! cordon taint, unrelated ones) and `nvidia.com/gpu` 0, 1 or 2 as a limit or a request and
//! limit on the Ray container (sometimes on a sidecar). Three node sets: the seed cluster
//! (`gpu-node`: control-plane label, NoSchedule taint, one GPU; `worker-1`..`worker-4`:
//! `node-role=worker`); the same with an unlabelled node `edge-1` and a cordoned worker
//! `worker-5`; and that with GPUs off the master: an unlabelled node `edge-gpu` and a worker
//! `worker-6`, one GPU each.
//!
//! What raygate's findings mean here, per Pod spec (a group's template or a Pod):
//!   - `placement/node-name`, `placement/targets-master` and `placement/tolerates-control-plane`
//!     say the spec may land on a master: it is bound to one, asks for one, or tolerates a
//!     master's taint. They are compared with "the oracle lets it run on gpu-node".
//!   - `placement/not-pinned-to-workers` says it may land on a node it is not allowed on; no
//!     placement finding says it runs only on allowed nodes. For specs with none of the three
//!     findings above, this is compared with "every node the oracle lets it run on is
//!     allowed" (running nowhere included).
//!   - The allowed nodes are those labelled `node-role=worker`, except for a worker whose Ray
//!     container asks for a whole number of GPUs (`gpuGroupsMayUseMasters`): for it they are
//!     the workers and gpu-node. It must get none of the three master findings; any other node
//!     (edge-1 or edge-gpu, by scheduling or by a nodeName whose kubelet drops the GPU it does
//!     not have) is as out of bounds for it as for any spec.
//!   - What raygate admits is the spec with its fill-ins applied: for every spec raygate
//!     admits (no placement finding left once the patch is applied), the oracle must let the
//!     patched spec run on its allowed nodes only (a GPU group's fill-in is required node
//!     affinity, node-role=worker or gpu-node's hostname, so that it may still use gpu-node).
//!
//! A false accept (raygate admits or reports no master finding, and the oracle lets the spec
//! run on gpu-node, or on a node it is not allowed on) is never allowed. raygate is stricter
//! on purpose in the classes of `STRICTER`, each with its reason; any other disagreement
//! fails.

#[path = "support/go_oracle.rs"]
mod go_oracle;

use std::collections::{BTreeMap, BTreeSet};

use raygate::engine::Context;
use raygate::policy::Policy;
use raygate::ray::ObjectRef;
use raygate::{Decision, Engine};
use serde::Deserialize;
use serde_json::{Value, json};

const SEED: u64 = 0x706c_6163_656d_0001;
const RANDOM_CLUSTERS: usize = 400;
const RANDOM_PODS: usize = 1200;
const NAMESPACE: &str = "kuberay";

const MASTER: &str = "gpu-node";
/// An unlabelled node with a GPU, in the third node set.
const EDGE_GPU: &str = "edge-gpu";
const GPU: &str = "nvidia.com/gpu";
const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
const LEGACY_MASTER: &str = "node-role.kubernetes.io/master";
const HOSTNAME: &str = "kubernetes.io/hostname";
const ROLE: &str = "node-role";
const ZONE: &str = "topology.kubernetes.io/zone";
/// A numeric label, for Gt and Lt.
const CPUS: &str = "example.com/cpus";
const CORDON_TAINT: &str = "node.kubernetes.io/unschedulable";

const NODE_NAME: &str = "placement/node-name";
const TARGETS_MASTER: &str = "placement/targets-master";
const TOLERATES: &str = "placement/tolerates-control-plane";
const NOT_PINNED: &str = "placement/not-pinned-to-workers";
const MASTER_RULES: [&str; 3] = [NODE_NAME, TARGETS_MASTER, TOLERATES];

/// The disagreements raygate means, by class (see `off_master_class` and `off_workers_class`),
/// with the reason. A class not listed here fails the test, and so does a listed class that
/// no longer occurs.
const STRICTER: &[(&str, &str)] = &[
    (
        "master: node-name; bound to gpu-node, whose kubelet refuses it",
        "a bound Pod skips the scheduler, and a NoSchedule taint does not stop the kubelet \
         (the summary counts the specs that run on gpu-node so), so raygate refuses binding to \
         a master at all; that the kubelet then refuses this one for another reason (a nodeSelector or \
         affinity it does not match, a GPU count it lacks) is beside the point",
    ),
    (
        "master: tolerates-control-plane; bound to another node",
        "a master toleration has no use but reaching a master: it is denied on its own, \
         whatever else keeps the spec off today (here its nodeName)",
    ),
    (
        "master: tolerates-control-plane; kept off by its selectors",
        "the toleration works and only the spec's nodeSelector or affinity keeps it off \
         gpu-node: denied on its own, as above (a looser selector in a later update, or a \
         master with other labels, and it lands there)",
    ),
    (
        "master: tolerates-control-plane; kept off by resources only",
        "the toleration works and only a resource gpu-node lacks today (2 GPUs) keeps it off",
    ),
    (
        "master: tolerates-control-plane; kept off by the taint",
        "a toleration of a master taint key that gpu-node's taint does not match (the legacy \
         node-role.kubernetes.io/master key, the NoExecute or PreferNoSchedule effect, the \
         value \"true\"): raygate denies the key whatever the effect or value, since a master \
         may carry it so",
    ),
    (
        "master: tolerates-control-plane; kept off by the taint and its selectors",
        "both of the above",
    ),
    (
        "master: targets-master; bound to another node",
        "asks for a master by label or name, and binds itself elsewhere: denied for the asking",
    ),
    (
        "master: targets-master; kept off by the taint",
        "asks for a master by label or name: only the taint keeps it off, and raygate denies \
         the asking (a master's taint is node state an administrator may lift)",
    ),
    (
        "master: targets-master; kept off by the taint and its selectors",
        "a requirement that picks a master (hostname In [gpu-node], control-plane Exists, \
         control-plane: \"true\", ...) beside one that excludes it, or a master's label with a \
         value it does not have: raygate judges each requirement on its own, not whether \
         together they still match gpu-node",
    ),
    (
        "master: targets-master,tolerates-control-plane; bound to another node",
        "both findings, each as above",
    ),
    (
        "master: targets-master,tolerates-control-plane; kept off by its selectors",
        "both findings, each as above",
    ),
    (
        "master: targets-master,tolerates-control-plane; kept off by resources only",
        "both findings, each as above",
    ),
    (
        "master: targets-master,tolerates-control-plane; kept off by the taint",
        "both findings, each as above",
    ),
    (
        "master: targets-master,tolerates-control-plane; kept off by the taint and its selectors",
        "both findings, each as above",
    ),
    (
        "workers: runs nowhere",
        "no node admits the spec (contradicting requirements, an unknown node, a kubelet that \
         refuses it, a GPU count no node has): raygate does not solve the constraints, it asks \
         for the worker label, which costs nothing to a spec that runs nowhere anyway",
    ),
    (
        "workers: bound to a worker by nodeName",
        "a node's name says nothing of its role: a node of that name may be registered as \
         anything; only the node-role=worker label pins a spec",
    ),
    (
        "GPU exception: runs nowhere",
        "no node admits the spec (in the first two node sets no worker has a GPU, and gpu-node's \
         taint stops a spec without its toleration; contradicting requirements, an unknown node, \
         2 GPUs): raygate does not solve the constraints, it asks for the worker label or a \
         master's selection, which costs nothing to a spec that runs nowhere anyway",
    ),
    (
        "GPU exception: bound to a worker by nodeName",
        "a node's name says nothing of its role, and the kubelet of a node without GPUs drops \
         the GPU and admits the spec: only node-role=worker, or binding to or selecting a named \
         master, keeps a GPU group on the workers and masters",
    ),
    (
        "GPU exception: no node but workers and gpu-node",
        "the seed cluster has no other node for it to run on; a node added later (edge-1 or \
         edge-gpu in the other node sets) would take it: only node-role=worker or a master's \
         selection pins a GPU group",
    ),
    (
        "GPU exception: kept off the other nodes by resources",
        "only the GPUs it asks for keep it off edge-1 (none) or edge-gpu (one, for a spec that \
         asks for 2): raygate does not count node resources, and an unlabelled node with enough \
         GPUs (edge-gpu in the third node set) takes such a spec",
    ),
    (
        "GPU exception: kept off the other nodes by its selectors",
        "it picks workers and gpu-node by hostname, metadata.name, zone, \
         nvidia.com/gpu.present, a numeric label or by exclusion: a node added later with \
         those labels would match; only node-role=worker, or a master's hostname or \
         control-plane label, keeps a GPU group in bounds",
    ),
    (
        "GPU exception: kept off the other nodes by its selectors and resources",
        "both of the above, one node each",
    ),
    (
        "workers: only workers match its selectors",
        "it picks today's workers by hostname, metadata.name, zone, a numeric label, another \
         node-role operator, or by excluding gpu-node alone (control-plane DoesNotExist, \
         hostname NotIn [gpu-node]) where no unlabelled node exists: a node added later (as \
         edge-1 in the second node set) would match; only node-role=worker pins a spec",
    ),
];

/// SplitMix64: deterministic across platforms and releases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

// ---------------------------------------------------------------------------------------
// Nodes

fn node(
    name: &str,
    labels: &[(&str, &str)],
    taints: Value,
    unschedulable: bool,
    gpus: u32,
) -> Value {
    // The labels every kubelet sets on its own Node.
    let mut all: BTreeMap<&str, &str> = [
        (HOSTNAME, name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
    ]
    .into_iter()
    .collect();
    all.extend(labels.iter().copied());
    let (cpu, memory) = if gpus > 0 {
        ("16", "64Gi")
    } else {
        ("8", "32Gi")
    };
    let mut resources =
        json!({"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"});
    if gpus > 0 {
        resources[GPU] = json!(gpus.to_string());
    }
    let mut spec = json!({});
    if taints.as_array().is_some_and(|t| !t.is_empty()) {
        spec["taints"] = taints;
    }
    if unschedulable {
        spec["unschedulable"] = json!(true);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all},
        "spec": spec,
        "status": {"capacity": resources, "allocatable": resources},
    })
}

/// `worker-{i}`; cordoned, it has the taint the node lifecycle controller adds beside
/// `spec.unschedulable`.
fn worker(i: usize, cordoned: bool, gpus: u32) -> Value {
    let zone = if i % 2 == 1 { "zone-a" } else { "zone-b" };
    let taints = if cordoned {
        json!([{"key": CORDON_TAINT, "effect": "NoSchedule"}])
    } else {
        json!([])
    };
    node(
        &format!("worker-{i}"),
        &[(ROLE, "worker"), (ZONE, zone), (CPUS, "8")],
        taints,
        cordoned,
        gpus,
    )
}

/// The seed cluster; the same with an unlabelled node and a cordoned worker; and that with GPUs
/// off the master, on an unlabelled node and on a worker.
fn node_sets() -> Vec<(&'static str, Vec<Value>)> {
    let master = node(
        MASTER,
        &[
            (CONTROL_PLANE, ""),
            (
                "node.kubernetes.io/exclude-from-external-load-balancers",
                "",
            ),
            ("nvidia.com/gpu.present", "true"),
            (ZONE, "zone-a"),
            (CPUS, "16"),
        ],
        json!([{"key": CONTROL_PLANE, "effect": "NoSchedule"}]),
        false,
        1,
    );
    let seed: Vec<Value> = std::iter::once(master)
        .chain((1..=4).map(|i| worker(i, false, 0)))
        .collect();
    let mut extended = seed.clone();
    extended.push(node(
        "edge-1",
        &[(ZONE, "zone-c"), (CPUS, "4")],
        json!([]),
        false,
        0,
    ));
    extended.push(worker(5, true, 0));
    let mut gpus = extended.clone();
    gpus.push(node(
        EDGE_GPU,
        &[
            (ZONE, "zone-c"),
            (CPUS, "16"),
            ("nvidia.com/gpu.present", "true"),
        ],
        json!([]),
        false,
        1,
    ));
    let mut gpu_worker = worker(6, false, 1);
    gpu_worker["metadata"]["labels"]["nvidia.com/gpu.present"] = json!("true");
    gpus.push(gpu_worker);
    vec![
        ("seed cluster", seed),
        ("with edge-1 and cordoned worker-5", extended),
        ("and GPUs on edge-gpu and worker-6", gpus),
    ]
}

fn workers_of(nodes: &[Value]) -> BTreeSet<String> {
    nodes
        .iter()
        .filter(|n| n["metadata"]["labels"][ROLE] == "worker")
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Pod specs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Head,
    Worker,
}

const NODE_NAMES: &[&str] = &[MASTER, "worker-2", "worker-5", "edge-1", "node-x", EDGE_GPU];

fn selector_pairs() -> Vec<(&'static str, &'static str)> {
    vec![
        (ROLE, "worker"),
        (ROLE, "gpu"),
        (CONTROL_PLANE, ""),
        (CONTROL_PLANE, "true"),
        (LEGACY_MASTER, ""),
        (HOSTNAME, MASTER),
        (HOSTNAME, "worker-3"),
        (HOSTNAME, "edge-1"),
        (HOSTNAME, EDGE_GPU),
        ("disktype", "ssd"),
        ("kubernetes.io/os", "linux"),
        (ZONE, "zone-a"),
        ("nvidia.com/gpu.present", "true"),
    ]
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({"key": key, "operator": operator})
    } else {
        json!({"key": key, "operator": operator, "values": values})
    }
}

/// Every requirement the generator draws from.
fn requirements() -> Vec<Value> {
    let r = requirement;
    vec![
        r(ROLE, "In", &["worker"]),
        r(ROLE, "In", &["worker", "gpu"]),
        r(ROLE, "In", &["gpu"]),
        r(ROLE, "NotIn", &["worker"]),
        r(ROLE, "NotIn", &["gpu"]),
        r(ROLE, "Exists", &[]),
        r(ROLE, "DoesNotExist", &[]),
        r(CONTROL_PLANE, "Exists", &[]),
        r(CONTROL_PLANE, "DoesNotExist", &[]),
        r(CONTROL_PLANE, "In", &[""]),
        r(CONTROL_PLANE, "NotIn", &[""]),
        r(LEGACY_MASTER, "Exists", &[]),
        r(LEGACY_MASTER, "DoesNotExist", &[]),
        r(HOSTNAME, "In", &[MASTER]),
        r(HOSTNAME, "In", &["worker-1", MASTER]),
        r(HOSTNAME, "In", &["worker-1", "worker-4"]),
        r(HOSTNAME, "In", &["edge-1"]),
        r(HOSTNAME, "In", &[EDGE_GPU, MASTER]),
        r(HOSTNAME, "NotIn", &[MASTER]),
        r(HOSTNAME, "NotIn", &["worker-2"]),
        r(CPUS, "Gt", &["4"]),
        r(CPUS, "Gt", &["8"]),
        r(CPUS, "Lt", &["16"]),
        r(CPUS, "Lt", &["8"]),
        r(ZONE, "In", &["zone-a"]),
        r(ZONE, "In", &["zone-c"]),
        r(ZONE, "NotIn", &["zone-b"]),
        r("kubernetes.io/os", "In", &["linux"]),
        r("nvidia.com/gpu.present", "Exists", &[]),
    ]
}

fn field_requirements() -> Vec<Value> {
    let mut out = Vec::new();
    for name in [
        MASTER, "worker-1", "worker-4", "edge-1", "worker-5", EDGE_GPU,
    ] {
        for op in ["In", "NotIn"] {
            out.push(requirement("metadata.name", op, &[name]));
        }
    }
    out
}

fn toleration(
    key: Option<&str>,
    operator: Option<&str>,
    value: Option<&str>,
    effect: Option<&str>,
) -> Value {
    let mut t = json!({});
    if let Some(k) = key {
        t["key"] = json!(k);
    }
    if let Some(o) = operator {
        t["operator"] = json!(o);
    }
    if let Some(v) = value {
        t["value"] = json!(v);
    }
    if let Some(e) = effect {
        t["effect"] = json!(e);
    }
    t
}

fn tolerations() -> Vec<Value> {
    let t = toleration;
    let cp = Some(CONTROL_PLANE);
    vec![
        // These six tolerate gpu-node's taint.
        t(None, Some("Exists"), None, None),
        t(None, Some("Exists"), None, Some("NoSchedule")),
        t(cp, Some("Exists"), None, None),
        t(cp, Some("Exists"), None, Some("NoSchedule")),
        t(cp, Some("Equal"), Some(""), Some("NoSchedule")),
        // No operator: Equal to the taint's empty value.
        t(cp, None, None, Some("NoSchedule")),
        // These do not.
        t(None, Some("Exists"), None, Some("NoExecute")),
        t(cp, Some("Exists"), None, Some("NoExecute")),
        t(cp, Some("Exists"), None, Some("PreferNoSchedule")),
        t(cp, Some("Equal"), Some("true"), Some("NoSchedule")),
        t(
            Some(LEGACY_MASTER),
            Some("Exists"),
            None,
            Some("NoSchedule"),
        ),
        t(Some(LEGACY_MASTER), None, None, None),
        t(Some(CORDON_TAINT), Some("Exists"), None, Some("NoSchedule")),
        t(Some(GPU), Some("Exists"), None, Some("NoSchedule")),
        t(
            Some("dedicated"),
            Some("Equal"),
            Some("ray"),
            Some("NoSchedule"),
        ),
    ]
}

/// GPUs on a container: none, or a count as a limit or as a request and limit (the API server
/// needs the limit of an extended resource, and an equal request).
#[derive(Debug, Clone, Copy)]
struct Gpus {
    count: u8,
    with_request: bool,
    as_string: bool,
}

fn container(name: &str, gpus: Option<Gpus>) -> Value {
    let mut c = json!({
        "name": name,
        "image": "rayproject/ray:2.52.0",
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "1", "memory": "2Gi"},
        },
    });
    if let Some(g) = gpus {
        let n = if g.as_string {
            json!(g.count.to_string())
        } else {
            json!(g.count)
        };
        c["resources"]["limits"][GPU] = n.clone();
        if g.with_request {
            c["resources"]["requests"][GPU] = n;
        }
    }
    c
}

fn ray_container_name(role: Role) -> &'static str {
    match role {
        Role::Head => "ray-head",
        Role::Worker => "ray-worker",
    }
}

fn plain_spec(role: Role) -> Value {
    json!({"containers": [container(ray_container_name(role), None)]})
}

fn set_required(spec: &mut Value, terms: Vec<Value>) {
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
        json!({"nodeSelectorTerms": terms});
}

fn random_gpus(rng: &mut Rng) -> Option<Gpus> {
    if rng.percent(55) {
        return None;
    }
    Some(Gpus {
        count: rng.pick(&[0, 1, 1, 2]),
        with_request: rng.percent(50),
        as_string: rng.percent(50),
    })
}

fn random_term(rng: &mut Rng, pool: &[Value], fields: &[Value]) -> Value {
    let mut term = json!({});
    let fields_only = rng.percent(4);
    if !fields_only {
        let n = 1 + rng.below(3);
        let mut expressions: Vec<Value> = (0..n).map(|_| rng.pick(pool)).collect();
        // Half the terms ask for the worker label, so that whole specs are often pinned.
        if rng.percent(50) {
            let at = rng.below(expressions.len() + 1);
            expressions.insert(at, requirement(ROLE, "In", &["worker"]));
        }
        term["matchExpressions"] = json!(expressions);
    }
    if fields_only || rng.percent(15) {
        term["matchFields"] = json!([rng.pick(fields)]);
    }
    term
}

fn random_spec(rng: &mut Rng, role: Role) -> Value {
    let pairs = selector_pairs();
    let pool = requirements();
    let fields = field_requirements();
    let all_tolerations = tolerations();

    let mut containers = vec![container(ray_container_name(role), random_gpus(rng))];
    if rng.percent(6) {
        containers.push(container(
            "sidecar",
            Some(Gpus {
                count: 1,
                with_request: true,
                as_string: true,
            }),
        ));
    }
    let mut spec = json!({"containers": containers});
    if rng.percent(22) {
        // Binding to the master passes its taint: drawn more often.
        let name = if rng.percent(30) {
            MASTER
        } else {
            rng.pick(NODE_NAMES)
        };
        spec["nodeName"] = json!(name);
    }
    match rng.below(100) {
        0..=39 => {}
        40..=44 => spec["nodeSelector"] = json!({}),
        45..=67 => spec["nodeSelector"] = json!({ROLE: "worker"}),
        _ => {
            let mut selector = serde_json::Map::new();
            for _ in 0..1 + rng.below(2) {
                let (k, v) = rng.pick(&pairs);
                selector.insert(k.to_owned(), json!(v));
            }
            spec["nodeSelector"] = Value::Object(selector);
        }
    }
    if rng.percent(40) {
        let terms = (0..1 + rng.below(3))
            .map(|_| random_term(rng, &pool, &fields))
            .collect();
        set_required(&mut spec, terms);
    }
    if rng.percent(20) {
        let preferred: Vec<Value> = (0..1 + rng.below(2))
            .map(|_| {
                json!({"weight": 1 + rng.below(100),
                       "preference": random_term(rng, &pool, &fields)})
            })
            .collect();
        spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] =
            json!(preferred);
    }
    if rng.percent(55) {
        // The first six tolerate gpu-node's taint: drawn more often, so that many specs reach it.
        let n = 1 + rng.below(2);
        let picked: Vec<Value> = (0..n)
            .map(|_| {
                if rng.percent(50) {
                    rng.pick(&all_tolerations[..6])
                } else {
                    rng.pick(&all_tolerations)
                }
            })
            .collect();
        spec["tolerations"] = json!(picked);
    }
    spec
}

/// Each part of the generator on its own, on a head, on a worker and on a worker with a GPU
/// (the exception).
fn catalog() -> Vec<(Role, Value)> {
    let mut specs = Vec::new();
    let one_gpu = Gpus {
        count: 1,
        with_request: true,
        as_string: false,
    };
    for (role, gpus) in [
        (Role::Head, None),
        (Role::Worker, None),
        (Role::Worker, Some(one_gpu)),
    ] {
        let plain_spec =
            |role: Role| json!({"containers": [container(ray_container_name(role), gpus)]});
        specs.push((role, plain_spec(role)));
        for name in NODE_NAMES {
            let mut s = plain_spec(role);
            s["nodeName"] = json!(name);
            specs.push((role, s.clone()));
            s["nodeSelector"] = json!({ROLE: "worker"});
            specs.push((role, s));
        }
        for (k, v) in selector_pairs() {
            let mut s = plain_spec(role);
            s["nodeSelector"] = json!({k: v});
            specs.push((role, s.clone()));
            s["tolerations"] = json!([toleration(Some(CONTROL_PLANE), Some("Exists"), None, None)]);
            specs.push((role, s));
        }
        for r in requirements().into_iter().chain(field_requirements()) {
            let field = r["key"] == "metadata.name";
            let term = if field {
                json!({"matchFields": [r]})
            } else {
                json!({"matchExpressions": [r]})
            };
            let mut s = plain_spec(role);
            set_required(&mut s, vec![term.clone()]);
            specs.push((role, s.clone()));
            s["tolerations"] = json!([toleration(None, Some("Exists"), None, None)]);
            specs.push((role, s));
            // ORed with a term for the workers; ANDed with the worker label.
            let mut s = plain_spec(role);
            let worker_term = json!({"matchExpressions": [requirement(ROLE, "In", &["worker"])]});
            set_required(&mut s, vec![worker_term, term.clone()]);
            specs.push((role, s));
            let mut anded = term.clone();
            let expressions = anded
                .as_object_mut()
                .unwrap()
                .entry("matchExpressions")
                .or_insert(json!([]));
            expressions
                .as_array_mut()
                .unwrap()
                .push(requirement(ROLE, "In", &["worker"]));
            let mut s = plain_spec(role);
            set_required(&mut s, vec![anded]);
            s["tolerations"] = json!([toleration(Some(CONTROL_PLANE), Some("Exists"), None, None)]);
            specs.push((role, s));
            // Preferred only: never constrains.
            let mut s = plain_spec(role);
            s["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] =
                json!([{"weight": 50, "preference": term}]);
            specs.push((role, s));
        }
        for t in tolerations() {
            let mut s = plain_spec(role);
            s["tolerations"] = json!([t]);
            specs.push((role, s.clone()));
            s["nodeSelector"] = json!({HOSTNAME: MASTER});
            specs.push((role, s.clone()));
            s["nodeSelector"] = json!({ROLE: "worker"});
            specs.push((role, s));
        }
        if gpus.is_some() {
            continue;
        }
        for count in [0, 1, 2] {
            for with_request in [false, true] {
                for as_string in [false, true] {
                    let gpus = Gpus {
                        count,
                        with_request,
                        as_string,
                    };
                    for extra in 0..4 {
                        let mut s = json!({"containers": [container(ray_container_name(role), Some(gpus))]});
                        match extra {
                            0 => {}
                            1 => s["nodeSelector"] = json!({ROLE: "worker"}),
                            2 => {
                                s["tolerations"] = json!([toleration(
                                    Some(CONTROL_PLANE),
                                    Some("Exists"),
                                    None,
                                    Some("NoSchedule")
                                )])
                            }
                            _ => s["nodeName"] = json!(MASTER),
                        }
                        specs.push((role, s));
                    }
                }
            }
        }
    }
    specs
}

// ---------------------------------------------------------------------------------------
// Objects

/// A Pod spec inside an object.
struct SpecRef {
    object: usize,
    /// JSON pointer of the Pod spec in the object.
    pointer: String,
    role: Role,
    /// The Pod the oracle gets: its metadata and the spec.
    pod_name: String,
    cluster: String,
    group: String,
}

fn ray_cluster(name: &str, head: Value, workers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "rayVersion": "2.52.0",
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": head}},
            "workerGroupSpecs": workers.into_iter().enumerate().map(|(i, spec)| json!({
                "groupName": format!("g{i}"),
                "replicas": 1, "minReplicas": 1, "maxReplicas": 1,
                "rayStartParams": {},
                "template": {"spec": spec},
            })).collect::<Vec<_>>(),
        },
    })
}

fn ray_pod(name: &str, cluster: &str, role: Role, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": pod_labels(cluster, role, "g0")},
        "spec": spec,
    })
}

fn pod_labels(cluster: &str, role: Role, group: &str) -> Value {
    let (node_type, group) = match role {
        Role::Head => ("head", "headgroup"),
        Role::Worker => ("worker", group),
    };
    json!({"ray.io/cluster": cluster, "ray.io/node-type": node_type, "ray.io/group": group})
}

struct Corpus {
    objects: Vec<Value>,
    specs: Vec<SpecRef>,
}

impl Corpus {
    fn add_cluster(&mut self, head: Value, workers: Vec<Value>) {
        let object = self.objects.len();
        let name = format!("c{object}");
        for i in 0..=workers.len() {
            let (pointer, role, group) = if i == 0 {
                (
                    "/spec/headGroupSpec/template/spec".to_owned(),
                    Role::Head,
                    "headgroup".to_owned(),
                )
            } else {
                (
                    format!("/spec/workerGroupSpecs/{}/template/spec", i - 1),
                    Role::Worker,
                    format!("g{}", i - 1),
                )
            };
            self.specs.push(SpecRef {
                object,
                pointer,
                role,
                pod_name: format!("{name}-{group}"),
                cluster: name.clone(),
                group,
            });
        }
        self.objects.push(ray_cluster(&name, head, workers));
    }

    fn add_pod(&mut self, role: Role, spec: Value) {
        let object = self.objects.len();
        let name = format!("p{object}");
        let cluster = format!("c{object}");
        self.specs.push(SpecRef {
            object,
            pointer: "/spec".to_owned(),
            role,
            pod_name: name.clone(),
            cluster: cluster.clone(),
            group: "g0".to_owned(),
        });
        self.objects.push(ray_pod(&name, &cluster, role, spec));
    }

    /// The Pod the oracle judges for `spec`, from `object` (the original or a patched one).
    fn oracle_pod(&self, spec: &SpecRef, object: &Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": spec.pod_name,
                "namespace": NAMESPACE,
                "labels": pod_labels(&spec.cluster, spec.role, &spec.group),
            },
            "spec": object.pointer(&spec.pointer).unwrap(),
        })
    }
}

fn corpus() -> Corpus {
    let mut c = Corpus {
        objects: Vec::new(),
        specs: Vec::new(),
    };
    // The catalog: workers as Pods, and in clusters with a plain head; heads in clusters with
    // one worker group, a GPU worker of the catalog while they last (so that its clusters need
    // no plain head), else a plain one.
    let (mut heads, mut gpu_groups) = (Vec::new(), Vec::new());
    for (role, spec) in catalog() {
        match role {
            Role::Head => heads.push(spec),
            Role::Worker => {
                c.add_pod(Role::Worker, spec.clone());
                if gpu_exception(role, &spec) {
                    gpu_groups.push(spec);
                } else {
                    c.add_cluster(plain_spec(Role::Head), vec![spec]);
                }
            }
        }
    }
    let mut gpu_groups = gpu_groups.into_iter();
    for head in heads {
        let worker = gpu_groups
            .next()
            .unwrap_or_else(|| plain_spec(Role::Worker));
        c.add_cluster(head, vec![worker]);
    }
    for worker in gpu_groups {
        c.add_cluster(plain_spec(Role::Head), vec![worker]);
    }
    let mut rng = Rng(SEED);
    for _ in 0..RANDOM_CLUSTERS {
        let head = random_spec(&mut rng, Role::Head);
        let workers = (0..1 + rng.below(3))
            .map(|_| random_spec(&mut rng, Role::Worker))
            .collect();
        c.add_cluster(head, workers);
    }
    for _ in 0..RANDOM_PODS {
        let role = if rng.percent(25) {
            Role::Head
        } else {
            Role::Worker
        };
        let spec = random_spec(&mut rng, role);
        c.add_pod(role, spec);
    }
    c
}

// ---------------------------------------------------------------------------------------
// The oracle

fn oracle() -> std::path::PathBuf {
    go_oracle::build("scripts/placement-oracle.sh", "the placement oracle")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default)]
    invalid: Option<String>,
    #[serde(default)]
    scheduler: Vec<String>,
    #[serde(default)]
    rejected: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    kubelet: Vec<String>,
    #[serde(default)]
    lands: Vec<String>,
}

/// The oracle's answers for `pods`, one list per node set.
fn oracle_answers(
    oracle: &std::path::Path,
    node_sets: &[(&str, Vec<Value>)],
    pods: &[Value],
) -> Vec<Vec<Answer>> {
    let documents: Vec<Value> = node_sets
        .iter()
        .map(|(_, nodes)| json!({"nodes": nodes, "pods": pods}))
        .collect();
    let answers: Vec<Vec<Answer>> = go_oracle::run_lines(oracle, &documents)
        .iter()
        .map(|line| {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Line {
                pods: Vec<Answer>,
            }
            serde_json::from_str::<Line>(line).unwrap().pods
        })
        .collect();
    assert_eq!(answers.len(), node_sets.len());
    for a in &answers {
        assert_eq!(a.len(), pods.len());
    }
    answers
}

// ---------------------------------------------------------------------------------------
// raygate

fn evaluate(engine: &Engine, object: &Value) -> Decision {
    let view = ObjectRef::from_value(object).expect("an object with a kind");
    engine.evaluate(&view, &Context::complete(&[]))
}

/// raygate's placement findings on one spec: (rule, fillable).
fn placement_findings(decision: &Decision, pointer: &str) -> Vec<(&'static str, bool)> {
    decision
        .violations
        .iter()
        .filter(|v| v.rule.as_str().starts_with("placement/"))
        .filter(|v| v.path == pointer || v.path.starts_with(&format!("{pointer}/")))
        .map(|v| (v.rule.as_str(), v.fillable))
        .collect()
}

/// Whether the GPU exception covers the spec, read here independently of raygate: a worker
/// whose Ray container (the first) asks for a whole positive number of `nvidia.com/gpu`.
fn gpu_exception(role: Role, spec: &Value) -> bool {
    role == Role::Worker
        && ["requests", "limits"].iter().any(|kind| {
            match &spec["containers"][0]["resources"][kind][GPU] {
                Value::Number(n) => n.as_u64().is_some_and(|n| n > 0),
                Value::String(s) => s.parse::<u64>().is_ok_and(|n| n > 0),
                _ => false,
            }
        })
}

fn short(rule: &str) -> &str {
    rule.strip_prefix("placement/").unwrap_or(rule)
}

/// The class of a spec with master findings that the oracle keeps off gpu-node: the findings
/// and why it stays off.
fn off_master_class(master_rules: &[&str], spec: &Value, answer: &Answer) -> String {
    let rules: Vec<&str> = master_rules.iter().map(|r| short(r)).collect();
    let why = match spec["nodeName"].as_str() {
        // Bound to the master: the binding is the finding, whatever else the spec says.
        Some(MASTER) if master_rules.contains(&NODE_NAME) => {
            return "master: node-name; bound to gpu-node, whose kubelet refuses it".into();
        }
        Some(MASTER) => "bound to gpu-node, whose kubelet refuses it",
        Some(_) => "bound to another node",
        None => {
            let rejected = answer.rejected.get(MASTER).expect("gpu-node is rejected");
            let by = |plugin: &str| rejected.iter().any(|r| r == plugin);
            match (by("TaintToleration"), by("NodeAffinity")) {
                (false, false) => "kept off by resources only",
                (false, true) => "kept off by its selectors",
                (true, false) => "kept off by the taint",
                (true, true) => "kept off by the taint and its selectors",
            }
        }
    };
    format!("master: {}; {why}", rules.join(","))
}

fn off_workers_class(spec: &Value, answer: &Answer) -> &'static str {
    if answer.lands.is_empty() {
        "workers: runs nowhere"
    } else if spec.get("nodeName").is_some() {
        "workers: bound to a worker by nodeName"
    } else {
        "workers: only workers match its selectors"
    }
}

/// The class of a GPU-exception spec raygate finds not pinned that the oracle keeps on the
/// workers and gpu-node.
fn gpu_off_others_class(spec: &Value, answer: &Answer, nodes: &[Value]) -> String {
    if answer.lands.is_empty() {
        return "GPU exception: runs nowhere".into();
    }
    if spec.get("nodeName").is_some() {
        return "GPU exception: bound to a worker by nodeName".into();
    }
    // What keeps it off each node that is neither a worker nor gpu-node.
    let mut why: BTreeSet<&str> = BTreeSet::new();
    for node in nodes {
        let name = node["metadata"]["name"].as_str().unwrap();
        if name == MASTER || node["metadata"]["labels"][ROLE] == "worker" {
            continue;
        }
        let rejected = answer.rejected.get(name).expect("another node is rejected");
        why.insert(if rejected.iter().any(|r| r == "NodeAffinity") {
            "its selectors"
        } else if rejected.iter().any(|r| r == "NodeResourcesFit") {
            "resources"
        } else {
            "other"
        });
    }
    match why.iter().copied().collect::<Vec<_>>().as_slice() {
        [] => "GPU exception: no node but workers and gpu-node".into(),
        [one] => format!("GPU exception: kept off the other nodes by {one}"),
        some => format!(
            "GPU exception: kept off the other nodes by {}",
            some.join(" and ")
        ),
    }
}

#[derive(Default)]
struct Tally {
    classes: BTreeMap<String, (usize, String)>,
}

impl Tally {
    fn add(&mut self, class: String, example: impl FnOnce() -> String) {
        let entry = self.classes.entry(class).or_insert_with(|| (0, example()));
        entry.0 += 1;
    }
}

#[test]
fn raygate_places_ray_pods_as_kube_scheduler_and_the_kubelet_would() {
    let oracle = oracle();
    let node_sets = node_sets();
    let corpus = corpus();
    let engine = Engine::new(Policy::built_in());

    // raygate's decisions on the objects as given, and on them once patched.
    let decisions: Vec<Decision> = corpus
        .objects
        .iter()
        .map(|o| evaluate(&engine, o))
        .collect();
    let patched: Vec<Option<(Value, Decision)>> = corpus
        .objects
        .iter()
        .zip(&decisions)
        .map(|(object, decision)| {
            (!decision.patch.0.is_empty()).then(|| {
                let mut fixed = object.clone();
                json_patch::patch(&mut fixed, &decision.patch.0).expect("the patch applies");
                let again = evaluate(&engine, &fixed);
                (fixed, again)
            })
        })
        .collect();

    // One oracle run: every spec as given, then every patched spec.
    let mut pods: Vec<Value> = corpus
        .specs
        .iter()
        .map(|s| corpus.oracle_pod(s, &corpus.objects[s.object]))
        .collect();
    let mut patched_index = vec![None; corpus.specs.len()];
    for (i, s) in corpus.specs.iter().enumerate() {
        if let Some((fixed, _)) = &patched[s.object] {
            patched_index[i] = Some(pods.len());
            pods.push(corpus.oracle_pod(s, fixed));
        }
    }
    let answers = oracle_answers(&oracle, &node_sets, &pods);

    let invalid: Vec<String> = answers[0]
        .iter()
        .zip(&pods)
        .filter_map(|(a, p)| a.invalid.as_ref().map(|e| format!("  {p}: {e}")))
        .collect();
    assert!(
        invalid.is_empty(),
        "the API server refuses {} Pods:\n{}",
        invalid.len(),
        invalid.join("\n")
    );

    let allowed: BTreeMap<&str, &str> = STRICTER.iter().copied().collect();
    let mut stricter = Tally::default();
    let mut wrong = Tally::default();
    let mut queries = 0;
    // Counts for the balance of the corpus, over every node set.
    let (mut on_master, mut master_findings, mut only_workers, mut pin_compared, mut not_pinned) =
        (0, 0, 0, 0, 0);
    let (mut gpu_specs, mut gpu_on_master, mut gpu_nowhere, mut gpu_on_workers, mut gpu_elsewhere) =
        (0, 0, 0, 0, 0);
    let (mut gpu_not_pinned, mut gpu_admitted, mut gpu_filled, mut gpu_admitted_on_master) =
        (0, 0, 0, 0);
    let (mut admitted, mut filled, mut bypass) = (0, 0, 0);
    let mut compared = 0;

    for ((set_name, nodes), set_answers) in node_sets.iter().zip(&answers) {
        let workers = workers_of(nodes);
        let workers_and_master: BTreeSet<String> = workers
            .iter()
            .cloned()
            .chain(std::iter::once(MASTER.to_owned()))
            .collect();
        queries += pods.len() * nodes.len();
        for (i, s) in corpus.specs.iter().enumerate() {
            let object = &corpus.objects[s.object];
            let spec = object.pointer(&s.pointer).unwrap();
            let answer = &set_answers[i];
            let findings = placement_findings(&decisions[s.object], &s.pointer);
            let rules: BTreeSet<&str> = findings.iter().map(|(r, _)| *r).collect();
            let example = || {
                format!(
                    "[{set_name}] {} {}: raygate {:?}; lands on {:?}; scheduler {:?}, rejected \
                     {:?}; kubelets {:?}\n    {}",
                    object["kind"].as_str().unwrap(),
                    s.pod_name,
                    rules,
                    answer.lands,
                    answer.scheduler,
                    answer.rejected,
                    answer.kubelet,
                    spec
                )
            };
            compared += 1;

            // The GPU exception widens where a spec may run from the workers to the workers
            // and gpu-node; no other node.
            let exempt = gpu_exception(s.role, spec);
            let allowed_nodes = if exempt {
                &workers_and_master
            } else {
                &workers
            };
            let lands_on_master = answer.lands.iter().any(|n| n == MASTER);
            let master: Vec<&str> = MASTER_RULES
                .iter()
                .copied()
                .filter(|r| rules.contains(r))
                .collect();
            if exempt {
                gpu_specs += 1;
                if lands_on_master {
                    gpu_on_master += 1;
                } else if answer.lands.is_empty() {
                    gpu_nowhere += 1;
                } else if answer.lands.iter().all(|n| workers.contains(n)) {
                    gpu_on_workers += 1;
                } else {
                    gpu_elsewhere += 1;
                }
                if !master.is_empty() {
                    wrong.add(
                        "a GPU worker (the exception) has a master finding".into(),
                        example,
                    );
                }
            } else {
                // Bound to the master past its taint: the kubelet admits what the scheduler
                // would not.
                bypass +=
                    usize::from(lands_on_master && !answer.scheduler.iter().any(|n| n == MASTER));
                on_master += usize::from(lands_on_master);
                master_findings += usize::from(!master.is_empty());
                match (lands_on_master, master.is_empty()) {
                    (true, true) => wrong.add(
                        format!(
                            "FALSE ACCEPT: runs on gpu-node without a master finding (raygate: {:?})",
                            rules
                        ),
                        example,
                    ),
                    (false, false) => {
                        stricter.add(off_master_class(&master, spec, answer), example)
                    }
                    _ => {}
                }
            }

            if master.is_empty() {
                let on_allowed_only = answer.lands.iter().all(|n| allowed_nodes.contains(n));
                let pinned = !rules.contains(NOT_PINNED);
                if exempt {
                    gpu_not_pinned += usize::from(!pinned);
                } else {
                    pin_compared += 1;
                    only_workers += usize::from(on_allowed_only);
                    not_pinned += usize::from(!pinned);
                }
                match (on_allowed_only, pinned) {
                    (false, true) => wrong.add(
                        format!(
                            "FALSE ACCEPT: {}no placement finding, but runs on {:?}",
                            if exempt { "GPU exception, " } else { "" },
                            answer
                                .lands
                                .iter()
                                .filter(|n| !allowed_nodes.contains(*n))
                                .collect::<Vec<_>>()
                        ),
                        example,
                    ),
                    (true, false) if exempt => {
                        stricter.add(gpu_off_others_class(spec, answer, nodes), example)
                    }
                    (true, false) => stricter.add(off_workers_class(spec, answer).into(), example),
                    _ => {}
                }
            }

            // What raygate admits: the spec once patched, if nothing is left to deny.
            let remaining = findings.iter().any(|(_, fillable)| !fillable);
            if !remaining {
                admitted += 1;
                gpu_admitted += usize::from(exempt);
                let landing = match patched_index[i] {
                    Some(p) => {
                        filled += usize::from(!findings.is_empty());
                        gpu_filled += usize::from(exempt && !findings.is_empty());
                        let (fixed, again) = patched[s.object].as_ref().unwrap();
                        if !placement_findings(again, &s.pointer).is_empty() {
                            wrong.add(
                                "the patched spec still has placement findings".into(),
                                || {
                                    format!(
                                        "{}\n    {}",
                                        example(),
                                        fixed.pointer(&s.pointer).unwrap()
                                    )
                                },
                            );
                        }
                        &set_answers[p].lands
                    }
                    None => &answer.lands,
                };
                gpu_admitted_on_master +=
                    usize::from(exempt && landing.iter().any(|n| n == MASTER));
                let off: Vec<&String> = landing
                    .iter()
                    .filter(|n| !allowed_nodes.contains(*n))
                    .collect();
                if !off.is_empty() {
                    wrong.add(
                        format!(
                            "FALSE ACCEPT: {}admitted, runs on {off:?}",
                            if exempt { "GPU exception, " } else { "" }
                        ),
                        example,
                    );
                }
            }
        }
    }

    let mut report = Vec::new();
    let mut unexplained = Vec::new();
    let mut total_stricter = 0;
    for (class, (n, example)) in &stricter.classes {
        total_stricter += n;
        match allowed.get(class.as_str()) {
            Some(_) => report.push(format!("  {n:5}  {class}")),
            None => unexplained.push(format!("{n} × {class}\n  e.g. {example}")),
        }
    }
    for (class, (n, example)) in &wrong.classes {
        unexplained.push(format!("{n} × {class}\n  e.g. {example}"));
    }
    let summary = format!(
        "{} objects, {} Pod specs ({} patched), {} node sets ({} nodes), {queries} Pod-node \
         queries, {compared} spec verdicts compared; {} wrong, {total_stricter} where raygate \
         is stricter on purpose:\n{}\n\
         runs on gpu-node {on_master} ({bypass} bound past the taint the scheduler would have \
         kept), master finding {master_findings}; of {pin_compared} \
         specs without a master finding, {only_workers} run only on workers and raygate finds \
         {not_pinned} not pinned; {admitted} admitted ({filled} after a fill-in); {gpu_specs} \
         GPU-exception verdicts: {gpu_on_master} on gpu-node, {gpu_nowhere} nowhere, \
         {gpu_on_workers} only on workers, {gpu_elsewhere} on another node; raygate finds \
         {gpu_not_pinned} not pinned, admits {gpu_admitted} ({gpu_filled} after a fill-in, \
         {gpu_admitted_on_master} of them run on gpu-node)",
        corpus.objects.len(),
        corpus.specs.len(),
        pods.len() - corpus.specs.len(),
        node_sets.len(),
        node_sets
            .iter()
            .map(|(_, nodes)| nodes.len().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        wrong.classes.values().map(|(n, _)| n).sum::<usize>(),
        report.join("\n"),
    );
    eprintln!("{summary}");
    assert!(
        unexplained.is_empty(),
        "{}\n\n{summary}",
        unexplained.join("\n\n")
    );
    // Every allowed class still occurs: an entry nothing exercises is stale.
    let stale: Vec<&str> = STRICTER
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| !stricter.classes.contains_key(*c))
        .collect();
    assert!(
        stale.is_empty(),
        "allowed classes that never occur: {stale:#?}"
    );

    // The corpus is not one-sided.
    let between = |part: usize, whole: usize| part * 8 >= whole && part * 8 <= whole * 7;
    assert!(
        between(on_master, compared - gpu_specs),
        "{on_master} on gpu-node"
    );
    assert!(
        between(master_findings, compared - gpu_specs),
        "{master_findings} master findings"
    );
    assert!(
        between(only_workers, pin_compared),
        "{only_workers} only on workers"
    );
    assert!(between(not_pinned, pin_compared), "{not_pinned} not pinned");
    assert!(
        admitted * 8 >= compared && filled >= 100,
        "{admitted} admitted, {filled} filled"
    );
    assert!(gpu_on_master >= 50 && gpu_nowhere >= 20, "GPU verdicts");
    // The exception is exercised both ways: specs that would run off both the workers and
    // gpu-node, and specs admitted (some only once filled in) that run on gpu-node.
    assert!(
        gpu_elsewhere >= 50,
        "{gpu_elsewhere} GPU verdicts on another node"
    );
    assert!(
        gpu_filled >= 20 && gpu_admitted_on_master >= 20,
        "{gpu_filled} GPU specs filled, {gpu_admitted_on_master} admitted on gpu-node"
    );
    assert!(bypass >= 20, "{bypass} bound past the taint");
    assert!(corpus.specs.len() >= 3000, "{} specs", corpus.specs.len());
}
