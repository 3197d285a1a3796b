//! What Kubernetes does with a NetworkPolicy, apart from Ray: the API server's defaulting
//! (`policyTypes`, a missing spec, `protocol`), selectors, peers, ports (numbered, ranges,
//! named ports resolved on the destination Pod by name and protocol) and whether one
//! connection gets through. `tests/netpol_oracle.rs` holds this against the SIG-Network
//! reference implementation (kube-network-policies v0.8.0) in-process.
//!
//! Also which ports a set of policies admits between Pods known only by their labels
//! ([`admitted_between`]), in a namespace whose labels raygate may not see offline
//! ([`NamespaceView`]), as the Ray rules judge a cluster before its Pods exist.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A direction a NetworkPolicy restricts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

/// The spec the API server stores for a policy written without one: it selects every Pod of
/// the namespace and, defaulted to `[Ingress]` with no rule, admits no ingress.
static EMPTY_SPEC: std::sync::LazyLock<NetworkPolicySpec> =
    std::sync::LazyLock::new(NetworkPolicySpec::default);

pub fn spec(policy: &NetworkPolicy) -> &NetworkPolicySpec {
    policy.spec.as_ref().unwrap_or(&EMPTY_SPEC)
}

/// Whether `policy` restricts `direction`, as the API server defaults `policyTypes`: when it
/// is missing or empty, Ingress always, and Egress when the egress list is not empty.
pub fn restricts(policy: &NetworkPolicy, direction: Direction) -> bool {
    let spec = spec(policy);
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => types.iter().any(|t| {
            t == match direction {
                Direction::Ingress => "Ingress",
                Direction::Egress => "Egress",
            }
        }),
        _ => match direction {
            Direction::Ingress => true,
            Direction::Egress => spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
        },
    }
}

/// Label selector semantics (`metav1.LabelSelectorAsSelector`): every matchLabels pair and
/// every expression must hold; an empty selector selects everything.
pub fn selector_matches<'l>(
    selector: &LabelSelector,
    get: impl Fn(&str) -> Option<&'l str>,
) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v.as_str()));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
                "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `policy` selects a Pod with `labels` in the policy's own namespace.
pub fn selects<'l>(policy: &NetworkPolicy, get: impl Fn(&str) -> Option<&'l str>) -> bool {
    spec(policy)
        .pod_selector
        .as_ref()
        .is_none_or(|selector| selector_matches(selector, get))
}

/// One Pod as NetworkPolicies see it.
pub struct PolicyPod<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub ip: IpAddr,
    /// Declared container ports: (name, number, protocol).
    pub ports: &'a [(String, u16, String)],
}

/// Whether a `NetworkPolicyPeer` of a policy in `policy_namespace` matches `pod`.
fn peer_matches(
    peer: &NetworkPolicyPeer,
    policy_namespace: &str,
    namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
    pod: &PolicyPod<'_>,
) -> bool {
    if let Some(block) = &peer.ip_block {
        return ip_in_block(
            pod.ip,
            &block.cidr,
            block.except.as_deref().unwrap_or_default(),
        );
    }
    let namespace_ok = match &peer.namespace_selector {
        None => pod.namespace == policy_namespace,
        Some(selector) => {
            let labels = namespace_labels.get(pod.namespace);
            selector_matches(selector, |key| {
                if key == NAMESPACE_NAME_LABEL {
                    return Some(pod.namespace);
                }
                labels.and_then(|l| l.get(key)).map(String::as_str)
            })
        }
    };
    let pod_ok = match &peer.pod_selector {
        None => peer.namespace_selector.is_some(),
        Some(selector) => selector_matches(selector, |k| pod.labels.get(k).map(String::as_str)),
    };
    namespace_ok && pod_ok
}

/// Whether `ip` is in `cidr` and in none of `except`.
pub fn ip_in_block(ip: IpAddr, cidr: &str, except: &[String]) -> bool {
    in_cidr(ip, cidr) && !except.iter().any(|e| in_cidr(ip, e))
}

/// The addresses of a CIDR as an interval, and whether they are IPv6.
fn cidr_interval(cidr: &str) -> Option<(bool, u128, u128)> {
    let (base, bits) = cidr.split_once('/')?;
    let (base, bits) = (base.parse::<IpAddr>().ok()?, bits.parse::<u32>().ok()?);
    let (v6, width, base) = match base {
        IpAddr::V4(b) => (false, 32, u128::from(u32::from(b))),
        IpAddr::V6(b) => (true, 128, u128::from(b)),
    };
    if bits > width {
        return None;
    }
    let host = (width - bits) as usize;
    let span = if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    let start = base & !span;
    Some((v6, start, start | span))
}

/// Whether an ipBlock's `except` entries together leave none of its `cidr`.
pub fn block_is_empty(cidr: &str, except: &[String]) -> bool {
    let Some((v6, start, end)) = cidr_interval(cidr) else {
        return false;
    };
    let mut holes: Vec<(u128, u128)> = except
        .iter()
        .filter_map(|e| cidr_interval(e))
        .filter(|(family, _, _)| *family == v6)
        .map(|(_, a, b)| (a, b))
        .collect();
    holes.sort_unstable();
    let mut next = start;
    for (a, b) in holes {
        if a > next {
            break;
        }
        if b >= end {
            return true;
        }
        next = next.max(b + 1);
    }
    false
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((base, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(base), Ok(bits)) = (base.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, base) {
        (IpAddr::V4(ip), IpAddr::V4(base)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(ip) & mask == u32::from(base) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(ip) & mask == u128::from(base) & mask
        }
        _ => false,
    }
}

/// Whether a port entry admits `port`/`protocol` towards `destination` (named ports resolve
/// on the destination Pod's declared container ports, by name and protocol).
pub fn port_matches(
    entry: &NetworkPolicyPort,
    port: u16,
    protocol: &str,
    destination: &[(String, u16, String)],
) -> bool {
    let entry_protocol = entry.protocol.as_deref().unwrap_or("TCP");
    if entry_protocol != protocol {
        return false;
    }
    match &entry.port {
        None => true,
        Some(IntOrString::Int(n)) => {
            let to = entry.end_port.unwrap_or(*n);
            i32::from(port) >= *n && i32::from(port) <= to.max(*n)
        }
        Some(IntOrString::String(name)) => destination
            .iter()
            .any(|(n, number, p)| n == name && *number == port && p == protocol),
    }
}

/// The peers and ports of one ingress or egress rule.
pub type Rule<'p> = (
    Option<&'p Vec<NetworkPolicyPeer>>,
    Option<&'p Vec<NetworkPolicyPort>>,
);

/// The peers and ports of each rule of `policy` in `direction`.
pub fn rules(policy: &NetworkPolicy, direction: Direction) -> Vec<Rule<'_>> {
    let spec = spec(policy);
    match direction {
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
    }
}

/// Whether the policies of one end admit the connection in `direction`: not restricted by any
/// policy selecting that end, or admitted by a rule of one of them.
#[allow(clippy::too_many_arguments)]
fn direction_allows(
    policies: &[NetworkPolicy],
    namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
    direction: Direction,
    end: &PolicyPod<'_>,
    peer: &PolicyPod<'_>,
    destination: &PolicyPod<'_>,
    port: u16,
    protocol: &str,
) -> bool {
    let mut restricted = false;
    for policy in policies {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
        if namespace != end.namespace
            || !selects(policy, |k| end.labels.get(k).map(String::as_str))
            || !restricts(policy, direction)
        {
            continue;
        }
        restricted = true;
        let rules = rules(policy, direction);
        for (peers, ports) in rules {
            let peer_ok = peers.filter(|p| !p.is_empty()).is_none_or(|peers| {
                peers
                    .iter()
                    .any(|p| peer_matches(p, namespace, namespace_labels, peer))
            });
            let port_ok = ports.filter(|p| !p.is_empty()).is_none_or(|ports| {
                ports
                    .iter()
                    .any(|e| port_matches(e, port, protocol, destination.ports))
            });
            if peer_ok && port_ok {
                return true;
            }
        }
    }
    !restricted
}

/// Whether `policies` (as written, not yet defaulted by the API server) let a connection from
/// `from` to `to` on `port`/`protocol` through: egress of `from`, ingress of `to`. A Pod's
/// connection to itself is never blocked.
pub fn connection_allowed(
    policies: &[NetworkPolicy],
    namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
    from: &PolicyPod<'_>,
    to: &PolicyPod<'_>,
    port: u16,
    protocol: &str,
) -> bool {
    if from.namespace == to.namespace && from.ip == to.ip {
        return true;
    }
    end_allows(
        policies,
        namespace_labels,
        Direction::Egress,
        from,
        to,
        port,
        protocol,
    ) && end_allows(
        policies,
        namespace_labels,
        Direction::Ingress,
        from,
        to,
        port,
        protocol,
    )
}

/// One half of [`connection_allowed`]: whether the policies selecting `from` admit the
/// connection as egress (`Egress`), or those selecting `to` admit it as ingress (`Ingress`).
pub fn end_allows(
    policies: &[NetworkPolicy],
    namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
    direction: Direction,
    from: &PolicyPod<'_>,
    to: &PolicyPod<'_>,
    port: u16,
    protocol: &str,
) -> bool {
    let (end, peer) = match direction {
        Direction::Egress => (from, to),
        Direction::Ingress => (to, from),
    };
    direction_allows(
        policies,
        namespace_labels,
        direction,
        end,
        peer,
        to,
        port,
        protocol,
    )
}

/// A Pod's labels, as selectors read them.
pub type PodLabels<'a> = BTreeMap<&'a str, &'a str>;

/// [`selector_matches`] on a label map.
pub fn labels_match(selector: &LabelSelector, labels: &PodLabels<'_>) -> bool {
    selector_matches(selector, |k| labels.get(k).copied())
}

/// The ports a numbered NetworkPolicy port entry admits, `endPort` included.
fn numbered_range(number: i32, port: &NetworkPolicyPort) -> (u32, u32) {
    let from = u32::try_from(number).unwrap_or(0);
    let to = port
        .end_port
        .and_then(|e| u32::try_from(e).ok())
        .unwrap_or(from);
    (from, to.max(from))
}

/// Port intervals admitted by a set of rules; `all` when some rule admits every port.
#[derive(Default, Debug)]
pub struct Admitted {
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
                Some(IntOrString::Int(n)) => self.ranges.push(numbered_range(*n, port)),
                Some(IntOrString::String(name)) => self.names.push(name.clone()),
            }
        }
    }

    pub fn covers(&self, from: u32, to: u32, name: Option<&str>) -> bool {
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

/// The namespace of a cluster as NetworkPolicy `namespaceSelector`s see it.
pub struct NamespaceView<'a> {
    pub name: &'a str,
    /// Its labels, when the cluster state knows them.
    labels: Option<&'a BTreeMap<String, String>>,
    /// Whether selectors on labels raygate cannot see are assumed to match.
    assume: std::cell::Cell<bool>,
    /// Set when a selector needed labels raygate cannot see.
    pub(super) unknown_seen: std::cell::Cell<bool>,
    /// Set when coverage held only by assuming such a selector matches.
    pub(super) guessed: std::cell::Cell<bool>,
}

impl<'a> NamespaceView<'a> {
    pub fn new(name: &'a str, labels: Option<&'a BTreeMap<String, String>>) -> NamespaceView<'a> {
        NamespaceView {
            name,
            labels,
            assume: std::cell::Cell::new(false),
            unknown_seen: std::cell::Cell::new(false),
            guessed: std::cell::Cell::new(false),
        }
    }

    pub fn selected_by(&self, selector: &LabelSelector) -> bool {
        let mut ns = PodLabels::new();
        if let Some(labels) = self.labels {
            ns.extend(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            ns.insert(NAMESPACE_NAME_LABEL, self.name);
            return labels_match(selector, &ns);
        }
        // Without the namespace's labels only its name is known: judge what names it; the
        // rest does not match unless assumed (see `coverage`).
        ns.insert(NAMESPACE_NAME_LABEL, self.name);
        let on_name = LabelSelector {
            match_labels: selector.match_labels.as_ref().map(|m| {
                m.iter()
                    .filter(|(k, _)| k.as_str() == NAMESPACE_NAME_LABEL)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            match_expressions: selector.match_expressions.as_ref().map(|e| {
                e.iter()
                    .filter(|r| r.key == NAMESPACE_NAME_LABEL)
                    .cloned()
                    .collect()
            }),
        };
        let other_keys = selector
            .match_labels
            .iter()
            .flatten()
            .any(|(k, _)| k != NAMESPACE_NAME_LABEL)
            || selector
                .match_expressions
                .iter()
                .flatten()
                .any(|r| r.key != NAMESPACE_NAME_LABEL);
        let matched = labels_match(&on_name, &ns);
        if matched && other_keys {
            self.unknown_seen.set(true);
            return self.assume.get();
        }
        matched
    }

    /// Ports admitted with selectors on unseen labels assumed to match.
    pub fn assuming<T>(&self, judge: impl FnOnce() -> T) -> T {
        self.assume.set(true);
        let judged = judge();
        self.assume.set(false);
        judged
    }
}

pub fn peer_admits(
    peer: &NetworkPolicyPeer,
    namespace: &NamespaceView<'_>,
    labels: &PodLabels<'_>,
) -> bool {
    let namespace_ok = match &peer.namespace_selector {
        None => true,
        Some(selector) => namespace.selected_by(selector),
    };
    let pods_ok = match &peer.pod_selector {
        None => peer.namespace_selector.is_some(),
        Some(selector) => labels_match(selector, labels),
    };
    namespace_ok && pods_ok
}

/// Ports that `policies` (all selecting the pods at one end) admit to or from the pods
/// labelled `peer` in the same namespace, in one direction.
pub fn admitted_between(
    policies: &[&NetworkPolicy],
    direction: Direction,
    namespace: &NamespaceView<'_>,
    peer: &PodLabels<'_>,
) -> Admitted {
    let mut admitted = Admitted::default();
    let restricting: Vec<&&NetworkPolicy> = policies
        .iter()
        .filter(|p| restricts(p, direction))
        .collect();
    if restricting.is_empty() {
        admitted.all = true;
        return admitted;
    }
    for policy in restricting {
        let rules = rules(policy, direction);
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

pub fn in_namespace<'p>(all: &'p [Arc<NetworkPolicy>], namespace: &str) -> Vec<&'p NetworkPolicy> {
    all.iter()
        .map(Arc::as_ref)
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .collect()
}

/// The policies among `in_namespace` whose podSelector selects pods labelled `labels`.
pub fn selecting<'p>(
    in_namespace: &[&'p NetworkPolicy],
    labels: &PodLabels<'_>,
) -> Vec<&'p NetworkPolicy> {
    in_namespace
        .iter()
        .copied()
        // A policy written without a spec selects every Pod (the API server stores an empty one).
        .filter(|p| selects(p, |k| labels.get(k).copied()))
        .collect()
}

/// Whether a rule's port list admits `protocol` `port`, or one of the port names `names`.
pub fn ports_admit(
    ports: Option<&Vec<NetworkPolicyPort>>,
    protocol: &str,
    port: u32,
    names: &[&str],
) -> bool {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else {
        return true;
    };
    ports.iter().any(|p| {
        p.protocol.as_deref().unwrap_or("TCP") == protocol
            && match &p.port {
                None => true,
                Some(IntOrString::Int(n)) => {
                    let (from, to) = numbered_range(*n, p);
                    (from..=to).contains(&port)
                }
                Some(IntOrString::String(name)) => names.contains(&name.as_str()),
            }
    })
}

/// Whether some egress rule of `policies` admits `protocol` `port` to a destination the
/// peer filter accepts (every destination when a rule names no peers).
pub fn egress_admits(
    policies: &[&NetworkPolicy],
    protocol: &str,
    port: u32,
    names: &[&str],
    beyond: impl Fn(&NetworkPolicyPeer) -> bool,
) -> bool {
    policies.iter().any(|policy| {
        spec(policy)
            .egress
            .as_ref()
            .into_iter()
            .flatten()
            .any(|rule| {
                // Ports first: a peer is only looked at (and maybe found unknowable) for a
                // rule that admits the port.
                ports_admit(rule.ports.as_ref(), protocol, port, names)
                    && rule
                        .to
                        .as_ref()
                        .filter(|peers| !peers.is_empty())
                        .is_none_or(|peers| peers.iter().any(&beyond))
            })
    })
}
