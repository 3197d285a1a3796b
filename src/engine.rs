//! The single entry point every caller uses: object in, [`Decision`] out.

use crate::rule_id::RuleId;
use std::sync::Arc;

use json_patch::Patch;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::policy::{Action, EnforceOn, Mode, Policy};
use crate::ray::{ObjectRef, Role, Target};
use crate::rule_id::Family;
use crate::rules::network_policy::NetworkPolicies;
use crate::rules::placement::GpuException;
use crate::rules::{self, Findings, Violation};

/// What the engine may know beyond the object itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub network_policies: NetworkPolicies<'a>,
    /// The labels of the object's namespace, when the cluster state knows them
    /// (NetworkPolicy `namespaceSelector`s match on them).
    pub namespace_labels: Option<&'a std::collections::BTreeMap<String, String>>,
    /// For a Pod: its live RayCluster, when the cluster state knows it. The Pod is then also
    /// judged on that cluster's whole coverage (every group, both directions).
    pub pod_cluster: Option<ObjectRef<'a>>,
    /// For a Pod: the RayJob, RayService or RayCronJob its RayCluster was generated from,
    /// as the cluster state knows it (exemptions of the owner cover the Pods too).
    pub cluster_origin: Option<(&'a str, &'a str)>,
    /// The object is being admitted one at a time, so the NetworkPolicies it needs may not
    /// have been applied yet (see [`crate::policy::EnforceOn`]). Offline checks and audits see
    /// every object at once and judge coverage on the cluster object itself.
    pub at_admission: bool,
    /// When the answer is due: evaluation stops there and the object is denied unjudged.
    pub deadline: Option<std::time::Instant>,
}

impl Context<'_> {
    pub const WITHOUT_CLUSTER: Context<'static> = Context {
        network_policies: NetworkPolicies::Unknown,
        namespace_labels: None,
        pod_cluster: None,
        cluster_origin: None,
        at_admission: false,
        deadline: None,
    };

    /// Every object is known at once: a set of manifests, or a cluster's live state.
    pub fn complete(network_policies: &[Arc<NetworkPolicy>]) -> Context<'_> {
        Context {
            network_policies: NetworkPolicies::Known(network_policies),
            namespace_labels: None,
            pod_cluster: None,
            cluster_origin: None,
            at_admission: false,
            deadline: None,
        }
    }
}

/// What raygate judged of an object: a cluster spec, a Pod, or nothing (and why not).
/// Serialised as reports have always named it (`out-of-scope`, `exempt`, `cluster`, `pod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Judged {
    /// Not a Ray object: nothing applies.
    OutOfScope,
    /// A Ray object the policy's scope exempts.
    Exempt,
    /// A cluster spec (RayCluster, or one embedded in a RayJob, RayService or RayCronJob).
    Cluster,
    /// A Pod of a Ray cluster.
    Pod,
}

impl Judged {
    /// Whether the rules ran on the object (a cluster spec or a Pod).
    pub fn rules_ran(self) -> bool {
        matches!(self, Judged::Cluster | Judged::Pod)
    }
}

/// What admission does with one finding, given the mode of the object's namespace. Every
/// report (text, JSON, SARIF, JUnit, the tally) and the validating webhook read it here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The mutating webhook's patch cures it: the object is allowed once filled in.
    Fill,
    /// Denied.
    Deny,
    /// Audit mode: what enforcing would deny, admitted with a warning.
    WouldDeny,
    /// Admitted with a warning.
    Warn,
    /// Admitted; only the audit annotations record it.
    Audit,
}

impl Effect {
    /// Whether admission answers the finding with a warning.
    pub fn warns(self) -> bool {
        matches!(self, Effect::Warn | Effect::WouldDeny)
    }
}

/// What admission does with `violation` once the mutating webhook's patch is applied
/// (mutate, then validate): what `check` reports.
pub fn effect(mode: Mode, violation: &Violation) -> Effect {
    if violation.fillable {
        Effect::Fill
    } else {
        effect_as_given(mode, violation)
    }
}

/// What the validating webhook does with `violation` on the object as it arrives: a fill-in
/// that was not applied counts as its rule's action. Never [`Effect::Fill`].
pub fn effect_as_given(mode: Mode, violation: &Violation) -> Effect {
    match (violation.action, mode) {
        (Action::Deny, Mode::Enforce) => Effect::Deny,
        (Action::Deny, Mode::Audit) => Effect::WouldDeny,
        (Action::Warn, _) => Effect::Warn,
        // A rule switched off never yields a finding (see `rules::Findings`).
        (Action::Audit | Action::Off, _) => Effect::Audit,
    }
}

/// Whether the validating webhook records `violation` in its audit annotations: in audit
/// mode every finding, else those whose rule only audits.
pub fn recorded(mode: Mode, violation: &Violation) -> bool {
    mode == Mode::Audit || effect_as_given(mode, violation) == Effect::Audit
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub judged: Judged,
    pub mode: Mode,
    /// Every violation of the object as given, in a stable order.
    pub violations: Vec<Violation>,
    /// Fills in what the plan can supply; empty in audit mode.
    pub patch: Patch,
}

impl Decision {
    fn unchecked(judged: Judged, mode: Mode) -> Decision {
        Decision {
            judged,
            mode,
            violations: Vec::new(),
            patch: Patch(Vec::new()),
        }
    }

    /// Whether admission lets the object in once the patch is applied (mutate, then validate).
    pub fn allowed(&self) -> bool {
        !self
            .violations
            .iter()
            .any(|v| self.effect(v) == Effect::Deny)
    }

    /// Whether the object as given passes validation (no patch applied).
    pub fn allowed_as_is(&self) -> bool {
        !self
            .violations
            .iter()
            .any(|v| effect_as_given(self.mode, v) == Effect::Deny)
    }

    /// What admission does with one of this decision's findings once the patch is applied.
    pub fn effect(&self, violation: &Violation) -> Effect {
        effect(self.mode, violation)
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
        // Parse the compiled-in Ray facts now, not on the first request's path.
        crate::ray_version::RayFacts::get();
        Engine { policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn enforces_on_pods(&self) -> bool {
        self.policy.spec().network_policy.enforce_on == EnforceOn::Pods
    }

    /// What the plan covers of the object, or why the rules never run (not Ray's, or exempt
    /// from every family).
    fn in_scope<'a>(
        &self,
        object: &ObjectRef<'a>,
        context: &Context<'a>,
    ) -> Result<Covered<'a>, Judged> {
        let target = Target::of(object);
        if matches!(target, Target::OutOfScope) {
            return Err(Judged::OutOfScope);
        }
        let scope = &self.policy.spec().scope;
        let namespace = object.namespace.unwrap_or("default");
        if scope.exempts_namespace(namespace) {
            return Err(Judged::Exempt);
        }
        let cluster_name = match &target {
            Target::Pod(pod) => Some(pod.cluster),
            _ => None,
        };
        let names: Vec<(&str, &str)> = [
            Some((object.kind, object.name)),
            cluster_name.map(|name| (crate::ray::ClusterSource::RayCluster.kind(), name)),
            object.owner,
            context.cluster_origin,
        ]
        .into_iter()
        .flatten()
        .collect();
        if Family::ALL
            .into_iter()
            .all(|family| scope.exempts(namespace, &names, family))
        {
            return Err(Judged::Exempt);
        }
        Ok(Covered { target, names })
    }

    pub fn evaluate(&self, object: &ObjectRef<'_>, context: &Context<'_>) -> Decision {
        match self.in_scope(object, context) {
            Ok(covered) => self.evaluate_covered(object, context, covered, true),
            Err(judged) => Decision::unchecked(judged, self.mode_of(object)),
        }
    }

    /// What the mutating call needs of a CREATE (`old` is `None`) or an UPDATE: the same
    /// coverage and patch as [`Engine::evaluate`] and [`Engine::evaluate_update`]. Its findings
    /// have no messages, and an UPDATE's are not compared with the old object's.
    pub fn evaluate_patch(
        &self,
        object: &ObjectRef<'_>,
        old: Option<&ObjectRef<'_>>,
        context: &Context<'_>,
    ) -> Decision {
        match (old, self.in_scope(object, context)) {
            (_, Err(judged)) => Decision::unchecked(judged, self.mode_of(object)),
            (Some(old), Ok(covered)) => self.update(object, old, context, covered, false),
            (None, Ok(covered)) => self.evaluate_covered(object, context, covered, false),
        }
    }

    /// Runs the rules on an object the plan covers.
    fn evaluate_covered<'a>(
        &self,
        object: &ObjectRef<'a>,
        context: &Context<'a>,
        covered: Covered<'a>,
        messages: bool,
    ) -> Decision {
        let mode = self.mode_of(object);
        let judged = covered.judged();
        let Covered { target, names } = covered;
        let scope = &self.policy.spec().scope;
        let namespace = object.namespace.unwrap_or("default");
        let exempt_family = |family: Family| scope.exempts(namespace, &names, family);

        if let Target::Cluster(cluster) = &target
            && let Some(decision) = self.too_large(cluster, judged, mode)
        {
            return decision;
        }
        let mut findings = Findings::new(&self.policy, exempt_family).until(context.deadline);
        if !messages {
            findings = findings.without_messages();
        }
        let host_exposure_allowed = self
            .policy
            .spec()
            .ports
            .host_exposure
            .allowed_namespaces
            .iter()
            .any(|n| n == namespace);
        match &target {
            Target::Cluster(cluster) => self.check_cluster(
                object,
                cluster,
                context,
                host_exposure_allowed,
                &mut findings,
            ),
            Target::Pod(pod) => {
                self.check_pod(object, pod, context, host_exposure_allowed, &mut findings)
            }
            Target::OutOfScope => {}
        }
        self.conclude(findings, judged, mode)
    }

    /// The rules on a cluster spec: its groups' pods, its autoscaler, a RayService's Serve
    /// config, a RayJob's submitter, and its NetworkPolicy coverage.
    fn check_cluster(
        &self,
        object: &ObjectRef<'_>,
        cluster: &crate::ray::ClusterSpec<'_>,
        context: &Context<'_>,
        host_exposure_allowed: bool,
        findings: &mut Findings<'_>,
    ) {
        rules::ports::check_cluster(cluster, host_exposure_allowed, findings);
        for group in cluster.groups() {
            if let Some(pod) = group.pod_spec() {
                let subject = group.describe();
                let gpu = match group.role {
                    Role::Head => GpuException::Never,
                    Role::Worker => GpuException::Applies,
                };
                rules::placement::check_pod_spec(&pod, &subject, gpu, findings);
                rules::resources::check_pod_spec(&pod, &subject, findings);
            }
        }
        if let Some(options) = cluster.spec.get("autoscalerOptions") {
            let path = crate::ray::child(&cluster.path, "autoscalerOptions");
            rules::resources::check_autoscaler(options, &path, findings);
        }
        if cluster.source == crate::ray::ClusterSource::RayService {
            rules::ports::check_serve_config(cluster, findings);
        }
        if let Some(pod) = submitter_pod_spec(object.body, cluster.source) {
            let subject = "submitter pod template".to_owned();
            rules::ports::check_other_pod(&pod, &subject, host_exposure_allowed, findings);
            rules::placement::check_pod_spec(&pod, &subject, GpuException::Never, findings);
            rules::resources::check_pod_spec(&pod, &subject, findings);
        }
        let first_network_finding = findings.violations.len();
        rules::network_policy::check_cluster(
            cluster,
            object.namespace,
            context.namespace_labels,
            context.network_policies,
            findings,
        );
        if context.at_admission && self.enforces_on_pods() {
            defer_to_pods(&mut findings.violations[first_network_finding..]);
        }
    }

    /// The rules on a Ray Pod, with its NetworkPolicy coverage when the policy enforces it
    /// on Pods and the policies are known.
    fn check_pod(
        &self,
        object: &ObjectRef<'_>,
        pod: &crate::ray::RayPod<'_>,
        context: &Context<'_>,
        host_exposure_allowed: bool,
        findings: &mut Findings<'_>,
    ) {
        let spec = pod.pod_spec();
        let subject = match pod.role {
            Role::Head => format!("head Pod of cluster {:?}", pod.cluster),
            Role::Worker => format!("worker Pod of cluster {:?}", pod.cluster),
        };
        rules::ports::check_pod(&spec, pod.role, &subject, host_exposure_allowed, findings);
        let gpu = match pod.role {
            Role::Head => GpuException::Never,
            Role::Worker => GpuException::Applies,
        };
        rules::placement::check_pod_spec(&spec, &subject, gpu, findings);
        rules::resources::check_pod_spec(&spec, &subject, findings);
        if let NetworkPolicies::Known(policies) = context.network_policies
            && self.enforces_on_pods()
        {
            rules::network_policy::check_pod(
                pod,
                object.labels,
                object.namespace,
                context.namespace_labels,
                policies,
                findings,
            );
            if let Some(owner) = &context.pod_cluster {
                self.add_cluster_coverage(owner, policies, context, findings);
            }
        }
    }

    /// The decision on what the rules found: denied unjudged when they ran out of time; in
    /// audit mode nothing is filled in.
    fn conclude(&self, findings: Findings<'_>, judged: Judged, mode: Mode) -> Decision {
        if findings.was_out_of_time() {
            return self.unjudged(
                judged,
                mode,
                RuleId::OutOfTime,
                format!(
                    "raygate could not judge this object within the policy's deadline ({} ms), so it is denied rather than admitted unchecked; retry, or make the object smaller",
                    self.policy.spec().deadline.milliseconds
                ),
            );
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
            judged,
            mode,
            violations,
            patch,
        }
    }
}

impl Engine {
    /// An UPDATE, judged against the object it replaces, as Kubernetes ratchets CRD
    /// validation: a live cluster is never re-planned and never blocked for what it already
    /// was, only for what the update newly breaks.
    ///
    /// - An object being deleted, or an update that only scales (replicas, workersToDelete,
    ///   suspend), has no findings: the autoscaler and KubeRay's finalizers always get through.
    /// - The patch only restores values the old object had (a field an apply dropped), so a
    ///   head listening on 6379 never gets `port: 6380` that new workers would dial.
    /// - A finding the old object had too (same rule, same or nested path) is a warning.
    pub fn evaluate_update(
        &self,
        object: &ObjectRef<'_>,
        old: &ObjectRef<'_>,
        context: &Context<'_>,
    ) -> Decision {
        match self.in_scope(object, context) {
            Ok(covered) => self.update(object, old, context, covered, true),
            Err(judged) => Decision::unchecked(judged, self.mode_of(object)),
        }
    }

    fn update<'a>(
        &self,
        object: &ObjectRef<'a>,
        old: &ObjectRef<'_>,
        context: &Context<'a>,
        covered: Covered<'a>,
        messages: bool,
    ) -> Decision {
        let mode = self.mode_of(object);
        // The autoscaler's updates come often: they are answered without running the rules.
        if is_being_deleted(object.body) || only_scaling_changed(object.body, old.body) {
            return Decision::unchecked(covered.judged(), mode);
        }
        let decision = self.evaluate_covered(object, context, covered, messages);
        let kept: Vec<_> = decision
            .patch
            .0
            .into_iter()
            .filter(|op| restores_old_value(op, old.body))
            .collect();
        let into_patch = |kept| {
            Patch(if mode == Mode::Enforce {
                kept
            } else {
                Vec::new()
            })
        };
        if !messages {
            // The mutating call: only the patch is read.
            let mut violations = decision.violations;
            violations.iter_mut().for_each(|v| v.fillable = false);
            return Decision {
                judged: decision.judged,
                mode,
                violations,
                patch: into_patch(kept),
            };
        }
        let before = self.evaluate(old, context);
        let mut violations = if kept.is_empty() {
            decision.violations
        } else {
            let mut patched = object.body.clone();
            match json_patch::patch(&mut patched, &kept) {
                Ok(()) => {
                    let view = ObjectRef {
                        body: &patched,
                        ..*object
                    };
                    self.evaluate(&view, context).violations
                }
                Err(_) => decision.violations,
            }
        };
        for v in &mut violations {
            // Nothing else is filled on an update.
            v.fillable = false;
            if v.action == Action::Deny
                && before
                    .violations
                    .iter()
                    .any(|b| unchanged_finding(b, v, old.body, object.body))
            {
                v.action = Action::Warn;
                v.message.push_str(
                    " (already so before this update: an update is denied only for what it newly breaks)",
                );
            }
        }
        Decision {
            judged: decision.judged,
            mode,
            violations,
            patch: into_patch(kept),
        }
    }
}

impl Engine {
    fn mode_of(&self, object: &ObjectRef<'_>) -> Mode {
        self.policy.mode_in(object.namespace.unwrap_or("default"))
    }

    /// A cluster spec with more worker groups than the policy allows, denied unjudged.
    fn too_large(
        &self,
        cluster: &crate::ray::ClusterSpec<'_>,
        judged: Judged,
        mode: Mode,
    ) -> Option<Decision> {
        let most = self.policy.spec().deadline.max_worker_groups;
        let groups = cluster
            .spec
            .get("workerGroupSpecs")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        (groups > most).then(|| {
            self.unjudged(
                judged,
                mode,
                RuleId::TooManyGroups,
                format!(
                    "the cluster has {groups} worker groups, more than the policy's {most} (deadline.maxWorkerGroups) that raygate judges in time; merge groups or split the cluster"
                ),
            )
        })
    }

    /// A decision that denies (in enforce mode) without judging the object.
    fn unjudged(&self, judged: Judged, mode: Mode, rule: RuleId, message: String) -> Decision {
        Decision {
            judged,
            mode,
            violations: vec![Violation {
                rule,
                action: Action::Deny,
                path: String::new(),
                message,
                fillable: false,
            }],
            patch: Patch(Vec::new()),
        }
    }
}

/// An object the plan covers: what it is to the rules, and the names its exemptions match.
struct Covered<'a> {
    target: Target<'a>,
    names: Vec<(&'a str, &'a str)>,
}

impl Covered<'_> {
    fn judged(&self) -> Judged {
        match self.target {
            Target::Cluster(_) => Judged::Cluster,
            Target::Pod(_) => Judged::Pod,
            Target::OutOfScope => Judged::OutOfScope,
        }
    }
}

fn submitter_pod_spec(
    object: &serde_json::Value,
    source: crate::ray::ClusterSource,
) -> Option<crate::ray::PodSpecRef<'_>> {
    let path = source.submitter_path()?;
    let spec = path.iter().try_fold(object, |v, key| v.get(key))?;
    spec.is_object().then(|| crate::ray::PodSpecRef {
        spec,
        path: json_patch::jsonptr::PointerBuf::from_tokens(path.iter().copied()),
    })
}

fn is_being_deleted(object: &serde_json::Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Whether `a` and `b` differ only in what scaling writes: the replicas and the
/// `scaleStrategy` of worker groups, and `suspend`. Metadata and status never count.
fn only_scaling_changed(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    fn without_scaling(object: &serde_json::Value) -> serde_json::Value {
        let mut spec = object.get("spec").cloned().unwrap_or_default();
        for cluster in [
            "",
            "/rayClusterSpec",
            "/rayClusterConfig",
            "/jobTemplate/rayClusterSpec",
        ] {
            let Some(cluster) = spec.pointer_mut(cluster) else {
                continue;
            };
            if let Some(map) = cluster.as_object_mut() {
                map.remove("suspend");
            }
            for group in cluster
                .get_mut("workerGroupSpecs")
                .and_then(serde_json::Value::as_array_mut)
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_object_mut)
            {
                for field in ["replicas", "scaleStrategy", "suspend"] {
                    group.remove(field);
                }
            }
        }
        spec
    }
    without_scaling(a) == without_scaling(b)
}

/// Whether a fill-in only puts back what `old` already had at its path, so that applying it
/// changes nothing that runs. An append (`.../-`) restores an item the old list held.
fn restores_old_value(op: &json_patch::PatchOperation, old: &serde_json::Value) -> bool {
    let json_patch::PatchOperation::Add(add) = op else {
        return false;
    };
    let path = add.path.as_str();
    match path.strip_suffix("/-") {
        Some(list) => old
            .pointer(list)
            .and_then(serde_json::Value::as_array)
            .is_some_and(|items| items.iter().any(|item| holds(item, &add.value))),
        None => old
            .pointer(path)
            .is_some_and(|have| holds(have, &add.value)),
    }
}

/// Whether `have` holds everything `want` sets: equal scalars, every key of an object, every
/// item of a list.
fn holds(have: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (have, want) {
        // A container port without `protocol` is TCP, as the API defaults it.
        (Value::Object(have), Value::Object(want)) => want.iter().all(|(k, v)| match have.get(k) {
            Some(h) => holds(h, v),
            None => k == "protocol" && v == "TCP",
        }),
        (Value::Array(have), Value::Array(want)) => {
            want.iter().all(|w| have.iter().any(|h| holds(h, w)))
        }
        _ => have == want,
    }
}

/// The same finding before and after an update, on a field the update left alone: the same
/// rule at the same field, with the same message (which names the value) or the same value
/// there. A finding on a field the update changed is new, so an update cannot move ports off
/// the plan under the cover of a finding the old object had elsewhere.
fn unchanged_finding(
    before: &Violation,
    after: &Violation,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> bool {
    before.rule == after.rule
        && before.path == after.path
        && (before.message == after.message || old.pointer(&after.path) == new.pointer(&after.path))
}

/// A NetworkPolicy CREATE, UPDATE or DELETE, and the live clusters of its namespace.
#[derive(Debug, Clone, Copy)]
pub struct NetworkPolicyChange<'a> {
    pub namespace: &'a str,
    /// The NetworkPolicy being changed.
    pub name: &'a str,
    pub deleting: bool,
    pub creating: bool,
    /// Kubernetes itself (the namespace controller, the garbage collector) is deleting: it
    /// must never be blocked, or namespaces and owners could not be cleaned up.
    pub by_kubernetes: bool,
    /// The namespace's labels, when known.
    pub namespace_labels: Option<&'a std::collections::BTreeMap<String, String>>,
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
        let mode = self.policy.mode_in(change.namespace);
        let scope = &self.policy.spec().scope;
        if scope.exempts_namespace(change.namespace) {
            return Decision::unchecked(Judged::Exempt, mode);
        }
        let violations = clusters
            .iter()
            .filter_map(|cluster| self.uncovered_by(change, cluster))
            .collect();
        Decision {
            judged: Judged::Cluster,
            mode,
            violations,
            patch: Patch(Vec::new()),
        }
    }

    /// The finding when `change` newly leaves the live `cluster` uncovered.
    fn uncovered_by(
        &self,
        change: &NetworkPolicyChange<'_>,
        cluster: &ObjectRef<'_>,
    ) -> Option<Violation> {
        let Target::Cluster(spec) = Target::of(cluster) else {
            return None;
        };
        let scope = &self.policy.spec().scope;
        let names: Vec<(&str, &str)> = [Some((cluster.kind, cluster.name)), cluster.owner]
            .into_iter()
            .flatten()
            .collect();
        let exempt_family = |family: Family| scope.exempts(change.namespace, &names, family);
        let uncovered = |policies: &[Arc<NetworkPolicy>]| {
            let mut findings = Findings::new(&self.policy, exempt_family);
            rules::network_policy::check_cluster(
                &spec,
                Some(change.namespace),
                change.namespace_labels,
                NetworkPolicies::Known(policies),
                &mut findings,
            );
            findings.violations.retain(|v| {
                v.rule == RuleId::NetworkPolicyMissing
                    || rules::network_policy::CUTS.contains(&v.rule)
            });
            findings.violations
        };
        let before = uncovered(change.before);
        let first = uncovered(change.after).into_iter().find(|v| {
            !before
                .iter()
                .any(|b| b.rule == v.rule && b.path == v.path && b.message == v.message)
        })?;
        let mut action = Findings::new(&self.policy, exempt_family).action(RuleId::UncoversCluster);
        if action == Action::Deny && change.by_kubernetes {
            action = Action::Warn;
        }
        if action == Action::Off {
            return None;
        }
        let verb = if change.deleting {
            "deleting"
        } else if change.creating {
            "creating"
        } else {
            "this change to"
        };
        Some(Violation {
            rule: RuleId::UncoversCluster,
            action,
            path: String::new(),
            message: format!(
                "{verb} NetworkPolicy {:?} leaves live {} {:?} uncovered ({}); keep a policy that covers it, or delete the cluster first",
                change.name, cluster.kind, cluster.name, first.message
            ),
            fillable: false,
        })
    }
}

impl Engine {
    /// A Pod's cut ports towards or from any group of its live cluster (worker to head across
    /// two policies, say), which the Pod's own labels alone cannot show.
    fn add_cluster_coverage(
        &self,
        owner: &ObjectRef<'_>,
        policies: &[Arc<NetworkPolicy>],
        context: &Context<'_>,
        findings: &mut Findings<'_>,
    ) {
        let Target::Cluster(spec) = Target::of(owner) else {
            return;
        };
        let scope = &self.policy.spec().scope;
        let namespace = owner.namespace.unwrap_or("default");
        let names: Vec<(&str, &str)> = [
            Some((crate::ray::ClusterSource::RayCluster.kind(), owner.name)),
            owner.owner,
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut of_cluster = Findings::new(&self.policy, |f| scope.exempts(namespace, &names, f));
        rules::network_policy::check_cluster(
            &spec,
            owner.namespace,
            context.namespace_labels,
            NetworkPolicies::Known(policies),
            &mut of_cluster,
        );
        let carried = rules::network_policy::CUTS;
        // The cluster's view covers the Pod's own group in both directions: it replaces the
        // Pod's own cut ports rather than repeating them.
        findings.violations.retain(|v| !carried.contains(&v.rule));
        for v in of_cluster.violations {
            if !carried.contains(&v.rule) {
                continue;
            }
            findings.report(v.rule, &json_patch::jsonptr::PointerBuf::new(), || {
                format!("its RayCluster {:?}: {}", owner.name, v.message)
            });
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
