//! The rules of the platform plan, one module per family.
//!
//! Rules are pure: they read an object view and the policy, and record violations and
//! fill-ins in [`Findings`]. They know nothing of HTTP, files or the cluster.

pub mod network_policy;
pub mod placement;
pub mod ports;
pub mod resources;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde::Serialize;
use serde_json::Value;

use crate::policy::{Action, Family, Policy};

/// Every rule id, for validating `ruleActions` and for documentation.
pub const ALL_RULES: &[&str] = &[
    ports::HEAD_PORT,
    ports::METRICS_PORT,
    ports::SERVE_PORT_NAME,
    ports::RAY_START_PARAM,
    ports::NODE_PORT_RANGE,
    ports::FORBIDDEN_PORT,
    ports::WORKER_PORT_OVERLAP,
    ports::WORKER_PORT_RANGE,
    ports::SERVE_CONFIG,
    ports::START_COMMAND,
    ports::UNPLANNED_PORT,
    ports::HOST_NETWORK,
    ports::HOST_PORT,
    ports::NODE_PORT_SERVICE,
    ports::PROBE_PORT,
    ports::AUTOSCALER_GCS_PORT,
    placement::NODE_NAME,
    placement::TARGETS_MASTER,
    placement::TOLERATES_CONTROL_PLANE,
    placement::NOT_PINNED,
    network_policy::MISSING,
    network_policy::BLOCKED_PORTS,
    network_policy::WORKER_PORTS,
    network_policy::NOT_VERIFIED,
    network_policy::UNCOVERS_CLUSTER,
    network_policy::DNS_EGRESS,
    network_policy::APISERVER_EGRESS,
    network_policy::EXTERNAL_ACCESS,
    network_policy::POD_LABEL,
    network_policy::OPERATOR_ACCESS,
    resources::MISSING,
    resources::INVALID_QUANTITY,
    resources::LIMIT_BELOW_REQUEST,
    resources::ABOVE_MAXIMUM,
    resources::GPU_MISMATCH,
    resources::BELOW_MINIMUM,
    TOO_MANY_GROUPS,
    OUT_OF_TIME,
];

/// A cluster spec larger than the policy's `deadline.maxWorkerGroups`: denied unjudged.
pub const TOO_MANY_GROUPS: &str = "limits/worker-groups";
/// Evaluation reached the policy's deadline: denied unjudged (fail closed).
pub const OUT_OF_TIME: &str = "limits/deadline";

/// What each rule asks, for tools that list rules (SARIF's reportingDescriptors).
pub fn rule_help(rule: &str) -> &'static str {
    match rule {
        ports::HEAD_PORT => {
            "The head's Ray container declares each planned port under KubeRay's name and the plan's number (GCS 6380, client 10002, dashboard 8266, Serve 8001)."
        }
        ports::METRICS_PORT => {
            "Every Ray container declares the metrics port 8081; without it KubeRay adds metrics:8080."
        }
        ports::SERVE_PORT_NAME => {
            "KubeRay's Serve Service only takes ports named `serve` or `serve-*`."
        }
        ports::RAY_START_PARAM => {
            "rayStartParams pin each planned single port (GCS, client, dashboard, metrics, the dashboard agent's ports) to the plan's number."
        }
        ports::NODE_PORT_RANGE => {
            "Every node pins its object manager, node manager and runtime env agent inside the plan's ranges."
        }
        ports::FORBIDDEN_PORT => {
            "No container uses a default port the plan forbids (6379, 10001, 8265, 8000, 8080)."
        }
        ports::WORKER_PORT_OVERLAP => {
            "The worker-process range stays clear of every pinned port; Ray refuses to start a node whose pinned port lies in it."
        }
        ports::WORKER_PORT_RANGE => {
            "Every node pins min/max-worker-port inside the plan's worker range, which the NetworkPolicy admits."
        }
        ports::SERVE_CONFIG => {
            "A RayService's serveConfigV2 makes Serve listen on the planned Serve port, where KubeRay's Serve Service sends traffic."
        }
        ports::START_COMMAND => {
            "Each Ray container runs exactly one `ray start` that raygate reads as bash and Ray's click CLI do: rayStartParams values are single plain words, and own commands use no expansion, second command or option Ray refuses."
        }
        ports::UNPLANNED_PORT => {
            "No Ray process or sidecar listens on a port the plan does not know: no unplanned port option, container port, port-moving variable or unseen envFrom."
        }
        ports::HOST_NETWORK => {
            "Ray pods do not use hostNetwork, which binds Ray's ports on the node outside every NetworkPolicy."
        }
        ports::HOST_PORT => "No container of a Ray pod maps a hostPort.",
        ports::NODE_PORT_SERVICE => {
            "Ray's head and Serve Services stay ClusterIP: no NodePort, LoadBalancer, nodePort or externalIPs."
        }
        ports::PROBE_PORT => {
            "The Ray container's readiness and liveness probes call the dashboard and dashboard agent where Ray listens; without them KubeRay v1.5.0 adds probes on 8265 and 52365."
        }
        ports::AUTOSCALER_GCS_PORT => {
            "The in-tree autoscaler is told the head's GCS port (`--gcs-address`, Ray 2.60.0 or later); KubeRay v1.5.0 starts it looking for GCS at 6379."
        }
        placement::NODE_NAME => "Ray pods never name a master node in nodeName.",
        placement::TARGETS_MASTER => {
            "Ray pods never select a master node by nodeSelector or node affinity."
        }
        placement::TOLERATES_CONTROL_PLANE => {
            "Ray pods without a GPU never tolerate the control plane's taints."
        }
        placement::NOT_PINNED => {
            "Ray pods are pinned to the worker nodes (node-role=worker); a GPU worker group to the workers or the masters."
        }
        network_policy::MISSING => "A NetworkPolicy selects the pods of every Ray cluster.",
        network_policy::BLOCKED_PORTS => {
            "The cluster's NetworkPolicies admit every planned port and range between its pods, both ways."
        }
        network_policy::WORKER_PORTS => {
            "The cluster's NetworkPolicies admit the worker-process range between its pods (tasks, actors, object transfers)."
        }
        network_policy::NOT_VERIFIED => {
            "NetworkPolicy coverage could not be verified (no cluster access, or labels raygate cannot see)."
        }
        network_policy::UNCOVERS_CLUSTER => {
            "A NetworkPolicy change does not leave a live Ray cluster uncovered."
        }
        network_policy::DNS_EGRESS => {
            "A NetworkPolicy that restricts Ray pods' egress still lets them reach DNS (UDP and TCP 53)."
        }
        network_policy::APISERVER_EGRESS => {
            "With in-tree autoscaling, the head may reach the API server through its NetworkPolicies."
        }
        network_policy::EXTERNAL_ACCESS => {
            "Namespaces the policy names (Prometheus, notebooks) can reach the ports they need."
        }
        network_policy::OPERATOR_ACCESS => {
            "The KubeRay operator's Pod may reach the head of a RayJob's or RayService's cluster on the dashboard port, and a RayService's on the serve port."
        }
        network_policy::POD_LABEL => {
            "Pods of a RayJob's, RayService's or RayCronJob's cluster carry raygate.dev/ray-cr-name, so a NetworkPolicy can select them."
        }
        resources::MISSING => "Every container sets CPU and memory requests and limits.",
        resources::INVALID_QUANTITY => "Resource quantities are valid Kubernetes quantities.",
        resources::LIMIT_BELOW_REQUEST => "No limit is below its request.",
        resources::ABOVE_MAXIMUM => "No container asks for more than the policy's maximum.",
        resources::GPU_MISMATCH => "GPU requests equal GPU limits.",
        TOO_MANY_GROUPS => {
            "A cluster spec has at most the policy's deadline.maxWorkerGroups worker groups, so that it can be judged in time."
        }
        OUT_OF_TIME => {
            "An object raygate could not judge within the policy's deadline is denied, never admitted unchecked."
        }
        resources::BELOW_MINIMUM => {
            "No request or limit is below the platform minimum: 0 means no limit, and sub-unit values are none."
        }
        _ => "A rule of the Ray platform plan.",
    }
}

/// One broken rule, where it is broken, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `<family>/<name>`.
    pub rule: &'static str,
    pub action: Action,
    /// A JSON pointer into the object.
    pub path: String,
    /// One line: what is wrong and the exact fix.
    pub message: String,
    /// The patch raygate computed cures this violation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fillable: bool,
}

/// Collects what the rules find in one object.
pub struct Findings<'p> {
    policy: &'p Policy,
    exempt: [bool; 4],
    /// Whether anyone reads the messages: the mutating call only needs the patch.
    messages: bool,
    /// When the answer is due; rules that loop over groups stop once it has passed.
    deadline: Option<std::time::Instant>,
    out_of_time: bool,
    pub violations: Vec<Violation>,
    pub fills: Vec<PatchOperation>,
}

impl<'p> Findings<'p> {
    pub fn new(policy: &'p Policy, exempt_families: impl Fn(Family) -> bool) -> Findings<'p> {
        Findings {
            policy,
            exempt: Family::ALL.map(exempt_families),
            messages: true,
            deadline: None,
            out_of_time: false,
            violations: Vec::new(),
            fills: Vec::new(),
        }
    }

    /// Findings whose messages are never built (they stay empty).
    pub fn without_messages(mut self) -> Findings<'p> {
        self.messages = false;
        self
    }

    pub fn policy(&self) -> &'p Policy {
        self.policy
    }

    /// Findings that stop at `deadline`.
    pub fn until(mut self, deadline: Option<std::time::Instant>) -> Findings<'p> {
        self.deadline = deadline;
        self
    }

    /// Whether the deadline has passed; once it has, the findings are incomplete and the
    /// object must not be admitted on them.
    pub fn out_of_time(&mut self) -> bool {
        if !self.out_of_time
            && let Some(deadline) = self.deadline
        {
            self.out_of_time = std::time::Instant::now() >= deadline;
        }
        self.out_of_time
    }

    pub fn was_out_of_time(&self) -> bool {
        self.out_of_time
    }

    /// The action a rule has for this object, `Off` when exempt or switched off.
    pub fn action(&self, rule: &str) -> Action {
        match Family::of_rule(rule) {
            Some(family) if !self.exempt[family as usize] => self.policy.action_for(rule),
            _ => Action::Off,
        }
    }

    pub fn enabled(&self, rule: &str) -> bool {
        self.action(rule) != Action::Off
    }

    /// Reports a violation; `message` is built only when it will be read.
    pub fn report(
        &mut self,
        rule: &'static str,
        path: &PointerBuf,
        message: impl FnOnce() -> String,
    ) {
        self.push(rule, path, message, false);
    }

    /// Reports a violation that `fill` below cures.
    pub fn report_fillable(
        &mut self,
        rule: &'static str,
        path: &PointerBuf,
        message: impl FnOnce() -> String,
    ) {
        self.push(rule, path, message, true);
    }

    fn push(
        &mut self,
        rule: &'static str,
        path: &PointerBuf,
        message: impl FnOnce() -> String,
        fillable: bool,
    ) {
        let action = self.action(rule);
        if action == Action::Off {
            return;
        }
        self.violations.push(Violation {
            rule,
            action,
            path: path.to_string(),
            message: if self.messages {
                message()
            } else {
                String::new()
            },
            fillable,
        });
    }

    /// Whether a finding is already reported at `path` (one finding, one fix, per field).
    pub fn reported_at(&self, path: &PointerBuf) -> bool {
        let shown = path.to_string();
        self.violations.iter().any(|v| v.path == shown)
    }

    /// Adds a JSON Patch `add` for a field that is missing.
    pub fn fill(&mut self, path: PointerBuf, value: Value) {
        self.fills
            .push(PatchOperation::Add(AddOperation { path, value }));
    }
}

/// Formats a list like `a, b and c`.
pub fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
