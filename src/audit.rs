//! `raygate audit`: the engine over what a cluster already runs, and PolicyReports of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::cluster::{RAY_KINDS, ray_resource};
use crate::engine::{Context, Effect, Engine, Judged, effect_as_given};
use crate::policy::Action;
use crate::ray::{LABEL_CLUSTER, ObjectRef};
use crate::report::{CheckResult, Origin, Report};
use crate::rule_id::RuleId;

/// Objects per list call: bounded memory per page, few round trips.
const PAGE_SIZE: u32 = 500;
/// Results kept in one PolicyReport; the summary always counts all of them.
pub const MAX_REPORT_RESULTS: usize = 1000;
pub const REPORT_NAME: &str = "raygate";
const FIELD_MANAGER: &str = "raygate";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot list {what}: {source}")]
    List {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write PolicyReport {namespace}/{REPORT_NAME}: {source}")]
    WriteReport {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// What a scan saw, for progress output.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    Page {
        what: &'a str,
        listed: usize,
    },
    /// The custom resource is not installed in this cluster.
    NotInstalled {
        kind: &'a str,
    },
}

/// The outcome of one audit scan.
#[derive(Debug)]
pub struct Scan {
    pub report: Report,
    /// Object uids, in the order of `report.results`.
    pub uids: Vec<Option<String>>,
    pub namespaces: Vec<String>,
}

async fn list_all<K>(
    api: &Api<K>,
    labels: Option<&str>,
    what: &str,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    list_pages(api, labels, what, progress, |page| items.extend(page)).await?;
    Ok(items)
}

/// Lists `PAGE_SIZE` objects at a time and hands each page to `on_page`, so that a scan holds
/// one page of objects at a time, never the whole cluster.
async fn list_pages<K>(
    api: &Api<K>,
    labels: Option<&str>,
    what: &str,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
    mut on_page: impl FnMut(Vec<K>),
) -> Result<(), kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut listed = 0;
    let mut params = ListParams::default().limit(PAGE_SIZE);
    if let Some(labels) = labels {
        params = params.labels(labels);
    }
    loop {
        let page = api.list(&params).await?;
        listed += page.items.len();
        on_page(page.items);
        progress(Progress::Page { what, listed });
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(()),
        }
    }
}

fn dynamic_api(
    client: &Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

fn typed_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Lists the Ray objects, Ray Pods and NetworkPolicies of `namespace` (or of every
/// namespace) and evaluates them as they are.
pub async fn scan(
    client: &Client,
    engine: &Engine,
    namespace: Option<&str>,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Scan, Error> {
    let by_namespace = network_policies_by_namespace(client, namespace, progress).await?;
    // Each page is judged as it arrives and dropped: only the results are kept.
    let no_policies = Vec::new();
    let mut results = Vec::new();
    let mut uids = Vec::new();
    let mut judge = |mut value: Value, kind: &'static str| {
        // List items may omit their type; the engine keys on it.
        let api_version = if kind == "Pod" { "v1" } else { "ray.io/v1" };
        value["apiVersion"] = api_version.into();
        value["kind"] = kind.into();
        let Some(object) = ObjectRef::from_value(&value) else {
            return;
        };
        let ns = object.namespace.unwrap_or("default");
        let context = Context::complete(by_namespace.get(ns).unwrap_or(&no_policies));
        let decision = engine.evaluate(&object, &context);
        if matches!(decision.judged, Judged::OutOfScope) {
            return;
        }
        uids.push(
            value
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        results.push(CheckResult::new(
            Origin::Cluster,
            kind,
            Some(ns),
            object.name,
            decision,
        ));
    };
    judge_ray_objects(client, namespace, progress, &mut judge).await?;
    judge_ray_pods(client, namespace, progress, &mut judge).await?;
    let mut namespaces: Vec<String> = results.iter().filter_map(|r| r.namespace.clone()).collect();
    if let Some(ns) = namespace {
        namespaces.push(ns.to_owned());
    }
    namespaces.sort();
    namespaces.dedup();
    Ok(Scan {
        report: Report { results },
        uids,
        namespaces,
    })
}

fn list_error(what: &str) -> impl FnOnce(kube::Error) -> Error {
    let what = what.to_owned();
    move |source| Error::List { what, source }
}

/// The NetworkPolicies of `namespace`, or of every namespace (`raygate fix --kubeconfig`
/// counts all of them as existing).
pub async fn network_policies(
    client: &Client,
    namespace: Option<&str>,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Vec<Arc<NetworkPolicy>>, Error> {
    let policies: Vec<NetworkPolicy> = list_all(
        &typed_api(client, namespace),
        None,
        "NetworkPolicies",
        progress,
    )
    .await
    .map_err(list_error("NetworkPolicies"))?;
    Ok(policies.into_iter().map(Arc::new).collect())
}

/// The NetworkPolicies of `namespace` (or of every namespace), by namespace.
async fn network_policies_by_namespace(
    client: &Client,
    namespace: Option<&str>,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<HashMap<String, Vec<Arc<NetworkPolicy>>>, Error> {
    let mut by_namespace: HashMap<String, Vec<Arc<NetworkPolicy>>> = HashMap::new();
    for policy in network_policies(client, namespace, progress).await? {
        let ns = policy.metadata.namespace.clone().unwrap_or_default();
        by_namespace.entry(ns).or_default().push(policy);
    }
    Ok(by_namespace)
}

/// Lists each Ray kind page by page into `judge`; a kind not installed is skipped.
async fn judge_ray_objects(
    client: &Client,
    namespace: Option<&str>,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
    judge: &mut impl FnMut(Value, &'static str),
) -> Result<(), Error> {
    for (kind, plural) in RAY_KINDS {
        let resource = ray_resource(kind, plural);
        let what = format!("{kind}s");
        let listed = list_pages(
            &dynamic_api(client, namespace, &resource),
            None,
            &what,
            progress,
            |page| {
                for mut object in page {
                    // The rules never read managedFields; they are often half the object.
                    object.metadata.managed_fields = None;
                    if let Ok(value) = serde_json::to_value(object) {
                        judge(value, kind);
                    }
                }
            },
        )
        .await;
        match listed {
            Ok(()) => {}
            Err(error) if is_not_found(&error) => progress(Progress::NotInstalled { kind }),
            Err(error) => return Err(list_error(&what)(error)),
        }
    }
    Ok(())
}

/// Lists the Pods of Ray clusters page by page into `judge`.
async fn judge_ray_pods(
    client: &Client,
    namespace: Option<&str>,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
    judge: &mut impl FnMut(Value, &'static str),
) -> Result<(), Error> {
    list_pages(
        &typed_api::<Pod>(client, namespace),
        Some(LABEL_CLUSTER),
        "Ray Pods",
        progress,
        |page| {
            for mut pod in page {
                pod.metadata.managed_fields = None;
                pod.status = None;
                if let Ok(value) = serde_json::to_value(pod) {
                    judge(value, "Pod");
                }
            }
        },
    )
    .await
    .map_err(list_error("Ray Pods"))
}

/// Violations per namespace and rule, for the `raygate_audit_violations` gauge.
pub fn violation_counts(scan: &Scan) -> BTreeMap<(String, RuleId), i64> {
    let mut counts = BTreeMap::new();
    for result in &scan.report.results {
        let ns = result.namespace.clone().unwrap_or_default();
        for v in &result.violations {
            *counts.entry((ns.clone(), v.rule)).or_insert(0) += 1;
        }
    }
    counts
}

/// One PolicyReport per namespace: one result per violation, one `pass` per compliant
/// object, at most [`MAX_REPORT_RESULTS`] results; the summary counts every one.
pub fn policy_reports(scan: &Scan, policy_name: &str, now: time::OffsetDateTime) -> Vec<Value> {
    let timestamp = json!({"seconds": now.unix_timestamp(), "nanos": 0});
    let mut reports = Vec::new();
    for namespace in &scan.namespaces {
        let mut report = NamespaceReport::default();
        let in_namespace = scan
            .report
            .results
            .iter()
            .zip(&scan.uids)
            .filter(|(r, _)| r.namespace.as_deref() == Some(namespace.as_str()));
        for (result, uid) in in_namespace {
            if result.judged == Judged::Exempt {
                continue;
            }
            let resource = json!({
                "apiVersion": if result.kind == "Pod" { "v1" } else { "ray.io/v1" },
                "kind": result.kind,
                "namespace": namespace,
                "name": result.name,
                "uid": uid,
            });
            for entry in report_entries(result) {
                report.add(entry, || {
                    json!({
                        "source": "raygate",
                        "policy": policy_name,
                        "timestamp": timestamp,
                        "scored": true,
                        "resources": [resource],
                    })
                });
            }
        }
        reports.push(report.into_policy_report(namespace));
    }
    reports
}

/// One result of a PolicyReport before it is written.
struct ReportEntry<'r> {
    rule: &'r str,
    outcome: &'static str,
    category: &'static str,
    message: String,
    path: Option<&'r str>,
}

/// A result's entries: one per finding, or one `pass`.
fn report_entries(result: &CheckResult) -> Vec<ReportEntry<'_>> {
    let mut entries: Vec<ReportEntry<'_>> = result
        .violations
        .iter()
        .filter(|v| v.action != Action::Off)
        .map(|v| ReportEntry {
            rule: v.rule.as_str(),
            // What enforcing would do with it, whatever the mode it was judged in.
            outcome: match effect_as_given(result.mode, v) {
                Effect::Deny | Effect::WouldDeny => "fail",
                Effect::Fill | Effect::Warn | Effect::Audit => "warn",
            },
            category: v.rule.category(),
            message: v.message.clone(),
            path: Some(v.path.as_str()),
        })
        .collect();
    if entries.is_empty() {
        entries.push(ReportEntry {
            rule: "all",
            outcome: "pass",
            category: "",
            message: "meets the platform plan".into(),
            path: None,
        });
    }
    entries
}

/// One namespace's results, capped, and the summary of all of them.
struct NamespaceReport {
    summary: BTreeMap<&'static str, usize>,
    results: Vec<Value>,
    dropped: usize,
}

impl Default for NamespaceReport {
    fn default() -> Self {
        NamespaceReport {
            summary: BTreeMap::from([("pass", 0), ("fail", 0), ("warn", 0)]),
            results: Vec::new(),
            dropped: 0,
        }
    }
}

impl NamespaceReport {
    /// Counts `entry` and keeps it unless the report is full; `common` gives the fields
    /// every result of the object shares.
    fn add(&mut self, entry: ReportEntry<'_>, common: impl FnOnce() -> Value) {
        *self.summary.entry(entry.outcome).or_insert(0) += 1;
        if self.results.len() >= MAX_REPORT_RESULTS {
            self.dropped += 1;
            return;
        }
        let mut value = common();
        value["rule"] = entry.rule.into();
        value["result"] = entry.outcome.into();
        value["message"] = entry.message.into();
        if !entry.category.is_empty() {
            value["category"] = entry.category.into();
        }
        if let Some(path) = entry.path {
            value["properties"] = json!({"path": path});
        }
        self.results.push(value);
    }

    fn into_policy_report(self, namespace: &str) -> Value {
        let mut report = json!({
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "PolicyReport",
            "metadata": {
                "name": REPORT_NAME,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "raygate"},
            },
            "summary": self.summary,
            "results": self.results,
        });
        if self.dropped > 0 {
            report["metadata"]["annotations"] =
                json!({"raygate.dev/results-omitted": self.dropped.to_string()});
        }
        report
    }
}

/// Creates or replaces each report with one server-side apply. A namespace that cannot be
/// written (Terminating, forbidden) is logged and skipped, and does not stop the others; the
/// first such error is returned once all are done.
pub async fn write_reports(client: &Client, reports: &[Value]) -> Result<(), Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut first_error = None;
    for report in reports {
        let namespace = report["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &policy_report_resource());
        if let Err(source) = api.patch(REPORT_NAME, &params, &Patch::Apply(report)).await {
            let error = Error::WriteReport { namespace, source };
            tracing::warn!(%error, "PolicyReport not written; the other namespaces go on");
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn policy_report_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    )
}

/// Deletes raygate's PolicyReports in namespaces that no longer have Ray objects (a whole-
/// cluster scan wrote `reports` for every namespace that has them). Reports raygate did not
/// write are never touched.
pub async fn prune_reports(client: &Client, reports: &[Value]) -> Result<usize, Error> {
    let current: std::collections::BTreeSet<&str> = reports
        .iter()
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .collect();
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &policy_report_resource());
    let params = ListParams::default()
        .fields(&format!("metadata.name={REPORT_NAME}"))
        .labels("app.kubernetes.io/managed-by=raygate");
    let listed = all.list(&params).await.map_err(|source| Error::List {
        what: "PolicyReports".into(),
        source,
    })?;
    let mut pruned = 0;
    for stale in listed.items.iter().filter(|r| {
        r.metadata
            .namespace
            .as_deref()
            .is_some_and(|ns| !current.contains(ns))
    }) {
        let namespace = stale.metadata.namespace.clone().unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &namespace, &policy_report_resource());
        match api.delete(REPORT_NAME, &Default::default()).await {
            Ok(_) => pruned += 1,
            Err(error) => {
                tracing::warn!(%error, namespace, "stale PolicyReport not deleted; retried next scan")
            }
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Decision;
    use crate::rules::Violation;

    fn result(ns: &str, name: &str, violations: usize) -> CheckResult {
        let decision = Decision {
            judged: Judged::Cluster,
            mode: crate::Mode::Enforce,
            violations: (0..violations)
                .map(|i| Violation {
                    rule: RuleId::HeadPort,
                    action: Action::Deny,
                    path: format!("/spec/{i}"),
                    message: "m".into(),
                    fillable: false,
                })
                .collect(),
            patch: json_patch::Patch(Vec::new()),
        };
        CheckResult::new(Origin::Cluster, "RayCluster", Some(ns), name, decision)
    }

    #[test]
    fn reports_are_per_namespace_bounded_and_count_everything() {
        let results = vec![
            result("a", "big", MAX_REPORT_RESULTS + 5),
            result("a", "clean", 0),
            result("b", "one", 1),
        ];
        let scan = Scan {
            uids: vec![None; results.len()],
            report: Report { results },
            namespaces: vec!["a".into(), "b".into()],
        };
        let reports = policy_reports(&scan, "ray-platform", time::OffsetDateTime::UNIX_EPOCH);
        assert_eq!(reports.len(), 2);
        let a = &reports[0];
        assert_eq!(a["metadata"]["namespace"], "a");
        assert_eq!(a["results"].as_array().unwrap().len(), MAX_REPORT_RESULTS);
        assert_eq!(a["summary"]["fail"], MAX_REPORT_RESULTS + 5);
        assert_eq!(a["summary"]["pass"], 1);
        assert_eq!(
            a["metadata"]["annotations"]["raygate.dev/results-omitted"],
            "6"
        );
        assert_eq!(reports[1]["summary"]["fail"], 1);
        assert_eq!(reports[1]["results"][0]["properties"]["path"], "/spec/0");
    }
}
