//! The single entry point every caller uses: object in, [`Decision`] out.

use std::sync::Arc;

use json_patch::Patch;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::policy::{Action, EnforceOn, Family, Mode, Policy};
use crate::ray::{ObjectRef, Role, Target};
use crate::rules::network_policy::NetworkPolicies;
use crate::rules::{self, Findings, Violation};

/// What the engine may know beyond the object itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub network_policies: NetworkPolicies<'a>,
    /// The object is being admitted one at a time, so the NetworkPolicies it needs may not
    /// have been applied yet (see [`crate::policy::EnforceOn`]). Offline checks and audits see
    /// every object at once and judge coverage on the cluster object itself.
    pub at_admission: bool,
}

impl Context<'_> {
    pub const WITHOUT_CLUSTER: Context<'static> = Context {
        network_policies: NetworkPolicies::Unknown,
        at_admission: false,
    };

    /// Every object is known at once: a set of manifests, or a cluster's live state.
    pub fn complete(network_policies: &[Arc<NetworkPolicy>]) -> Context<'_> {
        Context {
            network_policies: NetworkPolicies::Known(network_policies),
            at_admission: false,
        }
    }
}

/// How the engine treated an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Not a Ray object: nothing applies.
    OutOfScope,
    /// A Ray object the policy's scope exempts.
    Exempt,
    /// A cluster spec (RayCluster, or one embedded in a RayJob, RayService or RayCronJob).
    Cluster,
    /// A Pod of a Ray cluster.
    Pod,
}

impl Coverage {
    pub fn as_str(self) -> &'static str {
        match self {
            Coverage::OutOfScope => "out-of-scope",
            Coverage::Exempt => "exempt",
            Coverage::Cluster => "cluster",
            Coverage::Pod => "pod",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub coverage: Coverage,
    pub mode: Mode,
    /// Every violation of the object as given, in a stable order.
    pub violations: Vec<Violation>,
    /// Fills in what the plan can supply; empty in audit mode.
    pub patch: Patch,
}

impl Decision {
    fn unchecked(coverage: Coverage, mode: Mode) -> Decision {
        Decision {
            coverage,
            mode,
            violations: Vec::new(),
            patch: Patch(Vec::new()),
        }
    }

    /// Whether admission lets the object in once the patch is applied (mutate, then validate).
    pub fn allowed(&self) -> bool {
        self.mode == Mode::Audit
            || !self
                .violations
                .iter()
                .any(|v| v.action == Action::Deny && !v.fillable)
    }

    /// Whether the object as given passes validation (no patch applied).
    pub fn allowed_as_is(&self) -> bool {
        self.mode == Mode::Audit || !self.violations.iter().any(|v| v.action == Action::Deny)
    }

    /// Violations that remain once the patch is applied.
    pub fn remaining(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| !v.fillable)
    }
}

/// The platform policy, ready to evaluate objects.
#[derive(Debug, Clone)]
pub struct Engine {
    policy: Policy,
}

impl Engine {
    pub fn new(policy: Policy) -> Engine {
        Engine { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn enforces_on_pods(&self) -> bool {
        self.policy.spec().network_policy.enforce_on == EnforceOn::Pods
    }

    pub fn evaluate(&self, object: &ObjectRef<'_>, context: &Context<'_>) -> Decision {
        let mode = self.policy.mode();
        let target = Target::of(object);
        let coverage = match target {
            Target::OutOfScope => return Decision::unchecked(Coverage::OutOfScope, mode),
            Target::Cluster(_) => Coverage::Cluster,
            Target::Pod(_) => Coverage::Pod,
        };
        let scope = &self.policy.spec().scope;
        let namespace = object.namespace.unwrap_or("default");
        if scope.exempts_namespace(namespace) {
            return Decision::unchecked(Coverage::Exempt, mode);
        }
        let cluster_name = match &target {
            Target::Pod(pod) => Some(pod.cluster),
            _ => None,
        };
        let exempt_family =
            |family: Family| scope.exempts(namespace, object.name, cluster_name, family);
        if Family::ALL.into_iter().all(exempt_family) {
            return Decision::unchecked(Coverage::Exempt, mode);
        }

        let mut findings = Findings::new(&self.policy, exempt_family);
        match &target {
            Target::Cluster(cluster) => {
                rules::ports::check_cluster(cluster, &mut findings);
                for group in cluster.groups() {
                    if let Some(pod) = group.pod_spec() {
                        let subject = group.describe();
                        rules::placement::check_pod_spec(&pod, &subject, &mut findings);
                        rules::resources::check_pod_spec(&pod, &subject, &mut findings);
                    }
                }
                let first_network_finding = findings.violations.len();
                rules::network_policy::check_cluster(
                    cluster,
                    object.namespace,
                    context.network_policies,
                    &mut findings,
                );
                if context.at_admission && self.enforces_on_pods() {
                    defer_to_pods(&mut findings.violations[first_network_finding..]);
                }
            }
            Target::Pod(pod) => {
                let spec = pod.pod_spec();
                let subject = match pod.role {
                    Role::Head => format!("head Pod of cluster {:?}", pod.cluster),
                    Role::Worker => format!("worker Pod of cluster {:?}", pod.cluster),
                };
                rules::ports::check_pod(&spec, &mut findings);
                rules::placement::check_pod_spec(&spec, &subject, &mut findings);
                rules::resources::check_pod_spec(&spec, &subject, &mut findings);
                if let NetworkPolicies::Known(policies) = context.network_policies
                    && self.enforces_on_pods()
                {
                    rules::network_policy::check_pod(
                        pod,
                        object.labels,
                        object.namespace,
                        policies,
                        &mut findings,
                    );
                }
            }
            Target::OutOfScope => {}
        }

        let Findings {
            mut violations,
            fills,
            ..
        } = findings;
        let patch = match mode {
            Mode::Enforce => Patch(fills),
            Mode::Audit => {
                violations.iter_mut().for_each(|v| v.fillable = false);
                Patch(Vec::new())
            }
        };
        Decision {
            coverage,
            mode,
            violations,
            patch,
        }
    }
}

/// A NetworkPolicy UPDATE or DELETE, and the live clusters of its namespace.
#[derive(Debug, Clone, Copy)]
pub struct NetworkPolicyChange<'a> {
    pub namespace: &'a str,
    /// The NetworkPolicy being changed.
    pub name: &'a str,
    pub deleting: bool,
    /// Kubernetes itself (the namespace controller, the garbage collector) is deleting: it
    /// must never be blocked, or namespaces and owners could not be cleaned up.
    pub by_kubernetes: bool,
    /// The namespace's NetworkPolicies before and after the change.
    pub before: &'a [Arc<NetworkPolicy>],
    pub after: &'a [Arc<NetworkPolicy>],
}

impl Engine {
    /// Reports the live clusters that `change` would leave uncovered.
    pub fn evaluate_network_policy_change(
        &self,
        change: &NetworkPolicyChange<'_>,
        clusters: &[ObjectRef<'_>],
    ) -> Decision {
        let mode = self.policy.mode();
        let scope = &self.policy.spec().scope;
        if scope.exempts_namespace(change.namespace) {
            return Decision::unchecked(Coverage::Exempt, mode);
        }
        let mut violations = Vec::new();
        for cluster in clusters {
            let Target::Cluster(spec) = Target::of(cluster) else {
                continue;
            };
            let exempt_family =
                |family: Family| scope.exempts(change.namespace, cluster.name, None, family);
            let uncovered = |policies: &[Arc<NetworkPolicy>]| {
                let mut findings = Findings::new(&self.policy, exempt_family);
                rules::network_policy::check_cluster(
                    &spec,
                    Some(change.namespace),
                    NetworkPolicies::Known(policies),
                    &mut findings,
                );
                findings.violations.retain(|v| {
                    [
                        rules::network_policy::MISSING,
                        rules::network_policy::BLOCKED_PORTS,
                        rules::network_policy::WORKER_PORTS,
                        rules::network_policy::DNS_EGRESS,
                        rules::network_policy::APISERVER_EGRESS,
                    ]
                    .contains(&v.rule)
                });
                findings.violations
            };
            let before = uncovered(change.before);
            let newly: Vec<Violation> = uncovered(change.after)
                .into_iter()
                .filter(|v| {
                    !before
                        .iter()
                        .any(|b| b.rule == v.rule && b.path == v.path && b.message == v.message)
                })
                .collect();
            let Some(first) = newly.first() else {
                continue;
            };
            let findings = Findings::new(&self.policy, exempt_family);
            let mut action = findings.action(rules::network_policy::UNCOVERS_CLUSTER);
            if action == Action::Deny && change.by_kubernetes {
                action = Action::Warn;
            }
            if action == Action::Off {
                continue;
            }
            let verb = if change.deleting {
                "deleting"
            } else {
                "this change to"
            };
            violations.push(Violation {
                rule: rules::network_policy::UNCOVERS_CLUSTER,
                action,
                path: String::new(),
                message: format!(
                    "{verb} NetworkPolicy {:?} leaves live {} {:?} uncovered ({}); keep a policy that covers it, or delete the cluster first",
                    change.name, cluster.kind, cluster.name, first.message
                ),
                fillable: false,
            });
        }
        Decision {
            coverage: Coverage::Cluster,
            mode,
            violations,
            patch: Patch(Vec::new()),
        }
    }
}

/// At admission an uncovered cluster is let in with a warning: its Pods are the ones denied,
/// so that the NetworkPolicy may be applied after it.
fn defer_to_pods(violations: &mut [Violation]) {
    for v in violations.iter_mut().filter(|v| v.action == Action::Deny) {
        v.action = Action::Warn;
        v.message
            .push_str("; until then its Pods are denied and the operator retries");
    }
}
