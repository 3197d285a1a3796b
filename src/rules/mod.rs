//! The rules of the platform plan, one module per family.
//!
//! Rules are pure: they read an object view and the policy, and record violations and
//! fill-ins in [`Findings`]. They know nothing of HTTP, files or the cluster.

pub mod network_policy;
pub mod placement;
pub mod ports;
pub mod resources;

use crate::rule_id::RuleId;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde::Serialize;
use serde_json::Value;

use crate::policy::{Action, Policy};
use crate::rule_id::Family;

/// What a rule asks, with the numbers of `policy`'s plan, for tools that list rules
/// (SARIF's reportingDescriptors).
pub fn help(rule: RuleId, policy: &Policy) -> String {
    let spec = policy.spec();
    let ports = &spec.ports;
    let head_ports = || -> String {
        let listed: Vec<String> = ports
            .planned
            .iter()
            .filter(|p| !p.every_node)
            .map(|p| format!("{} {}", p.name, p.port))
            .collect();
        and_list(&listed)
    };
    let metrics = ports
        .planned
        .iter()
        .find(|p| p.name == "metrics")
        .map_or_else(|| "port".to_owned(), |p| p.port.to_string());
    let worker = &spec.placement.worker_label;
    match rule {
        RuleId::HeadPort => format!(
            "The head's Ray container declares each planned port under KubeRay's name and the plan's number ({}).",
            head_ports()
        ),
        RuleId::MetricsPort => format!(
            "Every Ray container declares the metrics port {metrics}; without it KubeRay adds metrics:8080."
        ),
        RuleId::ForbiddenPort => {
            let forbidden: Vec<String> = ports.forbidden.iter().map(u16::to_string).collect();
            format!(
                "No container uses a default port the plan forbids ({}).",
                forbidden.join(", ")
            )
        }
        RuleId::NotPinned => format!(
            "Ray pods are pinned to the worker nodes ({}={}); a GPU worker group to the workers or the masters.",
            worker.key, worker.value
        ),
        RuleId::ServePortName => "KubeRay's Serve Service only takes ports named `serve` or `serve-*`.".into(),
        RuleId::RayStartParam => "rayStartParams pin each planned single port (GCS, client, dashboard, metrics, the dashboard agent's ports) to the plan's number.".into(),
        RuleId::NodePortRange => "Every node pins its object manager, node manager and runtime env agent inside the plan's ranges.".into(),
        RuleId::WorkerPortOverlap => "The worker-process range stays clear of every pinned port; Ray refuses to start a node whose pinned port lies in it.".into(),
        RuleId::WorkerPortRange => "Every node pins min/max-worker-port inside the plan's worker range, which the NetworkPolicy admits.".into(),
        RuleId::ServeConfig => "A RayService's serveConfigV2 makes Serve listen on the planned Serve port, where KubeRay's Serve Service sends traffic.".into(),
        RuleId::StartCommand => "Each Ray container runs exactly one `ray start` that raygate reads as bash and Ray's click CLI do: rayStartParams values are single plain words, and own commands use no expansion, second command or option Ray refuses.".into(),
        RuleId::UnplannedPort => "No Ray process or sidecar listens on a port the plan does not know: no unplanned port option, container port, port-moving variable or unseen envFrom.".into(),
        RuleId::HostNetwork => "Ray pods do not use hostNetwork, which binds Ray's ports on the node outside every NetworkPolicy.".into(),
        RuleId::HostPort => "No container of a Ray pod maps a hostPort.".into(),
        RuleId::NodePortService => "Ray's head and Serve Services stay ClusterIP: no NodePort, LoadBalancer, nodePort or externalIPs.".into(),
        RuleId::ProbePort => "The Ray container's readiness and liveness probes call the dashboard and dashboard agent where Ray listens; without them KubeRay v1.5.0 adds probes on 8265 and 52365.".into(),
        RuleId::UnmeasuredRay => "A group's Ray version (its rayproject/ray image tag, else rayVersion, else the policy's defaultRayVersion) is one raygate has measured; a newer, older or unnamed one is judged by the nearest measured Ray, with a warning.".into(),
        RuleId::AutoscalerGcsPort => "The in-tree autoscaler is told the head's GCS port (`--gcs-address`, Ray 2.60.0 or later); KubeRay v1.5.0 starts it looking for GCS at 6379.".into(),
        RuleId::NodeName => "Ray pods never name a master node in nodeName.".into(),
        RuleId::TargetsMaster => "Ray pods never select a master node by nodeSelector or node affinity.".into(),
        RuleId::ToleratesControlPlane => "Ray pods without a GPU never tolerate the control plane's taints.".into(),
        RuleId::NetworkPolicyMissing => "A NetworkPolicy selects the pods of every Ray cluster.".into(),
        RuleId::BlockedPorts => "The cluster's NetworkPolicies admit every planned port and range between its pods, both ways.".into(),
        RuleId::WorkerPorts => "The cluster's NetworkPolicies admit the worker-process range between its pods (tasks, actors, object transfers).".into(),
        RuleId::NotVerified => "NetworkPolicy coverage could not be verified (no cluster access, or labels raygate cannot see).".into(),
        RuleId::UncoversCluster => "A NetworkPolicy change does not leave a live Ray cluster uncovered.".into(),
        RuleId::DnsEgress => "A NetworkPolicy that restricts Ray pods' egress still lets them reach DNS (UDP and TCP 53).".into(),
        RuleId::ApiserverEgress => "With in-tree autoscaling, the head may reach the API server through its NetworkPolicies.".into(),
        RuleId::ExternalAccess => "Namespaces the policy names (Prometheus, notebooks) can reach the ports they need.".into(),
        RuleId::OperatorAccess => "The KubeRay operator's Pod may reach the head of a RayJob's or RayService's cluster on the dashboard port, and a RayService's on the serve port.".into(),
        RuleId::SubmitterAccess => "A RayJob's submitter Pod may reach its head's dashboard port, where `ray job submit` sends the job.".into(),
        RuleId::PodLabel => "Pods of a RayJob's, RayService's or RayCronJob's cluster carry raygate.dev/ray-cr-name, so a NetworkPolicy can select them.".into(),
        RuleId::ResourcesMissing => "Every container sets CPU and memory requests and limits.".into(),
        RuleId::InvalidQuantity => "Resource quantities are valid Kubernetes quantities.".into(),
        RuleId::LimitBelowRequest => "No limit is below its request.".into(),
        RuleId::AboveMaximum => "No container asks for more than the policy's maximum.".into(),
        RuleId::GpuMismatch => "GPU requests equal GPU limits.".into(),
        RuleId::TooManyGroups => "A cluster spec has at most the policy's deadline.maxWorkerGroups worker groups, so that it can be judged in time.".into(),
        RuleId::OutOfTime => "An object raygate could not judge within the policy's deadline is denied, never admitted unchecked.".into(),
        RuleId::BelowMinimum => "No request or limit is below the platform minimum: 0 means no limit, and sub-unit values are none.".into(),
    }
}

/// One broken rule, where it is broken, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub rule: RuleId,
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
    pub fn action(&self, rule: RuleId) -> Action {
        match rule.family() {
            Some(family) if !self.exempt[family as usize] => self.policy.action_for(rule),
            _ => Action::Off,
        }
    }

    pub fn enabled(&self, rule: RuleId) -> bool {
        self.action(rule) != Action::Off
    }

    /// Reports a violation; `message` is built only when it will be read.
    pub fn report(&mut self, rule: RuleId, path: &PointerBuf, message: impl FnOnce() -> String) {
        self.push(rule, path, message, false);
    }

    /// Reports a violation that `fill` below cures.
    pub fn report_fillable(
        &mut self,
        rule: RuleId,
        path: &PointerBuf,
        message: impl FnOnce() -> String,
    ) {
        self.push(rule, path, message, true);
    }

    fn push(
        &mut self,
        rule: RuleId,
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
