//! The rules' names: every rule of the platform plan as one enum, and the families they
//! belong to. A leaf: the policy keys its overrides by these, the rules report them, and
//! reports, metrics and SARIF print them, without any of those importing each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The four rule families of the platform plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    #[serde(rename = "ports")]
    Ports,
    #[serde(rename = "placement")]
    Placement,
    #[serde(rename = "network-policy")]
    NetworkPolicy,
    #[serde(rename = "resources")]
    Resources,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Ports,
        Family::Placement,
        Family::NetworkPolicy,
        Family::Resources,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Ports => "ports",
            Family::Placement => "placement",
            Family::NetworkPolicy => "network-policy",
            Family::Resources => "resources",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defines [`RuleId`] from one table, so that its variants, ids, families and `ALL` cannot
/// drift apart.
macro_rules! rule_ids {
    ($($variant:ident = $id:literal in $family:expr;)*) => {
        /// One rule of the platform plan; written `<family>/<name>`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RuleId {
            $($variant,)*
        }

        impl RuleId {
            /// Every rule, in the order reports list them.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(RuleId::$variant => $id,)*
                }
            }

            /// What reports group the rule under: its family, or `limits`.
            pub const fn category(self) -> &'static str {
                match self.family() {
                    Some(family) => family.as_str(),
                    None => "limits",
                }
            }

            /// The family whose action and exemptions apply; `None` for the limits that
            /// keep raygate in time, which always deny.
            pub const fn family(self) -> Option<Family> {
                match self {
                    $(RuleId::$variant => $family,)*
                }
            }
        }
    };
}

const PORTS: Option<Family> = Some(Family::Ports);
const PLACEMENT: Option<Family> = Some(Family::Placement);
const NETWORK_POLICY: Option<Family> = Some(Family::NetworkPolicy);
const RESOURCES: Option<Family> = Some(Family::Resources);
const LIMITS: Option<Family> = None;

rule_ids! {
    HeadPort = "ports/head-port" in PORTS;
    MetricsPort = "ports/metrics-port" in PORTS;
    ServePortName = "ports/serve-port-name" in PORTS;
    RayStartParam = "ports/ray-start-param" in PORTS;
    NodePortRange = "ports/node-port-range" in PORTS;
    ForbiddenPort = "ports/forbidden-port" in PORTS;
    WorkerPortOverlap = "ports/worker-port-overlap" in PORTS;
    WorkerPortRange = "ports/worker-port-range" in PORTS;
    ServeConfig = "ports/serve-config" in PORTS;
    StartCommand = "ports/start-command" in PORTS;
    UnplannedPort = "ports/unplanned-port" in PORTS;
    HostNetwork = "ports/host-network" in PORTS;
    HostPort = "ports/host-port" in PORTS;
    NodePortService = "ports/node-port-service" in PORTS;
    ProbePort = "ports/probe-port" in PORTS;
    AutoscalerGcsPort = "ports/autoscaler-gcs-port" in PORTS;
    UnmeasuredRay = "ports/unmeasured-ray" in PORTS;
    NodeName = "placement/node-name" in PLACEMENT;
    TargetsMaster = "placement/targets-master" in PLACEMENT;
    ToleratesControlPlane = "placement/tolerates-control-plane" in PLACEMENT;
    NotPinned = "placement/not-pinned-to-workers" in PLACEMENT;
    NetworkPolicyMissing = "network-policy/missing" in NETWORK_POLICY;
    BlockedPorts = "network-policy/blocked-ports" in NETWORK_POLICY;
    WorkerPorts = "network-policy/worker-ports" in NETWORK_POLICY;
    NotVerified = "network-policy/not-verified" in NETWORK_POLICY;
    UncoversCluster = "network-policy/uncovers-cluster" in NETWORK_POLICY;
    DnsEgress = "network-policy/dns-egress" in NETWORK_POLICY;
    ApiserverEgress = "network-policy/apiserver-egress" in NETWORK_POLICY;
    ExternalAccess = "network-policy/external-access" in NETWORK_POLICY;
    PodLabel = "network-policy/pod-label" in NETWORK_POLICY;
    OperatorAccess = "network-policy/operator-access" in NETWORK_POLICY;
    SubmitterAccess = "network-policy/submitter-access" in NETWORK_POLICY;
    ResourcesMissing = "resources/missing" in RESOURCES;
    InvalidQuantity = "resources/invalid-quantity" in RESOURCES;
    LimitBelowRequest = "resources/limit-below-request" in RESOURCES;
    AboveMaximum = "resources/above-maximum" in RESOURCES;
    GpuMismatch = "resources/gpu-mismatch" in RESOURCES;
    BelowMinimum = "resources/below-minimum" in RESOURCES;
    TooManyGroups = "limits/worker-groups" in LIMITS;
    OutOfTime = "limits/deadline" in LIMITS;
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule id that names no rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule {0:?}; known rules: {known}", known = known_rules())]
pub struct UnknownRule(pub String);

fn known_rules() -> String {
    RuleId::ALL
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for RuleId {
    type Err = UnknownRule;

    fn from_str(text: &str) -> Result<RuleId, UnknownRule> {
        RuleId::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| UnknownRule(text.to_owned()))
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RuleId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_reads_back_as_its_rule_and_names_its_family() {
        for &rule in RuleId::ALL {
            assert_eq!(rule.as_str().parse::<RuleId>(), Ok(rule));
            let prefix = rule.as_str().split_once('/').unwrap().0;
            match rule.family() {
                Some(family) => assert_eq!(family.as_str(), prefix, "{rule}"),
                None => assert_eq!(prefix, "limits", "{rule}"),
            }
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<_> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RuleId::ALL.len());
    }

    #[test]
    fn an_unknown_id_is_refused_with_the_known_ones() {
        let err = "ports/nonsense".parse::<RuleId>().unwrap_err().to_string();
        assert!(err.contains("unknown rule \"ports/nonsense\""), "{err}");
        assert!(err.contains("ports/head-port"), "{err}");
        let json: Result<RuleId, _> = serde_json::from_str("\"placement/node-name\"");
        assert_eq!(json.unwrap(), RuleId::NodeName);
    }
}
