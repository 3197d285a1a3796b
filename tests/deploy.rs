//! deploy/ against the built-in policy: what an outage of raygate can and cannot block.

use serde_json::Value;

fn documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("deploy/base/{file}")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// Namespaces the policy exempts never wait on raygate: every webhook's namespaceSelector
/// leaves them out, so an exempt namespace keeps working while raygate is down.
#[test]
fn the_webhooks_leave_out_every_namespace_the_policy_exempts() {
    let policy = raygate::Policy::built_in();
    let exempt = &policy.spec().scope.exempt_namespaces;
    assert!(!exempt.is_empty());
    let mut webhooks = 0;
    for file in [
        "validatingwebhookconfiguration.yaml",
        "mutatingwebhookconfiguration.yaml",
    ] {
        for config in documents(file) {
            for webhook in config["webhooks"].as_array().unwrap() {
                webhooks += 1;
                let left_out: Vec<&str> = webhook["namespaceSelector"]["matchExpressions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| {
                        e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn"
                    })
                    .flat_map(|e| e["values"].as_array().unwrap())
                    .filter_map(Value::as_str)
                    .collect();
                for namespace in exempt.iter().map(String::as_str).chain(["raygate-system"]) {
                    assert!(
                        left_out.contains(&namespace),
                        "{} sends {namespace} to raygate",
                        webhook["name"]
                    );
                }
            }
        }
    }
    assert_eq!(webhooks, 5);
}

/// The liveness probe uses the metrics listener, never one of the admission listener's
/// capped connections; the Pods outrank Ray's and spread over zones and nodes.
#[test]
fn the_deployment_survives_load_preemption_and_node_loss() {
    let deployment = &documents("deployment.yaml")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "https");
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("--metrics-listen=0.0.0.0:"))
    );
    let class = &documents("priorityclass.yaml")[0];
    assert_eq!(pod["priorityClassName"], class["metadata"]["name"]);
    assert!(class["value"].as_i64().unwrap() >= 100_000_000);
    let keys: Vec<&str> = pod["topologySpreadConstraints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["topologyKey"].as_str())
        .collect();
    assert_eq!(keys, ["kubernetes.io/hostname"]);
    // The zone is a preference, not a spread constraint: kube-scheduler scores no node for
    // spreading when one constraint's key is missing, so a zone constraint would stop the
    // hostname spread on nodes without zone labels.
    let zone =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        zone["podAffinityTerm"]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(
        zone["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "raygate"
    );
}

/// The PrometheusRule of the monitoring component carries exactly the groups of the plain
/// rules file that `promtool test rules` checks.
#[test]
fn the_prometheus_rule_and_the_rules_file_agree() {
    let read = |path: &str| -> Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let file = read("deploy/monitoring/raygate.rules.yaml");
    let rule = read("deploy/components/monitoring/prometheusrule.yaml");
    assert_eq!(rule["spec"], file);
    let alerts = file["groups"][0]["rules"].as_array().unwrap();
    assert!(alerts.len() >= 6);
    // Each alert links its own runbook section.
    let runbook = std::fs::read_to_string("docs/RUNBOOK.md")
        .unwrap()
        .to_lowercase();
    for alert in alerts {
        let name = alert["alert"].as_str().unwrap();
        let url = alert["annotations"]["runbook_url"].as_str().unwrap();
        assert_eq!(url, format!("docs/RUNBOOK.md#{}", name.to_lowercase()));
        assert!(
            runbook.contains(&format!("## {}", name.to_lowercase())),
            "{name}"
        );
    }
}

fn component(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!(
        "deploy/components/generate-network-policies/{file}"
    ))
    .unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// The NetworkPolicy controller's component turns on a flag `raygate serve` takes, and
/// grants what the controller does beyond base's reads: write NetworkPolicies, read the
/// `kubernetes` Endpoints. No finalizers: its owner references never block deletion.
#[test]
fn the_network_policy_component_adds_its_flag_and_only_the_rbac_it_needs() {
    let kustomization = &component("kustomization.yaml")[0];
    assert_eq!(kustomization["kind"], "Component");
    let patch = kustomization["patches"][0]["patch"].as_str().unwrap();
    let ops: Value = serde_yaml_ng::from_str(patch).unwrap();
    let flag = ops[0]["value"].as_str().unwrap();
    assert_eq!(flag, "--generate-network-policies");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_raygate"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains(flag));

    let rbac = component("rbac.yaml");
    let rules = |kind: &str| -> Vec<Value> {
        rbac.iter()
            .filter(|d| d["kind"] == kind)
            .flat_map(|d| d["rules"].as_array().unwrap().clone())
            .collect()
    };
    assert_eq!(
        rules("ClusterRole"),
        [
            serde_json::json!({"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
            "verbs": ["get", "list", "watch", "create", "patch"]})
        ]
    );
    assert_eq!(
        rules("Role"),
        [
            serde_json::json!({"apiGroups": [""], "resources": ["endpoints"],
            "resourceNames": ["kubernetes"], "verbs": ["get"]})
        ]
    );
    for binding in rbac
        .iter()
        .filter(|d| d["kind"].as_str().unwrap().ends_with("Binding"))
    {
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": "raygate", "namespace": "raygate-system"}])
        );
    }
    // The Lease the controller waits for is the one base's Role lets raygate hold.
    let lease_role = documents("rbac.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Role")
        .unwrap();
    assert_eq!(
        lease_role["rules"][1]["resourceNames"][0],
        raygate::leader::LEASE_NAME
    );
}
