//! Placement: Ray pods run on `node-role=worker` nodes and never on a master, except that a
//! GPU worker group (`gpuGroupsMayUseMasters`) may also use the masters: for it the masters
//! join the workers as allowed nodes, and any other node stays out of bounds.

use crate::rule_id::RuleId;
use serde_json::{Map, Value, json};

use super::Findings;
use crate::policy::PlacementPolicy;
use crate::ray::{PodSpecRef, child};
use json_patch::jsonptr::PointerBuf;

const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
const REQUIRED_TERMS: &str =
    "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution";

/// Which pods may use the GPU exception (`gpuGroupsMayUseMasters`): a Ray worker group's,
/// never the head's (kept for the control plane's neighbours) or a submitter's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuException {
    Applies,
    Never,
}

/// What a pod spec's node constraints say about where it may run, each step adding what its
/// constraint says; [`report_pinning`] then reports (or fills) from it.
struct Pinning<'a> {
    /// The GPU exception applies: the masters join the workers as allowed nodes.
    may_use_masters: bool,
    node_name: &'a str,
    /// Some node constraint is set: nodeName, a non-empty nodeSelector or required affinity.
    constrained: bool,
    /// A master finding was reported: the pin finding would only repeat it.
    targets_master: bool,
    /// Kept on the allowed nodes by one of its constraints (they are ANDed).
    kept_on: bool,
}

/// Checks one pod spec; `subject` names it in messages ("head group", "Pod", ...).
///
/// A spec must be kept on its allowed nodes: the `node-role=worker` nodes, and for a GPU
/// worker group under the exception the masters too. Asking for a master (by nodeName, label
/// or toleration) is reported on its own unless the exception applies; a spec kept on no
/// allowed nodes is `not-pinned-to-workers`, filled in when it has no node constraint at all.
pub fn check_pod_spec(
    pod: &PodSpecRef<'_>,
    subject: &str,
    gpu: GpuException,
    out: &mut Findings<'_>,
) {
    let placement = &out.policy().spec().placement;
    let mut pin = Pinning {
        may_use_masters: gpu == GpuException::Applies
            && placement.gpu_groups_may_use_masters
            && requests_gpu(pod, placement),
        node_name: pod
            .spec
            .get("nodeName")
            .and_then(Value::as_str)
            .unwrap_or(""),
        constrained: false,
        targets_master: false,
        kept_on: false,
    };
    check_node_name(pod, subject, placement, &mut pin, out);
    check_node_selector(pod, subject, placement, &mut pin, out);
    check_required_affinity(pod, subject, placement, &mut pin, out);
    if !pin.may_use_masters {
        check_tolerations(pod, subject, placement, out);
    }
    report_pinning(pod, subject, placement, &pin, out);
}

fn check_node_name(
    pod: &PodSpecRef<'_>,
    subject: &str,
    placement: &PlacementPolicy,
    pin: &mut Pinning<'_>,
    out: &mut Findings<'_>,
) {
    let node_name = pin.node_name;
    pin.constrained |= !node_name.is_empty();
    if !is_master(placement, node_name) {
        return;
    }
    if pin.may_use_masters {
        // Bound to a master: the kubelet runs it there or nowhere.
        pin.kept_on = true;
    } else {
        pin.targets_master = true;
        out.report(
            RuleId::NodeName,
            &child(&pod.path, "nodeName"),
            || format!(
                "{subject} sets nodeName: {node_name}, a master kept for the control plane and GPU work; remove nodeName"
            ),
        );
    }
}

fn check_node_selector(
    pod: &PodSpecRef<'_>,
    subject: &str,
    placement: &PlacementPolicy,
    pin: &mut Pinning<'_>,
    out: &mut Findings<'_>,
) {
    let Some(selector) = pod.spec.get("nodeSelector").and_then(Value::as_object) else {
        return;
    };
    pin.constrained |= !selector.is_empty();
    for (key, raw) in selector {
        let value = raw.as_str().unwrap_or("");
        let values = std::slice::from_ref(&value);
        if pin.may_use_masters {
            pin.kept_on |= raw.is_string() && keeps_on_masters(placement, key, "In", values);
        } else if selects_master(placement, key, "In", values) {
            pin.targets_master = true;
            out.report(
                RuleId::TargetsMaster,
                &child(&child(&pod.path, "nodeSelector"), key),
                || format!(
                    "{subject} nodeSelector {key}: {value:?} targets a master; select {}: {} instead",
                    placement.worker_label.key, placement.worker_label.value
                ),
            );
        }
    }
    // Only the worker label keeps a pod on the workers: a hostname or a missing
    // control-plane label says nothing of nodes added later.
    if selector
        .get(&placement.worker_label.key)
        .and_then(Value::as_str)
        == Some(placement.worker_label.value.as_str())
    {
        pin.kept_on = true;
    }
}

/// Required node affinity keeps the pod on the allowed nodes when every term (they are
/// ORed) does.
fn check_required_affinity(
    pod: &PodSpecRef<'_>,
    subject: &str,
    placement: &PlacementPolicy,
    pin: &mut Pinning<'_>,
    out: &mut Findings<'_>,
) {
    let required = pod.spec.pointer(REQUIRED_TERMS);
    pin.constrained |= required.is_some();
    let terms = required
        .and_then(|r| r.get("nodeSelectorTerms"))
        .and_then(Value::as_array)
        .filter(|terms| !terms.is_empty());
    let Some(terms) = terms else {
        return;
    };
    let terms_path = [
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
    ]
    .iter()
    .fold(pod.path.clone(), |path, token| child(&path, token));
    let mut every_term_keeps_on = true;
    for (i, term) in terms.iter().enumerate() {
        let term_path = child(&terms_path, &i.to_string());
        every_term_keeps_on &= check_term(term, &term_path, subject, placement, pin, out);
    }
    pin.kept_on |= every_term_keeps_on;
}

/// Checks one node selector term; whether it keeps the pod on the allowed nodes.
fn check_term(
    term: &Value,
    term_path: &PointerBuf,
    subject: &str,
    placement: &PlacementPolicy,
    pin: &mut Pinning<'_>,
    out: &mut Findings<'_>,
) -> bool {
    let mut term_keeps_on = false;
    for (field, names_label) in [("matchExpressions", true), ("matchFields", false)] {
        let Some(requirements) = term.get(field).and_then(Value::as_array) else {
            continue;
        };
        for (j, requirement) in requirements.iter().enumerate() {
            let key = requirement.get("key").and_then(Value::as_str).unwrap_or("");
            let operator = requirement
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("");
            let values: Vec<&str> = requirement
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // matchFields can only name the node (metadata.name), which is its hostname.
            let key = if !names_label && key == "metadata.name" {
                HOSTNAME_LABEL
            } else if names_label {
                key
            } else {
                continue;
            };
            if pin.may_use_masters {
                term_keeps_on |= keeps_on_masters(placement, key, operator, &values);
            } else if selects_master(placement, key, operator, &values) {
                pin.targets_master = true;
                out.report(
                    RuleId::TargetsMaster,
                    &child(&child(term_path, field), &j.to_string()),
                    || format!(
                        "{subject} node affinity {key} {operator} {values:?} targets a master; require {}={} instead",
                        placement.worker_label.key, placement.worker_label.value
                    ),
                );
            }
            term_keeps_on |= keeps_on_workers(placement, key, operator, &values);
        }
    }
    term_keeps_on
}

fn check_tolerations(
    pod: &PodSpecRef<'_>,
    subject: &str,
    placement: &PlacementPolicy,
    out: &mut Findings<'_>,
) {
    let Some(tolerations) = pod.spec.get("tolerations").and_then(Value::as_array) else {
        return;
    };
    for (i, toleration) in tolerations.iter().enumerate() {
        let key = toleration.get("key").and_then(Value::as_str).unwrap_or("");
        let operator = toleration
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or("Equal");
        let path = child(&child(&pod.path, "tolerations"), &i.to_string());
        if key.is_empty() && operator == "Exists" {
            out.report(
                RuleId::ToleratesControlPlane,
                &path,
                || format!(
                    "{subject} tolerates every taint (operator Exists, no key), the masters' included; list only the taints it needs"
                ),
            );
        } else if placement.control_plane_taint_keys.iter().any(|k| k == key) {
            out.report(RuleId::ToleratesControlPlane, &path, || {
                format!("{subject} tolerates the master taint {key:?}; remove this toleration")
            });
        }
    }
}

/// A spec kept on no allowed nodes, with no master finding that already says so.
fn report_pinning(
    pod: &PodSpecRef<'_>,
    subject: &str,
    placement: &PlacementPolicy,
    pin: &Pinning<'_>,
    out: &mut Findings<'_>,
) {
    if pin.kept_on || pin.targets_master {
        return;
    }
    if pin.may_use_masters {
        report_gpu_not_pinned(pod, subject, placement, pin, out);
        return;
    }
    let spec = pod.spec;
    let worker = &placement.worker_label;
    // A value of the wrong type is the user's to fix: a fill-in never overwrites it.
    let can_fill = spec.is_object() && spec.get("nodeSelector").is_none_or(Value::is_object);
    if !pin.constrained && can_fill && out.enabled(RuleId::NotPinned) {
        out.report_fillable(RuleId::NotPinned, &pod.path, || {
            format!(
                "{subject} may be scheduled on a master; add nodeSelector {}: {}",
                worker.key, worker.value
            )
        });
        let selector_path = child(&pod.path, "nodeSelector");
        if spec
            .get("nodeSelector")
            .and_then(Value::as_object)
            .is_some()
        {
            out.fill(
                child(&selector_path, &worker.key),
                Value::String(worker.value.clone()),
            );
        } else {
            let mut selector = Map::new();
            selector.insert(worker.key.clone(), Value::String(worker.value.clone()));
            out.fill(selector_path, Value::Object(selector));
        }
    } else {
        out.report(
            RuleId::NotPinned,
            &pod.path,
            || format!(
                "{subject}'s nodeSelector and node affinity do not keep it off masters; add {}: {} to its nodeSelector",
                worker.key, worker.value
            ),
        );
    }
}

/// A GPU group under the exception kept neither on workers nor on masters.
fn report_gpu_not_pinned(
    pod: &PodSpecRef<'_>,
    subject: &str,
    placement: &PlacementPolicy,
    pin: &Pinning<'_>,
    out: &mut Findings<'_>,
) {
    let spec = pod.spec;
    let worker = &placement.worker_label;
    let node_name = pin.node_name;
    // Filled in as required node affinity, ORed terms: the workers, or the masters.
    // A value of the wrong type is the user's to fix: a fill-in never overwrites it.
    let affinity = spec.get("affinity");
    let node_affinity = affinity.and_then(|a| a.get("nodeAffinity"));
    let can_fill = spec.is_object()
        && affinity.is_none_or(Value::is_object)
        && node_affinity.is_none_or(Value::is_object);
    let masters = master_selection(placement);
    if !pin.constrained && can_fill && out.enabled(RuleId::NotPinned) {
        out.report_fillable(RuleId::NotPinned, &pod.path, || {
            format!(
                "{subject} asks for a GPU and may be scheduled on a node that is neither a worker nor a master (GPU groups may use either); add the required node affinity terms {} In [{}] or {}",
                worker.key, worker.value, masters.requirement
            )
        });
        let terms = json!([
            {"matchExpressions": [
                {"key": worker.key, "operator": "In", "values": [worker.value]}]},
            {"matchExpressions": [masters.expression]},
        ]);
        let required = json!({"nodeSelectorTerms": terms});
        let affinity_path = child(&pod.path, "affinity");
        let node_affinity_path = child(&affinity_path, "nodeAffinity");
        let (path, value) = match (affinity, node_affinity) {
            (None, _) => (
                affinity_path,
                json!({"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": required}}),
            ),
            (Some(_), None) => (
                node_affinity_path,
                json!({"requiredDuringSchedulingIgnoredDuringExecution": required}),
            ),
            (Some(_), Some(_)) => (
                child(
                    &node_affinity_path,
                    "requiredDuringSchedulingIgnoredDuringExecution",
                ),
                required,
            ),
        };
        out.fill(path, value);
    } else if node_name.is_empty() {
        out.report(RuleId::NotPinned, &pod.path, || {
            format!(
                "{subject}'s nodeSelector and node affinity keep it neither on workers nor on masters (a GPU group may use either); add {}: {} to its nodeSelector, or select a master with {}",
                worker.key, worker.value, masters.selector
            )
        });
    } else {
        out.report(RuleId::NotPinned, &pod.path, || {
            format!(
                "{subject} sets nodeName: {node_name}, not a master, and its nodeSelector and node affinity do not keep it on workers (a GPU group may use workers or masters); remove nodeName, set it to a master ({}), or add {}: {} to its nodeSelector if {node_name} is a worker",
                masters.names, worker.key, worker.value
            )
        });
    }
}

/// How a GPU group picks the masters: by hostname when the policy names them, else by the
/// control-plane label.
struct MasterSelection {
    /// The requirement of the filled-in term.
    expression: Value,
    /// The same requirement, as a message shows it.
    requirement: String,
    /// A nodeSelector pair that picks a master.
    selector: String,
    /// The masters' names, for nodeName.
    names: String,
}

fn master_selection(placement: &PlacementPolicy) -> MasterSelection {
    let masters = &placement.master_hostnames;
    if let Some(first) = masters.first() {
        MasterSelection {
            expression: json!({"key": HOSTNAME_LABEL, "operator": "In", "values": masters}),
            requirement: format!("{HOSTNAME_LABEL} In [{}]", masters.join(", ")),
            selector: format!("{HOSTNAME_LABEL}: {first}"),
            names: masters.join(", "),
        }
    } else {
        let label = &placement.control_plane_label;
        MasterSelection {
            expression: json!({"key": label, "operator": "Exists"}),
            requirement: format!("{label} Exists"),
            selector: format!("{label}: \"\""),
            names: format!("a node labelled {label}"),
        }
    }
}

fn is_master(placement: &PlacementPolicy, host: &str) -> bool {
    placement.master_hostnames.iter().any(|m| m == host)
}

fn is_control_plane_key(placement: &PlacementPolicy, key: &str) -> bool {
    key == placement.control_plane_label
        || placement.control_plane_taint_keys.iter().any(|k| k == key)
}

/// Whether a node requirement picks out a master.
fn selects_master(placement: &PlacementPolicy, key: &str, operator: &str, values: &[&str]) -> bool {
    match operator {
        "In" if key == HOSTNAME_LABEL => values.iter().any(|v| is_master(placement, v)),
        "In" | "Exists" => is_control_plane_key(placement, key),
        _ => false,
    }
}

/// Whether a node requirement, on its own, pins a pod to the worker nodes: only
/// `node-role In [worker]` does. `hostname NotIn [gpu-node]` or `control-plane DoesNotExist`
/// keep it off today's master but not off a node that is not labelled a worker.
fn keeps_on_workers(
    placement: &PlacementPolicy,
    key: &str,
    operator: &str,
    values: &[&str],
) -> bool {
    let worker = &placement.worker_label;
    operator == "In"
        && key == worker.key
        && !values.is_empty()
        && values.iter().all(|v| *v == worker.value)
}

/// Whether a node requirement, on its own, keeps a pod on the masters: a hostname (or node
/// name) that only names masters, or a control-plane label asked for (`In`, any value, or
/// `Exists`), which only a master carries. Unlike [`selects_master`], one master among other
/// names is not enough.
fn keeps_on_masters(
    placement: &PlacementPolicy,
    key: &str,
    operator: &str,
    values: &[&str],
) -> bool {
    match operator {
        "In" if key == HOSTNAME_LABEL => {
            !values.is_empty() && values.iter().all(|v| is_master(placement, v))
        }
        "In" | "Exists" => is_control_plane_key(placement, key),
        _ => false,
    }
}

/// Whether the Ray container asks for a GPU resource listed in the policy.
fn requests_gpu(pod: &PodSpecRef<'_>, placement: &PlacementPolicy) -> bool {
    let Some(ray) = pod.ray_container() else {
        return false;
    };
    let Some(resources) = ray.value.get("resources") else {
        return false;
    };
    ["requests", "limits"].iter().any(|kind| {
        resources
            .get(kind)
            .and_then(Value::as_object)
            .is_some_and(|map| {
                placement
                    .gpu_resources
                    .iter()
                    .any(|gpu| map.get(gpu).is_some_and(is_positive))
            })
    })
}

/// Whether a quantity is a whole number of devices, at least one: `"0"`, `"1m"`, `"0.5"` or
/// an unparseable value never count as asking for a GPU (Kubernetes refuses fractional
/// extended resources at the Pod), so they never unlock a master.
fn is_positive(quantity: &Value) -> bool {
    let text = match quantity {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return false,
    };
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.trim_start_matches('0').is_empty()
}
