//! The single entry point every caller uses: object in, [`Decision`] out.

use json_patch::Patch;

use crate::policy::{Action, Family, Mode, Policy};
use crate::ray::{ObjectRef, Role, Target};
use crate::rules::network_policy::NetworkPolicies;
use crate::rules::{self, Findings, Violation};

/// What the engine may know beyond the object itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub network_policies: NetworkPolicies<'a>,
}

impl Context<'_> {
    pub const WITHOUT_CLUSTER: Context<'static> = Context {
        network_policies: NetworkPolicies::Unknown,
    };
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
        if scope.exempt_namespaces.iter().any(|ns| ns == namespace) {
            return Decision::unchecked(Coverage::Exempt, mode);
        }
        let cluster_name = match &target {
            Target::Pod(pod) => Some(pod.cluster),
            _ => None,
        };
        let exempt_family = |family: Family| {
            scope.exemptions.iter().any(|e| {
                e.namespace == namespace
                    && e.name
                        .as_deref()
                        .is_none_or(|n| n == object.name || Some(n) == cluster_name)
                    && e.families.as_ref().is_none_or(|f| f.contains(&family))
            })
        };
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
                rules::network_policy::check_cluster(
                    cluster,
                    object.namespace,
                    context.network_policies,
                    &mut findings,
                );
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
