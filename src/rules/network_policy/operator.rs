//! The KubeRay operator reaches the head of a RayJob's or RayService's cluster.
//!
//! KubeRay v1.5.0 submits and follows a RayJob through the head Service's `dashboard` port,
//! puts a RayService's serveConfigV2 and reads its applications' status there, and checks the
//! head's Serve proxy on the head Pod's `serve` container port before putting the head behind
//! the serve Service. A plain RayCluster needs none of it.

use crate::rule_id::RuleId;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use json_patch::PatchOperation;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_json::Value;

use super::semantics::{
    self, Direction, NAMESPACE_NAME_LABEL, PolicyPod, connection_allowed, end_allows, restricts,
};
use super::{NamespaceView, policies_do};
use crate::policy::OperatorPod;
use crate::ray::{ClusterSource, ClusterSpec, LABEL_CLUSTER, LABEL_CR_NAME, NodeGroup, as_port};
use crate::rules::Findings;

/// KubeRay v1.5.0's port names and defaults (`utils.DashboardPortName`, `ServingPortName`).
const DASHBOARD: (&str, u16) = ("dashboard", 8265);
const SERVE: (&str, u16) = ("serve", 8000);

/// What the operator does with the cluster's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    Job,
    Service,
}

/// Whether the operator drives the cluster: a RayJob's (a RayCronJob makes RayJobs) or a
/// RayService's, or a RayCluster KubeRay generated from one.
fn workload(cluster: &ClusterSpec<'_>) -> Option<Workload> {
    match cluster.creator() {
        ClusterSource::RayJob => Some(Workload::Job),
        ClusterSource::RayService => Some(Workload::Service),
        ClusterSource::RayCluster | ClusterSource::RayCronJob => None,
    }
}

/// A declared container port: (name, number, protocol).
pub(super) type Declared = (String, u16, String);

fn declared(port: &Value) -> Option<Declared> {
    let name = port.get("name").and_then(Value::as_str)?;
    let number = port
        .get("containerPort")
        .and_then(as_port)
        .and_then(|n| u16::try_from(n).ok())?;
    let protocol = port
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("TCP");
    Some((name.to_owned(), number, protocol.to_owned()))
}

/// The named ports of the head's containers once the admission's patch is applied: the
/// declared ones, and those the ports rules fill into the Ray container (container 0).
/// The first list is the Ray container's, the second every container's.
pub(super) fn head_ports(
    head: &NodeGroup<'_>,
    fills: &[PatchOperation],
) -> (Vec<Declared>, Vec<Declared>) {
    let containers = head
        .spec
        .pointer("/template/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let ports_of = |c: &Value| -> Vec<Declared> {
        c.get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(declared)
            .collect()
    };
    let mut ray: Vec<Declared> = containers.first().map(ports_of).unwrap_or_default();
    let ray_ports = format!("{}/template/spec/containers/0/ports", head.path);
    let appended = format!("{ray_ports}/-");
    for fill in fills {
        let PatchOperation::Add(add) = fill else {
            continue;
        };
        let path = add.path.to_string();
        if path == appended {
            ray.extend(declared(&add.value));
        } else if path == ray_ports {
            ray.extend(
                add.value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(declared),
            );
        }
    }
    let mut all = ray.clone();
    for container in containers.iter().skip(1) {
        all.extend(ports_of(container));
    }
    (ray, all)
}

/// A port of the head the operator must reach.
pub(super) struct Wanted {
    pub(super) name: &'static str,
    pub(super) number: u16,
    /// Whether the head declares it by name, so a policy may admit it by name.
    named: bool,
}

impl Wanted {
    fn label(&self) -> String {
        format!("{} ({})", self.number, self.name)
    }

    /// The NetworkPolicy port entry that admits it.
    fn entry(&self) -> String {
        if self.named {
            format!("{{port: {}}}", self.name)
        } else {
            format!("{{protocol: TCP, port: {}}}", self.number)
        }
    }
}

/// A peer that matches no Pod (`In` an empty set never holds).
fn no_pod() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(no_selector()),
        ..NetworkPolicyPeer::default()
    }
}

fn no_selector() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "raygate.dev/never".to_owned(),
            operator: "In".to_owned(),
            values: Some(Vec::new()),
        }]),
        match_labels: None,
    }
}

/// A peer that matches every Pod of every namespace.
fn every_pod() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }
}

/// What the policies hold that raygate cannot judge here.
#[derive(Debug, Default)]
pub(super) struct Unknowns {
    /// A namespaceSelector on labels of the operator's namespace that are not known.
    pub(super) namespace: bool,
    /// An ipBlock other than every address or none: the Pods' addresses are not known.
    pub(super) ip_block: bool,
}

/// The policies that judge the connection: each with whether it selects the head (its
/// ingress rules count) and whether it selects the operator's Pod (its egress rules count).
pub(super) type Judging<'p> = Vec<(&'p NetworkPolicy, bool, bool)>;

/// `policies` with each peer of a rule that counts whose match cannot be known here replaced
/// by one that matches every Pod (`assume`) or none. Those peers are matched against the
/// operator's Pod (ingress of the head) or, in the operator's own namespace, the head (its
/// egress), so the namespace a selector is judged on is the operator's.
pub(super) fn resolved(
    policies: &Judging<'_>,
    namespace: &NamespaceView<'_>,
    assume: bool,
    unknowns: &mut Unknowns,
) -> Vec<NetworkPolicy> {
    let mut resolve = |peer: &mut NetworkPolicyPeer| {
        if let Some(block) = &peer.ip_block {
            let except = block.except.as_deref().unwrap_or_default();
            let matches = if semantics::block_is_empty(&block.cidr, except) {
                false
            } else if matches!(block.cidr.as_str(), "0.0.0.0/0" | "::/0") && except.is_empty() {
                true
            } else {
                unknowns.ip_block = true;
                assume
            };
            *peer = if matches { every_pod() } else { no_pod() };
            return;
        }
        if let Some(selector) = &peer.namespace_selector {
            namespace.unknown_seen.set(false);
            namespace.selected_by(selector);
            if namespace.unknown_seen.get() {
                unknowns.namespace = true;
                peer.namespace_selector = Some(if assume {
                    LabelSelector::default()
                } else {
                    no_selector()
                });
            }
        }
    };
    policies
        .iter()
        .map(|&(policy, ingress, egress)| {
            let mut policy = policy.clone();
            if let Some(spec) = policy.spec.as_mut() {
                if ingress {
                    for rule in spec.ingress.iter_mut().flatten() {
                        rule.from.iter_mut().flatten().for_each(&mut resolve);
                    }
                }
                if egress {
                    for rule in spec.egress.iter_mut().flatten() {
                        rule.to.iter_mut().flatten().for_each(&mut resolve);
                    }
                }
            }
            policy
        })
        .collect()
}

/// `{k: v, ...}` of a label map.
pub(super) fn match_labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// The peer that admits the operator's Pod in a policy of `namespace`.
fn operator_peer(operator: &OperatorPod, namespace: &str) -> String {
    let pods = if operator.pod_labels.is_empty() {
        "{}".to_owned()
    } else {
        format!("{{matchLabels: {}}}", match_labels(&operator.pod_labels))
    };
    if operator.namespace == namespace {
        return format!("{{podSelector: {pods}}}");
    }
    let namespaces = format!(
        "{{matchLabels: {{{NAMESPACE_NAME_LABEL}: {}}}}}",
        operator.namespace
    );
    if operator.pod_labels.is_empty() {
        format!("{{namespaceSelector: {namespaces}}}")
    } else {
        format!("{{namespaceSelector: {namespaces}, podSelector: {pods}}}")
    }
}

/// How messages name the operator's Pod.
fn describe(operator: &OperatorPod) -> String {
    let labels: Vec<String> = operator
        .pod_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if labels.is_empty() {
        format!("namespace {:?}", operator.namespace)
    } else {
        format!("namespace {:?}, {}", operator.namespace, labels.join(", "))
    }
}

/// Why the operator needs the cut ports.
fn why(workload: Workload, cut: &[&Wanted]) -> String {
    let mut reasons = Vec::new();
    if cut.iter().any(|w| w.name == DASHBOARD.0) {
        reasons.push(match workload {
            Workload::Job => {
                "KubeRay v1.5.0 follows the job on the dashboard (and submits it there in HTTPMode), so the RayJob never reaches a terminal state"
            }
            Workload::Service => {
                "KubeRay v1.5.0 puts serveConfigV2 and reads the applications' status on the dashboard, so the RayService never becomes Ready"
            }
        });
    }
    if cut.iter().any(|w| w.name == SERVE.0) {
        reasons.push(if reasons.is_empty() {
            "KubeRay v1.5.0 checks the head's Serve proxy on the serve port before putting the head behind the serve Service, so the head never serves"
        } else {
            "it checks the head's Serve proxy on the serve port before putting the head behind the serve Service, so the head never serves"
        });
    }
    reasons.join("; ")
}

/// The connection judged: the KubeRay operator's Pod to the head of a cluster it drives.
struct Connection<'a> {
    cluster: &'a ClusterSpec<'a>,
    head: &'a NodeGroup<'a>,
    head_labels: &'a BTreeMap<String, String>,
    /// The head's namespace.
    namespace: &'a str,
    operator: &'a OperatorPod,
    workload: Workload,
}

/// The policies of the head's namespace at each end of a connection to the head.
pub(super) struct Ends<'p> {
    /// Those selecting the head: their ingress rules count.
    pub(super) towards_head: Vec<&'p NetworkPolicy>,
    /// Those selecting the peer's Pod (the operator's, a submitter's) when it runs in the same
    /// namespace: their egress rules count.
    pub(super) from_peer: Vec<&'p NetworkPolicy>,
    pub(super) ingress_restricted: Vec<&'p NetworkPolicy>,
    pub(super) egress_restricted: Vec<&'p NetworkPolicy>,
}

/// The wanted ports the policies cut (even with every unknown peer assumed to match), and
/// those they admit only under that assumption.
pub(super) struct Verdicts<'w> {
    pub(super) cut_in: Vec<&'w Wanted>,
    pub(super) cut_out: Vec<&'w Wanted>,
    pub(super) unverified: Vec<&'w Wanted>,
}

/// The operator's Pod must reach the head on the dashboard port, and a RayService's head on
/// the serve port too, through the NetworkPolicies of `in_namespace` (the head's own; the
/// operator's egress counts when it runs in the same namespace). Only run once the policies
/// are known.
pub(super) fn check(
    cluster: &ClusterSpec<'_>,
    head: &NodeGroup<'_>,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
    in_namespace: &[&NetworkPolicy],
    out: &mut Findings<'_>,
) {
    let Some(operator) = out.policy().spec().network_policy.operator.as_ref() else {
        return;
    };
    let Some(workload) = workload(cluster) else {
        return;
    };
    if !out.enabled(RuleId::OperatorAccess) {
        return;
    }
    let head_labels = super::pod_labels(cluster, head);
    let same_namespace = operator.namespace == namespace;
    let ends = ends(
        in_namespace,
        &head_labels,
        &operator.pod_labels,
        same_namespace,
    );
    if ends.ingress_restricted.is_empty() && ends.egress_restricted.is_empty() {
        return;
    }
    let connection = Connection {
        cluster,
        head,
        head_labels: &head_labels,
        namespace,
        operator,
        workload,
    };

    let (ray_ports, all_ports) = head_ports(head, &out.fills);
    let wanted = wanted(workload, &ray_ports, &all_ports);

    // The operator's namespace: its name, and its labels when the context knows them.
    let known_labels = namespace_labels.filter(|_| same_namespace);
    let view = NamespaceView::new(&operator.namespace, known_labels);
    let mut namespaces: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    if let Some(labels) = known_labels {
        namespaces.insert(operator.namespace.clone(), labels.clone());
    }
    let relevant = judging(in_namespace, &ends);
    let mut unknowns = Unknowns::default();
    let strict = resolved(&relevant, &view, false, &mut unknowns);
    let assumed = (unknowns.namespace || unknowns.ip_block)
        .then(|| resolved(&relevant, &view, true, &mut Unknowns::default()));
    let lenient = assumed.as_deref().unwrap_or(&strict);
    let no_ports: Vec<Declared> = Vec::new();
    let from = PolicyPod {
        namespace: &operator.namespace,
        labels: &operator.pod_labels,
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        ports: &no_ports,
    };
    let to = PolicyPod {
        namespace,
        labels: &head_labels,
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        ports: &all_ports,
    };
    let verdicts = judge(&wanted, &strict, lenient, &namespaces, &from, &to);

    let who = describe(operator);
    if !verdicts.cut_in.is_empty() || !verdicts.cut_out.is_empty() {
        report_cut(&connection, &ends, &wanted, &verdicts, &who, out);
    }
    if !verdicts.unverified.is_empty() {
        report_unverified(&connection, &unknowns, &verdicts.unverified, &who, out);
    }
}

/// The policies at each end of a connection from a Pod labelled `peer_labels` to the head;
/// the peer's own policies count only in the head's namespace.
pub(super) fn ends<'p>(
    in_namespace: &[&'p NetworkPolicy],
    head_labels: &BTreeMap<String, String>,
    peer_labels: &BTreeMap<String, String>,
    same_namespace: bool,
) -> Ends<'p> {
    let selects = |policy: &NetworkPolicy, labels: &BTreeMap<String, String>| {
        semantics::selects(policy, |k| labels.get(k).map(String::as_str))
    };
    let towards_head: Vec<&NetworkPolicy> = in_namespace
        .iter()
        .copied()
        .filter(|p| selects(p, head_labels))
        .collect();
    let from_peer: Vec<&NetworkPolicy> = in_namespace
        .iter()
        .copied()
        .filter(|p| same_namespace && selects(p, peer_labels))
        .collect();
    let ingress_restricted: Vec<&NetworkPolicy> = towards_head
        .iter()
        .copied()
        .filter(|p| restricts(p, Direction::Ingress))
        .collect();
    let egress_restricted: Vec<&NetworkPolicy> = from_peer
        .iter()
        .copied()
        .filter(|p| restricts(p, Direction::Egress))
        .collect();
    Ends {
        towards_head,
        from_peer,
        ingress_restricted,
        egress_restricted,
    }
}

/// The head's ports the operator must reach for the cluster it drives (name and number, as
/// [`check`] judges them), none for a plain RayCluster.
pub(super) fn operator_ports(
    cluster: &ClusterSpec<'_>,
    head: &NodeGroup<'_>,
) -> Vec<(&'static str, u16)> {
    let Some(workload) = workload(cluster) else {
        return Vec::new();
    };
    let (ray_ports, all_ports) = head_ports(head, &[]);
    wanted(workload, &ray_ports, &all_ports)
        .into_iter()
        .map(|w| (w.name, w.number))
        .collect()
}

/// The ports of the head the operator must reach for `workload`, at the numbers the Ray
/// container declares them (else KubeRay's defaults).
pub(super) fn wanted(
    workload: Workload,
    ray_ports: &[Declared],
    all_ports: &[Declared],
) -> Vec<Wanted> {
    match workload {
        Workload::Job => vec![DASHBOARD],
        Workload::Service => vec![DASHBOARD, SERVE],
    }
    .into_iter()
    .map(|(name, default)| {
        let number = ray_ports
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(default, |(_, number, _)| *number);
        let named = all_ports
            .iter()
            .any(|(n, p, protocol)| n == name && *p == number && protocol == "TCP");
        Wanted {
            name,
            number,
            named,
        }
    })
    .collect()
}

/// The policies of `in_namespace` at either end, in their order.
pub(super) fn judging<'p>(in_namespace: &[&'p NetworkPolicy], ends: &Ends<'p>) -> Judging<'p> {
    in_namespace
        .iter()
        .copied()
        .map(|p| {
            let head = ends.towards_head.iter().any(|t| std::ptr::eq(*t, p));
            let peer = ends.from_peer.iter().any(|f| std::ptr::eq(*f, p));
            (p, head, peer)
        })
        .filter(|&(_, head, peer)| head || peer)
        .collect()
}

/// Each wanted port: admitted by the `strict` policies, only by the `lenient` ones
/// (unverified), or cut, and then at which end.
pub(super) fn judge<'w>(
    wanted: &'w [Wanted],
    strict: &[NetworkPolicy],
    lenient: &[NetworkPolicy],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    from: &PolicyPod<'_>,
    to: &PolicyPod<'_>,
) -> Verdicts<'w> {
    let mut verdicts = Verdicts {
        cut_in: Vec::new(),
        cut_out: Vec::new(),
        unverified: Vec::new(),
    };
    for want in wanted {
        let allowed = |policies: &[NetworkPolicy]| {
            connection_allowed(policies, namespaces, from, to, want.number, "TCP")
        };
        if allowed(strict) {
            continue;
        }
        if allowed(lenient) {
            verdicts.unverified.push(want);
            continue;
        }
        // What is cut even when every unknown peer is assumed to match.
        let end =
            |direction| end_allows(lenient, namespaces, direction, from, to, want.number, "TCP");
        if !end(Direction::Ingress) {
            verdicts.cut_in.push(want);
        }
        if !end(Direction::Egress) {
            verdicts.cut_out.push(want);
        }
    }
    verdicts
}

/// The ports cut, the policies that cut them and a rule for each end that does.
fn report_cut(
    connection: &Connection<'_>,
    ends: &Ends<'_>,
    wanted: &[Wanted],
    verdicts: &Verdicts<'_>,
    who: &str,
    out: &mut Findings<'_>,
) {
    let Verdicts {
        cut_in, cut_out, ..
    } = verdicts;
    let operator = connection.operator;
    let cut: Vec<&Wanted> = wanted
        .iter()
        .filter(|w| {
            [cut_in, cut_out]
                .iter()
                .any(|l| l.iter().any(|c| c.name == w.name))
        })
        .collect();
    let mut blocking: Vec<&NetworkPolicy> = Vec::new();
    let mut fixes: Vec<String> = Vec::new();
    let entries = |list: &[&Wanted]| {
        list.iter()
            .map(|w| w.entry())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !cut_in.is_empty() {
        super::add_unique(&mut blocking, &ends.ingress_restricted);
        fixes.push(format!(
            "add to NetworkPolicy {:?} an ingress rule `- {{from: [{}], ports: [{}]}}`",
            first_name(&ends.ingress_restricted),
            operator_peer(operator, connection.namespace),
            entries(cut_in)
        ));
    }
    if !cut_out.is_empty() {
        super::add_unique(&mut blocking, &ends.egress_restricted);
        fixes.push(format!(
            "add to NetworkPolicy {:?} an egress rule `- {{to: [{{podSelector: {{matchLabels: {{{}}}}}}}], ports: [{}]}}`",
            first_name(&ends.egress_restricted),
            head_selector(connection.cluster, connection.head_labels),
            entries(cut_out)
        ));
    }
    let direction = match (cut_in.is_empty(), cut_out.is_empty()) {
        (false, true) => "ingress",
        (true, false) => "egress",
        _ => "ingress and egress",
    };
    out.report(RuleId::OperatorAccess, &connection.head.path, || {
        format!(
            "{} {direction} from the KubeRay operator's Pod ({who}) to the head on TCP {}: {}; {}",
            policies_do(&blocking, "blocks", "block"),
            super::super::and_list(&cut.iter().map(|w| w.label()).collect::<Vec<_>>()),
            why(connection.workload, &cut),
            fixes.join("; ")
        )
    });
}

/// The ports admitted only if what raygate cannot see here matches, and why it cannot.
fn report_unverified(
    connection: &Connection<'_>,
    unknowns: &Unknowns,
    unverified: &[&Wanted],
    who: &str,
    out: &mut Findings<'_>,
) {
    let operator = connection.operator;
    let mut reasons = Vec::new();
    if unknowns.namespace {
        reasons.push(format!(
            "a NetworkPolicy selects namespace {:?} by labels raygate cannot see here",
            operator.namespace
        ));
    }
    if unknowns.ip_block {
        reasons.push(
            "an ipBlock may or may not hold the Pods' addresses, which raygate does not know"
                .to_owned(),
        );
    }
    out.report(RuleId::NotVerified, &connection.head.path, || {
        format!(
            "could not verify that the KubeRay operator's Pod ({who}) reaches TCP {} of the head: {}; admit it by `{}`",
            super::super::and_list(&unverified.iter().map(|w| w.label()).collect::<Vec<_>>()),
            reasons.join(", and "),
            operator_peer(operator, connection.namespace)
        )
    });
}

pub(super) fn first_name<'p>(policies: &[&'p NetworkPolicy]) -> &'p str {
    policies
        .first()
        .and_then(|p| p.metadata.name.as_deref())
        .unwrap_or("")
}

/// The label a policy selects the head by: the name raygate fills into an embedded cluster's
/// templates, else a RayCluster's own name.
pub(super) fn head_selector(
    cluster: &ClusterSpec<'_>,
    head_labels: &BTreeMap<String, String>,
) -> String {
    let head = "ray.io/node-type: head";
    if let Some(name) = head_labels.get(LABEL_CR_NAME) {
        format!("{LABEL_CR_NAME}: {name}, {head}")
    } else if cluster.source == ClusterSource::RayCluster {
        format!("{LABEL_CLUSTER}: {}, {head}", cluster.name)
    } else {
        head.to_owned()
    }
}
