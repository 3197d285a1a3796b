//! The port plan: planned container ports, pinned `rayStartParams`, and forbidden defaults.

use serde_json::{Map, Value, json};

use super::Findings;
use crate::policy::{PlannedPort, PortPolicy};
use crate::ray::{
    ClusterSpec, ContainerRef, NodeGroup, PodSpecRef, Role, as_port, child, param_text,
};

pub const HEAD_PORT: &str = "ports/head-port";
pub const METRICS_PORT: &str = "ports/metrics-port";
pub const SERVE_PORT_NAME: &str = "ports/serve-port-name";
pub const RAY_START_PARAM: &str = "ports/ray-start-param";
pub const NODE_PORT_RANGE: &str = "ports/node-port-range";
pub const FORBIDDEN_PORT: &str = "ports/forbidden-port";
pub const WORKER_PORT_OVERLAP: &str = "ports/worker-port-overlap";

/// KubeRay's name for the Serve port; its Serve Service takes `serve` and `serve-*` only.
const SERVE_PORT: &str = "serve";

pub fn check_cluster(cluster: &ClusterSpec<'_>, out: &mut Findings<'_>) {
    let plan = &out.policy().spec().ports;
    for group in cluster.groups() {
        let Some(pod) = group.pod_spec() else {
            continue;
        };
        if let Some(ray) = pod.ray_container() {
            check_ray_container_ports(&group, &pod, &ray, plan, out);
        }
        check_start_params(&group, plan, out);
        check_forbidden_ports(&pod, plan, out);
    }
}

/// A Ray Pod: only forbidden ports apply, the rest was checked on its cluster.
pub fn check_pod(pod: &PodSpecRef<'_>, out: &mut Findings<'_>) {
    let plan = &out.policy().spec().ports;
    check_forbidden_ports(pod, plan, out);
}

fn planned_for(role: Role, plan: &PortPolicy) -> impl Iterator<Item = &PlannedPort> {
    plan.planned
        .iter()
        .filter(move |p| role == Role::Head || p.every_node)
}

fn rule_for(planned: &PlannedPort) -> &'static str {
    if planned.name == "metrics" {
        METRICS_PORT
    } else {
        HEAD_PORT
    }
}

fn port_name(port: &Value) -> &str {
    port.get("name").and_then(Value::as_str).unwrap_or("")
}

fn container_port(port: &Value) -> Option<u32> {
    port.get("containerPort").and_then(as_port)
}

fn check_ray_container_ports(
    group: &NodeGroup<'_>,
    pod: &PodSpecRef<'_>,
    ray: &ContainerRef<'_>,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    let container_path = pod.container_path(ray);
    let ports_path = child(&container_path, "ports");
    let declared: &[Value] = ray.ports().map_or(&[], Vec::as_slice);
    let mut missing = Vec::new();
    // A value of the wrong type is the user's to fix: a fill-in never overwrites it.
    let can_fill = ray.value.is_object() && ray.value.get("ports").is_none_or(Value::is_array);

    for planned in planned_for(group.role, plan) {
        let rule = rule_for(planned);
        if !out.enabled(rule) {
            continue;
        }
        let wanted = u32::from(planned.port);
        match declared.iter().position(|p| port_name(p) == planned.name) {
            Some(i) => {
                if container_port(&declared[i]) != Some(wanted) {
                    let shown = declared[i].get("containerPort").unwrap_or(&Value::Null);
                    out.report(
                        rule,
                        &child(&child(&ports_path, &i.to_string()), "containerPort"),
                        format!(
                            "port {:?} of {} is {shown}; set containerPort: {wanted}",
                            planned.name,
                            ray.describe()
                        ),
                    );
                }
            }
            None => {
                let same_number = declared
                    .iter()
                    .position(|p| container_port(p) == Some(wanted));
                match same_number {
                    // The Serve case is the warn-level serve-port-name rule's to report.
                    Some(_) if planned.name == SERVE_PORT => {}
                    Some(i) => out.report(
                        rule,
                        &child(&child(&ports_path, &i.to_string()), "name"),
                        format!(
                            "port {wanted} of {} is named {:?}; rename it to {:?}",
                            ray.describe(),
                            port_name(&declared[i]),
                            planned.name
                        ),
                    ),
                    None => {
                        let why = if planned.name == "metrics" {
                            " (else KubeRay adds metrics:8080)"
                        } else {
                            ""
                        };
                        let message = format!(
                            "{} of the {} has no port {:?}{why}; add {{name: {}, containerPort: {wanted}}}",
                            ray.describe(),
                            group.describe(),
                            planned.name,
                            planned.name
                        );
                        if !can_fill {
                            out.report(rule, &ports_path, message);
                            continue;
                        }
                        out.report_fillable(rule, &ports_path, message);
                        missing.push(json!({
                            "name": planned.name,
                            "containerPort": planned.port,
                            "protocol": "TCP",
                        }));
                    }
                }
            }
        }
    }

    if group.role == Role::Head && out.enabled(SERVE_PORT_NAME) {
        let serve_numbers: Vec<u32> = plan
            .planned
            .iter()
            .filter(|p| p.name == SERVE_PORT)
            .flat_map(|p| [Some(p.port), p.kube_ray_default].into_iter().flatten())
            .map(u32::from)
            .collect();
        for (i, port) in declared.iter().enumerate() {
            let name = port_name(port);
            let is_serve_name = name == SERVE_PORT || name.starts_with("serve-");
            let looks_like_serve = name
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|token| token == SERVE_PORT || token == "rayserve")
                || container_port(port).is_some_and(|n| serve_numbers.contains(&n));
            if looks_like_serve && !is_serve_name {
                out.report(
                    SERVE_PORT_NAME,
                    &child(&child(&ports_path, &i.to_string()), "name"),
                    format!(
                        "KubeRay's Serve Service ignores port {name:?} of {}; rename it to \"serve\"",
                        ray.describe()
                    ),
                );
            }
        }
    }

    if !missing.is_empty() {
        if ray.value.get("ports").is_some_and(Value::is_array) {
            for port in missing {
                out.fill(child(&ports_path, "-"), port);
            }
        } else {
            out.fill(ports_path, Value::Array(missing));
        }
    }
}

fn check_start_params(group: &NodeGroup<'_>, plan: &PortPolicy, out: &mut Findings<'_>) {
    let params = group.ray_start_params();
    let params_path = child(&group.path, "rayStartParams");
    let mut missing = Map::new();
    let get = |key: &str| params.and_then(|p| p.get(key));
    // A value of the wrong type is the user's to fix: a fill-in never overwrites it.
    let can_fill = group.spec.is_object()
        && group
            .spec
            .get("rayStartParams")
            .is_none_or(Value::is_object);

    if out.enabled(RAY_START_PARAM) {
        for planned in planned_for(group.role, plan) {
            let Some(key) = &planned.ray_start_param else {
                continue;
            };
            let wanted = planned.port.to_string();
            match get(key) {
                None => {
                    let default = planned
                        .kube_ray_default
                        .map(|d| format!(" (Ray then uses {d})"))
                        .unwrap_or_default();
                    let message = format!(
                        "{} rayStartParams has no {key:?}{default}; set {key}: \"{wanted}\"",
                        group.describe()
                    );
                    if can_fill {
                        out.report_fillable(RAY_START_PARAM, &params_path, message);
                        missing.insert(key.clone(), Value::String(wanted));
                    } else {
                        out.report(RAY_START_PARAM, &params_path, message);
                    }
                }
                Some(value) if param_text(value).as_deref() != Some(wanted.as_str()) => {
                    out.report(
                        RAY_START_PARAM,
                        &child(&params_path, key),
                        format!(
                            "{} rayStartParams.{key} is {value}; set it to \"{wanted}\"",
                            group.describe()
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }

    if out.enabled(NODE_PORT_RANGE) {
        for range in &plan.node_ranges {
            let key = &range.ray_start_param;
            match get(key) {
                None => {
                    let message = format!(
                        "{} leaves {key} unset (Ray picks a random port); set {key}: \"{}\" (range {}-{})",
                        group.describe(),
                        range.from,
                        range.from,
                        range.to
                    );
                    if can_fill {
                        out.report_fillable(NODE_PORT_RANGE, &params_path, message);
                        missing.insert(key.clone(), Value::String(range.from.to_string()));
                    } else {
                        out.report(NODE_PORT_RANGE, &params_path, message);
                    }
                }
                Some(value) if !as_port(value).is_some_and(|p| range.contains(p)) => {
                    out.report(
                        NODE_PORT_RANGE,
                        &child(&params_path, key),
                        format!(
                            "{} rayStartParams.{key} is {value}, outside the plan's {}-{}; pick a port in that range",
                            group.describe(),
                            range.from,
                            range.to
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }

    if out.enabled(WORKER_PORT_OVERLAP)
        && let (Some(min), Some(max)) = (
            get("min-worker-port").and_then(as_port),
            get("max-worker-port").and_then(as_port),
        )
    {
        let workers = min..=max;
        let mut clashes: Vec<String> = planned_for(group.role, plan)
            .filter(|p| workers.contains(&u32::from(p.port)))
            .map(|p| format!("{} ({})", p.port, p.name))
            .collect();
        clashes.extend(
            plan.node_ranges
                .iter()
                .filter(|r| u32::from(r.from) <= max && min <= u32::from(r.to))
                .map(|r| format!("{}-{} ({})", r.from, r.to, r.ray_start_param)),
        );
        if !clashes.is_empty() {
            out.report(
                WORKER_PORT_OVERLAP,
                &child(&params_path, "min-worker-port"),
                format!(
                    "{} worker ports {min}-{max} overlap planned {}; move min/max-worker-port clear of the plan",
                    group.describe(),
                    super::and_list(&clashes)
                ),
            );
        }
    }

    if !missing.is_empty() {
        if params.is_some() {
            for (key, value) in missing {
                out.fill(child(&params_path, &key), value);
            }
        } else {
            out.fill(params_path, Value::Object(missing));
        }
    }
}

fn check_forbidden_ports(pod: &PodSpecRef<'_>, plan: &PortPolicy, out: &mut Findings<'_>) {
    if plan.forbidden.is_empty() || !out.enabled(FORBIDDEN_PORT) {
        return;
    }
    for container in pod.all_containers() {
        let Some(ports) = container.ports() else {
            continue;
        };
        for (i, port) in ports.iter().enumerate() {
            for field in ["containerPort", "hostPort"] {
                let Some(number) = port.get(field).and_then(as_port) else {
                    continue;
                };
                let Some(forbidden) = plan
                    .forbidden
                    .iter()
                    .copied()
                    .find(|f| u32::from(*f) == number)
                else {
                    continue;
                };
                let instead = plan
                    .planned
                    .iter()
                    .find(|p| p.kube_ray_default == Some(forbidden))
                    .map(|p| format!("use {} ({})", p.port, p.name))
                    .unwrap_or_else(|| "use a port the plan allows".to_owned());
                let path = child(
                    &child(
                        &child(&pod.container_path(&container), "ports"),
                        &i.to_string(),
                    ),
                    field,
                );
                out.report(
                    FORBIDDEN_PORT,
                    &path,
                    format!(
                        "{} port {:?} uses {forbidden}, a default the plan forbids; {instead}",
                        container.describe(),
                        port_name(port)
                    ),
                );
            }
        }
    }
}
