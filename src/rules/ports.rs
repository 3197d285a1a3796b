//! The port plan: planned container ports, pinned `rayStartParams`, and forbidden defaults.

use serde_json::{Map, Value, json};

mod autoscaler;
mod host;
mod probes;
mod start_command;

pub use autoscaler::{RayVersion, image_version, parse_version};

use super::Findings;
use crate::policy::{
    MAX_WORKER_PORT, MIN_WORKER_PORT, PlannedPort, PortPolicy, PortRange, RAY_DEFAULT_WORKER_PORTS,
};
use crate::ray::{
    ClusterSource, ClusterSpec, ContainerRef, NodeGroup, PodSpecRef, Role, as_port, child,
    param_text,
};
use crate::ray_command::{self, EffectiveStart};
use crate::rule_id::RuleId;

/// Ray's list of worker ports; when set it replaces min/max-worker-port.
const WORKER_PORT_LIST: &str = "worker-port-list";

/// KubeRay's name for the Serve port; its Serve Service takes `serve` and `serve-*` only.
const SERVE_PORT: &str = "serve";

pub fn check_cluster(
    cluster: &ClusterSpec<'_>,
    host_exposure_allowed: bool,
    out: &mut Findings<'_>,
) {
    let plan = &out.policy().spec().ports;
    let mut head_gcs = None;
    for group in cluster.groups() {
        let Some(pod) = group.pod_spec() else {
            continue;
        };
        if let Some(ray) = pod.ray_container() {
            check_ray_container_ports(&group, &pod, &ray, plan, out);
            check_moving_env(&pod, &ray, plan, out);
        }
        let command = start_command::judge(cluster, &group, out);
        match &command {
            start_command::Judged::Own { start, path } => {
                check_command_line(&group, start, path, plan, out);
            }
            start_command::Judged::OwnRefused => {}
            start_command::Judged::Generated => check_start_params(&group, plan, out),
        }
        // Read after the fill-ins above: the ports the patched object will have.
        let ports = NodePorts::of_group(&group, &command, plan, out);
        if group.role == Role::Head {
            head_gcs = ports.gcs;
        }
        if let Some(ray) = pod.ray_container() {
            let serve_declared = (group.role == Role::Worker && serves(cluster)).then(|| {
                patched_container_port(&pod, &ray, SERVE_PORT, out)
                    .unwrap_or(probes::KUBERAY_SERVE_PORT)
            });
            let listening = ports.listening(group.role, plan);
            probes::check_group(&group, &pod, &ray, listening, serve_declared, out);
        }
        check_forbidden_ports(&pod, plan, out);
        check_declared_ports(&pod, true, plan, out);
        if !host_exposure_allowed {
            host::check_pod_spec(&pod, &group.describe(), out);
        }
    }
    if let Some(env) = cluster.spec.get("autoscalerOptions") {
        check_autoscaler_env(env, &child(&cluster.path, "autoscalerOptions"), plan, out);
    }
    autoscaler::check_cluster(cluster, head_gcs, out);
    if !host_exposure_allowed {
        host::check_services(cluster, out);
    }
}

/// Whether KubeRay builds the cluster's Pods for a RayService (`creatorCRDType`): a
/// RayService's spec, or a RayCluster labelled as generated from one.
fn serves(cluster: &ClusterSpec<'_>) -> bool {
    cluster.creator() == ClusterSource::RayService
}

/// Ray 2.60.0's own ports when `ray start` is given none: GCS (`--port`, the head's), the
/// dashboard and the dashboard agent's HTTP server.
const RAY_DEFAULT_GCS_PORT: u32 = 6379;
const RAY_DEFAULT_DASHBOARD_PORT: u32 = 8265;
const RAY_DEFAULT_AGENT_PORT: u32 = 52365;

/// The ports a node's Ray listens on once the admission's patch is applied; `None` where
/// raygate cannot tell (a value that is not a port, a command it refused).
#[derive(Debug, Clone, Copy, Default)]
struct NodePorts {
    gcs: Option<u32>,
    dashboard: Option<u32>,
    agent: Option<u32>,
}

/// An option's port: its value, else `default` when unset.
fn port_or(value: Option<&str>, default: u32) -> Option<u32> {
    value.map_or(Some(default), |v| v.trim().parse().ok())
}

impl NodePorts {
    /// The ports of a `ray start` command line.
    fn of_start(start: &EffectiveStart) -> NodePorts {
        NodePorts {
            gcs: port_or(start.get("port"), RAY_DEFAULT_GCS_PORT),
            dashboard: port_or(start.get("dashboard-port"), RAY_DEFAULT_DASHBOARD_PORT),
            agent: port_or(
                start.get("dashboard-agent-listen-port"),
                RAY_DEFAULT_AGENT_PORT,
            ),
        }
    }

    /// A group's ports: its own command's, or its `rayStartParams` with what this admission
    /// fills into them (KubeRay v1.5.0 passes 52365 for the agent when the key is missing). A
    /// port the plan pins elsewhere is unknown: `ports/ray-start-param` moves it first (one
    /// finding, one fix).
    fn of_group(
        group: &NodeGroup<'_>,
        command: &start_command::Judged,
        plan: &PortPolicy,
        out: &Findings<'_>,
    ) -> NodePorts {
        let ports = NodePorts::of_command(group, command, out);
        if !out.enabled(RuleId::RayStartParam) {
            return ports;
        }
        let pinned = |key: &str| {
            planned_for(group.role, plan)
                .filter_map(|p| Some((p.ray_start_param.as_deref()?, p.port)))
                .chain(
                    plan.node_ports
                        .iter()
                        .map(|p| (p.ray_start_param.as_str(), p.port)),
                )
                .find(|(k, _)| *k == key)
                .map(|(_, port)| u32::from(port))
        };
        let on_plan = |port: Option<u32>, key: &str| match pinned(key) {
            Some(planned) => port.filter(|p| *p == planned),
            None => port,
        };
        NodePorts {
            gcs: on_plan(ports.gcs, "port"),
            dashboard: on_plan(ports.dashboard, "dashboard-port"),
            agent: on_plan(ports.agent, "dashboard-agent-listen-port"),
        }
    }

    fn of_command(
        group: &NodeGroup<'_>,
        command: &start_command::Judged,
        out: &Findings<'_>,
    ) -> NodePorts {
        match command {
            start_command::Judged::Own { start, .. } => NodePorts::of_start(start),
            start_command::Judged::OwnRefused => NodePorts::default(),
            start_command::Judged::Generated => {
                let params_path = child(&group.path, "rayStartParams");
                let param = |key: &str, default: u32| -> Option<u32> {
                    match group.ray_start_params().and_then(|p| p.get(key)) {
                        Some(value) => param_text(value)?.parse().ok(),
                        None => port_or(patched_param(&params_path, key, out).as_deref(), default),
                    }
                };
                NodePorts {
                    gcs: param("port", RAY_DEFAULT_GCS_PORT),
                    dashboard: param("dashboard-port", RAY_DEFAULT_DASHBOARD_PORT),
                    agent: param("dashboard-agent-listen-port", RAY_DEFAULT_AGENT_PORT),
                }
            }
        }
    }

    /// What the node's probes should reach.
    fn listening(self, role: Role, plan: &PortPolicy) -> probes::Listening {
        probes::Listening {
            role,
            dashboard: self.dashboard,
            agent: self.agent,
            serve: plan
                .planned
                .iter()
                .find(|p| p.name == SERVE_PORT)
                .map_or(probes::KUBERAY_SERVE_PORT, |p| u32::from(p.port)),
        }
    }
}

/// The text this admission's patch gives `rayStartParams.<key>`, if it fills the key in.
fn patched_param(
    params_path: &json_patch::jsonptr::PointerBuf,
    key: &str,
    out: &Findings<'_>,
) -> Option<String> {
    out.fills.iter().find_map(|op| {
        let json_patch::PatchOperation::Add(add) = op else {
            return None;
        };
        let value = if add.path == *params_path {
            add.value.get(key)?
        } else if add.path.parent() == Some(params_path)
            && add.path.last().is_some_and(|t| t.decoded() == key)
        {
            &add.value
        } else {
            return None;
        };
        param_text(value).map(|t| t.into_owned())
    })
}

/// The number of the container's port named `name` once this admission's patch is applied.
fn patched_container_port(
    pod: &PodSpecRef<'_>,
    container: &ContainerRef<'_>,
    name: &str,
    out: &Findings<'_>,
) -> Option<u32> {
    let named = |port: &Value| port_name(port) == name;
    if let Some(port) = container.ports().into_iter().flatten().find(|p| named(p)) {
        return container_port(port);
    }
    let ports_path = child(&pod.container_path(container), "ports");
    out.fills.iter().find_map(|op| {
        let json_patch::PatchOperation::Add(add) = op else {
            return None;
        };
        let filled = if add.path == ports_path {
            add.value.as_array()?.iter().find(|p| named(p))?
        } else if add.path.parent() == Some(&ports_path) && named(&add.value) {
            &add.value
        } else {
            return None;
        };
        container_port(filled)
    })
}

/// A Ray Pod: what a Pod adds to its template (KubeRay's own ports) and host exposure; the
/// rest was checked on its cluster.
pub fn check_pod(
    pod: &PodSpecRef<'_>,
    role: Role,
    subject: &str,
    host_exposure_allowed: bool,
    out: &mut Findings<'_>,
) {
    check_pod_ports(pod, subject, true, host_exposure_allowed, out);
    let plan = &out.policy().spec().ports;
    let Some(ray) = pod.ray_container() else {
        return;
    };
    check_moving_env(pod, &ray, plan, out);
    // The ports the Pod's Ray listens on, from the command it really runs.
    if !out.enabled(RuleId::ProbePort) && !out.enabled(RuleId::AutoscalerGcsPort) {
        return;
    }
    let Some(start) = pod_start(&ray) else {
        return;
    };
    let ports = NodePorts::of_start(&start);
    probes::check_pod(pod, &ray, subject, ports.listening(role, plan), out);
    autoscaler::check_pod(pod, role, ports.gcs, out);
}

/// The one `ray start` a Pod's Ray container runs (its command and args, with KubeRay's
/// generated line in `KUBERAY_GEN_RAY_START_CMD`); `None` when raygate cannot read it.
fn pod_start(ray: &ContainerRef<'_>) -> Option<EffectiveStart> {
    let strings = |field: &str| {
        ray.value
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    };
    let argv: Vec<String> = strings("command").chain(strings("args")).collect();
    if argv.is_empty() {
        return None;
    }
    let generated = ray
        .value
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(ray_command::GENERATED_CMD_VAR))
        .and_then(|v| v.get("value"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let launch = ray_command::Launch {
        argv,
        generated,
        own_command: true,
    };
    ray_command::effective_start(&launch).ok()
}

/// A pod spec that is not a Ray node's (a RayJob's submitter): its ports and host exposure.
pub fn check_other_pod(
    pod: &PodSpecRef<'_>,
    subject: &str,
    host_exposure_allowed: bool,
    out: &mut Findings<'_>,
) {
    check_pod_ports(pod, subject, false, host_exposure_allowed, out);
}

/// Forbidden and declared ports, and host exposure, of a pod spec.
fn check_pod_ports(
    pod: &PodSpecRef<'_>,
    subject: &str,
    ray_node: bool,
    host_exposure_allowed: bool,
    out: &mut Findings<'_>,
) {
    let plan = &out.policy().spec().ports;
    check_forbidden_ports(pod, plan, out);
    check_declared_ports(pod, ray_node, plan, out);
    if !host_exposure_allowed {
        host::check_pod_spec(pod, subject, out);
    }
}

fn planned_for(role: Role, plan: &PortPolicy) -> impl Iterator<Item = &PlannedPort> {
    plan.planned
        .iter()
        .filter(move |p| role == Role::Head || p.every_node)
}

fn rule_for(planned: &PlannedPort) -> RuleId {
    if planned.name == "metrics" {
        RuleId::MetricsPort
    } else {
        RuleId::HeadPort
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
                        || {
                            format!(
                                "port {:?} of {} is {shown}; set containerPort: {wanted}",
                                planned.name,
                                ray.describe()
                            )
                        },
                    );
                }
            }
            None => {
                let same_number = declared
                    .iter()
                    .position(|p| container_port(p) == Some(wanted));
                let by_alias = declared
                    .iter()
                    .position(|p| planned.aliases.iter().any(|a| a == port_name(p)));
                // A port on KubeRay's default number is this planned port on the wrong
                // number, unless another planned port claims its name.
                let on_default = planned.kube_ray_default.and_then(|default| {
                    declared.iter().position(|p| {
                        container_port(p) == Some(u32::from(default))
                            && !plan.planned.iter().any(|other| {
                                other.name == port_name(p)
                                    || other.aliases.iter().any(|a| a == port_name(p))
                            })
                    })
                });
                match (by_alias, same_number, on_default) {
                    // The Serve case is the warn-level serve-port-name rule's to report.
                    (None, Some(_), _) if planned.name == SERVE_PORT => {}
                    (Some(i), _, _) if container_port(&declared[i]) != Some(wanted) => out
                        .report(
                            rule,
                            &child(&child(&ports_path, &i.to_string()), "containerPort"),
                            || format!(
                                "port {:?} of {} is {}; set containerPort: {wanted} and rename it to {:?} (KubeRay's name)",
                                port_name(&declared[i]),
                                ray.describe(),
                                declared[i].get("containerPort").unwrap_or(&Value::Null),
                                planned.name
                            ),
                        ),
                    (Some(i), _, _) | (None, Some(i), _) => out.report(
                        rule,
                        &child(&child(&ports_path, &i.to_string()), "name"),
                        || format!(
                            "port {wanted} of {} is named {:?}; rename it to {:?}",
                            ray.describe(),
                            port_name(&declared[i]),
                            planned.name
                        ),
                    ),
                    (None, None, Some(i)) if planned.name != SERVE_PORT => out.report(
                        rule,
                        &child(&child(&ports_path, &i.to_string()), "containerPort"),
                        || format!(
                            "port {:?} of {} is {}, KubeRay's default for {:?}; set containerPort: {wanted} and name: {}",
                            port_name(&declared[i]),
                            ray.describe(),
                            declared[i].get("containerPort").unwrap_or(&Value::Null),
                            planned.name,
                            planned.name
                        ),
                    ),
                    // Serve on KubeRay's 8000 under another name: the forbidden-port and
                    // serve-port-name rules say what to change; a second Serve port would not.
                    (None, None, Some(_)) => {}
                    (None, None, None) => {
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
                            out.report(rule, &ports_path, || message);
                            continue;
                        }
                        out.report_fillable(rule, &ports_path, || message);
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

    if group.role == Role::Head && out.enabled(RuleId::HeadPort) {
        check_env_ports(pod, ray, plan, out);
    }

    if group.role == Role::Head && out.enabled(RuleId::ServePortName) {
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
                    RuleId::ServePortName,
                    &child(&child(&ports_path, &i.to_string()), "name"),
                    || format!(
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

/// A group whose container runs its own `ray start`: its flags are judged like
/// `rayStartParams`, and nothing is filled (the command is the user's).
fn check_command_line(
    group: &NodeGroup<'_>,
    start: &EffectiveStart,
    path: &json_patch::jsonptr::PointerBuf,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    let who = format!(
        "the {}'s container runs its own `ray start` (rayStartParams do not apply)",
        group.describe()
    );
    let mut pinned: Vec<(RuleId, &str, String, Option<String>)> = Vec::new();
    for planned in planned_for(group.role, plan) {
        if let Some(key) = &planned.ray_start_param {
            let default = planned
                .kube_ray_default
                .map(|d| format!("Ray 2.60.0 then uses {d}"));
            pinned.push((
                RuleId::RayStartParam,
                key,
                planned.port.to_string(),
                default,
            ));
        }
    }
    for node_port in &plan.node_ports {
        pinned.push((
            RuleId::RayStartParam,
            &node_port.ray_start_param,
            node_port.port.to_string(),
            node_port.when_unset.clone(),
        ));
    }
    for (rule, key, wanted, default) in pinned {
        if !out.enabled(rule) {
            continue;
        }
        match start.get(key) {
            None => {
                let why = default.map(|d| format!(" ({d})")).unwrap_or_default();
                out.report(rule, path, || {
                    format!("{who}; it has no --{key}{why}: add --{key}={wanted}")
                });
            }
            Some(value) if value != wanted => out.report(rule, path, || {
                format!("{who}; it sets --{key}={value}: use --{key}={wanted}")
            }),
            Some(_) => {}
        }
    }
    if out.enabled(RuleId::NodePortRange) {
        for range in &plan.node_ranges {
            let key = &range.ray_start_param;
            let ok = start.port(key).is_some_and(|p| range.contains(p));
            if !ok {
                out.report(RuleId::NodePortRange, path, || {
                    format!(
                        "{who}; --{key} must be set inside {}-{}: add --{key}={}",
                        range.from, range.to, range.from
                    )
                });
            }
        }
    }
    if out.enabled(RuleId::WorkerPortRange)
        && let Some(range) = plan.worker_ports
    {
        let bound = |key| start.port(key);
        let ok = bound(MIN_WORKER_PORT)
            .zip(bound(MAX_WORKER_PORT))
            .is_some_and(|(min, max)| min <= max && range.contains(min) && range.contains(max));
        if !ok {
            out.report(
                RuleId::WorkerPortRange,
                path,
                || format!(
                    "{who}; its worker ports must lie inside {range} (unset, Ray 2.60.0 uses 10002-19999, which holds the client port): add --{MIN_WORKER_PORT}={} --{MAX_WORKER_PORT}={}",
                    range.from, range.to
                ),
            );
        }
    }
}

/// Variables Ray Serve reads for its proxies' ports (Ray 2.60.0, `serve/_private/constants.py`).
const SERVE_HTTP_PORT_ENV: &str = "RAY_SERVE_DEFAULT_HTTP_PORT";
const SERVE_GRPC_PORT_ENV: &str = "RAY_SERVE_DEFAULT_GRPC_PORT";

/// Ports a Ray container may declare: the plan's, the head's scrape targets, and the admin's.
fn allowed_in_ray_container(plan: &PortPolicy, port: u32) -> bool {
    plan.planned.iter().any(|p| u32::from(p.port) == port)
        || plan.node_ports.iter().any(|p| u32::from(p.port) == port)
        || plan.head_ports.iter().any(|p| u32::from(p.port) == port)
        || plan.allows_extra(port)
}

/// Every declared container port (Ray container, sidecars, native sidecar init containers) is
/// on the plan or on the admin's list; a port already reported at the same field is not
/// reported twice.
fn check_declared_ports(
    pod: &PodSpecRef<'_>,
    ray_node: bool,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::UnplannedPort) {
        return;
    }
    for container in pod.all_containers() {
        let is_ray = ray_node
            && container.list == crate::ray::ContainerList::Containers
            && container.index == 0;
        let runs_alongside = container.list == crate::ray::ContainerList::Containers
            || container.value.get("restartPolicy").and_then(Value::as_str) == Some("Always");
        if !runs_alongside {
            continue;
        }
        for (i, port) in container.ports().into_iter().flatten().enumerate() {
            let Some(number) = container_port(port) else {
                continue;
            };
            let allowed = if is_ray {
                allowed_in_ray_container(plan, number)
            } else {
                plan.allows_extra(number)
            };
            if allowed || plan.forbidden.iter().any(|f| u32::from(*f) == number) {
                continue;
            }
            let path = pod.port_path(&container, i, "containerPort");
            if out.reported_at(&path) {
                continue;
            }
            let whose = if is_ray {
                "a Ray container"
            } else {
                "a sidecar"
            };
            out.report(RuleId::UnplannedPort, &path, || {
                format!(
                    "{} ({whose}) declares port {number} ({:?}), which is not on the port plan; remove it, or have the admin add it to the policy's ports.extraAllowed",
                    container.describe(),
                    port_name(port)
                )
            });
        }
    }
}

/// Variables that move a Ray port (Serve's proxies), and `envFrom`, whose variables raygate
/// cannot see.
fn check_moving_env(
    pod: &PodSpecRef<'_>,
    ray: &ContainerRef<'_>,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::UnplannedPort) {
        return;
    }
    let container_path = pod.container_path(ray);
    let serve = plan
        .planned
        .iter()
        .find(|p| p.name == SERVE_PORT)
        .map(|p| p.port);
    check_env_list(
        ray.value.get("env"),
        &child(&container_path, "env"),
        &ray.describe(),
        &[(SERVE_HTTP_PORT_ENV, serve), (SERVE_GRPC_PORT_ENV, None)],
        out,
    );
    if !plan.allow_env_from {
        check_env_from(
            plan,
            ray.value.get("envFrom"),
            &child(&container_path, "envFrom"),
            &ray.describe(),
            out,
        );
    }
}

/// The autoscaler sidecar KubeRay adds to the head: its metrics port is a head port.
fn check_autoscaler_env(
    options: &Value,
    path: &json_patch::jsonptr::PointerBuf,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::UnplannedPort) {
        return;
    }
    let moving: Vec<(&str, Option<u16>)> = plan
        .head_ports
        .iter()
        .map(|p| (p.env.as_str(), Some(p.port)))
        .collect();
    check_env_list(
        options.get("env"),
        &child(path, "env"),
        "the autoscaler container",
        &moving,
        out,
    );
    if !plan.allow_env_from {
        check_env_from(
            plan,
            options.get("envFrom"),
            &child(path, "envFrom"),
            "the autoscaler container",
            out,
        );
    }
}

/// `moving`: a variable, and the only value it may have (`None`: it may not be set).
fn check_env_list(
    env: Option<&Value>,
    path: &json_patch::jsonptr::PointerBuf,
    who: &str,
    moving: &[(&str, Option<u16>)],
    out: &mut Findings<'_>,
) {
    for (i, var) in env
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(name) = var.get("name").and_then(Value::as_str) else {
            continue;
        };
        let Some((_, wanted)) = moving.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let value = var.get("value").and_then(Value::as_str);
        if let (Some(wanted), Some(value)) = (wanted, value)
            && value.bytes().all(|b| b.is_ascii_digit())
            && value.parse::<u32>().ok() == Some(u32::from(*wanted))
        {
            continue;
        }
        let shown = value.map_or_else(
            || "a value from a reference".to_owned(),
            |v| format!("{v:?}"),
        );
        let fix = match wanted {
            Some(port) => format!("remove it or set \"{port}\""),
            None => "remove it".to_owned(),
        };
        out.report(
            RuleId::UnplannedPort,
            &child(&child(path, &i.to_string()), "value"),
            || format!("{who} sets {name} to {shown}, which moves a Ray port off the plan; {fix}"),
        );
    }
}

fn check_env_from(
    plan: &PortPolicy,
    env_from: Option<&Value>,
    path: &json_patch::jsonptr::PointerBuf,
    who: &str,
    out: &mut Findings<'_>,
) {
    let Some(sources) = env_from.and_then(Value::as_array).filter(|s| !s.is_empty()) else {
        return;
    };
    // A prefix keeps the variables away from Ray's names, unless Ray's names begin with it:
    // Serve's port variables and the plan's head-port variables.
    let reaches_ray = |prefix: &str| {
        prefix.is_empty()
            || prefix.starts_with("RAY")
            || [SERVE_HTTP_PORT_ENV, SERVE_GRPC_PORT_ENV]
                .into_iter()
                .chain(plan.head_ports.iter().map(|p| p.env.as_str()))
                .any(|name| name.starts_with(prefix))
    };
    let unprefixed = sources.iter().any(|s| {
        s.get("prefix")
            .and_then(Value::as_str)
            .is_none_or(reaches_ray)
    });
    if unprefixed {
        out.report(RuleId::UnplannedPort, path, || {
            format!(
                "{who} takes variables from envFrom, whose values raygate cannot see (one could move a Ray port); list them under env, give each source a prefix, or have the admin set ports.allowEnvFrom"
            )
        });
    }
}

/// Head ports set by environment variables stay where the plan has them.
fn check_env_ports(
    pod: &PodSpecRef<'_>,
    ray: &ContainerRef<'_>,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    let env = ray.value.get("env").and_then(Value::as_array);
    for (i, var) in env.into_iter().flatten().enumerate() {
        let Some(name) = var.get("name").and_then(Value::as_str) else {
            continue;
        };
        let Some(planned) = plan.head_ports.iter().find(|p| p.env == name) else {
            continue;
        };
        let value = var.get("value").and_then(Value::as_str);
        if value.and_then(|v| v.trim().parse::<u32>().ok()) == Some(u32::from(planned.port)) {
            continue;
        }
        let shown = value.map_or_else(|| "set from a reference".to_owned(), |v| format!("{v:?}"));
        out.report(
            RuleId::HeadPort,
            &child(&child(&child(&pod.container_path(ray), "env"), &i.to_string()), "value"),
            || format!(
                "{} sets {name} to {shown}, moving the {} port off the plan's {}; remove it or set \"{}\"",
                ray.describe(),
                planned.name,
                planned.port,
                planned.port
            ),
        );
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

    if out.enabled(RuleId::RayStartParam) {
        // Single ports pinned by a key: the planned ports of this role, and the node ports.
        let planned = planned_for(group.role, plan).filter_map(|p| {
            let unset = p
                .kube_ray_default
                .map(|d| format!(" (unset, KubeRay v1.5.0 and Ray 2.60.0 use {d})"));
            Some((p.ray_start_param.as_deref()?, p.port, unset, String::new()))
        });
        let node_ports = plan.node_ports.iter().map(|p| {
            let unset = p
                .when_unset
                .as_deref()
                .map(|d| format!(" (when unset, {d})"));
            (
                p.ray_start_param.as_str(),
                p.port,
                unset,
                format!(" ({})", p.name),
            )
        });
        for (key, port, unset, named) in planned.chain(node_ports) {
            let wanted = port.to_string();
            match get(key) {
                None => {
                    let message = format!(
                        "{} rayStartParams has no {key:?}{}; set {key}: \"{wanted}\"{named}",
                        group.describe(),
                        unset.unwrap_or_default()
                    );
                    if can_fill {
                        out.report_fillable(RuleId::RayStartParam, &params_path, || message);
                        missing.insert(key.to_owned(), Value::String(wanted));
                    } else {
                        out.report(RuleId::RayStartParam, &params_path, || message);
                    }
                }
                Some(value) if param_text(value).as_deref() != Some(wanted.as_str()) => {
                    out.report(RuleId::RayStartParam, &child(&params_path, key), || {
                        format!(
                            "{} rayStartParams.{key} is {value}; set it to \"{wanted}\"{named}",
                            group.describe()
                        )
                    });
                }
                Some(_) => {}
            }
        }
    }

    if out.enabled(RuleId::NodePortRange) {
        for range in &plan.node_ranges {
            let key = &range.ray_start_param;
            match get(key) {
                None => {
                    let message = format!(
                        "{} leaves {key} unset (Ray 2.60.0 then picks a random port); set {key}: \"{}\" (range {}-{})",
                        group.describe(),
                        range.from,
                        range.from,
                        range.to
                    );
                    if can_fill {
                        out.report_fillable(RuleId::NodePortRange, &params_path, || message);
                        missing.insert(key.clone(), Value::String(range.from.to_string()));
                    } else {
                        out.report(RuleId::NodePortRange, &params_path, || message);
                    }
                }
                Some(value) if !as_port(value).is_some_and(|p| range.contains(p)) => {
                    out.report(
                        RuleId::NodePortRange,
                        &child(&params_path, key),
                        || format!(
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

    check_worker_ports(group, plan, &params_path, can_fill, &mut missing, out);

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

/// The worker-process range of one group: pinned inside the plan's range, and clear of every
/// port the node listens on, or Ray refuses to start the node.
fn check_worker_ports(
    group: &NodeGroup<'_>,
    plan: &PortPolicy,
    params_path: &json_patch::jsonptr::PointerBuf,
    can_fill: bool,
    missing: &mut Map<String, Value>,
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::WorkerPortRange) && !out.enabled(RuleId::WorkerPortOverlap) {
        return;
    }
    let params = group.ray_start_params();
    let get = |key: &str| params.and_then(|p| p.get(key));
    if let Some(list) = get(WORKER_PORT_LIST) {
        check_worker_port_list(group, plan, params_path, list, out);
        return;
    }
    let (min_value, max_value) = (get(MIN_WORKER_PORT), get(MAX_WORKER_PORT));
    // Ray reads each bound on its own; an unset one keeps Ray's default.
    let min = min_value.map_or(Some(u32::from(RAY_DEFAULT_WORKER_PORTS.from)), as_port);
    let max = max_value.map_or(Some(u32::from(RAY_DEFAULT_WORKER_PORTS.to)), as_port);
    let wanted = plan.worker_ports;

    // Bounds the user set outside the plan: reported, never overwritten.
    let mut outside = Vec::new();
    for (key, value, parsed) in [
        (MIN_WORKER_PORT, min_value, min),
        (MAX_WORKER_PORT, max_value, max),
    ] {
        let Some(value) = value else { continue };
        let inside = match (parsed, wanted) {
            (Some(port), Some(range)) => range.contains(port),
            (Some(port), None) => port > 0,
            (None, _) => false,
        };
        if !inside {
            outside.push((key, value));
        }
    }
    let clashes = match (min, max) {
        (Some(min), Some(max)) if min > 0 && min <= max => clashes_with_plan(group, plan, min, max),
        _ => Vec::new(),
    };
    let plan_text = wanted.map_or_else(
        || "a range clear of the plan".to_owned(),
        |range| format!("the plan's {range}"),
    );

    if !outside.is_empty() || min.zip(max).is_some_and(|(a, b)| a > b) {
        let path = child(
            params_path,
            outside.first().map_or(MIN_WORKER_PORT, |o| o.0),
        );
        let shown: Vec<String> = outside.iter().map(|(k, v)| format!("{k} is {v}")).collect();
        let what = if shown.is_empty() {
            format!(
                "min-worker-port {} is above max-worker-port {}",
                min.unwrap_or(0),
                max.unwrap_or(0)
            )
        } else {
            super::and_list(&shown)
        };
        let (rule, why) = if clashes.is_empty() {
            (RuleId::WorkerPortRange, String::new())
        } else {
            (
                RuleId::WorkerPortOverlap,
                format!(
                    ", which holds planned {} and makes Ray 2.60.0 refuse to start the node",
                    super::and_list(&clashes)
                ),
            )
        };
        out.report(rule, &path, || {
            format!(
                "{} rayStartParams {what}{why}; keep worker ports inside {plan_text}",
                group.describe()
            )
        });
        return;
    }
    if min_value.is_some() && max_value.is_some() {
        return;
    }
    // At least one bound is unset: Ray's default reaches it.
    let Some(range) = wanted else {
        if !clashes.is_empty() {
            out.report(
                RuleId::WorkerPortOverlap,
                params_path,
                || format!(
                    "{} leaves min/max-worker-port unset, so Ray 2.60.0 gives worker processes {}-{}, which holds planned {} and makes Ray refuse to start the node; set min-worker-port and max-worker-port clear of the plan",
                    group.describe(),
                    min.unwrap_or(0),
                    max.unwrap_or(0),
                    super::and_list(&clashes)
                ),
            );
        }
        return;
    };
    let unset: Vec<(&str, u16)> = [
        (MIN_WORKER_PORT, min_value, range.from),
        (MAX_WORKER_PORT, max_value, range.to),
    ]
    .into_iter()
    .filter(|(_, value, _)| value.is_none())
    .map(|(key, _, port)| (key, port))
    .collect();
    let settings: Vec<String> = unset.iter().map(|(k, p)| format!("{k}: \"{p}\"")).collect();
    let (rule, why) = if clashes.is_empty() {
        (
            RuleId::WorkerPortRange,
            "not inside the plan's worker range, which the cluster's NetworkPolicy admits"
                .to_owned(),
        )
    } else {
        (
            RuleId::WorkerPortOverlap,
            format!(
                "which holds planned {}, so Ray refuses to start the node",
                super::and_list(&clashes)
            ),
        )
    };
    let message = format!(
        "{} leaves {} unset, so Ray 2.60.0 gives worker processes {}-{}, {why}; set {} (worker ports {range})",
        group.describe(),
        unset
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(" and "),
        min.unwrap_or(0),
        max.unwrap_or(0),
        settings.join(", ")
    );
    if can_fill {
        out.report_fillable(rule, params_path, || message);
        for (key, port) in unset {
            missing.insert(key.to_owned(), Value::String(port.to_string()));
        }
    } else {
        out.report(rule, params_path, || message);
    }
}

/// The planned ports and ranges of `group`'s nodes that the worker range `min..=max` holds.
fn clashes_with_plan(group: &NodeGroup<'_>, plan: &PortPolicy, min: u32, max: u32) -> Vec<String> {
    let workers = min..=max;
    let mut clashes: Vec<String> = planned_for(group.role, plan)
        .map(|p| (p.port, p.name.as_str()))
        .chain(plan.node_ports.iter().map(|p| (p.port, p.name.as_str())))
        .filter(|(port, _)| workers.contains(&u32::from(*port)))
        .map(|(port, name)| format!("{port} ({name})"))
        .collect();
    clashes.extend(
        plan.node_ranges
            .iter()
            .filter(|r| u32::from(r.from) <= max && min <= u32::from(r.to))
            .map(|r| format!("{}-{} ({})", r.from, r.to, r.ray_start_param)),
    );
    clashes
}

fn check_worker_port_list(
    group: &NodeGroup<'_>,
    plan: &PortPolicy,
    params_path: &json_patch::jsonptr::PointerBuf,
    list: &Value,
    out: &mut Findings<'_>,
) {
    let text = param_text(list).unwrap_or_default();
    let ports: Vec<Option<u32>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
    let range: Option<PortRange> = plan.worker_ports;
    let bad: Vec<String> = text
        .split(',')
        .zip(&ports)
        .filter(|(_, port)| match (port, range) {
            (Some(port), Some(range)) => !range.contains(*port),
            (Some(port), None) => !clashes_with_plan(group, plan, *port, *port).is_empty(),
            (None, _) => true,
        })
        .map(|(p, _)| p.trim().to_owned())
        .collect();
    if bad.is_empty() {
        return;
    }
    let plan_text = range.map_or_else(
        || "ports clear of the plan".to_owned(),
        |r| format!("ports inside the plan's worker range {r}"),
    );
    out.report(
        RuleId::WorkerPortRange,
        &child(params_path, WORKER_PORT_LIST),
        || {
            format!(
                "{} rayStartParams.worker-port-list has {}; list only {plan_text}",
                group.describe(),
                super::and_list(&bad)
            )
        },
    );
}

fn check_forbidden_ports(pod: &PodSpecRef<'_>, plan: &PortPolicy, out: &mut Findings<'_>) {
    if plan.forbidden.is_empty() || !out.enabled(RuleId::ForbiddenPort) {
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
                let path = pod.port_path(&container, i, field);
                // Already reported as a planned port on the wrong number: one finding, one fix.
                if out.reported_at(&path) {
                    continue;
                }
                out.report(RuleId::ForbiddenPort, &path, || {
                    format!(
                        "{} port {:?} uses {forbidden}, a default the plan forbids; {instead}",
                        container.describe(),
                        port_name(port)
                    )
                });
            }
        }
    }
}

/// Ray Serve's HTTP port when `http_options.port` is unset (Ray 2.60.0).
const SERVE_DEFAULT_HTTP_PORT: u32 = 8000;
/// Ray Serve's gRPC port when `grpc_options.port` is unset (Ray 2.60.0).
const SERVE_DEFAULT_GRPC_PORT: u32 = 9000;

/// A RayService's `serveConfigV2`: Serve must listen where KubeRay's Serve Service sends
/// traffic (the planned Serve port). The config is text the user wrote, so raygate never
/// edits it: it says exactly what to add.
pub fn check_serve_config(object: &Value, out: &mut Findings<'_>) {
    if !out.enabled(RuleId::ServeConfig) {
        return;
    }
    let plan = &out.policy().spec().ports;
    let Some(serve) = plan.planned.iter().find(|p| p.name == SERVE_PORT) else {
        return;
    };
    let Some(text) = object
        .pointer("/spec/serveConfigV2")
        .and_then(Value::as_str)
    else {
        return;
    };
    let path = json_patch::jsonptr::PointerBuf::from_tokens(["spec", "serveConfigV2"]);
    let config: Value = match serde_yaml_ng::from_str(text) {
        Ok(config) => config,
        Err(e) => {
            out.report(RuleId::ServeConfig, &path, || {
                format!("serveConfigV2 is not valid YAML ({e}); KubeRay cannot deploy it")
            });
            return;
        }
    };
    let wanted = u32::from(serve.port);
    let http_port = config.pointer("/http_options/port");
    match http_port.map(as_port) {
        None => out.report(
            RuleId::ServeConfig,
            &path,
            || format!(
                "serveConfigV2 leaves http_options.port unset, so Serve listens on {SERVE_DEFAULT_HTTP_PORT} (Ray 2.60.0), not on {wanted} where KubeRay's Serve Service sends traffic; add to serveConfigV2 `http_options: {{host: 0.0.0.0, port: {wanted}}}`"
            ),
        ),
        Some(port) if port != Some(wanted) => out.report(
            RuleId::ServeConfig,
            &path,
            || format!(
                "serveConfigV2 sets http_options.port: {}, but KubeRay's Serve Service sends traffic to {wanted}; set `port: {wanted}` under http_options",
                http_port.unwrap_or(&Value::Null)
            ),
        ),
        Some(_) => {}
    }
    let servicers = config
        .pointer("/grpc_options/grpc_servicer_functions")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    if !servicers {
        return;
    }
    let grpc = config
        .pointer("/grpc_options/port")
        .map_or(Some(SERVE_DEFAULT_GRPC_PORT), as_port);
    let clash = grpc.and_then(|port| {
        let planned = plan
            .planned
            .iter()
            .map(|p| (p.port, p.name.as_str()))
            .chain(plan.node_ports.iter().map(|p| (p.port, p.name.as_str())))
            .find(|(p, _)| u32::from(*p) == port)
            .map(|(p, name)| format!("planned {p} ({name})"));
        let forbidden = plan
            .forbidden
            .iter()
            .find(|f| u32::from(**f) == port)
            .map(|f| format!("the forbidden default {f}"));
        let ranges = plan
            .node_ranges
            .iter()
            .find(|r| r.contains(port))
            .map(|r| format!("the plan's {}-{} ({})", r.from, r.to, r.ray_start_param))
            .or_else(|| {
                plan.worker_ports
                    .filter(|w| w.contains(port))
                    .map(|w| format!("the worker range {w}"))
            });
        let unplanned = (!plan.allows_extra(port)).then(|| {
            "not on the port plan (add it to the policy's ports.extraAllowed to allow it)"
                .to_owned()
        });
        planned.or(forbidden).or(ranges).or(unplanned)
    });
    match (grpc, clash) {
        (None, _) => out.report(
            RuleId::ServeConfig,
            &path,
            || "serveConfigV2 grpc_options.port is not a port number".to_owned(),
        ),
        (Some(port), Some(clash)) => out.report(
            RuleId::ServeConfig,
            &path,
            || format!(
                "serveConfigV2's gRPC proxy listens on {port}, which is {clash}; set grpc_options.port to a port of ports.extraAllowed that the plan leaves free (Serve's default is {SERVE_DEFAULT_GRPC_PORT})"
            ),
        ),
        _ => {}
    }
}
