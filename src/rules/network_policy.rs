//! Every Ray cluster is covered by a NetworkPolicy that admits the plan's ports between its pods.

use crate::rule_id::RuleId;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use serde_json::Value;

mod generate;
mod kuberay_labels;
mod operator;
mod semantics;
mod submitter;

pub use generate::{GeneratedPolicy, MANAGED_BY, generate, selected_by_any, selecting_cluster};
use kuberay_labels::{cr_name_label, group_labels};
pub use kuberay_labels::{identifiers, kuberay_label_value, pod_labels};
use semantics::{
    Direction, PodLabels, admitted_between, egress_admits, in_namespace, labels_match, peer_admits,
    ports_admit, restricts, selecting,
};
pub use semantics::{NamespaceView, PolicyPod, connection_allowed};

use super::Findings;
use crate::policy::{DnsServers, ExternalAccess, PortPolicy, PortRange};
use crate::ray::{
    ClusterSource, ClusterSpec, HEAD_GROUP_LABEL_VALUE, LABEL_CLUSTER, LABEL_CR_NAME, LABEL_GROUP,
    LABEL_NODE_TYPE, Labels, NodeGroup, RayPod, Role, child,
};
use crate::ray_version::{Pin, RayOf, VersionFacts};

/// The findings that a cluster's NetworkPolicies cut traffic Ray needs: what a NetworkPolicy
/// change can newly cause, and what a Pod inherits from its cluster's view.
pub const CUTS: [RuleId; 6] = [
    RuleId::BlockedPorts,
    RuleId::WorkerPorts,
    RuleId::DnsEgress,
    RuleId::ApiserverEgress,
    RuleId::OperatorAccess,
    RuleId::SubmitterAccess,
];

/// The NetworkPolicies the engine may consult.
#[derive(Debug, Clone, Copy)]
pub enum NetworkPolicies<'a> {
    /// raygate cannot see the cluster's NetworkPolicies.
    Unknown,
    /// Every NetworkPolicy known to exist in the object's namespace (others are ignored).
    Known(&'a [Arc<NetworkPolicy>]),
}

/// Fills [`LABEL_CR_NAME`] into the pod templates of a cluster embedded in a RayJob,
/// RayService or RayCronJob, so that its Pods can be selected by a name the user knows.
fn fill_cr_name_label(cluster: &ClusterSpec<'_>, out: &mut Findings<'_>) {
    let Some(name) = cr_name_label(cluster) else {
        return;
    };
    if !out.enabled(RuleId::PodLabel) {
        return;
    }
    for group in cluster.groups() {
        let Some(template) = group.spec.get("template").filter(|t| t.is_object()) else {
            continue;
        };
        let template_path = child(&group.path, "template");
        let metadata = template.get("metadata");
        let labels = metadata.and_then(|m| m.get("labels"));
        let (path, value) = match (metadata, labels) {
            (None, _) => (
                child(&template_path, "metadata"),
                serde_json::json!({"labels": {LABEL_CR_NAME: name}}),
            ),
            (Some(m), None) if m.is_object() => (
                child(&child(&template_path, "metadata"), "labels"),
                serde_json::json!({LABEL_CR_NAME: name}),
            ),
            (Some(_), Some(l)) if l.is_object() && l.get(LABEL_CR_NAME).is_none() => (
                child(
                    &child(&child(&template_path, "metadata"), "labels"),
                    LABEL_CR_NAME,
                ),
                Value::String(name.to_owned()),
            ),
            _ => continue,
        };
        out.report_fillable(
            RuleId::PodLabel,
            &path,
            || format!(
                "Pods of the {} carry only a generated ray.io/cluster name (KubeRay v1.5.0); add label {LABEL_CR_NAME}: {name} to its pod template so a NetworkPolicy can select them",
                group.describe()
            ),
        );
        out.fill(path, value);
    }
}

/// What must be open towards a group's pods.
struct Needed {
    /// How messages name it, e.g. `8301-8400 (object-manager-port)`.
    label: String,
    /// What listens there, e.g. `object-manager-port`.
    what: String,
    from: u32,
    to: u32,
    name: Option<String>,
    /// `network-policy/worker-ports` for the worker-process range, else `blocked-ports`.
    rule: RuleId,
}

impl Needed {
    /// The NetworkPolicy port entry that admits it.
    fn entry(&self) -> String {
        if self.from == self.to {
            format!("{{protocol: TCP, port: {}}}", self.from)
        } else {
            format!(
                "{{protocol: TCP, port: {}, endPort: {}}}",
                self.from, self.to
            )
        }
    }
}

/// Every port a node of `role` running `ray` listens on between the pods of a cluster: the
/// planned ports, the node ports that Ray opens, the per-node ranges and the worker-process
/// range (Ray's own when the plan has none).
fn needed_for(
    role: Role,
    declared: &[(String, u32)],
    plan: &PortPolicy,
    ray: &VersionFacts,
) -> Vec<Needed> {
    // A named port in a policy admits a port only as the destination Pod declares it: that
    // name, that number, TCP.
    let single = |port: u16, name: &str, rule| Needed {
        label: format!("{port} ({name})"),
        what: name.to_owned(),
        from: port.into(),
        to: port.into(),
        name: declared
            .iter()
            .find(|(_, number)| *number == u32::from(port))
            .map(|(declared_name, _)| declared_name.clone()),
        rule,
    };
    let planned = plan
        .planned
        .iter()
        .filter(|p| role == Role::Head || p.every_node)
        .map(|p| single(p.port, &p.name, RuleId::BlockedPorts));
    let node_ports = plan
        .node_ports
        .iter()
        .filter(|p| ray.pin(&p.ray_start_param, role == Role::Head) == Pin::Applies)
        .map(|p| single(p.port, &p.name, RuleId::BlockedPorts));
    let ranges = plan.node_ranges.iter().map(|r| Needed {
        label: format!("{}-{} ({})", r.from, r.to, r.ray_start_param),
        what: r.ray_start_param.clone(),
        from: r.from.into(),
        to: r.to.into(),
        name: None,
        rule: RuleId::BlockedPorts,
    });
    let workers = plan.worker_ports.unwrap_or(PortRange {
        from: ray.worker_ports.from,
        to: ray.worker_ports.to,
    });
    let workers = Needed {
        label: format!("{workers} (worker processes)"),
        what: "worker processes".to_owned(),
        from: workers.from.into(),
        to: workers.to.into(),
        name: None,
        rule: RuleId::WorkerPorts,
    };
    planned
        .chain(node_ports)
        .chain(ranges)
        .chain(std::iter::once(workers))
        .collect()
}

/// The named TCP container ports of a pod spec, as named-port rules resolve them.
fn declared_tcp_ports(pod: Option<&Value>) -> Vec<(String, u32)> {
    pod.and_then(|p| p.get("containers"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("ports").and_then(Value::as_array))
        .flatten()
        .filter(|p| {
            p.get("protocol")
                .and_then(Value::as_str)
                .is_none_or(|p| p == "TCP")
        })
        .filter_map(|p| {
            let name = p.get("name").and_then(Value::as_str)?;
            let number = p.get("containerPort").and_then(crate::ray::as_port)?;
            Some((name.to_owned(), number))
        })
        .collect()
}

/// A needed port that some peer cannot reach, and in which direction it is cut.
struct Blocked {
    /// Index into the `needed` list.
    need: usize,
    ingress: bool,
    egress: bool,
}

/// How the policies of a namespace treat traffic towards one set of pods.
struct Coverage<'p> {
    /// The policies that select them; none leaves their ingress open.
    towards: Vec<&'p NetworkPolicy>,
    /// The policies selecting some peer that cut its egress towards them.
    from: Vec<&'p NetworkPolicy>,
    blocked: Vec<Blocked>,
}

/// `single_pod`: the target is one Pod (the head), whose traffic to itself is never blocked.
fn coverage<'p>(
    in_namespace: &[&'p NetworkPolicy],
    namespace: &NamespaceView<'_>,
    target: &PodLabels<'_>,
    peers: &[&PodLabels<'_>],
    needed: &[Needed],
    single_pod: bool,
) -> Coverage<'p> {
    let towards = selecting(in_namespace, target);
    let mut blocked: Vec<Blocked> = Vec::new();
    let mut from: Vec<&NetworkPolicy> = Vec::new();
    for source_labels in peers {
        if single_pod && std::ptr::eq(*source_labels, target) {
            continue;
        }
        namespace.unknown_seen.set(false);
        let ingress = admitted_between(&towards, Direction::Ingress, namespace, source_labels);
        let source_policies = selecting(in_namespace, source_labels);
        let egress = admitted_between(&source_policies, Direction::Egress, namespace, target);
        // Offline, a namespaceSelector on labels raygate cannot see: judged again assuming it
        // matches; a port open only then is reported as unverified, not as blocked.
        let assumed = namespace.unknown_seen.get().then(|| {
            namespace.assuming(|| {
                (
                    admitted_between(&towards, Direction::Ingress, namespace, source_labels),
                    admitted_between(&source_policies, Direction::Egress, namespace, target),
                )
            })
        });
        for (i, need) in needed.iter().enumerate() {
            let name = need.name.as_deref();
            let cut_in = !ingress.covers(need.from, need.to, name);
            let cut_out = !egress.covers(need.from, need.to, name);
            if !cut_in && !cut_out {
                continue;
            }
            if let Some((ingress, egress)) = &assumed
                && ingress.covers(need.from, need.to, name)
                && egress.covers(need.from, need.to, name)
            {
                namespace.guessed.set(true);
                continue;
            }
            if cut_out {
                for policy in source_policies
                    .iter()
                    .filter(|p| restricts(p, Direction::Egress))
                {
                    if !from.iter().any(|f| std::ptr::eq(*f, *policy)) {
                        from.push(policy);
                    }
                }
            }
            match blocked.iter_mut().find(|b| b.need == i) {
                Some(b) => {
                    b.ingress |= cut_in;
                    b.egress |= cut_out;
                }
                None => blocked.push(Blocked {
                    need: i,
                    ingress: cut_in,
                    egress: cut_out,
                }),
            }
        }
    }
    Coverage {
        towards,
        from,
        blocked,
    }
}

/// The quoted names of `policies`, for messages.
fn names(policies: &[&NetworkPolicy]) -> Vec<String> {
    policies
        .iter()
        .map(|p| format!("{:?}", p.metadata.name.as_deref().unwrap_or("")))
        .collect()
}

/// `NetworkPolicy "a" blocks` or `NetworkPolicies "a" and "b" block`.
fn policies_do(policies: &[&NetworkPolicy], one: &str, several: &str) -> String {
    let listed = super::and_list(&names(policies));
    if policies.len() > 1 {
        format!("NetworkPolicies {listed} {several}")
    } else {
        format!("NetworkPolicy {listed} {one}")
    }
}

/// One needed port cut somewhere in a cluster, gathered over its groups.
struct Cut<'a> {
    need: Needed,
    groups: Vec<String>,
    path: json_patch::jsonptr::PointerBuf,
    ingress: Vec<&'a NetworkPolicy>,
    egress: Vec<&'a NetworkPolicy>,
}

fn add_unique<'a>(list: &mut Vec<&'a NetworkPolicy>, more: &[&'a NetworkPolicy]) {
    for policy in more {
        if !list.iter().any(|p| std::ptr::eq(*p, *policy)) {
            list.push(policy);
        }
    }
}

/// The rules a cluster's NetworkPolicies are judged by.
const CLUSTER_RULES: [RuleId; 8] = [
    RuleId::NetworkPolicyMissing,
    RuleId::BlockedPorts,
    RuleId::WorkerPorts,
    RuleId::DnsEgress,
    RuleId::ApiserverEgress,
    RuleId::ExternalAccess,
    RuleId::OperatorAccess,
    RuleId::SubmitterAccess,
];

/// What every group of a cluster is judged against.
struct ClusterScope<'a, 'p> {
    cluster: &'a ClusterSpec<'a>,
    namespace: &'a NamespaceView<'a>,
    in_namespace: &'a [&'p NetworkPolicy],
    /// The labels of each group's pods, in the order of the groups.
    pods: &'a [&'a PodLabels<'a>],
    /// The label a NetworkPolicy selects the cluster's Pods by, when there is one.
    cluster_label: Option<(&'a str, &'a str)>,
    /// How messages say to select the cluster's pods.
    selector_hint: String,
}

/// What the groups' coverage gathers for the cluster-wide findings.
struct Gathered<'p> {
    /// Each needed port cut somewhere, in the order first found.
    cuts: Vec<Cut<'p>>,
    /// Each group whose egress some policy restricts, with those policies.
    egress_restricted: Vec<(String, Vec<&'p NetworkPolicy>)>,
}

pub fn check_cluster(
    cluster: &ClusterSpec<'_>,
    namespace: Option<&str>,
    namespace_labels: Option<&BTreeMap<String, String>>,
    policies: NetworkPolicies<'_>,
    out: &mut Findings<'_>,
) {
    fill_cr_name_label(cluster, out);
    if !CLUSTER_RULES.iter().any(|&r| out.enabled(r)) {
        return;
    }
    // KubeRay v1.5.0 has no spec.networkPolicy; a later operator creates policies from it
    // behind an alpha gate. Either way the policies that exist are judged like any other.
    let namespace = namespace.unwrap_or("default");
    let NetworkPolicies::Known(all) = policies else {
        out.report(
            RuleId::NotVerified,
            &cluster.path,
            || format!(
                "could not verify a NetworkPolicy covers this cluster in namespace {namespace:?} (no cluster access)"
            ),
        );
        return;
    };
    let in_namespace = in_namespace(all, namespace);
    let namespace_view = NamespaceView::new(namespace, namespace_labels);
    let ids = identifiers(cluster.name);
    let groups: Vec<(NodeGroup<'_>, PodLabels<'_>)> = cluster
        .groups()
        .map(|g| {
            let labels = group_labels(cluster, &g, &ids);
            (g, labels)
        })
        .collect();
    let peers: Vec<&PodLabels<'_>> = groups.iter().map(|(_, labels)| labels).collect();
    let cluster_label = cluster_label(cluster);
    let scope = ClusterScope {
        cluster,
        namespace: &namespace_view,
        in_namespace: &in_namespace,
        pods: &peers,
        cluster_label,
        selector_hint: cluster_label.map_or_else(
            || "a label of its pod templates".to_owned(),
            |(key, value)| format!("{key}={value}"),
        ),
    };

    let mut gathered = Gathered {
        cuts: Vec::new(),
        egress_restricted: Vec::new(),
    };
    for (group, labels) in &groups {
        if out.out_of_time() {
            return;
        }
        check_group(&scope, group, labels, &mut gathered, out);
    }
    report_cuts(&scope, gathered.cuts, out);
    if let Some((head, _)) = groups.iter().find(|(g, _)| g.role == Role::Head) {
        operator::check(
            cluster,
            head,
            namespace,
            namespace_labels,
            &in_namespace,
            out,
        );
        submitter::check(
            cluster,
            head,
            namespace,
            namespace_labels,
            &in_namespace,
            out,
        );
    }
    check_dns_egress(cluster, &gathered.egress_restricted, out);
    report_guess(&namespace_view, &cluster.path, out);
}

/// The label a NetworkPolicy selects the cluster's Pods by, when there is one: `ray.io/cluster`
/// of a RayCluster (KubeRay always sets it), else the `raygate.dev/ray-cr-name` every group's
/// Pods carry, a value the user chose (or a RayCronJob's RayJob inherited) or raygate's fill.
fn cluster_label<'a>(cluster: &ClusterSpec<'a>) -> Option<(&'static str, &'a str)> {
    if cluster.source == ClusterSource::RayCluster {
        return Some((LABEL_CLUSTER, cluster.name));
    }
    let filled = cr_name_label(cluster);
    let mut value: Option<&'a str> = None;
    for group in cluster.groups() {
        let own = group
            .spec
            .get("labels")
            .and_then(|l| l.get(LABEL_CR_NAME))
            .and_then(Value::as_str);
        let label = own
            .or_else(|| group.template_labels().get(LABEL_CR_NAME))
            .or(filled)?;
        if value.is_some_and(|v| v != label) {
            return None;
        }
        value = Some(label);
    }
    Some((LABEL_CR_NAME, value?))
}

/// One group's pods: a policy selects them, and the ports they need are gathered where the
/// policies cut them; its own egress, the API server and the named namespaces are checked.
fn check_group<'p>(
    scope: &ClusterScope<'_, 'p>,
    group: &NodeGroup<'_>,
    labels: &PodLabels<'_>,
    gathered: &mut Gathered<'p>,
    out: &mut Findings<'_>,
) {
    let declared = declared_tcp_ports(group.spec.pointer("/template/spec"));
    let ray = scope
        .cluster
        .ray_of(group, out.policy().spec().default_ray_version);
    let needed = needed_for(group.role, &declared, &out.policy().spec().ports, ray.facts);
    let Coverage {
        towards,
        from,
        blocked,
    } = coverage(
        scope.in_namespace,
        scope.namespace,
        labels,
        scope.pods,
        &needed,
        group.role == Role::Head,
    );
    // Unselected pods take any ingress, but the other groups' egress may still cut them.
    if towards.is_empty() {
        out.report(RuleId::NetworkPolicyMissing, &group.path, || {
            format!(
                "no NetworkPolicy selects the {}'s pods; create one selecting {} in namespace {:?}",
                group.describe(),
                scope.selector_hint,
                scope.namespace.name
            )
        });
    }
    let restricting: Vec<&NetworkPolicy> = towards
        .iter()
        .copied()
        .filter(|p| restricts(p, Direction::Egress))
        .collect();
    if !restricting.is_empty() {
        gathered
            .egress_restricted
            .push((group.describe(), restricting.clone()));
    }
    if group.role == Role::Head {
        check_apiserver_egress(scope.cluster, group, &restricting, out);
    }
    if !towards.is_empty() {
        check_external_access(group, &towards, out);
    }
    gathered.add_cuts(group, needed, blocked, &towards, &from);
}

impl<'p> Gathered<'p> {
    /// Adds the needed ports cut towards `group` to their cuts across the cluster, with the
    /// policies that cut them: `towards` its ingress, `from` the peers' egress.
    fn add_cuts(
        &mut self,
        group: &NodeGroup<'_>,
        needed: Vec<Needed>,
        blocked: Vec<Blocked>,
        towards: &[&'p NetworkPolicy],
        from: &[&'p NetworkPolicy],
    ) {
        let mut needed: Vec<Option<Needed>> = needed.into_iter().map(Some).collect();
        for b in blocked {
            let Some(need) = needed[b.need].take() else {
                continue;
            };
            let cut = match self.cuts.iter_mut().find(|c| c.need.label == need.label) {
                Some(cut) => cut,
                None => {
                    self.cuts.push(Cut {
                        need,
                        groups: Vec::new(),
                        path: group.path.clone(),
                        ingress: Vec::new(),
                        egress: Vec::new(),
                    });
                    self.cuts.last_mut().expect("just pushed")
                }
            };
            cut.groups.push(group.describe());
            if b.ingress {
                add_unique(&mut cut.ingress, towards);
            }
            if b.egress {
                add_unique(&mut cut.egress, from);
            }
        }
    }
}

/// One finding per needed port cut somewhere in the cluster, with its fix.
fn report_cuts(scope: &ClusterScope<'_, '_>, cuts: Vec<Cut<'_>>, out: &mut Findings<'_>) {
    for cut in cuts {
        let mut policies = cut.ingress.clone();
        add_unique(&mut policies, &cut.egress);
        let why = if cut.need.rule == RuleId::WorkerPorts {
            "; tasks, actors and object transfers between nodes time out without it (every measured Ray)"
        } else {
            ""
        };
        out.report(cut.need.rule, &cut.path, || {
            format!(
                "{} TCP {} between the cluster's pods (to the {}){why}; {}",
                policies_do(&policies, "blocks", "block"),
                cut.need.label,
                super::and_list(&cut.groups),
                hint(&cut, scope.cluster_label, scope.namespace, scope.pods),
            )
        });
    }
}

/// The fix for a needed port the cluster's policies cut, for each policy that restricts the
/// direction it is cut in: when some rule of the policy admits the port, its peers are what
/// block, so the cluster's pods are added to them; when a rule's peers already hold every pod
/// of the cluster, the port is added to its ports; otherwise (no rule, or none of either kind)
/// a rule for the cluster's pods is added. Rules are numbered from 1 in their list.
fn hint(
    cut: &Cut<'_>,
    cluster_label: Option<(&str, &str)>,
    namespace: &NamespaceView<'_>,
    cluster_pods: &[&PodLabels<'_>],
) -> String {
    let selector = cluster_label.map_or_else(
        || "<a label of the cluster's pods>".to_owned(),
        |(key, value)| format!("{key}: {value}"),
    );
    let peer = format!("{{podSelector: {{matchLabels: {{{selector}}}}}}}");
    let need = &cut.need;
    // The destination's declared port for a single needed port, as named rules see it.
    let declared: Vec<(String, u16, String)> = need
        .name
        .iter()
        .filter_map(|n| Some((n.clone(), u16::try_from(need.from).ok()?, "TCP".to_owned())))
        .collect();
    let admits_port = |ports: Option<&Vec<NetworkPolicyPort>>| {
        ports.filter(|p| !p.is_empty()).is_none_or(|ports| {
            ports.iter().any(|entry| {
                (need.from..=need.to).all(|port| {
                    u16::try_from(port)
                        .is_ok_and(|port| semantics::port_matches(entry, port, "TCP", &declared))
                })
            })
        })
    };
    let holds_cluster = |peers: Option<&Vec<NetworkPolicyPeer>>| {
        peers.filter(|p| !p.is_empty()).is_none_or(|peers| {
            cluster_pods
                .iter()
                .all(|pod| peers.iter().any(|p| peer_admits(p, namespace, pod)))
        })
    };
    let mut fixes = Vec::new();
    for (policies, direction, name, field) in [
        (&cut.ingress, Direction::Ingress, "ingress", "from"),
        (&cut.egress, Direction::Egress, "egress", "to"),
    ] {
        for policy in policies.iter().filter(|p| restricts(p, direction)) {
            let policy_name = policy.metadata.name.as_deref().unwrap_or("");
            let rules = semantics::rules(policy, direction);
            let numbered = |test: &dyn Fn(&semantics::Rule<'_>) -> bool| {
                rules.iter().position(test).map(|i| i + 1)
            };
            fixes.push(if let Some(n) = numbered(&|(_, ports)| admits_port(*ports)) {
                format!(
                    "{name} rule {n} of NetworkPolicy {policy_name:?} admits the port but not from the cluster's pods: add `{peer}` to its {field}"
                )
            } else if let Some(n) = numbered(&|(peers, _)| holds_cluster(*peers)) {
                format!(
                    "add `- {}` to the ports of {name} rule {n} of NetworkPolicy {policy_name:?}",
                    need.entry()
                )
            } else if rules.is_empty() {
                format!(
                    "add to NetworkPolicy {policy_name:?} an {name} rule `- {{{field}: [{peer}]}}` (no ports: every port between the cluster's pods)"
                )
            } else {
                format!(
                    "add to NetworkPolicy {policy_name:?} an {name} rule `- {{{field}: [{peer}], ports: [{}]}}`",
                    need.entry()
                )
            });
        }
    }
    fixes.join("; ")
}

/// Offline, a `namespaceSelector` on labels other than the namespace's name cannot be
/// judged: it was assumed to match, and this says so.
fn report_guess(
    namespace: &NamespaceView<'_>,
    path: &json_patch::jsonptr::PointerBuf,
    out: &mut Findings<'_>,
) {
    if namespace.guessed.get() {
        out.report(
            RuleId::NotVerified,
            path,
            || format!(
                "a NetworkPolicy selects peers by labels of namespace {:?} that raygate cannot see here (no cluster access); they were assumed to match",
                namespace.name
            ),
        );
    }
}

/// Whether a peer of an egress rule can reach the cluster's DNS: its Pods (their namespace by
/// name, their labels; an empty podSelector too), or an ipBlock of every address or of one
/// of the DNS addresses the policy names; `None` when it selects the namespace by labels
/// raygate cannot see, or is another ipBlock.
fn peer_reaches_dns(peer: &NetworkPolicyPeer, dns: &DnsServers) -> Option<bool> {
    if let Some(block) = &peer.ip_block {
        let except = block.except.as_deref().unwrap_or_default();
        if semantics::block_is_empty(&block.cidr, except) {
            return Some(false);
        }
        let everything = matches!(block.cidr.as_str(), "0.0.0.0/0" | "::/0");
        let holds_address = dns.addresses.iter().any(|cidr| {
            cidr.split_once('/')
                .and_then(|(address, _)| address.parse().ok())
                .is_some_and(|ip| semantics::ip_in_block(ip, &block.cidr, except))
        });
        // The DNS Pods' addresses are not known here: only those blocks are sure.
        return ((everything && except.is_empty()) || holds_address).then_some(true);
    }
    let Some(namespaces) = &peer.namespace_selector else {
        // Pods of the policy's own namespace: not the cluster's DNS.
        return Some(false);
    };
    let pods_ok = peer.pod_selector.as_ref().is_none_or(|s| {
        semantics::selector_matches(s, |k| dns.pod_labels.get(k).map(String::as_str))
    });
    if !pods_ok || dns.pod_labels.is_empty() {
        return Some(false);
    }
    // Only the namespace's name is known here: a selector on its other labels is unknown.
    let view = NamespaceView::new(&dns.namespace, None);
    if view.selected_by(namespaces) {
        Some(true)
    } else if view.unknown_seen.get() {
        None
    } else {
        Some(false)
    }
}

/// The egress rule that reaches the cluster's DNS, as fixes write it.
fn dns_rule_hint(dns: &DnsServers) -> String {
    let mut peers: Vec<String> = Vec::new();
    if !dns.pod_labels.is_empty() {
        peers.push(format!(
            "{{namespaceSelector: {{matchLabels: {{{}: {}}}}}, podSelector: {{matchLabels: {}}}}}",
            semantics::NAMESPACE_NAME_LABEL,
            dns.namespace,
            operator::match_labels(&dns.pod_labels)
        ));
    }
    peers.extend(
        dns.addresses
            .iter()
            .map(|cidr| format!("{{ipBlock: {{cidr: {cidr}}}}}")),
    );
    format!(
        "`- to: [{}]` with `ports: [{{protocol: UDP, port: {port}}}, {{protocol: TCP, port: {port}}}]`",
        peers.join(", "),
        port = dns.port
    )
}

/// How messages name the cluster's DNS.
fn describe_dns(dns: &DnsServers) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !dns.pod_labels.is_empty() {
        let labels: Vec<String> = dns
            .pod_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.push(format!("Pods ({}, {})", dns.namespace, labels.join(", ")));
    }
    if !dns.addresses.is_empty() {
        parts.push(super::and_list(&dns.addresses));
    }
    parts.join(" or ")
}

/// Workers reach the head through its Service name, so every group whose egress is
/// restricted must still reach the cluster's DNS Pods, by its own policies.
fn check_dns_egress(
    cluster: &ClusterSpec<'_>,
    restricted_groups: &[(String, Vec<&NetworkPolicy>)],
    out: &mut Findings<'_>,
) {
    if restricted_groups.is_empty() || !out.enabled(RuleId::DnsEgress) {
        return;
    }
    let dns = &out.policy().spec().network_policy.dns;
    let mut lacking: Vec<String> = Vec::new();
    let mut unverified: Vec<String> = Vec::new();
    let mut policies: Vec<&NetworkPolicy> = Vec::new();
    for (group, restricting) in restricted_groups {
        let unknown = std::cell::Cell::new(false);
        // CoreDNS's container ports are named `dns` (UDP) and `dns-tcp`.
        let missing: Vec<String> = [("UDP", "dns"), ("TCP", "dns-tcp")]
            .into_iter()
            .filter(|(protocol, name)| {
                let reaches = |peer: &NetworkPolicyPeer| match peer_reaches_dns(peer, dns) {
                    Some(known) => known,
                    None => {
                        unknown.set(true);
                        false
                    }
                };
                !egress_admits(restricting, protocol, dns.port.into(), &[name], reaches)
            })
            .map(|(protocol, _)| format!("{protocol} {}", dns.port))
            .collect();
        if missing.is_empty() {
            continue;
        }
        add_unique(&mut policies, restricting);
        if unknown.get() {
            unverified.push(group.clone());
        } else {
            lacking.push(format!("{group} ({})", super::and_list(&missing)));
        }
    }
    if !lacking.is_empty() {
        out.report(
            RuleId::DnsEgress,
            &cluster.path,
            || format!(
                "{} egress of the cluster's pods but not to the cluster's DNS {} for the {}, so workers cannot resolve the head Service; add to each such policy an egress rule {}",
                policies_do(&policies, "restricts", "restrict"),
                describe_dns(dns),
                super::and_list(&lacking),
                dns_rule_hint(dns)
            ),
        );
    }
    if !unverified.is_empty() {
        out.report(
            RuleId::NotVerified,
            &cluster.path,
            || format!(
                "could not verify that the {} reach DNS: their egress rules select {} by labels raygate cannot see offline, or addresses it does not know; select it by kubernetes.io/metadata.name: {}",
                super::and_list(&unverified),
                dns.namespace,
                dns.namespace
            ),
        );
    }
}

/// The in-tree autoscaler runs beside the head and calls the API server.
fn check_apiserver_egress(
    cluster: &ClusterSpec<'_>,
    head: &NodeGroup<'_>,
    restricting: &[&NetworkPolicy],
    out: &mut Findings<'_>,
) {
    let autoscaling = cluster
        .spec
        .get("enableInTreeAutoscaling")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !autoscaling || restricting.is_empty() || !out.enabled(RuleId::ApiserverEgress) {
        return;
    }
    // The API server is no pod: only an ipBlock (or no peer at all) can admit it.
    let ip_block = |peer: &NetworkPolicyPeer| peer.ip_block.is_some();
    if [443, 6443]
        .into_iter()
        .any(|port| egress_admits(restricting, "TCP", port, &["https"], ip_block))
    {
        return;
    }
    out.report(
        RuleId::ApiserverEgress,
        &head.path,
        || format!(
            "enableInTreeAutoscaling is true but {} the head's egress to the API server, so the autoscaler cannot scale; add an egress rule `- to: [{{ipBlock: {{cidr: <API server address>/32}}}}]` with `ports: [{{protocol: TCP, port: 443}}, {{protocol: TCP, port: 6443}}]` (most CNIs judge the endpoint's port after the Service's DNAT)",
            policies_do(restricting, "blocks", "block")
        ),
    );
}

/// Namespaces the policy names (Prometheus, notebooks) must reach planned ports of a group.
fn check_external_access(
    group: &NodeGroup<'_>,
    towards: &[&NetworkPolicy],
    out: &mut Findings<'_>,
) {
    let policy = out.policy();
    let accesses = &policy.spec().network_policy.external_access;
    if accesses.is_empty() || !out.enabled(RuleId::ExternalAccess) {
        return;
    }
    let restricting: Vec<&&NetworkPolicy> = towards
        .iter()
        .filter(|p| restricts(p, Direction::Ingress))
        .collect();
    if restricting.is_empty() {
        return;
    }
    for access in accesses {
        let namespace_labels: PodLabels<'_> = access
            .namespace_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let wanted = wanted_from_outside(group, access, &policy.spec().ports);
        let blocked = blocked_from_outside(&restricting, wanted, &namespace_labels);
        if blocked.is_empty() {
            continue;
        }
        let labels: Vec<String> = access
            .namespace_labels
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        out.report(
            RuleId::ExternalAccess,
            &group.path,
            || format!(
                "{} TCP {} to the {} from namespaces labelled {{{}}}; add an ingress rule `- from: [{{namespaceSelector: {{matchLabels: {{{}}}}}}}]` for those ports",
                policies_do(
                    &restricting.iter().map(|p| **p).collect::<Vec<_>>(),
                    "blocks",
                    "block"
                ),
                super::and_list(&blocked),
                group.describe(),
                labels.join(", "),
                labels.join(", ")
            ),
        );
    }
}

/// The ports of `group` that `access` names: planned ports the group's pods listen on, and
/// the head's own ports on the head.
fn wanted_from_outside<'a>(
    group: &NodeGroup<'_>,
    access: &'a ExternalAccess,
    ports: &'a PortPolicy,
) -> Vec<(&'a str, u16)> {
    access
        .ports
        .iter()
        .filter_map(|name| {
            let planned = ports
                .planned
                .iter()
                .find(|p| &p.name == name)
                .filter(|p| group.role == Role::Head || p.every_node)
                .map(|p| (p.name.as_str(), p.port));
            let head = ports
                .head_ports
                .iter()
                .find(|p| &p.name == name && group.role == Role::Head)
                .map(|p| (p.name.as_str(), p.port));
            planned.or(head)
        })
        .collect()
}

/// The `wanted` ports no ingress rule of `restricting` admits from any pod of a namespace
/// labelled `namespace_labels`, as messages name them.
fn blocked_from_outside(
    restricting: &[&&NetworkPolicy],
    wanted: Vec<(&str, u16)>,
    namespace_labels: &PodLabels<'_>,
) -> Vec<String> {
    // Any pod of such a namespace: its own labels are unknown.
    let admits_peer = |peer: &NetworkPolicyPeer| {
        peer.ip_block.is_some()
            || (peer
                .namespace_selector
                .as_ref()
                .is_some_and(|s| labels_match(s, namespace_labels))
                && peer.pod_selector.as_ref().is_none_or(|s| {
                    s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                        && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
                }))
    };
    wanted
        .into_iter()
        .filter(|(name, port)| {
            !restricting.iter().any(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.ingress.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|rule| {
                        rule.from
                            .as_ref()
                            .filter(|peers| !peers.is_empty())
                            .is_none_or(|peers| peers.iter().any(admits_peer))
                            && ports_admit(rule.ports.as_ref(), "TCP", (*port).into(), &[name])
                    })
            })
        })
        .map(|(name, port)| format!("{port} ({name})"))
        .collect()
}

/// A Ray Pod at creation: some NetworkPolicy must select it and admit the plan's ports from
/// its own kind of pod and from the head. Only called once the cluster's policies are known.
pub fn check_pod(
    pod: &RayPod<'_>,
    labels: Labels<'_>,
    namespace: Option<&str>,
    namespace_labels: Option<&BTreeMap<String, String>>,
    policies: &[Arc<NetworkPolicy>],
    out: &mut Findings<'_>,
) {
    if !out.enabled(RuleId::NetworkPolicyMissing)
        && !out.enabled(RuleId::BlockedPorts)
        && !out.enabled(RuleId::WorkerPorts)
    {
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
    let ray = RayOf::of_pod(pod.spec, out.policy().spec().default_ray_version);
    let needed = needed_for(
        pod.role,
        &declared_tcp_ports(Some(pod.spec)),
        &out.policy().spec().ports,
        ray.facts,
    );
    let root = json_patch::jsonptr::PointerBuf::new();
    let role = match pod.role {
        Role::Head => "head",
        Role::Worker => "worker",
    };
    let namespace_view = NamespaceView::new(namespace, namespace_labels);
    // A head Pod is its group's only Pod, and its traffic to itself is never blocked: it is
    // judged against a worker of its cluster (the live cluster, when known, adds every group).
    let mut worker = own.clone();
    worker.insert(LABEL_NODE_TYPE, "worker");
    worker.remove(LABEL_GROUP);
    let peers: Vec<&PodLabels<'_>> = match pod.role {
        Role::Head => vec![&worker],
        Role::Worker => vec![&own, &head],
    };
    let judged = coverage(
        &in_namespace,
        &namespace_view,
        &own,
        &peers,
        &needed,
        pod.role == Role::Head,
    );
    report_guess(&namespace_view, &root, out);
    if judged.towards.is_empty() {
        out.report(
            RuleId::NetworkPolicyMissing,
            &root,
            || format!(
                "no NetworkPolicy selects this {role} Pod of cluster {:?}; create one selecting {} in namespace {namespace:?}; the operator retries denied Pods",
                pod.cluster,
                pod_selector_hint(pod, &own)
            ),
        );
    }
    report_pod_cuts(pod, role, &needed, &judged, &root, out);
}

/// The label a NetworkPolicy selects a Ray Pod's cluster by.
fn pod_selector_hint(pod: &RayPod<'_>, own: &PodLabels<'_>) -> String {
    match own.get(LABEL_CR_NAME) {
        Some(name) => format!("{LABEL_CR_NAME}={name}"),
        None => format!("{LABEL_CLUSTER}={}", pod.cluster),
    }
}

/// One finding per rule for the needed ports the policies cut towards a Ray Pod.
fn report_pod_cuts(
    pod: &RayPod<'_>,
    role: &str,
    needed: &[Needed],
    judged: &Coverage<'_>,
    root: &json_patch::jsonptr::PointerBuf,
    out: &mut Findings<'_>,
) {
    for rule in [RuleId::BlockedPorts, RuleId::WorkerPorts] {
        let cut: Vec<&Needed> = judged
            .blocked
            .iter()
            .map(|b| &needed[b.need])
            .filter(|n| n.rule == rule)
            .collect();
        if cut.is_empty() {
            continue;
        }
        let mut policies = judged.towards.clone();
        add_unique(&mut policies, &judged.from);
        out.report(
            rule,
            root,
            || format!(
                "{} TCP {} to this {role} Pod of cluster {:?} from the cluster's own pods; admit {}",
                policies_do(&policies, "blocks", "block"),
                super::and_list(&cut.iter().map(|n| n.label.clone()).collect::<Vec<_>>()),
                pod.cluster,
                super::and_list(&cut.iter().map(|n| format!("`{}`", n.entry())).collect::<Vec<_>>())
            ),
        );
    }
}

/// Parses the NetworkPolicies among a set of manifests.
pub fn from_manifest(value: &Value) -> Option<Arc<NetworkPolicy>> {
    if value.get("kind")?.as_str()? != "NetworkPolicy" {
        return None;
    }
    serde_json::from_value(value.clone()).ok().map(Arc::new)
}
