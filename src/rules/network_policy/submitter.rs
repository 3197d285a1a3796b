//! A RayJob's submitter reaches its head's dashboard.
//!
//! In `K8sJobMode` (the default) KubeRay v1.5.0 runs `ray job submit` in a Job named after the
//! RayJob; the Job controller labels its Pod `batch.kubernetes.io/job-name: <RayJob>`. The
//! submitter talks to the head's dashboard only: cut there, the job is never submitted.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use super::operator::{self, Unknowns, Workload, first_name, head_selector, resolved};
use super::semantics::PolicyPod;
use super::{NamespaceView, policies_do};
use crate::ray::{ClusterSource, ClusterSpec, NodeGroup};
use crate::rule_id::RuleId;
use crate::rules::Findings;

/// The label the Job controller gives a Job's Pods, with the Job's name.
pub(super) const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Whether KubeRay runs a submitter Job for the cluster: a RayJob in `K8sJobMode`. A
/// RayCronJob's RayJobs have generated names, which no label here can know.
pub(super) fn runs_submitter(cluster: &ClusterSpec<'_>) -> bool {
    cluster.source == ClusterSource::RayJob
        && cluster
            .root
            .pointer("/spec/submissionMode")
            .and_then(Value::as_str)
            .is_none_or(|mode| mode == "K8sJobMode")
}

/// The labels of the submitter's Pod: its template's, and the Job controller's.
fn submitter_labels(cluster: &ClusterSpec<'_>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = cluster
        .root
        .pointer("/spec/submitterPodTemplate/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    labels.insert(JOB_NAME_LABEL.to_owned(), cluster.name.to_owned());
    labels.insert("job-name".to_owned(), cluster.name.to_owned());
    labels
}

/// The submitter's Pod must reach the head's dashboard through the NetworkPolicies of the
/// namespace (both run there), judged as [`operator::check`] judges the operator's Pod. Only
/// run once the policies are known.
pub(super) fn check(
    cluster: &ClusterSpec<'_>,
    head: &NodeGroup<'_>,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    in_namespace: &[&NetworkPolicy],
    out: &mut Findings<'_>,
) {
    if !runs_submitter(cluster) || !out.enabled(RuleId::SubmitterAccess) {
        return;
    }
    let head_labels = super::pod_labels(cluster, head);
    let submitter = submitter_labels(cluster);
    let ends = operator::ends(in_namespace, &head_labels, &submitter, true);
    if ends.ingress_restricted.is_empty() && ends.egress_restricted.is_empty() {
        return;
    }
    // The dashboard at the number the head listens on once the admission's patch is applied.
    let (ray_ports, head_declared) = operator::head_ports(head, &out.fills);
    let wanted = operator::wanted(Workload::Job, &ray_ports, &head_declared);
    let Some(dashboard) = wanted.first().map(|w| w.number) else {
        return;
    };
    let view = NamespaceView::new(namespace, namespace_labels);
    let judging = operator::judging(in_namespace, &ends);
    let strict = resolved(&judging, &view, false, &mut Unknowns::default());
    let lenient = resolved(&judging, &view, true, &mut Unknowns::default());
    let mut namespaces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    if let Some(labels) = namespace_labels {
        namespaces.insert(namespace.to_owned(), labels.clone());
    }
    let from = PolicyPod {
        namespace,
        labels: &submitter,
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        ports: &[],
    };
    let to = PolicyPod {
        namespace,
        labels: &head_labels,
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        ports: &head_declared,
    };
    let verdicts = operator::judge(&wanted, &strict, &lenient, &namespaces, &from, &to);
    let peer = format!(
        "{{podSelector: {{matchLabels: {{{JOB_NAME_LABEL}: {}}}}}}}",
        cluster.name
    );
    if !verdicts.unverified.is_empty() {
        out.report(RuleId::NotVerified, &head.path, || {
            format!(
                "could not verify that the RayJob's submitter Pod reaches the head's dashboard (TCP {dashboard}): a NetworkPolicy selects it by namespace labels or addresses raygate cannot see here; admit it by `{peer}`"
            )
        });
        return;
    }
    let mut blocking: Vec<&NetworkPolicy> = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    if !verdicts.cut_in.is_empty() {
        super::add_unique(&mut blocking, &ends.ingress_restricted);
        fixes.push(format!(
            "add to NetworkPolicy {:?} an ingress rule `- {{from: [{peer}], ports: [{{protocol: TCP, port: {dashboard}}}]}}`",
            first_name(&ends.ingress_restricted)
        ));
    }
    if !verdicts.cut_out.is_empty() {
        super::add_unique(&mut blocking, &ends.egress_restricted);
        fixes.push(format!(
            "add to NetworkPolicy {:?} an egress rule `- {{to: [{{podSelector: {{matchLabels: {{{}}}}}}}], ports: [{{protocol: TCP, port: {dashboard}}}]}}`",
            first_name(&ends.egress_restricted),
            head_selector(cluster, &head_labels)
        ));
    }
    if blocking.is_empty() {
        return;
    }
    out.report(RuleId::SubmitterAccess, &head.path, || {
        format!(
            "{} the RayJob's submitter Pod ({JOB_NAME_LABEL}={}) from reaching the head's dashboard on TCP {dashboard}: KubeRay v1.5.0 runs `ray job submit` there, so the job is never submitted; {}",
            policies_do(&blocking, "keeps", "keep"),
            cluster.name,
            fixes.join("; ")
        )
    });
}
