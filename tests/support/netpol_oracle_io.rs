//! The corpus parts and the oracle protocol shared by the NetworkPolicy differential tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use raygate::rules::network_policy::PolicyPod;
use serde_json::{Value, json};

/// SplitMix64: deterministic across platforms and releases.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub type Labels = BTreeMap<String, String>;

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    pub ip: IpAddr,
    pub ports: Vec<(String, u16, String)>,
}

impl Pod {
    pub fn view(&self) -> PolicyPod<'_> {
        PolicyPod {
            namespace: &self.namespace,
            labels: &self.labels,
            ip: self.ip,
            ports: &self.ports,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "namespace": self.namespace,
            "labels": self.labels,
            "ip": self.ip.to_string(),
            "ports": self.ports.iter().map(|(name, port, protocol)| json!({
                "name": name, "containerPort": port, "protocol": protocol,
            })).collect::<Vec<_>>(),
        })
    }
}

pub fn pod(
    name: &str,
    namespace: &str,
    ip: &str,
    labels: Labels,
    ports: &[(&str, u16, &str)],
) -> Pod {
    Pod {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        labels,
        ip: ip.parse().unwrap(),
        ports: ports
            .iter()
            .map(|(n, p, proto)| (n.to_string(), *p, proto.to_string()))
            .collect(),
    }
}

pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub fn policy(namespace: &str, name: &str, spec: Option<Value>) -> Value {
    let mut p = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
    });
    if let Some(spec) = spec {
        p["spec"] = spec;
    }
    p
}

pub fn np(namespace: &str, name: &str, spec: Value) -> Value {
    policy(namespace, name, Some(spec))
}

pub fn match_labels(pairs: &[(&str, &str)]) -> Value {
    json!({"matchLabels": labels(pairs)})
}

pub fn expression(key: &str, operator: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({"key": key, "operator": operator})
    } else {
        json!({"key": key, "operator": operator, "values": values})
    }
}

pub fn match_expressions(expressions: &[Value]) -> Value {
    json!({ "matchExpressions": expressions })
}

pub struct Query {
    pub from: usize,
    pub to: usize,
    pub port: u16,
    pub protocol: &'static str,
}

pub struct Scenario {
    pub name: String,
    pub policies: Vec<Value>,
    pub queries: Vec<Query>,
}

/// The oracle's answers, one list per scenario.
pub fn oracle_answers(
    oracle: &std::path::Path,
    namespaces: &BTreeMap<String, Labels>,
    pods: &[Pod],
    scenarios: &[Scenario],
) -> Vec<Vec<bool>> {
    let pods_json: Vec<Value> = pods.iter().map(Pod::to_json).collect();
    let documents: Vec<Value> = scenarios
        .iter()
        .map(|scenario| {
            json!({
                "namespaces": namespaces,
                "pods": pods_json,
                "policies": scenario.policies,
                "queries": scenario.queries.iter().map(|q| json!({
                    "from": pods[q.from].name, "to": pods[q.to].name,
                    "port": q.port, "protocol": q.protocol,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let answers: Vec<Vec<bool>> = super::go_oracle::run_lines(oracle, &documents)
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            serde_json::from_value(v["answers"].clone()).unwrap()
        })
        .collect();
    assert_eq!(answers.len(), scenarios.len());
    for (a, s) in answers.iter().zip(scenarios) {
        assert_eq!(a.len(), s.queries.len(), "{}", s.name);
    }
    answers
}

pub fn verdict(allowed: bool) -> &'static str {
    if allowed { "allows" } else { "denies" }
}
