//! AdmissionReview in, engine [`Decision`] out, AdmissionReview bytes back.

use crate::rule_id::RuleId;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionResponse, Operation};
use serde::Serialize;

use crate::engine::{Context, Coverage, Decision, Engine, NetworkPolicyChange};
use crate::policy::{Action, Mode};
use crate::ray::ObjectRef;
use crate::rules::Violation;
use crate::rules::network_policy::NetworkPolicies;

/// Which webhook path was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Fills in what the plan supplies; never denies (the validating webhook does).
    Mutate,
    /// Judges the object as it will be stored.
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("cannot encode the response: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The API server may truncate a warning past 256 characters. Kubernetes asks for 120, but
/// a warning cut there loses its fix (the selector to write, the line to add), so keep the
/// fix and stop at the hard limit.
const MAX_WARNING: usize = 255;
/// Denial messages list at most this many violations, so that kubectl shows them whole.
const MAX_LISTED: usize = 12;

/// What the server records about one review (for logs and metrics).
#[derive(Debug)]
pub struct Outcome {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub dry_run: bool,
    /// `allowed`, `denied`, `patched` or `skipped`.
    pub decision: &'static str,
    pub violations: Vec<Violation>,
}

/// The wire form of the response. kube-core's `AdmissionResponse` serialises `patch` as an
/// array of numbers (kube-rs#1781); the API documents a base64 string, so encode it here.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: WireResponse<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<WireStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    audit_annotations: &'a HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a Vec<String>>,
}

#[derive(Serialize)]
struct WireStatus<'a> {
    code: u16,
    message: &'a str,
    reason: &'static str,
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// What the webhook knows of the cluster when a request arrives: reads of an in-memory
/// cache, never API calls.
pub trait ClusterState: Send + Sync {
    /// Whether the webhook should take traffic (e.g. the caches have synced).
    fn ready(&self) -> bool {
        true
    }
    /// The NetworkPolicies of a namespace; `None` while they cannot be known.
    fn network_policies(&self, namespace: &str) -> Option<Vec<Arc<NetworkPolicy>>>;
    /// The live RayClusters of a namespace; `None` while they cannot be known.
    fn ray_clusters(&self, namespace: &str) -> Option<Vec<Arc<DynamicObject>>>;
    /// The labels of a namespace; `None` while they cannot be known.
    fn namespace_labels(
        &self,
        _namespace: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        None
    }
}

/// No cluster access: nothing is known.
pub struct NoCluster;

impl ClusterState for NoCluster {
    fn network_policies(&self, _: &str) -> Option<Vec<Arc<NetworkPolicy>>> {
        None
    }
    fn ray_clusters(&self, _: &str) -> Option<Vec<Arc<DynamicObject>>> {
        None
    }
}

/// Decodes a review, decides with a fixed context, and encodes the answer.
pub fn review(
    engine: &Engine,
    context: &Context<'_>,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<(Vec<u8>, Outcome), Error> {
    decide(engine, Known::Fixed(context), endpoint, body)
}

/// Decodes a review, decides with what `cluster` knows of the request's namespace, and
/// encodes the answer.
pub fn review_live(
    engine: &Engine,
    cluster: &dyn ClusterState,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<(Vec<u8>, Outcome), Error> {
    decide(engine, Known::Live(cluster, None), endpoint, body)
}

/// As [`review_live`], stopping evaluation at `deadline`: an object not judged by then is
/// denied (`limits/deadline`).
pub fn review_live_until(
    engine: &Engine,
    cluster: &dyn ClusterState,
    endpoint: Endpoint,
    body: &[u8],
    deadline: std::time::Instant,
) -> Result<(Vec<u8>, Outcome), Error> {
    decide(engine, Known::Live(cluster, Some(deadline)), endpoint, body)
}

enum Known<'a> {
    Fixed(&'a Context<'a>),
    Live(&'a dyn ClusterState, Option<std::time::Instant>),
}

/// The parts of an `admission.k8s.io/v1` AdmissionReview raygate reads. The objects stay raw
/// JSON slices of the body until a Ray object (or a NetworkPolicy change) needs them, so other
/// kinds and `oldObject` are never parsed into trees.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingReview<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow)]
    request: Option<IncomingRequest<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingRequest<'a> {
    uid: String,
    kind: kube::core::GroupVersionKind,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    user_info: IncomingUser,
    #[serde(borrow, default)]
    object: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    old_object: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(serde::Deserialize, Default)]
struct IncomingUser {
    #[serde(default)]
    username: Option<String>,
}

impl IncomingRequest<'_> {
    fn is_network_policy(&self) -> bool {
        self.kind.group == "networking.k8s.io" && self.kind.kind == "NetworkPolicy"
    }

    /// Only Ray's kinds and Pods can be in the engine's scope.
    fn may_be_in_scope(&self) -> bool {
        self.kind.group == "ray.io" || (self.kind.group.is_empty() && self.kind.kind == "Pod")
    }
}

impl Outcome {
    fn of(request: &IncomingRequest<'_>, decision: &'static str) -> Outcome {
        Outcome {
            uid: request.uid.clone(),
            kind: request.kind.kind.clone(),
            namespace: request.namespace.clone().unwrap_or_default(),
            name: request.name.clone(),
            operation: operation_name(&request.operation),
            dry_run: request.dry_run,
            decision,
            violations: Vec::new(),
        }
    }
}

/// A response that admits `request` unchanged, to build on.
fn allowing(request: &IncomingRequest<'_>) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("");
    response.uid = request.uid.clone();
    response.allowed = true;
    response.result = Default::default();
    response
}

fn decide(
    engine: &Engine,
    known: Known<'_>,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<(Vec<u8>, Outcome), Error> {
    let review: IncomingReview<'_> = serde_json::from_slice(body).map_err(Error::Decode)?;
    let request = review.request.ok_or(Error::NoRequest)?;
    let mut outcome = Outcome::of(&request, "skipped");
    let mut response = allowing(&request);

    let object: Option<serde_json::Value> = match (&request.operation, request.object) {
        (Operation::Create | Operation::Update, Some(raw)) if request.may_be_in_scope() => {
            Some(serde_json::from_str(raw.get()).map_err(Error::Decode)?)
        }
        _ => None,
    };
    // An UPDATE is judged against the object it replaces (see `Engine::evaluate_update`).
    let old_object: Option<serde_json::Value> = match (&request.operation, request.old_object) {
        (Operation::Update, Some(raw)) if object.is_some() => {
            Some(serde_json::from_str(raw.get()).map_err(Error::Decode)?)
        }
        _ => None,
    };
    // A Ray Pod's live RayCluster: its coverage, origin and enforcement mark all matter.
    let owner = match (&known, &object) {
        (Known::Live(cluster, _), Some(object)) => {
            owning_cluster(*cluster, object, request.namespace.as_deref())
        }
        _ => None,
    };
    let decision = match &object {
        Some(object) => {
            let view = ObjectRef::from_value(object).map(|v| with_request(v, &request));
            let old_view = old_object
                .as_ref()
                .and_then(ObjectRef::from_value)
                .map(|v| with_request(v, &request));
            let evaluate = |view: &ObjectRef<'_>, context: &Context<'_>| match (endpoint, &old_view)
            {
                // The mutating call answers with the patch alone.
                (Endpoint::Mutate, old) => engine.evaluate_patch(view, old.as_ref(), context),
                (Endpoint::Validate, Some(old)) => engine.evaluate_update(view, old, context),
                (Endpoint::Validate, None) => engine.evaluate(view, context),
            };
            view.map(|view| match &known {
                Known::Fixed(context) => evaluate(&view, context),
                Known::Live(cluster, deadline) => {
                    let policies = view.namespace.and_then(|ns| cluster.network_policies(ns));
                    let namespace_labels =
                        view.namespace.and_then(|ns| cluster.namespace_labels(ns));
                    let namespace = view.namespace;
                    let context = Context {
                        network_policies: match &policies {
                            Some(p) => NetworkPolicies::Known(p),
                            None => NetworkPolicies::Unknown,
                        },
                        namespace_labels: namespace_labels.as_ref(),
                        pod_cluster: owner.as_deref().map(|c| {
                            let mut view = ObjectRef::from_dynamic(c);
                            view.api_version = "ray.io/v1";
                            view.kind = "RayCluster";
                            view.namespace = view.namespace.or(namespace);
                            view
                        }),
                        cluster_origin: owner
                            .as_deref()
                            .map(ObjectRef::from_dynamic)
                            .and_then(|c| c.owner),
                        at_admission: true,
                        deadline: *deadline,
                    };
                    evaluate(&view, &context)
                }
            })
        }
        None => match &known {
            Known::Live(cluster, _)
                if endpoint == Endpoint::Validate && request.is_network_policy() =>
            {
                network_policy_change(engine, *cluster, &request)
            }
            _ => None,
        },
    };

    if let Some(mut decision) =
        decision.filter(|d| !matches!(d.coverage, Coverage::OutOfScope | Coverage::Exempt))
    {
        if let Some(owner) = &owner
            && decision.coverage == Coverage::Pod
        {
            spare_pods_of_unmarked_cluster(engine, owner, &mut decision);
        }
        // The mark goes on at CREATE and, like every fill-in on UPDATE, is put back when an
        // update drops it (a server-side apply of the original manifest): it never flaps, and
        // removing it cannot turn a cluster's Pods into ones that are never denied.
        let marks = match request.operation {
            Operation::Create => true,
            Operation::Update => old_object
                .as_ref()
                .and_then(|old| old.pointer("/metadata/annotations"))
                .is_some_and(|a| a.get(ENFORCED_ANNOTATION).is_some()),
            _ => false,
        };
        // What the plan's patch does, said without the mark (raygate's own bookkeeping).
        let plan_ops = decision.patch.0.len();
        if endpoint == Endpoint::Mutate
            && marks
            && decision.mode == Mode::Enforce
            && decision.coverage == Coverage::Cluster
            && request.kind.kind == "RayCluster"
            && let Some(object) = &object
            && let Some(mark) = mark_enforced(object)
        {
            decision.patch.0.push(mark);
        }
        response = respond(response, endpoint, &decision, plan_ops, &mut outcome);
        outcome.violations = decision.violations;
    }

    let encoded = encode(&review.api_version, &review.kind, &response)?;
    Ok((encoded, outcome))
}

/// The annotation raygate's mutating webhook puts on a RayCluster it admitted while enforcing
/// the plan. A cluster without it was created before (raygate absent or in audit mode).
pub const ENFORCED_ANNOTATION: &str = "raygate.dev/enforced";

fn mark_enforced(object: &serde_json::Value) -> Option<json_patch::PatchOperation> {
    let metadata = object.get("metadata").filter(|m| m.is_object())?;
    let annotations = metadata.get("annotations");
    // Never overwrite what the object has, even a wrongly typed value.
    if annotations.is_some_and(|a| !a.is_object() || a.get(ENFORCED_ANNOTATION).is_some()) {
        return None;
    }
    let (path, value) = if annotations.is_some() {
        (
            json_patch::jsonptr::PointerBuf::from_tokens([
                "metadata",
                "annotations",
                ENFORCED_ANNOTATION,
            ]),
            serde_json::Value::String("true".into()),
        )
    } else {
        (
            json_patch::jsonptr::PointerBuf::from_tokens(["metadata", "annotations"]),
            serde_json::json!({ ENFORCED_ANNOTATION: "true" }),
        )
    };
    Some(json_patch::PatchOperation::Add(json_patch::AddOperation {
        path,
        value,
    }))
}

/// The Pods of a live RayCluster created before raygate enforced the plan are never patched
/// (a default could shrink them or make them unschedulable), and are denied only in a rule
/// family the cluster's own templates do not already break, so that installing raygate or
/// leaving audit mode never stops a cluster scaling (without cluster state its templates'
/// network-policy findings are never clean, so coverage does not stop it either). A Pod on a
/// master and host exposure are always denied: no cluster, old or new, may put a Ray Pod on a
/// master or on the node's network. (A cluster raygate has not seen yet has no owner here and
/// is judged as new.)
fn spare_pods_of_unmarked_cluster(engine: &Engine, owner: &DynamicObject, decision: &mut Decision) {
    let marked = owner
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ENFORCED_ANNOTATION));
    if marked {
        return;
    }
    decision.patch.0.clear();
    decision
        .violations
        .iter_mut()
        .for_each(|v| v.fillable = false);
    let mut view = ObjectRef::from_dynamic(owner);
    view.api_version = "ray.io/v1";
    view.kind = "RayCluster";
    // A move onto a master or onto the node's network is never grandfathered; a Pod that is
    // merely not pinned, like its template, is (else the cluster could not scale).
    let always_holds = |rule: RuleId| {
        [
            RuleId::NodeName,
            RuleId::TargetsMaster,
            RuleId::ToleratesControlPlane,
            RuleId::HostNetwork,
            RuleId::HostPort,
        ]
        .contains(&rule)
    };
    let spareable = |v: &Violation| v.action == Action::Deny && !always_holds(v.rule);
    if !decision.violations.iter().any(spareable) {
        return;
    }
    // The families the cluster's templates already break. A Pod differs from its template
    // in what KubeRay adds (its default ports, say), so the comparison is by family.
    let known: Vec<Option<crate::rule_id::Family>> = engine
        .evaluate(&view, &Context::WITHOUT_CLUSTER)
        .violations
        .iter()
        .map(|v| v.rule.family())
        .collect();
    let name = owner.metadata.name.as_deref().unwrap_or("");
    for v in decision.violations.iter_mut() {
        if !spareable(v) || !known.contains(&v.rule.family()) {
            continue;
        }
        v.action = Action::Warn;
        v.message.push_str(&format!(
            " (RayCluster {name:?} predates raygate's enforcement and its template already does this, so its Pods are not denied)"
        ));
    }
}

/// The live RayCluster a Ray Pod belongs to (by its `ray.io/cluster` label), if the cluster
/// state knows it.
fn owning_cluster(
    cluster: &dyn ClusterState,
    pod: &serde_json::Value,
    namespace: Option<&str>,
) -> Option<Arc<DynamicObject>> {
    if pod.get("kind").and_then(serde_json::Value::as_str) != Some("Pod") {
        return None;
    }
    let name = pod
        .pointer("/metadata/labels/ray.io~1cluster")
        .and_then(serde_json::Value::as_str)?;
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(serde_json::Value::as_str)
        .or(namespace)
        .unwrap_or("default");
    cluster
        .ray_clusters(namespace)?
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .cloned()
}

/// On CREATE the object may not carry its namespace or name yet: take the request's.
fn with_request<'v>(mut view: ObjectRef<'v>, request: &'v IncomingRequest<'_>) -> ObjectRef<'v> {
    if view.namespace.is_none() {
        view.namespace = request.namespace.as_deref();
    }
    if view.name.is_empty() {
        view.name = &request.name;
    }
    view
}

/// The CREATE, UPDATE or DELETE of a NetworkPolicy, judged against the live clusters it covers.
fn network_policy_change(
    engine: &Engine,
    cluster: &dyn ClusterState,
    request: &IncomingRequest<'_>,
) -> Option<Decision> {
    let namespace = request.namespace.as_deref()?;
    let (deleting, creating) = match request.operation {
        Operation::Delete => (true, false),
        Operation::Update => (false, false),
        // A new default-deny policy can cut a live cluster as surely as an edit.
        Operation::Create => (false, true),
        Operation::Connect => return None,
    };
    let current = cluster.network_policies(namespace)?;
    let live = cluster.ray_clusters(namespace)?;
    if live.is_empty() {
        return None;
    }
    let as_policy = |raw: &serde_json::value::RawValue| -> Option<Arc<NetworkPolicy>> {
        let mut policy: NetworkPolicy = serde_json::from_str(raw.get()).ok()?;
        policy.metadata.namespace = Some(namespace.to_owned());
        Some(Arc::new(policy))
    };
    let others = current
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some(request.name.as_str()));
    let before: Vec<Arc<NetworkPolicy>> = others
        .clone()
        .cloned()
        .chain(request.old_object.and_then(as_policy))
        .collect();
    let after: Vec<Arc<NetworkPolicy>> = others
        .cloned()
        .chain(if deleting {
            None
        } else {
            request.object.and_then(as_policy)
        })
        .collect();
    let clusters: Vec<ObjectRef<'_>> = live
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(|c| {
            let mut view = ObjectRef::from_dynamic(c);
            view.api_version = "ray.io/v1";
            view.kind = "RayCluster";
            view.namespace = Some(namespace);
            view
        })
        .collect();
    let by_kubernetes = request
        .user_info
        .username
        .as_deref()
        .is_some_and(|u| u.starts_with("system:serviceaccount:kube-system:"));
    let namespace_labels = cluster.namespace_labels(namespace);
    Some(engine.evaluate_network_policy_change(
        &NetworkPolicyChange {
            namespace_labels: namespace_labels.as_ref(),
            namespace,
            name: &request.name,
            deleting,
            creating,
            by_kubernetes,
            before: &before,
            after: &after,
        },
        &clusters,
    ))
}

/// The answer when no decision was reached in time (or evaluation failed): allowed with a
/// warning, or denied when `deny_because` names the families that fail closed.
pub fn undecided(
    endpoint: Endpoint,
    body: &[u8],
    reason: &str,
    deny_because: Option<&str>,
) -> Result<(Vec<u8>, Outcome), Error> {
    let review: IncomingReview<'_> = serde_json::from_slice(body).map_err(Error::Decode)?;
    let request = review.request.as_ref().ok_or(Error::NoRequest)?;
    let mut outcome = Outcome::of(request, "undecided");
    let mut response = allowing(request);
    if endpoint == Endpoint::Validate && request.may_be_in_scope() {
        match deny_because {
            Some(families) => {
                response = response.deny(format!(
                    "raygate: {reason}; the policy fails closed for {families}: retry shortly"
                ));
                response.result.code = 403;
                outcome.decision = "denied";
            }
            None => {
                response.warnings = Some(vec![short(&format!(
                    "raygate: {reason}; admitted unchecked"
                ))]);
                response
                    .audit_annotations
                    .insert("undecided".into(), reason.to_owned());
            }
        }
    }
    let encoded = encode(&review.api_version, &review.kind, &response)?;
    Ok((encoded, outcome))
}

/// `plan_ops`: how many of the patch's operations come from the plan (the rest is the
/// enforcement mark).
fn respond(
    mut response: AdmissionResponse,
    endpoint: Endpoint,
    decision: &Decision,
    plan_ops: usize,
    outcome: &mut Outcome,
) -> AdmissionResponse {
    match endpoint {
        Endpoint::Mutate => {
            outcome.decision = "allowed";
            if !decision.patch.0.is_empty() {
                // On an UPDATE nothing is fillable: the patch only puts back what it dropped.
                let filled = decision.violations.iter().filter(|v| v.fillable).count();
                let said = match (filled, plan_ops) {
                    (0, 0) => None,
                    (0, n) => Some(format!(
                        "raygate put back {n} value(s) of the platform plan that this update dropped"
                    )),
                    (n, _) => Some(format!(
                        "raygate filled in {n} missing value(s) from the platform plan"
                    )),
                };
                response.warnings = said.map(|w| vec![short(&w)]);
                match serde_json::to_vec(&decision.patch) {
                    Ok(patch) => {
                        response.patch = Some(patch);
                        outcome.decision = "patched";
                    }
                    Err(e) => tracing::error!(error = %e, "cannot serialise the patch"),
                }
            }
        }
        Endpoint::Validate => {
            let audit = decision.mode == Mode::Audit;
            // What the user must fix by hand comes before what the mutating webhook fills.
            let mut denials: Vec<&Violation> = decision
                .violations
                .iter()
                .filter(|v| v.action == Action::Deny && !audit)
                .collect();
            denials.sort_by_key(|v| v.fillable);
            let warnings: Vec<String> = decision
                .violations
                .iter()
                .filter(|v| v.action == Action::Warn || (audit && v.action != Action::Audit))
                .map(|v| short(&format!("{}: {}", v.rule, v.message)))
                .collect();
            if !warnings.is_empty() {
                response.warnings = Some(warnings);
            }
            let audited: Vec<String> = decision
                .violations
                .iter()
                .filter(|v| audit || v.action == Action::Audit)
                .map(|v| format!("{} {}", v.rule, v.path))
                .collect();
            if !audited.is_empty() {
                // The API server prefixes each key with the webhook's name
                // (e.g. rayclusters.validate.raygate.dev/violations).
                response
                    .audit_annotations
                    .insert("violations".into(), audited.join("; "));
                response
                    .audit_annotations
                    .insert("mode".into(), decision.mode.as_str().into());
            }
            if denials.is_empty() {
                outcome.decision = "allowed";
            } else {
                outcome.decision = "denied";
                response = response.deny(denial_message(&denials));
                response.result.code = 403;
                response.result.reason = "Forbidden".into();
            }
        }
    }
    response
}

fn denial_message(denials: &[&Violation]) -> String {
    let mut message = format!(
        "raygate: {} violation(s) of the Ray platform plan:",
        denials.len()
    );
    for v in denials.iter().take(MAX_LISTED) {
        message.push_str(&format!("\n- {} at {}: {}", v.rule, v.path, v.message));
    }
    if denials.len() > MAX_LISTED {
        message.push_str(&format!(
            "\n- and {} more: run `raygate check -f <manifest>` for all of them",
            denials.len() - MAX_LISTED
        ));
    }
    message
}

/// Cuts a warning to what kubectl shows whole, at a character boundary.
fn short(text: &str) -> String {
    if text.len() <= MAX_WARNING {
        return text.to_owned();
    }
    let mut end = MAX_WARNING - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn encode(api_version: &str, kind: &str, response: &AdmissionResponse) -> Result<Vec<u8>, Error> {
    let status = (!response.allowed).then(|| WireStatus {
        code: response.result.code,
        message: &response.result.message,
        reason: "Forbidden",
    });
    let wire = WireReview {
        api_version: if api_version.is_empty() {
            "admission.k8s.io/v1"
        } else {
            api_version
        },
        kind: if kind.is_empty() {
            "AdmissionReview"
        } else {
            kind
        },
        response: WireResponse {
            uid: &response.uid,
            allowed: response.allowed,
            status,
            patch: response
                .patch
                .as_ref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            patch_type: response.patch.as_ref().map(|_| "JSONPatch"),
            audit_annotations: &response.audit_annotations,
            warnings: response.warnings.as_ref(),
        },
    };
    serde_json::to_vec(&wire).map_err(Error::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = short(&long);
        assert!(cut.len() <= MAX_WARNING);
        assert!(cut.ends_with("..."));
        assert_eq!(short("fine"), "fine");
    }
}
