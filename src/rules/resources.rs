//! Resources: every container of a Ray pod sets CPU and memory requests and limits.

use crate::rule_id::RuleId;
use serde_json::{Map, Value};

use super::Findings;
use crate::policy::{Policy, Resource};
use crate::quantity::Quantity;
use crate::ray::{ContainerRef, PodSpecRef, child};
use json_patch::jsonptr::PointerBuf;

pub fn check_pod_spec(pod: &PodSpecRef<'_>, subject: &str, out: &mut Findings<'_>) {
    for container in pod.all_containers() {
        check_container(pod, &container, subject, out);
    }
}

/// A quantity as written in the object, number or string.
fn quantity_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

fn parse(value: &Value) -> Option<Quantity> {
    Quantity::parse(quantity_text(value)?.as_ref())
}

/// A container's `resources`, as the checks read it.
struct Resources<'a> {
    path: PointerBuf,
    section: Option<&'a Map<String, Value>>,
    requests: Option<&'a Map<String, Value>>,
    limits: Option<&'a Map<String, Value>>,
    /// How messages name the container.
    who: String,
}

/// A request or limit as written: `None` when absent, `Some(None)` when not a quantity.
type Written = Option<Option<Quantity>>;

/// The requests and limits a container lacks, and the values that fill them.
#[derive(Default)]
struct Missing {
    names: Vec<String>,
    requests: Map<String, Value>,
    limits: Map<String, Value>,
}

fn check_container(
    pod: &PodSpecRef<'_>,
    container: &ContainerRef<'_>,
    subject: &str,
    out: &mut Findings<'_>,
) {
    let policy = out.policy();
    let section = container.value.get("resources").and_then(Value::as_object);
    let resources = Resources {
        path: child(&pod.container_path(container), "resources"),
        section,
        requests: section
            .and_then(|r| r.get("requests"))
            .and_then(Value::as_object),
        limits: section
            .and_then(|r| r.get("limits"))
            .and_then(Value::as_object),
        who: format!("{} of the {subject}", container.describe()),
    };
    let [cpu, memory] = parse_quantities(&resources, out);
    let mut missing = Missing::default();
    for (resource, (request, limit)) in [(Resource::Cpu, cpu), (Resource::Memory, memory)] {
        check_bounds(policy, &resources, resource, (&request, &limit), out);
        missing.add(policy, &resources, resource, (&request, &limit));
    }
    if !missing.names.is_empty() && out.enabled(RuleId::ResourcesMissing) {
        report_missing(pod, container, &resources, missing, out);
    }
    check_gpus(
        policy,
        &resources.path,
        resources.requests,
        resources.limits,
        &resources.who,
        out,
    );
}

/// The CPU and memory (request, limit) pairs, parsed once; what does not parse is reported.
fn parse_quantities(resources: &Resources<'_>, out: &mut Findings<'_>) -> [(Written, Written); 2] {
    let who = &resources.who;
    let mut parsed = |map: Option<&Map<String, Value>>, kind: &str, resource: &str| {
        let value = map?.get(resource)?;
        let quantity = parse(value);
        if quantity.is_none() {
            out.report(
                RuleId::InvalidQuantity,
                &child(&child(&resources.path, kind), resource),
                || format!("{who} {kind}.{resource} is {value}, not a Kubernetes quantity; write e.g. \"500m\" or \"2Gi\""),
            );
        }
        Some(quantity)
    };
    let cpu = (
        parsed(resources.requests, "requests", "cpu"),
        parsed(resources.limits, "limits", "cpu"),
    );
    let memory = (
        parsed(resources.requests, "requests", "memory"),
        parsed(resources.limits, "limits", "memory"),
    );
    [cpu, memory]
}

/// A limit below its request, and values outside the platform's minimum and maximum.
fn check_bounds(
    policy: &Policy,
    resources: &Resources<'_>,
    resource: Resource,
    (request, limit): (&Written, &Written),
    out: &mut Findings<'_>,
) {
    let Resources {
        path,
        requests,
        limits,
        who,
        ..
    } = resources;
    let (requests, limits) = (*requests, *limits);
    let name = resource.as_str();
    if let (Some(Some(request_q)), Some(Some(limit_q))) = (request, limit)
        && limit_q < request_q
    {
        out.report(
            RuleId::LimitBelowRequest,
            &child(&child(path, "limits"), name),
            || format!(
                "{who} limits.{name} {} is below its request {}; raise the limit to at least the request",
                text(limits, name),
                text(requests, name)
            ),
        );
    }
    if let Some(min) = policy.minimum.get(resource) {
        for (kind, map, value) in [("requests", requests, request), ("limits", limits, limit)] {
            if let Some(Some(q)) = value
                && *q < min.parsed
            {
                out.report(
                    RuleId::BelowMinimum,
                    &child(&child(path, kind), name),
                    || {
                        format!(
                            "{who} {kind}.{name} {} is below the platform minimum {} (0 is no limit at all to Kubernetes); raise it to at least {}",
                            text(map, name),
                            min.text,
                            min.text
                        )
                    },
                );
            }
        }
    }
    if let Some(max) = policy.maximum.get(resource) {
        for (kind, map, value) in [("requests", requests, request), ("limits", limits, limit)] {
            if let Some(Some(q)) = value
                && *q > max.parsed
            {
                out.report(
                    RuleId::AboveMaximum,
                    &child(&child(path, kind), name),
                    || {
                        format!(
                            "{who} {kind}.{name} {} is above the platform maximum {}; lower it",
                            text(map, name),
                            max.text
                        )
                    },
                );
            }
        }
    }
}

impl Missing {
    /// Adds what `resource` lacks. Fills so that the result is valid: a request defaults to
    /// the limit (as Kubernetes does for Pods) and a filled limit is never below the request.
    fn add(
        &mut self,
        policy: &Policy,
        resources: &Resources<'_>,
        resource: Resource,
        (request, limit): (&Written, &Written),
    ) {
        let name = resource.as_str();
        match (request, limit) {
            (None, None) => {
                self.names.push(format!("requests.{name}"));
                self.names.push(format!("limits.{name}"));
                self.requests
                    .insert(name.into(), policy_default(policy, resource, true));
                self.limits
                    .insert(name.into(), policy_default(policy, resource, false));
            }
            // An unparseable limit is reported above; copying it would report it twice.
            (None, Some(None)) => {
                self.names.push(format!("requests.{name}"));
                self.requests
                    .insert(name.into(), policy_default(policy, resource, true));
            }
            // A limit below the minimum is reported above; a request copied from it would be
            // a second finding for the same fix.
            (None, Some(Some(limit_q)))
                if policy
                    .minimum
                    .get(resource)
                    .as_ref()
                    .is_some_and(|min| *limit_q < min.parsed) => {}
            (None, Some(Some(_))) => {
                self.names.push(format!("requests.{name}"));
                self.requests.insert(
                    name.into(),
                    resources
                        .limits
                        .and_then(|l| l.get(name))
                        .cloned()
                        .unwrap_or_default(),
                );
            }
            (Some(request_q), None) => {
                self.names.push(format!("limits.{name}"));
                let default = &policy.default_limits.get(resource).parsed;
                let value = match request_q {
                    Some(q) if q > default => resources
                        .requests
                        .and_then(|r| r.get(name))
                        .cloned()
                        .unwrap_or_default(),
                    _ => policy_default(policy, resource, false),
                };
                self.limits.insert(name.into(), value);
            }
            (Some(_), Some(_)) => {}
        }
    }
}

/// Reports the missing requests and limits, and fills them in where that is safe.
fn report_missing(
    pod: &PodSpecRef<'_>,
    container: &ContainerRef<'_>,
    resources: &Resources<'_>,
    missing: Missing,
    out: &mut Findings<'_>,
) {
    let filled: Vec<String> = missing
        .requests
        .iter()
        .map(|(k, v)| format!("requests.{k}: {}", shown(v)))
        .chain(
            missing
                .limits
                .iter()
                .map(|(k, v)| format!("limits.{k}: {}", shown(v))),
        )
        .collect();
    let message = format!(
        "{} has no {}; set {}",
        resources.who,
        super::and_list(&missing.names),
        filled.join(", ")
    );
    // A value of the wrong type is the user's to fix: a fill-in never overwrites it.
    let raw = container.value.get("resources");
    // Pod-level limits (Kubernetes 1.34) bound every container together: a default
    // filled into one container could exceed them, so nothing is filled there.
    let pod_limited = pod
        .field("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .is_some_and(|l| l.contains_key("cpu") || l.contains_key("memory"));
    let message = if pod_limited {
        format!(
            "{message} (not filled in: the pod's own spec.resources limits bound its containers, and a default could exceed them)"
        )
    } else {
        message
    };
    let can_fill = !pod_limited
        && container.value.is_object()
        && raw.is_none_or(Value::is_object)
        && ["requests", "limits"]
            .iter()
            .all(|kind| raw.and_then(|r| r.get(kind)).is_none_or(Value::is_object));
    if !can_fill {
        out.report(RuleId::ResourcesMissing, &resources.path, || message);
        return;
    }
    out.report_fillable(RuleId::ResourcesMissing, &resources.path, || message);
    fill_missing(resources, missing, out);
}

fn fill_missing(resources: &Resources<'_>, missing: Missing, out: &mut Findings<'_>) {
    if resources.section.is_none() {
        let mut all = Map::new();
        all.insert("requests".into(), Value::Object(missing.requests));
        all.insert("limits".into(), Value::Object(missing.limits));
        out.fill(resources.path.clone(), Value::Object(all));
        return;
    }
    for (kind, map, fills) in [
        ("requests", resources.requests, missing.requests),
        ("limits", resources.limits, missing.limits),
    ] {
        if fills.is_empty() {
            continue;
        }
        let kind_path = child(&resources.path, kind);
        if map.is_some() {
            for (key, value) in fills {
                out.fill(child(&kind_path, &key), value);
            }
        } else {
            out.fill(kind_path, Value::Object(fills));
        }
    }
}

/// `autoscalerOptions.resources` replaces KubeRay's defaults for the autoscaler sidecar when
/// set: an empty or partial one leaves the sidecar without requests or limits.
pub fn check_autoscaler(
    options: &Value,
    path: &json_patch::jsonptr::PointerBuf,
    out: &mut Findings<'_>,
) {
    let Some(resources) = options.get("resources") else {
        return;
    };
    let resources_path = child(path, "resources");
    let policy = out.policy();
    let mut missing = Vec::new();
    for kind in ["requests", "limits"] {
        let map = resources.get(kind).and_then(Value::as_object);
        for resource in Resource::BOTH {
            let name = resource.as_str();
            match map.and_then(|m| m.get(name)) {
                None => missing.push(format!("{kind}.{name}")),
                Some(value) => {
                    let parsed = parse(value);
                    let below = policy
                        .minimum
                        .get(resource)
                        .as_ref()
                        .zip(parsed)
                        .is_some_and(|(min, q)| q < min.parsed);
                    if parsed.is_none() {
                        out.report(RuleId::InvalidQuantity, &child(&child(&resources_path, kind), name), || {
                            format!("autoscalerOptions.resources.{kind}.{name} is {value}, not a Kubernetes quantity")
                        });
                    } else if below {
                        out.report(RuleId::BelowMinimum, &child(&child(&resources_path, kind), name), || {
                            format!("autoscalerOptions.resources.{kind}.{name} {value} is below the platform minimum; raise it")
                        });
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        out.report(RuleId::ResourcesMissing, &resources_path, || {
            format!(
                "autoscalerOptions.resources is set but has no {}, so KubeRay's defaults no longer apply and the autoscaler sidecar runs without them; set them or remove resources",
                super::and_list(&missing)
            )
        });
    }
}

fn check_gpus(
    policy: &Policy,
    resources_path: &json_patch::jsonptr::PointerBuf,
    requests: Option<&Map<String, Value>>,
    limits: Option<&Map<String, Value>>,
    who: &str,
    out: &mut Findings<'_>,
) {
    for gpu in &policy.spec().placement.gpu_resources {
        let Some(request) = requests.and_then(|r| r.get(gpu)) else {
            continue;
        };
        let limit = limits.and_then(|l| l.get(gpu));
        let equal = match limit {
            Some(limit) => match (parse(request), parse(limit)) {
                (Some(r), Some(l)) => r == l,
                _ => quantity_text(request) == quantity_text(limit),
            },
            None => false,
        };
        if !equal {
            let limit_text = limit.map_or_else(|| "unset".to_owned(), |l| l.to_string());
            out.report(
                RuleId::GpuMismatch,
                &child(&child(resources_path, "limits"), gpu),
                || format!(
                    "{who} requests {gpu} {request} but its limit is {limit_text}; set limits.{gpu} equal to the request"
                ),
            );
        }
    }
}

fn policy_default(policy: &Policy, resource: Resource, request: bool) -> Value {
    let defaults = if request {
        &policy.default_requests
    } else {
        &policy.default_limits
    };
    Value::String(defaults.get(resource).text.clone())
}

fn text(map: Option<&Map<String, Value>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).map(shown).unwrap_or_default()
}

fn shown(value: &Value) -> String {
    quantity_text(value)
        .map(|c| c.into_owned())
        .unwrap_or_else(|| value.to_string())
}
