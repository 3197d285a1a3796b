//! The labels KubeRay v1.5.0 gives a Ray cluster's Pods, which NetworkPolicies select them by.

use std::collections::BTreeMap;

use serde_json::Value;

use super::semantics::PodLabels;
use crate::ray::{
    ClusterSource, ClusterSpec, LABEL_CLUSTER, LABEL_CR_NAME, LABEL_GROUP, LABEL_IS_RAY_NODE,
    LABEL_NODE_TYPE, NodeGroup, Role,
};

/// The value of [`LABEL_CR_NAME`] for a cluster embedded in another object, when its name
/// fits in a label value.
pub fn cr_name_label<'a>(cluster: &ClusterSpec<'a>) -> Option<&'a str> {
    let name = cluster.name;
    let fits = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (cluster.source != ClusterSource::RayCluster && fits).then_some(name)
}

/// The labels KubeRay v1.5.0 gives the Pods of `group` (see [`group_labels`]).
pub fn pod_labels(cluster: &ClusterSpec<'_>, group: &NodeGroup<'_>) -> BTreeMap<String, String> {
    let ids = identifiers(cluster.name);
    group_labels(cluster, group, &ids)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `utils.CheckLabel` of KubeRay v1.5.0: a label value cut to its last 63 bytes, and a
/// leading punctuation mark replaced by `r`.
pub fn kuberay_label_value(value: &str) -> String {
    let mut value = value.as_bytes();
    if value.len() > 63 {
        value = &value[value.len() - 63..];
    }
    let mut text = String::from_utf8_lossy(value).into_owned();
    if text.starts_with(|c: char| c.is_ascii_punctuation()) {
        text.replace_range(..1, "r");
    }
    text
}

/// The `ray.io/identifier` values of a cluster's head and worker Pods.
pub fn identifiers(cluster_name: &str) -> [String; 2] {
    [
        kuberay_label_value(&format!("{cluster_name}-head")),
        kuberay_label_value(&format!("{cluster_name}-worker")),
    ]
}

/// The labels KubeRay v1.5.0 puts on the Pods of one group (`labelPod` over `mergeLabels`):
/// its own (`ray.io/is-ray-node`, `ray.io/identifier`, `app.kubernetes.io/name` and
/// `created-by`), overridden by the template's labels and then the group's `labels`, except
/// `ray.io/node-type`, `ray.io/group` and `ray.io/cluster`, which KubeRay always sets. A
/// generated cluster's name (RayJob, RayService) is unknown, and so are the labels made of it.
pub fn group_labels<'a>(
    cluster: &ClusterSpec<'a>,
    group: &NodeGroup<'a>,
    ids: &'a [String; 2],
) -> PodLabels<'a> {
    let mut labels = PodLabels::new();
    labels.insert(LABEL_IS_RAY_NODE, "yes");
    labels.insert("app.kubernetes.io/name", "kuberay");
    labels.insert("app.kubernetes.io/created-by", "kuberay-operator");
    if cluster.source == ClusterSource::RayCluster {
        labels.insert(LABEL_CLUSTER, cluster.name);
        let id = match group.role {
            Role::Head => &ids[0],
            Role::Worker => &ids[1],
        };
        labels.insert("ray.io/identifier", id.as_str());
    }
    // The label raygate fills into an embedded cluster's templates (a value already there
    // stays, below).
    if let Some(name) = cr_name_label(cluster) {
        labels.insert(LABEL_CR_NAME, name);
    }
    let mut overrides = PodLabels::new();
    group.template_labels().for_each(|k, v| {
        overrides.insert(k, v);
    });
    if let Some(own) = group.spec.get("labels").and_then(Value::as_object) {
        for (k, v) in own {
            if let Some(v) = v.as_str() {
                overrides.insert(k, v);
            }
        }
    }
    for (k, v) in overrides {
        if ![LABEL_NODE_TYPE, LABEL_GROUP, LABEL_CLUSTER].contains(&k) {
            labels.insert(k, v);
        }
    }
    labels.insert(
        LABEL_NODE_TYPE,
        match group.role {
            Role::Head => "head",
            Role::Worker => "worker",
        },
    );
    labels.insert(LABEL_GROUP, group.name);
    labels
}
