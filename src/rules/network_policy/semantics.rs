//! What Kubernetes does with a NetworkPolicy, apart from Ray: the API server's defaulting
//! (`policyTypes`, a missing spec, `protocol`), selectors, peers, ports (numbered, ranges,
//! named ports resolved on the destination Pod by name and protocol) and whether one
//! connection gets through. `tests/netpol_oracle.rs` holds this against the SIG-Network
//! reference implementation (kube-network-policies v0.8.0) in-process.

use std::collections::BTreeMap;
use std::net::IpAddr;

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
