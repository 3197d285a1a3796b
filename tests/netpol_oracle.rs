//! The SIG-Network reference implementation as the oracle for NetworkPolicy semantics
//! (tests/netpol-oracle: kube-network-policies v0.8.0's own evaluation code, fed the policies
//! as the API server defaults, validates and stores them; built from the Go module proxy by
//! scripts/netpol-oracle.sh, whose main.go header says exactly what it evaluates): raygate's
//! `rules::network_policy::connection_allowed` must answer every query of a deterministic,
//! seeded corpus as the oracle does. Fails, never skips, when the oracle cannot be built.
//!
//! The corpus: Pods labelled as KubeRay v1.5.0 labels Ray Pods (plus user labels), a kube-dns
//! Pod in kube-system, an impostor kube-dns in another namespace and other Pods; namespaces
//! with and without a written `kubernetes.io/metadata.name` label (one written wrong); hand-
//! written policy sets for each feature (policyTypes and its defaulting, missing vs empty
//! lists, a policy without spec, selectors with every operator on KubeRay's labels,
//! namespaceSelectors, DNS egress, ipBlock with except, numbered, ranged and named ports,
//! protocols, a Pod's traffic to itself) and random sets built from the same parts. Queries:
//! Pod pairs on Ray's planned ports (and the edges of its ranges), the Pods' declared ports
//! and DNS (53/UDP, 53/TCP), plus probes aimed at each port entry of the set (its number, the
//! ones next to its range, another protocol, a named port's number on every protocol).

#[path = "support/go_oracle.rs"]
mod go_oracle;
#[path = "support/netpol_oracle_io.rs"]
mod netpol_oracle_io;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use netpol_oracle_io::*;
use raygate::rules::network_policy::connection_allowed;
use serde_json::{Value, json};

const SEED: u64 = 0x6e65_7470_6f6c_0001;
const RANDOM_SCENARIOS: usize = 80;
const RANDOM_QUERIES: usize = 32;

fn oracle() -> PathBuf {
    go_oracle::build("scripts/netpol-oracle.sh", "the NetworkPolicy oracle")
}

/// The labels KubeRay v1.5.0 puts on a Ray Pod, plus the template's `user` labels.
fn ray_labels(cluster: &str, node_type: &str, group: &str, user: &[(&str, &str)]) -> Labels {
    let mut l = labels(user);
    l.extend(labels(&[
        ("ray.io/cluster", cluster),
        ("ray.io/node-type", node_type),
        ("ray.io/group", group),
        ("ray.io/identifier", &format!("{cluster}-{node_type}")),
        ("ray.io/is-ray-node", "yes"),
        ("app.kubernetes.io/name", "kuberay"),
        ("app.kubernetes.io/created-by", "kuberay-operator"),
    ]));
    l
}

/// Namespaces as written: `ray-other` carries a wrong name label and `apps` none; the API
/// server sets both to the namespace's name.
fn namespaces() -> BTreeMap<String, Labels> {
    [
        (
            "ray-team",
            labels(&[(NAME_LABEL, "ray-team"), ("team", "ml"), ("env", "prod")]),
        ),
        (
            "ray-other",
            labels(&[(NAME_LABEL, "ray-team"), ("team", "ml"), ("env", "dev")]),
        ),
        ("kube-system", labels(&[(NAME_LABEL, "kube-system")])),
        (
            "monitoring",
            labels(&[(NAME_LABEL, "monitoring"), ("purpose", "observability")]),
        ),
        ("apps", labels(&[("team", "web")])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn pods() -> Vec<Pod> {
    let head_ports: &[(&str, u16, &str)] = &[
        ("gcs-server", 6380, "TCP"),
        ("client", 10002, "TCP"),
        ("dashboard", 8266, "TCP"),
        ("serve", 8001, "TCP"),
        ("metrics", 8081, "TCP"),
    ];
    let mut alpha_head_ports = head_ports.to_vec();
    alpha_head_ports.push(("agent-grpc", 8601, "TCP"));
    vec![
        pod(
            "alpha-head",
            "ray-team",
            "198.18.1.10",
            ray_labels(
                "alpha",
                "head",
                "headgroup",
                &[("team", "ml"), ("app", "alpha")],
            ),
            &alpha_head_ports,
        ),
        pod(
            "alpha-cpu",
            "ray-team",
            "198.18.1.11",
            ray_labels("alpha", "worker", "cpu", &[("team", "ml")]),
            &[("metrics", 8081, "TCP"), ("agent-http", 52365, "TCP")],
        ),
        // Declares `metrics` and `agent-grpc` as UDP: TCP rules naming them do not match.
        pod(
            "alpha-gpu",
            "ray-team",
            "198.18.1.12",
            ray_labels(
                "alpha",
                "worker",
                "gpu",
                &[("team", "ml"), ("accelerator", "gpu")],
            ),
            &[("metrics", 8081, "UDP"), ("agent-grpc", 8601, "UDP")],
        ),
        pod(
            "beta-head",
            "ray-team",
            "198.18.1.20",
            ray_labels("beta", "head", "headgroup", &[("app", "beta")]),
            head_ports,
        ),
        pod(
            "beta-worker",
            "ray-team",
            "198.18.1.21",
            ray_labels("beta", "worker", "workers", &[("app", "beta")]),
            &[("metrics", 8081, "TCP"), ("serve", 8001, "SCTP")],
        ),
        pod(
            "notebook",
            "ray-team",
            "198.18.1.30",
            labels(&[("app", "notebook"), ("team", "ml")]),
            &[("metrics", 8081, "TCP")],
        ),
        pod(
            "gamma-head",
            "ray-other",
            "198.18.2.10",
            ray_labels("gamma", "head", "headgroup", &[]),
            &head_ports[..3],
        ),
        pod(
            "gamma-worker",
            "ray-other",
            "198.18.2.11",
            ray_labels("gamma", "worker", "small-group", &[("team", "ml")]),
            &[("metrics", 8081, "TCP")],
        ),
        pod(
            "batch-client",
            "ray-other",
            "198.18.2.20",
            labels(&[("app", "client"), ("team", "ml")]),
            &[],
        ),
        pod(
            "coredns",
            "kube-system",
            "198.18.3.10",
            labels(&[("k8s-app", "kube-dns"), ("pod-template-hash", "7db6d8ff4d")]),
            &[
                ("dns", 53, "UDP"),
                ("dns-tcp", 53, "TCP"),
                ("metrics", 9153, "TCP"),
            ],
        ),
        pod(
            "metrics-server",
            "kube-system",
            "198.18.3.20",
            labels(&[("k8s-app", "metrics-server")]),
            &[("https", 10250, "TCP")],
        ),
        pod(
            "prometheus",
            "monitoring",
            "198.19.4.10",
            labels(&[("app.kubernetes.io/name", "prometheus")]),
            &[("web", 9090, "TCP")],
        ),
        pod(
            "web",
            "apps",
            "198.19.5.10",
            labels(&[("app", "web")]),
            &[("serve", 8001, "TCP")],
        ),
        // A kube-dns look-alike outside kube-system.
        pod(
            "fake-dns",
            "apps",
            "198.19.5.53",
            labels(&[("k8s-app", "kube-dns")]),
            &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
        ),
    ]
}

fn dns_rule() -> Value {
    json!({
        "to": [{
            "namespaceSelector": match_labels(&[(NAME_LABEL, "kube-system")]),
            "podSelector": match_labels(&[("k8s-app", "kube-dns")]),
        }],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    })
}

/// The ports of the platform's plan that Ray nodes dial each other on.
fn plan_ports() -> Value {
    json!([
        {"port": 6380}, {"port": 10002}, {"port": 8266}, {"port": 8001}, {"port": 8081},
        {"port": 8301, "endPort": 8600}, {"port": 8601}, {"port": 52365},
        {"port": 10003, "endPort": 19999},
    ])
}

fn dns_egress(namespace: &str, name: &str, to: Value, ports: Value) -> Value {
    np(
        namespace,
        name,
        json!({
            "podSelector": match_labels(&[("ray.io/is-ray-node", "yes")]),
            "policyTypes": ["Egress"],
            "egress": [{"to": to, "ports": ports}],
        }),
    )
}

fn dns_ports() -> Value {
    json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
}

/// One policy set per feature.
fn written_scenarios() -> Vec<(String, Vec<Value>)> {
    let kube_dns = match_labels(&[("k8s-app", "kube-dns")]);
    let kube_system = match_labels(&[(NAME_LABEL, "kube-system")]);
    let alpha = match_labels(&[("ray.io/cluster", "alpha")]);
    let deny_all = |ns: &str, name: &str| {
        np(
            ns,
            name,
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        )
    };
    let cluster = |ns: &str, name: &str| {
        let own = match_labels(&[("ray.io/cluster", name)]);
        np(
            ns,
            name,
            json!({
                "podSelector": own,
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": own}]}],
                "egress": [{"to": [{"podSelector": own}]}, dns_rule()],
            }),
        )
    };
    let s = |name: &str, policies: Vec<Value>| (name.to_owned(), policies);
    vec![
        s("no policies", vec![]),
        s(
            "a policy without spec",
            vec![policy("ray-team", "no-spec", None)],
        ),
        s("spec {}", vec![np("ray-team", "empty", json!({}))]),
        s(
            "an empty podSelector alone",
            vec![np("ray-other", "all", json!({"podSelector": {}}))],
        ),
        s(
            "policyTypes [] with an ingress rule",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": [],
                       "ingress": [{"from": [{"podSelector": alpha}]}]}),
            )],
        ),
        s(
            "policyTypes missing, egress []",
            vec![np("ray-team", "p", json!({"podSelector": alpha, "egress": []}))],
        ),
        s(
            "policyTypes missing, egress rules, ingress missing",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": match_labels(&[("ray.io/node-type", "worker")]),
                       "egress": [dns_rule()]}),
            )],
        ),
        s(
            "policyTypes [Egress], egress missing",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": match_expressions(&[expression("ray.io/is-ray-node", "Exists", &[])]),
                       "policyTypes": ["Egress"]}),
            )],
        ),
        s(
            "policyTypes [Egress], egress []",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": match_expressions(&[expression("ray.io/is-ray-node", "Exists", &[])]),
                       "policyTypes": ["Egress"], "egress": []}),
            )],
        ),
        s(
            "policyTypes [Ingress], ingress []",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}),
            )],
        ),
        s(
            "both policyTypes, one empty rule each",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                       "ingress": [{}], "egress": [{}]}),
            )],
        ),
        s(
            "policyTypes [Ingress] ignores egress rules",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"podSelector": {}}]}],
                       "egress": [{"to": [{"ipBlock": {"cidr": "198.18.3.10/32"}}]}]}),
            )],
        ),
        s(
            "policyTypes [Egress] ignores ingress rules",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": alpha, "policyTypes": ["Egress"],
                       "ingress": [{"from": [{"podSelector": alpha}]}],
                       "egress": [{"to": [{"podSelector": alpha}]}]}),
            )],
        ),
        s(
            "policyTypes [Egress, Ingress]",
            vec![np(
                "ray-other",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Egress", "Ingress"],
                       "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 6380}]}],
                       "egress": [dns_rule()]}),
            )],
        ),
        s(
            "KubeRay clusters isolated from each other",
            vec![
                cluster("ray-team", "alpha"),
                cluster("ray-team", "beta"),
                cluster("ray-other", "gamma"),
            ],
        ),
        s(
            "head and workers admit their cluster on the plan's ports",
            vec![
                np(
                    "ray-team",
                    "head",
                    json!({
                        "podSelector": match_labels(&[("ray.io/identifier", "alpha-head")]),
                        "ingress": [{
                            "from": [{"podSelector": match_labels(&[("ray.io/cluster", "alpha"), ("ray.io/node-type", "worker")])}],
                            "ports": plan_ports(),
                        }],
                    }),
                ),
                np(
                    "ray-team",
                    "workers",
                    json!({
                        "podSelector": match_labels(&[("ray.io/identifier", "alpha-worker")]),
                        "ingress": [{
                            "from": [{"podSelector": alpha}],
                            "ports": [{"port": 8301, "endPort": 8600}, {"port": 10003, "endPort": 19999},
                                      {"port": "metrics"}, {"port": "agent-grpc"}],
                        }],
                    }),
                ),
            ],
        ),
        s(
            "NotIn and DoesNotExist exclude Ray pods",
            vec![np(
                "ray-team",
                "p",
                json!({
                    "podSelector": match_expressions(&[expression("ray.io/node-type", "NotIn", &["head"])]),
                    "ingress": [{"from": [{"podSelector": match_expressions(&[
                        expression("ray.io/cluster", "NotIn", &["beta"]),
                        expression("ray.io/group", "DoesNotExist", &[]),
                    ])}]}],
                }),
            )],
        ),
        s(
            "Exists, In and matchLabels on KubeRay's labels",
            vec![np(
                "ray-team",
                "p",
                json!({
                    "podSelector": match_expressions(&[expression("ray.io/is-ray-node", "Exists", &[])]),
                    "ingress": [{"from": [
                        {"podSelector": match_expressions(&[expression("ray.io/identifier", "In", &["alpha-head", "beta-head"])])},
                        {"podSelector": match_labels(&[("app.kubernetes.io/created-by", "kuberay-operator"), ("ray.io/group", "gpu")])},
                    ]}],
                }),
            )],
        ),
        s(
            "non-Ray pods only",
            vec![np(
                "ray-team",
                "p",
                json!({
                    "podSelector": match_expressions(&[expression("ray.io/cluster", "DoesNotExist", &[])]),
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"namespaceSelector": {}}]}],
                    "egress": [{"to": [{"podSelector": match_expressions(&[expression("app.kubernetes.io/name", "NotIn", &["kuberay"])])}]}],
                }),
            )],
        ),
        s(
            "namespaceSelector on a namespace label",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": match_labels(&[("team", "ml")])}]}]}),
            )],
        ),
        s(
            "namespaceSelector NotIn with a podSelector",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"from": [{
                    "namespaceSelector": match_expressions(&[expression("env", "NotIn", &["prod"])]),
                    "podSelector": match_labels(&[("app", "client")]),
                }]}]}),
            )],
        ),
        s(
            "namespaceSelector on the name label, written wrong on ray-other",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": match_labels(&[(NAME_LABEL, "ray-team")])}]}]}),
            )],
        ),
        s(
            "namespaceSelector on the name label of a namespace written without it",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": alpha, "ingress": [
                    {"from": [{"namespaceSelector": match_labels(&[(NAME_LABEL, "apps")])}], "ports": [{"port": 8001}]},
                    {"from": [{
                        "namespaceSelector": match_expressions(&[expression(NAME_LABEL, "In", &["monitoring", "apps"])]),
                        "podSelector": match_labels(&[("app", "web")]),
                    }]},
                ]}),
            )],
        ),
        s(
            "namespaceSelector {} alone and with a podSelector",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [
                    {"from": [{"namespaceSelector": {}}], "ports": [{"port": 8081}]},
                    {"from": [{"namespaceSelector": {}, "podSelector": match_labels(&[("app.kubernetes.io/name", "prometheus")])}],
                     "ports": [{"port": "metrics"}]},
                ]}),
            )],
        ),
        s(
            "namespaceSelector Exists and DoesNotExist",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"from": [
                    {"namespaceSelector": match_expressions(&[expression("purpose", "Exists", &[])])},
                    {"namespaceSelector": match_expressions(&[expression("team", "DoesNotExist", &[])]), "podSelector": kube_dns},
                ]}]}),
            )],
        ),
        s(
            "DNS egress to kube-system/kube-dns",
            vec![
                dns_egress(
                    "ray-team",
                    "dns",
                    json!([{"namespaceSelector": kube_system, "podSelector": kube_dns}]),
                    dns_ports(),
                ),
                dns_egress(
                    "ray-other",
                    "dns",
                    json!([{"namespaceSelector": kube_system, "podSelector": kube_dns}]),
                    dns_ports(),
                ),
            ],
        ),
        s(
            "DNS egress to all of kube-system",
            vec![dns_egress(
                "ray-team",
                "dns",
                json!([{ "namespaceSelector": kube_system }]),
                dns_ports(),
            )],
        ),
        s(
            "DNS egress with a podSelector alone (own namespace)",
            vec![dns_egress(
                "ray-team",
                "dns",
                json!([{ "podSelector": kube_dns }]),
                dns_ports(),
            )],
        ),
        s(
            "DNS egress to kube-dns in every namespace",
            vec![dns_egress(
                "ray-team",
                "dns",
                json!([{"namespaceSelector": {}, "podSelector": kube_dns}]),
                dns_ports(),
            )],
        ),
        s(
            "DNS egress to the wrong namespace",
            vec![dns_egress(
                "ray-team",
                "dns",
                json!([{"namespaceSelector": match_labels(&[(NAME_LABEL, "apps")]), "podSelector": kube_dns}]),
                dns_ports(),
            )],
        ),
        s(
            "DNS egress by named ports",
            vec![dns_egress(
                "ray-team",
                "dns",
                json!([{"namespaceSelector": {}, "podSelector": kube_dns}]),
                json!([{"port": "dns", "protocol": "UDP"}, {"port": "dns-tcp"}]),
            )],
        ),
        s(
            "DNS egress by named ports with the wrong protocols",
            vec![dns_egress(
                "ray-team",
                "dns",
                json!([{"namespaceSelector": {}, "podSelector": kube_dns}]),
                json!([{"port": "dns"}, {"port": "dns-tcp", "protocol": "UDP"}]),
            )],
        ),
        s(
            "DNS egress on UDP only",
            vec![dns_egress(
                "ray-team",
                "dns",
                json!([{"namespaceSelector": kube_system, "podSelector": kube_dns}]),
                json!([{"port": 53, "protocol": "UDP"}]),
            )],
        ),
        s(
            "DNS egress to the kube-dns Pod's /32",
            vec![dns_egress(
                "ray-team",
                "dns",
                json!([{"ipBlock": {"cidr": "198.18.3.10/32"}}]),
                dns_ports(),
            )],
        ),
        s(
            "egress to the non-DNS pods of kube-system",
            vec![dns_egress(
                "ray-team",
                "p",
                json!([{"namespaceSelector": kube_system,
                        "podSelector": match_expressions(&[expression("k8s-app", "NotIn", &["kube-dns"])])}]),
                json!(null),
            )],
        ),
        s(
            "ipBlock: the test range except kube-system",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"ipBlock": {"cidr": "198.18.0.0/15", "except": ["198.18.3.0/24"]}}]}]}),
            )],
        ),
        s(
            "ipBlock whose excepts cover all of it",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                       "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.1.0/24", "except": ["198.18.1.0/25", "198.18.1.128/25"]}}]}],
                       "egress": [{"to": [{"ipBlock": {"cidr": "198.18.2.0/24", "except": ["198.18.2.0/25", "198.18.2.128/25"]}}]}]}),
            )],
        ),
        s(
            "ipBlock /32s of pod IPs and a CIDR with host bits",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"from": [
                    {"ipBlock": {"cidr": "198.18.1.11/32"}},
                    {"ipBlock": {"cidr": "198.18.2.77/24"}},
                    {"ipBlock": {"cidr": "198.19.5.10/32"}},
                ]}]}),
            )],
        ),
        s(
            "ipBlock 0.0.0.0/0 except one pod",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["198.18.1.10/32"]}}]}]}),
            )],
        ),
        s(
            "ports: numbers without protocol, UDP and SCTP",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"ports": [
                    {"port": 6380}, {"port": 8601, "protocol": "UDP"}, {"port": 8266, "protocol": "SCTP"},
                ]}]}),
            )],
        ),
        s(
            "ports: ranges with endPort",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"ports": [
                    {"port": 8301, "endPort": 8600}, {"port": 10003, "endPort": 19999, "protocol": "TCP"},
                    {"port": 52365, "endPort": 52365}, {"port": 8601, "endPort": 8700, "protocol": "UDP"},
                ]}]}),
            )],
        ),
        s(
            "named ports resolved on the destination by name and protocol",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"ports": [
                    {"port": "metrics"}, {"port": "agent-grpc", "protocol": "TCP"},
                    {"port": "serve", "protocol": "SCTP"}, {"port": "gcs-server", "protocol": "UDP"},
                    {"port": "agent-http", "protocol": "TCP"},
                ]}]}),
            )],
        ),
        s(
            "named ports in egress rules",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                    {"to": [{"podSelector": {}}], "ports": [{"port": "metrics"}, {"port": "gcs-server"},
                                                         {"port": "agent-grpc", "protocol": "UDP"},
                                                         {"port": "metrics", "protocol": "UDP"}]},
                    dns_rule(),
                ]}),
            )],
        ),
        s(
            "a protocol alone and an empty port entry",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}, {}]}]}),
            )],
        ),
        s(
            "a rule without ports and one with ports: []",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "ingress": [
                    {"from": [{"podSelector": alpha}]},
                    {"from": [{"namespaceSelector": match_labels(&[("purpose", "observability")])}], "ports": []},
                ]}),
            )],
        ),
        s(
            "from: [] and to: []",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                       "ingress": [{"from": [], "ports": [{"port": 8081}]}],
                       "egress": [{"to": [], "ports": [{"port": 53, "protocol": "UDP"}]}]}),
            )],
        ),
        s(
            "policies add up",
            vec![
                deny_all("ray-team", "deny-all"),
                cluster("ray-team", "alpha"),
                np(
                    "ray-team",
                    "dns",
                    json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_rule()]}),
                ),
            ],
        ),
        s(
            "a Pod's traffic to itself under deny-all",
            vec![
                deny_all("ray-team", "deny-all"),
                deny_all("kube-system", "deny-all"),
                deny_all("apps", "deny-all"),
            ],
        ),
        s(
            "explicitly empty selectors",
            vec![np(
                "ray-team",
                "p",
                json!({"podSelector": {"matchLabels": {}, "matchExpressions": []},
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {}},
                                              "namespaceSelector": {"matchExpressions": []}}]}]}),
            )],
        ),
        s(
            "policies in other namespaces",
            vec![
                np(
                    "kube-system",
                    "dns",
                    json!({"podSelector": kube_dns, "ingress": [{
                        "from": [{"namespaceSelector": match_labels(&[("team", "ml")])}],
                        "ports": [{"port": "dns", "protocol": "UDP"}, {"port": "dns-tcp", "protocol": "TCP"}],
                    }]}),
                ),
                np(
                    "ray-other",
                    "gamma",
                    json!({"podSelector": match_labels(&[("ray.io/cluster", "gamma")]),
                           "ingress": [{"from": [{"podSelector": {}}]}]}),
                ),
                deny_all("apps", "deny-all"),
            ],
        ),
        s(
            "a realistic Ray platform set",
            vec![
                deny_all("ray-team", "default-deny"),
                np(
                    "ray-team",
                    "alpha",
                    json!({
                        "podSelector": alpha,
                        "policyTypes": ["Ingress", "Egress"],
                        "ingress": [
                            {"from": [{"podSelector": alpha}], "ports": plan_ports()},
                            {"from": [{"namespaceSelector": match_labels(&[(NAME_LABEL, "monitoring")]),
                                       "podSelector": match_labels(&[("app.kubernetes.io/name", "prometheus")])}],
                             "ports": [{"port": "metrics"}]},
                            {"from": [{"podSelector": match_labels(&[("app", "notebook")])}],
                             "ports": [{"port": "client"}, {"port": "dashboard"}]},
                        ],
                        "egress": [
                            {"to": [{"podSelector": alpha}], "ports": plan_ports()},
                            dns_rule(),
                            {"to": [{"ipBlock": {"cidr": "198.19.5.10/32"}}], "ports": [{"port": 8001, "protocol": "TCP"}]},
                        ],
                    }),
                ),
            ],
        ),
    ]
    .into_iter()
    .map(|(name, policies)| {
        // `ports: null` stands for a rule without ports.
        let policies = policies.into_iter().map(drop_nulls).collect();
        (name, policies)
    })
    .collect()
}

fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(drop_nulls).collect()),
        v => v,
    }
}

// The parts random policy sets are built from.

fn random_pod_selector(rng: &mut Rng) -> Value {
    let choices = [
        json!({}),
        match_labels(&[("ray.io/cluster", "alpha")]),
        match_labels(&[("ray.io/cluster", "gamma")]),
        match_labels(&[("ray.io/node-type", "head")]),
        match_labels(&[("ray.io/node-type", "worker"), ("ray.io/cluster", "beta")]),
        match_labels(&[("ray.io/identifier", "alpha-worker")]),
        match_labels(&[
            ("app.kubernetes.io/created-by", "kuberay-operator"),
            ("ray.io/group", "gpu"),
        ]),
        match_labels(&[("team", "ml")]),
        match_labels(&[("k8s-app", "kube-dns")]),
        match_expressions(&[expression("ray.io/node-type", "In", &["head", "worker"])]),
        match_expressions(&[expression("ray.io/is-ray-node", "Exists", &[])]),
        match_expressions(&[expression("ray.io/cluster", "NotIn", &["beta", "gamma"])]),
        match_expressions(&[expression("ray.io/group", "DoesNotExist", &[])]),
        match_expressions(&[
            expression("ray.io/identifier", "In", &["alpha-head", "gamma-head"]),
            expression("team", "Exists", &[]),
        ]),
        match_expressions(&[expression("app", "NotIn", &["notebook", "web"])]),
        json!({"matchLabels": {"app.kubernetes.io/name": "kuberay"},
               "matchExpressions": [expression("ray.io/node-type", "NotIn", &["head"])]}),
    ];
    rng.pick(&choices).clone()
}

fn random_namespace_selector(rng: &mut Rng) -> Value {
    let choices = [
        json!({}),
        match_labels(&[(NAME_LABEL, "kube-system")]),
        match_labels(&[(NAME_LABEL, "ray-team")]),
        match_labels(&[(NAME_LABEL, "apps")]),
        match_labels(&[("team", "ml")]),
        match_labels(&[("team", "ml"), ("env", "dev")]),
        match_expressions(&[expression(NAME_LABEL, "In", &["ray-team", "ray-other"])]),
        match_expressions(&[expression(NAME_LABEL, "NotIn", &["kube-system"])]),
        match_expressions(&[expression("env", "NotIn", &["prod"])]),
        match_expressions(&[expression("purpose", "Exists", &[])]),
        match_expressions(&[expression("team", "DoesNotExist", &[])]),
    ];
    rng.pick(&choices).clone()
}

fn random_ip_block(rng: &mut Rng) -> Value {
    let choices = [
        json!({"cidr": "198.18.1.10/32"}),
        json!({"cidr": "198.18.3.10/32"}),
        json!({"cidr": "198.19.5.53/32"}),
        json!({"cidr": "198.18.1.0/24"}),
        json!({"cidr": "198.18.0.0/15", "except": ["198.18.3.0/24"]}),
        json!({"cidr": "198.18.0.0/16", "except": ["198.18.1.0/25", "198.18.2.11/32"]}),
        json!({"cidr": "198.18.2.0/24", "except": ["198.18.2.0/25", "198.18.2.128/25"]}),
        json!({"cidr": "0.0.0.0/0", "except": ["198.18.1.10/32", "198.19.0.0/16"]}),
        json!({"cidr": "198.19.4.99/16"}),
    ];
    rng.pick(&choices).clone()
}

fn random_peer(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=3 => json!({"podSelector": random_pod_selector(rng)}),
        4 | 5 => json!({"namespaceSelector": random_namespace_selector(rng)}),
        6 | 7 => json!({"namespaceSelector": random_namespace_selector(rng),
                        "podSelector": random_pod_selector(rng)}),
        _ => json!({"ipBlock": random_ip_block(rng)}),
    }
}

fn random_port(rng: &mut Rng) -> Value {
    let choices = [
        json!({"port": 6380}),
        json!({"port": 10002, "protocol": "TCP"}),
        json!({"port": 8266}),
        json!({"port": 8001, "protocol": "SCTP"}),
        json!({"port": 8081}),
        json!({"port": 8301, "endPort": 8600}),
        json!({"port": 8401, "endPort": 8500, "protocol": "UDP"}),
        json!({"port": 10003, "endPort": 19999}),
        json!({"port": 8601}),
        json!({"port": 52365}),
        json!({"port": 53, "protocol": "UDP"}),
        json!({"port": 53, "protocol": "TCP"}),
        json!({"port": "metrics"}),
        json!({"port": "metrics", "protocol": "UDP"}),
        json!({"port": "agent-grpc"}),
        json!({"port": "agent-grpc", "protocol": "UDP"}),
        json!({"port": "gcs-server"}),
        json!({"port": "dashboard"}),
        json!({"port": "serve", "protocol": "SCTP"}),
        json!({"port": "dns", "protocol": "UDP"}),
        json!({"port": "dns-tcp"}),
        json!({"protocol": "UDP"}),
        json!({}),
    ];
    rng.pick(&choices).clone()
}

/// Missing (None), `[]` or one to three items.
fn random_list(rng: &mut Rng, item: fn(&mut Rng) -> Value) -> Option<Value> {
    match rng.below(10) {
        0..=2 => None,
        3 => Some(json!([])),
        _ => {
            let n = 1 + rng.below(3);
            Some(Value::Array((0..n).map(|_| item(rng)).collect()))
        }
    }
}

fn random_rule(rng: &mut Rng, peers_key: &str) -> Value {
    let mut rule = json!({});
    if let Some(peers) = random_list(rng, random_peer) {
        rule[peers_key] = peers;
    }
    if let Some(ports) = random_list(rng, random_port) {
        rule["ports"] = ports;
    }
    rule
}

fn random_ingress_rule(rng: &mut Rng) -> Value {
    random_rule(rng, "from")
}

fn random_egress_rule(rng: &mut Rng) -> Value {
    random_rule(rng, "to")
}

fn random_policy(rng: &mut Rng, name: &str) -> Value {
    let namespace = *rng.pick(&[
        "ray-team",
        "ray-team",
        "ray-team",
        "ray-other",
        "kube-system",
        "apps",
    ]);
    if rng.percent(3) {
        return policy(namespace, name, None);
    }
    let mut spec = json!({});
    if !rng.percent(5) {
        spec["podSelector"] = random_pod_selector(rng);
    }
    let types = [
        None,
        Some(json!([])),
        Some(json!(["Ingress"])),
        Some(json!(["Egress"])),
        Some(json!(["Ingress", "Egress"])),
        Some(json!(["Egress", "Ingress"])),
    ];
    if let Some(types) = rng.pick(&types).clone() {
        spec["policyTypes"] = types;
    }
    if let Some(rules) = random_list(rng, random_ingress_rule) {
        spec["ingress"] = rules;
    }
    if let Some(rules) = random_list(rng, random_egress_rule) {
        spec["egress"] = rules;
    }
    policy(namespace, name, Some(spec))
}

fn protocol(name: &str) -> &'static str {
    match name {
        "TCP" => "TCP",
        "UDP" => "UDP",
        "SCTP" => "SCTP",
        other => panic!("protocol {other}"),
    }
}

/// A port the destination declares (with its protocol), the edge of one of the plan's ranges
/// or a port next to one, another port of Ray's plan, or DNS.
fn random_port_query(rng: &mut Rng, to: &Pod) -> (u16, &'static str) {
    let roll = rng.below(100);
    if roll < 30 && !to.ports.is_empty() {
        let (_, port, proto) = rng.pick(&to.ports);
        return (*port, protocol(proto));
    }
    let port = if roll < 50 {
        *rng.pick(&[
            8301, 8400, 8401, 8500, 8501, 8600, 8601, 10002, 10003, 19999,
        ])
    } else {
        match rng.below(12) {
            0 => 6380,
            1 => 10002,
            2 => 8266,
            3 => 8001,
            4 => 8081,
            5 => 8301 + rng.below(300) as u16,
            6 => 8601,
            7 => 52365,
            8 => 10003 + rng.below(19999 - 10003 + 1) as u16,
            _ => 53,
        }
    };
    let proto = if port == 53 {
        *rng.pick(&["UDP", "TCP"])
    } else {
        match rng.below(100) {
            0..=74 => "TCP",
            75..=91 => "UDP",
            _ => "SCTP",
        }
    };
    (port, proto)
}

/// Queries aimed at the port entries of `policies`, each kept with probability `keep`%: a
/// number, the one below it and the one past its range (or it), on the entry's protocol and
/// another; a named port's number on every protocol towards the Pods declaring that name. An
/// ingress probe goes from any Pod to each Pod of the policy's namespace, an egress probe from
/// each of those to any Pod (to one declaring the name, for a named port, half the time).
fn port_probes(rng: &mut Rng, policies: &[Value], pods: &[Pod], keep: usize) -> Vec<Query> {
    let mut out = Vec::new();
    for policy in policies {
        let namespace = policy["metadata"]["namespace"].as_str().unwrap();
        let local: Vec<usize> = (0..pods.len())
            .filter(|&i| pods[i].namespace == namespace)
            .collect();
        for (rules, egress) in [
            (&policy["spec"]["ingress"], false),
            (&policy["spec"]["egress"], true),
        ] {
            for rule in rules.as_array().into_iter().flatten() {
                for entry in rule["ports"].as_array().into_iter().flatten() {
                    let proto = protocol(entry["protocol"].as_str().unwrap_or("TCP"));
                    let other = if proto == "TCP" { "UDP" } else { "TCP" };
                    // (port, protocol, a Pod declaring the named port)
                    let mut probes: Vec<(u16, &'static str, Option<usize>)> = Vec::new();
                    match &entry["port"] {
                        Value::Number(n) => {
                            let n = n.as_u64().unwrap() as u16;
                            let last = entry["endPort"].as_u64().map_or(n, |e| e as u16);
                            for port in [n - 1, n, last, last + 1] {
                                probes.push((port, proto, None));
                            }
                            probes.push((n, other, None));
                        }
                        Value::String(name) => {
                            for (i, pod) in pods.iter().enumerate() {
                                for (_, number, _) in pod.ports.iter().filter(|p| &p.0 == name) {
                                    for proto in ["TCP", "UDP", "SCTP"] {
                                        probes.push((*number, proto, Some(i)));
                                    }
                                }
                            }
                        }
                        _ => {
                            let (port, _) = random_port_query(rng, &pods[0]);
                            probes.push((port, proto, None));
                            probes.push((port, other, None));
                        }
                    }
                    for (port, protocol, declared_by) in probes {
                        for &end in &local {
                            if !rng.percent(keep) {
                                continue;
                            }
                            let (from, to) = if egress {
                                let to = match declared_by {
                                    Some(i) if rng.percent(50) => i,
                                    _ => rng.below(pods.len()),
                                };
                                (end, to)
                            } else {
                                (rng.below(pods.len()), end)
                            };
                            out.push(Query {
                                from,
                                to,
                                port,
                                protocol,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

fn corpus(pods: &[Pod]) -> Vec<Scenario> {
    let mut rng = Rng(SEED);
    let mut scenarios = Vec::new();
    // Written sets: about half of all ordered pairs of Pods (a Pod with itself included), one
    // port each, and the probes of their port entries.
    for (name, policies) in written_scenarios() {
        let mut queries = Vec::new();
        for from in 0..pods.len() {
            for (to, destination) in pods.iter().enumerate() {
                if rng.percent(50) {
                    let (port, protocol) = random_port_query(&mut rng, destination);
                    queries.push(Query {
                        from,
                        to,
                        port,
                        protocol,
                    });
                }
            }
        }
        queries.extend(port_probes(&mut rng, &policies, pods, 50));
        scenarios.push(Scenario {
            name,
            policies,
            queries,
        });
    }
    for i in 0..RANDOM_SCENARIOS {
        let n = 1 + rng.below(4);
        let policies: Vec<Value> = (0..n)
            .map(|j| random_policy(&mut rng, &format!("p{j}")))
            .collect();
        let mut queries: Vec<Query> = (0..RANDOM_QUERIES)
            .map(|_| {
                let from = rng.below(pods.len());
                let to = if rng.percent(8) {
                    from
                } else {
                    rng.below(pods.len())
                };
                let (port, protocol) = random_port_query(&mut rng, &pods[to]);
                Query {
                    from,
                    to,
                    port,
                    protocol,
                }
            })
            .collect();
        queries.extend(port_probes(&mut rng, &policies, pods, 15));
        scenarios.push(Scenario {
            name: format!("random set {i}"),
            policies,
            queries,
        });
    }
    scenarios
}

#[test]
fn raygate_decides_connections_as_kube_network_policies_does() {
    let oracle = oracle();
    let namespaces = namespaces();
    let pods = pods();
    let scenarios = corpus(&pods);
    let expected = oracle_answers(&oracle, &namespaces, &pods, &scenarios);
    // The runtime tier checks its nftables translator against the same corpus and answers.
    if let Some(path) = std::env::var_os("RAYGATE_NETPOL_CORPUS") {
        write_corpus(&path, &namespaces, &pods, &scenarios, &expected);
    }

    let mut queries = 0;
    let mut allowed = 0;
    let mut self_queries = 0;
    let mut disagreements = 0;
    let mut report = Vec::new();
    for (scenario, expected) in scenarios.iter().zip(&expected) {
        let policies: Vec<NetworkPolicy> = scenario
            .policies
            .iter()
            .map(|p| {
                serde_json::from_value(p.clone())
                    .unwrap_or_else(|e| panic!("{}: {p}: {e}", scenario.name))
            })
            .collect();
        let mut lines = Vec::new();
        for (q, &oracle_says) in scenario.queries.iter().zip(expected) {
            let (from, to) = (&pods[q.from], &pods[q.to]);
            let ours = connection_allowed(
                &policies,
                &namespaces,
                &from.view(),
                &to.view(),
                q.port,
                q.protocol,
            );
            queries += 1;
            allowed += usize::from(oracle_says);
            self_queries += usize::from(q.from == q.to);
            if ours != oracle_says {
                lines.push(format!(
                    "  {} ({}) -> {} ({}) {}/{}: kube-network-policies {}, raygate {}",
                    from.name,
                    from.namespace,
                    to.name,
                    to.namespace,
                    q.port,
                    q.protocol,
                    verdict(oracle_says),
                    verdict(ours)
                ));
            }
        }
        if !lines.is_empty() {
            disagreements += lines.len();
            report.push(format!(
                "{}: {} disagreement(s)\n  policies: {}\n{}",
                scenario.name,
                lines.len(),
                serde_json::to_string(&scenario.policies).unwrap(),
                lines.join("\n")
            ));
        }
    }
    let summary = format!(
        "{disagreements} disagreement(s) in {queries} queries over {} policy sets \
         ({} with disagreements); the oracle allowed {allowed}, {self_queries} queries were a \
         Pod to itself",
        scenarios.len(),
        report.len()
    );
    eprintln!("{summary}");
    assert!(report.is_empty(), "{}\n\n{summary}", report.join("\n\n"));
    // The corpus is not one-sided.
    assert!(queries >= 3000, "{queries} queries");
    assert!(
        allowed * 5 >= queries && allowed * 5 <= queries * 4,
        "{allowed} of {queries} allowed"
    );
}

fn write_corpus(
    path: &std::ffi::OsStr,
    namespaces: &BTreeMap<String, Labels>,
    pods: &[Pod],
    scenarios: &[Scenario],
    answers: &[Vec<bool>],
) {
    let mut out = String::new();
    for (scenario, answers) in scenarios.iter().zip(answers) {
        let doc = json!({
            "name": scenario.name,
            "namespaces": namespaces,
            "pods": pods.iter().map(Pod::to_json).collect::<Vec<_>>(),
            "policies": scenario.policies,
            "queries": scenario.queries.iter().zip(answers).map(|(q, allowed)| json!({
                "from": pods[q.from].name, "to": pods[q.to].name,
                "port": q.port, "protocol": q.protocol, "allowed": allowed,
            })).collect::<Vec<_>>(),
        });
        out.push_str(&doc.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.to_string_lossy()));
}
