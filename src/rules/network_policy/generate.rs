//! The NetworkPolicy a Ray cluster needs, written from the same model the `network-policy/*`
//! rules judge by: the ports of [`needed_for`], the operator's ports of [`operator_ports`],
//! the namespaces of `externalAccess`, DNS as [`check_dns_egress`] wants it and, with in-tree
//! autoscaling, the API server.
//!
//! [`needed_for`]: super::needed_for
//! [`operator_ports`]: super::operator::operator_ports
//! [`check_dns_egress`]: super::check_dns_egress

use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::kuberay_labels::group_labels;
use super::semantics::{NAMESPACE_NAME_LABEL, in_namespace, selecting};
use super::{cluster_label, identifiers, needed_for, operator, submitter};
use crate::policy::Policy;
use crate::ray::{ClusterSource, ClusterSpec, Role};
use crate::yaml_edit::scalar;

/// The label that marks a NetworkPolicy raygate's controller created and may keep up to date.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "raygate");

/// A NetworkPolicy written for one Ray cluster.
#[derive(Debug, Clone)]
pub struct GeneratedPolicy {
    pub name: String,
    /// The whole object, as the API server takes it.
    pub object: Value,
    /// The same object as YAML, with a comment on each rule saying why it is there.
    pub text: String,
}

impl GeneratedPolicy {
    /// The same policy under another name: a replacement that `kubectl apply` puts in place
    /// of the policy of that name.
    pub fn renamed(mut self, name: &str) -> GeneratedPolicy {
        let old_line = format!("\n  name: {}\n", scalar(&self.name));
        let new_line = format!("\n  name: {}\n", scalar(name));
        self.text = self.text.replacen(&old_line, &new_line, 1);
        self.object["metadata"]["name"] = name.into();
        self.name = name.to_owned();
        self
    }

    pub fn network_policy(&self) -> Result<NetworkPolicy, serde_json::Error> {
        serde_json::from_value(self.object.clone())
    }
}

/// The names of the NetworkPolicies of `namespace` among `policies` that select some Pod of
/// the cluster.
pub fn selecting_cluster(
    cluster: &ClusterSpec<'_>,
    namespace: &str,
    policies: &[Arc<NetworkPolicy>],
) -> Vec<String> {
    let in_namespace = in_namespace(policies, namespace);
    let ids = identifiers(cluster.name);
    let mut names: Vec<String> = Vec::new();
    for group in cluster.groups() {
        for policy in selecting(&in_namespace, &group_labels(cluster, &group, &ids)) {
            let name = policy.metadata.name.clone().unwrap_or_default();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Whether some NetworkPolicy of `namespace` among `policies` selects a Pod of the cluster.
pub fn selected_by_any(
    cluster: &ClusterSpec<'_>,
    namespace: &str,
    policies: &[Arc<NetworkPolicy>],
) -> bool {
    !selecting_cluster(cluster, namespace, policies).is_empty()
}

/// Who a rule admits.
enum Peer {
    /// Pods of the policy's namespace with these labels.
    Pods(Vec<(String, String)>),
    /// Pods with `pods` labels in namespaces with `namespaces` labels.
    Namespaced {
        namespaces: Vec<(String, String)>,
        pods: Vec<(String, String)>,
    },
    Addresses(String),
}

/// One port or range, with what listens there.
#[derive(Clone)]
struct Port {
    protocol: &'static str,
    from: u16,
    to: u16,
    what: String,
}

struct Rule {
    why: String,
    peers: Vec<Peer>,
    ports: Vec<Port>,
}

/// The NetworkPolicy the cluster needs, or `None` when its Pods carry no label raygate knows
/// them by: the object has only a `generateName`, or its name is no label value.
pub fn generate(
    cluster: &ClusterSpec<'_>,
    namespace: Option<&str>,
    policy: &Policy,
    api_server_addresses: &[String],
) -> Option<GeneratedPolicy> {
    cluster.root.pointer("/metadata/name")?.as_str()?;
    let (key, value) = cluster_label(cluster)?;
    let selector = vec![(key.to_owned(), value.to_owned())];
    let kind = cluster.source.kind();
    let name = format!("raygate-{}-{}", kind.to_ascii_lowercase(), cluster.name);
    // A head alone never talks to another Pod of its cluster: its traffic to itself is no
    // NetworkPolicy's business.
    let has_workers = cluster.groups().any(|g| g.role == Role::Worker);
    let between = has_workers.then(|| between_pods(cluster, policy));
    let mut ingress: Vec<Rule> = between
        .iter()
        .map(|ports| Rule {
            why: "Between the cluster's Pods: every port the plan pins, the per-node ranges and the worker processes (the Ray each group runs listens on all of them).".to_owned(),
            peers: vec![Peer::Pods(selector.clone())],
            ports: ports.clone(),
        })
        .collect();
    ingress.extend(operator_rule(cluster, policy));
    ingress.extend(submitter_rule(cluster));
    ingress.extend(external_rules(policy));
    let mut egress: Vec<Rule> = between
        .into_iter()
        .map(|ports| Rule {
            why: "To the cluster's other Pods, on the same ports.".to_owned(),
            peers: vec![Peer::Pods(selector.clone())],
            ports,
        })
        .collect();
    egress.push(dns_rule(policy));
    egress.extend(api_server_rule(cluster, api_server_addresses));

    let header = format!(
        "Written by raygate for {kind} {:?}: the least its Ray needs under the plan. Review it and keep it in git; raygate never edits a NetworkPolicy it did not create.",
        cluster.name
    );
    let draft = Draft {
        name: &name,
        namespace,
        selector: &selector,
        ingress: &ingress,
        egress: &egress,
    };
    let (object, text) = (draft.object(), draft.render(&header));
    Some(GeneratedPolicy { name, object, text })
}

/// The ports between the cluster's Pods: the head's list holds every node's, for the Ray each
/// group runs (a port once, in the order first needed).
fn between_pods(cluster: &ClusterSpec<'_>, policy: &Policy) -> Vec<Port> {
    let default = policy.spec().default_ray_version;
    let mut needed: Vec<super::Needed> = Vec::new();
    for group in cluster.groups() {
        let ray = cluster.ray_of(&group, default);
        for need in needed_for(Role::Head, &[], &policy.spec().ports, ray.facts) {
            if !needed
                .iter()
                .any(|n| (n.from, n.to) == (need.from, need.to))
            {
                needed.push(need);
            }
        }
    }
    needed
        .into_iter()
        .map(|need| Port {
            protocol: "TCP",
            from: u16::try_from(need.from).unwrap_or(u16::MAX),
            to: u16::try_from(need.to).unwrap_or(u16::MAX),
            what: need.what,
        })
        .collect()
}

fn operator_rule(cluster: &ClusterSpec<'_>, policy: &Policy) -> Option<Rule> {
    let operator = policy.spec().network_policy.operator.as_ref()?;
    let head = cluster.groups().find(|g| g.role == Role::Head)?;
    let ports = operator::operator_ports(cluster, &head);
    if ports.is_empty() {
        return None;
    }
    let why = match cluster.creator() {
        ClusterSource::RayService => {
            "From the KubeRay operator: it puts serveConfigV2 and reads the applications' status on the dashboard, and checks the Serve proxy on the serve port (KubeRay v1.5.0)."
        }
        _ => {
            "From the KubeRay operator: it follows the job on the dashboard, and submits it there in HTTPMode (KubeRay v1.5.0)."
        }
    };
    Some(Rule {
        why: why.to_owned(),
        peers: vec![Peer::Namespaced {
            namespaces: vec![(NAMESPACE_NAME_LABEL.to_owned(), operator.namespace.clone())],
            pods: operator.pod_labels.clone().into_iter().collect(),
        }],
        ports: ports
            .into_iter()
            .map(|(name, number)| Port {
                protocol: "TCP",
                from: number,
                to: number,
                what: name.to_owned(),
            })
            .collect(),
    })
}

/// A RayJob in K8sJobMode (the default) runs `ray job submit` in a Job named after it, which
/// talks to the head's dashboard (`network-policy/submitter-access`).
fn submitter_rule(cluster: &ClusterSpec<'_>) -> Option<Rule> {
    if !submitter::runs_submitter(cluster) {
        return None;
    }
    let head = cluster.groups().find(|g| g.role == Role::Head)?;
    let &(_, dashboard) = operator::operator_ports(cluster, &head).first()?;
    Some(Rule {
        why: "From the RayJob's submitter Pod (the Job controller labels it with the Job's name, which KubeRay gives the RayJob's): `ray job submit` talks to the dashboard.".to_owned(),
        peers: vec![Peer::Pods(vec![(
            submitter::JOB_NAME_LABEL.to_owned(),
            cluster.name.to_owned(),
        )])],
        ports: vec![Port {
            protocol: "TCP",
            from: dashboard,
            to: dashboard,
            what: "dashboard".to_owned(),
        }],
    })
}

fn planned_port(policy: &Policy, name: &str) -> Option<u16> {
    let ports = &policy.spec().ports;
    ports
        .planned
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.port)
        .or_else(|| {
            ports
                .head_ports
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.port)
        })
}

fn external_rules(policy: &Policy) -> Vec<Rule> {
    policy
        .spec()
        .network_policy
        .external_access
        .iter()
        .map(|access| Rule {
            why: "From the namespaces spec.networkPolicy.externalAccess names (Prometheus, notebooks), to the ports it names.".to_owned(),
            peers: vec![Peer::Namespaced {
                namespaces: access.namespace_labels.clone().into_iter().collect(),
                pods: Vec::new(),
            }],
            ports: access
                .ports
                .iter()
                .filter_map(|name| {
                    let port = planned_port(policy, name)?;
                    Some(Port {
                        protocol: "TCP",
                        from: port,
                        to: port,
                        what: name.clone(),
                    })
                })
                .collect(),
        })
        .collect()
}

fn dns_rule(policy: &Policy) -> Rule {
    let dns = &policy.spec().network_policy.dns;
    let mut peers = Vec::new();
    if !dns.pod_labels.is_empty() {
        peers.push(Peer::Namespaced {
            namespaces: vec![(NAMESPACE_NAME_LABEL.to_owned(), dns.namespace.clone())],
            pods: dns.pod_labels.clone().into_iter().collect(),
        });
    }
    peers.extend(dns.addresses.iter().cloned().map(Peer::Addresses));
    Rule {
        why: "To the cluster's DNS: workers find the head through its Service name.".to_owned(),
        peers,
        ports: ["UDP", "TCP"]
            .into_iter()
            .map(|protocol| Port {
                protocol,
                from: dns.port,
                to: dns.port,
                what: "dns".to_owned(),
            })
            .collect(),
    }
}

fn api_server_rule(cluster: &ClusterSpec<'_>, addresses: &[String]) -> Option<Rule> {
    let autoscaling = cluster
        .spec
        .get("enableInTreeAutoscaling")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !autoscaling {
        return None;
    }
    let (peers, why) = if addresses.is_empty() {
        (
            vec![Peer::Addresses("0.0.0.0/0".to_owned())],
            "To the API server: the in-tree autoscaler beside the head scales the cluster through it. Its address is not known here: narrow 0.0.0.0/0 to the endpoints of `kubectl get endpoints kubernetes -n default`, or set spec.networkPolicy.apiServerAddresses.",
        )
    } else {
        (
            addresses.iter().cloned().map(Peer::Addresses).collect(),
            "To the API server: the in-tree autoscaler beside the head scales the cluster through it (most CNIs judge the endpoint's port, after the Service's DNAT).",
        )
    };
    Some(Rule {
        why: why.to_owned(),
        peers,
        ports: [443, 6443]
            .into_iter()
            .map(|port| Port {
                protocol: "TCP",
                from: port,
                to: port,
                what: "https".to_owned(),
            })
            .collect(),
    })
}

fn labels_value(labels: &[(String, String)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn peer_value(peer: &Peer) -> Value {
    match peer {
        Peer::Pods(labels) => json!({"podSelector": {"matchLabels": labels_value(labels)}}),
        Peer::Namespaced { namespaces, pods } => {
            let mut peer = json!({"namespaceSelector": {"matchLabels": labels_value(namespaces)}});
            if !pods.is_empty() {
                peer["podSelector"] = json!({"matchLabels": labels_value(pods)});
            }
            peer
        }
        Peer::Addresses(cidr) => json!({"ipBlock": {"cidr": cidr}}),
    }
}

fn port_value(port: &Port) -> Value {
    let mut value = json!({"protocol": port.protocol, "port": port.from});
    if port.to != port.from {
        value["endPort"] = port.to.into();
    }
    value
}

fn rules_value(rules: &[Rule], field: &str) -> Value {
    rules
        .iter()
        .map(|rule| {
            json!({
                field: rule.peers.iter().map(peer_value).collect::<Vec<_>>(),
                "ports": rule.ports.iter().map(port_value).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// One generated policy before it is written: the same rules give its object and its text.
struct Draft<'a> {
    name: &'a str,
    namespace: Option<&'a str>,
    selector: &'a [(String, String)],
    ingress: &'a [Rule],
    egress: &'a [Rule],
}

impl Draft<'_> {
    fn object(&self) -> Value {
        let mut metadata = json!({"name": self.name});
        if let Some(namespace) = self.namespace {
            metadata["namespace"] = namespace.into();
        }
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata,
            "spec": {
                "podSelector": {"matchLabels": labels_value(self.selector)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": rules_value(self.ingress, "from"),
                "egress": rules_value(self.egress, "to"),
            }
        })
    }

    fn render(&self, header: &str) -> String {
        let mut out = String::new();
        comment(&mut out, "", header);
        out.push_str("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n");
        let _ = writeln!(out, "  name: {}", scalar(self.name));
        if let Some(namespace) = self.namespace {
            let _ = writeln!(out, "  namespace: {}", scalar(namespace));
        }
        out.push_str("spec:\n");
        comment(
            &mut out,
            "  ",
            "Every Pod of the cluster, head and workers.",
        );
        let _ = writeln!(
            out,
            "  podSelector: {{matchLabels: {}}}",
            flow_labels(self.selector)
        );
        out.push_str("  policyTypes: [Ingress, Egress]\n");
        render_rules(&mut out, "from", self.ingress);
        render_rules(&mut out, "to", self.egress);
        out
    }
}

/// `{k: v, ...}` with each key and value quoted where YAML needs it.
fn flow_labels(labels: &[(String, String)]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}: {}", scalar(k), scalar(v)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

fn render_peer(peer: &Peer) -> String {
    match peer {
        Peer::Pods(labels) => format!("podSelector: {{matchLabels: {}}}", flow_labels(labels)),
        Peer::Namespaced { namespaces, pods } if pods.is_empty() => {
            format!(
                "namespaceSelector: {{matchLabels: {}}}",
                flow_labels(namespaces)
            )
        }
        Peer::Namespaced { namespaces, pods } => format!(
            "namespaceSelector: {{matchLabels: {}}}\n      podSelector: {{matchLabels: {}}}",
            flow_labels(namespaces),
            flow_labels(pods)
        ),
        Peer::Addresses(cidr) => format!("ipBlock: {{cidr: {}}}", scalar(cidr)),
    }
}

fn render_rules(out: &mut String, field: &str, rules: &[Rule]) {
    let key = if field == "from" { "ingress" } else { "egress" };
    if rules.is_empty() {
        comment(out, "  ", &format!("No {key} at all: nothing needs it."));
        let _ = writeln!(out, "  {key}: []");
        return;
    }
    let _ = writeln!(out, "  {key}:");
    for rule in rules {
        comment(out, "  ", &rule.why);
        for (i, peer) in rule.peers.iter().enumerate() {
            let lead = if i == 0 {
                format!("  - {field}:\n")
            } else {
                String::new()
            };
            let _ = writeln!(out, "{lead}    - {}", render_peer(peer));
        }
        let _ = writeln!(out, "    ports:");
        for port in &rule.ports {
            let end = if port.to == port.from {
                String::new()
            } else {
                format!(", endPort: {}", port.to)
            };
            let _ = writeln!(
                out,
                "    - {{protocol: {}, port: {}{end}}}  # {}",
                port.protocol, port.from, port.what
            );
        }
    }
}

/// `text` as `#` lines under `indent`, wrapped near 96 columns.
fn comment(out: &mut String, indent: &str, text: &str) {
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && indent.len() + 2 + line.len() + word.len() > 96 {
            let _ = writeln!(out, "{indent}# {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}# {line}");
    }
}
