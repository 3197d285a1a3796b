//! Every Ray cluster is covered by a NetworkPolicy that admits the plan's ports between its pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::Findings;
use crate::ray::{
    ClusterSource, ClusterSpec, HEAD_GROUP_LABEL_VALUE, LABEL_CLUSTER, LABEL_GROUP,
    LABEL_IS_RAY_NODE, LABEL_NODE_TYPE, LABEL_ORIGINATED_FROM_CR_NAME, LABEL_ORIGINATED_FROM_CRD,
    Labels, NodeGroup, RayPod, Role, as_port,
};

pub const MISSING: &str = "network-policy/missing";
pub const BLOCKED_PORTS: &str = "network-policy/blocked-ports";
pub const WORKER_PORTS: &str = "network-policy/worker-ports";
pub const NOT_VERIFIED: &str = "network-policy/not-verified";
pub const UNCOVERS_CLUSTER: &str = "network-policy/uncovers-cluster";

/// The NetworkPolicies the engine may consult.
#[derive(Debug, Clone, Copy)]
pub enum NetworkPolicies<'a> {
    /// raygate cannot see the cluster's NetworkPolicies.
    Unknown,
    /// Every NetworkPolicy known to exist in the object's namespace (others are ignored).
    Known(&'a [Arc<NetworkPolicy>]),
}

type PodLabels<'a> = BTreeMap<&'a str, &'a str>;

/// The labels KubeRay will put on the pods of one group.
fn group_labels<'a>(cluster: &ClusterSpec<'a>, group: &NodeGroup<'a>) -> PodLabels<'a> {
    let mut labels = PodLabels::new();
    group.template_labels().for_each(|k, v| {
        labels.insert(k, v);
    });
    labels.insert(
        LABEL_NODE_TYPE,
        match group.role {
            Role::Head => "head",
            Role::Worker => "worker",
        },
    );
    labels.insert(LABEL_GROUP, group.name);
    labels.insert(LABEL_IS_RAY_NODE, "yes");
    match cluster.source {
        ClusterSource::RayCluster => {
            labels.insert(LABEL_CLUSTER, cluster.name);
        }
        ClusterSource::RayJob | ClusterSource::RayService => {
            labels.insert(LABEL_ORIGINATED_FROM_CR_NAME, cluster.name);
            labels.insert(
                LABEL_ORIGINATED_FROM_CRD,
                if cluster.source == ClusterSource::RayJob {
                    "RayJob"
                } else {
                    "RayService"
                },
            );
        }
        // The RayJob a RayCronJob creates gets a generated name.
        ClusterSource::RayCronJob => {
            labels.insert(LABEL_ORIGINATED_FROM_CRD, "RayJob");
        }
    }
    labels
}

fn selector_matches(selector: &LabelSelector, labels: &PodLabels<'_>) -> bool {
    let match_labels_ok = selector.match_labels.as_ref().is_none_or(|wanted| {
        wanted
            .iter()
            .all(|(k, v)| labels.get(k.as_str()) == Some(&v.as_str()))
    });
    let expressions_ok = selector
        .match_expressions
        .as_ref()
        .is_none_or(|expressions| {
            expressions.iter().all(|e| {
                let value = labels.get(e.key.as_str());
                let values = e.values.as_deref().unwrap_or_default();
                match e.operator.as_str() {
                    "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
                    "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
        });
    match_labels_ok && expressions_ok
}

/// Port intervals admitted by a set of rules; `all` when some rule admits every port.
#[derive(Default, Debug)]
struct Admitted {
    all: bool,
    ranges: Vec<(u32, u32)>,
    names: Vec<String>,
}

impl Admitted {
    fn add_ports(&mut self, ports: Option<&Vec<NetworkPolicyPort>>) {
        let Some(ports) = ports.filter(|p| !p.is_empty()) else {
            self.all = true;
            return;
        };
        for port in ports {
            if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            match &port.port {
                None => self.all = true,
                Some(IntOrString::Int(n)) => {
                    let from = u32::try_from(*n).unwrap_or(0);
                    let to = port
                        .end_port
                        .and_then(|e| u32::try_from(e).ok())
                        .unwrap_or(from);
                    self.ranges.push((from, to.max(from)));
                }
                Some(IntOrString::String(name)) => self.names.push(name.clone()),
            }
        }
    }

    fn covers(&self, from: u32, to: u32, name: Option<&str>) -> bool {
        if self.all || name.is_some_and(|n| self.names.iter().any(|x| x == n)) {
            return true;
        }
        let mut next = from;
        for &(a, b) in &self.ranges {
            if a <= next && next <= b {
                next = b + 1;
                if next > to {
                    return true;
                }
            }
        }
        false
    }
}

/// What must be open towards a group's pods.
struct Needed {
    label: String,
    from: u32,
    to: u32,
    name: Option<String>,
}

fn needed_for(role: Role, out: &Findings<'_>) -> Vec<Needed> {
    let plan = &out.policy().spec().ports;
    let planned = plan
        .planned
        .iter()
        .filter(|p| role == Role::Head || p.every_node)
        .map(|p| Needed {
            label: format!("{} ({})", p.port, p.name),
            from: p.port.into(),
            to: p.port.into(),
            name: Some(p.name.clone()),
        });
    let ranges = plan.node_ranges.iter().map(|r| Needed {
        label: format!("{}-{} ({})", r.from, r.to, r.ray_start_param),
        from: r.from.into(),
        to: r.to.into(),
        name: None,
    });
    planned.chain(ranges).collect()
}

/// The peers and ports of one ingress or egress rule.
type RuleView<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

fn has_type(policy: &NetworkPolicy, direction: Direction) -> bool {
    let spec = policy.spec.as_ref();
    match spec.and_then(|s| s.policy_types.as_ref()) {
        Some(types) => types.iter().any(|t| {
            t == match direction {
                Direction::Ingress => "Ingress",
                Direction::Egress => "Egress",
            }
        }),
        None => match direction {
            Direction::Ingress => true,
            Direction::Egress => spec.and_then(|s| s.egress.as_ref()).is_some(),
        },
    }
}

fn peer_admits(peer: &NetworkPolicyPeer, namespace: &str, labels: &PodLabels<'_>) -> bool {
    let namespace_ok = match &peer.namespace_selector {
        None => true,
        Some(selector) => {
            let mut ns = PodLabels::new();
            ns.insert("kubernetes.io/metadata.name", namespace);
            selector_matches(selector, &ns)
        }
    };
    let pods_ok = match &peer.pod_selector {
        None => peer.namespace_selector.is_some(),
        Some(selector) => selector_matches(selector, labels),
    };
    namespace_ok && pods_ok
}

/// Ports that `policies` (all selecting the pods at one end) admit to or from the pods
/// labelled `peer` in the same namespace, in one direction.
fn admitted_between(
    policies: &[&NetworkPolicy],
    direction: Direction,
    namespace: &str,
    peer: &PodLabels<'_>,
) -> Admitted {
    let mut admitted = Admitted::default();
    let restricting: Vec<&&NetworkPolicy> =
        policies.iter().filter(|p| has_type(p, direction)).collect();
    if restricting.is_empty() {
        admitted.all = true;
        return admitted;
    }
    for policy in restricting {
        let Some(spec) = &policy.spec else { continue };
        let rules: Vec<RuleView<'_>> = match direction {
            Direction::Ingress => spec
                .ingress
                .iter()
                .flatten()
                .map(|r| (r.from.as_ref(), r.ports.as_ref()))
                .collect(),
            Direction::Egress => spec
                .egress
                .iter()
                .flatten()
                .map(|r| (r.to.as_ref(), r.ports.as_ref()))
                .collect(),
        };
        for (peers, ports) in rules {
            let from_peer = peers
                .filter(|p| !p.is_empty())
                .is_none_or(|peers| peers.iter().any(|p| peer_admits(p, namespace, peer)));
            if from_peer {
                admitted.add_ports(ports);
            }
        }
    }
    // Sorted once here, so that `covers` can sweep the ranges in order for every port.
    admitted.ranges.sort_unstable();
    admitted
}

fn in_namespace<'p>(all: &'p [Arc<NetworkPolicy>], namespace: &str) -> Vec<&'p NetworkPolicy> {
    all.iter()
        .map(Arc::as_ref)
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .collect()
}

/// The policies among `in_namespace` whose podSelector selects pods labelled `labels`.
fn selecting<'p>(
    in_namespace: &[&'p NetworkPolicy],
    labels: &PodLabels<'_>,
) -> Vec<&'p NetworkPolicy> {
    in_namespace
        .iter()
        .copied()
        .filter(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.pod_selector
                    .as_ref()
                    .is_none_or(|selector| selector_matches(selector, labels))
            })
        })
        .collect()
}

/// How the policies of a namespace treat traffic towards one set of pods.
enum Coverage<'p> {
    /// No policy selects the pods.
    Unselected,
    Selected {
        /// The policies that select them.
        towards: Vec<&'p NetworkPolicy>,
        /// Needed ports some peer cannot reach, as labels.
        blocked: Vec<String>,
        /// Every port is open from every peer, in both directions.
        all_open: bool,
    },
}

fn coverage<'p>(
    in_namespace: &[&'p NetworkPolicy],
    namespace: &str,
    target: &PodLabels<'_>,
    peers: &[&PodLabels<'_>],
    needed: &[Needed],
) -> Coverage<'p> {
    let towards = selecting(in_namespace, target);
    if towards.is_empty() {
        return Coverage::Unselected;
    }
    let mut blocked: Vec<String> = Vec::new();
    let mut all_open = true;
    for source_labels in peers {
        let ingress = admitted_between(&towards, Direction::Ingress, namespace, source_labels);
        let egress = admitted_between(
            &selecting(in_namespace, source_labels),
            Direction::Egress,
            namespace,
            target,
        );
        all_open &= ingress.all && egress.all;
        for need in needed {
            let open = ingress.covers(need.from, need.to, need.name.as_deref())
                && egress.covers(need.from, need.to, need.name.as_deref());
            if !open && !blocked.contains(&need.label) {
                blocked.push(need.label.clone());
            }
        }
    }
    Coverage::Selected {
        towards,
        blocked,
        all_open,
    }
}

/// The quoted names of `policies`, for messages.
fn names(policies: &[&NetworkPolicy]) -> Vec<String> {
    policies
        .iter()
        .map(|p| format!("{:?}", p.metadata.name.as_deref().unwrap_or("")))
        .collect()
}

fn cluster_manages_its_own_policies(cluster: &ClusterSpec<'_>) -> bool {
    // KubeRay's own spec.networkPolicy makes the operator manage policies that admit
    // all traffic inside the cluster.
    cluster
        .spec
        .get("networkPolicy")
        .is_some_and(|v| !v.is_null())
}

pub fn check_cluster(
    cluster: &ClusterSpec<'_>,
    namespace: Option<&str>,
    policies: NetworkPolicies<'_>,
    out: &mut Findings<'_>,
) {
    if !out.enabled(MISSING) && !out.enabled(BLOCKED_PORTS) && !out.enabled(WORKER_PORTS) {
        return;
    }
    if cluster_manages_its_own_policies(cluster) {
        return;
    }
    let namespace = namespace.unwrap_or("default");
    let NetworkPolicies::Known(all) = policies else {
        out.report(
            NOT_VERIFIED,
            &cluster.path,
            format!(
                "could not verify a NetworkPolicy covers this cluster in namespace {namespace:?} (no cluster access)"
            ),
        );
        return;
    };
    let in_namespace = in_namespace(all, namespace);
    let groups: Vec<(NodeGroup<'_>, PodLabels<'_>)> = cluster
        .groups()
        .map(|g| {
            let labels = group_labels(cluster, &g);
            (g, labels)
        })
        .collect();
    let peers: Vec<&PodLabels<'_>> = groups.iter().map(|(_, labels)| labels).collect();
    let selector_hint = match cluster.source {
        ClusterSource::RayCluster => format!("{LABEL_CLUSTER}={}", cluster.name),
        ClusterSource::RayJob | ClusterSource::RayService => {
            format!("{LABEL_ORIGINATED_FROM_CR_NAME}={}", cluster.name)
        }
        ClusterSource::RayCronJob => "a label of the pod templates".to_owned(),
    };

    let mut worker_ports_reported = false;
    for (group, labels) in &groups {
        let needed = needed_for(group.role, out);
        let Coverage::Selected {
            towards,
            blocked,
            all_open,
        } = coverage(&in_namespace, namespace, labels, &peers, &needed)
        else {
            out.report(
                MISSING,
                &group.path,
                format!(
                    "no NetworkPolicy in namespace {namespace:?} selects the {}'s pods; create one selecting {selector_hint}",
                    group.describe()
                ),
            );
            continue;
        };
        if !blocked.is_empty() {
            out.report(
                BLOCKED_PORTS,
                &group.path,
                format!(
                    "NetworkPolicy {} blocks TCP {} to the {} from the cluster's own pods; admit them",
                    super::and_list(&names(&towards)),
                    super::and_list(&blocked),
                    group.describe()
                ),
            );
        }
        if !all_open && !worker_ports_reported {
            let params = group.ray_start_params();
            let range = params.and_then(|p| {
                Some((
                    as_port(p.get("min-worker-port")?)?,
                    as_port(p.get("max-worker-port")?)?,
                ))
            });
            let open = match range {
                Some((min, max)) => peers.iter().all(|source_labels| {
                    admitted_between(&towards, Direction::Ingress, namespace, source_labels)
                        .covers(min, max, None)
                }),
                None => false,
            };
            if !open {
                worker_ports_reported = true;
                let detail = match range {
                    Some((min, max)) => format!("worker ports {min}-{max} are not admitted"),
                    None => {
                        "min/max-worker-port are unset, so workers bind random ports".to_owned()
                    }
                };
                out.report(
                    WORKER_PORTS,
                    &group.path,
                    format!(
                        "Ray workers call each other directly but {detail}; admit all TCP between the cluster's pods"
                    ),
                );
            }
        }
    }
}

/// A Ray Pod at creation: some NetworkPolicy must select it and admit the plan's ports from
/// its own kind of pod and from the head. Only called once the cluster's policies are known.
pub fn check_pod(
    pod: &RayPod<'_>,
    labels: Labels<'_>,
    namespace: Option<&str>,
    policies: &[Arc<NetworkPolicy>],
    out: &mut Findings<'_>,
) {
    if !out.enabled(MISSING) && !out.enabled(BLOCKED_PORTS) {
        return;
    }
    let namespace = namespace.unwrap_or("default");
    let in_namespace = in_namespace(policies, namespace);
    let mut own = PodLabels::new();
    labels.for_each(|k, v| {
        own.insert(k, v);
    });
    let mut head = own.clone();
    head.insert(LABEL_NODE_TYPE, "head");
    head.insert(LABEL_GROUP, HEAD_GROUP_LABEL_VALUE);
    let needed = needed_for(pod.role, out);
    let root = json_patch::jsonptr::PointerBuf::new();
    let role = match pod.role {
        Role::Head => "head",
        Role::Worker => "worker",
    };
    match coverage(&in_namespace, namespace, &own, &[&own, &head], &needed) {
        Coverage::Unselected => out.report(
            MISSING,
            &root,
            format!(
                "no NetworkPolicy in namespace {namespace:?} selects this {role} Pod of cluster {:?}; create one selecting {LABEL_CLUSTER}={}; the operator retries denied Pods",
                pod.cluster, pod.cluster
            ),
        ),
        Coverage::Selected {
            towards, blocked, ..
        } if !blocked.is_empty() => out.report(
            BLOCKED_PORTS,
            &root,
            format!(
                "NetworkPolicy {} blocks TCP {} to this {role} Pod of cluster {:?} from the cluster's own pods; admit them",
                super::and_list(&names(&towards)),
                super::and_list(&blocked),
                pod.cluster
            ),
        ),
        Coverage::Selected { .. } => {}
    }
}

/// Parses the NetworkPolicies among a set of manifests.
pub fn from_manifest(value: &Value) -> Option<Arc<NetworkPolicy>> {
    if value.get("kind")?.as_str()? != "NetworkPolicy" {
        return None;
    }
    serde_json::from_value(value.clone()).ok().map(Arc::new)
}
