//! The port plan: planned container ports, pinned `rayStartParams`, and forbidden defaults.

use json_patch::jsonptr::PointerBuf;
use serde_json::{Map, Value, json};

mod autoscaler;
mod host;
mod probes;
mod serve_config;
mod start_command;
mod worker_ports;

pub use serve_config::check_serve_config;

use super::Findings;
use crate::policy::{
    MAX_WORKER_PORT, MIN_WORKER_PORT, NodePortRange, PlannedPort, PortPolicy, PortRange,
};
use crate::ray::{
    ClusterSource, ClusterSpec, ContainerRef, NodeGroup, PodSpecRef, Role, as_port, child,
    param_text,
};
use crate::ray_command::{self, EffectiveStart};
use crate::ray_version::{Pin, RayOf, Source};
use crate::rule_id::RuleId;

/// KubeRay's name for the Serve port; its Serve Service takes `serve` and `serve-*` only.
const SERVE_PORT: &str = "serve";

pub fn check_cluster(
    cluster: &ClusterSpec<'_>,
    host_exposure_allowed: bool,
    out: &mut Findings<'_>,
) {
    let plan = &out.policy().spec().ports;
    let default_ray = out.policy().spec().default_ray_version;
    let mut head_gcs = None;
    for group in cluster.groups() {
        let Some(pod) = group.pod_spec() else {
            continue;
        };
        let ray = cluster.ray_of(&group, default_ray);
        check_unmeasured(cluster, &group, &ray, out);
        if let Some(ray) = pod.ray_container() {
            check_ray_container_ports(&group, &pod, &ray, plan, out);
            check_moving_env(&pod, &ray, plan, out);
        }
        let command = start_command::judge(cluster, &group, &ray, out);
        match &command {
            start_command::Judged::Own { start, path } => {
                check_command_line(&group, &ray, start, path, plan, out);
            }
            start_command::Judged::OwnRefused => {}
            start_command::Judged::Generated => check_start_params(&group, &ray, plan, out),
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

/// A group whose Ray raygate has not measured is judged by the nearest measured Ray: a
/// warning at the field the version was read from (once per field).
fn check_unmeasured(
    cluster: &ClusterSpec<'_>,
    group: &NodeGroup<'_>,
    ray: &RayOf<'_>,
    out: &mut Findings<'_>,
) {
    if !ray.unmeasured() || !out.enabled(RuleId::UnmeasuredRay) {
        return;
    }
    let path = match ray.source {
        Source::Image(_) | Source::UnversionedImage(_) => {
            ["template", "spec", "containers", "0", "image"]
                .into_iter()
                .fold(group.path.clone(), |path, token| child(&path, token))
        }
        Source::RayVersion(_) => child(&cluster.path, "rayVersion"),
        Source::PolicyDefault => group.path.clone(),
    };
    if out.reported_at(&path) {
        return;
    }
    report_unmeasured(&path, &group.describe(), ray, out);
}

/// The warning for a Ray judged by another's facts.
fn report_unmeasured(path: &PointerBuf, subject: &str, ray: &RayOf<'_>, out: &mut Findings<'_>) {
    let facts = crate::ray_version::RayFacts::get();
    let span = format!("{} to {}", facts.oldest().version, facts.newest().version);
    out.report(RuleId::UnmeasuredRay, path, || {
        let what = match ray.fit {
            crate::ray_version::Fit::Newer => format!("Ray {} ({}) is newer than every Ray raygate has measured ({span})", ray.version, ray.source_text()),
            crate::ray_version::Fit::Older => format!("Ray {} ({}) is older than every Ray raygate has measured ({span})", ray.version, ray.source_text()),
            _ => format!("raygate cannot tell the Ray version ({}, and no rayVersion)", ray.source_text()),
        };
        format!(
            "the {subject}'s {what}: its `ray start` options and defaults are judged as Ray {}'s; use a measured Ray, or set rayVersion to the Ray the image holds",
            ray.facts.version
        )
    });
}

/// Whether the plan's pin of `--key` applies to the group's Ray; a pin that Ray cannot set is
/// reported (its `ray start` lacks the option), with the first measured Ray that can.
fn pin_applies(
    group: &NodeGroup<'_>,
    ray: &RayOf<'_>,
    key: &str,
    wanted: &str,
    (rule, path): (RuleId, &PointerBuf),
    out: &mut Findings<'_>,
) -> bool {
    match ray.facts.pin(key, group.role == Role::Head) {
        Pin::Applies => true,
        Pin::NotOpened => false,
        Pin::CannotSet(first) => {
            out.report(rule, path, || {
                let instead = match first {
                    Some(first) => format!(
                        "Ray {first} is the first measured Ray that can: run it or a later one (rayproject/ray:{first})"
                    ),
                    None => format!("no measured Ray can: remove {key} from the policy's plan"),
                };
                format!(
                    "the plan pins {key} to {wanted}, but `ray start` of {} ({}) has no --{key}, so the {} cannot listen there; {instead}",
                    ray.name(),
                    ray.source_text(),
                    group.describe()
                )
            });
            false
        }
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
fn patched_param(params_path: &PointerBuf, key: &str, out: &Findings<'_>) -> Option<String> {
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
    let ray_of = RayOf::of_pod(pod.spec, out.policy().spec().default_ray_version);
    let Some(start) = pod_start(&ray, &ray_of) else {
        return;
    };
    let ports = NodePorts::of_start(&start);
    probes::check_pod(pod, &ray, subject, ports.listening(role, plan), out);
    autoscaler::check_pod(pod, role, ports.gcs, out);
}

/// The one `ray start` a Pod's Ray container runs (its command and args, with KubeRay's
/// generated line in `KUBERAY_GEN_RAY_START_CMD`); `None` when raygate cannot read it.
fn pod_start(ray: &ContainerRef<'_>, ray_of: &RayOf<'_>) -> Option<EffectiveStart> {
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
    ray_command::effective_start(&launch, ray_of.facts).ok()
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

/// The Ray container's `ports` list, as the planned-port checks read it.
struct DeclaredPorts<'a> {
    container: &'a ContainerRef<'a>,
    list: &'a [Value],
    path: PointerBuf,
    /// A value of the wrong type is the user's to fix: a fill-in never overwrites it.
    can_fill: bool,
}

impl DeclaredPorts<'_> {
    /// Where `field` of the `i`th declared port is.
    fn field_path(&self, i: usize, field: &str) -> PointerBuf {
        child(&child(&self.path, &i.to_string()), field)
    }

    /// The `i`th declared port's number, as written.
    fn shown(&self, i: usize) -> &Value {
        self.list[i].get("containerPort").unwrap_or(&Value::Null)
    }
}

/// The Ray container declares each planned port of its role under KubeRay's name; the missing
/// ones are filled in.
fn check_ray_container_ports(
    group: &NodeGroup<'_>,
    pod: &PodSpecRef<'_>,
    ray: &ContainerRef<'_>,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    let declared = DeclaredPorts {
        container: ray,
        list: ray.ports().map_or(&[], Vec::as_slice),
        path: child(&pod.container_path(ray), "ports"),
        can_fill: ray.value.is_object() && ray.value.get("ports").is_none_or(Value::is_array),
    };
    let mut missing = Vec::new();
    for planned in planned_for(group.role, plan) {
        let rule = rule_for(planned);
        if !out.enabled(rule) {
            continue;
        }
        let found = declared
            .list
            .iter()
            .position(|p| port_name(p) == planned.name);
        match found {
            Some(i) => check_planned_number(&declared, i, planned, rule, out),
            None => missing.extend(check_unnamed_planned_port(
                group, &declared, planned, rule, plan, out,
            )),
        }
    }
    if group.role == Role::Head && out.enabled(RuleId::HeadPort) {
        check_env_ports(pod, ray, plan, out);
    }
    if group.role == Role::Head && out.enabled(RuleId::ServePortName) {
        check_serve_port_names(&declared, plan, out);
    }
    fill_missing_ports(ray, declared.path, missing, out);
}

/// A port under the planned name is on the planned number.
fn check_planned_number(
    declared: &DeclaredPorts<'_>,
    i: usize,
    planned: &PlannedPort,
    rule: RuleId,
    out: &mut Findings<'_>,
) {
    let wanted = u32::from(planned.port);
    if container_port(&declared.list[i]) == Some(wanted) {
        return;
    }
    out.report(rule, &declared.field_path(i, "containerPort"), || {
        format!(
            "port {:?} of {} is {}; set containerPort: {wanted}",
            planned.name,
            declared.container.describe(),
            declared.shown(i)
        )
    });
}

/// A planned port no declared port is named for: a port under one of its aliases, on its
/// number or on KubeRay's default for it is this port misnamed or misnumbered; else it is
/// missing, and the port to add is returned when it can be filled in.
fn check_unnamed_planned_port(
    group: &NodeGroup<'_>,
    declared: &DeclaredPorts<'_>,
    planned: &PlannedPort,
    rule: RuleId,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) -> Option<Value> {
    let wanted = u32::from(planned.port);
    let ports = declared.list;
    let same_number = ports.iter().position(|p| container_port(p) == Some(wanted));
    let by_alias = ports
        .iter()
        .position(|p| planned.aliases.iter().any(|a| a == port_name(p)));
    let on_default = on_kube_ray_default(ports, planned, plan);
    let ray = declared.container;
    match (by_alias, same_number, on_default) {
        // The Serve case is the warn-level serve-port-name rule's to report.
        (None, Some(_), _) if planned.name == SERVE_PORT => {}
        (Some(i), _, _) if container_port(&ports[i]) != Some(wanted) => out.report(
            rule,
            &declared.field_path(i, "containerPort"),
            || format!(
                "port {:?} of {} is {}; set containerPort: {wanted} and rename it to {:?} (KubeRay's name)",
                port_name(&ports[i]),
                ray.describe(),
                declared.shown(i),
                planned.name
            ),
        ),
        (Some(i), _, _) | (None, Some(i), _) => out.report(
            rule,
            &declared.field_path(i, "name"),
            || format!(
                "port {wanted} of {} is named {:?}; rename it to {:?}",
                ray.describe(),
                port_name(&ports[i]),
                planned.name
            ),
        ),
        (None, None, Some(i)) if planned.name != SERVE_PORT => out.report(
            rule,
            &declared.field_path(i, "containerPort"),
            || format!(
                "port {:?} of {} is {}, KubeRay's default for {:?}; set containerPort: {wanted} and name: {}",
                port_name(&ports[i]),
                ray.describe(),
                declared.shown(i),
                planned.name,
                planned.name
            ),
        ),
        // Serve on KubeRay's 8000 under another name: the forbidden-port and serve-port-name
        // rules say what to change; a second Serve port would not.
        (None, None, Some(_)) => {}
        (None, None, None) => return report_missing_port(group, declared, planned, rule, out),
    }
    None
}

/// A port on KubeRay's default number is this planned port on the wrong number, unless
/// another planned port claims its name.
fn on_kube_ray_default(ports: &[Value], planned: &PlannedPort, plan: &PortPolicy) -> Option<usize> {
    let default = planned.kube_ray_default?;
    ports.iter().position(|p| {
        container_port(p) == Some(u32::from(default))
            && !plan.planned.iter().any(|other| {
                other.name == port_name(p) || other.aliases.iter().any(|a| a == port_name(p))
            })
    })
}

/// The planned port is not declared at all; returns it to add when it can be filled in.
fn report_missing_port(
    group: &NodeGroup<'_>,
    declared: &DeclaredPorts<'_>,
    planned: &PlannedPort,
    rule: RuleId,
    out: &mut Findings<'_>,
) -> Option<Value> {
    let message = || {
        let why = if planned.name == "metrics" {
            " (else KubeRay adds metrics:8080)"
        } else {
            ""
        };
        format!(
            "{} of the {} has no port {:?}{why}; add {{name: {}, containerPort: {}}}",
            declared.container.describe(),
            group.describe(),
            planned.name,
            planned.name,
            planned.port
        )
    };
    if !declared.can_fill {
        out.report(rule, &declared.path, message);
        return None;
    }
    out.report_fillable(rule, &declared.path, message);
    Some(json!({
        "name": planned.name,
        "containerPort": planned.port,
        "protocol": "TCP",
    }))
}

/// KubeRay's Serve Service takes only ports named `serve` or `serve-*`: a port that looks like
/// Serve's under another name gets no traffic.
fn check_serve_port_names(declared: &DeclaredPorts<'_>, plan: &PortPolicy, out: &mut Findings<'_>) {
    let serve_numbers: Vec<u32> = plan
        .planned
        .iter()
        .filter(|p| p.name == SERVE_PORT)
        .flat_map(|p| [Some(p.port), p.kube_ray_default].into_iter().flatten())
        .map(u32::from)
        .collect();
    for (i, port) in declared.list.iter().enumerate() {
        let name = port_name(port);
        let is_serve_name = name == SERVE_PORT || name.starts_with("serve-");
        let looks_like_serve = name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|token| token == SERVE_PORT || token == "rayserve")
            || container_port(port).is_some_and(|n| serve_numbers.contains(&n));
        if looks_like_serve && !is_serve_name {
            out.report(
                RuleId::ServePortName,
                &declared.field_path(i, "name"),
                || format!(
                    "KubeRay's Serve Service ignores port {name:?} of {}; rename it to \"serve\"",
                    declared.container.describe()
                ),
            );
        }
    }
}

/// Adds the missing planned ports to the Ray container's list, or as a new list.
fn fill_missing_ports(
    ray: &ContainerRef<'_>,
    ports_path: PointerBuf,
    missing: Vec<Value>,
    out: &mut Findings<'_>,
) {
    if missing.is_empty() {
        return;
    }
    if ray.value.get("ports").is_some_and(Value::is_array) {
        for port in missing {
            out.fill(child(&ports_path, "-"), port);
        }
    } else {
        out.fill(ports_path, Value::Array(missing));
    }
}

/// A group whose container runs its own `ray start`, as its flags are checked.
struct CommandLine<'a> {
    group: &'a NodeGroup<'a>,
    ray: &'a RayOf<'a>,
    start: &'a EffectiveStart,
    path: &'a PointerBuf,
}

impl CommandLine<'_> {
    /// Whether the plan's pin of `--key` applies to this command's Ray.
    fn applies(&self, key: &str, wanted: &str, rule: RuleId, out: &mut Findings<'_>) -> bool {
        pin_applies(self.group, self.ray, key, wanted, (rule, self.path), out)
    }

    /// How each message begins.
    fn who(&self) -> String {
        format!(
            "the {}'s container runs its own `ray start` (rayStartParams do not apply)",
            self.group.describe()
        )
    }

    /// A flag pinned to `wanted`: set, and to exactly that.
    fn check_pin(
        &self,
        key: &str,
        wanted: String,
        default: Option<String>,
        out: &mut Findings<'_>,
    ) {
        if !self.applies(key, &wanted, RuleId::RayStartParam, out) {
            return;
        }
        match self.start.get(key) {
            None => {
                out.report(RuleId::RayStartParam, self.path, || {
                    let why = default.map(|d| format!(" ({d})")).unwrap_or_default();
                    format!(
                        "{}; it has no --{key}{why}: add --{key}={wanted}",
                        self.who()
                    )
                });
            }
            Some(value) if value != wanted => out.report(RuleId::RayStartParam, self.path, || {
                format!(
                    "{}; it sets --{key}={value}: use --{key}={wanted}",
                    self.who()
                )
            }),
            Some(_) => {}
        }
    }
}

/// A group whose container runs its own `ray start`: its flags are judged like
/// `rayStartParams`, and nothing is filled (the command is the user's).
fn check_command_line(
    group: &NodeGroup<'_>,
    ray: &RayOf<'_>,
    start: &EffectiveStart,
    path: &PointerBuf,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    let line = CommandLine {
        group,
        ray,
        start,
        path,
    };
    if out.enabled(RuleId::RayStartParam) {
        check_command_pins(&line, plan, out);
    }
    if out.enabled(RuleId::NodePortRange) {
        check_command_ranges(&line, plan, out);
    }
    if out.enabled(RuleId::WorkerPortRange)
        && let Some(range) = plan.worker_ports
    {
        check_command_worker_ports(&line, range, out);
    }
}

/// The single ports the plan pins: the planned ports of the group's role, then the node ports.
fn check_command_pins(line: &CommandLine<'_>, plan: &PortPolicy, out: &mut Findings<'_>) {
    for planned in planned_for(line.group.role, plan) {
        if let Some(key) = &planned.ray_start_param {
            let default = planned
                .kube_ray_default
                .map(|d| format!("{} then uses {d}", line.ray.name()));
            line.check_pin(key, planned.port.to_string(), default, out);
        }
    }
    for node_port in &plan.node_ports {
        let key = &node_port.ray_start_param;
        let when_unset = node_port_when_unset(line.ray, key, node_port.when_unset.as_deref());
        line.check_pin(key, node_port.port.to_string(), when_unset, out);
    }
}

/// Ports Ray picks from a range: set inside the plan's range.
fn check_command_ranges(line: &CommandLine<'_>, plan: &PortPolicy, out: &mut Findings<'_>) {
    for range in &plan.node_ranges {
        let key = &range.ray_start_param;
        let wanted = format!("{}-{}", range.from, range.to);
        if !line.applies(key, &wanted, RuleId::NodePortRange, out) {
            continue;
        }
        let ok = line.start.port(key).is_some_and(|p| range.contains(p));
        if !ok {
            out.report(RuleId::NodePortRange, line.path, || {
                format!(
                    "{}; --{key} must be set inside {}-{}: add --{key}={}",
                    line.who(),
                    range.from,
                    range.to,
                    range.from
                )
            });
        }
    }
}

/// Both worker-port bounds set, in order, inside the plan's worker range.
fn check_command_worker_ports(line: &CommandLine<'_>, range: PortRange, out: &mut Findings<'_>) {
    let bound = |key| line.start.port(key);
    let ok = bound(MIN_WORKER_PORT)
        .zip(bound(MAX_WORKER_PORT))
        .is_some_and(|(min, max)| min <= max && range.contains(min) && range.contains(max));
    if !ok {
        out.report(
            RuleId::WorkerPortRange,
            line.path,
            || format!(
                "{}; its worker ports must lie inside {range} (unset, {} uses {}-{}): add --{MIN_WORKER_PORT}={} --{MAX_WORKER_PORT}={}",
                line.who(),
                line.ray.name(),
                line.ray.facts.worker_ports.from,
                line.ray.facts.worker_ports.to,
                range.from,
                range.to
            ),
        );
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
    path: &PointerBuf,
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
    path: &PointerBuf,
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
    path: &PointerBuf,
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

/// A group's `rayStartParams`, as its checks read them and their fixes fill them in.
struct StartParams<'a> {
    group: &'a NodeGroup<'a>,
    ray: &'a RayOf<'a>,
    values: Option<&'a Map<String, Value>>,
    path: PointerBuf,
    /// A value of the wrong type is the user's to fix: a fill-in never overwrites it.
    can_fill: bool,
}

impl<'a> StartParams<'a> {
    fn of(group: &'a NodeGroup<'a>, ray: &'a RayOf<'a>) -> StartParams<'a> {
        StartParams {
            group,
            ray,
            values: group.ray_start_params(),
            path: child(&group.path, "rayStartParams"),
            can_fill: group.spec.is_object()
                && group
                    .spec
                    .get("rayStartParams")
                    .is_none_or(Value::is_object),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.values.and_then(|p| p.get(key))
    }

    /// Whether the plan's pin of `key` applies to this group's Ray.
    fn applies(&self, key: &str, wanted: &str, rule: RuleId, out: &mut Findings<'_>) -> bool {
        pin_applies(self.group, self.ray, key, wanted, (rule, &self.path), out)
    }

    /// Adds the keys the fixes set, into the existing map or as a new one.
    fn fill(self, missing: Map<String, Value>, out: &mut Findings<'_>) {
        if missing.is_empty() {
            return;
        }
        if self.values.is_some() {
            for (key, value) in missing {
                out.fill(child(&self.path, &key), value);
            }
        } else {
            out.fill(self.path, Value::Object(missing));
        }
    }
}

/// A group whose KubeRay generates its `ray start`: the ports its `rayStartParams` pin, with
/// the plan's values filled in where a key is missing.
fn check_start_params(
    group: &NodeGroup<'_>,
    ray: &RayOf<'_>,
    plan: &PortPolicy,
    out: &mut Findings<'_>,
) {
    let params = StartParams::of(group, ray);
    let mut missing = Map::new();
    if out.enabled(RuleId::RayStartParam) {
        for pin in pinned_params(group.role, plan) {
            check_pinned_param(&params, &pin, &mut missing, out);
        }
    }
    if out.enabled(RuleId::NodePortRange) {
        for range in &plan.node_ranges {
            check_node_port_range(&params, range, &mut missing, out);
        }
    }
    worker_ports::check(&params, plan, &mut missing, out);
    params.fill(missing, out);
}

/// A single port a `rayStartParams` key pins.
struct PinnedParam<'p> {
    key: &'p str,
    port: u16,
    when_unset: WhenUnset<'p>,
    /// How a fix names a node port; a planned port goes by its key.
    name: Option<&'p str>,
}

/// What Ray does with a pinned key left unset, as a fix words it.
enum WhenUnset<'p> {
    /// A planned port: KubeRay's and Ray's default.
    Default(Option<u16>),
    /// A node port: the plan's own note.
    Noted(Option<&'p str>),
}

impl WhenUnset<'_> {
    /// What a fix says of the key left unset, for a node of `ray`.
    fn text(&self, key: &str, ray: &RayOf<'_>) -> String {
        match self {
            WhenUnset::Default(Some(d)) => {
                format!(" (unset, KubeRay v1.5.0 and {} use {d})", ray.name())
            }
            WhenUnset::Noted(note) => match node_port_when_unset(ray, key, *note) {
                Some(d) => format!(" (when unset, {d})"),
                None => String::new(),
            },
            WhenUnset::Default(None) => String::new(),
        }
    }
}

/// What a node port's Ray does when `key` is unset: "Ray 2.9.3 picks a random port for ...",
/// when the measured Ray does, else the plan's own note.
fn node_port_when_unset(ray: &RayOf<'_>, key: &str, note: Option<&str>) -> Option<String> {
    match ray.facts.random_listener(key) {
        Some(l) => Some(format!("{} picks a random port for {}", ray.name(), l.what)),
        None => note.map(str::to_owned),
    }
}

/// Single ports pinned by a key: the planned ports of this role, and the node ports.
fn pinned_params(role: Role, plan: &PortPolicy) -> impl Iterator<Item = PinnedParam<'_>> {
    let planned = planned_for(role, plan).filter_map(|p| {
        Some(PinnedParam {
            key: p.ray_start_param.as_deref()?,
            port: p.port,
            when_unset: WhenUnset::Default(p.kube_ray_default),
            name: None,
        })
    });
    let node_ports = plan.node_ports.iter().map(|p| PinnedParam {
        key: &p.ray_start_param,
        port: p.port,
        when_unset: WhenUnset::Noted(p.when_unset.as_deref()),
        name: Some(&p.name),
    });
    planned.chain(node_ports)
}

fn check_pinned_param(
    params: &StartParams<'_>,
    pin: &PinnedParam<'_>,
    missing: &mut Map<String, Value>,
    out: &mut Findings<'_>,
) {
    let key = pin.key;
    let wanted = pin.port.to_string();
    if !params.applies(key, &wanted, RuleId::RayStartParam, out) {
        return;
    }
    let named = || pin.name.map(|n| format!(" ({n})")).unwrap_or_default();
    match params.get(key) {
        None => {
            let message = || {
                format!(
                    "{} rayStartParams has no {key:?}{}; set {key}: \"{wanted}\"{}",
                    params.group.describe(),
                    pin.when_unset.text(key, params.ray),
                    named()
                )
            };
            if !params.can_fill {
                out.report(RuleId::RayStartParam, &params.path, message);
                return;
            }
            out.report_fillable(RuleId::RayStartParam, &params.path, message);
            missing.insert(key.to_owned(), Value::String(wanted));
        }
        Some(value) if param_text(value).as_deref() != Some(wanted.as_str()) => {
            out.report(RuleId::RayStartParam, &child(&params.path, key), || {
                format!(
                    "{} rayStartParams.{key} is {value}; set it to \"{wanted}\"{}",
                    params.group.describe(),
                    named()
                )
            });
        }
        Some(_) => {}
    }
}

/// A port Ray picks from a range (`ray start` takes one): set, and inside the plan's range.
fn check_node_port_range(
    params: &StartParams<'_>,
    range: &NodePortRange,
    missing: &mut Map<String, Value>,
    out: &mut Findings<'_>,
) {
    let key = &range.ray_start_param;
    let wanted = format!("{}-{}", range.from, range.to);
    if !params.applies(key, &wanted, RuleId::NodePortRange, out) {
        return;
    }
    match params.get(key) {
        None => {
            let message = || {
                format!(
                    "{} leaves {key} unset ({} then picks a random port); set {key}: \"{}\" (range {}-{})",
                    params.group.describe(),
                    params.ray.name(),
                    range.from,
                    range.from,
                    range.to
                )
            };
            if !params.can_fill {
                out.report(RuleId::NodePortRange, &params.path, message);
                return;
            }
            out.report_fillable(RuleId::NodePortRange, &params.path, message);
            missing.insert(key.clone(), Value::String(range.from.to_string()));
        }
        Some(value) if !as_port(value).is_some_and(|p| range.contains(p)) => {
            out.report(
                RuleId::NodePortRange,
                &child(&params.path, key),
                || format!(
                    "{} rayStartParams.{key} is {value}, outside the plan's {}-{}; pick a port in that range",
                    params.group.describe(),
                    range.from,
                    range.to
                ),
            );
        }
        Some(_) => {}
    }
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
