//! AdmissionReview in, engine [`Decision`] out, AdmissionReview bytes back.

use crate::rule_id::RuleId;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde::Serialize;

use crate::engine::{self, Context, Decision, Effect, Engine, Judged, NetworkPolicyChange};
use crate::policy::{Action, Mode};
use crate::ray::{ClusterSource, ObjectRef};
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
    pub verdict: Verdict,
    pub violations: Vec<Violation>,
}

/// What admission answered a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted unchanged.
    Allowed,
    Denied,
    /// Admitted with the mutating webhook's patch.
    Patched,
    /// Not a Ray object (or exempt): nothing judged.
    Skipped,
    /// No decision in time (or evaluation failed): admitted with a warning.
    Undecided,
}

impl Verdict {
    /// As logs and the `decision` metric label write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Patched => "patched",
            Verdict::Skipped => "skipped",
            Verdict::Undecided => "undecided",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to one review, built from "allowed, unchanged" as kube-core's
/// `AdmissionResponse::from(&request).deny(..).with_patch(..)` is.
#[derive(Debug)]
struct Response {
    uid: String,
    /// The denial's message; `None` admits.
    denial: Option<String>,
    /// A JSON Patch, serialised.
    patch: Option<Vec<u8>>,
    warnings: Vec<String>,
    audit_annotations: HashMap<String, String>,
}

impl Response {
    /// Admits `request` unchanged.
    fn allowing(request: &IncomingRequest<'_>) -> Response {
        Response {
            uid: request.uid.clone(),
            denial: None,
            patch: None,
            warnings: Vec::new(),
            audit_annotations: HashMap::new(),
        }
    }

    /// Denies (403 Forbidden) with `message`.
    fn deny(mut self, message: String) -> Response {
        self.denial = Some(message);
        self
    }

    fn with_patch(mut self, patch: Vec<u8>) -> Response {
        self.patch = Some(patch);
        self
    }

    fn with_warnings(mut self, warnings: impl IntoIterator<Item = String>) -> Response {
        self.warnings.extend(warnings);
        self
    }

    /// The API server prefixes each key with the webhook's name
    /// (e.g. rayclusters.validate.raygate.dev/violations).
    fn with_audit_annotation(mut self, key: &str, value: String) -> Response {
        self.audit_annotations.insert(key.to_owned(), value);
        self
    }

    fn encode(&self, api_version: &str, kind: &str) -> Result<Vec<u8>, Error> {
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
                uid: &self.uid,
                allowed: self.denial.is_none(),
                status: self.denial.as_deref().map(|message| WireStatus {
                    code: 403,
                    message,
                    reason: "Forbidden",
                }),
                patch: self
                    .patch
                    .as_ref()
                    .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
                patch_type: self.patch.as_ref().map(|_| "JSONPatch"),
                audit_annotations: &self.audit_annotations,
                warnings: (!self.warnings.is_empty()).then_some(&self.warnings),
            },
        };
        serde_json::to_vec(&wire).map_err(Error::Encode)
    }
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
    /// One live RayCluster; `None` while it cannot be known or when there is none.
    fn ray_cluster(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.ray_clusters(namespace)?
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
    }
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
    /// Parsed with the envelope, in one pass: only Ray's kinds, Pods and NetworkPolicies are
    /// sent to raygate, and each of those is read.
    #[serde(default)]
    object: Option<serde_json::Value>,
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
    fn of(request: &IncomingRequest<'_>, verdict: Verdict) -> Outcome {
        Outcome {
            uid: request.uid.clone(),
            kind: request.kind.kind.clone(),
            namespace: request.namespace.clone().unwrap_or_default(),
            name: request.name.clone(),
            operation: operation_name(&request.operation),
            dry_run: request.dry_run,
            verdict,
            violations: Vec::new(),
        }
    }
}

fn decide(
    engine: &Engine,
    known: Known<'_>,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<(Vec<u8>, Outcome), Error> {
    let review: IncomingReview<'_> = serde_json::from_slice(body).map_err(Error::Decode)?;
    let request = review.request.ok_or(Error::NoRequest)?;
    let objects = Objects::parse(&request)?;
    // A Ray Pod's live RayCluster: its coverage, origin and enforcement mark all matter.
    let owner = match (&known, &objects.new) {
        (Known::Live(cluster, _), Some(object)) => {
            owning_cluster(*cluster, object, request.namespace.as_deref())
        }
        _ => None,
    };
    let decision = match &objects.new {
        Some(object) => {
            let evaluation = Evaluation {
                engine,
                known: &known,
                endpoint,
                request: &request,
                owner: owner.as_deref(),
            };
            evaluation.run(object, objects.old.as_ref())
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
    let mut outcome = Outcome::of(&request, Verdict::Skipped);
    let mut response = Response::allowing(&request);
    if let Some(mut decision) = decision.filter(|d| d.judged.rules_ran()) {
        if let Some(owner) = &owner
            && decision.judged == Judged::Pod
        {
            spare_pods_of_unmarked_cluster(engine, owner, &mut decision);
        }
        // What the plan's patch does, said without the mark (raygate's own bookkeeping).
        let plan_ops = decision.patch.0.len();
        if endpoint == Endpoint::Mutate
            && let Some(mark) = objects.enforcement_mark(&request, &decision)
        {
            decision.patch.0.push(mark);
        }
        (response, outcome.verdict) = match endpoint {
            Endpoint::Mutate => mutated(response, &decision, plan_ops),
            Endpoint::Validate => validated(response, &decision),
        };
        outcome.violations = decision.violations;
    }
    let encoded = response.encode(&review.api_version, &review.kind)?;
    Ok((encoded, outcome))
}

/// The objects of a CREATE or UPDATE of a kind that may be in scope, parsed.
struct Objects<'r> {
    new: Option<&'r serde_json::Value>,
    /// An UPDATE's old object: it is judged against it (see `Engine::evaluate_update`).
    old: Option<serde_json::Value>,
}

impl<'r> Objects<'r> {
    fn parse(request: &'r IncomingRequest<'_>) -> Result<Objects<'r>, Error> {
        let new = match (&request.operation, &request.object) {
            (Operation::Create | Operation::Update, Some(object))
                if request.may_be_in_scope() && !object.is_null() =>
            {
                Some(object)
            }
            _ => None,
        };
        let old = match (&request.operation, request.old_object) {
            (Operation::Update, Some(raw)) if new.is_some() => {
                Some(serde_json::from_str(raw.get()).map_err(Error::Decode)?)
            }
            _ => None,
        };
        Ok(Objects { new, old })
    }

    /// The enforcement mark for a RayCluster the mutating call admits while enforcing. It
    /// goes on at CREATE and, like every fill-in on UPDATE, is put back when an update drops
    /// it (a server-side apply of the original manifest): it never flaps, and removing it
    /// cannot turn a cluster's Pods into ones that are never denied.
    fn enforcement_mark(
        &self,
        request: &IncomingRequest<'_>,
        decision: &Decision,
    ) -> Option<json_patch::PatchOperation> {
        let marks = match request.operation {
            Operation::Create => true,
            Operation::Update => self
                .old
                .as_ref()
                .and_then(|old| old.pointer("/metadata/annotations"))
                .is_some_and(|a| a.get(ENFORCED_ANNOTATION).is_some()),
            _ => false,
        };
        let ray_cluster =
            ClusterSource::from_kind(&request.kind.kind) == Some(ClusterSource::RayCluster);
        if marks
            && ray_cluster
            && decision.mode == Mode::Enforce
            && decision.judged == Judged::Cluster
        {
            mark_enforced(self.new?)
        } else {
            None
        }
    }
}

/// One object's evaluation: the engine call the endpoint needs, with what is known of the
/// object's namespace and live cluster.
struct Evaluation<'a> {
    engine: &'a Engine,
    known: &'a Known<'a>,
    endpoint: Endpoint,
    request: &'a IncomingRequest<'a>,
    owner: Option<&'a DynamicObject>,
}

impl Evaluation<'_> {
    fn run(&self, object: &serde_json::Value, old: Option<&serde_json::Value>) -> Option<Decision> {
        let view = with_request(ObjectRef::from_value(object)?, self.request);
        let old = old
            .and_then(ObjectRef::from_value)
            .map(|v| with_request(v, self.request));
        Some(match self.known {
            Known::Fixed(context) => self.evaluate(&view, old.as_ref(), context),
            Known::Live(cluster, deadline) => {
                let policies = view.namespace.and_then(|ns| cluster.network_policies(ns));
                let namespace_labels = view.namespace.and_then(|ns| cluster.namespace_labels(ns));
                let context = Context {
                    network_policies: match &policies {
                        Some(p) => NetworkPolicies::Known(p),
                        None => NetworkPolicies::Unknown,
                    },
                    namespace_labels: namespace_labels.as_ref(),
                    pod_cluster: self.owner.map(|c| {
                        let mut owner = ObjectRef::from_dynamic(c);
                        owner.api_version = "ray.io/v1";
                        owner.kind = ClusterSource::RayCluster.kind();
                        owner.namespace = owner.namespace.or(view.namespace);
                        owner
                    }),
                    cluster_origin: self
                        .owner
                        .map(ObjectRef::from_dynamic)
                        .and_then(|c| c.owner),
                    at_admission: true,
                    deadline: *deadline,
                };
                self.evaluate(&view, old.as_ref(), &context)
            }
        })
    }

    fn evaluate(
        &self,
        view: &ObjectRef<'_>,
        old: Option<&ObjectRef<'_>>,
        context: &Context<'_>,
    ) -> Decision {
        match (self.endpoint, old) {
            // The mutating call answers with the patch alone.
            (Endpoint::Mutate, old) => self.engine.evaluate_patch(view, old, context),
            (Endpoint::Validate, Some(old)) => self.engine.evaluate_update(view, old, context),
            (Endpoint::Validate, None) => self.engine.evaluate(view, context),
        }
    }
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
    view.kind = ClusterSource::RayCluster.kind();
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
    cluster.ray_cluster(namespace, name)
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
    let in_namespace = |mut policy: NetworkPolicy| {
        policy.metadata.namespace = Some(namespace.to_owned());
        Arc::new(policy)
    };
    let old_policy = request
        .old_object
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .map(in_namespace);
    let new_policy = request
        .object
        .as_ref()
        .and_then(|value| serde::Deserialize::deserialize(value).ok())
        .map(in_namespace);
    let others = current
        .iter()
        .filter(|p| p.metadata.name.as_deref() != Some(request.name.as_str()));
    let before: Vec<Arc<NetworkPolicy>> = others.clone().cloned().chain(old_policy).collect();
    let after: Vec<Arc<NetworkPolicy>> = others
        .cloned()
        .chain(if deleting { None } else { new_policy })
        .collect();
    let clusters: Vec<ObjectRef<'_>> = live
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(|c| {
            let mut view = ObjectRef::from_dynamic(c);
            view.api_version = "ray.io/v1";
            view.kind = ClusterSource::RayCluster.kind();
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
    let mut outcome = Outcome::of(request, Verdict::Undecided);
    let mut response = Response::allowing(request);
    if endpoint == Endpoint::Validate && request.may_be_in_scope() {
        response = match deny_because {
            Some(families) => {
                outcome.verdict = Verdict::Denied;
                response.deny(format!(
                    "raygate: {reason}; the policy fails closed for {families}: retry shortly"
                ))
            }
            None => response
                .with_warnings([short(&format!("raygate: {reason}; admitted unchecked"))])
                .with_audit_annotation("undecided", reason.to_owned()),
        };
    }
    let encoded = response.encode(&review.api_version, &review.kind)?;
    Ok((encoded, outcome))
}

/// The mutating call's answer: the patch, and what it does said as a warning. `plan_ops`: how
/// many of the patch's operations come from the plan (the rest is the enforcement mark).
fn mutated(response: Response, decision: &Decision, plan_ops: usize) -> (Response, Verdict) {
    if decision.patch.0.is_empty() {
        return (response, Verdict::Allowed);
    }
    // On an UPDATE nothing is fillable: the patch only puts back what it dropped.
    let filled = decision
        .violations
        .iter()
        .filter(|v| decision.effect(v) == Effect::Fill)
        .count();
    let said = match (filled, plan_ops) {
        (0, 0) => None,
        (0, n) => Some(format!(
            "raygate put back {n} value(s) of the platform plan that this update dropped"
        )),
        (n, _) => Some(format!(
            "raygate filled in {n} missing value(s) from the platform plan"
        )),
    };
    let response = response.with_warnings(said.map(|w| short(&w)));
    match serde_json::to_vec(&decision.patch) {
        Ok(patch) => (response.with_patch(patch), Verdict::Patched),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the patch");
            (response, Verdict::Allowed)
        }
    }
}

/// The validating call's answer on the object as it arrives: denied for what
/// [`engine::effect_as_given`] denies, with warnings and audit annotations for the rest.
fn validated(response: Response, decision: &Decision) -> (Response, Verdict) {
    let effect = |v: &Violation| engine::effect_as_given(decision.mode, v);
    // What the user must fix by hand comes before what the mutating webhook fills.
    let mut denials: Vec<&Violation> = decision
        .violations
        .iter()
        .filter(|v| effect(v) == Effect::Deny)
        .collect();
    denials.sort_by_key(|v| v.fillable);
    let warnings = decision
        .violations
        .iter()
        .filter(|v| effect(v).warns())
        .map(|v| short(&format!("{}: {}", v.rule, v.message)));
    let mut response = response.with_warnings(warnings);
    let audited: Vec<String> = decision
        .violations
        .iter()
        .filter(|v| engine::recorded(decision.mode, v))
        .map(|v| format!("{} {}", v.rule, v.path))
        .collect();
    if !audited.is_empty() {
        response = response
            .with_audit_annotation("violations", audited.join("; "))
            .with_audit_annotation("mode", decision.mode.as_str().to_owned());
    }
    if denials.is_empty() {
        (response, Verdict::Allowed)
    } else {
        (response.deny(denial_message(&denials)), Verdict::Denied)
    }
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
