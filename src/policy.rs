//! The platform policy as data: loading, validation and defaults. No evaluation here.

use crate::ray_version::RayVersion;
use crate::rule_id::{Family, RuleId};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The policy compiled into the binary, used when no `--policy` is given.
pub const BUILT_IN_POLICY: &str = include_str!("../policies/ray-platform.yaml");
const BUILT_IN_POLICY_NAME: &str = "policies/ray-platform.yaml (built in)";

pub const API_VERSION: &str = "raygate.dev/v1alpha1";
pub const KIND: &str = "RayPlatformPolicy";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{source_name}: cannot read: {error}")]
    Read {
        source_name: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{source_name}: {path}: {message}")]
    Parse {
        source_name: String,
        path: String,
        message: String,
    },
    #[error("{source_name}: invalid policy:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        source_name: String,
        problems: Vec<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What happens to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Off,
    Audit,
    Warn,
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Audit => "audit",
            Action::Warn => "warn",
            Action::Deny => "deny",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `enforce` denies and fills in; `audit` only reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDocument {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: PolicyMetadata,
    pub spec: PolicySpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyMetadata {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub scope: Scope,
    pub ports: PortPolicy,
    pub placement: PlacementPolicy,
    pub network_policy: NetworkPolicyRule,
    pub resources: ResourcePolicy,
    /// Overrides of a single rule's action, keyed by rule id (`family/name`).
    #[serde(default)]
    pub rule_actions: BTreeMap<RuleId, Action>,
    #[serde(default)]
    pub deadline: Deadline,
    /// The Ray a group runs when neither its image tag nor `rayVersion` says.
    #[serde(default = "default_ray_version")]
    pub default_ray_version: RayVersion,
}

fn default_ray_version() -> RayVersion {
    RayVersion(2, 60, 0)
}

/// raygate answers within `milliseconds` even when something inside stalls, well before the
/// API server's `timeoutSeconds` gives up on it and applies the webhook's failurePolicy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deadline {
    #[serde(default = "default_deadline_milliseconds")]
    pub milliseconds: u64,
    /// The most worker groups a cluster spec may have: judging coverage is quadratic in the
    /// groups, and a larger spec is denied at once, so that no request can hold raygate past
    /// its deadline (KubeRay clusters have a handful).
    #[serde(default = "default_max_worker_groups")]
    pub max_worker_groups: usize,
    /// What an undecided request gets, per family: `deny` if any family it would have
    /// checked fails closed, else `allow` with a warning. Families not listed deny.
    #[serde(default)]
    pub failure_actions: BTreeMap<Family, FailureAction>,
}

impl Deadline {
    /// The families whose undecided requests are denied: all but those the policy allows.
    pub fn failing_closed(&self) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|f| self.failure_actions.get(f) != Some(&FailureAction::Allow))
            .collect()
    }
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline {
            milliseconds: default_deadline_milliseconds(),
            max_worker_groups: default_max_worker_groups(),
            failure_actions: BTreeMap::new(),
        }
    }
}

fn default_max_worker_groups() -> usize {
    64
}

fn default_deadline_milliseconds() -> u64 {
    2000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scope {
    #[serde(default)]
    pub exempt_namespaces: Vec<String>,
    #[serde(default)]
    pub exemptions: Vec<Exemption>,
    /// Namespaces judged in audit mode whatever `mode` says: reported, never denied or patched.
    #[serde(default)]
    pub audit_namespaces: Vec<String>,
}

impl Scope {
    pub fn exempts_namespace(&self, namespace: &str) -> bool {
        self.exempt_namespaces.iter().any(|ns| ns == namespace)
    }

    /// Whether `family` is exempt for an object in `namespace` known by any of `names`, each
    /// a kind and a name: its own, a Ray Pod's RayCluster, and the RayJob, RayService or
    /// RayCronJob that controls its cluster. An exemption by name matches that kind only, so
    /// a RayCluster named like an exempt RayJob is not exempt.
    pub fn exempts(&self, namespace: &str, names: &[(&str, &str)], family: Family) -> bool {
        self.exemptions.iter().any(|e| {
            e.namespace == namespace
                && e.name.as_deref().is_none_or(|n| {
                    names
                        .iter()
                        .any(|(kind, name)| *name == n && e.kind.as_deref() == Some(*kind))
                })
                && e.families.as_ref().is_none_or(|f| f.contains(&family))
        })
    }
}

/// Exempts objects in `namespace` (all of them, or the object of `kind` called `name`; an
/// exempt RayCluster covers its Pods, an exempt RayJob, RayService or RayCronJob the cluster
/// KubeRay generates for it and that cluster's Pods) from the listed families, or from all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exemption {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub families: Option<Vec<Family>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortPolicy {
    pub action: Action,
    pub planned: Vec<PlannedPort>,
    /// Ports every Ray node listens on that no container port declares (KubeRay exposes
    /// them in no Service), pinned through `rayStartParams`.
    #[serde(default)]
    pub node_ports: Vec<NodePort>,
    /// Ports only the head listens on, at Ray's own defaults unless an environment variable
    /// moves them (Prometheus scrape targets of the autoscaler and the dashboard).
    #[serde(default)]
    pub head_ports: Vec<EnvPort>,
    #[serde(default)]
    pub node_ranges: Vec<NodePortRange>,
    /// The range every node's worker processes (tasks, actors, drivers) bind in, pinned
    /// through `min-worker-port` and `max-worker-port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_ports: Option<PortRange>,
    #[serde(default)]
    pub forbidden: Vec<u16>,
    /// Container ports (of Ray containers and sidecars) the admin allows besides the plan's,
    /// e.g. an SSH or profiler sidecar. Any other declared port is denied.
    #[serde(default)]
    pub extra_allowed: Vec<u16>,
    /// Host exposure (`hostNetwork`, `hostPort`, NodePort and LoadBalancer head Services):
    /// it opens Ray's ports on every node, masters included, where no NetworkPolicy applies.
    #[serde(default)]
    pub host_exposure: HostExposure,
    /// Whether the Ray and autoscaler containers may take variables from `envFrom`, whose
    /// values raygate cannot see (one could move a port).
    #[serde(default)]
    pub allow_env_from: bool,
}

impl PortPolicy {
    /// Whether the admin's `extraAllowed` lists `port`.
    pub fn allows_extra(&self, port: u32) -> bool {
        self.extra_allowed.iter().any(|p| u32::from(*p) == port)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostExposure {
    /// Namespaces where host exposure is allowed; none by default.
    #[serde(default)]
    pub allowed_namespaces: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub fn contains(&self, port: u32) -> bool {
        (u32::from(self.from)..=u32::from(self.to)).contains(&port)
    }

    pub fn overlaps(&self, from: u32, to: u32) -> bool {
        u32::from(self.from) <= to && from <= u32::from(self.to)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.from, self.to)
    }
}

/// A port set by an environment variable of the Ray container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvPort {
    pub name: String,
    pub port: u16,
    pub env: String,
}

/// A single port every Ray node listens on, pinned through a `rayStartParams` key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePort {
    /// How messages name it.
    pub name: String,
    pub port: u16,
    pub ray_start_param: String,
    /// What happens when the key is unset, with the version it was measured on; only used
    /// to word fixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_unset: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlannedPort {
    /// The container port name KubeRay uses for it.
    pub name: String,
    pub port: u16,
    /// The `rayStartParams` key that makes Ray listen there, if Ray takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ray_start_param: Option<String>,
    /// The default the plan replaces; only used to word fixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_ray_default: Option<u16>,
    /// Pinned on every Ray node (head and workers), not only on the head.
    #[serde(default)]
    pub every_node: bool,
    /// Other names the port goes by (older docs, hand-written plans): a port under one of
    /// them is this port, renamed, never a reason to add a second one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePortRange {
    pub ray_start_param: String,
    pub from: u16,
    pub to: u16,
}

impl NodePortRange {
    pub fn contains(&self, port: u32) -> bool {
        (u32::from(self.from)..=u32::from(self.to)).contains(&port)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlacementPolicy {
    pub action: Action,
    pub master_hostnames: Vec<String>,
    pub worker_label: LabelPair,
    pub control_plane_label: String,
    pub control_plane_taint_keys: Vec<String>,
    #[serde(default)]
    pub gpu_resources: Vec<String>,
    #[serde(default = "default_true")]
    pub gpu_groups_may_use_masters: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelPair {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyRule {
    pub action: Action,
    #[serde(default = "default_unverified")]
    pub unverified_action: Action,
    /// Where admission enforces coverage; see [`EnforceOn`].
    #[serde(default)]
    pub enforce_on: EnforceOn,
    /// A NetworkPolicy change (UPDATE or DELETE) that would leave a live RayCluster uncovered.
    #[serde(default = "default_protect_live_clusters")]
    pub protect_live_clusters: Action,
    /// After this long without a successful watch, the NetworkPolicy cache counts as
    /// unavailable and coverage is unverified.
    #[serde(default = "default_stale_after_seconds")]
    pub stale_after_seconds: u64,
    /// Namespaces outside the cluster (Prometheus, notebooks) that must reach some of the
    /// head's ports; `network-policy/external-access` reports when they cannot.
    #[serde(default)]
    pub external_access: Vec<ExternalAccess>,
    /// The KubeRay operator's Pod, which must reach the head of a RayJob's or RayService's
    /// cluster (`network-policy/operator-access`); absent or null, that rule does not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorPod>,
    /// The API server's addresses (CIDRs) for the NetworkPolicies raygate writes: the in-tree
    /// autoscaler's egress goes there. Empty, `raygate fix` admits TCP 443 and 6443 to every
    /// address and says so, and the controller reads them from the `kubernetes` Endpoints.
    #[serde(default)]
    pub api_server_addresses: Vec<String>,
    /// Where the cluster's DNS answers Pods: a Ray cluster whose egress is restricted must
    /// still reach it (`network-policy/dns-egress`), and the policies raygate writes admit it.
    #[serde(default)]
    pub dns: DnsServers,
}

/// The cluster's DNS as NetworkPolicy peers reach it: its Pods (CoreDNS or kube-dns), and
/// addresses outside any Pod (NodeLocal DNSCache's link-local address).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsServers {
    #[serde(default = "default_dns_namespace")]
    pub namespace: String,
    #[serde(default = "default_dns_pod_labels")]
    pub pod_labels: BTreeMap<String, String>,
    /// The port the DNS Pods listen on, as policies judge it after the Service's DNAT.
    #[serde(default = "default_dns_port")]
    pub port: u16,
    /// CIDRs Pods send DNS queries to that are no Pod's, e.g. `169.254.20.10/32`.
    #[serde(default)]
    pub addresses: Vec<String>,
}

impl Default for DnsServers {
    fn default() -> Self {
        DnsServers {
            namespace: default_dns_namespace(),
            pod_labels: default_dns_pod_labels(),
            port: default_dns_port(),
            addresses: Vec::new(),
        }
    }
}

/// kubeadm's CoreDNS, as most distributions run it.
fn default_dns_namespace() -> String {
    "kube-system".to_owned()
}

fn default_dns_pod_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())])
}

fn default_dns_port() -> u16 {
    53
}

/// Where the KubeRay operator runs and the labels its Pod carries, as NetworkPolicy peers
/// select it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorPod {
    pub namespace: String,
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
}

/// Pods of the namespaces labelled `namespaceLabels` must reach the planned ports `ports`
/// (container port names of `spec.ports.planned`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalAccess {
    pub namespace_labels: BTreeMap<String, String>,
    pub ports: Vec<String>,
}

fn default_unverified() -> Action {
    Action::Audit
}

fn default_protect_live_clusters() -> Action {
    Action::Warn
}

fn default_stale_after_seconds() -> u64 {
    300
}

/// Which admission denies an uncovered cluster. `kubectl apply -f dir/` and Argo CD may
/// create a RayCluster before its NetworkPolicy, so by default the cluster object only gets
/// a warning and its Pods are denied until a covering policy exists: the operator retries
/// and the cluster comes up as soon as the policy does, whatever the apply order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EnforceOn {
    #[default]
    Pods,
    /// Deny the RayCluster (or RayJob, RayService, RayCronJob) itself; apply order matters.
    Clusters,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcePolicy {
    pub action: Action,
    pub defaults: ResourceDefaults,
    #[serde(default)]
    pub maximum: CpuMemory,
    /// The least a request or limit may be: `0` means no limit at all to Kubernetes, and
    /// `1n` CPU or 1 byte of memory is no usable one.
    #[serde(default = "default_minimum")]
    pub minimum: CpuMemory,
}

fn default_minimum() -> CpuMemory {
    CpuMemory {
        cpu: Some("10m".to_owned()),
        memory: Some("32Mi".to_owned()),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceDefaults {
    pub requests: CpuMemory,
    pub limits: CpuMemory,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CpuMemory {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// A resource quantity kept as written (for patches and messages) and parsed (for comparison).
#[derive(Debug, Clone)]
pub struct Amount {
    pub text: String,
    pub parsed: crate::quantity::Quantity,
}

impl Amount {
    pub fn parse(text: &str) -> Option<Amount> {
        Some(Amount {
            text: text.to_owned(),
            parsed: crate::quantity::Quantity::parse(text)?,
        })
    }
}

/// The two resources every container must declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub const BOTH: [Resource; 2] = [Resource::Cpu, Resource::Memory];
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }
}

/// Per-resource values of the compiled policy, parsed once at load.
#[derive(Debug, Clone)]
pub struct PerResource<T> {
    pub cpu: T,
    pub memory: T,
}

impl<T> PerResource<T> {
    pub fn get(&self, resource: Resource) -> &T {
        match resource {
            Resource::Cpu => &self.cpu,
            Resource::Memory => &self.memory,
        }
    }
}

/// A validated policy, ready for the engine. Built only by [`Policy::from_yaml`].
#[derive(Debug, Clone)]
pub struct Policy {
    pub document: PolicyDocument,
    pub default_requests: PerResource<Amount>,
    pub default_limits: PerResource<Amount>,
    pub maximum: PerResource<Option<Amount>>,
    pub minimum: PerResource<Option<Amount>>,
}

impl Policy {
    pub fn built_in() -> Policy {
        Policy::from_yaml(BUILT_IN_POLICY, BUILT_IN_POLICY_NAME)
            .expect("the built-in policy is validated by the test suite")
    }

    pub fn load(path: &Path) -> Result<Policy> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| Error::Read {
            source_name: source_name.clone(),
            error,
        })?;
        Policy::from_yaml(&text, &source_name)
    }

    /// Parses and validates a policy; a policy with any problem is rejected whole.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Policy> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let document: PolicyDocument =
            serde_path_to_error::deserialize(deserializer).map_err(|err| {
                let path = err.path().to_string();
                let inner = err.into_inner().to_string();
                // serde_yaml_ng's message may already start with the path, or with its
                // parent's (a map key's error names the map).
                let message = match inner.split_once(": ") {
                    Some((head, rest)) if path.starts_with(head) => rest.to_owned(),
                    _ => inner,
                };
                Error::Parse {
                    source_name: source_name.to_owned(),
                    path: if path == "." {
                        "(document)".into()
                    } else {
                        path
                    },
                    message,
                }
            })?;
        compile(document).map_err(|problems| Error::Invalid {
            source_name: source_name.to_owned(),
            problems,
        })
    }

    pub fn spec(&self) -> &PolicySpec {
        &self.document.spec
    }

    /// `metadata.name`, as PolicyReports name the policy.
    pub fn name(&self) -> &str {
        if self.document.metadata.name.is_empty() {
            "ray-platform"
        } else {
            &self.document.metadata.name
        }
    }

    pub fn mode(&self) -> Mode {
        self.document.spec.mode
    }

    /// The mode for an object in `namespace`: audit in the scope's audit namespaces.
    pub fn mode_in(&self, namespace: &str) -> Mode {
        let spec = &self.document.spec;
        if spec.scope.audit_namespaces.iter().any(|ns| ns == namespace) {
            Mode::Audit
        } else {
            spec.mode
        }
    }

    pub fn with_mode(mut self, mode: Mode) -> Policy {
        self.document.spec.mode = mode;
        self
    }

    /// The action of a rule: its override if any, else its family's action.
    pub fn action_for(&self, rule: RuleId) -> Action {
        let spec = &self.document.spec;
        if let Some(action) = spec.rule_actions.get(&rule) {
            return *action;
        }
        match rule.family() {
            Some(family) if self.family_action(family) == Action::Off => Action::Off,
            // Unverifiable is never a reason to deny: it has its own action.
            Some(Family::NetworkPolicy) if rule == RuleId::NotVerified => {
                spec.network_policy.unverified_action
            }
            Some(Family::NetworkPolicy) if rule == RuleId::UncoversCluster => {
                spec.network_policy.protect_live_clusters
            }
            // Judging a Ray by the facts of the nearest measured one is a caveat, never a
            // reason to deny on its own.
            Some(Family::Ports) if rule == RuleId::UnmeasuredRay => Action::Warn,
            Some(family) => self.family_action(family),
            None => Action::Off,
        }
    }

    pub fn family_action(&self, family: Family) -> Action {
        let spec = &self.document.spec;
        match family {
            Family::Ports => spec.ports.action,
            Family::Placement => spec.placement.action,
            Family::NetworkPolicy => spec.network_policy.action,
            Family::Resources => spec.resources.action,
        }
    }

    /// A short hash of the effective policy: what `/readyz` and `raygate_policy_info` report,
    /// so that every replica can be seen to serve the same one.
    pub fn version(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.to_yaml().as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.document).unwrap_or_default()
    }
}

fn compile(document: PolicyDocument) -> std::result::Result<Policy, Vec<String>> {
    let mut problems = Vec::new();
    if document.api_version != API_VERSION {
        problems.push(format!(
            "apiVersion: {:?} is not supported; use {API_VERSION}",
            document.api_version
        ));
    }
    if document.kind != KIND {
        problems.push(format!("kind: {:?} must be {KIND}", document.kind));
    }
    let spec = &document.spec;
    validate_ports(&spec.ports, &mut problems);
    validate_placement(&spec.placement, &mut problems);
    validate_external_access(spec, &mut problems);
    validate_operator(spec, &mut problems);
    validate_api_server_addresses(spec, &mut problems);
    validate_dns(spec, &mut problems);
    validate_limits(spec, &mut problems);
    validate_rule_actions(spec, &mut problems);
    let resources = compile_resources(&spec.resources, &mut problems);
    match resources {
        Some(resources) if problems.is_empty() => Ok(Policy {
            document,
            default_requests: resources.default_requests,
            default_limits: resources.default_limits,
            maximum: resources.maximum,
            minimum: resources.minimum,
        }),
        _ => Err(problems),
    }
}

/// The settings that bound raygate itself: deadlines, scope, the NetworkPolicy cache.
fn validate_limits(spec: &PolicySpec, problems: &mut Vec<String>) {
    if spec.network_policy.unverified_action == Action::Deny {
        problems.push(
            "spec.networkPolicy.unverifiedAction: deny would lock out every Ray cluster \
             whenever NetworkPolicies cannot be read; use audit, warn or off"
                .into(),
        );
    }
    if !(50..=25_000).contains(&spec.deadline.milliseconds) {
        problems.push(format!(
            "spec.deadline.milliseconds: {} must be between 50 and 25000, below the webhooks' timeoutSeconds",
            spec.deadline.milliseconds
        ));
    }
    for (i, exemption) in spec.scope.exemptions.iter().enumerate() {
        let kinds = ["RayCluster", "RayJob", "RayService", "RayCronJob", "Pod"];
        match (&exemption.name, exemption.kind.as_deref()) {
            (Some(_), None) => problems.push(format!(
                "spec.scope.exemptions[{i}]: an exemption by name needs its kind ({}), or it would match any object of that name",
                kinds.join(", ")
            )),
            (_, Some(kind)) if !kinds.contains(&kind) => problems.push(format!(
                "spec.scope.exemptions[{i}].kind: {kind:?} is not one of {}",
                kinds.join(", ")
            )),
            _ => {}
        }
    }
    if !(1..=10_000).contains(&spec.deadline.max_worker_groups) {
        problems.push(format!(
            "spec.deadline.maxWorkerGroups: {} must be between 1 and 10000",
            spec.deadline.max_worker_groups
        ));
    }
    if spec.network_policy.stale_after_seconds == 0 {
        problems.push("spec.networkPolicy.staleAfterSeconds: must be at least 1".into());
    }
}

fn validate_rule_actions(spec: &PolicySpec, problems: &mut Vec<String>) {
    for rule in spec.rule_actions.keys() {
        if rule.family().is_none() {
            problems.push(format!(
                "spec.ruleActions.{rule}: the limits that keep raygate in time always deny; set spec.deadline instead"
            ));
        }
    }
    if spec.rule_actions.get(&RuleId::NotVerified) == Some(&Action::Deny) {
        problems.push(format!(
            "spec.ruleActions.{}: must not be deny",
            RuleId::NotVerified
        ));
    }
}

/// The resource settings as parsed quantities.
struct CompiledResources {
    default_requests: PerResource<Amount>,
    default_limits: PerResource<Amount>,
    maximum: PerResource<Option<Amount>>,
    minimum: PerResource<Option<Amount>>,
}

/// Parses `spec.resources`; `None` when a default is missing or unreadable.
fn compile_resources(
    resources: &ResourcePolicy,
    problems: &mut Vec<String>,
) -> Option<CompiledResources> {
    let mut quantity = |field: &str, value: &Option<String>, required: bool| -> Option<Amount> {
        match value {
            None if required => {
                problems.push(format!("spec.resources.{field}: required"));
                None
            }
            None => None,
            Some(text) => {
                let parsed = Amount::parse(text);
                if parsed.is_none() {
                    problems.push(format!(
                        "spec.resources.{field}: {text:?} is not a Kubernetes quantity"
                    ));
                }
                parsed
            }
        }
    };
    let defaults = &resources.defaults;
    let requests = (
        quantity("defaults.requests.cpu", &defaults.requests.cpu, true),
        quantity("defaults.requests.memory", &defaults.requests.memory, true),
    );
    let limits = (
        quantity("defaults.limits.cpu", &defaults.limits.cpu, true),
        quantity("defaults.limits.memory", &defaults.limits.memory, true),
    );
    let maximum = PerResource {
        cpu: quantity("maximum.cpu", &resources.maximum.cpu, false),
        memory: quantity("maximum.memory", &resources.maximum.memory, false),
    };
    let minimum = PerResource {
        cpu: quantity("minimum.cpu", &resources.minimum.cpu, false),
        memory: quantity("minimum.memory", &resources.minimum.memory, false),
    };
    let (Some(req_cpu), Some(req_mem), Some(lim_cpu), Some(lim_mem)) =
        (requests.0, requests.1, limits.0, limits.1)
    else {
        return None;
    };
    let compiled = CompiledResources {
        default_requests: PerResource {
            cpu: req_cpu,
            memory: req_mem,
        },
        default_limits: PerResource {
            cpu: lim_cpu,
            memory: lim_mem,
        },
        maximum,
        minimum,
    };
    validate_default_bounds(&compiled, problems);
    Some(compiled)
}

/// The defaults raygate fills in must themselves pass the resource rules.
fn validate_default_bounds(resources: &CompiledResources, problems: &mut Vec<String>) {
    for resource in Resource::BOTH {
        let name = resource.as_str();
        let request = resources.default_requests.get(resource);
        let limit = resources.default_limits.get(resource);
        if limit.parsed < request.parsed {
            problems.push(format!(
                "spec.resources.defaults.limits.{name}: {} is below the default request {}",
                limit.text, request.text
            ));
        }
        if let Some(min) = resources.minimum.get(resource)
            && request.parsed < min.parsed
        {
            problems.push(format!(
                "spec.resources.defaults.requests.{name}: {} is below minimum.{name} {}",
                request.text, min.text
            ));
        }
        if let Some(max) = resources.maximum.get(resource)
            && limit.parsed > max.parsed
        {
            problems.push(format!(
                "spec.resources.defaults.limits.{name}: {} is above maximum.{name} {}",
                limit.text, max.text
            ));
        }
    }
}

/// One single port of the plan, as its checks name it.
struct SinglePort<'a> {
    at: String,
    port: u16,
    name: &'a str,
    ray_start_param: Option<&'a str>,
}

/// Every single port of the plan, planned container ports and node ports alike.
fn single_ports(ports: &PortPolicy) -> Vec<SinglePort<'_>> {
    let planned = ports.planned.iter().enumerate().map(|(i, p)| SinglePort {
        at: format!("spec.ports.planned[{i}]"),
        port: p.port,
        name: &p.name,
        ray_start_param: p.ray_start_param.as_deref(),
    });
    let node = ports
        .node_ports
        .iter()
        .enumerate()
        .map(|(i, p)| SinglePort {
            at: format!("spec.ports.nodePorts[{i}]"),
            port: p.port,
            name: &p.name,
            ray_start_param: Some(&p.ray_start_param),
        });
    let head = ports
        .head_ports
        .iter()
        .enumerate()
        .map(|(i, p)| SinglePort {
            at: format!("spec.ports.headPorts[{i}]"),
            port: p.port,
            name: &p.name,
            ray_start_param: None,
        });
    planned.chain(node).chain(head).collect()
}

/// Who already uses a port name or a `rayStartParams` key, for "repeats" problems.
#[derive(Default)]
struct Claims<'a> {
    names: BTreeMap<&'a str, String>,
    params: BTreeMap<&'a str, String>,
}

fn validate_ports(ports: &PortPolicy, problems: &mut Vec<String>) {
    let singles = single_ports(ports);
    let mut claims = Claims::default();
    validate_single_ports(ports, &singles, &mut claims, problems);
    validate_aliases(ports, &claims, problems);
    validate_node_ranges(ports, &mut claims, problems);
    validate_worker_ports(ports, &claims, problems);
    for (i, port) in ports.forbidden.iter().enumerate() {
        if *port == 0 {
            problems.push(format!("spec.ports.forbidden[{i}]: 0 is not a port"));
        }
    }
}

fn validate_single_ports<'a>(
    ports: &PortPolicy,
    singles: &[SinglePort<'a>],
    claims: &mut Claims<'a>,
    problems: &mut Vec<String>,
) {
    let mut numbers = BTreeMap::new();
    for SinglePort {
        at,
        port,
        name,
        ray_start_param,
    } in singles
    {
        if *port == 0 {
            problems.push(format!("{at}.port: 0 is not a port"));
        }
        if name.is_empty() || name.len() > 15 {
            problems.push(format!(
                "{at}.name: {name:?} must be 1 to 15 characters (a Kubernetes port name)"
            ));
        }
        if let Some(other) = claims.names.insert(name, at.clone()) {
            problems.push(format!("{at}.name: {name:?} repeats {other}"));
        }
        if let Some(other) = numbers.insert(*port, at) {
            problems.push(format!("{at}.port: {port} repeats {other}"));
        }
        if ports.forbidden.contains(port) {
            problems.push(format!(
                "{at}.port: {port} is also listed in spec.ports.forbidden"
            ));
        }
        if let Some(param) = ray_start_param
            && let Some(other) = claims.params.insert(param, at.clone())
        {
            problems.push(format!(
                "{at}.rayStartParam: {param:?} is already set by {other}"
            ));
        }
        for (k, range) in ports.node_ranges.iter().enumerate() {
            if range.contains((*port).into()) {
                problems.push(format!(
                    "{at}.port: {port} lies inside spec.ports.nodeRanges[{k}] ({}-{})",
                    range.from, range.to
                ));
            }
        }
        if let Some(workers) = ports.worker_ports
            && workers.contains((*port).into())
        {
            problems.push(format!(
                "{at}.port: {port} lies inside spec.ports.workerPorts ({workers}); Ray refuses to start a node whose pinned port is in its worker range"
            ));
        }
    }
}

fn validate_aliases(ports: &PortPolicy, claims: &Claims<'_>, problems: &mut Vec<String>) {
    for (i, planned) in ports.planned.iter().enumerate() {
        for (j, alias) in planned.aliases.iter().enumerate() {
            let taken = claims.names.get(alias.as_str()).cloned().or_else(|| {
                ports.planned[..i]
                    .iter()
                    .position(|p| p.aliases.contains(alias))
                    .map(|k| format!("an alias of spec.ports.planned[{k}]"))
            });
            if let Some(other) = taken {
                problems.push(format!(
                    "spec.ports.planned[{i}].aliases[{j}]: {alias:?} is already {other}"
                ));
            }
        }
    }
}

fn validate_node_ranges<'a>(
    ports: &'a PortPolicy,
    claims: &mut Claims<'a>,
    problems: &mut Vec<String>,
) {
    for (i, range) in ports.node_ranges.iter().enumerate() {
        let at = format!("spec.ports.nodeRanges[{i}]");
        if range.from == 0 || range.from > range.to {
            problems.push(format!(
                "{at}: from {} to {} is not a range of ports (need 1 <= from <= to)",
                range.from, range.to
            ));
        }
        if let Some(other) = claims
            .params
            .insert(range.ray_start_param.as_str(), at.clone())
        {
            problems.push(format!(
                "{at}.rayStartParam: {:?} is already set by {other}",
                range.ray_start_param
            ));
        }
        for (j, other) in ports.node_ranges.iter().enumerate().skip(i + 1) {
            if range.from <= other.to && other.from <= range.to {
                problems.push(format!(
                    "{at}: {}-{} overlaps spec.ports.nodeRanges[{j}] ({}-{})",
                    range.from, range.to, other.from, other.to
                ));
            }
        }
        if let Some(workers) = ports.worker_ports
            && workers.overlaps(range.from.into(), range.to.into())
        {
            problems.push(format!(
                "{at}: {}-{} overlaps spec.ports.workerPorts ({workers})",
                range.from, range.to
            ));
        }
        for port in &ports.forbidden {
            if range.contains((*port).into()) {
                problems.push(format!(
                    "{at}: {}-{} contains the forbidden port {port}",
                    range.from, range.to
                ));
            }
        }
    }
}

fn validate_worker_ports(ports: &PortPolicy, claims: &Claims<'_>, problems: &mut Vec<String>) {
    let Some(workers) = ports.worker_ports else {
        return;
    };
    if workers.from == 0 || workers.from > workers.to {
        problems.push(format!(
            "spec.ports.workerPorts: from {} to {} is not a range of ports (need 1 <= from <= to)",
            workers.from, workers.to
        ));
    }
    for port in &ports.forbidden {
        if workers.contains((*port).into()) {
            problems.push(format!(
                "spec.ports.workerPorts: {workers} contains the forbidden port {port}"
            ));
        }
    }
    for key in [MIN_WORKER_PORT, MAX_WORKER_PORT] {
        if let Some(other) = claims.params.get(key) {
            problems.push(format!(
                "{other}.rayStartParam: {key:?} is set by spec.ports.workerPorts"
            ));
        }
    }
}

/// The `rayStartParams` keys that bound a node's worker processes.
pub const MIN_WORKER_PORT: &str = "min-worker-port";
pub const MAX_WORKER_PORT: &str = "max-worker-port";

fn validate_external_access(spec: &PolicySpec, problems: &mut Vec<String>) {
    for (i, access) in spec.network_policy.external_access.iter().enumerate() {
        let at = format!("spec.networkPolicy.externalAccess[{i}]");
        if access.namespace_labels.is_empty() {
            problems.push(format!(
                "{at}.namespaceLabels: name at least one label of the namespaces"
            ));
        }
        if access.ports.is_empty() {
            problems.push(format!("{at}.ports: name at least one planned port"));
        }
        for (j, name) in access.ports.iter().enumerate() {
            let known = spec.ports.planned.iter().any(|p| &p.name == name)
                || spec.ports.head_ports.iter().any(|p| &p.name == name);
            if !known {
                problems.push(format!(
                    "{at}.ports[{j}]: {name:?} is not a name in spec.ports.planned or spec.ports.headPorts"
                ));
            }
        }
    }
}

fn validate_operator(spec: &PolicySpec, problems: &mut Vec<String>) {
    let Some(operator) = &spec.network_policy.operator else {
        return;
    };
    let at = "spec.networkPolicy.operator";
    if operator.namespace.is_empty() {
        problems.push(format!(
            "{at}.namespace: name the namespace the KubeRay operator runs in"
        ));
    } else if !is_dns_label(&operator.namespace) {
        problems.push(format!(
            "{at}.namespace: {:?} is not a namespace name (lowercase letters, digits and '-', at most 63)",
            operator.namespace
        ));
    }
    for (key, value) in &operator.pod_labels {
        if let Err(why) = label_key_problem(key) {
            problems.push(format!("{at}.podLabels: key {key:?} {why}"));
        }
        if !is_label_value(value) {
            problems.push(format!(
                "{at}.podLabels.{key}: {value:?} is not a label value (at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit)"
            ));
        }
    }
}

fn validate_api_server_addresses(spec: &PolicySpec, problems: &mut Vec<String>) {
    for (i, cidr) in spec.network_policy.api_server_addresses.iter().enumerate() {
        if !is_cidr(cidr) {
            problems.push(format!(
                "spec.networkPolicy.apiServerAddresses[{i}]: {cidr:?} is not a CIDR (e.g. 198.18.0.1/32)"
            ));
        }
    }
}

fn validate_dns(spec: &PolicySpec, problems: &mut Vec<String>) {
    let dns = &spec.network_policy.dns;
    let at = "spec.networkPolicy.dns";
    if !is_dns_label(&dns.namespace) {
        problems.push(format!(
            "{at}.namespace: {:?} is not a namespace name (lowercase letters, digits and '-', at most 63)",
            dns.namespace
        ));
    }
    if dns.pod_labels.is_empty() && dns.addresses.is_empty() {
        problems.push(format!(
            "{at}: name the DNS Pods' labels (podLabels) or the addresses Pods query (addresses)"
        ));
    }
    for (key, value) in &dns.pod_labels {
        if let Err(why) = label_key_problem(key) {
            problems.push(format!("{at}.podLabels: key {key:?} {why}"));
        }
        if !is_label_value(value) {
            problems.push(format!(
                "{at}.podLabels.{key}: {value:?} is not a label value"
            ));
        }
    }
    if dns.port == 0 {
        problems.push(format!("{at}.port: must be 1-65535"));
    }
    for (i, cidr) in dns.addresses.iter().enumerate() {
        if !is_cidr(cidr) {
            problems.push(format!(
                "{at}.addresses[{i}]: {cidr:?} is not a CIDR (e.g. 169.254.20.10/32)"
            ));
        }
    }
}

/// `address/bits`, as an ipBlock's `cidr` takes it.
fn is_cidr(text: &str) -> bool {
    let Some((address, bits)) = text.split_once('/') else {
        return false;
    };
    let width = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    bits.parse::<u8>().is_ok_and(|b| b <= width) && !bits.starts_with('+')
}

/// An RFC 1123 label: a namespace name.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A label value (empty, or a name part).
fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// The name part of a label key, or a non-empty label value.
fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Why `key` is not a label key: an optional DNS subdomain prefix and `/`, then a name.
fn label_key_problem(key: &str) -> std::result::Result<(), &'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let subdomain =
            !prefix.is_empty() && prefix.len() <= 253 && prefix.split('.').all(is_dns_label);
        if !subdomain {
            return Err("has a prefix that is not a DNS subdomain (lowercase, at most 253)");
        }
    }
    if !is_label_name(name) {
        return Err(
            "is not a label key (a name of at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit, after an optional prefix/)",
        );
    }
    Ok(())
}

fn validate_placement(placement: &PlacementPolicy, problems: &mut Vec<String>) {
    if placement.worker_label.key.is_empty() || placement.worker_label.value.is_empty() {
        problems.push("spec.placement.workerLabel: key and value must not be empty".into());
    }
    if placement.control_plane_label.is_empty() {
        problems.push("spec.placement.controlPlaneLabel: must not be empty".into());
    }
    if placement.master_hostnames.iter().any(String::is_empty) {
        problems.push("spec.placement.masterHostnames: names must not be empty".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in_with(edit: impl Fn(&mut serde_yaml_ng::Value)) -> Result<Policy> {
        let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(BUILT_IN_POLICY).unwrap();
        edit(&mut doc);
        Policy::from_yaml(&serde_yaml_ng::to_string(&doc).unwrap(), "test.yaml")
    }

    #[test]
    fn built_in_policy_is_valid_and_states_the_plan() {
        let policy = Policy::built_in();
        let spec = policy.spec();
        let planned: Vec<(&str, u16)> = spec
            .ports
            .planned
            .iter()
            .map(|p| (p.name.as_str(), p.port))
            .collect();
        assert_eq!(
            planned,
            [
                ("gcs-server", 6380),
                ("client", 10002),
                ("dashboard", 8266),
                ("serve", 8001),
                ("metrics", 8081)
            ]
        );
        assert_eq!(spec.ports.forbidden, [6379, 10001, 8265, 8000, 8080]);
        assert_eq!(
            spec.ports.worker_ports,
            Some(PortRange {
                from: 10003,
                to: 19999
            })
        );
        let node_ports: Vec<(&str, u16)> = spec
            .ports
            .node_ports
            .iter()
            .map(|p| (p.ray_start_param.as_str(), p.port))
            .collect();
        assert_eq!(
            node_ports,
            [
                ("dashboard-agent-grpc-port", 8601),
                ("dashboard-agent-listen-port", 52365),
                ("dashboard-grpc-port", 8602)
            ]
        );
        assert_eq!(spec.default_ray_version, RayVersion(2, 60, 0));
        assert_eq!(spec.placement.master_hostnames, ["gpu-node"]);
        assert_eq!(policy.mode(), Mode::Enforce);
        assert_eq!(policy.action_for(RuleId::ServePortName), Action::Warn);
        assert_eq!(policy.action_for(RuleId::HeadPort), Action::Deny);
    }

    #[test]
    fn unknown_field_names_its_path() {
        let err = Policy::from_yaml(
            &BUILT_IN_POLICY.replace("masterHostnames:", "masterHostname:"),
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.yaml: spec.placement"), "{err}");
        assert!(err.contains("masterHostname"), "{err}");
    }

    #[test]
    fn port_above_65535_is_rejected_with_its_path() {
        let err = Policy::from_yaml(
            &BUILT_IN_POLICY.replace("port: 6380,", "port: 70000,"),
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("spec.ports.planned[0].port"), "{err}");
        assert!(err.contains("70000"), "{err}");
    }

    #[test]
    fn broken_yaml_names_the_line() {
        let err = Policy::from_yaml("spec:\n  ports: [\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.yaml:"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn overlapping_ranges_are_rejected() {
        let err = built_in_with(|doc| {
            doc["spec"]["ports"]["nodeRanges"][1]["from"] = 8350.into();
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("spec.ports.nodeRanges[0]: 8301-8400 overlaps spec.ports.nodeRanges[1]"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = built_in_with(|doc| {
            doc["spec"]["ports"]["nodeRanges"][0]["from"] = 9000.into();
            doc["spec"]["resources"]["defaults"]["limits"]["memory"] = "1Gi".into();
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("nodeRanges[0]: from 9000 to 8400"), "{err}");
        assert!(
            err.contains("limits.memory: 1Gi is below the default request 2Gi"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_rule_is_refused_where_it_is_written() {
        let err = built_in_with(|doc| {
            doc["spec"]["ruleActions"]["ports/nonsense"] = "warn".into();
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("spec.ruleActions.ports/nonsense: unknown rule \"ports/nonsense\"; known rules: ports/head-port,"),
            "{err}"
        );
        assert!(err.contains(" at line "), "{err}");
    }

    #[test]
    fn the_worker_range_must_clear_every_pinned_port() {
        let err = built_in_with(|doc| {
            doc["spec"]["ports"]["workerPorts"]["from"] = 10002.into();
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "spec.ports.planned[1].port: 10002 lies inside spec.ports.workerPorts (10002-19999)"
            ),
            "{err}"
        );
        let err = built_in_with(|doc| {
            doc["spec"]["ports"]["workerPorts"] =
                serde_yaml_ng::from_str("{from: 8000, to: 8350}").unwrap();
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("spec.ports.nodeRanges[0]: 8301-8400 overlaps spec.ports.workerPorts"),
            "{err}"
        );
        assert!(err.contains("contains the forbidden port 8265"), "{err}");
        let err = built_in_with(|doc| {
            doc["spec"]["ports"]["nodePorts"][0]["port"] = 8081.into();
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("spec.ports.nodePorts[0].port: 8081 repeats spec.ports.planned[4]"),
            "{err}"
        );
    }

    #[test]
    fn unverified_network_policy_may_never_deny() {
        let err = built_in_with(|doc| {
            doc["spec"]["networkPolicy"]["unverifiedAction"] = "deny".into();
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("unverifiedAction"), "{err}");
    }

    #[test]
    fn bad_quantity_is_rejected() {
        let err = built_in_with(|doc| {
            doc["spec"]["resources"]["maximum"]["cpu"] = "lots".into();
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("spec.resources.maximum.cpu: \"lots\""),
            "{err}"
        );
    }
}
